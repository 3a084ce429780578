//! Manifest media types and the parts of a manifest the registry must understand: what it references
//! (blobs, child manifests), its `subject`, `artifactType` and annotations.
//!
//! Parsing never rewrites the bytes: a manifest is stored and served exactly as pushed; this only reads
//! it to validate and to learn its references.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Digest;

/// Media type strings.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const OCI_NONDISTRIBUTABLE_PREFIX: &str =
        "application/vnd.oci.image.layer.nondistributable.";

    /// Whether `t` names a manifest list / image index.
    pub fn is_index(t: &str) -> bool {
        t == OCI_INDEX || t == DOCKER_LIST
    }
}

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// Layers the registry is not expected to hold (foreign / non-distributable).
    pub fn is_foreign(&self) -> bool {
        self.media_type == media::DOCKER_FOREIGN_LAYER
            || self
                .media_type
                .starts_with(media::OCI_NONDISTRIBUTABLE_PREFIX)
    }
}

/// Why a manifest body is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("schema1 manifests are not supported; push a schema2 or OCI manifest")]
    Schema1,
    #[error("unsupported schemaVersion {0}")]
    SchemaVersion(i64),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("manifest of type {0} is missing required field {1}")]
    Missing(&'static str, &'static str),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What the registry learns from a manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    /// The manifest's media type (one of the four supported).
    pub media_type: String,
    /// Blobs it references: config and layers (empty for an index).
    pub blobs: Vec<Descriptor>,
    /// Child manifests (index / list only).
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one, its config media type (as the spec says
    /// the referrers API reports it).
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

fn is_generic(ct: &str) -> bool {
    ct.is_empty() || ct == "application/json" || ct == "application/octet-stream"
}

impl ParsedManifest {
    /// Parses and validates `body`. `content_type` is the pushed Content-Type (None when reading a
    /// stored manifest back).
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|c| !is_generic(c));
        check_schema(&raw, header.as_deref())?;
        let mt = media_type_of(&raw, header.as_deref())?;
        if media::is_index(mt) {
            index(raw, mt)
        } else {
            image(raw, mt)
        }
    }
}

/// Schema 2 only: schema 1 (by version or by header) and other versions are refused.
fn check_schema(raw: &RawManifest, header: Option<&str>) -> Result<(), ManifestError> {
    if raw.schema_version == Some(1)
        || matches!(
            header,
            Some(media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED)
        )
    {
        return Err(ManifestError::Schema1);
    }
    match raw.schema_version {
        Some(2) => Ok(()),
        Some(v) => Err(ManifestError::SchemaVersion(v)),
        None => Err(ManifestError::Missing("manifest", "schemaVersion")),
    }
}

/// The manifest's media type, from the body's `mediaType` and the `Content-Type` header (which
/// must agree when both are given), else from its shape; one of the four types we store.
fn media_type_of(raw: &RawManifest, header: Option<&str>) -> Result<&'static str, ManifestError> {
    let media_type = match (&raw.media_type, header) {
        (Some(b), Some(h)) if b != h => {
            return Err(ManifestError::MediaTypeMismatch {
                body: b.clone(),
                header: h.to_owned(),
            })
        }
        (Some(b), _) => b.as_str(),
        // A stored manifest's type is read back from its body, so the Docker types, which
        // distribution also requires to carry it, must name it there or be served as OCI.
        (None, Some(h @ (media::DOCKER_MANIFEST | media::DOCKER_LIST))) => {
            let mt = if h == media::DOCKER_LIST {
                media::DOCKER_LIST
            } else {
                media::DOCKER_MANIFEST
            };
            return Err(ManifestError::Missing(mt, "mediaType"));
        }
        (None, Some(h)) => h,
        (None, None) if raw.manifests.is_some() => media::OCI_INDEX,
        (None, None) => media::OCI_MANIFEST,
    };
    match media_type {
        media::OCI_MANIFEST => Ok(media::OCI_MANIFEST),
        media::DOCKER_MANIFEST => Ok(media::DOCKER_MANIFEST),
        media::OCI_INDEX => Ok(media::OCI_INDEX),
        media::DOCKER_LIST => Ok(media::DOCKER_LIST),
        _ => Err(ManifestError::MediaType(media_type.to_owned())),
    }
}

/// An index or manifest list: its `manifests` are required.
fn index(raw: RawManifest, mt: &'static str) -> Result<ParsedManifest, ManifestError> {
    let manifests = raw
        .manifests
        .ok_or(ManifestError::Missing(mt, "manifests"))?;
    Ok(ParsedManifest {
        media_type: mt.to_owned(),
        blobs: Vec::new(),
        manifests,
        subject: raw.subject,
        artifact_type: raw.artifact_type,
        annotations: raw.annotations,
    })
}

/// An image manifest: its blobs are the config, then the layers; the artifact type defaults to
/// the config's media type.
fn image(raw: RawManifest, mt: &'static str) -> Result<ParsedManifest, ManifestError> {
    let config = raw.config.ok_or(ManifestError::Missing(mt, "config"))?;
    let layers = match (raw.layers, mt) {
        (Some(l), _) => l,
        // An OCI artifact may omit layers in practice; schema2 requires them.
        (None, media::OCI_MANIFEST) => Vec::new(),
        (None, _) => return Err(ManifestError::Missing(mt, "layers")),
    };
    let artifact_type = raw
        .artifact_type
        .or_else(|| Some(config.media_type.clone()));
    let mut blobs = Vec::with_capacity(layers.len() + 1);
    blobs.push(config);
    blobs.extend(layers);
    Ok(ParsedManifest {
        media_type: mt.to_owned(),
        blobs,
        manifests: Vec::new(),
        subject: raw.subject,
        artifact_type,
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#;

    #[test]
    fn infers_and_checks_media_type() {
        let m = format!(r#"{{"schemaVersion":2,"config":{CFG},"layers":[]}}"#);
        let p = ParsedManifest::parse(m.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, media::OCI_MANIFEST);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        // Docker schema2 must carry its mediaType: served back from the body, it would read as OCI.
        assert_eq!(
            ParsedManifest::parse(m.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap_err(),
            ManifestError::Missing(media::DOCKER_MANIFEST, "mediaType")
        );
        let p = ParsedManifest::parse(m.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(p.media_type, media::OCI_MANIFEST);
        let m2 = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{CFG},"layers":[]}}"#,
            media::OCI_MANIFEST
        );
        assert!(matches!(
            ParsedManifest::parse(m2.as_bytes(), Some(media::DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let idx = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            ParsedManifest::parse(idx.as_bytes(), None)
                .unwrap()
                .media_type,
            media::OCI_INDEX
        );
    }

    #[test]
    fn rejects_schema1_and_garbage() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert_eq!(
            ParsedManifest::parse(s1.as_bytes(), None).unwrap_err(),
            ManifestError::Schema1
        );
        assert!(ParsedManifest::parse(b"nope", None).is_err());
        assert!(
            ParsedManifest::parse(br#"{"schemaVersion":2}"#, Some(media::OCI_MANIFEST)).is_err()
        );
        assert!(
            ParsedManifest::parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None)
                .is_err()
        );
    }
}
