//! `Content-Range` of upload chunks and `Range` of blob reads (the first 2 bytes pick a blob size).
#![no_main]
use image_registry::http::headers::{parse_content_range, parse_range, RangeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let size = u64::from(u16::from_le_bytes([data[0], data[1]]));
    let Ok(s) = std::str::from_utf8(&data[2..]) else { return };
    if let Some((a, b)) = parse_content_range(s) {
        assert!(a <= b);
    }
    if let RangeRequest::Partial(a, b) = parse_range(Some(s), size) {
        assert!(a <= b && b < size);
    }
});
