//! Which credentials a backend uses for a registry: those given per registry first, then (unless
//! turned off) the Docker CLI's configuration ([`docker_config`](super::docker_config)).

use std::collections::BTreeMap;

use super::auth::{Found, RegistryAuth};

/// The credentials a backend uses: those given per registry, then (unless turned off) the Docker
/// CLI's configuration.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registries {
    given: BTreeMap<String, RegistryAuth>,
    /// Whether `~/.docker/config.json` is read for registries with nothing given.
    pub docker_config: bool,
}

impl Registries {
    /// Reads the Docker CLI's configuration for registries with nothing given.
    pub(crate) fn new() -> Registries {
        Registries { given: BTreeMap::new(), docker_config: true }
    }

    /// Uses `auth` for `registry` (`registry.example.com:5000`, `docker.io`; a URL is reduced to its host).
    pub(crate) fn give(&mut self, registry: &str, auth: RegistryAuth) {
        self.given.insert(super::docker_config::normalize(registry), auth);
    }

    /// The credentials for `registry`, if any: given ones first, then the Docker configuration's.
    pub(crate) async fn find(&self, registry: &str) -> Option<Found> {
        let key = super::docker_config::normalize(registry);
        if let Some(auth) = self.given.get(&key) {
            return Some(Found { auth: auth.clone(), source: "given to the backend".into() });
        }
        if !self.docker_config {
            return None;
        }
        match super::docker_config::lookup(&key).await {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(registry = %key, %why, "registry credentials from the Docker configuration unavailable");
                None
            }
        }
    }
}
