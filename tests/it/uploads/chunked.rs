//! Chunked uploads: PATCHes with and without `Content-Range`, streamed bodies, the last chunk in
//! the PUT, and the 416s of chunks out of order.

use futures::stream;
use reqwest::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn chunked_upload_with_content_range() {
    let s = TestServer::start().await;
    let data = bytes(10_000, 4);
    let d = sha256(&data);
    let mut loc = s.start_upload("app").await;
    let uuid = uuid_of(&loc);
    let mut offset = 0u64;
    for piece in [&data[..1], &data[1..4000], &data[4000..4001], &data[4001..]] {
        let resp = s.patch_chunk(&loc, offset, piece).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_api_version(&resp);
        offset += piece.len() as u64;
        assert_eq!(header(&resp, "range"), format!("0-{}", offset - 1));
        assert_eq!(header(&resp, "docker-upload-uuid"), uuid);
        loc = header(&resp, "location");
        assert_eq!(uuid_of(&loc), uuid);
        // The status agrees.
        let st = s.get(&loc).await;
        assert_eq!(st.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&st, "range"), format!("0-{}", offset - 1));
    }
    let resp = s.finish_upload(&loc, &d, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), d);
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn chunked_upload_with_the_last_chunk_in_the_put() {
    let s = TestServer::start().await;
    let data = bytes(3000, 5);
    let d = sha256(&data);
    let loc = s.start_upload("app").await;
    let resp = s.patch_chunk(&loc, 0, &data[..2000]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");
    let resp = s
        .request(Method::PUT, &with_query(&loc, "digest", &d))
        .header("content-type", "application/octet-stream")
        .header("content-range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let s = TestServer::start().await;
    let data = bytes(300_000, 7);
    let d = sha256(&data);
    let loc = s.start_upload("app").await;
    // Chunked transfer encoding, no Content-Length and no Content-Range.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = data[..200_000]
        .chunks(7777)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let resp = s
        .request(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-199999");
    let loc = header(&resp, "location");
    // A second streamed PATCH with a Content-Length but no Content-Range appends.
    let resp = s
        .request(Method::PATCH, &loc)
        .body(data[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-299999");
    let resp = s.finish_upload(&header(&resp, "location"), &d, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    let body = resp.bytes().await.unwrap();
    assert_eq!(sha256(&body), d);
}

#[tokio::test]
async fn an_empty_patch_changes_nothing() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    let resp = s.request(Method::PATCH, &loc).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-0");
    let resp = s.patch_chunk(&header(&resp, "location"), 0, b"abc").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s
        .request(Method::PATCH, &header(&resp, "location"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-2");
    let resp = s
        .finish_upload(&header(&resp, "location"), &sha256(b"abc"), None)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn out_of_order_and_overlapping_chunks_are_416() {
    let s = TestServer::start().await;
    let data = bytes(3000, 6);
    let d = sha256(&data);
    let loc = s.start_upload("app").await;

    // A first chunk that does not start at 0.
    let resp = s.patch_chunk(&loc, 5, &data[5..100]).await;
    assert_eq!(header(&resp, "range"), "0-0");
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;

    let resp = s.patch_chunk(&loc, 0, &data[..1000]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");

    // A gap.
    let resp = s.patch_chunk(&loc, 1500, &data[1500..2000]).await;
    assert_eq!(header(&resp, "range"), "0-999");
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // An overlap.
    let resp = s.patch_chunk(&loc, 500, &data[500..2000]).await;
    assert_eq!(header(&resp, "range"), "0-999");
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // A repeat of the last chunk.
    let resp = s.patch_chunk(&loc, 0, &data[..1000]).await;
    assert_eq!(header(&resp, "range"), "0-999");
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;

    // Nothing of the refused chunks was kept.
    let st = s.get(&loc).await;
    assert_eq!(st.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&st, "range"), "0-999");

    // The upload continues where it is.
    let resp = s.patch_chunk(&loc, 1000, &data[1000..]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-2999");
    let resp = s.finish_upload(&header(&resp, "location"), &d, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn content_range_must_match_content_length() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    let resp = s
        .request(Method::PATCH, &loc)
        .header("content-range", "0-99")
        .body(b"only ten b".to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::RANGE_NOT_SATISFIABLE,
        "{status}"
    );
    assert_error(
        resp,
        status,
        if status == 400 {
            "SIZE_INVALID"
        } else {
            "BLOB_UPLOAD_INVALID"
        },
    )
    .await;
    // A malformed Content-Range.
    let resp = s
        .request(Method::PATCH, &loc)
        .header("content-range", "bytes=nonsense")
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // Nothing was written.
    let st = s.get(&loc).await;
    assert_eq!(header(&st, "range"), "0-0");
}

#[tokio::test]
async fn final_put_with_a_wrong_content_range_is_416() {
    let s = TestServer::start().await;
    let data = b"0123456789abcdef";
    let d = sha256(data);
    let loc = s.start_upload("app").await;
    let resp = s.patch_chunk(&loc, 0, &data[..10]).await;
    let loc = header(&resp, "location");
    let resp = s
        .request(Method::PUT, &with_query(&loc, "digest", &d))
        .header("content-range", "12-17")
        .body(data[10..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "range"), "0-9");
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    let resp = s
        .request(Method::PUT, &with_query(&loc, "digest", &d))
        .header("content-range", "10-15")
        .body(data[10..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data);
}
