//! The Fly Machines API test server (tests/fixtures/fly-api), started in the test's process: it
//! follows the published spec, and its machines are containers on the local engine, made from
//! images it pulls from the test registry with the registry's credentials.

use harbormaster::{FlyBackend, FlyBackendBuilder, Secret};

pub use fly_api_fake::{FakeFly, Options};

/// A server with the test registry's credentials and one app, `app`.
pub async fn fake(app: &str) -> FakeFly {
    super::registry::ensure();
    let opts = Options {
        registry_auth: vec![(
            super::registry::ADDR.into(),
            super::registry::USER.into(),
            super::registry::PASSWORD.into(),
        )],
        apps: vec![app.to_string()],
        token: Some(super::unique("fly-token-secret")),
        ..Options::default()
    };
    FakeFly::start(opts).await.unwrap_or_else(|e| panic!("the Fly API test server needs the Docker engine: {e}"))
}

/// A builder for a backend of `app` on `fake` (its URLs, token and the keeper's image set).
pub fn builder(fake: &FakeFly, app: &str) -> FlyBackendBuilder {
    FlyBackend::builder()
        .app(app)
        .token(Secret::new(fake.token()))
        .machines_url(fake.machines_url())
        .logs_url(fake.logs_url())
        .keeper_image(keeper_image())
}

/// A backend for `app` on `fake`.
pub async fn backend(fake: &FakeFly, app: &str) -> FlyBackend {
    builder(fake, app)
        .public_host("127.0.0.1")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to the Fly API test server: {e}"))
}

/// The record keeper's image (never started; the registry must have it).
pub fn keeper_image() -> String {
    format!("{}/hm/fly-workload:keeper", super::registry::ADDR)
}

/// The workload pushed to the test registry as `hm/fly-workload:<tag>` (the keeper's tag too).
pub async fn image(tag: &str) -> String {
    let docker = super::registry::docker().await;
    let repo = "hm/fly-workload";
    super::registry::push_variant(&docker, repo, tag, tag).await;
    static KEEPER: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    KEEPER
        .get_or_init(|| async {
            super::registry::push_variant(&docker, repo, "keeper", "keeper").await;
        })
        .await;
    format!("{}/{repo}:{tag}", super::registry::ADDR)
}
