//! This process as other processes see it, and whether a process recorded elsewhere is provably gone.
//!
//! The deploy lock and the accessor containers kept images move through record who made them: host name,
//! boot ID, PID namespace, process ID and the process's start time. Another process may conclude
//! that the recorder is gone only when it can look at the very same process table: same boot,
//! same PID namespace, and a `/proc` that shows that namespace. Containers share the host's boot
//! ID but not its PID namespace, so a process ID seen from a container means nothing on the host
//! (and the reverse); then the answer is [`Liveness::Unknown`], never a guess.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Who a process is, as recorded on the target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Host name (a container's is its ID).
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    pub boot_id: String,
    /// `/proc/self/ns/pid` (`pid:[4026531836]`): one per PID namespace, so per container.
    pub pid_ns: String,
    /// Process ID, in that namespace.
    pub pid: u32,
    /// Start time in clock ticks since boot: tells a live process from a later one reusing its ID.
    pub start: String,
}

/// What can be said about a recorded process from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// It runs (the same process: same ID, same start time).
    Alive,
    /// It is gone, and why that is certain.
    Gone(&'static str),
    /// It cannot be checked from here, and why.
    Unknown(&'static str),
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), `None` if there is no such process.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Whether `/proc` shows this process's own PID namespace (it does not after `unshare -p`
/// without remounting `/proc`): `/proc/self` then names our own process ID.
fn proc_is_ours(pid: u32) -> bool {
    std::fs::read_link("/proc/self").ok().and_then(|p| p.to_str().and_then(|s| s.parse::<u32>().ok())) == Some(pid)
}

/// Six hex digits that differ between calls (a process counter and the clock, hashed): for unique
/// names on the target.
pub(crate) fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// This process.
pub(crate) fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        Identity {
            host: read_trimmed("/proc/sys/kernel/hostname")
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "unknown".into()),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pid,
            start: if proc_is_ours(pid) { process_start(pid).unwrap_or_default() } else { String::new() },
        }
    })
}

impl Identity {
    /// Whether this is the calling process itself.
    pub(crate) fn is_me(&self) -> bool {
        let me = me();
        !me.boot_id.is_empty()
            && self.boot_id == me.boot_id
            && self.pid_ns == me.pid_ns
            && self.pid == me.pid
            && self.start == me.start
    }

    /// Whether the recorded process still runs, seen from this process.
    pub(crate) fn liveness(&self) -> Liveness {
        let me = me();
        if self.boot_id.is_empty() || self.pid == 0 || self.start.is_empty() {
            return Liveness::Unknown("it recorded no process identity");
        }
        if me.boot_id.is_empty() || me.start.is_empty() {
            return Liveness::Unknown("this process cannot read its own process table");
        }
        if self.boot_id != me.boot_id {
            return Liveness::Unknown("it runs on another machine (or before this one restarted)");
        }
        if self.pid_ns.is_empty() || self.pid_ns != me.pid_ns {
            return Liveness::Unknown("it runs in another PID namespace (a container, or the host seen from one)");
        }
        if !proc_is_ours(me.pid) {
            return Liveness::Unknown("/proc here shows another PID namespace");
        }
        match process_start(self.pid) {
            None => Liveness::Gone("its process no longer exists"),
            Some(start) if start != self.start => Liveness::Gone("its process no longer exists (its ID was reused)"),
            Some(_) => Liveness::Alive,
        }
    }

    /// Into record data.
    pub(crate) fn to_data(&self, data: &mut BTreeMap<String, String>) {
        data.insert("host".into(), self.host.clone());
        data.insert("boot_id".into(), self.boot_id.clone());
        data.insert("pid_ns".into(), self.pid_ns.clone());
        data.insert("pid".into(), self.pid.to_string());
        data.insert("pid_start".into(), self.start.clone());
    }

    /// Read back from record data.
    pub(crate) fn from_data(data: &BTreeMap<String, String>) -> Identity {
        let get = |k: &str| data.get(k).cloned().unwrap_or_default();
        Identity {
            host: get("host"),
            boot_id: get("boot_id"),
            pid_ns: get("pid_ns"),
            pid: get("pid").parse().unwrap_or(0),
            start: get("pid_start"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_itself() {
        let me = me().clone();
        if me.boot_id.is_empty() {
            return; // not Linux
        }
        assert!(me.is_me());
        assert_eq!(me.liveness(), Liveness::Alive);
    }

    #[test]
    fn a_reused_or_missing_pid_is_gone_only_in_the_same_namespace() {
        let me = me().clone();
        if me.boot_id.is_empty() {
            return;
        }
        let reused = Identity { start: "1".into(), ..me.clone() };
        assert!(matches!(reused.liveness(), Liveness::Gone(_)));
        let missing = Identity { pid: u32::MAX - 7, ..me.clone() };
        assert!(matches!(missing.liveness(), Liveness::Gone(_)));
        // The same process ID in another PID namespace (a container) says nothing.
        let elsewhere = Identity { pid_ns: "pid:[1]".into(), pid: u32::MAX - 7, ..me.clone() };
        assert!(matches!(elsewhere.liveness(), Liveness::Unknown(_)));
        let other_machine = Identity { boot_id: "another".into(), ..me.clone() };
        assert!(matches!(other_machine.liveness(), Liveness::Unknown(_)));
        assert!(matches!(Identity::default().liveness(), Liveness::Unknown(_)));
    }

    #[test]
    fn identities_round_trip_through_record_data() {
        let me = me().clone();
        let mut data = BTreeMap::new();
        me.to_data(&mut data);
        assert_eq!(Identity::from_data(&data), me);
    }
}
