//! What runs on a swarm, as the library sees it: each task of the environment's services is an
//! [`Instance`]; nodes are hosts.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Node, NodeState, Service as SwarmService, Task, TaskState};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};

use super::SwarmBackend;
use crate::backend::{label, HostInfo, Instance, InstanceState, PublishedPort, Scope};
use crate::error::Result;

/// A node: its ID, hostname, address and whether it is up.
#[derive(Clone, Debug)]
pub(crate) struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub address: String,
    pub ready: bool,
    pub labels: HashMap<String, String>,
}

impl NodeInfo {
    fn from(n: Node) -> NodeInfo {
        let spec = n.spec.unwrap_or_default();
        let status = n.status.unwrap_or_default();
        NodeInfo {
            id: n.id.unwrap_or_default(),
            hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
            address: status.addr.unwrap_or_default(),
            ready: status.state == Some(NodeState::READY),
            labels: spec.labels.unwrap_or_default(),
        }
    }

    pub fn host(&self) -> HostInfo {
        HostInfo { name: self.hostname.clone(), address: self.address.clone() }
    }
}

pub(crate) fn scope_filter(scope: &Scope) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}={}", label::PROJECT, scope.project), format!("{}={}", label::ENVIRONMENT, scope.environment)],
    )])
}

impl SwarmBackend {
    pub(crate) async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let e = self.manager.engine();
        let nodes = self.manager.call("list nodes", "swarm", e.list_nodes(None::<ListNodesOptions>)).await?;
        let nodes: Vec<NodeInfo> = nodes.into_iter().map(NodeInfo::from).collect();
        if let Ok(mut hosts) = self.hosts.lock() {
            *hosts = nodes.iter().map(NodeInfo::host).collect();
        }
        Ok(nodes)
    }

    /// The environment's swarm services.
    pub(crate) async fn scope_services(&self, scope: &Scope) -> Result<Vec<SwarmService>> {
        let e = self.manager.engine();
        let options = ListServicesOptions { filters: Some(scope_filter(scope)), status: None };
        self.manager.call("list services", &scope.qualified(), e.list_services(Some(options))).await
    }

    /// The tasks of one swarm service, or of every service of the environment.
    pub(crate) async fn tasks(&self, services: &[SwarmService]) -> Result<Vec<Task>> {
        let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let e = self.manager.engine();
        let options = ListTasksOptions { filters: Some(HashMap::from([("service".to_string(), ids)])) };
        self.manager.call("list tasks", "swarm", e.list_tasks(Some(options))).await
    }

    /// The tasks that are (or should be) running, as instances: the newest task of each slot
    /// that the swarm wants running, and for jobs the newest of each.
    pub(crate) async fn instances(&self, scope: &Scope) -> Result<Vec<Instance>> {
        let services = self.scope_services(scope).await?;
        let (tasks, nodes) = futures::future::try_join(self.tasks(&services), self.nodes()).await?;
        let nodes: BTreeMap<String, NodeInfo> = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
        let by_id: HashMap<String, &SwarmService> =
            services.iter().filter_map(|s| s.id.clone().map(|id| (id, s))).collect();
        // Newest task per (service, slot), or per (service, node) for a global service's tasks,
        // which have no slot; a job has one run per spec.
        let mut newest: BTreeMap<(String, String), Task> = BTreeMap::new();
        for t in tasks {
            let place = match (t.slot, &t.node_id) {
                (None, Some(node)) => format!("node {node}"),
                (slot, _) => format!("slot {:020}", slot.unwrap_or(0)),
            };
            let key = (t.service_id.clone().unwrap_or_default(), place);
            let wanted = matches!(t.desired_state, Some(TaskState::RUNNING) | Some(TaskState::COMPLETE));
            let replace = match newest.get(&key) {
                None => true,
                Some(old) => {
                    let old_wanted = matches!(old.desired_state, Some(TaskState::RUNNING) | Some(TaskState::COMPLETE));
                    (wanted && !old_wanted) || (wanted == old_wanted && t.created_at > old.created_at)
                }
            };
            if replace {
                newest.insert(key, t);
            }
        }
        let mut out: Vec<Instance> = newest
            .into_values()
            .filter(|t| matches!(t.desired_state, Some(TaskState::RUNNING) | Some(TaskState::COMPLETE)))
            .filter_map(|t| {
                let svc = by_id.get(t.service_id.as_deref().unwrap_or_default())?;
                Some(to_instance(t, svc, &nodes))
            })
            .collect();
        number_global_tasks(&mut out, &services);
        Ok(out)
    }
}

/// A global service's tasks have no slot: number them by their node's host name (slot 0 on the
/// first node), so that each is one instance of its own.
fn number_global_tasks(instances: &mut [Instance], services: &[SwarmService]) {
    for svc in services {
        let global = svc.spec.as_ref().and_then(|s| s.mode.as_ref()).and_then(|m| m.global.as_ref()).is_some();
        let Some(name) = svc.spec.as_ref().and_then(|s| s.name.clone()).filter(|_| global) else { continue };
        let mut mine: Vec<&mut Instance> =
            instances.iter_mut().filter(|i| i.name.rsplit_once('.').map(|(n, _)| n) == Some(name.as_str())).collect();
        mine.sort_by(|a, b| (&a.host, &a.created).cmp(&(&b.host, &b.created)));
        for (n, i) in mine.into_iter().enumerate() {
            i.slot = u32::try_from(n).unwrap_or(u32::MAX);
            i.name = format!("{name}.{}", n.saturating_add(1));
        }
    }
}

/// One task as an instance.
pub(crate) fn to_instance(t: Task, svc: &SwarmService, nodes: &BTreeMap<String, NodeInfo>) -> Instance {
    let service_labels = svc.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default();
    let container = t.spec.as_ref().and_then(|s| s.container_spec.clone()).unwrap_or_default();
    let labels = container.labels.clone().unwrap_or_default();
    // The service's labels say what it is; its tasks' container labels, what they were made from.
    let mut decoded =
        label::InstanceLabels::read(|k| labels.get(k).or_else(|| service_labels.get(k))).unwrap_or_default();
    let status = t.status.clone().unwrap_or_default();
    let exit_code = status.container_status.as_ref().and_then(|c| c.exit_code);
    let state = match status.state {
        Some(TaskState::RUNNING) => InstanceState::Running,
        Some(TaskState::COMPLETE) | Some(TaskState::FAILED) | Some(TaskState::SHUTDOWN) => InstanceState::Exited,
        Some(TaskState::REJECTED) | Some(TaskState::ORPHANED) | Some(TaskState::REMOVE) => InstanceState::Dead,
        Some(_) => InstanceState::Created,
        None => InstanceState::Unknown,
    };
    let node = t.node_id.as_ref().and_then(|n| nodes.get(n));
    let address = node.map(|n| n.address.clone()).unwrap_or_default();
    let mut published: Vec<PublishedPort> = Vec::new();
    for p in status.port_status.and_then(|p| p.ports).unwrap_or_default() {
        let (Some(target), Some(port)) = (p.target_port, p.published_port) else { continue };
        let (Ok(target), Ok(port)) = (u16::try_from(target), u16::try_from(port)) else { continue };
        if published.iter().any(|x| x.container_port == target && x.host_port == port) {
            continue;
        }
        let protocol = p.protocol.map(|p| p.to_string()).unwrap_or_else(|| "tcp".into());
        published.push(PublishedPort { container_port: target, protocol, host_ip: address.clone(), host_port: port });
    }
    let slot = t.slot.and_then(|s| u32::try_from(s.saturating_sub(1)).ok()).unwrap_or(0);
    let secret_digests = container
        .secrets
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let key = s.file.and_then(|f| f.name)?;
            let digest = s.secret_name?.rsplit('-').next()?.to_string();
            Some((key, digest))
        })
        .collect();
    let name = format!("{}.{}", svc.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default(), slot + 1);
    decoded.slot = slot;
    let image_id = decoded.image.clone().unwrap_or_default();
    Instance {
        state,
        exit_code,
        published,
        created: t.created_at.unwrap_or_default(),
        host: node.map(|n| n.hostname.clone()),
        secret_digests,
        ..Instance::labelled(decoded, t.id.unwrap_or_default(), name, image_id)
    }
}
