//! One upstream registry over HTTP: the distribution API calls the cache needs (`GET`/`HEAD` of
//! manifests and blobs) and the upstream's auth: anonymous, Basic, or the Docker token flow
//! (`WWW-Authenticate: Bearer realm,service,scope` -> a token from the realm, with the
//! credentials if any -> reused for that scope until it expires). Every answer is sorted into an
//! [`UpstreamError`] the domain understands; nothing here retries more than the one auth round.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use reqwest::header::{
    HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};

use crate::oci::{media, Digest};
use crate::registry::UpstreamError;

/// How long connecting to an upstream may take: an unreachable upstream answers this fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an upstream may take to send its response headers.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a blob body may stall between two reads.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Every manifest type the cache stores.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="a,b"` (quoted values may hold commas) or
/// `Basic realm="..."`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            // A quoted-string keeps its bytes as sent (RFC 9110 §5.6.4), spaces included.
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    Some(Challenge::Bearer {
        // Without a realm there is nowhere to ask for a token.
        realm: params.remove("realm").filter(|r| !r.is_empty())?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// One upstream registry.
pub struct UpstreamClient {
    base: Url,
    http: reqwest::Client,
    creds: Option<(String, String)>,
    /// Bearer tokens by scope, with their expiry.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The upstream asked for Basic once: send it up front from now on.
    basic: AtomicBool,
    /// Docker Hub: one-component names are `library/<name>`.
    hub: bool,
}

fn transport(e: reqwest::Error) -> UpstreamError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    UpstreamError::BadGateway(format!("{what}: {e}"))
}

fn header(h: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Sorts a final answer: success passes, the rest becomes an error.
fn classify(resp: reqwest::Response) -> Result<reqwest::Response, UpstreamError> {
    let s = resp.status();
    if s.is_success() {
        return Ok(resp);
    }
    Err(match s {
        StatusCode::NOT_FOUND => UpstreamError::NotFound(format!("{} answered 404", resp.url())),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            UpstreamError::NotFound(format!("{} denied access ({s})", resp.url()))
        }
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::RateLimited {
            retry_after: header(resp.headers(), RETRY_AFTER),
        },
        s if s.is_server_error() => {
            UpstreamError::Unavailable(format!("{} answered {s}", resp.url()))
        }
        s => UpstreamError::BadGateway(format!("{} answered {s}", resp.url())),
    })
}

impl UpstreamClient {
    /// A client for `base` (the registry's root URL) with optional credentials, built from
    /// `builder` (which carries the outbound proxy and CAs).
    pub fn new(
        base: Url,
        builder: reqwest::ClientBuilder,
        creds: Option<(String, String)>,
    ) -> Result<UpstreamClient, reqwest::Error> {
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()?;
        let hub = matches!(
            base.host_str(),
            Some("registry-1.docker.io" | "docker.io" | "index.docker.io")
        );
        Ok(UpstreamClient {
            base,
            http,
            creds,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
            hub,
        })
    }

    /// The upstream's name for `remote` (Docker Hub's official images live under `library/`).
    pub fn remote_name(&self, remote: &str) -> String {
        if self.hub && !remote.contains('/') {
            format!("library/{remote}")
        } else {
            remote.to_owned()
        }
    }

    fn url(&self, remote: &str, kind: &str, reference: &str) -> Result<Url, UpstreamError> {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/v2/{remote}/{kind}/{reference}"))
            .map_err(|e| UpstreamError::BadGateway(format!("bad upstream URL: {e}")))
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let t = self.tokens.lock().ok()?;
        t.get(scope)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(t, _)| t.clone())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        key: &str,
    ) -> Result<(), UpstreamError> {
        let mut url = Url::parse(realm)
            .map_err(|e| UpstreamError::BadGateway(format!("bad token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut rb = self.http.get(url);
        if let Some((u, p)) = &self.creds {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = tokio::time::timeout(RESPONSE_TIMEOUT, rb.send())
            .await
            .map_err(|_| UpstreamError::BadGateway("the token endpoint timed out".into()))?
            .map_err(transport)?;
        let s = resp.status();
        if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN {
            return Err(UpstreamError::BadGateway(format!(
                "the upstream token endpoint refused the credentials ({s})"
            )));
        }
        let resp = classify(resp)?;
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| UpstreamError::BadGateway(format!("bad token answer: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::BadGateway("the token answer has no token".into()))?
            .to_owned();
        // The spec's default lifetime is 60 s; renew a little early.
        let secs = v
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(60)
            .max(10);
        let exp = Instant::now() + Duration::from_secs(secs - 5);
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(key.to_owned(), (token, exp));
        }
        Ok(())
    }

    /// Sends one API request for `remote` with whatever auth the upstream asks for.
    async fn send(
        &self,
        method: Method,
        url: Url,
        remote: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let scope = format!("repository:{remote}:pull");
        let mut last = None;
        for _attempt in 0..2 {
            let mut rb = self.http.request(method.clone(), url.clone());
            if let Some(a) = accept {
                rb = rb.header(ACCEPT, a);
            }
            if let Some(tok) = self.cached_token(&scope) {
                rb = rb.bearer_auth(tok);
            } else if self.basic.load(Ordering::Relaxed) {
                if let Some((u, p)) = &self.creds {
                    rb = rb.basic_auth(u, Some(p));
                }
            }
            let resp = tokio::time::timeout(RESPONSE_TIMEOUT, rb.send())
                .await
                .map_err(|_| UpstreamError::BadGateway(format!("{url} timed out")))?
                .map_err(transport)?;
            if resp.status() != StatusCode::UNAUTHORIZED || last.is_some() {
                return classify(resp);
            }
            let challenge =
                header(resp.headers(), WWW_AUTHENTICATE).and_then(|h| parse_challenge(&h));
            match challenge {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: asked,
                }) => {
                    // Ask for what we need; the challenge's scope names the same repository.
                    let s = asked
                        .filter(|a| a.contains(remote))
                        .unwrap_or(scope.clone());
                    self.fetch_token(&realm, service.as_deref(), &s, &scope)
                        .await?;
                }
                Some(Challenge::Basic) if self.creds.is_some() => {
                    self.basic.store(true, Ordering::Relaxed);
                }
                _ => return classify(resp),
            }
            last = Some(());
        }
        Err(UpstreamError::BadGateway(
            "upstream auth did not settle".into(),
        ))
    }

    /// `GET` of a manifest: bytes, content type, `Docker-Content-Digest`.
    pub async fn manifest(
        &self,
        remote: &str,
        reference: &str,
    ) -> Result<(bytes::Bytes, Option<String>, Option<Digest>), UpstreamError> {
        let url = self.url(remote, "manifests", reference)?;
        let resp = self
            .send(Method::GET, url, remote, Some(MANIFEST_ACCEPT))
            .await?;
        let ct = header(resp.headers(), CONTENT_TYPE);
        let digest = header(resp.headers(), "docker-content-digest").and_then(|d| d.parse().ok());
        if resp
            .content_length()
            .is_some_and(|l| l > crate::registry::MAX_MANIFEST_SIZE as u64)
        {
            return Err(UpstreamError::BadGateway(
                "upstream manifest too large".into(),
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| UpstreamError::BadGateway(format!("reading the manifest: {e}")))?;
        if body.len() > crate::registry::MAX_MANIFEST_SIZE {
            return Err(UpstreamError::BadGateway(
                "upstream manifest too large".into(),
            ));
        }
        let ct = ct
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|c| MANIFEST_ACCEPT.split(", ").any(|t| t == c) || c == media::DOCKER_SCHEMA1);
        Ok((body, ct, digest))
    }

    /// `HEAD` of a manifest: its digest (`Docker-Content-Digest`).
    pub async fn manifest_digest(
        &self,
        remote: &str,
        reference: &str,
    ) -> Result<Digest, UpstreamError> {
        let url = self.url(remote, "manifests", reference)?;
        let resp = self
            .send(Method::HEAD, url, remote, Some(MANIFEST_ACCEPT))
            .await?;
        header(resp.headers(), "docker-content-digest")
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| {
                UpstreamError::BadGateway("upstream HEAD sent no Docker-Content-Digest".into())
            })
    }

    /// `GET` of a blob: its length if sent, and the bytes as they come.
    pub async fn blob(
        &self,
        remote: &str,
        digest: &Digest,
    ) -> Result<(Option<u64>, crate::registry::ByteStream), UpstreamError> {
        let url = self.url(remote, "blobs", &digest.to_string())?;
        let resp = self.send(Method::GET, url, remote, None).await?;
        let size = resp.content_length();
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        Ok((size, Box::pin(stream)))
    }

    /// Every tag of `remote`, following `Link: <...>; rel="next"` pages.
    pub async fn tags(&self, remote: &str) -> Result<Vec<String>, UpstreamError> {
        let base = self.base.as_str().trim_end_matches('/').to_owned();
        let mut next = Some(format!("{base}/v2/{remote}/tags/list?n=1000"));
        let mut out = Vec::new();
        let mut pages = 0;
        while let Some(u) = next.take() {
            pages += 1;
            if pages > 1000 {
                return Err(UpstreamError::BadGateway("too many tag pages".into()));
            }
            let url = Url::parse(&u)
                .map_err(|e| UpstreamError::BadGateway(format!("bad tag page URL: {e}")))?;
            let resp = self.send(Method::GET, url, remote, None).await?;
            next = header(resp.headers(), "link").and_then(|l| {
                let (target, rel) = l.split_once(';')?;
                rel.contains("next").then(|| {
                    let t = target.trim().trim_start_matches('<').trim_end_matches('>');
                    if t.starts_with("http") {
                        t.to_owned()
                    } else {
                        format!("{base}{t}")
                    }
                })
            });
            let v: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| UpstreamError::BadGateway(format!("bad tag list: {e}")))?;
            out.extend(
                v.get("tags")
                    .and_then(|t| t.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned)),
            );
        }
        Ok(out)
    }

    /// `HEAD` of a blob: its size.
    pub async fn blob_size(&self, remote: &str, digest: &Digest) -> Result<u64, UpstreamError> {
        let url = self.url(remote, "blobs", &digest.to_string())?;
        let resp = self.send(Method::HEAD, url, remote, None).await?;
        header(resp.headers(), CONTENT_LENGTH)
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| UpstreamError::BadGateway("upstream HEAD sent no Content-Length".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm=http://x/t"#),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
        // A bare key or an empty realm is no challenge to follow.
        assert_eq!(parse_challenge("Bearer realm"), None);
        assert_eq!(parse_challenge(r#"Bearer realm="""#), None);
        // Quoted values keep their spaces; unquoted ones are trimmed.
        assert_eq!(
            parse_challenge(r#"Bearer realm = " http://x/t ", service= s ,scope="a b""#),
            Some(Challenge::Bearer {
                realm: " http://x/t ".into(),
                service: Some("s".into()),
                scope: Some("a b".into()),
            })
        );
    }
}
