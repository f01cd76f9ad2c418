//! The examples' own demo image, made without a registry or a compiler: the example binary packages
//! itself (`/proc/self/exe` and the shared libraries it has loaded, from `/proc/self/maps`) into an
//! image `FROM scratch`, and runs inside it as a tiny server when started with `serve`
//! (`ROLE=db`: accepts TCP; `ROLE=api`: HTTP `/health` (or `HEALTH_PATH`, answering
//! `HEALTH_STATUS`, default 200), `/version`; `ROLE=web`: the same and `/call/api`, which asks
//! `API_URL` (default `http://api:8080`) for `/version`; `ROLE=worker`: no port, a log line a
//! second). Every HTTP role counts its requests for Prometheus (`/metrics`). With `DATABASE_URL`,
//! the API answers `/db` with a query through it (PostgreSQL, or PgBouncer in front of it); with
//! `RABBITMQ_URL`, it answers `/ask/<agent>?q=…` by sending the question to the agent's queue
//! (`agent.<agent>`) and waiting for its answer, and a worker with `AGENTS` (comma-separated)
//! answers the questions of those agents' queues.
#![allow(dead_code)]

mod amqp;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use harbormaster::Build;

/// The tag the demo image gets.
pub const IMAGE: &str = "harbormaster-examples/demo:latest";

/// A short message for a prerequisite the example lacks, printed instead of a panic.
#[derive(Debug)]
pub struct Missing(pub String);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Missing {}

/// The example's exit: its error as a short message (no panic, no backtrace) and a failure code.
pub fn finish(example: &str, result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\n{example}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The build of the demo image: a context directory holding this binary and its libraries.
pub fn build_context() -> Result<Build, Missing> {
    if !cfg!(target_os = "linux") {
        return Err(Missing(
            "the examples package their own binary as a Linux image: run them on Linux (the engine may be anywhere)"
                .into(),
        ));
    }
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| Missing(format!("cannot find this program: {e}")))?;
    let maps =
        std::fs::read_to_string("/proc/self/maps").map_err(|e| Missing(format!("cannot read /proc/self/maps: {e}")))?;
    let mut libs: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/') && p.contains(".so"))
        .map(PathBuf::from)
        .collect();
    // The dynamic loader as the binary names it (often a symbolic link to the mapped file).
    for interp in ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/ld-linux-armhf.so.3"] {
        if Path::new(interp).exists() {
            libs.push(PathBuf::from(interp));
        }
    }
    libs.sort();
    libs.dedup();
    let dir = std::env::temp_dir().join(format!("harbormaster-demo-{}", std::process::id()));
    let copy = |from: &Path, to: &Path| -> Result<(), Missing> {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Missing(format!("{}: {e}", parent.display())))?;
        }
        std::fs::copy(from, to).map(|_| ()).map_err(|e| Missing(format!("copying {}: {e}", from.display())))
    };
    let _ = std::fs::remove_dir_all(&dir);
    copy(&exe, &dir.join("demo"))?;
    for lib in &libs {
        copy(lib, &dir.join(lib.strip_prefix("/").unwrap_or(lib)))?;
    }
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY . /\nENTRYPOINT [\"/demo\", \"serve\"]\n")
        .map_err(|e| Missing(format!("writing the Dockerfile: {e}")))?;
    Ok(Build::context(dir).tag(IMAGE))
}

/// If started as `<example> serve`, serves (inside the demo image) and never returns.
pub fn serve_if_asked() {
    if std::env::args().nth(1).as_deref() != Some("serve") {
        return;
    }
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let role = std::env::var("ROLE").unwrap_or_default();
    if role == "worker" {
        if let (Ok(url), Ok(agents)) = (std::env::var("RABBITMQ_URL"), std::env::var("AGENTS")) {
            agent_loop(&url, &agents);
        }
        for n in 0u64.. {
            eprintln!("worker: processed batch {n}");
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    // A service that needs another exits at start when it cannot reach it (as a real one would).
    for need in std::env::var("REQUIRE").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        if std::net::TcpStream::connect(need).is_err() {
            eprintln!("{role}: cannot reach {need}");
            std::process::exit(1);
        }
    }
    let listener = match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{role}: cannot listen on {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("{role}: listening on {port}");
    for conn in listener.incoming().flatten() {
        let role = role.clone();
        std::thread::spawn(move || handle(conn, &role));
    }
    std::process::exit(0);
}

fn handle(mut conn: std::net::TcpStream, role: &str) {
    if role == "db" {
        let _ = conn.write_all(b"demo-db\n");
        return;
    }
    let mut buf = [0u8; 2048];
    let n = conn.read(&mut buf).unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let health_path = std::env::var("HEALTH_PATH").unwrap_or_else(|_| "/health".into());
    let health: u16 = std::env::var("HEALTH_STATUS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let api = std::env::var("API_URL").unwrap_or_else(|_| "http://api:8080".into());
    let api_host = api.trim_start_matches("http://").trim_end_matches('/').to_string();
    let served = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    // Behind a proxy that keeps its path prefix (`/auth/version`), the last segment decides.
    let (status, body) = match path.as_str() {
        p if p == health_path || p.ends_with("/health") => (health, "ok".to_string()),
        p if p.ends_with("/version") => (200, std::env::var("VERSION").unwrap_or_default()),
        p if p.ends_with("/metrics") => (200, metrics(role, served)),
        p if p.ends_with("/db") => query_database(),
        p if p.contains("/ask/") => ask(p),
        p if p.ends_with("/call/api") => match call(&api_host, "/version") {
            Some(b) => (200, b),
            None => (502, "api did not answer".into()),
        },
        _ => (404, "not found".into()),
    };
    let _ = write!(conn, "HTTP/1.1 {status} OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

/// Requests this server has answered.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The Prometheus text exposition of this server's counters.
fn metrics(role: &str, served: u64) -> String {
    let version = std::env::var("VERSION").unwrap_or_default();
    format!(
        "# HELP demo_requests_total HTTP requests answered.\n# TYPE demo_requests_total counter\n\
         demo_requests_total{{role=\"{role}\",version=\"{version}\"}} {served}\n"
    )
}

/// `/db`: one round trip through `DATABASE_URL` (a simple query, as a transaction-pooling
/// PgBouncer needs), answered with the number of rows of `memories`.
fn query_database() -> (u16, String) {
    let Ok(url) = std::env::var("DATABASE_URL") else { return (500, "no DATABASE_URL".into()) };
    let answer = postgres::Client::connect(&url, postgres::NoTls).and_then(|mut client| {
        let rows = client.simple_query("SELECT count(*) FROM memories")?;
        Ok(rows
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap_or_default())
    });
    match answer {
        Ok(count) => (200, format!("memories={count}")),
        Err(e) => (503, format!("database: {e}")),
    }
}

/// `/ask/<agent>?q=<question>`: the question goes to the agent's queue with a reply queue of
/// this request's own; the first answer within 10 s is the body.
fn ask(path: &str) -> (u16, String) {
    let Ok(url) = std::env::var("RABBITMQ_URL") else { return (500, "no RABBITMQ_URL".into()) };
    let rest = path.split("/ask/").nth(1).unwrap_or_default();
    let (agent, query) = rest.split_once('?').unwrap_or((rest, ""));
    let question = query.strip_prefix("q=").unwrap_or(query);
    let asked = (|| -> std::io::Result<Option<String>> {
        let mut broker = amqp::Amqp::connect(&url)?;
        let queue = format!("agent.{agent}");
        broker.declare(&queue, true)?;
        let reply = broker.declare("", false)?;
        let id = format!("{}-{}", std::process::id(), REQUESTS.load(Ordering::Relaxed));
        broker.publish(&queue, question.as_bytes(), Some(&reply), Some(&id))?;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < until {
            if let Some(m) = broker.get(&reply)? {
                if m.correlation_id.as_deref() == Some(id.as_str()) {
                    return Ok(Some(String::from_utf8_lossy(&m.body).into_owned()));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(None)
    })();
    match asked {
        Ok(Some(answer)) => (200, answer),
        Ok(None) => (504, format!("no answer from agent {agent}")),
        Err(e) => (503, format!("broker: {e}")),
    }
}

/// A worker's agents: each takes the questions of its queue and answers to their reply queue.
/// A broken connection is made again (the broker restarting, say).
fn agent_loop(url: &str, agents: &str) -> ! {
    let version = std::env::var("VERSION").unwrap_or_default();
    let agents: Vec<String> = agents.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect();
    loop {
        let served = (|| -> std::io::Result<()> {
            let mut broker = amqp::Amqp::connect(url)?;
            for a in &agents {
                broker.declare(&format!("agent.{a}"), true)?;
            }
            eprintln!("worker: agents {} listening", agents.join(", "));
            loop {
                let mut idle = true;
                for a in &agents {
                    if let Some(m) = broker.get(&format!("agent.{a}"))? {
                        idle = false;
                        let answer = format!("{a} agent {version} answered: {}", String::from_utf8_lossy(&m.body));
                        if let Some(to) = &m.reply_to {
                            broker.publish(to, answer.as_bytes(), None, m.correlation_id.as_deref())?;
                        }
                    }
                }
                if idle {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        })();
        if let Err(e) = served {
            eprintln!("worker: broker: {e}; connecting again");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A plain HTTP GET, the body.
fn call(host: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(host).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
