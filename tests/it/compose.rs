//! Compose import through the public API: the guides' kind of file read as an environment (with
//! anchors, interpolation, `.env`, `env_file`, secrets, profiles, overrides), errors that name the
//! file, line and key, and the imported stack deployed for real.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harbormaster::compose::Compose;
use harbormaster::testing::TestEnv;
use harbormaster::{Condition, Environment, ErrorKind, Probe, RestartPolicy, ServiceKind, Strategy, VolumeSource};
use support::workload;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose").join(name)
}

fn load(files: &[&str]) -> Compose {
    Compose::new(files.iter().map(|f| fixture(f)).collect::<Vec<_>>())
        .process_env(false)
        .var("WORKLOAD_IMAGE", workload::IMAGE)
}

#[test]
fn a_guides_compose_file_is_an_environment() {
    let imported = load(&["compose.yml"]).environment("staging").load().unwrap();
    let env = &imported.environment;
    assert_eq!((env.project(), env.name()), ("shop", "staging"));
    let names: Vec<&str> = env.services().iter().map(|s| s.name()).collect();
    assert_eq!(names, ["db", "migrate", "api"], "the `debug` profile is off");

    let db = env.service("db").unwrap();
    assert_eq!(db.env().get("POSTGRES_PASSWORD_FILE").map(String::as_str), Some("/run/secrets/db_password"));
    let secret = db.volumes().iter().find(|v| v.target() == "/run/secrets/db_password").expect("the file secret");
    assert!(secret.is_read_only());
    assert!(matches!(secret.source(), VolumeSource::Bind(p) if p.ends_with("tests/fixtures/compose/db_password.txt")));
    assert!(db.volumes().iter().any(|v| v.volume_name() == Some("pgdata") && v.target() == "/var/lib/postgresql/data"));
    assert!(matches!(db.health().unwrap().probe(), Probe::Exec { command } if command[..2] == ["/bin/sh", "-c"]));

    let migrate = env.service("migrate").unwrap();
    assert_eq!(migrate.kind(), ServiceKind::Job, "others wait for it to complete: a job");

    let api = env.service("api").unwrap();
    assert_eq!(api.replicas(), 2);
    assert_eq!(api.restart_policy(), RestartPolicy::UnlessStopped, "from the anchor");
    let e = api.env();
    assert_eq!(e.get("TZ").map(String::as_str), Some("UTC"), "merge key into environment");
    assert_eq!(e.get("LOG_LEVEL").map(String::as_str), Some("info"), "`environment` over env_file; ${{V:-d}}");
    assert_eq!(e.get("GREETING").map(String::as_str), Some("hello from api.env"));
    assert_eq!(e.get("VERSION").map(String::as_str), Some("v-from-dotenv"), "${{V-d}} from .env");
    assert!(
        matches!(api.health().unwrap().probe(), Probe::Http { port: 8080, path, .. } if path == "/health"),
        "curl of itself becomes a probe from outside"
    );
    let deps: Vec<(String, Condition)> = api.dependencies().iter().map(|d| (d.service.clone(), d.condition)).collect();
    assert!(deps.contains(&("migrate".into(), Condition::CompletedSuccessfully)), "{deps:?}");
    assert!(deps.contains(&("db".into(), Condition::Healthy)), "{deps:?}");
    assert!(matches!(api.rollout().strategy(), Strategy::Rolling { .. }));
    assert_eq!(api.resources().cpu_limit(), Some(0.5));
    assert_eq!(api.resources().memory_limit_mb(), Some(128));
    assert_eq!(api.ports()[0].container_port(), 8080);

    // Nothing dropped silently: `restart: true` is said, with its place.
    let w = imported.warnings.iter().find(|w| w.key == "services.api.depends_on.db.restart").expect("warned");
    assert!(w.file.ends_with("compose.yml") && w.line == 54, "{w}");
}

#[test]
fn override_files_profiles_and_changes_in_code() {
    let env = load(&["compose.yml", "compose.override.yml"]).profile("debug").load().unwrap().environment;
    let api = env.service("api").unwrap();
    assert_eq!(api.env().get("VERSION").map(String::as_str), Some("v2-override"));
    assert_eq!(api.env().get("TZ").map(String::as_str), Some("UTC"), "merged, not replaced");
    assert_eq!(api.replicas(), 1);
    assert!(env.service("debug").is_some(), "the profile is on");
    // An ordinary environment: swap an image, then validate again.
    let api = api.to_builder().image("registry.example.com/shop/api:3").build().unwrap();
    let env = env.to_builder().replace(api).build().unwrap();
    assert!(format!("{:?}", env.service("api").unwrap().image()).contains("api:3"));
}

#[test]
fn one_path_or_several_in_any_common_form() {
    let dir = std::env::temp_dir().join(support::unique("compose-paths"));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("docker-compose.yml");
    let prod = dir.join("docker-compose.prod.yml");
    std::fs::write(&base, "services:\n  web:\n    image: nginx:1.22\n").unwrap();
    std::fs::write(&prod, "services:\n  web:\n    deploy:\n      replicas: 3\n").unwrap();
    let one = Environment::from_compose(base.to_str().unwrap()).unwrap();
    assert_eq!(one.service("web").unwrap().replicas(), 1);
    assert_eq!(Environment::from_compose(&base).unwrap().service("web").unwrap().replicas(), 1);
    let files = vec![base.clone(), prod.clone()];
    assert_eq!(Environment::from_compose(&files).unwrap().service("web").unwrap().replicas(), 3);
    assert_eq!(Environment::from_compose([&base, &prod]).unwrap().service("web").unwrap().replicas(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `text` as a compose file of its own and loads it.
fn load_text(text: &str, lenient: bool) -> harbormaster::Result<harbormaster::compose::Imported> {
    let dir = std::env::temp_dir().join(support::unique("compose"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("docker-compose.yml");
    std::fs::write(&file, text).unwrap();
    let c = Compose::new([&file]).process_env(false);
    let r = if lenient { c.lenient().load() } else { c.load() };
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[test]
fn what_cannot_be_honoured_names_the_file_line_and_key() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("services:\n  api:\n    image: a\n    colour: blue\n", 4, "services.api.colour", "not a compose service key"),
        ("services:\n  api:\n    image: a\n    external_links: [db]\n", 4, "services.api.external_links", "lenient"),
        ("services:\n  api:\n    image: ${TAG:?set TAG}\n", 3, "services.api.image", "TAG must be set"),
        ("services:\n  api:\n    image: a\n    volumes: [data:/d]\n", 4, "services.api.volumes[0]", "not declared"),
        (
            "services:\n  api:\n    image: a\n    ports: ['8000-9000:80']\n",
            4,
            "services.api.ports[0]",
            "one container port",
        ),
        (
            "services:\n  api:\n    image: a\n    ports:\n      - target: 80\n        publshed: 8080\n",
            6,
            "services.api.ports[0].publshed",
            "not a key",
        ),
        ("services:\n  api:\n    image: a\n    depends_on: [db]\n", 4, "services.api.depends_on.db", "not defined"),
        (
            "services:\n  api:\n    image: a\n    deploy:\n      update_config:\n        order: sideways\n",
            6,
            "services.api.deploy.update_config.order",
            "stop-first",
        ),
        (
            "services:\n  api:\n    image: a\n    healthcheck:\n      test: [RUN, x]\n",
            5,
            "services.api.healthcheck.test",
            "CMD",
        ),
        ("services:\n  api:\n    image: a\n    image: b\n", 4, "image", "twice"),
        ("services:\n  a:\n    extends: b\n    image: x\n  b:\n    extends: a\n", 0, "extends", "circle"),
        ("services: [\n", 0, "", "not valid YAML"),
        ("services:\n  Bad-Name:\n    image: a\n", 0, "services", "invalid service name"),
    ];
    for (text, line, key, says) in cases {
        let err = load_text(text, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("docker-compose.yml"), "the file is named: {msg}");
        if *line > 0 {
            assert!(msg.contains(&format!("docker-compose.yml:{line}:")), "line {line}: {msg}");
        }
        assert!(msg.contains(key), "key {key}: {msg}");
        assert!(msg.contains(says), "{says}: {msg}");
    }
    // Lenient: what cannot be honoured is a warning, still with its place.
    let ok =
        load_text("services:\n  api:\n    image: a\n    external_links: [x]\n    container_name: x\n", true).unwrap();
    let keys: Vec<(&str, usize)> = ok.warnings.iter().map(|w| (w.key.as_str(), w.line)).collect();
    assert_eq!(keys, [("services.api.external_links", 4), ("services.api.container_name", 5)]);
}

#[test]
fn no_panic_on_hostile_files() {
    let hostile = [
        String::new(),
        "\0\0\0".into(),
        "- a\n- b\n".into(),
        "services: 7\n".into(),
        "services:\n  a: [1, 2]\n".into(),
        "services:\n  a:\n    image: x\n    ports: [{target: 99999}]\n".into(),
        "services:\n  a:\n    image: x\n    deploy: {replicas: -1}\n".into(),
        "services:\n  a:\n    image: x\n    healthcheck: {test: 'curl http://localhost:0/'}\n".into(),
        "services:\n  a:\n    image: x\n    stop_grace_period: 99999999999999999999h\n".into(),
        "services:\n  a:\n    image: x\n    mem_limit: 1e308g\n".into(),
        format!("services:\n  a:\n    image: {}\n", "${A:-".repeat(200)),
        format!("x: {}1{}\n", "[".repeat(100), "]".repeat(100)),
        "services:\n  a: &a\n    image: x\n    <<: *a\n".into(),
    ];
    for text in hostile {
        let _ = load_text(&text, false);
        let _ = load_text(&text, true);
    }
    // Deep nesting, far past the limits: refused, without exhausting the stack.
    let deep = [
        format!("x: {}\n", "[".repeat(1_000_000)),
        format!("x: {}\n", "{a: ".repeat(200_000)),
        format!("x: {}\n", "- ".repeat(200_000)),
        format!("services:\n  a:\n    image: {}\n", "${A:-".repeat(100_000)),
        format!("services:\n  a:\n    image: {}x{}\n", "${A:-".repeat(100), "}".repeat(100)),
    ];
    for text in deep {
        let e = load_text(&text, true).expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    }
}

/// The fixture stack deployed: PostgreSQL with its password from the file secret, a migration
/// job, the API behind its curl health check (probed from outside: the image has no curl).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_stack_deploys_and_serves() {
    workload::ensure_images();
    support::images::ensure();
    let env: Environment = load(&["compose.yml"]).load().unwrap().environment;
    let stack = TestEnv::up(env).await.unwrap();
    let url = stack.url("api", 8080, "http").unwrap();
    assert_eq!(support::get(&format!("{url}/version")).await.1, "v-from-dotenv");
    let out = stack
        .exec("db", ["sh", "-c", "PGPASSWORD=compose-db-secret psql -h 127.0.0.1 -U app -d shop -Atc 'SELECT 40 + 2'"])
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "42", "the password came from the secret file: {}", out.stderr);
    assert_eq!(stack.deployment().instances("api").len(), 2);
    let _ = Duration::ZERO;
}

/// `Environment::from_compose` says its warnings where they are seen: on standard error with no
/// `tracing` subscriber (none is installed in a fresh program), or as `tracing` events when one
/// takes them. Checked in a child process of this test binary.
#[test]
fn from_compose_says_its_warnings_where_the_user_sees_them() {
    if let Ok(file) = std::env::var("HM_FROM_COMPOSE_CHILD") {
        if std::env::var_os("HM_WITH_SUBSCRIBER").is_some() {
            tracing_subscriber::fmt().with_writer(std::io::stdout).init();
        }
        Environment::from_compose(file.as_str()).unwrap();
        return;
    }
    let dir = std::env::temp_dir().join(support::unique("compose-warnings"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("docker-compose.yml");
    std::fs::write(&file, "services:\n  web:\n    image: nginx:1.22\n    container_name: web-1\n").unwrap();
    let run = |subscriber: bool| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            support::child_test(module_path!(), "from_compose_says_its_warnings_where_the_user_sees_them").as_str(),
            "--nocapture",
        ])
        .env("HM_FROM_COMPOSE_CHILD", &file);
        if subscriber {
            cmd.env("HM_WITH_SUBSCRIBER", "1");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (_, stderr) = run(false);
    let said = format!("warning: {}:4: `services.web.container_name`:", file.display());
    assert!(stderr.contains(&said), "on standard error: {stderr}");
    let (stdout, stderr) = run(true);
    assert!(stdout.contains("WARN") && stdout.contains("services.web.container_name"), "through tracing: {stdout}");
    assert!(!stderr.contains("warning:"), "not twice: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
