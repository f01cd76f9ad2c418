//! `testcontainers-runner IMAGE RUNS`: starts IMAGE (exposing 8080, waiting for the line the test
//! workload prints once it listens) once to warm up, then RUNS times, each time until the
//! published port accepts TCP, and prints each start-to-ready time in microseconds, one per line.
//!
//! `testcontainers-runner reuse-postgres IMAGE`: starts a PostgreSQL IMAGE with
//! `with_reuse(ReuseDirective::Always)` (feature `reusable-containers`; needs
//! `TESTCONTAINERS_REUSE_ENABLE=true`), waiting for "ready to accept connections", leaves it
//! running for the next process, and prints the start's time in microseconds (benches/reuse.rs).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt, ReuseDirective};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reuse-postgres") {
        let image = args.get(2).cloned().unwrap_or_else(|| "postgres:15".into());
        let (name, tag) = image.split_once(':').unwrap_or((&image, "latest"));
        let t = Instant::now();
        let c = GenericImage::new(name, tag)
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
            .with_env_var("POSTGRES_PASSWORD", "bench")
            .with_label("io.harbormaster.bench", "testcontainers-reuse")
            .with_reuse(ReuseDirective::Always)
            .start()
            .await
            .expect("the container starts");
        let port = c.get_host_port_ipv4(5432).await.expect("a published port");
        while TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("{}", t.elapsed().as_micros());
        std::mem::forget(c); // left running: the next process takes it
        return;
    }
    let image = args.get(1).cloned().unwrap_or_else(|| "harbormaster-test/workload:latest".into());
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(1);
    let (name, tag) = image.split_once(':').unwrap_or((&image, "latest"));
    for i in 0..=runs {
        let t = Instant::now();
        let c = GenericImage::new(name, tag)
            .with_exposed_port(8080.tcp())
            .with_wait_for(WaitFor::message_on_stdout("ready: listening"))
            .with_label("io.harbormaster.bench", "testcontainers")
            .start()
            .await
            .expect("the container starts");
        let port = c.get_host_port_ipv4(8080).await.expect("a published port");
        while TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = t.elapsed();
        c.rm().await.expect("removed");
        if i > 0 {
            println!("{}", took.as_micros());
        }
    }
}
