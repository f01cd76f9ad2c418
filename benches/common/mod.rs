//! What the benchmarks share: run count, medians, unique environment names.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// How many runs to measure: `RUNS` from the environment, or `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(default)
}

/// The median (the upper one for an even count); the default value for no samples.
pub fn median<T: Ord + Copy + Default>(mut v: Vec<T>) -> T {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// An environment name no earlier run used: `prefix` and a time stamp.
pub fn unique(prefix: &str) -> String {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() % 1_000_000;
    format!("{prefix}{stamp}")
}

/// With `TRACE` set (an env-filter such as `harbormaster=debug`), the library's events and
/// engine calls are printed with their times: where a bench's time goes.
pub fn trace_if_asked() {
    if let Ok(filter) = std::env::var("TRACE") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
