//! The accessor image (empty, built once per engine and again after a prune): containers created
//! from it and never started reach volumes through the engine's archive API (kept images,
//! harbormaster 0.1's state stores: `state.rs`), and check that a bind mount's source exists on
//! the engine's host before anything changes ([`probe_mount`]).

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, Mount};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

use super::{engine_message, DockerBackend};
use crate::backend::{label, Scope};
use crate::error::Result;

/// The image accessors are created from: empty, built once per engine (and again after a prune).
pub(crate) const ACCESSOR_IMAGE: &str = "harbormaster/accessor:1";

/// The accessor image's ID, built if the engine has none.
pub(super) async fn accessor_image(d: &DockerBackend) -> Result<String> {
    if let Some(id) = super::images::image_id(d, ACCESSOR_IMAGE).await? {
        return Ok(id);
    }
    let dockerfile = b"FROM scratch\nLABEL io.harbormaster.managed=true\nCMD [\"/harbormaster-accessor\"]\n";
    let context = super::files::tar_of(&[("Dockerfile", dockerfile, 0o644)])?;
    super::images::build_tar(d, context, ACCESSOR_IMAGE).await
}

/// Whether the engine accepts a container with mount `m`: created (never started) from the
/// accessor image, then removed. `Err` holds the engine's refusal.
pub(super) async fn probe_mount(d: &DockerBackend, scope: &Scope, m: Mount) -> std::result::Result<(), String> {
    let image = accessor_image(d).await.map_err(|e| e.to_string())?;
    let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
    labels.insert(label::RECORD.into(), "accessor".into());
    let body = ContainerCreateBody {
        image: Some(image),
        labels: Some(labels),
        entrypoint: Some(vec!["/harbormaster-accessor".into()]),
        network_disabled: Some(true),
        host_config: Some(HostConfig { mounts: Some(vec![m]), ..Default::default() }),
        ..Default::default()
    };
    let name = format!("{}.check.{}", scope.qualified(), crate::process::nonce());
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    match tokio::time::timeout(d.call_timeout, d.docker.create_container(Some(options), body)).await {
        Ok(Ok(created)) => {
            // Never started, nothing mounted of its own: removed as it is.
            let options = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = tokio::time::timeout(d.call_timeout, d.docker.remove_container(&created.id, Some(options))).await;
            Ok(())
        }
        Ok(Err(e)) => Err(engine_message(&e)),
        Err(_) => Err("no answer from the engine in time".into()),
    }
}
