//! Day-two operations on an environment: [`down`], [`status`], [`logs`], [`exec`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};

use super::apply::scope_of;
use super::retire::retire;
use crate::backend::{records_of, Backend, ExecOutput, Instance, InstanceState, LogLine};
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::health::probe;
use crate::model::Environment;
use crate::state::lock::DeployLock;

/// Options of [`Environment::down`](crate::Environment::down). Volumes are kept unless asked.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Down {
    /// Also remove the environment's named volumes (their data is lost).
    pub remove_volumes: bool,
    /// How long each container gets to exit after its stop signal before it is killed; `None`:
    /// each service's own [stop grace period](crate::ServiceBuilder::stop_grace_period).
    /// Zero removes running containers at once (killed, as `docker rm -f` does).
    pub stop_grace: Option<Duration>,
}

impl Down {
    /// Also remove the named volumes.
    pub fn with_volumes(mut self) -> Self {
        self.remove_volumes = true;
        self
    }

    /// Removes running containers at once, without waiting for them to exit (`docker rm -f`):
    /// what a test harness wants, since nothing is left to serve. One container goes in about
    /// the engine's removal time instead of up to its stop grace period.
    pub fn force(mut self) -> Self {
        self.stop_grace = Some(Duration::ZERO);
        self
    }

    /// Gives every container this long to exit after its stop signal, whatever its service says.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = Some(grace);
        self
    }
}

/// What [`Environment::down`](crate::Environment::down) removed and kept. Serializes with the
/// field names below.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DownReport {
    /// Containers removed.
    pub removed_instances: Vec<String>,
    /// Whether the network was removed.
    pub removed_network: bool,
    /// Volumes removed.
    pub removed_volumes: Vec<String>,
    /// Volumes kept.
    pub kept_volumes: Vec<String>,
}

pub(crate) async fn down(env: &Environment, backend: &dyn Backend, opts: Down, sink: &EventSink) -> Result<DownReport> {
    let scope = scope_of(env);
    let ephemeral = env.ephemeral;
    let work = async {
        let instances = backend.list_instances(&scope).await?;
        let mut by_service: BTreeMap<&str, Vec<Instance>> = BTreeMap::new();
        for i in &instances {
            by_service.entry(i.service.as_str()).or_default().push(i.clone());
        }
        if let Some(o) = backend.orchestrator() {
            // The target's services, with their tasks.
            for service in o.services(&scope).await? {
                o.remove_service(&scope, &service).await?;
                sink.emit(crate::events::EventKind::ServiceRemoved { service });
            }
        } else {
            let removals = by_service.iter().map(|(service, list)| {
                let grace = opts
                    .stop_grace
                    .or_else(|| env.service(service).map(|s| s.stop_grace))
                    .unwrap_or(Duration::from_secs(10));
                retire(backend, sink, service, list, grace)
            });
            futures::future::join_all(removals).await.into_iter().collect::<Result<Vec<()>>>()?;
        }
        // The environment's records (revisions, audit, waiting promotions, kept images) go with it.
        if !ephemeral {
            records_of(backend, "take an environment down")?.remove_state(&scope).await?;
        }
        Ok::<_, Error>(instances)
    };
    let instances = if ephemeral {
        // One process's own environment: nobody else deploys it, so no lock is taken.
        work.await?
    } else {
        // Never tear down under a running deploy.
        let records = records_of(backend, "take an environment down")?;
        let lock = DeployLock::acquire(records, &scope, sink, "down", env.actor(), env.lock_timeout()).await?;
        let instances = match lock.hold(records, work).await {
            Ok(i) => i,
            Err(e) => {
                let _ = lock.release(records).await;
                return Err(e);
            }
        };
        lock.release_all(records).await?;
        instances
    };
    // The engine's default network is not the environment's to remove.
    let removed_network = !scope.default_network && backend.remove_network(&scope).await?;
    let volumes = backend.list_volumes(&scope).await?;
    let mut report = DownReport {
        removed_instances: instances.iter().map(|i| i.name.clone()).collect(),
        removed_network,
        ..Default::default()
    };
    for v in volumes {
        if opts.remove_volumes {
            backend.remove_volume(&v).await?;
            report.removed_volumes.push(v);
        } else {
            report.kept_volumes.push(v);
        }
    }
    Ok(report)
}

/// The state of an environment on a target. Its `Display` is a table for people; it serializes
/// as `{"environment", "services": [{"name", "described", "desired", "running", "instances":
/// [{"name", "slot", "state", "exit_code", "health": {"status": "unhealthy", "detail": "…"},
/// "host"}]}]}`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    /// `project-environment`.
    pub environment: String,
    /// Described services, then any found running but no longer described.
    pub services: Vec<ServiceStatus>,
}

/// The state of one service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// Whether it is in the description.
    pub described: bool,
    /// Replicas asked for (0 when not described).
    pub desired: u32,
    /// Instances running.
    pub running: u32,
    /// Each instance.
    pub instances: Vec<InstanceStatus>,
}

/// The state of one instance.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InstanceStatus {
    /// Container name.
    pub name: String,
    /// Replica slot.
    pub slot: u32,
    /// Engine state.
    pub state: InstanceState,
    /// Exit code, if exited.
    pub exit_code: Option<i64>,
    /// Result of one probe of its health check.
    pub health: Health,
    /// The host (node) it runs on, on a target with several.
    pub host: Option<String>,
}

/// Health of an instance, as one probe just saw it. Serializes as `{"status": "healthy"}` or
/// `{"status": "unhealthy", "detail": "…"}` (also `no_check`, `not_running`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Health {
    /// The probe passed.
    Healthy,
    /// The probe failed; what it saw.
    Unhealthy(String),
    /// The service has no health check.
    NoCheck,
    /// Not running.
    NotRunning,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Healthy => f.write_str("healthy"),
            Health::Unhealthy(detail) => write!(f, "unhealthy: {detail}"),
            Health::NoCheck => f.write_str("no health check"),
            Health::NotRunning => f.write_str("not running"),
        }
    }
}

impl std::fmt::Display for Status {
    /// One line per service (`api  2/2 running`, with `(not described)` for an orphan), then one
    /// per instance with its state, host and health.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status of {}:", self.environment)?;
        let width = self.services.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &self.services {
            let orphan = if s.described { "" } else { " (not described)" };
            write!(f, "\n  {:width$}  {}/{} running{orphan}", s.name, s.running, s.desired)?;
            for i in &s.instances {
                let code = i.exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default();
                let host = i.host.as_deref().map(|h| format!(" on {h}")).unwrap_or_default();
                write!(f, "\n    {} [{}] {}{code}{host}: {}", i.name, i.slot, i.state, i.health)?;
            }
        }
        Ok(())
    }
}

/// How many instances a service should have: its replicas, or, for a global one, one per host
/// it may be placed on (on a swarm: per node its role allows, every node without one).
fn desired(env: &Environment, svc: &crate::model::Service, backend: &dyn Backend) -> u32 {
    if !svc.global {
        return svc.replicas;
    }
    let hosts = crate::backend::hosts_of(backend);
    let mut placed = if backend.orchestrator().is_some() {
        let allowed = super::placement::allowed(env, &hosts).ok().and_then(|mut m| m.remove(&svc.name));
        allowed.filter(|a| !a.is_empty()).unwrap_or_else(|| hosts.iter().map(|h| h.name.clone()).collect())
    } else {
        super::placement::hosts_of(env, svc, &hosts).unwrap_or_default()
    };
    placed.sort();
    placed.dedup();
    u32::try_from(placed.len()).unwrap_or(u32::MAX).max(1)
}

pub(crate) async fn status(env: &Environment, backend: &dyn Backend) -> Result<Status> {
    let instances = backend.list_instances(&scope_of(env)).await?;
    let mut names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    for i in &instances {
        if !names.contains(&i.service) {
            names.push(i.service.clone());
        }
    }
    let mut services = Vec::new();
    for name in names {
        let svc = env.service(&name);
        let mine: Vec<&Instance> = instances.iter().filter(|i| i.service == name).collect();
        let checks = mine.iter().map(|i| async move {
            let health = match (i.is_running(), svc.and_then(|s| s.health.as_ref())) {
                (false, _) => Health::NotRunning,
                (true, None) => Health::NoCheck,
                (true, Some(check)) => {
                    let r = probe::check_once(backend, check, i).await;
                    if r.passed {
                        Health::Healthy
                    } else {
                        Health::Unhealthy(r.detail)
                    }
                }
            };
            InstanceStatus {
                name: i.name.clone(),
                slot: i.slot,
                state: i.state,
                exit_code: i.exit_code,
                health,
                host: i.host.clone(),
            }
        });
        let statuses = futures::future::join_all(checks).await;
        services.push(ServiceStatus {
            name: name.clone(),
            described: svc.is_some(),
            desired: svc.map(|s| desired(env, s, backend)).unwrap_or(0),
            running: mine.iter().filter(|i| i.is_running()).count() as u32,
            instances: statuses,
        });
    }
    Ok(Status { environment: env.qualified_name(), services })
}

/// Options of [`Environment::logs`](crate::Environment::logs).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LogOptions {
    /// Keep streaming new lines.
    pub follow: bool,
    /// Only the last N lines of each instance (all when `None`).
    pub tail: Option<usize>,
}

impl LogOptions {
    /// Keep streaming new lines.
    pub fn follow(mut self) -> Self {
        self.follow = true;
        self
    }

    /// Start from the last `n` lines of each instance.
    pub fn tail(mut self, n: usize) -> Self {
        self.tail = Some(n);
        self
    }
}

async fn instances_of(env: &Environment, backend: &dyn Backend, service: &str) -> Result<Vec<Instance>> {
    if env.service(service).is_none() {
        return Err(Error::UnknownService { environment: env.qualified_name(), service: service.to_string() });
    }
    let mut all: Vec<Instance> =
        backend.list_instances(&scope_of(env)).await?.into_iter().filter(|i| i.service == service).collect();
    all.sort_by_key(|i| (!i.is_running(), i.slot));
    Ok(all)
}

pub(crate) async fn logs(
    env: &Environment,
    backend: &dyn Backend,
    service: &str,
    opts: LogOptions,
) -> Result<BoxStream<'static, Result<LogLine>>> {
    let instances = instances_of(env, backend, service).await?;
    let streams: Vec<_> = instances
        .iter()
        .map(|i| {
            let name = i.name.clone();
            backend.logs(&i.id, opts.follow, opts.tail).map(move |line| {
                line.map(|mut l| {
                    l.instance = name.clone();
                    l
                })
            })
        })
        .collect();
    Ok(stream::select_all(streams).boxed())
}

pub(crate) async fn exec(
    env: &Environment,
    backend: &dyn Backend,
    service: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecOutput> {
    let instances = instances_of(env, backend, service).await?;
    let target = instances.iter().find(|i| i.is_running()).ok_or_else(|| {
        Error::backend_kind("exec", service, crate::error::ErrorKind::NotFound, "no running instance")
    })?;
    backend.exec(&target.id, command, timeout).await
}
