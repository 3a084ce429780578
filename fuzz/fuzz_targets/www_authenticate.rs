//! The upstream `WWW-Authenticate` challenge parser (pull-through's Docker token flow): never
//! panics, and a Bearer challenge it accepts always names a realm.
#![no_main]
use image_registry::upstream::client::{parse_challenge, Challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(s) {
        assert!(!realm.is_empty());
    }
});
