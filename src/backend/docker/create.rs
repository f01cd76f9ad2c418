//! Where a container comes from: an [`InstanceSpec`] as the engine's container-create body
//! ([`create_body`]). Every field of the service that the engine applies is mapped here:
//!
//! | spec | create body |
//! |---|---|
//! | image, entrypoint, command, env + secrets, user, workdir | `Image`, `Entrypoint`, `Cmd`, `Env`, `User`, `WorkingDir` |
//! | ports | `ExposedPorts`, `HostConfig.PortBindings` |
//! | named, external volumes; binds | `HostConfig.Mounts`; a mount with SELinux relabelling, or a bind created when missing, as `HostConfig.Binds` (`src:dst:ro,z`), which is the only form that takes them |
//! | tmpfs mounts | `HostConfig.Tmpfs` (`size`, `mode` and flags as mount options) |
//! | resources | `NanoCpus`, `Memory`, `MemoryReservation`, `MemorySwap`, `MemorySwappiness`, `PidsLimit`, `CpuShares`, `CpuQuota`, `CpuPeriod`, `CpusetCpus` |
//! | container options | `Privileged`, `CapAdd`, `CapDrop`, `SecurityOpt`, `ReadonlyRootfs`, `Init`, `Sysctls`, `Ulimits`, `Dns*`, `ExtraHosts`, `NetworkMode`, `Runtime`, `Devices`, `DeviceCgroupRules`, `GroupAdd`, `PidMode`, `IpcMode`, `UsernsMode`, `CgroupnsMode`, `CgroupParent`, `ShmSize`, `OomScoreAdj`, `OomKillDisable`, `StorageOpt`, `LogConfig`; `Hostname`, `Domainname`, `StopSignal`, `Tty`, `OpenStdin`, `Healthcheck` |
//! | the environment's network, aliases | `NetworkingConfig` (none for a network mode of its own) |

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HealthConfig, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountType, MountVolumeOptions,
    NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};

use crate::backend::InstanceSpec;
use crate::error::{Error, Result};
use crate::model::{
    ContainerOptions, NetworkMode, Propagation, Publish, Relabel, Resources, RestartPolicy, Volume, VolumeSource,
};

/// Translates an [`InstanceSpec`] into the engine's container-create body. An ephemeral port without
/// an address of its own binds to `ephemeral_bind` (every address if `None`).
pub(crate) fn create_body(spec: &InstanceSpec, ephemeral_bind: Option<IpAddr>) -> Result<ContainerCreateBody> {
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(spec.secrets.iter().map(|(k, s)| format!("{k}={}", s.expose())));
    let opts = &spec.container;
    // A network namespace of the host's or another container's publishes nothing itself.
    let own_network =
        !matches!(opts.network_mode, Some(NetworkMode::Host | NetworkMode::None | NetworkMode::Container(_)));

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container, p.protocol.as_str());
        exposed.push(key.clone());
        let (host_port, default_ip) = match p.publish {
            Publish::No => continue,
            _ if !own_network => continue,
            Publish::Ephemeral => (String::new(), ephemeral_bind),
            Publish::Fixed(h) => (h.to_string(), None),
        };
        let host_ip = p.host_ip.or(default_ip).map(|ip| ip.to_string());
        let binding = PortBinding { host_ip, host_port: Some(host_port) };
        bindings.insert(key, Some(vec![binding]));
    }

    let Mounts { api: mounts, binds, tmpfs } = mounts(spec)?;
    let mut host_config = HostConfig {
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        binds: (!binds.is_empty()).then_some(binds),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        restart_policy: Some(restart(spec.restart)),
        ..Default::default()
    };
    resources(&mut host_config, &spec.resources);
    options(&mut host_config, opts);

    // The service name (and its aliases) is its DNS name on the environment's network (the
    // default network has none).
    let networking_config = match &opts.network_mode {
        Some(_) => None,
        None => {
            let aliases = (!spec.scope.default_network)
                .then(|| std::iter::once(spec.service.clone()).chain(spec.aliases.iter().cloned()).collect());
            let endpoint = EndpointSettings { aliases, ..Default::default() };
            Some(NetworkingConfig { endpoints_config: Some(HashMap::from([(spec.scope.network_name(), endpoint)])) })
        }
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image_id.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.command.clone(),
        env: Some(env),
        labels: Some(spec.labels.clone().into_iter().collect()),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_timeout: Some(spec.stop_grace.as_secs_f64().ceil() as i64),
        hostname: opts.hostname.clone(),
        domainname: opts.domainname.clone(),
        stop_signal: opts.stop_signal.clone(),
        tty: opts.tty.then_some(true),
        open_stdin: opts.stdin_open.then_some(true),
        healthcheck: opts.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval.map(nanos),
            timeout: h.timeout.map(nanos),
            retries: h.retries.map(i64::from),
            start_period: h.start_period.map(nanos),
            start_interval: None,
        }),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn restart(policy: RestartPolicy) -> DockerRestart {
    let (name, max) = match policy {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        RestartPolicy::OnFailure(n) => (RestartPolicyNameEnum::ON_FAILURE, Some(i64::from(n))),
    };
    DockerRestart { name: Some(name), maximum_retry_count: max }
}

/// A spec's mounts as the engine takes them.
#[derive(Default)]
struct Mounts {
    /// Mounts API entries.
    api: Vec<Mount>,
    /// `Binds` strings: the binds only that form can express.
    binds: Vec<String>,
    /// Tmpfs mounts with their options.
    tmpfs: HashMap<String, String>,
}

fn mounts(spec: &InstanceSpec) -> Result<Mounts> {
    let Mounts { api: mut mounts, mut binds, mut tmpfs } = Mounts::default();
    for v in &spec.volumes {
        match &v.source {
            VolumeSource::Named(_) | VolumeSource::External(_) => {
                let name = match &v.source {
                    VolumeSource::Named(n) => spec.scope.volume_name(n),
                    VolumeSource::External(n) => n.clone(),
                    _ => String::new(),
                };
                // Only the `Binds` form relabels for SELinux.
                match v.options.selinux.is_some().then(|| bind_string(v, &name)).flatten() {
                    Some(b) => binds.push(b),
                    None => mounts.push(volume_mount(v, name)),
                }
            }
            VolumeSource::Bind(p) => {
                let abs = std::path::absolute(p).map_err(|e| {
                    Error::backend("create container", &spec.name, format!("bind mount source {}: {e}", p.display()))
                })?;
                let source = abs.to_string_lossy().into_owned();
                if v.options.selinux.is_some() || v.options.create_host_path {
                    binds.push(bind_string(v, &source).ok_or_else(|| {
                        Error::backend(
                            "create container",
                            &spec.name,
                            format!("bind mount source {source} holds a `:`, which a bind with SELinux relabelling or a created source cannot name"),
                        )
                    })?);
                } else {
                    mounts.push(Mount {
                        target: Some(v.target.clone()),
                        source: Some(source),
                        typ: Some(MountType::BIND),
                        read_only: Some(v.read_only),
                        bind_options: v
                            .options
                            .propagation
                            .map(|p| MountBindOptions { propagation: Some(propagation(p)), ..Default::default() }),
                        ..Default::default()
                    });
                }
            }
            VolumeSource::Tmpfs => {
                tmpfs.insert(v.target.clone(), tmpfs_options(v));
            }
        }
    }
    Ok(Mounts { api: mounts, binds, tmpfs })
}

fn volume_mount(v: &Volume, source: String) -> Mount {
    Mount {
        target: Some(v.target.clone()),
        source: Some(source),
        typ: Some(MountType::VOLUME),
        read_only: Some(v.read_only),
        volume_options: v.options.no_copy.then(|| MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
        ..Default::default()
    }
}

/// `source:target[:ro][,z|Z][,propagation]`, or `None` when a path holds a `:`.
fn bind_string(v: &Volume, source: &str) -> Option<String> {
    if source.contains(':') || v.target.contains(':') {
        return None;
    }
    let mut opts = vec![if v.read_only { "ro" } else { "rw" }];
    match v.options.selinux {
        Some(Relabel::Shared) => opts.push("z"),
        Some(Relabel::Private) => opts.push("Z"),
        None => {}
    }
    if let Some(p) = v.options.propagation {
        opts.push(p.as_str());
    }
    if v.options.no_copy {
        opts.push("nocopy");
    }
    Some(format!("{source}:{}:{}", v.target, opts.join(",")))
}

fn propagation(p: Propagation) -> MountBindOptionsPropagationEnum {
    match p {
        Propagation::Private => MountBindOptionsPropagationEnum::PRIVATE,
        Propagation::Rprivate => MountBindOptionsPropagationEnum::RPRIVATE,
        Propagation::Shared => MountBindOptionsPropagationEnum::SHARED,
        Propagation::Rshared => MountBindOptionsPropagationEnum::RSHARED,
        Propagation::Slave => MountBindOptionsPropagationEnum::SLAVE,
        Propagation::Rslave => MountBindOptionsPropagationEnum::RSLAVE,
    }
}

/// A tmpfs mount's options as the engine takes them: `ro`, `size=N`, `mode=OCTAL`, flags.
fn tmpfs_options(v: &Volume) -> String {
    let o = &v.options;
    let mut out: Vec<String> = Vec::new();
    if v.read_only {
        out.push("ro".into());
    }
    if let Some(size) = o.tmpfs_size {
        out.push(format!("size={size}"));
    }
    if let Some(mode) = o.tmpfs_mode {
        out.push(format!("mode={mode:o}"));
    }
    out.extend(o.tmpfs_flags.iter().cloned());
    out.join(",")
}

fn resources(h: &mut HostConfig, r: &Resources) {
    // Bounded when built; `as` from f64 saturates, and the products are checked.
    h.nano_cpus = r.cpus.map(|c| (c * 1e9).round() as i64);
    h.memory = r.memory_limit_bytes().map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    h.memory_reservation = r.memory_reservation.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    h.memory_swap = r.memory_swap;
    h.memory_swappiness = r.memory_swappiness.map(i64::from);
    h.pids_limit = r.pids;
    h.cpu_shares = r.cpu_shares.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    h.cpu_quota = r.cpu_quota;
    h.cpu_period = r.cpu_period.map(|p| i64::try_from(p).unwrap_or(i64::MAX));
    h.cpuset_cpus = r.cpuset.clone();
}

fn options(h: &mut HostConfig, o: &ContainerOptions) {
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    h.privileged = o.privileged.then_some(true);
    h.cap_add = list(&o.cap_add);
    h.cap_drop = list(&o.cap_drop);
    h.security_opt = list(&o.security_opt);
    h.readonly_rootfs = o.read_only_root.then_some(true);
    h.init = o.init;
    h.sysctls = (!o.sysctls.is_empty()).then(|| o.sysctls.clone().into_iter().collect());
    h.ulimits = (!o.ulimits.is_empty()).then(|| {
        o.ulimits
            .iter()
            .map(|(name, u)| ResourcesUlimits { name: Some(name.clone()), soft: Some(u.soft), hard: Some(u.hard) })
            .collect()
    });
    h.dns = list(&o.dns);
    h.dns_search = list(&o.dns_search);
    h.dns_options = list(&o.dns_options);
    h.extra_hosts = (!o.extra_hosts.is_empty())
        .then(|| o.extra_hosts.iter().map(|e| format!("{}:{}", e.host, e.address)).collect());
    h.network_mode = o.network_mode.as_ref().map(ToString::to_string);
    h.runtime = o.runtime.clone();
    h.devices = (!o.devices.is_empty()).then(|| {
        o.devices
            .iter()
            .map(|d| DeviceMapping {
                path_on_host: Some(d.host.clone()),
                path_in_container: Some(d.container.clone()),
                cgroup_permissions: Some(d.permissions.clone()),
            })
            .collect()
    });
    h.device_cgroup_rules = list(&o.device_cgroup_rules);
    h.group_add = list(&o.group_add);
    h.pid_mode = o.pid.clone().filter(|p| !p.is_empty());
    h.ipc_mode = o.ipc.clone().filter(|p| !p.is_empty());
    h.userns_mode = o.userns.clone().filter(|p| !p.is_empty());
    h.cgroupns_mode = o.cgroup.as_deref().map(|c| match c {
        "host" => HostConfigCgroupnsModeEnum::HOST,
        _ => HostConfigCgroupnsModeEnum::PRIVATE,
    });
    h.cgroup_parent = o.cgroup_parent.clone();
    h.shm_size = o.shm_size.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
    h.oom_score_adj = o.oom_score_adj;
    h.oom_kill_disable = o.oom_kill_disable.then_some(true);
    h.storage_opt = (!o.storage_opt.is_empty()).then(|| o.storage_opt.clone().into_iter().collect());
    h.uts_mode = o.uts.clone();
    h.device_requests = (!o.device_requests.is_empty()).then(|| {
        o.device_requests
            .iter()
            .map(|r| bollard::models::DeviceRequest {
                driver: r.driver.clone(),
                count: r.count.or(r.device_ids.is_empty().then_some(-1)),
                device_ids: (!r.device_ids.is_empty()).then(|| r.device_ids.clone()),
                capabilities: Some(vec![r.capabilities.clone()]),
                options: (!r.options.is_empty()).then(|| r.options.clone().into_iter().collect()),
            })
            .collect()
    });
    h.log_config = o.logging.as_ref().map(|l| HostConfigLogConfig {
        typ: Some(l.driver.clone()),
        config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
    });
}
