//! Manifests: push and pull of the four media types, content negotiation, validation errors,
//! subjects, size limit, deletes and tag overwrite.

mod delete;
mod get;
mod index;
mod put;
mod validation;

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
