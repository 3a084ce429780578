//! The registry domain: blobs, uploads, manifests, tags, referrers and the catalog, on top of one
//! [`StorageDriver`] laid out as CNCF distribution lays it out.
//!
//! Depends on `oci`, `storage` and `config` (a leaf) only; never on HTTP types. Every operation takes validated names
//! and digests. Visibility rules:
//! - A blob is served from repository R only if R links it (`_layers` link or manifest revision).
//! - A finished upload becomes visible only after its digest is verified, by an atomic move into
//!   `blobs/`; a failed or interrupted upload never leaves a blob whose bytes do not match its digest.
//! - Tags are single link files replaced atomically: concurrent pushes of one tag end with the last
//!   writer's manifest, never a torn file.

mod blobs;
mod cache;
mod catalog;
mod error;
pub mod events;
pub mod hasher;
pub mod image_metadata;
mod manifests;
mod pullthrough;
mod upload_state;
mod uploads;

use std::sync::Arc;

pub use error::{RegistryError, Result};
pub use manifests::{default_platform_child, Manifest, PutManifest};
pub use pullthrough::{PullThrough, PulledBlob, UpstreamBlob, UpstreamError, UpstreamManifest};
pub use upload_state::{UploadSecret, UploadState};
pub use uploads::UploadSession;

use bytes::Bytes;
use cache::{DigestCache, LinkCache};
use events::{Event, EventSink};

use crate::config::{DEFAULT_GC_DELAY, DEFAULT_LINK_TTL};
use crate::oci::{Digest, ParsedManifest, RepositoryName};
use crate::storage::{layout, StorageDriver};

/// The byte streams blobs are read and written as.
pub use crate::storage::{ByteStream, NamePage};

/// Largest manifest accepted (the spec suggests at least 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// Behaviour switches from config.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `storage.delete.enabled`: whether blob and manifest deletes are allowed.
    pub delete_enabled: bool,
    /// Signs upload state (`http.secret`).
    pub secret: UploadSecret,
    /// `storage.cache.linkTTL`: how long the read paths trust a tag or link they read (zero: not
    /// at all). This process's own writes are seen at once either way; see `cache.rs`.
    pub link_cache_ttl: std::time::Duration,
    /// A push that finds a blob older than this (and not refreshed since) refreshes its age, so
    /// garbage collection does not take it (a quarter of `storage.maintenance.gc.delay`; zero: never).
    pub refresh_after: std::time::Duration,
}

impl RegistryOptions {
    /// Options with the defaults of config: deletes on, links cached for [`DEFAULT_LINK_TTL`].
    pub fn new(secret: UploadSecret) -> RegistryOptions {
        RegistryOptions {
            delete_enabled: true,
            secret,
            link_cache_ttl: DEFAULT_LINK_TTL,
            refresh_after: DEFAULT_GC_DELAY / 4,
        }
    }
}

/// The registry over one storage driver. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    driver: Arc<dyn StorageDriver>,
    options: Arc<RegistryOptions>,
    /// Digest-addressed metadata of the read paths (see `cache.rs` for what is never cached).
    manifests: Arc<DigestCache<Arc<(Bytes, ParsedManifest)>>>,
    blob_sizes: Arc<DigestCache<u64>>,
    /// Tag and link answers of the read paths, for `link_cache_ttl`.
    links: Arc<LinkCache>,
    /// The pull-through cache, when some repositories mirror an upstream (`pullthrough.rs`).
    pull: Option<Arc<pullthrough::PullState>>,
    /// Where events go (`None`: nobody listens, none are made).
    events: Option<Arc<dyn EventSink>>,
    /// Where pushed images are recorded (`None`: nowhere).
    image_metadata: Option<Arc<dyn image_metadata::ImageMetadata>>,
}

/// Manifests cached: at most this many, and this many bytes.
const MANIFEST_CACHE_ENTRIES: usize = 4096;
const MANIFEST_CACHE_BYTES: usize = 16 << 20;
/// Blob sizes cached.
const BLOB_SIZE_CACHE_ENTRIES: usize = 65536;
/// Link answers cached (an entry is its path and digest, ~300 bytes: ~5 MiB when full).
const LINK_CACHE_ENTRIES: usize = 16384;

impl Registry {
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions) -> Registry {
        Registry {
            driver,
            links: Arc::new(LinkCache::new(options.link_cache_ttl, LINK_CACHE_ENTRIES)),
            options: Arc::new(options),
            manifests: Arc::new(DigestCache::new(
                MANIFEST_CACHE_ENTRIES,
                MANIFEST_CACHE_BYTES,
            )),
            blob_sizes: Arc::new(DigestCache::new(BLOB_SIZE_CACHE_ENTRIES, usize::MAX)),
            pull: None,
            events: None,
            image_metadata: None,
        }
    }

    /// Records every pushed manifest through `hook` (OpenShift's ImageStreamMappings).
    pub fn with_image_metadata(mut self, hook: Arc<dyn image_metadata::ImageMetadata>) -> Registry {
        self.image_metadata = Some(hook);
        self
    }

    /// Sends this registry's events to `sink`.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Registry {
        self.events = Some(sink);
        self
    }

    /// Whether anybody listens to events.
    pub fn has_events(&self) -> bool {
        self.events.is_some()
    }

    /// Emits the event `make` builds, if anybody listens. A write's event is durable when this
    /// returns; failing to record it fails the operation (the write stays done: a retry of the
    /// request emits again).
    async fn emit(&self, make: impl FnOnce() -> Event) -> Result<()> {
        let Some(sink) = &self.events else {
            return Ok(());
        };
        sink.emit(make())
            .await
            .map_err(|e| RegistryError::Internal(format!("recording the event failed: {e}")))
    }

    /// Starts a write's event before its storage commit (see [`EventSink::begin`]); `None` when
    /// nobody listens. Hand the commit's result to [`Registry::finish_event`].
    async fn begin_event(
        &self,
        make: impl FnOnce() -> Event,
    ) -> Result<Option<Box<dyn events::PendingEvent>>> {
        let Some(sink) = &self.events else {
            return Ok(None);
        };
        sink.begin(make())
            .await
            .map(Some)
            .map_err(|e| RegistryError::Internal(format!("recording the event failed: {e}")))
    }

    /// Resolves an event [`Registry::begin_event`] started with the commit's result: a success
    /// returns once the event is durable; a failure drops the event and returns the error.
    async fn finish_event<T>(
        &self,
        pending: Option<Box<dyn events::PendingEvent>>,
        result: Result<T>,
    ) -> Result<T> {
        let Some(p) = pending else {
            return result;
        };
        match result {
            Ok(v) => {
                p.committed().await.map_err(|e| {
                    RegistryError::Internal(format!("recording the event failed: {e}"))
                })?;
                Ok(v)
            }
            Err(e) => {
                p.failed().await;
                Err(e)
            }
        }
    }

    /// What sinks ask about writes whose outcome they did not see (see [`events::WriteCheck`]).
    pub fn write_check(&self) -> Arc<dyn events::WriteCheck> {
        Arc::new(events::StorageCheck {
            driver: self.driver.clone(),
        })
    }

    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn check_delete(&self) -> Result<()> {
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::Unsupported(
                "deletes are disabled (storage.delete.enabled: false)".into(),
            ))
        }
    }

    /// Reads a link file; `None` if absent or not a digest.
    async fn read_link(&self, path: &str) -> Result<Option<Digest>> {
        match self.driver.get_content(path).await {
            Ok(b) => Ok(layout::parse_link(&b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// [`read_link`](Self::read_link) for the read paths, through the link cache of `name`.
    async fn read_link_cached(&self, name: &RepositoryName, path: &str) -> Result<Option<Digest>> {
        self.through_link_cache(name, path, self.read_link(path))
            .await
    }

    /// Whether the link at `path` (which names `d`) exists, for the read paths, through the link
    /// cache of `name`.
    async fn link_exists_cached(
        &self,
        name: &RepositoryName,
        path: &str,
        d: &Digest,
    ) -> Result<bool> {
        let read = async { Ok(self.exists(path).await?.then(|| d.clone())) };
        Ok(self.through_link_cache(name, path, read).await?.is_some())
    }

    /// The cached answer for `path`, else `read`'s (cached when found). `read` is lazy: it runs
    /// only after the cache's token is taken, so a write that lands meanwhile fences it off.
    async fn through_link_cache(
        &self,
        name: &RepositoryName,
        path: &str,
        read: impl std::future::Future<Output = Result<Option<Digest>>>,
    ) -> Result<Option<Digest>> {
        if let Some(d) = self.links.get(name.as_str(), path) {
            return Ok(Some(d));
        }
        let token = self.links.token();
        let found = read.await?;
        if let Some(d) = &found {
            self.links.insert(name.as_str(), path, d.clone(), token);
        }
        Ok(found)
    }

    /// Whether a file written whole is there (links, tombstones): on object stores one HEAD, a
    /// missing one costing no listing (see [`StorageDriver::stat_file`]).
    async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.driver.file_exists(path).await?)
    }

    /// Whether a folder (or a file) is there.
    async fn dir_exists(&self, path: &str) -> Result<bool> {
        match self.driver.stat(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a link file, unless it already says `d` (a re-pushed blob or manifest, a mount of a
    /// linked blob): reading it is cheaper than a synced replace.
    async fn write_link(&self, path: &str, d: &Digest) -> Result<()> {
        if self.read_link(path).await?.as_ref() == Some(d) {
            return Ok(());
        }
        Ok(self
            .driver
            .put_content(path, bytes::Bytes::from(d.to_string()))
            .await?)
    }

    /// Deletes a path, treating "already gone" as success.
    async fn delete_if_exists(&self, path: &str) -> Result<bool> {
        match self.driver.delete(path).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the repository exists at all: it holds manifests or layers. The folder of `a`
    /// exists as soon as `a/b` does, but `a` is no repository then.
    pub async fn repository_exists(&self, name: &RepositoryName) -> Result<bool> {
        for dir in layout::repo_content_dirs(name) {
            if self.dir_exists(&dir).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests;
