//! The access log: one line per request, request id (taken or made, and returned), no secrets.
//! Its own test binary: it installs a tracing subscriber, which other tests running in parallel
//! threads of the same binary would disturb.

mod ops_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use ops_support::{client, start};

/// Collects what the tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn access_log_has_one_line_per_request_and_no_secrets() {
    let cap = Captured::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter("image_registry::access=info")
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = start("storage:\n  inmemory: {}\nhttp:\n  secret: s\n").await;
    let c = client();
    let r = c
        .get(format!(
            "{}/v2/ns/app/blobs/uploads/abc?_state=SECRETSTATE&token=SECRETQUERY",
            s.base
        ))
        .header("authorization", "Bearer SECRETTOKEN")
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let _ = r.bytes().await;
    let r = c.get(format!("{}/v2/", s.base)).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let _ = r.bytes().await;
    let r = c
        .get(format!("{}/v2/", s.base))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id\twith spaces");
    let _ = r.bytes().await;
    drop(s);
    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let first = &lines[0]["fields"];
    assert_eq!(first["request_id"], "trace-me-123");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/v2/ns/app/blobs/uploads/abc");
    assert_eq!(first["user"], "-");
    assert!(first["status"].as_u64().is_some());
    assert!(first["bytes"].as_u64().is_some());
    assert!(first["duration_ms"].as_f64().is_some());
    assert!(first["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(lines[1]["fields"]["request_id"], generated.as_str());
    assert_eq!(lines[1]["fields"]["status"], 200);
    assert!(!text.contains("SECRET"), "{text}");
}
