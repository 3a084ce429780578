//! The auth layer: `Authorization` header + `Route` + method -> the accesses the request needs ->
//! [`Auth::authorize`] -> on to the handler, or an answer:
//!
//! - no or bad credentials, or anonymous and not allowed -> 401 `UNAUTHORIZED` with a
//!   `WWW-Authenticate: Bearer realm=...,scope=...` challenge (`GET /v2/` without credentials always
//!   gets it, so `podman login` checks the credentials);
//! - known caller, not allowed -> 403 `DENIED` (JWT modes: 401 `error="insufficient_scope"`, so the
//!   client fetches a token with more scope);
//! - the cluster API unreachable and nothing cached -> 503 `UNAVAILABLE` with `Retry-After`.
//!
//! Needs per route: pull = GET/HEAD of manifests, blobs, tags, referrers; push = uploads (start,
//! status, chunks, finish, cancel) and manifest PUT; delete = DELETE of a manifest or blob; the
//! catalog = `registry:catalog:*`. A cross-repository mount (`POST .../blobs/uploads/?mount=&from=`)
//! also asks, without failing, for pull on `from`; the answer travels in [`RequestAuth::may_mount`]
//! and the handler mounts only when it is yes (else it opens a normal upload session: 202,
//! revealing nothing). This layer is the only place that rule is decided.
//!
//! Also the token endpoint of the modes that have one (`/openshift/token`, `/auth/token`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Access, Auth, AuthError, Credentials, RequestAuth, ScopeRequest};
use crate::http::{ApiError, Query, Route};
use crate::layers::access_log::AccessUser;

/// The accesses `method` on `route` needs.
pub fn wants(route: &Route, method: &Method) -> Vec<Access> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        Route::Base => Vec::new(),
        Route::Catalog { .. } => vec![Access::Catalog],
        Route::Tags { name, .. } | Route::Referrers { name, .. } => {
            if read {
                vec![Access::pull(name.as_str())]
            } else {
                vec![Access::push(name.as_str())]
            }
        }
        Route::Manifest { name, .. } | Route::Blob { name, .. } => {
            if read {
                vec![Access::pull(name.as_str())]
            } else if *method == Method::DELETE {
                vec![Access::delete(name.as_str())]
            } else {
                vec![Access::push(name.as_str())]
            }
        }
        Route::UploadStart { name, .. } | Route::Upload { name, .. } => {
            vec![Access::push(name.as_str())]
        }
        Route::AdminBlob { .. } => vec![Access::PruneBlobs],
        Route::TagHistory { name, .. } => vec![Access::pull(name.as_str())],
    }
}

/// `scheme://host` of the request as the client sees it (`X-Forwarded-Proto`/`-Host` first).
pub fn external_base(headers: &HeaderMap) -> String {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let scheme = first("x-forwarded-proto")
        .filter(|s| s == "http" || s == "https")
        .unwrap_or_else(|| "http".into());
    let host = first("x-forwarded-host")
        .or_else(|| first("host"))
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c))
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The middleware (`from_fn_with_state(auth, authorize)`), placed right after `classify`.
pub async fn authorize(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<Route>().cloned() else {
        return next.run(req).await;
    };
    match decide(&auth, &route, req.method(), req.headers()).await {
        Ok(granted) => {
            // The access log's `user`: the authenticated name (never a credential).
            if let (Some(user), Some(name)) = (
                req.extensions().get::<AccessUser>(),
                granted.subject.name.as_deref(),
            ) {
                user.set(name);
            }
            req.extensions_mut().insert(granted);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// What the request may do, or the answer that refuses it.
async fn decide(
    auth: &Auth,
    route: &Route,
    method: &Method,
    headers: &HeaderMap,
) -> Result<RequestAuth, ApiError> {
    let base = external_base(headers);
    let wants = wants(route, method);
    let challenge = |insufficient: bool| auth.challenge(&base, &wants, insufficient);
    let creds = Credentials::parse(authorization(headers))
        .map_err(|e| ApiError::unauthorized(&challenge(false), &e.to_string()))?;
    check_name(auth, route)?;
    if matches!(route, Route::Base) && creds.is_none() {
        return Err(ApiError::unauthorized(
            &challenge(false),
            "authentication required",
        ));
    }
    // A mount also asks for pull on `from` (never failing the request on it).
    let mount_from = route
        .mount_source()
        .filter(|from| auth.name_allowed(from.as_str()));
    let mut all = wants.clone();
    if let Some(from) = mount_from {
        all.push(Access::pull(from.as_str()));
    }
    let verdict = auth.authorize(&creds, &all).await.map_err(|e| match e {
        AuthError::Unauthenticated(m) => ApiError::unauthorized(&challenge(false), &m),
        AuthError::Unavailable(_) => ApiError::auth_unavailable(),
    })?;
    if !verdict.allowed.iter().take(wants.len()).all(|a| *a) {
        return Err(if verdict.subject.is_anonymous() {
            ApiError::unauthorized(&challenge(false), "authentication required")
        } else if verdict.scope_limited {
            ApiError::unauthorized(&challenge(true), "the token does not grant this access")
        } else {
            ApiError::denied("requested access to the resource is denied")
        });
    }
    let may_mount =
        mount_from.is_some() && verdict.allowed.get(wants.len()).copied().unwrap_or(false);
    Ok(RequestAuth {
        subject: verdict.subject,
        catalog: verdict.catalog,
        may_mount,
    })
}

/// The mode's naming rule (`<project>/<name>` in openshift mode): `NAME_INVALID` otherwise.
fn check_name(auth: &Auth, route: &Route) -> Result<(), ApiError> {
    match route.repository() {
        Some(name) if !auth.name_allowed(name.as_str()) => {
            Err(ApiError::name_invalid(name.as_str()).with_detail(json!({
                "name": name.as_str(),
                "reason": "repository names are <project>/<name> on this registry"
            })))
        }
        _ => Ok(()),
    }
}

/// `GET /openshift/token` / `GET /auth/token`: `{"token","access_token"[,"expires_in","issued_at"]}`.
pub async fn token_endpoint(auth: Arc<Auth>, req: Request) -> Response {
    let creds = match Credentials::parse(authorization(req.headers())) {
        Ok(c) => c,
        Err(e) => return token_unauthorized(&e.to_string()),
    };
    let query = Query::parse(req.uri().query());
    let scopes = ScopeRequest::parse_all(query.all("scope"));
    match auth.token(&creds, &scopes).await {
        Ok(t) => {
            let mut body = json!({ "token": t.token, "access_token": t.token });
            if let Some(e) = t.expires_in {
                body["expires_in"] = json!(e);
            }
            if let Some(at) = t
                .issued_at
                .and_then(|s| chrono::DateTime::from_timestamp(i64::try_from(s).ok()?, 0))
            {
                body["issued_at"] = json!(at.to_rfc3339());
            }
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body.to_string(),
            )
                .into_response()
        }
        Err(AuthError::Unauthenticated(m)) => token_unauthorized(&m),
        Err(AuthError::Unavailable(_)) => ApiError::auth_unavailable().into_response(),
    }
}

fn token_unauthorized(msg: &str) -> Response {
    ApiError::unauthorized("Basic realm=\"image-registry\"", msg).into_response()
}
