//! [`Service`]: one long-running service or one-shot job, built with [`ServiceBuilder`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    limits, name, Build, Condition, ContainerFile, ContainerOptions, Dependency, Device, HealthCheck, ImageSource,
    NetworkMode, Port, Publish, PullPolicy, Resources, RestartPolicy, Rollout, Secret, ServiceRef, Strategy, Ulimit,
    Volume, VolumeSource,
};
use crate::error::ValidationError;

/// Whether a service runs continuously or once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Runs continuously, with replicas.
    Service,
    /// Runs once per change and must exit 0 (migrations, seeding).
    Job,
}

/// Prefix of every label the library puts on what it owns. Users' labels may not use it.
pub const LABEL_PREFIX: &str = "io.harbormaster.";

/// A validated service description. Build one with [`Service::builder`] or [`Service::job`].
///
/// ```
/// use std::time::Duration;
/// use harbormaster::{Service, HealthCheck, Port, Condition};
/// let api = Service::builder("api")
///     .image("local/api:2")
///     .port(Port::tcp(8080).publish_ephemeral())
///     .depends_on("db", Condition::Healthy)
///     .health(HealthCheck::http(8080, "/health"))
///     .replicas(2)
///     .build()?;
/// assert_eq!(api.name(), "api");
/// # Ok::<_, harbormaster::ValidationError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Service {
    pub(crate) name: String,
    pub(crate) kind: ServiceKind,
    pub(crate) image: ImageSource,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) secrets: BTreeMap<String, Secret>,
    pub(crate) ports: Vec<Port>,
    pub(crate) volumes: Vec<Volume>,
    pub(crate) resources: Resources,
    pub(crate) restart: RestartPolicy,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) user: Option<String>,
    pub(crate) workdir: Option<String>,
    pub(crate) replicas: u32,
    pub(crate) stop_grace: Duration,
    pub(crate) health: Option<HealthCheck>,
    pub(crate) depends_on: Vec<Dependency>,
    pub(crate) rollout: Rollout,
    pub(crate) deadline: Option<Duration>,
    pub(crate) role: Option<String>,
    pub(crate) env_refs: BTreeMap<String, ServiceRef>,
    pub(crate) settle: Duration,
    pub(crate) pull: PullPolicy,
    pub(crate) container: ContainerOptions,
    pub(crate) aliases: Vec<String>,
    pub(crate) placement: Vec<String>,
    pub(crate) networks: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) global: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) files: Vec<ContainerFile>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) keep_anonymous_volumes: bool,
    /// A new image alone does not replace its instances (the ingress's listener, which only
    /// holds a network namespace and its ports).
    #[serde(skip)]
    pub(crate) keep_image: bool,
}

impl Service {
    /// Starts describing a long-running service.
    pub fn builder(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder::new(name.into(), ServiceKind::Service)
    }

    /// Starts describing a one-shot job that must exit 0 (a migration, a seed).
    pub fn job(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder::new(name.into(), ServiceKind::Job)
    }

    /// A builder holding this service, to change some of it (`svc.to_builder().image("api:3").build()`).
    pub fn to_builder(&self) -> ServiceBuilder {
        ServiceBuilder {
            svc: self.clone(),
            image_set: true,
            replicas_set: (self.kind == ServiceKind::Job).then_some(self.replicas),
            rollout_set: false,
            errors: Vec::new(),
        }
    }

    /// The service name (also its DNS name inside the environment).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Service or job.
    pub fn kind(&self) -> ServiceKind {
        self.kind
    }

    /// The image source.
    pub fn image(&self) -> &ImageSource {
        &self.image
    }

    /// When its image is pulled.
    pub fn pull_policy(&self) -> PullPolicy {
        self.pull
    }

    /// Number of instances (for a [`global`](ServiceBuilder::global) service: per host).
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// The files written into each instance before it starts.
    pub fn files(&self) -> &[ContainerFile] {
        &self.files
    }

    /// Whether a replacement takes over the replaced instance's anonymous volumes
    /// ([`ServiceBuilder::keep_anonymous_volumes`]).
    pub fn keeps_anonymous_volumes(&self) -> bool {
        self.keep_anonymous_volumes
    }

    /// Whether it runs one instance on every host it may be placed on
    /// ([`ServiceBuilder::global`]).
    pub fn is_global(&self) -> bool {
        self.global
    }

    /// The health check, if any.
    pub fn health(&self) -> Option<&HealthCheck> {
        self.health.as_ref()
    }

    /// The dependencies.
    pub fn dependencies(&self) -> &[Dependency] {
        &self.depends_on
    }

    /// The ports.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// Plain environment variables (secrets are not among them).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The names of its secret variables (their values are never shown).
    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.secrets.keys().map(String::as_str)
    }

    /// The command, if it overrides the image's.
    pub fn command(&self) -> Option<&[String]> {
        self.command.as_deref()
    }

    /// The entrypoint, if it overrides the image's.
    pub fn entrypoint(&self) -> Option<&[String]> {
        self.entrypoint.as_deref()
    }

    /// Its mounts.
    pub fn volumes(&self) -> &[Volume] {
        &self.volumes
    }

    /// Its limits.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Its restart policy.
    pub fn restart_policy(&self) -> RestartPolicy {
        self.restart
    }

    /// Its labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The user the process runs as, if set.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The working directory, if set.
    pub fn working_dir(&self) -> Option<&str> {
        self.workdir.as_deref()
    }

    /// Time between SIGTERM (or the stop signal) and SIGKILL when an instance stops.
    pub fn stop_grace(&self) -> Duration {
        self.stop_grace
    }

    /// What its containers run with beyond image, command, environment, ports and mounts.
    pub fn container_options(&self) -> &ContainerOptions {
        &self.container
    }

    /// More names it answers to on the environment's network, besides its own.
    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }

    /// Placement constraints for a target that schedules instances itself (a swarm).
    pub fn placement_constraints(&self) -> &[String] {
        &self.placement
    }

    /// Existing networks of the target its containers join too, besides the environment's.
    pub fn external_networks(&self) -> &[String] {
        &self.networks
    }

    /// The role that places it on hosts, if any.
    pub fn role_name(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// Environment variables whose values are other services' endpoints.
    pub fn env_refs(&self) -> &BTreeMap<String, ServiceRef> {
        &self.env_refs
    }

    /// The rollout used when it changes.
    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// How long one instance may take from creation until it is healthy (or, for a job, until it
    /// exits). Defaults to the health check's budget plus 30 s, and to 10 minutes for jobs.
    pub fn deadline(&self) -> Duration {
        if let Some(d) = self.deadline {
            return d;
        }
        match (self.kind, &self.health) {
            (ServiceKind::Job, _) => Duration::from_secs(600),
            (_, Some(h)) => h.startup_budget().saturating_add(Duration::from_secs(30)),
            (_, None) => Duration::from_secs(60),
        }
    }
}

/// Builder for [`Service`]. Errors are collected and reported by [`build`](Self::build).
#[derive(Debug)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct ServiceBuilder {
    svc: Service,
    image_set: bool,
    replicas_set: Option<u32>,
    rollout_set: bool,
    errors: Vec<ValidationError>,
}

impl ServiceBuilder {
    fn new(name: String, kind: ServiceKind) -> Self {
        let restart = match kind {
            ServiceKind::Service => RestartPolicy::UnlessStopped,
            ServiceKind::Job => RestartPolicy::No,
        };
        ServiceBuilder {
            svc: Service {
                name,
                kind,
                image: ImageSource::Reference(String::new()),
                entrypoint: None,
                command: None,
                env: BTreeMap::new(),
                secrets: BTreeMap::new(),
                ports: Vec::new(),
                volumes: Vec::new(),
                resources: Resources::default(),
                restart,
                labels: BTreeMap::new(),
                user: None,
                workdir: None,
                replicas: 1,
                stop_grace: Duration::from_secs(10),
                health: None,
                depends_on: Vec::new(),
                rollout: Rollout::default(),
                deadline: None,
                role: None,
                env_refs: BTreeMap::new(),
                settle: Duration::from_secs(1),
                pull: PullPolicy::IfMissing,
                container: ContainerOptions::default(),
                aliases: Vec::new(),
                placement: Vec::new(),
                networks: Vec::new(),
                global: false,
                files: Vec::new(),
                keep_anonymous_volumes: false,
                keep_image: false,
            },
            image_set: false,
            replicas_set: None,
            rollout_set: false,
            errors: Vec::new(),
        }
    }

    fn invalid(&mut self, field: &'static str, reason: impl Into<String>) {
        self.errors.push(ValidationError::InvalidValue {
            owner: format!("service `{}`", self.svc.name),
            field,
            reason: reason.into(),
        });
    }

    /// The image reference, as Docker takes it: `postgres:15`,
    /// `registry.example.com:5000/team/api:2`, `api@sha256:…`. It is pulled from its registry when
    /// the engine lacks it (see [`pull`](Self::pull)); the digest it resolved to is recorded in the
    /// plan and the revision, so a rollback brings back exactly that image.
    pub fn image(mut self, reference: impl Into<String>) -> Self {
        self.svc.image = ImageSource::Reference(reference.into());
        self.image_set = true;
        self
    }

    /// When the image is pulled (default [`PullPolicy::IfMissing`]). Changing it replaces nothing.
    pub fn pull(mut self, policy: PullPolicy) -> Self {
        self.svc.pull = policy;
        self
    }

    /// Builds the image from a context directory instead.
    pub fn build_from(mut self, build: Build) -> Self {
        self.svc.image = ImageSource::Build(build);
        self.image_set = true;
        self
    }

    /// Replaces the image's `CMD`. An empty list runs the entrypoint with no arguments (with no
    /// entrypoint either, the engine falls back to the image's `CMD`).
    pub fn command<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.svc.command = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the image's `ENTRYPOINT`. An empty list clears it (compose's `entrypoint: ""`):
    /// the command runs as given. Setting an entrypoint also drops the image's `CMD`, as
    /// `docker run --entrypoint` does.
    pub fn entrypoint<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.svc.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// An environment variable (shown in plans and revisions; use [`secret`](Self::secret) for secrets).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.svc.env.insert(key.into(), value.into());
        self
    }

    /// An environment variable whose value is another service's endpoint, resolved at apply time
    /// from where the two run (see [`ServiceRef`]).
    pub fn env_ref(mut self, key: impl Into<String>, reference: ServiceRef) -> Self {
        self.svc.env_refs.insert(key.into(), reference);
        self
    }

    /// The role that places the service on hosts (`app`, `db`, `gateway`, …): the environment maps
    /// roles to hosts ([`EnvironmentBuilder::hosts`](crate::EnvironmentBuilder::hosts)), and replicas
    /// go round the role's hosts. Ignored on a single-host backend.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.svc.role = Some(role.into());
        self
    }

    /// An environment variable whose value is secret: it reaches the container and nothing else.
    pub fn secret(mut self, key: impl Into<String>, secret: Secret) -> Self {
        self.svc.secrets.insert(key.into(), secret);
        self
    }

    /// A port (see [`Port`]).
    pub fn port(mut self, port: Port) -> Self {
        self.svc.ports.push(port);
        self
    }

    /// A volume (see [`Volume`]).
    pub fn volume(mut self, volume: Volume) -> Self {
        self.svc.volumes.push(volume);
        self
    }

    /// CPU and memory limits.
    pub fn resources(mut self, resources: Resources) -> Self {
        self.svc.resources = resources;
        self
    }

    /// Restart policy (services default to `UnlessStopped`, jobs to `No`).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.svc.restart = policy;
        self
    }

    /// A label on every container of the service (keys starting `io.harbormaster.` are reserved).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.svc.labels.insert(key.into(), value.into());
        self
    }

    /// The user (and group) the process runs as, e.g. `1000:1000`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.svc.user = Some(user.into());
        self
    }

    /// The working directory.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.svc.workdir = Some(dir.into());
        self
    }

    /// Number of instances (default 1; 0 keeps the service defined but stopped).
    pub fn replicas(mut self, n: u32) -> Self {
        self.svc.replicas = n;
        self.replicas_set = Some(n);
        self
    }

    /// A file written into each instance after it is created and before it starts: a
    /// configuration given inline, or a secret (see [`ContainerFile`]). A second file at the
    /// same path replaces the first.
    pub fn file(mut self, file: ContainerFile) -> Self {
        self.svc.files.retain(|f| f.target != file.target);
        self.svc.files.push(file);
        self
    }

    /// A new instance that replaces an old one takes over the old one's anonymous volumes (those
    /// of its image's `VOLUME`s, such as postgres's data directory) at the same paths, where its
    /// own mounts put nothing: what the image keeps there survives a replacement, as under
    /// Compose (which does this by default; a compose file's services get it). The default
    /// rollout then stops the old instance first (one volume, one writer); a rollout that runs
    /// both side by side is refused. Without it, each instance starts with fresh anonymous
    /// volumes, as `docker run` gives them.
    pub fn keep_anonymous_volumes(mut self) -> Self {
        self.svc.keep_anonymous_volumes = true;
        self
    }

    /// One instance on every host it may be placed on, instead of a count (compose's
    /// `deploy.mode: global`, a swarm's global service: a log shipper, a node exporter, an
    /// edge proxy). On a backend with hosts: one per host of its role, as many as the role maps; on
    /// a swarm: a global service, one task per node its placement allows; on a target without
    /// hosts (a single engine, Fly): one.
    pub fn global(mut self) -> Self {
        self.svc.global = true;
        self
    }

    /// Time between SIGTERM and SIGKILL when an instance stops (default 10 s).
    pub fn stop_grace_period(mut self, d: Duration) -> Self {
        self.svc.stop_grace = d;
        self
    }

    /// The readiness check.
    pub fn health(mut self, check: HealthCheck) -> Self {
        self.svc.health = Some(check);
        self
    }

    /// Waits for `service` to reach `condition` before starting.
    pub fn depends_on(mut self, service: impl Into<String>, condition: Condition) -> Self {
        self.svc.depends_on.push(Dependency { service: service.into(), condition });
        self
    }

    /// How instances are replaced when the service changes.
    pub fn rollout(mut self, rollout: Rollout) -> Self {
        self.svc.rollout = rollout;
        self.rollout_set = true;
        self
    }

    /// Without a health check: how long a new instance must keep running, not exiting and not
    /// restarted by its restart policy, to count as started (default 1 s). An instance that exits
    /// or crash-loops within it fails its rollout. A health check says much more: give one.
    pub fn settle_time(mut self, d: Duration) -> Self {
        self.svc.settle = d;
        self
    }

    /// Everything the containers run with beyond image, command, environment, ports and mounts
    /// at once (see [`ContainerOptions`]); replaces what the methods below set.
    pub fn container(mut self, options: ContainerOptions) -> Self {
        self.svc.container = options;
        self
    }

    fn with(mut self, f: impl FnOnce(ContainerOptions) -> ContainerOptions) -> Self {
        self.svc.container = f(std::mem::take(&mut self.svc.container));
        self
    }

    /// Runs the containers privileged (`--privileged`).
    pub fn privileged(self) -> Self {
        self.with(ContainerOptions::privileged)
    }

    /// Adds a Linux capability (`NET_ADMIN`, `SYS_TIME`, `ALL`).
    pub fn cap_add(self, capability: impl Into<String>) -> Self {
        self.with(|o| o.cap_add(capability))
    }

    /// Drops a Linux capability (or `ALL`).
    pub fn cap_drop(self, capability: impl Into<String>) -> Self {
        self.with(|o| o.cap_drop(capability))
    }

    /// A security option (`no-new-privileges:true`, `seccomp=unconfined`, `label=…`).
    pub fn security_opt(self, option: impl Into<String>) -> Self {
        self.with(|o| o.security_opt(option))
    }

    /// Mounts the root filesystem read-only (`--read-only`).
    pub fn read_only_root(self) -> Self {
        self.with(ContainerOptions::read_only_root)
    }

    /// Runs an init process as PID 1 (`--init`).
    pub fn init(self) -> Self {
        self.with(|o| o.init(true))
    }

    /// A namespaced kernel parameter (`net.core.somaxconn`).
    pub fn sysctl(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.with(|o| o.sysctl(key, value))
    }

    /// A resource limit (`nofile`, `nproc`).
    pub fn ulimit(self, name: impl Into<String>, limit: Ulimit) -> Self {
        self.with(|o| o.ulimit(name, limit))
    }

    /// A DNS server (an IP address).
    pub fn dns(self, server: impl Into<String>) -> Self {
        self.with(|o| o.dns(server))
    }

    /// An `/etc/hosts` entry (`host-gateway` as the address is the engine's host).
    pub fn extra_host(self, host: impl Into<String>, address: impl Into<String>) -> Self {
        self.with(|o| o.extra_host(host, address))
    }

    /// The network namespace instead of the environment's network (see [`NetworkMode`]).
    pub fn network_mode(self, mode: NetworkMode) -> Self {
        self.with(|o| o.network_mode(mode))
    }

    /// The signal that stops the containers (`SIGQUIT`, `SIGINT`).
    pub fn stop_signal(self, signal: impl Into<String>) -> Self {
        self.with(|o| o.stop_signal(signal))
    }

    /// A host device made available in the containers.
    pub fn device(self, host_path: impl Into<String>) -> Self {
        self.with(|o| o.device(Device::new(host_path)))
    }

    /// The size of `/dev/shm` in bytes.
    pub fn shm_size(self, bytes: u64) -> Self {
        self.with(|o| o.shm_size(bytes))
    }

    /// Another name the service answers to on the environment's network (compose's network
    /// `aliases`, and the alias of a `links` entry).
    pub fn alias(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.svc.aliases.contains(&name) {
            self.svc.aliases.push(name);
        }
        self
    }

    /// An existing network of the target the containers join too, besides the environment's own
    /// (compose's `external: true` networks, such as a reverse proxy's): there they answer to the
    /// service name and its aliases. The environment neither creates nor removes it; the plan
    /// refuses it if it does not exist.
    pub fn join_network(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.svc.networks.contains(&name) {
            self.svc.networks.push(name);
        }
        self
    }

    /// A placement constraint (`node.labels.disk==ssd`) for a target that schedules instances
    /// itself (a swarm); a single engine, and hosts placed by role, have no use for one.
    pub fn placement_constraint(mut self, constraint: impl Into<String>) -> Self {
        self.svc.placement.push(constraint.into());
        self
    }

    /// How long one instance may take from creation until healthy (or a job until it exits).
    /// Must cover the health check's `start_period + interval × retries`.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.svc.deadline = Some(d);
        self
    }

    /// Validates and returns the service; the first problem found is the error.
    pub fn build(mut self) -> Result<Service, ValidationError> {
        name::check("service", &self.svc.name)?;
        self.absolute_bind_sources();
        self.check_fields();
        self.check_engine_rules();
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        Ok(self.svc)
    }

    /// A relative bind mount source is taken from the current directory, as `docker run -v ./x:/y`
    /// does, and recorded absolute.
    fn absolute_bind_sources(&mut self) {
        for v in &mut self.svc.volumes {
            if let VolumeSource::Bind(p) = &mut v.source {
                if p.as_os_str().is_empty() || p.is_absolute() {
                    continue;
                }
                if let Ok(abs) = std::path::absolute(&*p) {
                    *p = abs;
                }
            }
        }
    }

    /// What Docker, runc and the kernel would refuse later, refused now ([`limits`]).
    fn check_engine_rules(&mut self) {
        use limits::{c_string, duration, show};
        let svc = self.svc.clone();
        match &svc.image {
            ImageSource::Reference(r) if self.image_set && !r.trim().is_empty() => {
                if let Err(why) = super::image::check_reference(r) {
                    self.invalid("image", format!("{} is not an image reference Docker takes: {why}", show(r)));
                }
            }
            ImageSource::Build(b) => {
                if let Some(Err(why)) = b.tag.as_deref().map(super::image::check_reference) {
                    self.invalid("image", format!("build tag {}: {why}", show(b.tag.as_deref().unwrap_or_default())));
                }
                if b.push && b.tag.is_none() {
                    self.invalid("image", "a build that is pushed needs a tag naming its registry (`Build::tag`)");
                }
                if let Some(p) =
                    b.args.iter().find_map(|(k, v)| c_string(&format!("build argument {k}"), &format!("{k}{v}")))
                {
                    self.invalid("image", p);
                }
            }
            _ => {}
        }
        let args = svc.entrypoint.iter().chain(svc.command.iter()).flatten();
        if let Some(p) = args.clone().find_map(|a| c_string(&format!("argument {}", show(a)), a)) {
            self.invalid("command", p);
        }
        for (k, v) in &svc.env {
            if let Some(p) = c_string(&format!("the value of {k}"), v) {
                self.invalid("env", p);
            }
        }
        for (k, secret) in &svc.secrets {
            // Never the value in a message.
            if secret.expose().contains('\0') {
                self.invalid(
                    "secrets",
                    format!("the value of secret {k} contains a NUL byte, which a process cannot receive"),
                );
            }
        }
        for (k, r) in &svc.env_refs {
            if let Some(p) = c_string(&format!("the format of reference {k}"), &r.format) {
                self.invalid("env", p);
            }
        }
        // `KEY=VALUE\0` per entry, and everything a process is started with.
        let entries = svc
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.len(), false))
            .chain(svc.secrets.iter().map(|(k, s)| (k.as_str(), s.expose().len(), true)));
        let mut total: usize = args.map(|a| a.len().saturating_add(1)).fold(0, usize::saturating_add);
        for (k, len, secret) in entries {
            let entry = k.len().saturating_add(len).saturating_add(2);
            if entry > limits::MAX_ENV_ENTRY {
                let what = if secret { "secret" } else { "variable" };
                self.invalid(
                    "env",
                    format!("{what} {k} is {entry} bytes as KEY=VALUE; one entry may hold at most {} (Linux MAX_ARG_STRLEN)", limits::MAX_ENV_ENTRY),
                );
            }
            total = total.saturating_add(entry);
        }
        if total > limits::MAX_ENV_TOTAL {
            self.invalid(
                "env",
                format!(
                    "environment and arguments take {total} bytes; at most {} are allowed (Linux ARG_MAX)",
                    limits::MAX_ENV_TOTAL
                ),
            );
        }
        for (k, v) in &svc.labels {
            if k.is_empty() || k.contains('\0') || v.contains('\0') {
                self.invalid("labels", format!("label {} must be non-empty and hold no NUL byte", show(k)));
            }
        }
        match &svc.user {
            Some(u) if u.is_empty() || u.contains('\0') || u.contains(char::is_whitespace) => self.invalid(
                "user",
                format!("user {} must be a name or ID (`1000`, `app:app`), without spaces or NUL", show(u)),
            ),
            _ => {}
        }
        match &svc.workdir {
            Some(w) if !w.starts_with('/') || w.contains('\0') => {
                self.invalid("workdir", format!("working directory {} must be an absolute path without NUL", show(w)))
            }
            _ => {}
        }
        let mut targets: Vec<&str> = Vec::new();
        for v in &svc.volumes {
            let target = v.target.trim_end_matches('/');
            if v.target.starts_with('/') && target.is_empty() {
                self.invalid("volumes", "a mount cannot target `/`, the container's root".to_string());
            }
            if v.target.contains('\0') {
                self.invalid("volumes", format!("mount target {} contains a NUL byte", show(&v.target)));
            }
            if !target.is_empty() && targets.contains(&target) {
                self.invalid("volumes", format!("two mounts target {}", show(&v.target)));
            }
            targets.push(target);
            if let VolumeSource::Bind(p) = &v.source {
                let text = p.to_string_lossy();
                if text.is_empty() || text.contains('\0') {
                    self.invalid("volumes", format!("bind mount source {} must be a path without NUL", show(&text)));
                }
            }
        }
        if svc.replicas > limits::MAX_REPLICAS {
            self.invalid(
                "replicas",
                format!("{} replicas; at most {} are allowed", svc.replicas, limits::MAX_REPLICAS),
            );
        }
        if let Some(p) = duration("stop grace period", svc.stop_grace, limits::MAX_STEP) {
            self.invalid("stop_grace_period", p);
        }
        if let Some(p) = duration("settle time", svc.settle, limits::MAX_STEP) {
            self.invalid("settle_time", p);
        }
        if let Some(p) = svc.deadline.and_then(|d| duration("deadline", d, limits::MAX_WAIT)) {
            self.invalid("deadline", p);
        }
    }

    fn check_fields(&mut self) {
        let svc = self.svc.clone();
        match (&svc.image, self.image_set) {
            (_, false) => {
                self.invalid("image", "no image given; use .image(\"name:tag\") or .build_from(Build::context(dir))")
            }
            (ImageSource::Reference(r), true) if r.trim().is_empty() => {
                self.invalid("image", "the image reference is empty")
            }
            (ImageSource::Build(b), true) if b.dockerfile.is_empty() => {
                self.invalid("image", "the Dockerfile path is empty")
            }
            _ => {}
        }
        if svc.global {
            if svc.kind == ServiceKind::Job {
                self.invalid("global", "a job runs once, not on every host");
            } else if let Some(n) = self.replicas_set.filter(|n| *n != 1) {
                self.invalid(
                    "replicas",
                    format!("{n} replicas and global: a global service runs one instance on every host; drop one"),
                );
            }
        }
        if svc.kind == ServiceKind::Job {
            if let Some(n) = self.replicas_set.filter(|n| *n != 1) {
                self.errors.push(ValidationError::JobWithReplicas { service: svc.name.clone(), replicas: n });
            }
            if svc.health.is_some() {
                self.invalid("health", "a job has no health check: it succeeds by exiting 0");
            }
        }
        for key in svc.env.keys().chain(svc.secrets.keys()).chain(svc.env_refs.keys()) {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                self.invalid("env", format!("variable name {key:?} must be non-empty and contain no '=' or NUL"));
            }
        }
        if let Some(k) = svc.env.keys().find(|k| svc.secrets.contains_key(*k)) {
            self.invalid("env", format!("{k} is set both as a plain variable and as a secret"));
        }
        if let Some(k) = svc.env_refs.keys().find(|k| svc.env.contains_key(*k) || svc.secrets.contains_key(*k)) {
            self.invalid("env", format!("{k} is set both as a service reference and as a plain or secret variable"));
        }
        for (k, r) in &svc.env_refs {
            if !r.format.contains("{host}") {
                self.invalid("env", format!("reference {k}: its format {:?} does not use {{host}}", r.format));
            }
            if r.service == svc.name {
                self.invalid("env", format!("reference {k}: a service cannot refer to itself"));
            }
        }
        if let Some(role) = &svc.role {
            if let Err(e) = name::check("role", role) {
                self.errors.push(e);
            }
        }
        if let Some(k) = svc.labels.keys().find(|k| k.starts_with(LABEL_PREFIX)) {
            self.invalid("labels", format!("label {k} uses the reserved prefix {}", LABEL_PREFIX));
        }
        let mut seen = Vec::new();
        for p in &svc.ports {
            if p.container == 0 {
                self.invalid("ports", "container port 0 is not a port");
            }
            if p.publish == Publish::Fixed(0) {
                self.invalid(
                    "ports",
                    format!("host port 0 for container port {}; use publish_ephemeral()", p.container),
                );
            }
            // A container port may be published more than once (`80:80` and `8080:80`), but the
            // same publishing twice is a mistake.
            if seen.contains(&(p.container, p.protocol, p.publish, p.host_ip)) {
                self.invalid(
                    "ports",
                    format!("container port {}/{} is listed twice", p.container, p.protocol.as_str()),
                );
            }
            seen.push((p.container, p.protocol, p.publish, p.host_ip));
        }
        let fixed_port = svc.ports.iter().find_map(|p| match p.publish {
            Publish::Fixed(h) => Some(h),
            _ => None,
        });
        if let Some(host) = fixed_port {
            // With a role, replicas may be spread one per host; placement checks that at apply.
            if svc.replicas > 1 && svc.role.is_none() {
                self.errors.push(ValidationError::HostPortConflict {
                    port: host,
                    first: format!("{} replica 0", svc.name),
                    second: format!("{} replica 1", svc.name),
                });
            }
            if svc.rollout.runs_side_by_side() {
                if self.rollout_set {
                    self.invalid(
                        "rollout",
                        format!("{} runs old and new instances side by side, but host port {host} can be bound once; use Rollout::recreate() or publish_ephemeral()", svc.rollout.strategy),
                    );
                } else {
                    self.svc.rollout.strategy = Strategy::Recreate;
                }
            }
        }
        // In the host's or another container's network namespace, a new instance beside the old
        // one would listen where the old one does: the default rollout stops the old one first
        // (one asked for explicitly is kept: a client that listens on nothing can overlap).
        let shared_namespace = matches!(
            svc.container.network_mode,
            Some(NetworkMode::Host | NetworkMode::Container(_) | NetworkMode::Service(_))
        );
        if shared_namespace && svc.rollout.runs_side_by_side() && !self.rollout_set {
            self.svc.rollout.strategy = Strategy::Recreate;
        }
        if let Some(mac) = &svc.container.mac_address {
            // One address, one container at a time.
            if svc.replicas > 1 {
                self.invalid("container", format!("{} replicas would share the MAC address {mac}", svc.replicas));
            }
            if svc.rollout.runs_side_by_side() {
                if self.rollout_set {
                    self.invalid("rollout", format!("{} runs old and new instances side by side, and both would have the MAC address {mac}; use Rollout::recreate()", svc.rollout.strategy));
                } else {
                    self.svc.rollout.strategy = Strategy::Recreate;
                }
            }
        }
        if svc.keep_anonymous_volumes && svc.rollout.runs_side_by_side() {
            if self.rollout_set {
                self.invalid(
                    "rollout",
                    format!("{} runs old and new instances side by side, and the new one takes over the old one's anonymous volumes: two writers on one volume; use Rollout::recreate()", svc.rollout.strategy),
                );
            } else {
                self.svc.rollout.strategy = Strategy::Recreate;
            }
        }
        for v in &svc.volumes {
            if !v.target.starts_with('/') {
                self.invalid(
                    "volumes",
                    format!("mount target {:?} must be an absolute path; use .at(\"/path\")", v.target),
                );
            }
            if let VolumeSource::Named(n) = &v.source {
                if let Err(e) = name::check("volume", n) {
                    self.errors.push(e);
                }
            }
        }
        if let Some(p) = svc.resources.problems() {
            self.invalid("resources", p);
        }
        if let Some(h) = &svc.health {
            if let Some(p) = h.problems() {
                self.invalid("health", p);
            }
            if let Some(d) = svc.deadline {
                if d < h.startup_budget() {
                    self.errors.push(ValidationError::DeadlineTooShort {
                        service: svc.name.clone(),
                        deadline: d,
                        needed: h.startup_budget(),
                    });
                }
            }
        }
        if let Some(p) = svc.rollout.problems() {
            self.invalid("rollout", p);
        }
        if svc.deadline == Some(Duration::ZERO) {
            self.invalid("deadline", "must be greater than zero");
        }
        if let (Some(rd), Some(h)) = (svc.rollout.deadline, &svc.health) {
            let needed = h.startup_budget().saturating_add(svc.rollout.min_ready);
            if rd < needed {
                self.errors.push(ValidationError::DeadlineTooShort { service: svc.name.clone(), deadline: rd, needed });
            }
        }
        for p in svc.container.problems() {
            self.invalid("container", p);
        }
        for p in svc.volumes.iter().flat_map(Volume::problems) {
            self.invalid("volumes", p);
        }
        for p in svc.files.iter().filter_map(ContainerFile::problem) {
            self.invalid("files", p);
        }
        for a in &svc.aliases {
            if a.is_empty()
                || a.len() > 253
                || !a.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                self.invalid("aliases", format!("alias {} is not a host name", limits::show(a)));
            }
        }
        for n in &svc.networks {
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                self.invalid("networks", format!("network {} is not a network name", limits::show(n)));
            }
        }
        if let Some(mode) = &svc.container.network_mode {
            if !svc.networks.is_empty() {
                self.invalid(
                    "networks",
                    format!("joining other networks needs the environment's network, and the network mode is {mode}"),
                );
            }
            if !svc.aliases.is_empty() {
                self.invalid(
                    "aliases",
                    format!("aliases need the environment's network, and the network mode is {mode}"),
                );
            }
            let published = svc.ports.iter().find(|p| p.publish != Publish::No);
            match (mode, published) {
                (NetworkMode::Host, Some(p)) => self.invalid(
                    "ports",
                    format!(
                        "port {} is published, but a service on the host's network uses the host's ports directly; list it unpublished or drop it",
                        p.container
                    ),
                ),
                (NetworkMode::Container(_) | NetworkMode::Service(_), Some(p)) => self.invalid(
                    "ports",
                    format!(
                        "port {} is published, but the network mode is {mode}, whose owner publishes the ports of the namespace; publish it there",
                        p.container
                    ),
                ),
                (NetworkMode::Service(s), _) if *s == svc.name => {
                    self.invalid("container", "the network mode names the service itself".to_string())
                }
                (NetworkMode::Service(s) | NetworkMode::Container(s), _) if s.is_empty() => {
                    self.invalid("container", format!("the network mode {mode} names nothing"))
                }
                _ => {}
            }
        }
        for c in &svc.placement {
            if c.trim().is_empty() || !(c.contains("==") || c.contains("!=")) {
                self.invalid(
                    "placement",
                    format!("placement constraint {} is `attribute==value` or `attribute!=value`", limits::show(c)),
                );
            }
        }
        if svc.depends_on.iter().any(|d| d.service == svc.name) {
            self.errors.push(ValidationError::DependencyCycle { cycle: vec![svc.name.clone(), svc.name.clone()] });
        }
    }
}
