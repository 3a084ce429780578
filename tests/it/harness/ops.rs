//! Operations helpers: metric values from an exposition, scraping a server, polling with a
//! deadline, captured logs, files on disk, and whether the e2e tools are required.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;

use super::server::TestServer;

/// The value of one sample (`name{labels}` exactly as exposed, or a bare name) in an exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok()).flatten()
    })
}

impl TestServer {
    /// `GET /extensions/v2/metrics` without credentials; asserts 200 and returns the exposition.
    pub async fn scrape(&self) -> String {
        let r = self.get("/extensions/v2/metrics").await;
        assert_eq!(r.status(), StatusCode::OK, "scrape of {}", self.base);
        r.text().await.expect("scrape body")
    }
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

/// Collects what a tracing subscriber writes (a `MakeWriter`). Install the subscriber with
/// [`capture_logs`] in a `current_thread` test: then only that test's server (whose tasks all run
/// on the test's thread) writes into it, whatever the tests on other threads log.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

/// Makes `subscriber` this thread's default until the guard is dropped.
///
/// Also keeps a second, silent dispatcher alive for the rest of the process. With exactly one
/// dispatcher registered, tracing-core 0.1 computes a callsite's interest from the default of
/// whichever thread reaches the callsite first: a test thread without a subscriber would cache
/// "never" for it and this capture would miss the events (tokio-rs/tracing#3611). With two, the
/// interest is computed from every registered dispatcher.
pub fn capture_logs<S>(subscriber: S) -> tracing::subscriber::DefaultGuard
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    static SECOND: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    tracing::subscriber::set_default(subscriber)
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8 logs")
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Recursively lists every file below `dir`, as `/`-separated paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.expect("dir entry");
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).expect("below base");
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
