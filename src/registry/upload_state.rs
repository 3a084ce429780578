//! The upload state that travels with the client in the `_state` query parameter of an upload's
//! `Location`: `base64url(HMAC-SHA256(secret, json) || json)` with the JSON fields of CNCF
//! distribution (`Name`, `UUID`, `Offset`, `StartedAt`), so any replica sharing `http.secret` can
//! check it. A state whose MAC does not verify, or that names another upload, is refused.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signed state of one upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadState {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "UUID")]
    pub uuid: String,
    #[serde(rename = "Offset")]
    pub offset: u64,
    #[serde(rename = "StartedAt")]
    pub started_at: DateTime<Utc>,
}

/// The key that signs upload state (`http.secret`).
#[derive(Clone)]
pub struct UploadSecret(Vec<u8>);

impl std::fmt::Debug for UploadSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSecret(..)")
    }
}

impl UploadSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> UploadSecret {
        UploadSecret(secret.into())
    }

    /// A random 64-byte hex secret, as the operator would generate.
    pub fn random() -> UploadSecret {
        let mut b = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut b);
        UploadSecret(hex::encode(b).into_bytes())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    pub fn pack(&self, state: &UploadState) -> String {
        let json = serde_json::to_vec(state).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&json);
        let mut out = mac.finalize().into_bytes().to_vec();
        out.extend_from_slice(&json);
        URL_SAFE.encode(out)
    }

    /// Verifies and decodes a token; `None` if it was not made with this secret.
    pub fn unpack(&self, token: &str) -> Option<UploadState> {
        let raw = URL_SAFE
            .decode(token.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()))
            .ok()?;
        if raw.len() < 32 {
            return None;
        }
        let (tag, json) = raw.split_at(32);
        let mut mac = self.mac();
        mac.update(json);
        mac.verify_slice(tag).ok()?;
        serde_json::from_slice(json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let s = UploadSecret::new("secret");
        let st = UploadState {
            name: "ns/app".into(),
            uuid: "u".into(),
            offset: 42,
            started_at: Utc::now(),
        };
        let tok = s.pack(&st);
        assert_eq!(s.unpack(&tok), Some(st.clone()));
        assert_eq!(UploadSecret::new("other").unpack(&tok), None);
        let mut raw = URL_SAFE.decode(&tok).unwrap();
        let last = raw.len() - 3;
        raw[last] ^= 1;
        assert_eq!(s.unpack(&URL_SAFE.encode(raw)), None);
        assert_eq!(s.unpack("garbage!"), None);
        assert_eq!(s.unpack(""), None);
    }
}
