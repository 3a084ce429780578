//! The config loader with its environment overlay: YAML up to a line `---env`, then `KEY=value`
//! lines as `REGISTRY_*` variables.
#![no_main]
use image_registry::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Config::from_fuzz_input(&String::from_utf8_lossy(data));
});
