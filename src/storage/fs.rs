//! The filesystem driver (emptyDir, PVC, or any local folder): paths map below a root directory.
//!
//! Small files are replaced atomically (write a hidden temporary file beside, `fdatasync` it unless
//! the caller asked for `put_content_unsynced`, then `rename(2)`); blob bytes are written through a
//! writer that batches socket-sized chunks into 256 KiB writes done behind the request (one batch in
//! flight), starts a background `fdatasync` every 4 MiB, and makes everything durable with a final
//! `fdatasync` on commit. Reads stream the file in large blocks. Hidden entries (names
//! starting with `.`) are temporary files and are never listed: no valid repository component, tag or
//! digest starts with a dot.
//!
//! Durability order (what is on stable storage before a write is acknowledged, so a crash at any
//! point never leaves a link or tag naming data that is not there):
//!
//! 1. New folders: every folder a durable write creates is made with its parent folder `fsync`ed
//!    after it, top down, so the path to the file survives a crash (`create_parent_durable`).
//! 2. Blob data: the upload's data file is `fdatasync`ed by the writer's `commit` (final `PUT`),
//!    then renamed into `blobs/<alg>/<xx>/<hex>/data`, then that folder is `fsync`ed (`sync_dir`):
//!    the blob's directory entry is durable before anything refers to it.
//! 3. Small files (layer and manifest links, tag `current/link` and index entries, manifest
//!    revisions): a hidden temporary file is written and `fdatasync`ed, renamed over the target,
//!    then the target's folder is `fsync`ed. The registry writes links only after step 2 returned,
//!    so a link's entry is never durable before the data it names.
//! 4. Only then does the handler answer 201.
//!
//! `put_content_unsynced` (hash states, upload start times) skips the syncs: losing them in a
//! crash costs a re-hash of the data, never a wrong answer. An upload's data before its final
//! `PUT` is not synced either (a crash loses the unsynced tail; the file's size is the offset a
//! client resumes from). The collector's tombstones (`put_empty_files_unsynced`) are empty files
//! created in place, a batch per blocking task: an empty file has no partial content to hide.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{
    check_path, ByteStream, FileInfo, FileWriter, Result, StorageDriver, StorageError, UnnamedFile,
    WalkEntry,
};

/// Size of read blocks.
const IO_BLOCK: usize = 2 << 20;
/// Writers batch chunks up to this size into one trip to a blocking thread. Small enough that 64
/// uploads in flight hold little memory, large enough that the trips cost nothing.
const WRITE_BATCH: usize = 256 << 10;
/// A writer starts a background `fdatasync` each time this much has been written since the last
/// one started (and the previous one finished), so the disk writes overlap the upload and the
/// `fdatasync` of `commit` only has the tail left to flush. 4 MiB measured best of 0.5–64 MiB: 8 MiB
/// pushes x32 +10–20%, 10 MiB +25%, 1 GiB +10% over 64 MiB (benches/README.md).
const SYNC_EVERY: u64 = 4 << 20;
/// Reads of at most this many bytes are done whole, in one blocking call.
const SMALL_READ: u64 = 256 << 10;

/// Filesystem storage below `root`.
#[derive(Debug, Clone)]
pub struct FsDriver {
    root: PathBuf,
    /// Whether `health` also proves the volume takes a write (off for read-only registries,
    /// which may serve a read-only mount).
    write_probe: bool,
}

impl FsDriver {
    /// Creates the driver, making `root` if it does not exist.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<FsDriver> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(FsDriver {
            root,
            write_probe: false,
        })
    }

    /// Makes `health` write (and remove) a one-byte probe file: a full, read-only or forbidden
    /// volume is then unhealthy.
    pub fn with_write_probe(mut self, on: bool) -> FsDriver {
        self.write_probe = on;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        check_path(path)?;
        Ok(self.root.join(&path[1..]))
    }

    /// Replaces a small file atomically: a hidden temporary file beside it (made durable first
    /// with `sync`), then `rename(2)`.
    async fn replace_file(&self, path: &str, data: Bytes, sync: bool) -> Result<()> {
        let p = self.full(path)?;
        blocking(path, move || {
            let tmp = temp_sibling(&p);
            let write = || -> io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&data)?;
                if sync {
                    f.sync_data()?;
                    trace("fdatasync", &tmp);
                }
                std::fs::rename(&tmp, &p)?;
                trace("rename", &p);
                if sync {
                    sync_parent(&p)?;
                }
                Ok(())
            };
            let r = in_parent(&p, sync, write);
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        })
        .await
    }

    /// Runs `f` over the full paths of a batch in one blocking task (the batch methods of the
    /// sweep); `empty` for no paths.
    async fn batch<T: Send + 'static>(
        &self,
        paths: &[String],
        empty: T,
        f: impl FnOnce(Vec<PathBuf>) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let Some(first) = paths.first() else {
            return Ok(empty);
        };
        let full = paths
            .iter()
            .map(|p| self.full(p))
            .collect::<Result<Vec<_>>>()?;
        blocking(first, move || f(full)).await
    }
}

/// Removes `dir` and the folders below it that hold no file, bottom-up with `rmdir(2)`; whether
/// `dir` is gone (or was never there).
fn prune_dir(dir: &Path) -> io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut empty = true;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            empty &= prune_dir(&entry.path())?;
        } else {
            empty = false;
        }
    }
    if empty {
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Not empty any more: someone wrote into it meanwhile.
            Err(_) => return Ok(false),
        }
    }
    Ok(empty)
}

async fn blocking<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    join(path, tokio::task::spawn_blocking(f)).await
}

/// Waits for a blocking task (started now or earlier) and maps its outcome.
async fn join<T>(path: &str, task: tokio::task::JoinHandle<io::Result<T>>) -> Result<T> {
    match task.await {
        Ok(r) => r.map_err(|e| StorageError::io(path, e)),
        Err(e) => Err(StorageError::Backend(format!("blocking task failed: {e}"))),
    }
}

/// Writes `chunks` in order (then, with `sync`, `fdatasync`s) and gives the file back.
fn write_batch(
    mut file: std::fs::File,
    chunks: Vec<Bytes>,
    sync: bool,
) -> io::Result<std::fs::File> {
    for c in &chunks {
        file.write_all(c)?;
    }
    if sync {
        file.sync_data()?;
    }
    Ok(file)
}

fn temp_sibling(p: &Path) -> PathBuf {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    p.with_file_name(format!(".{name}.tmp.{}", uuid::Uuid::new_v4().simple()))
}

/// `fsync`s a folder: its entries (files renamed or created in it) survive a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    trace("fsync-dir", dir);
    Ok(())
}

fn sync_parent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Creates the missing folders above `p`, `fsync`ing the parent of each new one (top down).
fn create_parent_durable(p: &Path) -> io::Result<()> {
    let Some(parent) = p.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut cur = parent;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(up) => cur = up,
            None => break,
        }
    }
    std::fs::create_dir_all(parent)?;
    for dir in missing.iter().rev() {
        sync_parent(dir)?;
    }
    Ok(())
}

/// Records a durability step for the tests of the order (nothing outside tests).
#[cfg(test)]
fn trace(step: &str, p: &Path) {
    if let Ok(mut t) = TRACE.lock() {
        t.push(format!("{step} {}", p.display()));
    }
}

#[cfg(not(test))]
fn trace(_: &str, _: &Path) {}

#[cfg(test)]
static TRACE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn create_parent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    }
}

/// Makes `p`'s parent folders, then runs `op`; again (a few times) when `op` finds a folder
/// missing: garbage collection's [`prune_empty_dirs`](StorageDriver::prune_empty_dirs) may remove
/// an empty folder between the two. `durable`: new folders are made durable in their parents.
fn in_parent<T>(p: &Path, durable: bool, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        // Making the parents can itself find a folder gone (removed between `create_dir_all`'s
        // steps, or before its `fsync`): that is the same race, retried the same way.
        let made = if durable {
            create_parent_durable(p)
        } else {
            create_parent(p)
        };
        match made.and_then(|()| op()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
            r => return r,
        }
    }
}

#[async_trait]
impl StorageDriver for FsDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    /// Healthy while the root folder exists (a lost mount or a deleted folder is unhealthy) and,
    /// with the write probe on, takes a write: a hidden probe file of one byte is written and
    /// removed, so a full (`ENOSPC`/`EDQUOT`), read-only (`EROFS`) or forbidden (`EACCES`) volume
    /// is unhealthy too.
    async fn health(&self) -> Result<()> {
        match tokio::fs::metadata(&self.root).await {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StorageError::Backend(format!(
                    "storage root {} is not a directory",
                    self.root.display()
                )))
            }
            Err(e) => {
                return Err(StorageError::Backend(format!(
                    "storage root {}: {e}",
                    self.root.display()
                )))
            }
        }
        if !self.write_probe {
            return Ok(());
        }
        let probe = self
            .root
            .join(format!(".health-probe-{}", std::process::id()));
        blocking("/", move || {
            let r = std::fs::write(&probe, b"h");
            let _ = std::fs::remove_file(&probe);
            r
        })
        .await
    }

    async fn free_bytes(&self) -> Option<u64> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            rustix::fs::statvfs(&root)
                .ok()
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        })
        .await
        .ok()
        .flatten()
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        let p = self.full(path)?;
        let data = tokio::fs::read(&p)
            .await
            .map_err(|e| StorageError::io(path, e))?;
        Ok(Bytes::from(data))
    }

    async fn put_content(&self, path: &str, data: Bytes) -> Result<()> {
        self.replace_file(path, data, true).await
    }

    async fn put_content_unsynced(&self, path: &str, data: Bytes) -> Result<()> {
        self.replace_file(path, data, false).await
    }

    async fn read(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let p = self.full(path)?;
        if let Some(n) = len.filter(|&n| n <= SMALL_READ) {
            // Small reads (manifests, configs, small layers) in one trip to a blocking thread.
            let data = blocking(path, move || {
                let mut f = std::fs::File::open(&p)?;
                if f.metadata()?.is_dir() {
                    return Err(io::ErrorKind::NotFound.into());
                }
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = Vec::with_capacity(n as usize);
                f.take(n).read_to_end(&mut buf)?;
                Ok(buf)
            })
            .await?;
            let chunk: io::Result<Bytes> = Ok(Bytes::from(data));
            return Ok(futures::stream::iter([chunk]).boxed());
        }
        let f = blocking(path, move || {
            let mut f = std::fs::File::open(&p)?;
            if f.metadata()?.is_dir() {
                return Err(io::ErrorKind::NotFound.into());
            }
            if offset > 0 {
                f.seek(SeekFrom::Start(offset))?;
            }
            Ok(f)
        })
        .await?;
        Ok(read_ahead(f, len))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let p = self.full(path)?;
        let m = tokio::fs::metadata(&p)
            .await
            .map_err(|e| StorageError::io(path, e))?;
        Ok(FileInfo {
            size: m.len(),
            is_dir: m.is_dir(),
            modified: m.modified().ok(),
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let p = self.full(path)?;
        blocking(path, move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&p)? {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str() {
                    if !name.starts_with('.') {
                        out.push(name.to_owned());
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// One blocking walk of the tree (`read_dir` per directory; the entries' metadata come from
    /// the same directory reads where the OS provides them).
    async fn walk(&self, path: &str) -> Result<Vec<WalkEntry>> {
        let p = self.full(path)?;
        let base = path.trim_end_matches('/').to_owned();
        blocking(path, move || {
            let mut out = Vec::new();
            let mut stack = vec![(p, base)];
            while let Some((dir, rel)) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    if name.starts_with('.') {
                        continue;
                    }
                    let child = format!("{rel}/{name}");
                    let m = match entry.metadata() {
                        Ok(m) => m,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    if m.is_dir() {
                        stack.push((entry.path(), child));
                    } else {
                        out.push(WalkEntry {
                            path: child,
                            size: m.len(),
                            modified: m.modified().ok(),
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// `rmdir(2)` bottom-up: it refuses a directory that holds anything, so a file another
    /// process creates meanwhile is never lost (its writer re-creates a folder removed under it).
    async fn prune_empty_dirs(&self, path: &str) -> Result<()> {
        let p = self.full(path)?;
        blocking(path, move || prune_dir(&p).map(|_| ())).await
    }

    /// `O_TMPFILE` in the folder of `path` (created if missing); `None` where the filesystem
    /// cannot make one.
    async fn unnamed_file(&self, path: &str) -> Result<Option<UnnamedFile>> {
        let p = self.full(path)?;
        blocking(path, move || {
            use rustix::fs::{Mode, OFlags};
            let dir = p
                .parent()
                .ok_or_else(|| io::Error::other("no parent folder"))?;
            std::fs::create_dir_all(dir)?;
            match rustix::fs::open(
                dir,
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => Ok(Some(UnnamedFile::new(std::fs::File::from(fd), p))),
                // Not supported here (EOPNOTSUPP; EISDIR on kernels without it).
                Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::ISDIR => {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// The batch in one blocking task (a collection prunes thousands of blob folders at once).
    async fn prune_empty_dirs_of(&self, paths: &[String]) -> Result<()> {
        self.batch(paths, (), |dirs| {
            for d in &dirs {
                prune_dir(d)?;
            }
            Ok(())
        })
        .await
    }

    /// The batch in one blocking task, `unlink(2)` each (no sync: a delete lost in a crash leaves
    /// garbage the next collection takes).
    async fn delete_files(&self, paths: &[String]) -> Result<()> {
        self.batch(paths, (), |files| {
            for f in &files {
                match std::fs::remove_file(f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(io::Error::new(e.kind(), format!("{}: {e}", f.display())))
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// The batch in one blocking task: a regular file at each path.
    async fn files_exist(&self, paths: &[String]) -> Result<Vec<bool>> {
        self.batch(paths, Vec::new(), |files| {
            files
                .iter()
                .map(|f| match std::fs::metadata(f) {
                    Ok(m) => Ok(!m.is_dir()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                })
                .collect()
        })
        .await
    }

    /// The batch in one blocking task, each file created (or truncated) in place: an empty file
    /// has no partial state to hide behind a rename, and no sync is asked for.
    async fn put_empty_files_unsynced(&self, paths: &[String]) -> Result<()> {
        self.batch(paths, (), |files| {
            for f in &files {
                in_parent(f, false, || std::fs::File::create(f).map(drop))
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
            }
            Ok(())
        })
        .await
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        let p = self.full(path)?;
        let (file, size) = blocking(path, move || {
            let mut f = in_parent(&p, false, || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(!append)
                    .open(&p)
            })?;
            let size = f.seek(SeekFrom::End(0))?;
            Ok((f, size))
        })
        .await?;
        Ok(Box::new(FsWriter {
            path: path.to_owned(),
            file: Some(file),
            pending: Vec::new(),
            pending_len: 0,
            size,
            start: size,
            unsynced: 0,
            syncing: None,
            writing: None,
            failure: None,
        }))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let src = self.full(from)?;
        let dst = self.full(to)?;
        blocking(from, move || {
            std::fs::metadata(&src)?;
            in_parent(&dst, true, || {
                std::fs::rename(&src, &dst)?;
                trace("rename", &dst);
                Ok(())
            })?;
            // The new entry is durable before the caller links to it.
            sync_parent(&dst)
        })
        .await
    }

    /// The collector's moves, a batch at a time: every `rename(2)` without an `fsync` of its own,
    /// then one `syncfs(2)` of the volume, so a batch of thousands costs one flush instead of one
    /// per folder. Nothing returns before every move is durable; a crash before that leaves each
    /// move done or not done, never half.
    async fn rename_files(&self, moves: &[(String, String, u64)]) -> Result<Vec<bool>> {
        let Some((first, _, _)) = moves.first() else {
            return Ok(Vec::new());
        };
        let jobs = moves
            .iter()
            .map(|(from, to, _)| Ok((self.full(from)?, self.full(to)?)))
            .collect::<Result<Vec<_>>>()?;
        let root = self.root.clone();
        blocking(first, move || {
            let mut out = Vec::with_capacity(jobs.len());
            for (src, dst) in &jobs {
                let moved = match std::fs::metadata(src) {
                    Ok(_) => match in_parent(dst, true, || std::fs::rename(src, dst)) {
                        Ok(()) => true,
                        // Gone between the look and the move: a missing source, as documented.
                        Err(e) if e.kind() == io::ErrorKind::NotFound && !src.exists() => false,
                        Err(e) => return Err(e),
                    },
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(e),
                };
                out.push(moved);
            }
            rustix::fs::syncfs(std::fs::File::open(&root)?)?;
            Ok(out)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let p = self.full(path)?;
        blocking(path, move || {
            let m = std::fs::symlink_metadata(&p)?;
            if m.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            }
        })
        .await
    }
}

/// Streams `len` bytes (or to the end) of `f` from its current position in [`IO_BLOCK`] blocks,
/// each read straight into the buffer that is sent (one copy, page cache to socket buffer), with the
/// next block read on a blocking thread while the current one is being sent. No thread is held
/// between blocks, so slow clients cannot exhaust the blocking pool.
fn read_ahead(f: std::fs::File, len: Option<u64>) -> ByteStream {
    type Read = tokio::task::JoinHandle<io::Result<(std::fs::File, Vec<u8>)>>;
    fn want(remaining: Option<u64>) -> usize {
        remaining.map_or(IO_BLOCK, |r| r.min(IO_BLOCK as u64) as usize)
    }
    fn spawn(mut f: std::fs::File, want: usize) -> Read {
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(want);
            (&mut f).take(want as u64).read_to_end(&mut buf)?;
            Ok((f, buf))
        })
    }
    let first = want(len);
    let state: (Option<Read>, Option<u64>, usize) = (Some(spawn(f, first)), len, first);
    futures::stream::unfold(state, |(next, remaining, asked)| async move {
        let (f, buf) = match next?.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Some((Err(e), (None, remaining, 0))),
            Err(e) => return Some((Err(io::Error::other(e)), (None, remaining, 0))),
        };
        if buf.is_empty() {
            return None;
        }
        let remaining = remaining.map(|r| r - buf.len() as u64);
        // A short block means the end of the file.
        let more = buf.len() == asked && remaining != Some(0);
        let asked = want(remaining);
        let next = more.then(|| spawn(f, asked));
        Some((Ok(Bytes::from(buf)), (next, remaining, asked)))
    })
    .boxed()
}

/// Batches chunks and writes them in blocks of at least [`WRITE_BATCH`] on a blocking thread.
struct FsWriter {
    path: String,
    file: Option<std::fs::File>,
    pending: Vec<Bytes>,
    pending_len: usize,
    size: u64,
    /// Length of the file when this writer opened it.
    start: u64,
    /// Bytes written since the last background sync started.
    unsynced: u64,
    /// A background `fdatasync` in flight (on a duplicate of the file descriptor).
    syncing: Option<tokio::task::JoinHandle<io::Result<()>>>,
    /// A batch being written behind; it holds the file until done.
    writing: Option<tokio::task::JoinHandle<io::Result<std::fs::File>>>,
    /// The first I/O error (OS code, kind, text): every later call reports it again, so a full
    /// disk reads as `ENOSPC` to the end, not as a writer that merely "failed".
    failure: Option<(Option<i32>, io::ErrorKind, String)>,
}

impl FsWriter {
    /// The file, once the batch being written behind (if any) is on it; its error if it failed.
    async fn take_file(&mut self) -> Result<std::fs::File> {
        if let Some(t) = self.writing.take() {
            let r = join(&self.path, t).await;
            return self.note(r);
        }
        match self.file.take() {
            Some(f) => Ok(f),
            None => Err(self.failed()),
        }
    }

    /// Remembers the first I/O error of `r`.
    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(StorageError::Io { source, .. }) = &r {
            if self.failure.is_none() {
                self.failure = Some((source.raw_os_error(), source.kind(), source.to_string()));
            }
        }
        r
    }

    /// The error of a writer that lost its file: the first I/O error again.
    fn failed(&self) -> StorageError {
        match &self.failure {
            Some((Some(code), _, _)) => {
                StorageError::io(&self.path, io::Error::from_raw_os_error(*code))
            }
            Some((None, kind, text)) => {
                StorageError::io(&self.path, io::Error::new(*kind, text.clone()))
            }
            None => StorageError::Backend("writer already failed".into()),
        }
    }

    /// Writes the pending chunks. Without `sync` the batch is written behind, on a blocking
    /// thread, while the caller goes on filling the next one (at most one batch in flight); with
    /// `sync` everything is written and `fdatasync`ed before this returns.
    async fn flush_pending(&mut self, sync: bool) -> Result<()> {
        if sync {
            // The final sync must see any error the background one got (they share one open file
            // description, so only one of them would be told).
            self.wait_sync().await?;
        }
        let file = self.take_file().await?;
        let chunks = std::mem::take(&mut self.pending);
        let written = self.pending_len as u64;
        self.pending_len = 0;
        if sync {
            let r = blocking(&self.path, move || write_batch(file, chunks, true)).await;
            self.file = Some(self.note(r)?);
            trace("commit-fdatasync", Path::new(&self.path));
            return Ok(());
        }
        self.unsynced += written;
        if self.unsynced >= SYNC_EVERY && self.syncing.as_ref().is_none_or(|t| t.is_finished()) {
            self.wait_sync().await?;
            let dup = file
                .try_clone()
                .map_err(|e| StorageError::io(&self.path, e))?;
            self.syncing = Some(tokio::task::spawn_blocking(move || dup.sync_data()));
            self.unsynced = 0;
        }
        self.writing = Some(tokio::task::spawn_blocking(move || {
            write_batch(file, chunks, false)
        }));
        Ok(())
    }

    /// Waits for the background sync, if any, and reports its error.
    async fn wait_sync(&mut self) -> Result<()> {
        match self.syncing.take() {
            Some(t) => {
                let r = join(&self.path, t).await;
                self.note(r)
            }
            None => Ok(()),
        }
    }
}

#[async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= WRITE_BATCH {
            self.flush_pending(false).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.flush_pending(false).await?;
        self.take_file().await?;
        self.wait_sync().await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush_pending(true).await
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        // Unwrite what this writer added: truncate back to the length it found.
        let start = self.start;
        let _ = self.wait_sync().await;
        let file = self.take_file().await.ok();
        blocking(&self.path, move || match file {
            Some(f) => f.set_len(start),
            None => Ok(()),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    /// The durability steps recorded for paths under `root`, in order, with `root` cut off.
    fn steps_under(root: &Path, upload: &str) -> Vec<String> {
        let root = root.display().to_string();
        TRACE
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.contains(&root) || s.ends_with(upload))
            .map(|s| s.replace(&root, ""))
            .collect()
    }

    #[tokio::test]
    async fn blob_then_link_durability_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = FsDriver::new(dir.path()).unwrap();
        let upload = format!("/u{}/data", uuid::Uuid::new_v4().simple());
        // What the registry does for a final PUT: commit the data, rename it into place, link it.
        let mut w = d.writer(&upload, false).await.unwrap();
        w.write(Bytes::from_static(b"blob bytes")).await.unwrap();
        w.commit().await.unwrap();
        d.rename(&upload, "/blobs/sha256/ab/abcd/data")
            .await
            .unwrap();
        d.put_content(
            "/repo/app/_layers/sha256/abcd/link",
            Bytes::from_static(b"sha256:abcd"),
        )
        .await
        .unwrap();
        let steps = steps_under(dir.path(), &upload);
        let pos = |want: &str| {
            steps
                .iter()
                .position(|s| {
                    s == want || (want.ends_with('*') && s.starts_with(&want[..want.len() - 1]))
                })
                .unwrap_or_else(|| panic!("{want} missing in {steps:#?}"))
        };
        let commit = pos(&format!("commit-fdatasync {upload}"));
        let blob_rename = pos("rename /blobs/sha256/ab/abcd/data");
        let blob_dir = pos("fsync-dir /blobs/sha256/ab/abcd");
        let link_data = pos("fdatasync /repo/app/_layers/sha256/abcd/.link.tmp*");
        let link_rename = pos("rename /repo/app/_layers/sha256/abcd/link");
        let link_dir = steps
            .iter()
            .rposition(|s| s == "fsync-dir /repo/app/_layers/sha256/abcd")
            .unwrap();
        assert!(commit < blob_rename && blob_rename < blob_dir, "{steps:#?}");
        assert!(
            blob_dir < link_data && link_data < link_rename && link_rename < link_dir,
            "{steps:#?}"
        );
        // Every new folder's entry was synced in its parent, top down, before the file in it.
        for parent in ["", "/blobs", "/blobs/sha256", "/blobs/sha256/ab"] {
            let p = steps
                .iter()
                .position(|s| *s == format!("fsync-dir {parent}"))
                .unwrap_or_else(|| panic!("fsync-dir {parent:?} missing in {steps:#?}"));
            assert!(p < blob_rename, "{steps:#?}");
        }
    }

    async fn read_all(d: &FsDriver, path: &str, offset: u64, len: Option<u64>) -> Vec<u8> {
        let chunks: Vec<Bytes> = d
            .read(path, offset, len)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        chunks.concat()
    }

    /// Reads across, at and just around the read-ahead block boundaries, and small whole reads.
    #[tokio::test]
    async fn reads_around_block_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = FsDriver::new(dir.path()).unwrap();
        let data: Vec<u8> = (0..2 * IO_BLOCK + 3).map(|i| (i % 251) as u8).collect();
        d.put_content("/f", Bytes::from(data.clone()))
            .await
            .unwrap();
        let b = IO_BLOCK as u64;
        assert_eq!(read_all(&d, "/f", 0, None).await, data);
        for (off, len) in [
            (0, Some(b)),
            (0, Some(2 * b)),
            (1, Some(2 * b + 2)),
            (b - 1, Some(2)),
            (b, None),
            (2 * b, None),
            (2 * b + 3, None),
            (5, Some(SMALL_READ)),
            (7, Some(0)),
        ] {
            let end = len.map_or(data.len(), |l| (off + l) as usize);
            assert_eq!(
                read_all(&d, "/f", off, len).await,
                &data[off as usize..end],
                "offset {off} len {len:?}"
            );
        }
        // A range past the end gives what there is.
        assert_eq!(
            read_all(&d, "/f", 2 * b, Some(b)).await,
            &data[2 * IO_BLOCK..]
        );
    }

    /// Writers that pass the background sync threshold still write every byte in order.
    #[tokio::test]
    async fn writer_with_background_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let d = FsDriver::new(dir.path()).unwrap();
        // Chunks of different sizes and contents, written behind and synced in the background:
        // every byte lands in order.
        let mut want = Vec::new();
        let mut w = d.writer("/up", false).await.unwrap();
        let mut i = 0u8;
        while (want.len() as u64) < SYNC_EVERY + (3 << 20) {
            let chunk = vec![i; 100_000 + 37_000 * (i as usize % 9)];
            want.extend_from_slice(&chunk);
            w.write(Bytes::from(chunk)).await.unwrap();
            i = i.wrapping_add(1);
        }
        w.close().await.unwrap();
        let mut w = d.writer("/up", true).await.unwrap();
        w.write(Bytes::from_static(b"end")).await.unwrap();
        w.commit().await.unwrap();
        want.extend_from_slice(b"end");
        assert_eq!(d.stat("/up").await.unwrap().size, want.len() as u64);
        assert!(read_all(&d, "/up", 0, None).await == want);
    }

    /// A batch written behind that fails is reported by the next call that waits for it.
    #[tokio::test]
    async fn write_behind_errors_are_reported() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("full")).unwrap();
        let d = FsDriver::new(dir.path()).unwrap();
        // A full batch goes behind (this call does not wait for it); close must report its error.
        let mut w = d.writer("/full", true).await.unwrap();
        w.write(Bytes::from(vec![1u8; WRITE_BATCH])).await.unwrap();
        assert!(
            w.close().await.is_err(),
            "close must report the failed batch"
        );
        // Less than a batch: close itself writes it behind, and must still wait for it.
        let mut w = d.writer("/full", true).await.unwrap();
        w.write(Bytes::from_static(b"tail")).await.unwrap();
        assert!(
            w.close().await.is_err(),
            "close must report its own last batch"
        );

        let mut w = d.writer("/full", true).await.unwrap();
        w.write(Bytes::from(vec![1u8; WRITE_BATCH])).await.unwrap();
        assert!(
            w.write(Bytes::from(vec![1u8; WRITE_BATCH])).await.is_err(),
            "the next batch must report the failed one"
        );

        let mut w = d.writer("/full", true).await.unwrap();
        w.write(Bytes::from(vec![1u8; WRITE_BATCH])).await.unwrap();
        assert!(
            w.commit().await.is_err(),
            "commit must report the failed batch"
        );
    }
}
