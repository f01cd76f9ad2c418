//! Where a service's image comes from: a local reference or a build.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A service's image: a reference (on the engine or in a registry), or a build from a context
/// directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// An image reference (`postgres:15`, `registry.example.com/team/api:2`, `api@sha256:…`),
    /// pulled from its registry as the service's [`PullPolicy`] says.
    Reference(String),
    /// Built through the engine's build API.
    Build(Build),
}

/// When a service's image reference is pulled from its registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Only when the engine does not have the reference (Docker's and Kubernetes' default for
    /// tags other than `latest`). The plan asks the registry for the digest without pulling.
    #[default]
    IfMissing,
    /// At every apply, so a tag pushed again (`:latest`, `:2`) is picked up; the plan says when the
    /// tag now points to another digest than the engine's copy.
    Always,
    /// Never: an image the engine lacks is an error ([`Error::ImageNotFound`](crate::Error::ImageNotFound)).
    Never,
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
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) push: bool,
    #[serde(default, skip_serializing_if = "no_options")]
    pub(crate) options: Box<BuildOptions>,
}

fn no_options(o: &BuildOptions) -> bool {
    o.is_default()
}

/// Options of an image build beyond its context, Dockerfile, tag and arguments; each is a
/// parameter of the engine's build API (`docker build --target …`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildOptions {
    /// The stage of a multi-stage Dockerfile to build (`--target`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The Dockerfile's text, instead of a file of the context (compose's `dockerfile_inline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    /// The network `RUN` steps use (`--network`: `host`, `none`, `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `/etc/hosts` entries during the build: host name and address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<(String, String)>,
    /// The size of `/dev/shm` for `RUN` steps, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Labels of the built image.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Images the build may take cached layers from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// Builds without the engine's layer cache.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
    /// Pulls newer versions of the base images (`--pull`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pull: bool,
    /// More tags the built image gets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_tags: Vec<String>,
}

impl BuildOptions {
    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        *self == BuildOptions::default()
    }
}

impl Build {
    /// A build of this context directory with its `Dockerfile`.
    pub fn context(dir: impl Into<PathBuf>) -> Self {
        Build {
            context: dir.into(),
            dockerfile: "Dockerfile".into(),
            tag: None,
            args: BTreeMap::new(),
            push: false,
            options: Box::default(),
        }
    }

    /// The stage of a multi-stage Dockerfile to build (`docker build --target`).
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.options.target = Some(stage.into());
        self
    }

    /// The Dockerfile's text itself, instead of a file of the context.
    pub fn dockerfile_inline(mut self, text: impl Into<String>) -> Self {
        self.options.dockerfile_inline = Some(text.into());
        self
    }

    /// The other build options (see [`BuildOptions`]).
    pub fn options(mut self, options: BuildOptions) -> Self {
        self.options = Box::new(options);
        self
    }

    /// Its build options.
    pub fn build_options(&self) -> &BuildOptions {
        &self.options
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

    /// Pushes the built image to the registry its [`tag`](Self::tag) names (with the backend's
    /// credentials) after every build that changed it, so that targets which pull (other hosts, a
    /// cloud API) can get it. The tag must name a registry (`registry.example.com:5000/team/api:2`).
    pub fn push(mut self) -> Self {
        self.push = true;
        self
    }

    /// The tag set with [`tag`](Self::tag), if any.
    pub fn tag_name(&self) -> Option<&str> {
        self.tag.as_deref()
    }
}

/// A path component: lowercase letters and digits, joined by `.`, `_`, `__` or runs of `-`.
fn path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(bytes.first()) || !alnum(bytes.last()) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__`, or `-`+, followed by an alphanumeric.
        let start = i;
        match b {
            b'.' => i += 1,
            b'_' => i += if bytes.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !bytes.get(i).is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return false;
        }
    }
    true
}

fn domain_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
}

fn domain(d: &str) -> bool {
    if let Some(v6) = d.strip_prefix('[') {
        let Some((addr, port)) = v6.split_once(']') else { return false };
        return addr.parse::<std::net::Ipv6Addr>().is_ok()
            && (port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok()));
    }
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    host.split('.').all(domain_component) && port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

/// Checks an image reference against the grammar Docker parses
/// (`[domain[:port]/]path[:tag][@algorithm:hex]`); `Err` says what is wrong.
pub(crate) fn check_reference(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("the image reference is empty".into());
    }
    if r.len() > 512 || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an image reference has no spaces or control characters and is short".into());
    }
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        let (alg, hex) = d.split_once(':').ok_or("its digest must be algorithm:hex (sha256:…)")?;
        let alg_ok = alg.split(['+', '.', '-', '_']).all(|c| {
            c.chars().next().is_some_and(|f| f.is_ascii_alphabetic()) && c.chars().all(|x| x.is_ascii_alphanumeric())
        });
        if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("its digest {d:?} is not algorithm:hex with at least 32 hex digits"));
        }
        if alg == "sha256" && hex.len() != 64 {
            return Err("a sha256 digest has 64 hex digits".into());
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before a '/' is a registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let ok = t.len() <= 128
            && t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(format!(
                "its tag {t:?} is not 1-128 of letters, digits, '_', '.', '-' (not starting with '.' or '-')"
            ));
        }
    }
    if name.len() > 255 {
        return Err("its name is longer than 255 characters".into());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry when it has a '.' or ':' or is `localhost` (as Docker 20.10
    // reads it: `UPPER/x` is a repository with capitals, refused by the engine).
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains(['.', ':']) || first == "localhost" {
            if !domain(first) {
                return Err(format!("its registry {first:?} is not a host name with an optional port"));
            }
            parts.remove(0);
        }
    }
    if parts.iter().any(|p| p.chars().any(|c| c.is_ascii_uppercase())) {
        return Err("a repository name must be lowercase".into());
    }
    if !parts.iter().all(|p| path_component(p)) {
        return Err(format!(
            "its name {name:?} is not lowercase letters and digits separated by '/', '.', '_', '__' or '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_reference;

    #[test]
    fn references_docker_takes() {
        for ok in [
            "postgres",
            "postgres:15",
            "library/postgres:15.4-alpine",
            "registry.example.com:5000/team/api:2",
            "localhost:5000/api",
            "localhost/api",
            "[::1]:5000/api:v1",
            "api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my-app__x/a.b-c:v1.0_rc",
            "harbormaster-test/workload:latest",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example.com/team/api",
        ] {
            assert_eq!(check_reference(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn references_docker_refuses() {
        for bad in [
            "",
            "Postgres",
            "team/API",
            "api:",
            "api:-x",
            ":tag",
            "a b",
            "api@sha256:xyz",
            "api@sha256:0123",
            "-api",
            "api-",
            "a..b",
            "a/-b",
            "api:\0",
            "host:port/api",
            "a//b",
            &format!("api:{}", "t".repeat(129)),
        ] {
            assert!(check_reference(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
