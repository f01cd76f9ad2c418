//! A reusable PostgreSQL test environment: the second run's `TestEnv::up` against the first
//! run's, and against testcontainers-rs 0.28 with its `reusable-containers` feature, same image
//! (`postgres:15`), same readiness (PostgreSQL accepts connections: `pg_isready` for
//! harbormaster's health check, the "ready to accept connections" log line for testcontainers).
//!
//! Each run is a process of its own, as `cargo test` runs are: this bench runs itself as a child
//! (`reuse-child`) with `HARBORMASTER_REUSE=1`, and the child times `up()` inside it (process
//! start and the engine connection's version negotiation are in neither tool's figure).
//! The first run brings PostgreSQL up (initdb); the next `RUNS` take it.
//!
//! Run: `cargo bench --bench reuse` (`RUNS`, default 9).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use harbormaster::testing::{reap_reusable, TestEnv, REUSE_VAR};
use harbormaster::{DockerBackend, Environment, HealthCheck, Port, Service};

const PROJECT: &str = "hmbench";

fn postgres(stem: &str) -> Environment {
    let db = Service::builder("db")
        .image("postgres:15")
        .env("POSTGRES_PASSWORD", "bench")
        .port(Port::tcp(5432).publish_ephemeral())
        .health(
            HealthCheck::exec(["pg_isready", "-U", "postgres", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(100))
                .retries(300),
        )
        .build()
        .expect("the service");
    Environment::builder(PROJECT, stem).service(db).build().expect("the environment")
}

/// The child: one `up()`, timed inside the process; prints microseconds and whether it reused.
async fn child(stem: &str) {
    let t = Instant::now();
    let stack = TestEnv::builder(postgres(stem)).reuse().up().await.expect("up");
    let took = t.elapsed();
    println!("{} {}", took.as_micros(), stack.reused());
}

fn run_child(stem: &str) -> (Duration, bool) {
    let out = Command::new(std::env::current_exe().expect("this bench"))
        .args(["reuse-child", stem])
        .env(REUSE_VAR, "1")
        .output()
        .expect("the child runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let mut words = line.split_whitespace();
    let us: u64 = words.next().and_then(|w| w.parse().ok()).expect("a time");
    (Duration::from_micros(us), words.next() == Some("true"))
}

/// testcontainers-rs with `with_reuse(ReuseDirective::Always)`, one start per process.
fn testcontainers_reuse(runner: &str) -> Duration {
    let out = Command::new(runner)
        .args(["reuse-postgres", "postgres:15"])
        .env("TESTCONTAINERS_REUSE_ENABLE", "true")
        .output()
        .expect("the runner");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let us: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a time");
    Duration::from_micros(us)
}

fn build_runner() -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let manifest = format!("{root}/benches/testcontainers-runner/Cargo.toml");
    let target = format!("{root}/target/testcontainers-runner");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "--manifest-path", &manifest, "--target-dir", &target])
        .status()
        .expect("cargo runs");
    assert!(built.success(), "building the testcontainers runner");
    format!("{target}/release/testcontainers-runner")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reuse-child") {
        child(args.get(2).map(String::as_str).unwrap_or("reuse")).await;
        return;
    }
    common::trace_if_asked();
    let runs = common::runs(9);
    let stem = common::unique("reuse");
    let runner = build_runner();

    let (first, reused) = run_child(&stem);
    assert!(!reused, "the first run brings it up");
    let tc_first = testcontainers_reuse(&runner);
    let mut again = Vec::new();
    let mut tc_again = Vec::new();
    for _ in 0..runs {
        let (t, reused) = run_child(&stem);
        assert!(reused, "the next runs take it");
        again.push(t);
        tc_again.push(testcontainers_reuse(&runner));
    }
    let (h, tc) = (common::median(again), common::median(tc_again));
    println!("reusable PostgreSQL test environment, {runs} runs after the first (median of `up`, in-process):");
    println!("  harbormaster  first run {:>10}   next runs {:>9}", ms(first), ms(h));
    println!(
        "  testcontainers-rs 0.28 (reusable-containers)  first run {:>10}   next runs {:>9}",
        ms(tc_first),
        ms(tc)
    );
    println!("  ratio next/next: {:.2}x", h.as_secs_f64() / tc.as_secs_f64().max(1e-9));

    // Nothing left: harbormaster's by the reaper on demand, testcontainers' by its label.
    let docker = DockerBackend::connect().await.expect("the engine");
    reap_reusable(&docker).await.expect("reaped");
    let ids = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=io.harbormaster.bench=testcontainers-reuse"])
        .output()
        .expect("docker ps");
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
    }
}
