//! Blob uploads: sessions, monolithic and chunked pushes, status, cancel, digests, signed state,
//! cross-repository mounts and resuming on another instance.

use futures::stream;
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
async fn upload_status() {
    let s = TestServer::start().await;
    let loc = s.start_upload("ns/app").await;
    let uuid = uuid_of(&loc);
    let resp = s.get(&loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "range"), "0-0");
    assert_eq!(header(&resp, "docker-upload-uuid"), uuid);
    let l = header(&resp, "location");
    assert!(
        l.starts_with(&format!("/v2/ns/app/blobs/uploads/{uuid}")),
        "{l}"
    );
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = s.patch_chunk(&loc, 0, b"0123456789").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s.get(&header(&resp, "location")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-9");
    // The Location of the status answer is usable.
    let resp = s.patch_chunk(&header(&resp, "location"), 10, b"abc").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-12");
    // The original Location still works too (the data file is the truth about the offset).
    let resp = s.get(&loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-12");
}

#[tokio::test]
async fn cancel_an_upload() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    let resp = s.patch_chunk(&loc, 0, b"partial").await;
    let loc = header(&resp, "location");
    let resp = s.delete(&loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_api_version(&resp);
    assert_error(
        s.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.patch_chunk(&loc, 7, b"more").await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.finish_upload(&loc, &sha256(b"partial"), None).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.delete(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // Nothing was left on disk.
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
async fn tampered_state_is_blob_upload_invalid() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    let (path, query) = loc.split_once('?').expect("Location carries _state");
    let token = query
        .split('&')
        .find_map(|p| p.strip_prefix("_state="))
        .expect("_state")
        .to_owned();

    // Flip one character of the token.
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    for url in [
        format!("{path}?_state={tampered}"),
        format!("{path}?_state=garbage"),
        format!("{path}?_state="),
    ] {
        assert_error(
            s.get(&url).await,
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
        )
        .await;
        let resp = s.patch_chunk(&url, 0, b"data").await;
        assert_error(resp, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
        let resp = s.finish_upload(&url, &sha256(b"data"), Some(b"data")).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID").await;
    }

    // A genuine state of another upload is refused on this one.
    let other = s.start_upload("app").await;
    let other_query = other.split_once('?').unwrap().1;
    assert_error(
        s.get(&format!("{path}?{other_query}")).await,
        StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // And a state of this upload is refused under another repository name.
    let moved = loc.replacen("/v2/app/", "/v2/elsewhere/", 1);
    let resp = s.get(&moved).await;
    assert!(
        resp.status() == StatusCode::BAD_REQUEST || resp.status() == StatusCode::NOT_FOUND,
        "{}",
        resp.status()
    );
    // The genuine Location still works.
    assert_eq!(s.get(&loc).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn unknown_upload_is_404() {
    let s = TestServer::start().await;
    s.push_blob("app", b"x").await;
    let unknown = "/v2/app/blobs/uploads/8c4e1a8e-3ad5-4f5b-9a44-0e3b6b0e5c11";
    assert_error(
        s.get(unknown).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.patch_chunk(unknown, 0, b"abc").await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.finish_upload(unknown, &sha256(b"abc"), Some(b"abc"))
            .await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        s.delete(unknown).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // Not a uuid at all.
    for bad in ["not-a-uuid", "x", &"a".repeat(100)] {
        assert_error(
            s.get(&format!("/v2/app/blobs/uploads/{bad}")).await,
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        )
        .await;
    }
    // A real uuid, but of another repository.
    let loc = s.start_upload("app").await;
    let uuid = uuid_of(&loc);
    assert_error(
        s.get(&format!("/v2/other/blobs/uploads/{uuid}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = TestServer::start().await;
    let d = s.push_blob("source/repo", b"shared layer").await;

    let resp = s
        .request(
            Method::POST,
            &format!("/v2/target/repo/blobs/uploads/?mount={d}&from=source/repo"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_api_version(&resp);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/target/repo/blobs/{d}")
    );
    assert_eq!(header(&resp, "docker-content-digest"), d);
    let resp = s.get(&format!("/v2/target/repo/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"shared layer");
}

#[tokio::test]
async fn mount_from_a_repository_without_the_blob_starts_a_session() {
    let s = TestServer::start().await;
    let d = s.push_blob("holder", b"held").await;
    s.push_blob("empty-handed", b"something else").await;
    let missing = sha256(b"nobody has this");
    for (digest, from) in [
        (&d, "empty-handed"),
        (&d, "no/such/repo"),
        (&missing, "holder"),
    ] {
        let resp = s
            .request(
                Method::POST,
                &format!("/v2/target/blobs/uploads/?mount={digest}&from={from}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "mount {digest} from {from}"
        );
        assert_eq!(header(&resp, "range"), "0-0");
        let loc = header(&resp, "location");
        assert!(loc.starts_with("/v2/target/blobs/uploads/"), "{loc}");
        assert!(!header(&resp, "docker-upload-uuid").is_empty());
        // The session is a real one.
        let resp = s.finish_upload(&loc, &d, Some(b"held")).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            s.delete(&format!("/v2/target/blobs/{d}")).await.status(),
            202
        );
    }
    // No link was made by the failed mounts of the missing digest.
    assert_error(
        s.get(&format!("/v2/target/blobs/{missing}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn mount_without_from() {
    let s = TestServer::start().await;
    let d = s.push_blob("somewhere", b"known blob").await;
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/elsewhere/blobs/uploads/?mount={d}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/elsewhere/blobs/{d}")
    );
    assert_eq!(
        s.get(&format!("/v2/elsewhere/blobs/{d}")).await.status(),
        200
    );
    // A digest nobody has: a session.
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/elsewhere/blobs/uploads/?mount={}", sha256(b"unknown")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn mount_with_malformed_parameters() {
    let s = TestServer::start().await;
    let d = s.push_blob("src", b"m").await;
    let resp = s
        .request(
            Method::POST,
            "/v2/dst/blobs/uploads/?mount=sha256:zz&from=src",
        )
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let resp = s
        .request(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=Bad..Name"),
        )
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
}

#[tokio::test]
async fn resume_an_upload_on_a_second_instance() {
    let first = TestServer::start().await;
    let second = TestServer::builder().root(first.root()).start().await;
    let data = bytes(250_000, 11);
    let d = sha256(&data);

    // Begin on the first instance, continue on the second, go back to the first, finish on the
    // second: every instance continues from the hash state the other saved.
    let loc = first.start_upload("ns/app").await;
    let resp = first.patch_chunk(&loc, 0, &data[..100_001]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");

    let st = second.get(&loc).await;
    assert_eq!(st.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&st, "range"), "0-100000");
    let resp = second
        .patch_chunk(&loc, 100_001, &data[100_001..200_000])
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-199999");
    let loc = header(&resp, "location");

    let resp = first.patch_chunk(&loc, 200_000, &data[200_000..]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");

    let resp = second.finish_upload(&loc, &d, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    for s in [&first, &second] {
        let resp = s.get(&format!("/v2/ns/app/blobs/{d}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(sha256(&resp.bytes().await.unwrap()), d);
    }
}

#[tokio::test]
async fn resume_with_a_different_secret_is_refused() {
    let first = TestServer::start().await;
    let other = TestServer::builder()
        .root(first.root())
        .secret("another")
        .start()
        .await;
    let loc = first.start_upload("app").await;
    let resp = first.patch_chunk(&loc, 0, b"first part").await;
    let loc = header(&resp, "location");

    assert_error(
        other.get(&loc).await,
        StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    assert_error(
        other.patch_chunk(&loc, 10, b" second").await,
        StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    assert_error(
        other
            .finish_upload(&loc, &sha256(b"first part"), None)
            .await,
        StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    assert_error(
        other.delete(&loc).await,
        StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    // The first instance still owns a healthy upload.
    let st = first.get(&loc).await;
    assert_eq!(st.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&st, "range"), "0-9");
    let resp = first
        .finish_upload(&loc, &sha256(b"first part"), None)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
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
async fn a_completed_upload_cannot_be_replayed() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    let d = sha256(b"once");
    assert_eq!(
        s.finish_upload(&loc, &d, Some(b"once")).await.status(),
        StatusCode::CREATED
    );
    for resp in [
        s.finish_upload(&loc, &d, Some(b"once")).await,
        s.finish_upload(&loc, &d, None).await,
        s.patch_chunk(&loc, 0, b"once").await,
        s.delete(&loc).await,
    ] {
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{d}")).await.status(),
        StatusCode::OK
    );
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
