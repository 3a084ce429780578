//! Domain errors. Each variant says what went wrong in registry terms; `http/error.rs` maps each to
//! its OCI error code and status in one place. Storage failures arrive here already sorted into
//! what a client is told ([`RegistryError::StorageUnavailable`]: retry later, or
//! [`RegistryError::StorageFailed`]), so nothing above the registry looks at `StorageError`.

use crate::oci::{Digest, RepositoryName};
use crate::storage::{FaultKind, StorageError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// A chunk that does not start where the upload ends (answered 416 with the current range).
    #[error("chunk out of order: the upload is at offset {offset}")]
    UploadOutOfOrder { offset: u64 },
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest references an unknown blob or manifest: {0}")]
    ManifestBlobUnknown(Digest),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(RepositoryName),
    #[error("manifest too large: at most {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("requested range not satisfiable for a blob of {size} bytes")]
    RangeInvalid { size: u64 },
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// The request body could not be read (client went away or sent a broken body).
    #[error("reading the request body failed: {0}")]
    BodyRead(std::io::Error),
    /// The storage backend cannot be reached or refused the call (an object store's outage,
    /// throttling): worth retrying.
    #[error(transparent)]
    StorageUnavailable(StorageError),
    /// Storage answered, but wrongly (an I/O error, a file missing that must exist, a bad path).
    #[error(transparent)]
    StorageFailed(StorageError),
    /// A mirrored repository's upstream failed and nothing cached could answer.
    #[error(transparent)]
    Upstream(#[from] super::UpstreamError),
    /// The volume is full (`ENOSPC`, `EDQUOT`): nothing more can be written until space is freed.
    #[error(transparent)]
    StorageFull(StorageError),
    /// The volume is read-only (`EROFS`).
    #[error(transparent)]
    StorageReadOnly(StorageError),
    /// The process may not write to the storage (`EACCES`, `EPERM`).
    #[error(transparent)]
    StorageDenied(StorageError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The cluster refused to record a pushed image (a quota): `DENIED`.
    #[error("denied: {0}")]
    Denied(String),
    /// The manifest is stored but the cluster could not record the image (5xx; a retry works).
    #[error("recording the image in the cluster failed: {0}")]
    ImageMetadataFailed(String),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> RegistryError {
        match e.kind() {
            // Retriable: the caller's view of the file was stale.
            FaultKind::Backend | FaultKind::Conflict => RegistryError::StorageUnavailable(e),
            FaultKind::Full => RegistryError::StorageFull(e),
            FaultKind::ReadOnly => RegistryError::StorageReadOnly(e),
            FaultKind::Denied => RegistryError::StorageDenied(e),
            FaultKind::NotFound | FaultKind::InvalidPath | FaultKind::Io => {
                RegistryError::StorageFailed(e)
            }
        }
    }
}
