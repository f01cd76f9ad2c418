//! The layering of `src/`: no import cycle between top-level modules, and the order they depend
//! on each other in stays the one `src/lib.rs` describes (lower layers never name higher ones).

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
