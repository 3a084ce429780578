//! `image-registry gc` as a process: config loading, output, errors.

use std::process::Command;
use std::time::Duration;

use super::*;

fn config_for(dir: &Path, root: &Path) -> std::path::PathBuf {
    let p = dir.join("config.yml");
    std::fs::write(
        &p,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {:?}\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    p
}

#[tokio::test]
async fn gc_reads_the_config_prints_json_and_deletes_with_a_summary() {
    let s = server("1h").await;
    let root = s.root.clone().unwrap();
    let (_, _) = s.push_image("app", "v1", "kept").await;
    let m = s.oci_image("app", "untagged").await;
    let untagged = s.push_manifest("app", &sha256(&m), OCI_MANIFEST, &m).await;
    let orphan = s.push_blob("app", b"an orphan").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_for(dir.path(), &root);

    // Young: the default delay (1h) keeps everything.
    let out = gc_cmd(&cfg, &["--dry-run", "--delete-untagged", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["blobs_deleted"], 0, "{v}");
    assert_eq!(v["dry_run"], true);

    let before = files_under(&root);
    let out = gc_cmd(
        &cfg,
        &["--dry-run", "--delete-untagged", "--delay", "0s", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["manifests_deleted"], 1, "{v}");
    assert_eq!(v["blobs_deleted"], 4, "{v}");
    let listed: Vec<String> = v["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "blob")
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        listed.contains(&orphan) && listed.contains(&untagged),
        "{v}"
    );
    assert_eq!(files_under(&root), before, "the dry run changed nothing");
    // Progress goes to stderr as lines (no terminal here).
    assert!(String::from_utf8_lossy(&out.stderr).contains("gc: mark"));

    let out = gc_cmd(&cfg, &["--delete-untagged", "--delay", "0s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("deleted blob {orphan}")), "{text}");
    assert!(
        text.contains(&format!("deleted manifest app@{untagged}")),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().starts_with("done:")
            && text.contains("deleted 0 tags, 1 manifests, 4 blobs"),
        "{text}"
    );
    assert!(!blob_on_disk(&root, &orphan));
    pull_intact(&s, "app", "v1").await;
}

#[test]
fn bad_flags_keys_and_unreachable_storage_are_named_and_delete_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let cfg = config_for(dir.path(), &root);
    let out = gc_cmd(&cfg, &["--delay", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--delay"));

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "storage:\n  inmemory: {}\n  maintenance:\n    gc:\n      dely: 1h\n",
    )
    .unwrap();
    let out = gc_cmd(&bad, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dely"), "{err}");

    let bad = dir.path().join("baddelay.yml");
    std::fs::write(
        &bad,
        "storage:\n  inmemory: {}\n  maintenance:\n    gc:\n      delay: sometime\n",
    )
    .unwrap();
    let err = String::from_utf8_lossy(&gc_cmd(&bad, &[]).stderr).to_string();
    assert!(err.contains("delay"), "{err}");

    let s3 = dir.path().join("s3.yml");
    std::fs::write(
        &s3,
        format!(
            "storage:\n  s3:\n    bucket: nothing\n    region: us-east-1\n    regionendpoint: {}\n    accesskey: a\n    secretkey: b\n",
            dead_url()
        ),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let out = gc_cmd(&s3, &["--delay", "0s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        // The lease is the first storage call.
        err.contains("stopped during lease (nothing was deleted)") && err.contains("s3 get"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(120));
}

#[test]
fn help_lists_gc_with_an_example() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-registry"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gc ") && text.contains("image-registry gc --config"),
        "{text}"
    );
}

#[tokio::test]
async fn admin_blob_delete_without_auth_and_with_deletes_disabled() {
    let s = server("1h").await;
    let d = s.push_blob("app", b"to be pruned").await;
    let r = s.delete(&format!("/admin/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!blob_on_disk(s.root.as_deref().unwrap(), &d));
    assert_eq!(
        s.head(&format!("/v2/app/blobs/{d}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.delete(&format!("/admin/blobs/{d}")).await.status(),
        StatusCode::NO_CONTENT
    );
    let off = TestServer::builder().delete_disabled().start().await;
    let r = off.delete(&format!("/admin/blobs/{d}")).await;
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    let ro = TestServer::builder().read_only().start().await;
    let r = ro.delete(&format!("/admin/blobs/{d}")).await;
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
}
