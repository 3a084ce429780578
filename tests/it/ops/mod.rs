//! Operating the registry: metrics, readiness, the access log, request limits, TLS and outbound
//! clients, and the real process under SIGTERM.

mod access_log;
mod health;
mod limits;
mod metrics;
mod process;
mod tls;
