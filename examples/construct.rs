//! Construct's deployment guide, deployed over SSH to servers with roles, as its five-server
//! architecture lays out: the gateway (Caddy routing every API path), the application server (auth,
//! user and notification services), the database server (PostgreSQL and the Redis primary), the
//! message server (the Kafka-compatible broker, the Redis replica, the messaging service and the
//! delivery worker) and the media server (the media service and Prometheus, which scrapes every
//! service's `/metrics` through the gateway). The database migration runs as a job before the
//! services start; one service is rolled to a new version; the database is backed up to S3. Then
//! everything is torn down on every server.
//!
//! ```sh
//! # five servers reachable over SSH (aliases from ~/.ssh/config), each with a Docker engine:
//! HM_CONSTRUCT_HOSTS="gateway=gw,app=app1,db=db1,message=msg1,media=media1" \
//! HM_CONSTRUCT_GATEWAY=203.0.113.10 cargo run --example construct
//! ```
//! Without `HM_CONSTRUCT_HOSTS` it uses the test hosts `bash tests/fixtures/hosts.sh up` makes on
//! this machine (gateway on hm-host-a, app and media on hm-host-b, db on hm-host-c, message on
//! hm-host-d). Images go to each server from the local engine (no registry needed):
//! `bash tests/fixtures/images.sh`, `bash tests/fixtures/debian.sh` and `bash tests/fixtures/s3.sh`
//! first on a machine with none. PostgreSQL, Redis, Caddy and Prometheus are Debian's; the
//! application image (this example's own binary) stands in for Construct's Rust services and for
//! Redpanda and Grafana, which no Debian package provides.

mod demo;
mod guide;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use guide::{ensure, fact, step, Res};
use harbormaster::backup::PostgresBackup;
use harbormaster::{
    Condition, ContainerFile, DockerBackend, Down, Environment, Fleet, HealthCheck, Ingress, Port, Route, Secret,
    Service, ServiceRef, SshHost, Volume,
};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("construct example", run().await)
}

const REDIS_PASSWORD: &str = "construct-example-redis-password";

/// The route prefixes of the five services behind the gateway.
const PREFIXES: [&str; 5] = ["auth", "users", "notifications", "messages", "media"];

/// The gateway's address as the servers reach it.
fn gateway_address() -> String {
    std::env::var("HM_CONSTRUCT_GATEWAY").unwrap_or_else(|_| "10.77.0.11".into())
}

/// Prometheus's configuration: each service's `/metrics` through the gateway (as the guide puts
/// it, metrics at `/metrics` on the gateway), one job per service, every second (the guide's
/// 15 s, shortened so the example does not wait).
fn prometheus_config(gateway_port: u16) -> String {
    let gateway = gateway_address();
    let mut out = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
    for prefix in PREFIXES {
        out.push_str(&format!(
            "  - job_name: {prefix}\n    metrics_path: /{prefix}/metrics\n    static_configs:\n      - targets: [\"{gateway}:{gateway_port}\"]\n"
        ));
    }
    out
}

/// Roles and the SSH aliases of their servers.
fn roles() -> BTreeMap<String, String> {
    let spec = std::env::var("HM_CONSTRUCT_HOSTS")
        .unwrap_or_else(|_| "gateway=hm-host-a,app=hm-host-b,db=hm-host-c,message=hm-host-d,media=hm-host-b".into());
    spec.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn construct(name: &str, auth_version: &str, gateway_port: u16) -> Res<Environment> {
    let roles = roles();
    let db_password = Secret::new("construct-example-db-password");
    // A service of the application image, published on an engine-chosen port of its server (the
    // gateway and the other servers dial it there).
    let svc = |name: &str, role: &str, port: u16| {
        Service::builder(name)
            .image(demo::IMAGE)
            .role(role)
            .env("ROLE", "api")
            .env("PORT", port.to_string())
            .env("VERSION", "1.0.0")
            .env_ref("DATABASE_ADDR", ServiceRef::to("postgres", 5432))
            .env_ref("REDIS_ADDR", ServiceRef::to("redis", 6379))
            .secret("JWT_SECRET", Secret::new("construct-example-jwt"))
            .port(Port::tcp(port).publish_ephemeral())
            .depends_on("migrate", Condition::CompletedSuccessfully)
            .health(HealthCheck::http(port, "/health").interval(Duration::from_millis(300)).retries(60))
    };
    let postgres = Service::builder("postgres")
        .image("postgres:15")
        .role("db")
        .env("POSTGRES_USER", "construct")
        .env("POSTGRES_DB", "construct")
        .secret("POSTGRES_PASSWORD", db_password.clone())
        .volume(Volume::named("pgdata").at("/var/lib/postgresql/data"))
        // Referred to from other servers: a fixed port there.
        .port(Port::tcp(5432).publish(gateway_port + 1))
        .health(
            HealthCheck::exec(["pg_isready", "-U", "construct", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(300))
                .retries(100),
        )
        .build()?;
    let redis = Service::builder("redis")
        .image("redis:7")
        .role("db")
        .command(["redis-server", "--requirepass", REDIS_PASSWORD])
        .volume(Volume::named("redis").at("/data"))
        .port(Port::tcp(6379).publish(gateway_port + 2))
        .health(HealthCheck::tcp(6379).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    // `sqlx migrate run`, once per version, on the database server.
    let migrate = Service::job("migrate")
        .image("postgres:15")
        .role("db")
        .entrypoint(["psql"])
        .command([
            "-h",
            "postgres",
            "-U",
            "construct",
            "-d",
            "construct",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE IF NOT EXISTS users (id bigserial PRIMARY KEY, handle text UNIQUE NOT NULL)",
        ])
        .secret("PGPASSWORD", db_password)
        .depends_on("postgres", Condition::Healthy)
        .build()?;
    let redis_replica = Service::builder("redis-replica")
        .image("redis:7")
        .role("message")
        .entrypoint(["sh", "-c"])
        .command([format!(
            "exec redis-server --replicaof $PRIMARY --masterauth {REDIS_PASSWORD} --requirepass {REDIS_PASSWORD}"
        )])
        .env_ref("PRIMARY", ServiceRef::to("redis", 6379).format("{host} {port}"))
        .depends_on("redis", Condition::Healthy)
        .health(HealthCheck::tcp(6379).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let redpanda = Service::builder("redpanda")
        .image(demo::IMAGE)
        .role("message")
        .env("ROLE", "db")
        .env("PORT", "9092")
        .port(Port::tcp(9092).publish(gateway_port + 3))
        .health(HealthCheck::tcp(9092).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let delivery = Service::builder("delivery-worker")
        .image(demo::IMAGE)
        .role("message")
        .env("ROLE", "worker")
        .env_ref("KAFKA_BROKERS", ServiceRef::to("redpanda", 9092))
        .depends_on("redpanda", Condition::Healthy)
        .build()?;
    let prometheus = Service::builder("prometheus")
        .image("prom/prometheus")
        .role("media")
        .file(ContainerFile::text("/etc/prometheus/prometheus.yml", prometheus_config(gateway_port)))
        .volume(Volume::named("prometheus").at("/prometheus"))
        .port(Port::tcp(9090).publish_ephemeral())
        .health(HealthCheck::http(9090, "/-/ready").interval(Duration::from_millis(300)).retries(100))
        .build()?;
    let ingress = Ingress::builder()
        .image(guide::CADDY_IMAGE)
        .role("gateway")
        .http(Port::tcp(80).publish(gateway_port))
        .route(Route::to("auth-service", 8001).path_prefix("/auth"))
        .route(Route::to("user-service", 8002).path_prefix("/users"))
        .route(Route::to("notification-service", 8003).path_prefix("/notifications"))
        .route(Route::to("messaging-service", 8004).path_prefix("/messages"))
        .route(Route::to("media-service", 8005).path_prefix("/media"))
        .build()?;
    let mut env = Environment::builder("construct", name)
        .services([postgres, redis, migrate, redis_replica, redpanda, delivery, prometheus])
        .service(svc("auth-service", "app", 8001).env("VERSION", auth_version).build()?)
        .service(svc("user-service", "app", 8002).build()?)
        .service(svc("notification-service", "app", 8003).build()?)
        .service(svc("messaging-service", "message", 8004).depends_on("redpanda", Condition::Healthy).build()?)
        .service(svc("media-service", "media", 8005).build()?)
        .ingress(ingress);
    for (role, host) in &roles {
        env = env.hosts(role, [host.as_str()]);
    }
    Ok(env.build()?)
}

async fn run() -> Res {
    let docker = guide::start(&["postgres:15", "redis:7"]).await?;
    guide::caddy(&docker).await?;
    let storage = guide::storage(&guide::name("construct-backups")).await?;
    if std::env::var("HM_CONSTRUCT_HOSTS").is_err() {
        step("setting up the test servers (tests/fixtures/hosts.sh up)");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosts.sh");
        let ok = std::process::Command::new("bash").arg(script).arg("up").status().is_ok_and(|s| s.success());
        ensure(
            ok,
            "the test servers could not be set up (tests/fixtures/hosts.sh needs root); or set HM_CONSTRUCT_HOSTS",
        )?;
    }
    let mut aliases: Vec<String> = roles().into_values().collect();
    aliases.sort();
    aliases.dedup();
    step(&format!("connecting to {}", aliases.join(", ")));
    let mut fleet = Fleet::builder();
    for alias in &aliases {
        fleet = fleet.host(SshHost::builder(alias).connect().await?);
    }
    let fleet = fleet.images_from(docker.clone()).build()?;
    // The gateway's port; the next three carry PostgreSQL, Redis and the broker between servers.
    let port: u16 = std::env::var("HM_CONSTRUCT_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(20880);
    let name = guide::name("prod");
    let result = body(&docker, &fleet, &name, port, &storage).await;
    step("tearing down on every server");
    construct(&name, "1.0.0", port)?.down(&fleet, Down::default().with_volumes()).await?;
    result
}

async fn body(
    _docker: &DockerBackend,
    fleet: &Fleet,
    name: &str,
    port: u16,
    storage: &harbormaster::backup::S3Storage,
) -> Res {
    let env = construct(name, "1.0.0", port)?;
    step("plan over the five roles");
    println!("{}", env.plan(fleet).await?);
    step("apply: database server first, the migration, then the services, then the gateway");
    let deployed = env.apply(fleet).await?;
    for service in ["ingress", "postgres", "auth-service", "redis-replica", "media-service"] {
        let on: Vec<String> = deployed.instances(service).iter().filter_map(|i| i.host.clone()).collect();
        println!("    {service} on {}", on.join(", "));
    }
    let url = format!("http://{}:{port}", gateway_address());
    for prefix in PREFIXES {
        guide::wait_for(&format!("{url}/{prefix}/version"), None, "1.0.0").await?;
    }
    fact("gateway_routes", 5);

    step("Prometheus on the media server scrapes every service through the gateway");
    let prometheus = deployed.endpoint("prometheus", 9090)?.http_url();
    fact("prometheus_scraped_services", scraped(&prometheus).await?);

    step("the Redis replica on the message server follows the primary on the database server");
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = env
            .exec(
                fleet,
                "redis-replica",
                ["redis-cli", "-a", REDIS_PASSWORD, "--no-auth-warning", "INFO", "replication"],
            )
            .await?;
        if out.stdout.contains("master_link_status:up") {
            break;
        }
        ensure(std::time::Instant::now() < until, format!("replication is not up: {}", out.stdout))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    fact("redis_replication", "up");

    step("a new auth-service, rolled on the application server");
    construct(name, "1.1.0", port)?.apply(fleet).await?;
    guide::wait_for(&format!("{url}/auth/version"), None, "1.1.0").await?;
    guide::wait_for(&format!("{url}/users/version"), None, "1.0.0").await?;
    fact("auth_after_update", "1.1.0");

    step("a backup of the database server's PostgreSQL to S3");
    let backup = PostgresBackup::new("postgres").database("construct").user("construct");
    let taken = backup.run(&env, fleet, storage).await?;
    fact("backup_bytes", taken.size);
    storage.delete(&taken.key).await?;
    Ok(())
}

/// The jobs Prometheus has scraped `demo_requests_total` from, read back through its HTTP API
/// (waiting up to 30 s for all five).
async fn scraped(prometheus: &str) -> Res<usize> {
    let url = format!("{prometheus}/api/v1/query?query=demo_requests_total");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = guide::get_host(&url, None).await;
        let jobs = PREFIXES.iter().filter(|p| body.contains(&format!("\"job\":\"{p}\""))).count();
        if status == 200 && jobs == PREFIXES.len() {
            return Ok(jobs);
        }
        ensure(std::time::Instant::now() < until, format!("Prometheus scraped {jobs} of 5 services: {status} {body}"))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
