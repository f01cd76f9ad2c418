//! Named volumes, bind mounts and tmpfs mounts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A volume mounted into a service's containers.
///
/// Named volumes belong to the environment (they are created with its labels and survive
/// [`down`](crate::Environment::down) unless [`Down::remove_volumes`](crate::Down::remove_volumes) is set).
///
/// ```
/// use harbormaster::Volume;
/// let data = Volume::named("pgdata").at("/var/lib/postgresql/data");
/// let conf = Volume::bind("/etc/myapp").at("/config").read_only();
/// # let _ = (data, conf);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub(crate) source: VolumeSource,
    pub(crate) target: String,
    pub(crate) read_only: bool,
}

/// What a [`Volume`] mounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// A named volume owned by the environment.
    Named(String),
    /// A directory or file of the host.
    Bind(PathBuf),
    /// A memory-backed temporary filesystem.
    Tmpfs,
}

impl Volume {
    /// A named volume owned by the environment; set where it mounts with [`at`](Self::at).
    pub fn named(name: impl Into<String>) -> Self {
        Volume { source: VolumeSource::Named(name.into()), target: String::new(), read_only: false }
    }

    /// A host path mounted into the container.
    pub fn bind(host_path: impl Into<PathBuf>) -> Self {
        Volume { source: VolumeSource::Bind(host_path.into()), target: String::new(), read_only: false }
    }

    /// A tmpfs mount.
    pub fn tmpfs() -> Self {
        Volume { source: VolumeSource::Tmpfs, target: String::new(), read_only: false }
    }

    /// Where it is mounted inside the container (an absolute path).
    pub fn at(mut self, container_path: impl Into<String>) -> Self {
        self.target = container_path.into();
        self
    }

    /// Mounts it read-only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The path inside the container.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Where its content comes from.
    pub fn source(&self) -> &VolumeSource {
        &self.source
    }

    /// Whether it is mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The environment-level name of a named volume (`None` for binds and tmpfs).
    pub fn volume_name(&self) -> Option<&str> {
        match &self.source {
            VolumeSource::Named(n) => Some(n),
            _ => None,
        }
    }
}
