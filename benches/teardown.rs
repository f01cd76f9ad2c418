//! One container torn down, side by side in one run: harbormaster's test harness
//! (`TestEnv::down`, which removes with force), `Environment::down` with the default stop grace
//! (what a production teardown does: SIGTERM, then up to the grace period), the Docker CLI
//! (`docker rm -f`), and the floor (one force-remove call through the engine API). The container
//! is the test workload told to take 30 s to exit on SIGTERM (`STOP_DELAY_MS`), as a server that
//! ignores it would: a graceful stop waits out its grace period (here 3 s), a forced one does not.
//! Start-up is not timed. Runs interleave the tools.
//!
//! Run: `cargo bench --bench teardown` (`RUNS`, default 7).

mod common;

#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use harbormaster::testing::TestEnv;
use harbormaster::{DockerBackend, Down, Environment, Service};

const PROJECT: &str = "hmbench";

fn env(name: &str) -> Environment {
    let svc = Service::builder("app")
        .image(workload::IMAGE)
        .env("STOP_DELAY_MS", "30000")
        .stop_grace_period(Duration::from_secs(3))
        .build()
        .unwrap();
    Environment::builder(PROJECT, name).service(svc).build().unwrap()
}

async fn harness() -> Duration {
    let stack = TestEnv::up(env("td")).await.unwrap();
    let t = Instant::now();
    stack.down().await.unwrap();
    t.elapsed()
}

async fn graceful(docker: &DockerBackend) -> Duration {
    let e = env(&common::unique("tg")).to_builder().ephemeral().build().unwrap();
    e.apply(docker).await.unwrap();
    let t = Instant::now();
    e.down(docker, Down::default().with_volumes()).await.unwrap();
    t.elapsed()
}

async fn started(docker: &DockerBackend) -> String {
    let c = docker.client();
    let name = common::unique("hmbench-td-");
    let body = ContainerCreateBody {
        image: Some(workload::IMAGE.into()),
        env: Some(vec!["STOP_DELAY_MS=30000".into()]),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = c.create_container(Some(options), body).await.unwrap().id;
    c.start_container(&id, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
    id
}

async fn cli(docker: &DockerBackend) -> Duration {
    let id = started(docker).await;
    let t = Instant::now();
    let out = tokio::process::Command::new("docker").args(["rm", "-f", &id]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

async fn floor(docker: &DockerBackend) -> Duration {
    let id = started(docker).await;
    let t = Instant::now();
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    docker.client().remove_container(&id, Some(options)).await.unwrap();
    t.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    workload::ensure_images();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = rt.block_on(DockerBackend::connect()).unwrap();
    let runs = common::runs(7);
    let (mut h, mut g, mut c, mut f) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        h.push(rt.block_on(harness()));
        g.push(rt.block_on(graceful(&docker)));
        c.push(rt.block_on(cli(&docker)));
        f.push(rt.block_on(floor(&docker)));
    }
    let floor = common::median(f);
    println!("one container torn down, median of {runs} (the container takes 30 s to exit on SIGTERM):");
    for (name, v) in [
        ("TestEnv::down (force)", common::median(h)),
        ("Environment::down (stop grace 3 s)", common::median(g)),
        ("docker rm -f", common::median(c)),
        ("floor: one force-remove API call", floor),
    ] {
        println!("  {name:<36} {:>8}  {:.2}x floor", ms(v), v.as_secs_f64() / floor.as_secs_f64().max(1e-9));
    }
}
