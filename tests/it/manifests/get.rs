//! Reading manifests: `Accept` negotiation (lists and indexes for schema2-only clients), unknown
//! references, visibility per repository, the blob endpoint, the in-memory driver.

use reqwest::{Method, StatusCode};

use super::{assert_served, two_platform_index};
use crate::harness::*;

#[tokio::test]
async fn accept_negotiation() {
    let s = TestServer::start().await;
    let (oci_d, oci) = s.push_image("app", "oci", "oci").await;

    // An OCI manifest for a client that takes only Docker schema2: not available.
    let resp = s
        .request(Method::GET, "/v2/app/manifests/oci")
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let resp = s
        .request(Method::HEAD, &format!("/v2/app/manifests/{oci_d}"))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_head_error(resp, StatusCode::NOT_FOUND).await;

    // Several Accept values (one header, comma-separated, with parameters) and several headers.
    for accepts in [
        vec![format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9")],
        vec![DOCKER_MANIFEST.to_owned(), OCI_MANIFEST.to_owned()],
        vec!["*/*".to_owned()],
        vec![],
    ] {
        let mut req = s.request(Method::GET, "/v2/app/manifests/oci");
        for a in &accepts {
            req = req.header("accept", a.as_str());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{accepts:?}");
        assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&resp, "docker-content-digest"), oci_d);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &oci[..]);
    }

    // A Docker manifest list for a client that takes only schema2: the linux/amd64 image.
    let (list, amd_d, amd) = two_platform_index(&s, "app", DOCKER_LIST).await;
    let list_d = s.push_manifest("app", "list", DOCKER_LIST, &list).await;
    for method in [Method::GET, Method::HEAD] {
        for reference in ["list", list_d.as_str()] {
            let resp = s
                .request(method.clone(), &format!("/v2/app/manifests/{reference}"))
                .header("accept", DOCKER_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "content-type"), DOCKER_MANIFEST);
            assert_eq!(header(&resp, "docker-content-digest"), amd_d);
            assert_eq!(header(&resp, "content-length"), amd.len().to_string());
            let body = resp.bytes().await.unwrap();
            if method == Method::GET {
                assert_eq!(body.as_ref(), &amd[..]);
            } else {
                assert!(body.is_empty());
            }
        }
    }
    // A client taking lists gets the list.
    let resp = s
        .request(Method::GET, "/v2/app/manifests/list")
        .header("accept", format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-type"), DOCKER_LIST);
    assert_eq!(header(&resp, "docker-content-digest"), list_d);

    // An OCI index whose amd64 child is OCI, for a schema2-only client: nothing acceptable.
    let (index, _, _) = two_platform_index(&s, "app", OCI_INDEX).await;
    s.push_manifest("app", "index", OCI_INDEX, &index).await;
    let resp = s
        .request(Method::GET, "/v2/app/manifests/index")
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn unknown_manifests_are_404() {
    let s = TestServer::start().await;
    s.push_image("app", "v1", "x").await;
    let missing = sha256(b"nothing");
    for r in ["nope", missing.as_str()] {
        let path = format!("/v2/app/manifests/{r}");
        assert_error(
            s.get(&path).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
        assert_head_error(s.head(&path).await, StatusCode::NOT_FOUND).await;
        assert_error(
            s.delete(&path).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
    }
    // In a repository that does not exist.
    assert_error_one_of(
        s.get("/v2/no/such/repo/manifests/latest").await,
        StatusCode::NOT_FOUND,
        &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
    )
    .await;
}

#[tokio::test]
async fn a_manifest_is_only_served_where_it_was_pushed() {
    let s = TestServer::start().await;
    let (d, _) = s.push_image("private", "v1", "x").await;
    s.push_image("public", "v1", "y").await;
    assert_error(
        s.get(&format!("/v2/public/manifests/{d}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn a_manifest_is_also_readable_through_the_blob_endpoint() {
    let s = TestServer::start().await;
    let (d, m) = s.push_image("app", "v1", "x").await;
    let resp = s.get(&format!("/v2/app/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &m[..]);
}

#[tokio::test]
async fn manifests_on_the_in_memory_driver() {
    let s = TestServer::builder().in_memory().start().await;
    let (d, m) = s.push_image("mem", "v1", "x").await;
    assert_served(&s, "mem", "v1", OCI_MANIFEST, &d, &m).await;
    assert_eq!(s.delete("/v2/mem/manifests/v1").await.status(), 202);
    assert_served(&s, "mem", &d, OCI_MANIFEST, &d, &m).await;
    assert_eq!(
        s.delete(&format!("/v2/mem/manifests/{d}")).await.status(),
        202
    );
    assert_error(
        s.get(&format!("/v2/mem/manifests/{d}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}
