//! Google Cloud Storage backend of the object driver (`storage.gcs`), on the JSON API with reqwest
//! (object_store's GCS client writes through the XML API, which no emulator accepts): media
//! uploads for whole objects, resumable uploads (chunks of `part_size`, a multiple of 256 KiB, one
//! in flight: the protocol is sequential) for writer sessions, `compose` (at most 32 sources a
//! call, in rounds) to assemble segments server-side, ranged media downloads, listing with prefix
//! and delimiter, V4 signed URLs (`GOOG4-RSA-SHA256`) from a service-account key for redirects.
//!
//! Credentials: the service-account key file `keyfile` (`REGISTRY_STORAGE_GCS_KEYFILE`), else
//! `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key), else the metadata server (GKE/GCE
//! workload identity). `noauth` (ours, for emulators) sends none. Every call is idempotent and
//! retried up to 3 times on connection errors, 429 and 5xx with exponential backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use futures::TryStreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{RequestBuilder, Response, StatusCode};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, OwnedSemaphorePermit};

use super::object::{Listing, ObjMeta, ObjectBackend, PartSink};
use super::{ByteStream, Result, StorageError};
use crate::config::GcsConfig;

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
const DEFAULT_PART: usize = 16 << 20;
const QUANTUM: usize = 256 << 10;
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const METADATA_TOKEN: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

/// Everything but RFC 3986 unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Same, keeping `/` (signed URL paths).
const PATH: &AsciiSet = &COMPONENT.remove(b'/');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A service-account key (the JSON file Google issues).
#[derive(Deserialize, Clone)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub token_uri: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

struct Signer {
    email: String,
    key: SigningKey<Sha256>,
    token_uri: String,
}

impl Signer {
    fn from_key(k: &ServiceAccountKey) -> anyhow::Result<Signer> {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&k.private_key)
            .map_err(|e| anyhow::anyhow!("the service-account key's private_key: {e}"))?;
        Ok(Signer {
            email: k.client_email.clone(),
            key: SigningKey::<Sha256>::new(key),
            token_uri: k
                .token_uri
                .clone()
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
        })
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.key.sign(data).to_vec()
    }
}

enum Auth {
    None,
    ServiceAccount(Arc<Signer>),
    Metadata,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct GcsBackend {
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
    kms: Option<String>,
    part_size: usize,
    auth: Auth,
    signer: Option<Arc<Signer>>,
    token: Mutex<Option<(String, SystemTime)>>,
}

#[derive(Deserialize)]
struct ObjectResource {
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    updated: Option<String>,
}

impl ObjectResource {
    fn meta(&self) -> ObjMeta {
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    #[serde(default)]
    items: Vec<ObjectResource>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

fn backend(msg: String) -> StorageError {
    StorageError::Backend(msg)
}

impl GcsBackend {
    pub fn new(cfg: &GcsConfig) -> anyhow::Result<GcsBackend> {
        let bucket = cfg
            .bucket
            .clone()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "storage.gcs.bucket is not set: set it in the config or REGISTRY_STORAGE_GCS_BUCKET"
                )
            })?;
        let read_key = |path: &str, what: &str| -> anyhow::Result<ServiceAccountKey> {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read the GCS key file {path} ({what}): {e}")
            })?;
            let k: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "the GCS key file {path} ({what}) is not a service-account key: {e}"
                )
            })?;
            if k.kind.as_deref().is_some_and(|t| t != "service_account") {
                anyhow::bail!(
                    "the GCS key file {path} ({what}) is of type {:?}: use a service-account key",
                    k.kind
                );
            }
            Ok(k)
        };
        let key = match cfg.keyfile.as_deref().filter(|k| !k.is_empty()) {
            Some(p) => Some(read_key(p, "storage.gcs.keyfile")?),
            None => match std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
                Ok(p) if !p.is_empty() && !cfg.noauth => {
                    Some(read_key(&p, "GOOGLE_APPLICATION_CREDENTIALS")?)
                }
                _ => None,
            },
        };
        let signer = key
            .as_ref()
            .map(Signer::from_key)
            .transpose()?
            .map(Arc::new);
        let auth = match (&signer, cfg.noauth) {
            (_, true) => Auth::None,
            (Some(s), false) => Auth::ServiceAccount(s.clone()),
            (None, false) => Auth::Metadata,
        };
        let chunk = if cfg.chunksize > 0 {
            usize::try_from(cfg.chunksize).unwrap_or(DEFAULT_PART)
        } else {
            DEFAULT_PART
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(GcsBackend {
            http,
            endpoint: cfg
                .endpoint
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_owned(),
            bucket,
            kms: cfg.keyid.clone().filter(|k| !k.is_empty()),
            part_size: chunk.div_ceil(QUANTUM).max(1) * QUANTUM,
            auth,
            signer,
            token: Mutex::new(None),
        })
    }

    /// Overrides the resumable chunk size (tests), rounded up to 256 KiB.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.div_ceil(QUANTUM).max(1) * QUANTUM;
        self
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            enc(&self.bucket),
            enc(key)
        )
    }

    fn upload_url(&self, key: &str, kind: &str) -> String {
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

    async fn token(&self) -> Result<Option<String>> {
        let fetch_via = match &self.auth {
            Auth::None => return Ok(None),
            Auth::ServiceAccount(s) => Some(s.clone()),
            Auth::Metadata => None,
        };
        let mut cached = self.token.lock().await;
        if let Some((t, exp)) = cached.as_ref() {
            if SystemTime::now() + Duration::from_secs(60) < *exp {
                return Ok(Some(t.clone()));
            }
        }
        let resp = match fetch_via {
            Some(s) => {
                let now = Utc::now().timestamp();
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
                let claims = b64.encode(
                    serde_json::json!({
                        "iss": s.email, "scope": SCOPE, "aud": s.token_uri,
                        "iat": now, "exp": now + 3600,
                    })
                    .to_string(),
                );
                let unsigned = format!("{header}.{claims}");
                let jwt = format!("{unsigned}.{}", b64.encode(s.sign(unsigned.as_bytes())));
                self.http
                    .post(&s.token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!(
                        "grant_type={}&assertion={jwt}",
                        enc("urn:ietf:params:oauth:grant-type:jwt-bearer")
                    ))
                    .send()
                    .await
            }
            None => {
                self.http
                    .get(METADATA_TOKEN)
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
            }
        }
        .map_err(|e| backend(format!("gcs: fetching an access token: {e}")))?;
        if !resp.status().is_success() {
            return Err(backend(format!(
                "gcs: fetching an access token: HTTP {}",
                resp.status()
            )));
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| backend(format!("gcs: bad token response: {e}")))?;
        let exp = SystemTime::now() + Duration::from_secs(t.expires_in.unwrap_or(3600));
        *cached = Some((t.access_token.clone(), exp));
        Ok(Some(t.access_token))
    }

    /// Sends a request (rebuilt for each attempt), retrying transient failures. Returns the
    /// response whatever its status, except 5xx/429 after the last attempt (an error).
    async fn send(
        &self,
        what: &str,
        key: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = build();
            if let Some(t) = self.token().await? {
                req = req.bearer_auth(t);
            }
            let err = match req.send().await {
                Ok(r)
                    if r.status().is_server_error()
                        || r.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("HTTP {}", r.status())
                }
                Ok(r) => return Ok(r),
                Err(e) => e.to_string(),
            };
            if attempt >= 3 {
                return Err(backend(format!("gcs {what} {key}: {err}")));
            }
            tracing::debug!(what, key, error = err, "gcs: retrying");
            tokio::time::sleep(delay).await;
            delay *= 4;
        }
    }

    /// Fails unless the response is a success; 404 is NotFound.
    async fn ok(what: &str, key: &str, r: Response) -> Result<Response> {
        let st = r.status();
        if st.is_success() {
            return Ok(r);
        }
        if st == StatusCode::NOT_FOUND {
            return Err(StorageError::NotFound(key.to_owned()));
        }
        let body = r.text().await.unwrap_or_default();
        Err(backend(format!(
            "gcs {what} {key}: HTTP {st}: {}",
            body.chars().take(300).collect::<String>()
        )))
    }

    async fn list_pages(&self, prefix: &str, delimiter: bool) -> Result<ListResponse> {
        let mut all = ListResponse::default();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?prefix={}&maxResults=1000",
                self.endpoint,
                enc(&self.bucket),
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

    async fn compose_call(&self, to: &str, sources: &[String]) -> Result<()> {
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

    /// A V4 signed GET URL.
    fn signed_url(&self, s: &Signer, key: &str, expires: Duration) -> Result<String> {
        let url =
            url::Url::parse(&self.endpoint).map_err(|e| backend(format!("gcs endpoint: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return Err(backend("gcs endpoint has no host".into())),
        };
        let now = Utc::now();
        let date = now.format("%Y%m%d").to_string();
        let ts = now.format("%Y%m%dT%H%M%SZ").to_string();
        let scope = format!("{date}/auto/storage/goog4_request");
        let canonical_uri = format!(
            "/{}/{}",
            utf8_percent_encode(&self.bucket, COMPONENT),
            utf8_percent_encode(key, PATH)
        );
        let query = format!(
            "X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential={}&X-Goog-Date={ts}&X-Goog-Expires={}&X-Goog-SignedHeaders=host",
            enc(&format!("{}/{scope}", s.email)),
            expires.as_secs().min(604_800)
        );
        let canonical =
            format!("GET\n{canonical_uri}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let to_sign = format!(
            "GOOG4-RSA-SHA256\n{ts}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let sig = hex::encode(s.sign(to_sign.as_bytes()));
        Ok(format!(
            "{}://{host}{canonical_uri}?{query}&X-Goog-Signature={sig}",
            url.scheme()
        ))
    }
}

#[async_trait]
impl ObjectBackend for GcsBackend {
    fn name(&self) -> &'static str {
        "gcs"
    }

    fn part_size(&self) -> usize {
        self.part_size
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let url = self.upload_url(key, "media");
        let r = self
            .send("put", key, || {
                self.http
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        Self::ok("put", key, r).await?;
        Ok(())
    }

    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let range = match len {
            Some(0) => return Ok(Box::pin(futures::stream::empty())),
            Some(n) => Some(format!("bytes={offset}-{}", offset + n - 1)),
            None if offset > 0 => Some(format!("bytes={offset}-")),
            None => None,
        };
        let url = format!("{}?alt=media", self.object_url(key));
        let r = self
            .send("get", key, || {
                let b = self.http.get(&url);
                match &range {
                    Some(r) => b.header("range", r),
                    None => b,
                }
            })
            .await?;
        let r = Self::ok("get", key, r).await?;
        let key = key.to_owned();
        Ok(Box::pin(r.bytes_stream().map_err(move |e| {
            std::io::Error::other(format!("gcs read {key}: {e}"))
        })))
    }

    async fn head(&self, key: &str) -> Result<ObjMeta> {
        let url = self.object_url(key);
        let r = self.send("stat", key, || self.http.get(&url)).await?;
        let o: ObjectResource = Self::ok("stat", key, r)
            .await?
            .json()
            .await
            .map_err(|e| backend(format!("gcs stat {key}: {e}")))?;
        Ok(o.meta())
    }

    async fn list_dir(&self, prefix: &str) -> Result<Listing> {
        let l = self.list_pages(prefix, true).await?;
        Ok(Listing {
            objects: l.items.iter().map(|o| (o.name.clone(), o.meta())).collect(),
            prefixes: l.prefixes,
        })
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        let l = self.list_pages(prefix, false).await?;
        Ok(l.items.into_iter().map(|o| o.name).collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let url = self.object_url(key);
        let r = self.send("delete", key, || self.http.delete(&url)).await?;
        match Self::ok("delete", key, r).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn compose(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        let mut names: Vec<String> = sources.iter().map(|(k, _)| k.clone()).collect();
        let mut temps = Vec::new();
        let mut round = 0;
        let r: Result<()> = async {
            while names.len() > 32 {
                let mut next = Vec::new();
                for (i, group) in names.chunks(32).enumerate() {
                    if let [one] = group {
                        next.push(one.clone());
                        continue;
                    }
                    let t = format!("{to}@compose/{round}-{i:05}");
                    self.compose_call(&t, group).await?;
                    temps.push(t.clone());
                    next.push(t);
                }
                names = next;
                round += 1;
            }
            self.compose_call(to, &names).await
        }
        .await;
        if !temps.is_empty() {
            self.delete_many(temps).await?;
        }
        r
    }

    async fn start_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        let url = self.upload_url(key, "resumable");
        let r = self
            .send("start upload", key, || {
                self.http
                    .post(&url)
                    .header("x-upload-content-type", "application/octet-stream")
                    .json(&serde_json::json!({"contentType": "application/octet-stream"}))
            })
            .await?;
        let r = Self::ok("start upload", key, r).await?;
        let session = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| backend(format!("gcs start upload {key}: no session URL")))?;
        Ok(Box::new(GcsParts {
            http: self.http.clone(),
            key: key.to_owned(),
            session,
            offset: 0,
            backend_token: self.token().await?,
        }))
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        match &self.signer {
            Some(s) => self.signed_url(s, key, expires).map(Some),
            None => Ok(None),
        }
    }

    async fn check(&self) -> Result<()> {
        let url = format!("{}/storage/v1/b/{}", self.endpoint, enc(&self.bucket));
        let r = match self
            .send("bucket", &self.bucket, || self.http.get(&url))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Unreachable store: start anyway (requests answer 503 until it is back).
                tracing::warn!(bucket = self.bucket, error = %e, "gcs: the store did not answer the start-up check");
                return Ok(());
            }
        };
        match r.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(backend(format!(
                "GCS bucket {:?} does not exist: create it or set storage.gcs.bucket \
                 (REGISTRY_STORAGE_GCS_BUCKET)",
                self.bucket
            ))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(backend(format!(
                "access to GCS bucket {:?} denied: check the key file \
                 (REGISTRY_STORAGE_GCS_KEYFILE) or the workload identity",
                self.bucket
            ))),
            s => Err(backend(format!("GCS bucket {:?}: HTTP {s}", self.bucket))),
        }
    }
}

/// One resumable upload session. Chunks go out one at a time (the protocol is sequential).
struct GcsParts {
    http: reqwest::Client,
    key: String,
    session: String,
    offset: u64,
    backend_token: Option<String>,
}

impl GcsParts {
    async fn put_chunk(&mut self, data: Bytes, total: Option<u64>) -> Result<()> {
        let n = data.len() as u64;
        let range = match (n, total) {
            (0, Some(t)) => format!("bytes */{t}"),
            (_, Some(t)) => format!("bytes {}-{}/{t}", self.offset, self.offset + n - 1),
            (_, None) => format!("bytes {}-{}/*", self.offset, self.offset + n - 1),
        };
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .put(&self.session)
                .header("content-range", &range)
                .body(data.clone());
            if let Some(t) = &self.backend_token {
                req = req.bearer_auth(t);
            }
            let err = match req.send().await {
                Ok(r) if r.status().as_u16() == 308 || r.status().is_success() => {
                    self.offset += n;
                    return Ok(());
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    format!("HTTP {}", r.status())
                }
                Ok(r) => {
                    let st = r.status();
                    let body = r.text().await.unwrap_or_default();
                    return Err(backend(format!(
                        "gcs upload {}: HTTP {st}: {}",
                        self.key,
                        body.chars().take(300).collect::<String>()
                    )));
                }
                Err(e) => e.to_string(),
            };
            if attempt >= 3 {
                return Err(backend(format!("gcs upload {}: {err}", self.key)));
            }
            tokio::time::sleep(delay).await;
            delay *= 4;
        }
    }
}

#[async_trait]
impl PartSink for GcsParts {
    async fn put_part(&mut self, data: Bytes, permit: OwnedSemaphorePermit) -> Result<()> {
        let r = self.put_chunk(data, None).await;
        drop(permit);
        r
    }

    async fn finish(mut self: Box<Self>, last: Bytes) -> Result<()> {
        let total = self.offset + last.len() as u64;
        self.put_chunk(last, Some(total)).await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let mut req = self.http.delete(&self.session);
        if let Some(t) = &self.backend_token {
            req = req.bearer_auth(t);
        }
        let _ = req.send().await;
        Ok(())
    }
}
