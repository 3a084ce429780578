//! Purging stale uploads (`storage.maintenance.uploadpurging`): upload folders
//! (`_uploads/<uuid>`) whose start is older than the age go, as distribution's purger does.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::oci::RepositoryName;
use crate::storage::layout::{self, RepoFile};
use crate::storage::{Result, StorageDriver};

/// What a purge did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    /// Upload folders deleted (in a dry run: that would be).
    pub purged: u64,
    /// Upload folders younger than the age.
    pub kept: u64,
    /// Unfinished native writes ended: those of purged uploads (S3 multipart uploads, GCS
    /// resumable sessions, Azure segment names cleared of staged blocks) and S3 multipart uploads
    /// older than the age anywhere below `repositories/` and `blobs/` (direct blob writes).
    pub aborted: u64,
}

/// Deletes every upload folder whose `startedat` file (or, without one, its newest file) is older
/// than `age`, after ending the unfinished native writes of its `data` file
/// ([`StorageDriver::abort_unfinished`]), then aborts the backend's unfinished writes older than
/// `age` (S3 multipart uploads of writers that died, below `repositories/` and, for direct blob
/// writes, `blobs/`). One walk of `repositories/`, and per purged
/// upload one listing of its data's segments, the backend's few calls, and one delete.
/// `observer` hears of each folder as it is deleted (not in a dry run), so a count never lags
/// the deletion a client can already see, nor is lost when a later step of the run fails.
pub async fn purge_uploads(
    driver: &dyn StorageDriver,
    age: Duration,
    dry_run: bool,
    observer: &dyn super::Observer,
) -> Result<PurgeReport> {
    let entries = match driver.walk(&layout::repositories_root()).await {
        Ok(e) => e,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    // (repository, uuid) -> (start time, newest file time)
    let mut uploads: BTreeMap<(RepositoryName, String), (Option<SystemTime>, Option<SystemTime>)> =
        BTreeMap::new();
    for e in entries {
        if let Some((name, RepoFile::Upload { uuid, file })) = layout::parse_repo_path(&e.path) {
            let u = uploads.entry((name, uuid)).or_default();
            if file == layout::UPLOAD_STARTED_AT {
                u.0 = e.modified;
            }
            u.1 = u.1.max(e.modified);
        }
    }
    let now = SystemTime::now();
    let mut report = PurgeReport::default();
    for ((name, uuid), (started, newest)) in uploads {
        let t = started.or(newest);
        let old = t.is_none_or(|t| now.duration_since(t).is_ok_and(|a| a > age));
        if !old {
            report.kept += 1;
            continue;
        }
        report.purged += 1;
        if dry_run {
            tracing::info!(repository = %name, %uuid, "upload purging (dry run): would delete");
            continue;
        }
        // First the native writes its state names (a dead writer's S3 multipart upload, GCS
        // session, Azure staged blocks): once the folder is gone nothing names them any more.
        match driver
            .abort_unfinished(&layout::upload_data(&name, &uuid))
            .await
        {
            Ok(n) => report.aborted += n,
            Err(e) => {
                tracing::warn!(repository = %name, %uuid, error = %e,
                    "upload purging: could not end the upload's unfinished writes; kept it for the next run");
                report.purged -= 1;
                continue;
            }
        }
        match driver.delete(&layout::upload_dir(&name, &uuid)).await {
            Ok(()) => {
                observer.uploads_purged(1);
                tracing::info!(repository = %name, %uuid, "purged a stale upload")
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    if !dry_run {
        report.aborted += driver
            .abort_stale_writes(&layout::repositories_root(), age)
            .await?;
        // Direct writes of blobs (`StorageDriver::direct_writer`) whose writer died.
        report.aborted += driver
            .abort_stale_writes(&layout::blobs_root(), age)
            .await?;
    }
    Ok(report)
}

/// Purges every `interval` (the first time after one `interval`), forever; `observer` counts
/// the folders deleted.
pub async fn purge_loop(
    driver: std::sync::Arc<dyn StorageDriver>,
    age: Duration,
    interval: Duration,
    dry_run: bool,
    observer: std::sync::Arc<dyn super::Observer>,
) {
    loop {
        tokio::time::sleep(interval).await;
        match purge_uploads(driver.as_ref(), age, dry_run, observer.as_ref()).await {
            Ok(r) => {
                tracing::debug!(
                    purged = r.purged,
                    kept = r.kept,
                    aborted = r.aborted,
                    "upload purging done"
                )
            }
            Err(e) => tracing::warn!(error = %e, "upload purging failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::storage::instrumented::{Instrumented, StorageObserver};
    use crate::storage::memory::MemoryDriver;
    use crate::storage::StorageError;

    #[derive(Default)]
    struct Calls(Mutex<Vec<&'static str>>);

    impl StorageObserver for Calls {
        fn observe(&self, op: &'static str, _: Duration, _: Option<&StorageError>) {
            self.0.lock().unwrap().push(op);
        }
    }

    /// Each purged upload's unfinished native writes are ended before its folder goes (after
    /// that nothing names them); a dry run ends nothing.
    #[tokio::test]
    async fn native_writes_are_ended_before_the_folder_goes() {
        let calls = Arc::new(Calls::default());
        let d = Instrumented::wrap(Arc::new(MemoryDriver::new()), calls.clone());
        let name: RepositoryName = "ns/app".parse().unwrap();
        for uuid in ["u1", "u2"] {
            d.put_content(&layout::upload_started_at(&name, uuid), "t".into())
                .await
                .unwrap();
            d.put_content(&layout::upload_data(&name, uuid), "x".into())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ops = |c: &Calls| -> Vec<&'static str> {
            std::mem::take(&mut *c.0.lock().unwrap())
                .into_iter()
                .filter(|o| *o != "put_content")
                .collect()
        };
        ops(&calls);
        let r = purge_uploads(
            d.as_ref(),
            Duration::ZERO,
            true,
            &crate::lifecycle::schedule::NoObserver,
        )
        .await
        .unwrap();
        assert_eq!((r.purged, r.aborted), (2, 0));
        assert_eq!(ops(&calls), ["walk"]);
        let r = purge_uploads(
            d.as_ref(),
            Duration::ZERO,
            false,
            &crate::lifecycle::schedule::NoObserver,
        )
        .await
        .unwrap();
        assert_eq!(r.purged, 2);
        assert_eq!(
            ops(&calls),
            [
                "walk",
                "abort_unfinished",
                "delete",
                "abort_unfinished",
                "delete",
                "abort_stale_writes",
                "abort_stale_writes"
            ]
        );
    }
}
