//! Which service runs when, and how: [`ServiceRun::run`] creates a service's new instances, waits
//! for its dependencies' conditions (a `watch` channel per service, [`Phase`]), then runs it: a
//! job to its exit, a long-running service through its rollout ([`rollout`](super::rollout),
//! [`RolloutRun`]), or, on a target that rolls out by itself, through the target's own rollout
//! ([`orchestrated`](super::orchestrated)). Its revision is recorded at the end, whatever the
//! outcome. The steps it is made of (create, start, retire) are in
//! [`service_run`](super::service_run), below it.

use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;

use super::retire::retire;
use super::rollout::RolloutRun;
use super::service_run::{rollback_allowance, Created, Phase, ServiceOutcome, ServiceRun};
use crate::backend::Instance;
use crate::error::{Error, Result};
use crate::events::{EventKind, RolloutOutcome};
use crate::health::gate::Cutoff;
use crate::model::ServiceKind;
use crate::plan::Action;
use crate::state::jobs;

impl ServiceRun<'_> {
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
            if let Ok(runtime) = self.instances() {
                join_all(ids.iter().map(|id| runtime.remove_instance(id))).await;
            }
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
                if let Ok(runtime) = self.instances() {
                    join_all(created_ids.iter().map(|id| runtime.remove_instance(id))).await;
                }
                let old: Vec<Instance> = self.plan.replace.iter().map(|(_, i)| i.clone()).collect();
                let _ = RolloutRun(self).restore(&old).await;
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

    /// A long-running service: verify what is kept, then replace, launch and retire as the rollout
    /// says ([`rollout`](super::rollout)).
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
            if let Ok(runtime) = self.instances() {
                join_all(created.iter().map(|c| runtime.remove_instance(&c.id))).await;
            }
            return Err(e);
        }
        if let Some(weight) = p.awaiting {
            // Both sets keep running as they are until someone promotes or aborts.
            self.sink.emit(EventKind::AwaitingPromotion { service: self.name().to_string(), weight });
            phase.send_replace(Phase::Ready);
            self.sink.emit(EventKind::ServiceReady { service: self.name().to_string() });
            return Ok(RolloutOutcome::AwaitingPromotion { weight });
        }
        let outcome = RolloutRun(self).replace(phase, created).await?;
        // Surplus and duplicates leave rotation first.
        RolloutRun(self).leave(&p.retire, svc.rollout.drain).await?;
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
                let _ = self.instances()?.stop_instance(&instance.id, Duration::from_secs(2)).await;
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
