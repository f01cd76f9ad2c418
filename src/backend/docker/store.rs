//! The environment's state store on a Docker engine: each file is a volume whose labels hold its
//! name and contents (`<project>-<environment>.statefile.<file>`, record kind `state-file`).
//!
//! A volume's labels are written with the volume, in one call, or not at all, so a file is never
//! seen half written; replacing one is removing its volume and creating it again (the state
//! document alternates between two files, so the other one always holds a complete copy). Reading
//! the whole store is one listing. No container is involved: writing through a container's
//! archive API made the engine re-execute itself to unpack each write (about 50 ms a file). Volumes
//! survive `docker system prune` (without `--volumes`), as the records of the deploy lock do.
//!
//! Stores written by harbormaster 0.1 (files inside one volume, `<project>-<environment>.state`,
//! reached through an accessor container: `state.rs`) are still read; the first write moves the
//! store to file volumes and removes the old volume.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::ListVolumesOptionsBuilder;
use sha2::{Digest, Sha256};

use super::DockerBackend;
use crate::backend::{label, Scope, StateFile};
use crate::error::{Error, Result};

/// The record kind of a state file's volume.
const KIND: &str = "state-file";
/// The label holding the file's name.
const FILE: &str = "io.harbormaster.data.file";
/// The label holding the file's contents.
const CONTENTS: &str = "io.harbormaster.data.contents";
/// How the contents label is written: `text` (UTF-8, as is) or `hex`.
const ENCODING: &str = "io.harbormaster.data.encoding";

/// The volume holding file `name` of `scope`'s store. Names are kept as they are where a volume
/// name allows; any other name is replaced by its digest.
fn volume_of(scope: &Scope, name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let file = if plain {
        name.to_string()
    } else {
        Sha256::digest(name.as_bytes()).iter().take(12).map(|b| format!("{b:02x}")).collect()
    };
    format!("{}.statefile.{file}", scope.qualified())
}

fn filters(scope: &Scope) -> HashMap<&'static str, Vec<String>> {
    super::state::scope_filters(scope, KIND)
}

fn encode(contents: &[u8]) -> (&'static str, String) {
    match std::str::from_utf8(contents) {
        Ok(text) if !text.contains('\0') => ("text", text.to_string()),
        _ => ("hex", contents.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

fn decode(encoding: Option<&str>, value: &str) -> Option<Vec<u8>> {
    match encoding {
        Some("hex") => {
            let digits = value.as_bytes();
            if !digits.len().is_multiple_of(2) {
                return None;
            }
            digits
                .chunks(2)
                .map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
                .collect()
        }
        _ => Some(value.as_bytes().to_vec()),
    }
}

/// The store's files (in volumes); `None` if the store has none.
async fn files(d: &DockerBackend, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
    let options = ListVolumesOptionsBuilder::new().filters(&filters(scope)).build();
    let list = d.call("list state files", &scope.qualified(), d.docker.list_volumes(Some(options))).await?;
    let volumes = list.volumes.unwrap_or_default();
    if volumes.is_empty() {
        return Ok(None);
    }
    let mut files = Vec::new();
    for v in volumes {
        let (Some(name), Some(value)) = (v.labels.get(FILE), v.labels.get(CONTENTS)) else { continue };
        // A file that cannot be decoded reads as empty: the document's own checksum rejects it.
        let contents = decode(v.labels.get(ENCODING).map(String::as_str), value).unwrap_or_default();
        files.push(StateFile { name: name.clone(), contents });
    }
    Ok(Some(files))
}

/// Every file of `scope`'s store, or `None` if it has none (nor a store of harbormaster 0.1).
pub(super) async fn read(d: &DockerBackend, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
    if let Some(files) = files(d, scope).await? {
        return Ok(Some(files));
    }
    super::state::read_legacy(d, scope).await
}

/// Writes file `name`: its volume removed if it exists, then created with the new contents.
pub(super) async fn write(d: &DockerBackend, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
    let volume = volume_of(scope, name);
    super::records::remove(d, &volume).await?;
    let (encoding, value) = encode(contents);
    let mut labels: HashMap<String, String> = scope.labels().into_iter().collect();
    labels.insert(label::RECORD.into(), KIND.into());
    labels.insert(FILE.into(), name.into());
    labels.insert(ENCODING.into(), encoding.into());
    labels.insert(CONTENTS.into(), value.clone());
    let request = VolumeCreateRequest {
        name: Some(volume.clone()),
        driver: Some("local".into()),
        labels: Some(labels),
        ..Default::default()
    };
    let created = d.call("write state", &volume, d.docker.create_volume(request)).await?;
    if created.labels.get(CONTENTS) != Some(&value) {
        // Another writer created it between the removal and the create: the lock was not held.
        return Err(Error::backend(
            "write state",
            volume,
            "another process wrote the same state file at the same time; apply again",
        ));
    }
    // Best effort: a 0.1 volume left behind is never read again, and `down` removes it.
    let _ = super::state::retire_legacy(d, scope).await;
    Ok(())
}

/// Removes every file of `scope`'s store (and a store of harbormaster 0.1).
pub(super) async fn remove(d: &DockerBackend, scope: &Scope) -> Result<()> {
    let options = ListVolumesOptionsBuilder::new().filters(&filters(scope)).build();
    let list = d.call("list state files", &scope.qualified(), d.docker.list_volumes(Some(options))).await?;
    for v in list.volumes.unwrap_or_default() {
        super::records::remove(d, &v.name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_come_back_as_they_were_written() {
        for contents in [b"plain\ntext {\"a\": 1}".as_slice(), b"", b"\0\x01\xff binary"] {
            let (encoding, value) = encode(contents);
            assert_eq!(decode(Some(encoding), &value).as_deref(), Some(contents));
        }
        assert_eq!(encode(b"\xff").0, "hex");
        assert_eq!(decode(Some("hex"), "abc"), None, "an odd number of digits");
        assert_eq!(decode(Some("hex"), "zz"), None);
    }

    #[test]
    fn file_names_become_volume_names() {
        let scope = Scope::new("p", "e");
        assert_eq!(volume_of(&scope, "state.0.json"), "p-e.statefile.state.0.json");
        let odd = volume_of(&scope, "a/b c");
        assert!(odd.starts_with("p-e.statefile.") && odd.len() == "p-e.statefile.".len() + 24, "{odd}");
        assert_ne!(volume_of(&scope, "a/b c"), volume_of(&scope, "a/b d"));
    }
}
