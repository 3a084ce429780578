//! Azure Blob backend of the object driver (`storage.azure`), on `object_store`: block-blob
//! uploads (Put Block / Put Block List) with a few blocks in flight, server-side Copy Blob,
//! SAS-signed redirect URLs from the account key. object_store retries transient failures (3
//! retries, at most 15 s in all) and every call made here is idempotent.
//!
//! Writers that died leave uncommitted blocks (Azure has no abort; it drops them after a week):
//! upload purging ends them on the names the upload's state gives (see `abort_segment_writes`).
//!
//! Known limit: a file written in several segments (an upload continued across requests with more
//! than `part_size` before its last PATCH) is assembled by streaming its segments back through the
//! registry into a new block blob, a buffer at a time (memory stays flat, but the bytes travel
//! twice). Single-segment files (every monolithic or single-PATCH push) are copied server-side.
//!
//! Among storage files this depends only on `object.rs`'s trait and types. object_store signs
//! with its ring provider and connects through reqwest on rustls's process default (ring), which
//! [`AzureBackend::new`] installs (see `tls::install_default_provider`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::object::{Listing, ObjMeta, ObjectBackend, PartSink};
use super::{ByteStream, Result, StorageError};
use crate::config::AzureConfig;

const PART_SIZE: usize = 10 << 20;
const PARTS_IN_FLIGHT: usize = 3;

pub struct AzureBackend {
    /// For the one call object_store lacks (Get Block List).
    http: reqwest::Client,
    store: Arc<MicrosoftAzure>,
    container: String,
    account: String,
    part_size: usize,
}

fn map_err(what: &str, key: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_owned()),
        e => StorageError::Backend(format!("azure {what} {key}: {e}")),
    }
}

fn path(key: &str) -> Path {
    Path::from(key)
}

fn meta(m: &object_store::ObjectMeta) -> ObjMeta {
    ObjMeta {
        size: m.size,
        modified: Some(SystemTime::from(m.last_modified)),
    }
}

impl AzureBackend {
    pub fn new(cfg: &AzureConfig) -> anyhow::Result<AzureBackend> {
        let account = cfg
            .accountname
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "storage.azure.accountName is not set: set it in the config or \
                     REGISTRY_STORAGE_AZURE_ACCOUNTNAME"
                )
            })?;
        let container = cfg
            .container
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "storage.azure.container is not set: set it in the config or \
                     REGISTRY_STORAGE_AZURE_CONTAINER"
                )
            })?;
        let key = cfg
            .accountkey
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no Azure account key: set REGISTRY_STORAGE_AZURE_ACCOUNTKEY (or \
                     storage.azure.accountKey)"
                )
            })?;
        let suffix = cfg.endpoint_suffix().map_err(anyhow::Error::msg)?;
        let endpoint = cfg
            .endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| format!("https://{account}.blob.{suffix}"));
        // object_store's reqwest takes rustls's process default provider (see Cargo.toml).
        crate::net::tls::install_default_provider();
        let store = MicrosoftAzureBuilder::new()
            .with_account(&account)
            .with_container_name(&container)
            .with_access_key(key)
            .with_endpoint(endpoint.trim_end_matches('/').to_owned())
            .with_allow_http(endpoint.starts_with("http://"))
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            )
            .build()
            .map_err(|e| anyhow::anyhow!("storage.azure: {e}"))?;
        let http = crate::net::outbound::http_client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(AzureBackend {
            http,
            store: Arc::new(store),
            container,
            account,
            part_size: PART_SIZE,
        })
    }

    /// Whether the blob `key` has uncommitted blocks (Get Block List; a blob with none at all
    /// is 404).
    async fn has_uncommitted_blocks(&self, key: &str) -> Result<bool> {
        let url = self
            .store
            .signed_url(http::Method::GET, &path(key), Duration::from_secs(300))
            .await
            .map_err(|e| map_err("sign", key, e))?;
        let r = self
            .http
            .get(format!("{url}&comp=blocklist&blocklisttype=uncommitted"))
            .send()
            .await
            .map_err(|e| StorageError::Backend(format!("azure get block list {key}: {e}")))?;
        match r.status().as_u16() {
            404 => Ok(false),
            200 => {
                let body = r.text().await.map_err(|e| {
                    StorageError::Backend(format!("azure get block list {key}: {e}"))
                })?;
                Ok(body
                    .split_once("<UncommittedBlocks>")
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with("<Block>")))
            }
            st => Err(StorageError::Backend(format!(
                "azure get block list {key}: HTTP {st}"
            ))),
        }
    }

    /// Overrides the block size (tests).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// Streams `sources` into a new block blob at `to` (several segments: see the module doc).
    async fn restream(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        let mut upload = self
            .store
            .put_multipart(&path(to))
            .await
            .map_err(|e| map_err("start upload", to, e))?;
        let mut inflight = JoinSet::new();
        let mut buf = BytesMut::new();
        let r: Result<()> = async {
            for (key, _) in sources {
                let mut s = self.get(key, 0, None).await?;
                while let Some(chunk) = s
                    .try_next()
                    .await
                    .map_err(|e| StorageError::Backend(format!("azure read {key}: {e}")))?
                {
                    buf.extend_from_slice(&chunk);
                    while buf.len() >= self.part_size {
                        let part = buf.split_to(self.part_size).freeze();
                        while inflight.len() >= PARTS_IN_FLIGHT {
                            join_one(&mut inflight, to).await?;
                        }
                        inflight.spawn(upload.put_part(PutPayload::from(part)));
                    }
                }
            }
            if !buf.is_empty() {
                inflight.spawn(upload.put_part(PutPayload::from(buf.split().freeze())));
            }
            while !inflight.is_empty() {
                join_one(&mut inflight, to).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            inflight.abort_all();
            let _ = upload.abort().await;
            return Err(e);
        }
        upload
            .complete()
            .await
            .map_err(|e| map_err("complete upload", to, e))?;
        Ok(())
    }
}

async fn join_one(set: &mut JoinSet<object_store::Result<()>>, key: &str) -> Result<()> {
    if let Some(r) = set.join_next().await {
        r.map_err(|e| StorageError::Backend(format!("azure block task: {e}")))?
            .map_err(|e| map_err("put block", key, e))?;
    }
    Ok(())
}

#[async_trait]
impl ObjectBackend for AzureBackend {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn part_size(&self) -> usize {
        self.part_size
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&path(key), PutPayload::from(data))
            .await
            .map_err(|e| map_err("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let range = match len {
            Some(0) => return Ok(Box::pin(futures::stream::empty())),
            Some(n) => Some(GetRange::Bounded(offset..offset + n)),
            None if offset > 0 => Some(GetRange::Offset(offset)),
            None => None,
        };
        let opts = GetOptions {
            range,
            ..Default::default()
        };
        let r = self
            .store
            .get_opts(&path(key), opts)
            .await
            .map_err(|e| map_err("get", key, e))?;
        let key = key.to_owned();
        Ok(Box::pin(r.into_stream().map_err(move |e| {
            std::io::Error::other(format!("azure read {key}: {e}"))
        })))
    }

    async fn head(&self, key: &str) -> Result<ObjMeta> {
        let m = self
            .store
            .head(&path(key))
            .await
            .map_err(|e| map_err("head", key, e))?;
        Ok(meta(&m))
    }

    async fn list_dir(&self, prefix: &str) -> Result<Listing> {
        let p = path(prefix.trim_end_matches('/'));
        let r = self
            .store
            .list_with_delimiter(Some(&p))
            .await
            .map_err(|e| map_err("list", prefix, e))?;
        Ok(Listing {
            objects: r
                .objects
                .iter()
                .map(|o| (o.location.to_string(), meta(o)))
                .collect(),
            prefixes: r.common_prefixes.iter().map(|p| format!("{p}/")).collect(),
        })
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<(String, ObjMeta)>> {
        let p = path(prefix.trim_end_matches('/'));
        let want = prefix.to_owned();
        self.store
            .list(Some(&p))
            .map_ok(|o| (o.location.to_string(), meta(&o)))
            .try_filter(move |(k, _)| futures::future::ready(k.starts_with(&want)))
            .try_collect()
            .await
            .map_err(|e| map_err("list", prefix, e))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err("delete", key, e)),
        }
    }

    async fn compose(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        match sources {
            [(from, _)] => self
                .store
                .copy(&path(from), &path(to))
                .await
                .map_err(|e| map_err("copy from", from, e)),
            _ => self.restream(to, sources).await,
        }
    }

    async fn start_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        let upload = self
            .store
            .put_multipart(&path(key))
            .await
            .map_err(|e| map_err("start upload", key, e))?;
        Ok(Box::new(AzureParts {
            key: key.to_owned(),
            upload,
            inflight: JoinSet::new(),
        }))
    }

    /// Azure cannot abort staged blocks, and object_store lists no blob that has only
    /// uncommitted blocks. What can be named: blocks a writer that died staged sit on the segment
    /// its session wrote (`open`). For each, Get Block List (through a SAS URL) says whether it
    /// has uncommitted blocks; if so, committing an empty block list there discards them (Put
    /// Block List), then the empty blob is deleted. Counts the blobs cleared.
    async fn abort_segment_writes(
        &self,
        _prefix: &str,
        _listed: &[String],
        open: &[String],
    ) -> Result<u64> {
        let mut cleared = 0;
        for key in open {
            if !self.has_uncommitted_blocks(key).await? {
                continue;
            }
            self.store
                .complete_multipart(&path(key), &String::new(), Vec::new())
                .await
                .map_err(|e| map_err("discard staged blocks of", key, e))?;
            self.delete(key).await?;
            cleared += 1;
        }
        Ok(cleared)
    }

    async fn presign_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        let url = self
            .store
            .signed_url(http::Method::GET, &path(key), expires)
            .await
            .map_err(|e| map_err("sign", key, e))?;
        Ok(Some(url.to_string()))
    }

    async fn check(&self) -> Result<()> {
        match self.store.list_with_delimiter(Some(&path("docker"))).await {
            Ok(_) => Ok(()),
            Err(e) => Err(StorageError::Backend(format!(
                "azure container {:?} of account {:?} is not usable: {e} (check that the \
                 container exists, storage.azure.accountName / REGISTRY_STORAGE_AZURE_ACCOUNTNAME \
                 and REGISTRY_STORAGE_AZURE_ACCOUNTKEY)",
                self.container, self.account
            ))),
        }
    }
}

struct AzureParts {
    key: String,
    upload: Box<dyn MultipartUpload>,
    inflight: JoinSet<object_store::Result<()>>,
}

impl AzureParts {
    async fn drain(&mut self, below: usize) -> Result<()> {
        while self.inflight.len() > below {
            join_one(&mut self.inflight, &self.key).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl PartSink for AzureParts {
    async fn put_part(&mut self, data: Bytes, permit: OwnedSemaphorePermit) -> Result<()> {
        if let Err(e) = self.drain(PARTS_IN_FLIGHT - 1).await {
            self.inflight.abort_all();
            let _ = self.upload.abort().await;
            return Err(e);
        }
        let fut = self.upload.put_part(PutPayload::from(data));
        self.inflight.spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        });
        Ok(())
    }

    async fn finish(mut self: Box<Self>, last: Bytes) -> Result<()> {
        if !last.is_empty() {
            let fut = self.upload.put_part(PutPayload::from(last));
            self.inflight.spawn(fut);
        }
        if let Err(e) = self.drain(0).await {
            self.inflight.abort_all();
            let _ = self.upload.abort().await;
            return Err(e);
        }
        self.upload
            .complete()
            .await
            .map_err(|e| map_err("complete upload", &self.key, e))?;
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.inflight.abort_all();
        let _ = self.upload.abort().await;
        Ok(())
    }
}
