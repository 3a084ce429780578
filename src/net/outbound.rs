//! Outbound HTTP clients (cluster API, object stores, upstream registries): one place that decides
//! which proxy a request goes through and which CAs a TLS peer may chain to. Every client the
//! registry makes should come from [`Outbound::client_builder`] / [`Outbound::client_builder_for`].
//!
//! Proxy contract (Go's `httpproxy` rules, which the operator's users already know):
//! - `proxy.http` / `proxy.https` / `proxy.noproxy` from config win; each unset one falls back to
//!   `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (upper case first, then lower case).
//! - `http://` URLs use the HTTP proxy, `https://` URLs the HTTPS proxy. A proxy without a scheme
//!   is `http://`.
//! - Never proxied: `localhost` and loopback addresses, and hosts `NO_PROXY` matches: `*` (all), an
//!   IP, a CIDR (`10.0.0.0/8`), `example.com` (it and its subdomains), `.example.com` (subdomains
//!   only), each optionally with `:port` (then only that port).
//!
//! Trust contract: the built-in web roots, plus the system bundle (`SSL_CERT_FILE`, else
//! `/etc/ssl/certs/ca-certificates.crt`), plus `additionaltrustedca`: in its `directory`, files named
//! `*.pem` / `*.crt` are trusted for every host, and files named `<host>` or `<host>..<port>` (the
//! operator's ConfigMap keys, `..` standing for `:`) only for that host (any port) or that host and
//! port; the inline `certificates` map uses the same keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use reqwest::{Certificate, ClientBuilder, Url};

use crate::config::Config;

/// Which proxy to use for which URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Vec<String>,
}

fn env_value(env: &[(String, String)], upper: &str) -> Option<String> {
    let lower = upper.to_ascii_lowercase();
    env.iter()
        .find(|(k, _)| k == upper)
        .or_else(|| env.iter().find(|(k, _)| *k == lower))
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn with_scheme(p: String) -> String {
    if p.contains("://") {
        p
    } else {
        format!("http://{p}")
    }
}

impl ProxySettings {
    /// Config first, then the environment (`env` is usually `std::env::vars()`).
    pub fn resolve(config: &Config, env: &[(String, String)]) -> ProxySettings {
        let p = &config.proxy;
        let pick = |c: &Option<String>, var: &str| {
            c.clone()
                .filter(|v| !v.trim().is_empty())
                .or_else(|| env_value(env, var))
        };
        ProxySettings {
            http: pick(&p.http, "HTTP_PROXY").map(with_scheme),
            https: pick(&p.https, "HTTPS_PROXY").map(with_scheme),
            no_proxy: pick(&p.noproxy, "NO_PROXY")
                .map(|s| {
                    s.split(',')
                        .map(|e| e.trim().to_ascii_lowercase())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The proxy for `url`, or `None` to go direct.
    pub fn proxy_for(&self, url: &Url) -> Option<Url> {
        let proxy = match url.scheme() {
            "http" => self.http.as_deref(),
            "https" => self.https.as_deref(),
            _ => None,
        }?;
        let host = url
            .host_str()?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let port = url.port_or_known_default();
        if self.bypass(&host, port) {
            return None;
        }
        Url::parse(proxy).ok()
    }

    /// Whether `host` (lower case, no brackets) at `port` goes direct.
    ///
    /// Hand-written because `reqwest::NoProxy` (hyper-util's matcher, reqwest 0.12) cannot express
    /// the Go `httpproxy` rules the operator's `NO_PROXY` is written for: it has no `host:port`
    /// entries (`api.cluster:6443` is taken as a domain name and matches nothing, since it is
    /// compared with the host alone), it reads `.example.com` as `example.com` (matching the
    /// domain itself too, where Go matches subdomains only), and it does not exempt `localhost`
    /// and loopback addresses by itself. Its IP, CIDR, domain-and-subdomain and `*` entries are
    /// what the branches below do as well.
    fn bypass(&self, host: &str, port: Option<u16>) -> bool {
        let ip: Option<IpAddr> = host.parse().ok();
        if host == "localhost" || ip.is_some_and(|i| i.is_loopback()) {
            return true;
        }
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return match (ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            let (name, eport) = split_port(entry);
            if eport.is_some() && eport != port {
                return false;
            }
            if let Ok(eip) = name.parse::<IpAddr>() {
                return ip == Some(eip);
            }
            match name.strip_prefix('.') {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == name || host.ends_with(&format!(".{name}")),
            }
        })
    }
}

fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(bracketed) = entry.strip_prefix('[') {
        if let Some((h, rest)) = bracketed.split_once(']') {
            return (h, rest.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Proxy and trust for outbound clients.
#[derive(Clone, Default)]
pub struct Outbound {
    pub proxy: ProxySettings,
    /// Trusted for every host (system bundle and `*.pem`/`*.crt` files).
    global: Vec<Certificate>,
    /// `host` or `host:port` -> CAs for that peer only.
    per_host: HashMap<String, Vec<Certificate>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("proxy", &self.proxy)
            .field("global_cas", &self.global.len())
            .field("hosts", &self.per_host.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn parse_pem(pem: &[u8], what: &str) -> anyhow::Result<Vec<Certificate>> {
    let certs = Certificate::from_pem_bundle(pem).with_context(|| format!("bad PEM in {what}"))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {what}");
    }
    Ok(certs)
}

/// `host..port` -> `host:port`, lowercased.
pub fn host_key(name: &str) -> String {
    name.trim().to_ascii_lowercase().replacen("..", ":", 1)
}

impl Outbound {
    /// Builds from config and the process environment.
    pub fn from_config(config: &Config, env: &[(String, String)]) -> anyhow::Result<Outbound> {
        let mut o = Outbound {
            proxy: ProxySettings::resolve(config, env),
            ..Outbound::default()
        };
        let system = env_value(env, "SSL_CERT_FILE")
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
        if let Ok(pem) = std::fs::read(&system) {
            match Certificate::from_pem_bundle(&pem) {
                Ok(c) => o.global.extend(c),
                Err(e) => {
                    tracing::warn!(file = %system, error = %e, "cannot read the system CA bundle")
                }
            }
        }
        let t = &config.additionaltrustedca;
        if let Some(dir) = &t.directory {
            o.add_directory(Path::new(dir))?;
        }
        for (k, pem) in &t.certificates {
            let certs = parse_pem(
                pem.as_bytes(),
                &format!("additionaltrustedca.certificates.{k}"),
            )?;
            o.per_host.entry(host_key(k)).or_default().extend(certs);
        }
        Ok(o)
    }

    /// Adds a folder of CAs (see the module docs). Hidden files (`..data` of Kubernetes volumes)
    /// and sub-folders are skipped.
    pub fn add_directory(&mut self, dir: &Path) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read CA folder {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read CA folder {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            let pem =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let certs = parse_pem(&pem, &path.display().to_string())?;
            if name.ends_with(".pem") || name.ends_with(".crt") {
                self.global.extend(certs);
            } else {
                self.per_host
                    .entry(host_key(&name))
                    .or_default()
                    .extend(certs);
            }
        }
        Ok(())
    }

    /// A client builder for any host: proxy rules and the global CAs.
    pub fn client_builder(&self) -> ClientBuilder {
        let proxy = self.proxy.clone();
        let mut b = http_client_builder()
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |u| proxy.proxy_for(u)));
        for c in &self.global {
            b = b.add_root_certificate(c.clone());
        }
        b
    }

    /// A client builder for one peer: also trusts the CAs configured for `host` and `host:port`.
    pub fn client_builder_for(&self, host: &str, port: Option<u16>) -> ClientBuilder {
        let mut b = self.client_builder();
        for c in self.cas_for(host, port) {
            b = b.add_root_certificate(c.clone());
        }
        b
    }

    /// The per-host CAs that apply to `host` (any port) and `host:port`.
    pub fn cas_for(&self, host: &str, port: Option<u16>) -> Vec<&Certificate> {
        let host = host.to_ascii_lowercase();
        let mut out: Vec<&Certificate> = self.per_host.get(&host).into_iter().flatten().collect();
        if let Some(p) = port {
            out.extend(
                self.per_host
                    .get(&format!("{host}:{p}"))
                    .into_iter()
                    .flatten(),
            );
        }
        out
    }
}

/// Every reqwest client of the crate starts here: rustls with the process's one crypto provider
/// (ring), installed first because reqwest 0.13 built with `rustls-no-provider` panics without it.
pub fn http_client_builder() -> ClientBuilder {
    super::tls::install_default_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(http: &str, https: &str, no: &str) -> ProxySettings {
        let cfg = Config::default();
        let env = vec![
            ("HTTP_PROXY".to_owned(), http.to_owned()),
            ("https_proxy".to_owned(), https.to_owned()),
            ("NO_PROXY".to_owned(), no.to_owned()),
        ];
        ProxySettings::resolve(&cfg, &env)
    }

    fn via(s: &ProxySettings, url: &str) -> Option<String> {
        s.proxy_for(&Url::parse(url).unwrap())
            .map(|u| u.to_string())
    }

    #[test]
    fn scheme_picks_the_proxy() {
        let s = settings("proxy:3128", "https://secure:3129", "");
        assert_eq!(
            via(&s, "http://quay.io/v2/").as_deref(),
            Some("http://proxy:3128/")
        );
        assert_eq!(
            via(&s, "https://quay.io/v2/").as_deref(),
            Some("https://secure:3129/")
        );
        assert_eq!(via(&s, "ftp://quay.io/"), None);
    }

    #[test]
    fn no_proxy_forms() {
        let s = settings(
            "http://p:1",
            "http://p:1",
            "example.com, .internal,10.0.0.0/8,192.168.1.5,api.cluster:6443,[::1]:9",
        );
        for direct in [
            "https://example.com/",
            "https://a.example.com/",
            "https://x.internal/",
            "https://10.1.2.3/",
            "https://192.168.1.5/",
            "https://api.cluster:6443/",
            "https://localhost:5000/",
            "https://127.0.0.1/",
            "https://[::1]/",
        ] {
            assert_eq!(via(&s, direct), None, "{direct} should go direct");
        }
        for proxied in [
            "https://notexample.com/",
            "https://internal/",
            "https://11.0.0.1/",
            "https://api.cluster:443/",
            "https://quay.io/",
        ] {
            assert!(via(&s, proxied).is_some(), "{proxied} should use the proxy");
        }
        assert_eq!(
            via(&settings("http://p:1", "", "*"), "http://quay.io/"),
            None
        );
    }

    #[test]
    fn config_wins_over_environment() {
        let (cfg, _) =
            Config::from_yaml("proxy:\n  http: http://cfg:8080\n  noProxy: quay.io\n", &[])
                .unwrap();
        let env = vec![
            ("HTTP_PROXY".to_owned(), "http://env:1".to_owned()),
            ("HTTPS_PROXY".to_owned(), "http://env:2".to_owned()),
            ("NO_PROXY".to_owned(), "*".to_owned()),
        ];
        let s = ProxySettings::resolve(&cfg, &env);
        assert_eq!(s.http.as_deref(), Some("http://cfg:8080"));
        assert_eq!(s.https.as_deref(), Some("http://env:2"));
        assert_eq!(s.no_proxy, vec!["quay.io".to_owned()]);
    }

    #[test]
    fn host_keys_use_double_dots_for_ports() {
        assert_eq!(
            host_key("Registry.Example.com..5000"),
            "registry.example.com:5000"
        );
        assert_eq!(host_key("quay.io"), "quay.io");
    }
}
