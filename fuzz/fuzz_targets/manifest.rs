//! Manifest and index parsing: the first line is the Content-Type (may be empty), the rest the body.
#![no_main]
use image_registry::oci::ParsedManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let _ = ParsedManifest::parse(body, ct.filter(|c| !c.is_empty()));
});
