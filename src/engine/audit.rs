//! The audit trail: one record on the target per apply, rollback and promotion (when, what, by
//! whom if the caller says, which revisions it recorded, and how it ended). The newest
//! [`KEEP`] entries per environment are kept.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::{Backend, NewRecord, Record, Scope};
use crate::error::Result;

/// The record kind of audit entries.
pub(crate) const KIND: &str = "audit";
/// Audit entries kept per environment.
pub const KEEP: usize = 100;

/// One deploy, rollback or promotion, as the audit trail holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When it started.
    pub at: SystemTime,
    /// How long it took.
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
}

impl AuditEntry {
    fn from_record(r: &Record) -> AuditEntry {
        let get = |k: &str| r.data.get(k).cloned().unwrap_or_default();
        AuditEntry {
            at: UNIX_EPOCH + Duration::from_millis(get("at").parse().unwrap_or(0)),
            took: Duration::from_millis(get("took_ms").parse().unwrap_or(0)),
            operation: get("operation"),
            actor: r.data.get("actor").cloned(),
            host: get("host"),
            revisions: get("revisions")
                .split(',')
                .filter_map(|p| p.split_once('='))
                .filter_map(|(s, n)| Some((s.to_string(), n.parse().ok()?)))
                .collect(),
            error: r.data.get("error").cloned(),
        }
    }
}

/// Writes one entry and prunes the oldest beyond [`KEEP`].
pub(crate) async fn write(backend: &dyn Backend, scope: &Scope, entry: &AuditEntry) -> Result<()> {
    let at = entry.at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let mut data = BTreeMap::from([
        ("at".to_string(), at.to_string()),
        ("took_ms".to_string(), entry.took.as_millis().to_string()),
        ("operation".to_string(), entry.operation.clone()),
        ("host".to_string(), entry.host.clone()),
        (
            "revisions".to_string(),
            entry.revisions.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(","),
        ),
    ]);
    if let Some(a) = &entry.actor {
        data.insert("actor".into(), a.clone());
    }
    if let Some(e) = &entry.error {
        data.insert("error".into(), super::revisions::short(e));
    }
    let name = format!("{}-audit-{at}-{}", scope.qualified(), super::apply::nonce());
    backend.create_record(scope, &NewRecord { name, kind: KIND.into(), data, pin_image: None }).await?;
    let all = backend.list_records(scope, KIND).await?;
    let excess = all.len().saturating_sub(KEEP);
    for r in all.iter().take(excess) {
        backend.remove_record(&r.id).await?;
    }
    Ok(())
}

/// The environment's audit entries, oldest first.
pub(crate) async fn list(backend: &dyn Backend, scope: &Scope) -> Result<Vec<AuditEntry>> {
    let mut out: Vec<AuditEntry> =
        backend.list_records(scope, KIND).await?.iter().map(AuditEntry::from_record).collect();
    out.sort_by_key(|e| e.at);
    Ok(out)
}
