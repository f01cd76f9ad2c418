//! The environment's network and named volumes, created with its labels.

use std::collections::HashMap;

use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveVolumeOptionsBuilder};

use super::{engine_error, is_not_found, DockerBackend};
use crate::backend::{label, Scope};
use crate::error::{Error, Result};

fn label_filters(scope: &Scope) -> HashMap<&'static str, Vec<String>> {
    HashMap::from([(
        "label",
        vec![format!("{}={}", label::PROJECT, scope.project), format!("{}={}", label::ENVIRONMENT, scope.environment)],
    )])
}

pub(super) async fn ensure_network(d: &DockerBackend, scope: &Scope) -> Result<bool> {
    let name = scope.network_name();
    let options = ListNetworksOptionsBuilder::new().filters(&label_filters(scope)).build();
    let existing = d.call("list networks", &name, d.docker.list_networks(Some(options))).await?;
    if existing.iter().any(|n| n.name.as_deref() == Some(name.as_str())) {
        return Ok(false);
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(scope.labels().into_iter().collect()),
        ..Default::default()
    };
    match tokio::time::timeout(d.call_timeout, d.docker.create_network(request)).await {
        Ok(Ok(_)) => Ok(true),
        // Created concurrently by another apply of the same environment.
        Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. })) => Ok(false),
        Ok(Err(e)) => Err(engine_error("create network", name, &e)),
        Err(_) => Err(Error::backend("create network", name, "no answer in time")),
    }
}

pub(super) async fn remove_network(d: &DockerBackend, scope: &Scope) -> Result<bool> {
    let name = scope.network_name();
    match tokio::time::timeout(d.call_timeout, d.docker.remove_network(&name)).await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) if is_not_found(&e) => Ok(false),
        Ok(Err(e)) => Err(engine_error("remove network", name, &e)),
        Err(_) => Err(Error::backend("remove network", name, "no answer in time")),
    }
}

/// Creates the named volume with its `local` driver options, unless it exists; an existing one
/// created with other options is refused (the engine never changes them).
pub(super) async fn ensure_volume(
    d: &DockerBackend,
    scope: &Scope,
    volume: &str,
    driver_opts: &std::collections::BTreeMap<String, String>,
) -> Result<bool> {
    let name = scope.volume_name(volume);
    match tokio::time::timeout(d.call_timeout, d.docker.inspect_volume(&name)).await {
        Ok(Ok(existing)) => {
            let have: std::collections::BTreeMap<String, String> = existing.options.into_iter().collect();
            if &have != driver_opts {
                return Err(volume_options_differ(&name, &have, driver_opts));
            }
            return Ok(false);
        }
        Ok(Err(e)) if is_not_found(&e) => {}
        Ok(Err(e)) => return Err(engine_error("inspect volume", name, &e)),
        Err(_) => return Err(Error::backend("inspect volume", name, "no answer in time")),
    }
    let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
    labels.insert(label::VOLUME.to_string(), volume.to_string());
    let request = VolumeCreateRequest {
        name: Some(name.clone()),
        labels: Some(labels),
        driver: (!driver_opts.is_empty()).then(|| "local".to_string()),
        driver_opts: (!driver_opts.is_empty()).then(|| driver_opts.clone().into_iter().collect()),
        ..Default::default()
    };
    d.call("create volume", &name, d.docker.create_volume(request)).await?;
    Ok(true)
}

/// An existing volume whose driver options are not the description's.
pub(super) fn volume_options_differ(
    name: &str,
    have: &std::collections::BTreeMap<String, String>,
    want: &std::collections::BTreeMap<String, String>,
) -> Error {
    let show = |m: &std::collections::BTreeMap<String, String>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        }
    };
    Error::Invalid(crate::error::ValidationError::InvalidValue {
        owner: format!("volume `{name}`"),
        field: "volumes",
        reason: format!(
            "it exists with driver options {} but is described with {}; the engine never changes a volume's options: remove the volume (its data too) to create it anew, or describe its options as they are",
            show(have),
            show(want)
        ),
    })
}

pub(super) async fn list_volumes(d: &DockerBackend, scope: &Scope) -> Result<Vec<String>> {
    // The services' named volumes only (they carry the volume label), not the library's records.
    let mut filters = label_filters(scope);
    filters.entry("label").or_default().push(label::VOLUME.to_string());
    let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let resp = d.call("list volumes", &scope.qualified(), d.docker.list_volumes(Some(options))).await?;
    let mut names: Vec<String> = resp.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect();
    names.sort();
    Ok(names)
}

pub(super) async fn remove_volume(d: &DockerBackend, name: &str) -> Result<()> {
    let options = RemoveVolumeOptionsBuilder::new().force(false).build();
    match tokio::time::timeout(d.call_timeout, d.docker.remove_volume(name, Some(options))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if is_not_found(&e) => Ok(()),
        Ok(Err(e)) => Err(engine_error("remove volume", name, &e)),
        Err(_) => Err(Error::backend("remove volume", name, "no answer in time")),
    }
}
