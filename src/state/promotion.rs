//! Rollouts waiting for a manual promotion
//! ([`Rollout::manual_promotion`](crate::Rollout::manual_promotion)), in the state store: which
//! version of a service waits, at what traffic weight, since when. Carrying a promotion out is the
//! engine's (`engine/promotion.rs`).

use super::document::{now_ms, PromotionRecord};
use super::Store;
use crate::backend::Instance;
use crate::error::Result;
use crate::ingress::config::Upstream;
use crate::plan::spec::Template;

/// A rollout waiting for its promotion.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) service: String,
    pub(crate) spec_hash: String,
    pub(crate) image_id: String,
    pub(crate) weight: u8,
}

impl Pending {
    /// Whether `i` belongs to the waiting new set.
    pub(crate) fn has(&self, i: &Instance) -> bool {
        i.service == self.service && i.spec_hash == self.spec_hash && i.image_id == self.image_id
    }

    /// The service's rotation while it waits: `weight` % to the new set, the rest to the old.
    pub(crate) fn rotation(&self, running: &[Instance]) -> Vec<Upstream> {
        let (new, old): (Vec<&Instance>, Vec<&Instance>) =
            running.iter().filter(|i| i.service == self.service && i.is_running()).partition(|i| self.has(i));
        let names = |v: &[&Instance]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        crate::ingress::config::split(&names(&old), &names(&new), self.weight)
    }
}

/// The rollouts of the environment waiting for a promotion.
pub(crate) async fn pending(store: &Store<'_>) -> Vec<Pending> {
    store
        .read(|d| {
            d.promotions
                .iter()
                .map(|(service, p)| Pending {
                    service: service.clone(),
                    spec_hash: p.spec_hash.clone(),
                    image_id: p.image_id.clone(),
                    weight: p.weight,
                })
                .collect()
        })
        .await
}

/// Records that `template`'s new set waits for a promotion at `weight` % (replacing any older
/// waiting set of the service).
pub(crate) async fn begin(store: &Store<'_>, template: &Template, weight: u8, actor: Option<&str>) -> Result<()> {
    let record = PromotionRecord {
        spec_hash: template.spec_hash.clone(),
        image_id: template.image_id.clone(),
        weight,
        since_ms: now_ms(),
        actor: actor.map(str::to_string),
    };
    let service = template.service.name.clone();
    store.update(|d| d.promotions.insert(service, record)).await.map(|_| ())
}

/// Forgets a waiting promotion.
pub(crate) async fn clear(store: &Store<'_>, service: &str) -> Result<()> {
    store.update(|d| d.promotions.remove(service)).await.map(|_| ())
}
