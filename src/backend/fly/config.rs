//! A service's instance as a Fly machine config (`api.MachineConfig`), and what of it Fly cannot
//! express (refused before anything changes, with the reason).
//!
//! | harbormaster | Fly machine config |
//! |---|---|
//! | image (by reference; a build pushed by the library, by digest) | `image` |
//! | entrypoint, command | `init.entrypoint`, `init.cmd` |
//! | env, secrets | `env` (secret values only in the request, never in records) |
//! | resources: cpus, memory | `guest.cpus` (rounded up), `guest.memory_mb` (rounded up to 256 MB), `cpu_kind: shared` |
//! | named volume | a Fly volume per environment and name, `mounts[{volume, path}]` |
//! | restart | `restart.policy` (`no`, `always`, `on-failure` + `max_retries`) |
//! | published port | `services[{protocol, internal_port, ports[{port}]}]` (Fly's proxy) |
//! | HTTP/TCP health check | `checks.health` and, on a published port, the service's `checks` (the proxy routes only to passing machines) |
//! | stop grace | `stop_config{signal: SIGTERM, timeout}` |
//! | labels (service, slot, spec hash, …) | `metadata`, plus `fly_process_group` = service |

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{label, InstanceSpec};
use crate::model::{HealthCheck, Probe, Protocol, Publish, RestartPolicy, Service, VolumeSource};

/// A duration as the API writes it: a Go duration string, or nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum Dur {
    Text(String),
    Nanos(i64),
}

/// `api.MachineConfig`, the fields this backend writes or reads (others are left as they are).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct MachineConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Guest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<ServiceCfg>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<BTreeMap<String, Check>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_config: Option<StopConfig>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Init {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Guest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Mount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Restart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct ServiceCfg {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortCfg>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<Check>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct PortCfg {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Check {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct StopConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

/// A duration as a Go duration string, in milliseconds (`1500ms`), at least 1 ms.
pub(super) fn go_duration(d: Duration) -> Dur {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        Dur::Text(format!("{}s", ms / 1000))
    } else {
        Dur::Text(format!("{ms}ms"))
    }
}

/// The name of the check every machine of a service with a health check carries.
pub(super) const CHECK_NAME: &str = "health";

/// What Fly cannot express of `spec`: one sentence per problem, naming the field.
pub(super) fn refusals(spec: &Service) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(h) = &spec.health {
        if let Some(why) = check_refusal(h) {
            out.push(format!("health check: {why}"));
        }
    }
    if spec.user.is_some() {
        out.push("user: a Fly machine config has no user setting; set USER in the image".into());
    }
    if spec.workdir.is_some() {
        out.push("workdir: a Fly machine config has no working directory; set WORKDIR in the image".into());
    }
    for v in &spec.volumes {
        match &v.source {
            VolumeSource::Named(_) if v.read_only => {
                out.push(format!("volume at {}: Fly volumes mount read-write only", v.target))
            }
            VolumeSource::Named(_) => {}
            VolumeSource::Bind(p) => out.push(format!(
                "volume at {}: a bind mount of {} needs a host, and Fly machines have none to bind from; use a named volume",
                v.target,
                p.display()
            )),
            VolumeSource::Tmpfs => {
                out.push(format!("volume at {}: Fly machines have no tmpfs mounts; write to the root filesystem", v.target))
            }
            VolumeSource::External(n) => out.push(format!(
                "volume at {}: the external volume {n} is a Docker volume; Fly volumes are the environment's own",
                v.target
            )),
        }
        if matches!(v.source, VolumeSource::Named(_)) && !v.options.is_default() {
            out.push(format!("volume at {}: Fly volumes take no mount options", v.target));
        }
    }
    if !spec.container.is_default() {
        out.push(
            "container options (capabilities, namespaces, kernel settings, DNS, devices, stop signal, logging, the engine's health check): a Fly machine config has none of them"
                .into(),
        );
    }
    let r = &spec.resources;
    if r.memory_reservation.is_some()
        || r.memory_swap.is_some()
        || r.memory_swappiness.is_some()
        || r.pids.is_some()
        || r.cpu_shares.is_some()
        || r.cpu_quota.is_some()
        || r.cpu_period.is_some()
        || r.cpuset.is_some()
    {
        out.push("resources: a Fly machine is sized by cpus and memory only".into());
    }
    if !spec.networks.is_empty() {
        out.push("networks: a Fly machine is on its app's private network only".into());
    }
    if !spec.aliases.is_empty() {
        out.push("aliases: services find each other on Fly by their process group's name only".into());
    }
    if spec.name.contains('_') {
        out.push(format!(
            "service name {}: Fly process groups and DNS names take letters, digits and `-` only",
            spec.name
        ));
    }
    for p in &spec.ports {
        if p.host_ip.is_some_and(|ip| !ip.is_unspecified()) && p.publish != Publish::No {
            out.push(format!(
                "port {}: a published port binds to the app's public addresses on Fly, not to one host address",
                p.container
            ));
        }
    }
    out
}

/// Why Fly's checks cannot express `h`, if they cannot.
pub(super) fn check_refusal(h: &HealthCheck) -> Option<String> {
    match &h.probe {
        Probe::Http { body_contains: Some(_), .. } => {
            Some("Fly's HTTP checks judge the status only; a check on the body cannot be expressed".into())
        }
        Probe::Http { status_min, status_max, .. } if !(*status_min <= 200 && *status_max >= 299 && *status_max <= 399) => {
            Some(format!(
                "Fly's HTTP checks pass on a 2xx answer; the accepted statuses {status_min}-{status_max} cannot be expressed"
            ))
        }
        Probe::Http { .. } | Probe::Tcp { .. } => None,
        Probe::Exec { .. } => Some(
            "Fly's checks are HTTP or TCP; a command check cannot be expressed (serve an HTTP health endpoint)".into(),
        ),
        Probe::Docker => Some("Fly ignores an image's HEALTHCHECK; use an HTTP or TCP check".into()),
        Probe::LogLine { .. } => Some("Fly's checks cannot watch the log; use an HTTP or TCP check".into()),
    }
}

/// The Fly check of a health check (HTTP or TCP; see [`check_refusal`]).
fn fly_check(h: &HealthCheck) -> Option<Check> {
    let mut c = Check {
        interval: Some(go_duration(h.interval)),
        timeout: Some(go_duration(h.timeout)),
        grace_period: Some(go_duration(h.start_period)),
        ..Check::default()
    };
    match &h.probe {
        Probe::Http { port, path, .. } => {
            c.kind = Some("http".into());
            c.port = Some(i64::from(*port));
            c.method = Some("GET".into());
            c.path = Some(path.clone());
            c.protocol = Some("http".into());
        }
        Probe::Tcp { port } => {
            c.kind = Some("tcp".into());
            c.port = Some(i64::from(*port));
        }
        _ => return None,
    }
    Some(c)
}

/// Rounds a memory limit up to Fly's sizes: a multiple of 256 MB, at least 256.
pub(super) fn memory_mb(mb: u64) -> i64 {
    let rounded = mb.max(1).div_ceil(256).saturating_mul(256);
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// The machine config of one instance. `volumes`: the Fly volume ID of each named volume.
pub(super) fn machine_config(spec: &InstanceSpec, volumes: &BTreeMap<String, String>) -> MachineConfig {
    let mut env = spec.env.clone();
    for (k, v) in &spec.secrets {
        env.insert(k.clone(), v.expose().to_string());
    }
    // A machine keeps one map: the annotations are metadata too.
    let mut metadata = spec.labels.clone();
    metadata.extend(spec.annotations.clone());
    metadata.insert(label::IMAGE.to_string(), spec.image_id.clone());
    metadata.insert("fly_process_group".to_string(), spec.service.clone());
    let check = spec.health.as_ref().and_then(fly_check);
    let services: Vec<ServiceCfg> = spec
        .ports
        .iter()
        .filter(|p| p.publish != Publish::No)
        .map(|p| {
            let public = match p.publish {
                Publish::Fixed(h) => h,
                _ => p.container,
            };
            let on_port = check.clone().filter(|c| c.port == Some(i64::from(p.container)));
            ServiceCfg {
                protocol: Some(if p.protocol == Protocol::Udp { "udp" } else { "tcp" }.into()),
                internal_port: Some(i64::from(p.container)),
                ports: Some(vec![PortCfg { port: Some(i64::from(public)), handlers: None }]),
                checks: on_port.map(|c| vec![c]),
            }
        })
        .collect();
    let mounts: Vec<Mount> = spec
        .volumes
        .iter()
        .filter_map(|v| match &v.source {
            VolumeSource::Named(n) => Some(Mount { volume: volumes.get(n).cloned(), path: Some(v.target.clone()) }),
            _ => None,
        })
        .collect();
    let restart = match spec.restart {
        RestartPolicy::No => Restart { policy: Some("no".into()), max_retries: None },
        RestartPolicy::Always | RestartPolicy::UnlessStopped => {
            Restart { policy: Some("always".into()), max_retries: None }
        }
        RestartPolicy::OnFailure(n) => {
            Restart { policy: Some("on-failure".into()), max_retries: (n > 0).then_some(i64::from(n)) }
        }
    };
    let cpus = spec.resources.cpus.map(|c| c.ceil().clamp(1.0, 16.0) as i64).unwrap_or(1);
    let memory = spec.resources.memory_mb.map(memory_mb).unwrap_or(256);
    MachineConfig {
        // Pinned to its registry digest when it has one (a build pushed by the library, a rollback).
        image: Some(spec.image_pull.clone().unwrap_or_else(|| spec.image_id.clone())),
        init: (spec.entrypoint.is_some() || spec.command.is_some())
            .then(|| Init { entrypoint: spec.entrypoint.clone(), cmd: spec.command.clone() }),
        env: Some(env),
        guest: Some(Guest { cpu_kind: Some("shared".into()), cpus: Some(cpus), memory_mb: Some(memory) }),
        mounts: (!mounts.is_empty()).then_some(mounts),
        restart: Some(restart),
        services: (!services.is_empty()).then_some(services),
        checks: check.map(|c| BTreeMap::from([(CHECK_NAME.to_string(), c)])),
        metadata: Some(metadata),
        stop_config: Some(StopConfig { signal: Some("SIGTERM".into()), timeout: Some(go_duration(spec.stop_grace)) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_go_strings() {
        assert_eq!(go_duration(Duration::from_secs(15)), Dur::Text("15s".into()));
        assert_eq!(go_duration(Duration::from_millis(1500)), Dur::Text("1500ms".into()));
        assert_eq!(go_duration(Duration::ZERO), Dur::Text("1ms".into()));
    }

    #[test]
    fn memory_rounds_up_to_fly_sizes() {
        assert_eq!(memory_mb(1), 256);
        assert_eq!(memory_mb(256), 256);
        assert_eq!(memory_mb(300), 512);
        assert_eq!(memory_mb(u64::MAX), i64::MAX);
    }

    #[test]
    fn checks_fly_cannot_express_are_refused_with_the_reason() {
        assert!(check_refusal(&HealthCheck::http(8080, "/health")).is_none());
        assert!(check_refusal(&HealthCheck::tcp(5432)).is_none());
        let exec = check_refusal(&HealthCheck::exec(["pg_isready"])).unwrap_or_default();
        assert!(exec.contains("HTTP or TCP"), "{exec}");
        let body = check_refusal(&HealthCheck::http(80, "/").body_contains("ok")).unwrap_or_default();
        assert!(body.contains("body"), "{body}");
        let status = check_refusal(&HealthCheck::http(80, "/").expect_status(200..=204)).unwrap_or_default();
        assert!(status.contains("2xx"), "{status}");
    }

    #[test]
    fn container_options_and_names_fly_cannot_express_are_refused() {
        let svc = Service::builder("plausible_db").image("a:1").cap_add("NET_ADMIN").alias("db").build().unwrap();
        let r = refusals(&svc);
        assert!(r.iter().any(|w| w.starts_with("container options")), "{r:?}");
        assert!(r.iter().any(|w| w.starts_with("aliases")), "{r:?}");
        assert!(r.iter().any(|w| w.starts_with("service name")), "{r:?}");
    }
}
