//! A service's [`ContainerOptions`], resource extras and mount options on a Swarm task, and what
//! of them a task spec (API 1.41) cannot express.
//!
//! | ours | Swarm |
//! |---|---|
//! | capabilities, sysctls, ulimits, init, read-only root, host name, groups, tty, stdin, stop signal | `ContainerSpec.CapabilityAdd`/`Drop`, `Sysctls`, `Ulimits`, `Init`, `ReadOnly`, `Hostname`, `Groups`, `TTY`, `OpenStdin`, `StopSignal` |
//! | DNS servers, search domains, options; extra hosts | `ContainerSpec.DNSConfig`; `Hosts` (`ip host`) |
//! | the engine's health check | `ContainerSpec.HealthCheck` |
//! | logging | `TaskTemplate.LogDriver` |
//! | pids limit, memory reservation | `Resources.Limits.Pids`, `Resources.Reservations.MemoryBytes` |
//! | aliases, placement constraints | network attachment `Aliases`, `Placement.Constraints` |
//! | tmpfs size and mode, volume no-copy, bind propagation | `Mount.TmpfsOptions`, `VolumeOptions.NoCopy`, `BindOptions.Propagation` |
//!
//! Refused (a task has no such setting): privileged, devices, network modes, runtime, PID/IPC/user
//! and cgroup namespaces, shared memory size, OOM settings, storage options, security options,
//! memory swap and swappiness, CPU shares, quota, period and set, SELinux relabelling, tmpfs
//! flags, a bind's source created when missing, external volumes.

use std::collections::HashMap;

use bollard::models::{
    HealthConfig, ResourcesUlimits, TaskSpecContainerSpec, TaskSpecContainerSpecDnsConfig, TaskSpecLogDriver,
};

use crate::model::{ContainerOptions, Resources, Service, Volume, VolumeSource};

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Sets what a task spec can express of `o` on `c`.
pub(super) fn apply(c: &mut TaskSpecContainerSpec, o: &ContainerOptions) {
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    c.capability_add = list(&o.cap_add);
    c.capability_drop = list(&o.cap_drop);
    c.sysctls = (!o.sysctls.is_empty()).then(|| o.sysctls.clone().into_iter().collect::<HashMap<_, _>>());
    c.ulimits = (!o.ulimits.is_empty()).then(|| {
        o.ulimits
            .iter()
            .map(|(name, u)| ResourcesUlimits { name: Some(name.clone()), soft: Some(u.soft), hard: Some(u.hard) })
            .collect()
    });
    c.init = o.init;
    c.read_only = o.read_only_root.then_some(true);
    c.hostname = o.hostname.clone();
    c.groups = list(&o.group_add);
    c.tty = o.tty.then_some(true);
    c.open_stdin = o.stdin_open.then_some(true);
    c.stop_signal = o.stop_signal.clone();
    if !(o.dns.is_empty() && o.dns_search.is_empty() && o.dns_options.is_empty()) {
        c.dns_config = Some(TaskSpecContainerSpecDnsConfig {
            nameservers: list(&o.dns),
            search: list(&o.dns_search),
            options: list(&o.dns_options),
        });
    }
    c.hosts = (!o.extra_hosts.is_empty())
        .then(|| o.extra_hosts.iter().map(|h| format!("{} {}", h.address, h.host)).collect());
    if let Some(h) = &o.healthcheck {
        c.health_check = Some(HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval.map(nanos),
            timeout: h.timeout.map(nanos),
            retries: h.retries.map(i64::from),
            start_period: h.start_period.map(nanos),
            start_interval: None,
        });
    }
}

/// The task's log driver.
pub(super) fn log_driver(o: &ContainerOptions) -> Option<TaskSpecLogDriver> {
    o.logging.as_ref().map(|l| TaskSpecLogDriver {
        name: Some(l.driver.clone()),
        options: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
    })
}

/// What a task spec cannot express of the service's options, one sentence each.
pub(crate) fn refusals(s: &Service) -> Vec<String> {
    let o = &s.container;
    let mut out = Vec::new();
    if !s.files.is_empty() {
        out.push(
            "files written into the containers: a Swarm task takes files as swarm configs and secrets, which this target does not create for them"
                .into(),
        );
    }
    let mut no = |set: bool, what: &str| {
        if set {
            out.push(format!("{what}: a Swarm task has no such setting"));
        }
    };
    no(o.privileged, "privileged");
    no(!o.devices.is_empty() || !o.device_cgroup_rules.is_empty(), "devices");
    no(o.network_mode.is_some(), "network mode");
    no(o.runtime.is_some(), "runtime");
    no(o.mac_address.is_some(), "MAC address");
    no(
        o.pid.is_some() || o.ipc.is_some() || o.userns.is_some() || o.cgroup.is_some(),
        "PID, IPC, user or cgroup namespace",
    );
    no(o.cgroup_parent.is_some(), "cgroup parent");
    no(o.shm_size.is_some(), "shared memory size");
    no(o.oom_score_adj.is_some() || o.oom_kill_disable, "OOM settings");
    no(!o.storage_opt.is_empty(), "storage options");
    no(!o.security_opt.is_empty(), "security options");
    no(o.domainname.is_some(), "domain name");
    no(!o.device_requests.is_empty(), "GPU and other device requests");
    no(o.uts.is_some(), "UTS namespace");
    if !s.networks.is_empty() {
        out.push("external networks: the service's tasks join the environment's overlay network only".into());
    }
    resource_refusals(&s.resources, &mut out);
    for v in &s.volumes {
        volume_refusals(v, &mut out);
    }
    out
}

fn resource_refusals(r: &Resources, out: &mut Vec<String>) {
    if r.memory_swap.is_some() || r.memory_swappiness.is_some() {
        out.push("memory swap: a Swarm task has no such setting".into());
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() || r.cpuset.is_some() {
        out.push("CPU shares, quota, period and set: a Swarm task limits CPUs only as a number of cores".into());
    }
}

fn volume_refusals(v: &Volume, out: &mut Vec<String>) {
    let o = &v.options;
    if o.selinux.is_some() {
        out.push(format!("mount at {}: a Swarm task cannot relabel a bind for SELinux", v.target));
    }
    if o.create_host_path {
        out.push(format!(
            "mount at {}: a Swarm task does not create a missing bind source; create it on every node",
            v.target
        ));
    }
    if !o.tmpfs_flags.is_empty() {
        out.push(format!("mount at {}: a Swarm task's tmpfs takes a size and a mode only", v.target));
    }
    if !o.driver_opts.is_empty() {
        out.push(format!("mount at {}: a Swarm task's volumes take no driver options here", v.target));
    }
    if let VolumeSource::External(n) = &v.source {
        out.push(format!("external volume {n}: a Swarm task's volumes are the environment's own"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, NetworkMode, Volume};

    #[test]
    fn what_a_task_cannot_express_is_refused_with_the_reason() {
        let s = Service::builder("x")
            .image("a:1")
            .privileged()
            .device("/dev/fuse")
            .network_mode(NetworkMode::Host)
            .volume(Volume::bind("/srv").at("/srv").create_host_path())
            .build()
            .unwrap();
        let r = refusals(&s);
        assert!(r.iter().any(|w| w.starts_with("privileged")), "{r:?}");
        assert!(r.iter().any(|w| w.starts_with("devices")), "{r:?}");
        assert!(r.iter().any(|w| w.starts_with("network mode")), "{r:?}");
        assert!(r.iter().any(|w| w.contains("create it on every node")), "{r:?}");
        let ok = Service::builder("x").image("a:1").cap_add("NET_ADMIN").sysctl("a.b", "1").build().unwrap();
        assert!(refusals(&ok).is_empty(), "{:?}", refusals(&ok));
        let _ = Device::new("/dev/x");
    }
}
