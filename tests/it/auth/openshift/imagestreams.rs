//! OpenShift image metadata: a manifest push in openshift mode creates an ImageStreamMapping in
//! the (fake) cluster, with the body the OpenShift registry sends; a missing image stream is
//! created and the mapping retried; a quota refusal fails the push with DENIED; any other API
//! failure fails it with a 5xx, the manifest stays stored and a retry succeeds.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::fake_kube::{IS, ISM};

const SEEDER: &str = "tok-seeder-123456";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn env(openshift_yaml: &str) -> Env {
    let kube = FakeKube::start(table()).await;
    let reg = openshift_registry(&kube.base, DEFAULT_OPENSHIFT)
        .config(openshift_yaml)
        .start()
        .await;
    Env { kube, reg }
}

/// An image: the config JSON, two layers and the manifest.
struct Image {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    manifest: Vec<u8>,
}

fn image(seed: &str) -> Image {
    let config = json!({
        "created": "2026-11-30T10:00:00Z",
        "author": "builder@example.com",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/app"], "Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": []},
    })
    .to_string()
    .into_bytes();
    let layers = vec![
        format!("layer one of {seed}").into_bytes(),
        format!("layer two of {seed}, longer").into_bytes(),
    ];
    let manifest = oci_manifest(
        &descriptor(
            "application/vnd.oci.image.config.v1+json",
            &sha256(&config),
            config.len(),
        ),
        &layers
            .iter()
            .map(|l| {
                descriptor(
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    &sha256(l),
                    l.len(),
                )
            })
            .collect::<Vec<_>>(),
    );
    Image {
        config,
        layers,
        manifest,
    }
}

impl Env {
    async fn push_blobs(&self, repo: &str, img: &Image) {
        for b in std::iter::once(&img.config).chain(&img.layers) {
            let (s, _) = self.push_blob(repo, b, SEEDER).await;
            assert_eq!(s, StatusCode::CREATED);
        }
    }

    async fn put(&self, repo: &str, reference: &str, img: &Image) -> reqwest::Response {
        self.req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(SEEDER),
        )
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .await
        .unwrap()
    }

    async fn manifest_status(&self, repo: &str, digest: &str) -> StatusCode {
        self.req(
            Method::GET,
            &format!("/v2/{repo}/manifests/{digest}"),
            Some(SEEDER),
        )
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .status()
    }
}

async fn error_of(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/json", "OCI error JSON");
    let v: Value = r.json().await.unwrap();
    (s, v["errors"][0].clone())
}

#[tokio::test]
async fn push_records_the_mapping_field_by_field_creating_the_stream() {
    let env = env("openshift:\n  server:\n    addr: reg.example:5000\n").await;
    let img = image("fields");
    env.push_blobs("proj/app", &img).await;
    assert!(!env.kube.has_stream("proj", "app"));
    let r = env.put("proj/app", "v1", &img).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // 404 for the stream -> the stream created -> the mapping retried.
    assert_eq!(env.kube.calls(ISM), 2);
    assert_eq!(env.kube.calls(IS), 1);
    assert!(env.kube.has_stream("proj", "app"));

    let digest = sha256(&img.manifest);
    let m = env.kube.mappings();
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m["kind"], "ImageStreamMapping");
    assert_eq!(m["apiVersion"], "image.openshift.io/v1");
    assert_eq!(m["metadata"], json!({"namespace": "proj", "name": "app"}));
    assert_eq!(m["tag"], "v1");
    let i = &m["image"];
    assert_eq!(i["metadata"]["name"], digest.as_str());
    let ann = &i["metadata"]["annotations"];
    assert_eq!(ann["openshift.io/image.managed"], "true");
    assert_eq!(ann["image.openshift.io/manifestBlobStored"], "true");
    assert_eq!(
        i["dockerImageReference"],
        format!("reg.example:5000/proj/app@{digest}")
    );
    assert_eq!(i["dockerImageManifestMediaType"], OCI_MANIFEST);
    let layers: Vec<Value> = img
        .layers
        .iter()
        .map(|l| {
            json!({"name": sha256(l), "size": l.len(),
                   "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"})
        })
        .collect();
    assert_eq!(i["dockerImageLayers"], Value::Array(layers));
    let md = &i["dockerImageMetadata"];
    assert_eq!(md["kind"], "DockerImage");
    assert_eq!(md["apiVersion"], "1.0");
    assert_eq!(md["Id"], sha256(&img.config).as_str());
    assert_eq!(md["Created"], "2026-11-30T10:00:00Z");
    assert_eq!(md["Author"], "builder@example.com");
    assert_eq!(md["Architecture"], "amd64");
    assert_eq!(md["Config"]["Cmd"], json!(["/app"]));
    assert_eq!(md["Config"]["Labels"]["seed"], "fields");
    let size = img.config.len() + img.layers.iter().map(Vec::len).sum::<usize>();
    assert_eq!(md["Size"], size);

    // The stream exists now: a second push maps at once; a push by digest carries no tag.
    env.kube.reset_calls();
    let r = env.put("proj/app", &digest, &img).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!((env.kube.calls(ISM), env.kube.calls(IS)), (1, 0));
    let m = env.kube.mappings();
    assert_eq!(m.len(), 2);
    assert!(m[1].get("tag").is_none(), "{}", m[1]);
}

#[tokio::test]
async fn default_server_addr_and_switched_off() {
    let env = env("").await;
    let img = image("default");
    env.push_blobs("proj/app", &img).await;
    assert_eq!(
        env.put("proj/app", "v1", &img).await.status(),
        StatusCode::CREATED
    );
    let digest = sha256(&img.manifest);
    assert_eq!(
        env.kube.mappings()[0]["image"]["dockerImageReference"],
        format!("image-registry.openshift-image-registry.svc:5000/proj/app@{digest}")
    );

    let env = env_off().await;
    env.push_blobs("proj/app", &img).await;
    assert_eq!(
        env.put("proj/app", "v1", &img).await.status(),
        StatusCode::CREATED
    );
    assert_eq!((env.kube.calls(ISM), env.kube.calls(IS)), (0, 0));
}

/// An image index over two images (linux/amd64, linux/arm64/v8) maps with
/// `dockerImageManifests` ({digest, mediaType, manifestSize, architecture, os, variant}), as the
/// OpenShift registry sends for a manifest list, and no layers or image metadata; the fake API
/// refuses a list entry without its required fields.
#[tokio::test]
async fn an_index_maps_with_its_manifests() {
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let env = env("").await;
    let (a, b) = (image("amd"), image("arm"));
    for img in [&a, &b] {
        env.push_blobs("proj/multi", img).await;
        let r = env.put("proj/multi", &sha256(&img.manifest), img).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256(&a.manifest), "size": a.manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": sha256(&b.manifest), "size": b.manifest.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    let r = env
        .req(Method::PUT, "/v2/proj/multi/manifests/latest", Some(SEEDER))
        .header("content-type", OCI_INDEX)
        .body(index.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let m = env.kube.mappings();
    assert_eq!(m.len(), 3, "two images by digest, then the index");
    let i = &m[2]["image"];
    assert_eq!(m[2]["tag"], "latest");
    assert_eq!(i["metadata"]["name"], sha256(&index).as_str());
    assert_eq!(i["dockerImageManifestMediaType"], OCI_INDEX);
    assert_eq!(
        i["dockerImageManifests"],
        json!([
            {"digest": sha256(&a.manifest), "mediaType": OCI_MANIFEST,
             "manifestSize": a.manifest.len(), "architecture": "amd64", "os": "linux"},
            {"digest": sha256(&b.manifest), "mediaType": OCI_MANIFEST,
             "manifestSize": b.manifest.len(), "architecture": "arm64", "os": "linux",
             "variant": "v8"},
        ])
    );
    assert!(i.get("dockerImageMetadata").is_none(), "{i}");
    assert!(
        i.get("dockerImageLayers")
            .is_none_or(|l| l.as_array().is_some_and(|l| l.is_empty())),
        "{i}"
    );
    // An image manifest carries no list.
    assert!(m[0]["image"].get("dockerImageManifests").is_none());

    // The fake API validates the list as the API does: an entry without `os` is 422.
    let bad = json!({
        "kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1",
        "metadata": {"namespace": "proj", "name": "multi"}, "tag": "x",
        "image": {"metadata": {"name": sha256(b"x")}, "dockerImageReference": "r/proj/multi@x",
                  "dockerImageManifests": [{"digest": sha256(b"y"), "mediaType": OCI_MANIFEST,
                                            "manifestSize": 1, "architecture": "amd64"}]},
    });
    let r = reqwest::Client::new()
        .post(format!(
            "{}/apis/image.openshift.io/v1/namespaces/proj/imagestreammappings",
            env.kube.base
        ))
        .bearer_auth(SA_TOKEN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn env_off() -> Env {
    env("openshift:\n  imagestreams:\n    enabled: false\n").await
}

#[tokio::test]
async fn quota_refusal_is_denied_and_the_retry_succeeds_once_quota_allows() {
    let env = env("").await;
    env.kube.add_stream("proj", "app");
    env.kube.set_quota_exceeded(true);
    let img = image("quota");
    env.push_blobs("proj/app", &img).await;
    let (status, err) = error_of(env.put("proj/app", "v1", &img).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["code"], "DENIED");
    assert!(
        err["message"].as_str().unwrap().contains("exceeded quota"),
        "{err}"
    );
    assert!(env.kube.mappings().is_empty());
    let digest = sha256(&img.manifest);
    assert_eq!(
        env.manifest_status("proj/app", &digest).await,
        StatusCode::OK
    );

    env.kube.set_quota_exceeded(false);
    assert_eq!(
        env.put("proj/app", "v1", &img).await.status(),
        StatusCode::CREATED
    );
    let m = env.kube.mappings();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["image"]["metadata"]["name"], digest.as_str());
}

#[tokio::test]
async fn other_api_failure_is_a_5xx_saying_so_and_the_manifest_stays() {
    let env = env("").await;
    env.kube.add_stream("proj", "app");
    env.kube.fail_mappings(Some(500));
    let img = image("failure");
    env.push_blobs("proj/app", &img).await;
    let (status, err) = error_of(env.put("proj/app", "v1", &img).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(err["code"], "UNKNOWN");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("ImageStreamMapping") && msg.contains("manifest is stored"),
        "{msg}"
    );
    assert!(
        !msg.contains("etcdserver"),
        "the cause stays in the log: {msg}"
    );
    let digest = sha256(&img.manifest);
    assert_eq!(
        env.manifest_status("proj/app", &digest).await,
        StatusCode::OK
    );

    // A 404 that is not about the stream (another kind) is a failure too, not a stream creation.
    env.kube.fail_mappings(Some(404));
    let (status, _) = error_of(env.put("proj/app", "v1", &img).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(env.kube.calls(IS), 0);

    env.kube.fail_mappings(None);
    assert_eq!(
        env.put("proj/app", "v1", &img).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(env.kube.mappings().len(), 1);
}
