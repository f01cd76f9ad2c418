//! # harbormaster
//!
//! Deploy and operate multi-service applications from typed Rust code: describe services, see the
//! plan, apply it with health-gated ordering, and get endpoints back. Targets are pluggable
//! [`Backend`]s: the local Docker engine ([`DockerBackend`]), a remote one over SSH ([`SshHost`]),
//! several hosts with roles ([`Fleet`]), a Docker Swarm that rolls out by itself
//! ([`SwarmBackend`]), and Fly.io's Machines API ([`FlyBackend`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use harbormaster::{Condition, DockerBackend, Down, Environment, HealthCheck, Port, Secret, Service, Volume};
//!
//! # async fn run() -> harbormaster::Result<()> {
//! let db = Service::builder("db")
//!     .image("postgres:15") // pulled if the engine lacks it; its digest is pinned
//!     .env("POSTGRES_DB", "shop")
//!     .secret("POSTGRES_PASSWORD", Secret::from_env("DB_PASSWORD")?)
//!     .volume(Volume::named("pgdata").at("/var/lib/postgresql/data"))
//!     .health(HealthCheck::tcp(5432).interval(Duration::from_millis(200)).retries(50))
//!     .build()?;
//! let migrate = Service::job("migrate").image("registry.example.com/shop/api:2").command(["api", "migrate"])
//!     .depends_on("db", Condition::Healthy).build()?;
//! let api = Service::builder("api")
//!     .image("registry.example.com/shop/api:2")
//!     .port(Port::tcp(8080).publish_ephemeral())
//!     .depends_on("migrate", Condition::CompletedSuccessfully)
//!     .health(HealthCheck::http(8080, "/health").expect_status(200..300))
//!     .replicas(2)
//!     .build()?;
//! let env = Environment::builder("shop", "staging").service(db).service(migrate).service(api).build()?;
//!
//! let docker = DockerBackend::connect().await?;
//! println!("{}", env.plan(&docker).await?);       // what would change, and why
//! let deployed = env.apply(&docker).await?;        // health-gated, in dependency order
//! println!("api at {}", deployed.endpoint("api", 8080)?);
//! env.down(&docker, Down::default()).await?;       // volumes kept unless asked
//! # Ok(()) }
//! ```
//!
//! ## Where things are
//!
//! | concept | module |
//! |---|---|
//! | the typed description: [`Service`], [`Environment`], [`HealthCheck`], [`Rollout`], [`Ingress`] | [`model`] (what a description may hold, and why: [`model::limits`]) |
//! | backups: `pg_dump` to S3-compatible storage, retention, schedules, restore: [`backup`] | [`backup`] (where a dump is taken: [`backup/postgres.rs`][src/backup/postgres.rs]) |
//! | a `docker-compose.yml` as an [`Environment`]: [`Environment::from_compose`], [`compose::Compose`] | [`compose`] (one service's keys: [`compose/service.rs`][src/compose/service.rs]) |
//! | what would change and why: [`Plan`] | [`plan`] |
//! | carrying a plan out, in order, health-gated; down/status/logs/exec | [`engine`] (which service runs when: [`engine/dispatch.rs`][src/engine/dispatch.rs]; where a rollout picks its next batch: [`engine/rollout/batches.rs`][src/engine/rollout/batches.rs], carries it out: [`engine/rollout/rolling.rs`][src/engine/rollout/rolling.rs]; on a self-rolling target: [`engine/orchestrated.rs`][src/engine/orchestrated.rs]) |
//! | where a service's image comes from (present, restored, pulled, built, pushed) | [`engine/images.rs`][src/engine/images.rs] |
//! | registries: references, credentials ([`RegistryAuth`], `~/.docker/config.json`), pull progress, failure kinds | [`registry`] (the transfers: [`backend/docker/pull.rs`][src/backend/docker/pull.rs]; build contexts and `.dockerignore`: [`backend/docker/context.rs`][src/backend/docker/context.rs]) |
//! | progress events, as typed values, lines for people and JSON | [`events`] |
//! | the JSON shape of what the library reports (plans, events, status, deployments, revisions, audit) | [`json`] |
//! | state kept on the target: revisions, audit, waiting promotions, job completions, kept images; the deploy lock and its lease | [`state`] ([`state/mod.rs`][src/state/mod.rs] the document and its store, [`state/lock.rs`][src/state/lock.rs], [`state/revisions.rs`][src/state/revisions.rs], [`state/audit.rs`][src/state/audit.rs], [`state/jobs.rs`][src/state/jobs.rs]) |
//! | where a secret value is scrubbed from what comes back from a target | [`scrub`] |
//! | the ingress: Caddy configuration from routes and rotation; how it upgrades itself without a gap (listener, front, router: [`Ingress`]) | [`ingress`] (pushed by [`engine/traffic.rs`][src/engine/traffic.rs], which also drains a front and defers a moved listener) |
//! | probes and the readiness gate | [`health`] |
//! | the seam: [`Backend`] and its optional capabilities ([`InstanceRuntime`] or [`Orchestrator`], [`ImageStore`], [`RecordStore`], [`InstanceFiles`], [`Topology`], [`ImageShipping`]); what a target cannot honour: [`Backend::limits`]; the one label codec: [`backend/label.rs`][src/backend/label.rs]; the Docker backend (container creation in [`backend/docker/containers.rs`][src/backend/docker/containers.rs], the silent path for secret-bearing calls in [`backend/docker/transport.rs`][src/backend/docker/transport.rs], the state store in [`backend/docker/store.rs`][src/backend/docker/store.rs], kept images in [`backend/docker/state.rs`][src/backend/docker/state.rs]) | [`backend`] |
//! | a Docker Swarm: [`SwarmBackend`] (service specs from the rollout in [`backend/swarm/spec.rs`][src/backend/swarm/spec.rs], records as configs) | [`backend::swarm`] |
//! | Fly.io's Machines API: [`FlyBackend`] (where an instance becomes a machine config: [`backend/fly/config.rs`][src/backend/fly/config.rs]; records in a machine's metadata under its lease: [`backend/fly/records.rs`][src/backend/fly/records.rs]; retries: [`backend/fly/api.rs`][src/backend/fly/api.rs]) | [`backend::fly`] |
//! | an in-memory runtime with fault injection, for tests (feature `test-util`) | [`backend::memory`] |
//! | a remote engine over SSH: [`SshHost`] (connection, host keys, forwards, host checks), the Docker backend through the generic link layer [`backend::Linked`] ([`backend/linked.rs`][src/backend/linked.rs]) | [`backend::ssh`] |
//! | several hosts as one backend, placement by role, image shipping: [`Fleet`] | [`backend::fleet`] (placement decided in [`engine/placement.rs`][src/engine/placement.rs]) |
//! | errors, and the [`ErrorKind`] to match on | [`error`] |
//! | preview environments per branch or pull request behind one shared ingress, with lifetimes: [`preview::Previews`] | [`preview`] (where the edge is built: [`preview/edge.rs`][src/preview/edge.rs]; which previews expire: [`preview/lifetime.rs`][src/preview/lifetime.rs]) |
//! | what is deployed on a target, from any process, by labels: [`environments`], [`FoundEnvironment::down`] | [`engine/inventory.rs`][src/engine/inventory.rs] |
//! | a test harness that never leaks: [`testing::TestEnv`], [`testing::SharedEnv`], the reaper (feature `testing`) | [`testing`] (the reaper's decision: [`testing/owner.rs`][src/testing/owner.rs]) |
//!
//! <!-- Source files, as docs.rs shows them. -->
//! [src/backup/postgres.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backup/postgres.rs
//! [src/compose/service.rs]: https://docs.rs/crate/harbormaster/latest/source/src/compose/service.rs
//! [src/engine/dispatch.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/dispatch.rs
//! [src/engine/rollout/batches.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/rollout/batches.rs
//! [src/engine/rollout/rolling.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/rollout/rolling.rs
//! [src/engine/orchestrated.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/orchestrated.rs
//! [src/engine/images.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/images.rs
//! [src/backend/docker/pull.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/docker/pull.rs
//! [src/backend/docker/context.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/docker/context.rs
//! [src/state/mod.rs]: https://docs.rs/crate/harbormaster/latest/source/src/state/mod.rs
//! [src/state/lock.rs]: https://docs.rs/crate/harbormaster/latest/source/src/state/lock.rs
//! [src/state/revisions.rs]: https://docs.rs/crate/harbormaster/latest/source/src/state/revisions.rs
//! [src/state/audit.rs]: https://docs.rs/crate/harbormaster/latest/source/src/state/audit.rs
//! [src/state/jobs.rs]: https://docs.rs/crate/harbormaster/latest/source/src/state/jobs.rs
//! [src/engine/traffic.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/traffic.rs
//! [src/backend/label.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/label.rs
//! [src/backend/linked.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/linked.rs
//! [src/backend/docker/containers.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/docker/containers.rs
//! [src/backend/docker/transport.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/docker/transport.rs
//! [src/backend/docker/store.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/docker/store.rs
//! [src/backend/docker/state.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/docker/state.rs
//! [src/backend/swarm/spec.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/swarm/spec.rs
//! [src/backend/fly/config.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/fly/config.rs
//! [src/backend/fly/records.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/fly/records.rs
//! [src/backend/fly/api.rs]: https://docs.rs/crate/harbormaster/latest/source/src/backend/fly/api.rs
//! [src/engine/placement.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/placement.rs
//! [src/engine/inventory.rs]: https://docs.rs/crate/harbormaster/latest/source/src/engine/inventory.rs
//! [src/preview/edge.rs]: https://docs.rs/crate/harbormaster/latest/source/src/preview/edge.rs
//! [src/preview/lifetime.rs]: https://docs.rs/crate/harbormaster/latest/source/src/preview/lifetime.rs
//! [src/testing/owner.rs]: https://docs.rs/crate/harbormaster/latest/source/src/testing/owner.rs
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `docker` (default) | [`DockerBackend`]: a Docker engine on the local socket, `DOCKER_HOST` or an address |
//! | `ssh` | [`SshHost`] (an engine over SSH, with the system's OpenSSH) and [`Fleet`] (several hosts with roles) |
//! | `swarm` | [`SwarmBackend`]: a Docker Swarm that rolls out by itself |
//! | `fly` | [`FlyBackend`]: Fly.io's Machines API over HTTPS |
//! | `compose` | [`Environment::from_compose`] and [`compose::Compose`] |
//! | `backup` | [`backup`]: PostgreSQL dumps to S3-compatible storage, retention, restore |
//! | `testing` | `testing`: a test harness whose environments never leak |
//! | `test-util` | `backend::memory`: an in-memory runtime with fault injection |
//!
//! ## Guarantees
//! - Every wait has a deadline the library enforces: no call hangs forever. A deadline that ends a
//!   rollout rolls it back: the old version serves again.
//! - A failed health gate names the service and container, the last probe results and log lines,
//!   and says when the container died (with its exit code) or crash-loops.
//! - Secret values appear only in the container's environment: never in `Debug`, events, `tracing`,
//!   the `log` facade, errors, labels, plans or stored records; text that comes back from a target
//!   is scrubbed of them ([`scrub`]).
//! - A job runs exactly once per configuration, whatever process is killed when.
//! - The deploy lock is taken over only when its holder is provably gone (its process, in the same
//!   PID namespace, or its lease); the state on the target survives `docker system prune -a`, and a
//!   lost one is noticed ([`Error::StateLost`]), never read as empty.
//! - What builds is what the engine takes, and nothing panics on input.
//! - Everything created carries `io.harbormaster.*` labels; [`Environment::down`] removes it all
//!   (named volumes only when asked).

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// What only some backends use is dead in a build without them; the build with every feature
// (CI's clippy) still finds what no backend uses.
#![cfg_attr(
    not(all(feature = "ssh", feature = "swarm", feature = "fly", feature = "compose", feature = "backup")),
    allow(dead_code, unused_imports)
)]

pub mod backend;
#[cfg(feature = "backup")]
pub mod backup;
mod clock;
#[cfg(feature = "compose")]
pub mod compose;
mod duration;
pub mod engine;
pub mod error;
pub mod events;
#[cfg(test)]
mod fuzz;
pub mod health;
pub mod ingress;
pub mod json;
pub mod model;
pub mod plan;
pub mod preview;
mod process;
pub mod registry;
mod rfc3339;
pub mod scrub;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "docker")]
pub use backend::docker::{DockerBackend, DockerBackendBuilder, ProbeRoute};
#[cfg(feature = "ssh")]
pub use backend::fleet::{Fleet, FleetBuilder, FleetHost};
#[cfg(feature = "fly")]
pub use backend::fly::{FlyBackend, FlyBackendBuilder};
#[cfg(feature = "ssh")]
pub use backend::ssh::{HostKeyPolicy, HostReport, SshHost, SshHostBuilder};
#[cfg(feature = "swarm")]
pub use backend::swarm::{SwarmBackend, SwarmBackendBuilder};
pub use backend::{
    Backend, Capabilities, ExecOutput, HostInfo, ImageInfo, ImageShipping, ImageStore, Instance, InstanceFiles,
    InstanceRuntime, InstanceState, LogLine, LogStream, Orchestrator, RecordStore, Topology,
};
pub use engine::{
    environments, ApplyRun, AuditEntry, Deployment, Down, DownReport, Endpoint, Event, EventKind, FoundEnvironment,
    Health, InstanceStatus, LockHolder, LogOptions, Revision, RolloutOutcome, ServiceStatus, Status,
};
pub use error::{ApplyFailure, Error, ErrorKind, HealthFailure, RegistryErrorKind, Result, ValidationError};
pub use health::ProbeRecord;
pub use model::{
    Amount, Build, BuildOptions, CanaryStep, Condition, ContainerFile, ContainerOptions, Device, DeviceRequest,
    EngineHealthcheck, Environment, EnvironmentBuilder, HealthCheck, HostEntry, ImageSource, Ingress, IngressBuilder,
    Logging, MountOptions, NetworkMode, OnFailure, Port, Probe, Propagation, Publish, PullPolicy, Relabel, Resources,
    RestartPolicy, Rollout, Route, Secret, Service, ServiceBuilder, ServiceKind, ServiceRef, Strategy, Tls, Ulimit,
    Volume, VolumeSource,
};
pub use plan::{Action, ImageAction, ImagePlan, Plan, ServicePlan};
pub use registry::{ImageRef, PullProgress, RegistryAuth};

/// The README's code, compiled as doctests so that what a new user pastes builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The zero-downtime recipe's code (`docs/zero-downtime.md`), compiled likewise.
#[cfg(doctest)]
#[doc = include_str!("../docs/zero-downtime.md")]
pub struct ZeroDowntimeDoctests;
