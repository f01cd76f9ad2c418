//! Manual promotion of a blue/green or canary rollout
//! ([`Rollout::manual_promotion`](crate::Rollout::manual_promotion)).
//!
//! When such a rollout reaches its gate, the new set keeps running beside the old one and a
//! `promotion` record on the target says which version waits and at what traffic weight. Every
//! later apply reads it: the same description leaves both sets as they are (and the rotation at
//! that weight); a different description discards the waiting set. [`finish`] promotes (all
//! traffic to the new set, the old one drains and goes) or aborts (the reverse), under the deploy
//! lock, and records the revision.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::apply::{retire, scope_of};
use super::deployment::Deployment;
use super::events::{EventKind, EventSink, RolloutOutcome};
use super::revisions::Recorder;
use super::traffic::{split, Traffic};
use crate::backend::{Backend, Instance, NewRecord, Scope};
use crate::error::{Error, Result};
use crate::model::Environment;
use crate::plan::spec::Template;

/// The record kind of waiting promotions.
pub(crate) const KIND: &str = "promotion";

/// A rollout waiting for its promotion.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) service: String,
    pub(crate) spec_hash: String,
    pub(crate) image_id: String,
    pub(crate) weight: u8,
    record_id: String,
}

impl Pending {
    /// Whether `i` belongs to the waiting new set.
    pub(crate) fn has(&self, i: &Instance) -> bool {
        i.service == self.service && i.spec_hash == self.spec_hash && i.image_id == self.image_id
    }

    /// The service's rotation while it waits: `weight` % to the new set, the rest to the old.
    pub(crate) fn rotation(&self, running: &[Instance]) -> Vec<crate::ingress::config::Upstream> {
        let (new, old): (Vec<&Instance>, Vec<&Instance>) =
            running.iter().filter(|i| i.service == self.service && i.is_running()).partition(|i| self.has(i));
        let names = |v: &[&Instance]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        split(&names(&old), &names(&new), self.weight)
    }
}

fn record_name(scope: &Scope, service: &str) -> String {
    format!("{}-promotion-{service}", scope.qualified())
}

/// The rollouts of the environment waiting for a promotion.
pub(crate) async fn pending(backend: &dyn Backend, scope: &Scope) -> Result<Vec<Pending>> {
    Ok(backend
        .list_records(scope, KIND)
        .await?
        .into_iter()
        .filter_map(|r| {
            Some(Pending {
                service: r.data.get("service")?.clone(),
                spec_hash: r.data.get("spec_hash")?.clone(),
                image_id: r.data.get("image_id")?.clone(),
                weight: r.data.get("weight").and_then(|w| w.parse().ok()).unwrap_or(0),
                record_id: r.id,
            })
        })
        .collect())
}

/// Records that `template`'s new set waits for a promotion at `weight` %.
pub(crate) async fn begin(
    backend: &dyn Backend,
    scope: &Scope,
    template: &Template,
    weight: u8,
    actor: Option<&str>,
) -> Result<()> {
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut data = BTreeMap::from([
        ("service".to_string(), template.service.name.clone()),
        ("spec_hash".to_string(), template.spec_hash.clone()),
        ("image_id".to_string(), template.image_id.clone()),
        ("weight".to_string(), weight.to_string()),
        ("since".to_string(), since.to_string()),
    ]);
    if let Some(a) = actor {
        data.insert("actor".into(), a.to_string());
    }
    let record =
        NewRecord { name: record_name(scope, &template.service.name), kind: KIND.into(), data, pin_image: None };
    // An older record for the service (its set was discarded) gives way.
    for _ in 0..2 {
        if backend.create_record(scope, &record).await?.is_some() {
            return Ok(());
        }
        for p in pending(backend, scope).await?.into_iter().filter(|p| p.service == template.service.name) {
            backend.remove_record(&p.record_id).await?;
        }
    }
    Err(Error::backend("record promotion", &record.name, "a record of that name keeps coming back"))
}

/// Forgets a waiting promotion.
pub(crate) async fn clear(backend: &dyn Backend, p: &Pending) -> Result<()> {
    backend.remove_record(&p.record_id).await
}

/// Promotes (`promote`) or aborts the waiting rollout of `service`.
pub(crate) async fn finish(
    env: &Environment,
    backend: &dyn Backend,
    sink: &EventSink,
    recorder: &Recorder,
    service: &str,
    promote: bool,
) -> Result<Deployment> {
    let scope = scope_of(env);
    let pendings = pending(backend, &scope).await?;
    let no_pending = || Error::NoPendingPromotion { environment: env.qualified_name(), service: service.to_string() };
    let p = pendings.iter().find(|p| p.service == service).ok_or_else(no_pending)?;
    let svc = env
        .service(service)
        .ok_or_else(|| Error::UnknownService { environment: env.qualified_name(), service: service.to_string() })?;
    let observed = backend.list_instances(&scope).await?;
    let (new, old): (Vec<Instance>, Vec<Instance>) =
        observed.iter().filter(|i| i.service == service).cloned().partition(|i| p.has(i));
    if new.iter().all(|i| !i.is_running()) && promote {
        return Err(Error::backend(
            "promote",
            service,
            "no instance of the waiting new set is running; abort the promotion, then apply again",
        ));
    }
    let traffic = Traffic::new(backend, env.ingress.as_ref(), &observed, &pendings);
    let (keep, go) = if promote { (&new, &old) } else { (&old, &new) };
    let names: Vec<String> = keep.iter().filter(|i| i.is_running()).map(|i| i.name.clone()).collect();
    traffic.set(service, split(&[], &names, 100)).await?;
    sink.emit(EventKind::RotationChanged {
        service: service.to_string(),
        members: names.iter().map(|n| (n.clone(), 1)).collect(),
    });
    tokio::time::sleep(svc.rollout.drain).await;
    retire(backend, sink, service, go, svc.stop_grace).await?;
    clear(backend, p).await?;

    let outcome = if promote {
        RolloutOutcome::Succeeded
    } else {
        RolloutOutcome::RolledBack { reason: "the waiting new set was aborted before its promotion".into() }
    };
    // The promoted (or aborted) version's revision, from what its instances recorded.
    if let Some(spec) = new.iter().find_map(|i| i.spec_json.as_deref()) {
        match Template::from_recorded(svc, spec, &p.image_id) {
            Ok(t) => match recorder.record(backend, &scope, &t, &outcome).await {
                Ok(Some(n)) => sink.emit(EventKind::RevisionRecorded { service: service.to_string(), revision: n }),
                Ok(None) => {}
                Err(e) => tracing::warn!(service, error = %e, "could not record the revision"),
            },
            Err(e) => tracing::warn!(service, error = %e, "could not read the new set's configuration back"),
        }
    }
    sink.emit(EventKind::RolloutFinished { service: service.to_string(), outcome: outcome.clone() });
    let instances = backend.list_instances(&scope).await?;
    Ok(Deployment::new(env, backend.published_host(), instances, BTreeMap::from([(service.to_string(), outcome)])))
}
