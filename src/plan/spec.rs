//! The container configuration derived from a service: what is hashed, recorded in labels and
//! compared to find what changed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::{label, InstanceSpec, Scope};
use crate::model::{Environment, Port, Resources, RestartPolicy, Secret, Service, ServiceKind, Volume};

/// Everything that goes into a service's containers, with secrets as references only.
/// Health check, dependencies, replicas and rollout are not part of it: changing them replaces nothing.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ContainerConfig<'a> {
    kind: ServiceKind,
    image: &'a crate::model::ImageSource,
    entrypoint: &'a Option<Vec<String>>,
    command: &'a Option<Vec<String>>,
    env: BTreeMap<&'a str, &'a str>,
    secrets: &'a BTreeMap<String, Secret>,
    ports: &'a [Port],
    volumes: &'a [Volume],
    resources: &'a Resources,
    restart: RestartPolicy,
    labels: &'a BTreeMap<String, String>,
    user: &'a Option<String>,
    workdir: &'a Option<String>,
    stop_grace_ms: u128,
}

/// The desired state of one service's instances.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub service: Service,
    pub image_id: String,
    pub env: BTreeMap<String, String>,
    pub spec_json: String,
    pub spec_hash: String,
}

impl Template {
    pub(crate) fn new(env: &Environment, service: &Service, image_id: &str) -> Template {
        let mut merged: BTreeMap<String, String> = env.shared_env.clone();
        merged.extend(service.env.clone());
        let config = ContainerConfig {
            kind: service.kind,
            image: &service.image,
            entrypoint: &service.entrypoint,
            command: &service.command,
            env: merged.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            secrets: &service.secrets,
            ports: &service.ports,
            volumes: &service.volumes,
            resources: &service.resources,
            restart: service.restart,
            labels: &service.labels,
            user: &service.user,
            workdir: &service.workdir,
            stop_grace_ms: service.stop_grace.as_millis(),
        };
        // Serializing plain data with string keys cannot fail; an empty fallback would only make
        // every instance look changed, never crash.
        let spec_json = serde_json::to_string(&config).unwrap_or_default();
        let spec_hash = hex(&Sha256::digest(spec_json.as_bytes()))[..16].to_string();
        Template { service: service.clone(), image_id: image_id.to_string(), env: merged, spec_json, spec_hash }
    }

    /// The spec of one new instance in `slot`, named `name`.
    pub(crate) fn instance(&self, scope: &Scope, slot: u32, name: String) -> InstanceSpec {
        let s = &self.service;
        let mut labels = s.labels.clone();
        labels.extend(scope.labels());
        labels.insert(label::SERVICE.into(), s.name.clone());
        labels.insert(label::SLOT.into(), slot.to_string());
        labels.insert(label::KIND.into(), if s.kind == ServiceKind::Job { "job" } else { "service" }.into());
        labels.insert(label::SPEC_HASH.into(), self.spec_hash.clone());
        labels.insert(label::SPEC.into(), self.spec_json.clone());
        labels.insert(label::SECRET_KEYS.into(), s.secrets.keys().cloned().collect::<Vec<_>>().join(","));
        InstanceSpec {
            name,
            scope: scope.clone(),
            service: s.name.clone(),
            image_id: self.image_id.clone(),
            entrypoint: s.entrypoint.clone(),
            command: s.command.clone(),
            env: self.env.clone(),
            secrets: s.secrets.clone(),
            ports: s.ports.clone(),
            volumes: s.volumes.clone(),
            resources: s.resources.clone(),
            restart: s.restart,
            labels,
            user: s.user.clone(),
            workdir: s.workdir.clone(),
            stop_grace: s.stop_grace,
        }
    }

    /// How long the instance gets to stop.
    pub(crate) fn stop_grace(&self) -> Duration {
        self.service.stop_grace
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Human-readable differences between a recorded spec and the desired one: `env API_MODE changed`.
pub(crate) fn describe_changes(old_json: Option<&str>, new_json: &str) -> Vec<String> {
    let Some(old) = old_json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) else {
        return vec!["its recorded configuration is missing or unreadable".into()];
    };
    let Ok(new) = serde_json::from_str::<serde_json::Value>(new_json) else { return Vec::new() };
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else { return Vec::new() };
    let mut out = Vec::new();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (a, b) = (old.get(k), new.get(k));
        if a == b {
            continue;
        }
        match (k.as_str(), a.and_then(|v| v.as_object()), b.and_then(|v| v.as_object())) {
            ("env" | "secrets" | "labels", Some(a), Some(b)) => {
                let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
                names.sort();
                names.dedup();
                for n in names {
                    let what = match (a.get(n), b.get(n)) {
                        (None, Some(_)) => "added",
                        (Some(_), None) => "removed",
                        (x, y) if x != y => "changed",
                        _ => continue,
                    };
                    let field = match k.as_str() {
                        "env" => "env",
                        "secrets" => "secret reference",
                        _ => "label",
                    };
                    out.push(format!("{field} {n} {what}"));
                }
            }
            _ => out.push(format!("{} changed", k.replace('_', " "))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_named_per_key() {
        let old = r#"{"env":{"A":"1","B":"2"},"command":["x"],"secrets":{"P":{"env":"X"}}}"#;
        let new = r#"{"env":{"A":"1","B":"3","C":"4"},"command":["y"],"secrets":{"P":{"env":"Y"}}}"#;
        let c = describe_changes(Some(old), new);
        assert_eq!(c, ["command changed", "env B changed", "env C added", "secret reference P changed"]);
    }

    #[test]
    fn missing_record_is_a_reason() {
        assert_eq!(describe_changes(None, "{}").len(), 1);
    }
}
