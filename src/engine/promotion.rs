//! Carrying out a manual promotion of a blue/green or canary rollout
//! ([`Rollout::manual_promotion`](crate::Rollout::manual_promotion)).
//!
//! When such a rollout reaches its gate, the new set keeps running beside the old one and the state
//! store records which version waits and at what traffic weight (`state/promotion.rs`). Every
//! later apply reads it: the same description leaves both sets as they are (and the rotation at
//! that weight); a different description discards the waiting set. [`finish`] promotes (all
//! traffic to the new set, the old one drains and goes) or aborts (the reverse), under the deploy
//! lock, and records the revision.

use std::collections::BTreeMap;

use super::deployment::Deployment;
use super::retire::retire;
use super::traffic::Traffic;
use crate::backend::{Backend, Instance};
use crate::error::{Error, Result};
use crate::events::{EventKind, EventSink, RolloutOutcome};
use crate::ingress::config::split;
use crate::model::Environment;
use crate::plan::spec::Template;
use crate::state::promotion::{clear, pending};
use crate::state::revisions::Recorder;
use crate::state::Store;

/// Promotes (`promote`) or aborts the waiting rollout of `service`.
pub(crate) async fn finish(
    env: &Environment,
    backend: &dyn Backend,
    store: &Store<'_>,
    sink: &EventSink,
    recorder: &Recorder,
    service: &str,
    promote: bool,
) -> Result<Deployment> {
    let pendings = pending(store).await;
    let no_pending = || Error::NoPendingPromotion { environment: env.qualified_name(), service: service.to_string() };
    let p = pendings.iter().find(|p| p.service == service).ok_or_else(no_pending)?;
    let svc = env
        .service(service)
        .ok_or_else(|| Error::UnknownService { environment: env.qualified_name(), service: service.to_string() })?;
    let observed = backend.list_instances(store.scope()).await?;
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
    clear(store, service).await?;

    let outcome = if promote {
        RolloutOutcome::Succeeded
    } else {
        RolloutOutcome::RolledBack { reason: "the waiting new set was aborted before its promotion".into() }
    };
    // The promoted (or aborted) version's revision, from what its instances recorded.
    if let Some(spec) = new.iter().find_map(|i| i.spec_json.as_deref()) {
        match Template::from_recorded(svc, spec, &p.image_id) {
            Ok(t) => match recorder.record(store, &t, &outcome).await {
                Ok(Some(n)) => sink.emit(EventKind::RevisionRecorded { service: service.to_string(), revision: n }),
                Ok(None) => {}
                Err(e) => tracing::warn!(service, error = %e, "could not record the revision"),
            },
            Err(e) => tracing::warn!(service, error = %e, "could not read the new set's configuration back"),
        }
    }
    sink.emit(EventKind::RolloutFinished { service: service.to_string(), outcome: outcome.clone() });
    let instances = backend.list_instances(store.scope()).await?;
    Ok(Deployment::new(env, backend.published_host(), instances, BTreeMap::from([(service.to_string(), outcome)])))
}
