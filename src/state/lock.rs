//! The deploy lock: one apply, rollback, promotion or down at a time per environment, held on the
//! target, with a lease its holder renews.
//!
//! The lock is a sequence of records `<project>-<environment>.lock.<epoch>`; the one with the
//! highest epoch is the lock. Taking it creates the next epoch's record, an atomic test-and-set on
//! its name ([`RecordStore::create_record`]), so two processes never both hold it, and a lock left
//! behind is taken over by creating the next epoch, never by removing the old one (a removal could
//! race with another process taking it). The record says who holds it: actor, host, process (boot,
//! PID namespace, process ID and start time), operation and since when.
//!
//! While it works, the holder renews a lease every [`RENEW_EVERY`] by writing a `lease` record
//! (judged by the target's clock, so deployers whose clocks differ agree). A lock left behind is
//! taken over only when its holder is provably gone:
//! - the holder is this very process, and the operation that took it has ended (a dropped future);
//! - the holder ran on this machine, in this PID namespace, and its process is gone;
//! - its lease lapsed: not renewed for [`LEASE`]. This is how a holder in another container or on
//!   another machine is judged, since its process cannot be checked from here.
//!
//! A lock taken over from a holder that died within its lease waits half a second before the
//! operation goes on, so that the requests the dead holder left in flight have landed on the target
//! when the environment is observed.
//!
//! Otherwise another deploy waits up to the environment's lock timeout (saying why it cannot take
//! the lock yet), then fails with [`Error::Locked`]. A holder that finds its lock taken over (it
//! was frozen past its lease) stops with [`Error::LockLost`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::{NewRecord, Record, RecordStore, Scope};
use crate::error::{Error, LockHolder, Result};
use crate::events::{EventKind, EventSink};
use crate::process::{Identity, Liveness};

/// The record kind of the lock's epochs.
pub(crate) const KIND: &str = "lock";
/// The record kind of lease renewals.
pub(crate) const LEASE_KIND: &str = "lease";
/// A lock whose lease was not renewed for this long is abandoned.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a holder renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// How long a record store call may take before the target counts as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long a lock taken over from a holder that ended within its lease (a process that died, an
/// operation of this process that was cancelled) waits before the operation looks at the target:
/// the engine may still be carrying out the requests the holder sent just before it ended (a
/// container create answered after its client is gone), and what they make must be there when
/// the environment is observed.
const SETTLE_AFTER_DEATH: Duration = Duration::from_millis(500);

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

fn unix(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().to_string()
}

fn from_unix(s: Option<&String>) -> SystemTime {
    let secs = s.and_then(|s| s.parse().ok()).unwrap_or(0);
    UNIX_EPOCH.checked_add(Duration::from_secs(secs)).unwrap_or(UNIX_EPOCH)
}

fn epoch_of(r: &Record) -> u64 {
    r.data.get("epoch").and_then(|e| e.parse().ok()).unwrap_or(0)
}

fn lock_name(scope: &Scope, epoch: u64) -> String {
    format!("{}.lock.{epoch}", scope.qualified())
}

/// The lock record in force (highest epoch) among `records`.
fn current(records: &[Record]) -> Option<&Record> {
    records.iter().max_by_key(|r| epoch_of(r))
}

/// Why a holder's lock is abandoned, if it is. `lease_age`: how long ago (target's clock) it was
/// last renewed.
fn abandoned(identity: &Identity, token: &str, lease_age: Duration) -> (Option<String>, String) {
    if identity.is_me() {
        return if held(token) {
            (None, "its operation runs in this very process".into())
        } else {
            (Some("the operation of this process that took it has ended".into()), String::new())
        };
    }
    let liveness = identity.liveness();
    if let Liveness::Gone(why) = liveness {
        return (Some(why.to_string()), String::new());
    }
    if lease_age >= LEASE {
        return (Some(format!("its lease lapsed: not renewed for {} s", lease_age.as_secs())), String::new());
    }
    let state = match liveness {
        Liveness::Alive => "its process runs on this machine".to_string(),
        Liveness::Unknown(why) => {
            format!("whether its process runs cannot be told from here ({why}): judged by its lease")
        }
        Liveness::Gone(_) => String::new(),
    };
    (None, state)
}

/// A held deploy lock. Keep it with [`hold`](Self::hold) while working; release it with
/// [`release`](Self::release). If it is dropped instead (a cancelled operation), this process's
/// next deploy takes it over at once, and another process once the lease lapses.
pub(crate) struct DeployLock {
    scope: Scope,
    record: Record,
    token: String,
    lease: std::sync::Mutex<Option<Record>>,
}

impl DeployLock {
    /// Takes the environment's lock for `operation`, waiting up to `timeout` for another holder.
    pub(crate) async fn acquire(
        backend: &dyn RecordStore,
        scope: &Scope,
        sink: &EventSink,
        operation: &str,
        actor: Option<&str>,
        timeout: Duration,
    ) -> Result<DeployLock> {
        // A target that stops answering must not keep a deploy waiting for ever: the wait for the
        // lock is bounded by the lock timeout plus the time a call may take to answer.
        let bound = timeout.saturating_add(ANSWER_WITHIN);
        match tokio::time::timeout(bound, Self::take(backend, scope, sink, operation, actor, timeout)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Deadline {
                what: format!("taking the deploy lock of `{}`", scope.qualified()),
                deadline: bound,
                pending: vec!["the target's record store did not answer".into()],
            }),
        }
    }

    async fn take(
        backend: &dyn RecordStore,
        scope: &Scope,
        sink: &EventSink,
        operation: &str,
        actor: Option<&str>,
        timeout: Duration,
    ) -> Result<DeployLock> {
        let token = format!("{}{}{}", crate::process::nonce(), crate::process::nonce(), crate::process::nonce());
        let started = tokio::time::Instant::now();
        let mut told: Option<String> = None;
        // The target's clock, as an offset from ours, measured when first needed.
        let mut offset: Option<(SystemTime, tokio::time::Instant)> = None;
        // Whether the lock taken is a holder's that died within its lease.
        let mut died_recently = false;
        loop {
            let records = backend.list_records(scope, KIND).await?;
            let top = current(&records);
            let next = top.map_or(1, |r| epoch_of(r).saturating_add(1));
            let holder = match top {
                None => None,
                Some(r) => {
                    let target_now = match offset {
                        Some((then, at)) => then.checked_add(at.elapsed()).unwrap_or(then),
                        None => {
                            let now = backend.clock().await?;
                            offset = Some((now, tokio::time::Instant::now()));
                            now
                        }
                    };
                    let token = r.data.get("token").cloned().unwrap_or_default();
                    let renewed = backend
                        .list_records(scope, LEASE_KIND)
                        .await?
                        .into_iter()
                        .filter(|l| l.data.get("token") == Some(&token))
                        .map(|l| l.created)
                        .chain([r.created])
                        .max()
                        .unwrap_or(r.created);
                    let age = target_now.duration_since(renewed).unwrap_or_default();
                    let identity = Identity::from_data(&r.data);
                    let (stale, state) = abandoned(&identity, &token, age);
                    let holder = LockHolder {
                        actor: r.data.get("actor").cloned(),
                        host: identity.host.clone(),
                        pid: identity.pid,
                        operation: r.data.get("operation").cloned().unwrap_or_default(),
                        since: from_unix(r.data.get("since")),
                        expires: SystemTime::now()
                            .checked_add(LEASE.saturating_sub(age))
                            .unwrap_or_else(SystemTime::now),
                        state,
                        renew_every: RENEW_EVERY,
                    };
                    match stale {
                        Some(why) => {
                            died_recently = age < LEASE;
                            tracing::warn!(lock = %r.name, %holder, reason = %why, "taking over an abandoned deploy lock");
                            sink.emit(EventKind::LockRecovered { holder: format!("{holder}: {why}") });
                            None
                        }
                        None => Some((holder, token)),
                    }
                }
            };
            if let Some((holder, holder_token)) = holder {
                let waited = started.elapsed();
                if waited >= timeout {
                    return Err(Error::Locked { environment: scope.qualified(), holder: Box::new(holder) });
                }
                let text = holder.to_string();
                if told.as_deref() != Some(holder_token.as_str()) {
                    sink.emit(EventKind::WaitingForLock { holder: text });
                    told = Some(holder_token);
                }
                tokio::time::sleep(timeout.saturating_sub(waited).min(Duration::from_millis(200))).await;
                continue;
            }
            // Free, or abandoned: take the next epoch (another process may take it first).
            let mut data = BTreeMap::from([
                ("epoch".to_string(), next.to_string()),
                ("token".to_string(), token.clone()),
                ("operation".to_string(), operation.to_string()),
                ("since".to_string(), unix(SystemTime::now())),
            ]);
            crate::process::me().to_data(&mut data);
            if let Some(a) = actor {
                data.insert("actor".into(), a.to_string());
            }
            // Held before the record exists, so this process never sees its own fresh lock as abandoned.
            set_held(&token, true);
            let record = NewRecord { name: lock_name(scope, next), kind: KIND.into(), data };
            match backend.create_record(scope, &record).await {
                Ok(Some(r)) => {
                    let lock = DeployLock { scope: scope.clone(), record: r, token, lease: Default::default() };
                    lock.clear_before(backend, &records).await;
                    if died_recently {
                        tokio::time::sleep(SETTLE_AFTER_DEATH).await;
                    }
                    return Ok(lock);
                }
                Ok(None) => set_held(&token, false), // taken first by another process: look again
                Err(e) => {
                    set_held(&token, false);
                    return Err(e);
                }
            }
        }
    }

    /// Removes the epochs before this one and the leases of their holders (all abandoned now).
    async fn clear_before(&self, backend: &dyn RecordStore, records: &[Record]) {
        for r in records.iter().filter(|r| epoch_of(r) < epoch_of(&self.record)) {
            let _ = backend.remove_record(&r.id).await;
        }
        if let Ok(leases) = backend.list_records(&self.scope, LEASE_KIND).await {
            for l in leases.iter().filter(|l| l.data.get("token") != Some(&self.token)) {
                let _ = backend.remove_record(&l.id).await;
            }
        }
    }

    /// Runs `work` while renewing the lease. If the lock is taken over meanwhile (this process was
    /// frozen past its lease), `work` is stopped where it is and the result is [`Error::LockLost`].
    /// When `work` ends, a renewal under way is let finish (a lease record whose creation was cut
    /// off mid-request could still be made by the target after the release looked for leases, and
    /// outlive the lock).
    pub(crate) async fn hold<T>(
        &self,
        backend: &dyn RecordStore,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let keeper = self.keep(backend, stopped);
        tokio::pin!(keeper);
        tokio::select! {
            r = work => {
                let _ = stop.send(true);
                let _ = tokio::time::timeout(ANSWER_WITHIN, &mut keeper).await;
                r
            }
            lost = &mut keeper => Err(lost.unwrap_or_else(|| Error::LockLost {
                environment: self.scope.qualified(),
                reason: "its renewal stopped".into(),
            })),
        }
    }

    /// Renews the lease until the lock is lost (returns why) or `stop` says the work ended
    /// (returns `None`, between renewals).
    async fn keep(&self, backend: &dyn RecordStore, mut stop: tokio::sync::watch::Receiver<bool>) -> Option<Error> {
        let mut seq: u64 = 0;
        loop {
            if *stop.borrow() {
                return None;
            }
            if let Some(reason) = self.renew(backend, seq).await {
                tracing::error!(environment = %self.scope.qualified(), %reason, "the deploy lock was lost");
                return Some(Error::LockLost { environment: self.scope.qualified(), reason });
            }
            seq = seq.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = stop.changed() => return None,
            }
        }
    }

    /// One renewal; `Some(reason)` if the lock is no longer this holder's. Failing to reach the
    /// target is not a loss (no one else can take the lock through it either).
    async fn renew(&self, backend: &dyn RecordStore, seq: u64) -> Option<String> {
        let records = match backend.list_records(&self.scope, KIND).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not check the deploy lock; will try again");
                return None;
            }
        };
        if let Some(top) = current(&records) {
            if epoch_of(top) > epoch_of(&self.record)
                || (epoch_of(top) == epoch_of(&self.record) && top.data.get("token") != Some(&self.token))
            {
                let who = top.data.get("host").cloned().unwrap_or_default();
                return Some(format!(
                    "another deploy (process {} on host `{who}`) took it over: its lease was not renewed within {} s",
                    top.data.get("pid").cloned().unwrap_or_default(),
                    LEASE.as_secs()
                ));
            }
        }
        if !records.iter().any(|r| r.name == self.record.name) {
            // Its record was removed (`docker volume prune`): put it back, unless someone was faster.
            let record =
                NewRecord { name: self.record.name.clone(), kind: KIND.into(), data: self.record.data.clone() };
            match backend.create_record(&self.scope, &record).await {
                Ok(Some(_)) => tracing::warn!(lock = %record.name, "the deploy lock's record was removed; it is back"),
                Ok(None) => return Some("its record was removed and another deploy took the lock".into()),
                Err(e) => tracing::warn!(error = %e, "could not restore the deploy lock's record; will try again"),
            }
        }
        let lease = NewRecord {
            name: format!("{}.lease.{}.{seq}", self.scope.qualified(), self.token),
            kind: LEASE_KIND.into(),
            data: BTreeMap::from([("token".to_string(), self.token.clone()), ("seq".to_string(), seq.to_string())]),
        };
        match backend.create_record(&self.scope, &lease).await {
            Ok(Some(r)) => {
                let previous = self.lease.lock().ok().and_then(|mut l| l.replace(r));
                if let Some(p) = previous {
                    let _ = backend.remove_record(&p.id).await;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not renew the deploy lock's lease; will try again"),
        }
        None
    }

    /// Releases the lock: its lease records, then its record.
    pub(crate) async fn release(self, backend: &dyn RecordStore) -> Result<()> {
        let name = self.record.name.clone();
        match tokio::time::timeout(ANSWER_WITHIN, self.release_now(backend)).await {
            Ok(r) => r,
            Err(_) => Err(Error::backend_kind(
                "release lock",
                name,
                crate::error::ErrorKind::Timeout,
                "the record store did not answer; the lock is taken over once its lease lapses",
            )),
        }
    }

    async fn release_now(self, backend: &dyn RecordStore) -> Result<()> {
        if let Ok(leases) = backend.list_records(&self.scope, LEASE_KIND).await {
            for l in leases.iter().filter(|l| l.data.get("token") == Some(&self.token)) {
                let _ = backend.remove_record(&l.id).await;
            }
        }
        let result = backend.remove_record(&self.record.id).await;
        set_held(&self.token, false);
        result
    }

    /// Releases the lock and removes every lock and lease record of the environment (for `down`).
    pub(crate) async fn release_all(self, backend: &dyn RecordStore) -> Result<()> {
        let scope = self.scope.clone();
        self.release(backend).await?;
        for kind in [KIND, LEASE_KIND] {
            for r in backend.list_records(&scope, kind).await? {
                backend.remove_record(&r.id).await?;
            }
        }
        Ok(())
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

    fn record(epoch: u64, token: &str) -> Record {
        Record {
            id: format!("id{epoch}"),
            name: format!("p-e.lock.{epoch}"),
            kind: KIND.into(),
            created: UNIX_EPOCH,
            data: BTreeMap::from([("epoch".to_string(), epoch.to_string()), ("token".to_string(), token.to_string())]),
        }
    }

    #[test]
    fn the_highest_epoch_is_the_lock() {
        let records = [record(3, "c"), record(10, "j"), record(9, "i")];
        assert_eq!(current(&records).map(epoch_of), Some(10));
        assert!(current(&[]).is_none());
    }

    #[test]
    fn only_a_provably_gone_holder_or_a_lapsed_lease_is_abandoned() {
        let me = crate::process::me().clone();
        if me.boot_id.is_empty() {
            return; // not Linux: only leases apply
        }
        // This process, operation still running: not abandoned, whatever the lease says.
        set_held("t-live", true);
        assert!(abandoned(&me, "t-live", Duration::ZERO).0.is_none());
        set_held("t-live", false);
        // This process, operation ended (future dropped): abandoned at once.
        assert!(abandoned(&me, "t-dropped", Duration::ZERO).0.is_some());
        // A gone process on this machine: abandoned at once.
        let gone = Identity { pid: u32::MAX - 3, ..me.clone() };
        assert!(abandoned(&gone, "t", Duration::ZERO).0.unwrap().contains("no longer exists"));
        // The same PID in another PID namespace (a deployer in a container): judged by its lease only.
        let contained = Identity { pid_ns: "pid:[42]".into(), pid: u32::MAX - 3, ..me.clone() };
        let (stale, state) = abandoned(&contained, "t", Duration::from_secs(5));
        assert!(stale.is_none(), "a live lock in another PID namespace must not be taken");
        assert!(state.contains("another PID namespace"), "{state}");
        assert!(abandoned(&contained, "t", LEASE).0.unwrap().contains("lease lapsed"));
        // Another machine: the same.
        let remote = Identity { boot_id: "other".into(), ..me.clone() };
        assert!(abandoned(&remote, "t", Duration::from_secs(29)).0.is_none());
        assert!(abandoned(&remote, "t", Duration::from_secs(31)).0.is_some());
    }
}
