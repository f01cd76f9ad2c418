//! Compose import: `docker-compose.yml` files as an [`Environment`], meaning exactly what Compose
//! makes of them.
//!
//! ```no_run
//! use harbormaster::Environment;
//! # fn run() -> harbormaster::Result<()> {
//! // Like `docker compose -f compose.yml -f compose.prod.yml`: merged in order.
//! let env = Environment::from_compose(["compose.yml", "compose.prod.yml"])?;
//! // An ordinary Environment: change it in code before planning.
//! let api = env.service("api").unwrap().to_builder().image("registry.example.com/api:3").build()?;
//! let env = env.to_builder().replace(api).build()?;
//! # let _ = env; Ok(()) }
//! ```
//!
//! [`Compose`] gives the options (project and environment names, profiles, variables, leniency)
//! and returns the warnings with the environment.
//!
//! The Compose Specification is the reference, and docker-compose's reading a second opinion
//! where the two agree. Where a file is silent, Docker's and Compose's defaults apply (no
//! restart, the engine's health check timings, replacement by stopping first). A key that cannot
//! be honoured is never dropped silently: it is an error naming the file, line and key
//! ([`ValidationError::Compose`](crate::ValidationError::Compose)), or, with [`Compose::lenient`] (and for keys that change nothing
//! a deployment depends on), a [`ComposeWarning`]; [`Environment::from_compose`] prints the
//! warnings where the user sees them. The full table of keys is `docs/compose.md`.
//!
//! Where each step lives:
//! - `yaml.rs`: the YAML (libyaml, as Compose parses it), each node with its file and line;
//!   anchors, aliases, merge keys, `!reset`/`!override`. `scalar.rs`: YAML booleans and numbers
//!   as Compose reads them.
//! - `interpolate.rs`: `${V}`, `${V:-d}`, `${V:?e}`, … ; `dotenv.rs`: `.env` and `env_file`.
//! - `merge.rs`: several files in order, by the specification's merge rules; `extends.rs`,
//!   `include.rs`.
//! - `project.rs`: top-level volumes, networks, secrets, configs; profiles, jobs, links (what they
//!   declare is `declared.rs`).
//! - `service.rs`: one service's keys, with `build.rs`, `ports.rs`, `mounts.rs`, `health.rs`,
//!   `deploy.rs`, `options.rs` and `shell.rs` (a string command as words), all filling in the
//!   service being read (`draft.rs`).

mod build;
mod context;
mod declared;
mod deploy;
mod dotenv;
mod draft;
mod extends;
mod health;
mod include;
mod interpolate;
mod libyaml;
mod merge;
mod mounts;
mod options;
mod ports;
mod project;
mod scalar;
mod service;
mod shell;
mod values;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::Environment;
use context::{Context, Problem};
use interpolate::Variables;
use yaml::At;

/// A key of a compose file that was read but not honoured, or honoured differently than Compose
/// would: where, and what to know. Serialized as `{"file", "line", "key", "message"}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComposeWarning {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// The key, as a path: `services.api.container_name`.
    pub key: String,
    /// What it means for the deployment.
    pub message: String,
}

impl std::fmt::Display for ComposeWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: `{}`: {}", self.file, self.line, self.key, self.message)
    }
}

/// What [`Compose::load`] made: the environment, and what it could not honour exactly.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The environment, validated.
    pub environment: Environment,
    /// Keys read but not honoured, or honoured differently (none are dropped silently).
    pub warnings: Vec<ComposeWarning>,
}

/// Options of a compose import ([`Environment::from_compose`] with the defaults).
#[derive(Clone, Debug)]
#[must_use = "nothing is read until .load() is called"]
pub struct Compose {
    files: Vec<PathBuf>,
    project: Option<String>,
    environment: String,
    profiles: Vec<String>,
    given: BTreeMap<String, String>,
    process_env: bool,
    env_file: Option<PathBuf>,
    project_dir: Option<PathBuf>,
    lenient: bool,
}

/// One compose file or several, in merge order: a path (`"compose.yml"`, a `Path`, a `PathBuf`),
/// or an array, slice or `Vec` of them (`["compose.yml", "compose.prod.yml"]`). From an iterator,
/// `.collect::<Vec<_>>()` first.
pub trait ComposeFiles {
    /// The paths, in merge order.
    fn into_paths(self) -> Vec<PathBuf>;
}

macro_rules! one_file {
    ($($t:ty),*) => {$(
        impl ComposeFiles for $t {
            fn into_paths(self) -> Vec<PathBuf> {
                vec![AsRef::<Path>::as_ref(&self).to_path_buf()]
            }
        }
    )*};
}
one_file!(&str, String, &String, &Path, PathBuf, &PathBuf);

fn all<P: AsRef<Path>>(files: impl IntoIterator<Item = P>) -> Vec<PathBuf> {
    files.into_iter().map(|p| p.as_ref().to_path_buf()).collect()
}

impl<P: AsRef<Path>, const N: usize> ComposeFiles for [P; N] {
    fn into_paths(self) -> Vec<PathBuf> {
        all(self)
    }
}

impl<P: AsRef<Path>, const N: usize> ComposeFiles for &[P; N] {
    fn into_paths(self) -> Vec<PathBuf> {
        all(self)
    }
}

impl<P: AsRef<Path>> ComposeFiles for &[P] {
    fn into_paths(self) -> Vec<PathBuf> {
        all(self)
    }
}

impl<P: AsRef<Path>> ComposeFiles for Vec<P> {
    fn into_paths(self) -> Vec<PathBuf> {
        all(self)
    }
}

impl<P: AsRef<Path>> ComposeFiles for &Vec<P> {
    fn into_paths(self) -> Vec<PathBuf> {
        all(self)
    }
}

impl Compose {
    /// The files, merged in this order: one path, or an array, slice or `Vec` of them
    /// ([`ComposeFiles`]).
    pub fn new(files: impl ComposeFiles) -> Compose {
        Compose {
            files: files.into_paths(),
            project: None,
            environment: "default".into(),
            profiles: Vec::new(),
            given: BTreeMap::new(),
            process_env: true,
            env_file: None,
            project_dir: None,
            lenient: false,
        }
    }

    /// The project name (default: the file's top-level `name`, else `COMPOSE_PROJECT_NAME`, else
    /// the first file's directory name, made a valid name).
    pub fn project(mut self, name: impl Into<String>) -> Self {
        self.project = Some(name.into());
        self
    }

    /// The environment name (default `default`): `staging`, `production`.
    pub fn environment(mut self, name: impl Into<String>) -> Self {
        self.environment = name.into();
        self
    }

    /// Enables a profile (besides those in `COMPOSE_PROFILES`): services that list it are included.
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profiles.push(name.into());
        self
    }

    /// A variable for interpolation, over the process environment and `.env`.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.given.insert(name.into(), value.into());
        self
    }

    /// Whether the process environment is read for variables (default `true`).
    pub fn process_env(mut self, read: bool) -> Self {
        self.process_env = read;
        self
    }

    /// The variables file (default: `.env` in the project directory, if it exists).
    pub fn env_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.env_file = Some(path.into());
        self
    }

    /// The directory relative paths of every file given resolve from, and where `.env` is
    /// looked for (default: the first file's directory, as `docker compose
    /// --project-directory`).
    pub fn project_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.project_dir = Some(dir.into());
        self
    }

    /// Keys that cannot be honoured become warnings instead of errors.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// Reads, interpolates and merges the files and maps them to an environment.
    pub fn load(self) -> Result<Imported> {
        self.load_inner().map_err(|p| Error::Invalid(p.into_error()))
    }

    fn load_inner(self) -> std::result::Result<Imported, Problem> {
        let Some(first) = self.files.first() else {
            let at = At { file: Arc::from("(no file)"), line: 0 };
            return Err(Problem::new(&at, "", "no compose file was given"));
        };
        let dir = match &self.project_dir {
            Some(d) => d.clone(),
            None => first.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let mut vars = Variables { given: self.given.clone(), ..Default::default() };
        if self.process_env {
            vars.process = std::env::vars().collect();
        }
        let dotenv = self.env_file.clone().unwrap_or_else(|| dir.join(".env"));
        let mut warnings = Vec::new();
        if dotenv.is_file() || self.env_file.is_some() {
            vars.dotenv = read_dotenv(&dotenv, &vars, &mut warnings)?;
        }
        let mut ctx = Context::new(vars, self.lenient);
        ctx.warnings = warnings;
        let mut merged: Option<yaml::Node> = None;
        for path in &self.files {
            let doc = ctx.load(path, Some(&dir))?;
            merged = Some(match merged {
                None => doc,
                Some(base) => merge::merge(base, doc, &[]),
            });
        }
        let mut root = merged.unwrap_or_else(|| merge::empty_map(At { file: Arc::from(""), line: 0 }));
        include::apply(&mut ctx, &mut root, &mut vec![first.clone()])?;
        merge::strip_resets(&mut root);
        let mut profiles: BTreeSet<String> = self.profiles.iter().cloned().collect();
        if let Some(p) = ctx.vars.get("COMPOSE_PROFILES") {
            profiles.extend(p.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string));
        }
        let project = match &self.project {
            Some(p) => p.clone(),
            None => root
                .get("name")
                .and_then(yaml::Node::as_str)
                .map(str::to_string)
                .or_else(|| ctx.vars.get("COMPOSE_PROJECT_NAME").map(str::to_string))
                .unwrap_or_else(|| project_from_dir(&dir)),
        };
        let environment = project::environment(&mut ctx, &root, &project, &self.environment, &profiles)?;
        Ok(Imported { environment, warnings: ctx.warnings })
    }
}

/// The project's `.env`: its variables, each interpolated from the environment and the lines
/// before it.
fn read_dotenv(
    path: &Path,
    vars: &Variables,
    warnings: &mut Vec<ComposeWarning>,
) -> std::result::Result<BTreeMap<String, String>, Problem> {
    let name = path.display().to_string();
    let at = At { file: Arc::from(name.as_str()), line: 0 };
    let meta = std::fs::metadata(path).map_err(|e| Problem::new(&at, "", format!("cannot read it: {e}")))?;
    if meta.len() > yaml::MAX_FILE_BYTES as u64 {
        return Err(Problem::new(&at, "", "is too large for a variables file"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Problem::new(&at, "", format!("cannot read it: {e}")))?;
    let lookup = |k: &str| vars.given.get(k).or_else(|| vars.process.get(k)).cloned();
    let parsed = dotenv::parse(&text, &lookup, false).map_err(|(line, reason)| Problem {
        at: At { file: Arc::from(name.as_str()), line },
        key: String::new(),
        reason,
    })?;
    for (line, var) in parsed.unset {
        warnings.push(ComposeWarning {
            file: name.clone(),
            line,
            key: String::new(),
            message: format!("variable {var} is not set: it is read as an empty string"),
        });
    }
    Ok(parsed.entries.into_iter().map(|e| (e.key, e.value)).collect())
}

/// A project name from a directory name: lower case, other characters as `-`.
fn project_from_dir(dir: &Path) -> String {
    let base = std::fs::canonicalize(dir).ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    let mut name: String = base
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    name = name.trim_matches('-').chars().take(40).collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "compose-");
    }
    name.trim_end_matches('-').to_string()
}

impl Environment {
    /// Reads compose files (merged in order, as `docker compose -f a -f b`) as an environment
    /// named `default` of the project the files name (or their directory's name).
    ///
    /// Each warning (a key read but not applied, or applied differently than the file might
    /// suggest) is said where the user sees it: as a `tracing` event at `WARN` when a subscriber
    /// takes those, and otherwise on standard error, as `docker compose` says its own.
    /// [`Compose`] returns them instead, and has the other options.
    pub fn from_compose(files: impl ComposeFiles) -> Result<Environment> {
        let imported = Compose::new(files).load()?;
        imported.say_warnings();
        Ok(imported.environment)
    }
}

impl Imported {
    /// Says each warning as [`Environment::from_compose`] does: a `tracing` event at `WARN` when
    /// a subscriber takes those, otherwise a line on standard error.
    pub fn say_warnings(&self) {
        let traced = tracing::enabled!(tracing::Level::WARN);
        for w in &self.warnings {
            if traced {
                tracing::warn!(file = %w.file, line = w.line, key = %w.key, "compose: {}", w.message);
            } else {
                eprintln!("warning: {w}");
            }
        }
    }
}

#[cfg(test)]
mod fuzz {
    //! No input makes the importer panic: arbitrary text, and compose-shaped documents built from
    //! the keys it knows with hostile values (JSON is YAML).
    use super::*;
    use proptest::prelude::*;

    fn import_text(text: &str, lenient: bool) -> std::result::Result<Imported, Problem> {
        let mut ctx = Context::new(Variables::default(), lenient);
        let name: Arc<str> = Arc::from("fuzz.yml");
        let mut doc = yaml::parse(text, &name)?;
        if !matches!(doc.value, yaml::Value::Map(_)) {
            return Err(Problem::new(&doc.at, "", "not a mapping"));
        }
        ctx.interpolate(&mut doc)?;
        merge::strip_resets(&mut doc);
        let environment = project::environment(&mut ctx, &doc, "fuzz", "default", &BTreeSet::new())?;
        Ok(Imported { environment, warnings: ctx.warnings })
    }

    const KEYS: &[&str] = &[
        "services",
        "volumes",
        "secrets",
        "configs",
        "networks",
        "name",
        "x-a",
        "image",
        "build",
        "context",
        "dockerfile",
        "args",
        "command",
        "entrypoint",
        "environment",
        "env_file",
        "path",
        "required",
        "ports",
        "target",
        "published",
        "host_ip",
        "protocol",
        "volumes",
        "type",
        "source",
        "read_only",
        "healthcheck",
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "disable",
        "depends_on",
        "condition",
        "restart",
        "deploy",
        "replicas",
        "update_config",
        "rollback_config",
        "parallelism",
        "order",
        "failure_action",
        "monitor",
        "delay",
        "max_failure_ratio",
        "resources",
        "limits",
        "cpus",
        "memory",
        "reservations",
        "restart_policy",
        "max_attempts",
        "profiles",
        "extends",
        "service",
        "file",
        "labels",
        "user",
        "working_dir",
        "stop_grace_period",
        "mem_limit",
        "scale",
        "pull_policy",
        "privileged",
        "api",
        "db",
        "web",
        "<<",
    ];
    const SCALARS: &[&str] = &[
        "",
        "0",
        "1",
        "-1",
        "65536",
        "99999999999999999999",
        "1e308",
        "NaN",
        "inf",
        "true",
        "false",
        "null",
        "~",
        "api",
        "db",
        "x:1",
        "8080",
        "80:8080",
        "127.0.0.1:80:8080/udp",
        "[::1]:1:2",
        "a:b:c:d",
        "./x:/y:ro",
        "data:/d",
        "/abs",
        "1m30s",
        "500ms",
        "99999999h",
        "512m",
        "1g",
        "-5g",
        "CMD",
        "CMD-SHELL",
        "NONE",
        "curl -f http://localhost:8080/",
        "nc -z localhost 1",
        "service_healthy",
        "service_completed_successfully",
        "start-first",
        "stop-first",
        "rollback",
        "continue",
        "on-failure:3",
        "${A}",
        "${A:-${B:-c}}",
        "${A:?boom}",
        "$$",
        "${",
        "${A",
        "\u{0}",
        "é",
        "🦀",
    ];

    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            prop::sample::select(SCALARS).prop_map(|s| serde_json::Value::String(s.to_string())),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|entries| {
                    serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text(text in "\\PC*") {
            let _ = import_text(&text, false);
        }

        #[test]
        fn compose_shaped_documents(
            services in prop::collection::vec(
                (prop::sample::select(&["api", "db", "web", "Bad_Name"][..]), prop::collection::vec((prop::sample::select(KEYS), value()), 0..8)),
                0..4,
            ),
            top in value(),
        ) {
            let services: serde_json::Map<String, serde_json::Value> = services
                .into_iter()
                .map(|(name, keys)| {
                    let mut svc: serde_json::Map<String, serde_json::Value> = keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    svc.entry("image".to_string()).or_insert_with(|| "x".into());
                    (name.to_string(), serde_json::Value::Object(svc))
                })
                .collect();
            let doc = serde_json::json!({ "services": services, "volumes": top });
            let text = doc.to_string();
            let _ = import_text(&text, false);
            let _ = import_text(&text, true);
        }
    }
}
