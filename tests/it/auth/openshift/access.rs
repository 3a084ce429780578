//! Who may do what: the access matrix, denial codes and scoped challenges, mount gating, anonymous
//! pull, the catalog.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::*;

/// One row of the matrix: what each operation answers for a user.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    pull: u16,
    push: u16,
    cancel: u16,
    mount: u16,
    delete: u16,
    catalog: u16,
    /// The status of a scrape of `/extensions/v2/metrics` with the token.
    metrics: u16,
}

async fn run_row(env: &Env, token: Option<&str>, n: usize) -> Row {
    let who = token.unwrap_or("anonymous");
    // pull
    let pull = env
        .req(Method::GET, "/v2/proj/app/manifests/v1", token)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    // push (a blob of its own)
    let data = format!("pushed by {who} {n}");
    let push = env
        .req(
            Method::POST,
            &format!(
                "/v2/proj/app/blobs/uploads/?digest={}",
                sha256(data.as_bytes())
            ),
            token,
        )
        .body(data)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    // cancel an upload the seeder started
    let r = env
        .req(
            Method::POST,
            "/v2/proj/app/blobs/uploads/",
            Some("tok-seeder-123456"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let cancel = env
        .req(Method::DELETE, &loc, token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    // mount proj/app's layer into proj/app-mount-<n>
    let layer = sha256(b"layer of matrix");
    let mount = env
        .req(
            Method::POST,
            &format!("/v2/proj/mnt{n}/blobs/uploads/?mount={layer}&from=proj/app"),
            token,
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    // delete a blob of its own (pushed by the seeder)
    let victim = format!("victim for {who} {n}");
    let (s, vd) = env
        .push_blob("proj/app", victim.as_bytes(), "tok-seeder-123456")
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let delete = env
        .req(Method::DELETE, &format!("/v2/proj/app/blobs/{vd}"), token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let catalog = env
        .req(Method::GET, "/v2/_catalog", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let metrics = env
        .req(Method::GET, "/extensions/v2/metrics", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    Row {
        pull,
        push,
        cancel,
        mount,
        delete,
        catalog,
        metrics,
    }
}

#[tokio::test]
async fn access_matrix() {
    let env = Env::default().await;
    env.seed_image("proj/app", "v1", "matrix").await;
    let row = |pull, push, cancel, mount, delete, catalog, metrics| Row {
        pull,
        push,
        cancel,
        mount,
        delete,
        catalog,
        metrics,
    };
    let cases: Vec<(&str, Option<&str>, Row)> = vec![
        ("anonymous", None, row(401, 401, 401, 401, 401, 401, 401)),
        (
            "anonymous token",
            Some("anonymous"),
            row(401, 401, 401, 401, 401, 401, 401),
        ),
        (
            "no-role",
            Some("tok-norole-5f1c2a"),
            row(403, 403, 403, 403, 403, 403, 401),
        ),
        (
            "viewer",
            Some("tok-viewer-77ab31"),
            row(200, 403, 403, 403, 403, 403, 401),
        ),
        (
            "editor",
            Some("tok-editor-0c9d44"),
            row(200, 201, 204, 201, 403, 403, 401),
        ),
        (
            "builder",
            Some("tok-builder-a1b2c3"),
            row(200, 201, 204, 201, 403, 403, 401),
        ),
        (
            "pruner",
            Some("tok-pruner-9e8d7c"),
            row(403, 403, 403, 403, 202, 200, 401),
        ),
        (
            "scraper",
            Some("tok-scraper-4d4d4d"),
            row(403, 403, 403, 403, 403, 403, 200),
        ),
        (
            "invalid token",
            Some("tok-unknown-000000"),
            row(401, 401, 401, 401, 401, 401, 401),
        ),
    ];
    let mut failures = Vec::new();
    for (n, (name, token, want)) in cases.into_iter().enumerate() {
        let got = run_row(&env, token, n).await;
        if got != want {
            failures.push(format!("{name}: want {want:?}\n      got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "matrix mismatches:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn denials_carry_spec_codes_and_scoped_challenges() {
    let env = Env::default().await;
    let r = env
        .req(Method::PUT, "/v2/proj/app/manifests/v2", None)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(c.ends_with(",scope=\"repository:proj/app:push\""), "{c}");
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = env
        .req(
            Method::PUT,
            "/v2/proj/app/manifests/v2",
            Some("tok-viewer-77ab31"),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
}

#[tokio::test]
async fn mount_without_pull_on_from_falls_back_to_an_upload_session() {
    let env = Env::default().await;
    let secret_layer = env.seed_image("other/app", "v1", "secret").await;
    // The editor may push proj/* but not pull other/*: a 202 session, same as for a missing blob.
    let r = env
        .req(
            Method::POST,
            &format!("/v2/proj/stolen/blobs/uploads/?mount={secret_layer}&from=other/app"),
            Some("tok-editor-0c9d44"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/v2/proj/stolen/blobs/uploads/"));
    let missing = sha256(b"no such blob anywhere");
    let r2 = env
        .req(
            Method::POST,
            &format!("/v2/proj/stolen/blobs/uploads/?mount={missing}&from=other/app"),
            Some("tok-editor-0c9d44"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r2.status(),
        StatusCode::ACCEPTED,
        "indistinguishable from a missing blob"
    );
    // Mount without `from` never links when auth is on.
    let r = env
        .req(
            Method::POST,
            &format!("/v2/proj/stolen/blobs/uploads/?mount={secret_layer}"),
            Some("tok-editor-0c9d44"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // And the blob was not linked.
    let r = env
        .req(
            Method::HEAD,
            &format!("/v2/proj/stolen/blobs/{secret_layer}"),
            Some("tok-editor-0c9d44"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn anonymous_pull_where_system_unauthenticated_may() {
    let env = Env::default().await;
    env.seed_image("public/app", "v1", "public").await;
    env.kube.reset_calls();
    for token in [None, Some("anonymous")] {
        let r = env
            .req(Method::GET, "/v2/public/app/manifests/v1", token)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{token:?}");
    }
    assert!(
        env.kube.calls(SAR) >= 1,
        "anonymous goes through a SubjectAccessReview"
    );
    assert_eq!(
        env.kube.calls(SSAR),
        0,
        "anonymous never asks a SelfSubjectAccessReview"
    );
    // Pushing there anonymously is still refused.
    let r = env
        .req(Method::POST, "/v2/public/app/blobs/uploads/", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn catalog_needs_the_cluster_right_and_shows_all() {
    let env = Env::default().await;
    env.seed_image("proj/app", "v1", "c1").await;
    env.seed_image("other/app", "v1", "c2").await;
    let r = env
        .req(Method::GET, "/v2/_catalog", Some("tok-pruner-9e8d7c"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["repositories"], json!(["other/app", "proj/app"]));
}
