//! When previews go: a time to live from creation, an idle expiry from the last deploy, and a
//! maximum number alive at once (the oldest goes first). Pure decisions, carried out in `ops.rs`.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::PreviewInfo;

/// How long previews live, and how many may ([`PreviewsBuilder`](super::PreviewsBuilder)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub(crate) ttl: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) max_live: Option<usize>,
}

/// Why a preview is (or would be) removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum RemovalReason {
    /// It lived longer than the time to live.
    Expired {
        /// Its age, in seconds.
        age_s: u64,
        /// The time to live, in seconds.
        ttl_s: u64,
    },
    /// Nothing was deployed to it for longer than the idle expiry.
    Idle {
        /// Seconds since its last deploy.
        idle_s: u64,
        /// The idle expiry, in seconds.
        limit_s: u64,
    },
    /// More previews than the maximum would be alive: the oldest go first.
    OverLimit {
        /// The maximum.
        max_live: usize,
    },
    /// Asked for by name ([`Previews::down`](super::Previews::down)).
    Requested,
}

/// A preview removed, or that an operation would remove, and why. Serializes as
/// `{"name": "pr-3", "reason": {"kind": "over_limit", "max_live": 10}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// The preview's name.
    pub name: String,
    /// Why.
    pub reason: RemovalReason,
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "remove preview {}: ", self.name)?;
        match &self.reason {
            RemovalReason::Expired { age_s, ttl_s } => {
                write!(f, "{} old, its time to live is {}", human(*age_s), human(*ttl_s))
            }
            RemovalReason::Idle { idle_s, limit_s } => {
                write!(f, "nothing deployed for {}, its idle expiry is {}", human(*idle_s), human(*limit_s))
            }
            RemovalReason::OverLimit { max_live } => {
                write!(f, "the oldest preview, and at most {max_live} may be alive")
            }
            RemovalReason::Requested => f.write_str("asked for"),
        }
    }
}

/// `90 s`, `5 min`, `3 h`, `2 d`: whole units, rounded down.
fn human(s: u64) -> String {
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

impl Lifetime {
    /// When a preview created at `created` and last deployed at `last` expires, if ever.
    pub(crate) fn expires(&self, created: SystemTime, last: SystemTime) -> Option<SystemTime> {
        let by_ttl = self.ttl.and_then(|t| created.checked_add(t));
        let by_idle = self.idle.and_then(|t| last.checked_add(t));
        match (by_ttl, by_idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Which of `live` go at `now`: the expired and idle ones, then, if `adding` a preview not
    /// among them, or if more than the maximum are alive, the oldest of the rest beyond the
    /// maximum. `keep` (the preview being deployed) is never chosen.
    pub(crate) fn removals(
        &self,
        live: &[PreviewInfo],
        now: SystemTime,
        keep: Option<&str>,
        adding: bool,
    ) -> Vec<Removal> {
        let mut out = Vec::new();
        let mut rest: Vec<&PreviewInfo> = Vec::new();
        for p in live {
            if Some(p.name.as_str()) == keep {
                continue;
            }
            let age = now.duration_since(p.created).unwrap_or_default();
            let idle = now.duration_since(p.last_deploy).unwrap_or_default();
            let reason = match (self.ttl, self.idle) {
                (Some(ttl), _) if age >= ttl => {
                    Some(RemovalReason::Expired { age_s: age.as_secs(), ttl_s: ttl.as_secs() })
                }
                (_, Some(limit)) if idle >= limit => {
                    Some(RemovalReason::Idle { idle_s: idle.as_secs(), limit_s: limit.as_secs() })
                }
                _ => None,
            };
            match reason {
                Some(reason) => out.push(Removal { name: p.name.clone(), reason }),
                None => rest.push(p),
            }
        }
        if let Some(max) = self.max_live {
            let kept = live.iter().filter(|p| Some(p.name.as_str()) == keep).count();
            let alive = rest.len().saturating_add(kept).saturating_add(usize::from(adding));
            let excess = alive.saturating_sub(max);
            rest.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
            for p in rest.into_iter().take(excess) {
                out.push(Removal { name: p.name.clone(), reason: RemovalReason::OverLimit { max_live: max } });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, created_ago: u64, deployed_ago: u64, now: SystemTime) -> PreviewInfo {
        PreviewInfo {
            name: name.into(),
            hosts: vec![],
            created: now - Duration::from_secs(created_ago),
            last_deploy: now - Duration::from_secs(deployed_ago),
            expires: None,
            source_digest: String::new(),
        }
    }

    #[test]
    fn expired_idle_and_the_oldest_beyond_the_maximum_go() {
        let now = SystemTime::now();
        let live = [info("a", 500, 10, now), info("b", 50, 40, now), info("c", 30, 30, now), info("d", 20, 1, now)];
        let l =
            Lifetime { ttl: Some(Duration::from_secs(400)), idle: Some(Duration::from_secs(35)), max_live: Some(2) };
        let r = l.removals(&live, now, Some("d"), false);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "{r:?}");
        assert!(matches!(r[0].reason, RemovalReason::Expired { ttl_s: 400, .. }));
        assert!(matches!(r[1].reason, RemovalReason::Idle { limit_s: 35, .. }));
        // Adding a fifth with a maximum of 2: c goes too (d is the one being deployed... not here).
        let r = l.removals(&live, now, Some("e"), true);
        assert_eq!(r.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(r[2].to_string().contains("oldest"), "{}", r[2]);
        // No limits: nothing goes.
        assert!(Lifetime::default().removals(&live, now, None, true).is_empty());
    }

    #[test]
    fn expiry_is_the_earlier_of_ttl_and_idle() {
        let now = SystemTime::now();
        let l = Lifetime { ttl: Some(Duration::from_secs(100)), idle: Some(Duration::from_secs(10)), max_live: None };
        assert_eq!(l.expires(now, now), now.checked_add(Duration::from_secs(10)));
        assert_eq!(Lifetime::default().expires(now, now), None);
        assert_eq!(human(90), "90 s");
        assert_eq!(human(3 * 86_400), "3 d");
    }
}
