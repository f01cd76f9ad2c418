//! `postgres:15` and `redis:7` on a machine with no registry: packaged from Debian's own
//! PostgreSQL and Redis by tests/fixtures/images.sh (idempotent), with the official images'
//! contract.
#![allow(dead_code)]

use std::sync::OnceLock;

pub const POSTGRES: &str = "postgres:15";
pub const REDIS: &str = "redis:7";

/// Makes sure both images are in the local engine's store (panics loudly if they cannot be made).
pub fn ensure() {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let r = UP.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new("bash")
            .arg(root.join("tests/fixtures/images.sh"))
            .output()
            .map_err(|e| format!("cannot run tests/fixtures/images.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tests/fixtures/images.sh failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("these tests need postgres:15 and redis:7: {e}");
    }
}
