//! Getting an image onto the host that runs it, the first time the host needs it and only if it
//! lacks that image ID:
//! - an image with a registry digest (pulled from a registry, or pushed to one) is pulled by the
//!   host itself, by digest, from that registry (so it gets exactly the image planned);
//! - an image that exists only locally (built or loaded, never pushed) is shipped: streamed engine
//!   to engine (a `docker save` piped into a `docker load`), over the host's SSH connection for an
//!   [`SshHost`](crate::SshHost).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

use super::Member;
use crate::backend::{images_of, shipping_of, Backend};
use crate::error::{Error, Result};

/// A host name and an image ID.
type HostImage = (String, String);

/// One lock per (host, image), so concurrent creates ship an image once.
#[derive(Debug, Default)]
pub(super) struct Shipments {
    locks: Mutex<HashMap<HostImage, Arc<Mutex<()>>>>,
    /// How many images were shipped, for reports and tests.
    pub shipped: std::sync::atomic::AtomicU64,
    /// How many images hosts pulled from a registry themselves.
    pub pulled: std::sync::atomic::AtomicU64,
}

impl Shipments {
    /// Makes sure `host` has `image_id`: pulled by the host from its registry when `pin`
    /// (`name@sha256:…`) says where, else shipped from `source`, or from `fallback` (the primary,
    /// which keeps the images of the revisions a rollback may need) when the source lacks it.
    pub(super) async fn ensure(
        &self,
        source: Option<&Arc<dyn Backend>>,
        fallback: Option<&Member>,
        host: &Member,
        image_id: &str,
        pin: Option<&str>,
    ) -> Result<()> {
        let lock = {
            let mut locks = self.locks.lock().await;
            locks.entry((host.name.clone(), image_id.to_string())).or_default().clone()
        };
        let _held = lock.lock().await;
        if images_of(&*host.backend)?.image_id(image_id).await?.is_some() {
            return Ok(());
        }
        if let Some(pin) = pin {
            let started = std::time::Instant::now();
            match images_of(&*host.backend)?.pull_image(pin, &|_| {}).await {
                Ok(info) if info.id == image_id => {
                    self.pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(host = %host.name, image = %pin, took = ?started.elapsed(), "image pulled by the host");
                    return Ok(());
                }
                Ok(info) => {
                    tracing::warn!(host = %host.name, image = %pin, got = %info.id, "the host pulled another image; shipping")
                }
                Err(e) => {
                    tracing::warn!(host = %host.name, image = %pin, error = %e, "the host could not pull; shipping")
                }
            }
        }
        let source = match (source, fallback) {
            (Some(s), Some(f)) if images_of(&**s)?.image_id(image_id).await?.is_none() && f.name != host.name => {
                if images_of(&*f.backend)?.image_id(image_id).await?.is_some() {
                    Some(&f.backend)
                } else {
                    Some(s)
                }
            }
            (None, Some(f)) if f.name != host.name && images_of(&*f.backend)?.image_id(image_id).await?.is_some() => {
                Some(&f.backend)
            }
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
        shipping_of(&*host.backend)?.load_image(shipping_of(&**source)?.export_image(image_id)).await?;
        if images_of(&*host.backend)?.image_id(image_id).await?.is_none() {
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
