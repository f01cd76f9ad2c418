//! Finished jobs: a job counts as done only once it exited 0 for exactly its configuration (spec
//! hash and image ID). Its container says so while it exists; this record says so after a
//! `docker container prune` removed it, so a migration does not run twice for one version.

use super::document::{now_ms, JobRecord};
use super::Store;
use crate::error::Result;
use crate::plan::spec::Template;

/// The configuration (spec hash, image ID) a job last completed with, if it did.
pub(crate) async fn completed(store: &Store<'_>, job: &str) -> Option<(String, String)> {
    store.read(|d| d.jobs.get(job).map(|j| (j.spec_hash.clone(), j.image_id.clone()))).await
}

/// The image a job last completed with under this reference (to plan it after its image's tag
/// was pruned).
pub(crate) async fn image_of_reference(store: &Store<'_>, job: &str, reference: &str) -> Option<String> {
    store.read(|d| d.jobs.get(job).filter(|j| j.image == reference).map(|j| j.image_id.clone())).await
}

/// Records that `template`'s job exited 0.
pub(crate) async fn record(store: &Store<'_>, template: &Template) -> Result<()> {
    let image = match &template.service.image {
        crate::model::ImageSource::Reference(r) => r.clone(),
        crate::model::ImageSource::Build(b) => format!("built from {}", b.context.display()),
    };
    let record = JobRecord {
        spec_hash: template.spec_hash.clone(),
        image_id: template.image_id.clone(),
        image,
        at_ms: now_ms(),
    };
    let job = template.service.name.clone();
    store.update(|d| d.jobs.insert(job, record)).await.map(|_| ())
}
