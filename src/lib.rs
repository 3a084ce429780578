//! image-registry: an OCI distribution registry server, a drop-in for the OpenShift integrated
//! registry and CNCF distribution (same API, same storage layout, same config conventions).
//!
//! Layers, dependencies pointing one way: `app` (wiring) -> `http` (axum) -> `registry` (domain) ->
//! `storage` (drivers, layout) -> `oci` (vocabulary). `config` is a leaf anything may read.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod config;
pub mod health;
pub mod http;
pub mod layers;
pub mod metrics;
pub mod oci;
pub mod outbound;
pub mod registry;
pub mod server;
pub mod storage;
pub mod tls;
