//! Authentication and authorization, free of HTTP-framework types.
//!
//! The vocabulary: an [`Access`] is one thing a request needs (pull/push/delete on a repository,
//! the catalog, metrics); [`Credentials`] are what the client sent; an [`Auth`] (one per process,
//! built from `auth:` config) turns credentials plus wanted accesses into a [`Verdict`] or an
//! [`AuthError`]. The tower layer in `layers::auth` maps the verdict to HTTP (401 challenge, 403
//! `DENIED`, 503) and inserts a [`RequestAuth`] into request extensions for the handlers that need
//! more than yes/no (catalog filtering, cross-repository mount).
//!
//! Modes (exactly one, `none` when no `auth` section is configured):
//! - `openshift` ([`openshift`]): API tokens checked by SelfSubjectAccessReview, with a bounded TTL
//!   cache, coalescing of identical in-flight reviews and a deadline per API call.
//! - `htpasswd` ([`htpasswd`]): bcrypt users; the registry's own token endpoint mints short-lived
//!   HS256 JWTs ([`token::Issuer`]) that prove identity; [`bindings`] decide access.
//! - `token` ([`token::Verifier`]): Docker token-auth JWTs from an external token service; the
//!   token's `access` claim decides, and [`bindings`] may add to it.
//!
//! Contract: tokens and passwords never reach a log line or an error message (`Credentials` and
//! every type holding a secret print it redacted); cache keys are SHA-256 hashes of the token.
//! Denials are decided here; *how* they are reported is the layer's business.

pub mod bindings;
pub mod cache;
pub mod htpasswd;
pub mod metrics;
pub mod openshift;
pub mod token;

mod service;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

pub use metrics::MetricsAccess;
pub use service::{Auth, TokenAnswer};

/// What a request may do to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// One access a request needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Access {
    /// `repository:<name>:<action>`.
    Repository { name: String, action: Action },
    /// `registry:catalog:*`.
    Catalog,
    /// `/extensions/v2/metrics` (never part of a token scope).
    Metrics,
    /// `DELETE /admin/blobs/<digest>`: deleting blobs from the storage, registry-wide (the
    /// OpenShift pruner's right: cluster `delete images`; elsewhere delete rights on every
    /// namespace).
    PruneBlobs,
}

impl Access {
    pub fn pull(name: &str) -> Access {
        Access::Repository {
            name: name.to_owned(),
            action: Action::Pull,
        }
    }

    pub fn push(name: &str) -> Access {
        Access::Repository {
            name: name.to_owned(),
            action: Action::Push,
        }
    }

    pub fn delete(name: &str) -> Access {
        Access::Repository {
            name: name.to_owned(),
            action: Action::Delete,
        }
    }
}

/// The token-auth `scope` string for a set of accesses: one `repository:<name>:<a,b>` per
/// repository (actions merged, in pull/push/delete order) and `registry:catalog:*`.
pub fn scope_string(wants: &[Access]) -> String {
    let mut repos: Vec<(&str, Vec<Action>)> = Vec::new();
    let mut catalog = false;
    for w in wants {
        match w {
            Access::Repository { name, action } => {
                match repos.iter_mut().find(|(n, _)| *n == name.as_str()) {
                    Some((_, acts)) => {
                        if !acts.contains(action) {
                            acts.push(*action);
                        }
                    }
                    None => repos.push((name, vec![*action])),
                }
            }
            Access::Catalog => catalog = true,
            Access::Metrics | Access::PruneBlobs => {}
        }
    }
    let mut parts: Vec<String> = repos
        .into_iter()
        .map(|(n, mut acts)| {
            acts.sort();
            let a: Vec<&str> = acts.iter().map(|a| a.as_str()).collect();
            format!("repository:{n}:{}", a.join(","))
        })
        .collect();
    if catalog {
        parts.push("registry:catalog:*".into());
    }
    parts.join(" ")
}

/// A requested scope of the token endpoint: `repository:<name>:<actions>` with `*` for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequest {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl ScopeRequest {
    /// Parses the space-separated `scope` values of a token request; malformed entries are dropped.
    pub fn parse_all<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<ScopeRequest> {
        scopes
            .into_iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                // Names may carry a registry port (`host:5000/x`): the actions follow the last colon.
                let (name, actions) = rest.rsplit_once(':')?;
                if kind.is_empty() || name.is_empty() {
                    return None;
                }
                Some(ScopeRequest {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    actions: actions
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect()
    }
}

/// What the client sent in `Authorization`.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user:?}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    /// Parses an `Authorization` header value. Unknown schemes and malformed Basic values are
    /// errors (401), not anonymous access.
    pub fn parse(header: Option<&str>) -> Result<Credentials, AuthError> {
        let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(Credentials::None);
        };
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Credentials::Bearer(rest.to_owned()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::invalid("malformed Basic credentials"))?;
            let s = String::from_utf8(raw)
                .map_err(|_| AuthError::invalid("malformed Basic credentials"))?;
            let (user, password) = s
                .split_once(':')
                .ok_or_else(|| AuthError::invalid("malformed Basic credentials"))?;
            return Ok(Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            });
        }
        Err(AuthError::invalid("unsupported authorization scheme"))
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Credentials::None)
    }

    /// The secret a token-style mode uses: the Bearer token or the Basic password.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Credentials::None => None,
            Credentials::Basic { password, .. } => Some(password),
            Credentials::Bearer(t) => Some(t),
        }
    }
}

/// Why a request could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credentials are wrong, expired or malformed: 401 with a challenge.
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    /// The authority (the cluster API) could not answer in time and nothing was cached: 503.
    #[error("authorization service unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn invalid(msg: &str) -> AuthError {
        AuthError::Unauthenticated(msg.to_owned())
    }
}

/// Who is asking, once credentials were checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// `None` for anonymous.
    pub name: Option<String>,
    pub groups: Vec<String>,
}

impl Subject {
    pub fn anonymous() -> Subject {
        Subject::default()
    }

    pub fn is_anonymous(&self) -> bool {
        self.name.is_none()
    }
}

/// Which catalog entries a caller may see.
#[derive(Clone)]
pub enum CatalogVisibility {
    All,
    /// Only names for which the predicate holds.
    Filter(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl fmt::Debug for CatalogVisibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogVisibility::All => f.write_str("All"),
            CatalogVisibility::Filter(_) => f.write_str("Filter(..)"),
        }
    }
}

impl CatalogVisibility {
    pub fn allows(&self, name: &str) -> bool {
        match self {
            CatalogVisibility::All => true,
            CatalogVisibility::Filter(f) => f(name),
        }
    }
}

/// The answer for one request.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub subject: Subject,
    /// One entry per wanted access, in order.
    pub allowed: Vec<bool>,
    /// Set when the catalog was asked for and is visible (possibly filtered).
    pub catalog: Option<CatalogVisibility>,
    /// JWT modes: a denial may be cured by a token with more scope (answer 401
    /// `insufficient_scope` rather than 403).
    pub scope_limited: bool,
}

impl Verdict {
    pub fn all_allowed(&self) -> bool {
        self.allowed.iter().all(|a| *a)
    }
}

/// What the auth layer leaves in request extensions for handlers.
#[derive(Debug, Clone)]
pub struct RequestAuth {
    pub subject: Subject,
    /// For `GET /v2/_catalog`: what the caller may see.
    pub catalog: Option<CatalogVisibility>,
    /// For `POST .../blobs/uploads/?mount=&from=`: whether a cross-repository mount may be tried:
    /// only with a `from` the caller may pull. A mount without `from` never links with auth on (it
    /// would reveal blobs of repositories the caller cannot read); the handler opens a normal
    /// upload session instead.
    pub may_mount: bool,
}

/// SHA-256 of a secret, for cache keys and comparisons; never logged either.
pub fn hash_secret(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Constant-time equality of two secrets (compares their hashes, so lengths do not leak).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    hash_secret(a).ct_eq(&hash_secret(b)).into()
}

#[cfg(test)]
mod tests;
