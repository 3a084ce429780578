//! The registry operations a scenario times, over plain HTTP/1.1 (what distribution serves).

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Client, Response, StatusCode};

use crate::payload::Payload;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry at `base` (`http://host:port`).
#[derive(Clone)]
pub struct Registry {
    pub base: String,
    pub http: Client,
    /// The same, but never following a redirect (to time the `307` itself).
    pub nofollow: Client,
}

fn expect(resp: &Response, want: StatusCode, what: &str) -> Result<()> {
    if resp.status() != want {
        bail!("{what}: HTTP {} (wanted {want})", resp.status());
    }
    Ok(())
}

impl Registry {
    pub fn new(base: &str) -> Result<Registry> {
        let builder = || {
            Client::builder()
                .http1_only()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(1024)
        };
        let http = builder().build()?;
        let nofollow = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Registry {
            base: base.trim_end_matches('/').to_owned(),
            http,
            nofollow,
        })
    }

    fn abs(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    fn location(&self, resp: &Response) -> Result<String> {
        let l = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("no Location"))?;
        Ok(self.abs(l))
    }

    pub async fn ping(&self) -> Result<()> {
        let r = self.http.get(format!("{}/v2/", self.base)).send().await?;
        expect(&r, StatusCode::OK, "GET /v2/")
    }

    async fn start(&self, repo: &str) -> Result<String> {
        let r = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .header(CONTENT_LENGTH, "0")
            .send()
            .await?;
        expect(&r, StatusCode::ACCEPTED, "POST upload")?;
        self.location(&r)
    }

    async fn finish(&self, location: &str, digest: &str, body: Option<Vec<Bytes>>) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let mut req = self
            .http
            .put(format!("{location}{sep}digest={digest}"))
            .header(CONTENT_TYPE, "application/octet-stream");
        req = match body {
            Some(b) => with_body(req, b),
            None => req.header(CONTENT_LENGTH, "0"),
        };
        let r = req.send().await?;
        expect(&r, StatusCode::CREATED, "PUT upload")
    }

    /// Monolithic push: `POST` then one `PUT` with the whole blob.
    pub async fn push_monolithic(&self, repo: &str, p: &Payload) -> Result<()> {
        let loc = self.start(repo).await?;
        self.finish(&loc, &p.digest, Some(p.range(0, p.len())))
            .await
    }

    /// Chunked push: `POST`, `PATCH`es of `chunk` bytes with `Content-Range`, then an empty `PUT`.
    pub async fn push_chunked(&self, repo: &str, p: &Payload, chunk: usize) -> Result<()> {
        let mut loc = self.start(repo).await?;
        let mut off = 0;
        while off < p.len() {
            let end = (off + chunk).min(p.len());
            let req = self
                .http
                .patch(&loc)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, format!("{off}-{}", end - 1));
            let r = with_body(req, p.range(off, end)).send().await?;
            expect(&r, StatusCode::ACCEPTED, "PATCH upload")?;
            loc = self.location(&r)?;
            off = end;
        }
        self.finish(&loc, &p.digest, None).await
    }

    /// Pulls a blob, reading and discarding the body; returns the bytes received.
    pub async fn pull(&self, repo: &str, digest: &str) -> Result<u64> {
        let mut r = self
            .http
            .get(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await?;
        expect(&r, StatusCode::OK, "GET blob")?;
        let mut n = 0u64;
        while let Some(c) = r.chunk().await? {
            n += c.len() as u64;
        }
        Ok(n)
    }

    /// `GET` of a blob answered with a redirect to the store (`307` with a `Location`), not
    /// followed: what a pull costs the registry when the store serves the bytes.
    pub async fn blob_redirect(&self, repo: &str, digest: &str) -> Result<()> {
        let r = self
            .nofollow
            .get(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await?;
        expect(&r, StatusCode::TEMPORARY_REDIRECT, "GET blob (redirect)")?;
        self.location(&r).map(|_| ())
    }

    /// `HEAD` of a blob.
    pub async fn head_blob(&self, repo: &str, digest: &str) -> Result<()> {
        let r = self
            .http
            .head(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await?;
        expect(&r, StatusCode::OK, "HEAD blob")
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, body: Bytes) -> Result<()> {
        let r = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header(CONTENT_TYPE, MANIFEST_TYPE)
            .body(body)
            .send()
            .await?;
        expect(&r, StatusCode::CREATED, "PUT manifest")
    }

    /// `GET` (or `HEAD`) of a manifest; returns the body length.
    pub async fn get_manifest(&self, repo: &str, reference: &str, head: bool) -> Result<u64> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let req = if head {
            self.http.head(url)
        } else {
            self.http.get(url)
        };
        let r = req.header(ACCEPT, MANIFEST_TYPE).send().await?;
        expect(&r, StatusCode::OK, "GET manifest")?;
        let b = r.bytes().await.context("manifest body")?;
        Ok(b.len() as u64)
    }
}

/// A request body of `pieces`, with its `Content-Length` (one piece is sent as it is).
fn with_body(req: reqwest::RequestBuilder, mut pieces: Vec<Bytes>) -> reqwest::RequestBuilder {
    if pieces.len() == 1 {
        return req.body(pieces.remove(0));
    }
    let len: usize = pieces.iter().map(Bytes::len).sum();
    let stream = futures::stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
    req.header(CONTENT_LENGTH, len.to_string())
        .body(reqwest::Body::wrap_stream(stream))
}

/// An image manifest over `config` and `layers`.
pub fn manifest(config: &Payload, layers: &[&Payload]) -> Bytes {
    let desc = |media: &str, p: &Payload| serde_json::json!({"mediaType": media, "digest": p.digest, "size": p.len()});
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers
            .iter()
            .map(|l| desc("application/vnd.oci.image.layer.v1.tar+gzip", l))
            .collect::<Vec<_>>(),
    });
    Bytes::from(serde_json::to_vec(&m).expect("manifest json"))
}
