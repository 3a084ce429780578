//! The one URL grammar of the `/v2` API: a request path becomes a typed [`Route`] here and nowhere
//! else. Auth, read-only, limits and metrics read the `Route` from request extensions.
//!
//! Names may have many components, so paths are matched from the end: `.../manifests/<ref>`,
//! `.../blobs/uploads/[<uuid>]`, `.../blobs/<digest>`, `.../tags/list`, `.../referrers/<digest>`.

use axum::http::Method;
use percent_encoding::percent_decode_str;

use super::error::ApiError;
use crate::oci::{Digest, DigestError, Reference, RepositoryName};

/// An endpoint of the `/v2` API with its validated parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags {
        name: RepositoryName,
    },
    Manifest {
        name: RepositoryName,
        reference: Reference,
    },
    Blob {
        name: RepositoryName,
        digest: Digest,
    },
    UploadStart {
        name: RepositoryName,
    },
    Upload {
        name: RepositoryName,
        uuid: String,
    },
    Referrers {
        name: RepositoryName,
        digest: Digest,
    },
}

/// What kind of endpoint a route is, for labels and logs.
impl Route {
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "blob_upload",
            Route::Referrers { .. } => "referrers",
        }
    }

    /// The repository the route is about, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }

    /// Whether `method` on this route changes anything (refused in read-only mode).
    pub fn is_write(&self, method: &Method) -> bool {
        !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            && !matches!(self, Route::Base)
    }

    /// Parses a request path (still percent-encoded). `None` if it is not under `/v2`.
    pub fn parse(path: &str) -> Option<Result<Route, ApiError>> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Ok(Route::Base));
        }
        let rest = rest.strip_prefix('/')?;
        let decoded = percent_decode_str(rest).decode_utf8().ok();
        Some(match decoded {
            Some(p) => parse_rest(&p),
            None => Err(ApiError::not_found()),
        })
    }
}

fn name(s: &str) -> Result<RepositoryName, ApiError> {
    s.parse().map_err(|_| ApiError::name_invalid(s))
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: DigestError| ApiError::digest_invalid(s, &e))
}

fn reference(s: &str) -> Result<Reference, ApiError> {
    if s.contains(':') {
        return digest(s).map(Reference::Digest);
    }
    s.parse()
        .map(Reference::Tag)
        .map_err(|_| ApiError::tag_invalid(s))
}

fn parse_rest(p: &str) -> Result<Route, ApiError> {
    if p == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(n) = p.strip_suffix("/tags/list") {
        return Ok(Route::Tags { name: name(n)? });
    }
    if let Some(n) = p
        .strip_suffix("/blobs/uploads")
        .or_else(|| p.strip_suffix("/blobs/uploads/"))
    {
        return Ok(Route::UploadStart { name: name(n)? });
    }
    let (head, last) = p.rsplit_once('/').ok_or_else(ApiError::not_found)?;
    let (head2, kind) = head.rsplit_once('/').ok_or_else(ApiError::not_found)?;
    match kind {
        "manifests" => Ok(Route::Manifest {
            name: name(head2)?,
            reference: reference(last)?,
        }),
        "blobs" => Ok(Route::Blob {
            name: name(head2)?,
            digest: digest(last)?,
        }),
        "referrers" => Ok(Route::Referrers {
            name: name(head2)?,
            digest: digest(last)?,
        }),
        "uploads" => {
            let n = head2
                .strip_suffix("/blobs")
                .ok_or_else(ApiError::not_found)?;
            if last.is_empty() || last.len() > 64 {
                return Err(ApiError::upload_unknown());
            }
            Ok(Route::Upload {
                name: name(n)?,
                uuid: last.to_owned(),
            })
        }
        _ => Err(ApiError::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> Route {
        Route::parse(p).unwrap().unwrap()
    }

    fn code(p: &str) -> &'static str {
        Route::parse(p).unwrap().unwrap_err().code
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(ok("/v2/"), Route::Base);
        assert_eq!(ok("/v2"), Route::Base);
        assert_eq!(ok("/v2/_catalog"), Route::Catalog);
        assert!(
            matches!(ok("/v2/a/b/c/tags/list"), Route::Tags { name } if name.as_str() == "a/b/c")
        );
        assert!(matches!(
            ok("/v2/a/manifests/latest"),
            Route::Manifest {
                reference: Reference::Tag(_),
                ..
            }
        ));
        assert!(matches!(
            ok(&format!("/v2/a/manifests/{D}")),
            Route::Manifest {
                reference: Reference::Digest(_),
                ..
            }
        ));
        assert!(matches!(
            ok(&format!("/v2/a/manifests/{}", D.replace(':', "%3A"))),
            Route::Manifest {
                reference: Reference::Digest(_),
                ..
            }
        ));
        assert!(matches!(
            ok(&format!("/v2/x/blobs/{D}")),
            Route::Blob { .. }
        ));
        assert!(
            matches!(ok("/v2/x/y/blobs/uploads/"), Route::UploadStart { name } if name.as_str() == "x/y")
        );
        assert!(matches!(
            ok("/v2/x/blobs/uploads"),
            Route::UploadStart { .. }
        ));
        assert!(
            matches!(ok("/v2/x/blobs/uploads/abc"), Route::Upload { uuid, .. } if uuid == "abc")
        );
        assert!(matches!(
            ok(&format!("/v2/x/referrers/{D}")),
            Route::Referrers { .. }
        ));
        // A repository may be called "blobs" or "manifests".
        assert!(
            matches!(ok("/v2/blobs/manifests/manifests/v1"), Route::Manifest { name, .. } if name.as_str() == "blobs/manifests")
        );
        assert!(Route::parse("/v3/").is_none());
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(code("/v2/Bad/manifests/latest"), "NAME_INVALID");
        assert_eq!(code("/v2/a/manifests/bad:tag"), "DIGEST_INVALID");
        assert_eq!(code("/v2/a/manifests/-tag"), "TAG_INVALID");
        assert_eq!(code("/v2/a/blobs/sha256:abc"), "DIGEST_INVALID");
        assert_eq!(code("/v2/a/nothing/here"), "UNSUPPORTED");
        assert_eq!(code("/v2/a"), "UNSUPPORTED");
    }
}
