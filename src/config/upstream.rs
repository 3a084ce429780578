//! The pull-through cache's keys in `proxy`: distribution's one-upstream form (`remoteurl`,
//! `username`, `password`, `ttl`: the whole registry mirrors it) and ours, `upstreams[]`, each a
//! repository-name prefix served from its own upstream registry. They sit beside the outbound proxy
//! keys (`http`, `https`, `noproxy`) of [`super::ProxyConfig`].
//!
//! Environment forms, as `notifications.endpoints` takes them: `REGISTRY_PROXY_UPSTREAMS_<i>_<FIELD>`
//! sets a field of upstream `i` (counting from 0; the next free index adds one:
//! `REGISTRY_PROXY_UPSTREAMS_0_URL`, `..._0_AUTHFILE`, `..._0_SYNC_INTERVAL`), and
//! `REGISTRY_PROXY_UPSTREAMS` may hold the whole list as YAML or JSON. `sync.repositories` also
//! takes a comma-separated string (`REGISTRY_PROXY_UPSTREAMS_0_SYNC_REPOSITORIES=library/a,library/b`).

use std::time::Duration;

use serde::Deserialize;

use super::flex;
use super::Secret;
use super::{key_err, ConfigError, ProxyConfig};

/// Default `ttl`: how long a cached tag is served before it is revalidated with a `HEAD`.
pub const DEFAULT_UPSTREAM_TTL: Duration = Duration::from_secs(10 * 60);

/// `proxy.upstreams[]`: local names under `prefix` are pulled from `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Local name prefix (`docker.io`: `docker.io/library/alpine` pulls `library/alpine`). Empty:
    /// every repository (distribution's `remoteurl`).
    #[serde(deserialize_with = "flex::string")]
    pub prefix: String,
    /// The upstream registry's base URL (`https://registry-1.docker.io`).
    #[serde(deserialize_with = "flex::string")]
    pub url: String,
    #[serde(deserialize_with = "flex::opt_string")]
    pub username: Option<String>,
    #[serde(deserialize_with = "opt_secret")]
    pub password: Option<Secret>,
    /// A podman/docker `auth.json` or a Kubernetes `.dockerconfigjson` pull secret; the entry of
    /// the upstream's host is used.
    #[serde(deserialize_with = "flex::opt_string")]
    pub authfile: Option<String>,
    /// Tag revalidation interval.
    #[serde(deserialize_with = "flex::duration")]
    pub ttl: Duration,
    /// Verify the upstream's TLS certificate (default true).
    #[serde(deserialize_with = "flex::bool")]
    pub tlsverify: bool,
    /// Mirror ahead of time: fetch matching tags (`image-registry sync`, or periodically in `serve`).
    pub sync: Option<SyncConfig>,
}

/// `proxy.upstreams[].sync`: which tags of which upstream repositories to fetch ahead of time.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How often `serve` runs the sync (`0`: only `image-registry sync` runs it).
    #[serde(deserialize_with = "flex::duration")]
    pub interval: Duration,
    /// Upstream repository names (without the prefix: `library/alpine`); a YAML list or a
    /// comma-separated string.
    #[serde(deserialize_with = "repository_list")]
    pub repositories: Vec<String>,
    /// A regular expression the tags must match (anywhere; anchor it with `^...$`); all tags when
    /// unset.
    #[serde(deserialize_with = "flex::opt_string")]
    pub tags: Option<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            prefix: String::new(),
            url: String::new(),
            username: None,
            password: None,
            authfile: None,
            ttl: DEFAULT_UPSTREAM_TTL,
            tlsverify: true,
            sync: None,
        }
    }
}

/// `proxy.upstreams`: a list; from the environment also a YAML/JSON string holding the list, or
/// the indexed form `UPSTREAMS_<i>_<FIELD>` on a file without upstreams (a mapping of indexes).
pub fn upstream_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<UpstreamConfig>, D::Error> {
    use serde::de::Error as _;
    // Through a Value, so the inner error keeps its message.
    let v = serde_yaml::Value::deserialize(d)?;
    match v {
        serde_yaml::Value::Null => Ok(Vec::new()),
        serde_yaml::Value::Sequence(_) => {
            Vec::<UpstreamConfig>::deserialize(v).map_err(D::Error::custom)
        }
        serde_yaml::Value::String(s) => {
            let mut v: serde_yaml::Value = serde_yaml::from_str(&s).map_err(D::Error::custom)?;
            super::env::lowercase_keys(&mut v);
            Vec::<UpstreamConfig>::deserialize(v).map_err(D::Error::custom)
        }
        serde_yaml::Value::Mapping(m) => {
            let mut out: Vec<(usize, UpstreamConfig)> = Vec::new();
            for (k, u) in m {
                let i = k
                    .as_str()
                    .and_then(|k| k.parse::<usize>().ok())
                    .ok_or_else(|| D::Error::custom("expected a list of upstreams"))?;
                out.push((i, UpstreamConfig::deserialize(u).map_err(D::Error::custom)?));
            }
            out.sort_by_key(|(i, _)| *i);
            if out.iter().enumerate().any(|(n, (i, _))| n != *i) {
                return Err(D::Error::custom(
                    "the indexes of REGISTRY_PROXY_UPSTREAMS_<i>_* must count from 0 without gaps",
                ));
            }
            Ok(out.into_iter().map(|(_, u)| u).collect())
        }
        _ => Err(D::Error::custom("expected a list of upstreams")),
    }
}

/// `sync.repositories`: a list, or one comma-separated string (the environment's form).
fn repository_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::de::Error as _;
    match serde_yaml::Value::deserialize(d)? {
        serde_yaml::Value::Null => Ok(Vec::new()),
        serde_yaml::Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        v @ serde_yaml::Value::Sequence(_) => {
            Vec::<String>::deserialize(v).map_err(D::Error::custom)
        }
        _ => Err(D::Error::custom(
            "expected a list of repositories or a comma-separated string",
        )),
    }
}

fn opt_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(flex::opt_string(d)?.filter(|s| !s.is_empty()).map(Secret))
}

/// An optional duration (`ttl` of distribution's form: unset means the default).
pub fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum O {
        Null(()),
        #[serde(deserialize_with = "flex::duration")]
        D(Duration),
    }
    Ok(match Option::<O>::deserialize(d)? {
        Some(O::D(v)) => Some(v),
        _ => None,
    })
}

impl ProxyConfig {
    /// Every upstream configured: distribution's `remoteurl` (prefix empty: the whole registry)
    /// first, then `upstreams[]`, each with the config key it came from.
    pub fn all_upstreams(&self) -> Vec<(String, UpstreamConfig)> {
        let mut out = Vec::new();
        if let Some(url) = self.remoteurl.as_ref().filter(|u| !u.trim().is_empty()) {
            out.push((
                "proxy.remoteurl".to_owned(),
                UpstreamConfig {
                    prefix: String::new(),
                    url: url.clone(),
                    username: self.username.clone(),
                    password: self.password.clone(),
                    ttl: self.ttl.unwrap_or(DEFAULT_UPSTREAM_TTL),
                    ..UpstreamConfig::default()
                },
            ));
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            out.push((format!("proxy.upstreams[{i}]"), u.clone()));
        }
        out
    }

    /// Checks URLs, credentials, auth files and that no two prefixes overlap.
    pub fn validate_upstreams(&self) -> Result<(), ConfigError> {
        let all = self.all_upstreams();
        for (key, u) in &all {
            let url_key = if key == "proxy.remoteurl" {
                key.clone()
            } else {
                format!("{key}.url")
            };
            match url::Url::parse(u.url.trim()) {
                Ok(p) if (p.scheme() == "http" || p.scheme() == "https") && p.host().is_some() => {}
                _ => {
                    return Err(key_err(
                        &url_key,
                        format!("not an http(s) URL: {:?}", u.url),
                    ))
                }
            }
            let prefix = u.prefix.trim_matches('/');
            if prefix != u.prefix || (key != "proxy.remoteurl" && prefix.is_empty()) {
                return Err(key_err(
                    &format!("{key}.prefix"),
                    "must be a non-empty repository name prefix without leading or trailing '/'",
                ));
            }
            if u.username.is_some() != u.password.is_some() {
                return Err(key_err(key, "set both username and password (or neither)"));
            }
            if let Some(s) = &u.sync {
                if s.repositories.is_empty() {
                    return Err(key_err(
                        &format!("{key}.sync.repositories"),
                        "name at least one upstream repository",
                    ));
                }
                if let Some(t) = &s.tags {
                    regex::Regex::new(t).map_err(|e| {
                        key_err(
                            &format!("{key}.sync.tags"),
                            format!("not a regular expression: {e}"),
                        )
                    })?;
                }
            }
            if let Some(f) = &u.authfile {
                if u.username.is_some() {
                    return Err(key_err(
                        &format!("{key}.authfile"),
                        "set either authFile or username/password",
                    ));
                }
                if !std::path::Path::new(f).is_file() {
                    return Err(key_err(
                        &format!("{key}.authfile"),
                        format!("no such file: {f:?}"),
                    ));
                }
            }
        }
        for (i, (ka, a)) in all.iter().enumerate() {
            for (kb, b) in &all[i + 1..] {
                if prefixes_overlap(&a.prefix, &b.prefix) {
                    return Err(key_err(
                        &format!("{kb}.prefix"),
                        format!(
                            "{:?} overlaps {:?} of {ka}: a repository must belong to one upstream",
                            b.prefix, a.prefix
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether one prefix contains the other, component-wise (`a` and `a/b` overlap; `a` and `ab`
/// do not). The empty prefix overlaps everything.
pub fn prefixes_overlap(a: &str, b: &str) -> bool {
    let within = |x: &str, y: &str| x.is_empty() || y == x || y.starts_with(&format!("{x}/"));
    within(a, b) || within(b, a)
}
