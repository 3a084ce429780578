//! The one driver test suite: every backend runs the same checks of the contract in `storage/mod.rs`.

use bytes::Bytes;
use futures::TryStreamExt;

use super::{StorageDriver, StorageError};

async fn read_all(d: &dyn StorageDriver, path: &str, offset: u64, len: Option<u64>) -> Vec<u8> {
    let s = d.read(path, offset, len).await.unwrap();
    let chunks: Vec<Bytes> = s.try_collect().await.unwrap();
    chunks.concat()
}

/// Runs every check against `d`, which must be empty.
pub async fn run_all(d: &dyn StorageDriver) {
    content_round_trip(d).await;
    not_found(d).await;
    ranged_reads(d).await;
    writer_append_and_resume(d).await;
    listing(d).await;
    rename_replaces(d).await;
    delete_tree(d).await;
    invalid_paths(d).await;
}

async fn content_round_trip(d: &dyn StorageDriver) {
    d.put_content("/a/b/c", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(&d.get_content("/a/b/c").await.unwrap()[..], b"one");
    d.put_content("/a/b/c", Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(&d.get_content("/a/b/c").await.unwrap()[..], b"second");
    let st = d.stat("/a/b/c").await.unwrap();
    assert_eq!(st.size, 6);
    assert!(!st.is_dir);
    assert!(d.stat("/a/b").await.unwrap().is_dir);
    d.put_content("/a/empty", Bytes::new()).await.unwrap();
    assert_eq!(d.stat("/a/empty").await.unwrap().size, 0);
    d.delete("/a").await.unwrap();
}

async fn not_found(d: &dyn StorageDriver) {
    assert!(d.get_content("/nope").await.unwrap_err().is_not_found());
    assert!(d.stat("/nope/x").await.unwrap_err().is_not_found());
    assert!(d.read("/nope", 0, None).await.err().unwrap().is_not_found());
    assert!(d.list("/nope").await.unwrap_err().is_not_found());
    assert!(d.rename("/nope", "/x").await.unwrap_err().is_not_found());
    assert!(d.delete("/nope").await.unwrap_err().is_not_found());
}

async fn ranged_reads(d: &dyn StorageDriver) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    d.put_content("/r/data", Bytes::from(data.clone()))
        .await
        .unwrap();
    assert_eq!(read_all(d, "/r/data", 0, None).await, data);
    assert_eq!(read_all(d, "/r/data", 10, Some(5)).await, &data[10..15]);
    assert_eq!(
        read_all(d, "/r/data", 2_999_990, None).await,
        &data[2_999_990..]
    );
    assert_eq!(
        read_all(d, "/r/data", 1_000_000, Some(1_500_000)).await,
        &data[1_000_000..2_500_000]
    );
    d.delete("/r").await.unwrap();
}

async fn writer_append_and_resume(d: &dyn StorageDriver) {
    let mut w = d.writer("/w/data", false).await.unwrap();
    assert_eq!(w.size(), 0);
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    w.write(Bytes::from(vec![b'x'; 2 << 20])).await.unwrap();
    assert_eq!(w.size(), 6 + (2 << 20));
    w.close().await.unwrap();
    assert_eq!(d.stat("/w/data").await.unwrap().size, 6 + (2 << 20));
    // A second writer (as another process would) continues the file.
    let mut w = d.writer("/w/data", true).await.unwrap();
    assert_eq!(w.size(), 6 + (2 << 20));
    w.write(Bytes::from_static(b"world")).await.unwrap();
    w.commit().await.unwrap();
    let all = read_all(d, "/w/data", 0, None).await;
    assert_eq!(all.len(), 11 + (2 << 20));
    assert!(all.starts_with(b"hello x"));
    assert!(all.ends_with(b"xworld"));
    // A cancelled writer leaves what earlier writers persisted.
    let mut w = d.writer("/w/data", true).await.unwrap();
    w.write(Bytes::from_static(b"discard me")).await.unwrap();
    w.cancel().await.unwrap();
    assert_eq!(d.stat("/w/data").await.unwrap().size, 11 + (2 << 20));
    // Truncating writer starts over.
    let mut w = d.writer("/w/data", false).await.unwrap();
    w.write(Bytes::from_static(b"new")).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/w/data", 0, None).await, b"new");
    d.delete("/w").await.unwrap();
}

async fn listing(d: &dyn StorageDriver) {
    for p in ["/l/a/1", "/l/a/2", "/l/b", "/l/c/d/e"] {
        d.put_content(p, Bytes::from_static(b"x")).await.unwrap();
    }
    let mut names = d.list("/l").await.unwrap();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    let mut names = d.list("/l/a").await.unwrap();
    names.sort();
    assert_eq!(names, ["1", "2"]);
    d.delete("/l").await.unwrap();
}

async fn rename_replaces(d: &dyn StorageDriver) {
    d.put_content("/m/src", Bytes::from_static(b"new"))
        .await
        .unwrap();
    d.put_content("/m/dst/file", Bytes::from_static(b"old"))
        .await
        .unwrap();
    d.rename("/m/src", "/m/dst/file").await.unwrap();
    assert_eq!(&d.get_content("/m/dst/file").await.unwrap()[..], b"new");
    assert!(d.stat("/m/src").await.unwrap_err().is_not_found());
    d.rename("/m/dst/file", "/m/other/deep/file").await.unwrap();
    assert_eq!(
        &d.get_content("/m/other/deep/file").await.unwrap()[..],
        b"new"
    );
    d.delete("/m").await.unwrap();
}

async fn delete_tree(d: &dyn StorageDriver) {
    d.put_content("/t/x/1", Bytes::from_static(b"1"))
        .await
        .unwrap();
    d.put_content("/t/x/y/2", Bytes::from_static(b"2"))
        .await
        .unwrap();
    d.put_content("/t/z", Bytes::from_static(b"3"))
        .await
        .unwrap();
    d.delete("/t/x").await.unwrap();
    assert!(d.stat("/t/x/y/2").await.unwrap_err().is_not_found());
    assert_eq!(&d.get_content("/t/z").await.unwrap()[..], b"3");
    d.delete("/t/z").await.unwrap();
}

async fn invalid_paths(d: &dyn StorageDriver) {
    for p in ["relative", "/a/../b", "/a//b", "/", "/a/./b", ""] {
        assert!(
            matches!(d.get_content(p).await, Err(StorageError::InvalidPath(_))),
            "{p}"
        );
    }
}

#[tokio::test]
async fn filesystem_driver() {
    let dir = tempfile::tempdir().unwrap();
    let d = super::fs::FsDriver::new(dir.path()).unwrap();
    run_all(&d).await;
}

#[tokio::test]
async fn memory_driver() {
    run_all(&super::memory::MemoryDriver::new()).await;
}
