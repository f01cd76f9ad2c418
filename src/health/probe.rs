//! One probe of one instance.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crate::backend::{Backend, EngineHealth, Instance};
use crate::health::ProbeRecord;
use crate::model::{HealthCheck, Probe};

/// The outcome of one probe: a record, and whether probing can never succeed (so waiting is useless).
pub(crate) struct Outcome {
    pub record: ProbeRecord,
    pub hopeless: bool,
}

/// An HTTP client for probes: no connection reuse, so every probe sees the instance as a new client would.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Runs `check`'s probe once against `instance`, bounded by the check's timeout.
/// Log-line probes are handled by the gate (they follow the log), not here.
pub(crate) async fn run(
    backend: &dyn Backend,
    http: &reqwest::Client,
    check: &HealthCheck,
    instance: &Instance,
) -> Outcome {
    let at = SystemTime::now();
    let started = Instant::now();
    let probe = async {
        let address = match &check.probe {
            Probe::Http { .. } | Probe::Tcp { .. } if backend.reports_health() => None,
            Probe::Http { port, .. } | Probe::Tcp { port } => match backend.probe_address(instance, *port).await {
                Ok(a) => a,
                // A lost host will not come back within a health gate.
                Err(e) => return (false, format!("{}: {e}", describe(check, None)), e.is_host_lost()),
            },
            _ => None,
        };
        match tokio::time::timeout(check.timeout, attempt(backend, http, check, instance, address)).await {
            Ok(r) => r,
            Err(_) => (false, format!("{} timed out after {:?}", describe(check, address), check.timeout), false),
        }
    };
    let (passed, detail, hopeless) = probe.await;
    Outcome { record: ProbeRecord { at, passed, detail, took: started.elapsed() }, hopeless }
}

fn describe(check: &HealthCheck, address: Option<SocketAddr>) -> String {
    let addr = |port: u16| address.map(|a| a.to_string()).unwrap_or_else(|| format!("<no address>:{port}"));
    match &check.probe {
        Probe::Http { port, path, .. } => format!("GET http://{}{path}", addr(*port)),
        Probe::Tcp { port } => format!("TCP connect {}", addr(*port)),
        Probe::Exec { command } => format!("exec {command:?}"),
        Probe::Docker => "docker HEALTHCHECK".into(),
        Probe::LogLine { contains } => format!("log line containing {contains:?}"),
    }
}

async fn attempt(
    backend: &dyn Backend,
    http: &reqwest::Client,
    check: &HealthCheck,
    instance: &Instance,
    address: Option<SocketAddr>,
) -> (bool, String, bool) {
    let what = describe(check, address);
    let no_address = |port: u16| {
        let why = if instance.is_running() {
            format!("container port {port} is not reachable from the library (no container address, and not published)")
        } else {
            // It died before it could be read: it has no address because it is not running.
            let code = instance.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default();
            format!("the container is not running ({}{code}): nothing to probe", instance.state)
        };
        (false, format!("{what}: {why}"), true)
    };
    match &check.probe {
        Probe::Http { .. } | Probe::Tcp { .. } if backend.reports_health() => match backend
            .inspect_instance(&instance.id)
            .await
        {
            Ok(i) => match i.engine_health {
                EngineHealth::Healthy => (true, format!("{what}: passing (checked by the target)"), false),
                EngineHealth::Starting => (false, format!("{what}: not checked by the target yet"), false),
                EngineHealth::Unhealthy(out) => {
                    (false, format!("{what}: failing (checked by the target): {out}"), false)
                }
                EngineHealth::None if !i.is_running() => {
                    let code = i.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default();
                    (false, format!("{what}: the instance is not running ({}{code})", i.state), true)
                }
                EngineHealth::None => (false, format!("{what}: the target reports no result for this check"), false),
            },
            Err(e) => (false, format!("{what}: {e}"), false),
        },
        Probe::Http { port, path, status_min, status_max, body_contains } => {
            let Some(addr) = address else { return no_address(*port) };
            let url = format!("http://{addr}{path}");
            match http.get(&url).timeout(check.timeout).send().await {
                Err(e) => (false, format!("{what}: {}", short_reqwest_error(&e)), false),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let status_ok = (*status_min..=*status_max).contains(&status);
                    match body_contains {
                        Some(needle) if status_ok => match resp.text().await {
                            Ok(body) if body.contains(needle.as_str()) => (true, format!("{what} -> {status}"), false),
                            Ok(_) => (false, format!("{what} -> {status}, body lacks {needle:?}"), false),
                            Err(e) => (false, format!("{what} -> {status}, body unreadable: {e}"), false),
                        },
                        _ if status_ok => (true, format!("{what} -> {status}"), false),
                        _ => (false, format!("{what} -> {status} (expected {status_min}-{status_max})"), false),
                    }
                }
            }
        }
        Probe::Tcp { port } => {
            let Some(addr) = address else { return no_address(*port) };
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => (true, format!("{what}: accepted"), false),
                Err(e) => (false, format!("{what}: {e}"), false),
            }
        }
        Probe::Exec { command } => match backend.exec(&instance.id, command, check.timeout).await {
            Ok(out) if out.exit_code == 0 => (true, format!("{what} exited 0"), false),
            Ok(out) => {
                let tail: String = out.stdout.chars().chain(out.stderr.chars()).take(200).collect();
                (false, format!("{what} exited {}: {}", out.exit_code, tail.trim()), false)
            }
            Err(e) => (false, format!("{what}: {e}"), false),
        },
        Probe::Docker => match backend.inspect_instance(&instance.id).await {
            Ok(i) => match i.engine_health {
                EngineHealth::Healthy => (true, format!("{what}: healthy"), false),
                EngineHealth::Starting => (false, format!("{what}: starting"), false),
                EngineHealth::Unhealthy(out) => (false, format!("{what}: unhealthy: {out}"), false),
                EngineHealth::None => {
                    (false, format!("{what}: the image defines no HEALTHCHECK; use another probe"), true)
                }
            },
            Err(e) => (false, format!("{what}: {e}"), false),
        },
        Probe::LogLine { .. } => (false, format!("{what}: not seen yet"), false),
    }
}

fn short_reqwest_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    // The innermost cause is the useful part ("Connection refused", "connection closed before
    // message completed").
    let mut src: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    if e.is_connect() {
        return format!("connect failed: {last}");
    }
    if last == e.to_string() {
        last
    } else {
        format!("request failed: {last}")
    }
}

/// Shorthand used by status: one probe, pass or fail, with a short description.
pub(crate) async fn check_once(backend: &dyn Backend, check: &HealthCheck, instance: &Instance) -> ProbeRecord {
    if let Probe::LogLine { contains } = &check.probe {
        let at = SystemTime::now();
        let started = Instant::now();
        let seen = backend
            .logs_tail(&instance.id, 10_000)
            .await
            .map(|lines| lines.iter().any(|l| l.contains(contains.as_str())))
            .unwrap_or(false);
        return ProbeRecord {
            at,
            passed: seen,
            detail: format!("log line containing {contains:?} {}", if seen { "seen" } else { "not seen" }),
            took: started.elapsed(),
        };
    }
    run(backend, &http_client(), check, instance).await.record
}
