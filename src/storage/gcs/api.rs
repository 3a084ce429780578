//! The GCS JSON API client: object and upload URLs, one request with its bearer token and
//! retries, status checks, paged listings and `compose` calls.
//!
//! Depends on `auth.rs` (tokens), reqwest and backon. Contract: [`Api::send`] retries connection
//! errors, 429 and 5xx ([`schedule`]: 3 attempts, 200 ms then 800 ms apart) and returns any other
//! response as it came; [`Api::ok`] turns a 404 into `NotFound` and any other failure into
//! `Backend` with the start of the body. Every call made through it is idempotent.
//!
//! The JSON API stays ours: object_store's GCS client writes through the XML API, which
//! fake-gcs-server (the emulator the suite runs on) does not accept.

use std::time::{Duration, SystemTime};

use backon::Retryable as _;
use chrono::Utc;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use super::auth::Tokens;
use crate::storage::object::ObjMeta;
use crate::storage::{Result, StorageError};

/// Everything but RFC 3986 unreserved characters.
pub(super) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Same, keeping `/` (signed URL paths).
pub(super) const PATH: &AsciiSet = &COMPONENT.remove(b'/');

/// Percent-encodes a URL component.
pub(super) fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

pub(super) fn backend(msg: String) -> StorageError {
    StorageError::Backend(msg)
}

/// The pauses before the second and the third (last) attempt of every GCS request: exponential
/// backoff by 4 from 200 ms, spelt out.
const PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// The retry schedule of every GCS request: 3 attempts, [`PAUSES`] apart, no jitter.
pub(super) fn schedule() -> std::array::IntoIter<Duration, 2> {
    PAUSES.into_iter()
}

/// Statuses worth another attempt.
pub(super) fn transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Why one attempt failed: worth another one (connection error, 429, 5xx), or final.
pub(super) enum Failure {
    Transient(String),
    Final(StorageError),
}

impl Failure {
    pub fn is_transient(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }

    /// The error once attempts are over: `gcs <what> <key>: <last transient failure>`.
    pub fn into_error(self, what: &str, key: &str) -> StorageError {
        match self {
            Failure::Transient(err) => backend(format!("gcs {what} {key}: {err}")),
            Failure::Final(e) => e,
        }
    }
}

/// An object's metadata as the JSON API gives it.
#[derive(Deserialize)]
pub(super) struct ObjectResource {
    pub name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    updated: Option<String>,
}

impl ObjectResource {
    pub fn meta(&self) -> ObjMeta {
        ObjMeta {
            size: self
                .size
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            modified: self
                .updated
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| SystemTime::from(t.with_timezone(&Utc))),
        }
    }
}

/// A listing (every page of it, once [`Api::list_pages`] collected them).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListResponse {
    #[serde(default)]
    pub items: Vec<ObjectResource>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The client of one bucket.
pub(super) struct Api {
    pub http: reqwest::Client,
    /// Without a trailing `/`.
    pub endpoint: String,
    pub bucket: String,
    /// CMEK key name for new objects (`storage.gcs.keyID`).
    pub kms: Option<String>,
    pub tokens: Tokens,
}

impl Api {
    pub fn bucket_url(&self) -> String {
        format!("{}/storage/v1/b/{}", self.endpoint, enc(&self.bucket))
    }

    pub fn object_url(&self, key: &str) -> String {
        format!("{}/o/{}", self.bucket_url(), enc(key))
    }

    /// The upload endpoint (`kind`: `media` or `resumable`) for a new object `key`.
    pub fn upload_url(&self, key: &str, kind: &str) -> String {
        let mut u = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={kind}&name={}",
            self.endpoint,
            enc(&self.bucket),
            enc(key)
        );
        if let Some(k) = &self.kms {
            u.push_str(&format!("&kmsKeyName={}", enc(k)));
        }
        u
    }

    pub async fn token(&self) -> Result<Option<String>> {
        self.tokens.token(&self.http).await
    }

    /// Sends a request (rebuilt for each attempt) with a fresh token, retrying transient
    /// failures on [`schedule`]. Returns the response whatever its status, except 5xx/429 after
    /// the last attempt (an error). A failed token request is not retried.
    pub async fn send(
        &self,
        what: &str,
        key: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let attempt = || async {
            let mut req = build();
            if let Some(t) = self.token().await.map_err(Failure::Final)? {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if transient(r.status()) => {
                    Err(Failure::Transient(format!("HTTP {}", r.status())))
                }
                Ok(r) => Ok(r),
                Err(e) => Err(Failure::Transient(e.to_string())),
            }
        };
        attempt
            .retry(schedule())
            .when(Failure::is_transient)
            .notify(|f, _| {
                if let Failure::Transient(err) = f {
                    tracing::debug!(what, key, error = err.as_str(), "gcs: retrying");
                }
            })
            .await
            .map_err(|f| f.into_error(what, key))
    }

    /// Fails unless the response is a success; 404 is NotFound.
    pub async fn ok(what: &str, key: &str, r: Response) -> Result<Response> {
        let st = r.status();
        if st.is_success() {
            return Ok(r);
        }
        if st == StatusCode::NOT_FOUND {
            return Err(StorageError::NotFound(key.to_owned()));
        }
        Err(backend(format!(
            "gcs {what} {key}: HTTP {st}: {}",
            body_start(r).await
        )))
    }

    /// Every page of a listing under `prefix` (with `delimiter`, one level only).
    pub async fn list_pages(&self, prefix: &str, delimiter: bool) -> Result<ListResponse> {
        let mut all = ListResponse::default();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/o?prefix={}&maxResults=1000",
                self.bucket_url(),
                enc(prefix)
            );
            if delimiter {
                url.push_str("&delimiter=%2F");
            }
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", enc(t)));
            }
            let r = self.send("list", prefix, || self.http.get(&url)).await?;
            let page: ListResponse = Self::ok("list", prefix, r)
                .await?
                .json()
                .await
                .map_err(|e| backend(format!("gcs list {prefix}: {e}")))?;
            all.items.extend(page.items);
            all.prefixes.extend(page.prefixes);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// One `compose` call: `to` becomes the concatenation of `sources` (at most 32).
    pub async fn compose_call(&self, to: &str, sources: &[String]) -> Result<()> {
        let mut url = format!("{}/compose", self.object_url(to));
        if let Some(k) = &self.kms {
            url.push_str(&format!("?kmsKeyName={}", enc(k)));
        }
        let body = serde_json::json!({
            "sourceObjects": sources.iter().map(|s| serde_json::json!({"name": s})).collect::<Vec<_>>(),
            "destination": {"contentType": "application/octet-stream"},
        });
        let r = self
            .send("compose", to, || self.http.post(&url).json(&body))
            .await?;
        Self::ok("compose", to, r).await?;
        Ok(())
    }
}

/// The first 300 characters of an error response's body, for the message.
pub(super) async fn body_start(r: Response) -> String {
    let body = r.text().await.unwrap_or_default();
    body.chars().take(300).collect()
}
