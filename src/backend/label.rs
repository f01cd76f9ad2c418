//! The label keys the library puts on what it owns (all under [`LABEL_PREFIX`](crate::model::LABEL_PREFIX)).

pub const MANAGED: &str = "io.harbormaster.managed";
pub const PROJECT: &str = "io.harbormaster.project";
pub const ENVIRONMENT: &str = "io.harbormaster.environment";
pub const SERVICE: &str = "io.harbormaster.service";
pub const SLOT: &str = "io.harbormaster.slot";
pub const KIND: &str = "io.harbormaster.kind";
pub const SPEC_HASH: &str = "io.harbormaster.spec-hash";
pub const SPEC: &str = "io.harbormaster.spec";
pub const SECRET_KEYS: &str = "io.harbormaster.secret-keys";
pub const VOLUME: &str = "io.harbormaster.volume";
/// On an instance in another service's network namespace: that service's spec hash when it was
/// created (part of its own spec, so replacing that service replaces it too).
pub const NETWORK_OF: &str = "io.harbormaster.network-of";
/// On an ingress front: a digest of the Caddy configuration it was created with (part of its
/// spec, so a change of routes or TLS replaces the front, start-first, instead of reloading it).
pub const FRONT_CONFIG: &str = "io.harbormaster.front-config";
/// On a swarm service and its tasks: the image reference or ID the template named.
pub const IMAGE: &str = "io.harbormaster.image";
/// On a record: its kind (`revision`, `lock`, `audit`).
pub const RECORD: &str = "io.harbormaster.record";
/// On a record: prefix of its data keys.
pub const DATA_PREFIX: &str = "io.harbormaster.data.";

/// On everything an environment with marks owns: the keys of its marks, comma separated, so they
/// are told apart from a service's own labels.
pub const MARKS: &str = "io.harbormaster.marks";

/// The environment marks among a resource's labels (those [`MARKS`] names).
pub fn marks_of<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)> + Copy,
) -> std::collections::BTreeMap<String, String> {
    let Some(keys) = labels.into_iter().find(|(k, _)| k.as_str() == MARKS).map(|(_, v)| v.clone()) else {
        return Default::default();
    };
    let keys: Vec<&str> = keys.split(',').filter(|k| !k.is_empty()).collect();
    labels.into_iter().filter(|(k, _)| keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}
