//! The planner's decisions, on hand-made observations.

use std::collections::HashMap;

use super::spec::Template;
use super::*;
use crate::backend::{Instance, InstanceState};
use crate::model::{Environment, Secret, Service};

const IMG: &str = "sha256:aaaaaaaaaaaaaaaa";

fn env_with(services: Vec<Service>) -> (Environment, HashMap<String, Template>) {
    let env = Environment::builder("p", "e").services(services).build().unwrap();
    let t = env.services.iter().map(|s| (s.name.clone(), Template::new(&env, s, IMG))).collect();
    (env, t)
}

fn observed(t: &Template, slot: u32, name: &str) -> Instance {
    Instance {
        id: format!("id-{name}"),
        name: name.into(),
        spec_json: Some(t.spec_json.clone()),
        secret_env: t.service.secrets.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect(),
        ..Instance::sample(&t.service.name, t.service.kind, slot, &t.spec_hash, &t.image_id)
    }
}

fn api(replicas: u32, version: &str) -> Service {
    Service::builder("api").image("x").env("VERSION", version).replicas(replicas).build().unwrap()
}

#[test]
fn nothing_running_means_create() {
    let (env, t) = env_with(vec![api(2, "1")]);
    let plan = compute(&env, &t, &[], &CompletedJobs::new());
    assert_eq!(plan.services[0].action, Action::Create { replicas: 2 });
    assert_eq!(plan.services[0].create, [0, 1]);
}

#[test]
fn matching_instances_are_unchanged() {
    let (env, t) = env_with(vec![api(2, "1")]);
    let obs = [observed(&t["api"], 0, "a0"), observed(&t["api"], 1, "a1")];
    let plan = compute(&env, &t, &obs, &CompletedJobs::new());
    assert!(plan.is_noop(), "{plan}");
    assert_eq!(plan.services[0].keep.len(), 2);
}

#[test]
fn env_change_is_a_replace_with_the_key_named() {
    let (_, old) = env_with(vec![api(1, "1")]);
    let (env, t) = env_with(vec![api(1, "2")]);
    let plan = compute(&env, &t, &[observed(&old["api"], 0, "a0")], &CompletedJobs::new());
    let sp = &plan.services[0];
    assert!(matches!(sp.action, Action::Replace { instances: 1, strategy: Strategy::StartFirst }));
    assert_eq!(sp.reasons, ["env VERSION changed"]);
    assert_eq!(sp.instances_to_remove(), ["a0"]);
}

#[test]
fn image_change_is_a_replace() {
    let (env, t) = env_with(vec![api(1, "1")]);
    let mut i = observed(&t["api"], 0, "a0");
    i.image_id = "sha256:bbbbbbbbbbbbbbbbbbbb".into();
    let plan = compute(&env, &t, &[i], &CompletedJobs::new());
    assert_eq!(plan.services[0].reasons, ["image changed (bbbbbbbbbbbb -> aaaaaaaaaaaa)"]);
}

#[test]
fn secret_value_change_is_detected_and_not_shown() {
    let svc = |v: &str| Service::builder("db").image("x").secret("PW", Secret::new(v)).build().unwrap();
    let (_, old) = env_with(vec![svc("old-value-123")]);
    let (env, t) = env_with(vec![svc("new-value-456")]);
    let plan = compute(&env, &t, &[observed(&old["db"], 0, "d0")], &CompletedJobs::new());
    assert_eq!(plan.services[0].reasons, ["secret PW changed"]);
    let shown = format!("{plan}{plan:?}");
    assert!(!shown.contains("value-123") && !shown.contains("value-456"), "{shown}");
}

#[test]
fn exited_instance_is_replaced() {
    let (env, t) = env_with(vec![api(1, "1")]);
    let mut i = observed(&t["api"], 0, "a0");
    i.state = InstanceState::Exited;
    i.exit_code = Some(137);
    let plan = compute(&env, &t, &[i], &CompletedJobs::new());
    assert!(matches!(plan.services[0].action, Action::Replace { .. }));
    assert!(plan.services[0].reasons[0].contains("exit code 137"), "{plan}");
}

#[test]
fn scaling_up_and_down() {
    let (env, t) = env_with(vec![api(3, "1")]);
    let plan = compute(&env, &t, &[observed(&t["api"], 0, "a0")], &CompletedJobs::new());
    assert_eq!(plan.services[0].action, Action::Scale { from: 1, to: 3 });
    assert_eq!(plan.services[0].create, [1, 2]);

    let (env, t) = env_with(vec![api(1, "1")]);
    let obs: Vec<_> = (0..3).map(|s| observed(&t["api"], s, &format!("a{s}"))).collect();
    let plan = compute(&env, &t, &obs, &CompletedJobs::new());
    assert_eq!(plan.services[0].action, Action::Scale { from: 3, to: 1 });
    assert_eq!(plan.services[0].instances_to_remove(), ["a1", "a2"]);
}

#[test]
fn duplicate_in_a_slot_is_retired() {
    let (env, t) = env_with(vec![api(1, "1")]);
    let mut newer = observed(&t["api"], 0, "p-e-api-0-aaaaaa");
    newer.created = "2026-01-01T00:00:09Z".into();
    let older = observed(&t["api"], 0, "p-e-api-0-bbbbbb");
    let plan = compute(&env, &t, &[newer, older], &CompletedJobs::new());
    assert_eq!(plan.services[0].retire[0].name, "p-e-api-0-aaaaaa", "the newer duplicate is retired");
    assert_eq!(plan.services[0].keep[0].name, "p-e-api-0-bbbbbb");
}

#[test]
fn orphans_are_removed() {
    let (env, t) = env_with(vec![api(1, "1")]);
    let (_, other) = env_with(vec![Service::builder("old").image("x").build().unwrap()]);
    let plan =
        compute(&env, &t, &[observed(&t["api"], 0, "a0"), observed(&other["old"], 0, "o0")], &CompletedJobs::new());
    let o = plan.service("old").unwrap();
    assert_eq!(o.action, Action::Remove { instances: 1 });
    assert_eq!(o.reasons, ["not in the description any more"]);
}

#[test]
fn jobs_rerun_only_when_changed_or_failed() {
    let job = |tag: &str| Service::job("seed").image("x").env("T", tag).build().unwrap();
    let (env, t) = env_with(vec![job("a")]);
    let mut done = observed(&t["seed"], 0, "s0");
    done.state = InstanceState::Exited;
    done.exit_code = Some(0);
    assert!(compute(&env, &t, &[done.clone()], &CompletedJobs::new()).is_noop());

    let mut failed = done.clone();
    failed.exit_code = Some(2);
    let plan = compute(&env, &t, &[failed], &CompletedJobs::new());
    assert!(plan.services[0].reasons[0].contains("exit code 2"), "{plan}");

    let (env2, t2) = env_with(vec![job("b")]);
    let plan = compute(&env2, &t2, &[done], &CompletedJobs::new());
    assert_eq!(plan.services[0].reasons, ["env T changed"]);
}

/// A job created but never started (its apply was killed in between) has not run: it runs again.
/// One still running is waited for, not started twice.
#[test]
fn a_job_counts_as_done_only_after_exiting_0_for_its_configuration() {
    let (env, t) = env_with(vec![Service::job("migrate").image("x").build().unwrap()]);
    let mut created = observed(&t["migrate"], 0, "m0");
    created.state = InstanceState::Created;
    let plan = compute(&env, &t, &[created], &CompletedJobs::new());
    assert!(matches!(plan.services[0].action, Action::Replace { .. }), "{plan}");
    assert!(plan.services[0].reasons[0].contains("never started"), "{plan}");

    let running = observed(&t["migrate"], 0, "m0");
    let plan = compute(&env, &t, &[running], &CompletedJobs::new());
    assert_eq!(plan.services[0].action, Action::Unchanged, "a run in progress is kept and waited for");
    assert_eq!(plan.services[0].keep.len(), 1);

    let mut dead = observed(&t["migrate"], 0, "m0");
    dead.state = InstanceState::Dead;
    assert!(matches!(compute(&env, &t, &[dead], &CompletedJobs::new()).services[0].action, Action::Replace { .. }));
}

/// Once its container is pruned, the store's record of the job's completion keeps it done, for
/// exactly that configuration.
#[test]
fn a_recorded_completion_outlives_the_container() {
    let job = |tag: &str| Service::job("migrate").image("x").env("T", tag).build().unwrap();
    let (env, t) = env_with(vec![job("v2")]);
    let done_v2: CompletedJobs =
        [("migrate".to_string(), (t["migrate"].spec_hash.clone(), IMG.to_string()))].into_iter().collect();
    assert!(compute(&env, &t, &[], &done_v2).is_noop(), "pruned container, recorded completion");
    assert!(!compute(&env, &t, &[], &CompletedJobs::new()).is_noop(), "no record: it runs");
    let other_image: CompletedJobs =
        [("migrate".to_string(), (t["migrate"].spec_hash.clone(), "sha256:other".to_string()))].into_iter().collect();
    assert!(!compute(&env, &t, &[], &other_image).is_noop(), "another image: it runs");
    // v1's exited container is left over; v2's run was recorded and pruned: v1's goes, nothing runs.
    let (_, t1) = env_with(vec![job("v1")]);
    let mut v1 = observed(&t1["migrate"], 0, "m1");
    v1.state = InstanceState::Exited;
    v1.exit_code = Some(0);
    let plan = compute(&env, &t, &[v1], &done_v2);
    assert_eq!(plan.services[0].action, Action::Unchanged);
    assert_eq!(plan.services[0].retire.len(), 1);
}

#[test]
fn health_and_replicas_do_not_change_the_spec() {
    let a = Service::builder("api").image("x").build().unwrap();
    let b = Service::builder("api")
        .image("x")
        .replicas(3)
        .health(crate::HealthCheck::tcp(80))
        .rollout(crate::Rollout::recreate())
        .build()
        .unwrap();
    let (_, ta) = env_with(vec![a]);
    let (_, tb) = env_with(vec![b]);
    assert_eq!(ta["api"].spec_hash, tb["api"].spec_hash);
}

#[test]
fn display_lists_every_service_with_reasons() {
    let (_, old) = env_with(vec![api(1, "1")]);
    let (env, t) = env_with(vec![api(1, "2"), Service::builder("web").image("x").build().unwrap()]);
    let text = compute(&env, &t, &[observed(&old["api"], 0, "a0")], &CompletedJobs::new()).to_string();
    assert!(text.contains("~ api") && text.contains("env VERSION changed"), "{text}");
    assert!(text.contains("+ web") && text.contains("create 1"), "{text}");
}
