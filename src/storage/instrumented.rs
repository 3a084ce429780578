//! A decorator that times every call of the driver it wraps and reports it to a
//! [`StorageObserver`] (the metrics), as distribution's `driver/base` and the OpenShift registry's
//! `wrapped/storagedriver.go` do. Behaviour is the wrapped driver's, unchanged: same results, same
//! errors, same streams.
//!
//! Operation names are the driver method names (`get_content`, `put_content`, `read`, `stat`,
//! `stat_file`, `list`, `list_page`, `list_layout_folders_page`, `walk`, `prune_empty_dirs`, `prune_empty_dirs_of`, `files_exist`, `put_empty_files_unsynced`, `abort_stale_writes`, `abort_unfinished`, `writer`, `unnamed_file`, `direct_writer`, `rename`, `delete`, `delete_files`, `rename_files`, `health`) and, for writers, `writer.write`,
//! `writer.close`, `writer.commit`, `writer.cancel`. `read` times opening the stream, not
//! draining it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    ByteStream, FileInfo, FileWriter, NamePage, Result, StorageDriver, StorageError, UnnamedFile,
    WalkEntry,
};

/// Receives one observation per driver call.
pub trait StorageObserver: Send + Sync + 'static {
    fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&StorageError>);
}

/// The instrumented driver.
pub struct Instrumented {
    inner: Arc<dyn StorageDriver>,
    observer: Arc<dyn StorageObserver>,
}

impl Instrumented {
    pub fn wrap(
        inner: Arc<dyn StorageDriver>,
        observer: Arc<dyn StorageObserver>,
    ) -> Arc<dyn StorageDriver> {
        Arc::new(Instrumented { inner, observer })
    }
}

fn record<T>(
    obs: &dyn StorageObserver,
    op: &'static str,
    start: Instant,
    r: Result<T>,
) -> Result<T> {
    obs.observe(op, start.elapsed(), r.as_ref().err());
    r
}

#[async_trait]
impl StorageDriver for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn writer_opens_without_writing(&self) -> bool {
        self.inner.writer_opens_without_writing()
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        let t = Instant::now();
        record(
            &*self.observer,
            "get_content",
            t,
            self.inner.get_content(path).await,
        )
    }

    async fn put_content(&self, path: &str, data: Bytes) -> Result<()> {
        let t = Instant::now();
        record(
            &*self.observer,
            "put_content",
            t,
            self.inner.put_content(path, data).await,
        )
    }

    async fn put_content_unsynced(&self, path: &str, data: Bytes) -> Result<()> {
        let t = Instant::now();
        record(
            &*self.observer,
            "put_content",
            t,
            self.inner.put_content_unsynced(path, data).await,
        )
    }

    async fn read(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let t = Instant::now();
        record(
            &*self.observer,
            "read",
            t,
            self.inner.read(path, offset, len).await,
        )
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let t = Instant::now();
        record(&*self.observer, "stat", t, self.inner.stat(path).await)
    }

    async fn stat_file(&self, path: &str) -> Result<FileInfo> {
        let t = Instant::now();
        record(
            &*self.observer,
            "stat_file",
            t,
            self.inner.stat_file(path).await,
        )
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let t = Instant::now();
        record(&*self.observer, "list", t, self.inner.list(path).await)
    }

    async fn list_page(&self, path: &str, after: Option<&str>, limit: usize) -> Result<NamePage> {
        let t = Instant::now();
        let r = self.inner.list_page(path, after, limit).await;
        record(&*self.observer, "list_page", t, r)
    }

    async fn list_layout_folders_page(
        &self,
        path: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<NamePage>> {
        let t = Instant::now();
        let r = self
            .inner
            .list_layout_folders_page(path, after, limit)
            .await;
        record(&*self.observer, "list_layout_folders_page", t, r)
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        let t = Instant::now();
        let w = record(
            &*self.observer,
            "writer",
            t,
            self.inner.writer(path, append).await,
        )?;
        Ok(Box::new(InstrumentedWriter {
            inner: w,
            observer: self.observer.clone(),
        }))
    }

    async fn unnamed_file(&self, path: &str) -> Result<Option<UnnamedFile>> {
        let t = Instant::now();
        record(
            &*self.observer,
            "unnamed_file",
            t,
            self.inner.unnamed_file(path).await,
        )
    }

    async fn direct_writer(&self, path: &str) -> Result<Option<Box<dyn FileWriter>>> {
        let t = Instant::now();
        let w = record(
            &*self.observer,
            "direct_writer",
            t,
            self.inner.direct_writer(path).await,
        )?;
        Ok(w.map(|inner| {
            Box::new(InstrumentedWriter {
                inner,
                observer: self.observer.clone(),
            }) as Box<dyn FileWriter>
        }))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let t = Instant::now();
        record(
            &*self.observer,
            "rename",
            t,
            self.inner.rename(from, to).await,
        )
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let t = Instant::now();
        record(&*self.observer, "delete", t, self.inner.delete(path).await)
    }

    async fn delete_files(&self, paths: &[String]) -> Result<()> {
        let t = Instant::now();
        record(
            &*self.observer,
            "delete_files",
            t,
            self.inner.delete_files(paths).await,
        )
    }

    async fn files_exist(&self, paths: &[String]) -> Result<Vec<bool>> {
        let t = Instant::now();
        record(
            &*self.observer,
            "files_exist",
            t,
            self.inner.files_exist(paths).await,
        )
    }

    async fn put_empty_files_unsynced(&self, paths: &[String]) -> Result<()> {
        let t = Instant::now();
        record(
            &*self.observer,
            "put_empty_files_unsynced",
            t,
            self.inner.put_empty_files_unsynced(paths).await,
        )
    }

    async fn prune_empty_dirs_of(&self, paths: &[String]) -> Result<()> {
        let t = Instant::now();
        record(
            &*self.observer,
            "prune_empty_dirs_of",
            t,
            self.inner.prune_empty_dirs_of(paths).await,
        )
    }

    async fn rename_files(&self, moves: &[(String, String, u64)]) -> Result<Vec<bool>> {
        let t = Instant::now();
        record(
            &*self.observer,
            "rename_files",
            t,
            self.inner.rename_files(moves).await,
        )
    }

    async fn walk(&self, path: &str) -> Result<Vec<WalkEntry>> {
        let t = Instant::now();
        record(&*self.observer, "walk", t, self.inner.walk(path).await)
    }

    async fn abort_stale_writes(&self, path: &str, older_than: Duration) -> Result<u64> {
        let t = Instant::now();
        record(
            &*self.observer,
            "abort_stale_writes",
            t,
            self.inner.abort_stale_writes(path, older_than).await,
        )
    }

    async fn abort_unfinished(&self, path: &str) -> Result<u64> {
        let t = Instant::now();
        record(
            &*self.observer,
            "abort_unfinished",
            t,
            self.inner.abort_unfinished(path).await,
        )
    }

    async fn prune_empty_dirs(&self, path: &str) -> Result<()> {
        let t = Instant::now();
        record(
            &*self.observer,
            "prune_empty_dirs",
            t,
            self.inner.prune_empty_dirs(path).await,
        )
    }

    async fn health(&self) -> Result<()> {
        let t = Instant::now();
        record(&*self.observer, "health", t, self.inner.health().await)
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>> {
        let t = Instant::now();
        record(
            &*self.observer,
            "redirect_url",
            t,
            self.inner.redirect_url(path).await,
        )
    }

    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }

    async fn free_bytes(&self) -> Option<u64> {
        self.inner.free_bytes().await
    }
}

struct InstrumentedWriter {
    inner: Box<dyn FileWriter>,
    observer: Arc<dyn StorageObserver>,
}

#[async_trait]
impl FileWriter for InstrumentedWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.write(data).await;
        record(&*self.observer, "writer.write", t, r)
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let t = Instant::now();
        let obs = self.observer;
        record(&*obs, "writer.close", t, self.inner.close().await)
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let t = Instant::now();
        let obs = self.observer;
        record(&*obs, "writer.commit", t, self.inner.commit().await)
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        let t = Instant::now();
        let obs = self.observer;
        record(&*obs, "writer.cancel", t, self.inner.cancel().await)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::storage::memory::MemoryDriver;

    #[derive(Default)]
    struct Log(Mutex<Vec<(&'static str, bool)>>);

    impl StorageObserver for Log {
        fn observe(&self, op: &'static str, _: Duration, e: Option<&StorageError>) {
            if let Ok(mut v) = self.0.lock() {
                v.push((op, e.is_some()));
            }
        }
    }

    #[tokio::test]
    async fn every_call_is_observed_and_results_pass_through() {
        let log = Arc::new(Log::default());
        let d = Instrumented::wrap(Arc::new(MemoryDriver::new()), log.clone());
        assert_eq!(d.name(), "inmemory");
        d.put_content("/a/b", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(d.get_content("/a/b").await.unwrap(), "x");
        assert!(d.stat("/missing").await.unwrap_err().is_not_found());
        let mut w = d.writer("/a/c", false).await.unwrap();
        w.write(Bytes::from_static(b"yz")).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(d.stat("/a/c").await.unwrap().size, 2);
        d.health().await.unwrap();
        let seen = log.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("put_content", false),
                ("get_content", false),
                ("stat", true),
                ("writer", false),
                ("writer.write", false),
                ("writer.commit", false),
                ("stat", false),
                ("health", false),
            ]
        );
    }
}
