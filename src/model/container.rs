//! [`ContainerOptions`]: what a container runs with beyond its image, command, environment,
//! ports and mounts: privileges and capabilities, namespaces, kernel settings, DNS, devices, the
//! stop signal, the engine's own health check and logging. They are `docker run` flags (and
//! compose keys); the Docker engine honours every one, and a target that cannot express one
//! refuses it in the plan, with the reason, before anything changes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limits::show;

/// Options of a service's containers that the engine applies when it creates them. Every field
/// defaults to the engine's own default; set them on [`ServiceBuilder`](crate::ServiceBuilder)
/// (`.cap_add("NET_ADMIN")`, `.read_only_root()`, `.sysctl(..)`, …) or here with
/// [`ServiceBuilder::container`](crate::ServiceBuilder::container).
///
/// ```
/// use harbormaster::{ContainerOptions, NetworkMode, Service, Ulimit};
/// let vpn = Service::builder("vpn")
///     .image("local/vpn:1")
///     .cap_add("NET_ADMIN")
///     .device("/dev/net/tun")
///     .sysctl("net.ipv6.conf.all.disable_ipv6", "1")
///     .build()?;
/// let opts = ContainerOptions::new().read_only_root().ulimit("nofile", Ulimit::new(20_000, 40_000));
/// let web = Service::builder("web").image("local/web:1").container(opts).build()?;
/// assert!(web.container_options().is_read_only_root());
/// # let _ = (vpn, NetworkMode::Host);
/// # Ok::<_, harbormaster::ValidationError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerOptions {
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) security_opt: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) read_only_root: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) init: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) sysctls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) dns_options: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) extra_hosts: Vec<HostEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) network_mode: Option<NetworkMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mac_address: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) devices: Vec<Device>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) device_cgroup_rules: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) group_add: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) tty: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) stdin_open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) userns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shm_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) oom_score_adj: Option<i64>,
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) oom_kill_disable: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) storage_opt: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logging: Option<Logging>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) healthcheck: Option<EngineHealthcheck>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) device_requests: Vec<DeviceRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uts: Option<String>,
}

/// Devices requested from a driver (GPUs: `docker run --gpus`, compose's `gpus` and
/// `deploy.resources.reservations.devices`). The engine needs the driver installed (for NVIDIA
/// GPUs, the NVIDIA container toolkit); it refuses the container otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceRequest {
    /// The driver (`nvidia`); none lets the engine choose by capability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// How many devices: `-1` for all of them (the default when no device IDs are given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Particular devices, by ID or index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    /// The capabilities every device must have (`gpu`, `compute`, `utility`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Driver options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl DeviceRequest {
    /// Every GPU (`--gpus all`).
    pub fn all_gpus() -> DeviceRequest {
        DeviceRequest { count: Some(-1), capabilities: vec!["gpu".into()], ..DeviceRequest::default() }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A soft and hard resource limit (`ulimit -S` / `-H`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// The soft limit.
    pub soft: i64,
    /// The hard limit (at least the soft one).
    pub hard: i64,
}

impl Ulimit {
    /// A soft and a hard limit.
    pub fn new(soft: i64, hard: i64) -> Ulimit {
        Ulimit { soft, hard }
    }

    /// The same value as soft and hard limit.
    pub fn both(limit: i64) -> Ulimit {
        Ulimit { soft: limit, hard: limit }
    }
}

/// An `/etc/hosts` entry: a host name and the address it resolves to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// The host name.
    pub host: String,
    /// An IP address, or `host-gateway` (the engine's host, as Docker resolves it).
    pub address: String,
}

/// A host device made available in the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The device on the host (`/dev/ttyUSB0`).
    pub host: String,
    /// Where it appears in the container (default: the same path).
    pub container: String,
    /// The cgroup permissions: some of `r`, `w`, `m` (default `rwm`).
    pub permissions: String,
}

impl Device {
    /// `host` at the same path in the container, with `rwm` permissions.
    pub fn new(host: impl Into<String>) -> Device {
        let host = host.into();
        Device { container: host.clone(), host, permissions: "rwm".into() }
    }

    /// Where it appears in the container.
    pub fn at(mut self, container: impl Into<String>) -> Device {
        self.container = container.into();
        self
    }

    /// The cgroup permissions (`r`, `rw`, `rwm`, …).
    pub fn permissions(mut self, permissions: impl Into<String>) -> Device {
        self.permissions = permissions.into();
        self
    }
}

/// Which network namespace a service's containers use. Without one they join the environment's
/// network, where every service reaches every other by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The host's own network stack (`network_mode: host`): ports are the host's, no published
    /// ports, and the service is not reachable by name.
    Host,
    /// No network at all but loopback (`network_mode: none`).
    None,
    /// The engine's default bridge network (`network_mode: bridge`): no name resolution of the
    /// other services.
    Bridge,
    /// Another container's, by its engine name (`network_mode: container:NAME`); it must exist
    /// and run before this service starts.
    Container(String),
    /// The running instance of another service of the environment (`network_mode:
    /// service:NAME`: a VPN client's namespace, shared by what must go through it). This service
    /// starts once that one has, is created in the namespace of its running instance (on the same
    /// host), listens on that instance's address and ports (which that service publishes), and
    /// is replaced whenever it is. Its default rollout stops an old instance before the new one
    /// listens in the same namespace.
    Service(String),
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Container(c) => write!(f, "container:{c}"),
            NetworkMode::Service(s) => write!(f, "service:{s}"),
        }
    }
}

/// A logging driver and its options (`docker run --log-driver`, `--log-opt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    /// The driver (`json-file`, `local`, `syslog`, `none`, …).
    pub driver: String,
    /// Its options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The health check the engine itself runs and reports (`docker ps` shows it; tools that read
/// container health, such as reverse proxies, see it). Apart from the library's readiness gate
/// ([`HealthCheck`](crate::HealthCheck)), which decides when a rollout goes on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineHealthcheck {
    /// The test, in Docker's form: `["CMD", prog, args…]`, `["CMD-SHELL", script]`, `["NONE"]`
    /// (disables the image's), or empty (the image's own test, with the timings below).
    pub test: Vec<String>,
    /// Time between checks (Docker's default: 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long one check may take (Docker's default: 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Consecutive failures that make the container unhealthy (Docker's default: 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Grace time after start during which failures do not count (Docker's default: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
}

impl EngineHealthcheck {
    /// Disables the image's `HEALTHCHECK`.
    pub fn disabled() -> EngineHealthcheck {
        EngineHealthcheck {
            test: vec!["NONE".into()],
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        }
    }

    /// A test in Docker's form (see [`test`](Self::test)), with Docker's default timings.
    pub fn new<I, S>(test: I) -> EngineHealthcheck
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EngineHealthcheck {
            test: test.into_iter().map(Into::into).collect(),
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        }
    }

    /// Whether it turns the image's check off.
    pub fn is_disabled(&self) -> bool {
        self.test.first().is_some_and(|t| t == "NONE")
    }
}

macro_rules! push_setter {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self.$field.push(value.into());
            self
        }
    };
}

macro_rules! option_setter {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self.$field = Some(value.into());
            self
        }
    };
}

impl ContainerOptions {
    /// The engine's defaults for everything.
    pub fn new() -> ContainerOptions {
        ContainerOptions::default()
    }

    /// Whether nothing is set.
    pub fn is_default(&self) -> bool {
        *self == ContainerOptions::default()
    }

    /// Runs the container privileged: every capability and every device (`--privileged`).
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }

    push_setter!(
        /// Adds a Linux capability (`NET_ADMIN`, `SYS_PTRACE`, or `ALL`).
        cap_add, cap_add
    );
    push_setter!(
        /// Drops a Linux capability (or `ALL`).
        cap_drop, cap_drop
    );
    push_setter!(
        /// A security option (`no-new-privileges:true`, `seccomp=unconfined`, `apparmor=…`, `label=…`).
        security_opt, security_opt
    );

    /// Mounts the container's root filesystem read-only (`--read-only`).
    pub fn read_only_root(mut self) -> Self {
        self.read_only_root = true;
        self
    }

    /// Runs an init process as PID 1 that forwards signals and reaps zombies (`--init`), or
    /// explicitly not (`false`, over a daemon that turns it on by default).
    pub fn init(mut self, on: bool) -> Self {
        self.init = Some(on);
        self
    }

    /// A namespaced kernel parameter (`net.core.somaxconn`, `net.ipv4.ip_forward`).
    pub fn sysctl(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.sysctls.insert(key.into(), value.into());
        self
    }

    /// A resource limit (`nofile`, `nproc`, `memlock`, …).
    pub fn ulimit(mut self, name: impl Into<String>, limit: Ulimit) -> Self {
        self.ulimits.insert(name.into(), limit);
        self
    }

    push_setter!(
        /// A DNS server the container uses (an IP address).
        dns, dns
    );
    push_setter!(
        /// A DNS search domain.
        dns_search, dns_search
    );
    push_setter!(
        /// A resolver option (`ndots:2`, `use-vc`).
        dns_option, dns_options
    );

    /// An `/etc/hosts` entry: `host` resolves to `address` (an IP address, or `host-gateway`).
    pub fn extra_host(mut self, host: impl Into<String>, address: impl Into<String>) -> Self {
        self.extra_hosts.push(HostEntry { host: host.into(), address: address.into() });
        self
    }

    /// The network namespace (see [`NetworkMode`]).
    pub fn network_mode(mut self, mode: NetworkMode) -> Self {
        self.network_mode = Some(mode);
        self
    }

    option_setter!(
        /// The container's host name (default: its ID).
        hostname, hostname
    );
    option_setter!(
        /// The container's NIS domain name.
        domainname, domainname
    );
    option_setter!(
        /// The signal that stops the container (`SIGQUIT`, `SIGINT`, `SIGUSR1`; default
        /// `SIGTERM` or the image's `STOPSIGNAL`).
        stop_signal, stop_signal
    );
    option_setter!(
        /// The OCI runtime (`runc`, `runsc`, `nvidia`); the engine must know it.
        runtime, runtime
    );
    option_setter!(
        /// The MAC address on the network the container starts on (`02:42:ac:11:65:43`): one
        /// instance only, since two would clash.
        mac_address, mac_address
    );

    /// A host device (see [`Device`]).
    pub fn device(mut self, device: Device) -> Self {
        self.devices.push(device);
        self
    }

    push_setter!(
        /// A device cgroup rule (`c 1:3 mr`).
        device_cgroup_rule, device_cgroup_rules
    );
    push_setter!(
        /// A supplementary group of the process, by name or number.
        group_add, group_add
    );

    /// Allocates a terminal (`-t`).
    pub fn tty(mut self) -> Self {
        self.tty = true;
        self
    }

    /// Keeps standard input open (`-i`).
    pub fn stdin_open(mut self) -> Self {
        self.stdin_open = true;
        self
    }

    option_setter!(
        /// The PID namespace: `host`, or `container:NAME`.
        pid, pid
    );
    option_setter!(
        /// The IPC namespace: `private`, `shareable`, `host`, `none`, or `container:NAME`.
        ipc, ipc
    );
    option_setter!(
        /// The user namespace mode: `host`.
        userns, userns
    );
    option_setter!(
        /// The cgroup namespace: `host` or `private`.
        cgroup, cgroup
    );
    option_setter!(
        /// The parent cgroup of the container.
        cgroup_parent, cgroup_parent
    );

    /// The size of `/dev/shm` in bytes (Docker's default: 64 MiB).
    pub fn shm_size(mut self, bytes: u64) -> Self {
        self.shm_size = Some(bytes);
        self
    }

    /// The OOM killer's preference, from -1000 (never) to 1000.
    pub fn oom_score_adj(mut self, adj: i64) -> Self {
        self.oom_score_adj = Some(adj);
        self
    }

    /// Disables the OOM killer for the container.
    pub fn oom_kill_disable(mut self) -> Self {
        self.oom_kill_disable = true;
        self
    }

    /// A storage driver option (`size=1G`).
    pub fn storage_opt(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.storage_opt.insert(key.into(), value.into());
        self
    }

    /// The logging driver and its options. The library reads logs through the engine, which
    /// keeps a copy for any driver but `none`.
    pub fn logging(mut self, logging: Logging) -> Self {
        self.logging = Some(logging);
        self
    }

    /// Devices requested from a driver, such as GPUs (see [`DeviceRequest`]).
    pub fn device_request(mut self, request: DeviceRequest) -> Self {
        self.device_requests.push(request);
        self
    }

    /// The UTS namespace: `host` shares the host's host name.
    pub fn uts(mut self, mode: impl Into<String>) -> Self {
        self.uts = Some(mode.into());
        self
    }

    /// The health check the engine runs and reports (see [`EngineHealthcheck`]).
    pub fn engine_healthcheck(mut self, check: EngineHealthcheck) -> Self {
        self.healthcheck = Some(check);
        self
    }

    /// Whether the container runs privileged.
    pub fn is_privileged(&self) -> bool {
        self.privileged
    }

    /// Capabilities added.
    pub fn capabilities_added(&self) -> &[String] {
        &self.cap_add
    }

    /// Capabilities dropped.
    pub fn capabilities_dropped(&self) -> &[String] {
        &self.cap_drop
    }

    /// Security options.
    pub fn security_options(&self) -> &[String] {
        &self.security_opt
    }

    /// Whether the root filesystem is read-only.
    pub fn is_read_only_root(&self) -> bool {
        self.read_only_root
    }

    /// The init setting, if given.
    pub fn init_process(&self) -> Option<bool> {
        self.init
    }

    /// Kernel parameters.
    pub fn sysctls(&self) -> &BTreeMap<String, String> {
        &self.sysctls
    }

    /// Resource limits.
    pub fn ulimits(&self) -> &BTreeMap<String, Ulimit> {
        &self.ulimits
    }

    /// DNS servers.
    pub fn dns_servers(&self) -> &[String] {
        &self.dns
    }

    /// DNS search domains.
    pub fn dns_search_domains(&self) -> &[String] {
        &self.dns_search
    }

    /// Resolver options.
    pub fn dns_options(&self) -> &[String] {
        &self.dns_options
    }

    /// `/etc/hosts` entries.
    pub fn extra_hosts(&self) -> &[HostEntry] {
        &self.extra_hosts
    }

    /// The network namespace, if not the environment's network.
    pub fn network(&self) -> Option<&NetworkMode> {
        self.network_mode.as_ref()
    }

    /// The host name, if set.
    pub fn host_name(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// The domain name, if set.
    pub fn domain_name(&self) -> Option<&str> {
        self.domainname.as_deref()
    }

    /// The stop signal, if set.
    pub fn stop_signal_name(&self) -> Option<&str> {
        self.stop_signal.as_deref()
    }

    /// The MAC address, if set.
    pub fn mac(&self) -> Option<&str> {
        self.mac_address.as_deref()
    }

    /// The OCI runtime, if set.
    pub fn runtime_name(&self) -> Option<&str> {
        self.runtime.as_deref()
    }

    /// Devices.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Supplementary groups.
    pub fn groups(&self) -> &[String] {
        &self.group_add
    }

    /// Whether a terminal is allocated.
    pub fn has_tty(&self) -> bool {
        self.tty
    }

    /// Whether standard input stays open.
    pub fn keeps_stdin_open(&self) -> bool {
        self.stdin_open
    }

    /// The PID namespace, if set.
    pub fn pid_mode(&self) -> Option<&str> {
        self.pid.as_deref()
    }

    /// The IPC namespace, if set.
    pub fn ipc_mode(&self) -> Option<&str> {
        self.ipc.as_deref()
    }

    /// The size of `/dev/shm` in bytes, if set.
    pub fn shm_size_bytes(&self) -> Option<u64> {
        self.shm_size
    }

    /// The OOM killer's preference, if set.
    pub fn oom_score(&self) -> Option<i64> {
        self.oom_score_adj
    }

    /// Whether the OOM killer is disabled.
    pub fn is_oom_kill_disabled(&self) -> bool {
        self.oom_kill_disable
    }

    /// The user namespace mode, if set.
    pub fn userns_mode(&self) -> Option<&str> {
        self.userns.as_deref()
    }

    /// The parent cgroup, if set.
    pub fn cgroup_parent_name(&self) -> Option<&str> {
        self.cgroup_parent.as_deref()
    }

    /// The logging driver, if set.
    pub fn logging_driver(&self) -> Option<&Logging> {
        self.logging.as_ref()
    }

    /// The engine's health check, if set.
    pub fn engine_health(&self) -> Option<&EngineHealthcheck> {
        self.healthcheck.as_ref()
    }

    /// Devices requested from drivers.
    pub fn device_requests(&self) -> &[DeviceRequest] {
        &self.device_requests
    }

    /// The UTS namespace, if set.
    pub fn uts_mode(&self) -> Option<&str> {
        self.uts.as_deref()
    }

    /// What the engine would refuse, refused when the service is built: one sentence per problem.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(mac) = &self.mac_address {
            let parts: Vec<&str> = mac.split(':').collect();
            if parts.len() != 6 || !parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())) {
                out.push(format!("MAC address {} is not six hexadecimal pairs (02:42:ac:11:65:43)", show(mac)));
            }
        }
        for cap in self.cap_add.iter().chain(&self.cap_drop) {
            let name = cap.strip_prefix("CAP_").unwrap_or(cap);
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(format!("capability {} is not a capability name (NET_ADMIN, SYS_TIME, ALL)", show(cap)));
            }
        }
        for (k, v) in &self.sysctls {
            if k.is_empty() || k.contains(|c: char| c.is_whitespace() || c == '=' || c == '\0') || v.contains('\0') {
                out.push(format!("sysctl {} must be a kernel parameter name such as net.core.somaxconn", show(k)));
            }
        }
        for (name, u) in &self.ulimits {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase()) {
                out.push(format!("ulimit {} is not a limit name (nofile, nproc, memlock, …)", show(name)));
            }
            if u.soft > u.hard {
                out.push(format!("ulimit {name}: the soft limit {} is above the hard limit {}", u.soft, u.hard));
            }
        }
        for d in &self.dns {
            if d.parse::<std::net::IpAddr>().is_err() {
                out.push(format!("DNS server {} is not an IP address", show(d)));
            }
        }
        for h in &self.extra_hosts {
            if h.host.is_empty() || h.host.contains(|c: char| c.is_whitespace() || c == ':' || c == '\0') {
                out.push(format!("extra host {} is not a host name", show(&h.host)));
            }
            if h.address != "host-gateway" && h.address.parse::<std::net::IpAddr>().is_err() {
                out.push(format!("extra host {}: {} is not an IP address (or host-gateway)", h.host, show(&h.address)));
            }
        }
        if let Some(NetworkMode::Container(c)) = &self.network_mode {
            if c.is_empty() || c.contains(|c: char| c.is_whitespace() || c == '\0') {
                out.push(format!("network mode container:{} needs a container name", show(c)));
            }
        }
        for (what, v) in [("host name", &self.hostname), ("domain name", &self.domainname)] {
            if let Some(h) = v {
                let ok = !h.is_empty()
                    && h.len() <= 253
                    && h.split('.').all(|l| {
                        // Docker takes `_` too (`plex_server`).
                        !l.is_empty()
                            && l.len() <= 63
                            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                if !ok {
                    out.push(format!("{what} {} is not an RFC 1123 host name", show(h)));
                }
            }
        }
        if let Some(s) = &self.stop_signal {
            if !valid_signal(s) {
                out.push(format!("stop signal {} is not a signal name or number (SIGQUIT, 3)", show(s)));
            }
        }
        if let Some(r) = &self.runtime {
            if r.is_empty() || r.contains(|c: char| c.is_whitespace() || c == '\0') {
                out.push(format!("runtime {} is not a runtime name", show(r)));
            }
        }
        for d in &self.devices {
            if !d.host.starts_with('/') && !d.host.contains('=') {
                out.push(format!(
                    "device {} must be an absolute path (or a CDI name vendor/class=name)",
                    show(&d.host)
                ));
            }
            if !d.container.starts_with('/') && !d.host.contains('=') {
                out.push(format!("device {}: its container path must be absolute", show(&d.host)));
            }
            if d.permissions.is_empty() || !d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                out.push(format!("device {}: permissions {} are some of r, w and m", d.host, show(&d.permissions)));
            }
        }
        let namespace = |what: &str, v: &Option<String>, allowed: &[&str], out: &mut Vec<String>| {
            if let Some(m) = v {
                if !allowed.contains(&m.as_str()) && m.strip_prefix("container:").is_none_or(|c| c.is_empty()) {
                    out.push(format!("{what} mode {} is not one of {}, container:NAME", show(m), allowed.join(", ")));
                }
            }
        };
        namespace("PID", &self.pid, &["host", ""], &mut out);
        namespace("IPC", &self.ipc, &["private", "shareable", "host", "none", ""], &mut out);
        if let Some(u) = &self.userns {
            if u != "host" && !u.is_empty() {
                out.push(format!("user namespace mode {} is not host", show(u)));
            }
        }
        if let Some(u) = &self.uts {
            if u != "host" {
                out.push(format!("UTS namespace mode {} is not host", show(u)));
            }
        }
        for r in &self.device_requests {
            if r.count.is_some() && !r.device_ids.is_empty() {
                out.push("a device request gives a count or device IDs, not both".into());
            }
            if r.count.is_some_and(|c| c < -1 || c == 0) {
                out.push("a device request's count is positive, or -1 for all".into());
            }
        }
        if let Some(c) = &self.cgroup {
            if c != "host" && c != "private" {
                out.push(format!("cgroup namespace {} is not host or private", show(c)));
            }
        }
        if let Some(adj) = self.oom_score_adj {
            if !(-1000..=1000).contains(&adj) {
                out.push(format!("oom_score_adj {adj} is not between -1000 and 1000"));
            }
        }
        if self.shm_size == Some(0) {
            out.push("shm size 0: leave it unset for the engine's default".into());
        }
        if let Some(l) = &self.logging {
            if l.driver.is_empty() || l.driver.contains(|c: char| c.is_whitespace() || c == '\0') {
                out.push(format!("logging driver {} is not a driver name", show(&l.driver)));
            }
        }
        if let Some(h) = &self.healthcheck {
            match h.test.first().map(String::as_str) {
                None | Some("NONE") => {}
                Some("CMD") if h.test.len() > 1 => {}
                Some("CMD-SHELL") if h.test.len() == 2 => {}
                _ => out.push(format!(
                    "engine health check test {} starts with CMD (and a command), CMD-SHELL (and one script) or NONE",
                    show(&h.test.join(" "))
                )),
            }
            if h.retries == Some(0) {
                out.push("engine health check retries must be at least 1".into());
            }
            for (what, d) in [("interval", h.interval), ("timeout", h.timeout)] {
                if d.is_some_and(|d| d < Duration::from_millis(1)) {
                    out.push(format!("engine health check {what} must be at least 1 ms (Docker's minimum)"));
                }
            }
        }
        let texts = self
            .cap_add
            .iter()
            .chain(&self.cap_drop)
            .chain(&self.security_opt)
            .chain(&self.dns_search)
            .chain(&self.dns_options)
            .chain(&self.group_add)
            .chain(&self.device_cgroup_rules);
        if texts.into_iter().any(|t| t.contains('\0') || t.is_empty()) {
            out.push("an option value is empty or contains a NUL byte".into());
        }
        out
    }
}

/// A signal as Docker takes it: `SIGNAME`, `NAME` or a number from 1 to 64.
fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_empty_and_serializes_to_nothing() {
        let o = ContainerOptions::new();
        assert!(o.is_default());
        assert_eq!(serde_json::to_string(&o).unwrap(), "{}");
        assert!(o.problems().is_empty());
    }

    #[test]
    fn what_the_engine_would_refuse_is_refused() {
        let bad = ContainerOptions::new()
            .cap_add("NET ADMIN")
            .dns("not-an-ip")
            .extra_host("db", "nowhere")
            .stop_signal("KILL ME")
            .ulimit("nofile", Ulimit::new(10, 5))
            .ipc("weird")
            .oom_score_adj(5000)
            .device(Device::new("dev/tty"));
        let p = bad.problems();
        assert_eq!(p.len(), 9, "{p:#?}");
        let good = ContainerOptions::new()
            .cap_add("NET_ADMIN")
            .cap_add("CAP_SYS_TIME")
            .dns("1.1.1.1")
            .extra_host("host.docker.internal", "host-gateway")
            .stop_signal("SIGQUIT")
            .ulimit("nofile", Ulimit::new(10, 20))
            .ipc("shareable")
            .pid("host")
            .hostname("db-1.example")
            .device(Device::new("/dev/net/tun").permissions("rw"));
        assert!(good.problems().is_empty(), "{:?}", good.problems());
    }
}
