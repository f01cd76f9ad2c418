//! The kill suite (reliability): the deploying process is SIGKILLed at every event of an apply and
//! at random moments, and a fresh process must converge: the right containers, no duplicates, the
//! migration job run exactly once per version, the volume's data intact, the lock free.
//!
//! The stack: `db` (a service with a named volume), `migrate` (a job that appends one line per run
//! to a log on that volume, then exits 0) and `api` (three replicas, a rolling update one at a
//! time, waiting for the migration). Every kill point deploys a new version.
//!
//! `HM_KILL_POINTS` caps the event sweep (default: every event of an apply); `HM_KILL_RANDOM` sets
//! the number of random points (default 8).

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use harbormaster::backend::Scope;
use harbormaster::{Backend, RecordStore};
use support::kill::{run_child, KillAt};
use support::stack::{stack, LOG};
use support::{Harness, PROJECT};

/// Not a test of its own: the deploying process the kill tests start and kill.
#[tokio::test]
#[ignore = "the child deployer of the kill tests"]
async fn kill_child() {
    let (Ok(name), Ok(version)) = (std::env::var("HM_KILL_ENV"), std::env::var("HM_KILL_VERSION")) else { return };
    // The parent built the images.
    support::kill::child(&stack(&name, &version), &support::docker().await).await;
}

/// Everything a converged environment must be, after `versions` were each applied (once or more).
async fn assert_converged(h: &Harness, version: &str, versions: &[String], point: &str) {
    let env = stack(&h.name, version);
    let plan = env.plan(&h.docker).await.unwrap();
    assert!(plan.is_noop(), "{point}: the fresh apply did not converge:\n{plan}");
    let scope = Scope::new(PROJECT, &h.name);
    let instances = h.docker.list_instances(&scope).await.unwrap();
    let mut by_service: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for i in &instances {
        by_service.entry(i.service.as_str()).or_default().push(i.slot);
    }
    assert_eq!(by_service.get("api"), Some(&vec![0, 1, 2]), "{point}: api instances {instances:?}");
    assert_eq!(by_service.get("db"), Some(&vec![0]), "{point}: db instances");
    assert!(by_service.get("migrate").is_none_or(|v| v.len() == 1), "{point}: migrate containers {instances:?}");
    assert_eq!(by_service.len(), 3, "{point}: stray services {by_service:?}");
    assert!(instances.iter().filter(|i| i.service != "migrate").all(|i| i.is_running()), "{point}: {instances:?}");
    // No container of the environment beyond those (a created one left by the kill included);
    // records are not containers.
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Label \"io.harbormaster.record\"}}", "--filter"])
        .arg(format!("label=io.harbormaster.environment={}", h.name))
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.is_empty()).count();
    assert_eq!(all, instances.len(), "{point}: containers beyond the environment's instances");
    assert!(h.docker.list_records(&scope, "lock").await.unwrap().is_empty(), "{point}: the lock is free");

    // The job ran exactly once per version, and the volume kept every earlier line.
    let out = env.exec(&h.docker, "db", ["/workload", "cat", LOG]).await.unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    for v in versions {
        let runs = lines.iter().filter(|l| **l == format!("migrate {v}")).count();
        assert_eq!(runs, 1, "{point}: migrate ran {runs} times for {v}: {lines:?}");
    }
    assert_eq!(lines.len(), versions.len(), "{point}: runs of versions never applied: {lines:?}");
}

/// Kills the child at `at` while it deploys `version`, then applies `version` from this process.
async fn kill_and_converge(h: &Harness, version: &str, versions: &mut Vec<String>, at: KillAt) -> (bool, String) {
    let vars = [("HM_KILL_ENV", h.name.clone()), ("HM_KILL_VERSION", version.to_string())];
    let child =
        tokio::task::spawn_blocking(move || run_child(&support::child_test(module_path!(), "kill_child"), &vars, at))
            .await
            .unwrap();
    let last = child.events.last().cloned().unwrap_or_else(|| "before its first event".into());
    let point = format!("killed at {at:?} ({} events seen, last: {last})", child.events.len());
    versions.push(version.to_string());
    let env = stack(&h.name, version);
    if let Err(e) = env.apply(&h.docker).await {
        panic!("{point}: the fresh apply failed: {e}");
    }
    assert_converged(h, version, versions, &point).await;
    (child.killed, point)
}

/// SIGKILL right after each event of an apply (a job, a volume, a rolling update): after every one
/// of them, a fresh apply converges.
#[tokio::test]
async fn killed_at_every_event_a_fresh_apply_converges() {
    let h = Harness::new("kill-ev").await;
    let mut versions = vec!["v1".to_string()];
    stack(&h.name, "v1").apply(&h.docker).await.unwrap();
    assert_converged(&h, "v1", &versions, "the first apply").await;

    // How many events a whole apply of a new version has (it runs in the child, not killed).
    let vars = [("HM_KILL_ENV", h.name.clone()), ("HM_KILL_VERSION", "v2".to_string())];
    let full = tokio::task::spawn_blocking(move || {
        run_child(&support::child_test(module_path!(), "kill_child"), &vars, KillAt::Never)
    })
    .await
    .unwrap();
    versions.push("v2".into());
    assert!(!full.killed && full.events.len() > 10, "{full:?}");
    assert_converged(&h, "v2", &versions, "an apply run to its end").await;

    let cap: usize = std::env::var("HM_KILL_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let points = full.events.len().min(cap);
    let mut killed = 0;
    for k in 1..=points {
        let (was_killed, _) = kill_and_converge(&h, &format!("v{}", k + 2), &mut versions, KillAt::Event(k)).await;
        killed += usize::from(was_killed);
    }
    println!("kill points tried: {points}, killed mid-apply: {killed}, all converged");
    assert!(killed >= points.saturating_sub(3), "most points must kill the child before it ends ({killed}/{points})");
    assert!(points >= 30 || cap < 30, "at least 30 kill points per run ({points})");
}

/// SIGKILL at random moments of an apply.
#[tokio::test]
async fn killed_at_random_moments_a_fresh_apply_converges() {
    let h = Harness::new("kill-rnd").await;
    let mut versions = vec!["v1".to_string()];
    stack(&h.name, "v1").apply(&h.docker).await.unwrap();
    let n: u64 = std::env::var("HM_KILL_RANDOM").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    // A small deterministic generator: the points differ per run, and are printed.
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for round in 0..n {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(100 + (seed >> 33) % 2400);
        let (_, point) = kill_and_converge(&h, &format!("r{round}"), &mut versions, KillAt::After(delay)).await;
        println!("random kill point {round}: {point}: converged");
    }
}
