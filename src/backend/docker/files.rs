//! Files in containers: written and read through the engine's archive API, which works on created,
//! running and stopped containers alike (and reaches the volumes they mount).

use super::DockerBackend;
use crate::error::{Error, Result};

/// A tar archive of `files` (path, contents, mode).
pub(super) fn tar_of(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, path.trim_start_matches('/'), *contents)
            .map_err(|e| Error::backend("write file", *path, e.to_string()))?;
    }
    builder.into_inner().map_err(|e| Error::backend("write file", "tar", e.to_string()))
}

/// Unpacks `files` (an archive of paths relative to `dir`) into `dir` of container `id`, through
/// the silent transport (a secret file's value is in the archive, which bollard would log).
pub(super) async fn upload(d: &DockerBackend, id: &str, dir: &str, archive: Vec<u8>, what: &str) -> Result<()> {
    d.transport.put_archive(id, dir, archive, what).await
}

pub(super) async fn write_file(d: &DockerBackend, id: &str, path: &str, contents: &[u8], mode: u32) -> Result<()> {
    let archive = tar_of(&[(path, contents, mode)])?;
    upload(d, id, "/", archive, &format!("{path} in {id}")).await
}

/// The archive the engine gives for `path` in container `id`; `Ok(None)` if the path (or the
/// container) does not exist. Through the silent transport, as [`upload`].
pub(super) async fn download(d: &DockerBackend, id: &str, path: &str) -> Result<Option<Vec<u8>>> {
    d.transport.get_archive(id, path, &format!("{path} in {id}")).await
}

/// The regular files of an archive, with their paths (without a leading `./`).
pub(super) fn files_of(archive: &[u8], what: &str) -> Result<Vec<(String, Vec<u8>)>> {
    use std::io::Read;
    let failed = |e: std::io::Error| Error::backend("read file", what, e.to_string());
    let mut tar = tar::Archive::new(archive);
    let mut out = Vec::new();
    for entry in tar.entries().map_err(failed)? {
        let mut entry = entry.map_err(failed)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(failed)?.to_string_lossy().trim_start_matches("./").to_string();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).map_err(failed)?;
        out.push((path, contents));
    }
    Ok(out)
}

pub(super) async fn read_file(d: &DockerBackend, id: &str, path: &str) -> Result<Option<Vec<u8>>> {
    let Some(archive) = download(d, id, path).await? else { return Ok(None) };
    Ok(files_of(&archive, &format!("{path} in {id}"))?.into_iter().next().map(|(_, contents)| contents))
}
