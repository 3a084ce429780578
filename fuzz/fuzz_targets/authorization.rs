//! `Authorization` (Basic/Bearer) and token-request `scope` values.
#![no_main]
use image_registry::auth::{Credentials, ScopeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = Credentials::parse(Some(s));
    let _ = ScopeRequest::parse_all(s.split('&'));
});
