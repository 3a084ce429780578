//! Scheduled collection in `serve` (`storage.maintenance.gc.enabled`): a task that runs
//! [`collect_leased`](super::collect_leased) once the last successful run of *any* replica
//! (`layout::gc_last_run`) is `interval` old. Replicas take turns through the lease; one that
//! finds the lease held counts the run as skipped and looks again at its next tick.
//!
//! Stopping ([`Scheduler::stop`], on graceful shutdown) ends the wait at once; a run in
//! progress is dropped where it is (the same as a crash, which the collector survives: the next
//! run restores or finishes what it left) and the lease is released.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{collect_leased, lease, GcError, GcOptions, GcReport, NoProgress, Retention};
use crate::storage::StorageDriver;

/// How a scheduled run ended, for metrics.
#[derive(Debug)]
pub enum RunOutcome<'a> {
    Done(&'a GcReport),
    Failed,
    /// Another process held the lease.
    Skipped,
}

/// Receives what lifecycle tasks did (the server's metrics implement it).
pub trait Observer: Send + Sync {
    fn gc_run(&self, outcome: RunOutcome<'_>);
    fn uploads_purged(&self, n: u64);
}

/// An observer that records nothing.
pub struct NoObserver;

impl Observer for NoObserver {
    fn gc_run(&self, _: RunOutcome<'_>) {}
    fn uploads_purged(&self, _: u64) {}
}

/// The background collector of one server.
pub struct Scheduler {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Scheduler {
    /// Starts the task: it looks every `min(interval / 4, 1 min)` whether a run is due.
    pub fn start(
        driver: Arc<dyn StorageDriver>,
        opts: GcOptions,
        retention: Retention,
        interval: Duration,
        observer: Arc<dyn Observer>,
    ) -> Scheduler {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(schedule(driver, opts, retention, interval, observer, rx));
        Scheduler { stop, task }
    }

    /// Stops the task (see the module docs) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the gc scheduler ended badly");
        }
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // A dropped handle (no `stop`) leaves the task running until its runtime ends.
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn schedule(
    driver: Arc<dyn StorageDriver>,
    opts: GcOptions,
    retention: Retention,
    interval: Duration,
    observer: Arc<dyn Observer>,
    mut rx: watch::Receiver<bool>,
) {
    let tick = (interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    // After a failure, wait this long before trying again (not every tick).
    let backoff = interval.min(Duration::from_secs(600)).max(tick);
    let owner = lease::new_owner();
    let mut not_before = SystemTime::now();
    tracing::info!(
        ?interval,
        owner,
        dry_run = opts.dry_run,
        delete_untagged = opts.delete_untagged,
        "scheduled gc on"
    );
    loop {
        tokio::select! {
            _ = stopped(&mut rx) => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = SystemTime::now();
        if now < not_before {
            continue;
        }
        match lease::last_run(driver.as_ref()).await {
            Ok(Some(t)) if now.duration_since(t).is_ok_and(|a| a < interval) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "scheduled gc: cannot read the last run's time");
                not_before = now + backoff;
                continue;
            }
        }
        tracing::info!(owner, "gc run started");
        let run = collect_leased(driver.as_ref(), &opts, &retention, &NoProgress, &owner);
        let r = tokio::select! {
            r = run => r,
            _ = stopped(&mut rx) => {
                tracing::info!(owner, "gc run stopped by shutdown; the next run finishes what it left");
                // Writes of the dropped run still on blocking threads land first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                release_if_ours(driver.as_ref(), &owner, &opts).await;
                break;
            }
        };
        match r {
            Ok(report) => {
                if let Err(e) = lease::record_run(driver.as_ref()).await {
                    tracing::warn!(error = %e, "scheduled gc: cannot record the run's end");
                }
                tracing::info!(
                    owner,
                    dry_run = report.dry_run,
                    manifests = report.manifests_deleted,
                    blobs = report.blobs_deleted,
                    bytes = report.bytes_reclaimed,
                    repositories = report.repositories_deleted,
                    tags = report.tags_deleted,
                    seconds = report.seconds,
                    "gc run finished"
                );
                for d in report.deletions.iter().filter(|_| report.dry_run) {
                    tracing::info!(
                        kind = d.kind,
                        repository = d.repository.as_deref(),
                        digest = d.digest.as_deref(),
                        "gc dry run: would delete"
                    );
                }
                observer.gc_run(RunOutcome::Done(&report));
            }
            Err(GcError::Busy { owner: other, .. }) => {
                tracing::info!(
                    owner,
                    holder = other,
                    "gc run skipped: another process holds the lease"
                );
                observer.gc_run(RunOutcome::Skipped);
            }
            Err(e) => {
                tracing::warn!(owner, error = %e, "gc run failed; will retry");
                observer.gc_run(RunOutcome::Failed);
                not_before = SystemTime::now() + backoff;
            }
        }
    }
    tracing::info!(owner, "scheduled gc stopped");
}

/// The lease of a dropped run, released if it is still ours.
async fn release_if_ours(driver: &dyn StorageDriver, owner: &str, opts: &GcOptions) {
    if opts.dry_run {
        return;
    }
    let held = lease::Held {
        owner: owner.to_owned(),
        times: lease::LeaseTimes::for_grace(opts.grace),
    };
    held.release(driver).await;
}
