//! A merged compose model as an [`Environment`]: the top-level keys (volumes, secrets, configs,
//! networks), then the services: `extends` resolved, profiles applied, jobs found (a service
//! another waits for to complete), `links` turned into aliases, and each service's keys mapped
//! by `service.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::context::{Context, Problem, R};
use super::declared::{FileSource, Project, VolumeDecl};
use super::yaml::{At, Key, Node, Value};
use super::{extends, merge, service, values};
use crate::model::Environment;

/// The environment a merged compose model describes.
pub(crate) fn environment(
    ctx: &mut Context,
    root: &Node,
    project: &str,
    env_name: &str,
    profiles: &BTreeSet<String>,
) -> R<Environment> {
    for (k, _) in root.as_map().unwrap_or_default() {
        match k.name.as_str() {
            "version" | "name" | "services" | "volumes" | "secrets" | "configs" | "networks" => {}
            name if name.starts_with("x-") => {}
            "models" => ctx.cannot(&k.at, "models", "AI models (Docker Model Runner) are not run by the library")?,
            name => return Err(Problem::new(&k.at, name, format!("`{name}` is not a top-level compose key"))),
        }
    }
    let services_node = root.get("services");
    let Some(services) = services_node.and_then(Node::as_map) else {
        let at = services_node.map(|n| n.at.clone()).unwrap_or_else(|| root.at.clone());
        return Err(Problem::new(&at, "services", "a compose file needs a `services` mapping"));
    };
    let mut resolved: Vec<(Key, Node)> = Vec::with_capacity(services.len());
    for (k, _) in services {
        let node = extends::resolve(ctx, services, &k.name)?;
        resolved.push((k.clone(), node));
    }
    let mut enabled = enabled(ctx, &resolved, profiles)?;
    // A service a provider runs is not the library's to run.
    for (k, node) in &resolved {
        if let Some(p) = node.get("provider").filter(|_| enabled.contains(&k.name)) {
            ctx.cannot(
                &p.at,
                &format!("services.{}.provider", k.name),
                "services run by a provider are not run by the library: it is left out of the environment",
            )?;
            enabled.remove(&k.name);
        }
    }
    let mut p = Project {
        volumes: volumes(ctx, root.get("volumes"))?,
        secrets: file_sources(ctx, root.get("secrets"), "secrets")?,
        configs: file_sources(ctx, root.get("configs"), "configs")?,
        networks: networks(ctx, root.get("networks"))?,
        enabled,
        aliases: HashMap::new(),
        healthy: BTreeSet::new(),
        links: HashMap::new(),
    };
    (p.aliases, p.links) = aliases(ctx, &resolved, &p)?;
    let jobs = waited_for(&resolved, &p.enabled, "service_completed_successfully");
    p.healthy = waited_for(&resolved, &p.enabled, "service_healthy");
    let mut mapped = Vec::new();
    for (k, node) in &resolved {
        if !p.enabled.contains(&k.name) {
            continue;
        }
        mapped.push(service::map(ctx, &p, &k.name, node, jobs.contains(&k.name))?);
    }
    let mut env = Environment::builder(project, env_name);
    for s in volumes_from(&mapped)? {
        env = env.service(s);
    }
    let at = services_node.map(|n| n.at.clone()).unwrap_or_else(|| root.at.clone());
    env.build().map_err(|e| Problem::new(&at, "services", e.to_string()))
}

/// `volumes_from` applied: a service takes the mounts of those it names (its own win at the same
/// path), read-only with `:ro`, read-write otherwise. Chains are followed.
fn volumes_from(mapped: &[service::Mapped]) -> R<Vec<crate::model::Service>> {
    let by_name: HashMap<&str, &service::Mapped> = mapped.iter().map(|m| (m.service.name(), m)).collect();
    let mut out = Vec::with_capacity(mapped.len());
    for m in mapped {
        if m.volumes_from.is_empty() {
            out.push(m.service.clone());
            continue;
        }
        let mut taken: Vec<crate::model::Volume> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue: Vec<(String, Option<bool>, At, String)> = m.volumes_from.clone();
        while let Some((from, ro, at, key)) = queue.pop() {
            if !seen.insert(from.clone()) || from == m.service.name() {
                continue;
            }
            let Some(source) = by_name.get(from.as_str()) else {
                return Err(Problem::new(&at, key, format!("`{from}` is not a service of the environment")));
            };
            for v in source.service.volumes() {
                let v = match ro {
                    Some(true) => v.clone().read_only(),
                    Some(false) => crate::model::Volume { read_only: false, ..v.clone() },
                    None => v.clone(),
                };
                if !taken.iter().any(|t| t.target == v.target) {
                    taken.push(v);
                }
            }
            queue.extend(source.volumes_from.iter().map(|(f, r, a, k)| (f.clone(), ro.or(*r), a.clone(), k.clone())));
        }
        let own = m.service.volumes().to_vec();
        taken.retain(|t| !own.iter().any(|o| o.target == t.target));
        let mut b = m.service.to_builder();
        for v in taken {
            b = b.volume(v);
        }
        let at = m.volumes_from.first().map(|(_, _, a, _)| a.clone()).unwrap_or(At { file: "".into(), line: 0 });
        out.push(service::build_service(b, &at, m.service.name())?);
    }
    Ok(out)
}

/// The services the active profiles enable: those with no profiles, and those with an active
/// one (`*` enables all).
fn enabled(ctx: &mut Context, services: &[(Key, Node)], active: &BTreeSet<String>) -> R<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for (k, node) in services {
        let on = match node.get("profiles") {
            None => true,
            Some(p) => {
                let names = values::strings(p, &format!("services.{}.profiles", k.name))?;
                for n in &names {
                    let ok = n.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                    if !ok {
                        return Err(Problem::new(
                            &p.at,
                            format!("services.{}.profiles", k.name),
                            format!("profile {n:?} is not a profile name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"),
                        ));
                    }
                }
                names.is_empty() || active.contains("*") || names.iter().any(|n| active.contains(n))
            }
        };
        if on {
            out.insert(k.name.clone());
        }
    }
    let _ = ctx;
    Ok(out)
}

/// The services others wait for with `condition`: to complete successfully (jobs), or to be
/// healthy.
fn waited_for(services: &[(Key, Node)], enabled: &BTreeSet<String>, condition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, node) in services {
        if !enabled.contains(&k.name) {
            continue;
        }
        if let Some(deps) = node.get("depends_on") {
            let deps = merge::depends_on(deps.clone());
            for (dep, spec) in deps.as_map().unwrap_or_default() {
                if spec.get("condition").and_then(Node::as_str) == Some(condition) {
                    out.insert(dep.name.clone());
                }
            }
        }
    }
    out
}

/// The aliases `links: [db:database]` and `container_name` give (`database` answers for `db`),
/// and the services each links to.
type Links = (HashMap<String, Vec<String>>, HashMap<String, Vec<String>>);

fn aliases(ctx: &mut Context, services: &[(Key, Node)], p: &Project) -> R<Links> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut linked: HashMap<String, Vec<String>> = HashMap::new();
    let mut owner: HashMap<String, (String, At)> = HashMap::new();
    let mut add = |ctx: &mut Context, target: &str, alias: &str, at: &At, key: &str| -> R<()> {
        if alias == target {
            return Ok(());
        }
        if p.enabled.contains(alias) || services.iter().any(|(k, _)| k.name == alias) {
            return Err(Problem::new(
                at,
                key,
                format!("alias `{alias}` for `{target}` is the name of another service; it would hide that service"),
            ));
        }
        match owner.get(alias) {
            Some((other, _)) if other != target => Err(Problem::new(
                at,
                key,
                format!(
                    "alias `{alias}` names both `{other}` and `{target}`; on one network a name reaches one service"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                owner.insert(alias.to_string(), (target.to_string(), at.clone()));
                out.entry(target.to_string()).or_default().push(alias.to_string());
                let _ = ctx;
                Ok(())
            }
        }
    };
    for (k, node) in services {
        if !p.enabled.contains(&k.name) {
            continue;
        }
        if let Some(links) = node.get("links") {
            let key = format!("services.{}.links", k.name);
            for (i, item) in values::list(links, &key)?.iter().enumerate() {
                let ikey = format!("{key}[{i}]");
                let text = values::string(item, &ikey)?;
                let (target, alias) = text.split_once(':').unwrap_or((text.as_str(), text.as_str()));
                if !p.enabled.contains(target) {
                    return Err(Problem::new(
                        &item.at,
                        ikey,
                        format!("`links` names `{target}`, which is not defined or not in an enabled profile"),
                    ));
                }
                add(ctx, target, alias, &item.at, &ikey)?;
                linked.entry(k.name.clone()).or_default().push(target.to_string());
            }
        }
        if let Some(c) = node.get("container_name") {
            let key = format!("services.{}.container_name", k.name);
            let name = values::string(c, &key)?;
            add(ctx, &k.name, &name, &c.at, &key)?;
        }
    }
    Ok((out, linked))
}

/// Top-level volumes: the environment's own (`driver: local`, no options), or external ones.
fn volumes(ctx: &mut Context, node: Option<&Node>) -> R<BTreeMap<String, VolumeDecl>> {
    let mut out = BTreeMap::new();
    let Some(node) = node else { return Ok(out) };
    for (k, v) in values::mapping(node, "volumes")? {
        let path = format!("volumes.{}", k.name);
        values::mapping(v, &path)?;
        values::only(v, &path, &["driver", "driver_opts", "external", "labels", "name"])?;
        let external = match v.get("external") {
            None => false,
            // The old form `external: {name: x}`.
            Some(e) if matches!(e.value, Value::Map(_)) => {
                values::only(e, &format!("{path}.external"), &["name"])?;
                true
            }
            Some(e) => values::boolean(e, &format!("{path}.external"))?,
        };
        let name = v
            .get("name")
            .map(|n| values::string(n, &format!("{path}.name")))
            .transpose()?
            .or_else(|| v.get("external").and_then(|e| e.get("name")).and_then(Node::as_str).map(str::to_string));
        if external {
            for opt in ["driver", "driver_opts", "labels"] {
                if let Some(o) = v.get(opt) {
                    return Err(Problem::new(
                        &o.at,
                        format!("{path}.{opt}"),
                        "an external volume exists already: it takes no creation options",
                    ));
                }
            }
            out.insert(k.name.clone(), VolumeDecl::External(name.unwrap_or_else(|| k.name.clone())));
            continue;
        }
        let mut driver_opts = BTreeMap::new();
        for (opt, ov) in v.as_map().unwrap_or_default() {
            let key = format!("{path}.{}", opt.name);
            match opt.name.as_str() {
                "driver" if ov.as_str() == Some("local") => {}
                "driver" => ctx.cannot(&ov.at, &key, "volumes use the target's local driver")?,
                "driver_opts" => {
                    for e in values::entries(ov, &key, &['='])? {
                        let value = values::entry_text(ctx, &e, &key)?.unwrap_or_default();
                        driver_opts.insert(e.key, value);
                    }
                }
                "labels" => ctx.warn(&opt.at, &key, "volume labels are the library's own: these are not set"),
                "name" => ctx.warn(
                    &opt.at,
                    &key,
                    "the volume is named <project>-<environment>-<volume> on the target, not by `name` (mark it `external: true` to use an existing volume of that name)",
                ),
                _ => {}
            }
        }
        out.insert(k.name.clone(), VolumeDecl::Owned(driver_opts));
    }
    Ok(out)
}

/// Top-level networks: declared names, and the engine name of each external one (which services
/// join). The environment has one network of its own, where every service reaches every other by
/// name: another declared network is said in a warning.
fn networks(ctx: &mut Context, node: Option<&Node>) -> R<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    let Some(node) = node else { return Ok(out) };
    for (k, v) in values::mapping(node, "networks")? {
        let path = format!("networks.{}", k.name);
        values::mapping(v, &path)?;
        values::only(
            v,
            &path,
            &[
                "driver",
                "driver_opts",
                "external",
                "internal",
                "attachable",
                "enable_ipv4",
                "enable_ipv6",
                "ipam",
                "labels",
                "name",
            ],
        )?;
        let external = match v.get("external") {
            None => false,
            Some(e) if matches!(e.value, Value::Map(_)) => true,
            Some(e) => values::boolean(e, &format!("{path}.external"))?,
        };
        if external {
            let name = v
                .get("name")
                .and_then(Node::as_str)
                .or_else(|| v.get("external").and_then(|e| e.get("name")).and_then(Node::as_str))
                .unwrap_or(&k.name)
                .to_string();
            out.insert(k.name.clone(), Some(name));
            continue;
        }
        if k.name != "default" {
            ctx.warn(
                &k.at,
                &path,
                "the environment has one network of its own, where every service reaches every other by name: this network is not created, and services on different networks are not kept apart",
            );
        }
        out.insert(k.name.clone(), None);
    }
    Ok(out)
}

/// Top-level `secrets` or `configs`: each from a `file` (bind-mounted), an `environment`
/// variable or inline `content` (written into the containers before they start).
fn file_sources(ctx: &mut Context, node: Option<&Node>, what: &str) -> R<BTreeMap<String, FileSource>> {
    let mut out = BTreeMap::new();
    let Some(node) = node else { return Ok(out) };
    let secret = what == "secrets";
    for (k, v) in values::mapping(node, what)? {
        let path = format!("{what}.{}", k.name);
        values::mapping(v, &path)?;
        values::only(
            v,
            &path,
            &[
                "file",
                "environment",
                "content",
                "external",
                "name",
                "driver",
                "driver_opts",
                "template_driver",
                "labels",
            ],
        )?;
        let mut source = None;
        for (opt, ov) in v.as_map().unwrap_or_default() {
            let key = format!("{path}.{}", opt.name);
            let found = match opt.name.as_str() {
                "file" => FileSource::Path(ctx.path(&ov.at, &values::string(ov, &key)?)),
                "environment" => {
                    let var = values::string(ov, &key)?;
                    let Some(value) = ctx.vars.get(&var).map(str::to_string) else {
                        return Err(Problem::new(
                            &ov.at,
                            key,
                            format!("the variable {var} is not set (in the environment or the .env file)"),
                        ));
                    };
                    match secret {
                        // Read again from the process environment on a rollback, when it came from there.
                        true if !ctx.vars.given.contains_key(&var) && ctx.vars.process.contains_key(&var) => {
                            FileSource::Secret(
                                crate::model::Secret::from_env(&var)
                                    .map_err(|e| Problem::new(&ov.at, key.clone(), e.to_string()))?,
                            )
                        }
                        true => FileSource::Secret(crate::model::Secret::new(value)),
                        false => FileSource::Text(value),
                    }
                }
                "content" => {
                    let text = values::string(ov, &key)?;
                    if secret {
                        FileSource::Secret(crate::model::Secret::new(text))
                    } else {
                        FileSource::Text(text)
                    }
                }
                "labels" | "name" => {
                    ctx.warn(&opt.at, &key, "not set: a file is mounted or written as it is");
                    continue;
                }
                x if x.starts_with("x-") => continue,
                _ => {
                    ctx.cannot(
                        &opt.at,
                        &key,
                        &format!("{what} come from a `file`, an `environment` variable or `content` (as compose gives them without a swarm)"),
                    )?;
                    continue;
                }
            };
            if source.is_some() {
                return Err(Problem::new(&opt.at, key, "a second source: give one of file, environment and content"));
            }
            source = Some(found);
        }
        if let Some(f) = source {
            out.insert(k.name.clone(), f);
        }
    }
    Ok(out)
}
