//! A test environment held in a `static` is never dropped (testcontainers #745): the harness tears
//! it down when the process exits. The parent here never starts a harness of its own, so nothing
//! but the child's exit can have removed it. And 100 tests in child processes (passing, panicking,
//! aborting, and a whole process SIGKILLed) leave no container, network or volume.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use harbormaster::testing::TestEnv;
use harbormaster::{DockerBackend, Environment, HealthCheck, Port, Service};
use support::{docker, workload, PROJECT};

fn web(stem: &str) -> Environment {
    let svc = Service::builder("web")
        .image(workload::IMAGE)
        .port(Port::tcp(8080).publish_ephemeral())
        .health(HealthCheck::tcp(8080).interval(Duration::from_millis(50)).retries(200))
        .stop_grace_period(Duration::from_secs(1))
        .build()
        .unwrap();
    Environment::builder(PROJECT, stem).service(svc).build().unwrap()
}

/// Everything on the engine labelled with `project` whose environment starts with `stem`.
async fn labelled(docker: &DockerBackend, stem: &str) -> Vec<String> {
    use bollard::query_parameters::{
        ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    };
    use std::collections::HashMap;
    let filters = HashMap::from([("label", vec![format!("io.harbormaster.project={PROJECT}")])]);
    let c = docker.client();
    let mut found = Vec::new();
    let env_of = |l: &HashMap<String, String>| l.get("io.harbormaster.environment").cloned().unwrap_or_default();
    for k in
        c.list_containers(Some(ListContainersOptionsBuilder::new().all(true).filters(&filters).build())).await.unwrap()
    {
        if env_of(&k.labels.clone().unwrap_or_default()).starts_with(stem) {
            found.push(format!("container {:?}", k.names));
        }
    }
    for n in c.list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build())).await.unwrap() {
        if env_of(&n.labels.clone().unwrap_or_default()).starts_with(stem) {
            found.push(format!("network {:?}", n.name));
        }
    }
    let volumes = c.list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filters).build())).await.unwrap();
    for v in volumes.volumes.unwrap_or_default() {
        if env_of(&v.labels).starts_with(stem) {
            found.push(format!("volume {}", v.name));
        }
    }
    found
}

static HELD: OnceLock<TestEnv> = OnceLock::new();

#[tokio::test]
#[ignore = "the child process of a_static_environment_is_torn_down_when_the_process_exits"]
async fn static_child() {
    let stack = TestEnv::up(web("static")).await.unwrap();
    println!("hm-env {}", stack.name());
    HELD.set(stack).unwrap();
}

#[tokio::test]
async fn a_static_environment_is_torn_down_when_the_process_exits() {
    workload::ensure_images();
    let docker = docker().await;
    let out = Command::new(std::env::current_exe().unwrap())
        .args(support::child_args(module_path!(), "static_child"))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.lines().find_map(|l| l.find("hm-env ").map(|i| l[i + 7..].trim().to_string())).expect("up");
    assert_eq!(labelled(&docker, &name).await, Vec::<String>::new(), "the static's environment outlived its process");
}

macro_rules! hundred {
    ($($n:ident),* $(,)?) => {$(
        #[tokio::test]
        #[ignore = "a child test of one_hundred_tests_…"]
        async fn $n() {
            let n: u32 = stringify!($n)[1..].parse().unwrap();
            let stem = std::env::var("HM_STEM").unwrap();
            let stack = TestEnv::up(web(&stem)).await.unwrap();
            let url = stack.url("web", 8080, "http").unwrap();
            assert!(support::get(&format!("{url}/health")).await.0 == 200);
            match n % 10 {
                3 => panic!("test {n} fails"),
                7 if std::env::var("HM_ABORT").is_ok() => std::process::abort(),
                _ => {}
            }
        }
    )*};
}

hundred!(
    t00, t01, t02, t03, t04, t05, t06, t07, t08, t09, t10, t11, t12, t13, t14, t15, t16, t17, t18, t19, t20, t21, t22,
    t23, t24, t25, t26, t27, t28, t29, t30, t31, t32, t33, t34, t35, t36, t37, t38, t39, t40, t41, t42, t43, t44, t45,
    t46, t47, t48, t49, t50, t51, t52, t53, t54, t55, t56, t57, t58, t59, t60, t61, t62, t63, t64, t65, t66, t67, t68,
    t69, t70, t71, t72, t73, t74, t75, t76, t77, t78, t79, t80, t81, t82, t83, t84, t85, t86, t87, t88, t89, t90, t91,
    t92, t93, t94, t95, t96, t97, t98, t99,
);

/// Runs the tests `t<from>`..`t<to>` of this binary in a child process, 4 at a time.
fn suite(stem: &str, filter: &str, vars: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([support::child_test(module_path!(), filter).as_str(), "--ignored", "--test-threads", "4"])
        .env("HM_STEM", stem)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn passed_and_failed(child: std::process::Child) -> (usize, usize) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("test {}", support::child_test(module_path!(), "t"));
    let ok = text.lines().filter(|l| l.starts_with(&prefix) && l.ends_with("... ok")).count();
    let failed = text.lines().filter(|l| l.starts_with(&prefix) && l.ends_with("FAILED")).count();
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_tests_in_killed_panicking_and_aborting_processes_leave_nothing() {
    workload::ensure_images();
    let docker = docker().await;
    let stem = format!("h{:06x}", std::process::id() & 0xff_ffff);
    // t0*..t3*: 40 tests, 4 of them panicking.
    let (ok, failed) = passed_and_failed(suite(&stem, "t0", &[]));
    let (ok2, failed2) = passed_and_failed(suite(&stem, "t1", &[]));
    let (ok3, failed3) = passed_and_failed(suite(&stem, "t2", &[]));
    let (ok4, failed4) = passed_and_failed(suite(&stem, "t3", &[]));
    assert_eq!((ok + ok2 + ok3 + ok4, failed + failed2 + failed3 + failed4), (36, 4));
    // t4*, t5*: 20 tests in a process that aborts at its first t*7 (no destructor, no exit handler).
    let aborting = suite(&stem, "t4", &[("HM_ABORT", "1")]);
    let _ = aborting.wait_with_output().unwrap();
    let aborting = suite(&stem, "t5", &[("HM_ABORT", "1")]);
    let _ = aborting.wait_with_output().unwrap();
    // t6*..t9*: 40 tests in a process SIGKILLed while they run.
    let mut killed = Command::new(std::env::current_exe().unwrap());
    let mut killed = killed
        .arg(support::child_test(module_path!(), "t"))
        .args(
            ["t0", "t1", "t2", "t3", "t4", "t5", "static_child"]
                .map(|t| ["--skip".to_string(), support::child_test(module_path!(), t)])
                .concat(),
        )
        .args(["--ignored", "--test-threads", "4"])
        .env("HM_STEM", &stem)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some of its environments are up.
    let out = killed.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines().map_while(Result::ok);
    let _ = lines.find(|l| l.ends_with("... ok"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    killed.kill().unwrap();
    killed.wait().unwrap();
    let left = labelled(&docker, &stem).await;
    assert!(!left.is_empty(), "the aborted and killed processes left environments to reap");
    println!("left by the aborted and killed processes: {}", left.len());
    // What the aborted and killed processes left is reaped by the next process's first sweep
    // (here: one more test process starting).
    let next = suite(&stem, "t00", &[]);
    let (ok, _) = passed_and_failed(next);
    assert_eq!(ok, 1);
    assert_eq!(labelled(&docker, &stem).await, Vec::<String>::new(), "100 tests left something behind");
}
