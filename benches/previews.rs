//! A preview environment per pull request: harbormaster's `Previews` against what people build
//! themselves, docker-compose 1.29 with a project per pull request (`docker-compose -p shop-pr-N
//! up -d`), on the same image and services: `web` (ready 0.3 s after it starts) and a job that
//! writes the preview's data first. Side by side in one run, `RUNS` (default 5) alternating runs:
//!
//! - **opened**: from nothing to the preview answering. harbormaster's answer comes through the
//!   shared edge on the preview's own host name (its own ingress, a relay, an edge apply);
//!   docker-compose's on a published port (no shared proxy: none can be pulled here).
//! - **pushed**: a new version rolled out, timed until every answer is the new one, with a client
//!   asking all along: failed requests are counted (harbormaster rolls through the preview's
//!   ingress; docker-compose recreates the container).
//! - **closed**: everything of the preview removed (`Previews::down`, `docker-compose down -v`).
//!
//! The engine's floor beside them: `docker run -d` of the same image until it answers.
//! Run: `cargo bench --bench previews`.

#[path = "../tests/it/support/workload.rs"]
mod workload;

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harbormaster::preview::{PreviewName, Previews};
use harbormaster::{
    Condition, DockerBackend, Environment, HealthCheck, Ingress, Port, Rollout, Route, Service, Volume,
};

const DOMAIN: &str = "preview.bench";

fn base() -> Environment {
    let seed = Service::job("seed")
        .image(workload::IMAGE)
        .env("JOB_EXIT_CODE", "0")
        .env("APPEND_FILE", "/data/who")
        .env("APPEND_LINE", "bench")
        .volume(Volume::named("data").at("/data"))
        .build()
        .expect("seed");
    let web = Service::builder("web")
        .image(workload::IMAGE)
        .env("VERSION", "v1")
        .env("READY_DELAY_MS", "300")
        .port(Port::tcp(8080))
        .volume(Volume::named("data").at("/data"))
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(100))
        .rollout(Rollout::start_first())
        .stop_grace_period(Duration::from_secs(1))
        .depends_on("seed", Condition::CompletedSuccessfully)
        .build()
        .expect("web");
    let ingress = Ingress::builder()
        .image(workload::CADDY_IMAGE)
        .route(Route::to("web", 8080).host("shop.example.test"))
        .build()
        .expect("ingress");
    Environment::builder("hmbench", "pvbase").service(seed).service(web).ingress(ingress).build().expect("base")
}

fn compose_file(version: &str) -> String {
    format!(
        r#"version: "2.4"
services:
  seed:
    image: {image}
    environment: {{ JOB_EXIT_CODE: "0", APPEND_FILE: /data/who, APPEND_LINE: bench }}
    volumes: [ "data:/data" ]
  web:
    image: {image}
    environment: {{ VERSION: "{version}", READY_DELAY_MS: "300" }}
    ports: [ "8080" ]
    volumes: [ "data:/data" ]
    stop_grace_period: 1s
    depends_on:
      seed: {{ condition: service_completed_successfully }}
volumes:
  data: {{}}
"#,
        image = workload::IMAGE
    )
}

fn compose(dir: &std::path::Path, project: &str, args: &[&str]) -> String {
    let out = Command::new("docker-compose")
        .arg("-p")
        .arg(project)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("docker-compose must be installed (apt-get install docker-compose)");
    assert!(out.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `GET url` (with `Host: host`) until it answers 200 with `body`.
async fn until_answers(client: &reqwest::Client, url: &str, host: Option<&str>, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut req = client.get(url);
        if let Some(h) = host {
            req = req.header("Host", h);
        }
        if let Ok(r) = req.send().await {
            if r.status() == 200 && r.text().await.unwrap_or_default().trim() == body {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client asking `url` all along until stopped; counts the failed requests.
fn asking(
    client: reqwest::Client,
    url: String,
    host: Option<String>,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let failed = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(async move {
        while !flag.load(Ordering::Relaxed) {
            let mut req = client.get(&url);
            if let Some(h) = &host {
                req = req.header("Host", h);
            }
            match req.send().await {
                Ok(r) if r.status() == 200 => {}
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        failed.load(Ordering::Relaxed)
    });
    (stop, task)
}

struct Run {
    opened: Duration,
    pushed: Duration,
    push_failed: u64,
    closed: Duration,
}

async fn harbormaster_run(docker: &DockerBackend, previews: &Previews, client: &reqwest::Client, n: usize) -> Run {
    let name = PreviewName::named(&format!("run-{n}"));
    let host = format!("{}.{DOMAIN}", name.name());
    let t = Instant::now();
    let up = previews.up(docker, &previews.preview(name.clone()).build().expect("preview")).await.expect("up");
    let edge = up.edge.ingress_endpoint().expect("edge endpoint").http_url();
    until_answers(client, &format!("{edge}/version"), Some(&host), "v1").await;
    let opened = t.elapsed();

    let (stop, asked) = asking(client.clone(), format!("{edge}/version"), Some(host.clone()));
    let t = Instant::now();
    let v2 = previews.preview(name.clone()).env("web", "VERSION", "v2").build().expect("push");
    previews.up(docker, &v2).await.expect("push");
    until_answers(client, &format!("{edge}/version"), Some(&host), "v2").await;
    let pushed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let push_failed = asked.await.expect("client");

    let t = Instant::now();
    previews.down(docker, name.name()).await.expect("down");
    Run { opened, pushed, push_failed, closed: t.elapsed() }
}

async fn compose_run(client: &reqwest::Client, n: usize) -> Run {
    let project = format!("hmbench-pr-{n}-{}", std::process::id());
    let dir = std::env::temp_dir().join(&project);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("docker-compose.yml"), compose_file("v1")).expect("compose file");
    let t = Instant::now();
    compose(&dir, &project, &["up", "-d"]);
    let port = compose(&dir, &project, &["port", "web", "8080"]);
    let url = format!("http://{}/version", port.replace("0.0.0.0", "127.0.0.1"));
    until_answers(client, &url, None, "v1").await;
    let opened = t.elapsed();

    std::fs::write(dir.join("docker-compose.yml"), compose_file("v2")).expect("compose file");
    let t = Instant::now();
    let (stop, asked) = asking(client.clone(), url.clone(), None);
    compose(&dir, &project, &["up", "-d"]);
    // The recreated container publishes a new ephemeral port.
    let port = compose(&dir, &project, &["port", "web", "8080"]);
    let url = format!("http://{}/version", port.replace("0.0.0.0", "127.0.0.1"));
    until_answers(client, &url, None, "v2").await;
    let pushed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let push_failed = asked.await.expect("client");

    let t = Instant::now();
    compose(&dir, &project, &["down", "-v"]);
    let closed = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    Run { opened, pushed, push_failed, closed }
}

/// The engine's floor: `docker run -d` of the workload until it answers.
async fn floor(client: &reqwest::Client) -> Duration {
    let t = Instant::now();
    let out = Command::new("docker")
        .args(["run", "-d", "--rm", "-p", "127.0.0.1::8080", "-e", "VERSION=floor", workload::IMAGE])
        .output()
        .expect("docker");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let port = Command::new("docker").args(["port", &id, "8080"]).output().expect("docker");
    let url = format!("http://{}/version", String::from_utf8_lossy(&port.stdout).trim());
    until_answers(client, &url, None, "floor").await;
    let took = t.elapsed();
    let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    took
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    common::trace_if_asked();
    workload::ensure_images();
    let runs = common::runs(5);
    let docker = DockerBackend::connect().await.expect("a Docker engine");
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().expect("client");
    let edge =
        Ingress::builder().image(workload::CADDY_IMAGE).http(Port::tcp(80).publish_ephemeral()).build().expect("edge");
    let previews =
        Previews::builder(&base(), edge, DOMAIN).edge_name(common::unique("pvedge")).build().expect("previews");
    // The edge is made once, by a first preview not measured (as it is once per installation).
    harbormaster_run(&docker, &previews, &client, 0).await;

    let (mut hm, mut dc, mut fl) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=runs {
        hm.push(harbormaster_run(&docker, &previews, &client, n).await);
        dc.push(compose_run(&client, n).await);
        fl.push(floor(&client).await);
    }
    previews.teardown(&docker).await.expect("teardown");

    let floor = common::median(fl);
    let med = |v: &[Run], f: fn(&Run) -> Duration| common::median(v.iter().map(f).collect());
    let failed = |v: &[Run]| v.iter().map(|r| r.push_failed).sum::<u64>();
    println!(
        "preview environments, median of {runs} runs; engine floor (docker run until it answers) {:.0} ms",
        ms(floor)
    );
    println!("| | opened | pushed | failed requests during pushes (all runs) | closed |");
    println!("|---|---|---|---|---|");
    for (who, v) in [("harbormaster Previews", &hm), ("docker-compose -p per PR", &dc)] {
        let (o, p, c) = (med(v, |r| r.opened), med(v, |r| r.pushed), med(v, |r| r.closed));
        println!(
            "| {who} | {:.0} ms ({:.1}x floor) | {:.0} ms | {} | {:.0} ms |",
            ms(o),
            o.as_secs_f64() / floor.as_secs_f64().max(1e-9),
            ms(p),
            failed(v),
            ms(c)
        );
    }
}
