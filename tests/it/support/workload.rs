//! Builds the test workload (tests/workload) as a static binary and packages it `FROM scratch`
//! through harbormaster's own image build. Shared by tests, examples and benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use harbormaster::{Build, DockerBackend};

/// The workload image tag.
pub const IMAGE: &str = "harbormaster-test/workload:latest";
/// The same image with a Docker `HEALTHCHECK` (`/workload probe`, every 200 ms).
pub const IMAGE_WITH_HEALTHCHECK: &str = "harbormaster-test/workload-hc:latest";

/// A Caddy image made from the host's `/usr/bin/caddy` (Debian's `caddy` package).
pub const CADDY_IMAGE: &str = "harbormaster-test/caddy:latest";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles the workload statically (glibc, crt-static) and returns the binary's path.
fn compile() -> Result<PathBuf, String> {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let target_dir = root().join("target").join("workload");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--target", &triple, "--manifest-path"])
        .arg(root().join("tests/workload/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|e| format!("running cargo to build the workload: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the workload failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(target_dir.join(triple).join("release").join("harbormaster-workload"))
}

fn context(binary: &Path) -> Result<PathBuf, String> {
    let dir = root().join("target").join("workload").join("context");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::copy(binary, dir.join("workload")).map_err(|e| format!("copying the workload: {e}"))?;
    let base = "FROM scratch\nCOPY workload /workload\nENTRYPOINT [\"/workload\"]\n";
    std::fs::write(dir.join("Dockerfile"), base).map_err(|e| e.to_string())?;
    let hc = format!("{base}HEALTHCHECK --interval=200ms --timeout=1s --retries=50 CMD [\"/workload\", \"probe\"]\n");
    std::fs::write(dir.join("Dockerfile.healthcheck"), hc).map_err(|e| e.to_string())?;
    Ok(dir)
}

async fn build_images(docker: &DockerBackend) -> Result<(), String> {
    let binary = tokio::task::spawn_blocking(compile).await.map_err(|e| e.to_string())??;
    let dir = context(&binary)?;
    docker.build(&Build::context(&dir), IMAGE).await.map_err(|e| e.to_string())?;
    docker
        .build(&Build::context(&dir).dockerfile("Dockerfile.healthcheck"), IMAGE_WITH_HEALTHCHECK)
        .await
        .map_err(|e| e.to_string())?;
    let caddy_dir = root().join("target").join("workload").join("caddy");
    let caddy = harbormaster::ingress::caddy_build_context("/usr/bin/caddy", &caddy_dir)
        .map_err(|e| format!("{e} (the ingress tests need Debian's caddy package)"))?;
    docker.build(&caddy, CADDY_IMAGE).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Builds both workload images once per process (on a thread of its own, so it works from any runtime).
pub fn ensure_images() -> &'static str {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let docker = DockerBackend::connect().await.map_err(|e| e.to_string())?;
                build_images(&docker).await
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the image build thread panicked".into()))
    });
    if let Err(e) = r {
        panic!("cannot build the test workload image: {e}");
    }
    IMAGE
}

/// A second Caddy image for ingress upgrades: the first plus a label, so a new image ID.
#[allow(dead_code)]
pub const CADDY_NEXT_IMAGE: &str = "harbormaster-test/caddy:next";

/// Builds [`CADDY_NEXT_IMAGE`] (after the workload images) once per process.
#[allow(dead_code)]
pub fn ensure_caddy_next() -> &'static str {
    ensure_images();
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        use std::io::Write;
        let mut build = std::process::Command::new("docker")
            .args(["build", "-q", "-t", CADDY_NEXT_IMAGE, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let dockerfile = format!("FROM {CADDY_IMAGE}\nLABEL io.harbormaster.test=next\n");
        build.stdin.take().ok_or("no stdin")?.write_all(dockerfile.as_bytes()).map_err(|e| e.to_string())?;
        match build.wait().map_err(|e| e.to_string())?.success() {
            true => Ok(()),
            false => Err("docker build failed".to_string()),
        }
    });
    if let Err(e) = r {
        panic!("cannot build {CADDY_NEXT_IMAGE}: {e}");
    }
    CADDY_NEXT_IMAGE
}
