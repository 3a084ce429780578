//! Read-only mode (`readOnly`, or distribution's `storage.maintenance.readonly.enabled`): every
//! write to the `/v2` API — upload, manifest put, delete, mount — answers `405 UNSUPPORTED` with "the
//! registry is in read-only mode", as distribution does in maintenance; reads are untouched.
//!
//! Runs after the classify layer: it reads the typed `Route` from the request extensions; requests
//! outside `/v2` carry none and pass.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::{ApiError, Route};

/// The middleware; its state says whether read-only mode is on.
pub async fn read_only(State(on): State<bool>, req: Request, next: Next) -> Response {
    if on {
        if let Some(route) = req.extensions().get::<Route>() {
            if route.is_write(req.method()) {
                return ApiError::read_only().into_response();
            }
        }
    }
    next.run(req).await
}
