//! Manifest and referrers endpoints.

use axum::body::Body as ReqBody;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::headers::{accepted_types, accepts, header_str, hv, is_media_type};
use super::{ApiError, AppState};
use crate::oci::{media, Digest, Reference, RepositoryName};
use crate::registry::{default_platform_child, Manifest, RegistryError, MAX_MANIFEST_SIZE};

type Result<T> = std::result::Result<T, ApiError>;

pub async fn get(
    state: &AppState,
    name: &RepositoryName,
    reference: &Reference,
    req: &Parts,
) -> Result<Response> {
    let reg = &state.registry;
    let mut m: Manifest = reg.get_manifest(name, reference).await?;
    let accepted = accepted_types(&req.headers);
    if !accepts(&accepted, &m.media_type) {
        // Old clients that take no index get the linux/amd64 image, as distribution serves them.
        let child = default_platform_child(&m.parsed)
            .filter(|c| accepts(&accepted, &c.media_type))
            .map(|c| c.digest.clone());
        match child {
            Some(d) => m = reg.get_manifest(name, &Reference::Digest(d)).await?,
            None => {
                return Err(RegistryError::ManifestUnknown(format!(
                    "manifest is {}, which the Accept header does not allow",
                    m.media_type
                ))
                .into())
            }
        }
    }
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert("docker-content-digest", hv(&m.digest.to_string()));
    h.insert(header::ETAG, hv(&format!("\"{}\"", m.digest)));
    h.insert(header::CONTENT_LENGTH, hv(&m.body.len().to_string()));
    // distribution 2.8 announces a HEAD as a pull too (its request.method says which).
    reg.manifest_pulled(name, reference, &m).await?;
    if req.method == Method::HEAD {
        return Ok((StatusCode::OK, h).into_response());
    }
    Ok((StatusCode::OK, h, m.body).into_response())
}

pub async fn put(
    state: &AppState,
    name: &RepositoryName,
    reference: &Reference,
    req: &Parts,
    body: ReqBody,
) -> Result<Response> {
    let too_large = || {
        ApiError::from(RegistryError::ManifestTooLarge {
            limit: MAX_MANIFEST_SIZE,
        })
    };
    if let Some(len) =
        header_str(&req.headers, &header::CONTENT_LENGTH).and_then(|l| l.trim().parse::<u64>().ok())
    {
        if len > MAX_MANIFEST_SIZE as u64 {
            return Err(too_large());
        }
    }
    // A Content-Type must be a media type (distribution refuses what Go's mime parser refuses):
    // garbage, or bytes that are not text, would otherwise count as no Content-Type at all.
    let content_type = match req.headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(t) if t.trim().is_empty() => None,
            Ok(t) if is_media_type(t) => Some(t.to_owned()),
            _ => {
                return Err(ApiError::from(RegistryError::ManifestInvalid(
                    "the Content-Type is not a media type".into(),
                )))
            }
        },
    };
    let body = axum::body::to_bytes(body, MAX_MANIFEST_SIZE)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                too_large()
            } else {
                ApiError::from(RegistryError::ManifestInvalid(format!(
                    "reading the manifest failed: {e}"
                )))
            }
        })?;
    let put = state
        .registry
        .put_manifest(name, reference, content_type.as_deref(), body)
        .await?;
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{name}/manifests/{}", put.digest)),
    );
    h.insert("docker-content-digest", hv(&put.digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(s) = &put.subject {
        h.insert("oci-subject", hv(&s.to_string()));
    }
    Ok((StatusCode::CREATED, h).into_response())
}

pub async fn delete(
    state: &AppState,
    name: &RepositoryName,
    reference: &Reference,
) -> Result<Response> {
    state.registry.delete_manifest(name, reference).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

pub async fn referrers(
    state: &AppState,
    name: &RepositoryName,
    digest: &Digest,
    filter: Option<&str>,
) -> Result<Response> {
    let list = state.registry.referrers(name, digest, filter).await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": list,
    })
    .to_string();
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::OCI_INDEX),
    );
    if filter.is_some() {
        h.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok((StatusCode::OK, h, body).into_response())
}
