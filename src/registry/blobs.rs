//! Blob reads, links and deletes.

use std::time::SystemTime;

use bytes::Bytes;

use super::events::{Action, Event, Kind};
use super::{Registry, RegistryError, Result};
use crate::oci::{Digest, RepositoryName};
use crate::storage::{layout, ByteStream};

impl Registry {
    /// Whether `name` may serve `digest`: a layer link or a manifest revision link (read path:
    /// through the link cache).
    pub async fn is_linked(&self, name: &RepositoryName, digest: &Digest) -> Result<bool> {
        Ok(self
            .link_exists_cached(name, &layout::layer_link(name, digest), digest)
            .await?
            || self
                .link_exists_cached(name, &layout::manifest_revision_link(name, digest), digest)
                .await?)
    }

    /// Whether `name` may serve `digest`, both links looked at at once unless one is cached: for
    /// the push path, where a miss (a new layer) is common and then needs both, in one round trip
    /// instead of two. Either link found is the answer, whatever the other look gave.
    async fn is_linked_at_once(&self, name: &RepositoryName, digest: &Digest) -> Result<bool> {
        let layer = layout::layer_link(name, digest);
        let revision = layout::manifest_revision_link(name, digest);
        if self.links.get(name.as_str(), &layer).is_some()
            || self.links.get(name.as_str(), &revision).is_some()
        {
            return Ok(true);
        }
        let (a, b) = futures::future::join(
            self.link_exists_cached(name, &layer, digest),
            self.link_exists_cached(name, &revision, digest),
        )
        .await;
        match (a, b) {
            (Ok(true), _) | (_, Ok(true)) => Ok(true),
            (Err(e), _) | (_, Err(e)) => Err(e),
            _ => Ok(false),
        }
    }

    /// Size of a blob that `name` may serve. The link answer and the size come from the caches
    /// when they are there; when not, the link and the size are read at once (one round trip
    /// on an object store, not two; a blob `name` may not serve costs a wasted look).
    pub async fn stat_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<u64> {
        let cached = self.blob_sizes.get(digest);
        let size = async {
            match cached {
                Some(size) => Ok(Some(size)),
                None => self.stat_global_blob(digest).await,
            }
        };
        let (linked, size) = futures::future::join(self.is_linked(name, digest), size).await;
        if !linked? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        let size = size?.ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        if cached.is_none() {
            self.blob_sizes.insert(digest.clone(), size, 0);
        }
        Ok(size)
    }

    /// Size of a blob that `name` may serve, for a client deciding whether to upload it (`HEAD`):
    /// read from storage, never a cache, and absent while garbage collection holds a tombstone on
    /// it (the client uploads it again, which claims it back). Finding an old blob refreshes its
    /// age (see [`present_for_push`](Self::present_for_push)).
    /// The links, the data and the tombstone are looked at at once (one round trip on an object
    /// store); the age refresh, a write, follows only when all say the blob is there.
    pub async fn stat_blob_for_push(&self, name: &RepositoryName, digest: &Digest) -> Result<u64> {
        self.present_if(self.is_linked_at_once(name, digest), digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// Whether the blob store has `digest` for a push: its bytes are there and garbage collection
    /// holds no tombstone on it. A blob older than `refresh_after` (and not refreshed since) gets
    /// its `lastused` file rewritten, so a collection that has not tombstoned it yet leaves it.
    pub(crate) async fn present_for_push(&self, digest: &Digest) -> Result<Option<u64>> {
        self.present_if(async { Ok(true) }, digest).await
    }

    /// [`present_for_push`](Self::present_for_push) if `allowed` (a link check, read beside the
    /// blob's looks: one round trip on an object store) says yes; the age refresh, a write,
    /// only after both. A `false` answer wins over a failed look.
    async fn present_if(
        &self,
        allowed: impl std::future::Future<Output = Result<bool>>,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let (allowed, look) = futures::future::join(allowed, self.look_for_push(digest)).await;
        if !allowed? {
            return Ok(None);
        }
        let Some((size, modified)) = look? else {
            return Ok(None);
        };
        self.refresh_age(digest, modified).await?;
        Ok(Some(size))
    }

    /// [`present_for_push`](Self::present_for_push) without the age refresh: the blob's size and
    /// modification time if its bytes are there and no tombstone is.
    async fn look_for_push(&self, digest: &Digest) -> Result<Option<(u64, Option<SystemTime>)>> {
        // Two metadata requests on object stores (the data, the tombstone), no listing: both are
        // files written whole. Both at once (each a round trip): only both together, read
        // before the age is refreshed, say the blob is there.
        let data = layout::blob_data(digest);
        let tombstone = layout::blob_tombstone(digest);
        let (info, tombstoned) =
            futures::future::join(self.driver.stat_file(&data), self.exists(&tombstone)).await;
        let info = match info {
            Ok(info) => info,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if tombstoned? {
            return Ok(None);
        }
        Ok(Some((info.size, info.modified)))
    }

    async fn refresh_age(&self, digest: &Digest, data_time: Option<SystemTime>) -> Result<()> {
        let after = self.options.refresh_after;
        if after.is_zero() {
            return Ok(());
        }
        let old = |t: Option<SystemTime>| t.is_none_or(|t| t.elapsed().is_ok_and(|a| a > after));
        if !old(data_time) {
            return Ok(());
        }
        let path = layout::blob_last_used(digest);
        match self.driver.stat_file(&path).await {
            Ok(i) if !old(i.modified) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self
            .driver
            .put_content_unsynced(&path, Bytes::new())
            .await?)
    }

    /// Takes a blob back from garbage collection: removes its tombstone. Every push that stores or
    /// references a blob does this *before* checking that the blob exists (the collector moves
    /// the bytes aside before checking the tombstone, so one of the two sees the other).
    /// The tombstone is a file written whole: one delete, no listing first (object stores).
    pub(crate) async fn claim_blob(&self, digest: &Digest) -> Result<()> {
        Ok(self
            .driver
            .delete_files(&[layout::blob_tombstone(digest)])
            .await?)
    }

    /// Size of a blob in the shared blob store, whoever links it. The data is a file written whole
    /// (a finished rename, commit or `put_content`): one metadata request on object stores.
    pub(crate) async fn stat_global_blob(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.driver.stat_file(&layout::blob_data(digest)).await {
            Ok(info) => Ok(Some(info.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams `len` bytes of a blob from `offset`. Callers check access with [`stat_blob`] first.
    pub async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream> {
        self.driver
            .read(&layout::blob_data(digest), offset, len)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    self.blob_sizes.remove(digest);
                    RegistryError::BlobUnknown(digest.clone())
                } else {
                    e.into()
                }
            })
    }

    /// A URL of the storage where a client may fetch the blob directly (presigned), if the driver
    /// offers one and redirects are not disabled. Callers check access with [`stat_blob`] first.
    pub async fn blob_redirect(&self, digest: &Digest) -> Result<Option<String>> {
        Ok(self.driver.redirect_url(&layout::blob_data(digest)).await?)
    }

    /// Lets `name` serve a blob that is already in the blob store.
    pub(crate) async fn link_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        self.write_link(&layout::layer_link(name, digest), digest)
            .await
    }

    /// Removes the blob from `name` (the bytes stay until garbage collection, as in distribution).
    pub async fn delete_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<()> {
        self.check_delete()?;
        if !self.exists(&layout::layer_link(name, digest)).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        let deleted = self
            .delete_if_exists(&layout::layer_dir(name, digest))
            .await;
        self.links.invalidate(name.as_str());
        deleted?;
        self.emit(|| {
            let mut e = Event::new(Action::Delete, Kind::Blob, name);
            e.digest = Some(digest.clone());
            e
        })
        .await
    }

    /// Tells listeners that a blob was served (a `GET` or a `HEAD`, as distribution announces both).
    pub async fn blob_pulled(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        self.emit(|| blob_event(Action::Pull, name, digest, size))
            .await
    }

    /// Deletes a blob's bytes from the blob store, whoever links it (the OpenShift pruner's
    /// `DELETE /admin/blobs/<digest>`, after it unlinked the blob from every repository). Already
    /// gone is success. This process forgets it at once; other servers never claim it to a push
    /// (`HEAD` and mount read storage) and stop serving it with their next read of the bytes.
    pub async fn delete_blob_from_storage(&self, digest: &Digest) -> Result<()> {
        self.check_delete()?;
        let r = self.delete_if_exists(&layout::blob_dir(digest)).await;
        self.blob_sizes.remove(digest);
        self.manifests.remove(digest);
        r.map(|_| ())
    }

    /// Cross-repository mount: links `digest` into `name` if `from` links it (or, without `from`, if
    /// the blob store has it). Returns whether it mounted.
    pub async fn mount_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<bool> {
        self.refuse_push(name)?;
        // A tombstoned blob is not mounted: the client uploads it, which claims it back.
        let size = match from {
            Some(from) => {
                let link = layout::layer_link(from, digest);
                self.present_if(self.exists(&link), digest).await?
            }
            None => self.present_for_push(digest).await?,
        };
        let Some(size) = size else {
            return Ok(false);
        };
        let pending = self
            .begin_event(|| {
                let mut e = blob_event(Action::Mount, name, digest, size);
                e.from_repository = from.map(|f| f.to_string());
                e
            })
            .await?;
        let linked = self.link_blob(name, digest).await;
        self.finish_event(pending, linked).await?;
        Ok(true)
    }
}

/// A blob's event: blobs have no media type of their own (distribution says octet-stream).
pub(super) fn blob_event(
    action: Action,
    name: &RepositoryName,
    digest: &Digest,
    size: u64,
) -> Event {
    let mut e = Event::new(action, Kind::Blob, name);
    e.media_type = Some("application/octet-stream".into());
    e.digest = Some(digest.clone());
    e.size = Some(size);
    e
}
