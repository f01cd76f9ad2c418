//! CoachNTT's deployment guide, deployed in typed code: nginx as the reverse proxy in front of the
//! API (`/` and the `/ws` upgrade, the guide's configuration), PostgreSQL behind PgBouncer (the
//! guide's `:6432`, transaction pooling), the migration (`python -m scripts.migrate`) run once
//! before the API starts, the API's `/health`, Prometheus scraping the API's `/metrics`; then a
//! rolling release of the API while requests keep going through nginx, the API and PgBouncer to
//! PostgreSQL, the guide's rollback procedure (the previous revision back), and its daily
//! `pg_dump` backup, to S3 here.
//!
//! ```sh
//! bash tests/fixtures/images.sh && bash tests/fixtures/debian.sh && bash tests/fixtures/s3.sh   # no registry
//! cargo run --example coachntt
//! ```
//! nginx, PostgreSQL, PgBouncer and Prometheus are Debian's (`nginx:1.22`, `postgres:15`,
//! `edoburu/pgbouncer` and `prom/prometheus` made by the fixtures where no registry is reachable);
//! the application image (this example's own binary) stands in for the CoachNTT API. Grafana is
//! left out (Debian does not package it).

mod demo;
mod guide;

use std::process::ExitCode;
use std::time::Duration;

use guide::{ensure, fact, step, Res};
use harbormaster::backup::{PostgresBackup, Retention};
use harbormaster::{
    Amount, Condition, ContainerFile, DockerBackend, Down, Environment, HealthCheck, Port, RestartPolicy, Rollout,
    Secret, Service, Volume,
};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("coachntt example", run().await)
}

/// The guide's nginx site, proxying to the API by its service name. Two changes: nginx resolves a
/// `proxy_pass` host once, at start, so after a release it would still dial the replaced
/// container; with the engine's resolver and the upstream in a variable it follows the new one.
/// And an address it still holds for a replica that just stopped answers nothing (the address is
/// gone from the network): a short connect timeout sends the request to the next replica instead
/// of keeping the client waiting.
const NGINX_SITE: &str = r#"server {
    listen 80;
    server_name api.coachntt.ai;
    resolver 127.0.0.11 valid=1s ipv6=off;
    set $api http://api:8000;

    location / {
        proxy_pass $api;
        proxy_connect_timeout 1s;
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

/// The guide's `prometheus.yml`: the API's replicas, found by their service name, scraped every
/// second (the guide's 15 s, shortened so the example does not wait).
const PROMETHEUS_CONFIG: &str = r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: api
    dns_sd_configs:
      - names: [api]
        type: A
        port: 8000
        refresh_interval: 1s
"#;

const DB_PASSWORD: &str = "coachntt-example-db-password";

fn stack(name: &str, version: &str, site: &std::path::Path) -> Res<Environment> {
    let password = Secret::new(DB_PASSWORD);
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
    // The guide's connection pooler: the API's connections end here, PgBouncer keeps a few to
    // PostgreSQL. SCRAM end to end, as PostgreSQL 15 asks.
    let pgbouncer = Service::builder("pgbouncer")
        .image("edoburu/pgbouncer")
        .env("DB_HOST", "postgres")
        .env("DB_USER", "coachntt")
        .secret("DB_PASSWORD", Secret::new(DB_PASSWORD))
        .env("DB_NAME", "coachntt_prod")
        .env("AUTH_TYPE", "scram-sha-256")
        .env("LISTEN_PORT", "6432")
        .env("POOL_MODE", "transaction")
        .env("DEFAULT_POOL_SIZE", "10")
        .depends_on("postgres", Condition::Healthy)
        .health(
            HealthCheck::exec(["pg_isready", "-h", "127.0.0.1", "-p", "6432"])
                .interval(Duration::from_millis(300))
                .retries(100),
        )
        .build()?;
    let api = Service::builder("api")
        .image(demo::IMAGE)
        .env("ROLE", "api")
        .env("PORT", "8000")
        .env("VERSION", version)
        .env("NODE_ENV", "production")
        .env("CORS_ORIGINS", "https://app.coachntt.ai")
        .secret(
            "DATABASE_URL",
            Secret::new(format!("postgresql://coachntt:{DB_PASSWORD}@pgbouncer:6432/coachntt_prod")),
        )
        .secret("JWT_SECRET", Secret::new("coachntt-example-jwt"))
        .restart(RestartPolicy::Always)
        .port(Port::tcp(8000))
        .replicas(2)
        .rollout(Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0)))
        .depends_on("migrate", Condition::CompletedSuccessfully)
        .depends_on("pgbouncer", Condition::Healthy)
        .health(HealthCheck::http(8000, "/health").interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let prometheus = Service::builder("prometheus")
        .image("prom/prometheus")
        .file(ContainerFile::text("/etc/prometheus/prometheus.yml", PROMETHEUS_CONFIG))
        .volume(Volume::named("prometheus").at("/prometheus"))
        .port(Port::tcp(9090).publish_ephemeral())
        .health(HealthCheck::http(9090, "/-/ready").interval(Duration::from_millis(300)).retries(100))
        .build()?;
    let nginx = Service::builder("nginx")
        .image("nginx:1.22")
        .volume(Volume::bind(site).at("/etc/nginx/conf.d/default.conf").read_only())
        .port(Port::tcp(80).publish_ephemeral())
        .depends_on("api", Condition::Healthy)
        .health(HealthCheck::tcp(80).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    Ok(Environment::builder("coachntt", name)
        .services([postgres, pgbouncer, migrate, api, nginx, prometheus])
        .build()?)
}

async fn run() -> Res {
    let docker = guide::start(&["postgres:15", "nginx:1.22", "edoburu/pgbouncer", "prom/prometheus"]).await?;
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
    // nginx -> the API -> PgBouncer -> PostgreSQL.
    guide::wait_for(&format!("{proxy}/db"), Some("api.coachntt.ai"), "memories=1").await?;
    fact("api_through_pgbouncer", "memories=1");

    step("Prometheus scrapes the API");
    let prometheus = deployed.endpoint("prometheus", 9090)?.http_url();
    let series = scraped(&prometheus).await?;
    fact("prometheus_scraped_api_replicas", series);

    step("a rolling release: 1.0.0, while requests go through PgBouncer");
    let load = Load::start(format!("{proxy}/db"));
    stack(name, "1.0.0", site)?.apply(docker).await?;
    guide::wait_for(&format!("{proxy}/version"), Some("api.coachntt.ai"), "1.0.0").await?;
    let (answered, failed) = load.stop().await;
    ensure(answered > 0, "requests went through during the release")?;
    fact("db_requests_during_release", answered);
    fact("db_requests_failed_during_release", failed.len());
    if !failed.is_empty() {
        fact("db_failures", failed.join("; "));
    }

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

/// The number of the API's replicas Prometheus has scraped `demo_requests_total` from, read back
/// through its HTTP API (waiting up to 30 s for both).
async fn scraped(prometheus: &str) -> Res<usize> {
    let url = format!("{prometheus}/api/v1/query?query=demo_requests_total%7Bjob%3D%22api%22%7D");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = guide::get_host(&url, None).await;
        let series = body.matches("\"instance\"").count();
        if status == 200 && series >= 2 {
            return Ok(series);
        }
        if std::time::Instant::now() > until {
            return Err(Box::new(demo::Missing(format!("Prometheus did not scrape both replicas: {status} {body}"))));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Requests to one URL, one after another (as `api.coachntt.ai`), until stopped: how many were
/// answered with 200 and how many not.
struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Load {
    fn start(url: String) -> Load {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !*stopped.borrow_and_update() {
                let (status, body) = guide::get_host(&url, Some("api.coachntt.ai")).await;
                if status == 200 {
                    ok += 1;
                } else {
                    failed.push(format!("{status} {}", body.lines().next().unwrap_or_default()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        });
        Load { stop, task }
    }

    async fn stop(self) -> (usize, Vec<String>) {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}
