//! The examples' own demo image, made without a registry or a compiler: the example binary packages
//! itself (`/proc/self/exe` and the shared libraries it has loaded, from `/proc/self/maps`) into an
//! image `FROM scratch`, and runs inside it as a tiny server when started with `serve`
//! (`ROLE=db`: accepts TCP; `ROLE=api`: HTTP `/health` (or `HEALTH_PATH`, answering
//! `HEALTH_STATUS`, default 200), `/version`; `ROLE=web`: the same and `/call/api`, which asks
//! `API_URL` (default `http://api:8080`) for `/version`; `ROLE=worker`: no port, a log line a
//! second).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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
    // Behind a proxy that keeps its path prefix (`/auth/version`), the last segment decides.
    let (status, body) = match path.as_str() {
        p if p == health_path || p.ends_with("/health") => (health, "ok".to_string()),
        p if p.ends_with("/version") => (200, std::env::var("VERSION").unwrap_or_default()),
        p if p.ends_with("/call/api") => match call(&api_host, "/version") {
            Some(b) => (200, b),
            None => (502, "api did not answer".into()),
        },
        _ => (404, "not found".into()),
    };
    let _ = write!(conn, "HTTP/1.1 {status} OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

/// A plain HTTP GET, the body.
fn call(host: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(host).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
