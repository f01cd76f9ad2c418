//! The harness's own runtime and bookkeeping: every test environment is brought up, watched and
//! torn down on one process-wide Tokio runtime, apart from the tests' runtimes (a `#[tokio::test]`
//! runtime ends with its test; a `Drop` cannot await). It keeps:
//!
//! - one engine connection per Docker host, made on this runtime so it outlives every test;
//! - the environments this process has up, so that those never dropped (held in a `static`) are
//!   torn down when the process exits;
//! - the reaper: a sweep of each engine before its first environment, then every few seconds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::backend::docker::{DockerBackend, DockerBackendBuilder};
use crate::engine::Down;
use crate::error::{Error, Result};
use crate::model::Environment;

/// How often a process with test environments up sweeps its engines for orphans.
const SWEEP_EVERY: Duration = Duration::from_secs(3);
/// The longest a teardown from `Drop` or at exit is waited for.
pub(crate) const TEARDOWN_LIMIT: Duration = Duration::from_secs(120);

pub(crate) struct Harness {
    runtime: tokio::runtime::Runtime,
    engines: tokio::sync::Mutex<BTreeMap<String, DockerBackend>>,
    live: Mutex<BTreeMap<u64, (Environment, DockerBackend)>>,
}

/// The harness, started on first use.
pub(crate) fn harness() -> Result<&'static Harness> {
    static HARNESS: OnceLock<std::result::Result<Harness, String>> = OnceLock::new();
    let h = HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("harbormaster-testing")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        register_exit_hook();
        Ok(Harness { runtime, engines: Default::default(), live: Mutex::new(BTreeMap::new()) })
    });
    h.as_ref().map_err(|e| Error::backend("start the test harness runtime", "this process", e))
}

impl Harness {
    /// Runs `f` on the harness runtime and waits for it from any runtime.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match self.runtime.spawn(f).await {
            Ok(r) => r,
            Err(e) => Err(Error::backend("run on the test harness", "this process", e)),
        }
    }

    /// Runs `f` on the harness runtime, not waited for.
    pub(crate) fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(f);
    }

    /// Runs `f` on the harness runtime and blocks the calling thread until it ends or `limit`
    /// passes: for `Drop` and exit, which cannot await.
    pub(crate) fn block<T: Send + 'static>(
        &self,
        limit: Duration,
        f: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv_timeout(limit).ok()
    }

    /// The connection to the engine `builder` names (made once per host, on this runtime), swept
    /// for orphans before it is first handed out.
    pub(crate) async fn engine(&'static self, builder: DockerBackendBuilder) -> Result<DockerBackend> {
        let key = format!("{builder:?}");
        self.run(async move {
            let mut engines = self.engines.lock().await;
            if let Some(d) = engines.get(&key) {
                return Ok(d.clone());
            }
            let docker = builder.connect().await?;
            // What earlier runs left behind goes before this run adds anything.
            super::reap(&docker).await?;
            if engines.is_empty() {
                self.runtime.spawn(sweep_forever(self));
            }
            engines.insert(key, docker.clone());
            Ok(docker)
        })
        .await
    }

    pub(crate) fn track(&self, id: u64, env: Environment, docker: DockerBackend) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(id, (env, docker));
        }
    }

    pub(crate) fn untrack(&self, id: u64) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&id);
        }
    }

    /// Tears down what is still up: at exit, for environments never dropped.
    fn teardown_all(&self) {
        let live: Vec<(Environment, DockerBackend)> = match self.live.lock() {
            Ok(mut live) => std::mem::take(&mut *live).into_values().collect(),
            Err(_) => return,
        };
        if live.is_empty() {
            return;
        }
        self.block(TEARDOWN_LIMIT, async move {
            let downs = live.iter().map(|(env, docker)| env.down(docker, Down::default().with_volumes().force()));
            futures::future::join_all(downs).await
        });
    }
}

async fn sweep_forever(h: &'static Harness) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let engines: Vec<DockerBackend> = h.engines.lock().await.values().cloned().collect();
        for docker in engines {
            if let Err(e) = super::reap(&docker).await {
                tracing::debug!(error = %e, "the test harness's sweep failed; it is tried again");
            }
        }
    }
}

extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
}

extern "C" fn at_exit() {
    if let Ok(h) = harness() {
        h.teardown_all();
    }
}

fn register_exit_hook() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: registers a plain function with the C library; it runs once, at exit, when the
        // harness exists (it is registered while the harness is made).
        unsafe {
            atexit(at_exit);
        }
    });
}
