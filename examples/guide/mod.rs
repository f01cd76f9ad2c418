//! What the five guide examples share: the engine, the images they need, S3 storage for backups,
//! HTTP checks, names of their own, and a step log. Each example deploys its guide's stack as the
//! guide describes it, checks what a user of the guide would check, and tears everything down.
#![allow(dead_code)]

use std::time::Duration;

use harbormaster::backup::S3Storage;
use harbormaster::{DockerBackend, Secret};

use crate::demo::{self, Missing};

/// The result every example returns.
pub type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A step, printed.
pub fn step(text: &str) {
    println!("==> {text}");
}

/// A fact the example checked, printed (the tests read these lines).
pub fn fact(key: &str, value: impl std::fmt::Display) {
    println!("fact {key}={value}");
}

/// Fails the example with `why` unless `ok`.
pub fn ensure(ok: bool, why: impl Into<String>) -> Res {
    if ok {
        Ok(())
    } else {
        Err(Box::new(Missing(why.into())))
    }
}

/// The engine, the images the guides name (present in its store), and the application image
/// (this example's own binary, standing in for the guide's application code).
pub async fn start(images: &[&str]) -> Res<DockerBackend> {
    let docker = DockerBackend::connect()
        .await
        .map_err(|e| Missing(format!("{e}\nThis example needs a running Docker Engine (20.10 or newer).")))?;
    for image in images {
        let found = docker.client().inspect_image(image).await.is_ok();
        ensure(
            found,
            format!(
                "the engine has no {image}: pull it, or on a machine with no registry run `bash tests/fixtures/images.sh` and `bash tests/fixtures/debian.sh` (they package Debian's PostgreSQL, Redis, nginx, RabbitMQ, Prometheus and PgBouncer under those names)"
            ),
        )?;
    }
    step("packaging the application image (this example's own binary, FROM scratch)");
    let build = demo::build_context()?;
    docker.build(&build, demo::IMAGE).await?;
    Ok(docker)
}

/// A name of this run's own for environment `stem` (so a run never touches another's).
pub fn name(stem: &str) -> String {
    let salt =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{stem}-{:05x}", (salt ^ std::process::id()) & 0xfffff)
}

/// S3-compatible storage for backups: `HM_S3_ENDPOINT` (default moto's server as
/// `tests/fixtures/s3.sh` starts it), a bucket of this run's own.
pub async fn storage(bucket: &str) -> Res<S3Storage> {
    let endpoint = std::env::var("HM_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5056".into());
    let up = reqwest::Client::new().get(&endpoint).timeout(Duration::from_secs(3)).send().await.is_ok();
    ensure(up, format!("no S3-compatible storage answers at {endpoint}: run `bash tests/fixtures/s3.sh` (moto's server), or set HM_S3_ENDPOINT"))?;
    let key = std::env::var("HM_S3_ACCESS_KEY").unwrap_or_else(|_| "example".into());
    let secret = Secret::new(std::env::var("HM_S3_SECRET_KEY").unwrap_or_else(|_| "example-secret".into()));
    Ok(S3Storage::builder(endpoint, bucket).credentials(key, secret).create_bucket(true).build()?)
}

/// `GET url`: status and body (status 0 when nothing answers).
pub async fn get(url: &str) -> (u16, String) {
    get_host(url, None).await
}

/// `GET url` with a `Host` header (a virtual host behind a proxy).
pub async fn get_host(url: &str, host: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    let mut req = client.get(url);
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Polls `url` until it answers 200 with `body`, for up to 30 s.
pub async fn wait_for(url: &str, host: Option<&str>, body: &str) -> Res {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, got) = get_host(url, host).await;
        if status == 200 && got.trim() == body {
            return Ok(());
        }
        if std::time::Instant::now() > until {
            return Err(Box::new(Missing(format!("{url} answered {status} {got:?}, not {body:?}"))));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Caddy image the examples' ingresses run: Debian's `caddy` binary packaged `FROM scratch`.
pub const CADDY_IMAGE: &str = "harbormaster-examples/caddy:latest";

/// Builds [`CADDY_IMAGE`] from `/usr/bin/caddy` (Debian's `caddy` package).
pub async fn caddy(docker: &DockerBackend) -> Res {
    ensure(std::path::Path::new("/usr/bin/caddy").exists(), "this example's ingress is Caddy: apt-get install caddy")?;
    let dir = std::env::temp_dir().join(format!("harbormaster-examples-caddy-{}", std::process::id()));
    let build = harbormaster::ingress::caddy_build_context("/usr/bin/caddy", &dir)?;
    docker.build(&build, CADDY_IMAGE).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
