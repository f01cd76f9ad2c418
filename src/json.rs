//! The JSON shape of what the library reports: [`Plan`](crate::Plan), [`Event`](crate::Event),
//! [`Status`](crate::Status), [`Deployment`](crate::Deployment), [`Revision`](crate::Revision),
//! [`AuditEntry`](crate::AuditEntry) and [`DownReport`](crate::DownReport) serialize with
//! `serde` into one stable shape, documented in `docs/json.md`:
//!
//! - field names and enum tags are `snake_case`; an enum is an object with a `kind` field
//!   (`{"kind": "replace", "instances": 2, …}`);
//! - durations are whole milliseconds in a field ending in `_ms` (`"took_ms": 1520`);
//! - points in time are RFC 3339 in UTC with milliseconds (`"at": "2026-12-05T10:00:00.123Z"`);
//! - secret values never appear (they are not in these types to begin with).
//!
//! New fields may be added; existing ones keep their name, type and meaning.

use std::time::{Duration, SystemTime};

use serde::Serializer;

/// A duration as whole milliseconds (saturating).
pub(crate) fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An optional time as RFC 3339, or `null`.
pub(crate) fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// A point in time as RFC 3339 in UTC with milliseconds; before 1970 as the epoch.
pub(crate) fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::rfc3339::format(*t, true))
}
