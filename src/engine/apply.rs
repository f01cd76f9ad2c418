//! Carrying out a plan. [`apply`] resolves images, observes, plans, then runs one task per service.
//! Each task waits for its dependencies' conditions (a `watch` channel per service), so independent
//! services start concurrently and a dependent starts the moment its conditions hold.
//!
//! Where a rollout decides its next step: [`ServiceRun::run_service`] (long-running services) and
//! [`ServiceRun::run_job`] (jobs).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::deployment::Deployment;
use super::images;
use super::traffic::Traffic;
use crate::backend::{hosts_of, records_of, Backend, Instance, Scope};
use crate::error::{ApplyFailure, Error, Result};
use crate::events::{EventKind, EventSink, RolloutOutcome};
use crate::health::gate::{Cutoff, Gate};
use crate::health::probe;
use crate::model::{Condition, Environment, ServiceKind};
use crate::plan::spec::Template;
use crate::plan::{self, Action, Plan, ServicePlan};
use crate::state::audit::{self, AuditEntry};
use crate::state::lock::DeployLock;
use crate::state::revisions::Recorder;
use crate::state::{jobs, promotion, Store};

/// How far a service has got in this apply; dependents watch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Pending,
    Started,
    Ready,
    Completed,
    Failed,
}

impl Phase {
    fn satisfies(self, c: Condition) -> bool {
        match c {
            Condition::Started => matches!(self, Phase::Started | Phase::Ready | Phase::Completed),
            Condition::Healthy => self == Phase::Ready,
            Condition::CompletedSuccessfully => self == Phase::Completed,
        }
    }
}

enum ServiceOutcome {
    Done(RolloutOutcome),
    Failed(Error),
    Skipped,
}

/// Resolves every service's image (pulling or building where asked, see [`super::images`]) into
/// a [`Template`]; also what happens to each image, for the plan.
pub(crate) async fn templates(
    env: &Environment,
    backend: &dyn Backend,
    store: Option<&Store<'_>>,
    sink: &EventSink,
    mode: images::Mode,
) -> Result<(HashMap<String, Template>, Vec<crate::plan::ImagePlan>)> {
    let mut out = HashMap::new();
    let hosts = hosts_of(backend);
    let orchestrated = backend.orchestrator().is_some();
    // A self-placing target spreads tasks itself: a role only narrows where they may go.
    let placed =
        if orchestrated { super::placement::allowed(env, &hosts)? } else { super::placement::place_all(env, &hosts)? };
    let (images, image_plans) = images::resolve(env, backend, &scope_of(env), store, sink, mode).await?;
    for svc in &env.services {
        let Some(image) = images.get(&svc.name) else { continue };
        let resolved = if orchestrated {
            BTreeMap::new() // every service is reached by its name on the overlay network
        } else {
            super::placement::resolve_refs(env, svc, &placed, &hosts)?
        };
        let mut t = if resolved.is_empty() {
            Template::new(env, svc, &image.id)
        } else {
            let mut s = svc.clone();
            s.env.extend(resolved);
            Template::new(env, &s, &image.id)
        };
        let hosts = placed.get(&svc.name).cloned().unwrap_or_default();
        if orchestrated {
            // The target places tasks itself, among the hosts the role allows.
            t.placement = hosts;
        } else {
            t.hosts = hosts;
        }
        t.image_pin = image.pin.clone();
        out.insert(svc.name.clone(), t);
    }
    Ok((out, image_plans))
}

/// Observes the target and computes the plan (for [`Environment::plan`]: nothing changes).
pub(crate) async fn plan(env: &Environment, backend: &dyn Backend, sink: &EventSink) -> Result<Plan> {
    let scope = scope_of(env);
    let store = Store::open_lenient(backend, &scope).await;
    if let Some(r) = backend.records() {
        r.release_state(&scope).await;
    }
    let store = store?;
    let (templates, images) = templates(env, backend, Some(&store), sink, images::Mode::Plan).await?;
    let observed = observe_with(env, templates, backend, &store, false).await?;
    check_target(backend, &scope, &observed.plan, &observed.templates).await?;
    let mut plan = observed.plan;
    plan.images = images;
    plan.limits = limits(env, backend);
    Ok(plan)
}

/// What a self-rolling target handles differently, or cannot honour, of the description.
fn limits(env: &Environment, backend: &dyn Backend) -> Vec<crate::backend::Limit> {
    match backend.orchestrator() {
        Some(o) => env.services.iter().flat_map(|s| o.limits(s)).collect(),
        None => Vec::new(),
    }
}

/// What only the target can tell (its cores, its bind mount sources), for every service the plan
/// creates instances of, before anything changes.
async fn check_target(
    backend: &dyn Backend,
    scope: &Scope,
    plan: &Plan,
    templates: &HashMap<String, Template>,
) -> Result<()> {
    for sp in plan.services.iter().filter(|s| !s.create.is_empty() || !s.replace.is_empty()) {
        if let Some(t) = templates.get(&sp.service) {
            let slot = sp.create.first().copied().or_else(|| sp.replace.first().map(|(s, _)| *s)).unwrap_or(0);
            backend.check_spec(&t.instance(scope, slot, format!("{}-check", scope.qualified()))).await?;
        }
    }
    Ok(())
}

/// What runs, and the plan against it.
struct Observed {
    plan: Plan,
    /// The templates the plan was computed from.
    templates: HashMap<String, Template>,
    /// What runs, without a discarded waiting set.
    observed: Vec<Instance>,
    /// Rollouts waiting for a promotion that this description holds.
    waiting: Vec<promotion::Pending>,
    /// Rollouts waiting for a promotion that this description replaces.
    discarded: Vec<promotion::Pending>,
}

/// Lists what runs and plans `env` against it. A rollout waiting for a promotion is held when the
/// description is still its version, and its waiting set is discarded otherwise (left out of the
/// plan, then removed). `rollback`: services other than `env`'s are not touched.
async fn observe_with(
    env: &Environment,
    templates: HashMap<String, Template>,
    backend: &dyn Backend,
    store: &Store<'_>,
    rollback: bool,
) -> Result<Observed> {
    let scope = scope_of(env);
    let observed = backend.list_instances(&scope).await?;
    let same = |p: &promotion::Pending| {
        templates.get(&p.service).is_some_and(|t| t.spec_hash == p.spec_hash && t.image_id == p.image_id)
    };
    let (waiting, discarded): (Vec<_>, Vec<_>) = promotion::pending(store)
        .await
        .into_iter()
        .filter(|p| templates.contains_key(&p.service))
        .partition(|p| same(p));
    let discard: Vec<Instance> = observed.iter().filter(|i| discarded.iter().any(|p| p.has(i))).cloned().collect();
    let observed: Vec<Instance> = observed.into_iter().filter(|i| !discard.iter().any(|d| d.id == i.id)).collect();
    let mut completed = HashMap::new();
    for s in env.services.iter().filter(|s| s.kind == ServiceKind::Job) {
        if let Some(c) = jobs::completed(store, &s.name).await {
            completed.insert(s.name.clone(), c);
        }
    }
    let mut plan = plan::compute(env, &templates, &observed, &completed);
    if rollback {
        // Other services are not part of a rollback.
        plan.services.retain(|s| !matches!(s.action, Action::Remove { .. }));
    }
    for sp in plan.services.iter_mut() {
        if let Some(p) = waiting.iter().find(|p| p.service == sp.service) {
            let running = observed.iter().filter(|i| i.service == sp.service && i.is_running()).cloned().collect();
            sp.hold(running, p.weight);
        }
        sp.retire.extend(discard.iter().filter(|d| d.service == sp.service).cloned());
    }
    Ok(Observed { plan, templates, observed, waiting, discarded })
}

pub(crate) fn scope_of(env: &Environment) -> Scope {
    Scope { project: env.project.clone(), environment: env.name.clone() }
}

/// What an [`execute`] does.
pub(crate) enum Operation {
    /// Make the target match the description.
    Apply,
    /// Roll one service out to a recorded revision; nothing else is touched.
    Rollback {
        /// The service.
        service: String,
        /// Its template, restored from the revision.
        template: Box<Template>,
        /// The revision's number.
        revision: u64,
    },
    /// Promote (`true`) or abort the rollout of a service waiting for its promotion.
    Promotion {
        /// The service.
        service: String,
        /// Promote, or abort.
        promote: bool,
    },
}

impl Operation {
    fn describe(&self) -> String {
        match self {
            Operation::Apply => "apply".into(),
            Operation::Rollback { service, revision, .. } => format!("rollback of {service} to revision {revision}"),
            Operation::Promotion { service, promote: true } => format!("promotion of {service}"),
            Operation::Promotion { service, promote: false } => format!("aborted promotion of {service}"),
        }
    }
}

/// Applies the environment: the whole of it bounded by its deadline.
pub(crate) async fn apply(env: &Environment, backend: &dyn Backend, sink: EventSink) -> Result<Deployment> {
    execute(env, backend, sink, Operation::Apply).await
}

/// Runs an operation under the environment's deploy lock (renewing its lease), bounded by its
/// deadline, and writes its audit entry.
pub(crate) async fn execute(
    env: &Environment,
    backend: &dyn Backend,
    sink: EventSink,
    op: Operation,
) -> Result<Deployment> {
    let scope = scope_of(env);
    let operation = op.describe();
    // Every host reachable and fit before anything changes (the lock included).
    backend.preflight().await?;
    let records = records_of(backend, &operation)?;
    let lock = DeployLock::acquire(records, &scope, &sink, &operation, env.actor(), env.lock_timeout).await?;
    let result = lock.hold(records, locked(env, backend, &sink, op, operation)).await;
    if let Err(e) = lock.release(records).await {
        tracing::warn!(error = %e, "could not release the deploy lock; it is taken over once its lease lapses");
    }
    if let Some(r) = backend.records() {
        r.release_state(&scope).await;
    }
    result
}

/// The operation, once the lock is held: open the state store, run, write the audit entry.
async fn locked(
    env: &Environment,
    backend: &dyn Backend,
    sink: &EventSink,
    op: Operation,
    operation: String,
) -> Result<Deployment> {
    let scope = scope_of(env);
    let at = std::time::SystemTime::now();
    let started = Instant::now();
    let instances = backend.list_instances(&scope).await?;
    let (store, lost) = match &op {
        Operation::Apply => Store::open_for_change(backend, &scope, &instances).await?,
        _ => (Store::open(backend, &scope, &instances).await?, None),
    };
    if let Some(note) = &lost {
        tracing::warn!(environment = %scope.qualified(), "{note}");
        sink.emit(EventKind::StateLost { detail: note.clone() });
    }
    let recorder = Recorder {
        origin: match &op {
            Operation::Apply => "apply".into(),
            Operation::Rollback { revision, .. } => format!("rollback to revision {revision}"),
            Operation::Promotion { promote: true, .. } => "apply, then promoted".into(),
            Operation::Promotion { promote: false, .. } => "apply, then aborted".into(),
        },
        actor: env.actor.clone(),
        keep: env.revision_history,
        recorded: Default::default(),
        after_loss: lost.is_some(),
    };
    let result = bounded(env, backend, &store, sink, op, &recorder).await;
    let entry = AuditEntry {
        at,
        took: started.elapsed(),
        operation,
        actor: env.actor.clone(),
        host: crate::process::me().host.clone(),
        revisions: recorder.recorded.lock().map(|m| m.clone()).unwrap_or_default(),
        error: result.as_ref().err().map(|e| e.to_string()),
        notes: lost.into_iter().collect(),
    };
    if let Err(e) = audit::write(&store, &entry).await {
        tracing::warn!(error = %e, "could not write the audit entry");
    }
    result
}

/// The operation itself, within the environment's deadline.
async fn bounded(
    env: &Environment,
    backend: &dyn Backend,
    store: &Store<'_>,
    sink: &EventSink,
    op: Operation,
    recorder: &Recorder,
) -> Result<Deployment> {
    let span = tracing::info_span!("apply", environment = %env.qualified_name());
    let started = Instant::now();
    // A rollback works on the one service, with its restored template.
    let (scoped, overrides) = match op {
        Operation::Promotion { service, promote } => {
            let finish =
                super::promotion::finish(env, backend, store, sink, recorder, &service, promote).instrument(span);
            return match tokio::time::timeout(env.deadline, finish).await {
                Ok(r) => r,
                Err(_) => Err(Error::Deadline {
                    what: format!("promotion of `{service}`"),
                    deadline: env.deadline,
                    pending: vec![service],
                }),
            };
        }
        Operation::Apply => (env.clone(), HashMap::new()),
        Operation::Rollback { service, template, .. } => {
            let mut e = env.clone();
            e.services.retain(|s| s.name == service);
            e.services.iter_mut().for_each(|s| *s = template.service.clone());
            (e, HashMap::from([(service, *template)]))
        }
    };
    let phases: BTreeMap<String, watch::Sender<Phase>> =
        scoped.services.iter().map(|s| (s.name.clone(), watch::channel(Phase::Pending).0)).collect();
    // At the deadline, rollouts in progress roll back (the waits end with a Deadline error, which
    // they handle as any failure); the hard bound leaves them the time to.
    let what = format!("apply of {}", env.qualified_name());
    let cutoff = Cutoff { at: crate::clock::after(started, env.deadline), what: what.clone(), limit: env.deadline };
    let allowance = scoped.services.iter().map(rollback_allowance).max().unwrap_or_default();
    let run = run(env, &scoped, overrides, backend, store, sink, &phases, recorder, &cutoff).instrument(span);
    match tokio::time::timeout(env.deadline.saturating_add(allowance), run).await {
        Ok(Ok(deployment)) => {
            sink.emit(EventKind::Applied { took: started.elapsed() });
            Ok(deployment)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let pending = phases
                .iter()
                .filter(|(_, p)| matches!(*p.borrow(), Phase::Pending | Phase::Started))
                .map(|(n, _)| n.clone())
                .collect();
            Err(Error::Deadline { what, deadline: env.deadline, pending })
        }
    }
}

/// `env` is the whole description; `scoped` the services this run changes (all of them, or the one
/// a rollback restores, whose template is in `overrides`).
#[allow(clippy::too_many_arguments)]
async fn run(
    env: &Environment,
    scoped: &Environment,
    overrides: HashMap<String, Template>,
    backend: &dyn Backend,
    store: &Store<'_>,
    sink: &EventSink,
    phases: &BTreeMap<String, watch::Sender<Phase>>,
    recorder: &Recorder,
    cutoff: &Cutoff,
) -> Result<Deployment> {
    let scope = scope_of(env);
    let rollback = !overrides.is_empty();
    let templates =
        if rollback { overrides } else { templates(env, backend, Some(store), sink, images::Mode::Apply).await?.0 };
    let Observed { plan, templates, observed, waiting, discarded } =
        observe_with(scoped, templates, backend, store, rollback).await?;
    check_target(backend, &scope, &plan, &templates).await?;
    if let Some(refused) = limits(scoped, backend).into_iter().find(|l| l.refused) {
        return Err(Error::unsupported(
            backend.describe(),
            format!("roll out `{}` as described", refused.service),
            refused.what,
        ));
    }
    for p in &discarded {
        promotion::clear(store, &p.service).await?;
    }
    let count = |f: fn(&Action) -> bool| plan.services.iter().filter(|s| f(&s.action)).count();
    sink.emit(EventKind::Planned {
        create: count(|a| matches!(a, Action::Create { .. })),
        replace: count(|a| matches!(a, Action::Replace { .. })),
        scale: count(|a| matches!(a, Action::Scale { .. })),
        remove: count(|a| matches!(a, Action::Remove { .. })),
        unchanged: count(|a| matches!(a, Action::Unchanged)),
    });
    tracing::debug!(%plan);

    if backend.ensure_network(&scope).await? {
        sink.emit(EventKind::NetworkCreated { name: scope.network_name() });
    }
    for v in scoped.volume_names() {
        if backend.ensure_volume(&scope, &v).await? {
            sink.emit(EventKind::VolumeCreated { name: scope.volume_name(&v) });
        }
    }

    // Routes may have changed even where no proxy instance did: load the configuration first.
    let traffic = Traffic::new(backend, env.ingress.as_ref(), &observed, &waiting);
    traffic.sync().await?;

    let http = probe::http_client();
    let runs = plan.services.iter().filter_map(|sp| {
        let t = templates.get(&sp.service)?;
        let phase = phases.get(&sp.service)?;
        let run = ServiceRun {
            cutoff: cutoff.clone(),
            rollout_cutoff: std::sync::OnceLock::new(),
            backend,
            store,
            sink,
            scope: &scope,
            http: &http,
            template: t,
            plan: sp,
            phases,
            traffic: &traffic,
            recorder,
        };
        let span = tracing::info_span!("service", service = %sp.service);
        Some(async move { (sp.service.clone(), run.run(phase).instrument(span).await) })
    });
    let outcomes = join_all(runs).await;

    // Services no longer described go last, once their replacements (if any) are up.
    let orphans: Vec<&ServicePlan> =
        plan.services.iter().filter(|s| matches!(s.action, Action::Remove { .. })).collect();
    for o in orphans {
        match backend.orchestrator() {
            Some(orchestrator) => {
                orchestrator.remove_service(&scope, &o.service).await?;
            }
            None => retire(backend, sink, &o.service, &o.retire, Duration::from_secs(10)).await?,
        }
        sink.emit(EventKind::ServiceRemoved { service: o.service.clone() });
    }

    let mut failed = Vec::new();
    let mut not_started = Vec::new();
    let mut done = BTreeMap::new();
    for (service, outcome) in outcomes {
        match outcome {
            ServiceOutcome::Done(o) => {
                done.insert(service, o);
            }
            ServiceOutcome::Failed(e) => failed.push((service, e)),
            ServiceOutcome::Skipped => not_started.push(service),
        }
    }
    if !failed.is_empty() || !not_started.is_empty() {
        return Err(Error::Apply(Box::new(ApplyFailure { environment: env.qualified_name(), failed, not_started })));
    }
    let instances = backend.list_instances(&scope).await?;
    Ok(Deployment::new(env, backend.published_host(), instances, done))
}

/// Stops and removes instances, concurrently.
pub(crate) async fn retire(
    backend: &dyn Backend,
    sink: &EventSink,
    service: &str,
    instances: &[Instance],
    grace: Duration,
) -> Result<()> {
    let results = join_all(instances.iter().map(|i| async move {
        if i.is_running() {
            backend.stop_instance(&i.id, grace).await?;
            sink.emit(EventKind::InstanceStopped { service: service.to_string(), instance: i.name.clone() });
        }
        backend.remove_instance(&i.id).await?;
        sink.emit(EventKind::InstanceRemoved { service: service.to_string(), instance: i.name.clone() });
        Ok::<_, Error>(())
    }))
    .await;
    results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

/// A unique container name: `project-env-service-slot-nonce`.
fn instance_name(scope: &Scope, service: &str, slot: u32) -> String {
    format!("{}-{service}-{slot}-{}", scope.qualified(), crate::process::nonce())
}

/// An instance created but not started yet.
pub(super) struct Created {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) slot: u32,
}

/// One service's part of an apply.
pub(super) struct ServiceRun<'a> {
    pub(super) backend: &'a dyn Backend,
    pub(super) store: &'a Store<'a>,
    pub(super) sink: &'a EventSink,
    pub(super) scope: &'a Scope,
    pub(super) http: &'a reqwest::Client,
    pub(super) template: &'a Template,
    pub(super) plan: &'a ServicePlan,
    pub(super) phases: &'a BTreeMap<String, watch::Sender<Phase>>,
    pub(super) traffic: &'a Traffic<'a>,
    pub(super) recorder: &'a Recorder,
    /// When this service's part of the operation must end: the environment's deadline. Waits end
    /// there with [`Error::Deadline`], which a rollout handles as any failure: it rolls back.
    pub(super) cutoff: Cutoff,
    /// The rollout's own deadline, if it comes first, set when the rollout starts (once its
    /// dependencies are met).
    pub(super) rollout_cutoff: std::sync::OnceLock<Cutoff>,
}

/// How long a rollback may take after a deadline ended a rollout: restoring old instances waits
/// for their health gate, and stops take their grace.
pub(crate) fn rollback_allowance(svc: &crate::model::Service) -> Duration {
    svc.deadline()
        .saturating_add(svc.stop_grace.saturating_mul(2))
        .saturating_add(svc.rollout.drain)
        .saturating_add(Duration::from_secs(60))
}

impl ServiceRun<'_> {
    pub(super) fn name(&self) -> &str {
        &self.template.service.name
    }

    async fn run(&self, phase: &watch::Sender<Phase>) -> ServiceOutcome {
        // Creating a container depends on nothing: do it now, so only `start` waits for the
        // dependencies and a dependent starts the moment its conditions hold.
        // A target that rolls out by itself creates nothing here.
        let orchestrator = self.backend.orchestrator();
        let slots = if orchestrator.is_some() { Vec::new() } else { self.slots_to_launch() };
        let created = join_all(slots.into_iter().map(|s| self.create(s))).await;
        let (created, create_errors): (Vec<_>, Vec<_>) = created.into_iter().partition(|r| r.is_ok());
        let created: Vec<Created> = created.into_iter().filter_map(|r| r.ok()).collect();
        let deps = match tokio::time::timeout_at(self.cutoff.at, self.wait_for_dependencies()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(dep)) => Err(Some(dep)),
            Err(_) => Err(None), // the deadline passed first
        };
        let first_create_error = create_errors.into_iter().find_map(|r| r.err());
        if deps.is_err() || first_create_error.is_some() {
            let ids: Vec<&str> = created.iter().map(|c| c.id.as_str()).collect();
            join_all(ids.iter().map(|id| self.backend.remove_instance(id))).await;
        }
        match deps {
            Err(Some(dep)) => {
                phase.send_replace(Phase::Failed);
                self.sink.emit(EventKind::ServiceSkipped { service: self.name().to_string(), because: dep.clone() });
                return ServiceOutcome::Skipped;
            }
            Err(None) => {
                let e = self.cutoff.error(self.name());
                phase.send_replace(Phase::Failed);
                self.sink.emit(EventKind::ServiceFailed { service: self.name().to_string(), error: e.to_string() });
                return ServiceOutcome::Failed(e);
            }
            Ok(()) => {}
        }
        // The rollout starts now: its own deadline, if it has one and it comes first, counts from here.
        if let Some(d) = self.template.service.rollout.deadline {
            let at = crate::clock::after(Instant::now(), d);
            if at < self.cutoff.at {
                let _ = self.rollout_cutoff.set(Cutoff { at, what: format!("rollout of `{}`", self.name()), limit: d });
            }
        }
        let created_ids: Vec<String> = created.iter().map(|c| c.id.clone()).collect();
        let work = async {
            match (first_create_error, orchestrator) {
                (Some(e), _) => Err(e),
                (None, Some(o)) => super::orchestrated::run(self, o, phase).await,
                (None, None) => match self.template.service.kind {
                    ServiceKind::Job => self.run_job(phase, created).await.map(|ran| {
                        if ran {
                            RolloutOutcome::Succeeded
                        } else {
                            RolloutOutcome::Unchanged
                        }
                    }),
                    ServiceKind::Service => self.run_service(phase, created).await,
                },
            }
        };
        // The deadline ends the waits and the rollout rolls back by itself; this bound is only
        // the last resort if even the rollback does not finish in its allowance.
        let bound = crate::clock::after(self.cutoff().at, rollback_allowance(&self.template.service));
        let result = match tokio::time::timeout_at(bound, work).await {
            Ok(r) => r,
            Err(_) => {
                // Remove what this rollout started and bring back any old instance it had stopped.
                join_all(created_ids.iter().map(|id| self.backend.remove_instance(id))).await;
                let old: Vec<Instance> = self.plan.replace.iter().map(|(_, i)| i.clone()).collect();
                let _ = self.restore(&old).await;
                Err(self.cutoff().error(self.name()))
            }
        };
        self.record_revision(&result).await;
        match result {
            Ok(o) => ServiceOutcome::Done(o),
            Err(e) => {
                phase.send_replace(Phase::Failed);
                self.sink.emit(EventKind::ServiceFailed { service: self.name().to_string(), error: e.to_string() });
                ServiceOutcome::Failed(e)
            }
        }
    }

    /// Records the revision this run rolled out, with its outcome (long-running services only; an
    /// unchanged service only when it has no revision yet).
    async fn record_revision(&self, result: &Result<RolloutOutcome>) {
        if self.template.service.kind != ServiceKind::Service {
            return;
        }
        let changed = matches!(self.plan.action, Action::Create { .. } | Action::Replace { .. });
        let outcome = match result {
            // Recorded when promoted or aborted.
            Ok(RolloutOutcome::AwaitingPromotion { .. }) => return,
            Ok(o) => o.clone(),
            Err(_) if !changed => return,
            Err(Error::RolledBack { reason, .. }) => RolloutOutcome::RolledBack { reason: reason.to_string() },
            Err(Error::Paused { reason, .. }) => RolloutOutcome::Paused { reason: reason.to_string() },
            Err(e) => RolloutOutcome::Failed { reason: e.to_string() },
        };
        match self.recorder.record(self.store, self.template, &outcome).await {
            Ok(Some(n)) => {
                self.sink.emit(EventKind::RevisionRecorded { service: self.name().to_string(), revision: n })
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(service = self.name(), error = %e, "could not record the revision"),
        }
    }

    /// Waits until every dependency meets its condition; `Err(name)` if one failed.
    async fn wait_for_dependencies(&self) -> std::result::Result<(), String> {
        let waits = self.template.service.depends_on.iter().map(|d| async move {
            let Some(tx) = self.phases.get(&d.service) else { return Ok(()) };
            let mut rx = tx.subscribe();
            let outcome = rx.wait_for(|p| p.satisfies(d.condition) || *p == Phase::Failed).await;
            match outcome.map(|p| *p) {
                Ok(p) if p.satisfies(d.condition) => Ok(()),
                _ => Err(d.service.clone()),
            }
        });
        join_all(waits).await.into_iter().collect::<std::result::Result<Vec<()>, String>>().map(|_| ())
    }

    /// Where this service's waits end: the rollout's own deadline once its rollout has started,
    /// if it comes first, else the environment's.
    pub(super) fn cutoff(&self) -> &Cutoff {
        self.rollout_cutoff.get().unwrap_or(&self.cutoff)
    }

    /// The health gate for new instances: its waits end at the cutoff.
    pub(super) fn gate(&self) -> Gate<'_> {
        Gate {
            backend: self.backend,
            http: self.http,
            events: self.sink,
            service: self.name(),
            cutoff: Some(self.cutoff()),
            settle: self.template.service.settle,
        }
    }

    /// The health gate for old instances a rollback brings back: a deadline that passed must not
    /// keep the previous version from serving again.
    pub(super) fn restore_gate(&self) -> Gate<'_> {
        Gate { cutoff: None, ..self.gate() }
    }

    /// The slots that get a new instance in this apply: replaced ones, then missing ones.
    fn slots_to_launch(&self) -> Vec<u32> {
        let mut slots: Vec<u32> = self.plan.replace.iter().map(|(s, _)| *s).collect();
        slots.extend(&self.plan.create);
        slots
    }

    /// Creates (does not start) one instance in `slot`.
    async fn create(&self, slot: u32) -> Result<Created> {
        let name = instance_name(self.scope, self.name(), slot);
        let spec = self.template.instance(self.scope, slot, name.clone());
        let id = self.backend.create_instance(&spec).await?;
        let prepared = if self.traffic.is_proxy(self.name()) {
            self.traffic.prepare_proxy(&id, self.template.host_for(slot)).await
        } else if self.traffic.is_front(self.name()) {
            self.traffic.prepare_front(&id).await
        } else {
            Ok(())
        };
        if let Err(e) = prepared {
            let _ = self.backend.remove_instance(&id).await;
            return Err(e);
        }
        self.sink.emit(EventKind::InstanceCreated { service: self.name().to_string(), instance: name.clone() });
        Ok(Created { id, name, slot })
    }

    /// Starts a created instance and reads it back (its address is needed for probes).
    pub(super) async fn start(&self, c: &Created) -> Result<(Instance, Instant)> {
        if let Err(e) = self.backend.start_instance(&c.id).await {
            let _ = self.backend.remove_instance(&c.id).await;
            return Err(e);
        }
        let started = Instant::now();
        self.sink.emit(EventKind::InstanceStarted { service: self.name().to_string(), instance: c.name.clone() });
        let instance = self.backend.inspect_instance(&c.id).await?;
        Ok((instance, started))
    }

    /// A long-running service: verify what is kept, then replace, launch and retire as the rollout
    /// says (`rollout.rs`).
    async fn run_service(&self, phase: &watch::Sender<Phase>, created: Vec<Created>) -> Result<RolloutOutcome> {
        let svc = &self.template.service;
        let p = self.plan;
        let grace = self.template.stop_grace();

        // Kept instances are only checked, never touched: probed if they have a health check (the
        // planner kept only running ones; without a check there is nothing more to see).
        let gate = self.gate();
        let checked = p.keep.iter().filter(|_| svc.health.is_some());
        let verified = join_all(
            checked.map(|i| gate.wait_ready(svc.health.as_ref(), i, Instant::now(), svc.deadline(), Duration::ZERO)),
        )
        .await;
        if let Some(e) = verified.into_iter().find_map(|r| r.err()) {
            join_all(created.iter().map(|c| self.backend.remove_instance(&c.id))).await;
            return Err(e);
        }
        if let Some(weight) = p.awaiting {
            // Both sets keep running as they are until someone promotes or aborts.
            self.sink.emit(EventKind::AwaitingPromotion { service: self.name().to_string(), weight });
            phase.send_replace(Phase::Ready);
            self.sink.emit(EventKind::ServiceReady { service: self.name().to_string() });
            return Ok(RolloutOutcome::AwaitingPromotion { weight });
        }
        let outcome = self.replace(phase, created).await?;
        // Surplus and duplicates leave rotation first.
        self.leave(&p.retire, svc.rollout.drain).await?;
        retire(self.backend, self.sink, self.name(), &p.retire, grace).await?;
        let outcome = if p.action == Action::Unchanged {
            self.sink.emit(EventKind::ServiceUnchanged { service: self.name().to_string() });
            RolloutOutcome::Unchanged
        } else {
            // A scale-down or duplicate clean-up changed something even without a rollout.
            let outcome = if outcome == RolloutOutcome::Unchanged { RolloutOutcome::Succeeded } else { outcome };
            self.sink.emit(EventKind::RolloutFinished { service: self.name().to_string(), outcome: outcome.clone() });
            outcome
        };
        phase.send_replace(Phase::Ready);
        self.sink.emit(EventKind::ServiceReady { service: self.name().to_string() });
        Ok(outcome)
    }

    /// A job: run it unless it already exited 0 for exactly this configuration, and require exit
    /// code 0. A run still going (an interrupted apply started it) is waited for, not started
    /// twice. Returns whether it ran (`false`: it had completed already).
    async fn run_job(&self, phase: &watch::Sender<Phase>, created: Vec<Created>) -> Result<bool> {
        let svc = &self.template.service;
        let p = self.plan;
        retire(self.backend, self.sink, self.name(), &p.retire, Duration::from_secs(2)).await?;
        let instance = match p.keep.first() {
            Some(kept) if !kept.is_running() => {
                // Exited 0 with this configuration (the planner keeps nothing else): make sure the
                // store says so too, so that pruning its container does not make it run again.
                if jobs::completed(self.store, self.name()).await
                    != Some((self.template.spec_hash.clone(), self.template.image_id.clone()))
                {
                    jobs::record(self.store, self.template).await?;
                }
                self.sink.emit(EventKind::ServiceUnchanged { service: self.name().to_string() });
                phase.send_replace(Phase::Completed);
                return Ok(false);
            }
            // Still running from an interrupted apply: wait for it.
            Some(kept) => kept.clone(),
            // Completed for this configuration, by the store's record (its container was pruned).
            None if p.action == Action::Unchanged => {
                self.sink.emit(EventKind::ServiceUnchanged { service: self.name().to_string() });
                phase.send_replace(Phase::Completed);
                return Ok(false);
            }
            None => {
                let old: Vec<Instance> = p.replace.iter().map(|(_, i)| i.clone()).collect();
                retire(self.backend, self.sink, self.name(), &old, Duration::from_secs(2)).await?;
                let Some(c) = created.first() else {
                    return Err(Error::backend("run job", self.name(), "no instance was created for the job"));
                };
                self.start(c).await?.0
            }
        };
        phase.send_replace(Phase::Started);
        let deadline = svc.deadline();
        let end = crate::clock::after(Instant::now(), deadline).min(self.cutoff().at);
        let code = match tokio::time::timeout_at(end, self.backend.wait_exit(&instance.id)).await {
            Ok(r) => r?,
            Err(_) => {
                let _ = self.backend.stop_instance(&instance.id, Duration::from_secs(2)).await;
                if self.cutoff().passed() {
                    return Err(self.cutoff().error(&instance.name));
                }
                return Err(Error::Deadline {
                    what: format!("job `{}`", svc.name),
                    deadline,
                    pending: vec![instance.name.clone()],
                });
            }
        };
        self.sink.emit(EventKind::JobExited {
            service: self.name().to_string(),
            instance: instance.name.clone(),
            exit_code: code,
        });
        if code != 0 {
            let logs = self.backend.logs_tail(&instance.id, 20).await.unwrap_or_default();
            return Err(Error::JobFailed {
                service: svc.name.clone(),
                instance: instance.name.clone(),
                exit_code: code,
                logs,
            });
        }
        jobs::record(self.store, self.template).await?;
        phase.send_replace(Phase::Completed);
        Ok(true)
    }
}
