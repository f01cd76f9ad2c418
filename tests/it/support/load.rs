//! Continuous, bounded HTTP load from the test itself (loopback only), counting every answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the load saw.
#[derive(Debug, Default)]
#[allow(dead_code)]
pub struct Tally {
    /// Answers with status 200, by body.
    pub by_body: BTreeMap<String, u64>,
    /// Every request that did not get a 200: the status and body, or the transport error.
    pub failed: Vec<String>,
    /// GETs whose connection closed before any answer and that were sent again once, as browsers,
    /// curl and Go's net/http do for idempotent requests (a Caddy configuration load can close one).
    pub retried: u64,
}

impl Tally {
    pub fn ok(&self) -> u64 {
        self.by_body.values().sum()
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.by_body {
            *self.by_body.entry(k).or_default() += v;
        }
        self.failed.extend(other.failed);
        self.retried += other.retried;
    }
}

/// A running load: `workers` loops, one request at a time with a short pause between requests, a new
/// connection per request (see the README's note on keep-alive connections across ingress reloads).
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    pub fn start(url: &str, workers: usize) -> Load {
        Load::start_with(url, workers, false)
    }

    /// Like [`start`](Self::start); with `keep_alive`, each worker reuses its connections.
    pub fn start_with(url: &str, workers: usize, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|_| {
                let stop = stop.clone();
                let url = url.to_string();
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .pool_max_idle_per_host(if keep_alive { 8 } else { 0 })
                        .build()
                        .unwrap();
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let mut sent = client.get(&url).send().await;
                        if matches!(&sent, Err(e) if e.is_request() && !e.is_timeout()) {
                            tally.retried += 1;
                            sent = client.get(&url).send().await;
                        }
                        match sent {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let body = r.text().await.unwrap_or_default();
                                if status == 200 {
                                    *tally.by_body.entry(body.trim().to_string()).or_default() += 1;
                                } else {
                                    tally.failed.push(format!("{status}: {}", body.trim()));
                                }
                            }
                            Err(e) => tally.failed.push(format!("transport: {e:?}")),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    tally
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Keep-alive workers that never retry: each holds one raw HTTP/1.1 connection to `host:port`
    /// and sends `GET /version` on it again and again; a closed connection is a failure (then a new
    /// connection is opened). An answer with `Connection: close` ends the connection after it, as
    /// HTTP/1.1 asks of every client.
    pub fn start_raw(host: &str, port: u16, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|_| {
                let stop = stop.clone();
                let host = host.to_string();
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut conn = None;
                    while !stop.load(Ordering::Relaxed) {
                        if conn.is_none() {
                            conn = tokio::net::TcpStream::connect((host.as_str(), port)).await.ok();
                        }
                        let answer = match conn.as_mut() {
                            Some(c) => get_on_keep(c).await,
                            None => None,
                        };
                        match answer {
                            Some((body, keep)) => {
                                *tally.by_body.entry(body.trim().to_string()).or_default() += 1;
                                if !keep {
                                    conn = None;
                                }
                            }
                            None => {
                                tally.failed.push("keep-alive connection closed or refused".into());
                                conn = None;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    tally
                })
            })
            .collect();
        Load { stop, workers }
    }

    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for w in self.workers {
            total.merge(w.await.unwrap());
        }
        total
    }
}

/// `n` sequential GETs on a fresh client; answers by body (non-200 answers count as `status N`).
pub async fn sample(url: &str, n: usize) -> BTreeMap<String, u64> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let key = match client.get(url).send().await {
            Ok(r) if r.status().as_u16() == 200 => r.text().await.unwrap_or_default().trim().to_string(),
            Ok(r) => format!("status {}", r.status().as_u16()),
            Err(e) => format!("error {e}"),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// One `GET /version` on an open keep-alive connection; the body, or `None` if the connection closed.
pub async fn get_on(conn: &mut tokio::net::TcpStream) -> Option<String> {
    get_on_keep(conn).await.map(|(body, _)| body)
}

/// One `GET /version` on an open keep-alive connection: the body, and whether the server keeps the
/// connection open (it did not answer `Connection: close`); `None` if the connection closed.
pub async fn get_on_keep(conn: &mut tokio::net::TcpStream) -> Option<(String, bool)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n").await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse().ok())?;
            if body.len() >= len {
                let close = head.lines().any(|l| l.eq_ignore_ascii_case("connection: close"));
                return Some((body[..len].to_string(), !close));
            }
        }
    }
}
