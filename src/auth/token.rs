//! JSON Web Tokens of the Docker token-auth spec.
//!
//! Claims: `iss`, `sub` (empty for anonymous), `aud` (the registry's `service`), `exp`, `nbf`,
//! `iat`, `jti` and `access: [{type, name, actions}]`.
//!
//! - [`Issuer`] (the `htpasswd` mode's own token endpoint) signs HS256 tokens with a configured or
//!   derived key and verifies its own tokens; there they prove identity only, access is decided by
//!   the bindings at request time (so a changed binding applies at once).
//! - [`Verifier`] (the `token` mode) checks tokens of an external token service: signature by a
//!   key of the root certificate bundle or of the JWKS (matched by `kid` when the token names one),
//!   the required issuer and audience, and the time claims (60 s leeway). A token's `x5c` chain is
//!   not walked: the signing key itself must be in the bundle.
//!
//! Errors never include the token.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, ScopeRequest};

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl AccessEntry {
    /// Whether the entry grants `action` on `kind:name` (`*` grants every action).
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == action || a == "*")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default)]
    pub aud: serde_json::Value,
    pub exp: u64,
    #[serde(default)]
    pub nbf: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// Not part of the spec; some token services add it, and bindings on groups use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Claims {
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|e| e.grants(kind, name, action))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The issuer name of tokens the registry signs itself.
pub const SELF_ISSUER: &str = "image-registry";

/// Signs and checks the registry's own tokens (HS256).
pub struct Issuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    service: String,
    ttl: Duration,
}

/// A minted token and its lifetime, for the token endpoint's answer.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: u64,
}

impl Issuer {
    pub fn new(key: &[u8], service: &str, ttl: Duration) -> Issuer {
        Issuer {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            service: service.to_owned(),
            ttl,
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn issue(&self, sub: Option<&str>, access: Vec<AccessEntry>) -> Result<Minted, AuthError> {
        let iat = now();
        let exp = iat + self.ttl.as_secs().max(1);
        let claims = Claims {
            iss: SELF_ISSUER.into(),
            sub: sub.unwrap_or("").to_owned(),
            aud: serde_json::Value::String(self.service.clone()),
            exp,
            nbf: iat.saturating_sub(1),
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
            groups: Vec::new(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Unavailable(format!("cannot sign a token: {e}")))?;
        Ok(Minted {
            token,
            expires_in: exp - iat,
            issued_at: iat,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[SELF_ISSUER]);
        v.set_audience(&[&self.service]);
        v.leeway = 60;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Unauthenticated(format!("invalid token: {}", e.kind_name())))
    }
}

/// Short names of JWT errors without any token content.
trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind as K;
        match self.kind() {
            K::ExpiredSignature => "expired",
            K::ImmatureSignature => "not yet valid",
            K::InvalidSignature => "bad signature",
            K::InvalidIssuer => "wrong issuer",
            K::InvalidAudience => "wrong audience",
            K::InvalidAlgorithm => "algorithm not allowed",
            K::MissingRequiredClaim(_) => "missing claim",
            _ => "malformed",
        }
    }
}

struct TrustedKey {
    kid: Option<String>,
    key: DecodingKey,
    algs: Vec<Algorithm>,
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC_ALGS: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

/// Checks tokens of an external token service.
pub struct Verifier {
    keys: Vec<TrustedKey>,
    issuer: String,
    service: String,
}

impl Verifier {
    /// `bundle`: PEM text with certificates (or public keys); `jwks`: JWKS JSON text.
    pub fn new(
        issuer: &str,
        service: &str,
        bundle: Option<&str>,
        jwks: Option<&str>,
    ) -> anyhow::Result<Verifier> {
        let mut keys = Vec::new();
        if let Some(pem) = bundle {
            for block in pem_blocks(pem) {
                let b = block.as_bytes();
                if let Ok(k) = DecodingKey::from_rsa_pem(b) {
                    keys.push(TrustedKey {
                        kid: None,
                        key: k,
                        algs: RSA_ALGS.to_vec(),
                    });
                } else if let Ok(k) = DecodingKey::from_ec_pem(b) {
                    keys.push(TrustedKey {
                        kid: None,
                        key: k,
                        algs: EC_ALGS.to_vec(),
                    });
                } else if let Ok(k) = DecodingKey::from_ed_pem(b) {
                    keys.push(TrustedKey {
                        kid: None,
                        key: k,
                        algs: vec![Algorithm::EdDSA],
                    });
                } else {
                    anyhow::bail!("rootcertbundle: a PEM block holds no RSA, EC or Ed25519 key");
                }
            }
        }
        if let Some(text) = jwks {
            let set: JwkSet = serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("jwks: not a JWK set: {e}"))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| anyhow::anyhow!("jwks: unusable key: {e}"))?;
                let algs = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
                    AlgorithmParameters::EllipticCurve(_) => EC_ALGS.to_vec(),
                    AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                    AlgorithmParameters::OctetKey(_) => {
                        anyhow::bail!("jwks: symmetric keys are not accepted")
                    }
                };
                keys.push(TrustedKey {
                    kid: jwk.common.key_id.clone(),
                    key,
                    algs,
                });
            }
        }
        if keys.is_empty() {
            anyhow::bail!("no keys found in rootcertbundle/jwks");
        }
        Ok(Verifier {
            keys,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::invalid("invalid token: malformed"))?;
        let alg = header.alg;
        let named: Vec<&TrustedKey> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&TrustedKey> = if named.is_empty() {
            self.keys.iter().collect()
        } else {
            named
        };
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.service]);
        v.leeway = 60;
        v.required_spec_claims = HashSet::from(["exp".to_owned()]);
        let mut last = "no key for the token's algorithm";
        for k in candidates.into_iter().filter(|k| k.algs.contains(&alg)) {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(d) => return Ok(d.claims),
                Err(e) => last = e.kind_name(),
            }
        }
        Err(AuthError::Unauthenticated(format!("invalid token: {last}")))
    }
}

fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("-----BEGIN ") {
            cur = Some(format!("{l}\n"));
        } else if l.starts_with("-----END ") {
            if let Some(mut c) = cur.take() {
                c.push_str(l);
                c.push('\n');
                out.push(c);
            }
        } else if let Some(c) = cur.as_mut() {
            c.push_str(l);
            c.push('\n');
        }
    }
    out
}

/// The access entries a token request asks for, as `(kind, name, actions)` with `*` expanded.
pub fn requested(scopes: &[ScopeRequest]) -> Vec<(String, String, Vec<String>)> {
    scopes
        .iter()
        .map(|s| {
            let actions = if s.actions.iter().any(|a| a == "*") {
                if s.kind == "repository" {
                    vec!["pull".into(), "push".into(), "delete".into()]
                } else {
                    vec!["*".into()]
                }
            } else {
                s.actions.clone()
            };
            (s.kind.clone(), s.name.clone(), actions)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let i = Issuer::new(b"k", "svc", Duration::from_secs(60));
        let m = i
            .issue(
                Some("alice"),
                vec![AccessEntry {
                    kind: "repository".into(),
                    name: "a/b".into(),
                    actions: vec!["pull".into()],
                }],
            )
            .unwrap();
        let c = i.verify(&m.token).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.grants("repository", "a/b", "pull"));
        assert!(!c.grants("repository", "a/b", "push"));
        let other = Issuer::new(b"other", "svc", Duration::from_secs(60));
        assert!(other.verify(&m.token).is_err());
        let other_service = Issuer::new(b"k", "svc2", Duration::from_secs(60));
        assert!(other_service.verify(&m.token).is_err());
        let err = i.verify("garbage.token.here").unwrap_err().to_string();
        assert!(!err.contains("garbage"));
    }
}
