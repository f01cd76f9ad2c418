//! Backends: where environments run. The engine talks to every target through one narrow
//! runtime, the [`Backend`] trait (`runtime.rs`), and asks it for optional capabilities: an
//! [`ImageStore`] (`images.rs`), a [`RecordStore`] for the lock and revisions (`records.rs`),
//! [`InstanceFiles`] (`files.rs`), a multi-host [`Topology`] (`topology.rs`), [`ImageShipping`],
//! and, for targets that roll out by themselves, an [`Orchestrator`] (`orchestrator.rs`).
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
pub(crate) mod label;
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
pub use orchestrator::{Limit, NativeRollout, Orchestrator, ServiceDeployment};
pub use records::{NewRecord, Record, RecordStore, StateFile};
pub(crate) use runtime::{files_of, hosts_of, images_of, records_of, shipping_of};
pub use runtime::{Backend, Capabilities};
pub use topology::{HostInfo, Topology};
