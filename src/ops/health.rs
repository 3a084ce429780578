//! Health: liveness, readiness and the background storage check.
//!
//! - `GET /healthz`: liveness — 200 while the process serves HTTP. Never limited, never checks
//!   storage (a storage outage must not get the pod restarted).
//! - `GET /healthz/ready` (also `/readyz`): readiness — 200 `{"status":"ok"}` while the last storage
//!   checks passed and the server is not shutting down; else 503 with a short reason (no paths or
//!   backend details: those go to the log).
//! - The storage check (`health.storagedriver`, distribution's names): every `interval` the driver's
//!   `health()` runs (with the interval as timeout); after `threshold` consecutive failures the
//!   registry is unready, and one success makes it ready again. The first check runs at start; until
//!   it passes the registry is unready. With the check disabled, readiness only follows shutdown.
//!
//! The check task holds a weak reference and ends when the [`Health`] value is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::ops::StorageHealthConfig;
use crate::ops::metrics::Metrics;
use crate::storage::StorageDriver;

/// Readiness state shared by the check task, the shutdown path and the probe handler.
#[derive(Debug)]
pub struct Health {
    storage_ok: AtomicBool,
    failures: AtomicU64,
    shutting_down: AtomicBool,
}

impl Health {
    /// Ready unless told otherwise (no storage check).
    pub fn always_ready() -> Arc<Health> {
        Arc::new(Health {
            storage_ok: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Starts the storage check (when enabled); must run inside a tokio runtime.
    pub fn start(
        cfg: &StorageHealthConfig,
        driver: Arc<dyn StorageDriver>,
        metrics: Arc<Metrics>,
    ) -> Arc<Health> {
        let h = Health::always_ready();
        if !cfg.enabled {
            metrics.storage_up.set(1);
            return h;
        }
        h.storage_ok.store(false, Ordering::SeqCst);
        let threshold = u64::try_from(cfg.threshold.max(1)).unwrap_or(1);
        let interval = cfg.interval.max(Duration::from_millis(10));
        let weak = Arc::downgrade(&h);
        tokio::spawn(check_loop(weak, driver, metrics, interval, threshold));
        h
    }

    /// Records one check result.
    pub fn record(&self, ok: bool, threshold: u64) {
        if ok {
            self.failures.store(0, Ordering::SeqCst);
            self.storage_ok.store(true, Ordering::SeqCst);
        } else {
            let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= threshold {
                self.storage_ok.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Shutdown began: readiness fails from now on.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::SeqCst) {
            Err("shutting down")
        } else if !self.storage_ok.load(Ordering::SeqCst) {
            Err("storage unavailable")
        } else {
            Ok(())
        }
    }

    /// The readiness answer.
    pub fn readiness_response(&self) -> Response {
        let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
        match self.readiness() {
            Ok(()) => (StatusCode::OK, json, r#"{"status":"ok"}"#.to_owned()).into_response(),
            Err(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json,
                serde_json::json!({ "status": "unready", "reason": reason }).to_string(),
            )
                .into_response(),
        }
    }
}

async fn check_loop(
    weak: Weak<Health>,
    driver: Arc<dyn StorageDriver>,
    metrics: Arc<Metrics>,
    interval: Duration,
    threshold: u64,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_ok: Option<bool> = None;
    loop {
        tick.tick().await;
        let Some(h) = weak.upgrade() else { return };
        let r = match tokio::time::timeout(interval, driver.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e} (kind {})", e.kind().label())),
            Err(_) => Err(format!("no answer within {interval:?}")),
        };
        match &r {
            Ok(()) if was_ok != Some(true) => {
                tracing::info!(driver = driver.name(), "storage health check passes")
            }
            Err(e) => {
                tracing::warn!(driver = driver.name(), error = %e, "storage health check failed")
            }
            _ => {}
        }
        was_ok = Some(r.is_ok());
        if let Some(free) = driver.free_bytes().await {
            metrics
                .storage_free_bytes
                .set(i64::try_from(free).unwrap_or(i64::MAX));
        }
        h.record(r.is_ok(), threshold);
        metrics
            .storage_up
            .set(i64::from(h.readiness() != Err("storage unavailable")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_counts_consecutive_failures() {
        let h = Health::always_ready();
        h.record(false, 3);
        h.record(false, 3);
        assert!(h.readiness().is_ok());
        h.record(false, 3);
        assert_eq!(h.readiness(), Err("storage unavailable"));
        h.record(true, 3);
        assert!(h.readiness().is_ok());
        h.record(false, 3);
        h.record(false, 3);
        assert!(h.readiness().is_ok());
        h.set_shutting_down();
        assert_eq!(h.readiness(), Err("shutting down"));
    }
}
