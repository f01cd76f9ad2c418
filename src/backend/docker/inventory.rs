//! Which environments own something on the engine: its containers, networks and volumes (records
//! included) that carry the library's labels, grouped by project and environment.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder};

use super::DockerBackend;
use crate::backend::{label, Scope};
use crate::error::Result;

pub(super) async fn environments(d: &DockerBackend) -> Result<Vec<Scope>> {
    let filters = HashMap::from([("label", vec![format!("{}=true", label::MANAGED)])]);
    let containers = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let networks = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let volumes = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let (containers, networks, volumes) = futures::future::try_join3(
        d.call("list containers", "managed", d.docker.list_containers(Some(containers))),
        d.call("list networks", "managed", d.docker.list_networks(Some(networks))),
        d.call("list volumes", "managed", d.docker.list_volumes(Some(volumes))),
    )
    .await?;
    let label_sets = containers
        .into_iter()
        .filter_map(|c| c.labels)
        .chain(networks.into_iter().filter_map(|n| n.labels))
        .chain(volumes.volumes.unwrap_or_default().into_iter().map(|v| v.labels));
    Ok(group(label_sets))
}

/// One scope per project and environment, its marks read from the first resource that has them.
pub(crate) fn group(label_sets: impl IntoIterator<Item = HashMap<String, String>>) -> Vec<Scope> {
    let mut found: BTreeMap<(String, String), Scope> = BTreeMap::new();
    for labels in label_sets {
        let (Some(project), Some(environment)) = (labels.get(label::PROJECT), labels.get(label::ENVIRONMENT)) else {
            continue;
        };
        let scope = found
            .entry((project.clone(), environment.clone()))
            .or_insert_with(|| Scope::new(project.clone(), environment.clone()));
        if scope.marks.is_empty() {
            scope.marks = label::marks_of(&labels);
        }
    }
    found.into_values().collect()
}
