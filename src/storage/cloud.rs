//! The object-store drivers a config names: builds the S3, GCS or Azure backend of a
//! [`StorageKind`] and wraps it in the generic [`ObjectDriver`].
//!
//! The one storage file that knows every cloud backend. Dependencies point one way: this file →
//! `s3`/`gcs`/`azure` → `object.rs`'s [`ObjectBackend`](super::object::ObjectBackend) trait; the
//! driver in `object.rs` knows none of the backends.

use std::sync::Arc;

use super::azure::AzureBackend;
use super::gcs::GcsBackend;
use super::object::{ObjectBackend, ObjectDriver};
use super::s3::S3Backend;
use super::StorageDriver;
use crate::config::StorageKind;

/// Builds the object driver for an object-store [`StorageKind`] (`None` for other kinds).
/// `redirect`: whether blob GETs may be redirected to presigned URLs (`storage.redirect.disable`
/// turns it off).
pub fn build_object_driver(
    kind: &StorageKind,
    redirect: bool,
) -> anyhow::Result<Option<Arc<dyn StorageDriver>>> {
    let (backend, root): (Arc<dyn ObjectBackend>, Option<String>) = match kind {
        StorageKind::S3(c) => (Arc::new(S3Backend::new(c)?), c.rootdirectory.clone()),
        StorageKind::Gcs(c) => (Arc::new(GcsBackend::new(c)?), c.rootdirectory.clone()),
        StorageKind::Azure(c) => (Arc::new(AzureBackend::new(c)?), c.rootdirectory.clone()),
        _ => return Ok(None),
    };
    Ok(Some(Arc::new(ObjectDriver::new(
        backend,
        root.as_deref().unwrap_or(""),
        redirect,
    ))))
}
