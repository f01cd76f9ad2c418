//! Why a registry operation failed.

use std::fmt;

/// Why a registry operation failed ([`Error::Registry`](super::Error::Registry)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryErrorKind {
    /// The repository, tag or digest does not exist there.
    NotFound,
    /// The registry refused the credentials, or wants some and none were sent.
    Unauthorized,
    /// The registry could not be reached (refused, no such host, timed out, TLS).
    Unreachable,
    /// The image exists, but not for the engine's platform (OS and architecture).
    WrongPlatform,
    /// The transfer stopped making progress for longer than the backend's stall limit.
    Stalled,
    /// The transfer did not finish within the backend's pull deadline (or the operation's).
    TimedOut,
    /// Anything else the engine said.
    Other,
}

impl RegistryErrorKind {
    /// What to do about it.
    pub fn advice(self) -> &'static str {
        match self {
            RegistryErrorKind::NotFound => "Check the name and tag, and that it was pushed to that registry",
            RegistryErrorKind::Unauthorized => {
                "Give the backend credentials for this registry (`registry_auth`) or `docker login` to it"
            }
            RegistryErrorKind::Unreachable => {
                "Check the registry's address and that the engine's host can reach it (and, for a plain-HTTP \
                 registry, that the engine lists it in `insecure-registries`)"
            }
            RegistryErrorKind::WrongPlatform => "Push an image built for the engine's OS and architecture",
            RegistryErrorKind::Stalled | RegistryErrorKind::TimedOut => {
                "Check the network between the engine and the registry, or raise the backend's pull limits"
            }
            RegistryErrorKind::Other => "See the engine's message",
        }
    }
}

impl fmt::Display for RegistryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryErrorKind::NotFound => "not found",
            RegistryErrorKind::Unauthorized => "unauthorized",
            RegistryErrorKind::Unreachable => "registry unreachable",
            RegistryErrorKind::WrongPlatform => "no image for this platform",
            RegistryErrorKind::Stalled => "stalled",
            RegistryErrorKind::TimedOut => "timed out",
            RegistryErrorKind::Other => "failed",
        })
    }
}
