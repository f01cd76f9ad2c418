//! The credentials a user already has for the Docker CLI: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`), read as the CLI reads it:
//! - `credHelpers` names a helper per registry, else `credsStore` one for all: the helper
//!   `docker-credential-<name>` is run with `get` and the server on its standard input;
//! - otherwise, or when the helper has nothing, `auths.<registry>` (`auth`: base64 of
//!   `user:password`, or `identitytoken`).
//!
//! Docker Hub is keyed `https://index.docker.io/v1/`; other registries by host (a URL form such
//! as `https://host:5000/v2/` is reduced to its host).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::{Found, RegistryAuth};
use crate::model::Secret;

/// Longest a credential helper may take.
const HELPER_DEADLINE: Duration = Duration::from_secs(15);

/// The key Docker Hub's credentials are stored under.
const HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// A registry as credentials are keyed: its host (and port); every Docker Hub alias is `docker.io`.
pub(crate) fn normalize(registry: &str) -> String {
    let host = registry.split("://").last().unwrap_or(registry);
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            super::reference::DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// Where the configuration is read from.
pub(crate) fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The credentials the Docker configuration holds for `registry` (normalized), if any.
/// `Err` says why they could not be read (an unreadable file, a failing helper).
pub(crate) async fn lookup(registry: &str) -> Result<Option<Found>, String> {
    let Some(path) = config_path() else { return Ok(None) };
    let text = match tokio::fs::read(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let config: ConfigFile =
        serde_json::from_slice(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let server = if registry == super::reference::DOCKER_HUB { HUB_KEY.to_string() } else { registry.to_string() };
    let helper = config
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize(k) == registry)
        .map(|(_, h)| h.clone())
        .or_else(|| config.creds_store.clone())
        .filter(|h| !h.is_empty());
    if let Some(helper) = helper {
        if let Some(auth) = from_helper(&helper, &server).await? {
            return Ok(Some(Found { auth, source: format!("docker-credential-{helper}") }));
        }
    }
    let entry = config.auths.iter().find(|(k, _)| normalize(k) == registry).map(|(_, e)| e);
    let Some(entry) = entry else { return Ok(None) };
    let source = path.display().to_string();
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Found { auth: RegistryAuth::identity_token(Secret::new(token)), source }));
    }
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("{source}: the `auth` of {registry} is not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| format!("{source}: the `auth` of {registry} is not text"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| format!("{source}: the `auth` of {registry} is not user:password"))?;
        return Ok(Some(Found { auth: RegistryAuth::basic(user, Secret::new(password)), source }));
    }
    match (entry.username.as_deref(), entry.password.as_deref()) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Found { auth: RegistryAuth::basic(u, Secret::new(p)), source })),
        _ => Ok(None),
    }
}

/// Asks `docker-credential-<helper>` for `server`'s credentials; `Ok(None)` when it has none.
async fn from_helper(helper: &str, server: &str) -> Result<Option<RegistryAuth>, String> {
    if !helper.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("credential helper name {helper:?} is not a plain name"));
    }
    let program = format!("docker-credential-{helper}");
    let run = async {
        let mut child = tokio::process::Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(server.as_bytes()).await.map_err(|e| format!("{program}: {e}"))?;
        }
        let mut out = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_end(&mut out).await.map_err(|e| format!("{program}: {e}"))?;
        }
        let status = child.wait().await.map_err(|e| format!("{program}: {e}"))?;
        Ok::<_, String>((status, out))
    };
    let (status, out) = tokio::time::timeout(HELPER_DEADLINE, run)
        .await
        .map_err(|_| format!("{program} gave no answer within {HELPER_DEADLINE:?}"))??;
    if !status.success() {
        // Helpers say "credentials not found in native keychain" for a server they do not know.
        let said = String::from_utf8_lossy(&out);
        if said.contains("not found") {
            return Ok(None);
        }
        return Err(format!("{program} failed ({status})"));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out).map_err(|_| format!("{program} answered something that is not its JSON"))?;
    // Remembered as a secret before anything else can see it.
    let secret = Secret::new(answer.secret);
    if answer.username == "<token>" {
        return Ok(Some(RegistryAuth::identity_token(secret)));
    }
    if answer.username.is_empty() {
        return Ok(None);
    }
    Ok(Some(RegistryAuth::basic(answer.username, secret)))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn keys_as_the_cli_does() {
        assert_eq!(normalize("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(normalize("Registry.Example.com:443"), "registry.example.com:443");
    }
}
