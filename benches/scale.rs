//! Many independent services from one compose file, harbormaster against docker-compose 1.29 in
//! one run, on the same file and image: bring-up, a no-op re-apply (`up -d` again), and down, for
//! each size in `SCALE_SIZES` (default `50,200`). Each service runs the test workload with no
//! published port and no health check, as a compose file of independent services says.
//! harbormaster runs a production environment (lock, records, revisions, audit), as a deploy tool
//! would. Run: `cargo bench --bench scale` (`RUNS`, default 1 per size: a bring-up of 200
//! containers takes a while on 2 cores). `SCALE_COMPOSE_UP_TO=N` runs docker-compose only for
//! sizes up to N (it stalls for 10 minutes per size above that here), to see how harbormaster
//! alone grows.

mod common;

#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::process::Command;
use std::time::{Duration, Instant};

use harbormaster::compose::Compose;
use harbormaster::{DockerBackend, Down};

fn compose_file(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut text = String::from("services:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  s{i:03}:\n    image: {}\n    environment:\n      VERSION: \"{i}\"\n    stop_grace_period: 1s\n",
            workload::IMAGE
        ));
    }
    let path = dir.join(format!("scale-{n}.yml"));
    std::fs::write(&path, text).expect("write the compose file");
    path
}

/// One docker-compose command, timed; `None` if it did not finish within 10 minutes (1.29 has
/// been seen to stall for good part-way through `up` of 200 services with its default parallel
/// limit of 64; `COMPOSE_PARALLEL_LIMIT` is passed on, default 16 here).
fn compose(project: &str, file: &std::path::Path, args: &[&str]) -> Option<Duration> {
    let limit = std::env::var("COMPOSE_PARALLEL_LIMIT").unwrap_or_else(|_| "16".into());
    let t = Instant::now();
    let mut child = Command::new("docker-compose")
        .env("COMPOSE_PARALLEL_LIMIT", limit)
        .args(["-p", project, "-f"])
        .arg(file)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-compose runs");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "docker-compose {args:?} failed");
            return Some(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn harbormaster(docker: &DockerBackend, file: &std::path::Path, name: &str) -> [Duration; 3] {
    let env = Compose::new(file).project("hmbench").environment(name).load().expect("the file imports").environment;
    let t = Instant::now();
    env.apply(docker).await.expect("bring-up");
    let up = t.elapsed();
    let plan = env.plan(docker).await.expect("plan");
    assert!(plan.is_noop(), "{plan}");
    let t = Instant::now();
    env.apply(docker).await.expect("re-apply");
    let again = t.elapsed();
    let t = Instant::now();
    env.down(docker, Down::default().with_volumes()).await.expect("down");
    [up, again, t.elapsed()]
}

/// Bring-up, no-op re-apply and down; `None` for a command that stalled.
type Times = [Option<Duration>; 3];

fn s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    workload::ensure_images();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let docker = rt.block_on(DockerBackend::connect()).expect("engine");
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .unwrap_or_else(|_| "50,200".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runs = common::runs(1);
    let compose_up_to: usize =
        std::env::var("SCALE_COMPOSE_UP_TO").ok().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
    let dir = std::env::temp_dir().join("hm-bench-scale");
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("independent services from one compose file, median of {runs} (bring-up / no-op re-apply / down):");
    for n in sizes {
        let file = compose_file(&dir, n);
        let (mut hm, mut dc): (Vec<Times>, Vec<Times>) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            hm.push(rt.block_on(harbormaster(&docker, &file, &common::unique("scale"))).map(Some));
            if n > compose_up_to {
                continue;
            }
            let project = common::unique("hmscale");
            let up = compose(&project, &file, &["up", "-d"]);
            let again = up.and_then(|_| compose(&project, &file, &["up", "-d"]));
            dc.push([up, again, compose(&project, &file, &["down", "-v"])]);
        }
        let col = |v: &[Times], i: usize| {
            let done: Vec<Duration> = v.iter().filter_map(|r| r[i]).collect();
            if done.len() < v.len() {
                "stalled".to_string()
            } else {
                s(common::median(done))
            }
        };
        for (tool, v) in [("harbormaster", &hm), ("docker-compose 1.29", &dc)] {
            if v.is_empty() {
                println!("  {n:>4} services  {tool:<20} not run (SCALE_COMPOSE_UP_TO={compose_up_to})");
                continue;
            }
            println!("  {n:>4} services  {tool:<20} {:>9} {:>9} {:>9}", col(v, 0), col(v, 1), col(v, 2));
        }
    }
}
