//! Files written into each instance before it starts: a configuration given inline, or a secret
//! (compose's `configs` and `secrets` with `content` or `environment`).

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::Secret;

/// The default mode of a written file: readable by everyone, as Compose writes configs and
/// secrets.
pub const DEFAULT_FILE_MODE: u32 = 0o444;

/// The key of a secret file's contents, read back from an instance, in its `secret_env` (beside
/// the secret variables).
pub(crate) fn secret_file_key(target: &str) -> String {
    format!("file:{target}")
}

/// A file written into each of a service's instances after it is created and before it starts.
///
/// A text file's contents are part of the service's configuration (changing them replaces the
/// instances); a secret file holds a [`Secret`], whose value appears nowhere but in the file: the
/// plan, revisions and labels hold only where it came from, and a changed value is found by
/// reading the file back.
///
/// ```
/// use harbormaster::{ContainerFile, Secret, Service};
/// let web = Service::builder("web")
///     .image("nginx:1.27")
///     .file(ContainerFile::text("/etc/nginx/conf.d/default.conf", "server { listen 80; }\n"))
///     .file(ContainerFile::secret("/run/secrets/token", Secret::new("s3cr3t-token")).mode(0o400))
///     .build()?;
/// assert_eq!(web.files().len(), 2);
/// # Ok::<_, harbormaster::ValidationError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct ContainerFile {
    pub(crate) target: String,
    pub(crate) contents: FileContents,
    pub(crate) mode: u32,
}

/// What a [`ContainerFile`] holds.
#[derive(Clone, PartialEq)]
pub(crate) enum FileContents {
    Text(String),
    Secret(Secret),
}

impl ContainerFile {
    /// A file holding `contents`, at the absolute path `target`.
    pub fn text(target: impl Into<String>, contents: impl Into<String>) -> ContainerFile {
        ContainerFile { target: target.into(), contents: FileContents::Text(contents.into()), mode: DEFAULT_FILE_MODE }
    }

    /// A file holding a secret's value, at the absolute path `target` (`/run/secrets/NAME` by
    /// convention).
    pub fn secret(target: impl Into<String>, secret: Secret) -> ContainerFile {
        ContainerFile { target: target.into(), contents: FileContents::Secret(secret), mode: DEFAULT_FILE_MODE }
    }

    /// The file's permission bits (default `0o444`).
    pub fn mode(mut self, mode: u32) -> ContainerFile {
        self.mode = mode;
        self
    }

    /// Where it is written in the container.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Its permission bits.
    pub fn permissions(&self) -> u32 {
        self.mode
    }

    /// The text it holds, if it is not a secret.
    pub fn text_contents(&self) -> Option<&str> {
        match &self.contents {
            FileContents::Text(t) => Some(t),
            FileContents::Secret(_) => None,
        }
    }

    /// The secret it holds, if it is one.
    pub fn secret_contents(&self) -> Option<&Secret> {
        match &self.contents {
            FileContents::Secret(s) => Some(s),
            FileContents::Text(_) => None,
        }
    }

    /// Whether it holds a secret.
    pub fn is_secret(&self) -> bool {
        matches!(self.contents, FileContents::Secret(_))
    }

    /// The bytes to write (a secret's value: for the engine only).
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.contents {
            FileContents::Text(t) => t.as_bytes(),
            FileContents::Secret(s) => s.expose().as_bytes(),
        }
    }

    /// What the configuration records of it: the path, the mode, and the text's digest or the
    /// secret's source, never a secret's value.
    pub(crate) fn record(&self) -> FileRecord {
        let (sha256, secret) = match &self.contents {
            FileContents::Text(t) => (Some(hex(&Sha256::digest(t.as_bytes()))), None),
            FileContents::Secret(s) => (None, Some(s.source().clone())),
        };
        FileRecord { target: self.target.clone(), mode: self.mode, sha256, secret }
    }

    /// What is wrong with it, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        let t = &self.target;
        if !t.starts_with('/') || t.ends_with('/') || t.contains('\0') || t.split('/').any(|p| p == "..") {
            return Some(format!("file target {} is not an absolute path to a file", super::limits::show(t)));
        }
        if self.mode > 0o7777 {
            return Some(format!("file {t}: mode {:o} is not a permission mode", self.mode));
        }
        if self.bytes().len() > super::limits::MAX_FILE_BYTES {
            return Some(format!(
                "file {t} is larger than the {} bytes a file may hold",
                super::limits::MAX_FILE_BYTES
            ));
        }
        None
    }
}

/// A [`ContainerFile`] as a configuration records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct FileRecord {
    pub target: String,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<super::SecretSource>,
}

/// Lowercase hexadecimal of `bytes` (digests in labels, names and records).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for ContainerFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ContainerFile");
        d.field("target", &self.target).field("mode", &format_args!("{:o}", self.mode));
        match &self.contents {
            FileContents::Text(t) => d.field("text_bytes", &t.len()),
            FileContents::Secret(s) => d.field("secret", s),
        };
        d.finish()
    }
}

/// `{"target", "mode", "text"}` or `{"target", "mode", "secret": source}`: a secret's value never.
impl Serialize for ContainerFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("target", &self.target)?;
        m.serialize_entry("mode", &self.mode)?;
        match &self.contents {
            FileContents::Text(t) => m.serialize_entry("text", t)?,
            FileContents::Secret(secret) => m.serialize_entry("secret", secret)?,
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_shows_its_source_only() {
        let f = ContainerFile::secret("/run/secrets/t", Secret::new("value-never-shown"));
        let shown = format!("{f:?}{}{:?}", serde_json::to_string(&f).unwrap(), f.record());
        assert!(!shown.contains("value-never-shown"), "{shown}");
        assert_eq!(f.bytes(), b"value-never-shown");
    }

    #[test]
    fn targets_are_absolute_file_paths() {
        assert!(ContainerFile::text("/etc/x.conf", "a").problem().is_none());
        for bad in ["etc/x", "/etc/", "/a/../b", ""] {
            assert!(ContainerFile::text(bad, "a").problem().is_some(), "{bad:?}");
        }
        assert!(ContainerFile::text("/x", "a").mode(0o10000).problem().is_some());
    }
}
