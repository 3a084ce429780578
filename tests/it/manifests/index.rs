//! Image indexes and Docker manifest lists: by tag and digest, and every child must exist.

use reqwest::StatusCode;
use serde_json::json;

use super::{assert_served, platform_descriptor, two_platform_index};
use crate::harness::*;

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
async fn docker_manifest_list_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (list, _, _) = two_platform_index(&s, "app", DOCKER_LIST).await;
    let d = s.push_manifest("app", "multi", DOCKER_LIST, &list).await;
    assert_served(&s, "app", "multi", DOCKER_LIST, &d, &list).await;
    assert_served(&s, "app", &d, DOCKER_LIST, &d, &list).await;
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
