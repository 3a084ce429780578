//! The files on disk are where CNCF distribution puts them, and a tree laid out by hand the way
//! distribution writes it is served.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

const V2: &str = "docker/registry/v2";

fn blob_path(d: &str) -> String {
    let (alg, hex) = d.split_once(':').unwrap();
    format!("blobs/{alg}/{}/{hex}/data", &hex[..2])
}

fn layer_link(repo: &str, d: &str) -> String {
    let (alg, hex) = d.split_once(':').unwrap();
    format!("repositories/{repo}/_layers/{alg}/{hex}/link")
}

fn revision_link(repo: &str, d: &str) -> String {
    let (alg, hex) = d.split_once(':').unwrap();
    format!("repositories/{repo}/_manifests/revisions/{alg}/{hex}/link")
}

fn tag_current(repo: &str, tag: &str) -> String {
    format!("repositories/{repo}/_manifests/tags/{tag}/current/link")
}

fn tag_index(repo: &str, tag: &str, d: &str) -> String {
    let (alg, hex) = d.split_once(':').unwrap();
    format!("repositories/{repo}/_manifests/tags/{tag}/index/{alg}/{hex}/link")
}

fn read(root: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(root.join(V2).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(V2).join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[tokio::test]
async fn files_are_where_distribution_puts_them() {
    let s = TestServer::start().await;
    let repo = "ns/app";
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = bytes(50_000, 5);
    let c = s.push_blob(repo, config).await;
    let l = s.push_blob_chunked(repo, &layer, 20_000).await;
    let m = oci_manifest(
        &descriptor(OCI_CONFIG, &c, config.len()),
        &[descriptor(OCI_LAYER, &l, layer.len())],
    );
    let md = s.push_manifest(repo, "v1", OCI_MANIFEST, &m).await;

    let mut want = vec![
        blob_path(&c),
        blob_path(&l),
        blob_path(&md),
        layer_link(repo, &c),
        layer_link(repo, &l),
        revision_link(repo, &md),
        tag_current(repo, "v1"),
        tag_index(repo, "v1", &md),
    ];
    want.sort();
    let got = files_under(&s.root().join(V2));
    assert_eq!(
        got, want,
        "exactly these files, no temporary or upload files left"
    );

    // Contents: the bytes, and links holding the digest without a newline.
    let root = s.root();
    assert_eq!(read(root, &blob_path(&c)), config);
    assert_eq!(read(root, &blob_path(&l)), layer);
    assert_eq!(read(root, &blob_path(&md)), m);
    for (link, d) in [
        (layer_link(repo, &c), &c),
        (layer_link(repo, &l), &l),
        (revision_link(repo, &md), &md),
        (tag_current(repo, "v1"), &md),
        (tag_index(repo, "v1", &md), &md),
    ] {
        assert_eq!(String::from_utf8(read(root, &link)).unwrap(), *d, "{link}");
    }

    // No upload folder is left (an empty `_uploads` parent is fine, as in distribution).
    let uploads = root.join(V2).join(format!("repositories/{repo}/_uploads"));
    if uploads.exists() {
        assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    }
}

#[tokio::test]
async fn an_upload_in_progress_lives_under_uploads() {
    let s = TestServer::start().await;
    let loc = s.start_upload("app").await;
    let uuid = uuid_of(&loc);
    let resp = s.patch_chunk(&loc, 0, b"first chunk").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let dir = format!("repositories/app/_uploads/{uuid}");
    let files = files_under(&s.root().join(V2));
    assert!(files.contains(&format!("{dir}/data")), "{files:?}");
    assert!(files.contains(&format!("{dir}/startedat")), "{files:?}");
    assert!(
        files.contains(&format!("{dir}/hashstates/sha256/11")),
        "{files:?}"
    );
    assert_eq!(read(s.root(), &format!("{dir}/data")), b"first chunk");
    // Go's sha256 MarshalBinary format: "sha\x03" magic, 108 bytes.
    let state = read(s.root(), &format!("{dir}/hashstates/sha256/11"));
    assert_eq!(state.len(), 108);
    assert_eq!(&state[..4], b"sha\x03");

    let resp = s
        .finish_upload(&header(&resp, "location"), &sha256(b"first chunk"), None)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(!s.root().join(V2).join(&dir).exists());
}

#[tokio::test]
async fn sha512_blobs_and_deletes_on_disk() {
    let s = TestServer::start().await;
    let data = b"sha512 bytes";
    let d = sha512(data);
    let resp = s
        .request(
            reqwest::Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={d}"),
        )
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let root = s.root();
    assert_eq!(read(root, &blob_path(&d)), data);
    assert_eq!(
        String::from_utf8(read(root, &layer_link("app", &d))).unwrap(),
        d
    );

    // Deleting the blob removes the link folder; the bytes stay for garbage collection.
    assert_eq!(s.delete(&format!("/v2/app/blobs/{d}")).await.status(), 202);
    let link_dir = root
        .join(V2)
        .join(layer_link("app", &d))
        .parent()
        .unwrap()
        .to_owned();
    assert!(!link_dir.exists());
    assert!(root.join(V2).join(blob_path(&d)).exists());
}

#[tokio::test]
async fn manifest_deletes_on_disk() {
    let s = TestServer::start().await;
    let (d, _) = s.push_image("app", "v1", "x").await;
    let root = s.root().join(V2);
    assert_eq!(s.delete("/v2/app/manifests/v1").await.status(), 202);
    assert!(!root.join("repositories/app/_manifests/tags/v1").exists());
    assert!(root.join(revision_link("app", &d)).exists());
    s.push_manifest("app", "v2", OCI_MANIFEST, &read(s.root(), &blob_path(&d)))
        .await;
    assert_eq!(
        s.delete(&format!("/v2/app/manifests/{d}")).await.status(),
        202
    );
    assert!(!root
        .join(revision_link("app", &d))
        .parent()
        .unwrap()
        .exists());
    assert!(!root.join("repositories/app/_manifests/tags/v2").exists());
    // The manifest bytes stay in the blob store until garbage collection.
    assert!(root.join(blob_path(&d)).exists());
}

#[tokio::test]
async fn a_tree_written_by_distribution_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = "library/hello";
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = bytes(3000, 8);
    let (c, l) = (sha256(config), sha256(&layer));
    let m = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &c, config.len()),
        "layers": [descriptor(DOCKER_LAYER, &l, layer.len())],
    }))
    .unwrap();
    let md = sha256(&m);
    write(root, &blob_path(&c), config);
    write(root, &blob_path(&l), &layer);
    write(root, &blob_path(&md), &m);
    for (link, d) in [
        (layer_link(repo, &c), &c),
        (layer_link(repo, &l), &l),
        (revision_link(repo, &md), &md),
        (tag_current(repo, "latest"), &md),
        (tag_index(repo, "latest", &md), &md),
    ] {
        write(root, &link, d.as_bytes());
    }

    let s = TestServer::builder().root(root).start().await;
    let resp = s.get(&format!("/v2/{repo}/manifests/latest")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), DOCKER_MANIFEST);
    assert_eq!(header(&resp, "docker-content-digest"), md);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &m[..]);
    let resp = s.get(&format!("/v2/{repo}/blobs/{l}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &layer[..]);
    assert_eq!(s.tags(repo).await, vec!["latest"]);
    let v = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(v["repositories"], json!([repo]));
}

#[tokio::test]
async fn tag_history_is_kept_in_the_tag_index() {
    let s = TestServer::start().await;
    let (d1, _) = s.push_image("app", "latest", "one").await;
    let (d2, _) = s.push_image("app", "latest", "two").await;
    let root = s.root();
    assert_eq!(
        String::from_utf8(read(root, &tag_current("app", "latest"))).unwrap(),
        d2
    );
    for d in [&d1, &d2] {
        assert_eq!(
            String::from_utf8(read(root, &tag_index("app", "latest", d))).unwrap(),
            *d
        );
    }
}
