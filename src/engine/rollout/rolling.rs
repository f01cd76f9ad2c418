//! Recreate, start-first and rolling: the batches carried out one after another, each batch's
//! rotation change beside the next batch's launch.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{batches, limit_hosts, Done, Launched, RolloutRun};
use crate::backend::Instance;
use crate::engine::service_run::{Created, Phase};
use crate::error::{Error, Result};
use crate::events::{EventKind, RolloutOutcome};
use crate::model::Strategy;

impl RolloutRun<'_, '_> {
    /// Recreate, start-first and rolling: batch by batch. A batch's rotation change (its new
    /// instances in, its start-first old ones out) runs beside the next batch's launch when that
    /// batch stops nothing first: the reload is off the path, and the old instances it takes out
    /// drain and stop meanwhile (Kubernetes does not count terminating pods against the surge
    /// either).
    pub(super) async fn rolling(
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
                    if let Err((e, p)) = self.enter_pending(p, &mut retiring, &mut done).await {
                        let rest: Vec<Created> = created.into_values().collect();
                        return self.fail(e, done, p.stop_first, p.fresh, &p.mine, &rest).await;
                    }
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
            let (fresh, launch_error) = match launched {
                Ok(fresh) => (fresh, None),
                Err((e, fresh)) => (fresh, Some(e)),
            };
            let this = Launched { stop_first, start_first, fresh, mine };
            let error = settled.err().or(launch_error);
            if let Some(e) = error {
                // The batch that did not enter and this one are undone together.
                let undone = failed_previous.into_iter().chain([this]).fold(Launched::default(), Launched::join);
                let rest: Vec<Created> = created.into_values().collect();
                return self.fail(e, done, undone.stop_first, undone.fresh, &undone.mine, &rest).await;
            }
            pending = Some(this);
        }
        if let Some(p) = pending.take() {
            if let Err((e, p)) = self.enter_pending(p, &mut retiring, &mut done).await {
                return self.fail(e, done, p.stop_first, p.fresh, &p.mine, &[]).await;
            }
        }
        if let Err(e) = self.retire_replaced(&retiring, drain, grace).await {
            return self.fail(e, done, Vec::new(), Vec::new(), &[], &[]).await;
        }
        self.finish(done).await
    }

    /// The pending batch enters the rotation; then its replaced old instances are to retire, and
    /// it is done. On failure the batch comes back with the error, for the rollback.
    async fn enter_pending(
        &self,
        p: Launched,
        retiring: &mut Vec<Instance>,
        done: &mut Vec<Done>,
    ) -> std::result::Result<(), (Error, Launched)> {
        if let Err(e) = self.enter_batch(&p).await {
            return Err((e, p));
        }
        retiring.extend(p.start_first.iter().cloned());
        done.push(p.done());
        Ok(())
    }

    /// A launched batch's rotation change: its new instances in, its start-first old ones out (in
    /// one change). On failure the new ones are out and the old ones in again.
    pub(super) async fn enter_batch(&self, batch: &Launched) -> Result<()> {
        let result = self.swap(&batch.fresh, &batch.start_first).await;
        if result.is_err() {
            // Out of rotation (where some of them got in) before they go; the old ones back in.
            let _ = self.leave(&batch.fresh, Duration::ZERO).await;
            let _ = self.enter(&batch.start_first).await;
        }
        result
    }
}
