//! Opening the one SSH connection to a host: what `~/.ssh/config` makes of the destination
//! (`ssh -G`), the master connection (OpenSSH's ControlMaster, through the `openssh` crate), and
//! turning what the SSH client says into a typed error.

use std::path::PathBuf;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};

use super::{HostKeyPolicy, SshHostBuilder};
use crate::error::Error;

/// What OpenSSH's configuration makes of a destination: where it really connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Resolved {
    pub hostname: String,
    pub port: u16,
    pub user: String,
}

/// Common OpenSSH options, in the order `ssh` takes them, shared by `ssh -G` and the master.
fn options(b: &SshHostBuilder) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(f) = &b.config_file {
        args.extend(["-F".to_string(), f.display().to_string()]);
    }
    if let Some(p) = b.port {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    if let Some(u) = &b.user {
        args.extend(["-l".to_string(), u.clone()]);
    }
    if !b.jump_hosts.is_empty() {
        args.extend(["-J".to_string(), b.jump_hosts.join(",")]);
    }
    args
}

/// Runs `ssh -G`: the effective configuration for the destination, `~/.ssh/config` (or the given
/// file) applied exactly as the OpenSSH client applies it. Nothing is sent over the network.
pub(super) async fn resolve(b: &SshHostBuilder) -> Result<Resolved, Error> {
    let out = tokio::process::Command::new("ssh")
        .arg("-G")
        .args(options(b))
        .arg(&b.destination)
        .output()
        .await
        .map_err(|e| unreachable(b, format!("cannot run the OpenSSH client `ssh`: {e}; install openssh-client")))?;
    if !out.status.success() {
        return Err(unreachable(b, String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).map(|v| v.trim().to_string()))
    };
    Ok(Resolved {
        hostname: get("hostname").unwrap_or_else(|| b.destination.clone()),
        port: get("port").and_then(|p| p.parse().ok()).unwrap_or(22),
        user: get("user").unwrap_or_default(),
    })
}

/// Opens the master connection: one SSH handshake; everything else is multiplexed over it.
pub(super) async fn master(b: &SshHostBuilder, control_dir: &PathBuf) -> Result<Session, Error> {
    let mut sb = SessionBuilder::default();
    sb.known_hosts_check(match b.host_key_policy {
        HostKeyPolicy::Strict => KnownHosts::Strict,
        HostKeyPolicy::AcceptNew => KnownHosts::Add,
        HostKeyPolicy::AcceptAny => KnownHosts::Accept,
    })
    .connect_timeout(b.connect_timeout)
    .server_alive_interval(b.keepalive)
    .control_directory(control_dir);
    if let Some(f) = &b.config_file {
        sb.config_file(f);
    }
    if let Some(p) = b.port {
        sb.port(p);
    }
    if let Some(u) = &b.user {
        sb.user(u.clone());
    }
    if let Some(k) = &b.identity_file {
        sb.keyfile(k);
    }
    if let Some(k) = &b.known_hosts_file {
        sb.user_known_hosts_file(k);
    }
    if !b.jump_hosts.is_empty() {
        sb.jump_hosts(&b.jump_hosts);
    }
    // Authentication has no timeout of its own in the client: bound the whole of it.
    let limit = b.connect_timeout.saturating_mul(2).saturating_add(Duration::from_secs(5));
    match tokio::time::timeout(limit, sb.connect_mux(&b.destination)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(classify(b, &chain(&e))),
        Err(_) => Err(unreachable(b, format!("no SSH session within {}", crate::duration::human(limit)))),
    }
}

/// The whole chain of an error's messages.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// What the SSH client said, as a typed error: a host key problem, or an unreachable host.
pub(super) fn classify(b: &SshHostBuilder, said: &str) -> Error {
    let said = said.replace('\r', "");
    let host = b.name.clone();
    let destination = b.destination.clone();
    if said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || (said.contains("Host key for") && said.contains("has changed"))
    {
        let line = said.lines().find(|l| l.contains("Offending") || l.contains("key for")).unwrap_or("").trim();
        return Error::HostKey {
            host,
            destination,
            changed: true,
            message: format!(
                "{line}. If the server really was reinstalled, remove its old key (`ssh-keygen -R <address>`) after checking the new one out of band"
            ),
        };
    }
    if said.contains("Host key verification failed") || (said.contains("No") && said.contains("host key is known")) {
        return Error::HostKey {
            host,
            destination,
            changed: false,
            message:
                "Add its key to known_hosts (checked out of band), or allow new keys with `HostKeyPolicy::AcceptNew`"
                    .into(),
        };
    }
    let said = said.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    Error::HostUnreachable { host, destination, message: said }
}

pub(super) fn unreachable(b: &SshHostBuilder, message: String) -> Error {
    Error::HostUnreachable { host: b.name.clone(), destination: b.destination.clone(), message }
}
