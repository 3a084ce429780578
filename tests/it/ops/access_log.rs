//! The access log: one line per request, request id (taken or made, and returned), no secrets.
//! The test captures its own thread's logs (a `current_thread` runtime with a thread-local
//! subscriber), so tests running at the same time on other threads do not disturb it.

use reqwest::Method;

use crate::harness::*;

/// This thread's access-log lines, as JSON, from now until the guard drops.
fn capture_access_log() -> (Captured, tracing::subscriber::DefaultGuard) {
    let cap = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter("image_registry::access=info")
        .with_writer(cap.clone())
        .finish();
    let guard = capture_logs(subscriber);
    (cap, guard)
}

/// What was captured: the text, and each line parsed.
fn access_lines(cap: &Captured) -> (String, Vec<serde_json::Value>) {
    let text = cap.text();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text, lines)
}

#[tokio::test(flavor = "current_thread")]
async fn access_log_has_one_line_per_request_and_no_secrets() {
    let (cap, _guard) = capture_access_log();
    let s = TestServer::builder().in_memory().start().await;
    let r = s
        .request(
            Method::GET,
            "/v2/ns/app/blobs/uploads/abc?_state=SECRETSTATE&token=SECRETQUERY",
        )
        .header("authorization", "Bearer SECRETTOKEN")
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let _ = r.bytes().await;
    let r = s.get("/v2/").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let _ = r.bytes().await;
    let r = s
        .request(Method::GET, "/v2/")
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "bad id\twith spaces");
    let _ = r.bytes().await;
    drop(s);
    let (text, lines) = access_lines(&cap);
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

/// With auth on, the line names the authenticated user (and never the password).
#[tokio::test(flavor = "current_thread")]
async fn access_log_names_the_authenticated_user() {
    let (cap, _guard) = capture_access_log();
    let b = TestServer::builder().in_memory();
    let p = b.write_file(
        "htpasswd",
        &format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    );
    let yaml = format!(
        "  htpasswd:\n    path: {:?}\n  bindings:\n    - role: registry-viewer\n      namespaces: [\"*\"]\n      users: [alice]\n",
        p.display().to_string()
    );
    let s = b.auth(&yaml).start().await;
    let r = s
        .request_as(Method::GET, "/v2/", Some(&basic("alice", "alice-pw")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let r = s
        .request_as(Method::GET, "/v2/", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = r.bytes().await;
    drop(s);
    let (text, lines) = access_lines(&cap);
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["fields"]["user"], "alice", "{text}");
    assert_eq!(lines[1]["fields"]["user"], "-", "{text}");
    assert!(!text.contains("alice-pw"), "{text}");
}

/// The binary on `dir`/data with `env` (plus `service=registry` fields, level
/// info): its log after one `GET /v2/` with `X-Request-Id: id`.
async fn log_of_one_request(dir: &std::path::Path, env: &[(&str, &str)], id: &str) -> String {
    let root = dir.join("data");
    let mut all = vec![
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            root.to_str().unwrap(),
        ),
        ("REGISTRY_LOG_LEVEL", "info"),
        ("REGISTRY_LOG_FIELDS_SERVICE", "registry"),
    ];
    all.extend_from_slice(env);
    let p = Process::spawn(&all, &dir.join(format!("{id}.log"))).await;
    let r = client()
        .get(format!("{}/v2/", p.base))
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    let _ = r.bytes().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    p.log()
}

/// distribution's `log.fields` and `log.accesslog.disabled`, in the real binary (its own
/// logging set-up): the fields on every line, text and JSON; the access log off, the rest on.
#[tokio::test]
async fn log_fields_on_every_line_and_the_access_log_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let text = log_of_one_request(dir.path(), &[("REGISTRY_LOG_FORMAT", "json")], "fields-1").await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for l in &lines {
        assert_eq!(l["service"], "registry", "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["request_id"] == "fields-1"),
        "no access line: {text}"
    );

    let text = log_of_one_request(
        dir.path(),
        &[("REGISTRY_LOG_ACCESSLOG_DISABLED", "true")],
        "fields-2",
    )
    .await;
    assert!(
        !text.trim().is_empty(),
        "the start-up lines are still logged"
    );
    for l in text.lines() {
        assert!(l.ends_with(" service=registry"), "{l}");
    }
    assert!(!text.contains("fields-2"), "an access line: {text}");
}

/// Colours only on a terminal: with `NO_COLOR` unset and stderr a file, the binary's lines (the
/// access line among them) carry no escape codes.
#[tokio::test]
async fn the_log_is_plain_text_when_stderr_is_no_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let text = log_of_one_request(dir.path(), &[("NO_COLOR", "")], "plain-1").await;
    assert!(text.contains("plain-1"), "no access line: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in the log: {text:?}"
    );
}

/// A reader of stderr that stops (a stuck log pipe) does not stop the server: lines wait in the
/// writer thread's queue, not in a `write(2)` on a runtime thread. 3,000 access lines are far
/// more than a pipe holds (64 KiB), and each request must still be answered promptly.
#[tokio::test]
async fn requests_are_answered_while_nobody_reads_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (p, _unread) = Process::spawn_unread_stderr(&[
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            root.to_str().unwrap(),
        ),
        ("REGISTRY_LOG_LEVEL", "info"),
    ])
    .await;
    let c = client();
    for i in 0..3000 {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c.get(format!("{}/v2/", p.base))
                .header("x-request-id", format!("unread-log-request-{i:05}"))
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("request {i} was not answered within 10 s"))
        .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
}
