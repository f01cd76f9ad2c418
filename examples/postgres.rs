//! Real images as users name them: PostgreSQL 15 with a named volume and a password from the
//! environment, Redis 7, a migration job that reaches the database over the environment network,
//! and an API (the examples' demo image) that starts once the migration succeeded. It prints the
//! plan (with each image's digest), applies it with pull progress, shows the rows, tears down.
//!
//! `cargo run --example postgres` pulls `postgres:15` and `redis:7` from Docker Hub when the engine
//! lacks them. On a machine with no registry reachable, `bash tests/fixtures/images.sh` packages
//! Debian's PostgreSQL 15 and Redis 7 under those names first (see the README).

mod demo;

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use harbormaster::{
    Condition, DockerBackend, Down, Environment, Error, EventKind, HealthCheck, Secret, Service, Volume,
};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("postgres example", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let docker = DockerBackend::connect()
        .await
        .map_err(|e| demo::Missing(format!("{e}\nThis example needs a running Docker Engine (20.10 or newer).")))?;
    let password = Secret::new(std::env::var("DB_PASSWORD").unwrap_or_else(|_| "example-only-password".into()));
    let db = Service::builder("db")
        .image("postgres:15")
        .env("POSTGRES_USER", "shop")
        .env("POSTGRES_DB", "shop")
        .secret("POSTGRES_PASSWORD", password.clone())
        .volume(Volume::named("pgdata").at("/var/lib/postgresql/data"))
        .health(
            HealthCheck::exec(["pg_isready", "-U", "shop", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(300))
                .retries(100),
        )
        .build()?;
    let cache = Service::builder("cache")
        .image("redis:7")
        .health(HealthCheck::exec(["redis-cli", "ping"]).interval(Duration::from_millis(300)).retries(50))
        .build()?;
    let migrate = Service::job("migrate")
        .image("postgres:15")
        .entrypoint(["sh", "-c"])
        .command([r#"psql "postgresql://shop:$PGPASSWORD@db:5432/shop" -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text); INSERT INTO orders (item) VALUES ('tea');""#])
        .secret("PGPASSWORD", password)
        .depends_on("db", Condition::Healthy)
        .build()?;
    let api = Service::builder("api")
        .build_from(demo::build_context()?)
        .env("ROLE", "api")
        .env("VERSION", "api-v1")
        .env("REQUIRE", "db:5432,cache:6379")
        .depends_on("migrate", Condition::CompletedSuccessfully)
        .depends_on("cache", Condition::Healthy)
        .health(HealthCheck::http(8080, "/health"))
        .build()?;
    let env = Environment::builder("examples", "postgres")
        .service(db)
        .service(cache)
        .service(migrate)
        .service(api)
        .build()?;

    let plan = match env.plan(&docker).await {
        Ok(p) => p,
        Err(e @ Error::Registry { .. }) => {
            return Err(Box::new(demo::Missing(format!(
                "{e}\nOn a machine with no registry reachable, package Debian's PostgreSQL 15 and Redis 7 as \
                 postgres:15 and redis:7 first: `bash tests/fixtures/images.sh` (needs root and apt)."
            ))))
        }
        Err(e) => return Err(e.into()),
    };
    println!("{plan}\n");
    let mut run = env.apply_streaming(&docker);
    while let Some(event) = run.next().await {
        match event.kind {
            EventKind::ImagePulling { reference, progress, .. } => {
                println!("  pulling  {reference}: {} / {} bytes", progress.done, progress.total)
            }
            EventKind::ImagePulled { reference, digest, took, .. } => {
                println!("  pulled   {reference} ({}) in {took:.2?}", digest.unwrap_or_default())
            }
            EventKind::ServiceReady { service } => println!("  ready    {service}"),
            EventKind::JobExited { service, exit_code, .. } => println!("  exited   {service} ({exit_code})"),
            EventKind::ServiceFailed { service, error } => println!("  FAILED   {service}: {error}"),
            EventKind::Applied { took } => println!("  applied in {took:.2?}"),
            _ => {}
        }
    }
    if let Err(e) = run.finish().await {
        env.down(&docker, Down::default().with_volumes()).await?;
        return Err(format!("deploy failed:\n{e}").into());
    }
    let rows = env
        .exec(&docker, "db", ["psql", "-U", "shop", "-d", "shop", "-tA", "-c", "SELECT id, item FROM orders"])
        .await?;
    println!("\norders: {}", rows.stdout.trim());
    env.down(&docker, Down::default().with_volumes()).await?;
    println!("torn down");
    Ok(())
}
