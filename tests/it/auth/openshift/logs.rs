//! No token, API or service-account, and no Basic credential ever reaches the logs.

use base64::Engine as _;
use reqwest::Method;

use super::*;

#[tokio::test(flavor = "current_thread")]
async fn logs_never_contain_a_token() {
    let cap = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(cap.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = capture_logs(subscriber);
    let env = Env::start("    cachettl: 30s\n    timeout: 300ms\n").await;
    env.seed_image("proj/app", "v1", "logs").await;
    for t in [
        "tok-viewer-77ab31",
        "tok-norole-5f1c2a",
        "tok-unknown-000000",
        "anonymous",
    ] {
        for path in ["/v2/", "/v2/proj/app/manifests/v1", "/v2/_catalog"] {
            let _ = env.req(Method::GET, path, Some(t)).send().await.unwrap();
            let _ = env
                .req(Method::GET, path, None)
                .header("authorization", basic("user", t))
                .send()
                .await
                .unwrap();
        }
        let _ = env
            .req(Method::GET, "/openshift/token", None)
            .header("authorization", basic("user", t))
            .send()
            .await
            .unwrap();
    }
    env.kube.set_hang(true);
    let _ = env
        .req(
            Method::GET,
            "/v2/proj/app/manifests/v1",
            Some("tok-editor-0c9d44"),
        )
        .send()
        .await
        .unwrap();
    let logs = cap.text();
    assert!(logs.len() > 1000, "the capture works: {} bytes", logs.len());
    for secret in [
        "tok-viewer-77ab31",
        "tok-norole-5f1c2a",
        "tok-unknown-000000",
        "tok-editor-0c9d44",
        "tok-seeder-123456",
        SA_TOKEN,
    ] {
        assert!(
            !logs.contains(secret),
            "a token leaked into the logs: {secret}"
        );
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode("user:tok-viewer-77ab31");
    assert!(!logs.contains(&encoded), "Basic credentials leaked");
}
