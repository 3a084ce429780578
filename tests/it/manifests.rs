//! Manifests: push and pull of the four media types, content negotiation, validation errors,
//! subjects, size limit, deletes and tag overwrite.

use futures::stream;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

/// Asserts that GET and HEAD of `reference` serve `body` as `media_type` with `digest`.
async fn assert_served(
    s: &TestServer,
    repo: &str,
    reference: &str,
    media_type: &str,
    digest: &str,
    body: &[u8],
) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let resp = s
        .request(Method::GET, &path)
        .header("accept", media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    assert_api_version(&resp);
    assert_eq!(header(&resp, "content-type"), media_type, "GET {path}");
    assert_eq!(header(&resp, "docker-content-digest"), digest, "GET {path}");
    assert_eq!(header(&resp, "content-length"), body.len().to_string());
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        body,
        "GET {path}: same bytes"
    );

    let resp = s
        .request(Method::HEAD, &path)
        .header("accept", media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "HEAD {path}");
    assert_api_version(&resp);
    assert_eq!(header(&resp, "content-type"), media_type, "HEAD {path}");
    assert_eq!(
        header(&resp, "docker-content-digest"),
        digest,
        "HEAD {path}"
    );
    assert_eq!(header(&resp, "content-length"), body.len().to_string());
    assert!(resp.bytes().await.unwrap().is_empty(), "HEAD has no body");
}

fn platform_descriptor(media_type: &str, digest: &str, size: usize, arch: &str) -> Value {
    json!({
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "platform": { "architecture": arch, "os": "linux" },
    })
}

/// An index or list of two images (arm64 first, amd64 second), pushed by digest; not pushed itself.
async fn two_platform_index(
    s: &TestServer,
    repo: &str,
    index_type: &str,
) -> (Vec<u8>, String, Vec<u8>) {
    let (child_type, arm, amd) = if index_type == OCI_INDEX {
        let arm = s.oci_image(repo, "arm64").await;
        let amd = s.oci_image(repo, "amd64").await;
        (OCI_MANIFEST, arm, amd)
    } else {
        let (_, arm) = s.push_docker_image(repo, "tmp-arm", "arm64").await;
        let (_, amd) = s.push_docker_image(repo, "tmp-amd", "amd64").await;
        (DOCKER_MANIFEST, arm, amd)
    };
    let arm_d = s.push_manifest(repo, &sha256(&arm), child_type, &arm).await;
    let amd_d = s.push_manifest(repo, &sha256(&amd), child_type, &amd).await;
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [
            platform_descriptor(child_type, &arm_d, arm.len(), "arm64"),
            platform_descriptor(child_type, &amd_d, amd.len(), "amd64"),
        ],
    }))
    .unwrap();
    (index, amd_d, amd)
}

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
async fn oci_index_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (index, _, _) = two_platform_index(&s, "app", OCI_INDEX).await;
    let d = s.push_manifest("app", "multi", OCI_INDEX, &index).await;
    assert_served(&s, "app", "multi", OCI_INDEX, &d, &index).await;
    assert_served(&s, "app", &d, OCI_INDEX, &d, &index).await;
    let d2 = s.push_manifest("app", &d, OCI_INDEX, &index).await;
    assert_eq!(d, d2);
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
async fn docker_manifest_list_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (list, _, _) = two_platform_index(&s, "app", DOCKER_LIST).await;
    let d = s.push_manifest("app", "multi", DOCKER_LIST, &list).await;
    assert_served(&s, "app", "multi", DOCKER_LIST, &d, &list).await;
    assert_served(&s, "app", &d, DOCKER_LIST, &d, &list).await;
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
async fn accept_negotiation() {
    let s = TestServer::start().await;
    let (oci_d, oci) = s.push_image("app", "oci", "oci").await;

    // An OCI manifest for a client that takes only Docker schema2: not available.
    let resp = s
        .request(Method::GET, "/v2/app/manifests/oci")
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let resp = s
        .request(Method::HEAD, &format!("/v2/app/manifests/{oci_d}"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_head_error(resp, StatusCode::NOT_FOUND).await;

    // Several Accept values (one header, comma-separated, with parameters) and several headers.
    for accepts in [
        vec![format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9")],
        vec![DOCKER_MANIFEST.to_owned(), OCI_MANIFEST.to_owned()],
        vec!["*/*".to_owned()],
        vec![],
    ] {
        let mut req = s.request(Method::GET, "/v2/app/manifests/oci");
        for a in &accepts {
            req = req.header("accept", a.as_str());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{accepts:?}");
        assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&resp, "docker-content-digest"), oci_d);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &oci[..]);
    }

    // A Docker manifest list for a client that takes only schema2: the linux/amd64 image.
    let (list, amd_d, amd) = two_platform_index(&s, "app", DOCKER_LIST).await;
    let list_d = s.push_manifest("app", "list", DOCKER_LIST, &list).await;
    for method in [Method::GET, Method::HEAD] {
        for reference in ["list", list_d.as_str()] {
            let resp = s
                .request(method.clone(), &format!("/v2/app/manifests/{reference}"))
                .header("accept", DOCKER_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "content-type"), DOCKER_MANIFEST);
            assert_eq!(header(&resp, "docker-content-digest"), amd_d);
            assert_eq!(header(&resp, "content-length"), amd.len().to_string());
            let body = resp.bytes().await.unwrap();
            if method == Method::GET {
                assert_eq!(body.as_ref(), &amd[..]);
            } else {
                assert!(body.is_empty());
            }
        }
    }
    // A client taking lists gets the list.
    let resp = s
        .request(Method::GET, "/v2/app/manifests/list")
        .header("accept", format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-type"), DOCKER_LIST);
    assert_eq!(header(&resp, "docker-content-digest"), list_d);

    // An OCI index whose amd64 child is OCI, for a schema2-only client: nothing acceptable.
    let (index, _, _) = two_platform_index(&s, "app", OCI_INDEX).await;
    s.push_manifest("app", "index", OCI_INDEX, &index).await;
    let resp = s
        .request(Method::GET, "/v2/app/manifests/index")
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

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
async fn index_with_missing_child_is_manifest_blob_unknown() {
    let s = TestServer::start().await;
    let (present_d, present) = s.push_image("app", "present", "present").await;
    let absent = s.oci_image("app", "absent").await; // blobs pushed, manifest not
    for (ct, child_ct) in [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)] {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": ct,
            "manifests": [
                platform_descriptor(child_ct, &present_d, present.len(), "amd64"),
                platform_descriptor(child_ct, &sha256(&absent), absent.len(), "arm64"),
            ],
        }))
        .unwrap();
        let e = assert_error(
            s.put_manifest("app", "multi", ct, &index).await,
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
        )
        .await;
        assert_eq!(e["detail"]["digest"], sha256(&absent));
    }
    // A child that exists in another repository only.
    let (other_d, other) = s.push_image("other", "x", "other").await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [platform_descriptor(OCI_MANIFEST, &other_d, other.len(), "amd64")],
    }))
    .unwrap();
    assert_error(
        s.put_manifest("app", "multi", OCI_INDEX, &index).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
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
async fn delete_by_tag_untags_only() {
    let s = TestServer::start().await;
    let (d, m) = s.push_image("app", "v1", "x").await;
    s.push_manifest("app", "v1-alias", OCI_MANIFEST, &m).await;
    let resp = s.delete("/v2/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_api_version(&resp);
    assert_error(
        s.get("/v2/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_served(&s, "app", &d, OCI_MANIFEST, &d, &m).await;
    assert_served(&s, "app", "v1-alias", OCI_MANIFEST, &d, &m).await;
    assert_eq!(s.tags("app").await, vec!["v1-alias"]);
    // Deleting the tag again: unknown.
    assert_error(
        s.delete("/v2/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn delete_by_digest_removes_manifest_and_its_tags() {
    let s = TestServer::start().await;
    let (d, m) = s.push_image("app", "v1", "x").await;
    s.push_manifest("app", "latest", OCI_MANIFEST, &m).await;
    let (other_d, other) = s.push_image("app", "other", "y").await;
    let resp = s.delete(&format!("/v2/app/manifests/{d}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for r in ["v1", "latest", d.as_str()] {
        assert_error(
            s.get(&format!("/v2/app/manifests/{r}")).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
        assert_head_error(
            s.head(&format!("/v2/app/manifests/{r}")).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    assert_eq!(s.tags("app").await, vec!["other"]);
    assert_served(&s, "app", "other", OCI_MANIFEST, &other_d, &other).await;
    assert_error(
        s.delete(&format!("/v2/app/manifests/{d}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    // It can be pushed again.
    s.push_manifest("app", "v1", OCI_MANIFEST, &m).await;
    assert_served(&s, "app", "v1", OCI_MANIFEST, &d, &m).await;
}

#[tokio::test]
async fn deleting_in_one_repository_leaves_the_other() {
    let s = TestServer::start().await;
    let (d, m) = s.push_image("a", "v1", "shared").await;
    let m_b = s.oci_image("b", "shared").await;
    assert_eq!(m, m_b);
    s.push_manifest("b", "v1", OCI_MANIFEST, &m_b).await;
    assert_eq!(
        s.delete(&format!("/v2/a/manifests/{d}")).await.status(),
        202
    );
    assert_served(&s, "b", "v1", OCI_MANIFEST, &d, &m).await;
}

#[tokio::test]
async fn unknown_manifests_are_404() {
    let s = TestServer::start().await;
    s.push_image("app", "v1", "x").await;
    let missing = sha256(b"nothing");
    for r in ["nope", missing.as_str()] {
        let path = format!("/v2/app/manifests/{r}");
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
    // In a repository that does not exist.
    assert_error_one_of(
        s.get("/v2/no/such/repo/manifests/latest").await,
        StatusCode::NOT_FOUND,
        &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
    )
    .await;
}

#[tokio::test]
async fn a_manifest_is_only_served_where_it_was_pushed() {
    let s = TestServer::start().await;
    let (d, _) = s.push_image("private", "v1", "x").await;
    s.push_image("public", "v1", "y").await;
    assert_error(
        s.get(&format!("/v2/public/manifests/{d}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
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

#[tokio::test]
async fn a_manifest_is_also_readable_through_the_blob_endpoint() {
    let s = TestServer::start().await;
    let (d, m) = s.push_image("app", "v1", "x").await;
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &m[..]);
}

#[tokio::test]
async fn manifests_on_the_in_memory_driver() {
    let s = TestServer::builder().in_memory().start().await;
    let (d, m) = s.push_image("mem", "v1", "x").await;
    assert_served(&s, "mem", "v1", OCI_MANIFEST, &d, &m).await;
    assert_eq!(s.delete("/v2/mem/manifests/v1").await.status(), 202);
    assert_served(&s, "mem", &d, OCI_MANIFEST, &d, &m).await;
    assert_eq!(
        s.delete(&format!("/v2/mem/manifests/{d}")).await.status(),
        202
    );
    assert_error(
        s.get(&format!("/v2/mem/manifests/{d}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}
