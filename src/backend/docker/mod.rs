//! The Docker Engine backend, on the local socket, `DOCKER_HOST`, or an explicit address.
//!
//! - [`connect`](DockerBackend::connect) / [`builder`](DockerBackend::builder): connecting and API
//!   version negotiation (the engine may speak an older API than bollard's default, e.g. 1.41).
//! - `create.rs`: where a container is described to the engine (`create_body`: every option of a
//!   service, mounted, limited and networked); `containers.rs`: created, started, stopped, inspected.
//! - `images.rs`: image look-up and builds through the engine's build API; `context.rs`: the build
//!   context as the CLI sends it (`.dockerignore`) and its fingerprint (an unchanged one is not sent).
//! - `pull.rs`: pulls (progress, deadline, stall detection, one transfer per reference), pushes,
//!   and what a tag points to in its registry, with the backend's registry credentials.
//! - `network.rs`: the environment's network and named volumes.
//! - `files.rs`: files written into and read from containers (the archive API).
//! - `records.rs`: the deploy lock's records, as volumes (an atomic test-and-set on a name).
//! - `transport.rs`: the silent path for container create and inspect, whose bodies hold secret
//!   values (bollard logs bodies through the `log` facade).
//! - `store.rs`: the environment's durable state store, as volumes whose labels hold its files
//!   (they survive `docker system prune -a`).
//! - `state.rs`: kept images, in volumes reached through accessor containers (and the state stores
//!   of harbormaster 0.1, read once).
//!
//! Every call is bounded by the backend's call timeout (default 60 s); a call that exceeds it fails
//! with an error naming the operation and its target.

mod accessor;
mod containers;
mod context;
mod create;
mod files;
mod images;
mod inventory;
pub(crate) mod limits;
mod network;
mod ports;
pub(crate) mod pull;
mod records;
mod state;
mod store;
mod transport;

#[cfg(test)]
pub(crate) use create::create_body;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;
use tracing::instrument::WithSubscriber;

use super::{
    Backend, ExecOutput, ImageInfo, ImageShipping, ImageStore, Instance, InstanceFiles, InstanceRuntime, InstanceSpec,
    LogLine, NewRecord, Record, RecordStore, Scope, StateFile,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Build;
use crate::registry::{PullProgress, Registries, RegistryAuth};

/// How HTTP and TCP probes reach a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeRoute {
    /// Through the container's address on the environment network (a local engine on Linux).
    ContainerIp,
    /// Through a published host port (remote engines, Docker Desktop); ports must be published.
    PublishedPort,
}

/// A [`Backend`] on a Docker Engine.
///
/// ```no_run
/// # async fn f() -> harbormaster::Result<()> {
/// use harbormaster::DockerBackend;
/// let docker = DockerBackend::connect().await?; // DOCKER_HOST or the local socket
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DockerBackend {
    docker: Docker,
    endpoint: String,
    route: ProbeRoute,
    published_host: String,
    call_timeout: Duration,
    accessors: std::sync::Arc<state::Accessors>,
    transport: transport::Transport,
    /// The host's cores, once read.
    cores: std::sync::Arc<tokio::sync::OnceCell<i64>>,
    /// The host kernel's version (major, minor), once read.
    kernel: std::sync::Arc<tokio::sync::OnceCell<Option<(u32, u32)>>>,
    /// Container creates and starts in flight at once: hundreds at a time make a 2-core engine
    /// answer none of them in time (seen at 500 services), as docker-compose bounds its own.
    busy: std::sync::Arc<tokio::sync::Semaphore>,
    /// Where ephemeral ports bind when they say nothing (`None`: every address).
    ephemeral_bind: Option<std::net::IpAddr>,
    /// Registry credentials.
    registries: std::sync::Arc<Registries>,
    /// Pulls under way, one per reference.
    pulls: std::sync::Arc<pull::Pulls>,
    pull_limits: pull::PullLimits,
    /// Whether the engine runs on this machine (a local socket not forwarded from another host):
    /// its published ports are this machine's.
    on_this_host: bool,
}

/// How many container creates and starts one backend sends the engine at once (docker-compose's
/// own default limit is 64; 2-core engines time out well below it).
const CONTAINER_CALLS_AT_ONCE: usize = 16;

/// Builder for [`DockerBackend`].
#[derive(Clone, Debug)]
#[must_use]
pub struct DockerBackendBuilder {
    host: Option<String>,
    call_timeout: Duration,
    route: Option<ProbeRoute>,
    published_host: Option<String>,
    ephemeral_bind: Option<Option<std::net::IpAddr>>,
    registries: Registries,
    pull_limits: pull::PullLimits,
    forwarded: bool,
}

impl DockerBackendBuilder {
    /// The socket is forwarded from another host (SSH): the engine's ports are that host's.
    pub(crate) fn forwarded(mut self) -> Self {
        self.forwarded = true;
        self
    }

    /// The host address ephemeral ports ([`Port::publish_ephemeral`](crate::Port::publish_ephemeral))
    /// bind to when they name none (default: `127.0.0.1` for a local socket, where the library and
    /// the tests reach them; every address for a remote engine). `None`: every address.
    pub fn ephemeral_bind(mut self, address: Option<std::net::IpAddr>) -> Self {
        self.ephemeral_bind = Some(address);
        self
    }

    /// Credentials for a registry (`registry.example.com:5000`, `ghcr.io`, `docker.io`), used for
    /// pulls, pushes and registry look-ups of images it holds. They take precedence over the Docker
    /// CLI's configuration for that registry.
    ///
    /// ```no_run
    /// # async fn f() -> harbormaster::Result<()> {
    /// use harbormaster::{DockerBackend, RegistryAuth, Secret};
    /// let docker = DockerBackend::builder()
    ///     .registry_auth("registry.example.com:5000", RegistryAuth::basic("deploy", Secret::from_env("REGISTRY_PASSWORD")?))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn registry_auth(mut self, registry: impl AsRef<str>, auth: RegistryAuth) -> Self {
        self.registries.give(registry.as_ref(), auth);
        self
    }

    /// Whether the Docker CLI's credentials are used for registries given none (default `true`):
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, its `auths`, and its `credsStore`
    /// and `credHelpers` through the `docker-credential-*` helpers, as `docker pull` uses them.
    pub fn docker_config_credentials(mut self, read: bool) -> Self {
        self.registries.docker_config = read;
        self
    }

    /// Longest one image pull (or push) may take in all (default 30 minutes).
    pub fn pull_timeout(mut self, d: Duration) -> Self {
        self.pull_limits.deadline = d;
        self
    }

    /// Longest a pull (or push) may go without progress before it is cancelled as stalled
    /// (default 60 s): a registry that stops sending fails the pull instead of hanging it.
    pub fn pull_stall_timeout(mut self, d: Duration) -> Self {
        self.pull_limits.stall = d;
        self
    }

    /// Registry credentials and pull limits as another builder holds them (an SSH host's).
    pub(crate) fn registry_settings(mut self, registries: Registries, limits: pull::PullLimits) -> Self {
        self.registries = registries;
        self.pull_limits = limits;
        self
    }

    /// The engine address: `unix:///path`, `tcp://host:port` or `http://host:port`
    /// (default: `DOCKER_HOST`, else the local socket).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Upper bound of each engine call (default 60 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// How probes reach containers (default: container IP for a local socket, else published ports).
    pub fn probe_route(mut self, route: ProbeRoute) -> Self {
        self.route = Some(route);
        self
    }

    /// The host name at which published ports are reached (default `127.0.0.1` for a local socket,
    /// the engine's host otherwise).
    pub fn published_host(mut self, host: impl Into<String>) -> Self {
        self.published_host = Some(host.into());
        self
    }

    /// Connects, negotiates the API version and pings the engine.
    pub async fn connect(self) -> Result<DockerBackend> {
        let endpoint = self
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let connect_err = |message: String| Error::Connect { endpoint: endpoint.clone(), message };
        let secs = self.call_timeout.as_secs().max(1);
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, secs, bollard::API_DEFAULT_VERSION)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(&endpoint, secs, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(connect_err("unsupported address; use unix://, tcp:// or http://".into()));
        }
        .map_err(|e| connect_err(e.to_string()))?;
        let docker = tokio::time::timeout(self.call_timeout, docker.negotiate_version())
            .await
            .map_err(|_| connect_err(format!("no answer within {}", crate::duration::human(self.call_timeout))))?
            .map_err(|e| connect_err(e.to_string()))?;
        tokio::time::timeout(self.call_timeout, docker.ping())
            .await
            .map_err(|_| connect_err(format!("no answer within {}", crate::duration::human(self.call_timeout))))?
            .map_err(|e| connect_err(e.to_string()))?;
        let local = endpoint.starts_with("unix://");
        let route = self.route.unwrap_or(if local && cfg!(target_os = "linux") {
            ProbeRoute::ContainerIp
        } else {
            ProbeRoute::PublishedPort
        });
        let published_host =
            self.published_host.unwrap_or_else(|| if local { "127.0.0.1".to_string() } else { host_of(&endpoint) });
        let ephemeral_bind =
            self.ephemeral_bind.unwrap_or_else(|| local.then_some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));
        let transport = transport::Transport::new(&endpoint, docker.client_version().to_string(), self.call_timeout)
            .ok_or_else(|| connect_err("unsupported address; use unix://, tcp:// or http://".into()))?;
        tracing::debug!(%endpoint, api = %docker.client_version(), "connected to docker");
        let on_this_host = local && !self.forwarded && address_is_here(&published_host);
        Ok(DockerBackend {
            docker,
            endpoint,
            route,
            published_host,
            call_timeout: self.call_timeout,
            accessors: DockerBackend::new_accessors(),
            transport,
            cores: Default::default(),
            kernel: Default::default(),
            busy: std::sync::Arc::new(tokio::sync::Semaphore::new(CONTAINER_CALLS_AT_ONCE)),
            ephemeral_bind,
            registries: std::sync::Arc::new(self.registries),
            pulls: Default::default(),
            pull_limits: self.pull_limits,
            on_this_host,
        })
    }
}

/// Whether `host` (where published ports are reached) can be an address of this machine: an IP
/// that cannot be bound here is another machine's or another network namespace's (an engine on a
/// local socket whose ports live elsewhere), so a local port check would say nothing about it.
pub(super) fn address_is_here(host: &str) -> bool {
    let Ok(ip) = host.parse::<std::net::IpAddr>() else { return true };
    !matches!(
        std::net::TcpListener::bind((ip, 0)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable
    )
}

fn host_of(endpoint: &str) -> String {
    let rest = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, _)) => h.to_string(),
        None => hostport.to_string(),
    }
}

impl DockerBackend {
    /// Connects to `DOCKER_HOST`, or the local socket, with default settings.
    pub async fn connect() -> Result<Self> {
        Self::builder().connect().await
    }

    /// A builder for other settings.
    pub fn builder() -> DockerBackendBuilder {
        DockerBackendBuilder {
            host: None,
            call_timeout: Duration::from_secs(60),
            route: None,
            published_host: None,
            ephemeral_bind: None,
            registries: Registries::new(),
            pull_limits: pull::PullLimits::default(),
            forwarded: false,
        }
    }

    /// The underlying bollard client, for what this crate does not cover.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The API version in use after negotiation (e.g. `1.41`).
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Builds an image through the engine and tags it; returns its ID. The same as a service's
    /// [`build_from`](crate::ServiceBuilder::build_from), for images shared by several services.
    pub async fn build(&self, build: &Build, tag: &str) -> Result<String> {
        images::build(self, build, tag).await
    }

    /// Pulls `reference` from its registry (see [`ImageStore::pull_image`]), without progress reports.
    pub async fn pull(&self, reference: &str) -> Result<ImageInfo> {
        pull::pull(self, reference, &|_| {}).await.map_err(Error::scrubbed)
    }

    /// Pushes the local image `reference` to its registry; the digest it has there.
    pub async fn push(&self, reference: &str) -> Result<String> {
        pull::push(self, reference, &|_| {}).await.map_err(Error::scrubbed)
    }

    /// The engine's API client (for the swarm backend, which talks to a manager's engine).
    pub(crate) fn engine(&self) -> &Docker {
        &self.docker
    }

    /// The silent path, for calls whose bodies carry secret values.
    pub(crate) fn silent(&self) -> &transport::Transport {
        &self.transport
    }

    /// The credentials the engine is given for `reference`'s registry, if any are known.
    pub(crate) async fn engine_credentials(&self, reference: &str) -> Option<bollard::auth::DockerCredentials> {
        let image = crate::registry::ImageRef::parse(reference)?;
        pull::credentials_for(self, &image).await.1
    }

    /// Runs one engine call under the call timeout, naming the operation and target on failure.
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        target: &str,
        fut: impl Future<Output = std::result::Result<T, bollard::errors::Error>>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(self.call_timeout, fut).await;
        tracing::trace!(operation, target, took_ms = started.elapsed().as_secs_f64() * 1e3, "engine call");
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::backend_kind(operation, target, engine_kind(&e), engine_message(&e))),
            Err(_) => Err(Error::backend_kind(
                operation,
                target,
                ErrorKind::Timeout,
                format!("no answer from the engine within {}", crate::duration::human(self.call_timeout)),
            )),
        }
    }
}

/// Runs an engine call with tracing silenced: bollard logs request payloads and decoded responses
/// (which hold containers' environment, secrets included) at debug and trace level.
pub(crate) async fn quiet<T>(fut: impl Future<Output = T>) -> T {
    fut.with_subscriber(tracing::subscriber::NoSubscriber::default()).await
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// What kind of failure an engine error is: by its status code, or unreachable when the engine
/// could not be talked to at all.
pub(crate) fn engine_kind(e: &bollard::errors::Error) -> ErrorKind {
    use bollard::errors::Error as E;
    match e {
        // A host port held by something else: Docker answers 500 with the kernel's words.
        E::DockerResponseServerError { message, .. }
            if message.contains("port is already allocated") || message.contains("address already in use") =>
        {
            ErrorKind::Conflict
        }
        E::DockerResponseServerError { status_code, .. } => ErrorKind::from_status(*status_code),
        E::RequestTimeoutError => ErrorKind::Timeout,
        E::HyperResponseError { .. } | E::IOError { .. } | E::SocketNotFoundError(_) => ErrorKind::Unreachable,
        _ => ErrorKind::Other,
    }
}

/// An engine call's failure as an [`Error::Backend`] of the kind its status says.
pub(crate) fn engine_error(operation: &'static str, target: impl Into<String>, e: &bollard::errors::Error) -> Error {
    Error::backend_kind(operation, target, engine_kind(e), engine_message(e))
}

/// What the engine said, scrubbed of secret values (runc quotes a container's environment in
/// some of its errors).
pub(crate) fn engine_message(e: &bollard::errors::Error) -> String {
    let text = match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            format!("engine answered {status_code}: {message}")
        }
        other => other.to_string(),
    };
    crate::scrub::text(&text).into_owned()
}

#[async_trait]
impl Backend for DockerBackend {
    fn describe(&self) -> String {
        format!("docker {}", self.endpoint)
    }

    fn limits(&self, service: &crate::model::Service) -> Vec<crate::backend::Limit> {
        limits::of(service)
    }

    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>> {
        quiet(containers::list(self, scope)).await
    }

    async fn inspect_instance(&self, id: &str) -> Result<Instance> {
        quiet(containers::inspect(self, id)).await
    }

    async fn ensure_network(&self, scope: &Scope) -> Result<bool> {
        quiet(network::ensure_network(self, scope)).await
    }

    async fn remove_network(&self, scope: &Scope) -> Result<bool> {
        quiet(network::remove_network(self, scope)).await
    }

    async fn ensure_volume(&self, scope: &Scope, volume: &str) -> Result<bool> {
        quiet(network::ensure_volume(self, scope, volume, &Default::default())).await
    }

    async fn ensure_volume_with(
        &self,
        scope: &Scope,
        volume: &str,
        driver_opts: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool> {
        quiet(network::ensure_volume(self, scope, volume, driver_opts)).await
    }

    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>> {
        quiet(network::list_volumes(self, scope)).await
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        quiet(network::remove_volume(self, name)).await
    }

    async fn environments(&self) -> Result<Vec<Scope>> {
        quiet(inventory::environments(self)).await
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        quiet(containers::wait_exit(self, id)).await
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        quiet(containers::logs_tail(self, id, lines)).await
    }

    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>> {
        containers::logs(self, id, follow, tail)
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        quiet(containers::exec(self, id, command, timeout)).await
    }

    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        Ok(match self.route {
            ProbeRoute::ContainerIp => instance.ip.map(|ip| SocketAddr::new(ip, port)),
            ProbeRoute::PublishedPort => {
                instance.published.iter().find(|p| p.container_port == port && p.protocol == "tcp").and_then(|p| {
                    let host = if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" || p.host_ip == "::" {
                        self.published_host.as_str()
                    } else {
                        p.host_ip.as_str()
                    };
                    format!("{host}:{}", p.host_port).parse().ok()
                })
            }
        })
    }

    fn published_host(&self) -> String {
        self.published_host.clone()
    }

    fn images(&self) -> Option<&dyn ImageStore> {
        Some(self)
    }

    fn records(&self) -> Option<&dyn RecordStore> {
        Some(self)
    }

    fn files(&self) -> Option<&dyn InstanceFiles> {
        Some(self)
    }

    fn shipping(&self) -> Option<&dyn ImageShipping> {
        Some(self)
    }

    fn instances(&self) -> Option<&dyn InstanceRuntime> {
        Some(self)
    }
}

#[async_trait]
impl InstanceRuntime for DockerBackend {
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<String> {
        let _turn = self.busy.acquire().await;
        quiet(containers::create(self, spec)).await
    }

    async fn start_instance(&self, id: &str) -> Result<()> {
        let _turn = self.busy.acquire().await;
        // 304: already running. Starting is idempotent, as stopping is, so a rollback can restore a
        // mix of stopped and running old instances with one call each.
        let start = self.call("start container", id, async {
            match self.docker.start_container(id, None).await {
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
                other => other,
            }
        });
        quiet(start).await
    }

    async fn stop_instance(&self, id: &str, grace: Duration) -> Result<()> {
        quiet(containers::stop(self, id, grace)).await
    }

    async fn remove_instance(&self, id: &str) -> Result<()> {
        quiet(containers::remove(self, id)).await
    }

    async fn check_spec(&self, spec: &InstanceSpec) -> Result<()> {
        quiet(containers::check(self, spec)).await?;
        quiet(ports::check(self, spec)).await
    }
}

#[async_trait]
impl ImageStore for DockerBackend {
    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        quiet(images::image_id(self, reference)).await
    }

    async fn build_image(&self, build: &Build, tag: &str) -> Result<String> {
        quiet(images::build(self, build, tag)).await
    }

    async fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>> {
        quiet(pull::info(self, reference)).await
    }

    async fn pull_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<ImageInfo> {
        pull::pull(self, reference, progress).await
    }

    async fn registry_digest(&self, reference: &str) -> Result<Option<String>> {
        pull::registry_digest(self, reference).await.map(Some)
    }

    async fn push_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<String> {
        pull::push(self, reference, progress).await
    }

    async fn keep_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        quiet(state::keep_image(self, scope, image_id)).await
    }

    async fn restore_image(&self, scope: &Scope, image_id: &str, reference: Option<&str>) -> Result<bool> {
        quiet(state::restore_image(self, scope, image_id, reference)).await
    }

    async fn drop_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        quiet(state::drop_image(self, scope, image_id)).await
    }
}

#[async_trait]
impl RecordStore for DockerBackend {
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
        quiet(records::create(self, scope, record)).await
    }

    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>> {
        quiet(records::list(self, scope, kind)).await
    }

    async fn remove_record(&self, id: &str) -> Result<()> {
        quiet(records::remove(self, id)).await
    }

    async fn clock(&self) -> Result<std::time::SystemTime> {
        quiet(records::clock(self)).await
    }

    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
        quiet(store::read(self, scope)).await
    }

    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
        quiet(store::write(self, scope, name, contents)).await
    }

    async fn remove_state(&self, scope: &Scope) -> Result<()> {
        quiet(async {
            store::remove(self, scope).await?;
            state::remove(self, scope).await
        })
        .await
    }

    async fn release_state(&self, scope: &Scope) {
        quiet(state::release(self, scope)).await
    }
}

#[async_trait]
impl InstanceFiles for DockerBackend {
    async fn write_file(&self, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        quiet(files::write_file(self, id, path, contents, mode)).await
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>> {
        quiet(files::read_file(self, id, path)).await
    }
}

#[async_trait]
impl ImageShipping for DockerBackend {
    fn export_image(&self, image_id: &str) -> BoxStream<'static, Result<Bytes>> {
        images::export(self, image_id)
    }

    async fn load_image(&self, archive: BoxStream<'static, Result<Bytes>>) -> Result<()> {
        quiet(images::load(self, archive)).await
    }
}
