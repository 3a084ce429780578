//! Blob reads, links and deletes.

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

    /// Size of a blob that `name` may serve. The link answer and the size come from the caches
    /// when they are there.
    pub async fn stat_blob(&self, name: &RepositoryName, digest: &Digest) -> Result<u64> {
        if !self.is_linked(name, digest).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        if let Some(size) = self.blob_sizes.get(digest) {
            return Ok(size);
        }
        let size = self
            .stat_global_blob(digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        self.blob_sizes.insert(digest.clone(), size, 0);
        Ok(size)
    }

    /// Size of a blob in the shared blob store, whoever links it.
    pub(crate) async fn stat_global_blob(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.driver.stat(&layout::blob_data(digest)).await {
            Ok(info) if !info.is_dir => Ok(Some(info.size)),
            Ok(_) => Ok(None),
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

    /// Tells listeners that a blob was served (a `GET`; `HEAD`s are not announced).
    pub async fn blob_pulled(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        self.emit(|| blob_event(Action::Pull, name, digest, size))
            .await
    }

    /// Cross-repository mount: links `digest` into `name` if `from` links it (or, without `from`, if
    /// the blob store has it). Returns whether it mounted.
    pub async fn mount_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<bool> {
        let size = match from {
            Some(from) if !self.exists(&layout::layer_link(from, digest)).await? => None,
            _ => self.stat_global_blob(digest).await?,
        };
        let Some(size) = size else {
            return Ok(false);
        };
        self.link_blob(name, digest).await?;
        self.emit(|| {
            let mut e = blob_event(Action::Mount, name, digest, size);
            e.from_repository = from.map(|f| f.to_string());
            e
        })
        .await?;
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
