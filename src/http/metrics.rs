//! `GET /extensions/v2/metrics`: the access check ([`MetricsAccess`]) and then the Prometheus text
//! exposition of the server's [`Metrics`]. Refused scrapes answer 401 `UNAUTHORIZED` with a Basic
//! challenge; a review the cluster cannot answer counts as "not allowed".

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::auth::MetricsAccess;
use crate::ops::metrics::Metrics;

/// Where metrics are served (the OpenShift registry's path).
pub const METRICS_PATH: &str = "/extensions/v2/metrics";

/// The handler.
pub async fn serve(metrics: Arc<Metrics>, access: MetricsAccess, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !access.allowed(authorization).await.unwrap_or(false) {
        return ApiError::metrics_unauthorized().into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
