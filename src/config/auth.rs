//! `auth:` — who may do what. At most one of `openshift`, `htpasswd`, `token` (none = no auth, the
//! default), plus `bindings` for the standalone modes. Keys are lowercase in the file's folded
//! form; env forms are `REGISTRY_AUTH_<SECTION>_<KEY>` (lists such as `bindings` are file-only).

use std::time::Duration;

use serde::Deserialize;

use super::flex;

/// The whole `auth` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub openshift: Option<OpenShiftAuthConfig>,
    pub htpasswd: Option<HtpasswdConfig>,
    pub token: Option<TokenConfig>,
    /// Standalone role bindings (`htpasswd` and `token` modes).
    pub bindings: Vec<BindingConfig>,
}

/// The auth mode in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    OpenShift,
    Htpasswd,
    Token,
}

impl AuthConfig {
    pub fn mode(&self) -> Result<AuthMode, String> {
        let set = [
            self.openshift.is_some(),
            self.htpasswd.is_some(),
            self.token.is_some(),
        ];
        match set {
            [false, false, false] => Ok(AuthMode::None),
            [true, false, false] => Ok(AuthMode::OpenShift),
            [false, true, false] => Ok(AuthMode::Htpasswd),
            [false, false, true] => Ok(AuthMode::Token),
            _ => Err("configure at most one of openshift, htpasswd, token".into()),
        }
    }
}

/// `auth.openshift`: decisions from the cluster's authorization API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenShiftAuthConfig {
    /// API server URL (`https://host:6443` or `http://...`). Default in a pod:
    /// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub server: Option<String>,
    /// CA bundle for the API server (default: the service-account `ca.crt` when it exists).
    #[serde(deserialize_with = "flex::opt_string")]
    pub cafile: Option<String>,
    /// The registry's own service-account token (re-read when it changes; used for anonymous
    /// SubjectAccessReviews). Default: the service-account mount.
    #[serde(deserialize_with = "flex::opt_string")]
    pub tokenfile: Option<String>,
    /// Overrides the challenge realm (default `<scheme>://<host>/openshift/token` of the request).
    #[serde(deserialize_with = "flex::opt_string")]
    pub realm: Option<String>,
    /// How long an answer of the API is reused (0 = never).
    #[serde(deserialize_with = "flex::duration")]
    pub cachettl: Duration,
    /// At most this many cached decisions.
    #[serde(deserialize_with = "flex::i64")]
    pub cachesize: i64,
    /// Deadline of one API call.
    #[serde(deserialize_with = "flex::duration")]
    pub timeout: Duration,
}

impl Default for OpenShiftAuthConfig {
    fn default() -> Self {
        OpenShiftAuthConfig {
            server: None,
            cafile: None,
            tokenfile: None,
            realm: None,
            cachettl: Duration::from_secs(10),
            cachesize: 10_000,
            timeout: Duration::from_secs(5),
        }
    }
}

/// `auth.htpasswd`: bcrypt users and the registry's own token endpoint (`/auth/token`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HtpasswdConfig {
    /// The htpasswd file (bcrypt entries, `htpasswd -B`); reloaded when it changes.
    #[serde(deserialize_with = "flex::opt_string")]
    pub path: Option<String>,
    /// Overrides the challenge realm (default `<scheme>://<host>/auth/token` of the request).
    #[serde(deserialize_with = "flex::opt_string")]
    pub realm: Option<String>,
    /// The `service` (JWT audience) of issued tokens.
    #[serde(deserialize_with = "flex::string")]
    pub service: String,
    /// HS256 key of issued tokens. Default: derived from `http.secret` (so replicas agree), or
    /// random when that is unset too.
    #[serde(deserialize_with = "flex::opt_string")]
    pub tokenkey: Option<String>,
    /// Lifetime of issued tokens.
    #[serde(deserialize_with = "flex::duration")]
    pub tokenttl: Duration,
}

impl Default for HtpasswdConfig {
    fn default() -> Self {
        HtpasswdConfig {
            path: None,
            realm: None,
            service: "image-registry".into(),
            tokenkey: None,
            tokenttl: Duration::from_secs(300),
        }
    }
}

/// `auth.token`: JWTs of an external Docker token-auth service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// The token service's URL (the challenge's `realm`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub realm: Option<String>,
    /// The registry's service name (`aud` of accepted tokens).
    #[serde(deserialize_with = "flex::opt_string")]
    pub service: Option<String>,
    /// Required `iss` of accepted tokens.
    #[serde(deserialize_with = "flex::opt_string")]
    pub issuer: Option<String>,
    /// PEM certificates whose keys may sign tokens.
    #[serde(deserialize_with = "flex::opt_string")]
    pub rootcertbundle: Option<String>,
    /// A JWKS file (`{"keys":[...]}`) whose keys may sign tokens.
    #[serde(deserialize_with = "flex::opt_string")]
    pub jwks: Option<String>,
}

/// One standalone role binding.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BindingConfig {
    /// `registry-viewer` (pull), `registry-editor` (pull, push) or `registry-admin` (pull, push,
    /// delete, whole catalog).
    #[serde(deserialize_with = "flex::string")]
    pub role: String,
    /// Glob patterns (`*`, `?`) on the namespace: the first component of a repository name.
    pub namespaces: Vec<String>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// Also grant the role to everyone, logged in or not (e.g. public pull).
    #[serde(deserialize_with = "flex::bool")]
    pub anonymous: bool,
}

/// Checks what serde cannot: known roles, required keys of the chosen mode.
pub(super) fn validate(a: &AuthConfig) -> Result<(), super::ConfigError> {
    use super::key_err;
    for (i, b) in a.bindings.iter().enumerate() {
        if !["registry-viewer", "registry-editor", "registry-admin"].contains(&b.role.as_str()) {
            return Err(key_err(
                &format!("auth.bindings[{i}].role"),
                format!(
                    "unknown role {:?} (registry-viewer, registry-editor, registry-admin)",
                    b.role
                ),
            ));
        }
        if b.namespaces.is_empty() {
            return Err(key_err(
                &format!("auth.bindings[{i}].namespaces"),
                "list at least one namespace pattern (\"*\" for all)",
            ));
        }
    }
    if let Some(h) = &a.htpasswd {
        if h.path.as_deref().unwrap_or("").is_empty() {
            return Err(key_err("auth.htpasswd.path", "is required"));
        }
        if h.tokenttl.is_zero() {
            return Err(key_err("auth.htpasswd.tokenttl", "must be positive"));
        }
    }
    if let Some(t) = &a.token {
        for (k, v) in [
            ("auth.token.realm", &t.realm),
            ("auth.token.service", &t.service),
            ("auth.token.issuer", &t.issuer),
        ] {
            if v.as_deref().unwrap_or("").is_empty() {
                return Err(key_err(k, "is required"));
            }
        }
        if t.rootcertbundle.is_none() && t.jwks.is_none() {
            return Err(key_err(
                "auth.token.rootcertbundle",
                "set rootcertbundle or jwks: the keys that may sign tokens",
            ));
        }
    }
    if let Some(o) = &a.openshift {
        if o.cachesize < 0 {
            return Err(key_err("auth.openshift.cachesize", "must not be negative"));
        }
        if o.timeout.is_zero() {
            return Err(key_err("auth.openshift.timeout", "must be positive"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;
    use crate::config::AuthMode;

    #[test]
    fn modes_and_env_forms() {
        assert_eq!(load("", &[]).unwrap().auth.mode(), Ok(AuthMode::None));
        let c = load(
            "",
            &[
                ("REGISTRY_AUTH_OPENSHIFT_SERVER", "https://api:6443"),
                ("REGISTRY_AUTH_OPENSHIFT_CACHETTL", "3s"),
                ("REGISTRY_AUTH_OPENSHIFT_TIMEOUT", "750ms"),
            ],
        )
        .unwrap();
        assert_eq!(c.auth.mode(), Ok(AuthMode::OpenShift));
        let o = c.auth.openshift.unwrap();
        assert_eq!(o.server.as_deref(), Some("https://api:6443"));
        assert_eq!(o.cachettl, std::time::Duration::from_secs(3));
        assert_eq!(o.timeout, std::time::Duration::from_millis(750));
        assert_eq!(o.cachesize, 10_000);
        let c = load(
            "auth:\n  htpasswd:\n    path: /etc/htpasswd\n  bindings:\n    - role: registry-viewer\n      namespaces: ['*']\n      anonymous: true\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.auth.mode(), Ok(AuthMode::Htpasswd));
        assert_eq!(c.auth.htpasswd.unwrap().tokenttl.as_secs(), 300);
    }

    #[test]
    fn errors_name_the_key() {
        let e = load(
            "auth:\n  htpasswd:\n    path: /x\n  openshift:\n    server: http://a\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("`auth`"), "{e}");
        let e = load("auth:\n  htpasswd: {}\n", &[]).unwrap_err();
        assert!(e.contains("auth.htpasswd.path"), "{e}");
        let e = load(
            "auth:\n  token:\n    realm: r\n    service: s\n    issuer: i\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("auth.token.rootcertbundle"), "{e}");
        let e = load(
            "auth:\n  htpasswd:\n    path: /x\n  bindings:\n    - role: god\n      namespaces: ['*']\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("auth.bindings[0].role"), "{e}");
        let e = load("auth:\n  openshift:\n    bogus: 1\n", &[]).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
