//! Forwards over the host's one SSH connection: its Docker socket to a local socket (so the Docker
//! backend drives the remote engine unchanged), and container ports to local TCP ports for probes.
//! Each connection through a forward is a new channel on the existing connection, not a new
//! handshake.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use openssh::{ForwardType, Session, Socket};
use tokio::sync::Mutex;

/// Forwards a local Unix socket at `local` to the Unix socket `remote` on the host.
pub(super) async fn docker_socket(session: &Session, local: &Path, remote: &str) -> Result<(), String> {
    session
        .request_port_forward(ForwardType::Local, Socket::from(local), Socket::from(Path::new(remote)))
        .await
        .map_err(|e| format!("cannot forward the Docker socket {remote}: {}", super::connect::chain(&e)))
}

/// How many probe forwards a host keeps open; the least recently used one is closed beyond that.
pub(super) const MAX_PROBE_FORWARDS: usize = 64;

/// Local TCP ports forwarded to container addresses on the host, made on first use and reused; at
/// most [`MAX_PROBE_FORWARDS`], the least recently used closed first (containers come and go).
#[derive(Debug, Default)]
pub(super) struct ProbeForwards {
    by_target: Mutex<Forwards>,
}

#[derive(Debug, Default)]
struct Forwards {
    /// Target → (local address, when last used).
    map: HashMap<SocketAddr, (SocketAddr, u64)>,
    clock: u64,
}

impl ProbeForwards {
    /// The local address that reaches `target` (an address as seen from the host).
    pub(super) async fn local_for(&self, session: &Session, target: SocketAddr) -> Result<SocketAddr, String> {
        let mut f = self.by_target.lock().await;
        f.clock += 1;
        let now = f.clock;
        if let Some((local, used)) = f.map.get_mut(&target) {
            *used = now;
            return Ok(*local);
        }
        if f.map.len() >= MAX_PROBE_FORWARDS {
            let oldest = f.map.iter().min_by_key(|(_, (_, used))| *used).map(|(t, (l, _))| (*t, *l));
            if let Some((old_target, old_local)) = oldest {
                f.map.remove(&old_target);
                if let Err(e) = session.close_port_forward(ForwardType::Local, old_local, old_target).await {
                    tracing::debug!(error = %e, "could not close a probe forward");
                }
            }
        }
        let mut last = String::new();
        // A free port is found by binding and releasing it; another process may take it in
        // between, so a few attempts.
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free local port: {e}"))?
                .port();
            let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match session.request_port_forward(ForwardType::Local, local, target).await {
                Ok(()) => {
                    f.map.insert(target, (local, now));
                    return Ok(local);
                }
                Err(e) => last = super::connect::chain(&e),
            }
        }
        Err(format!("cannot forward a local port to {target} on the host: {last}"))
    }

    /// How many forwards are open.
    pub(super) async fn open(&self) -> usize {
        self.by_target.lock().await.map.len()
    }

    /// Forgets every forward (they died with a lost connection).
    pub(super) async fn clear(&self) {
        self.by_target.lock().await.map.clear();
    }
}

/// A private directory for the local end of the Docker socket forward, removed with the host.
#[derive(Debug)]
pub(super) struct SocketDir(pub PathBuf);

impl SocketDir {
    pub(super) fn create() -> std::io::Result<SocketDir> {
        use std::os::unix::fs::DirBuilderExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("harbormaster-ssh-{}-{n}", std::process::id()));
        // Left by an earlier process that had the same pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(SocketDir(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
