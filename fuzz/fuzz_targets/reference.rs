//! Repository names, tags, digests, references, and the URL grammar (method, path, query).
#![no_main]
use image_registry::http::Route;
use image_registry::oci::{Digest, RepositoryName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = s.parse::<RepositoryName>() {
        assert_eq!(n.to_string().parse::<RepositoryName>().ok(), Some(n));
    }
    if let Ok(t) = s.parse::<Tag>() {
        assert_eq!(t.to_string().parse::<Tag>().ok(), Some(t));
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d));
    }
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    for m in [http::Method::GET, http::Method::PUT, http::Method::POST, http::Method::PATCH, http::Method::DELETE] {
        let _ = Route::parse(&m, path, query);
        let _ = Route::parse(&m, &format!("/v2/{path}"), query);
    }
});
