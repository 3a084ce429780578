//! The pruner's `DELETE /admin/blobs/<digest>`: cluster `delete images` in `image.openshift.io`
//! (`system:image-pruner`), 204 also when the blob is already gone.

use super::*;

#[tokio::test]
async fn only_the_pruner_deletes_blobs_from_storage() {
    let env = Env::default().await;
    let layer = env.seed_image("proj/app", "v1", "pruned").await;
    let path = format!("/admin/blobs/{layer}");
    let blob = format!("/v2/proj/app/blobs/{layer}");
    let pruner = Some("tok-pruner-9e8d7c");

    let anon = env.req(Method::DELETE, &path, None).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    for who in [
        "tok-editor-0c9d44",
        "tok-builder-a1b2c3",
        "tok-viewer-77ab31",
    ] {
        let r = env
            .req(Method::DELETE, &path, Some(who))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    }
    let still = env
        .req(Method::GET, &blob, Some("tok-editor-0c9d44"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        still.status(),
        StatusCode::OK,
        "the refused deletes changed nothing"
    );

    let r = env.req(Method::DELETE, &path, pruner).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Gone at once for pulls and pushes of this server.
    for m in [Method::GET, Method::HEAD] {
        let r = env
            .req(m, &blob, Some("tok-editor-0c9d44"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let again = env.req(Method::DELETE, &path, pruner).send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::NO_CONTENT,
        "already gone is 204"
    );

    // Only `system:image-pruner` has cluster `delete images` in the fake cluster's roles, as in
    // OpenShift's bootstrap policy: the allowed and refused callers above are that review.

    let bad = env
        .req(Method::DELETE, "/admin/blobs/sha256:nothex", pruner)
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn tag_history_needs_pull() {
    let env = Env::default().await;
    env.seed_image("proj/app", "v1", "history").await;
    let path = "/extensions/v2/proj/app/tags/v1/history";
    let r = env.req(Method::GET, path, None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = env
        .req(Method::GET, path, Some("tok-norole-5f1c2a"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let r = env
        .req(Method::GET, path, Some("tok-viewer-77ab31"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
}
