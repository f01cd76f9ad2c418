//! Probe kinds, failure reporting, status/logs/exec, records and the state store, on the real
//! Docker engine. (Secrets have a suite of their own: `tests/it/secrets.rs`.)

use crate::support;

use std::time::Duration;

use futures::StreamExt;
use harbormaster::{Build, Error, EventKind, Health, HealthCheck, InstanceRuntime, LogOptions, Port, Service};
use support::{apply_collect, get, workload, Harness};

#[tokio::test]
async fn every_probe_kind_reaches_ready() {
    let h = Harness::new("probes").await;
    let fast = |c: HealthCheck| c.interval(Duration::from_millis(300)).retries(20);
    let env = h
        .env()
        .service(
            h.svc("http")
                .env("READY_DELAY_MS", "300")
                .health(fast(HealthCheck::http(8080, "/version").body_contains("v0")))
                .build()
                .unwrap(),
        )
        .service(
            h.svc("tcp")
                .env("PORT", "5432")
                .env("READY_DELAY_MS", "300")
                .health(fast(HealthCheck::tcp(5432)))
                .build()
                .unwrap(),
        )
        .service(h.svc("exec").health(fast(HealthCheck::exec(["/workload", "probe"]))).build().unwrap())
        .service(
            Service::builder("docker")
                .image(workload::IMAGE_WITH_HEALTHCHECK)
                .health(fast(HealthCheck::docker()))
                .stop_grace_period(Duration::from_secs(2))
                .build()
                .unwrap(),
        )
        .service(
            h.svc("log")
                .env("READY_DELAY_MS", "200")
                .health(fast(HealthCheck::log_line("ready: listening")))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (result, events) = apply_collect(&env, &h.docker).await;
    result.unwrap();
    for s in ["http", "tcp", "exec", "docker", "log"] {
        let reported = events
            .iter()
            .find(|e| matches!(&e.kind, EventKind::InstanceHealthy { service, .. } if service == s))
            .unwrap_or_else(|| panic!("{s} never reported healthy"))
            .at;
        // Never reported before the workload itself says it is ready (same clock: this machine's).
        let lines: Vec<_> = env.logs(&h.docker, s, LogOptions::default()).await.unwrap().collect().await;
        let ready_ns: u128 = lines
            .iter()
            .filter_map(|l| l.as_ref().ok()?.text.split("ready_at_unix_ns=").nth(1)?.trim().parse().ok())
            .next()
            .unwrap_or_else(|| panic!("{s}: no ready line in {lines:?}"));
        let reported_ns = reported.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        assert!(reported_ns >= ready_ns, "{s} was reported ready {} µs before it was", (ready_ns - reported_ns) / 1000);
    }
    let passed =
        |s: &str| events.iter().any(|e| matches!(&e.kind, EventKind::ProbePassed { service, .. } if service == s));
    assert!(["http", "tcp", "exec", "docker", "log"].iter().all(|s| passed(s)));
}

#[tokio::test]
async fn a_container_that_exits_while_starting_fails_at_once() {
    let h = Harness::new("crash").await;
    let svc = h
        .svc("api")
        .env("READY_DELAY_MS", "60000")
        .env("CRASH_AFTER_MS", "300")
        .env("CRASH_CODE", "7")
        .restart(harbormaster::RestartPolicy::No)
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_secs(10)).retries(6))
        .build()
        .unwrap();
    let env = h.env().service(svc).build().unwrap();
    let started = std::time::Instant::now();
    let err = env.apply(&h.docker).await.unwrap_err();
    // The budget is 60 s; an exit must end the wait long before that.
    assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
    let Error::Apply(f) = &err else { panic!("{err}") };
    let Some(Error::Unhealthy(hf)) = f.error_of("api") else { panic!("{err}") };
    assert!(hf.reason.contains("exited with code 7"), "{}", hf.reason);
    assert!(hf.last_logs.iter().any(|l| l.contains("crashing with exit code 7")), "{err}");
}

/// Collects everything tracing emits, at every level, from every crate.
#[tokio::test]
async fn status_logs_and_exec() {
    let h = Harness::new("ops").await;
    let env = h
        .env()
        .service(
            h.svc("api")
                .replicas(2)
                .env("LOG_LINES", "hello from api")
                .env("LOG_REQUESTS", "1")
                .port(Port::tcp(8080).publish_ephemeral())
                .health(support::http_check())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let deployed = env.apply(&h.docker).await.unwrap();

    let status = env.status(&h.docker).await.unwrap();
    let api = &status.services[0];
    assert_eq!((api.desired, api.running), (2, 2));
    assert!(api.instances.iter().all(|i| i.health == Health::Healthy), "{status:?}");

    let lines: Vec<_> = env.logs(&h.docker, "api", LogOptions::default()).await.unwrap().collect().await;
    let lines: Vec<String> = lines.into_iter().map(|l| l.unwrap().text).collect();
    assert_eq!(lines.iter().filter(|l| l.contains("hello from api")).count(), 2, "{lines:?}");

    // Following: a line written after the stream was opened arrives.
    let mut follow = env.logs(&h.docker, "api", LogOptions::default().follow().tail(0)).await.unwrap();
    // The stream is lazy (the request goes out on first poll), so keep making marked requests
    // while reading until one shows up.
    let url = deployed.endpoint("api", 8080).unwrap().http_url();
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            assert_eq!(get(&format!("{url}/version?marker-4711")).await.0, 200);
            if let Ok(Some(l)) = tokio::time::timeout(Duration::from_millis(300), follow.next()).await {
                let l = l.unwrap();
                if l.text.contains("marker-4711") {
                    return l;
                }
            }
        }
    })
    .await
    .expect("the new log line did not arrive within 10 s");
    assert!(line.instance.starts_with(&format!("{}-{}-api-", support::PROJECT, h.name)));

    let out = env.exec(&h.docker, "api", ["/workload", "probe", "8080", "/nope"]).await.unwrap();
    assert_eq!(out.exit_code, 1);
    let ok = env.exec(&h.docker, "api", ["/workload", "probe"]).await.unwrap();
    assert_eq!(ok.exit_code, 0);

    let err = env.logs(&h.docker, "nope", LogOptions::default()).await.err().unwrap();
    assert!(matches!(err, Error::UnknownService { .. }));
}

#[tokio::test]
async fn a_service_can_be_built_from_a_context() {
    let h = Harness::new("build").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/workload/context");
    let tag = format!("harbormaster-test/built-{}:latest", h.name);
    let svc = Service::builder("api")
        .build_from(Build::context(&dir).tag(&tag))
        .port(Port::tcp(8080).publish_ephemeral())
        .health(support::http_check())
        .build()
        .unwrap();
    let env = h.env().service(svc).build().unwrap();
    let (r, events) = apply_collect(&env, &h.docker).await;
    let deployed = r.unwrap();
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::ImageBuilt { tag: t, .. } if *t == tag)));
    assert_eq!(get(&deployed.endpoint("api", 8080).unwrap().http_url()).await.0, 200);
    env.down(&h.docker, harbormaster::Down::default()).await.unwrap();
    let _ = h.docker.client().remove_image(&tag, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
}

/// Records live on the engine as volumes: a name is taken once (the deploy lock relies on it),
/// they list oldest first, they are not containers, and removing one twice is not an error. The
/// state store keeps files (any bytes) in volumes, with no container; a store written by
/// harbormaster 0.1 (files inside one volume) is read, and moved by the next write.
#[tokio::test]
async fn records_and_the_state_store_live_on_the_engine() {
    use harbormaster::backend::{NewRecord, Scope};
    use harbormaster::RecordStore;
    let h = Harness::new("records").await;
    let scope = Scope::new(support::PROJECT, &h.name);
    let lock = |holder: &str| NewRecord {
        name: format!("{}-{}.lock.1", scope.project, scope.environment),
        kind: "lock".into(),
        data: [("holder".to_string(), holder.to_string())].into(),
    };
    // Sixteen processes' worth of concurrent creates: exactly one wins.
    let creates = futures::future::join_all((0..16).map(|i| {
        let docker = h.docker.clone();
        let record = lock(&format!("p{i}"));
        let scope = scope.clone();
        async move { docker.create_record(&scope, &record).await.unwrap() }
    }))
    .await;
    let winners: Vec<_> = creates.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one create of a name wins");
    let first = winners.into_iter().next().unwrap();
    assert!(h.docker.create_record(&scope, &lock("b")).await.unwrap().is_none(), "the name is taken");
    let locks = h.docker.list_records(&scope, "lock").await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].kind, "lock");
    assert_eq!(locks[0].data, first.data);
    let age = h.docker.clock().await.unwrap().duration_since(locks[0].created).unwrap_or_default();
    assert!(age < Duration::from_secs(60), "created by the engine's clock: {age:?}");
    // Records are not instances, and not containers.
    let env = harbormaster::Environment::named(support::PROJECT, &h.name).unwrap();
    assert!(env.status(&h.docker).await.unwrap().services.is_empty());
    let containers = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=io.harbormaster.environment={}", h.name)])
        .output()
        .unwrap();
    assert!(containers.stdout.is_empty(), "records are not containers");
    h.docker.remove_record(&first.id).await.unwrap();
    h.docker.remove_record(&first.id).await.unwrap();
    assert!(h.docker.list_records(&scope, "lock").await.unwrap().is_empty());

    // The state store: none at first; written files read back, with no container.
    assert!(h.docker.read_state(&scope).await.unwrap().is_none());
    h.docker.write_state(&scope, "a.json", b"one").await.unwrap();
    h.docker.write_state(&scope, "b.json", b"\0\xff two").await.unwrap();
    h.docker.write_state(&scope, "a.json", b"three").await.unwrap();
    let containers = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=io.harbormaster.environment={}", h.name)])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert!(containers().is_empty(), "the state store needs no container");
    let read = |files: Vec<harbormaster::backend::StateFile>| {
        let mut got: Vec<(String, Vec<u8>)> = files.into_iter().map(|f| (f.name, f.contents)).collect();
        got.sort();
        got
    };
    let expected = vec![("a.json".to_string(), b"three".to_vec()), ("b.json".to_string(), b"\0\xff two".to_vec())];
    assert_eq!(read(h.docker.read_state(&scope).await.unwrap().unwrap()), expected);
    h.docker.release_state(&scope).await;

    // A record container an earlier version of the library kept goes with the state.
    let legacy = std::process::Command::new("docker")
        .args(["create", "--label", "io.harbormaster.record=revision", "--label"])
        .arg(format!("io.harbormaster.project={}", scope.project))
        .args(["--label", &format!("io.harbormaster.environment={}", scope.environment)])
        .args(["--entrypoint", "/workload", support::workload::IMAGE])
        .output()
        .unwrap();
    assert!(legacy.status.success());
    assert_eq!(containers().len(), 1);
    h.docker.remove_state(&scope).await.unwrap();
    assert!(containers().is_empty(), "remove_state removes every record container of the environment");
    assert!(h.docker.read_state(&scope).await.unwrap().is_none());

    // A store of harbormaster 0.1: files inside the volume `<project>-<environment>.state`.
    let volume = format!("{}.state", scope.qualified());
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let project = format!("io.harbormaster.project={}", scope.project);
    let environment = format!("io.harbormaster.environment={}", scope.environment);
    docker(&["volume", "create", "--label", &project, "--label", &environment, &volume]);
    let mount = format!("{volume}:/state");
    let holder = docker(&["create", "-v", &mount, "--entrypoint", "/workload", support::workload::IMAGE]);
    let file = std::env::temp_dir().join(format!("hm-legacy-{}", h.name));
    std::fs::write(&file, b"old document").unwrap();
    docker(&["cp", &file.to_string_lossy(), &format!("{holder}:/state/state.1.json")]);
    docker(&["rm", "-f", &holder]);
    std::fs::remove_file(&file).ok();
    assert_eq!(
        read(h.docker.read_state(&scope).await.unwrap().unwrap()),
        vec![("state.1.json".to_string(), b"old document".to_vec())],
        "the 0.1 store is read"
    );
    h.docker.write_state(&scope, "state.0.json", b"new document").await.unwrap();
    h.docker.release_state(&scope).await;
    assert_eq!(
        read(h.docker.read_state(&scope).await.unwrap().unwrap()),
        vec![("state.0.json".to_string(), b"new document".to_vec())],
        "after a write, the store is the file volumes"
    );
    let old = std::process::Command::new("docker").args(["volume", "inspect", &volume]).output().unwrap();
    assert!(!old.status.success(), "the 0.1 volume is removed once the store has moved");
    assert!(containers().is_empty(), "no accessor is left");
    h.docker.remove_state(&scope).await.unwrap();
    assert!(h.docker.read_state(&scope).await.unwrap().is_none());
}

/// Starting is idempotent: a rollback restores stopped and still-running old instances alike.
#[tokio::test]
async fn starting_a_running_instance_is_not_an_error() {
    use harbormaster::Backend;
    let h = Harness::new("restart").await;
    let env = h.env().service(h.svc("w").health(support::http_check()).build().unwrap()).build().unwrap();
    let deployed = env.apply(&h.docker).await.unwrap();
    let id = deployed.instances("w")[0].id.clone();
    h.docker.start_instance(&id).await.unwrap();
    h.docker.stop_instance(&id, Duration::from_secs(2)).await.unwrap();
    h.docker.start_instance(&id).await.unwrap();
    assert!(h.docker.inspect_instance(&id).await.unwrap().is_running());
}
