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

/// The review behind `DELETE /admin/blobs/<digest>` is the caller's own access review (with the
/// caller's token, as the OpenShift registry does) of cluster-scoped `delete images` in
/// `image.openshift.io`: no namespace, no name. An editor of the blob's project (who may delete
/// its manifests) is still refused, in OCI JSON; the pruner gets 204, twice.
#[tokio::test]
async fn the_prune_review_is_cluster_delete_images() {
    let env = Env::default().await;
    let layer = env.seed_image("proj/app", "v1", "reviewed").await;
    let path = format!("/admin/blobs/{layer}");
    let pruner = "tok-pruner-9e8d7c";
    let expected_attrs =
        json!({"verb": "delete", "group": "image.openshift.io", "resource": "images"});
    let review_of = |env: &Env| -> serde_json::Value {
        let reviews: Vec<_> = env
            .kube
            .reviews()
            .into_iter()
            .filter(|(_, b)| b["spec"]["resourceAttributes"]["resource"] == "images")
            .collect();
        assert_eq!(reviews.len(), 1, "one review of images: {reviews:?}");
        let (at, body) = reviews.into_iter().next().unwrap();
        assert_eq!(at, SSAR, "{body}");
        assert_eq!(body["kind"], "SelfSubjectAccessReview", "{body}");
        assert_eq!(body["apiVersion"], "authorization.k8s.io/v1", "{body}");
        body
    };

    env.kube.reset_calls();
    let r = env
        .req(Method::DELETE, &path, Some("tok-editor-0c9d44"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    let body = review_of(&env);
    assert_eq!(body["spec"]["resourceAttributes"], expected_attrs, "{body}");

    env.kube.reset_calls();
    let r = env
        .req(Method::DELETE, &path, Some(pruner))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let body = review_of(&env);
    assert_eq!(body["spec"]["resourceAttributes"], expected_attrs, "{body}");
    let head = env
        .req(
            Method::HEAD,
            &format!("/v2/proj/app/blobs/{layer}"),
            Some("tok-editor-0c9d44"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let again = env
        .req(Method::DELETE, &path, Some(pruner))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "already gone");
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
