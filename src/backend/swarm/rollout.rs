//! The swarm as an [`Orchestrator`]: a service is created or updated with the library's
//! template, and Swarm's own update (its `UpdateConfig`, see `spec.rs`) rolls it out; progress is
//! read from the service's `UpdateStatus` and its tasks.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::models::{NodeSpec, SecretSpec, Service as SwarmService, ServiceUpdateStatusStateEnum, Task, TaskState};
use bollard::query_parameters::{ListSecretsOptions, UpdateNodeOptions, UpdateServiceOptions};

use super::spec::{role_label, service_name, service_spec};
use super::tasks::scope_filter;
use super::SwarmBackend;
use crate::backend::{label, NativeRollout, Orchestrator, Scope, ServiceDeployment};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{secret_digest, ServiceKind};

/// On a swarm secret: the service it belongs to.
const SECRET_OF: &str = "io.harbormaster.secret-of";

impl SwarmBackend {
    async fn find_service(&self, name: &str) -> Result<Option<SwarmService>> {
        let e = self.manager.engine();
        match tokio::time::timeout(self.call_timeout, e.inspect_service(name, None)).await {
            Ok(Ok(s)) => Ok(Some(s)),
            Ok(Err(err)) if crate::backend::docker::is_not_found(&err) => Ok(None),
            Ok(Err(err)) => Err(crate::backend::docker::engine_error("inspect service", name, &err)),
            Err(_) => {
                Err(Error::backend_kind("inspect service", name, ErrorKind::Timeout, "the manager did not answer"))
            }
        }
    }

    /// The swarm secrets of a deployment, created where missing: (ID, name, key) each. A secret's
    /// name carries a digest of its value, so a new value is a new secret and a spec change.
    async fn secrets(&self, d: &ServiceDeployment<'_>) -> Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for (key, value) in &d.template.secrets {
            let digest = secret_digest(&d.service.name, key, value);
            let name = format!("{}-{}-{}", service_name(d), key.to_ascii_lowercase().replace('_', "-"), digest);
            let mut labels: HashMap<String, String> = d.scope.labels().into_iter().collect();
            labels.insert(SECRET_OF.into(), d.service.name.clone());
            let spec = SecretSpec {
                name: Some(name.clone()),
                labels: Some(labels),
                data: Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value.expose())),
                driver: None,
                templating: None,
            };
            // The value travels in the request body: the silent path, never bollard (which logs bodies).
            let id = match self.manager.silent().create_secret(&spec).await? {
                Some(id) => id,
                None => {
                    let e = self.manager.engine();
                    let found = self.manager.call("inspect secret", &name, e.inspect_secret(&name)).await?;
                    found.id.unwrap_or_default()
                }
            };
            out.push((id, name, key.clone()));
        }
        Ok(out)
    }

    /// Removes the environment's secrets of `service` that no service uses any more.
    async fn prune_secrets(&self, scope: &Scope, service: &str) -> Result<()> {
        let mut filters = scope_filter(scope);
        if let Some(l) = filters.get_mut("label") {
            l.push(format!("{SECRET_OF}={service}"));
        }
        let e = self.manager.engine();
        let all = self
            .manager
            .call(
                "list secrets",
                &scope.qualified(),
                e.list_secrets(Some(ListSecretsOptions { filters: Some(filters) })),
            )
            .await?;
        let services = self.scope_services(scope).await?;
        let used: Vec<String> = services
            .iter()
            .filter_map(|s| s.spec.as_ref()?.task_template.as_ref()?.container_spec.as_ref()?.secrets.clone())
            .flatten()
            .filter_map(|s| s.secret_id)
            .collect();
        for s in all {
            let Some(id) = s.id else { continue };
            if !used.contains(&id) {
                // In use by a task still stopping: removed by a later apply.
                let _ = tokio::time::timeout(self.call_timeout, e.delete_secret(&id)).await;
            }
        }
        Ok(())
    }

    /// Labels the nodes a role maps to (and only those) with the role's label.
    async fn label_role_nodes(&self, role: &str, hosts: &[String]) -> Result<()> {
        let key = role_label(role);
        let e = self.manager.engine();
        for n in self.nodes().await? {
            let want = hosts.contains(&n.hostname);
            if want == n.labels.contains_key(&key) {
                continue;
            }
            let node = self.manager.call("inspect node", &n.hostname, e.inspect_node(&n.id)).await?;
            let mut spec: NodeSpec = node.spec.unwrap_or_default();
            let labels = spec.labels.get_or_insert_with(HashMap::new);
            if want {
                labels.insert(key.clone(), "true".into());
            } else {
                labels.remove(&key);
            }
            let version = node.version.and_then(|v| v.index).and_then(|i| i64::try_from(i).ok()).unwrap_or(0);
            self.manager
                .call("label node", &n.hostname, e.update_node(&n.id, spec, UpdateNodeOptions { version }))
                .await?;
        }
        Ok(())
    }

    async fn service_tasks(&self, svc: &SwarmService) -> Result<Vec<Task>> {
        self.tasks(std::slice::from_ref(svc)).await
    }
}

fn version_of(s: &SwarmService) -> i32 {
    s.version.as_ref().and_then(|v| v.index).and_then(|i| i32::try_from(i).ok()).unwrap_or(0)
}

fn spec_hash_of_task(t: &Task) -> Option<&str> {
    t.spec.as_ref()?.container_spec.as_ref()?.labels.as_ref()?.get(label::SPEC_HASH).map(String::as_str)
}

#[async_trait]
impl Orchestrator for SwarmBackend {
    async fn submit(&self, d: &ServiceDeployment<'_>) -> Result<()> {
        if let Some(role) = d.service.role.as_deref().filter(|_| !d.hosts.is_empty()) {
            self.label_role_nodes(role, d.hosts).await?;
        }
        let secrets = self.secrets(d).await?;
        let spec = service_spec(d, &d.scope.network_name(), &secrets);
        let name = service_name(d);
        if let Ok(mut m) = self.submitted.lock() {
            m.insert(name.clone(), d.spec_hash.to_string());
        }
        let credentials = self.manager.engine_credentials(&d.template.image_id).await;
        let e = self.manager.engine();
        match self.find_service(&name).await? {
            // A job runs once per spec: a new spec is a new service.
            Some(_) if d.service.kind == ServiceKind::Job => {
                self.manager.call("remove service", &name, e.delete_service(&name)).await?;
                self.manager.call("create service", &name, e.create_service(spec, credentials)).await?;
            }
            Some(existing) => {
                let options = UpdateServiceOptions {
                    version: version_of(&existing),
                    registry_auth_from: "spec".into(),
                    rollback: None,
                };
                self.manager.call("update service", &name, e.update_service(&name, spec, options, credentials)).await?;
            }
            None => {
                self.manager.call("create service", &name, e.create_service(spec, credentials)).await?;
            }
        }
        Ok(())
    }

    async fn progress(&self, scope: &Scope, service: &str) -> Result<NativeRollout> {
        let name = format!("{}-{service}", scope.qualified());
        let Some(svc) = self.find_service(&name).await? else {
            return Err(Error::backend_kind(
                "read rollout",
                name,
                ErrorKind::NotFound,
                "the swarm has no such service",
            ));
        };
        let tasks = self.service_tasks(&svc).await?;
        let labels = svc.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default();
        let hash = labels.get(label::SPEC_HASH).cloned().unwrap_or_default();
        let is_job = labels.get(label::KIND).map(String::as_str) == Some("job");
        let current: Vec<&Task> = tasks.iter().filter(|t| spec_hash_of_task(t) == Some(hash.as_str())).collect();
        let error_of = |t: &Task| {
            let s = t.status.clone().unwrap_or_default();
            let code = s.container_status.and_then(|c| c.exit_code);
            let why = s.err.or(s.message).unwrap_or_default();
            (why, code)
        };
        if is_job {
            if current.iter().any(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::COMPLETE)) {
                return Ok(NativeRollout::Completed);
            }
            if let Some(t) = current.iter().find(|t| {
                matches!(t.status.as_ref().and_then(|s| s.state), Some(TaskState::FAILED) | Some(TaskState::REJECTED))
            }) {
                let (reason, exit_code) = error_of(t);
                return Ok(NativeRollout::Failed { reason, exit_code });
            }
            return Ok(NativeRollout::Updating { updated: 0, total: 1, message: "the job runs".into() });
        }
        let mode = svc.spec.as_ref().and_then(|s| s.mode.as_ref());
        let want = match mode.and_then(|m| m.replicated.as_ref()) {
            Some(r) => r.replicas.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
            // A global service wants a task on every node it may run on: the nodes the
            // orchestrator gave one that should run (the update replaces them node by node).
            None if mode.and_then(|m| m.global.as_ref()).is_some() => {
                let mut nodes: Vec<&str> = tasks
                    .iter()
                    .filter(|t| t.desired_state == Some(TaskState::RUNNING))
                    .filter_map(|t| t.node_id.as_deref())
                    .collect();
                nodes.sort_unstable();
                nodes.dedup();
                u32::try_from(nodes.len()).unwrap_or(u32::MAX).max(1)
            }
            None => 0,
        };
        let running = current
            .iter()
            .filter(|t| {
                t.desired_state == Some(TaskState::RUNNING)
                    && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
            })
            .count();
        let running = u32::try_from(running).unwrap_or(u32::MAX);
        let others_running = tasks
            .iter()
            .filter(|t| spec_hash_of_task(t) != Some(hash.as_str()))
            .any(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING));
        let status = svc.update_status.clone().unwrap_or_default();
        let message = status.message.clone().unwrap_or_default();
        // A rollback puts the previous spec back: while the spec is still the one submitted, a
        // rollback status is an earlier rollout's.
        let submitted = self.submitted.lock().ok().and_then(|m| m.get(&name).cloned());
        let stale = submitted.as_deref() == Some(hash.as_str());
        let state =
            match status.state {
                Some(
                    ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED,
                ) if stale => None,
                other => other,
            };
        Ok(match state {
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED) => NativeRollout::RolledBack { reason: message },
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED) => NativeRollout::RollingBack { reason: message },
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED) => {
                NativeRollout::Failed { reason: format!("the rollback paused: {message}"), exit_code: None }
            }
            Some(ServiceUpdateStatusStateEnum::PAUSED) => NativeRollout::Paused { reason: message },
            // Swarm still watches the updated tasks (its monitor period, from min_ready).
            Some(ServiceUpdateStatusStateEnum::UPDATING) if submitted.as_deref().is_none_or(|s| s == hash) => {
                NativeRollout::Updating { updated: running.min(want), total: want, message }
            }
            _ if running >= want && !others_running => NativeRollout::Completed,
            _ => {
                let failing = current.iter().rev().find(|t| {
                    matches!(
                        t.status.as_ref().and_then(|s| s.state),
                        Some(TaskState::FAILED) | Some(TaskState::REJECTED)
                    )
                });
                let message = match failing {
                    Some(t) => format!("{message} (a task failed: {})", error_of(t).0),
                    None => message,
                };
                NativeRollout::Updating { updated: running.min(want), total: want, message }
            }
        })
    }

    async fn roll_back(&self, scope: &Scope, service: &str) -> Result<()> {
        let name = format!("{}-{service}", scope.qualified());
        let Some(svc) = self.find_service(&name).await? else { return Ok(()) };
        let has_previous = svc.update_status.is_some();
        let e = self.manager.engine();
        if !has_previous {
            // Nothing ran before: rolling back is removing it.
            self.manager.call("remove service", &name, e.delete_service(&name)).await?;
            return Ok(());
        }
        let Some(spec) = svc.spec.clone() else { return Ok(()) };
        let options = UpdateServiceOptions {
            version: version_of(&svc),
            registry_auth_from: "spec".into(),
            rollback: Some("previous".into()),
        };
        self.manager.call("roll back service", &name, e.update_service(&name, spec, options, None)).await?;
        Ok(())
    }

    async fn remove_service(&self, scope: &Scope, service: &str) -> Result<bool> {
        let name = format!("{}-{service}", scope.qualified());
        if self.find_service(&name).await?.is_none() {
            return Ok(false);
        }
        let e = self.manager.engine();
        self.manager.call("remove service", &name, e.delete_service(&name)).await?;
        let _ = self.prune_secrets(scope, service).await;
        Ok(true)
    }

    async fn services(&self, scope: &Scope) -> Result<Vec<String>> {
        Ok(self
            .scope_services(scope)
            .await?
            .into_iter()
            .filter_map(|s| s.spec?.labels?.get(label::SERVICE).cloned())
            .collect())
    }

    async fn settled(&self, scope: &Scope, service: &str) -> Result<()> {
        self.prune_secrets(scope, service).await
    }
}
