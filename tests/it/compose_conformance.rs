//! The Compose Specification, key by key: each case in `tests/fixtures/compose/conformance/` is a
//! compose file (with what it needs: `.env`, env files, override files) and `expect.json`, the
//! typed result it must give through the public API: part of each service's serialized form,
//! or the error (file, line, key), and the warnings.
//!
//! `expect.json`:
//!
//! ```json
//! {
//!   "about": "what the case shows",
//!   "files": ["compose.yml"], "vars": {"TAG": "2"}, "profiles": ["debug"], "lenient": false,
//!   "services": {"api": {"command": ["serve"], "restart": "no"}},
//!   "absent": ["debug"],
//!   "warnings": [{"key": "services.api.container_name", "says": "alias"}],
//!   "error": {"line": 4, "key": "services.api.colour", "says": "not a compose service key"}
//! }
//! ```
//!
//! A service's expected value is matched as a subset of `serde_json::to_value(service)`: objects
//! by the keys given, lists item by item, a duration written `"30s"` against its serialized form,
//! and `${DIR}` (`${PARENT}`) in a string as the case's directory (its parent). The last test checks that the cases cover
//! every service key of the specification and every interpolation form.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harbormaster::compose::Compose;
use serde_json::Value;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose/conformance")
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("the conformance cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expect.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn duration_of(v: &Value) -> Option<Duration> {
    Some(Duration::new(v.get("secs")?.as_u64()?, u32::try_from(v.get("nanos")?.as_u64()?).ok()?))
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Whether `actual` holds `expected` (see the module doc); the first mismatch, with its path.
fn holds(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let av = a.get(k).unwrap_or(&Value::Null);
                holds(ev, av, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!("{path}: {} items expected, {} found: {actual}", e.len(), a.len()));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                holds(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::String(s), Value::Object(_)) if duration_of(actual).is_some() => {
            let want = parse_duration(s).ok_or_else(|| format!("{path}: {s:?} is not a duration"))?;
            let got = duration_of(actual).unwrap_or_default();
            if want.max(got) - want.min(got) < Duration::from_micros(1) {
                Ok(())
            } else {
                Err(format!("{path}: {s} expected, {got:?} found"))
            }
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: {expected} expected, {actual} found")),
    }
}

/// `${DIR}` replaced by the case's directory, and `${PARENT}` by its parent, in every string.
fn with_dir(v: &Value, dir: &Path) -> Value {
    match v {
        Value::String(s) => Value::String(
            s.replace("${DIR}", &dir.display().to_string())
                .replace("${PARENT}", &dir.parent().unwrap_or(dir).display().to_string()),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| with_dir(x, dir)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), with_dir(x, dir))).collect()),
        other => other.clone(),
    }
}

fn run(dir: &Path) -> Result<(), String> {
    let expect: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expect.json")).unwrap())
        .map_err(|e| format!("expect.json: {e}"))?;
    let expect = with_dir(&expect, dir);
    let files: Vec<PathBuf> = match expect["files"].as_array() {
        Some(f) => f.iter().map(|f| dir.join(f.as_str().unwrap_or_default())).collect(),
        None => vec![dir.join("compose.yml")],
    };
    let mut c = Compose::new(files).process_env(false).project_directory(dir);
    for (k, v) in expect["vars"].as_object().into_iter().flatten() {
        c = c.var(k, v.as_str().unwrap_or_default());
    }
    for p in expect["profiles"].as_array().into_iter().flatten() {
        c = c.profile(p.as_str().unwrap_or_default());
    }
    if expect["lenient"] == Value::Bool(true) {
        c = c.lenient();
    }
    let result = c.load();
    if let Some(e) = expect.get("error").filter(|e| !e.is_null()) {
        let err = match result {
            Ok(_) => return Err("loaded, but an error was expected".into()),
            Err(err) => err.to_string(),
        };
        let key = e["key"].as_str().unwrap_or_default();
        if let Some(line) = e["line"].as_u64() {
            let place = format!(":{line}: `{key}`");
            if !err.contains(&place) {
                return Err(format!("the error does not name line {line} and key {key}: {err}"));
            }
        }
        if !err.contains(key) || !err.contains(e["says"].as_str().unwrap_or_default()) {
            return Err(format!("the error does not say {e}: {err}"));
        }
        return Ok(());
    }
    let imported = result.map_err(|e| format!("refused: {e}"))?;
    for (name, want) in expect["services"].as_object().into_iter().flatten() {
        let svc = imported.environment.service(name).ok_or_else(|| format!("no service {name}"))?;
        let got = serde_json::to_value(svc).map_err(|e| e.to_string())?;
        holds(want, &got, name)?;
    }
    for name in expect["absent"].as_array().into_iter().flatten() {
        if imported.environment.service(name.as_str().unwrap_or_default()).is_some() {
            return Err(format!("{name} should not be part of the environment"));
        }
    }
    for w in expect["warnings"].as_array().into_iter().flatten() {
        let (key, says) = (w["key"].as_str().unwrap_or_default(), w["says"].as_str().unwrap_or_default());
        if !imported.warnings.iter().any(|x| x.key == key && x.message.contains(says)) {
            let all: Vec<String> = imported.warnings.iter().map(|w| w.to_string()).collect();
            return Err(format!("no warning for {key} saying {says:?}; the warnings: {all:#?}"));
        }
    }
    if expect["no_warnings"] == Value::Bool(true) && !imported.warnings.is_empty() {
        return Err(format!("no warning expected: {:?}", imported.warnings));
    }
    if let Some(n) = expect["project"].as_str() {
        if imported.environment.project() != n {
            return Err(format!("project {n} expected, {} found", imported.environment.project()));
        }
    }
    Ok(())
}

#[test]
fn every_case_gives_its_typed_result() {
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|d| run(d).err().map(|e| format!("{}: {e}", d.file_name().unwrap().to_string_lossy())))
        .collect();
    println!("compose conformance: {} cases, {} failing", cases.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every service key of the Compose Specification (its JSON schema, `definitions.service`).
const SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

/// The interpolation forms of the specification.
const INTERPOLATION: &[&str] = &["${", ":-", ":?", ":+", "$$"];

#[test]
fn the_cases_cover_every_key_and_interpolation_form() {
    let mut seen = BTreeSet::new();
    let mut text_all = String::new();
    for dir in cases() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                for line in text.lines() {
                    // A service key: four spaces in, under `services:`.
                    if let Some(k) = line.strip_prefix("    ").and_then(|l| l.split(':').next()) {
                        if !k.starts_with(' ') && !k.starts_with('-') && !k.starts_with('#') {
                            seen.insert(k.trim().to_string());
                        }
                    }
                }
                text_all.push_str(&text);
            }
            if p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".env") || n == ".env") {
                text_all.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let missing: Vec<&&str> = SERVICE_KEYS.iter().filter(|k| !seen.contains(**k)).collect();
    assert!(missing.is_empty(), "service keys with no conformance case: {missing:?}");
    for form in INTERPOLATION {
        assert!(text_all.contains(form), "no case uses {form}");
    }
    // `${V-d}` and `${V?e}`: the forms without a colon.
    assert!(regex_lite::Regex::new(r"\$\{[A-Z_]+-").unwrap().is_match(&text_all), "no case uses ${{V-default}}");
    assert!(regex_lite::Regex::new(r"\$\{[A-Z_]+\?").unwrap().is_match(&text_all), "no case uses ${{V?error}}");
    assert!(regex_lite::Regex::new(r"\$[A-Z_]+").unwrap().is_match(&text_all), "no case uses $V");
}
