//! Where a service's image comes from: a local reference or a build.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A service's image: a reference the engine already has, or a build from a context directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// An image reference present on the engine (`local/api:2`). Nothing is pulled.
    Reference(String),
    /// Built through the engine's build API.
    Build(Build),
}

/// An image build: a context directory, a Dockerfile inside it, a tag and build arguments.
///
/// ```no_run
/// use harbormaster::Build;
/// let b = Build::context("./api").dockerfile("Dockerfile.prod").tag("local/api:dev").arg("PROFILE", "release");
/// # let _ = b;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub(crate) context: PathBuf,
    pub(crate) dockerfile: String,
    pub(crate) tag: Option<String>,
    pub(crate) args: BTreeMap<String, String>,
}

impl Build {
    /// A build of this context directory with its `Dockerfile`.
    pub fn context(dir: impl Into<PathBuf>) -> Self {
        Build { context: dir.into(), dockerfile: "Dockerfile".into(), tag: None, args: BTreeMap::new() }
    }

    /// The Dockerfile's path inside the context.
    pub fn dockerfile(mut self, path: impl Into<String>) -> Self {
        self.dockerfile = path.into();
        self
    }

    /// The tag to give the image (default: `harbormaster/<project>-<service>:latest`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// A build argument (`ARG`).
    pub fn arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.insert(name.into(), value.into());
        self
    }

    /// The tag set with [`tag`](Self::tag), if any.
    pub fn tag_name(&self) -> Option<&str> {
        self.tag.as_deref()
    }
}
