//! Reusable test environments (`TestEnvBuilder::reuse` with `HARBORMASTER_REUSE=1`), as a
//! developer meets them: each "run" is a process of its own (a child of this test binary), and
//! what one run leaves, the next one takes, unless anything that defines the environment changed.
//! Parallel processes bring it up once; idle ones are swept by any later process; nothing is left.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use harbormaster::environments;
use harbormaster::testing::{reap, reap_reusable, TestEnv, REUSE_VAR};
use support::{docker, workload};

/// One run: brings the environment up with `reuse()`, says what it got (its name, whether it was
/// taken, the container's ID, what it answers), and holds it for `HM_HOLD_MS`.
#[tokio::test]
#[ignore = "a child process of the reuse tests"]
async fn reuse_child() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let image = std::env::var("HM_IMAGE").unwrap_or_else(|_| workload::IMAGE.to_string());
    let mut builder = TestEnv::builder(support::web_env(&var("HM_STEM"), &image, &var("HM_VERSION"))).reuse();
    if let Ok(ms) = var("HM_IDLE_MS").parse::<u64>() {
        builder = builder.reuse_idle_limit(Duration::from_millis(ms));
    }
    let stack = builder.up().await.unwrap();
    let container = stack.deployment().instances("web").first().map(|i| i.id.clone()).unwrap_or_default();
    let body = support::get(&format!("{}/version", stack.url("web", 8080, "http").unwrap())).await.1;
    println!(
        "hm-reuse name={} reused={} container={} version={}",
        stack.name(),
        stack.reused(),
        container,
        body.trim()
    );
    if let Ok(ms) = var("HM_HOLD_MS").parse::<u64>() {
        println!("hm-reuse holding");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// What one run said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    name: String,
    reused: bool,
    container: String,
    version: String,
}

fn parse(line: &str) -> Option<Run> {
    let rest = line.split("hm-reuse name=").nth(1)?;
    let field = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or_default().to_string();
    Some(Run {
        name: rest.split_whitespace().next()?.to_string(),
        reused: field("reused=") == "true",
        container: field("container="),
        version: field("version="),
    })
}

fn child(vars: &[(&str, &str)], allow: bool) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(support::child_args(module_path!(), "reuse_child")).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove(REUSE_VAR);
    if allow {
        cmd.env(REUSE_VAR, "1");
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// `(name, value)` pairs as the borrowed form `run` takes.
fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Runs one child to its end and returns what it said.
fn run(vars: &[(&str, &str)], allow: bool) -> Run {
    let out = child(vars, allow).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the run failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text.lines().find_map(parse).unwrap_or_else(|| panic!("the run said nothing: {text}"))
}

/// The environments on the local engine whose names start with `stem`.
async fn named(stem: &str) -> Vec<String> {
    let docker = docker().await;
    environments(&docker).await.unwrap().into_iter().filter(|e| e.name.starts_with(stem)).map(|e| e.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_run_takes_the_environment_and_any_change_gets_a_fresh_one() {
    workload::ensure_images();
    let stem = support::unique("reuse");
    let vars = |version: &'static str| vec![("HM_STEM", stem.clone()), ("HM_VERSION", version.to_string())];

    // First run: brought up, under its fingerprint's name; left running when the process ends.
    let v1 = vars("v1");
    let first = run(&as_refs(&v1), true);
    assert!(!first.reused && first.version == "v1" && !first.container.is_empty(), "{first:?}");
    assert!(first.name.starts_with(&stem) && first.name.contains("-r"), "{first:?}");
    assert_eq!(named(&stem).await, vec![first.name.clone()], "left running for the next run");

    // Second run, same description: the same environment, the very container the first ran.
    let second = run(&as_refs(&v1), true);
    assert_eq!(second, Run { reused: true, ..first.clone() });

    // A change of the description: another fingerprint, a fresh environment.
    let v2 = vars("v2");
    let changed = run(&as_refs(&v2), true);
    assert!(!changed.reused && changed.version == "v2" && changed.container != first.container, "{changed:?}");
    assert_ne!(changed.name, first.name);

    // The same image tag moved to another image: a change too.
    let tag = format!("harbormaster-test/reuse-{}:latest", stem);
    let docker_cli = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    docker_cli(&["tag", workload::IMAGE, &tag]);
    let mut tagged = vars("v1");
    tagged.push(("HM_IMAGE", tag.clone()));
    let on_tag = run(&as_refs(&tagged), true);
    assert!(!on_tag.reused, "{on_tag:?}");
    assert_eq!(run(&as_refs(&tagged), true).name, on_tag.name, "the same image: the same environment");
    let dir = std::env::temp_dir().join(support::unique("reuse-image"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {}\nLABEL hm.reuse.moved=\"{stem}\"\n", workload::IMAGE))
        .unwrap();
    docker_cli(&["build", "-q", "-t", &tag, dir.to_str().unwrap()]);
    let moved = run(&as_refs(&tagged), true);
    assert!(!moved.reused && moved.name != on_tag.name, "an image moved behind its tag is a change: {moved:?}");

    // Without HARBORMASTER_REUSE (as on CI): a plain test environment, gone when the run ends.
    let plain = run(&as_refs(&v1), false);
    assert!(!plain.reused && !plain.name.contains("-r"), "{plain:?}");
    assert!(!named(&stem).await.contains(&plain.name), "torn down at the end of its run");

    // On demand: every reusable one goes, nothing of the test is left.
    let removed = reap_reusable(&docker().await).await.unwrap();
    for name in [&first.name, &changed.name, &on_tag.name, &moved.name] {
        assert!(removed.iter().any(|r| r.ends_with(name.as_str())), "{name} removed: {removed:?}");
    }
    assert_eq!(named(&stem).await, Vec::<String>::new());
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_runs_bring_it_up_once_and_share_it() {
    workload::ensure_images();
    let stem = support::unique("reuse-par");
    let vars = [("HM_STEM", stem.as_str()), ("HM_VERSION", "v1")];
    let children: Vec<_> = (0..4).map(|_| child(&vars, true).spawn().unwrap()).collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
            text.lines().find_map(parse).unwrap()
        })
        .collect();
    assert!(runs.iter().all(|r| r.name == runs[0].name), "one environment: {runs:?}");
    assert_eq!(runs.iter().filter(|r| !r.reused).count(), 1, "brought up once: {runs:?}");
    assert_eq!(named(&stem).await.len(), 1);
    reap_reusable(&docker().await).await.unwrap();
    assert_eq!(named(&stem).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_one_is_swept_by_another_process_and_a_used_one_is_not() {
    workload::ensure_images();
    let docker = docker().await;
    let stem = support::unique("reuse-idle");
    // A run that holds the environment (idle limit 1 s) while another process sweeps.
    let vars = [("HM_STEM", stem.as_str()), ("HM_VERSION", "v1"), ("HM_IDLE_MS", "1000"), ("HM_HOLD_MS", "60000")];
    let mut holder = child(&vars, true).spawn().unwrap();
    let out = holder.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines().map_while(Result::ok);
    let said = lines.find_map(|l| parse(&l)).expect("the holder's environment");
    assert!(lines.any(|l| l.contains("hm-reuse holding")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    reap(&docker).await.unwrap();
    assert_eq!(named(&stem).await, vec![said.name.clone()], "in use: kept past its idle limit");
    // The holder ends (killed: its lock goes with it); past the limit, the next sweep removes it.
    holder.kill().unwrap();
    holder.wait().unwrap();
    // (This call's sweep or this process's own harness sweep, whichever comes first.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !named(&stem).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "an idle reusable environment no process uses was not swept");
        tokio::time::sleep(Duration::from_millis(300)).await;
        reap(&docker).await.unwrap();
    }
}
