//! htpasswd files.
#![no_main]
use image_registry::auth::htpasswd;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (user, hash) in htpasswd::parse(&text, "fuzz") {
        assert!(!user.is_empty() && hash.starts_with("$2"));
    }
});
