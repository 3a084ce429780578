//! The real binary and SIGTERM: the listener closes at once, requests in flight finish (up to
//! `http.draintimeout`), the process exits 0; an upload cut by the drain deadline is resumed on the
//! next process (same folder and secret).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use reqwest::StatusCode;

use crate::harness::*;

type Chunk = Result<Bytes, std::io::Error>;

/// The binary on `root` with `http.draintimeout = drain`, metrics on, logging at info to
/// `server-<tag>.log` next to `root`.
async fn spawn(root: &Path, drain: &str, tag: &str) -> Process {
    let log = root.parent().unwrap().join(format!("server-{tag}.log"));
    Process::spawn(
        &[
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                root.to_str().unwrap(),
            ),
            ("REGISTRY_HTTP_SECRET", "drain-test-secret"),
            ("REGISTRY_HTTP_DRAINTIMEOUT", drain),
            ("REGISTRY_METRICS_ENABLED", "true"),
            ("REGISTRY_LOG_LEVEL", "info"),
        ],
        &log,
    )
    .await
}

/// `imageregistry_http_in_flight_requests` of the process (-1 when missing).
async fn in_flight(p: &Process) -> f64 {
    let t = client()
        .get(format!("{}/extensions/v2/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&t, "imageregistry_http_in_flight_requests").unwrap_or(-1.0)
}

/// Starts an upload and a PATCH whose body is held; returns the Location, the body sender and the
/// PATCH's pending result, once the server is inside the PATCH.
async fn held_patch(
    p: &Process,
    first: &'static [u8],
) -> (
    String,
    mpsc::UnboundedSender<Chunk>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let c = client();
    let r = c
        .post(format!("{}/v2/drain/app/blobs/uploads/", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let (tx, rx) = mpsc::unbounded::<Chunk>();
    tx.unbounded_send(Ok(Bytes::from_static(first))).unwrap();
    let req = c
        .patch(format!("{}{loc}", p.base))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(rx));
    let patch = tokio::spawn(req.send());
    // In flight: the PATCH and the scrape asking.
    for _ in 0..200 {
        if in_flight(p).await == 2.0 {
            return (loc, tx, patch);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the PATCH never reached the server:\n{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_drains_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut p = spawn(&root, "30s", "drain").await;
    let (loc, tx, patch) = held_patch(&p, b"first half, ").await;

    p.sigterm();
    // New connections are refused while the PATCH is still being served.
    let port = p.port;
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "listener still open after SIGTERM:\n{}", p.log());
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited before the drain"
    );

    // The request in flight completes normally.
    tx.unbounded_send(Ok(Bytes::from_static(b"second half")))
        .unwrap();
    drop(tx);
    let r = patch.await.unwrap().expect("the PATCH is answered");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-22");
    let next = r.headers()["location"].to_str().unwrap().to_owned();
    let st = p.wait_exit(10).await;
    assert!(st.success(), "exit status {st:?}:\n{}", p.log());
    let log = p.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("all connections drained"), "{log}");
    assert_ne!(next, loc);

    // A new process on the same folder finishes the upload.
    let q = spawn(&root, "30s", "after").await;
    let all = b"first half, second half".to_vec();
    let digest = sha256(&all);
    let r = client()
        .put(format!(
            "{}{}",
            q.base,
            with_query(&next, "digest", &digest)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", q.log());
    let got = client()
        .get(format!("{}/v2/drain/app/blobs/{digest}", q.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &all[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_a_stuck_upload_which_resumes_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut p = spawn(&root, "1s", "cut").await;
    let first: &[u8] = b"bytes that arrived before the cut";
    let (loc, tx, patch) = held_patch(&p, b"bytes that arrived before the cut").await;
    let t = std::time::Instant::now();
    p.sigterm();
    let st = p.wait_exit(15).await;
    assert!(st.success(), "exit status {st:?}:\n{}", p.log());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "exited after {:?}",
        t.elapsed()
    );
    assert!(p.log().contains("drain timeout"), "{}", p.log());
    // The client saw its request fail (an error answer, or the connection closing).
    if let Ok(r) = patch.await.unwrap() {
        assert_ne!(r.status(), StatusCode::ACCEPTED);
    }
    drop(tx);

    // Restarted: the upload's status shows the bytes kept; the client continues from there.
    let q = spawn(&root, "30s", "resume").await;
    let c = client();
    let r = c.get(format!("{}{loc}", q.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", q.log());
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    let end: usize = range.strip_prefix("0-").unwrap().parse().unwrap();
    assert_eq!(end + 1, first.len(), "every byte that arrived was kept");
    let next = r.headers()["location"].to_str().unwrap().to_owned();
    let rest = b" and the rest after the restart";
    let r = c
        .patch(format!("{}{next}", q.base))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", first.len(), first.len() + rest.len() - 1),
        )
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", q.log());
    let next = r.headers()["location"].to_str().unwrap().to_owned();
    let mut all = first.to_vec();
    all.extend_from_slice(rest);
    let digest = sha256(&all);
    let r = c
        .put(format!(
            "{}{}",
            q.base,
            with_query(&next, "digest", &digest)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", q.log());
}
