//! Upstream registries of the pull-through cache: which local repository mirrors which upstream
//! (`proxy.remoteurl`, `proxy.upstreams[].prefix`), and the HTTP client of each ([`client`]) with
//! its credentials (inline or from an auth file, [`authfile`]). Implements the domain's
//! [`PullThrough`] trait; what is fetched when, and how it is stored, is decided in
//! `registry/pullthrough.rs`.
//!
//! Depends on `registry` (the trait), `oci`, `config` and `net` (every client starts from
//! `net::outbound`, so the outbound proxy and the trusted CAs apply). Nothing but `app` uses it.
//!
//! Contract: a local name `<prefix>/<rest>` maps to `<rest>` upstream (Docker Hub: a one-component
//! `<rest>` to `library/<rest>`); the empty prefix of distribution's `remoteurl` maps every name
//! to itself. Prefixes never overlap (config validation), so at most one upstream claims a name.

pub mod authfile;
pub mod client;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{Config, UpstreamConfig};
use crate::net::outbound::Outbound;
use crate::oci::{Digest, Reference, RepositoryName};
use crate::registry::{PullThrough, UpstreamBlob, UpstreamError, UpstreamManifest};
use client::UpstreamClient;

/// Why the upstreams cannot be built; names the config key.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct UpstreamConfigError {
    pub key: String,
    pub message: String,
}

/// Hook for pull-through metrics (`ops` implements it in `app`).
pub trait PullMetrics: Send + Sync {
    /// `kind`: `manifest` or `blob`; `hit`: served from storage; `err`: the upstream failed.
    fn observe(&self, kind: &'static str, hit: bool, err: bool, elapsed: Duration);
    /// `n` more blob bytes arrived from an upstream.
    fn bytes(&self, n: u64);
}

struct Entry {
    prefix: String,
    ttl: Duration,
    client: UpstreamClient,
    sync: Option<sync::SyncPlan>,
}

/// Every configured upstream.
pub struct Upstreams {
    entries: Vec<Entry>,
    metrics: Option<Arc<dyn PullMetrics>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.prefix))
            .finish()
    }
}

fn build_one(
    key: &str,
    u: &UpstreamConfig,
    outbound: &Outbound,
) -> Result<Entry, UpstreamConfigError> {
    let err = |k: &str, m: String| UpstreamConfigError {
        key: k.to_owned(),
        message: m,
    };
    let url_key = if key == "proxy.remoteurl" {
        key.to_owned()
    } else {
        format!("{key}.url")
    };
    let url =
        reqwest::Url::parse(u.url.trim()).map_err(|e| err(&url_key, format!("not a URL: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| err(&url_key, "no host".into()))?
        .to_owned();
    let host_port = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let creds = match (&u.username, &u.password, &u.authfile) {
        (Some(user), Some(pw), _) => Some((user.clone(), pw.0.clone())),
        (_, _, Some(file)) => {
            let c = authfile::credentials(file, &host_port)
                .map_err(|e| err(&format!("{key}.authfile"), e.to_string()))?;
            if c.is_none() {
                tracing::warn!(file = %file, host = %host_port,
                    "the auth file has no entry for the upstream; pulling anonymously");
            }
            c
        }
        _ => None,
    };
    let mut builder = outbound.client_builder_for(&host, url.port());
    if !u.tlsverify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    let client = UpstreamClient::new(url, builder, creds)
        .map_err(|e| err(key, format!("cannot build the HTTP client: {e}")))?;
    let sync = match &u.sync {
        Some(s) => Some(sync::SyncPlan {
            interval: s.interval,
            repositories: s.repositories.clone(),
            tags: match &s.tags {
                Some(t) => Some(
                    regex::Regex::new(t)
                        .map_err(|e| err(&format!("{key}.sync.tags"), e.to_string()))?,
                ),
                None => None,
            },
        }),
        None => None,
    };
    Ok(Entry {
        prefix: u.prefix.clone(),
        ttl: u.ttl,
        client,
        sync,
    })
}

impl Upstreams {
    /// The upstreams the config names; `None` if there are none.
    pub fn from_config(
        config: &Config,
        outbound: &Outbound,
    ) -> Result<Option<Upstreams>, UpstreamConfigError> {
        let all = config.proxy.all_upstreams();
        if all.is_empty() {
            return Ok(None);
        }
        let entries = all
            .iter()
            .map(|(k, u)| build_one(k, u, outbound))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Upstreams {
            entries,
            metrics: None,
        }))
    }

    /// Reports outcomes to `m`.
    pub fn with_metrics(mut self, m: Arc<dyn PullMetrics>) -> Upstreams {
        self.metrics = Some(m);
        self
    }

    /// The prefixes, for containerd's `?ns=` (the host a mirror request is for).
    pub fn prefixes(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| e.prefix.clone())
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// The upstream of `name` and the upstream's name for it.
    fn route(&self, name: &RepositoryName) -> Option<(&Entry, String)> {
        let n = name.as_str();
        self.entries.iter().find_map(|e| {
            let rest = if e.prefix.is_empty() {
                n
            } else {
                n.strip_prefix(e.prefix.as_str())?.strip_prefix('/')?
            };
            (!rest.is_empty()).then(|| (e, e.client.remote_name(rest)))
        })
    }

    fn routed(&self, name: &RepositoryName) -> Result<(&Entry, String), UpstreamError> {
        self.route(name)
            .ok_or_else(|| UpstreamError::NotFound(format!("{name} mirrors no upstream")))
    }
}

#[async_trait]
impl PullThrough for Upstreams {
    fn ttl_for(&self, name: &RepositoryName) -> Option<Duration> {
        self.route(name).map(|(e, _)| e.ttl)
    }

    async fn manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let (e, remote) = self.routed(name)?;
        let (body, content_type, digest) =
            e.client.manifest(&remote, &reference.to_string()).await?;
        Ok(UpstreamManifest {
            body,
            content_type,
            digest,
        })
    }

    async fn manifest_digest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<Digest, UpstreamError> {
        let (e, remote) = self.routed(name)?;
        e.client
            .manifest_digest(&remote, &reference.to_string())
            .await
    }

    async fn blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<UpstreamBlob, UpstreamError> {
        let (e, remote) = self.routed(name)?;
        let (size, stream) = e.client.blob(&remote, digest).await?;
        Ok(UpstreamBlob { size, stream })
    }

    async fn blob_size(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, UpstreamError> {
        let (e, remote) = self.routed(name)?;
        e.client.blob_size(&remote, digest).await
    }

    fn observe(&self, kind: &'static str, hit: bool, err: bool, elapsed: Duration) {
        if let Some(m) = &self.metrics {
            m.observe(kind, hit, err, elapsed);
        }
    }

    fn observe_bytes(&self, n: u64) {
        if let Some(m) = &self.metrics {
            m.bytes(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(yaml: &str) -> Upstreams {
        let (c, _) = Config::from_yaml(yaml, &[]).unwrap();
        Upstreams::from_config(&c, &Outbound::default())
            .unwrap()
            .unwrap()
    }

    fn name(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    #[test]
    fn names_map_to_their_upstream() {
        let u = upstreams(
            "proxy:\n  upstreams:\n    - {prefix: docker.io, url: 'https://registry-1.docker.io'}\n    - {prefix: quay.io/org, url: 'https://quay.io', ttl: 30}\n",
        );
        let r = |n: &str| u.route(&name(n)).map(|(e, r)| (e.prefix.clone(), r));
        assert_eq!(
            r("docker.io/alpine"),
            Some(("docker.io".into(), "library/alpine".into()))
        );
        assert_eq!(
            r("docker.io/bitnami/redis"),
            Some(("docker.io".into(), "bitnami/redis".into()))
        );
        assert_eq!(
            r("quay.io/org/app"),
            Some(("quay.io/org".into(), "app".into()))
        );
        assert_eq!(r("quay.io/other/app"), None);
        assert_eq!(r("docker.iox/alpine"), None);
        assert_eq!(
            u.ttl_for(&name("quay.io/org/app")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(u.ttl_for(&name("mine/app")), None);
        let all = upstreams("proxy:\n  remoteurl: http://127.0.0.1:1\n");
        assert_eq!(all.route(&name("a/b")).map(|(_, r)| r), Some("a/b".into()));
    }
}
