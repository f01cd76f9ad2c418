//! A no-op plan of a service built from a large context (89 MB in 2,000 files): the context is not
//! packed or sent again while it is unchanged. Beside it, in the same run, `docker build` of the
//! same context with everything cached (the CLI sends the context every time), and a plan after
//! one file changed (context sent, build cached). Target: the no-op plan under 300 ms.
//!
//! `cargo bench --bench build_context` (RUNS, default 7).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use harbormaster::{Build, DockerBackend, Down, Environment, HealthCheck, Service};

#[tokio::main]
async fn main() {
    let runs = common::runs(7);
    let docker = DockerBackend::connect().await.expect("a Docker engine");
    let dir = std::env::temp_dir().join(common::unique("hm-bench-context"));
    // 2,000 files of 44.5 KiB (89 MB), in 20 directories, of pseudo-random bytes (no compression helps).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for d in 0..20 {
        let sub = dir.join(format!("assets/{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            let bytes: Vec<u8> = (0..44_500)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            std::fs::write(sub.join(format!("{f:03}.bin")), bytes).unwrap();
        }
    }
    // The image: a tiny scratch image that carries a small file of the context (the context is big,
    // the image need not be).
    std::fs::write(dir.join("version"), "1").unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY version /version\nCMD [\"/nothing\"]\n").unwrap();
    let name = common::unique("ctx");
    let tag = format!("harbormaster-bench/{name}:latest");
    let env = Environment::builder("hmbench", &name)
        .service(
            Service::builder("app")
                .build_from(Build::context(&dir).tag(&tag))
                .health(HealthCheck::docker())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // First plan builds (and sends the context once).
    let t = Instant::now();
    env.plan(&docker).await.expect("first plan");
    let first = t.elapsed();
    let mut noop = Vec::new();
    let mut cli = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        env.plan(&docker).await.expect("plan");
        noop.push(t.elapsed());
        let t = Instant::now();
        let ok = std::process::Command::new("docker")
            .args(["build", "-q", "-t", &format!("{tag}-cli"), dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "docker build failed");
        cli.push(t.elapsed());
    }
    // One file changed: the context is sent again (the engine's cache still builds nothing new).
    let mut changed = Vec::new();
    for i in 0..runs.min(3) {
        std::fs::write(dir.join("assets/00/000.bin"), format!("changed {i}")).unwrap();
        let t = Instant::now();
        env.plan(&docker).await.expect("plan after a change");
        changed.push(t.elapsed());
    }
    let _ = env.down(&docker, Down::default()).await;
    for t in [tag.clone(), format!("{tag}-cli")] {
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &t]).output();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Duration| d.as_millis();
    println!("build context of 89 MB in 2,000 files ({runs} runs):");
    println!("  first plan (builds, sends the context)       {} ms", ms(first));
    println!("  no-op plan, unchanged context                median {} ms (target < 300)", ms(common::median(noop)));
    println!("  docker build, all cached (sends the context)  median {} ms", ms(common::median(cli)));
    println!("  plan after one file changed (sends it)       median {} ms", ms(common::median(changed)));
}
