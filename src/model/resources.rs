//! CPU and memory limits, and the restart policy.

use serde::{Deserialize, Serialize};

/// CPU and memory limits of each container of a service.
///
/// ```
/// use harbormaster::Resources;
/// let r = Resources::new().cpus(0.5).memory_mb(256);
/// # let _ = r;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub(crate) cpus: Option<f64>,
    pub(crate) memory_mb: Option<u64>,
}

impl Resources {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// CPU limit in cores (`0.5` is half a core; from 0.01 to the host's cores).
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Memory limit in MiB (at least 6, the engine's minimum).
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = Some(mb);
        self
    }

    /// The CPU limit, if set.
    pub fn cpu_limit(&self) -> Option<f64> {
        self.cpus
    }

    /// The memory limit in MB, if set.
    pub fn memory_limit_mb(&self) -> Option<u64> {
        self.memory_mb
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
            if !(6..=MAX_MEMORY_MB).contains(&m) {
                return Some(format!(
                    "memory must be between 6 MiB (Docker's minimum) and {MAX_MEMORY_MB} MiB, got {m}"
                ));
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
