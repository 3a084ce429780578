//! The driver suite against storage emulators on loopback: S3 on moto and on s3s-fs (which checks
//! signatures), Azure Blob on Azurite, GCS on fake-gcs-server. `tests/e2e/storage-emulators.sh`
//! starts them and sets the variables below; without them each test says it skipped, unless
//! `IMAGE_REGISTRY_STORAGE_E2E=1` (set by that script), where a missing emulator fails the test.
//!
//! - `IMAGE_REGISTRY_S3_ENDPOINT`: moto (any keys); also behind a fault proxy answering
//!   `503 SlowDown` (throttling is retried).
//! - `IMAGE_REGISTRY_S3S_ENDPOINT`, `IMAGE_REGISTRY_S3S_ACCESS_KEY`, `IMAGE_REGISTRY_S3S_SECRET_KEY`.
//! - `IMAGE_REGISTRY_AZURE_ENDPOINT` (`http://127.0.0.1:PORT/devstoreaccount1`).
//! - `IMAGE_REGISTRY_GCS_ENDPOINT` (`http://127.0.0.1:PORT`).
//!
//! Every client here has an explicit endpoint and static credentials: nothing can reach a cloud
//! endpoint or a metadata server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::object::ObjectDriver;
use super::{suite, StorageDriver};
use crate::config::{AzureConfig, GcsConfig, S3Config};

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn emulator(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("IMAGE_REGISTRY_STORAGE_E2E").as_deref() == Ok("1") => {
            panic!("{var} is not set but IMAGE_REGISTRY_STORAGE_E2E=1: the emulator must run")
        }
        _ => {
            eprintln!("skipped: {var} is not set (tests/e2e/storage-emulators.sh sets it)");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

// ---------------------------------------------------------------------------------------------
// S3

fn s3_config(endpoint: &str, bucket: &str, ak: &str, sk: &str) -> S3Config {
    S3Config {
        bucket: Some(bucket.into()),
        region: Some("us-east-1".into()),
        regionendpoint: Some(endpoint.into()),
        accesskey: Some(ak.into()),
        secretkey: Some(sk.into()),
        ..Default::default()
    }
}

async fn s3_driver(cfg: &S3Config, root: &str) -> ObjectDriver {
    let b = super::s3::S3Backend::new(cfg)
        .unwrap()
        .with_part_size(5 << 20);
    if let Err(e) = b
        .client()
        .create_bucket()
        .bucket(cfg.bucket.clone().unwrap())
        .send()
        .await
    {
        let msg = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e));
        assert!(msg.contains("BucketAlready"), "create bucket: {msg}");
    }
    ObjectDriver::new(Arc::new(b), root, true)
}

async fn s3_suite(endpoint: &str, ak: &str, sk: &str) {
    let cfg = s3_config(endpoint, &unique("suite"), ak, sk);
    let d = s3_driver(&cfg, "/some/root").await;
    d.check().await.unwrap();
    suite::run_all(&d).await;
    let d2 = s3_driver(&cfg, "/some/root").await;
    suite::run_shared(&d, &d2).await;
    redirect_round_trip(&d).await;
}

/// A writer that died mid-part leaves a native multipart upload: `abort_stale_writes` ends it
/// (what upload purging calls); one below another folder is not touched.
async fn stale_multipart_uploads_are_aborted(d: &ObjectDriver) {
    let mut w = d.writer("/up/stale/data", true).await.unwrap();
    // More than two parts: the first is held back until a second fills (a writer that dies
    // before that leaves no native upload at all).
    w.write(Bytes::from(vec![7u8; 11 << 20])).await.unwrap();
    // The writer dies: its multipart upload stays open.
    std::mem::forget(w);
    // moto reports every multipart upload as initiated in 2010, so the age filter (uploads younger
    // than the age stay) is not checked here.
    assert_eq!(
        d.abort_stale_writes("/elsewhere", std::time::Duration::ZERO)
            .await
            .unwrap(),
        0
    );
    assert!(
        d.abort_stale_writes("/up", std::time::Duration::from_secs(1))
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(
        d.abort_stale_writes("/up", std::time::Duration::ZERO)
            .await
            .unwrap(),
        0,
        "nothing left to abort"
    );
    let _ = d.delete("/up").await;
}

/// A direct writer that dies after its first part (the process went away: no drop) leaves a
/// multipart upload of the final key, invisible; `abort_stale_writes` above it ends it.
async fn dead_direct_writer_is_aborted(d: &ObjectDriver) {
    let mut w = d.direct_writer("/blobs/x/data").await.unwrap().unwrap();
    w.write(Bytes::from(vec![7u8; 6 << 20])).await.unwrap();
    std::mem::forget(w);
    assert!(d.stat("/blobs/x/data").await.unwrap_err().is_not_found());
    assert!(
        d.abort_stale_writes("/blobs", std::time::Duration::ZERO)
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(
        d.abort_stale_writes("/blobs", std::time::Duration::ZERO)
            .await
            .unwrap(),
        0,
        "nothing left to abort"
    );
}

/// A writer that dies after its first two parts (of `part` bytes; the first is held back until
/// the second fills) left a native write open on `/up/<dir>/data`; returns the path (what
/// upload purging names before deleting the folder).
async fn dead_writer(d: &ObjectDriver, dir: &str, part: usize) -> String {
    let path = format!("/up/{dir}/data");
    let mut w = d.writer(&path, true).await.unwrap();
    w.write(Bytes::from(vec![7u8; 2 * part + 1024]))
        .await
        .unwrap();
    std::mem::forget(w);
    path
}

/// `abort_unfinished` ends the dead writer's native write of that file only: another file
/// reports 0, the file `expected`, a second call 0; the file never became visible.
async fn unfinished_write_is_ended(d: &ObjectDriver, path: &str, expected: u64) {
    assert_eq!(d.abort_unfinished("/up/other/data").await.unwrap(), 0);
    assert_eq!(d.abort_unfinished(path).await.unwrap(), expected, "{path}");
    assert!(d.stat(path).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn s3_moto() {
    let Some(ep) = emulator("IMAGE_REGISTRY_S3_ENDPOINT") else {
        return;
    };
    crate::net::tls::install_default_provider();
    s3_suite(&ep, "test", "test").await;
    let cfg = s3_config(&ep, &unique("aborts"), "test", "test");
    stale_multipart_uploads_are_aborted(&s3_driver(&cfg, "/root").await).await;
    dead_direct_writer_is_aborted(&s3_driver(&cfg, "/root").await).await;
    let d = s3_driver(&cfg, "/root").await;
    let path = dead_writer(&d, "dead", 5 << 20).await;
    unfinished_write_is_ended(&d, &path, 1).await;
    assert_eq!(d.abort_unfinished(&path).await.unwrap(), 0, "nothing left");
    assert_eq!(
        d.abort_stale_writes("/up", std::time::Duration::ZERO)
            .await
            .unwrap(),
        0,
        "the multipart upload is gone"
    );
}

/// A fault proxy in front of an S3 endpoint: the first attempt of every distinct request
/// (method + path + query) is answered `503 SlowDown` as S3 throttles, the rest are forwarded.
/// Returns its address and the counts (forwarded, throttled).
async fn slowdown_proxy(
    upstream: String,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<(u64, u64, std::collections::HashSet<String>)>>,
) {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    let counts = Arc::new(std::sync::Mutex::new((
        0u64,
        0u64,
        std::collections::HashSet::new(),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = reqwest::Client::new();
    let c2 = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (client, counts, upstream) = (client.clone(), c2.clone(), upstream.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (client, counts, upstream) =
                        (client.clone(), counts.clone(), upstream.clone());
                    async move {
                        let key = format!("{} {}", req.method(), req.uri());
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let throttle = counts.lock().unwrap().2.insert(key);
                        if throttle {
                            counts.lock().unwrap().1 += 1;
                            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>";
                            return Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(503)
                                    .header("content-type", "application/xml")
                                    .body(Full::new(Bytes::from(xml)))
                                    .unwrap(),
                            );
                        }
                        counts.lock().unwrap().0 += 1;
                        let url = format!("{upstream}{}", parts.uri);
                        let mut r = client.request(parts.method.clone(), &url).body(body);
                        for (k, v) in parts.headers.iter() {
                            if k != "host" && k != "content-length" {
                                r = r.header(k, v);
                            }
                        }
                        let resp = r.send().await.unwrap();
                        let mut out = hyper::Response::builder().status(resp.status());
                        for (k, v) in resp.headers() {
                            if k != "content-length" && k != "transfer-encoding" {
                                out = out.header(k, v);
                            }
                        }
                        let b = resp.bytes().await.unwrap();
                        Ok(out.body(Full::new(b)).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, counts)
}

/// Throttling (issue 14, item 2): S3 answers `503 SlowDown` to the first attempt of every call;
/// a multipart blob push (three parts), its commit, a read back and a small file still succeed,
/// retried with backoff by the SDK (3 attempts, from 200 ms).
#[tokio::test]
async fn s3_moto_slowdown_is_retried() {
    let Some(ep) = emulator("IMAGE_REGISTRY_S3_ENDPOINT") else {
        return;
    };
    crate::net::tls::install_default_provider();
    let bucket = unique("slowdown");
    // The bucket is made directly; everything after goes through the throttling proxy.
    s3_driver(&s3_config(&ep, &bucket, "test", "test"), "/r").await;
    let (addr, counts) = slowdown_proxy(ep.trim_end_matches('/').to_owned()).await;
    let cfg = s3_config(&format!("http://{addr}"), &bucket, "test", "test");
    let b = super::s3::S3Backend::new(&cfg)
        .unwrap()
        .with_part_size(5 << 20);
    let d = ObjectDriver::new(Arc::new(b), "/r", true);
    let data: Vec<u8> = (0..(12u32 << 20)).map(|i| (i % 251) as u8).collect();
    let mut w = d.writer("/blob/data", false).await.unwrap();
    for chunk in data.chunks(1 << 20) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    w.commit().await.unwrap();
    d.put_content("/small/link", Bytes::from_static(b"sha256:abc"))
        .await
        .unwrap();
    assert_eq!(
        d.get_content("/blob/data").await.unwrap().as_ref(),
        &data[..]
    );
    assert_eq!(
        d.get_content("/small/link").await.unwrap().as_ref(),
        b"sha256:abc"
    );
    let (forwarded, throttled, _) = counts.lock().unwrap().clone();
    assert!(
        throttled >= 6 && forwarded >= throttled,
        "forwarded {forwarded}, throttled {throttled}"
    );
    eprintln!("S3 SlowDown: {throttled} requests throttled, {forwarded} forwarded; all succeeded");
    let _ = d.delete("/blob").await;
    let _ = d.delete("/small").await;
}

#[tokio::test]
async fn s3_s3s_fs() {
    let Some(ep) = emulator("IMAGE_REGISTRY_S3S_ENDPOINT") else {
        return;
    };
    let ak = std::env::var("IMAGE_REGISTRY_S3S_ACCESS_KEY").unwrap_or_default();
    let sk = std::env::var("IMAGE_REGISTRY_S3S_SECRET_KEY").unwrap_or_default();
    s3_suite(&ep, &ak, &sk).await;
    // s3s-fs checks signatures: wrong keys and tampered presigned URLs are refused.
    let cfg = s3_config(&ep, &unique("auth"), &ak, &sk);
    let d = s3_driver(&cfg, "").await;
    d.put_content("/f", Bytes::from_static(b"secret"))
        .await
        .unwrap();
    let url = d.redirect_url("/f").await.unwrap().unwrap();
    let ok = reqwest::get(&url).await.unwrap();
    assert_eq!(ok.status(), 200);
    let tampered = url.replace("X-Amz-Expires=", "X-Amz-Expires=1");
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
    let bad = s3_config(&ep, cfg.bucket.as_deref().unwrap(), &ak, "wrong-secret");
    let bad = ObjectDriver::new(Arc::new(super::s3::S3Backend::new(&bad).unwrap()), "", true);
    let e = bad.stat("/f").await.unwrap_err();
    assert!(!e.is_not_found(), "{e}");
    assert!(bad.check().await.is_err());
}

#[tokio::test]
async fn s3_missing_bucket_and_unreachable_store() {
    let Some(ep) = emulator("IMAGE_REGISTRY_S3_ENDPOINT") else {
        return;
    };
    let cfg = s3_config(&ep, &unique("missing"), "test", "test");
    let d = ObjectDriver::new(Arc::new(super::s3::S3Backend::new(&cfg).unwrap()), "", true);
    let e = d.check().await.unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    // Nothing listens on port 9: errors (not NotFound), quickly.
    let cfg = s3_config("http://127.0.0.1:9", "b", "test", "test");
    let d = ObjectDriver::new(Arc::new(super::s3::S3Backend::new(&cfg).unwrap()), "", true);
    let t = Instant::now();
    let e = d.stat("/x").await.unwrap_err();
    assert!(matches!(e, super::StorageError::Backend(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

/// Presigning needs no store: the URL of a key is minted once and handed out again within
/// REDIRECT_REUSE; other keys get their own; with redirects off there is none.
#[tokio::test]
async fn presigned_urls_are_reused_per_key() {
    let cfg = s3_config("http://127.0.0.1:9", "b", "ak", "sk");
    let d = ObjectDriver::new(Arc::new(super::s3::S3Backend::new(&cfg).unwrap()), "", true);
    let a = d
        .redirect_url("/blobs/a/data")
        .await
        .unwrap()
        .expect("a URL");
    assert!(a.contains("X-Amz-Signature="), "{a}");
    assert_eq!(
        d.redirect_url("/blobs/a/data").await.unwrap(),
        Some(a.clone())
    );
    let b = d
        .redirect_url("/blobs/b/data")
        .await
        .unwrap()
        .expect("a URL");
    assert_ne!(a, b);
    assert!(b.contains("/blobs/b/data"), "{b}");
    let off = ObjectDriver::new(
        Arc::new(super::s3::S3Backend::new(&cfg).unwrap()),
        "",
        false,
    );
    assert_eq!(off.redirect_url("/blobs/a/data").await.unwrap(), None);
}

#[test]
fn s3_config_errors_name_what_to_set() {
    let e = super::s3::S3Backend::new(&S3Config::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("REGISTRY_STORAGE_S3_BUCKET"), "{e}");
    let mut c = s3_config("http://127.0.0.1:9", "b", "ak", "");
    c.secretkey = None;
    let e = super::s3::S3Backend::new(&c).err().unwrap().to_string();
    assert!(e.contains("REGISTRY_STORAGE_S3_SECRETKEY"), "{e}");
    let mut c = s3_config("http://127.0.0.1:9", "b", "ak", "sk");
    c.chunksizemib = 4;
    let e = super::s3::S3Backend::new(&c).err().unwrap().to_string();
    assert!(e.contains("chunkSizeMiB"), "{e}");
}

/// A presigned URL serves the file (and honours a Range header).
async fn redirect_round_trip(d: &dyn StorageDriver) {
    let data = Bytes::from_static(b"redirected content");
    d.put_content("/redir/data", data.clone()).await.unwrap();
    let url = d.redirect_url("/redir/data").await.unwrap().expect("a URL");
    // Within REDIRECT_REUSE the same URL is handed out again; another key gets its own.
    let again = d.redirect_url("/redir/data").await.unwrap().expect("a URL");
    assert_eq!(again, url);
    d.put_content("/redir/other", data.clone()).await.unwrap();
    let other = d
        .redirect_url("/redir/other")
        .await
        .unwrap()
        .expect("a URL");
    assert_ne!(other, url);
    assert_eq!(
        reqwest::get(&other).await.unwrap().bytes().await.unwrap(),
        data
    );
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.bytes().await.unwrap(), data);
    let r = crate::net::outbound::http_client_builder()
        .build()
        .unwrap()
        .get(&url)
        .header("range", "bytes=11-17")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &data[11..18]);
    d.delete("/redir").await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Azure

/// Creates a container with a SharedKey-signed `PUT ?restype=container` (object_store cannot).
/// The signing is written once, in `tests/e2e/azure-container.sh`, which
/// `tests/e2e/storage-emulators.sh` uses too; these tests only run next to the emulators that
/// script starts, where its tools (curl, openssl) are installed. A container that already exists
/// (exit status 2, HTTP 409) is fine.
pub async fn azure_create_container(endpoint: &str, account: &str, key: &str, container: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/azure-container.sh");
    let out = tokio::process::Command::new("bash")
        .args([script, endpoint, account, key, container])
        .output()
        .await
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "create container: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn azure_driver(endpoint: &str, container: &str) -> ObjectDriver {
    let cfg = AzureConfig {
        accountname: Some(AZURITE_ACCOUNT.into()),
        accountkey: Some(AZURITE_KEY.into()),
        container: Some(container.into()),
        endpoint: Some(endpoint.into()),
        ..Default::default()
    };
    let b = super::azure::AzureBackend::new(&cfg)
        .unwrap()
        .with_part_size(5 << 20);
    ObjectDriver::new(Arc::new(b), "root", true)
}

#[tokio::test]
async fn azure_azurite() {
    let Some(ep) = emulator("IMAGE_REGISTRY_AZURE_ENDPOINT") else {
        return;
    };
    let container = unique("suite");
    azure_create_container(&ep, AZURITE_ACCOUNT, AZURITE_KEY, &container).await;
    let d = azure_driver(&ep, &container);
    d.check().await.unwrap();
    suite::run_all(&d).await;
    suite::run_shared(&d, &azure_driver(&ep, &container)).await;
    redirect_round_trip(&d).await;
    let missing = azure_driver(&ep, &unique("missing"));
    assert!(missing.check().await.is_err());
    azure_staged_blocks_are_discarded(&d).await;
    azure_segments_grow_in_place(&d).await;
}

/// The segment keys of `path`'s segment folder.
async fn segment_keys(d: &ObjectDriver, path: &str) -> Vec<String> {
    let key = format!("root{path}@parts/");
    let mut keys: Vec<String> = d
        .backend()
        .list_all(&key)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

/// A file written across sessions (chunked PATCHes) stays one segment whose block list grows:
/// no byte is sent twice and the rename is one Copy Blob. Two sessions that extend the same
/// state race: the first commit wins, the other fails and leaves the winner's file. A segment
/// without blocks (one Put Blob) is continued with a new segment.
async fn azure_segments_grow_in_place(d: &ObjectDriver) {
    let path = "/grow/data";
    let data = suite::pattern((17 << 20) + 12_345, 9);
    let cuts = [0, 300_000, 6 << 20, (6 << 20) + 1, 16 << 20, data.len()];
    for (i, w) in cuts.windows(2).enumerate() {
        let mut wr = d.writer(path, true).await.unwrap();
        assert_eq!(wr.size(), w[0] as u64, "session {i}");
        wr.write(Bytes::copy_from_slice(&data[w[0]..w[1]]))
            .await
            .unwrap();
        wr.close().await.unwrap();
        assert_eq!(d.stat(path).await.unwrap().size, w[1] as u64, "session {i}");
        assert_eq!(
            segment_keys(d, path).await,
            ["root/grow/data@parts/00000000000000000000"],
            "session {i}"
        );
    }
    assert!(suite::read_all(d, path, 0, None).await == data);
    let (_, list) = azure_block_list(d, "root/grow/data@parts/00000000000000000000").await;
    assert!(
        list.matches("<Block>").count() >= cuts.len() - 1,
        "one block list: {list}"
    );

    // Two sessions from the same end: the first to commit wins.
    let mut a = d.writer(path, true).await.unwrap();
    let mut b = d.writer(path, true).await.unwrap();
    a.write(Bytes::from_static(b"from a")).await.unwrap();
    b.write(Bytes::from(vec![b'b'; 6 << 20])).await.unwrap();
    a.close().await.unwrap();
    let e = b.close().await.unwrap_err();
    assert!(matches!(e, super::StorageError::Conflict(_)), "{e}");
    let mut want = data.clone();
    want.extend_from_slice(b"from a");
    assert!(suite::read_all(d, path, 0, None).await == want);
    let mut w = d.writer(path, true).await.unwrap();
    assert_eq!(w.size(), want.len() as u64);
    w.write(Bytes::from_static(b"!")).await.unwrap();
    w.commit().await.unwrap();
    want.push(b'!');
    d.rename(path, "/grow/blob").await.unwrap();
    assert!(suite::read_all(d, "/grow/blob", 0, None).await == want);
    assert!(segment_keys(d, path).await.is_empty());

    // A segment written by one Put Blob has no blocks to name: a new segment follows it.
    let seg = "root/grow/put/data@parts/00000000000000000000";
    d.backend()
        .put(seg, Bytes::from(vec![1u8; 1000]))
        .await
        .unwrap();
    let mut w = d.writer("/grow/put/data", true).await.unwrap();
    assert_eq!(w.size(), 1000);
    w.write(Bytes::from(vec![2u8; 2000])).await.unwrap();
    w.close().await.unwrap();
    let mut want = vec![1u8; 1000];
    want.extend_from_slice(&[2u8; 2000]);
    assert_eq!(suite::read_all(d, "/grow/put/data", 0, None).await, want);
    d.delete("/grow").await.unwrap();
}

/// The blocks a blob has staged, committed or not (Get Block List through a SAS URL).
async fn azure_block_list(d: &ObjectDriver, key: &str) -> (u16, String) {
    let url = d
        .backend()
        .presign_get(key, Duration::from_secs(300))
        .await
        .unwrap()
        .unwrap();
    let r = reqwest::get(format!("{url}&comp=blocklist&blocklisttype=all"))
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A writer that died after staging a block leaves it uncommitted on its segment (Azure has no
/// abort); `abort_unfinished` discards it: Get Block List then finds no block.
async fn azure_staged_blocks_are_discarded(d: &ObjectDriver) {
    let path = dead_writer(d, "dead", 5 << 20).await;
    let seg = "root/up/dead/data@parts/00000000000000000000";
    // The block is staged by a task of the dead writer: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, body) = azure_block_list(d, seg).await;
        if st == 200 && body.contains("<UncommittedBlocks><Block>") {
            break;
        }
        assert!(Instant::now() < deadline, "no staged block: {st} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unfinished_write_is_ended(d, &path, 1).await;
    let (st, body) = azure_block_list(d, seg).await;
    assert!(
        st == 404 || (st == 200 && !body.contains("<Block>")),
        "blocks left after the purge: {st} {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// GCS

/// Writes a service-account key with a fresh RSA key (openssl) and returns its path.
fn gcs_key_file(dir: &std::path::Path) -> String {
    let pem = dir.join("key.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let key = std::fs::read_to_string(&pem).unwrap();
    let json = serde_json::json!({
        "type": "service_account",
        "client_email": "registry@test.iam.gserviceaccount.com",
        "private_key": key,
        // Never used (noauth); points nowhere reachable anyway.
        "token_uri": "http://127.0.0.1:9/token",
    });
    let path = dir.join("key.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

async fn gcs_create_bucket(endpoint: &str, bucket: &str) {
    let r = crate::net::outbound::http_client_builder()
        .build()
        .unwrap()
        .post(format!("{endpoint}/storage/v1/b?project=test"))
        .json(&serde_json::json!({"name": bucket}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());
}

fn gcs_driver(endpoint: &str, bucket: &str, keyfile: Option<String>) -> ObjectDriver {
    let cfg = GcsConfig {
        bucket: Some(bucket.into()),
        endpoint: Some(endpoint.into()),
        noauth: true,
        keyfile,
        ..Default::default()
    };
    let b = super::gcs::GcsBackend::new(&cfg)
        .unwrap()
        .with_part_size(1 << 20);
    ObjectDriver::new(Arc::new(b), "root", true)
}

#[tokio::test]
async fn gcs_fake_gcs_server() {
    let Some(ep) = emulator("IMAGE_REGISTRY_GCS_ENDPOINT") else {
        return;
    };
    let bucket = unique("suite");
    gcs_create_bucket(&ep, &bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let key = gcs_key_file(dir.path());
    let d = gcs_driver(&ep, &bucket, Some(key));
    d.check().await.unwrap();
    suite::run_all(&d).await;
    suite::run_shared(&d, &gcs_driver(&ep, &bucket, None)).await;
    redirect_round_trip(&d).await;
    // Compose in rounds: more than 32 segments (small parts, each a full segment).
    let many: Vec<u8> = (0..40 * 256 * 1024).map(|i| (i % 253) as u8).collect();
    let cfg = GcsConfig {
        bucket: Some(bucket.clone()),
        endpoint: Some(ep.clone()),
        noauth: true,
        ..Default::default()
    };
    let small = super::gcs::GcsBackend::new(&cfg)
        .unwrap()
        .with_part_size(256 * 1024);
    let small = ObjectDriver::new(Arc::new(small), "root", false);
    for c in many.chunks(256 * 1024) {
        let mut w = small.writer("/many/data", true).await.unwrap();
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
        w.close().await.unwrap();
    }
    small.rename("/many/data", "/many2/data").await.unwrap();
    assert_eq!(small.get_content("/many2/data").await.unwrap(), many);
    small.delete("/many2").await.unwrap();
    let missing = gcs_driver(&ep, &unique("missing"), None);
    assert!(missing.check().await.is_err());
    gcs_sessions_are_cancelled(&d).await;
}

/// The session markers below a file's segment folder.
async fn gcs_markers(d: &ObjectDriver, file_key: &str) -> Vec<String> {
    d.backend()
        .list_all(&format!("{file_key}@parts/"))
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(super::object::SESSION_SUFFIX))
        .collect()
}

/// A writer session names its resumable session in storage while it runs; a finished one leaves
/// no marker; a dead writer's session is cancelled by `abort_unfinished` (fake-gcs-server
/// answers the DELETE with 499 as GCS does) and its marker deleted.
async fn gcs_sessions_are_cancelled(d: &ObjectDriver) {
    // Two parts and a bit: a writer holds its first part back until a second fills (a write
    // under two parts is one plain upload), so the session starts with the second.
    let mut w = d.writer("/up/alive/data", true).await.unwrap();
    w.write(Bytes::from(vec![1u8; (2 << 20) + 1]))
        .await
        .unwrap();
    assert_eq!(gcs_markers(d, "root/up/alive/data").await.len(), 1);
    w.close().await.unwrap();
    assert!(gcs_markers(d, "root/up/alive/data").await.is_empty());
    assert_eq!(d.stat("/up/alive/data").await.unwrap().size, (2 << 20) + 1);
    let path = dead_writer(d, "dead", 1 << 20).await;
    let markers = gcs_markers(d, "root/up/dead/data").await;
    assert_eq!(markers.len(), 1, "{markers:?}");
    let session = d
        .get_content(&format!("/{}", &markers[0]["root/".len()..]))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&session).contains("upload_id="),
        "{session:?}"
    );
    unfinished_write_is_ended(d, &path, 1).await;
    assert!(gcs_markers(d, "root/up/dead/data").await.is_empty());
    assert_eq!(d.abort_unfinished(&path).await.unwrap(), 0, "nothing left");
    d.delete("/up").await.unwrap();
}
