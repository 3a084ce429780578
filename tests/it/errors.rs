//! The error surface: unknown endpoints, wrong methods, malformed names and digests, and the
//! shape and headers every error answer carries.

use reqwest::{Method, StatusCode};

use crate::harness::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[tokio::test]
async fn unknown_endpoints_under_v2_are_404_with_an_error_body() {
    let s = TestServer::start().await;
    for path in [
        "/v2/app/nothing/here",
        "/v2/app",
        "/v2/app/manifests",
        "/v2/app/blobs",
        "/v2/app/tags",
        "/v2/app/tags/other",
        "/v2/app/referrers",
        "/v2/_catalog/extra",
    ] {
        let resp = s.get(path).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_error_one_of(
            resp,
            StatusCode::NOT_FOUND,
            &["UNSUPPORTED", "NAME_INVALID", "NAME_UNKNOWN"],
        )
        .await;
    }
}

#[tokio::test]
async fn paths_outside_v2_still_carry_the_api_version() {
    let s = TestServer::start().await;
    let resp = s.get("/v3/").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_api_version(&resp);
    let resp = s.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_api_version(&resp);
}

#[tokio::test]
async fn wrong_methods_are_405_unsupported() {
    let s = TestServer::start().await;
    let cases = [
        (Method::POST, "/v2/app/manifests/v1".to_owned()),
        (Method::PATCH, "/v2/app/manifests/v1".to_owned()),
        (Method::PUT, format!("/v2/app/blobs/{D}")),
        (Method::POST, format!("/v2/app/blobs/{D}")),
        (Method::PATCH, format!("/v2/app/blobs/{D}")),
        (Method::POST, "/v2/app/tags/list".to_owned()),
        (Method::DELETE, "/v2/app/tags/list".to_owned()),
        (Method::PUT, "/v2/_catalog".to_owned()),
        (Method::DELETE, "/v2/_catalog".to_owned()),
        (Method::POST, format!("/v2/app/referrers/{D}")),
        (Method::DELETE, format!("/v2/app/referrers/{D}")),
        (Method::GET, "/v2/app/blobs/uploads/".to_owned()),
        (Method::PUT, "/v2/app/blobs/uploads/".to_owned()),
        (Method::DELETE, "/v2/app/blobs/uploads/".to_owned()),
        (
            Method::POST,
            "/v2/app/blobs/uploads/8c4e1a8e-3ad5-4f5b-9a44-0e3b6b0e5c11".to_owned(),
        ),
    ];
    for (method, path) in cases {
        let resp = s.request(method.clone(), &path).send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    }
}

#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let s = TestServer::start().await;
    let long = format!("sha256:{}", "a".repeat(65));
    let upper = D.to_uppercase().replacen("SHA256", "sha256", 1);
    for d in [
        "sha256:abc",
        long.as_str(),
        upper.as_str(),
        "sha256:",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha512:abc",
    ] {
        for method in [Method::GET, Method::DELETE] {
            let resp = s
                .request(method.clone(), &format!("/v2/app/blobs/{d}"))
                .send()
                .await
                .unwrap();
            assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        }
        assert_error(
            s.get(&format!("/v2/app/manifests/{d}")).await,
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        )
        .await;
        assert_error(
            s.get(&format!("/v2/app/referrers/{d}")).await,
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        )
        .await;
    }
    // HEAD: status and headers only.
    let resp = s.head("/v2/app/blobs/sha256:abc").await;
    assert_head_error(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn malformed_names_are_name_invalid() {
    let s = TestServer::start().await;
    let long = "a".repeat(256);
    let max = format!("{}/{}", "a".repeat(127), "b".repeat(127)); // 255 characters: fine
    for name in [
        "UPPER",
        "a..b",
        "a__-b",
        "-lead",
        "trail-",
        "a//b",
        long.as_str(),
    ] {
        let paths = [
            format!("/v2/{name}/tags/list"),
            format!("/v2/{name}/manifests/latest"),
            format!("/v2/{name}/blobs/{D}"),
            format!("/v2/{name}/referrers/{D}"),
        ];
        for p in paths {
            let resp = s.get(&p).await;
            assert_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        }
        let resp = s
            .request(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    }
    s.push_blob(&max, b"max length name").await;
    let resp = s
        .get(&format!("/v2/{max}/blobs/{}", sha256(b"max length name")))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_answer_carries_the_api_version_header() {
    let s = TestServer::start().await;
    let (d, _) = s.push_image("app", "v1", "x").await;
    let loc = s.start_upload("app").await;
    let requests: Vec<(Method, String)> = vec![
        (Method::GET, "/v2/".into()),
        (Method::GET, "/v2/_catalog".into()),
        (Method::GET, "/v2/app/tags/list".into()),
        (Method::GET, "/v2/none/tags/list".into()),
        (Method::GET, "/v2/app/manifests/v1".into()),
        (Method::HEAD, "/v2/app/manifests/v1".into()),
        (Method::GET, "/v2/app/manifests/nope".into()),
        (Method::GET, format!("/v2/app/blobs/{D}")),
        (Method::HEAD, format!("/v2/app/blobs/{D}")),
        (Method::GET, format!("/v2/app/referrers/{d}")),
        (Method::GET, loc.clone()),
        (Method::GET, "/v2/Bad/tags/list".into()),
        (Method::GET, "/v2/app/blobs/sha256:1".into()),
        (Method::POST, "/v2/app/manifests/v1".into()),
        (Method::GET, "/v2/app/blobs/uploads/nope".into()),
        (Method::DELETE, loc),
    ];
    for (method, path) in requests {
        let resp = s.request(method.clone(), &path).send().await.unwrap();
        assert_api_version(&resp);
        if resp.status().is_client_error() && method != Method::HEAD {
            let status = resp.status();
            // Every 4xx under /v2 has the OCI error shape.
            let v = json_body(resp).await;
            let errors = v["errors"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: {v}"));
            assert!(!errors.is_empty(), "{method} {path} {status}");
            assert!(errors[0]["code"].is_string() && errors[0]["message"].is_string());
        }
    }
}

#[tokio::test]
async fn invalid_percent_encoding_in_the_path() {
    let s = TestServer::start().await;
    // Not UTF-8 once decoded.
    let resp = s.get("/v2/app%FF/tags/list").await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_api_version(&resp);
    let v = json_body(resp).await;
    assert!(v["errors"].is_array());
}

#[tokio::test]
async fn errors_name_what_is_wrong_in_detail() {
    let s = TestServer::start().await;
    let e = assert_error(
        s.get("/v2/BAD/tags/list").await,
        StatusCode::BAD_REQUEST,
        "NAME_INVALID",
    )
    .await;
    assert_eq!(e["detail"]["name"], "BAD");
    let e = assert_error(
        s.get("/v2/app/blobs/sha256:abc").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    assert_eq!(e["detail"]["digest"], "sha256:abc");
}
