//! Reusable test environments ([`TestEnvBuilder::reuse`](super::TestEnvBuilder::reuse)): an
//! environment left running when its test process ends, taken again by the next run of the same
//! tests instead of being brought up anew (no second `initdb`).
//!
//! - **Opt-in twice.** The test asks for it in code, and the developer allows it for the run
//!   ([`REUSE_VAR`]`=1`): CI, which does not set it, never reuses by accident.
//! - **Matched by a fingerprint, never stale.** The environment's name carries a fingerprint of
//!   everything that defines it: every service's configuration hash (image reference, command,
//!   env, ports, volumes, health check, resources, files, …), the image ID each runs (so a tag
//!   that moved is a change), and digests of its secret values. Any change is another name, so a
//!   fresh environment; the one left behind goes with the idle sweep. An environment found with an
//!   instance that is not running, or with fewer than its replicas, is taken down and brought up
//!   again.
//! - **Parallel processes.** Two locks per environment, files under the temporary directory: a
//!   bring-up lock (one process brings it up, the others wait for it, then share it) and a users
//!   lock every process using it holds shared until its guard is dropped or it exits (the kernel
//!   releases a killed process's locks). The sweep removes an environment only when it takes both
//!   exclusively: never one a process is bringing up or using.
//! - **Idle expiry.** Every use touches the users file; the sweep of any later test process (and
//!   [`reap`](super::reap)) removes a reusable environment idle longer than its limit (default
//!   [`DEFAULT_IDLE`]). Where no users file exists (an environment made from another machine on a
//!   shared engine) idleness counts from its bring-up. [`reap_reusable`] removes them all on demand.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::backend::docker::DockerBackend;
use crate::backend::{Backend, Instance};
use crate::engine::{Down, FoundEnvironment};
use crate::error::{Error, Result};
use crate::model::Environment;

/// The environment variable that allows reuse for a run: `1`, `true` or `yes`.
pub const REUSE_VAR: &str = "HARBORMASTER_REUSE";

/// How long a reusable environment may stay unused before a sweep removes it: 30 minutes.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);

/// On a reusable environment: its fingerprint.
pub(crate) const REUSE_MARK: &str = "io.harbormaster.test-reuse";
/// On a reusable environment: its idle limit, in seconds.
pub(crate) const IDLE_MARK: &str = "io.harbormaster.test-reuse-idle";
/// On a reusable environment: when it was brought up, in Unix seconds.
pub(crate) const SINCE_MARK: &str = "io.harbormaster.test-reuse-since";

/// Whether the developer allows reuse for this run ([`REUSE_VAR`]).
pub(crate) fn allowed() -> bool {
    std::env::var(REUSE_VAR).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The fingerprint of `env` as it would run on `docker`: images resolved (pulled or built where
/// missing, as an apply would), hashed with every service's configuration and secret digests.
pub(crate) async fn fingerprint(env: &Environment, docker: &DockerBackend) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("{}\n{}\n{}\n", env.project, env.default_network, env.ephemeral));
    for (service, spec_hash, image_id) in crate::engine::resolved(env, docker).await? {
        h.update(format!("{service} {spec_hash} {image_id}\n"));
    }
    for svc in &env.services {
        for (key, secret) in &svc.secrets {
            h.update(format!("secret {} {key} {}\n", svc.name, crate::model::secret_digest(&svc.name, key, secret)));
        }
        for f in &svc.files {
            if let Some(secret) = f.secret_contents() {
                let digest = crate::model::secret_digest(&svc.name, &f.target, secret);
                h.update(format!("file {} {} {digest}\n", svc.name, f.target));
            }
        }
    }
    Ok(crate::model::hex(&h.finalize()))
}

/// `stem-r` and ten digits of the fingerprint: one name per description, the stem cut so the
/// whole stays a valid name.
pub(crate) fn name(stem: &str, fingerprint: &str) -> String {
    format!("{}-r{}", super::name::short_stem(stem), &fingerprint[..10.min(fingerprint.len())])
}

/// The marks of a reusable environment brought up now.
pub(crate) fn marks(fingerprint: &str, idle: Duration) -> Vec<(String, String)> {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    vec![
        (super::owner::TEST_MARK.to_string(), "true".to_string()),
        (REUSE_MARK.to_string(), fingerprint[..16.min(fingerprint.len())].to_string()),
        (IDLE_MARK.to_string(), idle.as_secs().to_string()),
        (SINCE_MARK.to_string(), now.to_string()),
    ]
}

/// Whether what runs is `env`, whole: every service has its replicas running (a job: its run
/// completed with exit code 0, or it is still running).
pub(crate) fn complete(env: &Environment, running: &[Instance]) -> bool {
    env.services.iter().all(|svc| {
        let mine: Vec<&Instance> = running.iter().filter(|i| i.service == svc.name).collect();
        match svc.kind {
            crate::model::ServiceKind::Job => {
                !mine.is_empty() && mine.iter().all(|i| i.is_running() || i.exit_code == Some(0))
            }
            crate::model::ServiceKind::Service => {
                mine.iter().filter(|i| i.is_running()).count() >= svc.replicas as usize
            }
        }
    })
}

/// The two lock files of a reusable environment on an engine.
pub(crate) struct Locks {
    bring_up: PathBuf,
    users: PathBuf,
}

impl Locks {
    /// Those of `qualified` (`project-name`) on the engine `docker` describes.
    pub(crate) fn of<B: Backend + ?Sized>(engine: &B, qualified: &str) -> Result<Locks> {
        let engine = crate::model::hex(&Sha256::digest(engine.describe().as_bytes())[..6]);
        let dir = std::env::temp_dir().join("harbormaster-reuse");
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create the reuse lock directory", &dir, e))?;
        let stem = format!("{engine}-{qualified}");
        Ok(Locks { bring_up: dir.join(format!("{stem}.lock")), users: dir.join(format!("{stem}.users")) })
    }

    fn open(path: &PathBuf) -> Result<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_error("open a reuse lock", path, e))
    }

    /// Waits for the bring-up lock (another process may be bringing the environment up).
    pub(crate) async fn bring_up(&self) -> Result<File> {
        let path = self.bring_up.clone();
        blocking(move || {
            let f = Locks::open(&path)?;
            f.lock().map_err(|e| io_error("take the reuse bring-up lock", &path, e))?;
            Ok(f)
        })
        .await
    }

    /// Takes the users lock shared (held while the environment is used) and marks the use.
    pub(crate) async fn use_it(&self) -> Result<File> {
        let path = self.users.clone();
        blocking(move || {
            let f = Locks::open(&path)?;
            f.lock_shared().map_err(|e| io_error("take the reuse users lock", &path, e))?;
            f.set_modified(SystemTime::now()).map_err(|e| io_error("mark the reuse", &path, e))?;
            Ok(f)
        })
        .await
    }

    /// Both locks exclusively, if no process holds either: for a removal.
    fn try_exclusive(&self) -> Option<(File, File)> {
        let a = Locks::open(&self.bring_up).ok()?;
        a.try_lock().ok()?;
        let b = Locks::open(&self.users).ok()?;
        b.try_lock().ok()?;
        Some((a, b))
    }

    /// When the environment was last used from this machine, if it was.
    fn last_used(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.users).and_then(|m| m.modified()).ok()
    }

    /// Removes the files (after a removal of the environment, under both locks).
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.users);
        let _ = std::fs::remove_file(&self.bring_up);
    }
}

fn io_error(what: &'static str, path: &std::path::Path, e: std::io::Error) -> Error {
    Error::backend(what, path.display().to_string(), e)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::backend("wait for a reuse lock", "this process", e))?
}

/// Whether `env` is a reusable test environment idle past its limit at `now`, judged from
/// `last_used` (this machine's users file) or, without one, from its bring-up.
fn idle(env: &FoundEnvironment, last_used: Option<SystemTime>, now: SystemTime) -> bool {
    let limit = env.labels.get(IDLE_MARK).and_then(|v| v.parse::<u64>().ok()).map_or(DEFAULT_IDLE, Duration::from_secs);
    let since = last_used.or_else(|| {
        let secs = env.labels.get(SINCE_MARK)?.parse::<u64>().ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    });
    // Without either, it cannot be judged: left.
    since.is_some_and(|s| now.duration_since(s).is_ok_and(|d| d >= limit))
}

/// Removes the reusable environments among `found` (what `backend` holds) that no process uses,
/// those idle past their limit only unless `all`; returns the names removed.
pub(crate) async fn sweep<B: Backend>(backend: &B, found: &[FoundEnvironment], all: bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for env in found {
        if !env.labels.contains_key(REUSE_MARK) {
            continue;
        }
        let locks = Locks::of(backend, &env.qualified_name())?;
        if !all && !idle(env, locks.last_used(), SystemTime::now()) {
            continue;
        }
        let Some(_held) = locks.try_exclusive() else { continue };
        tracing::info!(environment = %env.qualified_name(), "removing a reusable test environment");
        match env.down(backend, Down::default().with_volumes().force()).await {
            Ok(_) => {
                locks.remove();
                removed.push(env.qualified_name());
            }
            Err(Error::Locked { .. }) => {} // another sweep is removing it
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn found(labels: &[(&str, &str)]) -> FoundEnvironment {
        FoundEnvironment {
            project: "p".into(),
            name: "e".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn idleness_counts_from_the_last_use_else_from_the_bring_up() {
        let now = SystemTime::now();
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs().to_string();
        let long_ago = now - Duration::from_secs(3600);
        let env = found(&[(IDLE_MARK, "1800"), (SINCE_MARK, &secs(long_ago))]);
        assert!(idle(&env, None, now), "up an hour, never used here: idle");
        assert!(!idle(&env, Some(now - Duration::from_secs(60)), now), "used a minute ago: not idle");
        assert!(idle(&env, Some(now - Duration::from_secs(1801)), now));
        let short = found(&[(IDLE_MARK, "10"), (SINCE_MARK, &secs(now))]);
        assert!(!idle(&short, None, now));
        assert!(idle(&short, None, now + Duration::from_secs(11)));
        // Nothing to judge by: left.
        assert!(!idle(&found(&[]), None, now));
    }

    #[test]
    fn the_name_carries_the_fingerprint_and_stays_valid() {
        let fp = "0123456789abcdef0123";
        assert_eq!(name("shop", fp), "shop-r0123456789");
        let long = name(&"x".repeat(80), fp);
        assert!(crate::model::name::check("environment", &long).is_ok(), "{long}");
        assert_ne!(name("shop", fp), name("shop", "fedcba9876543210"));
    }
}
