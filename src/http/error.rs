//! The one map from errors to the spec's JSON (`{"errors":[{"code","message","detail"}]}`) and HTTP
//! status. 5xx answers carry a generic message; the cause goes to the log only.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::oci::DigestError;
use crate::registry::RegistryError;

/// The error codes of the distribution spec (plus distribution's `UNAVAILABLE`, `TOOMANYREQUESTS`
/// and `PAGINATION_NUMBER_INVALID`). Compared as values, never as strings; [`ErrorCode::as_str`] is
/// the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    Denied,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    PaginationNumberInvalid,
    RangeInvalid,
    SizeInvalid,
    TagInvalid,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unknown,
    Unsupported,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::Denied,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::PaginationNumberInvalid,
        ErrorCode::RangeInvalid,
        ErrorCode::SizeInvalid,
        ErrorCode::TagInvalid,
        ErrorCode::TooManyRequests,
        ErrorCode::Unauthorized,
        ErrorCode::Unavailable,
        ErrorCode::Unknown,
        ErrorCode::Unsupported,
    ];

    /// The code as it appears in `{"errors":[{"code": ...}]}`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::Denied => "DENIED",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::Unsupported => "UNSUPPORTED",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            "no such endpoint",
        )
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            "the method is not allowed on this endpoint",
        )
    }

    pub fn name_invalid(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameInvalid,
            "invalid repository name",
        )
        .with_detail(json!({ "name": name }))
    }

    pub fn digest_invalid(d: &str, e: &DigestError) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            e.to_string(),
        )
        .with_detail(json!({ "digest": d }))
    }

    pub fn tag_invalid(t: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::TagInvalid,
            "manifest tag did not match URI",
        )
        .with_detail(json!({ "tag": t }))
    }

    pub fn upload_unknown() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }

    pub fn upload_invalid(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BlobUploadInvalid, msg)
    }

    pub fn size_invalid(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::SizeInvalid, msg)
    }

    pub fn read_only() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            "the registry is in read-only mode",
        )
    }

    /// The request limiters are full: `429 TOOMANYREQUESTS` with `Retry-After: 1`.
    pub fn too_many_requests() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            "too many requests: the registry is busy, retry later",
        )
        .with_header(axum::http::header::RETRY_AFTER, "1")
    }

    /// 401 `UNAUTHORIZED` with a `WWW-Authenticate` challenge (which carries the `scope`).
    pub fn unauthorized(challenge: &str, message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
            .with_header(axum::http::header::WWW_AUTHENTICATE, challenge)
    }

    /// 403 `DENIED`: the caller is known and may not do this.
    pub fn denied(message: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, message)
    }

    /// 503 when the authorization service (the cluster API) cannot answer: retry, do not log in.
    pub fn auth_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the authorization service is unavailable, retry later",
        )
        .with_header(axum::http::header::RETRY_AFTER, "1")
    }

    /// A metrics scrape without the metrics secret (or another allowed credential).
    pub fn metrics_unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "authentication required to read metrics",
        )
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            "Basic realm=\"image-registry metrics\"",
        )
    }

    pub fn pagination_invalid() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::PaginationNumberInvalid,
            "invalid number of results requested",
        )
    }

    /// A storage fault the client should know the nature of (full, read-only, forbidden): a
    /// fixed message, the cause in the log.
    fn storage_fault(status: StatusCode, message: &str, cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "request failed: {message}");
        ApiError::new(status, ErrorCode::Unavailable, message)
    }

    fn internal(status: StatusCode, code: ErrorCode, cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "request failed");
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "storage is unavailable, retry later"
        } else {
            "internal server error"
        };
        ApiError::new(status, code, message)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        use RegistryError as E;
        let msg = e.to_string();
        match e {
            E::BlobUnknown(d) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::BlobUnknown,
                "blob unknown to registry",
            )
            .with_detail(json!({ "digest": d.to_string() })),
            E::BlobUploadUnknown => ApiError::upload_unknown(),
            E::BlobUploadInvalid(_) => ApiError::upload_invalid(msg),
            E::UploadOutOfOrder { offset } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                msg,
            )
            .with_header(
                axum::http::header::RANGE,
                &super::headers::upload_range(offset),
            ),
            E::DigestInvalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, msg)
            }
            E::ManifestUnknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown, msg)
            }
            E::ManifestInvalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, msg)
            }
            E::ManifestBlobUnknown(d) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ManifestBlobUnknown,
                "manifest references a blob or manifest unknown to this repository",
            )
            .with_detail(json!({ "digest": d.to_string() })),
            E::NameUnknown(n) => ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NameUnknown,
                "repository name not known to registry",
            )
            .with_detail(json!({ "name": n.to_string() })),
            E::ManifestTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid, msg)
            }
            E::SizeInvalid(_) => ApiError::size_invalid(msg),
            E::RangeInvalid { size } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeInvalid,
                msg,
            )
            .with_header(
                axum::http::header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            ),
            E::Unsupported(_) => {
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::Unsupported, msg)
            }
            E::BodyRead(_) => ApiError::upload_invalid(msg),
            E::StorageUnavailable(s) => {
                ApiError::internal(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, &s)
            }
            E::StorageFailed(s) => {
                ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, &s)
            }
            // One answer for a full volume wherever it is hit (upload, manifest, tag, link):
            // 507, the cause (path, errno) in the log only.
            E::StorageFull(s) => ApiError::storage_fault(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage is full: free space, then retry (an upload resumes where it stopped)",
                &s,
            ),
            E::StorageReadOnly(s) => ApiError::storage_fault(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage is read-only: nothing can be written",
                &s,
            ),
            E::StorageDenied(s) => ApiError::storage_fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage denied access: the registry may not write its data folder",
                &s,
            ),
            E::Internal(_) => {
                ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, &msg)
            }
            E::Upstream(u) => upstream_error(u),
            E::Denied(m) => ApiError::denied(&m),
            E::ImageMetadataFailed(_) => {
                tracing::error!(error = %msg, "manifest stored, but the cluster did not record the image");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Unknown,
                    "the manifest is stored, but the cluster API could not record the image \
                     (ImageStreamMapping); retry the push",
                )
            }
            #[allow(unreachable_patterns)]
            _ => ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, &msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(d) = self.detail {
            err["detail"] = d;
        }
        let body = json!({ "errors": [err] }).to_string();
        let mut resp = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

/// A mirrored repository's upstream failed with nothing cached to answer: 429 with the upstream's
/// `Retry-After`, 503 for an upstream 5xx, 502 for an unreachable or nonsensical one.
fn upstream_error(u: crate::registry::UpstreamError) -> ApiError {
    use crate::registry::UpstreamError as U;
    tracing::warn!(error = %u, "pull-through: upstream failed");
    match u {
        U::RateLimited { retry_after } => {
            let e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                "the upstream registry is rate limiting; retry later",
            );
            match retry_after {
                Some(r) => e.with_header(axum::http::header::RETRY_AFTER, &r),
                None => e,
            }
        }
        U::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the upstream registry is unavailable; retry later",
        ),
        U::BadGateway(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            "the upstream registry could not be reached or answered wrongly",
        ),
        U::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            "not found in the upstream registry",
        ),
    }
}
