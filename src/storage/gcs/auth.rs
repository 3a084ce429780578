//! GCS credentials and access tokens: which service-account key applies (`storage.gcs.keyfile`,
//! else `GOOGLE_APPLICATION_CREDENTIALS`, else none), the RS256 key it holds (also used by
//! `sign.rs`), and OAuth access tokens from that key or from the metadata server, cached until a
//! minute before they expire.
//!
//! Depends on reqwest, jsonwebtoken and the config only. Contract: [`Tokens::token`] answers
//! `None` with `noauth`, else a token or a `Backend` error (one request to the token endpoint or
//! the metadata server, never retried here: the caller's retry covers the call it authorizes).
//! Keys are read and checked once, at start.
//!
//! Why not a GCP auth crate: `gcp_auth` sends through its own hyper client (the OS roots, none of
//! our timeouts), retries token requests five times on a schedule of its own, requires `token_uri`
//! in the key, and its metadata provider calls the metadata server while it is built (ours is
//! built without I/O, and tests must never reach one); object_store's GCS credentials sign JWTs
//! for the storage audience instead of exchanging them for tokens, and require `private_key_id`.
//! What is left here is the token request itself; the JWT and RS256 are jsonwebtoken's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::GcsConfig;
use crate::storage::{Result, StorageError};

const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// The OAuth grant that exchanges a signed JWT for an access token.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA_TOKEN: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
/// A cached token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// A service-account key (the JSON file Google issues).
#[derive(Deserialize, Clone)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub token_uri: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// The service account: its email, RS256 key and token endpoint.
pub(super) struct ServiceAccount {
    pub email: String,
    key: EncodingKey,
    token_uri: String,
}

impl ServiceAccount {
    /// Reads the key's `private_key` (PEM) and checks it signs.
    pub fn from_key(k: &ServiceAccountKey) -> anyhow::Result<ServiceAccount> {
        let bad = |e: jsonwebtoken::errors::Error| {
            anyhow::anyhow!("the service-account key's private_key: {e}")
        };
        let key = EncodingKey::from_rsa_pem(k.private_key.as_bytes()).map_err(bad)?;
        // Parsing the PEM does not parse the RSA key: one signature now fails a bad key at start.
        jsonwebtoken::crypto::sign(b"check", &key, Algorithm::RS256).map_err(bad)?;
        Ok(ServiceAccount {
            email: k.client_email.clone(),
            key,
            token_uri: k
                .token_uri
                .clone()
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.into()),
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 of `data` (what `GOOG4-RSA-SHA256` and RS256 are).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        let b64 = jsonwebtoken::crypto::sign(data, &self.key, Algorithm::RS256)
            .map_err(|e| StorageError::Backend(format!("gcs: signing: {e}")))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|e| StorageError::Backend(format!("gcs: signing: {e}")))
    }

    /// The signed JWT that the token endpoint exchanges for an access token (valid one hour).
    pub fn assertion(&self) -> Result<String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: i64,
            exp: i64,
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: &self.email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + 3600,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| StorageError::Backend(format!("gcs: fetching an access token: {e}")))
    }
}

/// Reads and checks a service-account key file; `what` names where its path came from.
fn read_key(path: &str, what: &str) -> anyhow::Result<ServiceAccountKey> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the GCS key file {path} ({what}): {e}"))?;
    let k: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("the GCS key file {path} ({what}) is not a service-account key: {e}")
    })?;
    if k.kind.as_deref().is_some_and(|t| t != "service_account") {
        anyhow::bail!(
            "the GCS key file {path} ({what}) is of type {:?}: use a service-account key",
            k.kind
        );
    }
    Ok(k)
}

/// The service account a config names: `keyfile`, else `GOOGLE_APPLICATION_CREDENTIALS` (not
/// with `noauth`), else none.
pub(super) fn configured_account(cfg: &GcsConfig) -> anyhow::Result<Option<Arc<ServiceAccount>>> {
    let key = match cfg.keyfile.as_deref().filter(|k| !k.is_empty()) {
        Some(p) => Some(read_key(p, "storage.gcs.keyfile")?),
        None => match std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
            Ok(p) if !p.is_empty() && !cfg.noauth => {
                Some(read_key(&p, "GOOGLE_APPLICATION_CREDENTIALS")?)
            }
            _ => None,
        },
    };
    Ok(key
        .as_ref()
        .map(ServiceAccount::from_key)
        .transpose()?
        .map(Arc::new))
}

/// Where access tokens come from.
pub(super) enum Auth {
    /// `noauth` (emulators): no token.
    None,
    ServiceAccount(Arc<ServiceAccount>),
    /// GKE/GCE workload identity.
    Metadata,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Access tokens for the JSON API, cached.
pub(super) struct Tokens {
    auth: Auth,
    cached: Mutex<Option<(String, SystemTime)>>,
}

impl Tokens {
    pub fn new(auth: Auth) -> Tokens {
        Tokens {
            auth,
            cached: Mutex::new(None),
        }
    }

    /// The bearer token to send (`None`: send none).
    pub async fn token(&self, http: &reqwest::Client) -> Result<Option<String>> {
        let account = match &self.auth {
            Auth::None => return Ok(None),
            Auth::ServiceAccount(s) => Some(s),
            Auth::Metadata => None,
        };
        let mut cached = self.cached.lock().await;
        if let Some((t, exp)) = cached.as_ref() {
            if SystemTime::now() + RENEW_BEFORE < *exp {
                return Ok(Some(t.clone()));
            }
        }
        let fetched = match account {
            Some(s) => {
                let jwt = s.assertion()?;
                http.post(&s.token_uri)
                    .form(&[("grant_type", JWT_BEARER), ("assertion", jwt.as_str())])
                    .send()
                    .await
            }
            None => {
                http.get(METADATA_TOKEN)
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
            }
        };
        let resp = fetched
            .map_err(|e| StorageError::Backend(format!("gcs: fetching an access token: {e}")))?;
        if !resp.status().is_success() {
            return Err(StorageError::Backend(format!(
                "gcs: fetching an access token: HTTP {}",
                resp.status()
            )));
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| StorageError::Backend(format!("gcs: bad token response: {e}")))?;
        let exp = SystemTime::now() + Duration::from_secs(t.expires_in.unwrap_or(3600));
        *cached = Some((t.access_token.clone(), exp));
        Ok(Some(t.access_token))
    }
}
