//! Wiring: builds the storage driver and registry from config and composes the HTTP stack — every
//! cross-cutting layer in one place, in one commented order.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::config::{Config, StorageKind};
use crate::http::{dispatch, ApiError, AppState, Route, API_VERSION, API_VERSION_HEADER};
use crate::registry::{Registry, RegistryOptions, UploadSecret};
use crate::storage::fs::FsDriver;
use crate::storage::memory::MemoryDriver;
use crate::storage::StorageDriver;

/// Switches for the HTTP stack.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    pub read_only: bool,
}

/// Builds the storage driver a config names.
pub fn build_driver(config: &Config) -> anyhow::Result<Arc<dyn StorageDriver>> {
    Ok(match config.storage_kind()? {
        StorageKind::Filesystem { root } => {
            Arc::new(FsDriver::new(&root).map_err(|e| {
                anyhow::anyhow!("cannot use storage folder {}: {e}", root.display())
            })?)
        }
        StorageKind::InMemory => Arc::new(MemoryDriver::new()),
        kind => {
            crate::storage::object::build_object_driver(&kind, !config.storage.redirect.disable)?
                .ok_or_else(|| anyhow::anyhow!("unsupported storage"))?
        }
    })
}

/// Builds the registry; the second value says whether the secret was generated.
pub fn build_registry(config: &Config, driver: Arc<dyn StorageDriver>) -> (Registry, bool) {
    let (secret, generated) = match &config.http.secret {
        Some(s) => (UploadSecret::new(s.as_bytes().to_vec()), false),
        None => (UploadSecret::random(), true),
    };
    let registry = Registry::new(
        driver,
        RegistryOptions {
            delete_enabled: config.storage.delete.enabled,
            secret,
        },
    );
    (registry, generated)
}

/// The whole HTTP application.
pub fn build_app(registry: Registry, options: AppOptions) -> Router {
    let state = AppState { registry };
    let options = Arc::new(options);
    // Layers run outermost first:
    //   access log -> API version header -> classify (URL -> Route) -> read-only -> handler.
    // Classification comes before every policy layer so each of them reads the typed Route.
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(|| async { "" }))
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .layer(middleware::from_fn_with_state(options, read_only))
        .layer(middleware::from_fn(classify))
        .layer(middleware::map_response(api_version))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

async fn classify(mut req: Request, next: Next) -> Response {
    match Route::parse(req.uri().path()) {
        Some(Ok(route)) => {
            req.extensions_mut().insert(route);
            next.run(req).await
        }
        // A malformed tag can only name a manifest that does not exist: reads and deletes answer
        // 404 MANIFEST_UNKNOWN (the spec's codes); a push under it is refused with TAG_INVALID.
        Some(Err(e)) if e.code == "TAG_INVALID" && req.method() != Method::PUT => ApiError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown: the reference is not a valid tag",
        )
        .into_response(),
        Some(Err(e)) => e.into_response(),
        None => next.run(req).await,
    }
}

async fn read_only(State(opts): State<Arc<AppOptions>>, req: Request, next: Next) -> Response {
    if opts.read_only {
        if let Some(route) = req.extensions().get::<Route>() {
            if route.is_write(req.method()) {
                return ApiError::read_only().into_response();
            }
        }
    }
    next.run(req).await
}

async fn api_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(API_VERSION_HEADER, API_VERSION);
    resp
}

async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    // The path only: query strings carry upload state and are not worth logging.
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    tracing::info!(
        target: "image_registry::access",
        %method,
        path,
        status = resp.status().as_u16(),
        duration_ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    resp
}
