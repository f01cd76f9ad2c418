//! Who owns a test environment, written on everything it creates, and the reaper's decision:
//! remove an environment only when it is a test environment and its owner is provably gone.

use std::collections::BTreeMap;

use crate::engine::FoundEnvironment;
use crate::process::{Identity, Liveness};

/// The mark every test environment carries; its owner's identity is under this prefix.
pub(crate) const TEST_MARK: &str = "io.harbormaster.test";
const OWNER_PREFIX: &str = "io.harbormaster.test.";

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
    /// Its owner is gone, for this reason: removed.
    Orphaned(&'static str),
}

/// The decision for one environment, from its labels alone.
pub(crate) fn verdict(env: &FoundEnvironment) -> Verdict {
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
        Liveness::Unknown(why) => Verdict::OwnerUnknown(why),
        Liveness::Gone(why) => Verdict::Orphaned(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(labels: BTreeMap<String, String>) -> FoundEnvironment {
        FoundEnvironment { project: "p".into(), name: "e".into(), labels }
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
}
