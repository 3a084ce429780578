//! The pull-through cache, domain side: what happens on a local miss in a repository that mirrors
//! an upstream registry. The upstream itself (HTTP, auth, which prefix goes where) lives in
//! `src/upstream/` behind the [`PullThrough`] trait; this file decides what is fetched, when, and
//! how it becomes local content:
//!
//! - Manifests by digest: fetched once, verified against the digest, cached for good.
//! - Manifests by tag: fetched on a miss and stored with the tag linked locally. Once the tag's
//!   link is older than the upstream's `ttl` (its modification time in storage, so every replica
//!   sharing the storage agrees), a `HEAD` revalidates it; only a changed digest is fetched. An
//!   upstream in trouble leaves the cached tag served (stale-if-error).
//! - Concurrent clients needing the same manifest from upstream make one request (a gate per
//!   repository and reference); an upstream failure answers those that waited for it.
//! - Blobs: one upstream fetch per digest in this process however many clients ask ([`Flight`]).
//!   The fetch writes into an unlinked spool file, hashing on the way, and never waits for a
//!   reader. Every client reads from byte 0 at its own pace, following the fetch (a late joiner
//!   tails it; a slow one holds up no one): what is within the last [`RECENT_MAX`] bytes it takes
//!   from the fetch's own buffers (shared, not copied), what is older from the spool (at most
//!   [`READ_CHUNK`] at a time). Its last byte waits only for the fetch's digest check, not for the
//!   blob to be stored. The store
//!   is one more reader of the spool: a one-shot upload that hashes and verifies again before the
//!   blob becomes visible, at the disk's pace. The fetch runs in its own task, so a client that
//!   disconnects aborts nothing. A blob already in the blob store (fetched by another repository
//!   or replica) is only confirmed with a `HEAD` upstream and linked, never fetched again.
//! - Read-only mode ([`Registry::with_read_only_pull_through`]): the same, but nothing is written;
//!   what is not stored is verified and served through.
//! - A cached tag the upstream answers 404 for stays served (the answer counts as a revalidation).
//! - Pushes into a proxied repository are refused (`Unsupported`, 405), as distribution does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;

use super::hasher::ResumableSha256;
use super::{ByteStream, Manifest, Registry, RegistryError, Result};
use crate::oci::{Algorithm, Digest, Reference, RepositoryName};
use crate::storage::layout;

/// Why the upstream gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream does not have it (404), or refused the credentials for it (401/403).
    #[error("not found upstream: {0}")]
    NotFound(String),
    /// 429 from the upstream; `retry_after` is its `Retry-After` header as sent.
    #[error("the upstream registry is rate limiting")]
    RateLimited { retry_after: Option<String> },
    /// The upstream answered 5xx / 503.
    #[error("the upstream registry is unavailable: {0}")]
    Unavailable(String),
    /// Unreachable, timed out, or an answer that makes no sense (a bad gateway).
    #[error("the upstream registry failed: {0}")]
    BadGateway(String),
}

/// A manifest as the upstream sent it.
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    pub body: Bytes,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`, if sent.
    pub digest: Option<Digest>,
}

/// A blob response from the upstream: its length (if sent) and its bytes.
pub struct UpstreamBlob {
    pub size: Option<u64>,
    pub stream: ByteStream,
}

/// How the domain reaches upstream registries. Implemented by `src/upstream/`.
#[async_trait]
pub trait PullThrough: Send + Sync + 'static {
    /// The revalidation interval of the upstream `name` is mirrored from, if any: `None` means
    /// the repository is a normal one.
    fn ttl_for(&self, name: &RepositoryName) -> Option<Duration>;
    /// `GET` a manifest (every manifest media type accepted).
    async fn manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<UpstreamManifest, UpstreamError>;
    /// `HEAD` a manifest: its digest.
    async fn manifest_digest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<Digest, UpstreamError>;
    /// `GET` a blob.
    async fn blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, UpstreamError>;
    /// `HEAD` a blob: its size.
    async fn blob_size(&self, name: &RepositoryName, digest: &Digest)
        -> Result<u64, UpstreamError>;
    /// Observes an outcome, for metrics: `kind` is `manifest` or `blob`, `hit` whether it was
    /// served from storage, `err` whether the upstream failed.
    fn observe(&self, _kind: &'static str, _hit: bool, _err: bool, _elapsed: Duration) {}
    /// Observes `n` blob bytes received from upstream, for metrics.
    fn observe_bytes(&self, _n: u64) {}
}

/// The pull-through state of a registry: the upstream and the fetches in flight.
pub(crate) struct PullState {
    upstream: Arc<dyn PullThrough>,
    /// Whether what is fetched is stored (false in read-only mode: served through, not kept).
    store: bool,
    /// Where fetches spool their bytes for the clients sharing them.
    spool_dir: std::path::PathBuf,
    flights: Mutex<HashMap<Digest, Arc<Flight>>>,
    /// Per `name\nreference`: one upstream manifest request at a time, and its last failure.
    manifest_gates: Mutex<HashMap<String, Arc<ManifestGate>>>,
}

/// One upstream manifest request at a time: `attempts` counts them, `last` holds the failure of
/// the latest one (a client that waited while an attempt ran takes its answer).
#[derive(Default)]
struct ManifestGate {
    attempts: std::sync::atomic::AtomicU64,
    last: tokio::sync::Mutex<Option<UpstreamError>>,
}
/// Gates kept before the idle ones are dropped.
const MAX_GATES: usize = 4096;

impl PullState {
    pub(crate) fn new(upstream: Arc<dyn PullThrough>, store: bool) -> PullState {
        PullState {
            upstream,
            store,
            spool_dir: std::env::temp_dir(),
            flights: Mutex::new(HashMap::new()),
            manifest_gates: Mutex::new(HashMap::new()),
        }
    }
}

/// Bytes a subscriber reads from the spool at a time (its only buffer).
const READ_CHUNK: u64 = 256 << 10;
/// The least a subscriber reads at a time while the fetch goes on.
const READ_MIN: u64 = 64 << 10;
/// The most upstream chunks written to the spool in one go.
const SPOOL_BATCH: usize = 64;
/// A batch waits for at least this many bytes, or [`BATCH_WAIT`], or the end: each batch costs
/// a write, a hash job and a wake-up of every reader, and a shaped or distant upstream sends
/// its bytes in pieces of tens of KiB.
const BATCH_MIN: usize = 1 << 20;
const BATCH_WAIT: Duration = Duration::from_millis(2);
/// The most of the latest spooled bytes a fetch also keeps as the upstream's own buffers
/// ([`FlightState::recent`]), for the readers that keep up.
const RECENT_MAX: u64 = 4 << 20;

/// Where one upstream blob fetch stands, as every subscriber sees it.
#[derive(Debug, Clone, Default)]
struct FlightState {
    /// The upstream's `Content-Length`, once it answered.
    size: Option<u64>,
    /// Every byte received so far, from the upstream's answer on.
    spool: Option<Arc<Spool>>,
    /// Bytes in the spool that subscribers may read.
    written: u64,
    /// The last of those bytes (at most [`RECENT_MAX`]) as the upstream's buffers, shared rather
    /// than copied: they end at `written` and start at `recent_start`. A reader that keeps up
    /// takes its bytes from here and never reads the spool (no copy, no blocking read).
    recent: std::collections::VecDeque<Bytes>,
    recent_start: u64,
    /// The fetch's end: every byte is `written` and matched the digest (`Ok`; it may still be
    /// being stored), or why not.
    fetched: Option<std::result::Result<(), FlightError>>,
    /// Verified (and stored, unless read-only): its size; or why it failed.
    done: Option<std::result::Result<u64, FlightError>>,
}

impl FlightState {
    /// `chunks`, just written to the spool, end at `end`: readable now, and kept in `recent`
    /// (the oldest dropped past [`RECENT_MAX`]).
    fn publish(&mut self, end: u64, chunks: Vec<Bytes>) {
        self.written = end;
        self.recent
            .extend(chunks.into_iter().filter(|c| !c.is_empty()));
        while end - self.recent_start > RECENT_MAX {
            match self.recent.pop_front() {
                Some(c) => self.recent_start += c.len() as u64,
                None => self.recent_start = end,
            }
        }
    }

    /// The bytes of `recent` in `[from, to)`, if `from` is still there.
    fn recent_range(&self, from: u64, to: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        if from < self.recent_start || from >= to {
            return out;
        }
        let mut at = self.recent_start;
        for c in &self.recent {
            let end = at + c.len() as u64;
            if end > from && at < to {
                let a = from.saturating_sub(at) as usize;
                let b = (to.min(end) - at) as usize;
                out.push(c.slice(a..b));
            }
            if end >= to {
                break;
            }
            at = end;
        }
        out
    }
}

#[derive(Debug, Clone)]
enum FlightError {
    Upstream(UpstreamError),
    Other(String),
}

/// One upstream fetch of a blob, shared by every client that asks for it meanwhile.
struct Flight {
    state: watch::Sender<FlightState>,
}

/// The bytes of one fetch in a file with no name: the fetch writes it, every subscriber reads it
/// at its own pace (a client joining late starts at byte 0, a slow one holds up nobody, and none
/// holds more than [`READ_CHUNK`] in memory). Where the storage's files are local
/// ([`StorageDriver::unnamed_file`](crate::storage::StorageDriver::unnamed_file): the filesystem)
/// it is the upload's own data file, named once verified: the bytes are written once. Elsewhere
/// it is a temporary file the upload copies into the store. Either way the space is freed when
/// the fetch and the last subscriber drop it, also after a crash, unless it was named.
#[derive(Debug)]
enum Spool {
    Temp(std::fs::File),
    InStore(crate::storage::UnnamedFile),
}

impl Spool {
    async fn create(dir: std::path::PathBuf) -> std::io::Result<Arc<Spool>> {
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            let path = dir.join(format!(".image-registry-spool-{}", uuid::Uuid::new_v4()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(Arc::new(Spool::Temp(file)))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    fn file(&self) -> &std::fs::File {
        match self {
            Spool::Temp(f) => f,
            Spool::InStore(u) => u.file(),
        }
    }
}

/// What a pull of a blob gives the HTTP layer.
pub enum PulledBlob {
    /// The blob is stored and linked now: serve it as any other (its size).
    Stored(u64),
    /// Being fetched: the bytes as they arrive (the stream fails instead of ending if the digest
    /// does not match), and the size if known.
    Streaming {
        size: Option<u64>,
        stream: ByteStream,
    },
}

fn failure(e: FlightError) -> RegistryError {
    match e {
        FlightError::Upstream(u) => RegistryError::Upstream(u),
        FlightError::Other(m) => RegistryError::Internal(m),
    }
}

fn not_found_manifest(reference: &Reference) -> RegistryError {
    RegistryError::ManifestUnknown(format!("unknown manifest {reference} (also upstream)"))
}

impl Registry {
    /// Turns on the pull-through cache for the repositories `upstream` claims.
    pub fn with_pull_through(mut self, upstream: Arc<dyn PullThrough>) -> Registry {
        self.pull = Some(Arc::new(PullState::new(upstream, true)));
        self
    }

    /// The pull-through cache of a read-only registry (`readOnly: true`): what is not stored is
    /// served through from the upstream (verified the same way) and nothing is written.
    pub fn with_read_only_pull_through(mut self, upstream: Arc<dyn PullThrough>) -> Registry {
        self.pull = Some(Arc::new(PullState::new(upstream, false)));
        self
    }

    /// Rewrites a cached tag's link so its revalidation clock (the link's age, which every
    /// replica reads) starts again. Read-only mode writes nothing: it asks again on the next pull.
    async fn restart_tag_clock(
        &self,
        name: &RepositoryName,
        tag: &crate::oci::Tag,
        digest: &Digest,
    ) -> Result<()> {
        if !self.pull_through_stores() {
            return Ok(());
        }
        let link = layout::tag_current_link(name, tag);
        self.driver
            .put_content(&link, Bytes::from(digest.to_string()))
            .await?;
        Ok(())
    }

    /// Whether the pull-through cache stores what it fetches (not in read-only mode).
    pub fn pull_through_stores(&self) -> bool {
        self.pull.as_ref().is_some_and(|p| p.store)
    }

    /// The saved progress of the sync of upstream `prefix`, if a run left one.
    pub async fn sync_state(&self, prefix: &str) -> Result<Option<Bytes>> {
        match self.driver.get_content(&layout::sync_state(prefix)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Saves the progress of the sync of upstream `prefix` (`None`: the run finished).
    pub async fn put_sync_state(&self, prefix: &str, state: Option<Bytes>) -> Result<()> {
        let path = layout::sync_state(prefix);
        match state {
            Some(b) => Ok(self.driver.put_content(&path, b).await?),
            None => match self.driver.delete(&path).await {
                Err(e) if !e.is_not_found() => Err(e.into()),
                _ => Ok(()),
            },
        }
    }

    /// The revalidation interval if `name` mirrors an upstream.
    pub fn proxied_ttl(&self, name: &RepositoryName) -> Option<Duration> {
        self.pull.as_ref().and_then(|p| p.upstream.ttl_for(name))
    }

    /// Whether `name` mirrors an upstream.
    pub fn is_proxied(&self, name: &RepositoryName) -> bool {
        self.proxied_ttl(name).is_some()
    }

    /// Refuses pushes into a mirrored repository.
    pub(crate) fn refuse_push(&self, name: &RepositoryName) -> Result<()> {
        if self.is_proxied(name) {
            return Err(RegistryError::Unsupported(format!(
                "{name} is a pull-through cache of an upstream registry: pushes are not accepted"
            )));
        }
        Ok(())
    }

    fn upstream(&self) -> Result<Arc<dyn PullThrough>> {
        self.pull
            .as_ref()
            .map(|p| p.upstream.clone())
            .ok_or_else(|| RegistryError::Internal("no pull-through upstream".into()))
    }

    /// `get_manifest` for a mirrored repository. What needs the upstream (a miss, a stale tag)
    /// goes through a gate per repository and reference: concurrent clients make one upstream
    /// request; those that waited find the result stored, or share the upstream failure instead
    /// of asking again.
    pub(crate) async fn get_manifest_proxied(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        ttl: Duration,
    ) -> Result<Manifest> {
        let up = self.upstream()?;
        let started = std::time::Instant::now();
        if let Some(m) = self.fresh_manifest(name, reference, ttl).await? {
            up.observe("manifest", true, false, started.elapsed());
            return Ok(m);
        }
        let state = self
            .pull
            .clone()
            .ok_or_else(|| RegistryError::Internal("no pull-through upstream".into()))?;
        let key = format!("{name}\n{reference}");
        let gate = {
            let mut gates = state
                .manifest_gates
                .lock()
                .map_err(|_| RegistryError::Internal("pull-through state poisoned".into()))?;
            if gates.len() > MAX_GATES {
                gates.retain(|_, g| Arc::strong_count(g) > 1);
            }
            gates.entry(key.clone()).or_default().clone()
        };
        let seen = gate.attempts.load(std::sync::atomic::Ordering::SeqCst);
        let mut failed = gate.last.lock().await;
        // Another client may have fetched or revalidated it meanwhile.
        if let Some(m) = self.fresh_manifest(name, reference, ttl).await? {
            up.observe("manifest", true, false, started.elapsed());
            return Ok(m);
        }
        let ran_meanwhile = gate.attempts.load(std::sync::atomic::Ordering::SeqCst) != seen;
        if let (true, Some(e)) = (ran_meanwhile, failed.as_ref()) {
            let e = e.clone();
            return match self.resolve(name, reference).await {
                Ok(d) => self.read_manifest(&d).await,
                Err(_) => Err(RegistryError::Upstream(e)),
            };
        }
        let (r, upstream_failure) = self.manifest_from_upstream(name, reference).await;
        gate.attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        up.observe(
            "manifest",
            false,
            upstream_failure.is_some(),
            started.elapsed(),
        );
        match upstream_failure {
            Some(e) => *failed = Some(e),
            None => {
                *failed = None;
                if let Ok(mut gates) = state.manifest_gates.lock() {
                    gates.remove(&key);
                }
            }
        }
        r
    }

    /// The manifest if it is stored and needs no upstream: by digest, or a tag younger than `ttl`.
    async fn fresh_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        ttl: Duration,
    ) -> Result<Option<Manifest>> {
        match (self.resolve(name, reference).await, reference) {
            (Ok(d), Reference::Digest(_)) => Ok(Some(self.read_manifest(&d).await?)),
            (Ok(d), Reference::Tag(tag)) => {
                if self
                    .tag_is_stale(&layout::tag_current_link(name, tag), ttl)
                    .await?
                {
                    Ok(None)
                } else {
                    Ok(Some(self.read_manifest(&d).await?))
                }
            }
            (Err(RegistryError::ManifestUnknown(_)), _) => Ok(None),
            (Err(e), _) => Err(e),
        }
    }

    /// A miss or a stale tag: fetch, or revalidate with a `HEAD` (serving the cached tag when the
    /// upstream fails). The second value is the upstream failure, if there was one.
    async fn manifest_from_upstream(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> (Result<Manifest>, Option<UpstreamError>) {
        let up = match self.upstream() {
            Ok(u) => u,
            Err(e) => return (Err(e), None),
        };
        let local = self.resolve(name, reference).await;
        let r = match (local, reference) {
            (Ok(d), Reference::Tag(tag)) => match up.manifest_digest(name, reference).await {
                Ok(remote) if remote == d => {
                    // Still current: restart the clock.
                    if let Err(e) = self.restart_tag_clock(name, tag, &d).await {
                        return (Err(e), None);
                    }
                    self.read_manifest(&d).await
                }
                Ok(remote) => {
                    tracing::info!(repository = %name, %tag, old = %d, new = %remote, "upstream tag moved");
                    self.fetch_manifest(name, reference, Some(&remote)).await
                }
                Err(UpstreamError::NotFound(why)) => {
                    // The tag is gone upstream (or the credentials no longer reach it): the
                    // cached copy stays served, as a mirror that outlives its upstream should;
                    // the answer counts as a revalidation (one HEAD per ttl). Deleting the tag
                    // here drops it (the next pull is a miss).
                    tracing::warn!(repository = %name, %tag, upstream = %why,
                        "a cached tag is not found upstream; serving the cached one");
                    if let Err(e) = self.restart_tag_clock(name, tag, &d).await {
                        return (Err(e), None);
                    }
                    self.read_manifest(&d).await
                }
                Err(e) => {
                    tracing::warn!(repository = %name, %tag, error = %e,
                        "cannot revalidate a cached tag upstream; serving the cached one");
                    return (self.read_manifest(&d).await, Some(e));
                }
            },
            (Ok(d), Reference::Digest(_)) => self.read_manifest(&d).await,
            (Err(RegistryError::ManifestUnknown(_)), _) => {
                self.fetch_manifest(name, reference, None).await
            }
            (Err(e), _) => Err(e),
        };
        let failure = match &r {
            Err(RegistryError::Upstream(e)) => Some(e.clone()),
            _ => None,
        };
        (r, failure)
    }

    /// Whether the tag link at `path` was last written (fetched or revalidated) more than `ttl`
    /// ago. A store that reports no modification time counts as stale.
    async fn tag_is_stale(&self, path: &str, ttl: Duration) -> Result<bool> {
        let info = match self.driver.stat(path).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        Ok(match info.modified {
            Some(m) => SystemTime::now()
                .duration_since(m)
                .map(|age| age >= ttl)
                .unwrap_or(false),
            None => true,
        })
    }

    /// Fetches a manifest upstream and stores it (linked under the tag for a tag reference).
    /// `expect` is the digest a revalidation saw, checked against what arrives.
    async fn fetch_manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        expect: Option<&Digest>,
    ) -> Result<Manifest> {
        let up = self.upstream()?;
        let m = match up.manifest(name, reference).await {
            Ok(m) => m,
            Err(UpstreamError::NotFound(_)) => return Err(not_found_manifest(reference)),
            Err(e) => return Err(RegistryError::Upstream(e)),
        };
        let wanted = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => m
                .digest
                .clone()
                .filter(|d| d.algorithm() == Algorithm::Sha256),
        };
        if let Some(want) = &wanted {
            let actual = Digest::of(want.algorithm(), &m.body);
            if &actual != want {
                return Err(RegistryError::Upstream(UpstreamError::BadGateway(format!(
                    "upstream manifest has digest {actual}, not {want}"
                ))));
            }
        }
        if let (Some(e), Reference::Tag(_)) = (expect, reference) {
            let actual = Digest::of(e.algorithm(), &m.body);
            if &actual != e {
                tracing::info!(repository = %name, expected = %e, got = %actual,
                    "upstream tag moved again while revalidating");
            }
        }
        if !self.pull_through_stores() {
            // Read-only mode: served as fetched (checked and parsed as a stored one), not kept.
            if m.body.len() > super::MAX_MANIFEST_SIZE {
                return Err(RegistryError::Upstream(UpstreamError::BadGateway(
                    "upstream sent a manifest that is too large".into(),
                )));
            }
            let digest = wanted.unwrap_or_else(|| Digest::of(Algorithm::Sha256, &m.body));
            let parsed = crate::oci::ParsedManifest::parse(&m.body, m.content_type.as_deref())
                .map_err(|e| {
                    RegistryError::Upstream(UpstreamError::BadGateway(format!(
                        "upstream sent an invalid manifest: {e}"
                    )))
                })?;
            return Ok(Manifest {
                digest,
                media_type: parsed.media_type.clone(),
                body: m.body,
                parsed,
            });
        }
        let put = self
            .store_manifest(name, reference, m.content_type.as_deref(), m.body, false)
            .await
            .map_err(|e| match e {
                RegistryError::ManifestInvalid(why) => RegistryError::Upstream(
                    UpstreamError::BadGateway(format!("upstream sent an invalid manifest: {why}")),
                ),
                other => other,
            })?;
        self.read_manifest(&put.digest).await
    }

    /// The size of a blob `name` may serve, asking the upstream (`HEAD`) when it is not stored:
    /// for `HEAD` requests, which fetch nothing. A blob in the blob store that the upstream
    /// confirms is linked.
    pub async fn pulled_blob_size(&self, name: &RepositoryName, digest: &Digest) -> Result<u64> {
        let up = self.upstream()?;
        let size = up
            .blob_size(name, digest)
            .await
            .map_err(|e| blob_err(e, digest))?;
        if self.pull_through_stores() && self.stat_global_blob(digest).await? == Some(size) {
            self.link_blob(name, digest).await?;
        }
        Ok(size)
    }

    /// A blob of a mirrored repository that is not linked locally: linked if the blob store has
    /// it (after the upstream confirms the repository has it), else fetched once upstream, shared
    /// with every client asking meanwhile. With `wait`, returns only once the blob is stored
    /// (read-only mode stores nothing: it always streams).
    pub async fn pull_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        wait: bool,
    ) -> Result<PulledBlob> {
        let state = self
            .pull
            .clone()
            .ok_or_else(|| RegistryError::Internal("no pull-through upstream".into()))?;
        let started = std::time::Instant::now();
        // A fetch in flight is joined first: its clients may be served before it has linked
        // the blob, and asking upstream again for a blob it is storing would be a waste.
        let in_flight = state
            .flights
            .lock()
            .map_err(|_| RegistryError::Internal("pull-through state poisoned".into()))?
            .contains_key(digest);
        let stored = match in_flight {
            true => None,
            false => self.stat_global_blob(digest).await?,
        };
        if let Some(size) = stored {
            let confirmed = state.upstream.blob_size(name, digest).await;
            match confirmed {
                Ok(_) => {
                    // Read-only: served from the blob store as it is, not linked.
                    if state.store {
                        self.link_blob(name, digest).await?;
                    }
                    state
                        .upstream
                        .observe("blob", true, false, started.elapsed());
                    return Ok(PulledBlob::Stored(size));
                }
                Err(e) => return Err(blob_err(e, digest)),
            }
        }
        let (flight, leader) = {
            let mut flights = state
                .flights
                .lock()
                .map_err(|_| RegistryError::Internal("pull-through state poisoned".into()))?;
            match flights.get(digest) {
                Some(f) => (f.clone(), false),
                None => {
                    let (tx, _) = watch::channel(FlightState::default());
                    let f = Arc::new(Flight { state: tx });
                    flights.insert(digest.clone(), f.clone());
                    (f, true)
                }
            }
        };
        let mut rx = flight.state.subscribe();
        if leader {
            let reg = self.clone();
            let name = name.clone();
            let digest = digest.clone();
            let flight = flight.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let r = reg.run_flight(&name, &digest, &flight, &state).await;
                if let Err(e) = &r {
                    tracing::warn!(repository = %name, %digest, error = ?e, "pull-through fetch failed");
                }
                let failed = matches!(r, Err(FlightError::Upstream(_)));
                state
                    .upstream
                    .observe("blob", false, failed, started.elapsed());
                flight.state.send_modify(|s| s.done = Some(r));
                if let Ok(mut f) = state.flights.lock() {
                    f.remove(&digest);
                }
            });
        }
        loop {
            let (done, spool, size) = {
                let s = rx.borrow_and_update();
                (s.done.clone(), s.spool.clone(), s.size)
            };
            match (&done, &spool) {
                (Some(Err(FlightError::Upstream(e))), _) => {
                    return Err(blob_err(e.clone(), digest))
                }
                (Some(Err(e)), _) => return Err(failure(e.clone())),
                (Some(Ok(size)), _) if state.store => return Ok(PulledBlob::Stored(*size)),
                // Streams from byte 0 whenever it joins: what is spooled, then the live fetch.
                (_, Some(spool)) if !wait || !state.store => {
                    return Ok(PulledBlob::Streaming {
                        size,
                        stream: spool_reader(spool.clone(), rx),
                    });
                }
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(RegistryError::Internal(
                    "the pull-through fetch vanished".into(),
                ));
            }
        }
    }

    /// The fetch itself: upstream `GET`; the bytes go into the spool, hashed on the way
    /// ([`pump`]), which the subscribers read at their own pace. Unless read-only, they are
    /// stored through a one-shot upload: on the filesystem the spool is the upload's data file,
    /// named once verified (with the fetch's hash state, so the commit reads nothing back);
    /// elsewhere the upload is one more reader of the spool (hashed again, verified, copied). The
    /// commit (sync, claim, move into the blob store, link) is the normal one, and the fetch, so
    /// the clients, never wait for it.
    async fn run_flight(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        flight: &Arc<Flight>,
        state: &Arc<PullState>,
    ) -> std::result::Result<u64, FlightError> {
        let other = |e: RegistryError| FlightError::Other(e.to_string());
        let blob = state
            .upstream
            .blob(name, digest)
            .await
            .map_err(FlightError::Upstream)?;
        let mut session = match state.store {
            true => Some(self.begin_upload(name).await.map_err(other)?),
            false => None,
        };
        let unnamed = match &session {
            Some(s) => self
                .driver
                .unnamed_file(&layout::upload_data(name, &s.uuid))
                .await
                .map_err(|e| other(e.into()))?,
            None => None,
        };
        let spool = match unnamed {
            Some(u) => Arc::new(Spool::InStore(u)),
            None => Spool::create(state.spool_dir.clone()).await.map_err(|e| {
                FlightError::Other(format!(
                    "cannot create a spool file in {}: {e}",
                    state.spool_dir.display()
                ))
            })?,
        };
        let expected = blob.size;
        flight.state.send_modify(|s| {
            s.size = blob.size;
            s.spool = Some(spool.clone());
        });
        let reader = spool_reader(spool.clone(), flight.state.subscribe());
        let pump = pump(
            blob.stream,
            spool.clone(),
            flight,
            state.upstream.clone(),
            digest,
        );
        let r = match (&mut session, &*spool) {
            (None, _) => pump.await.map(|(n, _)| n),
            (Some(s), Spool::InStore(_)) => {
                let stored = async {
                    let (size, hash) = pump.await?;
                    let sp = spool.clone();
                    tokio::task::spawn_blocking(move || match &*sp {
                        Spool::InStore(u) => u.name(),
                        Spool::Temp(_) => Ok(()),
                    })
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|e| {
                        FlightError::Other(format!("naming the fetched blob's file failed: {e}"))
                    })?;
                    if let Some(h) = hash.resumable() {
                        self.driver
                            .put_content_unsynced(
                                &layout::upload_hashstate(name, &s.uuid, size),
                                Bytes::from(h.marshal()),
                            )
                            .await
                            .map_err(|e| other(e.into()))?;
                    }
                    self.complete_upload(s, digest, None, None)
                        .await
                        .map_err(|e| {
                            FlightError::Other(format!("storing the fetched blob failed: {e}"))
                        })
                }
                .await;
                if stored.is_err() {
                    let _ = self.cancel_upload(s).await;
                }
                stored
            }
            (Some(s), Spool::Temp(_)) => {
                let (pumped, stored) =
                    tokio::join!(pump, self.complete_upload(s, digest, None, Some(reader)));
                match (pumped, stored) {
                    (Ok(_), Ok(size)) => Ok(size),
                    (Err(e), stored) => {
                        if stored.is_err() {
                            let _ = self.cancel_upload(s).await;
                        }
                        Err(e)
                    }
                    (Ok(_), Err(e)) => {
                        // The clients have their verified bytes; only storing them failed.
                        let _ = self.cancel_upload(s).await;
                        Err(FlightError::Other(format!(
                            "storing the fetched blob failed: {e}"
                        )))
                    }
                }
            }
        };
        if let (Ok(size), Some(e)) = (&r, expected) {
            if e != *size {
                // Verified by digest, so the bytes are right; the header was not.
                tracing::warn!(%digest, size, expected = e, "upstream sent a wrong Content-Length");
            }
        }
        r
    }
}

/// Copies the upstream's bytes into the spool, hashing them on the way, and publishes how far
/// it got; at the end, whether they match `digest` (`fetched`). Never waits for a reader: the
/// spool is the only buffer (the page cache's to keep or write back).
async fn pump(
    upstream: ByteStream,
    spool: Arc<Spool>,
    flight: &Arc<Flight>,
    up: Arc<dyn PullThrough>,
    digest: &Digest,
) -> std::result::Result<(u64, StreamHash), FlightError> {
    let r = pump_inner(upstream, spool, flight, up, digest).await;
    flight.state.send_modify(|s| {
        s.fetched = Some(r.as_ref().map(|_| ()).map_err(|e| e.clone()));
    });
    r
}

async fn pump_inner(
    upstream: ByteStream,
    spool: Arc<Spool>,
    flight: &Arc<Flight>,
    up: Arc<dyn PullThrough>,
    digest: &Digest,
) -> std::result::Result<(u64, StreamHash), FlightError> {
    type Job<T> = tokio::task::JoinHandle<std::io::Result<T>>;
    type Joined<T> = std::result::Result<std::io::Result<T>, tokio::task::JoinError>;
    fn joined<T>(r: Joined<T>) -> std::result::Result<T, FlightError> {
        r.map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| FlightError::Other(format!("writing the spool file failed: {e}")))
    }
    async fn finish<T>(job: Job<T>) -> std::result::Result<T, FlightError> {
        joined(job.await)
    }
    // Three stages overlap: the next batch arrives from upstream while the last one is written
    // (one blocking task) and hashed (another); each waits only for its own predecessor. A
    // write that ends before the next batch arrives is published then (a slow upstream's
    // readers do not wait for its next piece to see this one).
    let mut batches = std::pin::pin!(batches(upstream));
    let mut offset = 0u64;
    let mut hash = Some(StreamHash::new(digest.algorithm()));
    let mut hashing: Option<Job<StreamHash>> = None;
    let mut writing: Option<(Job<()>, u64, Vec<Bytes>)> = None;
    let mut failed = None;
    loop {
        let batch = match writing.take() {
            None => batches.next().await,
            Some((mut w, end, chunks)) => {
                let mut next = std::pin::pin!(batches.next());
                tokio::select! {
                    b = &mut next => {
                        writing = Some((w, end, chunks));
                        b
                    }
                    done = &mut w => {
                        joined(done)?;
                        flight.state.send_modify(|s| s.publish(end, chunks));
                        next.await
                    }
                }
            }
        };
        let Some(batch) = batch else { break };
        let mut ok = Vec::with_capacity(batch.len());
        for c in batch {
            match c {
                Ok(c) => ok.push(c),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let len: u64 = ok.iter().map(|c| c.len() as u64).sum();
        up.observe_bytes(len);
        if let Some((w, end, chunks)) = writing.take() {
            finish(w).await?;
            flight.state.send_modify(|s| s.publish(end, chunks));
        }
        let prev = match hashing.take() {
            Some(h) => Some(finish(h).await?),
            None => hash.take(),
        };
        let (sp, at, chunks) = (spool.clone(), offset, ok.clone());
        let w = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut o = at;
            for c in &chunks {
                sp.file().write_all_at(c, o)?;
                o += c.len() as u64;
            }
            Ok(())
        });
        offset += len;
        writing = Some((w, offset, ok.clone()));
        hashing = Some(tokio::task::spawn_blocking(move || {
            let mut h = prev.ok_or_else(|| std::io::Error::other("the fetch lost its hash"))?;
            for c in &ok {
                h.update(c);
            }
            Ok(h)
        }));
        if failed.is_some() {
            break;
        }
    }
    if let Some((w, end, chunks)) = writing.take() {
        finish(w).await?;
        flight.state.send_modify(|s| s.publish(end, chunks));
    }
    let hash = match hashing.take() {
        Some(h) => finish(h).await?,
        None => hash.ok_or_else(|| FlightError::Other("the fetch lost its hash".into()))?,
    };
    if let Some(e) = failed {
        return Err(FlightError::Upstream(UpstreamError::BadGateway(format!(
            "reading the blob from upstream failed: {e}"
        ))));
    }
    let actual = hash.finish();
    if &actual != digest {
        return Err(FlightError::Upstream(UpstreamError::BadGateway(format!(
            "upstream sent a wrong blob: content has digest {actual}, not {digest}"
        ))));
    }
    Ok((offset, hash))
}

/// The upstream's chunks in batches: at least [`BATCH_MIN`] bytes unless [`BATCH_WAIT`] passes
/// first or the stream ends; a chunk that is an error ends its batch (and the pump stops there).
fn batches(upstream: ByteStream) -> impl futures::Stream<Item = Vec<std::io::Result<Bytes>>> {
    futures::stream::unfold((upstream, false), |(mut up, ended)| async move {
        if ended {
            return None;
        }
        let first = up.next().await?;
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        let size = |c: &std::io::Result<Bytes>| c.as_ref().map_or(0, |c| c.len());
        let (mut len, mut stop) = (size(&first), first.is_err());
        let mut batch = vec![first];
        let mut ended = false;
        while !stop && len < BATCH_MIN && batch.len() < SPOOL_BATCH {
            match tokio::time::timeout_at(deadline, up.next()).await {
                Ok(Some(c)) => {
                    len += size(&c);
                    stop = c.is_err();
                    batch.push(c);
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(_) => break,
            }
        }
        Some((batch, (up, ended)))
    })
}

/// A streaming hash of either algorithm; the sha256 one resumable, so a fetch that is the
/// upload's own file hands its state to the commit.
enum StreamHash {
    Sha256(ResumableSha256),
    Sha512(sha2::Sha512),
}

impl StreamHash {
    fn new(a: Algorithm) -> StreamHash {
        use sha2::Digest as _;
        match a {
            Algorithm::Sha256 => StreamHash::Sha256(ResumableSha256::new()),
            Algorithm::Sha512 => StreamHash::Sha512(sha2::Sha512::new()),
        }
    }
    fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            StreamHash::Sha256(h) => h.update(data),
            StreamHash::Sha512(h) => h.update(data),
        }
    }
    fn finish(&self) -> Digest {
        use sha2::Digest as _;
        match self {
            StreamHash::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finish()),
            StreamHash::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.clone().finalize()),
        }
    }
    fn resumable(&self) -> Option<&ResumableSha256> {
        match self {
            StreamHash::Sha256(h) => Some(h),
            StreamHash::Sha512(_) => None,
        }
    }
}

fn blob_err(e: UpstreamError, digest: &Digest) -> RegistryError {
    match e {
        UpstreamError::NotFound(_) => RegistryError::BlobUnknown(digest.clone()),
        other => RegistryError::Upstream(other),
    }
}

/// A reader of a fetch (a client, or the upload that stores it): the spool from byte 0,
/// following the fetch as it writes. The last byte is held back until the fetch says the digest
/// matched (a client never receives a complete wrong blob), but not until it is stored; a failed
/// fetch ends the stream with an error.
fn spool_reader(spool: Arc<Spool>, rx: watch::Receiver<FlightState>) -> ByteStream {
    struct St {
        spool: Arc<Spool>,
        rx: watch::Receiver<FlightState>,
        pos: u64,
        /// Taken from the fetch's `recent` buffers, not yet handed on (`pos` is past them).
        taken: std::collections::VecDeque<Bytes>,
        finished: bool,
    }
    let st = St {
        spool,
        rx,
        pos: 0,
        taken: Default::default(),
        finished: false,
    };
    let fail = |mut st: St, m: String| {
        st.finished = true;
        Some((Err(std::io::Error::other(m)), st))
    };
    Box::pin(futures::stream::unfold(st, move |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            if let Some(b) = st.taken.pop_front() {
                return Some((Ok(b), st));
            }
            let (limit, end, failed) = {
                let s = st.rx.borrow_and_update();
                let (limit, end, failed) = match (&s.fetched, &s.done) {
                    (Some(Ok(())), _) => (s.written, true, false),
                    (Some(Err(_)), _) | (None, Some(Err(_))) => (0, false, true),
                    (None, Some(Ok(size))) => (*size, true, false),
                    (None, None) => (s.written.saturating_sub(1), false, false),
                };
                if !failed {
                    let recent = s.recent_range(st.pos, limit);
                    st.pos += recent.iter().map(|b| b.len() as u64).sum::<u64>();
                    st.taken.extend(recent);
                }
                (limit, end, failed)
            };
            if failed {
                return fail(st, "the upstream fetch failed".into());
            }
            if !st.taken.is_empty() {
                continue;
            }
            // Reads of at least READ_MIN unless the end is known: a fast fetch publishes
            // progress in small steps, and a read per step costs more than the bytes.
            if st.pos < limit && (end || limit - st.pos >= READ_MIN) {
                let n = (limit - st.pos).min(READ_CHUNK);
                let (sp, at) = (st.spool.clone(), st.pos);
                let r = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; n as usize];
                    sp.file().read_exact_at(&mut buf, at)?;
                    Ok::<_, std::io::Error>(Bytes::from(buf))
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                return match r {
                    Ok(b) => {
                        st.pos += n;
                        Some((Ok(b), st))
                    }
                    Err(e) => fail(st, format!("reading the spool file failed: {e}")),
                };
            }
            if end {
                return None;
            }
            if st.rx.changed().await.is_err() {
                return fail(st, "the upstream fetch vanished".into());
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    //! The fetch's hand-over to its clients, on the in-memory driver with a fake upstream (one
    //! blob, no HTTP): what a client receives does not wait for the blob to be stored.

    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;
    use futures::TryStreamExt;

    use super::*;
    use crate::registry::tests::read_blob;
    use crate::registry::{RegistryOptions, UploadSecret};
    use crate::storage::memory::hooked::{Hooked, Hooks};
    use crate::storage::memory::MemoryDriver;
    use crate::storage::StorageDriver;
    /// An upstream with one blob, sent in 64 KiB chunks.
    /// With a gate, the stream waits for it before its second chunk (an upstream that stalls).
    struct OneBlob(Bytes, Option<Arc<tokio::sync::Notify>>);

    #[async_trait]
    impl PullThrough for OneBlob {
        fn ttl_for(&self, _: &RepositoryName) -> Option<Duration> {
            Some(Duration::from_secs(3600))
        }
        async fn manifest(
            &self,
            _: &RepositoryName,
            r: &Reference,
        ) -> Result<UpstreamManifest, UpstreamError> {
            Err(UpstreamError::NotFound(r.to_string()))
        }
        async fn manifest_digest(
            &self,
            _: &RepositoryName,
            r: &Reference,
        ) -> Result<Digest, UpstreamError> {
            Err(UpstreamError::NotFound(r.to_string()))
        }
        async fn blob(
            &self,
            _: &RepositoryName,
            _: &Digest,
        ) -> Result<UpstreamBlob, UpstreamError> {
            let chunks: Vec<std::io::Result<Bytes>> = (0..self.0.len())
                .step_by(64 << 10)
                .map(|i| Ok(self.0.slice(i..(i + (64 << 10)).min(self.0.len()))))
                .collect();
            let gate = self.1.clone();
            let stream = futures::stream::iter(chunks)
                .enumerate()
                .then(move |(i, c)| {
                    let gate = gate.clone().filter(|_| i == 1);
                    async move {
                        if let Some(g) = gate {
                            g.notified().await;
                        }
                        c
                    }
                });
            Ok(UpstreamBlob {
                size: Some(self.0.len() as u64),
                stream: Box::pin(stream),
            })
        }
        async fn blob_size(&self, _: &RepositoryName, _: &Digest) -> Result<u64, UpstreamError> {
            Ok(self.0.len() as u64)
        }
    }

    /// Hooks that make renames (an upload moving into the blob store) wait until the test lets
    /// them go: a disk that is slow to take the blob.
    struct SlowToStore(tokio::sync::Semaphore);

    #[async_trait]
    impl Hooks for SlowToStore {
        async fn before(&self, _: &MemoryDriver, op: &'static str, _: &[String]) {
            if op == "rename" {
                let _go = self.0.acquire().await;
            }
        }
    }

    fn cache(driver: Arc<Hooked<SlowToStore>>, blob: &Bytes) -> Registry {
        Registry::new(driver, RegistryOptions::new(UploadSecret::new("s")))
            .with_pull_through(Arc::new(OneBlob(blob.clone(), None)))
    }

    /// `len` bytes of a pattern repeating every `period`.
    fn pattern(len: u32, period: u32) -> Bytes {
        Bytes::from((0..len).map(|i| (i % period) as u8).collect::<Vec<u8>>())
    }

    /// Waits (10 s at most, else fails with `why`) until `digest` is in the blob store.
    async fn wait_stored(reg: &Registry, digest: &Digest, why: &str) {
        let stored = async {
            while reg.stat_global_blob(digest).await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), stored)
            .await
            .expect(why);
    }

    fn alpine() -> RepositoryName {
        "docker.io/library/alpine".parse().unwrap()
    }

    /// The stream of a first (cold) pull of `digest` from `reg`'s mirror of docker.io.
    async fn cold_pull(reg: &Registry, digest: &Digest) -> ByteStream {
        match reg.pull_blob(&alpine(), digest, false).await.unwrap() {
            PulledBlob::Streaming { stream, .. } => stream,
            PulledBlob::Stored(_) => panic!("a cold blob is stored already"),
        }
    }

    /// A cold pull's client gets every byte once the digest matched, while the blob is still
    /// being stored; the blob becomes visible only after that, and a wrong blob never completes.
    #[tokio::test]
    async fn a_cold_pull_ends_when_the_bytes_are_verified_not_when_they_are_stored() {
        let blob = pattern(3_000_000u32, 251);
        let digest = Digest::sha256_of(&blob);
        let driver = Arc::new(Hooked::new(SlowToStore(tokio::sync::Semaphore::new(0))));
        let reg = cache(driver.clone(), &blob);
        let stream = cold_pull(&reg, &digest).await;
        let got: Vec<Bytes> = tokio::time::timeout(Duration::from_secs(10), stream.try_collect())
            .await
            .expect("the client waited for the blob to be stored")
            .unwrap();
        assert_eq!(got.concat(), blob);
        // A client that keeps up is handed the upstream's own buffers (here all of them: the
        // blob is under RECENT_MAX), not copies read back from the spool.
        assert!(
            got.iter().all(|c| shares(&blob, c)),
            "a client that kept up got copies"
        );
        // Not visible until stored.
        assert_eq!(reg.stat_global_blob(&digest).await.unwrap(), None);
        driver.hooks.0.add_permits(1000);
        wait_stored(&reg, &digest, "the fetch stored the blob once let go").await;
        assert_eq!(read_blob(&reg, &digest).await, blob);

        // Bytes that do not match their digest: the client's stream fails, nothing is stored.
        let wrong = Digest::sha256_of(b"something else");
        let reg = cache(driver.clone(), &blob);
        let stream = cold_pull(&reg, &wrong).await;
        let r: std::io::Result<Vec<Bytes>> =
            tokio::time::timeout(Duration::from_secs(10), stream.try_collect())
                .await
                .unwrap();
        assert!(r.is_err(), "a wrong blob completed");
        assert_eq!(reg.stat_global_blob(&wrong).await.unwrap(), None);
    }

    /// What has arrived reaches the clients while the upstream stalls (all but the last byte
    /// so far, which waits for the digest), not only once the next piece comes.
    #[tokio::test]
    async fn a_client_gets_what_arrived_while_the_upstream_stalls() {
        let blob = pattern(1_000_000u32, 237);
        let digest = Digest::sha256_of(&blob);
        let gate = Arc::new(tokio::sync::Notify::new());
        let driver = Arc::new(Hooked::new(SlowToStore(tokio::sync::Semaphore::new(1000))));
        let reg = Registry::new(driver, RegistryOptions::new(UploadSecret::new("s")))
            .with_pull_through(Arc::new(OneBlob(blob.clone(), Some(gate.clone()))));
        let mut stream = cold_pull(&reg, &digest).await;
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("nothing reached the client while the upstream stalled")
            .unwrap()
            .unwrap();
        assert_eq!(
            first.len(),
            (64 << 10) - 1,
            "the first piece but its last byte"
        );
        assert_eq!(first, blob.slice(..first.len()));
        gate.notify_one();
        let rest: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!([first, rest.concat().into()].concat(), blob);
    }

    /// Whether `part` lies in `whole`'s memory (a slice of it, not a copy).
    fn shares(whole: &Bytes, part: &Bytes) -> bool {
        let (w, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
        p >= w && p + part.len() <= w + whole.len()
    }

    /// A client that falls more than RECENT_MAX behind the fetch reads what the fetch no longer
    /// keeps from the spool, then the rest from the fetch's buffers, and gets every byte once.
    #[tokio::test]
    async fn a_client_behind_the_fetch_reads_the_spool_then_catches_up() {
        let len = (RECENT_MAX + (3 << 20)) as u32;
        let blob = pattern(len, 241);
        let digest = Digest::sha256_of(&blob);
        let driver = Arc::new(Hooked::new(SlowToStore(tokio::sync::Semaphore::new(1000))));
        let reg = cache(driver.clone(), &blob);
        let stream = cold_pull(&reg, &digest).await;
        // Not read until the fetch is over and the blob stored.
        wait_stored(&reg, &digest, "the fetch stored the blob").await;
        let got: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), blob);
        let copied: usize = got
            .iter()
            .filter(|c| !shares(&blob, c))
            .map(|c| c.len())
            .sum();
        assert_eq!(
            copied as u64,
            len as u64 - RECENT_MAX,
            "bytes read from the spool"
        );
    }

    /// `recent` keeps the last RECENT_MAX bytes of whole chunks and hands out exact ranges.
    #[test]
    fn the_recent_buffers_keep_the_last_bytes_and_slice_exact_ranges() {
        let mut s = FlightState::default();
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        for i in 1..=6u64 {
            s.publish(i << 20, vec![chunk.clone(), Bytes::new()]);
        }
        assert_eq!(
            (s.written, s.recent_start, s.recent.len()),
            (6 << 20, 2 << 20, 4)
        );
        assert!(s.recent_range(0, 6 << 20).is_empty(), "dropped bytes");
        assert!(s.recent_range(3 << 20, 3 << 20).is_empty());
        let r = s.recent_range((2 << 20) + 10, (4 << 20) + 5);
        assert_eq!(
            r.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![(1 << 20) - 10, 1 << 20, 5]
        );
    }

    /// On the filesystem the fetch writes the upload's own file once (no temporary spool): the
    /// client gets the bytes, the blob is stored whole, and no upload or unnamed file is left.
    #[tokio::test]
    async fn on_the_filesystem_a_cold_pull_is_stored_from_its_spool_in_place() {
        let blob = pattern(5_000_000u32, 253);
        let digest = Digest::sha256_of(&blob);
        let dir = tempfile::tempdir().unwrap();
        let driver = Arc::new(crate::storage::fs::FsDriver::new(dir.path()).unwrap());
        assert!(driver
            .unnamed_file("/docker/registry/v2/probe/data")
            .await
            .unwrap()
            .is_some());
        let reg = Registry::new(driver.clone(), RegistryOptions::new(UploadSecret::new("s")))
            .with_pull_through(Arc::new(OneBlob(blob.clone(), None)));
        let stream = cold_pull(&reg, &digest).await;
        let got: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), blob);
        let name = alpine();
        match reg.pull_blob(&name, &digest, true).await.unwrap() {
            PulledBlob::Stored(n) => assert_eq!(n, blob.len() as u64),
            PulledBlob::Streaming { .. } => panic!("waited, yet streaming"),
        }
        assert_eq!(read_blob(&reg, &digest).await, blob);
        let uploads = driver
            .list(&format!("{}/_uploads", layout::repo_root(&name)))
            .await
            .unwrap_or_default();
        assert!(uploads.is_empty(), "left behind: {uploads:?}");
    }
}
