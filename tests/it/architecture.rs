//! The layering of `src/`: which top-level module may use which is an explicit list (`ALLOWED`),
//! checked both ways against the code, with paths through the crate root's re-exports resolved
//! (`crate::Environment` is a use of `model`); the list itself has no cycle; inside each folder, no
//! import cycle between its modules either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` and the top-level modules it may use: the whole graph, lowest
/// layers first. A new edge is a design decision: add it here, in review, or the test fails; an
/// edge the code no longer has must go too.
const ALLOWED: &[(&str, &[&str])] = &[
    ("clock", &[]),
    ("duration", &[]),
    ("rfc3339", &[]),
    ("process", &[]),
    ("scrub", &[]),
    ("json", &["rfc3339"]),
    ("error", &["duration", "rfc3339", "scrub"]),
    ("model", &["duration", "error", "scrub"]),
    ("registry", &["error", "model"]),
    ("events", &["duration", "json", "registry", "scrub"]),
    ("backend", &["clock", "duration", "error", "events", "model", "process", "registry", "rfc3339", "scrub"]),
    ("health", &["backend", "clock", "duration", "error", "events", "model"]),
    ("plan", &["backend", "model"]),
    ("ingress", &["error", "model"]),
    ("state", &["backend", "error", "events", "ingress", "json", "model", "plan", "process", "scrub"]),
    (
        "engine",
        &[
            "backend", "clock", "error", "events", "health", "ingress", "model", "plan", "process", "registry",
            "scrub", "state",
        ],
    ),
    ("compose", &["duration", "error", "model"]),
    ("backup", &["backend", "error", "model", "process", "rfc3339", "scrub"]),
    ("testing", &["backend", "engine", "error", "model", "process"]),
    ("preview", &["backend", "backup", "engine", "error", "events", "json", "model", "plan", "state"]),
];

/// Modules outside the graph: the crate root, and the fuzzing entry points (which drive every
/// reader from the top).
const OUTSIDE: &[&str] = &["lib", "fuzz"];

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

/// A file's code without its comment lines (docs name modules in prose and links).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(str::trim).filter(|l| !l.starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn ident(text: &str) -> String {
    text.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// The first name of each path in a `{…}` group (`{model::X, Environment}`: `model`,
/// `Environment`), `rest` starting after the `{`.
fn group_heads(rest: &str) -> Vec<String> {
    let (mut depth, mut heads, mut at_start) = (1usize, Vec::new(), true);
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => at_start = true,
            c if at_start && !c.is_whitespace() => {
                heads.push(ident(&rest[i..]));
                at_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// What the crate root re-exports, by the name it is used under: `Environment` → `model`.
fn re_exports() -> BTreeMap<String, String> {
    let code = code_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"));
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let Some(at) = stmt.find("pub use ") else { continue };
        let path = &stmt[at + "pub use ".len()..];
        let top = ident(path);
        let names = match path.find('{') {
            Some(i) => path[i + 1..].trim_end_matches('}').split(',').map(str::to_string).collect(),
            None => vec![path.rsplit("::").next().unwrap_or_default().to_string()],
        };
        for n in names {
            let used_as = n.rsplit(" as ").next().unwrap_or_default().trim().to_string();
            if !used_as.is_empty() {
                out.insert(used_as, top.clone());
            }
        }
    }
    out
}

/// Which top-level modules each top-level module uses in code: through `crate::module`, through
/// a re-export (`crate::Environment`), or in a `crate::{…}` group.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tops: BTreeSet<String> = ALLOWED.iter().map(|(m, _)| m.to_string()).collect();
    let exports = re_exports();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if OUTSIDE.contains(&top.as_str()) {
            continue;
        }
        let code = code_of(&f);
        let mut rest = code.as_str();
        let mut named = Vec::new();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            match rest.strip_prefix('{') {
                Some(group) => named.extend(group_heads(group)),
                None => named.push(ident(rest)),
            }
        }
        for name in named {
            let module = if tops.contains(&name) { Some(name) } else { exports.get(&name).cloned() };
            if let Some(m) = module.filter(|m| *m != top) {
                out.entry(top.clone()).or_default().insert(m);
            }
        }
    }
    out
}

#[test]
fn top_level_modules_use_exactly_the_allowed_edges() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED.iter().map(|(m, to)| (*m, to.iter().copied().collect())).collect();
    let actual = edges();
    let mut unlisted = Vec::new();
    let mut unused = Vec::new();
    for (from, tos) in &actual {
        for to in tos {
            if !allowed.get(from.as_str()).is_some_and(|a| a.contains(to.as_str())) {
                unlisted.push(format!("{from} -> {to}"));
            }
        }
    }
    for (from, tos) in &allowed {
        for to in tos {
            if !actual.get(*from).is_some_and(|a| a.contains(*to)) {
                unused.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(unlisted.is_empty(), "uses not in ALLOWED (tests/it/architecture.rs): {unlisted:?}");
    assert!(unused.is_empty(), "edges in ALLOWED the code no longer has (remove them): {unused:?}");
}

#[test]
fn re_exports_are_resolved() {
    let exports = re_exports();
    assert_eq!(exports.get("Environment").map(String::as_str), Some("model"));
    assert_eq!(exports.get("DockerBackend").map(String::as_str), Some("backend"));
    assert_eq!(exports.get("Result").map(String::as_str), Some("error"));
    assert_eq!(group_heads("model::X, Environment, backend::{a, b}} rest"), ["model", "Environment", "backend"]);
}

#[test]
fn the_allowed_graph_has_no_cycle_and_lists_lower_layers_first() {
    let rank = |m: &str| ALLOWED.iter().position(|(l, _)| *l == m);
    for (i, (from, tos)) in ALLOWED.iter().enumerate() {
        for to in *tos {
            let r = rank(to).unwrap_or_else(|| panic!("{from} -> {to}: {to} is not a module in ALLOWED"));
            assert!(r < i, "{from} -> {to}: {to} must be listed before {from} (a lower layer)");
        }
    }
}

#[test]
fn every_top_level_module_is_in_the_graph() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
        if OUTSIDE.contains(&name.as_str()) {
            continue;
        }
        assert!(
            ALLOWED.iter().any(|(m, _)| *m == name),
            "src/{name} is not in the module graph of tests/it/architecture.rs"
        );
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

/// The table of rooms in `src/lib.rs` links source files (as docs.rs shows them): every file it
/// links exists, so a move that forgets the table fails here.
#[test]
fn the_room_table_links_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let prefix = "https://docs.rs/crate/harbormaster/latest/source/";
    let linked: Vec<&str> = lib.lines().filter_map(|l| l.split_once(prefix).map(|(_, path)| path.trim())).collect();
    assert!(linked.len() >= 10, "the room table links its files: {linked:?}");
    let missing: Vec<&&str> = linked.iter().filter(|p| !root.join(p).is_file()).collect();
    assert!(missing.is_empty(), "src/lib.rs links files that do not exist: {missing:?}");
}
