//! The container configuration derived from a service: what is hashed, recorded in labels and
//! compared to find what changed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{label, InstanceSpec, Scope};
use crate::model::{
    ContainerFile, ContainerOptions, Environment, FileRecord, Port, Resources, RestartPolicy, Secret, SecretSource,
    Service, ServiceKind, Volume,
};

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
    // Added after the first release: left out when unset, so an existing service's hash (and
    // so its containers) does not change.
    #[serde(skip_serializing_if = "ContainerOptions::is_default")]
    container: &'a ContainerOptions,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    aliases: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    networks: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<FileRecord>,
}

/// A [`ContainerConfig`] read back from a revision.
#[derive(Clone, Debug, Deserialize)]
struct RecordedConfig {
    image: crate::model::ImageSource,
    entrypoint: Option<Vec<String>>,
    command: Option<Vec<String>>,
    env: BTreeMap<String, String>,
    secrets: BTreeMap<String, SecretSource>,
    ports: Vec<Port>,
    volumes: Vec<Volume>,
    resources: Resources,
    restart: RestartPolicy,
    labels: BTreeMap<String, String>,
    user: Option<String>,
    workdir: Option<String>,
    stop_grace_ms: u64,
    #[serde(default)]
    container: ContainerOptions,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default)]
    files: Vec<FileRecord>,
}

/// The desired state of one service's instances.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub service: Service,
    pub image_id: String,
    pub env: BTreeMap<String, String>,
    pub spec_json: String,
    pub spec_hash: String,
    /// The hosts its role places it on (empty: not placed, one engine runs everything).
    pub hosts: Vec<String>,
    /// The image pinned to its registry digest (`postgres@sha256:…`), when it came from (or went
    /// to) a registry: what a host that lacks the image, or a rollback, pulls.
    pub image_pin: Option<String>,
    /// For a target that places tasks itself (a swarm): the hosts its role allows; `hosts` is
    /// then empty.
    pub placement: Vec<String>,
    /// Whether the target places the instances itself (a swarm): a global service then has as
    /// many as the target runs.
    pub self_placed: bool,
}

impl Template {
    pub(crate) fn new(env: &Environment, service: &Service, image_id: &str) -> Template {
        let mut merged: BTreeMap<String, String> = env.shared_env.clone();
        merged.extend(service.env.clone());
        Template::with_env(service, image_id, merged)
    }

    /// A template whose containers get exactly `merged` as their environment (shared variables
    /// already merged in), as a recorded revision has it.
    pub(crate) fn with_env(service: &Service, image_id: &str, merged: BTreeMap<String, String>) -> Template {
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
            container: &service.container,
            aliases: &service.aliases,
            networks: &service.networks,
            files: service.files.iter().map(ContainerFile::record).collect(),
        };
        // Serializing plain data with string keys cannot fail; an empty fallback would only make
        // every instance look changed, never crash.
        let spec_json = serde_json::to_string(&config).unwrap_or_default();
        let spec_hash = if service.keep_image {
            // Its image is recorded, and left out of what decides a replacement.
            let kept = crate::model::ImageSource::Reference(String::new());
            let hashed = serde_json::to_string(&ContainerConfig { image: &kept, ..config }).unwrap_or_default();
            crate::model::hex(&Sha256::digest(hashed.as_bytes()))[..16].to_string()
        } else {
            crate::model::hex(&Sha256::digest(spec_json.as_bytes()))[..16].to_string()
        };
        Template {
            service: service.clone(),
            image_id: image_id.to_string(),
            env: merged,
            spec_json,
            spec_hash,
            hosts: Vec::new(),
            image_pin: None,
            placement: Vec::new(),
            self_placed: false,
        }
    }

    /// The template of a recorded configuration (`spec_json`, as labels and revisions hold it) on
    /// `image_id`. What a revision does not record (health check, replicas, rollout, dependencies)
    /// comes from `current`. Secret values are never recorded: each secret is taken from `current`
    /// when its source is the same, and otherwise read again from its recorded source.
    pub(crate) fn from_recorded(current: &Service, spec_json: &str, image_id: &str) -> Result<Template, String> {
        let rc: RecordedConfig =
            serde_json::from_str(spec_json).map_err(|e| format!("its recorded configuration is unreadable: {e}"))?;
        let mut secrets = BTreeMap::new();
        for (key, source) in rc.secrets {
            let secret = read_again(current.secrets.get(&key), &source, &format!("secret `{key}`"))?;
            secrets.insert(key, secret);
        }
        let mut files = Vec::new();
        for r in &rc.files {
            let now = current.files.iter().find(|f| f.target == r.target);
            let contents = match (&r.sha256, &r.secret) {
                (_, Some(source)) => {
                    let secret = read_again(now.and_then(ContainerFile::secret_contents), source, &format!("secret file {}", r.target))?;
                    ContainerFile::secret(&r.target, secret)
                }
                (Some(_), None) => match now.filter(|f| f.record().sha256 == r.sha256) {
                    Some(f) => f.clone(),
                    None => {
                        return Err(format!(
                            "it wrote the file {} with other contents than the current description, and a revision records only their digest",
                            r.target
                        ))
                    }
                },
                (None, None) => return Err(format!("its record of the file {} is incomplete", r.target)),
            };
            files.push(contents.mode(r.mode));
        }
        let mut s = current.clone();
        s.image = rc.image;
        s.entrypoint = rc.entrypoint;
        s.command = rc.command;
        s.env = rc.env.clone();
        s.secrets = secrets;
        s.ports = rc.ports;
        s.volumes = rc.volumes;
        s.resources = rc.resources;
        s.restart = rc.restart;
        s.labels = rc.labels;
        s.user = rc.user;
        s.workdir = rc.workdir;
        s.stop_grace = Duration::from_millis(rc.stop_grace_ms);
        s.container = rc.container;
        s.aliases = rc.aliases;
        s.networks = rc.networks;
        s.files = files;
        Ok(Template::with_env(&s, image_id, rc.env))
    }

    /// The spec of one new instance in `slot`, named `name`.
    pub(crate) fn instance(&self, scope: &Scope, slot: u32, name: String) -> InstanceSpec {
        let s = &self.service;
        let mut labels = s.labels.clone();
        let mut annotations = BTreeMap::new();
        labels.extend(scope.labels());
        label::InstanceLabels {
            service: s.name.clone(),
            slot,
            kind: s.kind,
            spec_hash: self.spec_hash.clone(),
            spec_json: Some(self.spec_json.clone()),
            image: None,
            secret_keys: s.secrets.keys().cloned().collect(),
        }
        .write(&mut labels, &mut annotations);
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
            annotations,
            user: s.user.clone(),
            workdir: s.workdir.clone(),
            stop_grace: s.stop_grace,
            host: self.host_for(slot).map(str::to_string),
            image_pull: self.image_pin.clone(),
            health: s.health.clone(),
            container: s.container.clone(),
            aliases: s.aliases.clone(),
            networks: s.networks.clone(),
            inherit_volumes_from: None,
        }
    }

    /// Places the instances on `hosts` (a role's, in order; empty on a single engine): replicas
    /// go round them, and a global service gets one on each (one on a single engine).
    pub(crate) fn place_on(&mut self, mut hosts: Vec<String>) {
        if self.service.global {
            let mut seen = std::collections::HashSet::new();
            hosts.retain(|h| seen.insert(h.clone()));
            self.service.replicas = u32::try_from(hosts.len()).unwrap_or(u32::MAX).max(1);
        }
        self.hosts = hosts;
    }

    /// The host of `slot` when the service is placed on hosts: replicas go round the role's hosts.
    pub(crate) fn host_for(&self, slot: u32) -> Option<&str> {
        if self.hosts.is_empty() {
            return None;
        }
        self.hosts.get(slot as usize % self.hosts.len()).map(String::as_str)
    }

    /// How long the instance gets to stop.
    pub(crate) fn stop_grace(&self) -> Duration {
        self.service.stop_grace
    }
}

/// A recorded secret again: `current` when it has the same source, else read from its source; an
/// inline value is never recorded, so only the current description can give it.
fn read_again(current: Option<&Secret>, source: &SecretSource, what: &str) -> Result<Secret, String> {
    match (current, source) {
        (Some(s), _) if s.source() == source => Ok(s.clone()),
        (_, SecretSource::Env(var)) => Secret::from_env(var).map_err(|e| e.to_string()),
        (_, SecretSource::File(path)) => Secret::from_file(path).map_err(|e| e.to_string()),
        (_, SecretSource::Inline) => Err(format!(
            "it used an inline {what}, whose value is never recorded, and the current description has no inline one to use instead"
        )),
    }
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
    fn a_global_service_gets_one_instance_per_distinct_host() {
        let svc = Service::builder("agent").image("a:1").global().build().unwrap();
        let mut t = Template::with_env(&svc, "sha256:a", BTreeMap::new());
        t.place_on(vec!["a".into(), "b".into(), "a".into()]);
        assert_eq!((t.service.replicas, t.hosts.clone()), (2, vec!["a".to_string(), "b".to_string()]));
        assert_eq!((t.host_for(0), t.host_for(1)), (Some("a"), Some("b")));
        t.place_on(Vec::new());
        assert_eq!(t.service.replicas, 1, "one on a single engine");
        let counted = Service::builder("api").image("a:1").replicas(3).build().unwrap();
        let mut t = Template::with_env(&counted, "sha256:a", BTreeMap::new());
        t.place_on(vec!["a".into()]);
        assert_eq!(t.service.replicas, 3, "a count is kept");
    }

    #[test]
    fn changes_are_named_per_key() {
        let old = r#"{"env":{"A":"1","B":"2"},"command":["x"],"secrets":{"P":{"env":"X"}}}"#;
        let new = r#"{"env":{"A":"1","B":"3","C":"4"},"command":["y"],"secrets":{"P":{"env":"Y"}}}"#;
        let c = describe_changes(Some(old), new);
        assert_eq!(c, ["command changed", "env B changed", "env C added", "secret reference P changed"]);
    }

    #[test]
    fn a_recorded_configuration_restores_to_the_same_hash() {
        use crate::model::{Port, Resources, Volume};
        let svc = Service::builder("api")
            .image("local/api:1")
            .env("MODE", "blue")
            .command(["api", "serve"])
            .secret("TOKEN", Secret::new("s3cret"))
            .port(Port::tcp(8080).publish_ephemeral())
            .volume(Volume::named("data").at("/data"))
            .resources(Resources::default().cpus(1.5).memory_mb(256))
            .stop_grace_period(Duration::from_millis(1500))
            .build()
            .unwrap();
        let env = Environment::builder("p", "e").env("TZ", "UTC").service(svc.clone()).build().unwrap();
        let original = Template::new(&env, &svc, "sha256:aaa");
        assert!(!original.spec_json.contains("s3cret"));
        // Today's description differs in env and command but keeps the same inline secret.
        let today =
            Service::builder("api").image("local/api:2").env("MODE", "green").secret("TOKEN", Secret::new("s3cret"));
        let today = today.build().unwrap();
        let restored = Template::from_recorded(&today, &original.spec_json, "sha256:aaa").unwrap();
        assert_eq!(restored.spec_hash, original.spec_hash);
        assert_eq!(restored.env.get("MODE").map(String::as_str), Some("blue"));
        assert_eq!(restored.env.get("TZ").map(String::as_str), Some("UTC"));
        // Without the inline secret today, the revision cannot be restored, and the error says why.
        let bare = Service::builder("api").image("local/api:2").build().unwrap();
        let err = Template::from_recorded(&bare, &original.spec_json, "sha256:aaa").unwrap_err();
        assert!(err.contains("inline secret `TOKEN`"), "{err}");
    }

    #[test]
    fn unset_container_options_leave_a_services_hash_as_it_was() {
        // What was hashed and recorded before container options, aliases and networks existed.
        let svc = Service::builder("x").image("a:1").env("A", "1").build().unwrap();
        let env = Environment::builder("p", "e").service(svc.clone()).build().unwrap();
        let t = Template::new(&env, &svc, "sha256:abc");
        assert!(!t.spec_json.contains("container") && !t.spec_json.contains("aliases"), "{}", t.spec_json);
        assert!(!t.spec_json.contains("networks"), "{}", t.spec_json);
        let with = Service::builder("x").image("a:1").env("A", "1").cap_add("NET_ADMIN").build().unwrap();
        assert_ne!(Template::new(&env, &with, "sha256:abc").spec_hash, t.spec_hash, "an option replaces the instances");
    }

    #[test]
    fn missing_record_is_a_reason() {
        assert_eq!(describe_changes(None, "{}").len(), 1);
    }
}
