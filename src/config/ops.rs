//! Config sections for operating the registry: metrics, health checks, TLS and routes, the outbound
//! proxy and additional trusted CAs. Same conventions as the rest of `config`: lowercase keys with
//! no `_`, every key overridable by `REGISTRY_<PATH>` (strings from the environment are read by the
//! `flex` deserializers), unknown keys rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::flex;

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(flex::opt_string(d)?.filter(|s| !s.is_empty()).map(Secret))
}

/// `metrics` (and the OpenShift registry's `openshift.metrics`): Prometheus exposition at
/// `/extensions/v2/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve the metrics endpoint (`REGISTRY_METRICS_ENABLED`, default false).
    #[serde(deserialize_with = "flex::bool")]
    pub enabled: bool,
    /// Scrapers present it as a Basic password (any user) or a Bearer token
    /// (`REGISTRY_METRICS_SECRET`). Unset: the endpoint is open, with a warning at start.
    #[serde(deserialize_with = "opt_secret")]
    pub secret: Option<Secret>,
}

/// `health`: background checks that drive readiness.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub storagedriver: StorageHealthConfig,
}

/// `health.storagedriver`, as distribution names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageHealthConfig {
    /// Check the storage backend at all (default true).
    #[serde(deserialize_with = "flex::bool")]
    pub enabled: bool,
    /// Time between checks (default 10s).
    #[serde(deserialize_with = "flex::duration")]
    pub interval: Duration,
    /// Consecutive failures before the registry reports unready (default 3; 0 counts as 1).
    #[serde(deserialize_with = "flex::i64")]
    pub threshold: i64,
}

impl Default for StorageHealthConfig {
    fn default() -> Self {
        StorageHealthConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            threshold: 3,
        }
    }
}

/// `http.tls`: serve HTTPS with rustls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (`REGISTRY_HTTP_TLS_CERTIFICATE`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub certificate: Option<String>,
    /// PEM private key (`REGISTRY_HTTP_TLS_KEY`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub key: Option<String>,
    /// `tls1.2` (default) or `tls1.3` (`REGISTRY_HTTP_TLS_MINIMUMTLS`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub minimumtls: Option<String>,
    /// CA bundles (PEM) that client certificates must chain to; when set, a client certificate is
    /// required (`REGISTRY_HTTP_TLS_CLIENTCAS`, comma-separated in the environment).
    #[serde(deserialize_with = "string_list")]
    pub clientcas: Vec<String>,
    /// How often certificate and key files are checked for changes (default 10s).
    #[serde(deserialize_with = "flex::duration")]
    pub reloadinterval: Duration,
}

impl TlsConfig {
    /// The reload interval, with the default applied.
    pub fn reload_interval(&self) -> Duration {
        if self.reloadinterval.is_zero() {
            Duration::from_secs(10)
        } else {
            self.reloadinterval
        }
    }
}

/// One entry of `routes`: an extra hostname with its own certificate, chosen by SNI (the operator's
/// custom routes with `secretName`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// A name for logs.
    #[serde(deserialize_with = "flex::opt_string")]
    pub name: Option<String>,
    /// The hostname clients use (`*.example.com` matches one label).
    #[serde(deserialize_with = "flex::string")]
    pub hostname: String,
    /// A Kubernetes TLS secret mounted at `<secretsdir>/<secretName>/tls.{crt,key}`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub secretname: Option<String>,
    /// Explicit certificate and key files (win over `secretName`).
    #[serde(deserialize_with = "flex::opt_string")]
    pub certificate: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub key: Option<String>,
}

/// Where route secrets are mounted unless `http.tls` says otherwise.
pub const ROUTE_SECRETS_DIR: &str = "/etc/registry/routes";

impl RouteConfig {
    /// Certificate and key paths of this route.
    pub fn files(&self) -> Result<(PathBuf, PathBuf), String> {
        match (&self.certificate, &self.key, &self.secretname) {
            (Some(c), Some(k), _) => Ok((c.into(), k.into())),
            (None, None, Some(s)) if !s.is_empty() => {
                let dir = PathBuf::from(ROUTE_SECRETS_DIR).join(s);
                Ok((dir.join("tls.crt"), dir.join("tls.key")))
            }
            _ => Err(format!(
                "route {:?} needs certificate and key, or secretName",
                self.hostname
            )),
        }
    }
}

/// `proxy`: outbound HTTP(S) proxy. Unset fields fall back to `HTTP_PROXY`, `HTTPS_PROXY` and
/// `NO_PROXY` (either case).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    #[serde(deserialize_with = "flex::opt_string")]
    pub http: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub https: Option<String>,
    /// Comma-separated hosts, domains (`.example.com` or `example.com`), IPs, CIDRs or `*`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub noproxy: Option<String>,
    /// distribution's pull-through cache: the whole registry mirrors this upstream.
    #[serde(deserialize_with = "flex::opt_string")]
    pub remoteurl: Option<String>,
    /// Credentials for `remoteurl`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub username: Option<String>,
    #[serde(deserialize_with = "opt_secret")]
    pub password: Option<Secret>,
    /// Tag revalidation interval for `remoteurl`.
    #[serde(deserialize_with = "super::upstream::opt_duration")]
    pub ttl: Option<std::time::Duration>,
    /// Ours: several upstreams, each serving a name prefix (see `config/upstream.rs`).
    #[serde(deserialize_with = "super::upstream::upstream_list")]
    pub upstreams: Vec<super::upstream::UpstreamConfig>,
}

/// `additionaltrustedca`: CAs trusted by outbound clients on top of the system's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// A folder: files named `<host>` or `<host>..<port>` hold PEM CAs for that registry (the
    /// operator's ConfigMap mounted as files); files ending in `.pem` or `.crt` are trusted for
    /// every host.
    #[serde(deserialize_with = "flex::opt_string")]
    pub directory: Option<String>,
    /// The same map inline: `registry.example.com..5000: "-----BEGIN CERTIFICATE-----..."`.
    pub certificates: BTreeMap<String, String>,
}

/// A list given as a YAML sequence or a comma-separated string (the environment's form).
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(
        match L::deserialize(d).map_err(|_| {
            D::Error::custom("expected a list of strings or a comma-separated string")
        })? {
            L::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            L::Many(v) => v,
            L::Null(()) => Vec::new(),
        },
    )
}

/// The minimum TLS version configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinTls {
    Tls12,
    Tls13,
}

impl TlsConfig {
    pub fn min_tls(&self) -> Result<MinTls, String> {
        match self
            .minimumtls
            .as_deref()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("tls1.2") | Some("tls12") | Some("1.2") => Ok(MinTls::Tls12),
            Some("tls1.3") | Some("tls13") | Some("1.3") => Ok(MinTls::Tls13),
            Some(other) => Err(format!(
                "unsupported minimum TLS version {other:?} (tls1.2 or tls1.3)"
            )),
        }
    }
}
