//! Google Cloud Storage backend of the object driver (`storage.gcs`), on the JSON API with reqwest
//! (object_store's GCS client writes through the XML API, which no emulator accepts): media
//! uploads for whole objects, resumable uploads (chunks of `part_size`, a multiple of 256 KiB, one
//! in flight: the protocol is sequential) for writer sessions, `compose` (at most 32 sources a
//! call, in rounds) to assemble segments server-side, ranged media downloads, listing with prefix
//! and delimiter, V4 signed URLs (`GOOG4-RSA-SHA256`) from a service-account key for redirects.
//!
//! A resumable session is named in storage while it runs (`<segment>.session`, its URL), so that
//! upload purging can cancel the session of a writer that died (GCS has no call that lists
//! sessions; unnamed ones expire after a week).
//!
//! Credentials: the service-account key file `keyfile` (`REGISTRY_STORAGE_GCS_KEYFILE`), else
//! `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key), else the metadata server (GKE/GCE
//! workload identity). `noauth` (ours, for emulators) sends none. Every call is idempotent and
//! retried up to 3 times on connection errors, 429 and 5xx with exponential backoff.
//!
//! Files: `auth.rs` (keys and access tokens), `sign.rs` (signed URLs), `api.rs` (the JSON API
//! client: URLs, retries, listing, compose), `upload.rs` (resumable sessions), and here the
//! [`ObjectBackend`] over them. Among storage files the backend depends only on `object.rs`'s
//! trait and types.

mod api;
mod auth;
mod sign;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::StatusCode;

use self::api::{backend, Api, ObjectResource};
use self::auth::{Auth, ServiceAccount, Tokens};
use self::upload::GcsParts;
use super::object::{Listing, ObjMeta, ObjectBackend, PartSink, SESSION_SUFFIX};
use super::{ByteStream, Result};
use crate::config::GcsConfig;

pub use self::auth::ServiceAccountKey;

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
const DEFAULT_PART: usize = 16 << 20;
/// Resumable chunks are multiples of this.
const QUANTUM: usize = 256 << 10;
/// Most sources one `compose` call takes.
const COMPOSE_MAX: usize = 32;

pub struct GcsBackend {
    api: Api,
    part_size: usize,
    /// Signs redirect URLs (only with a service-account key).
    signer: Option<Arc<ServiceAccount>>,
}

/// `bytes` rounded up to whole resumable chunks.
fn whole_chunks(bytes: usize) -> usize {
    bytes.div_ceil(QUANTUM).max(1) * QUANTUM
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
        let signer = auth::configured_account(cfg)?;
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
        let http = crate::net::outbound::http_client_builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        let endpoint = cfg
            .endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
            .trim_end_matches('/')
            .to_owned();
        Ok(GcsBackend {
            api: Api {
                http,
                endpoint,
                bucket,
                kms: cfg.keyid.clone().filter(|k| !k.is_empty()),
                tokens: Tokens::new(auth),
            },
            part_size: whole_chunks(chunk),
            signer,
        })
    }

    /// Overrides the resumable chunk size (tests), rounded up to 256 KiB.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = whole_chunks(bytes);
        self
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
        let url = self.api.upload_url(key, "media");
        let r = self
            .api
            .send("put", key, || {
                self.api
                    .http
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        Api::ok("put", key, r).await?;
        Ok(())
    }

    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let range = match len {
            Some(0) => return Ok(Box::pin(futures::stream::empty())),
            Some(n) => Some(format!("bytes={offset}-{}", offset + n - 1)),
            None if offset > 0 => Some(format!("bytes={offset}-")),
            None => None,
        };
        let url = format!("{}?alt=media", self.api.object_url(key));
        let r = self
            .api
            .send("get", key, || {
                let b = self.api.http.get(&url);
                match &range {
                    Some(r) => b.header("range", r),
                    None => b,
                }
            })
            .await?;
        let r = Api::ok("get", key, r).await?;
        let key = key.to_owned();
        Ok(Box::pin(r.bytes_stream().map_err(move |e| {
            std::io::Error::other(format!("gcs read {key}: {e}"))
        })))
    }

    async fn head(&self, key: &str) -> Result<ObjMeta> {
        let url = self.api.object_url(key);
        let r = self
            .api
            .send("stat", key, || self.api.http.get(&url))
            .await?;
        let o: ObjectResource = Api::ok("stat", key, r)
            .await?
            .json()
            .await
            .map_err(|e| backend(format!("gcs stat {key}: {e}")))?;
        Ok(o.meta())
    }

    async fn list_dir(&self, prefix: &str) -> Result<Listing> {
        let l = self.api.list_pages(prefix, true).await?;
        Ok(Listing {
            objects: l.items.iter().map(|o| (o.name.clone(), o.meta())).collect(),
            prefixes: l.prefixes,
        })
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<(String, ObjMeta)>> {
        let l = self.api.list_pages(prefix, false).await?;
        Ok(l.items
            .into_iter()
            .map(|o| {
                let m = o.meta();
                (o.name, m)
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let url = self.api.object_url(key);
        let r = self
            .api
            .send("delete", key, || self.api.http.delete(&url))
            .await?;
        match Api::ok("delete", key, r).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Composes in rounds of at most 32 sources into temporary objects (`<to>@compose/...`),
    /// deleted afterwards whether or not the last round succeeded.
    async fn compose(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        let mut names: Vec<String> = sources.iter().map(|(k, _)| k.clone()).collect();
        let mut temps = Vec::new();
        let mut round = 0;
        let r: Result<()> = async {
            while names.len() > COMPOSE_MAX {
                let mut next = Vec::new();
                for (i, group) in names.chunks(COMPOSE_MAX).enumerate() {
                    if let [one] = group {
                        next.push(one.clone());
                        continue;
                    }
                    let t = format!("{to}@compose/{round}-{i:05}");
                    self.api.compose_call(&t, group).await?;
                    temps.push(t.clone());
                    next.push(t);
                }
                names = next;
                round += 1;
            }
            self.api.compose_call(to, &names).await
        }
        .await;
        if !temps.is_empty() {
            self.delete_many(temps).await?;
        }
        r
    }

    async fn start_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        let url = self.api.upload_url(key, "resumable");
        let r = self
            .api
            .send("start upload", key, || {
                self.api
                    .http
                    .post(&url)
                    .header("x-upload-content-type", "application/octet-stream")
                    .json(&serde_json::json!({"contentType": "application/octet-stream"}))
            })
            .await?;
        let r = Api::ok("start upload", key, r).await?;
        let session = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| backend(format!("gcs start upload {key}: no session URL")))?;
        // Name the session in storage so that upload purging can end it if this writer dies.
        let marker = format!("{key}{SESSION_SUFFIX}");
        self.put(&marker, Bytes::from(session.clone())).await?;
        Ok(Box::new(GcsParts {
            http: self.api.http.clone(),
            key: key.to_owned(),
            session,
            offset: 0,
            token: self.api.token().await?,
            marker_url: self.api.object_url(&marker),
        }))
    }

    /// Cancels the resumable session each `<segment>.session` marker names (`DELETE` on the
    /// session URL: 499 means cancelled; 404/410 that it had ended or expired), then deletes the
    /// marker. Counts the sessions cancelled. A marker naming a URL outside this endpoint's
    /// upload API is deleted, never called (storage content is not trusted with our token).
    async fn abort_segment_writes(
        &self,
        _prefix: &str,
        listed: &[String],
        _open: &[String],
    ) -> Result<u64> {
        let upload_api = format!("{}/upload/storage/v1/b/", self.api.endpoint);
        let mut cancelled = 0;
        for marker in listed.iter().filter(|k| k.ends_with(SESSION_SUFFIX)) {
            let url = match self.get(marker, 0, None).await {
                Ok(s) => {
                    let chunks: Vec<Bytes> = s
                        .try_collect()
                        .await
                        .map_err(|e| backend(format!("gcs read {marker}: {e}")))?;
                    String::from_utf8_lossy(&chunks.concat()).trim().to_owned()
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            if url.starts_with(&upload_api) {
                let r = self
                    .api
                    .send("cancel upload", marker, || self.api.http.delete(&url))
                    .await?;
                match r.status().as_u16() {
                    499 => cancelled += 1,
                    404 | 410 => {}
                    st => {
                        return Err(backend(format!(
                            "gcs cancel upload {marker}: HTTP {st}: {}",
                            api::body_start(r).await
                        )))
                    }
                }
            } else {
                tracing::warn!(
                    marker,
                    "gcs: a session marker names a foreign URL; not called"
                );
            }
            self.delete(marker).await?;
        }
        Ok(cancelled)
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        match &self.signer {
            Some(s) => sign::signed_get_url(s, &self.api.endpoint, &self.api.bucket, key, expires)
                .map(Some),
            None => Ok(None),
        }
    }

    async fn check(&self) -> Result<()> {
        let bucket = &self.api.bucket;
        let url = self.api.bucket_url();
        let r = match self
            .api
            .send("bucket", bucket, || self.api.http.get(&url))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Unreachable store: start anyway (requests answer 503 until it is back).
                tracing::warn!(bucket = bucket.as_str(), error = %e, "gcs: the store did not answer the start-up check");
                return Ok(());
            }
        };
        match r.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(backend(format!(
                "GCS bucket {bucket:?} does not exist: create it or set storage.gcs.bucket \
                 (REGISTRY_STORAGE_GCS_BUCKET)"
            ))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(backend(format!(
                "access to GCS bucket {bucket:?} denied: check the key file \
                 (REGISTRY_STORAGE_GCS_KEYFILE) or the workload identity"
            ))),
            s => Err(backend(format!("GCS bucket {bucket:?}: HTTP {s}"))),
        }
    }
}

#[cfg(test)]
mod tests;
