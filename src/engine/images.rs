//! Where each service's image comes from, before anything is planned: present on the target,
//! restored from the state store's kept copy, pulled from its registry (per the service's
//! [`PullPolicy`]), or built (and pushed when the build asks).
//!
//! A plan never pulls: for an image it would pull, it asks the registry for the digest the tag
//! points to, and says so. An apply pulls each reference once, however many services use it,
//! and pulls distinct references concurrently. What an image resolved to (its ID and, when it
//! came from or went to a registry, its digest) goes into the [`Template`](crate::plan::spec::Template), hence into the plan
//! and the revision.

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;
use tokio::time::Instant;
use tracing::Instrument;

use crate::backend::{Backend, ImageInfo, ImageStore, Instance, Scope};
use crate::error::{Error, Result};
use crate::events::{EventKind, EventSink};
use crate::model::{Environment, ImageSource, PullPolicy, Service, ServiceKind};
use crate::plan::{ImageAction, ImagePlan};
use crate::registry::ImageRef;
use crate::state::{jobs, revisions, Store};

/// Whether resolving may change the target (pull, build, push) or only look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// For a plan: nothing is pulled or pushed.
    Plan,
    /// For an apply.
    Apply,
}

/// What an image resolved to.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    /// The image ID; for an image a plan would pull, its registry digest stands in.
    pub id: String,
    /// `name@sha256:…`, when the image has a registry digest.
    pub pin: Option<String>,
}

/// A registry error naming the services that need its image.
fn needed_by(mut e: Error, names: &[String]) -> Error {
    if let Error::Registry { services, .. } = &mut e {
        *services = names.to_vec();
    }
    e
}

/// Resolves every service's image. Returns each service's image and what happens to each image.
pub(crate) async fn resolve(
    env: &Environment,
    backend: &dyn Backend,
    scope: &Scope,
    store: Option<&Store<'_>>,
    sink: &EventSink,
    mode: Mode,
) -> Result<(HashMap<String, Resolved>, Vec<ImagePlan>)> {
    let Some(images) = backend.images() else { return by_reference(env, backend, sink, mode).await };
    // References, each with the services using it and the strongest policy among them.
    let mut references: BTreeMap<&str, (Vec<&Service>, PullPolicy)> = BTreeMap::new();
    for svc in &env.services {
        if let ImageSource::Reference(r) = &svc.image {
            let entry = references.entry(r.as_str()).or_insert((Vec::new(), PullPolicy::Never));
            entry.0.push(svc);
            entry.1 = stronger(entry.1, svc.pull);
        }
    }
    let resolving = references.iter().map(|(reference, (services, policy))| {
        let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
        let span = tracing::info_span!("image", image = %reference, services = %names.join(","));
        async move {
            let r = reference_image(backend, images, scope, store, sink, mode, reference, services, *policy).await;
            (*reference, names, r)
        }
        .instrument(span)
    });
    let mut out = HashMap::new();
    let mut plans = Vec::new();
    for (reference, names, r) in join_all(resolving).await {
        let (resolved, plan) = r.map_err(|e| needed_by(e, &names))?;
        for n in &names {
            out.insert(n.clone(), resolved.clone());
        }
        plans.push(ImagePlan { reference: reference.to_string(), services: names, ..plan });
    }
    let mut built: HashMap<String, Resolved> = HashMap::new();
    for svc in &env.services {
        let ImageSource::Build(b) = &svc.image else { continue };
        let tag = b.tag.clone().unwrap_or_else(|| format!("harbormaster/{}-{}:latest", env.project, svc.name));
        let key = format!("{}|{}|{tag}|{:?}", b.context.display(), b.dockerfile, b.args);
        if let Some(r) = built.get(&key) {
            out.insert(svc.name.clone(), r.clone());
            if let Some(p) = plans.iter_mut().find(|p| p.action == ImageAction::Built && p.reference == tag) {
                p.services.push(svc.name.clone());
            }
            continue;
        }
        let id = images.build_image(b, &tag).await?;
        sink.emit(EventKind::ImageBuilt { service: svc.name.clone(), tag: tag.clone(), image_id: id.clone() });
        let mut pin = None;
        if b.push && mode == Mode::Apply {
            let digest =
                images.push_image(&tag, &|_| {}).await.map_err(|e| needed_by(e, std::slice::from_ref(&svc.name)))?;
            sink.emit(EventKind::ImagePushed { reference: tag.clone(), digest: digest.clone() });
            pin = ImageRef::parse(&tag).map(|r| r.pinned(&digest));
        }
        let r = Resolved { id: id.clone(), pin };
        plans.push(ImagePlan {
            reference: tag,
            services: vec![svc.name.clone()],
            image_id: Some(id),
            digest: None,
            action: ImageAction::Built,
        });
        built.insert(key, r.clone());
        out.insert(svc.name.clone(), r);
    }
    Ok((out, plans))
}

/// For a target without an image store: every image goes by its reference, which the target
/// pulls itself (pinned when the reference carries a digest). A build needs the target's
/// [`image_builder`](Backend::image_builder): it is built there and, in an apply, pushed to the
/// registry its tag names; the target then pulls it by digest.
async fn by_reference(
    env: &Environment,
    backend: &dyn Backend,
    sink: &EventSink,
    mode: Mode,
) -> Result<(HashMap<String, Resolved>, Vec<ImagePlan>)> {
    let mut out = HashMap::new();
    let mut plans: Vec<ImagePlan> = Vec::new();
    for svc in &env.services {
        let reference = match &svc.image {
            ImageSource::Reference(r) => r,
            ImageSource::Build(b) => {
                let (resolved, plan) = build_for_target(backend, svc, b, sink, mode).await?;
                out.insert(svc.name.clone(), resolved);
                plans.push(plan);
                continue;
            }
        };
        let pin = ImageRef::parse(reference).and_then(|r| r.digest.as_ref().map(|d| r.pinned(d)));
        out.insert(svc.name.clone(), Resolved { id: reference.clone(), pin });
        match plans.iter_mut().find(|p| &p.reference == reference) {
            Some(p) => p.services.push(svc.name.clone()),
            None => plans.push(ImagePlan {
                reference: reference.clone(),
                services: vec![svc.name.clone()],
                image_id: None,
                digest: ImageRef::parse(reference).and_then(|r| r.digest),
                action: ImageAction::ByTarget,
            }),
        }
    }
    Ok((out, plans))
}

/// Builds `svc`'s image with the target's image builder and, in an apply, pushes it to the
/// registry its tag names: the target pulls it by that digest.
async fn build_for_target(
    backend: &dyn Backend,
    svc: &Service,
    b: &crate::model::Build,
    sink: &EventSink,
    mode: Mode,
) -> Result<(Resolved, ImagePlan)> {
    let refuse =
        |reason: &str| Error::unsupported(backend.describe(), format!("build the image of `{}`", svc.name), reason);
    let Some(builder) = backend.image_builder() else {
        return Err(refuse(
            "it has no image store; build and push the image to a registry (Build::push on a Docker backend) and \
             give the service its reference, or give the target an image builder",
        ));
    };
    let Some(tag) = b.tag.clone().filter(|t| ImageRef::parse(t).is_some()) else {
        return Err(refuse(
            "the target pulls images from a registry: tag the build with a reference in one \
             (Build::tag(\"registry.example.com/shop/api:2\"))",
        ));
    };
    let id = builder.build_image(b, &tag).await?;
    sink.emit(EventKind::ImageBuilt { service: svc.name.clone(), tag: tag.clone(), image_id: id.clone() });
    let mut pin = None;
    let mut digest = None;
    if mode == Mode::Apply {
        let d = builder.push_image(&tag, &|_| {}).await?;
        sink.emit(EventKind::ImagePushed { reference: tag.clone(), digest: d.clone() });
        pin = ImageRef::parse(&tag).map(|r| r.pinned(&d));
        digest = Some(d);
    }
    let plan = ImagePlan {
        reference: tag,
        services: vec![svc.name.clone()],
        image_id: Some(id.clone()),
        digest,
        action: ImageAction::Built,
    };
    Ok((Resolved { id, pin }, plan))
}

fn stronger(a: PullPolicy, b: PullPolicy) -> PullPolicy {
    let rank = |p| match p {
        PullPolicy::Never => 0,
        PullPolicy::IfMissing => 1,
        PullPolicy::Always => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// The pinned reference of `reference` among an image's repo digests, and the digest.
fn pin_of(reference: &str, info: &ImageInfo) -> (Option<String>, Option<String>) {
    let Some(r) = ImageRef::parse(reference) else { return (None, None) };
    if let Some(d) = &r.digest {
        return (Some(r.pinned(d)), Some(d.clone()));
    }
    match r.digest_among(&info.repo_digests) {
        Some(d) => (Some(r.pinned(d)), Some(d.to_string())),
        None => (None, None),
    }
}

#[allow(clippy::too_many_arguments)]
async fn reference_image(
    backend: &dyn Backend,
    images: &dyn ImageStore,
    scope: &Scope,
    store: Option<&Store<'_>>,
    sink: &EventSink,
    mode: Mode,
    reference: &str,
    services: &[&Service],
    policy: PullPolicy,
) -> Result<(Resolved, ImagePlan)> {
    let plan = |id: Option<&str>, digest: Option<String>, action| ImagePlan {
        reference: String::new(),
        services: Vec::new(),
        image_id: id.map(str::to_string),
        digest,
        action,
    };
    let local = images.image_info(reference).await?;
    if let Some(info) = &local {
        if policy != PullPolicy::Always {
            let (pin, digest) = pin_of(reference, info);
            return Ok((Resolved { id: info.id.clone(), pin }, plan(Some(&info.id), digest, ImageAction::Present)));
        }
    } else if policy != PullPolicy::Always {
        // A prune may have removed the tag (or the image) the services run: what they last ran
        // under this reference comes back without a pull.
        for svc in services {
            if let Some(id) = recorded_image(backend, images, scope, store, svc, reference).await? {
                let (pin, digest) = match images.image_info(&id).await? {
                    Some(info) => pin_of(reference, &info),
                    None => (None, None),
                };
                return Ok((Resolved { id: id.clone(), pin }, plan(Some(&id), digest, ImageAction::Restored)));
            }
        }
        if policy == PullPolicy::Never {
            let svc = services.first().map(|s| s.name.clone()).unwrap_or_default();
            return Err(Error::ImageNotFound {
                service: svc,
                reference: reference.to_string(),
                backend: backend.describe(),
            });
        }
    }
    let had = local.as_ref().and_then(|i| pin_of(reference, i).1);
    if mode == Mode::Plan {
        let Some(digest) = images.registry_digest(reference).await? else {
            // The target cannot ask its registry: the plan takes the copy it has, or says it pulls.
            return Ok(match &local {
                Some(info) => {
                    (Resolved { id: info.id.clone(), pin: None }, plan(Some(&info.id), had, ImageAction::Present))
                }
                None => (Resolved { id: format!("pull:{reference}"), pin: None }, plan(None, None, ImageAction::Pull)),
            });
        };
        let pin = ImageRef::parse(reference).map(|r| r.pinned(&digest));
        return Ok(match &local {
            Some(info) if had.as_deref() == Some(digest.as_str()) => {
                (Resolved { id: info.id.clone(), pin }, plan(Some(&info.id), Some(digest), ImageAction::Present))
            }
            Some(_) => {
                (Resolved { id: digest.clone(), pin }, plan(None, Some(digest), ImageAction::TagMoved { from: had }))
            }
            None => (Resolved { id: digest.clone(), pin }, plan(None, Some(digest), ImageAction::Pull)),
        });
    }
    let names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    let started = Instant::now();
    let progress = |p| {
        sink.emit(EventKind::ImagePulling { reference: reference.to_string(), services: names.clone(), progress: p })
    };
    let info = images.pull_image(reference, &progress).await?;
    let (pin, digest) = pin_of(reference, &info);
    let replaced = had.filter(|h| digest.as_ref() != Some(h));
    let action = match (&local, &replaced) {
        (None, _) => ImageAction::Pull,
        (Some(_), Some(from)) => ImageAction::TagMoved { from: Some(from.clone()) },
        (Some(_), None) => ImageAction::Present,
    };
    sink.emit(EventKind::ImagePulled {
        reference: reference.to_string(),
        services: names,
        image_id: info.id.clone(),
        digest: digest.clone(),
        replaced,
        took: started.elapsed(),
    });
    Ok((Resolved { id: info.id.clone(), pin }, plan(Some(&info.id), digest, action)))
}

/// The image a service (or job) last ran under `reference`, as the state store recorded it
/// (restored from the kept copy if the image itself was removed too), or as its running instances
/// show it; `None` if neither knows.
async fn recorded_image(
    backend: &dyn Backend,
    images: &dyn ImageStore,
    scope: &Scope,
    store: Option<&Store<'_>>,
    svc: &Service,
    reference: &str,
) -> Result<Option<String>> {
    let recorded = match store {
        Some(store) => match svc.kind {
            ServiceKind::Job => jobs::image_of_reference(store, &svc.name, reference).await,
            ServiceKind::Service => revisions::image_of_reference(store, &svc.name, reference).await,
        },
        None => None,
    };
    if let Some(id) = recorded {
        // A job that completed with it needs no image to stay completed; a service needs it back.
        if svc.kind == ServiceKind::Job || images.restore_image(scope, &id, Some(reference)).await? {
            return Ok(Some(id));
        }
    }
    // Instances made from this reference run its image (the records may be lost; the image is
    // not, while a container uses it).
    let made_from = |i: &Instance| {
        let spec: Option<serde_json::Value> = i.spec_json.as_deref().and_then(|j| serde_json::from_str(j).ok());
        spec.is_some_and(|s| s["image"]["reference"].as_str() == Some(reference))
    };
    let running = backend.list_instances(scope).await?;
    if let Some(i) = running.iter().find(|i| i.service == svc.name && i.is_running() && made_from(i)) {
        if images.restore_image(scope, &i.image_id, Some(reference)).await? {
            return Ok(Some(i.image_id.clone()));
        }
    }
    Ok(None)
}
