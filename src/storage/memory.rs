//! An in-memory driver for tests and throwaway registries. Directories are implied by file paths, as
//! in an object store. Not for production: content lives in process memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{
    check_path, ByteStream, FileInfo, FileWriter, Result, StorageDriver, StorageError, WalkEntry,
};

#[derive(Default, Clone)]
pub struct MemoryDriver {
    files: Arc<Mutex<BTreeMap<String, (Bytes, SystemTime)>>>,
}

impl MemoryDriver {
    pub fn new() -> MemoryDriver {
        MemoryDriver::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, (Bytes, SystemTime)>> {
        // A poisoned lock only means another test thread panicked; the map itself is intact.
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn dir_prefix(path: &str) -> String {
    format!("{}/", path.trim_end_matches('/'))
}

#[async_trait]
impl StorageDriver for MemoryDriver {
    fn name(&self) -> &'static str {
        "inmemory"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        check_path(path)?;
        self.lock()
            .get(path)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| StorageError::NotFound(path.to_owned()))
    }

    async fn put_content(&self, path: &str, data: Bytes) -> Result<()> {
        check_path(path)?;
        self.lock()
            .insert(path.to_owned(), (data, SystemTime::now()));
        Ok(())
    }

    async fn read(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let data = self.get_content(path).await?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = match len {
            Some(n) => start.saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
            None => data.len(),
        }
        .min(data.len());
        let slice = data.slice(start..end);
        Ok(Box::pin(futures::stream::iter([Ok(slice)])))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        check_path(path)?;
        let files = self.lock();
        if let Some((b, t)) = files.get(path) {
            return Ok(FileInfo {
                size: b.len() as u64,
                is_dir: false,
                modified: Some(*t),
            });
        }
        let prefix = dir_prefix(path);
        if files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
        {
            return Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            });
        }
        Err(StorageError::NotFound(path.to_owned()))
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        check_path(path)?;
        let prefix = dir_prefix(path);
        let files = self.lock();
        let mut out: Vec<String> = Vec::new();
        for (k, _) in files.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            let child = rest.split('/').next().unwrap_or(rest);
            if out.last().map(String::as_str) != Some(child) {
                out.push(child.to_owned());
            }
        }
        if out.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(out)
    }

    async fn walk(&self, path: &str) -> Result<Vec<WalkEntry>> {
        check_path(path)?;
        let prefix = dir_prefix(path);
        Ok(self
            .lock()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, (b, t))| WalkEntry {
                path: k.clone(),
                size: b.len() as u64,
                modified: Some(*t),
            })
            .collect())
    }

    async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
        check_path(path)?;
        let mut buf = BytesMut::new();
        if append {
            if let Some((b, _)) = self.lock().get(path) {
                buf.extend_from_slice(b);
            }
        }
        Ok(Box::new(MemWriter {
            driver: self.clone(),
            path: path.to_owned(),
            buf,
        }))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_path(from)?;
        check_path(to)?;
        let mut files = self.lock();
        let v = files
            .remove(from)
            .ok_or_else(|| StorageError::NotFound(from.to_owned()))?;
        files.insert(to.to_owned(), v);
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        check_path(path)?;
        let prefix = dir_prefix(path);
        let mut files = self.lock();
        let mut found = files.remove(path).is_some();
        let keys: Vec<String> = files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            files.remove(&k);
            found = true;
        }
        if found {
            Ok(())
        } else {
            Err(StorageError::NotFound(path.to_owned()))
        }
    }
}

struct MemWriter {
    driver: MemoryDriver,
    path: String,
    buf: BytesMut,
}

#[async_trait]
impl FileWriter for MemWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.commit().await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let MemWriter { driver, path, buf } = *self;
        driver
            .lock()
            .insert(path, (buf.freeze(), SystemTime::now()));
        Ok(())
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// Test drivers: the in-memory driver with hooks around its calls, for tests that need a slow
/// step, a record of the calls, or another process acting at the worst moment.
#[cfg(test)]
pub(crate) mod hooked {
    use super::*;

    /// What a test adds around the calls of a [`Hooked`] driver. `op` is the `StorageDriver`
    /// method's name, `paths` the paths it names (a move's sources for `rename_files`); `inner`
    /// is the memory driver beneath, for hooks that act on storage themselves.
    #[async_trait]
    pub(crate) trait Hooks: Send + Sync + 'static {
        async fn before(&self, _inner: &MemoryDriver, _op: &'static str, _paths: &[String]) {}
        async fn after(&self, _inner: &MemoryDriver, _op: &'static str, _paths: &[String]) {}
        /// What the driver answers for [`StorageDriver::writer_opens_without_writing`] (the
        /// memory driver writes nothing before a writer's close either way).
        fn writer_opens_without_writing(&self) -> bool {
            false
        }
    }

    /// A [`MemoryDriver`] whose calls run between `hooks.before` and `hooks.after` (`after` only
    /// when the call succeeded). Methods the trait provides defaults for go through these.
    pub(crate) struct Hooked<H> {
        pub inner: MemoryDriver,
        pub hooks: H,
    }

    impl<H: Hooks> Hooked<H> {
        pub(crate) fn new(hooks: H) -> Hooked<H> {
            Hooked {
                inner: MemoryDriver::new(),
                hooks,
            }
        }

        async fn around<T>(
            &self,
            op: &'static str,
            paths: Vec<String>,
            call: impl std::future::Future<Output = Result<T>>,
        ) -> Result<T> {
            self.hooks.before(&self.inner, op, &paths).await;
            let r = call.await?;
            self.hooks.after(&self.inner, op, &paths).await;
            Ok(r)
        }
    }

    #[async_trait]
    impl<H: Hooks> StorageDriver for Hooked<H> {
        fn name(&self) -> &'static str {
            "hooked"
        }
        fn writer_opens_without_writing(&self) -> bool {
            self.hooks.writer_opens_without_writing()
        }
        async fn get_content(&self, path: &str) -> Result<Bytes> {
            let call = self.inner.get_content(path);
            self.around("get_content", vec![path.into()], call).await
        }
        async fn put_content(&self, path: &str, data: Bytes) -> Result<()> {
            let call = self.inner.put_content(path, data);
            self.around("put_content", vec![path.into()], call).await
        }
        async fn read(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
            let call = self.inner.read(path, offset, len);
            self.around("read", vec![path.into()], call).await
        }
        async fn stat(&self, path: &str) -> Result<FileInfo> {
            let call = self.inner.stat(path);
            self.around("stat", vec![path.into()], call).await
        }
        async fn list(&self, path: &str) -> Result<Vec<String>> {
            let call = self.inner.list(path);
            self.around("list", vec![path.into()], call).await
        }
        async fn writer(&self, path: &str, append: bool) -> Result<Box<dyn FileWriter>> {
            let call = self.inner.writer(path, append);
            self.around("writer", vec![path.into()], call).await
        }
        async fn rename(&self, from: &str, to: &str) -> Result<()> {
            let call = self.inner.rename(from, to);
            self.around("rename", vec![from.into()], call).await
        }
        async fn delete(&self, path: &str) -> Result<()> {
            let call = self.inner.delete(path);
            self.around("delete", vec![path.into()], call).await
        }
        async fn delete_files(&self, paths: &[String]) -> Result<()> {
            let call = self.inner.delete_files(paths);
            self.around("delete_files", paths.to_vec(), call).await
        }
        async fn rename_files(&self, moves: &[(String, String, u64)]) -> Result<Vec<bool>> {
            let call = self.inner.rename_files(moves);
            let from = moves.iter().map(|m| m.0.clone()).collect();
            self.around("rename_files", from, call).await
        }
        async fn walk(&self, path: &str) -> Result<Vec<WalkEntry>> {
            let call = self.inner.walk(path);
            self.around("walk", vec![path.into()], call).await
        }
    }
}
