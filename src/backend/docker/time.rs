//! The engine's timestamps: RFC 3339, in UTC or with an offset (`2026-11-22T22:05:44Z`,
//! `2026-11-22T23:05:44.123456789+01:00`), as volumes and `/info` report them.

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
