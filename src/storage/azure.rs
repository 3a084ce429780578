//! Azure Blob backend of the object driver (`storage.azure`), on `object_store`: block-blob
//! uploads (Put Block / Put Block List) with a few blocks in flight, server-side Copy Blob,
//! SAS-signed redirect URLs from the account key; through SAS URLs with the one HTTP client the
//! two calls object_store lacks (Get Block List, and a Put Block List naming committed blocks). object_store retries transient failures (3
//! retries, at most 15 s in all) and every call made here is idempotent.
//!
//! Direct writes (a blob whose digest is known before its bytes, see `ObjectBackend::isolated_parts`)
//! stage their blocks on the blob's final key under random block ids and commit the block list only
//! after the digest is verified: one write of the bytes, no copy. Of two writers of one blob at once
//! the first commit discards the other's staged blocks; the other then finds the winner's blob of
//! its size and succeeds (see `AzureParts::direct`).
//!
//! Writers that died leave uncommitted blocks (Azure has no abort; it drops them after a week):
//! upload purging ends them on the names the upload's state gives (see `abort_segment_writes`).
//! Those of a direct write sit invisible on a blob key that no upload names; they take no space
//! anyone sees and expire with the week (Azure lists no blob with only uncommitted blocks).
//!
//! A file written across requests (an upload's `data`, PATCH after PATCH) stays one segment
//! that grows in place: each session stages its blocks on it and commits the committed list
//! plus its own, conditional on the ETag it read (see [`AzureAppend`]); the rename into place
//! is one Copy Blob. So every byte is written once, plus the copy.
//!
//! Known limit: a file that still has several segments (its first segment was one Put Blob,
//! which leaves no block to name, e.g. an upload begun by an older version; a segment with
//! 40,000 blocks; a session that lost a race and started anew) is assembled by streaming its
//! segments back through the registry into a new block blob, a buffer at a time (memory stays
//! flat, but the bytes travel twice). Put Block From URL would do it server-side, but Azurite
//! 3.35.0 answers it 501, so it could not be tested here.
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
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio::task::JoinSet;

use super::object::{Listing, ObjMeta, ObjectBackend, PartPermit, PartSink};
use super::{ByteStream, Result, StorageError};
use crate::config::AzureConfig;

const PART_SIZE: usize = 10 << 20;
const PARTS_IN_FLIGHT: usize = 3;

pub struct AzureBackend {
    /// For the calls object_store lacks (Get Block List; Put Block List of committed blocks).
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

    /// Get Block List of the blob `key` (`which`: `committed`, `uncommitted` or `all`) through a
    /// SAS URL: the answer's XML and its `ETag` header (present when the blob has committed
    /// blocks; it names the blob the list describes), or `None` for a blob with no block at all
    /// (404).
    async fn block_list(&self, key: &str, which: &str) -> Result<Option<(String, Option<String>)>> {
        let url = self
            .store
            .signed_url(http::Method::GET, &path(key), Duration::from_secs(300))
            .await
            .map_err(|e| map_err("sign", key, e))?;
        let fail = |e: String| StorageError::Backend(format!("azure get block list {key}: {e}"));
        let r = self
            .http
            .get(format!("{url}&comp=blocklist&blocklisttype={which}"))
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        match r.status().as_u16() {
            404 => Ok(None),
            200 => {
                let etag = r
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = r.text().await.map_err(|e| fail(e.to_string()))?;
                Ok(Some((body, etag)))
            }
            st => Err(fail(format!("HTTP {st}"))),
        }
    }

    /// Whether the blob `key` has uncommitted blocks.
    async fn has_uncommitted_blocks(&self, key: &str) -> Result<bool> {
        Ok(self
            .block_list(key, "uncommitted")
            .await?
            .and_then(|(body, _)| {
                body.split_once("<UncommittedBlocks>")
                    .map(|(_, rest)| rest.trim_start().starts_with("<Block>"))
            })
            .unwrap_or(false))
    }

    /// The committed blocks of the blob `key` (their base64 names and sizes) with the ETag of
    /// the blob they make up, both from one Get Block List answer: a commit conditional on that
    /// ETag fails if anyone committed since. `None`: the blob has no committed block to name.
    /// NotFound: the blob is gone. Where an answer with blocks carries no ETag (not seen on Azure
    /// or Azurite), the ETag is read first by a `HEAD`, then the list.
    async fn committed_blocks(&self, key: &str) -> Result<Option<(String, Vec<(String, u64)>)>> {
        let fail = |e: &str| StorageError::Backend(format!("azure get block list {key}: {e}"));
        let listed = |body: &str| committed_from_xml(body).ok_or_else(|| fail("unreadable answer"));
        let Some((body, etag)) = self.block_list(key, "committed").await? else {
            // 404: no block at all, or no blob; only the latter is an error.
            self.head(key).await?;
            return Ok(None);
        };
        let blocks = listed(&body)?;
        if blocks.is_empty() {
            return Ok(None);
        }
        if let Some(etag) = etag {
            return Ok(Some((etag, blocks)));
        }
        let head = self
            .store
            .head(&path(key))
            .await
            .map_err(|e| map_err("head", key, e))?;
        let etag = head.e_tag.ok_or_else(|| {
            StorageError::Backend(format!("azure head {key}: no ETag in the answer"))
        })?;
        match self.block_list(key, "committed").await? {
            Some((body, _)) => Ok(Some((etag, listed(&body)?))),
            None => Ok(None),
        }
    }

    /// A block-blob upload of `key`; `direct`: a direct write (see [`AzureParts::direct`]).
    async fn parts(&self, key: &str, direct: bool) -> Result<Box<dyn PartSink>> {
        let upload = self
            .store
            .put_multipart(&path(key))
            .await
            .map_err(|e| map_err("start upload", key, e))?;
        Ok(Box::new(AzureParts {
            key: key.to_owned(),
            upload,
            inflight: JoinSet::new(),
            sent: 0,
            store: self.store.clone(),
            direct,
        }))
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

/// The `<CommittedBlocks>` of a Get Block List answer: (base64 name, size) in order.
fn committed_from_xml(body: &str) -> Option<Vec<(String, u64)>> {
    let (_, rest) = body.split_once("<CommittedBlocks")?;
    let rest = rest.trim_start();
    if rest.starts_with("/>") {
        return Some(Vec::new());
    }
    let (section, _) = rest.strip_prefix('>')?.split_once("</CommittedBlocks>")?;
    let field = |block: &str, name: &str| -> Option<String> {
        let (_, v) = block.split_once(&format!("<{name}>"))?;
        let (v, _) = v.split_once(&format!("</{name}>"))?;
        Some(v.trim().to_owned())
    };
    section
        .split("<Block>")
        .skip(1)
        .map(|b| Some((field(b, "Name")?, field(b, "Size")?.parse().ok()?)))
        .collect()
}

/// Azure's limit of committed blocks per blob is 50,000; a segment is extended while it has
/// fewer than this many (which leaves room for 10,000 more blocks, 100 GiB, in one session).
const APPEND_MAX_BLOCKS: usize = 40_000;

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
        self.parts(key, false).await
    }

    /// object_store names every staged block with a random id, and an uncommitted block is
    /// seen by nobody (not by Get Blob, Get Blob Properties or List Blobs): writers of one blob
    /// never mix their blocks, and nothing is visible before a commit.
    fn isolated_parts(&self) -> bool {
        true
    }

    async fn start_direct_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        self.parts(key, true).await
    }

    /// Segments grow in place: Put Block List can name the blob's committed blocks again
    /// beside new ones (see [`AzureAppend`]).
    fn appends(&self) -> bool {
        true
    }

    async fn start_append(&self, key: &str, size: u64) -> Result<Option<Box<dyn PartSink>>> {
        let Some((etag, blocks)) = self.committed_blocks(key).await? else {
            return Ok(None);
        };
        let committed: u64 = blocks.iter().map(|(_, n)| n).sum();
        if committed != size || blocks.len() >= APPEND_MAX_BLOCKS {
            // Written by one Put Blob (no blocks to name), changed since the caller looked,
            // or too many blocks: not extended.
            return Ok(None);
        }
        Ok(Some(Box::new(AzureAppend {
            key: key.to_owned(),
            store: self.store.clone(),
            http: self.http.clone(),
            etag,
            committed: blocks.into_iter().map(|(name, _)| name).collect(),
            inflight: JoinSet::new(),
            staged: Vec::new(),
            next: 0,
        })))
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
    /// Bytes staged.
    sent: u64,
    /// Set for a direct write of a content-addressed key
    /// ([`ObjectBackend::start_direct_parts`]): committing a block list discards every other
    /// uncommitted block of the blob, so of two writers of one blob at once the later one's
    /// commit fails (its blocks are gone). It then looks at the blob: one of the same size is
    /// the winner's copy of the same verified bytes, and the write succeeded.
    direct: bool,
    store: Arc<MicrosoftAzure>,
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
    async fn put_part(&mut self, data: Bytes, permit: PartPermit) -> Result<()> {
        if let Err(e) = self.drain(PARTS_IN_FLIGHT - 1).await {
            self.inflight.abort_all();
            let _ = self.upload.abort().await;
            return Err(e);
        }
        self.sent += data.len() as u64;
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
            self.sent += last.len() as u64;
            let fut = self.upload.put_part(PutPayload::from(last));
            self.inflight.spawn(fut);
        }
        if let Err(e) = self.drain(0).await {
            self.inflight.abort_all();
            let _ = self.upload.abort().await;
            return Err(e);
        }
        let e = match self.upload.complete().await {
            Ok(_) => return Ok(()),
            Err(e) => map_err("complete upload", &self.key, e),
        };
        if self.direct {
            if let Ok(m) = self.store.head(&path(&self.key)).await {
                if m.size == self.sent {
                    tracing::debug!(key = %self.key, error = %e,
                        "another writer committed this blob first: its copy is kept");
                    return Ok(());
                }
            }
        }
        Err(e)
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.inflight.abort_all();
        let _ = self.upload.abort().await;
        Ok(())
    }
}

/// An append to a committed block blob: new blocks are staged (Put Block, random ids, a few in
/// flight), then one Put Block List names the blob's committed blocks followed by the new ones,
/// conditional on the ETag the committed list was read under (`If-Match`). Another writer's
/// commit in between makes it fail with 412 and leaves that writer's blob; a writer that dies
/// leaves only uncommitted blocks, which the next commit of the blob discards. The bytes
/// already in the blob are not sent again.
struct AzureAppend {
    key: String,
    store: Arc<MicrosoftAzure>,
    http: reqwest::Client,
    etag: String,
    /// Base64 names of the blocks committed before this session.
    committed: Vec<String>,
    inflight: JoinSet<object_store::Result<(usize, PartId)>>,
    /// Staged blocks: (order, id).
    staged: Vec<(usize, PartId)>,
    next: usize,
}

impl AzureAppend {
    fn stage(&mut self, data: Bytes, permit: Option<PartPermit>) {
        let (store, key, idx) = (self.store.clone(), path(&self.key), self.next);
        self.next += 1;
        self.inflight.spawn(async move {
            let r = store
                .put_part(&key, &String::new(), idx, PutPayload::from(data))
                .await;
            drop(permit);
            r.map(|id| (idx, id))
        });
    }

    async fn drain(&mut self, below: usize) -> Result<()> {
        while self.inflight.len() > below {
            if let Some(r) = self.inflight.join_next().await {
                let part = r
                    .map_err(|e| StorageError::Backend(format!("azure block task: {e}")))?
                    .map_err(|e| map_err("put block", &self.key, e))?;
                self.staged.push(part);
            }
        }
        Ok(())
    }

    /// Put Block List: the committed blocks, then the staged ones in order, if the blob is
    /// still the one whose list was read.
    async fn commit(&mut self) -> Result<()> {
        use base64::Engine as _;
        self.staged.sort_by_key(|(idx, _)| *idx);
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<BlockList>\n");
        for name in &self.committed {
            xml.push_str(&format!("<Committed>{name}</Committed>\n"));
        }
        for (_, id) in &self.staged {
            let name = base64::engine::general_purpose::STANDARD.encode(&id.content_id);
            xml.push_str(&format!("<Uncommitted>{name}</Uncommitted>\n"));
        }
        xml.push_str("</BlockList>\n");
        let fail = |e: String| {
            StorageError::Backend(format!("azure put block list (append) {}: {e}", self.key))
        };
        let url = self
            .store
            .signed_url(
                http::Method::PUT,
                &path(&self.key),
                Duration::from_secs(300),
            )
            .await
            .map_err(|e| map_err("sign", &self.key, e))?;
        let r = self
            .http
            .put(format!("{url}&comp=blocklist"))
            .header("If-Match", &self.etag)
            .header("Content-Type", "application/xml")
            .body(xml)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        match r.status().as_u16() {
            200..=299 => Ok(()),
            412 => Err(StorageError::Conflict(format!(
                "azure put block list (append) {}: another writer extended the blob first \
                 (412); it stays as that writer made it",
                self.key
            ))),
            st => {
                let body = r.text().await.unwrap_or_default();
                Err(fail(format!(
                    "HTTP {st}: {}",
                    body.chars().take(300).collect::<String>()
                )))
            }
        }
    }
}

#[async_trait]
impl PartSink for AzureAppend {
    async fn put_part(&mut self, data: Bytes, permit: PartPermit) -> Result<()> {
        if let Err(e) = self.drain(PARTS_IN_FLIGHT - 1).await {
            self.inflight.abort_all();
            return Err(e);
        }
        self.stage(data, Some(permit));
        Ok(())
    }

    async fn finish(mut self: Box<Self>, last: Bytes) -> Result<()> {
        if !last.is_empty() {
            self.stage(last, None);
        }
        if let Err(e) = self.drain(0).await {
            self.inflight.abort_all();
            return Err(e);
        }
        if self.staged.is_empty() {
            return Ok(());
        }
        self.commit().await
    }

    /// Staged blocks cannot be dropped on Azure; uncommitted, they change nothing and the
    /// blob's next commit discards them.
    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.inflight.abort_all();
        Ok(())
    }
}
