//! Images: look-up by reference, and builds through the engine's build API (an unchanged context
//! is not sent again: see `context.rs`).

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures::StreamExt;

use super::{context, engine_error, engine_message, DockerBackend};
use crate::error::{Error, Result};
use crate::model::{Build, BuildOptions};

/// Longest an image build may take.
const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);

pub(super) async fn image_id(d: &DockerBackend, reference: &str) -> Result<Option<String>> {
    Ok(super::pull::info(d, reference).await?.map(|i| i.id))
}

/// The context's files (`.dockerignore` applied) and their fingerprint, read in a blocking task.
async fn context(d: &DockerBackend, build: &Build, tag: &str) -> Result<(Vec<context::Entry>, String)> {
    let dir = build.context.clone();
    let fail = |m: String| Error::ImageBuild { tag: tag.to_string(), message: m, log: Vec::new() };
    if !dir.is_dir() {
        return Err(fail(format!("build context {} is not a directory", dir.display())));
    }
    if build.options.dockerfile_inline.is_none() && !dir.join(&build.dockerfile).is_file() {
        return Err(fail(format!("{} not found in build context {}", build.dockerfile, dir.display())));
    }
    let options = serde_json::to_string(&build.options).unwrap_or_default();
    let salt = format!("{}|{}|{tag}|{:?}|{options}", d.endpoint, build.dockerfile, build.args);
    let dockerfile = build.dockerfile.clone();
    tokio::task::spawn_blocking(move || {
        let entries = context::walk(&dir, &[dockerfile.as_str(), ".dockerignore"])
            .map_err(|e| format!("reading build context {}: {e}", dir.display()))?;
        let fingerprint = context::fingerprint(&entries, &salt);
        Ok::<_, String>((entries, fingerprint))
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(fail)
}

/// Where the fingerprint of the last build of a context for a tag on an engine is kept, on this
/// machine: `$XDG_CACHE_HOME/harbormaster/builds` (default `~/.cache/…`).
fn cache_file(d: &DockerBackend, build: &Build, tag: &str) -> Option<std::path::PathBuf> {
    use sha2::Digest;
    let base =
        std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(std::path::PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| std::path::PathBuf::from(h).join(".cache"))
        })?;
    let key = format!("{}|{}|{}|{tag}", d.endpoint, build.context.display(), build.dockerfile);
    let name: String = sha2::Sha256::digest(key.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
    Some(base.join("harbormaster").join("builds").join(format!("{name}.json")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    fingerprint: String,
    image_id: String,
}

/// Builds `build` as `tag`, unless its context, Dockerfile, arguments and tag are unchanged since
/// the last build on this engine and the engine still has that image under the tag: then the
/// context is not even packed.
pub(super) async fn build(d: &DockerBackend, build: &Build, tag: &str) -> Result<String> {
    let (entries, fingerprint) = context(d, build, tag).await?;
    // A build asked to skip the layer cache or to pull its base images runs every time.
    let cache = cache_file(d, build, tag).filter(|_| !build.options.no_cache && !build.options.pull);
    if let Some(file) = &cache {
        let cached = tokio::fs::read(file).await.ok().and_then(|b| serde_json::from_slice::<Cached>(&b).ok());
        if let Some(c) = cached.filter(|c| c.fingerprint == fingerprint) {
            if image_id(d, tag).await?.as_deref() == Some(c.image_id.as_str()) {
                tracing::debug!(tag, "build context unchanged; image reused");
                return Ok(c.image_id);
            }
        }
    }
    let fail = |m: String| Error::ImageBuild { tag: tag.to_string(), message: m, log: Vec::new() };
    let inline = build.options.dockerfile_inline.clone();
    let tar = tokio::task::spawn_blocking(move || context::pack(&entries, inline.as_deref().map(|t| (INLINE, t))))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("packing the context: {e}")))?;
    let dockerfile = if build.options.dockerfile_inline.is_some() { INLINE } else { build.dockerfile.as_str() };
    let id = build_with(d, tar, dockerfile, build.args.clone().into_iter().collect(), &build.options, tag).await?;
    for extra in &build.options.extra_tags {
        self::tag(d, &id, extra).await?;
    }
    if let Some(file) = cache {
        let record = serde_json::to_vec(&Cached { fingerprint, image_id: id.clone() }).unwrap_or_default();
        let written = async {
            if let Some(dir) = file.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            tokio::fs::write(&tmp, record).await?;
            tokio::fs::rename(&tmp, &file).await
        };
        if let Err(e) = written.await {
            tracing::debug!(tag, error = %e, "build fingerprint not kept; the next build sends the context again");
        }
    }
    Ok(id)
}

/// The name an inline Dockerfile gets in the context sent to the engine.
const INLINE: &str = ".harbormaster.inline.Dockerfile";

/// Builds from an in-memory context holding a `Dockerfile`.
pub(super) async fn build_tar(d: &DockerBackend, tar: Vec<u8>, tag: &str) -> Result<String> {
    build_with(d, tar, "Dockerfile", HashMap::new(), &BuildOptions::default(), tag).await
}

async fn build_with(
    d: &DockerBackend,
    tar: Vec<u8>,
    dockerfile: &str,
    args: HashMap<String, String>,
    o: &BuildOptions,
    tag: &str,
) -> Result<String> {
    let mut options = BuildImageOptionsBuilder::new()
        .dockerfile(dockerfile)
        .t(tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&args)
        .nocache(o.no_cache)
        .build();
    options.target = o.target.clone().unwrap_or_default();
    options.networkmode = o.network.clone();
    options.extrahosts = (!o.extra_hosts.is_empty())
        .then(|| o.extra_hosts.iter().map(|(h, a)| format!("{h}:{a}")).collect::<Vec<_>>().join(","));
    options.shmsize = o.shm_size.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
    options.labels = (!o.labels.is_empty()).then(|| o.labels.clone().into_iter().collect());
    options.cachefrom = (!o.cache_from.is_empty()).then(|| o.cache_from.clone());
    options.pull = o.pull.then(|| "true".to_string());
    let run = async {
        let mut log: Vec<String> = Vec::new();
        let mut id = None;
        let mut stream = d.docker.build_image(options, None, Some(bollard::body_full(Bytes::from(tar))));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| Error::ImageBuild {
                tag: tag.to_string(),
                message: engine_message(&e),
                log: last(&log),
            })?;
            if let Some(line) = info.stream.as_deref() {
                log.extend(line.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
            }
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_else(|| "build failed".to_string());
                return Err(Error::ImageBuild { tag: tag.to_string(), message, log: last(&log) });
            }
            if let Some(img) = info.aux {
                id = img.id.or(id);
            }
        }
        tracing::debug!(tag, "image built");
        match id {
            Some(id) => Ok(id),
            None => image_id(d, tag).await?.ok_or_else(|| Error::ImageBuild {
                tag: tag.to_string(),
                message: "the engine reported no image".into(),
                log: last(&log),
            }),
        }
    };
    match tokio::time::timeout(BUILD_DEADLINE, run).await {
        Ok(r) => r,
        Err(_) => Err(Error::ImageBuild {
            tag: tag.to_string(),
            message: format!("not finished within {BUILD_DEADLINE:?}"),
            log: Vec::new(),
        }),
    }
}

fn last(log: &[String]) -> Vec<String> {
    log[log.len().saturating_sub(20)..].to_vec()
}

/// Gives image `id` the reference `name[:tag]` (a digest reference cannot be given: it is left).
pub(super) async fn tag(d: &DockerBackend, id: &str, reference: &str) -> Result<()> {
    if reference.contains('@') {
        return Ok(());
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    };
    let options = bollard::query_parameters::TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
    d.call("tag image", reference, d.docker.tag_image(id, Some(options))).await
}

/// Longest an image transfer (export or load) may take.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The image as a `docker save` archive, streamed.
pub(super) fn export(d: &DockerBackend, image_id: &str) -> futures::stream::BoxStream<'static, Result<Bytes>> {
    let id = image_id.to_string();
    let docker = d.docker.clone();
    let stream = docker.export_image(&id).map(move |r| r.map_err(|e| engine_error("export image", &id, &e)));
    Box::pin(stream)
}

/// Loads a `docker save` archive, streamed from `archive`.
pub(super) async fn load(d: &DockerBackend, archive: futures::stream::BoxStream<'static, Result<Bytes>>) -> Result<()> {
    let options = bollard::query_parameters::ImportImageOptionsBuilder::new().quiet(true).build();
    let body = archive.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    let load = async {
        let mut progress = d.docker.import_image_stream(options, body, None);
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| engine_error("load image", "archive", &e))?;
            if let Some(err) = info.error_detail.and_then(|e| e.message) {
                return Err(Error::backend("load image", "archive", err));
            }
        }
        Ok(())
    };
    tokio::time::timeout(TRANSFER_DEADLINE, load)
        .await
        .map_err(|_| Error::backend("load image", "archive", format!("not loaded within {TRANSFER_DEADLINE:?}")))?
}
