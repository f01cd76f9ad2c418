//! Images: look-up by reference and builds through the engine's build API (no registry involved).

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures::StreamExt;

use super::{engine_message, is_not_found, DockerBackend};
use crate::error::{Error, Result};
use crate::model::Build;

/// Longest an image build may take.
const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);

pub(super) async fn image_id(d: &DockerBackend, reference: &str) -> Result<Option<String>> {
    match tokio::time::timeout(d.call_timeout, d.docker.inspect_image(reference)).await {
        Ok(Ok(img)) => Ok(img.id),
        Ok(Err(e)) if is_not_found(&e) => Ok(None),
        Ok(Err(e)) => Err(Error::backend("inspect image", reference, engine_message(&e))),
        Err(_) => Err(Error::backend("inspect image", reference, "no answer in time")),
    }
}

/// Packs the context directory as a tar archive (in a blocking task: it reads files).
async fn context_tar(build: &Build, tag: &str) -> Result<Vec<u8>> {
    let dir = build.context.clone();
    let fail = |m: String| Error::ImageBuild { tag: tag.to_string(), message: m, log: Vec::new() };
    if !dir.is_dir() {
        return Err(fail(format!("build context {} is not a directory", dir.display())));
    }
    if !dir.join(&build.dockerfile).is_file() {
        return Err(fail(format!("{} not found in build context {}", build.dockerfile, dir.display())));
    }
    tokio::task::spawn_blocking(move || {
        let mut archive = tar::Builder::new(Vec::new());
        archive.follow_symlinks(true);
        archive.append_dir_all(".", &dir).map_err(|e| format!("packing {}: {e}", dir.display()))?;
        archive.into_inner().map_err(|e| format!("packing {}: {e}", dir.display()))
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(fail)
}

pub(super) async fn build(d: &DockerBackend, build: &Build, tag: &str) -> Result<String> {
    let tar = context_tar(build, tag).await?;
    build_with(d, tar, &build.dockerfile, build.args.clone().into_iter().collect(), tag).await
}

/// Builds from an in-memory context holding a `Dockerfile`.
pub(super) async fn build_tar(d: &DockerBackend, tar: Vec<u8>, tag: &str) -> Result<String> {
    build_with(d, tar, "Dockerfile", HashMap::new(), tag).await
}

async fn build_with(
    d: &DockerBackend,
    tar: Vec<u8>,
    dockerfile: &str,
    args: HashMap<String, String>,
    tag: &str,
) -> Result<String> {
    let options =
        BuildImageOptionsBuilder::new().dockerfile(dockerfile).t(tag).rm(true).forcerm(true).buildargs(&args).build();
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
    let stream =
        docker.export_image(&id).map(move |r| r.map_err(|e| Error::backend("export image", &id, engine_message(&e))));
    Box::pin(stream)
}

/// Loads a `docker save` archive, streamed from `archive`.
pub(super) async fn load(d: &DockerBackend, archive: futures::stream::BoxStream<'static, Result<Bytes>>) -> Result<()> {
    let options = bollard::query_parameters::ImportImageOptionsBuilder::new().quiet(true).build();
    let body = archive.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    let load = async {
        let mut progress = d.docker.import_image_stream(options, body, None);
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| Error::backend("load image", "archive", engine_message(&e)))?;
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
