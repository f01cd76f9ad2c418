//! Dependencies between services and the conditions a dependent waits for.

use std::fmt;

use serde::Serialize;

/// What a dependent waits for before it starts. There is no implicit default: each dependency names
/// its condition, because "started" is not "ready".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every instance of the dependency has been started (compose's `service_started`).
    Started,
    /// Every instance of the dependency passed its health check (`service_healthy`).
    Healthy,
    /// The dependency is a job that exited 0 (`service_completed_successfully`).
    CompletedSuccessfully,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::CompletedSuccessfully => "completed successfully",
        })
    }
}

/// One dependency of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// What must hold before the dependent starts.
    pub condition: Condition,
}
