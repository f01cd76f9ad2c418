//! Shipping images to hosts without a registry: an image the fleet's image source has (built
//! there, or loaded) is streamed to a host the first time the host needs it, and only if the host
//! lacks that image ID. The stream goes engine to engine (a `docker save` piped into a
//! `docker load`), over the host's SSH connection for an [`SshHost`](crate::SshHost).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::Member;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// A host name and an image ID.
type HostImage = (String, String);

/// One lock per (host, image), so concurrent creates ship an image once.
#[derive(Debug, Default)]
pub(super) struct Shipments {
    locks: Mutex<HashMap<HostImage, Arc<Mutex<()>>>>,
    /// How many images were shipped, for reports and tests.
    pub shipped: std::sync::atomic::AtomicU64,
}

impl Shipments {
    /// Makes sure `host` has `image_id`, shipping it from `source` if not, or from `fallback` (the
    /// primary, which keeps the images of the revisions a rollback may need) when the source lacks
    /// it.
    pub(super) async fn ensure(
        &self,
        source: Option<&Arc<dyn Backend>>,
        fallback: Option<&Member>,
        host: &Member,
        image_id: &str,
    ) -> Result<()> {
        let lock = {
            let mut locks = self.locks.lock().await;
            locks.entry((host.name.clone(), image_id.to_string())).or_default().clone()
        };
        let _held = lock.lock().await;
        if host.backend.image_id(image_id).await?.is_some() {
            return Ok(());
        }
        let source = match (source, fallback) {
            (Some(s), Some(f)) if s.image_id(image_id).await?.is_none() && f.name != host.name => {
                if f.backend.image_id(image_id).await?.is_some() {
                    Some(&f.backend)
                } else {
                    Some(s)
                }
            }
            (None, Some(f)) if f.name != host.name && f.backend.image_id(image_id).await?.is_some() => Some(&f.backend),
            (s, _) => s,
        };
        let Some(source) = source else {
            return Err(Error::backend(
                "ship image",
                format!("{image_id} to {}", host.name),
                "the host lacks the image and the fleet has no image source to ship it from \
                 (FleetBuilder::images_from); load it on the host, or give the fleet the engine that has it",
            ));
        };
        let started = std::time::Instant::now();
        host.backend.load_image(source.export_image(image_id)).await?;
        if host.backend.image_id(image_id).await?.is_none() {
            return Err(Error::backend(
                "ship image",
                format!("{image_id} to {}", host.name),
                "the host loaded the archive but does not have the image afterwards",
            ));
        }
        self.shipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(host = %host.name, image = %image_id, took = ?started.elapsed(), "image shipped");
        Ok(())
    }
}
