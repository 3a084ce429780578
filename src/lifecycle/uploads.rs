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
    /// Unfinished native writes aborted (S3 multipart uploads older than the age).
    pub aborted: u64,
}

/// Deletes every upload folder whose `startedat` file (or, without one, its newest file) is older
/// than `age`, then aborts the backend's unfinished writes older than `age` (S3 multipart uploads
/// of writers that died). One walk of `repositories/` and one delete per purged upload.
pub async fn purge_uploads(
    driver: &dyn StorageDriver,
    age: Duration,
    dry_run: bool,
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
        match driver.delete(&layout::upload_dir(&name, &uuid)).await {
            Ok(()) => tracing::info!(repository = %name, %uuid, "purged a stale upload"),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    if !dry_run {
        report.aborted = driver
            .abort_stale_writes(&layout::repositories_root(), age)
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
        match purge_uploads(driver.as_ref(), age, dry_run).await {
            Ok(r) => {
                if !dry_run {
                    observer.uploads_purged(r.purged);
                }
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
