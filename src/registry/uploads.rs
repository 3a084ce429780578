//! Blob uploads: start, append (chunked or streamed), status, complete, cancel.
//!
//! Bytes stream from the request into the upload's `data` file while being hashed; the hash state is
//! saved after every append under `hashstates/sha256/<offset>` (Go's format), so another process
//! sharing the storage and `http.secret` continues the upload without re-reading it. The size of the
//! `data` file is the truth about the upload's offset: a chunk cut short by a dropped connection
//! leaves the upload at whatever arrived, and the client learns that from the status or a 416.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};

use super::hasher::ResumableSha256;
use super::{Registry, RegistryError, Result, UploadState};
use crate::oci::{Algorithm, Digest, RepositoryName};
use crate::storage::{layout, ByteStream, FaultKind, FileWriter};

/// An upload in progress, as known after validating the request.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub name: RepositoryName,
    pub uuid: String,
    /// Bytes received so far.
    pub offset: u64,
    pub started_at: DateTime<Utc>,
    /// The offset the client's signed `_state` names (what it was last told), if it sent one:
    /// where an append expects to continue, so that it can read the hash state saved there while
    /// it opens the data (one round trip to the store fewer). A hint, never trusted: the data's
    /// size decides.
    pub state_offset: Option<u64>,
    /// Whether the upload's existence (its `startedat` file) is still to be checked: the append
    /// does it while it opens the data (see [`Registry::resume_upload_for_write`]).
    pub(crate) unconfirmed: bool,
}

fn valid_uuid(uuid: &str) -> bool {
    uuid::Uuid::parse_str(uuid).is_ok()
}

impl Registry {
    /// Starts an upload session.
    pub async fn start_upload(&self, name: &RepositoryName) -> Result<UploadSession> {
        self.refuse_push(name)?;
        self.begin_upload(name).await
    }

    /// Starts an upload session, also in a mirrored repository (the pull-through cache's own).
    pub(super) async fn begin_upload(&self, name: &RepositoryName) -> Result<UploadSession> {
        let uuid = uuid::Uuid::new_v4().to_string();
        let started_at = Utc::now();
        // Not flushed to disk, like the upload's data until commit: an upload caught by a crash may
        // lose its start time and become unknown (404 BLOB_UPLOAD_UNKNOWN: clients start over);
        // no blob is visible until a commit that is synced.
        self.driver
            .put_content_unsynced(
                &layout::upload_started_at(name, &uuid),
                Bytes::from(started_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            )
            .await?;
        Ok(UploadSession {
            name: name.clone(),
            uuid,
            offset: 0,
            started_at,
            state_offset: None,
            unconfirmed: false,
        })
    }

    /// The signed `_state` token for a session.
    pub fn upload_state_token(&self, s: &UploadSession) -> String {
        self.options.secret.pack(&UploadState {
            name: s.name.to_string(),
            uuid: s.uuid.clone(),
            offset: s.offset,
            started_at: s.started_at,
        })
    }

    /// Finds an upload from its URL and optional `_state` token, with its offset (the size of
    /// its data).
    pub async fn resume_upload(
        &self,
        name: &RepositoryName,
        uuid: &str,
        state: Option<&str>,
    ) -> Result<UploadSession> {
        self.find_upload(name, uuid, state, true).await
    }

    /// [`resume_upload`](Self::resume_upload) for a request that appends to the upload, cancels
    /// it, or completes it without a body: the offset is left at 0, since the append reads it
    /// from the writer it opens anyway (on an object store a `stat` of the data costs a `HEAD`
    /// and listings, per request). Where opening a writer writes nothing
    /// ([`writer_opens_without_writing`](crate::storage::StorageDriver::writer_opens_without_writing):
    /// object stores) and the client sent its signed `_state` (which holds the start time), the
    /// check that the upload exists is left to the request's append, which makes it while it
    /// opens the data: one round trip to the store fewer. A cancel needs no check (it answers
    /// from what it deletes).
    pub async fn resume_upload_for_write(
        &self,
        name: &RepositoryName,
        uuid: &str,
        state: Option<&str>,
    ) -> Result<UploadSession> {
        self.find_upload(name, uuid, state, false).await
    }

    async fn find_upload(
        &self,
        name: &RepositoryName,
        uuid: &str,
        state: Option<&str>,
        with_offset: bool,
    ) -> Result<UploadSession> {
        self.refuse_push(name)?;
        if !valid_uuid(uuid) {
            return Err(RegistryError::BlobUploadUnknown);
        }
        let mut started_at = None;
        let mut state_offset = None;
        let defer_check =
            !with_offset && state.is_some() && self.driver.writer_opens_without_writing();
        if let Some(token) = state {
            let st = self.options.secret.unpack(token).ok_or_else(|| {
                RegistryError::BlobUploadInvalid(
                    "upload state was not signed by this registry".into(),
                )
            })?;
            if st.name != name.as_str() || st.uuid != uuid {
                return Err(RegistryError::BlobUploadInvalid(
                    "upload state names another upload".into(),
                ));
            }
            started_at = Some(st.started_at);
            state_offset = Some(st.offset);
        }
        if let (true, Some(started_at)) = (defer_check, started_at) {
            return Ok(UploadSession {
                name: name.clone(),
                uuid: uuid.to_owned(),
                offset: 0,
                started_at,
                state_offset,
                unconfirmed: true,
            });
        }
        let started = self.upload_started(name, uuid).await?;
        let offset = if !with_offset {
            0
        } else {
            match self.driver.stat(&layout::upload_data(name, uuid)).await {
                Ok(info) => info.size,
                Err(e) if e.is_not_found() => 0,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(UploadSession {
            name: name.clone(),
            uuid: uuid.to_owned(),
            offset,
            started_at: started_at.or(started).unwrap_or_else(Utc::now),
            state_offset,
            unconfirmed: false,
        })
    }

    /// The upload's start time as its `startedat` file holds it (`None` if unreadable);
    /// `BlobUploadUnknown` if the file is gone (the upload was cancelled, completed or purged).
    async fn upload_started(
        &self,
        name: &RepositoryName,
        uuid: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        match self
            .driver
            .get_content(&layout::upload_started_at(name, uuid))
            .await
        {
            Ok(b) => Ok(std::str::from_utf8(&b)
                .ok()
                .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
                .map(|t| t.with_timezone(&Utc))),
            Err(e) if e.is_not_found() => Err(RegistryError::BlobUploadUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Restores the hash of the first `size` bytes: from the saved state at `size`, else the latest
    /// saved state below it plus a re-read of the rest, else by reading everything. `read_ahead`:
    /// the answer of a read of the state at some offset, made before `size` was known (see
    /// [`UploadSession::state_offset`]); used if that offset is `size`.
    async fn restore_hasher(
        &self,
        s: &UploadSession,
        size: u64,
        read_ahead: Option<(u64, crate::storage::Result<Bytes>)>,
    ) -> Result<ResumableSha256> {
        if size == 0 {
            return Ok(ResumableSha256::new());
        }
        // The state the last append saved is at the current size: one read, no listing.
        let saved = match read_ahead {
            Some((offset, answer)) if offset == size => answer,
            _ => {
                self.driver
                    .get_content(&layout::upload_hashstate(&s.name, &s.uuid, size))
                    .await
            }
        };
        match saved {
            Ok(b) => {
                if let Some(h) = ResumableSha256::unmarshal(&b).filter(|h| h.len() == size) {
                    return Ok(h);
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let dir = layout::upload_hashstates_dir(&s.name, &s.uuid);
        let mut offsets: Vec<u64> = match self.driver.list(&dir).await {
            Ok(names) => names.iter().filter_map(|n| n.parse().ok()).collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        let mut hasher = ResumableSha256::new();
        for off in offsets.into_iter().filter(|&o| o <= size) {
            let path = layout::upload_hashstate(&s.name, &s.uuid, off);
            match self.driver.get_content(&path).await {
                Ok(b) => {
                    if let Some(h) = ResumableSha256::unmarshal(&b).filter(|h| h.len() == off) {
                        hasher = h;
                        break;
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if hasher.len() < size {
            let mut rest = self
                .driver
                .read(
                    &layout::upload_data(&s.name, &s.uuid),
                    hasher.len(),
                    Some(size - hasher.len()),
                )
                .await?;
            while let Some(chunk) = rest.next().await {
                let chunk = chunk.map_err(|e| RegistryError::Internal(e.to_string()))?;
                hasher.update(&chunk);
            }
        }
        if hasher.len() != size {
            return Err(RegistryError::BlobUploadInvalid(
                "upload data is shorter than expected".into(),
            ));
        }
        Ok(hasher)
    }

    /// Appends a request body. `start` is the first byte of a `Content-Range`, which must equal the
    /// current offset. Returns the new offset.
    pub async fn append_upload(
        &self,
        s: &mut UploadSession,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.append_inner(s, start, Some(body), None).await
    }

    /// Streams `body` (if any) onto the upload's data while hashing it, then closes the writer (or,
    /// with `finalize`, the digest the upload is completed under, commits it). The hash state is
    /// saved for the new offset even when the body broke off, so the next request continues from
    /// whatever arrived.
    ///
    /// A sha256 `finalize` digest is verified before the commit (its `fsync`): a mismatch closes the
    /// data unsynced and answers `DigestInvalid`.
    async fn append_inner(
        &self,
        s: &mut UploadSession,
        start: Option<u64>,
        body: Option<ByteStream>,
        finalize: Option<&Digest>,
    ) -> Result<u64> {
        let path = layout::upload_data(&s.name, &s.uuid);
        // The hash state where the client expects the data to end is read while the writer
        // opens (on an object store both are round trips).
        let read_ahead = async {
            match s.state_offset.filter(|&o| o > 0) {
                Some(o) => {
                    let state = layout::upload_hashstate(&s.name, &s.uuid, o);
                    Some((o, self.driver.get_content(&state).await))
                }
                None => None,
            }
        };
        // So is the check that the upload exists, if it is still to be made (an open writes
        // nothing there; see `resume_upload_for_write`).
        let confirm = async {
            match s.unconfirmed {
                true => self.upload_started(&s.name, &s.uuid).await.map(|_| ()),
                false => Ok(()),
            }
        };
        let (writer, read_ahead, confirmed) =
            futures::future::join3(self.driver.writer(&path, true), read_ahead, confirm).await;
        if let Err(e) = confirmed {
            if let Ok(w) = writer {
                w.cancel().await?;
            }
            return Err(e);
        }
        s.unconfirmed = false;
        let mut writer = writer?;
        let size = writer.size();
        s.offset = size;
        if let Some(start) = start {
            if start != size {
                writer.cancel().await?;
                return Err(RegistryError::UploadOutOfOrder { offset: size });
            }
        }
        let mut hasher = match self.restore_hasher(s, size, read_ahead).await {
            Ok(h) => h,
            Err(e) => {
                writer.cancel().await?;
                return Err(e);
            }
        };
        let copied = match body {
            Some(mut body) => copy_hashing(&mut body, writer.as_mut(), &mut hasher).await,
            None => Ok(()),
        };
        let new_size = writer.size();
        let completed = finalize.is_some() && copied.is_ok();
        let mismatch = match finalize {
            Some(d) if completed && d.algorithm() == Algorithm::Sha256 => {
                let actual = Digest::from_raw(Algorithm::Sha256, &hasher.finish());
                (&actual != d).then_some(actual)
            }
            _ => None,
        };
        let closed = if completed && mismatch.is_none() {
            writer.commit().await
        } else {
            writer.close().await
        };
        if let Err(e) = closed {
            if e.kind() == FaultKind::Conflict {
                // Another request extended the upload first (two PATCHes at once): this one's
                // bytes are not in it; the client is told where the upload now ends.
                let offset = self.driver.stat(&path).await.map_or(size, |f| f.size);
                return Err(RegistryError::UploadOutOfOrder { offset });
            }
            return Err(e.into());
        }
        s.offset = new_size;
        // A completed upload's state is never needed again (its folder is removed next; after a
        // digest mismatch the hash is restored by re-reading): saving it would cost a synced write.
        if hasher.len() == new_size && new_size > size && !completed {
            // Unsynced, like the data until commit: after a crash a state that is missing, torn or
            // ahead of the data is skipped and the hash rebuilt from the data.
            self.driver
                .put_content_unsynced(
                    &layout::upload_hashstate(&s.name, &s.uuid, new_size),
                    Bytes::from(hasher.marshal()),
                )
                .await?;
        }
        copied?;
        if let (Some(actual), Some(want)) = (mismatch, finalize) {
            return Err(digest_mismatch(&actual, want));
        }
        Ok(new_size)
    }

    /// Finishes an upload: appends the optional final body, verifies `digest`, moves the bytes into
    /// the blob store and links the blob into the repository.
    pub async fn complete_upload(
        &self,
        s: &mut UploadSession,
        digest: &Digest,
        start: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<u64> {
        let body = match body {
            // The whole blob in this request, its digest known before its bytes: straight to
            // the blob's own key where the backend can (one write of the bytes, no copy).
            Some(body)
                if s.offset == 0
                    && start.unwrap_or(0) == 0
                    && digest.algorithm() == Algorithm::Sha256 =>
            {
                match self
                    .driver
                    .direct_writer(&layout::blob_data(digest))
                    .await?
                {
                    Some(writer) => {
                        return self
                            .write_direct(&s.name, Some(&s.uuid), digest, body, writer)
                            .await
                    }
                    None => Some(body),
                }
            }
            body => body,
        };
        let data = layout::upload_data(&s.name, &s.uuid);
        let size = self.append_inner(s, start, body, Some(digest)).await?;
        if digest.algorithm() == Algorithm::Sha512 {
            let actual = self.sha512_of_file(&data).await?;
            if &actual != digest {
                return Err(digest_mismatch(&actual, digest));
            }
        }
        let target = layout::blob_data(digest);
        // The event's journal write runs beside the commit (an intent, resolved after it).
        let pending = self
            .begin_event(|| {
                super::blobs::blob_event(super::events::Action::Push, &s.name, digest, size)
            })
            .await?;
        let committed = async {
            // Claimed from garbage collection first, then checked (see `claim_blob`).
            self.claim_blob(digest).await?;
            if self.stat_global_blob(digest).await? != Some(size) {
                self.driver.rename(&data, &target).await?;
            }
            self.link_blob(&s.name, digest).await?;
            self.delete_if_exists(&layout::upload_dir(&s.name, &s.uuid))
                .await?;
            Ok(size)
        }
        .await;
        self.finish_event(pending, committed).await
    }

    /// A whole blob streamed into a [`direct_writer`](crate::storage::StorageDriver::direct_writer)
    /// of its final path while being hashed, committed only once the digest is verified; the
    /// same steps as a commit after that (event intent, claim from garbage collection, then the
    /// blob becomes visible, its link, the upload folder `uuid` removed if there is one). Until
    /// the writer's commit nothing is visible; any failure before it discards the bytes (a
    /// broken-off body too: the upload stays at offset 0, and the client starts it over).
    async fn write_direct(
        &self,
        name: &RepositoryName,
        uuid: Option<&str>,
        digest: &Digest,
        mut body: ByteStream,
        mut writer: Box<dyn FileWriter>,
    ) -> Result<u64> {
        let mut hasher = ResumableSha256::new();
        if let Err(e) = copy_hashing(&mut body, writer.as_mut(), &mut hasher).await {
            writer.cancel().await?;
            return Err(e);
        }
        let size = writer.size();
        let actual = Digest::from_raw(Algorithm::Sha256, &hasher.finish());
        if &actual != digest {
            writer.cancel().await?;
            return Err(digest_mismatch(&actual, digest));
        }
        let pending = self
            .begin_event(|| {
                super::blobs::blob_event(super::events::Action::Push, name, digest, size)
            })
            .await?;
        let committed = async {
            // As in `complete_upload`: claimed from garbage collection before it becomes visible.
            self.claim_blob(digest).await?;
            if self.stat_global_blob(digest).await? != Some(size) {
                writer.commit().await?;
            } else {
                writer.cancel().await?;
            }
            self.link_blob(name, digest).await?;
            if let Some(uuid) = uuid {
                self.delete_if_exists(&layout::upload_dir(name, uuid))
                    .await?;
            }
            Ok(size)
        }
        .await;
        self.finish_event(pending, committed).await
    }

    /// The sha512 digest of a stored file, read back whole. Uploads are hashed with sha256 as they
    /// arrive (resumably, across requests); an upload completed under a sha512 digest is hashed
    /// here, once, from its bytes.
    async fn sha512_of_file(&self, path: &str) -> Result<Digest> {
        use sha2::Digest as _;
        let mut stream = self.driver.read(path, 0, None).await?;
        let mut h = sha2::Sha512::new();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| RegistryError::Internal(e.to_string()))?
        {
            h.update(&chunk);
        }
        Ok(Digest::from_raw(Algorithm::Sha512, &h.finalize()))
    }

    /// Cancels an upload and removes its data.
    pub async fn cancel_upload(&self, s: &UploadSession) -> Result<()> {
        if !self
            .delete_if_exists(&layout::upload_dir(&s.name, &s.uuid))
            .await?
        {
            return Err(RegistryError::BlobUploadUnknown);
        }
        Ok(())
    }

    /// A whole blob in one request (`POST ?digest=` or `PUT` on a fresh session).
    pub async fn put_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        if digest.algorithm() == Algorithm::Sha256 {
            self.refuse_push(name)?;
            if let Some(writer) = self
                .driver
                .direct_writer(&layout::blob_data(digest))
                .await?
            {
                // No upload session at all: nothing to record, nothing to clean up.
                return self.write_direct(name, None, digest, body, writer).await;
            }
        }
        let mut s = self.start_upload(name).await?;
        let r = self.complete_upload(&mut s, digest, None, Some(body)).await;
        if r.is_err() {
            // A failed one-shot upload has no session the client knows of: clean it up.
            let _ = self.cancel_upload(&s).await;
        }
        r
    }
}

fn digest_mismatch(actual: &Digest, want: &Digest) -> RegistryError {
    RegistryError::DigestInvalid(format!("content has digest {actual}, not {want}"))
}

/// Bytes hashed per blocking task: the batch a fast body fills before it is hashed. An upload
/// waiting for its writer holds about two batches: 128 KiB measured as fast as 256 KiB (1 GiB and
/// 32 x 8 MiB pushes on the filesystem) and 3 MiB less RSS for 32 concurrent object-store pushes.
const HASH_BATCH: usize = 128 << 10;

/// Copies a body into a writer while hashing it. Stops at the first error.
///
/// SHA-256 is the most expensive step of a push, so it runs on blocking threads, in batches of
/// up to `HASH_BATCH` (or what arrived before the socket paused), one batch hashing while the
/// next is read from the socket. A batch goes to
/// the writer only after the hasher has seen it: on any error the hasher has seen at least what
/// the writer was given, and the caller saves the hash state only when the lengths agree.
///
/// Bounded under abuse: no thread is held for the life of a body (1,000 slow uploads used to
/// hold 1,000 blocking threads — the whole pool — and every other file operation waited), and
/// when the client pauses, what arrived is hashed and written at once, so an idle upload holds
/// no buffered bytes either. After a body error what arrived is still hashed and written: the
/// upload keeps it and stays resumable.
async fn copy_hashing(
    body: &mut ByteStream,
    writer: &mut dyn FileWriter,
    hasher: &mut ResumableSha256,
) -> Result<()> {
    use futures::FutureExt;
    let mut pipe = HashPipe {
        hasher: Some(std::mem::take(hasher)),
        inflight: None,
        pending: Vec::new(),
        pending_len: 0,
    };
    let copied = async {
        loop {
            let next = match body.next().now_or_never() {
                Some(next) => next,
                None => {
                    // Nothing more yet: hash what arrived, and if that is done before the client
                    // sends more, write it meanwhile (an idle upload holds no buffer).
                    pipe.start(writer).await?;
                    match pipe.inflight.take() {
                        Some((mut task, batch)) => {
                            tokio::select! {
                                next = body.next() => {
                                    pipe.inflight = Some((task, batch));
                                    next
                                }
                                hashed = &mut task => {
                                    pipe.written(hashed, batch, writer).await?;
                                    body.next().await
                                }
                            }
                        }
                        None => body.next().await,
                    }
                }
            };
            match next {
                None => return Ok(()),
                Some(Err(e)) => return Err(RegistryError::BodyRead(e)),
                Some(Ok(chunk)) => {
                    pipe.pending_len += chunk.len();
                    pipe.pending.push(chunk);
                    if pipe.pending_len >= HASH_BATCH {
                        pipe.start(writer).await?;
                    }
                }
            }
        }
    }
    .await;
    let drained = pipe.drain(writer).await;
    if let Some(h) = pipe.hasher {
        *hasher = h;
    }
    copied.and(drained)
}

/// The state of `copy_hashing`: the hasher (absent while a batch is hashing), the batch being
/// hashed, and the chunks read since.
struct HashPipe {
    hasher: Option<ResumableSha256>,
    inflight: Option<(tokio::task::JoinHandle<ResumableSha256>, Vec<Bytes>)>,
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl HashPipe {
    /// Waits for the batch being hashed, then gives it to the writer.
    async fn finish_inflight(&mut self, writer: &mut dyn FileWriter) -> Result<()> {
        if let Some((task, batch)) = self.inflight.take() {
            self.written(task.await, batch, writer).await?;
        }
        Ok(())
    }

    /// Takes the hasher back from a finished batch and gives the batch to the writer.
    async fn written(
        &mut self,
        hashed: std::result::Result<ResumableSha256, tokio::task::JoinError>,
        batch: Vec<Bytes>,
        writer: &mut dyn FileWriter,
    ) -> Result<()> {
        let h = hashed.map_err(|e| RegistryError::Internal(format!("hashing failed: {e}")))?;
        self.hasher = Some(h);
        for chunk in batch {
            writer.write(chunk).await?;
        }
        Ok(())
    }

    /// Starts hashing the pending chunks (after the batch before them is written).
    async fn start(&mut self, writer: &mut dyn FileWriter) -> Result<()> {
        self.finish_inflight(writer).await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut h = self
            .hasher
            .take()
            .ok_or_else(|| RegistryError::Internal("the hasher was lost".into()))?;
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let chunks = batch.clone();
        let task = tokio::task::spawn_blocking(move || {
            for c in &chunks {
                h.update(c);
            }
            h
        });
        self.inflight = Some((task, batch));
        Ok(())
    }

    /// Hashes and writes everything read so far.
    async fn drain(&mut self, writer: &mut dyn FileWriter) -> Result<()> {
        self.start(writer).await?;
        self.finish_inflight(writer).await
    }
}
