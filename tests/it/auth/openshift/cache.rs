//! The decision cache and the API deadline: one review for many identical requests (coalesced when
//! concurrent), 503 within the deadline when the API hangs or is unreachable, and (ignored) the
//! numbers of the closing note.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use super::*;

#[tokio::test]
async fn one_api_call_for_many_identical_requests() {
    let env = Env::default().await;
    env.seed_image("proj/app", "v1", "cache").await;
    env.kube.reset_calls();
    for _ in 0..200 {
        let r = env
            .req(
                Method::GET,
                "/v2/proj/app/manifests/v1",
                Some("tok-viewer-77ab31"),
            )
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(env.kube.calls(SSAR), 1, "200 sequential pulls, one review");
    // Concurrent identical requests of a new token are coalesced into one call.
    env.kube.reset_calls();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let req = env
            .req(
                Method::GET,
                "/v2/proj/app/manifests/v1",
                Some("tok-editor-0c9d44"),
            )
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(env.kube.calls(SSAR), 1, "50 concurrent pulls, one review");
}

#[tokio::test]
async fn hanging_api_answers_503_within_the_deadline_and_cache_keeps_serving() {
    let env = Env::start("    cachettl: 60s\n    timeout: 500ms\n").await;
    env.seed_image("proj/app", "v1", "deadline").await;
    // Warm the cache for the viewer.
    let pull = |t: &'static str| {
        env.req(Method::GET, "/v2/proj/app/manifests/v1", Some(t))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
    };
    assert_eq!(
        pull("tok-viewer-77ab31").await.unwrap().status(),
        StatusCode::OK
    );
    env.kube.set_hang(true);
    let start = Instant::now();
    let r = pull("tok-editor-0c9d44").await.unwrap();
    let took = start.elapsed();
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not a login prompt"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers().get("www-authenticate").is_none());
    assert!(took < Duration::from_millis(1500), "answered in {took:?}");
    assert!(
        took >= Duration::from_millis(450),
        "waited for the deadline: {took:?}"
    );
    // The warm entry still answers while the API hangs.
    assert_eq!(
        pull("tok-viewer-77ab31").await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unreachable_api_answers_503() {
    let reg = openshift_registry(&dead_url(), "    timeout: 1s\n")
        .start()
        .await;
    let r = reg
        .request_as(
            Method::GET,
            "/v2/proj/app/manifests/v1",
            Some("Bearer tok-viewer-77ab31"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = reg
        .request_as(
            Method::GET,
            "/openshift/token",
            Some(&basic("u", "tok-viewer-77ab31")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// The closing note's numbers: API calls for 1,000 pulls of one image by one user, and pull
/// latency with a warm cache vs none. Run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_cache() {
    for (label, extra) in [
        ("warm cache (ttl 30s)", "    cachettl: 30s\n"),
        ("no cache (ttl 0)", "    cachettl: 0s\n"),
    ] {
        let env = Env::start(extra).await;
        env.seed_image("proj/app", "v1", "measure").await;
        env.kube.reset_calls();
        let layer = sha256(b"layer of measure");
        let mut lat = Vec::new();
        for _ in 0..1000 {
            let s = Instant::now();
            // One "pull" = manifest GET + layer GET (as a client does after the first pull).
            let r = env
                .req(
                    Method::GET,
                    "/v2/proj/app/manifests/v1",
                    Some("tok-viewer-77ab31"),
                )
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let _ = r.bytes().await.unwrap();
            let r = env
                .req(
                    Method::GET,
                    &format!("/v2/proj/app/blobs/{layer}"),
                    Some("tok-viewer-77ab31"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let _ = r.bytes().await.unwrap();
            lat.push(s.elapsed());
        }
        lat.sort();
        let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
        println!(
            "{label}: 1000 pulls (manifest+layer), API calls = {}, mean {:?}, p50 {:?}, p99 {:?}",
            env.kube.total_calls(),
            mean,
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100]
        );
    }
}
