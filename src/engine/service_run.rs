//! One service's part of an apply ([`ServiceRun`]): create its new instances, wait for its
//! dependencies' conditions (a `watch` channel per service, [`Phase`]), then run it: a job to its
//! exit, a long-running service through its rollout (`rollout.rs`, [`Rollout`]), or, on a target
//! that rolls out by itself, through the target's own rollout (`orchestrated.rs`). Its revision is
//! recorded at the end, whatever the outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;

use super::rollout::Rollout;
use super::traffic::Traffic;
use crate::backend::{label, Backend, Instance, Scope};
use crate::error::{Error, Result};
use crate::events::{EventKind, EventSink, RolloutOutcome};
use crate::health::gate::{Cutoff, Gate};
use crate::model::{Condition, NetworkMode, ServiceKind};
use crate::plan::spec::Template;
use crate::plan::{Action, ServicePlan};
use crate::state::revisions::Recorder;
use crate::state::{jobs, Store};

/// How far a service has got in this apply; dependents watch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
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

pub(super) enum ServiceOutcome {
    Done(RolloutOutcome),
    Failed(Error),
    Skipped,
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
        // No grace: the removal kills it (`docker rm -f`), one call instead of two.
        if i.is_running() && !grace.is_zero() {
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
pub(super) fn instance_name(scope: &Scope, service: &str, slot: u32) -> String {
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

    pub(super) async fn run(&self, phase: &watch::Sender<Phase>) -> ServiceOutcome {
        // Creating a container depends on nothing: do it now, so only `start` waits for the
        // dependencies and a dependent starts the moment its conditions hold. One that joins
        // another service's network namespace needs that service's new instance: it is created
        // after the wait. A target that rolls out by itself creates nothing here.
        let orchestrator = self.backend.orchestrator();
        let slots = if orchestrator.is_some() { Vec::new() } else { self.slots_to_launch() };
        let (early, late) = if self.joins_namespace().is_some() { (Vec::new(), slots) } else { (slots, Vec::new()) };
        let mut created = join_all(early.into_iter().map(|s| self.create(s))).await;
        let deps = match tokio::time::timeout_at(self.cutoff.at, self.wait_for_dependencies()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(dep)) => Err(Some(dep)),
            Err(_) => Err(None), // the deadline passed first
        };
        if deps.is_ok() {
            created.extend(join_all(late.into_iter().map(|s| self.create(s))).await);
        }
        let (created, create_errors): (Vec<_>, Vec<_>) = created.into_iter().partition(|r| r.is_ok());
        let created: Vec<Created> = created.into_iter().filter_map(|r| r.ok()).collect();
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
                let _ = Rollout(self).restore(&old).await;
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
            healthy: None,
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

    /// The service whose network namespace this one joins (`NetworkMode::Service`), if any.
    fn joins_namespace(&self) -> Option<&str> {
        match &self.template.service.container.network_mode {
            Some(NetworkMode::Service(owner)) => Some(owner),
            _ => None,
        }
    }

    /// The running instance whose network namespace the instance in `slot` joins: on the same
    /// host, preferably of the owner's configuration this template was tied to (its new
    /// instance, during a rollout of both), then in the same slot, then the first.
    async fn namespace_owner(&self, owner: &str, slot: u32) -> Result<Instance> {
        let host = self.template.host_for(slot);
        let mark = self.template.service.labels.get(label::NETWORK_OF);
        let mut running: Vec<Instance> = self
            .backend
            .list_instances(self.scope)
            .await?
            .into_iter()
            .filter(|i| i.service == owner && i.is_running())
            .filter(|i| host.is_none() || i.host.as_deref() == host)
            .collect();
        running.sort_by_key(|i| {
            let tied = mark.is_some_and(|m| *m == i.spec_hash || *m == format!("{}@{}", i.spec_hash, i.image_id));
            (!tied, i.slot != slot, i.slot)
        });
        running.into_iter().next().ok_or_else(|| {
            let on = host.map(|h| format!(" on host {h}")).unwrap_or_default();
            Error::backend(
                "create an instance",
                self.name(),
                format!(
                    "its network mode is service:{owner}, and `{owner}` has no running instance{on} whose namespace it could join"
                ),
            )
        })
    }

    /// Creates (does not start) one instance in `slot`.
    async fn create(&self, slot: u32) -> Result<Created> {
        let name = instance_name(self.scope, self.name(), slot);
        let mut spec = self.template.instance(self.scope, slot, name.clone());
        if self.template.service.keep_anonymous_volumes {
            spec.inherit_volumes_from =
                self.plan.replace.iter().find(|(s, _)| *s == slot).map(|(_, old)| old.id.clone());
        }
        if let Some(owner) = self.joins_namespace() {
            let joined = self.namespace_owner(owner, slot).await?;
            spec.container.network_mode = Some(NetworkMode::Container(joined.id));
        }
        let id = self.backend.create_instance(&spec).await?;
        let prepared =
            if let Err(e) = super::files::write(self.backend, self.name(), &id, &self.template.service.files).await {
                Err(e)
            } else if self.traffic.is_proxy(self.name()) {
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
        let outcome = Rollout(self).replace(phase, created).await?;
        // Surplus and duplicates leave rotation first.
        Rollout(self).leave(&p.retire, svc.rollout.drain).await?;
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
        let code = match super::job_exit::final_exit(self.backend, &instance.id, svc.restart, end).await? {
            Some(code) => code,
            None => {
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
