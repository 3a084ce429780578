//! The one URL grammar of the `/v2` API: a request's method, path and query become a typed
//! [`Route`] here and nowhere else. Auth, read-only, limits, metrics and the handlers all read the
//! `Route` the classify layer put into the request extensions; none of them looks at the raw path
//! or query again.
//!
//! Names may have many components, so paths are matched from the end: `.../manifests/<ref>`,
//! `.../blobs/uploads/[<uuid>]`, `.../blobs/<digest>`, `.../tags/list`, `.../referrers/<digest>`.
//!
//! The query is part of the route, parsed for the methods that use it (others ignore it):
//! pagination `n`/`last` on `GET` of the catalog and tag lists, `digest` or `mount`/`from` on
//! `POST .../blobs/uploads/`, `_state` on every upload request and `digest` on its `PUT`,
//! `artifactType` on `GET .../referrers/<digest>`. A key given twice counts with its last value.
//! Malformed values answer the spec's codes (`DIGEST_INVALID`, `NAME_INVALID`,
//! `PAGINATION_NUMBER_INVALID`) before any policy layer runs, like malformed paths.

use axum::http::{Method, StatusCode};
use percent_encoding::percent_decode_str;

use super::error::{ApiError, ErrorCode};
use crate::oci::{Digest, DigestError, Reference, RepositoryName, Tag};

/// An endpoint of the `/v2` API with its validated parameters, query included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog {
        page: Page,
    },
    Tags {
        name: RepositoryName,
        page: Page,
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
        start: UploadStart,
    },
    Upload {
        name: RepositoryName,
        uuid: String,
        /// `_state`: the signed upload state token, still encoded.
        state: Option<String>,
        /// `digest` of a `PUT` that completes the upload.
        digest: Option<Digest>,
    },
    Referrers {
        name: RepositoryName,
        digest: Digest,
        /// `artifactType` filter (never empty).
        artifact_type: Option<String>,
    },
    /// `/admin/blobs/<digest>`: the OpenShift pruner deletes a blob from the storage.
    AdminBlob {
        digest: Digest,
    },
    /// `/extensions/v2/<name>/tags/<tag>/history`: every digest the tag pointed at.
    TagHistory {
        name: RepositoryName,
        tag: Tag,
    },
}

/// `n`/`last` of a listing: at most `n` entries after `last`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub n: Option<usize>,
    /// Never empty.
    pub last: Option<String>,
}

/// What a `POST .../blobs/uploads/` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UploadStart {
    /// Open an upload session.
    #[default]
    Session,
    /// `?digest=`: the body is the whole blob.
    Monolithic(Digest),
    /// `?mount=<digest>[&from=<name>]`: link a blob another repository holds.
    Mount {
        digest: Digest,
        from: Option<RepositoryName>,
    },
}

/// What kind of endpoint a route is, for labels and logs.
impl Route {
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog { .. } => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "blob_upload",
            Route::Referrers { .. } => "referrers",
            Route::AdminBlob { .. } => "admin_blob",
            Route::TagHistory { .. } => "tag_history",
        }
    }

    /// The methods the route answers, as an `Allow` value (for 405 answers).
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Route::Base => "GET, HEAD",
            Route::Blob { .. } => "GET, HEAD, DELETE",
            Route::Manifest { .. } => "GET, HEAD, PUT, DELETE",
            Route::Catalog { .. }
            | Route::Tags { .. }
            | Route::Referrers { .. }
            | Route::TagHistory { .. } => "GET",
            Route::AdminBlob { .. } => "DELETE",
            Route::UploadStart { .. } => "POST",
            Route::Upload { .. } => "GET, PATCH, PUT, DELETE",
        }
    }

    /// The repository the route is about, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Route::Base | Route::Catalog { .. } | Route::AdminBlob { .. } => None,
            Route::Tags { name, .. }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name, .. }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. }
            | Route::TagHistory { name, .. } => Some(name),
        }
    }

    /// The repository a cross-repository mount would take the blob from (`?mount=&from=`).
    pub fn mount_source(&self) -> Option<&RepositoryName> {
        match self {
            Route::UploadStart {
                start: UploadStart::Mount { from, .. },
                ..
            } => from.as_ref(),
            _ => None,
        }
    }

    /// Whether the route asks for a cross-repository mount.
    pub fn is_mount(&self) -> bool {
        matches!(
            self,
            Route::UploadStart {
                start: UploadStart::Mount { .. },
                ..
            }
        )
    }

    /// Whether `method` on this route changes anything (refused in read-only mode).
    pub fn is_write(&self, method: &Method) -> bool {
        !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            && !matches!(self, Route::Base)
    }

    /// Parses a request (path still percent-encoded, raw query). `None` if it is not under `/v2`
    /// (or `/admin/blobs/`).
    pub fn parse(
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Option<Result<Route, ApiError>> {
        if let Some(d) = path.strip_prefix("/admin/blobs/") {
            let decoded = percent_decode_str(d).decode_utf8().ok();
            return Some(match decoded {
                Some(d) => digest(&d).map(|digest| Route::AdminBlob { digest }),
                None => Err(ApiError::not_found()),
            });
        }
        if let Some(rest) = path
            .strip_prefix("/extensions/v2/")
            .and_then(|r| r.strip_suffix("/history"))
        {
            let decoded = percent_decode_str(rest).decode_utf8().ok()?;
            let (n, tag) = decoded.rsplit_once("/tags/")?;
            return Some(name(n).and_then(|name| {
                let tag = tag.parse().map_err(|_| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        ErrorCode::ManifestUnknown,
                        "manifest unknown: the reference is not a valid tag",
                    )
                })?;
                Ok(Route::TagHistory { name, tag })
            }));
        }
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Ok(Route::Base));
        }
        let rest = rest.strip_prefix('/')?;
        let decoded = percent_decode_str(rest).decode_utf8().ok();
        let query = Query::parse(query);
        Some(match decoded {
            Some(p) => parse_rest(method, &p, &query),
            None => Err(ApiError::not_found()),
        })
    }
}

/// containerd's mirror parameter: `?ns=<host>` on a request sent to a mirror names the registry
/// the image is from (`hosts.toml`). The value is returned only if it could start a repository
/// name (a host, maybe with a port).
pub fn mirror_namespace(query: Option<&str>) -> Option<String> {
    let q = Query::parse(query);
    let ns = q.get("ns")?.trim().to_ascii_lowercase();
    (!ns.is_empty() && !ns.contains('/')).then_some(ns)
}

impl Route {
    /// The same route for the repository `<ns>/<name>` (a mirror request for the registry `ns`:
    /// its images live under the prefix `ns`). Routes without a repository stay as they are.
    pub fn in_namespace(self, ns: &str) -> Result<Route, ApiError> {
        let prefixed = |n: RepositoryName| name(&format!("{ns}/{n}"));
        Ok(match self {
            Route::Base => Route::Base,
            Route::Catalog { page } => Route::Catalog { page },
            Route::AdminBlob { digest } => Route::AdminBlob { digest },
            Route::TagHistory { name, tag } => Route::TagHistory {
                name: prefixed(name)?,
                tag,
            },
            Route::Tags { name, page } => Route::Tags {
                name: prefixed(name)?,
                page,
            },
            Route::Manifest { name, reference } => Route::Manifest {
                name: prefixed(name)?,
                reference,
            },
            Route::Blob { name, digest } => Route::Blob {
                name: prefixed(name)?,
                digest,
            },
            Route::UploadStart { name, start } => Route::UploadStart {
                name: prefixed(name)?,
                start,
            },
            Route::Upload {
                name,
                uuid,
                state,
                digest,
            } => Route::Upload {
                name: prefixed(name)?,
                uuid,
                state,
                digest,
            },
            Route::Referrers {
                name,
                digest,
                artifact_type,
            } => Route::Referrers {
                name: prefixed(name)?,
                digest,
                artifact_type,
            },
        })
    }
}

/// The decoded `key=value` pairs of a query string (`application/x-www-form-urlencoded`: `+` is a
/// space, `%XX` escapes), in order. The one query parser of the crate.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn name(s: &str) -> Result<RepositoryName, ApiError> {
    s.parse().map_err(|_| ApiError::name_invalid(s))
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: DigestError| ApiError::digest_invalid(s, &e))
}

/// A manifest reference. A malformed tag can only name a manifest that does not exist: reads and
/// deletes answer 404 `MANIFEST_UNKNOWN` (the spec's codes); a push under it is refused with
/// `TAG_INVALID`.
fn reference(method: &Method, s: &str) -> Result<Reference, ApiError> {
    if s.contains(':') {
        return digest(s).map(Reference::Digest);
    }
    s.parse().map(Reference::Tag).map_err(|_| {
        if *method == Method::PUT {
            ApiError::tag_invalid(s)
        } else {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::ManifestUnknown,
                "manifest unknown: the reference is not a valid tag",
            )
        }
    })
}

fn page(method: &Method, q: &Query) -> Result<Page, ApiError> {
    if *method != Method::GET {
        return Ok(Page::default());
    }
    let n = match q.get("n").filter(|n| !n.is_empty()) {
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::pagination_invalid())?,
        ),
        None => None,
    };
    let last = q.get("last").filter(|l| !l.is_empty()).map(str::to_owned);
    Ok(Page { n, last })
}

fn upload_start(method: &Method, q: &Query) -> Result<UploadStart, ApiError> {
    if *method != Method::POST {
        return Ok(UploadStart::Session);
    }
    if let Some(mount) = q.get("mount") {
        return Ok(UploadStart::Mount {
            digest: digest(mount)?,
            from: q.get("from").map(name).transpose()?,
        });
    }
    Ok(match q.get("digest") {
        Some(d) => UploadStart::Monolithic(digest(d)?),
        None => UploadStart::Session,
    })
}

fn parse_rest(method: &Method, p: &str, q: &Query) -> Result<Route, ApiError> {
    if p == "_catalog" {
        return Ok(Route::Catalog {
            page: page(method, q)?,
        });
    }
    if let Some(n) = p.strip_suffix("/tags/list") {
        return Ok(Route::Tags {
            name: name(n)?,
            page: page(method, q)?,
        });
    }
    if let Some(n) = p
        .strip_suffix("/blobs/uploads")
        .or_else(|| p.strip_suffix("/blobs/uploads/"))
    {
        return Ok(Route::UploadStart {
            name: name(n)?,
            start: upload_start(method, q)?,
        });
    }
    let (head, last) = p.rsplit_once('/').ok_or_else(ApiError::not_found)?;
    let (head2, kind) = head.rsplit_once('/').ok_or_else(ApiError::not_found)?;
    match kind {
        "manifests" => Ok(Route::Manifest {
            name: name(head2)?,
            reference: reference(method, last)?,
        }),
        "blobs" => Ok(Route::Blob {
            name: name(head2)?,
            digest: digest(last)?,
        }),
        "referrers" => Ok(Route::Referrers {
            name: name(head2)?,
            digest: digest(last)?,
            artifact_type: (*method == Method::GET)
                .then(|| q.get("artifactType"))
                .flatten()
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
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
                state: q.get("_state").map(str::to_owned),
                digest: match q.get("digest") {
                    Some(d) if *method == Method::PUT => Some(digest(d)?),
                    _ => None,
                },
            })
        }
        _ => Err(ApiError::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> Route {
        Route::parse(&Method::GET, p, None).unwrap().unwrap()
    }

    fn code(p: &str) -> ErrorCode {
        Route::parse(&Method::GET, p, None)
            .unwrap()
            .unwrap_err()
            .code
    }

    fn with(method: Method, p: &str, q: &str) -> Result<Route, ApiError> {
        Route::parse(&method, p, Some(q)).unwrap()
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(ok("/v2/"), Route::Base);
        assert_eq!(ok("/v2"), Route::Base);
        assert_eq!(
            ok("/v2/_catalog"),
            Route::Catalog {
                page: Page::default()
            }
        );
        assert!(
            matches!(ok("/v2/a/b/c/tags/list"), Route::Tags { name, .. } if name.as_str() == "a/b/c")
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
            matches!(ok("/v2/x/y/blobs/uploads/"), Route::UploadStart { name, start: UploadStart::Session } if name.as_str() == "x/y")
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
        assert!(Route::parse(&Method::GET, "/v3/", None).is_none());
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(code("/v2/Bad/manifests/latest"), ErrorCode::NameInvalid);
        assert_eq!(code("/v2/a/manifests/bad:tag"), ErrorCode::DigestInvalid);
        assert_eq!(code("/v2/a/blobs/sha256:abc"), ErrorCode::DigestInvalid);
        assert_eq!(code("/v2/a/nothing/here"), ErrorCode::Unsupported);
        assert_eq!(code("/v2/a"), ErrorCode::Unsupported);
        // A malformed tag: a push is refused, anything else names a manifest that does not exist.
        let bad_tag = |m: Method| with(m, "/v2/a/manifests/-tag", "").unwrap_err();
        assert_eq!(bad_tag(Method::PUT).code, ErrorCode::TagInvalid);
        for m in [Method::GET, Method::HEAD, Method::DELETE] {
            let e = bad_tag(m);
            assert_eq!(
                (e.status, e.code),
                (StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown)
            );
        }
    }

    #[test]
    fn the_query_is_part_of_the_route() {
        let d: Digest = D.parse().unwrap();
        let page = |q: &str| match with(Method::GET, "/v2/a/tags/list", q).unwrap() {
            Route::Tags { page, .. } => page,
            r => panic!("{r:?}"),
        };
        assert_eq!(page(""), Page::default());
        assert_eq!(
            page("n=2&last=v%2B1"),
            Page {
                n: Some(2),
                last: Some("v+1".into())
            }
        );
        assert_eq!(page("n=&last="), Page::default());
        assert_eq!(page("n=1&n=3").n, Some(3), "the last value counts");
        assert_eq!(
            with(Method::GET, "/v2/_catalog", "n=x").unwrap_err().code,
            ErrorCode::PaginationNumberInvalid
        );
        assert_eq!(
            with(Method::GET, "/v2/_catalog", "n=-1").unwrap_err().code,
            ErrorCode::PaginationNumberInvalid
        );
        // Other methods ignore the listing query (and answer 405 in the handler).
        assert!(with(Method::DELETE, "/v2/_catalog", "n=x").is_ok());

        let start = |q: &str| match with(Method::POST, "/v2/a/blobs/uploads/", q) {
            Ok(Route::UploadStart { start, .. }) => Ok(start),
            Ok(r) => panic!("{r:?}"),
            Err(e) => Err(e.code),
        };
        assert_eq!(start(""), Ok(UploadStart::Session));
        assert_eq!(
            start(&format!("digest={D}")),
            Ok(UploadStart::Monolithic(d.clone()))
        );
        assert_eq!(start("digest="), Err(ErrorCode::DigestInvalid));
        assert_eq!(
            start(&format!("mount={D}&from=b/c&digest=junk")),
            Ok(UploadStart::Mount {
                digest: d.clone(),
                from: Some("b/c".parse().unwrap())
            }),
            "mount wins over digest"
        );
        assert_eq!(
            start(&format!("mount={D}")),
            Ok(UploadStart::Mount {
                digest: d.clone(),
                from: None
            })
        );
        assert_eq!(
            start(&format!("mount={D}&from=Bad")),
            Err(ErrorCode::NameInvalid)
        );
        assert_eq!(start("mount=nope&from=b"), Err(ErrorCode::DigestInvalid));
        let mount = with(
            Method::POST,
            "/v2/a/blobs/uploads/",
            &format!("mount={D}&from=x&from=y"),
        )
        .unwrap();
        assert_eq!(mount.mount_source().map(|n| n.as_str()), Some("y"));
        assert!(mount.is_mount());
        assert!(matches!(
            with(Method::GET, "/v2/a/blobs/uploads/", "digest=junk"),
            Ok(Route::UploadStart {
                start: UploadStart::Session,
                ..
            })
        ));

        let upload = |m: Method, q: &str| with(m, "/v2/a/blobs/uploads/u1", q);
        match upload(Method::PUT, &format!("_state=a%2Bb&digest={D}")).unwrap() {
            Route::Upload {
                uuid,
                state,
                digest,
                ..
            } => {
                assert_eq!(uuid, "u1");
                assert_eq!(state.as_deref(), Some("a+b"));
                assert_eq!(digest, Some(d.clone()));
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(
            upload(Method::PUT, "digest=sha256:12").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
        assert!(matches!(
            upload(Method::PATCH, "digest=junk"),
            Ok(Route::Upload {
                digest: None,
                state: None,
                ..
            })
        ));

        let referrers = |q: &str| match with(Method::GET, &format!("/v2/a/referrers/{D}"), q) {
            Ok(Route::Referrers { artifact_type, .. }) => artifact_type,
            r => panic!("{r:?}"),
        };
        assert_eq!(referrers(""), None);
        assert_eq!(referrers("artifactType="), None);
        assert_eq!(
            referrers("artifactType=application%2Fvnd.x%2Bjson").as_deref(),
            Some("application/vnd.x+json")
        );
    }
}
