//! GCS resumable uploads: one writer session's segment, sent in chunks of `part_size` (a multiple
//! of 256 KiB) one at a time, since the protocol is sequential.
//!
//! Depends on `api.rs` (retry schedule, errors) and `object.rs`'s [`PartSink`]. Contract: a chunk
//! is retried on connection errors, 429 and 5xx like every GCS call, and each attempt resends the
//! same bytes at the same offset (idempotent); the object appears only when `finish` sends the
//! last chunk with the total size. `abort` cancels the session and ignores failures (an
//! abandoned session expires on its own). Both delete the session's marker (see `mod.rs`).

use backon::Retryable as _;
use bytes::Bytes;

use super::api::{backend, body_start, schedule, transient, Failure};
use crate::storage::object::{PartPermit, PartSink};
use crate::storage::Result;

/// One resumable upload session.
pub(super) struct GcsParts {
    pub http: reqwest::Client,
    pub key: String,
    /// The session URL GCS answered the start with.
    pub session: String,
    /// Bytes already sent.
    pub offset: u64,
    /// The access token current when the session started, sent with every chunk.
    pub token: Option<String>,
    /// The object naming this session (`<segment>.session`), deleted when it ends.
    pub marker_url: String,
}

impl GcsParts {
    /// Sends `data` at the current offset; `total` (known for the last chunk) completes it.
    async fn put_chunk(&mut self, data: Bytes, total: Option<u64>) -> Result<()> {
        let n = data.len() as u64;
        let range = match (n, total) {
            (0, Some(t)) => format!("bytes */{t}"),
            (_, Some(t)) => format!("bytes {}-{}/{t}", self.offset, self.offset + n - 1),
            (_, None) => format!("bytes {}-{}/*", self.offset, self.offset + n - 1),
        };
        let attempt = || async {
            let mut req = self
                .http
                .put(&self.session)
                .header("content-range", &range)
                .body(data.clone());
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().as_u16() == 308 || r.status().is_success() => Ok(()),
                Ok(r) if transient(r.status()) => {
                    Err(Failure::Transient(format!("HTTP {}", r.status())))
                }
                Ok(r) => {
                    let st = r.status();
                    Err(Failure::Final(backend(format!(
                        "gcs upload {}: HTTP {st}: {}",
                        self.key,
                        body_start(r).await
                    ))))
                }
                Err(e) => Err(Failure::Transient(e.to_string())),
            }
        };
        attempt
            .retry(schedule())
            .when(Failure::is_transient)
            .await
            .map_err(|f| f.into_error("upload", &self.key))?;
        self.offset += n;
        Ok(())
    }
}

#[async_trait::async_trait]
impl PartSink for GcsParts {
    async fn put_part(&mut self, data: Bytes, permit: PartPermit) -> Result<()> {
        let r = self.put_chunk(data, None).await;
        drop(permit);
        r
    }

    async fn finish(mut self: Box<Self>, last: Bytes) -> Result<()> {
        let total = self.offset + last.len() as u64;
        self.put_chunk(last, Some(total)).await?;
        self.drop_marker().await;
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let mut req = self.http.delete(&self.session);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let _ = req.send().await;
        self.drop_marker().await;
        Ok(())
    }
}

impl GcsParts {
    /// Deletes the session's marker; a failure only leaves it for upload purging (or the rename
    /// that completes the upload) to delete.
    async fn drop_marker(&self) {
        let mut req = self.http.delete(&self.marker_url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {}
            Ok(r) => {
                tracing::debug!(key = %self.key, status = %r.status(), "gcs: session marker left")
            }
            Err(e) => tracing::debug!(key = %self.key, error = %e, "gcs: session marker left"),
        }
    }
}
