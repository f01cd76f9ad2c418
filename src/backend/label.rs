//! The label keys the library puts on what it owns (all under [`LABEL_PREFIX`](crate::model::LABEL_PREFIX)),
//! and the one codec of an instance's labels ([`InstanceLabels`]).

use std::collections::BTreeMap;

use crate::model::ServiceKind;

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
pub fn marks_of<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)> + Copy) -> BTreeMap<String, String> {
    let Some(keys) = labels.into_iter().find(|(k, _)| k.as_str() == MARKS).map(|(_, v)| v.clone()) else {
        return Default::default();
    };
    let keys: Vec<&str> = keys.split(',').filter(|k| !k.is_empty()).collect();
    labels.into_iter().filter(|(k, _)| keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// What the library writes on an instance and reads back from it: the one codec of instance
/// labels, shared by every backend (a container's labels, a task's, a machine's metadata, the
/// in-memory runtime's). [`Instance::labelled`](super::Instance::labelled) makes an instance of it.
/// Label values stay short (a Kubernetes label holds 63 characters); what is long goes to the
/// annotations beside them ([`InstanceSpec::annotations`](super::InstanceSpec::annotations)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InstanceLabels {
    /// The service ([`SERVICE`]).
    pub(crate) service: String,
    /// The replica slot ([`SLOT`]; 0 when absent).
    pub(crate) slot: u32,
    /// Service or job ([`KIND`]).
    pub(crate) kind: ServiceKind,
    /// The hash of the configuration it was created from ([`SPEC_HASH`]).
    pub(crate) spec_hash: String,
    /// The configuration itself, as JSON without secret values ([`SPEC`]).
    pub(crate) spec_json: Option<String>,
    /// The image the instance was created from, where the target does not say it ([`IMAGE`]).
    pub(crate) image: Option<String>,
    /// The names of its secret variables ([`SECRET_KEYS`]).
    pub(crate) secret_keys: Vec<String>,
}

impl InstanceLabels {
    /// Reads the labels `get` looks up. `None` without a service label: not an instance the
    /// library created.
    pub(crate) fn read<'a>(get: impl Fn(&str) -> Option<&'a String>) -> Option<InstanceLabels> {
        Some(InstanceLabels {
            service: get(SERVICE)?.clone(),
            slot: get(SLOT).and_then(|s| s.parse().ok()).unwrap_or(0),
            kind: match get(KIND).map(String::as_str) {
                Some("job") => ServiceKind::Job,
                _ => ServiceKind::Service,
            },
            spec_hash: get(SPEC_HASH).cloned().unwrap_or_default(),
            spec_json: get(SPEC).cloned(),
            image: get(IMAGE).cloned(),
            secret_keys: get(SECRET_KEYS)
                .map(|k| k.split(',').filter(|k| !k.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
        })
    }

    /// Writes them: what a target selects by, short, into `labels` (service, slot, kind, spec
    /// hash: each value fits a Kubernetes label); the rest into `annotations` (the configuration
    /// as JSON, the image where set, the secret variables' names). A target that keeps one map
    /// (a Docker engine's labels, a Fly machine's metadata) merges the two.
    pub(crate) fn write(&self, labels: &mut BTreeMap<String, String>, annotations: &mut BTreeMap<String, String>) {
        labels.insert(SERVICE.into(), self.service.clone());
        labels.insert(SLOT.into(), self.slot.to_string());
        labels.insert(KIND.into(), kind_value(self.kind).into());
        labels.insert(SPEC_HASH.into(), self.spec_hash.clone());
        if let Some(spec) = &self.spec_json {
            annotations.insert(SPEC.into(), spec.clone());
        }
        if let Some(image) = &self.image {
            annotations.insert(IMAGE.into(), image.clone());
        }
        annotations.insert(SECRET_KEYS.into(), self.secret_keys.join(","));
    }

    /// The values of its secret variables that `value` finds in the instance's environment. Each
    /// is a secret from now on: values deployed earlier (perhaps by another process, before a
    /// rotation) are scrubbed too.
    pub(crate) fn secret_env(&self, value: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
        self.secret_keys
            .iter()
            .filter_map(|k| {
                let v = value(k)?;
                crate::scrub::remember(&v);
                Some((k.clone(), v))
            })
            .collect()
    }
}

impl Default for InstanceLabels {
    /// No labels: a service instance of no service.
    fn default() -> Self {
        InstanceLabels {
            service: String::new(),
            slot: 0,
            kind: ServiceKind::Service,
            spec_hash: String::new(),
            spec_json: None,
            image: None,
            secret_keys: Vec::new(),
        }
    }
}

/// The value of [`KIND`] for `kind`.
pub(crate) fn kind_value(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Job => "job",
        ServiceKind::Service => "service",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Kubernetes label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
    fn fits_a_kubernetes_label(v: &str) -> bool {
        let inner_ok = v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let ends_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
        v.len() <= 63 && inner_ok && ends_ok(v.chars().next()) && ends_ok(v.chars().last())
    }

    #[test]
    fn label_values_are_short_and_long_values_are_annotations() {
        let written = InstanceLabels {
            service: "api-gateway".into(),
            slot: 4_000_000,
            kind: ServiceKind::Job,
            spec_hash: "0123456789abcdef".into(),
            spec_json: Some(format!("{{\"env\":{{\"A\":\"{}\"}}}}", "x".repeat(10_000))),
            image: Some(format!("sha256:{}", "a".repeat(64))),
            secret_keys: (0..40).map(|i| format!("SECRET_NUMBER_{i}")).collect(),
        };
        let (mut labels, mut annotations) = (BTreeMap::new(), BTreeMap::new());
        written.write(&mut labels, &mut annotations);
        for (k, v) in &labels {
            assert!(fits_a_kubernetes_label(v), "label {k} = {v:?} does not fit a Kubernetes label");
        }
        assert!(
            annotations.contains_key(SPEC) && annotations.contains_key(IMAGE) && annotations.contains_key(SECRET_KEYS)
        );
        // Read back from both maps, as a target that keeps both returns them.
        let read = InstanceLabels::read(|k| labels.get(k).or_else(|| annotations.get(k))).expect("an instance");
        assert_eq!(read, written);
        // Without the service label, nothing of the library's.
        assert_eq!(InstanceLabels::read(|k| annotations.get(k)), None);
    }
}
