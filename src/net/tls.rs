//! TLS with rustls (ring provider): the server certificate from `http.tls.{certificate,key}`, one
//! more certificate per entry of `routes` chosen by SNI, a minimum protocol version, HTTP/2 and
//! HTTP/1.1 offered by ALPN, optional client-certificate authentication (`http.tls.clientcas`), and
//! certificates reloaded when their files change.
//!
//! Contracts:
//! - SNI: an exact hostname match wins, then a `*.domain` route matching one label, then the
//!   default certificate (`http.tls`, or the first route when there is none). Names compare
//!   case-insensitively.
//! - Reload: every `http.tls.reloadinterval` (default 10 s) the certificate and key files are read
//!   and hashed; when any changed, the whole set is loaded again and swapped in for new handshakes.
//!   A set that fails to load (half-written files, a key that does not match) is logged and the
//!   previous one stays. Hashing contents rather than watching mtimes survives the symlink swaps of
//!   Kubernetes secret volumes.
//! - Client CAs are read at start only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::config::ops::MinTls;
use crate::config::Config;

/// The crypto provider used for every TLS config of this crate (explicit, so that a build with
/// several providers enabled never has to guess).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs [`provider`] as the process-wide rustls default, for clients that take the default
/// rather than being handed one (object_store's reqwest 0.13, built with `rustls-no-provider`,
/// panics without it). Idempotent; the first install in the process wins.
pub fn install_default_provider() {
    // `Err` only means a default is installed already (by an earlier call).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where one certificate comes from.
#[derive(Debug, Clone)]
struct Source {
    /// `None` = the default certificate.
    hostname: Option<String>,
    cert: PathBuf,
    key: PathBuf,
}

/// The loaded certificates.
#[derive(Debug, Default)]
struct CertSet {
    default: Option<Arc<CertifiedKey>>,
    exact: Vec<(String, Arc<CertifiedKey>)>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
}

impl CertSet {
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some((_, k)) = self.exact.iter().find(|(h, _)| *h == name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some((_, k)) = self.wildcard.iter().find(|(d, _)| d == parent) {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }
}

/// Picks a certificate by SNI; swapped on reload.
#[derive(Debug)]
pub struct SniResolver {
    sources: Vec<Source>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertSet>>,
    fingerprint: RwLock<Vec<u8>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.read().ok()?.clone();
        set.pick(hello.server_name())
    }
}

fn load_key(provider: &CryptoProvider, s: &Source) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.cert)
        .with_context(|| format!("cannot read certificate {}", s.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in {}", s.cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in {}", s.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&s.key)
        .with_context(|| format!("cannot read private key {}", s.key.display()))?;
    let ck = CertifiedKey::from_der(certs, key, provider).with_context(|| {
        format!(
            "certificate {} and key {} do not make a usable pair",
            s.cert.display(),
            s.key.display()
        )
    })?;
    Ok(Arc::new(ck))
}

fn fingerprint(sources: &[Source]) -> Vec<u8> {
    let mut h = Sha256::new();
    for s in sources {
        for p in [&s.cert, &s.key] {
            h.update(p.as_os_str().as_encoded_bytes());
            match std::fs::read(p) {
                Ok(b) => h.update(&b),
                Err(_) => h.update(b"\0missing"),
            }
        }
    }
    h.finalize().to_vec()
}

impl SniResolver {
    fn load(&self) -> anyhow::Result<CertSet> {
        let mut set = CertSet::default();
        for s in &self.sources {
            let k = load_key(&self.provider, s)?;
            match &s.hostname {
                None => set.default = Some(k),
                Some(h) => {
                    let h = h.trim_end_matches('.').to_ascii_lowercase();
                    if set.default.is_none() {
                        set.default = Some(k.clone());
                    }
                    match h.strip_prefix("*.") {
                        Some(domain) => set.wildcard.push((domain.to_owned(), k)),
                        None => set.exact.push((h, k)),
                    }
                }
            }
        }
        Ok(set)
    }

    /// Reloads when the files changed. Returns whether a new set was swapped in.
    pub fn reload_if_changed(&self) -> bool {
        let fp = fingerprint(&self.sources);
        if self.fingerprint.read().is_ok_and(|old| *old == fp) {
            return false;
        }
        match self.load() {
            Ok(set) => {
                if let Ok(mut cur) = self.current.write() {
                    *cur = Arc::new(set);
                }
                if let Ok(mut old) = self.fingerprint.write() {
                    *old = fp;
                }
                tracing::info!("TLS certificates reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "TLS certificates changed but cannot be loaded; keeping the previous ones");
                false
            }
        }
    }
}

/// The TLS side of the server.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub resolver: Arc<SniResolver>,
}

impl Tls {
    /// Builds TLS from config: `None` when neither `http.tls` nor `routes` are set.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Tls>> {
        if !config.tls_enabled() {
            return Ok(None);
        }
        let tls = config.http.tls.clone().unwrap_or_default();
        let mut sources = Vec::new();
        if let (Some(c), Some(k)) = (&tls.certificate, &tls.key) {
            sources.push(Source {
                hostname: None,
                cert: c.into(),
                key: k.into(),
            });
        }
        for r in &config.routes {
            let (cert, key) = r.files().map_err(|m| anyhow!(m))?;
            sources.push(Source {
                hostname: Some(r.hostname.clone()),
                cert,
                key,
            });
        }
        let min = tls.min_tls().map_err(|m| anyhow!(m))?;
        let client_cas: Vec<PathBuf> = tls.clientcas.iter().map(PathBuf::from).collect();
        Tls::new(sources, min, &client_cas, tls.reload_interval())
    }
}

impl Tls {
    fn new(
        sources: Vec<Source>,
        min: MinTls,
        client_cas: &[PathBuf],
        reload: Duration,
    ) -> anyhow::Result<Option<Tls>> {
        let provider = provider();
        let resolver = Arc::new(SniResolver {
            sources,
            provider: provider.clone(),
            current: RwLock::new(Arc::new(CertSet::default())),
            fingerprint: RwLock::new(Vec::new()),
        });
        let set = resolver
            .load()
            .context("cannot load the TLS certificates")?;
        *resolver
            .current
            .write()
            .map_err(|_| anyhow!("certificate lock poisoned"))? = Arc::new(set);
        *resolver
            .fingerprint
            .write()
            .map_err(|_| anyhow!("certificate lock poisoned"))? = fingerprint(&resolver.sources);
        let versions: &[&'static rustls::SupportedProtocolVersion] = match min {
            MinTls::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinTls::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .context("TLS protocol versions")?;
        let builder = if client_cas.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for p in client_cas {
                for c in read_certs(p)? {
                    roots
                        .add(c)
                        .with_context(|| format!("bad client CA in {}", p.display()))?;
                }
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut sc = builder.with_cert_resolver(resolver.clone());
        sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = Tls {
            acceptor: TlsAcceptor::from(Arc::new(sc)),
            resolver,
        };
        tls.spawn_reload(reload);
        Ok(Some(tls))
    }

    /// Checks the files every `every` until the resolver is dropped (needs a tokio runtime; without
    /// one, reloading is off).
    fn spawn_reload(&self, every: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<SniResolver> = Arc::downgrade(&self.resolver);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(r) = weak.upgrade() else { return };
                // File reads are small; keep them off the async workers anyway.
                let _ = tokio::task::spawn_blocking(move || r.reload_if_changed()).await;
            }
        });
    }
}

/// Every certificate in a PEM file.
pub fn read_certs(p: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(p)
        .with_context(|| format!("cannot read {}", p.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", p.display()))
}
