//! A full volume, with the real binary on a 64 MiB tmpfs mounted in a private mount namespace
//! (`unshare -m`; needs root, skipped otherwise unless `IMAGE_REGISTRY_E2E=1`): every write that
//! hits `ENOSPC` answers `507` with the same JSON, the cause is logged, readiness turns unready and
//! `imageregistry_storage_errors_total{kind="full"}` counts; cancelling an upload frees its space at
//! once; the upload that hit the limit resumes from its stored offset and completes with the right
//! digest.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::harness::*;

const MIB: usize = 1 << 20;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn have_unshare() -> bool {
    std::process::Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// PATCHes `data` from `offset` in chunks of `chunk`; stops at the first answer that is not 202
/// (or a broken connection) and returns (the location to go on with, that answer's status).
async fn patch_until_refused(
    c: &reqwest::Client,
    base: &str,
    mut loc: String,
    data: &[u8],
    mut offset: usize,
    chunk: usize,
) -> (String, Option<(StatusCode, String)>) {
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        let r = c
            .request(Method::PATCH, format!("{base}{loc}"))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{}", end - 1))
            .body(data[offset..end].to_vec())
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                loc = header(&r, "location");
                offset = end;
            }
            Ok(r) => {
                let st = r.status();
                return (loc, Some((st, r.text().await.unwrap_or_default())));
            }
            Err(e) => panic!("PATCH at {offset} failed without an answer: {e}"),
        }
    }
    (loc, None)
}

async fn scrape(c: &reqwest::Client, base: &str) -> String {
    c.get(format!("{base}/extensions/v2/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn offset_of(c: &reqwest::Client, base: &str, loc: &str) -> usize {
    let r = c.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let range = header(&r, "range");
    let end: usize = range.split('-').nth(1).unwrap().parse().unwrap();
    if end == 0 {
        0
    } else {
        end + 1
    }
}

#[tokio::test]
async fn a_full_volume_answers_507_and_recovers_when_space_is_freed() {
    if !is_root() || !have_unshare() {
        assert!(!e2e_required(), "the full-disk test needs root and unshare");
        eprintln!("skipped: needs root and unshare(1) for a private tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("vol");
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=64m tmpfs {} && exec \"$0\" serve",
        mnt.display()
    );
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ];
    let root = mnt.join("registry");
    let root = root.to_str().unwrap();
    let log = dir.path().join("log");
    let p = Process::spawn_with(
        Some(&wrapper),
        &[
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root),
            ("REGISTRY_HTTP_SECRET", "full-disk"),
            ("REGISTRY_METRICS_ENABLED", "true"),
            ("REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL", "300ms"),
            ("REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD", "1"),
            ("REGISTRY_LOG_LEVEL", "info"),
        ],
        &log,
        None,
    )
    .await;
    let c = client();
    let base = p.base.clone();
    let start = |repo: &'static str| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let r = c
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            header(&r, "location")
        }
    };
    // A 30 MiB upload left open holds space.
    let hog = bytes(30 * MIB, 1);
    let (hog_loc, refused) =
        patch_until_refused(&c, &base, start("app").await, &hog, 0, 4 * MIB).await;
    assert!(refused.is_none(), "{refused:?}");
    // A 48 MiB upload runs into the limit.
    let data = bytes(48 * MIB, 2);
    let (loc, refused) =
        patch_until_refused(&c, &base, start("app").await, &data, 0, 256 << 10).await;
    let (status, body) = refused.expect("the volume filled up");
    eprintln!("the PATCH that hit the limit: {status} {body}");
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(
        body.contains("storage is full") && body.contains("UNAVAILABLE"),
        "{body}"
    );
    // Every further write answers the same: a small monolithic push, a manifest.
    let small = b"small blob".to_vec();
    let r = c
        .post(with_query(
            &format!("{base}/v2/app/blobs/uploads/"),
            "digest",
            &sha256(&small),
        ))
        .header("content-type", "application/octet-stream")
        .body(small.clone())
        .send()
        .await
        .unwrap();
    let st = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("storage is full"));
    // The small blob is not visible.
    let r = c
        .head(format!("{base}/v2/app/blobs/{}", sha256(&small)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Readiness reports it; the metric counts it; the log has the cause.
    eventually(10, "unready while full", || async {
        let r = c.get(format!("{base}/healthz/ready")).send().await.ok()?;
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    let m = scrape(&c, &base).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("imageregistry_storage_errors_total{")
                && l.contains("kind=\"full\"")),
        "{m}"
    );
    assert!(p.log().contains("No space left on device"), "{}", p.log());
    let free_full = sample(&m, "imageregistry_storage_filesystem_free_bytes").unwrap();
    assert!(free_full < (MIB as f64), "free while full: {free_full}");
    // Cancelling the held upload frees its 30 MiB at once.
    let r = c.delete(format!("{base}{hog_loc}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let free = eventually(10, "space freed", || async {
        let m = scrape(&c, &base).await;
        let f = sample(&m, "imageregistry_storage_filesystem_free_bytes")?;
        (f > (29 * MIB) as f64).then_some(f)
    })
    .await;
    eprintln!("free bytes: {free_full} while full, {free} after the cancel");
    eventually(10, "ready again", || async {
        let r = c.get(format!("{base}/healthz/ready")).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    // The upload that hit the limit resumes where its stored bytes end, and completes.
    let offset = offset_of(&c, &base, &loc).await;
    assert!(offset > 0 && offset < data.len(), "{offset}");
    let (loc, refused) = patch_until_refused(&c, &base, loc, &data, offset, 4 * MIB).await;
    assert!(refused.is_none(), "{refused:?}");
    let r = c
        .put(with_query(
            &format!("{base}{loc}"),
            "digest",
            &sha256(&data),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = c
        .get(format!("{base}/v2/app/blobs/{}", sha256(&data)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&got), sha256(&data));
}

#[tokio::test]
async fn a_read_only_volume_answers_503_read_only_and_is_unready() {
    if !is_root() || !have_unshare() {
        assert!(!e2e_required(), "the read-only test needs root and unshare");
        eprintln!("skipped: needs root and unshare(1) for a private tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        "mount -t tmpfs -o ro,size=1m tmpfs {} && exec \"$0\" serve",
        mnt.display()
    );
    let wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ];
    let p = Process::spawn_with(
        Some(&wrapper),
        &[
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                mnt.to_str().unwrap(),
            ),
            ("REGISTRY_HTTP_SECRET", "read-only"),
            ("REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL", "300ms"),
            ("REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD", "1"),
        ],
        &dir.path().join("log"),
        None,
    )
    .await;
    let c = client();
    let r = c
        .post(format!("{}/v2/app/blobs/uploads/", p.base))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("storage is read-only"), "{text}");
    assert!(p.log().contains("Read-only file system"), "{}", p.log());
    eventually(10, "unready on a read-only volume", || async {
        let r = c
            .get(format!("{}/healthz/ready", p.base))
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
