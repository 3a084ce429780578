//! S3 backend of the object driver (`storage.s3`), on the AWS SDK: multipart uploads with a few
//! parts in flight, assembly by multipart copy (`UploadPartCopy`, ranges of at most 1 GiB, so
//! objects above 5 GiB are moved server-side too), presigned GETs, SSE-S3 / SSE-KMS.
//!
//! Credentials: `accessKey`/`secretKey` when set, else the standard AWS chain (environment,
//! shared profile, web identity, container and instance metadata), resolved lazily on first use.
//! The SDK retries throttling, 5xx and connection errors (3 attempts, exponential backoff); every
//! S3 call the driver makes is idempotent (same key, same bytes). A 404 is `NotFound`; every other
//! failure is `Backend` (the registry answers 503).
//!
//! Files: `client.rs` (the backend value and its SDK client built from config, credentials, error
//! mapping), `multipart.rs` (multipart uploads and copies, on `client.rs`), and here the
//! [`ObjectBackend`] with the single calls, on both. Among storage files the backend depends only
//! on `object.rs`'s trait and types.

mod client;
mod multipart;

pub use self::client::{S3Backend, MIN_PART};

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as AwsStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::task::JoinSet;

use self::client::{backend_err, map_err, status_of};
use self::multipart::S3Parts;
use super::object::{Listing, ObjMeta, ObjectBackend, PartSink};
use super::{ByteStream, Result, StorageError};

/// Largest object one `CopyObject` may copy.
const COPY_OBJECT_MAX: u64 = 5 << 30;
/// Most keys one `DeleteObjects` takes.
const DELETE_BATCH: usize = 1000;

fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

/// The objects of one ListObjectsV2 page with their size and time.
fn page_objects(
    out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output,
) -> impl Iterator<Item = (String, ObjMeta)> + '_ {
    out.contents().iter().filter_map(|o| {
        Some((
            o.key()?.to_owned(),
            ObjMeta {
                size: o.size().unwrap_or(0).max(0) as u64,
                modified: to_system_time(o.last_modified()),
            },
        ))
    })
}

/// Adds one ListObjectsV2 page (objects and common prefixes) to `listing`.
fn add_to_listing(
    listing: &mut Listing,
    out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output,
) {
    listing.objects.extend(page_objects(out));
    listing.prefixes.extend(
        out.common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned)),
    );
}

impl S3Backend {
    /// Overrides the part size (tests: exercise multipart with little data). At least 5 MiB.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(MIN_PART);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Walks every page of a ListObjectsV2 under `prefix` (with `delimiter`, one level only),
    /// handing each page to `page`.
    async fn list_pages(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        mut page: impl FnMut(&aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) + Send,
    ) -> Result<()> {
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_owned))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| backend_err("list", prefix, e))?;
            page(&out);
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    /// Some S3-compatible stores (file-backed ones) fail a HEAD of a key that is also a
    /// "folder" with a 5xx: whether a listing shows the key itself. `None` when the listing
    /// fails too.
    async fn listed(&self, key: &str) -> Option<bool> {
        let l = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(key)
            .max_keys(1)
            .send()
            .await
            .ok()?;
        Some(l.contents().iter().any(|o| o.key() == Some(key)))
    }

    /// Start-up probe of the AWS chain (when no keys are configured).
    async fn probe_chain(&self) -> Result<()> {
        use aws_sdk_s3::config::ProvideCredentials as _;
        let Some(p) = self.chain.as_ref().filter(|_| !self.static_credentials) else {
            return Ok(());
        };
        p.provide_credentials().await.map(|_| ()).map_err(|e| {
            StorageError::Backend(format!(
                "no AWS credentials: set REGISTRY_STORAGE_S3_ACCESSKEY and \
                 REGISTRY_STORAGE_S3_SECRETKEY, or configure the AWS credential chain \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
                 AWS_WEB_IDENTITY_TOKEN_FILE, storage.s3.credentialsConfigPath): {e}"
            ))
        })
    }

    /// What to fix for a `HeadBucket` answered with `status`; `None`: not a config problem
    /// (unreachable or failing store).
    fn bucket_hint(&self, status: Option<u16>) -> Option<String> {
        Some(match status? {
            404 => format!(
                "bucket {:?} does not exist: create it or set storage.s3.bucket \
                 (REGISTRY_STORAGE_S3_BUCKET)",
                self.bucket
            ),
            301 | 400 => format!(
                "bucket {:?} is not in the configured region: set storage.s3.region \
                 (REGISTRY_STORAGE_S3_REGION)",
                self.bucket
            ),
            401 | 403 => format!(
                "access to bucket {:?} denied: check REGISTRY_STORAGE_S3_ACCESSKEY and \
                 REGISTRY_STORAGE_S3_SECRETKEY (or the AWS credential chain{})",
                self.bucket,
                if self.static_credentials {
                    ", unused as keys are set"
                } else {
                    ""
                }
            ),
            _ => return None,
        })
    }
}

#[async_trait]
impl ObjectBackend for S3Backend {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn part_size(&self) -> usize {
        self.part_size
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(AwsStream::from(data))
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.kms_key.clone())
            .send()
            .await
            .map_err(|e| backend_err("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        match len {
            Some(0) => return Ok(Box::pin(futures::stream::empty())),
            Some(n) => req = req.range(format!("bytes={offset}-{}", offset + n - 1)),
            None if offset > 0 => req = req.range(format!("bytes={offset}-")),
            None => {}
        }
        let out = req.send().await.map_err(|e| map_err("get", key, e))?;
        let body = out.body;
        let key = key.to_owned();
        Ok(Box::pin(futures::stream::unfold(Some(body), move |body| {
            let key = key.clone();
            async move {
                let mut body = body?;
                match body.try_next().await {
                    Ok(Some(b)) => Some((Ok(b), Some(body))),
                    Ok(None) => None,
                    Err(e) => Some((
                        Err(std::io::Error::other(format!("s3 read {key}: {e}"))),
                        None,
                    )),
                }
            }
        })))
    }

    async fn head(&self, key: &str) -> Result<ObjMeta> {
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let status = status_of(&e);
                let missing = match status {
                    Some(404) => true,
                    Some(s) if s >= 500 => self.listed(key).await == Some(false),
                    _ => false,
                };
                if missing {
                    return Err(StorageError::NotFound(key.to_owned()));
                }
                return Err(backend_err("head", key, e));
            }
        };
        Ok(ObjMeta {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            modified: to_system_time(out.last_modified()),
        })
    }

    async fn list_dir(&self, prefix: &str) -> Result<Listing> {
        let mut listing = Listing::default();
        self.list_pages(prefix, Some("/"), |out| {
            add_to_listing(&mut listing, out);
        })
        .await?;
        Ok(listing)
    }

    /// ListObjectsV2 with `start-after` and `max-keys`, continued only until `want` entries.
    async fn list_window(
        &self,
        prefix: &str,
        delimiter: &str,
        start_after: Option<&str>,
        want: usize,
    ) -> Result<Option<(Listing, bool)>> {
        let mut listing = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let have = listing.objects.len() + listing.prefixes.len();
            let max = (want.saturating_sub(have)).clamp(1, 1000) as i32;
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter(delimiter)
                .max_keys(max)
                .set_start_after(start_after.map(str::to_owned))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| backend_err("list", prefix, e))?;
            add_to_listing(&mut listing, &out);
            let more = out.is_truncated() == Some(true);
            match out.next_continuation_token() {
                Some(t) if more && listing.objects.len() + listing.prefixes.len() < want => {
                    token = Some(t.to_owned())
                }
                _ => return Ok(Some((listing, more))),
            }
        }
    }

    /// Every multipart upload under the file's segment folder, whatever its age.
    async fn abort_segment_writes(
        &self,
        prefix: &str,
        _listed: &[String],
        _open: &[String],
    ) -> Result<u64> {
        self.abort_stale_parts(prefix, Duration::ZERO).await
    }

    async fn abort_stale_parts(&self, prefix: &str, older_than: Duration) -> Result<u64> {
        let cutoff = SystemTime::now() - older_than;
        let (mut key_marker, mut id_marker) = (None, None);
        let mut aborted = 0;
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| backend_err("list multipart uploads", prefix, e))?;
            for u in out.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                if to_system_time(u.initiated()).is_some_and(|t| t > cutoff) {
                    continue;
                }
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| backend_err("abort multipart upload", key, e))?;
                aborted += 1;
            }
            if out.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(aborted);
            }
        }
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<(String, ObjMeta)>> {
        let mut keys = Vec::new();
        self.list_pages(prefix, None, |out| {
            keys.extend(page_objects(out));
        })
        .await?;
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_err("delete", key, e))
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            if batch.len() == 1 {
                self.delete(&batch[0]).await?;
                continue;
            }
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| StorageError::Backend(format!("s3 delete: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StorageError::Backend(format!("s3 delete: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| backend_err("delete objects under", &batch[0], e))?;
            if let Some(err) = out.errors().iter().find(|e| e.code() != Some("NoSuchKey")) {
                return Err(StorageError::Backend(format!(
                    "s3 delete {}: {}",
                    err.key().unwrap_or_default(),
                    err.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    async fn compose(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        if let [(from, size)] = sources {
            if *size <= COPY_OBJECT_MAX {
                self.client
                    .copy_object()
                    .bucket(&self.bucket)
                    .key(to)
                    .copy_source(self.copy_source(from))
                    .set_server_side_encryption(self.sse.clone())
                    .set_ssekms_key_id(self.kms_key.clone())
                    .send()
                    .await
                    .map_err(|e| map_err("copy from", from, e))?;
                return Ok(());
            }
        }
        self.multipart_copy(to, sources).await
    }

    /// Each multipart upload has its own id: two in flight for one key never mix parts.
    fn isolated_parts(&self) -> bool {
        true
    }

    async fn start_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        let upload_id = self.create_multipart(key).await?;
        Ok(Box::new(S3Parts {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id,
            next: 1,
            inflight: JoinSet::new(),
            done: Vec::new(),
        }))
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        let cfg = PresigningConfig::expires_in(expires)
            .map_err(|e| StorageError::Backend(format!("s3 presign: {e}")))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| backend_err("presign", key, e))?;
        Ok(Some(req.uri().to_owned()))
    }

    async fn check(&self) -> Result<()> {
        self.probe_chain().await?;
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.bucket_hint(status_of(&e)) {
                Some(hint) => Err(StorageError::Backend(hint)),
                None => {
                    // Unreachable or failing store: start anyway (requests answer 503 until it
                    // is back), but say so.
                    tracing::warn!(bucket = self.bucket, error = %DisplayErrorContext(&e), "s3: the store did not answer the start-up check");
                    Ok(())
                }
            },
        }
    }
}
