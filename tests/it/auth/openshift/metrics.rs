//! The metrics endpoint in openshift mode: the metrics secret (no API call) or a token the
//! cluster allows `get registry/metrics`.

use reqwest::{Method, StatusCode};

use super::*;

/// The status of a scrape of `/extensions/v2/metrics` with this `Authorization` (None: without).
async fn scrape_status(reg: &TestServer, authorization: Option<&str>) -> StatusCode {
    reg.request_as(Method::GET, "/extensions/v2/metrics", authorization)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn metrics_secret_and_review() {
    let env = Env::default().await;
    assert_eq!(
        scrape_status(&env.reg, Some(&basic("anyuser", METRICS_SECRET))).await,
        StatusCode::OK
    );
    assert_eq!(
        scrape_status(&env.reg, Some(&format!("Bearer {METRICS_SECRET}"))).await,
        StatusCode::OK
    );
    assert_eq!(env.kube.total_calls(), 0, "the secret needs no API call");
    assert_eq!(
        scrape_status(&env.reg, Some(&basic("x", "tok-scraper-4d4d4d"))).await,
        StatusCode::OK
    );
    assert_eq!(
        scrape_status(&env.reg, Some("Bearer tok-viewer-77ab31")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.kube.calls(SSAR),
        2,
        "the scraper and the viewer were reviewed by the cluster"
    );
    assert_eq!(
        scrape_status(&env.reg, None).await,
        StatusCode::UNAUTHORIZED
    );
    // Metrics on without a secret: only the review admits a scrape, and the other registry's
    // secret is just an unknown token here.
    let no_secret = openshift_registry(&env.kube.base, DEFAULT_OPENSHIFT)
        .metrics(None)
        .start()
        .await;
    assert_eq!(
        scrape_status(&no_secret, Some(&basic("x", METRICS_SECRET))).await,
        StatusCode::UNAUTHORIZED
    );
}
