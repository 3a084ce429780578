//! The pull-through cache's keys in `proxy`: distribution's one-upstream form (`remoteurl`,
//! `username`, `password`, `ttl`: the whole registry mirrors it) and ours, `upstreams[]`, each a
//! repository-name prefix served from its own upstream registry. They sit beside the outbound proxy
//! keys (`http`, `https`, `noproxy`) of [`super::ProxyConfig`].

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
    /// Upstream repository names (without the prefix: `library/alpine`).
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
