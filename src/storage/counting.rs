//! Test support: an [`ObjectBackend`] decorator that counts the requests a driver makes of the
//! store by kind (`head`, `list_dir`, `list_window`, `list_all`, `get`, `put`, ...), so tests can
//! bound what an operation costs on an object store. Behaviour is the wrapped backend's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::object::{Listing, ObjMeta, ObjectBackend, PartSink};
use super::{ByteStream, Result};

/// The counting decorator; [`Counts`] is shared with the test.
pub struct Counting {
    inner: Arc<dyn ObjectBackend>,
    counts: Arc<Counts>,
}

/// Requests by kind.
#[derive(Default)]
pub struct Counts(Mutex<BTreeMap<&'static str, usize>>);

impl Counts {
    fn add(&self, kind: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }

    /// The counts since the last `take`, and a fresh start.
    pub fn take(&self) -> BTreeMap<&'static str, usize> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

impl Counting {
    pub fn wrap(inner: Arc<dyn ObjectBackend>) -> (Arc<Counting>, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        (
            Arc::new(Counting {
                inner,
                counts: counts.clone(),
            }),
            counts,
        )
    }
}

#[async_trait]
impl ObjectBackend for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn part_size(&self) -> usize {
        self.inner.part_size()
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.counts.add("put");
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        self.counts.add("get");
        self.inner.get(key, offset, len).await
    }
    async fn head(&self, key: &str) -> Result<ObjMeta> {
        self.counts.add("head");
        self.inner.head(key).await
    }
    async fn list_dir(&self, prefix: &str) -> Result<Listing> {
        self.counts.add("list_dir");
        self.inner.list_dir(prefix).await
    }
    async fn list_window(
        &self,
        prefix: &str,
        delimiter: &str,
        start_after: Option<&str>,
        want: usize,
    ) -> Result<Option<(Listing, bool)>> {
        self.counts.add("list_window");
        self.inner
            .list_window(prefix, delimiter, start_after, want)
            .await
    }
    async fn list_all(&self, prefix: &str) -> Result<Vec<(String, ObjMeta)>> {
        self.counts.add("list_all");
        self.inner.list_all(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.counts.add("delete");
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: Vec<String>) -> Result<()> {
        self.counts.add("delete_many");
        self.inner.delete_many(keys).await
    }
    async fn compose(&self, to: &str, sources: &[(String, u64)]) -> Result<()> {
        self.counts.add("compose");
        self.inner.compose(to, sources).await
    }
    async fn start_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        self.counts.add("start_parts");
        self.inner.start_parts(key).await
    }
    async fn start_direct_parts(&self, key: &str) -> Result<Box<dyn PartSink>> {
        self.counts.add("start_parts");
        self.inner.start_direct_parts(key).await
    }
    fn appends(&self) -> bool {
        self.inner.appends()
    }
    async fn start_append(&self, key: &str, size: u64) -> Result<Option<Box<dyn PartSink>>> {
        self.counts.add("start_append");
        self.inner.start_append(key, size).await
    }
    fn isolated_parts(&self) -> bool {
        self.inner.isolated_parts()
    }
    async fn abort_stale_parts(&self, prefix: &str, older_than: Duration) -> Result<u64> {
        self.counts.add("abort_stale_parts");
        self.inner.abort_stale_parts(prefix, older_than).await
    }
    async fn abort_segment_writes(
        &self,
        prefix: &str,
        listed: &[String],
        open: &[String],
    ) -> Result<u64> {
        self.counts.add("abort_segment_writes");
        self.inner.abort_segment_writes(prefix, listed, open).await
    }
    async fn presign_get(&self, key: &str, expires: Duration) -> Result<Option<String>> {
        self.inner.presign_get(key, expires).await
    }
    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }
}
