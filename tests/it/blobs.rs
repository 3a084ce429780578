//! Blob reads, range requests, visibility per repository and deletes.

use reqwest::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let s = TestServer::start().await;
    for path in ["/v2/", "/v2"] {
        let resp = s.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_api_version(&resp);
    }
    let resp = s.head("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
}

#[tokio::test]
async fn get_and_head_a_blob() {
    let s = TestServer::start().await;
    let data = bytes(70_000, 1);
    let d = s.push_blob("app", &data).await;
    let path = format!("/v2/app/blobs/{d}");

    let resp = s.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "content-length"), data.len().to_string());
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);

    let resp = s.head(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "content-length"), data.len().to_string());
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert!(resp.bytes().await.unwrap().is_empty(), "HEAD has no body");
}

#[tokio::test]
async fn a_digest_with_percent_encoded_colon_is_the_same_blob() {
    let s = TestServer::start().await;
    let d = s.push_blob("app", b"percent").await;
    let resp = s
        .get(&format!("/v2/app/blobs/{}", d.replace(':', "%3A")))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"percent");
}

#[tokio::test]
async fn range_requests() {
    let s = TestServer::start().await;
    let data: Vec<u8> = (0..100u8).collect();
    let d = s.push_blob("app", &data).await;
    let path = format!("/v2/app/blobs/{d}");
    let get_range = |r: &'static str| s.request(Method::GET, &path).header("range", r).send();

    // A closed range.
    let resp = get_range("bytes=10-19").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "content-range"), "bytes 10-19/100");
    assert_eq!(header(&resp, "content-length"), "10");
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[10..20]);

    // An open range.
    let resp = get_range("bytes=95-").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), "bytes 95-99/100");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[95..]);

    // A suffix range: the last 7 bytes.
    let resp = get_range("bytes=-7").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), "bytes 93-99/100");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[93..]);

    // A suffix longer than the blob is the whole blob.
    let resp = get_range("bytes=-1000").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), "bytes 0-99/100");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);

    // An end past the blob is cut at its end.
    let resp = get_range("bytes=90-500").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), "bytes 90-99/100");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[90..]);

    // A single byte.
    let resp = get_range("bytes=0-0").await.unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), "bytes 0-0/100");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..1]);

    // HEAD with a range: same headers, no body.
    let resp = s
        .request(Method::HEAD, &path)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-range"), "bytes 10-19/100");
    assert_eq!(header(&resp, "content-length"), "10");
    assert!(resp.bytes().await.unwrap().is_empty());

    // Unsatisfiable ranges: 416 with `Content-Range: bytes */<size>`.
    for r in ["bytes=100-", "bytes=200-300", "bytes=-0"] {
        let resp = get_range(r).await.unwrap();
        assert_eq!(
            opt_header(&resp, "content-range").as_deref(),
            Some("bytes */100"),
            "{r}"
        );
        assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
}

#[tokio::test]
async fn range_on_an_empty_blob_is_unsatisfiable() {
    let s = TestServer::start().await;
    let d = s.push_blob("app", b"").await;
    let path = format!("/v2/app/blobs/{d}");
    let resp = s.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "0");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = s
        .request(Method::GET, &path)
        .header("range", "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-range"), "bytes */0");
    assert_error(resp, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
}

#[tokio::test]
async fn unknown_blob_is_404_blob_unknown() {
    let s = TestServer::start().await;
    s.push_blob("app", b"something").await;
    let missing = sha256(b"never pushed");
    let err = assert_error(
        s.get(&format!("/v2/app/blobs/{missing}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(err["detail"]["digest"], missing);
    assert_head_error(
        s.head(&format!("/v2/app/blobs/{missing}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Also in a repository that does not exist at all.
    assert_error(
        s.get(&format!("/v2/nothing/here/blobs/{missing}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn a_blob_is_only_served_where_it_is_linked() {
    let s = TestServer::start().await;
    let d = s.push_blob("team-a/private", b"secret layer").await;
    assert_eq!(
        s.get(&format!("/v2/team-a/private/blobs/{d}"))
            .await
            .status(),
        200
    );
    // Known to the registry, but not linked in team-b/app: no leak across repositories.
    s.push_blob("team-b/app", b"other").await;
    assert_error(
        s.get(&format!("/v2/team-b/app/blobs/{d}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_head_error(
        s.head(&format!("/v2/team-b/app/blobs/{d}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let resp = s
        .request(Method::GET, &format!("/v2/team-b/app/blobs/{d}"))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    // A parent or child path is another repository too.
    assert_error(
        s.get(&format!("/v2/team-a/blobs/{d}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_error(
        s.get(&format!("/v2/team-a/private/sub/blobs/{d}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn delete_a_blob() {
    let s = TestServer::start().await;
    let d = s.push_blob("app", b"to be deleted").await;
    s.push_blob("other", b"to be deleted").await;
    let path = format!("/v2/app/blobs/{d}");
    let resp = s.delete(&path).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_api_version(&resp);
    assert_error(s.get(&path).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    assert_head_error(s.head(&path).await, StatusCode::NOT_FOUND).await;
    // Deleting again: unknown.
    assert_error(s.delete(&path).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    // Another repository linking the same bytes still serves them.
    let resp = s.get(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"to be deleted");
    // And the blob can be pushed again.
    s.push_blob("app", b"to be deleted").await;
    assert_eq!(s.get(&path).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn delete_of_a_blob_never_linked_is_404() {
    let s = TestServer::start().await;
    let d = s.push_blob("a", b"only in a").await;
    assert_error(
        s.delete(&format!("/v2/b/blobs/{d}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(s.get(&format!("/v2/a/blobs/{d}")).await.status(), 200);
}

#[tokio::test]
async fn sha512_monolithic_upload() {
    let s = TestServer::start().await;
    let data = bytes(10_000, 512);
    let d = sha512(&data);
    let resp = s
        .request(Method::POST, &format!("/v2/app/blobs/uploads/?digest={d}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_eq!(header(&resp, "location"), format!("/v2/app/blobs/{d}"));
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);

    // A wrong sha512 is refused and leaves nothing behind.
    let wrong = sha512(b"something else");
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_error(
        s.get(&format!("/v2/app/blobs/{wrong}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn sha512_chunked_upload() {
    let s = TestServer::start().await;
    let data = bytes(3000, 77);
    let d = sha512(&data);
    let mut loc = s.start_upload("app").await;
    for (i, piece) in data.chunks(1000).enumerate() {
        let resp = s.patch_chunk(&loc, (i * 1000) as u64, piece).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        loc = header(&resp, "location");
    }
    let resp = s.finish_upload(&loc, &d, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn large_blob_round_trip() {
    let s = TestServer::start().await;
    let data = bytes(3 << 20, 9);
    let d = s.push_blob("big", &data).await;
    let resp = s.get(&format!("/v2/big/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256(&body), d);
    // A range in the middle of a multi-MiB blob.
    let resp = s
        .request(Method::GET, &format!("/v2/big/blobs/{d}"))
        .header("range", "bytes=1048570-2097160")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&resp, "content-range"),
        format!("bytes 1048570-2097160/{}", data.len())
    );
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        &data[1048570..=2097160]
    );
}

#[tokio::test]
async fn blobs_work_on_the_in_memory_driver() {
    let s = TestServer::builder().in_memory().start().await;
    let data = bytes(5000, 3);
    let d = s.push_blob("mem/app", &data).await;
    let d2 = s.push_blob_chunked("mem/app", &bytes(2500, 4), 1000).await;
    let resp = s.get(&format!("/v2/mem/app/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);
    let resp = s
        .request(Method::GET, &format!("/v2/mem/app/blobs/{d}"))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[4990..]);
    assert_eq!(
        s.get(&format!("/v2/mem/app/blobs/{d2}")).await.status(),
        200
    );
    assert_eq!(
        s.delete(&format!("/v2/mem/app/blobs/{d}")).await.status(),
        202
    );
    assert_error(
        s.get(&format!("/v2/mem/app/blobs/{d}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}
