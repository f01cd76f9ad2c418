//! The runtime's vocabulary: which environment ([`Scope`]), what to run ([`InstanceSpec`]), what
//! runs ([`Instance`]) and what comes back from it (logs, exec output).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::label;
use crate::model::{ContainerOptions, HealthCheck, Port, Resources, RestartPolicy, Secret, ServiceKind, Volume};

/// Which environment an operation concerns: the owner of containers, network and volumes.
///
/// Two scopes are the same environment when project and name are: its `marks` are not compared.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Project name.
    pub project: String,
    /// Environment name.
    pub environment: String,
    /// The environment's own labels ([`EnvironmentBuilder::label`](crate::EnvironmentBuilder::label)),
    /// put on everything it owns besides the library's; read back by
    /// [`Backend::environments`](super::Backend::environments).
    pub marks: BTreeMap<String, String>,
    /// Whether its instances run on the target's default network instead of a network of the
    /// environment's own: for a one-service test environment, which has nothing to resolve by
    /// name (the harness sets it; creating and joining a network of its own costs about 100 ms).
    pub default_network: bool,
}

/// The engine's default network (Docker's `bridge`).
pub const DEFAULT_NETWORK: &str = "bridge";

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.project == other.project && self.environment == other.environment
    }
}

impl Eq for Scope {}

impl std::hash::Hash for Scope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.project.hash(state);
        self.environment.hash(state);
    }
}

impl Scope {
    /// Environment `environment` of `project`, with no marks.
    pub fn new(project: impl Into<String>, environment: impl Into<String>) -> Scope {
        Scope {
            project: project.into(),
            environment: environment.into(),
            marks: BTreeMap::new(),
            default_network: false,
        }
    }

    /// `project-environment`.
    pub fn qualified(&self) -> String {
        format!("{}-{}", self.project, self.environment)
    }

    /// The environment's network name.
    pub fn network_name(&self) -> String {
        if self.default_network {
            DEFAULT_NETWORK.to_string()
        } else {
            self.qualified()
        }
    }

    /// The engine-side name of a named volume of the environment.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}-{}", self.qualified(), volume)
    }

    /// Labels that mark something as owned by this environment: the library's, and its marks.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.marks.clone();
        labels.extend([
            (label::MANAGED.to_string(), "true".to_string()),
            (label::PROJECT.to_string(), self.project.clone()),
            (label::ENVIRONMENT.to_string(), self.environment.clone()),
        ]);
        if !self.marks.is_empty() {
            labels.insert(label::MARKS.to_string(), self.marks.keys().cloned().collect::<Vec<_>>().join(","));
        }
        labels
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
    /// All labels, the library's included: short values a target can select by (every value
    /// the library writes here fits a Kubernetes label: at most 63 characters).
    pub labels: BTreeMap<String, String>,
    /// What the library records on the instance that is no short value (its configuration as
    /// JSON, its image, its secret variables' names): kept beside the labels, where the target
    /// keeps such metadata (a Docker engine and Fly: labels and metadata too; Kubernetes:
    /// annotations, as `kubectl` keeps its last applied configuration).
    pub annotations: BTreeMap<String, String>,
    /// User.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Grace time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The host it is placed on, for a backend with several [`topology`](super::Backend::topology) (`None`
    /// elsewhere, where it is ignored).
    pub host: Option<String>,
    /// The image pinned to its registry digest (`name@sha256:…`), when it has one: a host that
    /// lacks [`image_id`](Self::image_id) pulls this instead of being shipped the image.
    pub image_pull: Option<String>,
    /// The service's health check, for a target that runs checks itself
    /// ([`Backend::reports_health`](super::Backend::reports_health)); the library probes otherwise.
    pub health: Option<HealthCheck>,
    /// What the container runs with beyond the above (capabilities, namespaces, kernel
    /// settings, …); a target refuses in [`check_spec`](super::InstanceRuntime::check_spec) or
    /// [`limits`](super::Backend::limits) what it cannot express.
    pub container: ContainerOptions,
    /// More names the instance answers to on the environment's network.
    pub aliases: Vec<String>,
    /// Existing networks the instance joins too, where it answers to its service name and
    /// aliases.
    pub networks: Vec<String>,
    /// The instance this one replaces, whose anonymous volumes (its image's `VOLUME`s) it takes
    /// over at the same paths where its own mounts put nothing, as Compose does
    /// ([`ServiceBuilder::keep_anonymous_volumes`](crate::ServiceBuilder::keep_anonymous_volumes));
    /// a target without anonymous volumes ignores it.
    pub inherit_volumes_from: Option<String>,
}

#[cfg(test)]
impl InstanceSpec {
    /// The instance spec of `svc` in environment `p-e`, as the engine makes one, for tests of a
    /// backend (without the plan layer above it).
    pub(crate) fn of_service(svc: &crate::model::Service) -> InstanceSpec {
        InstanceSpec {
            name: format!("p-e-{}-0", svc.name()),
            scope: Scope::new("p", "e"),
            service: svc.name().to_string(),
            image_id: "sha256:abc".into(),
            entrypoint: svc.entrypoint().map(<[String]>::to_vec),
            command: svc.command().map(<[String]>::to_vec),
            env: svc.env().clone(),
            secrets: BTreeMap::new(),
            ports: svc.ports().to_vec(),
            volumes: svc.volumes().to_vec(),
            resources: svc.resources().clone(),
            restart: svc.restart_policy(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            user: svc.user().map(str::to_string),
            workdir: svc.working_dir().map(str::to_string),
            stop_grace: svc.stop_grace(),
            host: None,
            image_pull: None,
            health: svc.health().cloned(),
            container: svc.container_options().clone(),
            aliases: svc.aliases().to_vec(),
            networks: svc.external_networks().to_vec(),
            inherit_volumes_from: None,
        }
    }
}

/// The state of an observed instance. Serializes as its lowercase name (`"running"`), which is
/// also its `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InstanceState::Created => "created",
            InstanceState::Running => "running",
            InstanceState::Restarting => "restarting",
            InstanceState::Paused => "paused",
            InstanceState::Exited => "exited",
            InstanceState::Dead => "dead",
            InstanceState::Unknown => "unknown",
        })
    }
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
    /// The host it runs on, for a backend with several [`topology`](super::Backend::topology).
    pub host: Option<String>,
    /// Values of its secret variables, for change detection only. Never printed.
    pub(crate) secret_env: BTreeMap<String, String>,
    /// Digests of its secrets where the target keeps only those (a swarm's secrets), for change
    /// detection ([`secret_digest`](crate::model::secret_digest)).
    pub(crate) secret_digests: BTreeMap<String, String>,
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
            secret_digests: BTreeMap::new(),
        }
    }
}

impl Instance {
    /// An instance as its labels describe it ([`InstanceLabels`](label::InstanceLabels), the one
    /// codec), with what only the target reports (state, health, ports, address, creation time) at
    /// its defaults: a backend fills those in.
    pub(crate) fn labelled(labels: label::InstanceLabels, id: String, name: String, image_id: String) -> Instance {
        Instance {
            id,
            name,
            service: labels.service,
            slot: labels.slot,
            kind: labels.kind,
            spec_hash: labels.spec_hash,
            spec_json: labels.spec_json,
            image_id,
            state: InstanceState::Unknown,
            exit_code: None,
            restarts: 0,
            engine_health: EngineHealth::None,
            published: Vec::new(),
            ip: None,
            created: String::new(),
            host: None,
            secret_env: BTreeMap::new(),
            secret_digests: BTreeMap::new(),
        }
    }

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
