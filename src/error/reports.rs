//! The reports some errors carry: a failed health gate with its probes and logs, the services of a
//! failed apply, who holds a deploy lock.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::Error;

/// Why an instance failed its health gate: which service and instance, the last probe results and the
/// container's last log lines.
#[derive(Debug, Clone)]
pub struct HealthFailure {
    /// The service.
    pub service: String,
    /// The container name.
    pub instance: String,
    /// The host it runs on, on a backend with several hosts.
    pub host: Option<String>,
    /// What ended the wait (threshold reached, container exited, deadline).
    pub reason: String,
    /// The most recent probe results, oldest first.
    pub last_probes: Vec<ProbeRecord>,
    /// The container's last log lines.
    pub last_logs: Vec<String>,
}

impl fmt::Display for HealthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = self.host.as_ref().map(|h| format!(" on host {h}")).unwrap_or_default();
        write!(f, "service `{}` (container {}{on}) is not healthy: {}", self.service, self.instance, self.reason)?;
        if self.last_probes.is_empty() {
            write!(f, "\n  last probes: none ran")?;
        } else {
            write!(f, "\n  last probes:")?;
            for p in &self.last_probes {
                write!(f, "\n    - {p}")?;
            }
        }
        f.write_str(&render_lines("last log lines", &self.last_logs))
    }
}

impl std::error::Error for HealthFailure {}

/// Several services failed during one apply; the rest of the environment was left as it was reached.
#[derive(Debug)]
pub struct ApplyFailure {
    /// `project/environment`.
    pub environment: String,
    /// Each failed service with its error.
    pub failed: Vec<(String, Error)>,
    /// Services not started because something they depend on failed.
    pub not_started: Vec<String>,
}

impl fmt::Display for ApplyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "apply of `{}` failed: {} service(s) failed", self.environment, self.failed.len())?;
        if !self.not_started.is_empty() {
            write!(f, ", not started because a dependency failed: {}", self.not_started.join(", "))?;
        }
        for (service, err) in &self.failed {
            write!(f, "\n- {service}: {}", indent(&err.to_string()))?;
        }
        Ok(())
    }
}

impl std::error::Error for ApplyFailure {}

impl ApplyFailure {
    /// The error of one failed service, if it failed.
    pub fn error_of(&self, service: &str) -> Option<&Error> {
        self.failed.iter().find(|(s, _)| s == service).map(|(_, e)| e)
    }
}

fn indent(s: &str) -> String {
    s.replace('\n', "\n  ")
}

pub(super) fn render_lines(title: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("\n  {title}: (none)");
    }
    let mut out = format!("\n  {title}:");
    for l in lines {
        out.push_str("\n    | ");
        out.push_str(l);
    }
    out
}

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    /// When it ran.
    pub at: SystemTime,
    /// Whether it passed.
    pub passed: bool,
    /// What it saw (`GET http://172.18.0.3:8080/health -> 503`).
    pub detail: String,
    /// How long it took.
    pub took: Duration,
}

impl fmt::Display for ProbeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let secs_of_day = t.as_secs() % 86_400;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:03} UTC {} {} ({} ms)",
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60,
            t.subsec_millis(),
            if self.passed { "passed" } else { "failed" },
            self.detail,
            self.took.as_millis()
        )
    }
}

/// Who holds an environment's deploy lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Who deploys, if the caller said ([`EnvironmentBuilder::actor`](crate::EnvironmentBuilder::actor)).
    pub actor: Option<String>,
    /// The holding process's host name (in a container: the container's).
    pub host: String,
    /// The holding process's ID (in its own PID namespace).
    pub pid: u32,
    /// What it is doing (`apply`, `rollback of api`, …).
    pub operation: String,
    /// When it took the lock.
    pub since: SystemTime,
    /// When its lease lapses unless it renews it (by the target's clock); from then on another
    /// deploy takes the lock over.
    pub expires: SystemTime,
    /// What can be told from here about whether it still works (`its process runs on this
    /// machine`, `it runs in another PID namespace …: judged by its lease`).
    pub state: String,
    /// How often its holder renews the lease.
    pub renew_every: Duration,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(a) = &self.actor {
            write!(f, "`{a}` ")?;
        }
        let held = SystemTime::now().duration_since(self.since).unwrap_or_default().as_secs();
        write!(
            f,
            "(process {} on host `{}`, {}) since {} ({held} s ago); {}; its lease runs to {} unless renewed \
             (every {} s), after which the lock is taken over",
            self.pid,
            self.host,
            self.operation,
            crate::rfc3339::format(self.since, false),
            self.state,
            crate::rfc3339::format(self.expires, false),
            self.renew_every.as_secs(),
        )
    }
}
