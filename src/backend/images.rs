//! Optional capabilities for images: a local image store that builds, pulls, pushes and keeps
//! copies ([`ImageStore`]), and shipping images between engines ([`ImageShipping`]).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::Scope;
use crate::error::Result;
use crate::model::Build;
use crate::registry::PullProgress;

/// What a target knows of one of its images.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image ID (`sha256:…` of its configuration; the same on every engine that has it).
    pub id: String,
    /// `name@sha256:…` for every repository it was pulled from or pushed to.
    pub repo_digests: Vec<String>,
    /// Its OS (`linux`), if known.
    pub os: String,
    /// Its architecture (`amd64`), if known.
    pub architecture: String,
}

/// A target that keeps images itself (a Docker engine): the engine resolves every service's
/// image through it (present, restored, pulled, built, pushed) and pins what runs to an image
/// ID. A target without one (a cloud API, a cluster that pulls on its nodes) is handed the
/// image reference as written and resolves it itself.
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// The ID of a local image reference, or `None` if the target does not have it.
    async fn image_id(&self, reference: &str) -> Result<Option<String>>;

    /// What the target knows of a local image (by reference or ID): its ID and the registry
    /// digests it was pulled or pushed as; `None` if it does not have it.
    async fn image_info(&self, reference: &str) -> Result<Option<ImageInfo>>;

    /// Builds an image and tags it; returns its ID.
    async fn build_image(&self, build: &Build, tag: &str) -> Result<String>;

    /// Pulls `reference` from its registry with the target's credentials, calling `progress` as
    /// it goes, and returns the image as the target then has it. Concurrent pulls of one
    /// reference transfer it once.
    async fn pull_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<ImageInfo>;

    /// The digest `reference` has in its registry now, without pulling it; `Ok(None)` if the
    /// target cannot ask.
    async fn registry_digest(&self, reference: &str) -> Result<Option<String>>;

    /// Pushes the local image `reference` (`registry/repo:tag`) to its registry; the digest it
    /// has there.
    async fn push_image(&self, reference: &str, progress: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<String>;

    /// Keeps a copy of an image for the environment where pruning cannot remove it, so that a
    /// revision can be rolled back to after `docker system prune -a` (no registry needed).
    async fn keep_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        let _ = (scope, image_id);
        Ok(())
    }

    /// Makes sure the target has `image_id`, loading the kept copy if the image was removed;
    /// `Ok(false)` if it has neither. A restored image gets its `reference` (`name:tag`) back when
    /// that names no other image.
    async fn restore_image(&self, scope: &Scope, image_id: &str, reference: Option<&str>) -> Result<bool> {
        let _ = (scope, reference);
        Ok(self.image_id(image_id).await?.is_some())
    }

    /// Drops the kept copy of an image; a missing one is not an error.
    async fn drop_image(&self, scope: &Scope, image_id: &str) -> Result<()> {
        let _ = (scope, image_id);
        Ok(())
    }
}

/// A target whose images can be carried to another engine as `docker save` archives (how a
/// [`Fleet`](crate::Fleet) ships a locally built image to hosts that cannot pull it).
#[async_trait]
pub trait ImageShipping: Send + Sync {
    /// Streams an image out as a `docker save` archive.
    fn export_image(&self, image_id: &str) -> BoxStream<'static, Result<Bytes>>;

    /// Loads an archive as [`export_image`](Self::export_image) gives it.
    async fn load_image(&self, archive: BoxStream<'static, Result<Bytes>>) -> Result<()>;
}
