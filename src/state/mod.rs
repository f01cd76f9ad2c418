//! State kept on the target between operations, below the engine: what any process needs to know
//! about an environment's past, stored where the environment runs.
//!
//! - `Store` (here) and `document.rs`: the environment's state document (revisions, audit trail,
//!   waiting promotions, finished jobs, kept images), written so that a killed writer never
//!   corrupts it, in a store that survives `docker system prune -a`
//!   ([`RecordStore::read_state`](crate::backend::RecordStore::read_state)).
//! - `lock.rs`: the deploy lock, with a lease its holder renews.
//! - `revisions.rs`, `audit.rs`, `promotion.rs`, `jobs.rs`: the parts of the document, each with
//!   its rules (what is kept, what is pruned).
//!
//! A store can still be lost: `docker volume prune`, `docker system prune --volumes`, or by hand.
//! That is noticed: a store missing (or unreadable) while the environment's containers run is
//! [`Error::StateLost`] for reads, never an empty history, and the next apply starts a new store
//! with a note in the audit trail.

pub(crate) mod audit;
pub(crate) mod document;
pub(crate) mod jobs;
pub(crate) mod lock;
pub(crate) mod promotion;
pub(crate) mod revisions;

pub use lock::LEASE;

use tokio::sync::Mutex;

use crate::backend::{records_of, Backend, Instance, Scope};
use crate::error::{Error, Result};
use document::{Document, LostRecord};

/// What reading the store found.
enum Found {
    /// A document.
    Document(Document),
    /// No store at all.
    Missing,
    /// A store without a readable document, and why.
    Unreadable(String),
}

async fn load(backend: &dyn Backend, scope: &Scope) -> Result<Found> {
    let Some(files) = records_of(backend, "keep deploy records")?.read_state(scope).await? else {
        return Ok(Found::Missing);
    };
    match Document::newest(&files) {
        Ok(doc) => Ok(Found::Document(doc)),
        Err(why) if why.contains("newer than this library") => {
            Err(Error::backend("read state", scope.qualified(), format!("the state store {why}")))
        }
        Err(why) if files.is_empty() => Ok(Found::Unreadable(format!("its state store is empty ({why})"))),
        Err(why) => Ok(Found::Unreadable(format!("its state store holds no readable document: {why}"))),
    }
}

/// The environment's state store, open for one operation. Reads come from the document read at
/// open; writes update it and write it whole.
pub(crate) struct Store<'a> {
    backend: &'a dyn Backend,
    scope: Scope,
    doc: Mutex<Document>,
    /// An ephemeral environment's store: in memory for one operation, never written.
    ephemeral: bool,
    /// A new environment's store, not written yet ([`save_if_new`](Self::save_if_new)).
    unsaved: std::sync::atomic::AtomicBool,
    /// Held while a copy is written: writes go one at a time, reads need not wait for them.
    writing: Mutex<()>,
}

impl<'a> Store<'a> {
    fn with(backend: &'a dyn Backend, scope: &Scope, doc: Document) -> Store<'a> {
        Store {
            backend,
            scope: scope.clone(),
            doc: Mutex::new(doc),
            ephemeral: false,
            unsaved: std::sync::atomic::AtomicBool::new(false),
            writing: Mutex::new(()),
        }
    }

    /// The store of an ephemeral environment ([`EnvironmentBuilder::ephemeral`](crate::EnvironmentBuilder::ephemeral)):
    /// empty, in memory, never written to the target.
    pub(crate) fn ephemeral(backend: &'a dyn Backend, scope: &Scope) -> Store<'a> {
        Store { ephemeral: true, ..Store::with(backend, scope, Document::new()) }
    }

    /// Whether it is an ephemeral environment's (nothing is kept on the target).
    pub(crate) fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// Opens the store to read it. Missing while `instances` run (or unreadable): the store was
    /// lost, [`Error::StateLost`]. Missing with nothing running: a new environment, empty.
    pub(crate) async fn open(backend: &'a dyn Backend, scope: &Scope, instances: &[Instance]) -> Result<Store<'a>> {
        match load(backend, scope).await? {
            Found::Document(doc) => Ok(Store::with(backend, scope, doc)),
            Found::Missing | Found::Unreadable(_) if instances.is_empty() => {
                Ok(Store::with(backend, scope, Document::new()))
            }
            Found::Missing => Err(lost(backend, scope, instances, "its state store is gone".into())),
            Found::Unreadable(why) => Err(lost(backend, scope, instances, why)),
        }
    }

    /// Opens the store to read it, reading a lost store as empty (for a plan, which shows what an
    /// apply would do: it would start a new store).
    pub(crate) async fn open_lenient(backend: &'a dyn Backend, scope: &Scope) -> Result<Store<'a>> {
        Ok(match load(backend, scope).await? {
            Found::Document(doc) => Store::with(backend, scope, doc),
            _ => Store::with(backend, scope, Document::new()),
        })
    }

    /// Opens the store for an operation that changes the environment: a missing store is created
    /// (before any container is, so that containers without a store always mean a lost one), and
    /// a lost one is replaced by a new store that records the loss. Returns the store and, if one
    /// was lost, what was lost.
    pub(crate) async fn open_for_change(
        backend: &'a dyn Backend,
        scope: &Scope,
        instances: &[Instance],
    ) -> Result<(Store<'a>, Option<String>)> {
        let (doc, lost) = match load(backend, scope).await? {
            Found::Document(doc) => return Ok((Store::with(backend, scope, doc), None)),
            Found::Missing | Found::Unreadable(_) if instances.is_empty() => {
                // A new environment: the store is written while the apply plans, before its
                // first container is created (`save_if_new`).
                let store = Store::with(backend, scope, Document::new());
                store.unsaved.store(true, std::sync::atomic::Ordering::SeqCst);
                return Ok((store, None));
            }
            Found::Missing => (Document::new(), Some("its state store is gone".to_string())),
            Found::Unreadable(why) => (Document::new(), Some(why)),
        };
        let store = Store::with(backend, scope, doc);
        let note = lost.map(|why| {
            format!(
                "the state store was lost ({why}) while {} container(s) ran: revisions, audit entries, waiting \
                 promotions and job completions recorded before are gone; a new store starts here",
                instances.len()
            )
        });
        store
            .update(|d| {
                if let Some(n) = &note {
                    d.lost.push(LostRecord { noticed_ms: document::now_ms(), what: n.clone() });
                }
            })
            .await?;
        Ok((store, note))
    }

    /// Writes a new environment's store if [`open_for_change`](Self::open_for_change) left it
    /// unwritten: before any container of the environment is created, so that containers without
    /// a store always mean a lost one.
    pub(crate) async fn save_if_new(&self) -> Result<()> {
        let _writing = self.writing.lock().await;
        if !self.unsaved.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        // Without holding the document: the plan reads it meanwhile.
        let mut next = self.doc.lock().await.clone();
        next.seq = next.seq.saturating_add(1);
        records_of(self.backend, "keep deploy records")?
            .write_state(&self.scope, &document::slot(next.seq), &next.encode())
            .await?;
        *self.doc.lock().await = next;
        self.unsaved.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Reads the document.
    pub(crate) async fn read<T>(&self, f: impl FnOnce(&Document) -> T) -> T {
        f(&*self.doc.lock().await)
    }

    /// Changes the document and writes it (into the slot that does not hold the newest copy).
    pub(crate) async fn update<T>(&self, f: impl FnOnce(&mut Document) -> T) -> Result<T> {
        let _writing = self.writing.lock().await;
        let mut doc = self.doc.lock().await;
        let mut next = doc.clone();
        let out = f(&mut next);
        next.seq = next.seq.saturating_add(1);
        if !self.ephemeral {
            records_of(self.backend, "keep deploy records")?
                .write_state(&self.scope, &document::slot(next.seq), &next.encode())
                .await?;
            self.unsaved.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        *doc = next;
        Ok(out)
    }

    /// The backend the store lives on.
    pub(crate) fn backend(&self) -> &'a dyn Backend {
        self.backend
    }

    /// The environment.
    pub(crate) fn scope(&self) -> &Scope {
        &self.scope
    }
}

fn lost(backend: &dyn Backend, scope: &Scope, instances: &[Instance], reason: String) -> Error {
    Error::StateLost { environment: scope.qualified(), target: backend.describe(), running: instances.len(), reason }
}
