//! `token` mode: JWTs of an external token service, checked against a JWKS or a PEM bundle
//! (signature, issuer, audience, expiry, scope), with bindings adding to what a token grants.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

/// A monolithic push as `auth`; the status.
async fn push_blob(reg: &TestServer, repo: &str, data: &[u8], auth: &str) -> StatusCode {
    reg.post_blob(repo, data, Some(auth)).await.0
}

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
    let b = TestServer::builder().in_memory();
    let jwks = b.write_file("jwks.json", &s.jwks("k1"));
    let yaml = format!(
        "  token:\n    realm: https://auth.example/token\n    service: registry.example\n    issuer: auth.example\n    jwks: {:?}\n  bindings:\n    - role: registry-viewer\n      namespaces: [public]\n      anonymous: true\n",
        jwks.display().to_string()
    );
    let reg = b.auth(&yaml).start().await;
    let pull_push = json!([{"type": "repository", "name": "ns/app", "actions": ["pull", "push"]}]);
    let good = format!(
        "Bearer {}",
        s.sign(Some("k1"), claims("alice", pull_push.clone(), 300))
    );
    assert_eq!(
        push_blob(&reg, "ns/app", b"t", &good).await,
        StatusCode::CREATED
    );
    // Missing scope: 401 insufficient_scope with the scope to ask for.
    let r = reg
        .request_as(Method::POST, "/v2/ns/other/blobs/uploads/", Some(&good))
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
            push_blob(&reg, "ns/app", b"u", &format!("Bearer {t}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Bindings add to the token: anonymous pull in public.
    let r = reg
        .request_as(Method::GET, "/v2/public/x/tags/list", None)
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
    let b = TestServer::builder().in_memory();
    let pem = b.write_file("bundle.pem", &s.pem());
    let yaml = format!(
        "  token:\n    realm: https://auth.example/token\n    service: registry.example\n    issuer: auth.example\n    rootcertbundle: {:?}\n",
        pem.display().to_string()
    );
    let reg = b.auth(&yaml).start().await;
    let t = s.sign(
        None,
        claims(
            "bob",
            json!([{"type": "repository", "name": "a/b", "actions": ["*"]}]),
            60,
        ),
    );
    assert_eq!(
        push_blob(&reg, "a/b", b"p", &format!("Bearer {t}")).await,
        StatusCode::CREATED
    );
    let r = reg
        .request_as(
            Method::DELETE,
            &format!("/v2/a/b/blobs/{}", sha256(b"p")),
            Some(&format!("Bearer {t}")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "* grants delete");
    assert_eq!(
        reg.request_as(Method::GET, "/v2/", None)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
