//! End-to-end tests of apply, plan, replace, scale, orphans, jobs and down on the real Docker engine.
//! Each test has its own environment name and tears it down even when it fails.

use crate::support;

use std::time::Duration;

use harbormaster::{Action, Condition, Down, Error, EventKind, Port, Volume};
use support::{apply_collect, get, http_check, position, Harness};

#[tokio::test]
async fn dependency_order_with_all_three_conditions() {
    let h = Harness::new("deps").await;
    let db = h.svc("db").env("READY_DELAY_MS", "400").health(http_check()).build().unwrap();
    // The workload exits 3 at start when REQUIRE is not reachable, so ordering is checked for real.
    let migrate = h.job("migrate", 0).env("REQUIRE", "db:8080").depends_on("db", Condition::Healthy).build().unwrap();
    let api = h
        .svc("api")
        .env("REQUIRE", "db:8080")
        .env("READY_DELAY_MS", "1000")
        .health(http_check())
        .port(Port::tcp(8080).publish_ephemeral())
        .depends_on("migrate", Condition::CompletedSuccessfully)
        .build()
        .unwrap();
    let web = h.svc("web").env("READY_DELAY_MS", "300").depends_on("api", Condition::Started).build().unwrap();
    let env = h.env().service(web).service(api).service(migrate).service(db).build().unwrap();

    let (result, events) = apply_collect(&env, &h.docker).await;
    let deployed = result.unwrap();

    let db_healthy =
        position(&events, |k| matches!(k, EventKind::InstanceHealthy { service, .. } if service == "db")).unwrap();
    // Containers are created up front; starting is what waits for dependencies.
    let migrate_started =
        position(&events, |k| matches!(k, EventKind::InstanceStarted { service, .. } if service == "migrate")).unwrap();
    let migrate_exit =
        position(&events, |k| matches!(k, EventKind::JobExited { service, exit_code: 0, .. } if service == "migrate"))
            .unwrap();
    let api_started =
        position(&events, |k| matches!(k, EventKind::InstanceStarted { service, .. } if service == "api")).unwrap();
    let api_healthy =
        position(&events, |k| matches!(k, EventKind::InstanceHealthy { service, .. } if service == "api")).unwrap();
    let web_started =
        position(&events, |k| matches!(k, EventKind::InstanceStarted { service, .. } if service == "web")).unwrap();
    assert!(db_healthy < migrate_started, "migrate must wait for db healthy");
    assert!(migrate_exit < api_started, "api must wait for migrate to complete");
    assert!(api_started < web_started, "web must wait for api started");
    // `Started` does not wait for health: web starts before api is healthy (api needs >= one probe).
    assert!(web_started < api_healthy, "web must not wait for api to be healthy");

    let url = deployed.endpoint("api", 8080).unwrap().http_url();
    assert_eq!(get(&format!("{url}/call/db/8080/version")).await, (200, "v0".to_string()));
}

#[tokio::test]
async fn independent_services_start_concurrently() {
    let h = Harness::new("conc").await;
    let services: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| h.svc(n).env("READY_DELAY_MS", "1500").health(http_check()).build().unwrap())
        .collect();
    let env = h.env().services(services).build().unwrap();
    let (result, events) = apply_collect(&env, &h.docker).await;
    result.unwrap();
    let last_started = events.iter().rposition(|e| matches!(e.kind, EventKind::InstanceStarted { .. })).unwrap();
    let first_healthy = position(&events, |k| matches!(k, EventKind::InstanceHealthy { .. })).unwrap();
    assert!(last_started < first_healthy, "all three must be started before the first is ready (1.5 s each)");
}

#[tokio::test]
async fn reapply_unchanged_touches_nothing() {
    let h = Harness::new("idem").await;
    let env = h.env().service(h.svc("api").replicas(2).health(http_check()).build().unwrap()).build().unwrap();
    let first = env.apply(&h.docker).await.unwrap();
    let ids: Vec<String> = first.instances("api").iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids.len(), 2);

    let plan = env.plan(&h.docker).await.unwrap();
    assert!(plan.is_noop(), "{plan}");
    let (second, events) = apply_collect(&env, &h.docker).await;
    let again: Vec<String> = second.unwrap().instances("api").iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, again);
    assert!(
        !events.iter().any(|e| matches!(
            e.kind,
            EventKind::InstanceCreated { .. }
                | EventKind::InstanceRemoved { .. }
                | EventKind::InstanceStopped { .. }
                | EventKind::NetworkCreated { .. }
        )),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::ServiceUnchanged { service } if service == "api")));
}

#[tokio::test]
async fn changed_service_is_replaced_health_gated() {
    let h = Harness::new("replace").await;
    let make = |v: &str| {
        let svc = h
            .svc("api")
            .env("VERSION", v)
            .port(Port::tcp(8080).publish_ephemeral())
            .health(http_check())
            .build()
            .unwrap();
        h.env().service(svc).build().unwrap()
    };
    let v1 = make("v1").apply(&h.docker).await.unwrap();
    let old = v1.instances("api")[0].name.clone();
    assert_eq!(get(&v1.endpoint("api", 8080).unwrap().http_url()).await.1, "v1");

    let env2 = make("v2");
    let plan = env2.plan(&h.docker).await.unwrap();
    let sp = plan.service("api").unwrap();
    assert!(matches!(sp.action, Action::Replace { instances: 1, .. }), "{plan}");
    assert!(sp.reasons.iter().any(|r| r == "env VERSION changed"), "{plan}");

    let (result, events) = apply_collect(&env2, &h.docker).await;
    let v2 = result.unwrap();
    assert_eq!(get(&v2.endpoint("api", 8080).unwrap().http_url()).await.1, "v2");
    assert_eq!(v2.instances("api").len(), 1);
    assert_ne!(v2.instances("api")[0].name, old);
    // Start-first: the new one is healthy before the old one is stopped.
    let healthy = position(&events, |k| matches!(k, EventKind::InstanceHealthy { .. })).unwrap();
    let stopped =
        position(&events, |k| matches!(k, EventKind::InstanceStopped { instance, .. } if *instance == old)).unwrap();
    assert!(healthy < stopped);
}

#[tokio::test]
async fn failed_replacement_keeps_the_old_instance() {
    let h = Harness::new("badnew").await;
    let check = || harbormaster::HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(5);
    let v1 = h.env().service(
        h.svc("api").env("VERSION", "v1").port(Port::tcp(8080).publish_ephemeral()).health(check()).build().unwrap(),
    );
    let v1 = v1.build().unwrap().apply(&h.docker).await.unwrap();
    let old = v1.instances("api")[0].clone();

    let bad = h
        .svc("api")
        .env("VERSION", "v2")
        .env("HEALTH_STATUS", "503")
        .env("LOG_LINES", "v2 booting|config loaded")
        .port(Port::tcp(8080).publish_ephemeral())
        .health(check())
        .build()
        .unwrap();
    let env2 = h.env().service(bad).build().unwrap();
    let err = env2.apply(&h.docker).await.unwrap_err();
    let Error::Apply(failure) = &err else { panic!("expected an apply failure, got {err}") };
    // The outcome cannot be mistaken for success: rolled back, with the cause.
    let Some(Error::RolledBack { service, reason }) = failure.error_of("api") else {
        panic!("expected a rollback: {err}")
    };
    assert_eq!(service, "api");
    let Error::Unhealthy(hf) = reason.as_ref() else { panic!("expected unhealthy: {err}") };
    assert_eq!(hf.service, "api");
    assert!(!hf.last_probes.is_empty() && hf.last_probes.iter().all(|p| !p.passed));
    assert!(hf.last_probes.iter().any(|p| p.detail.contains("503")), "{err}");
    assert!(hf.last_logs.iter().any(|l| l.contains("config loaded")), "{err}");
    let message = err.to_string();
    assert!(message.contains("api") && message.contains("503") && message.contains("config loaded"), "{message}");
    assert!(message.contains("rolled back"), "{message}");

    // The old instance still runs and serves v1; the failed new one is gone.
    let status = env2.status(&h.docker).await.unwrap();
    let api = status.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!(api.instances.len(), 1, "{status:?}");
    assert_eq!(api.instances[0].name, old.name);
    let url = format!("http://127.0.0.1:{}/version", old.published[0].host_port);
    assert_eq!(get(&url).await.1, "v1");
}

#[tokio::test]
async fn scale_up_and_down() {
    let h = Harness::new("scale").await;
    let with = |n: u32| h.env().service(h.svc("w").replicas(n).health(http_check()).build().unwrap()).build().unwrap();
    assert_eq!(with(1).apply(&h.docker).await.unwrap().instances("w").len(), 1);
    let plan = with(3).plan(&h.docker).await.unwrap();
    assert_eq!(plan.service("w").unwrap().action, Action::Scale { from: 1, to: 3 });
    let three = with(3).apply(&h.docker).await.unwrap();
    let mut slots: Vec<u32> = three.instances("w").iter().map(|i| i.slot).collect();
    slots.sort();
    assert_eq!(slots, [0, 1, 2]);
    let one = with(1).apply(&h.docker).await.unwrap();
    assert_eq!(one.instances("w").len(), 1);
    assert_eq!(one.instances("w")[0].slot, 0);
}

#[tokio::test]
async fn services_removed_from_the_spec_are_removed() {
    let h = Harness::new("orphan").await;
    let a = || h.svc("a").build().unwrap();
    h.env().service(a()).service(h.svc("b").build().unwrap()).build().unwrap().apply(&h.docker).await.unwrap();
    let only_a = h.env().service(a()).build().unwrap();
    let plan = only_a.plan(&h.docker).await.unwrap();
    assert_eq!(plan.service("b").unwrap().action, Action::Remove { instances: 1 });
    assert_eq!(plan.service("a").unwrap().action, Action::Unchanged);
    let (result, events) = apply_collect(&only_a, &h.docker).await;
    result.unwrap();
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::ServiceRemoved { service } if service == "b")));
    let status = only_a.status(&h.docker).await.unwrap();
    assert_eq!(status.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["a"]);
}

#[tokio::test]
async fn failed_job_stops_its_dependents() {
    let h = Harness::new("jobfail").await;
    let job = h.job("migrate", 3).env("LOG_LINES", "applying 0042_add_orders").build().unwrap();
    let api = h.svc("api").depends_on("migrate", Condition::CompletedSuccessfully).build().unwrap();
    let other = h.svc("other").build().unwrap();
    let env = h.env().service(job).service(api).service(other).build().unwrap();
    let err = env.apply(&h.docker).await.unwrap_err();
    let Error::Apply(failure) = &err else { panic!("{err}") };
    assert_eq!(failure.not_started, ["api"]);
    match failure.error_of("migrate") {
        Some(Error::JobFailed { exit_code: 3, logs, .. }) => {
            assert!(logs.iter().any(|l| l.contains("0042_add_orders")))
        }
        other => panic!("{other:?}"),
    }
    let status = env.status(&h.docker).await.unwrap();
    let find = |n: &str| status.services.iter().find(|s| s.name == n).unwrap().clone();
    assert_eq!(find("api").instances.len(), 0, "api must not have been created");
    assert_eq!(find("other").running, 1, "independent services still come up");
}

#[tokio::test]
async fn successful_job_is_not_rerun_until_it_changes() {
    let h = Harness::new("jobok").await;
    let env = |tag: &str| h.env().service(h.job("seed", 0).env("TAG", tag).build().unwrap()).build().unwrap();
    env("a").apply(&h.docker).await.unwrap();
    assert!(env("a").plan(&h.docker).await.unwrap().is_noop());
    let plan = env("b").plan(&h.docker).await.unwrap();
    assert!(matches!(plan.service("seed").unwrap().action, Action::Replace { .. }), "{plan}");
    let (r, events) = apply_collect(&env("b"), &h.docker).await;
    r.unwrap();
    assert!(events.iter().any(|e| matches!(e.kind, EventKind::JobExited { exit_code: 0, .. })));
}

#[tokio::test]
async fn down_removes_everything_but_kept_volumes() {
    let h = Harness::new("down").await;
    let svc = h.svc("db").volume(Volume::named("data").at("/data")).build().unwrap();
    let env = h.env().service(svc).build().unwrap();
    env.apply(&h.docker).await.unwrap();
    let report = env.down(&h.docker, Down::default()).await.unwrap();
    assert_eq!(report.removed_instances.len(), 1);
    assert!(report.removed_network);
    assert_eq!(report.kept_volumes, [format!("{}-{}-data", support::PROJECT, h.name)]);

    let client = h.docker.client();
    let label = format!("io.harbormaster.environment={}", h.name);
    let filters = std::collections::HashMap::from([("label", vec![label.as_str()])]);
    let containers = client
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build(),
        ))
        .await
        .unwrap();
    assert!(containers.is_empty());
    let networks = client
        .list_networks(Some(bollard::query_parameters::ListNetworksOptionsBuilder::new().filters(&filters).build()))
        .await
        .unwrap();
    assert!(networks.is_empty());

    let report = env.down(&h.docker, Down::default().with_volumes()).await.unwrap();
    assert_eq!(report.removed_volumes.len(), 1);
    assert!(report.kept_volumes.is_empty());
}

#[tokio::test]
async fn missing_image_is_a_clear_error() {
    let h = Harness::new("noimg").await;
    let missing = |policy| {
        h.env()
            .service(
                harbormaster::Service::builder("x")
                    .image("harbormaster-test/does-not-exist:1")
                    .pull(policy)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    // Never pulled: not on the engine is the error.
    let err = missing(harbormaster::PullPolicy::Never).apply(&h.docker).await.unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err}");
    assert!(err.to_string().contains("harbormaster-test/does-not-exist:1"));
    // Pulled when missing (the default): its registry (Docker Hub) says why not, named, fast.
    let started = std::time::Instant::now();
    let err = missing(harbormaster::PullPolicy::IfMissing).plan(&h.docker).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
    match &err {
        Error::Registry { reference, registry, services, .. } => {
            assert_eq!(reference, "harbormaster-test/does-not-exist:1");
            assert_eq!(registry, "docker.io");
            assert_eq!(services, &["x".to_string()], "the error names the service that needs the image");
            assert!(err.to_string().contains("(needed by x)"), "{err}");
        }
        other => panic!("expected a registry error, got {other}"),
    }
}

#[tokio::test]
async fn rollout_deadline_is_enforced() {
    let h = Harness::new("rodl").await;
    let check = harbormaster::HealthCheck::http(8080, "/health").interval(Duration::from_millis(500)).retries(4);
    let svc = h
        .svc("api")
        .env("READY_DELAY_MS", "60000")
        .health(check)
        .rollout(harbormaster::Rollout::start_first().deadline(Duration::from_secs(2)))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = h.env().service(svc).build().unwrap().apply(&h.docker).await.unwrap_err();
    let Error::Apply(f) = &err else { panic!("{err}") };
    assert!(matches!(f.error_of("api"), Some(Error::Deadline { .. })), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "the 2 s rollout deadline was not enforced");
    let status = h.env().service(h.svc("api").build().unwrap()).build().unwrap().status(&h.docker).await.unwrap();
    assert_eq!(status.services[0].instances.len(), 0, "the timed-out rollout's instance was removed: {status:?}");
}

/// What only the engine knows (its host's cores, whether a bind mount source exists there) is
/// reported by the plan, and the apply refuses it before anything changes.
#[tokio::test]
async fn the_plan_reports_what_only_the_target_knows() {
    let h = Harness::new("target").await;
    let missing = format!("/nonexistent-harbormaster/{}", h.name);
    let web = h.svc("web").volume(Volume::bind(&missing).at("/conf").read_only()).build().unwrap();
    let env = h.env().service(web).build().unwrap();
    let err = env.plan(&h.docker).await.unwrap_err();
    let Error::Invalid(harbormaster::ValidationError::InvalidValue { field, reason, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(*field, "volumes");
    assert!(reason.contains(&missing) && reason.contains("does not exist"), "{reason}");
    let err = env.apply(&h.docker).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(
        env.status(&h.docker).await.unwrap().services.iter().all(|s| s.instances.is_empty()),
        "nothing was created"
    );

    // An existing source is fine.
    let dir = std::env::temp_dir();
    let ok = h.svc("web").volume(Volume::bind(&dir).at("/conf").read_only()).build().unwrap();
    assert!(h.env().service(ok).build().unwrap().plan(&h.docker).await.is_ok());

    // More cores than any test machine has (and within what a description may ask for).
    let greedy = h.svc("web").resources(harbormaster::Resources::new().cpus(4000.0)).build().unwrap();
    let err = h.env().service(greedy).build().unwrap().plan(&h.docker).await.unwrap_err();
    assert!(err.to_string().contains("core"), "{err}");

    // Less memory than the Docker engine takes (a description may ask for it; another target
    // may take it): the plan says the engine refuses it, and apply refuses before anything runs.
    let small = h.svc("web").resources(harbormaster::Resources::new().memory_mb(4)).build().unwrap();
    let env = h.env().service(small).build().unwrap();
    let plan = env.plan(&h.docker).await.unwrap();
    assert!(plan.limits.iter().any(|l| l.refused && l.service == "web" && l.what.contains("6 MiB")), "{plan}");
    let err = env.apply(&h.docker).await.unwrap_err();
    assert_eq!(err.kind(), harbormaster::ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("6 MiB"), "{err}");
    let scope = harbormaster::backend::Scope::new(support::PROJECT, &h.name);
    assert!(harbormaster::Backend::list_instances(&h.docker, &scope).await.unwrap().is_empty(), "nothing ran");
}

/// A rollout's own deadline counts from when its rollout starts, once its dependencies are met:
/// waiting for a slow dependency does not use it up.
#[tokio::test]
async fn a_rollout_deadline_does_not_count_the_wait_for_dependencies() {
    let h = Harness::new("rodeps").await;
    let slow = h.svc("db").env("READY_DELAY_MS", "3000").health(http_check()).build().unwrap();
    let api = h
        .svc("api")
        .health(harbormaster::HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(5))
        .depends_on("db", Condition::Healthy)
        .rollout(harbormaster::Rollout::start_first().deadline(Duration::from_secs(2)))
        .build()
        .unwrap();
    h.env().service(slow).service(api).build().unwrap().apply(&h.docker).await.unwrap();
}

/// A host port that something else holds is found by the plan, before anything changes, as a
/// conflict naming the service, the port and what holds it: a process of this host, or another
/// environment's container. The service's own instance holding it (a recreate) is not a conflict.
#[tokio::test]
async fn a_host_port_in_use_is_a_conflict_the_plan_finds() {
    let h = Harness::new("portuse").await;
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let listener = std::net::TcpListener::bind((lo, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let web = |h: &Harness| {
        h.svc("web")
            .port(Port::tcp(8080).publish(port).on_host_ip(lo))
            .rollout(harbormaster::Rollout::recreate())
            .build()
            .unwrap()
    };
    let env = h.env().service(web(&h)).build().unwrap();
    let err = env.plan(&h.docker).await.unwrap_err();
    assert_eq!(err.kind(), harbormaster::ErrorKind::Conflict, "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("host port {port}/tcp")) && text.contains("a process on this host"), "{text}");
    assert!(text.contains("`web`"), "{text}");
    assert!(matches!(env.apply(&h.docker).await.unwrap_err(), Error::PortInUse { .. }));
    assert!(env.status(&h.docker).await.unwrap().services.iter().all(|s| s.instances.is_empty()), "nothing created");
    drop(listener);

    // Now it is free: deployed, and planned again (a change) without a conflict with itself.
    env.apply(&h.docker).await.unwrap();
    let changed = h
        .env()
        .service(
            h.svc("web")
                .env("V", "2")
                .port(Port::tcp(8080).publish(port).on_host_ip(lo))
                .rollout(harbormaster::Rollout::recreate())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(changed.plan(&h.docker).await.unwrap().service("web").unwrap().changes_anything());

    // Another environment wanting it: the container that holds it is named.
    let other = Harness::new("portuse2").await;
    let env2 = other.env().service(web(&other)).build().unwrap();
    let err = env2.plan(&other.docker).await.unwrap_err();
    assert_eq!(err.kind(), harbormaster::ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains(&format!("container {}", env.qualified_name())), "{err}");
    env.down(&h.docker, Down::default()).await.unwrap();
}
