//! Kill and converge, side by side with docker-compose 1.29: a deploy of the kill suite's stack
//! (`db` with a named volume, a `migrate` job that appends one line per run to a log on it, `api`
//! with 3 replicas waiting for the migration) is SIGKILLed at a random moment, then run again.
//! harbormaster's deploy is a process running `Environment::apply` (this binary, as a child);
//! compose's is `docker-compose up -d` with the same stack (`depends_on` with
//! `service_healthy` / `service_completed_successfully`, the image's own health check every 1 s).
//!
//! Reports per tool: kill points, points after which the second run converged (every service up,
//! one container per replica, the new version everywhere), migration runs per version (it must be
//! 1), and the median time of the second run. `POINTS` (default 40) points per tool.
//! Run: `cargo bench --bench kill`.

mod common;

// The test support this bench shares: the workload image and the kill suite's stack (which takes
// `PROJECT` from here: the bench's own project name).
#[path = "../tests/it/support/stack.rs"]
#[allow(dead_code)]
mod stack;
#[path = "../tests/it/support/workload.rs"]
mod workload;

const PROJECT: &str = "hmbench";

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harbormaster::backend::Scope;
use harbormaster::{Backend, DockerBackend, Down};
use stack::{stack, LOG};

const COMPOSE: &str = r#"version: "2.4"
services:
  db:
    image: harbormaster-test/workload:latest
    volumes: ["data:/data"]
    healthcheck: {test: ["CMD", "/workload", "probe"], interval: 1s, timeout: 1s, retries: 50}
  migrate:
    image: harbormaster-test/workload:latest
    environment: {JOB_EXIT_CODE: "0", JOB_DURATION_MS: "300", APPEND_FILE: /data/migrations.log, APPEND_LINE: "migrate ${VERSION}"}
    volumes: ["data:/data"]
    depends_on: {db: {condition: service_healthy}}
  api:
    image: harbormaster-test/workload:latest
    environment: {VERSION: "${VERSION}"}
    scale: 3
    healthcheck: {test: ["CMD", "/workload", "probe"], interval: 1s, timeout: 1s, retries: 50}
    depends_on: {migrate: {condition: service_completed_successfully}}
volumes:
  data: {}
"#;

/// A small generator: the points differ per run.
struct Points(u64);

impl Points {
    fn next_below(&mut self, d: Duration) -> Duration {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        Duration::from_millis((self.0 >> 33) % (d.as_millis() as u64).max(1))
    }
}

#[derive(Default)]
struct Tally {
    points: usize,
    converged: usize,
    runs_per_version: Vec<usize>,
    recovery: Vec<Duration>,
}

impl Tally {
    fn row(&self, tool: &str) -> String {
        let max = self.runs_per_version.iter().max().copied().unwrap_or(0);
        let total: usize = self.runs_per_version.iter().sum();
        let more = self.runs_per_version.iter().filter(|n| **n != 1).count();
        format!(
            "| {tool} | {} | {} | {:.2} (max {max}; {more} version(s) not exactly once) | {} ms |",
            self.points,
            self.converged,
            total as f64 / self.runs_per_version.len().max(1) as f64,
            common::median(self.recovery.clone()).as_millis()
        )
    }
}

fn migration_runs(container: &str, version: &str) -> usize {
    let out = Command::new("docker").args(["exec", container, "/workload", "cat", LOG]).output().expect("docker exec");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| *l == format!("migrate {version}")).count()
}

/// Runs `cmd`, SIGKILLs it after `after` (if it still runs), and waits for it.
fn run_killed(mut cmd: Command, after: Duration) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("the deploy starts");
    let started = Instant::now();
    while started.elapsed() < after {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn harbormaster(docker: &DockerBackend, points: usize, rng: &mut Points) -> Tally {
    let name = common::unique("kill");
    let scope = Scope::new(PROJECT, &name);
    let started = Instant::now();
    stack(&name, "v0").apply(docker).await.expect("the first deploy");
    let full = started.elapsed();
    let mut t = Tally::default();
    for n in 1..=points {
        let version = format!("v{n}");
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.env("HM_BENCH_KILL_ENV", &name).env("HM_BENCH_KILL_VERSION", &version);
        run_killed(cmd, rng.next_below(full));
        let env = stack(&name, &version);
        let started = Instant::now();
        let ok = env.apply(docker).await.is_ok();
        t.recovery.push(started.elapsed());
        t.points += 1;
        let converged = ok && env.plan(docker).await.map(|p| p.is_noop()).unwrap_or(false);
        t.converged += usize::from(converged);
        let db = docker.list_instances(&scope).await.expect("list").into_iter().find(|i| i.service == "db");
        t.runs_per_version.push(db.map(|d| migration_runs(&d.name, &version)).unwrap_or(0));
    }
    let _ = stack(&name, "v0").down(docker, Down::default().with_volumes()).await;
    t
}

fn compose(points: usize, rng: &mut Points) -> Tally {
    let dir = std::env::temp_dir().join(common::unique("hm-compose-kill"));
    std::fs::create_dir_all(&dir).expect("a directory");
    std::fs::write(dir.join("docker-compose.yml"), COMPOSE).expect("the compose file");
    let project = common::unique("hmbenchcompose");
    let up = |version: &str| {
        let mut c = Command::new("docker-compose");
        c.current_dir(&dir).env("VERSION", version).args(["-p", &project, "up", "-d"]);
        c
    };
    let started = Instant::now();
    let status = up("v0").stdout(Stdio::null()).stderr(Stdio::null()).status().expect("docker-compose runs");
    assert!(status.success(), "docker-compose up failed");
    let full = started.elapsed();
    let mut t = Tally::default();
    for n in 1..=points {
        let version = format!("v{n}");
        run_killed(up(&version), rng.next_below(full));
        let started = Instant::now();
        let ok =
            up(&version).stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
        t.recovery.push(started.elapsed());
        t.points += 1;
        // Converged: db and 3 api containers running, every api on the new version.
        let out = Command::new("docker")
            .args(["ps", "--filter", &format!("label=com.docker.compose.project={project}"), "--format", "{{.Names}}"])
            .output()
            .expect("docker ps");
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        let apis: Vec<&String> = names.iter().filter(|n| n.contains("_api_")).collect();
        let on_version = apis.iter().all(|a| {
            let env = Command::new("docker").args(["inspect", "--format", "{{json .Config.Env}}", a]).output();
            env.map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("VERSION={version}"))).unwrap_or(false)
        });
        let converged = ok && apis.len() == 3 && on_version && names.iter().any(|n| n.contains("_db_"));
        t.converged += usize::from(converged);
        t.runs_per_version.push(migration_runs(&format!("{project}_db_1"), &version));
    }
    let _ = Command::new("docker-compose")
        .current_dir(&dir)
        .env("VERSION", "v0")
        .args(["-p", &project, "down", "-v"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    t
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    // As the child: the deploy that gets killed.
    if let (Ok(name), Ok(version)) = (std::env::var("HM_BENCH_KILL_ENV"), std::env::var("HM_BENCH_KILL_VERSION")) {
        rt.block_on(async {
            let docker = DockerBackend::connect().await.expect("docker");
            let _ = stack(&name, &version).apply(&docker).await;
        });
        return;
    }
    workload::ensure_images();
    let points: usize = std::env::var("POINTS").ok().and_then(|p| p.parse().ok()).unwrap_or(40);
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
    let mut rng = Points(seed);
    let docker = rt.block_on(DockerBackend::connect()).expect("docker");
    let hm = rt.block_on(harbormaster(&docker, points, &mut rng));
    let dc = compose(points, &mut rng);
    println!("\nkill at a random moment of a deploy, then deploy again ({points} points each, seed {seed}):\n");
    println!("| | kill points | converged | migration runs per version (mean) | second run, median |");
    println!("|---|---|---|---|---|");
    println!("{}", hm.row("harbormaster"));
    println!("{}", dc.row("docker-compose 1.29"));
}
