//! [`Backend`]: the narrow runtime every target implements, and the optional capabilities it may
//! offer on top. The engine asks a target what it can do ([`Backend::capabilities`]) instead of
//! assuming Docker.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::{
    ExecOutput, ImageShipping, ImageStore, Instance, InstanceFiles, InstanceRuntime, Limit, LogLine, Orchestrator,
    RecordStore, Scope, Topology,
};
use crate::error::{Error, Result};
use crate::model::Service;

/// A target that runs services: the local Docker engine, a remote one over SSH, several hosts, a
/// swarm, a cloud API.
///
/// The required methods observe what runs (list, inspect, wait for an exit, logs, exec, where
/// to probe it) and keep the environment's network and volumes; [`limits`](Self::limits) says
/// what the target cannot honour of a description. How services get run is a capability: a
/// target either runs single instances ([`InstanceRuntime`]) or rolls whole services out by
/// itself ([`Orchestrator`]). Every capability is `None` unless the target has it:
///
/// | capability | what needs it |
/// |---|---|
/// | [`instances`](Self::instances): [`InstanceRuntime`] | the engine's own rollouts, jobs and recovery: create, start, stop, remove one instance |
/// | [`images`](Self::images): [`ImageStore`] | building, pulling, pinning and keeping images; without it images are passed by reference |
/// | [`records`](Self::records): [`RecordStore`] | the deploy lock, revisions, audit, rollback (every apply) |
/// | [`files`](Self::files): [`InstanceFiles`] | an [`Ingress`](crate::Ingress) (its configuration and certificates) |
/// | [`topology`](Self::topology): [`Topology`] | roles and placement over several hosts |
/// | [`shipping`](Self::shipping): [`ImageShipping`] | carrying local images to other engines |
/// | [`orchestrator`](Self::orchestrator): [`Orchestrator`] | a target that rolls out by itself |
///
/// Implementations enforce a deadline on every call they make (none may hang forever) and
/// return [`Error`]s that name what they were doing and to what, with a matchable
/// [`kind`](Error::kind).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short description for messages, such as `docker unix:///var/run/docker.sock`.
    fn describe(&self) -> String;

    /// Every instance the environment owns, in any state.
    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>>;

    /// One instance, freshly read.
    async fn inspect_instance(&self, id: &str) -> Result<Instance>;

    /// Resolves when the instance is not running any more, with its exit code.
    async fn wait_exit(&self, id: &str) -> Result<i64>;

    /// The last `lines` lines of its log.
    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>>;

    /// Its log as a stream; with `follow`, new lines as they are written.
    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>>;

    /// Runs a command inside the instance, bounded by `timeout`.
    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput>;

    /// Where the library reaches a container port of an instance for HTTP and TCP probes; `Ok(None)`
    /// if it cannot be reached at all (not published, no address).
    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>>;

    /// The host name at which published ports are reached (`127.0.0.1` for a local engine).
    fn published_host(&self) -> String;

    /// Creates the environment's network if missing; `true` if it was created.
    async fn ensure_network(&self, scope: &Scope) -> Result<bool>;

    /// Removes the environment's network; `true` if it existed.
    async fn remove_network(&self, scope: &Scope) -> Result<bool>;

    /// Creates a named volume of the environment if missing; `true` if it was created.
    async fn ensure_volume(&self, scope: &Scope, volume: &str) -> Result<bool>;

    /// Creates a named volume of the environment with these options of the `local` driver (NFS,
    /// tmpfs: [`MountOptions::driver_opts`](crate::MountOptions::driver_opts)) if missing; `true`
    /// if it was created. The default takes no options: it refuses any with
    /// [`Error::Unsupported`].
    async fn ensure_volume_with(
        &self,
        scope: &Scope,
        volume: &str,
        driver_opts: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool> {
        if driver_opts.is_empty() {
            return self.ensure_volume(scope, volume).await;
        }
        Err(Error::unsupported(
            self.describe(),
            format!("create volume {volume}"),
            "this target creates plain volumes only: driver options are not passed",
        ))
    }

    /// The target-side names of the environment's volumes.
    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>>;

    /// Removes a volume by its target-side name.
    async fn remove_volume(&self, name: &str) -> Result<()>;

    /// Every environment that owns something on the target (instances, a network, volumes,
    /// records), each with the marks found on what it owns: what
    /// [`environments`](crate::environments) lists, from any process. The default answers
    /// [`Error::Unsupported`].
    async fn environments(&self) -> Result<Vec<Scope>> {
        Err(Error::unsupported(self.describe(), "list the environments it holds", "this target cannot enumerate them"))
    }

    /// Checks, before an operation changes anything, that the target can carry it out (every host
    /// reachable, its engine answering, disk space left). The default checks nothing.
    async fn preflight(&self) -> Result<()> {
        Ok(())
    }

    /// What the target cannot honour of `service`'s description, or honours differently, said
    /// before anything changes: [`Plan::limits`](crate::Plan::limits) lists them, and an apply
    /// refuses to start while any is [`refused`](Limit::refused). The one place every target
    /// says so (a swarm's rollout settings, the checks a cloud API cannot run, the Docker
    /// engine's minimum memory). The default: everything is honoured.
    fn limits(&self, service: &Service) -> Vec<Limit> {
        let _ = service;
        Vec::new()
    }

    /// Whether the target runs each instance's HTTP and TCP health check itself (from
    /// [`InstanceSpec::health`](super::InstanceSpec::health)) and reports the result as [`Instance::engine_health`]: the library
    /// then reads that result instead of probing the instance, which it may not be able to reach
    /// (a cloud's private network). Default `false`.
    fn reports_health(&self) -> bool {
        false
    }

    /// Its image store, if it keeps images itself.
    fn images(&self) -> Option<&dyn ImageStore> {
        None
    }

    /// For a target without an image store of its own (a cloud API that pulls from registries): a
    /// local image store that builds the services' images and pushes them to their registry, so
    /// the target pulls them by digest. `None` (the default): builds are refused there.
    fn image_builder(&self) -> Option<&dyn ImageStore> {
        None
    }

    /// Its record store (the deploy lock, revisions, audit), if it has one.
    fn records(&self) -> Option<&dyn RecordStore> {
        None
    }

    /// Files into instances, if it can.
    fn files(&self) -> Option<&dyn InstanceFiles> {
        None
    }

    /// Its hosts, if it places instances on several.
    fn topology(&self) -> Option<&dyn Topology> {
        None
    }

    /// Image shipping to other engines, if it can.
    fn shipping(&self) -> Option<&dyn ImageShipping> {
        None
    }

    /// Its runtime of single instances, if the engine runs instances there one by one.
    fn instances(&self) -> Option<&dyn InstanceRuntime> {
        None
    }

    /// Its own rollout, if it rolls services out by itself.
    fn orchestrator(&self) -> Option<&dyn Orchestrator> {
        None
    }

    /// What it can do, for messages and for callers that choose a path by capability.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            instances: self.instances().is_some(),
            images: self.images().is_some(),
            records: self.records().is_some(),
            files: self.files().is_some(),
            topology: self.topology().is_some(),
            shipping: self.shipping().is_some(),
            orchestrator: self.orchestrator().is_some(),
        }
    }
}

/// Which optional capabilities a target has ([`Backend::capabilities`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// [`Backend::instances`].
    pub instances: bool,
    /// [`Backend::images`].
    pub images: bool,
    /// [`Backend::records`].
    pub records: bool,
    /// [`Backend::files`].
    pub files: bool,
    /// [`Backend::topology`].
    pub topology: bool,
    /// [`Backend::shipping`].
    pub shipping: bool,
    /// [`Backend::orchestrator`].
    pub orchestrator: bool,
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = [
            (self.instances, "instances"),
            (self.images, "images"),
            (self.records, "records"),
            (self.files, "files"),
            (self.topology, "topology"),
            (self.shipping, "shipping"),
            (self.orchestrator, "orchestrator"),
        ];
        let names: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        write!(f, "runtime{}{}", if names.is_empty() { "" } else { " + " }, names.join(" + "))
    }
}

/// The target's runtime of single instances, or why the engine cannot run instances there one
/// by one (a target that rolls services out by itself).
pub(crate) fn instances_of<'a>(backend: &'a dyn Backend, what: &str) -> Result<&'a dyn InstanceRuntime> {
    backend.instances().ok_or_else(|| {
        Error::unsupported(
            backend.describe(),
            what,
            "it runs no single instances: it rolls whole services out by itself (an orchestrator)",
        )
    })
}

/// The target's record store, or why an operation that needs one cannot run there.
pub(crate) fn records_of<'a>(backend: &'a dyn Backend, what: &str) -> Result<&'a dyn RecordStore> {
    backend.records().ok_or_else(|| {
        Error::unsupported(
            backend.describe(),
            what,
            "it keeps no records, so it cannot hold the deploy lock, revisions or the audit trail",
        )
    })
}

/// The target's hosts, empty for a single-host target.
pub(crate) fn hosts_of(backend: &dyn Backend) -> Vec<super::HostInfo> {
    backend.topology().map(|t| t.hosts()).unwrap_or_default()
}

/// The target's image store, or why it cannot keep images.
pub(crate) fn images_of(backend: &dyn Backend) -> Result<&dyn ImageStore> {
    backend.images().ok_or_else(|| {
        Error::unsupported(backend.describe(), "keep images", "it has no image store of its own; use registry images")
    })
}

/// Files into the target's instances, or why it cannot.
pub(crate) fn files_of(backend: &dyn Backend) -> Result<&dyn InstanceFiles> {
    backend.files().ok_or_else(|| {
        Error::unsupported(
            backend.describe(),
            "write files into instances",
            "it cannot put files into its instances (an ingress needs that)",
        )
    })
}

/// The target's image shipping, or why it cannot ship images.
pub(crate) fn shipping_of(backend: &dyn Backend) -> Result<&dyn ImageShipping> {
    backend.shipping().ok_or_else(|| {
        Error::unsupported(backend.describe(), "export or load images", "it cannot export or load image archives")
    })
}
