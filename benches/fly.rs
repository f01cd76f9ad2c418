//! Plan and apply of a 20-service environment on the Fly backend, against the Machines API test
//! server (tests/fixtures/fly-api), counting the API calls each operation makes: on a real account
//! the API's own latency (tens of milliseconds a call, rate limits) dominates, so the number of
//! calls is what this library controls. Times are reported too, for the test server on this
//! machine (machines are local containers).
//!
//! The environment: `s00` (a TCP check) and 19 services that wait for it to be healthy, each one
//! replica with an HTTP check. Per run, from nothing: plan, apply, plan again (nothing to do),
//! apply again (nothing to do), apply with one service changed, down. Every call the test server
//! answers is counted, by operation ID.
//!
//! Run: `cargo bench --bench fly` (as root: it sets the test registry up). `RUNS` (default 3).

mod common;
#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fly_api_fake::{FakeFly, Options};
use harbormaster::{Condition, Down, Environment, FlyBackend, HealthCheck, Port, Secret, Service};

const REGISTRY: &str = "127.0.0.1:5055";
const USER: &str = "hmtest";
const PASSWORD: &str = "hmtest-registry-secret";
const SERVICES: usize = 20;

fn sh(script: &str) {
    let config = std::env::temp_dir().join("hmbench-docker-config");
    let ok = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("DOCKER_CONFIG", config)
        .stderr(Stdio::inherit())
        .status()
        .expect("bash");
    assert!(ok.success(), "failed: {script}");
}

/// The workload in the registry as `hmbench/fly:<tag>`.
fn push(tag: &str) -> String {
    let reference = format!("{REGISTRY}/hmbench/fly:{tag}");
    sh(&format!(
        "echo {PASSWORD} | docker login -u {USER} --password-stdin {REGISTRY} >/dev/null && docker tag {} {reference} \
         && docker push -q {reference} >/dev/null",
        workload::IMAGE
    ));
    reference
}

fn environment(name: &str, image: &str, changed: bool) -> Environment {
    let mut b = Environment::builder("hmbench", name).deadline(Duration::from_secs(600));
    for i in 0..SERVICES {
        let name = format!("s{i:02}");
        let mut s = Service::builder(&name)
            .image(image)
            .env("VERSION", if changed && i == SERVICES - 1 { "v2" } else { "v1" })
            .port(Port::tcp(8080).publish_ephemeral());
        s = if i == 0 {
            s.health(HealthCheck::tcp(8080).interval(Duration::from_millis(500)).retries(60))
        } else {
            s.health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(500)).retries(60))
                .depends_on("s00", Condition::Healthy)
        };
        b = b.service(s.build().expect("service"));
    }
    b.build().expect("environment")
}

struct Sample {
    millis: u128,
    calls: u64,
    by_operation: BTreeMap<String, u64>,
}

async fn measure<F, T>(fake: &FakeFly, f: F) -> Sample
where
    F: std::future::Future<Output = harbormaster::Result<T>>,
{
    fake.reset_calls();
    let started = Instant::now();
    f.await.unwrap_or_else(|e| panic!("{e}"));
    let millis = started.elapsed().as_millis();
    let by_operation = fake.calls();
    Sample { millis, calls: by_operation.values().sum(), by_operation }
}

#[tokio::main]
async fn main() {
    let runs = common::runs(3);
    let fixture = format!("{}/tests/fixtures/registry.sh", env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new("bash").arg(fixture).arg("up").stdout(Stdio::null()).status().expect("registry fixture");
    assert!(ok.success(), "the test registry did not come up");
    workload::ensure_images();
    let image = push("v1");
    let keeper = push("keeper");
    let app = common::unique("hmbench-fly");
    let fake = FakeFly::start(Options {
        registry_auth: vec![(REGISTRY.into(), USER.into(), PASSWORD.into())],
        apps: vec![app.clone()],
        ..Options::default()
    })
    .await
    .expect("the Fly API test server");
    let fly = FlyBackend::builder()
        .app(&app)
        .token(Secret::new(fake.token()))
        .machines_url(fake.machines_url())
        .logs_url(fake.logs_url())
        .keeper_image(keeper)
        .connect()
        .await
        .expect("the Fly backend");

    let steps = [
        "plan (from nothing)",
        "apply (from nothing)",
        "plan (no change)",
        "apply (no change)",
        "apply (1 of 20 changed)",
        "down",
    ];
    let mut samples: Vec<Vec<Sample>> = steps.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        let name = common::unique("fly");
        let v1 = environment(&name, &image, false);
        let v2 = environment(&name, &image, true);
        samples[0].push(measure(&fake, v1.plan(&fly)).await);
        samples[1].push(measure(&fake, v1.apply(&fly)).await);
        samples[2].push(measure(&fake, v1.plan(&fly)).await);
        samples[3].push(measure(&fake, v1.apply(&fly)).await);
        samples[4].push(measure(&fake, v2.apply(&fly)).await);
        samples[5].push(measure(&fake, v2.down(&fly, Down::default())).await);
        eprintln!("run {}/{runs} done", run + 1);
    }

    println!("Fly backend, {SERVICES} services of 1 machine each, against the Machines API test server; median of {runs} runs");
    println!("{:<26} {:>10} {:>10}", "operation", "API calls", "time (ms)");
    for (step, s) in steps.iter().zip(&samples) {
        let calls = common::median(s.iter().map(|x| x.calls).collect());
        let millis = common::median(s.iter().map(|x| x.millis).collect());
        println!("{step:<26} {calls:>10} {millis:>10}");
    }
    println!("\ncalls by operation (last run):");
    for (step, s) in steps.iter().zip(&samples) {
        if let Some(last) = s.last() {
            let ops: Vec<String> = last.by_operation.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("  {step}: {}", ops.join(", "));
        }
    }
    fake.shutdown().await;
    let _ = Command::new("docker").args(["rmi", &image]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}
