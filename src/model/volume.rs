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
    #[serde(default, skip_serializing_if = "MountOptions::is_default")]
    pub(crate) options: MountOptions,
}

/// How a [`Volume`] is mounted, beyond its source, target and read-only flag. Each option applies
/// to one kind of mount and is refused on the others when the service is built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountOptions {
    /// SELinux relabelling of a bind mount's source or a volume's content (`:z` / `:Z`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<Relabel>,
    /// Mount propagation of a bind mount (`rprivate` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<Propagation>,
    /// A bind mount whose source does not exist is created as a directory on the engine's host,
    /// as `docker run -v` (and compose's short syntax) does; otherwise the plan refuses it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub create_host_path: bool,
    /// A new named volume is not filled with what the image holds at its target.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
    /// The size of a tmpfs mount in bytes (default: half the host's memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_size: Option<u64>,
    /// The permission bits of a tmpfs mount's root (`0o1777` by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
    /// Other tmpfs mount flags: `noexec`, `nosuid`, `nodev`, `exec`, `suid`, `dev`, `uid=N`,
    /// `gid=N`, `nr_inodes=N`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs_flags: Vec<String>,
    /// Options of the `local` driver the named volume is created with (`type: nfs`,
    /// `o: addr=…`, `device: :/export`; or `type: tmpfs`): the same for every mount of the
    /// volume in an environment. An existing volume created with other options is refused by the
    /// plan (the engine never changes a volume's options).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub driver_opts: std::collections::BTreeMap<String, String>,
}

impl MountOptions {
    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        *self == MountOptions::default()
    }
}

/// SELinux relabelling of a bind mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relabel {
    /// `z`: the content is shared among containers.
    Shared,
    /// `Z`: the content is private to this container.
    Private,
}

/// Mount propagation of a bind mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// `private`.
    Private,
    /// `rprivate` (Docker's default).
    Rprivate,
    /// `shared`.
    Shared,
    /// `rshared`.
    Rshared,
    /// `slave`.
    Slave,
    /// `rslave`.
    Rslave,
}

impl Propagation {
    /// Docker's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Private => "private",
            Propagation::Rprivate => "rprivate",
            Propagation::Shared => "shared",
            Propagation::Rshared => "rshared",
            Propagation::Slave => "slave",
            Propagation::Rslave => "rslave",
        }
    }

    /// From Docker's name.
    pub fn parse(s: &str) -> Option<Propagation> {
        Some(match s {
            "private" => Propagation::Private,
            "rprivate" => Propagation::Rprivate,
            "shared" => Propagation::Shared,
            "rshared" => Propagation::Rshared,
            "slave" => Propagation::Slave,
            "rslave" => Propagation::Rslave,
            _ => return None,
        })
    }
}

/// The tmpfs flags Linux and Docker take, besides `size` and `mode`.
const TMPFS_FLAGS: &[&str] = &["noexec", "exec", "nosuid", "suid", "nodev", "dev", "rw", "ro"];
const TMPFS_VALUED: &[&str] = &["uid", "gid", "nr_inodes", "nr_blocks", "huge", "mpol"];

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
    /// An existing volume the environment does not own, by its name on the target.
    External(String),
}

impl Volume {
    fn of(source: VolumeSource) -> Self {
        Volume { source, target: String::new(), read_only: false, options: MountOptions::default() }
    }

    /// A named volume owned by the environment; set where it mounts with [`at`](Self::at).
    pub fn named(name: impl Into<String>) -> Self {
        Self::of(VolumeSource::Named(name.into()))
    }

    /// An existing volume the environment does not own, by its name on the target (compose's
    /// `external: true`): never created, never removed; the plan refuses it if it is missing.
    pub fn external(name: impl Into<String>) -> Self {
        Self::of(VolumeSource::External(name.into()))
    }

    /// A host path mounted into the container.
    pub fn bind(host_path: impl Into<PathBuf>) -> Self {
        Self::of(VolumeSource::Bind(host_path.into()))
    }

    /// A tmpfs mount.
    pub fn tmpfs() -> Self {
        Self::of(VolumeSource::Tmpfs)
    }

    /// SELinux relabelling of a bind mount's source or a volume's content (`:z` is
    /// [`Relabel::Shared`], `:Z` [`Relabel::Private`]).
    pub fn relabel(mut self, relabel: Relabel) -> Self {
        self.options.selinux = Some(relabel);
        self
    }

    /// Mount propagation of a bind mount.
    pub fn propagation(mut self, propagation: Propagation) -> Self {
        self.options.propagation = Some(propagation);
        self
    }

    /// Creates a bind mount's missing source as a directory on the engine's host (as
    /// `docker run -v` does) instead of refusing it.
    pub fn create_host_path(mut self) -> Self {
        self.options.create_host_path = true;
        self
    }

    /// An option of the `local` driver the named volume is created with (see
    /// [`MountOptions::driver_opts`]).
    pub fn driver_opt(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.driver_opts.insert(key.into(), value.into());
        self
    }

    /// A named volume created for this mount is not filled with the image's content at its target.
    pub fn no_copy(mut self) -> Self {
        self.options.no_copy = true;
        self
    }

    /// The size of a tmpfs mount in bytes.
    pub fn size_bytes(mut self, bytes: u64) -> Self {
        self.options.tmpfs_size = Some(bytes);
        self
    }

    /// The permission bits of a tmpfs mount's root (`0o1777`, `0o755`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.options.tmpfs_mode = Some(mode);
        self
    }

    /// A tmpfs mount flag (`noexec`, `nosuid`, `nodev`, `uid=1000`, `gid=1000`).
    pub fn tmpfs_flag(mut self, flag: impl Into<String>) -> Self {
        self.options.tmpfs_flags.push(flag.into());
        self
    }

    /// Its mount options.
    pub fn options(&self) -> &MountOptions {
        &self.options
    }

    /// What the engine would refuse of its options, one sentence per problem.
    pub(crate) fn problems(&self) -> Vec<String> {
        let o = &self.options;
        let mut out = Vec::new();
        let bind = matches!(self.source, VolumeSource::Bind(_));
        let tmpfs = matches!(self.source, VolumeSource::Tmpfs);
        let volume = matches!(self.source, VolumeSource::Named(_) | VolumeSource::External(_));
        let at = &self.target;
        if tmpfs && o.selinux.is_some() {
            out.push(format!("mount at {at}: SELinux relabelling applies to bind mounts and volumes"));
        }
        if !bind && (o.propagation.is_some() || o.create_host_path) {
            out.push(format!("mount at {at}: propagation and create_host_path apply to bind mounts only"));
        }
        if !matches!(self.source, VolumeSource::Named(_)) && !o.driver_opts.is_empty() {
            out.push(format!("mount at {at}: driver options apply to the environment's named volumes only"));
        }
        if !volume && o.no_copy {
            out.push(format!("mount at {at}: no_copy applies to volumes only"));
        }
        if !tmpfs && (o.tmpfs_size.is_some() || o.tmpfs_mode.is_some() || !o.tmpfs_flags.is_empty()) {
            out.push(format!("mount at {at}: size, mode and tmpfs flags apply to tmpfs mounts only"));
        }
        if o.tmpfs_size == Some(0) {
            out.push(format!("tmpfs at {at}: a size of 0 bytes; leave it unset for the default"));
        }
        if o.tmpfs_mode.is_some_and(|m| m > 0o7777) {
            out.push(format!("tmpfs at {at}: mode {:o} is more than permission bits", o.tmpfs_mode.unwrap_or(0)));
        }
        for f in &o.tmpfs_flags {
            let (name, value) = f.split_once('=').map_or((f.as_str(), None), |(n, v)| (n, Some(v)));
            let known = match value {
                None => TMPFS_FLAGS.contains(&name),
                Some(v) => TMPFS_VALUED.contains(&name) && !v.is_empty() && !v.contains([',', '\0']),
            };
            if !known {
                out.push(format!("tmpfs at {at}: {f:?} is not a tmpfs flag (noexec, nosuid, nodev, uid=N, gid=N, …)"));
            }
        }
        out
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
