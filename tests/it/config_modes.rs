//! Behaviour switches from config: read-only mode (writes refused with a readable message) and
//! disabled deletes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn read_only_refuses_every_write_and_serves_reads() {
    // Fill a folder with a writable instance, then serve it read-only.
    let rw = TestServer::start().await;
    let blob = rw.push_blob("ns/app", b"a layer").await;
    let (d, m) = rw.push_image("ns/app", "v1", "x").await;
    let empty = rw.push_blob("ns/app", b"{}").await;
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": descriptor(OCI_EMPTY, &empty, 2),
        "layers": [],
        "subject": descriptor(OCI_MANIFEST, &d, m.len()),
    }))
    .unwrap();
    let sig_d = rw
        .push_manifest("ns/app", &sha256(&sig), OCI_MANIFEST, &sig)
        .await;
    let upload = rw.start_upload("ns/app").await;
    let before = files_under(rw.root());

    let ro = TestServer::builder()
        .root(rw.root())
        .read_only()
        .start()
        .await;

    // Reads work.
    let resp = ro.get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
    let resp = ro.get(&format!("/v2/ns/app/blobs/{blob}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"a layer");
    assert_eq!(
        ro.head(&format!("/v2/ns/app/blobs/{blob}")).await.status(),
        StatusCode::OK
    );
    let resp = ro.get("/v2/ns/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &m[..]);
    assert_eq!(
        ro.head(&format!("/v2/ns/app/manifests/{d}")).await.status(),
        StatusCode::OK
    );
    assert_eq!(ro.tags("ns/app").await, vec!["v1"]);
    let v = json_body(ro.get("/v2/_catalog").await).await;
    assert_eq!(v["repositories"], json!(["ns/app"]));
    let v = json_body(ro.get(&format!("/v2/ns/app/referrers/{d}")).await).await;
    assert_eq!(v["manifests"][0]["digest"], sig_d);
    // Reading an upload's status is a read.
    assert_eq!(ro.get(&upload).await.status(), StatusCode::NO_CONTENT);

    // Every write is 405 UNSUPPORTED.
    let other = sha256(b"new bytes");
    let writes: Vec<reqwest::RequestBuilder> = vec![
        ro.request(Method::POST, "/v2/ns/app/blobs/uploads/"),
        ro.request(Method::POST, "/v2/new/repo/blobs/uploads/"),
        ro.request(
            Method::POST,
            &format!("/v2/ns/app/blobs/uploads/?digest={other}"),
        )
        .body(b"new bytes".to_vec()),
        ro.request(
            Method::POST,
            &format!("/v2/other/blobs/uploads/?mount={blob}&from=ns/app"),
        ),
        ro.request(Method::PATCH, &upload).body(b"chunk".to_vec()),
        ro.request(Method::PUT, &with_query(&upload, "digest", &other))
            .body(b"new bytes".to_vec()),
        ro.request(Method::DELETE, &upload),
        ro.request(Method::PUT, "/v2/ns/app/manifests/v2")
            .header("content-type", OCI_MANIFEST)
            .body(m.clone()),
        ro.request(Method::PUT, &format!("/v2/ns/app/manifests/{d}"))
            .header("content-type", OCI_MANIFEST)
            .body(m.clone()),
        ro.request(Method::DELETE, "/v2/ns/app/manifests/v1"),
        ro.request(Method::DELETE, &format!("/v2/ns/app/manifests/{d}")),
        ro.request(Method::DELETE, &format!("/v2/ns/app/blobs/{blob}")),
    ];
    for req in writes {
        let resp = req.send().await.unwrap();
        let what = format!("{}", resp.url());
        let e = assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
        assert!(!e["message"].as_str().unwrap().is_empty(), "{what}");
    }

    // Nothing changed on disk.
    assert_eq!(files_under(rw.root()), before);
    // And the writable instance still owns a live upload.
    assert_eq!(rw.get(&upload).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn read_only_on_the_in_memory_driver() {
    let s = TestServer::builder().read_only().in_memory().start().await;
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
    let v = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(v["repositories"], json!([]));
    let resp = s
        .request(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    assert_error(
        s.get("/v2/app/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn deletes_disabled_refuses_deletes_only() {
    let s = TestServer::builder().delete_disabled().start().await;
    let blob = s.push_blob("app", b"kept").await;
    let (d, m) = s.push_image("app", "v1", "x").await;

    for path in [
        "/v2/app/manifests/v1".to_owned(),
        format!("/v2/app/manifests/{d}"),
        format!("/v2/app/blobs/{blob}"),
        // Unknown ones too: the operation itself is unsupported.
        "/v2/app/manifests/nope".to_owned(),
        format!("/v2/app/blobs/{}", sha256(b"unknown")),
    ] {
        assert_error(
            s.delete(&path).await,
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        )
        .await;
    }
    // Everything is still there.
    let resp = s.get("/v2/app/manifests/v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &m[..]);
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{blob}")).await.status(),
        StatusCode::OK
    );

    // Writes other than deletes work, including cancelling an upload.
    s.push_image("app", "v2", "y").await;
    let loc = s.start_upload("app").await;
    let resp = s.patch_chunk(&loc, 0, b"partial").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        s.delete(&header(&resp, "location")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        s.get(&loc).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_eq!(s.tags("app").await, vec!["v1", "v2"]);
}

#[tokio::test]
async fn in_memory_storage_serves_a_whole_workflow() {
    let s = TestServer::builder().in_memory().start().await;
    assert!(s.root.is_none());
    let (d, m) = s.push_image("mem/app", "v1", "x").await;
    let resp = s.get(&format!("/v2/mem/app/manifests/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &m[..]);
    let v = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(v["repositories"], json!(["mem/app"]));
}

#[tokio::test]
async fn read_only_refuses_every_write_with_a_readable_message() {
    let s = TestServer::builder().in_memory().read_only().start().await;
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for (m, p) in [
        (Method::POST, "/v2/ns/app/blobs/uploads/".to_owned()),
        (
            Method::POST,
            format!("/v2/ns/app/blobs/uploads/?mount={d}&from=other/app"),
        ),
        (Method::PUT, "/v2/ns/app/manifests/v1".to_owned()),
        (Method::DELETE, format!("/v2/ns/app/manifests/{d}")),
        (Method::DELETE, format!("/v2/ns/app/blobs/{d}")),
        (Method::PATCH, "/v2/ns/app/blobs/uploads/x".to_owned()),
    ] {
        let r = s.request(m.clone(), &p).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("UNSUPPORTED") && body.contains("read-only"),
            "{body}"
        );
    }
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/v2/ns/app/tags/list").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// distribution's `http.headers`: on every response (errors and 404s included), and never over
/// a header the response sets itself.
#[tokio::test]
async fn http_headers_go_on_every_response() {
    let s = TestServer::builder()
        .in_memory()
        .http("headers:\n  X-Content-Type-Options: [nosniff]\n  Cache-Control: [no-store, private]\n  Docker-Distribution-Api-Version: [bogus]")
        .start()
        .await;
    let blob = s.push_blob("ns/app", b"layer").await;
    for (path, status) in [
        ("/v2/".to_owned(), StatusCode::OK),
        (format!("/v2/ns/app/blobs/{blob}"), StatusCode::OK),
        (
            "/v2/ns/app/manifests/missing".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        ("/v2/BAD/tags/list".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        let cc: Vec<_> = r.headers().get_all("cache-control").iter().collect();
        if path.contains("/blobs/") {
            // A blob by digest sets its own (immutable content).
            assert_eq!(cc, ["max-age=31536000"], "{path}");
        } else {
            assert_eq!(cc, ["no-store", "private"], "{path}");
        }
        assert_api_version(&r);
    }
}
