//! Manifests refused at push: schema 1, malformed bodies, missing blobs (foreign layers excepted),
//! a digest that does not match, the 4 MiB limit, invalid tags and names.

use futures::stream;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn schema1_is_refused() {
    let s = TestServer::start().await;
    let m = br#"{"schemaVersion":1,"name":"app","tag":"v1","architecture":"amd64","fsLayers":[],"history":[],"signatures":[]}"#;
    for ct in [
        DOCKER_SCHEMA1_SIGNED,
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/json",
    ] {
        let resp = s.put_manifest("app", "v1", ct, m).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    assert_error(
        s.get("/v2/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn invalid_manifests_are_manifest_invalid() {
    let s = TestServer::start().await;
    let c = s.push_blob("app", b"{}").await;
    let config = descriptor(OCI_CONFIG, &c, 2);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"this is not json".to_vec()),
        (OCI_MANIFEST, b"".to_vec()),
        (OCI_MANIFEST, b"[1,2,3]".to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec()),
        (OCI_MANIFEST, serde_json::to_vec(&json!({"schemaVersion": 3, "config": config, "layers": []})).unwrap()),
        (OCI_MANIFEST, serde_json::to_vec(&json!({"config": config, "layers": []})).unwrap()),
        (OCI_INDEX, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#.to_vec()),
        ("text/plain", serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "text/plain", "config": config, "layers": []})).unwrap()),
        // The body's mediaType contradicts the Content-Type.
        (DOCKER_MANIFEST, oci_manifest(&config, &[])),
        // A descriptor with a malformed digest.
        (OCI_MANIFEST, serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": "sha256:123", "size": 2}, "layers": []})).unwrap()),
    ];
    for (ct, body) in cases {
        let resp = s.put_manifest("app", "bad", ct, &body).await;
        let e = assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_error(
        s.get("/v2/app/manifests/bad").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn missing_blobs_are_manifest_blob_unknown() {
    let s = TestServer::start().await;
    let c = s.push_blob("app", b"{\"config\":1}").await;
    let l = s.push_blob("app", b"layer").await;
    let missing = sha256(b"missing layer");
    let elsewhere = s.push_blob("other", b"layer of another repository").await;

    for absent in [&missing, &elsewhere] {
        // A missing layer.
        let m = oci_manifest(
            &descriptor(OCI_CONFIG, &c, 12),
            &[
                descriptor(OCI_LAYER, &l, 5),
                descriptor(OCI_LAYER, absent, 10),
            ],
        );
        let e = assert_error(
            s.put_manifest("app", "v1", OCI_MANIFEST, &m).await,
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        )
        .await;
        assert_eq!(e["detail"]["digest"], absent.as_str());
        // A missing config.
        let m = oci_manifest(
            &descriptor(OCI_CONFIG, absent, 12),
            &[descriptor(OCI_LAYER, &l, 5)],
        );
        assert_error(
            s.put_manifest("app", &sha256(&m), OCI_MANIFEST, &m).await,
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        )
        .await;
    }
    assert_error(
        s.get("/v2/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn foreign_layers_need_not_be_pushed() {
    let s = TestServer::start().await;
    let c = s.push_blob("win", b"{}").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &c, 2),
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": sha256(b"windows base layer"),
            "size": 18,
            "urls": ["https://example.invalid/layer"],
        }],
    }))
    .unwrap();
    s.push_manifest("win", "ltsc", DOCKER_MANIFEST, &m).await;
}

#[tokio::test]
async fn put_by_digest_with_other_bytes_is_digest_invalid() {
    let s = TestServer::start().await;
    let m = s.oci_image("app", "a").await;
    let other = s.oci_image("app", "b").await;
    let resp = s
        .put_manifest("app", &sha256(&other), OCI_MANIFEST, &m)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    for d in [sha256(&m), sha256(&other)] {
        assert_error(
            s.get(&format!("/v2/app/manifests/{d}")).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
    }
    // A sha512 reference with the sha256 of the body.
    let resp = s
        .put_manifest("app", &sha512(&other), OCI_MANIFEST, &m)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

/// A syntactically valid OCI manifest of more than 4 MiB (a huge annotation).
fn huge_manifest(config: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config, 2),
        "layers": [],
        "annotations": { "padding": "x".repeat((4 << 20) + 10) },
    }))
    .unwrap()
}

#[tokio::test]
async fn manifest_over_4_mib_is_413() {
    let s = TestServer::start().await;
    let c = s.push_blob("app", b"{}").await;
    let m = huge_manifest(&c);
    // With a Content-Length.
    let resp = s.put_manifest("app", "huge", OCI_MANIFEST, &m).await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    // Streamed, without a Content-Length.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        m.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let resp = s
        .request(Method::PUT, "/v2/app/manifests/huge")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_error(
        s.get("/v2/app/manifests/huge").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn manifest_just_under_4_mib_is_accepted() {
    let s = TestServer::start().await;
    let c = s.push_blob("app", b"{}").await;
    let base = huge_manifest(&c);
    // Trim the padding so the body is exactly 4 MiB.
    let excess = base.len() - (4 << 20);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &c, 2),
        "layers": [],
        "annotations": { "padding": "x".repeat((4 << 20) + 10 - excess) },
    }))
    .unwrap();
    assert_eq!(m.len(), 4 << 20);
    let d = s.push_manifest("app", "big", OCI_MANIFEST, &m).await;
    let resp = s.get(&format!("/v2/app/manifests/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().len(), 4 << 20);
}

#[tokio::test]
async fn invalid_tags_and_names() {
    let s = TestServer::start().await;
    let m = s.oci_image("app", "x").await;
    let long_tag = "t".repeat(129);
    for tag in ["-leading-dash", ".dot", long_tag.as_str(), "bad%21tag"] {
        // A push under a malformed tag is refused as such.
        assert_error(
            s.put_manifest("app", tag, OCI_MANIFEST, &m).await,
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
        )
        .await;
        // Reads and deletes of a malformed tag can only name a manifest that does not exist:
        // the registry answers 404 MANIFEST_UNKNOWN, as for any unknown reference.
        let path = format!("/v2/app/manifests/{tag}");
        assert_error(
            s.get(&path).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
        assert_head_error(s.head(&path).await, StatusCode::NOT_FOUND).await;
        assert_error(
            s.delete(&path).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
    }
    // The longest valid tag works.
    let ok_tag = "t".repeat(128);
    s.push_manifest("app", &ok_tag, OCI_MANIFEST, &m).await;

    let long_name = "a".repeat(256);
    for name in ["UPPER", "a..b", "-a", "a_", "a/-b", long_name.as_str()] {
        assert_error(
            s.get(&format!("/v2/{name}/manifests/latest")).await,
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        )
        .await;
        assert_error(
            s.put_manifest(name, "latest", OCI_MANIFEST, &m).await,
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        )
        .await;
    }
    // A malformed digest reference.
    assert_error(
        s.get("/v2/app/manifests/sha256:1234").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}
