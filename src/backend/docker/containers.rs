//! Containers: lifecycle, inspection, logs and exec (the create body is `create.rs`'s).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum, Mount, MountType};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures::stream::{BoxStream, StreamExt};

use super::{engine_error, is_not_found, DockerBackend};
use crate::backend::{
    label, EngineHealth, ExecOutput, Instance, InstanceSpec, InstanceState, LogLine, LogStream, PublishedPort, Scope,
};
use crate::error::{Error, Result};
use crate::model::{VolumeSource, MIGRATE_SYSCTL};

/// Creates the container through the silent transport: the body holds the secrets' values.
pub(super) async fn create(d: &DockerBackend, spec: &InstanceSpec) -> Result<String> {
    let mut body = super::create::create_body(spec, d.ephemeral_bind)?;
    if spec.container.sysctls.contains_key(MIGRATE_SYSCTL) && !kernel_at_least(d, (5, 14)).await {
        // The ingress's listener asks for it; an older kernel has no such setting, and the
        // container would not start with it. Its listeners are still shared, without the queue
        // hand-over.
        if let Some(sysctls) = body.host_config.as_mut().and_then(|h| h.sysctls.as_mut()) {
            sysctls.remove(MIGRATE_SYSCTL);
        }
    }
    if let Some(old) = &spec.inherit_volumes_from {
        let inherited = anonymous_volumes(d, old, spec).await?;
        if !inherited.is_empty() {
            let host = body.host_config.get_or_insert_with(Default::default);
            host.mounts.get_or_insert_with(Vec::new).extend(inherited);
        }
    }
    let id = d.transport.create_container(&spec.name, &body, spec.container.mac_address.as_deref()).await?;
    // The engine (API 1.41) joins one network at creation; the others before it starts.
    for network in &spec.networks {
        let aliases = std::iter::once(spec.service.clone()).chain(spec.aliases.iter().cloned()).collect();
        let request = bollard::models::NetworkConnectRequest {
            container: id.clone(),
            endpoint_config: Some(bollard::models::EndpointSettings { aliases: Some(aliases), ..Default::default() }),
        };
        if let Err(e) = d.call("join network", network, d.docker.connect_network(network, request)).await {
            let _ = remove(d, &id).await;
            return Err(e);
        }
    }
    Ok(id)
}

/// Whether the engine's host runs at least kernel `version` (major, minor); an unreadable version
/// counts as older.
async fn kernel_at_least(d: &DockerBackend, version: (u32, u32)) -> bool {
    let kernel = d
        .kernel
        .get_or_init(|| async {
            let info = d.call("read the engine's host", &d.endpoint, d.docker.info()).await.ok()?;
            kernel_version(info.kernel_version.as_deref()?)
        })
        .await;
    kernel.is_some_and(|k| k >= version)
}

/// `6.1.0-18-amd64` → (6, 1).
fn kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The anonymous volumes of the container `old` (its image's `VOLUME`s: volumes named by the
/// engine, 64 hexadecimal digits) at the paths where `spec` mounts nothing, as mounts for its
/// replacement. A container already gone leaves nothing to take over.
async fn anonymous_volumes(d: &DockerBackend, old: &str, spec: &InstanceSpec) -> Result<Vec<bollard::models::Mount>> {
    // Through the library's own transport: bollard's would log the answer, secrets and all.
    let Some(c) = d.transport.inspect_container(old).await? else { return Ok(Vec::new()) };
    let covered =
        |target: &str| spec.volumes.iter().any(|v| v.target.trim_end_matches('/') == target.trim_end_matches('/'));
    Ok(c.mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| Some((m.name?, m.destination?, m.rw.unwrap_or(true))))
        .filter(|(name, dest, _)| is_anonymous(name) && !covered(dest))
        .map(|(name, dest, rw)| bollard::models::Mount {
            typ: Some(bollard::models::MountType::VOLUME),
            source: Some(name),
            target: Some(dest),
            read_only: Some(!rw),
            ..Default::default()
        })
        .collect())
}

/// What only the engine can tell about `spec`: its CPU limit against the host's cores, and its
/// bind mount sources (the engine is asked to create a container that mounts them, then it is
/// removed: the engine says which source does not exist, wherever the engine runs).
pub(super) async fn check(d: &DockerBackend, spec: &InstanceSpec) -> Result<()> {
    let invalid = |field: &'static str, reason: String| {
        Error::Invalid(crate::error::ValidationError::InvalidValue {
            owner: format!("service `{}`", spec.service),
            field,
            reason,
        })
    };
    if let Some(cpus) = spec.resources.cpus {
        let cores = d
            .cores
            .get_or_try_init(|| async {
                let info = d.call("read the engine's host", &d.endpoint, d.docker.info()).await?;
                Ok::<_, Error>(info.ncpu.unwrap_or(0))
            })
            .await?;
        if *cores > 0 && cpus > *cores as f64 {
            return Err(invalid(
                "resources",
                format!(
                    "cpus {cpus} is more than the {cores} core(s) of {}; Docker refuses a limit above them",
                    d.endpoint
                ),
            ));
        }
    }
    for network in &spec.networks {
        match d.docker.inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                return Err(invalid(
                    "networks",
                    format!(
                        "network {network} does not exist on {}; create it there (docker network create {network}), or drop it from the service",
                        d.endpoint
                    ),
                ))
            }
            Err(e) => return Err(engine_error("inspect network", network, &e)),
        }
    }
    for v in &spec.volumes {
        // A volume that exists already keeps the options it was created with.
        if let VolumeSource::Named(n) = &v.source {
            let name = spec.scope.volume_name(n);
            if let Ok(existing) = d.docker.inspect_volume(&name).await {
                let have: std::collections::BTreeMap<String, String> = existing.options.into_iter().collect();
                if have != v.options.driver_opts {
                    return Err(super::network::volume_options_differ(&name, &have, &v.options.driver_opts));
                }
            }
        }
        if let VolumeSource::External(name) = &v.source {
            match d.docker.inspect_volume(name).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    return Err(invalid(
                        "volumes",
                        format!(
                            "external volume {name} does not exist on {}; create it there (docker volume create {name}) or let the environment own it",
                            d.endpoint
                        ),
                    ))
                }
                Err(e) => return Err(engine_error("inspect volume", name, &e)),
            }
        }
    }
    let binds: Vec<Mount> = spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(n, v)| match &v.source {
            // The engine creates a missing source of these.
            VolumeSource::Bind(_) if v.options.create_host_path => None,
            VolumeSource::Bind(p) => Some(Mount {
                target: Some(format!("/harbormaster-check/{n}")),
                source: Some(p.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            }),
            _ => None,
        })
        .collect();
    if binds.is_empty() {
        return Ok(());
    }
    for m in binds {
        let source = m.source.clone().unwrap_or_default();
        match super::accessor::probe_mount(d, &spec.scope, m).await {
            Ok(()) => {}
            Err(message) if message.contains("does not exist") || message.contains("no such file") => {
                return Err(invalid(
                    "volumes",
                    format!(
                        "bind mount source {source} does not exist on {}; create it there, or fix the path",
                        d.endpoint
                    ),
                ))
            }
            Err(message) => {
                return Err(invalid("volumes", format!("bind mount source {source} cannot be mounted: {message}")))
            }
        }
    }
    Ok(())
}

pub(super) async fn stop(d: &DockerBackend, id: &str, grace: Duration) -> Result<()> {
    let secs = grace.as_secs_f64().ceil() as i32;
    let options = StopContainerOptionsBuilder::new().t(secs).build();
    // Stopping waits up to the grace period, so the bound is the grace period plus the call timeout.
    let fut = d.docker.stop_container(id, Some(options));
    let bound = grace.saturating_add(d.call_timeout);
    match tokio::time::timeout(bound, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if is_not_found(&e) => Ok(()),
        // 304: already stopped.
        Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. })) => Ok(()),
        Ok(Err(e)) => Err(engine_error("stop container", id, &e)),
        Err(_) => {
            Err(Error::backend("stop container", id, format!("not stopped within {}", crate::duration::human(bound))))
        }
    }
}

pub(super) async fn remove(d: &DockerBackend, id: &str) -> Result<()> {
    // `v`: the anonymous volumes its image declares (`VOLUME` in postgres, redis…) go with it;
    // named volumes are never removed by this. One it took over from the container it replaced
    // is mounted by name, which `v` leaves: it is removed after, unless another container (the
    // replaced one, kept for a rollback, or its own replacement) still holds it.
    let taken_over: Vec<String> = match d.transport.inspect_container(id).await {
        Ok(Some(c)) => c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| m.name)
            .filter(|n| is_anonymous(n))
            .collect(),
        _ => Vec::new(),
    };
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    let removed = remove_container(d, id, options).await;
    if removed.is_ok() {
        for v in taken_over {
            // 404: `v` removed it; 409: still in use. Either way nothing to do.
            let _ = tokio::time::timeout(
                d.call_timeout,
                d.docker.remove_volume(&v, None::<bollard::query_parameters::RemoveVolumeOptions>),
            )
            .await;
        }
    }
    removed
}

/// A volume the engine named (an anonymous one): 64 hexadecimal digits.
fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn remove_container(
    d: &DockerBackend,
    id: &str,
    options: bollard::query_parameters::RemoveContainerOptions,
) -> Result<()> {
    match tokio::time::timeout(d.call_timeout, d.docker.remove_container(id, Some(options))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if is_not_found(&e) => Ok(()),
        // 409: removal already in progress.
        Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message }))
            if message.contains("already in progress") =>
        {
            Ok(())
        }
        Ok(Err(e)) => Err(engine_error("remove container", id, &e)),
        Err(_) => Err(Error::backend(
            "remove container",
            id,
            format!("no answer within {}", crate::duration::human(d.call_timeout)),
        )),
    }
}

pub(super) async fn list(d: &DockerBackend, scope: &Scope) -> Result<Vec<Instance>> {
    let filters = HashMap::from([(
        "label",
        vec![format!("{}={}", label::PROJECT, scope.project), format!("{}={}", label::ENVIRONMENT, scope.environment)],
    )]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let summaries = d.call("list containers", &scope.qualified(), d.docker.list_containers(Some(options))).await?;
    let ids: Vec<String> = summaries.into_iter().filter_map(|s| s.id).collect();
    // Through the silent transport: the answer holds the secrets' values. A container removed
    // meanwhile is left out.
    let inspected = futures::future::join_all(ids.iter().map(|id| d.transport.inspect_container(id))).await;
    let network = scope.network_name();
    let mut out = Vec::new();
    for c in inspected {
        if let Some(c) = c? {
            if let Some(i) = to_instance(c, Some(&network)) {
                out.push(i);
            }
        }
    }
    out.sort_by(|a, b| {
        (a.service.as_str(), a.slot, a.name.as_str()).cmp(&(b.service.as_str(), b.slot, b.name.as_str()))
    });
    Ok(out)
}

pub(super) async fn inspect(d: &DockerBackend, id: &str) -> Result<Instance> {
    let c = d
        .transport
        .inspect_container(id)
        .await?
        .ok_or_else(|| Error::backend("inspect container", id, "engine answered 404: no such container"))?;
    let labels = c.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
    let network = match (labels.get(label::PROJECT), labels.get(label::ENVIRONMENT)) {
        (Some(p), Some(e)) => Some(format!("{p}-{e}")),
        _ => None,
    };
    to_instance(c, network.as_deref())
        .ok_or_else(|| Error::backend("inspect container", id, "the container is not managed by harbormaster"))
}

/// Reads what the library recorded on a container. `None` for containers without its labels.
fn to_instance(c: ContainerInspectResponse, network: Option<&str>) -> Option<Instance> {
    let config = c.config.unwrap_or_default();
    let labels = config.labels.unwrap_or_default();
    let decoded = label::InstanceLabels::read(|k| labels.get(k))?;
    let env: BTreeMap<&str, &str> = config.env.iter().flatten().filter_map(|kv| kv.split_once('=')).collect();
    let secret_env = decoded.secret_env(|k| env.get(k).map(|v| v.to_string()));
    let state_info = c.state.unwrap_or_default();
    let state = match state_info.status {
        Some(ContainerStateStatusEnum::CREATED) => InstanceState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => InstanceState::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => InstanceState::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => InstanceState::Paused,
        Some(ContainerStateStatusEnum::EXITED) => InstanceState::Exited,
        Some(ContainerStateStatusEnum::DEAD) | Some(ContainerStateStatusEnum::REMOVING) => InstanceState::Dead,
        _ => InstanceState::Unknown,
    };
    let exit_code = matches!(state, InstanceState::Exited | InstanceState::Dead | InstanceState::Restarting)
        .then_some(state_info.exit_code)
        .flatten();
    let engine_health = match state_info.health {
        None => EngineHealth::None,
        Some(h) => match h.status {
            Some(HealthStatusEnum::HEALTHY) => EngineHealth::Healthy,
            Some(HealthStatusEnum::STARTING) => EngineHealth::Starting,
            Some(HealthStatusEnum::UNHEALTHY) => EngineHealth::Unhealthy(
                h.log.and_then(|l| l.last().and_then(|r| r.output.clone())).unwrap_or_default().trim().to_string(),
            ),
            _ => EngineHealth::None,
        },
    };
    let settings = c.network_settings.unwrap_or_default();
    let mut published = Vec::new();
    for (key, bindings) in settings.ports.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse() else { continue };
        for b in bindings.unwrap_or_default() {
            if let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) {
                published.push(PublishedPort {
                    container_port,
                    protocol: proto.to_string(),
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port,
                });
            }
        }
    }
    published.sort_by_key(|p| (p.container_port, p.host_ip.contains(':'), p.host_port));
    // On the environment's network; a one-service test environment's is the default one.
    let on = |n: &str| settings.networks.as_ref()?.get(n)?.ip_address.clone().filter(|ip| !ip.is_empty());
    // On the host's network, the container's ports are the host's own.
    let host_network = c.host_config.as_ref().and_then(|h| h.network_mode.as_deref()) == Some("host");
    let ip = if host_network {
        Some(IpAddr::from(std::net::Ipv4Addr::LOCALHOST))
    } else {
        network.and_then(on).or_else(|| on(crate::backend::DEFAULT_NETWORK)).and_then(|ip| ip.parse::<IpAddr>().ok())
    };
    let restarts = c.restart_count.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    let id = c.id.unwrap_or_default();
    let name = c.name.unwrap_or_default().trim_start_matches('/').to_string();
    Some(Instance {
        restarts,
        state,
        exit_code,
        engine_health,
        published,
        ip,
        created: c.created.map(|d| sortable_timestamp(&d.to_string())).unwrap_or_default(),
        secret_env,
        ..Instance::labelled(decoded, id, name, c.image.unwrap_or_default())
    })
}

/// Docker's RFC 3339 timestamps trim trailing zeros of the fraction (`.12Z`, `.123Z`); pad it to
/// nanoseconds so that string order is time order.
pub(super) fn sortable_timestamp(ts: &str) -> String {
    let Some((whole, rest)) = ts.split_once('.') else { return ts.to_string() };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let zone = &rest[digits.len()..];
    format!("{whole}.{digits:0<9}{zone}")
}

pub(super) async fn wait_exit(d: &DockerBackend, id: &str) -> Result<i64> {
    let options = WaitContainerOptionsBuilder::new().condition("not-running").build();
    let mut stream = d.docker.wait_container(id, Some(options));
    match stream.next().await {
        Some(Ok(resp)) => Ok(resp.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(engine_error("wait for container", id, &e)),
        None => {
            let c = d.transport.inspect_container(id).await?;
            Ok(c.and_then(|c| c.state).and_then(|s| s.exit_code).unwrap_or(-1))
        }
    }
}

fn log_lines(instance: &str, out: LogOutput) -> Vec<LogLine> {
    let (stream, bytes) = match out {
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => (LogStream::Stdout, message),
        LogOutput::StdIn { .. } => return Vec::new(),
    };
    // A container may print its secrets; what comes back is scrubbed of them.
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| LogLine { instance: instance.to_string(), stream, text: crate::scrub::text(l).into_owned() })
        .collect()
}

pub(super) async fn logs_tail(d: &DockerBackend, id: &str, lines: usize) -> Result<Vec<String>> {
    let collect = async {
        let mut out = Vec::new();
        let mut s = logs(d, id, false, Some(lines));
        while let Some(item) = s.next().await {
            out.push(item?.text);
        }
        Ok::<_, Error>(out)
    };
    match tokio::time::timeout(d.call_timeout, collect).await {
        Ok(r) => r,
        Err(_) => Err(Error::backend("read logs", id, "no answer in time")),
    }
}

pub(super) fn logs(
    d: &DockerBackend,
    id: &str,
    follow: bool,
    tail: Option<usize>,
) -> BoxStream<'static, Result<LogLine>> {
    let tail = tail.map(|t| t.to_string()).unwrap_or_else(|| "all".to_string());
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).follow(follow).tail(&tail).build();
    let name = id.to_string();
    d.docker
        .logs(id, Some(options))
        .flat_map(move |item| {
            let lines: Vec<Result<LogLine>> = match item {
                Ok(out) => log_lines(&name, out).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(engine_error("read logs", name.as_str(), &e))],
            };
            futures::stream::iter(lines)
        })
        .boxed()
}

pub(super) async fn exec(d: &DockerBackend, id: &str, command: &[String], timeout: Duration) -> Result<ExecOutput> {
    let run = async {
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let created = d.docker.create_exec(id, options).await.map_err(|e| engine_error("exec", id, &e))?;
        let mut stdout = String::new();
        let mut stderr = String::new();
        match d.docker.start_exec(&created.id, None).await.map_err(|e| engine_error("exec", id, &e))? {
            StartExecResults::Attached { mut output, .. } => {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| engine_error("exec", id, &e))? {
                        LogOutput::StdErr { message } => stderr.push_str(&String::from_utf8_lossy(&message)),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            stdout.push_str(&String::from_utf8_lossy(&message))
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                }
            }
            StartExecResults::Detached => {}
        }
        let inspected = d.docker.inspect_exec(&created.id).await.map_err(|e| engine_error("exec", id, &e))?;
        crate::scrub::in_place(&mut stdout);
        crate::scrub::in_place(&mut stderr);
        Ok(ExecOutput { exit_code: inspected.exit_code.unwrap_or(-1), stdout, stderr })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(Error::backend(
            "exec",
            id,
            format!("{command:?} did not finish within {}", crate::duration::human(timeout)),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_sort_by_time() {
        let a = super::sortable_timestamp("2026-11-22T06:01:02.12Z");
        let b = super::sortable_timestamp("2026-11-22T06:01:02.123Z");
        assert_eq!(a, "2026-11-22T06:01:02.120000000Z");
        assert!(a < b);
        assert_eq!(super::sortable_timestamp("2026-11-22T06:01:02Z"), "2026-11-22T06:01:02Z");
    }

    #[test]
    fn kernel_versions_are_read_as_docker_reports_them() {
        assert_eq!(super::kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(super::kernel_version("5.14.21-150400.24.46-default"), Some((5, 14)));
        assert_eq!(super::kernel_version("4.19"), Some((4, 19)));
        assert_eq!(super::kernel_version("weird"), None);
    }
}
