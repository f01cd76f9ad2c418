//! The plan as JSON for a program (a CI bot posting it on a pull request), and the apply's
//! progress as a live display for a person at a terminal; then the status both ways.
//!
//! Run with `cargo run --example plan_json`. Like the quickstart it needs only a Docker engine:
//! its image is this very program (see `demo/mod.rs`). The live display uses `indicatif`, a
//! dependency of this example only: the library gives typed events, each with a `Display` line
//! and a JSON form, and leaves the rendering to the program.

mod demo;

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use harbormaster::{Condition, DockerBackend, Down, Environment, EventKind, HealthCheck, Port, Service};
use indicatif::{ProgressBar, ProgressStyle};

#[tokio::main]
async fn main() -> ExitCode {
    demo::serve_if_asked();
    demo::finish("plan_json", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let docker = DockerBackend::connect().await?;
    let image = demo::build_context()?;
    let api = Service::builder("api")
        .build_from(image.clone())
        .env("ROLE", "api")
        .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)))
        .replicas(2)
        .build()?;
    let web = Service::builder("web")
        .build_from(image)
        .env("ROLE", "web")
        .port(Port::tcp(8080).publish_ephemeral())
        .depends_on("api", Condition::Healthy)
        .health(HealthCheck::http(8080, "/health"))
        .build()?;
    let env = Environment::builder("planjson", "demo").service(api).service(web).build()?;

    // For a program: the plan as JSON (docs: the `harbormaster::json` module).
    let plan = env.plan(&docker).await?;
    println!("{}", serde_json::to_string_pretty(&plan)?);

    // For a person: one spinner line per step, the finished steps above it.
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")?);
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut run = env.apply_streaming(&docker);
    while let Some(event) = run.next().await {
        match &event.kind {
            EventKind::ProbeFailed { .. } | EventKind::ProbePassed { .. } | EventKind::ImagePulling { .. } => {
                bar.set_message(event.kind.to_string())
            }
            // Not a terminal (a CI log): plain lines.
            _ if bar.is_hidden() => println!("  {}", event.kind),
            _ => bar.println(format!("  {}", event.kind)),
        }
    }
    bar.finish_and_clear();
    let result = run.finish().await;
    if let Err(e) = result {
        env.down(&docker, Down::default().force()).await?;
        return Err(e.into());
    }

    let status = env.status(&docker).await?;
    println!("\n{status}");
    println!("{}", serde_json::to_string(&status)?);
    let report = env.down(&docker, Down::default().with_volumes().force()).await?;
    println!("\n{}", serde_json::to_string(&report)?);
    Ok(())
}
