//! The metrics endpoint: the guard (`metrics.secret`), the OpenShift families, `promtool check
//! metrics`, off by default, and the `openshift.metrics` section.

use std::io::Write;

use reqwest::StatusCode;

use crate::harness::*;

const SECRET: &str = "metrics-s3cret";

/// Pushes a small image (a monolithic blob, a config through a session, a manifest), pulls it and
/// asks for a missing manifest: traffic for the counters.
async fn push_small_image(s: &TestServer) {
    let blob = b"layer bytes".to_vec();
    let d = s.push_blob("ns/app", &blob).await;
    let cfg = b"{}".to_vec();
    let cd = sha256(&cfg);
    let loc = s.start_upload("ns/app").await;
    let r = s.finish_upload(&loc, &cd, Some(&cfg)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let manifest = oci_manifest(
        &descriptor(OCI_CONFIG, &cd, cfg.len()),
        &[descriptor(OCI_LAYER, &d, blob.len())],
    );
    s.push_manifest("ns/app", "v1", OCI_MANIFEST, &manifest)
        .await;
    let r = s
        .request(reqwest::Method::GET, "/v2/ns/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/v2/ns/app/manifests/missing").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_need_the_secret_and_export_the_openshift_families() {
    let s = TestServer::builder()
        .in_memory()
        .metrics(Some(SECRET))
        .start()
        .await;
    let c = client();
    let url = s.url("/extensions/v2/metrics");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = c
        .get(&url)
        .basic_auth("anyuser", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.get(&url).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    push_small_image(&s).await;
    let r = c
        .get(&url)
        .basic_auth("anyuser", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    for series in [
        "imageregistry_http_requests_total{code=\"201\",method=\"PUT\"}",
        "imageregistry_http_requests_total{code=\"404\",method=\"GET\"}",
        "imageregistry_http_request_duration_seconds_count{method=\"PUT\"}",
        "imageregistry_request_duration_seconds_count{operation=\"manifest.put\"}",
        "imageregistry_request_duration_seconds_count{operation=\"blob_upload.post\"}",
        "imageregistry_storage_duration_seconds_count{operation=\"put_content\"}",
        "imageregistry_storage_errors_total{code=\"PATH_NOT_FOUND\",kind=\"not_found\",operation=\"get_content\"}",
        "imageregistry_http_request_size_bytes_count",
        "imageregistry_http_response_size_bytes_count",
        "imageregistry_http_upload_bytes_total",
        "imageregistry_http_in_flight_requests",
        "imageregistry_storage_health_up",
    ] {
        let v = sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
        assert!(v >= 0.0);
    }
    // The small blob (11 bytes) and the config ("{}", 2 bytes) came through upload routes.
    assert_eq!(
        sample(&text, "imageregistry_http_upload_bytes_total"),
        Some(13.0)
    );
    // The scrape itself is in flight.
    assert_eq!(
        sample(&text, "imageregistry_http_in_flight_requests"),
        Some(1.0)
    );
    assert!(text.contains("imageregistry_build_info{gitCommit="));
    assert!(text.contains("process_resident_memory_bytes"));
    assert!(!text.contains(SECRET));

    promtool_check(&text);
}

fn promtool_check(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            !e2e_required(),
            "promtool is missing (apt-get install prometheus) and IMAGE_REGISTRY_E2E=1"
        );
        eprintln!("promtool not installed: skipping the lint");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The one finding allowed: imageregistry_build_info keeps the OpenShift registry's label names
    // (gitCommit, gitVersion) so existing dashboards keep working; promtool prefers snake_case.
    let unexpected: Vec<&str> = all
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            *l != "imageregistry_build_info label names should be written in 'snake_case' not 'camelCase'"
        })
        .collect();
    assert!(unexpected.is_empty(), "promtool: {all}");
}

#[tokio::test]
async fn metrics_are_off_by_default_and_openshift_section_works() {
    let s = TestServer::builder().in_memory().start().await;
    let r = client()
        .get(s.url("/extensions/v2/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let (cfg, w) = image_registry::config::Config::from_yaml(
        "",
        &[
            ("REGISTRY_OPENSHIFT_METRICS_ENABLED".into(), "true".into()),
            ("REGISTRY_OPENSHIFT_METRICS_SECRET".into(), "x".into()),
        ],
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(cfg.metrics().enabled);
    assert_eq!(
        cfg.metrics().secret.as_ref().map(|s| s.0.as_str()),
        Some("x")
    );
    assert!(!format!("{cfg:?}").contains("secret: Some(\"x\")"));
}
