//! The protocol vocabulary of the OCI distribution and image specs: validated names, tags, digests,
//! references, media types and the manifest shapes the registry must understand.
//!
//! No I/O lives here and nothing here depends on other modules of the crate. Every type is validated
//! when it is constructed (`FromStr`), so code below `http/` never handles an unchecked string.

mod digest;
mod manifest;
mod name;

pub use digest::{Algorithm, Digest, DigestError};
pub use manifest::{media, Descriptor, ManifestError, ParsedManifest};
pub use name::{NameError, Reference, RepositoryName, Tag};
