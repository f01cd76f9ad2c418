//! The fleet: several hosts as one backend, each instance on the host its role places it on.
//!
//! A [`Fleet`] holds named hosts (each any [`Backend`]: usually an [`SshHost`](crate::SshHost), or
//! the local engine) and routes every call to the host it concerns: an instance's ID carries its
//! host (`app-1/3f2a…`), a new instance goes to [`InstanceSpec::host`], which the engine fills in
//! from the environment's roles ([`EnvironmentBuilder::hosts`](crate::EnvironmentBuilder::hosts)).
//! The engine above it is the same as for one engine: plans, rollouts and rollbacks see all
//! instances of a service, wherever they run, so a rollout that fails on one host is rolled back on
//! every host it reached.
//!
//! - Images: see `images.rs` (shipped from the image source, only to hosts that lack them).
//! - Records and state (deploy lock, revisions, audit, kept images) live on the primary host, the
//!   first one added, so one lock covers the whole fleet.
//! - Networks: each host has the environment's network; services on the same host reach each
//!   other by name, across hosts by the other host's address and published port
//!   ([`ServiceRef`](crate::ServiceRef)).

mod images;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::join_all;
use futures::stream::BoxStream;

use super::{files_of, images_of, records_of, shipping_of};
use super::{
    Backend, ExecOutput, HostInfo, ImageShipping, ImageStore, Instance, InstanceFiles, InstanceRuntime, InstanceSpec,
    LogLine, NewRecord, Record, RecordStore, Scope, StateFile, Topology,
};
use crate::error::{Error, Result};
use crate::model::Build;

/// One host of the fleet.
#[derive(Clone)]
pub(crate) struct Member {
    pub name: String,
    pub address: String,
    pub backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").field("name", &self.name).field("backend", &self.backend.describe()).finish()
    }
}

/// Several hosts as one [`Backend`]; services are placed on them by role.
///
/// ```no_run
/// # async fn f() -> harbormaster::Result<()> {
/// use harbormaster::{DockerBackend, Environment, Fleet, Service, SshHost};
/// let (a, b) = futures::future::try_join(SshHost::builder("app-1").connect(), SshHost::builder("db-1").connect()).await?;
/// let fleet = Fleet::builder()
///     .host(a) // the primary: deploy lock, revisions and audit live here
///     .host(b)
///     .images_from(DockerBackend::connect().await?) // images built here are shipped as needed
///     .build()?;
/// let env = Environment::builder("shop", "production")
///     .hosts("app", ["app-1"])
///     .hosts("db", ["db-1"])
///     .service(Service::builder("db").image("local/postgres:15").role("db").build()?)
///     .service(Service::builder("api").image("local/api:2").role("app").build()?)
///     .build()?;
/// env.apply(&fleet).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Fleet {
    members: Arc<Vec<Member>>,
    source: Option<Arc<dyn Backend>>,
    shipments: Arc<images::Shipments>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("hosts", &self.members)
            .field("images_from", &self.source.as_ref().map(|s| s.describe()))
            .finish()
    }
}

/// Builder for [`Fleet`].
#[must_use]
#[derive(Default)]
pub struct FleetBuilder {
    members: Vec<Member>,
    source: Option<Arc<dyn Backend>>,
}

impl std::fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBuilder").field("members", &self.members).finish()
    }
}

/// A host that can join a fleet: it has a name and an address for its published ports.
pub trait FleetHost: Backend {
    /// The host's name, as roles map to it.
    fn host_name(&self) -> String;
}

impl FleetHost for crate::backend::ssh::SshHost {
    fn host_name(&self) -> String {
        self.name().to_string()
    }
}

impl FleetBuilder {
    /// Adds a connected SSH host (or any [`FleetHost`]) under its own name. The first host added is
    /// the primary.
    pub fn host(self, host: impl FleetHost) -> Self {
        let name = host.host_name();
        self.named_host(name, host)
    }

    /// Adds any backend as host `name` (the local engine, say, as a host of its own).
    pub fn named_host(mut self, name: impl Into<String>, backend: impl Backend) -> Self {
        let address = backend.published_host();
        self.members.push(Member { name: name.into(), address, backend: Arc::new(backend) });
        self
    }

    /// The engine that has the images the services name (usually the local one, where they are
    /// built). Without it, each host must already have them, with the same IDs.
    pub fn images_from(mut self, source: impl Backend) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The fleet; fails if it has no host, or two hosts share a name.
    pub fn build(self) -> Result<Fleet> {
        if self.members.is_empty() {
            return Err(Error::backend("build fleet", "fleet", "a fleet needs at least one host"));
        }
        for (i, m) in self.members.iter().enumerate() {
            crate::model::name::check("host", &m.name)?;
            if self.members[..i].iter().any(|o| o.name == m.name) {
                return Err(Error::backend("build fleet", &m.name, "two hosts have this name"));
            }
        }
        Ok(Fleet { members: Arc::new(self.members), source: self.source, shipments: Default::default() })
    }
}

/// `host/id` into its parts.
fn split(id: &str) -> Option<(&str, &str)> {
    id.split_once('/')
}

/// `spec` as the member `host` reads it: the other containers it names (the one whose network
/// namespace it joins, the one whose anonymous volumes it takes over) by their IDs on that host.
fn local_spec<'s>(spec: &'s InstanceSpec, host: &str) -> std::borrow::Cow<'s, InstanceSpec> {
    let local = |id: &str| split(id).filter(|(h, _)| *h == host).map(|(_, local)| local.to_string());
    let joined = match &spec.container.network_mode {
        Some(crate::model::NetworkMode::Container(id)) => local(id),
        _ => None,
    };
    let inherited = spec.inherit_volumes_from.as_deref().and_then(local);
    if joined.is_none() && inherited.is_none() {
        return std::borrow::Cow::Borrowed(spec);
    }
    let mut s = spec.clone();
    if let Some(id) = joined {
        s.container.network_mode = Some(crate::model::NetworkMode::Container(id));
    }
    if inherited.is_some() {
        s.inherit_volumes_from = inherited;
    }
    std::borrow::Cow::Owned(s)
}

impl Fleet {
    /// A builder.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    /// The hosts' names, the primary first.
    pub fn host_names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// How many images this fleet's hosts have pulled from a registry themselves so far.
    pub fn images_pulled_by_hosts(&self) -> u64 {
        self.shipments.pulled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many images this fleet has shipped to its hosts so far.
    pub fn images_shipped(&self) -> u64 {
        self.shipments.shipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn primary(&self) -> &Member {
        // `build` refuses an empty fleet.
        &self.members[0]
    }

    fn member(&self, name: &str) -> Result<&Member> {
        self.members.iter().find(|m| m.name == name).ok_or_else(|| {
            Error::backend(
                "route",
                name,
                format!("the fleet has no host `{name}` (hosts: {})", self.host_names().join(", ")),
            )
        })
    }

    /// The host of an instance ID, and the ID on that host.
    fn route<'a>(&self, id: &'a str) -> Result<(&Member, &'a str)> {
        let (host, local) =
            split(id).ok_or_else(|| Error::backend("route", id, "not an instance ID of this fleet (host/id)"))?;
        Ok((self.member(host)?, local))
    }

    fn tag(m: &Member, mut i: Instance) -> Instance {
        i.id = format!("{}/{}", m.name, i.id);
        i.host = Some(m.name.clone());
        for p in &mut i.published {
            if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" || p.host_ip == "::" {
                p.host_ip = m.address.clone();
            }
        }
        i
    }

    /// Runs `f` on every host concurrently; the first error (naming its host) wins.
    async fn each<'a, T, F, Fut>(&'a self, f: F) -> Result<Vec<(&'a Member, T)>>
    where
        F: Fn(&'a Member) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let results = join_all(self.members.iter().map(|m| {
            let fut = f(m);
            async move { (m, fut.await) }
        }))
        .await;
        let mut out = Vec::with_capacity(results.len());
        for (m, r) in results {
            out.push((m, on(m, r)?));
        }
        Ok(out)
    }
}

/// An error on host `m` says so.
/// A member's runtime of single instances (every fleet host is a Docker engine: it has one).
fn runtime(m: &Member) -> Result<&dyn InstanceRuntime> {
    on(m, super::instances_of(m.backend.as_ref(), &format!("run instances on {}", m.name)))
}

fn on<T>(m: &Member, r: Result<T>) -> Result<T> {
    r.map_err(|e| match e {
        e
        @ (Error::HostUnreachable { .. } | Error::HostKey { .. } | Error::HostCheck { .. } | Error::OnHost { .. }) => e,
        e => Error::OnHost { host: m.name.clone(), source: Box::new(e) },
    })
}

#[async_trait]
impl Backend for Fleet {
    fn describe(&self) -> String {
        format!("fleet of {} host(s): {}", self.members.len(), self.host_names().join(", "))
    }

    fn limits(&self, service: &crate::model::Service) -> Vec<crate::backend::Limit> {
        // What any host refuses, once.
        let mut all: Vec<crate::backend::Limit> = Vec::new();
        for l in self.members.iter().flat_map(|m| m.backend.limits(service)) {
            if !all.contains(&l) {
                all.push(l);
            }
        }
        all
    }

    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>> {
        let all = self.each(|m| m.backend.list_instances(scope)).await?;
        Ok(all.into_iter().flat_map(|(m, list)| list.into_iter().map(move |i| Fleet::tag(m, i))).collect())
    }

    async fn inspect_instance(&self, id: &str) -> Result<Instance> {
        let (m, local) = self.route(id)?;
        Ok(Fleet::tag(m, on(m, m.backend.inspect_instance(local).await)?))
    }

    async fn ensure_network(&self, scope: &Scope) -> Result<bool> {
        Ok(self.each(|m| m.backend.ensure_network(scope)).await?.into_iter().any(|(_, c)| c))
    }

    async fn remove_network(&self, scope: &Scope) -> Result<bool> {
        Ok(self.each(|m| m.backend.remove_network(scope)).await?.into_iter().any(|(_, c)| c))
    }

    async fn ensure_volume(&self, _scope: &Scope, _volume: &str) -> Result<bool> {
        // Volumes are made on the host that needs them, when an instance using them is created.
        Ok(false)
    }

    async fn ensure_volume_with(
        &self,
        _scope: &Scope,
        _volume: &str,
        _driver_opts: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool> {
        // Made with their options on the host that needs them, as above.
        Ok(false)
    }

    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>> {
        let all = self.each(|m| m.backend.list_volumes(scope)).await?;
        Ok(all.into_iter().flat_map(|(m, v)| v.into_iter().map(move |n| format!("{}/{n}", m.name))).collect())
    }

    async fn environments(&self) -> Result<Vec<Scope>> {
        let mut all: Vec<Scope> = Vec::new();
        for (_, found) in self.each(|m| m.backend.environments()).await? {
            for scope in found {
                match all.iter_mut().find(|s| **s == scope) {
                    Some(known) if known.marks.is_empty() => known.marks = scope.marks,
                    Some(_) => {}
                    None => all.push(scope),
                }
            }
        }
        all.sort_by(|a, b| (&a.project, &a.environment).cmp(&(&b.project, &b.environment)));
        Ok(all)
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let (m, local) = self.route(name)?;
        on(m, m.backend.remove_volume(local).await)
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        let (m, local) = self.route(id)?;
        on(m, m.backend.wait_exit(local).await)
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        let (m, local) = self.route(id)?;
        on(m, m.backend.logs_tail(local, lines).await)
    }

    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>> {
        match self.route(id) {
            Ok((m, local)) => m.backend.logs(local, follow, tail),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        let (m, local) = self.route(id)?;
        on(m, m.backend.exec(local, command, timeout).await)
    }

    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        let (m, local) = self.route(&instance.id)?;
        let mut i = instance.clone();
        i.id = local.to_string();
        on(m, m.backend.probe_address(&i, port).await)
    }

    fn published_host(&self) -> String {
        self.primary().address.clone()
    }

    async fn preflight(&self) -> Result<()> {
        self.each(|m| m.backend.preflight()).await.map(|_| ())
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
        Some(self)
    }

    fn shipping(&self) -> Option<&dyn ImageShipping> {
        Some(self)
    }

    fn instances(&self) -> Option<&dyn InstanceRuntime> {
        Some(self)
    }
}

#[async_trait]
impl InstanceRuntime for Fleet {
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<String> {
        let m = match (&spec.host, self.members.len()) {
            (Some(h), _) => self.member(h)?,
            (None, 1) => self.primary(),
            (None, _) => {
                return Err(Error::Placement {
                    service: spec.service.clone(),
                    reason: format!(
                        "the fleet has {} hosts and the service has no role placing it on one; give it \
                         `ServiceBuilder::role` and map the role with `EnvironmentBuilder::hosts`",
                        self.members.len()
                    ),
                })
            }
        };
        on(
            m,
            self.shipments
                .ensure(self.source.as_ref(), Some(self.primary()), m, &spec.image_id, spec.image_pull.as_deref())
                .await,
        )?;
        for v in &spec.volumes {
            if let Some(name) = v.volume_name() {
                on(m, m.backend.ensure_volume_with(&spec.scope, name, &v.options.driver_opts).await)?;
            }
        }
        let id = on(m, runtime(m)?.create_instance(&local_spec(spec, &m.name)).await)?;
        Ok(format!("{}/{id}", m.name))
    }

    async fn start_instance(&self, id: &str) -> Result<()> {
        let (m, local) = self.route(id)?;
        on(m, runtime(m)?.start_instance(local).await)
    }

    async fn stop_instance(&self, id: &str, grace: Duration) -> Result<()> {
        let (m, local) = self.route(id)?;
        on(m, runtime(m)?.stop_instance(local, grace).await)
    }

    async fn remove_instance(&self, id: &str) -> Result<()> {
        let (m, local) = self.route(id)?;
        on(m, runtime(m)?.remove_instance(local).await)
    }

    async fn check_spec(&self, spec: &InstanceSpec) -> Result<()> {
        // On the host the instance goes to (the primary for an unplaced one on a one-host fleet).
        let m = match &spec.host {
            Some(h) => self.member(h)?,
            None => self.primary(),
        };
        on(m, runtime(m)?.check_spec(spec).await)
    }
}

#[async_trait]
impl ImageStore for Fleet {
    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        if let Some(source) = &self.source {
            return images_of(&**source)?.image_id(reference).await;
        }
        let found = self.each(|m| async move { images_of(&*m.backend)?.image_id(reference).await }).await?;
        let mut ids: Vec<(&str, String)> =
            found.into_iter().filter_map(|(m, id)| id.map(|id| (m.name.as_str(), id))).collect();
        ids.dedup_by(|a, b| a.1 == b.1);
        match ids.as_slice() {
            [] => Ok(None),
            [(_, id)] => Ok(Some(id.clone())),
            [(h1, a), (h2, b), ..] => Err(Error::backend(
                "inspect image",
                reference,
                format!("hosts disagree on what it is ({h1}: {a}, {h2}: {b}); give the fleet an image source"),
            )),
        }
    }

    async fn image_info(&self, reference: &str) -> Result<Option<crate::backend::ImageInfo>> {
        match &self.source {
            Some(source) => images_of(&**source)?.image_info(reference).await,
            None => Ok(match self.image_id(reference).await? {
                Some(id) => on(self.primary(), images_of(&*self.primary().backend)?.image_info(&id).await)?,
                None => None,
            }),
        }
    }

    /// Pulled where the fleet's images come from (its image source, else its primary host), to
    /// learn the image's ID and digest; each host then pulls it by digest when it first needs it.
    async fn pull_image(
        &self,
        reference: &str,
        progress: &(dyn Fn(crate::registry::PullProgress) + Send + Sync),
    ) -> Result<crate::backend::ImageInfo> {
        match &self.source {
            Some(source) => images_of(&**source)?.pull_image(reference, progress).await,
            None => on(self.primary(), images_of(&*self.primary().backend)?.pull_image(reference, progress).await),
        }
    }

    async fn registry_digest(&self, reference: &str) -> Result<Option<String>> {
        match &self.source {
            Some(source) => images_of(&**source)?.registry_digest(reference).await,
            None => on(self.primary(), images_of(&*self.primary().backend)?.registry_digest(reference).await),
        }
    }

    async fn push_image(
        &self,
        reference: &str,
        progress: &(dyn Fn(crate::registry::PullProgress) + Send + Sync),
    ) -> Result<String> {
        match &self.source {
            Some(source) => images_of(&**source)?.push_image(reference, progress).await,
            None => on(self.primary(), images_of(&*self.primary().backend)?.push_image(reference, progress).await),
        }
    }

    async fn build_image(&self, build: &Build, tag: &str) -> Result<String> {
        match &self.source {
            Some(source) => images_of(&**source)?.build_image(build, tag).await,
            None => Err(Error::ImageBuild {
                tag: tag.to_string(),
                message: "a fleet builds images on its image source (FleetBuilder::images_from) and ships them".into(),
                log: Vec::new(),
            }),
        }
    }

    async fn keep_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        // Kept on the primary, with the records: shipped there first if it lacks the image.
        let m = self.primary();
        on(m, self.shipments.ensure(self.source.as_ref(), None, m, image_id, None).await)?;
        on(m, images_of(&*m.backend)?.keep_image(scope, image_id).await)
    }

    async fn restore_image(&self, scope: &Scope, image_id: &str, reference: Option<&str>) -> Result<bool> {
        // The image source (where images are built) may still have it; else the primary's copy.
        if let Some(source) = &self.source {
            if images_of(&**source)?.image_id(image_id).await?.is_some() {
                return Ok(true);
            }
        }
        let m = self.primary();
        on(m, images_of(&*m.backend)?.restore_image(scope, image_id, reference).await)
    }

    async fn drop_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        let m = self.primary();
        on(m, images_of(&*m.backend)?.drop_image(scope, image_id).await)
    }
}

#[async_trait]
impl RecordStore for Fleet {
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
        let m = self.primary();
        on(m, records_of(&*m.backend, "create record")?.create_record(scope, record).await)
    }

    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>> {
        let m = self.primary();
        on(m, records_of(&*m.backend, "list records")?.list_records(scope, kind).await)
    }

    async fn remove_record(&self, id: &str) -> Result<()> {
        let m = self.primary();
        on(m, records_of(&*m.backend, "remove record")?.remove_record(id).await)
    }

    async fn clock(&self) -> Result<std::time::SystemTime> {
        let m = self.primary();
        on(m, records_of(&*m.backend, "clock")?.clock().await)
    }

    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
        let m = self.primary();
        on(m, records_of(&*m.backend, "read state")?.read_state(scope).await)
    }

    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
        let m = self.primary();
        on(m, records_of(&*m.backend, "write state")?.write_state(scope, name, contents).await)
    }

    async fn remove_state(&self, scope: &Scope) -> Result<()> {
        let m = self.primary();
        on(m, records_of(&*m.backend, "remove state")?.remove_state(scope).await)
    }

    async fn release_state(&self, scope: &Scope) {
        if let Ok(r) = records_of(&*self.primary().backend, "release state") {
            r.release_state(scope).await
        }
    }
}

#[async_trait]
impl InstanceFiles for Fleet {
    async fn write_file(&self, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()> {
        let (m, local) = self.route(id)?;
        on(m, files_of(&*m.backend)?.write_file(local, path, contents, mode).await)
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>> {
        let (m, local) = self.route(id)?;
        on(m, files_of(&*m.backend)?.read_file(local, path).await)
    }
}

impl Topology for Fleet {
    fn hosts(&self) -> Vec<HostInfo> {
        self.members.iter().map(|m| HostInfo { name: m.name.clone(), address: m.address.clone() }).collect()
    }
}

#[async_trait]
impl ImageShipping for Fleet {
    fn export_image(&self, image_id: &str) -> BoxStream<'static, Result<Bytes>> {
        let from = self.source.as_ref().unwrap_or(&self.primary().backend);
        match shipping_of(&**from) {
            Ok(s) => s.export_image(image_id),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    async fn load_image(&self, archive: BoxStream<'static, Result<Bytes>>) -> Result<()> {
        drop(archive);
        Err(Error::unsupported(
            self.describe(),
            "load an image archive",
            "a fleet ships images to the host that needs them; load it on that host",
        ))
    }
}
