//! What a project declares at its top level and its services refer to: volumes, secrets, configs
//! and networks, and what the project learns of its services (profiles, aliases, links). Read by
//! `project.rs`, used by the services' keys (`service.rs`, `mounts.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// A top-level volume: the environment's own (with the `local` driver's options it is created
/// with), or an existing one by its engine name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum VolumeDecl {
    Owned(BTreeMap<String, String>),
    External(String),
}

/// Where a top-level secret or config comes from.
#[derive(Clone, Debug)]
pub(crate) enum FileSource {
    /// `file:`: a file on this machine, bind-mounted as Compose mounts it.
    Path(PathBuf),
    /// A config's `content:` or `environment:`: text written into the containers.
    Text(String),
    /// A secret's `environment:` or `content:`: its value written into the containers.
    Secret(crate::model::Secret),
}

/// What the services of a project may refer to.
pub(crate) struct Project {
    pub volumes: BTreeMap<String, VolumeDecl>,
    pub secrets: BTreeMap<String, FileSource>,
    pub configs: BTreeMap<String, FileSource>,
    /// Networks declared at the top level: the engine name of each external one.
    pub networks: BTreeMap<String, Option<String>>,
    /// The services enabled by the active profiles.
    pub enabled: BTreeSet<String>,
    /// Aliases each service answers to, from others' `links` and its `container_name`.
    pub aliases: HashMap<String, Vec<String>>,
    /// The services another waits for to be healthy.
    pub healthy: BTreeSet<String>,
    /// The services each service links to (it starts after them).
    pub links: HashMap<String, Vec<String>>,
}
