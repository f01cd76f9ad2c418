//! The layering of `src/`: no import cycle between top-level modules, and the order they depend
//! on each other in stays the one `src/lib.rs` describes (lower layers never name higher ones);
//! inside each folder, no import cycle between its modules either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules, lowest layer first: a module may use only modules before it.
const LAYERS: &[&str] = &[
    "clock", "duration", "rfc3339", "json", "process", "scrub", "error", "model", "registry", "events", "backend",
    "health", "plan", "ingress", "state", "engine", "compose", "backup", "testing",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Which top-level modules each top-level module names in code (comments and docs left out).
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "fuzz" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if LAYERS.contains(&name.as_str()) && name != top {
                    out.entry(top.clone()).or_default().insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn lower_layers_never_use_higher_ones() {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for (from, tos) in edges() {
        let Some(r) = rank(&from) else { continue };
        for to in tos {
            if rank(&to).is_some_and(|t| t > r) {
                wrong.push(format!("{from} uses {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken (lowest first: {LAYERS:?}): {wrong:?}");
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
        if ["lib", "fuzz"].contains(&name.as_str()) {
            continue;
        }
        assert!(LAYERS.contains(&name.as_str()), "src/{name} is not in the layer list of tests/architecture.rs");
    }
}

/// Inside each folder of `src/`, the modules it holds (files and subfolders) form no import cycle:
/// whatever a folder's modules use of each other, one of them is always below the other.
#[test]
fn no_import_cycle_inside_a_folder() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src.clone()];
    let mut cycles = Vec::new();
    while let Some(dir) = dirs.pop() {
        let mut children = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            let name = p.file_name().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
            if p.is_dir() {
                dirs.push(p);
                children.insert(name);
            } else if p.extension().is_some_and(|e| e == "rs") && !["mod", "lib", "main"].contains(&name.as_str()) {
                children.insert(name);
            }
        }
        let path_of_dir: Vec<String> =
            dir.strip_prefix(&src).unwrap().components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
        let crate_prefix =
            std::iter::once("crate".to_string()).chain(path_of_dir.clone()).collect::<Vec<_>>().join("::") + "::";
        let graph = folder_edges(&dir, &children, &crate_prefix);
        for (from, tos) in &graph {
            for to in tos {
                if from < to && reaches(&graph, to, from) {
                    let folder = if path_of_dir.is_empty() {
                        "src".to_string()
                    } else {
                        format!("src/{}", path_of_dir.join("/"))
                    };
                    cycles.push(format!("{folder}: {from} <-> {to}"));
                }
            }
        }
    }
    cycles.sort();
    assert!(cycles.is_empty(), "import cycles inside a folder: {cycles:?}");
}

/// Which of `children` each child of `dir` names: `super::x` from a file of the folder (or from a
/// subfolder's `mod.rs`), `super::super::x` from a file one folder down, and `crate::…::x` from
/// anywhere below it.
fn folder_edges(dir: &Path, children: &BTreeSet<String>, crate_prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel: Vec<String> =
            f.strip_prefix(dir).unwrap().components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
        let from = rel[0].trim_end_matches(".rs").to_string();
        if !children.contains(&from) {
            continue;
        }
        // The path that names this folder's modules from this file.
        let up = match rel.len() {
            1 => Some("super::"),
            2 if rel[1] == "mod.rs" => Some("super::"),
            2 => Some("super::super::"),
            _ => None,
        };
        let text = std::fs::read_to_string(&f).unwrap();
        let code: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with("//")).collect();
        let code = code.join("\n");
        let mut named = BTreeSet::new();
        for prefix in up.into_iter().chain([crate_prefix]) {
            let mut rest = code.as_str();
            while let Some(i) = rest.find(prefix) {
                // `super::super::x` is not `super::` + `super`.
                let before_ok = i < 7 || !rest[..i].ends_with("super::");
                rest = &rest[i + prefix.len()..];
                if !before_ok && prefix == "super::" {
                    continue;
                }
                if let Some(group) = rest.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for item in group[..end].split(',') {
                        let name: String =
                            item.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        named.insert(name);
                    }
                } else {
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    named.insert(name);
                }
            }
        }
        for n in named {
            if n != from && children.contains(&n) {
                out.entry(from.clone()).or_default().insert(n);
            }
        }
    }
    out
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(graph.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}
