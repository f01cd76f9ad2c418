//! Records and state on a swarm: Swarm configs, which are name-unique across the cluster (a
//! second create of a name answers 409), replicated by the managers' Raft log, and untouched by
//! `docker system prune` on any node. The deploy lock is a config name; each state file is a
//! config per generation (configs are immutable: a write creates the next generation, then
//! removes the ones before).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use bollard::models::{Config, ConfigSpec};
use bollard::query_parameters::ListConfigsOptions;

use super::SwarmBackend;
use crate::backend::{label, NewRecord, Record, RecordStore, Scope, StateFile};
use crate::error::{Error, Result};

/// On a state config: the state file's name, and its generation.
const STATE_FILE: &str = "io.harbormaster.state-file";
const GENERATION: &str = "io.harbormaster.generation";
/// On a record config: the record's own name (config names are hashed to fit Swarm's limit).
const RECORD_NAME: &str = "io.harbormaster.record-name";

fn short_hash(text: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("harbormaster config", text).hash(&mut h);
    format!("{:016x}", h.finish())
}

fn labels_of(c: &Config) -> HashMap<String, String> {
    c.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default()
}

fn to_record(c: Config) -> Option<Record> {
    let labels = labels_of(&c);
    let kind = labels.get(label::RECORD)?.clone();
    let data = labels
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(label::DATA_PREFIX).map(|k| (k.to_string(), v.clone())))
        .collect();
    let created = c.created_at.as_deref().and_then(crate::rfc3339::parse_rfc3339).unwrap_or(UNIX_EPOCH);
    Some(Record { id: c.id.unwrap_or_default(), name: labels.get(RECORD_NAME).cloned()?, kind, created, data })
}

impl SwarmBackend {
    async fn configs(&self, scope: &Scope, extra: &str) -> Result<Vec<Config>> {
        let mut filters = super::tasks::scope_filter(scope);
        if let Some(l) = filters.get_mut("label") {
            l.push(extra.to_string());
        }
        let e = self.manager.engine();
        let options = ListConfigsOptions { filters: Some(filters) };
        self.manager.call("list configs", &scope.qualified(), e.list_configs(Some(options))).await
    }

    /// Creates a config; `None` if the name is taken.
    async fn create_config(&self, name: &str, labels: HashMap<String, String>, data: &[u8]) -> Result<Option<String>> {
        let spec = ConfigSpec {
            name: Some(name.to_string()),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            templating: None,
        };
        let e = self.manager.engine();
        match tokio::time::timeout(self.call_timeout, e.create_config(spec)).await {
            Ok(Ok(r)) => Ok(Some(r.id)),
            Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })) => Ok(None),
            Ok(Err(err)) => Err(crate::backend::docker::engine_error("create config", name, &err)),
            Err(_) => Err(Error::backend_kind(
                "create config",
                name,
                crate::error::ErrorKind::Timeout,
                "the swarm manager did not answer",
            )),
        }
    }

    async fn remove_config(&self, id: &str) -> Result<()> {
        let e = self.manager.engine();
        match tokio::time::timeout(self.call_timeout, e.delete_config(id)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) if crate::backend::docker::is_not_found(&err) => Ok(()),
            Ok(Err(err)) => Err(crate::backend::docker::engine_error("remove config", id, &err)),
            Err(_) => Err(Error::backend_kind(
                "remove config",
                id,
                crate::error::ErrorKind::Timeout,
                "the swarm manager did not answer",
            )),
        }
    }
}

fn generation(c: &Config) -> u64 {
    labels_of(c).get(GENERATION).and_then(|g| g.parse().ok()).unwrap_or(0)
}

#[async_trait]
impl RecordStore for SwarmBackend {
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
        let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
        labels.insert(label::RECORD.into(), record.kind.clone());
        labels.insert(RECORD_NAME.into(), record.name.clone());
        for (k, v) in &record.data {
            labels.insert(format!("{}{k}", label::DATA_PREFIX), v.clone());
        }
        let name = format!("hm-record-{}", short_hash(&record.name));
        let Some(id) = self.create_config(&name, labels, b"record").await? else { return Ok(None) };
        let e = self.manager.engine();
        let config = self.manager.call("inspect config", &name, e.inspect_config(&id)).await?;
        to_record(config).map(Some).ok_or_else(|| Error::backend("create record", name, "the swarm lost its labels"))
    }

    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>> {
        let configs = self.configs(scope, &format!("{}={kind}", label::RECORD)).await?;
        let mut out: Vec<Record> = configs.into_iter().filter_map(to_record).collect();
        out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(out)
    }

    async fn remove_record(&self, id: &str) -> Result<()> {
        self.remove_config(id).await
    }

    async fn clock(&self) -> Result<SystemTime> {
        RecordStore::clock(&self.manager).await
    }

    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
        let configs = self.configs(scope, STATE_FILE).await?;
        if configs.is_empty() {
            return Ok(None);
        }
        let mut newest: BTreeMap<String, Config> = BTreeMap::new();
        for c in configs {
            let Some(file) = labels_of(&c).get(STATE_FILE).cloned() else { continue };
            if newest.get(&file).is_none_or(|n| generation(n) < generation(&c)) {
                newest.insert(file, c);
            }
        }
        let mut out = Vec::new();
        for (name, c) in newest {
            let data = c.spec.and_then(|s| s.data).unwrap_or_default();
            let contents = base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|e| Error::backend("read state", &name, format!("unreadable config: {e}")))?;
            out.push(StateFile { name, contents });
        }
        Ok(Some(out))
    }

    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
        let existing: Vec<Config> = self
            .configs(scope, STATE_FILE)
            .await?
            .into_iter()
            .filter(|c| labels_of(c).get(STATE_FILE).map(String::as_str) == Some(name))
            .collect();
        let mut next = existing.iter().map(generation).max().unwrap_or(0).saturating_add(1);
        let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
        labels.insert(STATE_FILE.into(), name.to_string());
        loop {
            labels.insert(GENERATION.into(), next.to_string());
            let config = format!("hm-state-{}-{next}", short_hash(&format!("{}/{name}", scope.qualified())));
            if self.create_config(&config, labels.clone(), contents).await?.is_some() {
                break;
            }
            next = next.saturating_add(1); // another writer took this generation
        }
        for c in existing {
            if let Some(id) = c.id {
                self.remove_config(&id).await?;
            }
        }
        Ok(())
    }

    async fn remove_state(&self, scope: &Scope) -> Result<()> {
        for c in self.configs(scope, STATE_FILE).await? {
            if let Some(id) = c.id {
                self.remove_config(&id).await?;
            }
        }
        Ok(())
    }
}
