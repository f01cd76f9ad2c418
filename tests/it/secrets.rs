//! The secret leak suite (reliability): secrets given inline, from the environment, from a file,
//! rotated, in a job, and in services that fail (and, carelessly, print their own secrets), then a
//! search for every value in everything the library shows or stores: `tracing` at TRACE, a plain
//! `log` logger at TRACE (dependencies log through it), errors, events, plans, status, logs, exec
//! output, history, the audit trail, the state store, and `docker inspect` of every container,
//! volume and network it created. The one place a value may be is a service container's own
//! environment. Expected: 0 occurrences.

use crate::support;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use harbormaster::backend::Scope;
use harbormaster::{Condition, Environment, HealthCheck, LogOptions, Port, RecordStore, Rollout, Secret, Service};
use support::{apply_collect, get, Harness, PROJECT};

/// How many tests of this suite are capturing. The logger and the subscriber are the whole test
/// binary's (every suite's): they keep what is logged while a test of this suite runs, and drop the
/// rest, so the other suites neither fill the capture nor pay for it.
static CAPTURING: AtomicUsize = AtomicUsize::new(0);

/// A test of this suite capturing, until dropped.
struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURING.fetch_sub(1, Ordering::SeqCst);
    }
}

fn capturing() -> bool {
    CAPTURING.load(Ordering::SeqCst) > 0
}

/// Everything logged through the `log` facade, from any crate.
struct LogCapture(Mutex<Vec<String>>);

impl log::Log for LogCapture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        capturing()
    }
    fn log(&self, record: &log::Record) {
        if !capturing() {
            return;
        }
        if let Ok(mut v) = self.0.lock() {
            v.push(format!("{} {} {}", record.level(), record.target(), record.args()));
        }
    }
    fn flush(&self) {}
}

/// Everything `tracing` printed at TRACE.
#[derive(Clone, Default)]
struct TraceCapture(Arc<Mutex<Vec<u8>>>);

impl Write for TraceCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !capturing() {
            return Ok(buf.len());
        }
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captures, kept from now until the returned `Capturing` is dropped.
fn captures() -> (Capturing, &'static LogCapture, TraceCapture) {
    CAPTURING.fetch_add(1, Ordering::SeqCst);
    static LOGS: OnceLock<&'static LogCapture> = OnceLock::new();
    static TRACES: OnceLock<TraceCapture> = OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let logger: &'static LogCapture = Box::leak(Box::new(LogCapture(Mutex::new(Vec::new()))));
        log::set_logger(logger).expect("the test binary's only logger");
        log::set_max_level(log::LevelFilter::Trace);
        logger
    });
    let traces = TRACES
        .get_or_init(|| {
            let capture = TraceCapture::default();
            let writer = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("the test binary's only subscriber");
            capture
        })
        .clone();
    (Capturing, logs, traces)
}

fn unique(what: &str) -> String {
    format!("hm-{what}-{}", support::unique("s"))
}

/// Where each secret value was found in `text` (`where` names the text).
fn occurrences(secrets: &[String], text: &str, place: &str, found: &mut Vec<String>) {
    for s in secrets {
        let n = text.matches(s.as_str()).count();
        if n > 0 {
            found.push(format!("{s} x{n} in {place}"));
        }
    }
}

#[tokio::test]
async fn no_secret_value_appears_anywhere_but_in_the_containers_environment() {
    let (_capturing, logs, traces) = captures();
    let h = Harness::new("leak").await;
    let inline = unique("inline");
    let from_env = unique("env");
    let rotated = unique("rotated");
    let from_file = unique("file");
    let job_secret = unique("job");
    let failing = unique("failing");
    let in_file = unique("in-file");
    let secrets = vec![
        inline.clone(),
        from_env.clone(),
        rotated.clone(),
        from_file.clone(),
        job_secret.clone(),
        failing.clone(),
        in_file.clone(),
    ];
    let var = format!("HM_LEAK_{}", std::process::id());
    std::env::set_var(&var, &from_env);
    let file = std::env::temp_dir().join(format!("hm-leak-{}", h.name));
    std::fs::write(&file, format!("{from_file}\n")).unwrap();

    let check = || HealthCheck::http(8080, "/health").interval(Duration::from_millis(100)).retries(10);
    let db = |healthy: bool| {
        let b = h
            .svc("db")
            .secret("DB_PASSWORD", Secret::from_env(&var).unwrap())
            .secret("ROOT_KEY", Secret::from_file(&file).unwrap())
            .secret("API_TOKEN", Secret::new(inline.clone()))
            // Written into the container, and read back by every plan.
            .file(harbormaster::ContainerFile::secret("/run/secrets/file_token", Secret::new(in_file.clone())))
            // A careless service: it prints its secrets when it starts.
            .env("LOG_ENV", "DB_PASSWORD,ROOT_KEY,API_TOKEN")
            .port(Port::tcp(8080).publish_ephemeral())
            .health(check())
            .rollout(Rollout::start_first());
        if healthy { b } else { b.env("HEALTH_STATUS", "500") }.build().unwrap()
    };
    let job = |code: i32| {
        h.job("migrate", code)
            .secret("JOB_TOKEN", Secret::new(job_secret.clone()))
            .env("LOG_ENV", "JOB_TOKEN")
            .depends_on("db", Condition::Healthy)
            .build()
            .unwrap()
    };
    let env_of = |services: Vec<Service>| h.env().services(services).build().unwrap();
    let mut seen = String::new();
    let mut found = Vec::new();

    // 1. A deploy that works: secrets inline, from the environment, from a file, in a job.
    let env = env_of(vec![db(true), job(0)]);
    seen += &format!("{env:?}{:?}", env.services());
    seen += &format!("{}", env.plan(&h.docker).await.unwrap());
    let (result, events) = apply_collect(&env, &h.docker).await;
    let deployed = result.unwrap();
    seen += &format!("{events:?}{deployed:?}");
    let url = deployed.endpoint("db", 8080).unwrap().http_url();
    assert_eq!(get(&format!("{url}/env/DB_PASSWORD")).await.1, from_env, "the container does get the value");
    assert_eq!(get(&format!("{url}/env/ROOT_KEY")).await.1, from_file);
    assert_eq!(get(&format!("{url}/env/API_TOKEN")).await.1, inline);

    // 2. Rotation to a value the new version prints, and fails with: rolled back, with its logs.
    std::env::set_var(&var, &rotated);
    let env = env_of(vec![db(false), job(0)]);
    seen += &format!("{}", env.plan(&h.docker).await.unwrap());
    let (result, events) = apply_collect(&env, &h.docker).await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("[redacted]"), "the failing instance's printed secrets show redacted: {err}");
    seen += &format!("{err}{err:?}{events:?}");

    // 3. A job that prints its secret and fails.
    std::env::set_var(&var, &from_env);
    let env = env_of(vec![db(true), job(3)]);
    let err = env.apply(&h.docker).await.unwrap_err();
    seen += &format!("{err}{err:?}");

    // 4. A service that never becomes healthy, with a secret of its own.
    let broken = h
        .svc("broken")
        .secret("S", Secret::new(failing.clone()))
        .env("LOG_ENV", "S")
        .env("HEALTH_STATUS", "503")
        .port(Port::tcp(8080))
        .health(check())
        .build()
        .unwrap();
    let env = env_of(vec![db(true), job(0), broken]);
    let (result, events) = apply_collect(&env, &h.docker).await;
    let err = result.unwrap_err();
    seen += &format!("{err}{err:?}{events:?}");

    // Everything one can read back.
    let env = env_of(vec![db(true), job(0)]);
    env.apply(&h.docker).await.unwrap();
    seen += &format!("{:?}", env.status(&h.docker).await.unwrap());
    seen += &format!("{:?}", env.history(&h.docker, "db").await.unwrap());
    seen += &format!("{:?}", env.audit_log(&h.docker).await.unwrap());
    let mut lines = env.logs(&h.docker, "db", LogOptions::default()).await.unwrap();
    let mut log_text = String::new();
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(5), lines.next()).await {
        log_text += &format!("{:?}\n", l.unwrap());
    }
    assert!(log_text.contains("DB_PASSWORD=[redacted]"), "the service's own log lines are scrubbed: {log_text}");
    seen += &log_text;
    let out = env.exec(&h.docker, "db", ["/workload", "cat", "/proc/1/environ"]).await.unwrap();
    seen += &format!("{out:?}");
    let scope = Scope::new(PROJECT, &h.name);
    for f in h.docker.read_state(&scope).await.unwrap().expect("a state store") {
        seen += &String::from_utf8_lossy(&f.contents);
    }
    h.docker.release_state(&scope).await;
    occurrences(&secrets, &seen, "errors, events, plans, status, logs, exec, history, audit, state", &mut found);

    // `docker inspect` of everything the library created; a service container's environment aside.
    let label = format!("label=io.harbormaster.environment={}", h.name);
    for (kind, list) in [
        ("container", vec!["ps", "-aq"]),
        ("volume", vec!["volume", "ls", "-q"]),
        ("network", vec!["network", "ls", "-q"]),
    ] {
        let ids = std::process::Command::new("docker").args(&list).args(["--filter", &label]).output().unwrap();
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let out = std::process::Command::new("docker").args(["inspect", id]).output().unwrap();
            let mut json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if kind == "container" {
                // The one place a secret belongs.
                json[0]["Config"]["Env"] = serde_json::Value::Null;
            }
            occurrences(&secrets, &json.to_string(), &format!("docker inspect of {kind} {id}"), &mut found);
        }
    }

    let log_lines = logs.0.lock().unwrap().join("\n");
    assert!(log_lines.contains("bollard"), "the log capture works: the Docker client logs through it");
    occurrences(&secrets, &log_lines, "the log facade (TRACE)", &mut found);
    let trace_text = String::from_utf8_lossy(&traces.0.lock().unwrap()).to_string();
    assert!(trace_text.contains("harbormaster"), "the tracing capture works");
    occurrences(&secrets, &trace_text, "tracing (TRACE)", &mut found);
    std::fs::remove_file(&file).ok();
    println!(
        "leak probes: {} secrets searched in {} bytes of library output, {} log records, {} bytes of traces",
        secrets.len(),
        seen.len(),
        log_lines.lines().count(),
        trace_text.len()
    );
    assert!(found.is_empty(), "secret values leaked:\n{}", found.join("\n"));
}

/// `Secret::from_env` with a value that is not UTF-8 never puts it into its error.
#[test]
fn an_unreadable_secret_is_never_in_its_error() {
    use std::os::unix::ffi::OsStrExt;
    let var = format!("HM_LEAK_BYTES_{}", std::process::id());
    std::env::set_var(&var, std::ffi::OsStr::from_bytes(b"hm-leak-\xff-bytes-value"));
    let err = Secret::from_env(&var).unwrap_err();
    std::env::remove_var(&var);
    let text = format!("{err} {err:?}");
    assert!(!text.contains("bytes-value"), "{text}");
}

/// Building with a secret holding NUL fails without showing the value.
#[test]
fn a_secret_with_nul_is_refused_without_its_value() {
    let err = Service::builder("a").image("x").secret("K", Secret::new("hm-nul\0-secret")).build().unwrap_err();
    assert!(!format!("{err}{err:?}").contains("hm-nul"), "{err}");
    let _ = Environment::builder("p", "e");
}

#[tokio::test]
async fn registry_credentials_never_appear() {
    use base64::Engine as _;
    let (_capturing, logs, traces) = captures();
    let docker = support::registry::docker().await;
    let repo = support::unique("secretpull");
    // Push (credentials sent), pull (sent again), and a refused pull with another password.
    support::registry::push_variant(&docker, &repo, "1", "secret-pull").await;
    let reference = format!("{}/{repo}:1", support::registry::ADDR);
    docker.pull(&reference).await.unwrap();
    let wrong_password = unique("wrong-registry-pass");
    let wrong = harbormaster::DockerBackend::builder()
        .registry_auth(
            support::registry::ADDR,
            harbormaster::RegistryAuth::basic(support::registry::USER, Secret::new(&wrong_password)),
        )
        .docker_config_credentials(false)
        .connect()
        .await
        .unwrap();
    let err = wrong.pull(&reference).await.unwrap_err();
    support::registry::remove_local(&docker, &reference).await;
    let auth = harbormaster::RegistryAuth::basic("someone", Secret::new(&wrong_password));
    let mut texts = vec![
        ("error", format!("{err} {err:?}")),
        ("auth debug", format!("{auth:?} {docker:?}")),
        ("log facade", logs.0.lock().unwrap().join("\n")),
        ("tracing", String::from_utf8_lossy(&traces.0.lock().unwrap()).into_owned()),
    ];
    texts.push(("error credentials", err.to_string()));
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for value in [
        support::registry::PASSWORD.to_string(),
        wrong_password.clone(),
        b64(&format!("{}:{}", support::registry::USER, support::registry::PASSWORD)),
        b64(&format!("{}:{wrong_password}", support::registry::USER)),
    ] {
        for (name, text) in &texts {
            assert!(!text.contains(&value), "a registry credential appears in {name}");
        }
    }
    assert!(err.to_string().contains(support::registry::USER), "the error names the user: {err}");
}

/// The same search on the Fly backend: the API token and a service's secret, through an apply
/// (with a retried 503), a failing service that prints its secret, status, logs, exec, history,
/// events, errors, `Debug`, `tracing`, the `log` facade and what the library stored in the API.
/// The one place the secret may be is its machine's environment.
#[tokio::test]
async fn on_fly_neither_the_token_nor_a_secret_appears_anywhere_but_the_machines_environment() {
    let (_capturing, logs, traces) = captures();
    let app = support::unique("leak");
    let fake = support::fly::fake(&app).await;
    let image = support::fly::image("leak").await;
    let token = fake.token();
    let secret = unique("fly");
    let secrets = vec![token.clone(), secret.clone()];
    let fly = support::fly::backend(&fake, &app).await;
    let name = support::unique("fly-leak");
    let check = || HealthCheck::http(8080, "/health").interval(Duration::from_millis(200)).retries(20);
    let api = |fail: bool| {
        let b = Service::builder("api")
            .image(&image)
            .secret("API_KEY", Secret::new(secret.clone()))
            .env("LOG_ENV", "API_KEY")
            .port(Port::tcp(8080).publish_ephemeral())
            .health(check());
        let b = if fail { b.env("HEALTH_STATUS", "500").health(check().retries(5)) } else { b };
        b.build().unwrap()
    };
    let env = |fail: bool| Environment::builder(PROJECT, &name).service(api(fail)).build().unwrap();
    let mut found = Vec::new();
    fake.inject(&[503]);
    let (ok, events) = apply_collect(&env(false), &fly).await;
    ok.unwrap();
    occurrences(&secrets, &format!("{events:?}"), "events", &mut found);
    let (failed, events) = apply_collect(&env(true), &fly).await;
    let err = failed.expect_err("the failing version is rolled back");
    occurrences(&secrets, &format!("{err} {err:?}"), "the error", &mut found);
    occurrences(&secrets, &format!("{events:?}"), "events of the failed apply", &mut found);
    occurrences(&secrets, &format!("{fly:?}"), "Debug of the backend", &mut found);
    let status = env(false).status(&fly).await.unwrap();
    occurrences(&secrets, &format!("{status:?}"), "status", &mut found);
    let lines: Vec<String> = env(false)
        .logs(&fly, "api", LogOptions::default())
        .await
        .unwrap()
        .filter_map(|l| async move { l.ok().map(|l| l.text) })
        .collect()
        .await;
    assert!(lines.iter().any(|l| l.starts_with("API_KEY=")), "the service printed its secret: {lines:?}");
    occurrences(&secrets, &lines.join("\n"), "logs", &mut found);
    let out = env(false).exec(&fly, "api", ["/workload", "cat", "/proc/self/environ"]).await.unwrap();
    occurrences(&secrets, &format!("{out:?}"), "exec output", &mut found);
    let history = env(false).history(&fly, "api").await.unwrap();
    occurrences(&secrets, &format!("{history:?}"), "history", &mut found);
    for (id, machine_name, _) in fake.machines(&app) {
        let (metadata, environment) = fake.stored(&app, &id);
        occurrences(&secrets, &format!("{metadata:?}"), &format!("metadata of {machine_name}"), &mut found);
        if machine_name.ends_with("-hm-records") {
            occurrences(&secrets, &format!("{environment:?}"), "the record keeper's environment", &mut found);
        }
    }
    env(false).down(&fly, harbormaster::Down::default()).await.unwrap();
    fake.shutdown().await;
    // The test server stands in for Fly, which holds the machine's environment: it runs machines
    // through its own Docker client, whose `bollard` lines log their create bodies. The library's
    // Fly backend uses no Docker client here (it speaks HTTP to the API), so those lines are the
    // platform's, not the library's.
    let logged: String = logs
        .0
        .lock()
        .map(|v| v.iter().filter(|l| !l.contains(" bollard::")).cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    occurrences(&secrets, &logged, "the log facade", &mut found);
    let traced = traces.0.lock().map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
    occurrences(&secrets, &traced, "tracing", &mut found);
    assert!(found.is_empty(), "secret values found: {found:?}");
}
