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
    /// Bytes free on the storage volume (filesystem storage; updated by the health check).
    pub storage_free_bytes: IntGauge,
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

/// `imageregistry_build_info` (value 1) and, on Linux, the `process_*` families.
fn register_build_and_process(f: &Families<'_>) {
    let build = f.gauge_vec(
        "",
        "build_info",
        "Build information; the value is 1.",
        &["major", "minor", "gitCommit", "gitVersion"],
    );
    build
        .with_label_values(&[
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR"),
            option_env!("IMAGE_REGISTRY_GIT_COMMIT").unwrap_or("unknown"),
            concat!("v", env!("CARGO_PKG_VERSION")),
        ])
        .set(1);
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = f.registry.register(Box::new(pc)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
    }
}

fn size_buckets() -> Vec<f64> {
    // 256 B .. 4 GiB, x4.
    (0..13).map(|i| 256.0 * 4f64.powi(i)).collect()
}

/// Makes families in one `prometheus::Registry` and registers them: every family of the crate is
/// made through it, with the `imageregistry` namespace. Name `sub` "" for no subsystem.
///
/// Registration only fails on duplicate names and the constructors only on invalid (constant)
/// names: a failure is logged and leaves a family unexported, never breaks a request.
pub struct Families<'a> {
    registry: &'a Registry,
}

#[allow(clippy::expect_used)]
impl<'a> Families<'a> {
    pub fn new(registry: &'a Registry) -> Families<'a> {
        Families { registry }
    }

    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, m: M) -> M {
        if let Err(e) = self.registry.register(Box::new(m.clone())) {
            tracing::error!(error = %e, "cannot register a metric");
        }
        m
    }

    fn opts(sub: &str, name: &str, help: &str) -> Opts {
        Opts::new(name, help).namespace(NS).subsystem(sub)
    }

    fn hopts(sub: &str, name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
        HistogramOpts::new(name, help)
            .namespace(NS)
            .subsystem(sub)
            .buckets(buckets.to_vec())
    }

    pub fn counter(&self, sub: &str, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(Self::opts(sub, name, help)).expect("metric"))
    }

    pub fn counter_vec(&self, sub: &str, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Self::opts(sub, name, help), labels).expect("metric"))
    }

    pub fn gauge(&self, sub: &str, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(Self::opts(sub, name, help)).expect("metric"))
    }

    pub fn gauge_vec(&self, sub: &str, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Self::opts(sub, name, help), labels).expect("metric"))
    }

    pub fn histogram(&self, sub: &str, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.register(Histogram::with_opts(Self::hopts(sub, name, help, buckets)).expect("metric"))
    }

    pub fn histogram_vec(
        &self,
        sub: &str,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> HistogramVec {
        self.register(
            HistogramVec::new(Self::hopts(sub, name, help, buckets), labels).expect("metric"),
        )
    }
}

impl Metrics {
    /// A fresh set of families in a fresh registry, with build info and (on Linux) process metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let f = Families::new(&registry);
        let sizes = size_buckets();
        let m = Metrics {
            http_in_flight: f.gauge("http", "in_flight_requests", "Requests being served."),
            http_requests_total: f.counter_vec(
                "http",
                "requests_total",
                "Requests served, by status code and method.",
                &["code", "method"],
            ),
            http_request_duration: f.histogram_vec(
                "http",
                "request_duration_seconds",
                "Time to serve a request, body included, by method.",
                DURATION_BUCKETS,
                &["method"],
            ),
            http_request_size: f.histogram(
                "http",
                "request_size_bytes",
                "Request body sizes.",
                &sizes,
            ),
            http_response_size: f.histogram(
                "http",
                "response_size_bytes",
                "Response body sizes.",
                &sizes,
            ),
            request_duration: f.histogram_vec(
                "",
                "request_duration_seconds",
                "Time to serve a registry API request, by operation.",
                DURATION_BUCKETS,
                &["operation"],
            ),
            storage_duration: f.histogram_vec(
                "storage",
                "duration_seconds",
                "Time of storage driver calls, by operation.",
                DURATION_BUCKETS,
                &["operation"],
            ),
            storage_errors: f.counter_vec(
                "storage",
                "errors_total",
                "Failed storage driver calls, by operation, error code and kind (full, read_only, denied, not_found, invalid_path, io, backend).",
                &["operation", "code", "kind"],
            ),
            upload_bytes: f.counter(
                "http",
                "upload_bytes_total",
                "Bytes received in blob uploads.",
            ),
            limiter_running: f.gauge_vec(
                "http",
                "limiter_running_requests",
                "Requests holding a running slot, by limiter (read, write).",
                &["limiter"],
            ),
            limiter_queued: f.gauge_vec(
                "http",
                "limiter_queued_requests",
                "Requests waiting for a running slot, by limiter.",
                &["limiter"],
            ),
            limiter_rejected: f.counter_vec(
                "http",
                "limiter_rejected_requests_total",
                "Requests refused with 429, by limiter and reason (queue_full, timeout, canceled).",
                &["limiter", "reason"],
            ),
            storage_up: f.gauge(
                "storage",
                "health_up",
                "1 while the storage health check passes, else 0.",
            ),
            storage_free_bytes: f.gauge(
                "storage",
                "filesystem_free_bytes",
                "Bytes free for the registry on the filesystem storage volume (statvfs f_bavail), at the last health check.",
            ),
            auth_reviews: f.counter_vec(
                "auth",
                "review_requests_total",
                "Authentication and authorization review calls, by type and result.",
                &["type", "result"],
            ),
            auth_review_cache: f.counter_vec(
                "auth",
                "review_cache_requests_total",
                "Lookups in the review cache, by type (hit, miss).",
                &["type"],
            ),
            registry: registry.clone(),
        };
        register_build_and_process(&f);
        m.zero_limiter_series();
        m
    }

    /// Both limiters show up (at 0) even when unused, so dashboards have a series.
    fn zero_limiter_series(&self) {
        for l in ["read", "write"] {
            self.limiter_running.with_label_values(&[l]).set(0);
            self.limiter_queued.with_label_values(&[l]).set(0);
            for r in ["queue_full", "timeout", "canceled"] {
                self.limiter_rejected.with_label_values(&[l, r]).inc_by(0);
            }
        }
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
                StorageError::Conflict(_) => "CONFLICT",
            };
            self.storage_errors
                .with_label_values(&[operation, code, e.kind().label()])
                .inc();
        }
    }
}

/// The pull-through cache's families, with the OpenShift registry's names, made on a server's
/// registry when upstreams are configured:
/// `imageregistry_pullthrough_blobstore_cache_requests_total{type}` (`Hit`: a blob served from
/// storage, `Miss`: fetched upstream), `imageregistry_pullthrough_repository_duration_seconds`
/// and `imageregistry_pullthrough_repository_errors_total` by `funcname` (`manifest`, `blob`),
/// and `imageregistry_pullthrough_upstream_bytes_total`.
pub struct PullThroughMetrics {
    pub cache_requests: IntCounterVec,
    pub duration: HistogramVec,
    pub errors: IntCounterVec,
    pub upstream_bytes: IntCounter,
}

impl PullThroughMetrics {
    pub fn new(m: &Metrics) -> PullThroughMetrics {
        let f = Families::new(m.registry());
        let p = PullThroughMetrics {
            cache_requests: f.counter_vec(
                "pullthrough",
                "blobstore_cache_requests_total",
                "Blob requests of mirrored repositories, by type (Hit: from storage, Miss: fetched upstream).",
                &["type"],
            ),
            duration: f.histogram_vec(
                "pullthrough",
                "repository_duration_seconds",
                "Time of pull-through lookups (storage or upstream), by funcname.",
                DURATION_BUCKETS,
                &["funcname"],
            ),
            errors: f.counter_vec(
                "pullthrough",
                "repository_errors_total",
                "Pull-through lookups the upstream failed, by funcname.",
                &["funcname"],
            ),
            upstream_bytes: f.counter(
                "pullthrough",
                "upstream_bytes_total",
                "Blob bytes fetched from upstream registries.",
            ),
        };
        for t in ["Hit", "Miss"] {
            p.cache_requests.with_label_values(&[t]).inc_by(0);
        }
        p
    }

    /// One lookup: `kind` is `manifest` or `blob`.
    pub fn observe(&self, kind: &'static str, hit: bool, err: bool, elapsed: Duration) {
        if kind == "blob" {
            self.cache_requests
                .with_label_values(&[if hit { "Hit" } else { "Miss" }])
                .inc();
        }
        self.duration
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
        if err {
            self.errors.with_label_values(&[kind]).inc();
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
            .with_label_values(&["stat", "PATH_NOT_FOUND", "not_found"])
            .inc();
        let text = m.encode();
        for name in [
            "imageregistry_build_info{",
            "imageregistry_http_in_flight_requests ",
            "imageregistry_http_requests_total{code=\"200\",method=\"GET\"} 1",
            "imageregistry_storage_errors_total{code=\"PATH_NOT_FOUND\",kind=\"not_found\",operation=\"stat\"} 1",
            "imageregistry_http_limiter_running_requests{limiter=\"write\"} 0",
        ] {
            assert!(text.contains(name), "{name} missing in:\n{text}");
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }
}

/// Delivery latency buckets (seconds): 1 ms .. 30 s.
const DELIVERY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Webhook notification families (`imageregistry_notifications_*`), registered by the
/// notifier when endpoints are configured.
#[derive(Clone)]
pub struct NotificationMetrics {
    /// Events by endpoint and result: `delivered`, `failed` (one per event per failed attempt),
    /// `dropped` (spool over its bound).
    pub events: IntCounterVec,
    /// Events written and not yet delivered (nor skipped), by endpoint.
    pub pending: IntGaugeVec,
    /// Time from an event's write to the receiver's answer that took it, by endpoint.
    pub latency: HistogramVec,
}

impl NotificationMetrics {
    pub fn register(metrics: &Metrics) -> NotificationMetrics {
        let f = Families::new(metrics.registry());
        NotificationMetrics {
            events: f.counter_vec(
                "notifications",
                "events_total",
                "Notification events by endpoint and result (delivered, failed, dropped).",
                &["endpoint", "result"],
            ),
            pending: f.gauge_vec(
                "notifications",
                "pending",
                "Events waiting for delivery, by endpoint.",
                &["endpoint"],
            ),
            latency: f.histogram_vec(
                "notifications",
                "delivery_duration_seconds",
                "Time from an event being recorded to its delivery, by endpoint.",
                DELIVERY_BUCKETS,
                &["endpoint"],
            ),
        }
    }
}

/// Lifecycle families, registered by every server (at 0 until something happens, so dashboards
/// have series): `imageregistry_gc_runs_total{result}` (scheduled runs: `success`, `failure`,
/// `skipped` when another process held the lease), `imageregistry_gc_deleted_total{kind}`
/// (`manifest`, `blob`, `layer_link`, `repository`, `tag`; dry runs add nothing),
/// `imageregistry_gc_reclaimed_bytes_total`, `imageregistry_gc_last_success_timestamp_seconds`
/// (0: none yet in this process) and `imageregistry_uploads_purged_total`.
pub struct LifecycleMetrics {
    pub gc_runs: IntCounterVec,
    pub gc_deleted: IntCounterVec,
    pub gc_reclaimed_bytes: IntCounter,
    pub gc_last_success: IntGauge,
    pub uploads_purged: IntCounter,
}

/// Values of `imageregistry_gc_runs_total`'s `result` label.
pub const GC_RESULTS: [&str; 3] = ["success", "failure", "skipped"];
/// Values of `imageregistry_gc_deleted_total`'s `kind` label.
pub const GC_KINDS: [&str; 5] = ["manifest", "blob", "layer_link", "repository", "tag"];

impl LifecycleMetrics {
    pub fn register(m: &Metrics) -> LifecycleMetrics {
        let f = Families::new(m.registry());
        let l = LifecycleMetrics {
            gc_runs: f.counter_vec(
                "gc",
                "runs_total",
                "Scheduled garbage collection runs, by result (success, failure, skipped: another process held the lease).",
                &["result"],
            ),
            gc_deleted: f.counter_vec(
                "gc",
                "deleted_total",
                "Objects garbage collection deleted, by kind (manifest, blob, layer_link, repository, tag).",
                &["kind"],
            ),
            gc_reclaimed_bytes: f.counter(
                "gc",
                "reclaimed_bytes_total",
                "Blob bytes garbage collection deleted.",
            ),
            gc_last_success: f.gauge(
                "gc",
                "last_success_timestamp_seconds",
                "Unix time of the end of this process's last successful scheduled run (0: none yet).",
            ),
            uploads_purged: f.counter(
                "",
                "uploads_purged_total",
                "Stale upload folders deleted by upload purging.",
            ),
        };
        for r in GC_RESULTS {
            l.gc_runs.with_label_values(&[r]).inc_by(0);
        }
        for k in GC_KINDS {
            l.gc_deleted.with_label_values(&[k]).inc_by(0);
        }
        l
    }
}
