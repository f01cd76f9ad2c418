//! Progress events: every step of an apply, as typed values the caller can consume as a stream.

use std::time::{Duration, SystemTime};

mod text;

use serde::Serialize;
use tokio::sync::mpsc;

/// One step of an apply or down, with when it happened and in which environment.
///
/// Serializes as one flat object (the [JSON shape](crate::json)):
/// `{"at": "2026-12-05T10:00:00.123Z", "environment": "shop-staging", "kind": "instance_created",
/// "service": "api", "instance": "shop-staging-api-1-…"}`. Its `Display` is a line for people.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// When it happened.
    #[serde(serialize_with = "crate::json::rfc3339")]
    pub at: SystemTime,
    /// `project-environment`.
    pub environment: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Never contains a secret value. Serializes with its variant's name in `kind`
/// (`"kind": "rollout_batch"`), durations in `…_ms` fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The plan was computed.
    Planned {
        /// Services to create.
        create: usize,
        /// Services to replace.
        replace: usize,
        /// Services to scale.
        scale: usize,
        /// Services (or orphans) to remove.
        remove: usize,
        /// Services left as they are.
        unchanged: usize,
    },
    /// An image pull made progress (at most every 200 ms per image).
    ImagePulling {
        /// The reference being pulled.
        reference: String,
        /// The services that use it.
        services: Vec<String>,
        /// Bytes and layers so far.
        progress: crate::registry::PullProgress,
    },
    /// An image was pulled from its registry.
    ImagePulled {
        /// The reference pulled.
        reference: String,
        /// The services that use it.
        services: Vec<String>,
        /// The image ID it resolved to.
        image_id: String,
        /// Its registry digest (`sha256:…`), as the plan and revisions record it.
        digest: Option<String>,
        /// The digest the engine's copy had before, when the tag now points elsewhere.
        replaced: Option<String>,
        /// How long the pull took (`took_ms`).
        #[serde(rename = "took_ms", serialize_with = "crate::json::millis")]
        took: std::time::Duration,
    },
    /// A built image was pushed to its registry.
    ImagePushed {
        /// The reference pushed.
        reference: String,
        /// Its digest in the registry.
        digest: String,
    },
    /// An image was built for a service.
    ImageBuilt {
        /// The service.
        service: String,
        /// The tag.
        tag: String,
        /// The image ID.
        image_id: String,
    },
    /// The environment network was created.
    NetworkCreated {
        /// Its name.
        name: String,
    },
    /// A named volume was created.
    VolumeCreated {
        /// Its engine-side name.
        name: String,
    },
    /// An instance was created.
    InstanceCreated {
        /// The service.
        service: String,
        /// The container name.
        instance: String,
    },
    /// An instance was started.
    InstanceStarted {
        /// The service.
        service: String,
        /// The container name.
        instance: String,
    },
    /// A probe failed (reported on the first failure and when what it sees changes).
    ProbeFailed {
        /// The service.
        service: String,
        /// The container name.
        instance: String,
        /// What the probe saw.
        detail: String,
    },
    /// A probe passed.
    ProbePassed {
        /// The service.
        service: String,
        /// The container name.
        instance: String,
        /// What the probe saw.
        detail: String,
    },
    /// An instance passed its health gate.
    InstanceHealthy {
        /// The service.
        service: String,
        /// The container name.
        instance: String,
        /// Time from start to healthy (`after_ms`).
        #[serde(rename = "after_ms", serialize_with = "crate::json::millis")]
        after: Duration,
    },
    /// Every instance of a service meets its gate; dependents waiting for it may start.
    ServiceReady {
        /// The service.
        service: String,
    },
    /// A service was already as described; nothing was touched.
    ServiceUnchanged {
        /// The service.
        service: String,
    },
    /// A job's container exited.
    JobExited {
        /// The job.
        service: String,
        /// The container name.
        instance: String,
        /// Exit code.
        exit_code: i64,
    },
    /// An instance was stopped.
    InstanceStopped {
        /// The service.
        service: String,
        /// The container name.
        instance: String,
    },
    /// An instance was removed.
    InstanceRemoved {
        /// The service.
        service: String,
        /// The container name.
        instance: String,
    },
    /// A rolling update started a batch.
    RolloutBatch {
        /// The service.
        service: String,
        /// 1-based batch number.
        batch: u32,
        /// Number of batches.
        of: u32,
        /// The slots replaced in this batch.
        slots: Vec<u32>,
    },
    /// A target that rolls out by itself (a swarm) reported where its rollout of a service is;
    /// emitted when it changes.
    TargetRollout {
        /// The service.
        service: String,
        /// Replicas on the new version.
        updated: u32,
        /// Replicas wanted.
        total: u32,
        /// What the target says.
        message: String,
    },
    /// The target answered a call with a transient failure (rate limited, a 5xx answer, no answer
    /// in time) and the library retries it after a pause.
    TargetRetried {
        /// The call, such as `POST /apps/shop/machines`.
        call: String,
        /// What the target answered (`429 Too Many Requests: …`).
        reason: String,
        /// 1-based number of the retry.
        attempt: u32,
        /// The pause before the retry (`after_ms`).
        #[serde(rename = "after_ms", serialize_with = "crate::json::millis")]
        after: std::time::Duration,
    },
    /// The instances that receive a service's traffic changed (through the ingress).
    RotationChanged {
        /// The service.
        service: String,
        /// Instances now in rotation, with their weights (`[{"instance": …, "weight": …}]`).
        #[serde(serialize_with = "rotation_members")]
        members: Vec<(String, u32)>,
    },
    /// A rollout ended; the outcome says how.
    RolloutFinished {
        /// The service.
        service: String,
        /// How it ended.
        outcome: RolloutOutcome,
    },
    /// A service's old instances were replaced by new ones.
    ServiceReplaced {
        /// The service.
        service: String,
        /// The old containers.
        old: Vec<String>,
        /// The new containers.
        new: Vec<String>,
    },
    /// A service no longer in the description was removed.
    ServiceRemoved {
        /// The service.
        service: String,
    },
    /// A service failed; the error says why.
    ServiceFailed {
        /// The service.
        service: String,
        /// The error message.
        error: String,
    },
    /// A service was not started because a dependency failed.
    ServiceSkipped {
        /// The service.
        service: String,
        /// The dependency that failed.
        because: String,
    },
    /// Another deploy holds the environment's lock; this one waits (up to the lock timeout).
    WaitingForLock {
        /// Who holds it, where and since when.
        holder: String,
    },
    /// A lock left by a process that is gone (or past its expiry) was removed.
    LockRecovered {
        /// Who had held it.
        holder: String,
    },
    /// The environment's state store (revisions, audit trail, waiting promotions, finished jobs)
    /// was found removed while its containers ran; a new one starts, and the audit trail notes it.
    StateLost {
        /// What was lost, and how it was noticed.
        detail: String,
    },
    /// A rollout stopped to wait for a promotion.
    AwaitingPromotion {
        /// The service.
        service: String,
        /// The new set's share of the traffic, in percent.
        weight: u8,
    },
    /// A revision of a service was recorded on the target.
    RevisionRecorded {
        /// The service.
        service: String,
        /// Its number.
        revision: u64,
    },
    /// The apply finished successfully.
    Applied {
        /// How long it took (`took_ms`).
        #[serde(rename = "took_ms", serialize_with = "crate::json::millis")]
        took: Duration,
    },
}

fn rotation_members<S: serde::Serializer>(members: &[(String, u32)], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Member<'a> {
        instance: &'a str,
        weight: u32,
    }
    s.collect_seq(members.iter().map(|(instance, weight)| Member { instance, weight: *weight }))
}

/// Where the engine sends events: to tracing always, and to the caller's channel if there is one.
#[derive(Clone, Debug)]
pub(crate) struct EventSink {
    environment: String,
    tx: Option<mpsc::UnboundedSender<Event>>,
}

tokio::task_local! {
    /// The sink of the operation running on this task, for what a target reports from below the
    /// engine (a retried call).
    static CURRENT: EventSink;
}

/// Runs `f` with `sink` as the operation's sink for [`emit_current`].
pub(crate) async fn with_sink<F: std::future::Future>(sink: EventSink, f: F) -> F::Output {
    CURRENT.scope(sink, f).await
}

/// Emits `kind` on the sink of the operation running on this task; outside one, it is only traced.
pub(crate) fn emit_current(kind: EventKind) {
    if CURRENT.try_with(|s| s.emit(kind.clone())).is_err() {
        let kind = kind.scrubbed();
        tracing::info!(event = kind.name(), service = kind.service().unwrap_or(""), "{kind}");
    }
}

impl EventSink {
    pub(crate) fn new(environment: String, tx: Option<mpsc::UnboundedSender<Event>>) -> Self {
        EventSink { environment, tx }
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        let kind = kind.scrubbed();
        // Structured fields (`event`, `environment`, `service`), the line for people as the message.
        let (event, environment, service) = (kind.name(), self.environment.as_str(), kind.service().unwrap_or(""));
        match &kind {
            EventKind::ProbeFailed { .. } | EventKind::ProbePassed { .. } | EventKind::ImagePulling { .. } => {
                tracing::debug!(event, environment, service, "{kind}")
            }
            EventKind::ServiceFailed { .. } => tracing::warn!(event, environment, service, "{kind}"),
            _ => tracing::info!(event, environment, service, "{kind}"),
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event { at: SystemTime::now(), environment: self.environment.clone(), kind });
        }
    }
}

impl EventKind {
    /// The same event with every known secret value scrubbed from its text ([`crate::scrub`]).
    fn scrubbed(mut self) -> EventKind {
        use crate::scrub::in_place;
        match &mut self {
            EventKind::ProbeFailed { detail, .. }
            | EventKind::ProbePassed { detail, .. }
            | EventKind::StateLost { detail } => in_place(detail),
            EventKind::ServiceFailed { error, .. }
            | EventKind::TargetRollout { message: error, .. }
            | EventKind::TargetRetried { reason: error, .. } => in_place(error),
            EventKind::WaitingForLock { holder } | EventKind::LockRecovered { holder } => in_place(holder),
            EventKind::RolloutFinished { outcome, .. } => outcome.scrub(),
            _ => {}
        }
        self
    }
}

impl RolloutOutcome {
    fn scrub(&mut self) {
        match self {
            RolloutOutcome::RolledBack { reason }
            | RolloutOutcome::Paused { reason }
            | RolloutOutcome::Failed { reason } => crate::scrub::in_place(reason),
            _ => {}
        }
    }
}

/// How a service's rollout ended. Only `Succeeded` and `Unchanged` mean the new description runs.
/// Serializes as `{"kind": "rolled_back", "reason": "…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RolloutOutcome {
    /// Every instance runs the new revision and is in rotation.
    Succeeded,
    /// Nothing needed to change.
    Unchanged,
    /// The new set runs beside the old one and gets `weight` % of the traffic (0 for blue/green),
    /// waiting for [`Environment::promote`](crate::Environment::promote) or
    /// [`Environment::abort_promotion`](crate::Environment::abort_promotion).
    AwaitingPromotion {
        /// The new set's share of the traffic, in percent.
        weight: u8,
    },
    /// The new revision failed and the previous one was put back; the reason says why.
    RolledBack {
        /// The failure, as a message.
        reason: String,
    },
    /// Stopped part-way (`OnFailure::Pause`).
    Paused {
        /// The failure, as a message.
        reason: String,
    },
    /// Failed without a rollback (`OnFailure::Fail`, or a rollback that itself failed).
    Failed {
        /// The failure, as a message.
        reason: String,
    },
}
