//! The integration tests, in one test crate (one binary to build and link instead of one per
//! file). Every test starts its registry through [`harness`]: in-process from a config, built as
//! the `image-registry` binary builds it, or (for signals and restarts) as a child process.

mod auth_openshift;
mod auth_standalone;
mod blobs;
mod concurrency;
mod config_modes;
mod deploy_manifests;
mod errors;
#[path = "../fake_kube/mod.rs"]
mod fake_kube;
mod harness;
mod listing;
mod manifests;
mod ops_access_log;
mod ops_http;
mod ops_limits;
mod ops_process;
mod ops_tls;
mod referrers;
mod storage_layout;
mod uploads;
