//! Collection while a server serves pushes of the same storage: the hazards of issue 11
//! ((a)–(e)), each with the push landing at the worst moment of a run (the run is paused after a
//! phase), and concurrent pushers of every style next to repeated runs.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

/// Pauses a run when `phase` is done until the test says go.
struct PauseAfter {
    phase: &'static str,
    current: Mutex<&'static str>,
    reached: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl Progress for PauseAfter {
    fn phase(&self, name: &'static str, _: u64) {
        *self.current.lock().unwrap() = name;
    }
    fn step(&self, _: u64) {}
    fn done(&self) {
        if *self.current.lock().unwrap() != self.phase {
            return;
        }
        if let Some(tx) = self.reached.lock().unwrap().take() {
            let _ = tx.send(());
            // Blocks this worker thread only; the server and the test run on the others.
            let _ = self.go.lock().unwrap().recv();
        }
    }
}

/// Starts a run over `root` that pauses after `phase`; returns (the run, "paused", "go").
fn paused_run(
    root: &Path,
    o: GcOptions,
    phase: &'static str,
) -> (
    tokio::task::JoinHandle<GcReport>,
    tokio::sync::oneshot::Receiver<()>,
    mpsc::Sender<()>,
) {
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let hook = Arc::new(PauseAfter {
        phase,
        current: Mutex::new(""),
        reached: Mutex::new(Some(reached_tx)),
        go: Mutex::new(go_rx),
    });
    let root = root.to_owned();
    let run = tokio::spawn(async move { gc_with(&root, &o, hook.as_ref()).await });
    (run, reached_rx, go_tx)
}

fn root(s: &TestServer) -> std::path::PathBuf {
    s.root.clone().expect("filesystem storage")
}

/// A manifest with the given config and layer blobs (pushed before).
fn manifest_of(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let ls: Vec<Value> = layers
        .iter()
        .map(|l| descriptor(OCI_LAYER, &sha256(l), l.len()))
        .collect();
    oci_manifest(&descriptor(OCI_CONFIG, &sha256(config), config.len()), &ls)
}

async fn head_status(s: &TestServer, repo: &str, d: &str) -> StatusCode {
    s.head(&format!("/v2/{repo}/blobs/{d}")).await.status()
}

/// A garbage blob `age` old in `repo` (pushed, then aged with everything else).
async fn old_garbage(s: &TestServer, repo: &str, data: &[u8]) -> String {
    let d = s.push_blob(repo, data).await;
    age_everything(&root(s), 2 * HOUR);
    d
}

const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux"}"#;

/// Server and runs agree on a 4s delay (servers refresh ages after 1s).
fn online(delete_untagged: bool) -> GcOptions {
    GcOptions {
        grace: Duration::from_millis(300),
        ..opts(delete_untagged, Duration::from_secs(4))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_uploaded_just_before_its_manifest_survives_a_run_between_them() {
    let s = server("1h").await;
    let layer = b"fresh layer (a)";
    s.push_blob("app", CONFIG).await;
    s.push_blob("app", layer).await;
    let (run, paused, go) = paused_run(&root(&s), opts(true, HOUR), "mark");
    paused.await.unwrap();
    let m = manifest_of(CONFIG, &[layer]);
    s.push_manifest("app", "v1", OCI_MANIFEST, &m).await;
    go.send(()).unwrap();
    let r = run.await.unwrap();
    assert_eq!(r.blobs_deleted, 0, "{r:#?}");
    pull_intact(&s, "app", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_blob_found_by_head_before_the_tombstone_is_kept_for_its_manifest() {
    let s = server("4s").await;
    let layer = b"old layer (b1)";
    let x = old_garbage(&s, "app", layer).await;
    s.push_blob("app", CONFIG).await;
    let (run, paused, go) = paused_run(&root(&s), online(true), "mark");
    paused.await.unwrap();
    // The run chose the blob; the client finds it (200) and skips the upload.
    assert_eq!(head_status(&s, "app", &x).await, StatusCode::OK);
    go.send(()).unwrap();
    let r = run.await.unwrap();
    assert!(r.reclaimed_by_pushes >= 1, "{r:#?}");
    assert!(blob_on_disk(&root(&s), &x));
    // The manifest arrives after the run.
    s.push_manifest("app", "v1", OCI_MANIFEST, &manifest_of(CONFIG, &[layer]))
        .await;
    pull_intact(&s, "app", "v1").await;
    assert_eq!(
        head_status(&s, "app", &x).await,
        StatusCode::OK,
        "no tombstone left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tombstoned_blob_is_absent_to_head_and_an_upload_claims_it_back() {
    let s = server("4s").await;
    let layer = b"old layer (b2)";
    let x = old_garbage(&s, "app", layer).await;
    let (run, paused, go) = paused_run(&root(&s), online(true), "tombstone");
    paused.await.unwrap();
    assert_eq!(head_status(&s, "app", &x).await, StatusCode::NOT_FOUND);
    // The client uploads it again, then pushes the manifest.
    s.push_blob("app", CONFIG).await;
    s.push_blob("app", layer).await;
    s.push_manifest("app", "v1", OCI_MANIFEST, &manifest_of(CONFIG, &[layer]))
        .await;
    go.send(()).unwrap();
    let r = run.await.unwrap();
    assert_eq!(r.blobs_deleted, 0, "{r:#?}");
    pull_intact(&s, "app", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_put_claims_a_tombstoned_blob_it_references() {
    // A client that found the blob before the tombstone and pushes its manifest after the run
    // verified its candidates (the last moment before the sweep).
    let s = server("4s").await;
    let layer = b"old layer (b3)";
    s.push_blob("app", CONFIG).await;
    old_garbage(&s, "app", layer).await;
    let (run, paused, go) = paused_run(&root(&s), online(true), "verify");
    paused.await.unwrap();
    s.push_manifest("app", "v1", OCI_MANIFEST, &manifest_of(CONFIG, &[layer]))
        .await;
    go.send(()).unwrap();
    let r = run.await.unwrap();
    assert_eq!(r.blobs_deleted, 0, "{r:#?}");
    pull_intact(&s, "app", "v1").await;
}

/// `POST ?mount=` of `d` from `from` into `to`: the status.
async fn mount(s: &TestServer, to: &str, from: &str, d: &str) -> reqwest::Response {
    s.request(
        Method::POST,
        &format!("/v2/{to}/blobs/uploads/?mount={d}&from={from}"),
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mount_of_an_old_blob_during_a_run_ends_in_an_intact_image() {
    let s = server("4s").await;
    let layer = b"old layer (c)";
    let x = old_garbage(&s, "src", layer).await;

    // Before the tombstone: mounted (201), and the age refreshed.
    let (run, paused, go) = paused_run(&root(&s), online(true), "mark");
    paused.await.unwrap();
    assert_eq!(
        mount(&s, "dst", "src", &x).await.status(),
        StatusCode::CREATED
    );
    go.send(()).unwrap();
    assert!(run.await.unwrap().reclaimed_by_pushes >= 1);
    s.push_blob("dst", CONFIG).await;
    s.push_manifest("dst", "v1", OCI_MANIFEST, &manifest_of(CONFIG, &[layer]))
        .await;
    pull_intact(&s, "dst", "v1").await;

    // After the tombstone: not mounted (202, a session), the client uploads into it.
    let y = old_garbage(&s, "src", b"old layer (c2)").await;
    let (run, paused, go) = paused_run(&root(&s), online(true), "tombstone");
    paused.await.unwrap();
    let resp = mount(&s, "dst2", "src", &y).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");
    let done = s.finish_upload(&loc, &y, Some(b"old layer (c2)")).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    s.push_blob("dst2", CONFIG).await;
    s.push_manifest(
        "dst2",
        "v1",
        OCI_MANIFEST,
        &manifest_of(CONFIG, &[b"old layer (c2)"]),
    )
    .await;
    go.send(()).unwrap();
    let r = run.await.unwrap();
    pull_intact(&s, "dst2", "v1").await;
    pull_intact(&s, "dst", "v1").await;
    assert!(blob_on_disk(&root(&s), &y), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_moved_while_a_run_marks_keeps_its_new_image() {
    let s = server("4s").await;
    let old_layer = b"layer of the old image (d)";
    let reused = b"an old layer nobody uses (d)";
    s.push_blob("app", CONFIG).await;
    s.push_blob("app", old_layer).await;
    s.push_blob("app", reused).await;
    s.push_manifest("app", "t", OCI_MANIFEST, &manifest_of(CONFIG, &[old_layer]))
        .await;
    age_everything(&root(&s), 2 * HOUR);
    for pause in ["mark", "tombstone", "verify"] {
        let (run, paused, go) = paused_run(&root(&s), online(true), pause);
        paused.await.unwrap();
        // Move the tag to an image with the old unreferenced layer (no HEAD: the client is sure).
        let m = manifest_of(CONFIG, &[reused, pause.as_bytes()]);
        s.push_blob("app", pause.as_bytes()).await;
        s.push_manifest("app", "t", OCI_MANIFEST, &m).await;
        go.send(()).unwrap();
        let r = run.await.unwrap();
        pull_intact(&s, "app", "t").await;
        assert!(blob_on_disk(&root(&s), &sha256(reused)), "{pause}: {r:#?}");
        age_everything(&root(&s), 2 * HOUR);
    }
    // Once no tag references it, it goes (the old image's layer went with the old image).
    s.push_blob("app", old_layer).await;
    s.push_manifest("app", "t", OCI_MANIFEST, &manifest_of(CONFIG, &[old_layer]))
        .await;
    age_everything(&root(&s), 2 * HOUR);
    let r = gc(&root(&s), &online(true)).await;
    assert!(!blob_on_disk(&root(&s), &sha256(reused)), "{r:#?}");
    pull_intact(&s, "app", "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_collected_under_a_server_that_saw_it_is_uploaded_again() {
    // Default link TTL: the server trusts links it read for 5s.
    let s = TestServer::builder()
        .storage_config("  maintenance:\n    gc:\n      delay: 4s\n")
        .start()
        .await;
    let layer = b"collected while cached (e)";
    s.push_blob("app", CONFIG).await;
    let x = old_garbage(&s, "app", layer).await;
    assert_eq!(head_status(&s, "app", &x).await, StatusCode::OK);
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{x}")).await.status(),
        StatusCode::OK
    );
    age_everything(&root(&s), 2 * HOUR);
    let r = gc(&root(&s), &online(true)).await;
    assert!(
        r.blobs_deleted >= 1 && !blob_on_disk(&root(&s), &x),
        "{r:#?}"
    );
    // At once, not after the TTL: HEAD and mount say absent, a manifest is refused.
    assert_eq!(head_status(&s, "app", &x).await, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{x}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let resp = s
        .request(Method::POST, &format!("/v2/app/blobs/uploads/?mount={x}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    s.push_blob("app", CONFIG).await;
    let m = manifest_of(CONFIG, &[layer]);
    let resp = s.put_manifest("app", "v1", OCI_MANIFEST, &m).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    s.push_blob("app", layer).await;
    s.push_manifest("app", "v1", OCI_MANIFEST, &m).await;
    pull_intact(&s, "app", "v1").await;
}

// ----- concurrent pushers and repeated runs ------------------------------------------------------

/// How a pusher sends its blobs.
#[derive(Clone, Copy, Debug)]
enum Style {
    Monolithic,
    Chunked,
    PutBody,
    /// Mounts the shared old layer from `base` and HEADs it first like a client.
    Mount,
}

/// Uploads `data` into `repo` in `style`, as a client does (HEAD first, skip if present).
async fn upload(s: &TestServer, repo: &str, data: &[u8], style: Style) -> bool {
    let d = sha256(data);
    if head_status(s, repo, &d).await == StatusCode::OK {
        return true;
    }
    let status = match style {
        Style::Monolithic => s.post_blob(repo, data, None).await.0,
        Style::Chunked | Style::PutBody | Style::Mount => {
            let resp = s
                .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            if resp.status() != StatusCode::ACCEPTED {
                return false;
            }
            let mut loc = header(&resp, "location");
            if matches!(style, Style::Chunked) {
                let mut off = 0;
                for piece in data.chunks(7) {
                    let r = s.patch_chunk(&loc, off, piece).await;
                    if r.status() != StatusCode::ACCEPTED {
                        return false;
                    }
                    off += piece.len() as u64;
                    loc = header(&r, "location");
                }
                s.finish_upload(&loc, &d, None).await.status()
            } else {
                s.finish_upload(&loc, &d, Some(data)).await.status()
            }
        }
    };
    status == StatusCode::CREATED
}

/// One pusher: `rounds` images, each under `latest` (moved every time) and every other one under
/// a tag of its own too (so the others become untagged garbage). Returns the acknowledged
/// (repository, tag, digest) that no later push moved.
async fn pusher(
    s: Arc<TestServer>,
    n: usize,
    style: Style,
    rounds: usize,
) -> Vec<(String, String, String)> {
    let repo = format!("p{n}");
    let shared: &[u8] = b"the shared old base layer";
    let mut acked = Vec::new();
    for i in 0..rounds {
        let own = format!("layer {n}/{i}").into_bytes();
        let config = format!(r#"{{"os":"linux","n":{n},"i":{i}}}"#).into_bytes();
        let m = manifest_of(&config, &[shared, &own]);
        let tag = if i % 2 == 0 {
            format!("t{i}")
        } else {
            "latest".to_owned()
        };
        for attempt in 0.. {
            assert!(attempt < 20, "{repo}:{tag} never got through");
            if matches!(style, Style::Mount) {
                let r = mount(&s, &repo, "base", &sha256(shared)).await;
                if r.status() != StatusCode::CREATED
                    && !upload(&s, &repo, shared, Style::PutBody).await
                {
                    continue;
                }
            } else if !upload(&s, &repo, shared, style).await {
                continue;
            }
            if !upload(&s, &repo, &own, style).await || !upload(&s, &repo, &config, style).await {
                continue;
            }
            let resp = s.put_manifest(&repo, &tag, OCI_MANIFEST, &m).await;
            match resp.status() {
                StatusCode::CREATED => {
                    if tag == "latest" {
                        acked.retain(|(_, t, _)| t != "latest");
                    } else {
                        let r = s.put_manifest(&repo, "latest", OCI_MANIFEST, &m).await;
                        assert_eq!(r.status(), StatusCode::CREATED);
                    }
                    acked.push((repo.clone(), tag.clone(), sha256(&m)));
                    break;
                }
                // A blob collected between the HEAD and the manifest: upload again, as a client
                // retrying the push does.
                StatusCode::BAD_REQUEST => continue,
                other => panic!("{repo}:{tag}: {other}"),
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushers_and_repeated_runs_lose_no_acknowledged_tag() {
    let s = Arc::new(server("2s").await);
    let base = s.push_blob("base", b"the shared old base layer").await;
    s.push_blob("base", b"old garbage in base").await;
    age_everything(&root(&s), 2 * HOUR);
    let o = GcOptions {
        grace: Duration::from_millis(200),
        ..opts(true, Duration::from_secs(2))
    };

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (root, o, stop) = (root(&s), o.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                runs.push(gc(&root, &o).await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            runs
        })
    };
    let styles = [
        Style::Monolithic,
        Style::Chunked,
        Style::PutBody,
        Style::Mount,
    ];
    let pushers: Vec<_> = styles
        .iter()
        .enumerate()
        .map(|(n, st)| tokio::spawn(pusher(s.clone(), n, *st, 12)))
        .collect();
    let mut acked = Vec::new();
    for p in pushers {
        acked.extend(p.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.await.unwrap();
    assert!(runs.len() >= 2, "{} runs", runs.len());
    assert_eq!(acked.len(), 4 * 7);
    for (repo, tag, digest) in &acked {
        let seen = pull_intact(&s, repo, tag).await;
        assert_eq!(&seen[0], digest, "{repo}:{tag}");
    }

    // Garbage older than the delay is gone after one more run: what is left is exactly what the
    // tags reach.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let last = gc(&root(&s), &o).await;
    let dry = gc(
        &root(&s),
        &GcOptions {
            dry_run: true,
            ..opts(true, Duration::ZERO)
        },
    )
    .await;
    assert_eq!(
        (dry.blobs_deleted, dry.manifests_deleted),
        (0, 0),
        "{dry:#?}"
    );
    assert!(!blob_on_disk(&root(&s), &sha256(b"old garbage in base")));
    // The shared layer is referenced by every image: it stayed, though old and orphaned at first.
    assert!(blob_on_disk(&root(&s), &base));
    let deleted: u64 = runs
        .iter()
        .chain([&last])
        .map(|r| r.manifests_deleted)
        .sum();
    assert!(deleted > 0, "the untagged images were collected");
    for (repo, tag, _) in &acked {
        pull_intact(&s, repo, tag).await;
    }
}
