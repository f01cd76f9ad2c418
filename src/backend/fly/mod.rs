//! Fly.io's Machines API as a target ([`FlyBackend`]): every replica is a Fly machine made from the
//! service's registry image; the library rolls out by creating and destroying machines, with the
//! deploy lock, revisions and audit in the metadata of a record-keeping machine.
//!
//! | file | what |
//! |---|---|
//! | `api.rs` | the HTTP client: token, deadlines, retries of 429/5xx with backoff (said as events) |
//! | `config.rs` | an instance as a machine config; what Fly cannot express, refused before any change |
//! | `machine.rs` | a machine as an [`Instance`]: state, checks, exit code, metadata |
//! | `records.rs` | records and state in a record keeper's metadata, changed under its lease |
//!
//! Why create and destroy instead of updating machines in place: a start-first rollout needs the
//! new machine running beside the old one until it is healthy, and a failed rollout must leave
//! the old machines untouched (an update reboots the machine into the new config, so the old
//! version is gone before the new one proved healthy). Creating costs one call more per replica.
//!
//! Health: by default Fly runs each machine's checks (mapped from the [`HealthCheck`](crate::HealthCheck))
//! and the library reads their results ([`Backend::reports_health`]); with
//! [`private_network`](FlyBackendBuilder::private_network) (WireGuard, or deploying from inside
//! the organisation's network) the library probes machines at their private addresses itself.
//!
//! ```no_run
//! # async fn f() -> harbormaster::Result<()> {
//! use harbormaster::{Environment, FlyBackend, HealthCheck, Port, Secret, Service};
//! let fly = FlyBackend::builder()
//!     .app("shop-staging")
//!     .token(Secret::from_env("FLY_API_TOKEN")?)
//!     .region("ams")
//!     .connect()
//!     .await?;
//! let api = Service::builder("api").image("registry.fly.io/shop-api:2")
//!     .port(Port::tcp(8080).publish_ephemeral()).replicas(2)
//!     .health(HealthCheck::http(8080, "/health")).build()?;
//! let env = Environment::builder("shop", "staging").service(api).build()?;
//! println!("{}", env.plan(&fly).await?);
//! env.apply(&fly).await?;
//! # Ok(()) }
//! ```

mod api;
mod config;
mod machine;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::docker::DockerBackend;
use super::{
    Backend, ExecOutput, ImageStore, Instance, InstanceRuntime, InstanceSpec, LogLine, LogStream, RecordStore, Scope,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Secret, VolumeSource};
use api::Api;
use machine::Machine;

/// The longest a single `wait` call waits (the API answers 408 after at most 60 s).
const WAIT_CALL: u64 = 60;

/// A Fly app reached through the Machines API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FlyBackend {
    api: std::sync::Arc<Api>,
    app: String,
    region: String,
    public_host: String,
    private_network: bool,
    keeper_image: String,
    volume_size_gb: u32,
    start_timeout: Duration,
    keepers: std::sync::Arc<Mutex<HashMap<Scope, String>>>,
    builder: Option<DockerBackend>,
    lease_wait: Duration,
}

/// Builder for [`FlyBackend`].
#[derive(Debug, Default)]
#[must_use]
pub struct FlyBackendBuilder {
    app: Option<String>,
    token: Option<Secret>,
    region: Option<String>,
    machines_url: Option<String>,
    logs_url: Option<String>,
    public_host: Option<String>,
    private_network: bool,
    call_timeout: Option<Duration>,
    max_retries: Option<u32>,
    keeper_image: Option<String>,
    volume_size_gb: Option<u32>,
    start_timeout: Option<Duration>,
    create_app_in: Option<String>,
    builder: Option<DockerBackend>,
    lease_wait: Option<Duration>,
}

impl FlyBackendBuilder {
    /// The Fly app the environment's machines belong to (required; one app per environment is usual).
    pub fn app(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }

    /// The API token (required): `fly tokens create deploy`. It is a [`Secret`]: never printed.
    pub fn token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// The region new machines and volumes are placed in (default `ams`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The Machines API base URL (default `https://api.machines.dev/v1`; the internal
    /// `http://_api.internal:4280/v1` from inside Fly's network).
    pub fn machines_url(mut self, url: impl Into<String>) -> Self {
        self.machines_url = Some(url.into());
        self
    }

    /// The log API base URL (default `https://api.fly.io/api/v1`).
    pub fn logs_url(mut self, url: impl Into<String>) -> Self {
        self.logs_url = Some(url.into());
        self
    }

    /// The host name published ports are reached at (default `<app>.fly.dev`).
    pub fn public_host(mut self, host: impl Into<String>) -> Self {
        self.public_host = Some(host.into());
        self
    }

    /// Probe machines at their private addresses from this process (it must reach Fly's private
    /// network: WireGuard, or running inside the organisation). Default: read the results of
    /// the checks Fly runs.
    pub fn private_network(mut self, on: bool) -> Self {
        self.private_network = on;
        self
    }

    /// Upper bound of each API call (default 30 s; a `wait` call gets up to 60 s more).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = Some(d);
        self
    }

    /// Retries of a call answered 429, 5xx or not answered at all (default 6, with backoff).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// The image of the record-keeping machine, which is created but never started (default
    /// `registry-1.docker.io/library/busybox:1.36`).
    pub fn keeper_image(mut self, image: impl Into<String>) -> Self {
        self.keeper_image = Some(image.into());
        self
    }

    /// Size of the Fly volumes the environment's named volumes become (default 1 GB).
    pub fn volume_size_gb(mut self, gb: u32) -> Self {
        self.volume_size_gb = Some(gb);
        self
    }

    /// How long a started machine may take to reach `started` (default 5 min).
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.start_timeout = Some(d);
        self
    }

    /// Creates the app in organisation `org_slug` when it does not exist (by default a missing app
    /// is an error: `fly apps create`).
    pub fn create_app_in(mut self, org_slug: impl Into<String>) -> Self {
        self.create_app_in = Some(org_slug.into());
        self
    }

    /// How long a change of the environment's records waits for the record keeper's lease while
    /// another holds it (default 30 s; a holder that died lets it lapse within 15 s). Past it, the
    /// change fails with [`Error::Locked`] naming the lease's holder.
    pub fn lease_wait(mut self, d: Duration) -> Self {
        self.lease_wait = Some(d);
        self
    }

    /// Builds the services that have a [`Build`](crate::Build) on this Docker engine and pushes them
    /// to the registry their tag names (with the engine's registry credentials); Fly machines then
    /// pull them by digest. Without it, a service with a build is refused.
    pub fn build_with(mut self, docker: DockerBackend) -> Self {
        self.builder = Some(docker);
        self
    }

    /// Checks the token and the app, and returns the backend.
    pub async fn connect(self) -> Result<FlyBackend> {
        let invalid = |what: &str| Error::unsupported("fly", "connect", what);
        let app = self.app.filter(|a| !a.is_empty()).ok_or_else(|| invalid("no app was given: `.app(\"name\")`"))?;
        let token = self
            .token
            .ok_or_else(|| invalid("no API token was given: `.token(Secret::from_env(\"FLY_API_TOKEN\")?)`"))?;
        let api = Api::new(
            self.machines_url.unwrap_or_else(|| "https://api.machines.dev/v1".into()),
            self.logs_url.unwrap_or_else(|| "https://api.fly.io/api/v1".into()),
            token,
            self.call_timeout.unwrap_or(Duration::from_secs(30)),
            self.max_retries.unwrap_or(6),
        )?;
        let fly = FlyBackend {
            api: std::sync::Arc::new(api),
            public_host: self.public_host.unwrap_or_else(|| format!("{app}.fly.dev")),
            app,
            region: self.region.unwrap_or_else(|| "ams".into()),
            private_network: self.private_network,
            keeper_image: self.keeper_image.unwrap_or_else(|| "registry-1.docker.io/library/busybox:1.36".into()),
            volume_size_gb: self.volume_size_gb.unwrap_or(1).max(1),
            start_timeout: self.start_timeout.unwrap_or(Duration::from_secs(300)),
            keepers: Default::default(),
            builder: self.builder,
            lease_wait: self.lease_wait.unwrap_or(Duration::from_secs(30)),
        };
        let answer = fly.api.send("show the app", Method::GET, &format!("/apps/{}", fly.app), None, None, None).await?;
        match (answer.status, &self.create_app_in) {
            (200..=299, _) => {}
            (404, Some(org)) => {
                let body = json!({"app_name": fly.app, "org_slug": org});
                fly.api.expect("create the app", Method::POST, "/apps", Some(&body), None).await?;
            }
            (404, None) => {
                return Err(Error::backend_kind(
                    "show the app",
                    &fly.app,
                    ErrorKind::NotFound,
                    "the app does not exist: create it (`fly apps create`) or use `.create_app_in(org)`",
                ))
            }
            _ => return Err(fly.api.error("show the app", &fly.app, &answer)),
        }
        Ok(fly)
    }
}

/// A name Fly accepts for a machine: lower-case letters, digits and dashes, at most 63.
pub(super) fn fly_name(s: &str) -> String {
    let mut out: String =
        s.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(63).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The Fly volume name of a named volume of `scope`: at most 30 lower-case letters, digits and
/// underscores, ending in a hash of the environment so environments sharing an app never meet.
fn volume_name(scope: &Scope, volume: &str) -> String {
    let base: String =
        volume.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(21).collect();
    format!("{base}_{}", scope_tag(scope))
}

fn scope_tag(scope: &Scope) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(scope.qualified().as_bytes());
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

impl FlyBackend {
    /// A builder.
    pub fn builder() -> FlyBackendBuilder {
        FlyBackendBuilder::default()
    }

    /// The app.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// API requests this backend (and its clones) sent so far, retries included.
    pub fn api_calls(&self) -> u64 {
        self.api.calls()
    }

    /// Calls it retried after a 429, a 5xx answer or no answer.
    pub fn api_retries(&self) -> u64 {
        self.api.retries()
    }

    fn path(&self, rest: &str) -> String {
        format!("/apps/{}{rest}", self.app)
    }

    async fn machines(&self) -> Result<Vec<Machine>> {
        let answer = self.api.expect("list machines", Method::GET, &self.path("/machines"), None, None).await?;
        serde_json::from_value(answer.body).map_err(|e| Error::backend("list machines", &self.app, e))
    }

    async fn machine(&self, id: &str) -> Result<Option<Machine>> {
        let answer = self
            .api
            .send("inspect machine", Method::GET, &self.path(&format!("/machines/{id}")), None, None, None)
            .await?;
        match answer.status {
            404 => Ok(None),
            s if (200..300).contains(&s) => {
                serde_json::from_value(answer.body).map(Some).map_err(|e| Error::backend("inspect machine", id, e))
            }
            _ => Err(self.api.error("inspect machine", id, &answer)),
        }
    }

    /// Waits (with the API's `wait`, 60 s per call, 408 answers looped) until `id` reaches
    /// `state`, or `limit` passes. `Ok(false)`: it did not.
    async fn wait_state(&self, id: &str, state: &str, instance: Option<&str>, limit: Duration) -> Result<bool> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let secs = left.as_secs().clamp(1, WAIT_CALL);
            let mut path = self.path(&format!("/machines/{id}/wait?state={state}&timeout={secs}"));
            if let Some(i) = instance {
                path.push_str(&format!("&instance_id={i}"));
            }
            let timeout = self.api.call_timeout.saturating_add(Duration::from_secs(secs));
            let answer = self.api.send("wait for machine", Method::GET, &path, None, None, Some(timeout)).await?;
            match answer.status {
                200..=299 => return Ok(true),
                408 => continue,
                404 if state == "destroyed" => return Ok(true),
                _ => return Err(self.api.error("wait for machine", id, &answer)),
            }
        }
    }

    /// The Fly volume IDs of the environment's named volumes, by name.
    async fn volume_ids(&self, scope: &Scope) -> Result<BTreeMap<String, (String, String)>> {
        let answer = self.api.expect("list volumes", Method::GET, &self.path("/volumes"), None, None).await?;
        let list: Vec<Value> = serde_json::from_value(answer.body).unwrap_or_default();
        let tag = format!("_{}", scope_tag(scope));
        Ok(list
            .into_iter()
            .filter_map(|v| {
                let name = v.get("name")?.as_str()?.to_string();
                let id = v.get("id")?.as_str()?.to_string();
                let attached = v.get("attached_machine_id").and_then(Value::as_str).unwrap_or("").to_string();
                name.ends_with(&tag).then_some((name, (id, attached)))
            })
            .collect())
    }
}

#[async_trait]
impl Backend for FlyBackend {
    fn describe(&self) -> String {
        format!("fly app {} ({})", self.app, self.api.machines_url)
    }

    fn limits(&self, service: &crate::model::Service) -> Vec<crate::backend::Limit> {
        config::refusals(service)
            .into_iter()
            .map(|what| crate::backend::Limit { service: service.name.clone(), what, refused: true })
            .collect()
    }

    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>> {
        Ok(self
            .machines()
            .await?
            .iter()
            .filter(|m| !m.gone() && m.owned_by(&scope.project, &scope.environment) && !records::is_keeper(m))
            .map(|m| m.instance(&self.public_host))
            .collect())
    }

    async fn inspect_instance(&self, id: &str) -> Result<Instance> {
        match self.machine(id).await? {
            Some(m) if !m.gone() => Ok(m.instance(&self.public_host)),
            _ => Err(Error::backend_kind("inspect machine", id, ErrorKind::NotFound, "no such machine")),
        }
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        loop {
            let Some(m) = self.machine(id).await? else {
                return Err(Error::backend_kind("wait for machine", id, ErrorKind::NotFound, "no such machine"));
            };
            if matches!(m.state.as_str(), "stopped" | "failed") || m.gone() {
                return Ok(m.exit_code().unwrap_or(-1));
            }
            if m.state == "created" {
                // Not started yet: nothing to wait on at the API.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            // One long poll; a 408 just means "not yet".
            self.wait_state(id, "stopped", Some(&m.instance_id), Duration::from_secs(WAIT_CALL)).await?;
        }
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        let url = format!("{}/apps/{}/logs?instance={id}", self.api.logs_url, self.app);
        let answer = self.api.send_url("read logs", Method::GET, &url, None, None, None).await?;
        if !answer.ok() {
            return Err(self.api.error("read logs", id, &answer));
        }
        let all = log_messages(&answer.body);
        let skip = all.len().saturating_sub(lines);
        Ok(all.into_iter().skip(skip).map(|l| crate::scrub::text(&l).into_owned()).collect())
    }

    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>> {
        let fly = self.clone();
        let id = id.to_string();
        // (first call done, next token)
        futures::stream::unfold((false, String::new(), false), move |(started, token, done)| {
            let (fly, id) = (fly.clone(), id.clone());
            async move {
                if done {
                    return None;
                }
                if started {
                    if !follow {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let url = format!("{}/apps/{}/logs?instance={id}&next_token={token}", fly.api.logs_url, fly.app);
                match fly.api.send_url("read logs", Method::GET, &url, None, None, None).await {
                    Err(e) => Some((vec![Err(e)], (true, token, true))),
                    Ok(a) if !a.ok() => Some((vec![Err(fly.api.error("read logs", &id, &a))], (true, token, true))),
                    Ok(a) => {
                        let next =
                            a.body.pointer("/meta/next_token").and_then(Value::as_str).unwrap_or(&token).to_string();
                        let mut lines = log_messages(&a.body);
                        if !started {
                            if let Some(n) = tail {
                                lines = lines.split_off(lines.len().saturating_sub(n));
                            }
                        }
                        let out = lines
                            .into_iter()
                            .map(|text| {
                                Ok(LogLine {
                                    instance: id.clone(),
                                    stream: LogStream::Stdout,
                                    text: crate::scrub::text(&text).into_owned(),
                                })
                            })
                            .collect();
                        Some((out, (true, next, false)))
                    }
                }
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        let secs = timeout.as_secs().clamp(1, 60);
        let body = json!({"command": command, "timeout": secs});
        let answer = self
            .api
            .send(
                "exec in machine",
                Method::POST,
                &self.path(&format!("/machines/{id}/exec")),
                Some(&body),
                None,
                Some(self.api.call_timeout.saturating_add(Duration::from_secs(secs))),
            )
            .await?;
        if !answer.ok() {
            return Err(self.api.error("exec in machine", id, &answer));
        }
        let text = |k: &str| crate::scrub::text(answer.body.get(k).and_then(Value::as_str).unwrap_or("")).into_owned();
        Ok(ExecOutput {
            exit_code: answer.body.get("exit_code").and_then(Value::as_i64).unwrap_or(-1),
            stdout: text("stdout"),
            stderr: text("stderr"),
        })
    }

    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        Ok(if self.private_network { instance.ip.map(|ip| SocketAddr::new(ip, port)) } else { None })
    }

    fn published_host(&self) -> String {
        self.public_host.clone()
    }

    async fn ensure_network(&self, _scope: &Scope) -> Result<bool> {
        // Every app has its private network; services find each other as
        // `<service>.process.<app>.internal`.
        Ok(false)
    }

    async fn remove_network(&self, _scope: &Scope) -> Result<bool> {
        Ok(false)
    }

    async fn ensure_volume(&self, scope: &Scope, volume: &str) -> Result<bool> {
        let name = volume_name(scope, volume);
        if self.volume_ids(scope).await?.contains_key(&name) {
            return Ok(false);
        }
        let body = json!({"name": name, "region": self.region, "size_gb": self.volume_size_gb});
        self.api.expect("create volume", Method::POST, &self.path("/volumes"), Some(&body), None).await?;
        Ok(true)
    }

    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>> {
        Ok(self.volume_ids(scope).await?.into_values().map(|(id, _)| id).collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let answer = self
            .api
            .send("remove volume", Method::DELETE, &self.path(&format!("/volumes/{name}")), None, None, None)
            .await?;
        if answer.ok() || answer.status == 404 {
            Ok(())
        } else {
            Err(self.api.error("remove volume", name, &answer))
        }
    }

    async fn preflight(&self) -> Result<()> {
        let answer =
            self.api.send("show the app", Method::GET, &format!("/apps/{}", self.app), None, None, None).await?;
        if answer.ok() {
            Ok(())
        } else {
            Err(self.api.error("show the app", &self.app, &answer))
        }
    }

    fn reports_health(&self) -> bool {
        !self.private_network
    }

    fn records(&self) -> Option<&dyn RecordStore> {
        Some(self)
    }

    fn image_builder(&self) -> Option<&dyn ImageStore> {
        self.builder.as_ref().map(|d| d as &dyn ImageStore)
    }

    fn instances(&self) -> Option<&dyn InstanceRuntime> {
        Some(self)
    }
}

#[async_trait]
impl InstanceRuntime for FlyBackend {
    async fn create_instance(&self, spec: &InstanceSpec) -> Result<String> {
        let mut volumes = BTreeMap::new();
        if spec.volumes.iter().any(|v| matches!(v.source, VolumeSource::Named(_))) {
            let known = self.volume_ids(&spec.scope).await?;
            for v in &spec.volumes {
                if let VolumeSource::Named(n) = &v.source {
                    let fly = volume_name(&spec.scope, n);
                    let (id, _) = known.get(&fly).ok_or_else(|| {
                        Error::backend_kind(
                            "create machine",
                            &spec.name,
                            ErrorKind::NotFound,
                            format!("volume {fly} does not exist"),
                        )
                    })?;
                    volumes.insert(n.clone(), id.clone());
                }
            }
        }
        let name = fly_name(&spec.name);
        if spec.image_pull.is_none() && spec.image_id.starts_with("sha256:") {
            return Err(Error::backend_kind(
                "create machine",
                &name,
                ErrorKind::Invalid,
                "its image was built here but not pushed to a registry Fly can pull from",
            ));
        }
        let body = json!({
            "name": name,
            "region": self.region,
            "skip_launch": true,
            "config": config::machine_config(spec, &volumes),
        });
        let answer =
            self.api.send("create machine", Method::POST, &self.path("/machines"), Some(&body), None, None).await?;
        if answer.ok() {
            return answer
                .body
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::backend("create machine", &name, "the answer has no machine ID"));
        }
        if answer.status == 409 {
            // A create whose first answer was lost (a retried 5xx) made the machine already.
            if let Some(m) = self.machines().await?.into_iter().find(|m| m.name == name && !m.gone()) {
                return Ok(m.id);
            }
        }
        Err(self.api.error("create machine", &name, &answer))
    }

    async fn start_instance(&self, id: &str) -> Result<()> {
        let Some(m) = self.machine(id).await? else {
            return Err(Error::backend_kind("start machine", id, ErrorKind::NotFound, "no such machine"));
        };
        if m.state != "started" {
            self.api
                .expect("start machine", Method::POST, &self.path(&format!("/machines/{id}/start")), None, None)
                .await?;
        }
        // Until it is started, or stopped again (it exited at once, as a short job does: the
        // caller then sees its exit code). Short waits, so an exit is noticed within 2 s.
        let end = tokio::time::Instant::now() + self.start_timeout;
        while tokio::time::Instant::now() < end {
            if self.wait_state(id, "started", None, Duration::from_secs(2)).await? {
                return Ok(());
            }
            match self.machine(id).await? {
                Some(m) if matches!(m.state.as_str(), "stopped" | "failed" | "destroyed") => return Ok(()),
                Some(_) => {}
                None => return Err(Error::backend_kind("start machine", id, ErrorKind::NotFound, "it was destroyed")),
            }
        }
        Err(Error::backend_kind(
            "start machine",
            id,
            ErrorKind::Timeout,
            format!("not started within {}", crate::duration::human(self.start_timeout)),
        ))
    }

    async fn stop_instance(&self, id: &str, grace: Duration) -> Result<()> {
        let Some(m) = self.machine(id).await? else { return Ok(()) };
        if !matches!(m.state.as_str(), "started" | "starting") {
            return Ok(());
        }
        // Out of the proxy first, so no new request reaches it while it stops.
        let _ = self
            .api
            .send("cordon machine", Method::POST, &self.path(&format!("/machines/{id}/cordon")), None, None, None)
            .await;
        let body = json!({"signal": "SIGTERM", "timeout": config::go_duration(grace)});
        self.api
            .expect("stop machine", Method::POST, &self.path(&format!("/machines/{id}/stop")), Some(&body), None)
            .await?;
        let limit = grace.saturating_add(Duration::from_secs(30));
        if !self.wait_state(id, "stopped", Some(&m.instance_id), limit).await? {
            return Err(Error::backend_kind(
                "stop machine",
                id,
                ErrorKind::Timeout,
                format!("not stopped within {}", crate::duration::human(limit)),
            ));
        }
        Ok(())
    }

    async fn remove_instance(&self, id: &str) -> Result<()> {
        let Some(m) = self.machine(id).await? else { return Ok(()) };
        if m.gone() {
            return Ok(());
        }
        if matches!(m.state.as_str(), "started" | "starting" | "replacing" | "stopping") {
            let grace = match &m.config.stop_config.as_ref().and_then(|s| s.timeout.clone()) {
                Some(config::Dur::Text(t)) => crate::duration::parse(t).unwrap_or(Duration::from_secs(10)),
                _ => Duration::from_secs(10),
            };
            self.stop_instance(id, grace).await?;
        }
        let answer = self
            .api
            .send("destroy machine", Method::DELETE, &self.path(&format!("/machines/{id}")), None, None, None)
            .await?;
        if !answer.ok() && answer.status != 404 {
            return Err(self.api.error("destroy machine", id, &answer));
        }
        // Its volumes are free once it is destroyed.
        self.wait_state(id, "destroyed", None, Duration::from_secs(60)).await?;
        Ok(())
    }
}

/// The messages of a log API answer, oldest first.
fn log_messages(body: &Value) -> Vec<String> {
    body.get("data")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|e| e.pointer("/attributes/message").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_fly() {
        assert_eq!(fly_name("Shop_Staging-api-0-ab12"), "shop-staging-api-0-ab12");
        assert!(fly_name(&"x".repeat(100)).len() <= 63);
        let scope = Scope::new("shop", "staging");
        let v = volume_name(&scope, "Postgres-Data.with.a.very.long.name");
        assert!(v.len() <= 30, "{v}");
        assert!(v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{v}");
        let other = Scope::new("shop", "production");
        assert_ne!(volume_name(&scope, "db"), volume_name(&other, "db"));
    }

    #[test]
    fn log_answers_are_read_in_order() {
        let body = json!({"data": [{"attributes": {"message": "a"}}, {"attributes": {"message": "b"}}], "meta": {}});
        assert_eq!(log_messages(&body), vec!["a".to_string(), "b".to_string()]);
        assert!(log_messages(&json!({})).is_empty());
    }
}
