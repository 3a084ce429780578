//! The local journal events wait in until every endpoint has them: an append-only log of JSON
//! lines in numbered segment files (`<first seq>.log`), written by one thread.
//!
//! Group commit: the writer takes every entry queued while it was busy, writes them in one
//! `write`, and — when any of them is a write's event — `fsync`s once for all of them before it
//! answers their waiters. Pull events are written the same way but nobody waits for them; they
//! are synced with the next write's commit or within [`PULL_SYNC_INTERVAL`].
//!
//! Readers (one per endpoint) read the segments after their cursor, up to the last seq written.
//! Cursors live in `cursors/` (the last delivered seq, replaced by rename after each delivery:
//! losing an update only repeats deliveries). Segments every cursor has passed are deleted; past
//! `maxsize` the oldest segments go anyway, and readers that had not reached them count the
//! events they lost.
//!
//! On open the segments are scanned: a torn last line (a crash mid-write) is cut off, numbering
//! continues after the last whole record.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};

/// Unsynced pull events are synced at the latest this long after they were written.
pub const PULL_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Entries the writer takes in one commit at most.
const MAX_BATCH: usize = 4096;
/// Entries waiting for the writer; senders wait when it is full (memory stays bounded).
pub const QUEUE: usize = 8192;

/// One entry for the writer.
pub struct Entry {
    /// The record's JSON without its seq: `"action":...,"event":{...}` (the writer adds the seq).
    pub body: String,
    /// Answered once the entry is durable; `None` for pulls.
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A record read back.
#[derive(Debug, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub action: String,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// When it was recorded (Unix milliseconds).
    #[serde(default)]
    pub at: i64,
    pub event: Box<RawValue>,
}

struct Segment {
    first: u64,
    path: PathBuf,
    size: u64,
}

/// What readers and the writer share.
pub struct Shared {
    dir: PathBuf,
    segments: Mutex<VecDeque<Segment>>,
    /// The last seq written (readable).
    written: watch::Sender<u64>,
    cursors: Mutex<Vec<Arc<AtomicU64>>>,
    maxsize: u64,
    segment_size: u64,
}

/// The journal: a sender into the writer thread and the shared state readers use.
pub struct Journal {
    pub tx: mpsc::Sender<Entry>,
    pub shared: Arc<Shared>,
    /// Held for the process's life: a second process on the same spool fails at start.
    _lock: File,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, replaying what is there, and starts the writer.
    pub fn open(dir: &Path, maxsize: u64) -> io::Result<Journal> {
        std::fs::create_dir_all(dir.join("cursors"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        try_lock(&lock).map_err(|_| {
            io::Error::other(format!(
                "another process uses the spool {} (notifications.spool.path)",
                dir.display()
            ))
        })?;
        let mut segments: VecDeque<Segment> = VecDeque::new();
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let first = n.strip_suffix(".log")?.parse::<u64>().ok()?;
                Some((first, e.path()))
            })
            .collect();
        names.sort();
        for (first, path) in names {
            let size = std::fs::metadata(&path)?.len();
            segments.push_back(Segment { first, path, size });
        }
        // The last whole record of the last segment; cut a torn tail.
        let mut last = 0;
        loop {
            let many = segments.len() > 1;
            let Some(seg) = segments.back_mut() else {
                break;
            };
            let (last_seq, good_len) = scan(&seg.path)?;
            if good_len < seg.size {
                tracing::warn!(file = %seg.path.display(), "cutting a torn record off the notifications journal");
                OpenOptions::new()
                    .write(true)
                    .open(&seg.path)?
                    .set_len(good_len)?;
                seg.size = good_len;
            }
            match last_seq {
                Some(s) => {
                    last = s;
                    break;
                }
                None if many => {
                    // An empty last segment: drop it, the one before holds the tail.
                    if let Some(s) = segments.pop_back() {
                        let _ = std::fs::remove_file(&s.path);
                    }
                }
                None => {
                    last = seg.first.saturating_sub(1);
                    break;
                }
            }
        }
        if segments.is_empty() {
            let first = last + 1;
            let path = dir.join(segment_name(first));
            File::create(&path)?;
            segments.push_back(Segment {
                first,
                path,
                size: 0,
            });
        }
        let segment_size = (maxsize / 8).clamp(4 << 10, 8 << 20);
        let (written, _) = watch::channel(last);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            segments: Mutex::new(segments),
            written,
            cursors: Mutex::new(Vec::new()),
            maxsize,
            segment_size,
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let s = shared.clone();
        std::thread::Builder::new()
            .name("notify-journal".into())
            .spawn(move || writer(s, rx, last))?;
        Ok(Journal {
            tx,
            shared,
            _lock: lock,
        })
    }
}

/// An exclusive advisory lock on the spool (`flock`), released when the file closes (also when
/// the process dies).
fn try_lock(f: &File) -> io::Result<()> {
    rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(io::Error::from)
}

/// The last seq of a segment and the length of its whole records.
fn scan(path: &Path) -> io::Result<(Option<u64>, u64)> {
    let mut r = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    let mut good = 0u64;
    let mut last = None;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(rec) => {
                last = Some(rec.seq);
                good += n as u64;
            }
            Err(_) => break,
        }
    }
    Ok((last, good))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Entry>, mut seq: u64) {
    // A clock for the timed wait; the file work stays plain blocking calls on this thread.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the notifications journal");
            return;
        }
    };
    let mut file: Option<(u64, File)> = None;
    let mut unsynced_since: Option<Instant> = None;
    let mut batch: Vec<Entry> = Vec::new();
    loop {
        batch.clear();
        // Wait for work; wake up to sync pulls written a while ago.
        match unsynced_since {
            Some(t) => {
                let wait = PULL_SYNC_INTERVAL.saturating_sub(t.elapsed());
                match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                    Ok(Some(e)) => batch.push(e),
                    Err(_) => {}
                    Ok(None) => {
                        sync(&file);
                        return;
                    }
                }
            }
            None => match rx.blocking_recv() {
                Some(e) => batch.push(e),
                None => return,
            },
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let result = commit(&shared, &mut file, &mut seq, &batch, &mut unsynced_since);
        let answer = result.map_err(|e| e.to_string());
        if let Err(e) = &answer {
            tracing::error!(error = %e, "cannot write the notifications journal");
        }
        for e in batch.drain(..) {
            if let Some(done) = e.done {
                let _ = done.send(answer.clone());
            }
        }
        shared.retain();
    }
}

fn sync(file: &Option<(u64, File)>) {
    if let Some((_, f)) = file {
        let _ = f.sync_data();
    }
}

/// Writes a batch (rolling segments as they fill); syncs when a waiter needs it or unsynced
/// pulls are due.
fn commit(
    shared: &Shared,
    file: &mut Option<(u64, File)>,
    seq: &mut u64,
    batch: &[Entry],
    unsynced_since: &mut Option<Instant>,
) -> io::Result<()> {
    let mut rest = batch;
    while !rest.is_empty() {
        let (first, room) = {
            let (first, _) = current_file(shared, file, *seq + 1)?;
            let size = lock(&shared.segments)
                .iter()
                .find(|s| s.first == first)
                .map(|s| s.size)
                .unwrap_or(0);
            (first, shared.segment_size.saturating_sub(size))
        };
        let mut buf = Vec::new();
        let mut next = *seq;
        let mut taken = 0;
        for e in rest {
            next += 1;
            taken += 1;
            buf.extend_from_slice(format!("{{\"seq\":{next},").as_bytes());
            buf.extend_from_slice(e.body.as_bytes());
            buf.extend_from_slice(b"}\n");
            if buf.len() as u64 >= room {
                break;
            }
        }
        let Some((_, f)) = file.as_mut() else {
            return Err(io::Error::other("no journal file"));
        };
        if let Err(e) = f.write_all(&buf) {
            // Cut whatever part was written, so the file stays whole records.
            let len = lock(&shared.segments)
                .iter()
                .find(|s| s.first == first)
                .map(|s| s.size);
            if let Some(len) = len {
                let _ = f.set_len(len);
                let _ = f.seek(SeekFrom::Start(len));
            }
            shared.written.send_replace(*seq);
            return Err(e);
        }
        if let Some(s) = lock(&shared.segments).iter_mut().find(|s| s.first == first) {
            s.size += buf.len() as u64;
        }
        *seq = next;
        rest = &rest[taken..];
        if unsynced_since.is_none() {
            *unsynced_since = Some(Instant::now());
        }
    }
    let must_sync = batch.iter().any(|e| e.done.is_some())
        || unsynced_since.is_some_and(|t| t.elapsed() >= PULL_SYNC_INTERVAL);
    if must_sync {
        if let Some((_, f)) = file {
            f.sync_data()?;
        }
        *unsynced_since = None;
    }
    // Readers see writes at once (pulls before their sync: a crash of the process keeps them in
    // the page cache; a crash of the machine may lose up to PULL_SYNC_INTERVAL of pulls).
    shared.written.send_replace(*seq);
    Ok(())
}

/// The file appended to: the newest segment, rolled over (the new one starting at `next_seq`)
/// when full.
fn current_file<'a>(
    shared: &Shared,
    file: &'a mut Option<(u64, File)>,
    next_seq: u64,
) -> io::Result<(u64, &'a mut File)> {
    let (newest_first, newest_size) = {
        let segs = lock(&shared.segments);
        let s = segs
            .back()
            .ok_or_else(|| io::Error::other("journal without segments"))?;
        (s.first, s.size)
    };
    if newest_size >= shared.segment_size {
        // Roll. The old segment is synced first so a sync of the new one covers everything.
        if let Some((_, f)) = file.as_ref() {
            f.sync_data()?;
        }
        let path = shared.dir.join(segment_name(next_seq));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Ok(d) = File::open(&shared.dir) {
            let _ = d.sync_all();
        }
        lock(&shared.segments).push_back(Segment {
            first: next_seq,
            path,
            size: 0,
        });
        *file = Some((next_seq, f));
    } else if file.as_ref().map(|(f, _)| *f) != Some(newest_first) {
        let path = shared.dir.join(segment_name(newest_first));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        *file = Some((newest_first, f));
    }
    match file {
        Some((first, f)) => Ok((*first, f)),
        None => Err(io::Error::other("no journal file")),
    }
}

/// Where a reader is: a segment and a byte offset after a record, to read on without rescanning.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadPos {
    segment: u64,
    offset: u64,
    after: u64,
}

/// What a reader got.
pub struct Batch {
    pub records: Vec<Record>,
    /// Records dropped (past `maxsize`) between the cursor and the first record here.
    pub dropped: u64,
}

impl Shared {
    /// Registers an endpoint's cursor (its name's file in `cursors/`); a new endpoint starts after
    /// the last record written.
    pub fn cursor(&self, name: &str) -> io::Result<Arc<AtomicU64>> {
        let path = self.cursor_path(name);
        let value = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let v = *self.written.borrow();
                write_cursor(&path, v, true)?;
                v
            }
            Err(e) => return Err(e),
        };
        let c = Arc::new(AtomicU64::new(value));
        lock(&self.cursors).push(c.clone());
        Ok(c)
    }

    fn cursor_path(&self, name: &str) -> PathBuf {
        use sha2::Digest as _;
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let h = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..4]);
        self.dir.join("cursors").join(format!("{safe}-{h}"))
    }

    /// Saves an endpoint's cursor (no sync: a lost update repeats deliveries, never skips one).
    pub fn save_cursor(&self, name: &str, cursor: &AtomicU64, value: u64) -> io::Result<()> {
        cursor.store(value, Ordering::Release);
        write_cursor(&self.cursor_path(name), value, false)
    }

    /// The last seq written.
    pub fn written(&self) -> u64 {
        *self.written.borrow()
    }

    /// Waits until a record after `after` is written.
    pub async fn wait_after(&self, after: u64) {
        let mut rx = self.written.subscribe();
        let _ = rx.wait_for(|w| *w > after).await;
    }

    /// Up to `max` records after `after` (blocking file reads: call from a blocking thread).
    pub fn read_after(&self, after: u64, max: usize, pos: &mut ReadPos) -> io::Result<Batch> {
        let written = self.written();
        let (seg, dropped) = {
            let segs = lock(&self.segments);
            let Some(oldest) = segs.front() else {
                return Ok(Batch {
                    records: Vec::new(),
                    dropped: 0,
                });
            };
            let dropped = oldest.first.saturating_sub(after + 1);
            let want = (after + 1).max(oldest.first);
            let seg = segs
                .iter()
                .rev()
                .find(|s| s.first <= want)
                .map(|s| (s.first, s.path.clone()));
            (seg, dropped)
        };
        let Some((first, path)) = seg else {
            return Ok(Batch {
                records: Vec::new(),
                dropped,
            });
        };
        let mut f = match File::open(&path) {
            Ok(f) => f,
            // Deleted meanwhile (dropped past maxsize): the next read sees the gap.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Batch {
                    records: Vec::new(),
                    dropped,
                })
            }
            Err(e) => return Err(e),
        };
        let start = if pos.segment == first && pos.after <= after && pos.offset > 0 {
            pos.offset
        } else {
            *pos = ReadPos {
                segment: first,
                offset: 0,
                after: 0,
            };
            0
        };
        f.seek(SeekFrom::Start(start))?;
        let mut r = BufReader::new(f);
        let mut offset = start;
        let mut records = Vec::new();
        let mut line = Vec::new();
        while records.len() < max {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let rec: Record = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "bad record in {}: {e}",
                        path.display()
                    )))
                }
            };
            if rec.seq > written {
                break;
            }
            offset += n as u64;
            *pos = ReadPos {
                segment: first,
                offset,
                after: rec.seq,
            };
            if rec.seq > after {
                records.push(rec);
            }
        }
        Ok(Batch { records, dropped })
    }

    /// Deletes segments every cursor has passed, and the oldest ones past `maxsize`.
    fn retain(&self) {
        let min_cursor = lock(&self.cursors)
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        let mut segs = lock(&self.segments);
        let mut total: u64 = segs.iter().map(|s| s.size).sum();
        while segs.len() > 1 {
            let next_first = segs.get(1).map(|s| s.first).unwrap_or(u64::MAX);
            let done = next_first.saturating_sub(1) <= min_cursor;
            let over = total > self.maxsize;
            if !(done || over) {
                break;
            }
            if let Some(s) = segs.pop_front() {
                if !done {
                    tracing::warn!(
                        first = s.first,
                        last = next_first - 1,
                        "notifications spool over notifications.spool.maxsize: dropping the oldest events"
                    );
                }
                total -= s.size;
                let _ = std::fs::remove_file(&s.path);
            }
        }
    }

    /// Bytes the journal holds.
    pub fn size(&self) -> u64 {
        lock(&self.segments).iter().map(|s| s.size).sum()
    }
}

fn write_cursor(path: &Path, value: u64, sync: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(value.to_string().as_bytes())?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(j: &Journal, n: usize, durable: bool) {
        for i in 0..n {
            let (tx, rx) = oneshot::channel();
            j.tx.send(Entry {
                body: format!("\"action\":\"push\",\"at\":0,\"event\":{{\"i\":{i}}}"),
                done: durable.then_some(tx),
            })
            .await
            .unwrap();
            if durable {
                rx.await.unwrap().unwrap();
            }
        }
    }

    #[tokio::test]
    async fn replay_continues_numbering_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path(), 1 << 20).unwrap();
            put(&j, 5, true).await;
            assert_eq!(j.shared.written(), 5);
        }
        // The lock is released with the journal; a crash mid-write leaves half a line.
        let seg = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"seq\":6,\"action\":\"pu").unwrap();
        drop(f);
        let j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.shared.written(), 5);
        put(&j, 2, true).await;
        let mut pos = ReadPos::default();
        let b = j.shared.read_after(0, 100, &mut pos).unwrap();
        let seqs: Vec<u64> = b.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
        // A second process on the same spool is refused.
        assert!(Journal::open(dir.path(), 1 << 20).is_err());
    }

    #[tokio::test]
    async fn cursors_free_segments_and_maxsize_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 16 << 10).unwrap();
        let c = j.shared.cursor("ep").unwrap();
        put(&j, 400, false).await;
        put(&j, 1, true).await;
        assert!(j.shared.size() <= 16 << 10, "{}", j.shared.size());
        let mut pos = ReadPos::default();
        let b = j.shared.read_after(0, 10, &mut pos).unwrap();
        assert!(b.dropped > 0);
        assert_eq!(b.records[0].seq, b.dropped + 1);
        // Delivered up to the end: every old segment goes.
        j.shared.save_cursor("ep", &c, 401).unwrap();
        put(&j, 1, true).await;
        assert!(lock(&j.shared.segments).len() <= 2);
    }
}
