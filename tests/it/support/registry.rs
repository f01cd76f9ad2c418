//! The test registry (tests/fixtures/registry.sh: Debian's docker-registry with htpasswd on
//! 127.0.0.1:5055, and on 10.77.0.1:5055 for the SSH test hosts), and images made for a test and
//! pushed there under unique names.
#![allow(dead_code)]

use harbormaster::{Build, DockerBackend, RegistryAuth, Secret};

/// The registry as the local engine reaches it.
pub const ADDR: &str = "127.0.0.1:5055";
/// The same registry (same storage) as the SSH test hosts reach it.
pub const HOSTS_ADDR: &str = "10.77.0.1:5055";
pub const USER: &str = "hmtest";
pub const PASSWORD: &str = "hmtest-registry-secret";

/// Starts the registry if it is not running (idempotent; panics loudly if it cannot).
pub fn ensure() {
    super::fixture("registry.sh", "these tests need the test registry");
}

pub fn auth() -> RegistryAuth {
    RegistryAuth::basic(USER, Secret::new(PASSWORD))
}

/// The local engine with the registry's credentials (and nothing from ~/.docker/config.json).
pub async fn docker() -> DockerBackend {
    ensure();
    DockerBackend::builder()
        .registry_auth(ADDR, auth())
        .docker_config_credentials(false)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("this test needs a reachable Docker engine: {e}"))
}

/// An image made for one test: the workload plus a file `/marker` holding `marker`, pushed as
/// `ADDR/<repo>:<tag>`, then removed from the engine (so that using it pulls). Its ID and digest.
pub async fn push_variant(docker: &DockerBackend, repo: &str, tag: &str, marker: &str) -> (String, String) {
    let base = super::workload::ensure_images();
    let dir = std::env::temp_dir().join(super::unique("hm-variant"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("marker"), marker).unwrap();
    // Unique contents: an image ID no earlier run (or other test) has.
    std::fs::write(dir.join("unique"), format!("{repo}:{tag}:{}", super::unique("v"))).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {base}\nCOPY marker unique /\n")).unwrap();
    let reference = format!("{ADDR}/{repo}:{tag}");
    let id = docker.build(&Build::context(&dir), &reference).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let digest = docker.push(&reference).await.unwrap();
    remove_local(docker, &reference).await;
    (id, digest)
}

/// Removes a reference (a tag; the image too when nothing else names it) from the engine.
pub async fn remove_local(docker: &DockerBackend, reference: &str) {
    let options = bollard::query_parameters::RemoveImageOptionsBuilder::new().force(true).build();
    match docker.client().remove_image(reference, Some(options), None).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(e) => panic!("cannot remove {reference}: {e}"),
    }
}
