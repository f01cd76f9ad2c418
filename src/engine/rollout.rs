//! Where a rollout decides its next step.
//!
//! [`batches`] turns a strategy into batches of slots (pure, unit-tested). [`Rollout::replace`]
//! carries them out: for each batch, the stop-first part leaves rotation, drains and stops; the new
//! instances start and pass their health gate (and `min_ready`, during which the routers' next
//! configuration is written). Then the next batch launches while, beside it, the finished batch's
//! rotation change (a reload: its new instances in, its start-first part out) is made and that
//! part drains and stops once the engine has carried out the next batch's starts. A batch that
//! stops instances first waits for the previous one's rotation change (capacity). Old
//! instances are only stopped, never removed, until the whole rollout has succeeded, so a rollback
//! restarts them as they were. Blue/green and canary start the whole new set beside the old one and
//! move traffic through the ingress.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::{join, join_all};
use tokio::sync::watch;
use tokio::time::Instant;

use super::service_run::{retire, Created, Phase, ServiceRun};
use crate::backend::Instance;
use crate::error::{Error, Result};
use crate::events::{EventKind, RolloutOutcome};
use crate::ingress::config::{split, Upstream};
use crate::model::{CanaryStep, OnFailure, Strategy};
use crate::state::promotion;

/// Whether any of `old` publishes a host port `svc` publishes as fixed (a new instance could not
/// bind it while they run). Instances read without their ports count as holding them.
fn holds_ports<'i>(svc: &crate::model::Service, mut old: impl Iterator<Item = &'i Instance>) -> bool {
    let fixed: Vec<u16> = svc
        .ports
        .iter()
        .filter_map(|p| match p.publish {
            crate::model::Publish::Fixed(h) => Some(h),
            _ => None,
        })
        .collect();
    old.any(|i| {
        (i.is_running() && i.published.is_empty() && !fixed.is_empty())
            || i.published.iter().any(|p| fixed.contains(&p.host_port))
    })
}

/// One batch: slots whose old instance stops before the new one starts, and slots whose old
/// instance stops after the new one is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub stop_first: Vec<u32>,
    pub start_first: Vec<u32>,
}

/// Splits the slots to replace into batches, as the strategy says. `replicas` is the wanted count.
pub(crate) fn batches(strategy: &Strategy, replicas: u32, slots: &[u32]) -> Vec<Batch> {
    if slots.is_empty() {
        return Vec::new();
    }
    let all = |stop_first: bool| {
        let s = slots.to_vec();
        vec![if stop_first {
            Batch { stop_first: s, start_first: Vec::new() }
        } else {
            Batch { stop_first: Vec::new(), start_first: s }
        }]
    };
    match strategy {
        Strategy::Recreate => all(true),
        Strategy::Rolling { max_surge, max_unavailable } => {
            let surge = max_surge.resolve(replicas, true);
            let mut unavailable = max_unavailable.resolve(replicas, false);
            if surge == 0 && unavailable == 0 {
                unavailable = 1; // as Kubernetes does when percentages round both to 0
            }
            let size = usize::try_from(surge.saturating_add(unavailable).max(1)).unwrap_or(usize::MAX);
            slots
                .chunks(size)
                .map(|chunk| {
                    let u = usize::try_from(unavailable).unwrap_or(usize::MAX).min(chunk.len());
                    Batch { stop_first: chunk[..u].to_vec(), start_first: chunk[u..].to_vec() }
                })
                .collect()
        }
        // Start-first, blue/green and canary start the whole new set beside the old one.
        _ => all(false),
    }
}

/// Splits batches so that none touches more than `max` hosts (`host_of` gives a slot's host).
pub(crate) fn limit_hosts<'a>(plan: Vec<Batch>, host_of: impl Fn(u32) -> Option<&'a str>, max: u32) -> Vec<Batch> {
    let mut out = Vec::new();
    for batch in plan {
        let mut current = Batch { stop_first: Vec::new(), start_first: Vec::new() };
        let mut hosts: Vec<Option<&str>> = Vec::new();
        // Grouped by host, so that each part is whole hosts.
        let mut tagged: Vec<(u32, bool)> =
            batch.stop_first.iter().map(|s| (*s, true)).chain(batch.start_first.iter().map(|s| (*s, false))).collect();
        tagged.sort_by_key(|(slot, _)| host_of(*slot));
        for (slot, stop_first) in tagged {
            let h = host_of(slot);
            if !hosts.contains(&h) {
                if hosts.len() as u32 >= max {
                    out.push(std::mem::replace(
                        &mut current,
                        Batch { stop_first: Vec::new(), start_first: Vec::new() },
                    ));
                    hosts.clear();
                }
                hosts.push(h);
            }
            if stop_first {
                current.stop_first.push(slot);
            } else {
                current.start_first.push(slot);
            }
        }
        if !current.stop_first.is_empty() || !current.start_first.is_empty() {
            out.push(current);
        }
    }
    out
}

/// A service's rollout: the steps of replacing its instances, on its [`ServiceRun`] (whose
/// backend, template, plan, gate and cutoff it uses).
pub(super) struct Rollout<'r, 'a>(pub(super) &'r ServiceRun<'a>);

impl<'a> std::ops::Deref for Rollout<'_, 'a> {
    type Target = ServiceRun<'a>;

    fn deref(&self) -> &ServiceRun<'a> {
        self.0
    }
}

/// What a finished batch left: the old instances (stopped, kept for a rollback) and the new ones.
struct Done {
    old: Vec<Instance>,
    new: Vec<Instance>,
}

/// A batch whose new instances are healthy, before its rotation change.
#[derive(Default)]
struct Launched {
    /// Old instances stopped before the new ones started.
    stop_first: Vec<Instance>,
    /// Old instances that serve until the rotation change.
    start_first: Vec<Instance>,
    /// The new instances that started.
    fresh: Vec<Instance>,
    /// The batch's created containers.
    mine: Vec<Created>,
}

impl Launched {
    fn done(self) -> Done {
        Done { old: self.stop_first.into_iter().chain(self.start_first).collect(), new: self.fresh }
    }

    fn join(mut self, other: Launched) -> Launched {
        self.stop_first.extend(other.stop_first);
        self.start_first.extend(other.start_first);
        self.fresh.extend(other.fresh);
        self.mine.extend(other.mine);
        self
    }
}

impl Rollout<'_, '_> {
    /// Replaces the stale instances (and launches the missing ones) as the rollout says.
    pub(super) async fn replace(&self, phase: &watch::Sender<Phase>, created: Vec<Created>) -> Result<RolloutOutcome> {
        let svc = &self.template.service;
        let mut created: BTreeMap<u32, Created> = created.into_iter().map(|c| (c.slot, c)).collect();

        // Missing slots (a scale-up or a first deploy) add capacity: launch them together first.
        let missing: Vec<Created> = self.plan.create.iter().filter_map(|s| created.remove(s)).collect();
        if !missing.is_empty() {
            let (fresh, err) = self.launch(&missing, phase).await;
            if let Some(e) = err {
                self.discard(&fresh, &missing).await;
                self.discard(&[], &created.into_values().collect::<Vec<_>>()).await;
                return Err(e);
            }
            self.enter(&fresh).await?;
        }

        let old: BTreeMap<u32, Instance> = self.plan.replace.iter().cloned().collect();
        if old.is_empty() {
            return Ok(if missing.is_empty() { RolloutOutcome::Unchanged } else { RolloutOutcome::Succeeded });
        }
        match &svc.rollout.strategy {
            // Blue/green is a canary without steps: all traffic moves at once when the new set is ready.
            Strategy::BlueGreen => self.canary(&[], phase, old, created).await,
            Strategy::Canary { steps } => self.canary(steps, phase, old, created).await,
            // The ingress's listener recreates only to free host ports its new instances take
            // over; moved to other ports, it starts first.
            Strategy::Recreate if self.traffic.is_listener(self.name()) && !holds_ports(svc, old.values()) => {
                self.rolling(&Strategy::StartFirst, phase, old, created).await
            }
            strategy => self.rolling(strategy, phase, old, created).await,
        }
    }

    /// Recreate, start-first and rolling: batch by batch. A batch's rotation change (its new
    /// instances in, its start-first old ones out) runs beside the next batch's launch when that
    /// batch stops nothing first: the reload is off the path, and the old instances it takes out
    /// drain and stop meanwhile (Kubernetes does not count terminating pods against the surge
    /// either).
    async fn rolling(
        &self,
        strategy: &Strategy,
        phase: &watch::Sender<Phase>,
        old: BTreeMap<u32, Instance>,
        mut created: BTreeMap<u32, Created>,
    ) -> Result<RolloutOutcome> {
        let svc = &self.template.service;
        let drain = svc.rollout.drain;
        let grace = self.template.stop_grace();
        let slots: Vec<u32> = old.keys().copied().collect();
        let mut plan = batches(strategy, svc.replicas, &slots);
        if let (Some(max), false) = (svc.rollout.max_hosts, self.template.hosts.is_empty()) {
            plan = limit_hosts(plan, |slot| self.template.host_for(slot), max);
        }
        let mut done: Vec<Done> = Vec::new();
        // The previous batch: launched and healthy, its rotation change still to make.
        let mut pending: Option<Launched> = None;
        // Old instances out of rotation, still to drain and stop.
        let mut retiring: Vec<Instance> = Vec::new();
        for (n, batch) in plan.iter().enumerate() {
            if n > 0 && !svc.rollout.batch_delay.is_zero() {
                // The pause comes after the previous batch serves.
                if let Some(p) = pending.take() {
                    if let Err(e) = self.enter_batch(&p).await {
                        let rest: Vec<Created> = created.into_values().collect();
                        return self.fail(e, done, p.stop_first, p.fresh, &p.mine, &rest).await;
                    }
                    retiring.extend(p.start_first.iter().cloned());
                    done.push(p.done());
                }
                let until = crate::clock::after(Instant::now(), svc.rollout.batch_delay).min(self.cutoff().at);
                tokio::time::sleep_until(until).await;
            }
            // A deadline that passed between batches: roll back what was done.
            if self.cutoff().passed() {
                let retired = self.retire_replaced(&std::mem::take(&mut retiring), drain, grace).await;
                let rest: Vec<Created> = created.into_values().collect();
                let cause = retired.err().unwrap_or_else(|| self.cutoff().error(self.name()));
                let p = pending.take().unwrap_or_default();
                return self.fail(cause, done, p.stop_first, p.fresh, &p.mine, &rest).await;
            }
            self.sink.emit(EventKind::RolloutBatch {
                service: self.name().to_string(),
                batch: n as u32 + 1,
                of: plan.len() as u32,
                slots: batch.stop_first.iter().chain(&batch.start_first).copied().collect(),
            });
            let stop_first: Vec<Instance> = batch.stop_first.iter().filter_map(|s| old.get(s).cloned()).collect();
            let start_first: Vec<Instance> = batch.start_first.iter().filter_map(|s| old.get(s).cloned()).collect();
            let mine: Vec<Created> =
                batch.stop_first.iter().chain(&batch.start_first).filter_map(|s| created.remove(s)).collect();

            // Any step can fail, a host lost mid-batch included: every failure goes to `fail`, which
            // brings back the stopped instances and rolls back the batches done before.
            let previous = pending.take();
            let earlier = std::mem::take(&mut retiring);
            // The previous batch enters (whether it did is said on `entered`), then its old
            // instances and those left from before drain, and stop once this batch's starts are
            // carried out: the engine starts containers slower while it stops others (both take
            // its network locks), and the new ones' readiness and `min_ready` leave time enough.
            let (entered_tx, mut entered) = watch::channel(None::<bool>);
            let (started_tx, mut started) = watch::channel(false);
            let settle_previous = async {
                let mut leaving = earlier;
                if let Some(p) = &previous {
                    let result = self.enter_batch(p).await;
                    entered_tx.send_replace(Some(result.is_ok()));
                    result?;
                    leaving.extend(p.start_first.iter().cloned());
                } else {
                    entered_tx.send_replace(Some(true));
                }
                let waited = async {
                    // A sender dropped (the batch ended early) counts as started.
                    let _ = started.wait_for(|s| *s).await;
                };
                self.retire_replaced_after(&leaving, drain, grace, waited).await
            };
            let this_batch = async {
                if !stop_first.is_empty() {
                    // Capacity: nothing stops before the previous batch serves.
                    let ok = matches!(entered.wait_for(|e| e.is_some()).await.map(|e| *e), Ok(Some(true)));
                    if !ok {
                        started_tx.send_replace(true);
                        return Ok(Vec::new());
                    }
                }
                let stopped = async {
                    self.leave(&stop_first, drain).await?;
                    self.stop_all(&stop_first, grace).await
                };
                if let Err(e) = stopped.await {
                    started_tx.send_replace(true);
                    return Err((e, Vec::new()));
                }
                let (fresh, err) = self.launch_telling(&mine, phase, Some(&started_tx), Some(&start_first)).await;
                match err {
                    Some(e) => Err((e, fresh)),
                    None => Ok(fresh),
                }
            };
            let (settled, launched) = join(settle_previous, this_batch).await;
            let previous_entered = *entered.borrow() == Some(true);
            // The previous batch serves: it is done, whatever happens to its old instances now (a
            // rollback starts them again where they stopped, and puts them back in rotation).
            let mut failed_previous = None;
            if let Some(p) = previous {
                if previous_entered {
                    done.push(p.done());
                } else {
                    failed_previous = Some(p);
                }
            }
            let this = Launched { stop_first, start_first, fresh: Vec::new(), mine };
            let (this, error) = match (settled, launched) {
                (Ok(()), Ok(fresh)) => (Launched { fresh, ..this }, None),
                (settled, Ok(fresh)) => (Launched { fresh, ..this }, settled.err()),
                (settled, Err((e, fresh))) => (Launched { fresh, ..this }, Some(settled.err().unwrap_or(e))),
            };
            if let Some(e) = error {
                // The batch that did not enter and this one are undone together.
                let undone = failed_previous.into_iter().chain([this]).fold(Launched::default(), Launched::join);
                let rest: Vec<Created> = created.into_values().collect();
                return self.fail(e, done, undone.stop_first, undone.fresh, &undone.mine, &rest).await;
            }
            pending = Some(this);
        }
        if let Some(p) = pending.take() {
            if let Err(e) = self.enter_batch(&p).await {
                return self.fail(e, done, p.stop_first, p.fresh, &p.mine, &[]).await;
            }
            retiring.extend(p.start_first.iter().cloned());
            done.push(p.done());
        }
        if let Err(e) = self.retire_replaced(&retiring, drain, grace).await {
            return self.fail(e, done, Vec::new(), Vec::new(), &[], &[]).await;
        }
        self.finish(done).await
    }

    /// A launched batch's rotation change: its new instances in, its start-first old ones out (in
    /// one change). On failure the new ones are out and the old ones in again.
    async fn enter_batch(&self, batch: &Launched) -> Result<()> {
        let result = self.swap(&batch.fresh, &batch.start_first).await;
        if result.is_err() {
            // Out of rotation (where some of them got in) before they go; the old ones back in.
            let _ = self.leave(&batch.fresh, Duration::ZERO).await;
            let _ = self.enter(&batch.start_first).await;
        }
        result
    }

    /// Canary (and blue/green): the new set runs beside the old, gets a growing share of the traffic
    /// step by step, then all of it.
    async fn canary(
        &self,
        steps: &[CanaryStep],
        phase: &watch::Sender<Phase>,
        old: BTreeMap<u32, Instance>,
        created: BTreeMap<u32, Created>,
    ) -> Result<RolloutOutcome> {
        let mine: Vec<Created> = created.into_values().collect();
        let old: Vec<Instance> = old.into_values().collect();
        let (fresh, err) = self.launch(&mine, phase).await;
        if let Some(e) = err {
            return self.fail(e, Vec::new(), Vec::new(), fresh, &mine, &[]).await;
        }
        for step in steps {
            let watched = match step {
                CanaryStep::Weight(w) => {
                    self.set_weights(&old, &fresh, *w).await?;
                    Ok(())
                }
                CanaryStep::Pause(d) => self.watch_running(&fresh, *d).await,
            };
            if let Err(e) = watched {
                // Back to the old set only, then remove the canaries.
                self.set_weights(&old, &fresh, 0).await?;
                return self.fail(e, Vec::new(), Vec::new(), fresh, &mine, &[]).await;
            }
        }
        let svc = &self.template.service;
        if svc.rollout.manual_promotion {
            // The gate: both sets stay, the state goes on the target, a person decides.
            let weight = steps
                .iter()
                .rev()
                .find_map(|s| match s {
                    CanaryStep::Weight(w) => Some(*w),
                    CanaryStep::Pause(_) => None,
                })
                .unwrap_or(0);
            if weight == 0 {
                self.set_weights(&old, &fresh, 0).await?;
            }
            promotion::begin(self.store, self.template, weight, self.recorder.actor.as_deref()).await?;
            self.sink.emit(EventKind::AwaitingPromotion { service: self.name().to_string(), weight });
            return Ok(RolloutOutcome::AwaitingPromotion { weight });
        }
        self.switch(&old, &fresh).await?;
        Ok(RolloutOutcome::Succeeded)
    }

    /// Sends `percent` of the traffic to `new` and the rest to `old`.
    async fn set_weights(&self, old: &[Instance], new: &[Instance], percent: u8) -> Result<()> {
        let names = |v: &[Instance]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        self.traffic.know(&old.iter().chain(new).collect::<Vec<_>>()).await;
        self.set_rotation(split(&names(old), &names(new), percent)).await
    }

    /// Every new instance keeps running for `d`; the first one that exits fails the step.
    async fn watch_running(&self, fresh: &[Instance], d: Duration) -> Result<()> {
        // The pause ends at the deadline, and the step fails then: the canary rolls back.
        let until = crate::clock::after(Instant::now(), d).min(self.cutoff().at);
        let ended = || if self.cutoff().passed() { Err(self.cutoff().error(self.name())) } else { Ok(()) };
        if fresh.is_empty() {
            tokio::time::sleep_until(until).await;
            return ended();
        }
        let exits = futures::future::select_all(fresh.iter().map(|i| Box::pin(self.backend.wait_exit(&i.id))));
        tokio::select! {
            _ = tokio::time::sleep_until(until) => ended(),
            (code, index, _) = exits => {
                let i = &fresh[index];
                let logs = self.backend.logs_tail(&i.id, 20).await.unwrap_or_default();
                Err(Error::Unhealthy(Box::new(crate::error::HealthFailure {
                    service: self.name().to_string(),
                    instance: i.name.clone(),
                    host: i.host.clone(),
                    reason: format!("stopped during a canary pause ({})", match code {
                        Ok(c) => format!("exit code {c}"),
                        Err(e) => e.to_string(),
                    }),
                    last_probes: Vec::new(),
                    last_logs: logs,
                })))
            }
        }
    }

    /// All traffic to `new` at once, then the old set drains and goes.
    pub(super) async fn switch(&self, old: &[Instance], new: &[Instance]) -> Result<()> {
        let members = new.iter().map(|i| Upstream { instance: i.name.clone(), weight: 1 }).collect();
        self.traffic.know(&new.iter().collect::<Vec<_>>()).await;
        self.set_rotation(members).await?;
        tokio::time::sleep(if self.traffic.routed(self.name()) {
            self.template.service.rollout.drain
        } else {
            Duration::ZERO
        })
        .await;
        retire(self.backend, self.sink, self.name(), old, self.template.stop_grace()).await
    }

    /// After every batch succeeded: the stopped old instances are removed.
    async fn finish(&self, done: Vec<Done>) -> Result<RolloutOutcome> {
        let old: Vec<Instance> = done.iter().flat_map(|d| d.old.clone()).collect();
        let new: Vec<Instance> = done.iter().flat_map(|d| d.new.clone()).collect();
        let mut removable = Vec::new();
        for i in &old {
            if !self.traffic.is_deferred(&i.id).await {
                removable.push(i);
            }
        }
        // Every removal is tried (a lost host must not keep the others' old instances around).
        let removed = join_all(removable.iter().map(|i| self.backend.remove_instance(&i.id))).await;
        let mut first_error = None;
        for (i, r) in removable.iter().zip(removed) {
            match r {
                Ok(()) => self
                    .sink
                    .emit(EventKind::InstanceRemoved { service: self.name().to_string(), instance: i.name.clone() }),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            // The new version serves everywhere; what is left is stopped and goes with the next apply.
            return Err(e);
        }
        self.sink.emit(EventKind::ServiceReplaced {
            service: self.name().to_string(),
            old: old.iter().map(|i| i.name.clone()).collect(),
            new: new.iter().map(|i| i.name.clone()).collect(),
        });
        Ok(RolloutOutcome::Succeeded)
    }

    /// A batch failed: roll back, pause or fail, as the rollout says.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        cause: Error,
        done: Vec<Done>,
        stopped_in_batch: Vec<Instance>,
        fresh: Vec<Instance>,
        mine: &[Created],
        unstarted: &[Created],
    ) -> Result<RolloutOutcome> {
        let svc = &self.template.service;
        // The failed batch's new instances never entered rotation.
        if svc.rollout.on_failure == OnFailure::Fail {
            let never_started: Vec<&Created> = mine.iter().filter(|c| !fresh.iter().any(|f| f.id == c.id)).collect();
            join_all(never_started.iter().map(|c| self.backend.remove_instance(&c.id))).await;
        } else {
            self.discard(&fresh, mine).await;
        }
        self.discard(&[], unstarted).await;
        // Whatever the action, the batch's stopped old instances come back: capacity first. Each
        // step goes on where another failed (a lost host must not stop the rollback elsewhere).
        let mut unrestored: Vec<Error> = Vec::new();
        if let Err(e) = self.restore(&stopped_in_batch).await {
            unrestored.push(e);
        }
        if svc.rollout.on_failure != OnFailure::Rollback {
            if let Some(e) = unrestored.pop() {
                return Err(restore_failed(self.name(), &cause, e));
            }
        }
        match svc.rollout.on_failure {
            OnFailure::Rollback => {
                let old: Vec<Instance> = done.iter().flat_map(|d| d.old.clone()).collect();
                let new: Vec<Instance> = done.iter().flat_map(|d| d.new.clone()).collect();
                let fixed_port = svc.ports.iter().any(|p| matches!(p.publishing(), crate::model::Publish::Fixed(_)));
                unrestored.extend(self.roll_back(old, new, fixed_port).await);
                if !unrestored.is_empty() {
                    let outcome = RolloutOutcome::Failed { reason: cause.to_string() };
                    self.sink.emit(EventKind::RolloutFinished { service: self.name().to_string(), outcome });
                    return Err(Error::RollbackIncomplete {
                        service: self.name().to_string(),
                        reason: Box::new(cause),
                        failures: unrestored,
                    });
                }
                let outcome = RolloutOutcome::RolledBack { reason: cause.to_string() };
                self.sink.emit(EventKind::RolloutFinished { service: self.name().to_string(), outcome });
                Err(Error::RolledBack { service: self.name().to_string(), reason: Box::new(cause) })
            }
            OnFailure::Pause => {
                let old: Vec<Instance> = done.iter().flat_map(|d| d.old.clone()).collect();
                join_all(old.iter().map(|i| self.backend.remove_instance(&i.id))).await;
                let replaced = done.iter().map(|d| d.new.len() as u32).sum();
                let outcome = RolloutOutcome::Paused { reason: cause.to_string() };
                self.sink.emit(EventKind::RolloutFinished { service: self.name().to_string(), outcome });
                Err(Error::Paused {
                    service: self.name().to_string(),
                    replaced,
                    total: svc.replicas,
                    reason: Box::new(cause),
                })
            }
            _ => {
                let old: Vec<Instance> = done.iter().flat_map(|d| d.old.clone()).collect();
                join_all(old.iter().map(|i| self.backend.remove_instance(&i.id))).await;
                let outcome = RolloutOutcome::Failed { reason: cause.to_string() };
                self.sink.emit(EventKind::RolloutFinished { service: self.name().to_string(), outcome });
                Err(cause)
            }
        }
    }

    /// Rolls the done batches back, host by host: the old instances serve again and the new ones
    /// go. On a host where an old instance cannot come back (the host is lost, or the old version
    /// no longer gets healthy), that host's new instances stay: capacity is kept. Returns what failed.
    async fn roll_back(&self, old: Vec<Instance>, new: Vec<Instance>, fixed_port: bool) -> Vec<Error> {
        let drain = self.template.service.rollout.drain;
        let grace = self.template.stop_grace();
        let mut hosts: Vec<Option<String>> = old.iter().chain(&new).map(|i| i.host.clone()).collect();
        hosts.sort();
        hosts.dedup();
        let per_host = hosts.into_iter().map(|h| {
            let old: Vec<Instance> = old.iter().filter(|i| i.host == h).cloned().collect();
            let new: Vec<Instance> = new.iter().filter(|i| i.host == h).cloned().collect();
            async move {
                if fixed_port {
                    // Old and new bind the same host port: the new ones go first.
                    self.leave(&new, drain).await?;
                    retire(self.backend, self.sink, self.name(), &new, grace).await?;
                    self.restore(&old).await
                } else {
                    // Capacity first: the old ones serve again before the new ones leave.
                    self.restore(&old).await?;
                    self.leave(&new, drain).await?;
                    retire(self.backend, self.sink, self.name(), &new, grace).await
                }
            }
        });
        join_all(per_host).await.into_iter().filter_map(|r| r.err()).collect()
    }

    /// Starts stopped old instances again (running ones are left running), waits for them to be
    /// healthy and puts them in rotation. Those that come back enter rotation even when others
    /// fail; the first failure is the error.
    pub(super) async fn restore(&self, old: &[Instance]) -> Result<()> {
        if old.is_empty() {
            return Ok(());
        }
        let svc = &self.template.service;
        let started = Instant::now();
        let results = join_all(old.iter().map(|i| async move {
            self.backend.start_instance(&i.id).await?;
            let fresh = self.backend.inspect_instance(&i.id).await?;
            self.restore_gate()
                .wait_ready(svc.health.as_ref(), &fresh, started, svc.deadline(), Duration::ZERO)
                .await?;
            Ok::<_, Error>(fresh)
        }))
        .await;
        let (back, first_error) = successes(results);
        self.enter(&back).await?;
        first_error.map_or(Ok(()), Err)
    }

    /// Starts created instances and waits for each to pass its gate; returns those that started
    /// and the first error.
    pub(super) async fn launch(
        &self,
        created: &[Created],
        phase: &watch::Sender<Phase>,
    ) -> (Vec<Instance>, Option<Error>) {
        self.launch_telling(created, phase, None, None).await
    }

    /// [`launch`](Self::launch), saying on `started` when the engine has carried out the starts
    /// (before the health gate); with `replacing`, the routers' next configuration (these in,
    /// those out) is written once all of them are healthy, while they serve their `min_ready`
    /// ([`Traffic::stage_swap`](super::traffic::Traffic::stage_swap)).
    async fn launch_telling(
        &self,
        created: &[Created],
        phase: &watch::Sender<Phase>,
        started: Option<&watch::Sender<bool>>,
        replacing: Option<&[Instance]>,
    ) -> (Vec<Instance>, Option<Error>) {
        let svc = &self.template.service;
        let launched = join_all(created.iter().map(|c| self.start(c))).await;
        if let Some(s) = started {
            s.send_replace(true);
        }
        let (fresh, mut first_err) = successes(launched);
        if first_err.is_none() && !fresh.is_empty() {
            phase.send_if_modified(|p| {
                let was = *p == Phase::Pending;
                if was {
                    *p = Phase::Started;
                }
                was
            });
            let (healthy_tx, mut healthy_rx) = watch::channel(0usize);
            let gate = crate::health::gate::Gate { healthy: Some(&healthy_tx), ..self.gate() };
            let gates = join_all(fresh.iter().map(|(i, started)| {
                gate.wait_ready(svc.health.as_ref(), i, *started, svc.deadline(), svc.rollout.min_ready)
            }));
            let staged = async {
                let Some(replaced) = replacing else { return std::future::pending().await };
                if healthy_rx.wait_for(|n| *n >= fresh.len()).await.is_err() {
                    return std::future::pending().await;
                }
                let new: Vec<&Instance> = fresh.iter().map(|(i, _)| i).collect();
                let old: Vec<&Instance> = replaced.iter().collect();
                if let Err(e) = self.traffic.stage_swap(self.name(), &new, &old).await {
                    // The swap writes it then.
                    tracing::debug!(error = %e, "could not write the routers' next configuration ahead");
                }
                std::future::pending::<std::convert::Infallible>().await
            };
            // The gates decide; staging, done or not, ends with them.
            let gates = tokio::select! {
                g = gates => g,
                never = staged => match never {},
            };
            first_err = gates.into_iter().find_map(|r| r.err());
        }
        (fresh.into_iter().map(|(i, _)| i).collect(), first_err)
    }

    /// Removes new instances that will not be used (started or not).
    async fn discard(&self, fresh: &[Instance], created: &[Created]) {
        let _ = retire(self.backend, self.sink, self.name(), fresh, Duration::from_secs(2)).await;
        join_all(created.iter().map(|c| self.backend.remove_instance(&c.id))).await;
    }

    /// Lets replaced instances, already out of rotation ([`swap`](Self::swap)), finish what they
    /// serve, then stops them.
    async fn retire_replaced(&self, instances: &[Instance], drain: Duration, grace: Duration) -> Result<()> {
        self.retire_replaced_after(instances, drain, grace, std::future::ready(())).await
    }

    /// [`retire_replaced`](Self::retire_replaced), stopping them no sooner than `ready_to_stop`.
    async fn retire_replaced_after(
        &self,
        instances: &[Instance],
        drain: Duration,
        grace: Duration,
        ready_to_stop: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        if instances.is_empty() {
            return Ok(());
        }
        if self.traffic.is_listener(self.name())
            || (self.traffic.is_front(self.name()) && self.traffic.listener_moved().await)
        {
            // Moved to other ports: the old listener and the old front in it keep serving the
            // old ports until the new front serves the new ones (the end of the apply).
            self.traffic.defer(instances).await;
            return Ok(());
        }
        let drained = async {
            if self.traffic.is_front(self.name()) {
                let refs: Vec<&Instance> = instances.iter().collect();
                self.traffic.drain_fronts(&refs, drain).await
            } else {
                if self.traffic.routed(self.name()) {
                    tokio::time::sleep(drain).await;
                }
                Ok(())
            }
        };
        join(drained, ready_to_stop).await.0?;
        self.stop_all(instances, grace).await
    }

    /// Puts `fresh` into rotation and takes `replaced` out, in one change of the routers.
    async fn swap(&self, fresh: &[Instance], replaced: &[Instance]) -> Result<()> {
        if self.traffic.is_proxy(self.name()) {
            self.enter(fresh).await?;
            return self.leave(replaced, Duration::ZERO).await;
        }
        if !self.traffic.routed(self.name()) {
            return Ok(());
        }
        let (fresh, replaced): (Vec<&Instance>, Vec<&Instance>) = (fresh.iter().collect(), replaced.iter().collect());
        self.traffic.swap(self.name(), &fresh, &replaced).await?;
        self.rotation_event().await;
        Ok(())
    }

    async fn stop_all(&self, instances: &[Instance], grace: Duration) -> Result<()> {
        let results = join_all(instances.iter().map(|i| async move {
            self.backend.stop_instance(&i.id, grace).await?;
            self.sink.emit(EventKind::InstanceStopped { service: self.name().to_string(), instance: i.name.clone() });
            Ok::<_, Error>(())
        }))
        .await;
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Puts instances into rotation.
    pub(super) async fn enter(&self, instances: &[Instance]) -> Result<()> {
        if self.traffic.is_proxy(self.name()) {
            for i in instances {
                self.traffic.add_proxy(&i.id, i.host.as_deref()).await?;
            }
            return Ok(());
        }
        if instances.is_empty() || !self.traffic.routed(self.name()) {
            return Ok(());
        }
        let refs: Vec<&Instance> = instances.iter().collect();
        self.traffic.enter(self.name(), &refs).await?;
        self.rotation_event().await;
        Ok(())
    }

    /// Takes instances out of rotation and lets them drain.
    pub(super) async fn leave(&self, instances: &[Instance], drain: Duration) -> Result<()> {
        if self.traffic.is_proxy(self.name()) {
            for i in instances {
                self.traffic.remove_proxy(&i.id).await;
            }
            return Ok(());
        }
        if self.traffic.is_front(self.name()) && !instances.is_empty() {
            let refs: Vec<&Instance> = instances.iter().collect();
            return self.traffic.drain_fronts(&refs, drain).await;
        }
        if instances.is_empty() || !self.traffic.routed(self.name()) {
            return Ok(());
        }
        let refs: Vec<&Instance> = instances.iter().collect();
        self.traffic.leave(self.name(), &refs, drain).await?;
        self.rotation_event().await;
        Ok(())
    }

    async fn set_rotation(&self, members: Vec<Upstream>) -> Result<()> {
        if !self.traffic.routed(self.name()) {
            return Ok(());
        }
        self.traffic.set(self.name(), members).await?;
        self.rotation_event().await;
        Ok(())
    }

    async fn rotation_event(&self) {
        let members = self.traffic.members(self.name()).await.into_iter().map(|u| (u.instance, u.weight)).collect();
        self.sink.emit(EventKind::RotationChanged { service: self.name().to_string(), members });
    }
}

/// What succeeded, and the first error.
fn successes<T>(results: Vec<Result<T>>) -> (Vec<T>, Option<Error>) {
    let mut ok = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    (ok, first_error)
}

fn restore_failed(service: &str, cause: &Error, e: Error) -> Error {
    Error::backend(
        "roll back",
        service,
        format!("the rollout failed ({cause}) and restoring the old instances failed too: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Amount;

    fn rolling(surge: Amount, unavailable: Amount) -> Strategy {
        Strategy::Rolling { max_surge: surge, max_unavailable: unavailable }
    }

    #[test]
    fn a_listener_moved_to_other_ports_holds_none_of_them() {
        let listener = |port: u16| {
            crate::Ingress::builder()
                .image("caddy:2")
                .http(crate::Port::tcp(80).publish(port))
                .build()
                .map(|i| i.service().clone())
                .unwrap()
        };
        let mut old = crate::backend::Instance::sample("ingress", crate::ServiceKind::Service, 0, "h", "i");
        old.published = vec![crate::backend::PublishedPort {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "0.0.0.0".into(),
            host_port: 8080,
        }];
        assert!(holds_ports(&listener(8080), [&old].into_iter()), "the same port is held");
        assert!(!holds_ports(&listener(8081), [&old].into_iter()), "another port is free to take");
        old.published.clear();
        assert!(
            holds_ports(&listener(8081), [&old].into_iter()),
            "a running instance read without ports may hold them"
        );
    }

    #[test]
    fn one_surge_no_unavailable_replaces_one_at_a_time_start_first() {
        let b = batches(&rolling(Amount::count(1), Amount::count(0)), 3, &[0, 1, 2]);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b.stop_first.is_empty() && b.start_first.len() == 1));
    }

    #[test]
    fn kubernetes_defaults_on_four_replicas() {
        // 25 % of 4: surge 1 (up), unavailable 1 (down): batches of two, one of each kind.
        let b = batches(&rolling(Amount::percent(25), Amount::percent(25)), 4, &[0, 1, 2, 3]);
        assert_eq!(
            b,
            vec![
                Batch { stop_first: vec![0], start_first: vec![1] },
                Batch { stop_first: vec![2], start_first: vec![3] },
            ]
        );
    }

    #[test]
    fn percentages_rounding_to_zero_still_progress() {
        // 25 % of 3: surge 1, unavailable 0.
        let b = batches(&rolling(Amount::percent(25), Amount::percent(25)), 3, &[0, 1, 2]);
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b.stop_first.is_empty()));
        // 10 % of 2 for both: surge rounds up to 1.
        let b = batches(&rolling(Amount::percent(10), Amount::percent(10)), 2, &[0, 1]);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn batches_touch_at_most_max_hosts() {
        // 4 replicas round 2 hosts (a, b, a, b); start-first would replace all at once.
        let host = |s: u32| Some(if s % 2 == 0 { "a" } else { "b" });
        let plan = limit_hosts(batches(&Strategy::StartFirst, 4, &[0, 1, 2, 3]), host, 1);
        assert_eq!(
            plan,
            vec![
                Batch { stop_first: vec![], start_first: vec![0, 2] },
                Batch { stop_first: vec![], start_first: vec![1, 3] },
            ],
            "one host at a time, all of its slots together"
        );
        // Two hosts at once keep the batch whole; a rolling batch keeps its stop-first part.
        let plan = limit_hosts(batches(&Strategy::Recreate, 4, &[0, 1, 2, 3]), host, 2);
        assert_eq!(plan, vec![Batch { stop_first: vec![0, 2, 1, 3], start_first: vec![] }]);
        let rolling = Strategy::Rolling { max_surge: Amount::count(2), max_unavailable: Amount::count(1) };
        let plan = limit_hosts(batches(&rolling, 3, &[0, 1, 2]), host, 1);
        assert_eq!(
            plan,
            vec![
                Batch { stop_first: vec![0], start_first: vec![2] },
                Batch { stop_first: vec![], start_first: vec![1] }
            ]
        );
    }

    #[test]
    fn recreate_and_start_first_are_single_batches() {
        assert_eq!(
            batches(&Strategy::Recreate, 3, &[0, 1, 2]),
            vec![Batch { stop_first: vec![0, 1, 2], start_first: vec![] }]
        );
        assert_eq!(batches(&Strategy::StartFirst, 3, &[1]), vec![Batch { stop_first: vec![], start_first: vec![1] }]);
        assert!(batches(&Strategy::StartFirst, 3, &[]).is_empty());
    }

    #[test]
    fn max_unavailable_only_is_stop_first() {
        let b = batches(&rolling(Amount::count(0), Amount::count(2)), 5, &[0, 1, 2, 3, 4]);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], Batch { stop_first: vec![0, 1], start_first: vec![] });
        assert_eq!(b[2], Batch { stop_first: vec![4], start_first: vec![] });
    }
}
