//! Pushing manifests: each media type by tag and by digest, bytes kept exactly, the media type
//! when the body has none, `OCI-Subject`, tag overwrite.

use reqwest::StatusCode;
use serde_json::json;

use super::{assert_served, platform_descriptor};
use crate::harness::*;

#[tokio::test]
async fn oci_manifest_by_tag_and_digest() {
    let s = TestServer::start().await;
    let m = s.oci_image("ns/app", "one").await;
    let resp = s.put_manifest("ns/app", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_api_version(&resp);
    let d = sha256(&m);
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/ns/app/manifests/{d}")
    );
    assert_served(&s, "ns/app", "v1", OCI_MANIFEST, &d, &m).await;
    assert_served(&s, "ns/app", &d, OCI_MANIFEST, &d, &m).await;

    // Pushed by digest only: reachable by digest, no tag.
    let m2 = s.oci_image("ns/app", "two").await;
    let d2 = s
        .push_manifest("ns/app", &sha256(&m2), OCI_MANIFEST, &m2)
        .await;
    assert_served(&s, "ns/app", &d2, OCI_MANIFEST, &d2, &m2).await;
    assert_eq!(s.tags("ns/app").await, vec!["v1"]);
}

#[tokio::test]
async fn bytes_are_served_exactly_as_pushed() {
    let s = TestServer::start().await;
    let c = s.push_blob("app", b"{}").await;
    // Odd whitespace, key order and a trailing newline must survive.
    let m = format!(
        "{{\n   \"schemaVersion\" :2,\n\t\"layers\": [ ],  \"config\": {{\"size\": 2, \"digest\": \"{c}\", \"mediaType\": \"{OCI_CONFIG}\"}},\n\"mediaType\":\"{OCI_MANIFEST}\"   }}\n"
    )
    .into_bytes();
    let d = s.push_manifest("app", "odd", OCI_MANIFEST, &m).await;
    assert_served(&s, "app", "odd", OCI_MANIFEST, &d, &m).await;
}

#[tokio::test]
async fn docker_schema2_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (d, m) = s
        .push_docker_image("library/busybox", "latest", "busybox")
        .await;
    assert_served(&s, "library/busybox", "latest", DOCKER_MANIFEST, &d, &m).await;
    assert_served(&s, "library/busybox", &d, DOCKER_MANIFEST, &d, &m).await;
    let d2 = s
        .push_manifest("library/busybox", &d, DOCKER_MANIFEST, &m)
        .await;
    assert_eq!(d, d2);
}

#[tokio::test]
async fn sha512_manifest_reference() {
    let s = TestServer::start().await;
    let m = s.oci_image("app", "512").await;
    let d = sha512(&m);
    let resp = s.put_manifest("app", &d, OCI_MANIFEST, &m).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_served(&s, "app", &d, OCI_MANIFEST, &d, &m).await;
}

#[tokio::test]
async fn oci_manifest_without_media_type_field_takes_the_content_type() {
    let s = TestServer::start().await;
    let c = s.push_blob("app", b"{}").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, &c, 2),
        "layers": [],
    }))
    .unwrap();
    let d = s.push_manifest("app", "v", OCI_MANIFEST, &body).await;
    assert_served(&s, "app", "v", OCI_MANIFEST, &d, &body).await;
}

#[tokio::test]
async fn docker_manifest_without_media_type_field_is_not_served_as_another_type() {
    // Docker schema2 requires `mediaType` in the body; a registry that accepts it without one must
    // still serve it back with the type it was pushed as.
    let s = TestServer::start().await;
    let c = s.push_blob("app", b"{}").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor(DOCKER_CONFIG, &c, 2),
        "layers": [],
    }))
    .unwrap();
    let resp = s.put_manifest("app", "x", DOCKER_MANIFEST, &body).await;
    if resp.status() == StatusCode::CREATED {
        let resp = s.get("/v2/app/manifests/x").await;
        assert_eq!(header(&resp, "content-type"), DOCKER_MANIFEST);
    } else {
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    // The same for a manifest list.
    let (_, child) = s.push_docker_image("app", "child", "c").await;
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [platform_descriptor(DOCKER_MANIFEST, &sha256(&child), child.len(), "amd64")],
    }))
    .unwrap();
    let resp = s.put_manifest("app", "l", DOCKER_LIST, &list).await;
    if resp.status() == StatusCode::CREATED {
        let resp = s.get("/v2/app/manifests/l").await;
        assert_eq!(header(&resp, "content-type"), DOCKER_LIST);
    } else {
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
}

#[tokio::test]
async fn subject_answers_oci_subject() {
    let s = TestServer::start().await;
    let (subject_d, subject) = s.push_image("app", "v1", "subject").await;
    let empty = s.push_blob("app", b"{}").await;
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(OCI_EMPTY, &empty, 2),
        "layers": [descriptor(OCI_EMPTY, &empty, 2)],
        "subject": descriptor(OCI_MANIFEST, &subject_d, subject.len()),
    }))
    .unwrap();
    let resp = s
        .put_manifest("app", &sha256(&sig), OCI_MANIFEST, &sig)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), subject_d);
    // A manifest without subject has no OCI-Subject.
    let m = s.oci_image("app", "plain").await;
    let resp = s.put_manifest("app", "plain", OCI_MANIFEST, &m).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(opt_header(&resp, "oci-subject").is_none());
    // A subject that does not exist (yet) is accepted.
    let missing = sha256(b"no such manifest");
    let sig2 = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(OCI_EMPTY, &empty, 2),
        "layers": [],
        "subject": descriptor(OCI_MANIFEST, &missing, 123),
    }))
    .unwrap();
    let resp = s
        .put_manifest("app", &sha256(&sig2), OCI_MANIFEST, &sig2)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), missing);
}

#[tokio::test]
async fn tag_overwrite_last_writer_wins() {
    let s = TestServer::start().await;
    let (d1, m1) = s.push_image("app", "latest", "first").await;
    let (d2, m2) = s.push_image("app", "latest", "second").await;
    assert_ne!(d1, d2);
    assert_served(&s, "app", "latest", OCI_MANIFEST, &d2, &m2).await;
    assert_served(&s, "app", &d1, OCI_MANIFEST, &d1, &m1).await;
    assert_eq!(s.tags("app").await, vec!["latest"]);
    // Pushing the first again moves the tag back.
    s.push_manifest("app", "latest", OCI_MANIFEST, &m1).await;
    assert_served(&s, "app", "latest", OCI_MANIFEST, &d1, &m1).await;
    // The same manifest pushed twice is fine.
    s.push_manifest("app", "latest", OCI_MANIFEST, &m1).await;
}
