//! Cross-cutting tower layers of the HTTP stack, composed in one commented order in `app.rs`:
//! access log, metrics, `http.headers`, request limits, read-only. Each reads what it needs from the request (method,
//! path, the typed `Route` in extensions) and never looks into handlers.
//!
//! Depends on `http` (errors, `Route`), `metrics` and `config`; `registry` and `storage` are out of
//! reach.

pub mod access_log;
pub mod auth;
pub mod body;
pub mod framing;
pub mod headers;
pub mod limits;
pub mod metrics;
pub mod readonly;

/// Paths no policy layer may refuse: probes and the base path (`/` and `/healthz` are never limited,
/// as the OpenShift registry does), plus readiness and metrics so an overloaded registry can still be
/// observed.
pub fn is_exempt(path: &str) -> bool {
    matches!(
        path,
        "/" | "/healthz" | "/readyz" | crate::http::metrics::METRICS_PATH
    ) || path.starts_with("/healthz/")
}
