//! The optional record store: where the deploy lock, its lease renewals and the environment's
//! durable state (revisions, audit trail, waiting promotions, finished jobs) live on the target.
//! A Docker engine keeps them as volumes, a swarm as configs, a cloud API in its metadata.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;

use super::Scope;
use crate::error::Result;

/// A small named record of an environment on the target: the deploy lock and the renewals of its
/// lease. Creating one is an atomic test-and-set on its name (two processes never both create the
/// same name), and records survive the routine pruning of containers and images (on a Docker
/// engine they are volumes, which `docker system prune` without `--volumes` keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The backend's ID (used to remove it).
    pub id: String,
    /// Unique name on the target; creating a second record with the same name fails.
    pub name: String,
    /// What it is (`lock`, `lease`).
    pub kind: String,
    /// When it was created, by the target's clock ([`RecordStore::clock`]).
    pub created: SystemTime,
    /// Its data.
    pub data: BTreeMap<String, String>,
}

/// A record to create.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// Unique name on the target.
    pub name: String,
    /// What it is.
    pub kind: String,
    /// Its data (never secret values).
    pub data: BTreeMap<String, String>,
}

/// One file of an environment's durable state store ([`RecordStore::read_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    /// Its name in the store.
    pub name: String,
    /// Its contents.
    pub contents: Vec<u8>,
}

/// Records and state files of environments, kept on the target so that every deployer (another
/// process, container or host) sees the same lock and the same history. Without one, a target
/// can be observed but not deployed to ([`Error::Unsupported`](crate::Error::Unsupported)).
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Creates a record; `Ok(None)` if a record with that name exists already (so a record name
    /// works as a lock: create-if-absent, atomic on the target).
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>>;

    /// The environment's records of one kind, oldest first.
    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>>;

    /// Removes a record by ID; a missing one is not an error.
    async fn remove_record(&self, id: &str) -> Result<()>;

    /// The target's clock. Leases are judged by it, so deployers whose own clocks differ agree.
    async fn clock(&self) -> Result<SystemTime> {
        Ok(SystemTime::now())
    }

    /// Every file of the environment's durable state store, or `None` if it has no store. The
    /// store must survive what routine maintenance removes (stopped containers, unused images
    /// and networks).
    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>>;

    /// Writes (creates or replaces) one file of the environment's state store, creating the store
    /// if it has none.
    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()>;

    /// Removes the environment's state store (and what it keeps); a missing store is not an error.
    async fn remove_state(&self, scope: &Scope) -> Result<()>;

    /// Lets go of whatever is held open to reach the state store of `scope` (called when an
    /// operation ends).
    async fn release_state(&self, scope: &Scope) {
        let _ = scope;
    }
}
