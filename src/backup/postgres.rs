//! [`PostgresBackup`]: where a dump is taken and where it is restored. `pg_dump` runs in the
//! service's own running container (the image's own tools; a local connection, so no password
//! travels), writes a file there, and the file is read back through the target and uploaded; a
//! restore writes the dump into the target container and runs `psql -f` on it.

use std::time::{Duration, SystemTime};

use super::storage::{key_time, parse_key_time};
use super::S3Storage;
use crate::backend::{Backend, Instance};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Environment;

/// The longest a dump or a restore may run.
const DUMP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A backup in storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRecord {
    /// Its key in the bucket.
    pub key: String,
    /// When it was taken (from its key).
    pub taken: SystemTime,
    /// Its size in bytes.
    pub size: u64,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The backup restored.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The environment and service restored into.
    pub into: String,
}

/// Backups of one PostgreSQL database of a service: `pg_dump` in plain SQL, as the guides do.
#[derive(Clone, Debug)]
pub struct PostgresBackup {
    service: String,
    database: String,
    user: String,
    prefix: String,
}

impl PostgresBackup {
    /// The service whose database is backed up.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Backups of the database of `service` (default database and user `postgres`).
    pub fn new(service: impl Into<String>) -> PostgresBackup {
        PostgresBackup {
            service: service.into(),
            database: "postgres".into(),
            user: "postgres".into(),
            prefix: String::new(),
        }
    }

    /// The database.
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// The database user `pg_dump` and `psql` connect as (over the container's local socket).
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.user = name.into();
        self
    }

    /// A prefix for the keys (`backups/`), before `<project>-<environment>/<service>/…`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Where this environment's backups are kept in the bucket. Backups of one environment
    /// restored into another keep their own environment's prefix.
    pub fn key_prefix(&self, env: &Environment) -> String {
        format!("{}{}/{}/{}-", self.prefix, env.qualified_name(), self.service, self.database)
    }

    /// Takes a backup now and uploads it.
    pub async fn run<B: Backend>(&self, env: &Environment, backend: &B, storage: &S3Storage) -> Result<BackupRecord> {
        let target = self.running(env, backend).await?;
        // Whole seconds: the time as the key records it.
        let now = SystemTime::now();
        let taken = parse_key_time(&key_time(now)).unwrap_or(now);
        let file = format!("/tmp/harbormaster-backup-{}.sql", crate::process::nonce());
        let dump =
            ["pg_dump", "--no-password", "--clean", "--if-exists", "-U", &self.user, "-d", &self.database, "-f", &file];
        let result = async {
            self.exec(backend, &target, &dump, "dump").await?;
            let files = backend.files().ok_or_else(|| {
                Error::unsupported(backend.describe(), "read a dump out of a container", "it cannot move files")
            })?;
            files.read_file(&target.id, &file).await?.ok_or_else(|| {
                Error::backend_kind(
                    "read the dump",
                    self.at(env),
                    ErrorKind::NotFound,
                    format!("{file} was not written"),
                )
            })
        }
        .await;
        let _ = backend.exec(&target.id, &["rm".into(), "-f".into(), file.clone()], Duration::from_secs(30)).await;
        let bytes = result?;
        let size = bytes.len() as u64;
        let key = format!("{}{}.sql", self.key_prefix(env), key_time(taken));
        storage.put(&key, bytes).await?;
        tracing::info!(key = %key, size, "backup taken");
        Ok(BackupRecord { key, taken, size })
    }

    /// Takes a backup if `schedule` says one is due (from the newest in storage); `None` if not.
    pub async fn run_if_due<B: Backend>(
        &self,
        schedule: &super::Schedule,
        env: &Environment,
        backend: &B,
        storage: &S3Storage,
    ) -> Result<Option<BackupRecord>> {
        let newest = self.list(env, storage).await?.into_iter().map(|b| b.taken).max();
        if !schedule.is_due(newest, SystemTime::now()) {
            return Ok(None);
        }
        self.run(env, backend, storage).await.map(Some)
    }

    /// This environment's backups in storage, oldest first.
    pub async fn list(&self, env: &Environment, storage: &S3Storage) -> Result<Vec<BackupRecord>> {
        let prefix = self.key_prefix(env);
        let mut out: Vec<BackupRecord> = storage
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let stamp = o.key.strip_prefix(&prefix)?.strip_suffix(".sql")?;
                Some(BackupRecord { taken: parse_key_time(stamp)?, key: o.key, size: o.size })
            })
            .collect();
        out.sort_by(|a, b| a.taken.cmp(&b.taken).then_with(|| a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Restores the backup under `key` into this service of `env` (a fresh environment, or the
    /// same one): `psql -f` of the dump, stopping at the first error.
    pub async fn restore<B: Backend>(
        &self,
        env: &Environment,
        backend: &B,
        storage: &S3Storage,
        key: &str,
    ) -> Result<RestoreReport> {
        let target = self.running(env, backend).await?;
        let bytes = storage.get(key).await?;
        let size = bytes.len() as u64;
        let files = backend.files().ok_or_else(|| {
            Error::unsupported(backend.describe(), "put a dump into a container", "it cannot move files")
        })?;
        let file = format!("/tmp/harbormaster-restore-{}.sql", crate::process::nonce());
        files.write_file(&target.id, &file, &bytes, 0o644).await?;
        let psql = [
            "psql",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-U",
            &self.user,
            "-d",
            &self.database,
            "-f",
            &file,
        ];
        let result = self.exec(backend, &target, &psql, "restore").await;
        let _ = backend.exec(&target.id, &["rm".into(), "-f".into(), file.clone()], Duration::from_secs(30)).await;
        result?;
        tracing::info!(key = %key, size, environment = %env.qualified_name(), "backup restored");
        Ok(RestoreReport { key: key.to_string(), size, into: self.at(env) })
    }

    fn at(&self, env: &Environment) -> String {
        format!("{}/{}", env.qualified_name(), self.service)
    }

    async fn running<B: Backend>(&self, env: &Environment, backend: &B) -> Result<Instance> {
        let scope = crate::backend::Scope::new(env.project(), env.name());
        let instances = backend.list_instances(&scope).await?;
        instances.into_iter().find(|i| i.service == self.service && i.is_running()).ok_or_else(|| {
            Error::backend_kind(
                "back up or restore",
                self.at(env),
                ErrorKind::NotFound,
                "no running instance of the service: apply the environment first",
            )
        })
    }

    async fn exec<B: Backend>(
        &self,
        backend: &B,
        target: &Instance,
        command: &[&str],
        what: &'static str,
    ) -> Result<()> {
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let out = backend.exec(&target.id, &command, DUMP_TIMEOUT).await?;
        if out.exit_code != 0 {
            let stderr: String = out.stderr.lines().take(20).collect::<Vec<_>>().join("\n");
            return Err(Error::backend(
                what,
                format!("{} ({})", target.name, self.service),
                format!("{} exited with {}: {}", command[0], out.exit_code, crate::scrub::text(&stderr)),
            ));
        }
        Ok(())
    }
}
