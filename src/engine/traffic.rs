//! Which instances receive traffic, and telling the ingress.
//!
//! The ingress has two tiers of Caddy. The *front* holds the published ports and TLS; its
//! configuration changes only when routes or TLS do. The *router* holds the routes and the rotation.
//! The front opens a new connection to the router per request, so reconfiguring the router (which
//! makes Caddy close its idle connections) never closes a connection a client holds.
//!
//! [`Traffic`] holds the rotation of every routed service during an apply. Each change is pushed to
//! every router instance at once (the file is written into the container, then `caddy reload` loads
//! it through the admin API on the container's loopback). Services without an ingress route are
//! reached by their DNS name on the environment network; for them, leaving rotation means stopping.

use std::time::Duration;

use tokio::sync::Mutex;

use super::promotion::Pending;
use crate::backend::{Backend, Instance};
use crate::error::{Error, Result};
use crate::ingress::config::{self, Rotation, Upstream};
use crate::model::{Ingress, INGRESS_CONFIG_PATH};

/// How long loading a configuration into a proxy may take.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct Traffic<'a> {
    backend: &'a dyn Backend,
    ingress: Option<&'a Ingress>,
    state: Mutex<State>,
}

struct State {
    rotation: Rotation,
    /// IDs of the router instances, which receive every rotation change.
    proxies: Vec<String>,
    /// IDs of the running front instances, which only change with routes or TLS.
    fronts: Vec<String>,
}

impl<'a> Traffic<'a> {
    /// Starts from what runs: every running instance of a routed service is in rotation, except
    /// where a rollout waits for its promotion (`pending`): there, the waiting weights hold.
    pub(crate) fn new(
        backend: &'a dyn Backend,
        ingress: Option<&'a Ingress>,
        observed: &[Instance],
        pending: &[Pending],
    ) -> Self {
        let mut rotation = Rotation::new();
        let (mut proxies, mut fronts) = (Vec::new(), Vec::new());
        if let Some(ing) = ingress {
            for i in observed.iter().filter(|i| i.is_running()) {
                if i.service == ing.router.name {
                    proxies.push(i.id.clone());
                } else if i.service == ing.service.name {
                    fronts.push(i.id.clone());
                } else if ing.routes_to(&i.service) {
                    rotation
                        .entry(i.service.clone())
                        .or_default()
                        .push(Upstream { instance: i.name.clone(), weight: 1 });
                }
            }
            for p in pending.iter().filter(|p| ing.routes_to(&p.service)) {
                rotation.insert(p.service.clone(), p.rotation(observed));
            }
        }
        Traffic { backend, ingress, state: Mutex::new(State { rotation, proxies, fronts }) }
    }

    /// Whether the ingress routes to `service` (so rotation changes go through it).
    pub(crate) fn routed(&self, service: &str) -> bool {
        self.ingress.is_some_and(|i| i.routes_to(service))
    }

    /// Whether `service` is the ingress's router tier (which receives rotation changes).
    pub(crate) fn is_proxy(&self, service: &str) -> bool {
        self.ingress.is_some_and(|i| i.router.name == service)
    }

    /// Whether `service` is the ingress's front tier.
    pub(crate) fn is_front(&self, service: &str) -> bool {
        self.ingress.is_some_and(|i| i.service.name == service)
    }

    /// The instances of `service` in rotation now.
    pub(crate) async fn members(&self, service: &str) -> Vec<Upstream> {
        self.state.lock().await.rotation.get(service).cloned().unwrap_or_default()
    }

    /// Replaces the rotation of `service` and tells every proxy; returns when they have loaded it.
    pub(crate) async fn set(&self, service: &str, members: Vec<Upstream>) -> Result<()> {
        if !self.routed(service) {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        state.rotation.insert(service.to_string(), members);
        let proxies = state.proxies.clone();
        self.push(&state.rotation, &proxies).await
    }

    /// Adds instances to the rotation of `service` with weight 1.
    pub(crate) async fn enter(&self, service: &str, instances: &[&Instance]) -> Result<()> {
        let mut members = self.members(service).await;
        for i in instances {
            if !members.iter().any(|m| m.instance == i.name) {
                members.push(Upstream { instance: i.name.clone(), weight: 1 });
            }
        }
        self.set(service, members).await
    }

    /// Takes instances out of the rotation of `service`, then waits `drain` so requests in flight
    /// finish (only for routed services: others are not reachable through a proxy).
    pub(crate) async fn leave(&self, service: &str, instances: &[&Instance], drain: Duration) -> Result<()> {
        if !self.routed(service) || instances.is_empty() {
            return Ok(());
        }
        let mut members = self.members(service).await;
        members.retain(|m| !instances.iter().any(|i| i.name == m.instance));
        self.set(service, members).await?;
        tokio::time::sleep(drain).await;
        Ok(())
    }

    /// Loads the current configuration into every running router and front whose configuration
    /// differs (routes may have changed); one that already has it is not reloaded.
    pub(crate) async fn sync(&self) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let state = self.state.lock().await;
        let router = caddy_json(ingress, &config::render(ingress, &state.rotation))?;
        let front = caddy_json(ingress, &config::render_front(ingress))?;
        for (body, ids) in [(&router, &state.proxies), (&front, &state.fronts)] {
            let mut stale = Vec::new();
            for id in ids {
                if self.backend.read_file(id, INGRESS_CONFIG_PATH).await?.as_deref() != Some(body.as_slice()) {
                    stale.push(id.clone());
                }
            }
            self.load(ingress, body, &stale).await?;
        }
        Ok(())
    }

    /// Writes the current router configuration into a created (not yet started) router instance,
    /// which loads it when it starts.
    pub(crate) async fn prepare_proxy(&self, id: &str) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let body = caddy_json(ingress, &config::render(ingress, &self.state.lock().await.rotation))?;
        self.backend.write_file(id, INGRESS_CONFIG_PATH, &body, 0o644).await
    }

    /// Writes the front configuration into a created (not yet started) front instance.
    pub(crate) async fn prepare_front(&self, id: &str) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let body = caddy_json(ingress, &config::render_front(ingress))?;
        self.backend.write_file(id, INGRESS_CONFIG_PATH, &body, 0o644).await
    }

    /// A proxy instance is up: from now on it receives every change (and the current state now).
    pub(crate) async fn add_proxy(&self, id: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        if !state.proxies.iter().any(|p| p == id) {
            state.proxies.push(id.to_string());
        }
        self.push(&state.rotation, &[id.to_string()]).await
    }

    /// A proxy instance is going away.
    pub(crate) async fn remove_proxy(&self, id: &str) {
        self.state.lock().await.proxies.retain(|p| p != id);
    }

    async fn push(&self, rotation: &Rotation, proxies: &[String]) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let body = caddy_json(ingress, &config::render(ingress, rotation))?;
        self.load(ingress, &body, proxies).await
    }

    /// Writes `body` into each instance and has its Caddy load it.
    async fn load(&self, ingress: &Ingress, body: &[u8], ids: &[String]) -> Result<()> {
        let reload: Vec<String> =
            [ingress.caddy_binary.as_str(), "reload", "--config", INGRESS_CONFIG_PATH, "--address", "localhost:2019"]
                .map(String::from)
                .to_vec();
        let results = futures::future::join_all(ids.iter().map(|id| {
            let reload = &reload;
            async move {
                self.backend.write_file(id, INGRESS_CONFIG_PATH, body, 0o644).await?;
                let out = self.backend.exec(id, reload, RELOAD_TIMEOUT).await?;
                if out.exit_code != 0 {
                    let why = out.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string();
                    return Err(Error::backend(
                        "configure ingress",
                        id.as_str(),
                        format!("caddy reload exited with {}: {why}", out.exit_code),
                    ));
                }
                Ok(())
            }
        }))
        .await;
        tracing::debug!(instances = ids.len(), "ingress configuration loaded");
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }
}

/// A rotation that sends `percent` of the traffic to the `new` instances and the rest to `old`, each
/// set's share spread evenly over its instances.
pub(crate) fn split(old: &[String], new: &[String], percent: u8) -> Vec<Upstream> {
    let p = u32::from(percent.min(100));
    let (n_old, n_new) = (old.len().max(1) as u32, new.len().max(1) as u32);
    old.iter()
        .map(|i| Upstream { instance: i.clone(), weight: (100 - p) * n_new })
        .chain(new.iter().map(|i| Upstream { instance: i.clone(), weight: p * n_old }))
        .filter(|u| u.weight > 0)
        .collect()
}

fn caddy_json(ingress: &Ingress, config: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(config)
        .map_err(|e| Error::backend("configure ingress", ingress.service().name(), e.to_string()))
}
