//! Who may read `/extensions/v2/metrics`: the one access check of the metrics endpoint.
//!
//! Built from `metrics` config (`metrics.enabled`, `metrics.secret`; the OpenShift form
//! `openshift.metrics` too) and the registry's [`Auth`]:
//! - metrics disabled: the endpoint is not served at all ([`MetricsAccess::from_config`] is `None`);
//! - a secret configured: a scrape presenting it as the Basic password (any user name) or as a
//!   Bearer token is allowed, compared in constant time (an empty secret matches nothing);
//! - in `openshift` mode, also a token for which a SelfSubjectAccessReview allows `get` on
//!   `registry/metrics` (apiGroup `image.openshift.io`, cluster scope: the `prometheus-scraper`
//!   ClusterRole), as the OpenShift registry does;
//! - no secret and no auth mode: open to anyone (the server warns at start).
//!
//! Other auth modes add no path of their own: with `htpasswd` or `token` auth and no secret, no
//! scrape is allowed. Free of HTTP types: it decides on the `Authorization` header value.

use std::fmt;
use std::sync::Arc;

use super::{secrets_equal, AuthError, Credentials};
use crate::config::MetricsConfig;

use super::Auth;

/// The metrics access check of one server. Cheap to clone.
#[derive(Clone, Default)]
pub struct MetricsAccess {
    /// The configured secret, empty included (an empty secret closes the endpoint to secrets).
    secret: Option<String>,
    auth: Option<Arc<Auth>>,
}

impl fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsAccess")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

impl MetricsAccess {
    /// The check a config asks for; `None` when metrics are disabled (the endpoint is not served).
    pub fn from_config(metrics: &MetricsConfig, auth: Option<Arc<Auth>>) -> Option<MetricsAccess> {
        metrics
            .enabled
            .then(|| MetricsAccess::new(metrics.secret.as_ref().map(|s| s.0.clone()), auth))
    }

    /// `secret`: the configured metrics secret; `auth`: the registry's auth, whose `openshift`
    /// mode adds the review path. Neither: open to all.
    pub fn new(secret: Option<String>, auth: Option<Arc<Auth>>) -> MetricsAccess {
        MetricsAccess { secret, auth }
    }

    /// Whether anyone may scrape without credentials.
    pub fn is_open(&self) -> bool {
        self.secret.is_none() && self.auth.is_none()
    }

    /// Decides from the request's `Authorization` header value. `Err(Unavailable)`: the cluster
    /// could not answer the review.
    pub async fn allowed(&self, authorization: Option<&str>) -> Result<bool, AuthError> {
        if self.is_open() {
            return Ok(true);
        }
        let Ok(creds) = Credentials::parse(authorization) else {
            return Ok(false);
        };
        let Some(given) = creds.secret() else {
            return Ok(false);
        };
        if let Some(secret) = self.secret.as_deref().filter(|s| !s.is_empty()) {
            if secrets_equal(given, secret) {
                return Ok(true);
            }
        }
        match &self.auth {
            Some(auth) => auth.metrics_review(&creds).await,
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::config::Config;

    fn basic(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// The access of a server configured with `yaml` (the review path of `openshift` mode runs
    /// against a real cluster API in `tests/`).
    fn access(yaml: &str) -> Option<MetricsAccess> {
        let (config, _) = Config::from_yaml(yaml, &[]).unwrap();
        let auth = Auth::from_config(&config, &[]).unwrap().map(Arc::new);
        MetricsAccess::from_config(config.metrics(), auth)
    }

    #[tokio::test]
    async fn one_table_for_every_way_in() {
        let htpasswd =
            std::env::temp_dir().join(format!("metrics-access-{}.htpasswd", std::process::id()));
        std::fs::write(&htpasswd, "").unwrap();
        let ht = format!(
            "auth: {{htpasswd: {{realm: r, path: {}}}}}\n",
            htpasswd.display()
        );
        let secret = "metrics: {enabled: true, secret: s3cret}\n";
        let open = "metrics: {enabled: true}\n";
        let cases: Vec<(String, Option<String>, bool)> = vec![
            // secret: Basic password with any user, or Bearer, exact and case-insensitive scheme
            (secret.into(), Some(basic("anyuser", "s3cret")), true),
            (secret.into(), Some(basic("", "s3cret")), true),
            (secret.into(), Some("Bearer s3cret".into()), true),
            (secret.into(), Some("bearer s3cret".into()), true),
            (secret.into(), Some(basic("s3cret", "x")), false),
            (secret.into(), Some("Bearer s3cre".into()), false),
            (secret.into(), Some("Bearer s3cret2".into()), false),
            (secret.into(), Some("Basic !!!".into()), false),
            (secret.into(), Some("Digest s3cret".into()), false),
            (secret.into(), None, false),
            // an empty secret in config is no secret (open, with the start-up warning)
            ("metrics: {enabled: true, secret: ''}\n".into(), None, true),
            // no secret, no auth: open
            (open.into(), None, true),
            (open.into(), Some("Bearer whatever".into()), true),
            // the OpenShift operator's form
            (
                "openshift: {metrics: {enabled: true, secret: os}}\n".into(),
                Some("Bearer os".into()),
                true,
            ),
            // htpasswd mode without a secret: no way in; with one, only the secret
            (format!("{ht}{open}"), Some(basic("anyuser", "x")), false),
            (format!("{ht}{open}"), None, false),
            (
                format!("{ht}{secret}"),
                Some(basic("anyuser", "s3cret")),
                true,
            ),
            (
                format!("{ht}{secret}"),
                Some(basic("anyuser", "nope")),
                false,
            ),
        ];
        for (yaml, header, want) in cases {
            let a = access(&yaml).expect("metrics enabled");
            assert_eq!(
                a.allowed(header.as_deref()).await,
                Ok(want),
                "config {yaml:?}, Authorization {header:?}"
            );
        }
        // Built by hand, an empty secret matches nothing, not even an empty token.
        let empty = MetricsAccess::new(Some(String::new()), None);
        assert_eq!(empty.allowed(Some("Bearer ")).await, Ok(false));
        assert_eq!(empty.allowed(Some(&basic("u", ""))).await, Ok(false));
        assert!(access("metrics: {enabled: false, secret: s}\n").is_none());
        assert!(access("{}\n").is_none(), "metrics are off by default");
        let shown = format!("{:?}", access(secret).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
        let _ = std::fs::remove_file(htpasswd);
    }
}
