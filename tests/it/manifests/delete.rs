//! Deleting manifests: by tag (untag only), by digest (the manifest and its tags), per repository.

use reqwest::StatusCode;

use super::assert_served;
use crate::harness::*;

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
