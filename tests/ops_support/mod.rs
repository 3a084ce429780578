//! Shared by the operations tests: a server built from YAML exactly as `main` builds it
//! (`build_server` + `Tls::from_config` + `server::serve`) on `127.0.0.1:<ephemeral>`, and small
//! helpers (metric values from an exposition, polling with a deadline).
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use image_registry::app::build_server;
use image_registry::config::Config;
use image_registry::metrics::Metrics;
use image_registry::server;
use image_registry::tls::Tls;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub struct OpsServer {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    task: JoinHandle<()>,
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a server from YAML (`http.addr` is replaced by an ephemeral port).
pub async fn start(yaml: &str) -> OpsServer {
    let (config, warnings) = Config::from_yaml(yaml, &[]).expect("valid test config");
    assert!(warnings.is_empty(), "{warnings:?}");
    let built = build_server(&config).expect("server builds");
    let tls = Tls::from_config(&config).expect("TLS config loads");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(server::serve(
        listener,
        built.router,
        tls,
        std::future::pending(),
        Duration::from_secs(1),
        || {},
    ));
    OpsServer {
        addr,
        base: format!("{scheme}://{addr}"),
        metrics: built.metrics,
        config,
        task,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value of one sample (`name{labels}` exactly as exposed, or a bare name) in an exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok()).flatten()
    })
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether tests needing external tools must run (`IMAGE_REGISTRY_E2E=1`): then a missing tool is
/// a failure, not a skip.
pub fn e2e_required() -> bool {
    std::env::var("IMAGE_REGISTRY_E2E").is_ok_and(|v| v == "1")
}
