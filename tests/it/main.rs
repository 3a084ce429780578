//! The integration tests, in one test crate (one binary to build and link instead of one per
//! file). Every test starts its registry through [`harness`]: in-process from a config, built as
//! the `image-registry` binary builds it, or (for signals and restarts) as a child process.
//!
//! Modules by concern: the OCI API (`blobs`, `uploads`, `manifests`, `listing`, `referrers`,
//! `errors`, `concurrency`), storage (`storage_layout`), config switches (`config_modes`), auth
//! (`auth`), the pull-through cache against real upstreams (`pullthrough`), operations (`ops`: metrics, health, access log, limits, TLS, the process) and the
//! deployment files (`deploy_manifests`).

mod auth;
mod blobs;
mod concurrency;
mod config_modes;
mod deploy_manifests;
mod errors;
mod events;
#[path = "../fake_kube/mod.rs"]
mod fake_kube;
mod gc;
mod hardening;
mod harness;
mod listing;
mod manifests;
mod ops;
mod props;
mod pullthrough;
mod referrers;
mod storage_layout;
mod uploads;
