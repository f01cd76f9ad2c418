//! A build context for a Caddy image made from the host's own `caddy` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::model::Build;

/// Writes a build context into `dir` holding `caddy` (found at `caddy_path`, such as Debian's
/// `/usr/bin/caddy`) and the shared libraries it links, `FROM scratch`; returns the [`Build`] to give to
/// [`IngressBuilder::build_from`](crate::IngressBuilder::build_from). For machines that cannot pull
/// the official `caddy:2` image.
///
/// ```no_run
/// let build = harbormaster::ingress::caddy_build_context("/usr/bin/caddy", "/tmp/caddy-image")?;
/// let ingress = harbormaster::Ingress::builder().build_from(build).build()?;
/// # let _ = ingress;
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub fn caddy_build_context(caddy_path: impl AsRef<Path>, dir: impl AsRef<Path>) -> Result<Build> {
    let caddy = caddy_path.as_ref();
    let dir = dir.as_ref();
    let fail = |m: String| Error::ImageBuild { tag: "caddy".into(), message: m, log: Vec::new() };
    if !caddy.is_file() {
        return Err(fail(format!("{} not found; install Caddy (Debian: apt-get install caddy)", caddy.display())));
    }
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("usr/bin")).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    for d in ["data", "config", "etc/harbormaster", "tmp"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| fail(format!("creating {d}: {e}")))?;
    }
    copy(caddy, &root.join("usr/bin/caddy")).map_err(fail)?;
    for lib in shared_libraries(caddy).map_err(fail)? {
        let target = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("creating {}: {e}", parent.display())))?;
        }
        copy(&lib, &target).map_err(fail)?;
    }
    let dockerfile = "FROM scratch\nCOPY root/ /\nENV PATH=/usr/bin XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config\n\
                      ENTRYPOINT []\nCMD [\"/usr/bin/caddy\", \"run\"]\n";
    std::fs::write(dir.join("Dockerfile"), dockerfile).map_err(|e| fail(format!("writing Dockerfile: {e}")))?;
    Ok(Build::context(dir))
}

fn copy(from: &Path, to: &Path) -> std::result::Result<(), String> {
    // Follow symlinks: the image needs the file itself.
    let real = std::fs::canonicalize(from).map_err(|e| format!("{}: {e}", from.display()))?;
    std::fs::copy(&real, to).map(|_| ()).map_err(|e| format!("copying {} to {}: {e}", real.display(), to.display()))
}

/// The absolute paths `ldd` lists for a binary (none for a static one).
fn shared_libraries(binary: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd").arg(binary).output().map_err(|e| format!("running ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect())
}
