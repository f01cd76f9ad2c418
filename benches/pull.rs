//! Pulling a ~100 MB image (the postgres:15 fixture, 99.5 MB) from the loopback test registry:
//! `DockerBackend::pull` beside `docker pull`, alternating in one run, the image removed before
//! every pull. Target: at most 1.05x the CLI's median.
//!
//! `cargo bench --bench pull` (RUNS, default 7). Needs the fixtures: `bash tests/run.sh` once, or
//! `tests/fixtures/registry.sh up` and `tests/fixtures/images.sh`.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use harbormaster::{DockerBackend, RegistryAuth, Secret};

const REGISTRY: &str = "127.0.0.1:5055";
const IMAGE: &str = "127.0.0.1:5055/library/postgres:15";

fn sh(cmd: &str, config: &std::path::Path) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("DOCKER_CONFIG", config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::main]
async fn main() {
    let runs = common::runs(7);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for script in ["registry.sh", "images.sh"] {
        let ok = std::process::Command::new("bash").arg(root.join("tests/fixtures").join(script)).status();
        assert!(ok.is_ok_and(|s| s.success()), "tests/fixtures/{script} failed");
    }
    let config = std::env::temp_dir().join(common::unique("hm-bench-docker-config"));
    std::fs::create_dir_all(&config).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("hmtest:hmtest-registry-secret");
    std::fs::write(config.join("config.json"), format!(r#"{{"auths":{{"{REGISTRY}":{{"auth":"{auth}"}}}}}}"#)).unwrap();
    let docker = DockerBackend::builder()
        .registry_auth(REGISTRY, RegistryAuth::basic("hmtest", Secret::new("hmtest-registry-secret")))
        .docker_config_credentials(false)
        .connect()
        .await
        .unwrap();
    // The local postgres:15 shares the layers; it is saved and removed for the bench so every pull
    // transfers them, and loaded back at the end.
    let remove = |reference: &str| sh(&format!("docker rmi -f {reference} && docker image prune -f"), &config);
    let _ = sh("docker image save postgres:15 -o /tmp/hm-bench-postgres.tar", &config);
    remove("postgres:15");
    let mut ours = Vec::new();
    let mut cli = Vec::new();
    for _ in 0..runs {
        remove(IMAGE);
        let t = Instant::now();
        docker.pull(IMAGE).await.expect("harbormaster pull");
        ours.push(t.elapsed());
        remove(IMAGE);
        let t = Instant::now();
        assert!(sh(&format!("docker pull -q {IMAGE}"), &config), "docker pull failed");
        cli.push(t.elapsed());
    }
    // Put the fixture back as it was.
    let _ = sh("docker load -q -i /tmp/hm-bench-postgres.tar && rm -f /tmp/hm-bench-postgres.tar", &config);
    let _ = std::fs::remove_dir_all(&config);
    let (a, b) = (common::median(ours.clone()), common::median(cli.clone()));
    let ms = |d: Duration| d.as_millis();
    println!("pull of {IMAGE} (99.5 MB, {runs} runs each, alternating):");
    println!(
        "  harbormaster DockerBackend::pull  median {} ms  (all: {:?})",
        ms(a),
        ours.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    println!(
        "  docker pull (CLI)                 median {} ms  (all: {:?})",
        ms(b),
        cli.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    println!("  ratio {:.3} (target <= 1.05)", a.as_secs_f64() / b.as_secs_f64().max(1e-9));
}
