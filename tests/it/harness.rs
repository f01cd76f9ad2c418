//! The public test harness (`harbormaster::testing`): unique environments per test, teardown on
//! drop and on panic, the reaper for killed test processes, a shared environment, and listing and
//! taking down environments by name from any process. Real engine, real containers.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harbormaster::testing::{reap, SharedEnv, TestEnv};
use harbormaster::{environments, DockerBackend, Environment, HealthCheck, Port, Service};
use support::{docker, images, workload, PROJECT};

/// A one-service environment answering `VERSION` on a published port.
fn web(stem: &str, version: &str) -> Environment {
    support::web_env(stem, workload::IMAGE, version)
}

/// Containers, networks and volumes whose names start with `prefix`, on the local engine.
async fn leftovers(docker: &DockerBackend, prefix: &str) -> Vec<String> {
    use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptions, ListVolumesOptions};
    let c = docker.client();
    let mut found = Vec::new();
    let containers = c.list_containers(Some(ListContainersOptionsBuilder::new().all(true).build())).await.unwrap();
    for k in containers {
        for n in k.names.unwrap_or_default() {
            if n.trim_start_matches('/').starts_with(prefix) {
                found.push(format!("container {n}"));
            }
        }
    }
    for n in c.list_networks(None::<ListNetworksOptions>).await.unwrap() {
        if n.name.as_deref().is_some_and(|n| n.starts_with(prefix)) {
            found.push(format!("network {:?}", n.name));
        }
    }
    for v in c.list_volumes(None::<ListVolumesOptions>).await.unwrap().volumes.unwrap_or_default() {
        if v.name.starts_with(prefix) {
            found.push(format!("volume {}", v.name));
        }
    }
    found
}

async fn get(url: &str) -> String {
    support::get(url).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_environments_in_parallel_do_not_collide_and_leave_nothing() {
    workload::ensure_images();
    let docker = docker().await;
    let ups = (0..16).map(|i| TestEnv::up(web("par", &format!("v{i}"))));
    let stacks: Vec<TestEnv> = futures::future::try_join_all(ups).await.unwrap();
    let mut names: Vec<&str> = stacks.iter().map(|s| s.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 16, "every environment has a name of its own");
    for (i, s) in stacks.iter().enumerate() {
        assert!(s.name().starts_with("par-"), "{}", s.name());
        let url = s.url("web", 8080, "http").unwrap();
        assert_eq!(get(&format!("{url}/version")).await, format!("v{i}"), "each answers for itself");
    }
    let prefixes: Vec<String> = stacks.iter().map(|s| s.environment().qualified_name()).collect();
    drop(stacks);
    for p in prefixes {
        assert_eq!(leftovers(&docker, &p).await, Vec::<String>::new(), "{p} left something");
    }
}

#[tokio::test]
async fn a_panicking_test_tears_its_environment_down() {
    workload::ensure_images();
    let docker = docker().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let stack = TestEnv::up(web("panics", "v1")).await.unwrap();
        let _ = tx.send(stack.environment().qualified_name());
        panic!("the test fails while its environment is up");
    })
    .await;
    assert!(failed.unwrap_err().is_panic());
    let name = rx.await.unwrap();
    assert_eq!(leftovers(&docker, &name).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_bring_up_says_why_and_leaves_nothing() {
    workload::ensure_images();
    let docker = docker().await;
    let svc = Service::builder("api")
        .image(workload::IMAGE)
        .env("CRASH_AFTER_MS", "0")
        .env("CRASH_CODE", "9")
        .port(Port::tcp(8080).publish_ephemeral())
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(30))
        .build()
        .unwrap();
    let err = TestEnv::up(Environment::builder(PROJECT, "fails").service(svc).build().unwrap()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("api"), "{text}");
    assert!(text.contains("crashing with exit code 9"), "the error carries the log lines: {text}");
    let left = environments(&docker).await.unwrap();
    assert!(
        !left.iter().any(|e| e.project == PROJECT
            && e.name.starts_with("fails-")
            && e.labels.contains_key("io.harbormaster.test.pid")
            && e.labels.get("io.harbormaster.test.pid") == Some(&std::process::id().to_string())),
        "{left:?}"
    );
}

#[tokio::test]
async fn environments_are_listed_with_their_labels_and_taken_down_by_name() {
    workload::ensure_images();
    let docker = docker().await;
    let name = support::unique("listed");
    let mut env = web(&name, "v1");
    env = Environment::builder(PROJECT, &name)
        .services(env.services().to_vec())
        .label("team", "previews")
        .label("pr", "1234")
        .build()
        .unwrap();
    env.apply(&docker).await.unwrap();
    // Another process knows only the labels.
    let found = environments(&docker).await.unwrap();
    let mine = found.iter().find(|e| e.project == PROJECT && e.name == name).expect("listed");
    assert_eq!(mine.labels.get("team").map(String::as_str), Some("previews"));
    assert_eq!(mine.labels.get("pr").map(String::as_str), Some("1234"));
    assert!(!mine.labels.contains_key("io.harbormaster.test"), "not a test environment: {mine:?}");
    // Not a test environment: the reaper never touches it.
    let reaped = reap(&docker).await.unwrap();
    assert!(!reaped.removed.contains(&env.qualified_name()), "{reaped:?}");
    assert!(env.status(&docker).await.unwrap().services[0].running == 1);
    let report = mine.down(&docker, harbormaster::Down::default().with_volumes()).await.unwrap();
    assert_eq!(report.removed_instances.len(), 1, "{report:?}");
    assert!(report.removed_network);
    assert!(!environments(&docker).await.unwrap().iter().any(|e| e.name == name));
    assert_eq!(leftovers(&docker, &env.qualified_name()).await, Vec::<String>::new());
    // A reserved key is refused.
    let bad = Environment::builder(PROJECT, "x").label("io.harbormaster.test", "true").build();
    assert!(bad.unwrap_err().to_string().contains("reserved"));
}

/// The child of `a_sigkilled_test_process_is_reaped_while_another_runs`: brings an environment up,
/// prints its name, and waits to be killed.
#[tokio::test]
#[ignore = "the child process of a_sigkilled_test_process_is_reaped_while_another_runs"]
async fn killed_child() {
    let mut builder = TestEnv::builder(web("killed", "v1"));
    if let Ok(secs) = std::env::var("HM_CHILD_EXPIRE") {
        builder = builder.expire_after(Duration::from_secs(secs.parse().unwrap()));
    }
    let stack = builder.up().await.unwrap();
    println!("hm-env {}", stack.environment().qualified_name());
    if std::env::var("HM_CHILD_ABORT").is_ok() {
        // A crash: no destructor, no exit handler.
        std::process::abort();
    }
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Runs `killed_child` and returns its environment's name once it is up, with the process.
fn start_child(vars: &[(&str, &str)]) -> (String, std::process::Child) {
    start_child_in(Command::new(std::env::current_exe().unwrap()), vars)
}

/// `killed_child` run by `cmd` (the test binary, or a wrapper that runs it).
fn start_child_in(mut cmd: Command, vars: &[(&str, &str)]) -> (String, std::process::Child) {
    cmd.args(support::child_args(module_path!(), "killed_child")).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let name = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.find("hm-env ").map(|i| l[i + 7..].trim().to_string()))
        .expect("the child brought its environment up");
    (name, child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_test_process_is_reaped_while_another_runs() {
    workload::ensure_images();
    let docker = docker().await;
    // This process runs a test environment: its harness sweeps every few seconds.
    let mine = TestEnv::up(web("sweeper", "v1")).await.unwrap();
    let (name, mut child) = tokio::task::spawn_blocking(|| start_child(&[])).await.unwrap();
    assert!(!leftovers(&docker, &name).await.is_empty(), "the child's environment is up");
    child.kill().unwrap(); // SIGKILL: no destructor, no exit handler
    child.wait().unwrap();
    let killed_at = Instant::now();
    while !leftovers(&docker, &name).await.is_empty() {
        assert!(killed_at.elapsed() < Duration::from_secs(30), "not reaped: {:?}", leftovers(&docker, &name).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("reaped {:?} after the kill", killed_at.elapsed());
    // The live process's own environment was not touched.
    let url = mine.url("web", 8080, "http").unwrap();
    assert_eq!(get(&format!("{url}/version")).await, "v1");
    let reaped = reap(&docker).await.unwrap();
    assert!(reaped.left.contains(&mine.environment().qualified_name()), "{reaped:?}");
}

#[tokio::test]
async fn a_crashed_test_process_is_reaped_by_an_explicit_sweep() {
    workload::ensure_images();
    let docker = docker().await;
    let (name, mut child) = tokio::task::spawn_blocking(|| start_child(&[("HM_CHILD_ABORT", "1")])).await.unwrap();
    child.wait().unwrap();
    // The harness of this process may sweep first; either way it goes, and only it.
    let reaped = reap(&docker).await.unwrap();
    assert!(!reaped.left.contains(&name), "{reaped:?}");
    assert_eq!(leftovers(&docker, &name).await, Vec::<String>::new());
}

/// A test process whose owner cannot be judged from here (its own PID namespace, as in a
/// container sharing the engine) is never reaped, unless it gave its environment an expiry:
/// then any sweep removes it once the expiry has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_in_another_pid_namespace_is_reaped_only_after_its_expiry() {
    workload::ensure_images();
    let docker = docker().await;
    // The expiry (15 s) counts from a moment after this one, in whole seconds: it cannot pass
    // before `before` + 14 s, however long the child takes to come up on a busy machine.
    let before = Instant::now();
    let (expiring, mut child) = tokio::task::spawn_blocking(move || {
        start_child_in(support::in_own_pid_namespace(), &[("HM_CHILD_ABORT", "1"), ("HM_CHILD_EXPIRE", "15")])
    })
    .await
    .unwrap();
    child.wait().unwrap();
    let (kept, mut child) = tokio::task::spawn_blocking(move || {
        start_child_in(support::in_own_pid_namespace(), &[("HM_CHILD_ABORT", "1")])
    })
    .await
    .unwrap();
    child.wait().unwrap();
    // Both owners are gone, but nothing here can tell: both are left, for now.
    let reaped = reap(&docker).await.unwrap();
    if before.elapsed() < Duration::from_secs(13) {
        assert!(reaped.left.contains(&expiring), "{reaped:?}");
        assert!(!leftovers(&docker, &expiring).await.is_empty());
    }
    assert!(reaped.left.contains(&kept), "{reaped:?}");
    // Past its expiry, the sweeps (this call's, or another test process's) remove it.
    loop {
        reap(&docker).await.unwrap();
        if leftovers(&docker, &expiring).await.is_empty() {
            break;
        }
        assert!(before.elapsed() < Duration::from_secs(60), "not reaped after its expiry");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(before.elapsed() >= Duration::from_secs(14), "reaped before its expiry: {:?}", before.elapsed());
    // The one without an expiry is still there; taken down by name.
    assert!(!leftovers(&docker, &kept).await.is_empty(), "an owner that cannot be judged was reaped");
    let found = environments(&docker).await.unwrap();
    let k = found.iter().find(|e| e.qualified_name() == kept).expect("listed");
    k.down(&docker, harbormaster::Down::default().with_volumes()).await.unwrap();
    assert_eq!(leftovers(&docker, &kept).await, Vec::<String>::new());
}

static DESCRIBED: AtomicUsize = AtomicUsize::new(0);

fn shared_postgres() -> harbormaster::Result<Environment> {
    DESCRIBED.fetch_add(1, Ordering::SeqCst);
    let db = Service::builder("db")
        .image(images::POSTGRES)
        .env("POSTGRES_PASSWORD", "test")
        .port(Port::tcp(5432).publish_ephemeral())
        .health(
            HealthCheck::exec(["pg_isready", "-U", "postgres", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(200))
                .retries(100),
        )
        .build()?;
    Ok(Environment::builder(PROJECT, "shared-pg").service(db).build()?)
}

static PG: SharedEnv = SharedEnv::new(shared_postgres).with_grace(Duration::from_millis(300));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_environment_is_up_once_for_many_tests_with_a_database_each() {
    images::ensure();
    let docker = docker().await;
    // Four "tests" at once: one bring-up, one environment.
    let handles = futures::future::try_join_all((0..4).map(|_| PG.get())).await.unwrap();
    assert_eq!(DESCRIBED.load(Ordering::SeqCst), 1, "brought up once");
    let name = handles[0].environment().qualified_name();
    assert!(handles.iter().all(|h| h.environment().qualified_name() == name));
    // A database per test.
    let a = handles[0].postgres_database("db", "postgres").await.unwrap();
    let b = handles[1].postgres_database("db", "postgres").await.unwrap();
    assert_ne!(a, b);
    let list =
        handles[2].exec("db", ["psql", "-U", "postgres", "-Atc", "SELECT datname FROM pg_database"]).await.unwrap();
    assert!(list.stdout.contains(&a) && list.stdout.contains(&b), "{}", list.stdout);
    assert!(handles[0].url("db", 5432, "postgres").unwrap().starts_with("postgres://127.0.0.1:"));
    // Dropping some keeps it; a later get within the grace period finds the same one.
    drop(handles);
    let again = PG.get().await.unwrap();
    assert_eq!(again.environment().qualified_name(), name);
    assert_eq!(DESCRIBED.load(Ordering::SeqCst), 1);
    drop(again);
    // After the last handle and the grace period, it is torn down.
    let dropped = Instant::now();
    while !leftovers(&docker, &name).await.is_empty() {
        assert!(dropped.elapsed() < Duration::from_secs(30), "still up: {:?}", leftovers(&docker, &name).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_test_environment_keeps_no_records_unless_asked() {
    workload::ensure_images();
    let docker = docker().await;
    let volumes = |prefix: String| {
        let docker = docker.clone();
        async move {
            use bollard::query_parameters::ListVolumesOptions;
            let all = docker.client().list_volumes(None::<ListVolumesOptions>).await.unwrap();
            all.volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.name)
                .filter(|n| n.starts_with(&prefix))
                .collect::<Vec<_>>()
        }
    };
    // Ephemeral (the default): no lock record, no state volume; history has nothing.
    let quick = TestEnv::up(web("quick", "v1")).await.unwrap();
    assert!(quick.environment().is_ephemeral());
    let q = quick.environment().qualified_name();
    assert_eq!(volumes(q.clone()).await, Vec::<String>::new(), "nothing kept on the target");
    assert!(quick.environment().history(quick.backend(), "web").await.unwrap().is_empty());
    // Applying it again is a no-op, and its status reads fine.
    assert!(quick.environment().plan(quick.backend()).await.unwrap().is_noop());
    assert_eq!(quick.environment().status(quick.backend()).await.unwrap().services[0].running, 1);
    // With records: the state store is there, and the revision.
    let durable = TestEnv::builder(web("durable", "v1")).records(true).up().await.unwrap();
    let d = durable.environment().qualified_name();
    assert!(volumes(d.clone()).await.iter().any(|v| v.contains(".statefile.")), "{:?}", volumes(d.clone()).await);
    assert_eq!(durable.environment().history(durable.backend(), "web").await.unwrap().len(), 1);
    drop((quick, durable));
    assert_eq!(volumes(q).await, Vec::<String>::new());
    assert_eq!(volumes(d).await, Vec::<String>::new());
}

/// A test environment is removed at once (`docker rm -f`), not after its containers' stop grace
/// period: a server that takes 30 s to stop on SIGTERM does not hold the test up. A test that
/// asks for a graceful teardown gets it.
#[tokio::test]
async fn teardown_removes_at_once_unless_asked_otherwise() {
    let slow = |stem: &str| {
        let svc = Service::builder("web")
            .image(workload::IMAGE)
            .env("STOP_DELAY_MS", "30000")
            .stop_grace_period(Duration::from_secs(30))
            .build()
            .unwrap();
        Environment::builder(PROJECT, stem).service(svc).build().unwrap()
    };
    let docker = docker().await;
    let stack = TestEnv::up(slow("rmf")).await.unwrap();
    let prefix = stack.environment().qualified_name();
    let started = Instant::now();
    let report = stack.down().await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.removed_instances.len(), 1);
    // Not the 30 s grace (nor the 10 s of a default stop): removed without waiting for an exit.
    assert!(took < Duration::from_secs(10), "teardown waited for the stop grace: {took:?}");
    assert_eq!(leftovers(&docker, &prefix).await, Vec::<String>::new());

    let graceful =
        TestEnv::builder(slow("graceful")).stop_grace_on_teardown(Duration::from_secs(2)).up().await.unwrap();
    let started = Instant::now();
    graceful.down().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "the grace asked for was given");
}
