//! The HTTP metrics layer: in-flight gauge, requests by code and method, durations by method and by
//! API operation, request and response sizes, and upload bytes. Everything is recorded when the
//! response body has been written (or dropped), so a download is measured to its last byte.
//!
//! The API operation comes from [`RouteKind`], which the classify layer puts into the response
//! extensions (`manifest.get`, `blob_upload.patch`, ...); requests outside `/v2` have none and are
//! only counted in the `http` families.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::body::Observed;
use crate::ops::metrics::{method_label, Metrics};

/// The kind of `/v2` route a response answered (`Route::kind`), set by the classify layer.
#[derive(Debug, Clone, Copy)]
pub struct RouteKind(pub &'static str);

/// Whether a request carries blob upload bytes.
fn is_upload(method: &Method, path: &str) -> bool {
    matches!(*method, Method::PATCH | Method::PUT | Method::POST)
        && path.starts_with("/v2/")
        && path.contains("/blobs/uploads")
}

/// Counts a request in flight until dropped (also when the client goes away before an answer).
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn new(m: Arc<Metrics>) -> InFlight {
        m.http_in_flight.inc();
        InFlight(m)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.http_in_flight.dec();
    }
}

/// The middleware.
pub async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let upload = is_upload(req.method(), req.uri().path());
    let in_flight = InFlight::new(m.clone());
    let mreq = m.clone();
    let req = req.map(|b| {
        Observed::wrap(b, move |bytes, _| {
            mreq.http_request_size.observe(bytes as f64);
            if upload {
                mreq.upload_bytes.inc_by(bytes);
            }
        })
    });
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    let operation = resp
        .extensions()
        .get::<RouteKind>()
        .map(|k| format!("{}.{}", k.0, method.to_ascii_lowercase()));
    resp.map(move |b| {
        Observed::wrap(b, move |bytes, _| {
            let secs = start.elapsed().as_secs_f64();
            m.http_response_size.observe(bytes as f64);
            m.http_requests_total
                .with_label_values(&[code.as_str(), method])
                .inc();
            m.http_request_duration
                .with_label_values(&[method])
                .observe(secs);
            if let Some(op) = operation {
                m.request_duration
                    .with_label_values(&[op.as_str()])
                    .observe(secs);
            }
            drop(in_flight);
        })
    })
}
