//! Content digests (`algorithm:hex`): sha256 and sha512, lowercase hex of the exact length.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A digest algorithm the registry can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest we accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest format")]
    Format,
    #[error("unsupported digest algorithm")]
    Algorithm,
}

/// A validated content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(sha2::Sha256::digest(data)),
        }
    }

    /// The digest of `data` with the given algorithm.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        match algorithm {
            Algorithm::Sha256 => Digest::sha256_of(data),
            Algorithm::Sha512 => Digest {
                algorithm,
                hex: hex::encode(sha2::Sha512::digest(data)),
            },
        }
    }

    /// Builds a digest from raw hash output.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Digest {
        Digest {
            algorithm,
            hex: hex::encode(raw),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::Format)?;
        // The spec's grammar: algorithm-component ([a-z0-9]+) separated by [+._-].
        if alg.is_empty()
            || !alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            || hex.is_empty()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        {
            return Err(DigestError::Format);
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::Algorithm),
        };
        if hex.len() != algorithm.hex_len()
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Format);
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_digests() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::sha256_of(b""));
        let s512 = Digest::of(Algorithm::Sha512, b"x").to_string();
        assert_eq!(
            s512.parse::<Digest>().unwrap().algorithm(),
            Algorithm::Sha512
        );
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            ":e3b0",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert_eq!(bad.parse::<Digest>(), Err(DigestError::Format), "{bad}");
        }
        assert_eq!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::Algorithm)
        );
    }
}
