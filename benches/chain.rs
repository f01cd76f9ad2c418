//! Bring-up of a 6-service, 4-level health-gated chain, harbormaster against docker-compose 1.29
//! in one run, on the same images. Each service becomes ready 0.5 s after it starts.
//!
//! ```text
//! level 1: a
//! level 2: b, c      (wait for a healthy)
//! level 3: d, e      (d waits for b, e for c)
//! level 4: f         (waits for d and e)
//! ```
//!
//! Reports medians of `RUNS` (default 5) alternating runs: time until every service is healthy,
//! the chain's floor (4 × (container start + 0.5 s)), and the delay between a service becoming ready
//! (as it logs it) and harbormaster reporting it. Run: `cargo bench --bench chain`.

#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use harbormaster::{Backend, Condition, DockerBackend, Down, Environment, EventKind, HealthCheck, LogOptions, Service};

const READY_MS: u64 = 500;
const CHAIN: [(&str, &[&str]); 6] =
    [("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b"]), ("e", &["c"]), ("f", &["d", "e"])];

fn environment(name: &str) -> Environment {
    let mut b = Environment::builder("hmbench", name);
    for (svc, deps) in CHAIN {
        let mut s = Service::builder(svc)
            .image(workload::IMAGE)
            .env("READY_DELAY_MS", READY_MS.to_string())
            .stop_grace_period(Duration::from_secs(1))
            .health(HealthCheck::http(8080, "/health").interval(Duration::from_secs(1)).retries(30));
        for d in deps {
            s = s.depends_on(*d, Condition::Healthy);
        }
        b = b.service(s.build().expect("valid service"));
    }
    b.build().expect("valid environment")
}

/// One harbormaster bring-up: total time, and each service's ready-to-reported delay.
async fn harbormaster_run(docker: &DockerBackend, name: &str) -> (Duration, Vec<Duration>) {
    let env = environment(name);
    let started = Instant::now();
    let mut run = env.apply_streaming(docker);
    let mut healthy_at = Vec::new();
    let mut all_healthy = None;
    while let Some(e) = run.next().await {
        if let EventKind::InstanceHealthy { service, .. } = &e.kind {
            healthy_at.push((service.clone(), e.at));
            if healthy_at.len() == CHAIN.len() {
                all_healthy = Some(started.elapsed());
            }
        }
    }
    run.finish().await.expect("apply");
    let mut delays = Vec::new();
    for (service, at) in healthy_at {
        let lines: Vec<_> = env.logs(docker, &service, LogOptions::default()).await.expect("logs").collect().await;
        let ready_ns: u128 = lines
            .iter()
            .filter_map(|l| l.as_ref().ok()?.text.split("ready_at_unix_ns=").nth(1)?.trim().parse().ok())
            .next()
            .expect("ready line");
        let at_ns = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        delays.push(Duration::from_nanos(at_ns.saturating_sub(ready_ns) as u64));
    }
    env.down(docker, Down::default().with_volumes()).await.expect("down");
    (all_healthy.expect("all healthy"), delays)
}

fn compose_file() -> String {
    let mut y = String::from("version: \"2.4\"\nservices:\n");
    for (svc, deps) in CHAIN {
        y += &format!(
            "  {svc}:\n    image: {}\n    environment:\n      READY_DELAY_MS: \"{READY_MS}\"\n    stop_grace_period: 1s\n    healthcheck:\n      test: [\"CMD\", \"/workload\", \"probe\"]\n      interval: 1s\n      timeout: 1s\n      retries: 30\n",
            workload::IMAGE
        );
        if !deps.is_empty() {
            y += "    depends_on:\n";
            for d in deps {
                y += &format!("      {d}:\n        condition: service_healthy\n");
            }
        }
    }
    y
}

fn compose(dir: &std::path::Path, project: &str, args: &[&str]) {
    let out = Command::new("docker-compose")
        .current_dir(dir)
        .args(["-p", project])
        .args(args)
        .output()
        .expect("docker-compose must be installed (apt-get install docker-compose)");
    assert!(out.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One compose bring-up: `up -d` (which waits for each level's health), then until `f` is healthy.
fn compose_run(project: &str) -> Duration {
    let dir = std::env::temp_dir().join(project);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("docker-compose.yml"), compose_file()).expect("compose file");
    let started = Instant::now();
    compose(&dir, project, &["up", "-d"]);
    let last = format!("{project}_f_1");
    loop {
        let out =
            Command::new("docker").args(["inspect", "-f", "{{.State.Health.Status}}", &last]).output().expect("docker");
        if String::from_utf8_lossy(&out.stdout).trim() == "healthy" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "compose chain not healthy after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    compose(&dir, project, &["down", "-v", "--timeout", "1"]);
    let _ = std::fs::remove_dir_all(&dir);
    took
}

/// Time from the create call until the container's process runs (its own `starting` timestamp):
/// the per-level overhead of the chain's floor.
async fn container_start(docker: &DockerBackend) -> Duration {
    let env = Environment::builder("hmbench", "floor")
        .service(
            Service::builder("x")
                .image(workload::IMAGE)
                .stop_grace_period(Duration::from_secs(1))
                .build()
                .expect("svc"),
        )
        .build()
        .expect("env");
    // First apply creates the network, so it does not count; the second run measures.
    env.apply(docker).await.expect("apply");
    env.down(docker, Down::default()).await.expect("down");
    let before = SystemTime::now();
    env.apply(docker).await.expect("apply");
    let lines: Vec<_> = env.logs(docker, "x", LogOptions::default()).await.expect("logs").collect().await;
    let started_ns: u128 = lines
        .iter()
        .filter_map(|l| l.as_ref().ok()?.text.split("starting at_unix_ns=").nth(1)?.trim().parse().ok())
        .next()
        .expect("starting line");
    env.down(docker, Down::default()).await.expect("down");
    let _ = docker.describe();
    let before_ns = before.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    Duration::from_nanos(started_ns.saturating_sub(before_ns) as u64)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    workload::ensure_images();
    let docker = DockerBackend::connect().await.expect("a reachable Docker engine");
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() % 1_000_000;

    // Warm-up, not counted.
    harbormaster_run(&docker, &format!("warm{stamp}")).await;

    let (mut hm, mut dc, mut delays, mut starts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (t, d) = harbormaster_run(&docker, &format!("r{stamp}x{i}")).await;
        hm.push(t);
        delays.extend(d);
        dc.push(
            tokio::task::spawn_blocking(move || compose_run(&format!("hmcompose{stamp}x{i}"))).await.expect("compose"),
        );
        starts.push(container_start(&docker).await);
    }
    let start = median(starts);
    let floor = (start + Duration::from_millis(READY_MS)) * 4;
    let (hm_m, dc_m) = (median(hm.clone()), median(dc.clone()));
    println!("chain: 6 services, 4 levels, ready {READY_MS} ms after start; {runs} runs each, medians");
    println!("harbormaster   all healthy in {:>8.3?}   (runs: {hm:.2?})", hm_m);
    println!("docker-compose all healthy in {:>8.3?}   (runs: {dc:.2?})", dc_m);
    println!("ratio harbormaster / compose: {:.2}   (target <= 0.5)", hm_m.as_secs_f64() / dc_m.as_secs_f64());
    println!(
        "floor 4 x (container start {start:.0?} + {READY_MS} ms) = {floor:.3?}; harbormaster / floor = {:.2}   (target <= 1.2)",
        hm_m.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "ready -> reported delay over {} services: median {:.1?}, p90 {:.1?}, max {:.1?}   (target median < 25 ms)",
        delays.len(),
        median(delays.clone()),
        pct(delays.clone(), 0.9),
        pct(delays, 1.0)
    );
}
