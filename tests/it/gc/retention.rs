//! Retention policies (`storage.maintenance.retention.policies`), applied by the `gc` binary and
//! by a server's scheduled run, on stores real servers wrote.

use std::time::{Duration, SystemTime};

use super::*;

/// A config for `root` with `retention` (YAML lines under `retention:`, indented 6).
fn config_with(dir: &Path, root: &Path, retention: &str) -> std::path::PathBuf {
    let p = dir.join("config.yml");
    std::fs::write(
        &p,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {:?}\n  maintenance:\n    retention:\n{retention}",
            root.display().to_string()
        ),
    )
    .unwrap();
    p
}

fn repo_file(root: &Path, repo: &str, rest: &str) -> std::path::PathBuf {
    root.join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/{rest}"
    ))
}

/// Makes `tag`'s current link look pushed `ago`.
fn pushed_ago(root: &Path, repo: &str, tag: &str, ago: Duration) {
    let p = repo_file(root, repo, &format!("tags/{tag}/current/link"));
    std::fs::File::open(&p)
        .and_then(|f| f.set_modified(SystemTime::now() - ago))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn json_out(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

fn kinds(v: &Value, kind: &str) -> Vec<String> {
    v["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| {
            format!(
                "{}{}{}",
                d["repository"].as_str().unwrap_or(""),
                d["tag"]
                    .as_str()
                    .map(|t| format!(":{t}"))
                    .unwrap_or_default(),
                d["digest"]
                    .as_str()
                    .map(|t| format!("@{t}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_tag_no_rule_keeps_goes_and_unmatched_repositories_are_untouched() {
    let s = server("1h").await;
    let root = s.root.clone().unwrap();
    let mut digests = std::collections::BTreeMap::new();
    for t in ["v1", "v2", "latest", "dev-1", "dev-2"] {
        let (d, _) = s.push_image("team/app", t, &format!("team {t}")).await;
        digests.insert(t, d);
    }
    s.push_image("other/app", "old", "other old").await;
    let m = s.oci_image("other/app", "other untagged").await;
    let other_untagged = s
        .push_manifest("other/app", &sha256(&m), OCI_MANIFEST, &m)
        .await;
    age_everything(&root, Duration::from_secs(3 * 3600));
    // dev-2 is the most recently pushed tag, dev-1 the oldest of all.
    pushed_ago(&root, "team/app", "dev-2", Duration::from_secs(2 * 3600));
    pushed_ago(&root, "team/app", "dev-1", Duration::from_secs(5 * 3600));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        &root,
        "      policies:\n        - repositories: [\"team/*\"]\n          keepTags: [\"regex:v[0-9]+\", latest]\n          mostRecentlyPushedCount: 1\n          deleteUntagged: true\n",
    );

    let before = files_under(&root);
    let dry = json_out(&gc_cmd(&cfg, &["--dry-run", "--json"]));
    assert_eq!(files_under(&root), before, "a dry run changes nothing");
    let dev1 = &digests["dev-1"];
    assert_eq!(
        kinds(&dry, "tag"),
        vec![format!("team/app:dev-1@{dev1}")],
        "{dry}"
    );
    assert_eq!(
        kinds(&dry, "manifest"),
        vec![format!("team/app@{dev1}")],
        "{dry}"
    );
    assert_eq!(dry["tags_deleted"], 1);
    // dev-1's config and layer (its own) and its manifest bytes.
    assert_eq!(dry["blobs_deleted"], 3, "{dry}");

    let run = json_out(&gc_cmd(&cfg, &["--json"]));
    assert_eq!(kinds(&run, "tag"), kinds(&dry, "tag"), "{run}");
    assert_eq!(kinds(&run, "manifest"), kinds(&dry, "manifest"), "{run}");
    assert_eq!(run["blobs_deleted"], 3, "{run}");
    let mut tags = s.tags("team/app").await;
    tags.sort();
    assert_eq!(tags, ["dev-2", "latest", "v1", "v2"]);
    let r = s.get(&format!("/v2/team/app/manifests/{dev1}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!blob_on_disk(&root, dev1));
    for t in ["v1", "v2", "latest", "dev-2"] {
        assert_eq!(pull_intact(&s, "team/app", t).await[0], digests[t]);
    }
    // other/app: no policy matches it; its untagged manifest stays (the run is not
    // --delete-untagged).
    pull_intact(&s, "other/app", "old").await;
    pull_intact(&s, "other/app", &other_untagged).await;
}

#[tokio::test]
async fn keep_tag_revisions_keeps_earlier_digests_and_a_policy_without_tag_rules_deletes_no_tag() {
    let s = server("1h").await;
    let root = s.root.clone().unwrap();
    let mut revs = Vec::new();
    for i in 0..3 {
        let (d, _) = s.push_image("team/app", "v1", &format!("rev {i}")).await;
        revs.push(d);
    }
    s.push_image("team/app", "stale", "stale").await;
    age_everything(&root, Duration::from_secs(10 * 3600));
    // The tag index in push order: rev 0 oldest.
    for (i, d) in revs.iter().enumerate() {
        let p = repo_file(
            &root,
            "team/app",
            &format!("tags/v1/index/sha256/{}/link", hex_of(d)),
        );
        std::fs::File::open(&p)
            .and_then(|f| {
                f.set_modified(SystemTime::now() - Duration::from_secs((9 - i as u64) * 3600))
            })
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        &root,
        "      policies:\n        - repositories: [team/app]\n          keepTagRevisions: 1\n          deleteUntagged: true\n",
    );
    let run = json_out(&gc_cmd(&cfg, &["--json"]));
    // No tag rule: no tag goes (zot would delete them all); rev 1 is kept as v1's previous digest,
    // rev 0 goes with deleteUntagged.
    assert_eq!(run["tags_deleted"], 0, "{run}");
    assert_eq!(
        kinds(&run, "manifest"),
        vec![format!("team/app@{}", revs[0])],
        "{run}"
    );
    let mut tags = s.tags("team/app").await;
    tags.sort();
    assert_eq!(tags, ["stale", "v1"]);
    pull_intact(&s, "team/app", &revs[1]).await;
    pull_intact(&s, "team/app", "v1").await;
    let r = s.get(&format!("/v2/team/app/manifests/{}", revs[0])).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_policies_are_refused_naming_the_key_and_delete_nothing() {
    let s = server("1h").await;
    let root = s.root.clone().unwrap();
    s.push_image("team/app", "dev", "dev").await;
    let orphan = s.push_blob("team/app", b"an orphan").await;
    age_everything(&root, Duration::from_secs(7200));
    let dir = tempfile::tempdir().unwrap();
    for (yaml, key) in [
        (
            "      policies:\n        - repositories: [a]\n          keepTagz: [x]\n",
            "keepTagz",
        ),
        (
            "      policies:\n        - repositories: [a]\n          keepYoungerThan: soon\n",
            "keepyoungerthan",
        ),
        (
            "      policies:\n        - repositories: [a]\n          keepTags: [ok, \"regex:(\"]\n",
            "policies[0].keepTags[1]",
        ),
        (
            "      policies:\n        - keepTags: [x]\n",
            "policies[0].repositories",
        ),
        (
            "      policies:\n        - repositories: [a]\n          mostRecentlyPushedCount: -1\n",
            "policies[0].mostRecentlyPushedCount",
        ),
    ] {
        let cfg = config_with(dir.path(), &root, yaml);
        let out = gc_cmd(&cfg, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}");
        assert!(
            err.to_lowercase().contains(&key.to_lowercase()),
            "{key}: {err}"
        );
    }
    assert!(blob_on_disk(&root, &orphan), "nothing deleted");
    assert_eq!(s.tags("team/app").await, ["dev"]);
}

#[tokio::test]
async fn the_scheduled_run_applies_retention() {
    let s = TestServer::builder()
        .metrics(None)
        .storage_config(
            "  cache:\n    linkTTL: 0s\n  maintenance:\n    gc:\n      enabled: true\n      interval: 1s\n    retention:\n      policies:\n        - repositories: [\"**\"]\n          keepTags: [\"release-*\"]\n          deleteUntagged: true\n",
        )
        .start()
        .await;
    let root = s.root.clone().unwrap();
    let (kept, _) = s.push_image("a/b", "release-1", "release").await;
    let (gone, _) = s.push_image("a/b", "nightly", "nightly").await;
    age_everything(&root, Duration::from_secs(7200));
    eventually(60, "the scheduled run deletes the nightly tag", || async {
        let m = s.scrape().await;
        (sample(&m, "imageregistry_gc_deleted_total{kind=\"tag\"}") == Some(1.0)
            && sample(&m, "imageregistry_gc_deleted_total{kind=\"manifest\"}") == Some(1.0))
        .then_some(())
    })
    .await;
    assert_eq!(s.tags("a/b").await, ["release-1"]);
    let r = s.get(&format!("/v2/a/b/manifests/{gone}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(pull_intact(&s, "a/b", "release-1").await[0], kept);
}
