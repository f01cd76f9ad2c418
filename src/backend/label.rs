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
/// On a swarm service and its tasks: the image reference or ID the template named.
pub const IMAGE: &str = "io.harbormaster.image";
/// On a record: its kind (`revision`, `lock`, `audit`).
pub const RECORD: &str = "io.harbormaster.record";
/// On a record: prefix of its data keys.
pub const DATA_PREFIX: &str = "io.harbormaster.data.";
