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

/// A point in time as RFC 3339 in UTC with milliseconds; before 1970 as the epoch.
pub(crate) fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let t = if *t < SystemTime::UNIX_EPOCH { SystemTime::UNIX_EPOCH } else { *t };
    s.collect_str(&humantime::format_rfc3339_millis(t))
}

/// A duration for people: `1.5s`, `250ms`, `2m 30s`, `0s`.
pub(crate) fn human(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    if d < Duration::from_secs(60) && d.subsec_millis() != 0 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(90)), "1m 30s");
        assert_eq!(human(Duration::from_secs(30)), "30s");
    }
}
