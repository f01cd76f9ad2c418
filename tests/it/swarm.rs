//! The Swarm backend on a real three-node swarm (tests/fixtures/swarm.sh): each node a dockerd in
//! its own network namespace, images from the test registry, as a production swarm gets them.

use crate::support;

use std::time::{Duration, Instant};

use harbormaster::{
    Action, Amount, CanaryStep, Condition, Down, Environment, ErrorKind, HealthCheck, InstanceState, Port, Rollout,
    RolloutOutcome, Secret, Service,
};
use support::swarm::{self, EXCLUSIVE};
use support::PROJECT;

fn exec_check() -> HealthCheck {
    HealthCheck::exec(["/workload", "probe", "8080", "/health"])
        .interval(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .retries(3)
}

fn api(image: &str, replicas: u32) -> harbormaster::ServiceBuilder {
    Service::builder("api")
        .image(image)
        .port(Port::tcp(8080).publish_ephemeral())
        .replicas(replicas)
        .stop_grace_period(Duration::from_secs(2))
        .rollout(Rollout::rolling().min_ready(Duration::from_secs(1)))
}

async fn get(url: &str) -> (u16, String) {
    support::get(url).await
}

#[tokio::test]
async fn a_stack_with_a_job_a_secret_and_replicas_runs_across_the_nodes() {
    let _shared = EXCLUSIVE.read().await;
    let target = swarm::backend().await;
    let image = swarm::image("stack-v1").await;
    let name = support::unique("swarm-stack");
    let db = Service::builder("db")
        .image(&image)
        .env("VERSION", "db")
        .port(Port::tcp(8080))
        .health(exec_check())
        .build()
        .unwrap();
    let migrate = Service::job("migrate")
        .image(&image)
        .env("JOB_EXIT_CODE", "0")
        .env("REQUIRE", "db:8080")
        .depends_on("db", Condition::Healthy)
        .build()
        .unwrap();
    let api = api(&image, 3)
        .env("VERSION", "v1")
        .secret("API_TOKEN", Secret::new("swarm-secret-value-3141"))
        .health(exec_check())
        .depends_on("migrate", Condition::CompletedSuccessfully)
        .build()
        .unwrap();
    let env = Environment::builder(PROJECT, &name)
        .services([db, migrate, api])
        .deadline(Duration::from_secs(180))
        .build()
        .unwrap();

    let plan = env.plan(&target).await.unwrap();
    assert!(plan.limits.iter().any(|l| l.service == "api" && l.what.contains("API_TOKEN_FILE")), "{plan}");
    let deployed = env.apply(&target).await.unwrap();
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Succeeded));

    // Three replicas answer on their nodes' published ports, spread over more than one node.
    let endpoints = deployed.endpoints("api", 8080).unwrap();
    assert_eq!(endpoints.len(), 3, "{endpoints:?}");
    let mut hosts: Vec<String> = endpoints.iter().map(|e| e.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    assert!(hosts.len() >= 2, "replicas on one node only: {hosts:?}");
    for e in &endpoints {
        assert_eq!(get(&format!("{}/version", e.http_url())).await, (200, "v1".to_string()));
    }
    // The secret is a swarm secret file; the variable points at it.
    let (_, path) = get(&format!("{}/env/API_TOKEN_FILE", endpoints[0].http_url())).await;
    assert_eq!(path, "/run/secrets/API_TOKEN");
    let out = env.exec(&target, "api", ["/workload", "cat", "/run/secrets/API_TOKEN"]).await.unwrap();
    // The file holds exactly the value; what comes back from the target is scrubbed of it.
    assert_eq!(out.stdout.trim(), "[redacted]");
    let listed = swarm::docker(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(listed.contains(&format!("{PROJECT}-{name}-api-api-token-")), "{listed}");
    assert!(!format!("{plan}{deployed:?}").contains("swarm-secret-value-3141"));

    // Nothing changes on a second look; the job does not run again.
    let again = env.plan(&target).await.unwrap();
    assert!(again.services.iter().all(|s| s.action == Action::Unchanged), "{again}");
    let second = env.apply(&target).await.unwrap();
    assert_eq!(second.outcome("migrate"), Some(&RolloutOutcome::Unchanged));
    assert_eq!(env.history(&target, "api").await.unwrap().len(), 1);
    // Records are swarm configs.
    assert!(swarm::docker(&["config", "ls", "--format", "{{.Name}}"]).contains("hm-state-"));

    let report = env.down(&target, Down::default()).await.unwrap();
    assert!(report.removed_network);
    assert!(!swarm::docker(&["service", "ls", "--format", "{{.Name}}"]).contains(&name));
    assert!(!swarm::docker(&["secret", "ls", "--format", "{{.Name}}"]).contains(&name));
    assert!(!swarm::docker(&["config", "ls", "--format", "{{.Labels}}"]).contains(&name));
}

#[tokio::test]
async fn swarm_rolls_out_a_new_version_and_rolls_back_one_that_fails_its_check() {
    let _shared = EXCLUSIVE.read().await;
    let target = swarm::backend().await;
    let image = swarm::image("roll").await;
    let name = support::unique("swarm-roll");
    let env = |version: &str, health: &str| {
        Environment::builder(PROJECT, &name)
            .service(
                api(&image, 2)
                    .env("VERSION", version)
                    .env("HEALTH_STATUS", health)
                    .health(exec_check())
                    .build()
                    .unwrap(),
            )
            .deadline(Duration::from_secs(180))
            .build()
            .unwrap()
    };
    env("v1", "200").apply(&target).await.unwrap();
    let v2 = env("v2", "200").apply(&target).await.unwrap();
    assert_eq!(v2.outcome("api"), Some(&RolloutOutcome::Succeeded));
    for e in v2.endpoints("api", 8080).unwrap() {
        assert_eq!(get(&format!("{}/version", e.http_url())).await.1, "v2");
    }
    // v3 fails Swarm's own health check: Swarm's failure action rolls it back.
    let err = env("v3", "503").apply(&target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed, "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    let status = env("v2", "200").status(&target).await.unwrap();
    let api = status.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!(api.running, 2, "{status:?}");
    let now = env("v2", "200").plan(&target).await.unwrap();
    assert!(now.services.iter().all(|s| s.action == Action::Unchanged), "v2 runs again: {now}");
    let history = env("v2", "200").history(&target, "api").await.unwrap();
    assert!(matches!(history.last().map(|r| &r.outcome), Some(RolloutOutcome::RolledBack { .. })), "{history:?}");
    // A rollback to the revision before: v1 again, through Swarm's update.
    let back = env("v2", "200").rollback(&target, "api").await.unwrap();
    for e in back.endpoints("api", 8080).unwrap() {
        assert_eq!(get(&format!("{}/version", e.http_url())).await.1, "v1");
    }
    env("v2", "200").down(&target, Down::default()).await.unwrap();
}

#[tokio::test]
async fn the_library_deadline_rolls_back_what_swarm_would_still_wait_for() {
    let _shared = EXCLUSIVE.read().await;
    let target = swarm::backend().await;
    let image = swarm::image("deadline").await;
    let name = support::unique("swarm-deadline");
    // The new version takes 15 s to answer its check, and Swarm replaces one task at a time,
    // waiting for each to be healthy: its update needs more than 30 s. The rollout's deadline is
    // 22 s: the library ends it there and has Swarm roll back.
    let env = |version: &str, ready_ms: &str| {
        let rollout = Rollout::rolling()
            .max_surge(Amount::count(1))
            .max_unavailable(Amount::count(0))
            .deadline(Duration::from_secs(22));
        let check = exec_check().start_period(Duration::from_secs(20));
        Environment::builder(PROJECT, &name)
            .service(
                api(&image, 2)
                    .env("VERSION", version)
                    .env("READY_DELAY_MS", ready_ms)
                    .health(check)
                    .rollout(rollout)
                    .build()
                    .unwrap(),
            )
            .deadline(Duration::from_secs(180))
            .build()
            .unwrap()
    };
    let first = Instant::now();
    env("v1", "0").apply(&target).await.unwrap();
    assert!(first.elapsed() < Duration::from_secs(20), "took {:?}", first.elapsed());
    let started = Instant::now();
    let err = env("v2", "15000").apply(&target).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(90), "took {:?}", started.elapsed());
    match &err {
        harbormaster::Error::Apply(f) => match f.error_of("api") {
            Some(harbormaster::Error::RolledBack { reason, .. }) => {
                assert_eq!(reason.kind(), ErrorKind::Timeout, "{reason}")
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other}"),
    }
    let deployed = env("v1", "0").apply(&target).await.unwrap();
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Unchanged), "v1 serves again, untouched");
    env("v1", "0").down(&target, Down::default()).await.unwrap();
}

#[tokio::test]
async fn an_http_check_swarm_cannot_run_is_probed_by_the_library_and_rolls_back() {
    let _shared = EXCLUSIVE.read().await;
    let target = swarm::backend().await;
    let image = swarm::image("http").await;
    let name = support::unique("swarm-http");
    let env = |version: &str, health: &str| {
        let check = HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(5);
        Environment::builder(PROJECT, &name)
            .service(api(&image, 2).env("VERSION", version).env("HEALTH_STATUS", health).health(check).build().unwrap())
            .deadline(Duration::from_secs(180))
            .build()
            .unwrap()
    };
    let plan = env("v1", "200").plan(&target).await.unwrap();
    assert!(plan.limits.iter().any(|l| !l.refused && l.what.contains("probed by the library")), "{plan}");
    env("v1", "200").apply(&target).await.unwrap();
    let err = env("v2", "500").apply(&target).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("rolled back") && text.contains("500"), "{text}");
    let deployed = env("v1", "200").apply(&target).await.unwrap();
    for e in deployed.endpoints("api", 8080).unwrap() {
        assert_eq!(get(&format!("{}/version", e.http_url())).await.1, "v1");
    }
    env("v1", "200").down(&target, Down::default()).await.unwrap();
}

#[tokio::test]
async fn what_swarm_cannot_honour_is_refused_before_anything_changes() {
    let _shared = EXCLUSIVE.read().await;
    let target = swarm::backend().await;
    let name = support::unique("swarm-canary");
    let svc = api("10.77.0.1:5055/hm/swarm-workload:none", 2)
        .rollout(Rollout::canary([CanaryStep::weight(10)]))
        .build()
        .unwrap();
    let env = Environment::builder(PROJECT, &name).service(svc).ingress(support::api_ingress()).build().unwrap();
    let plan = env.plan(&target).await.unwrap();
    assert!(plan.limits.iter().any(|l| l.refused && l.service == "api"), "{plan}");
    let err = env.apply(&target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("canary"), "{err}");
    assert!(!swarm::docker(&["service", "ls", "--format", "{{.Name}}"]).contains(&name));
    let _ = env.down(&target, Down::default()).await;
}

#[tokio::test]
async fn a_lost_node_is_replaced_by_the_swarm_and_status_tells_the_truth() {
    let _alone = EXCLUSIVE.write().await;
    let target = swarm::backend().await;
    let image = swarm::image("loss").await;
    let name = support::unique("swarm-loss");
    let env = Environment::builder(PROJECT, &name)
        .service(api(&image, 3).env("VERSION", "v1").health(exec_check()).build().unwrap())
        .deadline(Duration::from_secs(180))
        .build()
        .unwrap();
    env.apply(&target).await.unwrap();
    swarm::fixture_cmd(&["cut", "3"]);
    // The swarm notices, and reschedules without the library running.
    let started = Instant::now();
    let healed = loop {
        let nodes = target.nodes_ready().await.unwrap();
        let down = nodes.iter().any(|(h, ready)| h.name == "hm-swarm-3" && !ready);
        let status = env.status(&target).await.unwrap();
        let api = status.services.iter().find(|s| s.name == "api").unwrap();
        let off_3 = api
            .instances
            .iter()
            .filter(|i| i.state == InstanceState::Running && i.host.as_deref() != Some("hm-swarm-3"))
            .count();
        if down && off_3 == 3 {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(90) {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    swarm::fixture_cmd(&["heal", "3"]);
    let status = healed.expect("the swarm rescheduled the lost node's tasks within 90 s");
    let api = status.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!((api.desired, api.running), (3, 3), "{status:?}");
    // The next plan sees three healthy replicas on the remaining nodes: nothing to do.
    let plan = env.plan(&target).await.unwrap();
    assert!(plan.services.iter().all(|s| s.action == Action::Unchanged), "{plan}");
    env.down(&target, Down::default()).await.unwrap();
}

#[tokio::test]
#[ignore = "a child process of deployer_killed_mid_update_converges_on_the_next_apply"]
async fn swarm_child_applies_v2() {
    let target = swarm::backend().await;
    let name = std::env::var("HM_ENV").unwrap();
    let image = std::env::var("HM_IMAGE").unwrap();
    let env = Environment::builder(PROJECT, &name)
        .service(api(&image, 3).env("VERSION", "v2").health(exec_check()).build().unwrap())
        .deadline(Duration::from_secs(180))
        .build()
        .unwrap();
    support::kill::child(&env, &target).await;
}

#[tokio::test]
async fn deployer_killed_mid_update_converges_on_the_next_apply() {
    let _shared = EXCLUSIVE.read().await;
    let target = swarm::backend().await;
    let image = swarm::image("kill").await;
    let name = support::unique("swarm-kill");
    let env = |version: &str| {
        Environment::builder(PROJECT, &name)
            .service(api(&image, 3).env("VERSION", version).health(exec_check()).build().unwrap())
            .deadline(Duration::from_secs(180))
            .build()
            .unwrap()
    };
    env("v1").apply(&target).await.unwrap();
    // SIGKILLed once Swarm reports the update under way.
    let killed = support::kill::run_child(
        &support::child_test(module_path!(), "swarm_child_applies_v2"),
        &[("HM_ENV", name.clone()), ("HM_IMAGE", image.clone())],
        support::kill::KillAt::Matching("TargetRollout"),
    );
    assert!(killed.killed, "the child was killed: {:?}", killed.events);
    let deployed = env("v2").apply(&target).await.unwrap();
    for e in deployed.endpoints("api", 8080).unwrap() {
        assert_eq!(get(&format!("{}/version", e.http_url())).await.1, "v2");
    }
    let plan = env("v2").plan(&target).await.unwrap();
    assert!(plan.services.iter().all(|s| s.action == Action::Unchanged), "{plan}");
    env("v2").down(&target, Down::default()).await.unwrap();
}

/// A global service is a swarm global service: one task on every node, each an instance of its
/// own; a second look changes nothing, and an update replaces every node's task.
#[tokio::test]
async fn a_global_service_runs_a_task_on_every_node() {
    let _shared = EXCLUSIVE.read().await;
    let target = swarm::backend().await;
    let image = swarm::image("global").await;
    let name = support::unique("swarm-global");
    let env = |version: &str| {
        Environment::builder(PROJECT, &name)
            .service(
                Service::builder("agent")
                    .image(&image)
                    .env("VERSION", version)
                    .port(Port::tcp(8080).publish_ephemeral())
                    .health(exec_check())
                    .stop_grace_period(Duration::from_secs(2))
                    .global()
                    .build()
                    .unwrap(),
            )
            .deadline(Duration::from_secs(180))
            .build()
            .unwrap()
    };
    let deployed = env("g1").apply(&target).await.unwrap();
    let endpoints = deployed.endpoints("agent", 8080).unwrap();
    let mut hosts: Vec<String> = deployed.instances("agent").iter().filter_map(|i| i.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!((endpoints.len(), hosts.len()), (3, 3), "one task per node: {hosts:?}");
    for e in &endpoints {
        assert_eq!(get(&format!("{}/version", e.http_url())).await, (200, "g1".to_string()));
    }
    let mode =
        swarm::docker(&["service", "inspect", "--format", "{{json .Spec.Mode}}", &format!("{PROJECT}-{name}-agent")]);
    assert!(mode.contains("Global"), "{mode}");
    let again = env("g1").plan(&target).await.unwrap();
    assert!(again.services.iter().all(|s| s.action == Action::Unchanged), "{again}");
    let status = env("g1").status(&target).await.unwrap();
    let agent = status.services.iter().find(|s| s.name == "agent").unwrap();
    assert_eq!((agent.desired, agent.running), (3, 3), "{status:?}");

    let updated = env("g2").apply(&target).await.unwrap();
    assert_eq!(updated.outcome("agent"), Some(&RolloutOutcome::Succeeded));
    let endpoints = updated.endpoints("agent", 8080).unwrap();
    assert_eq!(endpoints.len(), 3);
    for e in &endpoints {
        assert_eq!(get(&format!("{}/version", e.http_url())).await.1, "g2");
    }
    env("g2").down(&target, Down::default()).await.unwrap();
}
