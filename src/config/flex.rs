//! Deserializers that accept a value either natively or as a string, because `REGISTRY_*`
//! environment overrides always arrive as strings (`REGISTRY_READONLY=true`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::Error;
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Bool(b) => Ok(b),
        Scalar::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" | "" => Ok(false),
            _ => Err(D::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
        Scalar::Int(i) => Err(D::Error::custom(format!("expected true or false, got {i}"))),
        Scalar::Float(f) => Err(D::Error::custom(format!("expected true or false, got {f}"))),
    }
}

pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Int(i) => Ok(i),
        Scalar::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("expected an integer, got {s:?}"))),
        Scalar::Bool(b) => Err(D::Error::custom(format!("expected an integer, got {b}"))),
        Scalar::Float(f) => Err(D::Error::custom(format!("expected an integer, got {f}"))),
    }
}

/// An optional integer.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    i64(d).map(Some)
}

/// A duration: `30s`, `1m30s`, `500ms`, or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Int(i) if i >= 0 => Ok(Duration::from_secs(i.unsigned_abs())),
        Scalar::Str(s) if s.trim().parse::<u64>().is_ok() => {
            Ok(Duration::from_secs(s.trim().parse().unwrap_or(0)))
        }
        Scalar::Str(s) => humantime::parse_duration(s.trim())
            .map_err(|e| D::Error::custom(format!("invalid duration {s:?}: {e}"))),
        other => Err(D::Error::custom(format!(
            "expected a duration like 30s, got {}",
            match other {
                Scalar::Int(i) => i.to_string(),
                Scalar::Bool(b) => b.to_string(),
                Scalar::Str(s) => s,
                Scalar::Float(f) => f.to_string(),
            }
        ))),
    }
}

/// A string that YAML may have read as a number or boolean (`secret: 12345`).
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Str(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Float(f) => f.to_string(),
    })
}

pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    string(d).map(Some)
}

/// One string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum StrOrList {
    Str(String),
    List(Vec<String>),
}

/// Header name -> values (`X-Content-Type-Options: [nosniff]`); a single string is one value.
pub fn header_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let m = Option::<BTreeMap<String, StrOrList>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                StrOrList::Str(s) => vec![s],
                StrOrList::List(l) => l,
            };
            (k, v)
        })
        .collect())
}

/// A token as RFC 9110 defines field names.
pub fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Name -> scalar as a string (`log.fields`: `service: registry`, `port: 5000`).
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    struct S(#[serde(deserialize_with = "string")] String);
    let m = Option::<BTreeMap<String, S>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter().map(|(k, S(v))| (k, v)).collect())
}
