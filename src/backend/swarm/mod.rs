//! A Docker Swarm as a target ([`SwarmBackend`]): an environment becomes Swarm services on an
//! overlay network, rolled out by Swarm's own update (the [`Orchestrator`] seam), with the deploy
//! lock, revisions and audit kept as Swarm configs (`records.rs`). The library keeps the plan,
//! dependency order, the deadline, revisions and the outcome.
//!
//! | file | what |
//! |---|---|
//! | `spec.rs` | a service as a Swarm `ServiceSpec`, and what Swarm cannot honour ([`Limit`](crate::backend::Limit)s) |
//! | `rollout.rs` | submit, progress, roll back, remove; secrets; role labels on nodes |
//! | `tasks.rs` | tasks as [`Instance`]s, nodes as hosts |
//! | `records.rs` | records and state as configs |
//!
//! Connect it to a manager's engine. Images come from registries, as every node pulls them
//! (credentials are forwarded, as `docker service create --with-registry-auth` does); a service
//! built locally must be pushed first ([`Build::push`](crate::Build::push) on a
//! [`DockerBackend`]). This backend publishes ports in host mode and resolves services by DNS
//! round robin (`dnsrr`): it needs no IPVS routing mesh.
//!
//! ```no_run
//! # async fn f() -> harbormaster::Result<()> {
//! use harbormaster::{Environment, HealthCheck, Port, Service, SwarmBackend};
//! let swarm = SwarmBackend::builder().manager("tcp://10.0.0.10:2375").connect().await?;
//! let api = Service::builder("api").image("registry.example.com/shop/api:2")
//!     .port(Port::tcp(8080).publish_ephemeral()).replicas(3)
//!     .health(HealthCheck::exec(["/api", "healthcheck"])).build()?;
//! let env = Environment::builder("shop", "production").service(api).build()?;
//! println!("{}", env.plan(&swarm).await?); // says what Swarm's own rollout handles differently
//! env.apply(&swarm).await?;
//! # Ok(()) }
//! ```

mod options;
mod records;
mod rollout;
mod spec;
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{NetworkCreateRequest, TaskState};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::docker::DockerBackend;
use super::{Backend, ExecOutput, HostInfo, Instance, LogLine, LogStream, Orchestrator, RecordStore, Scope, Topology};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::RegistryAuth;

/// A Docker Swarm, reached through one manager's engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SwarmBackend {
    manager: DockerBackend,
    call_timeout: Duration,
    /// Engines of nodes, by hostname, for exec into tasks running there.
    nodes: BTreeMap<String, DockerBackend>,
    /// The nodes as hosts, as last listed.
    hosts: std::sync::Arc<std::sync::Mutex<Vec<HostInfo>>>,
    /// The spec hash this process last submitted per swarm service: an update status left from
    /// an earlier rollback is not this rollout's.
    submitted: std::sync::Arc<std::sync::Mutex<BTreeMap<String, String>>>,
}

/// Builder for [`SwarmBackend`].
#[derive(Debug, Default)]
#[must_use]
pub struct SwarmBackendBuilder {
    manager: Option<String>,
    call_timeout: Option<Duration>,
    registries: Vec<(String, RegistryAuth)>,
    nodes: Vec<(String, String)>,
}

impl SwarmBackendBuilder {
    /// The manager's engine (`unix:///var/run/docker.sock`, `tcp://10.0.0.10:2375`); default:
    /// `DOCKER_HOST`, else the local socket.
    pub fn manager(mut self, endpoint: impl Into<String>) -> Self {
        self.manager = Some(endpoint.into());
        self
    }

    /// Upper bound of each call to the manager (default 60 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = Some(d);
        self
    }

    /// Credentials for a registry, forwarded to the nodes that pull its images.
    pub fn registry_auth(mut self, registry: impl Into<String>, auth: RegistryAuth) -> Self {
        self.registries.push((registry.into(), auth));
        self
    }

    /// The engine of the node `hostname`, for `exec` into the tasks that run there (a swarm's
    /// manager cannot exec into a task on another node).
    pub fn node_engine(mut self, hostname: impl Into<String>, endpoint: impl Into<String>) -> Self {
        self.nodes.push((hostname.into(), endpoint.into()));
        self
    }

    /// Connects to the manager and checks that it is one.
    pub async fn connect(self) -> Result<SwarmBackend> {
        let call_timeout = self.call_timeout.unwrap_or(Duration::from_secs(60));
        let mut b = DockerBackend::builder().call_timeout(call_timeout);
        if let Some(m) = &self.manager {
            b = b.host(m.clone());
        }
        for (registry, auth) in &self.registries {
            b = b.registry_auth(registry, auth.clone());
        }
        let manager = b.connect().await?;
        let e = manager.engine();
        let swarm = tokio::time::timeout(call_timeout, e.inspect_swarm()).await;
        if !matches!(swarm, Ok(Ok(_))) {
            return Err(Error::unsupported(
                manager.describe(),
                "run swarm services",
                "it is not a swarm manager (`docker swarm init`, or connect to a manager node)",
            ));
        }
        let mut nodes = BTreeMap::new();
        for (hostname, endpoint) in self.nodes {
            nodes.insert(hostname, DockerBackend::builder().host(endpoint).call_timeout(call_timeout).connect().await?);
        }
        let swarm =
            SwarmBackend { manager, call_timeout, nodes, hosts: Default::default(), submitted: Default::default() };
        swarm.nodes().await?;
        Ok(swarm)
    }
}

impl SwarmBackend {
    /// A builder.
    pub fn builder() -> SwarmBackendBuilder {
        SwarmBackendBuilder::default()
    }

    /// The swarm's nodes as hosts (hostname and address), with whether each is ready.
    pub async fn nodes_ready(&self) -> Result<Vec<(HostInfo, bool)>> {
        Ok(self.nodes().await?.into_iter().map(|n| (n.host(), n.ready)).collect())
    }

    async fn task(&self, id: &str) -> Result<bollard::models::Task> {
        let e = self.manager.engine();
        self.manager.call("inspect task", id, e.inspect_task(id)).await
    }
}

#[async_trait]
impl Backend for SwarmBackend {
    fn describe(&self) -> String {
        format!("swarm via {}", self.manager.describe())
    }

    fn limits(&self, service: &crate::model::Service) -> Vec<crate::backend::Limit> {
        // Its own rollout's, and its nodes' (Docker engines).
        let mut all = spec::limits(service);
        all.extend(self.manager.limits(service));
        all
    }

    async fn list_instances(&self, scope: &Scope) -> Result<Vec<Instance>> {
        self.instances(scope).await
    }

    async fn inspect_instance(&self, id: &str) -> Result<Instance> {
        let task = self.task(id).await?;
        let e = self.manager.engine();
        let service_id = task.service_id.clone().unwrap_or_default();
        let svc = self.manager.call("inspect service", &service_id, e.inspect_service(&service_id, None)).await?;
        let nodes = self.nodes().await?.into_iter().map(|n| (n.id.clone(), n)).collect();
        Ok(tasks::to_instance(task, &svc, &nodes))
    }

    async fn wait_exit(&self, id: &str) -> Result<i64> {
        loop {
            let status = self.task(id).await?.status.unwrap_or_default();
            match status.state {
                Some(TaskState::COMPLETE | TaskState::FAILED | TaskState::SHUTDOWN | TaskState::REJECTED) => {
                    return Ok(status.container_status.and_then(|c| c.exit_code).unwrap_or(-1));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>> {
        let all: Vec<Result<LogLine>> = self.logs(id, false, Some(lines)).collect().await;
        all.into_iter().map(|l| l.map(|l| l.text)).collect()
    }

    fn logs(&self, id: &str, follow: bool, tail: Option<usize>) -> BoxStream<'static, Result<LogLine>> {
        let options = bollard::query_parameters::LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: tail.map_or_else(|| "all".to_string(), |t| t.to_string()),
            ..Default::default()
        };
        let id = id.to_string();
        let stream = self.manager.engine().task_logs(&id, Some(options));
        Box::pin(stream.flat_map(move |item| {
            let lines: Vec<Result<LogLine>> = match item {
                Ok(out) => {
                    let stream = match out {
                        bollard::container::LogOutput::StdErr { .. } => LogStream::Stderr,
                        _ => LogStream::Stdout,
                    };
                    let text = String::from_utf8_lossy(&out.into_bytes()).into_owned();
                    text.lines()
                        .map(|l| Ok(LogLine { instance: id.clone(), stream, text: crate::scrub::text(l).into_owned() }))
                        .collect()
                }
                Err(e) => vec![Err(crate::backend::docker::engine_error("read logs", id.as_str(), &e))],
            };
            futures::stream::iter(lines)
        }))
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
        let task = self.task(id).await?;
        let node = task.node_id.clone().unwrap_or_default();
        let hostname = self.nodes().await?.into_iter().find(|n| n.id == node).map(|n| n.hostname).unwrap_or_default();
        let container = task.status.and_then(|s| s.container_status).and_then(|c| c.container_id).unwrap_or_default();
        let Some(engine) = self.nodes.get(&hostname) else {
            return Err(Error::unsupported(
                self.describe(),
                format!("exec into task {id} on node {hostname}"),
                "a manager cannot exec into a task on a node; give the node's engine with \
                 SwarmBackendBuilder::node_engine",
            ));
        };
        engine.exec(&container, command, timeout).await
    }

    async fn probe_address(&self, instance: &Instance, port: u16) -> Result<Option<SocketAddr>> {
        Ok(instance
            .published
            .iter()
            .find(|p| p.container_port == port)
            .and_then(|p| format!("{}:{}", p.host_ip, p.host_port).parse().ok()))
    }

    fn published_host(&self) -> String {
        self.manager.published_host()
    }

    async fn ensure_network(&self, scope: &Scope) -> Result<bool> {
        let name = scope.network_name();
        let e = self.manager.engine();
        if tokio::time::timeout(self.call_timeout, e.inspect_network(&name, None)).await.is_ok_and(|r| r.is_ok()) {
            return Ok(false);
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(scope.labels().into_iter().collect()),
            ..Default::default()
        };
        match tokio::time::timeout(self.call_timeout, e.create_network(request)).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })) => Ok(false),
            Ok(Err(err)) => Err(crate::backend::docker::engine_error("create network", name, &err)),
            Err(_) => {
                Err(Error::backend_kind("create network", name, ErrorKind::Timeout, "the manager did not answer"))
            }
        }
    }

    async fn remove_network(&self, scope: &Scope) -> Result<bool> {
        // Tasks leave the overlay a moment after their service is removed.
        for _ in 0..40 {
            match self.manager.remove_network(scope).await {
                Err(e) if e.to_string().contains("active endpoints") => {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                other => return other,
            }
        }
        self.manager.remove_network(scope).await
    }

    async fn ensure_volume(&self, scope: &Scope, volume: &str) -> Result<bool> {
        // Each node's engine creates a task's named volume where the task runs.
        let _ = (scope, volume);
        Ok(false)
    }

    async fn list_volumes(&self, scope: &Scope) -> Result<Vec<String>> {
        self.manager.list_volumes(scope).await
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.manager.remove_volume(name).await
    }

    async fn preflight(&self) -> Result<()> {
        let nodes = self.nodes().await?;
        if !nodes.iter().any(|n| n.ready) {
            return Err(Error::backend_kind("preflight", self.describe(), ErrorKind::Unreachable, "no node is ready"));
        }
        Ok(())
    }

    fn records(&self) -> Option<&dyn RecordStore> {
        Some(self)
    }

    fn topology(&self) -> Option<&dyn Topology> {
        Some(self)
    }

    fn orchestrator(&self) -> Option<&dyn Orchestrator> {
        Some(self)
    }
}

impl Topology for SwarmBackend {
    /// The nodes, by hostname, as the swarm last reported them (read when the backend connected,
    /// refreshed by every listing).
    fn hosts(&self) -> Vec<HostInfo> {
        self.hosts.lock().map(|h| h.clone()).unwrap_or_default()
    }
}
