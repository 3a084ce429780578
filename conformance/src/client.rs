//! A small blocking HTTP client that knows the registry authentication flows
//! (HTTP basic, and the bearer-token flow announced by a `WWW-Authenticate`
//! challenge), plus the response helpers the checks use to explain failures.

use reqwest::blocking::Client as Http;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, Url};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

/// Error codes defined by the distribution-spec ("Error Codes" table).
pub const SPEC_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

pub struct Client {
    http: Http,
    root: Url,
    username: Option<String>,
    password: Option<String>,
    /// `Authorization` values learnt from challenges, keyed by repository
    /// name ("" for registry-wide credentials such as HTTP basic).
    auth: HashMap<String, String>,
}

/// A fully read response, remembered together with the request that produced it
/// so that failure messages can name the method and URL.
pub struct Resp {
    pub method: Method,
    pub url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(
        root: &str,
        username: Option<String>,
        password: Option<String>,
        insecure: bool,
    ) -> Result<Self, String> {
        let root = Url::parse(root).map_err(|e| format!("OCI_ROOT_URL {root:?}: {e}"))?;
        let http = Http::builder()
            .timeout(Duration::from_secs(120))
            .danger_accept_invalid_certs(insecure)
            .user_agent(concat!("oci-conformance/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building HTTP client: {e}"))?;
        Ok(Client {
            http,
            root,
            username,
            password,
            auth: HashMap::new(),
        })
    }

    /// An absolute URL for a path such as `/v2/<name>/tags/list`.
    pub fn url(&self, path: &str) -> Url {
        self.root.join(path).expect("registry paths are valid URLs")
    }

    /// Sends a request, answering one authentication challenge if needed.
    pub fn send(
        &mut self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let repo = repository_of(url.path());
        let known = self.auth.get(&repo).or_else(|| self.auth.get("")).cloned();
        let resp = self.send_with(method.clone(), url, headers, body, known.as_deref())?;
        if resp.status != 401 {
            return Ok(resp);
        }
        let Some(challenge) = resp.header(WWW_AUTHENTICATE.as_str()) else {
            return Ok(resp);
        };
        let value = self
            .authorize(&challenge)
            .map_err(|e| format!("{method} {url}: answered 401 ({challenge}); {e}"))?;
        let key = if value.starts_with("Basic ") {
            String::new()
        } else {
            repo
        };
        self.auth.insert(key, value.clone());
        self.send_with(method, url, headers, body, Some(&value))
    }

    /// Sends a request without any credentials.
    pub fn send_anonymous(&self, method: Method, url: &Url) -> Result<Resp, String> {
        self.send_with(method, url, &[], None, None)
    }

    fn send_with(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        auth: Option<&str>,
    ) -> Result<Resp, String> {
        let mut req = self.http.request(method.clone(), url.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        if let Some(body) = body {
            req = req.body(body.to_vec());
        }
        let resp = req
            .send()
            .map_err(|e| format!("{method} {url}: request failed: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .map_err(|e| format!("{method} {url}: reading body failed: {e}"))?
            .to_vec();
        Ok(Resp {
            method,
            url: url.clone(),
            status,
            headers,
            body,
        })
    }

    /// Turns a `WWW-Authenticate` challenge into an `Authorization` value.
    fn authorize(&self, challenge: &str) -> Result<String, String> {
        let (scheme, params) = challenge
            .trim()
            .split_once(' ')
            .unwrap_or((challenge.trim(), ""));
        let params = parse_challenge_params(params);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => self.basic_value().ok_or_else(|| {
                "the registry wants HTTP basic auth: set OCI_USERNAME and OCI_PASSWORD".to_string()
            }),
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or("bearer challenge without a realm")?;
                let mut url = Url::parse(realm).map_err(|e| format!("token realm {realm}: {e}"))?;
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = params.get("service") {
                        query.append_pair("service", service);
                    }
                    if let Some(scope) = params.get("scope") {
                        for scope in scope.split(' ').filter(|s| !s.is_empty()) {
                            query.append_pair("scope", scope);
                        }
                    }
                }
                let mut req = self.http.get(url.clone());
                if let Some(user) = &self.username {
                    req = req.basic_auth(user, self.password.as_deref());
                }
                let resp = req
                    .send()
                    .map_err(|e| format!("token request GET {url} failed: {e}"))?;
                let status = resp.status();
                let text = resp.text().unwrap_or_default();
                if !status.is_success() {
                    return Err(format!("token request GET {url} answered {status}: {text}"));
                }
                let json: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("token response from {url} is not JSON: {e}"))?;
                let token = json
                    .get("token")
                    .or_else(|| json.get("access_token"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| format!("token response from {url} has no token"))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(format!("unsupported authentication scheme {other:?}")),
        }
    }

    /// The `Authorization` value for HTTP basic auth with the configured user.
    fn basic_value(&self) -> Option<String> {
        let user = self.username.as_ref()?;
        let req = self
            .http
            .get(self.root.clone())
            .basic_auth(user, self.password.as_deref())
            .build()
            .ok()?;
        let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
        Some(value.to_string())
    }
}

/// The repository a `/v2/<name>/...` path addresses ("" for `/v2/` itself).
fn repository_of(path: &str) -> String {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return String::new();
    };
    ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|marker| rest.find(marker))
        .min()
        .map(|end| rest[..end].to_string())
        .unwrap_or_default()
}

/// Parses `key="value", key2=value2` as found after the scheme of a challenge.
fn parse_challenge_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The media type of the response, without parameters.
    pub fn content_type(&self) -> Option<String> {
        self.header(CONTENT_TYPE.as_str())
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
    }

    /// A one-line excerpt of the body for failure messages.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.chars().count() > 300 {
            format!("{}...", text.chars().take(300).collect::<String>())
        } else {
            text
        }
    }

    /// "<METHOD> <URL> -> <status>: <msg>", the shape of every failure reason.
    pub fn fail(&self, msg: impl Display) -> String {
        let body = if self.body.is_empty() {
            String::new()
        } else {
            format!(" (body: {})", self.snippet())
        };
        format!(
            "{} {} -> {}: {msg}{body}",
            self.method, self.url, self.status
        )
    }

    pub fn expect_status(&self, want: &[u16]) -> Result<(), String> {
        if want.contains(&self.status) {
            return Ok(());
        }
        let want: Vec<String> = want.iter().map(u16::to_string).collect();
        Err(self.fail(format!(
            "expected status {}, got {}",
            want.join(" or "),
            self.status
        )))
    }

    pub fn expect_header(&self, name: &str) -> Result<String, String> {
        self.header(name)
            .ok_or_else(|| self.fail(format!("missing {name} header")))
    }

    /// Checks that a header equals `want` exactly.
    pub fn expect_header_eq(&self, name: &str, want: &str) -> Result<(), String> {
        let got = self.expect_header(name)?;
        if got.trim() == want {
            Ok(())
        } else {
            Err(self.fail(format!("expected {name}: {want}, got {name}: {got}")))
        }
    }

    /// Checks `Docker-Content-Digest` equals `digest` if the header is present.
    pub fn check_digest_header(&self, digest: &str) -> Result<(), String> {
        match self.header("Docker-Content-Digest") {
            Some(got) if got.trim() != digest => Err(self.fail(format!(
                "expected Docker-Content-Digest: {digest}, got {got}"
            ))),
            _ => Ok(()),
        }
    }

    /// The `Location` header, resolved against the request URL.
    pub fn location(&self) -> Result<Url, String> {
        let loc = self.expect_header("Location")?;
        self.url
            .join(loc.trim())
            .map_err(|e| self.fail(format!("unusable Location {loc:?}: {e}")))
    }

    /// The URL of the `rel="next"` entry of a `Link` header, if any.
    pub fn next_link(&self) -> Result<Option<Url>, String> {
        let Some(link) = self.header("Link") else {
            return Ok(None);
        };
        for part in link.split(',') {
            let is_next = part.split(';').skip(1).any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let (Some(start), Some(end)) = (part.find('<'), part.find('>')) else {
                return Err(self.fail(format!("malformed Link header {link:?}")));
            };
            return self
                .url
                .join(&part[start + 1..end])
                .map(Some)
                .map_err(|e| self.fail(format!("unusable Link header {link:?}: {e}")));
        }
        Ok(None)
    }

    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| self.fail(format!("body is not valid JSON: {e}")))
    }

    /// The error codes of a spec-shaped error body, validating its shape:
    /// `{"errors":[{"code":"UPPER_CASE","message":"...","detail":...}]}`.
    pub fn error_codes(&self) -> Result<Vec<String>, String> {
        let json = self.json()?;
        let errors = json
            .get("errors")
            .and_then(Value::as_array)
            .ok_or_else(|| self.fail("error body has no \"errors\" array"))?;
        if errors.is_empty() {
            return Err(self.fail("error body has an empty \"errors\" array"));
        }
        let mut codes = Vec::new();
        for error in errors {
            let code = error
                .get("code")
                .and_then(Value::as_str)
                .ok_or_else(|| self.fail("an error has no string \"code\""))?;
            if code.is_empty() || !code.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                return Err(self.fail(format!(
                    "error code {code:?} is not upper-case letters and underscores"
                )));
            }
            if let Some(message) = error.get("message") {
                if !message.is_string() {
                    return Err(self.fail("an error's \"message\" is not a string"));
                }
            }
            codes.push(code.to_string());
        }
        Ok(codes)
    }

    /// Expects one of `statuses` and a spec error body containing `code`.
    pub fn expect_error(&self, statuses: &[u16], code: &str) -> Result<(), String> {
        self.expect_status(statuses)?;
        let codes = self.error_codes()?;
        if codes.iter().any(|c| c == code) {
            Ok(())
        } else {
            Err(self.fail(format!("expected error code {code}, got {codes:?}")))
        }
    }

    /// A 4xx body MAY be in any format, but if it is JSON it MUST be the spec's
    /// error shape with codes from the spec's table.
    pub fn check_error_body_if_json(&self) -> Result<(), String> {
        let looks_json = self.content_type().is_some_and(|ct| ct.contains("json"))
            || self.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if self.body.is_empty() || !looks_json {
            return Ok(());
        }
        for code in self.error_codes()? {
            if !SPEC_ERROR_CODES.contains(&code.as_str()) {
                return Err(self.fail(format!("error code {code} is not one of the spec's codes")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_params() {
        let p = parse_challenge_params(
            r#"realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let p = parse_challenge_params("realm=x, service=y");
        assert_eq!(p["realm"], "x");
        assert_eq!(p["service"], "y");
    }

    #[test]
    fn repositories() {
        assert_eq!(repository_of("/v2/"), "");
        assert_eq!(repository_of("/v2/a/b/blobs/uploads/x"), "a/b");
        assert_eq!(repository_of("/v2/a/manifests/tags/x"), "a");
        assert_eq!(repository_of("/v2/a/b/tags/list"), "a/b");
    }
}
