//! The signed `_state` upload token: any text is refused or yields a state that packs back to a
//! token the same secret accepts.
#![no_main]
use image_registry::registry::UploadSecret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let secret = UploadSecret::new(b"fuzz".to_vec());
    if let Some(state) = secret.unpack(s) {
        assert_eq!(secret.unpack(&secret.pack(&state)), Some(state));
    }
});
