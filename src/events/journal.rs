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
//!
//! Intents: a write's event can be appended *before* its storage commit, as an intent (the
//! record carries a [`Check`]: what storage shows once the write happened), so its `fsync` runs
//! beside the commit instead of after it. Once the commit succeeded, a marker
//! (`{"resolves":N,"ok":true}`, no seq of its own) is appended without waiting for its sync; a
//! failed write gets `"ok":false` and its event is never delivered. Readers never read past an unresolved
//! intent (order is kept), skip markers and skip failed intents. After a crash, an intent
//! without a marker is handed back by [`Journal::open`] ([`Journal::replayed`]): its owner checks
//! storage and resolves it — delivered if the write happened, dropped if not.

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
pub enum Entry {
    /// A record to append.
    Append {
        /// The record's JSON without its seq: `"action":...,"event":{...}` (the writer adds the
        /// seq); an intent's also holds its `"check"`.
        body: String,
        /// Whether it is an intent (readers wait for its marker).
        intent: bool,
        /// Answered with the record's seq once it is durable; `None` for pulls.
        done: Option<oneshot::Sender<Result<u64, String>>>,
    },
    /// The outcome of intent `seq`: a marker is appended (nobody waits for its sync).
    Resolve { seq: u64, ok: bool },
    /// Answered once everything queued before it is written and synced (the shutdown drain).
    Flush(oneshot::Sender<Result<(), String>>),
}

impl Entry {
    fn waits(&self) -> bool {
        matches!(self, Entry::Append { done: Some(_), .. } | Entry::Flush(_))
    }
}

/// What storage shows once an intent's write happened: the blob (push, mount) or manifest
/// (push) `digest` linked in `repository`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Check {
    /// `blob` or `manifest`.
    pub kind: String,
    pub repository: String,
    pub digest: String,
}

/// A record read back.
#[derive(Debug, Deserialize)]
pub struct Record {
    /// 0 in a marker (markers take no seq: seqs count events).
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub action: String,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// When it was recorded (Unix milliseconds).
    #[serde(default)]
    pub at: i64,
    /// The event (none in a marker).
    #[serde(default)]
    pub event: Option<Box<RawValue>>,
    /// An intent's check.
    #[serde(default)]
    pub check: Option<Check>,
    /// A marker: the intent it resolves, and whether its write happened.
    #[serde(default)]
    pub resolves: Option<u64>,
    #[serde(default)]
    pub ok: bool,
}

struct Segment {
    first: u64,
    path: PathBuf,
    size: u64,
}

/// Intents of writes in progress, and the failed ones readers skip.
#[derive(Default)]
struct Intents {
    unresolved: std::collections::BTreeSet<u64>,
    failed: std::collections::BTreeSet<u64>,
    /// The last seq appended.
    appended: u64,
}

impl Intents {
    /// What readers may read up to: everything appended before the first unresolved intent.
    fn readable(&self) -> u64 {
        match self.unresolved.first() {
            Some(first) => (first - 1).min(self.appended),
            None => self.appended,
        }
    }
}

/// What readers and the writer share.
pub struct Shared {
    dir: PathBuf,
    segments: Mutex<VecDeque<Segment>>,
    intents: Mutex<Intents>,
    /// The last seq readers may read: appended, and not behind an unresolved intent.
    written: watch::Sender<u64>,
    cursors: Mutex<Vec<Arc<AtomicU64>>>,
    maxsize: u64,
    segment_size: u64,
}

/// The journal: a sender into the writer thread and the shared state readers use.
pub struct Journal {
    pub tx: mpsc::Sender<Entry>,
    pub shared: Arc<Shared>,
    /// Intents found without a marker on open (a crash between intent and marker): the owner
    /// checks storage and sends their [`Entry::Resolve`].
    pub replayed: Vec<(u64, Check)>,
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
        let (intents, replayed) = replay_intents(&segments, last)?;
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
        let (written, _) = watch::channel(intents.readable());
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            segments: Mutex::new(segments),
            intents: Mutex::new(intents),
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
            replayed,
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
                if rec.resolves.is_none() {
                    last = Some(rec.seq);
                }
                good += n as u64;
            }
            Err(_) => break,
        }
    }
    Ok((last, good))
}

/// The intents of the kept segments: those without a marker (with their checks) and the failed
/// ones.
fn replay_intents(
    segments: &VecDeque<Segment>,
    last: u64,
) -> io::Result<(Intents, Vec<(u64, Check)>)> {
    let mut open: std::collections::BTreeMap<u64, Check> = Default::default();
    let mut intents = Intents {
        appended: last,
        ..Intents::default()
    };
    for seg in segments {
        let mut r = BufReader::new(File::open(&seg.path)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let Ok(rec) = serde_json::from_slice::<Record>(&line) else {
                break;
            };
            if let Some(check) = rec.check {
                open.insert(rec.seq, check);
            } else if let Some(of) = rec.resolves {
                open.remove(&of);
                if !rec.ok {
                    intents.failed.insert(of);
                }
            }
        }
    }
    intents.unresolved = open.keys().copied().collect();
    Ok((intents, open.into_iter().collect()))
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
        // Wait for work (no fixed window: whatever queued while the last commit ran is taken at
        // once); wake up to sync pulls and markers written a while ago.
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
        // Old segments go before anyone is answered, so a waiter sees the journal as it stays.
        shared.retain();
        // The seq of each appended entry, in batch order.
        let mut seqs = answer.as_ref().ok().map(|s| s.iter());
        for e in batch.drain(..) {
            let seq = match &e {
                Entry::Append { .. } => seqs.as_mut().and_then(|s| s.next()).copied(),
                _ => None,
            };
            match e {
                Entry::Append {
                    done: Some(done), ..
                } => {
                    let r = match (&answer, seq) {
                        (Ok(_), Some(s)) => Ok(s),
                        (Err(e), _) => Err(e.clone()),
                        (Ok(_), None) => Err("journal lost an entry".to_owned()),
                    };
                    let _ = done.send(r);
                }
                Entry::Flush(done) => {
                    let _ = done.send(answer.as_ref().map(|_| ()).map_err(Clone::clone));
                }
                _ => {}
            }
        }
    }
}

fn sync(file: &Option<(u64, File)>) {
    if let Some((_, f)) = file {
        let _ = f.sync_data();
    }
}

/// Writes a batch (rolling segments as they fill); syncs when a waiter needs it or unsynced
/// records are due. Returns the seqs given to the batch's appends, in order. On an error, the
/// intents of this batch count as failed here (their writers get the error; after a restart
/// storage decides).
fn commit(
    shared: &Shared,
    file: &mut Option<(u64, File)>,
    seq: &mut u64,
    batch: &[Entry],
    unsynced_since: &mut Option<Instant>,
) -> io::Result<Vec<u64>> {
    let mut new_intents = Vec::new();
    let r = commit_inner(shared, file, seq, batch, unsynced_since, &mut new_intents);
    let mut st = lock(&shared.intents);
    st.appended = *seq;
    match &r {
        Ok(_) => {
            for e in batch {
                if let Entry::Resolve { seq, ok } = e {
                    st.unresolved.remove(seq);
                    if !ok {
                        st.failed.insert(*seq);
                    }
                }
            }
        }
        Err(_) => {
            for s in &new_intents {
                st.unresolved.remove(s);
                st.failed.insert(*s);
            }
            // A marker not written still resolves here; a restart would check storage.
            for e in batch {
                if let Entry::Resolve { seq, ok } = e {
                    st.unresolved.remove(seq);
                    if !ok {
                        st.failed.insert(*seq);
                    }
                }
            }
        }
    }
    // Readers see writes at once (pulls and markers before their sync: a crash of the process
    // keeps them in the page cache; a crash of the machine may lose up to PULL_SYNC_INTERVAL of
    // pulls, and markers, whose intents storage then decides).
    shared.written.send_replace(st.readable());
    r
}

fn commit_inner(
    shared: &Shared,
    file: &mut Option<(u64, File)>,
    seq: &mut u64,
    batch: &[Entry],
    unsynced_since: &mut Option<Instant>,
    new_intents: &mut Vec<u64>,
) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(batch.len());
    let mut rest: Vec<&Entry> = batch
        .iter()
        .filter(|e| !matches!(e, Entry::Flush(_)))
        .collect();
    let mut rest = &mut rest[..];
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
        let mut intents = Vec::new();
        let mut appended = Vec::new();
        for e in rest.iter() {
            taken += 1;
            match e {
                Entry::Append { body, intent, .. } => {
                    next += 1;
                    buf.extend_from_slice(format!("{{\"seq\":{next},").as_bytes());
                    buf.extend_from_slice(body.as_bytes());
                    buf.extend_from_slice(b"}\n");
                    if *intent {
                        intents.push(next);
                    }
                    appended.push(next);
                }
                Entry::Resolve { seq: of, ok } => {
                    buf.extend_from_slice(
                        format!("{{\"resolves\":{of},\"ok\":{ok}}}\n").as_bytes(),
                    );
                }
                Entry::Flush(_) => {}
            }
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
            return Err(e);
        }
        if let Some(s) = lock(&shared.segments).iter_mut().find(|s| s.first == first) {
            s.size += buf.len() as u64;
        }
        *seq = next;
        {
            let mut st = lock(&shared.intents);
            st.unresolved.extend(intents.iter().copied());
        }
        new_intents.extend(intents);
        seqs.extend(appended);
        rest = &mut rest[taken..];
        if unsynced_since.is_none() {
            *unsynced_since = Some(Instant::now());
        }
    }
    let must_sync = batch.iter().any(Entry::waits)
        || unsynced_since.is_some_and(|t| t.elapsed() >= PULL_SYNC_INTERVAL);
    if must_sync {
        if let Some((_, f)) = file {
            f.sync_data()?;
        }
        *unsynced_since = None;
    }
    Ok(seqs)
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
    /// Events to deliver (markers and failed intents are left out).
    pub records: Vec<Record>,
    /// The last seq read (the cursor may move here once `records` are delivered).
    pub last: Option<u64>,
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

    /// Whether intent `seq` failed (its event is not delivered).
    fn failed(&self, seq: u64) -> bool {
        lock(&self.intents).failed.contains(&seq)
    }

    /// Events after `cursor` readers may read and will deliver (failed intents left out).
    pub fn pending_after(&self, cursor: u64) -> u64 {
        let st = lock(&self.intents);
        let readable = st.readable();
        if cursor >= readable {
            return 0;
        }
        let failed = st.failed.range(cursor + 1..=readable).count() as u64;
        readable.saturating_sub(cursor).saturating_sub(failed)
    }

    /// The last seq readers may read.
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
                    last: None,
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
                last: None,
                dropped,
            });
        };
        let mut f = match File::open(&path) {
            Ok(f) => f,
            // Deleted meanwhile (dropped past maxsize): the next read sees the gap.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Batch {
                    records: Vec::new(),
                    last: None,
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
        let mut last = None;
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
            if rec.resolves.is_some() {
                // A marker: nothing to deliver, read on.
                offset += n as u64;
                pos.offset = offset;
                pos.segment = first;
                continue;
            }
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
                last = Some(rec.seq);
                let skip = rec.event.is_none() || (rec.check.is_some() && self.failed(rec.seq));
                if !skip {
                    records.push(rec);
                }
            }
        }
        Ok(Batch {
            records,
            last,
            dropped,
        })
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
                // Intents dropped with their segment wait for nobody.
                let mut st = lock(&self.intents);
                st.unresolved.retain(|&i| i >= next_first);
                let readable = st.readable();
                drop(st);
                self.written.send_replace(readable);
            }
        }
        let oldest = segs.front().map(|s| s.first).unwrap_or(0);
        drop(segs);
        let mut st = lock(&self.intents);
        let keep_from = oldest.max(min_cursor.saturating_add(1));
        st.failed.retain(|&i| i >= keep_from);
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
            j.tx.send(Entry::Append {
                body: format!("\"action\":\"push\",\"at\":0,\"event\":{{\"i\":{i}}}"),
                intent: false,
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

    async fn intent(j: &Journal, i: usize) -> u64 {
        let (tx, rx) = oneshot::channel();
        j.tx.send(Entry::Append {
            body: format!(
                "\"action\":\"push\",\"at\":0,\"event\":{{\"i\":{i}}},\"check\":{{\"kind\":\"blob\",\"repository\":\"a/b\",\"digest\":\"d{i}\"}}"
            ),
            intent: true,
            done: Some(tx),
        })
        .await
        .unwrap();
        rx.await.unwrap().unwrap()
    }

    fn seqs(j: &Journal) -> Vec<u64> {
        let mut pos = ReadPos::default();
        let b = j.shared.read_after(0, 100, &mut pos).unwrap();
        b.records.iter().map(|r| r.seq).collect()
    }

    #[tokio::test]
    async fn intents_hold_readers_back_until_resolved_and_replay_returns_the_unresolved() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path(), 1 << 20).unwrap();
            put(&j, 1, true).await; // 1
            let a = intent(&j, 2).await; // 2: its write will succeed
            let b = intent(&j, 3).await; // 3: fails
            put(&j, 1, true).await; // 4
            let c = intent(&j, 5).await; // 5: never resolved (the crash)
            assert_eq!((a, b, c), (2, 3, 5));
            // Nothing past the first unresolved intent is readable.
            assert_eq!(j.shared.written(), 1);
            assert_eq!(seqs(&j), [1]);
            j.tx.send(Entry::Resolve { seq: b, ok: false })
                .await
                .unwrap();
            j.tx.send(Entry::Resolve { seq: a, ok: true })
                .await
                .unwrap();
            put(&j, 1, true).await; // 6, and the markers are written
            assert_eq!(j.shared.written(), 4);
            assert_eq!(seqs(&j), [1, 2, 4], "the failed intent is skipped");
            assert_eq!(j.shared.pending_after(0), 3);
            assert!(j.replayed.is_empty());
        }
        // Reopened: the failed one stays skipped, the unresolved one is handed back.
        let j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.shared.written(), 4);
        assert_eq!(j.replayed.len(), 1);
        assert_eq!(j.replayed[0].0, 5);
        assert_eq!(j.replayed[0].1.digest, "d5");
        j.tx.send(Entry::Resolve { seq: 5, ok: false })
            .await
            .unwrap();
        put(&j, 1, true).await; // 7
        assert_eq!(seqs(&j), [1, 2, 4, 6, 7]);
        let (tx, rx) = oneshot::channel();
        j.tx.send(Entry::Flush(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
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
