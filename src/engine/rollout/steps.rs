//! The steps every strategy is made of: launching created instances through their health gates,
//! rotation changes (in, out, swapped), draining and stopping replaced instances.

use std::time::Duration;

use futures::future::{join, join_all};
use tokio::sync::watch;

use super::{successes, RolloutRun};
use crate::backend::Instance;
use crate::engine::retire::retire;
use crate::engine::service_run::{Created, Phase};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ingress::config::Upstream;

impl RolloutRun<'_, '_> {
    /// Starts created instances and waits for each to pass its gate; returns those that started
    /// and the first error.
    pub(in crate::engine) async fn launch(
        &self,
        created: &[Created],
        phase: &watch::Sender<Phase>,
    ) -> (Vec<Instance>, Option<Error>) {
        self.launch_telling(created, phase, None, None).await
    }

    /// [`launch`](Self::launch), saying on `started` when the engine has carried out the starts
    /// (before the health gate); with `replacing`, the routers' next configuration (these in,
    /// those out) is written once all of them are healthy, while they serve their `min_ready`
    /// ([`Traffic::stage_swap`](crate::engine::traffic::Traffic::stage_swap)).
    pub(super) async fn launch_telling(
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
    pub(super) async fn discard(&self, fresh: &[Instance], created: &[Created]) {
        let _ = retire(self.backend, self.sink, self.name(), fresh, Duration::from_secs(2)).await;
        if let Ok(runtime) = self.instances() {
            join_all(created.iter().map(|c| runtime.remove_instance(&c.id))).await;
        }
    }

    /// Lets replaced instances, already out of rotation ([`swap`](Self::swap)), finish what they
    /// serve, then stops them.
    pub(super) async fn retire_replaced(&self, instances: &[Instance], drain: Duration, grace: Duration) -> Result<()> {
        self.retire_replaced_after(instances, drain, grace, std::future::ready(())).await
    }

    /// [`retire_replaced`](Self::retire_replaced), stopping them no sooner than `ready_to_stop`.
    pub(super) async fn retire_replaced_after(
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
    pub(super) async fn swap(&self, fresh: &[Instance], replaced: &[Instance]) -> Result<()> {
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

    pub(super) async fn stop_all(&self, instances: &[Instance], grace: Duration) -> Result<()> {
        let results = join_all(instances.iter().map(|i| async move {
            self.instances()?.stop_instance(&i.id, grace).await?;
            self.sink.emit(EventKind::InstanceStopped { service: self.name().to_string(), instance: i.name.clone() });
            Ok::<_, Error>(())
        }))
        .await;
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Puts instances into rotation.
    pub(in crate::engine) async fn enter(&self, instances: &[Instance]) -> Result<()> {
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
    pub(in crate::engine) async fn leave(&self, instances: &[Instance], drain: Duration) -> Result<()> {
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

    pub(super) async fn set_rotation(&self, members: Vec<Upstream>) -> Result<()> {
        if !self.traffic.routed(self.name()) {
            return Ok(());
        }
        self.traffic.set(self.name(), members).await?;
        self.rotation_event().await;
        Ok(())
    }

    pub(super) async fn rotation_event(&self) {
        let members = self.traffic.members(self.name()).await.into_iter().map(|u| (u.instance, u.weight)).collect();
        self.sink.emit(EventKind::RotationChanged { service: self.name().to_string(), members });
    }
}
