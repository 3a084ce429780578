//! The HTTP face of the registry (axum): the URL grammar ([`route`]), the error map ([`error`]),
//! header grammar ([`headers`]) and thin handlers per endpoint family that call `registry`.
//!
//! Depends on `registry`, `oci` and `config`; nothing below depends on it. Handlers never format
//! storage paths or decide visibility: they translate HTTP to registry calls and back.

pub mod error;
pub mod headers;
pub mod metrics;
pub mod route;

mod blobs;
mod listing;
mod manifests;

use std::io;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

pub use error::ApiError;
pub use route::{Page, Query, Route, UploadStart};

use crate::registry::{ByteStream, Registry};

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
}

/// Response header every `/v2` answer carries.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const API_VERSION: HeaderValue = HeaderValue::from_static("registry/2.0");

/// Percent-encodes a query value.
pub(crate) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The request body as a byte stream for the registry.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

/// Dispatches a `/v2` request to its handler. The `Route` was parsed by the classify layer.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let Some(route) = req.extensions().get::<Route>().cloned() else {
        return ApiError::not_found().into_response();
    };
    let (parts, body) = req.into_parts();
    let req = &parts;
    let method = req.method.clone();
    let r = match (&route, &method) {
        (Route::Base, &Method::GET | &Method::HEAD) => Ok(base()),
        (Route::Catalog { page }, &Method::GET) => listing::catalog(&state, page, req).await,
        (Route::Tags { name, page }, &Method::GET) => listing::tags(&state, name, page).await,
        (Route::Manifest { name, reference }, &Method::GET | &Method::HEAD) => {
            manifests::get(&state, name, reference, req).await
        }
        (Route::Manifest { name, reference }, &Method::PUT) => {
            manifests::put(&state, name, reference, req, body).await
        }
        (Route::Manifest { name, reference }, &Method::DELETE) => {
            manifests::delete(&state, name, reference).await
        }
        (
            Route::Referrers {
                name,
                digest,
                artifact_type,
            },
            &Method::GET,
        ) => manifests::referrers(&state, name, digest, artifact_type.as_deref()).await,
        (Route::Blob { name, digest }, &Method::GET | &Method::HEAD) => {
            blobs::get(&state, name, digest, req).await
        }
        (Route::Blob { name, digest }, &Method::DELETE) => {
            blobs::delete(&state, name, digest).await
        }
        (Route::TagHistory { name, tag }, &Method::GET) => {
            listing::tag_history(&state, name, tag).await
        }
        (Route::AdminBlob { digest }, &Method::DELETE) => {
            blobs::delete_from_storage(&state, digest).await
        }
        (Route::UploadStart { name, start }, &Method::POST) => {
            blobs::start_upload(&state, name, start, req, body).await
        }
        (
            Route::Upload {
                name,
                uuid,
                state: token,
                ..
            },
            &Method::GET,
        ) => blobs::upload_status(&state, name, uuid, token.as_deref()).await,
        (
            Route::Upload {
                name,
                uuid,
                state: token,
                ..
            },
            &Method::PATCH,
        ) => blobs::patch_upload(&state, name, uuid, token.as_deref(), req, body).await,
        (
            Route::Upload {
                name,
                uuid,
                state: token,
                digest,
            },
            &Method::PUT,
        ) => {
            blobs::put_upload(
                &state,
                name,
                uuid,
                token.as_deref(),
                digest.as_ref(),
                req,
                body,
            )
            .await
        }
        (
            Route::Upload {
                name,
                uuid,
                state: token,
                ..
            },
            &Method::DELETE,
        ) => blobs::cancel_upload(&state, name, uuid, token.as_deref()).await,
        _ => Err(ApiError::method_not_allowed()
            .with_header(axum::http::header::ALLOW, route.allowed_methods())),
    };
    r.unwrap_or_else(IntoResponse::into_response)
}

fn base() -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response()
}
