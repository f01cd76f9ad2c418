//! A rolling update of 6 replicas under continuous HTTP load through the Caddy ingress.
//!
//! `max_surge 2, max_unavailable 0` gives 3 batches. Each instance becomes ready 0.3 s after it
//! starts and must stay healthy for `min_ready` 0.5 s; old instances drain 0.2 s. Reports, as medians
//! of `RUNS` (default 3) updates alternating v1 -> v2 -> v1: the update's total time, its floor
//! `batches × (create + start of a batch + ready + min_ready)` (the batch's two containers created
//! at once, then started at once, by the Docker CLI, while the same load runs), and the failed
//! requests of two loads running
//! side by side: 4 workers opening a connection per request, and 2 workers each holding one
//! keep-alive connection and never retrying (a closed connection counts as a failure).
//! Run: `cargo bench --bench rolling` (`TRACE=harbormaster=debug` shows where the time goes).

mod common;
#[path = "../tests/it/support/load.rs"]
#[allow(dead_code)]
mod load;
#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::process::Command;
use std::time::{Duration, Instant};

use harbormaster::{
    Amount, DockerBackend, Down, Environment, EventKind, HealthCheck, Ingress, Port, Rollout, Route, Service,
};

const REPLICAS: u32 = 6;
const READY_MS: u64 = 300;
const MIN_READY_MS: u64 = 500;
const BATCHES: u32 = 3;
const SURGE: u32 = 2;

fn environment(name: &str, version: &str) -> Environment {
    let api = Service::builder("api")
        .image(workload::IMAGE)
        .env("VERSION", version)
        .env("READY_DELAY_MS", READY_MS.to_string())
        .port(Port::tcp(8080))
        .replicas(REPLICAS)
        .stop_grace_period(Duration::from_secs(1))
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_secs(1)).retries(30))
        .rollout(
            Rollout::rolling()
                .max_surge(Amount::count(SURGE))
                .max_unavailable(Amount::count(0))
                .min_ready(Duration::from_millis(MIN_READY_MS))
                .drain(Duration::from_millis(200)),
        )
        .build()
        .expect("valid service");
    let ingress = Ingress::builder()
        .image(workload::CADDY_IMAGE)
        .http(Port::tcp(80).publish_ephemeral())
        .route(Route::to("api", 8080))
        .build()
        .expect("valid ingress");
    Environment::builder("hmbench", name).ingress(ingress).service(api).build().expect("valid environment")
}

/// Median time for the engine to create and start one batch (`max_surge` containers at once,
/// through the CLI, as concurrent `docker create` then concurrent `docker start`).
fn batch_create_start() -> Duration {
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let created: Vec<String> = (0..SURGE)
            .map(|_| std::thread::spawn(|| Command::new("docker").args(["create", workload::IMAGE]).output()))
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|h| h.join().ok()?.ok())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .collect();
        let started: Vec<_> = created
            .iter()
            .map(|id| {
                let id = id.clone();
                std::thread::spawn(move || Command::new("docker").args(["start", &id]).output())
            })
            .collect();
        started.into_iter().for_each(|h| drop(h.join()));
        times.push(t.elapsed());
        let _ = Command::new("docker").arg("rm").arg("-f").args(&created).output();
    }
    common::median(times)
}

#[tokio::main]
async fn main() {
    common::trace_if_asked();
    let runs = common::runs(3);
    workload::ensure_images();
    let docker = DockerBackend::connect().await.expect("a reachable Docker engine");
    let name = common::unique("roll");
    let deployed = environment(&name, "v0").apply(&docker).await.expect("first apply");
    let endpoint = deployed.ingress_endpoint().expect("ingress endpoint");
    let url = format!("{}/version", endpoint.http_url());

    let (mut totals, mut fresh_failed, mut kept_failed, mut requests) = (Vec::new(), 0usize, 0usize, 0u64);
    for i in 0..runs {
        let version = format!("v{}", i + 1);
        let fresh = load::Load::start_with(&url, 4, false);
        let kept = load::Load::start_raw(&endpoint.host, endpoint.port, 2);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let env = environment(&name, &version);
        let t = Instant::now();
        let mut run = env.apply_streaming(&docker);
        let mut batches = 0;
        use futures::StreamExt;
        while let Some(e) = run.next().await {
            if matches!(e.kind, EventKind::RolloutBatch { .. }) {
                batches += 1;
            }
        }
        run.finish().await.expect("rolling update");
        let took = t.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (f, k) = (fresh.stop().await, kept.stop().await);
        assert_eq!(batches, BATCHES, "batches");
        println!(
            "run {i}: {took:.2?}; connection-per-request: {} ok, {} failed; keep-alive: {} ok, {} failed",
            f.ok(),
            f.failed.len(),
            k.ok(),
            k.failed.len()
        );
        totals.push(took);
        fresh_failed += f.failed.len();
        kept_failed += k.failed.len();
        requests += f.ok() + k.ok();
    }
    // The engine's floor under the same load (the same clients through the ingress), and idle.
    let fresh = load::Load::start_with(&url, 4, false);
    let kept = load::Load::start_raw(&endpoint.host, endpoint.port, 2);
    let start = batch_create_start();
    let _ = (fresh.stop().await, kept.stop().await);
    let idle = batch_create_start();
    let _ = environment(&name, "v0").down(&docker, Down::default().with_volumes()).await;

    let floor = (start + Duration::from_millis(READY_MS + MIN_READY_MS)) * BATCHES;
    let total = common::median(totals);
    println!("rolling update of {REPLICAS} replicas in {BATCHES} batches, median of {runs}: {total:.2?}");
    println!(
        "floor {BATCHES} x (create + start of {SURGE} containers at once under the same load {start:.0?} (idle: {idle:.0?}) + ready {READY_MS} ms + min_ready {MIN_READY_MS} ms) = {floor:.2?}; total / floor = {:.2}",
        total.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "failed requests over {runs} updates ({requests} answered): connection-per-request {fresh_failed}, keep-alive {kept_failed}"
    );
}
