//! CPU and memory limits, and the restart policy.

use serde::{Deserialize, Serialize};

/// CPU, memory and process limits of each container of a service.
///
/// ```
/// use harbormaster::Resources;
/// let r = Resources::new().cpus(0.5).memory_mb(256).pids(200);
/// # let _ = r;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub(crate) cpus: Option<f64>,
    pub(crate) memory_mb: Option<u64>,
    /// An exact memory limit in bytes, when it is not a whole number of MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_reservation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_swap: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_swappiness: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pids: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_shares: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_quota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpuset: Option<String>,
}

impl Resources {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// CPU limit in cores (`0.5` is half a core; from 0.001 to the host's cores; the Docker
    /// engine takes 0.01 at least, and its plan refuses less).
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Memory limit in MiB (at least 1; the Docker engine takes 6 at least, and its plan refuses
    /// less).
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = Some(mb);
        self.memory_bytes = None;
        self
    }

    /// Memory limit in bytes (the Docker engine takes 6 MiB at least), for a limit that is not a whole number of MiB
    /// (`mem_limit: 100000k`).
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        if bytes.is_multiple_of(1024 * 1024) {
            return self.memory_mb(bytes / (1024 * 1024));
        }
        self.memory_mb = Some(bytes.div_ceil(1024 * 1024));
        self.memory_bytes = Some(bytes);
        self
    }

    /// A soft memory limit in bytes the engine reclaims down to under memory pressure
    /// (`--memory-reservation`).
    pub fn memory_reservation(mut self, bytes: u64) -> Self {
        self.memory_reservation = Some(bytes);
        self
    }

    /// Memory plus swap in bytes (`--memory-swap`; at least the memory limit, which it needs),
    /// or -1 for unlimited swap.
    pub fn memory_swap(mut self, bytes: i64) -> Self {
        self.memory_swap = Some(bytes);
        self
    }

    /// How readily the kernel swaps the container's anonymous pages, 0 to 100.
    pub fn memory_swappiness(mut self, percent: u8) -> Self {
        self.memory_swappiness = Some(percent);
        self
    }

    /// Most processes and threads the container may have (`--pids-limit`; -1 for no limit).
    pub fn pids(mut self, limit: i64) -> Self {
        self.pids = Some(limit);
        self
    }

    /// The relative CPU weight against other containers (`--cpu-shares`, default 1024).
    pub fn cpu_shares(mut self, shares: u64) -> Self {
        self.cpu_shares = Some(shares);
        self
    }

    /// The CFS quota in microseconds per [`cpu_period`](Self::cpu_period) (`--cpu-quota`).
    pub fn cpu_quota(mut self, micros: i64) -> Self {
        self.cpu_quota = Some(micros);
        self
    }

    /// The CFS period in microseconds (`--cpu-period`, 1000 to 1000000).
    pub fn cpu_period(mut self, micros: u64) -> Self {
        self.cpu_period = Some(micros);
        self
    }

    /// The CPUs the container may run on (`0-3`, `0,2`).
    pub fn cpuset(mut self, cpus: impl Into<String>) -> Self {
        self.cpuset = Some(cpus.into());
        self
    }

    /// The CPU limit, if set.
    pub fn cpu_limit(&self) -> Option<f64> {
        self.cpus
    }

    /// The memory limit in MiB (rounded up), if set.
    pub fn memory_limit_mb(&self) -> Option<u64> {
        self.memory_mb
    }

    /// The memory limit in bytes, if set.
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        self.memory_bytes.or_else(|| self.memory_mb.map(|m| m.saturating_mul(1024 * 1024)))
    }

    /// The memory reservation in bytes, if set.
    pub fn memory_reservation_bytes(&self) -> Option<u64> {
        self.memory_reservation
    }

    /// Memory plus swap in bytes (-1: unlimited), if set.
    pub fn memory_swap_bytes(&self) -> Option<i64> {
        self.memory_swap
    }

    /// The swappiness, if set.
    pub fn swappiness(&self) -> Option<u8> {
        self.memory_swappiness
    }

    /// The process limit, if set.
    pub fn pids_limit(&self) -> Option<i64> {
        self.pids
    }

    /// The CPU shares, if set.
    pub fn cpu_shares_weight(&self) -> Option<u64> {
        self.cpu_shares
    }

    /// The CFS quota and period in microseconds, if set.
    pub fn cfs(&self) -> (Option<i64>, Option<u64>) {
        (self.cpu_quota, self.cpu_period)
    }

    /// The CPUs the container may run on, if set.
    pub fn cpu_set(&self) -> Option<&str> {
        self.cpuset.as_deref()
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }

    pub(crate) fn problems(&self) -> Option<String> {
        use super::limits::{MAX_CPUS, MAX_MEMORY_MB, MIN_CPUS};
        if let Some(c) = self.cpus {
            if !c.is_finite() || !(MIN_CPUS..=MAX_CPUS).contains(&c) {
                return Some(format!(
                    "cpus must be between {MIN_CPUS} and {MAX_CPUS} (and no more than the host's cores), got {c}"
                ));
            }
        }
        if let Some(m) = self.memory_mb {
            if !(1..=MAX_MEMORY_MB).contains(&m) {
                return Some(format!("memory must be between 1 and {MAX_MEMORY_MB} MiB, got {m}"));
            }
        }
        let max_bytes = MAX_MEMORY_MB.saturating_mul(1024 * 1024);
        if let Some(r) = self.memory_reservation {
            if !(1..=max_bytes).contains(&r) {
                return Some(format!(
                    "memory reservation must be between 1 byte and {MAX_MEMORY_MB} MiB, got {r} bytes"
                ));
            }
            if self.memory_limit_bytes().is_some_and(|m| r > m) {
                return Some("the memory reservation must not exceed the memory limit".into());
            }
        }
        if let Some(s) = self.memory_swap {
            match self.memory_limit_bytes() {
                _ if s == -1 => {}
                None => return Some("memory swap needs a memory limit (Docker refuses it alone)".into()),
                Some(m) if s < 0 || (s as u64) < m => {
                    return Some(format!(
                        "memory swap ({s} bytes) is memory plus swap: at least the memory limit ({m} bytes), or -1"
                    ))
                }
                Some(_) => {}
            }
        }
        if self.memory_swappiness.is_some_and(|p| p > 100) {
            return Some("memory swappiness is a percentage from 0 to 100".into());
        }
        if self.pids.is_some_and(|p| p == 0 || p < -1) {
            return Some("the pids limit is a positive number, or -1 for no limit".into());
        }
        if let Some(p) = self.cpu_period {
            if !(1000..=1_000_000).contains(&p) {
                return Some(format!("the CPU period must be between 1000 and 1000000 microseconds, got {p}"));
            }
        }
        if self.cpu_quota.is_some_and(|q| q != -1 && q < 1000) {
            return Some("the CPU quota must be at least 1000 microseconds (or -1)".into());
        }
        if let Some(c) = &self.cpuset {
            let ok = !c.is_empty()
                && c.split(',').all(|part| {
                    let mut ends = part.splitn(2, '-');
                    ends.all(|n| !n.is_empty() && n.chars().all(|d| d.is_ascii_digit()))
                });
            if !ok {
                return Some(format!("cpuset {} is a list of CPUs such as 0-3 or 0,2", super::limits::show(c)));
            }
        }
        None
    }
}

/// What the engine does when a container exits. Services default to [`RestartPolicy::UnlessStopped`],
/// jobs to [`RestartPolicy::No`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never restart.
    No,
    /// Always restart, also after the engine restarts.
    Always,
    /// Restart unless it was stopped on purpose.
    UnlessStopped,
    /// Restart after a non-zero exit, at most this many times (0 = no limit).
    OnFailure(u32),
}
