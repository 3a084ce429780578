//! Image lifecycle: garbage collection of the storage (mark and sweep), safe while servers of
//! the same storage keep serving pushes and pulls; purging of stale uploads (`uploads.rs`).
//!
//! Depends on `storage` (the driver and the layout), `oci` and `config` only; no HTTP, no
//! registry types. The registry honours the same files (tombstones, `lastused`) through the
//! layout; see "Online safety" below.
//!
//! A run ([`collect`]):
//! 1. **scan**: one walk of `repositories/` and one of `blobs/` (list calls only: sizes and times
//!    come with the listing);
//! 2. **mark**: reads every tag's current link and every manifest once; keeps, per repository, what
//!    a tag reaches (index → children, manifest → config and layers), the referrers of what is
//!    kept (transitively), every manifest younger than the delay, and, without
//!    `delete_untagged`, every manifest;
//! 3. candidates: blobs no kept manifest references whose age (the later of the `data` file's
//!    time and its `lastused` file's) exceeds the delay; with `delete_untagged`, manifest
//!    revisions not kept whose link is older than the delay;
//! 4. (not in a dry run) **tombstone** every candidate blob, wait the grace, **verify** with a
//!    fresh scan and mark (tags moved meanwhile are marked again; a candidate whose tombstone is
//!    gone, or that became young, or is now referenced, stays);
//! 5. **sweep**: manifest revisions (with their tag history entries and referrer entries), then
//!    blobs (with the `_layers` links to them), then the folders left empty (repositories that
//!    held only garbage leave the catalog).
//!
//! # Online safety
//! Pushers and collection each write first and check the other's mark second, so at least one of
//! them sees the other:
//! - A push that finds a blob (HEAD, mount, manifest PUT) treats a tombstoned blob as absent
//!   (the client uploads it again), and an upload, mount or manifest PUT removes the tombstones of
//!   the blobs it stores or references *before* checking that they exist. A push that finds an old
//!   blob without a tombstone refreshes its age (`lastused`), so it is no candidate for a run that
//!   has not tombstoned it yet.
//! - Collection deletes a blob by moving its bytes aside (`gctrash`, removed `_layers` links
//!   first), *then* checking the tombstone: gone means a push claimed the blob, so the bytes and
//!   links go back; there means no push has claimed it since it was tombstoned, and any later push
//!   finds the blob absent. A push never gets a tag whose blobs are gone.
//! - A manifest revision is deleted first and the repository's tags are read again after: a tag
//!   that reaches it now gets it back. A manifest PUT checks its revision link after writing the
//!   tag and rewrites it if collection removed it meanwhile.
//! - The grace between tombstone and verify is longer than `storage.cache.linkTTL`, the time a
//!   server may trust a link it read.
//!
//! A failed run (a storage error) stops where it is: what it had not finished marking is not
//! deleted; its tombstones only make pushes upload those blobs again, and the next run restores
//! or finishes any bytes it left in `gctrash`.

mod inventory;
pub mod lease;
mod mark;
pub mod retention;
pub mod schedule;
mod sweep;
mod uploads;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::storage::{StorageDriver, StorageError};

pub use inventory::Inventory;
pub use retention::Retention;
pub use schedule::{Observer, RunOutcome};
pub use uploads::{purge_loop, purge_uploads, PurgeReport};

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be deleted; write nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (directly, through an index, or as a referrer).
    pub delete_untagged: bool,
    /// Nothing younger than this is deleted (`0`: age does not matter, for offline use).
    pub delay: Duration,
    /// Time between tombstoning and verifying (longer than `storage.cache.linkTTL`).
    pub grace: Duration,
}

impl GcOptions {
    /// The grace for servers that trust links for `link_ttl`: that plus two seconds.
    pub fn grace_for(link_ttl: Duration) -> Duration {
        link_ttl + Duration::from_secs(2)
    }
}

/// Receives progress: a phase with its amount of work, then steps.
pub trait Progress: Send + Sync {
    fn phase(&self, name: &'static str, total: u64);
    fn step(&self, n: u64);
    fn done(&self);
}

/// A progress sink that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &'static str, _: u64) {}
    fn step(&self, _: u64) {}
    fn done(&self) {}
}

/// One thing a run deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Deletion {
    /// `manifest` (a revision in a repository), `blob`, `layer_link`, `repository`, `tag` (by
    /// retention; `digest` is what it pointed at).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub repositories: u64,
    pub tags: u64,
    /// Manifest revisions seen (one per repository and digest).
    pub manifests: u64,
    pub blobs: u64,
    pub manifests_deleted: u64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
    pub layer_links_deleted: u64,
    pub repositories_deleted: u64,
    /// Tags retention deleted.
    pub tags_deleted: u64,
    /// Garbage left because it is younger than the delay.
    pub young_kept: u64,
    /// Candidates a push claimed during the run (tombstone cleared, refreshed, referenced again).
    pub reclaimed_by_pushes: u64,
    /// Manifests whose content was missing (their references are unknown; nothing is deleted for
    /// them).
    pub unreadable_manifests: Vec<String>,
    pub seconds: f64,
    /// Of the run's time, the safety waits: the lease's settle and the grace between tombstoning
    /// and verifying (fixed costs that do not grow with the store).
    pub waited_seconds: f64,
    /// Everything deleted, sorted (in a dry run: what would be).
    pub deletions: Vec<Deletion>,
}

/// Why a run failed. Nothing it had not finished marking was deleted.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("garbage collection stopped during {phase} ({left})")]
    Storage {
        phase: &'static str,
        left: &'static str,
        #[source]
        source: StorageError,
    },
    #[error("garbage collection stopped: manifest {digest} does not parse ({detail}); nothing was deleted")]
    BadManifest { digest: String, detail: String },
    #[error("another garbage collection run holds the lease ({owner}, until {until}); nothing was deleted")]
    Busy { owner: String, until: String },
    #[error("garbage collection stopped: {0} ({left})", left = LEFT_PARTIAL)]
    LeaseLost(String),
}

pub type Result<T, E = GcError> = std::result::Result<T, E>;

/// What a phase leaves when it fails.
const LEFT_NOTHING: &str = "nothing was deleted";
const LEFT_TOMBSTONES: &str =
    "nothing was deleted; tombstones left make pushes upload those blobs again";
const LEFT_PARTIAL: &str = "what was deleted is listed in the log; the next run finishes the rest";

fn storage(phase: &'static str, left: &'static str) -> impl Fn(StorageError) -> GcError {
    move |source| GcError::Storage {
        phase,
        left,
        source,
    }
}

/// Whether a file last touched at `t` is older than `delay` at `now` (an unknown time counts as
/// old: every backend here reports times).
pub(crate) fn older_than(t: Option<SystemTime>, delay: Duration, now: SystemTime) -> bool {
    match t {
        Some(t) => now.duration_since(t).is_ok_and(|age| age > delay) || delay.is_zero(),
        None => true,
    }
}

/// One garbage collection run over `driver`, without the lease (for callers that know no other
/// run is going on; see [`collect_leased`]).
pub async fn collect(
    driver: &dyn StorageDriver,
    opts: &GcOptions,
    progress: &dyn Progress,
) -> Result<GcReport> {
    run(driver, opts, &Retention::none(), progress, None).await
}

/// One run under the collection lease ([`lease`]): taken first ([`GcError::Busy`] when another
/// process holds it), renewed while running, confirmed before the first write and before the
/// sweep, released at the end. A lease lost meanwhile stops the run ([`GcError::LeaseLost`]).
/// A dry run writes nothing and takes no lease.
pub async fn collect_leased(
    driver: &dyn StorageDriver,
    opts: &GcOptions,
    retention: &Retention,
    progress: &dyn Progress,
    owner: &str,
) -> Result<GcReport> {
    if opts.dry_run {
        return run(driver, opts, retention, progress, None).await;
    }
    let times = lease::LeaseTimes::for_grace(opts.grace);
    let held = match lease::acquire(driver, owner, times)
        .await
        .map_err(storage("lease", LEFT_NOTHING))?
    {
        lease::Claim::Held(h) => h,
        lease::Claim::Busy { owner, until } => {
            return Err(GcError::Busy {
                owner,
                until: humantime::format_rfc3339_seconds(until).to_string(),
            })
        }
    };
    tracing::info!(owner, "collection lease taken");
    // Renewals run between polls of the run, never cancelled half-way (a filesystem write on a
    // blocking thread would land after the release and leave the lease behind).
    let mut work = std::pin::pin!(run(driver, opts, retention, progress, Some(&held)));
    let r = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(held.times.renew) => {}
        }
        match held.renew(driver).await {
            Ok(Ok(())) => {}
            Ok(Err(lost)) => break Err(GcError::LeaseLost(lost.to_string())),
            Err(e) => {
                break Err(GcError::LeaseLost(format!(
                    "cannot renew the collection lease: {e}"
                )))
            }
        }
    };
    held.release(driver).await;
    tracing::info!(owner, "collection lease released");
    r.map(|mut report| {
        // The lease was taken (its settle waited) before the run's clock started.
        report.waited_seconds += times.settle.as_secs_f64();
        report.seconds += times.settle.as_secs_f64();
        report
    })
}

/// Stops unless `held` (when given) is still ours.
async fn confirm(driver: &dyn StorageDriver, held: Option<&lease::Held>) -> Result<()> {
    if let Some(h) = held {
        h.confirm(driver)
            .await
            .map_err(storage("lease", LEFT_PARTIAL))?
            .map_err(|l| GcError::LeaseLost(l.to_string()))?;
    }
    Ok(())
}

async fn run(
    driver: &dyn StorageDriver,
    opts: &GcOptions,
    retention: &Retention,
    progress: &dyn Progress,
    held: Option<&lease::Held>,
) -> Result<GcReport> {
    let started = Instant::now();
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };

    let inv = Inventory::scan(driver, progress)
        .await
        .map_err(storage("scan", LEFT_NOTHING))?;
    report.repositories = inv.repos.len() as u64;
    report.manifests = inv.repos.values().map(|r| r.revisions.len() as u64).sum();
    report.blobs = inv.blobs.values().filter(|b| b.data.is_some()).count() as u64;

    let decision = retention::decide(driver, &inv, retention, opts.delay, SystemTime::now())
        .await
        .map_err(storage("retention", LEFT_NOTHING))?;
    let mut manifests = mark::ManifestCache::default();
    let roots = mark::Roots {
        decision: &decision,
        exclude_tags: true,
    };
    let marked = mark::mark(driver, &inv, &mut manifests, opts, &roots, progress, "mark").await?;
    report.tags = marked.tags;
    report.unreadable_manifests = marked.unreadable.clone();
    let now = SystemTime::now();
    let plan = mark::candidates(&inv, &marked, opts, now);
    report.young_kept = plan.young_kept;

    if opts.dry_run {
        report.deletions = plan.deletions(&inv);
        report.deletions.extend(decision.deletions());
        report.deletions.sort();
        report.tags_deleted = decision.tags.len() as u64;
        report.manifests_deleted = plan.manifests.values().map(|m| m.len() as u64).sum();
        report.blobs_deleted = plan.blobs.len() as u64;
        report.bytes_reclaimed = plan
            .blobs
            .iter()
            .filter_map(|d| inv.blobs.get(d).and_then(|b| b.data.map(|(s, _)| s)))
            .sum();
        report.layer_links_deleted = report
            .deletions
            .iter()
            .filter(|d| d.kind == "layer_link")
            .count() as u64;
        report.repositories_deleted = report
            .deletions
            .iter()
            .filter(|d| d.kind == "repository")
            .count() as u64;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    confirm(driver, held).await?;
    let mut deletions = Vec::new();
    report.reclaimed_by_pushes += retention::delete_tags(driver, &decision, &mut deletions)
        .await
        .map_err(storage("retention", LEFT_PARTIAL))?;
    sweep::finish_trash(driver, &inv)
        .await
        .map_err(storage("recovery", LEFT_NOTHING))?;
    sweep::tombstone(driver, &plan, progress)
        .await
        .map_err(storage("tombstone", LEFT_TOMBSTONES))?;
    if !plan.is_empty() {
        tokio::time::sleep(opts.grace).await;
        report.waited_seconds += opts.grace.as_secs_f64();
    }

    // Verify: a fresh look at everything, marking again from the tags as they are now.
    let fresh = Inventory::scan(driver, progress)
        .await
        .map_err(storage("verify", LEFT_TOMBSTONES))?;
    // The deleted tags are gone from storage: whatever tag is there now is a push's.
    let roots = mark::Roots {
        decision: &decision,
        exclude_tags: false,
    };
    let marked2 = mark::mark(
        driver,
        &fresh,
        &mut manifests,
        opts,
        &roots,
        progress,
        "verify",
    )
    .await?;
    let now = SystemTime::now();
    let plan2 = mark::candidates(&fresh, &marked2, opts, now);
    let (confirmed, claimed) = plan.confirm(&plan2, &fresh);
    report.reclaimed_by_pushes += claimed;

    confirm(driver, held).await?;
    let outcome = sweep::sweep(
        driver,
        &fresh,
        &mut manifests,
        &confirmed,
        progress,
        &mut deletions,
    )
    .await
    .map_err(storage("sweep", LEFT_PARTIAL));
    // Tombstones of blobs that stay (claimed, or kept by the fresh mark) go.
    let cleared = sweep::clear_stale_tombstones(driver, &fresh, &confirmed, &deletions)
        .await
        .map_err(storage("sweep", LEFT_PARTIAL));
    let sums = outcome?;
    cleared?;
    report.reclaimed_by_pushes += sums.restored;
    report.bytes_reclaimed = sums.bytes;
    deletions.sort();
    let count = |k: &str| deletions.iter().filter(|d| d.kind == k).count() as u64;
    report.manifests_deleted = count("manifest");
    report.blobs_deleted = count("blob");
    report.layer_links_deleted = count("layer_link");
    report.repositories_deleted = count("repository");
    report.tags_deleted = count("tag");
    report.deletions = deletions;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Counts of a map of sets.
pub(crate) fn total<K, V>(m: &BTreeMap<K, Vec<V>>) -> usize {
    m.values().map(Vec::len).sum()
}
