//! Backups as the deployment guides do them: `pg_dump` of a PostgreSQL service, uploaded to
//! S3-compatible storage, kept by count and by age, restored into any environment.
//!
//! ```no_run
//! use std::time::Duration;
//! use harbormaster::backup::{PostgresBackup, Retention, S3Storage, Schedule};
//! use harbormaster::{DockerBackend, Environment, Secret};
//!
//! # async fn run(env: Environment, fresh: Environment) -> harbormaster::Result<()> {
//! let docker = DockerBackend::connect().await?;
//! let storage = S3Storage::builder("http://127.0.0.1:9000", "backups")
//!     .credentials("access-key", Secret::from_env("S3_SECRET_KEY")?)
//!     .build()?;
//! let backup = PostgresBackup::new("db").database("shop").user("app");
//! let taken = backup.run(&env, &docker, &storage).await?;            // on demand
//! backup.run_if_due(&Schedule::every(Duration::from_secs(86_400)), &env, &docker, &storage).await?; // from the caller's timer
//! Retention::new().keep_last(7).max_age(Duration::from_secs(30 * 86_400)).apply(&backup, &env, &storage).await?;
//! backup.restore(&fresh, &docker, &storage, &taken.key).await?;      // into another environment
//! # Ok(()) }
//! ```
//!
//! - `storage.rs`: the S3 client (signed requests through reqwest; the secret key is a
//!   [`Secret`](crate::Secret)).
//! - `postgres.rs`: where a dump is taken (`pg_dump` in the service's own container, read back as
//!   a file) and restored (`psql -f`).
//! - `retention.rs`: which backups go, and when the next is due: pure decisions.
//!
//! A dump is taken inside the running database container, so it needs nothing but the image's own
//! tools and works on every target that can exec and move files (the local engine, SSH hosts).

mod postgres;
mod retention;
mod storage;

pub use postgres::{BackupRecord, PostgresBackup, RestoreReport};
pub use retention::{Retention, Schedule};
pub use storage::{S3Storage, S3StorageBuilder, StoredObject};
