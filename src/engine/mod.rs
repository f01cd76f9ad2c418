//! The engine: carries out plans on a [`Backend`] and runs day-two operations.
//!
//! Entry points are methods on [`Environment`]: [`plan`](Environment::plan),
//! [`apply`](Environment::apply), [`apply_streaming`](Environment::apply_streaming),
//! [`down`](Environment::down), [`status`](Environment::status), [`logs`](Environment::logs) and
//! [`exec`](Environment::exec).
//!
//! - `apply.rs`: the apply itself: the lock, the plan, images, dependency-ordered concurrent
//!   service runs, the audit entry.
//! - `dispatch.rs`: which service runs when: its dependencies' conditions, then a job to its
//!   exit, a service through its rollout or the target's own; its revision.
//! - `service_run.rs`: the steps of one service's run (create, start, retire, gates, deadlines).
//! - `rollout/`: how instances are replaced: `batches.rs` (where a rollout picks its next
//!   batch), `rolling.rs`, `canary.rs` (and blue/green), `steps.rs` (launch, rotation changes,
//!   drain and stop), `recovery.rs` (rollback, pause, fail).
//! - `orchestrated.rs`: a service on a target that rolls out by itself (a swarm): hand-over,
//!   progress, the deadline, outside checks.
//! - `traffic.rs`: which instances receive traffic, pushed to the ingress.
//! - `retire.rs`: stopping and removing instances, the last step of every replacement.
//! - `files.rs`: files written into instances before they start, secret files read back.
//! - `deployment.rs`: the [`Deployment`] an apply returns, with endpoints.
//! - `ops.rs`: down, status, logs, exec.
//! - `inventory.rs`: the environments on a target, found by their labels from any process.

mod apply;
mod deployment;
mod dispatch;
mod files;
mod images;
mod inventory;
mod job_exit;
mod ops;
mod orchestrated;
mod placement;
mod promotion;
mod retire;
mod rollout;
mod service_run;
mod traffic;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::Stream;
use tokio::sync::mpsc;

pub use crate::error::LockHolder;
pub use crate::events::{Event, EventKind, RolloutOutcome};
pub use crate::state::audit::AuditEntry;
pub use crate::state::revisions::Revision;
#[cfg(feature = "testing")]
pub(crate) use apply::{resolved, scope_of};
pub use deployment::{Deployment, Endpoint};
pub use inventory::{environments, FoundEnvironment};
pub use ops::{Down, DownReport, Health, InstanceStatus, LogOptions, ServiceStatus, Status};
#[cfg(test)]
pub(crate) use rollout::batches as rollout_batches;

use crate::backend::{hosts_of, Backend, ExecOutput, LogLine};
use crate::error::{Error, Result};
use crate::events::{with_sink, EventSink};
use crate::model::{Environment, Service, ServiceKind};
use crate::plan::spec::Template;
use crate::plan::Plan;
use crate::state::{audit, promotion as waiting, revisions, Store};

impl Environment {
    /// What [`apply`](Self::apply) would do, and why, without changing anything.
    /// (Services with a build are built, since their image ID decides whether they changed.)
    pub async fn plan<B: Backend>(&self, backend: &B) -> Result<Plan> {
        let sink = EventSink::new(self.qualified_name(), None);
        with_sink(sink.clone(), apply::plan(self, backend, &sink)).await.map_err(Error::scrubbed)
    }

    /// Makes the target match the description: creates, replaces (health-gated), scales and removes,
    /// in dependency order, within the environment's deadline. Re-applying an unchanged environment
    /// touches nothing.
    ///
    /// ```no_run
    /// # async fn f() -> harbormaster::Result<()> {
    /// use harbormaster::{DockerBackend, Environment, Service, Port};
    /// let web = Service::builder("web").image("local/web:1").port(Port::tcp(80).publish_ephemeral()).build()?;
    /// let env = Environment::builder("shop", "staging").service(web).build()?;
    /// let docker = DockerBackend::connect().await?;
    /// let deployed = env.apply(&docker).await?;
    /// println!("web is at {}", deployed.endpoint("web", 80)?.http_url());
    /// # Ok(()) }
    /// ```
    pub async fn apply<B: Backend>(&self, backend: &B) -> Result<Deployment> {
        let sink = EventSink::new(self.qualified_name(), None);
        with_sink(sink.clone(), apply::apply(self, backend, sink)).await.map_err(Error::scrubbed)
    }

    /// Like [`apply`](Self::apply), as a stream of progress [`Event`]s; the result comes from
    /// [`ApplyRun::finish`]. The apply runs on its own task and finishes even if the stream is dropped.
    ///
    /// ```no_run
    /// # async fn f(env: harbormaster::Environment, docker: harbormaster::DockerBackend) -> harbormaster::Result<()> {
    /// use futures::StreamExt;
    /// let mut run = env.apply_streaming(&docker);
    /// while let Some(event) = run.next().await {
    ///     println!("{event}"); // or serde_json::to_string(&event) for a program
    /// }
    /// let deployed = run.finish().await?;
    /// # Ok(()) }
    /// ```
    pub fn apply_streaming<B: Backend + Clone>(&self, backend: &B) -> ApplyRun {
        let (tx, rx) = mpsc::unbounded_channel();
        let env = self.clone();
        let backend = backend.clone();
        let handle = tokio::spawn(async move {
            let sink = EventSink::new(env.qualified_name(), Some(tx));
            with_sink(sink.clone(), apply::apply(&env, &backend, sink)).await.map_err(Error::scrubbed)
        });
        ApplyRun { events: rx, handle }
    }

    /// Rolls `service` back to the revision before the one it runs: the newest earlier revision
    /// whose rollout succeeded and that differs from the current one. Image and configuration are
    /// restored with the service's own rollout (so with zero dropped requests behind the ingress),
    /// under the deploy lock; a new revision records it. Nothing else in the environment changes.
    ///
    /// The next [`apply`](Self::apply) rolls the service out to the description again.
    ///
    /// ```no_run
    /// # async fn f(env: harbormaster::Environment, docker: harbormaster::DockerBackend) -> harbormaster::Result<()> {
    /// for r in env.history(&docker, "api").await? {
    ///     println!("{} {} {} {}", r.number, r.outcome, r.changes.join("; "), if r.current { "<- current" } else { "" });
    /// }
    /// env.rollback(&docker, "api").await?;
    /// # Ok(()) }
    /// ```
    pub async fn rollback<B: Backend>(&self, backend: &B, service: &str) -> Result<Deployment> {
        let (revs, _, _) = self.revisions_of(backend, service).await.map_err(Error::scrubbed)?;
        let Some(target) = revisions::previous(&revs) else {
            return Err(Error::NoRevision {
                service: service.to_string(),
                reason: "there is no earlier successful revision that differs from the one running".into(),
            });
        };
        self.rollback_to(backend, service, target.number).await
    }

    /// Rolls `service` out to revision `revision` (a number from [`history`](Self::history)), as
    /// [`rollback`](Self::rollback) does.
    pub async fn rollback_to<B: Backend>(&self, backend: &B, service: &str, revision: u64) -> Result<Deployment> {
        let (revs, svc, waiting) = self.revisions_of(backend, service).await.map_err(Error::scrubbed)?;
        let no = |reason: String| Error::NoRevision { service: service.to_string(), reason };
        if waiting {
            return Err(no("a rollout of it waits for a promotion; promote or abort it first".into()));
        }
        let Some(rev) = revs.iter().find(|r| r.number == revision) else {
            let kept: Vec<String> = revs.iter().map(|r| r.number.to_string()).collect();
            return Err(no(format!("it has no revision {revision} (kept: {})", kept.join(", "))));
        };
        let mut template = Template::from_recorded(svc, &rev.spec_json, &rev.image_id)
            .map_err(|reason| no(format!("revision {revision}: {reason}")))?;
        template.image_pin = rev.image_pin.clone();
        match backend.images() {
            // A target without an image store (a swarm) pulls the revision's image by reference
            // itself, and places its tasks itself within the role's hosts.
            None => {
                template.placement =
                    placement::allowed(self, &hosts_of(backend))?.remove(&svc.name).unwrap_or_default();
                template.self_placed = true;
            }
            Some(images) => {
                template.place_on(placement::hosts_of(self, svc, &hosts_of(backend))?);
                self.bring_back_image(backend, images, &template, rev).await?;
            }
        }
        let op = apply::Operation::Rollback { service: service.to_string(), template: Box::new(template), revision };
        let sink = EventSink::new(self.qualified_name(), None);
        apply::execute(self, backend, sink, op).await.map_err(Error::scrubbed)
    }

    /// Makes sure the target has the image a revision ran: there, restored from the kept copy
    /// (a prune may have removed it), or pulled by its digest.
    async fn bring_back_image<B: Backend>(
        &self,
        backend: &B,
        images: &dyn crate::backend::ImageStore,
        template: &Template,
        rev: &Revision,
    ) -> Result<()> {
        let scope = apply::scope_of(self);
        let revision = rev.number;
        let no = |reason: String| Error::NoRevision { service: template.service.name.clone(), reason };
        let reference = match &template.service.image {
            crate::model::ImageSource::Reference(r) => Some(r.as_str()),
            crate::model::ImageSource::Build(_) => None,
        };
        let restored = images.restore_image(&scope, &rev.image_id, reference).await;
        if let Some(r) = backend.records() {
            r.release_state(&scope).await;
        }
        if !restored? {
            // Gone with no kept copy: its registry still has it by digest, whatever the tag says now.
            let Some(pin) = &rev.image_pin else {
                return Err(no(format!(
                    "revision {revision}: its image {} is no longer on the target, no copy of it was kept and \
                     it has no registry digest to pull",
                    rev.image_id
                )));
            };
            let pulled = images.pull_image(pin, &|_| {}).await.map_err(Error::scrubbed)?;
            if pulled.id != rev.image_id {
                return Err(no(format!(
                    "revision {revision}: {pin} is image {} in its registry, not the {} the revision ran",
                    pulled.id, rev.image_id
                )));
            }
        }
        Ok(())
    }

    /// Promotes the rollout of `service` that waits for it
    /// ([`Rollout::manual_promotion`](crate::Rollout::manual_promotion)): all traffic goes to the new
    /// set, the old one drains and is removed, and the revision is recorded. Works from any process:
    /// the waiting state is on the target.
    ///
    /// ```no_run
    /// # async fn f(env: harbormaster::Environment, docker: harbormaster::DockerBackend) -> harbormaster::Result<()> {
    /// use harbormaster::RolloutOutcome;
    /// let deployed = env.apply(&docker).await?;
    /// if let Some(RolloutOutcome::AwaitingPromotion { weight }) = deployed.outcome("web") {
    ///     println!("the new web gets {weight} % of the traffic; check it, then:");
    ///     env.promote(&docker, "web").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn promote<B: Backend>(&self, backend: &B, service: &str) -> Result<Deployment> {
        let op = apply::Operation::Promotion { service: service.to_string(), promote: true };
        let sink = EventSink::new(self.qualified_name(), None);
        with_sink(sink.clone(), apply::execute(self, backend, sink, op)).await.map_err(Error::scrubbed)
    }

    /// Aborts the rollout of `service` that waits for its promotion: all traffic back to the old set,
    /// the new set drains and is removed, and the revision is recorded as rolled back.
    pub async fn abort_promotion<B: Backend>(&self, backend: &B, service: &str) -> Result<Deployment> {
        let op = apply::Operation::Promotion { service: service.to_string(), promote: false };
        let sink = EventSink::new(self.qualified_name(), None);
        with_sink(sink.clone(), apply::execute(self, backend, sink, op)).await.map_err(Error::scrubbed)
    }

    /// The revisions of `service` kept on the target, oldest first, with time, outcome, what
    /// changed and which one runs now. [`Error::StateLost`] if its records were removed while its
    /// containers run (never an empty history).
    pub async fn history<B: Backend>(&self, backend: &B, service: &str) -> Result<Vec<Revision>> {
        Ok(self.revisions_of(backend, service).await.map_err(Error::scrubbed)?.0)
    }

    /// The environment's audit trail on the target, oldest first: one entry per apply, rollback
    /// and promotion (the newest 100 are kept). [`Error::StateLost`] if its records were removed
    /// while its containers run.
    pub async fn audit_log<B: Backend>(&self, backend: &B) -> Result<Vec<AuditEntry>> {
        let scope = apply::scope_of(self);
        let read = async {
            let running = backend.list_instances(&scope).await?;
            let store = if self.ephemeral {
                Store::ephemeral(backend, &scope)
            } else {
                Store::open(backend, &scope, &running).await?
            };
            Ok(audit::list(&store).await)
        };
        let result = read.await;
        if let Some(r) = backend.records() {
            r.release_state(&scope).await;
        }
        result.map_err(Error::scrubbed)
    }

    /// A service's revisions, the service, and whether a rollout of it waits for its promotion.
    /// Refuses a job and a lost store.
    async fn revisions_of<B: Backend>(&self, backend: &B, service: &str) -> Result<(Vec<Revision>, &Service, bool)> {
        let svc = self.service(service).ok_or_else(|| Error::UnknownService {
            environment: self.qualified_name(),
            service: service.to_string(),
        })?;
        if svc.kind() != ServiceKind::Service {
            return Err(Error::NoRevision {
                service: service.to_string(),
                reason: "it is a job; jobs run once per change and have no revisions".into(),
            });
        }
        let scope = apply::scope_of(self);
        let read = async {
            let running = backend.list_instances(&scope).await?;
            let store = if self.ephemeral {
                Store::ephemeral(backend, &scope)
            } else {
                Store::open(backend, &scope, &running).await?
            };
            let waiting = waiting::pending(&store).await.iter().any(|p| p.service == service);
            Ok::<_, Error>((revisions::list(&store, service, &running).await, waiting))
        };
        let result = read.await;
        if let Some(r) = backend.records() {
            r.release_state(&scope).await;
        }
        let (revs, waiting) = result?;
        Ok((revs, svc, waiting))
    }

    /// Stops and removes every container and the network the environment owns. Named volumes are
    /// kept unless [`Down::with_volumes`] is given.
    pub async fn down<B: Backend>(&self, backend: &B, options: Down) -> Result<DownReport> {
        let sink = EventSink::new(self.qualified_name(), None);
        with_sink(sink.clone(), ops::down(self, backend, options, &sink)).await.map_err(Error::scrubbed)
    }

    /// Each service's instances, their state, and their health as one probe sees it now.
    pub async fn status<B: Backend>(&self, backend: &B) -> Result<Status> {
        ops::status(self, backend).await.map_err(Error::scrubbed)
    }

    /// The log lines of every instance of `service`, merged; with [`LogOptions::follow`], new lines
    /// as they come.
    pub async fn logs<B: Backend>(
        &self,
        backend: &B,
        service: &str,
        options: LogOptions,
    ) -> Result<BoxStream<'static, Result<LogLine>>> {
        ops::logs(self, backend, service, options).await.map_err(Error::scrubbed)
    }

    /// Runs a command in the first running instance of `service` (bounded by 60 s).
    pub async fn exec<B, I, S>(&self, backend: &B, service: &str, command: I) -> Result<ExecOutput>
    where
        B: Backend,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let command: Vec<String> = command.into_iter().map(Into::into).collect();
        ops::exec(self, backend, service, &command, Duration::from_secs(60)).await.map_err(Error::scrubbed)
    }
}

/// An apply in progress: a stream of [`Event`]s, then its result from [`finish`](Self::finish).
#[derive(Debug)]
pub struct ApplyRun {
    events: mpsc::UnboundedReceiver<Event>,
    handle: tokio::task::JoinHandle<Result<Deployment>>,
}

impl ApplyRun {
    /// Waits for the apply to end and returns its result (remaining events are discarded).
    pub async fn finish(self) -> Result<Deployment> {
        match self.handle.await {
            Ok(r) => r,
            Err(e) => Err(Error::backend("apply", "apply task", e)),
        }
    }
}

impl Stream for ApplyRun {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}
