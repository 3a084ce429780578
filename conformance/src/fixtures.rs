//! Deterministic test content: blobs made of SHA-256 counter-mode bytes,
//! image manifests, an image index and artifact manifests with a `subject`.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// `artifactType` of the SBOM-like referrer (set on the manifest itself).
pub const AT_SBOM: &str = "application/vnd.example.conformance.sbom.v1";
/// Config media type of the signature-like referrer, which has no
/// `artifactType`: the referrers API must report this instead.
pub const AT_SIGNATURE: &str = "application/vnd.example.conformance.signature.v1+json";
/// Annotation carried by every fixture manifest (and so by referrer descriptors).
pub const FIXTURE_ANNOTATION: &str = "com.example.oci-conformance.fixture";

/// `Accept` value for manifest requests.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// `len` pseudo-random bytes determined by `label`.
pub fn pseudo_random(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut hasher = Sha256::new();
        hasher.update(label.as_bytes());
        hasher.update(counter.to_le_bytes());
        out.extend_from_slice(&hasher.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

#[derive(Clone)]
pub struct Blob {
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(data: Vec<u8>) -> Self {
        let digest = sha256_digest(&data);
        Blob { data, digest }
    }

    pub fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.data.len()})
    }
}

#[derive(Clone)]
pub struct Manifest {
    pub label: &'static str,
    pub media_type: &'static str,
    pub body: Vec<u8>,
    pub digest: String,
}

impl Manifest {
    fn new(label: &'static str, value: Value) -> Self {
        let media_type = match value["mediaType"].as_str() {
            Some(MT_INDEX) => MT_INDEX,
            _ => MT_MANIFEST,
        };
        let body = serde_json::to_vec_pretty(&value).expect("fixtures serialize");
        let digest = sha256_digest(&body);
        Manifest {
            label,
            media_type,
            body,
            digest,
        }
    }

    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.body.len()})
    }
}

pub struct Fixtures {
    pub seed: String,
    pub config: Blob,
    pub layer_a: Blob,
    pub layer_b: Blob,
    /// Pushed with a single `POST ?digest=`.
    pub single_post: Blob,
    /// Pushed to the cross-mount namespace, then mounted.
    pub mount: Blob,
    pub empty: Blob,
    /// `{}`, the OCI "empty" descriptor content used by artifacts.
    pub empty_json: Blob,
    /// A digest whose content is never uploaded.
    pub unknown_digest: String,
    /// Image manifest (config + layer_a + layer_b), pushed under `image_tags`.
    pub image: Manifest,
    /// Second image manifest, pushed by digest.
    pub image2: Manifest,
    /// Image manifest pushed under `doomed_tag`, for tag deletion.
    pub doomed: Manifest,
    /// Index of `image` and `image2`, pushed under `index_tag`.
    pub index: Manifest,
    /// Artifact with `artifactType` and `subject` = `image`.
    pub sbom: Manifest,
    /// Artifact without `artifactType` (config media type `AT_SIGNATURE`), subject `image`.
    pub signature: Manifest,
    /// Artifact whose subject was never pushed.
    pub orphan: Manifest,
    /// Image manifest referencing a layer that was never uploaded.
    pub missing_blob: Manifest,
    pub image_tags: Vec<String>,
    pub index_tag: String,
    pub doomed_tag: String,
}

fn annotations(label: &str) -> Value {
    json!({
        FIXTURE_ANNOTATION: label,
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
    })
}

fn image_manifest(label: &'static str, config: &Blob, layers: &[&Blob]) -> Manifest {
    let layers: Vec<Value> = layers.iter().map(|l| l.descriptor(MT_LAYER)).collect();
    Manifest::new(
        label,
        json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": config.descriptor(MT_CONFIG),
            "layers": layers,
            "annotations": annotations(label),
        }),
    )
}

impl Fixtures {
    pub fn new(seed: &str) -> Self {
        let random = |label: &str, len| Blob::new(pseudo_random(&format!("{seed}/{label}"), len));
        let layer_a = random("layer-a", 3 * 1024 + 7);
        let layer_b = random("layer-b", 2 * 1024 + 11);
        let single_post = random("single-post", 1500);
        let mount = random("mount", 1234);
        let unknown_digest = random("never-uploaded", 64).digest;
        let config = Blob::new(
            serde_json::to_vec(&json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer_a.digest, layer_b.digest]},
                "history": [{"created_by": format!("oci-conformance seed {seed}")}],
            }))
            .expect("config serializes"),
        );
        let empty_json = Blob::new(b"{}".to_vec());
        let image = image_manifest("image", &config, &[&layer_a, &layer_b]);
        let image2 = image_manifest("image2", &config, &[&layer_b, &single_post]);
        let doomed = image_manifest("doomed", &config, &[&layer_a]);
        let absent_layer = random("absent-layer", 100);
        let missing_blob = image_manifest("missing-blob", &config, &[&layer_a, &absent_layer]);
        let index = Manifest::new(
            "index",
            json!({
                "schemaVersion": 2,
                "mediaType": MT_INDEX,
                "manifests": [
                    merge(image.descriptor(), json!({"platform": {"architecture": "amd64", "os": "linux"}})),
                    merge(image2.descriptor(), json!({"platform": {"architecture": "arm64", "os": "linux"}})),
                ],
                "annotations": annotations("index"),
            }),
        );
        let artifact = |label: &'static str, artifact_type: Option<&str>, config_type, subject| {
            let mut value = json!({
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": empty_json.descriptor(config_type),
                "layers": [empty_json.descriptor(MT_EMPTY)],
                "subject": subject,
                "annotations": annotations(label),
            });
            if let Some(t) = artifact_type {
                value["artifactType"] = json!(t);
            }
            Manifest::new(label, value)
        };
        let sbom = artifact("sbom", Some(AT_SBOM), MT_EMPTY, image.descriptor());
        let signature = artifact("signature", None, AT_SIGNATURE, image.descriptor());
        let absent_subject = random("absent-subject", 300);
        let orphan = artifact(
            "orphan",
            Some(AT_SBOM),
            MT_EMPTY,
            absent_subject.descriptor(MT_MANIFEST),
        );
        Fixtures {
            seed: seed.to_string(),
            config,
            layer_a,
            layer_b,
            single_post,
            mount,
            empty: Blob::new(Vec::new()),
            empty_json,
            unknown_digest,
            image,
            image2,
            doomed,
            index,
            sbom,
            signature,
            orphan,
            missing_blob,
            image_tags: (0..4).map(|i| format!("conformance-{i}")).collect(),
            index_tag: "conformance-index".to_string(),
            doomed_tag: "conformance-doomed".to_string(),
        }
    }

    /// The subject digest of the `orphan` artifact (never pushed).
    pub fn orphan_subject(&self) -> String {
        let value: Value = serde_json::from_slice(&self.orphan.body).expect("fixture is JSON");
        value["subject"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A blob spanning three chunks of `chunk` bytes (the last one partial).
    pub fn chunked_blob(&self, label: &str, chunk: usize) -> Blob {
        Blob::new(pseudo_random(
            &format!("{}/{label}", self.seed),
            2 * chunk + chunk / 2 + 1,
        ))
    }
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        let a = Fixtures::new("x");
        let b = Fixtures::new("x");
        assert_eq!(a.image.digest, b.image.digest);
        assert_eq!(a.sbom.body, b.sbom.body);
        assert_ne!(a.image.digest, Fixtures::new("y").image.digest);
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(pseudo_random("z", 100).len(), 100);
        assert_eq!(a.orphan_subject().len(), 71);
    }
}
