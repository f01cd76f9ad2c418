//! `extends`: a service built on another, in the same file or another one (whose relative paths
//! stay relative to it), through chains of any depth; a cycle is refused. The chain is followed
//! iteratively, then merged from its root down by the merge rules of `merge.rs`.

use std::collections::HashSet;
use std::path::PathBuf;

use super::context::{Context, Problem, R};
use super::merge;
use super::yaml::{At, Key, Node, Value};

/// Where a service of the chain is: its file's services (`None`: the merged model's) and name.
struct Link {
    file: Option<PathBuf>,
    name: String,
}

/// Service `name` of `services` with its `extends` chain applied.
pub(crate) fn resolve(ctx: &mut Context, services: &[(Key, Node)], name: &str) -> R<Node> {
    let mut chain: Vec<Node> = Vec::new();
    let mut seen: HashSet<(Option<PathBuf>, String)> = HashSet::new();
    let mut here = Link { file: None, name: name.to_string() };
    let mut came_from: Option<(At, String)> = None;
    loop {
        let found = match &here.file {
            None => services.iter().find(|(k, _)| k.name == here.name).map(|(k, v)| (k.clone(), v.clone())),
            Some(path) => {
                let doc = ctx.load(path, None)?;
                doc.get("services")
                    .and_then(Node::as_map)
                    .and_then(|s| s.iter().find(|(k, _)| k.name == here.name).map(|(k, v)| (k.clone(), v.clone())))
            }
        };
        let Some((key, node)) = found else {
            let (at, key) = came_from.unwrap_or_else(|| {
                let at = services.first().map(|(k, _)| k.at.clone()).unwrap_or(At { file: "".into(), line: 0 });
                (at, format!("services.{name}"))
            });
            let where_ = here.file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default();
            return Err(Problem::new(
                &at,
                key,
                format!("`extends` names service `{}`, which is not defined{where_}", here.name),
            ));
        };
        if !seen.insert((here.file.clone(), here.name.clone())) {
            return Err(Problem::new(
                &key.at,
                format!("services.{}.extends", here.name),
                format!("`extends` goes round in a circle through service `{}`", here.name),
            ));
        }
        let ext = node.get("extends").cloned();
        let mut own = node;
        if let Value::Map(entries) = &mut own.value {
            entries.retain(|(k, _)| k.name != "extends");
        } else {
            return Err(Problem::new(
                &own.at,
                format!("services.{}", here.name),
                format!("a service is a mapping, not {}", own.kind()),
            ));
        }
        chain.push(own);
        let Some(ext) = ext else { break };
        let path = format!("services.{}.extends", here.name);
        let (base, file) = match &ext.value {
            Value::Scalar { text, .. } => (text.clone(), None),
            Value::Map(_) => {
                super::values::only(&ext, &path, &["service", "file"])?;
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
        let file = match file {
            Some(f) => {
                let p = ctx.path(&ext.at, &f);
                if !p.is_file() {
                    return Err(Problem::new(
                        &ext.at,
                        format!("{path}.file"),
                        format!("{} is not a file", p.display()),
                    ));
                }
                Some(p)
            }
            None => here.file.clone(),
        };
        came_from = Some((ext.at.clone(), path));
        here = Link { file, name: base };
    }
    let mut result = chain.pop().unwrap_or_else(|| merge::empty_map(At { file: "".into(), line: 0 }));
    while let Some(own) = chain.pop() {
        result = merge::merge(result, own, &["services", name]);
    }
    Ok(result)
}
