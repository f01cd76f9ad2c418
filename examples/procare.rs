//! ProCare's deployment guide, deployed: staging and production as two environments of one typed
//! description, each with PostgreSQL, Redis, the message broker, the API gateway (`/health`), two
//! agent workers and the doctor and caregiver dashboards, behind an ingress that routes by domain
//! (`api.`, `doctor.`, `caregiver.procare.health`, and their `staging.` names), as Coolify's proxy
//! does. A release goes to staging first, then to production; production rolls back; production's
//! database is backed up with the guide's retention (7 daily). Then both are torn down.
//!
//! ```sh
//! bash tests/fixtures/images.sh && bash tests/fixtures/debian.sh && bash tests/fixtures/s3.sh   # no registry
//! cargo run --example procare
//! ```
//! RabbitMQ is real: `rabbitmq:3-management` (on a machine with no registry, Debian's RabbitMQ 3.10
//! on a Debian base, `bash tests/fixtures/debian.sh`); the gateway sends a question to an agent's
//! queue and the agent's answer comes back through the broker. Caddy is Debian's; the application
//! image (this example's own binary) stands in for ProCare's API, agents and dashboards.

mod demo;
mod guide;

use std::process::ExitCode;
use std::time::Duration;

use guide::{fact, step, Res};
use harbormaster::backup::{PostgresBackup, Retention};
use harbormaster::{
    Condition, ContainerOptions, DockerBackend, Down, Environment, HealthCheck, Ingress, Port, Route, Secret, Service,
    Volume,
};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("procare example", run().await)
}

/// One environment of ProCare: `stage` is `staging` or `production`; `domain` its base domain.
fn procare(name: &str, stage: &str, domain: &str, version: &str) -> Res<Environment> {
    let db_password = Secret::new(format!("procare-{stage}-db-password"));
    let broker_password = format!("procare-{stage}-rabbitmq-password");
    let app = |name: &str, role: &str| {
        Service::builder(name)
            .image(demo::IMAGE)
            .env("ROLE", role)
            .env("NODE_ENV", stage)
            .env("VERSION", version)
            .env("DATABASE_URL", format!("postgresql://postgres@postgres:5432/procare_{stage}"))
            .env("REDIS_URL", "redis://redis:6379/0")
            .secret("RABBITMQ_URL", Secret::new(format!("amqp://procare:{broker_password}@rabbitmq:5672")))
            .secret("JWT_SECRET", Secret::new(format!("procare-{stage}-jwt")))
    };
    let http = |port: u16| HealthCheck::http(port, "/health").interval(Duration::from_millis(200)).retries(50);
    let postgres = Service::builder("postgres")
        .image("postgres:15")
        .env("POSTGRES_DB", format!("procare_{stage}"))
        .secret("POSTGRES_PASSWORD", db_password)
        .volume(Volume::named("pgdata").at("/var/lib/postgresql/data"))
        .health(
            HealthCheck::exec(["pg_isready", "-U", "postgres", "-h", "127.0.0.1"])
                .interval(Duration::from_millis(300))
                .retries(100),
        )
        .build()?;
    let redis = Service::builder("redis")
        .image("redis:7")
        .volume(Volume::named("redis").at("/data"))
        .health(HealthCheck::tcp(6379).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    // The guide's broker: its user and password, its data on a volume. The node's data directory
    // is named after the host name, so the container gets a fixed one (the data survives a
    // replacement). Healthy once the broker accepts AMQP connections, not only once the node runs.
    let rabbitmq = Service::builder("rabbitmq")
        .image("rabbitmq:3-management")
        .env("RABBITMQ_DEFAULT_USER", "procare")
        .secret("RABBITMQ_DEFAULT_PASS", Secret::new(broker_password.clone()))
        .container(ContainerOptions::new().hostname("rabbitmq"))
        .volume(Volume::named("rabbitmq").at("/var/lib/rabbitmq"))
        .health(
            // The check boots an Erlang VM each time: seconds on a busy machine.
            HealthCheck::exec(["rabbitmq-diagnostics", "-q", "check_port_connectivity"])
                .interval(Duration::from_secs(2))
                .timeout(Duration::from_secs(15))
                .retries(60),
        )
        .build()?;
    let api = app("api", "api")
        .env("PORT", "8080")
        .env("REQUIRE", "postgres:5432,redis:6379,rabbitmq:5672")
        .port(Port::tcp(8080))
        .depends_on("postgres", Condition::Healthy)
        .depends_on("redis", Condition::Healthy)
        .depends_on("rabbitmq", Condition::Healthy)
        .health(http(8080))
        .replicas(2)
        .build()?;
    // The agents answer the questions of their queues (one queue per agent).
    let agents = app("agents", "worker")
        .env("AGENTS", "triage,scheduling,medication")
        .depends_on("rabbitmq", Condition::Healthy)
        .depends_on("api", Condition::Healthy)
        .replicas(2)
        .build()?;
    let dashboard = |name: &str| {
        app(name, "web")
            .env("PORT", "3000")
            .env("API_URL", "http://api:8080")
            .port(Port::tcp(3000))
            .depends_on("api", Condition::Healthy)
            .health(http(3000))
            .build()
    };
    let ingress = Ingress::builder()
        .image(guide::CADDY_IMAGE)
        .http(Port::tcp(80).publish_ephemeral())
        .route(Route::to("api", 8080).host(format!("api.{domain}")))
        .route(Route::to("doctor", 3000).host(format!("doctor.{domain}")))
        .route(Route::to("caregiver", 3000).host(format!("caregiver.{domain}")))
        .build()?;
    Ok(Environment::builder("procare", name)
        .services([postgres, redis, rabbitmq, api, agents, dashboard("doctor")?, dashboard("caregiver")?])
        .ingress(ingress)
        .build()?)
}

async fn run() -> Res {
    let docker = guide::start(&["postgres:15", "redis:7", "rabbitmq:3-management"]).await?;
    guide::caddy(&docker).await?;
    let storage = guide::storage(&guide::name("procare-backups")).await?;
    let (staging_name, production_name) = (guide::name("staging"), guide::name("production"));
    let result = body(&docker, &staging_name, &production_name, &storage).await;
    step("tearing down staging and production");
    for name in [&staging_name, &production_name] {
        procare(name, "staging", "x", "0")?.down(&docker, Down::default().with_volumes()).await?;
    }
    result
}

async fn body(
    docker: &DockerBackend,
    staging_name: &str,
    production_name: &str,
    storage: &harbormaster::backup::S3Storage,
) -> Res {
    let staging = |v: &str| procare(staging_name, "staging", "staging.procare.health", v);
    let production = |v: &str| procare(production_name, "production", "procare.health", v);

    step("infrastructure, the API gateway, agents and dashboards: production 1.4.0, staging 1.4.0");
    let prod = production("1.4.0")?.apply(docker).await?;
    let stag = staging("1.4.0")?.apply(docker).await?;
    let prod_edge = prod.ingress_endpoint().ok_or("no production ingress")?.http_url();
    let stag_edge = stag.ingress_endpoint().ok_or("no staging ingress")?.http_url();
    guide::wait_for(&format!("{prod_edge}/health"), Some("api.procare.health"), "ok").await?;
    guide::wait_for(&format!("{prod_edge}/call/api"), Some("doctor.procare.health"), "1.4.0").await?;
    guide::wait_for(&format!("{stag_edge}/call/api"), Some("caregiver.staging.procare.health"), "1.4.0").await?;
    fact("production_doctor_sees", "1.4.0");
    // A question through the gateway, the broker and an agent, and the answer back.
    let asked = "triage agent 1.4.0 answered: chest-pain";
    guide::wait_for(&format!("{prod_edge}/ask/triage?q=chest-pain"), Some("api.procare.health"), asked).await?;
    let asked = "scheduling agent 1.4.0 answered: monday";
    guide::wait_for(&format!("{stag_edge}/ask/scheduling?q=monday"), Some("api.staging.procare.health"), asked).await?;
    fact("production_agent_answers", "triage/1.4.0");

    step("a release goes to staging first");
    staging("1.5.0")?.apply(docker).await?;
    guide::wait_for(&format!("{stag_edge}/version"), Some("api.staging.procare.health"), "1.5.0").await?;
    guide::wait_for(&format!("{prod_edge}/version"), Some("api.procare.health"), "1.4.0").await?;
    fact("staging_then_production", "1.5.0/1.4.0");

    step("then to production, under its domains");
    production("1.5.0")?.apply(docker).await?;
    guide::wait_for(&format!("{prod_edge}/call/api"), Some("caregiver.procare.health"), "1.5.0").await?;
    let asked = "medication agent 1.5.0 answered: dose";
    guide::wait_for(&format!("{prod_edge}/ask/medication?q=dose"), Some("api.procare.health"), asked).await?;
    fact("production_agent_answers_after_release", "medication/1.5.0");

    step("production rolls back to the version before");
    production("1.5.0")?.rollback(docker, "api").await?;
    guide::wait_for(&format!("{prod_edge}/version"), Some("api.procare.health"), "1.4.0").await?;
    fact("production_after_rollback", "1.4.0");
    // The rollback concerns the API: the broker and the agents keep serving through it.
    let asked = "triage agent 1.5.0 answered: fever";
    guide::wait_for(&format!("{prod_edge}/ask/triage?q=fever"), Some("api.procare.health"), asked).await?;
    fact("agents_after_rollback", "triage/1.5.0");

    step("production's database backup, retention 7 daily");
    let env = production("1.5.0")?;
    let backup = PostgresBackup::new("postgres").database("procare_production");
    backup.run(&env, docker, storage).await?;
    let deleted = Retention::new().keep_last(7).apply(&backup, &env, storage).await?;
    fact("backups_deleted", deleted.len());
    for b in backup.list(&env, storage).await? {
        storage.delete(&b.key).await?;
    }
    Ok(())
}
