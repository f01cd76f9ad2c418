//! The five deployment guides' stacks (`examples/`), each run as its user would run it
//! (`cargo run --example <guide>`) against the real engine, the SSH test hosts, moto's S3 server
//! and the fixture images (RabbitMQ, Prometheus and PgBouncer among them): each must exit 0 after checking what its guide promises (it prints
//! `fact key=value` lines) and tearing down, leaving nothing behind.

use crate::support;

use std::process::Command;
use std::sync::Mutex;

/// One example at a time: they share the application image's tag and, for Construct, fixed ports.
/// (They run in one test, one after the other, so no test thread waits on this; the lock keeps
/// it so should a guide be run from elsewhere.)
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `cargo run --example <name>` and returns its facts.
fn run_example(name: &str) -> std::collections::BTreeMap<String, String> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    support::images::ensure();
    support::images::ensure_servers();
    support::fixture("s3.sh", "the guides' examples back up to S3 (moto)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr).lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    assert!(stdout.contains("==> tearing down"), "{name} tore down: {stdout}");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("fact "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Nothing of `project` is left on the local engine.
async fn nothing_left(project: &str) {
    let docker = support::docker().await;
    let left: Vec<_> =
        harbormaster::environments(&docker).await.unwrap().into_iter().filter(|e| e.project == project).collect();
    assert!(left.is_empty(), "{project} left {left:?}");
}

async fn structra_from_its_compose_file_with_backup_rollback_and_restore() {
    let facts = run_example("structra");
    assert_eq!(facts["backend_replicas"], "3");
    assert_eq!(facts["frontend_sees_after_update"], "1.1.0");
    assert_eq!(facts["bad_release"], "rolled_back");
    assert_eq!(facts["frontend_sees_after_rollback"], "1.1.0");
    assert_eq!(facts["rows_restored"], "bridge,tower,tunnel");
    nothing_left("structra").await;
}

async fn constellation_from_two_repositories_compose_files() {
    let facts = run_example("constellation");
    assert_eq!(facts["server_health"], "200");
    assert_eq!(facts["web_reaches_server"], "true");
    assert_eq!(facts["frontend_release_changes"], "constellation-web");
    nothing_left("constellation").await;
}

async fn coachntt_behind_nginx_with_its_rollback_procedure() {
    let facts = run_example("coachntt");
    assert_eq!(facts["through_nginx"], "0.9.0");
    // nginx -> API -> PgBouncer -> PostgreSQL, Prometheus scraping both API replicas.
    assert_eq!(facts["api_through_pgbouncer"], "memories=1");
    assert_eq!(facts["prometheus_scraped_api_replicas"], "2");
    // A rolling release of the API while requests keep going through PgBouncer.
    assert!(facts["db_requests_during_release"].parse::<usize>().unwrap() > 0, "{facts:?}");
    assert_eq!(facts["db_requests_failed_during_release"], "0", "{facts:?}");
    assert_eq!(facts["after_rollback"], "0.9.0");
    nothing_left("coachntt").await;
}

async fn procare_staging_and_production() {
    let facts = run_example("procare");
    assert_eq!(facts["production_doctor_sees"], "1.4.0");
    assert_eq!(facts["staging_then_production"], "1.5.0/1.4.0");
    assert_eq!(facts["production_after_rollback"], "1.4.0");
    // Through the real broker: a question to an agent's queue, its answer back.
    assert_eq!(facts["production_agent_answers"], "triage/1.4.0");
    assert_eq!(facts["production_agent_answers_after_release"], "medication/1.5.0");
    assert_eq!(facts["agents_after_rollback"], "triage/1.5.0");
    nothing_left("procare").await;
}

async fn construct_over_five_server_roles() {
    let facts = run_example("construct");
    assert_eq!(facts["gateway_routes"], "5");
    assert_eq!(facts["prometheus_scraped_services"], "5");
    assert_eq!(facts["redis_replication"], "up");
    assert_eq!(facts["auth_after_update"], "1.1.0");
}

/// The preview bot (`examples/preview_bot.rs`): two pull requests opened, one pushed to, one
/// closed, the nightly expiry, everything removed.
async fn the_preview_bot_story() {
    let facts = run_example("preview_bot");
    assert_eq!(facts["pr-101"], "pr101-b");
    assert_eq!(facts["pr-102"], "gone");
    nothing_left("shop").await;
}

/// The five guides, one after the other in one test: they cannot run side by side (one image tag,
/// fixed ports), and as five tests the second would hold a test thread idle while it waits for
/// the first, for the whole run of the guides.
#[tokio::test]
async fn the_five_guides_run_as_their_users_run_them() {
    structra_from_its_compose_file_with_backup_rollback_and_restore().await;
    constellation_from_two_repositories_compose_files().await;
    coachntt_behind_nginx_with_its_rollback_procedure().await;
    procare_staging_and_production().await;
    construct_over_five_server_roles().await;
    // The examples share the application image's tag: the preview bot runs after the guides.
    the_preview_bot_story().await;
}
