//! One service's part of an apply ([`ServiceRun`]) and the steps every strategy is made of:
//! create and start an instance, retire old ones, the health gates, the deadlines. What runs when
//! is decided above it, in [`dispatch`](super::dispatch); how instances are replaced in
//! [`rollout`](super::rollout).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::traffic::Traffic;
use crate::backend::{instances_of, label, Backend, Instance, InstanceRuntime, Scope};
use crate::error::{Error, Result};
use crate::events::{EventKind, EventSink, RolloutOutcome};
use crate::health::gate::{Cutoff, Gate};
use crate::model::{Condition, NetworkMode};
use crate::plan::spec::Template;
use crate::plan::ServicePlan;
use crate::state::revisions::Recorder;
use crate::state::Store;

/// How far a service has got in this apply; dependents watch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Pending,
    Started,
    Ready,
    Completed,
    Failed,
}

impl Phase {
    pub(super) fn satisfies(self, c: Condition) -> bool {
        match c {
            Condition::Started => matches!(self, Phase::Started | Phase::Ready | Phase::Completed),
            Condition::Healthy => self == Phase::Ready,
            Condition::CompletedSuccessfully => self == Phase::Completed,
        }
    }
}

pub(super) enum ServiceOutcome {
    Done(RolloutOutcome),
    Failed(Error),
    Skipped,
}

/// A unique container name: `project-env-service-slot-nonce`.
pub(super) fn instance_name(scope: &Scope, service: &str, slot: u32) -> String {
    format!("{}-{service}-{slot}-{}", scope.qualified(), crate::process::nonce())
}

/// An instance created but not started yet.
pub(super) struct Created {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) slot: u32,
}

/// One service's part of an apply.
pub(super) struct ServiceRun<'a> {
    pub(super) backend: &'a dyn Backend,
    pub(super) store: &'a Store<'a>,
    pub(super) sink: &'a EventSink,
    pub(super) scope: &'a Scope,
    pub(super) http: &'a reqwest::Client,
    pub(super) template: &'a Template,
    pub(super) plan: &'a ServicePlan,
    pub(super) phases: &'a BTreeMap<String, watch::Sender<Phase>>,
    pub(super) traffic: &'a Traffic<'a>,
    pub(super) recorder: &'a Recorder,
    /// When this service's part of the operation must end: the environment's deadline. Waits end
    /// there with [`Error::Deadline`], which a rollout handles as any failure: it rolls back.
    pub(super) cutoff: Cutoff,
    /// The rollout's own deadline, if it comes first, set when the rollout starts (once its
    /// dependencies are met).
    pub(super) rollout_cutoff: std::sync::OnceLock<Cutoff>,
}

/// How long a rollback may take after a deadline ended a rollout: restoring old instances waits
/// for their health gate, and stops take their grace.
pub(crate) fn rollback_allowance(svc: &crate::model::Service) -> Duration {
    svc.deadline()
        .saturating_add(svc.stop_grace.saturating_mul(2))
        .saturating_add(svc.rollout.drain)
        .saturating_add(Duration::from_secs(60))
}

impl ServiceRun<'_> {
    pub(super) fn name(&self) -> &str {
        &self.template.service.name
    }

    /// The target's runtime of single instances: every step that creates, starts, stops or
    /// removes one instance goes through it. A target that rolls out by itself has none, and
    /// never takes those steps (`engine/orchestrated.rs` runs its services).
    pub(super) fn instances(&self) -> Result<&dyn InstanceRuntime> {
        instances_of(self.backend, &format!("run instances of `{}`", self.name()))
    }

    /// Where this service's waits end: the rollout's own deadline once its rollout has started,
    /// if it comes first, else the environment's.
    pub(super) fn cutoff(&self) -> &Cutoff {
        self.rollout_cutoff.get().unwrap_or(&self.cutoff)
    }

    /// The health gate for new instances: its waits end at the cutoff.
    pub(super) fn gate(&self) -> Gate<'_> {
        Gate {
            backend: self.backend,
            http: self.http,
            events: self.sink,
            service: self.name(),
            cutoff: Some(self.cutoff()),
            settle: self.template.service.settle,
            healthy: None,
        }
    }

    /// The health gate for old instances a rollback brings back: a deadline that passed must not
    /// keep the previous version from serving again.
    pub(super) fn restore_gate(&self) -> Gate<'_> {
        Gate { cutoff: None, ..self.gate() }
    }

    /// The slots that get a new instance in this apply: replaced ones, then missing ones.
    pub(super) fn slots_to_launch(&self) -> Vec<u32> {
        let mut slots: Vec<u32> = self.plan.replace.iter().map(|(s, _)| *s).collect();
        slots.extend(&self.plan.create);
        slots
    }

    /// The service whose network namespace this one joins (`NetworkMode::Service`), if any.
    pub(super) fn joins_namespace(&self) -> Option<&str> {
        match &self.template.service.container.network_mode {
            Some(NetworkMode::Service(owner)) => Some(owner),
            _ => None,
        }
    }

    /// The running instance whose network namespace the instance in `slot` joins: on the same
    /// host, preferably of the owner's configuration this template was tied to (its new
    /// instance, during a rollout of both), then in the same slot, then the first.
    async fn namespace_owner(&self, owner: &str, slot: u32) -> Result<Instance> {
        let host = self.template.host_for(slot);
        let mark = self.template.service.labels.get(label::NETWORK_OF);
        let mut running: Vec<Instance> = self
            .backend
            .list_instances(self.scope)
            .await?
            .into_iter()
            .filter(|i| i.service == owner && i.is_running())
            .filter(|i| host.is_none() || i.host.as_deref() == host)
            .collect();
        running.sort_by_key(|i| {
            let tied = mark.is_some_and(|m| *m == i.spec_hash || *m == format!("{}@{}", i.spec_hash, i.image_id));
            (!tied, i.slot != slot, i.slot)
        });
        running.into_iter().next().ok_or_else(|| {
            let on = host.map(|h| format!(" on host {h}")).unwrap_or_default();
            Error::backend(
                "create an instance",
                self.name(),
                format!(
                    "its network mode is service:{owner}, and `{owner}` has no running instance{on} whose namespace it could join"
                ),
            )
        })
    }

    /// Creates (does not start) one instance in `slot`.
    pub(super) async fn create(&self, slot: u32) -> Result<Created> {
        let name = instance_name(self.scope, self.name(), slot);
        let mut spec = self.template.instance(self.scope, slot, name.clone());
        if self.template.service.keep_anonymous_volumes {
            spec.inherit_volumes_from =
                self.plan.replace.iter().find(|(s, _)| *s == slot).map(|(_, old)| old.id.clone());
        }
        if let Some(owner) = self.joins_namespace() {
            let joined = self.namespace_owner(owner, slot).await?;
            spec.container.network_mode = Some(NetworkMode::Container(joined.id));
        }
        let runtime = self.instances()?;
        let id = runtime.create_instance(&spec).await?;
        let prepared =
            if let Err(e) = super::files::write(self.backend, self.name(), &id, &self.template.service.files).await {
                Err(e)
            } else if self.traffic.is_proxy(self.name()) {
                self.traffic.prepare_proxy(&id, self.template.host_for(slot)).await
            } else if self.traffic.is_front(self.name()) {
                self.traffic.prepare_front(&id).await
            } else {
                Ok(())
            };
        if let Err(e) = prepared {
            let _ = runtime.remove_instance(&id).await;
            return Err(e);
        }
        self.sink.emit(EventKind::InstanceCreated { service: self.name().to_string(), instance: name.clone() });
        Ok(Created { id, name, slot })
    }

    /// Starts a created instance and reads it back (its address is needed for probes).
    pub(super) async fn start(&self, c: &Created) -> Result<(Instance, Instant)> {
        let runtime = self.instances()?;
        if let Err(e) = runtime.start_instance(&c.id).await {
            let _ = runtime.remove_instance(&c.id).await;
            return Err(e);
        }
        let started = Instant::now();
        self.sink.emit(EventKind::InstanceStarted { service: self.name().to_string(), instance: c.name.clone() });
        let instance = self.backend.inspect_instance(&c.id).await?;
        Ok((instance, started))
    }
}
