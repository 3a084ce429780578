//! The `openshift` mode's client of the cluster's authentication and authorization APIs.
//!
//! - Identity: `SelfSubjectReview` (`authentication.k8s.io/v1`) with the user's token; clusters
//!   without it (404) get a `TokenReview` made with the registry's own service-account token.
//! - Access: `SelfSubjectAccessReview` (`authorization.k8s.io/v1`) with the user's token;
//!   anonymous callers get a `SubjectAccessReview` for `system:anonymous` / group
//!   `system:unauthenticated`, made with the registry's service-account token.
//!
//! Better than the Go registry: every answer (allowed, denied, token rejected) is cached per
//! (SHA-256 of the token, review attributes) for `cachettl` in a bounded cache; identical reviews in
//! flight are coalesced into one call; every call has a deadline (`timeout`). An API that cannot be
//! reached, times out or answers 5xx gives [`AuthError::Unavailable`] (the layer answers 503), never
//! a denial. Tokens go only into `Authorization` headers of API calls (marked sensitive) and into
//! hashes; nothing here logs them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::cache::DecisionCache;
use super::AuthError;
use crate::config::auth::OpenShiftAuthConfig;

/// The standard service-account mount of a pod.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The attributes of one access review (`spec.resourceAttributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: Option<String>,
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub name: Option<String>,
}

pub const IMAGE_GROUP: &str = "image.openshift.io";

impl ResourceAttributes {
    /// `get`/`update` on `imagestreams/layers` of `<ns>/<name>`.
    pub fn layers(verb: &'static str, namespace: &str, name: &str) -> ResourceAttributes {
        ResourceAttributes {
            namespace: Some(namespace.to_owned()),
            verb,
            group: IMAGE_GROUP,
            resource: "imagestreams",
            subresource: Some("layers"),
            name: Some(name.to_owned()),
        }
    }

    /// A cluster-scope check (`delete images`, `list imagestreams`, `get registry/metrics`).
    pub fn cluster(
        verb: &'static str,
        resource: &'static str,
        subresource: Option<&'static str>,
    ) -> ResourceAttributes {
        ResourceAttributes {
            namespace: None,
            verb,
            group: IMAGE_GROUP,
            resource,
            subresource,
            name: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
        });
        if let Some(ns) = &self.namespace {
            v["namespace"] = json!(ns);
        }
        if let Some(s) = self.subresource {
            v["subresource"] = json!(s);
        }
        if let Some(n) = &self.name {
            v["name"] = json!(n);
        }
        v
    }

    fn key_material(&self) -> String {
        format!(
            "{}\0{}\0{}\0{}\0{}\0{}",
            self.namespace.as_deref().unwrap_or(""),
            self.verb,
            self.group,
            self.resource,
            self.subresource.unwrap_or(""),
            self.name.as_deref().unwrap_or("")
        )
    }
}

/// A cached answer of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    Allowed,
    Denied,
    /// The API rejected the token (401).
    TokenRejected,
}

/// The identity behind a token (`None` = the token was rejected).
type Identity = Option<String>;

/// The registry's own service-account token, re-read from its file at most once a minute (bound
/// tokens rotate).
struct SaToken {
    path: Option<PathBuf>,
    cached: Mutex<Option<(String, Instant)>>,
}

impl SaToken {
    fn get(&self) -> Option<String> {
        let path = self.path.as_ref()?;
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, at)) = c.as_ref() {
            if at.elapsed() < Duration::from_secs(60) {
                return Some(t.clone());
            }
        }
        match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => {
                let t = t.trim().to_owned();
                *c = Some((t.clone(), Instant::now()));
                Some(t)
            }
            _ => c.as_ref().map(|(t, _)| t.clone()),
        }
    }
}

struct Client {
    http: reqwest::Client,
    server: String,
    sa: SaToken,
    timeout: Duration,
}

/// The OpenShift reviewer: API client plus caches.
pub struct OpenShift {
    client: Arc<Client>,
    reviews: DecisionCache<Review, AuthError>,
    identities: DecisionCache<Identity, AuthError>,
    /// `auth.openshift.realm`, if configured.
    pub realm: Option<String>,
}

impl OpenShift {
    /// Builds from config, with in-cluster defaults taken from `env` (`KUBERNETES_SERVICE_HOST`,
    /// `KUBERNETES_SERVICE_PORT`) and the service-account mount.
    pub fn new(cfg: &OpenShiftAuthConfig, env: &[(String, String)]) -> anyhow::Result<OpenShift> {
        let var = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let server = match &cfg.server {
            Some(s) if !s.is_empty() => s.trim_end_matches('/').to_owned(),
            _ => match (
                var("KUBERNETES_SERVICE_HOST"),
                var("KUBERNETES_SERVICE_PORT"),
            ) {
                (Some(h), p) => {
                    let h = if h.contains(':') { format!("[{h}]") } else { h };
                    format!("https://{h}:{}", p.unwrap_or_else(|| "443".into()))
                }
                _ => anyhow::bail!(
                    "auth.openshift.server is not set and KUBERNETES_SERVICE_HOST is not in the \
                     environment: where is the cluster API?"
                ),
            },
        };
        if !(server.starts_with("https://") || server.starts_with("http://")) {
            anyhow::bail!("auth.openshift.server must be an http:// or https:// URL");
        }
        let default_sa = |f: &str| {
            let p = PathBuf::from(SA_DIR).join(f);
            p.exists().then_some(p)
        };
        let cafile = cfg
            .cafile
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or_else(|| default_sa("ca.crt"));
        let tokenfile = cfg
            .tokenfile
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .or_else(|| default_sa("token"));
        let mut builder = crate::net::outbound::http_client_builder()
            .connect_timeout(cfg.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("image-registry/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cafile {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("auth.openshift.cafile {}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("auth.openshift.cafile {}: {e}", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the API client: {e}"))?;
        if tokenfile.is_none() {
            tracing::warn!("auth.openshift: no service-account token (tokenFile): anonymous access is always denied");
        }
        let max = usize::try_from(cfg.cachesize).unwrap_or(0).max(1);
        Ok(OpenShift {
            client: Arc::new(Client {
                http,
                server,
                sa: SaToken {
                    path: tokenfile,
                    cached: Mutex::new(None),
                },
                timeout: cfg.timeout,
            }),
            reviews: DecisionCache::new(cfg.cachettl, max),
            identities: DecisionCache::new(cfg.cachettl, max),
            realm: cfg.realm.clone().filter(|r| !r.is_empty()),
        })
    }

    /// The same API client, for the registry's own calls as its service account (the image
    /// metadata of pushes).
    pub fn service_account_api(&self) -> ServiceAccountApi {
        ServiceAccountApi {
            client: self.client.clone(),
        }
    }

    /// Cache counters of the access reviews (hits, joined, fetches).
    pub fn review_stats(&self) -> super::cache::CacheStats {
        self.reviews.stats()
    }

    /// Whether `token` (`None` = anonymous) may do `attrs`.
    pub async fn review(
        &self,
        token: Option<&str>,
        attrs: &ResourceAttributes,
    ) -> Result<Review, AuthError> {
        let mut h = Sha256::new();
        h.update(b"review\0");
        match token {
            Some(t) => {
                h.update(b"t");
                h.update(t.as_bytes());
            }
            None => h.update(b"anonymous"),
        }
        h.update(b"\0");
        h.update(attrs.key_material().as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let client = self.client.clone();
        let token = token.map(str::to_owned);
        let attrs = attrs.clone();
        self.reviews
            .get_or_fetch(key, move || async move {
                match token {
                    Some(t) => client.ssar(&t, &attrs).await,
                    None => client.anonymous_sar(&attrs).await,
                }
            })
            .await
    }

    /// The user name behind `token`; `Ok(None)` when the API rejects the token.
    pub async fn identify(&self, token: &str) -> Result<Identity, AuthError> {
        let mut h = Sha256::new();
        h.update(b"identity\0");
        h.update(token.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let client = self.client.clone();
        let token = token.to_owned();
        self.identities
            .get_or_fetch(key, move || async move { client.who(&token).await })
            .await
    }
}

/// Calls of the cluster API as the registry's service account, over the reviewer's client (same
/// connection pool, CA, deadline and outbound settings).
#[derive(Clone)]
pub struct ServiceAccountApi {
    client: Arc<Client>,
}

impl ServiceAccountApi {
    /// POSTs `body` to `path`: the status and the JSON answer (`Null` if it is none).
    /// [`AuthError::Unavailable`] when the API cannot be reached in time or there is no
    /// service-account token.
    pub async fn post(&self, path: &str, body: Value) -> Result<(u16, Value), AuthError> {
        let Some(sa) = self.client.sa.get() else {
            return Err(AuthError::Unavailable(
                "no service-account token (auth.openshift.tokenfile)".into(),
            ));
        };
        self.client.post(path, &sa, body).await
    }
}

impl Client {
    async fn post(&self, path: &str, bearer: &str, body: Value) -> Result<(u16, Value), AuthError> {
        let url = format!("{}{}", self.server, path);
        let call = async {
            let resp = self
                .http
                .post(&url)
                .bearer_auth(bearer)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(body.to_string())
                .send()
                .await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        };
        let (status, bytes) = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => {
                tracing::warn!(path, timeout = ?self.timeout, "cluster API call timed out");
                return Err(AuthError::Unavailable(
                    "the cluster API did not answer in time".into(),
                ));
            }
            Ok(Err(e)) => {
                tracing::warn!(path, error = %e.without_url(), "cluster API call failed");
                return Err(AuthError::Unavailable(
                    "the cluster API cannot be reached".into(),
                ));
            }
            Ok(Ok(r)) => r,
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn unexpected(path: &str, status: u16) -> AuthError {
        tracing::warn!(path, status, "unexpected answer of the cluster API");
        AuthError::Unavailable(format!("the cluster API answered {status}"))
    }

    async fn ssar(&self, token: &str, attrs: &ResourceAttributes) -> Result<Review, AuthError> {
        const PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
        let body = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": { "resourceAttributes": attrs.to_json() },
        });
        match self.post(PATH, token, body).await? {
            (200 | 201, v) => Ok(allowed(&v)),
            (401, _) => Ok(Review::TokenRejected),
            (403, _) => Ok(Review::Denied),
            (s, _) => Err(Self::unexpected(PATH, s)),
        }
    }

    async fn anonymous_sar(&self, attrs: &ResourceAttributes) -> Result<Review, AuthError> {
        const PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
        let Some(sa) = self.sa.get() else {
            return Ok(Review::Denied);
        };
        let body = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "resourceAttributes": attrs.to_json(),
                "user": "system:anonymous",
                "groups": ["system:unauthenticated"],
            },
        });
        match self.post(PATH, &sa, body).await? {
            (200 | 201, v) => Ok(allowed(&v)),
            (s @ (401 | 403), _) => {
                tracing::error!(
                    status = s,
                    "the registry's service account may not create SubjectAccessReviews: anonymous access is denied"
                );
                Ok(Review::Denied)
            }
            (s, _) => Err(Self::unexpected(PATH, s)),
        }
    }

    async fn who(&self, token: &str) -> Result<Identity, AuthError> {
        const SSR: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
        const TR: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
        let body = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview" });
        match self.post(SSR, token, body).await? {
            (200 | 201, v) => {
                return Ok(v["status"]["userInfo"]["username"]
                    .as_str()
                    .map(str::to_owned));
            }
            (401, _) => return Ok(None),
            (404, _) => {}
            (s, _) => return Err(Self::unexpected(SSR, s)),
        }
        let Some(sa) = self.sa.get() else {
            return Err(AuthError::Unavailable(
                "no SelfSubjectReview API and no service-account token for a TokenReview".into(),
            ));
        };
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": { "token": token },
        });
        match self.post(TR, &sa, body).await? {
            (200 | 201, v) => {
                if v["status"]["authenticated"].as_bool() == Some(true) {
                    Ok(v["status"]["user"]["username"].as_str().map(str::to_owned))
                } else {
                    Ok(None)
                }
            }
            (s, _) => Err(Self::unexpected(TR, s)),
        }
    }
}

fn allowed(v: &Value) -> Review {
    if v["status"]["allowed"].as_bool() == Some(true)
        && v["status"]["denied"].as_bool() != Some(true)
    {
        Review::Allowed
    } else {
        Review::Denied
    }
}
