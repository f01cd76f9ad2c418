//! How a changed service replaces its running instances: the [`Rollout`] spec.
//! The engine that carries it out is [`crate::engine`].

use std::time::Duration;

use serde::Serialize;

/// How a service's instances are replaced when its configuration or image changes.
///
/// ```
/// use std::time::Duration;
/// use harbormaster::Rollout;
/// let safe = Rollout::start_first().min_ready(Duration::from_secs(2));
/// let simple = Rollout::recreate();
/// # let _ = (safe, simple);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rollout {
    pub(crate) strategy: Strategy,
    pub(crate) min_ready: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) on_failure: OnFailure,
}

/// The order in which old instances stop and new ones start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Stop every old instance, then start the new ones (Kubernetes `Recreate`, Swarm `stop-first`).
    /// Needed when instances cannot run side by side, such as a fixed host port.
    Recreate,
    /// Start the new instances beside the old ones, wait until every new one is healthy (and has stayed
    /// so for `min_ready`), then stop the old ones (Swarm `start-first`). If a new instance fails, the
    /// new ones are removed and the old ones keep running.
    StartFirst,
}

/// What happens when a rollout fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnFailure {
    /// Put back the old version (the default). With start-first, the failed new instances are
    /// removed; the old ones were never touched.
    Rollback,
    /// Report the failure and leave the failed new instances in place for inspection (the old
    /// ones keep running beside them with start-first).
    Fail,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout::start_first()
    }
}

impl Rollout {
    /// Stop the old instances, then start the new ones.
    pub fn recreate() -> Self {
        Rollout {
            strategy: Strategy::Recreate,
            min_ready: Duration::ZERO,
            deadline: None,
            on_failure: OnFailure::Rollback,
        }
    }

    /// Start new instances beside the old ones and stop the old ones once the new are healthy.
    pub fn start_first() -> Self {
        Rollout { strategy: Strategy::StartFirst, ..Rollout::recreate() }
    }

    /// How long a new instance must stay healthy before it counts (Kubernetes `minReadySeconds`,
    /// Nomad `min_healthy_time`, Swarm `monitor`).
    pub fn min_ready(mut self, d: Duration) -> Self {
        self.min_ready = d;
        self
    }

    /// Deadline for the whole rollout of the service, enforced by the library.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }

    /// What to do when it fails.
    pub fn on_failure(mut self, action: OnFailure) -> Self {
        self.on_failure = action;
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }
}
