//! One instance of the in-memory runtime: its record, and once started, a loopback listener per
//! declared TCP port that answers HTTP as its [`Behavior`] says.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::watch;

use super::Behavior;
use crate::backend::{label, Instance, InstanceSpec, InstanceState, PublishedPort};
use crate::error::{Error, Result};
use crate::model::{Protocol, Publish, ServiceKind};

/// An instance and what runs for it.
pub(crate) struct Running {
    pub(crate) instance: Instance,
    pub(crate) spec: InstanceSpec,
    pub(crate) behavior: Behavior,
    /// Its exit code once it exited; `None` while created or running.
    pub(crate) exited: watch::Sender<Option<i64>>,
    listeners: BTreeMap<u16, SocketAddr>,
    single_host: bool,
}

impl Running {
    pub(crate) fn new(id: String, spec: InstanceSpec, behavior: Behavior, single_host: bool) -> Running {
        let decoded =
            label::InstanceLabels::read(|k| spec.labels.get(k).or_else(|| spec.annotations.get(k))).unwrap_or_default();
        let instance = Instance {
            state: InstanceState::Created,
            created: crate::rfc3339::format(SystemTime::now(), true),
            host: if single_host { None } else { spec.host.clone() },
            secret_env: spec.secrets.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect(),
            ..Instance::labelled(decoded, id, spec.name.clone(), spec.image_id.clone())
        };
        Running { instance, spec, behavior, exited: watch::channel(None).0, listeners: BTreeMap::new(), single_host }
    }

    /// The instance as it is now.
    pub(crate) fn snapshot(&self) -> Instance {
        let mut i = self.instance.clone();
        if let Some(code) = *self.exited.borrow() {
            i.state = InstanceState::Exited;
            i.exit_code = Some(code);
            i.published.clear();
        }
        i
    }

    /// Where its container port `port` listens, while it runs.
    pub(crate) fn address(&self, port: u16) -> Option<SocketAddr> {
        self.snapshot().is_running().then(|| self.listeners.get(&port).copied()).flatten()
    }

    /// Starts it: a listener per TCP port (accepting after the behaviour's start delay), its
    /// crash or job exit scheduled.
    pub(crate) fn start(&mut self) -> Result<()> {
        if self.snapshot().is_running() {
            return Ok(());
        }
        let (tx, _) = watch::channel(None);
        self.exited = tx;
        self.listeners.clear();
        self.instance.published.clear();
        for p in self.spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            let socket = TcpSocket::new_v4().map_err(|e| Error::backend("start", &self.instance.name, e))?;
            socket
                .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .map_err(|e| Error::backend("start", &self.instance.name, e))?;
            let addr = socket.local_addr().map_err(|e| Error::backend("start", &self.instance.name, e))?;
            self.listeners.insert(p.container_port(), addr);
            if p.publishing() != Publish::No {
                self.instance.published.push(PublishedPort {
                    container_port: p.container_port(),
                    protocol: "tcp".into(),
                    host_ip: "127.0.0.1".into(),
                    host_port: addr.port(),
                });
            }
            let behavior = self.behavior.clone();
            if behavior.ready_after.is_zero() {
                // Listening before `start` returns: a probe right after it is answered.
                let listener = socket.listen(1024).map_err(|e| Error::backend("start", &self.instance.name, e))?;
                tokio::spawn(answer(listener, behavior, self.exited.subscribe()));
            } else {
                tokio::spawn(serve(socket, behavior, self.exited.subscribe()));
            }
        }
        self.instance.state = InstanceState::Running;
        self.instance.ip = self.single_host.then_some(Ipv4Addr::LOCALHOST.into());
        let end = match self.instance.kind {
            ServiceKind::Job => Some(self.behavior.job_exit),
            ServiceKind::Service => self.behavior.crash_after,
        };
        if let Some((after, code)) = end {
            let tx = self.exited.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                tx.send_if_modified(|c| c.is_none() && c.replace(code).is_none());
            });
        }
        Ok(())
    }

    /// It exits with `code` (if it has not already).
    pub(crate) fn exit(&mut self, code: i64) {
        self.exited.send_if_modified(|c| c.is_none() && c.replace(code).is_none());
    }
}

/// Listens after the start delay and answers each request as the behaviour says, until the
/// instance exits.
async fn serve(socket: TcpSocket, behavior: Behavior, mut exited: watch::Receiver<Option<i64>>) {
    tokio::select! {
        _ = exited.wait_for(Option::is_some) => return,
        _ = tokio::time::sleep(behavior.ready_after) => {}
    }
    let Ok(listener) = socket.listen(1024) else { return };
    answer(listener, behavior, exited).await;
}

/// Answers each request as the behaviour says, until the instance exits.
async fn answer(listener: tokio::net::TcpListener, behavior: Behavior, mut exited: watch::Receiver<Option<i64>>) {
    let answered = Arc::new(AtomicU32::new(0));
    loop {
        let accepted = tokio::select! {
            _ = exited.wait_for(Option::is_some) => return,
            a = listener.accept() => a,
        };
        let Ok((mut stream, _)) = accepted else { continue };
        let n = answered.fetch_add(1, Ordering::Relaxed);
        let status = match behavior.flap {
            Some((up, down)) if n % (up.saturating_add(down)) >= up => 503,
            _ => behavior.http_status,
        };
        let body = behavior.body.clone();
        let delay = behavior.answer_after;
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16_384 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => seen.extend_from_slice(&buf[..k]),
                }
            }
            tokio::time::sleep(delay).await;
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                if status < 400 { "OK" } else { "Error" },
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
