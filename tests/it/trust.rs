//! The promises the README makes about failure, each probed as a user would meet it: a migration
//! interrupted between create and start, a job whose container was pruned, a deadline in the middle
//! of a rollout, a service without a health check that exits at once, a container that dies before
//! it can be probed, and what an ephemeral port is bound to.

use crate::support;

use std::time::Duration;

use harbormaster::backend::Scope;
use harbormaster::{Backend, Environment, Error, HealthCheck, InstanceRuntime, Port, Rollout, RolloutOutcome};
use support::kill::{run_child, KillAt};
use support::stack::{self, LOG};
use support::{get, Harness, PROJECT};

/// The kill suite's `db` and `migrate`, without the api.
fn migrated(env_name: &str, version: &str) -> Environment {
    Environment::builder(PROJECT, env_name).service(stack::db()).service(stack::migrate(version)).build().unwrap()
}

async fn runs(h: &Harness, env: &Environment) -> Vec<String> {
    let out = env.exec(&h.docker, "db", ["/workload", "cat", LOG]).await.unwrap();
    out.stdout.lines().map(str::to_string).collect()
}

/// Not a test of its own: the deployer the first test kills.
#[tokio::test]
#[ignore = "the child deployer of a_migration_interrupted_between_create_and_start_runs_on_the_next_apply"]
async fn migrating_child() {
    let (Ok(name), Ok(version)) = (std::env::var("HM_KILL_ENV"), std::env::var("HM_KILL_VERSION")) else { return };
    support::kill::child(&migrated(&name, &version), &support::docker().await).await;
}

/// The deploying process dies right after the job's container is created, before it starts: the
/// next apply runs the migration (it never counts a created container as a run), exactly once.
#[tokio::test]
async fn a_migration_interrupted_between_create_and_start_runs_on_the_next_apply() {
    let h = Harness::new("midjob").await;
    migrated(&h.name, "v1").apply(&h.docker).await.unwrap();
    for round in 2..=4 {
        let version = format!("v{round}");
        let vars = [("HM_KILL_ENV", h.name.clone()), ("HM_KILL_VERSION", version.clone())];
        let child = tokio::task::spawn_blocking(move || {
            run_child(
                &support::child_test(module_path!(), "migrating_child"),
                &vars,
                KillAt::Matching("InstanceCreated { service: \"migrate\""),
            )
        })
        .await
        .unwrap();
        assert!(child.killed, "{child:?}");
        let env = migrated(&h.name, &version);
        let plan = env.plan(&h.docker).await.unwrap();
        let job = plan.service("migrate").unwrap();
        assert!(job.changes_anything(), "a created, never started job is not a completed one:\n{plan}");
        env.apply(&h.docker).await.unwrap();
        assert!(env.plan(&h.docker).await.unwrap().is_noop());
    }
    let lines = runs(&h, &migrated(&h.name, "v4")).await;
    assert_eq!(lines, ["migrate v1", "migrate v2", "migrate v3", "migrate v4"], "each version ran exactly once");
}

/// Once a job completed, removing its exited container (as `docker container prune` does) does not
/// make it run again: the state store remembers the completion, for exactly that configuration.
#[tokio::test]
async fn a_completed_job_whose_container_was_pruned_does_not_run_again() {
    let h = Harness::new("prunedjob").await;
    let env = migrated(&h.name, "v1");
    env.apply(&h.docker).await.unwrap();
    let scope = Scope::new(PROJECT, &h.name);
    for i in h.docker.list_instances(&scope).await.unwrap().iter().filter(|i| i.service == "migrate") {
        h.docker.remove_instance(&i.id).await.unwrap();
    }
    let plan = env.plan(&h.docker).await.unwrap();
    assert!(plan.is_noop(), "the completion is remembered:\n{plan}");
    let deployed = env.apply(&h.docker).await.unwrap();
    assert_eq!(deployed.outcome("migrate"), Some(&RolloutOutcome::Unchanged));
    assert_eq!(runs(&h, &env).await, ["migrate v1"]);
    // A new version runs.
    migrated(&h.name, "v2").apply(&h.docker).await.unwrap();
    assert_eq!(runs(&h, &env).await, ["migrate v1", "migrate v2"]);
}

/// The environment's deadline passes while a recreate rollout waits for a new version that never
/// becomes healthy: the old version serves again, and the error says the deadline rolled it back.
#[tokio::test]
async fn the_environment_deadline_mid_rollout_brings_the_old_version_back() {
    let h = Harness::new("envdl").await;
    let api = |version: &str, healthy: bool| {
        let b = h
            .svc("api")
            .env("VERSION", version)
            .port(Port::tcp(8080).publish_ephemeral())
            .replicas(2)
            .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(100))
            .rollout(Rollout::recreate());
        if healthy { b } else { b.env("HEALTH_STATUS", "500") }.build().unwrap()
    };
    h.env().service(api("v1", true)).build().unwrap().apply(&h.docker).await.unwrap();
    let env = h.env().service(api("v2", false)).deadline(Duration::from_secs(5)).build().unwrap();
    let started = std::time::Instant::now();
    let err = env.apply(&h.docker).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "the deadline was not acted on ({took:?})");
    let Error::Apply(f) = &err else { panic!("{err}") };
    let Some(Error::RolledBack { reason, .. }) = f.error_of("api") else { panic!("expected a rollback: {err}") };
    assert!(matches!(**reason, Error::Deadline { .. }), "{reason}");
    assert!(err.to_string().contains("within its deadline of 5s"), "{err}");

    // The old version serves, on both replicas; nothing of v2 is left.
    let v1 = h.env().service(api("v1", true)).build().unwrap();
    let status = v1.status(&h.docker).await.unwrap();
    assert_eq!(status.services[0].running, 2, "{status:?}");
    assert_eq!(status.services[0].instances.len(), 2, "{status:?}");
    assert!(v1.plan(&h.docker).await.unwrap().is_noop(), "v1 runs");
    let deployed = v1.apply(&h.docker).await.unwrap();
    for e in deployed.endpoints("api", 8080).unwrap() {
        assert_eq!(get(&format!("{}/version", e.http_url())).await.1, "v1");
    }
    let history = v1.history(&h.docker, "api").await.unwrap();
    let v2 = history.iter().find(|r| r.number == 2).unwrap();
    assert!(matches!(&v2.outcome, RolloutOutcome::RolledBack { reason } if reason.contains("deadline")), "{history:?}");
}

/// Without a health check, "started" means it kept running for its settle time: a container that
/// exits at once (and is restarted by its restart policy) fails the apply as crash-looping.
#[tokio::test]
async fn a_service_without_a_health_check_that_exits_at_once_is_not_deployed() {
    let h = Harness::new("crashloop").await;
    let svc = h.svc("worker").env("CRASH_AFTER_MS", "0").env("CRASH_CODE", "7").build().unwrap();
    let err = h.env().service(svc).build().unwrap().apply(&h.docker).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("crash-looping") || text.contains("exited with code 7"), "{text}");
    assert!(text.contains("crashing with exit code 7"), "the error carries the log lines: {text}");
    // One that keeps running is deployed, after its settle time.
    let ok = h.svc("worker").settle_time(Duration::from_millis(500)).build().unwrap();
    let started = std::time::Instant::now();
    h.env().service(ok).build().unwrap().apply(&h.docker).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// A container that dies before the library could read its address is reported as having died,
/// with its exit code: not as "no container address".
#[tokio::test]
async fn a_container_that_dies_before_it_is_probed_is_named_with_its_exit_code() {
    let h = Harness::new("early").await;
    let svc = h
        .svc("api")
        .env("CRASH_AFTER_MS", "0")
        .env("CRASH_CODE", "42")
        .restart(harbormaster::RestartPolicy::No)
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(5))
        .build()
        .unwrap();
    let err = h.env().service(svc).build().unwrap().apply(&h.docker).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("exited with code 42"), "{text}");
    assert!(!text.contains("no container address"), "{text}");
}

/// An ephemeral port binds to 127.0.0.1 on a local engine (a test database is not on the
/// network), and the endpoint says so; a fixed port binds to every address, as `docker run -p` does.
#[tokio::test]
async fn ephemeral_ports_bind_to_loopback() {
    let h = Harness::new("bind").await;
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let svc = h
        .svc("api")
        .port(Port::tcp(8080).publish_ephemeral())
        .port(Port::tcp(9090).publish(free))
        .health(support::http_check())
        .build()
        .unwrap();
    let deployed = h.env().service(svc).build().unwrap().apply(&h.docker).await.unwrap();
    let endpoint = deployed.endpoint("api", 8080).unwrap();
    assert_eq!(endpoint.host, "127.0.0.1");
    let id = &deployed.instances("api")[0].id;
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{json .HostConfig.PortBindings}}", id])
        .output()
        .unwrap();
    let bindings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bindings["8080/tcp"][0]["HostIp"], "127.0.0.1", "{bindings}");
    assert_eq!(bindings["9090/tcp"][0]["HostIp"], "", "a fixed port binds to every address: {bindings}");
    assert_eq!(get(&format!("{}/health", endpoint.http_url())).await.0, 200);
}
