//! The health gate: waits until a started instance passes its check, exits, or runs out of time.
//!
//! Until the instance is healthy, probes run every `start_interval`, so readiness is reported within
//! one short interval of happening. The gate fails when the container exits (at once), when
//! `start_period + interval × failure_threshold` has passed without `success_threshold` consecutive
//! passes, or when the instance's deadline passes. After it passes, the instance must stay healthy
//! for `min_ready` (probed every `interval`), if one is set.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::probe::{self, Outcome};
use super::{ProbeHistory, ProbeRecord};
use crate::backend::{Backend, Instance, InstanceState};
use crate::error::{Error, HealthFailure};
use crate::events::{EventKind, EventSink};
use crate::model::{HealthCheck, Probe};

/// How long a crash-looping instance is watched for the exit code of one of its runs, when the
/// engine answered the wait with the code of the run its restart policy started.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(3);

/// What the gate needs from the engine.
pub(crate) struct Gate<'a> {
    pub backend: &'a dyn Backend,
    pub http: &'a reqwest::Client,
    pub events: &'a EventSink,
    pub service: &'a str,
    /// An operation deadline that ends the wait early (the environment's, or the rollout's), so a
    /// rollout can roll back in time; `None` for a rollback's own restores.
    pub cutoff: Option<&'a Cutoff>,
    /// Without a health check, how long a new instance must keep running to count as started.
    pub settle: Duration,
    /// Counts instances that passed their check (before their `min_ready`), for a caller that
    /// acts once a whole batch is healthy.
    pub healthy: Option<&'a tokio::sync::watch::Sender<usize>>,
}

/// A deadline that ends a gate's wait with [`Error::Deadline`].
#[derive(Clone, Debug)]
pub(crate) struct Cutoff {
    /// When.
    pub at: Instant,
    /// Whose deadline (`apply of shop-staging`, `rollout of `api``).
    pub what: String,
    /// Its length, for the message.
    pub limit: Duration,
}

impl Cutoff {
    /// The error of a wait it ended.
    pub(crate) fn error(&self, pending: &str) -> Error {
        Error::Deadline { what: self.what.clone(), deadline: self.limit, pending: vec![pending.to_string()] }
    }

    /// Whether it has passed.
    pub(crate) fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

enum Step {
    Exited(i64),
    Probed(Outcome),
    Expired,
}

impl Gate<'_> {
    /// When the wait for an instance started at `started` ends: its own deadline, or the cutoff.
    fn end(&self, started: Instant, deadline: Duration) -> Instant {
        let own = crate::clock::after(started, deadline);
        self.cutoff.map_or(own, |c| c.at.min(own))
    }

    /// The cutoff, if it is what ended a wait.
    fn cut(&self) -> Option<&Cutoff> {
        self.cutoff.filter(|c| c.passed())
    }

    /// Waits for `instance` (started at `started`) to pass `check`, then to stay healthy for
    /// `min_ready`. Without a check, it must keep running for the settle time, without restarts.
    /// Returns the time from start to healthy.
    pub(crate) async fn wait_ready(
        &self,
        check: Option<&HealthCheck>,
        instance: &Instance,
        started: Instant,
        deadline: Duration,
        min_ready: Duration,
    ) -> Result<Duration, Error> {
        let mut exit = self.backend.wait_exit(&instance.id).boxed().fuse();
        let mut history = ProbeHistory::default();
        let hard_end = self.end(started, deadline);
        let after = match check {
            None => {
                self.settle(instance, started, hard_end, &mut exit, &history).await?;
                started.elapsed()
            }
            Some(check) => {
                let budget_end = crate::clock::after(started, check.startup_budget()).min(hard_end);
                let mut logs = match &check.probe {
                    Probe::LogLine { .. } => Some(self.backend.logs(&instance.id, true, None)),
                    _ => None,
                };
                let mut successes = 0u32;
                let mut next = Instant::now();
                let mut last_failure: Option<String> = None;
                loop {
                    // Biased: a probe that is due runs before the budget is judged, so an instance
                    // whose start took the whole budget (a loaded engine) is still probed once.
                    let step = tokio::select! {
                        biased;
                        code = &mut exit => match code {
                            Ok(code) => Step::Exited(code),
                            // Could not watch for exit: keep probing; the deadlines still bound the wait.
                            Err(_) => { exit = futures::future::pending().boxed().fuse(); continue; }
                        },
                        _ = tokio::time::sleep_until(next), if logs.is_none() => {
                            Step::Probed(probe::run(self.backend, self.http, check, instance).await)
                        }
                        _ = tokio::time::sleep_until(budget_end) => Step::Expired,
                        // After the budget: a chatty log must not keep it from expiring.
                        outcome = next_log_outcome(&mut logs, check), if logs.is_some() => Step::Probed(outcome),
                    };
                    match step {
                        Step::Exited(code) => {
                            let reason = self.exited(instance, code, "while starting").await;
                            return Err(self.failure(instance, reason, &history).await);
                        }
                        Step::Expired => {
                            if let Some(cut) = self.cut() {
                                return Err(cut.error(&instance.name));
                            }
                            let mut reason = format!(
                                "not healthy within {} (start period {} + interval {} x {} retries)",
                                crate::duration::human(check.startup_budget().min(deadline)),
                                crate::duration::human(check.start_period),
                                crate::duration::human(check.interval),
                                check.failure_threshold
                            );
                            if let Some(why) = self.not_running(instance).await {
                                reason = format!("{reason}; {why}");
                            }
                            return Err(self.failure(instance, reason, &history).await);
                        }
                        Step::Probed(out) => {
                            let passed = out.record.passed;
                            self.report(instance, &out.record, &mut last_failure);
                            history.push(out.record);
                            if passed {
                                successes += 1;
                                if successes >= check.success_threshold {
                                    break;
                                }
                            } else {
                                successes = 0;
                                if out.hopeless {
                                    // A container that died before it could be probed has no
                                    // address: say that it died, not that it has no address.
                                    let reason = match self.not_running(instance).await {
                                        Some(why) => why,
                                        None => "the probe cannot succeed".into(),
                                    };
                                    return Err(self.failure(instance, reason, &history).await);
                                }
                            }
                            // A target that checks by itself is asked at most 4 times a second.
                            let step = if self.backend.reports_health() {
                                check.start_interval.max(Duration::from_millis(250))
                            } else {
                                check.start_interval
                            };
                            next = crate::clock::after(Instant::now(), step);
                        }
                    }
                }
                started.elapsed()
            }
        };
        self.events.emit(EventKind::InstanceHealthy {
            service: self.service.to_string(),
            instance: instance.name.clone(),
            after,
        });
        if let Some(h) = self.healthy {
            h.send_modify(|n| *n = n.saturating_add(1));
        }
        if !min_ready.is_zero() {
            self.soak(check, instance, min_ready, &mut exit, &mut history).await?;
        }
        Ok(after)
    }

    /// Without a health check, "started" means it kept running for the settle time: an instance
    /// that exits, or that its restart policy restarted (a crash loop), fails.
    async fn settle(
        &self,
        instance: &Instance,
        started: Instant,
        end: Instant,
        exit: &mut (impl futures::future::FusedFuture<Output = crate::Result<i64>> + Unpin),
        history: &ProbeHistory,
    ) -> Result<(), Error> {
        let settled = crate::clock::after(started, self.settle).min(end);
        tokio::select! {
            code = &mut *exit => {
                if let Ok(code) = code {
                    let when = format!("within its settle time of {:?}", self.settle);
                    let reason = self.exited(instance, code, &when).await;
                    return Err(self.failure(instance, reason, history).await);
                }
                tokio::time::sleep_until(settled).await;
            }
            _ = tokio::time::sleep_until(settled) => {}
        }
        if let Some(cut) = self.cut() {
            return Err(cut.error(&instance.name));
        }
        match self.not_running(instance).await {
            Some(why) => Err(self.failure(instance, why, history).await),
            None => Ok(()),
        }
    }

    /// Why an instance whose exit was seen failed, `when` saying in which phase. A restart policy
    /// may have restarted it already: the engine then reports the exit code of the new run (0) to
    /// the waiter, so a restarted instance is described as crash-looping with the code it last
    /// exited with, as the engine reports it now.
    async fn exited(&self, instance: &Instance, code: i64, when: &str) -> String {
        let plain = format!("the container exited with code {code} {when}");
        let Ok(mut now) = self.backend.inspect_instance(&instance.id).await else { return plain };
        if now.restarts == 0 {
            return plain;
        }
        // Restarted: the code that was waited for may be the new run's. A crash loop exits again
        // soon; the engine then reports the code while it restarts the instance.
        let mut last = (code != 0).then_some(code);
        let until = crate::clock::after(Instant::now(), EXIT_CODE_WAIT);
        loop {
            if let (InstanceState::Exited | InstanceState::Dead | InstanceState::Restarting, Some(c)) =
                (now.state, now.exit_code)
            {
                last = Some(c);
            }
            if last.is_some() || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.backend.inspect_instance(&instance.id).await {
                Ok(again) => now = again,
                Err(_) => break,
            }
        }
        format!(
            "the container exited with code {} {when}; it was restarted {} time(s) by its restart policy: it is crash-looping",
            last.map_or_else(|| "unknown (see its log lines)".to_string(), |c| c.to_string()),
            now.restarts
        )
    }

    /// Why the instance is not simply running, if it is not: exited (with its code), or
    /// restarted by its restart policy (crash-looping). `None` if it runs, or cannot be read.
    async fn not_running(&self, instance: &Instance) -> Option<String> {
        let now = self.backend.inspect_instance(&instance.id).await.ok()?;
        let restarts = if now.restarts > 0 {
            format!("; it was restarted {} time(s) by its restart policy: it is crash-looping", now.restarts)
        } else {
            String::new()
        };
        match now.state {
            InstanceState::Running if now.restarts == 0 => None,
            InstanceState::Running | InstanceState::Restarting => {
                Some(format!("the container keeps exiting{restarts}"))
            }
            InstanceState::Exited | InstanceState::Dead => Some(format!(
                "the container exited with code {} while starting{restarts}",
                now.exit_code.map_or("unknown".to_string(), |c| c.to_string())
            )),
            state => Some(format!("the container is {state}{restarts}")),
        }
    }

    /// Keeps probing for `min_ready`; fails on exit or on `failure_threshold` consecutive failures.
    async fn soak(
        &self,
        check: Option<&HealthCheck>,
        instance: &Instance,
        min_ready: Duration,
        exit: &mut (impl futures::future::FusedFuture<Output = crate::Result<i64>> + Unpin),
        history: &mut ProbeHistory,
    ) -> Result<(), Error> {
        let end = self.end(Instant::now(), min_ready);
        let mut failures = 0u32;
        let mut last_failure = None;
        loop {
            let interval = check.map(|c| c.interval).unwrap_or(min_ready);
            let next = crate::clock::after(Instant::now(), interval).min(end);
            tokio::select! {
                code = &mut *exit => {
                    if let Ok(code) = code {
                        let when = format!("during its min_ready period of {}", crate::duration::human(min_ready));
                        let reason = self.exited(instance, code, &when).await;
                        return Err(self.failure(instance, reason, history).await);
                    }
                }
                _ = tokio::time::sleep_until(next) => {}
            }
            if Instant::now() >= end {
                return match self.cut() {
                    Some(cut) => Err(cut.error(&instance.name)),
                    None => Ok(()),
                };
            }
            let Some(check) = check else { continue };
            if matches!(check.probe, Probe::LogLine { .. }) {
                continue;
            }
            let out = probe::run(self.backend, self.http, check, instance).await;
            self.report(instance, &out.record, &mut last_failure);
            let passed = out.record.passed;
            history.push(out.record);
            failures = if passed { 0 } else { failures + 1 };
            if !passed && out.hopeless {
                return Err(self.failure(instance, "the probe cannot succeed".into(), history).await);
            }
            if failures >= check.failure_threshold {
                let reason =
                    format!("{failures} consecutive probe failures during its min_ready period of {min_ready:?}");
                return Err(self.failure(instance, reason, history).await);
            }
        }
    }

    fn report(&self, instance: &Instance, record: &ProbeRecord, last_failure: &mut Option<String>) {
        let service = self.service.to_string();
        let name = instance.name.clone();
        if record.passed {
            *last_failure = None;
            self.events.emit(EventKind::ProbePassed { service, instance: name, detail: record.detail.clone() });
        } else if last_failure.as_deref() != Some(record.detail.as_str()) {
            *last_failure = Some(record.detail.clone());
            self.events.emit(EventKind::ProbeFailed { service, instance: name, detail: record.detail.clone() });
        }
    }

    async fn failure(&self, instance: &Instance, reason: String, history: &ProbeHistory) -> Error {
        let last_logs =
            match tokio::time::timeout(Duration::from_secs(5), self.backend.logs_tail(&instance.id, 20)).await {
                Ok(Ok(lines)) => lines,
                Ok(Err(e)) => vec![format!("(could not read logs: {e})")],
                Err(_) => vec!["(could not read logs in time)".to_string()],
            };
        Error::Unhealthy(Box::new(HealthFailure {
            service: self.service.to_string(),
            instance: instance.name.clone(),
            host: instance.host.clone(),
            reason,
            last_probes: history.to_vec(),
            last_logs,
        }))
    }
}

/// Reads the followed log until a line contains the text; each line read counts as a probe result
/// only when it matches (non-matching lines are not failures).
async fn next_log_outcome(
    logs: &mut Option<futures::stream::BoxStream<'static, crate::Result<crate::backend::LogLine>>>,
    check: &HealthCheck,
) -> Outcome {
    let Probe::LogLine { contains } = &check.probe else { return futures::future::pending().await };
    let Some(stream) = logs.as_mut() else { return futures::future::pending().await };
    let at = std::time::SystemTime::now();
    loop {
        match stream.next().await {
            Some(Ok(line)) if line.text.contains(contains.as_str()) => {
                return Outcome {
                    record: ProbeRecord {
                        at,
                        passed: true,
                        detail: format!("log line {:?}", line.text),
                        took: Duration::ZERO,
                    },
                    hopeless: false,
                }
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                *logs = None;
                return Outcome {
                    record: ProbeRecord {
                        at,
                        passed: false,
                        detail: format!("reading the log failed: {e}"),
                        took: Duration::ZERO,
                    },
                    hopeless: true,
                };
            }
            None => {
                *logs = None;
                return Outcome {
                    record: ProbeRecord {
                        at,
                        passed: false,
                        detail: format!("the log ended without a line containing {contains:?}"),
                        took: Duration::ZERO,
                    },
                    hopeless: true,
                };
            }
        }
    }
}
