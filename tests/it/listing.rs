//! Tag listing and the catalog: order, `n`/`last` pagination and the `Link` header.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

/// The target of a `Link: <url>; rel="next"` header, if any.
fn next_link(resp: &reqwest::Response) -> Option<String> {
    let v = opt_header(resp, "link")?;
    assert!(v.contains(r#"rel="next""#), "{v}");
    let start = v.find('<').expect("<url>") + 1;
    let end = v.find('>').expect("<url>");
    Some(v[start..end].to_owned())
}

/// Follows `Link` headers from `first`, asserting each page size; returns every page's entries.
async fn pages(s: &TestServer, first: &str, key: &str, n: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut url = Some(first.to_owned());
    while let Some(u) = url {
        let resp = s.get(&u).await;
        assert_eq!(resp.status(), StatusCode::OK, "{u}");
        assert_api_version(&resp);
        assert_eq!(header(&resp, "content-type"), "application/json");
        url = next_link(&resp);
        let v: Value = json_body(resp).await;
        let items = strings(&v[key]);
        assert!(items.len() <= n, "page of {u} has {} > {n}", items.len());
        if url.is_some() {
            assert_eq!(items.len(), n, "a page followed by another is full");
        }
        out.push(items);
        assert!(out.len() < 100, "pagination does not end");
    }
    out
}

#[tokio::test]
async fn tags_are_listed_in_lexical_order() {
    let s = TestServer::start().await;
    let m = s.oci_image("ns/app", "x").await;
    for t in ["v2", "latest", "v10", "V1", "1.0", "_under"] {
        s.push_manifest("ns/app", t, OCI_MANIFEST, &m).await;
    }
    let resp = s.get("/v2/ns/app/tags/list").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
    assert!(opt_header(&resp, "link").is_none());
    let v = json_body(resp).await;
    assert_eq!(v["name"], "ns/app");
    assert_eq!(
        strings(&v["tags"]),
        vec!["1.0", "V1", "_under", "latest", "v10", "v2"]
    );
}

#[tokio::test]
async fn tags_pagination_with_n_last_and_link() {
    let s = TestServer::start().await;
    let m = s.oci_image("a/b/c", "x").await;
    let all: Vec<String> = (0..7).map(|i| format!("t{i}")).collect();
    for t in &all {
        s.push_manifest("a/b/c", t, OCI_MANIFEST, &m).await;
    }

    // n only.
    let resp = s.get("/v2/a/b/c/tags/list?n=3").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let link = next_link(&resp).expect("Link to the next page");
    assert!(link.starts_with("/v2/a/b/c/tags/list?"), "{link}");
    assert!(link.contains("n=3") && link.contains("last=t2"), "{link}");
    let v = json_body(resp).await;
    assert_eq!(strings(&v["tags"]), vec!["t0", "t1", "t2"]);

    // last only: everything after it.
    let v = json_body(s.get("/v2/a/b/c/tags/list?last=t4").await).await;
    assert_eq!(strings(&v["tags"]), vec!["t5", "t6"]);

    // n and last.
    let resp = s.get("/v2/a/b/c/tags/list?n=2&last=t1").await;
    assert!(next_link(&resp).is_some());
    let v = json_body(resp).await;
    assert_eq!(strings(&v["tags"]), vec!["t2", "t3"]);

    // A last that is not a tag: everything sorting after it.
    let v = json_body(s.get("/v2/a/b/c/tags/list?last=t35").await).await;
    assert_eq!(strings(&v["tags"]), vec!["t4", "t5", "t6"]);

    // The final page has no Link; n larger than what is left too.
    let resp = s.get("/v2/a/b/c/tags/list?n=2&last=t4").await;
    assert!(next_link(&resp).is_none());
    assert_eq!(strings(&json_body(resp).await["tags"]), vec!["t5", "t6"]);
    let resp = s.get("/v2/a/b/c/tags/list?n=100").await;
    assert!(next_link(&resp).is_none());
    assert_eq!(strings(&json_body(resp).await["tags"]), all);

    // A last past the end: an empty list.
    let v = json_body(s.get("/v2/a/b/c/tags/list?last=zzz").await).await;
    assert!(strings(&v["tags"]).is_empty());

    // Following Links walks every tag exactly once.
    for n in [1, 2, 3, 7] {
        let got = pages(&s, &format!("/v2/a/b/c/tags/list?n={n}"), "tags", n).await;
        let flat: Vec<String> = got.into_iter().flatten().collect();
        assert_eq!(flat, all, "n={n}");
    }
}

#[tokio::test]
async fn tags_of_unknown_repository_is_name_unknown() {
    let s = TestServer::start().await;
    s.push_image("known", "v1", "x").await;
    let e = assert_error(
        s.get("/v2/unknown/repo/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    assert_eq!(e["detail"]["name"], "unknown/repo");
    // A parent folder of a repository is not one.
    s.push_image("parent/child", "v1", "x").await;
    assert_error(
        s.get("/v2/parent/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    assert_error(
        s.get("/v2/Bad/tags/list").await,
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    )
    .await;
}

#[tokio::test]
async fn tags_of_repository_without_tags_is_empty() {
    let s = TestServer::start().await;
    // Only blobs.
    s.push_blob("blobs-only", b"x").await;
    assert!(s.tags("blobs-only").await.is_empty());
    // A manifest pushed by digest only.
    let m = s.oci_image("digest-only", "x").await;
    s.push_manifest("digest-only", &sha256(&m), OCI_MANIFEST, &m)
        .await;
    assert!(s.tags("digest-only").await.is_empty());
    // Every tag deleted.
    s.push_image("untagged", "v1", "x").await;
    assert_eq!(s.delete("/v2/untagged/manifests/v1").await.status(), 202);
    assert!(s.tags("untagged").await.is_empty());
}

#[tokio::test]
async fn invalid_pagination_number() {
    let s = TestServer::start().await;
    s.push_image("app", "v1", "x").await;
    for q in ["n=abc", "n=-1", "n=1.5"] {
        assert_error(
            s.get(&format!("/v2/app/tags/list?{q}")).await,
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
        )
        .await;
        assert_error(
            s.get(&format!("/v2/_catalog?{q}")).await,
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
        )
        .await;
    }
}

#[tokio::test]
async fn catalog_lists_every_repository() {
    let s = TestServer::start().await;
    let names = [
        "alpha",
        "ns/app",
        "ns/app/sub",
        "ns/other",
        "deep/a/b/c/d",
        "with.dot/x_y/a-b/a__b",
    ];
    for n in names {
        s.push_image(n, "v1", n).await;
    }
    // A repository with only blobs is one too; an upload in progress alone is not.
    s.push_blob("blobonly", b"b").await;
    s.start_upload("uploading/only").await;

    let resp = s.get("/v2/_catalog").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
    assert_eq!(header(&resp, "content-type"), "application/json");
    assert!(opt_header(&resp, "link").is_none());
    let got = strings(&json_body(resp).await["repositories"]);
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.push("blobonly".into());
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn catalog_pagination() {
    let s = TestServer::start().await;
    let mut names: Vec<String> = (0..5).map(|i| format!("repo{i}")).collect();
    names.extend(["ns/a".to_owned(), "ns/b/c".to_owned()]);
    for n in &names {
        s.push_blob(n, n.as_bytes()).await;
    }
    names.sort();

    let resp = s.get("/v2/_catalog?n=2").await;
    let link = next_link(&resp).expect("Link");
    assert!(link.starts_with("/v2/_catalog?"), "{link}");
    assert!(link.contains("n=2"), "{link}");
    assert_eq!(strings(&json_body(resp).await["repositories"]), names[..2]);

    // `last` with a multi-component name (percent-encoded or not).
    assert_eq!(names[0], "ns/a");
    let v = json_body(s.get("/v2/_catalog?n=10&last=ns/a").await).await;
    assert_eq!(strings(&v["repositories"]), names[1..]);
    let v = json_body(s.get("/v2/_catalog?last=ns%2Fa").await).await;
    assert_eq!(strings(&v["repositories"]), names[1..]);
    let resp = s.get("/v2/_catalog?n=1&last=ns/a").await;
    let link = next_link(&resp).expect("Link");
    assert!(
        link.contains("last=ns%2Fb%2Fc") || link.contains("last=ns/b/c"),
        "{link}"
    );
    assert_eq!(
        strings(&json_body(resp).await["repositories"]),
        vec!["ns/b/c"]
    );

    for n in [1, 2, 3, 6, 7] {
        let got = pages(&s, &format!("/v2/_catalog?n={n}"), "repositories", n).await;
        let flat: Vec<String> = got.into_iter().flatten().collect();
        assert_eq!(flat, names, "n={n}");
    }
}

#[tokio::test]
async fn empty_catalog() {
    let s = TestServer::start().await;
    let resp = s.get("/v2/_catalog").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v = json_body(resp).await;
    assert!(strings(&v["repositories"]).is_empty());
    let s = TestServer::builder().in_memory().start().await;
    let v = json_body(s.get("/v2/_catalog?n=5").await).await;
    assert!(strings(&v["repositories"]).is_empty());
}

#[tokio::test]
async fn listing_on_the_in_memory_driver() {
    let s = TestServer::builder().in_memory().start().await;
    let m = s.oci_image("mem/app", "x").await;
    for t in ["b", "a", "c"] {
        s.push_manifest("mem/app", t, OCI_MANIFEST, &m).await;
    }
    s.push_blob("mem/other", b"x").await;
    assert_eq!(s.tags("mem/app").await, vec!["a", "b", "c"]);
    let got = pages(&s, "/v2/mem/app/tags/list?n=2", "tags", 2).await;
    assert_eq!(got, vec![vec!["a", "b"], vec!["c"]]);
    let v = json_body(s.get("/v2/_catalog").await).await;
    assert_eq!(strings(&v["repositories"]), vec!["mem/app", "mem/other"]);
    assert_error(
        s.get("/v2/mem/none/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
}

/// `GET /extensions/v2/<name>/tags/<tag>/history`: every digest the tag pointed at, newest first.
#[tokio::test]
async fn tag_history_lists_every_digest_newest_first() {
    let s = TestServer::start().await;
    let mut pushed = Vec::new();
    for seed in ["h1", "h2", "h3"] {
        pushed.push(s.push_image("hist/app", "v1", seed).await.0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.push_image("hist/app", "other", "h4").await;
    let r = s.get("/extensions/v2/hist/app/tags/v1/history").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v = json_body(r).await;
    let digests: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    pushed.reverse();
    assert_eq!(
        digests,
        pushed.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    let r = s.get("/extensions/v2/hist/app/tags/nope/history").await;
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = s.get("/extensions/v2/hist/none/tags/v1/history").await;
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let r = s.get("/extensions/v2/Bad Name/tags/v1/history").await;
    assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
}
