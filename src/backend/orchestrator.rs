//! The higher seam, for targets that roll out by themselves (Swarm services, Kubernetes
//! Deployments, a cloud API's own update): the engine hands over a service's template, its
//! strategy and its health check, and keeps what it owns: the plan, the revisions, the outcome,
//! the deadline and the events. The engine's side is `engine/orchestrated.rs`.

use async_trait::async_trait;

use super::{InstanceSpec, Scope};
use crate::error::Result;
use crate::model::Service;

/// One service as the engine hands it to a self-rolling target.
#[derive(Debug)]
pub struct ServiceDeployment<'a> {
    /// The owning environment.
    pub scope: &'a Scope,
    /// The service as described (replicas, kind, rollout, health check).
    pub service: &'a Service,
    /// The template every replica is made from (its `name` is the service's qualified name).
    pub template: &'a InstanceSpec,
    /// The configuration hash the plan compares with; the target returns it on the service's
    /// instances ([`Instance::spec_hash`](super::Instance::spec_hash)).
    pub spec_hash: &'a str,
    /// The hosts the service may run on (its roles, resolved); empty: anywhere.
    pub hosts: &'a [String],
}

/// Where a self-rolling target's own rollout of a service is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NativeRollout {
    /// In progress: `updated` of `total` replicas run the new version.
    Updating {
        /// Replicas on the new version.
        updated: u32,
        /// Replicas wanted.
        total: u32,
        /// What the target says.
        message: String,
    },
    /// Converged: every replica runs the new version and is up (for a job: its run completed
    /// with exit code 0).
    Completed,
    /// The target is rolling back by itself (its failure action).
    RollingBack {
        /// Why, as the target says.
        reason: String,
    },
    /// The target rolled back to the previous version.
    RolledBack {
        /// Why, as the target says.
        reason: String,
    },
    /// The target paused the update where it was.
    Paused {
        /// Why, as the target says.
        reason: String,
    },
    /// A job's run failed, or the update failed with no way back.
    Failed {
        /// Why, as the target says.
        reason: String,
        /// A job's exit code, when it has one.
        exit_code: Option<i64>,
    },
}

/// A target that rolls services out by itself. The engine decides what changes and when (the
/// plan, dependency order, deadline, revisions) and asks the target to converge one service at a
/// time; the target's own update does the replacing. What its rollout cannot honour as the
/// library would (strategy, health check, secrets), it says in
/// [`Backend::limits`](super::Backend::limits).
#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// Creates the service, or updates it to `deployment` (a new template, replica count or
    /// rollout); returns at once, the target rolls it out by itself.
    async fn submit(&self, deployment: &ServiceDeployment<'_>) -> Result<()>;

    /// Where the target's rollout of the service is.
    async fn progress(&self, scope: &Scope, service: &str) -> Result<NativeRollout>;

    /// Asks the target to roll the service back to the version before the last
    /// [`submit`](Self::submit) (or to remove it if there was none).
    async fn roll_back(&self, scope: &Scope, service: &str) -> Result<()>;

    /// Removes the service and all its instances; `false` if there was none.
    async fn remove_service(&self, scope: &Scope, service: &str) -> Result<bool>;

    /// The services the target runs for the environment.
    async fn services(&self, scope: &Scope) -> Result<Vec<String>>;

    /// Called once a rollout of the service ended (converged or rolled back): the target may
    /// clean up what no version uses any more (a swarm's replaced secrets). The default does
    /// nothing.
    async fn settled(&self, scope: &Scope, service: &str) -> Result<()> {
        let _ = (scope, service);
        Ok(())
    }
}
