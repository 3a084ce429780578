//! What a run marks and sweeps, on a store written through the API.

use std::time::Duration;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

/// The store of these tests and what it holds.
struct Store {
    s: TestServer,
    a: String,
    b: String,
    c1: String,
    c2: String,
    r1: String,
    r2: String,
    scratch: String,
    orphan: String,
    b_layer: String,
}

/// `app`: v1 -> A (with referrer R1), v2 -> C (moved from B, which has referrer R2), multi -> an
/// index of c1 and c2 (pushed by digest), an orphan blob; `scratch/only`: one untagged image.
async fn store() -> Store {
    let s = server("1h").await;
    let (a, am) = s.push_image("app", "v1", "a").await;
    let (b, bm) = s.push_image("app", "v2", "b").await;
    s.push_image("app", "v2", "c").await;
    let r1 = push_referrer(&s, "app", &a, am.len(), "r1").await;
    let r2 = push_referrer(&s, "app", &b, bm.len(), "r2").await;
    let m1 = s.oci_image("app", "c1").await;
    let c1 = s
        .push_manifest("app", &sha256(&m1), OCI_MANIFEST, &m1)
        .await;
    let m2 = s.oci_image("app", "c2").await;
    let c2 = s
        .push_manifest("app", &sha256(&m2), OCI_MANIFEST, &m2)
        .await;
    let i = index(&[(&c1, m1.len()), (&c2, m2.len())]);
    s.push_manifest("app", "multi", OCI_INDEX, &i).await;
    let orphan = s.push_blob("app", b"nobody references me").await;
    let sm = s.oci_image("scratch/only", "s").await;
    let scratch = s
        .push_manifest("scratch/only", &sha256(&sm), OCI_MANIFEST, &sm)
        .await;
    Store {
        b_layer: sha256(b"layer bytes of b"),
        s,
        a,
        b,
        c1,
        c2,
        r1,
        r2,
        scratch,
        orphan,
    }
}

fn root(s: &TestServer) -> &std::path::Path {
    s.root.as_deref().expect("filesystem storage")
}

async fn status(s: &TestServer, path: &str) -> StatusCode {
    s.get(path).await.status()
}

#[tokio::test]
async fn delete_untagged_keeps_what_tags_reach_children_and_referrers() {
    let st = store().await;
    let s = &st.s;
    age_everything(root(s), 2 * HOUR);
    let r = gc(root(s), &opts(true, HOUR)).await;

    for tag in ["v1", "v2", "multi"] {
        pull_intact(s, "app", tag).await;
    }
    for kept in [&st.a, &st.c1, &st.c2, &st.r1] {
        assert_eq!(
            status(s, &format!("/v2/app/manifests/{kept}")).await,
            StatusCode::OK,
            "{kept}"
        );
    }
    let refs = json_body(s.get(&format!("/v2/app/referrers/{}", st.a)).await).await;
    assert_eq!(refs["manifests"][0]["digest"], st.r1.as_str());
    for gone in [&st.b, &st.r2] {
        assert_eq!(
            status(s, &format!("/v2/app/manifests/{gone}")).await,
            StatusCode::NOT_FOUND,
            "{gone}"
        );
    }
    for gone in [&st.b, &st.r2, &st.b_layer, &st.orphan, &st.scratch] {
        assert!(!blob_on_disk(root(s), gone), "{gone} swept");
    }
    assert_eq!(
        status(s, &format!("/v2/app/blobs/{}", st.b_layer)).await,
        StatusCode::NOT_FOUND
    );
    let cat = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(
        strings(&cat["repositories"]),
        ["app"],
        "the emptied repository left"
    );

    // B, R2 and the scratch image; their manifests, configs and layers (R2's empty config is R1's
    // too), and the orphan.
    assert_eq!(r.manifests_deleted, 3, "{r:#?}");
    assert_eq!(r.blobs_deleted, 9, "{r:#?}");
    assert_eq!(r.layer_links_deleted, 6, "{r:#?}");
    assert_eq!(r.repositories_deleted, 1, "{r:#?}");
    assert!(r.bytes_reclaimed > 0);
    assert_eq!(r.tags, 3);

    // Nothing is left to collect, and the history of v2 lost only B.
    let again = gc(root(s), &opts(true, HOUR)).await;
    assert_eq!(
        (again.manifests_deleted, again.blobs_deleted),
        (0, 0),
        "{again:#?}"
    );
}

#[tokio::test]
async fn without_delete_untagged_only_unreferenced_blobs_go() {
    let st = store().await;
    let s = &st.s;
    age_everything(root(s), 2 * HOUR);
    let r = gc(root(s), &opts(false, HOUR)).await;
    assert_eq!((r.manifests_deleted, r.blobs_deleted), (0, 1), "{r:#?}");
    assert!(!blob_on_disk(root(s), &st.orphan));
    for d in [&st.b, &st.r2] {
        pull_intact(s, "app", d).await;
    }
    pull_intact(s, "scratch/only", &st.scratch).await;
}

#[tokio::test]
async fn nothing_younger_than_the_delay_goes() {
    let st = store().await;
    let s = &st.s;
    let before = files_under(root(s));
    let r = gc(root(s), &opts(true, HOUR)).await;
    assert_eq!((r.manifests_deleted, r.blobs_deleted), (0, 0), "{r:#?}");
    // The orphan and the untagged manifests' blobs are garbage, but young.
    assert!(r.young_kept >= 1, "{r:#?}");
    assert_eq!(files_under(root(s)), before);
}

#[tokio::test]
async fn a_dry_run_lists_what_a_run_deletes_and_changes_nothing() {
    let st = store().await;
    let s = &st.s;
    age_everything(root(s), 2 * HOUR);
    let before = files_under(root(s));
    let dry = gc(
        root(s),
        &GcOptions {
            dry_run: true,
            ..opts(true, HOUR)
        },
    )
    .await;
    assert_eq!(files_under(root(s)), before, "a dry run writes nothing");
    let real = gc(root(s), &opts(true, HOUR)).await;
    assert_eq!(dry.deletions, real.deletions);
    assert_eq!(
        (
            dry.manifests_deleted,
            dry.blobs_deleted,
            dry.bytes_reclaimed
        ),
        (
            real.manifests_deleted,
            real.blobs_deleted,
            real.bytes_reclaimed
        )
    );
    assert!(dry.dry_run && !real.dry_run);
}

#[tokio::test]
async fn an_index_child_without_tag_is_kept_and_an_untagged_index_takes_its_children() {
    let s = server("1h").await;
    let m1 = s.oci_image("multi", "k1").await;
    let k1 = s
        .push_manifest("multi", &sha256(&m1), OCI_MANIFEST, &m1)
        .await;
    let i = index(&[(&k1, m1.len())]);
    let idx = s.push_manifest("multi", "latest", OCI_INDEX, &i).await;
    // A second index, untagged, with its own child.
    let m2 = s.oci_image("multi", "k2").await;
    let k2 = s
        .push_manifest("multi", &sha256(&m2), OCI_MANIFEST, &m2)
        .await;
    let i2 = index(&[(&k2, m2.len())]);
    let idx2 = s.push_manifest("multi", &sha256(&i2), OCI_INDEX, &i2).await;
    age_everything(root(&s), 2 * HOUR);
    let r = gc(root(&s), &opts(true, HOUR)).await;
    pull_intact(&s, "multi", "latest").await;
    pull_intact(&s, "multi", &idx).await;
    for gone in [&k2, &idx2] {
        assert_eq!(
            status(&s, &format!("/v2/multi/manifests/{gone}")).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(r.manifests_deleted, 2, "{r:#?}");
}
