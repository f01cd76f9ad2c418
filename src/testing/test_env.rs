//! [`TestEnv`]: an environment brought up for one test under a name of its own, torn down when
//! the guard is dropped.

use std::sync::atomic::{AtomicU64, Ordering};

use super::harness::{harness, TEARDOWN_LIMIT};
use super::{owner, reuse};
use crate::backend::docker::{DockerBackend, DockerBackendBuilder};
use crate::backend::Backend;
use crate::engine::{Deployment, Down, DownReport, Endpoint};
use crate::error::{Error, Result};
use crate::model::Environment;

/// How many log lines per instance are printed when a test fails while its environment is up.
const FAILURE_LOG_LINES: usize = 30;

/// An environment deployed for a test, on the local Docker engine, under a unique name; torn down
/// (containers, network, volumes, records) when dropped, also when the test panics, and when the
/// process exits for one never dropped (held in a `static`). If the process is killed, the reaper
/// removes what it left ([`reap`](super::reap)).
///
/// ```no_run
/// use harbormaster::testing::TestEnv;
/// use harbormaster::{Environment, HealthCheck, Port, Service};
///
/// # async fn run() -> harbormaster::Result<()> {
/// let db = Service::builder("db")
///     .image("postgres:15")
///     .env("POSTGRES_PASSWORD", "test")
///     .port(Port::tcp(5432).publish_ephemeral())
///     .health(HealthCheck::tcp(5432))
///     .build()?;
/// let stack = TestEnv::up(Environment::builder("shop", "it").service(db).build()?).await?;
/// let url = stack.url("db", 5432, "postgres")?; // postgres://127.0.0.1:49170
/// # let _ = url;
/// # Ok(()) }
/// ```
///
/// When the test fails while the guard is held, the last lines of every instance's log are
/// printed (to the test's captured output) before the teardown.
#[must_use = "the environment is torn down when this guard is dropped"]
pub struct TestEnv {
    id: u64,
    env: Environment,
    docker: DockerBackend,
    deployment: Deployment,
    done: bool,
    teardown: Down,
    /// For a reusable environment: the users lock held while this guard lives (it is not torn
    /// down when dropped), and whether an existing environment was taken.
    reuse: Option<(std::fs::File, bool)>,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv").field("environment", &self.env.qualified_name()).finish_non_exhaustive()
    }
}

/// Options of a [`TestEnv`] ([`TestEnv::builder`]).
#[derive(Debug)]
#[must_use = "a builder does nothing until .up() is called"]
pub struct TestEnvBuilder {
    env: Environment,
    docker: DockerBackendBuilder,
    name: Option<String>,
    records: bool,
    expire_after: Option<std::time::Duration>,
    teardown: Down,
    reuse: Option<std::time::Duration>,
}

impl TestEnvBuilder {
    /// Leaves the environment running when the guard is dropped and the process ends, and takes
    /// it again next time instead of bringing it up anew: a second `cargo test` finds its
    /// database initialized and its services up. Active only when the developer also allows it
    /// for the run: the environment variable `HARBORMASTER_REUSE=1` ([`REUSE_VAR`](super::REUSE_VAR));
    /// without it (as on CI) this is a plain test environment, torn down as always.
    ///
    /// The environment is matched by a fingerprint of everything that defines it (each
    /// service's configuration, the image ID it runs, its secrets' digests): any change, an image
    /// moved behind the same tag included, brings up a fresh one. Parallel test processes bring
    /// it up once and share it (keep per-test data apart: [`TestEnv::postgres_database`]). One
    /// unused for [`DEFAULT_IDLE`](super::DEFAULT_IDLE) is removed by the next test process's
    /// sweep; [`reap_reusable`](super::reap_reusable) removes them now. See the module docs.
    pub fn reuse(mut self) -> Self {
        self.reuse = Some(super::DEFAULT_IDLE);
        self
    }

    /// With [`reuse`](Self::reuse): how long the environment may stay unused before a sweep
    /// removes it (default 30 minutes).
    pub fn reuse_idle_limit(mut self, idle: std::time::Duration) -> Self {
        self.reuse = Some(idle);
        self
    }

    /// The engine to use (default: [`DockerBackend::builder`], the local engine or `DOCKER_HOST`).
    pub fn docker(mut self, builder: DockerBackendBuilder) -> Self {
        self.docker = builder;
        self
    }

    /// The environment name's stem (default: the description's name); a unique suffix is added.
    pub fn name(mut self, stem: impl Into<String>) -> Self {
        self.name = Some(stem.into());
        self
    }

    /// Keeps the deploy lock and the records on the target (revisions, audit, kept images), as a
    /// production environment does: for tests of `history`, `rollback` or the lock itself.
    /// Default `false`: a test environment is [ephemeral](crate::EnvironmentBuilder::ephemeral),
    /// which brings it up faster.
    pub fn records(mut self, keep: bool) -> Self {
        self.records = keep;
        self
    }

    /// Lets any process's sweep remove the environment once `after` has passed since it was
    /// brought up, if its owner process cannot be checked from there. Without it, an environment
    /// whose owner runs in another container (a test runner with the host's Docker socket
    /// mounted) or on another machine is never reaped, since nothing can tell that its owner is
    /// gone. An owner that can be checked and is alive keeps its environment past the expiry.
    pub fn expire_after(mut self, after: std::time::Duration) -> Self {
        self.expire_after = Some(after);
        self
    }

    /// Gives its containers this long to exit on their stop signal at teardown (default: none,
    /// they are removed at once, as testcontainers does: a test's environment has nothing left
    /// to serve, and a server that ignores SIGTERM would hold every test up for its grace
    /// period). For a test of what a service does on shutdown.
    pub fn stop_grace_on_teardown(mut self, grace: std::time::Duration) -> Self {
        self.teardown = Down::default().with_volumes().stop_grace(grace);
        self
    }

    /// Deploys it: the engine is swept for orphans first (once per process), then the environment
    /// is applied under its unique name. A failed apply tears down what it made before the error
    /// (which names the service and carries its last log lines) is returned.
    pub async fn up(self) -> Result<TestEnv> {
        if let Some(idle) = self.reuse.filter(|_| super::reuse::allowed()) {
            return self.up_reused(idle).await;
        }
        let h = harness()?;
        let docker = h.engine(self.docker).await?;
        let mut env = self.env;
        let stem = self.name.unwrap_or_else(|| env.name.clone());
        env.name = unique_name(&stem);
        crate::model::name::check("environment", &env.name)?;
        env.labels.extend(owner::marks());
        if let Some((k, v)) = self.expire_after.and_then(|a| owner::expiry(std::time::SystemTime::now(), a)) {
            env.labels.insert(k, v);
        }
        env.ephemeral = !self.records;
        // One service and no ingress: nothing resolves another by name, so the engine's default
        // network serves, and no network of its own is created and joined (about 100 ms).
        env.default_network = env.services.len() == 1 && env.ingress.is_none();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // Tracked before anything exists, so an exit mid-apply still tears it down.
        h.track(id, env.clone(), docker.clone());
        let (e, d) = (env.clone(), docker.clone());
        let applied = h
            .run(async move {
                match e.apply(&d).await {
                    Ok(deployment) => Ok(deployment),
                    Err(err) => {
                        let _ = e.down(&d, Down::default().with_volumes().force()).await;
                        Err(err)
                    }
                }
            })
            .await;
        match applied {
            Ok(deployment) => {
                Ok(TestEnv { id, env, docker, deployment, done: false, teardown: self.teardown, reuse: None })
            }
            Err(e) => {
                h.untrack(id);
                Err(e)
            }
        }
    }
}

impl TestEnvBuilder {
    /// [`up`](Self::up) of a reusable environment: taken if it runs, whole, under its
    /// fingerprint's name; brought up (once, whatever the processes) otherwise.
    async fn up_reused(self, idle: std::time::Duration) -> Result<TestEnv> {
        let h = harness()?;
        let docker = h.engine(self.docker).await?;
        let mut env = self.env;
        let stem = self.name.unwrap_or_else(|| env.name.clone());
        env.ephemeral = !self.records;
        env.default_network = env.services.len() == 1 && env.ingress.is_none();
        let d = docker.clone();
        let (env, deployment, users, reused) = h
            .run(async move {
                let fingerprint = reuse::fingerprint(&env, &d).await?;
                env.name = reuse::name(&stem, &fingerprint);
                crate::model::name::check("environment", &env.name)?;
                env.labels.extend(reuse::marks(&fingerprint, idle));
                let locks = reuse::Locks::of(&d, &env.qualified_name())?;
                let bring_up = locks.bring_up().await?;
                let running = d.list_instances(&crate::engine::scope_of(&env)).await?;
                let (deployment, reused) = if !running.is_empty() && reuse::complete(&env, &running) {
                    let outcomes =
                        env.services.iter().map(|s| (s.name.clone(), crate::RolloutOutcome::Unchanged)).collect();
                    (Deployment::new(&env, d.published_host(), running, outcomes), true)
                } else {
                    // Nothing, or what is left of one that broke: a fresh one.
                    if !running.is_empty() {
                        env.down(&d, Down::default().with_volumes().force()).await?;
                    }
                    match env.apply(&d).await {
                        Ok(deployment) => (deployment, false),
                        Err(err) => {
                            let _ = env.down(&d, Down::default().with_volumes().force()).await;
                            return Err(err);
                        }
                    }
                };
                let users = locks.use_it().await?;
                drop(bring_up);
                Ok((env, deployment, users, reused))
            })
            .await?;
        static NEXT: AtomicU64 = AtomicU64::new(1 << 62);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(TestEnv { id, env, docker, deployment, done: false, teardown: self.teardown, reuse: Some((users, reused)) })
    }
}

/// `stem-xxxxxxxx`, the stem cut so the whole stays a valid name.
fn unique_name(stem: &str) -> String {
    format!("{}-{}{}", super::name::short_stem(stem), crate::process::nonce(), &crate::process::nonce()[..2])
}

impl TestEnv {
    /// Deploys `env` on the local Docker engine under a unique name. See [`TestEnvBuilder::up`].
    pub async fn up(env: Environment) -> Result<TestEnv> {
        TestEnv::builder(env).up().await
    }

    /// A test environment with options: the engine, the name.
    pub fn builder(env: Environment) -> TestEnvBuilder {
        TestEnvBuilder {
            env,
            docker: DockerBackend::builder(),
            name: None,
            records: false,
            expire_after: None,
            teardown: Down::default().with_volumes().force(),
            reuse: None,
        }
    }

    /// The environment as deployed: its unique name, and the owner labels the reaper reads.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// Whether an environment left by an earlier run was taken ([`TestEnvBuilder::reuse`]), not
    /// brought up by this call.
    pub fn reused(&self) -> bool {
        self.reuse.as_ref().is_some_and(|(_, reused)| *reused)
    }

    /// Its unique name (`project-name-xxxxxxxx` is the prefix of everything it owns).
    pub fn name(&self) -> &str {
        &self.env.name
    }

    /// What the apply returned: instances and endpoints.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The engine it runs on, to call the environment's other operations
    /// (`stack.environment().exec(stack.backend(), …)`).
    pub fn backend(&self) -> &DockerBackend {
        &self.docker
    }

    /// Where `service` publishes `container_port` on this machine.
    pub fn endpoint(&self, service: &str, container_port: u16) -> Result<Endpoint> {
        self.deployment.endpoint(service, container_port)
    }

    /// `scheme://host:port` of `service`'s published `container_port`:
    /// `url("db", 5432, "postgres")`, `url("api", 8080, "http")`.
    pub fn url(&self, service: &str, container_port: u16, scheme: &str) -> Result<String> {
        Ok(format!("{scheme}://{}", self.endpoint(service, container_port)?))
    }

    /// Runs a command in the first instance of `service` (from the harness's runtime, so from any
    /// test's).
    pub async fn exec<I, S>(&self, service: &str, command: I) -> Result<crate::backend::ExecOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let command: Vec<String> = command.into_iter().map(Into::into).collect();
        let (env, docker, service) = (self.env.clone(), self.docker.clone(), service.to_string());
        harness()?.run(async move { env.exec(&docker, &service, command).await }).await
    }

    /// A database of its own in the PostgreSQL of `service`, for one test's isolation in a shared
    /// environment: created as `user` (through `psql` in the container), returned by name.
    pub async fn postgres_database(&self, service: &str, user: &str) -> Result<String> {
        let name = format!("t_{}{}", crate::process::nonce(), crate::process::nonce());
        let sql = format!("CREATE DATABASE \"{name}\"");
        let out =
            self.exec(service, ["psql", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", "postgres", "-c", &sql]).await?;
        if out.exit_code != 0 {
            return Err(Error::backend(
                "create a test database",
                format!("{}/{service}", self.env.qualified_name()),
                format!("psql exited with {}: {}", out.exit_code, out.stderr.trim()),
            ));
        }
        Ok(name)
    }

    /// Tears it down now and says what was removed (dropping the guard does the same, without
    /// the report).
    pub async fn down(mut self) -> Result<DownReport> {
        self.done = true;
        let h = harness()?;
        let (env, docker, teardown) = (self.env.clone(), self.docker.clone(), self.teardown.clone());
        let report = h.run(async move { env.down(&docker, teardown).await }).await;
        h.untrack(self.id);
        report
    }

    /// The last log lines of every instance, for a failed test's output.
    async fn last_logs(env: &Environment, docker: &DockerBackend, lines: usize) -> String {
        let scope = crate::engine::scope_of(env);
        let Ok(instances) = docker.list_instances(&scope).await else { return String::new() };
        let mut out = String::new();
        for i in instances {
            let tail = docker.logs_tail(&i.id, lines).await.unwrap_or_default();
            out.push_str(&format!("--- {} ({}, {}), last {} log line(s):\n", i.name, i.service, i.state, tail.len()));
            for l in tail {
                out.push_str("  ");
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.reuse.is_some() {
            // Left running for the next run; the users lock goes with the guard.
            if std::thread::panicking() {
                eprintln!(
                    "harbormaster: the test failed with the reusable environment {} up; it is left running",
                    self.env.qualified_name()
                );
            }
            return;
        }
        let Ok(h) = harness() else { return };
        let panicking = std::thread::panicking();
        let (env, docker, teardown) = (self.env.clone(), self.docker.clone(), self.teardown.clone());
        let logs = h.block(TEARDOWN_LIMIT, async move {
            let logs = if panicking { Some(TestEnv::last_logs(&env, &docker, FAILURE_LOG_LINES).await) } else { None };
            let down = env.down(&docker, teardown).await;
            (logs, down.err())
        });
        h.untrack(self.id);
        match logs {
            Some((logs, err)) => {
                if let Some(logs) = logs {
                    eprintln!("harbormaster: the test failed with {} up:\n{logs}", self.env.qualified_name());
                }
                if let Some(e) = err {
                    eprintln!("harbormaster: tearing down {} failed: {e}", self.env.qualified_name());
                }
            }
            None => eprintln!(
                "harbormaster: tearing down {} took longer than {:?}; the reaper removes what is left",
                self.env.qualified_name(),
                TEARDOWN_LIMIT
            ),
        }
    }
}
