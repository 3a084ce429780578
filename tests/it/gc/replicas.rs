//! Two replicas (two servers on one filesystem store) and the pruner's `DELETE /admin/blobs`:
//! the replica that pruned stops serving and claiming the blob at once, the other within
//! `storage.cache.linkTTL`, and a client that pushes the blob again gets an intact image.

use std::time::{Duration, Instant};

use reqwest::Method;

use super::*;

const LINK_TTL: Duration = Duration::from_secs(2);
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","replicas":true}"#;
const LAYER: &[u8] = b"a layer the pruner deletes while another replica has it cached";

fn replica(root: Option<&Path>) -> ServerBuilder {
    let b = TestServer::builder().storage_config("  cache:\n    linkttl: 2s\n");
    match root {
        Some(r) => b.root(r),
        None => b,
    }
}

fn manifest() -> Vec<u8> {
    oci_manifest(
        &descriptor(OCI_CONFIG, &sha256(CONFIG), CONFIG.len()),
        &[descriptor(OCI_LAYER, &sha256(LAYER), LAYER.len())],
    )
}

/// HEAD of the blob, GET of the blob, and a mount of it from `app` into `other`: the statuses.
async fn sees(s: &TestServer, d: &str) -> (StatusCode, StatusCode, StatusCode) {
    let head = s.head(&format!("/v2/app/blobs/{d}")).await.status();
    let get = s.get(&format!("/v2/app/blobs/{d}")).await.status();
    let mount = s
        .request(
            Method::POST,
            &format!("/v2/other/blobs/uploads/?mount={d}&from=app"),
        )
        .send()
        .await
        .unwrap()
        .status();
    (head, get, mount)
}

const PRESENT: (StatusCode, StatusCode, StatusCode) =
    (StatusCode::OK, StatusCode::OK, StatusCode::CREATED);
const GONE: (StatusCode, StatusCode, StatusCode) = (
    StatusCode::NOT_FOUND,
    StatusCode::NOT_FOUND,
    StatusCode::ACCEPTED,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pruned_blob_leaves_both_replicas_and_can_be_pushed_again() {
    let a = replica(None).start().await;
    let b = replica(a.root.as_deref()).start().await;
    a.push_blob("app", CONFIG).await;
    let x = a.push_blob("app", LAYER).await;
    let m = manifest();
    a.push_manifest("app", "v1", OCI_MANIFEST, &m).await;
    // B serves (and caches) the image and the blob; A too.
    pull_intact(&b, "app", "v1").await;
    assert_eq!(sees(&b, &x).await, PRESENT);
    assert_eq!(sees(&a, &x).await, PRESENT);

    // The pruner (on A): the image's manifest, then the blob from storage. The `_layers` link of
    // `app` stays, so a refused mount is the blob's absence, not the link's.
    let r = a
        .request(Method::DELETE, &format!("/v2/app/manifests/{}", sha256(&m)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = a
        .request(Method::DELETE, &format!("/admin/blobs/{x}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let pruned = Instant::now();
    assert_eq!(sees(&a, &x).await, GONE, "the pruning replica, at once");

    // B within the link TTL (a little slack for the requests themselves).
    loop {
        let seen = sees(&b, &x).await;
        if seen == GONE {
            break;
        }
        assert!(
            pruned.elapsed() <= LINK_TTL + Duration::from_secs(1),
            "replica B still claims the pruned blob after {:?}: {seen:?}",
            pruned.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A manifest naming it is refused on either replica until it is pushed again.
    for s in [&a, &b] {
        let r = s.put_manifest("app", "v2", OCI_MANIFEST, &m).await;
        assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    }

    // A client pushes the image again through B (HEAD said 404, so it uploads the layer).
    assert_eq!(b.push_blob("app", LAYER).await, x);
    b.push_manifest("app", "v2", OCI_MANIFEST, &m).await;
    for s in [&a, &b] {
        pull_intact(s, "app", "v2").await;
        assert_eq!(sees(s, &x).await, PRESENT);
    }
}
