//! An in-memory runtime (feature `test-util`): a [`Backend`] with an image store, a record store,
//! files and, optionally, several hosts, whose instances are tasks in this process. Each started
//! instance listens on a real loopback port per declared port, so HTTP and TCP probes, endpoints
//! and load through them are real; everything else (images, records, logs, exec) lives in a map.
//!
//! It lets tests drive the engine's rollout, rollback, deadline and failure paths in
//! milliseconds, with injected faults: a create or start that fails, an instance that dies, a
//! probe that flaps, a target that stops answering or hangs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> harbormaster::Result<()> {
//! use std::time::Duration;
//! use harbormaster::backend::memory::{Behavior, MemoryBackend};
//! use harbormaster::{Environment, Error, HealthCheck, Port, Service};
//!
//! let target = MemoryBackend::new();
//! target.behave("api:2", Behavior::healthy().http_status(503)); // version 2 is broken
//! let api = |tag: &str| {
//!     Service::builder("api").image(format!("api:{tag}")).port(Port::tcp(8080).publish_ephemeral())
//!         .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(20)).retries(3))
//!         .replicas(2).build()
//! };
//! let v1 = Environment::builder("shop", "test").service(api("1")?).build()?;
//! v1.apply(&target).await?;
//! let v2 = Environment::builder("shop", "test").service(api("2")?).build()?;
//! let err = v2.apply(&target).await.unwrap_err();
//! assert!(err.to_string().contains("rolled back"));
//! # Ok(()) }
//! ```

mod behavior;
mod instance;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use behavior::{Behavior, Fault};
use instance::Running;

use super::{
    Backend, ExecOutput, HostInfo, ImageStore, Instance, InstanceFiles, InstanceRuntime, InstanceSpec, LogLine,
    LogStream, RecordStore, Scope, Topology,
};
use crate::error::{Error, ErrorKind, Result};

/// The in-memory runtime. Cheap to clone: clones share one world.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    world: Mutex<World>,
    hosts: Vec<HostInfo>,
}

/// Everything the runtime holds.
#[derive(Default)]
pub(crate) struct World {
    next: u64,
    instances: BTreeMap<String, Running>,
    networks: BTreeSet<String>,
    volumes: BTreeSet<String>,
    behaviors: BTreeMap<String, Behavior>,
    create_fails: BTreeMap<String, u32>,
    start_fails: BTreeMap<String, u32>,
    mode: Mode,
    records_fail: bool,
    calls: BTreeMap<&'static str, u64>,
    pub(crate) store: store::Store,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    Answering,
    Unreachable,
    Hanging,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.world();
        f.debug_struct("MemoryBackend")
            .field("instances", &w.instances.len())
            .field("hosts", &self.inner.hosts)
            .finish()
    }
}

impl MemoryBackend {
    /// An empty runtime on one host.
    pub fn new() -> Self {
        MemoryBackend::default()
    }

    /// An empty runtime with several hosts, by name (instances are placed on them by role, as on
    /// a [`Fleet`](crate::Fleet)); every host is reached at `127.0.0.1`.
    pub fn with_hosts<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let hosts = names.into_iter().map(|n| HostInfo { name: n.into(), address: "127.0.0.1".into() }).collect();
        MemoryBackend { inner: Arc::new(Inner { world: Mutex::default(), hosts }) }
    }

    /// How instances created from now on behave when made from the image reference `key`
    /// (`api:2`) or, failing that, belong to the service `key`.
    pub fn behave(&self, key: impl Into<String>, behavior: Behavior) {
        self.world().behaviors.insert(key.into(), behavior);
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        let mut w = self.world();
        match fault {
            Fault::CreateFails { service, times } => {
                w.create_fails.insert(service, times);
            }
            Fault::StartFails { service, times } => {
                w.start_fails.insert(service, times);
            }
            Fault::Unreachable => w.mode = Mode::Unreachable,
            Fault::Hang => w.mode = Mode::Hanging,
            Fault::RecordsFail => w.records_fail = true,
            Fault::Heal => {
                w.mode = Mode::Answering;
                w.records_fail = false;
            }
        }
    }

    /// Kills the running instances of `service` (every one, or only `slot`): they exit with
    /// `code` now, as a process that crashed. Returns how many died.
    pub fn kill(&self, service: &str, slot: Option<u32>, code: i64) -> usize {
        let mut w = self.world();
        let mut n = 0;
        for r in w.instances.values_mut() {
            if r.instance.service == service && slot.is_none_or(|s| r.instance.slot == s) && r.snapshot().is_running() {
                r.exit(code);
                n += 1;
            }
        }
        n
    }

    /// Makes pulls of `reference` fail as a registry that does not have it.
    pub fn missing_image(&self, reference: impl Into<String>) {
        self.world().store.missing.insert(reference.into());
    }

    /// How many times the engine called `operation` (`create_instance`, `start_instance`,
    /// `pull_image`, `create_record`, …).
    pub fn calls(&self, operation: &str) -> u64 {
        self.world().calls.get(operation).copied().unwrap_or(0)
    }

    /// Every instance it holds, in any state.
    pub fn instances(&self) -> Vec<Instance> {
        self.world().instances.values().map(|r| r.snapshot()).collect()
    }

    /// The instances of `service` that are running.
    pub fn running(&self, service: &str) -> Vec<Instance> {
        self.instances().into_iter().filter(|i| i.service == service && i.is_running()).collect()
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        // A panic while the lock was held leaves the world as it was: keep using it.
        self.inner.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the call and applies the target-wide faults.
    async fn enter(&self, operation: &'static str) -> Result<()> {
        let mode = {
            let mut w = self.world();
            *w.calls.entry(operation).or_default() += 1;
            w.mode
        };
        match mode {
            Mode::Answering => Ok(()),
            Mode::Unreachable => Err(Error::backend_kind(
                operation,
                self.describe(),
                ErrorKind::Unreachable,
                "the target does not answer (injected fault)",
            )),
            Mode::Hanging => futures::future::pending().await,
        }
    }

    fn missing(&self, operation: &'static str, id: &str) -> Error {
        Error::backend_kind(operation, id, ErrorKind::NotFound, "no such instance")
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory runtime".into()
    }

    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>> {
        self.enter("list_instances").await?;
        let w = self.world();
        Ok(w.instances.values().filter(|r| &r.spec.scope == scope).map(|r| r.snapshot()).collect())
    }

    async fn inspect_instance(&self, id: &str) -> Result<Instance> {
        self.enter("inspect_instance").await?;
        let w = self.world();
        w.instances.get(id).map(|r| r.snapshot()).ok_or_else(|| self.missing("inspect instance", id))
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        self.enter("wait_exit").await?;
        let mut rx = {
            let w = self.world();
            w.instances.get(id).map(|r| r.exited.subscribe()).ok_or_else(|| self.missing("wait", id))?
        };
        let code = rx.wait_for(Option::is_some).await.map(|c| c.unwrap_or(137));
        code.map_err(|_| self.missing("wait", id))
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        self.enter("logs_tail").await?;
        let w = self.world();
        let r = w.instances.get(id).ok_or_else(|| self.missing("read logs", id))?;
        let all = &r.behavior.log_lines;
        Ok(all[all.len().saturating_sub(lines)..].to_vec())
    }

    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>> {
        let w = self.world();
        let Some(r) = w.instances.get(id) else {
            let e = self.missing("read logs", id);
            return Box::pin(futures::stream::once(async move { Err(e) }));
        };
        let all = &r.behavior.log_lines;
        let from = tail.map_or(0, |t| all.len().saturating_sub(t));
        let name = r.instance.name.clone();
        let lines: Vec<Result<LogLine>> = all[from..]
            .iter()
            .map(|l| Ok(LogLine { instance: name.clone(), stream: LogStream::Stdout, text: l.clone() }))
            .collect();
        let mut exited = r.exited.subscribe();
        let now = futures::stream::iter(lines);
        if !follow {
            return Box::pin(now);
        }
        // Following: the stream ends when the instance exits.
        let end = futures::stream::once(async move {
            let _ = exited.wait_for(Option::is_some).await;
        });
        use futures::StreamExt;
        Box::pin(now.chain(end.filter_map(|_| async { None })))
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        let _ = timeout;
        self.enter("exec").await?;
        let w = self.world();
        let r = w.instances.get(id).ok_or_else(|| self.missing("exec", id))?;
        if !r.snapshot().is_running() {
            return Err(Error::backend_kind("exec", id, ErrorKind::Conflict, "the instance is not running"));
        }
        Ok(ExecOutput { exit_code: r.behavior.exec_exit, stdout: command.join(" "), stderr: String::new() })
    }

    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        self.enter("probe_address").await?;
        let w = self.world();
        Ok(w.instances.get(&instance.id).and_then(|r| r.address(port)))
    }

    fn published_host(&self) -> String {
        "127.0.0.1".into()
    }

    async fn ensure_network(&self, scope: &Scope) -> Result<bool> {
        self.enter("ensure_network").await?;
        Ok(self.world().networks.insert(scope.network_name()))
    }

    async fn remove_network(&self, scope: &Scope) -> Result<bool> {
        self.enter("remove_network").await?;
        Ok(self.world().networks.remove(&scope.network_name()))
    }

    async fn ensure_volume(&self, scope: &Scope, volume: &str) -> Result<bool> {
        self.enter("ensure_volume").await?;
        Ok(self.world().volumes.insert(scope.volume_name(volume)))
    }

    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>> {
        self.enter("list_volumes").await?;
        let prefix = format!("{}-", scope.qualified());
        Ok(self.world().volumes.iter().filter(|v| v.starts_with(&prefix)).cloned().collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.enter("remove_volume").await?;
        self.world().volumes.remove(name);
        Ok(())
    }

    fn images(&self) -> Option<&dyn ImageStore> {
        Some(self)
    }

    fn records(&self) -> Option<&dyn RecordStore> {
        Some(self)
    }

    fn files(&self) -> Option<&dyn InstanceFiles> {
        Some(self)
    }

    fn topology(&self) -> Option<&dyn Topology> {
        if self.inner.hosts.is_empty() {
            None
        } else {
            Some(self)
        }
    }

    fn instances(&self) -> Option<&dyn InstanceRuntime> {
        Some(self)
    }
}

#[async_trait]
impl InstanceRuntime for MemoryBackend {
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<String> {
        self.enter("create_instance").await?;
        let mut w = self.world();
        if let Some(n) = w.create_fails.get_mut(&spec.service).filter(|n| **n > 0) {
            *n -= 1;
            return Err(Error::backend("create container", &spec.name, "the engine refused it (injected fault)"));
        }
        if let Some(v) = spec.volumes.iter().filter_map(|v| v.volume_name()).find(|v| {
            let name = spec.scope.volume_name(v);
            !w.volumes.contains(&name)
        }) {
            return Err(Error::backend_kind(
                "create container",
                &spec.name,
                ErrorKind::NotFound,
                format!("volume {v} does not exist"),
            ));
        }
        w.next = w.next.saturating_add(1);
        let id = format!("mem-{:06}", w.next);
        let reference = w.store.reference_of(&spec.image_id);
        let behavior = reference
            .as_ref()
            .and_then(|r| w.behaviors.get(r))
            .or_else(|| w.behaviors.get(&spec.service))
            .cloned()
            .unwrap_or_default();
        let running = Running::new(id.clone(), spec.clone(), behavior, self.inner.hosts.is_empty());
        w.instances.insert(id.clone(), running);
        Ok(id)
    }

    async fn start_instance(&self, id: &str) -> Result<()> {
        self.enter("start_instance").await?;
        let mut w = self.world();
        let service = w.instances.get(id).map(|r| r.spec.service.clone()).ok_or_else(|| self.missing("start", id))?;
        if let Some(n) = w.start_fails.get_mut(&service).filter(|n| **n > 0) {
            *n -= 1;
            return Err(Error::backend("start container", id, "the engine could not start it (injected fault)"));
        }
        let r = w.instances.get_mut(id).ok_or_else(|| self.missing("start", id))?;
        r.start()
    }

    async fn stop_instance(&self, id: &str, grace: Duration) -> Result<()> {
        let _ = grace;
        self.enter("stop_instance").await?;
        let mut w = self.world();
        let r = w.instances.get_mut(id).ok_or_else(|| self.missing("stop", id))?;
        if r.snapshot().is_running() {
            r.exit(0);
        }
        Ok(())
    }

    async fn remove_instance(&self, id: &str) -> Result<()> {
        self.enter("remove_instance").await?;
        let mut w = self.world();
        if let Some(mut r) = w.instances.remove(id) {
            r.exit(137);
            w.store.files.retain(|(i, _), _| i != id);
        }
        Ok(())
    }
}

impl Topology for MemoryBackend {
    fn hosts(&self) -> Vec<HostInfo> {
        self.inner.hosts.clone()
    }
}

#[async_trait]
impl InstanceFiles for MemoryBackend {
    async fn write_file(&self, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        let _ = mode;
        self.enter("write_file").await?;
        let mut w = self.world();
        if !w.instances.contains_key(id) {
            return Err(self.missing("write file", id));
        }
        w.store.files.insert((id.to_string(), path.to_string()), contents.to_vec());
        Ok(())
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>> {
        self.enter("read_file").await?;
        Ok(self.world().store.files.get(&(id.to_string(), path.to_string())).cloned())
    }
}

impl MemoryBackend {
    fn records_guard(&self, operation: &'static str) -> Result<()> {
        if self.world().records_fail {
            return Err(Error::backend(
                operation,
                self.describe(),
                "the record store refused the write (injected fault)",
            ));
        }
        Ok(())
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }
}
