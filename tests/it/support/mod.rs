//! Shared test support: a Docker connection that fails loudly, unique environment names, the workload
//! image, and a guard that tears the environment down even when the test fails.
#![allow(dead_code)]

pub mod fly;
pub mod hosts;
pub mod images;
pub mod kill;
pub mod load;
pub mod registry;
pub mod stack;
pub mod swarm;
pub mod workload;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use harbormaster::{
    DockerBackend, Down, Environment, EnvironmentBuilder, Event, EventKind, HealthCheck, Service, ServiceBuilder,
};

/// This test binary under `unshare --pid --fork --mount-proc --kill-child`: a process in a PID
/// namespace of its own (needs root and util-linux, as CI has). Add the test's arguments.
pub fn in_own_pid_namespace() -> std::process::Command {
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"]).arg(std::env::current_exe().unwrap());
    cmd
}

/// Project name of every test environment (CI checks nothing with it is left behind).
pub const PROJECT: &str = "hmtest";

/// Runs `tests/fixtures/<script>` once per process (the scripts are idempotent); panics loudly
/// with its output, saying what `needed_for` needs, if it fails.
pub fn fixture(script: &'static str, needed_for: &str) {
    static DONE: std::sync::Mutex<Vec<(&'static str, Result<(), String>)>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if !done.iter().any(|(s, _)| *s == script) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let r = std::process::Command::new("bash")
            .arg(root.join("tests/fixtures").join(script))
            .output()
            .map_err(|e| format!("cannot run tests/fixtures/{script}: {e}"))
            .and_then(|out| {
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "tests/fixtures/{script} failed: {}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ))
                }
            });
        done.push((script, r));
    }
    if let Some((_, Err(e))) = done.iter().find(|(s, _)| *s == script) {
        panic!("{needed_for}: {e}");
    }
}

/// One test's environment name, Docker connection and cleanup.
pub struct Harness {
    pub docker: DockerBackend,
    pub name: String,
}

/// Connects to the engine; a test that needs Docker fails here, loudly, if there is none.
pub async fn docker() -> DockerBackend {
    match DockerBackend::connect().await {
        Ok(d) => d,
        Err(e) => panic!("this test needs a reachable Docker engine: {e}"),
    }
}

pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let salt = (std::process::id() ^ nanos ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9)) & 0xff_ffff;
    format!("{tag}-{salt:06x}")
}

impl Harness {
    pub async fn new(tag: &str) -> Harness {
        workload::ensure_images();
        Harness { docker: docker().await, name: unique(tag) }
    }

    pub fn env(&self) -> EnvironmentBuilder {
        Environment::builder(PROJECT, &self.name)
    }

    /// A service running the workload.
    pub fn svc(&self, name: &str) -> ServiceBuilder {
        Service::builder(name).image(workload::IMAGE).stop_grace_period(Duration::from_secs(2))
    }

    /// A job running the workload, exiting with `code`.
    pub fn job(&self, name: &str, code: i32) -> ServiceBuilder {
        Service::job(name).image(workload::IMAGE).env("JOB_EXIT_CODE", code.to_string())
    }
}

/// An ingress (the Caddy test image) on an ephemeral host port routing everything to `api:8080`.
pub fn api_ingress() -> harbormaster::Ingress {
    harbormaster::Ingress::builder()
        .image(workload::CADDY_IMAGE)
        .http(harbormaster::Port::tcp(80).publish_ephemeral())
        .route(harbormaster::Route::to("api", 8080))
        .build()
        .unwrap()
}

/// A quick HTTP health check on the workload's port.
pub fn http_check() -> HealthCheck {
    HealthCheck::http(8080, "/health").interval(Duration::from_millis(500)).retries(20)
}

impl Drop for Harness {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: Drop may run while the test's runtime is shutting down (a panic).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let Ok(docker) = DockerBackend::connect().await else { return };
                if let Ok(env) = Environment::named(PROJECT, &name) {
                    if env.down(&docker, Down::default().with_volumes()).await.is_ok() {
                        return;
                    }
                }
                // A test that failed while holding records of its own making (a fake lock whose
                // holder no lease judges gone) blocks `down`: its volumes go by label.
                let filter = format!("label=io.harbormaster.environment={name}");
                if let Ok(out) =
                    std::process::Command::new("docker").args(["volume", "ls", "-q", "--filter", &filter]).output()
                {
                    for v in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                        let _ = std::process::Command::new("docker").args(["volume", "rm", "-f", v]).output();
                    }
                }
            });
        })
        .join();
    }
}

/// Applies with events and returns both.
#[allow(dead_code)]
pub async fn apply_collect<B: harbormaster::Backend + Clone>(
    env: &Environment,
    backend: &B,
) -> (harbormaster::Result<harbormaster::Deployment>, Vec<Event>) {
    use futures::StreamExt;
    let mut run = env.apply_streaming(backend);
    let mut events = Vec::new();
    while let Some(e) = run.next().await {
        events.push(e);
    }
    (run.finish().await, events)
}

/// An error and each of its sources, joined by `: `.
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Index of the first event matching `f`.
pub fn position(events: &[Event], f: impl Fn(&EventKind) -> bool) -> Option<usize> {
    events.iter().position(|e| f(&e.kind))
}

/// GET over plain HTTP/1.1 with a 15 s bound (a loaded CI machine is slow to answer the first
/// request through a chain of proxies); returns status and body. A failure names every cause.
pub async fn get(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let resp = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {}", causes(&e)));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The full name of test `test` of the suite whose module path is `module`, as `--exact` needs it
/// to run that test in a child process of this one binary: `child_test(module_path!(),
/// "kill_child")` from `tests/it/kill.rs` is `kill::kill_child`.
pub fn child_test(module: &str, test: &str) -> String {
    let suite = module.split_once("::").map_or(module, |(_crate, path)| path);
    format!("{suite}::{test}")
}

/// The arguments that run test `test` of the suite `module` (its `module_path!()`) alone, as a
/// child process of this binary: the child tests are `#[ignore]`d, so they run only when asked.
pub fn child_args(module: &str, test: &str) -> [String; 6] {
    ["--exact", &child_test(module, test), "--ignored", "--nocapture", "--test-threads", "1"].map(str::to_string)
}

/// A one-service environment (service `web`) of `image` answering `VERSION` on a published port,
/// healthy once `/health` answers.
pub fn web_env(stem: &str, image: &str, version: &str) -> Environment {
    let svc = Service::builder("web")
        .image(image)
        .env("VERSION", version)
        .port(harbormaster::Port::tcp(8080).publish_ephemeral())
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(100))
        .stop_grace_period(Duration::from_secs(1))
        .build()
        .unwrap();
    Environment::builder(PROJECT, stem).service(svc).build().unwrap()
}
