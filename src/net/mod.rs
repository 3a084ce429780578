//! The network edges of the process: accepting connections ([`server`]: the accept loop, HTTP/1.1
//! and HTTP/2, graceful drain), the server side of TLS ([`tls`]: certificates per route), and
//! calling out ([`outbound`]: the one HTTP client setup for the cluster API and object stores,
//! with the operator's proxy and trusted CAs).
//!
//! Depends on `config` only (and `server` on the axum `Router` it serves); the layers above hand
//! it what to serve.

pub mod outbound;
pub mod server;
pub mod tls;
