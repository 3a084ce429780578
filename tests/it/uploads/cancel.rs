//! Ending uploads: cancel, no replay of a completed upload, unknown uploads.

use reqwest::StatusCode;

use crate::harness::*;

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
