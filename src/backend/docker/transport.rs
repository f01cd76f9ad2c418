//! A second, silent HTTP path to the engine, for the calls whose bodies carry secret values: creating
//! a container (its environment is in the request), inspecting one (its environment is in the
//! answer), and writing or reading a file in one (a secret file's value is in the archive).
//!
//! bollard logs every JSON request body and every decoded answer through the `log` facade at
//! `debug` and `trace` level. `tracing` can be silenced around a call (see `quiet` in `mod.rs`),
//! but a plain `log` logger (env_logger, a service's own) sees everything bollard logs, so these
//! two calls never go through bollard: they are made here, with hyper, which logs nothing of
//! requests or answers.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerCreateResponse, ContainerInspectResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};

/// How the engine is reached.
#[derive(Clone, Debug)]
enum Connection {
    Unix { socket: String, client: Client<hyperlocal::UnixConnector, Full<Bytes>> },
    Tcp { base: String, client: Client<HttpConnector, Full<Bytes>> },
}

/// The silent path to one engine.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    connection: Connection,
    /// `1.41`: the API version negotiated with the engine.
    version: String,
    timeout: Duration,
}

/// An answer: status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Transport {
    /// For the engine at `endpoint` (`unix:///path`, `tcp://host:port`, `http://host:port`).
    pub(crate) fn new(endpoint: &str, version: String, timeout: Duration) -> Option<Transport> {
        let connection = if let Some(path) = endpoint.strip_prefix("unix://") {
            let client = Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
            Connection::Unix { socket: path.to_string(), client }
        } else {
            let rest = endpoint.strip_prefix("tcp://").or_else(|| endpoint.strip_prefix("http://"))?;
            let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
            Connection::Tcp { base: format!("http://{}", rest.trim_end_matches('/')), client }
        };
        Some(Transport { connection, version, timeout })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        what: (&'static str, &str),
    ) -> Result<Answer> {
        self.send_typed(method, path, body.map(|b| (b, "application/json")), what).await
    }

    async fn send_typed(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        what: (&'static str, &str),
    ) -> Result<Answer> {
        let (operation, target) = what;
        let path = format!("/v{}{path}", self.version);
        let fail = |m: String| Error::backend(operation, target, m);
        let builder = Request::builder().method(method).header("Host", "docker");
        let (body, builder) = match body {
            Some((b, kind)) => (Some(b), builder.header("Content-Type", kind)),
            None => (None, builder),
        };
        let body = Full::new(Bytes::from(body.unwrap_or_default()));
        let call = async {
            let response = match &self.connection {
                Connection::Unix { socket, client } => {
                    let uri: hyper::Uri = hyperlocal::Uri::new(socket, &path).into();
                    let req = builder.uri(uri).body(body).map_err(|e| fail(e.to_string()))?;
                    client.request(req).await
                }
                Connection::Tcp { base, client } => {
                    let req = builder.uri(format!("{base}{path}")).body(body).map_err(|e| fail(e.to_string()))?;
                    client.request(req).await
                }
            }
            .map_err(|e| fail(format!("cannot reach the engine: {e}")))?;
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|e| fail(e.to_string()))?.to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| fail(format!("no answer from the engine within {}", crate::duration::human(self.timeout))))?
    }

    /// Creates a container; its ID. `mac_address` goes where API 1.41 takes it (`Config.MacAddress`,
    /// which the models of later APIs no longer have).
    pub(crate) async fn create_container(
        &self,
        name: &str,
        body: &ContainerCreateBody,
        mac_address: Option<&str>,
    ) -> Result<String> {
        let what = ("create container", name);
        // Plain data with string keys always serializes.
        let mut value = serde_json::to_value(body).map_err(|e| Error::backend(what.0, name, e.to_string()))?;
        if let (Some(mac), Some(map)) = (mac_address, value.as_object_mut()) {
            map.insert("MacAddress".into(), serde_json::Value::String(mac.to_string()));
        }
        let json = serde_json::to_vec(&value).map_err(|e| Error::backend(what.0, name, e.to_string()))?;
        let answer = self.send(Method::POST, &format!("/containers/create?name={name}"), Some(json), what).await?;
        if !answer.status.is_success() {
            return Err(Error::backend(what.0, name, refusal(&answer)));
        }
        let created: ContainerCreateResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::backend(what.0, name, format!("unreadable answer: {e}")))?;
        Ok(created.id)
    }

    /// Creates a swarm secret (its value is in the request); its ID, or `None` if one of that name
    /// exists already.
    pub(crate) async fn create_secret(&self, spec: &bollard::models::SecretSpec) -> Result<Option<String>> {
        let name = spec.name.clone().unwrap_or_default();
        let what = ("create secret", name.as_str());
        let json = serde_json::to_vec(spec).map_err(|e| Error::backend(what.0, &name, e.to_string()))?;
        let answer = self.send(Method::POST, "/secrets/create", Some(json), what).await?;
        if answer.status == StatusCode::CONFLICT {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(Error::backend(what.0, &name, refusal(&answer)));
        }
        let created: bollard::models::IdResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::backend(what.0, &name, format!("unreadable answer: {e}")))?;
        Ok(Some(created.id))
    }

    /// Inspects a container; `Ok(None)` if there is no such container.
    pub(crate) async fn inspect_container(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        let what = ("inspect container", id);
        let answer = self.send(Method::GET, &format!("/containers/{id}/json"), None, what).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(Error::backend(what.0, id, refusal(&answer)));
        }
        serde_json::from_slice(&answer.body)
            .map(Some)
            .map_err(|e| Error::backend(what.0, id, format!("unreadable answer: {e}")))
    }
}

impl Transport {
    /// Unpacks a tar `archive` into the directory `dir` of container `id`.
    pub(crate) async fn put_archive(&self, id: &str, dir: &str, archive: Vec<u8>, what: &str) -> Result<()> {
        let path = format!("/containers/{id}/archive?path={}", query_escape(dir));
        let answer =
            self.send_typed(Method::PUT, &path, Some((archive, "application/x-tar")), ("write file", what)).await?;
        if !answer.status.is_success() {
            let kind = crate::error::ErrorKind::from_status(answer.status.as_u16());
            return Err(Error::backend_kind("write file", what, kind, refusal(&answer)));
        }
        Ok(())
    }

    /// The tar archive of `path` in container `id`; `None` if the path or the container does
    /// not exist.
    pub(crate) async fn get_archive(&self, id: &str, path: &str, what: &str) -> Result<Option<Vec<u8>>> {
        let uri = format!("/containers/{id}/archive?path={}", query_escape(path));
        let answer = self.send_typed(Method::GET, &uri, None, ("read file", what)).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            let kind = crate::error::ErrorKind::from_status(answer.status.as_u16());
            return Err(Error::backend_kind("read file", what, kind, refusal(&answer)));
        }
        Ok(Some(answer.body.to_vec()))
    }
}

/// `text` as a query value: unreserved characters and `/` as they are, every other byte
/// percent-encoded.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the engine said when it refused, as the rest of the backend words it.
fn refusal(answer: &Answer) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    let message = serde_json::from_slice::<Message>(&answer.body)
        .map(|m| m.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body).trim().to_string());
    crate::scrub::text(&format!("engine answered {}: {message}", answer.status.as_u16())).into_owned()
}
