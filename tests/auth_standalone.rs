//! Standalone auth: `htpasswd` mode (bcrypt users, the registry's own token endpoint, role
//! bindings, anonymous pull patterns, filtered catalog, mount gating) and `token` mode (JWTs of an
//! external token service, checked against a JWKS or a PEM bundle).

use std::sync::Arc;

use base64::Engine as _;
use image_registry::app::{build_app_with_auth, build_driver, build_registry, AppOptions};
use image_registry::auth::Auth;
use image_registry::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest as _;

struct Reg {
    base: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(auth_yaml: &str, dir: tempfile::TempDir) -> Reg {
    let yaml = format!(
        "storage:\n  inmemory: {{}}\nhttp:\n  secret: s3\nlog:\n  level: error\nauth:\n{auth_yaml}"
    );
    let (config, _) = Config::from_yaml(&yaml, &[]).expect("config");
    let driver = build_driver(&config).unwrap();
    let (registry, _) = build_registry(&config, driver);
    let auth = Arc::new(Auth::from_config(&config, &[]).unwrap().expect("auth on"));
    let app = build_app_with_auth(registry, AppOptions::default(), Some(auth));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Reg {
        base,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        dir,
        task,
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

impl Reg {
    fn req(&self, m: Method, path: &str, auth: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.client.request(m, format!("{}{path}", self.base));
        match auth {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    async fn token(&self, creds: Option<&str>, scope: &str) -> (StatusCode, Value) {
        let r = self
            .req(
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

    async fn push_blob(&self, repo: &str, data: &[u8], auth: &str) -> StatusCode {
        self.req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={}", digest(data)),
            Some(auth),
        )
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
        .status()
    }
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

async fn htpasswd_registry() -> Reg {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("htpasswd");
    let mut text = String::new();
    for (u, pw) in [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("root", "root-pw"),
    ] {
        text.push_str(&format!("{u}:{}\n", bcrypt::hash(pw, 4).unwrap()));
    }
    std::fs::write(&p, text).unwrap();
    let yaml = HTPASSWD_AUTH.replace("HTPASSWD", &format!("{:?}", p.display().to_string()));
    start(&yaml, dir).await
}

#[tokio::test]
async fn htpasswd_login_token_flow_and_bindings() {
    let reg = htpasswd_registry().await;
    // Challenge names our token endpoint and service.
    let r = reg.req(Method::GET, "/v2/", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let host = reg.base.trim_start_matches("http://").to_owned();
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Bearer realm=\"http://{host}/auth/token\",service=\"image-registry\"").as_str()
    );
    // Bad password -> 401 at the token endpoint.
    let (s, _) = reg
        .token(Some(&basic("alice", "wrong")), "repository:team-a/app:pull")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Good password -> a JWT with only what the bindings grant.
    let (s, v) = reg
        .token(
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
        reg.req(Method::GET, "/v2/", Some(&bearer))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        reg.push_blob("team-a/app", b"a", &bearer).await,
        StatusCode::CREATED
    );
    assert_eq!(
        reg.push_blob("team-b/app", b"b", &bearer).await,
        StatusCode::CREATED
    );
    assert_eq!(
        reg.push_blob("other/app", b"c", &bearer).await,
        StatusCode::FORBIDDEN
    );
    // Basic works on /v2 too.
    let bob = basic("bob", "bob-pw");
    let r = reg
        .req(
            Method::GET,
            &format!("/v2/team-a/app/blobs/{}", digest(b"a")),
            Some(&bob),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        reg.push_blob("team-a/app", b"d", &bob).await,
        StatusCode::FORBIDDEN
    );
    let r = reg
        .req(
            Method::DELETE,
            &format!("/v2/team-a/app/blobs/{}", digest(b"a")),
            Some(&bearer),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "editors do not delete");
    let root = basic("root", "root-pw");
    let r = reg
        .req(
            Method::DELETE,
            &format!("/v2/team-a/app/blobs/{}", digest(b"a")),
            Some(&root),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "admins do");
    // A token signed by someone else is refused.
    let r = reg
        .req(
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
    let reg = htpasswd_registry().await;
    let root = basic("root", "root-pw");
    for repo in ["public/app", "team-a/app", "other/secret"] {
        assert_eq!(
            reg.push_blob(repo, repo.as_bytes(), &root).await,
            StatusCode::CREATED
        );
    }
    // Anonymous: pull in public, without any header and with the anonymous token.
    let r = reg
        .req(
            Method::GET,
            &format!("/v2/public/app/blobs/{}", digest(b"public/app")),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, v) = reg.token(None, "repository:public/app:pull,push").await;
    assert_eq!(s, StatusCode::OK);
    let anon = format!("Bearer {}", v["token"].as_str().unwrap());
    let r = reg
        .req(
            Method::GET,
            &format!("/v2/public/app/blobs/{}", digest(b"public/app")),
            Some(&anon),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        reg.push_blob("public/app", b"x", &anon).await,
        StatusCode::UNAUTHORIZED
    );
    let r = reg
        .req(
            Method::GET,
            &format!("/v2/team-a/app/blobs/{}", digest(b"team-a/app")),
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Catalog: filtered to what the caller may pull; admins on * see all.
    let catalog = |auth: Option<String>| {
        let req = reg.req(Method::GET, "/v2/_catalog", auth.as_deref());
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
    let secret = digest(b"other/secret");
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/team-a/x/blobs/uploads/?mount={secret}&from=other/secret"),
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .req(
            Method::POST,
            &format!(
                "/v2/team-a/x/blobs/uploads/?mount={}&from=team-a/app",
                digest(b"team-a/app")
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
        .req(
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
    let reg = htpasswd_registry().await;
    let p = reg.dir.path().join("htpasswd");
    let dave = basic("dave", "dave-pw");
    assert_eq!(
        reg.req(Method::GET, "/v2/", Some(&dave))
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
        reg.req(Method::GET, "/v2/", Some(&dave))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

// ----- token mode ---------------------------------------------------------------------------

struct Signer {
    key: jsonwebtoken::EncodingKey,
    public: Vec<u8>,
}

fn signer() -> Signer {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Signer {
        key: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
        public: pair.public_key().as_ref().to_vec(),
    }
}

impl Signer {
    fn sign(&self, kid: Option<&str>, claims: Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
    }

    fn jwks(&self, kid: &str) -> String {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public)}]})
        .to_string()
    }

    fn pem(&self) -> String {
        let mut der = hex::decode("302a300506032b6570032100").unwrap();
        der.extend_from_slice(&self.public);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str, access: Value, exp_in: i64) -> Value {
    json!({"iss": "auth.example", "sub": sub, "aud": "registry.example",
           "exp": (now() as i64 + exp_in), "nbf": now() - 5, "iat": now(), "jti": "j1",
           "access": access})
}

#[tokio::test]
async fn token_mode_checks_signature_issuer_audience_scope() {
    let s = signer();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, s.jwks("k1")).unwrap();
    let yaml = format!(
        "  token:\n    realm: https://auth.example/token\n    service: registry.example\n    issuer: auth.example\n    jwks: {:?}\n  bindings:\n    - role: registry-viewer\n      namespaces: [public]\n      anonymous: true\n",
        jwks.display().to_string()
    );
    let reg = start(&yaml, dir).await;
    let pull_push = json!([{"type": "repository", "name": "ns/app", "actions": ["pull", "push"]}]);
    let good = format!(
        "Bearer {}",
        s.sign(Some("k1"), claims("alice", pull_push.clone(), 300))
    );
    assert_eq!(
        reg.push_blob("ns/app", b"t", &good).await,
        StatusCode::CREATED
    );
    // Missing scope: 401 insufficient_scope with the scope to ask for.
    let r = reg
        .req(Method::POST, "/v2/ns/other/blobs/uploads/", Some(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:ns/other:push\",error=\"insufficient_scope\""
    );
    // Expired, wrong audience, wrong issuer, wrong key: 401.
    let expired = s.sign(Some("k1"), claims("alice", pull_push.clone(), -300));
    let mut wrong_aud = claims("alice", pull_push.clone(), 300);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("alice", pull_push.clone(), 300);
    wrong_iss["iss"] = json!("evil");
    let other = signer().sign(Some("k1"), claims("alice", pull_push.clone(), 300));
    for t in [
        expired,
        s.sign(None, wrong_aud),
        s.sign(None, wrong_iss),
        other,
    ] {
        assert_eq!(
            reg.push_blob("ns/app", b"u", &format!("Bearer {t}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Bindings add to the token: anonymous pull in public.
    let r = reg
        .req(Method::GET, "/v2/public/x/tags/list", None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "allowed through (the repo is empty)"
    );
}

#[tokio::test]
async fn token_mode_with_a_pem_bundle() {
    let s = signer();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("bundle.pem");
    std::fs::write(&pem, s.pem()).unwrap();
    let yaml = format!(
        "  token:\n    realm: https://auth.example/token\n    service: registry.example\n    issuer: auth.example\n    rootcertbundle: {:?}\n",
        pem.display().to_string()
    );
    let reg = start(&yaml, dir).await;
    let t = s.sign(
        None,
        claims(
            "bob",
            json!([{"type": "repository", "name": "a/b", "actions": ["*"]}]),
            60,
        ),
    );
    assert_eq!(
        reg.push_blob("a/b", b"p", &format!("Bearer {t}")).await,
        StatusCode::CREATED
    );
    let r = reg
        .req(
            Method::DELETE,
            &format!("/v2/a/b/blobs/{}", digest(b"p")),
            Some(&format!("Bearer {t}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "* grants delete");
    assert_eq!(
        reg.req(Method::GET, "/v2/", None)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
