//! Errors: one [`Error`] for everything an operation can hit, and [`ValidationError`] for what
//! building a [`Service`](crate::Service) or [`Environment`](crate::Environment) rejects.
//!
//! Every message says what failed, where (which service, instance, host or file) and, where there is
//! one, what to do about it. No message ever contains a secret's value.

use std::fmt;
use std::time::Duration;

mod kind;
mod registry;
mod reports;
mod validation;

pub use kind::ErrorKind;
pub use registry::RegistryErrorKind;
pub use reports::{ApplyFailure, HealthFailure, LockHolder, ProbeRecord};
pub use validation::ValidationError;

use reports::render_lines;
/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Anything that can go wrong while planning, applying or operating an environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The description of the environment is invalid; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),

    /// The backend (container engine) could not be reached at all.
    #[error("cannot reach the container engine at {endpoint}: {message}. Is the engine running, and is DOCKER_HOST (if set) right?")]
    Connect {
        /// Where the library tried to connect.
        endpoint: String,
        /// What the engine or the transport said.
        message: String,
    },

    /// A call to the backend failed.
    #[error("{operation} failed for {target}: {message}")]
    Backend {
        /// What the library was doing (for example `create container`).
        operation: &'static str,
        /// What it was done to (a container, network, volume or image name).
        target: String,
        /// What kind of failure the target reported (from its status code where it has one).
        kind: ErrorKind,
        /// What the engine said.
        message: String,
    },

    /// The target cannot do what the operation needs: it lacks a capability (an image store, a
    /// record store for the deploy lock, files in instances for an ingress), or its own rollout
    /// cannot honour what the description asks. Nothing was changed.
    #[error("{target} cannot {what}: {reason}")]
    Unsupported {
        /// The target ([`Backend::describe`](crate::Backend::describe)).
        target: String,
        /// What was asked (`keep the deploy lock`, `run a canary rollout of api`).
        what: String,
        /// Why, and what to do instead.
        reason: String,
    },

    /// A service's image reference is not present on the engine and its pull policy
    /// ([`PullPolicy::Never`](crate::PullPolicy::Never)) forbids pulling it.
    #[error("image `{reference}` of service `{service}` is not on the engine ({backend}) and its pull policy is Never; build or load it first, give the service a build with `ServiceBuilder::build_from`, or let it be pulled (`PullPolicy::IfMissing`)")]
    ImageNotFound {
        /// The service that uses the image.
        service: String,
        /// The image reference as given.
        reference: String,
        /// The backend that was asked.
        backend: String,
    },

    /// Pulling or pushing an image, or asking its registry about it, failed. `kind` says why, in
    /// a form to match on; `credentials` says which were used (never the secret).
    #[error("{operation} of image `{reference}`{} (registry {registry}) failed: {kind}: {message} [credentials: {credentials}]. {}", needed_by(services), kind.advice())]
    Registry {
        /// `pull`, `push` or `inspect`.
        operation: &'static str,
        /// The image reference.
        reference: String,
        /// The services that need the image (empty where no service was asked about).
        services: Vec<String>,
        /// The registry host (`docker.io` when the reference names none).
        registry: String,
        /// Why, in a form to match on.
        kind: RegistryErrorKind,
        /// Which credentials were sent: `none`, or `user "deploy" (from ~/.docker/config.json)`.
        credentials: String,
        /// What the engine or registry said.
        message: String,
    },

    /// Building an image failed.
    #[error("building image `{tag}` failed: {message}{}", render_lines("build output", log))]
    ImageBuild {
        /// The tag that was being built.
        tag: String,
        /// The builder's error message.
        message: String,
        /// The last lines of build output.
        log: Vec<String>,
    },

    /// An instance did not become healthy, or exited while starting.
    #[error(transparent)]
    Unhealthy(Box<HealthFailure>),

    /// A one-shot job exited with a non-zero code.
    #[error(
        "job `{service}` (container {instance}) exited with code {exit_code}; its dependents were not started{}",
        render_lines("last log lines", logs)
    )]
    JobFailed {
        /// The job's service name.
        service: String,
        /// The container that ran it.
        instance: String,
        /// Its exit code.
        exit_code: i64,
        /// The last lines it logged.
        logs: Vec<String>,
    },

    /// A deadline enforced by the library expired.
    #[error("{what} did not finish within its deadline of {}; still pending: {}", crate::duration::human(*deadline), pending.join(", "))]
    Deadline {
        /// What was being waited for.
        what: String,
        /// The deadline that expired.
        deadline: Duration,
        /// What had not finished.
        pending: Vec<String>,
    },

    /// A rollout failed and the old version was put back everywhere it had been replaced: the
    /// service runs its previous revision. `reason` is what failed (with the failing instance's last
    /// probe results and log lines when it was a health check).
    #[error("rollout of `{service}` was rolled back: the previous version is serving again. Cause: {reason}")]
    RolledBack {
        /// The service.
        service: String,
        /// Why the rollout failed.
        #[source]
        reason: Box<Error>,
    },

    /// A rollout failed and its rollback could not bring every old instance back: on the hosts
    /// named in `failures` (typically a host lost mid-rollout) the service is left as it was when
    /// the host was lost; everywhere else the previous version serves again. The next apply, once
    /// the host answers, finishes the job.
    #[error("{}", incomplete(service, reason, failures))]
    RollbackIncomplete {
        /// The service.
        service: String,
        /// Why the rollout failed.
        #[source]
        reason: Box<Error>,
        /// What could not be restored, each naming its host where there are several.
        failures: Vec<Error>,
    },

    /// A rollout failed and stopped where it was (`OnFailure::Pause`): `replaced` instances run the new
    /// version, the others the old one. The next apply continues it.
    #[error("rollout of `{service}` paused after replacing {replaced} of {total} instance(s); apply again to continue or roll back. Cause: {reason}")]
    Paused {
        /// The service.
        service: String,
        /// Instances on the new version.
        replaced: u32,
        /// Instances wanted.
        total: u32,
        /// Why the rollout stopped.
        #[source]
        reason: Box<Error>,
    },

    /// Another deploy of the environment holds its lock (and did not release it within the
    /// environment's [`lock_timeout`](crate::EnvironmentBuilder::lock_timeout)).
    #[error("environment `{environment}` is being deployed by {holder}")]
    Locked {
        /// `project-environment`.
        environment: String,
        /// Who holds the lock, where, and since when.
        holder: Box<LockHolder>,
    },

    /// The deploy lock this operation held was taken over: its lease was not renewed in time (was
    /// the process stopped or frozen?), or its record was removed. The operation stopped where it
    /// was, as if it had been killed; the next apply finishes the job.
    #[error("the deploy lock of `{environment}` was lost while this operation ran: {reason}. It stopped where it was; apply again to converge")]
    LockLost {
        /// `project-environment`.
        environment: String,
        /// What happened to it.
        reason: String,
    },

    /// The environment's deploy records on the target are gone while its containers still run:
    /// its state store was removed (`docker volume prune`, `docker system prune --volumes`, or by
    /// hand). Revisions, the audit trail, waiting promotions and job completions recorded before
    /// are lost; this is never read as an empty history. The next apply starts a new store and
    /// notes the loss in the audit trail.
    #[error("the deploy records of `{environment}` on {target} are lost: {reason}, while {running} of its container(s) still exist. Its revisions, audit trail, waiting promotions and job completions are gone (removed by `docker volume prune`, `docker system prune --volumes`, or by hand); the next apply starts new records and notes the loss in the audit trail")]
    StateLost {
        /// `project-environment`.
        environment: String,
        /// The backend that was asked.
        target: String,
        /// How many of the environment's containers exist.
        running: usize,
        /// What was found instead.
        reason: String,
    },

    /// A host port a service publishes is held by something else on the target (another
    /// container, or a process of the host): found by the plan before anything changes.
    #[error("service `{service}`: host port {port}/{protocol} on {target} is already in use by {holder}; stop what holds it, or publish another port (or publish_ephemeral())")]
    PortInUse {
        /// The service.
        service: String,
        /// The host port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// What holds it: `container web-1`, `a process on this host`.
        holder: String,
        /// The target (its engine address).
        target: String,
    },

    /// An SSH host could not be reached, or the connection to it was lost.
    #[error("host `{host}` ({destination}) is unreachable over SSH: {message}. Check the host, the network and the SSH settings, then try again (if an operation was under way, nothing more was changed on the host)")]
    HostUnreachable {
        /// The host's name.
        host: String,
        /// The SSH destination, as given (an alias of `~/.ssh/config`, `user@address`).
        destination: String,
        /// What the SSH client said.
        message: String,
    },

    /// An SSH host's key is unknown or not the one `known_hosts` holds; the connection was refused.
    #[error("host `{host}` ({destination}): {}; the connection was refused. {message}", if *changed { "its host key is NOT the one known_hosts holds (it changed, or someone is in between)" } else { "its host key is not in known_hosts" })]
    HostKey {
        /// The host's name.
        host: String,
        /// The SSH destination, as given.
        destination: String,
        /// `true` if known_hosts holds a different key; `false` if it holds none.
        changed: bool,
        /// What the SSH client said, and what to do.
        message: String,
    },

    /// A host failed a check made before anything changes (its engine, its version, its disk).
    #[error("host `{host}` failed its {check} check: {message}")]
    HostCheck {
        /// The host's name.
        host: String,
        /// Which check (`docker`, `docker version`, `disk space`).
        check: &'static str,
        /// What was found, and what is needed.
        message: String,
    },

    /// An operation on one host of a multi-host backend failed.
    #[error("on host `{host}`: {source}")]
    OnHost {
        /// The host's name.
        host: String,
        /// What failed there.
        source: Box<Error>,
    },

    /// A service cannot be placed on the backend's hosts, or a reference to another service
    /// cannot be resolved from where it runs.
    #[error("cannot place `{service}`: {reason}")]
    Placement {
        /// The service.
        service: String,
        /// Why, and what to change.
        reason: String,
    },

    /// A rollback found no revision to go to, or the revision cannot be restored as recorded.
    #[error("cannot roll back `{service}`: {reason}")]
    NoRevision {
        /// The service.
        service: String,
        /// Why (no earlier revision, unknown number, a secret that can no longer be resolved).
        reason: String,
    },

    /// [`Environment::promote`](crate::Environment::promote) or
    /// [`abort_promotion`](crate::Environment::abort_promotion) found no rollout of the service
    /// waiting for it.
    #[error("no rollout of `{service}` is waiting for a promotion in environment `{environment}`")]
    NoPendingPromotion {
        /// `project-environment`.
        environment: String,
        /// The service.
        service: String,
    },

    /// Applying an environment failed for one or more services.
    #[error(transparent)]
    Apply(Box<ApplyFailure>),

    /// The environment has no service of that name.
    #[error("environment `{environment}` has no service `{service}`")]
    UnknownService {
        /// `project/environment`.
        environment: String,
        /// The name asked for.
        service: String,
    },

    /// No published endpoint matches the request.
    #[error("service `{service}` has no running instance publishing container port {port}; publish it with `Port::tcp({port}).publish_ephemeral()` (or a fixed host port)")]
    NoEndpoint {
        /// The service asked for.
        service: String,
        /// The container port asked for.
        port: u16,
    },
}

/// ` (needed by api, worker)`, or nothing.
fn needed_by(services: &[String]) -> String {
    if services.is_empty() {
        String::new()
    } else {
        format!(" (needed by {})", services.join(", "))
    }
}

impl Error {
    /// Whether this is (or wraps) a host that cannot be reached any more.
    pub fn is_host_lost(&self) -> bool {
        match self {
            Error::HostUnreachable { .. } => true,
            Error::OnHost { source, .. } => source.is_host_lost(),
            _ => false,
        }
    }

    pub(crate) fn backend(operation: &'static str, target: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::backend_kind(operation, target, ErrorKind::Other, message)
    }

    pub(crate) fn backend_kind(
        operation: &'static str,
        target: impl Into<String>,
        kind: ErrorKind,
        message: impl fmt::Display,
    ) -> Self {
        Error::Backend {
            operation,
            target: target.into(),
            kind,
            message: crate::scrub::text(&message.to_string()).into_owned(),
        }
    }

    pub(crate) fn unsupported(target: impl Into<String>, what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unsupported { target: target.into(), what: what.into(), reason: reason.into() }
    }

    /// The same error with every known secret value scrubbed from its text, however deep (see
    /// [`crate::scrub`]). Every error the library hands out has been through this.
    pub(crate) fn scrubbed(self) -> Error {
        use crate::scrub::{all, in_place};
        let deep = |e: Box<Error>| Box::new(e.scrubbed());
        match self {
            Error::Invalid(v) => Error::Invalid(v.scrubbed()),
            Error::Connect { endpoint, mut message } => {
                in_place(&mut message);
                Error::Connect { endpoint, message }
            }
            Error::Backend { operation, mut target, kind, mut message } => {
                in_place(&mut target);
                in_place(&mut message);
                Error::Backend { operation, target, kind, message }
            }
            Error::Unsupported { target, what, mut reason } => {
                in_place(&mut reason);
                Error::Unsupported { target, what, reason }
            }
            Error::ImageBuild { tag, mut message, mut log } => {
                in_place(&mut message);
                all(&mut log);
                Error::ImageBuild { tag, message, log }
            }
            Error::Unhealthy(mut h) => {
                in_place(&mut h.reason);
                all(&mut h.last_logs);
                h.last_probes.iter_mut().for_each(|p| in_place(&mut p.detail));
                Error::Unhealthy(h)
            }
            Error::JobFailed { service, instance, exit_code, mut logs } => {
                all(&mut logs);
                Error::JobFailed { service, instance, exit_code, logs }
            }
            Error::Deadline { mut what, deadline, mut pending } => {
                in_place(&mut what);
                all(&mut pending);
                Error::Deadline { what, deadline, pending }
            }
            Error::RolledBack { service, reason } => Error::RolledBack { service, reason: deep(reason) },
            Error::RollbackIncomplete { service, reason, failures } => Error::RollbackIncomplete {
                service,
                reason: deep(reason),
                failures: failures.into_iter().map(Error::scrubbed).collect(),
            },
            Error::Paused { service, replaced, total, reason } => {
                Error::Paused { service, replaced, total, reason: deep(reason) }
            }
            Error::LockLost { environment, mut reason } => {
                in_place(&mut reason);
                Error::LockLost { environment, reason }
            }
            Error::StateLost { environment, target, running, mut reason } => {
                in_place(&mut reason);
                Error::StateLost { environment, target, running, reason }
            }
            Error::HostUnreachable { host, destination, mut message } => {
                in_place(&mut message);
                Error::HostUnreachable { host, destination, message }
            }
            Error::HostKey { host, destination, changed, mut message } => {
                in_place(&mut message);
                Error::HostKey { host, destination, changed, message }
            }
            Error::HostCheck { host, check, mut message } => {
                in_place(&mut message);
                Error::HostCheck { host, check, message }
            }
            Error::OnHost { host, source } => Error::OnHost { host, source: deep(source) },
            Error::Placement { service, mut reason } => {
                in_place(&mut reason);
                Error::Placement { service, reason }
            }
            Error::NoRevision { service, mut reason } => {
                in_place(&mut reason);
                Error::NoRevision { service, reason }
            }
            Error::Apply(mut f) => {
                f.failed = std::mem::take(&mut f.failed).into_iter().map(|(s, e)| (s, e.scrubbed())).collect();
                Error::Apply(f)
            }
            Error::Registry { operation, reference, services, registry, kind, credentials, mut message } => {
                in_place(&mut message);
                Error::Registry { operation, reference, services, registry, kind, credentials, message }
            }
            other @ (Error::ImageNotFound { .. }
            | Error::PortInUse { .. }
            | Error::Locked { .. }
            | Error::NoPendingPromotion { .. }
            | Error::UnknownService { .. }
            | Error::NoEndpoint { .. }) => other,
        }
    }
}

/// [`Error::RollbackIncomplete`]'s message; a failure that repeats the cause (the same lost host)
/// is not said twice.
fn incomplete(service: &str, reason: &Error, failures: &[Error]) -> String {
    let cause = reason.to_string();
    let mut others: Vec<String> = failures.iter().map(|e| e.to_string()).filter(|f| *f != cause).collect();
    others.dedup();
    let mut out = format!(
        "rollout of `{service}` failed: {cause}. It was rolled back where it could be; what could not be restored was left as it was"
    );
    if !others.is_empty() {
        out.push_str(&format!(": {}", others.join("; ")));
    }
    out
}
