//! harbormaster's test workload: a small HTTP server configured by environment.
//!
//! | variable | effect |
//! |---|---|
//! | `PORT` | port to listen on (default 8080) |
//! | `READY_DELAY_MS` | wait this long before listening (the service is not ready until then) |
//! | `HEALTH_STATUS` | HTTP status answered on `/health` (default 200) |
//! | `VERSION` | version string answered on `/` and `/version` |
//! | `CRASH_AFTER_MS` | exit with `CRASH_CODE` (default 1) this long after start |
//! | `JOB_EXIT_CODE` | run as a job: wait `JOB_DURATION_MS`, then exit with this code |
//! | `LOG_LINES` | lines printed at start, separated by `|` |
//! | `REQUIRE` | `host:port` list (comma separated) that must accept TCP at start, else exit 3 |
//! | `STOP_DELAY_MS` | delay between SIGTERM and exit (a slow shutdown) |
//! | `LOG_REQUESTS` | log each request's method and path |
//! | `APPEND_FILE`, `APPEND_LINE` | append the line to the file at start (a job that leaves a trace) |
//! | `LOG_ENV` | names (comma separated) whose `NAME=value` is printed at start (a careless service) |
//!
//! Routes: `/health`, `/version`, `/env/NAME` (value of an env var),
//! `/call/HOST/PORT/PATH` (GET on another service, answers its body).
//!
//! `workload probe [PORT] [PATH]` exits 0 when `GET localhost:PORT/PATH` answers 2xx, for images'
//! own `HEALTHCHECK` and exec probes (the image is `FROM scratch`: it has no curl).
//! `workload cat PATH` prints a file (for `exec`: the image has no cat).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(code: i32) -> !;
}

static STOP_DELAY_MS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_term(_sig: i32) {
    // Only async-signal-safe calls here: nanosleep through std::thread::sleep is safe in practice.
    let delay = STOP_DELAY_MS.load(Ordering::Relaxed);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    unsafe { _exit(0) }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn log(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        let port = args.get(2).cloned().unwrap_or_else(|| std::env::var("PORT").unwrap_or_else(|_| "8080".into()));
        let path = args.get(3).cloned().unwrap_or_else(|| "/health".into());
        std::process::exit(match http_get(&format!("127.0.0.1:{port}"), &path) {
            Ok((status, _)) if (200..300).contains(&status) => 0,
            _ => 1,
        });
    }

    if args.get(1).map(String::as_str) == Some("cat") {
        match std::fs::read(args.get(2).map(String::as_str).unwrap_or("")) {
            Ok(bytes) => {
                let _ = std::io::stdout().write_all(&bytes);
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("cat: {e}");
                std::process::exit(1);
            }
        }
    }

    STOP_DELAY_MS.store(env_u64("STOP_DELAY_MS").unwrap_or(0), Ordering::Relaxed);
    unsafe {
        signal(15, on_term as *const () as usize); // SIGTERM
        signal(2, on_term as *const () as usize); // SIGINT
    }
    let version = std::env::var("VERSION").unwrap_or_else(|_| "v0".into());
    log(&format!("workload {version} starting at_unix_ns={}", now_ns()));
    if let (Ok(file), Ok(line)) = (std::env::var("APPEND_FILE"), std::env::var("APPEND_LINE")) {
        let path = std::path::Path::new(&file);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{line}").and_then(|_| f.sync_all()));
        if let Err(e) = appended {
            log(&format!("cannot append to {file}: {e}"));
            std::process::exit(4);
        }
        // Fails each run until the file holds this many lines (a job its restart policy retries).
        if let Some(want) = env_u64("FAIL_UNTIL_LINES") {
            let lines = std::fs::read_to_string(path).map(|t| t.lines().count() as u64).unwrap_or(0);
            if lines < want {
                log(&format!("run {lines} of {want}: failing"));
                std::process::exit(5);
            }
        }
    }
    if let Ok(names) = std::env::var("LOG_ENV") {
        for n in names.split(',').filter(|n| !n.is_empty()) {
            log(&format!("{n}={}", std::env::var(n).unwrap_or_default()));
        }
    }
    if let Ok(lines) = std::env::var("LOG_LINES") {
        for l in lines.split('|') {
            log(l);
        }
    }

    if let Ok(req) = std::env::var("REQUIRE") {
        for target in req.split(',').filter(|s| !s.is_empty()) {
            let ok = target
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
                .unwrap_or(false);
            if !ok {
                log(&format!("required dependency {target} is not reachable"));
                std::process::exit(3);
            }
            log(&format!("required dependency {target} is reachable"));
        }
    }

    if let Some(code) = env_u64("JOB_EXIT_CODE") {
        std::thread::sleep(Duration::from_millis(env_u64("JOB_DURATION_MS").unwrap_or(0)));
        log(&format!("job done, exiting with {code}"));
        std::process::exit(code as i32);
    }

    if let Some(ms) = env_u64("CRASH_AFTER_MS") {
        let code = env_u64("CRASH_CODE").unwrap_or(1) as i32;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            log(&format!("crashing with exit code {code}"));
            std::process::exit(code);
        });
    }

    std::thread::sleep(Duration::from_millis(env_u64("READY_DELAY_MS").unwrap_or(0)));
    let port = env_u64("PORT").unwrap_or(8080);
    let listener = match TcpListener::bind(("0.0.0.0", port as u16)) {
        Ok(l) => l,
        Err(e) => {
            log(&format!("cannot listen on {port}: {e}"));
            std::process::exit(2);
        }
    };
    log(&format!("ready: listening on {port} version={version} ready_at_unix_ns={}", now_ns()));
    let health: u16 = env_u64("HEALTH_STATUS").unwrap_or(200) as u16;
    for stream in listener.incoming().flatten() {
        let version = version.clone();
        std::thread::spawn(move || serve(stream, health, &version));
    }
}

fn serve(mut stream: TcpStream, health: u16, version: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 64 * 1024 {
                return;
            }
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let close = head.to_ascii_lowercase().contains("connection: close");
        if std::env::var_os("LOG_REQUESTS").is_some() {
            log(&format!("request {}", head.lines().next().unwrap_or("")));
        }
        let (status, body) = route(path.split('?').next().unwrap_or("/"), health, version);
        let reason = if (200..300).contains(&status) { "OK" } else { "Error" };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-version: {version}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if stream.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn route(path: &str, health: u16, version: &str) -> (u16, String) {
    if path == "/health" {
        return (health, if health < 300 { "ok".into() } else { "unhealthy".into() });
    }
    if path == "/" || path == "/version" {
        return (200, version.to_string());
    }
    if let Some(name) = path.strip_prefix("/env/") {
        return match std::env::var(name) {
            Ok(v) => (200, v),
            Err(_) => (404, format!("{name} is not set")),
        };
    }
    if let Some(rest) = path.strip_prefix("/call/") {
        let mut parts = rest.splitn(3, '/');
        let host = parts.next().unwrap_or("");
        let port = parts.next().unwrap_or("");
        let sub = format!("/{}", parts.next().unwrap_or(""));
        return match http_get(&format!("{host}:{port}"), &sub) {
            Ok((s, b)) => (s, b),
            Err(e) => (502, format!("call to {host}:{port}{sub} failed: {e}")),
        };
    }
    (404, "not found".into())
}

fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(s, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad response")?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}
