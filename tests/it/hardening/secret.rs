//! The embedded default (no storage section, no `http.secret`) keeps its generated secret in
//! `./registry-data/http.secret` (0600), says so at start, and an upload begun before a restart
//! is finished after it.

use std::os::unix::fs::PermissionsExt as _;

use crate::harness::*;
use reqwest::Method;

#[tokio::test]
async fn the_embedded_default_keeps_its_secret_and_uploads_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let data = bytes(50_000, 3);
    let p = Process::spawn_in(&[("REGISTRY_LOG_LEVEL", "info")], &log, Some(dir.path())).await;
    let secret_file = dir.path().join("registry-data/http.secret");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let first = std::fs::read_to_string(&secret_file).unwrap();
    assert!(first.trim().len() >= 32);
    assert!(p.log().contains("http.secret"), "{}", p.log());
    assert!(p.log().contains("kept in the data folder"), "{}", p.log());
    let c = client();
    let resp = c
        .post(format!("{}/v2/app/blobs/uploads/", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let loc = header(&resp, "location");
    let resp = c
        .request(Method::PATCH, format!("{}{loc}", p.base))
        .header("content-range", "0-24999")
        .body(data[..25_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let loc = header(&resp, "location");
    drop(p);
    let p = Process::spawn_in(&[], &dir.path().join("log2"), Some(dir.path())).await;
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), first);
    let resp = c
        .request(Method::PATCH, format!("{}{loc}", p.base))
        .header("content-range", "25000-49999")
        .body(data[25_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        202,
        "the upload state from before the restart is accepted"
    );
    let loc = header(&resp, "location");
    let resp = c
        .put(with_query(
            &format!("{}{loc}", p.base),
            "digest",
            &sha256(&data),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}
