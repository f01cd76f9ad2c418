//! The concurrency suite (reliability): two deployers of one environment, one of them in a PID
//! namespace of its own (as a CI job in a container sharing the Docker socket is), with a lock
//! timeout of zero: exactly one proceeds, in both directions. A process ID seen from another PID
//! namespace proves nothing, so a holder there is judged by its lease: its lock is taken over only
//! once the lease lapses, and the waiter says so meanwhile.
//!
//! The second deployer is this test binary, run under `unshare --pid --fork --mount-proc` (needs
//! root, as CI has).

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use harbormaster::backend::Scope;
use harbormaster::{Environment, Error, EventKind, HealthCheck, Port, RecordStore};
use support::{Harness, PROJECT};

/// A service that takes `ready_ms` to become healthy, so an apply holds the lock that long.
fn slow(env_name: &str, version: &str, ready_ms: u64, lock_timeout: Duration) -> Environment {
    let api = harbormaster::Service::builder("api")
        .image(support::workload::IMAGE)
        .env("VERSION", version)
        .env("READY_DELAY_MS", ready_ms.to_string())
        .port(Port::tcp(8080))
        .stop_grace_period(Duration::from_secs(1))
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(300))
        .build()
        .unwrap();
    Environment::builder(PROJECT, env_name).service(api).lock_timeout(lock_timeout).build().unwrap()
}

/// Not a test of its own: the deployer that runs in its own PID namespace.
#[tokio::test]
#[ignore = "the deployer in another PID namespace, run by the concurrency tests"]
async fn namespaced_deployer() {
    let Ok(name) = std::env::var("HM_LOCK_ENV") else { return };
    let version = std::env::var("HM_LOCK_VERSION").unwrap_or_default();
    let ready: u64 = std::env::var("HM_LOCK_READY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout =
        Duration::from_millis(std::env::var("HM_LOCK_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0));
    println!("hm-lock pid {}", std::process::id());
    match slow(&name, &version, ready, timeout).apply(&support::docker().await).await {
        Ok(_) => println!("hm-lock ok"),
        Err(Error::Locked { holder, .. }) => println!("hm-lock locked {}", holder.state),
        Err(e) => println!("hm-lock error {e}"),
    }
}

/// Starts the namespaced deployer; its output lines prefixed `hm-lock ` come through the channel.
fn spawn_namespaced(vars: &[(&str, String)]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = support::in_own_pid_namespace();
    cmd.args(support::child_args(module_path!(), "namespaced_deployer")).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("unshare runs (this suite needs root and util-linux)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.find("hm-lock ") {
                let _ = tx.send(line[i + "hm-lock ".len()..].to_string());
            }
        }
    });
    (child, rx)
}

fn next_line(rx: &std::sync::mpsc::Receiver<String>, within: Duration) -> String {
    rx.recv_timeout(within).unwrap_or_else(|e| panic!("the namespaced deployer said nothing within {within:?}: {e}"))
}

async fn wait_for_lock(h: &Harness) {
    let scope = Scope::new(PROJECT, &h.name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.docker.list_records(&scope, "lock").await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the first deployer never took the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host's deployer holds the lock; the one in its own PID namespace is refused, and the
/// other way round. In each direction exactly one apply proceeds.
#[tokio::test]
async fn exactly_one_of_two_deployers_in_different_pid_namespaces_proceeds() {
    let h = Harness::new("pidns").await;
    slow(&h.name, "v0", 0, Duration::ZERO).apply(&h.docker).await.unwrap();

    // 1. This process holds the lock; the namespaced deployer (lock timeout 0) is refused.
    let holder = tokio::spawn({
        let (env, docker) = (slow(&h.name, "v1", 4000, Duration::ZERO), h.docker.clone());
        async move { env.apply(&docker).await }
    });
    wait_for_lock(&h).await;
    let vars = [("HM_LOCK_ENV", h.name.clone()), ("HM_LOCK_VERSION", "v2".to_string())];
    let (mut child, rx) = spawn_namespaced(&vars);
    assert_eq!(next_line(&rx, Duration::from_secs(30)), "pid 1", "the deployer runs as PID 1 of its namespace");
    let said = next_line(&rx, Duration::from_secs(30));
    assert!(said.starts_with("locked") && said.contains("another PID namespace"), "the namespaced deployer: {said}");
    child.wait().unwrap();
    holder.await.unwrap().unwrap();

    // 2. The namespaced deployer holds the lock; this process (lock timeout 0) is refused.
    let vars = [
        ("HM_LOCK_ENV", h.name.clone()),
        ("HM_LOCK_VERSION", "v3".to_string()),
        ("HM_LOCK_READY_MS", "4000".to_string()),
    ];
    let (mut child, rx) = spawn_namespaced(&vars);
    next_line(&rx, Duration::from_secs(30));
    wait_for_lock(&h).await;
    let err = slow(&h.name, "v4", 0, Duration::ZERO).apply(&h.docker).await.unwrap_err();
    let Error::Locked { holder, .. } = &err else { panic!("expected Locked, got {err}") };
    assert_eq!(holder.pid, 1, "the holder is PID 1 of its own namespace, which here is init: never taken for gone");
    assert!(holder.state.contains("another PID namespace"), "{}", holder.state);
    assert!(err.to_string().contains("lease"), "the error says how the lock would be taken over: {err}");
    assert_eq!(next_line(&rx, Duration::from_secs(60)), "ok", "the namespaced deployer proceeded");
    child.wait().unwrap();
    let status = slow(&h.name, "v3", 0, Duration::ZERO).status(&h.docker).await.unwrap();
    assert_eq!(status.services[0].running, 1);
    let plan = slow(&h.name, "v3", 4000, Duration::ZERO).plan(&h.docker).await.unwrap();
    assert!(plan.is_noop(), "v3, the namespaced deployer's version, is what runs:\n{plan}");
}

/// A deployer in another PID namespace is killed while it holds the lock. Its process cannot be
/// checked from here, so the next deploy waits (saying why) until the lease lapses, then takes the
/// lock over and converges.
#[tokio::test]
async fn a_lock_whose_holder_cannot_be_checked_is_taken_over_when_its_lease_lapses() {
    let h = Harness::new("lease").await;
    let vars = [
        ("HM_LOCK_ENV", h.name.clone()),
        ("HM_LOCK_VERSION", "v1".to_string()),
        ("HM_LOCK_READY_MS", "60000".to_string()),
    ];
    let (mut child, rx) = spawn_namespaced(&vars);
    next_line(&rx, Duration::from_secs(30));
    wait_for_lock(&h).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    child.kill().unwrap(); // SIGKILL to unshare, which kills its child (--kill-child)
    child.wait().unwrap();
    let killed_at = std::time::Instant::now();

    let env = slow(&h.name, "v2", 0, Duration::from_secs(120));
    let (result, events) = support::apply_collect(&env, &h.docker).await;
    result.unwrap();
    let waited = killed_at.elapsed();
    let waiting = events.iter().find_map(|e| match &e.kind {
        EventKind::WaitingForLock { holder } => Some(holder.clone()),
        _ => None,
    });
    let waiting = waiting.expect("the deploy said it waits");
    assert!(waiting.contains("cannot be told") && waiting.contains("lease"), "{waiting}");
    let recovered = events.iter().find_map(|e| match &e.kind {
        EventKind::LockRecovered { holder } => Some(holder.clone()),
        _ => None,
    });
    assert!(recovered.as_deref().is_some_and(|r| r.contains("lease lapsed")), "{recovered:?}");
    let lease = harbormaster::state::LEASE;
    assert!(
        waited >= lease.saturating_sub(Duration::from_secs(7)),
        "taken over after {waited:?}, before the lease lapsed"
    );
    assert!(waited < lease + Duration::from_secs(30), "taken over only after {waited:?}");
    assert!(env.plan(&h.docker).await.unwrap().is_noop());
}
