//! What the environment keeps on a Docker engine through containers: the images it keeps for
//! rollbacks, and the state stores of harbormaster 0.1 (read once, then moved: `store.rs`).
//!
//! Routine maintenance (`docker system prune`, `-a`, `docker container prune`) removes stopped and
//! created containers, unused images and unused networks, and keeps volumes unless `--volumes` is
//! given. So each kept image is a volume of its own, `<project>-<environment>.image.<id>`, holding
//! the image's `docker save` archive, unpacked. Such volumes are read and written through a
//! container that is created and never started (an *accessor*: the archive API reaches the volumes
//! a created container mounts). An accessor lasts as long as its transfer (or, for a 0.1 state
//! store, the operation: [`release`]); one left by a killed process is removed by the next
//! operation that finds it stale, and by `down`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ImportImageOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use super::accessor::accessor_image;
use super::{engine_error, engine_message, is_not_found, DockerBackend};
use crate::backend::{label, Scope, StateFile};
use crate::error::{Error, Result};
use crate::process::{Identity, Liveness};

/// Where an accessor mounts the state volume.
const STATE_MOUNT: &str = "/state";
/// Where an accessor mounts a kept image's volume.
const IMAGE_MOUNT: &str = "/image";
/// Written into a kept image's volume once its archive is complete.
const COMPLETE: &str = ".harbormaster-complete";
/// An accessor older than this is a leftover, whoever made it.
const ACCESSOR_MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest an image archive may take to write or read back.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The accessors this backend holds open, by volume name.
#[derive(Debug, Default)]
pub(crate) struct Accessors {
    open: Mutex<HashMap<String, String>>,
}

fn state_volume(scope: &Scope) -> String {
    format!("{}.state", scope.qualified())
}

fn short_id(image_id: &str) -> &str {
    let id = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    id.get(..16).unwrap_or(id)
}

fn image_volume(scope: &Scope, image_id: &str) -> String {
    format!("{}.image.{}", scope.qualified(), short_id(image_id))
}

/// Label filters for the records of kind `record` of `scope`.
pub(super) fn scope_filters(scope: &Scope, record: &str) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([(
        "label",
        vec![
            format!("{}={}", label::PROJECT, scope.project),
            format!("{}={}", label::ENVIRONMENT, scope.environment),
            format!("{}={record}", label::RECORD),
        ],
    )])
}

async fn volume_exists(d: &DockerBackend, name: &str) -> Result<bool> {
    match tokio::time::timeout(d.call_timeout, d.docker.inspect_volume(name)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) if is_not_found(&e) => Ok(false),
        Ok(Err(e)) => Err(engine_error("inspect volume", name, &e)),
        Err(_) => Err(Error::backend("inspect volume", name, "no answer from the engine in time")),
    }
}

async fn ensure_volume(d: &DockerBackend, scope: &Scope, name: &str, record: &str, image: Option<&str>) -> Result<()> {
    let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
    labels.insert(label::RECORD.into(), record.into());
    if let Some(id) = image {
        labels.insert(format!("{}image_id", label::DATA_PREFIX), id.into());
    }
    let request = VolumeCreateRequest {
        name: Some(name.into()),
        driver: Some("local".into()),
        labels: Some(labels),
        ..Default::default()
    };
    d.call("create volume", name, d.docker.create_volume(request)).await.map(|_| ())
}

/// Removes accessors of `scope` left by processes that are gone (or that are simply old).
async fn remove_leftovers(d: &DockerBackend, scope: &Scope) -> Result<()> {
    let options = ListContainersOptionsBuilder::new().all(true).filters(&scope_filters(scope, "accessor")).build();
    let list = d.call("list accessors", &scope.qualified(), d.docker.list_containers(Some(options))).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    for c in list {
        let labels = c.labels.unwrap_or_default();
        let data = labels
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(label::DATA_PREFIX).map(|k| (k.to_string(), v.clone())))
            .collect();
        let age = now.saturating_sub(u64::try_from(c.created.unwrap_or(0)).unwrap_or(0));
        let gone = matches!(Identity::from_data(&data).liveness(), Liveness::Gone(_));
        if gone || age > ACCESSOR_MAX_AGE.as_secs() {
            if let Some(id) = c.id {
                super::containers::remove(d, &id).await?;
            }
        }
    }
    Ok(())
}

/// Creates an accessor mounting `volume` at `mount`.
async fn create_accessor(d: &DockerBackend, scope: &Scope, volume: &str, mount: &str) -> Result<String> {
    let image = accessor_image(d).await?;
    let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
    labels.insert(label::RECORD.into(), "accessor".into());
    let mut creator = std::collections::BTreeMap::new();
    crate::process::me().to_data(&mut creator);
    for (k, v) in creator {
        labels.insert(format!("{}{k}", label::DATA_PREFIX), v);
    }
    let body = ContainerCreateBody {
        image: Some(image),
        labels: Some(labels),
        // Never started; the engine still wants an entrypoint for an image without one.
        entrypoint: Some(vec!["/harbormaster-accessor".into()]),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some(mount.into()),
                source: Some(volume.into()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = format!("{volume}.{}", crate::process::nonce());
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    Ok(d.call("create state accessor", &name, d.docker.create_container(Some(options), body)).await?.id)
}

/// The open accessor of the state volume, created if needed (with the volume, if it has none:
/// the engine would otherwise make the volume for the mount, without its labels).
async fn state_accessor(d: &DockerBackend, scope: &Scope, fresh: bool) -> Result<String> {
    let volume = state_volume(scope);
    let mut open = d.accessors.open.lock().await;
    if fresh {
        open.remove(&volume);
    }
    if let Some(id) = open.get(&volume) {
        return Ok(id.clone());
    }
    remove_leftovers(d, scope).await?;
    ensure_volume(d, scope, &volume, "state", None).await?;
    let id = create_accessor(d, scope, &volume, STATE_MOUNT).await?;
    open.insert(volume, id.clone());
    Ok(id)
}

/// The files of a store written by harbormaster 0.1 (inside the volume `<project>-<environment>.state`,
/// read through an accessor); `None` if there is no such volume.
pub(super) async fn read_legacy(d: &DockerBackend, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
    let volume = state_volume(scope);
    if !volume_exists(d, &volume).await? {
        return Ok(None);
    }
    for fresh in [false, true] {
        let id = state_accessor(d, scope, fresh).await?;
        // `/state/.`: the directory's contents, named relative to it.
        match super::files::download(d, &id, &format!("{STATE_MOUNT}/.")).await? {
            Some(archive) => {
                let files = super::files::files_of(&archive, &volume)?;
                return Ok(Some(files.into_iter().map(|(name, contents)| StateFile { name, contents }).collect()));
            }
            None => continue, // the accessor is gone (pruned): make another
        }
    }
    Err(Error::backend("read state", volume, "the state volume cannot be reached through a container"))
}

/// Once a store read from a 0.1 volume ([`read_legacy`]) has been written as file volumes: the
/// old volume and its accessor go. Nothing to do (and no engine call) otherwise.
pub(super) async fn retire_legacy(d: &DockerBackend, scope: &Scope) -> Result<()> {
    let volume = state_volume(scope);
    let Some(id) = d.accessors.open.lock().await.remove(&volume) else { return Ok(()) };
    super::containers::remove(d, &id).await?;
    remove_leftovers(d, scope).await?;
    super::records::remove(d, &volume).await
}

pub(super) async fn release(d: &DockerBackend, scope: &Scope) {
    let id = d.accessors.open.lock().await.remove(&state_volume(scope));
    if let Some(id) = id {
        if let Err(e) = super::containers::remove(d, &id).await {
            tracing::debug!(error = %e, "could not remove the state accessor; the next operation will");
        }
    }
}

pub(super) async fn remove(d: &DockerBackend, scope: &Scope) -> Result<()> {
    d.accessors.open.lock().await.remove(&state_volume(scope));
    // Every record container of the environment: accessors, and the record containers earlier
    // versions of the library kept (no longer read).
    let mut filters = scope_filters(scope, "accessor");
    if let Some(labels) = filters.get_mut("label") {
        labels.retain(|l| !l.starts_with(label::RECORD));
        labels.push(label::RECORD.to_string());
    }
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    for c in d.call("list accessors", &scope.qualified(), d.docker.list_containers(Some(options))).await? {
        if let Some(id) = c.id {
            super::containers::remove(d, &id).await?;
        }
    }
    let mut volumes = vec![state_volume(scope)];
    let options = ListVolumesOptionsBuilder::new().filters(&scope_filters(scope, "image")).build();
    let kept = d.call("list kept images", &scope.qualified(), d.docker.list_volumes(Some(options))).await?;
    volumes.extend(kept.volumes.unwrap_or_default().into_iter().map(|v| v.name));
    for v in volumes {
        super::records::remove(d, &v).await?;
    }
    Ok(())
}

/// Runs `f` with a transient accessor mounting the kept image's volume, then removes it.
async fn with_image_accessor<T, F, Fut>(d: &DockerBackend, scope: &Scope, volume: &str, f: F) -> Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let id = create_accessor(d, scope, volume, IMAGE_MOUNT).await?;
    let result = f(id.clone()).await;
    let removed = super::containers::remove(d, &id).await;
    let value = result?;
    removed?;
    Ok(value)
}

pub(super) async fn keep_image(d: &DockerBackend, scope: &Scope, image_id: &str) -> Result<()> {
    let volume = image_volume(scope, image_id);
    ensure_volume(d, scope, &volume, "image", Some(image_id)).await?;
    let marker = format!("{IMAGE_MOUNT}/{COMPLETE}");
    let what = volume.clone();
    with_image_accessor(d, scope, &volume, |acc| async move {
        if super::files::read_file(d, &acc, &marker).await?.is_some() {
            return Ok(());
        }
        let export = d.docker.export_image(image_id).map_err(|e| std::io::Error::other(engine_message(&e)));
        let options = UploadToContainerOptionsBuilder::new().path(IMAGE_MOUNT).build();
        let upload = d.docker.upload_to_container(&acc, Some(options), bollard::body_try_stream(export));
        match tokio::time::timeout(TRANSFER_DEADLINE, upload).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(engine_error("keep image", image_id, &e)),
            Err(_) => {
                return Err(Error::backend(
                    "keep image",
                    image_id,
                    format!("not kept within {}", crate::duration::human(TRANSFER_DEADLINE)),
                ))
            }
        }
        let done = super::files::tar_of(&[(COMPLETE, image_id.as_bytes(), 0o644)])?;
        super::files::upload(d, &acc, IMAGE_MOUNT, done, &what).await
    })
    .await
}

pub(super) async fn restore_image(
    d: &DockerBackend,
    scope: &Scope,
    image_id: &str,
    reference: Option<&str>,
) -> Result<bool> {
    let present = super::images::image_id(d, image_id).await?.is_some() || load_kept(d, scope, image_id).await?;
    if present {
        if let Some(r) = reference {
            // Its name back (a prune removes the tag with the image), unless it names another image now.
            if super::images::image_id(d, r).await?.is_none() {
                super::images::tag(d, image_id, r).await?;
            }
        }
    }
    Ok(present)
}

/// Loads the kept copy of `image_id`; `Ok(false)` if there is none (complete).
async fn load_kept(d: &DockerBackend, scope: &Scope, image_id: &str) -> Result<bool> {
    let volume = image_volume(scope, image_id);
    if !volume_exists(d, &volume).await? {
        return Ok(false);
    }
    let marker = format!("{IMAGE_MOUNT}/{COMPLETE}");
    let loaded = with_image_accessor(d, scope, &volume, |acc| async move {
        if super::files::read_file(d, &acc, &marker).await?.is_none() {
            return Ok(false); // its archive was never finished
        }
        let options = DownloadFromContainerOptionsBuilder::new().path(format!("{IMAGE_MOUNT}/.").as_str()).build();
        let archive = d.docker.download_from_container(&acc, Some(options));
        let body = archive.map(|r| r.map_err(|e| std::io::Error::other(engine_message(&e))));
        let load = async {
            let options = ImportImageOptionsBuilder::new().quiet(true).build();
            let mut progress = d.docker.import_image_stream(options, body, None);
            while let Some(item) = progress.next().await {
                let info = item.map_err(|e| engine_error("restore image", image_id, &e))?;
                if let Some(err) = info.error_detail.and_then(|e| e.message) {
                    return Err(Error::backend("restore image", image_id, err));
                }
            }
            Ok(true)
        };
        tokio::time::timeout(TRANSFER_DEADLINE, load).await.map_err(|_| {
            Error::backend(
                "restore image",
                image_id,
                format!("not loaded within {}", crate::duration::human(TRANSFER_DEADLINE)),
            )
        })?
    })
    .await?;
    Ok(loaded && super::images::image_id(d, image_id).await?.is_some())
}

pub(super) async fn drop_image(d: &DockerBackend, scope: &Scope, image_id: &str) -> Result<()> {
    super::records::remove(d, &image_volume(scope, image_id)).await
}

impl DockerBackend {
    pub(super) fn new_accessors() -> Arc<Accessors> {
        Arc::new(Accessors::default())
    }
}
