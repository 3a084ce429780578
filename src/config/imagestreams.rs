//! `openshift.server.addr` and `openshift.imagestreams.enabled`: the image metadata the registry
//! records in the cluster on a manifest push (openshift auth mode only). Leaf module.

use serde::{Deserialize, Deserializer};

use super::{flex, key_err, AuthMode, Config, ConfigError};

/// The service name the OpenShift operator gives the registry.
pub const DEFAULT_SERVER_ADDR: &str = "image-registry.openshift-image-registry.svc:5000";

/// `openshift.server`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenShiftServerConfig {
    /// `host[:port]` the cluster pulls from (`dockerImageReference`); default
    /// [`DEFAULT_SERVER_ADDR`].
    #[serde(deserialize_with = "flex::opt_string")]
    pub addr: Option<String>,
}

/// `openshift.imagestreams`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageStreamsConfig {
    /// `None`: on in openshift mode.
    #[serde(deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
}

fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flex::bool(d).map(Some)
}

impl Config {
    /// The server address for `dockerImageReference`.
    pub fn openshift_server_addr(&self) -> &str {
        self.openshift
            .server
            .addr
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or(DEFAULT_SERVER_ADDR)
    }

    /// Whether manifest pushes create ImageStreamMappings: openshift mode, unless switched off.
    pub fn imagestreams_enabled(&self) -> bool {
        self.auth.mode() == Ok(AuthMode::OpenShift)
            && self.openshift.imagestreams.enabled.unwrap_or(true)
    }

    pub(super) fn validate_imagestreams(&self) -> Result<(), ConfigError> {
        if let Some(a) = &self.openshift.server.addr {
            let a = a.trim();
            if a.contains("://") || a.contains('/') || a.chars().any(char::is_whitespace) {
                return Err(key_err(
                    "openshift.server.addr",
                    format!("{a:?} must be host[:port] (no scheme, no path)"),
                ));
            }
        }
        if self.openshift.imagestreams.enabled == Some(true)
            && self.auth.mode() != Ok(AuthMode::OpenShift)
        {
            return Err(key_err(
                "openshift.imagestreams.enabled",
                "needs auth mode openshift (the cluster API and its service account)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    const OPENSHIFT: &str = "auth:\n  openshift:\n    server: http://127.0.0.1:1\n";

    #[test]
    fn defaults_and_env() {
        let c = load(OPENSHIFT, &[]).unwrap();
        assert_eq!(c.openshift_server_addr(), super::DEFAULT_SERVER_ADDR);
        assert!(c.imagestreams_enabled());
        assert!(!load("", &[]).unwrap().imagestreams_enabled());
        let c = load(
            OPENSHIFT,
            &[
                ("REGISTRY_OPENSHIFT_SERVER_ADDR", "reg.example:5000"),
                ("REGISTRY_OPENSHIFT_IMAGESTREAMS_ENABLED", "false"),
            ],
        )
        .unwrap();
        assert_eq!(c.openshift_server_addr(), "reg.example:5000");
        assert!(!c.imagestreams_enabled());
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load(
            OPENSHIFT,
            &[("REGISTRY_OPENSHIFT_SERVER_ADDR", "https://reg:5000")],
        )
        .unwrap_err();
        assert!(e.contains("openshift.server.addr"), "{e}");
        let e = load("openshift:\n  imagestreams:\n    enabled: true\n", &[]).unwrap_err();
        assert!(e.contains("openshift.imagestreams.enabled"), "{e}");
    }
}
