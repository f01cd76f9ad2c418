//! [`Linked`]: any backend reached through a link of its own (an SSH connection), as one generic
//! layer. Every call of every capability goes to the backend behind the link, and a failure is
//! checked against the link: when the link is what failed, the link's error is returned instead
//! (a lost SSH connection is [`Error::HostUnreachable`](crate::Error::HostUnreachable), not a
//! refused socket). A link changes only what it must ([`Link`]'s hooks: the target's name, where
//! probes go, the published host, the preflight); the forwarding is written once, here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::{
    Backend, ExecOutput, ImageInfo, ImageShipping, ImageStore, Instance, InstanceFiles, InstanceRuntime, InstanceSpec,
    Limit, LogLine, NewRecord, Orchestrator, Record, RecordStore, Scope, StateFile, Topology,
};
use crate::error::Result;
use crate::model::{Build, Service};
use crate::registry::PullProgress;

/// A backend `B` reached through the link `L`: [`SshHost`](crate::SshHost) is a Docker engine
/// through an SSH connection. It has every capability `B` has, each call forwarded and its
/// failure passed through the link.
#[derive(Clone, Debug)]
pub struct Linked<B, L> {
    pub(crate) backend: B,
    pub(crate) link: L,
}

impl<B, L> Linked<B, L> {
    /// `backend`, reached through `link`.
    pub(crate) fn new(backend: B, link: L) -> Self {
        Linked { backend, link }
    }
}

/// How a link joins its target: whether it is up, and what it changes of the target's answers.
/// Its hooks receive the whole [`Linked`] target (the link and the backend behind it).
#[async_trait]
pub trait Link<B: Backend>: Sized + Send + Sync + 'static {
    /// The target's description for messages (`docker on web-1 over ssh (deploy@web-1)`).
    fn describe(target: &Linked<B, Self>) -> String;

    /// `Ok` while the link works; the error that says it is lost otherwise.
    async fn alive(target: &Linked<B, Self>) -> Result<()>;

    /// Where a probe reaches a container port (through the link, where it carries probes). The
    /// default: where the backend says.
    async fn probe_address(target: &Linked<B, Self>, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        target.backend.probe_address(instance, port).await
    }

    /// The host name at which published ports are reached. The default: the backend's.
    fn published_host(target: &Linked<B, Self>) -> String {
        target.backend.published_host()
    }

    /// Checks before an operation changes anything (a link may reconnect here). The default:
    /// the backend's preflight, through the link.
    async fn preflight(target: &Linked<B, Self>) -> Result<()> {
        let r = target.backend.preflight().await;
        target.guard(r).await
    }
}

impl<B: Backend, L: Link<B>> Linked<B, L> {
    /// A call's result; when it failed, the link's error instead if the link is what failed.
    pub(crate) async fn guard<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => match L::alive(self).await {
                Ok(()) => Err(e),
                Err(lost) => Err(lost),
            },
        }
    }
}

/// What a backend behind a link offers: every capability of a Docker engine.
pub trait LinkableBackend:
    Backend + InstanceRuntime + ImageStore + RecordStore + InstanceFiles + ImageShipping
{
}

impl<T: Backend + InstanceRuntime + ImageStore + RecordStore + InstanceFiles + ImageShipping> LinkableBackend for T {}

#[async_trait]
impl<B: LinkableBackend, L: Link<B>> Backend for Linked<B, L> {
    fn describe(&self) -> String {
        L::describe(self)
    }

    fn limits(&self, service: &Service) -> Vec<Limit> {
        self.backend.limits(service)
    }

    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>> {
        self.guard(self.backend.list_instances(scope).await).await
    }

    async fn inspect_instance(&self, id: &str) -> Result<Instance> {
        self.guard(self.backend.inspect_instance(id).await).await
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        self.guard(self.backend.wait_exit(id).await).await
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        self.guard(self.backend.logs_tail(id, lines).await).await
    }

    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>> {
        self.backend.logs(id, follow, tail)
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        self.guard(self.backend.exec(id, command, timeout).await).await
    }

    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        L::probe_address(self, instance, port).await
    }

    fn published_host(&self) -> String {
        L::published_host(self)
    }

    async fn ensure_network(&self, scope: &Scope) -> Result<bool> {
        self.guard(self.backend.ensure_network(scope).await).await
    }

    async fn remove_network(&self, scope: &Scope) -> Result<bool> {
        self.guard(self.backend.remove_network(scope).await).await
    }

    async fn ensure_volume(&self, scope: &Scope, volume: &str) -> Result<bool> {
        self.guard(self.backend.ensure_volume(scope, volume).await).await
    }

    async fn ensure_volume_with(
        &self,
        scope: &Scope,
        volume: &str,
        driver_opts: &BTreeMap<String, String>,
    ) -> Result<bool> {
        self.guard(self.backend.ensure_volume_with(scope, volume, driver_opts).await).await
    }

    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>> {
        self.guard(self.backend.list_volumes(scope).await).await
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.guard(self.backend.remove_volume(name).await).await
    }

    async fn environments(&self) -> Result<Vec<Scope>> {
        self.guard(self.backend.environments().await).await
    }

    async fn preflight(&self) -> Result<()> {
        L::preflight(self).await
    }

    fn reports_health(&self) -> bool {
        self.backend.reports_health()
    }

    fn instances(&self) -> Option<&dyn InstanceRuntime> {
        self.backend.instances().map(|_| self as &dyn InstanceRuntime)
    }

    fn images(&self) -> Option<&dyn ImageStore> {
        self.backend.images().map(|_| self as &dyn ImageStore)
    }

    fn records(&self) -> Option<&dyn RecordStore> {
        self.backend.records().map(|_| self as &dyn RecordStore)
    }

    fn files(&self) -> Option<&dyn InstanceFiles> {
        self.backend.files().map(|_| self as &dyn InstanceFiles)
    }

    fn shipping(&self) -> Option<&dyn ImageShipping> {
        self.backend.shipping().map(|_| self as &dyn ImageShipping)
    }

    fn topology(&self) -> Option<&dyn Topology> {
        // One target behind one link: one host.
        None
    }

    fn orchestrator(&self) -> Option<&dyn Orchestrator> {
        // An orchestrator's calls are not guarded by the link: none is offered through it.
        None
    }
}

#[async_trait]
impl<B: LinkableBackend, L: Link<B>> InstanceRuntime for Linked<B, L> {
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<String> {
        self.guard(InstanceRuntime::create_instance(&self.backend, spec).await).await
    }

    async fn start_instance(&self, id: &str) -> Result<()> {
        self.guard(InstanceRuntime::start_instance(&self.backend, id).await).await
    }

    async fn stop_instance(&self, id: &str, grace: Duration) -> Result<()> {
        self.guard(InstanceRuntime::stop_instance(&self.backend, id, grace).await).await
    }

    async fn remove_instance(&self, id: &str) -> Result<()> {
        self.guard(InstanceRuntime::remove_instance(&self.backend, id).await).await
    }

    async fn check_spec(&self, spec: &InstanceSpec) -> Result<()> {
        self.guard(InstanceRuntime::check_spec(&self.backend, spec).await).await
    }
}

#[async_trait]
impl<B: LinkableBackend, L: Link<B>> ImageStore for Linked<B, L> {
    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        self.guard(self.backend.image_id(reference).await).await
    }

    async fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.guard(self.backend.image_info(reference).await).await
    }

    async fn build_image(&self, build: &Build, tag: &str) -> Result<String> {
        self.guard(self.backend.build_image(build, tag).await).await
    }

    async fn pull_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<ImageInfo> {
        self.guard(self.backend.pull_image(reference, progress).await).await
    }

    async fn registry_digest(&self, reference: &str) -> Result<Option<String>> {
        self.guard(self.backend.registry_digest(reference).await).await
    }

    async fn push_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<String> {
        self.guard(self.backend.push_image(reference, progress).await).await
    }

    async fn keep_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        self.guard(self.backend.keep_image(scope, image_id).await).await
    }

    async fn restore_image(&self, scope: &Scope, image_id: &str, reference: Option<&str>) -> Result<bool> {
        self.guard(self.backend.restore_image(scope, image_id, reference).await).await
    }

    async fn drop_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        self.guard(self.backend.drop_image(scope, image_id).await).await
    }
}

#[async_trait]
impl<B: LinkableBackend, L: Link<B>> RecordStore for Linked<B, L> {
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
        self.guard(self.backend.create_record(scope, record).await).await
    }

    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>> {
        self.guard(self.backend.list_records(scope, kind).await).await
    }

    async fn remove_record(&self, id: &str) -> Result<()> {
        self.guard(self.backend.remove_record(id).await).await
    }

    async fn clock(&self) -> Result<SystemTime> {
        self.guard(self.backend.clock().await).await
    }

    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
        self.guard(self.backend.read_state(scope).await).await
    }

    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
        self.guard(self.backend.write_state(scope, name, contents).await).await
    }

    async fn remove_state(&self, scope: &Scope) -> Result<()> {
        self.guard(self.backend.remove_state(scope).await).await
    }

    async fn release_state(&self, scope: &Scope) {
        self.backend.release_state(scope).await
    }
}

#[async_trait]
impl<B: LinkableBackend, L: Link<B>> InstanceFiles for Linked<B, L> {
    async fn write_file(&self, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        self.guard(self.backend.write_file(id, path, contents, mode).await).await
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>> {
        self.guard(self.backend.read_file(id, path).await).await
    }
}

#[async_trait]
impl<B: LinkableBackend, L: Link<B>> ImageShipping for Linked<B, L> {
    fn export_image(&self, image_id: &str) -> BoxStream<'static, Result<Bytes>> {
        self.backend.export_image(image_id)
    }

    async fn load_image(&self, archive: BoxStream<'static, Result<Bytes>>) -> Result<()> {
        let r = self.backend.load_image(archive).await;
        self.guard(r).await
    }
}
