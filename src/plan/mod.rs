//! The planner: compares the desired [`Environment`] with what runs and decides,
//! per service, what to create, replace, scale, remove or leave alone, and why.
//!
//! `compute` is a pure function of the description, the resolved image IDs and the observed
//! instances, so every decision is unit-tested without an engine. The [`engine`](crate::engine)
//! carries a [`Plan`] out.

pub(crate) mod spec;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::backend::{Instance, InstanceState};
use crate::model::{Environment, ServiceKind, Strategy};
use spec::{describe_changes, Template};

/// What applying the environment would do, service by service, with the reasons.
///
/// Its `Display` is the plan for people; it serializes (the [JSON shape](crate::json)) for a
/// program, such as a bot posting the plan on a pull request:
///
/// ```json
/// {"environment": "shop-staging",
///  "services": [{"service": "api", "action": {"kind": "replace", "instances": 2, "strategy": "rolling"},
///                "reasons": ["env MODE changed"], "remove": ["shop-staging-api-0-…"],
///                "awaiting_promotion": null}],
///  "images": [{"reference": "postgres:15", "services": ["db"], "image_id": "sha256:…",
///              "digest": null, "action": {"kind": "present"}}],
///  "limits": [], "changes": true}
/// ```
#[derive(Clone, Debug)]
pub struct Plan {
    /// `project-environment`.
    pub environment: String,
    /// One entry per described service, then one per service found running but no longer described.
    pub services: Vec<ServicePlan>,
    /// Where each image comes from: present, restored, pulled (with the digest its registry
    /// gives now), or built. Empty for plans made inside an apply.
    pub images: Vec<ImagePlan>,
    /// What a target that rolls out by itself handles differently from the library, or cannot
    /// honour (an apply refuses while any is `refused`); empty elsewhere.
    pub limits: Vec<crate::backend::Limit>,
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut o = s.serialize_struct("Plan", 5)?;
        o.serialize_field("environment", &self.environment)?;
        o.serialize_field("services", &self.services)?;
        o.serialize_field("images", &self.images)?;
        o.serialize_field("limits", &self.limits)?;
        o.serialize_field("changes", &!self.is_noop())?;
        o.end()
    }
}

/// What happens to one image before the services using it are planned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImagePlan {
    /// The reference (or a build's tag).
    pub reference: String,
    /// The services that use it.
    pub services: Vec<String>,
    /// Its image ID, when the target has it (or will, from a build).
    pub image_id: Option<String>,
    /// Its registry digest (`sha256:…`): the engine's copy's, or what the tag points to now when it
    /// would be pulled.
    pub digest: Option<String>,
    /// What happens to it.
    pub action: ImageAction,
}

/// Where an image comes from. Serializes as `{"kind": "tag_moved", "from": "sha256:…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageAction {
    /// The target has it.
    Present,
    /// Brought back from what the environment last ran under this reference (a prune removed
    /// its tag).
    Restored,
    /// Not on the target: pulled from its registry.
    Pull,
    /// The tag points to another digest than the target's copy ([`PullPolicy::Always`](crate::PullPolicy::Always)):
    /// the new one is pulled and the services using it are replaced.
    TagMoved {
        /// The digest of the target's copy.
        from: Option<String>,
    },
    /// Built from its context.
    Built,
    /// Handed to a target without an image store of its own (a swarm, a cloud API) by
    /// reference: the target pulls and pins it.
    ByTarget,
}

/// What happens to one service. Serializes as `{"service", "action", "reasons", "remove",
/// "awaiting_promotion"}`: `remove` names the instances that would be stopped and removed,
/// `awaiting_promotion` the new set's traffic weight while it waits for a promotion (else `null`).
#[derive(Clone, Debug)]
pub struct ServicePlan {
    /// The service.
    pub service: String,
    /// The action.
    pub action: Action,
    /// Why (empty when unchanged).
    pub reasons: Vec<String>,
    pub(crate) keep: Vec<Instance>,
    pub(crate) replace: Vec<(u32, Instance)>,
    pub(crate) create: Vec<u32>,
    pub(crate) retire: Vec<Instance>,
    /// The new set waits for a promotion at this weight; nothing is touched.
    pub(crate) awaiting: Option<u8>,
}

/// The kind of change for one service. Serializes as `{"kind": "scale", "from": 1, "to": 3}`; a
/// replacement's strategy by its name (`recreate`, `start_first`, `rolling`, `blue_green`, `canary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Nothing runs yet: create this many instances (a job: run it).
    Create {
        /// Instances to create.
        replicas: u32,
    },
    /// Instances are out of date: replace them with this strategy.
    Replace {
        /// Instances to replace.
        instances: u32,
        /// The strategy that will be used.
        #[serde(serialize_with = "strategy_name")]
        strategy: Strategy,
    },
    /// Only the number of instances changes.
    Scale {
        /// Running now.
        from: u32,
        /// Wanted.
        to: u32,
    },
    /// Not described any more: remove every instance.
    Remove {
        /// Instances to remove.
        instances: u32,
    },
    /// Already as described.
    Unchanged,
}

fn strategy_name<S: serde::Serializer>(strategy: &Strategy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(strategy.name())
}

impl Serialize for ServicePlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut o = s.serialize_struct("ServicePlan", 5)?;
        o.serialize_field("service", &self.service)?;
        o.serialize_field("action", &self.action)?;
        o.serialize_field("reasons", &self.reasons)?;
        o.serialize_field("remove", &self.instances_to_remove())?;
        o.serialize_field("awaiting_promotion", &self.awaiting)?;
        o.end()
    }
}

impl ServicePlan {
    /// Whether applying would touch this service.
    pub fn changes_anything(&self) -> bool {
        self.action != Action::Unchanged
    }

    /// Names of the instances that would be stopped and removed (replaced, surplus or orphaned).
    pub fn instances_to_remove(&self) -> Vec<String> {
        self.replace.iter().map(|(_, i)| i.name.clone()).chain(self.retire.iter().map(|i| i.name.clone())).collect()
    }
}

impl Plan {
    /// Whether applying would change anything.
    pub fn is_noop(&self) -> bool {
        self.services.iter().all(|s| !s.changes_anything())
    }

    /// The plan of one service.
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.service == name)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plan for {}:", self.environment)?;
        let width = self.services.iter().map(|s| s.service.len()).max().unwrap_or(0);
        for s in &self.services {
            let (sign, what) = match &s.action {
                Action::Create { replicas } => ('+', format!("create {replicas} instance(s)")),
                Action::Replace { instances, strategy } => {
                    ('~', format!("replace {instances} instance(s) ({strategy})"))
                }
                Action::Scale { from, to } => ('^', format!("scale {from} -> {to}")),
                Action::Remove { instances } => ('-', format!("remove {instances} instance(s)")),
                Action::Unchanged if s.awaiting.is_some() => ('?', "awaiting promotion".to_string()),
                Action::Unchanged => ('=', "unchanged".to_string()),
            };
            write!(f, "\n  {sign} {:width$}  {what}", s.service)?;
            if !s.reasons.is_empty() {
                write!(f, ": {}", s.reasons.join("; "))?;
            }
        }
        for i in &self.images {
            let digest = i.digest.as_deref().map(|d| format!(" @ {}", short_id(d))).unwrap_or_default();
            let what = match &i.action {
                ImageAction::Present => "present".to_string(),
                ImageAction::Restored => "restored from what last ran".to_string(),
                ImageAction::Pull => "pull (not on the target)".to_string(),
                ImageAction::TagMoved { from } => {
                    format!("pull: the tag now points elsewhere (was {})", from.as_deref().map_or("unknown", short_id))
                }
                ImageAction::Built => "built".to_string(),
                ImageAction::ByTarget => "pulled by the target".to_string(),
            };
            write!(f, "\n  image {}{digest}: {what}", i.reference)?;
        }
        for l in &self.limits {
            write!(f, "\n  {l}")?;
        }
        Ok(())
    }
}

/// The configuration (spec hash, image ID) each job last completed with, as the state store records it.
pub(crate) type CompletedJobs = HashMap<String, (String, String)>;

/// Decides what to do. `templates` holds the desired state of every described service.
pub(crate) fn compute(
    env: &Environment,
    templates: &HashMap<String, Template>,
    observed: &[Instance],
    completed: &CompletedJobs,
) -> Plan {
    let mut by_service: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for i in observed {
        by_service.entry(i.service.as_str()).or_default().push(i);
    }
    let mut services = Vec::new();
    for svc in &env.services {
        let Some(t) = templates.get(&svc.name) else { continue };
        let found = by_service.remove(svc.name.as_str()).unwrap_or_default();
        services.push(match svc.kind {
            ServiceKind::Job => plan_job(t, &found, completed.get(&svc.name)),
            ServiceKind::Service => plan_service(t, &found),
        });
    }
    for (name, found) in by_service {
        services.push(ServicePlan {
            service: name.to_string(),
            action: Action::Remove { instances: found.len() as u32 },
            reasons: vec!["not in the description any more".into()],
            keep: Vec::new(),
            replace: Vec::new(),
            create: Vec::new(),
            retire: found.into_iter().cloned().collect(),
            awaiting: None,
        });
    }
    Plan { environment: env.qualified_name(), services, images: Vec::new(), limits: Vec::new() }
}

/// Why an instance does not match its template, if it does not.
fn staleness(t: &Template, i: &Instance) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(h) = t.host_for(i.slot) {
        if i.host.as_deref() != Some(h) {
            let on = i.host.as_deref().unwrap_or("no host");
            why.push(format!("moves from host {on} to {h}"));
        }
    }
    if i.image_id != t.image_id && !t.service.keep_image {
        why.push(format!("image changed ({} -> {})", short_id(&i.image_id), short_id(&t.image_id)));
    }
    if i.spec_hash != t.spec_hash {
        why.extend(describe_changes(i.spec_json.as_deref(), &t.spec_json));
    }
    for (k, secret) in &t.service.secrets {
        let same = match i.secret_digests.get(k) {
            Some(d) => *d == crate::model::secret_digest(&t.service.name, k, secret),
            None => i.secret_env.get(k).map(String::as_str) == Some(secret.expose()),
        };
        if !same {
            why.push(format!("secret {k} changed"));
        }
    }
    for f in &t.service.files {
        let Some(secret) = f.secret_contents() else { continue };
        let key = crate::model::secret_file_key(f.target());
        if i.secret_env.get(&key).map(String::as_str) != Some(secret.expose()) {
            why.push(format!("secret file {} changed", f.target()));
        }
    }
    why.dedup();
    why
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

fn plan_service(t: &Template, found: &[&Instance]) -> ServicePlan {
    let wanted = if t.service.global && t.self_placed {
        // A target that places a global service's tasks runs one per node it may use: as many
        // as it runs (its tasks are numbered by node), at least one.
        let slots: HashSet<u32> = found.iter().map(|i| i.slot).collect();
        u32::try_from(slots.len()).unwrap_or(u32::MAX).max(1)
    } else {
        t.service.replicas
    };
    let mut plan = empty(&t.service.name);
    // Within a slot, an up-to-date running instance first, then a running one, then the oldest: a
    // duplicate left by an interrupted rollout is retired, and what finished its rollout is kept.
    let mut found: Vec<&Instance> = found.to_vec();
    let rank = |i: &Instance| match (i.is_running(), staleness(t, i).is_empty()) {
        (true, true) => 0,
        (true, false) => 1,
        _ => 2,
    };
    found.sort_by(|a, b| (a.slot, rank(a), &a.created).cmp(&(b.slot, rank(b), &b.created)));
    let mut taken: HashSet<u32> = HashSet::new();
    let mut reasons: Vec<String> = Vec::new();
    for i in found {
        if i.slot >= wanted || taken.contains(&i.slot) {
            plan.retire.push(i.clone());
            continue;
        }
        let mut why = staleness(t, i);
        if !i.is_running() {
            let code = i.exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default();
            why.push(format!("instance {} is {}{code}", i.name, i.state));
        }
        taken.insert(i.slot);
        if why.is_empty() {
            plan.keep.push(i.clone());
        } else {
            for w in why {
                if !reasons.contains(&w) {
                    reasons.push(w);
                }
            }
            plan.replace.push((i.slot, i.clone()));
        }
    }
    plan.create = (0..wanted).filter(|s| !taken.contains(s)).collect();
    let running = (plan.keep.len() + plan.replace.len()) as u32;
    plan.action = if running == 0 && plan.retire.is_empty() && !plan.create.is_empty() {
        Action::Create { replicas: plan.create.len() as u32 }
    } else if !plan.replace.is_empty() {
        Action::Replace { instances: plan.replace.len() as u32, strategy: t.service.rollout.strategy.clone() }
    } else if !plan.create.is_empty() || !plan.retire.is_empty() {
        let extra: Vec<String> =
            plan.retire.iter().filter(|i| i.slot < wanted).map(|i| format!("duplicate instance {}", i.name)).collect();
        reasons.extend(extra);
        Action::Scale { from: running + plan.retire.iter().filter(|i| i.slot >= wanted).count() as u32, to: wanted }
    } else {
        Action::Unchanged
    };
    if matches!(plan.action, Action::Replace { .. }) && (!plan.create.is_empty() || !plan.retire.is_empty()) {
        reasons.push(format!("and scale to {wanted}"));
    }
    plan.reasons = reasons;
    plan
}

/// A job runs again unless it exited 0 for exactly its configuration: its newest container says
/// so, or (once its container was pruned) the state store's record does. A run still going is
/// waited for; a container created but never started (an apply killed in between) is not a run.
fn plan_job(t: &Template, found: &[&Instance], completed: Option<&(String, String)>) -> ServicePlan {
    let mut plan = empty(&t.service.name);
    let mut found: Vec<&Instance> = found.to_vec();
    found.sort_by(|a, b| b.created.cmp(&a.created));
    let recorded = completed.is_some_and(|(hash, image)| *hash == t.spec_hash && *image == t.image_id);
    let Some((latest, older)) = found.split_first() else {
        if !recorded {
            plan.action = Action::Create { replicas: 1 };
            plan.create = vec![0];
        }
        return plan;
    };
    plan.retire = older.iter().map(|i| (*i).clone()).collect();
    let mut why = staleness(t, latest);
    if !why.is_empty() && recorded {
        // An older configuration's run; this one already completed (its container was pruned).
        plan.retire.insert(0, (*latest).clone());
        return plan;
    }
    match (latest.state, latest.exit_code) {
        (InstanceState::Exited, Some(0)) => {}
        (InstanceState::Running | InstanceState::Restarting, _) if why.is_empty() => {}
        (InstanceState::Created, _) => {
            why.push("its last run never started (an apply was interrupted after creating it)".into())
        }
        (_, code) => why.push(format!(
            "its last run did not succeed (exit code {})",
            code.map_or("none".into(), |c| c.to_string())
        )),
    }
    if why.is_empty() {
        plan.keep.push((*latest).clone());
        plan.action = Action::Unchanged;
    } else {
        plan.replace.push((0, (*latest).clone()));
        plan.action = Action::Replace { instances: 1, strategy: Strategy::Recreate };
        plan.reasons = why;
    }
    plan
}

fn empty(service: &str) -> ServicePlan {
    ServicePlan {
        service: service.to_string(),
        action: Action::Unchanged,
        reasons: Vec::new(),
        keep: Vec::new(),
        replace: Vec::new(),
        create: Vec::new(),
        retire: Vec::new(),
        awaiting: None,
    }
}

impl ServicePlan {
    /// Whether the service's new set is waiting for a promotion (both sets keep running).
    pub fn awaiting_promotion(&self) -> Option<u8> {
        self.awaiting
    }

    /// Leaves a service whose new set waits for a promotion as it is: both sets are kept.
    pub(crate) fn hold(&mut self, running: Vec<Instance>, weight: u8) {
        self.action = Action::Unchanged;
        self.reasons = vec![format!("awaiting promotion (the new set gets {weight} % of the traffic)")];
        self.keep = running;
        self.replace.clear();
        self.create.clear();
        self.retire.clear();
        self.awaiting = Some(weight);
    }
}

#[cfg(test)]
mod tests;
