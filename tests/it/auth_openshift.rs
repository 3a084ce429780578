//! OpenShift-mode auth against a fake cluster API (`tests/fake_kube`): the token endpoint, the
//! challenge, the whole matrix {anonymous, no-role, viewer, editor, builder, pruner (+ scraper)} x
//! {pull, push, cancel upload, mount, delete, catalog, metrics}, the decision cache (one API call
//! for N identical requests, coalesced when concurrent), the deadline (a hanging API -> 503 within
//! it), an unreachable API -> 503, the metrics endpoint (secret or review), and that no token ever
//! reaches the logs.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::fake_kube::{self, FakeKube, RoleBinding, Table, User, SAR, SSAR, SSR, TR};
use crate::harness::*;

const SA_TOKEN: &str = "sa-token-registry-0001";

const METRICS_SECRET: &str = "metrics-secret-0001";

fn u(token: &str, name: &str) -> User {
    User {
        token: token.into(),
        name: name.into(),
        groups: Vec::new(),
    }
}

/// The users and bindings every test here uses. Tokens are long and distinctive so a leak into a
/// log would be found by a plain substring search.
fn table() -> Table {
    Table {
        users: vec![
            u(SA_TOKEN, fake_kube::REGISTRY_SA),
            u("tok-norole-5f1c2a", "nora"),
            u("tok-viewer-77ab31", "vera"),
            u("tok-editor-0c9d44", "eddie"),
            u("tok-builder-a1b2c3", "system:serviceaccount:proj:builder"),
            u(
                "tok-pruner-9e8d7c",
                "system:serviceaccount:openshift-infra:pruner",
            ),
            u("tok-scraper-4d4d4d", "prom"),
            u("tok-seeder-123456", "seeder"),
        ],
        bindings: vec![
            RoleBinding::user(fake_kube::REGISTRY_SA, "system:auth-delegator", None),
            RoleBinding::user("vera", "registry-viewer", Some("proj")),
            RoleBinding::user("eddie", "registry-editor", Some("proj")),
            RoleBinding::user(
                "system:serviceaccount:proj:builder",
                "system:image-builder",
                Some("proj"),
            ),
            RoleBinding::user(
                "system:serviceaccount:openshift-infra:pruner",
                "system:image-pruner",
                None,
            ),
            RoleBinding::user("prom", "prometheus-scraper", None),
            RoleBinding::user("seeder", "system:image-pusher", Some("proj")),
            RoleBinding::user("seeder", "system:image-pusher", Some("other")),
            RoleBinding::user("seeder", "system:image-pusher", Some("public")),
            RoleBinding::group(
                "system:unauthenticated",
                "system:image-puller",
                Some("public"),
            ),
        ],
    }
}

/// A registry in openshift mode whose cluster API is at `kube_base`, storing in memory; `extra`
/// holds more `auth.openshift` keys (indented four spaces).
fn openshift_registry(kube_base: &str, extra: &str) -> ServerBuilder {
    let b = TestServer::builder().in_memory();
    let token_file = b.write_file("sa-token", &format!("{SA_TOKEN}\n"));
    let auth = format!(
        "  openshift:\n    server: {kube_base}\n    tokenfile: {:?}\n{extra}",
        token_file.display().to_string()
    );
    b.auth(&auth)
}

/// `auth.openshift` keys of [`Env::default`].
const DEFAULT_OPENSHIFT: &str = "    cachettl: 30s\n    timeout: 2s\n";

/// The fake cluster and a registry using it, with metrics on behind [`METRICS_SECRET`] (and the
/// `registry/metrics` review the auth mode adds).
struct Env {
    kube: FakeKube,
    reg: TestServer,
}

impl Env {
    async fn start(extra: &str) -> Env {
        let kube = FakeKube::start(table()).await;
        let reg = openshift_registry(&kube.base, extra)
            .metrics(Some(METRICS_SECRET))
            .start()
            .await;
        Env { kube, reg }
    }

    async fn default() -> Env {
        Env::start(DEFAULT_OPENSHIFT).await
    }

    /// A request with the token as Bearer (`None`: anonymous); `path` may be a `Location`.
    fn req(&self, m: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.reg.request(m, path);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// A monolithic push with the token: (status, digest).
    async fn push_blob(&self, repo: &str, data: &[u8], token: &str) -> (StatusCode, String) {
        self.reg
            .post_blob(repo, data, Some(&format!("Bearer {token}")))
            .await
    }

    /// Pushes config + one layer + a manifest tagged `tag`; returns the layer digest.
    async fn seed_image(&self, repo: &str, tag: &str, seed: &str) -> String {
        let t = "tok-seeder-123456";
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer of {seed}");
        let (s1, cd) = self.push_blob(repo, config.as_bytes(), t).await;
        let (s2, ld) = self.push_blob(repo, layer.as_bytes(), t).await;
        assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}]
        });
        let r = self
            .req(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"), Some(t))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(m.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "seed manifest");
        ld
    }
}

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

/// The status of a scrape of `/extensions/v2/metrics` with this `Authorization` (None: without).
async fn scrape_status(reg: &TestServer, authorization: Option<&str>) -> StatusCode {
    reg.request_as(Method::GET, "/extensions/v2/metrics", authorization)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn metrics_secret_and_review() {
    let env = Env::default().await;
    assert_eq!(
        scrape_status(&env.reg, Some(&basic("anyuser", METRICS_SECRET))).await,
        StatusCode::OK
    );
    assert_eq!(
        scrape_status(&env.reg, Some(&format!("Bearer {METRICS_SECRET}"))).await,
        StatusCode::OK
    );
    assert_eq!(env.kube.total_calls(), 0, "the secret needs no API call");
    assert_eq!(
        scrape_status(&env.reg, Some(&basic("x", "tok-scraper-4d4d4d"))).await,
        StatusCode::OK
    );
    assert_eq!(
        scrape_status(&env.reg, Some("Bearer tok-viewer-77ab31")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.kube.calls(SSAR),
        2,
        "the scraper and the viewer were reviewed by the cluster"
    );
    assert_eq!(
        scrape_status(&env.reg, None).await,
        StatusCode::UNAUTHORIZED
    );
    // Metrics on without a secret: only the review admits a scrape, and the other registry's
    // secret is just an unknown token here.
    let no_secret = openshift_registry(&env.kube.base, DEFAULT_OPENSHIFT)
        .metrics(None)
        .start()
        .await;
    assert_eq!(
        scrape_status(&no_secret, Some(&basic("x", METRICS_SECRET))).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn one_api_call_for_many_identical_requests() {
    let env = Env::default().await;
    env.seed_image("proj/app", "v1", "cache").await;
    env.kube.reset_calls();
    for _ in 0..200 {
        let r = env
            .req(
                Method::GET,
                "/v2/proj/app/manifests/v1",
                Some("tok-viewer-77ab31"),
            )
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(env.kube.calls(SSAR), 1, "200 sequential pulls, one review");
    // Concurrent identical requests of a new token are coalesced into one call.
    env.kube.reset_calls();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let req = env
            .req(
                Method::GET,
                "/v2/proj/app/manifests/v1",
                Some("tok-editor-0c9d44"),
            )
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(env.kube.calls(SSAR), 1, "50 concurrent pulls, one review");
}

#[tokio::test]
async fn hanging_api_answers_503_within_the_deadline_and_cache_keeps_serving() {
    let env = Env::start("    cachettl: 60s\n    timeout: 500ms\n").await;
    env.seed_image("proj/app", "v1", "deadline").await;
    // Warm the cache for the viewer.
    let pull = |t: &'static str| {
        env.req(Method::GET, "/v2/proj/app/manifests/v1", Some(t))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
    };
    assert_eq!(
        pull("tok-viewer-77ab31").await.unwrap().status(),
        StatusCode::OK
    );
    env.kube.set_hang(true);
    let start = Instant::now();
    let r = pull("tok-editor-0c9d44").await.unwrap();
    let took = start.elapsed();
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not a login prompt"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers().get("www-authenticate").is_none());
    assert!(took < Duration::from_millis(1500), "answered in {took:?}");
    assert!(
        took >= Duration::from_millis(450),
        "waited for the deadline: {took:?}"
    );
    // The warm entry still answers while the API hangs.
    assert_eq!(
        pull("tok-viewer-77ab31").await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unreachable_api_answers_503() {
    let reg = openshift_registry(&dead_url(), "    timeout: 1s\n")
        .start()
        .await;
    let r = reg
        .request_as(
            Method::GET,
            "/v2/proj/app/manifests/v1",
            Some("Bearer tok-viewer-77ab31"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = reg
        .request_as(
            Method::GET,
            "/openshift/token",
            Some(&basic("u", "tok-viewer-77ab31")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "current_thread")]
async fn logs_never_contain_a_token() {
    let cap = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(cap.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = capture_logs(subscriber);
    let env = Env::start("    cachettl: 30s\n    timeout: 300ms\n").await;
    env.seed_image("proj/app", "v1", "logs").await;
    for t in [
        "tok-viewer-77ab31",
        "tok-norole-5f1c2a",
        "tok-unknown-000000",
        "anonymous",
    ] {
        for path in ["/v2/", "/v2/proj/app/manifests/v1", "/v2/_catalog"] {
            let _ = env.req(Method::GET, path, Some(t)).send().await.unwrap();
            let _ = env
                .req(Method::GET, path, None)
                .header("authorization", basic("user", t))
                .send()
                .await
                .unwrap();
        }
        let _ = env
            .req(Method::GET, "/openshift/token", None)
            .header("authorization", basic("user", t))
            .send()
            .await
            .unwrap();
    }
    env.kube.set_hang(true);
    let _ = env
        .req(
            Method::GET,
            "/v2/proj/app/manifests/v1",
            Some("tok-editor-0c9d44"),
        )
        .send()
        .await
        .unwrap();
    let logs = cap.text();
    assert!(logs.len() > 1000, "the capture works: {} bytes", logs.len());
    for secret in [
        "tok-viewer-77ab31",
        "tok-norole-5f1c2a",
        "tok-unknown-000000",
        "tok-editor-0c9d44",
        "tok-seeder-123456",
        SA_TOKEN,
    ] {
        assert!(
            !logs.contains(secret),
            "a token leaked into the logs: {secret}"
        );
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode("user:tok-viewer-77ab31");
    assert!(!logs.contains(&encoded), "Basic credentials leaked");
}

/// The closing note's numbers: API calls for 1,000 pulls of one image by one user, and pull
/// latency with a warm cache vs none. Run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_cache() {
    for (label, extra) in [
        ("warm cache (ttl 30s)", "    cachettl: 30s\n"),
        ("no cache (ttl 0)", "    cachettl: 0s\n"),
    ] {
        let env = Env::start(extra).await;
        env.seed_image("proj/app", "v1", "measure").await;
        env.kube.reset_calls();
        let layer = sha256(b"layer of measure");
        let mut lat = Vec::new();
        for _ in 0..1000 {
            let s = Instant::now();
            // One "pull" = manifest GET + layer GET (as a client does after the first pull).
            let r = env
                .req(
                    Method::GET,
                    "/v2/proj/app/manifests/v1",
                    Some("tok-viewer-77ab31"),
                )
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let _ = r.bytes().await.unwrap();
            let r = env
                .req(
                    Method::GET,
                    &format!("/v2/proj/app/blobs/{layer}"),
                    Some("tok-viewer-77ab31"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let _ = r.bytes().await.unwrap();
            lat.push(s.elapsed());
        }
        lat.sort();
        let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
        println!(
            "{label}: 1000 pulls (manifest+layer), API calls = {}, mean {:?}, p50 {:?}, p99 {:?}",
            env.kube.total_calls(),
            mean,
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100]
        );
    }
}
