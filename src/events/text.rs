//! Events as lines for people: the `Display` of [`Event`], [`EventKind`] and [`RolloutOutcome`].
//! No Debug formatting, no secret values (events carry none).

use std::fmt;

use super::{Event, EventKind, RolloutOutcome};
use crate::duration::human;

impl fmt::Display for Event {
    /// `shop-staging: api: instance shop-staging-api-1-… started`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.environment, self.kind)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EventKind::*;
        match self {
            Planned { create, replace, scale, remove, unchanged } => write!(
                f,
                "planned: {create} to create, {replace} to replace, {scale} to scale, {remove} to remove, {unchanged} unchanged"
            ),
            ImagePulling { reference, progress, .. } => {
                write!(f, "pulling {reference}: {} of {} bytes", progress.done, progress.total)?;
                write!(f, ", {} of {} layers", progress.layers_done, progress.layers)
            }
            ImagePulled { reference, services, took, .. } => {
                write!(f, "pulled {reference} for {} in {}", services.join(", "), human(*took))
            }
            ImagePushed { reference, digest } => write!(f, "pushed {reference} ({digest})"),
            ImageBuilt { service, tag, .. } => write!(f, "{service}: built {tag}"),
            NetworkCreated { name } => write!(f, "network {name} created"),
            VolumeCreated { name } => write!(f, "volume {name} created"),
            InstanceCreated { service, instance } => write!(f, "{service}: instance {instance} created"),
            InstanceStarted { service, instance } => write!(f, "{service}: instance {instance} started"),
            ProbeFailed { service, instance, detail } => write!(f, "{service}: {instance} probe failed: {detail}"),
            ProbePassed { service, instance, detail } => write!(f, "{service}: {instance} probe passed: {detail}"),
            InstanceHealthy { service, instance, after } => {
                write!(f, "{service}: instance {instance} healthy after {}", human(*after))
            }
            ServiceReady { service } => write!(f, "{service}: ready"),
            ServiceUnchanged { service } => write!(f, "{service}: unchanged"),
            JobExited { service, instance, exit_code } => {
                write!(f, "{service}: job {instance} exited with code {exit_code}")
            }
            InstanceStopped { service, instance } => write!(f, "{service}: instance {instance} stopped"),
            InstanceRemoved { service, instance } => write!(f, "{service}: instance {instance} removed"),
            RolloutBatch { service, batch, of, slots } => {
                let slots: Vec<String> = slots.iter().map(u32::to_string).collect();
                write!(f, "{service}: batch {batch} of {of} (slots {})", slots.join(", "))
            }
            TargetRollout { service, updated, total, message } => {
                write!(f, "{service}: {updated} of {total} updated by the target")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            TargetRetried { call, reason, attempt, after } => {
                write!(f, "{call}: {reason}; retry {attempt} in {}", human(*after))
            }
            RotationChanged { service, members } => {
                let m: Vec<String> = members.iter().map(|(i, w)| format!("{i} ({w})")).collect();
                if m.is_empty() {
                    write!(f, "{service}: no instance in rotation")
                } else {
                    write!(f, "{service}: in rotation: {}", m.join(", "))
                }
            }
            RolloutFinished { service, outcome } => write!(f, "{service}: rollout {outcome}"),
            ServiceReplaced { service, old, new } => {
                write!(f, "{service}: replaced {} by {}", list(old), list(new))
            }
            ServiceRemoved { service } => write!(f, "{service}: removed"),
            ServiceFailed { service, error } => write!(f, "{service}: failed: {error}"),
            ServiceSkipped { service, because } => write!(f, "{service}: skipped: {because} failed"),
            WaitingForLock { holder } => write!(f, "waiting for the deploy lock held by {holder}"),
            LockRecovered { holder } => write!(f, "recovered the deploy lock left by {holder}"),
            StateLost { detail } => write!(f, "state store lost: {detail}"),
            AwaitingPromotion { service, weight } => {
                write!(f, "{service}: awaiting promotion with {weight}% of the traffic")
            }
            RevisionRecorded { service, revision } => write!(f, "{service}: revision {revision} recorded"),
            Applied { took } => write!(f, "applied in {}", human(*took)),
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

impl fmt::Display for RolloutOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutOutcome::Succeeded => f.write_str("succeeded"),
            RolloutOutcome::Unchanged => f.write_str("unchanged"),
            RolloutOutcome::AwaitingPromotion { weight } => write!(f, "awaiting promotion at {weight}%"),
            RolloutOutcome::RolledBack { reason } => write!(f, "rolled back: {reason}"),
            RolloutOutcome::Paused { reason } => write!(f, "paused: {reason}"),
            RolloutOutcome::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

impl EventKind {
    /// The variant's name as in the JSON `kind` field (`instance_created`).
    pub fn name(&self) -> &'static str {
        use EventKind::*;
        match self {
            Planned { .. } => "planned",
            ImagePulling { .. } => "image_pulling",
            ImagePulled { .. } => "image_pulled",
            ImagePushed { .. } => "image_pushed",
            ImageBuilt { .. } => "image_built",
            NetworkCreated { .. } => "network_created",
            VolumeCreated { .. } => "volume_created",
            InstanceCreated { .. } => "instance_created",
            InstanceStarted { .. } => "instance_started",
            ProbeFailed { .. } => "probe_failed",
            ProbePassed { .. } => "probe_passed",
            InstanceHealthy { .. } => "instance_healthy",
            ServiceReady { .. } => "service_ready",
            ServiceUnchanged { .. } => "service_unchanged",
            JobExited { .. } => "job_exited",
            InstanceStopped { .. } => "instance_stopped",
            InstanceRemoved { .. } => "instance_removed",
            RolloutBatch { .. } => "rollout_batch",
            TargetRollout { .. } => "target_rollout",
            TargetRetried { .. } => "target_retried",
            RotationChanged { .. } => "rotation_changed",
            RolloutFinished { .. } => "rollout_finished",
            ServiceReplaced { .. } => "service_replaced",
            ServiceRemoved { .. } => "service_removed",
            ServiceFailed { .. } => "service_failed",
            ServiceSkipped { .. } => "service_skipped",
            WaitingForLock { .. } => "waiting_for_lock",
            LockRecovered { .. } => "lock_recovered",
            StateLost { .. } => "state_lost",
            AwaitingPromotion { .. } => "awaiting_promotion",
            RevisionRecorded { .. } => "revision_recorded",
            Applied { .. } => "applied",
        }
    }

    /// The service the event is about, if it is about one.
    pub fn service(&self) -> Option<&str> {
        use EventKind::*;
        match self {
            ImageBuilt { service, .. }
            | InstanceCreated { service, .. }
            | InstanceStarted { service, .. }
            | ProbeFailed { service, .. }
            | ProbePassed { service, .. }
            | InstanceHealthy { service, .. }
            | ServiceReady { service }
            | ServiceUnchanged { service }
            | JobExited { service, .. }
            | InstanceStopped { service, .. }
            | InstanceRemoved { service, .. }
            | RolloutBatch { service, .. }
            | TargetRollout { service, .. }
            | RotationChanged { service, .. }
            | RolloutFinished { service, .. }
            | ServiceReplaced { service, .. }
            | ServiceRemoved { service }
            | ServiceFailed { service, .. }
            | ServiceSkipped { service, .. }
            | AwaitingPromotion { service, .. }
            | RevisionRecorded { service, .. } => Some(service),
            _ => None,
        }
    }
}
