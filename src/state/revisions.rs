//! Revisions: every apply records, per service, what it rolled out (image ID and the whole container
//! configuration, secret references but never their values), in the environment's state store.
//! [`Environment::history`](crate::Environment::history) lists them;
//! [`Environment::rollback`](crate::Environment::rollback) restores one with the service's rollout.
//!
//! Revisions are immutable: a rollback records a new revision (same content as the one it went back
//! to, origin `rollback to revision N`), as `kubectl rollout undo` does.
//!
//! The image of every revision that can still be rolled back to is kept on the target
//! ([`ImageStore::keep_image`](crate::backend::ImageStore::keep_image)) from the moment a newer revision replaces
//! it, so `docker system prune -a` does not take it away; images no kept revision needs are dropped.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::document::{now_ms, RevisionRecord};
use super::Store;
use crate::backend::Instance;
use crate::error::Result;
use crate::events::RolloutOutcome;
use crate::plan::spec::{describe_changes, Template};

/// One recorded revision of a service, as [`Environment::history`](crate::Environment::history)
/// lists it. Serializes with `at` in RFC 3339 (the [JSON shape](crate::json)).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Revision {
    /// Its number, counting from 1 per service.
    pub number: u64,
    /// When it was rolled out.
    #[serde(serialize_with = "crate::json::rfc3339")]
    pub at: SystemTime,
    /// The image as described (a reference, or the build it came from).
    pub image: String,
    /// The image ID it ran (kept on the target while the revision is).
    pub image_id: String,
    /// The image pinned to the registry digest it resolved to (`postgres@sha256:…`), when it came
    /// from a registry (or was pushed to one): a rollback pulls exactly this if the target lost the
    /// image, whatever the tag points to now.
    pub image_pin: Option<String>,
    /// How its rollout ended.
    pub outcome: RolloutOutcome,
    /// What changed from the revision that ran before it (`env MODE changed`, `image changed`).
    pub changes: Vec<String>,
    /// `apply`, or `rollback to revision N`.
    pub origin: String,
    /// Who deployed it, if the caller said.
    pub actor: Option<String>,
    /// Whether the service's running instances are on this revision now.
    pub current: bool,
    #[serde(skip)]
    pub(crate) spec_json: String,
    #[serde(skip)]
    pub(crate) spec_hash: String,
}

impl Revision {
    fn from_record(r: &RevisionRecord) -> Revision {
        let reason = r.reason.clone();
        let outcome = match r.outcome.as_str() {
            "succeeded" => RolloutOutcome::Succeeded,
            "rolled back" => RolloutOutcome::RolledBack { reason },
            "paused" => RolloutOutcome::Paused { reason },
            _ => RolloutOutcome::Failed { reason },
        };
        Revision {
            number: r.number,
            at: UNIX_EPOCH.checked_add(Duration::from_millis(r.at_ms)).unwrap_or(UNIX_EPOCH),
            image: r.image.clone(),
            image_id: r.image_id.clone(),
            image_pin: r.image_pin.clone(),
            outcome,
            changes: r.changes.clone(),
            origin: r.origin.clone(),
            actor: r.actor.clone(),
            current: false,
            spec_json: r.spec.clone(),
            spec_hash: r.spec_hash.clone(),
        }
    }

    /// Whether instances of `template` would run this revision.
    fn is_version_of(&self, spec_hash: &str, image_id: &str) -> bool {
        self.spec_hash == spec_hash && self.image_id == image_id
    }

    fn succeeded(&self) -> bool {
        self.outcome == RolloutOutcome::Succeeded
    }
}

/// The service's revisions, oldest first, with `current` set from what runs.
pub(crate) async fn list(store: &Store<'_>, service: &str, running: &[Instance]) -> Vec<Revision> {
    let mut out: Vec<Revision> = store
        .read(|d| d.revisions.get(service).map(|v| v.iter().map(Revision::from_record).collect()).unwrap_or_default())
        .await;
    out.sort_by_key(|r| r.number);
    mark_current(&mut out, service, running);
    out
}

/// The newest revision matching the running instances is the current one.
fn mark_current(revisions: &mut [Revision], service: &str, running: &[Instance]) {
    let live = running.iter().find(|i| i.service == service && i.is_running());
    if let Some(i) = live {
        if let Some(r) = revisions.iter_mut().rev().find(|r| r.is_version_of(&i.spec_hash, &i.image_id)) {
            r.current = true;
        }
    }
}

/// The revision `rollback` goes to: the newest successful one before the current one that runs
/// something different.
pub(crate) fn previous(revisions: &[Revision]) -> Option<&Revision> {
    let current = revisions.iter().rposition(|r| r.current);
    let before = match current {
        Some(i) => revisions.get(..i).unwrap_or_default(),
        None => revisions,
    };
    let (hash, image) = match current.and_then(|i| revisions.get(i)) {
        Some(r) => (r.spec_hash.as_str(), r.image_id.as_str()),
        None => ("", ""),
    };
    before.iter().rev().find(|r| r.succeeded() && !r.is_version_of(hash, image))
}

/// The image a recorded revision of `service` ran under this image reference, newest first (to
/// restore an image whose tag a prune removed).
pub(crate) async fn image_of_reference(store: &Store<'_>, service: &str, reference: &str) -> Option<String> {
    store
        .read(|d| {
            d.revisions
                .get(service)
                .and_then(|v| v.iter().rev().find(|r| r.image == reference && r.outcome == "succeeded"))
                .map(|r| r.image_id.clone())
        })
        .await
}

/// What to record and keep.
pub(crate) struct Recorder {
    /// `apply` or `rollback to revision N`.
    pub(crate) origin: String,
    pub(crate) actor: Option<String>,
    /// Revisions kept per service.
    pub(crate) keep: usize,
    /// Revisions recorded in this operation, for the audit entry.
    pub(crate) recorded: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// A note for the revisions of services that had none because the store was lost.
    pub(crate) after_loss: bool,
}

fn outcome_label(o: &RolloutOutcome) -> (&'static str, &str) {
    match o {
        RolloutOutcome::Succeeded | RolloutOutcome::Unchanged => ("succeeded", ""),
        RolloutOutcome::RolledBack { reason } => ("rolled back", reason),
        RolloutOutcome::Paused { reason } => ("paused", reason),
        RolloutOutcome::AwaitingPromotion { .. } => ("paused", "awaiting promotion"),
        RolloutOutcome::Failed { reason } => ("failed", reason),
    }
}

/// A summary of an error for a record: its first line, at most 400 characters, scrubbed of secret
/// values.
pub(crate) fn short(text: &str) -> String {
    let text = crate::scrub::text(text);
    let first = text.lines().next().unwrap_or_default();
    match first.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", first.get(..i).unwrap_or_default()),
        None => first.to_string(),
    }
}

impl Recorder {
    /// Records the revision `template` rolled out with `outcome`, unless the newest revision is
    /// already this version, successfully. Then prunes to the newest `keep` plus the newest
    /// successful one, keeps the image of the revision this one replaces, and drops kept images
    /// no revision needs any more. Returns the new revision's number.
    pub(crate) async fn record(
        &self,
        store: &Store<'_>,
        template: &Template,
        outcome: &RolloutOutcome,
    ) -> Result<Option<u64>> {
        let service = template.service.name.as_str();
        let (label, reason) = outcome_label(outcome);
        let existing = list(store, service, &[]).await;
        if let Some(last) = existing.last() {
            if label == "succeeded" && last.succeeded() && last.is_version_of(&template.spec_hash, &template.image_id) {
                return Ok(None);
            }
        }
        let before = existing.iter().rev().find(|r| r.succeeded());
        let mut changes = match before {
            None if self.after_loss => vec!["first revision since the state store was lost".to_string()],
            None => vec!["first revision".to_string()],
            Some(b) => {
                let mut c = Vec::new();
                if b.image_id != template.image_id {
                    c.push(format!("image {} -> {}", short_id(&b.image_id), short_id(&template.image_id)));
                }
                if b.spec_hash != template.spec_hash {
                    c.extend(describe_changes(Some(&b.spec_json), &template.spec_json));
                }
                c
            }
        };
        if changes.is_empty() {
            changes.push("no change".into());
        }
        // A successful rollout replaced the image `before` ran: keep it, so that a rollback to it
        // works after `docker system prune -a` (it was in use until a moment ago: it is here).
        let superseded = before
            .filter(|b| label == "succeeded" && b.image_id != template.image_id)
            .map(|b| b.image_id.clone())
            .filter(|id| !id.is_empty());
        if let (Some(id), Some(images), false) = (&superseded, store.backend().images(), store.is_ephemeral()) {
            if !store.read(|d| d.kept_images.contains(id)).await {
                if let Err(e) = images.keep_image(store.scope(), id).await {
                    tracing::warn!(service, image = %id, error = %e, "could not keep the replaced image; a prune may remove it");
                }
            }
        }
        let image = match &template.service.image {
            crate::model::ImageSource::Reference(r) => r.clone(),
            crate::model::ImageSource::Build(b) => format!("built from {}", b.context.display()),
        };
        let record = RevisionRecord {
            number: existing.last().map_or(1, |r| r.number.saturating_add(1)),
            at_ms: now_ms(),
            image,
            image_id: template.image_id.clone(),
            spec: template.spec_json.clone(),
            spec_hash: template.spec_hash.clone(),
            outcome: label.to_string(),
            reason: short(reason),
            changes,
            origin: self.origin.clone(),
            actor: self.actor.clone(),
            image_pin: template.image_pin.clone(),
        };
        let number = record.number;
        let keep = self.keep;
        let dropped = store
            .update(|d| {
                let list = d.revisions.entry(service.to_string()).or_default();
                list.push(record);
                let numbers: Vec<(u64, bool)> = list.iter().map(|r| (r.number, r.outcome == "succeeded")).collect();
                let kept = retained(&numbers, keep);
                list.retain(|r| kept.contains(&r.number));
                if let Some(id) = superseded {
                    if !d.kept_images.contains(&id) {
                        d.kept_images.push(id);
                    }
                }
                // Images only revisions that are gone needed.
                let needed: BTreeSet<&String> = d.revisions.values().flatten().map(|r| &r.image_id).collect();
                let (keep_these, drop_these): (Vec<String>, Vec<String>) =
                    d.kept_images.drain(..).partition(|id| needed.contains(id));
                d.kept_images = keep_these;
                drop_these
            })
            .await?;
        for id in dropped.into_iter().filter(|_| store.backend().images().is_some()) {
            let Some(images) = store.backend().images() else { break };
            if let Err(e) = images.drop_image(store.scope(), &id).await {
                tracing::warn!(image = %id, error = %e, "could not drop a kept image no revision needs");
            }
        }
        if let Ok(mut m) = self.recorded.lock() {
            m.insert(service.to_string(), number);
        }
        Ok(Some(number))
    }
}

/// Which revision numbers to keep: the newest `keep`, plus the newest successful one.
pub(crate) fn retained(revisions: &[(u64, bool)], keep: usize) -> Vec<u64> {
    let mut sorted: Vec<(u64, bool)> = revisions.to_vec();
    sorted.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut out: Vec<u64> = sorted.iter().take(keep.max(1)).map(|(n, _)| *n).collect();
    if let Some((n, _)) = sorted.iter().find(|(_, ok)| *ok) {
        if !out.contains(n) {
            out.push(*n);
        }
    }
    out
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(number: u64, hash: &str, ok: bool, current: bool) -> Revision {
        Revision {
            number,
            at: UNIX_EPOCH,
            image: "img".into(),
            image_id: "sha256:1".into(),
            image_pin: None,
            outcome: if ok { RolloutOutcome::Succeeded } else { RolloutOutcome::RolledBack { reason: "x".into() } },
            changes: vec![],
            origin: "apply".into(),
            actor: None,
            current,
            spec_json: "{}".into(),
            spec_hash: hash.into(),
        }
    }

    #[test]
    fn rollback_goes_to_the_newest_earlier_success_that_differs() {
        // 1 ok (a), 2 ok (b), 3 rolled back (c), 4 ok (b again), current = 4.
        let revs = vec![
            rev(1, "a", true, false),
            rev(2, "b", true, false),
            rev(3, "c", false, false),
            rev(4, "b", true, true),
        ];
        assert_eq!(previous(&revs).map(|r| r.number), Some(1), "skips the failed 3 and the identical 2");
        let none = vec![rev(1, "a", true, true)];
        assert!(previous(&none).is_none());
        // Nothing current (the running version was never recorded): the newest success.
        let unknown = vec![rev(1, "a", true, false), rev(2, "b", true, false)];
        assert_eq!(previous(&unknown).map(|r| r.number), Some(2));
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_last_success() {
        let revs = [(1, true), (2, true), (3, false), (4, false), (5, false)];
        assert_eq!(retained(&revs, 2), vec![5, 4, 2]);
        assert_eq!(retained(&revs, 5), vec![5, 4, 3, 2, 1]);
        assert_eq!(retained(&[(7, true)], 0), vec![7], "at least one is kept");
    }

    #[test]
    fn short_reasons_fit_in_a_record() {
        let long = "x".repeat(1000) + "\nsecond line";
        let s = short(&long);
        assert!(s.chars().count() <= 401 && !s.contains("second"));
        assert_eq!(short(&"é".repeat(500)).chars().count(), 401, "cut on a character boundary");
    }
}
