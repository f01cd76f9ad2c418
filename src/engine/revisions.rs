//! Revisions: every apply records, per service, what it rolled out (image ID and the whole container
//! configuration, secret references but never their values) as a record on the target, pinning the
//! image so that pruning keeps it. [`Environment::history`](crate::Environment::history) lists them;
//! [`Environment::rollback`](crate::Environment::rollback) restores one with the service's rollout.
//!
//! Records are immutable: a rollback records a new revision (same content as the one it went back
//! to, origin `rollback to revision N`), as `kubectl rollout undo` does.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::events::RolloutOutcome;
use crate::backend::{Backend, Instance, NewRecord, Record, Scope};
use crate::error::Result;
use crate::plan::spec::{describe_changes, Template};

/// The record kind of revisions.
pub(crate) const KIND: &str = "revision";

/// One recorded revision of a service, as [`Environment::history`](crate::Environment::history)
/// lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// Its number, counting from 1 per service.
    pub number: u64,
    /// When it was rolled out.
    pub at: SystemTime,
    /// The image as described (a reference, or the build it came from).
    pub image: String,
    /// The image ID it ran (kept on the target while the revision is).
    pub image_id: String,
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
    pub(crate) spec_json: String,
    pub(crate) spec_hash: String,
}

impl Revision {
    fn from_record(r: &Record) -> Option<Revision> {
        let get = |k: &str| r.data.get(k).cloned().unwrap_or_default();
        let reason = get("reason");
        let outcome = match get("outcome").as_str() {
            "succeeded" => RolloutOutcome::Succeeded,
            "rolled back" => RolloutOutcome::RolledBack { reason },
            "paused" => RolloutOutcome::Paused { reason },
            _ => RolloutOutcome::Failed { reason },
        };
        Some(Revision {
            number: r.data.get("number")?.parse().ok()?,
            at: UNIX_EPOCH + Duration::from_millis(get("at").parse().unwrap_or(0)),
            image: get("image"),
            image_id: r.data.get("image_id")?.clone(),
            outcome,
            changes: get("changes").lines().map(str::to_string).filter(|l| !l.is_empty()).collect(),
            origin: get("origin"),
            actor: r.data.get("actor").cloned(),
            current: false,
            spec_json: r.data.get("spec")?.clone(),
            spec_hash: get("spec_hash"),
        })
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
pub(crate) async fn list(
    backend: &dyn Backend,
    scope: &Scope,
    service: &str,
    running: &[Instance],
) -> Result<Vec<Revision>> {
    let mut out: Vec<Revision> = backend
        .list_records(scope, KIND)
        .await?
        .iter()
        .filter(|r| r.data.get("service").map(String::as_str) == Some(service))
        .filter_map(Revision::from_record)
        .collect();
    out.sort_by_key(|r| r.number);
    // The newest revision matching the running instances is the current one.
    let live = running.iter().find(|i| i.service == service && i.is_running());
    if let Some(i) = live {
        if let Some(r) = out.iter_mut().rev().find(|r| r.is_version_of(&i.spec_hash, &i.image_id)) {
            r.current = true;
        }
    }
    Ok(out)
}

/// The revision `rollback` goes to: the newest successful one before the current one that runs
/// something different.
pub(crate) fn previous(revisions: &[Revision]) -> Option<&Revision> {
    let current = revisions.iter().rposition(|r| r.current);
    let before = match current {
        Some(i) => &revisions[..i],
        None => revisions,
    };
    let (hash, image) = match current {
        Some(i) => (revisions[i].spec_hash.as_str(), revisions[i].image_id.as_str()),
        None => ("", ""),
    };
    before.iter().rev().find(|r| r.succeeded() && !r.is_version_of(hash, image))
}

/// What to record and keep.
pub(crate) struct Recorder {
    /// `apply` or `rollback to revision N`.
    pub(crate) origin: String,
    pub(crate) actor: Option<String>,
    /// Revisions kept per service.
    pub(crate) keep: usize,
    /// Revisions recorded in this operation, for the audit entry.
    pub(crate) recorded: std::sync::Mutex<BTreeMap<String, u64>>,
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

/// A label-sized summary of an error: its first line, at most 400 characters.
pub(crate) fn short(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    match first.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &first[..i]),
        None => first.to_string(),
    }
}

impl Recorder {
    /// Records the revision `template` rolled out with `outcome`, unless the newest revision is
    /// already this version, successfully. Then prunes to the newest `keep` plus the newest
    /// successful one. Returns the new revision's number.
    pub(crate) async fn record(
        &self,
        backend: &dyn Backend,
        scope: &Scope,
        template: &Template,
        outcome: &RolloutOutcome,
    ) -> Result<Option<u64>> {
        let service = template.service.name.as_str();
        let existing = list(backend, scope, service, &[]).await?;
        let (label, reason) = outcome_label(outcome);
        if let Some(last) = existing.last() {
            if label == "succeeded" && last.succeeded() && last.is_version_of(&template.spec_hash, &template.image_id) {
                return Ok(None);
            }
        }
        let before = existing.iter().rev().find(|r| r.succeeded());
        let mut changes = match before {
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
        let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let image = match &template.service.image {
            crate::model::ImageSource::Reference(r) => r.clone(),
            crate::model::ImageSource::Build(b) => format!("built from {}", b.context.display()),
        };
        let first = existing.last().map_or(1, |r| r.number + 1);
        let mut data = BTreeMap::from([
            ("service".to_string(), service.to_string()),
            ("at".to_string(), at.to_string()),
            ("image".to_string(), image),
            ("image_id".to_string(), template.image_id.clone()),
            ("spec".to_string(), template.spec_json.clone()),
            ("spec_hash".to_string(), template.spec_hash.clone()),
            ("outcome".to_string(), label.to_string()),
            ("reason".to_string(), short(reason)),
            ("changes".to_string(), changes.join("\n")),
            ("origin".to_string(), self.origin.clone()),
        ]);
        if let Some(a) = &self.actor {
            data.insert("actor".into(), a.clone());
        }
        // Numbers are taken under the deploy lock; a clash (a record made by hand) moves on.
        for number in first..first + 5 {
            data.insert("number".into(), number.to_string());
            let record = NewRecord {
                name: format!("{}-rev-{service}-{number}", scope.qualified()),
                kind: KIND.into(),
                data: data.clone(),
                pin_image: Some(template.image_id.clone()),
            };
            if backend.create_record(scope, &record).await?.is_some() {
                if let Ok(mut m) = self.recorded.lock() {
                    m.insert(service.to_string(), number);
                }
                self.prune(backend, scope, service).await?;
                return Ok(Some(number));
            }
        }
        Ok(None)
    }

    async fn prune(&self, backend: &dyn Backend, scope: &Scope, service: &str) -> Result<()> {
        let all: Vec<(Record, Revision)> = backend
            .list_records(scope, KIND)
            .await?
            .into_iter()
            .filter(|r| r.data.get("service").map(String::as_str) == Some(service))
            .filter_map(|r| Revision::from_record(&r).map(|v| (r, v)))
            .collect();
        let numbers: Vec<(u64, bool)> = all.iter().map(|(_, v)| (v.number, v.succeeded())).collect();
        for (record, rev) in &all {
            if !retained(&numbers, self.keep).contains(&rev.number) {
                backend.remove_record(&record.id).await?;
            }
        }
        Ok(())
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
    &id[..id.len().min(12)]
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
    fn short_reasons_fit_in_a_label() {
        let long = "x".repeat(1000) + "\nsecond line";
        let s = short(&long);
        assert!(s.chars().count() <= 401 && !s.contains("second"));
    }
}
