//! S3 backend of the object driver (`storage.s3`), on the AWS SDK: multipart uploads with a few
//! parts in flight, assembly by multipart copy (`UploadPartCopy`, ranges of at most 1 GiB, so
//! objects above 5 GiB are moved server-side too), presigned GETs, SSE-S3 / SSE-KMS.
//!
//! Credentials: `accessKey`/`secretKey` when set, else the standard AWS chain (environment,
//! shared profile, web identity, container and instance metadata), resolved lazily on first use.
//! The SDK retries throttling, 5xx and connection errors (3 attempts, exponential backoff); every
//! S3 call the driver makes is idempotent (same key, same bytes). A 404 is `NotFound`; every other
//! failure is `Backend` (the registry answers 503).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider, SharedHttpClient,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as AwsStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier, ServerSideEncryption,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::object::{Listing, ObjMeta, ObjectBackend, PartSink};
use super::{ByteStream, Result, StorageError};
use crate::config::S3Config;

/// S3's smallest part (all but the last).
pub const MIN_PART: usize = 5 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 3;
/// Largest range copied by one `UploadPartCopy` (S3 allows 5 GiB).
const COPY_PART: u64 = 1 << 30;
/// Largest object one `CopyObject` may copy.
const COPY_OBJECT_MAX: u64 = 5 << 30;

const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub struct S3Backend {
    client: Client,
    bucket: String,
    part_size: usize,
    sse: Option<ServerSideEncryption>,
    kms_key: Option<String>,
    /// Whether credentials came from config (then start-up skips the chain probe).
    static_credentials: bool,
    /// The AWS chain, when no keys are configured (probed at start-up).
    chain: Option<SharedCredentialsProvider>,
}

/// The SDK's HTTPS client, on rustls with ring (the crate's one crypto provider; see Cargo.toml).
/// It is what the SDK's `default-https-client` feature builds, with `CryptoMode::Ring` in place of
/// aws-lc: each SDK client's connector settings (timeouts) and sleep, the platform's roots, and
/// proxies from the environment (the SDK's default since behaviour version 2025-08-07).
/// `build_with_connector_fn` is what that default uses too; `build_https` would drop the proxies.
fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut b = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        b.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.set_proxy_config(Some(ProxyConfig::from_env()));
        b.build()
    })
}

fn backend_err<E, R>(what: &str, key: &str, e: SdkError<E, R>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    SdkError<E, R>: std::error::Error,
{
    StorageError::Backend(format!("s3 {what} {key}: {}", DisplayErrorContext(&e)))
}

/// Maps a 404 to NotFound.
fn map_err<E>(
    what: &str,
    key: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    if e.raw_response().map(|r| r.status().as_u16()) == Some(404) {
        return StorageError::NotFound(key.to_owned());
    }
    backend_err(what, key, e)
}

impl S3Backend {
    /// Builds the client from config. Fails when required keys are missing.
    pub fn new(cfg: &S3Config) -> anyhow::Result<S3Backend> {
        let bucket = cfg
            .bucket
            .clone()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "storage.s3.bucket is not set: set it in the config or REGISTRY_STORAGE_S3_BUCKET"
                )
            })?;
        let region = cfg
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        let region = Region::new(region);
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(region.clone())
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            )
            .http_client(http_client())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(ep) = cfg.regionendpoint.as_deref().filter(|e| !e.is_empty()) {
            let ep = if ep.contains("://") {
                ep.to_owned()
            } else if cfg.secure {
                format!("https://{ep}")
            } else {
                format!("http://{ep}")
            };
            // S3-compatible services: path style unless asked otherwise.
            b = b.endpoint_url(ep).force_path_style(!cfg.virtualhostedstyle);
        } else {
            b = b.force_path_style(cfg.forcepathstyle && !cfg.virtualhostedstyle);
        }
        let mut chain = None;
        let static_credentials = match (&cfg.accesskey, &cfg.secretkey) {
            (Some(ak), Some(sk)) if !ak.is_empty() && !sk.is_empty() => {
                b = b.credentials_provider(Credentials::new(
                    ak.clone(),
                    sk.clone(),
                    cfg.sessiontoken.clone().filter(|t| !t.is_empty()),
                    None,
                    "registry-config",
                ));
                true
            }
            (Some(a), _) | (_, Some(a)) if !a.is_empty() => anyhow::bail!(
                "storage.s3: set both accessKey and secretKey (REGISTRY_STORAGE_S3_ACCESSKEY, \
                 REGISTRY_STORAGE_S3_SECRETKEY), or neither to use the AWS credential chain"
            ),
            _ => {
                let p = SharedCredentialsProvider::new(LazyChain {
                    region: region.clone(),
                    // The operator mounts a shared credentials file and names it here.
                    credentials_file: cfg.credentialsconfigpath.clone().filter(|p| !p.is_empty()),
                    chain: Arc::new(tokio::sync::OnceCell::new()),
                });
                chain = Some(p.clone());
                b = b.credentials_provider(p);
                false
            }
        };
        let part_mib = cfg.part_size_mib();
        if !(5..=5120).contains(&part_mib) {
            anyhow::bail!("storage.s3.chunkSizeMiB must be within 5..5120, not {part_mib}");
        }
        let (sse, kms_key) = if cfg.encrypt {
            match cfg.keyid.clone().filter(|k| !k.is_empty()) {
                Some(k) => (Some(ServerSideEncryption::AwsKms), Some(k)),
                None => (Some(ServerSideEncryption::Aes256), None),
            }
        } else {
            (None, None)
        };
        Ok(S3Backend {
            client: Client::from_conf(b.build()),
            bucket,
            part_size: (part_mib as usize) << 20,
            sse,
            kms_key,
            static_credentials,
            chain,
        })
    }

    /// Overrides the part size (tests: exercise multipart with little data). At least 5 MiB.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(MIN_PART);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.bucket, utf8_percent_encode(key, KEY_SET))
    }

    async fn create_multipart(&self, key: &str) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.kms_key.clone())
            .send()
            .await
            .map_err(|e| backend_err("create multipart upload", key, e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Backend(format!("s3 gave no upload id for {key}")))
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: Vec<CompletedPart>,
    ) -> Result<()> {
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| backend_err("complete multipart upload", key, e))?;
        Ok(())
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(key, error = %DisplayErrorContext(&e), "s3: aborting a multipart upload failed");
        }
    }

    /// Multipart copy of `sources` into `to`: each source in ranges of at most [`COPY_PART`].
    async fn multipart_copy(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        let mut ranges = Vec::new();
        for (key, size) in sources {
            let n = size.div_ceil(COPY_PART).max(1);
            let piece = size.div_ceil(n).max(1);
            let mut a = 0;
            while a < *size || (a == 0 && *size == 0) {
                let b = (a + piece).min(*size);
                ranges.push((key.clone(), a, b));
                if b == a {
                    break;
                }
                a = b;
            }
        }
        let upload_id = self.create_multipart(to).await?;
        let results: Vec<Result<CompletedPart>> =
            futures::stream::iter(ranges.into_iter().enumerate())
                .map(|(i, (key, a, b))| {
                    let upload_id = upload_id.clone();
                    async move {
                        let part = i32::try_from(i + 1)
                            .map_err(|_| StorageError::Backend("too many parts".into()))?;
                        let mut req = self
                            .client
                            .upload_part_copy()
                            .bucket(&self.bucket)
                            .key(to)
                            .upload_id(&upload_id)
                            .part_number(part)
                            .copy_source(self.copy_source(&key));
                        if b > a {
                            req = req.copy_source_range(format!("bytes={a}-{}", b - 1));
                        }
                        let out = req
                            .send()
                            .await
                            .map_err(|e| map_err("upload part copy from", &key, e))?;
                        let etag = out
                            .copy_part_result()
                            .and_then(|r| r.e_tag())
                            .unwrap_or_default()
                            .to_owned();
                        Ok(CompletedPart::builder()
                            .part_number(part)
                            .e_tag(etag)
                            .build())
                    }
                })
                .buffer_unordered(PARTS_IN_FLIGHT + 1)
                .collect()
                .await;
        let mut parts = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(p) => parts.push(p),
                Err(e) => {
                    self.abort(to, &upload_id).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.complete(to, &upload_id, parts).await {
            self.abort(to, &upload_id).await;
            return Err(e);
        }
        Ok(())
    }
}

impl S3Backend {
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
}

fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
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
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(404) {
                    return Err(StorageError::NotFound(key.to_owned()));
                }
                // Some S3-compatible stores (file-backed ones) fail a HEAD of a key that is also
                // a "folder": a listing tells whether the key exists at all.
                if status.is_some_and(|s| s >= 500) {
                    let l = self
                        .client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(key)
                        .max_keys(1)
                        .send()
                        .await;
                    if let Ok(l) = l {
                        if !l.contents().iter().any(|o| o.key() == Some(key)) {
                            return Err(StorageError::NotFound(key.to_owned()));
                        }
                    }
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
            for o in out.contents() {
                if let Some(k) = o.key() {
                    listing.objects.push((
                        k.to_owned(),
                        ObjMeta {
                            size: o.size().unwrap_or(0).max(0) as u64,
                            modified: to_system_time(o.last_modified()),
                        },
                    ));
                }
            }
            for p in out.common_prefixes() {
                if let Some(p) = p.prefix() {
                    listing.prefixes.push(p.to_owned());
                }
            }
        })
        .await?;
        Ok(listing)
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        self.list_pages(prefix, None, |out| {
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
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
        for batch in keys.chunks(1000) {
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
        if !self.static_credentials {
            use aws_sdk_s3::config::ProvideCredentials as _;
            if let Some(p) = &self.chain {
                if let Err(e) = p.provide_credentials().await {
                    return Err(StorageError::Backend(format!(
                        "no AWS credentials: set REGISTRY_STORAGE_S3_ACCESSKEY and \
                         REGISTRY_STORAGE_S3_SECRETKEY, or configure the AWS credential chain \
                         (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
                         AWS_WEB_IDENTITY_TOKEN_FILE, storage.s3.credentialsConfigPath): {e}"
                    )));
                }
            }
        }
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let hint = match status {
                    Some(404) => format!(
                        "bucket {:?} does not exist: create it or set storage.s3.bucket \
                         (REGISTRY_STORAGE_S3_BUCKET)",
                        self.bucket
                    ),
                    Some(301 | 400) => format!(
                        "bucket {:?} is not in the configured region: set storage.s3.region \
                         (REGISTRY_STORAGE_S3_REGION)",
                        self.bucket
                    ),
                    Some(401 | 403) => {
                        format!(
                        "access to bucket {:?} denied: check REGISTRY_STORAGE_S3_ACCESSKEY and \
                         REGISTRY_STORAGE_S3_SECRETKEY (or the AWS credential chain{})",
                        self.bucket,
                        if self.static_credentials { ", unused as keys are set" } else { "" }
                    )
                    }
                    _ => {
                        // Unreachable or failing store: start anyway (requests answer 503 until
                        // it is back), but say so.
                        tracing::warn!(bucket = self.bucket, error = %DisplayErrorContext(&e), "s3: the store did not answer the start-up check");
                        return Ok(());
                    }
                };
                Err(StorageError::Backend(hint))
            }
        }
    }
}

/// One S3 multipart upload: parts go out on tasks, at most [`PARTS_IN_FLIGHT`] at a time.
struct S3Parts {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    next: i32,
    inflight: JoinSet<Result<CompletedPart>>,
    done: Vec<CompletedPart>,
}

impl S3Parts {
    async fn reap_one(&mut self) -> Result<()> {
        if let Some(r) = self.inflight.join_next().await {
            let part = r.map_err(|e| StorageError::Backend(format!("s3 part task: {e}")))??;
            self.done.push(part);
        }
        Ok(())
    }

    async fn abort_now(&mut self) {
        self.inflight.abort_all();
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
        {
            tracing::warn!(key = self.key, error = %DisplayErrorContext(&e), "s3: aborting a multipart upload failed");
        }
    }

    fn spawn(&mut self, data: Bytes, permit: Option<OwnedSemaphorePermit>) {
        let part = self.next;
        self.next += 1;
        let req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(part)
            .body(AwsStream::from(data));
        let key = self.key.clone();
        self.inflight.spawn(async move {
            let out = req
                .send()
                .await
                .map_err(|e| backend_err("upload part of", &key, e))?;
            drop(permit);
            Ok(CompletedPart::builder()
                .part_number(part)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build())
        });
    }
}

#[async_trait]
impl PartSink for S3Parts {
    async fn put_part(&mut self, data: Bytes, permit: OwnedSemaphorePermit) -> Result<()> {
        while self.inflight.len() >= PARTS_IN_FLIGHT {
            if let Err(e) = self.reap_one().await {
                self.abort_now().await;
                return Err(e);
            }
        }
        self.spawn(data, Some(permit));
        Ok(())
    }

    async fn finish(mut self: Box<Self>, last: Bytes) -> Result<()> {
        if !last.is_empty() {
            self.spawn(last, None);
        }
        while !self.inflight.is_empty() {
            if let Err(e) = self.reap_one().await {
                self.abort_now().await;
                return Err(e);
            }
        }
        let parts = std::mem::take(&mut self.done);
        let mut parts = parts;
        parts.sort_by_key(|p| p.part_number());
        let r = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = r {
            let err = backend_err("complete multipart upload", &self.key, e);
            self.abort_now().await;
            return Err(err);
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.abort_now().await;
        Ok(())
    }
}

/// The standard AWS credential chain, built on first use (building it is async).
#[derive(Debug, Clone)]
struct LazyChain {
    region: Region,
    credentials_file: Option<String>,
    chain: Arc<tokio::sync::OnceCell<Option<SharedCredentialsProvider>>>,
}

impl aws_sdk_s3::config::ProvideCredentials for LazyChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    let mut b = aws_config::defaults(BehaviorVersion::latest())
                        .region(self.region.clone())
                        .http_client(http_client());
                    if let Some(f) = &self.credentials_file {
                        use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
                        b = b.profile_files(
                            EnvConfigFiles::builder()
                                .with_file(EnvConfigFileKind::Credentials, f)
                                .include_default_config_file(true)
                                .build(),
                        );
                    }
                    b.load().await.credentials_provider()
                })
                .await;
            match chain {
                Some(c) => c.provide_credentials().await,
                None => Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded(
                        "no credential source found",
                    ),
                ),
            }
        })
    }
}
