//! Storage: one async driver trait that every backend implements (filesystem, in-memory, and the
//! object stores S3, GCS and Azure through [`object`], built by [`cloud`]), plus the on-disk
//! layout of CNCF distribution drawn once in [`layout`].
//!
//! Depends on nothing above it (no HTTP, no registry types besides `oci` in `layout`).
//!
//! Contract of every driver (checked by the shared suite in `suite.rs`, run on each backend):
//! - Paths are absolute, `/`-separated, made only by [`layout`]; drivers refuse `..` and empty parts.
//! - `get_content` / `stat` / `read` / `rename` / `delete` of a missing path answer
//!   [`StorageError::NotFound`]; `list` of a missing directory too.
//! - `put_content` replaces a file atomically: readers see the old or the new bytes, never a mix.
//! - `rename` moves a file atomically where the backend can (filesystem `rename(2)`); the target is
//!   replaced if it exists.
//! - `writer(path, append=true)` continues a file that earlier writers (possibly in another process)
//!   closed or committed; `size()` starts at its current length. See [`FileWriter`].
//! - `direct_writer(path)`, where a backend offers it, writes a whole new file that nobody sees
//!   before `commit`, which makes it appear atomically and complete (replacing what was there);
//!   `cancel`, `close` or dropping the writer leave nothing visible. See
//!   [`StorageDriver::direct_writer`].
//! - `delete` removes a file or a whole directory tree. `delete_files` removes files written whole
//!   (a missing one is no error) and `rename_files` moves them, both without listing or `stat`
//!   first where the backend can, in batches where it can (S3 `DeleteObjects`).
//! - `walk` lists every file below a directory, recursively, with size and modification time, in
//!   as few backend calls as the backend allows (object stores: one flat listing, 1,000 keys a
//!   page); a missing directory answers an empty list. Hidden temporary files are not shown; an
//!   object store's file being written (segments) shows as one file.
//! - `prune_empty_dirs` removes directories left empty below (and including) a path, never a
//!   directory that holds a file (backends with implied directories do nothing).
//! - `list_page` answers one page of `list`: the names after `after` (bytewise), sorted, at most
//!   `limit`, and whether more follow, reading no more of the folder than the backend needs
//!   (S3: one ListObjectsV2 with `start-after` and `max-keys`). `list_layout_folders_page` is the
//!   same for the folders at any depth that hold a layout child (a name starting with `_`), where a
//!   backend can list them without walking (S3); `None` means the caller walks.
//! - `redirect_url` may give a URL where a client can GET a file directly (object stores' presigned
//!   URLs); `None` (the default) means "serve it yourself". `check` is a start-up probe.

pub mod azure;
pub mod cloud;
#[cfg(test)]
mod cloud_tests;
#[cfg(test)]
pub mod counting;
pub mod fs;
pub mod gcs;
pub mod instrumented;
pub mod layout;
pub mod memory;
pub mod object;
pub mod s3;
#[cfg(test)]
mod suite;

use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

/// A stream of bytes read from (or written to) storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Errors a driver reports. Only `NotFound` carries meaning for callers; everything else is a
/// backend failure that the registry answers with a generic 5xx.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("path not found: {0}")]
    NotFound(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("storage I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A conditional write lost to another writer that changed the file first (the file is as
    /// that writer left it).
    #[error("storage conflict: {0}")]
    Conflict(String),
}

impl StorageError {
    pub(crate) fn io(path: &str, source: io::Error) -> StorageError {
        if source.kind() == io::ErrorKind::NotFound {
            StorageError::NotFound(path.to_owned())
        } else {
            StorageError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }

    /// What kind of failure this is, for the answer, the log and the
    /// `imageregistry_storage_errors_total{kind}` label.
    pub fn kind(&self) -> FaultKind {
        match self {
            StorageError::NotFound(_) => FaultKind::NotFound,
            StorageError::InvalidPath(_) => FaultKind::InvalidPath,
            StorageError::Backend(_) => FaultKind::Backend,
            StorageError::Conflict(_) => FaultKind::Conflict,
            StorageError::Io { source, .. } => FaultKind::of_io(source),
        }
    }
}

/// The kinds of storage failure a client is told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    NotFound,
    InvalidPath,
    /// `ENOSPC` or `EDQUOT`: no space (or quota) left.
    Full,
    /// `EROFS`: the volume is mounted read-only.
    ReadOnly,
    /// `EACCES`/`EPERM`: the process may not write there.
    Denied,
    /// Any other I/O error.
    Io,
    /// An object store's error, outage or throttling.
    Backend,
    /// Another writer changed the file first ([`StorageError::Conflict`]).
    Conflict,
}

impl FaultKind {
    /// Sorts an I/O error (its OS code where there is one).
    pub fn of_io(e: &io::Error) -> FaultKind {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FaultKind::Full,
            io::ErrorKind::ReadOnlyFilesystem => FaultKind::ReadOnly,
            io::ErrorKind::PermissionDenied => FaultKind::Denied,
            io::ErrorKind::NotFound => FaultKind::NotFound,
            _ => FaultKind::Io,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::NotFound => "not_found",
            FaultKind::InvalidPath => "invalid_path",
            FaultKind::Full => "full",
            FaultKind::ReadOnly => "read_only",
            FaultKind::Denied => "denied",
            FaultKind::Io => "io",
            FaultKind::Backend => "backend",
            FaultKind::Conflict => "conflict",
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What [`StorageDriver::unnamed_file`] gives: a local file with no name yet and the path it is
/// to have.
pub struct UnnamedFile {
    file: std::fs::File,
    target: std::path::PathBuf,
}

impl UnnamedFile {
    /// For a backend: `file` (made with `O_TMPFILE`, so it can be linked) is to become `target`.
    pub fn new(file: std::fs::File, target: std::path::PathBuf) -> UnnamedFile {
        UnnamedFile { file, target }
    }
}

impl std::fmt::Debug for UnnamedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnnamedFile")
            .field("target", &self.target)
            .finish()
    }
}

impl UnnamedFile {
    /// The open file, to write and read at offsets (`FileExt`).
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Gives the file its name, durably: `fsync` of the data, `linkat(2)` at the path it was
    /// made for (refused if a file is there), `fsync` of the folder. Blocking.
    pub fn name(&self) -> std::io::Result<()> {
        use rustix::fs::{linkat, AtFlags, CWD};
        use std::os::fd::AsRawFd;
        self.file.sync_all()?;
        let proc = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        if let Err(e) = linkat(
            CWD,
            proc.as_str(),
            CWD,
            &self.target,
            AtFlags::SYMLINK_FOLLOW,
        ) {
            // No /proc: the same by descriptor (needs CAP_DAC_READ_SEARCH).
            if e != rustix::io::Errno::NOENT {
                return Err(e.into());
            }
            linkat(&self.file, "", CWD, &self.target, AtFlags::EMPTY_PATH)?;
        }
        match self.target.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    }
}

/// What `stat` reports.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub size: u64,
    pub is_dir: bool,
    pub modified: Option<SystemTime>,
}

/// One file found by [`StorageDriver::walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkEntry {
    /// The driver path (absolute, like the walked one).
    pub path: String,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// One page of names ([`StorageDriver::list_page`]): sorted bytewise; `more` when names after
/// the last one exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamePage {
    pub names: Vec<String>,
    pub more: bool,
}

impl NamePage {
    /// The page of `names` (any order, duplicates allowed) after `after`, at most `limit`.
    pub fn of(mut names: Vec<String>, after: Option<&str>, limit: usize) -> NamePage {
        if let Some(a) = after {
            names.retain(|n| n.as_str() > a);
        }
        if limit == 0 {
            return NamePage::default();
        }
        names.sort_unstable();
        names.dedup();
        let more = names.len() > limit;
        names.truncate(limit);
        NamePage { names, more }
    }
}

/// The storage driver trait.
#[async_trait]
pub trait StorageDriver: Send + Sync + 'static {
    /// Driver name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Reads a small file whole.
    async fn get_content(&self, path: &str) -> Result<Bytes>;
    /// Writes a small file whole, atomically replacing it, durably.
    async fn put_content(&self, path: &str, data: Bytes) -> Result<()>;
    /// [`put_content`](Self::put_content) that may skip the flush to stable storage, for
    /// bookkeeping whose loss or truncation in a crash is harmless (an upload's start time, hash
    /// states: a missing or unreadable state is rebuilt from the data). Still atomic for readers.
    /// The default is `put_content`.
    async fn put_content_unsynced(&self, path: &str, data: Bytes) -> Result<()> {
        self.put_content(path, data).await
    }
    /// Streams `len` bytes (or to the end) of a file from `offset`.
    async fn read(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream>;
    async fn stat(&self, path: &str) -> Result<FileInfo>;
    /// [`stat`](Self::stat) of a file written whole (`put_content`, or a finished `rename` or
    /// `commit`: links, tombstones, `lastused`, blob data), NotFound for a folder or nothing.
    /// Object stores answer with one metadata request: a missing key costs no listing for a
    /// folder or a file still in segments (which such a file never is). The default is `stat`,
    /// a folder answered as NotFound.
    async fn stat_file(&self, path: &str) -> Result<FileInfo> {
        match self.stat(path).await? {
            i if i.is_dir => Err(StorageError::NotFound(path.to_owned())),
            i => Ok(i),
        }
    }
    /// Whether a file written whole (see [`stat_file`](Self::stat_file)) is there.
    async fn file_exists(&self, path: &str) -> Result<bool> {
        match self.stat_file(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// [`file_exists`](Self::file_exists) of each of `paths`, in order. The default asks 8 at a
    /// time; the filesystem answers a batch in one blocking task.
    async fn files_exist(&self, paths: &[String]) -> Result<Vec<bool>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(paths.iter().cloned())
            .map(|p| async move { self.file_exists(&p).await })
            .buffered(8)
            .try_collect()
            .await
    }
    /// An empty file at each of `paths` (replacing any), with no durability asked for: markers
    /// whose loss in a crash is harmless (the collector's tombstones). The default is
    /// [`put_content_unsynced`](Self::put_content_unsynced), 8 at a time.
    async fn put_empty_files_unsynced(&self, paths: &[String]) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(paths.iter().cloned())
            .map(|p| async move { self.put_content_unsynced(&p, Bytes::new()).await })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
    /// Names (not paths) of the direct children of a directory, in any order.
    async fn list(&self, path: &str) -> Result<Vec<String>>;
    /// One page of [`list`](Self::list): the names after `after`, sorted bytewise, at most `limit`
    /// (see the contract above). The default lists the whole folder.
    async fn list_page(&self, path: &str, after: Option<&str>, limit: usize) -> Result<NamePage> {
        Ok(NamePage::of(self.list(path).await?, after, limit))
    }
    /// The folders below `path`, at any depth, that hold a child whose name starts with `_`
    /// (relative paths; never looking inside such `_` children), after `after`, sorted bytewise,
    /// at most `limit`; `None` when the backend cannot list them without a walk (the default).
    async fn list_layout_folders_page(
        &self,
        _path: &str,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<Option<NamePage>> {
        Ok(None)
    }
    /// Opens a writer; with `append` it continues the existing file.
    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>>;
    /// Whether opening an appending [`writer`](Self::writer) leaves the store as it was until
    /// the first write (object stores: a few reads; the only write an open may make, moving a
    /// whole object into its first segment, keeps its content), so that a caller may open it
    /// while it still checks that the file is to be written at all, and `cancel` it if not.
    /// `false` (the default): the filesystem creates the file and its folders on open.
    fn writer_opens_without_writing(&self) -> bool {
        false
    }
    /// A writer of a whole new file at `path` that stays invisible until its `commit`, which
    /// makes the file appear atomically and complete, replacing what is there (for a blob whose
    /// digest is known before its bytes: the caller verifies the digest, then commits). `cancel`,
    /// `close` or dropping the writer discard its bytes; a native session a crash leaves behind
    /// is debris that [`abort_stale_writes`](Self::abort_stale_writes) of a folder above `path`
    /// ends. `None` (the default): the backend has nothing cheaper than staging the bytes in
    /// another file and [`rename`](Self::rename)-ing it (the filesystem, where `rename(2)` moves
    /// no bytes), and the caller does that.
    /// A local file with no name yet that is to become the file at `path` (in a folder that
    /// exists), where the backend's files are local ones (the filesystem: `O_TMPFILE` beside
    /// `path`). The caller writes and reads it in place, then gives it its name with
    /// [`UnnamedFile::name`]: one write of the bytes where a local spool followed by a copy
    /// into the store would make two. A crash before the name leaves nothing behind. `None` (the
    /// default, and a filesystem without `O_TMPFILE`): the caller spools locally and copies.
    async fn unnamed_file(&self, _path: &str) -> Result<Option<UnnamedFile>> {
        Ok(None)
    }
    async fn direct_writer(&self, _path: &str) -> Result<Option<Box<dyn FileWriter>>> {
        Ok(None)
    }
    /// Moves a file, replacing the target.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;
    /// Deletes a file or a directory tree.
    async fn delete(&self, path: &str) -> Result<()>;
    /// Deletes files written whole (by `put_content`, or as a `rename` target), never a directory
    /// nor a file still being written; a missing file is no error. The folders they leave empty
    /// stay (see `prune_empty_dirs`). Object stores delete the keys without listing first, many
    /// in one call where the store can (S3 `DeleteObjects`, 1,000 keys a call). The default
    /// deletes each with [`delete`](Self::delete).
    async fn delete_files(&self, paths: &[String]) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(paths.iter().cloned())
            .map(|p| async move {
                match self.delete(&p).await {
                    Err(e) if e.is_not_found() => Ok(()),
                    r => r,
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
    /// Moves files written whole whose sizes the caller knows (from a `walk`): `(from, to, size)`,
    /// each replacing its target. Answers, in order, whether each source was there (a missing one
    /// is no error). Every move has happened when it returns. Object stores copy without a `stat`
    /// first and delete the sources together after the copies; the default is
    /// [`rename`](Self::rename) per move.
    async fn rename_files(&self, moves: &[(String, String, u64)]) -> Result<Vec<bool>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(moves.iter().cloned())
            .map(|(from, to, _)| async move {
                match self.rename(&from, &to).await {
                    Ok(()) => Ok(true),
                    Err(e) if e.is_not_found() => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .buffered(8)
            .try_collect()
            .await
    }
    /// Every file below `path`, recursively (see the contract above). The default lists and stats
    /// directory by directory; backends with a flat listing override it.
    async fn walk(&self, path: &str) -> Result<Vec<WalkEntry>> {
        let mut out = Vec::new();
        let mut stack = vec![path.to_owned()];
        while let Some(dir) = stack.pop() {
            let children = match self.list(&dir).await {
                Ok(c) => c,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            for c in children {
                let child = format!("{dir}/{c}");
                match self.stat(&child).await {
                    Ok(info) if info.is_dir => stack.push(child),
                    Ok(info) => out.push(WalkEntry {
                        path: child,
                        size: info.size,
                        modified: info.modified,
                    }),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }
    /// Removes the empty directories at and below `path` (see the contract above). The default
    /// does nothing: right for backends whose directories are implied by their files.
    async fn prune_empty_dirs(&self, _path: &str) -> Result<()> {
        Ok(())
    }
    /// [`prune_empty_dirs`](Self::prune_empty_dirs) of each of `paths`. The default prunes 8 at a
    /// time; the filesystem prunes a batch in one blocking task.
    async fn prune_empty_dirs_of(&self, paths: &[String]) -> Result<()> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(paths.iter().cloned())
            .map(|p| async move { self.prune_empty_dirs(&p).await })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
    /// Aborts the backend's unfinished writes below `path` (S3 multipart uploads a writer that died
    /// left behind) started more than `older_than` ago; returns how many. The default has none.
    async fn abort_stale_writes(
        &self,
        _path: &str,
        _older_than: std::time::Duration,
    ) -> Result<u64> {
        Ok(0)
    }
    /// Ends the native writes of the file at `path` that writers which died left unfinished (S3
    /// multipart uploads, GCS resumable sessions, Azure uncommitted blocks), for a file no writer
    /// uses any more (an upload being purged); returns how many. The default has none.
    async fn abort_unfinished(&self, _path: &str) -> Result<u64> {
        Ok(0)
    }
    /// Whether the backend answers (the health check behind readiness). The default stats the
    /// layout root: found or not found both mean the backend is reachable.
    async fn health(&self) -> Result<()> {
        match self.stat(layout::ROOT).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A URL where a client may GET the file directly for a while, if the driver offers one.
    async fn redirect_url(&self, _path: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// Bytes free for new data, where the backend has such a number (filesystems).
    async fn free_bytes(&self) -> Option<u64> {
        None
    }
    /// Start-up probe: fails with a message naming what to fix (bucket, credentials).
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// A streaming writer to one file: the bytes of an upload in progress.
///
/// Lifecycle: `writer(path, append)` → `write`* → exactly one of `close` (this request's bytes are
/// persisted; a later writer, in any process, may append after them), `commit` (the file is final:
/// one complete object, ready to be renamed) or `cancel`. After `close` or `commit`, `stat` reports
/// the full size and `read` returns every byte.
#[async_trait]
pub trait FileWriter: Send {
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Bytes in the file so far, counting those not yet persisted.
    fn size(&self) -> u64;
    /// Persists the written bytes so the file can be continued later.
    async fn close(self: Box<Self>) -> Result<()>;
    /// Persists and finalizes the file (durable; no more appends expected).
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Abandons this writer's bytes where the backend can; what earlier writers persisted stays.
    async fn cancel(self: Box<Self>) -> Result<()>;
}

/// Checks a driver path: absolute, no empty, `.` or `..` parts.
pub(crate) fn check_path(path: &str) -> Result<()> {
    let ok = path.starts_with('/')
        && path.len() > 1
        && path[1..]
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidPath(path.to_owned()))
    }
}
