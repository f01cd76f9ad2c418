//! Quickstart: a three-service stack (a database stand-in, an API that waits for it to be healthy,
//! a web front end that waits for the API), deployed on the local Docker engine with progress,
//! endpoints printed, then torn down.
//!
//! Run with `cargo run --example quickstart`. It builds its own image (the test workload, a static
//! binary packaged `FROM scratch`), so no registry is needed.

#[path = "../tests/support/workload.rs"]
mod workload;

use std::time::Duration;

use futures::StreamExt;
use harbormaster::{
    Condition, DockerBackend, Down, Environment, EventKind, HealthCheck, Port, Secret, Service, Volume,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("building the demo image (static binary, FROM scratch)...");
    let image = workload::ensure_images();

    let db = Service::builder("db")
        .image(image)
        .env("PORT", "5432")
        .env("READY_DELAY_MS", "500")
        .secret("POSTGRES_PASSWORD", Secret::new("example-only"))
        .volume(Volume::named("pgdata").at("/var/lib/data"))
        .health(HealthCheck::tcp(5432).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let api = Service::builder("api")
        .image(image)
        .env("VERSION", "api-v1")
        .env("REQUIRE", "db:5432") // exits at start if the database is not reachable
        .env("READY_DELAY_MS", "300")
        .depends_on("db", Condition::Healthy)
        .health(HealthCheck::http(8080, "/health").expect_status(200..300))
        .replicas(2)
        .build()?;
    let web = Service::builder("web")
        .image(image)
        .env("VERSION", "web-v1")
        .port(Port::tcp(8080).publish_ephemeral())
        .depends_on("api", Condition::Healthy)
        .health(HealthCheck::http(8080, "/health"))
        .build()?;
    let env = Environment::builder("quickstart", "demo").service(db).service(api).service(web).build()?;

    let docker = DockerBackend::connect().await?;
    println!("engine: {} (API {})\n", harbormaster::Backend::describe(&docker), docker.api_version());
    println!("{}\n", env.plan(&docker).await?);

    let mut run = env.apply_streaming(&docker);
    while let Some(event) = run.next().await {
        match event.kind {
            EventKind::InstanceStarted { service, instance } => println!("  started  {service:<4} {instance}"),
            EventKind::InstanceHealthy { service, after, .. } => println!("  healthy  {service:<4} after {after:.2?}"),
            EventKind::ServiceReady { service } => println!("  ready    {service}"),
            EventKind::ServiceFailed { service, error } => println!("  FAILED   {service}: {error}"),
            EventKind::Applied { took } => println!("  applied in {took:.2?}"),
            _ => {}
        }
    }
    let deployed = match run.finish().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("deploy failed:\n{e}");
            env.down(&docker, Down::default().with_volumes()).await?;
            return Err(e.into());
        }
    };

    let web_url = deployed.endpoint("web", 8080)?.http_url();
    println!("\nweb is at {web_url}");
    let body = reqwest::get(format!("{web_url}/call/api/8080/version")).await?.text().await?;
    println!("web -> api answered: {body}");

    println!("\nstatus:");
    for s in env.status(&docker).await?.services {
        let health: Vec<String> = s.instances.iter().map(|i| format!("{:?}", i.health)).collect();
        println!("  {:<4} {}/{} running, health {}", s.name, s.running, s.desired, health.join(", "));
    }

    let report = env.down(&docker, Down::default().with_volumes()).await?;
    println!(
        "\ntorn down: {} containers, network removed: {}, volumes removed: {:?}",
        report.removed_instances.len(),
        report.removed_network,
        report.removed_volumes
    );
    Ok(())
}
