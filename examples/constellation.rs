//! Constellation's deployment guide, deployed: the backend repository's compose file
//! (constellation-db, constellation-server, constellation-ollama) and the frontend repository's
//! (the web app) merged as `docker compose -f backend -f frontend` would, the guide's
//! `curl … | grep -q '200'` health check probed from outside, then a frontend-only release (the
//! plan touches nothing of the backend: the repositories deploy independently), a backup of the
//! database, and teardown.
//!
//! ```sh
//! bash tests/fixtures/images.sh && bash tests/fixtures/s3.sh   # on a machine with no registry
//! cargo run --example constellation
//! ```
//! The application image (this example's own binary) stands in for the Spring Boot server, the
//! Angular web app and Ollama (no Debian package provides it).

mod demo;
mod guide;

use std::process::ExitCode;
use std::time::Duration;

use guide::{ensure, fact, step, Res};
use harbormaster::backup::PostgresBackup;
use harbormaster::compose::Compose;
use harbormaster::{Action, DockerBackend, Down, Environment, HealthCheck};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("constellation example", run().await)
}

fn stack(env_name: &str, web_version: &str) -> Res<Environment> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose/constellation");
    let imported = Compose::new([dir.join("backend/docker-compose.yml"), dir.join("frontend/docker-compose.yml")])
        .project("constellation")
        .environment(env_name)
        .var("APP_IMAGE", demo::IMAGE)
        .var("POSTGRES_PASSWORD", "constellation-example-password")
        .var("AUTH_JWT_SECRET", "constellation-example-jwt-secret")
        .var("WEB_VERSION", web_version)
        .load()?;
    if web_version == "1.0.0" {
        for w in &imported.warnings {
            println!("    compose warning: {w}");
        }
    }
    // The frontend's `./health-check.sh` lives in the guide's own image, not in the stand-in:
    // changed in code to the HTTP check it performs.
    let env = imported.environment;
    let web = env.service("constellation-web").ok_or("no web service")?;
    let web = web
        .to_builder()
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(300)).retries(50))
        .build()?;
    Ok(env.to_builder().replace(web).build()?)
}

async fn run() -> Res {
    let docker = guide::start(&["postgres:15"]).await?;
    let storage = guide::storage(&guide::name("constellation-backups")).await?;
    let env = stack(&guide::name("production"), "1.0.0")?;
    let result = body(&docker, &env, &storage).await;
    step("tearing down");
    env.down(&docker, Down::default().with_volumes()).await?;
    result
}

async fn body(docker: &DockerBackend, env: &Environment, storage: &harbormaster::backup::S3Storage) -> Res {
    step("plan of backend/docker-compose.yml + frontend/docker-compose.yml");
    println!("{}", env.plan(docker).await?);
    step("apply: the database healthy and Ollama started, then the server, then the web app");
    let deployed = env.apply(docker).await?;
    let server = deployed.endpoint("constellation-server", 8081)?.http_url();
    let (status, _) = guide::get(&format!("{server}/api/health")).await;
    ensure(status == 200, format!("the server's /api/health answered {status}"))?;
    fact("server_health", status);
    let web = deployed.endpoint("constellation-web", 8080)?.http_url();
    guide::wait_for(&format!("{web}/call/api"), None, "1.0.0").await?;
    fact("web_reaches_server", true);

    step("a frontend release from its own pipeline: only the web app changes");
    let next = stack(env.name(), "1.1.0")?;
    let plan = next.plan(docker).await?;
    println!("{plan}");
    let changed: Vec<&str> =
        plan.services.iter().filter(|s| !matches!(s.action, Action::Unchanged)).map(|s| s.service.as_str()).collect();
    ensure(changed == ["constellation-web"], format!("the frontend release changes {changed:?}"))?;
    fact("frontend_release_changes", changed.join(","));
    let deployed = next.apply(docker).await?;
    let web = deployed.endpoint("constellation-web", 8080)?.http_url();
    guide::wait_for(&format!("{web}/version"), None, "1.1.0").await?;

    step("the guide's regular PostgreSQL backup");
    let backup = PostgresBackup::new("constellation-db").database("constellation").user("constellation_user");
    let taken = backup.run(env, docker, storage).await?;
    fact("backup_bytes", taken.size);
    storage.delete(&taken.key).await?;
    Ok(())
}
