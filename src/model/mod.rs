//! The typed model: what a user describes. Plain data with builders and validation; nothing here talks
//! to an engine.
//!
//! - [`Service`] / [`ServiceBuilder`]: one service or job, its image, config, ports, volumes, health check,
//!   dependencies and rollout.
//! - [`Environment`] / [`EnvironmentBuilder`]: the services deployed together under one project and name.
//! - [`HealthCheck`], [`Rollout`], [`Port`], [`Volume`], [`Resources`], [`Secret`]: their parts.

mod dependency;
mod environment;
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

pub use dependency::{Condition, Dependency};
pub use environment::{Environment, EnvironmentBuilder};
pub use health::{HealthCheck, Probe};
pub(crate) use image::check_reference;
pub use image::{Build, ImageSource, PullPolicy};
pub use ingress::{Ingress, IngressBuilder, Route, Tls};
pub(crate) use ingress::{CONFIG_PATH as INGRESS_CONFIG_PATH, ROUTER_PORT as INGRESS_ROUTER_PORT};
pub use port::{Port, Protocol, Publish};
pub use reference::ServiceRef;
pub use resources::{Resources, RestartPolicy};
pub use rollout::{Amount, CanaryStep, OnFailure, Rollout, Strategy};
pub use secret::{secret_digest, Secret, SecretSource};
pub use service::{Service, ServiceBuilder, ServiceKind, LABEL_PREFIX};
pub use volume::{Volume, VolumeSource};
