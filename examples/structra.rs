//! Structra's deployment guide, deployed: its `docker-compose.prod.yml`
//! (`examples/compose/structra/`) read as an environment (PostgreSQL, Redis, a migration job, three
//! backend replicas, the frontend), a rolling update of the backend, a bad release rolled back on
//! its own, the guide's nightly `pg_dump` to S3 with a retention, and a restore into a fresh
//! environment that gets the rows back. Then everything is torn down.
//!
//! ```sh
//! bash tests/fixtures/images.sh   # postgres:15 and redis:7 on a machine with no registry
//! bash tests/fixtures/s3.sh       # S3-compatible storage (moto), or set HM_S3_ENDPOINT
//! cargo run --example structra
//! ```
//! The application image is this example's own binary (`examples/demo`), standing in for
//! Structra's backend and frontend.

mod demo;
mod guide;

use std::process::ExitCode;
use std::time::Duration;

use guide::{ensure, fact, step, Res};
use harbormaster::backup::{PostgresBackup, Retention};
use harbormaster::compose::Compose;
use harbormaster::{DockerBackend, Down, Environment, Error, HealthCheck, Port, Secret, Service, Volume};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("structra example", run().await)
}

fn compose(env_name: &str, version: &str) -> Res<Environment> {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose/structra/docker-compose.prod.yml");
    let imported = Compose::new([file])
        .project("structra")
        .environment(env_name)
        .var("APP_IMAGE", demo::IMAGE)
        .var("DB_PASSWORD", "structra-example-db-password")
        .var("REDIS_PASSWORD", "structra-example-redis-password")
        .var("BACKEND_VERSION", version)
        .load()?;
    for w in &imported.warnings {
        println!("    compose warning: {w}");
    }
    Ok(imported.environment)
}

async fn run() -> Res {
    let docker = guide::start(&["postgres:15", "redis:7"]).await?;
    let storage = guide::storage(&guide::name("structra-backups")).await?;
    let prod_name = guide::name("prod");
    let env = compose(&prod_name, "1.0.0")?;
    let fresh = restore_target(&guide::name("restore"))?;
    let result = body(&docker, &env, &fresh, &storage).await;
    step("tearing down");
    env.down(&docker, Down::default().with_volumes()).await?;
    fresh.down(&docker, Down::default().with_volumes()).await?;
    result
}

/// The environment a backup is restored into: a fresh PostgreSQL of its own.
fn restore_target(name: &str) -> Res<Environment> {
    let db = Service::builder("postgres")
        .image("postgres:15")
        .env("POSTGRES_USER", "structra")
        .env("POSTGRES_DB", "structra")
        .secret("POSTGRES_PASSWORD", Secret::new("structra-example-restore-password"))
        .volume(Volume::named("postgres_data").at("/var/lib/postgresql/data"))
        .port(Port::tcp(5432).publish_ephemeral())
        .health(
            HealthCheck::exec(["pg_isready", "-U", "structra", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(300))
                .retries(100),
        )
        .build()?;
    Ok(Environment::builder("structra", name).service(db).build()?)
}

async fn body(
    docker: &DockerBackend,
    env: &Environment,
    fresh: &Environment,
    storage: &harbormaster::backup::S3Storage,
) -> Res {
    step("plan of docker-compose.prod.yml");
    println!("{}", env.plan(docker).await?);
    step("apply: postgres and redis healthy, the migration, then 3 backends, then the frontend");
    let deployed = env.apply(docker).await?;
    let front = deployed.endpoint("frontend", 3000)?.http_url();
    guide::wait_for(&format!("{front}/call/api"), None, "1.0.0").await?;
    fact("backend_replicas", deployed.instances("backend").len());
    fact("frontend_sees", "1.0.0");

    step("the app writes rows");
    let psql = |sql: &'static str| ["psql", "-U", "structra", "-d", "structra", "-v", "ON_ERROR_STOP=1", "-Atc", sql];
    let out = env
        .exec(docker, "postgres", psql("INSERT INTO projects (name) VALUES ('bridge'), ('tower'), ('tunnel')"))
        .await?;
    ensure(out.exit_code == 0, format!("insert: {}", out.stderr))?;

    step("the guide's nightly backup: pg_dump to S3");
    let backup = PostgresBackup::new("postgres").database("structra").user("structra");
    let taken = backup.run(env, docker, storage).await?;
    println!("    {} ({} bytes)", taken.key, taken.size);
    let deleted = Retention::new().keep_last(7).apply(&backup, env, storage).await?;
    fact("backups_kept", backup.list(env, storage).await?.len());
    fact("backups_deleted", deleted.len());

    step("rolling update of the backend to 1.1.0 (start-first, one at a time)");
    compose(env.name(), "1.1.0")?.apply(docker).await?;
    guide::wait_for(&format!("{front}/call/api"), None, "1.1.0").await?;
    fact("frontend_sees_after_update", "1.1.0");

    step("a bad release (its health check fails): rolled back on its own");
    let bad = compose(env.name(), "1.2.0")?;
    let backend = bad.service("backend").ok_or("no backend")?.to_builder().env("HEALTH_STATUS", "500").build()?;
    let bad = bad.to_builder().replace(backend).build()?;
    match bad.apply(docker).await {
        Err(Error::Apply(f)) if matches!(f.error_of("backend"), Some(Error::RolledBack { .. })) => {
            fact("bad_release", "rolled_back");
        }
        other => return Err(format!("the bad release was not rolled back: {other:?}").into()),
    }
    guide::wait_for(&format!("{front}/call/api"), None, "1.1.0").await?;
    fact("frontend_sees_after_rollback", "1.1.0");

    step("restore the backup into a fresh environment");
    fresh.apply(docker).await?;
    backup.restore(fresh, docker, storage, &taken.key).await?;
    let out = fresh.exec(docker, "postgres", psql("SELECT string_agg(name, ',' ORDER BY id) FROM projects")).await?;
    ensure(out.stdout.trim() == "bridge,tower,tunnel", format!("restored rows: {:?} {}", out.stdout, out.stderr))?;
    fact("rows_restored", out.stdout.trim());
    for b in backup.list(env, storage).await? {
        storage.delete(&b.key).await?;
    }
    Ok(())
}
