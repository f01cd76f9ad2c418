//! Records on a Docker engine: the deploy lock and the renewals of its lease, as volumes.
//!
//! A record is a volume whose labels hold its data. Creating a volume whose name exists returns
//! the existing one (with its labels) instead of failing, and the engine serialises creates of one
//! name, so comparing a nonce label of the answer with ours is an atomic test-and-set: two
//! processes never both create the same record. Volumes survive `docker system prune` (without
//! `--volumes`) and do not show in `docker ps -a`.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use bollard::models::{Volume, VolumeCreateRequest};
use bollard::query_parameters::ListVolumesOptionsBuilder;

use super::DockerBackend;
use crate::backend::{label, NewRecord, Record, Scope};
use crate::error::{Error, Result};

/// The label telling which create made a record.
const NONCE: &str = "io.harbormaster.nonce";

fn to_record(v: Volume) -> Option<Record> {
    let labels = v.labels;
    let kind = labels.get(label::RECORD)?.clone();
    let data: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(label::DATA_PREFIX).map(|k| (k.to_string(), v.clone())))
        .collect();
    let created = v.created_at.as_deref().and_then(crate::rfc3339::parse_rfc3339).unwrap_or(UNIX_EPOCH);
    Some(Record { id: v.name.clone(), name: v.name, kind, created, data })
}

pub(super) async fn create(d: &DockerBackend, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
    let nonce = format!("{}-{}", crate::process::me().pid, crate::process::nonce());
    let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
    labels.insert(label::RECORD.into(), record.kind.clone());
    labels.insert(NONCE.into(), nonce.clone());
    for (k, v) in &record.data {
        labels.insert(format!("{}{k}", label::DATA_PREFIX), v.clone());
    }
    let request = VolumeCreateRequest {
        name: Some(record.name.clone()),
        driver: Some("local".into()),
        labels: Some(labels),
        ..Default::default()
    };
    let volume = d.call("create record", &record.name, d.docker.create_volume(request)).await?;
    if volume.labels.get(NONCE) != Some(&nonce) {
        return Ok(None); // it existed: someone else's
    }
    to_record(volume)
        .map(Some)
        .ok_or_else(|| Error::backend("create record", &record.name, "the engine lost its labels"))
}

pub(super) async fn list(d: &DockerBackend, scope: &Scope, kind: &str) -> Result<Vec<Record>> {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("{}={}", label::PROJECT, scope.project),
            format!("{}={}", label::ENVIRONMENT, scope.environment),
            format!("{}={kind}", label::RECORD),
        ],
    )]);
    let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let resp = d.call("list records", &scope.qualified(), d.docker.list_volumes(Some(options))).await?;
    let mut out: Vec<Record> = resp.volumes.unwrap_or_default().into_iter().filter_map(to_record).collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

/// A record is a volume: removed as one (a missing one is not an error).
pub(super) async fn remove(d: &DockerBackend, name: &str) -> Result<()> {
    super::network::remove_volume(d, name).await
}

/// The engine's clock, from `/info`.
pub(super) async fn clock(d: &DockerBackend) -> Result<std::time::SystemTime> {
    let info = d.call("read the engine's clock", &d.endpoint, d.docker.info()).await?;
    info.system_time
        .as_deref()
        .and_then(crate::rfc3339::parse_rfc3339)
        .ok_or_else(|| Error::backend("read the engine's clock", &d.endpoint, "the engine reported no time"))
}
