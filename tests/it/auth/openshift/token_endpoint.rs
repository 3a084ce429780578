//! The token endpoint (`/openshift/token`) and the challenge: anonymous and API tokens, the
//! TokenReview fallback, `<project>/<name>` names.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn token_endpoint_and_challenge() {
    let env = Env::default().await;
    // No credentials on /v2/: the challenge points at our own token endpoint.
    let r = env.req(Method::GET, "/v2/", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let host = env.reg.base.trim_start_matches("http://").to_owned();
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Bearer realm=\"http://{host}/openshift/token\"").as_str()
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    // Behind a proxy: X-Forwarded-Proto/Host.
    let r = env
        .req(Method::GET, "/v2/proj/app/manifests/v1", None)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "registry.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"https://registry.example.com/openshift/token\",scope=\"repository:proj/app:pull\""
    );
    // The token endpoint: anonymous without credentials, the same token with a valid password.
    let r = env
        .req(
            Method::GET,
            "/openshift/token?scope=repository:proj/app:pull&service=x",
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"token": "anonymous", "access_token": "anonymous"})
    );
    let r = env
        .req(Method::GET, "/openshift/token", None)
        .header("authorization", basic("anything", "tok-viewer-77ab31"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["token"], "tok-viewer-77ab31");
    assert_eq!(v["access_token"], "tok-viewer-77ab31");
    let r = env
        .req(Method::GET, "/openshift/token", None)
        .header("authorization", basic("anything", "not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // /v2/ with the token (podman login's check), Bearer and Basic.
    let r = env
        .req(Method::GET, "/v2/", Some("tok-norole-5f1c2a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = env
        .req(Method::GET, "/v2/", None)
        .header("authorization", basic("x", "tok-norole-5f1c2a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = env
        .req(Method::GET, "/v2/", Some("bad-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = env
        .req(Method::GET, "/v2/", Some("anonymous"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the anonymous token may see /v2/"
    );
    // Names are <project>/<name>.
    for path in ["/v2/single/manifests/v1", "/v2/a/b/c/manifests/v1"] {
        let r = env
            .req(Method::GET, path, Some("tok-viewer-77ab31"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    }
}

#[tokio::test]
async fn token_review_fallback_without_self_subject_review() {
    let env = Env::default().await;
    env.kube.disable_self_subject_review();
    let r = env
        .req(Method::GET, "/openshift/token", None)
        .header("authorization", basic("u", "tok-editor-0c9d44"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(env.kube.calls(SSR), 1);
    assert_eq!(env.kube.calls(TR), 1);
    let r = env
        .req(Method::GET, "/openshift/token", None)
        .header("authorization", basic("u", "nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
