//! The config loader with its environment overlay: YAML up to a line `---env`, then `KEY=value`
//! lines as `REGISTRY_*` variables.
#![no_main]
use image_registry::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (yaml, env) = text.split_once("\n---env\n").unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("REGISTRY_{k}"), v.to_owned()))
        .collect();
    let _ = Config::from_yaml(yaml, &env);
});
