//! [`S3Storage`]: an S3-compatible bucket (AWS S3, MinIO, R2, moto) through signed requests on
//! the library's HTTP client. The secret key is a [`Secret`]: it signs requests and is never
//! sent, shown or logged; errors never carry a signed URL.

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode, Url};
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::error::{Error, ErrorKind, Result};
use crate::model::Secret;

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// An object in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A bucket of S3-compatible storage.
pub struct S3Storage {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
    describe: String,
    pending_create: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage").field("bucket", &self.describe).finish_non_exhaustive()
    }
}

/// Options of an [`S3Storage`].
#[must_use = "a builder does nothing until .build() is called"]
pub struct S3StorageBuilder {
    endpoint: String,
    bucket: String,
    region: String,
    access_key: String,
    secret_key: Option<Secret>,
    path_style: bool,
    timeout: Duration,
    create_bucket: bool,
}

impl std::fmt::Debug for S3StorageBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3StorageBuilder")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("secret_key", &self.secret_key)
            .finish_non_exhaustive()
    }
}

impl S3StorageBuilder {
    /// The region (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// The access key and its secret.
    pub fn credentials(mut self, access_key: impl Into<String>, secret_key: Secret) -> Self {
        self.access_key = access_key.into();
        self.secret_key = Some(secret_key);
        self
    }

    /// Addresses the bucket as `endpoint/bucket` (default, what MinIO and moto expect) or, with
    /// `false`, as `bucket.endpoint` (AWS's virtual hosts).
    pub fn path_style(mut self, path: bool) -> Self {
        self.path_style = path;
        self
    }

    /// The deadline of each request (default 60 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Creates the bucket on first use if it does not exist (default `false`).
    pub fn create_bucket(mut self, create: bool) -> Self {
        self.create_bucket = create;
        self
    }

    /// Checks the options and makes the client (no request yet).
    pub fn build(self) -> Result<S3Storage> {
        let invalid = |why: String| {
            Error::Invalid(crate::error::ValidationError::InvalidValue {
                owner: "S3 storage".into(),
                field: "endpoint",
                reason: why,
            })
        };
        let endpoint: Url =
            self.endpoint.parse().map_err(|e| invalid(format!("{:?} is not a URL: {e}", self.endpoint)))?;
        let style = if self.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let describe = format!("s3 {}/{}", endpoint.as_str().trim_end_matches('/'), self.bucket);
        let bucket = Bucket::new(endpoint, style, self.bucket.clone(), self.region)
            .map_err(|e| invalid(format!("cannot address bucket {:?} there: {e}", self.bucket)))?;
        let secret = self.secret_key.ok_or_else(|| invalid("no credentials: call .credentials(key, secret)".into()))?;
        let credentials = Credentials::new(self.access_key, secret.expose().to_string());
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::backend("make the S3 client", describe.clone(), e.without_url()))?;
        let storage = S3Storage { bucket, credentials, http, describe, pending_create: Default::default() };
        if self.create_bucket {
            storage.pending_create.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(storage)
    }
}

impl S3Storage {
    /// Storage at `endpoint` (`https://s3.amazonaws.com`, `http://127.0.0.1:9000`) in `bucket`.
    pub fn builder(endpoint: impl Into<String>, bucket: impl Into<String>) -> S3StorageBuilder {
        S3StorageBuilder {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_key: None,
            path_style: true,
            timeout: Duration::from_secs(60),
            create_bucket: false,
        }
    }

    /// `s3 <endpoint>/<bucket>`, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    async fn send(
        &self,
        what: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        // A PUT always carries a length (S3 answers 411 to one without).
        let body = if method == Method::PUT { Some(body.unwrap_or_default()) } else { body };
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.header(reqwest::header::CONTENT_LENGTH, b.len()).body(b);
        }
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Unreachable };
            Error::backend_kind(what, self.describe.clone(), kind, e.without_url())
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let code = text.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("").to_string();
        let kind = match status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            _ => ErrorKind::Failed,
        };
        Err(Error::backend_kind(what, self.describe.clone(), kind, format!("answered {status} {code}")))
    }

    async fn ensure_bucket(&self) -> Result<()> {
        if !self.pending_create.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let head = self.bucket.head_bucket(Some(&self.credentials)).sign(SIGNED_FOR);
        match self.send("look up the bucket", Method::HEAD, head, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let create = self.bucket.create_bucket(&self.credentials).sign(SIGNED_FOR);
                match self.send("create the bucket", Method::PUT, create, None).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::Conflict => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Stores `bytes` under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.ensure_bucket().await?;
        let url = self.bucket.put_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        self.send("upload", Method::PUT, url, Some(bytes)).await.map(drop)
    }

    /// The object under `key`.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let resp = self.send("download", Method::GET, url, None).await?;
        let bytes =
            resp.bytes().await.map_err(|e| Error::backend("download", self.describe.clone(), e.without_url()))?;
        Ok(bytes.to_vec())
    }

    /// Deletes the object under `key` (a missing one is not an error).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let url = self.bucket.delete_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        match self.send("delete", Method::DELETE, url, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        self.ensure_bucket().await?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let resp = self.send("list", Method::GET, url, None).await?;
            let text = resp.text().await.map_err(|e| Error::backend("list", self.describe.clone(), e.without_url()))?;
            let parsed = ListObjectsV2::parse_response(&text).map_err(|e| {
                Error::backend("list", self.describe.clone(), format!("an answer that is not a listing: {e}"))
            })?;
            out.extend(parsed.contents.into_iter().map(|c| StoredObject { key: c.key, size: c.size }));
            match parsed.next_continuation_token {
                Some(t) if out.len() < 1_000_000 => token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// Seconds since the epoch as the compact UTC time used in keys: `20261123T074500Z`.
pub(crate) fn key_time(t: SystemTime) -> String {
    crate::rfc3339::format(t, false).replace(['-', ':'], "")
}

/// The time in a key written by [`key_time`].
pub(crate) fn parse_key_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc = format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]);
    crate::rfc3339::parse_rfc3339(&rfc)
}
