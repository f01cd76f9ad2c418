//! The typed model: what a user describes. Plain data with builders and validation; nothing here talks
//! to an engine.
//!
//! - [`Service`] / [`ServiceBuilder`]: one service or job, its image, config, ports, volumes, health check,
//!   dependencies and rollout.
//! - [`Environment`] / [`EnvironmentBuilder`]: the services deployed together under one project and name.
//! - [`HealthCheck`], [`Rollout`], [`Port`], [`Volume`], [`Resources`], [`Secret`], [`ContainerFile`]:
//!   their parts.
//! - [`ContainerOptions`]: what the containers run with beyond those (capabilities, namespaces,
//!   kernel settings, DNS, devices, the engine's own health check, logging).

mod container;
mod dependency;
mod environment;
mod file;
mod health;
mod image;
mod ingress;
pub mod limits;
pub(crate) mod name;
mod port;
mod reference;
mod resources;
mod rollout;
mod secret;
mod service;
mod volume;

pub use container::{
    ContainerOptions, Device, DeviceRequest, EngineHealthcheck, HostEntry, Logging, NetworkMode, Ulimit,
};
pub use dependency::{Condition, Dependency};
pub use environment::{Environment, EnvironmentBuilder};
pub(crate) use file::{hex, secret_file_key, FileRecord};
pub use file::{ContainerFile, DEFAULT_FILE_MODE};
pub use health::{HealthCheck, Probe};
pub(crate) use image::check_reference;
pub use image::{Build, BuildOptions, ImageSource, PullPolicy};
pub(crate) use ingress::{
    reload_command as ingress_reload_command, ADMIN_ADDRESS as INGRESS_ADMIN_ADDRESS,
    CONFIG_PATH as INGRESS_CONFIG_PATH, DRAIN_MARKER as INGRESS_DRAIN_MARKER, MIGRATE_SYSCTL, PRIVATE_RANGES,
    ROUTER_PORT as INGRESS_ROUTER_PORT,
};
pub use ingress::{Ingress, IngressBuilder, Route, Tls};
pub use port::{Port, Protocol, Publish};
pub use reference::ServiceRef;
pub use resources::{Resources, RestartPolicy};
pub use rollout::{Amount, CanaryStep, OnFailure, Rollout, Strategy};
pub(crate) use secret::secret_digest;
pub use secret::{Secret, SecretSource};
pub use service::{Service, ServiceBuilder, ServiceKind, LABEL_PREFIX};
pub use volume::{MountOptions, Propagation, Relabel, Volume, VolumeSource};
