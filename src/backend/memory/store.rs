//! The in-memory runtime's image store and record store.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::SystemTime;

use async_trait::async_trait;

use super::MemoryBackend;
use crate::backend::{ImageInfo, ImageStore, NewRecord, Record, RecordStore, Scope, StateFile};
use crate::error::{Error, RegistryErrorKind, Result};
use crate::model::Build;
use crate::registry::{ImageRef, PullProgress};

/// Images, records, state files and instance files.
#[derive(Default)]
pub(crate) struct Store {
    /// Local images: reference → ID.
    images: BTreeMap<String, String>,
    /// References whose pulls fail as not found.
    pub(crate) missing: BTreeSet<String>,
    /// Records by name, with their environment.
    records: BTreeMap<String, (Scope, Record)>,
    next_record: u64,
    /// State files per environment.
    state: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Files in instances: (instance ID, path) → contents.
    pub(crate) files: BTreeMap<(String, String), Vec<u8>>,
}

/// A stable `sha256:`-shaped digest of some text (not a real SHA-256: nothing here checks one).
fn digest_of(text: &str) -> String {
    let mut out = String::from("sha256:");
    for salt in 0u8..4 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, text).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl Store {
    /// The reference an image ID was pulled or built as.
    pub(crate) fn reference_of(&self, id: &str) -> Option<String> {
        if self.images.contains_key(id) {
            return Some(id.to_string());
        }
        self.images.iter().find(|(_, v)| v.as_str() == id).map(|(k, _)| k.clone())
    }

    fn info(&self, reference: &str) -> Option<ImageInfo> {
        let id =
            self.images.get(reference).cloned().or_else(|| self.images.values().find(|v| *v == reference).cloned())?;
        let reference = self.reference_of(&id).unwrap_or_default();
        let repo_digests =
            ImageRef::parse(&reference).map(|r| vec![r.pinned(&digest_of(&reference))]).unwrap_or_default();
        Some(ImageInfo { id, repo_digests, os: "linux".into(), architecture: "amd64".into() })
    }
}

#[async_trait]
impl ImageStore for MemoryBackend {
    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        self.enter("image_id").await?;
        Ok(self.world().store.info(reference).map(|i| i.id))
    }

    async fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.enter("image_info").await?;
        Ok(self.world().store.info(reference))
    }

    async fn build_image(&self, build: &Build, tag: &str) -> Result<String> {
        self.enter("build_image").await?;
        let id = digest_of(&format!("build {tag} {}", build.context.display()));
        self.world().store.images.insert(tag.to_string(), id.clone());
        Ok(id)
    }

    async fn pull_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<ImageInfo> {
        self.enter("pull_image").await?;
        let mut w = self.world();
        if w.store.missing.contains(reference) {
            let registry = ImageRef::parse(reference).map(|r| r.registry).unwrap_or_default();
            return Err(Error::Registry {
                operation: "pull",
                reference: reference.to_string(),
                services: Vec::new(),
                registry,
                kind: RegistryErrorKind::NotFound,
                credentials: "none".into(),
                message: "manifest unknown (the memory runtime was told it is missing)".into(),
            });
        }
        let id = digest_of(&format!("image {reference}"));
        w.store.images.insert(reference.to_string(), id);
        drop(w);
        progress(PullProgress { done: 1, total: 1, layers_done: 1, layers: 1 });
        let w = self.world();
        w.store.info(reference).ok_or_else(|| Error::backend("pull image", reference, "lost after the pull"))
    }

    async fn registry_digest(&self, reference: &str) -> Result<Option<String>> {
        self.enter("registry_digest").await?;
        Ok((!self.world().store.missing.contains(reference)).then(|| digest_of(reference)))
    }

    async fn push_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<String> {
        let _ = progress;
        self.enter("push_image").await?;
        Ok(digest_of(reference))
    }
}

#[async_trait]
impl RecordStore for MemoryBackend {
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
        self.enter("create_record").await?;
        self.records_guard("create record")?;
        let mut w = self.world();
        if w.store.records.contains_key(&record.name) {
            return Ok(None);
        }
        w.store.next_record = w.store.next_record.saturating_add(1);
        let r = Record {
            id: format!("rec-{:06}", w.store.next_record),
            name: record.name.clone(),
            kind: record.kind.clone(),
            created: SystemTime::now(),
            data: record.data.clone(),
        };
        w.store.records.insert(record.name.clone(), (scope.clone(), r.clone()));
        Ok(Some(r))
    }

    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>> {
        self.enter("list_records").await?;
        let w = self.world();
        let mut out: Vec<Record> =
            w.store.records.values().filter(|(s, r)| s == scope && r.kind == kind).map(|(_, r)| r.clone()).collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    async fn remove_record(&self, id: &str) -> Result<()> {
        self.enter("remove_record").await?;
        self.world().store.records.retain(|_, (_, r)| r.id != id);
        Ok(())
    }

    async fn clock(&self) -> Result<SystemTime> {
        self.enter("clock").await?;
        Ok(MemoryBackend::now())
    }

    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
        self.enter("read_state").await?;
        let w = self.world();
        Ok(w.store.state.get(&scope.qualified()).map(|files| {
            files.iter().map(|(name, contents)| StateFile { name: name.clone(), contents: contents.clone() }).collect()
        }))
    }

    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
        self.enter("write_state").await?;
        self.records_guard("write state")?;
        self.world().store.state.entry(scope.qualified()).or_default().insert(name.to_string(), contents.to_vec());
        Ok(())
    }

    async fn remove_state(&self, scope: &Scope) -> Result<()> {
        self.enter("remove_state").await?;
        self.world().store.state.remove(&scope.qualified());
        Ok(())
    }
}
