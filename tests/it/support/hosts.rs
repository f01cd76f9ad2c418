//! The SSH test hosts (tests/fixtures/hosts.sh): four "servers" on this machine, each a network
//! namespace with its own address, its own dockerd and a real sshd, reached through the aliases
//! `hm-host-a` … `hm-host-d` of ~/.ssh/config. `hm-host-c` is reachable only through `hm-host-a`
//! (ProxyJump), and nothing answers at `hm-host-down`.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use harbormaster::{Down, Environment, Fleet, SshHost};

pub const A: &str = "hm-host-a";
pub const B: &str = "hm-host-b";
pub const C: &str = "hm-host-c";
pub const D: &str = "hm-host-d";
pub const DOWN: &str = "hm-host-down";

/// The address of each host, as its published ports are reached.
pub fn address(host: &str) -> &'static str {
    match host {
        A => "10.77.0.11",
        B => "10.77.0.12",
        C => "10.77.0.13",
        D => "10.77.0.14",
        _ => "10.77.0.15",
    }
}

/// Sets the hosts up once per test binary (idempotent); a test that needs them fails loudly without.
pub fn ensure() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hosts.sh");
        let out = std::process::Command::new("bash").arg(script).arg("up").output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "these tests need the SSH test hosts (root, iproute2, openssh-server); {script} up failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run {script}: {e}"),
        }
    });
}

/// A host port no other test of this binary uses (the hosts' published ports are fixed ones).
pub fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Host D's link to the other hosts, cut and restored by the outage tests (one at a time: they
/// hold [`outage`]'s guard). Packets are dropped, nothing is refused, as when a server vanishes.
pub struct Outage {
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
    cut: bool,
}

/// Serialises the tests that cut D off.
pub async fn outage() -> Outage {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    Outage { _one_at_a_time: LOCK.lock().await, cut: false }
}

impl Outage {
    fn link(state: &str) {
        let ok = std::process::Command::new("ip").args(["link", "set", "hm-d-h", state]).status();
        assert!(ok.is_ok_and(|s| s.success()), "ip link set hm-d-h {state} failed");
    }

    /// D drops off the network.
    pub fn cut(&mut self) {
        Self::link("down");
        self.cut = true;
    }

    /// D is back.
    pub fn restore(&mut self) {
        Self::link("up");
        self.cut = false;
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if self.cut {
            Self::link("up");
        }
    }
}

/// Host D with a short keep-alive (a lost connection is noticed within about 3 s).
pub async fn connect_d() -> SshHost {
    ensure();
    match SshHost::builder(D).keepalive(Duration::from_secs(1)).call_timeout(Duration::from_secs(5)).connect().await {
        Ok(h) => h,
        Err(e) => panic!("cannot connect to test host {D}: {e}"),
    }
}

/// A fleet of A (the primary) and D (short keep-alive), for the outage tests.
pub async fn fleet_a_d() -> Fleet {
    Fleet::builder().host(connect(A).await).host(connect_d().await).images_from(super::docker().await).build().unwrap()
}

pub async fn connect(alias: &str) -> SshHost {
    ensure();
    match SshHost::builder(alias).call_timeout(Duration::from_secs(20)).connect().await {
        Ok(h) => h,
        Err(e) => panic!("cannot connect to test host {alias}: {e}"),
    }
}

/// A fleet of `aliases` (the first is the primary) whose images come from the local engine.
pub async fn fleet(aliases: &[&str]) -> Fleet {
    let hosts = futures::future::join_all(aliases.iter().map(|a| connect(a))).await;
    let mut b = Fleet::builder();
    for h in hosts {
        b = b.host(h);
    }
    b.images_from(super::docker().await).build().expect("fleet")
}

/// Tears an environment down on every host of the fleet when dropped, even after a failed test.
pub struct FleetGuard {
    pub aliases: Vec<&'static str>,
    pub name: String,
}

impl Drop for FleetGuard {
    fn drop(&mut self) {
        let (aliases, name) = (self.aliases.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                // Each host on its own, so one unreachable host does not keep the others dirty.
                for a in aliases {
                    let Ok(h) = SshHost::builder(a).connect().await else { continue };
                    let Ok(f) = Fleet::builder().host(h).build() else { continue };
                    if let Ok(env) = Environment::named(super::PROJECT, &name) {
                        let _ = env.down(&f, Down::default().with_volumes()).await;
                    }
                }
            });
        })
        .join();
    }
}

/// The engine of test host E, reached on its socket (no SSH): only destructive tests use it.
pub const E_ENGINE: &str = "unix:///run/hm-hosts/e/docker.sock";

/// Host E's engine, with the workload image loaded from the local engine. One test at a time
/// uses it (they prune it): hold the returned guard.
pub async fn engine_e() -> (harbormaster::DockerBackend, tokio::sync::MutexGuard<'static, ()>) {
    use harbormaster::{ImageShipping, ImageStore};
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = ONE.lock().await;
    ensure();
    super::workload::ensure_images();
    let e = engine_e_backend().await;
    let local = super::docker().await;
    let id = local.image_id(super::workload::IMAGE).await.unwrap().expect("the workload image");
    if e.image_id(&id).await.unwrap().is_none() {
        e.load_image(local.export_image(&id)).await.unwrap();
    }
    let tag = std::process::Command::new("docker")
        .env("DOCKER_HOST", E_ENGINE)
        .args(["tag", &id, super::workload::IMAGE])
        .status()
        .unwrap();
    assert!(tag.success());
    (e, guard)
}

/// A backend on host E's engine. It runs in E's network namespace: probes reach containers through
/// ports published on E's address.
pub async fn engine_e_backend() -> harbormaster::DockerBackend {
    let address = "10.77.0.16";
    harbormaster::DockerBackend::builder()
        .host(E_ENGINE)
        .probe_route(harbormaster::ProbeRoute::PublishedPort)
        .published_host(address)
        .ephemeral_bind(address.parse().ok())
        .connect()
        .await
        .unwrap_or_else(|err| panic!("test host E's engine: {err}"))
}

/// Runs the Docker CLI against host E's engine; panics if it fails.
pub fn docker_e(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").env("DOCKER_HOST", E_ENGINE).args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?} on host E: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
