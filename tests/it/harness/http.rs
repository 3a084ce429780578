//! HTTP helpers: the client, requests against a [`TestServer`], headers, credentials, and the
//! checks of the OCI error shape every error answer must have.

use base64::Engine as _;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use super::server::TestServer;

/// A client that never uses a proxy and never follows redirects (tests look at the 307s).
pub fn client() -> reqwest::Client {
    image_registry::net::tls::install_default_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// `Basic base64(user:pass)`.
pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// `http://127.0.0.1:<port>` where nothing listens (bound, then released).
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("local address"));
    drop(l);
    url
}

impl TestServer {
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

    /// A request with an `Authorization` value (`None`: without the header).
    pub fn request_as(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let r = self.request(method, path);
        match authorization {
            Some(a) => r.header("authorization", a),
            None => r,
        }
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
