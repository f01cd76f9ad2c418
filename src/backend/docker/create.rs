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
    let own_network = !matches!(
        opts.network_mode,
        Some(NetworkMode::Host | NetworkMode::None | NetworkMode::Container(_) | NetworkMode::Service(_))
    );

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container, p.protocol.as_str());
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        let (host_port, default_ip) = match p.publish {
            Publish::No => continue,
            _ if !own_network => continue,
            Publish::Ephemeral => (String::new(), ephemeral_bind),
            Publish::Fixed(h) => (h.to_string(), None),
        };
        let host_ip = p.host_ip.or(default_ip).map(|ip| ip.to_string());
        let binding = PortBinding { host_ip, host_port: Some(host_port) };
        bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
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
    if opts.network_mode.is_none() && opts.mac_address.is_some() {
        // API 1.41 gives `Config.MacAddress` to the endpoint on the network the network mode
        // names: the environment's, as `docker run --network NAME --mac-address` sets it.
        host_config.network_mode = Some(spec.scope.network_name());
    }

    // The service name (and its aliases) is its DNS name on the environment's network (the
    // default network has none).
    let networking_config = match &opts.network_mode {
        Some(_) => None,
        None => {
            let aliases = (!spec.scope.default_network)
                .then(|| std::iter::once(spec.service.clone()).chain(spec.aliases.iter().cloned()).collect());
            // Later APIs take the MAC address per endpoint (API 1.41: `Config.MacAddress`, set
            // by the transport).
            let endpoint = EndpointSettings { aliases, mac_address: opts.mac_address.clone(), ..Default::default() };
            Some(NetworkingConfig { endpoints_config: Some(HashMap::from([(spec.scope.network_name(), endpoint)])) })
        }
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image_id.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.command.clone(),
        env: Some(env),
        // The engine keeps one map: the annotations are labels too.
        labels: Some(spec.labels.iter().chain(&spec.annotations).map(|(k, v)| (k.clone(), v.clone())).collect()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerOptions, Device, DeviceRequest, Service, Ulimit, Volume};

    fn body(svc: Service) -> ContainerCreateBody {
        create_body(&crate::backend::InstanceSpec::of_service(&svc), None).unwrap()
    }

    #[test]
    fn every_option_reaches_the_create_body() {
        let opts = ContainerOptions::new()
            .privileged()
            .cap_add("NET_ADMIN")
            .cap_drop("MKNOD")
            .security_opt("no-new-privileges:true")
            .read_only_root()
            .init(true)
            .sysctl("net.core.somaxconn", "1024")
            .ulimit("nofile", Ulimit::new(10, 20))
            .dns("9.9.9.9")
            .dns_search("example.com")
            .dns_option("ndots:2")
            .extra_host("db", "10.0.0.2")
            .hostname("h")
            .stop_signal("SIGQUIT")
            .runtime("runc")
            .device(Device::new("/dev/fuse"))
            .group_add("mail")
            .tty()
            .stdin_open()
            .pid("host")
            .ipc("shareable")
            .uts("host")
            .shm_size(1 << 20)
            .oom_score_adj(-10)
            .device_request(DeviceRequest::all_gpus());
        let svc = Service::builder("x")
            .image("a:1")
            .container(opts)
            .alias("other-name")
            .volume(Volume::bind("/srv/a").at("/a").relabel(crate::model::Relabel::Private).read_only())
            .volume(Volume::bind("/srv/b").at("/b").create_host_path())
            .volume(Volume::bind("/srv/c").at("/c").propagation(crate::model::Propagation::Rshared))
            .volume(Volume::named("data").at("/data").no_copy())
            .volume(Volume::external("legacy").at("/legacy"))
            .volume(Volume::tmpfs().at("/tmp").size_bytes(1 << 20).mode(0o1777).tmpfs_flag("noexec"))
            .build()
            .unwrap();
        let b = body(svc);
        let h = b.host_config.unwrap();
        assert_eq!(h.privileged, Some(true));
        assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".into()]));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.init, Some(true));
        assert_eq!(h.sysctls.unwrap()["net.core.somaxconn"], "1024");
        assert_eq!(h.extra_hosts, Some(vec!["db:10.0.0.2".into()]));
        assert_eq!(h.uts_mode.as_deref(), Some("host"));
        assert_eq!(h.device_requests.unwrap()[0].count, Some(-1));
        let binds = h.binds.unwrap();
        assert_eq!(binds, vec!["/srv/a:/a:ro,Z".to_string(), "/srv/b:/b:rw".to_string()]);
        let mounts = h.mounts.unwrap();
        assert!(mounts.iter().any(|m| m.target.as_deref() == Some("/c") && m.bind_options.is_some()));
        assert!(mounts.iter().any(|m| m.source.as_deref() == Some("p-e-data") && m.volume_options.is_some()));
        assert!(mounts.iter().any(|m| m.source.as_deref() == Some("legacy")));
        assert_eq!(h.tmpfs.unwrap()["/tmp"], "size=1048576,mode=1777,noexec");
        assert_eq!(b.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(b.hostname.as_deref(), Some("h"));
        let aliases = b.networking_config.unwrap().endpoints_config.unwrap()["p-e"].aliases.clone().unwrap();
        assert_eq!(aliases, vec!["x".to_string(), "other-name".to_string()]);
    }

    #[test]
    fn a_namespace_of_its_own_publishes_nothing_and_joins_no_network() {
        let svc = Service::builder("x")
            .image("a:1")
            .network_mode(crate::model::NetworkMode::Host)
            .port(crate::model::Port::tcp(8080))
            .build()
            .unwrap();
        let b = body(svc);
        assert!(b.networking_config.is_none());
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert!(h.port_bindings.is_none());
        assert_eq!(b.exposed_ports, Some(vec!["8080/tcp".to_string()]));
    }
}
