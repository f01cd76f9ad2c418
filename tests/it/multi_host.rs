//! Several hosts over SSH: real sshd and dockerd per host (tests/fixtures/hosts.sh), a fleet with
//! roles, images shipped, services reaching each other across hosts, host keys, an unreachable
//! host, and a rollout rolled back on every host.

use crate::support;

use std::time::Duration;

use futures::StreamExt;
use harbormaster::{
    Amount, Backend, Error, EventKind, Fleet, HealthCheck, HostKeyPolicy, Port, Rollout, RolloutOutcome, ServiceRef,
    SshHost,
};
use support::hosts::{self, A, B, C, D, DOWN};
use support::load::{sample, Load};
use support::{get, workload, PROJECT};

fn check() -> HealthCheck {
    HealthCheck::http(8080, "/health").interval(Duration::from_millis(300)).retries(30)
}

fn svc(name: &str, role: &str) -> harbormaster::ServiceBuilder {
    svc_on(workload::IMAGE, name, role)
}

fn svc_on(image: &str, name: &str, role: &str) -> harbormaster::ServiceBuilder {
    harbormaster::Service::builder(name)
        .image(image)
        .role(role)
        .health(check())
        .stop_grace_period(Duration::from_secs(1))
}

/// Seed 001's shape on three hosts: a gateway on A, the API on B and C (C only reachable through A,
/// as a jump host given in ~/.ssh/config), the database and the message broker on C. Each service
/// finds the others through typed references; images are shipped from the local engine.
#[tokio::test]
async fn a_seed_topology_deploys_across_three_hosts() {
    workload::ensure_images();
    let name = support::unique("fleet");
    let _guard = hosts::FleetGuard { aliases: vec![A, B, C], name: name.clone() };
    let fleet = hosts::fleet(&[A, B, C]).await;
    // An image of this run only (the workload with a label), so no host has it yet.
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {}\nLABEL io.hmtest.run={name}\n", workload::IMAGE)).unwrap();
    let image = format!("hmtest/{name}:1");
    support::docker().await.build(&harbormaster::Build::context(&dir), &image).await.expect("build the run's image");
    let _ = std::fs::remove_dir_all(&dir);
    let svc = |n: &str, role: &str| svc_on(&image, n, role);
    let (db_port, mq_port, api_port, gw_port) = (hosts::port(), hosts::port(), hosts::port(), hosts::port());
    let env = harbormaster::Environment::builder(PROJECT, &name)
        .hosts("gateway", [A])
        .hosts("app", [B, C])
        .hosts("db", [C])
        .hosts("message", [C])
        .service(svc("db", "db").env("VERSION", "db").port(Port::tcp(8080).publish(db_port)).build().unwrap())
        .service(svc("message", "message").env("VERSION", "mq").port(Port::tcp(8080).publish(mq_port)).build().unwrap())
        .service(
            svc("api", "app")
                .env("VERSION", "api")
                .replicas(2)
                .port(Port::tcp(8080).publish(api_port))
                // The API refuses to start unless it reaches the database.
                .env_ref("REQUIRE", ServiceRef::to("db", 8080))
                .env_ref("DATABASE_URL", ServiceRef::to("db", 8080).format("postgres://app@{host}:{port}/shop"))
                .env_ref("BROKER", ServiceRef::to("message", 8080))
                .depends_on("db", harbormaster::Condition::Healthy)
                .build()
                .unwrap(),
        )
        .service(
            svc("gateway", "gateway")
                .env("VERSION", "gw")
                .port(Port::tcp(8080).publish(gw_port))
                .env_ref("UPSTREAM", ServiceRef::to("api", 8080))
                .depends_on("api", harbormaster::Condition::Healthy)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();

    let deployed = env.apply(&fleet).await.expect("apply across hosts");

    // Placement: by role, the API's replicas round its role's hosts.
    let on = |svc: &str| -> Vec<Option<String>> { deployed.instances(svc).iter().map(|i| i.host.clone()).collect() };
    assert_eq!(on("gateway"), [Some(A.to_string())]);
    assert_eq!(on("db"), [Some(C.to_string())]);
    assert_eq!(on("message"), [Some(C.to_string())]);
    let mut api_hosts = on("api");
    api_hosts.sort();
    assert_eq!(api_hosts, [Some(B.to_string()), Some(C.to_string())]);

    // The image was shipped once to each host that lacked it, however many services needed it.
    assert_eq!(fleet.images_shipped(), 3, "one shipment per host, though C runs three services on it");

    // Endpoints are the hosts' addresses.
    let gw = deployed.endpoint("gateway", 8080).unwrap();
    assert_eq!(gw.host, hosts::address(A));
    assert_eq!(deployed.endpoint("db", 8080).unwrap().to_string(), format!("{}:{db_port}", hosts::address(C)));

    // References: across hosts, the other host's address and published port.
    let (_, upstream) = get(&format!("{}/env/UPSTREAM", gw.http_url())).await;
    assert!(upstream.ends_with(&format!(":{api_port}")), "{upstream}");
    let api_on_b = deployed.instances("api").iter().find(|i| i.host.as_deref() == Some(B)).unwrap();
    let api_b = format!("http://{}:{api_port}", hosts::address(B));
    let (_, db_url) = get(&format!("{api_b}/env/DATABASE_URL")).await;
    assert_eq!(db_url, format!("postgres://app@{}:{db_port}/shop", hosts::address(C)));
    assert!(api_on_b.is_running());

    // The gateway on A reaches the API on B, which reaches the database and the broker on C.
    let b = hosts::address(B);
    let c = hosts::address(C);
    let (status, body) = get(&format!("{}/call/{b}/{api_port}/call/{c}/{db_port}/version", gw.http_url())).await;
    assert_eq!((status, body.as_str()), (200, "db"), "gateway -> api on B -> db on C");
    let (status, body) = get(&format!("{api_b}/call/{c}/{mq_port}/version")).await;
    assert_eq!((status, body.as_str()), (200, "mq"), "api on B -> message on C");

    // Re-applying changes nothing and ships nothing; the deploy's records live on the primary.
    let again = env.apply(&fleet).await.expect("re-apply");
    for s in ["gateway", "api", "db", "message"] {
        assert_eq!(again.outcome(s), Some(&RolloutOutcome::Unchanged), "{s}");
    }
    assert_eq!(fleet.images_shipped(), 3);
    assert_eq!(env.audit_log(&fleet).await.unwrap().len(), 2);
    let primary = hosts::connect(A).await;
    assert_eq!(env.audit_log(&primary).await.unwrap().len(), 2, "the audit trail is on the primary host");

    // Down removes everything on every host.
    env.down(&fleet, harbormaster::Down::default().with_volumes()).await.unwrap();
    let scope = harbormaster::backend::Scope::new(PROJECT, &name);
    assert!(fleet.list_instances(&scope).await.unwrap().is_empty());
}

/// Seed 001's gateway server: the ingress runs on A only and routes to the API on B and C (C
/// behind the jump host), reaching them at their hosts' published ports. A start-first update
/// limited to one host at a time goes through it host by host and drops no request.
#[tokio::test]
async fn a_gateway_host_routes_to_the_app_hosts() {
    workload::ensure_images();
    let name = support::unique("gw");
    let _guard = hosts::FleetGuard { aliases: vec![A, B, C], name: name.clone() };
    let fleet = hosts::fleet(&[A, B, C]).await;
    let gw_port = hosts::port();
    let ingress = |image: &str| {
        harbormaster::Ingress::builder()
            .image(image)
            .role("gateway")
            .http(Port::tcp(80).publish(gw_port))
            .route(harbormaster::Route::to("api", 8080))
            .build()
            .unwrap()
    };
    let env_on = |version: &str, caddy: &str| {
        harbormaster::Environment::builder(PROJECT, &name)
            .hosts("gateway", [A])
            .hosts("app", [B, C])
            .ingress(ingress(caddy))
            .service(
                svc("api", "app")
                    .env("VERSION", version)
                    .replicas(2)
                    // Published on an engine-chosen port of each app host: the gateway dials it there.
                    .port(Port::tcp(8080).publish_ephemeral())
                    .rollout(Rollout::start_first().max_hosts(1).drain(Duration::from_millis(300)))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let env = |version: &str| env_on(version, workload::CADDY_IMAGE);
    let deployed = env("v1").apply(&fleet).await.expect("v1");
    let on: Vec<Option<String>> = deployed.instances("ingress").iter().map(|i| i.host.clone()).collect();
    assert_eq!(on, [Some(A.to_string())], "the ingress runs on the gateway host only");
    let url = format!("http://{}:{gw_port}", hosts::address(A));

    // Both API instances, one on B and one on C, answer through the gateway on A.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let (status, body) = get(&format!("{url}/env/HOSTNAME")).await;
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "both app hosts answer: {seen:?}");

    // v2 under load, one host at a time: nothing dropped, only v2 at the end.
    let load = Load::start(&format!("{url}/version"), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (result, events) = support::apply_collect(&env("v2"), &fleet).await;
    let deployed = result.expect("v2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    assert!(tally.failed.is_empty(), "{} failed: {:?}", tally.failed.len(), &tally.failed[..tally.failed.len().min(5)]);
    assert!(tally.by_body.get("v1").is_some_and(|n| *n > 0) && tally.by_body.get("v2").is_some_and(|n| *n > 0));
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Succeeded));
    let batches: Vec<Vec<u32>> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RolloutBatch { slots, .. } => Some(slots.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(batches.len(), 2, "start-first is one batch; max_hosts(1) splits it by host: {batches:?}");
    assert_eq!(sample(&format!("{url}/version"), 8).await.get("v2"), Some(&8));

    // The gateway's own Caddy upgraded under load (new connections and held ones): nothing
    // refused or dropped, and the listener holding the gateway port stays.
    let next = workload::ensure_caddy_next();
    let listener = deployed.instances("ingress")[0].id.clone();
    let load = Load::start(&format!("{url}/version"), 3);
    let kept = Load::start_raw(hosts::address(A), gw_port, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upgraded = env_on("v2", next).apply(&fleet).await.expect("the gateway's Caddy upgraded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tally, kept) = (load.stop().await, kept.stop().await);
    assert!(tally.failed.is_empty(), "{} failed: {:?}", tally.failed.len(), &tally.failed[..tally.failed.len().min(5)]);
    assert!(kept.failed.is_empty() && kept.ok() > 0, "keep-alive: {} failed of {}", kept.failed.len(), kept.ok());
    assert_eq!(upgraded.instances("ingress")[0].id, listener);
    assert_eq!(sample(&format!("{url}/version"), 4).await.get("v2"), Some(&4));
}

/// Probes reach unpublished container ports through forwards over the host's one connection; the
/// forwards are reused, and beyond 64 the least recently used is closed.
#[tokio::test]
async fn probe_forwards_are_reused_and_bounded() {
    workload::ensure_images();
    let name = support::unique("fwd");
    let _guard = hosts::FleetGuard { aliases: vec![B], name: name.clone() };
    let b = hosts::connect(B).await;
    let fleet = Fleet::builder().host(b.clone()).images_from(support::docker().await).build().unwrap();
    let env = harbormaster::Environment::builder(PROJECT, &name)
        .service(svc("api", "app").env("VERSION", "fwd").port(Port::tcp(8080)).build().unwrap())
        .build()
        .unwrap();
    let deployed = env.apply(&fleet).await.expect("apply on B");
    let scope = harbormaster::backend::Scope::new(PROJECT, &name);
    let api = b.list_instances(&scope).await.unwrap().into_iter().find(|i| i.service == "api").expect("api on B");
    assert!(deployed.endpoint("api", 8080).is_err(), "8080 is not published");

    let first = b.probe_address(&api, 8080).await.unwrap().expect("a forward");
    assert_eq!(b.probe_address(&api, 8080).await.unwrap(), Some(first), "reused");
    let (status, body) = get(&format!("http://{first}/version")).await;
    assert_eq!((status, body.as_str()), (200, "fwd"), "the unpublished port, through the forward");
    let before = b.probe_forwards().await;
    // 70 more targets (nothing needs to listen there for a forward to exist).
    for port in 10_000..10_070 {
        b.probe_address(&api, port).await.unwrap();
    }
    assert_eq!(b.probe_forwards().await, 64, "bounded (was {before} before)");
    // 8080's forward was the least recently used: it was closed, and its local port refuses.
    assert!(tokio::net::TcpStream::connect(first).await.is_err(), "the evicted forward is closed");
    let again = b.probe_address(&api, 8080).await.unwrap().expect("a new forward");
    let (status, _) = get(&format!("http://{again}/health")).await;
    assert_eq!(status, 200);
}

/// A host whose key differs from known_hosts is refused, as is an unknown one unless the caller
/// allows new keys; a host that only a jump host reaches is refused directly.
#[tokio::test]
async fn host_keys_are_verified() {
    hosts::ensure();
    let dir = std::env::temp_dir().join(support::unique("hm-known-hosts"));
    std::fs::create_dir_all(&dir).unwrap();
    // A changed key: known_hosts holds another key for A's address.
    let other = dir.join("other");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(keygen.success());
    let pubkey = std::fs::read_to_string(dir.join("other.pub")).unwrap();
    let fields: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let changed = dir.join("changed");
    std::fs::write(&changed, format!("{} {}\n", hosts::address(A), fields.join(" "))).unwrap();
    let err = SshHost::builder(A).known_hosts_file(&changed).connect().await.unwrap_err();
    assert!(matches!(&err, Error::HostKey { host, changed: true, .. } if host == A), "{err}");
    assert!(err.to_string().contains("NOT the one known_hosts holds"), "{err}");
    // AcceptNew does not accept a changed key either.
    let err = SshHost::builder(A)
        .known_hosts_file(&changed)
        .host_key_policy(HostKeyPolicy::AcceptNew)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HostKey { changed: true, .. }), "{err}");

    // An unknown key: refused by default, accepted and remembered with AcceptNew.
    let empty = dir.join("empty");
    std::fs::write(&empty, "").unwrap();
    let err = SshHost::builder(B).known_hosts_file(&empty).connect().await.unwrap_err();
    assert!(matches!(&err, Error::HostKey { host, changed: false, .. } if host == B), "{err}");
    let host = SshHost::builder(B)
        .known_hosts_file(&empty)
        .host_key_policy(HostKeyPolicy::AcceptNew)
        .connect()
        .await
        .expect("a new key is accepted when asked");
    assert!(host.report().api_version.starts_with("1."));
    let found =
        std::process::Command::new("ssh-keygen").args(["-F", hosts::address(B), "-f"]).arg(&empty).output().unwrap();
    assert!(found.status.success(), "the new key is remembered in the given known_hosts file");

    // C only accepts SSH from A: directly it is unreachable, through ~/.ssh/config's ProxyJump it works.
    let err = SshHost::builder(hosts::address(C)).name("c-direct").connect().await.unwrap_err();
    assert!(matches!(&err, Error::HostUnreachable { host, .. } if host == "c-direct"), "{err}");
    let via_jump = hosts::connect(C).await;
    assert_eq!(via_jump.address(), hosts::address(C), "the address comes from ~/.ssh/config's HostName");
    // Host-level files go over the same connection, with their mode. (The test hosts share this
    // machine's file system, so the file can be read back here.)
    let remote = dir.join("etc").join("app.conf");
    via_jump.write_host_file(remote.to_str().unwrap(), b"listen 8080\n", 0o640).await.expect("write a host file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), "listen 8080\n");
    assert_eq!(std::fs::metadata(&remote).unwrap().permissions().mode() & 0o777, 0o640);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An unreachable host is named; when a host of the fleet is cut off, the next apply stops before
/// changing anything anywhere.
#[tokio::test]
async fn an_unreachable_host_is_named_and_nothing_changes() {
    workload::ensure_images();
    let err = SshHost::builder(DOWN).connect().await.unwrap_err();
    assert!(matches!(&err, Error::HostUnreachable { host, .. } if host == DOWN), "{err}");
    assert!(err.to_string().contains("hm-host-down"), "{err}");

    let name = support::unique("outage");
    let _guard = hosts::FleetGuard { aliases: vec![A, D], name: name.clone() };
    let mut outage = hosts::outage().await;
    let fleet = hosts::fleet_a_d().await;
    let web_port = hosts::port();
    let env = |version: &str| {
        harbormaster::Environment::builder(PROJECT, &name)
            .hosts("web", [A])
            .hosts("worker", [D])
            .service(svc("web", "web").env("VERSION", version).port(Port::tcp(8080).publish(web_port)).build().unwrap())
            .service(svc("worker", "worker").env("VERSION", version).build().unwrap())
            .build()
            .unwrap()
    };
    env("v1").apply(&fleet).await.expect("v1");

    outage.cut();
    let result = env("v2").apply(&fleet).await;
    outage.restore();
    let err = result.expect_err("D is unreachable");
    let text = err.to_string();
    assert!(text.contains(D), "the error names the host: {text}");
    assert!(matches!(err, Error::HostUnreachable { .. } | Error::HostCheck { .. }), "{err:?}");
    // Nothing changed on A: web still serves v1.
    let (_, version) = get(&format!("http://{}:{web_port}/version", hosts::address(A))).await;
    assert_eq!(version, "v1");
    // D is back: the same fleet reconnects to it, and the apply goes through.
    env("v2").apply(&fleet).await.expect("v2 once D is back");
    let (_, version) = get(&format!("http://{}:{web_port}/version", hosts::address(A))).await;
    assert_eq!(version, "v2");
}

/// A host lost in the middle of a rollout: the service is rolled back on the hosts that answer, the
/// lost host keeps what it ran, the error names it, and every service is on its old or its new
/// revision. Once the host is back, the next apply converges.
#[tokio::test]
async fn a_host_lost_mid_rollout_leaves_every_service_on_a_revision() {
    workload::ensure_images();
    let name = support::unique("lost");
    let _guard = hosts::FleetGuard { aliases: vec![A, D], name: name.clone() };
    let mut outage = hosts::outage().await;
    let fleet = hosts::fleet_a_d().await;
    let (web_port, api_port) = (hosts::port(), hosts::port());
    let env = |version: &str| {
        let web = svc("web", "web")
            .env("VERSION", version)
            .replicas(2)
            .port(Port::tcp(8080).publish(web_port))
            // Slot 0 on A, then slot 1 on D, three seconds apart.
            .rollout(
                Rollout::rolling()
                    .max_surge(Amount::count(0))
                    .max_unavailable(Amount::count(1))
                    .batch_delay(Duration::from_secs(3)),
            );
        harbormaster::Environment::builder(PROJECT, &name)
            .hosts("web", [A, D])
            .hosts("api", [A])
            .service(web.build().unwrap())
            .service(svc("api", "api").env("VERSION", version).port(Port::tcp(8080).publish(api_port)).build().unwrap())
            .build()
            .unwrap()
    };
    let version_at = |host: &'static str, port: u16| async move {
        get(&format!("http://{}:{port}/version", hosts::address(host))).await.1
    };
    env("v1").apply(&fleet).await.expect("v1");

    // D drops off once web's first batch (on A) is healthy, before the second (on D) begins.
    let mut run = env("v2").apply_streaming(&fleet);
    while let Some(event) = run.next().await {
        if let EventKind::InstanceHealthy { service, .. } = &event.kind {
            if service == "web" {
                outage.cut();
                break;
            }
        }
    }
    let err = run.finish().await.expect_err("D is lost mid-rollout");
    let text = err.to_string();
    let Error::Apply(failure) = &err else { panic!("expected an apply failure: {err}") };
    assert_eq!(failure.failed.len(), 1, "only web failed: {err}");
    let Some(web_err) = failure.error_of("web") else { panic!("web failed: {err}") };
    assert!(
        matches!(web_err, Error::RollbackIncomplete { .. } | Error::RolledBack { .. }),
        "web was rolled back where it could be: {web_err:?}"
    );
    assert!(text.contains(&format!("host `{D}`")), "the error names the lost host: {text}");
    assert!(text.contains("unreachable"), "{text}");
    // On A, web is back on v1, and api (on A only) finished its rollout to v2.
    assert_eq!(version_at(A, web_port).await, "v1");
    assert_eq!(version_at(A, api_port).await, "v2");

    // D is back: it still runs v1 (the stop never reached it).
    outage.restore();
    assert_eq!(version_at(D, web_port).await, "v1");
    let after = env("v2").apply(&fleet).await.expect("v2 once D is back");
    assert_eq!(after.outcome("web"), Some(&RolloutOutcome::Succeeded));
    for host in [A, D] {
        assert_eq!(version_at(host, web_port).await, "v2", "{host} serves v2");
    }
    let scope = harbormaster::backend::Scope::new(PROJECT, &name);
    let web: Vec<_> = fleet.list_instances(&scope).await.unwrap().into_iter().filter(|i| i.service == "web").collect();
    assert_eq!(web.len(), 2, "nothing stray is left on either host: {web:?}");
    assert!(web.iter().all(|i| i.is_running()));
}

/// A host lost while its new instance passes its health gate: the gate ends at once with the host
/// named (no waiting out its budget), the other host is rolled back, and the next apply converges.
#[tokio::test]
async fn a_host_lost_during_its_health_gate_is_named() {
    workload::ensure_images();
    let name = support::unique("gate");
    let _guard = hosts::FleetGuard { aliases: vec![A, D], name: name.clone() };
    let mut outage = hosts::outage().await;
    let fleet = hosts::fleet_a_d().await;
    let env = |version: &str| {
        harbormaster::Environment::builder(PROJECT, &name)
            .hosts("web", [A, D])
            .service(
                harbormaster::Service::builder("web")
                    .image(workload::IMAGE)
                    .role("web")
                    .env("VERSION", version)
                    // Not ready at once: the gate's first probe fails.
                    .env("READY_DELAY_MS", if version == "v1" { "0" } else { "1500" })
                    .replicas(2)
                    .port(Port::tcp(8080).publish_ephemeral())
                    // A generous budget: the gate must end because the host is lost, not because of it.
                    .health(HealthCheck::http(8080, "/health").interval(Duration::from_millis(300)).retries(200))
                    .stop_grace_period(Duration::from_secs(1))
                    .rollout(Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0)))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let scope = harbormaster::backend::Scope::new(PROJECT, &name);
    let versions = |instances: Vec<harbormaster::Instance>| {
        let running: Vec<_> = instances.into_iter().filter(|i| i.service == "web" && i.is_running()).collect();
        async move {
            let mut out = Vec::new();
            for i in running {
                let host = i.host.clone().unwrap_or_default();
                let port = i.published.iter().find(|p| p.container_port == 8080).map(|p| p.host_port).unwrap();
                let (_, v) = get(&format!("http://{}:{port}/version", hosts::address(&host))).await;
                out.push((host, v));
            }
            out.sort();
            out
        }
    };
    env("v1").apply(&fleet).await.expect("v1");

    // Slot 0 (on A) goes first; D drops off at the first probe of slot 1's new instance (on D).
    let mut run = env("v2").apply_streaming(&fleet);
    while let Some(event) = run.next().await {
        if let EventKind::ProbeFailed { instance, .. } = &event.kind {
            if instance.contains("-web-1-") {
                outage.cut();
                break;
            }
        }
    }
    let started = std::time::Instant::now();
    let err = run.finish().await.expect_err("D is lost during its gate");
    let waited = started.elapsed();
    let text = err.to_string();
    let Error::Apply(failure) = &err else { panic!("expected an apply failure: {err}") };
    let Some(Error::RolledBack { reason, .. }) = failure.error_of("web") else { panic!("a rollback: {err}") };
    let Error::Unhealthy(hf) = reason.as_ref() else { panic!("a failed gate: {err}") };
    assert_eq!(hf.host.as_deref(), Some(D), "{err}");
    assert!(text.contains("unreachable"), "the probes say the host is lost: {text}");
    // 200 probes 300 ms apart would be a minute: the gate ended as soon as the connection was lost.
    assert!(waited < Duration::from_secs(40), "took {waited:?}");
    // A is back on v1.
    // (The fleet cannot list while D is away: A's own engine is asked.)
    let on_a: Vec<_> = hosts::connect(A)
        .await
        .list_instances(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|mut i| {
            i.host = Some(A.to_string());
            i
        })
        .collect();
    assert_eq!(versions(on_a).await, [(A.to_string(), "v1".to_string())]);

    outage.restore();
    env("v2").apply(&fleet).await.expect("v2 once D is back");
    let all = fleet.list_instances(&scope).await.unwrap();
    assert_eq!(all.iter().filter(|i| i.service == "web").count(), 2, "nothing stray: {all:?}");
    assert_eq!(versions(all).await, [(A.to_string(), "v2".to_string()), (D.to_string(), "v2".to_string())]);
}

/// A rollout across two hosts fails on the second host: it is rolled back on both, the first
/// included, and every instance serves the old version again.
#[tokio::test]
async fn a_rollout_failing_on_one_host_is_rolled_back_on_every_host() {
    workload::ensure_images();
    let name = support::unique("xroll");
    let _guard = hosts::FleetGuard { aliases: vec![A, B], name: name.clone() };
    let fleet = hosts::fleet(&[A, B]).await;
    let port = hosts::port();
    let env = |version: &str, require: Option<&str>| {
        let mut web = svc("web", "web")
            .env("VERSION", version)
            .replicas(2)
            .port(Port::tcp(8080).publish(port))
            // A fixed host port: each host stops its old instance before starting the new one.
            .rollout(Rollout::rolling().max_surge(Amount::count(0)).max_unavailable(Amount::count(1)));
        if let Some(r) = require {
            web = web.env("REQUIRE", r);
        }
        harbormaster::Environment::builder(PROJECT, &name)
            .hosts("web", [A, B])
            .hosts("edge", [A])
            .service(svc("peer", "edge").build().unwrap())
            .service(web.build().unwrap())
            .build()
            .unwrap()
    };
    env("v1", None).apply(&fleet).await.expect("v1");

    // v2 needs `peer` by its bare name: it resolves on A (same network), not on B. The first batch
    // (slot 0, on A) succeeds; the second (slot 1, on B) fails its health gate.
    let err = env("v2", Some("peer:8080")).apply(&fleet).await.expect_err("v2 fails on B");
    let Error::Apply(failure) = &err else { panic!("expected an apply failure: {err}") };
    let Some(Error::RolledBack { reason, .. }) = failure.error_of("web") else { panic!("expected a rollback: {err}") };
    let Error::Unhealthy(hf) = reason.as_ref() else { panic!("expected an unhealthy cause: {err}") };
    assert_eq!(hf.host.as_deref(), Some(B), "the failing instance is the one on B: {err}");
    assert!(err.to_string().contains(&format!("on host {B}) is not healthy")), "the message names the host: {err}");
    for host in [A, B] {
        let (_, version) = get(&format!("http://{}:{port}/version", hosts::address(host))).await;
        assert_eq!(version, "v1", "{host} serves the old version again");
    }
    let scope = harbormaster::backend::Scope::new(PROJECT, &name);
    let web: Vec<_> = fleet.list_instances(&scope).await.unwrap().into_iter().filter(|i| i.service == "web").collect();
    assert_eq!(web.len(), 2, "{web:?}");
    assert!(web.iter().all(|i| i.is_running()));
}

/// A global service (compose's `deploy.mode: global`: a log shipper, an exporter) runs one
/// instance on every host of its role, however many the role maps; a change replaces each.
#[tokio::test]
async fn a_global_service_runs_on_every_host_of_its_role() {
    workload::ensure_images();
    let name = support::unique("fleet-global");
    let _guard = hosts::FleetGuard { aliases: vec![A, B], name: name.clone() };
    let fleet = hosts::fleet(&[A, B]).await;
    let port = hosts::port();
    let env = |version: &str| {
        harbormaster::Environment::builder(PROJECT, &name)
            .hosts("edge", [A, B])
            .hosts("app", [A])
            .service(
                svc("agent", "edge")
                    .env("VERSION", version)
                    .port(Port::tcp(8080).publish(port))
                    .global()
                    .build()
                    .unwrap(),
            )
            .service(svc("api", "app").env("VERSION", "api").build().unwrap())
            .build()
            .unwrap()
    };
    let deployed = env("agent-1").apply(&fleet).await.expect("apply");
    let mut hosts_of_agent: Vec<String> = deployed.instances("agent").iter().filter_map(|i| i.host.clone()).collect();
    hosts_of_agent.sort();
    assert_eq!(hosts_of_agent, [A.to_string(), B.to_string()], "one on each host of the role");
    assert_eq!(deployed.instances("api").len(), 1);
    for h in [A, B] {
        let (status, body) = get(&format!("http://{}:{port}/version", hosts::address(h))).await;
        assert_eq!((status, body.as_str()), (200, "agent-1"), "{h}");
    }
    let status = env("agent-1").status(&fleet).await.unwrap();
    let agent = status.services.iter().find(|s| s.name == "agent").unwrap();
    assert_eq!((agent.desired, agent.running), (2, 2));
    assert!(env("agent-1").plan(&fleet).await.unwrap().is_noop());

    let deployed = env("agent-2").apply(&fleet).await.expect("a change");
    assert_eq!(deployed.instances("agent").len(), 2);
    for h in [A, B] {
        let (_, body) = get(&format!("http://{}:{port}/version", hosts::address(h))).await;
        assert_eq!(body, "agent-2", "{h}");
    }
    env("agent-2").down(&fleet, harbormaster::Down::default().with_volumes()).await.unwrap();
}
