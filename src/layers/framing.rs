//! Message framing checks that hyper leaves to the application (RFC 9112), answered with the
//! spec's error JSON before any other policy runs:
//!
//! - an HTTP/1.1 request must carry exactly one `Host` (none or several: `400 UNSUPPORTED`);
//! - `Transfer-Encoding` may only be a single `chunked` (hyper decodes that and nothing else): any
//!   other coding, e.g. `gzip, chunked`, is `501 UNSUPPORTED` (RFC 9112 §6.1: a coding the server
//!   does not understand) — storing still-encoded bytes would break digests and invite request
//!   smuggling; `chunked` applied twice is `400` (RFC 9112 §7: it must be applied once);
//! - a request target longer than [`MAX_URI_BYTES`] is `414 UNSUPPORTED`;
//! - request headers (names, values and their separators) above `http.maxheaderbytes` are
//!   `431 UNSUPPORTED`.
//!
//! Heads larger than hyper's read buffer never reach this layer: hyper answers them with a bare
//! `431` (or `414` for a target above 64 KiB) and closes the connection (see `net/server.rs`).
//!
//! Depends on `http` (the error type) and `config` (its default).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::{ApiError, ErrorCode};

/// Longest request target (path and query) answered normally; longer gets 414. Names are at most
/// 255 bytes and `_state` tokens a few hundred, so real requests stay far below.
pub const MAX_URI_BYTES: usize = 8 << 10;

/// The limits this layer enforces.
#[derive(Debug, Clone, Copy)]
pub struct FramingLimits {
    /// `http.maxheaderbytes`: the most header bytes answered normally.
    pub max_header_bytes: usize,
}

impl Default for FramingLimits {
    fn default() -> Self {
        FramingLimits {
            max_header_bytes: crate::config::ConnectionLimits::default().max_header_bytes,
        }
    }
}

/// The framing checks; see the module docs.
pub async fn framing(State(limits): State<FramingLimits>, req: Request, next: Next) -> Response {
    match check(&req, limits) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let mut resp = e.into_response();
            // The request's framing is in doubt: do not read another request from the connection.
            resp.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            resp
        }
    }
}

fn bad(status: StatusCode, message: &str) -> ApiError {
    ApiError::new(status, ErrorCode::Unsupported, message)
}

fn check(req: &Request, limits: FramingLimits) -> Result<(), ApiError> {
    let h = req.headers();
    if req.version() == Version::HTTP_11 && h.get_all(header::HOST).iter().count() != 1 {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request must carry exactly one Host header",
        ));
    }
    let mut codings = 0usize;
    let mut chunked = 0usize;
    for v in h.get_all(header::TRANSFER_ENCODING) {
        let Ok(v) = v.to_str() else {
            return Err(bad(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported Transfer-Encoding",
            ));
        };
        for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            codings += 1;
            if c.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            }
        }
    }
    if codings > chunked {
        return Err(bad(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported Transfer-Encoding: only chunked is accepted",
        ));
    }
    if chunked > 1 {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "Transfer-Encoding chunked applied more than once",
        ));
    }
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(bad(
            StatusCode::URI_TOO_LONG,
            &format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let header_bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > limits.max_header_bytes {
        return Err(bad(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "the request headers are larger than {} bytes",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}
