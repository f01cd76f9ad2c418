//! Seed 001's shape (db, message, api ×2 waiting for both, gateway waiting for api) three ways,
//! side by side in one run: harbormaster's `SwarmBackend` on the test swarm, harbormaster's SSH
//! `Fleet` on the test hosts, and `docker stack deploy` of an equivalent compose file on the same
//! swarm. For each: the time until everything is healthy from nothing, then a rolling update of
//! the API (a new `VERSION`) under load: its time, and the requests that failed.
//!
//! The load is what a client of the stack sees: GETs every 10 ms through the gateway to the API
//! (`/call/api/8080/version`: the gateway resolves `api` on the overlay network, DNS round robin,
//! on the swarms; on the fleet, where hosts share no network, it alternates between the two API
//! hosts' published ports, as an upstream list would). A request fails when it is refused, times
//! out (1 s) or answers anything but 200.
//!
//! Images come from the test registry (tests/fixtures/registry.sh), as each node and host pulls
//! them. Hosts: tests/fixtures/swarm.sh (3 nodes) and tests/fixtures/hosts.sh (a, b, c).
//! Run: `cargo bench --bench swarm` (as root: it sets the fixtures up). `RUNS` (default 3).

mod common;
#[path = "../tests/it/support/workload.rs"]
mod workload;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harbormaster::{
    Amount, Condition, Down, Environment, Fleet, HealthCheck, Port, RegistryAuth, Rollout, Secret, Service, SshHost,
    SwarmBackend,
};

const MANAGER: &str = "unix:///run/hm-swarm/1/docker.sock";
const REGISTRY_LOCAL: &str = "127.0.0.1:5055";
const REGISTRY_HOSTS: &str = "10.77.0.1:5055";
const USER: &str = "hmtest";
const PASSWORD: &str = "hmtest-registry-secret";

fn auth() -> RegistryAuth {
    RegistryAuth::basic(USER, Secret::new(PASSWORD))
}

fn sh(script: &str, env: &[(&str, &str)]) -> String {
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("bash");
    assert!(out.status.success(), "failed: {script}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fixture(script: &str) {
    let path = format!("{}/tests/fixtures/{script}", env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new("bash").arg(path).arg("up").stdout(Stdio::null()).status().expect("fixture");
    assert!(ok.success(), "{script} up failed");
}

/// The workload under a unique tag in the registry; its reference as nodes and hosts pull it.
fn push_image(tag: &str) -> String {
    let local = format!("{REGISTRY_LOCAL}/hmbench/swarm:{tag}");
    let config = std::env::temp_dir().join("hmbench-docker-config");
    let config = config.to_string_lossy().to_string();
    sh(
        &format!(
            "mkdir -p {config} && echo {PASSWORD} | docker login -u {USER} --password-stdin {REGISTRY_LOCAL} >/dev/null \
             && docker tag {} {local} && docker push -q {local} >/dev/null && docker rmi {local} >/dev/null",
            workload::IMAGE
        ),
        &[("DOCKER_CONFIG", &config)],
    );
    format!("{REGISTRY_HOSTS}/hmbench/swarm:{tag}")
}

/// Requests through the gateway, every 10 ms, until stopped: (sent, failed).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(urls: Vec<String>) -> Load {
        let (stop, sent, failed) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
        let (s, n, f): (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) =
            (stop.clone(), Arc::clone(&sent), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
            let mut i = 0usize;
            while !s.load(Ordering::Relaxed) {
                let url = &urls[i % urls.len()];
                i += 1;
                let ok = client.get(url).send().await.is_ok_and(|r| r.status().as_u16() == 200);
                n.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    f.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load { stop, sent, failed, task }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (self.sent.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

#[derive(Default, Clone, Copy)]
struct Sample {
    up: Duration,
    update: Duration,
    sent: u64,
    failed: u64,
}

fn exec_check() -> HealthCheck {
    HealthCheck::exec(["/workload", "probe", "8080", "/health"]).interval(Duration::from_millis(250)).retries(40)
}

fn http_check() -> HealthCheck {
    HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(100)
}

/// The stack for harbormaster's swarm backend: exec checks (Swarm runs them), ephemeral ports but
/// the gateway's, start-first updates one task at a time.
fn swarm_env(name: &str, image: &str, version: &str, gateway_port: u16) -> Environment {
    let svc = |n: &str| Service::builder(n).image(image).env("VERSION", n).health(exec_check());
    Environment::builder("hmbench", name)
        .service(svc("db").build().unwrap())
        .service(svc("message").build().unwrap())
        .service(
            svc("api")
                .env("VERSION", version)
                .replicas(2)
                .stop_grace_period(Duration::from_secs(2))
                .rollout(
                    Rollout::rolling()
                        .max_surge(Amount::count(1))
                        .max_unavailable(Amount::count(0))
                        .min_ready(Duration::from_secs(1)),
                )
                .depends_on("db", Condition::Healthy)
                .depends_on("message", Condition::Healthy)
                .build()
                .unwrap(),
        )
        .service(
            svc("gateway")
                .port(Port::tcp(8080).publish(gateway_port))
                .depends_on("api", Condition::Healthy)
                .build()
                .unwrap(),
        )
        .deadline(Duration::from_secs(300))
        .build()
        .unwrap()
}

async fn hm_swarm(run: usize, image: &str) -> Sample {
    let swarm = SwarmBackend::builder().manager(MANAGER).registry_auth(REGISTRY_HOSTS, auth()).connect().await.unwrap();
    let name = common::unique(&format!("sw{run}-"));
    let port = 22080;
    let t = Instant::now();
    let deployed = swarm_env(&name, image, "v1", port).apply(&swarm).await.expect("swarm deploy");
    let up = t.elapsed();
    let gw = deployed.endpoint("gateway", 8080).unwrap();
    let load = Load::start(vec![format!("http://{}:{}/call/api/8080/version", gw.host, gw.port)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    swarm_env(&name, image, "v2", port).apply(&swarm).await.expect("swarm update");
    let update = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed) = load.finish().await;
    swarm_env(&name, image, "v2", port).down(&swarm, Down::default().with_volumes()).await.expect("down");
    tokio::time::sleep(Duration::from_secs(3)).await; // the overlay's endpoints go a moment later
    Sample { up, update, sent, failed }
}

/// The same stack on the SSH fleet: roles as seed 001 spreads it; HTTP checks from the library.
fn fleet_env(name: &str, image: &str, version: &str) -> Environment {
    let svc = |n: &str, role: &str| Service::builder(n).image(image).role(role).env("VERSION", n).health(http_check());
    Environment::builder("hmbench", name)
        .hosts("gateway", ["hm-host-a"])
        .hosts("app", ["hm-host-b", "hm-host-c"])
        .hosts("db", ["hm-host-c"])
        .service(svc("db", "db").port(Port::tcp(8080).publish(22001)).build().unwrap())
        .service(svc("message", "db").port(Port::tcp(8080).publish(22002)).build().unwrap())
        .service(
            svc("api", "app")
                .env("VERSION", version)
                .replicas(2)
                .port(Port::tcp(8080).publish(22003))
                .stop_grace_period(Duration::from_secs(2))
                .rollout(Rollout::rolling().max_surge(Amount::count(0)).max_unavailable(Amount::count(1)))
                .depends_on("db", Condition::Healthy)
                .depends_on("message", Condition::Healthy)
                .build()
                .unwrap(),
        )
        .service(
            svc("gateway", "gateway")
                .port(Port::tcp(8080).publish(22004))
                .depends_on("api", Condition::Healthy)
                .build()
                .unwrap(),
        )
        .deadline(Duration::from_secs(300))
        .build()
        .unwrap()
}

async fn hm_fleet(run: usize, image: &str) -> Sample {
    let hosts = futures::future::join_all(
        ["hm-host-a", "hm-host-b", "hm-host-c"]
            .map(|h| SshHost::builder(h).registry_auth(REGISTRY_HOSTS, auth()).connect()),
    )
    .await;
    let mut b = Fleet::builder();
    for h in hosts {
        b = b.host(h.expect("connect"));
    }
    let fleet = b.build().unwrap();
    let name = common::unique(&format!("fl{run}-"));
    let t = Instant::now();
    fleet_env(&name, image, "v1").apply(&fleet).await.expect("fleet deploy");
    let up = t.elapsed();
    let urls = ["10.77.0.12", "10.77.0.13"].map(|h| format!("http://10.77.0.11:22004/call/{h}/22003/version")).to_vec();
    let load = Load::start(urls);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    fleet_env(&name, image, "v2").apply(&fleet).await.expect("fleet update");
    let update = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed) = load.finish().await;
    fleet_env(&name, image, "v2").down(&fleet, Down::default().with_volumes()).await.expect("down");
    Sample { up, update, sent, failed }
}

/// The compose file `docker stack deploy` takes for the same stack.
fn compose(image: &str, version: &str, gateway_port: u16) -> String {
    let hc = r#"healthcheck: {test: ["CMD", "/workload", "probe", "8080", "/health"], interval: 250ms, timeout: 1s, retries: 40}"#;
    format!(
        r#"version: "3.8"
services:
  db:
    image: {image}
    environment: {{VERSION: db}}
    {hc}
    deploy: {{endpoint_mode: dnsrr}}
  message:
    image: {image}
    environment: {{VERSION: message}}
    {hc}
    deploy: {{endpoint_mode: dnsrr}}
  api:
    image: {image}
    environment: {{VERSION: {version}}}
    {hc}
    stop_grace_period: 2s
    depends_on: [db, message]
    deploy:
      endpoint_mode: dnsrr
      replicas: 2
      update_config: {{parallelism: 1, order: start-first, monitor: 1s, failure_action: rollback}}
  gateway:
    image: {image}
    environment: {{VERSION: gateway}}
    {hc}
    depends_on: [api]
    ports: [{{target: 8080, published: {gateway_port}, mode: host}}]
    deploy: {{endpoint_mode: dnsrr}}
"#
    )
}

fn manager(script: &str, config: &str) -> String {
    sh(script, &[("DOCKER_HOST", MANAGER), ("DOCKER_CONFIG", config)])
}

/// Waits until every service of the stack runs all its replicas healthy and no update is under way.
async fn stack_settled(stack: &str, config: &str) {
    for _ in 0..1200 {
        let replicas = manager(&format!("docker stack services {stack} --format '{{{{.Replicas}}}}'"), config);
        let all = !replicas.trim().is_empty()
            && replicas.lines().all(|r| r.split('/').collect::<Vec<_>>().windows(2).all(|w| w[0] == w[1]));
        let states = manager(
            &format!(
                "for s in $(docker stack services -q {stack}); do docker service inspect $s --format '{{{{if .UpdateStatus}}}}{{{{.UpdateStatus.State}}}}{{{{end}}}}'; done"
            ),
            config,
        );
        let updating = states.lines().any(|s| !s.trim().is_empty() && s.trim() != "completed");
        if all && !updating {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stack {stack} never settled");
}

async fn stack_deploy(run: usize, image: &str) -> Sample {
    let config = std::env::temp_dir().join("hmbench-stack-config").to_string_lossy().to_string();
    manager(&format!("mkdir -p {config} && echo {PASSWORD} | docker login -u {USER} --password-stdin {REGISTRY_HOSTS} >/dev/null"), &config);
    let stack = format!("hmstack{run}");
    let dir = std::env::temp_dir().join(&stack);
    std::fs::create_dir_all(&dir).unwrap();
    let port = 22180;
    let file = |v: &str| {
        let p = dir.join(format!("{v}.yml"));
        std::fs::write(&p, compose(image, v, port)).unwrap();
        p.to_string_lossy().to_string()
    };
    let (v1, v2) = (file("v1"), file("v2"));
    let t = Instant::now();
    manager(&format!("docker stack deploy --with-registry-auth -c {v1} {stack} >/dev/null"), &config);
    stack_settled(&stack, &config).await;
    let up = t.elapsed();
    let node = manager(
        &format!("docker service ps {stack}_gateway --filter desired-state=running --format '{{{{.Node}}}}'"),
        &config,
    );
    let n = node.trim().trim_start_matches("hm-swarm-").to_string();
    let load = Load::start(vec![format!("http://10.77.0.3{n}:{port}/call/api/8080/version")]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    manager(&format!("docker stack deploy --with-registry-auth -c {v2} {stack} >/dev/null"), &config);
    tokio::time::sleep(Duration::from_millis(300)).await; // the update starts
    stack_settled(&stack, &config).await;
    let update = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed) = load.finish().await;
    manager(&format!("docker stack rm {stack} >/dev/null"), &config);
    let _ = std::fs::remove_dir_all(&dir);
    tokio::time::sleep(Duration::from_secs(5)).await;
    Sample { up, update, sent, failed }
}

#[tokio::main]
async fn main() {
    for f in ["hosts.sh", "registry.sh", "swarm.sh"] {
        fixture(f);
    }
    workload::ensure_images();
    let runs = common::runs(3);
    let (mut sw, mut fl, mut st) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let image = push_image(&common::unique(&format!("r{run}-")));
        sw.push(hm_swarm(run, &image).await);
        fl.push(hm_fleet(run, &image).await);
        st.push(stack_deploy(run, &image).await);
        eprintln!("run {run} done");
    }
    let row = |what: &str, s: &[Sample]| {
        let ms = |f: &dyn Fn(&Sample) -> Duration| common::median(s.iter().map(|x| f(x).as_millis()).collect());
        let failed: u64 = s.iter().map(|x| x.failed).sum();
        let sent: u64 = s.iter().map(|x| x.sent).sum();
        println!("| {what} | {} ms | {} ms | {failed} of {sent} |", ms(&|x| x.up), ms(&|x| x.update));
    };
    println!(
        "seed-001 stack (db, message, api x2, gateway), medians of {runs} runs; failed requests summed over the runs"
    );
    println!("| | all healthy from nothing | rolling update of api | failed requests during the update |");
    println!("|---|---|---|---|");
    row("harbormaster SwarmBackend (3-node swarm)", &sw);
    row("docker stack deploy (same swarm, same compose-equivalent)", &st);
    row("harbormaster Fleet over SSH (3 hosts)", &fl);
}
