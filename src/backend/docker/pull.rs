//! Images from registries: pull (with progress, a deadline and stall detection, one transfer per
//! reference at a time), push, and asking a registry what a tag points to without pulling.
//!
//! Credentials come from the backend's [`Registries`](crate::registry) (given per registry, then
//! `~/.docker/config.json`); they travel only in the `X-Registry-Auth` header, which nothing logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::{engine_error, engine_message, is_not_found, DockerBackend};
use crate::backend::ImageInfo;
use crate::error::{Error, RegistryErrorKind, Result};
use crate::registry::{failure, Credential, Found, ImageRef, PullProgress, Tally};

/// How often progress is reported at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The last pull of one reference, and when it finished; locked while a pull runs.
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, ImageInfo)>>>;

/// One transfer per reference at a time: a caller that waited for another's pull of the same
/// reference takes its result instead of pulling again.
#[derive(Debug, Default)]
pub(crate) struct Pulls {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Pulls {
    fn slot(&self, reference: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(reference.to_string()).or_default().clone()
    }
}

/// How a pull is bounded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PullLimits {
    /// Longest a whole pull may take.
    pub deadline: Duration,
    /// Longest the engine may report no progress.
    pub stall: Duration,
}

impl Default for PullLimits {
    fn default() -> Self {
        PullLimits { deadline: Duration::from_secs(30 * 60), stall: Duration::from_secs(60) }
    }
}

/// The server address credentials are given for (Docker Hub's is a URL, as the CLI sends it).
fn server_of(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_string()
    }
}

/// The credentials found for the image's registry, and their engine form.
pub(super) async fn credentials_for(
    d: &DockerBackend,
    image: &ImageRef,
) -> (Option<Found>, Option<bollard::auth::DockerCredentials>) {
    let found = d.registries.find(&image.registry).await;
    let engine = found.as_ref().map(|f| engine_form(f.auth.credential(), &server_of(&image.registry)));
    (found, engine)
}

/// The engine's form of a credential (`X-Registry-Auth`) for `server`.
fn engine_form(credential: Credential<'_>, server: &str) -> bollard::auth::DockerCredentials {
    match credential {
        Credential::Basic { username, password } => bollard::auth::DockerCredentials {
            username: Some(username.to_string()),
            password: Some(password.to_string()),
            serveraddress: Some(server.to_string()),
            ..Default::default()
        },
        Credential::IdentityToken(token) => bollard::auth::DockerCredentials {
            identitytoken: Some(token.to_string()),
            serveraddress: Some(server.to_string()),
            ..Default::default()
        },
    }
}

fn parse(reference: &str, operation: &'static str) -> Result<ImageRef> {
    ImageRef::parse(reference).ok_or_else(|| Error::Registry {
        operation,
        reference: reference.to_string(),
        services: Vec::new(),
        registry: "?".into(),
        kind: RegistryErrorKind::Other,
        credentials: "none".into(),
        message: "not a valid image reference".into(),
    })
}

struct Failing<'a> {
    operation: &'static str,
    reference: &'a str,
    image: &'a ImageRef,
    found: &'a Option<Found>,
}

impl Failing<'_> {
    fn error(&self, kind: RegistryErrorKind, message: impl Into<String>) -> Error {
        Error::Registry {
            operation: self.operation,
            reference: self.reference.to_string(),
            services: Vec::new(),
            registry: self.image.registry.clone(),
            kind,
            credentials: self.found.as_ref().map_or_else(|| "none".into(), Found::describe),
            message: crate::scrub::text(&message.into()).into_owned(),
        }
    }

    fn engine(&self, e: &bollard::errors::Error) -> Error {
        let message = match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
            bollard::errors::Error::DockerStreamError { error } => error.clone(),
            other => engine_message(other),
        };
        self.error(failure::classify(&message), message)
    }
}

/// What the engine knows of a local image.
pub(super) async fn info(d: &DockerBackend, reference: &str) -> Result<Option<ImageInfo>> {
    match tokio::time::timeout(d.call_timeout, d.docker.inspect_image(reference)).await {
        Ok(Ok(img)) => Ok(img.id.map(|id| ImageInfo {
            id,
            repo_digests: img.repo_digests.unwrap_or_default(),
            os: img.os.unwrap_or_default(),
            architecture: img.architecture.unwrap_or_default(),
        })),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(e)) => Err(engine_error("inspect image", reference, &e)),
        Err(_) => Err(Error::backend("inspect image", reference, "no answer in time")),
    }
}

/// Pulls `reference`, reporting progress at most every 200 ms, and returns the image as the
/// engine then has it.
pub(super) async fn pull(
    d: &DockerBackend,
    reference: &str,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<ImageInfo> {
    let image = parse(reference, "pull")?;
    let slot = d.pulls.slot(reference);
    let asked = Instant::now();
    let mut last = slot.lock().await;
    if let Some((at, info)) = last.as_ref() {
        if *at >= asked {
            tracing::debug!(image = %reference, "pulled by a concurrent caller");
            return Ok(info.clone());
        }
    }
    let (found, credentials) = credentials_for(d, &image).await;
    let failing = Failing { operation: "pull", reference, image: &image, found: &found };
    let tag = image.digest.clone().unwrap_or_else(|| image.tag_or_latest().to_string());
    let options =
        bollard::query_parameters::CreateImageOptionsBuilder::new().from_image(image.name()).tag(&tag).build();
    let started = Instant::now();
    let deadline = crate::clock::after(started, d.pull_limits.deadline);
    let mut stream = d.docker.create_image(Some(options), None, credentials);
    let mut tally = Tally::default();
    let mut reported = started;
    loop {
        let now = Instant::now();
        if deadline <= now {
            return Err(failing.error(
                RegistryErrorKind::TimedOut,
                format!(
                    "not pulled within {} ({})",
                    crate::duration::human(d.pull_limits.deadline),
                    describe(tally.progress())
                ),
            ));
        }
        let wait = (deadline - now).min(d.pull_limits.stall);
        let item = match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) if deadline <= Instant::now() => continue,
            Err(_) => {
                return Err(failing.error(
                    RegistryErrorKind::Stalled,
                    format!(
                        "no progress for {} ({}); the pull was cancelled",
                        crate::duration::human(d.pull_limits.stall),
                        describe(tally.progress())
                    ),
                ))
            }
        };
        let info = item.map_err(|e| failing.engine(&e))?;
        if let Some(message) = info.error_detail.and_then(|e| e.message) {
            return Err(failing.error(failure::classify(&message), message));
        }
        let detail = info.progress_detail.unwrap_or_default();
        let moved = tally.take(info.id.as_deref(), info.status.as_deref().unwrap_or(""), detail.current, detail.total);
        if moved && reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            progress(tally.progress());
        }
    }
    progress(tally.progress());
    let pulled_as = match &image.digest {
        Some(d) => image.pinned(d),
        None => format!("{}:{tag}", image.name()),
    };
    let info = super::quiet(info(d, &pulled_as)).await?.ok_or_else(|| {
        failing.error(RegistryErrorKind::Other, "the engine reported the pull done but has no such image")
    })?;
    tracing::info!(image = %reference, id = %info.id, took = ?started.elapsed(), "image pulled");
    *last = Some((Instant::now(), info.clone()));
    Ok(info)
}

fn describe(p: PullProgress) -> String {
    format!("{} of {} bytes, {}/{} layers", p.done, p.total, p.layers_done, p.layers)
}

/// The digest `reference` has in its registry now (the manifest or index digest), without pulling.
pub(super) async fn registry_digest(d: &DockerBackend, reference: &str) -> Result<String> {
    let image = parse(reference, "inspect")?;
    let (found, credentials) = credentials_for(d, &image).await;
    let failing = Failing { operation: "inspect", reference, image: &image, found: &found };
    let asked = match &image.digest {
        Some(_) => reference.to_string(),
        None => format!("{}:{}", image.name(), image.tag_or_latest()),
    };
    match tokio::time::timeout(d.call_timeout, d.docker.inspect_registry_image(&asked, credentials)).await {
        Ok(Ok(inspect)) => inspect
            .descriptor
            .digest
            .ok_or_else(|| failing.error(RegistryErrorKind::Other, "the registry gave no digest")),
        Ok(Err(e)) => Err(failing.engine(&e)),
        Err(_) => Err(failing.error(
            RegistryErrorKind::Unreachable,
            format!("no answer within {}", crate::duration::human(d.call_timeout)),
        )),
    }
}

/// Pushes the local image `reference` to its registry; the digest it has there.
pub(super) async fn push(
    d: &DockerBackend,
    reference: &str,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<String> {
    let image = parse(reference, "push")?;
    let (found, credentials) = credentials_for(d, &image).await;
    let failing = Failing { operation: "push", reference, image: &image, found: &found };
    if image.digest.is_some() {
        return Err(
            failing.error(RegistryErrorKind::Other, "a reference pinned to a digest cannot be pushed; push a tag")
        );
    }
    let tag = image.tag_or_latest().to_string();
    let options = bollard::query_parameters::PushImageOptionsBuilder::new().tag(&tag).build();
    let mut stream = d.docker.push_image(image.name(), Some(options), credentials);
    let started = Instant::now();
    let deadline = crate::clock::after(started, d.pull_limits.deadline);
    let mut pushed = PullProgress::default();
    let mut digest = None;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now()).min(d.pull_limits.stall);
        let item = match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                return Err(failing.error(
                    RegistryErrorKind::Stalled,
                    format!("no progress for {}; the push was cancelled", crate::duration::human(wait)),
                ))
            }
        };
        let info = item.map_err(|e| failing.engine(&e))?;
        if let Some(message) = info.error_detail.and_then(|e| e.message) {
            return Err(failing.error(failure::classify(&message), message));
        }
        let status = info.status.unwrap_or_default();
        // `2: digest: sha256:… size: 528`
        if let Some(rest) = status.split("digest: ").nth(1) {
            digest = rest.split_whitespace().next().map(str::to_string);
        }
        if status == "Pushed" || status == "Layer already exists" {
            pushed.layers_done = pushed.layers_done.saturating_add(1);
            pushed.layers = pushed.layers_done;
            progress(pushed);
        }
    }
    let digest =
        digest.ok_or_else(|| failing.error(RegistryErrorKind::Other, "the engine did not say the pushed digest"))?;
    tracing::info!(image = %reference, %digest, took = ?started.elapsed(), "image pushed");
    Ok(digest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hub_credentials_go_to_its_v1_address() {
        assert_eq!(super::server_of("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(super::server_of("127.0.0.1:5055"), "127.0.0.1:5055");
    }
}
