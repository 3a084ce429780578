//! GCS backend pieces without an emulator: the retry schedule against a loopback server,
//! service-account keys, token assertions and signed URLs checked with the public key (keys are
//! made with `openssl`, a test dependency).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::api::{schedule, Api};
use super::auth::{Auth, ServiceAccount, ServiceAccountKey, Tokens};
use super::sign::signed_get_url;

/// A fresh RSA key pair (PKCS#8 private PEM, SPKI public PEM).
fn rsa_pair() -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let run = |args: &[&str]| {
        let st = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (scripts/install-test-deps installs it)");
        assert!(st.success(), "openssl {args:?}");
    };
    let key_s = key.to_str().unwrap();
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_s,
    ]);
    let public = dir.path().join("pub.pem");
    run(&[
        "pkey",
        "-in",
        key_s,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (
        std::fs::read_to_string(&key).unwrap(),
        std::fs::read_to_string(&public).unwrap(),
    )
}

fn account_key(private_pem: &str) -> ServiceAccountKey {
    ServiceAccountKey {
        client_email: "registry@test.iam.gserviceaccount.com".into(),
        private_key: private_pem.into(),
        token_uri: Some("http://127.0.0.1:9/token".into()),
        kind: Some("service_account".into()),
    }
}

#[test]
fn three_attempts_200_then_800_ms_apart() {
    assert_eq!(
        schedule().collect::<Vec<_>>(),
        [Duration::from_millis(200), Duration::from_millis(800)]
    );
}

/// A loopback HTTP server answering each request (one per connection) with the next status of
/// `statuses` (the last one repeats); counts the requests.
async fn serve_statuses(statuses: Vec<u16>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let status = statuses[n.min(statuses.len() - 1)];
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            );
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    (format!("http://{addr}"), count)
}

fn api(endpoint: String) -> Api {
    Api {
        http: crate::net::outbound::http_client_builder().build().unwrap(),
        endpoint,
        bucket: "b".into(),
        kms: None,
        tokens: Tokens::new(Auth::None),
    }
}

#[tokio::test]
async fn send_retries_transient_failures_on_the_schedule() {
    // Two 503s, then a success: three requests, the pauses between them.
    let (ep, count) = serve_statuses(vec![503, 429, 200]).await;
    let a = api(ep);
    let url = a.object_url("k");
    let t = Instant::now();
    let r = a.send("stat", "k", || a.http.get(&url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );

    // Always 503: three attempts, then the last failure names the call.
    let (ep, count) = serve_statuses(vec![503]).await;
    let a = api(ep);
    let url = a.object_url("k");
    let e = a.send("stat", "k", || a.http.get(&url)).await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(e.to_string().contains("gcs stat k: HTTP 503"), "{e}");

    // Other statuses are answers, not failures: one request.
    let (ep, count) = serve_statuses(vec![404]).await;
    let a = api(ep);
    let url = a.object_url("k");
    let r = a.send("stat", "k", || a.http.get(&url)).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(Api::ok("stat", "k", r).await.unwrap_err().is_not_found());
}

#[test]
fn a_bad_private_key_fails_at_start() {
    let e = ServiceAccount::from_key(&account_key("not a key"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("the service-account key's private_key"), "{e}");
    let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let e = ServiceAccount::from_key(&account_key(garbage))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("the service-account key's private_key"), "{e}");
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    aud: String,
    iat: i64,
    exp: i64,
}

#[test]
fn assertion_is_an_rs256_jwt_for_the_token_endpoint() {
    let (private, public) = rsa_pair();
    let sa = ServiceAccount::from_key(&account_key(&private)).unwrap();
    let jwt = sa.assertion().unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["http://127.0.0.1:9/token"]);
    let key = DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
    let c = jsonwebtoken::decode::<Claims>(&jwt, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(c.iss, "registry@test.iam.gserviceaccount.com");
    assert_eq!(
        c.scope,
        "https://www.googleapis.com/auth/devstorage.read_write"
    );
    assert_eq!(c.aud, "http://127.0.0.1:9/token");
    assert_eq!(c.exp - c.iat, 3600);
}

#[test]
fn signed_urls_verify_with_the_public_key() {
    let (private, public) = rsa_pair();
    let sa = ServiceAccount::from_key(&account_key(&private)).unwrap();
    let url = signed_get_url(
        &sa,
        "http://127.0.0.1:4443",
        "bucket",
        "root/docker/registry/v2/blobs/sha256/ab/abcd/data",
        Duration::from_secs(1200),
    )
    .unwrap();
    let (unsigned, sig) = url.split_once("&X-Goog-Signature=").unwrap();
    let (base, query) = unsigned.split_once('?').unwrap();
    assert_eq!(
        base,
        "http://127.0.0.1:4443/bucket/root/docker/registry/v2/blobs/sha256/ab/abcd/data"
    );
    assert!(query.starts_with("X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=registry%40test.iam.gserviceaccount.com%2F"), "{query}");
    assert!(
        query.contains("&X-Goog-Expires=1200&X-Goog-SignedHeaders=host"),
        "{query}"
    );
    // What GCS recomputes: the canonical request of the URL, then the string to sign.
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let ts = param("X-Goog-Date");
    let scope = format!("{}/auto/storage/goog4_request", &ts[..8]);
    let path = base.strip_prefix("http://127.0.0.1:4443").unwrap();
    let canonical = format!("GET\n{path}\n{query}\nhost:127.0.0.1:4443\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!(
        "GOOG4-RSA-SHA256\n{ts}\n{scope}\n{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(canonical.as_bytes()))
    );
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(sig).unwrap());
    let key = DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
    assert!(
        jsonwebtoken::crypto::verify(&sig, to_sign.as_bytes(), &key, Algorithm::RS256).unwrap()
    );
}

#[tokio::test]
async fn tokens_come_from_the_token_endpoint_and_are_cached() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // One request only: a second fetch would hang the test, not pass it.
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let k = sock.read(&mut chunk).await.unwrap();
            req.extend_from_slice(&chunk[..k]);
            let text = String::from_utf8_lossy(&req).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        let body = r#"{"access_token":"tok-1","expires_in":3600}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8(req).unwrap()
    });
    let (private, _) = rsa_pair();
    let mut key = account_key(&private);
    key.token_uri = Some(format!("http://{addr}/token"));
    let tokens = Tokens::new(Auth::ServiceAccount(Arc::new(
        ServiceAccount::from_key(&key).unwrap(),
    )));
    let http = crate::net::outbound::http_client_builder().build().unwrap();
    assert_eq!(tokens.token(&http).await.unwrap().as_deref(), Some("tok-1"));
    assert_eq!(tokens.token(&http).await.unwrap().as_deref(), Some("tok-1"));
    let req = server.await.unwrap();
    let (head, body) = req.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("POST /token HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded"),
        "{head}"
    );
    let assertion = body
        .strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(assertion.split('.').count(), 3, "{assertion}");
}
