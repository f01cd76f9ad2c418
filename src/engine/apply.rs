//! Carrying out a plan. [`apply`] resolves images, observes, plans, then runs one task per service.
//! Each task waits for its dependencies' conditions (a `watch` channel per service), so independent
//! services start concurrently and a dependent starts the moment its conditions hold.
//!
//! Each service's part is a [`ServiceRun`], run by `dispatch.rs`; how its instances are replaced is
//! `rollout/`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::deployment::Deployment;
use super::images;
use super::traffic::Traffic;
use crate::backend::{hosts_of, label, records_of, Backend, Instance, Scope};
use crate::error::{ApplyFailure, Error, Result};
use crate::events::{EventKind, EventSink};
use crate::health::gate::Cutoff;
use crate::health::probe;
use crate::model::{Environment, NetworkMode, ServiceKind};
use crate::plan::spec::Template;
use crate::plan::{self, Action, Plan, ServicePlan};
use crate::state::audit::{self, AuditEntry};
use crate::state::lock::DeployLock;
use crate::state::revisions::Recorder;
use crate::state::{jobs, promotion, Store};

/// What each service of `env` runs as on `backend` once applied, in service order: its
/// configuration hash and image ID (images resolved as an apply resolves them: pulled or built
/// where missing). Nothing else changes; for a fingerprint of the environment.
pub(crate) async fn resolved(env: &Environment, backend: &dyn Backend) -> Result<Vec<(String, String, String)>> {
    let sink = EventSink::new(env.qualified_name(), None);
    let (templates, _) = templates(env, backend, None, &sink, images::Mode::Apply).await?;
    Ok(env
        .services
        .iter()
        .filter_map(|s| templates.get(&s.name).map(|t| (s.name.clone(), t.spec_hash.clone(), t.image_id.clone())))
        .collect())
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
    let front = front_label(env)?;
    for svc in &env.services {
        let Some(image) = images.get(&svc.name) else { continue };
        let labelled;
        let svc = match &front {
            Some((name, digest)) if *name == svc.name => {
                let mut s = svc.clone();
                s.labels.insert(label::FRONT_CONFIG.to_string(), digest.clone());
                labelled = s;
                &labelled
            }
            _ => svc,
        };
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
            t.self_placed = true;
        } else {
            t.place_on(hosts);
        }
        t.image_pin = image.pin.clone();
        out.insert(svc.name.clone(), t);
    }
    tie_shared_namespaces(env, &mut out);
    Ok((out, image_plans))
}

/// The ingress front's name and a digest of its Caddy configuration, which it carries as a label.
fn front_label(env: &Environment) -> Result<Option<(String, String)>> {
    let Some(ingress) = env.ingress() else { return Ok(None) };
    let body = serde_json::to_vec(&crate::ingress::config::render_front(ingress))
        .map_err(|e| Error::backend("configure ingress", ingress.front().name(), e.to_string()))?;
    let digest = crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(&body));
    Ok(Some((ingress.front().name().to_string(), digest[..16].to_string())))
}

/// A service in another's network namespace (`NetworkMode::Service`) records that service's
/// configuration and image in its own (a label), so replacing the owner of the namespace, which
/// takes the namespace with it, replaces it too.
fn tie_shared_namespaces(env: &Environment, templates: &mut HashMap<String, Template>) {
    for svc in &env.services {
        let Some(NetworkMode::Service(owner)) = &svc.container.network_mode else { continue };
        // An owner that keeps its image across image changes (the ingress's listener) is marked
        // by its configuration alone.
        let Some(mark) = templates.get(owner).map(|o| match o.service.keep_image {
            true => o.spec_hash.clone(),
            false => format!("{}@{}", o.spec_hash, o.image_id),
        }) else {
            continue;
        };
        let Some(t) = templates.get_mut(&svc.name) else { continue };
        let mut s = t.service.clone();
        s.labels.insert(label::NETWORK_OF.to_string(), mark);
        let mut tied = Template::with_env(&s, &t.image_id, t.env.clone());
        tied.hosts = std::mem::take(&mut t.hosts);
        tied.placement = std::mem::take(&mut t.placement);
        tied.image_pin = t.image_pin.take();
        tied.self_placed = t.self_placed;
        *t = tied;
    }
}

/// Observes the target and computes the plan (for [`Environment::plan`]: nothing changes).
pub(crate) async fn plan(env: &Environment, backend: &dyn Backend, sink: &EventSink) -> Result<Plan> {
    let scope = scope_of(env);
    let store = if env.ephemeral {
        Store::ephemeral(backend, &scope)
    } else {
        let store = Store::open_lenient(backend, &scope).await;
        if let Some(r) = backend.records() {
            r.release_state(&scope).await;
        }
        store?
    };
    let (templates, images) = templates(env, backend, Some(&store), sink, images::Mode::Plan).await?;
    let observed = observe_with(env, templates, backend, &store, false).await?;
    check_target(backend, &scope, &observed.plan, &observed.templates).await?;
    let mut plan = observed.plan;
    plan.images = images;
    plan.limits = limits(env, backend);
    Ok(plan)
}

/// What the target handles differently, or cannot honour, of the description.
fn limits(env: &Environment, backend: &dyn Backend) -> Vec<crate::backend::Limit> {
    env.services.iter().flat_map(|s| backend.limits(s)).collect()
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
            if !t.service.files.is_empty() && backend.files().is_none() && backend.orchestrator().is_none() {
                return Err(super::files::unsupported(backend, &sp.service));
            }
            let slot = sp.create.first().copied().or_else(|| sp.replace.first().map(|(s, _)| *s)).unwrap_or(0);
            if let Some(runtime) = backend.instances() {
                runtime.check_spec(&t.instance(scope, slot, format!("{}-check", scope.qualified()))).await?;
            }
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
    let observed = super::files::read_secret_files(backend, &templates, observed).await;
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

use super::retire::retire;
use super::service_run::rollback_allowance;
use super::service_run::{Phase, ServiceOutcome, ServiceRun};

pub(crate) fn scope_of(env: &Environment) -> Scope {
    Scope {
        project: env.project.clone(),
        environment: env.name.clone(),
        marks: env.labels.clone(),
        default_network: env.default_network,
    }
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
    if env.ephemeral {
        // One process's own environment: no lock to take, no records to keep.
        return locked(env, backend, &sink, op, operation).await;
    }
    let records = records_of(backend, &operation)?;
    let lock = DeployLock::acquire(records, &scope, &sink, &operation, env.actor(), env.lock_timeout).await?;
    let result = lock.hold(records, locked(env, backend, &sink, op, operation)).await;
    // The audit entry is written: the lock and whatever the state store held open go at once.
    let release = async {
        if let Err(e) = lock.release(records).await {
            tracing::warn!(error = %e, "could not release the deploy lock; it is taken over once its lease lapses");
        }
    };
    let accessor = async {
        if let Some(r) = backend.records() {
            r.release_state(&scope).await;
        }
    };
    futures::future::join(release, accessor).await;
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
        _ if env.ephemeral => (Store::ephemeral(backend, &scope), None),
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
    if env.ephemeral {
        return result;
    }
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
    let prepared = async {
        let templates =
            if rollback { overrides } else { templates(env, backend, Some(store), sink, images::Mode::Apply).await?.0 };
        let observed = observe_with(scoped, templates, backend, store, rollback).await?;
        check_target(backend, &scope, &observed.plan, &observed.templates).await?;
        if let Some(refused) = limits(scoped, backend).into_iter().find(|l| l.refused) {
            return Err(Error::unsupported(
                backend.describe(),
                format!("roll out `{}` as described", refused.service),
                refused.what,
            ));
        }
        Ok(observed)
    };
    // The network is created while the images are resolved and the plan is made (most applies
    // find it there); a plan refused leaves no network this apply created.
    let network = async {
        if scope.default_network {
            Ok(false)
        } else {
            backend.ensure_network(&scope).await
        }
    };
    // A new environment's store is written meanwhile too, before its first container.
    let (network, prepared, saved) = futures::future::join3(network, prepared, store.save_if_new()).await;
    let prepared = prepared.and_then(|o| saved.map(|()| o));
    let (network_created, Observed { plan, templates, observed, waiting, discarded }) = match (network, prepared) {
        (Ok(created), Ok(o)) => (created, o),
        (Ok(created), Err(e)) => {
            if created {
                let _ = backend.remove_network(&scope).await;
            }
            return Err(e);
        }
        (Err(e), _) => return Err(e),
    };
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

    if network_created {
        sink.emit(EventKind::NetworkCreated { name: scope.network_name() });
    }
    for v in scoped.volume_names() {
        let opts = scoped.volume_driver_opts(&v).cloned().unwrap_or_default();
        if backend.ensure_volume_with(&scope, &v, &opts).await? {
            sink.emit(EventKind::VolumeCreated { name: scope.volume_name(&v) });
        }
    }

    // Routes may have changed even where no proxy instance did: the routers get the current
    // configuration while the services start (it holds the rotation until they have it, so no
    // rotation change of a rollout can come before it).
    let traffic = Traffic::new(backend, env.ingress.as_ref(), &observed, &waiting);

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
    let (synced, outcomes) = futures::future::join(traffic.sync(), join_all(runs)).await;
    synced?;

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
    // Listeners moved to other ports go once everything serves (the new front on the new ports).
    traffic.retire_deferred(sink).await?;
    let instances = backend.list_instances(&scope).await?;
    Ok(Deployment::new(env, backend.published_host(), instances, done))
}
