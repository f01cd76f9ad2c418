//! Upgrading the ingress's own image: the gap it causes, measured.
//!
//! The ingress listens on a fixed host port, as in production (80/443), so its proxy container is
//! replaced with `Recreate`: the old one stops, then the new one starts and loads its
//! configuration. A prober sends `GET /version` every 5 ms on a new connection; the bench reports
//! the longest time without an answer and the failed probes, as medians of `RUNS` (default 3)
//! upgrades alternating between two Caddy images (the second is the first plus a label, so a new
//! image ID). Routes are untouched; the backends keep running.
//! Run: `cargo bench --bench ingress_upgrade`.

mod common;
#[path = "../tests/support/workload.rs"]
mod workload;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harbormaster::{DockerBackend, Down, Environment, HealthCheck, Ingress, Port, Route, Service};

const NEXT: &str = "harbormaster-test/caddy:next";

fn environment(name: &str, host_port: u16, caddy: &str) -> Environment {
    let api = Service::builder("api")
        .image(workload::IMAGE)
        .port(Port::tcp(8080))
        .replicas(2)
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(30))
        .build()
        .expect("valid service");
    let ingress = Ingress::builder()
        .image(caddy)
        .http(Port::tcp(80).publish(host_port))
        .route(Route::to("api", 8080))
        .build()
        .expect("valid ingress");
    Environment::builder("hmbench", name).ingress(ingress).service(api).build().expect("valid environment")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// What the prober saw during one upgrade.
struct Gap {
    longest: Duration,
    failed: u32,
    ok: u32,
}

async fn probe(url: String, stop: Arc<AtomicBool>) -> Gap {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(2)).pool_max_idle_per_host(0).build().expect("client");
    let (mut last_ok, mut longest, mut failed, mut ok) = (Instant::now(), Duration::ZERO, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                longest = longest.max(last_ok.elapsed());
                last_ok = Instant::now();
                ok += 1;
            }
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Gap { longest, failed, ok }
}

#[tokio::main]
async fn main() {
    let runs = common::runs(3);
    workload::ensure_images();
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", NEXT, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker build");
    use std::io::Write;
    let dockerfile = format!("FROM {}\nLABEL io.harbormaster.bench=next\n", workload::CADDY_IMAGE);
    build.stdin.take().expect("stdin").write_all(dockerfile.as_bytes()).expect("write Dockerfile");
    assert!(build.wait().expect("docker build").success(), "building {NEXT}");

    let docker = DockerBackend::connect().await.expect("a reachable Docker engine");
    let name = common::unique("ingup");
    let port = free_port();
    environment(&name, port, workload::CADDY_IMAGE).apply(&docker).await.expect("first apply");
    let url = format!("http://127.0.0.1:{port}/version");

    let (mut gaps, mut failures, mut took) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let image = if i % 2 == 0 { NEXT } else { workload::CADDY_IMAGE };
        let stop = Arc::new(AtomicBool::new(false));
        let prober = tokio::spawn(probe(url.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        environment(&name, port, image).apply(&docker).await.expect("ingress upgrade");
        let elapsed = t.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let gap = prober.await.expect("prober");
        println!(
            "run {i}: apply {elapsed:.2?}; longest time without an answer {} ms; {} failed, {} answered",
            gap.longest.as_millis(),
            gap.failed,
            gap.ok
        );
        gaps.push(gap.longest);
        failures.push(gap.failed);
        took.push(elapsed);
    }
    let _ = environment(&name, port, workload::CADDY_IMAGE).down(&docker, Down::default().with_volumes()).await;
    let _ = Command::new("docker").args(["rmi", NEXT]).stdout(Stdio::null()).status();
    println!(
        "ingress image upgrade (Recreate on a fixed host port), median of {runs}: apply {:.2?}, gap {} ms, {} failed probes",
        common::median(took),
        common::median(gaps).as_millis(),
        common::median(failures)
    );
}
