//! Domain tests on the in-memory and filesystem drivers.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;

use super::*;
use crate::oci::{Digest, Reference, RepositoryName};
use crate::storage::memory::MemoryDriver;
use crate::storage::{layout, ByteStream};

fn body(data: &[u8]) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(7000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn registry(driver: Arc<dyn StorageDriver>, secret: &str) -> Registry {
    Registry::new(driver, RegistryOptions::new(UploadSecret::new(secret)))
}

fn name() -> RepositoryName {
    "ns/app".parse().unwrap()
}

/// The whole blob `d` as `r` serves it (also for the pull-through tests).
pub(super) async fn read_blob(r: &Registry, d: &Digest) -> Vec<u8> {
    let chunks: Vec<Bytes> = r
        .read_blob(d, 0, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

#[tokio::test]
async fn upload_continues_on_another_instance() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let a = registry(driver.clone(), "shared");
    let b = registry(driver.clone(), "shared");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let digest = Digest::sha256_of(&data);

    let mut s = a.start_upload(&name()).await.unwrap();
    a.append_upload(&mut s, Some(0), body(&data[..40_000]))
        .await
        .unwrap();
    let token = a.upload_state_token(&s);

    let mut s2 = b
        .resume_upload(&name(), &s.uuid, Some(&token))
        .await
        .unwrap();
    assert_eq!(s2.offset, 40_000);
    let out_of_order = b.append_upload(&mut s2, Some(10), body(b"x")).await;
    assert!(matches!(
        out_of_order,
        Err(RegistryError::UploadOutOfOrder { offset: 40_000 })
    ));
    b.append_upload(&mut s2, Some(40_000), body(&data[40_000..70_000]))
        .await
        .unwrap();
    // The hash state saved by the other instance is there, in Go's 108-byte format.
    let st = driver
        .get_content(&layout::upload_hashstate(&name(), &s.uuid, 70_000))
        .await
        .unwrap();
    assert_eq!(st.len(), hasher::MARSHALLED_LEN);

    let mut s3 = a.resume_upload(&name(), &s.uuid, None).await.unwrap();
    a.complete_upload(&mut s3, &digest, Some(70_000), Some(body(&data[70_000..])))
        .await
        .unwrap();
    assert_eq!(
        a.stat_blob(&name(), &digest).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(read_blob(&a, &digest).await, data);
    // The upload folder is gone.
    assert!(driver
        .stat(&layout::upload_dir(&name(), &s.uuid))
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn an_append_under_a_stale_state_hashes_from_where_the_data_ends() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let r = registry(driver.clone(), "s");
    let data: Vec<u8> = (0..90_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let mut s = r.start_upload(&name()).await.unwrap();
    r.append_upload(&mut s, None, body(&data[..40_000]))
        .await
        .unwrap();
    let stale = r.upload_state_token(&s);
    r.append_upload(&mut s, None, body(&data[40_000..70_000]))
        .await
        .unwrap();
    // The client's state says 40,000 (a hash state is saved there); the data ends at 70,000.
    let mut s2 = r
        .resume_upload_for_write(&name(), &s.uuid, Some(&stale))
        .await
        .unwrap();
    assert_eq!(s2.state_offset, Some(40_000));
    assert_eq!(
        r.append_upload(&mut s2, None, body(&data[70_000..80_000]))
            .await
            .unwrap(),
        80_000
    );
    let mut s3 = r
        .resume_upload_for_write(&name(), &s.uuid, Some(&r.upload_state_token(&s2)))
        .await
        .unwrap();
    assert_eq!(s3.state_offset, Some(80_000));
    r.complete_upload(&mut s3, &digest, None, Some(body(&data[80_000..])))
        .await
        .unwrap();
    assert_eq!(read_blob(&r, &digest).await, data);
}

/// A store whose writers open without writing (as object stores' do), where the check that an
/// upload exists is held until a writer has started to open: an append that made the two one
/// after the other would never finish.
struct CheckWhileOpening(tokio::sync::Notify);

#[async_trait::async_trait]
impl crate::storage::memory::hooked::Hooks for CheckWhileOpening {
    async fn before(&self, _: &MemoryDriver, op: &'static str, paths: &[String]) {
        match op {
            "writer" => self.0.notify_one(),
            "get_content" if paths.iter().any(|p| p.ends_with("/startedat")) => {
                self.0.notified().await
            }
            _ => {}
        }
    }
    fn writer_opens_without_writing(&self) -> bool {
        true
    }
}

/// With the client's signed state, an append checks that the upload exists while it opens the
/// data (one round trip fewer on an object store); an upload that is gone still answers
/// `BlobUploadUnknown` and gets no data.
#[tokio::test]
async fn an_append_checks_the_upload_exists_while_it_opens_the_data() {
    use crate::storage::memory::hooked::Hooked;
    let driver = Arc::new(Hooked::new(CheckWhileOpening(tokio::sync::Notify::new())));
    let r = registry(driver.clone(), "s");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 239) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let s = r.start_upload(&name()).await.unwrap();
    let token = r.upload_state_token(&s);
    let append = async {
        let mut s = r
            .resume_upload_for_write(&name(), &s.uuid, Some(&token))
            .await?;
        r.append_upload(&mut s, None, body(&data[..20_000])).await?;
        let token = r.upload_state_token(&s);
        let mut s = r
            .resume_upload_for_write(&name(), &s.uuid, Some(&token))
            .await?;
        r.append_upload(&mut s, None, body(&data[20_000..])).await?;
        // docker's ending: a PUT without a body.
        let token = r.upload_state_token(&s);
        let mut s = r
            .resume_upload_for_write(&name(), &s.uuid, Some(&token))
            .await?;
        r.complete_upload(&mut s, &digest, None, None).await
    };
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), append)
        .await
        .expect("the check waited for the writer's open");
    assert_eq!(done.unwrap(), data.len() as u64);
    assert_eq!(read_blob(&r, &digest).await, data);

    // Gone (cancelled, or purged): unknown, and nothing is written for it.
    let s = r.start_upload(&name()).await.unwrap();
    let token = r.upload_state_token(&s);
    r.cancel_upload(&s).await.unwrap();
    let mut gone = r
        .resume_upload_for_write(&name(), &s.uuid, Some(&token))
        .await
        .unwrap();
    let appended = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        r.append_upload(&mut gone, None, body(&data)),
    )
    .await
    .expect("the check waited for the writer's open");
    assert!(
        matches!(appended, Err(RegistryError::BlobUploadUnknown)),
        "{appended:?}"
    );
    let left = driver
        .inner
        .list(&layout::upload_dir(&name(), &s.uuid))
        .await
        .unwrap_or_default();
    assert!(left.is_empty(), "written for a gone upload: {left:?}");
}

#[tokio::test]
async fn lost_hash_state_is_rebuilt_from_the_data() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let r = registry(driver.clone(), "s");
    let data = vec![9u8; 50_000];
    let digest = Digest::sha256_of(&data);
    let mut s = r.start_upload(&name()).await.unwrap();
    r.append_upload(&mut s, None, body(&data[..20_000]))
        .await
        .unwrap();
    r.append_upload(&mut s, None, body(&data[20_000..30_000]))
        .await
        .unwrap();
    driver
        .delete(&layout::upload_hashstate(&name(), &s.uuid, 30_000))
        .await
        .unwrap();
    let mut s = r.resume_upload(&name(), &s.uuid, None).await.unwrap();
    r.complete_upload(&mut s, &digest, None, Some(body(&data[30_000..])))
        .await
        .unwrap();
    assert_eq!(read_blob(&r, &digest).await, data);
}

#[tokio::test]
async fn state_from_another_secret_or_upload_is_refused() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let a = registry(driver.clone(), "one");
    let b = registry(driver.clone(), "two");
    let s = a.start_upload(&name()).await.unwrap();
    let token = a.upload_state_token(&s);
    assert!(matches!(
        b.resume_upload(&name(), &s.uuid, Some(&token)).await,
        Err(RegistryError::BlobUploadInvalid(_))
    ));
    let other: RepositoryName = "ns/other".parse().unwrap();
    assert!(matches!(
        a.resume_upload(&other, &s.uuid, Some(&token)).await,
        Err(RegistryError::BlobUploadInvalid(_))
    ));
    assert!(matches!(
        a.resume_upload(&name(), "not-a-uuid", None).await,
        Err(RegistryError::BlobUploadUnknown)
    ));
}

#[tokio::test]
async fn digest_mismatch_leaves_nothing_visible() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let r = registry(driver.clone(), "s");
    let claimed = Digest::sha256_of(b"what the client claims");
    let err = r.put_blob(&name(), &claimed, body(b"other bytes")).await;
    assert!(matches!(err, Err(RegistryError::DigestInvalid(_))));
    assert!(r.stat_global_blob(&claimed).await.unwrap().is_none());
    assert!(matches!(
        r.stat_blob(&name(), &claimed).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    // The failed one-shot upload left no upload folder behind.
    let uploads = driver
        .list(&format!("{}/_uploads", layout::repo_root(&name())))
        .await;
    assert!(uploads.map(|u| u.is_empty()).unwrap_or(true));
}

#[tokio::test]
async fn broken_body_keeps_what_arrived_and_resumes() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let r = registry(driver, "s");
    let data = vec![3u8; 30_000];
    let mut s = r.start_upload(&name()).await.unwrap();
    let broken: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::copy_from_slice(&data[..10_000])),
        Err(std::io::Error::other("connection reset")),
    ]));
    assert!(matches!(
        r.append_upload(&mut s, Some(0), broken).await,
        Err(RegistryError::BodyRead(_))
    ));
    let mut s = r.resume_upload(&name(), &s.uuid, None).await.unwrap();
    assert_eq!(s.offset, 10_000);
    let digest = Digest::sha256_of(&data);
    r.complete_upload(&mut s, &digest, Some(10_000), Some(body(&data[10_000..])))
        .await
        .unwrap();
    assert_eq!(read_blob(&r, &digest).await, data);
}

#[tokio::test]
async fn deletes_can_be_disabled() {
    let r = Registry::new(
        Arc::new(MemoryDriver::new()),
        RegistryOptions {
            delete_enabled: false,
            ..RegistryOptions::new(UploadSecret::new("s"))
        },
    );
    let d = Digest::sha256_of(b"x");
    r.put_blob(&name(), &d, body(b"x")).await.unwrap();
    assert!(matches!(
        r.delete_blob(&name(), &d).await,
        Err(RegistryError::Unsupported(_))
    ));
    assert!(matches!(
        r.delete_manifest(&name(), &Reference::Digest(d)).await,
        Err(RegistryError::Unsupported(_))
    ));
}

/// Pushes a minimal image (config + one layer) and a manifest under `tag`; returns its digest.
async fn push_image(r: &Registry, tag: &str, layer: &[u8]) -> Digest {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let (cd, ld) = (Digest::sha256_of(config), Digest::sha256_of(layer));
    r.put_blob(&name(), &cd, body(config)).await.unwrap();
    r.put_blob(&name(), &ld, body(layer)).await.unwrap();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    r.put_manifest(
        &name(),
        &Reference::Tag(tag.parse().unwrap()),
        Some("application/vnd.oci.image.manifest.v1+json"),
        Bytes::from(m),
    )
    .await
    .unwrap()
    .digest
}

/// While armed, holds every look at a manifest revision link until a read of a blob's data has
/// begun, and records the data paths read.
struct RevisionWaitsForBody {
    armed: std::sync::atomic::AtomicBool,
    go: tokio::sync::Semaphore,
    reads: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl crate::storage::memory::hooked::Hooks for RevisionWaitsForBody {
    async fn before(&self, _: &MemoryDriver, op: &'static str, paths: &[String]) {
        let Some(p) = paths.first() else { return };
        let armed = self.armed.load(std::sync::atomic::Ordering::SeqCst);
        if op == "stat" && p.contains("/_manifests/revisions/") && p.ends_with("/link") && armed {
            let _ = self.go.acquire().await.map(|p| p.forget());
        } else if op == "get_content" && p.contains("/blobs/sha256/") && p.ends_with("/data") {
            self.reads.lock().unwrap().push(p.clone());
            self.go.add_permits(1);
        }
    }
}

/// A manifest `GET` by tag reads the revision link and the bytes at once; by digest the link
/// comes first, so a layer's digest asked for as a manifest is never read.
#[tokio::test]
async fn a_manifest_by_tag_reads_link_and_bytes_at_once_by_digest_link_first() {
    use crate::storage::memory::hooked::Hooked;
    use std::sync::atomic::Ordering;
    let driver = Arc::new(Hooked::new(RevisionWaitsForBody {
        armed: Default::default(),
        go: tokio::sync::Semaphore::new(0),
        reads: Default::default(),
    }));
    let layer = b"a layer, not a manifest";
    let md = push_image(&registry(driver.clone(), "s"), "t", layer).await;
    // The push's own reads left permits: none may let the GET's link look through.
    driver.hooks.go.forget_permits(usize::MAX >> 4);
    driver.hooks.armed.store(true, Ordering::SeqCst);
    let fresh = registry(driver.clone(), "s");
    let tag = Reference::Tag("t".parse().unwrap());
    let m = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        fresh.get_manifest(&name(), &tag),
    )
    .await
    .expect("the revision link was read before the bytes")
    .unwrap();
    assert_eq!(m.digest, md);
    driver.hooks.armed.store(false, Ordering::SeqCst);
    driver.hooks.reads.lock().unwrap().clear();
    let ld = Digest::sha256_of(layer);
    assert!(matches!(
        fresh
            .get_manifest(&name(), &Reference::Digest(ld.clone()))
            .await,
        Err(RegistryError::ManifestUnknown(_))
    ));
    let reads = driver.hooks.reads.lock().unwrap().clone();
    assert!(
        reads.is_empty(),
        "read by digest before the link: {reads:?}"
    );
}

/// A manifest's references are checked several at once; the one reported missing is the first
/// missing in the manifest's order, and a blob only in another repository counts as missing.
#[tokio::test]
async fn a_manifest_names_its_first_missing_reference() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let r = registry(driver, "s");
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = Digest::sha256_of(config);
    r.put_blob(&name(), &cd, body(config)).await.unwrap();
    let layers: Vec<Vec<u8>> = (0..12).map(|i| format!("layer {i}").into_bytes()).collect();
    // Layers 0-4 and 6-8 are in the repository; 5 only in another one; 9-11 nowhere.
    let other: RepositoryName = "ns/other".parse().unwrap();
    for (i, l) in layers.iter().enumerate() {
        let repo = match i {
            5 => &other,
            9.. => continue,
            _ => &name(),
        };
        r.put_blob(repo, &Digest::sha256_of(l), body(l))
            .await
            .unwrap();
    }
    let manifest = |upto: usize| {
        let refs: Vec<String> = layers[..upto]
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                    Digest::sha256_of(l),
                    l.len()
                )
            })
            .collect();
        Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            refs.join(",")
        ))
    };
    let put = |m: Bytes| {
        let r = r.clone();
        async move {
            r.put_manifest(
                &name(),
                &Reference::Tag("t".parse().unwrap()),
                Some("application/vnd.oci.image.manifest.v1+json"),
                m,
            )
            .await
        }
    };
    match put(manifest(12)).await {
        Err(RegistryError::ManifestBlobUnknown(d)) => {
            assert_eq!(d, Digest::sha256_of(&layers[5]))
        }
        other => panic!("expected MANIFEST_BLOB_UNKNOWN for layer 5, got {other:?}"),
    }
    match put(Bytes::from(
        String::from_utf8(manifest(12).to_vec()).unwrap().replacen(
            &Digest::sha256_of(&layers[5]).to_string(),
            &cd.to_string(),
            1,
        ),
    ))
    .await
    {
        Err(RegistryError::ManifestBlobUnknown(d)) => {
            assert_eq!(d, Digest::sha256_of(&layers[9]))
        }
        other => panic!("expected MANIFEST_BLOB_UNKNOWN for layer 9, got {other:?}"),
    }
    put(manifest(5)).await.unwrap();
}

fn with_link_ttl(driver: Arc<dyn StorageDriver>, ttl: std::time::Duration) -> Registry {
    Registry::new(
        driver,
        RegistryOptions {
            link_cache_ttl: ttl,
            ..RegistryOptions::new(UploadSecret::new("s"))
        },
    )
}

async fn tag_digest(r: &Registry, tag: &str) -> Option<Digest> {
    match r
        .get_manifest(&name(), &Reference::Tag(tag.parse().unwrap()))
        .await
    {
        Ok(m) => Some(m.digest),
        Err(RegistryError::ManifestUnknown(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn own_writes_are_seen_at_once_through_the_link_cache() {
    let r = with_link_ttl(
        Arc::new(MemoryDriver::new()),
        std::time::Duration::from_secs(3600),
    );
    let one = push_image(&r, "t", b"layer one").await;
    assert_eq!(tag_digest(&r, "t").await, Some(one.clone())); // now cached
    let two = push_image(&r, "t", b"layer two").await;
    assert_eq!(tag_digest(&r, "t").await, Some(two.clone()), "tag moved");

    r.delete_manifest(&name(), &Reference::Tag("t".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(tag_digest(&r, "t").await, None, "tag deleted");

    // By digest: cached, then deleted.
    let by_digest = Reference::Digest(one.clone());
    r.get_manifest(&name(), &by_digest).await.unwrap();
    r.delete_manifest(&name(), &by_digest).await.unwrap();
    assert!(matches!(
        r.get_manifest(&name(), &by_digest).await,
        Err(RegistryError::ManifestUnknown(_))
    ));

    // A layer link: cached by a stat, then deleted.
    let ld = Digest::sha256_of(b"layer two");
    r.stat_blob(&name(), &ld).await.unwrap();
    r.delete_blob(&name(), &ld).await.unwrap();
    assert!(matches!(
        r.stat_blob(&name(), &ld).await,
        Err(RegistryError::BlobUnknown(_))
    ));
}

#[tokio::test]
async fn another_replica_sees_new_things_at_once_and_moves_within_the_ttl() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let ttl = std::time::Duration::from_millis(300);
    let writer = with_link_ttl(driver.clone(), ttl);
    let reader = with_link_ttl(driver.clone(), ttl);
    let uncached = with_link_ttl(driver.clone(), std::time::Duration::ZERO);
    let long = with_link_ttl(driver.clone(), std::time::Duration::from_secs(3600));

    // Nothing negative is cached: a tag pushed elsewhere is there at once.
    assert_eq!(tag_digest(&reader, "t").await, None);
    let one = push_image(&writer, "t", b"one").await;
    assert_eq!(tag_digest(&reader, "t").await, Some(one.clone()));
    assert_eq!(tag_digest(&long, "t").await, Some(one.clone()));

    // Moved by the other replica: the reader may serve the old answer for at most the TTL.
    let two = push_image(&writer, "t", b"two").await;
    assert_eq!(tag_digest(&uncached, "t").await, Some(two.clone()));
    let stale = tag_digest(&reader, "t").await;
    assert!(stale == Some(one.clone()) || stale == Some(two.clone()));
    // (the cache is real: with an hour's TTL the other replica's move is not seen yet)
    assert_eq!(tag_digest(&long, "t").await, Some(one));
    tokio::time::sleep(ttl + std::time::Duration::from_millis(50)).await;
    assert_eq!(tag_digest(&reader, "t").await, Some(two));

    // Deleted by the other replica: gone within the TTL.
    writer
        .delete_manifest(&name(), &Reference::Tag("t".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(tag_digest(&uncached, "t").await, None);
    tokio::time::sleep(ttl + std::time::Duration::from_millis(50)).await;
    assert_eq!(tag_digest(&reader, "t").await, None);
}

#[test]
fn storage_faults_are_sorted_by_errno() {
    use crate::storage::{FaultKind, StorageError};
    // Linux errno values: ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO.
    for (code, kind) in [
        (28, FaultKind::Full),
        (122, FaultKind::Full),
        (30, FaultKind::ReadOnly),
        (13, FaultKind::Denied),
        (1, FaultKind::Denied),
        (5, FaultKind::Io),
    ] {
        let e = StorageError::io("/x", std::io::Error::from_raw_os_error(code));
        assert_eq!(e.kind(), kind, "errno {code}");
        let r = RegistryError::from(e);
        match kind {
            FaultKind::Full => assert!(matches!(r, RegistryError::StorageFull(_))),
            FaultKind::ReadOnly => assert!(matches!(r, RegistryError::StorageReadOnly(_))),
            FaultKind::Denied => assert!(matches!(r, RegistryError::StorageDenied(_))),
            _ => assert!(matches!(r, RegistryError::StorageFailed(_))),
        }
    }
}

/// Counts the driver calls by operation.
#[derive(Default)]
struct Calls(std::sync::Mutex<std::collections::BTreeMap<&'static str, usize>>);

impl crate::storage::instrumented::StorageObserver for Calls {
    fn observe(
        &self,
        op: &'static str,
        _: std::time::Duration,
        _: Option<&crate::storage::StorageError>,
    ) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_default() += 1;
        }
    }
}

impl Calls {
    fn take(&self, op: &str) -> usize {
        self.0
            .lock()
            .map(|mut m| m.remove(op).unwrap_or(0))
            .unwrap_or(0)
    }
    fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

/// A delete by digest removes every tag at the digest (also one written without an index entry,
/// as another tool may), keeps the others, and reads only the current links of the tags whose
/// index names the digest (or that have no index) instead of every tag's.
#[tokio::test]
async fn delete_by_digest_reads_only_the_tags_that_may_point_at_it() {
    let calls = Arc::new(Calls::default());
    let driver = crate::storage::instrumented::Instrumented::wrap(
        Arc::new(MemoryDriver::new()),
        calls.clone(),
    );
    let r = registry(driver.clone(), "s");
    let gone = push_image(&r, "a", b"layer one").await;
    push_image(&r, "b", b"layer one").await;
    for i in 0..50 {
        push_image(&r, &format!("other{i}"), b"layer two").await;
    }
    // A tag at `gone` without an index entry.
    driver
        .put_content(
            &layout::tag_current_link(&name(), &"bare".parse().unwrap()),
            Bytes::from(gone.to_string()),
        )
        .await
        .unwrap();
    calls.clear();
    r.delete_manifest(&name(), &Reference::Digest(gone.clone()))
        .await
        .unwrap();
    assert_eq!(calls.take("walk"), 1);
    assert_eq!(
        calls.take("get_content"),
        1 + 3,
        "manifest + the tags a, b, bare"
    );
    let left = r.list_tags(&name()).await.unwrap();
    assert_eq!(left.len(), 50);
    assert!(left.iter().all(|t| t.starts_with("other")));
}

/// A fresh bucket on the S3 emulator at `IMAGE_REGISTRY_S3_ENDPOINT` (moto; set by
/// `tests/e2e/storage-emulators.sh`) named `<prefix>-<random>`: a backend on it (`part`
/// overrides the part size). None when the variable is unset, which fails under
/// `IMAGE_REGISTRY_STORAGE_E2E=1`.
async fn moto_bucket(prefix: &str, part: Option<usize>) -> Option<crate::storage::s3::S3Backend> {
    let Some(ep) = std::env::var("IMAGE_REGISTRY_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        assert_ne!(
            std::env::var("IMAGE_REGISTRY_STORAGE_E2E").as_deref(),
            Ok("1"),
            "IMAGE_REGISTRY_S3_ENDPOINT must be set with IMAGE_REGISTRY_STORAGE_E2E=1"
        );
        eprintln!("skipped: IMAGE_REGISTRY_S3_ENDPOINT is not set");
        return None;
    };
    let bucket = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let cfg = crate::config::S3Config {
        bucket: Some(bucket.clone()),
        region: Some("us-east-1".into()),
        regionendpoint: Some(ep),
        accesskey: Some("test".into()),
        secretkey: Some("test".into()),
        ..Default::default()
    };
    let mut b = crate::storage::s3::S3Backend::new(&cfg).unwrap();
    if let Some(part) = part {
        b = b.with_part_size(part);
    }
    b.client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    Some(b)
}

/// The direct write (digest known before the bytes) on S3 (moto, when
/// `IMAGE_REGISTRY_S3_ENDPOINT` is set; `tests/e2e/storage-emulators.sh` sets it): `POST ?digest=`
/// and `PUT ?digest=` with the body after a `POST` land at the blob's key with no staging copy;
/// a mismatch or a body that breaks off leaves nothing visible and no multipart upload open; a
/// re-push of a present blob keeps it; a chunked upload still takes the staged path.
#[tokio::test]
async fn direct_writes_on_s3() {
    let Some(b) = moto_bucket("direct", Some(5 << 20)).await else {
        return;
    };
    let calls = Arc::new(WriteCalls::default());
    let driver = crate::storage::instrumented::Instrumented::wrap(
        Arc::new(crate::storage::object::ObjectDriver::new(
            Arc::new(b),
            "/",
            false,
        )),
        calls.clone(),
    );
    let r = registry(driver.clone(), "s");
    let open = || async {
        driver
            .abort_stale_writes(&layout::blobs_root(), std::time::Duration::ZERO)
            .await
            .unwrap()
    };

    // POST ?digest=, several parts.
    let data: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    assert_eq!(
        r.put_blob(&name(), &d, body(&data)).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(
        calls.take(),
        ["direct_writer", "writer.write", "writer.commit"]
    );
    assert!(read_blob(&r, &d).await == data);
    r.stat_blob(&name(), &d).await.unwrap();
    let uploads = layout::repositories_root();
    assert!(
        driver
            .walk(&uploads)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.path.contains("_uploads")),
        "no upload session"
    );
    // Again, into another repository: the blob stays, the new repository links it.
    let other: RepositoryName = "ns/other".parse().unwrap();
    r.put_blob(&other, &d, body(&data)).await.unwrap();
    r.stat_blob(&other, &d).await.unwrap();
    assert!(read_blob(&r, &d).await == data);

    // Mismatch: nothing visible, nothing open.
    let claimed = Digest::sha256_of(b"claimed");
    let err = r.put_blob(&name(), &claimed, body(&data)).await;
    assert!(matches!(err, Err(RegistryError::DigestInvalid(_))));
    assert!(r.stat_global_blob(&claimed).await.unwrap().is_none());
    // A body that breaks off after a few parts.
    let mut chunks: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from(data.clone()))];
    chunks.push(Err(std::io::Error::other("connection reset")));
    let broken: ByteStream = Box::pin(futures::stream::iter(chunks));
    assert!(r.put_blob(&name(), &claimed, broken).await.is_err());
    assert!(r.stat_global_blob(&claimed).await.unwrap().is_none());
    assert_eq!(
        open().await,
        0,
        "every failed direct write aborted its upload"
    );

    // PUT ?digest= with the body after a POST: direct too; the session folder goes.
    let small = b"a small blob in one PUT".to_vec();
    let ds = Digest::sha256_of(&small);
    let mut s = r.start_upload(&name()).await.unwrap();
    calls.take();
    r.complete_upload(&mut s, &ds, None, Some(body(&small)))
        .await
        .unwrap();
    assert_eq!(
        calls.take(),
        ["direct_writer", "writer.write", "writer.commit"]
    );
    assert_eq!(read_blob(&r, &ds).await, small);
    assert!(matches!(
        r.resume_upload(&name(), &s.uuid, None).await,
        Err(RegistryError::BlobUploadUnknown)
    ));

    // Chunked (PATCH, then PUT with the rest): the staged path, same result.
    let mut s = r.start_upload(&name()).await.unwrap();
    let dc = Digest::sha256_of(&data[..6 << 20]);
    r.append_upload(&mut s, Some(0), body(&data[..3 << 20]))
        .await
        .unwrap();
    r.complete_upload(
        &mut s,
        &dc,
        Some(3 << 20),
        Some(body(&data[3 << 20..6 << 20])),
    )
    .await
    .unwrap();
    assert!(read_blob(&r, &dc).await == data[..6 << 20]);
    assert!(calls.take().contains(&"rename"), "staged, then renamed");
    assert_eq!(open().await, 0);
}

/// The writer calls a driver saw (`writer.*`, `direct_writer`, `rename`), in order, deduplicated
/// where repeated.
#[derive(Default)]
struct WriteCalls(std::sync::Mutex<Vec<&'static str>>);

impl WriteCalls {
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl crate::storage::instrumented::StorageObserver for WriteCalls {
    fn observe(
        &self,
        op: &'static str,
        _: std::time::Duration,
        _: Option<&crate::storage::StorageError>,
    ) {
        if !(op.starts_with("writer") || op == "direct_writer" || op == "rename") {
            return;
        }
        let mut v = self.0.lock().unwrap();
        if v.last() != Some(&op) {
            v.push(op);
        }
    }
}

/// The blob `HEAD` of a push (`stat_blob_for_push`) costs two file stats when the link is cached
/// (the data, the tombstone) and four when not (both links): no folder `stat`, no listing; a
/// tombstoned blob is absent, and so is an unknown one.
#[tokio::test]
async fn blob_head_for_push_stats_two_files() {
    let calls = Arc::new(Calls::default());
    let driver = crate::storage::instrumented::Instrumented::wrap(
        Arc::new(MemoryDriver::new()),
        calls.clone(),
    );
    let r = registry(driver.clone(), "s");
    let layer = b"a layer pushed once";
    push_image(&r, "t", layer).await;
    let d = Digest::sha256_of(layer);
    let fresh = registry(driver.clone(), "s");
    for (reg, files) in [(&fresh, 4), (&fresh, 2)] {
        calls.clear();
        assert_eq!(
            reg.stat_blob_for_push(&name(), &d).await.unwrap(),
            layer.len() as u64
        );
        assert_eq!(
            (
                calls.take("stat_file"),
                calls.take("stat"),
                calls.take("list")
            ),
            (files, 0, 0),
            "links (uncached), data, tombstone"
        );
    }
    driver
        .put_content(&layout::blob_tombstone(&d), Bytes::new())
        .await
        .unwrap();
    calls.clear();
    assert!(matches!(
        fresh.stat_blob_for_push(&name(), &d).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    assert_eq!((calls.take("stat_file"), calls.take("stat")), (2, 0));
    let unknown = Digest::sha256_of(b"never pushed");
    assert!(matches!(
        fresh.stat_blob_for_push(&name(), &unknown).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    assert_eq!(
        (calls.take("stat_file"), calls.take("stat")),
        (4, 0),
        "the layer link, the manifest revision link, data, tombstone (at once)"
    );
}

/// Holds every look at a layer link until a look at a blob's data has begun: a blob stat that
/// reads the link first, then the size, never finishes.
struct LinkWaitsForData(tokio::sync::Semaphore);

#[async_trait::async_trait]
impl crate::storage::memory::hooked::Hooks for LinkWaitsForData {
    async fn before(&self, _: &MemoryDriver, op: &'static str, paths: &[String]) {
        let Some(p) = paths.first().filter(|_| op == "stat") else {
            return;
        };
        if p.contains("/_layers/") && p.ends_with("/link") {
            let _ = self.0.acquire().await.map(|p| p.forget());
        } else if p.contains("/blobs/sha256/") && p.ends_with("/data") {
            self.0.add_permits(1);
        }
    }
}

/// A blob `GET`/`HEAD` whose link and size are not cached reads both at once, and so does the
/// `HEAD` of a push (with the tombstone): one round trip on an object store, not two.
#[tokio::test]
async fn a_blob_stat_reads_its_link_and_its_size_at_once() {
    use crate::storage::memory::hooked::Hooked;
    let driver = Arc::new(Hooked::new(LinkWaitsForData(tokio::sync::Semaphore::new(
        0,
    ))));
    let layer = b"a layer looked at twice";
    let d = Digest::sha256_of(layer);
    {
        // Pushed with the hook open (the push's own looks need not be in any order).
        driver.hooks.0.add_permits(1000);
        push_image(&registry(driver.clone(), "s"), "t", layer).await;
        let left = driver.hooks.0.available_permits();
        driver.hooks.0.forget_permits(left);
    }
    let limit = std::time::Duration::from_secs(10);
    let r = registry(driver.clone(), "s");
    let size = tokio::time::timeout(limit, r.stat_blob(&name(), &d))
        .await
        .expect("the link was read before the size");
    assert_eq!(size.unwrap(), layer.len() as u64);
    let r = registry(driver.clone(), "s");
    let size = tokio::time::timeout(limit, r.stat_blob_for_push(&name(), &d))
        .await
        .expect("the links were read before the data");
    assert_eq!(size.unwrap(), layer.len() as u64);
}

/// The object driver on a fresh [`moto_bucket`], its requests to the store counted.
async fn counted_moto_driver(
    prefix: &str,
) -> Option<(
    Arc<dyn StorageDriver>,
    Arc<crate::storage::counting::Counts>,
)> {
    let b = moto_bucket(prefix, None).await?;
    let (backend, counts) = crate::storage::counting::Counting::wrap(Arc::new(b));
    let driver = crate::storage::object::ObjectDriver::new(backend, "/", false);
    Some((Arc::new(driver), counts))
}

/// On S3 (moto, when `IMAGE_REGISTRY_S3_ENDPOINT` is set): the `PUT` that completes an upload
/// without a body (docker, containerd and podman end every blob so) neither reads back nor
/// rewrites the data its `PATCH` left, counted in requests to the store.
#[tokio::test]
async fn completing_an_upload_without_a_body_on_s3_does_not_rewrite_its_data() {
    let Some((driver, counts)) = counted_moto_driver("complete").await else {
        return;
    };
    let r = registry(driver.clone(), "s");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let digest = Digest::sha256_of(&data);
    let mut s = r.start_upload(&name()).await.unwrap();
    r.append_upload(&mut s, None, body(&data)).await.unwrap();
    let token = r.upload_state_token(&s);
    counts.take();
    let mut s = r
        .resume_upload_for_write(&name(), &s.uuid, Some(&token))
        .await
        .unwrap();
    r.complete_upload(&mut s, &digest, None, None)
        .await
        .unwrap();
    let done = counts.take();
    eprintln!("PUT without a body on S3: {done:?}");
    // Three small reads (the start time, the hash state, the repository's link); the data is
    // not read back (before: 4).
    assert_eq!(done.get("get"), Some(&3), "{done:?}");
    // The data moves into place server-side: no PUT of its bytes, only the link's (before: 2).
    assert_eq!(done.get("put"), Some(&1), "{done:?}");
    assert_eq!(read_blob(&r, &digest).await, data);
}

/// The same on S3 (moto, when `IMAGE_REGISTRY_S3_ENDPOINT` is set), counted in requests to the
/// store: a blob `HEAD` is one `HEAD` per file (both links when uncached, data, tombstone) and no
/// listing, whether the tombstone is there or not, and an old blob's `lastused` check is one more.
#[tokio::test]
async fn blob_head_for_push_on_s3_is_heads_only() {
    let Some((driver, counts)) = counted_moto_driver("head").await else {
        return;
    };
    let r = registry(driver.clone(), "s");
    let layer = b"a layer on s3";
    push_image(&r, "t", layer).await;
    let d = Digest::sha256_of(layer);
    let head = |reg: &Registry| {
        let reg = reg.clone();
        let d = d.clone();
        async move { reg.stat_blob_for_push(&name(), &d).await }
    };
    let fresh = registry(driver.clone(), "s");
    counts.take();
    assert_eq!(head(&fresh).await.unwrap(), layer.len() as u64);
    let first = counts.take();
    assert_eq!(head(&fresh).await.unwrap(), layer.len() as u64);
    let cached = counts.take();
    eprintln!("blob HEAD on S3: uncached link {first:?}, cached link {cached:?}");
    assert_eq!(first.into_iter().collect::<Vec<_>>(), [("head", 4)]);
    assert_eq!(cached.into_iter().collect::<Vec<_>>(), [("head", 2)]);
    driver
        .put_content(&layout::blob_tombstone(&d), Bytes::new())
        .await
        .unwrap();
    counts.take();
    assert!(matches!(
        head(&fresh).await,
        Err(RegistryError::BlobUnknown(_))
    ));
    let tombstoned = counts.take();
    eprintln!("blob HEAD on S3, tombstoned: {tombstoned:?}");
    assert_eq!(tombstoned.into_iter().collect::<Vec<_>>(), [("head", 2)]);
    // An old blob (refresh_after zero-free: every blob is old): its `lastused` is checked, and
    // written when missing.
    driver
        .delete_files(&[layout::blob_tombstone(&d)])
        .await
        .unwrap();
    let old = Registry::new(
        driver.clone(),
        RegistryOptions {
            refresh_after: std::time::Duration::from_nanos(1),
            ..RegistryOptions::new(UploadSecret::new("s"))
        },
    );
    counts.take();
    assert_eq!(head(&old).await.unwrap(), layer.len() as u64);
    let refreshed = counts.take();
    eprintln!("blob HEAD on S3, old blob without lastused: {refreshed:?}");
    assert_eq!(
        refreshed.into_iter().collect::<Vec<_>>(),
        [("head", 5), ("put", 1)]
    );
}

/// The storage calls of a chunked push on S3 (moto, when `IMAGE_REGISTRY_S3_ENDPOINT` is set),
/// counted at the backend: each `PATCH` of less than two parts costs one listing (the segment
/// chain), one `HEAD` (a whole object at the data's key), two `GET`s (the start time, the hash
/// state at the offset) and two `PUT`s (its segment in one piece, the hash state), no multipart
/// upload and no `stat` of the data; a larger one streams as a multipart upload; the commit is
/// one compose of the segments and at most 19 other calls (as measured, so a regression fails). The blob reads back whole,
/// and the upload continues on another instance (no state in process memory).
#[tokio::test]
async fn chunked_push_on_s3_costs_few_storage_calls() {
    let Some(b) = moto_bucket("chunked", Some(5 << 20)).await else {
        return;
    };
    let (counting, counts) = crate::storage::counting::Counting::wrap(Arc::new(b));
    // Calls by kind, the listings of every form counted as one kind.
    let take = || {
        let mut m = std::collections::BTreeMap::<&'static str, u32>::new();
        for (k, n) in counts.take() {
            let k = match k {
                "list_dir" | "list_window" | "list_all" => "list",
                "delete_many" => "delete",
                k => k,
            };
            *m.entry(k).or_default() += n as u32;
        }
        m
    };
    let driver = || -> Arc<dyn StorageDriver> {
        Arc::new(crate::storage::object::ObjectDriver::new(
            counting.clone(),
            "/",
            false,
        ))
    };
    let (r1, r2) = (registry(driver(), "s"), registry(driver(), "s"));
    // 4 chunks of 6 MiB (one part and a bit: held, then one put each), one of 12 MiB (more than
    // two parts: a multipart upload), on alternating instances.
    let chunk = 6usize << 20;
    let data: Vec<u8> = (0..(chunk * 6) as u32).map(|i| (i % 253) as u8).collect();
    let d = Digest::sha256_of(&data);
    let s = r1.start_upload(&name()).await.unwrap();
    let token = r1.upload_state_token(&s);
    take();
    let mut at = 0;
    for (i, len) in [chunk, chunk, chunk, 2 * chunk, chunk]
        .into_iter()
        .enumerate()
    {
        let r = if i % 2 == 0 { &r1 } else { &r2 };
        let mut s = r
            .resume_upload_for_write(&name(), &s.uuid, Some(&token))
            .await
            .unwrap();
        let end = r
            .append_upload(&mut s, Some(at as u64), body(&data[at..at + len]))
            .await
            .unwrap();
        at += len;
        assert_eq!(end, at as u64);
        let calls = take();
        let n = |c: &str| calls.get(c).copied().unwrap_or(0);
        assert_eq!(n("list"), 1, "PATCH {i}: the segment chain only: {calls:?}");
        assert_eq!(n("head"), 1, "PATCH {i}: {calls:?}");
        assert_eq!(
            n("get"),
            1 + u32::from(i > 0),
            "PATCH {i}: start time, hash state: {calls:?}"
        );
        let (puts, parts) = if len == 2 * chunk { (1, 1) } else { (2, 0) };
        assert_eq!(n("put"), puts, "PATCH {i}: segment, hash state: {calls:?}");
        assert_eq!(n("start_parts"), parts, "PATCH {i}: {calls:?}");
        assert_eq!(
            calls.values().sum::<u32>(),
            n("list") + n("head") + n("get") + n("put") + n("start_parts"),
            "{calls:?}"
        );
    }
    let mut s = r2
        .resume_upload_for_write(&name(), &s.uuid, Some(&token))
        .await
        .unwrap();
    r2.complete_upload(&mut s, &d, None, None).await.unwrap();
    let calls = take();
    assert_eq!(calls.get("compose"), Some(&1), "{calls:?}");
    // Measured: 7 listings (the chain, twice the blob's absence, the link, the upload folder),
    // 5 HEADs, 3 GETs, 1 compose, 3 deletes (tombstone, segments, upload folder), 1 PUT (link).
    assert!(
        calls.get("list").copied().unwrap_or(0) <= 7,
        "commit: {calls:?}"
    );
    assert!(calls.values().sum::<u32>() <= 20, "commit: {calls:?}");
    assert!(read_blob(&r1, &d).await == data);
}
