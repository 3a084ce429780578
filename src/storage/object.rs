//! The object-store driver: one [`StorageDriver`] over any [`ObjectBackend`] (S3, Azure Blob, GCS).
//!
//! Depends on the storage trait only: the backends (`s3`, `gcs`, `azure`) implement
//! [`ObjectBackend`] from here, and `cloud.rs` builds them; this file names none of them.
//!
//! Object stores cannot append, so a file being written (an upload's `data`) is kept as *segment
//! objects* beside its key, `<key>@parts/<start offset, 20 digits>`, until it is renamed into place:
//!
//! - A writer session streams its bytes into one segment: buffers of `part_size` go out as the parts
//!   of a native multipart upload (a few in flight), so memory stays at a few buffers per writer, and
//!   all writers of the process share one budget of buffers ([`ObjectDriver::with_buffer_budget`]):
//!   a writer waits for a free buffer (back-pressure on its client) rather than grow memory.
//!   A part's buffer is reused for a later part once the store has it ([`PartPermit`],
//!   [`BufferPool`]): never more buffers than the budget, and no fresh pages to fault in per part.
//!   The first full buffer is held back until a second one fills, so a session of less than two
//!   parts (a chunked push's `PATCH`) is one `put` of its segment at `close`, not a multipart
//!   upload's create, parts and complete.
//! - `close` completes that segment. A segment smaller than `part_size` (the rest of a small PATCH)
//!   is the *tail*: the next writer, in this process or any other, reads the tail back into its
//!   buffer at its first write and rewrites it, longer, under the same key (a writer that writes
//!   nothing, as the `PUT` completing an upload without a body, leaves it alone). So every
//!   segment but the last is at least `part_size` long (what S3's multipart copy needs) and
//!   nothing lives in process memory between requests: any replica can continue an upload.
//! - A backend that [`appends`](ObjectBackend::appends) (Azure) instead extends the last segment
//!   in place, whatever its size: a later session stages its parts on it and commits them after
//!   the bytes already there, atomically, conditional on nobody having committed since
//!   ([`ObjectBackend::start_append`]). Its segments are then never one `put` (which would leave
//!   nothing to extend), and a file written over many requests stays one segment.
//! - `stat` and `read` of such a file see the concatenation of its segments (so the registry can
//!   re-hash an upload if a hash state was lost); `list` shows it under its own name.
//! - `commit` is `close`: the file is complete and readable. `rename` assembles the segments
//!   server-side straight into the target key (S3 multipart copy, GCS compose, Azure copy) and
//!   then deletes them; the target appears atomically, complete, or not at all. Large data is never
//!   downloaded through the registry (except Azure with several segments, rare; see `azure.rs`).
//! - `cancel` aborts the session's multipart upload: what earlier writers persisted stays as it was.
//! - `direct_writer` (backends with [`ObjectBackend::isolated_parts`], S3 and Azure): no segments; the bytes
//!   stream into a multipart upload of the final key itself, completed by `commit` (a small file
//!   is one PUT then), aborted by `cancel`, `close` or drop. One write of the bytes, no copy.
//!
//! `redirect_url` presigns a GET valid for [`REDIRECT_EXPIRY`] and hands the same URL to every
//! client asking for that key within [`REDIRECT_REUSE`] (so a client always gets at least
//! `REDIRECT_EXPIRY - REDIRECT_REUSE` of validity): signing goes through the SDK's whole request
//! pipeline, the larger part of a redirect's cost. The registry checks access and existence
//! before it asks, on every request; a reused URL names the same bytes (blobs are
//! content-addressed) and, signed under credentials at most a minute old, expires no earlier
//! than a fresh one would for the SDK's credential refresh.
//!
//! Keys are `rootDirectory` + the driver path without its leading `/`, exactly as distribution's
//! object drivers lay them out, so existing buckets are read unchanged. Directories are implied by
//! keys. `delete` of a directory lists and deletes every key under it.
//!
//! Crash safety: a writer that dies mid-session leaves its segment's multipart upload incomplete (a
//! bucket lifecycle rule for incomplete multipart uploads cleans those); the file stays at what the
//! last `close` persisted, which is what the registry's saved hash states describe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    check_path, ByteStream, FileInfo, FileWriter, NamePage, Result, StorageDriver, StorageError,
    WalkEntry,
};

/// Metadata of one object.
#[derive(Debug, Clone)]
pub struct ObjMeta {
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// One level of a listing: objects directly under the prefix and the "folders" below it (both as
/// full keys; folder keys end with `/`).
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<(String, ObjMeta)>,
    pub prefixes: Vec<String>,
}

/// The few primitives every object store offers. Keys are full object keys (no leading `/`).
/// NotFound is reported as [`StorageError::NotFound`]; every other failure as `Backend`. Each
/// backend retries idempotent calls on transient errors itself.
#[async_trait]
pub trait ObjectBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Size of the parts the writer buffers (the native multipart part size).
    fn part_size(&self) -> usize;
    /// Writes a whole object (replacing it atomically).
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;
    /// Reads `len` bytes (or to the end) from `offset`; `offset` is below the object's size.
    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<ByteStream>;
    async fn head(&self, key: &str) -> Result<ObjMeta>;
    /// One level under `prefix` (which ends with `/`), every page.
    async fn list_dir(&self, prefix: &str) -> Result<Listing>;
    /// A window of one level under `prefix` in key order: the entries (objects and folders, with
    /// `delimiter` ending a folder) whose keys sort after `start_after`, at least `want` of them
    /// unless the listing ends first, and whether more follow. `None`: the backend offers no
    /// such listing (the driver then lists the whole level with `list_dir`, which needs `/`).
    async fn list_window(
        &self,
        _prefix: &str,
        _delimiter: &str,
        _start_after: Option<&str>,
        _want: usize,
    ) -> Result<Option<(Listing, bool)>> {
        Ok(None)
    }
    /// Every object under `prefix`, recursively, every page, with its metadata.
    async fn list_all(&self, prefix: &str) -> Result<Vec<(String, ObjMeta)>>;
    /// Deletes one object; a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Deletes many objects (missing ones are not an error).
    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        futures::stream::iter(keys)
            .map(|k| async move { self.delete(&k).await })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
    /// Server-side: `to` becomes the concatenation of `sources` (key, size), atomically. Every
    /// source but the last is at least `part_size` long. One source is a plain copy.
    async fn compose(&self, to: &str, sources: &[(String, u64)]) -> Result<()>;
    /// Starts a multipart upload of `key`; see [`PartSink`].
    async fn start_parts(&self, key: &str) -> Result<Box<dyn PartSink>>;
    /// Whether multipart uploads of one key in flight at once never see each other's parts and
    /// leave nothing beside the key (S3: each has its own upload id; Azure: each writer's blocks
    /// have random ids and stay uncommitted, invisible, until its block list is committed), so
    /// that a writer may stream straight into a final key ([`StorageDriver::direct_writer`]).
    /// The default: no (GCS keeps a session marker beside the key).
    fn isolated_parts(&self) -> bool {
        false
    }
    /// Starts the multipart upload of a direct write ([`StorageDriver::direct_writer`]): a final,
    /// content-addressed key, committed only once the bytes are verified, so that any complete
    /// object of the right size there holds the same bytes. The default: [`Self::start_parts`].
    /// Azure overrides it: a writer's block list commit fails when another writer's commit of
    /// the same blob discarded its staged blocks first, and then the winner's blob is its own.
    async fn start_direct_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        self.start_parts(key).await
    }
    /// Whether a committed segment can be extended in place ([`Self::start_append`]): a file
    /// written across requests then stays one growing segment, and `rename` is one copy. The
    /// default: no.
    fn appends(&self) -> bool {
        false
    }
    /// Starts an append to the object `key`, which the caller saw `size` long: the parts go
    /// after its bytes and `finish` commits the longer object atomically, or fails if the
    /// object changed in between (another writer appended first), leaving it as that writer
    /// made it. Nothing is visible before `finish`; `abort` leaves the object as it was.
    /// `None`: this object cannot be extended (the writer then starts a new segment).
    async fn start_append(&self, _key: &str, _size: u64) -> Result<Option<Box<dyn PartSink>>> {
        Ok(None)
    }
    /// Aborts native multipart uploads under `prefix` started more than `older_than` ago (the
    /// debris of writers that died); how many. The default: the backend has none to abort.
    async fn abort_stale_parts(&self, _prefix: &str, _older_than: Duration) -> Result<u64> {
        Ok(0)
    }
    /// Ends the native writes of one file's segments that writers which died left unfinished
    /// (see [`StorageDriver::abort_unfinished`]): `prefix` is the file's segment folder, `listed`
    /// the keys a listing of it shows, `open` the segment keys a writer session may have staged
    /// data at without a listing showing it (the last segment of the chain and the one after
    /// it). How many were ended. The default: the backend has none.
    async fn abort_segment_writes(
        &self,
        _prefix: &str,
        _listed: &[String],
        _open: &[String],
    ) -> Result<u64> {
        Ok(0)
    }
    /// A URL that lets a client GET `key` directly for `expires`, if the backend can sign one.
    async fn presign_get(&self, key: &str, expires: Duration) -> Result<Option<String>>;
    /// Start-up check (bucket exists, credentials work). `Err` with a message saying what to fix.
    async fn check(&self) -> Result<()>;
}

/// A multipart upload in progress. Parts are `part_size` long (the last one may be shorter); each
/// holds a buffer permit until its upload finished. Nothing is visible before `finish`.
#[async_trait]
pub trait PartSink: Send {
    /// Uploads a part; may return while it is still in flight (a small bounded number at a time).
    /// `permit` is the part's share of the buffer budget: drop it when the part is uploaded
    /// (and the SDK let go of `data`), so the buffer can serve the next part.
    async fn put_part(&mut self, data: Bytes, permit: PartPermit) -> Result<()>;
    /// Uploads `last` (may be empty) and completes the object.
    async fn finish(self: Box<Self>, last: Bytes) -> Result<()>;
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// How long presigned blob URLs stay valid (distribution uses 20 minutes).
pub const REDIRECT_EXPIRY: Duration = Duration::from_secs(20 * 60);
/// How long one presigned URL is handed out again (see the module doc).
pub const REDIRECT_REUSE: Duration = Duration::from_secs(60);
/// Presigned URLs kept for reuse; when full, the cache is emptied.
const REDIRECT_CACHE_ENTRIES: usize = 4096;
/// Default budget of write buffers per process.
pub const DEFAULT_BUFFER_BUDGET: usize = 64 << 20;

const SEGMENTS: &str = "@parts";
/// Ends a folder at its first layout child in [`StorageDriver::list_layout_folders_page`].
const LAYOUT_DELIMITER: &str = "/_";
/// Suffix of the small object a backend may keep beside a segment (`<segment>.session`) naming
/// the native session that writes it (GCS: the resumable session URL), so that a session whose
/// writer died can be ended. Not a segment: its name is no offset.
pub const SESSION_SUFFIX: &str = ".session";

/// Part buffers freed by uploaded parts, kept for the next ones. Holds at most as many buffers
/// as the budget has permits, and a buffer is only made when none is free, so buffers in use
/// plus kept stay within the budget: the peak is unchanged. A buffer unused for
/// [`POOL_KEEP`] is freed (a task of the runtime that made the driver trims the pool), so an
/// idle registry goes back to its idle memory. Why keep them at all: jemalloc
/// returns an allocation over 8 MiB (a 10 MiB part) to the kernel as soon as it is freed, so
/// every part paid for faulting in fresh pages, ~20 % of a push's CPU on these VMs
/// (benches/README.md, "Part buffers reused").
struct BufferPool {
    /// Kept buffers, with when each was freed (the latest last).
    free: std::sync::Mutex<Vec<(BytesMut, Instant)>>,
    max: usize,
    part: usize,
}

/// How long a freed part buffer is kept for reuse.
const POOL_KEEP: Duration = Duration::from_secs(5);

impl BufferPool {
    fn new(part: usize, max: usize) -> BufferPool {
        BufferPool {
            free: std::sync::Mutex::new(Vec::new()),
            max,
            part,
        }
    }

    /// A pool trimmed every [`POOL_KEEP`] by a task on the current runtime, if there is one;
    /// the task ends with the pool.
    fn trimmed(part: usize, max: usize) -> Arc<BufferPool> {
        let pool = Arc::new(BufferPool::new(part, max));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&pool);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(POOL_KEEP).await;
                    match weak.upgrade() {
                        Some(pool) => pool.trim(POOL_KEEP),
                        None => break,
                    }
                }
            });
        }
        pool
    }

    /// Frees the buffers kept longer than `keep`.
    fn trim(&self, keep: Duration) {
        if let Ok(mut free) = self.free.lock() {
            free.retain(|(_, at)| at.elapsed() < keep);
        }
    }

    fn take(&self) -> Option<BytesMut> {
        self.free.lock().ok()?.pop().map(|(buf, _)| buf)
    }

    /// Keeps `part`'s buffer if nobody else holds its bytes and it is a part buffer's size.
    fn give(&self, part: Bytes) {
        let Ok(mut buf) = part.try_into_mut() else {
            return;
        };
        if buf.capacity() < self.part || buf.capacity() > self.part + self.part / 2 {
            return;
        }
        buf.clear();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.max {
                free.push((buf, Instant::now()));
            }
        }
    }
}

/// One part buffer's share of the driver's write-buffer budget, held until the part it carries
/// is uploaded. Dropping it frees the share and hands the part's buffer back for the next part
/// (see [`BufferPool`]).
pub struct PartPermit {
    part: Option<Bytes>,
    pool: Arc<BufferPool>,
    _permit: OwnedSemaphorePermit,
}

impl PartPermit {
    /// The permit now covers `part` (a cheap clone of its handle).
    fn carry(mut self, part: &Bytes) -> PartPermit {
        self.part = Some(part.clone());
        self
    }
}

impl Drop for PartPermit {
    fn drop(&mut self) {
        if let Some(part) = self.part.take() {
            self.pool.give(part);
        }
    }
}

/// The driver. Cheap to clone.
#[derive(Clone)]
pub struct ObjectDriver {
    backend: Arc<dyn ObjectBackend>,
    /// `rootDirectory` without leading `/`, with a trailing `/` unless empty.
    root: String,
    part_size: usize,
    buffers: Arc<Semaphore>,
    pool: Arc<BufferPool>,
    redirect: bool,
    /// Presigned GET URLs by key, with when they were minted.
    presigned: Arc<std::sync::Mutex<HashMap<String, (String, Instant)>>>,
}

/// One segment of a file being written.
#[derive(Debug, Clone)]
struct Segment {
    offset: u64,
    key: String,
    size: u64,
    modified: Option<SystemTime>,
}

impl ObjectDriver {
    pub fn new(backend: Arc<dyn ObjectBackend>, root_directory: &str, redirect: bool) -> Self {
        let root = root_directory.trim_matches('/');
        let root = if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        };
        let part_size = backend.part_size().max(1);
        let mut d = ObjectDriver {
            backend,
            root,
            part_size,
            buffers: Arc::new(Semaphore::new(1)),
            pool: Arc::new(BufferPool::new(part_size, 1)),
            redirect,
            presigned: Arc::default(),
        };
        d = d.with_buffer_budget(DEFAULT_BUFFER_BUDGET);
        d
    }

    /// Caps the memory all writers of this driver use for buffers at about `bytes` (at least two
    /// buffers of `part_size`).
    pub fn with_buffer_budget(mut self, bytes: usize) -> Self {
        let n = (bytes / self.part_size).max(2);
        self.buffers = Arc::new(Semaphore::new(n));
        self.pool = BufferPool::trimmed(self.part_size, n);
        self
    }

    pub fn backend(&self) -> &Arc<dyn ObjectBackend> {
        &self.backend
    }

    fn key(&self, path: &str) -> Result<String> {
        check_path(path)?;
        Ok(format!("{}{}", self.root, &path[1..]))
    }

    fn seg_prefix(key: &str) -> String {
        format!("{key}{SEGMENTS}/")
    }

    fn seg_key(key: &str, offset: u64) -> String {
        format!("{key}{SEGMENTS}/{offset:020}")
    }

    /// The contiguous chain of segments from offset 0 (anything else is debris of a crash or of
    /// two writers racing, and is ignored).
    async fn segments(&self, key: &str) -> Result<Vec<Segment>> {
        let listing = self.backend.list_dir(&Self::seg_prefix(key)).await?;
        Ok(Self::chain(listing.objects))
    }

    /// The contiguous chain from offset 0 among the objects of a segment folder.
    fn chain(objects: Vec<(String, ObjMeta)>) -> Vec<Segment> {
        let mut all: Vec<Segment> = objects
            .into_iter()
            .filter_map(|(k, m)| {
                let name = k.rsplit('/').next()?;
                let offset = name.parse::<u64>().ok()?;
                Some(Segment {
                    offset,
                    key: k,
                    size: m.size,
                    modified: m.modified,
                })
            })
            .collect();
        all.sort_by_key(|s| s.offset);
        let mut chain = Vec::new();
        let mut end = 0;
        for s in all {
            if s.offset == end {
                end += s.size;
                chain.push(s);
            }
        }
        chain
    }

    /// The names a key-ordered window of `prefix` ending at `last` can miss that sort before
    /// `last` (and after `after`): prefixes of `last` ending before a `-` or `.`, whose keys
    /// (`<name><sep>...`) sort after `last`'s because those characters sort before `/`. Each
    /// such prefix is probed (`<prefix><name><sep>`, one small listing; with `/` also the file
    /// `<prefix><name>`), and the existing ones returned.
    async fn window_misses(
        &self,
        prefix: &str,
        last: &str,
        after: Option<&str>,
        sep: &str,
    ) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for (i, c) in last.char_indices() {
            let candidate = &last[..i];
            if (c != '-' && c != '.')
                || candidate.is_empty()
                || candidate.ends_with('/')
                || after.is_some_and(|a| candidate <= a)
            {
                continue;
            }
            let probe = format!("{prefix}{candidate}{sep}");
            let listed = match self.backend.list_window(&probe, "/", None, 1).await? {
                Some((l, _)) => !l.objects.is_empty() || !l.prefixes.is_empty(),
                None => false,
            };
            let exists = listed
                || (sep == "/"
                    && match self.backend.head(&format!("{prefix}{candidate}")).await {
                        Ok(_) => true,
                        Err(e) if e.is_not_found() => false,
                        Err(e) => return Err(e),
                    });
            if exists {
                found.push(candidate.to_owned());
            }
        }
        Ok(found)
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .backend
            .list_all(prefix)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    async fn get_all(&self, key: &str) -> Result<Bytes> {
        let chunks: Vec<Bytes> = self
            .backend
            .get(key, 0, None)
            .await?
            .try_collect()
            .await
            .map_err(|e| StorageError::Backend(format!("reading {key}: {e}")))?;
        Ok(chunks.concat().into())
    }

    async fn acquire(&self) -> Result<PartPermit> {
        let permit = self
            .buffers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Backend("write buffers closed".into()))?;
        Ok(self.permit(permit))
    }

    fn permit(&self, permit: OwnedSemaphorePermit) -> PartPermit {
        PartPermit {
            part: None,
            pool: self.pool.clone(),
            _permit: permit,
        }
    }
}

fn empty_stream() -> ByteStream {
    Box::pin(futures::stream::empty())
}

/// Reads `[offset, offset+len)` of the concatenation of `segs`.
fn segments_stream(
    backend: Arc<dyn ObjectBackend>,
    segs: Vec<Segment>,
    offset: u64,
    len: Option<u64>,
) -> ByteStream {
    let total: u64 = segs.iter().map(|s| s.size).sum();
    let end = len.map_or(total, |l| offset.saturating_add(l).min(total));
    let pieces: Vec<(String, u64, u64)> = segs
        .into_iter()
        .filter_map(|s| {
            let a = offset.max(s.offset);
            let b = end.min(s.offset + s.size);
            (a < b).then(|| (s.key, a - s.offset, b - a))
        })
        .collect();
    Box::pin(
        futures::stream::iter(pieces)
            .then(move |(k, off, n)| {
                let backend = backend.clone();
                async move {
                    backend
                        .get(&k, off, Some(n))
                        .await
                        .map_err(std::io::Error::other)
                }
            })
            .try_flatten(),
    )
}

#[async_trait]
impl StorageDriver for ObjectDriver {
    fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// An appending writer's open is a `HEAD` and a listing (plus, for a whole object of a part
    /// or more, its compose into the first segment); its bytes go out from the first write.
    fn writer_opens_without_writing(&self) -> bool {
        true
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        match self.get_all(&key).await {
            Err(e) if e.is_not_found() => {
                let chunks: Vec<Bytes> = self
                    .read(path, 0, None)
                    .await?
                    .try_collect()
                    .await
                    .map_err(|e| StorageError::Backend(format!("reading {key}: {e}")))?;
                Ok(chunks.concat().into())
            }
            r => r,
        }
    }

    async fn put_content(&self, path: &str, data: Bytes) -> Result<()> {
        let key = self.key(path)?;
        self.backend.put(&key, data).await
    }

    async fn read(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let key = self.key(path)?;
        match self.backend.head(&key).await {
            Ok(meta) => {
                let end = len.map_or(meta.size, |l| offset.saturating_add(l).min(meta.size));
                if offset >= end {
                    return Ok(empty_stream());
                }
                let n = (len.is_some() || offset > 0).then_some(end - offset);
                self.backend.get(&key, offset, n).await
            }
            Err(e) if e.is_not_found() => {
                let segs = self.segments(&key).await?;
                if segs.is_empty() {
                    return Err(StorageError::NotFound(path.to_owned()));
                }
                Ok(segments_stream(self.backend.clone(), segs, offset, len))
            }
            Err(e) => Err(e),
        }
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let key = self.key(path)?;
        match self.backend.head(&key).await {
            Ok(m) => {
                return Ok(FileInfo {
                    size: m.size,
                    is_dir: false,
                    modified: m.modified,
                })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let listing = self.backend.list_dir(&format!("{key}/")).await?;
        let segs = self.segments(&key).await?;
        if !segs.is_empty() {
            return Ok(FileInfo {
                size: segs.iter().map(|s| s.size).sum(),
                is_dir: false,
                modified: segs.iter().filter_map(|s| s.modified).max(),
            });
        }
        if !listing.objects.is_empty() || !listing.prefixes.is_empty() {
            return Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            });
        }
        Err(StorageError::NotFound(path.to_owned()))
    }

    /// One HEAD: a file written whole is one object (never segments; a folder has no object).
    async fn stat_file(&self, path: &str) -> Result<FileInfo> {
        let key = self.key(path)?;
        match self.backend.head(&key).await {
            Ok(m) => Ok(FileInfo {
                size: m.size,
                is_dir: false,
                modified: m.modified,
            }),
            Err(e) if e.is_not_found() => Err(StorageError::NotFound(path.to_owned())),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let key = self.key(path)?;
        let prefix = format!("{key}/");
        let listing = self.backend.list_dir(&prefix).await?;
        let mut names: Vec<String> = listing
            .objects
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(listing.prefixes.iter().map(|p| p.trim_end_matches('/')))
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|n| n.strip_suffix(SEGMENTS).unwrap_or(n).to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(names)
    }

    /// One window of the backend's listing from `<folder>/<after>` (S3: `start-after`,
    /// `max-keys`), else the whole level.
    async fn list_page(&self, path: &str, after: Option<&str>, limit: usize) -> Result<NamePage> {
        let key = self.key(path)?;
        let prefix = format!("{key}/");
        let start = after.map(|a| format!("{prefix}{a}"));
        // The entry of `after` itself (its folder sorts after it) and a name both a file and a
        // folder take a place each: ask for a little more, and for more again if that was short.
        let mut want = limit + 3;
        loop {
            let Some((listing, truncated)) = self
                .backend
                .list_window(&prefix, "/", start.as_deref(), want)
                .await?
            else {
                return Ok(NamePage::of(self.list(path).await?, after, limit));
            };
            let empty = listing.objects.is_empty() && listing.prefixes.is_empty();
            if empty && after.is_none() {
                return Err(StorageError::NotFound(path.to_owned()));
            }
            let names: Vec<String> = listing
                .objects
                .iter()
                .map(|(k, _)| k.as_str())
                .chain(listing.prefixes.iter().map(|p| p.trim_end_matches('/')))
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|n| n.strip_suffix(SEGMENTS).unwrap_or(n).to_owned())
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .collect();
            let mut names = names;
            if truncated {
                let last = listing
                    .objects
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .chain(listing.prefixes.iter().map(String::as_str))
                    .max()
                    .and_then(|k| k.strip_prefix(&prefix))
                    .map(|n| n.trim_end_matches('/'))
                    .map(|n| n.strip_suffix(SEGMENTS).unwrap_or(n).to_owned());
                if let Some(last) = last {
                    names.extend(self.window_misses(&prefix, &last, after, "/").await?);
                }
            }
            let mut page = NamePage::of(names, after, limit);
            if truncated && !page.more && limit > 0 {
                if want > limit * 4 + 64 {
                    // Not reachable from distribution's layout; the whole level is exact.
                    return Ok(NamePage::of(self.list(path).await?, after, limit));
                }
                want *= 2;
                continue;
            }
            page.more |= truncated && limit > 0 && page.names.len() == limit;
            return Ok(page);
        }
    }

    /// One window of a listing with the delimiter `/_`: every key rolls up at its first layout
    /// child, so a folder holding one (a repository) is one entry, however deep and however many
    /// keys it holds. The window is in key order (`a-b/` before `a/`); it is sorted by name here,
    /// and the only names a window can miss that sort before its last entry `L` are the prefixes
    /// of `L` ending before one of its `-` or `.` (their keys sort after `L`'s): each is checked.
    async fn list_layout_folders_page(
        &self,
        path: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<NamePage>> {
        let key = self.key(path)?;
        let prefix = format!("{key}/");
        let start = after.map(|a| format!("{prefix}{a}"));
        let mut want = limit + 16;
        loop {
            let Some((listing, truncated)) = self
                .backend
                .list_window(&prefix, LAYOUT_DELIMITER, start.as_deref(), want)
                .await?
            else {
                return Ok(None);
            };
            // Some stores end a rolled-up folder at the delimiter's first character (`a/`).
            let folder = |p: &str| -> Option<String> {
                let rel = p.strip_prefix(&prefix)?;
                let rel = rel.strip_suffix('_').unwrap_or(rel).strip_suffix('/')?;
                (!rel.is_empty()).then(|| rel.to_owned())
            };
            let mut names: Vec<String> =
                listing.prefixes.iter().filter_map(|p| folder(p)).collect();
            if truncated {
                if let Some(last) = listing.prefixes.iter().filter_map(|p| folder(p)).max() {
                    names.extend(
                        self.window_misses(&prefix, &last, after, LAYOUT_DELIMITER)
                            .await?,
                    );
                }
            }
            let mut page = NamePage::of(names, after, limit);
            if truncated && !page.more && limit > 0 {
                want *= 2;
                continue;
            }
            page.more |= truncated && limit > 0 && page.names.len() == limit;
            return Ok(Some(page));
        }
    }

    /// One flat listing of the prefix. A file being written shows once, as the sum of its
    /// segments (contiguous or not: a walk reports what occupies storage).
    async fn walk(&self, path: &str) -> Result<Vec<WalkEntry>> {
        let key = self.key(path)?;
        let prefix = format!("{key}/");
        let mut files: std::collections::BTreeMap<String, WalkEntry> = Default::default();
        for (k, meta) in self.backend.list_all(&prefix).await? {
            let Some(rel) = k.strip_prefix(&self.root) else {
                continue;
            };
            let (file, segment) = match rel.split_once(&format!("{SEGMENTS}/")) {
                Some((_, name)) if name.ends_with(SESSION_SUFFIX) => continue,
                Some((file, _)) => (file, true),
                None => (rel, false),
            };
            let path = format!("/{file}");
            let e = files.entry(path.clone()).or_insert(WalkEntry {
                path,
                size: 0,
                modified: None,
            });
            if segment {
                e.size += meta.size;
            } else {
                e.size = meta.size;
            }
            e.modified = e.modified.max(meta.modified);
        }
        Ok(files.into_values().collect())
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        let key = self.key(path)?;
        let mut w = ObjectWriter {
            driver: self.clone(),
            key: key.clone(),
            start: 0,
            flushed: 0,
            buf: BytesMut::new(),
            permit: None,
            held: None,
            sink: None,
            replaces_object: false,
            exists: true,
            tail: None,
        };
        if !append {
            let mut stale = self
                .list_keys(&Self::seg_prefix(&key))
                .await
                .unwrap_or_default();
            stale.push(key);
            self.backend.delete_many(stale).await?;
            w.exists = false;
            return Ok(Box::new(w));
        }
        // Both looks at once (on a store each is a round trip): the file is a whole object, or
        // segments, or nothing yet. The listing is wasted only when it is a whole object.
        let (head, segs) =
            futures::future::join(self.backend.head(&key), self.segments(&key)).await;
        match head {
            Ok(meta) => {
                // A whole object (written by put_content or an earlier rename): continue it as
                // the first segment.
                if meta.size < self.part_size as u64 {
                    w.permit = Some(self.acquire().await?);
                    w.buf.extend_from_slice(&self.get_all(&key).await?);
                } else {
                    self.backend
                        .compose(&Self::seg_key(&key, 0), &[(key.clone(), meta.size)])
                        .await?;
                    w.start = meta.size;
                }
                w.replaces_object = true;
            }
            Err(e) if e.is_not_found() => {
                let segs = segs?;
                w.exists = !segs.is_empty();
                if let Some(last) = segs.last().filter(|_| self.backend.appends()) {
                    // Extend the last segment in place (Azure: its block list grows).
                    if let Some(sink) = self.backend.start_append(&last.key, last.size).await? {
                        w.start = last.offset;
                        w.flushed = last.size;
                        w.sink = Some(sink);
                        return Ok(Box::new(w));
                    }
                }
                if let Some(last) = segs.last() {
                    if last.size < self.part_size as u64 {
                        // Continue the small tail: read it back (at the first write) and
                        // rewrite it longer.
                        w.start = last.offset;
                        w.tail = Some((last.key.clone(), last.size));
                    } else {
                        w.start = last.offset + last.size;
                    }
                }
            }
            Err(e) => return Err(e),
        }
        Ok(Box::new(w))
    }

    async fn direct_writer(&self, path: &str) -> Result<Option<Box<dyn FileWriter>>> {
        if !self.backend.isolated_parts() {
            return Ok(None);
        }
        Ok(Some(Box::new(DirectWriter {
            driver: self.clone(),
            key: self.key(path)?,
            flushed: 0,
            buf: BytesMut::new(),
            permit: None,
            sink: None,
        })))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let from_key = self.key(from)?;
        let to_key = self.key(to)?;
        // A whole object or segments: both looks at once (each a round trip).
        let (head, listing) = futures::future::join(
            self.backend.head(&from_key),
            self.backend.list_dir(&Self::seg_prefix(&from_key)),
        )
        .await;
        match head {
            Ok(meta) => {
                self.backend
                    .compose(&to_key, &[(from_key.clone(), meta.size)])
                    .await?;
                self.backend.delete(&from_key).await
            }
            Err(e) if e.is_not_found() => {
                // One listing names the chain and everything deleted after the copy (a segment
                // a racing writer adds after it stays, as debris of the folder above).
                let listing = listing?;
                let all: Vec<String> = listing.objects.iter().map(|(k, _)| k.clone()).collect();
                let segs = Self::chain(listing.objects);
                if segs.is_empty() {
                    return Err(StorageError::NotFound(from.to_owned()));
                }
                let sources: Vec<(String, u64)> =
                    segs.iter().map(|s| (s.key.clone(), s.size)).collect();
                self.backend.compose(&to_key, &sources).await?;
                self.backend.delete_many(all).await
            }
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        // The three looks at once (each a round trip): a folder, a file's segments, a file.
        let (below, segs, head) = futures::future::join3(
            self.list_keys(&format!("{key}/")),
            self.list_keys(&Self::seg_prefix(&key)),
            self.backend.head(&key),
        )
        .await;
        let mut keys = below?;
        keys.extend(segs?);
        match head {
            Ok(_) => keys.push(key),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        if keys.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        self.backend.delete_many(keys).await
    }

    /// The keys themselves, no listing: whole objects (a file still in segments is no caller's).
    async fn delete_files(&self, paths: &[String]) -> Result<()> {
        let keys = paths
            .iter()
            .map(|p| self.key(p))
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Ok(());
        }
        self.backend.delete_many(keys).await
    }

    /// One server-side copy per move with the size given (no `HEAD`), then one batched delete of
    /// the sources: every source is still there until every copy is done. A source that is no
    /// whole object (a file still in segments, or gone) goes through [`rename`](Self::rename).
    async fn rename_files(&self, moves: &[(String, String, u64)]) -> Result<Vec<bool>> {
        let done: Vec<(bool, Option<String>)> = futures::stream::iter(moves.iter().cloned())
            .map(|(from, to, size)| async move {
                let (from_key, to_key) = (self.key(&from)?, self.key(&to)?);
                match self
                    .backend
                    .compose(&to_key, &[(from_key.clone(), size)])
                    .await
                {
                    Ok(()) => Ok((true, Some(from_key))),
                    Err(e) if e.is_not_found() => match self.rename(&from, &to).await {
                        Ok(()) => Ok((true, None)),
                        Err(e) if e.is_not_found() => Ok((false, None)),
                        Err(e) => Err(e),
                    },
                    // Not every store says 404 for a copy of a missing source (fake-gcs-server
                    // answers 500): a failed copy whose source is gone is a missing source.
                    Err(e) => match self.backend.head(&from_key).await {
                        Err(h) if h.is_not_found() => match self.rename(&from, &to).await {
                            Ok(()) => Ok((true, None)),
                            Err(r) if r.is_not_found() => Ok((false, None)),
                            Err(r) => Err(r),
                        },
                        _ => Err(e),
                    },
                }
            })
            .buffered(8)
            .try_collect()
            .await?;
        let sources: Vec<String> = done.iter().filter_map(|(_, k)| k.clone()).collect();
        if !sources.is_empty() {
            self.backend.delete_many(sources).await?;
        }
        Ok(done.into_iter().map(|(moved, _)| moved).collect())
    }

    async fn abort_stale_writes(&self, path: &str, older_than: Duration) -> Result<u64> {
        let key = self.key(path)?;
        self.backend
            .abort_stale_parts(&format!("{key}/"), older_than)
            .await
    }

    /// One listing of the file's segment folder; the backend ends what it can name from it.
    async fn abort_unfinished(&self, path: &str) -> Result<u64> {
        let key = self.key(path)?;
        let prefix = Self::seg_prefix(&key);
        let listing = self.backend.list_dir(&prefix).await?;
        let listed: Vec<String> = listing.objects.iter().map(|(k, _)| k.clone()).collect();
        let chain = Self::chain(listing.objects);
        let end: u64 = chain.iter().map(|s| s.size).sum();
        let mut open: Vec<String> = chain.last().map(|s| s.key.clone()).into_iter().collect();
        open.push(Self::seg_key(&key, end));
        self.backend
            .abort_segment_writes(&prefix, &listed, &open)
            .await
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>> {
        if !self.redirect {
            return Ok(None);
        }
        let key = self.key(path)?;
        let lock = || self.presigned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((url, at)) = lock().get(&key) {
            if at.elapsed() < REDIRECT_REUSE {
                return Ok(Some(url.clone()));
            }
        }
        let minted = Instant::now();
        let url = self.backend.presign_get(&key, REDIRECT_EXPIRY).await?;
        if let Some(url) = &url {
            let mut cache = lock();
            if cache.len() >= REDIRECT_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, (url.clone(), minted));
        }
        Ok(url)
    }

    async fn check(&self) -> Result<()> {
        self.backend.check().await
    }
}

/// Moves the front of `data` into `buf` (a kept buffer from `pool`, else allocated once at `part`
/// bytes) until `buf` holds a whole part; true when it does. The caller holds a buffer permit
/// for `buf`.
fn fill_part(buf: &mut BytesMut, data: &mut Bytes, part: usize, pool: &BufferPool) -> bool {
    if buf.capacity() < part {
        if buf.is_empty() {
            if let Some(kept) = pool.take() {
                *buf = kept;
            }
        }
        if buf.capacity() < part {
            buf.reserve(part - buf.len());
        }
    }
    let take = (part - buf.len()).min(data.len());
    buf.extend_from_slice(&data.split_to(take));
    buf.len() >= part
}

/// A writer session: one segment at `start`, streamed as a multipart upload.
struct ObjectWriter {
    driver: ObjectDriver,
    key: String,
    /// Where this session's segment starts in the file.
    start: u64,
    /// Bytes of the segment already handed to the sink.
    flushed: u64,
    buf: BytesMut,
    permit: Option<PartPermit>,
    /// The segment's first full part, held back (with its buffer permit) until a second one
    /// fills: a segment of less than two parts (a 16 MiB `PATCH` with 10 MiB parts) is then one
    /// `put` at `close` instead of a multipart upload (create, parts, complete). Never held
    /// while `sink` is open, nor while this writer waits for a buffer (see `write`), nor on a
    /// backend that [`appends`](ObjectBackend::appends).
    held: Option<(Bytes, PartPermit)>,
    sink: Option<Box<dyn PartSink>>,
    /// The file existed as a whole object that this session's segments supersede.
    replaces_object: bool,
    /// The file existed when the writer opened (else `close` creates it, even empty).
    exists: bool,
    /// The small last segment (key, size) this session continues, not read yet: it is read into
    /// `buf` at the first write, so that a session that writes nothing (the `PUT` completing an
    /// upload without a body, as docker, containerd and podman send it) neither reads nor
    /// rewrites it.
    tail: Option<(String, u64)>,
}

impl ObjectWriter {
    /// Opens the segment's multipart upload if need be and sends the held part first.
    async fn open_sink(&mut self) -> Result<()> {
        if self.sink.is_none() {
            let seg = ObjectDriver::seg_key(&self.key, self.start);
            self.sink = Some(self.driver.backend.start_parts(&seg).await?);
        }
        if let Some((part, permit)) = self.held.take() {
            let n = part.len() as u64;
            if let Some(sink) = self.sink.as_mut() {
                sink.put_part(part, permit).await?;
            }
            self.flushed += n;
        }
        Ok(())
    }

    /// A buffer permit for the next part. While a part is held, one that is not free at once
    /// sends the held part out first: a writer never waits for a buffer while sitting on one
    /// (writers each holding one and waiting for another would stall for good).
    async fn next_permit(&mut self) -> Result<PartPermit> {
        if self.held.is_some() {
            if let Ok(p) = self.driver.buffers.clone().try_acquire_owned() {
                return Ok(self.driver.permit(p));
            }
            self.open_sink().await?;
        }
        self.driver.acquire().await
    }

    /// Reads the pending tail into `buf` (see `tail`), with a buffer permit for it.
    async fn load_tail(&mut self) -> Result<()> {
        let Some((key, size)) = self.tail.take() else {
            return Ok(());
        };
        if self.permit.is_none() {
            self.permit = Some(self.driver.acquire().await?);
        }
        let tail = self.driver.get_all(&key).await?;
        if tail.len() as u64 != size {
            return Err(StorageError::Backend(format!(
                "segment {key} changed while being read"
            )));
        }
        self.buf.extend_from_slice(&tail);
        Ok(())
    }

    async fn flush_part(&mut self) -> Result<()> {
        // Take the buffer whole: an emptied `split()` view would keep the part's allocation
        // alive (without a permit) while this writer waits for its next buffer.
        let part = std::mem::take(&mut self.buf).freeze();
        let permit = match self.permit.take() {
            Some(p) => p,
            None => self.driver.acquire().await?,
        }
        .carry(&part);
        if self.sink.is_none() && self.held.is_none() && !self.driver.backend.appends() {
            self.held = Some((part, permit));
            return Ok(());
        }
        self.open_sink().await?;
        let n = part.len() as u64;
        if let Some(sink) = self.sink.as_mut() {
            sink.put_part(part, permit).await?;
        }
        self.flushed += n;
        Ok(())
    }
}

#[async_trait]
impl FileWriter for ObjectWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        let part = self.driver.part_size;
        if !data.is_empty() {
            self.load_tail().await?;
        }
        while !data.is_empty() {
            if self.permit.is_none() {
                self.permit = Some(self.next_permit().await?);
            }
            if fill_part(&mut self.buf, &mut data, part, &self.driver.pool) {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        let held = self.held.as_ref().map_or(0, |(p, _)| p.len()) as u64;
        let tail = self.tail.as_ref().map_or(0, |(_, n)| *n);
        self.start + self.flushed + held + self.buf.len() as u64 + tail
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        let seg = ObjectDriver::seg_key(&self.key, self.start);
        let mut rest = std::mem::take(&mut self.buf).freeze();
        // The held part's buffer is not kept: its permit is dropped while `part` still holds it.
        // Keeping it (dropping `part` first) cut an S3 chunked push's CPU ~9 % but raised a GCS
        // chunked push's peak RSS from 52 to 99 MiB, unexplained (benches/README.md).
        if let Some((part, _permit)) = self.held.take() {
            let mut whole = BytesMut::with_capacity(part.len() + rest.len());
            whole.extend_from_slice(&part);
            whole.extend_from_slice(&rest);
            rest = whole.freeze();
        }
        // The last buffer serves the next part once the store has it.
        let keep = rest.clone();
        match self.sink.take() {
            Some(sink) => sink.finish(rest).await?,
            // A segment that later sessions may extend is written in blocks, not as one PUT
            // (which leaves no block to extend).
            None if !rest.is_empty() && self.driver.backend.appends() => {
                let sink = self.driver.backend.start_parts(&seg).await?;
                sink.finish(rest).await?
            }
            None if !rest.is_empty() || self.replaces_object || !self.exists => {
                self.driver.backend.put(&seg, rest).await?
            }
            None => {}
        }
        self.permit = None;
        self.driver.pool.give(keep);
        if self.replaces_object {
            self.driver.backend.delete(&self.key).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.close().await
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        if let Some(sink) = self.sink.take() {
            sink.abort().await?;
        }
        Ok(())
    }
}

/// A [`StorageDriver::direct_writer`]: parts of `part_size` go out to a multipart upload of the
/// final key as they fill (the shared buffer budget applies), nothing is visible before `commit`.
struct DirectWriter {
    driver: ObjectDriver,
    key: String,
    /// Bytes already handed to the sink.
    flushed: u64,
    buf: BytesMut,
    permit: Option<PartPermit>,
    sink: Option<Box<dyn PartSink>>,
}

impl DirectWriter {
    async fn abort(&mut self) -> Result<()> {
        self.permit = None;
        match self.sink.take() {
            Some(sink) => sink.abort().await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl FileWriter for DirectWriter {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        let part = self.driver.part_size;
        while !data.is_empty() {
            if self.permit.is_none() {
                self.permit = Some(self.driver.acquire().await?);
            }
            if fill_part(&mut self.buf, &mut data, part, &self.driver.pool) {
                let full = std::mem::take(&mut self.buf).freeze();
                let permit = match self.permit.take() {
                    Some(p) => p,
                    None => self.driver.acquire().await?,
                }
                .carry(&full);
                if self.sink.is_none() {
                    self.sink = Some(self.driver.backend.start_direct_parts(&self.key).await?);
                }
                let n = full.len() as u64;
                if let Some(sink) = self.sink.as_mut() {
                    if let Err(e) = sink.put_part(full, permit).await {
                        // The sink aborted its upload itself.
                        self.sink = None;
                        return Err(e);
                    }
                }
                self.flushed += n;
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Not continuable: discards, like `cancel`.
    async fn close(mut self: Box<Self>) -> Result<()> {
        self.abort().await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let rest = std::mem::take(&mut self.buf).freeze();
        let keep = rest.clone();
        let r = match self.sink.take() {
            Some(sink) => sink.finish(rest).await,
            None => self.driver.backend.put(&self.key, rest).await,
        };
        self.permit = None;
        self.driver.pool.give(keep);
        r
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        self.abort().await
    }
}

impl Drop for DirectWriter {
    /// A writer dropped mid-way (the request went away) aborts its multipart upload in the
    /// background; if the process dies first, the upload is debris for `abort_stale_writes`.
    fn drop(&mut self) {
        if let (Some(sink), Ok(rt)) = (self.sink.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                if let Err(e) = sink.abort().await {
                    tracing::warn!(error = %e, "aborting an abandoned direct write failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: usize) -> Bytes {
        let mut b = BytesMut::with_capacity(n);
        b.resize(n, 7);
        b.freeze()
    }

    #[test]
    fn pool_keeps_only_unshared_part_sized_buffers_up_to_its_max() {
        let pool = BufferPool::new(1024, 2);
        let shared = part(1024);
        let other = shared.clone();
        pool.give(shared);
        assert!(
            pool.take().is_none(),
            "a buffer still referenced elsewhere is not kept"
        );
        drop(other);
        pool.give(part(100));
        pool.give(part(4096));
        assert!(
            pool.take().is_none(),
            "buffers of another size are not kept"
        );
        for _ in 0..3 {
            pool.give(part(1024));
        }
        let kept = pool.take().expect("a freed part buffer is kept");
        assert!(kept.is_empty() && kept.capacity() >= 1024);
        assert!(pool.take().is_some());
        assert!(pool.take().is_none(), "at most `max` buffers are kept");
        pool.give(part(1024));
        pool.trim(Duration::from_secs(60));
        assert!(pool.take().is_some(), "a buffer freed just now stays");
        pool.give(part(1024));
        pool.trim(Duration::ZERO);
        assert!(pool.take().is_none(), "trimming frees what was kept longer");
    }

    #[tokio::test]
    async fn dropping_a_permit_frees_its_share_and_keeps_its_buffer() {
        let sem = Arc::new(Semaphore::new(1));
        let pool = Arc::new(BufferPool::new(1024, 1));
        let data = part(1024);
        let permit = PartPermit {
            part: None,
            pool: pool.clone(),
            _permit: sem.clone().acquire_owned().await.unwrap(),
        }
        .carry(&data);
        assert_eq!(sem.available_permits(), 0);
        drop(data);
        drop(permit);
        assert_eq!(sem.available_permits(), 1);
        let mut buf = BytesMut::new();
        let mut more = Bytes::from(vec![1u8; 1500]);
        assert!(fill_part(&mut buf, &mut more, 1024, &pool));
        assert!(pool.take().is_none(), "the kept buffer was reused");
        assert_eq!(&buf[..], &[1u8; 1024][..]);
        assert_eq!(more.len(), 476);
    }
}
