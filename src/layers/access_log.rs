//! The access log: one line per request at `info` on target `image_registry::access`, written when
//! the response body has been sent (or the client went away), with the request id, remote address,
//! user, method, path, status, response bytes and duration.
//!
//! Never logged: query strings (they carry upload state), headers (`Authorization`, cookies), bodies.
//!
//! The request id is taken from an incoming `X-Request-Id` when it is short and plain (letters,
//! digits, `-`, `_`, `.`, at most 64), else a new UUID; it is returned in `X-Request-Id` and put
//! into the request extensions as [`RequestId`].
//!
//! User hook: the layer puts an [`AccessUser`] into the request extensions; an inner layer (auth)
//! calls [`AccessUser::set`] with the user name once it knows it, and the line shows it (`-` when
//! unknown).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::body::Observed;

/// The request id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of a request, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Where an inner layer records who made the request; shared with the access log.
#[derive(Debug, Clone, Default)]
pub struct AccessUser(Arc<OnceLock<String>>);

impl AccessUser {
    /// Records the user name (the first call wins). Pass a name, never a token.
    pub fn set(&self, user: impl Into<String>) {
        let _ = self.0.set(user.into());
    }

    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

fn usable_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| s.to_owned())
}

/// The middleware.
pub async fn access_log(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(usable_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "-".into());
    let user = AccessUser::default();
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(user.clone());
    let method = req.method().clone();
    // The path only: query strings carry upload state and tokens.
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let status = resp.status().as_u16();
    resp.map(move |b| {
        Observed::wrap(b, move |bytes, complete| {
            tracing::info!(
                target: "image_registry::access",
                request_id = %id,
                remote = %remote,
                user = user.get().unwrap_or("-"),
                method = %method,
                path = %path,
                status,
                bytes,
                complete,
                duration_ms = start.elapsed().as_micros() as f64 / 1000.0,
                "request"
            );
        })
    })
}
