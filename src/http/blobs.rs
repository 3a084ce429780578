//! Blob and upload endpoints.

use axum::body::Body;
use axum::body::Body as ReqBody;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ErrorCode;
use super::headers::{
    header_str, hv, parse_content_range, parse_range, upload_range, RangeRequest,
};
use super::{body_stream, encode, ApiError, AppState, UploadStart};
use crate::auth::RequestAuth;
use crate::oci::{Digest, RepositoryName};
use crate::registry::{PulledBlob, RegistryError, UploadSession};

type Result<T> = std::result::Result<T, ApiError>;

fn blob_location(name: &RepositoryName, d: &Digest) -> String {
    format!("/v2/{name}/blobs/{d}")
}

fn created_blob(name: &RepositoryName, d: &Digest) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, hv(&blob_location(name, d)));
    h.insert("docker-content-digest", hv(&d.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    (StatusCode::CREATED, h).into_response()
}

/// The headers of every blob answer.
fn blob_headers(h: &mut HeaderMap, digest: &Digest) {
    h.insert("docker-content-digest", hv(&digest.to_string()));
    h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
}

pub async fn get(
    state: &AppState,
    name: &RepositoryName,
    digest: &Digest,
    req: &Parts,
) -> Result<Response> {
    let reg = &state.registry;
    let mut h = HeaderMap::new();
    // HEAD is how a pusher decides to skip an upload: storage's answer, tombstones honoured.
    let stat = if req.method == Method::HEAD {
        reg.stat_blob_for_push(name, digest).await
    } else {
        reg.stat_blob(name, digest).await
    };
    let size = match stat {
        Ok(size) => size,
        // A mirrored repository: a HEAD asks the upstream; a GET fetches (shared with every
        // client asking meanwhile) and streams; a range waits until the blob is stored.
        Err(RegistryError::BlobUnknown(_)) if reg.is_proxied(name) => {
            if req.method == Method::HEAD {
                reg.pulled_blob_size(name, digest).await?
            } else {
                let ranged = req.headers.contains_key(header::RANGE);
                match reg.pull_blob(name, digest, ranged).await? {
                    PulledBlob::Stored(size) => size,
                    PulledBlob::Streaming { size, stream } => {
                        blob_headers(&mut h, digest);
                        if let Some(size) = size {
                            h.insert(header::CONTENT_LENGTH, hv(&size.to_string()));
                        }
                        return Ok((StatusCode::OK, h, Body::from_stream(stream)).into_response());
                    }
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    blob_headers(&mut h, digest);
    let (status, offset, len) = match parse_range(header_str(&req.headers, &header::RANGE), size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial(s, e) => {
            h.insert(header::CONTENT_RANGE, hv(&format!("bytes {s}-{e}/{size}")));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        RangeRequest::Unsatisfiable => return Err(RegistryError::RangeInvalid { size }.into()),
    };
    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    // distribution 2.8 announces a HEAD as a pull too (its request.method says which).
    reg.blob_pulled(name, digest, size).await?;
    if req.method == Method::HEAD {
        return Ok((status, h).into_response());
    }
    // Object storage: send the client to a presigned URL (a Range header goes along and is
    // honoured by the store). HEAD stays here.
    if let Some(url) = reg.blob_redirect(digest).await? {
        let mut r = HeaderMap::new();
        r.insert(header::LOCATION, hv(&url));
        r.insert("docker-content-digest", hv(&digest.to_string()));
        r.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        return Ok((StatusCode::TEMPORARY_REDIRECT, r).into_response());
    }
    let stream = reg.read_blob(digest, offset, Some(len)).await?;
    Ok((status, h, Body::from_stream(stream)).into_response())
}

/// `DELETE /admin/blobs/<digest>` (the OpenShift pruner): 204, also when already gone.
pub async fn delete_from_storage(state: &AppState, digest: &Digest) -> Result<Response> {
    state.registry.delete_blob_from_storage(digest).await?;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}

pub async fn delete(state: &AppState, name: &RepositoryName, digest: &Digest) -> Result<Response> {
    state.registry.delete_blob(name, digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

/// `202 Accepted` with the session's `Location`, `Range` and `Docker-Upload-UUID`.
fn session_response(state: &AppState, s: &UploadSession, status: StatusCode) -> Response {
    let token = state.registry.upload_state_token(s);
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        hv(&format!(
            "/v2/{}/blobs/uploads/{}?_state={}",
            s.name,
            s.uuid,
            encode(&token)
        )),
    );
    h.insert(header::RANGE, hv(&upload_range(s.offset)));
    h.insert("docker-upload-uuid", hv(&s.uuid));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    (status, h).into_response()
}

/// Whether the request carries a body (a declared non-zero length or a chunked one).
fn has_body(h: &HeaderMap) -> bool {
    match header_str(h, &header::CONTENT_LENGTH) {
        Some(l) => l.trim() != "0",
        None => h.contains_key(header::TRANSFER_ENCODING),
    }
}

/// Checks `Content-Range` against `Content-Length`; returns the range start.
fn chunk_start(h: &HeaderMap) -> Result<Option<u64>> {
    let Some(cr) = header_str(h, &header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let (start, end) = parse_content_range(cr).ok_or_else(|| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            format!("invalid Content-Range {cr:?}"),
        )
    })?;
    if let Some(len) =
        header_str(h, &header::CONTENT_LENGTH).and_then(|l| l.trim().parse::<u64>().ok())
    {
        if len != end - start + 1 {
            return Err(ApiError::size_invalid(format!(
                "Content-Range {cr} does not match Content-Length {len}"
            )));
        }
    }
    Ok(Some(start))
}

pub async fn start_upload(
    state: &AppState,
    name: &RepositoryName,
    start: &UploadStart,
    req: &Parts,
    body: ReqBody,
) -> Result<Response> {
    let reg = &state.registry;
    match start {
        UploadStart::Mount { digest, from } => {
            // The auth layer decided whether the caller may mount (see `RequestAuth::may_mount`);
            // without auth every mount is tried.
            let may_mount = req
                .extensions
                .get::<RequestAuth>()
                .is_none_or(|a| a.may_mount);
            if may_mount && reg.mount_blob(name, digest, from.as_ref()).await? {
                return Ok(created_blob(name, digest));
            }
        }
        UploadStart::Monolithic(digest) => {
            reg.put_blob(name, digest, body_stream(body)).await?;
            return Ok(created_blob(name, digest));
        }
        UploadStart::Session => {}
    }
    let s = reg.start_upload(name).await?;
    Ok(session_response(state, &s, StatusCode::ACCEPTED))
}

async fn session(
    state: &AppState,
    name: &RepositoryName,
    uuid: &str,
    token: Option<&str>,
) -> Result<UploadSession> {
    Ok(state.registry.resume_upload(name, uuid, token).await?)
}

/// [`session`] for a request whose offset comes from the writer it opens (a `PATCH`, a `PUT`
/// without a body, a `DELETE`): no `stat` of the upload's data.
async fn session_for_write(
    state: &AppState,
    name: &RepositoryName,
    uuid: &str,
    token: Option<&str>,
) -> Result<UploadSession> {
    Ok(state
        .registry
        .resume_upload_for_write(name, uuid, token)
        .await?)
}

pub async fn upload_status(
    state: &AppState,
    name: &RepositoryName,
    uuid: &str,
    token: Option<&str>,
) -> Result<Response> {
    let s = session(state, name, uuid, token).await?;
    Ok(session_response(state, &s, StatusCode::NO_CONTENT))
}

pub async fn patch_upload(
    state: &AppState,
    name: &RepositoryName,
    uuid: &str,
    token: Option<&str>,
    req: &Parts,
    body: ReqBody,
) -> Result<Response> {
    let mut s = session_for_write(state, name, uuid, token).await?;
    let start = chunk_start(&req.headers)?;
    state
        .registry
        .append_upload(&mut s, start, body_stream(body))
        .await?;
    Ok(session_response(state, &s, StatusCode::ACCEPTED))
}

pub async fn put_upload(
    state: &AppState,
    name: &RepositoryName,
    uuid: &str,
    token: Option<&str>,
    digest: Option<&Digest>,
    req: &Parts,
    body: ReqBody,
) -> Result<Response> {
    // With a body, the offset decides whether it may go straight to the blob's key.
    let mut s = if has_body(&req.headers) {
        session(state, name, uuid, token).await?
    } else {
        session_for_write(state, name, uuid, token).await?
    };
    let Some(digest) = digest else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            "the digest query parameter is required to complete an upload",
        ));
    };
    let start = chunk_start(&req.headers)?;
    let body = has_body(&req.headers).then(|| body_stream(body));
    state
        .registry
        .complete_upload(&mut s, digest, start, body)
        .await?;
    Ok(created_blob(name, digest))
}

pub async fn cancel_upload(
    state: &AppState,
    name: &RepositoryName,
    uuid: &str,
    token: Option<&str>,
) -> Result<Response> {
    let s = session_for_write(state, name, uuid, token).await?;
    state.registry.cancel_upload(&s).await?;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}
