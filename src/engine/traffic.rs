//! Which instances receive traffic, and telling the ingress.
//!
//! The ingress has two tiers of Caddy behind a listener that holds the ports. The *front* serves
//! the ports and TLS in the listener's network namespace; its configuration changes only when
//! routes or TLS do, and then the front is replaced start-first (never reloaded in place). The
//! *router* holds the routes and the rotation. The front opens a new connection to the router per
//! request, so reconfiguring the router (which makes Caddy close its idle connections) never
//! closes a connection a client holds.
//!
//! [`Traffic`] holds the rotation of every routed service during an apply. Each change is pushed to
//! every router instance at once (the file is written into the container, then `caddy reload` loads
//! it through the admin API on the container's loopback). Services without an ingress route are
//! reached by their DNS name on the environment network; for them, leaving rotation means stopping.
//!
//! On a backend with several hosts, a router dials the instances on its own host by name and those
//! on other hosts at their host's address and published port ([`config::render_for`]); each
//! router host gets its own configuration.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::backend::{files_of, Backend, Instance, PublishedPort};
use crate::error::{Error, Result};
use crate::ingress::config::{self, Remote, Rotation, Upstream};
use crate::model::{Ingress, INGRESS_CONFIG_PATH, INGRESS_DRAIN_MARKER};
use crate::state::promotion::Pending;

/// How long loading a configuration into a proxy may take.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a just-started Caddy may take to listen on its admin address.
const ADMIN_STARTUP: Duration = Duration::from_secs(5);

pub(crate) struct Traffic<'a> {
    backend: &'a dyn Backend,
    ingress: Option<&'a Ingress>,
    /// Each host's address, on a backend with several.
    addresses: HashMap<String, String>,
    state: Mutex<State>,
    /// Old listeners whose ports moved, and the old fronts in them: they keep serving the old
    /// ports until the new front serves the new ones, so they go at the end of the apply.
    deferred: Mutex<Vec<Instance>>,
    /// What each router's configuration file holds, as far as this apply wrote or read it: a
    /// load whose file already holds its configuration (staged while a batch passed its
    /// `min_ready`, [`stage_swap`](Self::stage_swap)) only asks Caddy to load it.
    written: std::sync::Mutex<HashMap<String, Vec<u8>>>,
}

#[derive(Clone)]
struct State {
    rotation: Rotation,
    /// The router instances (ID and host), which receive every rotation change.
    proxies: Vec<(String, Option<String>)>,
    /// Where each routed instance runs and what it publishes, by name.
    known: HashMap<String, (Option<String>, Vec<PublishedPort>)>,
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
        let mut proxies = Vec::new();
        let mut known = HashMap::new();
        if let Some(ing) = ingress {
            for i in observed.iter().filter(|i| ing.routes_to(&i.service)) {
                known.insert(i.name.clone(), (i.host.clone(), i.published.clone()));
            }
            for i in observed.iter().filter(|i| i.is_running()) {
                if i.service == ing.router.name {
                    proxies.push((i.id.clone(), i.host.clone()));
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
        let addresses = crate::backend::hosts_of(backend).into_iter().map(|h| (h.name, h.address)).collect();
        let state = Mutex::new(State { rotation, proxies, known });
        Traffic { backend, ingress, addresses, state, deferred: Mutex::new(Vec::new()), written: Default::default() }
    }

    /// Learns where instances run (before they enter a rotation).
    pub(crate) async fn know(&self, instances: &[&Instance]) {
        if self.ingress.is_none() {
            return;
        }
        let mut state = self.state.lock().await;
        for i in instances {
            state.known.insert(i.name.clone(), (i.host.clone(), i.published.clone()));
        }
    }

    /// Whether the ingress routes to `service` (so rotation changes go through it).
    pub(crate) fn routed(&self, service: &str) -> bool {
        self.ingress.is_some_and(|i| i.routes_to(service))
    }

    /// Whether `service` is the ingress's router tier (which receives rotation changes).
    pub(crate) fn is_proxy(&self, service: &str) -> bool {
        self.ingress.is_some_and(|i| i.router.name == service)
    }

    /// Whether `service` is the ingress's listener (which holds the ports).
    pub(crate) fn is_listener(&self, service: &str) -> bool {
        self.ingress.is_some_and(|i| i.listener.name == service)
    }

    /// Keeps replaced listeners (and the fronts in them) running until the end of the apply
    /// ([`retire_deferred`](Self::retire_deferred)).
    pub(crate) async fn defer(&self, instances: &[Instance]) {
        self.deferred.lock().await.extend(instances.iter().cloned());
    }

    /// Whether a listener moved to other ports in this apply (its old fronts then wait too).
    pub(crate) async fn listener_moved(&self) -> bool {
        self.deferred.lock().await.iter().any(|i| self.is_listener(&i.service))
    }

    /// Whether the instance `id` waits for the end of the apply to go.
    pub(crate) async fn is_deferred(&self, id: &str) -> bool {
        self.deferred.lock().await.iter().any(|i| i.id == id)
    }

    /// Once everything serves: the old fronts kept for a moved listener drain (as any front
    /// does) and stop, then the old listeners go; all are removed.
    pub(crate) async fn retire_deferred(&self, sink: &crate::events::EventSink) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let deferred = std::mem::take(&mut *self.deferred.lock().await);
        if deferred.is_empty() {
            return Ok(());
        }
        let (fronts, listeners): (Vec<Instance>, Vec<Instance>) =
            deferred.into_iter().partition(|i| i.service == ingress.front.name);
        let refs: Vec<&Instance> = fronts.iter().collect();
        self.drain_fronts(&refs, ingress.front.rollout.drain).await?;
        let retire = super::retire::retire;
        retire(self.backend, sink, &ingress.front.name, &fronts, ingress.front.stop_grace).await?;
        retire(self.backend, sink, &ingress.listener.name, &listeners, ingress.listener.stop_grace).await
    }

    /// Whether `service` is the ingress's front tier.
    pub(crate) fn is_front(&self, service: &str) -> bool {
        self.ingress.is_some_and(|i| i.front.name == service)
    }

    /// The instances of `service` in rotation now.
    pub(crate) async fn members(&self, service: &str) -> Vec<Upstream> {
        self.state.lock().await.rotation.get(service).cloned().unwrap_or_default()
    }

    /// Replaces the rotation of `service` and tells every proxy; returns when they have loaded it.
    pub(crate) async fn set(&self, service: &str, members: Vec<Upstream>) -> Result<()> {
        self.modify(service, |m| *m = members).await
    }

    /// Changes the rotation of `service` in one step (a batch entering and the previous one
    /// leaving may run side by side) and tells every proxy; returns when they have loaded it.
    async fn modify(&self, service: &str, change: impl FnOnce(&mut Vec<Upstream>)) -> Result<()> {
        if !self.routed(service) {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        change(state.rotation.entry(service.to_string()).or_default());
        let proxies = state.proxies.clone();
        self.push(&state, &proxies).await
    }

    /// Adds instances to the rotation of `service` with weight 1.
    pub(crate) async fn enter(&self, service: &str, instances: &[&Instance]) -> Result<()> {
        self.know(instances).await;
        self.modify(service, |members| {
            for i in instances {
                if !members.iter().any(|m| m.instance == i.name) {
                    members.push(Upstream { instance: i.name.clone(), weight: 1 });
                }
            }
        })
        .await
    }

    /// Adds `fresh` to the rotation of `service` with weight 1 and takes `replaced` out, in one
    /// change (a batch of a rolling update: capacity never dips between the two).
    pub(crate) async fn swap(&self, service: &str, fresh: &[&Instance], replaced: &[&Instance]) -> Result<()> {
        self.know(fresh).await;
        self.modify(service, |members| swapped(members, fresh, replaced)).await
    }

    /// Writes the configuration [`swap`](Self::swap) will load into every router's file, without
    /// loading it: the swap then only asks Caddy to load it. For a batch whose new instances are
    /// healthy and serve their `min_ready`: should a router restart meanwhile, it routes to them
    /// (healthy) instead of the old ones (still running).
    pub(crate) async fn stage_swap(&self, service: &str, fresh: &[&Instance], replaced: &[&Instance]) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        if !self.routed(service) {
            return Ok(());
        }
        self.know(fresh).await;
        let bodies = {
            let mut next = self.state.lock().await.clone();
            swapped(next.rotation.entry(service.to_string()).or_default(), fresh, replaced);
            self.router_configs(ingress, &next)?
        };
        let written = futures::future::join_all(bodies.iter().map(|(id, body)| self.write_router(id, body))).await;
        written.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Writes `body` into router `id`'s configuration file, unless it holds it already.
    async fn write_router(&self, id: &str, body: &[u8]) -> Result<()> {
        if self.holds(id, body) {
            return Ok(());
        }
        files_of(self.backend)?.write_file(id, INGRESS_CONFIG_PATH, body, 0o644).await?;
        self.remember(id, body.to_vec());
        Ok(())
    }

    /// Whether router `id`'s file is known to hold `body`.
    fn holds(&self, id: &str, body: &[u8]) -> bool {
        self.written.lock().is_ok_and(|w| w.get(id).is_some_and(|b| b.as_slice() == body))
    }

    fn remember(&self, id: &str, body: Vec<u8>) {
        if let Ok(mut w) = self.written.lock() {
            w.insert(id.to_string(), body);
        }
    }

    /// Takes instances out of the rotation of `service`, then waits `drain` so requests in flight
    /// finish (only for routed services: others are not reachable through a proxy).
    pub(crate) async fn leave(&self, service: &str, instances: &[&Instance], drain: Duration) -> Result<()> {
        if !self.routed(service) || instances.is_empty() {
            return Ok(());
        }
        self.modify(service, |members| members.retain(|m| !instances.iter().any(|i| i.name == m.instance))).await?;
        tokio::time::sleep(drain).await;
        Ok(())
    }

    /// Drains fronts about to stop: from now on each of their answers closes its connection, so a
    /// keep-alive client reconnects (to a new front) after its next request; then waits `drain`.
    pub(crate) async fn drain_fronts(&self, instances: &[&Instance], drain: Duration) -> Result<()> {
        let files = files_of(self.backend)?;
        let marked = futures::future::join_all(
            instances
                .iter()
                .filter(|i| i.is_running())
                .map(|i| files.write_file(&i.id, INGRESS_DRAIN_MARKER, b"", 0o644)),
        )
        .await;
        if marked.iter().any(Result::is_ok) {
            tokio::time::sleep(drain).await;
        }
        Ok(())
    }

    /// Loads the current configuration into every running router whose configuration differs
    /// (routes may have changed); one that already has it is not reloaded. Fronts are never
    /// reloaded: they carry a digest of their configuration, and a change replaces them. The
    /// rotation is held from its first step to its last: rotation changes wait for it.
    pub(crate) async fn sync(&self) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let state = self.state.lock().await;
        for (id, body) in self.router_configs(ingress, &state)? {
            let holds = files_of(self.backend)?.read_file(&id, INGRESS_CONFIG_PATH).await?;
            if holds.as_deref() != Some(body.as_slice()) {
                tracing::debug!(router = %id, "the router's configuration differs: loading it");
                self.load(ingress, &body, &[id]).await?;
            } else if let Some(h) = holds {
                self.remember(&id, h);
            }
        }
        Ok(())
    }

    /// Each router's configuration for `state`, by router ID.
    fn router_configs(&self, ingress: &Ingress, state: &State) -> Result<Vec<(String, Vec<u8>)>> {
        state
            .proxies
            .iter()
            .map(|(id, host)| Ok((id.clone(), self.router_config(ingress, state, host.as_deref())?)))
            .collect()
    }

    /// The router configuration for a router on `host`.
    fn router_config(&self, ingress: &Ingress, state: &State, host: Option<&str>) -> Result<Vec<u8>> {
        caddy_json(ingress, &config::render_for(ingress, &state.rotation, &self.remote(ingress, state, host)))
    }

    /// The instances in rotation that a router on `host` reaches on another host, and where.
    fn remote(&self, ingress: &Ingress, state: &State, host: Option<&str>) -> Remote {
        let mut out = Remote::new();
        let Some(here) = host.filter(|_| !self.addresses.is_empty()) else { return out };
        for route in &ingress.routes {
            for member in state.rotation.get(&route.service).into_iter().flatten() {
                let Some((Some(there), published)) = state.known.get(&member.instance) else { continue };
                if there == here {
                    continue;
                }
                let port = published.iter().find(|p| p.container_port == route.port && p.protocol == "tcp");
                if let (Some(address), Some(p)) = (self.addresses.get(there), port) {
                    out.insert((member.instance.clone(), route.port), format!("{address}:{}", p.host_port));
                }
            }
        }
        out
    }

    /// Writes the current router configuration into a created (not yet started) router instance
    /// on `host`, which loads it when it starts.
    pub(crate) async fn prepare_proxy(&self, id: &str, host: Option<&str>) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let body = self.router_config(ingress, &*self.state.lock().await, host)?;
        self.write_router(id, &body).await
    }

    /// Writes the front configuration into a created (not yet started) front instance.
    pub(crate) async fn prepare_front(&self, id: &str) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let body = caddy_json(ingress, &config::render_front(ingress))?;
        files_of(self.backend)?.write_file(id, INGRESS_CONFIG_PATH, &body, 0o644).await
    }

    /// A proxy instance is up: from now on it receives every change (and the current state now).
    pub(crate) async fn add_proxy(&self, id: &str, host: Option<&str>) -> Result<()> {
        let mut state = self.state.lock().await;
        let me = (id.to_string(), host.map(str::to_string));
        if !state.proxies.contains(&me) {
            state.proxies.push(me.clone());
        }
        self.push(&state, &[me]).await
    }

    /// A proxy instance is going away.
    pub(crate) async fn remove_proxy(&self, id: &str) {
        self.state.lock().await.proxies.retain(|(p, _)| p != id);
    }

    /// Loads the current rotation into `proxies`, each host's its own configuration, all at once.
    async fn push(&self, state: &State, proxies: &[(String, Option<String>)]) -> Result<()> {
        let Some(ingress) = self.ingress else { return Ok(()) };
        let mut by_host: Vec<(Option<&str>, Vec<String>)> = Vec::new();
        for (id, host) in proxies {
            match by_host.iter_mut().find(|(h, _)| *h == host.as_deref()) {
                Some((_, ids)) => ids.push(id.clone()),
                None => by_host.push((host.as_deref(), vec![id.clone()])),
            }
        }
        let mut loads = Vec::new();
        for (host, ids) in by_host {
            let body = self.router_config(ingress, state, host)?;
            loads.push(async move { self.load(ingress, &body, &ids).await });
        }
        futures::future::join_all(loads).await.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Writes `body` into each instance and has its Caddy load it.
    async fn load(&self, ingress: &Ingress, body: &[u8], ids: &[String]) -> Result<()> {
        let reload = crate::model::ingress_reload_command(&ingress.caddy_binary);
        let results = futures::future::join_all(ids.iter().map(|id| {
            let reload = &reload;
            async move {
                self.write_router(id, body).await?;
                // A Caddy that was just started may not serve its admin socket yet (seen on a
                // loaded host): its absence is waited out, for a few seconds at most.
                let until = tokio::time::Instant::now() + ADMIN_STARTUP;
                let mut out = self.backend.exec(id, reload, RELOAD_TIMEOUT).await?;
                while out.exit_code != 0
                    && (out.stderr.contains("connection refused") || out.stderr.contains("no such file"))
                    && tokio::time::Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    out = self.backend.exec(id, reload, RELOAD_TIMEOUT).await?;
                }
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

fn caddy_json(ingress: &Ingress, config: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(config)
        .map_err(|e| Error::backend("configure ingress", ingress.front.name.as_str(), e.to_string()))
}

/// `members` with `fresh` in (weight 1) and `replaced` out.
fn swapped(members: &mut Vec<Upstream>, fresh: &[&Instance], replaced: &[&Instance]) {
    members.retain(|m| !replaced.iter().any(|i| i.name == m.instance));
    for i in fresh {
        if !members.iter().any(|m| m.instance == i.name) {
            members.push(Upstream { instance: i.name.clone(), weight: 1 });
        }
    }
}
