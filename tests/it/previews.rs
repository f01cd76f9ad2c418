//! Preview environments (`harbormaster::preview`) as a CI job drives them: ten previews behind one
//! edge with TLS, each answering on its own host name with its own data (its own volume), a push
//! to one under load on two (zero failed requests, the other untouched), an eleventh that removes
//! the oldest (and its plan said so), expiry carried out by another process, and nothing left.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use harbormaster::preview::{PreviewName, Previews, RemovalReason};
use harbormaster::{Condition, Environment, HealthCheck, Ingress, Port, Rollout, Route, Service, Tls, Volume};
use support::{docker, workload, PROJECT};

const DOMAIN: &str = "preview.test";

/// The workload as the shop's `web`, healthy once `/health` answers.
fn web() -> harbormaster::ServiceBuilder {
    Service::builder("web")
        .image(workload::IMAGE)
        .port(Port::tcp(8080))
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(100))
}

/// The shop's ingress: `web` at `shop.example.test`.
fn shop_ingress() -> Ingress {
    Ingress::builder()
        .image(workload::CADDY_IMAGE)
        .route(Route::to("web", 8080).host("shop.example.test"))
        .build()
        .unwrap()
}

/// A job that writes `line` into volume `data` (`/data/who`): a preview's own data.
fn seed_job(line: &str) -> Service {
    Service::job("seed")
        .image(workload::IMAGE)
        .env("JOB_EXIT_CODE", "0")
        .env("APPEND_FILE", "/data/who")
        .env("APPEND_LINE", line)
        .volume(Volume::named("data").at("/data"))
        .build()
        .unwrap()
}

/// The base: `web` (the workload, reading its data from volume `data`) behind an ingress route,
/// and a job that writes the preview's data into that volume before `web` starts.
fn base(stem: &str) -> Environment {
    let web = web()
        .env("VERSION", "v1")
        .env("DATA", "base")
        .volume(Volume::named("data").at("/data"))
        .rollout(Rollout::start_first())
        .stop_grace_period(Duration::from_secs(1))
        .depends_on("seed", Condition::CompletedSuccessfully)
        .build()
        .unwrap();
    let (seed, ingress) = (seed_job("base"), shop_ingress());
    Environment::builder(PROJECT, format!("{stem}-base")).service(seed).service(web).ingress(ingress).build().unwrap()
}

/// The base without an ingress: `web` only.
fn web_env(stem: &str) -> Environment {
    Environment::builder(PROJECT, format!("{stem}-plain")).service(web().build().unwrap()).build().unwrap()
}

/// The edge: ephemeral HTTP and HTTPS ports, certificates from Caddy's own CA.
fn tls_edge() -> Ingress {
    Ingress::builder()
        .image(workload::CADDY_IMAGE)
        .http(Port::tcp(80).publish_ephemeral())
        .https(Port::tcp(443).publish_ephemeral())
        .tls(Tls::Internal)
        .stop_grace(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// The previews of the base of `stem`, behind an edge with Caddy's own CA; `ttl` if given.
fn previews(stem: &str, ttl: Option<Duration>) -> Previews {
    let b = Previews::builder(&base(stem), tls_edge(), DOMAIN).edge_name(format!("{stem}-edge")).max_live(10);
    match ttl {
        Some(t) => b.ttl(t),
        None => b,
    }
    .build()
    .unwrap()
}

fn preview_name(stem: &str, i: usize) -> PreviewName {
    PreviewName::named(&format!("{stem}-{i}"))
}

/// An HTTPS client that takes every preview host to the edge's published HTTPS port, sending the
/// host name (SNI and `Host`) and trusting Caddy's local CA without its root.
fn client(hosts: &[String], edge: SocketAddr) -> reqwest::Client {
    hosts
        .iter()
        .fold(reqwest::Client::builder(), |b, h| b.resolve(h, edge))
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    match client.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default().trim().to_string()),
        Err(e) => (0, format!("{e:?}")),
    }
}

/// What a load saw: answers by body, and every failure.
type Seen = (BTreeMap<String, u64>, Vec<String>);

/// Requests on `url` in a loop until stopped.
fn load(client: reqwest::Client, url: String) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Seen>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let (mut ok, mut failed) = (BTreeMap::new(), Vec::new());
        while !flag.load(Ordering::Relaxed) {
            match get(&client, &url).await {
                (200, body) => *ok.entry(body).or_insert(0u64) += 1,
                (status, body) => failed.push(format!("{status}: {body}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, failed)
    });
    (stop, task)
}

/// What the engine still holds of environments whose name `is_of` accepts.
fn leftovers(is_of: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for kind in [["ps", "-a"].as_slice(), &["network", "ls"], &["volume", "ls"]] {
        let args: Vec<&str> = kind
            .iter()
            .copied()
            .chain([
                "--filter",
                "label=io.harbormaster.project=hmtest",
                "--format",
                "{{.Label \"io.harbormaster.environment\"}}",
            ])
            .collect();
        let o = std::process::Command::new("docker").args(&args).output().unwrap();
        out.extend(String::from_utf8_lossy(&o.stdout).lines().filter(|l| is_of(l)).map(|l| format!("{} {l}", kind[0])));
    }
    out
}

/// Tears the previews of a stem down when a test ends, also on a failed assertion: ten previews
/// hold ten networks, and an engine has address pools for about thirty.
struct Teardown(String);

impl Drop for Teardown {
    fn drop(&mut self) {
        let stem = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let docker = docker().await;
                let _ = previews(&stem, None).teardown(&docker).await;
                if let Ok(base) = Environment::named(PROJECT, format!("{stem}-base")) {
                    let _ = base.down(&docker, harbormaster::Down::default().with_volumes()).await;
                }
            });
        })
        .join();
    }
}

/// A test's previews on the local engine: the engine, a stem of the test's own, the teardown guard
/// and the previews of the stem.
async fn on_the_local_engine(tag: &str) -> (harbormaster::DockerBackend, String, Teardown, Previews) {
    workload::ensure_images();
    let stem = support::unique(tag);
    (docker().await, stem.clone(), Teardown(stem.clone()), previews(&stem, None))
}

/// Another process (a nightly job): expires the previews of `HM_PREVIEW_STEM` with a one-second
/// time to live, and prints what it removed.
#[tokio::test]
#[ignore = "a child process of the preview tests"]
async fn expire_child() {
    let stem = std::env::var("HM_PREVIEW_STEM").unwrap();
    let removed = previews(&stem, Some(Duration::from_secs(1))).expire(&docker().await).await.unwrap();
    for r in removed {
        println!("hm-preview removed {} {}", r.name, serde_json::to_string(&r.reason).unwrap());
    }
}

#[tokio::test]
async fn ten_previews_behind_one_edge_a_push_an_eviction_and_expiry_by_another_process() {
    let (docker, stem, _teardown, previews) = on_the_local_engine("pv").await;

    // Ten pull requests opened at once, each with its own data.
    let started = std::time::Instant::now();
    let ups = join_all((1..=10).map(|i| {
        let preview = previews
            .preview(preview_name(&stem, i))
            .env("web", "DATA", format!("data-{i}"))
            .service(seed_job(&format!("preview {i}")))
            .build()
            .unwrap();
        let previews = &previews;
        let docker = &docker;
        async move { previews.up(docker, &preview).await }
    }))
    .await;
    let ten_up = started.elapsed();
    let ups: Vec<_> = ups.into_iter().map(|u| u.unwrap()).collect();
    assert!(
        ups.iter().all(|u| u.new && u.removed.is_empty()),
        "{:?}",
        ups.iter().map(|u| &u.removed).collect::<Vec<_>>()
    );
    let edge_port = {
        // The last edge apply holds every route; any preview's `edge` shows the published ports.
        let edge = &ups.last().unwrap().edge;
        edge.endpoint("ingress", 443).unwrap().port
    };
    let edge_addr: SocketAddr = format!("127.0.0.1:{edge_port}").parse().unwrap();
    let hosts: Vec<String> = (1..=11).flat_map(|i| previews.hosts(preview_name(&stem, i).name())).collect();
    let http = client(&hosts, edge_addr);

    // Each answers on its own host, with its own data, over TLS through the one edge.
    let listed = previews.list(&docker).await.unwrap();
    assert_eq!(listed.len(), 10, "{listed:?}");
    for i in 1..=10 {
        let name = preview_name(&stem, i);
        let host = format!("{}.{DOMAIN}", name.name());
        assert_eq!(previews.hosts(name.name()), std::slice::from_ref(&host));
        assert_eq!(get(&http, &format!("https://{host}:{edge_port}/env/DATA")).await, (200, format!("data-{i}")));
        assert_eq!(get(&http, &format!("https://{host}:{edge_port}/version")).await, (200, "v1".to_string()));
        let web = &ups[i - 1].deployment.instances("web")[0].id;
        let cat = ["/workload", "cat", "/data/who"].map(String::from);
        let out = harbormaster::Backend::exec(&docker, web, &cat, Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.stdout.trim(), format!("preview {i}"), "preview {i}'s own volume");
    }
    // An unknown host under the domain is not served by any preview.
    let (status, _) = get(&http, &format!("https://nope.{DOMAIN}:{edge_port}/version")).await;
    assert_ne!(status, 200);

    // A push to preview 3 under load on 3 and 5: no request fails, 5 is not touched.
    let p5 = Environment::named(PROJECT, preview_name(&stem, 5).name()).unwrap();
    let ids = |s: harbormaster::Status| -> Vec<String> {
        s.services.iter().flat_map(|s| s.instances.iter().map(|i| i.name.clone())).collect()
    };
    let before5 = ids(p5.status(&docker).await.unwrap());
    let url = |i: usize| format!("https://{}.{DOMAIN}:{edge_port}/version", preview_name(&stem, i).name());
    let (stop3, load3) = load(http.clone(), url(3));
    let (stop5, load5) = load(http.clone(), url(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let push = previews
        .preview(preview_name(&stem, 3))
        .env("web", "DATA", "data-3")
        .env("web", "VERSION", "v2")
        .service(seed_job("preview 3"))
        .build()
        .unwrap();
    let plan = previews.plan(&docker, &push).await.unwrap();
    assert!(!plan.new && plan.removals.is_empty(), "{plan}");
    let pushed_at = std::time::Instant::now();
    let pushed = previews.up(&docker, &push).await.unwrap();
    let push_took = pushed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop3.store(true, Ordering::Relaxed);
    stop5.store(true, Ordering::Relaxed);
    let (ok3, failed3) = load3.await.unwrap();
    let (ok5, failed5) = load5.await.unwrap();
    println!("push: {push_took:?}; preview 3 answered {ok3:?}, preview 5 {ok5:?}");
    assert!(!pushed.new);
    assert!(failed3.is_empty(), "requests to the pushed preview failed: {failed3:?}");
    assert!(failed5.is_empty(), "requests to another preview failed: {failed5:?}");
    assert!(ok3.get("v2").copied().unwrap_or(0) > 0 && ok3.get("v1").copied().unwrap_or(0) > 0, "{ok3:?}");
    assert_eq!(ok5.keys().collect::<Vec<_>>(), ["v1"], "{ok5:?}");
    assert_eq!(ids(p5.status(&docker).await.unwrap()), before5, "preview 5 was touched");
    assert_eq!(get(&http, &url(3)).await, (200, "v2".to_string()));

    // An eleventh: the plan says the oldest goes, and it goes.
    let eleventh = previews.preview(preview_name(&stem, 11)).env("web", "DATA", "data-11").build().unwrap();
    let plan = previews.plan(&docker, &eleventh).await.unwrap();
    assert!(plan.new, "{plan}");
    assert_eq!(plan.removals.len(), 1, "{plan}");
    assert_eq!(plan.removals[0].reason, RemovalReason::OverLimit { max_live: 10 });
    assert!(plan.to_string().contains("at most 10 may be alive"), "{plan}");
    let oldest = plan.removals[0].name.clone();
    let up = previews.up(&docker, &eleventh).await.unwrap();
    assert_eq!(up.removed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), [oldest.as_str()]);
    let listed = previews.list(&docker).await.unwrap();
    assert_eq!(listed.len(), 10);
    assert!(!listed.iter().any(|p| p.name == oldest));
    assert_eq!(
        get(&http, &format!("https://{}.{DOMAIN}:{edge_port}/env/DATA", up.name)).await,
        (200, "data-11".into())
    );
    let (status, _) = get(&http, &format!("https://{oldest}.{DOMAIN}:{edge_port}/version")).await;
    assert_ne!(status, 200, "the removed preview still answers");
    assert_eq!(leftovers(|e| e == oldest), Vec::<String>::new());

    // Closing one by name from any description of the same previews.
    let closed = previews.down(&docker, &up.name).await.unwrap().unwrap();
    assert_eq!(closed.reason, RemovalReason::Requested);
    assert!(previews.down(&docker, &up.name).await.unwrap().is_none());

    // Expiry, by another process: every preview is older than its one-second time to live.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(support::child_args(module_path!(), "expire_child"))
        .env("HM_PREVIEW_STEM", &stem)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let expired: Vec<&str> = stdout.lines().filter(|l| l.contains("hm-preview removed")).collect();
    assert_eq!(expired.len(), 9, "{stdout}");
    assert!(expired.iter().all(|l| l.contains("\"kind\":\"expired\"")), "{stdout}");
    assert!(previews.list(&docker).await.unwrap().is_empty());
    let (status, _) = get(&http, &url(3)).await;
    assert_ne!(status, 200, "an expired preview still answers");

    // The edge goes last; nothing of any preview, the edge or the previews' lock is left.
    previews.teardown(&docker).await.unwrap();
    assert_eq!(leftovers(|e| e.starts_with(&stem)), Vec::<String>::new());
    println!("ten previews up in {ten_up:?}; push {push_took:?}");
}

#[tokio::test]
async fn names_stay_apart_and_a_wrong_override_is_refused_before_any_change() {
    let (docker, stem, _teardown, previews) = on_the_local_engine("pvn").await;
    let err = previews.preview(PreviewName::pull_request(1)).image("nope", "x:1").build().unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
    let err = previews.preview(PreviewName::pull_request(1)).env("web", "A\0", "x").build().unwrap_err();
    assert!(err.to_string().contains("web"), "{err}");
    // What cannot describe previews is refused when they are described.
    let edge = || Ingress::builder().image(workload::CADDY_IMAGE).build().unwrap();
    for (builder, says) in [
        (Previews::builder(&base(&stem), edge(), "Preview.Example"), "domain"),
        (Previews::builder(&base(&stem), edge(), "preview.test").max_live(0), "at least one"),
        (Previews::builder(&base(&stem), edge(), "preview.test").ttl(Duration::ZERO), "greater than zero"),
        (Previews::builder(&base(&stem), edge(), "preview.test").edge_name("Edge!"), "'E'"),
        (
            Previews::builder(&web_env(&stem), edge(), "preview.test"),
            "no route: give the base an ingress with routes, or PreviewsBuilder::route",
        ),
    ] {
        let err = builder.build().unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
    }
    // A base without an ingress is previewed through the routes given.
    let routed =
        Previews::builder(&web_env(&stem), edge(), "preview.test").route(Route::to("web", 8080)).build().unwrap();
    assert_eq!(routed.hosts("pr-1"), ["pr-1.preview.test"]);
    // Two branches that sanitise to the same name: the second gets a name of its own.
    let a = previews.preview(PreviewName::branch(&format!("{stem}/a"))).build().unwrap();
    let b = previews.preview(PreviewName::branch(&format!("{stem}-a"))).build().unwrap();
    // What a caller awaits stays small (a test's stack in a debug build holds it).
    let (up_future, expire_future) = (previews.up(&docker, &a), previews.expire(&docker));
    assert!(std::mem::size_of_val(&up_future) < 512, "{} bytes", std::mem::size_of_val(&up_future));
    assert!(std::mem::size_of_val(&expire_future) < 512, "{} bytes", std::mem::size_of_val(&expire_future));
    drop(expire_future);
    let up_a = up_future.await.unwrap();
    let plan_b = previews.plan(&docker, &b).await.unwrap();
    assert_ne!(plan_b.name, up_a.name, "{plan_b}");
    assert!(plan_b.new);
    // The same branch again is the same preview.
    assert_eq!(previews.plan(&docker, &a).await.unwrap().name, up_a.name);
    // Its environment, from its description, for the operations of any environment.
    let env_a = previews.environment(&docker, &a).await.unwrap();
    assert_eq!(env_a.name(), up_a.name);
    let out = env_a.exec(&docker, "web", ["/workload", "cat", "/data/who"]).await.unwrap();
    assert_eq!(out.stdout.trim(), "base");
    assert_eq!(env_a.history(&docker, "web").await.unwrap().len(), 1);
    // Idle: nothing deployed to it for longer than the idle expiry of another description of the
    // same previews (the last deploy is read from the target).
    let idle = Previews::builder(&base(&stem), tls_edge(), DOMAIN)
        .edge_name(format!("{stem}-edge"))
        .idle_expiry(Duration::from_secs(1))
        .build()
        .unwrap();
    let listed = idle.list(&docker).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].expires.is_some() && listed[0].last_deploy >= listed[0].created, "{listed:?}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let expired = idle.expire(&docker).await.unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(matches!(expired[0].reason, RemovalReason::Idle { limit_s: 1, .. }), "{expired:?}");
    assert!(previews.list(&docker).await.unwrap().is_empty());
    previews.teardown(&docker).await.unwrap();
    assert_eq!(leftovers(|e| e.starts_with(&stem)), Vec::<String>::new());
}

#[tokio::test]
async fn on_a_swarm_plan_and_up_say_why_previews_cannot_run() {
    let swarm = support::swarm::backend().await;
    let stem = support::unique("pvw");
    let previews = previews(&stem, None);
    let preview = previews.preview(PreviewName::pull_request(9)).build().unwrap();
    for err in [previews.plan(&swarm, &preview).await.unwrap_err(), previews.up(&swarm, &preview).await.unwrap_err()] {
        assert_eq!(err.kind(), harbormaster::ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("the environment's overlay network only"), "{err}");
    }
    // Nor can it enumerate environments, which listing previews needs.
    assert_eq!(previews.list(&swarm).await.unwrap_err().kind(), harbormaster::ErrorKind::Unsupported);
}

#[tokio::test]
async fn on_fly_plan_and_up_say_why_previews_cannot_run_and_change_nothing() {
    let app = support::unique("pvfly");
    let fake = support::fly::fake(&app).await;
    let fly = support::fly::backend(&fake, &app).await;
    let stem = support::unique("pvf");
    let previews = previews(&stem, None);
    let preview = previews.preview(PreviewName::pull_request(9)).build().unwrap();
    for err in [previews.plan(&fly, &preview).await.unwrap_err(), previews.up(&fly, &preview).await.unwrap_err()] {
        assert_eq!(err.kind(), harbormaster::ErrorKind::Unsupported, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("relay") && text.contains("a Fly machine is on its app's private network only"),
            "{text}"
        );
    }
    assert!(fake.machines(&app).is_empty(), "{:?}", fake.machines(&app));
    fake.shutdown().await;
}

/// The shop of the guides, as a preview's base: PostgreSQL with its data in a volume, and `web`.
fn shop(stem: &str) -> Environment {
    let db = support::images::shop_db("preview-test-db-secret").port(Port::tcp(5432).publish(15432)).build().unwrap();
    let web = web().env("VERSION", "v1").depends_on("db", Condition::Healthy).build().unwrap();
    let ingress = shop_ingress();
    Environment::builder(PROJECT, format!("{stem}-base")).service(db).service(web).ingress(ingress).build().unwrap()
}

async fn psql<B: harbormaster::Backend>(backend: &B, db: &str, statement: &str) -> String {
    let command = ["psql", "-U", "app", "-d", "shop", "-v", "ON_ERROR_STOP=1", "-Atc", statement].map(String::from);
    let out = backend.exec(db, &command, Duration::from_secs(30)).await.unwrap();
    format!("{}{}", out.stdout.trim(), out.stderr.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_preview_gets_the_bases_latest_backup_and_keeps_its_own_data() {
    use harbormaster::backup::{PostgresBackup, S3Storage};
    support::images::ensure();
    workload::ensure_images();
    support::fixture("s3.sh", "the preview seed test needs moto's S3 server");
    let docker = docker().await;
    let stem = support::unique("pvs");
    let _teardown = Teardown(stem.clone());
    let base = shop(&stem);
    let storage = S3Storage::builder("http://127.0.0.1:5056", support::unique("previews"))
        .credentials("hmtest", harbormaster::Secret::new("hmtest-s3-secret"))
        .create_bucket(true)
        .build()
        .unwrap();
    let storage = std::sync::Arc::new(storage);

    // Production (the base) runs, with rows, and is backed up.
    let deployed = base.apply(&docker).await.unwrap();
    let base_db = deployed.instances("db")[0].id.clone();
    psql(&docker, &base_db, "CREATE TABLE orders (id int primary key, item text)").await;
    psql(&docker, &base_db, "INSERT INTO orders VALUES (1, 'tea'), (2, 'cake')").await;
    let backup = PostgresBackup::new("db").database("shop").user("app");
    let taken = backup.run(&base, &docker, &storage).await.unwrap();

    let edge = Ingress::builder().image(workload::CADDY_IMAGE).http(Port::tcp(80).publish_ephemeral()).build().unwrap();
    let previews = Previews::builder(&base, edge, DOMAIN).edge_name(format!("{stem}-edge")).build().unwrap();
    let seeded = previews
        .preview(PreviewName::pull_request(1))
        .seed(harbormaster::preview::Seed::latest_backup(backup.clone(), storage.clone()))
        .build()
        .unwrap();
    // The base's fixed host port would collide: the plan says the preview publishes it elsewhere.
    let plan = previews.plan(&docker, &seeded).await.unwrap();
    assert!(plan.notes.iter().any(|n| n.contains("host port 15432")), "{plan}");
    let up = previews.up(&docker, &seeded).await.unwrap();
    assert_eq!(up.seeded.as_deref(), Some(taken.key.as_str()));
    let db1 = up.deployment.instances("db")[0].id.clone();
    assert_eq!(psql(&docker, &db1, "SELECT string_agg(item, ',' ORDER BY id) FROM orders").await, "tea,cake");

    // Its data is its own: a row written in the preview is not in production, nor in another preview.
    psql(&docker, &db1, "INSERT INTO orders VALUES (3, 'scone')").await;
    assert_eq!(psql(&docker, &base_db, "SELECT count(*) FROM orders").await, "2");
    let plain = previews.preview(PreviewName::pull_request(2)).build().unwrap();
    let up2 = previews.up(&docker, &plain).await.unwrap();
    assert_eq!(up2.seeded, None);
    let db2 = up2.deployment.instances("db")[0].id.clone();
    assert!(psql(&docker, &db2, "SELECT count(*) FROM orders").await.contains("does not exist"));

    // A push to the seeded preview keeps its data (it is seeded once, when new).
    let again = previews.up(&docker, &seeded).await.unwrap();
    assert_eq!(again.seeded, None);
    let db1 = again.deployment.instances("db")[0].id.clone();
    assert_eq!(psql(&docker, &db1, "SELECT count(*) FROM orders").await, "3");

    previews.teardown(&docker).await.unwrap();
    base.down(&docker, harbormaster::Down::default().with_volumes()).await.unwrap();
    assert_eq!(leftovers(|e| e.starts_with(&stem)), Vec::<String>::new());
}

/// On an SSH fleet (host B, images shipped from the local engine): previews, each on its own host
/// name through the edge's published port on B, removed by name, nothing left on B.
#[tokio::test]
async fn previews_run_on_an_ssh_fleet() {
    use support::hosts::{self, B};
    workload::ensure_images();
    let stem = support::unique("pvh");
    let fleet =
        harbormaster::Fleet::builder().host(hosts::connect(B).await).images_from(docker().await).build().unwrap();
    let edge = Ingress::builder().image(workload::CADDY_IMAGE).http(Port::tcp(80).publish_ephemeral()).build().unwrap();
    let previews = Previews::builder(&base(&stem), edge, DOMAIN).edge_name(format!("{stem}-edge")).build().unwrap();
    let guards: Vec<hosts::FleetGuard> = ["edge".to_string(), "1".into(), "2".into()]
        .into_iter()
        .map(|n| hosts::FleetGuard { aliases: vec![B], name: format!("{stem}-{n}") })
        .collect();
    let mut edge_at = None;
    for i in 1..=2 {
        let p = previews.preview(preview_name(&stem, i)).env("web", "DATA", format!("host-data-{i}")).build().unwrap();
        let up = previews.up(&fleet, &p).await.unwrap();
        edge_at = up.edge.ingress_endpoint();
    }
    let edge_at = edge_at.expect("the edge publishes its HTTP port on B");
    assert_eq!(edge_at.host, hosts::address(B));
    for i in 1..=2 {
        let name = preview_name(&stem, i);
        let resp = reqwest::Client::new()
            .get(format!("{}/env/DATA", edge_at.http_url()))
            .header("Host", format!("{}.{DOMAIN}", name.name()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap().trim(), format!("host-data-{i}"));
    }
    assert!(previews.down(&fleet, preview_name(&stem, 1).name()).await.unwrap().is_some());
    assert_eq!(previews.list(&fleet).await.unwrap().len(), 1);
    previews.teardown(&fleet).await.unwrap();
    let left: Vec<String> = harbormaster::environments(&fleet)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.starts_with(&stem))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    drop(guards);
}

/// A CI job killed while it brings preview 1 up (`HM_PREVIEW_STEM`).
#[tokio::test]
#[ignore = "a child process of the preview tests"]
async fn up_child() {
    let stem = std::env::var("HM_PREVIEW_STEM").unwrap();
    let previews = previews(&stem, None);
    let preview = previews.preview(preview_name(&stem, 1)).build().unwrap();
    println!("hm-preview starting");
    previews.up(&docker().await, &preview).await.unwrap();
    println!("hm-preview up");
}

/// A job SIGKILLed in the middle of bringing a preview up (holding the previews' lock, or with the
/// preview half made): the next job takes the lock over at once (its holder is provably gone),
/// brings its own preview up, and a push of the half-made one completes it.
#[tokio::test]
async fn a_job_killed_mid_bring_up_leaves_nothing_the_next_job_cannot_finish() {
    let (docker, stem, _teardown, previews) = on_the_local_engine("pvk").await;
    for delay_ms in [300u64, 2_500] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(support::child_args(module_path!(), "up_child"))
            .env("HM_PREVIEW_STEM", &stem)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let two = previews.preview(preview_name(&stem, 2)).env("web", "DATA", "two").build().unwrap();
        let started = std::time::Instant::now();
        let up = previews.up(&docker, &two).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(120), "waited {:?}", started.elapsed());
        let one = previews.preview(preview_name(&stem, 1)).env("web", "DATA", "one").build().unwrap();
        let up1 = previews.up(&docker, &one).await.unwrap();
        let edge = up1.edge.endpoint("ingress", 443).unwrap();
        let hosts: Vec<String> = [1, 2].iter().flat_map(|i| previews.hosts(preview_name(&stem, *i).name())).collect();
        let http = client(&hosts, format!("127.0.0.1:{}", edge.port).parse().unwrap());
        for (name, data) in [(&up1.name, "one"), (&up.name, "two")] {
            let url = format!("https://{name}.{DOMAIN}:{}/env/DATA", edge.port);
            assert_eq!(get(&http, &url).await, (200, data.to_string()), "after a kill at {delay_ms} ms");
        }
        previews.teardown(&docker).await.unwrap();
        assert_eq!(leftovers(|e| e.starts_with(&stem)), Vec::<String>::new(), "after a kill at {delay_ms} ms");
    }
}
