//! How a service proves it is ready: the [`HealthCheck`] spec. The probing itself lives in
//! [`crate::health`].

use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use serde::Serialize;

/// A readiness check and its timing.
///
/// HTTP and TCP probes run from the library, not inside the container, so images without curl work.
/// Until an instance is first healthy ("starting"), probes run every [`start_interval`](Self::start_interval)
/// (25 ms by default) so readiness is reported the moment it happens. The instance fails its gate
/// when it has not become healthy within `start_period + interval × failure_threshold` (the same
/// budget Docker and compose give), or at once if the container exits.
///
/// | setting | default | Docker / Kubernetes name |
/// |---|---|---|
/// | [`interval`](Self::interval) | 1 s | `interval` / `periodSeconds` |
/// | [`start_interval`](Self::start_interval) | 25 ms | `start_interval` |
/// | [`timeout`](Self::timeout) | 1 s | `timeout` / `timeoutSeconds` |
/// | [`retries`](Self::retries) | 3 | `retries` / `failureThreshold` |
/// | [`success_threshold`](Self::success_threshold) | 1 | — / `successThreshold` |
/// | [`start_period`](Self::start_period) | 0 | `start_period` / `initialDelaySeconds` |
///
/// ```
/// use std::time::Duration;
/// use harbormaster::HealthCheck;
/// let check = HealthCheck::http(8080, "/health")
///     .expect_status(200..300)
///     .start_period(Duration::from_secs(5));
/// # let _ = check;
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthCheck {
    pub(crate) probe: Probe,
    pub(crate) interval: Duration,
    pub(crate) start_interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) failure_threshold: u32,
    pub(crate) success_threshold: u32,
    pub(crate) start_period: Duration,
}

/// What a [`HealthCheck`] probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Probe {
    /// `GET path` on the container port; healthy when the status is in `[status_min, status_max]` and
    /// the body contains `body_contains` (if set).
    Http {
        /// Container port.
        port: u16,
        /// Request path.
        path: String,
        /// Lowest accepted status.
        status_min: u16,
        /// Highest accepted status.
        status_max: u16,
        /// A substring the body must contain.
        body_contains: Option<String>,
    },
    /// A TCP connection to the container port is accepted.
    Tcp {
        /// Container port.
        port: u16,
    },
    /// A command run inside the container exits 0.
    Exec {
        /// The command and its arguments.
        command: Vec<String>,
    },
    /// The image's own Docker `HEALTHCHECK` reports healthy.
    Docker,
    /// The container has logged a line containing this text.
    LogLine {
        /// The text to look for.
        contains: String,
    },
}

impl HealthCheck {
    fn with(probe: Probe) -> Self {
        HealthCheck {
            probe,
            interval: Duration::from_secs(1),
            start_interval: Duration::from_millis(25),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
            start_period: Duration::ZERO,
        }
    }

    /// HTTP `GET path` on a container port; 200-399 counts as healthy unless
    /// [`expect_status`](Self::expect_status) says otherwise.
    pub fn http(port: u16, path: impl Into<String>) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Self::with(Probe::Http { port, path, status_min: 200, status_max: 399, body_contains: None })
    }

    /// A TCP connect to a container port.
    pub fn tcp(port: u16) -> Self {
        Self::with(Probe::Tcp { port })
    }

    /// A command run inside the container; exit code 0 is healthy.
    pub fn exec<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with(Probe::Exec { command: command.into_iter().map(Into::into).collect() })
    }

    /// The image's own Docker `HEALTHCHECK`.
    pub fn docker() -> Self {
        Self::with(Probe::Docker)
    }

    /// Healthy once the container logs a line containing `text`.
    pub fn log_line(text: impl Into<String>) -> Self {
        Self::with(Probe::LogLine { contains: text.into() })
    }

    /// Accepted HTTP status codes (for example `200..300`). Ignored by other probes.
    pub fn expect_status(mut self, range: impl RangeBounds<u16>) -> Self {
        if let Probe::Http { status_min, status_max, .. } = &mut self.probe {
            *status_min = match range.start_bound() {
                Bound::Included(&s) => s,
                Bound::Excluded(&s) => s.saturating_add(1),
                Bound::Unbounded => 100,
            };
            *status_max = match range.end_bound() {
                Bound::Included(&e) => e,
                Bound::Excluded(&e) => e.saturating_sub(1),
                Bound::Unbounded => 599,
            };
        }
        self
    }

    /// The HTTP body must contain this text. Ignored by other probes.
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        if let Probe::Http { body_contains, .. } = &mut self.probe {
            *body_contains = Some(text.into());
        }
        self
    }

    /// Time between probes once started (and the unit of the failure budget).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// Time between probes while the instance is starting.
    pub fn start_interval(mut self, d: Duration) -> Self {
        self.start_interval = d;
        self
    }

    /// How long one probe may take.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Consecutive failures that make an instance unhealthy (Docker's `retries`).
    pub fn retries(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Same as [`retries`](Self::retries), under Kubernetes' name.
    pub fn failure_threshold(self, n: u32) -> Self {
        self.retries(n)
    }

    /// Consecutive successes needed to count as healthy.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.success_threshold = n;
        self
    }

    /// Grace time after start during which failures do not count.
    pub fn start_period(mut self, d: Duration) -> Self {
        self.start_period = d;
        self
    }

    /// What is probed.
    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// The longest an instance may take to become healthy before it fails:
    /// `start_period + interval × failure_threshold`.
    pub fn startup_budget(&self) -> Duration {
        self.start_period.saturating_add(self.interval.saturating_mul(self.failure_threshold))
    }

    pub(crate) fn problems(&self) -> Option<String> {
        let zero = |d: Duration| d.is_zero();
        if zero(self.interval) || zero(self.start_interval) || zero(self.timeout) {
            return Some("interval, start_interval and timeout must be greater than zero".into());
        }
        if self.failure_threshold == 0 || self.success_threshold == 0 {
            return Some("retries (failure threshold) and success threshold must be at least 1".into());
        }
        let max = super::limits::MAX_STEP;
        for (what, d) in [
            ("interval", self.interval),
            ("start interval", self.start_interval),
            ("timeout", self.timeout),
            ("start period", self.start_period),
        ] {
            if let Some(p) = super::limits::duration(what, d, max) {
                return Some(p);
            }
        }
        if self.failure_threshold.max(self.success_threshold) > super::limits::MAX_THRESHOLD {
            return Some(format!("retries and success threshold may be at most {}", super::limits::MAX_THRESHOLD));
        }
        match &self.probe {
            Probe::Http { port: 0, .. } | Probe::Tcp { port: 0 } => Some("probe port must not be 0".into()),
            Probe::Http { status_min, status_max, .. } if status_min > status_max => {
                Some(format!("expected status range {status_min}..={status_max} is empty"))
            }
            Probe::Http { status_min, status_max, .. } if *status_max < 200 || *status_min > 599 => Some(format!(
                "expected status range {status_min}..={status_max} holds no final HTTP status (200-599; a 1xx \
                 answer is interim, never the response): use e.g. expect_status(200..300)"
            )),
            Probe::Http { path, .. } if path.chars().any(|c| c.is_whitespace() || c.is_control()) => Some(format!(
                "HTTP probe path {} must not contain spaces or control characters",
                super::limits::show(path)
            )),
            Probe::Exec { command } if command.is_empty() => Some("exec probe needs a command".into()),
            Probe::Exec { command } if command.iter().any(|a| a.contains('\0')) => {
                Some("an exec probe argument contains a NUL byte, which a process cannot receive".into())
            }
            Probe::LogLine { contains } if contains.is_empty() => Some("log-line probe needs some text".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_convert() {
        let h = HealthCheck::http(80, "health").expect_status(200..300);
        match h.probe {
            Probe::Http { status_min, status_max, ref path, .. } => {
                assert_eq!((status_min, status_max), (200, 299));
                assert_eq!(path, "/health");
            }
            _ => panic!("not http"),
        }
        let h = HealthCheck::http(80, "/").expect_status(204..=204);
        assert!(matches!(h.probe, Probe::Http { status_min: 204, status_max: 204, .. }));
    }

    #[test]
    fn budget_is_start_period_plus_interval_times_retries() {
        let h =
            HealthCheck::tcp(1).interval(Duration::from_millis(200)).retries(50).start_period(Duration::from_secs(1));
        assert_eq!(h.startup_budget(), Duration::from_secs(11));
    }

    #[test]
    fn problems_are_reported() {
        assert!(HealthCheck::tcp(0).problems().is_some());
        assert!(HealthCheck::tcp(1).retries(0).problems().is_some());
        assert!(HealthCheck::tcp(1).interval(Duration::ZERO).problems().is_some());
        assert!(HealthCheck::exec(Vec::<String>::new()).problems().is_some());
        let (lo, hi) = (300u16, 200u16); // an empty range, as a user might compute one
        assert!(HealthCheck::http(1, "/").expect_status(lo..hi).problems().is_some());
        assert!(HealthCheck::http(1, "/").problems().is_none());
    }
}
