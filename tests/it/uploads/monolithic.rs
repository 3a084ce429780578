//! Monolithic uploads (one POST with `?digest=`, or POST then one PUT), the empty blob, and
//! repositories whose names look like endpoints.

use reqwest::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn post_starts_a_session() {
    let s = TestServer::start().await;
    let resp = s
        .request(Method::POST, "/v2/ns/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_api_version(&resp);
    let loc = header(&resp, "location");
    let uuid = header(&resp, "docker-upload-uuid");
    assert!(!uuid.is_empty());
    assert!(
        loc.starts_with(&format!("/v2/ns/app/blobs/uploads/{uuid}")),
        "{loc}"
    );
    assert_eq!(header(&resp, "range"), "0-0");
    assert_eq!(uuid_of(&loc), uuid);

    // Without the trailing slash too.
    let resp = s
        .request(Method::POST, "/v2/ns/app/blobs/uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_ne!(header(&resp, "docker-upload-uuid"), uuid);
}

#[tokio::test]
async fn monolithic_post_with_digest() {
    let s = TestServer::start().await;
    let data = bytes(12_345, 2);
    let d = sha256(&data);
    let resp = s
        .request(Method::POST, &format!("/v2/app/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "location"), format!("/v2/app/blobs/{d}"));
    assert_eq!(header(&resp, "docker-content-digest"), d);
    let resp = s.get(&header(&resp, "location")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn monolithic_put_on_a_session() {
    let s = TestServer::start().await;
    let data = bytes(4096, 3);
    let d = sha256(&data);
    let loc = s.start_upload("app").await;
    let resp = s.finish_upload(&loc, &d, Some(&data)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "location"), format!("/v2/app/blobs/{d}"));
    assert_eq!(header(&resp, "docker-content-digest"), d);
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
    // The session is over.
    assert_error(
        s.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn empty_blob_upload() {
    let s = TestServer::start().await;
    let empty = sha256(b"");
    // Session then PUT without body.
    let loc = s.start_upload("a").await;
    let resp = s.finish_upload(&loc, &empty, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.get(&format!("/v2/a/blobs/{empty}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "0");
    assert!(resp.bytes().await.unwrap().is_empty());
    // Monolithic POST with an empty body.
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/b/blobs/uploads/?digest={empty}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.head(&format!("/v2/b/blobs/{empty}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "0");
    // The empty blob with sha512.
    let empty512 = sha512(b"");
    let loc = s.start_upload("c").await;
    let resp = s.finish_upload(&loc, &empty512, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        s.get(&format!("/v2/c/blobs/{empty512}")).await.status(),
        200
    );
}

#[tokio::test]
async fn a_failed_monolithic_upload_leaves_no_session_behind() {
    let s = TestServer::start().await;
    s.push_blob("app", b"x").await;
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={}", sha256(b"other")),
        )
        .body(b"these bytes".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let uploads = s
        .root()
        .join("docker/registry/v2/repositories/app/_uploads");
    assert!(
        files_under(&uploads).is_empty(),
        "{:?}",
        files_under(&uploads)
    );
}

#[tokio::test]
async fn repositories_named_like_endpoints() {
    let s = TestServer::start().await;
    for repo in [
        "blobs",
        "a/blobs/uploads",
        "tags/list",
        "x/manifests",
        "referrers/y",
        "v2/_x",
    ] {
        if repo == "v2/_x" {
            // Not a valid name: components cannot start with '_'.
            let resp = s
                .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            assert_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
            continue;
        }
        let d = s.push_blob_chunked(repo, b"reserved words", 5).await;
        let (md, _) = s.push_image(repo, "list", repo).await;
        let resp = s.get(&format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{repo}");
        let resp = s.get(&format!("/v2/{repo}/manifests/list")).await;
        assert_eq!(header(&resp, "docker-content-digest"), md, "{repo}");
        assert_eq!(s.tags(repo).await, vec!["list"], "{repo}");
    }
    let v = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(
        strings(&v["repositories"]),
        vec![
            "a/blobs/uploads",
            "blobs",
            "referrers/y",
            "tags/list",
            "x/manifests"
        ]
    );
}
