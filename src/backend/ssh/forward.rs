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

/// Local TCP ports forwarded to container addresses on the host, made on first use and reused.
#[derive(Debug, Default)]
pub(super) struct ProbeForwards {
    by_target: Mutex<HashMap<SocketAddr, SocketAddr>>,
}

impl ProbeForwards {
    /// The local address that reaches `target` (an address as seen from the host).
    pub(super) async fn local_for(&self, session: &Session, target: SocketAddr) -> Result<SocketAddr, String> {
        let mut map = self.by_target.lock().await;
        if let Some(local) = map.get(&target) {
            return Ok(*local);
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
                    map.insert(target, local);
                    return Ok(local);
                }
                Err(e) => last = super::connect::chain(&e),
            }
        }
        Err(format!("cannot forward a local port to {target} on the host: {last}"))
    }

    /// Forgets every forward (they died with a lost connection).
    pub(super) async fn clear(&self) {
        self.by_target.lock().await.clear();
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
