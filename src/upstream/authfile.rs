//! Credentials from a podman/docker `auth.json` or a Kubernetes `.dockerconfigjson` pull secret
//! (the cluster pull secret's format): `{"auths": {"<host>": {"auth": base64("user:pass")}}}`,
//! or `username`/`password` fields; the old `.dockercfg` form (the map without `auths`) too.
//!
//! An entry matches the upstream's `host[:port]`; keys may carry a scheme or a path
//! (`https://index.docker.io/v1/`), and Docker Hub's names (`docker.io`, `index.docker.io`,
//! `registry-1.docker.io`) stand for each other.

use base64::Engine as _;
use serde_json::Value;

/// Why an auth file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not an auth.json / .dockerconfigjson file: {1}")]
    Format(String, String),
}

fn hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// `https://index.docker.io/v1/` -> `index.docker.io`; `quay.io/org` -> `quay.io`.
fn key_host(key: &str) -> String {
    let k = key.trim();
    let k = k.split_once("://").map_or(k, |(_, r)| r);
    k.split('/').next().unwrap_or("").to_ascii_lowercase()
}

/// The credentials for `host` (`host` or `host:port`) in the file's text; `Ok(None)` if it has no
/// entry for it.
pub fn credentials_in(
    text: &str,
    what: &str,
    host: &str,
) -> Result<Option<(String, String)>, AuthFileError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| AuthFileError::Format(what.into(), e.to_string()))?;
    let auths = match v.get("auths") {
        Some(a) => a,
        None => &v,
    };
    let map = auths
        .as_object()
        .ok_or_else(|| AuthFileError::Format(what.into(), "`auths` is not a map".into()))?;
    let host = host.to_ascii_lowercase();
    let entry = map.iter().find(|(k, _)| key_host(k) == host).or_else(|| {
        hub(&host)
            .then(|| map.iter().find(|(k, _)| hub(&key_host(k))))
            .flatten()
    });
    let Some((key, e)) = entry else {
        return Ok(None);
    };
    if let Some(a) = e
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| {
                AuthFileError::Format(what.into(), format!("{key}: `auth` is not base64"))
            })?;
        let s = String::from_utf8(raw).map_err(|_| {
            AuthFileError::Format(what.into(), format!("{key}: `auth` is not text"))
        })?;
        let (u, p) = s.split_once(':').ok_or_else(|| {
            AuthFileError::Format(what.into(), format!("{key}: `auth` is not user:password"))
        })?;
        return Ok(Some((u.to_owned(), p.to_owned())));
    }
    match (
        e.get("username").and_then(Value::as_str),
        e.get("password").and_then(Value::as_str),
    ) {
        (Some(u), Some(p)) => Ok(Some((u.to_owned(), p.to_owned()))),
        _ => Err(AuthFileError::Format(
            what.into(),
            format!("{key}: neither `auth` nor username/password"),
        )),
    }
}

/// [`credentials_in`] for a file.
pub fn credentials(path: &str, host: &str) -> Result<Option<(String, String)>, AuthFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthFileError::Read(path.into(), e))?;
    credentials_in(&text, path, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn finds_the_host_entry_in_every_form() {
        let podman = format!(
            r#"{{"auths": {{"registry.redhat.io": {{"auth": "{}"}}, "quay.io/org": {{"auth": "{}"}}}}}}"#,
            b64("rh|user:tok:en"),
            b64("q:w")
        );
        assert_eq!(
            credentials_in(&podman, "f", "registry.redhat.io").unwrap(),
            Some(("rh|user".into(), "tok:en".into()))
        );
        assert_eq!(
            credentials_in(&podman, "f", "quay.io").unwrap(),
            Some(("q".into(), "w".into()))
        );
        assert_eq!(credentials_in(&podman, "f", "ghcr.io").unwrap(), None);
        let docker = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            b64("d:p")
        );
        assert_eq!(
            credentials_in(&docker, "f", "registry-1.docker.io").unwrap(),
            Some(("d".into(), "p".into()))
        );
        let old = r#"{"localhost:5000": {"username": "u", "password": "p"}}"#;
        assert_eq!(
            credentials_in(old, "f", "localhost:5000").unwrap(),
            Some(("u".into(), "p".into()))
        );
        assert!(credentials_in("nope", "f", "x").is_err());
        assert!(credentials_in(r#"{"auths": {"x": {"auth": "!!"}}}"#, "f", "x").is_err());
    }
}
