//! Properties of every parser that reads client or operator input, checked with `proptest` on
//! stable in the normal test run (the `fuzz/` targets drive the same functions with coverage
//! guidance on nightly): none panics on any input, and what parses round-trips.
//!
//! Parsers: `Content-Range` and `Range`, media types, the URL grammar (`Route::parse`), repository
//! names, tags and digests, the signed `_state` token, manifests and indexes (any bytes, deep
//! nesting), `Authorization` (Basic/Bearer), htpasswd files, the config loader with its
//! environment overlay, and the upstream `WWW-Authenticate` challenge (pull-through's token flow).

use axum::http::Method;
use image_registry::auth::htpasswd;
use image_registry::auth::Credentials;
use image_registry::config::Config;
use image_registry::http::headers::{
    is_media_type, parse_content_range, parse_range, RangeRequest,
};
use image_registry::http::Route;
use image_registry::oci::{Digest, ParsedManifest, RepositoryName, Tag};
use image_registry::registry::{UploadSecret, UploadState};
use image_registry::upstream::client::{parse_challenge, Challenge};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn content_range_takes_exactly_the_spec_form(s in "\\PC{0,24}") {
        if let Some((a, b)) = parse_content_range(&s) {
            prop_assert!(a <= b);
            // Only `<digits>-<digits>` parses.
            let (l, r) = s.split_once('-').unwrap();
            prop_assert!(!l.is_empty() && !r.is_empty());
            prop_assert!(l.bytes().chain(r.bytes()).all(|c| c.is_ascii_digit()), "{:?}", s);
        }
    }

    #[test]
    fn content_range_accepts_every_ordered_pair(a in any::<u64>(), b in any::<u64>()) {
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assert_eq!(parse_content_range(&format!("{lo}-{hi}")), Some((lo, hi)));
        if lo < hi {
            prop_assert_eq!(parse_content_range(&format!("{hi}-{lo}")), None);
        }
        prop_assert_eq!(parse_content_range(&format!("{lo}-{hi}/{}", hi.saturating_add(1))), None);
    }

    #[test]
    fn range_requests_stay_inside_the_blob(s in "(bytes=)?[0-9,\\- ]{0,16}|\\PC{0,20}", size in 0u64..10_000) {
        match parse_range(Some(&s), size) {
            RangeRequest::Partial(a, b) => prop_assert!(a <= b && b < size, "{s:?} {size}: {a}-{b}"),
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }

    #[test]
    fn media_types_never_panic_and_tokens_pass(s in "\\PC{0,40}", t in "[a-z][a-z0-9.+-]{0,20}", u in "[a-z][a-z0-9.+-]{0,30}") {
        let _ = is_media_type(&s);
        let mt = format!("{t}/{u}");
        prop_assert!(is_media_type(&mt), "{}", mt);
        let with_param = format!("{t}/{u}; charset=utf-8");
        prop_assert!(is_media_type(&with_param), "{}", with_param);
        let doubled = format!("{t}/{u}/x");
        prop_assert!(!is_media_type(&doubled), "{}", doubled);
    }

    #[test]
    fn the_url_grammar_never_panics(
        m in prop::sample::select(vec!["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "get", "FOO"]),
        path in "/v2(/[a-z0-9._%:@+-]{0,12}){0,8}/?|/\\PC{0,60}",
        query in proptest::option::of("\\PC{0,60}"),
    ) {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let _ = Route::parse(&method, &path, query.as_deref());
    }

    #[test]
    fn names_tags_and_digests_round_trip(s in "\\PC{0,80}|[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*){0,3}") {
        if let Ok(n) = s.parse::<RepositoryName>() {
            prop_assert_eq!(n.to_string().parse::<RepositoryName>().unwrap(), n);
        }
        if let Ok(t) = s.parse::<Tag>() {
            prop_assert_eq!(t.to_string().parse::<Tag>().unwrap(), t);
        }
        if let Ok(d) = s.parse::<Digest>() {
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }
    }

    #[test]
    fn digests_of_the_right_shape_parse(hex in "[0-9a-f]{64}", hex512 in "[0-9a-f]{128}", bad in "[0-9a-f]{0,63}") {
        let sha256 = format!("sha256:{hex}");
        prop_assert!(sha256.parse::<Digest>().is_ok());
        let sha512 = format!("sha512:{hex512}");
        prop_assert!(sha512.parse::<Digest>().is_ok());
        let short = format!("sha256:{bad}");
        prop_assert!(short.parse::<Digest>().is_err());
    }

    #[test]
    fn upload_state_tokens_verify_and_resist_tampering(
        token in "\\PC{0,200}",
        name in "[a-z]{1,10}",
        offset in any::<u64>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let secret = UploadSecret::new(b"props".to_vec());
        let _ = secret.unpack(&token);
        let state = UploadState {
            name,
            uuid: "0f0e0d0c-0b0a-4908-8706-050403020100".into(),
            offset,
            started_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let packed = secret.pack(&state);
        let back = secret.unpack(&packed);
        prop_assert_eq!(back.as_ref(), Some(&state));
        // Any changed character is refused, or (base64 padding bits) decodes to the same state.
        let mut bytes = packed.clone().into_bytes();
        let i = flip.index(bytes.len());
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        if changed != packed {
            let got = secret.unpack(&changed);
            prop_assert!(got.is_none() || got.as_ref() == Some(&state));
        }
        prop_assert!(UploadSecret::new(b"other".to_vec()).unpack(&packed).is_none());
    }

    #[test]
    fn manifests_of_any_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), ct in proptest::option::of("\\PC{0,40}")) {
        let _ = ParsedManifest::parse(&body, ct.as_deref());
    }

    #[test]
    fn manifests_of_json_shapes_never_panic(
        layers in prop::collection::vec(("[a-z./+]{0,30}", "\\PC{0,80}", any::<i64>()), 0..8),
        mt in proptest::option::of("\\PC{0,50}"),
        version in any::<i32>(),
    ) {
        let layers: Vec<_> = layers
            .iter()
            .map(|(m, d, s)| serde_json::json!({"mediaType": m, "digest": d, "size": s}))
            .collect();
        let mut v = serde_json::json!({"schemaVersion": version, "config": layers.first(), "layers": layers, "manifests": layers});
        if let Some(mt) = &mt {
            v["mediaType"] = serde_json::json!(mt);
        }
        let _ = ParsedManifest::parse(v.to_string().as_bytes(), mt.as_deref());
    }

    #[test]
    fn authorization_headers_never_panic_and_basic_round_trips(h in "\\PC{0,80}", user in "[^:\\p{C}]{0,20}", pass in "\\PC{0,20}") {
        let _ = Credentials::parse(Some(&h));
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        match Credentials::parse(Some(&format!("Basic {b}"))).unwrap() {
            Credentials::Basic { user: u, password: p } => {
                prop_assert_eq!(u, user);
                prop_assert_eq!(p, pass);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn htpasswd_files_never_panic(text in "(\\PC{0,40}\n){0,8}", user in "[a-z]{1,8}") {
        let _ = htpasswd::parse(&text, "props");
        let line = format!("{user}:$2y$05$abcdefghijklmnopqrstuv\n# comment\n\n");
        prop_assert!(htpasswd::parse(&line, "props").contains_key(&user));
    }

    #[test]
    fn the_config_loader_never_panics(
        yaml in "([a-z]{1,8}:( \\PC{0,20})?\n( +[a-zA-Z]{1,12}: \\PC{0,16}\n){0,4}){0,4}|\\PC{0,80}",
        env in prop::collection::vec(("REGISTRY_[A-Z_]{1,30}", "\\PC{0,20}"), 0..4),
    ) {
        let env: Vec<(String, String)> = env;
        let _ = Config::from_yaml(&yaml, &env);
    }
}

/// Writes a challenge parameter value as a quoted-string (RFC 9110 §5.6.4).
fn quoted(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn www_authenticate_challenges_never_panic(h in "\\PC{0,120}|(?i:bearer) [a-z=\",\\\\ ]{0,40}") {
        if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(&h) {
            prop_assert!(!realm.is_empty(), "{:?}", h);
        }
    }

    #[test]
    fn www_authenticate_bearer_round_trips(
        scheme in "(?i:bearer)",
        realm in "\\PC{1,40}",
        service in proptest::option::of("\\PC{0,30}"),
        scope in proptest::option::of("[a-z/:,*]{0,30}|\\PC{0,30}"),
        sep in "(, ?|,\t)",
        order in any::<bool>(),
    ) {
        let mut params = vec![format!("realm={}", quoted(&realm))];
        if let Some(s) = &service {
            params.push(format!("Service={}", quoted(s)));
        }
        if let Some(s) = &scope {
            params.push(format!("scope={}", quoted(s)));
        }
        if order {
            params.reverse();
        }
        let h = format!("{scheme} {}", params.join(&sep));
        prop_assert_eq!(
            parse_challenge(&h),
            Some(Challenge::Bearer { realm, service, scope }),
            "{}", h
        );
    }

    #[test]
    fn www_authenticate_token_values_round_trip(realm in "[A-Za-z0-9:/._~-]{1,40}", service in "[A-Za-z0-9._-]{1,20}") {
        let h = format!("Bearer realm={realm},service={service}");
        prop_assert_eq!(
            parse_challenge(&h),
            Some(Challenge::Bearer { realm, service: Some(service), scope: None })
        );
    }
}

#[test]
fn deeply_nested_manifests_are_refused_not_overflowed() {
    for depth in [64, 129, 10_000, 100_000] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(ParsedManifest::parse(body.as_bytes(), None).is_err());
        let body = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(ParsedManifest::parse(body.as_bytes(), None).is_err());
    }
}

/// Crashes the fuzz targets found (`fuzz/artifacts/`), kept as they were found and in their
/// smallest form.
#[test]
fn fuzz_crashes_stay_fixed() {
    // config: a tagged YAML mapping (`!t {}`) under an environment override panicked
    // (`ensure_map`: "just made a mapping").
    let found: &[u8] = b"!\x0d?\x0a---env\x0a\x0eJ\x0a\x0a'-\x09\x0a:R?\x0a---env\x0a\x0e\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00 \x00\x00\x00\x00\x00\x00\x00\x00\x00\xf3\xf3\xf3_\xf3\xf3\xf3\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf6\xff\xff\xff\xf3\xf3\xf3_\xf3\xf3\xf3\xf3\xf3-=FsLSEFsLSEn*--\x0a:\x0a\xf3\xf3\x00\x00?\x00\x00\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf3\xf3\xf3_\xf3%\xf3\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf3\xf3\xf3_\xf3\xf3\xf3\xf3\xf3\x0d?-=FsLSEnv\x0a\x0e";
    let _ = Config::from_fuzz_input(&String::from_utf8_lossy(found));
    let level = [("REGISTRY_LOG_LEVEL".to_owned(), "debug".to_owned())];
    for yaml in [
        "!t {}\n",
        "!t\n",
        "log: !t {}\n",
        "log: !t {format: json}\n",
    ] {
        let _ = Config::from_yaml(yaml, &level);
    }
    let (c, _) = Config::from_yaml("log: !t {format: json}\n", &level).unwrap();
    assert_eq!(c.log.level, "debug");
}
