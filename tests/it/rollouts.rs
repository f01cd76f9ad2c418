//! Rollouts under continuous HTTP load through the ingress (Caddy), on the real engine.

use crate::support;

use std::time::Duration;

use harbormaster::{Amount, Environment, Error, HealthCheck, Port, Rollout, RolloutOutcome, Service};
use support::load::{sample, Load};
use support::Harness;

fn check() -> HealthCheck {
    // The start period keeps a loaded CI machine (slow container starts) from failing healthy instances.
    HealthCheck::http(8080, "/health")
        .interval(Duration::from_millis(200))
        .retries(5)
        .start_period(Duration::from_secs(4))
}

fn api(h: &Harness, version: &str, rollout: Rollout) -> harbormaster::ServiceBuilder {
    h.svc("api")
        .env("VERSION", version)
        .port(Port::tcp(8080))
        .replicas(3)
        .health(check())
        .rollout(rollout.drain(Duration::from_millis(300)))
}

fn env_with(h: &Harness, api: Service) -> Environment {
    h.env().ingress(support::api_ingress()).service(api).build().unwrap()
}

/// Keep-alive clients that never retry lost nothing: the router tier was reloaded at every traffic
/// move, the front tier that holds their connections never was.
fn assert_keep_alive_survived(kept: support::load::Tally) {
    assert!(kept.ok() > 0, "{kept:?}");
    assert!(kept.failed.is_empty(), "{} of {} keep-alive requests failed", kept.failed.len(), kept.ok());
}

#[tokio::test]
async fn rolling_update_and_automatic_rollback_drop_nothing() {
    let h = Harness::new("rolling").await;
    let rolling = || Rollout::rolling().max_surge(Amount::count(1)).max_unavailable(Amount::count(0));
    let v1 = env_with(&h, api(&h, "v1", rolling()).build().unwrap());
    let deployed = v1.apply(&h.docker).await.unwrap();
    let url = format!("{}/version", deployed.ingress_endpoint().expect("ingress endpoint").http_url());
    assert_eq!(sample(&url, 9).await.get("v1"), Some(&9));

    // v1 -> v2 under load: nothing dropped, and only v2 answers at the end.
    let endpoint = deployed.ingress_endpoint().unwrap();
    let load = Load::start(&url, 4);
    let kept = Load::start_raw(&endpoint.host, endpoint.port, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v2 = env_with(&h, api(&h, "v2", rolling()).build().unwrap());
    let (result, events) = support::apply_collect(&v2, &h.docker).await;
    let deployed = result.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    assert_keep_alive_survived(kept.stop().await);
    assert_eq!(tally.retried, 0, "no connection was closed before its answer");
    assert!(
        tally.failed.is_empty(),
        "{} failed requests: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert!(
        tally.by_body.get("v1").is_some_and(|n| *n > 0) && tally.by_body.get("v2").is_some_and(|n| *n > 0),
        "{tally:?}"
    );
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Succeeded));
    let batches = events.iter().filter(|e| matches!(e.kind, harbormaster::EventKind::RolloutBatch { .. })).count();
    assert_eq!(batches, 3, "max_surge 1, max_unavailable 0 on 3 replicas is three batches");
    assert_eq!(sample(&url, 12).await.get("v2"), Some(&12));
    assert_eq!(deployed.instances("api").len(), 3);

    // v3 never gets healthy: rolled back automatically, nothing dropped, v2 still answers everywhere.
    let load = Load::start(&url, 4);
    let kept = Load::start_raw(&endpoint.host, endpoint.port, 2);
    let v3 = env_with(&h, api(&h, "v3", rolling()).env("HEALTH_STATUS", "503").build().unwrap());
    let err = v3.apply(&h.docker).await.unwrap_err();
    let tally = load.stop().await;
    assert_keep_alive_survived(kept.stop().await);
    let Error::Apply(failure) = &err else { panic!("expected an apply failure: {err}") };
    let Some(Error::RolledBack { reason, .. }) = failure.error_of("api") else { panic!("expected a rollback: {err}") };
    let Error::Unhealthy(hf) = reason.as_ref() else { panic!("expected an unhealthy cause: {err}") };
    assert!(hf.last_probes.iter().any(|p| p.detail.contains("503")), "{err}");
    assert!(
        tally.failed.is_empty(),
        "{} failed requests: {:?}",
        tally.failed.len(),
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert_eq!(tally.by_body.keys().collect::<Vec<_>>(), vec!["v2"], "{tally:?}");
    assert_eq!(sample(&url, 12).await.get("v2"), Some(&12));
    let status = v2.status(&h.docker).await.unwrap();
    let api = status.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!(api.instances.len(), 3, "{status:?}");
}

#[tokio::test]
async fn blue_green_switches_at_once_without_drops() {
    let h = Harness::new("bluegreen").await;
    let v1 = env_with(&h, api(&h, "v1", Rollout::blue_green()).build().unwrap());
    let deployed = v1.apply(&h.docker).await.unwrap();
    let url = format!("{}/version", deployed.ingress_endpoint().unwrap().http_url());

    let load = Load::start(&url, 4);
    let v2 = env_with(&h, api(&h, "v2", Rollout::blue_green()).build().unwrap());
    let (result, events) = support::apply_collect(&v2, &h.docker).await;
    let tally = load.stop().await;
    let deployed = result.unwrap();
    assert!(tally.failed.is_empty(), "{:?}", &tally.failed[..tally.failed.len().min(5)]);
    // One traffic move: every v2 instance enters rotation in the same change, and no v1 one stays.
    let moves: Vec<&Vec<(String, u32)>> = events
        .iter()
        .filter_map(|e| match &e.kind {
            harbormaster::EventKind::RotationChanged { service, members } if service == "api" => Some(members),
            _ => None,
        })
        .collect();
    assert_eq!(moves.len(), 1, "{moves:?}");
    let new: Vec<String> = deployed.instances("api").iter().map(|i| i.name.clone()).collect();
    assert_eq!(moves[0].iter().map(|(n, _)| n.clone()).collect::<Vec<_>>().len(), 3);
    assert!(moves[0].iter().all(|(n, _)| new.contains(n)), "{moves:?} vs {new:?}");
    assert_eq!(sample(&url, 9).await.get("v2"), Some(&9));
}

#[tokio::test]
async fn canary_weights_show_in_the_share_of_answers() {
    let h = Harness::new("canary").await;
    let steps = || {
        Rollout::canary([harbormaster::CanaryStep::weight(25), harbormaster::CanaryStep::pause(Duration::from_secs(4))])
    };
    let v1 = env_with(&h, api(&h, "v1", steps()).build().unwrap());
    let deployed = v1.apply(&h.docker).await.unwrap();
    let url = format!("{}/version", deployed.ingress_endpoint().unwrap().http_url());

    let v2 = env_with(&h, api(&h, "v2", steps()).build().unwrap());
    let docker = h.docker.clone();
    let mut run = v2.apply_streaming(&docker);
    use futures::StreamExt;
    // Wait for the 25 % step, then count answers during the pause.
    while let Some(e) = run.next().await {
        if let harbormaster::EventKind::RotationChanged { members, .. } = &e.kind {
            if members.len() == 6 {
                break;
            }
        }
    }
    let shares = sample(&url, 120).await;
    // Round robin over 3 × weight 3 (v1) and 3 × weight 1 (v2): exactly a quarter.
    assert_eq!(shares.get("v2"), Some(&30), "{shares:?}");
    assert_eq!(shares.get("v1"), Some(&90), "{shares:?}");
    let deployed = run.finish().await.unwrap();
    assert_eq!(deployed.outcome("api"), Some(&RolloutOutcome::Succeeded));
    assert_eq!(sample(&url, 12).await.get("v2"), Some(&12));
}

/// The ingress upgrades itself on a fixed host port, as in production: a new Caddy image, then new
/// settings (a route for a host name, so a new front configuration), while clients send on new
/// connections and on held ones. Nothing is refused or dropped, and the listener that holds the
/// port is never replaced.
#[tokio::test]
async fn the_ingress_upgrades_itself_on_a_fixed_port_without_a_gap() {
    use harbormaster::{Ingress, Route};
    let h = Harness::new("edge").await;
    let next = support::workload::ensure_caddy_next();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = |image: &str, host_route: bool| {
        let mut ingress =
            Ingress::builder().image(image).http(Port::tcp(80).publish(port)).route(Route::to("api", 8080));
        if host_route {
            ingress = ingress.route(Route::to("api", 8080).host("shop.example.com"));
        }
        let api = api(&h, "v1", Rollout::start_first()).replicas(2).build().unwrap();
        h.env().ingress(ingress.build().unwrap()).service(api).build().unwrap()
    };
    let first = env(support::workload::CADDY_IMAGE, false).apply(&h.docker).await.unwrap();
    let listener = first.instances("ingress")[0].id.clone();
    let front = first.instances("ingress-front")[0].id.clone();
    let url = format!("http://127.0.0.1:{port}/version");
    assert_eq!(sample(&url, 4).await.get("v1"), Some(&4));

    let load = Load::start(&url, 3);
    let kept = Load::start_raw("127.0.0.1", port, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upgraded = env(next, false).apply(&h.docker).await.expect("a new image");
    let fronts_after_image = upgraded.instances("ingress-front")[0].id.clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (result, events) = support::apply_collect(&env(next, true), &h.docker).await;
    let reconfigured = result.expect("new settings");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    let kept = kept.stop().await;

    assert!(tally.failed.is_empty(), "{} failed: {:?}", tally.failed.len(), &tally.failed[..tally.failed.len().min(5)]);
    assert_eq!(tally.retried, 0, "no connection was closed before its answer");
    assert_keep_alive_survived(kept);
    assert!(tally.ok() > 50, "{tally:?}");
    assert_eq!(reconfigured.instances("ingress")[0].id, listener, "the listener holding the port stayed");
    assert_ne!(fronts_after_image, front, "a new image replaced the front");
    let last = reconfigured.instances("ingress-front");
    assert_eq!(last.len(), 1);
    assert_ne!(last[0].id, fronts_after_image, "new settings replaced the front");
    assert!(
        events.iter().any(|e| matches!(&e.kind, harbormaster::EventKind::InstanceStopped { service, .. } if service == "ingress-front")),
        "the old front was stopped"
    );
    let shop = reqwest::Client::new().get(&url).header("Host", "shop.example.com").send().await.unwrap();
    assert_eq!(shop.text().await.unwrap().trim(), "v1");

    // The listener moved to another port: at every moment one of the two ports answers (the old
    // one until the new one does), and the old listener is gone at the end.
    let moved = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let either = tokio::spawn({
        let stop = stop.clone();
        async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut answered = false;
                for p in [port, moved] {
                    let url = format!("http://127.0.0.1:{p}/version");
                    if let Ok(r) = client.get(&url).send().await {
                        answered |= r.status().is_success();
                    }
                    if answered {
                        break;
                    }
                }
                match answered {
                    true => ok += 1,
                    false => failed.push(format!("neither port answered at {:?}", std::time::SystemTime::now())),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failed)
        }
    });
    let ingress = Ingress::builder().image(next).http(Port::tcp(80).publish(moved)).route(Route::to("api", 8080));
    let api = api(&h, "v1", Rollout::start_first()).replicas(2).build().unwrap();
    let env = h.env().ingress(ingress.route(Route::to("api", 8080).host("shop.example.com")).build().unwrap());
    let moved_to = env.service(api).build().unwrap().apply(&h.docker).await.expect("a port move");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = either.await.unwrap();
    assert!(failed.is_empty() && ok > 20, "{} of {} failed: {:?}", failed.len(), ok, &failed[..failed.len().min(3)]);
    assert_eq!(sample(&format!("http://127.0.0.1:{moved}/version"), 4).await.get("v1"), Some(&4));
    assert_eq!(moved_to.instances("ingress").len(), 1, "the old listener went at the end of the apply");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the old port is released");
}
