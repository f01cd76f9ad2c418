//! `deploy`, `restart` and the resource keys. `deploy.replicas` (or `scale`) is the number of
//! instances; `deploy.resources` and `mem_limit`, `cpus`, `pids_limit`, … are limits (where both
//! forms give one, they must agree, as Compose requires); `deploy.restart_policy` wins over
//! `restart` (`any` is `always`); `deploy.update_config` is the rollout (without it, Compose's
//! own replacement: stop the old container, then start the new one).

use super::context::{Problem, R};
use super::draft::Svc;
use super::values;
use super::yaml::{Node, Value};
use crate::model::{Amount, OnFailure, RestartPolicy, Rollout};

/// Reads `deploy`.
pub(crate) fn read(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (k, val) in values::mapping(v, key)? {
        let dkey = format!("{key}.{}", k.name);
        if matches!(val.value, Value::Null) {
            continue;
        }
        match k.name.as_str() {
            "replicas" => s.d.replicas = Some((values::count(val, &dkey)?, val.at.clone(), "deploy.replicas")),
            "resources" => resources(s, val, &dkey)?,
            "restart_policy" => s.d.restart_policy = Some(restart_policy(s, val, &dkey)?),
            "update_config" => s.d.rollout = Some(rollout(s, val, &dkey)?),
            "rollback_config" => {
                values::only(
                    val,
                    &dkey,
                    &["parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"],
                )?;
                s.ctx.warn(&k.at, &dkey, "a rollback puts the old version back at the rollout's own pace (update_config): rollback_config is not applied separately")
            }
            "mode" => match values::string(val, &dkey)?.as_str() {
                "replicated" => {}
                // One on every host of its role, one on a single engine (as Compose runs it).
                "global" => s.d.global = Some(val.at.clone()),
                "replicated-job" | "global-job" => s.ctx.cannot(
                    &val.at,
                    &dkey,
                    "a swarm job's scheduling: a service others wait for to complete (service_completed_successfully) runs as a job",
                )?,
                other => return Err(Problem::new(&val.at, dkey, format!("{other:?} is not replicated or global"))),
            },
            "labels" => {
                values::entries(val, &dkey, &['='])?;
                s.ctx.warn(&k.at, &dkey, "deploy.labels are a swarm service's labels, which Compose does not put on containers: not set (use `labels` for the containers')")
            }
            "placement" => placement(s, val, &dkey)?,
            "endpoint_mode" => match values::string(val, &dkey)?.as_str() {
                "vip" | "dnsrr" => {}
                other => return Err(Problem::new(&val.at, dkey, format!("{other:?} is not vip or dnsrr"))),
            },
            x if x.starts_with("x-") => {}
            other => return Err(Problem::new(&k.at, dkey, format!("`{other}` is not a key of `deploy`"))),
        }
    }
    Ok(())
}

/// `deploy.placement`: constraints are honoured by a target that schedules (a swarm);
/// preferences and a per-node maximum are a swarm scheduler's only.
fn placement(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    values::only(v, key, &["constraints", "preferences", "max_replicas_per_node"])?;
    if let Some(c) = v.get("constraints") {
        s.d.placement.extend(values::strings(c, &format!("{key}.constraints"))?);
    }
    for k in ["preferences", "max_replicas_per_node"] {
        if let Some(n) = v.get(k) {
            s.ctx.warn(&n.at, &format!("{key}.{k}"), "a swarm scheduler's setting: not applied");
        }
    }
    Ok(())
}

/// `deploy.resources`.
fn resources(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    values::only(v, key, &["limits", "reservations"])?;
    if let Some(l) = v.get("limits") {
        let lkey = format!("{key}.limits");
        values::only(l, &lkey, &["cpus", "memory", "pids"])?;
        for (k, val) in values::mapping(l, &lkey)? {
            let name = match k.name.as_str() {
                "cpus" => "cpus",
                "memory" => "mem_limit",
                _ => "pids_limit",
            };
            resource_key(s, name, val, &format!("{lkey}.{}", k.name))?;
        }
    }
    if let Some(r) = v.get("reservations") {
        let rkey = format!("{key}.reservations");
        values::only(r, &rkey, &["cpus", "memory", "devices", "generic_resources"])?;
        for (k, val) in values::mapping(r, &rkey)? {
            let vkey = format!("{rkey}.{}", k.name);
            match k.name.as_str() {
                "memory" => resource_key(s, "mem_reservation", val, &vkey)?,
                "cpus" => {
                    values::float(val, &vkey)?;
                    s.ctx.warn(&k.at, &vkey, "a CPU reservation is a swarm scheduler's: not applied on an engine")
                }
                "devices" => {
                    for (i, item) in values::list(val, &vkey)?.iter().enumerate() {
                        let r = super::options::device_request(item, &format!("{vkey}[{i}]"))?;
                        if r.capabilities.is_empty() {
                            return Err(Problem::new(
                                &item.at,
                                format!("{vkey}[{i}]"),
                                "a device reservation needs `capabilities`",
                            ));
                        }
                        s.d.options.device_requests.push(r);
                    }
                }
                _ => s.ctx.cannot(&k.at, &vkey, "generic resources are a swarm scheduler's")?,
            }
        }
    }
    Ok(())
}

/// One resource key (`mem_limit`, `cpus`, …, and their `deploy.resources` forms); a value given
/// twice must agree.
pub(crate) fn resource_key(s: &mut Svc<'_>, name: &str, v: &Node, key: &str) -> R<()> {
    let r = &mut s.d.resources;
    let conflict = |what: &str| Problem::new(&v.at, key, format!("{what} is given twice with different values"));
    match name {
        "cpus" => {
            let c = values::float(v, key)?;
            // `0` means no limit.
            if c > 0.0 {
                if r.cpus.is_some_and(|old| (old - c).abs() > 1e-9) {
                    return Err(conflict("the CPU limit"));
                }
                r.cpus = Some(c);
            }
        }
        "mem_limit" => {
            let b = values::bytes(v, key)?;
            if b > 0 {
                if r.memory_limit_bytes().is_some_and(|old| old != b) {
                    return Err(conflict("the memory limit"));
                }
                *r = std::mem::take(r).memory_bytes(b);
            }
        }
        "mem_reservation" => r.memory_reservation = Some(values::bytes(v, key)?).filter(|b| *b > 0),
        "memswap_limit" => {
            let text = values::string(v, key)?;
            r.memory_swap = match text.trim() {
                "-1" => Some(-1),
                t => match values::parse_bytes(t) {
                    // `0` is unset.
                    Some(0) => None,
                    Some(b) => Some(i64::try_from(b).unwrap_or(i64::MAX)),
                    None => return Err(Problem::new(&v.at, key, format!("a size such as 1g, or -1, not {t:?}"))),
                },
            };
        }
        "mem_swappiness" => {
            let n = values::integer(v, key)?;
            r.memory_swappiness = Some(
                u8::try_from(n)
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| Problem::new(&v.at, key, "a percentage from 0 to 100"))?,
            );
        }
        "pids_limit" => {
            let n = values::integer(v, key)?;
            if r.pids.is_some_and(|old| old != n) {
                return Err(conflict("the pids limit"));
            }
            // `0` is unset.
            r.pids = (n != 0).then_some(n);
        }
        "cpu_shares" => {
            r.cpu_shares = Some(
                u64::try_from(values::integer(v, key)?)
                    .map_err(|_| Problem::new(&v.at, key, "a weight of 0 or more"))?,
            )
            .filter(|s| *s > 0)
        }
        "cpu_quota" => r.cpu_quota = Some(values::integer(v, key)?).filter(|q| *q != 0),
        "cpu_period" => {
            r.cpu_period =
                Some(u64::try_from(values::integer(v, key)?).map_err(|_| Problem::new(&v.at, key, "microseconds"))?)
                    .filter(|p| *p > 0)
        }
        "cpuset" => r.cpuset = Some(values::string(v, key)?),
        other => return Err(Problem::new(&v.at, key, format!("`{other}` is not a resource"))),
    }
    Ok(())
}

/// `restart`: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub(crate) fn restart(v: &Node, key: &str) -> R<RestartPolicy> {
    let text = values::string(v, key)?;
    match text.as_str() {
        "no" | "false" => Ok(RestartPolicy::No),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "on-failure" => Ok(RestartPolicy::OnFailure(0)),
        t => match t.strip_prefix("on-failure:").and_then(|n| n.parse().ok()) {
            Some(n) => Ok(RestartPolicy::OnFailure(n)),
            None => Err(Problem::new(&v.at, key, format!("{t:?} is not no, always, unless-stopped or on-failure[:N]"))),
        },
    }
}

/// `deploy.restart_policy`, as Compose applies it to containers: `none` → no, `on-failure`
/// (with `max_attempts`), `any` → always.
fn restart_policy(s: &mut Svc<'_>, v: &Node, key: &str) -> R<RestartPolicy> {
    values::only(v, key, &["condition", "delay", "max_attempts", "window"])?;
    let condition = match v.get("condition") {
        Some(c) => values::string(c, &format!("{key}.condition"))?,
        None => "any".into(),
    };
    let attempts = match v.get("max_attempts") {
        Some(n) => values::count(n, &format!("{key}.max_attempts"))?,
        None => 0,
    };
    for k in ["delay", "window"] {
        if let Some(n) = v.get(k) {
            values::duration(n, &format!("{key}.{k}"))?;
            s.ctx.warn(&n.at, &format!("{key}.{k}"), "the engine's own restart back-off applies");
        }
    }
    match condition.as_str() {
        "none" | "no" => Ok(RestartPolicy::No),
        "on-failure" => Ok(RestartPolicy::OnFailure(attempts)),
        "any" | "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        other => {
            let at = v.get("condition").map_or(&v.at, |c| &c.at);
            Err(Problem::new(at, format!("{key}.condition"), format!("{other:?} is not none, on-failure or any")))
        }
    }
}

/// `update_config` as a [`Rollout`]: `parallelism` instances at a time, stopping the old ones
/// first (`stop-first`, the default) or starting the new ones first (`start-first`).
fn rollout(s: &mut Svc<'_>, v: &Node, key: &str) -> R<Rollout> {
    values::only(v, key, &["parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"])?;
    let parallelism = match v.get("parallelism") {
        Some(n) => values::count(n, &format!("{key}.parallelism"))?,
        None => 1,
    };
    let order = match v.get("order") {
        Some(o) => values::string(o, &format!("{key}.order"))?,
        None => "stop-first".into(),
    };
    let mut rollout = match (order.as_str(), parallelism) {
        ("stop-first", 0) => Rollout::recreate(),
        ("start-first", 0) => Rollout::start_first(),
        ("stop-first", p) => Rollout::rolling().max_surge(Amount::count(0)).max_unavailable(Amount::count(p)),
        ("start-first", p) => Rollout::rolling().max_surge(Amount::count(p)).max_unavailable(Amount::count(0)),
        (other, _) => {
            let at = v.get("order").map_or(&v.at, |o| &o.at);
            return Err(Problem::new(
                at,
                format!("{key}.order"),
                format!("{other:?} is not stop-first or start-first"),
            ));
        }
    };
    // Swarm's default failure action is pause.
    rollout = rollout.on_failure(OnFailure::Pause);
    for (k, val) in v.as_map().unwrap_or_default() {
        let ukey = format!("{key}.{}", k.name);
        rollout = match k.name.as_str() {
            "delay" => rollout.batch_delay(values::duration(val, &ukey)?),
            "monitor" => rollout.min_ready(values::duration(val, &ukey)?),
            "failure_action" => match values::string(val, &ukey)?.as_str() {
                "rollback" => rollout.on_failure(OnFailure::Rollback),
                "pause" => rollout.on_failure(OnFailure::Pause),
                "continue" => {
                    s.ctx.warn(&val.at, &ukey, "`continue` is applied as stopping with the failure reported (OnFailure::Fail): a rollout never goes on past an unhealthy batch");
                    rollout.on_failure(OnFailure::Fail)
                }
                other => {
                    return Err(Problem::new(&val.at, ukey, format!("{other:?} is not rollback, pause or continue")))
                }
            },
            "max_failure_ratio" => {
                if values::float(val, &ukey)? != 0.0 {
                    s.ctx.cannot(&val.at, &ukey, "every batch must be healthy: a failure ratio is not tolerated")?;
                }
                rollout
            }
            _ => rollout,
        };
    }
    Ok(rollout)
}
