//! RFC 9112 framing and the spec's header grammar, each case written byte for byte on a raw
//! socket: `/v2/` methods, `Host`, `Transfer-Encoding`, `Content-Range`, a manifest's
//! `Content-Type`, and the 414/431 answers.

use super::raw;
use crate::harness::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The path and query of a `Location` (relative as the registry writes it).
fn target(location: &str) -> &str {
    location.find("/v2/").map_or(location, |i| &location[i..])
}

#[tokio::test]
async fn base_answers_405_with_allow_to_every_method_but_get_and_head() {
    let s = TestServer::start().await;
    for m in [
        "DELETE", "PUT", "POST", "PATCH", "OPTIONS", "PROPFIND", "TRACE", "FOOBAR", "get", "Get",
    ] {
        let req = format!(
            "{m} /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let a = raw(s.addr, req.as_bytes()).await;
        a.assert_error(405, "UNSUPPORTED");
        assert_eq!(a.header("allow"), Some("GET, HEAD"), "{m}: {a:?}");
    }
    let a = raw(
        s.addr,
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b"{}");
    let a = raw(
        s.addr,
        b"HEAD /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 200);
    // Other endpoints name their methods too.
    let a = raw(
        s.addr,
        b"POST /v2/app/tags/list HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    a.assert_error(405, "UNSUPPORTED");
    assert_eq!(a.header("allow"), Some("GET"));
}

#[tokio::test]
async fn http11_needs_exactly_one_host() {
    let s = TestServer::start().await;
    let a = raw(s.addr, b"GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    a.assert_error(400, "UNSUPPORTED");
    assert_eq!(a.header("connection"), Some("close"));
    let a = raw(
        s.addr,
        b"GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    a.assert_error(400, "UNSUPPORTED");
    // HTTP/1.0 has no Host requirement.
    let a = raw(s.addr, b"GET /v2/ HTTP/1.0\r\n\r\n").await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_501() {
    let s = TestServer::start().await;
    // A session start with a gzip-then-chunked body: refused, no session opened.
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let mut req = b"POST /v2/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n".to_vec();
    req.extend_from_slice(body);
    let a = raw(s.addr, &req).await;
    a.assert_error(501, "UNSUPPORTED");
    assert!(
        files_under(&s.root().join("docker/registry/v2/repositories"))
            .iter()
            .all(|f| !f.contains("_uploads"))
    );
    // A PATCH on a real session with another coding: refused, nothing written.
    let loc = s.start_upload("app").await;
    let req = format!(
        "PATCH {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        target(&loc)
    );
    raw(s.addr, req.as_bytes())
        .await
        .assert_error(501, "UNSUPPORTED");
    assert_eq!(header(&s.get(&loc).await, "range"), "0-0");
    // Plain chunked works.
    let req = format!(
        "PATCH {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        target(&loc)
    );
    assert_eq!(raw(s.addr, req.as_bytes()).await.status, 202);
    assert_eq!(header(&s.get(&loc).await, "range"), "0-4");
}

#[tokio::test]
async fn content_range_takes_only_the_spec_form() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    for bad in [
        "0-9/10",
        "bytes 0-9/10",
        "bytes=0-9",
        "0 - 9",
        "+0-9",
        "0-9-",
    ] {
        let req = format!(
            "PATCH {} HTTP/1.1\r\nHost: x\r\nContent-Range: {bad}\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
            target(&loc)
        );
        raw(s.addr, req.as_bytes())
            .await
            .assert_error(416, "BLOB_UPLOAD_INVALID");
    }
    assert_eq!(header(&s.get(&loc).await, "range"), "0-0");
    let req = format!(
        "PATCH {} HTTP/1.1\r\nHost: x\r\nContent-Range: 0-9\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
        target(&loc)
    );
    let a = raw(s.addr, req.as_bytes()).await;
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.header("range"), Some("0-9"));
}

#[tokio::test]
async fn a_manifest_with_a_garbage_content_type_is_manifest_invalid() {
    let s = TestServer::start().await;
    let body = s.oci_image("app", "garbage-ct").await;
    let put = |ct: &[u8]| {
        let mut req = format!(
            "PUT /v2/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\nContent-Type: ",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(ct);
        req.extend_from_slice(b"\r\n\r\n");
        req.extend_from_slice(&body);
        req
    };
    for ct in [
        &b"garbage"[..],
        b"a/b/c",
        b"/json",
        b"application/vnd.oci.image.manifest.v1+json garbage",
        b"application/json; charset",
        b"\xff\xfe/\xfd",
        b";;;",
    ] {
        raw(s.addr, &put(ct))
            .await
            .assert_error(400, "MANIFEST_INVALID");
    }
    assert!(s.tags("app").await.is_empty());
    // The right one, with a parameter, is stored.
    let a = raw(
        s.addr,
        &put(b"application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(s.tags("app").await, vec!["v1".to_owned()]);
}

#[tokio::test]
async fn long_targets_and_large_headers_answer_with_error_json() {
    let s = TestServer::start().await;
    let long = "a".repeat(9000);
    let req = format!("GET /v2/{long}/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    raw(s.addr, req.as_bytes())
        .await
        .assert_error(414, "UNSUPPORTED");
    // Headers above http.maxheaderbytes (64 KiB) but inside hyper's buffer: 431 with JSON.
    let big = "b".repeat(70 << 10);
    let req = format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    raw(s.addr, req.as_bytes())
        .await
        .assert_error(431, "UNSUPPORTED");
    // Beyond the read buffer hyper answers a bare 431 and closes; the server stays healthy.
    let huge = "c".repeat(300 << 10);
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let _ = c
        .write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n").as_bytes())
        .await;
    // The answer may be lost to the reset of the unread bytes; what arrives is a 431.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut c, &mut got),
    )
    .await;
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(s.get("/v2/").await.status(), 200);
}
