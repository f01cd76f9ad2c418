//! A preview bot: what a CI job runs when a pull request is opened, pushed to or closed, and what a
//! nightly job runs to expire stale previews. Each pull request gets the shop (an API and its
//! database) under its own name, network and data, at `http://pr-<n>.preview.localhost` through
//! one shared ingress (the edge).
//!
//! ```sh
//! cargo run --example preview_bot                 # the whole story once, then everything removed
//! cargo run --example preview_bot -- up 123 v2    # "PR 123 opened or pushed" (its build: v2)
//! cargo run --example preview_bot -- down 123     # "PR 123 closed"
//! cargo run --example preview_bot -- expire       # nightly: past the TTL or idle, and over the limit
//! cargo run --example preview_bot -- list         # JSON, for a dashboard or a PR comment
//! cargo run --example preview_bot -- teardown     # every preview and the edge
//! ```
//!
//! Each command is a process of its own, as CI jobs are: what previews exist, when each was made
//! and last pushed to, is read from the engine. It needs a Docker engine and Debian's `caddy`
//! (the ingress image is made from it where no registry is reachable); the application image is
//! this example's own binary. In a real bot the override is the branch's image
//! (`.image("api", "registry.example.com/shop/api:sha-4f2a")`) rather than a variable.

mod demo;
mod guide;

use std::process::ExitCode;
use std::time::Duration;

use guide::{ensure, fact, step, Res};
use harbormaster::preview::{PreviewName, Previews};
use harbormaster::{Condition, DockerBackend, Environment, HealthCheck, Ingress, Port, Route, Service, Volume};

const DOMAIN: &str = "preview.localhost";

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("preview_bot example", run().await)
}

async fn run() -> Res {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let docker = guide::start(&[]).await?;
    guide::caddy(&docker).await?;
    let previews = previews()?;
    let pr = |i: usize| -> Res<u64> {
        let n = args.get(i).ok_or("give the pull request's number")?;
        Ok(n.parse().map_err(|_| format!("{n:?} is not a pull request number"))?)
    };
    match args.first().map(String::as_str) {
        None => story(&docker, &previews).await,
        Some("up") => up(&docker, &previews, pr(1)?, args.get(2).map_or("v1", String::as_str)).await,
        Some("down") => {
            match previews.down(&docker, PreviewName::pull_request(pr(1)?).name()).await? {
                Some(r) => println!("{r}"),
                None => println!("no such preview"),
            }
            Ok(())
        }
        Some("expire") => {
            for r in previews.expire(&docker).await? {
                println!("{r}");
            }
            Ok(())
        }
        Some("list") => {
            println!("{}", serde_json::to_string_pretty(&previews.list(&docker).await?)?);
            Ok(())
        }
        Some("teardown") => {
            for r in previews.teardown(&docker).await? {
                println!("{r}");
            }
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}: up N [VERSION], down N, expire, list, teardown").into()),
    }
}

/// The base every preview copies: the shop as staging runs it (it need not run itself).
fn base() -> Res<Environment> {
    let db = Service::builder("db")
        .image(demo::IMAGE)
        .env("ROLE", "db")
        .env("PORT", "5432")
        .volume(Volume::named("dbdata").at("/var/lib/data"))
        .health(HealthCheck::tcp(5432).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let api = Service::builder("api")
        .image(demo::IMAGE)
        .env("ROLE", "api")
        .env("VERSION", "v1")
        .env("REQUIRE", "db:5432")
        .port(Port::tcp(8080))
        .depends_on("db", Condition::Healthy)
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let ingress = Ingress::builder()
        .image(guide::CADDY_IMAGE)
        .route(Route::to("api", 8080).host("staging.shop.example.com"))
        .build()?;
    Ok(Environment::builder("shop", "staging").service(db).service(api).ingress(ingress).build()?)
}

/// The previews: behind one edge on an ephemeral port (ports 80 and 443 with `Tls::Automatic` in
/// production), a week at most, two days without a push, five at once.
fn previews() -> Res<Previews> {
    let edge = Ingress::builder().image(guide::CADDY_IMAGE).http(Port::tcp(80).publish_ephemeral()).build()?;
    Ok(Previews::builder(&base()?, edge, DOMAIN)
        .ttl(Duration::from_secs(7 * 86_400))
        .idle_expiry(Duration::from_secs(2 * 86_400))
        .max_live(5)
        .actor("preview-bot")
        .build()?)
}

/// "PR `n` opened or pushed": the plan, then the rollout; prints where it answers.
async fn up(docker: &DockerBackend, previews: &Previews, n: u64, version: &str) -> Res {
    let preview = previews.preview(PreviewName::pull_request(n)).env("api", "VERSION", version).build()?;
    println!("{}", previews.plan(docker, &preview).await?);
    let up = previews.up(docker, &preview).await?;
    let edge = up.edge.ingress_endpoint().ok_or("the edge publishes no port")?;
    for r in &up.removed {
        println!("{r}");
    }
    println!(
        "preview {} at {} (through {edge}: curl -H 'Host: {}.{DOMAIN}' {})",
        up.name,
        up.urls().join(", "),
        up.name,
        edge.http_url()
    );
    Ok(())
}

/// The whole story: two pull requests opened, one pushed to, one closed, the nightly expiry, and
/// everything removed.
async fn story(docker: &DockerBackend, previews: &Previews) -> Res {
    step("PR 101 and PR 102 opened");
    up(docker, previews, 101, "pr101-a").await?;
    up(docker, previews, 102, "pr102-a").await?;
    let edge = previews.sync(docker).await?.and_then(|e| e.ingress_endpoint()).ok_or("no edge")?;
    for (n, v) in [(101, "pr101-a"), (102, "pr102-a")] {
        guide::wait_for(&format!("{}/version", edge.http_url()), Some(&format!("pr-{n}.{DOMAIN}")), v).await?;
        fact(&format!("pr-{n}"), v);
    }
    step("PR 101 pushed to");
    up(docker, previews, 101, "pr101-b").await?;
    guide::wait_for(&format!("{}/version", edge.http_url()), Some(&format!("pr-101.{DOMAIN}")), "pr101-b").await?;
    fact("pr-101", "pr101-b");
    step("what is live (JSON)");
    let live = previews.list(docker).await?;
    println!("{}", serde_json::to_string_pretty(&live)?);
    ensure(live.len() == 2, format!("{} previews live, not 2", live.len()))?;
    step("PR 102 closed");
    previews.down(docker, "pr-102").await?;
    let (status, _) = guide::get_host(&format!("{}/version", edge.http_url()), Some(&format!("pr-102.{DOMAIN}"))).await;
    ensure(status != 200, "the closed preview still answers")?;
    fact("pr-102", "gone");
    step("the nightly expiry (nothing is a week old yet)");
    ensure(previews.expire(docker).await?.is_empty(), "a fresh preview expired")?;
    step("tearing down: every preview and the edge");
    previews.teardown(docker).await?;
    ensure(previews.list(docker).await?.is_empty(), "previews left")?;
    Ok(())
}
