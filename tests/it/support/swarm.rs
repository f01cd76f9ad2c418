//! The test swarm (tests/fixtures/swarm.sh: three dockerd in network namespaces, one manager),
//! images for it in the test registry, and a lock that lets a destructive test (a lost node) run
//! alone.

use std::time::Duration;

use harbormaster::SwarmBackend;

/// The manager's engine.
pub const MANAGER: &str = "unix:///run/hm-swarm/1/docker.sock";

/// The nodes' hostnames and engines.
pub const NODES: [(&str, &str); 3] = [
    ("hm-swarm-1", "unix:///run/hm-swarm/1/docker.sock"),
    ("hm-swarm-2", "unix:///run/hm-swarm/2/docker.sock"),
    ("hm-swarm-3", "unix:///run/hm-swarm/3/docker.sock"),
];

/// Tests share the swarm (read); a test that takes a node away holds it alone (write).
pub static EXCLUSIVE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Starts the swarm and the registry if needed (idempotent; panics loudly if it cannot).
pub fn ensure() {
    super::registry::ensure();
    super::fixture("swarm.sh", "the swarm tests need the test swarm");
}

/// The swarm, through its manager, with the registry's credentials and every node's engine.
pub async fn backend() -> SwarmBackend {
    ensure();
    let mut b = SwarmBackend::builder()
        .manager(MANAGER)
        .call_timeout(Duration::from_secs(30))
        .registry_auth(super::registry::HOSTS_ADDR, super::registry::auth());
    for (host, engine) in NODES {
        b = b.node_engine(host, engine);
    }
    b.connect().await.unwrap_or_else(|e| panic!("the test swarm: {e}"))
}

/// The workload with a marker, pushed to the test registry; its reference as the nodes pull it.
pub async fn image(tag: &str) -> String {
    let docker = super::registry::docker().await;
    let repo = "hm/swarm-workload";
    super::registry::push_variant(&docker, repo, tag, tag).await;
    format!("{}/{repo}:{tag}", super::registry::HOSTS_ADDR)
}

/// Runs the fixture script with arguments (`cut 3`, `heal 3`).
pub fn fixture_cmd(args: &[&str]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ok = std::process::Command::new("bash")
        .arg(root.join("tests/fixtures/swarm.sh"))
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "tests/fixtures/swarm.sh {args:?} failed");
}

/// The output of `docker` against the manager.
pub fn docker(args: &[&str]) -> String {
    let out =
        std::process::Command::new("docker").env("DOCKER_HOST", MANAGER).args(args).output().expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
