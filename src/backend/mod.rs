//! Backends: where environments run. The engine talks to every target through the one
//! [`Backend`] trait; [`docker`] implements it for a Docker Engine (local socket or `DOCKER_HOST`),
//! [`ssh`] for a Docker Engine on a host reached over SSH (the same Docker code, over a forwarded
//! socket), and [`fleet`] for several hosts at once, each instance on the host its role places it on.
//!
//! A backend only does single, concrete operations (create this container, list those); the
//! decisions (what to create, in which order, when to stop the old one) are made by the
//! [`planner`](crate::plan) and the [`engine`](crate::engine), once for all backends.
//!
//! Everything a backend owns carries labels under [`LABEL_PREFIX`]; that is how `plan` finds what runs.

pub mod docker;
pub mod fleet;
pub mod ssh;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::model::{Build, Port, Resources, RestartPolicy, Secret, ServiceKind, Volume};
use crate::registry::PullProgress;

/// Prefix of every label the library puts on what it owns. Users' labels may not use it.
pub const LABEL_PREFIX: &str = "io.harbormaster.";

/// Label keys.
pub(crate) mod label {
    pub const MANAGED: &str = "io.harbormaster.managed";
    pub const PROJECT: &str = "io.harbormaster.project";
    pub const ENVIRONMENT: &str = "io.harbormaster.environment";
    pub const SERVICE: &str = "io.harbormaster.service";
    pub const SLOT: &str = "io.harbormaster.slot";
    pub const KIND: &str = "io.harbormaster.kind";
    pub const SPEC_HASH: &str = "io.harbormaster.spec-hash";
    pub const SPEC: &str = "io.harbormaster.spec";
    pub const SECRET_KEYS: &str = "io.harbormaster.secret-keys";
    pub const VOLUME: &str = "io.harbormaster.volume";
    /// On a record: its kind (`revision`, `lock`, `audit`).
    pub const RECORD: &str = "io.harbormaster.record";
    /// On a record: prefix of its data keys.
    pub const DATA_PREFIX: &str = "io.harbormaster.data.";
}

/// Which environment an operation concerns: the owner of containers, network and volumes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Project name.
    pub project: String,
    /// Environment name.
    pub environment: String,
}

impl Scope {
    /// `project-environment`.
    pub fn qualified(&self) -> String {
        format!("{}-{}", self.project, self.environment)
    }

    /// The environment's network name.
    pub fn network_name(&self) -> String {
        self.qualified()
    }

    /// The engine-side name of a named volume of the environment.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}-{}", self.qualified(), volume)
    }

    /// Labels that mark something as owned by this environment.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (label::MANAGED.to_string(), "true".to_string()),
            (label::PROJECT.to_string(), self.project.clone()),
            (label::ENVIRONMENT.to_string(), self.environment.clone()),
        ])
    }
}

/// Everything needed to create one instance (container) of a service.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// Container name.
    pub name: String,
    /// The owning environment.
    pub scope: Scope,
    /// The service name, also its DNS alias on the environment network.
    pub service: String,
    /// Image ID to run.
    pub image_id: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// Plain environment variables.
    pub env: BTreeMap<String, String>,
    /// Secret environment variables (values are redacted in `Debug`).
    pub secrets: BTreeMap<String, Secret>,
    /// Ports.
    pub ports: Vec<Port>,
    /// Mounts (named volumes are the environment's).
    pub volumes: Vec<Volume>,
    /// Limits.
    pub resources: Resources,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// All labels, the library's included.
    pub labels: BTreeMap<String, String>,
    /// User.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Grace time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The host it is placed on, for a backend with several [`hosts`](Backend::hosts) (`None`
    /// elsewhere, where it is ignored).
    pub host: Option<String>,
    /// The image pinned to its registry digest (`name@sha256:…`), when it has one: a host that
    /// lacks [`image_id`](Self::image_id) pulls this instead of being shipped the image.
    pub image_pull: Option<String>,
}

/// The state of an observed instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Being restarted by its restart policy.
    Restarting,
    /// Paused.
    Paused,
    /// Exited (see the exit code).
    Exited,
    /// Dead or being removed.
    Dead,
    /// Anything else the engine reports.
    Unknown,
}

/// The engine's own health status (from an image `HEALTHCHECK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineHealth {
    /// No `HEALTHCHECK`.
    None,
    /// Within its start period.
    Starting,
    /// Healthy.
    Healthy,
    /// Unhealthy, with the last check's output.
    Unhealthy(String),
}

/// A published port of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedPort {
    /// Port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address it is bound to.
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
}

/// An instance found on the target, with what the library recorded on it.
#[derive(Clone)]
pub struct Instance {
    /// Engine ID.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Replica slot (0-based).
    pub slot: u32,
    /// Service or job.
    pub kind: ServiceKind,
    /// Hash of the configuration it was created from.
    pub spec_hash: String,
    /// The configuration it was created from (JSON, no secret values).
    pub spec_json: Option<String>,
    /// Image ID it runs.
    pub image_id: String,
    /// State.
    pub state: InstanceState,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// How many times its restart policy restarted it.
    pub restarts: u32,
    /// The engine's health status.
    pub engine_health: EngineHealth,
    /// Published ports.
    pub published: Vec<PublishedPort>,
    /// Its address on the environment network.
    pub ip: Option<IpAddr>,
    /// When it was created (RFC 3339, as the engine reports it; sorts chronologically).
    pub created: String,
    /// The host it runs on, for a backend with several [`hosts`](Backend::hosts).
    pub host: Option<String>,
    /// Values of its secret variables, for change detection only. Never printed.
    pub(crate) secret_env: BTreeMap<String, String>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("service", &self.service)
            .field("slot", &self.slot)
            .field("kind", &self.kind)
            .field("spec_hash", &self.spec_hash)
            .field("image_id", &self.image_id)
            .field("state", &self.state)
            .field("exit_code", &self.exit_code)
            .field("restarts", &self.restarts)
            .field("engine_health", &self.engine_health)
            .field("published", &self.published)
            .field("ip", &self.ip)
            .field("created", &self.created)
            .field("host", &self.host)
            .field("secret_env", &format_args!("<{} redacted>", self.secret_env.len()))
            .finish()
    }
}

#[cfg(test)]
impl Instance {
    /// A running instance in `slot` of `service`, made from `spec_hash` on `image_id`, for unit tests.
    pub(crate) fn sample(service: &str, kind: ServiceKind, slot: u32, spec_hash: &str, image_id: &str) -> Instance {
        Instance {
            id: format!("id-{service}-{slot}"),
            name: format!("{service}-{slot}"),
            service: service.to_string(),
            slot,
            kind,
            spec_hash: spec_hash.to_string(),
            spec_json: Some("{}".into()),
            image_id: image_id.to_string(),
            state: InstanceState::Running,
            exit_code: None,
            restarts: 0,
            engine_health: EngineHealth::None,
            published: Vec::new(),
            ip: None,
            created: format!("2026-01-01T00:00:0{slot}Z"),
            host: None,
            secret_env: BTreeMap::new(),
        }
    }
}

impl Instance {
    /// Whether it is running (or being restarted).
    pub fn is_running(&self) -> bool {
        matches!(self.state, InstanceState::Running | InstanceState::Restarting)
    }
}

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a container's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The container it came from.
    pub instance: String,
    /// Stdout or stderr.
    pub stream: LogStream,
    /// The line, without its newline.
    pub text: String,
}

/// What a command run with `exec` produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code.
    pub exit_code: i64,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// What a target knows of one of its images.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image ID (`sha256:…` of its configuration; the same on every engine that has it).
    pub id: String,
    /// `name@sha256:…` for every repository it was pulled from or pushed to.
    pub repo_digests: Vec<String>,
    /// Its OS (`linux`), if known.
    pub os: String,
    /// Its architecture (`amd64`), if known.
    pub architecture: String,
}

/// A small named record of an environment on the target: the deploy lock and the renewals of its
/// lease. Creating one is an atomic test-and-set on its name (two processes never both create the
/// same name), and records survive the routine pruning of containers and images (on a Docker
/// engine they are volumes, which `docker system prune` without `--volumes` keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The backend's ID (used to remove it).
    pub id: String,
    /// Unique name on the target; creating a second record with the same name fails.
    pub name: String,
    /// What it is (`lock`, `lease`).
    pub kind: String,
    /// When it was created, by the target's clock ([`Backend::clock`]).
    pub created: SystemTime,
    /// Its data.
    pub data: BTreeMap<String, String>,
}

/// A record to create.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// Unique name on the target.
    pub name: String,
    /// What it is.
    pub kind: String,
    /// Its data (never secret values).
    pub data: BTreeMap<String, String>,
}

/// One file of an environment's durable state store ([`Backend::read_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    /// Its name in the store.
    pub name: String,
    /// Its contents.
    pub contents: Vec<u8>,
}

/// One host of a backend that spreads an environment over several hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// Its name, as roles map to it ([`EnvironmentBuilder::hosts`](crate::EnvironmentBuilder::hosts)).
    pub name: String,
    /// The address at which its published ports are reached, by the library and by the other hosts.
    pub address: String,
}

/// A target that runs containers: the local Docker engine, a remote one, a cloud API.
///
/// Implementations enforce a deadline on every call they make (none may hang forever) and
/// return [`Error`](crate::Error)s that name what they were doing and to what.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short description for messages, such as `docker unix:///var/run/docker.sock`.
    fn describe(&self) -> String;

    /// The ID of a local image reference, or `None` if the engine does not have it.
    async fn image_id(&self, reference: &str) -> Result<Option<String>>;

    /// Builds an image and tags it; returns its ID.
    async fn build_image(&self, build: &Build, tag: &str) -> Result<String>;

    /// What the target knows of a local image (by reference or ID): its ID and the registry
    /// digests it was pulled or pushed as; `None` if it does not have it. The default knows only
    /// the ID ([`image_id`](Self::image_id)).
    async fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>> {
        Ok(self.image_id(reference).await?.map(|id| ImageInfo { id, ..ImageInfo::default() }))
    }

    /// Pulls `reference` from its registry with the target's credentials, calling `progress` as
    /// it goes, and returns the image as the target then has it. Concurrent pulls of one
    /// reference transfer it once. The default cannot pull.
    async fn pull_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<ImageInfo> {
        let _ = progress;
        Err(crate::error::Error::backend("pull image", reference, format!("{} cannot pull images", self.describe())))
    }

    /// The digest `reference` has in its registry now, without pulling it; `Ok(None)` if the
    /// target cannot ask (the default).
    async fn registry_digest(&self, reference: &str) -> Result<Option<String>> {
        let _ = reference;
        Ok(None)
    }

    /// Pushes the local image `reference` (`registry/repo:tag`) to its registry; the digest it
    /// has there. The default cannot push.
    async fn push_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<String> {
        let _ = progress;
        Err(crate::error::Error::backend("push image", reference, format!("{} cannot push images", self.describe())))
    }

    /// Every instance the environment owns, in any state.
    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>>;

    /// One instance, freshly read.
    async fn inspect_instance(&self, id: &str) -> Result<Instance>;

    /// Creates the environment's network if missing; `true` if it was created.
    async fn ensure_network(&self, scope: &Scope) -> Result<bool>;

    /// Removes the environment's network; `true` if it existed.
    async fn remove_network(&self, scope: &Scope) -> Result<bool>;

    /// Creates a named volume of the environment if missing; `true` if it was created.
    async fn ensure_volume(&self, scope: &Scope, volume: &str) -> Result<bool>;

    /// The engine-side names of the environment's volumes.
    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>>;

    /// Removes a volume by its engine-side name.
    async fn remove_volume(&self, name: &str) -> Result<()>;

    /// Creates an instance (not started); returns its ID.
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<String>;

    /// Starts a created or stopped instance; starting a running one is not an error.
    async fn start_instance(&self, id: &str) -> Result<()>;

    /// Stops an instance: SIGTERM, then SIGKILL after `grace`.
    async fn stop_instance(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes an instance (stopping it if needed). Removing a missing one is not an error.
    async fn remove_instance(&self, id: &str) -> Result<()>;

    /// Resolves when the instance is not running any more, with its exit code.
    async fn wait_exit(&self, id: &str) -> Result<i64>;

    /// The last `lines` lines of its log.
    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>>;

    /// Its log as a stream; with `follow`, new lines as they are written.
    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>>;

    /// Runs a command inside the instance, bounded by `timeout`.
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput>;

    /// Writes a file into an instance (created or running), creating its directories.
    async fn write_file(&self, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()>;

    /// Reads a file from an instance (created or running); `Ok(None)` if there is no such file.
    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>>;

    /// Creates a record; `Ok(None)` if a record with that name exists already (so a record name
    /// works as a lock).
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>>;

    /// The environment's records of one kind, oldest first.
    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>>;

    /// Removes a record by ID; a missing one is not an error.
    async fn remove_record(&self, id: &str) -> Result<()>;

    /// The target's clock. Leases are judged by it, so deployers whose own clocks differ agree.
    async fn clock(&self) -> Result<SystemTime> {
        Ok(SystemTime::now())
    }

    /// Every file of the environment's durable state store (revisions, audit trail, waiting
    /// promotions, finished jobs), or `None` if it has no store. The store must survive what
    /// routine maintenance removes: stopped containers, unused images and networks.
    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
        let _ = scope;
        Err(crate::error::Error::backend("read state", self.describe(), "this backend keeps no state store"))
    }

    /// Writes (creates or replaces) one file of the environment's state store, creating the store
    /// if it has none.
    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
        let _ = (scope, contents);
        Err(crate::error::Error::backend("write state", name, "this backend keeps no state store"))
    }

    /// Removes the environment's state store and the images it keeps (see
    /// [`keep_image`](Self::keep_image)); a missing store is not an error.
    async fn remove_state(&self, scope: &Scope) -> Result<()> {
        let _ = scope;
        Ok(())
    }

    /// Lets go of whatever the backend holds open to reach the state store of `scope` (called when
    /// an operation ends).
    async fn release_state(&self, scope: &Scope) {
        let _ = scope;
    }

    /// Keeps a copy of an image for the environment where pruning cannot remove it, so that a
    /// revision can be rolled back to after `docker system prune -a` (no registry needed).
    async fn keep_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        let _ = (scope, image_id);
        Ok(())
    }

    /// Makes sure the target has `image_id`, loading the kept copy if the image was removed;
    /// `Ok(false)` if it has neither. A restored image gets its `reference` (`name:tag`) back when
    /// that names no other image.
    async fn restore_image(&self, scope: &Scope, image_id: &str, reference: Option<&str>) -> Result<bool> {
        let _ = (scope, reference);
        Ok(self.image_id(image_id).await?.is_some())
    }

    /// Drops the kept copy of an image; a missing one is not an error.
    async fn drop_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        let _ = (scope, image_id);
        Ok(())
    }

    /// Where the library reaches a container port of an instance for HTTP and TCP probes; `Ok(None)`
    /// if it cannot be reached at all (not published, no address).
    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>>;

    /// The host name at which published ports are reached (`127.0.0.1` for a local engine).
    fn published_host(&self) -> String;

    /// The hosts instances are placed on, by name; empty for a single-host backend, which runs
    /// everything on its one engine and ignores [`InstanceSpec::host`].
    fn hosts(&self) -> Vec<HostInfo> {
        Vec::new()
    }

    /// Streams an image out as a `docker save` archive (to ship it to another engine).
    fn export_image(&self, image_id: &str) -> BoxStream<'static, Result<Bytes>> {
        let e =
            crate::error::Error::backend("export image", image_id, format!("{} cannot export images", self.describe()));
        Box::pin(futures::stream::once(async move { Err(e) }))
    }

    /// Loads an image archive as [`export_image`](Self::export_image) gives it.
    async fn load_image(&self, archive: BoxStream<'static, Result<Bytes>>) -> Result<()> {
        drop(archive);
        Err(crate::error::Error::backend("load image", self.describe(), "this backend cannot load images"))
    }

    /// Checks, before an operation changes anything, that the target can carry it out (every host
    /// reachable, its engine answering, disk space left). The default checks nothing.
    async fn preflight(&self) -> Result<()> {
        Ok(())
    }

    /// Checks what only the target can tell about instances made from `spec`, before anything
    /// changes: that its CPU limit fits the host's cores, that its bind mount sources exist there.
    /// A problem is an [`Error::Invalid`](crate::Error::Invalid) naming the service and field. The
    /// default checks nothing.
    async fn check_spec(&self, spec: &InstanceSpec) -> Result<()> {
        let _ = spec;
        Ok(())
    }
}
