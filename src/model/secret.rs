//! Secrets: values that reach a container (its environment, or a file written into it) and nowhere else.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// A secret value, such as a database password, with a record of where it came from.
///
/// Its `Debug` output, the plan, events, errors, labels and revisions show only where it came from
/// (`env:DB_PASSWORD`), never the value. The value reaches the container only: its environment, or a
/// file written into it ([`ContainerFile::secret`](crate::ContainerFile::secret)).
///
/// ```
/// use harbormaster::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(inline, <redacted>)");
/// ```
#[derive(Clone)]
pub struct Secret {
    source: SecretSource,
    value: Arc<str>,
}

/// Where a [`Secret`] was read from. This is what revisions and plans record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// Given in code.
    Inline,
    /// Read from the caller's environment variable of this name.
    Env(String),
    /// Read from this file (trailing newline removed).
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("inline"),
            SecretSource::Env(v) => write!(f, "env:{v}"),
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl Secret {
    /// A secret given in code.
    pub fn new(value: impl Into<String>) -> Self {
        Secret::with(SecretSource::Inline, value.into())
    }

    /// Every secret value is remembered by the scrubber ([`crate::scrub`]) the moment it exists.
    fn with(source: SecretSource, value: String) -> Self {
        crate::scrub::remember(&value);
        Secret { source, value: Arc::from(value) }
    }

    /// Reads the secret from the caller's environment variable `var`.
    ///
    /// Fails with [`ValidationError::SecretUnavailable`] if the variable is unset or not UTF-8
    /// (the error never holds the value).
    pub fn from_env(var: &str) -> Result<Self, ValidationError> {
        let source = SecretSource::Env(var.to_string());
        match std::env::var(var) {
            Ok(v) => Ok(Secret::with(source, v)),
            Err(e) => {
                let reason = match e {
                    std::env::VarError::NotPresent => "the variable is not set".to_string(),
                    // Its Display would quote the value.
                    std::env::VarError::NotUnicode(_) => "its value is not valid UTF-8".to_string(),
                };
                Err(ValidationError::SecretUnavailable { source_ref: source.to_string(), reason })
            }
        }
    }

    /// Reads the secret from a file (a trailing newline is removed).
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, ValidationError> {
        let path = path.into();
        let source = SecretSource::File(path.clone());
        match std::fs::read_to_string(&path) {
            Ok(v) => Ok(Secret::with(source, v.trim_end_matches(['\n', '\r']).to_string())),
            Err(e) => Err(ValidationError::SecretUnavailable { source_ref: source.to_string(), reason: e.to_string() }),
        }
    }

    /// Where this secret came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// The value, for the backend that hands it to the container. Never log it.
    pub(crate) fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}, <redacted>)", self.source)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.value == other.value
    }
}

/// A digest of a secret value for change detection on targets that keep only a reference to
/// it (a swarm secret's name): 16 hex digits of a keyed SipHash over the service, key and
/// value. It tells that a value changed, not what it is.
pub fn secret_digest(service: &str, key: &str, secret: &Secret) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("harbormaster secret", service, key, secret.expose()).hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_serialize_never_show_the_value() {
        let s = Secret::new("p4ss-w0rd");
        assert!(!format!("{s:?}").contains("p4ss"));
        assert!(!serde_json::to_string(&s).unwrap().contains("p4ss"));
        assert_eq!(s.expose(), "p4ss-w0rd");
    }

    #[test]
    fn from_env_missing_names_the_variable() {
        let err = Secret::from_env("HARBORMASTER_SURELY_UNSET_VAR").unwrap_err();
        assert!(err.to_string().contains("env:HARBORMASTER_SURELY_UNSET_VAR"), "{err}");
    }

    #[test]
    fn a_value_that_is_not_utf8_is_never_in_the_error() {
        use std::os::unix::ffi::OsStrExt;
        let var = format!("HM_TEST_NOT_UTF8_{}", std::process::id());
        std::env::set_var(&var, std::ffi::OsStr::from_bytes(b"top-\xffsecret-value"));
        let err = Secret::from_env(&var).unwrap_err().to_string();
        std::env::remove_var(&var);
        assert!(!err.contains("secret-value") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn from_file_trims_newline() {
        let dir = std::env::temp_dir().join(format!("hm-secret-{}", std::process::id()));
        std::fs::write(&dir, "abc\n").unwrap();
        let s = Secret::from_file(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(s.expose(), "abc");
        assert!(format!("{s:?}").contains("file:"));
    }
}
