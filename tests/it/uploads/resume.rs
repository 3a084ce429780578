//! Upload status and resuming: the signed `_state` (tampering refused), continuing on a second
//! instance that shares the folder and secret, and refusal under another secret.

use reqwest::StatusCode;

use crate::harness::*;

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
