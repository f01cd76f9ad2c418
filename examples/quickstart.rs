//! Quickstart: a three-service stack (a database stand-in, an API that waits for it to be healthy,
//! a web front end that waits for the API), deployed on the local Docker engine with progress and
//! endpoints printed, then torn down.
//!
//! Run with `cargo run --example quickstart`. It needs only a Docker engine: its image is this
//! very program, packaged `FROM scratch` with the libraries it loads (see `demo/mod.rs`), so
//! nothing is pulled and nothing else is installed. With real images, see `examples/postgres.rs`.

mod demo;

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use harbormaster::{
    Condition, DockerBackend, Down, Environment, Error, EventKind, HealthCheck, Port, Secret, Service, Volume,
};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("quickstart", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let docker = match DockerBackend::connect().await {
        Ok(d) => d,
        Err(e @ Error::Connect { .. }) => {
            return Err(Box::new(demo::Missing(format!(
                "{e}\nThe quickstart needs a running Docker Engine (20.10 or newer): install it \
                 (https://docs.docker.com/engine/install/, or `apt-get install docker.io` on Debian) and start it."
            ))))
        }
        Err(e) => return Err(e.into()),
    };
    println!("engine: {} (API {})", harbormaster::Backend::describe(&docker), docker.api_version());
    let image = demo::build_context()?;

    let db = Service::builder("db")
        .build_from(image.clone())
        .env("ROLE", "db")
        .env("PORT", "5432")
        .secret("POSTGRES_PASSWORD", Secret::new("example-only"))
        .volume(Volume::named("dbdata").at("/var/lib/data"))
        .health(HealthCheck::tcp(5432).interval(Duration::from_millis(200)).retries(50))
        .build()?;
    let api = Service::builder("api")
        .build_from(image.clone())
        .env("ROLE", "api")
        .env("VERSION", "api-v1")
        .env("REQUIRE", "db:5432") // exits at start if the database is not reachable
        .depends_on("db", Condition::Healthy)
        .health(HealthCheck::http(8080, "/health").expect_status(200..300))
        .replicas(2)
        .build()?;
    let web = Service::builder("web")
        .build_from(image)
        .env("ROLE", "web")
        .port(Port::tcp(8080).publish_ephemeral())
        .depends_on("api", Condition::Healthy)
        .health(HealthCheck::http(8080, "/health"))
        .build()?;
    let env = Environment::builder("quickstart", "demo").service(db).service(api).service(web).build()?;

    println!("{}\n", env.plan(&docker).await?);
    let mut run = env.apply_streaming(&docker);
    while let Some(event) = run.next().await {
        match event.kind {
            EventKind::ImageBuilt { tag, .. } => println!("  built    {tag}"),
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
            env.down(&docker, Down::default().with_volumes()).await?;
            return Err(format!("deploy failed:\n{e}").into());
        }
    };

    let web_url = deployed.endpoint("web", 8080)?.http_url();
    println!("\nweb is at {web_url}");
    let body = reqwest::get(format!("{web_url}/call/api")).await?.text().await?;
    println!("web -> api answered: {body}");

    println!("\nstatus:");
    for s in env.status(&docker).await?.services {
        let health: Vec<String> = s.instances.iter().map(|i| i.health.to_string()).collect();
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
