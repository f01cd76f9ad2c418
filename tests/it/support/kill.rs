//! Killing a deploying process: the test binary runs one of its own ignored tests as a child
//! process, which applies an environment and is SIGKILLed at a chosen point, by itself right after
//! its k-th event (exact: the apply task cannot run meanwhile on the child's single thread), or
//! by the parent after a delay.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use harbormaster::{Backend, Environment};

/// Where the child is killed.
#[derive(Clone, Copy, Debug)]
pub enum KillAt {
    /// Right after its k-th event (1-based).
    Event(usize),
    /// Right after the first event whose `Debug` contains this text.
    Matching(&'static str),
    /// After this long (by the parent).
    After(Duration),
    /// Never: it applies to the end.
    Never,
}

/// What the child did before it died.
#[derive(Debug)]
pub struct Killed {
    /// The events it printed, in order.
    pub events: Vec<String>,
    /// Whether it was killed (rather than finishing).
    pub killed: bool,
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// The child's side: applies `env`, prints each event, and kills itself after event
/// `HM_KILL_AT_EVENT` if set. Call it from an `#[ignore]`d test.
pub async fn child<B: Backend + Clone>(env: &Environment, docker: &B) {
    let kill_at: Option<usize> = std::env::var("HM_KILL_AT_EVENT").ok().and_then(|v| v.parse().ok());
    let kill_matching = std::env::var("HM_KILL_AT_MATCH").ok();
    let mut run = env.apply_streaming(docker);
    let mut n = 0;
    while let Some(e) = run.next().await {
        n += 1;
        let text = format!("{:?}", e.kind);
        println!("hm-event {n} {text}");
        if kill_at == Some(n) || kill_matching.as_deref().is_some_and(|m| text.contains(m)) {
            // SIGKILL: no destructor, no release, no clean-up runs.
            unsafe { kill(std::process::id() as i32, 9) };
        }
    }
    match run.finish().await {
        Ok(_) => println!("hm-done ok"),
        Err(e) => println!("hm-done error {e}"),
    }
}

/// The parent's side: runs test `child_test` of this binary with `vars`, killing it as `at` says.
pub fn run_child(child_test: &str, vars: &[(&str, String)], at: KillAt) -> Killed {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args(["--exact", child_test, "--ignored", "--nocapture", "--test-threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    match at {
        KillAt::Event(k) => {
            cmd.env("HM_KILL_AT_EVENT", k.to_string());
        }
        KillAt::Matching(m) => {
            cmd.env("HM_KILL_AT_MATCH", m);
        }
        _ => {}
    }
    let mut child = cmd.spawn().expect("the child deployer starts");
    let stdout = child.stdout.take().expect("the child's stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest may print its own words before ours on the first line.
            .filter_map(|l| l.find("hm-event ").map(|i| l[i + "hm-event ".len()..].to_string()))
            .collect::<Vec<String>>()
    });
    if let KillAt::After(d) = at {
        std::thread::sleep(d);
        let _ = child.kill(); // SIGKILL
    }
    let status = child.wait().expect("the child ends");
    let events = reader.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    Killed { events, killed: status.signal() == Some(9) }
}
