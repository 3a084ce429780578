//! `htpasswd` mode: bcrypt users, the registry's own token endpoint, role bindings, anonymous pull
//! patterns, the filtered catalog, mount gating, and reloading the file.

use std::path::PathBuf;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

/// `GET /auth/token?service=image-registry&scope=<scope>` with optional credentials: the status and
/// the JSON body (null when not JSON).
async fn token(reg: &TestServer, creds: Option<&str>, scope: &str) -> (StatusCode, Value) {
    let r = reg
        .request_as(
            Method::GET,
            &format!("/auth/token?service=image-registry&scope={scope}"),
            creds,
        )
        .send()
        .await
        .unwrap();
    let s = r.status();
    (
        s,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// A monolithic push as `auth`; the status.
async fn push_blob(reg: &TestServer, repo: &str, data: &[u8], auth: &str) -> StatusCode {
    reg.post_blob(repo, data, Some(auth)).await.0
}

const HTPASSWD_AUTH: &str = r#"  htpasswd:
    path: HTPASSWD
    tokenttl: 2m
  bindings:
    - role: registry-editor
      namespaces: ["team-*"]
      users: [alice]
    - role: registry-viewer
      namespaces: ["team-a"]
      users: [bob]
    - role: registry-viewer
      namespaces: ["public"]
      anonymous: true
    - role: registry-admin
      namespaces: ["*"]
      users: [root]
"#;

/// A registry in htpasswd mode (alice, bob, root) and the path of its htpasswd file.
async fn htpasswd_registry() -> (TestServer, PathBuf) {
    let b = TestServer::builder().in_memory();
    let mut text = String::new();
    for (u, pw) in [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("root", "root-pw"),
    ] {
        text.push_str(&format!("{u}:{}\n", bcrypt::hash(pw, 4).unwrap()));
    }
    let p = b.write_file("htpasswd", &text);
    let yaml = HTPASSWD_AUTH.replace("HTPASSWD", &format!("{:?}", p.display().to_string()));
    (b.auth(&yaml).start().await, p)
}

#[tokio::test]
async fn htpasswd_login_token_flow_and_bindings() {
    let (reg, _) = htpasswd_registry().await;
    // Challenge names our token endpoint and service.
    let r = reg
        .request_as(Method::GET, "/v2/", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let host = reg.base.trim_start_matches("http://").to_owned();
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Bearer realm=\"http://{host}/auth/token\",service=\"image-registry\"").as_str()
    );
    // Bad password -> 401 at the token endpoint.
    let (s, _) = token(
        &reg,
        Some(&basic("alice", "wrong")),
        "repository:team-a/app:pull",
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Good password -> a JWT with only what the bindings grant.
    let (s, v) = token(
        &reg,
        Some(&basic("alice", "alice-pw")),
        "repository:team-a/app:pull,push,delete",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["expires_in"].as_u64().unwrap() <= 120);
    let tok = v["token"].as_str().unwrap().to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tok.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}])
    );
    let bearer = format!("Bearer {tok}");
    assert_eq!(
        reg.request_as(Method::GET, "/v2/", Some(&bearer))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        push_blob(&reg, "team-a/app", b"a", &bearer).await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_blob(&reg, "team-b/app", b"b", &bearer).await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_blob(&reg, "other/app", b"c", &bearer).await,
        StatusCode::FORBIDDEN
    );
    // Basic works on /v2 too.
    let bob = basic("bob", "bob-pw");
    let r = reg
        .request_as(
            Method::GET,
            &format!("/v2/team-a/app/blobs/{}", sha256(b"a")),
            Some(&bob),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        push_blob(&reg, "team-a/app", b"d", &bob).await,
        StatusCode::FORBIDDEN
    );
    let r = reg
        .request_as(
            Method::DELETE,
            &format!("/v2/team-a/app/blobs/{}", sha256(b"a")),
            Some(&bearer),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "editors do not delete");
    let root = basic("root", "root-pw");
    let r = reg
        .request_as(
            Method::DELETE,
            &format!("/v2/team-a/app/blobs/{}", sha256(b"a")),
            Some(&root),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "admins do");
    // A token signed by someone else is refused.
    let r = reg
        .request_as(
            Method::GET,
            "/v2/",
            Some("Bearer eyJhbGciOiJIUzI1NiJ9.e30.bad"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn htpasswd_anonymous_pull_pattern_catalog_and_mount() {
    let (reg, _) = htpasswd_registry().await;
    let root = basic("root", "root-pw");
    for repo in ["public/app", "team-a/app", "other/secret"] {
        assert_eq!(
            push_blob(&reg, repo, repo.as_bytes(), &root).await,
            StatusCode::CREATED
        );
    }
    // Anonymous: pull in public, without any header and with the anonymous token.
    let r = reg
        .request_as(
            Method::GET,
            &format!("/v2/public/app/blobs/{}", sha256(b"public/app")),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, v) = token(&reg, None, "repository:public/app:pull,push").await;
    assert_eq!(s, StatusCode::OK);
    let anon = format!("Bearer {}", v["token"].as_str().unwrap());
    let r = reg
        .request_as(
            Method::GET,
            &format!("/v2/public/app/blobs/{}", sha256(b"public/app")),
            Some(&anon),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        push_blob(&reg, "public/app", b"x", &anon).await,
        StatusCode::UNAUTHORIZED
    );
    let r = reg
        .request_as(
            Method::GET,
            &format!("/v2/team-a/app/blobs/{}", sha256(b"team-a/app")),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Catalog: filtered to what the caller may pull; admins on * see all.
    let catalog = |auth: Option<String>| {
        let req = reg.request_as(Method::GET, "/v2/_catalog", auth.as_deref());
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            v["repositories"].clone()
        }
    };
    assert_eq!(catalog(None).await, json!(["public/app"]));
    assert_eq!(
        catalog(Some(basic("bob", "bob-pw"))).await,
        json!(["public/app", "team-a/app"])
    );
    assert_eq!(
        catalog(Some(root.clone())).await,
        json!(["other/secret", "public/app", "team-a/app"])
    );
    // Mount: alice may push team-a but not pull other/*: a plain session, nothing linked.
    let alice = basic("alice", "alice-pw");
    let secret = sha256(b"other/secret");
    let r = reg
        .request_as(
            Method::POST,
            &format!("/v2/team-a/x/blobs/uploads/?mount={secret}&from=other/secret"),
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .request_as(
            Method::POST,
            &format!(
                "/v2/team-a/x/blobs/uploads/?mount={}&from=team-a/app",
                sha256(b"team-a/app")
            ),
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "mount from a readable repository"
    );
    let r = reg
        .request_as(
            Method::HEAD,
            &format!("/v2/team-a/x/blobs/{secret}"),
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn htpasswd_file_is_reloaded() {
    let (reg, p) = htpasswd_registry().await;
    let dave = basic("dave", "dave-pw");
    assert_eq!(
        reg.request_as(Method::GET, "/v2/", Some(&dave))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(&format!("dave:{}\n", bcrypt::hash("dave-pw", 4).unwrap()));
    std::fs::write(&p, text).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        reg.request_as(Method::GET, "/v2/", Some(&dave))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// `DELETE /admin/blobs/<digest>` needs delete rights on every namespace (`registry-admin` on `*`).
#[tokio::test]
async fn admin_blob_delete_needs_delete_everywhere() {
    let (reg, _) = htpasswd_registry().await;
    let alice = basic("alice", "alice-pw");
    assert_eq!(
        push_blob(&reg, "team-x/app", b"pruned in htpasswd mode", &alice).await,
        StatusCode::CREATED
    );
    let d = sha256(b"pruned in htpasswd mode");
    let path = format!("/admin/blobs/{d}");
    let r = reg
        .request(reqwest::Method::DELETE, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for who in [&alice, &basic("bob", "bob-pw")] {
        let r = reg
            .request_as(reqwest::Method::DELETE, &path, Some(who))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    }
    let root = basic("root", "root-pw");
    let r = reg
        .request_as(reqwest::Method::DELETE, &path, Some(&root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = reg
        .request_as(
            reqwest::Method::HEAD,
            &format!("/v2/team-x/app/blobs/{d}"),
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
