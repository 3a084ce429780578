//! Digest errors of uploads: a wrong, missing or malformed digest is refused and nothing becomes
//! visible.

use reqwest::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_becomes_visible() {
    let s = TestServer::start().await;
    let data = bytes(5000, 8);
    let actual = sha256(&data);
    let claimed = sha256(b"not these bytes");

    // Monolithic POST.
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={claimed}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    // Chunked, completed with PUT without body.
    let loc = s.start_upload("app").await;
    let resp = s.patch_chunk(&loc, 0, &data).await;
    let loc = header(&resp, "location");
    assert_error(
        s.finish_upload(&loc, &claimed, None).await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;

    // Monolithic PUT on a session.
    let loc = s.start_upload("app").await;
    assert_error(
        s.finish_upload(&loc, &claimed, Some(&data)).await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;

    // Neither the claimed nor the actual digest is served.
    for d in [&claimed, &actual] {
        assert_error(
            s.get(&format!("/v2/app/blobs/{d}")).await,
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
        )
        .await;
        assert_head_error(
            s.head(&format!("/v2/app/blobs/{d}")).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    // And no blob file exists for the claimed digest.
    let blob = s.root().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}",
        &hex_of(&claimed)[..2],
        hex_of(&claimed)
    ));
    assert!(!blob.exists());
}

#[tokio::test]
async fn put_without_digest_is_digest_invalid() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    let resp = s
        .request(Method::PUT, &loc)
        .body(b"data".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // A malformed digest is refused too.
    let resp = s
        .request(Method::PUT, &with_query(&loc, "digest", "sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // The session is still usable.
    let resp = s.finish_upload(&loc, &sha256(b"data"), Some(b"data")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn post_with_malformed_digest_is_digest_invalid() {
    let s = TestServer::start().await;
    for d in [
        "sha256:abc",
        "nodigest",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        let resp = s
            .request(Method::POST, &format!("/v2/app/blobs/uploads/?digest={d}"))
            .body(b"x".to_vec())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
}
