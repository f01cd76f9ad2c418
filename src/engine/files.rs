//! Files written into instances ([`ContainerFile`]): written after an instance is created and
//! before it starts, and, for secret files, read back when the plan looks at what runs (a
//! secret's value is recorded nowhere, so the file itself says whether it changed).

use std::collections::HashMap;

use futures::future::join_all;

use crate::backend::{Backend, Instance};
use crate::error::{Error, Result};
use crate::model::{secret_file_key, ContainerFile};
use crate::plan::spec::Template;

/// Writes `files` into the created instance `id` of `service`.
pub(crate) async fn write(backend: &dyn Backend, service: &str, id: &str, files: &[ContainerFile]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let Some(target) = backend.files() else {
        return Err(unsupported(backend, service));
    };
    for f in files {
        target.write_file(id, f.target(), f.bytes(), f.permissions()).await?;
    }
    Ok(())
}

/// The error of a target that cannot write files into its instances.
pub(crate) fn unsupported(backend: &dyn Backend, service: &str) -> Error {
    Error::unsupported(
        backend.describe(),
        format!("write the files of `{service}` into its containers"),
        "it cannot put files into its instances; mount them from a volume instead",
    )
}

/// Reads each secret file of the services that have them back from their instances, into
/// [`Instance::secret_env`] (under [`secret_file_key`]); a file that cannot be read stays absent
/// (the plan then replaces the instance). Values read are remembered for scrubbing.
pub(crate) async fn read_secret_files(
    backend: &dyn Backend,
    templates: &HashMap<String, Template>,
    mut observed: Vec<Instance>,
) -> Vec<Instance> {
    let Some(target) = backend.files() else { return observed };
    let reads = observed.iter_mut().filter_map(|i| {
        let t = templates.get(&i.service)?;
        let secret_files: Vec<&ContainerFile> = t.service.files.iter().filter(|f| f.is_secret()).collect();
        (!secret_files.is_empty()).then_some((i, secret_files))
    });
    join_all(reads.map(|(i, secret_files)| async move {
        for f in secret_files {
            if let Ok(Some(bytes)) = target.read_file(&i.id, f.target()).await {
                let value = String::from_utf8_lossy(&bytes).into_owned();
                crate::scrub::remember(&value);
                i.secret_env.insert(secret_file_key(f.target()), value);
            }
        }
    }))
    .await;
    observed
}
