//! `storage.maintenance.uploadpurging`: each server deletes upload folders older than `age`.

use std::time::{Duration, SystemTime};

use super::*;

async fn purging_server(dryrun: bool) -> TestServer {
    TestServer::builder()
        .metrics(None)
        .storage_config(&format!(
            "  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 1h\n      interval: 200ms\n      dryrun: {dryrun}\n"
        ))
        .start()
        .await
}

fn age_upload(root: &Path, repo: &str, uuid: &str) {
    let dir = root.join(format!(
        "docker/registry/v2/repositories/{repo}/_uploads/{uuid}"
    ));
    age_everything(&dir, Duration::from_secs(2 * 3600));
}

#[tokio::test]
async fn stale_uploads_are_purged_and_young_ones_continue() {
    let s = purging_server(false).await;
    let old = s.start_upload("app").await;
    let young = s.start_upload("app").await;
    assert_eq!(
        s.patch_chunk(&old, 0, b"abc").await.status(),
        StatusCode::ACCEPTED
    );
    age_upload(s.root(), "app", &uuid_of(&old));
    let gone = eventually(10, "the stale upload is purged", || async {
        (s.get(&old).await.status() == StatusCode::NOT_FOUND).then_some(())
    });
    gone.await;
    // The folder answers 404 as soon as its first file is gone, while the purge's delete of the
    // rest may still be running (on a blocking thread): the count follows once it is done.
    eventually(10, "the purge is counted", || async {
        let m = s.scrape().await;
        (sample(&m, "imageregistry_uploads_purged_total") == Some(1.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = s.scrape().await;
    assert_eq!(
        sample(&m, "imageregistry_uploads_purged_total"),
        Some(1.0),
        "counted once however many purges ran: {m}"
    );
    let r = s.patch_chunk(&old, 3, b"def").await;
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    // The young one was left alone through several purges.
    let r = s.patch_chunk(&young, 0, b"young").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = header(&r, "location");
    let done = s.finish_upload(&loc, &sha256(b"young"), None).await;
    assert_eq!(done.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_dry_run_purges_nothing() {
    let s = purging_server(true).await;
    let old = s.start_upload("app").await;
    age_upload(s.root(), "app", &uuid_of(&old));
    let t = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(t.elapsed().unwrap() >= Duration::from_millis(800));
    assert_eq!(s.get(&old).await.status(), StatusCode::NO_CONTENT);
    let m = s.scrape().await;
    assert_eq!(
        sample(&m, "imageregistry_uploads_purged_total"),
        Some(0.0),
        "{m}"
    );
}

#[test]
fn bad_purging_keys_are_named() {
    let e = image_registry::config::Config::from_yaml(
        "storage:\n  inmemory: {}\n  maintenance:\n    uploadpurging:\n      interval: 0s\n",
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("uploadpurging.interval"), "{e}");
    let e = image_registry::config::Config::from_yaml(
        "storage:\n  inmemory: {}\n  maintenance:\n    uploadpurging:\n      agee: 1h\n",
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("agee"), "{e}");
}
