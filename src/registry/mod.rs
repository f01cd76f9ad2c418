//! Images in registries: references, credentials, and what a pull's progress and failures mean.
//!
//! - `reference.rs`: [`ImageRef`], a reference split as Docker reads it (registry, repository,
//!   tag, digest) and pinned to a digest.
//! - `auth.rs`: [`RegistryAuth`], typed credentials per registry.
//! - `registries.rs`: the order credentials are looked up in (given to the backend, then the
//!   Docker CLI's).
//! - `docker_config.rs`: `~/.docker/config.json` (`auths`, `credsStore`, `credHelpers` through the
//!   `docker-credential-*` helpers), read as the Docker CLI reads it.
//! - `progress.rs`: [`PullProgress`], summed over layers.
//! - `failure.rs`: an engine's pull or push error mapped onto
//!   [`RegistryErrorKind`](crate::error::RegistryErrorKind).
//!
//! The engine does the transfers (`backend/docker/pull.rs`); this module holds what is decided
//! about them, so it is unit-tested without one.

mod auth;
pub(crate) mod docker_config;
pub(crate) mod failure;
mod progress;
mod reference;
mod registries;

pub use auth::RegistryAuth;
pub(crate) use auth::{Credential, Found};
pub use progress::PullProgress;
pub(crate) use progress::Tally;
pub use reference::ImageRef;
pub(crate) use registries::Registries;
