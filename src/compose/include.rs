//! `include`: other compose applications copied into this one. Each entry (`- path`, or
//! `{path, project_directory, env_file}` where `path` may list files to merge) is loaded as a
//! project of its own: its relative paths resolve from its project directory (its first file's
//! by default), and its variables come from its own `.env` (or `env_file`), overridden by this
//! project's environment. Includes nest; a cycle is refused; a resource it defines that this
//! project defines too is an error, as in Compose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::context::{Context, Problem, R};
use super::interpolate::Variables;
use super::merge;
use super::yaml::{Node, Value};
use super::{dotenv, values};

/// The top-level sections an included project contributes.
const SECTIONS: &[&str] = &["services", "volumes", "networks", "secrets", "configs"];

/// Applies `root`'s `include` entries to it (and theirs, recursively); `chain` holds the files
/// being included, to refuse cycles.
pub(crate) fn apply(ctx: &mut Context, root: &mut Node, chain: &mut Vec<PathBuf>) -> R<()> {
    let Some(include) = root.get("include").cloned() else { return Ok(()) };
    let items = values::list(&include, "include")?;
    for (i, item) in items.iter().enumerate() {
        let key = format!("include[{i}]");
        let (paths, project_dir, env_files) = match &item.value {
            Value::Scalar { text, .. } => (vec![ctx.path(&item.at, text)], None, Vec::new()),
            Value::Map(_) => {
                values::only(item, &key, &["path", "project_directory", "env_file"])?;
                let path = item.get("path").ok_or_else(|| Problem::new(&item.at, &key, "needs `path`"))?;
                let paths =
                    values::strings(path, &format!("{key}.path"))?.iter().map(|p| ctx.path(&path.at, p)).collect();
                let dir = match item.get("project_directory") {
                    Some(d) => Some(ctx.path(&d.at, &values::string(d, &format!("{key}.project_directory"))?)),
                    None => None,
                };
                let envs = match item.get("env_file") {
                    Some(e) => {
                        values::strings(e, &format!("{key}.env_file"))?.iter().map(|p| ctx.path(&e.at, p)).collect()
                    }
                    None => Vec::new(),
                };
                (paths, dir, envs)
            }
            _ => return Err(Problem::new(&item.at, key, "a path, or a mapping with `path`")),
        };
        let Some(first) = paths.first().cloned() else {
            return Err(Problem::new(&item.at, key, "names no file"));
        };
        if chain.contains(&first) {
            return Err(Problem::new(
                &item.at,
                key,
                format!("{} includes itself, through {}", first.display(), show(chain)),
            ));
        }
        let dir = project_dir.unwrap_or_else(|| first.parent().map(Path::to_path_buf).unwrap_or_default());
        let env_files = if env_files.is_empty() { vec![dir.join(".env")] } else { env_files };
        // Its own variables, under this project's.
        let mut own =
            Variables { given: ctx.vars.given.clone(), process: ctx.vars.process.clone(), ..Variables::default() };
        let mut dotenv_vars: BTreeMap<String, String> = BTreeMap::new();
        for f in &env_files {
            if !f.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(f)
                .map_err(|e| Problem::new(&item.at, &key, format!("{}: cannot read it: {e}", f.display())))?;
            let lookup = |k: &str| own.get(k).map(str::to_string).or_else(|| dotenv_vars.get(k).cloned());
            let parsed = dotenv::parse(&text, &lookup, false)
                .map_err(|(line, reason)| Problem::new(&item.at, &key, format!("{}:{line}: {reason}", f.display())))?;
            dotenv_vars.extend(parsed.entries.into_iter().map(|e| (e.key, e.value)));
        }
        for (k, v) in &ctx.vars.dotenv {
            dotenv_vars.insert(k.clone(), v.clone());
        }
        own.dotenv = dotenv_vars;
        let saved = std::mem::replace(&mut ctx.vars, own);
        let loaded = load_all(ctx, &paths, &dir, chain);
        ctx.vars = saved;
        let included = loaded?;
        copy(root, included, &item.at, &key)?;
    }
    if let Value::Map(entries) = &mut root.value {
        entries.retain(|(k, _)| k.name != "include");
    }
    Ok(())
}

fn show(chain: &[PathBuf]) -> String {
    chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> ")
}

/// The included files merged, their own includes applied.
fn load_all(ctx: &mut Context, paths: &[PathBuf], dir: &Path, chain: &mut Vec<PathBuf>) -> R<Node> {
    let mut merged: Option<Node> = None;
    for p in paths {
        let doc = ctx.load(p, Some(dir))?;
        merged = Some(match merged {
            None => doc,
            Some(base) => merge::merge(base, doc, &[]),
        });
    }
    let mut merged = merged
        .ok_or_else(|| Problem::new(&super::yaml::At { file: "".into(), line: 0 }, "include", "names no file"))?;
    chain.push(paths[0].clone());
    let r = apply(ctx, &mut merged, chain);
    chain.pop();
    r?;
    Ok(merged)
}

/// Copies the included project's resources into `root`; a name both define is an error.
fn copy(root: &mut Node, included: Node, at: &super::yaml::At, key: &str) -> R<()> {
    let Value::Map(sections) = included.value else { return Ok(()) };
    let Value::Map(entries) = &mut root.value else { return Ok(()) };
    for (section, content) in sections {
        if !SECTIONS.contains(&section.name.as_str()) {
            continue;
        }
        let Value::Map(items) = content.value else { continue };
        let pos = match entries.iter().position(|(k, _)| k.name == section.name) {
            Some(p) => p,
            None => {
                entries.push((section.clone(), merge::empty_map(section.at.clone())));
                entries.len() - 1
            }
        };
        let Value::Map(target) = &mut entries[pos].1.value else {
            return Err(Problem::new(at, key, format!("`{}` of this project is not a mapping", section.name)));
        };
        for (name, value) in items {
            if target.iter().any(|(k, _)| k.name == name.name) {
                return Err(Problem::new(
                    at,
                    key,
                    format!(
                        "{}.{} is defined both here and in the included project: an include does not merge",
                        section.name, name.name
                    ),
                ));
            }
            target.push((name, value));
        }
    }
    Ok(())
}
