//! What [`Previews`] does on a target: find the live previews (labels and audit records), plan
//! and bring one up, keep the edge in line, and remove previews (asked, expired, over the limit).
//! Changes to the set of previews run under the previews' lock on the target; a push to one
//! preview runs under that preview's own deploy lock only.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::edge::{self, Routed};
use super::{Preview, PreviewInfo, Previews, Removal, RemovalReason, MARK_CREATED, MARK_EDGE, MARK_SOURCE};
use crate::backend::{Backend, Scope};
use crate::engine::{environments, Deployment, Down};
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::model::Environment;
use crate::plan::Plan;
use crate::state::lock::DeployLock;

/// How long an operation waits for another process's change to the set of previews.
const ROSTER_WAIT: Duration = Duration::from_secs(600);

/// What bringing a preview up would do ([`Previews::plan`]). Serializes with the preview's
/// [`Plan`] under `plan`.
#[derive(Clone, Debug, Serialize)]
pub struct PreviewPlan {
    /// The preview's name (its own, or with a digest if another source has it).
    pub name: String,
    /// Its URLs.
    pub urls: Vec<String>,
    /// Whether it is new (and so seeded, and routed at the edge once up).
    pub new: bool,
    /// Previews that would be removed first, and why.
    pub removals: Vec<Removal>,
    /// What the preview runs differently from the base (fixed host ports made ephemeral).
    pub notes: Vec<String>,
    /// The preview environment's plan.
    pub plan: Plan,
}

impl fmt::Display for PreviewPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.new { "new" } else { "update" };
        writeln!(f, "preview {} ({state}) at {}", self.name, self.urls.join(", "))?;
        for r in &self.removals {
            writeln!(f, "  first, {r}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        if self.new {
            writeln!(f, "  the edge routes its hosts once it is up")?;
        }
        write!(f, "{}", self.plan)
    }
}

/// A preview brought up ([`Previews::up`]).
#[derive(Clone, Debug, Serialize)]
pub struct PreviewUp {
    /// Its name.
    pub name: String,
    /// Its URLs, through the edge.
    pub urls: Vec<String>,
    /// Whether it was new.
    pub new: bool,
    /// The backup key its data was restored from, if it was seeded.
    pub seeded: Option<String>,
    /// Previews removed on the way, and why.
    pub removed: Vec<Removal>,
    /// What the preview runs differently from the base.
    pub notes: Vec<String>,
    /// The preview environment as deployed.
    pub deployment: Deployment,
    /// The edge as deployed: its [`Deployment::ingress_endpoint`] is where the hosts answer.
    pub edge: Deployment,
}

impl PreviewUp {
    /// Its URLs, through the edge.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }
}

/// A preview found on the target.
struct Found {
    info: PreviewInfo,
    /// Its own ingress runs: the edge may route to it.
    routed: bool,
}

/// What is on the target: the previews, and whether the edge is.
struct Roster {
    previews: Vec<Found>,
    edge: bool,
}

impl Roster {
    fn infos(&self) -> Vec<PreviewInfo> {
        self.previews.iter().map(|f| f.info.clone()).collect()
    }
}

// Each public operation boxes its work (`*_inner`): what it awaits, applies of whole
// environments under a lock, would otherwise make the caller's future, and so a test's stack in a
// debug build, large enough to overflow it.
impl Previews {
    /// The live previews, oldest first, as found on `backend` by any process.
    pub async fn list<B: Backend>(&self, backend: &B) -> Result<Vec<PreviewInfo>> {
        Box::pin(self.list_inner(backend)).await
    }

    async fn list_inner<B: Backend>(&self, backend: &B) -> Result<Vec<PreviewInfo>> {
        Ok(self.roster(backend).await?.infos())
    }

    /// What [`up`](Self::up) would do: the preview's name, whether it is new, which previews it
    /// would remove first and why, and the preview environment's plan. Changes nothing.
    pub async fn plan<B: Backend>(&self, backend: &B, preview: &Preview) -> Result<PreviewPlan> {
        Box::pin(self.plan_inner(backend, preview)).await
    }

    async fn plan_inner<B: Backend>(&self, backend: &B, preview: &Preview) -> Result<PreviewPlan> {
        self.supported(backend)?;
        let roster = self.roster(backend).await?;
        let name = self.resolve(preview, &roster);
        let new = !roster.previews.iter().any(|f| f.info.name == name);
        let removals = self.lifetime.removals(&roster.infos(), SystemTime::now(), Some(&name), new);
        let (env, notes) = self.environment_of(preview, &name)?;
        let plan = Box::pin(env.plan(backend)).await?;
        Ok(PreviewPlan { urls: self.urls(&name), name, new, removals, notes, plan })
    }

    /// Brings the preview up, or rolls its changes out if it runs (a push): expired previews and,
    /// for a new one beyond the maximum, the oldest are removed first; a new preview is seeded
    /// and then routed at the edge. Pushes to different previews run in parallel and never touch
    /// each other; only a new or removed preview changes the edge.
    pub async fn up<B: Backend>(&self, backend: &B, preview: &Preview) -> Result<PreviewUp> {
        Box::pin(self.up_inner(backend, preview)).await
    }

    async fn up_inner<B: Backend>(&self, backend: &B, preview: &Preview) -> Result<PreviewUp> {
        self.supported(backend)?;
        let now = SystemTime::now();
        let (name, created, new, mut removed) = self
            .locked(backend, "preview up", async {
                let roster = self.roster(backend).await?;
                let name = self.resolve(preview, &roster);
                let existing = roster.previews.iter().find(|f| f.info.name == name);
                let created = existing.map_or(now, |f| f.info.created);
                let removals = self.lifetime.removals(&roster.infos(), now, Some(&name), existing.is_none());
                if !removals.is_empty() {
                    self.remove(backend, &roster, &removals).await?;
                }
                Ok((name, created, existing.is_none(), removals))
            })
            .await?;
        let (mut env, notes) = self.environment_of(preview, &name)?;
        env.labels.insert(MARK_CREATED.into(), unix(created));
        let seeded = if new { self.seed(backend, preview, &env).await? } else { None };
        let deployment = Box::pin(env.apply(backend)).await?;
        let (edge, more) = self
            .locked(backend, "preview routes", async {
                let roster = self.roster(backend).await?;
                // Parallel bring-ups may each have counted without the other: the limit holds again.
                let removals = self.lifetime.removals(&roster.infos(), SystemTime::now(), Some(&name), false);
                let edge = self.sync_edge(backend, &roster, &removals, true).await?;
                self.down_all(backend, &removals).await?;
                Ok((edge, removals))
            })
            .await?;
        removed.extend(more);
        let edge = edge.ok_or_else(|| {
            Error::backend("route a preview", format!("{}/{name}", self.base.project()), "its ingress is not running")
        })?;
        Ok(PreviewUp { urls: self.urls(&name), name, new, seeded, removed, notes, deployment, edge })
    }

    /// Removes preview `name` (from any process): its route at the edge first, then every
    /// container, its network, volumes and records. `None` if there is no such preview.
    pub async fn down<B: Backend>(&self, backend: &B, name: &str) -> Result<Option<Removal>> {
        Box::pin(self.down_inner(backend, name)).await
    }

    async fn down_inner<B: Backend>(&self, backend: &B, name: &str) -> Result<Option<Removal>> {
        self.locked(backend, "preview down", async {
            let roster = self.roster(backend).await?;
            if !roster.previews.iter().any(|f| f.info.name == name) {
                return Ok(None);
            }
            let removal = Removal { name: name.to_string(), reason: RemovalReason::Requested };
            self.remove(backend, &roster, std::slice::from_ref(&removal)).await?;
            Ok(Some(removal))
        })
        .await
    }

    /// Removes the previews past their time to live or idle expiry, and the oldest beyond the
    /// maximum: what a nightly job (or any process) runs.
    pub async fn expire<B: Backend>(&self, backend: &B) -> Result<Vec<Removal>> {
        Box::pin(self.expire_inner(backend)).await
    }

    async fn expire_inner<B: Backend>(&self, backend: &B) -> Result<Vec<Removal>> {
        self.locked(backend, "preview expiry", async {
            let roster = self.roster(backend).await?;
            let removals = self.lifetime.removals(&roster.infos(), SystemTime::now(), None, false);
            if !removals.is_empty() {
                self.remove(backend, &roster, &removals).await?;
            }
            Ok(removals)
        })
        .await
    }

    /// The environment `preview` runs as on `backend` (its name resolved as [`up`](Self::up)
    /// resolves it): for `status`, `logs`, `exec`, `history` or `rollback` of a preview from any
    /// process.
    pub async fn environment<B: Backend>(&self, backend: &B, preview: &Preview) -> Result<Environment> {
        let roster = Box::pin(self.roster(backend)).await?;
        let name = self.resolve(preview, &roster);
        Ok(self.environment_of(preview, &name)?.0)
    }

    /// Brings the edge in line with the live previews (after a process died between a preview's
    /// bring-up and its route) and returns it; `None` when there is neither edge nor preview.
    pub async fn sync<B: Backend>(&self, backend: &B) -> Result<Option<Deployment>> {
        Box::pin(self.sync_inner(backend)).await
    }

    async fn sync_inner<B: Backend>(&self, backend: &B) -> Result<Option<Deployment>> {
        self.locked(backend, "preview routes", async {
            let roster = self.roster(backend).await?;
            self.sync_edge(backend, &roster, &[], false).await
        })
        .await
    }

    /// Removes every preview and the edge, with their volumes and records.
    pub async fn teardown<B: Backend>(&self, backend: &B) -> Result<Vec<Removal>> {
        Box::pin(self.teardown_inner(backend)).await
    }

    async fn teardown_inner<B: Backend>(&self, backend: &B) -> Result<Vec<Removal>> {
        self.locked(backend, "preview teardown", async {
            let roster = self.roster(backend).await?;
            let removals: Vec<Removal> = roster
                .previews
                .iter()
                .map(|f| Removal { name: f.info.name.clone(), reason: RemovalReason::Requested })
                .collect();
            if roster.edge {
                Environment::named(self.base.project(), &self.edge_name)?
                    .down(backend, Down::default().with_volumes())
                    .await?;
            }
            self.down_all(backend, &removals).await?;
            Ok(removals)
        })
        .await
    }

    /// Refuses, before anything changes, a target that cannot run the edge's relays (checked on
    /// one made for the purpose): a relay joins its preview's network, which a swarm's service
    /// or a Fly machine cannot.
    fn supported<B: Backend>(&self, backend: &B) -> Result<()> {
        let relay = edge::relay(self.base.project(), "check", &self.edge)?;
        let refused: Vec<String> = backend.limits(&relay).into_iter().filter(|l| l.refused).map(|l| l.what).collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(Error::unsupported(
            backend.describe(),
            "preview environments",
            format!(
                "each preview is reached through a relay on its own network, and this target refuses it: {}",
                refused.join("; ")
            ),
        ))
    }

    /// `scheme://host` for each of the preview's hosts.
    fn urls(&self, name: &str) -> Vec<String> {
        self.hosts(name).into_iter().map(|h| format!("{}://{h}", self.scheme())).collect()
    }

    /// The preview's name on the target: its own, unless a preview of another source has it.
    fn resolve(&self, preview: &Preview, roster: &Roster) -> String {
        let plain = preview.name.name();
        let digest = preview.name.source_digest();
        match roster.previews.iter().find(|f| f.info.name == plain) {
            Some(f) if f.info.source_digest != digest => preview.name.disambiguated().name().to_string(),
            _ => plain.to_string(),
        }
    }

    /// The previews' lock: the same records and takeover rules as an environment's deploy lock.
    fn roster_scope(&self) -> Scope {
        Scope::new(self.base.project(), format!("{}-roster", self.edge_name))
    }

    /// Runs `work` holding the previews' lock.
    async fn locked<B: Backend, T>(
        &self,
        backend: &B,
        operation: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let records = backend.records().ok_or_else(|| {
            Error::unsupported(backend.describe(), "manage previews", "it keeps no records, so there is no lock")
        })?;
        let scope = self.roster_scope();
        let sink = EventSink::new(scope.qualified(), None);
        let lock = DeployLock::acquire(records, &scope, &sink, operation, self.actor.as_deref(), ROSTER_WAIT).await?;
        // Boxed: the work (applies of whole environments) is a large future.
        let result = lock.hold(records, Box::pin(work)).await;
        let released = lock.release(records).await;
        let value = result?;
        released?;
        Ok(value)
    }

    /// The previews of this edge on the target, oldest first.
    async fn roster<B: Backend>(&self, backend: &B) -> Result<Roster> {
        let project = self.base.project();
        let mut previews = Vec::new();
        let mut edge = false;
        for e in environments(backend).await? {
            if e.project != project {
                continue;
            }
            if e.name == self.edge_name {
                edge = true;
            }
            if e.labels.get(MARK_EDGE) != Some(&self.edge_name) {
                continue;
            }
            let env = e.as_environment()?;
            let created = e
                .labels
                .get(MARK_CREATED)
                .and_then(|s| s.parse::<u64>().ok())
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                .unwrap_or_else(SystemTime::now);
            let last = match env.audit_log(backend).await {
                Ok(entries) => entries.iter().filter_map(|a| a.at.checked_add(a.took)).max(),
                Err(_) => None,
            };
            let last_deploy = last.map_or(created, |l| l.max(created));
            let instances = backend.list_instances(&Scope::new(project, &e.name)).await.map_err(Error::scrubbed)?;
            let routed = instances.iter().any(|i| i.service == edge::PREVIEW_INGRESS && i.is_running());
            previews.push(Found {
                info: PreviewInfo {
                    hosts: self.hosts(&e.name),
                    created,
                    last_deploy,
                    expires: self.lifetime.expires(created, last_deploy),
                    source_digest: e.labels.get(MARK_SOURCE).cloned().unwrap_or_default(),
                    name: e.name,
                },
                routed,
            });
        }
        previews.sort_by(|a, b| a.info.created.cmp(&b.info.created).then_with(|| a.info.name.cmp(&b.info.name)));
        Ok(Roster { previews, edge })
    }

    /// Applies the edge with a relay for every routed preview but `without`; `None` when there is
    /// nothing to route and no edge (unless `force`).
    async fn sync_edge<B: Backend>(
        &self,
        backend: &B,
        roster: &Roster,
        without: &[Removal],
        force: bool,
    ) -> Result<Option<Deployment>> {
        let routed: Vec<Routed> = roster
            .previews
            .iter()
            .filter(|f| f.routed && !without.iter().any(|r| r.name == f.info.name))
            .map(|f| Routed { name: f.info.name.clone(), hosts: f.info.hosts.clone() })
            .collect();
        if routed.is_empty() && !roster.edge && !force {
            return Ok(None);
        }
        let env = edge::environment(self.base.project(), &self.edge_name, &self.edge, &routed, self.actor.as_deref())?;
        Ok(Some(Box::pin(env.apply(backend)).await?))
    }

    /// Takes `removals` out of the edge, then removes them.
    async fn remove<B: Backend>(&self, backend: &B, roster: &Roster, removals: &[Removal]) -> Result<()> {
        self.sync_edge(backend, roster, removals, false).await?;
        self.down_all(backend, removals).await
    }

    /// Removes each preview of `removals`: containers, network, volumes, records.
    async fn down_all<B: Backend>(&self, backend: &B, removals: &[Removal]) -> Result<()> {
        for r in removals {
            tracing::info!(preview = %r.name, reason = %r, "removing a preview");
            Box::pin(Environment::named(self.base.project(), &r.name)?.down(backend, Down::default().with_volumes()))
                .await?;
        }
        Ok(())
    }

    /// Seeds a new preview: its database (and what that depends on) first, the dump restored
    /// into it; `None` without a seed.
    #[cfg(feature = "backup")]
    async fn seed<B: Backend>(&self, backend: &B, preview: &Preview, env: &Environment) -> Result<Option<String>> {
        let Some(seed) = &preview.seed else { return Ok(None) };
        let mut keep = BTreeSet::from([seed.service().to_string()]);
        loop {
            let before = keep.len();
            for s in env.services() {
                if keep.contains(s.name()) {
                    keep.extend(s.dependencies().iter().map(|d| d.service.clone()));
                }
            }
            if keep.len() == before {
                break;
            }
        }
        let mut first = env.clone();
        first.ingress = None;
        first.services.retain(|s| keep.contains(s.name()));
        Box::pin(first.apply(backend)).await?;
        seed.restore(&self.base, env, backend).await.map(Some)
    }

    #[cfg(not(feature = "backup"))]
    async fn seed<B: Backend>(&self, _: &B, _: &Preview, _: &Environment) -> Result<Option<String>> {
        Ok(None)
    }
}

fn unix(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs().to_string()
}
