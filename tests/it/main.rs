//! The integration tests, as one test binary: each suite is a module (one file), and the helpers
//! they share are `support`. One binary links the crate once, where a binary per suite linked it
//! 27 times (the build took most of `bash tests/run.sh`, and gigabytes of `target/`).
//!
//! Run one suite with its module path as the filter: `cargo test --test it registry::`, one test
//! with `cargo test --test it -- --exact registry::pulls_with_credentials`. Tests that run a child
//! process run this binary again with the child test's full name (`support::child_test`).
//! What each suite covers, and the fixtures it needs: `tests/README.md`.

mod support;

mod architecture;
mod backup;
mod build;
mod compose;
mod compose_conformance;
mod compose_differential;
mod concurrency;
mod container_options;
mod deploy;
mod fly;
mod guides;
mod harness;
mod harness_exit;
mod health_and_ops;
mod kill;
mod memory;
mod multi_host;
mod output;
mod postgres;
mod previews;
mod prune;
mod registry;
mod reuse;
mod revisions_and_lock;
mod rollouts;
mod secrets;
mod swarm;
mod trust;
mod validation;
