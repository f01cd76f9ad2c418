//! Records and files on a Docker engine.
//!
//! A record is a container that is created and never started: its labels hold the data, its name is
//! unique on the engine (so creating one is an atomic test-and-set, which the deploy lock relies
//! on), and its image is kept by the engine for as long as it exists (so a revision record keeps its
//! image from being pruned). Records without an image of their own use a tiny `FROM scratch` image
//! built once per engine.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bytes::Bytes;

use super::{engine_message, is_not_found, DockerBackend};
use crate::backend::{label, NewRecord, Record, Scope};
use crate::error::{Error, Result};

/// The tag of the image records use when they pin none.
pub(crate) const RECORD_IMAGE: &str = "harbormaster/record:1";

fn tar_of(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, path.trim_start_matches('/'), *contents)
            .map_err(|e| Error::backend("write file", *path, e.to_string()))?;
    }
    builder.into_inner().map_err(|e| Error::backend("write file", "tar", e.to_string()))
}

/// The ID of the record image, building it if the engine lacks it.
async fn record_image(d: &DockerBackend) -> Result<String> {
    if let Some(id) = super::images::image_id(d, RECORD_IMAGE).await? {
        return Ok(id);
    }
    let dockerfile = b"FROM scratch\nLABEL io.harbormaster.managed=true\nCMD [\"/harbormaster-record\"]\n";
    let context = tar_of(&[("Dockerfile", dockerfile, 0o644)])?;
    super::images::build_tar(d, context, RECORD_IMAGE).await
}

pub(super) async fn write_file(d: &DockerBackend, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()> {
    let archive = tar_of(&[(path, contents, mode)])?;
    let options = UploadToContainerOptionsBuilder::new().path("/").build();
    d.call(
        "write file",
        &format!("{path} in {id}"),
        d.docker.upload_to_container(id, Some(options), bollard::body_full(Bytes::from(archive))),
    )
    .await
}

pub(super) async fn read_file(d: &DockerBackend, id: &str, path: &str) -> Result<Option<Vec<u8>>> {
    use futures::TryStreamExt;
    use std::io::Read;
    let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
    let download =
        d.docker.download_from_container(id, Some(options)).try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        });
    let archive = match tokio::time::timeout(d.call_timeout, download).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if is_not_found(&e) => return Ok(None),
        Ok(Err(e)) => return Err(Error::backend("read file", format!("{path} in {id}"), engine_message(&e))),
        Err(_) => {
            return Err(Error::backend("read file", format!("{path} in {id}"), "no answer from the engine in time"))
        }
    };
    let failed = |e: std::io::Error| Error::backend("read file", format!("{path} in {id}"), e.to_string());
    let mut tar = tar::Archive::new(archive.as_slice());
    let mut entries = tar.entries().map_err(failed)?;
    match entries.next() {
        Some(entry) => {
            let mut entry = entry.map_err(failed)?;
            let mut out = Vec::new();
            entry.read_to_end(&mut out).map_err(failed)?;
            Ok(Some(out))
        }
        None => Ok(None),
    }
}

pub(super) async fn create(d: &DockerBackend, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
    let image = match &record.pin_image {
        Some(id) => id.clone(),
        None => record_image(d).await?,
    };
    let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
    labels.insert(label::RECORD.into(), record.kind.clone());
    for (k, v) in &record.data {
        labels.insert(format!("{}{k}", label::DATA_PREFIX), v.clone());
    }
    let body = ContainerCreateBody {
        image: Some(image),
        labels: Some(labels),
        // Never started; an entrypoint is still required by the engine for images without one.
        entrypoint: Some(vec!["/harbormaster-record".into()]),
        network_disabled: Some(true),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(&record.name).build();
    match tokio::time::timeout(d.call_timeout, d.docker.create_container(Some(options), body)).await {
        Ok(Ok(resp)) => Ok(Some(inspect(d, &resp.id).await?)),
        Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })) => Ok(None),
        Ok(Err(e)) => Err(Error::backend("create record", &record.name, engine_message(&e))),
        Err(_) => Err(Error::backend("create record", &record.name, "no answer from the engine in time")),
    }
}

async fn inspect(d: &DockerBackend, id: &str) -> Result<Record> {
    let c = d.call("inspect record", id, d.docker.inspect_container(id, None)).await?;
    to_record(c).ok_or_else(|| Error::backend("inspect record", id, "not a record"))
}

fn to_record(c: bollard::models::ContainerInspectResponse) -> Option<Record> {
    let config = c.config?;
    let labels = config.labels.unwrap_or_default();
    let kind = labels.get(label::RECORD)?.clone();
    let data: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(label::DATA_PREFIX).map(|k| (k.to_string(), v.clone())))
        .collect();
    let pinned = c.image.filter(|_| config.image.as_deref() != Some(RECORD_IMAGE));
    Some(Record {
        id: c.id.unwrap_or_default(),
        name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
        kind,
        created: super::containers::sortable_timestamp(c.created.as_deref().unwrap_or_default()),
        data,
        pinned_image: pinned,
    })
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
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let summaries = d.call("list records", &scope.qualified(), d.docker.list_containers(Some(options))).await?;
    // The list carries the labels already: no inspect per record.
    let mut out: Vec<Record> = summaries
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let kind = labels.get(label::RECORD)?.clone();
            let data = labels
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(label::DATA_PREFIX).map(|k| (k.to_string(), v.clone())))
                .collect();
            let created = UNIX_EPOCH + Duration::from_secs(c.created.unwrap_or(0).max(0) as u64);
            Some(Record {
                id: c.id?,
                name: c.names?.first()?.trim_start_matches('/').to_string(),
                kind,
                created: humantime::format_rfc3339_seconds(created).to_string(),
                data,
                pinned_image: c.image_id.filter(|_| c.image.as_deref() != Some(RECORD_IMAGE)),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    Ok(out)
}
