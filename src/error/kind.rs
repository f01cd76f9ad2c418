//! [`ErrorKind`]: what kind of failure an [`Error`] is, to match on without knowing every variant.

use super::{Error, RegistryErrorKind};

/// What kind of failure an [`Error`] is ([`Error::kind`]), in the terms a caller acts on: retry
/// later, fix the description, ask someone for credentials, wait for the other deployer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The description is invalid, or the target refused a value; nothing was changed.
    Invalid,
    /// Something asked for does not exist (an image, a container, a service, a revision, an endpoint).
    NotFound,
    /// Something exists already or is held by someone else (the deploy lock, a name in use).
    Conflict,
    /// A deadline the library enforces expired, or the target did not answer in time.
    Timeout,
    /// The target (an engine, a host, a registry, an API) cannot be reached.
    Unreachable,
    /// The target refused the credentials, or a host key did not match.
    Unauthorized,
    /// The target cannot do what was asked (it lacks the capability); nothing was changed.
    Unsupported,
    /// What was deployed did not work: a health gate failed, a job exited non-zero, a rollout
    /// was rolled back or paused.
    Failed,
    /// The environment's recorded state is lost or was taken over.
    StateLost,
    /// Anything else the target said.
    Other,
}

impl Error {
    /// What kind of failure this is. Wrapping errors ([`Error::OnHost`], [`Error::Apply`] with a
    /// single failed service) answer their cause's kind.
    ///
    /// ```
    /// use harbormaster::{Error, ErrorKind};
    /// fn retry_later(e: &Error) -> bool {
    ///     matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unreachable | ErrorKind::Conflict)
    /// }
    /// # let _ = retry_later;
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::Placement { .. } => ErrorKind::Invalid,
            Error::Connect { .. } | Error::HostUnreachable { .. } | Error::HostCheck { .. } => ErrorKind::Unreachable,
            Error::Backend { kind, .. } => *kind,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::ImageNotFound { .. }
            | Error::NoRevision { .. }
            | Error::NoPendingPromotion { .. }
            | Error::UnknownService { .. }
            | Error::NoEndpoint { .. } => ErrorKind::NotFound,
            Error::Registry { kind, .. } => match kind {
                RegistryErrorKind::NotFound | RegistryErrorKind::WrongPlatform => ErrorKind::NotFound,
                RegistryErrorKind::Unauthorized => ErrorKind::Unauthorized,
                RegistryErrorKind::Unreachable => ErrorKind::Unreachable,
                RegistryErrorKind::Stalled | RegistryErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Other,
            },
            Error::ImageBuild { .. } => ErrorKind::Failed,
            Error::Unhealthy(_)
            | Error::JobFailed { .. }
            | Error::RolledBack { .. }
            | Error::RollbackIncomplete { .. }
            | Error::Paused { .. } => ErrorKind::Failed,
            Error::Deadline { .. } => ErrorKind::Timeout,
            Error::Locked { .. } | Error::PortInUse { .. } => ErrorKind::Conflict,
            Error::LockLost { .. } | Error::StateLost { .. } => ErrorKind::StateLost,
            Error::HostKey { .. } => ErrorKind::Unauthorized,
            Error::OnHost { source, .. } => source.kind(),
            Error::Apply(f) => match f.failed.as_slice() {
                [(_, only)] if f.not_started.is_empty() => only.kind(),
                _ => ErrorKind::Failed,
            },
        }
    }
}

impl ErrorKind {
    /// The kind an engine's HTTP status code says (`404` not found, `409` conflict, `401`/`403`
    /// unauthorized, `400` invalid, `408`/`504` timeout, `502`/`503` unreachable).
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::Invalid,
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            408 | 504 => ErrorKind::Timeout,
            502 | 503 => ErrorKind::Unreachable,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_answer_their_cause() {
        let timeout = Error::backend_kind("create container", "api-0", ErrorKind::Timeout, "no answer");
        let on = Error::OnHost { host: "a".into(), source: Box::new(timeout) };
        assert_eq!(on.kind(), ErrorKind::Timeout);
        assert_eq!(ErrorKind::from_status(404), ErrorKind::NotFound);
        assert_eq!(ErrorKind::from_status(409), ErrorKind::Conflict);
        assert_eq!(Error::backend("x", "y", "z").kind(), ErrorKind::Other);
    }
}
