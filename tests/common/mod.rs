//! Shared harness of the integration tests: starts the registry in-process on an ephemeral
//! `127.0.0.1` port (filesystem storage in a temporary folder unless told otherwise) and offers
//! helpers to push blobs and manifests and to check the OCI error shape.
//!
//! Every test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image_registry::app::{build_app, build_driver, build_registry, AppOptions};
use image_registry::config::Config;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::Digest as _;
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The default upload secret, shared by servers started on the same folder.
pub const SECRET: &str = "integration-test-secret";

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `readOnly: true`.
    pub read_only: bool,
    /// `storage.delete.enabled: false`.
    pub delete_disabled: bool,
    /// `storage.inmemory` instead of the filesystem.
    pub in_memory: bool,
    /// `http.secret` (default [`SECRET`]).
    pub secret: Option<String>,
    /// Serve an existing folder instead of a fresh temporary one.
    pub root: Option<PathBuf>,
}

impl Options {
    pub fn read_only() -> Options {
        Options {
            read_only: true,
            ..Options::default()
        }
    }

    pub fn delete_disabled() -> Options {
        Options {
            delete_disabled: true,
            ..Options::default()
        }
    }

    pub fn in_memory() -> Options {
        Options {
            in_memory: true,
            ..Options::default()
        }
    }

    /// Another server on the same folder (same secret unless changed).
    pub fn sharing(root: &Path) -> Options {
        Options {
            root: Some(root.to_owned()),
            ..Options::default()
        }
    }

    pub fn with_secret(mut self, s: &str) -> Options {
        self.secret = Some(s.to_owned());
        self
    }

    fn yaml(&self, root: Option<&Path>) -> String {
        let mut y = String::from("version: 0.1\nlog:\n  level: error\nstorage:\n");
        match root {
            Some(r) => y.push_str(&format!(
                "  filesystem:\n    rootdirectory: {:?}\n",
                r.display().to_string()
            )),
            None => y.push_str("  inmemory: {}\n"),
        }
        y.push_str(&format!(
            "  delete:\n    enabled: {}\n",
            !self.delete_disabled
        ));
        y.push_str(&format!(
            "http:\n  addr: 127.0.0.1:0\n  secret: {:?}\n",
            self.secret.as_deref().unwrap_or(SECRET)
        ));
        if self.read_only {
            y.push_str("readOnly: true\n");
        }
        y
    }
}

/// A registry serving on `127.0.0.1:<ephemeral>` for the lifetime of the value.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub client: reqwest::Client,
    /// Storage folder (None for in-memory).
    pub root: Option<PathBuf>,
    _dir: Option<TempDir>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

impl TestServer {
    /// Filesystem storage in a fresh temporary folder, deletes enabled, writable.
    pub async fn start() -> TestServer {
        TestServer::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestServer {
        let (dir, root) = if opts.in_memory {
            (None, None)
        } else {
            match &opts.root {
                Some(r) => (None, Some(r.clone())),
                None => {
                    let d = tempfile::tempdir().expect("temporary folder");
                    let r = d.path().to_owned();
                    (Some(d), Some(r))
                }
            }
        };
        let (config, _warnings) =
            Config::from_yaml(&opts.yaml(root.as_deref()), &[]).expect("test config is valid");
        assert_eq!(config.read_only(), opts.read_only);
        let driver = build_driver(&config).expect("storage driver");
        let (registry, generated) = build_registry(&config, driver);
        assert!(!generated, "the test config sets http.secret");
        let app = build_app(
            registry,
            AppOptions {
                read_only: config.read_only(),
                ..AppOptions::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("server runs");
        });
        TestServer {
            base: format!("http://{addr}"),
            client: client(),
            root,
            _dir: dir,
            task,
        }
    }

    /// The storage folder (panics for in-memory servers).
    pub fn root(&self) -> &Path {
        self.root.as_deref().expect("a filesystem server")
    }

    /// Absolute URL of a path (`/v2/...`) or of a `Location` header (relative or absolute).
    pub fn url(&self, path_or_location: &str) -> String {
        if path_or_location.starts_with("http://") || path_or_location.starts_with("https://") {
            path_or_location.to_owned()
        } else {
            format!("{}{}", self.base, path_or_location)
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET")
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.expect("HEAD")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path)
            .send()
            .await
            .expect("DELETE")
    }

    // ----- blobs -------------------------------------------------------------------------------

    /// `POST /v2/<repo>/blobs/uploads/?digest=` with the whole blob; asserts 201. Returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let resp = self
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("monolithic upload");
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "monolithic push to {repo}"
        );
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        digest
    }

    /// Starts an upload session; asserts 202 and returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .expect("POST upload");
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "start upload in {repo}"
        );
        header(&resp, "location")
    }

    /// One `PATCH` with `Content-Range: <start>-<end>`; returns the response.
    pub async fn patch_chunk(&self, location: &str, start: u64, chunk: &[u8]) -> Response {
        self.request(Method::PATCH, location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() as u64 - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .expect("PATCH")
    }

    /// `PUT <location>&digest=<digest>` with an optional final body.
    pub async fn finish_upload(
        &self,
        location: &str,
        digest: &str,
        body: Option<&[u8]>,
    ) -> Response {
        let mut req = self.request(Method::PUT, &with_query(location, "digest", digest));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/octet-stream")
                .body(b.to_vec());
        }
        req.send().await.expect("PUT upload")
    }

    /// POST, then PATCH in chunks of `chunk` bytes with `Content-Range`, then PUT without body;
    /// asserts every status. Returns the digest.
    pub async fn push_blob_chunked(&self, repo: &str, data: &[u8], chunk: usize) -> String {
        let digest = sha256(data);
        let mut location = self.start_upload(repo).await;
        let mut offset = 0u64;
        for piece in data.chunks(chunk.max(1)) {
            let resp = self.patch_chunk(&location, offset, piece).await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED, "PATCH at {offset}");
            offset += piece.len() as u64;
            assert_eq!(header(&resp, "range"), format!("0-{}", offset - 1));
            location = header(&resp, "location");
        }
        let resp = self.finish_upload(&location, &digest, None).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "PUT completing upload");
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        digest
    }

    // ----- manifests ---------------------------------------------------------------------------

    /// `PUT /v2/<repo>/manifests/<reference>` with a Content-Type; returns the response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("PUT manifest")
    }

    /// Pushes a manifest and asserts 201 with the right digest. Returns the digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self.put_manifest(repo, reference, media_type, body).await;
        let status = resp.status();
        let digest = sha256(body);
        if status != StatusCode::CREATED {
            let text = resp.text().await.unwrap_or_default();
            panic!("PUT manifest {repo}:{reference}: {status} {text}");
        }
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(
            header(&resp, "location"),
            format!("/v2/{repo}/manifests/{digest}")
        );
        digest
    }

    /// Pushes a config and one layer (`seed` makes them unique) and returns an OCI image
    /// manifest referencing them (not pushed).
    pub async fn oci_image(&self, repo: &str, seed: &str) -> Vec<u8> {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed:?}}}"#);
        let layer = format!("layer bytes of {seed}").into_bytes();
        let c = self.push_blob(repo, config.as_bytes()).await;
        let l = self.push_blob(repo, &layer).await;
        oci_manifest(
            &descriptor(OCI_CONFIG, &c, config.len()),
            &[descriptor(OCI_LAYER, &l, layer.len())],
        )
    }

    /// Like [`oci_image`](Self::oci_image), pushed under `reference`. Returns (digest, bytes).
    pub async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> (String, Vec<u8>) {
        let m = self.oci_image(repo, seed).await;
        let d = self.push_manifest(repo, reference, OCI_MANIFEST, &m).await;
        (d, m)
    }

    /// Pushes a Docker schema2 image (config and layer blobs too). Returns (digest, bytes).
    pub async fn push_docker_image(
        &self,
        repo: &str,
        reference: &str,
        seed: &str,
    ) -> (String, Vec<u8>) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","docker":{seed:?}}}"#);
        let layer = format!("docker layer of {seed}").into_bytes();
        let c = self.push_blob(repo, config.as_bytes()).await;
        let l = self.push_blob(repo, &layer).await;
        let m = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(DOCKER_CONFIG, &c, config.len()),
            "layers": [descriptor(DOCKER_LAYER, &l, layer.len())],
        }))
        .unwrap();
        let d = self
            .push_manifest(repo, reference, DOCKER_MANIFEST, &m)
            .await;
        (d, m)
    }

    /// `GET /v2/<repo>/tags/list`, asserting 200; returns the tags.
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let resp = self.get(&format!("/v2/{repo}/tags/list")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v = json_body(resp).await;
        assert_eq!(v["name"], repo);
        strings(&v["tags"])
    }
}

// ----- free helpers --------------------------------------------------------------------------------

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// `sha512:<hex>` of `data`.
pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// The hex part of a digest.
pub fn hex_of(digest: &str) -> &str {
    digest.split_once(':').expect("algorithm:hex").1
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Adds `key=value` to a URL or `Location`, percent-encoding the value.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let v: String = value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{url}{sep}{key}={v}")
}

/// A descriptor.
pub fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// An OCI image manifest's bytes.
pub fn oci_manifest(config: &Value, layers: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

/// A header's value as a string (panics if missing or not text).
pub fn header(resp: &Response, name: &str) -> String {
    header_of(resp.headers(), name)
}

pub fn header_of(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("missing header {name}; headers: {h:?}"))
        .to_str()
        .expect("text header")
        .to_owned()
}

pub fn opt_header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("text header").to_owned())
}

/// Asserts `Docker-Distribution-API-Version: registry/2.0`.
pub fn assert_api_version(resp: &Response) {
    assert_eq!(
        opt_header(resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0"),
        "API version header on {} {}",
        resp.status(),
        resp.url()
    );
}

/// The body as JSON.
pub async fn json_body(resp: Response) -> Value {
    let b = resp.bytes().await.expect("body");
    serde_json::from_slice(&b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&b)))
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// Asserts an OCI error answer: the status, `Content-Type: application/json`, the API version
/// header and a body `{"errors":[{"code":<code>,"message":<string>,...}]}`. Returns the first error.
pub async fn assert_error(resp: Response, status: StatusCode, code: &str) -> Value {
    assert_error_one_of(resp, status, &[code]).await
}

/// Like [`assert_error`], with any of several codes allowed (where the spec allows several).
pub async fn assert_error_one_of(resp: Response, status: StatusCode, codes: &[&str]) -> Value {
    let got = resp.status();
    let url = resp.url().clone();
    assert_api_version(&resp);
    let ct = opt_header(&resp, "content-type");
    let body = resp.bytes().await.expect("error body");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(got, status, "status of {url}: body {text}");
    assert_eq!(
        ct.as_deref(),
        Some("application/json"),
        "content type of the error from {url}"
    );
    let v: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("error body of {url} is not JSON ({e}): {text}"));
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {text}"));
    assert!(!errors.is_empty(), "empty errors array: {text}");
    for e in errors {
        assert!(e["code"].is_string(), "code is a string: {text}");
        assert!(e["message"].is_string(), "message is a string: {text}");
    }
    assert!(
        codes.iter().any(|c| errors[0]["code"] == *c),
        "error code of {url} is not one of {codes:?}: {text}"
    );
    errors[0].clone()
}

/// Asserts a `HEAD` error: the status and API version header, and no body.
pub async fn assert_head_error(resp: Response, status: StatusCode) {
    assert_eq!(resp.status(), status, "HEAD {}", resp.url());
    assert_api_version(&resp);
    let body = resp.bytes().await.expect("body");
    assert!(body.is_empty(), "HEAD answers have no body");
}

/// Recursively lists every file below `dir`, as `/`-separated paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.expect("dir entry");
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).expect("below base");
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
