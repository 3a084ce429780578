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

    /// The secret kept in `path` (trimmed), or a new random one written there first, readable
    /// by the owner only (0600). The second value says whether it was created now.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<(UploadSecret, bool)> {
        match std::fs::read_to_string(path) {
            Ok(s) if !s.trim().is_empty() => {
                return Ok((UploadSecret(s.trim().as_bytes().to_vec()), false))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let secret = UploadSecret::random();
        // Written under a temporary name, synced, then renamed: a crash never leaves a torn file.
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&tmp)?;
            f.write_all(&secret.0)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        #[cfg(unix)]
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok((secret, true))
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
