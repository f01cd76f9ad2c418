//! A service's part of an apply on a target that rolls out by itself (an [`Orchestrator`]): the
//! engine hands over the template, the strategy and the health check, then watches the target's
//! rollout to its end, within the deadline it enforces, and checks from outside what the target
//! cannot (HTTP and TCP probes). A deadline or a failed outside check asks the target to roll
//! back; the outcome is Succeeded, RolledBack or Failed with the cause, as on any target.

use std::time::Duration;

use futures::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;

use super::service_run::{Phase, ServiceRun};
use crate::backend::{NativeRollout, Orchestrator, ServiceDeployment};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{EventKind, RolloutOutcome};
use crate::model::{Probe, ServiceKind};
use crate::plan::Action;
use crate::state::jobs;

/// How often the target's progress is read.
const POLL: Duration = Duration::from_millis(300);

/// How a watched rollout ended.
enum Ended {
    Native(NativeRollout),
    Deadline,
}

/// Runs one service on the orchestrator.
pub(super) async fn run(
    run: &ServiceRun<'_>,
    o: &dyn Orchestrator,
    phase: &watch::Sender<Phase>,
) -> Result<RolloutOutcome> {
    let svc = &run.template.service;
    let name = run.name().to_string();
    if run.plan.action == Action::Unchanged {
        verify_kept(run).await?;
        run.sink.emit(EventKind::ServiceUnchanged { service: name });
        phase.send_replace(if svc.kind == ServiceKind::Job { Phase::Completed } else { Phase::Ready });
        return Ok(RolloutOutcome::Unchanged);
    }
    let template = run.template.instance(run.scope, 0, format!("{}-{}", run.scope.qualified(), svc.name));
    let deployment = ServiceDeployment {
        scope: run.scope,
        service: svc,
        template: &template,
        spec_hash: &run.template.spec_hash,
        hosts: &run.template.placement,
    };
    o.submit(&deployment).await?;
    if svc.kind == ServiceKind::Service {
        phase.send_replace(Phase::Started);
    }
    let ended = watch_rollout(run, o).await?;
    let result = finish(run, o, ended).await;
    if let Err(e) = o.settled(run.scope, &name).await {
        tracing::warn!(service = %name, error = %e, "could not clean up after the rollout");
    }
    let outcome = result?;
    if svc.kind == ServiceKind::Job {
        jobs::record(run.store, run.template).await?;
        phase.send_replace(Phase::Completed);
    } else {
        run.sink.emit(EventKind::RolloutFinished { service: name.clone(), outcome: outcome.clone() });
        phase.send_replace(Phase::Ready);
        run.sink.emit(EventKind::ServiceReady { service: name });
    }
    Ok(outcome)
}

/// Reads the target's progress until its rollout ends or the cutoff passes.
async fn watch_rollout(run: &ServiceRun<'_>, o: &dyn Orchestrator) -> Result<Ended> {
    let mut said = None;
    loop {
        if run.cutoff().passed() {
            return Ok(Ended::Deadline);
        }
        match o.progress(run.scope, run.name()).await? {
            NativeRollout::Updating { updated, total, message } => {
                let now = (updated, total, message.clone());
                if said.as_ref() != Some(&now) {
                    run.sink.emit(EventKind::TargetRollout {
                        service: run.name().to_string(),
                        updated,
                        total,
                        message,
                    });
                    said = Some(now);
                }
                tokio::time::sleep_until(
                    Instant::now().checked_add(POLL).unwrap_or_else(Instant::now).min(run.cutoff().at),
                )
                .await;
            }
            NativeRollout::RollingBack { .. } => tokio::time::sleep(POLL).await,
            other => return Ok(Ended::Native(other)),
        }
    }
}

/// What the rollout's end means for the service.
async fn finish(run: &ServiceRun<'_>, o: &dyn Orchestrator, ended: Ended) -> Result<RolloutOutcome> {
    let svc = &run.template.service;
    let name = run.name().to_string();
    let said = |reason: String| Box::new(Error::backend_kind("rollout", name.clone(), ErrorKind::Failed, reason));
    match ended {
        Ended::Native(NativeRollout::Completed) => {
            if svc.kind == ServiceKind::Service {
                if let Err(e) = check_new(run).await {
                    return Err(roll_back(run, o, e).await);
                }
            }
            Ok(RolloutOutcome::Succeeded)
        }
        Ended::Native(NativeRollout::RolledBack { reason }) => {
            Err(Error::RolledBack { service: name.clone(), reason: said(format!("the target rolled back: {reason}")) })
        }
        Ended::Native(NativeRollout::Paused { reason }) => Err(Error::Paused {
            service: name.clone(),
            replaced: 0,
            total: svc.replicas,
            reason: said(format!("the target paused the update: {reason}")),
        }),
        Ended::Native(NativeRollout::Failed { reason, exit_code }) if svc.kind == ServiceKind::Job => {
            let instance = run
                .backend
                .list_instances(run.scope)
                .await
                .ok()
                .and_then(|l| l.into_iter().find(|i| i.service == name))
                .map(|i| (i.name, i.id));
            let logs = match &instance {
                Some((_, id)) => run.backend.logs_tail(id, 20).await.unwrap_or_default(),
                None => Vec::new(),
            };
            Err(Error::JobFailed {
                service: name.clone(),
                instance: instance.map(|(n, _)| n).unwrap_or_else(|| reason.clone()),
                exit_code: exit_code.unwrap_or(-1),
                logs,
            })
        }
        Ended::Native(NativeRollout::Failed { reason, .. }) => Err(*said(reason)),
        Ended::Native(other) => Err(*said(format!("unexpected rollout state {other:?}"))),
        Ended::Deadline => {
            let cause = run.cutoff().error(&name);
            if svc.kind == ServiceKind::Job {
                return Err(cause);
            }
            Err(roll_back(run, o, cause).await)
        }
    }
}

/// Asks the target to roll back and waits (beyond the deadline, within the rollback allowance)
/// until it did; the error to report.
async fn roll_back(run: &ServiceRun<'_>, o: &dyn Orchestrator, cause: Error) -> Error {
    let name = run.name().to_string();
    if let Err(e) = o.roll_back(run.scope, &name).await {
        return Error::RollbackIncomplete { service: name, reason: Box::new(cause), failures: vec![e] };
    }
    let until = crate::clock::after(Instant::now(), super::service_run::rollback_allowance(&run.template.service));
    loop {
        match o.progress(run.scope, &name).await {
            Ok(NativeRollout::RolledBack { .. }) | Ok(NativeRollout::Completed) => {
                return Error::RolledBack { service: name, reason: Box::new(cause) }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // It had no previous version: rolling back removed it.
                return Error::RolledBack { service: name, reason: Box::new(cause) };
            }
            Ok(NativeRollout::Failed { reason, .. }) => {
                let failure = Error::backend_kind("roll back", name.clone(), ErrorKind::Failed, reason);
                return Error::RollbackIncomplete { service: name, reason: Box::new(cause), failures: vec![failure] };
            }
            _ if Instant::now() >= until => {
                let failure = Error::backend_kind(
                    "roll back",
                    name.clone(),
                    ErrorKind::Timeout,
                    "the target's rollback did not finish in time; it goes on by itself",
                );
                return Error::RollbackIncomplete { service: name, reason: Box::new(cause), failures: vec![failure] };
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Whether the check is one the target cannot run itself (HTTP, TCP: probed from here).
fn probed_from_outside(run: &ServiceRun<'_>) -> bool {
    let health = run.template.service.health.as_ref();
    health.is_some_and(|h| matches!(h.probe(), Probe::Http { .. } | Probe::Tcp { .. }))
}

/// The new version's instances pass the checks the target could not run.
async fn check_new(run: &ServiceRun<'_>) -> Result<()> {
    if !probed_from_outside(run) {
        return Ok(());
    }
    let svc = &run.template.service;
    let instances: Vec<_> = run
        .backend
        .list_instances(run.scope)
        .await?
        .into_iter()
        .filter(|i| i.service == svc.name && i.spec_hash == run.template.spec_hash && i.is_running())
        .collect();
    let gate = run.gate();
    let checks = instances
        .iter()
        .map(|i| gate.wait_ready(svc.health.as_ref(), i, Instant::now(), svc.deadline(), Duration::ZERO));
    join_all(checks).await.into_iter().collect::<Result<Vec<_>>>().map(|_| ())
}

/// Kept instances pass the checks the target could not run (an unchanged service).
async fn verify_kept(run: &ServiceRun<'_>) -> Result<()> {
    if !probed_from_outside(run) {
        return Ok(());
    }
    let svc = &run.template.service;
    let gate = run.gate();
    let checks = run
        .plan
        .keep
        .iter()
        .map(|i| gate.wait_ready(svc.health.as_ref(), i, Instant::now(), svc.deadline(), Duration::ZERO));
    join_all(checks).await.into_iter().collect::<Result<Vec<_>>>().map(|_| ())
}
