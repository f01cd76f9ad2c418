//! The deploy lock: one apply, rollback or promotion at a time per environment, held on the target.
//!
//! The lock is a record named `<project>-<environment>-lock`. Creating a record whose name exists
//! fails atomically on the target, so two processes never both hold it. The record says who holds it
//! (actor, host, process), what for, since when, and when it expires (the holder's own deadline
//! plus a margin: past it, the holder has stopped working whatever happened to it).
//!
//! A lock left behind is recovered safely:
//! - on the same machine (same boot), when the holding process no longer exists, or is this very
//!   process and the operation that took it has ended (a dropped future);
//! - anywhere, once it has expired.
//!
//! Otherwise a second deploy waits up to the environment's lock timeout, then fails with
//! [`Error::Locked`] naming the holder.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::events::{EventKind, EventSink};
use crate::backend::{Backend, NewRecord, Record, Scope};
use crate::error::{Error, Result};

/// The record kind of the deploy lock.
pub(crate) const KIND: &str = "lock";

/// Who holds an environment's deploy lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Who deploys, if the caller said ([`EnvironmentBuilder::actor`](crate::EnvironmentBuilder::actor)).
    pub actor: Option<String>,
    /// The holding process's host name.
    pub host: String,
    /// The holding process's ID.
    pub pid: u32,
    /// What it is doing (`apply`, `rollback of api`, …).
    pub operation: String,
    /// When it took the lock.
    pub since: SystemTime,
    /// When the lock counts as abandoned even if its process still runs.
    pub expires: SystemTime,
    boot_id: String,
    pid_start: String,
    token: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(a) = &self.actor {
            write!(f, "`{a}` ")?;
        }
        let held = SystemTime::now().duration_since(self.since).unwrap_or_default().as_secs();
        write!(
            f,
            "(process {} on host `{}`, {}) since {} ({held} s ago); the lock expires at {} if that process never releases it",
            self.pid,
            self.host,
            self.operation,
            humantime::format_rfc3339_seconds(self.since),
            humantime::format_rfc3339_seconds(self.expires),
        )
    }
}

/// Tokens of the locks this process holds right now; a lock of this process whose token is not
/// here was left by an operation that was cancelled (its future dropped).
static HELD: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn held(token: &str) -> bool {
    HELD.lock().map(|h| h.as_ref().is_some_and(|s| s.contains(token))).unwrap_or(false)
}

fn set_held(token: &str, on: bool) {
    if let Ok(mut h) = HELD.lock() {
        let set = h.get_or_insert_with(HashSet::new);
        if on {
            set.insert(token.to_string());
        } else {
            set.remove(token);
        }
    }
}

/// This process as the lock records it.
pub(crate) struct Me {
    pub(crate) host: String,
    boot_id: String,
    pid: u32,
    pid_start: String,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`), which tells
/// a live process from a later one that reuses its ID. `None` if there is no such process.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

pub(crate) fn me() -> Me {
    let pid = std::process::id();
    Me {
        host: read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into()),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        pid,
        pid_start: process_start(pid).unwrap_or_default(),
    }
}

fn unix(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().to_string()
}

fn from_unix(s: Option<&String>) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s.and_then(|s| s.parse().ok()).unwrap_or(0))
}

impl LockHolder {
    fn from_record(r: &Record) -> LockHolder {
        let get = |k: &str| r.data.get(k).cloned().unwrap_or_default();
        LockHolder {
            actor: r.data.get("actor").cloned(),
            host: get("host"),
            pid: get("pid").parse().unwrap_or(0),
            operation: get("operation"),
            since: from_unix(r.data.get("since")),
            expires: from_unix(r.data.get("expires")),
            boot_id: get("boot_id"),
            pid_start: get("pid_start"),
            token: get("token"),
        }
    }

    /// Why the lock is abandoned, if it is.
    fn stale(&self, me: &Me, now: SystemTime) -> Option<&'static str> {
        if now >= self.expires {
            return Some("it expired");
        }
        if self.boot_id.is_empty() || self.boot_id != me.boot_id || self.pid == 0 {
            return None;
        }
        if self.pid == me.pid && self.pid_start == me.pid_start {
            return (!held(&self.token)).then_some("the operation in this process that took it has ended");
        }
        match process_start(self.pid) {
            None => Some("its process no longer exists"),
            Some(start) if start != self.pid_start => Some("its process no longer exists (the ID was reused)"),
            Some(_) => None,
        }
    }
}

/// A held deploy lock. Release it with [`release`](Self::release); if it is dropped instead (a
/// cancelled operation), this process's next deploy recovers it.
pub(crate) struct DeployLock {
    id: String,
    token: String,
}

impl DeployLock {
    /// Takes the environment's lock for `operation`, waiting up to `timeout` for another holder.
    pub(crate) async fn acquire(
        backend: &dyn Backend,
        scope: &Scope,
        sink: &EventSink,
        operation: &str,
        actor: Option<&str>,
        hold_for: Duration,
        timeout: Duration,
    ) -> Result<DeployLock> {
        let me = me();
        let name = format!("{}-lock", scope.qualified());
        let token = format!("{}-{}-{}", me.pid, unix(SystemTime::now()), super::apply::nonce());
        let started = tokio::time::Instant::now();
        let mut told = false;
        let mut recovered = 0;
        loop {
            let now = SystemTime::now();
            let mut data = BTreeMap::from([
                ("host".to_string(), me.host.clone()),
                ("boot_id".to_string(), me.boot_id.clone()),
                ("pid".to_string(), me.pid.to_string()),
                ("pid_start".to_string(), me.pid_start.clone()),
                ("operation".to_string(), operation.to_string()),
                ("since".to_string(), unix(now)),
                // The holder's work is bounded by `hold_for`; a minute more covers its clean-up.
                ("expires".to_string(), unix(now + hold_for + Duration::from_secs(60))),
                ("token".to_string(), token.clone()),
            ]);
            if let Some(a) = actor {
                data.insert("actor".into(), a.to_string());
            }
            // Mark the token held before the record exists, so this process never sees its own
            // fresh lock as abandoned.
            set_held(&token, true);
            let record = NewRecord { name: name.clone(), kind: KIND.into(), data, pin_image: None };
            match backend.create_record(scope, &record).await {
                Ok(Some(r)) => return Ok(DeployLock { id: r.id, token }),
                Ok(None) => set_held(&token, false),
                Err(e) => {
                    set_held(&token, false);
                    return Err(e);
                }
            }
            let Some(current) = backend.list_records(scope, KIND).await?.into_iter().find(|r| r.name == name) else {
                continue; // released in the meantime
            };
            let holder = LockHolder::from_record(&current);
            if let Some(why) = holder.stale(&me, SystemTime::now()) {
                recovered += 1;
                if recovered > 3 {
                    return Err(Error::backend(
                        "recover deploy lock",
                        &name,
                        "the abandoned lock could not be removed; remove the record by hand",
                    ));
                }
                tracing::warn!(lock = %name, %holder, reason = why, "recovering an abandoned deploy lock");
                sink.emit(EventKind::LockRecovered { holder: format!("{holder}: {why}") });
                backend.remove_record(&current.id).await?;
                continue;
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(Error::Locked { environment: scope.qualified(), holder: Box::new(holder) });
            }
            if !told {
                sink.emit(EventKind::WaitingForLock { holder: holder.to_string() });
                told = true;
            }
            tokio::time::sleep((timeout - waited).min(Duration::from_millis(200))).await;
        }
    }

    /// Releases the lock.
    pub(crate) async fn release(self, backend: &dyn Backend) -> Result<()> {
        let result = backend.remove_record(&self.id).await;
        set_held(&self.token, false);
        result
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        set_held(&self.token, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32, pid_start: &str, boot: &str, expires_in: i64) -> LockHolder {
        let now = SystemTime::now();
        let expires =
            if expires_in >= 0 { now + Duration::from_secs(expires_in as u64) } else { now - Duration::from_secs(1) };
        LockHolder {
            actor: Some("ci".into()),
            host: "h".into(),
            pid,
            operation: "apply".into(),
            since: now,
            expires,
            boot_id: boot.into(),
            pid_start: pid_start.into(),
            token: "t-never-held".into(),
        }
    }

    #[test]
    fn expiry_makes_any_lock_stale() {
        let me = me();
        assert_eq!(holder(1, "x", "other-boot", -1).stale(&me, SystemTime::now()), Some("it expired"));
        assert_eq!(
            holder(1, "x", "other-boot", 600).stale(&me, SystemTime::now()),
            None,
            "another machine's live lock"
        );
    }

    #[test]
    fn a_dead_process_on_this_machine_leaves_a_stale_lock() {
        let me = me();
        if me.boot_id.is_empty() {
            return; // not Linux: only expiry applies, tested above
        }
        // PID 1 exists, with its own start time; a different recorded start means the ID was reused.
        assert!(holder(1, "not-its-start", &me.boot_id, 600).stale(&me, SystemTime::now()).is_some());
        let init_start = process_start(1).unwrap_or_default();
        assert_eq!(holder(1, &init_start, &me.boot_id, 600).stale(&me, SystemTime::now()), None);
        // This process, but a token no live operation holds: a cancelled operation's lock.
        let mine = holder(me.pid, &me.pid_start, &me.boot_id, 600);
        assert!(mine.stale(&me, SystemTime::now()).is_some());
        set_held("t-held", true);
        let held_one = LockHolder { token: "t-held".into(), ..mine };
        assert_eq!(held_one.stale(&me, SystemTime::now()), None);
        set_held("t-held", false);
    }

    #[test]
    fn the_holder_message_names_who_where_and_since_when() {
        let h = holder(4242, "1", "b", 600);
        let text = h.to_string();
        for part in ["`ci`", "4242", "host `h`", "apply", "since 20"] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }
}
