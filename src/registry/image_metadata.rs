//! What the domain tells the cluster about a pushed manifest (OpenShift's image metadata): a
//! [`PushedImage`] handed to an [`ImageMetadata`] hook after the manifest is stored. The domain
//! knows nothing of the cluster API (`crate::imagestreams` implements the hook).
//!
//! Contract of [`ImageMetadata::image_pushed`]: it resolves once the cluster has recorded the
//! image. An error fails the push (the image would be invisible to the cluster), but the manifest
//! stays stored: a retry of the push records it again.

use bytes::Bytes;

use crate::oci::{Descriptor, Digest, RepositoryName};

/// A manifest just stored.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub repository: RepositoryName,
    /// The tag pushed to (`None` for a push by digest).
    pub tag: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    /// The layers (empty for an index / manifest list).
    pub layers: Vec<Descriptor>,
    /// An index's / manifest list's children, with their `platform` (empty for an image).
    pub manifests: Vec<Descriptor>,
    /// The config blob's descriptor and bytes (image manifests whose config is at most
    /// [`MAX_CONFIG_SIZE`] bytes).
    pub config: Option<(Descriptor, Bytes)>,
}

/// The largest config blob read for the metadata.
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// Why the cluster did not record the image.
#[derive(Debug, thiserror::Error)]
pub enum ImageMetadataError {
    /// The cluster refused it for a reason the client must see (a quota): `DENIED`.
    #[error("{0}")]
    Denied(String),
    /// Anything else (the API failed, answered unexpectedly): the push fails with a 5xx.
    #[error("{0}")]
    Failed(String),
}

/// Where the domain records pushed images.
#[async_trait::async_trait]
pub trait ImageMetadata: Send + Sync {
    /// See the module docs.
    async fn image_pushed(&self, image: PushedImage) -> Result<(), ImageMetadataError>;
}
