//! The importer against Docker Compose itself: every file of the corpus in
//! `tests/fixtures/compose/corpus/` (compose files written here, modelled on what public stacks
//! use: self-hosted apps, Docker's samples, large products) is read by `docker-compose config`
//! (through `tests/fixtures/compose/oracle.py`) and by the library, and each service compared on
//! what its containers are made of: image, command, entrypoint, environment, ports, exposed
//! ports, volumes and mount options, dependencies, restart policy, the engine's health check,
//! resources and the other container options.
//!
//! A difference is allowed only where the library says so: a warning naming the service's key
//! (a file read leniently may be warned about for what it cannot honour). Anything else is a
//! silent difference, and fails. A file the library refuses (strictly) must name its file,
//! line and key. Where docker-compose 1.29 departs from the Compose Specification the oracle
//! follows the specification and says so (deviations are counted, not hidden).
//!
//! The counts (files, identical, warned, refused by key) are printed at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use harbormaster::compose::{Compose, Imported};
use harbormaster::{Condition, ImageSource, NetworkMode, Port, Publish, RestartPolicy, Service, Volume, VolumeSource};
use serde_json::{json, Map, Value};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose/corpus")
}

fn oracle(dir: &Path, files: &[String]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose/oracle.py");
    let out = Command::new("/usr/bin/python3").arg(script).arg(dir).args(files).output().unwrap_or_else(|e| {
        panic!("cannot run the oracle (docker-compose and python3-yaml: apt-get install docker-compose): {e}")
    });
    assert!(
        out.status.success(),
        "the oracle failed on {}: {}\n(docker-compose 1.29 must be installed: apt-get install docker-compose)",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the oracle prints JSON")
}

/// The files of a corpus case: `files.txt` (one per line) or `docker-compose.yml`.
fn files_of(dir: &Path) -> Vec<String> {
    match std::fs::read_to_string(dir.join("files.txt")) {
        Ok(t) => t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect(),
        Err(_) => vec!["docker-compose.yml".into()],
    }
}

fn import(dir: &Path, files: &[String], lenient: bool) -> harbormaster::Result<Imported> {
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let c = Compose::new(paths).process_env(false).project_directory(dir);
    if lenient {
        c.lenient().load()
    } else {
        c.load()
    }
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

fn port(p: &Port) -> String {
    let ip = match p.host_ip() {
        None => "*".to_string(),
        Some(ip) if ip.is_unspecified() && ip.is_ipv4() => "*".to_string(),
        Some(ip) => ip.to_string(),
    };
    let published = match p.publishing() {
        Publish::Fixed(h) => h.to_string(),
        _ => "*".into(),
    };
    format!("{ip}/{published}/{}/{}", p.container_port(), p.protocol().as_str())
}

fn volume(v: &Volume) -> String {
    let o = v.options();
    let mut opts: Vec<String> = Vec::new();
    if let Some(r) = o.selinux {
        opts.push(if r == harbormaster::Relabel::Shared { "z" } else { "Z" }.into());
    }
    if let Some(p) = o.propagation {
        opts.push(p.as_str().into());
    }
    if o.create_host_path {
        opts.push("create_host_path".into());
    }
    if o.no_copy {
        opts.push("nocopy".into());
    }
    if let Some(s) = o.tmpfs_size {
        opts.push(format!("size={s}"));
    }
    if let Some(m) = o.tmpfs_mode {
        opts.push(format!("mode={m:o}"));
    }
    opts.extend(o.tmpfs_flags.iter().cloned());
    opts.extend(o.driver_opts.iter().map(|(k, v)| format!("driver_opt:{k}={v}")));
    opts.sort();
    let (kind, source) = match v.source() {
        VolumeSource::Named(n) => ("volume", n.clone()),
        VolumeSource::External(n) => ("volume", format!("external:{n}")),
        VolumeSource::Bind(p) => ("bind", p.display().to_string()),
        VolumeSource::Tmpfs => ("tmpfs", String::new()),
    };
    let ro = if v.is_read_only() { "ro" } else { "rw" };
    format!("{kind}|{source}|{}|{ro}|{}", v.target(), opts.join(","))
}

/// A service of ours in the oracle's terms.
fn canonical(s: &Service) -> Value {
    let image = match s.image() {
        ImageSource::Reference(r) => json!(r),
        ImageSource::Build(b) => json!(b.tag_name()),
    };
    let mut ports: Vec<String> = s
        .ports()
        .iter()
        .filter(|p| p.publishing() != Publish::No)
        .map(port)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ports.sort();
    let expose: Vec<String> = s
        .ports()
        .iter()
        .filter(|p| p.publishing() == Publish::No)
        .map(|p| format!("{}/{}", p.container_port(), p.protocol().as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut volumes: Vec<String> = s.volumes().iter().map(volume).collect();
    volumes.sort();
    let depends: Map<String, Value> = s
        .dependencies()
        .iter()
        .map(|d| {
            let c = match d.condition {
                Condition::Started => "service_started",
                Condition::Healthy => "service_healthy",
                Condition::CompletedSuccessfully => "service_completed_successfully",
            };
            (d.service.clone(), json!(c))
        })
        .collect();
    let restart = match s.restart_policy() {
        RestartPolicy::No => "no".to_string(),
        RestartPolicy::Always => "always".into(),
        RestartPolicy::UnlessStopped => "unless-stopped".into(),
        RestartPolicy::OnFailure(0) => "on-failure".into(),
        RestartPolicy::OnFailure(n) => format!("on-failure:{n}"),
    };
    let o = s.container_options();
    let health = match o.engine_health() {
        None => Value::Null,
        Some(h) if h.is_disabled() => json!("disabled"),
        Some(h) => json!({
            "test": h.test,
            "interval": h.interval.map_or(30_000, ms),
            "timeout": h.timeout.map_or(30_000, ms),
            "retries": h.retries.unwrap_or(3),
            "start_period": h.start_period.map_or(0, ms),
        }),
    };
    let r = s.resources();
    let mut res = Map::new();
    if let Some(c) = r.cpu_limit() {
        res.insert("cpus".into(), json!(c));
    }
    if let Some(m) = r.memory_limit_bytes() {
        res.insert("memory".into(), json!(m));
    }
    if let Some(m) = r.memory_reservation_bytes() {
        res.insert("memory_reservation".into(), json!(m));
    }
    if let Some(m) = r.memory_swap_bytes() {
        res.insert("memory_swap".into(), json!(m));
    }
    if let Some(p) = r.pids_limit() {
        res.insert("pids".into(), json!(p));
    }
    if let Some(c) = r.cpu_shares_weight() {
        res.insert("cpu_shares".into(), json!(c));
    }
    if let (Some(q), _) = r.cfs() {
        res.insert("cpu_quota".into(), json!(q));
    }
    if let (_, Some(p)) = r.cfs() {
        res.insert("cpu_period".into(), json!(p));
    }
    if let Some(c) = r.cpu_set() {
        res.insert("cpuset".into(), json!(c));
    }
    if let Some(sw) = r.swappiness() {
        res.insert("memory_swappiness".into(), json!(sw));
    }
    let mut opts = Map::new();
    let mut flag = |k: &str, on: bool| {
        if on {
            opts.insert(k.into(), json!(true));
        }
    };
    flag("privileged", o.is_privileged());
    flag("read_only", o.is_read_only_root());
    flag("tty", o.has_tty());
    flag("stdin_open", o.keeps_stdin_open());
    flag("oom_kill_disable", o.is_oom_kill_disabled());
    let mut put = |k: &str, v: Value| {
        opts.insert(k.into(), v);
    };
    if let Some(i) = o.init_process() {
        put("init", json!(i));
    }
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        json!(v)
    };
    for (k, v) in [
        ("cap_add", o.capabilities_added()),
        ("cap_drop", o.capabilities_dropped()),
        ("security_opt", o.security_options()),
        ("group_add", o.groups()),
    ] {
        if !v.is_empty() {
            put(k, sorted(v));
        }
    }
    for (k, v) in [("dns", o.dns_servers()), ("dns_search", o.dns_search_domains()), ("dns_opt", o.dns_options())] {
        if !v.is_empty() {
            put(k, json!(v));
        }
    }
    let text_opts: [(&str, Option<String>); 12] = [
        ("userns_mode", o.userns_mode().map(str::to_string)),
        ("cgroup_parent", o.cgroup_parent_name().map(str::to_string)),
        ("network_mode", o.network().map(NetworkMode::to_string)),
        ("stop_signal", o.stop_signal_name().map(str::to_string)),
        ("hostname", o.host_name().map(str::to_string)),
        ("domainname", o.domain_name().map(str::to_string)),
        ("pid", o.pid_mode().map(str::to_string)),
        ("ipc", o.ipc_mode().map(str::to_string)),
        ("user", s.user().map(str::to_string)),
        ("working_dir", s.working_dir().map(str::to_string)),
        ("runtime", o.runtime_name().map(str::to_string)),
        ("mac_address", o.mac().map(str::to_string)),
    ];
    for (k, v) in text_opts {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    if let Some(adj) = o.oom_score() {
        put("oom_score_adj", json!(adj));
    }
    if let Some(b) = o.shm_size_bytes() {
        put("shm_size", json!(b));
    }
    if !o.sysctls().is_empty() {
        put("sysctls", json!(o.sysctls()));
    }
    if !o.ulimits().is_empty() {
        let u: BTreeMap<&String, [i64; 2]> = o.ulimits().iter().map(|(k, v)| (k, [v.soft, v.hard])).collect();
        put("ulimits", json!(u));
    }
    if !o.extra_hosts().is_empty() {
        let mut h: Vec<String> = o.extra_hosts().iter().map(|e| format!("{}:{}", e.host, e.address)).collect();
        h.sort();
        put("extra_hosts", json!(h));
    }
    if !o.devices().is_empty() {
        let mut d: Vec<String> =
            o.devices().iter().map(|d| format!("{}:{}:{}", d.host, d.container, d.permissions)).collect();
        d.sort();
        put("devices", json!(d));
    }
    if !s.labels().is_empty() {
        put("labels", json!(s.labels()));
    }
    let grace = ms(s.stop_grace());
    if grace != 10_000 {
        put("stop_grace_period", json!(grace));
    }
    if let Some(u) = o.uts_mode() {
        put("uts", json!(u));
    }
    if !o.device_requests().is_empty() {
        let mut d: Vec<String> = o
            .device_requests()
            .iter()
            .map(|r| {
                let count =
                    r.count.or(r.device_ids.is_empty().then_some(-1)).map(|c| c.to_string()).unwrap_or_default();
                format!(
                    "{}|{count}|{}|{}",
                    r.driver.clone().unwrap_or_default(),
                    r.device_ids.join(","),
                    r.capabilities.join(",")
                )
            })
            .collect();
        d.sort();
        put("device_requests", json!(d));
    }
    if !s.external_networks().is_empty() {
        let mut n = s.external_networks().to_vec();
        n.sort();
        put("external_networks", json!(n));
    }
    if let Some(l) = o.logging_driver() {
        put("logging", json!({"driver": l.driver, "options": l.options}));
    }
    json!({
        "image": image,
        "command": s.command(),
        "entrypoint": s.entrypoint(),
        "environment": s.env(),
        "ports": ports,
        "expose": expose,
        "volumes": volumes,
        "depends_on": depends,
        "restart": restart,
        "healthcheck": health,
        "resources": res,
        "options": opts,
    })
}

/// The compose keys whose warnings cover a difference in `field`.
fn keys_of(field: &str) -> &'static [&'static str] {
    match field {
        "image" => &["image", "build"],
        "command" => &["command"],
        "entrypoint" => &["entrypoint"],
        "environment" => &["environment", "env_file"],
        "ports" | "expose" => &["ports", "expose", "network_mode"],
        "external_networks" => &["networks"],
        "volumes" => &["volumes", "tmpfs", "secrets", "configs"],
        "depends_on" => &["depends_on", "links"],
        "restart" => &["restart", "deploy.restart_policy"],
        "healthcheck" => &["healthcheck"],
        "resources" => &["deploy.resources", "mem_", "cpu", "pids_limit", "memswap_limit"],
        _ => &[],
    }
}

/// Differences between ours and the oracle's, each with whether a warning covers it.
fn compare(
    name: &str,
    ours: &Value,
    theirs: &Value,
    warned: &[harbormaster::compose::ComposeWarning],
) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let covered = |keys: &[&str]| {
        warned.iter().any(|w| {
            let prefix = format!("services.{name}.");
            w.key.strip_prefix(&prefix).is_some_and(|rest| keys.iter().any(|k| rest.starts_with(k)))
        })
    };
    for field in [
        "image",
        "command",
        "entrypoint",
        "environment",
        "ports",
        "expose",
        "volumes",
        "depends_on",
        "restart",
        "healthcheck",
        "resources",
    ] {
        let (a, b) = (&ours[field], &theirs[field]);
        if field == "ports" && b.is_null() {
            continue; // docker-compose read the ports as base-60 numbers: see "deviations".
        }
        if a != b {
            out.push((format!("{field}: ours {a} / compose {b}"), covered(keys_of(field))));
        }
    }
    let (oa, ob) = (
        ours["options"].as_object().cloned().unwrap_or_default(),
        theirs["options"].as_object().cloned().unwrap_or_default(),
    );
    let mut keys: BTreeSet<&String> = oa.keys().collect();
    keys.extend(ob.keys());
    for k in keys {
        let (a, b) = (oa.get(k).unwrap_or(&Value::Null), ob.get(k).unwrap_or(&Value::Null));
        let b = if k == "stop_grace_period" && b == &json!(10_000) { &Value::Null } else { b };
        if a != b {
            out.push((format!("{k}: ours {a} / compose {b}"), covered(&[k.as_str()])));
        }
    }
    out
}

/// `spec.json` of a case: `{"service": {"field": value}}` (a mapping field is merged key by
/// key), with `"why"` saying where docker-compose 1.29 departs from the specification. Returns
/// how many values it set.
fn apply_spec(dir: &Path, oracle: &mut Value) -> usize {
    let Ok(text) = std::fs::read_to_string(dir.join("spec.json")) else { return 0 };
    let spec: Value = serde_json::from_str(&text).expect("spec.json is JSON");
    assert!(spec["why"].is_string(), "{}: spec.json says why", dir.display());
    let mut n = 0;
    for (svc, fields) in spec.as_object().into_iter().flatten().filter(|(k, _)| *k != "why") {
        for (field, value) in fields.as_object().into_iter().flatten() {
            let target = &mut oracle["services"][svc][field];
            match (target.as_object_mut(), value.as_object()) {
                (Some(t), Some(v)) => {
                    for (k, x) in v {
                        t.insert(k.clone(), x.clone());
                        n += 1;
                    }
                }
                _ => {
                    *target = value.clone();
                    n += 1;
                }
            }
        }
    }
    n
}

/// What one corpus file gave.
#[derive(Default)]
struct Outcome {
    file: String,
    compose_refused: bool,
    compose_error: String,
    identical: bool,
    warned_differences: usize,
    silent: Vec<String>,
    refused_keys: Vec<String>,
    refusal_without_place: Option<String>,
    lenient_error: Option<String>,
    deviations: usize,
}

fn run_one(dir: &Path) -> Outcome {
    let files = files_of(dir);
    let mut out = Outcome { file: dir.file_name().unwrap().to_string_lossy().into_owned(), ..Default::default() };
    let oracle = oracle(dir, &files);
    if oracle["status"] == "refused" {
        out.compose_refused = true;
        out.compose_error = oracle["error"].as_str().unwrap_or_default().lines().last().unwrap_or_default().to_string();
        return out;
    }
    out.deviations =
        oracle["deviations"].as_object().map_or(0, |d| d.values().map(|v| v.as_array().map_or(0, Vec::len)).sum());
    let mut oracle = oracle;
    out.deviations += apply_spec(dir, &mut oracle);
    match import(dir, &files, false) {
        Ok(_) => {}
        Err(e) => {
            let msg = e.to_string();
            // `file:LINE: `key`: …`
            let placed = regex_lite::Regex::new(r"\.ya?ml:([1-9][0-9]*): `([^`]+)`").unwrap();
            match placed.captures(&msg) {
                Some(c) => out.refused_keys.push(c[2].to_string()),
                None => out.refusal_without_place = Some(msg),
            }
        }
    }
    let imported = match import(dir, &files, true) {
        Ok(i) => i,
        Err(e) => {
            out.lenient_error = Some(e.to_string());
            return out;
        }
    };
    let services = oracle["services"].as_object().cloned().unwrap_or_default();
    for (name, theirs) in &services {
        let Some(svc) = imported.environment.service(name) else {
            out.silent.push(format!("{name}: not imported"));
            continue;
        };
        // Patience: the gate waits at least as long as the engine's check would.
        if let (Some(h), Some(eh)) = (svc.health(), svc.container_options().engine_health()) {
            if !eh.is_disabled() {
                let budget = eh.start_period.unwrap_or_default()
                    + eh.interval.unwrap_or(std::time::Duration::from_secs(30)) * eh.retries.unwrap_or(3);
                if h.startup_budget() < budget {
                    out.silent.push(format!("{name}: the gate waits {:?}, Compose {budget:?}", h.startup_budget()));
                }
            }
        }
        for (diff, warned) in compare(name, &canonical(svc), theirs, &imported.warnings) {
            if warned {
                out.warned_differences += 1;
            } else {
                out.silent.push(format!("{name}: {diff}"));
            }
        }
    }
    for s in imported.environment.services() {
        if !services.contains_key(s.name()) {
            out.silent.push(format!("{}: imported, but not a service to compose", s.name()));
        }
    }
    out.identical = out.silent.is_empty() && out.warned_differences == 0;
    out
}

#[test]
fn the_corpus_means_what_docker_compose_says() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("the corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 100, "the corpus holds {} files; at least 100 are wanted", dirs.len());
    let workers = 4;
    let chunks: Vec<Vec<PathBuf>> =
        (0..workers).map(|w| dirs.iter().skip(w).step_by(workers).cloned().collect()).collect();
    let mut outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| scope.spawn(move || chunk.iter().map(|d| run_one(d)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a worker")).collect()
    });
    outcomes.sort_by(|a, b| a.file.cmp(&b.file));

    let mut refused_by_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for o in &outcomes {
        for k in &o.refused_keys {
            let short = k.split('.').skip(2).collect::<Vec<_>>().join(".");
            let short = short.split('[').next().unwrap_or_default().to_string();
            *refused_by_key.entry(if short.is_empty() { k.clone() } else { short }).or_default() += 1;
        }
        for s in &o.silent {
            failures.push(format!("{}: silent difference: {s}", o.file));
        }
        if let Some(m) = &o.refusal_without_place {
            failures.push(format!("{}: refused without naming file, line and key: {m}", o.file));
        }
        if let Some(m) = &o.lenient_error {
            failures.push(format!("{}: refused even leniently, though docker-compose accepts it: {m}", o.file));
        }
    }
    let n = outcomes.len();
    let compose_refused = outcomes.iter().filter(|o| o.compose_refused).count();
    let identical = outcomes.iter().filter(|o| o.identical && !o.compose_refused).count();
    let strict_refused = outcomes.iter().filter(|o| !o.refused_keys.is_empty()).count();
    let warned: usize = outcomes.iter().map(|o| o.warned_differences).sum();
    let deviations: usize = outcomes.iter().map(|o| o.deviations).sum();
    println!("compose differential: {n} files; docker-compose refuses {compose_refused}");
    for o in outcomes.iter().filter(|o| o.compose_refused) {
        println!("    {}: {}", o.file, o.compose_error);
    }
    println!("  identical in every compared field: {identical}");
    println!("  differences said in a warning: {warned}");
    println!("  refused in strict mode (file, line and key named): {strict_refused}; by key: {refused_by_key:?}");
    println!("  where docker-compose 1.29 departs from the specification (the specification followed): {deviations}");
    println!("  silent differences: {}", failures.iter().filter(|f| f.contains("silent")).count());
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}
