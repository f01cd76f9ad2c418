//! Host checks made before anything changes: the connection is alive, the engine answers with a
//! recent enough API, and the disk under the engine's data has room.

use super::SshHost;
use crate::error::{Error, Result};

/// The oldest engine API the Docker backend works with (Docker 20.10).
const MIN_API: (u32, u32) = (1, 41);

/// What the checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostReport {
    /// The engine's version (`20.10.24`).
    pub docker_version: String,
    /// The engine's API version (`1.41`).
    pub api_version: String,
    /// Where the engine keeps its data.
    pub docker_root: String,
    /// Free space there, in bytes.
    pub free_bytes: u64,
}

fn parse_api(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Runs every check; the first that fails is the error, naming the host.
pub(super) async fn run(host: &SshHost) -> Result<HostReport> {
    let fail =
        |check: &'static str, message: String| Error::HostCheck { host: host.name().to_string(), check, message };
    host.alive().await?;
    let docker = host.backend.client();
    let version = host
        .backend
        .call("docker version", host.name(), docker.version())
        .await
        .map_err(|e| fail("docker", format!("the engine does not answer through the SSH connection: {e}")))?;
    let api_version = version.api_version.unwrap_or_default();
    if parse_api(&api_version).is_none_or(|v| v < MIN_API) {
        return Err(fail(
            "docker version",
            format!("its engine speaks API {api_version:?}; Docker 20.10 (API 1.41) or newer is needed"),
        ));
    }
    let info = host
        .backend
        .call("docker info", host.name(), docker.info())
        .await
        .map_err(|e| fail("docker", e.to_string()))?;
    let docker_root = info.docker_root_dir.unwrap_or_else(|| "/var/lib/docker".into());
    let df = host.run(&["df", "-Pk", &docker_root]).await.map_err(|e| fail("disk space", e))?;
    // `df -P`: a header, then `fs 1024-blocks used available capacity mount`.
    let free_kib: u64 = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| fail("disk space", format!("unreadable `df` output: {df:?}")))?;
    let free_bytes = free_kib.saturating_mul(1024);
    if free_bytes < host.link.min_free_disk {
        return Err(fail(
            "disk space",
            format!(
                "{} MiB free under {docker_root}, less than the {} MiB asked for (SshHostBuilder::min_free_disk); free some space, e.g. `docker image prune`",
                free_bytes >> 20,
                host.link.min_free_disk >> 20
            ),
        ));
    }
    Ok(HostReport { docker_version: version.version.unwrap_or_default(), api_version, docker_root, free_bytes })
}

#[cfg(test)]
mod tests {
    use super::parse_api;

    #[test]
    fn api_versions_compare_numerically() {
        assert!(parse_api("1.41").is_some_and(|v| v >= (1, 41)));
        assert!(parse_api("1.9").is_some_and(|v| v < (1, 41)));
        assert!(parse_api("1.100").is_some_and(|v| v > (1, 41)));
        assert_eq!(parse_api("x"), None);
    }
}
