//! A test harness (feature `testing`): real environments for integration tests that never leak.
//!
//! - [`TestEnv`]: `TestEnv::up(env).await?` deploys an environment under a unique name and gives
//!   its endpoints and URLs; dropping it tears everything down (also on panic, printing the
//!   services' last log lines first), and the process's exit tears down what was never dropped.
//!   Teardown removes containers at once (`docker rm -f`: a test's environment has nothing left
//!   to serve), so a server that ignores SIGTERM does not hold a test up for its stop grace
//!   period; [`TestEnvBuilder::stop_grace_on_teardown`] asks for a graceful stop instead.
//! - [`SharedEnv`]: one environment for the tests of a suite, reference-counted, with a database
//!   per test where that is cheap.
//! - [`TestEnvBuilder::reuse`]: an environment left running for the next run of the tests and
//!   taken again by it, matched by a fingerprint of everything that defines it, when the run
//!   allows it ([`REUSE_VAR`]`=1`); swept once idle ([`DEFAULT_IDLE`]), or by [`reap_reusable`].
//! - [`reap`]: the reaper. Everything a test environment creates carries its owner's identity
//!   (boot ID, PID namespace, PID and the process's start time). A sweep removes the test
//!   environments whose owner is provably gone: before a process's first environment on an
//!   engine, then every 3 s while it has one up, and whenever called. A SIGKILLed, crashed or
//!   interrupted test process's containers, networks, volumes and records are therefore removed
//!   within seconds while another test process of the suite runs, and at the latest when the next
//!   run starts.
//!
//! ## Why a sweep keyed on the owner process, not a watchdog
//! A watchdog that outlives the test process (testcontainers' Ryuk) is a container with the
//! engine's socket mounted, started from an image that must be pulled: no image can be pulled on
//! an offline machine or a private CI, a socket mount is refused by rootless and remote engines,
//! and when the watchdog itself is killed nothing cleans. A sweep needs nothing but the engine's
//! API and the labels, works the same over SSH, and its decision is exact: an owner is gone only
//! when this process can look at the same process table (same boot, same PID namespace) and the
//! recorded PID is absent or was reused (another start time). An environment whose owner cannot be
//! judged (a test process in another container or on another machine) is never touched, nor is
//! any environment without the test mark, nor one whose owner runs, unless it was given an expiry
//! ([`TestEnvBuilder::expire_after`]: for test processes in a container that shares the host's
//! engine) and that has passed. What a sweep cannot do is run when no test process runs: orphans
//! of a killed last run wait for the next run's first sweep (or a `reap` call).

mod harness;
mod name;
mod owner;
mod reuse;
mod shared;
mod test_env;

pub use reuse::{DEFAULT_IDLE, REUSE_VAR};
pub use shared::{Shared, SharedEnv};
pub use test_env::{TestEnv, TestEnvBuilder};

use crate::backend::Backend;
use crate::engine::{environments, Down};
use crate::error::Result;

/// What a sweep removed and left alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Test environments removed because their owner process is gone.
    pub removed: Vec<String>,
    /// Test environments left because their owner runs, or cannot be judged from here.
    pub left: Vec<String>,
}

/// Removes the test environments on `backend` whose owner process is provably gone (see the
/// module docs), with their volumes and records. Environments without the test mark are never
/// touched.
pub async fn reap<B: Backend>(backend: &B) -> Result<Reaped> {
    let mut reaped = Reaped::default();
    let found = environments(backend).await?;
    for env in &found {
        if env.labels.contains_key(reuse::REUSE_MARK) {
            continue; // kept on purpose: the idle sweep below judges it
        }
        match owner::verdict(env, std::time::SystemTime::now()) {
            owner::Verdict::NotATest => {}
            owner::Verdict::OwnerAlive | owner::Verdict::OwnerUnknown(_) => reaped.left.push(env.qualified_name()),
            owner::Verdict::Orphaned(why) => {
                tracing::info!(environment = %env.qualified_name(), why, "removing an orphaned test environment");
                match env.down(backend, Down::default().with_volumes().force()).await {
                    Ok(_) => reaped.removed.push(env.qualified_name()),
                    // Another sweep (this process's own, or another test process's) is taking it
                    // down right now: it is on its way out, not this call's to remove.
                    Err(crate::Error::Locked { .. }) => reaped.left.push(env.qualified_name()),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    // Reusable environments idle past their limit, that no process uses.
    reaped.removed.extend(reuse::sweep(backend, &found, false).await?);
    if !reaped.removed.is_empty() {
        // A killed owner's last requests can still be on their way through the engine (a create
        // sent just before it died lands after the removal): once they have settled, what they
        // made goes too.
        tokio::time::sleep(SETTLE_AFTER_DEATH).await;
        for env in environments(backend).await? {
            if reaped.removed.contains(&env.qualified_name()) {
                match env.down(backend, Down::default().with_volumes().force()).await {
                    Ok(_) | Err(crate::Error::Locked { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(reaped)
}

/// Removes every reusable test environment on `backend` ([`TestEnvBuilder::reuse`]) that no
/// process is using or bringing up, idle or not: for a developer who wants a clean slate.
pub async fn reap_reusable<B: Backend>(backend: &B) -> Result<Vec<String>> {
    reuse::sweep(backend, &environments(backend).await?, true).await
}

/// How long a dead owner's requests in flight are given to land before a second removal.
const SETTLE_AFTER_DEATH: std::time::Duration = std::time::Duration::from_secs(1);
