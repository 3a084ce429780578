//! Readiness follows the storage health check (the volume goes away and comes back); liveness
//! stays up.

use reqwest::{Method, StatusCode};

use crate::harness::*;

#[tokio::test]
async fn readiness_follows_storage_health() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let s = TestServer::builder()
        .root(&root)
        .metrics(None)
        .config("health:\n  storagedriver:\n    interval: 50ms\n    threshold: 2\n")
        .start()
        .await;
    let status = |p: &'static str| {
        let sent = s.request(Method::GET, p).send();
        async move { sent.await.unwrap().status() }
    };
    eventually(10, "ready", || async {
        (status("/healthz/ready").await == StatusCode::OK).then_some(())
    })
    .await;
    // The volume goes away.
    let moved = dir.path().join("moved");
    std::fs::rename(&root, &moved).unwrap();
    eventually(10, "unready", || async {
        (status("/healthz/ready").await == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let body = s.get("/readyz").await.text().await.unwrap();
    assert!(body.contains("storage unavailable"), "{body}");
    assert!(
        !body.contains(&root.display().to_string()),
        "no paths: {body}"
    );
    assert_eq!(
        status("/healthz").await,
        StatusCode::OK,
        "liveness stays up"
    );
    let text = s.scrape().await;
    assert_eq!(sample(&text, "imageregistry_storage_health_up"), Some(0.0));
    // And comes back.
    std::fs::rename(&moved, &root).unwrap();
    eventually(10, "ready again", || async {
        (status("/healthz/ready").await == StatusCode::OK).then_some(())
    })
    .await;
}
