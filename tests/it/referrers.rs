//! The referrers API: manifests with a `subject`, the `artifactType` filter, unknown subjects and
//! deleted referrers.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;

const SIG: &str = "application/vnd.example.signature.v1";
const SBOM: &str = "application/vnd.example.sbom.v1";

/// Pushes an artifact manifest referring to `subject` and returns (digest, size).
async fn push_referrer(
    s: &TestServer,
    repo: &str,
    subject: &str,
    subject_size: usize,
    artifact_type: Option<&str>,
    config_type: &str,
    note: &str,
) -> (String, usize) {
    let empty = s.push_blob(repo, b"{}").await;
    let layer = s.push_blob(repo, note.as_bytes()).await;
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_type, &empty, 2),
        "layers": [descriptor("application/octet-stream", &layer, note.len())],
        "subject": descriptor(OCI_MANIFEST, subject, subject_size),
        "annotations": { "org.example.note": note },
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    let body = serde_json::to_vec(&m).unwrap();
    let resp = s
        .put_manifest(repo, &sha256(&body), OCI_MANIFEST, &body)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), subject);
    (sha256(&body), body.len())
}

/// `GET /v2/<repo>/referrers/<digest>[?query]`: asserts 200 and the index shape, returns
/// (manifests, OCI-Filters-Applied).
async fn referrers(
    s: &TestServer,
    repo: &str,
    digest: &str,
    query: &str,
) -> (Vec<Value>, Option<String>) {
    let resp = s
        .get(&format!("/v2/{repo}/referrers/{digest}{query}"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "content-type"), OCI_INDEX);
    let filters = opt_header(&resp, "oci-filters-applied");
    let v = json_body(resp).await;
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let manifests = v["manifests"].as_array().expect("manifests array").clone();
    (manifests, filters)
}

fn digests(list: &[Value]) -> Vec<String> {
    let mut d: Vec<String> = list
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    d.sort();
    d
}

#[tokio::test]
async fn referrers_are_listed_with_their_artifact_type() {
    let s = TestServer::start().await;
    let (subject, body) = s.push_image("app", "v1", "subject").await;
    let (sig, sig_size) =
        push_referrer(&s, "app", &subject, body.len(), Some(SIG), OCI_EMPTY, "sig").await;
    // Without artifactType, the config media type stands for it.
    let (sbom, _) = push_referrer(&s, "app", &subject, body.len(), None, SBOM, "sbom").await;

    let (list, filters) = referrers(&s, "app", &subject, "").await;
    assert!(filters.is_none());
    let mut want = vec![sig.clone(), sbom.clone()];
    want.sort();
    assert_eq!(digests(&list), want);
    let sig_entry = list.iter().find(|m| m["digest"] == sig.as_str()).unwrap();
    assert_eq!(sig_entry["mediaType"], OCI_MANIFEST);
    assert_eq!(sig_entry["artifactType"], SIG);
    assert_eq!(sig_entry["size"], sig_size);
    assert_eq!(sig_entry["annotations"]["org.example.note"], "sig");
    let sbom_entry = list.iter().find(|m| m["digest"] == sbom.as_str()).unwrap();
    assert_eq!(sbom_entry["artifactType"], SBOM);

    // The subject itself and the referrers of a referrer are separate lists.
    let (list, _) = referrers(&s, "app", &sig, "").await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn artifact_type_filter() {
    let s = TestServer::start().await;
    let (subject, body) = s.push_image("app", "v1", "subject").await;
    let (sig1, _) = push_referrer(&s, "app", &subject, body.len(), Some(SIG), OCI_EMPTY, "a").await;
    let (sig2, _) = push_referrer(&s, "app", &subject, body.len(), Some(SIG), OCI_EMPTY, "b").await;
    let (sbom, _) =
        push_referrer(&s, "app", &subject, body.len(), Some(SBOM), OCI_EMPTY, "c").await;

    let (list, filters) = referrers(&s, "app", &subject, &format!("?artifactType={SIG}")).await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    let mut want = vec![sig1, sig2];
    want.sort();
    assert_eq!(digests(&list), want);

    let (list, filters) = referrers(
        &s,
        "app",
        &subject,
        &format!(
            "?artifactType={}",
            SBOM.replace('/', "%2F").replace('+', "%2B")
        ),
    )
    .await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert_eq!(digests(&list), vec![sbom]);

    // A type nobody has: an empty, filtered list.
    let (list, filters) =
        referrers(&s, "app", &subject, "?artifactType=application/vnd.none").await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert!(list.is_empty());
}

#[tokio::test]
async fn unknown_subject_is_an_empty_index() {
    let s = TestServer::start().await;
    s.push_image("app", "v1", "x").await;
    let (list, filters) = referrers(&s, "app", &sha256(b"unknown subject"), "").await;
    assert!(list.is_empty());
    assert!(filters.is_none());
    // Even in a repository that does not exist.
    let (list, _) = referrers(&s, "no/such/repo", &sha256(b"unknown subject"), "").await;
    assert!(list.is_empty());
    // A malformed digest is an error.
    assert_error(
        s.get("/v2/app/referrers/sha256:nothex").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn referrers_of_a_subject_not_pushed_yet() {
    let s = TestServer::start().await;
    let future = sha256(b"image pushed later");
    let (sig, _) = push_referrer(&s, "app", &future, 18, Some(SIG), OCI_EMPTY, "early").await;
    let (list, _) = referrers(&s, "app", &future, "").await;
    assert_eq!(digests(&list), vec![sig]);
}

#[tokio::test]
async fn deleted_referrer_disappears() {
    let s = TestServer::start().await;
    let (subject, body) = s.push_image("app", "v1", "subject").await;
    let (keep, _) = push_referrer(
        &s,
        "app",
        &subject,
        body.len(),
        Some(SIG),
        OCI_EMPTY,
        "keep",
    )
    .await;
    let (gone, _) = push_referrer(
        &s,
        "app",
        &subject,
        body.len(),
        Some(SIG),
        OCI_EMPTY,
        "gone",
    )
    .await;
    assert_eq!(
        digests(&referrers(&s, "app", &subject, "").await.0).len(),
        2
    );
    assert_eq!(
        s.delete(&format!("/v2/app/manifests/{gone}"))
            .await
            .status(),
        202
    );
    let (list, _) = referrers(&s, "app", &subject, "").await;
    assert_eq!(digests(&list), vec![keep]);
    let (list, _) = referrers(&s, "app", &subject, &format!("?artifactType={SIG}")).await;
    assert_eq!(list.len(), 1);
}

#[tokio::test]
async fn untagging_a_referrer_keeps_it() {
    let s = TestServer::start().await;
    let (subject, body) = s.push_image("app", "v1", "subject").await;
    let empty = s.push_blob("app", b"{}").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG,
        "config": descriptor(OCI_EMPTY, &empty, 2),
        "layers": [],
        "subject": descriptor(OCI_MANIFEST, &subject, body.len()),
    }))
    .unwrap();
    let d = s.push_manifest("app", "sig-tag", OCI_MANIFEST, &m).await;
    assert_eq!(s.delete("/v2/app/manifests/sig-tag").await.status(), 202);
    let (list, _) = referrers(&s, "app", &subject, "").await;
    assert_eq!(digests(&list), vec![d]);
}

#[tokio::test]
async fn referrers_are_per_repository() {
    let s = TestServer::start().await;
    let (subject, body) = s.push_image("a", "v1", "subject").await;
    let b_body = s.oci_image("b", "subject").await;
    assert_eq!(b_body, body);
    s.push_manifest("b", "v1", OCI_MANIFEST, &b_body).await;
    let (sig, _) = push_referrer(&s, "a", &subject, body.len(), Some(SIG), OCI_EMPTY, "in a").await;
    assert_eq!(
        digests(&referrers(&s, "a", &subject, "").await.0),
        vec![sig]
    );
    assert!(referrers(&s, "b", &subject, "").await.0.is_empty());
}

#[tokio::test]
async fn an_index_can_be_a_referrer() {
    let s = TestServer::start().await;
    let (subject, body) = s.push_image("app", "v1", "subject").await;
    let (child, child_body) = s.push_image("app", "child", "child").await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": SBOM,
        "manifests": [descriptor(OCI_MANIFEST, &child, child_body.len())],
        "subject": descriptor(OCI_MANIFEST, &subject, body.len()),
    }))
    .unwrap();
    let resp = s
        .put_manifest("app", &sha256(&index), OCI_INDEX, &index)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), subject);
    let (list, _) = referrers(&s, "app", &subject, "").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], sha256(&index));
    assert_eq!(list[0]["mediaType"], OCI_INDEX);
    assert_eq!(list[0]["artifactType"], SBOM);
}

#[tokio::test]
async fn referrers_on_the_in_memory_driver() {
    let s = TestServer::builder().in_memory().start().await;
    let (subject, body) = s.push_image("mem", "v1", "subject").await;
    let (sig, _) = push_referrer(&s, "mem", &subject, body.len(), Some(SIG), OCI_EMPTY, "m").await;
    assert_eq!(
        digests(&referrers(&s, "mem", &subject, "").await.0),
        vec![sig.clone()]
    );
    assert_eq!(
        s.delete(&format!("/v2/mem/manifests/{sig}")).await.status(),
        202
    );
    assert!(referrers(&s, "mem", &subject, "").await.0.is_empty());
}
