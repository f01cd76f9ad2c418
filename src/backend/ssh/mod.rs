//! The SSH backend: a Docker engine on a remote host, driven over one SSH connection.
//!
//! [`SshHost`] opens a single OpenSSH master connection to the host (one handshake), forwards the
//! host's Docker socket over it to a private local socket, and drives the remote engine with the
//! very same [`DockerBackend`] code as a local engine. Probes reach container ports through
//! forwards over that connection too, so a database that publishes nothing is still probed.
//!
//! The SSH client is the system's OpenSSH, through the [`openssh`] crate (as bollard's own `ssh`
//! feature does): `~/.ssh/config` (`Host` aliases, `HostName`, `User`, `Port`, `IdentityFile`,
//! `ProxyJump`, `Include`, `Match`), the agent, `known_hosts` and its hashing all behave exactly as
//! they do for `ssh` on the command line, because it is `ssh`.
//!
//! - `connect.rs`: `ssh -G` resolution, the master connection, and the typed errors for unknown or
//!   changed host keys and unreachable hosts.
//! - `forward.rs`: the Docker socket and probe forwards.
//! - `checks.rs`: host checks (engine, API version, disk) run at connect and before every apply.
//!
//! On its own an `SshHost` is a single-host backend (one VPS). Several of them, with roles, make a
//! [`Fleet`](crate::backend::fleet::Fleet).

mod checks;
mod connect;
mod forward;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openssh::Session;

pub use checks::HostReport;

use super::docker::{DockerBackend, ProbeRoute};
use super::{Backend, Instance, Link, Linked};
use crate::error::{Error, Result};

/// What to do with a host whose key is not in `known_hosts`. A key that differs from the one
/// `known_hosts` holds is refused under every policy but [`AcceptAny`](Self::AcceptAny).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (`StrictHostKeyChecking=yes`). The default.
    #[default]
    Strict,
    /// Accept and remember an unknown key; refuse a changed one (`StrictHostKeyChecking=accept-new`).
    AcceptNew,
    /// Accept any key (`StrictHostKeyChecking=no`): only for throw-away test hosts.
    AcceptAny,
}

/// A Docker engine on a host reached over SSH.
///
/// ```no_run
/// # async fn f() -> harbormaster::Result<()> {
/// use harbormaster::SshHost;
/// // `web-1` may be an alias of ~/.ssh/config, with its HostName, User, IdentityFile, ProxyJump.
/// let host = SshHost::builder("web-1").connect().await?;
/// println!("{} runs Docker {}", host.name(), host.report().docker_version);
/// # Ok(()) }
/// ```
///
/// It is the Docker backend behind the SSH connection, through the one generic layer every
/// link shares ([`Linked`]): each call goes to the engine over the forwarded socket, and a
/// failure is read as [`Error::HostUnreachable`] when the connection is what failed.
pub type SshHost = Linked<DockerBackend, SshLink>;

/// The SSH connection of an [`SshHost`]: its master session, the host's name and address, the
/// probe forwards, the host checks' findings.
#[derive(Clone, Debug)]
pub struct SshLink {
    inner: Arc<Inner>,
    min_free_disk: u64,
}

#[derive(Debug)]
struct Inner {
    name: String,
    destination: String,
    address: String,
    /// The master connection; replaced by [`SshHost::reconnect`] after an outage.
    session: tokio::sync::RwLock<Arc<Session>>,
    /// How the connection was opened, to open it again.
    builder: SshHostBuilder,
    report: std::sync::Mutex<Option<HostReport>>,
    probes: forward::ProbeForwards,
    // Dropped last: the local end of the Docker socket forward.
    socket_dir: forward::SocketDir,
}

/// Builder for [`SshHost`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SshHostBuilder {
    destination: String,
    name: String,
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
    jump_hosts: Vec<String>,
    host_key_policy: HostKeyPolicy,
    docker_socket: String,
    address: Option<String>,
    connect_timeout: Duration,
    keepalive: Duration,
    call_timeout: Duration,
    min_free_disk: u64,
    registries: crate::registry::Registries,
    pull_limits: super::docker::pull::PullLimits,
}

impl SshHost {
    /// Starts describing the host at `destination`, as `ssh` takes it: an alias of
    /// `~/.ssh/config`, `address`, `user@address`, or `ssh://user@address:port`.
    pub fn builder(destination: impl Into<String>) -> SshHostBuilder {
        let destination = destination.into();
        let name = destination
            .trim_start_matches("ssh://")
            .rsplit('@')
            .next()
            .unwrap_or(&destination)
            .split(':')
            .next()
            .unwrap_or(&destination)
            .to_string();
        SshHostBuilder {
            destination,
            name,
            user: None,
            port: None,
            identity_file: None,
            config_file: None,
            known_hosts_file: None,
            jump_hosts: Vec::new(),
            host_key_policy: HostKeyPolicy::Strict,
            docker_socket: "/var/run/docker.sock".into(),
            address: None,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            min_free_disk: 512 << 20,
            registries: crate::registry::Registries::new(),
            pull_limits: Default::default(),
        }
    }

    /// The host's name (in errors, events and role mappings).
    pub fn name(&self) -> &str {
        &self.link.inner.name
    }

    /// The SSH destination, as given.
    pub fn destination(&self) -> &str {
        &self.link.inner.destination
    }

    /// The address at which the host's published ports are reached.
    pub fn address(&self) -> &str {
        &self.link.inner.address
    }

    /// What the host checks found at connect (or at the latest [`check`](Self::check)).
    pub fn report(&self) -> HostReport {
        self.link.inner.report.lock().ok().and_then(|r| r.clone()).unwrap_or_default()
    }

    /// How many probe forwards (local ports forwarded to container addresses on the host) are
    /// open. Made on first use and reused; beyond 64 the least recently used is closed.
    pub async fn probe_forwards(&self) -> usize {
        self.link.inner.probes.open().await
    }

    /// The Docker backend on the host (through the SSH connection), for what this type does not cover.
    pub fn docker(&self) -> &DockerBackend {
        &self.backend
    }

    /// Runs the host checks again: connection, engine and API version, disk space.
    pub async fn check(&self) -> Result<HostReport> {
        let report = checks::run(self).await?;
        if let Ok(mut r) = self.link.inner.report.lock() {
            *r = Some(report.clone());
        }
        Ok(report)
    }

    /// Writes a file on the host (not in a container) with `mode`, creating its directory, over the
    /// same connection: `install -D -m <mode> /dev/stdin <path>`.
    pub async fn write_host_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let fail = |m: String| Error::backend("write host file", format!("{path} on {}", self.name()), m);
        let mode = format!("{mode:o}");
        let session = self.session().await;
        let mut child = session
            .command("install")
            .args(["-D", "-m", &mode, "/dev/stdin", path])
            .stdin(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped())
            .stdout(openssh::Stdio::null())
            .spawn()
            .await
            .map_err(|e| self.lost(connect::chain(&e)))?;
        if let Some(mut stdin) = child.stdin().take() {
            stdin.write_all(contents).await.map_err(|e| fail(e.to_string()))?;
            stdin.shutdown().await.map_err(|e| fail(e.to_string()))?;
        }
        let out = child.wait_with_output().await.map_err(|e| fail(connect::chain(&e)))?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(())
    }

    /// Runs a program on the host (arguments are quoted for the remote shell); its stdout.
    async fn run(&self, args: &[&str]) -> std::result::Result<String, String> {
        let Some((program, rest)) = args.split_first() else { return Ok(String::new()) };
        let session = self.session().await;
        let out =
            session.command(*program).args(rest.iter().copied()).output().await.map_err(|e| connect::chain(&e))?;
        if !out.status.success() {
            return Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The current master connection.
    async fn session(&self) -> Arc<Session> {
        self.link.inner.session.read().await.clone()
    }

    /// Opens the connection again if it is lost (the host was unreachable and is back): one new
    /// handshake, the Docker socket forwarded again at the same local path, probe forwards made
    /// afresh. Does nothing while the connection is alive. Every apply, rollback and promotion
    /// does this first (in its host checks), so a long-lived program needs no new `SshHost`.
    pub async fn reconnect(&self) -> Result<()> {
        let mut current = self.link.inner.session.write().await;
        let alive = tokio::time::timeout(Duration::from_secs(10), current.check()).await;
        if matches!(alive, Ok(Ok(()))) {
            return Ok(());
        }
        let b = &self.link.inner.builder;
        let session = connect::master(b, &self.link.inner.socket_dir.0).await?;
        let local = self.link.inner.socket_dir.0.join("docker.sock");
        // The dead master's listening socket is left behind.
        let _ = std::fs::remove_file(&local);
        forward::docker_socket(&session, &local, &b.docker_socket).await.map_err(|m| Error::HostCheck {
            host: b.name.clone(),
            check: "docker",
            message: m,
        })?;
        self.link.inner.probes.clear().await;
        *current = Arc::new(session);
        tracing::info!(host = %b.name, "reconnected over ssh");
        Ok(())
    }

    /// `Ok` while the SSH connection is up; the error names the host otherwise.
    async fn alive(&self) -> Result<()> {
        let session = self.session().await;
        match tokio::time::timeout(Duration::from_secs(10), session.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(connect::chain(&e))),
            Err(_) => Err(self.lost("the SSH connection does not answer".into())),
        }
    }

    fn lost(&self, message: String) -> Error {
        Error::HostUnreachable {
            host: self.link.inner.name.clone(),
            destination: self.link.inner.destination.clone(),
            message: format!("the SSH connection is lost: {message}"),
        }
    }
}

impl SshHostBuilder {
    /// The host's name in errors, events and role mappings (default: the destination's host part).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The remote user (default: as `~/.ssh/config` says, else the local user).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The SSH port (default: as `~/.ssh/config` says, else 22).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Authenticate with this private key only (default: the agent and the configured keys).
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// Read this OpenSSH configuration file instead of `~/.ssh/config` (`ssh -F`).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Check host keys against this file instead of `~/.ssh/known_hosts` (`UserKnownHostsFile`).
    pub fn known_hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts_file = Some(path.into());
        self
    }

    /// Reach the host through a jump host (`ssh -J`); may be given several times, in order.
    /// A `ProxyJump` in `~/.ssh/config` works without this.
    pub fn jump_host(mut self, destination: impl Into<String>) -> Self {
        self.jump_hosts.push(destination.into());
        self
    }

    /// What to do with an unknown host key (default: refuse it).
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.host_key_policy = policy;
        self
    }

    /// The Docker socket on the host (default `/var/run/docker.sock`; rootless Docker has it under
    /// `/run/user/<uid>/`).
    pub fn docker_socket(mut self, path: impl Into<String>) -> Self {
        self.docker_socket = path.into();
        self
    }

    /// The address at which the host's published ports are reached, by the library and by the
    /// other hosts (default: the `HostName` SSH connects to).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// How long the TCP connection may take (default 10 s; the whole handshake gets twice that).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Keep-alive interval: a host silent for three of them is declared lost (default 5 s).
    pub fn keepalive(mut self, d: Duration) -> Self {
        self.keepalive = d.max(Duration::from_secs(1));
        self
    }

    /// Upper bound of each engine call (default 60 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Credentials for a registry the host pulls from, sent from this machine with each pull (the
    /// host stores nothing), as [`DockerBackendBuilder::registry_auth`](crate::DockerBackendBuilder::registry_auth).
    pub fn registry_auth(mut self, registry: impl AsRef<str>, auth: crate::registry::RegistryAuth) -> Self {
        self.registries.give(registry.as_ref(), auth);
        self
    }

    /// Whether this machine's Docker CLI credentials (`~/.docker/config.json` and its helpers)
    /// are sent for registries given none (default `true`), as
    /// [`DockerBackendBuilder::docker_config_credentials`](crate::DockerBackendBuilder::docker_config_credentials).
    pub fn docker_config_credentials(mut self, read: bool) -> Self {
        self.registries.docker_config = read;
        self
    }

    /// Longest one pull on the host may take, and longest it may go without progress (defaults
    /// 30 minutes and 60 s), as [`DockerBackendBuilder::pull_timeout`](crate::DockerBackendBuilder::pull_timeout)
    /// and [`pull_stall_timeout`](crate::DockerBackendBuilder::pull_stall_timeout).
    pub fn pull_limits(mut self, timeout: Duration, stall: Duration) -> Self {
        self.pull_limits = super::docker::pull::PullLimits { deadline: timeout, stall };
        self
    }

    /// Free space the engine's data directory must have for the host to pass its checks
    /// (default 512 MiB).
    pub fn min_free_disk(mut self, bytes: u64) -> Self {
        self.min_free_disk = bytes;
        self
    }

    /// Connects (one SSH handshake), forwards the Docker socket, and runs the host checks.
    pub async fn connect(self) -> Result<SshHost> {
        let resolved = connect::resolve(&self).await?;
        let socket_dir = forward::SocketDir::create()
            .map_err(|e| connect::unreachable(&self, format!("cannot create a local socket directory: {e}")))?;
        let session = connect::master(&self, &socket_dir.0).await?;
        let local = socket_dir.0.join("docker.sock");
        forward::docker_socket(&session, &local, &self.docker_socket).await.map_err(|m| Error::HostCheck {
            host: self.name.clone(),
            check: "docker",
            message: m,
        })?;
        let address = self.address.clone().unwrap_or(resolved.hostname);
        // Ephemeral ports bind to the host's address when it is one (other hosts reach them
        // there), else to every address.
        let docker = DockerBackend::builder()
            .forwarded()
            .host(format!("unix://{}", local.display()))
            .call_timeout(self.call_timeout)
            .probe_route(ProbeRoute::PublishedPort)
            .published_host(address.clone())
            .ephemeral_bind(address.parse().ok())
            .registry_settings(self.registries.clone(), self.pull_limits)
            .connect()
            .await
            .map_err(|e| Error::HostCheck {
                host: self.name.clone(),
                check: "docker",
                message: format!("no Docker engine answers at {} on the host: {e}", self.docker_socket),
            })?;
        let link = SshLink {
            inner: Arc::new(Inner {
                name: self.name.clone(),
                destination: self.destination.clone(),
                address,
                session: tokio::sync::RwLock::new(Arc::new(session)),
                builder: self.clone(),
                report: std::sync::Mutex::new(None),
                probes: forward::ProbeForwards::default(),
                socket_dir,
            }),
            min_free_disk: self.min_free_disk,
        };
        let host = Linked::new(docker, link);
        host.check().await?;
        tracing::debug!(host = %host.name(), destination = %host.destination(), "connected over ssh");
        Ok(host)
    }
}

#[async_trait]
impl Link<DockerBackend> for SshLink {
    fn describe(host: &SshHost) -> String {
        format!("docker on {} over ssh ({})", host.link.inner.name, host.link.inner.destination)
    }

    async fn alive(host: &SshHost) -> Result<()> {
        host.alive().await
    }

    async fn probe_address(host: &SshHost, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        // The container's address on the host, reached through a forward over the connection:
        // works whether or not the port is published. A lost connection is said as such (a
        // forward of a dead connection only refuses).
        host.alive().await?;
        let Some(ip) = instance.ip else { return host.backend.probe_address(instance, port).await };
        let session = host.session().await;
        let local = host.link.inner.probes.local_for(&session, SocketAddr::new(ip, port)).await;
        match local {
            Ok(a) => Ok(Some(a)),
            Err(m) => {
                host.alive().await?;
                Err(Error::backend("probe forward", format!("{}:{port} on {}", ip, host.name()), m))
            }
        }
    }

    fn published_host(host: &SshHost) -> String {
        host.link.inner.address.clone()
    }

    async fn preflight(host: &SshHost) -> Result<()> {
        // A host back after an outage gets a new connection before anything changes.
        if host.alive().await.is_err() {
            host.reconnect().await?;
        }
        host.check().await.map(|_| ())
    }
}
