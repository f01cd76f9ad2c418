//! [`Environment`]: a project's named deployment (staging, production, a test's own) of services.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::{name, Condition, Ingress, NetworkMode, Publish, Service, ServiceKind};
use crate::error::ValidationError;

/// A set of services deployed together under `project` + `name`, on their own network, where they
/// reach each other by service name.
///
/// ```
/// use harbormaster::{Environment, Service};
/// let env = Environment::builder("shop", "staging")
///     .service(Service::builder("web").image("local/web:1").build()?)
///     .env("TZ", "UTC")
///     .build()?;
/// assert_eq!(env.qualified_name(), "shop-staging");
/// # Ok::<_, harbormaster::ValidationError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Environment {
    pub(crate) project: String,
    pub(crate) name: String,
    pub(crate) services: Vec<Service>,
    pub(crate) shared_env: BTreeMap<String, String>,
    pub(crate) deadline: Duration,
    pub(crate) ingress: Option<Ingress>,
    pub(crate) revision_history: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) actor: Option<String>,
    pub(crate) roles: BTreeMap<String, Vec<String>>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) ephemeral: bool,
    /// Instances on the target's default network (set by the test harness for one-service
    /// environments).
    pub(crate) default_network: bool,
}

impl Environment {
    /// Starts describing environment `name` (such as `staging`) of `project`.
    pub fn builder(project: impl Into<String>, name: impl Into<String>) -> EnvironmentBuilder {
        EnvironmentBuilder {
            env: Environment {
                project: project.into(),
                name: name.into(),
                services: Vec::new(),
                shared_env: BTreeMap::new(),
                deadline: Duration::from_secs(15 * 60),
                ingress: None,
                revision_history: 5,
                lock_timeout: Duration::ZERO,
                actor: None,
                roles: BTreeMap::new(),
                labels: BTreeMap::new(),
                ephemeral: false,
                default_network: false,
            },
            errors: Vec::new(),
            empty_ok: false,
        }
    }

    /// An environment known by its name alone, with no services: enough to take down what it
    /// left on a target ([`down`](Self::down)), or read its [`status`](Self::status),
    /// [`history`](Self::history) and [`audit_log`](Self::audit_log) from any process. (A
    /// [`builder`](Self::builder) refuses an environment without services.)
    ///
    /// ```no_run
    /// # async fn f(docker: harbormaster::DockerBackend) -> harbormaster::Result<()> {
    /// let old = harbormaster::Environment::named("shop", "pr-123")?;
    /// old.down(&docker, harbormaster::Down::default().with_volumes()).await?;
    /// # Ok(()) }
    /// ```
    pub fn named(project: impl Into<String>, name: impl Into<String>) -> Result<Environment, ValidationError> {
        Environment::builder(project, name).by_name_only().build()
    }

    /// The project name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The environment name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `project-name`: the prefix of every container, network and volume it owns.
    pub fn qualified_name(&self) -> String {
        format!("{}-{}", self.project, self.name)
    }

    /// The services, in the order given.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// One service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The ingress, if the environment has one.
    pub fn ingress(&self) -> Option<&Ingress> {
        self.ingress.as_ref()
    }

    /// The deadline for a whole apply.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How many revisions per service are kept on the target, with their images.
    pub fn revision_history(&self) -> usize {
        self.revision_history
    }

    /// How long an apply waits for another process's deploy lock before failing.
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Who deploys, as recorded in the lock, the revisions and the audit trail.
    pub fn actor(&self) -> Option<&str> {
        self.actor.as_deref()
    }

    /// The hosts each role is placed on ([`EnvironmentBuilder::hosts`]).
    pub fn roles(&self) -> &BTreeMap<String, Vec<String>> {
        &self.roles
    }

    /// A builder holding this environment, to change it before planning (an imported compose
    /// file's, for instance): replace a service ([`EnvironmentBuilder::replace`]), add one, set
    /// options. `build()` validates the whole again.
    pub fn to_builder(&self) -> EnvironmentBuilder {
        EnvironmentBuilder { env: self.clone(), errors: Vec::new(), empty_ok: false }
    }

    /// Whether it is ephemeral ([`EnvironmentBuilder::ephemeral`]).
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The environment's own labels ([`EnvironmentBuilder::label`]).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The driver options a named volume is created with (none: a plain local volume).
    pub fn volume_driver_opts(&self, volume: &str) -> Option<&BTreeMap<String, String>> {
        self.services
            .iter()
            .flat_map(|s| &s.volumes)
            .find(|v| v.volume_name() == Some(volume) && !v.options.driver_opts.is_empty())
            .map(|v| &v.options.driver_opts)
    }

    /// Named volumes used by the services.
    pub fn volume_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .services
            .iter()
            .flat_map(|s| s.volumes.iter().filter_map(|v| v.volume_name().map(str::to_string)))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Builder for [`Environment`].
#[derive(Debug)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct EnvironmentBuilder {
    env: Environment,
    errors: Vec<ValidationError>,
    empty_ok: bool,
}

impl EnvironmentBuilder {
    /// An environment known by name only (found on a target, to take it down or read it): no
    /// services is then what it is, not a mistake.
    pub(crate) fn by_name_only(mut self) -> Self {
        self.empty_ok = true;
        self
    }

    /// This environment under another name, without its ingress (its services and routes): what a
    /// preview of it starts from ([`crate::preview`]). Durable (never ephemeral).
    pub(crate) fn derived(base: &Environment, name: &str) -> EnvironmentBuilder {
        let mut env = base.clone();
        env.name = name.to_string();
        if let Some(ingress) = env.ingress.take() {
            env.services.retain(|s| !ingress.is_own(&s.name));
        }
        env.ephemeral = false;
        EnvironmentBuilder { env, errors: Vec::new(), empty_ok: false }
    }

    /// The services described so far, to change in place (a preview's overrides).
    pub(crate) fn services_mut(&mut self) -> &mut Vec<Service> {
        &mut self.env.services
    }

    /// Adds a service.
    pub fn service(mut self, service: Service) -> Self {
        self.env.services.push(service);
        self
    }

    /// Adds several services.
    pub fn services(mut self, services: impl IntoIterator<Item = Service>) -> Self {
        self.env.services.extend(services);
        self
    }

    /// The environment's ingress: a reverse proxy that routes outside traffic to services and
    /// through which rollouts switch traffic. Its listener, front and router run as three more
    /// services of the environment (see [`Ingress`]).
    pub fn ingress(mut self, ingress: Ingress) -> Self {
        self.env.services.extend(ingress.services().into_iter().cloned());
        self.env.ingress = Some(ingress);
        self
    }

    /// An environment variable given to every service (a service's own value wins).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.shared_env.insert(key.into(), value.into());
        self
    }

    /// Deadline for a whole apply, rollback or promotion (default 15 minutes, at most
    /// [`limits::MAX_WAIT`](super::limits::MAX_WAIT)). When it passes in the middle of a rollout,
    /// the rollout is rolled back: the old version serves again.
    pub fn deadline(mut self, d: Duration) -> Self {
        let problem = if d.is_zero() {
            Some("must be greater than zero".to_string())
        } else {
            super::limits::duration("deadline", d, super::limits::MAX_WAIT)
        };
        if let Some(reason) = problem {
            self.errors.push(ValidationError::InvalidValue {
                owner: format!("environment `{}`", self.env.name),
                field: "deadline",
                reason,
            });
        }
        self.env.deadline = d;
        self
    }

    /// How many revisions per service to keep on the target, with their images (default 5, at
    /// least 1). The newest successful revision is always kept as well, so a run of failed
    /// attempts never prunes what [`Environment::rollback`] needs.
    pub fn revision_history(mut self, n: usize) -> Self {
        if n == 0 {
            self.errors.push(ValidationError::InvalidValue {
                owner: format!("environment `{}`", self.env.name),
                field: "revision_history",
                reason: "must keep at least one revision".into(),
            });
        }
        self.env.revision_history = n;
        self
    }

    /// How long an apply, rollback or promotion waits for the deploy lock held by another process
    /// before failing with [`Error::Locked`](crate::Error::Locked) (default: zero, fail at once).
    pub fn lock_timeout(mut self, d: Duration) -> Self {
        if let Some(reason) = super::limits::duration("lock timeout", d, super::limits::MAX_WAIT) {
            self.errors.push(ValidationError::InvalidValue {
                owner: format!("environment `{}`", self.env.name),
                field: "lock_timeout",
                reason,
            });
        }
        self.env.lock_timeout = d;
        self
    }

    /// Places the services of `role` on `hosts` (names of the backend's hosts, such as a
    /// [`Fleet`](crate::Fleet)'s): replica `n` goes to `hosts[n % hosts.len()]`. Staging and
    /// production usually map the same roles to different hosts. Ignored on a single-host backend.
    ///
    /// ```
    /// use harbormaster::{Environment, Service};
    /// let env = Environment::builder("shop", "production")
    ///     .hosts("app", ["app-1", "app-2"])
    ///     .hosts("db", ["db-1"])
    ///     .service(Service::builder("api").image("local/api:2").role("app").replicas(4).build()?)
    ///     .service(Service::builder("db").image("local/postgres:15").role("db").build()?)
    ///     .build()?;
    /// assert_eq!(env.roles()["app"], ["app-1", "app-2"]);
    /// # Ok::<_, harbormaster::ValidationError>(())
    /// ```
    pub fn hosts<I, S>(mut self, role: impl Into<String>, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let role = role.into();
        let hosts: Vec<String> = hosts.into_iter().map(Into::into).collect();
        if hosts.is_empty() {
            self.errors.push(ValidationError::InvalidValue {
                owner: format!("environment `{}`", self.env.name),
                field: "hosts",
                reason: format!("role `{role}` is mapped to no host"),
            });
        }
        self.env.roles.insert(role, hosts);
        self
    }

    /// Puts `service` in place of the service of the same name (added if there is none):
    /// `env.to_builder().replace(env.service("api").unwrap().to_builder().image("api:3").build()?)`.
    pub fn replace(mut self, service: Service) -> Self {
        match self.env.services.iter_mut().find(|s| s.name == service.name) {
            Some(existing) => *existing = service,
            None => self.env.services.push(service),
        }
        self
    }

    /// A label put on everything the environment owns (containers, network, volumes, records),
    /// next to the library's own: to find environments by it from any process
    /// ([`environments`](crate::environments)). Keys under `io.harbormaster.` are reserved.
    /// Labels are not part of a service's configuration: changing one does not replace instances.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.labels.insert(key.into(), value.into());
        self
    }

    /// An environment one process brings up and removes (a test's): no deploy lock,
    /// and no records on the target (revisions, audit, kept images): each operation keeps its
    /// state in memory. It is faster to bring up, and `history`, `audit_log` and `rollback` have
    /// nothing to read. Two processes must not change it at once. [`testing::TestEnv`] makes its
    /// environments ephemeral.
    ///
    /// [`testing::TestEnv`]: https://docs.rs/harbormaster/latest/harbormaster/testing/struct.TestEnv.html
    pub fn ephemeral(mut self) -> Self {
        self.env.ephemeral = true;
        self
    }

    /// Who deploys (a user, a CI job): recorded in the deploy lock, revisions and audit entries.
    pub fn actor(mut self, who: impl Into<String>) -> Self {
        self.env.actor = Some(who.into());
        self
    }

    /// Validates the whole environment: at least one service, names, duplicates, dependencies,
    /// cycles, host ports.
    pub fn build(self) -> Result<Environment, ValidationError> {
        let mut env = self.env;
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        name::check("project", &env.project)?;
        name::check("environment", &env.name)?;
        check_shared_namespaces(&env.services, &index(&env.services)?)?;
        implied_dependencies(&mut env.services);
        let by_name = index(&env.services)?;
        check_dependencies(&env.services, &by_name)?;
        check_cycles(&env.services, &by_name)?;
        check_host_ports(&env.services, &env.roles)?;
        check_routes(&env)?;
        check_placement(&env)?;
        check_labels(&env)?;
        check_volume_options(&env)?;
        for (k, v) in &env.shared_env {
            let problem = if k.is_empty() || k.contains(['=', '\0']) {
                Some(format!("variable name {} must be non-empty and contain no '=' or NUL", super::limits::show(k)))
            } else if v.contains('\0') {
                Some(format!("the value of {k} contains a NUL byte, which a process cannot receive"))
            } else if k.len().saturating_add(v.len()).saturating_add(2) > super::limits::MAX_ENV_ENTRY {
                Some(format!("{k}=… is longer than the {} bytes one entry may hold", super::limits::MAX_ENV_ENTRY))
            } else {
                None
            };
            if let Some(reason) = problem {
                return Err(ValidationError::InvalidValue {
                    owner: format!("environment `{}`", env.name),
                    field: "env",
                    reason,
                });
            }
        }
        if env.services.is_empty() && !self.empty_ok {
            return Err(ValidationError::InvalidValue {
                owner: format!("environment `{}`", env.name),
                field: "services",
                reason: "it has no services: add one with .service(…); to find or take down what an environment \
                    left on a target by its name alone, use Environment::named()"
                    .into(),
            });
        }
        Ok(env)
    }
}

/// Labels: no reserved key, nothing an engine would refuse or truncate.
fn check_labels(env: &Environment) -> Result<(), ValidationError> {
    for (k, v) in &env.labels {
        let problem = if k.is_empty() || k.contains(['=', ',', '\0']) || k.chars().any(char::is_control) {
            Some(format!(
                "label key {} must be non-empty, with no '=', ',' or control character",
                super::limits::show(k)
            ))
        } else if k.starts_with(super::LABEL_PREFIX) {
            Some(format!("label {k} uses the reserved prefix {}", super::LABEL_PREFIX))
        } else if v.contains('\0') {
            Some(format!("the value of label {k} contains a NUL byte"))
        } else if k.len().saturating_add(v.len()) > super::limits::MAX_ENV_ENTRY {
            Some(format!("label {k} is longer than the {} bytes a label may hold", super::limits::MAX_ENV_ENTRY))
        } else {
            None
        };
        if let Some(reason) = problem {
            return Err(ValidationError::InvalidValue {
                owner: format!("environment `{}`", env.name),
                field: "labels",
                reason,
            });
        }
    }
    Ok(())
}

/// Roles and references: every referenced service and port exists; with roles mapped, every
/// service has a mapped role, and host names are valid.
fn check_placement(env: &Environment) -> Result<(), ValidationError> {
    let invalid =
        |owner: String, field: &'static str, reason: String| ValidationError::InvalidValue { owner, field, reason };
    for (role, hosts) in &env.roles {
        name::check("role", role)?;
        for h in hosts {
            name::check("host", h)?;
        }
    }
    for s in &env.services {
        for (k, r) in &s.env_refs {
            let Some(target) = env.service(&r.service) else {
                return Err(invalid(
                    format!("service `{}`", s.name),
                    "env",
                    format!("reference {k} names `{}`, which is not a service of the environment", r.service),
                ));
            };
            if !target.ports.iter().any(|p| p.container == r.port) {
                return Err(invalid(
                    format!("service `{}`", s.name),
                    "env",
                    format!(
                        "reference {k} names port {} of `{}`, which does not declare it (Port::tcp({}))",
                        r.port, r.service, r.port
                    ),
                ));
            }
        }
        if env.roles.is_empty() {
            continue;
        }
        match &s.role {
            None => {
                return Err(invalid(
                    format!("service `{}`", s.name),
                    "role",
                    format!(
                        "the environment places services by role, and this one has none (roles: {})",
                        env.roles.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
            Some(r) if !env.roles.contains_key(r) => {
                return Err(invalid(
                    format!("service `{}`", s.name),
                    "role",
                    format!("role `{r}` is mapped to no host; map it with EnvironmentBuilder::hosts"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn index(services: &[Service]) -> Result<HashMap<&str, usize>, ValidationError> {
    let mut by_name = HashMap::new();
    for (i, s) in services.iter().enumerate() {
        if by_name.insert(s.name.as_str(), i).is_some() {
            return Err(ValidationError::DuplicateService(s.name.clone()));
        }
    }
    Ok(by_name)
}

fn check_dependencies(services: &[Service], by_name: &HashMap<&str, usize>) -> Result<(), ValidationError> {
    for s in services {
        for d in &s.depends_on {
            let Some(&di) = by_name.get(d.service.as_str()) else {
                return Err(ValidationError::UnknownDependency {
                    service: s.name.clone(),
                    dependency: d.service.clone(),
                });
            };
            let dep = &services[di];
            let impossible = |reason: &str| ValidationError::ImpossibleCondition {
                service: s.name.clone(),
                dependency: dep.name.clone(),
                condition: d.condition.to_string(),
                reason: reason.to_string(),
            };
            match (d.condition, dep.kind) {
                (Condition::CompletedSuccessfully, ServiceKind::Service) => {
                    return Err(impossible(
                        "it is a long-running service, not a job (use Condition::Healthy or Started)",
                    ));
                }
                (Condition::Healthy, ServiceKind::Job) => {
                    return Err(impossible("it is a job; use Condition::CompletedSuccessfully"));
                }
                (Condition::Healthy, ServiceKind::Service) if dep.health.is_none() => {
                    return Err(impossible(
                        "it has no health check; give it one with .health(..) or wait for Condition::Started",
                    ));
                }
                (_, ServiceKind::Service) if dep.replicas == 0 => {
                    return Err(impossible("it has 0 replicas"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A service in another's network namespace (`NetworkMode::Service`) names a long-running
/// service of the environment that has a namespace of its own.
fn check_shared_namespaces(services: &[Service], by_name: &HashMap<&str, usize>) -> Result<(), ValidationError> {
    for s in services {
        let Some(NetworkMode::Service(target)) = &s.container.network_mode else { continue };
        let invalid = |reason: String| ValidationError::InvalidValue {
            owner: format!("service `{}`", s.name),
            field: "container",
            reason,
        };
        let Some(&ti) = by_name.get(target.as_str()) else {
            return Err(invalid(format!(
                "the network mode is service:{target}, and `{target}` is not a service of the environment"
            )));
        };
        let t = &services[ti];
        if t.kind == ServiceKind::Job {
            return Err(invalid(format!(
                "the network mode is service:{target}, a job, whose namespace goes away when it exits; share a long-running service's"
            )));
        }
        if let Some(mode @ (NetworkMode::Service(_) | NetworkMode::Container(_))) = &t.container.network_mode {
            return Err(invalid(format!(
                "the network mode is service:{target}, which is itself in another namespace ({mode}); name that one directly"
            )));
        }
        if s.role != t.role {
            return Err(invalid(format!(
                "the network mode is service:{target}, whose instances are placed by another role; a namespace is shared on one host"
            )));
        }
    }
    Ok(())
}

/// A service in another's network namespace starts once that service has (compose's implied
/// `service_started`), unless it already waits for more.
fn implied_dependencies(services: &mut [Service]) {
    for s in services.iter_mut() {
        let Some(NetworkMode::Service(target)) = &s.container.network_mode else { continue };
        if !s.depends_on.iter().any(|d| &d.service == target) {
            let service = target.clone();
            s.depends_on.push(super::Dependency { service, condition: Condition::Started });
        }
    }
}

/// Depth-first search; reports the first cycle found as `a -> b -> a`.
fn check_cycles(services: &[Service], by_name: &HashMap<&str, usize>) -> Result<(), ValidationError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        services: &[Service],
        by_name: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::Active;
        stack.push(i);
        for d in &services[i].depends_on {
            let Some(&j) = by_name.get(d.service.as_str()) else { continue };
            match marks[j] {
                Mark::Active => {
                    let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[start..].iter().map(|&k| services[k].name.clone()).collect();
                    cycle.push(services[j].name.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, services, by_name, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; services.len()];
    for i in 0..services.len() {
        if marks[i] == Mark::New {
            if let Some(cycle) = visit(i, services, by_name, &mut marks, &mut Vec::new()) {
                return Err(ValidationError::DependencyCycle { cycle });
            }
        }
    }
    Ok(())
}

/// Every mount of a named volume gives it the same driver options (one volume, one creation).
fn check_volume_options(env: &Environment) -> Result<(), ValidationError> {
    let mut seen: BTreeMap<&str, (&BTreeMap<String, String>, &str)> = BTreeMap::new();
    for s in &env.services {
        for v in &s.volumes {
            let Some(name) = v.volume_name() else { continue };
            match seen.get(name) {
                Some((opts, other)) if *opts != &v.options.driver_opts => {
                    return Err(ValidationError::InvalidValue {
                        owner: format!("service `{}`", s.name),
                        field: "volumes",
                        reason: format!(
                            "volume {name} is mounted with other driver options than by `{other}`: a volume is created once"
                        ),
                    })
                }
                Some(_) => {}
                None => {
                    seen.insert(name, (&v.options.driver_opts, &s.name));
                }
            }
        }
    }
    Ok(())
}

/// Two services may publish the same host port only when their roles map them to hosts that share
/// none (checked again against the backend's real hosts when placed).
fn check_host_ports(services: &[Service], roles: &BTreeMap<String, Vec<String>>) -> Result<(), ValidationError> {
    let hosts_of = |s: &Service| s.role.as_ref().and_then(|r| roles.get(r));
    // Two bindings of a port clash when their addresses do: none is every address; `0.0.0.0`
    // every IPv4 one, `::` every IPv6 one.
    let overlap = |a: Option<std::net::IpAddr>, b: Option<std::net::IpAddr>| match (a, b) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified())),
    };
    // (host port, protocol, address) → the service publishing it.
    type Binding = (u16, &'static str, Option<std::net::IpAddr>);
    let mut used: Vec<(Binding, &Service)> = Vec::new();
    for s in services {
        for p in &s.ports {
            if let Publish::Fixed(h) = p.publish {
                let key = (h, p.protocol.as_str(), p.host_ip);
                let clash = used.iter().find(|(k, other)| {
                    (k.0, k.1) == (key.0, key.1)
                        && overlap(k.2, key.2)
                        && match (hosts_of(other), hosts_of(s)) {
                            (Some(a), Some(b)) => a.iter().any(|x| b.contains(x)),
                            // Where an unmapped service runs is not known yet: assume together.
                            _ => true,
                        }
                });
                if let Some((_, first)) = clash {
                    return Err(ValidationError::HostPortConflict {
                        port: h,
                        first: first.name.clone(),
                        second: s.name.clone(),
                    });
                }
                used.push((key, s));
            }
        }
    }
    Ok(())
}

/// Routes must reach a declared port of a long-running service; blue/green and canary need a route.
fn check_routes(env: &Environment) -> Result<(), ValidationError> {
    let invalid =
        |owner: String, field: &'static str, reason: String| ValidationError::InvalidValue { owner, field, reason };
    if let Some(ingress) = &env.ingress {
        for r in &ingress.routes {
            let owner = format!("ingress `{}`", ingress.listener.name);
            let Some(s) = env.service(&r.service) else {
                return Err(invalid(
                    owner,
                    "routes",
                    format!("a route goes to `{}`, which is not a service of the environment", r.service),
                ));
            };
            if s.kind == ServiceKind::Job {
                return Err(invalid(owner, "routes", format!("a route goes to `{}`, which is a job", r.service)));
            }
            if ingress.is_own(&s.name) {
                return Err(invalid(owner, "routes", "a route goes to the ingress itself".into()));
            }
            if !s.ports.iter().any(|p| p.container == r.port) {
                return Err(invalid(
                    owner,
                    "routes",
                    format!(
                        "a route goes to port {} of `{}`, which does not declare it; add .port(Port::tcp({}))",
                        r.port, r.service, r.port
                    ),
                ));
            }
        }
    }
    for s in &env.services {
        if s.rollout.needs_ingress() && !env.ingress.as_ref().is_some_and(|i| i.routes_to(&s.name)) {
            return Err(invalid(
                format!("service `{}`", s.name),
                "rollout",
                format!(
                    "{} moves traffic through the ingress, but no ingress route goes to `{}`",
                    s.rollout.strategy, s.name
                ),
            ));
        }
    }
    Ok(())
}
