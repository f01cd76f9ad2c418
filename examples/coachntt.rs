//! CoachNTT's deployment guide, deployed in typed code: nginx as the reverse proxy in front of the
//! API (`/` and the `/ws` upgrade, the guide's configuration), PostgreSQL, the migration
//! (`python -m scripts.migrate`) run once before the API starts, the API's `/health`; then a
//! release, the guide's rollback procedure (the previous revision back), and its daily `pg_dump`
//! backup, to S3 here.
//!
//! ```sh
//! bash tests/fixtures/images.sh && bash tests/fixtures/s3.sh   # on a machine with no registry
//! cargo run --example coachntt
//! ```
//! nginx is Debian's (the `nginx:1.22` fixture image); the application image (this example's own
//! binary) stands in for the CoachNTT API. PgBouncer and the monitoring stack are left out.

mod demo;
mod guide;

use std::process::ExitCode;
use std::time::Duration;

use guide::{ensure, fact, step, Res};
use harbormaster::backup::{PostgresBackup, Retention};
use harbormaster::{
    Condition, DockerBackend, Down, Environment, HealthCheck, Port, RestartPolicy, Secret, Service, Volume,
};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("coachntt example", run().await)
}

/// The guide's nginx site, proxying to the API by its service name. One change: nginx resolves a
/// `proxy_pass` host once, at start, so after a release it would still dial the replaced
/// container; with the engine's resolver and the upstream in a variable it follows the new one.
const NGINX_SITE: &str = r#"server {
    listen 80;
    server_name api.coachntt.ai;
    resolver 127.0.0.11 valid=1s ipv6=off;
    set $api http://api:8000;

    location / {
        proxy_pass $api;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }

    location /ws {
        proxy_pass $api;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
}
"#;

fn stack(name: &str, version: &str, site: &std::path::Path) -> Res<Environment> {
    let password = Secret::new("coachntt-example-db-password");
    let postgres = Service::builder("postgres")
        .image("postgres:15")
        .env("POSTGRES_USER", "coachntt")
        .env("POSTGRES_DB", "coachntt_prod")
        .secret("POSTGRES_PASSWORD", password.clone())
        .volume(Volume::named("pgdata").at("/var/lib/postgresql/data"))
        .health(
            HealthCheck::exec(["pg_isready", "-U", "coachntt", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(300))
                .retries(100),
        )
        .build()?;
    // `docker-compose run --rm api python -m scripts.migrate`: a job, run once per version.
    let migrate = Service::job("migrate")
        .image("postgres:15")
        .entrypoint(["psql"])
        .command([
            "-h",
            "postgres",
            "-U",
            "coachntt",
            "-d",
            "coachntt_prod",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE IF NOT EXISTS memories (id serial PRIMARY KEY, body text NOT NULL)",
        ])
        .secret("PGPASSWORD", password)
        .depends_on("postgres", Condition::Healthy)
        .build()?;
    let api = Service::builder("api")
        .image(demo::IMAGE)
        .env("ROLE", "api")
        .env("PORT", "8000")
        .env("VERSION", version)
        .env("NODE_ENV", "production")
        .env("CORS_ORIGINS", "https://app.coachntt.ai")
        .secret("JWT_SECRET", Secret::new("coachntt-example-jwt"))
        .restart(RestartPolicy::Always)
        .port(Port::tcp(8000))
        .depends_on("migrate", Condition::CompletedSuccessfully)
        .health(HealthCheck::http(8000, "/health").interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let nginx = Service::builder("nginx")
        .image("nginx:1.22")
        .volume(Volume::bind(site).at("/etc/nginx/conf.d/default.conf").read_only())
        .port(Port::tcp(80).publish_ephemeral())
        .depends_on("api", Condition::Healthy)
        .health(HealthCheck::tcp(80).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    Ok(Environment::builder("coachntt", name).services([postgres, migrate, api, nginx]).build()?)
}

async fn run() -> Res {
    let docker = guide::start(&["postgres:15", "nginx:1.22"]).await?;
    let storage = guide::storage(&guide::name("coachntt-backups")).await?;
    let dir = std::env::temp_dir().join(guide::name("coachntt-nginx"));
    std::fs::create_dir_all(&dir)?;
    let site = dir.join("default.conf");
    std::fs::write(&site, NGINX_SITE)?;
    let name = guide::name("production");
    let v1 = stack(&name, "0.9.0", &site)?;
    let result = body(&docker, &name, &site, &storage).await;
    step("tearing down");
    v1.down(&docker, Down::default().with_volumes()).await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn body(
    docker: &DockerBackend,
    name: &str,
    site: &std::path::Path,
    storage: &harbormaster::backup::S3Storage,
) -> Res {
    let v1 = stack(name, "0.9.0", site)?;
    step("Stage 2: postgres, the migration, the API, nginx in front");
    let deployed = v1.apply(docker).await?;
    let proxy = deployed.endpoint("nginx", 80)?.http_url();
    guide::wait_for(&format!("{proxy}/health"), Some("api.coachntt.ai"), "ok").await?;
    guide::wait_for(&format!("{proxy}/version"), Some("api.coachntt.ai"), "0.9.0").await?;
    fact("through_nginx", "0.9.0");
    let out = v1
        .exec(
            docker,
            "postgres",
            [
                "psql",
                "-U",
                "coachntt",
                "-d",
                "coachntt_prod",
                "-Atc",
                "INSERT INTO memories (body) VALUES ('first') RETURNING id",
            ],
        )
        .await?;
    ensure(out.exit_code == 0, format!("the migration made the table: {}", out.stderr))?;

    step("a release: 1.0.0");
    stack(name, "1.0.0", site)?.apply(docker).await?;
    guide::wait_for(&format!("{proxy}/version"), Some("api.coachntt.ai"), "1.0.0").await?;

    step("the guide's rollback procedure: the previous version back");
    v1.rollback(docker, "api").await?;
    guide::wait_for(&format!("{proxy}/version"), Some("api.coachntt.ai"), "0.9.0").await?;
    fact("after_rollback", "0.9.0");
    let history = v1.history(docker, "api").await?;
    fact("api_revisions", history.len());

    step("the guide's daily backup (pg_dump), kept 7 days");
    let backup = PostgresBackup::new("postgres").database("coachntt_prod").user("coachntt");
    let taken = backup.run(&v1, docker, storage).await?;
    Retention::new().max_age(Duration::from_secs(7 * 86_400)).apply(&backup, &v1, storage).await?;
    fact("backup_bytes", taken.size);
    storage.delete(&taken.key).await?;
    Ok(())
}
