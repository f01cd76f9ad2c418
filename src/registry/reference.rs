//! Image references split as Docker reads them: registry, repository, tag, digest.

use std::fmt;

/// Docker Hub, as references name it when they name no registry.
pub(crate) const DOCKER_HUB: &str = "docker.io";

/// An image reference, split (`127.0.0.1:5000/team/api:2` → registry `127.0.0.1:5000`,
/// repository `team/api`, tag `2`). `postgres:15` is `docker.io`, `library/postgres`, `15`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (with its port), `docker.io` when the reference names none.
    pub registry: String,
    /// The repository path inside the registry.
    pub repository: String,
    /// The tag, if the reference has one (`None` with a digest, or `latest` implied).
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if the reference pins one.
    pub digest: Option<String>,
    /// The name as written, without tag or digest (`postgres`, `127.0.0.1:5000/team/api`).
    name: String,
}

impl ImageRef {
    /// Splits a reference in Docker's grammar (`[domain[:port]/]path[:tag][@digest]`); `None` for
    /// one outside it.
    pub fn parse(reference: &str) -> Option<ImageRef> {
        crate::model::check_reference(reference).ok()?;
        let (rest, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ if name.contains('/') => (DOCKER_HUB.to_string(), name.to_string()),
            _ => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        Some(ImageRef { registry, repository, tag, digest, name: name.to_string() })
    }

    /// The name as written, without tag or digest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag to pull when none is named and no digest pins it: `latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The reference pinned to `digest`: `name@digest` (what a rollback pulls).
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name)
    }

    /// Whether `repo_digest` (`name@sha256:…`, as an engine lists an image's repo digests) is
    /// this reference's repository.
    pub(crate) fn is_repository_of(&self, repo_digest: &str) -> bool {
        repo_digest
            .split_once('@')
            .and_then(|(n, _)| ImageRef::parse(n))
            .is_some_and(|r| r.registry == self.registry && r.repository == self.repository)
    }

    /// The digest of this repository among an image's repo digests.
    pub(crate) fn digest_among<'a>(&self, repo_digests: &'a [String]) -> Option<&'a str> {
        repo_digests.iter().find(|d| self.is_repository_of(d)).and_then(|d| d.split_once('@')).map(|(_, d)| d)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn splits_as_docker_does() {
        let r = ImageRef::parse("postgres:15").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/postgres", Some("15"))
        );
        let r = ImageRef::parse("127.0.0.1:5000/team/api:2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/api", Some("2"))
        );
        let r = ImageRef::parse("team/api").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag_or_latest()),
            ("docker.io", "team/api", "latest")
        );
        let r = ImageRef::parse(&format!("localhost/api@{D}")).unwrap();
        assert_eq!((r.registry.as_str(), r.digest.as_deref(), r.tag.as_deref()), ("localhost", Some(D), None));
        assert_eq!(r.pinned(D), format!("localhost/api@{D}"));
        assert!(ImageRef::parse("Bad Name").is_none());
    }

    #[test]
    fn finds_its_repo_digest() {
        let r = ImageRef::parse("postgres:15").unwrap();
        let digests = vec![format!("127.0.0.1:5000/postgres@{D}"), format!("postgres@{D}")];
        assert_eq!(r.digest_among(&digests), Some(D));
        assert_eq!(r.digest_among(&digests[..1]), None);
    }
}
