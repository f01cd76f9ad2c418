//! Importing compose files: `Compose::load` beside `docker-compose config` (1.29) on the same
//! files, in one run: a file with 90,000 environment keys (where the importer was quadratic,
//! 14 s), one with 2,000 services, and the largest file of the differential corpus. Import time
//! must grow linearly: the 90,000-key file is also read at 30,000 and 60,000 keys.
//!
//! `cargo bench --bench compose_import` (RUNS, default 5). docker-compose must be installed
//! (`apt-get install docker-compose`); without it, only the library's times are printed.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harbormaster::compose::Compose;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("docker-compose.yml");
    std::fs::write(&f, text).unwrap();
    f
}

fn env_keys(n: usize) -> String {
    let mut t = String::from("services:\n  app:\n    image: example/app:1\n    environment:\n");
    for i in 0..n {
        t.push_str(&format!("      K{i:05}: v\n"));
    }
    t
}

fn services(n: usize) -> String {
    let mut t = String::from("services:\n");
    for i in 0..n {
        t.push_str(&format!(
            "  svc{i}:\n    image: example/app:{i}\n    environment:\n      - ID={i}\n    ports:\n      - \"{}:8080\"\n",
            10_000 + i
        ));
    }
    t
}

fn ours(file: &Path) -> Duration {
    let t = Instant::now();
    let imported = Compose::new(file).process_env(false).load().expect("the file imports");
    let took = t.elapsed();
    assert!(!imported.environment.services().is_empty());
    took
}

fn compose(file: &Path) -> Option<Duration> {
    let t = Instant::now();
    let out = std::process::Command::new("docker-compose").arg("-f").arg(file).arg("config").arg("-q").output().ok()?;
    out.status.success().then(|| t.elapsed())
}

fn show(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs = common::runs(5);
    let dir = std::env::temp_dir().join(common::unique("hm-bench-compose"));
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose/corpus");
    let largest = std::fs::read_dir(&corpus)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path().join("docker-compose.yml")))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap();
    let cases = [
        ("the largest corpus file", largest),
        ("30,000 environment keys", write(&dir, "env30", &env_keys(30_000))),
        ("60,000 environment keys", write(&dir, "env60", &env_keys(60_000))),
        ("90,000 environment keys", write(&dir, "env90", &env_keys(90_000))),
        ("2,000 services", write(&dir, "svc2000", &services(2_000))),
    ];
    println!("| file | harbormaster (median of {runs}) | docker-compose config | ratio |");
    println!("|---|---|---|---|");
    for (what, file) in &cases {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for _ in 0..runs {
            a.push(ours(file));
            if let Some(d) = compose(file) {
                b.push(d);
            }
        }
        let (a, b) = (common::median(a), (!b.is_empty()).then(|| common::median(b)));
        let ratio = b.map(|b| format!("{:.3}", a.as_secs_f64() / b.as_secs_f64())).unwrap_or_else(|| "-".into());
        println!("| {what} | {} | {} | {ratio} |", show(a), b.map(show).unwrap_or_else(|| "not installed".into()));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
