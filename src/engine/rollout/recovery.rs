//! What a failed batch does, as the rollout's `on_failure` says: roll back (the old instances
//! started again and back in rotation, host by host), pause, or fail.

use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::{successes, Done, RolloutRun};
use crate::backend::Instance;
use crate::engine::retire::retire;
use crate::engine::service_run::Created;
use crate::error::{Error, Result};
use crate::events::{EventKind, RolloutOutcome};
use crate::model::OnFailure;

impl RolloutRun<'_, '_> {
    /// A batch failed: roll back, pause or fail, as the rollout says.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fail(
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
            if let Ok(runtime) = self.instances() {
                join_all(never_started.iter().map(|c| runtime.remove_instance(&c.id))).await;
            }
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
                if let Ok(runtime) = self.instances() {
                    join_all(old.iter().map(|i| runtime.remove_instance(&i.id))).await;
                }
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
                if let Ok(runtime) = self.instances() {
                    join_all(old.iter().map(|i| runtime.remove_instance(&i.id))).await;
                }
                let outcome = RolloutOutcome::Failed { reason: cause.to_string() };
                self.sink.emit(EventKind::RolloutFinished { service: self.name().to_string(), outcome });
                Err(cause)
            }
        }
    }

    /// Rolls the done batches back, host by host: the old instances serve again and the new ones
    /// go. On a host where an old instance cannot come back (the host is lost, or the old version
    /// no longer gets healthy), that host's new instances stay: capacity is kept. Returns what failed.
    pub(super) async fn roll_back(&self, old: Vec<Instance>, new: Vec<Instance>, fixed_port: bool) -> Vec<Error> {
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
    pub(in crate::engine) async fn restore(&self, old: &[Instance]) -> Result<()> {
        if old.is_empty() {
            return Ok(());
        }
        let svc = &self.template.service;
        let started = Instant::now();
        let results = join_all(old.iter().map(|i| async move {
            self.instances()?.start_instance(&i.id).await?;
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
}

fn restore_failed(service: &str, cause: &Error, e: Error) -> Error {
    Error::backend(
        "roll back",
        service,
        format!("the rollout failed ({cause}) and restoring the old instances failed too: {e}"),
    )
}
