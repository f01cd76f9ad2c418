//! What building a service or an environment rejects.

use std::time::Duration;
/// What building a service or an environment rejects. Each variant names the offending service
/// (or environment) and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// A compose file says something that cannot be read or honoured: where, and why.
    #[error("{}", compose_message(file, *line, key, reason))]
    Compose {
        /// The file.
        file: String,
        /// The line (1-based; 0 for the file as a whole).
        line: usize,
        /// The key, as a path (`services.api.ports[0]`), empty for the file as a whole.
        key: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A name that cannot be used as a container or DNS name.
    #[error("invalid {kind} name `{name}`: {reason} (names are 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-')")]
    InvalidName {
        /// What the name is for (`service`, `project`, `environment`, `volume`).
        kind: &'static str,
        /// The name as given.
        name: String,
        /// What rule it breaks.
        reason: String,
    },
    /// Two services with the same name.
    #[error("service `{0}` is defined twice in the environment")]
    DuplicateService(String),
    /// A dependency on a service that is not in the environment.
    #[error("service `{service}` depends on `{dependency}`, which is not in the environment")]
    UnknownDependency {
        /// The dependent service.
        service: String,
        /// The missing dependency.
        dependency: String,
    },
    /// Services that depend on each other in a circle.
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    DependencyCycle {
        /// The cycle, first service repeated at the end.
        cycle: Vec<String>,
    },
    /// Two services (or two replicas of one) would publish the same host port.
    #[error("host port {port} is published by both `{first}` and `{second}`; use distinct host ports or `publish_ephemeral()`")]
    HostPortConflict {
        /// The host port.
        port: u16,
        /// The first publisher.
        first: String,
        /// The second publisher.
        second: String,
    },
    /// A job (one-shot service) with more than one replica.
    #[error("job `{service}` asks for {replicas} replicas; a job runs exactly once per apply")]
    JobWithReplicas {
        /// The job.
        service: String,
        /// The replica count asked for.
        replicas: u32,
    },
    /// A deadline too short for the health check to ever declare the service unhealthy.
    #[error("service `{service}`: deadline {} is shorter than its health check needs ({} = start period + interval x failure threshold); raise the deadline or shorten the check", crate::duration::human(*deadline), crate::duration::human(*needed))]
    DeadlineTooShort {
        /// The service.
        service: String,
        /// The deadline given.
        deadline: Duration,
        /// What the health check needs at least.
        needed: Duration,
    },
    /// A dependency condition that cannot hold for that dependency.
    #[error("service `{service}` waits for `{dependency}` to be {condition}, but {reason}")]
    ImpossibleCondition {
        /// The dependent.
        service: String,
        /// The dependency.
        dependency: String,
        /// The condition asked for.
        condition: String,
        /// Why it cannot hold.
        reason: String,
    },
    /// A secret whose source cannot be read.
    #[error("secret from {source_ref} is unavailable: {reason}")]
    SecretUnavailable {
        /// Where the secret was to come from (never its value).
        source_ref: String,
        /// Why it could not be read.
        reason: String,
    },
    /// Any other invalid value: which service, which field, what is wrong.
    #[error("{owner}: invalid {field}: {reason}")]
    InvalidValue {
        /// The service or environment.
        owner: String,
        /// The field.
        field: &'static str,
        /// What is wrong and what would be right.
        reason: String,
    },
}

/// `file:line: `key`: reason`, leaving out the line and key where there are none.
fn compose_message(file: &str, line: usize, key: &str, reason: &str) -> String {
    match (line, key.is_empty()) {
        (0, true) => format!("{file}: {reason}"),
        (0, false) => format!("{file}: `{key}`: {reason}"),
        (_, true) => format!("{file}:{line}: {reason}"),
        (_, false) => format!("{file}:{line}: `{key}`: {reason}"),
    }
}

impl ValidationError {
    /// The same error with every known secret value scrubbed from its text.
    pub(crate) fn scrubbed(self) -> ValidationError {
        use crate::scrub::in_place;
        match self {
            ValidationError::SecretUnavailable { source_ref, mut reason } => {
                in_place(&mut reason);
                ValidationError::SecretUnavailable { source_ref, reason }
            }
            ValidationError::InvalidValue { owner, field, mut reason } => {
                in_place(&mut reason);
                ValidationError::InvalidValue { owner, field, reason }
            }
            ValidationError::Compose { file, line, key, mut reason } => {
                in_place(&mut reason);
                ValidationError::Compose { file, line, key, reason }
            }
            other => other,
        }
    }
}
