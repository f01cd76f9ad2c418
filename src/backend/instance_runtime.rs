//! [`InstanceRuntime`]: the capability of a target the engine runs instance by instance (a Docker
//! engine, a host over SSH, a fleet, a cloud API's machines). A target that rolls services out by
//! itself (a swarm, Kubernetes) does not implement it at all: it is an
//! [`Orchestrator`](super::Orchestrator) instead, and the engine hands it whole services.

use std::time::Duration;

use async_trait::async_trait;

use super::InstanceSpec;
use crate::error::Result;

/// Runs single instances: create one from its template, start it, stop it, remove it. What the
/// engine's own rollouts (rolling, blue/green, canary), jobs and recovery are made of.
///
/// Observing instances (list, inspect, wait for an exit, logs, exec, where to probe) is every
/// target's, on [`Backend`](super::Backend): the health gate and `status` read an orchestrator's
/// tasks too.
#[async_trait]
pub trait InstanceRuntime: Send + Sync {
    /// Creates an instance from its template, not started yet; returns its ID.
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<String>;

    /// Starts a created or stopped instance; starting a running one is not an error.
    async fn start_instance(&self, id: &str) -> Result<()>;

    /// Stops an instance: SIGTERM, then SIGKILL after `grace`.
    async fn stop_instance(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes an instance (stopping it if needed). Removing a missing one is not an error.
    async fn remove_instance(&self, id: &str) -> Result<()>;

    /// Checks what only the target, as it is now, can tell about instances made from `spec`,
    /// before anything changes: that its CPU limit fits the host's cores, that the ports it
    /// publishes are free, that the networks it joins exist. A problem is an
    /// [`Error::Invalid`](crate::Error::Invalid) naming the service and field. What a target can
    /// never honour of a description is said earlier, by [`Backend::limits`](super::Backend::limits).
    /// The default checks nothing.
    async fn check_spec(&self, spec: &InstanceSpec) -> Result<()> {
        let _ = spec;
        Ok(())
    }
}
