//! Backends: where environments run. The engine talks to every target through one narrow
//! seam, the [`Backend`] trait (`runtime.rs`), and asks it for optional capabilities: an
//! [`InstanceRuntime`] that runs single instances (`instance_runtime.rs`) or, for targets that
//! roll out by themselves, an [`Orchestrator`] (`orchestrator.rs`); an [`ImageStore`]
//! (`images.rs`), a [`RecordStore`] for the lock and revisions (`records.rs`), [`InstanceFiles`]
//! (`files.rs`), a multi-host [`Topology`] (`topology.rs`) and [`ImageShipping`]. What a target
//! cannot honour of a description it says through one hook, [`Backend::limits`] ([`Limit`],
//! `limit.rs`). What every target wrote on what it owns is read by one codec (`label.rs`).
//!
//! Implementations: [`docker`] implements it for a Docker Engine (local socket or `DOCKER_HOST`),
//! [`ssh`] for a Docker Engine on a host reached over SSH (the same Docker code, over a forwarded
//! socket), [`fleet`] for several hosts at once, each instance on the host its role places it on,
//! [`swarm`] for a Docker Swarm (an [`Orchestrator`]), and [`fly`] for Fly.io's Machines API (a
//! cloud API: images by reference, records in a machine's metadata, checks run by Fly).
//!
//! A backend only does single, concrete operations (create this container, list those); the
//! decisions (what to create, in which order, when to stop the old one) are made by the
//! [`planner`](crate::plan) and the [`engine`](crate::engine), once for all backends.
//!
//! Everything a backend owns carries labels under [`LABEL_PREFIX`]; that is how `plan` finds what runs.

#[cfg(feature = "docker")]
pub mod docker;
mod files;
#[cfg(feature = "ssh")]
pub mod fleet;
#[cfg(feature = "fly")]
pub mod fly;
mod images;
mod instance;
mod instance_runtime;
pub(crate) mod label;
mod limit;
mod linked;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
mod orchestrator;
mod records;
mod runtime;
#[cfg(feature = "ssh")]
pub mod ssh;
#[cfg(feature = "swarm")]
pub mod swarm;
mod topology;

pub use crate::model::LABEL_PREFIX;
pub use files::InstanceFiles;
pub use images::{ImageInfo, ImageShipping, ImageStore};
pub use instance::{
    EngineHealth, ExecOutput, Instance, InstanceSpec, InstanceState, LogLine, LogStream, PublishedPort, Scope,
    DEFAULT_NETWORK,
};
pub use instance_runtime::InstanceRuntime;
pub use limit::Limit;
pub use linked::{Link, LinkableBackend, Linked};
pub use orchestrator::{NativeRollout, Orchestrator, ServiceDeployment};
pub use records::{NewRecord, Record, RecordStore, StateFile};
pub(crate) use runtime::{files_of, hosts_of, images_of, instances_of, records_of, shipping_of};
pub use runtime::{Backend, Capabilities};
pub use topology::{HostInfo, Topology};
