//! Prometheus metrics: one [`Metrics`] value per server (its own `prometheus::Registry`, so several
//! servers in one test process do not mix), holding every `imageregistry_*` family this registry
//! exports. Who may read them is `auth::MetricsAccess`; the endpoint is `http::metrics`.
//!
//! Names and labels follow the OpenShift registry (namespace `imageregistry`, subsystems `http` and
//! `storage`) so its dashboards and alerts keep working. The OpenShift registry uses summaries for
//! durations and sizes; the `prometheus` crate has no summaries, so these are histograms with the
//! same names (`_sum` and `_count` are compatible; quantiles come from `histogram_quantile`).
//!
//! Label values are bounded: methods are folded to the known set (others become `OTHER`),
//! operations are route kinds, storage operations are driver method names.
//!
//! Depends on `storage` (to implement its observer trait) and nothing above it.

use std::time::Duration;

use axum::http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::storage::instrumented::StorageObserver;
use crate::storage::StorageError;

const NS: &str = "imageregistry";

/// Duration buckets (seconds): 5 ms .. 5 min.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every metric family of one server.
pub struct Metrics {
    registry: Registry,
    pub http_in_flight: IntGauge,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub http_request_size: Histogram,
    pub http_response_size: Histogram,
    /// Per API operation (`manifest.get`, `blob_upload.patch`, ...).
    pub request_duration: HistogramVec,
    pub storage_duration: HistogramVec,
    pub storage_errors: IntCounterVec,
    /// Bytes received in blob uploads (PATCH/PUT/POST bodies on upload routes).
    pub upload_bytes: IntCounter,
    /// Request limiters: running and queued requests, rejections by reason.
    pub limiter_running: IntGaugeVec,
    pub limiter_queued: IntGaugeVec,
    pub limiter_rejected: IntCounterVec,
    /// 1 while the last storage health check passed, else 0.
    pub storage_up: IntGauge,
    /// Auth review calls (`imageregistry_auth_review_requests_total{type,result}`) and their cache
    /// (`imageregistry_auth_review_cache_requests_total{type}`, type = hit|miss): for the auth layer.
    pub auth_reviews: IntCounterVec,
    pub auth_review_cache: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn size_buckets() -> Vec<f64> {
    // 256 B .. 4 GiB, x4.
    (0..13).map(|i| 256.0 * 4f64.powi(i)).collect()
}

impl Metrics {
    /// A fresh set of families in a fresh registry, with build info and (on Linux) process metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Registration only fails on duplicate names, which this constructor never makes; a failure
        // would leave a family unexported, never break a request.
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                if let Err(e) = registry.register(Box::new(m.clone())) {
                    tracing::error!(error = %e, "cannot register a metric");
                }
                m
            }};
        }
        fn opts(sub: &str, name: &str, help: &str) -> Opts {
            Opts::new(name, help).namespace(NS).subsystem(sub)
        }
        fn hopts(sub: &str, name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
            HistogramOpts::new(name, help)
                .namespace(NS)
                .subsystem(sub)
                .buckets(buckets)
        }
        // The constructors only fail on invalid names or label names, all constant here.
        #[allow(clippy::expect_used)]
        let m = Metrics {
            http_in_flight: reg!(IntGauge::with_opts(opts(
                "http",
                "in_flight_requests",
                "Requests being served."
            ))
            .expect("metric")),
            http_requests_total: reg!(IntCounterVec::new(
                opts("http", "requests_total", "Requests served, by status code and method."),
                &["code", "method"]
            )
            .expect("metric")),
            http_request_duration: reg!(HistogramVec::new(
                hopts(
                    "http",
                    "request_duration_seconds",
                    "Time to serve a request, body included, by method.",
                    DURATION_BUCKETS.to_vec()
                ),
                &["method"]
            )
            .expect("metric")),
            http_request_size: reg!(Histogram::with_opts(hopts(
                "http",
                "request_size_bytes",
                "Request body sizes.",
                size_buckets()
            ))
            .expect("metric")),
            http_response_size: reg!(Histogram::with_opts(hopts(
                "http",
                "response_size_bytes",
                "Response body sizes.",
                size_buckets()
            ))
            .expect("metric")),
            request_duration: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "request_duration_seconds",
                    "Time to serve a registry API request, by operation."
                )
                .namespace(NS)
                .buckets(DURATION_BUCKETS.to_vec()),
                &["operation"]
            )
            .expect("metric")),
            storage_duration: reg!(HistogramVec::new(
                hopts(
                    "storage",
                    "duration_seconds",
                    "Time of storage driver calls, by operation.",
                    DURATION_BUCKETS.to_vec()
                ),
                &["operation"]
            )
            .expect("metric")),
            storage_errors: reg!(IntCounterVec::new(
                opts(
                    "storage",
                    "errors_total",
                    "Failed storage driver calls, by operation and error code."
                ),
                &["operation", "code"]
            )
            .expect("metric")),
            upload_bytes: reg!(IntCounter::with_opts(opts(
                "http",
                "upload_bytes_total",
                "Bytes received in blob uploads."
            ))
            .expect("metric")),
            limiter_running: reg!(IntGaugeVec::new(
                opts(
                    "http",
                    "limiter_running_requests",
                    "Requests holding a running slot, by limiter (read, write)."
                ),
                &["limiter"]
            )
            .expect("metric")),
            limiter_queued: reg!(IntGaugeVec::new(
                opts(
                    "http",
                    "limiter_queued_requests",
                    "Requests waiting for a running slot, by limiter."
                ),
                &["limiter"]
            )
            .expect("metric")),
            limiter_rejected: reg!(IntCounterVec::new(
                opts(
                    "http",
                    "limiter_rejected_requests_total",
                    "Requests refused with 429, by limiter and reason (queue_full, timeout, canceled)."
                ),
                &["limiter", "reason"]
            )
            .expect("metric")),
            storage_up: reg!(IntGauge::with_opts(opts(
                "storage",
                "health_up",
                "1 while the storage health check passes, else 0."
            ))
            .expect("metric")),
            auth_reviews: reg!(IntCounterVec::new(
                opts(
                    "auth",
                    "review_requests_total",
                    "Authentication and authorization review calls, by type and result."
                ),
                &["type", "result"]
            )
            .expect("metric")),
            auth_review_cache: reg!(IntCounterVec::new(
                opts(
                    "auth",
                    "review_cache_requests_total",
                    "Lookups in the review cache, by type (hit, miss)."
                ),
                &["type"]
            )
            .expect("metric")),
            registry: registry.clone(),
        };
        #[allow(clippy::expect_used)]
        let build = IntGaugeVec::new(
            Opts::new("build_info", "Build information; the value is 1.").namespace(NS),
            &["major", "minor", "gitCommit", "gitVersion"],
        )
        .expect("metric");
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION_MAJOR"),
                env!("CARGO_PKG_VERSION_MINOR"),
                option_env!("IMAGE_REGISTRY_GIT_COMMIT").unwrap_or("unknown"),
                concat!("v", env!("CARGO_PKG_VERSION")),
            ])
            .set(1);
        let _ = registry.register(Box::new(build));
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = registry.register(Box::new(pc)) {
                tracing::warn!(error = %e, "process metrics unavailable");
            }
        }
        // Both limiters show up (at 0) even when unused, so dashboards have a series.
        for l in ["read", "write"] {
            m.limiter_running.with_label_values(&[l]).set(0);
            m.limiter_queued.with_label_values(&[l]).set(0);
            for r in ["queue_full", "timeout", "canceled"] {
                m.limiter_rejected.with_label_values(&[l, r]).inc_by(0);
            }
        }
        m
    }

    /// The registry, for families added elsewhere.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// A method as a bounded label value.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl StorageObserver for Metrics {
    fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&StorageError>) {
        self.storage_duration
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
        if let Some(e) = error {
            let code = match e {
                StorageError::NotFound(_) => "PATH_NOT_FOUND",
                StorageError::InvalidPath(_) => "INVALID_PATH",
                StorageError::Io { .. } => "IO",
                StorageError::Backend(_) => "BACKEND",
            };
            self.storage_errors
                .with_label_values(&[operation, code])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_openshift_names() {
        let m = Metrics::new();
        m.http_requests_total
            .with_label_values(&["200", "GET"])
            .inc();
        m.storage_errors
            .with_label_values(&["stat", "PATH_NOT_FOUND"])
            .inc();
        let text = m.encode();
        for name in [
            "imageregistry_build_info{",
            "imageregistry_http_in_flight_requests ",
            "imageregistry_http_requests_total{code=\"200\",method=\"GET\"} 1",
            "imageregistry_storage_errors_total{code=\"PATH_NOT_FOUND\",operation=\"stat\"} 1",
            "imageregistry_http_limiter_running_requests{limiter=\"write\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing in:\n{text}");
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
