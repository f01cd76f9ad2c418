//! Data for a new preview: the base's latest backup (or a given one) restored into the preview's
//! database before anything else of the preview starts.

use std::fmt;
use std::sync::Arc;

use crate::backup::{PostgresBackup, S3Storage};
use crate::error::{Error, ErrorKind, Result, ValidationError};
use crate::model::Environment;

/// Where a new preview's data comes from ([`PreviewBuilder::seed`](super::PreviewBuilder::seed)).
/// It is restored once, when the preview is first brought up: its database service (and what
/// that depends on) starts first, the dump is restored into it, then the rest starts (migrations
/// then run against the restored data).
#[derive(Clone)]
pub struct Seed {
    backup: PostgresBackup,
    storage: Arc<S3Storage>,
    key: Option<String>,
}

impl Seed {
    /// The newest backup of the base environment taken by `backup` (see
    /// [`PostgresBackup::run`]), restored into the same service of the preview.
    pub fn latest_backup(backup: PostgresBackup, storage: Arc<S3Storage>) -> Seed {
        Seed { backup, storage, key: None }
    }

    /// The dump stored under `key` (a fixture), restored into `backup`'s service of the preview.
    pub fn backup_key(backup: PostgresBackup, storage: Arc<S3Storage>, key: impl Into<String>) -> Seed {
        Seed { backup, storage, key: Some(key.into()) }
    }

    /// The database service seeded.
    pub fn service(&self) -> &str {
        self.backup.service()
    }

    pub(crate) fn check(&self, env: &Environment) -> std::result::Result<(), ValidationError> {
        if env.service(self.service()).is_none() {
            return Err(ValidationError::InvalidValue {
                owner: format!("preview `{}`", env.name()),
                field: "seed",
                reason: format!("it seeds `{}`, which is not a service of the preview", self.service()),
            });
        }
        Ok(())
    }

    /// Restores into `preview`'s running database; returns the key restored.
    pub(crate) async fn restore<B: crate::backend::Backend>(
        &self,
        base: &Environment,
        preview: &Environment,
        backend: &B,
    ) -> Result<String> {
        let key = match &self.key {
            Some(k) => k.clone(),
            None => self.backup.list(base, &self.storage).await?.pop().map(|b| b.key).ok_or_else(|| {
                Error::backend_kind(
                    "seed a preview",
                    format!("{}/{}", base.qualified_name(), self.service()),
                    ErrorKind::NotFound,
                    format!(
                        "the base has no backup in {}: take one first (PostgresBackup::run)",
                        self.storage.describe()
                    ),
                )
            })?,
        };
        self.backup.restore(preview, backend, &self.storage, &key).await?;
        Ok(key)
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seed")
            .field("service", &self.service())
            .field("storage", &self.storage.describe())
            .field("key", &self.key)
            .finish()
    }
}
