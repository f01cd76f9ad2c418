//! The HTTP client of the Machines API: the token on every call (marked sensitive, never logged),
//! a deadline on every call, and retries with backoff for what is transient (429 with its
//! `Retry-After`, 5xx answers, connections refused or cut), each said as a
//! [`TargetRetried`](crate::EventKind::TargetRetried) event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, DATE, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{emit_current, EventKind};
use crate::model::Secret;

/// The longest pause between retries, whatever `Retry-After` asks for.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// An answer: its status, body (JSON when it has one) and the server's clock.
pub(super) struct Answer {
    pub status: u16,
    pub body: Value,
    pub date: Option<SystemTime>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The API's error text (`{"error": …}`), or the raw body.
    pub fn message(&self) -> String {
        match self.body.get("error").and_then(Value::as_str) {
            Some(e) => e.to_string(),
            None if self.body.is_null() => String::new(),
            None => self.body.to_string(),
        }
    }
}

pub(super) struct Api {
    http: reqwest::Client,
    pub machines_url: String,
    pub logs_url: String,
    token: Secret,
    pub call_timeout: Duration,
    pub max_retries: u32,
    calls: AtomicU64,
    retries: AtomicU64,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("machines_url", &self.machines_url)
            .field("logs_url", &self.logs_url)
            .field("token", &self.token)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

fn pause_for(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = Duration::from_millis(250u64.saturating_mul(1u64 << attempt.min(6)));
    retry_after.unwrap_or(backoff).min(MAX_PAUSE)
}

impl Api {
    pub fn new(
        machines_url: String,
        logs_url: String,
        token: Secret,
        call_timeout: Duration,
        max_retries: u32,
    ) -> Result<Api> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("harbormaster/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::backend_kind("build the HTTP client", &machines_url, ErrorKind::Other, e))?;
        Ok(Api {
            http,
            machines_url: machines_url.trim_end_matches('/').to_string(),
            logs_url: logs_url.trim_end_matches('/').to_string(),
            token,
            call_timeout,
            max_retries,
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Sends a request to the Machines API (`path` under the base URL), retrying what is
    /// transient, each attempt bounded by `timeout` (default: the call timeout). Any status comes
    /// back as an [`Answer`]; only a failure to get one is an error.
    pub async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        nonce: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Answer> {
        let url = format!("{}{path}", self.machines_url);
        self.send_url(operation, method, &url, body, nonce, timeout).await
    }

    /// Like [`send`](Self::send), to a full URL (the log API).
    pub async fn send_url(
        &self,
        operation: &'static str,
        method: Method,
        url: &str,
        body: Option<&Value>,
        nonce: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Answer> {
        let call = format!("{method} {}", url.split('?').next().unwrap_or(url));
        let timeout = timeout.unwrap_or(self.call_timeout);
        let mut attempt: u32 = 0;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token.expose())).map_err(|_| {
                Error::backend_kind(operation, url, ErrorKind::Invalid, "the API token is not a valid header value")
            })?;
            auth.set_sensitive(true);
            let mut req = self.http.request(method.clone(), url).header(AUTHORIZATION, auth).timeout(timeout);
            if let Some(n) = nonce {
                req = req.header("fly-machine-lease-nonce", n);
            }
            if let Some(b) = body {
                let bytes = serde_json::to_vec(b).map_err(|e| Error::backend(operation, url, e))?;
                req = req.header(CONTENT_TYPE, "application/json").body(bytes);
            }
            let (transient, reason, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let date = resp
                        .headers()
                        .get(DATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| httpdate::parse_http_date(v).ok());
                    let text = match tokio::time::timeout(timeout, resp.bytes()).await {
                        Ok(Ok(b)) => b,
                        Ok(Err(e)) => return Err(self.failed(operation, url, ErrorKind::Unreachable, &e.to_string())),
                        Err(_) => {
                            return Err(self.failed(
                                operation,
                                url,
                                ErrorKind::Timeout,
                                "the answer's body did not arrive in time",
                            ))
                        }
                    };
                    let body: Value = if text.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&text)
                            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into_owned()))
                    };
                    let answer = Answer { status, body, date };
                    if status == 429 || (500..600).contains(&status) {
                        let reason = format!("{status}: {}", answer.message());
                        (answer, reason, retry_after)
                    } else {
                        return Ok(answer);
                    }
                }
                Err(e) => {
                    // A connection refused or cut is retried; a request that timed out is not
                    // (it may have been carried out).
                    let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unreachable };
                    let reason = crate::scrub::text(&e.to_string()).into_owned();
                    // A refused connection is retried twice at most: an API that is not there
                    // is said within two seconds, not after a minute of backoff.
                    if e.is_timeout() || !(e.is_connect() || e.is_request()) || attempt >= self.max_retries.min(2) {
                        return Err(self.failed(operation, url, kind, &format!("no answer: {reason}")));
                    }
                    (Answer { status: 0, body: Value::Null, date: None }, reason, None)
                }
            };
            if attempt >= self.max_retries {
                return Ok(transient);
            }
            attempt += 1;
            let after = pause_for(attempt, retry_after);
            self.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call = %call, %reason, attempt, ?after, "the Fly API answered a transient failure; retrying");
            emit_current(EventKind::TargetRetried { call: call.clone(), reason, attempt, after });
            tokio::time::sleep(after).await;
        }
    }

    fn failed(&self, operation: &'static str, url: &str, kind: ErrorKind, message: &str) -> Error {
        let target = url.split('?').next().unwrap_or(url).to_string();
        Error::backend_kind(operation, target, kind, message)
    }

    /// An error for an answer that is not what the call needed.
    pub fn error(&self, operation: &'static str, target: &str, answer: &Answer) -> Error {
        let kind = match answer.status {
            412 => ErrorKind::Conflict,
            429 => ErrorKind::Unreachable,
            s => ErrorKind::from_status(s),
        };
        let hint = match answer.status {
            401 | 403 => " (check the API token: `fly tokens create deploy`)",
            429 => " (rate limited; retried until the retries ran out)",
            s if s >= 500 => " (the API failed; retried until the retries ran out)",
            _ => "",
        };
        Error::backend_kind(operation, target, kind, format!("HTTP {}: {}{hint}", answer.status, answer.message()))
    }

    /// Sends, and fails unless the answer is a success.
    pub async fn expect(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        nonce: Option<&str>,
    ) -> Result<Answer> {
        let answer = self.send(operation, method, path, body, nonce, None).await?;
        if answer.ok() {
            Ok(answer)
        } else {
            Err(self.error(operation, path, &answer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_are_capped() {
        assert_eq!(pause_for(1, None), Duration::from_millis(500));
        assert_eq!(pause_for(2, None), Duration::from_millis(1000));
        assert!(pause_for(30, None) <= MAX_PAUSE);
        assert_eq!(pause_for(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(pause_for(1, Some(Duration::from_secs(3600))), MAX_PAUSE);
    }
}
