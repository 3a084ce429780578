//! The one test harness: every integration test starts its registry through [`TestServer`]
//! (in-process, built from config as the binary builds it) or, when it needs a real process,
//! through [`Process`]. The modules:
//!
//! - `server`: [`TestServer`] and its builder (storage kind, read-only, deletes, secret, auth,
//!   metrics, extra config), or a whole YAML config;
//! - `http`: the client, requests, headers, credentials, the OCI error-shape checks;
//! - `oci`: media types, digests, descriptors, manifests; pushing blobs, uploads, manifests, images;
//! - `ops`: metric samples and scrapes, polling, captured logs, files on disk;
//! - `process`: the binary as a child process;
//! - `receiver`: a real webhook receiver that records notifications and can be stopped.
//!
//! The fake cluster API for OpenShift auth lives in `tests/fake_kube` (shared with
//! `examples/fake_kube.rs`, which serves it to `tests/e2e/auth.sh`).

pub mod http;
pub mod oci;
pub mod ops;
pub mod process;
pub mod receiver;
pub mod server;

pub use http::*;
pub use oci::*;
pub use ops::*;
pub use process::Process;
pub use receiver::Receiver;
pub use server::{ServerBuilder, TestServer};
