//! Revisions, rollback, the deploy lock, audit, manual promotion, a failed migration and a deploying
//! process killed mid-rollout, on the real engine, under HTTP load through the ingress (Caddy).

use crate::support;

use std::time::Duration;

use harbormaster::backend::Scope;
use harbormaster::{
    Amount, Backend, Condition, Environment, Error, EventKind, HealthCheck, Port, RecordStore, Rollout, RolloutOutcome,
    Service,
};
use support::load::{sample, Load};
use support::Harness;

fn rolling() -> Rollout {
    Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0)).drain(Duration::from_millis(300))
}

fn api(h: &Harness, version: &str, rollout: Rollout) -> Service {
    h.svc("api")
        .env("VERSION", version)
        .port(Port::tcp(8080))
        .replicas(3)
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(10))
        .rollout(rollout)
        .build()
        .unwrap()
}

fn env_of(h: &Harness, api: Service) -> Environment {
    h.env().ingress(support::api_ingress()).service(api).actor("test-suite").build().unwrap()
}

fn assert_no_failures(tally: &support::load::Tally) {
    assert!(
        tally.failed.is_empty(),
        "{} failed requests: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(5)]
    );
}

/// v1 then v2 make revisions 1 and 2; a rollback under load goes back to v1's image *and* env, as a
/// new revision 3; rollback_to 2 goes forward again. History and the audit trail say it all, read
/// through a description that is not the one deployed (any process can).
#[tokio::test]
async fn rollback_restores_image_and_configuration_without_drops() {
    let h = Harness::new("rollback").await;
    let v1 = env_of(&h, api(&h, "v1", rolling()));
    let deployed = v1.apply(&h.docker).await.unwrap();
    let url = format!("{}/version", deployed.ingress_endpoint().unwrap().http_url());
    let v2 = env_of(&h, api(&h, "v2", rolling()));
    v2.apply(&h.docker).await.unwrap();
    assert_eq!(sample(&url, 6).await.get("v2"), Some(&6));

    let history = v2.history(&h.docker, "api").await.unwrap();
    assert_eq!(history.iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(history[0].changes, ["first revision"]);
    assert_eq!(history[1].changes, ["env VERSION changed"]);
    assert!(history[1].current && !history[0].current);
    assert_eq!(history[1].actor.as_deref(), Some("test-suite"));
    assert_eq!(history[1].outcome, RolloutOutcome::Succeeded);

    // Roll back under load: nothing dropped, v1 answers everywhere, through the rolling update.
    let load = Load::start(&url, 4);
    let back = v2.rollback(&h.docker, "api").await.unwrap();
    let tally = load.stop().await;
    assert_no_failures(&tally);
    assert_eq!(back.outcome("api"), Some(&RolloutOutcome::Succeeded));
    assert_eq!(sample(&url, 9).await.get("v1"), Some(&9), "the env change is restored too");

    let history = v2.history(&h.docker, "api").await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.number, last.origin.as_str(), last.current), (3, "rollback to revision 1", true));
    assert_eq!(last.image_id, history[0].image_id);

    // Forward again to a numbered revision.
    v2.rollback_to(&h.docker, "api", 2).await.unwrap();
    assert_eq!(sample(&url, 6).await.get("v2"), Some(&6));
    let err = v2.rollback_to(&h.docker, "api", 42).await.unwrap_err();
    assert!(err.to_string().contains("no revision 42"), "{err}");

    let audit = v2.audit_log(&h.docker).await.unwrap();
    let ops: Vec<&str> = audit.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(ops, ["apply", "apply", "rollback of api to revision 1", "rollback of api to revision 2"]);
    assert_eq!(audit[2].revisions.get("api"), Some(&3));
    assert!(audit.iter().all(|e| e.error.is_none() && e.actor.as_deref() == Some("test-suite")));

    // Re-applying what runs loads nothing into the ingress: a load would close idle keep-alive
    // connections, and this one survives.
    let endpoint = v2.apply(&h.docker).await.unwrap().ingress_endpoint().unwrap();
    let mut conn = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await.unwrap();
    assert_eq!(support::load::get_on(&mut conn).await.as_deref(), Some("v2"));
    let again = v2.apply(&h.docker).await.unwrap();
    assert_eq!(again.outcome("api"), Some(&RolloutOutcome::Unchanged));
    assert_eq!(support::load::get_on(&mut conn).await.as_deref(), Some("v2"), "the idle connection survived the apply");
    assert_eq!(v2.history(&h.docker, "api").await.unwrap().len(), 4, "and records no revision");
}

/// A second apply while one runs is refused at once, naming the holder; with a lock timeout it
/// waits and then runs.
#[tokio::test]
async fn a_concurrent_apply_is_refused_or_waits() {
    let h = Harness::new("lock").await;
    let slow = |v: &str| {
        h.svc("api")
            .env("VERSION", v)
            .env("READY_DELAY_MS", "2500")
            .port(Port::tcp(8080))
            .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(100))
            .build()
            .unwrap()
    };
    let first = h.env().service(slow("v1")).actor("first").build().unwrap();
    let docker = h.docker.clone();
    let running = tokio::spawn({
        let first = first.clone();
        async move { first.apply(&docker).await }
    });
    // Wait until the first apply holds the lock (its record exists).
    let scope = Scope::new(support::PROJECT, &h.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while h.docker.list_records(&scope, "lock").await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the first apply never took the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let second = h.env().service(slow("v2")).build().unwrap();
    let err = second.apply(&h.docker).await.unwrap_err();
    let Error::Locked { holder, .. } = &err else { panic!("expected Locked, got {err}") };
    assert_eq!(holder.actor.as_deref(), Some("first"));
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.operation, "apply");
    let text = err.to_string();
    assert!(text.contains("since") && text.contains("`first`"), "{text}");

    // With a timeout it waits for the first one, then applies.
    let patient = h.env().service(slow("v2")).lock_timeout(Duration::from_secs(60)).build().unwrap();
    let (result, events) = support::apply_collect(&patient, &h.docker).await;
    result.unwrap();
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::WaitingForLock { .. })));
    running.await.unwrap().unwrap();
    let status = patient.status(&h.docker).await.unwrap();
    assert_eq!(status.services[0].instances.len(), 1);
    assert!(h.docker.list_records(&scope, "lock").await.unwrap().is_empty(), "the lock is released");
}

/// Blue/green with manual promotion: the apply stops with both sets up and v1 serving; applying the
/// same description again keeps it waiting; promote (from another description value) switches
/// without drops. A later v3 is aborted and v2 keeps serving.
#[tokio::test]
async fn blue_green_waits_for_a_manual_promotion() {
    let h = Harness::new("promote").await;
    let bg = || Rollout::blue_green().manual_promotion().drain(Duration::from_millis(300));
    let v1 = env_of(&h, api(&h, "v1", bg()));
    let deployed = v1.apply(&h.docker).await.unwrap();
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Succeeded), "a first deploy has nothing to wait for");
    let url = format!("{}/version", deployed.ingress_endpoint().unwrap().http_url());

    let v2 = env_of(&h, api(&h, "v2", bg()));
    let waiting = v2.apply(&h.docker).await.unwrap();
    assert_eq!(waiting.outcome("api"), Some(&RolloutOutcome::AwaitingPromotion { weight: 0 }));
    assert_eq!(waiting.instances("api").len(), 6, "both sets run");
    assert_eq!(sample(&url, 9).await.get("v1"), Some(&9), "v1 keeps all the traffic");

    let plan = v2.plan(&h.docker).await.unwrap();
    assert_eq!(plan.service("api").unwrap().awaiting_promotion(), Some(0), "{plan}");
    let again = v2.apply(&h.docker).await.unwrap();
    assert_eq!(again.outcome("api"), Some(&RolloutOutcome::AwaitingPromotion { weight: 0 }));
    assert_eq!(again.instances("api").len(), 6);
    assert_eq!(sample(&url, 6).await.get("v1"), Some(&6));

    let load = Load::start(&url, 4);
    let promoted = env_of(&h, api(&h, "v2", bg())).promote(&h.docker, "api").await.unwrap();
    let tally = load.stop().await;
    assert_no_failures(&tally);
    assert_eq!(promoted.outcome("api"), Some(&RolloutOutcome::Succeeded));
    assert_eq!(promoted.instances("api").len(), 3);
    assert_eq!(sample(&url, 9).await.get("v2"), Some(&9));
    let history = v2.history(&h.docker, "api").await.unwrap();
    let last = history.last().unwrap();
    assert!(last.current && last.origin == "apply, then promoted" && last.number == 2, "{history:?}");
    let err = v2.promote(&h.docker, "api").await.unwrap_err();
    assert!(matches!(err, Error::NoPendingPromotion { .. }), "{err}");

    // v3 waits, then is aborted: v2 keeps serving throughout.
    let v3 = env_of(&h, api(&h, "v3", bg()));
    v3.apply(&h.docker).await.unwrap();
    let load = Load::start(&url, 4);
    let aborted = v3.abort_promotion(&h.docker, "api").await.unwrap();
    let tally = load.stop().await;
    assert_no_failures(&tally);
    assert_eq!(tally.by_body.keys().collect::<Vec<_>>(), ["v2"]);
    assert!(matches!(aborted.outcome("api"), Some(RolloutOutcome::RolledBack { .. })));
    assert_eq!(aborted.instances("api").len(), 3);
    let history = v3.history(&h.docker, "api").await.unwrap();
    assert!(matches!(history.last().unwrap().outcome, RolloutOutcome::RolledBack { .. }));
    assert!(history.iter().find(|r| r.number == 2).unwrap().current);
}

/// A pre-deploy migration that fails stops the rollout before any new instance takes traffic: the
/// old version keeps serving, nothing is dropped, and the error names the job and its logs.
#[tokio::test]
async fn a_failed_migration_leaves_the_old_version_serving() {
    let h = Harness::new("migrate").await;
    let env_for = |version: &str, code: i32| {
        let migrate =
            h.job("migrate", code).env("VERSION", version).env("LOG_LINES", "migrating|boom").build().unwrap();
        let api = h
            .svc("api")
            .env("VERSION", version)
            .port(Port::tcp(8080))
            .replicas(2)
            .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(10))
            .depends_on("migrate", Condition::CompletedSuccessfully)
            .rollout(rolling())
            .build()
            .unwrap();
        h.env().ingress(support::api_ingress()).service(migrate).service(api).build().unwrap()
    };
    let deployed = env_for("v1", 0).apply(&h.docker).await.unwrap();
    let url = format!("{}/version", deployed.ingress_endpoint().unwrap().http_url());
    let before: Vec<String> = deployed.instances("api").iter().map(|i| i.name.clone()).collect();

    let load = Load::start(&url, 4);
    let err = env_for("v2", 1).apply(&h.docker).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    assert_no_failures(&tally);
    assert_eq!(tally.by_body.keys().collect::<Vec<_>>(), ["v1"]);
    let Error::Apply(failure) = &err else { panic!("{err}") };
    assert!(matches!(failure.error_of("migrate"), Some(Error::JobFailed { exit_code: 1, .. })), "{err}");
    assert_eq!(failure.not_started, ["api"], "{err}");
    assert!(err.to_string().contains("boom"), "{err}");
    let status = env_for("v1", 0).status(&h.docker).await.unwrap();
    let api = status.services.iter().find(|s| s.name == "api").unwrap();
    let now: Vec<String> = api.instances.iter().map(|i| i.name.clone()).collect();
    assert_eq!(now, before, "the old instances were never touched");
}

/// The description the killed child and the test share (the child has no harness: nothing of its
/// own to tear down).
fn killable(env_name: &str, version: &str) -> Environment {
    let api = Service::builder("api")
        .image(support::workload::IMAGE)
        .stop_grace_period(Duration::from_secs(2))
        .env("VERSION", version)
        .port(Port::tcp(8080))
        .replicas(3)
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(10))
        .rollout(rolling().min_ready(Duration::from_millis(1500)))
        .build()
        .unwrap();
    Environment::builder(support::PROJECT, env_name).ingress(support::api_ingress()).service(api).build().unwrap()
}

/// Not a test of its own: `the_deploying_process_killed_mid_rollout…` runs it in a child process.
#[tokio::test]
#[ignore = "run as a child process by the_deploying_process_killed_mid_rollout_leaves_the_old_version_serving"]
async fn child_applies_v2() {
    let Ok(name) = std::env::var("HM_CHILD_ENV") else { return };
    support::workload::ensure_images();
    let _ = killable(&name, "v2").apply(&support::docker().await).await;
}

/// The process running a rollout is SIGKILLed while its first new instance soaks: the old version
/// keeps serving every request, the lock it left is recovered, and the next apply finishes the job.
#[tokio::test]
async fn the_deploying_process_killed_mid_rollout_leaves_the_old_version_serving() {
    let h = Harness::new("sigkill").await;
    let deployed = killable(&h.name, "v1").apply(&h.docker).await.unwrap();
    let url = format!("{}/version", deployed.ingress_endpoint().unwrap().http_url());
    let scope = Scope::new(support::PROJECT, &h.name);
    let v1_hash =
        h.docker.list_instances(&scope).await.unwrap().iter().find(|i| i.service == "api").unwrap().spec_hash.clone();

    let load = Load::start(&url, 4);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", support::child_test(module_path!(), "child_applies_v2").as_str(), "--ignored", "--quiet"])
        .env("HM_CHILD_ENV", &h.name)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the child's first v2 instance to run, then kill it half-way through its soak.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = h.docker.list_instances(&scope).await.unwrap();
        if list.iter().any(|i| i.service == "api" && i.spec_hash != v1_hash && i.is_running()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the child never started a v2 instance");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sample(&url, 9).await.get("v1"), Some(&9), "the old version serves everything");
    assert_eq!(h.docker.list_records(&scope, "lock").await.unwrap().len(), 1, "the dead process's lock is left");

    // The next apply recovers the lock and finishes the rollout.
    let (result, events) = support::apply_collect(&killable(&h.name, "v2"), &h.docker).await;
    let finished = result.unwrap();
    let tally = load.stop().await;
    assert_no_failures(&tally);
    let recovered = events.iter().find_map(|e| match &e.kind {
        EventKind::LockRecovered { holder } => Some(holder.clone()),
        _ => None,
    });
    assert!(recovered.as_deref().is_some_and(|h| h.contains("no longer exists")), "{recovered:?}");
    assert_eq!(finished.instances("api").len(), 3);
    assert_eq!(sample(&url, 9).await.get("v2"), Some(&9));
    let left = h.docker.list_instances(&scope).await.unwrap();
    assert_eq!(left.iter().filter(|i| i.service == "api").count(), 3, "nothing of the killed rollout is left");
}
