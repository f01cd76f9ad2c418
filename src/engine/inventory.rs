//! What is deployed on a target, found from its labels by any process: [`environments`], and
//! taking one down by name ([`FoundEnvironment::down`]) without its original description.

use std::collections::BTreeMap;

use super::{Down, DownReport};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::Environment;

/// An environment found on a target ([`environments`]): what owns containers, a network,
/// volumes or records there.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FoundEnvironment {
    /// Its project.
    pub project: String,
    /// Its name.
    pub name: String,
    /// Its own labels ([`EnvironmentBuilder::label`](crate::EnvironmentBuilder::label)), as found.
    pub labels: BTreeMap<String, String>,
}

impl FoundEnvironment {
    /// `project-name`.
    pub fn qualified_name(&self) -> String {
        format!("{}-{}", self.project, self.name)
    }

    /// An [`Environment`] with this name and no services: enough to take it down, read its status
    /// (every service shows as no longer described) or its history.
    pub fn as_environment(&self) -> Result<Environment> {
        Ok(Environment::named(&self.project, &self.name)?)
    }

    /// Takes it down like [`Environment::down`]: every container and the network, its records,
    /// and its named volumes with [`Down::with_volumes`].
    pub async fn down<B: Backend>(&self, backend: &B, options: Down) -> Result<DownReport> {
        self.as_environment()?.down(backend, options).await
    }
}

/// Every environment that owns something on `backend`, with its labels: from any process, without
/// the descriptions. Filter on [`FoundEnvironment::labels`] to find a kind (such as a test
/// harness's), then [`FoundEnvironment::down`].
///
/// ```no_run
/// # async fn run() -> harbormaster::Result<()> {
/// let docker = harbormaster::DockerBackend::connect().await?;
/// for env in harbormaster::environments(&docker).await? {
///     if env.labels.get("team").map(String::as_str) == Some("previews") {
///         env.down(&docker, harbormaster::Down::default().with_volumes()).await?;
///     }
/// }
/// # Ok(()) }
/// ```
pub async fn environments<B: Backend + ?Sized>(backend: &B) -> Result<Vec<FoundEnvironment>> {
    let scopes = backend.environments().await.map_err(Error::scrubbed)?;
    Ok(scopes
        .into_iter()
        .map(|s| FoundEnvironment { project: s.project, name: s.environment, labels: s.marks })
        .collect())
}
