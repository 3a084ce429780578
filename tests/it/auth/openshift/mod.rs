//! OpenShift-mode auth against a fake cluster API (`tests/fake_kube`): the token endpoint, the
//! challenge, the whole matrix {anonymous, no-role, viewer, editor, builder, pruner (+ scraper)} x
//! {pull, push, cancel upload, mount, delete, catalog, metrics}, the decision cache (one API call
//! for N identical requests, coalesced when concurrent), the deadline (a hanging API -> 503 within
//! it), an unreachable API -> 503, the metrics endpoint (secret or review), and that no token ever
//! reaches the logs.

mod access;
mod cache;
mod imagestreams;
mod logs;
mod metrics;
mod prune;
mod token_endpoint;

use reqwest::{Method, StatusCode};
use serde_json::json;

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
            RoleBinding::user(fake_kube::REGISTRY_SA, "system:registry", None),
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

/// The fake cluster and a registry using it, with metrics on behind [`METRICS_SECRET`] (and the
/// `registry/metrics` review the auth mode adds).
struct Env {
    kube: FakeKube,
    reg: TestServer,
}

/// `auth.openshift` keys of [`Env::default`].
const DEFAULT_OPENSHIFT: &str = "    cachettl: 30s\n    timeout: 2s\n";

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
