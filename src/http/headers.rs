//! Header grammar: upload `Range`/`Content-Range`, blob `Range` requests, manifest `Accept`.

use axum::http::HeaderMap;

/// A header value from text the handlers made themselves (digests, paths, numbers); anything
/// unrepresentable becomes empty rather than failing the request.
pub fn hv(s: &str) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(s)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static(""))
}

/// The `Range` value reporting an upload's progress: `0-<last byte>` (`0-0` when empty, as
/// distribution answers).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// A chunk's `Content-Range` in the spec's form `<start>-<end>` (`^[0-9]+-[0-9]+$`, inclusive,
/// start ≤ end), as distribution parses it; anything else (`0-9/10`, `bytes 0-9/10`, signs,
/// spaces) is `None` and answers 416. Returns (start, end inclusive).
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once('-')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (a, b) = (number(a)?, number(b)?);
    (a <= b).then_some((a, b))
}

/// Outcome of a blob `Range` request.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// Serve the whole blob (no header, or one we ignore such as multiple ranges).
    Full,
    /// Serve bytes `start..=end`.
    Partial(u64, u64),
    /// Not satisfiable: 416.
    Unsatisfiable,
}

/// Parses `Range: bytes=...` against a blob of `size` bytes.
pub fn parse_range(v: Option<&str>, size: u64) -> RangeRequest {
    let Some(v) = v else {
        return RangeRequest::Full;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b
            .parse::<u64>()
            .ok()
            .and_then(|n| (n > 0 && size > 0).then(|| (size.saturating_sub(n), size - 1))),
        (false, _) => a.parse::<u64>().ok().and_then(|start| {
            let end = if b.is_empty() {
                Some(size.saturating_sub(1))
            } else {
                b.parse::<u64>().ok().map(|e| e.min(size.saturating_sub(1)))
            }?;
            (start < size && start <= end).then_some((start, end))
        }),
        (true, true) => None,
    };
    match parsed {
        Some((s, e)) => RangeRequest::Partial(s, e),
        None => RangeRequest::Unsatisfiable,
    }
}

/// The media types a client accepts (all `Accept` headers, comma-split, parameters dropped). Empty
/// means anything.
pub fn accepted_types(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether `media_type` is acceptable.
pub fn accepts(accepted: &[String], media_type: &str) -> bool {
    accepted.is_empty()
        || accepted
            .iter()
            .any(|a| a == "*/*" || a == "application/*" || a == media_type)
}

/// Whether `v` is a media type as RFC 9110 §8.3.1 writes it: `type "/" subtype` of tokens, then
/// `; name=value` parameters (value a token or a quoted string). What distribution's Go
/// `mime.ParseMediaType` accepts, so a `Content-Type` either parses or is refused.
pub fn is_media_type(v: &str) -> bool {
    fn token(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
    }
    fn quoted(s: &str) -> bool {
        s.len() >= 2
            && s.starts_with('"')
            && s.ends_with('"')
            && s[1..s.len() - 1]
                .bytes()
                .all(|c| c == b'\t' || (c >= 0x20 && c != 0x7f))
    }
    let mut parts = v.split(';');
    let Some((t, sub)) = parts.next().unwrap_or("").trim().split_once('/') else {
        return false;
    };
    token(t)
        && token(sub)
        && parts.all(|p| {
            let p = p.trim();
            p.is_empty()
                || p.split_once('=')
                    .is_some_and(|(k, v)| token(k.trim()) && (token(v.trim()) || quoted(v.trim())))
        })
}

pub fn header_str<'a>(h: &'a HeaderMap, name: &axum::http::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("100-199"), Some((100, 199)));
        assert_eq!(parse_content_range("5-5"), Some((5, 5)));
        for bad in [
            "bytes 100-199/*",
            "bytes=5-5",
            "0-9/10",
            " 0-9",
            "0-9 ",
            "+0-9",
            "0--9",
            "-9",
            "0-",
            "0-99999999999999999999999",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
        assert_eq!(parse_content_range("9-1"), None);
        assert_eq!(parse_content_range("x"), None);
    }

    #[test]
    fn media_types() {
        for ok in [
            "application/vnd.oci.image.manifest.v1+json",
            "application/json; charset=utf-8",
            "application/json;charset=\"utf-8\"",
            "text/plain;",
        ] {
            assert!(is_media_type(ok), "{ok:?}");
        }
        for bad in [
            "",
            "garbage",
            "a/b/c",
            "/json",
            "application/",
            "application/vnd.oci.image.manifest.v1+json garbage",
            "application/json; charset",
            "application/json; =x",
            "ünïcode/json",
            ";",
        ] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Partial(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Partial(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Partial(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Partial(0, 9));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Partial(8, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }
}
