//! One container from start to ready, side by side in one run: harbormaster's test harness
//! (`TestEnv::up`), a plain `Environment::apply`, testcontainers-rs 0.28, the Docker CLI
//! (`docker run -d -p`), and the floor (create + start through the engine API, then the port
//! polled every 5 ms) with, beside it, the floor of an environment that has its own network (a
//! bridge network created first, the container on it: what `apply` and `docker-compose up` do for
//! a new project; the engine's network create and the embedded DNS set up at start are in it).
//! Same image (the test workload, `FROM scratch`), same readiness: the
//! published port accepts TCP. Each tool waits its own idiomatic way (harbormaster: a TCP health
//! check every 5 ms; testcontainers: its log wait for the line the workload prints once it
//! listens), and every measurement ends when a TCP connect to the published port succeeds.
//! testcontainers-rs runs in a process of its own (`benches/testcontainers-runner`), timed inside
//! it after a warm-up start, the way a test binary would use it.
//! Teardown is not timed. Runs interleave the tools, so drift in the engine hits all alike.
//!
//! Run: `cargo bench --bench single_container` (`RUNS`, default 15).

mod common;

#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use harbormaster::testing::TestEnv;
use harbormaster::{DockerBackend, Down, Environment, HealthCheck, Port, Service};

const PROJECT: &str = "hmbench";

fn wait_port(port: u16) {
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < until, "port {port} never answered");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn env(name: &str) -> Environment {
    let svc = Service::builder("app")
        .image(workload::IMAGE)
        .port(Port::tcp(8080).publish_ephemeral())
        .health(HealthCheck::tcp(8080).interval(Duration::from_millis(5)).retries(2000))
        .stop_grace_period(Duration::from_secs(1))
        .build()
        .unwrap();
    Environment::builder(PROJECT, name).service(svc).build().unwrap()
}

async fn harness() -> Duration {
    let t = Instant::now();
    let stack = TestEnv::up(env("tc")).await.unwrap();
    wait_port(stack.endpoint("app", 8080).unwrap().port);
    let took = t.elapsed();
    stack.down().await.unwrap();
    took
}

async fn apply(docker: &DockerBackend) -> Duration {
    let e = env(&common::unique("ap"));
    let t = Instant::now();
    let deployed = e.apply(docker).await.unwrap();
    wait_port(deployed.endpoint("app", 8080).unwrap().port);
    let took = t.elapsed();
    e.down(docker, Down::default().with_volumes()).await.unwrap();
    took
}

/// testcontainers-rs 0.28, in a process of its own (`benches/testcontainers-runner`, built apart:
/// it changes bollard's features), which times one warm-up and then `runs` starts itself.
fn testcontainers(runs: usize) -> Vec<Duration> {
    let root = env!("CARGO_MANIFEST_DIR");
    let manifest = format!("{root}/benches/testcontainers-runner/Cargo.toml");
    let target = format!("{root}/target/testcontainers-runner");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(&cargo)
        .args(["build", "--release", "--quiet", "--manifest-path", &manifest, "--target-dir", &target])
        .status()
        .unwrap();
    assert!(built.success(), "building the testcontainers runner");
    let out = std::process::Command::new(format!("{target}/release/testcontainers-runner"))
        .args([workload::IMAGE, &runs.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .map(Duration::from_micros)
        .collect()
}

fn docker_cli() -> Duration {
    let t = Instant::now();
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "-p", "127.0.0.1::8080", "--label", "io.harbormaster.bench=cli", workload::IMAGE])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = std::process::Command::new("docker").args(["port", &id, "8080/tcp"]).output().unwrap();
    let port: u16 = String::from_utf8_lossy(&port.stdout).trim().rsplit(':').next().unwrap().parse().unwrap();
    wait_port(port);
    let took = t.elapsed();
    std::process::Command::new("docker").args(["rm", "-f", &id]).output().unwrap();
    took
}

/// The floor: create + start on the default bridge, then the port polled. With `network`, the
/// floor of an environment with its own network: a bridge network created first and the container
/// on it (what `Environment::apply` and `docker-compose up` do for a new project).
async fn floor(docker: &bollard::Docker, network: bool) -> Duration {
    let name = common::unique("hmbench-floor-");
    let t = Instant::now();
    if network {
        let create = bollard::models::NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([("io.harbormaster.bench".to_string(), "floor".to_string())])),
            ..Default::default()
        };
        docker.create_network(create).await.unwrap();
    }
    let body = ContainerCreateBody {
        image: Some(workload::IMAGE.into()),
        exposed_ports: Some(vec!["8080/tcp".to_string()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_string(),
                Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
            )])),
            network_mode: network.then(|| name.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = docker.create_container(Some(opts), body).await.unwrap().id;
    docker.start_container(&id, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
    let inspect =
        docker.inspect_container(&id, None::<bollard::query_parameters::InspectContainerOptions>).await.unwrap();
    let port: u16 = inspect
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|p| p.get("8080/tcp").cloned().flatten())
        .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
        .and_then(|p| p.parse().ok())
        .unwrap();
    wait_port(port);
    let took = t.elapsed();
    docker.remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build())).await.unwrap();
    if network {
        docker.remove_network(&name).await.unwrap();
    }
    took
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    common::trace_if_asked();
    workload::ensure_images();
    let runs = common::runs(15);
    let docker = DockerBackend::connect().await.unwrap();
    let raw = bollard::Docker::connect_with_local_defaults().unwrap().negotiate_version().await.unwrap();
    // Warm-up: the harness's first sweep, image caches, connections.
    let _ = (harness().await, apply(&docker).await, docker_cli(), floor(&raw, false).await, floor(&raw, true).await);
    let mut t: [Vec<Duration>; 6] = Default::default();
    // testcontainers in batches between the others' rounds, so drift hits all alike.
    let batch = 5.min(runs.max(1));
    for round in 0..runs {
        t[0].push(harness().await);
        t[1].push(apply(&docker).await);
        t[3].push(docker_cli());
        t[4].push(floor(&raw, false).await);
        t[5].push(floor(&raw, true).await);
        if round % batch == 0 {
            t[2].extend(testcontainers(batch.min(runs - t[2].len())));
        }
    }
    let names = [
        "harbormaster TestEnv::up",
        "harbormaster Environment::apply",
        "testcontainers-rs 0.28",
        "docker run -d -p (CLI)",
        "floor: create + start + poll",
        "floor on a new network: network create + create + start + poll",
    ];
    let floor_median = common::median(t[4].clone());
    let network_floor = common::median(t[5].clone());
    println!("one container, start to ready (median of {runs}, same image, ready = the published port accepts TCP)");
    println!("| tool | median | min | max | vs floor | vs floor on a new network |");
    println!("|---|---|---|---|---|---|");
    for (name, samples) in names.iter().zip(t.iter()) {
        let m = common::median(samples.clone());
        let min = samples.iter().min().copied().unwrap_or_default();
        let max = samples.iter().max().copied().unwrap_or_default();
        let vs = m.as_secs_f64() / floor_median.as_secs_f64().max(1e-9);
        let vs_network = m.as_secs_f64() / network_floor.as_secs_f64().max(1e-9);
        println!("| {name} | {} | {} | {} | {vs:.2}× | {vs_network:.2}× |", ms(m), ms(min), ms(max));
    }
}
