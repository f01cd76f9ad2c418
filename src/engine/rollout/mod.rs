//! Where a rollout decides its next step.
//!
//! [`batches()`] turns a strategy into batches of slots (pure, unit-tested). [`RolloutRun::replace`]
//! carries them out: for each batch, the stop-first part leaves rotation, drains and stops; the new
//! instances start and pass their health gate (and `min_ready`, during which the routers' next
//! configuration is written). Then the next batch launches while, beside it, the finished batch's
//! rotation change (a reload: its new instances in, its start-first part out) is made and that
//! part drains and stops once the engine has carried out the next batch's starts. A batch that
//! stops instances first waits for the previous one's rotation change (capacity). Old
//! instances are only stopped, never removed, until the whole rollout has succeeded, so a rollback
//! restarts them as they were. Blue/green and canary start the whole new set beside the old one and
//! move traffic through the ingress.
//!
//! Where things are: [`batches()`] splits the slots into batches (pure, unit-tested);
//! `rolling.rs` carries the batches out; `canary.rs` moves traffic step by step (blue/green is a
//! canary without steps); `steps.rs` holds the steps they share (launch, rotation changes, drain
//! and stop); `recovery.rs` what a failure does (roll back, pause or fail).

mod batches;
mod canary;
mod recovery;
mod rolling;
mod steps;

use std::collections::BTreeMap;

use futures::future::join_all;
use tokio::sync::watch;

use super::service_run::{Created, Phase, ServiceRun};
use crate::backend::Instance;
use crate::error::{Error, Result};
use crate::events::{EventKind, RolloutOutcome};
use crate::model::Strategy;

use batches::holds_ports;
pub(crate) use batches::{batches, limit_hosts};

/// A service's rollout: the steps of replacing its instances, on its [`ServiceRun`] (whose
/// backend, template, plan, gate and cutoff it uses).
pub(super) struct RolloutRun<'r, 'a>(pub(super) &'r ServiceRun<'a>);

impl<'a> std::ops::Deref for RolloutRun<'_, 'a> {
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

impl RolloutRun<'_, '_> {
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
        let runtime = self.instances()?;
        let removed = join_all(removable.iter().map(|i| runtime.remove_instance(&i.id))).await;
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
