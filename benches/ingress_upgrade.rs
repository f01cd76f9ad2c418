//! The ingress upgrading itself under load: failed requests and the longest gap, per kind of change.
//!
//! The ingress listens on a fixed host port, as in production (80/443). Two probers run through
//! every upgrade: one sends `GET /version` every 5 ms on a new connection (and records the
//! longest time without an answer), two hold keep-alive connections and never retry (an answer
//! with `Connection: close` ends a connection, as HTTP/1.1 asks of every client). Rows:
//!
//! - **harbormaster, image**: the ingress's Caddy image changes (alternating between two images:
//!   the second is the first plus a label, so a new image ID).
//! - **harbormaster, settings**: a route for a host name is added or removed (a new front
//!   configuration).
//! - **harbormaster, port**: the published port moves to another; the new-connection client tries
//!   the old port, then the new one (a failure is neither answering); the keep-alive clients hold
//!   the old port until the apply returns, then reconnect to the new one.
//! - **Recreate**: what docker-compose, `kamal proxy reboot` and a `Rollout::recreate()` Caddy
//!   service do: the proxy container is stopped, then its replacement (new image) starts.
//! - **bare `caddy reload`**: the settings change loaded into a running Caddy with `docker exec`
//!   (`caddy reload`), the fastest way to change a proxy's settings by hand.
//!
//! Medians of `RUNS` (default 3) upgrades per row. Run: `cargo bench --bench ingress_upgrade`.

mod common;
#[path = "../tests/it/support/load.rs"]
#[allow(dead_code)]
mod load;
#[path = "../tests/it/support/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harbormaster::{
    ContainerFile, DockerBackend, Down, Environment, HealthCheck, Ingress, Port, Rollout, Route, Service,
};

fn api() -> Service {
    Service::builder("api")
        .image(workload::IMAGE)
        .port(Port::tcp(8080))
        .replicas(2)
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(30))
        .build()
        .expect("valid service")
}

/// The library's ingress on `port`, from `image`, with a host route or not.
fn with_ingress(name: &str, port: u16, image: &str, host_route: bool) -> Environment {
    let mut ingress = Ingress::builder().image(image).http(Port::tcp(80).publish(port)).route(Route::to("api", 8080));
    if host_route {
        ingress = ingress.route(Route::to("api", 8080).host("shop.example.com"));
    }
    let ingress = ingress.build().expect("valid ingress");
    Environment::builder("hmbench", name).ingress(ingress).service(api()).build().expect("valid environment")
}

/// A Caddy configuration proxying to `api:8080`, with a host route or not (the same change as
/// the library's settings row); the admin API on the container's loopback.
fn plain_caddy_config(host_route: bool) -> String {
    let proxy = r#"{"handler":"reverse_proxy","upstreams":[{"dial":"api:8080"}]}"#;
    let host = if host_route {
        format!(r#"{{"match":[{{"host":["shop.example.com"]}}],"handle":[{proxy}],"terminal":true}},"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"admin":{{"listen":"localhost:2019"}},"apps":{{"http":{{"grace_period":"10s","servers":{{"s":{{"listen":[":80"],"automatic_https":{{"disable":true}},"routes":[{host}{{"handle":[{proxy}],"terminal":true}}]}}}}}}}}}}"#
    )
}

/// Caddy as a plain service on `port`, replaced stop-first (what a compose file gives).
fn with_plain_caddy(name: &str, port: u16, image: &str) -> Environment {
    let caddy = Service::builder("edge")
        .image(image)
        .command(["caddy", "run", "--config", "/etc/caddy.json"])
        .file(ContainerFile::text("/etc/caddy.json", plain_caddy_config(false)))
        .port(Port::tcp(80).publish(port))
        .health(HealthCheck::tcp(80).interval(Duration::from_millis(100)).retries(100))
        .rollout(Rollout::recreate())
        .depends_on("api", harbormaster::Condition::Healthy)
        .build()
        .expect("valid service");
    Environment::builder("hmbench", name).service(api()).service(caddy).build().expect("valid environment")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// What the probers saw during one upgrade.
struct Seen {
    longest: Duration,
    failed: u32,
    ok: u32,
    kept_failed: usize,
    kept_ok: u64,
    took: Duration,
}

/// A connection per request every 5 ms to `port`, or to `fallback` when `port` does not answer
/// (a client that knows both addresses while a port moves).
async fn probe(port: u16, fallback: u16, stop: Arc<AtomicBool>) -> (Duration, u32, u32) {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(2)).pool_max_idle_per_host(0).build().expect("client");
    let (mut last_ok, mut longest, mut failed, mut ok) = (Instant::now(), Duration::ZERO, 0, 0);
    let answers = |p: u16| {
        let request = client.get(format!("http://127.0.0.1:{p}/version")).send();
        async move { matches!(request.await, Ok(r) if r.status().is_success()) }
    };
    while !stop.load(Ordering::Relaxed) {
        if answers(port).await || (fallback != port && answers(fallback).await) {
            longest = longest.max(last_ok.elapsed());
            last_ok = Instant::now();
            ok += 1;
        } else {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (longest, failed, ok)
}

/// Runs `upgrade` (which moves the ingress to `to`, or keeps it on `port`) under both probers.
/// Keep-alive clients of a moved port reconnect to the new one once the apply returns; they
/// cannot know it before.
async fn measure<F: std::future::Future<Output = ()>>(port: u16, to: u16, upgrade: F) -> Seen {
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe(port, to, stop.clone()));
    let kept = load::Load::start_raw("127.0.0.1", port, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    upgrade.await;
    let took = t.elapsed();
    let (kept, tail) = match to == port {
        true => (kept, None),
        false => (load::Load::start_raw("127.0.0.1", to, 2), Some(kept.stop().await)),
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (longest, failed, ok) = prober.await.expect("prober");
    let mut kept = kept.stop().await;
    if let Some(before) = tail {
        kept.failed.extend(before.failed);
        for (body, n) in before.by_body {
            *kept.by_body.entry(body).or_default() += n;
        }
    }
    Seen { longest, failed, ok, kept_failed: kept.failed.len(), kept_ok: kept.ok(), took }
}

struct Row {
    name: &'static str,
    runs: Vec<Seen>,
}

impl Row {
    fn print(&self) {
        let med = |f: &dyn Fn(&Seen) -> u64| common::median(self.runs.iter().map(f).collect());
        println!(
            "| {} | {} ms | {} | {} | {} ms | {} | {} |",
            self.name,
            med(&|s| s.took.as_millis() as u64),
            med(&|s| s.failed as u64),
            med(&|s| s.kept_failed as u64),
            med(&|s| s.longest.as_millis() as u64),
            self.runs.iter().map(|s| s.ok as u64).sum::<u64>(),
            self.runs.iter().map(|s| s.kept_ok).sum::<u64>(),
        );
    }
}

fn report(name: &str, i: usize, s: &Seen) {
    println!(
        "{name} run {i}: {:.2?}; longest without an answer {} ms; {} of {} failed; keep-alive {} failed of {}",
        s.took,
        s.longest.as_millis(),
        s.failed,
        s.failed + s.ok,
        s.kept_failed,
        s.kept_ok
    );
}

fn build_next() -> &'static str {
    workload::ensure_caddy_next()
}

#[tokio::main]
async fn main() {
    let runs = common::runs(3);
    workload::ensure_images();
    let next = build_next();
    let docker = DockerBackend::connect().await.expect("a reachable Docker engine");
    let mut rows = Vec::new();

    // The library's ingress: image, settings, port.
    let name = common::unique("ingup");
    let mut port = free_port();
    with_ingress(&name, port, workload::CADDY_IMAGE, false).apply(&docker).await.expect("first apply");
    let (mut image, mut image_row, mut settings_row, mut port_row) =
        (workload::CADDY_IMAGE, Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        image = if image == next { workload::CADDY_IMAGE } else { next };
        let env = with_ingress(&name, port, image, false);
        let s = measure(port, port, async { env.apply(&docker).await.map(drop).expect("image upgrade") }).await;
        report("image", i, &s);
        image_row.push(s);

        let env = with_ingress(&name, port, image, true);
        let s = measure(port, port, async { env.apply(&docker).await.map(drop).expect("settings") }).await;
        report("settings", i, &s);
        settings_row.push(s);
        with_ingress(&name, port, image, false).apply(&docker).await.expect("settings back");

        let moved = free_port();
        let env = with_ingress(&name, moved, image, false);
        let s = measure(port, moved, async { env.apply(&docker).await.map(drop).expect("port move") }).await;
        report("port", i, &s);
        port_row.push(s);
        port = moved;
    }
    let _ = with_ingress(&name, port, image, false).down(&docker, Down::default().with_volumes()).await;
    rows.push(Row { name: "harbormaster, new image", runs: image_row });
    rows.push(Row { name: "harbormaster, new settings (a host route)", runs: settings_row });
    rows.push(Row { name: "harbormaster, new host port", runs: port_row });

    // Recreate: a plain Caddy service on the fixed port, stop-first.
    let name = common::unique("ingrec");
    let port = free_port();
    let first = with_plain_caddy(&name, port, workload::CADDY_IMAGE).apply(&docker).await.expect("first apply");
    let edge = |d: &harbormaster::Deployment| d.instances("edge").first().map(|i| i.name.clone()).expect("edge");
    let mut container = edge(&first);
    let (mut image, mut recreate_row, mut reload_row) = (workload::CADDY_IMAGE, Vec::new(), Vec::new());
    for i in 0..runs {
        image = if image == next { workload::CADDY_IMAGE } else { next };
        let env = with_plain_caddy(&name, port, image);
        let s = measure(port, port, async {
            container = edge(&env.apply(&docker).await.expect("recreate"));
        })
        .await;
        report("recreate", i, &s);
        recreate_row.push(s);

        // A bare `caddy reload` of the settings change, through the Docker CLI.
        let container = container.clone();
        let s = measure(port, port, async {
            let file = std::env::temp_dir().join(format!("{name}-caddy.json"));
            std::fs::write(&file, plain_caddy_config(i % 2 == 0)).expect("write the configuration");
            let copied = Command::new("docker")
                .args(["cp", &file.display().to_string(), &format!("{container}:/etc/caddy-next.json")])
                .status()
                .expect("docker cp");
            assert!(copied.success(), "docker cp into {container}");
            let reload = ["exec", &container, "caddy", "reload", "--config", "/etc/caddy-next.json"];
            let reloaded = Command::new("docker").args(reload).stdout(Stdio::null()).stderr(Stdio::null()).status();
            assert!(reloaded.expect("docker exec").success(), "caddy reload in {container}");
            let _ = std::fs::remove_file(&file);
        })
        .await;
        report("caddy reload", i, &s);
        reload_row.push(s);
    }
    let _ = with_plain_caddy(&name, port, image).down(&docker, Down::default().with_volumes()).await;
    rows.push(Row { name: "Recreate (stop, then start the new image)", runs: recreate_row });
    rows.push(Row { name: "bare `caddy reload` (same settings change)", runs: reload_row });

    println!("\nmedians of {runs} upgrades per row:\n");
    println!("| | upgrade | failed, new connection each | failed, keep-alive | longest without an answer | answered | keep-alive answered |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        r.print();
    }
}
