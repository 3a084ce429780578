//! Typed configuration: a YAML file whose sections follow distribution's and the OpenShift
//! operator's names, every key overridable by `REGISTRY_<PATH>` environment variables.
//!
//! Keys match case-insensitively: the file's keys are folded to lowercase before they are read, so
//! `storage.s3.regionEndpoint`, `regionendpoint` and `REGISTRY_STORAGE_S3_REGIONENDPOINT` are one key.
//! Unknown keys and bad values in the file fail with an error naming the key; an environment variable
//! that names no key is ignored with a warning (as distribution does: Kubernetes injects `REGISTRY_*`
//! service variables of its own), but a bad value in a known one fails.
//!
//! A leaf: nothing here depends on other modules of the crate.

pub mod auth;
mod env;
pub mod flex;
pub mod imagestreams;
mod limits;
pub mod notifications;
pub mod ops;
pub mod retention;
mod storage_cloud;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use auth::{AuthConfig, AuthMode};
pub use env::EnvOverride;
pub use limits::ConnectionLimits;
pub use ops::{
    HealthConfig, MetricsConfig, ProxyConfig, RouteConfig, Secret, TlsConfig, TrustConfig,
};
pub use storage_cloud::{AzureConfig, GcsConfig, S3Config};
pub use upstream::UpstreamConfig;

/// Default data folder when no storage is configured (the "emptyDir" default).
pub const DEFAULT_ROOT: &str = "./registry-data";
/// Where the operator mounts the emptyDir or PVC volume.
pub const VOLUME_ROOT: &str = "/registry";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid YAML: {0}")]
    Yaml(String),
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Accepted for distribution compatibility (`version: 0.1`); unused.
    #[serde(deserialize_with = "flex::opt_string")]
    pub version: Option<String>,
    pub log: LogConfig,
    /// The operator's `logLevel` (`Normal`, `Debug`, `Trace`, `TraceAll`); overrides `log.level`.
    #[serde(deserialize_with = "flex::opt_string")]
    pub loglevel: Option<String>,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    /// Refuse every write (`readOnly`).
    #[serde(deserialize_with = "flex::bool")]
    pub readonly: bool,
    /// Request limits (`requests`).
    pub requests: RequestsConfig,
    /// The OpenShift section: `REGISTRY_OPENSHIFT_REQUESTS_*` variables land here.
    pub openshift: OpenShiftConfig,
    /// Prometheus metrics (`metrics: {enabled, secret}`).
    pub metrics: MetricsConfig,
    /// Background health checks (`health.storagedriver`).
    pub health: HealthConfig,
    /// Extra hostnames served with their own certificates, chosen by SNI.
    pub routes: Vec<RouteConfig>,
    /// Outbound proxy (falls back to `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`).
    pub proxy: ProxyConfig,
    /// CAs trusted by outbound clients, per registry host or for all.
    pub additionaltrustedca: TrustConfig,
    /// Authentication and authorization (`auth`); none by default.
    pub auth: AuthConfig,
    /// Webhook notifications (`notifications`), distribution's section.
    pub notifications: notifications::NotificationsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    #[serde(deserialize_with = "flex::string")]
    pub level: String,
    /// `text` or `json` (distribution calls it `formatter`).
    #[serde(alias = "formatter")]
    pub format: LogFormat,
    /// Fields added to every line (distribution's `log.fields`, e.g. `service: registry`; names
    /// are read lower-case, like every key).
    #[serde(deserialize_with = "flex::string_map")]
    pub fields: BTreeMap<String, String>,
    /// `log.accesslog.disabled: true` turns the access log's lines off.
    pub accesslog: AccessLogConfig,
    /// distribution's mail hooks: not supported, so a config that sets any is refused (an
    /// operator counting on those mails must not get a silent server).
    pub hooks: Vec<serde_yaml::Value>,
}

/// `log.accesslog`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    #[serde(deserialize_with = "flex::bool")]
    pub disabled: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            fields: BTreeMap::new(),
            accesslog: AccessLogConfig::default(),
            hooks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
    /// distribution's name for the text format.
    Logstash,
}

/// `storage`: exactly one driver section plus the shared switches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub filesystem: Option<FilesystemConfig>,
    /// The operator's emptyDir: a filesystem folder (default `./registry-data` here).
    pub emptydir: Option<FilesystemConfig>,
    /// The operator's PVC: the claim is mounted at `/registry` unless `rootDirectory` says otherwise.
    pub pvc: Option<PvcConfig>,
    pub inmemory: Option<EmptySection>,
    pub s3: Option<S3Config>,
    pub gcs: Option<GcsConfig>,
    pub azure: Option<AzureConfig>,
    pub delete: DeleteConfig,
    pub maintenance: MaintenanceConfig,
    pub cache: CacheConfig,
    pub redirect: RedirectConfig,
}

/// `storage.cache`: distribution's blob descriptor cache switches (accepted; sizes and links are
/// cached in-process here) and how long tag and link answers are trusted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// distribution's `inmemory` or `redis`: accepted, no effect (there is no Redis client here).
    #[serde(deserialize_with = "flex::opt_string")]
    pub blobdescriptor: Option<String>,
    /// distribution's bound of the in-memory descriptor cache: accepted, no effect.
    #[serde(deserialize_with = "flex::opt_i64")]
    pub blobdescriptorsize: Option<i64>,
    /// `linkTTL`: how long a tag or link read on a read path is trusted. This process's own
    /// writes are seen at once; another replica's tag moves and deletes within this time.
    /// `0` reads storage on every request.
    #[serde(deserialize_with = "flex::duration")]
    pub linkttl: std::time::Duration,
}

/// Default of `storage.cache.linkTTL`.
pub const DEFAULT_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            blobdescriptor: None,
            blobdescriptorsize: None,
            linkttl: DEFAULT_LINK_TTL,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    #[serde(deserialize_with = "flex::opt_string")]
    pub rootdirectory: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PvcConfig {
    #[serde(deserialize_with = "flex::opt_string")]
    pub claim: Option<String>,
    #[serde(deserialize_with = "flex::opt_string")]
    pub rootdirectory: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptySection {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeleteConfig {
    #[serde(deserialize_with = "flex::bool")]
    pub enabled: bool,
}

impl Default for DeleteConfig {
    fn default() -> Self {
        // OpenShift configures deletes on.
        DeleteConfig { enabled: true }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    pub readonly: EnabledSwitch,
    pub uploadpurging: UploadPurgingConfig,
    pub gc: GcConfig,
    pub retention: retention::RetentionConfig,
}

/// `storage.maintenance.uploadpurging`: distribution's keys and defaults. Upload folders older
/// than `age` are deleted every `interval` by each server (not in read-only mode).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadPurgingConfig {
    #[serde(deserialize_with = "flex::bool")]
    pub enabled: bool,
    #[serde(deserialize_with = "flex::duration")]
    pub age: std::time::Duration,
    #[serde(deserialize_with = "flex::duration")]
    pub interval: std::time::Duration,
    /// Log what would be purged; delete nothing.
    #[serde(deserialize_with = "flex::bool")]
    pub dryrun: bool,
}

impl Default for UploadPurgingConfig {
    fn default() -> Self {
        UploadPurgingConfig {
            enabled: true,
            age: std::time::Duration::from_secs(168 * 3600),
            interval: std::time::Duration::from_secs(24 * 3600),
            dryrun: false,
        }
    }
}

/// `storage.maintenance.gc`: garbage collection (`image-registry gc`, and in the background of
/// `serve` when `enabled`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// `delay`: nothing younger is collected (the default of `gc --delay`). Servers refresh the
    /// age of an old blob a push finds once it is older than a quarter of this, so every server
    /// and `gc` of one storage should agree on it.
    #[serde(deserialize_with = "flex::duration")]
    pub delay: std::time::Duration,
    /// Run the collector in the background of `serve` (every replica may: runs take a lease).
    #[serde(deserialize_with = "flex::bool")]
    pub enabled: bool,
    /// Time between the end of one successful run (by any replica) and the next.
    #[serde(deserialize_with = "flex::duration")]
    pub interval: std::time::Duration,
    /// `deleteUntagged`: scheduled runs also delete manifests no tag reaches.
    #[serde(deserialize_with = "flex::bool")]
    pub deleteuntagged: bool,
    /// `dryRun`: scheduled runs log what they would delete and delete nothing.
    #[serde(deserialize_with = "flex::bool")]
    pub dryrun: bool,
}

/// Default of `storage.maintenance.gc.delay`.
pub const DEFAULT_GC_DELAY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            delay: DEFAULT_GC_DELAY,
            enabled: false,
            interval: std::time::Duration::from_secs(24 * 3600),
            deleteuntagged: false,
            dryrun: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnabledSwitch {
    #[serde(deserialize_with = "flex::bool")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedirectConfig {
    #[serde(deserialize_with = "flex::bool")]
    pub disable: bool,
}

/// The storage backend chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageKind {
    Filesystem { root: PathBuf },
    InMemory,
    S3(Box<S3Config>),
    Gcs(Box<GcsConfig>),
    Azure(Box<AzureConfig>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address (`:5000` or `host:port`).
    #[serde(deserialize_with = "flex::string")]
    pub addr: String,
    /// Signs upload state; share it between replicas.
    #[serde(deserialize_with = "flex::opt_string")]
    pub secret: Option<String>,
    /// Externally visible base URL, if different from the request's host.
    #[serde(deserialize_with = "flex::opt_string")]
    pub host: Option<String>,
    /// Accepted for distribution compatibility; `Location` headers are always relative here.
    #[serde(deserialize_with = "flex::bool")]
    pub relativeurls: bool,
    /// Time in-flight requests get to finish on shutdown.
    #[serde(deserialize_with = "flex::duration")]
    pub draintimeout: Duration,
    /// Serve HTTPS (`http.tls`).
    pub tls: Option<TlsConfig>,
    /// Connection limits (see [`ConnectionLimits`] and README "Limits and failure modes").
    /// How long a client may take to send a request head (`0`: no limit).
    #[serde(deserialize_with = "flex::duration")]
    pub headerreadtimeout: Duration,
    /// How long an idle keep-alive connection stays open (`0`: no limit).
    #[serde(deserialize_with = "flex::duration")]
    pub idletimeout: Duration,
    /// How long a request body may send nothing before it is cut (`0`: no limit).
    #[serde(deserialize_with = "flex::duration")]
    pub bodytimeout: Duration,
    /// Most connections open at once (`0`: the open-file limit minus a reserve).
    #[serde(deserialize_with = "flex::i64")]
    pub maxconnections: i64,
    /// Most request header bytes answered (more: 431).
    #[serde(deserialize_with = "flex::i64")]
    pub maxheaderbytes: i64,
    /// HTTP/2 settings.
    pub http2: Http2Config,
    /// Headers added to every response that does not set them itself (distribution's
    /// `http.headers`, e.g. `X-Content-Type-Options: [nosniff]`).
    #[serde(deserialize_with = "flex::header_map")]
    pub headers: BTreeMap<String, Vec<String>>,
}

/// `http.http2`: per-connection HTTP/2 limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// Most streams (requests) open at once on one connection.
    #[serde(deserialize_with = "flex::i64")]
    pub maxconcurrentstreams: i64,
    /// Most bytes of one request's header list (HPACK-decoded).
    #[serde(deserialize_with = "flex::i64")]
    pub maxheaderlistsize: i64,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            maxconcurrentstreams: 100,
            maxheaderlistsize: 64 << 10,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: "0.0.0.0:5000".into(),
            secret: None,
            host: None,
            relativeurls: true,
            draintimeout: Duration::from_secs(29),
            tls: None,
            headerreadtimeout: Duration::from_secs(30),
            idletimeout: Duration::from_secs(120),
            bodytimeout: Duration::from_secs(60),
            maxconnections: 0,
            maxheaderbytes: 64 << 10,
            http2: Http2Config::default(),
            headers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsConfig {
    pub read: LimitConfig,
    pub write: LimitConfig,
}

/// One limiter. `maxRunning <= 0` turns it off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    #[serde(deserialize_with = "flex::i64")]
    pub maxrunning: i64,
    #[serde(deserialize_with = "flex::i64")]
    pub maxinqueue: i64,
    /// 0 = wait forever.
    #[serde(deserialize_with = "flex::duration")]
    pub maxwaitinqueue: Duration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenShiftConfig {
    pub requests: Option<RequestsConfig>,
    /// The Go registry's `openshift.metrics` (`REGISTRY_OPENSHIFT_METRICS_*`); wins over `metrics`.
    pub metrics: Option<MetricsConfig>,
    /// Accepted: the Go registry's config version field.
    #[serde(deserialize_with = "flex::opt_string")]
    pub version: Option<String>,
    /// `openshift.server.addr` (`REGISTRY_OPENSHIFT_SERVER_ADDR`): how the cluster reaches us.
    pub server: imagestreams::OpenShiftServerConfig,
    /// `openshift.imagestreams.enabled`: ImageStreamMappings on push (openshift mode).
    pub imagestreams: imagestreams::ImageStreamsConfig,
}

impl Config {
    /// Loads the file (if any), applies `REGISTRY_*` overrides from `env`, validates.
    pub fn load(
        path: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Config::from_yaml(&text, env)
    }

    /// The config fuzz target's input form: YAML up to a line `---env`, then `KEY=value` lines
    /// taken as `REGISTRY_KEY` variables. Shared by `fuzz/fuzz_targets/config.rs` and the
    /// regression test of its crashes, so both read an input the same way.
    #[doc(hidden)]
    pub fn from_fuzz_input(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let (yaml, env) = text.split_once("\n---env\n").unwrap_or((text, ""));
        let env: Vec<(String, String)> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (format!("REGISTRY_{k}"), v.to_owned()))
            .collect();
        Config::from_yaml(yaml, &env)
    }

    /// Parses YAML text plus overrides. Returns the config and warnings to log.
    pub fn from_yaml(
        text: &str,
        env: &[(String, String)],
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut value: serde_yaml::Value = if text.trim().is_empty() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?
        };
        if value.is_null() {
            value = serde_yaml::Value::Mapping(Default::default());
        }
        env::lowercase_keys(&mut value);
        let overrides = EnvOverride::collect(env);
        let (config, warnings) = env::deserialize_with_overrides(value, overrides)?;
        config.validate()?;
        Ok((config, warnings))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.storage_kind()?;
        let level = self.log.level.to_ascii_lowercase();
        if !["error", "warn", "warning", "info", "debug", "trace"].contains(&level.as_str()) {
            return Err(key_err(
                "log.level",
                format!(
                    "unknown level {:?} (error, warn, info, debug, trace)",
                    self.log.level
                ),
            ));
        }
        if !self.log.hooks.is_empty() {
            return Err(key_err(
                "log.hooks",
                "distribution's mail hooks are not supported (alert from the logs or metrics instead)",
            ));
        }
        for (k, v) in &self.http.headers {
            if !flex::valid_header_name(k) {
                return Err(key_err(
                    &format!("http.headers.{k}"),
                    "not a valid header name",
                ));
            }
            // Visible ASCII, spaces and tabs: what every HTTP stack sends as it is.
            let plain = |v: &&String| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
            if let Some(bad) = v.iter().find(|v| !plain(v)) {
                return Err(key_err(
                    &format!("http.headers.{k}"),
                    format!("{bad:?} is not a valid header value"),
                ));
            }
        }
        if let Some(l) = &self.loglevel {
            if !["normal", "debug", "trace", "traceall"].contains(&l.to_ascii_lowercase().as_str())
            {
                return Err(key_err(
                    "logLevel",
                    format!("unknown level {l:?} (Normal, Debug, Trace, TraceAll)"),
                ));
            }
        }
        self.auth.mode().map_err(|m| key_err("auth", m))?;
        auth::validate(&self.auth)?;
        let up = &self.storage.maintenance.uploadpurging;
        if up.enabled && up.interval.is_zero() {
            return Err(key_err(
                "storage.maintenance.uploadpurging.interval",
                "must be longer than 0 while purging is enabled",
            ));
        }
        let gc = &self.storage.maintenance.gc;
        if gc.enabled && gc.interval.is_zero() {
            return Err(key_err(
                "storage.maintenance.gc.interval",
                "must be longer than 0 while scheduled collection is enabled",
            ));
        }
        self.storage.maintenance.retention.compile()?;
        if self.http.secret.as_deref() == Some("") {
            return Err(key_err("http.secret", "must not be empty when set"));
        }
        self.validate_ops()?;
        self.proxy.validate_upstreams()?;
        self.validate_imagestreams()?;
        self.notifications.validate()
    }

    /// The listen address; Go-style `:5000` means all interfaces.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let a = self.http.addr.trim();
        let a = if a.starts_with(':') {
            format!("0.0.0.0{a}")
        } else {
            a.to_owned()
        };
        a.parse()
            .map_err(|_| key_err("http.addr", format!("not a host:port address: {a:?}")))
    }

    /// Whether no storage section is configured (the embedded default: `./registry-data`).
    pub fn storage_is_embedded_default(&self) -> bool {
        let s = &self.storage;
        s.filesystem.is_none()
            && s.emptydir.is_none()
            && s.pvc.is_none()
            && s.inmemory.is_none()
            && s.s3.is_none()
            && s.gcs.is_none()
            && s.azure.is_none()
    }

    /// The storage backend; filesystem in `./registry-data` when none is configured.
    pub fn storage_kind(&self) -> Result<StorageKind, ConfigError> {
        let s = &self.storage;
        let count = [
            s.filesystem.is_some(),
            s.emptydir.is_some(),
            s.pvc.is_some(),
            s.inmemory.is_some(),
            s.s3.is_some(),
            s.gcs.is_some(),
            s.azure.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if count > 1 {
            return Err(key_err(
                "storage",
                "configure exactly one of filesystem, emptyDir, pvc, inmemory, s3, gcs, azure",
            ));
        }
        let root =
            |r: &Option<String>, default: &str, key: &str| -> Result<StorageKind, ConfigError> {
                let r = r.clone().unwrap_or_else(|| default.to_owned());
                if r.trim().is_empty() {
                    return Err(key_err(key, "must not be empty"));
                }
                Ok(StorageKind::Filesystem { root: r.into() })
            };
        if let Some(f) = &s.filesystem {
            return root(
                &f.rootdirectory,
                "/var/lib/registry",
                "storage.filesystem.rootdirectory",
            );
        }
        if let Some(f) = &s.emptydir {
            return root(
                &f.rootdirectory,
                DEFAULT_ROOT,
                "storage.emptyDir.rootdirectory",
            );
        }
        if let Some(p) = &s.pvc {
            return root(&p.rootdirectory, VOLUME_ROOT, "storage.pvc.rootdirectory");
        }
        if s.inmemory.is_some() {
            return Ok(StorageKind::InMemory);
        }
        if let Some(c) = &s.s3 {
            return Ok(StorageKind::S3(Box::new(c.clone())));
        }
        if let Some(c) = &s.gcs {
            return Ok(StorageKind::Gcs(Box::new(c.clone())));
        }
        if let Some(c) = &s.azure {
            c.endpoint_suffix()
                .map_err(|m| key_err("storage.azure.cloudname", m))?;
            return Ok(StorageKind::Azure(Box::new(c.clone())));
        }
        Ok(StorageKind::Filesystem {
            root: DEFAULT_ROOT.into(),
        })
    }

    /// Whether the registry refuses writes (`readOnly` or `storage.maintenance.readonly.enabled`).
    pub fn read_only(&self) -> bool {
        self.readonly || self.storage.maintenance.readonly.enabled
    }

    /// Metrics settings; the OpenShift section's (`REGISTRY_OPENSHIFT_METRICS_*`) wins.
    pub fn metrics(&self) -> &MetricsConfig {
        self.openshift.metrics.as_ref().unwrap_or(&self.metrics)
    }

    fn validate_ops(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.http.tls {
            tls.min_tls()
                .map_err(|m| key_err("http.tls.minimumtls", m))?;
            if tls.certificate.is_some() != tls.key.is_some() {
                return Err(key_err(
                    "http.tls",
                    "set both certificate and key (or neither)",
                ));
            }
            if tls.certificate.is_none() && self.routes.is_empty() {
                return Err(key_err(
                    "http.tls",
                    "needs certificate and key, or at least one route with a certificate",
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.hostname.trim().is_empty() {
                return Err(key_err(&format!("routes[{i}].hostname"), "must be set"));
            }
            r.files().map_err(|m| key_err(&format!("routes[{i}]"), m))?;
        }
        self.validate_http_limits()?;
        if self.health.storagedriver.enabled && self.health.storagedriver.interval.is_zero() {
            return Err(key_err(
                "health.storagedriver.interval",
                "must be greater than 0",
            ));
        }
        Ok(())
    }

    fn validate_http_limits(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        if h.maxconnections < 0 {
            return Err(key_err(
                "http.maxconnections",
                "must be 0 (automatic) or more",
            ));
        }
        if !(4096..=(1 << 20)).contains(&h.maxheaderbytes) {
            return Err(key_err(
                "http.maxheaderbytes",
                "must be between 4096 and 1048576",
            ));
        }
        if !(1..=(1 << 16)).contains(&h.http2.maxconcurrentstreams) {
            return Err(key_err(
                "http.http2.maxconcurrentstreams",
                "must be between 1 and 65536",
            ));
        }
        if !(4096..=(1 << 20)).contains(&h.http2.maxheaderlistsize) {
            return Err(key_err(
                "http.http2.maxheaderlistsize",
                "must be between 4096 and 1048576",
            ));
        }
        Ok(())
    }

    /// The connection limits `http.*` asks for (`maxconnections = 0` is `None`: the server
    /// derives it from the open-file limit).
    pub fn connection_limits(&self) -> ConnectionLimits {
        let h = &self.http;
        let some = |d: Duration| (!d.is_zero()).then_some(d);
        ConnectionLimits {
            header_read_timeout: some(h.headerreadtimeout),
            idle_timeout: some(h.idletimeout),
            body_timeout: some(h.bodytimeout),
            max_connections: usize::try_from(h.maxconnections).ok().filter(|n| *n > 0),
            max_header_bytes: usize::try_from(h.maxheaderbytes).unwrap_or(64 << 10),
            h2_max_concurrent_streams: u32::try_from(h.http2.maxconcurrentstreams).unwrap_or(100),
            h2_max_header_list_size: u32::try_from(h.http2.maxheaderlistsize).unwrap_or(64 << 10),
        }
    }

    /// Whether the server speaks TLS (`http.tls` set, or routes with certificates).
    pub fn tls_enabled(&self) -> bool {
        self.http.tls.is_some() || !self.routes.is_empty()
    }

    /// Request limits; the OpenShift section's (from `REGISTRY_OPENSHIFT_REQUESTS_*`) wins.
    pub fn request_limits(&self) -> &RequestsConfig {
        self.openshift.requests.as_ref().unwrap_or(&self.requests)
    }

    /// The tracing filter directive for the configured level (and the access log off when
    /// `log.accesslog.disabled`).
    pub fn log_filter(&self) -> String {
        let level = self.level_filter();
        if self.log.accesslog.disabled {
            format!("{level},image_registry::access=off")
        } else {
            level
        }
    }

    fn level_filter(&self) -> String {
        match self
            .loglevel
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("normal") => "info".into(),
            Some("debug") => "image_registry=debug,info".into(),
            Some("trace") => "image_registry=trace,info".into(),
            Some("traceall") => "trace".into(),
            _ => {
                let l = self.log.level.to_ascii_lowercase();
                let l = if l == "warning" { "warn".into() } else { l };
                format!(
                    "image_registry={l},{}",
                    if l == "trace" || l == "debug" {
                        "info"
                    } else {
                        &l
                    }
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
