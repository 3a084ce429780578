//! OpenShift image metadata: on a manifest push in openshift mode, an `ImageStreamMapping`
//! (`image.openshift.io/v1`) records the image and its tag in the cluster, as the OpenShift
//! registry does, so builds, deployments and `oc get is` see it.
//!
//! Implements the domain's [`ImageMetadata`] hook over the auth module's cluster API client (one
//! HTTP client; calls made as the registry's service account). May depend on `registry`, `auth`,
//! `oci` and `config`.
//!
//! Contract: `POST /apis/image.openshift.io/v1/namespaces/<ns>/imagestreammappings`. A 404 for the
//! image stream creates the `ImageStream` (409: somebody else did) and retries once; a 403 whose
//! message says "exceeded quota" is [`ImageMetadataError::Denied`]; every other failure (the API
//! unreachable, a timeout, any other status) is [`ImageMetadataError::Failed`], cause logged.

use serde_json::{json, Map, Value};

use crate::auth::openshift::ServiceAccountApi;
use crate::registry::image_metadata::{ImageMetadata, ImageMetadataError, PushedImage};

const API: &str = "/apis/image.openshift.io/v1/namespaces";

/// Records pushed images as ImageStreamMappings.
pub struct ImageStreams {
    api: ServiceAccountApi,
    /// `openshift.server.addr`.
    server_addr: String,
}

impl ImageStreams {
    pub fn new(api: ServiceAccountApi, server_addr: &str) -> ImageStreams {
        ImageStreams {
            api,
            server_addr: server_addr.to_owned(),
        }
    }
}

/// The `ImageStreamMapping` for `image` in `ns`/`name`.
pub fn mapping(server_addr: &str, ns: &str, name: &str, image: &PushedImage) -> Value {
    let digest = image.digest.to_string();
    let layers: Vec<Value> = image
        .layers
        .iter()
        .map(|l| json!({"name": l.digest.to_string(), "size": l.size, "mediaType": l.media_type}))
        .collect();
    let mut img = json!({
        "metadata": {
            "name": digest,
            "annotations": {
                "openshift.io/image.managed": "true",
                "image.openshift.io/manifestBlobStored": "true",
                "image.openshift.io/dockerLayersOrder": "ascending",
            },
        },
        "dockerImageReference": format!("{server_addr}/{ns}/{name}@{digest}"),
        "dockerImageManifestMediaType": image.media_type,
        "dockerImageLayers": layers,
        "dockerImageMetadataVersion": "1.0",
    });
    if let Some(meta) = docker_image_metadata(image) {
        img["dockerImageMetadata"] = meta;
    }
    if !image.manifests.is_empty() {
        img["dockerImageManifests"] = Value::Array(image_manifests(image));
    }
    let mut m = json!({
        "kind": "ImageStreamMapping",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"namespace": ns, "name": name},
        "image": img,
    });
    if let Some(tag) = &image.tag {
        m["tag"] = json!(tag);
    }
    m
}

/// OpenShift's `ImageManifest`s of an index / manifest list: one per child, its platform's
/// architecture, os and (when set) variant; a child without a platform gets empty strings, as the
/// Go registry's zero values.
fn image_manifests(image: &PushedImage) -> Vec<Value> {
    image
        .manifests
        .iter()
        .map(|m| {
            let platform = m.platform.as_ref();
            let field = |k: &str| {
                platform
                    .and_then(|p| p.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let mut v = json!({
                "digest": m.digest.to_string(),
                "mediaType": m.media_type,
                "manifestSize": m.size,
                "architecture": field("architecture"),
                "os": field("os"),
            });
            let variant = field("variant");
            if !variant.is_empty() {
                v["variant"] = json!(variant);
            }
            v
        })
        .collect()
}

/// OpenShift's `DockerImage` (metadata version 1.0) from the image config: `Id` is the config
/// digest, `Size` the layers plus the config; the rest copied from the config's fields.
fn docker_image_metadata(image: &PushedImage) -> Option<Value> {
    let (desc, bytes) = image.config.as_ref()?;
    let cfg: Value = serde_json::from_slice(bytes).ok()?;
    let cfg = cfg.as_object()?;
    let mut out = Map::new();
    out.insert("kind".into(), json!("DockerImage"));
    out.insert("apiVersion".into(), json!("1.0"));
    out.insert("Id".into(), json!(desc.digest.to_string()));
    for (from, to) in [
        ("created", "Created"),
        ("author", "Author"),
        ("architecture", "Architecture"),
        ("os", "Os"),
        ("container", "Container"),
        ("docker_version", "DockerVersion"),
        ("config", "Config"),
        ("container_config", "ContainerConfig"),
        ("comment", "Comment"),
        ("parent", "Parent"),
    ] {
        if let Some(v) = cfg.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    let size: u64 = image.layers.iter().map(|l| l.size).sum::<u64>() + desc.size;
    out.insert("Size".into(), json!(size));
    Some(Value::Object(out))
}

/// What an API answer means.
enum Outcome {
    Done,
    StreamMissing,
    Quota(String),
    Failed(String),
}

fn classify(status: u16, body: &Value, stream: &str) -> Outcome {
    let message = body["message"].as_str().unwrap_or("").to_owned();
    match status {
        200 | 201 => Outcome::Done,
        404 => {
            let kind = body["details"]["kind"].as_str().unwrap_or("");
            let name = body["details"]["name"].as_str().unwrap_or("");
            if ["imagestreams", "imagestream", "imagestreammappings"].contains(&kind)
                && name == stream
            {
                Outcome::StreamMissing
            } else {
                Outcome::Failed(format!("the cluster API answered 404: {message}"))
            }
        }
        403 if message.contains("exceeded quota") => Outcome::Quota(message),
        s => Outcome::Failed(format!("the cluster API answered {s}: {message}")),
    }
}

impl ImageStreams {
    async fn post(&self, path: &str, body: Value) -> Result<(u16, Value), ImageMetadataError> {
        self.api
            .post(path, body)
            .await
            .map_err(|e| ImageMetadataError::Failed(e.to_string()))
    }

    async fn create_stream(&self, ns: &str, name: &str) -> Result<(), ImageMetadataError> {
        let body = json!({
            "kind": "ImageStream",
            "apiVersion": "image.openshift.io/v1",
            "metadata": {"namespace": ns, "name": name},
        });
        match self.post(&format!("{API}/{ns}/imagestreams"), body).await? {
            (200 | 201 | 409, _) => Ok(()),
            (403, v)
                if v["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("exceeded quota") =>
            {
                Err(ImageMetadataError::Denied(
                    v["message"].as_str().unwrap_or("").to_owned(),
                ))
            }
            (s, v) => Err(ImageMetadataError::Failed(format!(
                "creating the image stream {ns}/{name}: the cluster API answered {s}: {}",
                v["message"].as_str().unwrap_or("")
            ))),
        }
    }
}

#[async_trait::async_trait]
impl ImageMetadata for ImageStreams {
    async fn image_pushed(&self, image: PushedImage) -> Result<(), ImageMetadataError> {
        let Some((ns, name)) = image.repository.as_str().split_once('/') else {
            // openshift mode admits only <namespace>/<name>; anything else is no image stream.
            return Ok(());
        };
        let path = format!("{API}/{ns}/imagestreammappings");
        let body = mapping(&self.server_addr, ns, name, &image);
        let mut created_stream = false;
        loop {
            let (status, answer) = self.post(&path, body.clone()).await?;
            match classify(status, &answer, name) {
                Outcome::Done => return Ok(()),
                Outcome::StreamMissing if !created_stream => {
                    self.create_stream(ns, name).await?;
                    created_stream = true;
                }
                Outcome::StreamMissing => {
                    return Err(ImageMetadataError::Failed(format!(
                        "the image stream {ns}/{name} is still missing after creating it"
                    )))
                }
                Outcome::Quota(m) => {
                    tracing::info!(repository = %image.repository, message = %m, "push refused by a quota");
                    return Err(ImageMetadataError::Denied(m));
                }
                Outcome::Failed(m) => {
                    tracing::error!(repository = %image.repository, digest = %image.digest, cause = %m, "ImageStreamMapping failed");
                    return Err(ImageMetadataError::Failed(m));
                }
            }
        }
    }
}
