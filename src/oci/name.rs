//! Repository names, tags and manifest references, validated against the distribution-spec grammar.

use std::fmt;
use std::str::FromStr;

use super::Digest;

/// Longest repository name accepted (distribution's limit).
pub const MAX_NAME_LEN: usize = 255;

/// Why a string is not a valid name or tag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid repository name")]
    Name,
    #[error("invalid tag")]
    Tag,
}

/// A repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl RepositoryName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path components of the name.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for RepositoryName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(valid_component) {
            return Err(NameError::Name);
        }
        Ok(RepositoryName(s.to_owned()))
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
        if !first_ok || !rest_ok || b.len() > 128 {
            return Err(NameError::Tag);
        }
        Ok(Tag(s.to_owned()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b/c_d/e__f/g-h/i---j",
            "0",
            "ns/x/y/z",
        ] {
            assert!(ok.parse::<RepositoryName>().is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a_", "-a", "a___b", "a..b", "a._b", "a b", "a/B",
        ] {
            assert!(bad.parse::<RepositoryName>().is_err(), "{bad}");
        }
        assert!("a".repeat(256).parse::<RepositoryName>().is_err());
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0", "_x", "A-b.c_d", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".a", "-a", "a:b", "a/b", &"a".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
    }
}
