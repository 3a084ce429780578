//! Cross-repository mounts (`?mount=&from=`): linked when the source has the blob, a plain
//! session otherwise, malformed parameters refused.

use reqwest::{Method, StatusCode};

use crate::harness::*;

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
