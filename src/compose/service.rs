//! One service's keys as a [`Service`]: every key is honoured, or refused with the file, line
//! and key (a warning under [`Compose::lenient`](super::Compose::lenient)), or, for keys that
//! change nothing a deployment depends on, said in a warning. Where the file is silent, Docker's
//! and Compose's defaults apply: no restart, the engine's health check timings (30 s, 30 s, 3),
//! replacement by stopping the old container first.
//!
//! The keys of a concern are read in their own file: `build.rs`, `ports.rs`, `mounts.rs`
//! (volumes, tmpfs, secrets, configs), `health.rs`, `deploy.rs` (deploy, restart, resources) and
//! `options.rs` (what the container runs with: capabilities, namespaces, kernel settings, …).

use std::collections::BTreeMap;

use super::context::{Context, Problem, R};
use super::declared::Project;
use super::draft::{Draft, Svc};
use super::yaml::{Node, Value};
use super::{build, deploy, health, merge, mounts, options, ports, shell, values};
use crate::model::{
    Condition, ContainerOptions, PullPolicy, Resources, RestartPolicy, Rollout, Service, ServiceBuilder,
};

/// Keys that change nothing a deployment depends on: read, said in a warning, not applied.
const COSMETIC: &[(&str, &str)] = &[
    ("attach", "logs are read through the library, whatever `attach` says"),
    ("develop", "`develop` (watch) is for `docker compose watch`, which the library does not run"),
    ("platform", "the image is pulled and built for the engine's own platform"),
];

/// A service mapped, and the services whose mounts it still takes (`volumes_from`): applied by
/// the project once every service is mapped.
pub(crate) struct Mapped {
    pub service: Service,
    pub volumes_from: Vec<(String, Option<bool>, super::yaml::At, String)>,
}

/// Maps service `name` (its `extends` applied).
pub(crate) fn map(ctx: &mut Context, project: &Project, name: &str, node: &Node, job: bool) -> R<Mapped> {
    let Some(entries) = node.as_map() else {
        return Err(Problem::new(
            &node.at,
            format!("services.{name}"),
            format!("a service is a mapping, not {}", node.kind()),
        ));
    };
    let d = Draft {
        image: None,
        build: None,
        command: None,
        entrypoint: None,
        env: BTreeMap::new(),
        env_files: BTreeMap::new(),
        ports: Vec::new(),
        exposed: Vec::new(),
        volumes: Vec::new(),
        files: Vec::new(),
        health: None,
        depends: Vec::new(),
        replicas: None,
        global: None,
        restart: None,
        restart_policy: None,
        labels: BTreeMap::new(),
        user: None,
        workdir: None,
        stop_grace: None,
        pull: None,
        options: ContainerOptions::default(),
        resources: Resources::default(),
        rollout: None,
        aliases: project.aliases.get(name).cloned().unwrap_or_default(),
        placement: Vec::new(),
        networks: Vec::new(),
        volumes_from: Vec::new(),
    };
    let mut s = Svc { ctx, project, name, job, d };
    // The network mode decides how health checks can probe, so it is read first.
    if let Some(m) = node.get("network_mode") {
        options::network_mode(&mut s, m)?;
    }
    for (k, v) in entries {
        let key = s.key(&k.name);
        if matches!(v.value, Value::Null) && !matches!(k.name.as_str(), "environment" | "command" | "entrypoint") {
            // `key:` with nothing: as if it were not there (compose's reading of null).
            continue;
        }
        match k.name.as_str() {
            "image" => s.d.image = Some(values::string(v, &key)?),
            "build" => s.d.build = Some(build::read(&mut s, v, &key)?),
            "command" => s.d.command = command(v, &key)?,
            "entrypoint" => s.d.entrypoint = command(v, &key)?,
            "environment" => environment(&mut s, v, &key)?,
            "env_file" => env_files(&mut s, v, &key)?,
            "ports" => ports::read(&mut s, v, &key)?,
            "expose" => ports::expose(&mut s, v, &key)?,
            "volumes" => mounts::volumes(&mut s, v, &key)?,
            "tmpfs" => mounts::tmpfs(&mut s, v, &key)?,
            "secrets" => mounts::files(&mut s, v, &key, true)?,
            "configs" => mounts::files(&mut s, v, &key, false)?,
            "healthcheck" => health::read(&mut s, v, &key)?,
            "depends_on" => depends_on(&mut s, v, &key)?,
            "deploy" => deploy::read(&mut s, v, &key)?,
            "scale" => s.d.replicas = Some((values::count(v, &key)?, v.at.clone(), "scale")),
            "restart" => s.d.restart = Some(deploy::restart(v, &key)?),
            "labels" => {
                for e in values::entries(v, &key, &['='])? {
                    let value = values::entry_text(s.ctx, &e, &key)?.unwrap_or_default();
                    s.d.labels.insert(e.key, value);
                }
            }
            "label_file" => label_files(&mut s, v, &key)?,
            "user" => s.d.user = Some(values::string(v, &key)?),
            "working_dir" => s.d.workdir = Some(values::string(v, &key)?),
            "stop_grace_period" => s.d.stop_grace = Some(values::duration(v, &key)?),
            "pull_policy" => s.d.pull = Some(pull_policy(s.ctx, v, &key)?),
            "profiles" | "links" | "network_mode" => {}
            "volumes_from" => volumes_from(&mut s, v, &key)?,
            "networks" => networks(&mut s, v, &key)?,
            "mem_limit" | "mem_reservation" | "memswap_limit" | "mem_swappiness" | "cpus" | "cpu_shares"
            | "cpu_quota" | "cpu_period" | "cpuset" | "pids_limit" => deploy::resource_key(&mut s, &k.name, v, &key)?,
            x if x.starts_with("x-") => {}
            x if COSMETIC.iter().any(|(c, _)| *c == x) => {
                let why = COSMETIC.iter().find(|(c, _)| *c == x).map(|(_, w)| *w).unwrap_or_default();
                s.ctx.warn(&k.at, &key, &format!("not applied: {why}"));
            }
            x => options::read(&mut s, x, &k.at, v, &key)?,
        }
    }
    finish(s, node)
}

/// The builder from what was read, validated.
fn finish(s: Svc<'_>, node: &Node) -> R<Mapped> {
    let Svc { ctx, name, job, mut d, project } = s;
    let volumes_from = std::mem::take(&mut d.volumes_from);
    // Started after the services whose mounts it takes, as Compose does.
    for (from, ..) in &volumes_from {
        if !d.depends.iter().any(|(n, _)| n == from) {
            d.depends.push((from.clone(), Condition::Started));
        }
    }
    // Waited on to be healthy with no `healthcheck`: Compose waits on the image's own check.
    let image_check_off = d.options.healthcheck.as_ref().is_some_and(|h| h.is_disabled());
    if d.health.is_none() && !image_check_off && project.healthy.contains(name) {
        d.health = Some(health::image_check());
    }
    let at = &node.at;
    let mut b = if job { Service::job(name) } else { Service::builder(name) };
    b = match (d.image.take(), d.build.take()) {
        // Compose tags the build with `image`, so a push or another service can use it.
        (Some(image), Some(build)) => b.build_from(build.tag(image)),
        (None, Some(build)) => b.build_from(build),
        (Some(image), None) => b.image(image),
        (None, None) => return Err(Problem::new(at, format!("services.{name}"), "a service needs `image` or `build`")),
    };
    if let Some(c) = d.command {
        b = b.command(c);
    }
    if let Some(e) = d.entrypoint {
        b = b.entrypoint(e);
    }
    // env_file first, `environment` over it.
    for (k, v) in d.env_files.into_iter().chain(d.env) {
        b = b.env(k, v);
    }
    // A port both exposed and published is published.
    for p in &d.exposed {
        if !d.ports.iter().any(|q| q.container_port() == p.container_port() && q.protocol == p.protocol) {
            d.ports.push(p.clone());
        }
    }
    for p in d.ports {
        b = b.port(p);
    }
    for f in d.files {
        b = b.file(f);
    }
    for v in d.volumes {
        b = b.volume(v);
    }
    if let Some(h) = d.health {
        if job {
            ctx.warn(
                at,
                &format!("services.{name}.healthcheck"),
                "a service others wait for to complete runs once, as a job: its health check is not probed",
            );
        } else {
            b = b.health(h);
        }
    }
    // `links` are dependencies too (started first), unless `depends_on` says more.
    for target in &project.links.get(name).cloned().unwrap_or_default() {
        if !d.depends.iter().any(|(n, _)| n == target) {
            d.depends.push((target.clone(), Condition::Started));
        }
    }
    for (dep, c) in d.depends {
        b = b.depends_on(dep, c);
    }
    // `deploy.restart_policy` over `restart`; neither: Docker's `no`.
    let restart = d.restart_policy.or(d.restart).unwrap_or(RestartPolicy::No);
    b = b.restart(restart);
    for (k, v) in d.labels {
        b = b.label(k, v);
    }
    if let Some(u) = d.user {
        b = b.user(u);
    }
    if let Some(w) = d.workdir {
        b = b.workdir(w);
    }
    if let Some(g) = d.stop_grace {
        b = b.stop_grace_period(g);
    }
    if let Some(p) = d.pull {
        b = b.pull(p);
    }
    if !d.resources.is_empty() {
        b = b.resources(d.resources);
    }
    b = b.container(d.options);
    for a in d.aliases {
        b = b.alias(a);
    }
    for c in d.placement {
        b = b.placement_constraint(c);
    }
    for n in d.networks {
        b = b.join_network(n);
    }
    // Compose replaces a changed container by stopping the old one first, and hands its
    // anonymous volumes (an image's VOLUMEs) to the new one.
    let rollout = d.rollout.unwrap_or_else(Rollout::recreate);
    if rollout.runs_side_by_side() {
        ctx.warn(
            at,
            &format!("services.{name}.deploy.update_config.order"),
            "the new container starts beside the old one, so it does not take over the old one's anonymous volumes (an image's VOLUMEs) as Compose's stop-first replacement does",
        );
    } else {
        b = b.keep_anonymous_volumes();
    }
    b = b.rollout(rollout);
    if let Some(gat) = &d.global {
        if job {
            return Err(Problem::new(
                gat,
                format!("services.{name}.deploy.mode"),
                "others wait for this service to complete, so it runs once, not on every node",
            ));
        }
        if let Some((_, rat, what)) = &d.replicas {
            return Err(Problem::new(
                rat,
                format!("services.{name}.{what}"),
                "a count of replicas with deploy.mode global, which runs one on every node: drop one",
            ));
        }
        b = b.global();
    }
    if let Some((n, rat, what)) = d.replicas {
        if !job {
            b = b.replicas(n);
        } else if n != 1 {
            ctx.warn(
                &rat,
                &format!("services.{name}.{what}"),
                "a service others wait for to complete runs once, as a job",
            );
        }
    }
    Ok(Mapped { service: build_service(b, at, name)?, volumes_from })
}

pub(crate) fn build_service(b: ServiceBuilder, at: &super::yaml::At, name: &str) -> R<Service> {
    b.build().map_err(|e| Problem::new(at, format!("services.{name}"), e.to_string()))
}

/// `volumes_from`: `service[:ro|:rw]`, read-write by default (another container's,
/// `container:NAME`, cannot be honoured).
fn volumes_from(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (i, item) in values::list(v, key)?.iter().enumerate() {
        let ikey = format!("{key}[{i}]");
        let text = values::string(item, &ikey)?;
        if text.starts_with("container:") {
            s.ctx.cannot(&item.at, &ikey, "mounts of a container outside the environment are not taken")?;
            continue;
        }
        let text = text.strip_prefix("service:").unwrap_or(&text).to_string();
        let (from, mode) = match text.rsplit_once(':') {
            Some((f, "ro")) => (f.to_string(), Some(true)),
            Some((f, "rw")) => (f.to_string(), Some(false)),
            Some((_, m)) => return Err(Problem::new(&item.at, ikey, format!("mode {m:?} is not ro or rw"))),
            // Read-write unless it says otherwise, as the Compose Specification gives it.
            None => (text.clone(), Some(false)),
        };
        if !s.project.enabled.contains(&from) {
            return Err(Problem::new(
                &item.at,
                ikey,
                format!("`{from}` is not a service of the environment (or not in an enabled profile)"),
            ));
        }
        s.d.volumes_from.push((from, mode, item.at.clone(), ikey));
    }
    Ok(())
}

/// `command`/`entrypoint`: a list as given, a string split into words as Compose splits it
/// (`""` and `[]` clear the image's), null the image's.
fn command(v: &Node, key: &str) -> R<Option<Vec<String>>> {
    match &v.value {
        Value::Null => Ok(None),
        Value::Scalar { text, .. } => shell::split(text)
            .map(Some)
            .map_err(|why| Problem::new(&v.at, key, format!("this string cannot be split into words: {why}"))),
        Value::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(values::string(item, &format!("{key}[{i}]"))?);
            }
            Ok(Some(out))
        }
        Value::Map(_) => Err(Problem::new(&v.at, key, "a string or a list of strings")),
    }
}

/// `environment`: a mapping or a `KEY=VALUE` list; a bare `KEY` takes the variable from the
/// environment, and is left out when it is not set there.
fn environment(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for e in values::entries(v, key, &['='])? {
        if e.key.is_empty() {
            return Err(Problem::new(&e.at, key, "an entry has no variable name"));
        }
        match values::entry_text(s.ctx, &e, key)? {
            Some(text) => {
                s.d.env.insert(e.key, text);
            }
            None => match s.ctx.vars.get(&e.key) {
                Some(val) => {
                    s.d.env.insert(e.key.clone(), val.to_string());
                }
                None => {
                    s.d.env.remove(&e.key);
                }
            },
        }
    }
    Ok(())
}

/// `env_file`: a path, or a list of paths and `{path, required, format}`; later files win.
fn env_files(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    let items: Vec<Node> = match &v.value {
        Value::Seq(items) => items.clone(),
        _ => vec![v.clone()],
    };
    for (i, item) in items.iter().enumerate() {
        let ikey = if matches!(v.value, Value::Seq(_)) { format!("{key}[{i}]") } else { key.to_string() };
        let (path, required, raw) = match &item.value {
            Value::Scalar { text, .. } => (text.clone(), true, false),
            Value::Map(_) => {
                values::only(item, &ikey, &["path", "required", "format"])?;
                let path = item.get("path").ok_or_else(|| Problem::new(&item.at, &ikey, "needs `path`"))?;
                let path = values::string(path, &format!("{ikey}.path"))?;
                let required = match item.get("required") {
                    Some(r) => values::boolean(r, &format!("{ikey}.required"))?,
                    None => true,
                };
                let raw = match item.get("format").map(|f| values::string(f, &format!("{ikey}.format"))).transpose()? {
                    None => false,
                    Some(f) if f == "raw" => true,
                    Some(f) => {
                        return Err(Problem::new(
                            &item.at,
                            format!("{ikey}.format"),
                            format!("env_file format {f:?} is not known (raw is)"),
                        ))
                    }
                };
                (path, required, raw)
            }
            _ => return Err(Problem::new(&item.at, ikey, "a path, or a mapping with `path` and `required`")),
        };
        let file = s.ctx.path(&item.at, &path);
        if !file.exists() && !required {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Problem::new(&item.at, &ikey, format!("{}: cannot read it: {e}", file.display())))?;
        let vars = &s.ctx.vars;
        let lookup = |k: &str| vars.get(k).map(str::to_string);
        let parsed = super::dotenv::parse(&text, &lookup, raw).map_err(|(line, reason)| Problem {
            at: super::yaml::At { file: std::sync::Arc::from(file.display().to_string()), line },
            key: String::new(),
            reason,
        })?;
        let fname = file.display().to_string();
        for (line, var) in parsed.unset {
            let at = super::yaml::At { file: std::sync::Arc::from(fname.as_str()), line };
            s.ctx.warn(&at, &ikey, &format!("variable {var} is not set: it is read as an empty string"));
        }
        for e in parsed.entries {
            s.d.env_files.insert(e.key, e.value);
        }
    }
    Ok(())
}

/// `label_file`: labels from `KEY=VALUE` files (under `labels`).
fn label_files(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    for (i, path) in values::strings(v, key)?.iter().enumerate() {
        let file = s.ctx.path(&v.at, path);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            Problem::new(&v.at, format!("{key}[{i}]"), format!("{}: cannot read it: {e}", file.display()))
        })?;
        let none = |_: &str| None;
        let parsed = super::dotenv::parse(&text, &none, false).map_err(|(line, reason)| {
            Problem::new(&v.at, format!("{key}[{i}]"), format!("{}:{line}: {reason}", file.display()))
        })?;
        for e in parsed.entries {
            s.d.labels.entry(e.key).or_insert(e.value);
        }
    }
    Ok(())
}

/// `depends_on`: a list or a mapping with `condition`, `required` and `restart`.
fn depends_on(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    let m = merge::depends_on(v.clone());
    for (dep, spec) in values::mapping(&m, key)? {
        let dkey = format!("{key}.{}", dep.name);
        if dep.name.is_empty() {
            return Err(Problem::new(&dep.at, key, "an entry is not a service name"));
        }
        values::mapping(spec, &dkey)?;
        values::only(spec, &dkey, &["condition", "required", "restart"])?;
        let condition =
            match spec.get("condition").map(|c| values::string(c, &format!("{dkey}.condition"))).transpose()? {
                None => Condition::Started,
                Some(c) => {
                    match c.as_str() {
                        "service_started" => Condition::Started,
                        "service_healthy" => Condition::Healthy,
                        "service_completed_successfully" => Condition::CompletedSuccessfully,
                        other => {
                            let at = spec.get("condition").map_or(&spec.at, |c| &c.at);
                            return Err(Problem::new(
                        at,
                        format!("{dkey}.condition"),
                        format!("{other:?} is not service_started, service_healthy or service_completed_successfully"),
                    ));
                        }
                    }
                }
            };
        let required = match spec.get("required") {
            Some(r) => values::boolean(r, &format!("{dkey}.required"))?,
            None => true,
        };
        if let Some(r) = spec.get("restart") {
            if values::boolean(r, &format!("{dkey}.restart"))? {
                s.ctx.warn(&r.at, &format!("{dkey}.restart"), "a dependent is not restarted when its dependency is replaced: apply the environment again to restart it");
            }
        }
        if !s.project.enabled.contains(&dep.name) {
            if required {
                return Err(Problem::new(
                    &dep.at,
                    dkey,
                    format!(
                        "`{}` is not defined, or not in an enabled profile (`required: false` makes it optional)",
                        dep.name
                    ),
                ));
            }
            s.ctx.warn(
                &dep.at,
                &dkey,
                &format!("`{}` is not part of the environment: the optional dependency is skipped", dep.name),
            );
            continue;
        }
        s.d.depends.retain(|(n, _)| n != &dep.name);
        s.d.depends.push((dep.name.clone(), condition));
    }
    Ok(())
}

/// A service's `networks`: the environment has one network, where it reaches every service by
/// name; its `aliases` are honoured there.
fn networks(s: &mut Svc<'_>, v: &Node, key: &str) -> R<()> {
    if s.d.options.network_mode.is_some() {
        return Err(Problem::new(&v.at, key, "`networks` and `network_mode` cannot be given together"));
    }
    let m = merge::names_map(v.clone());
    let mut other = false;
    for (net, spec) in values::mapping(&m, key)? {
        let nkey = format!("{key}.{}", net.name);
        if net.name != "default" && !s.project.networks.contains_key(&net.name) {
            return Err(Problem::new(
                &net.at,
                nkey,
                format!("network `{}` is not declared under the top-level `networks`", net.name),
            ));
        }
        if let Some(Some(engine_name)) = s.project.networks.get(&net.name) {
            s.d.networks.push(engine_name.clone());
        } else {
            other |= net.name != "default";
        }
        if matches!(spec.value, Value::Null) {
            continue;
        }
        values::mapping(spec, &nkey)?;
        for (k, val) in spec.as_map().unwrap_or_default() {
            let okey = format!("{nkey}.{}", k.name);
            match k.name.as_str() {
                "aliases" => {
                    for a in values::strings(val, &okey)? {
                        if s.project.enabled.contains(&a) && a != s.name {
                            return Err(Problem::new(
                                &val.at,
                                okey.clone(),
                                format!("alias `{a}` is the name of another service"),
                            ));
                        }
                        if !s.d.aliases.contains(&a) {
                            s.d.aliases.push(a);
                        }
                    }
                }
                "priority" | "gw_priority" | "interface_name" => {}
                "ipv4_address" | "ipv6_address" | "link_local_ips" | "mac_address" | "driver_opts" => {
                    s.ctx.cannot(&k.at, &okey, "addresses on the environment's network are chosen by the engine")?
                }
                x if x.starts_with("x-") => {}
                other => {
                    return Err(Problem::new(&k.at, okey, format!("`{other}` is not a key of a service's network")))
                }
            }
        }
    }
    if other {
        s.ctx.warn(
            &v.at,
            key,
            "the service is on the environment's one network, where it reaches every service by name",
        );
    }
    Ok(())
}

fn pull_policy(ctx: &mut Context, v: &Node, key: &str) -> R<PullPolicy> {
    let text = values::string(v, key)?;
    Ok(match text.as_str() {
        "always" => PullPolicy::Always,
        "never" => PullPolicy::Never,
        "missing" | "if_not_present" => PullPolicy::IfMissing,
        "build" => PullPolicy::IfMissing,
        t if t == "daily" || t == "weekly" || t.starts_with("every_") => {
            ctx.warn(
                &v.at,
                key,
                &format!("`{t}` is applied as `always`: the library keeps no record of when an image was last pulled"),
            );
            PullPolicy::Always
        }
        other => {
            return Err(Problem::new(
                &v.at,
                key,
                format!("{other:?} is not always, never, missing, build, daily, weekly or every_<duration>"),
            ))
        }
    })
}
