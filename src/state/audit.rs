//! The audit trail: one entry per apply, rollback and promotion (when, what, by whom if the caller
//! says, which revisions it recorded, and how it ended), in the environment's state store. The
//! newest [`KEEP`] entries are kept.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::document::AuditRecord;
use super::Store;
use crate::error::Result;

/// Audit entries kept per environment.
pub const KEEP: usize = 100;

/// One deploy, rollback or promotion, as the audit trail holds it. Serializes with `at` in
/// RFC 3339 and `took_ms` (the [JSON shape](crate::json)).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// When it started.
    #[serde(serialize_with = "crate::json::rfc3339")]
    pub at: SystemTime,
    /// How long it took.
    #[serde(rename = "took_ms", serialize_with = "crate::json::millis")]
    pub took: Duration,
    /// `apply`, `rollback of api to revision 3`, `promotion of web`.
    pub operation: String,
    /// Who, if the caller said ([`EnvironmentBuilder::actor`](crate::EnvironmentBuilder::actor)).
    pub actor: Option<String>,
    /// The host the deploying process ran on.
    pub host: String,
    /// The revisions it recorded, per service.
    pub revisions: BTreeMap<String, u64>,
    /// `None` if it succeeded; otherwise the first line of its error.
    pub error: Option<String>,
    /// What else happened worth knowing (such as a lost state store found and replaced).
    pub notes: Vec<String>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl AuditEntry {
    fn from_record(r: &AuditRecord) -> AuditEntry {
        AuditEntry {
            at: UNIX_EPOCH.checked_add(Duration::from_millis(r.at_ms)).unwrap_or(UNIX_EPOCH),
            took: Duration::from_millis(r.took_ms),
            operation: r.operation.clone(),
            actor: r.actor.clone(),
            host: r.host.clone(),
            revisions: r.revisions.clone(),
            error: r.error.clone(),
            notes: r.notes.clone(),
        }
    }

    fn to_record(&self) -> AuditRecord {
        AuditRecord {
            at_ms: millis(self.at.duration_since(UNIX_EPOCH).unwrap_or_default()),
            took_ms: millis(self.took),
            operation: self.operation.clone(),
            actor: self.actor.clone(),
            host: self.host.clone(),
            revisions: self.revisions.clone(),
            error: self.error.as_deref().map(super::revisions::short),
            notes: self.notes.clone(),
        }
    }
}

/// Writes one entry and drops the oldest beyond [`KEEP`].
pub(crate) async fn write(store: &Store<'_>, entry: &AuditEntry) -> Result<()> {
    let record = entry.to_record();
    store
        .update(|d| {
            d.audit.push(record);
            let excess = d.audit.len().saturating_sub(KEEP);
            d.audit.drain(..excess);
        })
        .await
}

/// The environment's audit entries, oldest first.
pub(crate) async fn list(store: &Store<'_>) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = store.read(|d| d.audit.iter().map(AuditEntry::from_record).collect()).await;
    out.sort_by_key(|e| e.at);
    out
}
