//! Observing the registry: the Prometheus families every layer counts into ([`metrics`]) and
//! liveness/readiness with the background storage check ([`health`]).
//!
//! Depends on `storage` (the metrics implement its observer trait; the health check calls the
//! driver) and `config`; nothing above them. Served over HTTP by `http::metrics` and `app`.

pub mod health;
pub mod metrics;
