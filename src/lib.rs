//! image-registry: an OCI distribution registry server, a drop-in for the OpenShift integrated
//! registry and CNCF distribution (same API, same storage layout, same config conventions).
//!
//! Modules, dependencies pointing one way (checked by the `layering` test):
//!
//! - `app`: the wiring; builds everything from config and composes the HTTP stack. Sees all.
//! - `layers` (tower layers: access log, metrics, limits, auth, read-only) over `http` (axum: the
//!   URL grammar with its query, the one error map, thin handlers).
//! - `lifecycle` (garbage collection over the storage layout; no HTTP, no registry types).
//! - `registry` (the domain) and `auth` (modes, reviews, tokens; no HTTP framework types).
//! - `storage` (one driver trait, distribution's layout drawn once, fs/memory/object stores).
//! - `oci` (vocabulary, no I/O).
//! - `ops` (metrics families, health) and `net` (accept loop, server TLS, outbound client):
//!   services of the process that the layers above use.
//! - `upstream`: the upstream registries of the pull-through cache, behind the domain's
//!   `PullThrough` trait.
//! - `config`: typed config with the `REGISTRY_*` overlay, a leaf anything may read.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod imagestreams;
#[cfg(test)]
mod layering;
pub mod layers;
pub mod lifecycle;
pub mod net;
pub mod oci;
pub mod ops;
pub mod registry;
pub mod storage;
pub mod upstream;
