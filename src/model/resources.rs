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

    /// CPU limit in cores (`0.5` is half a core).
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Memory limit in MiB (at least 6, the engine's minimum).
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = Some(mb);
        self
    }

    pub(crate) fn problems(&self) -> Option<String> {
        if let Some(c) = self.cpus {
            if !c.is_finite() || c <= 0.0 {
                return Some(format!("cpus must be a positive number, got {c}"));
            }
        }
        if let Some(m) = self.memory_mb {
            if m < 6 {
                return Some(format!("memory must be at least 6 MiB, got {m}"));
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
