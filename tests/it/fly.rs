//! The Fly backend through the public API, against the Machines API test server
//! (tests/fixtures/fly-api): it follows the published spec and rejects what the real API would,
//! and its machines are real containers (images pulled from the test registry, real checks, logs,
//! exec and an edge proxy).

use crate::support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use harbormaster::{
    Backend, Condition, Down, Environment, ErrorKind, EventKind, HealthCheck, InstanceState, LogOptions, Port, Rollout,
    Secret, Service, Volume,
};
use support::fly;
use support::load::Load;
use support::PROJECT;

fn check() -> HealthCheck {
    HealthCheck::http(8080, "/health").interval(Duration::from_millis(300)).timeout(Duration::from_secs(1)).retries(60)
}

fn api(image: &str, version: &str) -> Service {
    Service::builder("api")
        .image(image)
        .env("VERSION", version)
        // The app's public port: the container's own (a fixed one would be the same for both
        // replicas, which the description refuses, as on one Docker host).
        .port(Port::tcp(8080).publish_ephemeral())
        .replicas(2)
        .stop_grace_period(Duration::from_secs(2))
        .health(check())
        .rollout(Rollout::rolling().min_ready(Duration::from_millis(500)))
        .depends_on("migrate", Condition::CompletedSuccessfully)
        .build()
        .unwrap()
}

/// database, migration job, API with 2 replicas, web: the shape of the seed guides.
fn stack(app: &str, name: &str, image: &str, version: &str) -> Environment {
    let db = Service::builder("db")
        .image(image)
        .env("VERSION", "db")
        .port(Port::tcp(8080))
        .volume(Volume::named("pgdata").at("/data"))
        .secret("DB_PASSWORD", Secret::new("fly-db-secret-2718"))
        .health(HealthCheck::tcp(8080).interval(Duration::from_millis(300)).retries(60))
        .build()
        .unwrap();
    let migrate = Service::job("migrate")
        .image(image)
        .env("JOB_EXIT_CODE", "0")
        .env("REQUIRE", format!("db.process.{app}.internal:8080"))
        .depends_on("db", Condition::Healthy)
        .build()
        .unwrap();
    let web = Service::builder("web")
        .image(image)
        .env("VERSION", "web")
        .port(Port::tcp(8080).publish(80))
        .health(check())
        .depends_on("api", Condition::Healthy)
        .build()
        .unwrap();
    Environment::builder(PROJECT, name)
        .service(db)
        .service(migrate)
        .service(api(image, version))
        .service(web)
        .deadline(Duration::from_secs(240))
        .build()
        .unwrap()
}

async fn body(addr: std::net::SocketAddr) -> String {
    support::get(&format!("http://{addr}/")).await.1
}

#[tokio::test]
async fn a_seed_shaped_stack_deploys_rolls_without_a_failed_request_and_rolls_back() {
    let app = support::unique("shop");
    let fake = fly::fake(&app).await;
    let fly = fly::backend(&fake, &app).await;
    let image = fly::image("stack").await;
    let name = support::unique("fly-stack");
    let v1 = stack(&app, &name, &image, "v1");

    let plan = v1.plan(&fly).await.unwrap();
    assert!(fake.machines(&app).is_empty(), "a plan changes nothing: {:?}", fake.machines(&app));
    assert!(!plan.is_noop(), "{plan}");
    assert!(plan.service("api").is_some(), "{plan}");

    v1.apply(&fly).await.unwrap();
    let status = v1.status(&fly).await.unwrap();
    let api_status = status.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!(api_status.instances.len(), 2, "{status:?}");
    assert!(api_status.instances.iter().all(|i| i.state == InstanceState::Running), "{status:?}");
    let public = fake.public_addr(&app, 8080).expect("the edge proxy of the api's public port");
    assert!(body(public).await.contains("v1"));
    // The job ran to its exit, against the database's private name.
    let logs: Vec<String> = v1
        .logs(&fly, "migrate", LogOptions::default())
        .await
        .unwrap()
        .filter_map(|l| async move { l.ok().map(|l| l.text) })
        .collect()
        .await;
    assert!(logs.iter().any(|l| l.contains("is reachable")), "{logs:?}");
    assert!(logs.iter().all(|l| !l.contains("fly-db-secret-2718")), "{logs:?}");

    // Rolling to v2 through the edge proxy: not one failed request.
    let load = Load::start(&format!("http://{public}/"), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = stack(&app, &name, &image, "v2");
    v2.apply(&fly).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.stop().await;
    assert!(tally.failed.is_empty(), "failed requests during the rollout: {:?}", tally.failed);
    assert!(tally.ok() > 20, "{tally:?}");
    assert!(body(public).await.contains("v2"));

    // The secret is in the database machine's environment, and nowhere in what the library keeps.
    let machines = fake.machines(&app);
    let (keeper, _, _) = machines.iter().find(|(_, n, _)| n.ends_with("-hm-records")).expect("the record keeper");
    let (records, _) = fake.stored(&app, keeper);
    assert!(records.keys().any(|k| k.starts_with("hm-s-")), "revisions are kept: {records:?}");
    let (db, _, _) = machines.iter().find(|(_, n, _)| n.contains("-db-")).expect("the db machine");
    let (labels, env) = fake.stored(&app, db);
    assert_eq!(env.get("DB_PASSWORD").map(String::as_str), Some("fly-db-secret-2718"));
    for (k, v) in records.iter().chain(labels.iter()) {
        assert!(!v.contains("fly-db-secret-2718") && !k.contains("fly-db-secret-2718"), "{k}");
    }
    let decoded: String = records
        .iter()
        .filter(|(k, _)| k.starts_with("hm-s-") && k[5..].contains('-'))
        .map(|(_, v)| {
            use base64::Engine as _;
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(v).unwrap()).into_owned()
        })
        .collect();
    assert!(
        decoded.contains("revision") || decoded.contains("api"),
        "the state decodes: {}",
        &decoded[..decoded.len().min(200)]
    );
    assert!(!decoded.contains("fly-db-secret-2718"), "a secret value in the stored state");

    // Rolled back: v1 answers again, and the history says so.
    v2.rollback(&fly, "api").await.unwrap();
    assert!(body(public).await.contains("v1"));
    let history = v2.history(&fly, "api").await.unwrap();
    assert!(history.len() >= 3, "{history:?}");

    let exec = v2.exec(&fly, "api", ["/workload", "probe", "8080", "/health"]).await.unwrap();
    assert_eq!(exec.exit_code, 0, "{exec:?}");

    let report = v2.down(&fly, Down::default().with_volumes()).await.unwrap();
    assert_eq!(report.removed_volumes.len(), 1, "{report:?}");
    let left = fake.machines(&app);
    assert!(left.is_empty(), "machines left after down (the record keeper included): {left:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn on_the_private_network_the_library_probes_machines_itself() {
    let app = support::unique("private");
    let fake = fly::fake(&app).await;
    let fly = fly::builder(&fake, &app).private_network(true).connect().await.unwrap();
    assert!(!fly.reports_health());
    let image = fly::image("private").await;
    let name = support::unique("fly-private");
    let svc = Service::builder("api").image(&image).port(Port::tcp(8080)).health(check()).build().unwrap();
    let env = Environment::builder(PROJECT, &name).service(svc).build().unwrap();
    let (result, events) = support::apply_collect(&env, &fly).await;
    result.unwrap();
    let probed = events.iter().any(|e| matches!(&e.kind, EventKind::ProbePassed { detail, .. } if detail.contains("GET http://") && !detail.contains("<no address>")));
    assert!(probed, "a probe of the machine's private address: {events:?}");
    let status = env.status(&fly).await.unwrap();
    assert_eq!(status.services[0].instances[0].health, harbormaster::Health::Healthy, "{status:?}");
    env.down(&fly, Down::default()).await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn a_second_deployer_gets_locked_naming_the_holder() {
    let app = support::unique("lock");
    let fake = fly::fake(&app).await;
    let first = fly::backend(&fake, &app).await;
    let second = fly::backend(&fake, &app).await;
    let image = fly::image("lock").await;
    let name = support::unique("fly-lock");
    let slow = Service::builder("api")
        .image(&image)
        .env("READY_DELAY_MS", "6000")
        .port(Port::tcp(8080).publish(8080))
        .health(check())
        .build()
        .unwrap();
    let env = Environment::builder(PROJECT, &name).service(slow).lock_timeout(Duration::from_secs(1)).build().unwrap();
    let running = tokio::spawn({
        let env = env.clone();
        async move { env.apply(&first).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = env.apply(&second).await.expect_err("the lock is held by the first deployer");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let text = err.to_string();
    assert!(text.contains("process") && text.contains("apply"), "the error names the holder: {text}");
    running.await.unwrap().unwrap();
    env.down(&second, Down::default()).await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn a_machine_that_dies_is_reported_and_replaced_by_the_next_apply() {
    let app = support::unique("dies");
    let fake = fly::fake(&app).await;
    let fly = fly::backend(&fake, &app).await;
    let image = fly::image("dies").await;
    let name = support::unique("fly-dies");
    let svc = Service::builder("api")
        .image(&image)
        .port(Port::tcp(8080).publish(8080))
        .restart(harbormaster::RestartPolicy::No)
        .health(check())
        .build()
        .unwrap();
    let env = Environment::builder(PROJECT, &name).service(svc).build().unwrap();
    env.apply(&fly).await.unwrap();
    let (id, _, _) = fake.machines(&app).into_iter().find(|(_, n, _)| n.contains("-api-")).expect("the api machine");
    assert!(fake.kill(&app, &id).await);
    let died = Instant::now();
    loop {
        let i = fly.inspect_instance(&id).await.unwrap();
        if i.state == InstanceState::Exited {
            assert_eq!(i.exit_code, Some(137), "{i:?}");
            break;
        }
        assert!(died.elapsed() < Duration::from_secs(20), "never seen as exited: {i:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = env.status(&fly).await.unwrap();
    assert_eq!(status.services[0].instances[0].state, InstanceState::Exited, "{status:?}");
    env.apply(&fly).await.unwrap();
    let status = env.status(&fly).await.unwrap();
    assert_eq!(status.services[0].instances.len(), 1, "{status:?}");
    assert_eq!(status.services[0].instances[0].state, InstanceState::Running, "{status:?}");
    env.down(&fly, Down::default()).await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn an_expired_lease_on_the_records_is_waited_out_and_408s_from_wait_are_looped() {
    let app = support::unique("lease");
    let fake = fly::fake(&app).await;
    let fly = fly::backend(&fake, &app).await;
    let image = fly::image("lease").await;
    let name = support::unique("fly-lease");
    let job =
        Service::job("migrate").image(&image).env("JOB_EXIT_CODE", "0").env("JOB_DURATION_MS", "3500").build().unwrap();
    let env = Environment::builder(PROJECT, &name).service(job).build().unwrap();
    env.apply(&fly).await.unwrap();
    // Someone else's lease on the record keeper (a crashed deployer): it lapses after 3 s.
    let (keeper, _, _) =
        fake.machines(&app).into_iter().find(|(_, n, _)| n.ends_with("-hm-records")).expect("the record keeper");
    assert!(fake.hold_lease(&app, &keeper, 3, "a deployer that died").is_some());
    // A wait answers 408 after 1 s: a job of 3.5 s takes several.
    fake.set_wait_cap(Duration::from_secs(1));
    let before = fake.wait_timeouts();
    let started = Instant::now();
    let env2 = Environment::builder(PROJECT, &name)
        .service(
            Service::job("migrate")
                .image(&image)
                .env("JOB_EXIT_CODE", "0")
                .env("JOB_DURATION_MS", "3000")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    env2.apply(&fly).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "the apply waited for the lease: {:?}", started.elapsed());
    assert!(fake.wait_timeouts() > before, "a wait answered 408 and was called again");
    env2.down(&fly, Down::default()).await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn a_lease_held_by_someone_else_is_error_locked_naming_the_holder() {
    let app = support::unique("held");
    let fake = fly::fake(&app).await;
    let image = fly::image("held").await;
    let fly = fly::builder(&fake, &app).lease_wait(Duration::from_secs(2)).connect().await.unwrap();
    let name = support::unique("fly-held");
    let job = || Service::job("migrate").image(&image).env("JOB_EXIT_CODE", "0").build().unwrap();
    let env = Environment::builder(PROJECT, &name).service(job()).build().unwrap();
    env.apply(&fly).await.unwrap();
    let (keeper, _, _) =
        fake.machines(&app).into_iter().find(|(_, n, _)| n.ends_with("-hm-records")).expect("the record keeper");
    assert!(fake.hold_lease(&app, &keeper, 3600, "flyctl machine update by ops").is_some());
    let started = Instant::now();
    let err = env.apply(&fly).await.expect_err("the records stay leased by another");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(matches!(err, harbormaster::Error::Locked { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let text = err.to_string();
    assert!(text.contains("someone-else@example.com") && text.contains("flyctl machine update by ops"), "{text}");
    fake.shutdown().await;
}

#[tokio::test]
async fn bursts_of_429_and_503_are_retried_and_said_in_the_events() {
    let app = support::unique("burst");
    let fake = fly::fake(&app).await;
    let fly = fly::backend(&fake, &app).await;
    let image = fly::image("burst").await;
    let name = support::unique("fly-burst");
    let svc =
        Service::builder("api").image(&image).port(Port::tcp(8080).publish(8080)).health(check()).build().unwrap();
    let env = Environment::builder(PROJECT, &name).service(svc).build().unwrap();
    fake.inject(&[429, 503, 503, 502, 429]);
    let (result, events) = support::apply_collect(&env, &fly).await;
    result.unwrap();
    let retried: Vec<&EventKind> =
        events.iter().map(|e| &e.kind).filter(|k| matches!(k, EventKind::TargetRetried { .. })).collect();
    assert_eq!(retried.len(), 5, "{retried:?}");
    assert!(matches!(retried[0], EventKind::TargetRetried { reason, .. } if reason.starts_with("429")), "{retried:?}");
    assert_eq!(fly.api_retries(), 5);
    env.down(&fly, Down::default()).await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn checks_fly_cannot_express_are_refused_before_anything_changes() {
    let app = support::unique("refuse");
    let fake = fly::fake(&app).await;
    let fly = fly::backend(&fake, &app).await;
    let name = support::unique("fly-refuse");
    let svc = Service::builder("api")
        .image("127.0.0.1:5055/hm/fly-workload:refuse")
        .health(HealthCheck::exec(["/workload", "probe"]))
        .build()
        .unwrap();
    let env = Environment::builder(PROJECT, &name).service(svc).build().unwrap();
    // The plan says so (as every target does, through `Backend::limits`), and apply refuses.
    let plan = env.plan(&fly).await.unwrap();
    let refused: Vec<_> = plan.limits.iter().filter(|l| l.refused).collect();
    assert!(refused.iter().any(|l| l.service == "api" && l.what.contains("HTTP or TCP")), "{plan}");
    assert!(plan.to_string().contains("HTTP or TCP"), "the plan's text shows it: {plan}");
    let err = env.apply(&fly).await.expect_err("an exec check cannot be expressed on Fly");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("api") && err.to_string().contains("HTTP or TCP"), "{err}");
    let left = fake.machines(&app);
    assert!(left.iter().all(|(_, n, _)| n.ends_with("-hm-records")), "only the record keeper (its audit): {left:?}");
    env.down(&fly, Down::default()).await.unwrap();
    let left = fake.machines(&app);
    assert!(left.is_empty(), "{left:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn the_token_never_appears_and_a_wrong_one_is_unauthorized() {
    let app = support::unique("token");
    let fake = fly::fake(&app).await;
    let fly = fly::backend(&fake, &app).await;
    assert!(!format!("{fly:?}").contains(&fake.token()), "{fly:?}");
    let wrong = "wrong-token-value-1618";
    let err = harbormaster::FlyBackend::builder()
        .app(&app)
        .token(Secret::new(wrong))
        .machines_url(fake.machines_url())
        .connect()
        .await
        .expect_err("a wrong token");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(!err.to_string().contains(wrong) && !format!("{err:?}").contains(wrong), "{err:?}");
    let missing = harbormaster::FlyBackend::builder().app(&app).machines_url(fake.machines_url()).connect().await;
    assert!(missing.expect_err("no token").to_string().contains("token"));
    let no_app = harbormaster::FlyBackend::builder()
        .app("no-such-app")
        .token(Secret::new(fake.token()))
        .machines_url(fake.machines_url())
        .connect()
        .await
        .expect_err("a missing app");
    assert_eq!(no_app.kind(), ErrorKind::NotFound, "{no_app}");
    // Nothing listening: said quickly, as unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let started = Instant::now();
    let nothing = harbormaster::FlyBackend::builder()
        .app(&app)
        .token(Secret::new(fake.token()))
        .machines_url(format!("http://{closed}/v1"))
        .connect()
        .await
        .expect_err("nothing listens there");
    assert_eq!(nothing.kind(), ErrorKind::Unreachable, "{nothing}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(!nothing.to_string().contains(&fake.token()), "{nothing}");
    fake.shutdown().await;
}

/// The test server itself answers as the spec says, and refuses what the real API refuses.
#[tokio::test]
async fn the_test_server_follows_the_spec() {
    let app = support::unique("spec");
    let fake = fly::fake(&app).await;
    let image = fly::image("spec").await;
    let http = reqwest::Client::new();
    let base = fake.machines_url();
    let token = format!("Bearer {}", fake.token());
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>, nonce: Option<&str>| {
        let mut r = http.request(method, format!("{base}{path}")).header("authorization", &token);
        if let Some(n) = nonce {
            r = r.header("fly-machine-lease-nonce", n);
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b.to_string());
        }
        async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default())
        }
    };
    use reqwest::Method as M;
    let machines = format!("/apps/{app}/machines");
    // Unknown fields and wrong types are refused.
    let (s, b) =
        call(M::POST, &machines, Some(serde_json::json!({"config": {"image": image, "imagee": 1}})), None).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap_or("").contains("imagee"), "{b}");
    let (s, _) =
        call(M::POST, &machines, Some(serde_json::json!({"config": {"image": image, "guest": {"cpus": "two"}}})), None)
            .await;
    assert_eq!(s, 400);
    let (s, _) = call(
        M::POST,
        &machines,
        Some(serde_json::json!({"config": {"image": image, "guest": {"memory_mb": 300}}})),
        None,
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = call(M::GET, &format!("{machines}?bogus=1"), None, None).await;
    assert_eq!(s, 400);
    let (s, _) = call(M::GET, "/apps/no-such-app/machines", None, None).await;
    assert_eq!(s, 404);
    // A machine with a lease: changes without the nonce are refused with 409.
    let (s, m) = call(
        M::POST,
        &machines,
        Some(serde_json::json!({"config": {"image": image, "env": {"VERSION": "spec"}}, "lease_ttl": 30})),
        None,
    )
    .await;
    assert_eq!(s, 200, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let nonce = m["nonce"].as_str().unwrap().to_string();
    assert_eq!(m["state"], "created");
    let (s, b) = call(M::POST, &format!("{machines}/{id}/stop"), None, None).await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = call(M::POST, &format!("{machines}/{id}/lease"), Some(serde_json::json!({"ttl": 10})), None).await;
    assert_eq!(s, 409, "{b}");
    let (s, _) = call(M::GET, &format!("{machines}/{id}/wait?state=started&timeout=30"), None, None).await;
    assert_eq!(s, 200);
    let (s, _) = call(M::GET, &format!("{machines}/{id}/wait?state=stopped&timeout=1"), None, None).await;
    assert_eq!(s, 400, "stopped needs instance_id");
    let iid =
        call(M::GET, &format!("{machines}/{id}"), None, None).await.1["instance_id"].as_str().unwrap().to_string();
    let (s, _) =
        call(M::GET, &format!("{machines}/{id}/wait?state=stopped&timeout=1&instance_id={iid}"), None, None).await;
    assert_eq!(s, 408, "still running after 1 s");
    let (s, _) = call(M::DELETE, &format!("{machines}/{id}"), None, Some(&nonce)).await;
    assert_eq!(s, 412, "a started machine is not destroyed without stopping it");
    let (s, _) =
        call(M::POST, &format!("{machines}/{id}/stop"), Some(serde_json::json!({"timeout": "5s"})), Some(&nonce)).await;
    assert_eq!(s, 200);
    let (s, _) =
        call(M::GET, &format!("{machines}/{id}/wait?state=stopped&timeout=30&instance_id={iid}"), None, None).await;
    assert_eq!(s, 200);
    let (s, _) = call(M::DELETE, &format!("{machines}/{id}/lease"), None, Some(&nonce)).await;
    assert_eq!(s, 200);
    let (s, _) = call(M::DELETE, &format!("{machines}/{id}"), None, None).await;
    assert_eq!(s, 200);
    let (s, _) = call(M::GET, &format!("{machines}/{id}/wait?state=destroyed&timeout=30"), None, None).await;
    assert_eq!(s, 200);
    let (s, b) = call(M::GET, &format!("{machines}/{id}"), None, None).await;
    assert_eq!((s, b["state"].as_str()), (200, Some("destroyed")));
    let unauthorized = http.get(format!("{base}/apps/{app}")).send().await.unwrap().status().as_u16();
    assert_eq!(unauthorized, 401);
    fake.shutdown().await;
}

fn killable(app: &str, name: &str, image: &str) -> Environment {
    let api = Service::builder("api")
        .image(image)
        .env("VERSION", "v1")
        .env("READY_DELAY_MS", "1500")
        .port(Port::tcp(8080).publish_ephemeral())
        .replicas(2)
        .health(check())
        .build()
        .unwrap();
    let _ = app;
    Environment::builder(PROJECT, name).service(api).lock_timeout(Duration::from_secs(60)).build().unwrap()
}

/// Not a test of its own: the deployer the kill test starts and kills.
#[tokio::test]
#[ignore = "the child deployer of the Fly kill test"]
async fn fly_child_applies() {
    let var = |k: &str| std::env::var(k).ok();
    let (Some(url), Some(logs), Some(token), Some(app), Some(name), Some(image)) = (
        var("HM_FLY_URL"),
        var("HM_FLY_LOGS"),
        var("HM_FLY_TOKEN"),
        var("HM_FLY_APP"),
        var("HM_FLY_ENV"),
        var("HM_FLY_IMAGE"),
    ) else {
        return;
    };
    let fly = harbormaster::FlyBackend::builder()
        .app(&app)
        .token(Secret::new(token))
        .machines_url(url)
        .logs_url(logs)
        .keeper_image(fly::keeper_image())
        .connect()
        .await
        .unwrap();
    support::kill::child(&killable(&app, &name, &image), &fly).await;
}

#[tokio::test]
async fn a_deployer_killed_mid_apply_is_taken_over_and_the_next_apply_converges() {
    let app = support::unique("killed");
    let fake = fly::fake(&app).await;
    let fly = fly::backend(&fake, &app).await;
    let image = fly::image("killed").await;
    let name = support::unique("fly-killed");
    let vars = [
        ("HM_FLY_URL", fake.machines_url()),
        ("HM_FLY_LOGS", fake.logs_url()),
        ("HM_FLY_TOKEN", fake.token()),
        ("HM_FLY_APP", app.clone()),
        ("HM_FLY_ENV", name.clone()),
        ("HM_FLY_IMAGE", image.clone()),
    ];
    let killed = tokio::task::spawn_blocking(move || {
        support::kill::run_child(
            &support::child_test(module_path!(), "fly_child_applies"),
            &vars.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>(),
            support::kill::KillAt::Matching("InstanceCreated"),
        )
    })
    .await
    .unwrap();
    assert!(killed.killed, "the child was killed mid-apply: {:?}", killed.events);
    // Its lock is left behind, with its machine half made; this deployer takes over (the holder's
    // process is gone) and converges.
    let env = killable(&app, &name, &image);
    if let Err(e) = env.apply(&fly).await {
        let url = format!("{}/apps/{app}/machines?include_deleted=true", fake.machines_url());
        let body = reqwest::Client::new()
            .get(url)
            .header("authorization", format!("Bearer {}", fake.token()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for m in v.as_array().unwrap() {
            eprintln!("DEBUG {} {} {} events={}", m["name"], m["state"], m["instance_id"], m["events"]);
        }
        eprintln!("DEBUG child events {:?}", killed.events);
        panic!("{e}");
    }
    let plan = env.plan(&fly).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    let left: Vec<(String, String, String)> =
        fake.machines(&app).into_iter().filter(|(_, n, _)| !n.ends_with("-hm-records")).collect();
    assert_eq!(left.len(), 2, "exactly the two replicas: {left:?}");
    assert!(left.iter().all(|(_, _, s)| s == "started"), "{left:?}");
    env.down(&fly, Down::default()).await.unwrap();
    assert!(fake.machines(&app).is_empty(), "{:?}", fake.machines(&app));
    fake.shutdown().await;
}

#[tokio::test]
async fn a_service_built_here_is_pushed_and_run_by_digest() {
    let app = support::unique("built");
    let fake = fly::fake(&app).await;
    support::workload::ensure_images();
    fly::image("built").await; // the record keeper's image
    let docker = support::registry::docker().await;
    let fly = fly::builder(&fake, &app).build_with(docker).connect().await.unwrap();
    let dir = std::env::temp_dir().join(support::unique("hm-fly-build"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {}\nENV VERSION=built\n", support::workload::IMAGE)).unwrap();
    let tag = format!("{}/hm/fly-built:{}", support::registry::ADDR, support::unique("v"));
    let name = support::unique("fly-built");
    let svc = Service::builder("api")
        .build_from(harbormaster::Build::context(&dir).tag(&tag))
        .port(Port::tcp(8080).publish_ephemeral())
        .health(check())
        .build()
        .unwrap();
    let env = Environment::builder(PROJECT, &name).service(svc).build().unwrap();
    env.apply(&fly).await.unwrap();
    let (id, _, _) = fake.machines(&app).into_iter().find(|(_, n, _)| n.contains("-api-")).expect("the api machine");
    let image = fake.image(&app, &id).unwrap_or_default();
    let repo = tag.rsplit_once(':').map(|(r, _)| r).unwrap_or_default();
    assert!(image.starts_with(&format!("{repo}@sha256:")), "the machine runs the pushed digest: {image}");
    let public = fake.public_addr(&app, 8080).expect("the api's public port");
    assert!(body(public).await.contains("built"));
    let plan = env.plan(&fly).await.unwrap();
    assert!(plan.is_noop(), "the same build is no change: {plan}");
    // Without an image builder, a build is refused before anything changes.
    let plain = fly::backend(&fake, &app).await;
    let err = env.plan(&plain).await.expect_err("no builder");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    env.down(&fly, Down::default()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    fake.shutdown().await;
}
