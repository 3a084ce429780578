//! The real binary and SIGTERM: the listener closes at once, requests in flight finish (up to
//! `http.draintimeout`), the process exits 0; an upload cut by the drain deadline is resumed on the
//! next process (same folder and secret).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use reqwest::StatusCode;
use sha2::Digest as _;

type Chunk = Result<Bytes, std::io::Error>;

struct Proc {
    child: Child,
    base: String,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Only the child this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn(root: &Path, drain: &str, tag: &str) -> Proc {
    let port = free_port();
    let log = root.parent().unwrap().join(format!("server-{tag}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_image-registry"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .arg("serve")
        .env("REGISTRY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root)
        .env("REGISTRY_HTTP_SECRET", "drain-test-secret")
        .env("REGISTRY_HTTP_DRAINTIMEOUT", drain)
        .env("REGISTRY_METRICS_ENABLED", "true")
        .env("REGISTRY_LOG_LEVEL", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
        port,
        log,
    };
    let c = client();
    for _ in 0..300 {
        if let Ok(r) = c.get(format!("{}/v2/", p.base)).send().await {
            if r.status() == StatusCode::OK {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start:\n{}", p.log());
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn sigterm(p: &Proc) {
    let st = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

async fn wait_exit(p: &mut Proc, secs: u64) -> std::process::ExitStatus {
    for _ in 0..secs * 20 {
        if let Some(st) = p.child.try_wait().unwrap() {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not exit within {secs}s:\n{}", p.log());
}

async fn in_flight(p: &Proc) -> f64 {
    let t = client()
        .get(format!("{}/extensions/v2/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    t.lines()
        .find_map(|l| l.strip_prefix("imageregistry_http_in_flight_requests "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// Starts an upload and a PATCH whose body is held; returns the Location, the body sender and the
/// PATCH's pending result, once the server is inside the PATCH.
async fn held_patch(
    p: &Proc,
    first: &'static [u8],
) -> (
    String,
    mpsc::UnboundedSender<Chunk>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let c = client();
    let r = c
        .post(format!("{}/v2/drain/app/blobs/uploads/", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let (tx, rx) = mpsc::unbounded::<Chunk>();
    tx.unbounded_send(Ok(Bytes::from_static(first))).unwrap();
    let req = c
        .patch(format!("{}{loc}", p.base))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(rx));
    let patch = tokio::spawn(req.send());
    // In flight: the PATCH and the scrape asking.
    for _ in 0..200 {
        if in_flight(p).await == 2.0 {
            return (loc, tx, patch);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the PATCH never reached the server:\n{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_drains_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut p = spawn(&root, "30s", "drain").await;
    let (loc, tx, patch) = held_patch(&p, b"first half, ").await;

    sigterm(&p);
    // New connections are refused while the PATCH is still being served.
    let port = p.port;
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "listener still open after SIGTERM:\n{}", p.log());
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "exited before the drain"
    );

    // The request in flight completes normally.
    tx.unbounded_send(Ok(Bytes::from_static(b"second half")))
        .unwrap();
    drop(tx);
    let r = patch.await.unwrap().expect("the PATCH is answered");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-22");
    let next = r.headers()["location"].to_str().unwrap().to_owned();
    let st = wait_exit(&mut p, 10).await;
    assert!(st.success(), "exit status {st:?}:\n{}", p.log());
    let log = p.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("all connections drained"), "{log}");
    assert_ne!(next, loc);

    // A new process on the same folder finishes the upload.
    let q = spawn(&root, "30s", "after").await;
    let all = b"first half, second half".to_vec();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&all)));
    let sep = if next.contains('?') { '&' } else { '?' };
    let r = client()
        .put(format!("{}{next}{sep}digest={digest}", q.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", q.log());
    let got = client()
        .get(format!("{}/v2/drain/app/blobs/{digest}", q.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &all[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_a_stuck_upload_which_resumes_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut p = spawn(&root, "1s", "cut").await;
    let first: &[u8] = b"bytes that arrived before the cut";
    let (loc, tx, patch) = held_patch(&p, b"bytes that arrived before the cut").await;
    let t = std::time::Instant::now();
    sigterm(&p);
    let st = wait_exit(&mut p, 15).await;
    assert!(st.success(), "exit status {st:?}:\n{}", p.log());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "exited after {:?}",
        t.elapsed()
    );
    assert!(p.log().contains("drain timeout"), "{}", p.log());
    // The client saw its request fail (an error answer, or the connection closing).
    if let Ok(r) = patch.await.unwrap() {
        assert_ne!(r.status(), StatusCode::ACCEPTED);
    }
    drop(tx);

    // Restarted: the upload's status shows the bytes kept; the client continues from there.
    let q = spawn(&root, "30s", "resume").await;
    let c = client();
    let r = c.get(format!("{}{loc}", q.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", q.log());
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    let end: usize = range.strip_prefix("0-").unwrap().parse().unwrap();
    assert_eq!(end + 1, first.len(), "every byte that arrived was kept");
    let next = r.headers()["location"].to_str().unwrap().to_owned();
    let rest = b" and the rest after the restart";
    let r = c
        .patch(format!("{}{next}", q.base))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", first.len(), first.len() + rest.len() - 1),
        )
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", q.log());
    let next = r.headers()["location"].to_str().unwrap().to_owned();
    let mut all = first.to_vec();
    all.extend_from_slice(rest);
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&all)));
    let sep = if next.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{}{next}{sep}digest={digest}", q.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", q.log());
}
