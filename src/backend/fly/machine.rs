//! A machine as the API describes it, and as the library sees it: an [`Instance`] read from its
//! state, metadata (the labels), checks and exit events.

use serde::Deserialize;
use serde_json::Value;

use super::config::MachineConfig;
use crate::backend::{label, EngineHealth, Instance, InstanceState, PublishedPort};

/// `Machine`, the fields this backend reads (unknown ones are ignored: the API may add some).
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct Machine {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub private_ip: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub config: MachineConfig,
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
    #[serde(default)]
    pub events: Vec<MachineEvent>,
}

/// `CheckStatus`.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct CheckStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: String,
}

/// `MachineEvent`.
#[derive(Clone, Debug, Default, Deserialize)]
pub(super) struct MachineEvent {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub request: Value,
    #[serde(default)]
    pub timestamp: i64,
}

impl Machine {
    pub fn metadata(&self, key: &str) -> Option<&String> {
        self.config.metadata.as_ref().and_then(|m| m.get(key))
    }

    /// Whether it belongs to the environment of `labels` (project and environment).
    pub fn owned_by(&self, project: &str, environment: &str) -> bool {
        self.metadata(label::MANAGED).is_some_and(|v| v == "true")
            && self.metadata(label::PROJECT).is_some_and(|v| v == project)
            && self.metadata(label::ENVIRONMENT).is_some_and(|v| v == environment)
    }

    pub fn gone(&self) -> bool {
        matches!(self.state.as_str(), "destroyed" | "destroying" | "replaced" | "migrated")
    }

    /// The exit code of its last exit, from its events (newest first in the API's list).
    pub fn exit_code(&self) -> Option<i64> {
        self.events
            .iter()
            .filter(|e| e.kind == "exit")
            .max_by_key(|e| e.timestamp)
            .and_then(|e| e.request.pointer("/exit_event/exit_code"))
            .and_then(Value::as_i64)
    }

    /// Its checks as one health status: healthy when every check passes.
    pub fn health(&self) -> EngineHealth {
        let checks: Vec<&CheckStatus> = self.checks.iter().collect();
        if checks.is_empty() {
            let declared = self.config.checks.as_ref().is_some_and(|c| !c.is_empty());
            return if declared && self.state == "started" { EngineHealth::Starting } else { EngineHealth::None };
        }
        if let Some(bad) = checks.iter().find(|c| c.status == "critical") {
            return EngineHealth::Unhealthy(format!("{}: {}", bad.name, crate::scrub::text(&bad.output)));
        }
        if checks.iter().all(|c| c.status == "passing") {
            EngineHealth::Healthy
        } else {
            EngineHealth::Starting
        }
    }

    /// The library's view of it, with `public_host` as the address of its published ports.
    pub fn instance(&self, public_host: &str) -> Instance {
        let decoded = label::InstanceLabels::read(|k| self.metadata(k)).unwrap_or_default();
        let state = match self.state.as_str() {
            "created" => InstanceState::Created,
            "starting" | "started" | "replacing" | "updating" => InstanceState::Running,
            "stopping" | "stopped" | "suspended" | "suspending" => InstanceState::Exited,
            "failed" | "launch_failed" | "destroying" | "destroyed" | "replaced" | "migrated" => InstanceState::Dead,
            _ => InstanceState::Unknown,
        };
        let exit_code =
            matches!(state, InstanceState::Exited | InstanceState::Dead).then(|| self.exit_code()).flatten();
        let env = self.config.env.clone().unwrap_or_default();
        // A value found on the target is a secret from now on (a rotation shows both).
        let secret_env = decoded.secret_env(|k| env.get(k).cloned());
        let published = self
            .config
            .services
            .iter()
            .flatten()
            .flat_map(|s| {
                let internal = u16::try_from(s.internal_port.unwrap_or(0)).unwrap_or(0);
                let protocol = s.protocol.clone().unwrap_or_else(|| "tcp".into());
                s.ports.iter().flatten().filter_map(move |p| {
                    Some(PublishedPort {
                        container_port: internal,
                        protocol: protocol.clone(),
                        host_ip: public_host.to_string(),
                        host_port: u16::try_from(p.port?).ok()?,
                    })
                })
            })
            .collect();
        let image_id = decoded.image.clone().or_else(|| self.config.image.clone()).unwrap_or_default();
        Instance {
            state,
            exit_code,
            restarts: u32::try_from(self.events.iter().filter(|e| e.kind == "restart").count()).unwrap_or(u32::MAX),
            engine_health: self.health(),
            published,
            ip: self.private_ip.parse().ok(),
            created: self.created_at.clone(),
            secret_env,
            ..Instance::labelled(decoded, self.id.clone(), self.name.clone(), image_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(json: Value) -> Machine {
        serde_json::from_value(json).unwrap_or_default()
    }

    #[test]
    fn exit_code_comes_from_the_newest_exit_event() {
        let m = machine(serde_json::json!({"id": "m1", "state": "stopped", "events": [
            {"type": "exit", "timestamp": 2, "request": {"exit_event": {"exit_code": 3}}},
            {"type": "start", "timestamp": 1},
            {"type": "exit", "timestamp": 0, "request": {"exit_event": {"exit_code": 0}}}
        ], "some_new_field": true}));
        assert_eq!(m.exit_code(), Some(3));
        assert_eq!(m.instance("a.fly.dev").state, InstanceState::Exited);
    }

    #[test]
    fn health_is_the_checks_together() {
        let passing = machine(serde_json::json!({"state": "started", "checks": [
            {"name": "health", "status": "passing"}, {"name": "servicecheck-00-http-8080", "status": "passing"}]}));
        assert_eq!(passing.health(), EngineHealth::Healthy);
        let failing = machine(serde_json::json!({"state": "started", "checks": [
            {"name": "health", "status": "passing"}, {"name": "x", "status": "critical", "output": "503"}]}));
        assert!(matches!(failing.health(), EngineHealth::Unhealthy(o) if o.contains("503")));
        let none = machine(serde_json::json!({"state": "started"}));
        assert_eq!(none.health(), EngineHealth::None);
    }
}
