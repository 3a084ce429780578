//! [`Auth`]: the configured mode behind one interface — challenges, decisions, the token endpoint
//! and the metrics review.

use std::sync::Arc;

use futures::future::join_all;
use rand::RngCore;
use sha2::{Digest as _, Sha256};

use super::bindings::{namespace_of, Bindings};
use super::htpasswd::Htpasswd;
use super::openshift::{OpenShift, ResourceAttributes, Review};
use super::token::{requested, AccessEntry, Claims, Issuer, Verifier};
use super::{
    scope_string, Access, Action, AuthError, CatalogVisibility, Credentials, ScopeRequest, Subject,
    Verdict,
};
use crate::config::{AuthMode, Config};

enum Mode {
    OpenShift(OpenShift),
    Htpasswd {
        users: Htpasswd,
        issuer: Issuer,
        realm: Option<String>,
    },
    Token {
        verifier: Verifier,
        realm: String,
    },
}

/// The registry's authentication and authorization, one per process.
pub struct Auth {
    mode: Mode,
    bindings: Arc<Bindings>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.mode_name())
            .finish()
    }
}

/// The token endpoint's answer (`{"token","access_token","expires_in","issued_at"}`).
#[derive(Debug, Clone)]
pub struct TokenAnswer {
    pub token: String,
    pub expires_in: Option<u64>,
    pub issued_at: Option<u64>,
}

/// The literal token OpenShift's token endpoint hands out to callers without credentials.
pub const ANONYMOUS_TOKEN: &str = "anonymous";

impl Auth {
    /// Builds the configured mode; `Ok(None)` for `none`. `env` supplies the in-cluster defaults
    /// of the `openshift` mode.
    pub fn from_config(config: &Config, env: &[(String, String)]) -> anyhow::Result<Option<Auth>> {
        let a = &config.auth;
        let bindings = Arc::new(Bindings::new(&a.bindings));
        let mode = match a.mode().map_err(|e| anyhow::anyhow!("auth: {e}"))? {
            AuthMode::None => return Ok(None),
            AuthMode::OpenShift => {
                let cfg = a.openshift.clone().unwrap_or_default();
                if !a.bindings.is_empty() {
                    tracing::warn!(
                        "auth.bindings are ignored in openshift mode: the cluster's RBAC decides"
                    );
                }
                Mode::OpenShift(OpenShift::new(&cfg, env)?)
            }
            AuthMode::Htpasswd => {
                let h = a.htpasswd.clone().unwrap_or_default();
                let users = Htpasswd::open(h.path.clone().unwrap_or_default())?;
                let key: Vec<u8> = match (&h.tokenkey, &config.http.secret) {
                    (Some(k), _) if !k.is_empty() => k.as_bytes().to_vec(),
                    (_, Some(s)) => {
                        let mut d = Sha256::new();
                        d.update(b"image-registry htpasswd token key\0");
                        d.update(s.as_bytes());
                        d.finalize().to_vec()
                    }
                    _ => {
                        tracing::warn!("auth.htpasswd: no tokenKey and no http.secret: tokens are signed with a random key and stop working on restart and on other replicas");
                        let mut k = vec![0u8; 32];
                        rand::thread_rng().fill_bytes(&mut k);
                        k
                    }
                };
                Mode::Htpasswd {
                    users,
                    issuer: Issuer::new(&key, &h.service, h.tokenttl),
                    realm: h.realm.clone().filter(|r| !r.is_empty()),
                }
            }
            AuthMode::Token => {
                let t = a.token.clone().unwrap_or_default();
                let read = |p: &Option<String>, key: &str| -> anyhow::Result<Option<String>> {
                    match p {
                        Some(p) if !p.is_empty() => std::fs::read_to_string(p)
                            .map(Some)
                            .map_err(|e| anyhow::anyhow!("auth.token.{key} {p}: {e}")),
                        _ => Ok(None),
                    }
                };
                let bundle = read(&t.rootcertbundle, "rootcertbundle")?;
                let jwks = read(&t.jwks, "jwks")?;
                Mode::Token {
                    verifier: Verifier::new(
                        t.issuer.as_deref().unwrap_or(""),
                        t.service.as_deref().unwrap_or(""),
                        bundle.as_deref(),
                        jwks.as_deref(),
                    )?,
                    realm: t.realm.clone().unwrap_or_default(),
                }
            }
        };
        Ok(Some(Auth { mode, bindings }))
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::OpenShift(_) => "openshift",
            Mode::Htpasswd { .. } => "htpasswd",
            Mode::Token { .. } => "token",
        }
    }

    /// The OpenShift reviewer, in that mode (for cache statistics).
    pub fn openshift(&self) -> Option<&OpenShift> {
        match &self.mode {
            Mode::OpenShift(o) => Some(o),
            _ => None,
        }
    }

    /// The path of the registry's own token endpoint, if the mode has one.
    pub fn token_path(&self) -> Option<&'static str> {
        match self.mode {
            Mode::OpenShift(_) => Some("/openshift/token"),
            Mode::Htpasswd { .. } => Some("/auth/token"),
            Mode::Token { .. } => None,
        }
    }

    /// Whether repository names must be exactly `<project>/<name>` (OpenShift mode).
    pub fn requires_project_names(&self) -> bool {
        matches!(self.mode, Mode::OpenShift(_))
    }

    /// The `WWW-Authenticate` value for a request to `base_url` (`scheme://host`) that needs
    /// `wants`.
    pub fn challenge(&self, base_url: &str, wants: &[Access], insufficient_scope: bool) -> String {
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut c = match &self.mode {
            Mode::OpenShift(o) => {
                let realm = o
                    .realm
                    .clone()
                    .unwrap_or_else(|| format!("{base_url}/openshift/token"));
                format!("Bearer realm=\"{}\"", q(&realm))
            }
            Mode::Htpasswd { issuer, realm, .. } => {
                let realm = realm
                    .clone()
                    .unwrap_or_else(|| format!("{base_url}/auth/token"));
                format!(
                    "Bearer realm=\"{}\",service=\"{}\"",
                    q(&realm),
                    q(issuer.service())
                )
            }
            Mode::Token { verifier, realm } => format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                q(realm),
                q(verifier.service())
            ),
        };
        let scope = scope_string(wants);
        if !scope.is_empty() {
            c.push_str(&format!(",scope=\"{}\"", q(&scope)));
        }
        if insufficient_scope {
            c.push_str(",error=\"insufficient_scope\"");
        }
        c
    }

    /// Decides `wants` for `creds`.
    pub async fn authorize(
        &self,
        creds: &Credentials,
        wants: &[Access],
    ) -> Result<Verdict, AuthError> {
        match &self.mode {
            Mode::OpenShift(o) => self.authorize_openshift(o, creds, wants).await,
            Mode::Htpasswd { users, issuer, .. } => {
                let subject = match creds {
                    Credentials::None => Subject::anonymous(),
                    Credentials::Basic { user, password } => {
                        if users.verify(user, password).await {
                            Subject {
                                name: Some(user.clone()),
                                groups: Vec::new(),
                            }
                        } else {
                            return Err(AuthError::invalid("invalid user name or password"));
                        }
                    }
                    Credentials::Bearer(t) => subject_of(&issuer.verify(t)?),
                };
                Ok(self.by_bindings(subject, None, wants))
            }
            Mode::Token { verifier, .. } => {
                let (subject, claims) = match creds {
                    Credentials::None => (Subject::anonymous(), None),
                    Credentials::Bearer(t) => {
                        let c = verifier.verify(t)?;
                        (subject_of(&c), Some(c))
                    }
                    Credentials::Basic { .. } => {
                        return Err(AuthError::invalid(
                            "this registry takes Bearer tokens of its token service",
                        ))
                    }
                };
                let mut v = self.by_bindings(subject, claims.as_ref(), wants);
                v.scope_limited = true;
                Ok(v)
            }
        }
    }

    /// Standalone decision: bindings, plus the token's `access` claim in `token` mode.
    fn by_bindings(&self, subject: Subject, claims: Option<&Claims>, wants: &[Access]) -> Verdict {
        let b = &self.bindings;
        let claimed = |kind: &str, name: &str, action: &str| {
            claims.is_some_and(|c| c.grants(kind, name, action))
        };
        let allowed = wants
            .iter()
            .map(|w| match w {
                Access::Repository { name, action } => {
                    b.allows(&subject, name, *action)
                        || claimed("repository", name, action.as_str())
                }
                Access::Catalog => true,
                Access::Metrics => false,
                Access::PruneBlobs => b.allows_everywhere(&subject, Action::Delete),
            })
            .collect();
        let catalog = wants.contains(&Access::Catalog).then(|| {
            if b.sees_all(&subject) || claimed("registry", "catalog", "*") {
                CatalogVisibility::All
            } else {
                let b = self.bindings.clone();
                let s = subject.clone();
                let c = claims.cloned();
                CatalogVisibility::Filter(Arc::new(move |name: &str| {
                    b.allows(&s, name, Action::Pull)
                        || c.as_ref()
                            .is_some_and(|c| c.grants("repository", name, "pull"))
                }))
            }
        });
        Verdict {
            subject,
            allowed,
            catalog,
            scope_limited: false,
        }
    }

    async fn authorize_openshift(
        &self,
        o: &OpenShift,
        creds: &Credentials,
        wants: &[Access],
    ) -> Result<Verdict, AuthError> {
        let token = openshift_token(creds);
        let mut subject = Subject::anonymous();
        if let Some(t) = token {
            if wants.is_empty() {
                // `GET /v2/`: only proves the token (podman login checks it here).
                match o.identify(t).await? {
                    Some(name) => subject.name = Some(name),
                    None => return Err(AuthError::invalid("the cluster rejected the token")),
                }
            } else {
                subject.name = Some("(token)".into());
            }
        }
        let reviews = join_all(wants.iter().map(|w| async move {
            let attrs = match w {
                Access::Repository { name, action } => {
                    let (ns, stream) = name.split_once('/').unwrap_or((name, ""));
                    match action {
                        Action::Pull => ResourceAttributes::layers("get", ns, stream),
                        Action::Push => ResourceAttributes::layers("update", ns, stream),
                        Action::Delete => ResourceAttributes::cluster("delete", "images", None),
                    }
                }
                Access::Catalog => ResourceAttributes::cluster("list", "imagestreams", None),
                Access::Metrics => ResourceAttributes::cluster("get", "registry", Some("metrics")),
                Access::PruneBlobs => ResourceAttributes::cluster("delete", "images", None),
            };
            o.review(token, &attrs).await
        }))
        .await;
        let mut allowed = Vec::with_capacity(reviews.len());
        for r in reviews {
            match r? {
                Review::Allowed => allowed.push(true),
                Review::Denied => allowed.push(false),
                Review::TokenRejected => {
                    return Err(AuthError::invalid("the cluster rejected the token"))
                }
            }
        }
        let catalog = wants
            .iter()
            .position(|w| *w == Access::Catalog)
            .filter(|i| allowed[*i])
            .map(|_| CatalogVisibility::All);
        Ok(Verdict {
            subject,
            allowed,
            catalog,
            scope_limited: false,
        })
    }

    /// The token endpoint: validates credentials and answers a token for `scopes`.
    pub async fn token(
        &self,
        creds: &Credentials,
        scopes: &[ScopeRequest],
    ) -> Result<TokenAnswer, AuthError> {
        match &self.mode {
            Mode::OpenShift(o) => {
                let Some(t) = openshift_token(creds) else {
                    return Ok(TokenAnswer {
                        token: ANONYMOUS_TOKEN.into(),
                        expires_in: None,
                        issued_at: None,
                    });
                };
                match o.identify(t).await? {
                    Some(_) => Ok(TokenAnswer {
                        token: t.to_owned(),
                        expires_in: None,
                        issued_at: None,
                    }),
                    None => Err(AuthError::invalid("the cluster rejected the token")),
                }
            }
            Mode::Htpasswd { users, issuer, .. } => {
                let subject = match creds {
                    Credentials::None => Subject::anonymous(),
                    Credentials::Basic { user, password } => {
                        if !users.verify(user, password).await {
                            return Err(AuthError::invalid("invalid user name or password"));
                        }
                        Subject {
                            name: Some(user.clone()),
                            groups: Vec::new(),
                        }
                    }
                    Credentials::Bearer(t) => subject_of(&issuer.verify(t)?),
                };
                let access = requested(scopes)
                    .into_iter()
                    .filter_map(|(kind, name, actions)| {
                        let granted: Vec<String> = actions
                            .into_iter()
                            .filter(|a| match kind.as_str() {
                                "repository" => Action::parse(a)
                                    .is_some_and(|a| self.bindings.allows(&subject, &name, a)),
                                "registry" => name == "catalog" && self.bindings.sees_all(&subject),
                                _ => false,
                            })
                            .collect();
                        (!granted.is_empty()).then_some(AccessEntry {
                            kind,
                            name,
                            actions: granted,
                        })
                    })
                    .collect();
                let m = issuer.issue(subject.name.as_deref(), access)?;
                Ok(TokenAnswer {
                    token: m.token,
                    expires_in: Some(m.expires_in),
                    issued_at: Some(m.issued_at),
                })
            }
            Mode::Token { .. } => Err(AuthError::invalid(
                "this registry has no token endpoint: ask the token service",
            )),
        }
    }

    /// Metrics in `openshift` mode: cluster `get registry/metrics` for the caller's token.
    pub(crate) async fn metrics_review(&self, creds: &Credentials) -> Result<bool, AuthError> {
        match &self.mode {
            Mode::OpenShift(o) => {
                let attrs = ResourceAttributes::cluster("get", "registry", Some("metrics"));
                Ok(o.review(openshift_token(creds), &attrs).await? == Review::Allowed)
            }
            _ => Ok(false),
        }
    }

    /// Whether `name` is acceptable in this mode (`<project>/<name>` in OpenShift mode).
    pub fn name_allowed(&self, name: &str) -> bool {
        !self.requires_project_names()
            || (name.split('/').count() == 2 && !namespace_of(name).is_empty())
    }
}

/// The API token in OpenShift mode: Bearer, or the Basic password; `anonymous` is nobody.
fn openshift_token(creds: &Credentials) -> Option<&str> {
    creds.secret().filter(|t| *t != ANONYMOUS_TOKEN)
}

fn subject_of(c: &Claims) -> Subject {
    if c.sub.is_empty() {
        Subject::anonymous()
    } else {
        Subject {
            name: Some(c.sub.clone()),
            groups: c.groups.clone(),
        }
    }
}
