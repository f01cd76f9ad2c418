//! The engine's rollout, rollback, deadline and failure paths driven through the in-memory runtime
//! (`harbormaster::backend::memory`, feature `test-util`): no engine, milliseconds per test, and
//! faults a real engine cannot be made to produce on demand (a create that fails once, a probe that
//! flaps, a target that stops answering or hangs).

use std::time::{Duration, Instant};

use harbormaster::backend::memory::{Behavior, Fault, MemoryBackend};
use harbormaster::{
    Action, Amount, Condition, Down, Environment, Error, ErrorKind, HealthCheck, Port, Rollout, RolloutOutcome, Service,
};

fn fast_check() -> HealthCheck {
    HealthCheck::http(8080, "/health")
        .interval(Duration::from_millis(10))
        .timeout(Duration::from_millis(200))
        .retries(20)
}

fn api(tag: &str, replicas: u32) -> Service {
    Service::builder("api")
        .image(format!("api:{tag}"))
        .port(Port::tcp(8080).publish_ephemeral())
        .health(fast_check())
        .replicas(replicas)
        .stop_grace_period(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn env_of(services: impl IntoIterator<Item = Service>) -> Environment {
    Environment::builder("mem", "test").services(services).deadline(Duration::from_secs(20)).build().unwrap()
}

fn ids(target: &MemoryBackend, service: &str) -> Vec<String> {
    let mut v: Vec<String> = target.running(service).into_iter().map(|i| i.id).collect();
    v.sort();
    v
}

#[tokio::test]
async fn apply_serves_on_real_ports_and_a_second_plan_is_unchanged() {
    let target = MemoryBackend::new();
    target.behave("api:1", Behavior::healthy().body("v1"));
    let env = env_of([api("1", 2)]);
    let deployed = env.apply(&target).await.unwrap();
    assert_eq!(target.running("api").len(), 2);
    let endpoints = deployed.endpoints("api", 8080).unwrap();
    assert_eq!(endpoints.len(), 2);
    let body = reqwest::get(format!("{}/", endpoints[0].http_url())).await.unwrap().text().await.unwrap();
    assert_eq!(body, "v1");
    let plan = env.plan(&target).await.unwrap();
    assert!(plan.services.iter().all(|s| s.action == Action::Unchanged), "{plan}");
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Succeeded));
}

#[tokio::test]
async fn a_rolling_update_replaces_every_replica() {
    let target = MemoryBackend::new();
    env_of([api("1", 3)]).apply(&target).await.unwrap();
    let before = ids(&target, "api");
    let deployed = env_of([api("2", 3)]).apply(&target).await.unwrap();
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Succeeded));
    let after = ids(&target, "api");
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|id| !before.contains(id)), "every replica is new");
    assert_eq!(target.instances().len(), 3, "old replicas are removed, not just stopped");
}

#[tokio::test]
async fn an_unhealthy_version_is_rolled_back_and_the_old_replicas_keep_serving() {
    let target = MemoryBackend::new();
    target.behave("api:2", Behavior::healthy().http_status(503));
    env_of([api("1", 2)]).apply(&target).await.unwrap();
    let before = ids(&target, "api");
    let err = env_of([api("2", 2)]).apply(&target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed, "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert!(err.to_string().contains("503"), "the cause names the probe result: {err}");
    let running = target.running("api");
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|i| i.image_id == before_image(&target, &before)), "v1 serves again");
    let history = env_of([api("2", 2)]).history(&target, "api").await.unwrap();
    assert!(matches!(history.last().map(|r| &r.outcome), Some(RolloutOutcome::RolledBack { .. })), "{history:?}");
}

fn before_image(target: &MemoryBackend, ids: &[String]) -> String {
    target.instances().into_iter().find(|i| ids.contains(&i.id)).map(|i| i.image_id).unwrap_or_default()
}

#[tokio::test]
async fn a_create_that_fails_leaves_the_old_version_untouched() {
    let target = MemoryBackend::new();
    env_of([api("1", 2)]).apply(&target).await.unwrap();
    let before = ids(&target, "api");
    target.inject(Fault::CreateFails { service: "api".into(), times: 1 });
    let err = env_of([api("2", 2)]).apply(&target).await.unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(ids(&target, "api"), before, "nothing of the old version was touched");
    assert_eq!(target.instances().len(), 2, "nothing of the new version is left behind");
    // The fault is gone: the next apply converges.
    env_of([api("2", 2)]).apply(&target).await.unwrap();
    assert!(ids(&target, "api").iter().all(|id| !before.contains(id)));
}

#[tokio::test]
async fn a_start_that_fails_is_rolled_back() {
    let target = MemoryBackend::new();
    env_of([api("1", 2)]).apply(&target).await.unwrap();
    let before = ids(&target, "api");
    target.inject(Fault::StartFails { service: "api".into(), times: 1 });
    let err = env_of([api("2", 2)]).apply(&target).await.unwrap_err();
    assert!(err.to_string().contains("could not start"), "{err}");
    let running = target.running("api");
    assert_eq!(running.len(), 2, "two replicas serve after the failed start");
    assert!(running.iter().all(|i| i.image_id == before_image(&target, &before)));
}

#[tokio::test]
async fn an_instance_that_dies_while_settling_fails_its_gate() {
    let target = MemoryBackend::new();
    target.behave("api:2", Behavior::healthy().crash_after(Duration::from_millis(30), 3));
    env_of([api("1", 1)]).apply(&target).await.unwrap();
    let svc = Service::builder("api")
        .image("api:2")
        .port(Port::tcp(8080).publish_ephemeral())
        .health(fast_check())
        .rollout(Rollout::rolling().min_ready(Duration::from_millis(300)))
        .build()
        .unwrap();
    let err = env_of([svc]).apply(&target).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("rolled back"), "{text}");
    assert!(text.contains("exit") || text.contains("exited"), "the cause says it exited: {text}");
    assert_eq!(target.running("api").len(), 1);
}

#[tokio::test]
async fn a_flapping_probe_never_reaches_its_success_threshold() {
    let target = MemoryBackend::new();
    target.behave("api:2", Behavior::healthy().flapping(1, 1));
    env_of([api("1", 1)]).apply(&target).await.unwrap();
    let svc = Service::builder("api")
        .image("api:2")
        .port(Port::tcp(8080).publish_ephemeral())
        .health(fast_check().success_threshold(3).retries(6))
        .build()
        .unwrap();
    let err = env_of([svc]).apply(&target).await.unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    // The same flapping with a threshold of 1 passes.
    let target = MemoryBackend::new();
    target.behave("api:2", Behavior::healthy().flapping(1, 1));
    env_of([api("2", 1)]).apply(&target).await.unwrap();
}

#[tokio::test]
async fn a_rollout_deadline_rolls_back_a_version_that_is_too_slow() {
    let target = MemoryBackend::new();
    target.behave("api:2", Behavior::healthy().answer_after(Duration::from_secs(30)));
    env_of([api("1", 1)]).apply(&target).await.unwrap();
    let svc = Service::builder("api")
        .image("api:2")
        .port(Port::tcp(8080).publish_ephemeral())
        .health(fast_check().interval(Duration::from_millis(100)).timeout(Duration::from_secs(5)).retries(3))
        .rollout(Rollout::rolling().deadline(Duration::from_millis(400)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = env_of([svc]).apply(&target).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    match &err {
        Error::Apply(f) => match f.error_of("api") {
            Some(Error::RolledBack { reason, .. }) => assert_eq!(reason.kind(), ErrorKind::Timeout, "{reason}"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other}"),
    }
    assert_eq!(target.running("api").len(), 1, "v1 still serves");
}

#[tokio::test]
async fn an_unreachable_target_fails_fast_with_a_kind_to_match() {
    let target = MemoryBackend::new();
    target.inject(Fault::Unreachable);
    let started = Instant::now();
    let err = env_of([api("1", 1)]).apply(&target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    target.inject(Fault::Heal);
    env_of([api("1", 1)]).apply(&target).await.unwrap();
}

#[tokio::test]
async fn a_target_that_hangs_is_bounded_by_the_deadline() {
    let target = MemoryBackend::new();
    env_of([api("1", 1)]).apply(&target).await.unwrap();
    target.inject(Fault::Hang);
    let env = Environment::builder("mem", "test")
        .service(api("2", 1))
        .deadline(Duration::from_millis(500))
        .lock_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = env.apply(&target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    target.inject(Fault::Heal);
}

#[tokio::test]
async fn a_failed_job_skips_its_dependents_and_a_completed_job_never_runs_twice() {
    let target = MemoryBackend::new();
    target.behave("migrate:bad", Behavior::healthy().job(Duration::from_millis(5), 2));
    let job = |tag: &str| Service::job("migrate").image(format!("migrate:{tag}")).build().unwrap();
    let web = |tag: &str| {
        Service::builder("web")
            .image(format!("web:{tag}"))
            .port(Port::tcp(8080))
            .depends_on("migrate", Condition::CompletedSuccessfully)
            .build()
            .unwrap()
    };
    let err = env_of([job("bad"), web("1")]).apply(&target).await.unwrap_err();
    match &err {
        Error::Apply(f) => {
            assert!(matches!(f.error_of("migrate"), Some(Error::JobFailed { exit_code: 2, .. })), "{err}");
            assert_eq!(f.not_started, vec!["web".to_string()]);
        }
        other => panic!("{other}"),
    }
    assert!(target.running("web").is_empty());
    env_of([job("good"), web("1")]).apply(&target).await.unwrap();
    let starts = target.calls("start_instance");
    env_of([job("good"), web("1")]).apply(&target).await.unwrap();
    assert_eq!(target.calls("start_instance"), starts, "nothing started again: the job completed for this config");
}

#[tokio::test]
async fn a_second_deployer_is_told_who_holds_the_lock() {
    let target = MemoryBackend::new();
    target.behave("api:slow", Behavior::healthy().answer_after(Duration::from_millis(1500)));
    let slow_api = Service::builder("api")
        .image("api:slow")
        .port(Port::tcp(8080).publish_ephemeral())
        .health(fast_check().timeout(Duration::from_secs(3)))
        .build()
        .unwrap();
    let slow = Environment::builder("mem", "locked").service(slow_api).actor("first").build().unwrap();
    let other = Environment::builder("mem", "locked")
        .service(api("1", 1))
        .lock_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let first = {
        let target = target.clone();
        tokio::spawn(async move { slow.apply(&target).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = other.apply(&target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    match &err {
        Error::Locked { holder, .. } => assert_eq!(holder.actor.as_deref(), Some("first")),
        other => panic!("{other}"),
    }
    first.await.unwrap().unwrap();
    other.apply(&target).await.unwrap();
}

#[tokio::test]
async fn rollback_returns_to_the_previous_revision() {
    let target = MemoryBackend::new();
    env_of([api("1", 2)]).apply(&target).await.unwrap();
    let v1 = before_image(&target, &ids(&target, "api"));
    env_of([api("2", 2)]).apply(&target).await.unwrap();
    assert_ne!(before_image(&target, &ids(&target, "api")), v1);
    env_of([api("2", 2)]).rollback(&target, "api").await.unwrap();
    let running = target.running("api");
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|i| i.image_id == v1));
    let history = env_of([api("2", 2)]).history(&target, "api").await.unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
}

#[tokio::test]
async fn a_missing_image_fails_the_plan_before_anything_changes() {
    let target = MemoryBackend::new();
    target.missing_image("api:9");
    let err = env_of([api("9", 1)]).apply(&target).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(target.calls("create_instance"), 0);
}

#[tokio::test]
async fn a_killed_replica_shows_in_status_and_the_next_apply_replaces_it() {
    let target = MemoryBackend::new();
    let env = env_of([api("1", 3)]);
    env.apply(&target).await.unwrap();
    assert_eq!(target.kill("api", Some(1), 137), 1);
    let status = env.status(&target).await.unwrap();
    let api_status = status.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!((api_status.desired, api_status.running), (3, 2));
    let plan = env.plan(&target).await.unwrap();
    assert!(plan.services.iter().any(|s| s.action != Action::Unchanged), "{plan}");
    env.apply(&target).await.unwrap();
    assert_eq!(target.running("api").len(), 3);
}

#[tokio::test]
async fn scaling_down_keeps_the_lowest_slots_and_down_removes_everything() {
    let target = MemoryBackend::new();
    env_of([api("1", 3)]).apply(&target).await.unwrap();
    let deployed = env_of([api("1", 1)]).apply(&target).await.unwrap();
    assert_eq!(deployed.instances("api").len(), 1);
    assert_eq!(deployed.instances("api")[0].slot, 0);
    env_of([api("1", 1)]).down(&target, Down::default()).await.unwrap();
    assert!(target.instances().is_empty());
}

#[tokio::test]
async fn roles_place_replicas_on_the_hosts_they_map_to() {
    let target = MemoryBackend::with_hosts(["a", "b", "c"]);
    let svc = Service::builder("api")
        .image("api:1")
        .port(Port::tcp(8080).publish_ephemeral())
        .health(fast_check())
        .role("app")
        .replicas(4)
        .build()
        .unwrap();
    let env = Environment::builder("mem", "roles").service(svc).hosts("app", ["b", "c"]).build().unwrap();
    env.apply(&target).await.unwrap();
    let mut hosts: Vec<String> = target.running("api").into_iter().filter_map(|i| i.host).collect();
    hosts.sort();
    assert_eq!(hosts, ["b", "b", "c", "c"]);
}

#[tokio::test]
async fn a_record_store_that_refuses_writes_stops_the_apply_before_any_change() {
    let target = MemoryBackend::new();
    target.inject(Fault::RecordsFail);
    let err = env_of([api("1", 1)]).apply(&target).await.unwrap_err();
    assert!(err.to_string().contains("record store"), "{err}");
    assert_eq!(target.calls("create_instance"), 0);
}

#[tokio::test]
async fn a_blue_green_rollout_waits_for_its_promotion_and_an_abort_brings_the_old_set_back() {
    let target = MemoryBackend::new();
    let ingress = || {
        harbormaster::Ingress::builder()
            .image("caddy:2")
            .http(Port::tcp(80).publish_ephemeral())
            .route(harbormaster::Route::to("api", 8080))
            .build()
            .unwrap()
    };
    let env = |tag: &str| {
        let svc = Service::builder("api")
            .image(format!("api:{tag}"))
            .port(Port::tcp(8080))
            .health(fast_check())
            .replicas(2)
            .rollout(Rollout::blue_green().manual_promotion())
            .build()
            .unwrap();
        Environment::builder("mem", "bluegreen").service(svc).ingress(ingress()).build().unwrap()
    };
    env("1").apply(&target).await.unwrap();
    let v1 = ids(&target, "api");
    let waiting = env("2").apply(&target).await.unwrap();
    assert_eq!(waiting.outcome("api"), Some(&RolloutOutcome::AwaitingPromotion { weight: 0 }));
    assert_eq!(target.running("api").len(), 4, "both sets run side by side");
    // The proxies got their configuration as files, and were told to load it.
    assert!(target.calls("write_file") > 0 && target.calls("exec") > 0);
    env("2").abort_promotion(&target, "api").await.unwrap();
    assert_eq!(ids(&target, "api"), v1, "the old set serves, the new one is gone");
    env("2").apply(&target).await.unwrap();
    let promoted = env("2").promote(&target, "api").await.unwrap();
    assert_eq!(promoted.outcome("api"), Some(&RolloutOutcome::Succeeded));
    let now = ids(&target, "api");
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|id| !v1.contains(id)));
}

/// Three batches of one: the second batch's start fails while the first batch's rotation change
/// runs beside it. The first batch is undone too; every old replica serves, no new one is left.
#[tokio::test]
async fn a_failure_in_a_later_batch_rolls_back_the_batches_before_it() {
    let target = MemoryBackend::new();
    target.behave("api:2", Behavior::healthy().body("v2"));
    let v = |tag: &str| {
        let rolling = Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0));
        let s = Service::builder("api")
            .image(format!("api:{tag}"))
            .port(Port::tcp(8080).publish_ephemeral())
            .health(fast_check())
            .replicas(3)
            .stop_grace_period(Duration::from_millis(50))
            .rollout(rolling.min_ready(Duration::from_millis(200)))
            .build()
            .unwrap();
        env_of([s])
    };
    v("1").apply(&target).await.unwrap();
    let before = ids(&target, "api");
    let old_image = before_image(&target, &before);
    let apply = {
        let target = target.clone();
        tokio::spawn(async move { v("2").apply(&target).await })
    };
    // Once the first new replica runs, the next start fails.
    let until = Instant::now() + Duration::from_secs(10);
    while !target.running("api").iter().any(|i| i.image_id != old_image) {
        assert!(Instant::now() < until, "the first batch never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    target.inject(Fault::StartFails { service: "api".into(), times: 1 });
    let err = apply.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    let running = target.running("api");
    assert_eq!(running.len(), 3, "three replicas serve after the rollback");
    assert!(running.iter().all(|i| i.image_id == old_image), "only the old version serves");
    assert_eq!(target.instances().len(), 3, "nothing of the new version is left");
}
