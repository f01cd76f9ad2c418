//! The keys of what a service's containers run with ([`ContainerOptions`]): privileges and
//! capabilities, namespaces, kernel settings, DNS, devices, the stop signal and logging. The
//! Docker engine honours every one; a target that cannot refuses it in the plan. Keys no target
//! of the library can honour (`external_links`, block I/O limits, …) are refused here, or
//! warned of under [`Compose::lenient`](super::Compose::lenient).
//!
//! [`ContainerOptions`]: crate::ContainerOptions

use super::context::{Problem, R};
use super::draft::Svc;
use super::values;
use super::yaml::{At, Node, Value};
use crate::model::{Device, DeviceRequest, Logging, NetworkMode, Ulimit};

/// Keys that cannot be honoured, and why.
const CANNOT: &[(&str, &str)] = &[
    ("external_links", "containers outside the environment are not linked"),
    ("blkio_config", "block I/O limits are not passed to the engine"),
    ("cpu_count", "cpu_count is a Windows engine's"),
    ("cpu_percent", "cpu_percent is a Windows engine's"),
    ("cpu_rt_runtime", "real-time CPU scheduling is not passed to the engine"),
    ("cpu_rt_period", "real-time CPU scheduling is not passed to the engine"),
    ("credential_spec", "credential specs are a Windows engine's"),
    ("isolation", "isolation is a Windows engine's"),
    ("annotations", "container annotations need Docker Engine 25 (API 1.43)"),
    ("volume_driver", "volumes use the target's local driver"),
    ("post_start", "lifecycle hooks are not run"),
    ("pre_start", "lifecycle hooks are not run"),
    ("pre_stop", "lifecycle hooks are not run"),
    ("provider", "services run by a provider are not run by the library"),
    ("models", "AI models (Docker Model Runner) are not run by the library"),
    ("use_api_socket", "the engine's API socket is not given to containers"),
    ("pull_refresh_after", "image refresh schedules are not kept"),
];

/// One container option key.
pub(crate) fn read(s: &mut Svc<'_>, name: &str, at: &At, v: &Node, key: &str) -> R<()> {
    let o = &mut s.d.options;
    match name {
        "privileged" => o.privileged = values::boolean(v, key)?,
        "read_only" => o.read_only_root = values::boolean(v, key)?,
        "init" => o.init = Some(values::boolean(v, key)?),
        "tty" => o.tty = values::boolean(v, key)?,
        "stdin_open" => o.stdin_open = values::boolean(v, key)?,
        "oom_kill_disable" => o.oom_kill_disable = values::boolean(v, key)?,
        "cap_add" => o.cap_add = values::strings(v, key)?,
        "cap_drop" => o.cap_drop = values::strings(v, key)?,
        "security_opt" => o.security_opt = values::strings(v, key)?,
        "dns" => o.dns = values::strings(v, key)?,
        "dns_search" => o.dns_search = values::strings(v, key)?,
        "dns_opt" => o.dns_options = values::strings(v, key)?,
        "group_add" => o.group_add = values::strings(v, key)?,
        "device_cgroup_rules" => o.device_cgroup_rules = values::strings(v, key)?,
        "hostname" => o.hostname = Some(values::string(v, key)?),
        "domainname" => o.domainname = Some(values::string(v, key)?),
        "stop_signal" => o.stop_signal = Some(values::string(v, key)?),
        "runtime" => o.runtime = Some(values::string(v, key)?),
        "mac_address" => o.mac_address = Some(values::string(v, key)?),
        "userns_mode" => o.userns = Some(values::string(v, key)?),
        "cgroup" => o.cgroup = Some(values::string(v, key)?),
        "cgroup_parent" => o.cgroup_parent = Some(values::string(v, key)?),
        "shm_size" => o.shm_size = Some(values::bytes(v, key)?),
        "oom_score_adj" => o.oom_score_adj = Some(values::integer(v, key)?),
        "pid" => {
            let mode = namespace(s, v, key, "pid")?;
            s.d.options.pid = Some(mode);
        }
        "ipc" => {
            let mode = namespace(s, v, key, "ipc")?;
            s.d.options.ipc = Some(mode);
        }
        "sysctls" => {
            for e in values::entries(v, key, &['='])? {
                let value = values::entry_text(s.ctx, &e, key)?.unwrap_or_default();
                s.d.options.sysctls.insert(e.key, value);
            }
        }
        "storage_opt" => {
            for e in values::entries(v, key, &['='])? {
                let value = values::entry_text(s.ctx, &e, key)?.unwrap_or_default();
                s.d.options.storage_opt.insert(e.key, value);
            }
        }
        "extra_hosts" => {
            for e in values::entries(v, key, &['=', ':'])? {
                let address = values::entry_text(s.ctx, &e, key)?.unwrap_or_default();
                s.d.options = std::mem::take(&mut s.d.options).extra_host(e.key, super::build::unbracket(&address));
            }
        }
        "ulimits" => ulimits(s, v, key)?,
        "uts" => s.d.options.uts = Some(values::string(v, key)?),
        "gpus" => gpus(s, v, key)?,
        "devices" => devices(s, v, key)?,
        "logging" => logging(s, v, key)?,
        "container_name" => {
            values::string(v, key)?;
            s.ctx.warn(
                at,
                key,
                "the container is named by the library (<project>-<environment>-<service>-…); the name answers as an alias on the environment's network",
            );
        }
        other => match CANNOT.iter().find(|(c, _)| *c == other) {
            Some((_, why)) => s.ctx.cannot(at, key, why)?,
            None => return Err(Problem::new(at, key, format!("`{other}` is not a compose service key"))),
        },
    }
    Ok(())
}

/// `pid`/`ipc`: a mode, where `service:NAME` (another service's namespace) cannot be honoured.
fn namespace(s: &mut Svc<'_>, v: &Node, key: &str, what: &str) -> R<String> {
    let mode = values::string(v, key)?;
    if mode.starts_with("service:") {
        s.ctx.cannot(
            &v.at,
            key,
            &format!("sharing another service's {what} namespace: its containers are replaced by rollouts"),
        )?;
        return Ok(String::new());
    }
    Ok(mode)
}

/// `network_mode`.
pub(crate) fn network_mode(s: &mut Svc<'_>, v: &Node) -> R<()> {
    let key = s.key("network_mode");
    if matches!(v.value, Value::Null) {
        return Ok(());
    }
    let text = values::string(v, &key)?;
    let mode = match text.as_str() {
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        "bridge" => NetworkMode::Bridge,
        "default" => return Ok(()),
        t if t.starts_with("container:") => NetworkMode::Container(t["container:".len()..].to_string()),
        t if t.starts_with("service:") => {
            let owner = &t["service:".len()..];
            if !s.project.enabled.contains(owner) {
                return Err(Problem::new(
                    &v.at,
                    key,
                    format!("`{owner}` is not a service of the environment (or not in an enabled profile)"),
                ));
            }
            NetworkMode::Service(owner.to_string())
        }
        other => {
            return Err(Problem::new(
                &v.at,
                key,
                format!("{other:?} is not host, none, bridge, service:NAME or container:NAME"),
            ))
        }
    };
    s.d.options.network_mode = Some(mode);
    Ok(())
}

/// `ulimits`: `name: N` or `name: {soft, hard}`.
fn ulimits(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (k, val) in values::mapping(v, key)? {
        let ukey = format!("{key}.{}", k.name);
        let limit = match &val.value {
            Value::Map(_) => {
                values::only(val, &ukey, &["soft", "hard"])?;
                let get = |n: &str| -> R<i64> {
                    let node = val.get(n).ok_or_else(|| Problem::new(&val.at, &ukey, format!("needs `{n}`")))?;
                    values::integer(node, &format!("{ukey}.{n}"))
                };
                Ulimit::new(get("soft")?, get("hard")?)
            }
            _ => Ulimit::both(values::integer(val, &ukey)?),
        };
        s.d.options.ulimits.insert(k.name.clone(), limit);
    }
    Ok(())
}

/// `devices`: `HOST[:CONTAINER[:PERMISSIONS]]` or `{source, target, permissions}`.
fn devices(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (i, item) in values::list(v, key)?.iter().enumerate() {
        let ikey = format!("{key}[{i}]");
        let device = match &item.value {
            Value::Map(_) => {
                values::only(item, &ikey, &["source", "target", "permissions"])?;
                let source = item.get("source").ok_or_else(|| Problem::new(&item.at, &ikey, "needs `source`"))?;
                let mut d = Device::new(values::string(source, &format!("{ikey}.source"))?);
                if let Some(t) = item.get("target") {
                    d = d.at(values::string(t, &format!("{ikey}.target"))?);
                }
                if let Some(p) = item.get("permissions") {
                    d = d.permissions(values::string(p, &format!("{ikey}.permissions"))?);
                }
                d
            }
            _ => {
                let text = values::string(item, &ikey)?;
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [h] => Device::new(*h),
                    [h, c] if c.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) && !c.is_empty() => {
                        Device::new(*h).permissions(*c)
                    }
                    [h, c] => Device::new(*h).at(*c),
                    [h, c, p] => Device::new(*h).at(*c).permissions(*p),
                    _ => return Err(Problem::new(&item.at, ikey, "a device is HOST[:CONTAINER[:PERMISSIONS]]")),
                }
            }
        };
        s.d.options.devices.retain(|d| d.container != device.container);
        s.d.options.devices.push(device);
    }
    Ok(())
}

/// `gpus`: `all`, or a list of `{driver, count, device_ids, capabilities, options}` (each a
/// request with the `gpu` capability).
fn gpus(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    if let Value::Scalar { text, .. } = &v.value {
        if text != "all" {
            return Err(Problem::new(&v.at, key, format!("{text:?} is not `all` or a list of device requests")));
        }
        s.d.options.device_requests.push(DeviceRequest::all_gpus());
        return Ok(());
    }
    for (i, item) in values::list(v, key)?.iter().enumerate() {
        let mut r = device_request(item, &format!("{key}[{i}]"))?;
        if !r.capabilities.iter().any(|c| c == "gpu") {
            r.capabilities.insert(0, "gpu".into());
        }
        s.d.options.device_requests.push(r);
    }
    Ok(())
}

/// One device request: `{capabilities, driver, count (a number or all), device_ids, options}`.
pub(crate) fn device_request(item: &Node, key: &str) -> R<DeviceRequest> {
    values::mapping(item, key)?;
    values::only(item, key, &["capabilities", "driver", "count", "device_ids", "options"])?;
    let mut r = DeviceRequest::default();
    if let Some(c) = item.get("capabilities") {
        r.capabilities = values::strings(c, &format!("{key}.capabilities"))?;
    }
    if let Some(d) = item.get("driver") {
        r.driver = Some(values::string(d, &format!("{key}.driver"))?);
    }
    if let Some(c) = item.get("count") {
        r.count = Some(match values::string(c, &format!("{key}.count"))?.as_str() {
            "all" => -1,
            _ => values::integer(c, &format!("{key}.count"))?,
        });
    }
    if let Some(ids) = item.get("device_ids") {
        r.device_ids = values::strings(ids, &format!("{key}.device_ids"))?;
    }
    if let Some(o) = item.get("options") {
        for (k, val) in values::mapping(o, &format!("{key}.options"))? {
            r.options.insert(k.name.clone(), val.as_str().unwrap_or_default().to_string());
        }
    }
    Ok(r)
}

/// `logging`: `driver` and `options`.
fn logging(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    values::mapping(v, key)?;
    values::only(v, key, &["driver", "options"])?;
    let driver = match v.get("driver") {
        Some(d) => values::string(d, &format!("{key}.driver"))?,
        None => "json-file".into(),
    };
    let mut options = std::collections::BTreeMap::new();
    if let Some(o) = v.get("options") {
        for e in values::entries(o, &format!("{key}.options"), &['='])? {
            let value = values::entry_text(s.ctx, &e, &format!("{key}.options"))?.unwrap_or_default();
            options.insert(e.key, value);
        }
    }
    if driver == "none" {
        s.ctx.warn(
            &v.at,
            key,
            "with the `none` logging driver the engine keeps no logs: failed health gates and `logs` show none",
        );
    }
    s.d.options.logging = Some(Logging { driver, options });
    Ok(())
}
