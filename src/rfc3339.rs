//! RFC 3339 timestamps, read and written: the engine's (in UTC or with an offset,
//! `2026-11-22T22:05:44Z`, `2026-11-22T23:05:44.123456789+01:00`, as volumes, configs and
//! `/info` report them), and the library's own in its JSON output, lock holders and backup keys
//! (UTC, `2026-11-22T22:05:44.123Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn number(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `t` in UTC as `2026-11-22T22:05:44Z`, or with `millis` as `2026-11-22T22:05:44.123Z`; a time
/// before 1970 as the epoch.
pub(crate) fn format(t: SystemTime, millis: bool) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if millis {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", since.subsec_millis())
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// Parses an RFC 3339 timestamp; `None` if it is not one (or lies before 1970).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (year, month, day) = (number(d.next()?)?, number(d.next()?)?, number(d.next()?)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Time, then fraction, then zone.
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (time, zone) = rest.split_at(zone_at);
    let (clock, fraction) = match time.split_once('.') {
        Some((c, f)) => (c, f),
        None => (time, ""),
    };
    let mut c = clock.splitn(3, ':');
    let (h, mi, sec) = (number(c.next()?)?, number(c.next()?)?, number(c.next()?)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{digits:0<9}").parse().ok()?
    };
    let offset_secs = match zone {
        "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z.get(1..)?.split_once(':')?;
            let (oh, om) = (number(oh)?, number(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days_from_civil(year, month, day)
        .checked_mul(86_400)?
        .checked_add(h * 3600 + mi * 60 + sec)?
        .checked_sub(offset_secs)?;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets_and_fractions() {
        let base = parse_rfc3339("2026-11-22T22:05:44Z").unwrap();
        assert_eq!(base.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_795_385_144);
        assert_eq!(parse_rfc3339("2026-11-22T23:05:44+01:00"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-22T21:05:44-01:00"), Some(base));
        let frac = parse_rfc3339("2026-11-22T22:05:44.5Z").unwrap();
        assert_eq!(frac.duration_since(base).unwrap(), Duration::from_millis(500));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
    }

    #[test]
    fn formatted_times_read_back() {
        assert_eq!(format(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
        let t = parse_rfc3339("2026-02-28T23:59:59.125Z").unwrap();
        assert_eq!(format(t, true), "2026-02-28T23:59:59.125Z");
        assert_eq!(format(t, false), "2026-02-28T23:59:59Z");
        for secs in [0u64, 951_782_400, 1_709_164_800, 4_102_444_799, 1_795_385_144] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_rfc3339(&format(t, false)), Some(t), "{secs}");
        }
        assert_eq!(format(UNIX_EPOCH - Duration::from_secs(5), false), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-22T22:05:44",
            "1969-12-31T23:59:59Z",
            "2026-11-22T2é:05:44Z",
            "-1-1-1T1:1:1Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
