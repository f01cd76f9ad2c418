//! A merged compose model as an [`Environment`]: top-level volumes, secrets and configs, then each
//! service's keys (after `extends` and profiles) as a [`Service`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::health::{self, Test};
use super::merge;
use super::yaml::{At, Node, Value};
use super::{Context, Problem};
use crate::model::{
    Amount, Build, Condition, Environment, OnFailure, Port, PullPolicy, Resources, RestartPolicy, Rollout, Service,
    ServiceBuilder, Volume,
};

type R<T> = std::result::Result<T, Problem>;

/// Keys of a service that cannot be honoured: they change how a container runs in ways the
/// library's targets do not express.
const CANNOT: &[&str] = &[
    "privileged",
    "cap_add",
    "cap_drop",
    "devices",
    "network_mode",
    "pid",
    "ipc",
    "security_opt",
    "sysctls",
    "ulimits",
    "shm_size",
    "tmpfs",
    "read_only",
    "userns_mode",
    "cgroup_parent",
    "cgroup",
    "links",
    "external_links",
    "volumes_from",
    "runtime",
    "isolation",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "stop_signal",
    "group_add",
    "device_cgroup_rules",
    "oom_score_adj",
    "oom_kill_disable",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpuset",
    "cpu_count",
    "cpu_percent",
    "pids_limit",
    "blkio_config",
    "storage_opt",
    "mac_address",
    "gpus",
    "develop",
    "post_start",
    "pre_stop",
    "provider",
    "use_api_socket",
    "attach",
    "credential_spec",
    "annotations",
    "volume_driver",
];
/// Keys that change nothing a deployment depends on: read, said in a warning, not applied.
const COSMETIC: &[&str] =
    &["container_name", "hostname", "domainname", "tty", "stdin_open", "init", "logging", "platform"];

/// The environment a merged compose model describes.
pub(crate) fn environment(
    ctx: &mut Context,
    root: &Node,
    project: &str,
    env_name: &str,
    profiles: &BTreeSet<String>,
) -> R<Environment> {
    let top = root.as_map().unwrap_or_default();
    for (k, v) in top {
        match k.name.as_str() {
            "version" | "name" | "services" | "volumes" | "secrets" | "configs" => {}
            "networks" => {
                for (n, _) in v.as_map().unwrap_or_default() {
                    if n.name != "default" {
                        ctx.warn(
                            &n.at,
                            &format!("networks.{}", n.name),
                            "the environment has one network of its own, where every service reaches every other by name: this network is not created",
                        );
                    }
                }
            }
            "include" => {
                ctx.cannot(&k.at, "include", "`include` is not read: list the files to Compose::new instead")?
            }
            name if name.starts_with("x-") => {}
            name => return Err(Problem::new(&k.at, name, "is not a top-level compose key")),
        }
    }
    let volumes = declared_volumes(ctx, root.get("volumes"))?;
    let files = FileSources {
        secrets: file_sources(ctx, root.get("secrets"), "secrets")?,
        configs: file_sources(ctx, root.get("configs"), "configs")?,
    };
    let services_node = root.get("services");
    let Some(services) = services_node.and_then(Node::as_map) else {
        let at = services_node.map(|n| n.at.clone()).unwrap_or_else(|| root.at.clone());
        return Err(Problem::new(&at, "services", "a compose file needs a `services` mapping"));
    };
    // extends, then profiles.
    let mut resolved: Vec<(String, Node)> = Vec::new();
    for (k, _) in services {
        let node = resolve_extends(ctx, services, &k.name, &mut Vec::new())?;
        resolved.push((k.name.clone(), node));
    }
    let enabled: BTreeSet<String> = resolved
        .iter()
        .filter(|(_, n)| match n.get("profiles") {
            None => true,
            Some(p) => strings_of(p).unwrap_or_default().iter().any(|p| profiles.contains(p)),
        })
        .map(|(name, _)| name.clone())
        .collect();
    // A service another waits for to complete successfully is a job.
    let mut jobs = BTreeSet::new();
    for (name, node) in &resolved {
        if !enabled.contains(name) {
            continue;
        }
        if let Some(deps) = node.get("depends_on") {
            let deps = merge::as_mapping(deps.clone(), true);
            for (dep, spec) in deps.as_map().unwrap_or_default() {
                if spec.get("condition").and_then(Node::as_str) == Some("service_completed_successfully") {
                    jobs.insert(dep.name.clone());
                }
            }
        }
    }
    let mut env = Environment::builder(project, env_name);
    for (name, node) in &resolved {
        if !enabled.contains(name) {
            continue;
        }
        let svc = ServiceMap {
            ctx,
            name,
            node,
            volumes: &volumes,
            files: &files,
            enabled: &enabled,
            job: jobs.contains(name),
        }
        .map()?;
        env = env.service(svc);
    }
    let at = services_node.map(|n| n.at.clone()).unwrap_or_else(|| root.at.clone());
    env.build().map_err(|e| Problem::new(&at, "services", e.to_string()))
}

/// `extends` applied, recursively (another file's service too), cycles refused.
fn resolve_extends(
    ctx: &mut Context,
    services: &[(super::yaml::Key, Node)],
    name: &str,
    seen: &mut Vec<String>,
) -> R<Node> {
    let Some((key, node)) = services.iter().find(|(k, _)| k.name == name) else {
        let at = services.first().map(|(k, _)| k.at.clone()).unwrap_or(At { file: "".into(), line: 0 });
        return Err(Problem::new(&at, format!("services.{name}"), "`extends` names a service that is not defined"));
    };
    let here = format!("{}:{name}", key.at.file);
    if seen.contains(&here) || seen.len() > 16 {
        return Err(Problem::new(
            &key.at,
            format!("services.{name}.extends"),
            format!("`extends` goes round in a circle: {} -> {here}", seen.join(" -> ")),
        ));
    }
    let Some(ext) = node.get("extends") else { return Ok(node.clone()) };
    seen.push(here);
    let path = format!("services.{name}.extends");
    let (base_name, file) = match &ext.value {
        Value::Scalar { text, .. } => (text.clone(), None),
        Value::Map(_) => {
            let base = ext
                .get("service")
                .and_then(Node::as_str)
                .ok_or_else(|| Problem::new(&ext.at, &path, "`extends` needs `service`"))?;
            (base.to_string(), ext.get("file").and_then(Node::as_str).map(str::to_string))
        }
        _ => {
            return Err(Problem::new(
                &ext.at,
                &path,
                "`extends` is a service name or a mapping with `service` (and `file`)",
            ))
        }
    };
    let base = match file {
        None => resolve_extends(ctx, services, &base_name, seen)?,
        Some(f) => {
            let file_path = relative_to(&ext.at, &f);
            let other = ctx.load(&file_path)?;
            let other_services = other.get("services").and_then(Node::as_map).map(<[_]>::to_vec).unwrap_or_default();
            resolve_extends(ctx, &other_services, &base_name, seen)?
        }
    };
    seen.pop();
    let mut own = node.clone();
    if let Value::Map(entries) = &mut own.value {
        entries.retain(|(k, _)| k.name != "extends");
    }
    Ok(merge::merge(base, own, ""))
}

/// A path written in a file, relative to that file's directory (`~` is the home directory).
fn relative_to(at: &At, written: &str) -> PathBuf {
    if let Some(rest) = written.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let p = Path::new(written);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let dir = Path::new(&*at.file).parent().map(Path::to_path_buf).unwrap_or_default();
    let joined = dir.join(p);
    std::path::absolute(&joined).unwrap_or(joined)
}

fn declared_volumes(ctx: &mut Context, node: Option<&Node>) -> R<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for (k, v) in node.and_then(Node::as_map).unwrap_or_default() {
        let path = format!("volumes.{}", k.name);
        for (opt, ov) in v.as_map().unwrap_or_default() {
            let key = format!("{path}.{}", opt.name);
            match opt.name.as_str() {
                "driver" if ov.as_str() == Some("local") => {}
                "labels" => ctx.warn(&opt.at, &key, "volume labels are the library's own: these are not set"),
                "name" => ctx.warn(
                    &opt.at,
                    &key,
                    "the volume is named <project>-<environment>-<volume> on the target, not by `name`",
                ),
                "external" if matches!(ov.as_str(), Some("false")) => {}
                "external" => ctx.cannot(
                    &opt.at,
                    &key,
                    "an external volume is not the environment's own: the library creates and owns its volumes",
                )?,
                "driver" | "driver_opts" => ctx.cannot(&opt.at, &key, "volumes use the target's local driver")?,
                x if x.starts_with("x-") => {}
                _ => return Err(Problem::new(&opt.at, key, "is not a key of a compose volume")),
            }
        }
        out.insert(k.name.clone());
    }
    Ok(out)
}

struct FileSources {
    secrets: BTreeMap<String, PathBuf>,
    configs: BTreeMap<String, PathBuf>,
}

/// Top-level `secrets` or `configs` with a `file`: name → absolute path.
fn file_sources(ctx: &mut Context, node: Option<&Node>, what: &str) -> R<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for (k, v) in node.and_then(Node::as_map).unwrap_or_default() {
        let path = format!("{what}.{}", k.name);
        let mut file = None;
        for (opt, ov) in v.as_map().unwrap_or_default() {
            let key = format!("{path}.{}", opt.name);
            match opt.name.as_str() {
                "file" => file = ov.as_str().map(|f| relative_to(&ov.at, f)),
                "environment" | "content" | "external" | "name" | "driver" | "driver_opts" | "template_driver" => ctx
                    .cannot(
                    &opt.at,
                    &key,
                    &format!("only file {what} are read (mounted read-only from this machine, as compose does)"),
                )?,
                "labels" => ctx.warn(&opt.at, &key, "not set"),
                x if x.starts_with("x-") => {}
                _ => return Err(Problem::new(&opt.at, key, format!("is not a key of a compose {what} entry"))),
            }
        }
        if let Some(f) = file {
            out.insert(k.name.clone(), f);
        }
    }
    Ok(out)
}

/// One service's mapping.
struct ServiceMap<'a> {
    ctx: &'a mut Context,
    name: &'a str,
    node: &'a Node,
    volumes: &'a BTreeSet<String>,
    files: &'a FileSources,
    enabled: &'a BTreeSet<String>,
    job: bool,
}

impl ServiceMap<'_> {
    fn key(&self, k: &str) -> String {
        format!("services.{}.{k}", self.name)
    }

    fn map(mut self) -> R<Service> {
        let node = self.node;
        let Some(entries) = node.as_map() else {
            return Err(Problem::new(
                &node.at,
                format!("services.{}", self.name),
                format!("a service is a mapping, not {}", node.kind()),
            ));
        };
        let mut b = if self.job { Service::job(self.name) } else { Service::builder(self.name) };
        let mut env_files: Vec<(String, String)> = Vec::new();
        let mut environment: Vec<(String, String)> = Vec::new();
        let (mut image, mut build) = (None, None);
        let mut deploy_replicas = None;
        for (k, v) in entries {
            let key = self.key(&k.name);
            match k.name.as_str() {
                "image" => image = Some(scalar(v, &key)?),
                "build" => build = Some(self.build(v, &key)?),
                "command" => b = b.command(self.command(v, &key)?),
                "entrypoint" => b = b.entrypoint(self.command(v, &key)?),
                "environment" => environment = self.environment(v, &key)?,
                "env_file" => env_files = self.env_files(v, &key)?,
                "ports" => {
                    for (i, p) in seq(v, &key)?.iter().enumerate() {
                        b = b.port(port(p, &format!("{key}[{i}]"))?);
                    }
                }
                "expose" => {} // every port is reachable on the environment's network
                "volumes" => {
                    for (i, item) in seq(v, &key)?.iter().enumerate() {
                        if let Some(vol) = self.volume(item, &format!("{key}[{i}]"))? {
                            b = b.volume(vol);
                        }
                    }
                }
                "secrets" => b = self.file_mounts(b, v, &key, true)?,
                "configs" => b = self.file_mounts(b, v, &key, false)?,
                "healthcheck" => {
                    if let Some(check) = self.healthcheck(v, &key)? {
                        b = b.health(check);
                    }
                }
                "depends_on" => b = self.depends_on(b, v, &key)?,
                "deploy" => {
                    let (nb, replicas) = self.deploy(b, v, &key)?;
                    b = nb;
                    deploy_replicas = replicas;
                }
                "scale" => deploy_replicas = Some(number(v, &key)?),
                "restart" => {
                    if !self.job {
                        b = b.restart(restart(v, &key)?);
                    }
                }
                "labels" => {
                    for (lk, lv) in merge::as_mapping(v.clone(), false).as_map().unwrap_or_default() {
                        b = b.label(&lk.name, lv.as_str().unwrap_or_default());
                    }
                }
                "user" => b = b.user(scalar(v, &key)?),
                "working_dir" => b = b.workdir(scalar(v, &key)?),
                "stop_grace_period" => b = b.stop_grace_period(duration(v, &key)?),
                "mem_limit" => b = b.resources(Resources::new().memory_mb(megabytes(v, &key)?)),
                "cpus" => b = b.resources(Resources::new().cpus(float(v, &key)?)),
                "pull_policy" => b = b.pull(pull_policy(v, &key)?),
                "profiles" | "extends" => {}
                "networks" => {
                    let names: Vec<String> = match &v.value {
                        Value::Map(m) => m.iter().map(|(k, _)| k.name.clone()).collect(),
                        _ => strings_of(v).unwrap_or_default(),
                    };
                    if names.iter().any(|n| n != "default") {
                        self.ctx.warn(
                            &k.at,
                            &key,
                            "the service is on the environment's one network, where it reaches every service by name",
                        );
                    }
                }
                x if x.starts_with("x-") => {}
                x if COSMETIC.contains(&x) => {
                    let msg = format!("`{x}` is not applied: it changes nothing the deployment depends on");
                    self.ctx.warn(&k.at, &key, &msg);
                }
                x if CANNOT.contains(&x) => {
                    self.ctx.cannot(&k.at, &key, &format!("`{x}` cannot be honoured by the library's targets"))?
                }
                x => return Err(Problem::new(&k.at, key, format!("`{x}` is not a compose service key"))),
            }
        }
        b = match (image, build) {
            (_, Some(build)) => b.build_from(build),
            (Some(image), None) => b.image(image),
            (None, None) => {
                return Err(Problem::new(
                    &node.at,
                    format!("services.{}", self.name),
                    "a service needs `image` or `build`",
                ))
            }
        };
        // env_file first, `environment` over it.
        for (k, v) in env_files.into_iter().chain(environment) {
            b = b.env(k, v);
        }
        if let Some(n) = deploy_replicas {
            if !self.job {
                b = b.replicas(n);
            } else if n != 1 {
                self.ctx.warn(
                    &node.at,
                    &self.key("deploy.replicas"),
                    "a service others wait for to complete runs once, as a job",
                );
            }
        }
        b.build().map_err(|e| Problem::new(&node.at, format!("services.{}", self.name), e.to_string()))
    }

    fn build(&mut self, v: &Node, key: &str) -> R<Build> {
        match &v.value {
            Value::Scalar { text, .. } => Ok(Build::context(relative_to(&v.at, text))),
            Value::Map(entries) => {
                let mut build = None;
                let (mut dockerfile, mut args) = (None, Vec::new());
                for (k, bv) in entries {
                    let bkey = format!("{key}.{}", k.name);
                    match k.name.as_str() {
                        "context" => build = Some(Build::context(relative_to(&bv.at, &scalar(bv, &bkey)?))),
                        "dockerfile" => dockerfile = Some(scalar(bv, &bkey)?),
                        "args" => {
                            for (ak, av) in merge::as_mapping(bv.clone(), false).as_map().unwrap_or_default() {
                                args.push((ak.name.clone(), av.as_str().unwrap_or_default().to_string()));
                            }
                        }
                        "target"
                        | "cache_from"
                        | "cache_to"
                        | "network"
                        | "shm_size"
                        | "extra_hosts"
                        | "ssh"
                        | "secrets"
                        | "platforms"
                        | "labels"
                        | "no_cache"
                        | "pull"
                        | "tags"
                        | "privileged"
                        | "isolation"
                        | "additional_contexts"
                        | "dockerfile_inline" => {
                            self.ctx.cannot(&k.at, &bkey, "this build option is not passed to the image build")?
                        }
                        x if x.starts_with("x-") => {}
                        _ => return Err(Problem::new(&k.at, bkey, "is not a key of a compose build")),
                    }
                }
                let mut build = build.unwrap_or_else(|| Build::context(relative_to(&v.at, ".")));
                if let Some(d) = dockerfile {
                    build = build.dockerfile(d);
                }
                for (k, v) in args {
                    build = build.arg(k, v);
                }
                Ok(build)
            }
            _ => Err(Problem::new(&v.at, key, "`build` is a context path or a mapping")),
        }
    }

    /// `command`/`entrypoint`: a list as given, a string split as a shell would (compose does).
    fn command(&mut self, v: &Node, key: &str) -> R<Vec<String>> {
        match &v.value {
            Value::Scalar { text, .. } => health::shell_words(text)
                .ok_or_else(|| Problem::new(&v.at, key, "this string uses shell syntax (a pipe, `$`, `;`): write it as a list, or as [\"/bin/sh\", \"-c\", \"…\"]")),
            Value::Seq(_) => strings_of(v).ok_or_else(|| Problem::new(&v.at, key, "a list of strings")),
            _ => Err(Problem::new(&v.at, key, "a string or a list of strings")),
        }
    }

    fn environment(&mut self, v: &Node, key: &str) -> R<Vec<(String, String)>> {
        let m = merge::as_mapping(v.clone(), false);
        let Some(entries) = m.as_map() else {
            return Err(Problem::new(&v.at, key, "a mapping or a list of KEY=value"));
        };
        let mut out = Vec::new();
        for (k, val) in entries {
            match &val.value {
                Value::Scalar { text, .. } => out.push((k.name.clone(), text.clone())),
                // `KEY` alone (or `KEY:` with no value): from the environment, if set there.
                Value::Null => {
                    if let Some(v) = self.ctx.vars.get(&k.name) {
                        out.push((k.name.clone(), v.to_string()));
                    }
                }
                _ => {
                    return Err(Problem::new(
                        &val.at,
                        format!("{key}.{}", k.name),
                        "a value is a string, number or boolean",
                    ))
                }
            }
        }
        Ok(out)
    }

    fn env_files(&mut self, v: &Node, key: &str) -> R<Vec<(String, String)>> {
        let items: Vec<Node> = match &v.value {
            Value::Seq(items) => items.clone(),
            _ => vec![v.clone()],
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ikey = format!("{key}[{i}]");
            let (path, required) = match &item.value {
                Value::Scalar { text, .. } => (text.clone(), true),
                Value::Map(_) => {
                    let path = item
                        .get("path")
                        .and_then(Node::as_str)
                        .ok_or_else(|| Problem::new(&item.at, &ikey, "needs `path`"))?;
                    let required = !matches!(item.get("required").and_then(Node::as_str), Some("false"));
                    if let Some(f) = item.get("format").and_then(Node::as_str).filter(|f| *f != "raw") {
                        return Err(Problem::new(&item.at, ikey, format!("env_file format {f:?} is not known")));
                    }
                    (path.to_string(), required)
                }
                _ => return Err(Problem::new(&item.at, ikey, "a path, or a mapping with `path` and `required`")),
            };
            let file = relative_to(&item.at, &path);
            if !file.exists() && !required {
                continue;
            }
            let vars = &self.ctx.vars;
            let read = super::read_env_file(&file, |k| vars.get(k).map(str::to_string)).map_err(|mut p| {
                if p.at.line == 0 {
                    p = Problem::new(&item.at, ikey.clone(), format!("{}: {}", file.display(), p.reason));
                }
                p
            })?;
            out.extend(read);
        }
        Ok(out)
    }

    fn volume(&mut self, v: &Node, key: &str) -> R<Option<Volume>> {
        let (kind, source, target, read_only) = match &v.value {
            Value::Scalar { text, .. } => {
                let parts: Vec<&str> = text.split(':').collect();
                let (src, dst, mode) = match parts.as_slice() {
                    [dst] => (None, *dst, None),
                    [src, dst] => (Some(*src), *dst, None),
                    [src, dst, mode] => (Some(*src), *dst, Some(*mode)),
                    _ => return Err(Problem::new(&v.at, key, "a volume is [source:]target[:mode]")),
                };
                let ro = mode.is_some_and(|m| m.split(',').any(|o| o == "ro"));
                if let Some(m) = mode {
                    for o in m.split(',') {
                        if !matches!(o, "ro" | "rw" | "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent") {
                            return Err(Problem::new(&v.at, key, format!("volume mode {o:?} is not known")));
                        }
                    }
                }
                let kind = match src {
                    None => "anonymous",
                    Some(s) if s.starts_with(['.', '/', '~']) => "bind",
                    Some(_) => "volume",
                };
                (kind.to_string(), src.map(str::to_string), dst.to_string(), ro)
            }
            Value::Map(_) => {
                let kind = v.get("type").and_then(Node::as_str).unwrap_or("volume").to_string();
                let target =
                    v.get("target").and_then(Node::as_str).ok_or_else(|| Problem::new(&v.at, key, "needs `target`"))?;
                let ro = matches!(v.get("read_only").and_then(Node::as_str), Some("true"));
                for (k, _) in v.as_map().unwrap_or_default() {
                    if !matches!(
                        k.name.as_str(),
                        "type" | "source" | "target" | "read_only" | "volume" | "bind" | "tmpfs" | "consistency"
                    ) {
                        self.ctx.cannot(&k.at, &format!("{key}.{}", k.name), "this mount option is not applied")?;
                    }
                }
                let source = v.get("source").and_then(Node::as_str).map(str::to_string);
                let kind = if kind == "volume" && source.is_none() { "anonymous".to_string() } else { kind };
                (kind, source, target.to_string(), ro)
            }
            _ => return Err(Problem::new(&v.at, key, "a string or a mapping")),
        };
        let vol = match kind.as_str() {
            "bind" => Volume::bind(relative_to(&v.at, source.as_deref().unwrap_or_default())),
            "volume" => {
                let name = source.unwrap_or_default();
                if !self.volumes.contains(&name) {
                    return Err(Problem::new(
                        &v.at,
                        key,
                        format!("volume `{name}` is not declared under the top-level `volumes`"),
                    ));
                }
                Volume::named(name)
            }
            "tmpfs" => Volume::tmpfs(),
            "anonymous" => {
                let name = format!("{}{}", self.name, target.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
                self.ctx.warn(
                    &v.at,
                    key,
                    &format!("an anonymous volume is kept as the named volume `{name}`, so it survives a replacement"),
                );
                Volume::named(name.trim_end_matches('-').to_string())
            }
            other => return Err(Problem::new(&v.at, key, format!("volume type {other:?} is not supported"))),
        };
        let vol = vol.at(target);
        Ok(Some(if read_only { vol.read_only() } else { vol }))
    }

    /// File secrets and configs: bind mounts of their files, read-only, at `/run/secrets/<name>`
    /// (secrets) or `/<name>` (configs) unless a `target` says otherwise.
    fn file_mounts(&mut self, mut b: ServiceBuilder, v: &Node, key: &str, secrets: bool) -> R<ServiceBuilder> {
        let sources = if secrets { &self.files.secrets } else { &self.files.configs };
        for (i, item) in seq(v, key)?.iter().enumerate() {
            let ikey = format!("{key}[{i}]");
            let (name, target) = match &item.value {
                Value::Scalar { text, .. } => (text.clone(), None),
                Value::Map(_) => {
                    let name = item
                        .get("source")
                        .and_then(Node::as_str)
                        .ok_or_else(|| Problem::new(&item.at, &ikey, "needs `source`"))?;
                    for (k, _) in item.as_map().unwrap_or_default() {
                        if matches!(k.name.as_str(), "uid" | "gid" | "mode") {
                            self.ctx.warn(
                                &k.at,
                                &format!("{ikey}.{}", k.name),
                                "the file keeps its owner and mode on this machine",
                            );
                        }
                    }
                    (name.to_string(), item.get("target").and_then(Node::as_str).map(str::to_string))
                }
                _ => return Err(Problem::new(&item.at, ikey, "a name or a mapping with `source`")),
            };
            let Some(file) = sources.get(&name) else {
                return Err(Problem::new(
                    &item.at,
                    ikey,
                    format!(
                        "`{name}` is not declared with a `file` under the top-level `{}`",
                        if secrets { "secrets" } else { "configs" }
                    ),
                ));
            };
            let at = match target {
                Some(t) if t.starts_with('/') => t,
                Some(t) if secrets => format!("/run/secrets/{t}"),
                Some(t) => format!("/{t}"),
                None if secrets => format!("/run/secrets/{name}"),
                None => format!("/{name}"),
            };
            b = b.volume(Volume::bind(file.clone()).at(at).read_only());
        }
        Ok(b)
    }

    fn healthcheck(&mut self, v: &Node, key: &str) -> R<Option<crate::model::HealthCheck>> {
        if v.as_map().is_none() {
            return Err(Problem::new(&v.at, key, "a mapping"));
        }
        if v.get("disable").and_then(Node::as_str) == Some("true") {
            return Ok(None);
        }
        let test = match v.get("test") {
            None => return Ok(None),
            Some(t) => match &t.value {
                Value::Scalar { text, .. } => vec!["CMD-SHELL".to_string(), text.clone()],
                Value::Seq(_) => {
                    strings_of(t).ok_or_else(|| Problem::new(&t.at, format!("{key}.test"), "a list of strings"))?
                }
                _ => return Err(Problem::new(&t.at, format!("{key}.test"), "a string or a list")),
            },
        };
        let at = v.get("test").map(|t| t.at.clone()).unwrap_or_else(|| v.at.clone());
        let mut check = match health::test(&test).map_err(|r| Problem::new(&at, format!("{key}.test"), r))? {
            Test::Disabled => return Ok(None),
            Test::Image => crate::model::HealthCheck::docker(),
            Test::Check(c) => *c,
        };
        for (k, val) in v.as_map().unwrap_or_default() {
            let vkey = format!("{key}.{}", k.name);
            check = match k.name.as_str() {
                "interval" => check.interval(duration(val, &vkey)?),
                "timeout" => check.timeout(duration(val, &vkey)?),
                "retries" => check.retries(number(val, &vkey)?),
                "start_period" => check.start_period(duration(val, &vkey)?),
                "start_interval" => check.start_interval(duration(val, &vkey)?),
                "test" | "disable" => check,
                x if x.starts_with("x-") => check,
                _ => return Err(Problem::new(&k.at, vkey, "is not a key of a compose healthcheck")),
            };
        }
        Ok(Some(check))
    }

    fn depends_on(&mut self, mut b: ServiceBuilder, v: &Node, key: &str) -> R<ServiceBuilder> {
        let m = merge::as_mapping(v.clone(), true);
        for (dep, spec) in m.as_map().unwrap_or_default() {
            let dkey = format!("{key}.{}", dep.name);
            let mut condition = Condition::Started;
            let mut required = true;
            for (k, val) in spec.as_map().unwrap_or_default() {
                match k.name.as_str() {
                    "condition" => {
                        condition = match val.as_str() {
                            Some("service_started") => Condition::Started,
                            Some("service_healthy") => Condition::Healthy,
                            Some("service_completed_successfully") => Condition::CompletedSuccessfully,
                            other => {
                                return Err(Problem::new(
                                    &val.at,
                                    format!("{dkey}.condition"),
                                    format!(
                                "{other:?} is not service_started, service_healthy or service_completed_successfully"
                            ),
                                ))
                            }
                        }
                    }
                    "required" => required = val.as_str() != Some("false"),
                    "restart" => {
                        if val.as_str() == Some("true") {
                            self.ctx.warn(&k.at, &format!("{dkey}.restart"), "a dependent is not restarted when its dependency is replaced: apply the environment again to restart it");
                        }
                    }
                    x if x.starts_with("x-") => {}
                    _ => return Err(Problem::new(&k.at, format!("{dkey}.{}", k.name), "is not a key of a dependency")),
                }
            }
            if !self.enabled.contains(&dep.name) {
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
                continue;
            }
            b = b.depends_on(&dep.name, condition);
        }
        Ok(b)
    }

    fn deploy(&mut self, mut b: ServiceBuilder, v: &Node, key: &str) -> R<(ServiceBuilder, Option<u32>)> {
        let mut replicas = None;
        for (k, val) in v.as_map().unwrap_or_default() {
            let dkey = format!("{key}.{}", k.name);
            match k.name.as_str() {
                "replicas" => replicas = Some(number(val, &dkey)?),
                "resources" => b = self.resources(b, val, &dkey)?,
                "restart_policy" => {
                    if !self.job {
                        b = b.restart(self.restart_policy(val, &dkey)?);
                    }
                }
                "update_config" => b = b.rollout(self.rollout(val, &dkey)?),
                "rollback_config" => self.ctx.warn(&k.at, &dkey, "a rollback puts the old version back at the rollout's own pace (update_config): rollback_config is not applied separately"),
                "mode" if matches!(val.as_str(), Some("replicated")) => {}
                "mode" => self.ctx.cannot(&val.at, &dkey, "only `replicated` services are deployed")?,
                "labels" => {
                    for (lk, lv) in merge::as_mapping(val.clone(), false).as_map().unwrap_or_default() {
                        b = b.label(&lk.name, lv.as_str().unwrap_or_default());
                    }
                }
                "placement" | "endpoint_mode" => self.ctx.cannot(&k.at, &dkey, "placement is by role on several hosts (Service::role), not by constraints")?,
                x if x.starts_with("x-") => {}
                _ => return Err(Problem::new(&k.at, dkey, "is not a key of `deploy`")),
            }
        }
        Ok((b, replicas))
    }

    fn resources(&mut self, mut b: ServiceBuilder, v: &Node, key: &str) -> R<ServiceBuilder> {
        for (k, val) in v.as_map().unwrap_or_default() {
            let rkey = format!("{key}.{}", k.name);
            match k.name.as_str() {
                "limits" => {
                    let mut r = Resources::new();
                    for (lk, lv) in val.as_map().unwrap_or_default() {
                        let lkey = format!("{rkey}.{}", lk.name);
                        match lk.name.as_str() {
                            "cpus" => r = r.cpus(float(lv, &lkey)?),
                            "memory" => r = r.memory_mb(megabytes(lv, &lkey)?),
                            _ => self.ctx.cannot(&lk.at, &lkey, "only cpus and memory limits are applied")?,
                        }
                    }
                    b = b.resources(r);
                }
                "reservations" => self.ctx.warn(&k.at, &rkey, "reservations are not applied: only limits are"),
                _ => return Err(Problem::new(&k.at, rkey, "is not a key of `resources`")),
            }
        }
        Ok(b)
    }

    fn restart_policy(&mut self, v: &Node, key: &str) -> R<RestartPolicy> {
        let condition = v.get("condition").and_then(Node::as_str).unwrap_or("any");
        let attempts = match v.get("max_attempts") {
            Some(n) => number(n, &format!("{key}.max_attempts"))?,
            None => 0,
        };
        for (k, _) in v.as_map().unwrap_or_default() {
            if matches!(k.name.as_str(), "delay" | "window") {
                self.ctx.warn(&k.at, &format!("{key}.{}", k.name), "the engine's own restart back-off applies");
            }
        }
        match condition {
            "none" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure(attempts)),
            "any" => Ok(RestartPolicy::Always),
            other => Err(Problem::new(
                &v.at,
                format!("{key}.condition"),
                format!("{other:?} is not none, on-failure or any"),
            )),
        }
    }

    /// `update_config` as a [`Rollout`]: `parallelism` instances at a time, stopping the old ones
    /// first (`stop-first`, the default) or starting the new ones first (`start-first`).
    fn rollout(&mut self, v: &Node, key: &str) -> R<Rollout> {
        let parallelism = match v.get("parallelism") {
            Some(n) => number(n, &format!("{key}.parallelism"))?,
            None => 1,
        };
        let order = v.get("order").and_then(Node::as_str).unwrap_or("stop-first");
        let mut rollout = match (order, parallelism) {
            ("stop-first", 0) => Rollout::recreate(),
            ("start-first", 0) => Rollout::start_first(),
            ("stop-first", p) => Rollout::rolling().max_surge(Amount::count(0)).max_unavailable(Amount::count(p)),
            ("start-first", p) => Rollout::rolling().max_surge(Amount::count(p)).max_unavailable(Amount::count(0)),
            (other, _) => {
                let at = v.get("order").map(|n| n.at.clone()).unwrap_or_else(|| v.at.clone());
                return Err(Problem::new(
                    &at,
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
                "parallelism" | "order" => rollout,
                "delay" => rollout.batch_delay(duration(val, &ukey)?),
                "monitor" => rollout.min_ready(duration(val, &ukey)?),
                "failure_action" => match val.as_str() {
                    Some("rollback") => rollout.on_failure(OnFailure::Rollback),
                    Some("pause") => rollout.on_failure(OnFailure::Pause),
                    Some("continue") => {
                        self.ctx.warn(&val.at, &ukey, "`continue` is applied as stopping with the failure reported (OnFailure::Fail): a rollout never goes on past an unhealthy batch");
                        rollout.on_failure(OnFailure::Fail)
                    }
                    other => {
                        return Err(Problem::new(
                            &val.at,
                            ukey,
                            format!("{other:?} is not rollback, pause or continue"),
                        ))
                    }
                },
                "max_failure_ratio" => {
                    if float(val, &ukey)? != 0.0 {
                        self.ctx.cannot(
                            &val.at,
                            &ukey,
                            "every batch must be healthy: a failure ratio is not tolerated",
                        )?;
                    }
                    rollout
                }
                x if x.starts_with("x-") => rollout,
                _ => return Err(Problem::new(&k.at, ukey, "is not a key of `update_config`")),
            };
        }
        Ok(rollout)
    }
}

fn scalar(v: &Node, key: &str) -> R<String> {
    v.as_str().map(str::to_string).ok_or_else(|| Problem::new(&v.at, key, format!("a string, not {}", v.kind())))
}

fn seq<'n>(v: &'n Node, key: &str) -> R<&'n [Node]> {
    match &v.value {
        Value::Seq(items) => Ok(items),
        _ => Err(Problem::new(&v.at, key, format!("a list, not {}", v.kind()))),
    }
}

fn strings_of(v: &Node) -> Option<Vec<String>> {
    match &v.value {
        Value::Seq(items) => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        Value::Scalar { text, .. } => Some(vec![text.clone()]),
        _ => None,
    }
}

fn number(v: &Node, key: &str) -> R<u32> {
    scalar(v, key)?.trim().parse().map_err(|_| Problem::new(&v.at, key, "a whole number"))
}

fn float(v: &Node, key: &str) -> R<f64> {
    let f: f64 = scalar(v, key)?.trim().parse().map_err(|_| Problem::new(&v.at, key, "a number"))?;
    if f.is_finite() && f >= 0.0 {
        Ok(f)
    } else {
        Err(Problem::new(&v.at, key, "a number of 0 or more"))
    }
}

/// A compose duration: `1m30s`, `10s`, `1.5s`, `500ms`, `2h`, `100us`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if let Ok(secs) = rest.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    while !rest.is_empty() {
        let n_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..n_len].parse().ok()?;
        rest = &rest[n_len..];
        let u_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[u_len..];
        total = total.checked_add(Duration::try_from_secs_f64(n * unit).ok()?)?;
    }
    Some(total)
}

fn duration(v: &Node, key: &str) -> R<Duration> {
    parse_duration(&scalar(v, key)?).ok_or_else(|| Problem::new(&v.at, key, "a duration such as 30s, 1m30s or 500ms"))
}

/// A byte size (`512m`, `1g`, `1.5G`, `1024`, `100k`, `2gb`) in whole megabytes, rounded up.
pub(crate) fn parse_megabytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let n_len = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let n: f64 = t[..n_len].parse().ok()?;
    let unit = match t[n_len..].trim().trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let mb = (n * unit / (1024.0 * 1024.0)).ceil();
    (mb.is_finite() && (0.0..1e15).contains(&mb)).then_some(mb as u64)
}

fn megabytes(v: &Node, key: &str) -> R<u64> {
    parse_megabytes(&scalar(v, key)?).ok_or_else(|| Problem::new(&v.at, key, "a size such as 512m or 1g"))
}

fn restart(v: &Node, key: &str) -> R<RestartPolicy> {
    let text = scalar(v, key)?;
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

fn pull_policy(v: &Node, key: &str) -> R<PullPolicy> {
    match scalar(v, key)?.as_str() {
        "always" => Ok(PullPolicy::Always),
        "never" => Ok(PullPolicy::Never),
        "missing" | "if_not_present" => Ok(PullPolicy::IfMissing),
        "build" => Ok(PullPolicy::IfMissing),
        other => Err(Problem::new(&v.at, key, format!("{other:?} is not always, never, missing or build"))),
    }
}

/// A port: `"8080"` (an ephemeral host port, as compose does), `"80:8080"`, `"127.0.0.1:80:8080"`,
/// `"8080/udp"`, or the long form.
fn port(v: &Node, key: &str) -> R<Port> {
    let bad = |why: &str| Problem::new(&v.at, key, why.to_string());
    let (container, published, host_ip, protocol) = match &v.value {
        Value::Scalar { text, .. } => {
            let (spec, protocol) = match text.rsplit_once('/') {
                Some((s, p)) => (s, p.to_string()),
                None => (text.as_str(), "tcp".to_string()),
            };
            // An IPv6 host address is bracketed: [::1]:80:8080.
            let (ip, rest) = match spec.strip_prefix('[') {
                Some(r) => {
                    let (ip, rest) =
                        r.split_once("]:").ok_or_else(|| bad("a bracketed address is followed by :port"))?;
                    (Some(ip.to_string()), rest)
                }
                None => (None, spec),
            };
            let parts: Vec<&str> = rest.split(':').collect();
            let (ip, host, container) = match (ip, parts.as_slice()) {
                (None, [c]) => (None, None, *c),
                (ip, [h, c]) => (ip, Some(*h), *c),
                (None, [ip, h, c]) => (Some(ip.to_string()), Some(*h), *c),
                _ => return Err(bad("a port is [[ip:]host:]container[/protocol]")),
            };
            (container.to_string(), host.filter(|h| !h.is_empty()).map(str::to_string), ip, protocol)
        }
        Value::Map(_) => {
            let target = v.get("target").and_then(Node::as_str).ok_or_else(|| bad("needs `target`"))?;
            let published = v.get("published").and_then(Node::as_str).map(str::to_string);
            let ip = v.get("host_ip").and_then(Node::as_str).map(str::to_string);
            let protocol = v.get("protocol").and_then(Node::as_str).unwrap_or("tcp").to_string();
            (target.to_string(), published, ip, protocol)
        }
        _ => return Err(bad("a string or a mapping")),
    };
    if container.contains('-') || published.as_deref().is_some_and(|p| p.contains('-')) {
        return Err(bad("port ranges are not supported: list each port"));
    }
    let container: u16 = container.parse().map_err(|_| bad("the container port is a number from 1 to 65535"))?;
    let mut p = match protocol.as_str() {
        "tcp" => Port::tcp(container),
        "udp" => Port::udp(container),
        other => return Err(bad(&format!("protocol {other:?} is not tcp or udp"))),
    };
    p = match published {
        None => p.publish_ephemeral(),
        Some(h) => p.publish(h.parse().map_err(|_| bad("the host port is a number from 1 to 65535"))?),
    };
    if let Some(ip) = host_ip {
        p = p.on_host_ip(ip.parse().map_err(|_| bad(&format!("{ip:?} is not an IP address")))?);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        for bad in ["", "s", "1x", "1e400s", "-1s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_megabytes("512m"), Some(512));
        assert_eq!(parse_megabytes("1g"), Some(1024));
        assert_eq!(parse_megabytes("1.5G"), Some(1536));
        assert_eq!(parse_megabytes("2gb"), Some(2048));
        assert_eq!(parse_megabytes("100k"), Some(1));
        assert_eq!(parse_megabytes("1x"), None);
    }
}
