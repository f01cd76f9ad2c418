//! Canary and blue/green: the new set beside the old one, traffic moved to it in weighted steps
//! (or at once), with `min_ready` watches and promotion waits.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::RolloutRun;
use crate::backend::Instance;
use crate::engine::retire::retire;
use crate::engine::service_run::{Created, Phase};
use crate::error::{Error, Result};
use crate::events::{EventKind, RolloutOutcome};
use crate::ingress::config::{split, Upstream};
use crate::model::CanaryStep;
use crate::state::promotion;

impl RolloutRun<'_, '_> {
    /// Canary (and blue/green): the new set runs beside the old, gets a growing share of the traffic
    /// step by step, then all of it.
    pub(super) async fn canary(
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
    pub(super) async fn set_weights(&self, old: &[Instance], new: &[Instance], percent: u8) -> Result<()> {
        let names = |v: &[Instance]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        self.traffic.know(&old.iter().chain(new).collect::<Vec<_>>()).await;
        self.set_rotation(split(&names(old), &names(new), percent)).await
    }

    /// Every new instance keeps running for `d`; the first one that exits fails the step.
    pub(super) async fn watch_running(&self, fresh: &[Instance], d: Duration) -> Result<()> {
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
    pub(in crate::engine) async fn switch(&self, old: &[Instance], new: &[Instance]) -> Result<()> {
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
}
