//! `notifications`: distribution's webhook endpoints (`endpoints[]` with its field names), the
//! event options, the wire media type and the local spool that makes delivery durable.
//!
//! Environment forms: `REGISTRY_NOTIFICATIONS_ENDPOINTS_<i>_<FIELD>` sets a field of endpoint `i`
//! (counting from 0; the next free index adds one), and `REGISTRY_NOTIFICATIONS_ENDPOINTS` may hold
//! the whole list as YAML or JSON, as distribution reads it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::flex::StrOrList;
use super::{flex, key_err, ConfigError};

/// Defaults of an endpoint, as distribution's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_THRESHOLD: i64 = 10;
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Default bound of the spool.
pub const DEFAULT_SPOOL_MAXSIZE: u64 = 256 << 20;
/// The actions an event can have (what `ignore.actions` may name).
pub const ACTIONS: &[&str] = &["push", "pull", "mount", "delete"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    #[serde(deserialize_with = "endpoints")]
    pub endpoints: Vec<EndpointConfig>,
    pub events: EventsConfig,
    /// `mediaType`: `v1` (default, `application/vnd.docker.distribution.events.v1+json`, what
    /// distribution 2.x and the OpenShift registry send) or `v2` (distribution 3's).
    #[serde(deserialize_with = "flex::opt_string")]
    pub mediatype: Option<String>,
    pub spool: SpoolConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Put a manifest's references (config, layers, children) into its events' `target`.
    #[serde(deserialize_with = "flex::bool")]
    pub includereferences: bool,
}

/// One webhook, with distribution's fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointConfig {
    #[serde(deserialize_with = "flex::string")]
    pub name: String,
    #[serde(deserialize_with = "flex::bool")]
    pub disabled: bool,
    #[serde(deserialize_with = "flex::string")]
    pub url: String,
    /// Extra request headers, each a list of values.
    #[serde(deserialize_with = "flex::header_map")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Per request.
    #[serde(deserialize_with = "flex::duration")]
    pub timeout: Duration,
    /// Failures in a row before waiting `backoff` between attempts.
    #[serde(deserialize_with = "flex::i64")]
    pub threshold: i64,
    #[serde(deserialize_with = "flex::duration")]
    pub backoff: Duration,
    #[serde(deserialize_with = "list")]
    pub ignoredmediatypes: Vec<String>,
    pub ignore: IgnoreConfig,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            name: String::new(),
            disabled: false,
            url: String::new(),
            headers: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            threshold: DEFAULT_THRESHOLD,
            backoff: DEFAULT_BACKOFF,
            ignoredmediatypes: Vec::new(),
            ignore: IgnoreConfig::default(),
        }
    }
}

impl EndpointConfig {
    /// The threshold in force (distribution's: 0 means the default).
    pub fn threshold(&self) -> u32 {
        if self.threshold <= 0 {
            DEFAULT_THRESHOLD as u32
        } else {
            self.threshold.min(u32::MAX as i64) as u32
        }
    }
    pub fn timeout(&self) -> Duration {
        if self.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            self.timeout
        }
    }
    pub fn backoff(&self) -> Duration {
        if self.backoff.is_zero() {
            DEFAULT_BACKOFF
        } else {
            self.backoff
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IgnoreConfig {
    #[serde(deserialize_with = "list")]
    pub mediatypes: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub actions: Vec<String>,
}

/// `notifications.spool`: where events wait for delivery, and how much of it may be kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Default: `<storage folder>/../notifications` beside a filesystem storage folder's
    /// `docker/` tree (i.e. `<rootdirectory>/notifications`), else a folder in the temp dir.
    #[serde(deserialize_with = "flex::opt_string")]
    pub path: Option<String>,
    /// Bytes (`64MiB`, `1GiB`, or a number); past it the oldest events are dropped and counted.
    #[serde(deserialize_with = "opt_size")]
    pub maxsize: Option<u64>,
}

impl SpoolConfig {
    pub fn maxsize(&self) -> u64 {
        self.maxsize.unwrap_or(DEFAULT_SPOOL_MAXSIZE)
    }
}

impl NotificationsConfig {
    /// Endpoints that are not disabled.
    pub fn active_endpoints(&self) -> impl Iterator<Item = &EndpointConfig> {
        self.endpoints.iter().filter(|e| !e.disabled)
    }

    /// Whether the v2 media type (`mediaType: v2`) is asked for.
    pub fn v2(&self) -> bool {
        self.mediatype
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("v2"))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(m) = &self.mediatype {
            if !["v1", "v2"].contains(&m.to_ascii_lowercase().as_str()) {
                return Err(key_err(
                    "notifications.mediaType",
                    format!("must be v1 or v2, not {m:?}"),
                ));
            }
        }
        if self.spool.maxsize == Some(0) {
            return Err(key_err(
                "notifications.spool.maxsize",
                "must be greater than 0",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = |f: &str| format!("notifications.endpoints[{i}].{f}");
            if e.name.trim().is_empty() {
                return Err(key_err(&key("name"), "must be set"));
            }
            if !names.insert(e.name.as_str()) {
                return Err(key_err(
                    &key("name"),
                    format!("{:?} names two endpoints", e.name),
                ));
            }
            match url::Url::parse(&e.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(u) => {
                    return Err(key_err(
                        &key("url"),
                        format!("must be an http or https URL, not {}:", u.scheme()),
                    ))
                }
                Err(err) => {
                    return Err(key_err(
                        &key("url"),
                        format!("not a URL ({err}): {:?}", e.url),
                    ))
                }
            }
            if e.threshold < 0 {
                return Err(key_err(
                    &key("threshold"),
                    format!("must not be negative, got {}", e.threshold),
                ));
            }
            for a in &e.ignore.actions {
                if !ACTIONS.contains(&a.as_str()) {
                    return Err(key_err(
                        &key("ignore.actions"),
                        format!("unknown action {a:?} (push, pull, mount, delete)"),
                    ));
                }
            }
            for h in e.headers.keys() {
                if !flex::valid_header_name(h) {
                    return Err(key_err(
                        &format!("{}.{h}", key("headers")),
                        "not a valid header name",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EndpointConfig>, D::Error> {
    // Untagged enums lose the inner error's path; parse through a Value to keep the messages.
    let v = serde_yaml::Value::deserialize(d)?;
    match v {
        serde_yaml::Value::Null => Ok(Vec::new()),
        serde_yaml::Value::Sequence(_) => {
            Vec::<EndpointConfig>::deserialize(v).map_err(D::Error::custom)
        }
        serde_yaml::Value::String(s) => {
            let mut v: serde_yaml::Value = serde_yaml::from_str(&s).map_err(D::Error::custom)?;
            super::env::lowercase_keys(&mut v);
            Vec::<EndpointConfig>::deserialize(v).map_err(D::Error::custom)
        }
        serde_yaml::Value::Mapping(m) => {
            // Only from the environment: `ENDPOINTS_0_URL` on a file without endpoints.
            let mut out: Vec<(usize, EndpointConfig)> = Vec::new();
            for (k, e) in m {
                let i = k
                    .as_str()
                    .and_then(|k| k.parse::<usize>().ok())
                    .ok_or_else(|| D::Error::custom("expected a list of endpoints"))?;
                out.push((i, EndpointConfig::deserialize(e).map_err(D::Error::custom)?));
            }
            out.sort_by_key(|(i, _)| *i);
            Ok(out.into_iter().map(|(_, e)| e).collect())
        }
        _ => Err(D::Error::custom("expected a list of endpoints")),
    }
}

/// A list of strings, or one comma-separated string (the environment form).
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<StrOrList>::deserialize(d)? {
        None => Vec::new(),
        Some(StrOrList::List(l)) => l,
        Some(StrOrList::Str(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// A byte size: a number, or a number with `K`/`M`/`G` (`KiB`, `MB`, ... all powers of 1024).
fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = flex::string(d)?;
    parse_size(&s).map(Some).map_err(D::Error::custom)
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size like 64MiB, got {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("expected a size like 64MiB, got {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_yaml(yaml, &env).map(|(c, _)| c)
    }

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Key { key, .. } => key,
            other => panic!("not a key error: {other}"),
        }
    }

    const ONE: &str =
        "notifications:\n  endpoints:\n    - name: a\n      url: http://127.0.0.1:9/x\n";

    #[test]
    fn distribution_fields_and_defaults() {
        let c = load(
            "notifications:\n  events:\n    includereferences: true\n  mediaType: v2\n  endpoints:\n    - name: a\n      disabled: false\n      url: https://hooks.example/x\n      headers:\n        Authorization: [Bearer t]\n      timeout: 500ms\n      threshold: 5\n      backoff: 2s\n      ignoredmediatypes: [application/octet-stream]\n      ignore:\n        mediatypes: [x/y]\n        actions: [pull]\n    - name: b\n      url: http://b/\n      disabled: true\n",
            &[],
        )
        .unwrap();
        let n = &c.notifications;
        assert!(n.events.includereferences && n.v2());
        let a = &n.endpoints[0];
        assert_eq!(a.headers["authorization"], ["Bearer t"]);
        assert_eq!(a.timeout(), std::time::Duration::from_millis(500));
        assert_eq!(a.threshold(), 5);
        assert_eq!(a.backoff(), std::time::Duration::from_secs(2));
        assert_eq!(a.ignoredmediatypes, ["application/octet-stream"]);
        assert_eq!(a.ignore.actions, ["pull"]);
        assert_eq!(n.active_endpoints().count(), 1);
        let d = load(ONE, &[]).unwrap();
        let e = &d.notifications.endpoints[0];
        assert_eq!(
            (e.threshold(), e.timeout(), e.backoff()),
            (10, super::DEFAULT_TIMEOUT, super::DEFAULT_BACKOFF)
        );
        assert!(!d.notifications.v2());
        assert_eq!(
            d.notifications.spool.maxsize(),
            super::DEFAULT_SPOOL_MAXSIZE
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |yaml: &str| key_of(load(yaml, &[]).unwrap_err());
        assert_eq!(
            bad("notifications:\n  endpoints:\n    - name: a\n      url: ftp://x/\n"),
            "notifications.endpoints[0].url"
        );
        assert_eq!(
            bad("notifications:\n  endpoints:\n    - name: a\n      url: not a url\n"),
            "notifications.endpoints[0].url"
        );
        assert_eq!(
            bad("notifications:\n  endpoints:\n    - name: a\n      url: http://x/\n      threshold: -1\n"),
            "notifications.endpoints[0].threshold"
        );
        assert_eq!(
            bad("notifications:\n  endpoints:\n    - url: http://x/\n"),
            "notifications.endpoints[0].name"
        );
        assert_eq!(
            bad("notifications:\n  endpoints:\n    - name: a\n      url: http://x/\n      ignore:\n        actions: [pul]\n"),
            "notifications.endpoints[0].ignore.actions"
        );
        assert_eq!(
            bad("notifications:\n  mediaType: v9\n"),
            "notifications.mediaType"
        );
        assert_eq!(
            bad("notifications:\n  spool:\n    maxsize: lots\n"),
            "notifications.spool.maxsize"
        );
        let e = load(
            ONE,
            &[("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_THRESHOLD", "-3")],
        )
        .unwrap_err();
        assert_eq!(key_of(e), "notifications.endpoints[0].threshold");
    }

    #[test]
    fn environment_forms() {
        // A field of a file's endpoint, a new endpoint by the next index, sizes.
        let c = load(
            ONE,
            &[
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", "http://override/"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_NAME", "b"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_1_URL", "http://b/"),
                (
                    "REGISTRY_NOTIFICATIONS_ENDPOINTS_1_IGNORE_ACTIONS",
                    "pull,mount",
                ),
                ("REGISTRY_NOTIFICATIONS_SPOOL_MAXSIZE", "64MiB"),
            ],
        )
        .unwrap();
        let n = &c.notifications;
        assert_eq!(n.endpoints[0].url, "http://override/");
        assert_eq!(n.endpoints[1].name, "b");
        assert_eq!(n.endpoints[1].ignore.actions, ["pull", "mount"]);
        assert_eq!(n.spool.maxsize(), 64 << 20);
        // No file: indexed variables alone, or the whole list as YAML.
        let c = load(
            "",
            &[
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME", "a"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", "http://a/"),
            ],
        )
        .unwrap();
        assert_eq!(c.notifications.endpoints[0].url, "http://a/");
        let c = load(
            "",
            &[(
                "REGISTRY_NOTIFICATIONS_ENDPOINTS",
                "- name: a\n  url: http://a/\n  Threshold: 3\n",
            )],
        )
        .unwrap();
        assert_eq!(c.notifications.endpoints[0].threshold(), 3);
    }
}
