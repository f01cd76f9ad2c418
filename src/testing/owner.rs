//! Who owns a test environment, written on everything it creates, and the reaper's decision:
//! remove an environment only when it is a test environment and its owner is provably gone.

use std::collections::BTreeMap;

use crate::engine::FoundEnvironment;
use crate::process::{Identity, Liveness};

/// The mark every test environment carries; its owner's identity is under this prefix.
pub(crate) const TEST_MARK: &str = "io.harbormaster.test";
const OWNER_PREFIX: &str = "io.harbormaster.test.";

/// When a test environment whose owner cannot be judged from here may be removed anyway: Unix
/// seconds ([`TestEnvBuilder::expire_after`](super::TestEnvBuilder::expire_after)).
pub(crate) const EXPIRES: &str = "io.harbormaster.test-expires";

/// The expiry mark for an environment brought up now that may be reaped after `after`, when its
/// owner cannot be checked; `None` when that time is not representable.
pub(crate) fn expiry(now: std::time::SystemTime, after: std::time::Duration) -> Option<(String, String)> {
    let at = now.checked_add(after)?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((EXPIRES.to_string(), at.as_secs().to_string()))
}

/// The marks of an environment owned by this process.
pub(crate) fn marks() -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    crate::process::me().to_data(&mut data);
    let mut marks: BTreeMap<String, String> =
        data.into_iter().map(|(k, v)| (format!("{OWNER_PREFIX}{k}"), v)).collect();
    marks.insert(TEST_MARK.to_string(), "true".to_string());
    marks
}

/// What the reaper does with an environment it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a test environment: never touched.
    NotATest,
    /// Its owner runs (this process, or another that is alive): left alone.
    OwnerAlive,
    /// Its owner cannot be checked from here (another machine or PID namespace): left alone.
    OwnerUnknown(&'static str),
    /// Its owner is gone, or cannot be judged and its expiry has passed, for this reason: removed.
    Orphaned(&'static str),
}

/// The decision for one environment, from its labels and the time now.
pub(crate) fn verdict(env: &FoundEnvironment, now: std::time::SystemTime) -> Verdict {
    if env.labels.get(TEST_MARK).map(String::as_str) != Some("true") {
        return Verdict::NotATest;
    }
    let data: BTreeMap<String, String> = env
        .labels
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(OWNER_PREFIX).map(|k| (k.to_string(), v.clone())))
        .collect();
    let owner = Identity::from_data(&data);
    if owner.is_me() {
        return Verdict::OwnerAlive;
    }
    match owner.liveness() {
        Liveness::Alive => Verdict::OwnerAlive,
        Liveness::Unknown(_) if expired(env, now) => {
            Verdict::Orphaned("its owner cannot be checked from here and its expiry has passed")
        }
        Liveness::Unknown(why) => Verdict::OwnerUnknown(why),
        Liveness::Gone(why) => Verdict::Orphaned(why),
    }
}

/// Whether the environment carries an expiry, and it has passed.
fn expired(env: &FoundEnvironment, now: std::time::SystemTime) -> bool {
    let Some(at) = env.labels.get(EXPIRES).and_then(|v| v.parse::<u64>().ok()) else { return false };
    let Ok(now) = now.duration_since(std::time::UNIX_EPOCH) else { return false };
    now.as_secs() >= at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(labels: BTreeMap<String, String>) -> FoundEnvironment {
        FoundEnvironment { project: "p".into(), name: "e".into(), labels }
    }

    fn verdict(env: &FoundEnvironment) -> Verdict {
        super::verdict(env, std::time::SystemTime::now())
    }

    #[test]
    fn only_test_environments_of_gone_owners_are_orphans() {
        if crate::process::me().boot_id.is_empty() || crate::process::me().start.is_empty() {
            return; // no /proc to judge by
        }
        // Not a test environment (no mark, or a user's own labels): never.
        assert_eq!(verdict(&found(BTreeMap::new())), Verdict::NotATest);
        let user = BTreeMap::from([("team".to_string(), "a".to_string())]);
        assert_eq!(verdict(&found(user)), Verdict::NotATest);
        // Ours: alive.
        assert_eq!(verdict(&found(marks())), Verdict::OwnerAlive);
        // Our PID with another start time: a reused ID, so gone.
        let mut reused = marks();
        reused.insert(format!("{OWNER_PREFIX}pid_start"), "1".into());
        assert!(matches!(verdict(&found(reused)), Verdict::Orphaned(_)));
        // A PID that does not exist, same namespace: gone.
        let mut missing = marks();
        missing.insert(format!("{OWNER_PREFIX}pid"), (u32::MAX - 3).to_string());
        assert!(matches!(verdict(&found(missing)), Verdict::Orphaned(_)));
        // Another PID namespace or machine: cannot be judged, left alone.
        let mut elsewhere = marks();
        elsewhere.insert(format!("{OWNER_PREFIX}pid_ns"), "pid:[1]".into());
        elsewhere.insert(format!("{OWNER_PREFIX}pid"), (u32::MAX - 3).to_string());
        assert!(matches!(verdict(&found(elsewhere)), Verdict::OwnerUnknown(_)));
        let mut other_boot = marks();
        other_boot.insert(format!("{OWNER_PREFIX}boot_id"), "x".into());
        assert!(matches!(verdict(&found(other_boot)), Verdict::OwnerUnknown(_)));
        // The mark without an identity: unknown, never removed.
        let bare = BTreeMap::from([(TEST_MARK.to_string(), "true".to_string())]);
        assert!(matches!(verdict(&found(bare)), Verdict::OwnerUnknown(_)));
    }

    #[test]
    fn an_expiry_removes_only_what_cannot_be_judged_otherwise() {
        use std::time::{Duration, SystemTime};
        if crate::process::me().boot_id.is_empty() || crate::process::me().start.is_empty() {
            return; // no /proc to judge by
        }
        let now = SystemTime::now();
        let with = |mut labels: BTreeMap<String, String>, after: Duration| {
            let (k, v) = expiry(now, after).unwrap();
            labels.insert(k, v);
            found(labels)
        };
        let mut elsewhere = marks();
        elsewhere.insert(format!("{OWNER_PREFIX}pid_ns"), "pid:[1]".into());
        let later = now + Duration::from_secs(120);
        // An owner in another PID namespace: left until its expiry, removed after it.
        let e = with(elsewhere.clone(), Duration::from_secs(60));
        assert!(matches!(super::verdict(&e, now), Verdict::OwnerUnknown(_)));
        assert!(matches!(super::verdict(&e, later), Verdict::Orphaned(_)));
        // A live owner's environment outlives its expiry; a non-test environment is never touched.
        assert_eq!(super::verdict(&with(marks(), Duration::from_secs(60)), later), Verdict::OwnerAlive);
        let user = BTreeMap::from([("team".to_string(), "a".to_string())]);
        assert_eq!(super::verdict(&with(user, Duration::ZERO), later), Verdict::NotATest);
        // No expiry, or an unreadable one: never expires. An unrepresentable one is not written.
        assert!(matches!(super::verdict(&found(elsewhere.clone()), later), Verdict::OwnerUnknown(_)));
        let mut junk = elsewhere;
        junk.insert(EXPIRES.to_string(), "soon".into());
        assert!(matches!(super::verdict(&found(junk), later), Verdict::OwnerUnknown(_)));
        assert_eq!(expiry(now, Duration::MAX), None);
    }
}
