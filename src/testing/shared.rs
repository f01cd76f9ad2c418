//! [`SharedEnv`]: one environment for many tests of a suite (one PostgreSQL for all of them),
//! brought up by the first test that asks, reference-counted, torn down after the last.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::harness::harness;
use super::TestEnv;
use crate::error::Result;
use crate::model::Environment;

type Slot = Arc<tokio::sync::Mutex<Option<Arc<TestEnv>>>>;

/// One test environment shared by the tests of a suite, declared as a `static`:
///
/// ```no_run
/// use harbormaster::testing::SharedEnv;
/// use harbormaster::{Environment, HealthCheck, Port, Service};
///
/// fn postgres() -> harbormaster::Result<Environment> {
///     let db = Service::builder("db").image("postgres:15").env("POSTGRES_PASSWORD", "test")
///         .port(Port::tcp(5432).publish_ephemeral()).health(HealthCheck::tcp(5432)).build()?;
///     Ok(Environment::builder("shop", "pg").service(db).build()?)
/// }
/// static PG: SharedEnv = SharedEnv::new(postgres);
///
/// #[tokio::test]
/// async fn orders_are_stored() -> harbormaster::Result<()> {
///     let pg = PG.get().await?;                            // up once for the whole suite
///     let db = pg.postgres_database("db", "postgres").await?; // this test's own database
///     let url = format!("{}/{db}", pg.url("db", 5432, "postgres")?);
///     # let _ = url;
///     Ok(())
/// }
/// ```
///
/// The first [`get`](Self::get) brings it up; the others wait for it and share it. Each handle
/// counts: after the last one is dropped, the environment stays for a grace period
/// ([`with_grace`](Self::with_grace), default 5 s) in which a new `get` finds it, then it is torn
/// down; at the latest when the process exits. Each test's own data goes in a database or schema
/// of its own ([`TestEnv::postgres_database`]).
pub struct SharedEnv {
    describe: fn() -> Result<Environment>,
    grace: Duration,
    slot: Mutex<Option<Slot>>,
    users: AtomicUsize,
    generation: AtomicU64,
}

impl std::fmt::Debug for SharedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedEnv").field("users", &self.users.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl SharedEnv {
    /// A shared environment described by `describe`, called once per bring-up.
    pub const fn new(describe: fn() -> Result<Environment>) -> SharedEnv {
        SharedEnv {
            describe,
            grace: Duration::from_secs(5),
            slot: Mutex::new(None),
            users: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// How long it stays up after its last handle is dropped (default 5 s).
    pub const fn with_grace(mut self, grace: Duration) -> SharedEnv {
        self.grace = grace;
        self
    }

    fn slot(&self) -> Slot {
        let mut slot = match self.slot.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slot.get_or_insert_with(Default::default).clone()
    }

    /// A handle on the environment, bringing it up if it is not.
    pub async fn get(&'static self) -> Result<Shared> {
        // Counted first: a grace-period teardown that starts now sees the user and stands down.
        // Released again if the bring-up fails (or this future is dropped).
        let count = Count(self);
        self.users.fetch_add(1, Ordering::SeqCst);
        let slot = self.slot();
        let mut current = slot.lock().await;
        let env = match &*current {
            Some(env) => env.clone(),
            None => {
                let env = Arc::new(TestEnv::up((self.describe)()?).await?);
                *current = Some(env.clone());
                env
            }
        };
        std::mem::forget(count);
        Ok(Shared { owner: self, env })
    }

    fn release(&'static self) {
        if self.users.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        let Ok(h) = harness() else { return };
        let grace = self.grace;
        let slot = self.slot();
        // On the harness's runtime: the tests' runtimes end with their tests.
        h.spawn(async move {
            tokio::time::sleep(grace).await;
            let mut current = slot.lock().await;
            if self.users.load(Ordering::SeqCst) != 0 || self.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            let Some(mut env) = current.take() else { return };
            // The last handle's own reference goes right after its count.
            for _ in 0..100 {
                match Arc::try_unwrap(env) {
                    Ok(env) => {
                        let _ = env.down().await;
                        return;
                    }
                    Err(still_held) => env = still_held,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Still referenced (a leaked handle): it goes at exit.
            *current = Some(env);
        });
    }
}

/// Releases a count unless forgotten.
struct Count(&'static SharedEnv);

impl Drop for Count {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A counted handle on a [`SharedEnv`]: derefs to its [`TestEnv`].
pub struct Shared {
    owner: &'static SharedEnv,
    env: Arc<TestEnv>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Shared").field(&self.env).finish()
    }
}

impl std::ops::Deref for Shared {
    type Target = TestEnv;

    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.owner.release();
    }
}
