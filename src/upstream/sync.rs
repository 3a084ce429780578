//! Mirroring ahead of time (`proxy.upstreams[].sync`): every tag of the listed upstream
//! repositories that matches `tags` is pulled through the cache — its manifest (an index with all
//! its children) and every blob — so the bytes are local before anyone asks, or before the
//! upstream goes away. `oc import-image` / zot's sync for this registry.
//!
//! Runs through the domain's pull-through path (`Registry::get_manifest`, `pull_blob`), so it
//! stores exactly what a client pull would, verified the same way.
//!
//! Resuming: a run records each image it completes in a state file in storage
//! (`layout::sync_state`, one per upstream prefix, written after every image, removed when the
//! run gets to its end). The next run, finding one, skips the images recorded there less than the
//! upstream's `ttl` ago (as fresh as a cached tag) and says so; everything else is synced, and a
//! blob already stored is never fetched again. A blob cut off midway is fetched again from its
//! first byte (a partial fetch is not kept). Two runs of the same upstream at once share the file.

use std::time::Duration;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::registry::{PulledBlob, Registry, RegistryError};

/// Reports what a sync does (a progress bar, log lines).
pub trait SyncProgress: Send + Sync {
    /// An image (`prefix/repo:tag`) starts, with this many blobs to check.
    fn image_started(&self, image: &str, blobs: usize);
    /// One blob of it is local now: fetched (with its size) or already there.
    fn blob_done(&self, image: &str, size: u64, fetched: bool);
    /// The image is done (`Err`: why it failed).
    fn image_done(&self, image: &str, result: &Result<(), String>);
    /// A run resumes the one interrupted that started at `started`: `done` images are recorded.
    fn resuming(&self, prefix: &str, started: &str, done: usize);
    /// The image is skipped: the interrupted run completed it at `at`.
    fn image_skipped(&self, image: &str, at: &str);
}

/// What a run has done so far (the state file).
#[derive(Debug, Default, Serialize, Deserialize)]
struct SyncState {
    started: DateTime<Utc>,
    /// `prefix/repo:tag` -> when it was completed and its manifest digest.
    images: BTreeMap<String, ImageDone>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ImageDone {
    at: DateTime<Utc>,
    digest: String,
}

/// The outcome of a sync run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncSummary {
    pub images: usize,
    pub images_failed: usize,
    /// Completed by an interrupted run (recorded in its state file) and not synced again.
    pub images_skipped: usize,
    pub blobs_fetched: usize,
    pub blobs_present: usize,
    pub bytes_fetched: u64,
    /// `image: reason` per failure (a repository whose tags cannot be listed counts as one).
    pub failures: Vec<String>,
}

impl SyncSummary {
    fn add(&mut self, o: SyncSummary) {
        self.images += o.images;
        self.images_failed += o.images_failed;
        self.images_skipped += o.images_skipped;
        self.blobs_fetched += o.blobs_fetched;
        self.blobs_present += o.blobs_present;
        self.bytes_fetched += o.bytes_fetched;
        self.failures.extend(o.failures);
    }
}

impl std::fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let skipped = if self.images_skipped > 0 {
            format!(
                ", {} skipped: done by the interrupted run",
                self.images_skipped
            )
        } else {
            String::new()
        };
        write!(
            f,
            "{} images ({} failed{skipped}), {} blobs fetched ({} bytes), {} already present",
            self.images,
            self.images_failed,
            self.blobs_fetched,
            self.bytes_fetched,
            self.blobs_present
        )
    }
}

/// What one upstream syncs.
pub(crate) struct SyncPlan {
    pub(crate) interval: Duration,
    pub(crate) repositories: Vec<String>,
    pub(crate) tags: Option<regex::Regex>,
}

impl super::Upstreams {
    /// The smallest `sync.interval` configured (`None`: no upstream syncs periodically).
    pub fn sync_interval(&self) -> Option<Duration> {
        self.entries
            .iter()
            .filter_map(|e| e.sync.as_ref())
            .map(|s| s.interval)
            .filter(|i| !i.is_zero())
            .min()
    }

    /// Whether any upstream has a `sync` section.
    pub fn has_sync(&self) -> bool {
        self.entries.iter().any(|e| e.sync.is_some())
    }

    /// One run over every upstream with a `sync` section.
    pub async fn sync_once(&self, registry: &Registry, progress: &dyn SyncProgress) -> SyncSummary {
        let mut total = SyncSummary::default();
        for i in 0..self.entries.len() {
            total.add(self.sync_entry(i, registry, progress).await);
        }
        total
    }

    /// One run over the upstream at `index` (nothing if it has no `sync` section).
    async fn sync_entry(
        &self,
        index: usize,
        registry: &Registry,
        progress: &dyn SyncProgress,
    ) -> SyncSummary {
        let mut total = SyncSummary::default();
        let Some(e) = self.entries.get(index) else {
            return total;
        };
        let Some(plan) = &e.sync else {
            return total;
        };
        let mut state = load_state(registry, &e.prefix).await;
        let recorded: BTreeMap<String, DateTime<Utc>> = match &state {
            Some(st) => {
                let fresh: BTreeMap<String, DateTime<Utc>> = st
                    .images
                    .iter()
                    .filter(|(_, d)| {
                        (Utc::now() - d.at)
                            .to_std()
                            .map(|age| age < e.ttl)
                            .unwrap_or(true)
                    })
                    .map(|(k, d)| (k.clone(), d.at))
                    .collect();
                progress.resuming(&e.prefix, &st.started.to_rfc3339(), fresh.len());
                fresh
            }
            None => BTreeMap::new(),
        };
        let st = state.get_or_insert_with(|| SyncState {
            started: Utc::now(),
            images: BTreeMap::new(),
        });
        let mut run = Run {
            registry,
            prefix: &e.prefix,
            state: st,
            recorded,
        };
        for repo in &plan.repositories {
            total.add(
                self.sync_repository(&mut run, e, plan, repo, progress)
                    .await,
            );
        }
        // The run got to its end: the next one starts afresh.
        if let Err(err) = registry.put_sync_state(&e.prefix, None).await {
            tracing::warn!(prefix = %e.prefix, error = %err, "sync: cannot remove the state file");
        }
        total
    }

    /// Starts the periodic sync of `serve`: one task per upstream whose `sync.interval` is set,
    /// a run at start and then every interval, each ending with a summary in the log.
    pub fn start_periodic_sync(self: &std::sync::Arc<Self>, registry: &Registry) {
        for (i, e) in self.entries.iter().enumerate() {
            let Some(interval) = e.sync.as_ref().map(|s| s.interval).filter(|i| !i.is_zero())
            else {
                continue;
            };
            let me = self.clone();
            let registry = registry.clone();
            let prefix = e.prefix.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let s = me.sync_entry(i, &registry, &LogProgress).await;
                    tracing::info!(prefix = %prefix, summary = %s, "sync: run finished");
                }
            });
        }
    }

    async fn sync_repository(
        &self,
        run: &mut Run<'_>,
        e: &super::Entry,
        plan: &SyncPlan,
        repo: &str,
        progress: &dyn SyncProgress,
    ) -> SyncSummary {
        let mut s = SyncSummary::default();
        let local = if e.prefix.is_empty() {
            repo.to_owned()
        } else {
            format!("{}/{repo}", e.prefix)
        };
        let fail = |s: &mut SyncSummary, what: String| {
            s.images_failed += 1;
            s.failures.push(what);
        };
        let name: RepositoryName = match local.parse() {
            Ok(n) => n,
            Err(_) => {
                fail(&mut s, format!("{local}: not a repository name"));
                return s;
            }
        };
        let tags = match e.client.tags(&e.client.remote_name(repo)).await {
            Ok(t) => t,
            Err(err) => {
                fail(&mut s, format!("{local}: cannot list tags: {err}"));
                return s;
            }
        };
        let mut tags: Vec<String> = tags
            .into_iter()
            .filter(|t| plan.tags.as_ref().is_none_or(|r| r.is_match(t)))
            .collect();
        tags.sort();
        for tag in tags {
            let image = format!("{local}:{tag}");
            s.images += 1;
            if let Some(at) = run.recorded.get(&image) {
                s.images_skipped += 1;
                progress.image_skipped(&image, &at.to_rfc3339());
                continue;
            }
            let r = sync_image(run.registry, &name, &tag, &image, progress, &mut s).await;
            let r = match r {
                Ok(digest) => {
                    run.record(&image, &digest).await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            progress.image_done(&image, &r);
            if let Err(why) = r {
                fail(&mut s, format!("{image}: {why}"));
            }
        }
        s
    }
}

/// One run over an upstream: its state file and what the interrupted run had done.
struct Run<'a> {
    registry: &'a Registry,
    prefix: &'a str,
    state: &'a mut SyncState,
    /// Images the interrupted run completed, less than `ttl` ago: skipped.
    recorded: BTreeMap<String, DateTime<Utc>>,
}

impl Run<'_> {
    /// Records a completed image in the state file (a failure to write it only costs the resume).
    async fn record(&mut self, image: &str, digest: &Digest) {
        self.state.images.insert(
            image.to_owned(),
            ImageDone {
                at: Utc::now(),
                digest: digest.to_string(),
            },
        );
        let saved = match serde_json::to_vec(&self.state) {
            Ok(b) => {
                self.registry
                    .put_sync_state(self.prefix, Some(Bytes::from(b)))
                    .await
            }
            Err(e) => Err(RegistryError::Internal(e.to_string())),
        };
        if let Err(e) = saved {
            tracing::warn!(prefix = %self.prefix, error = %e, "sync: cannot save the state file");
        }
    }
}

/// The state an interrupted run left (`None`: none, or one that does not parse).
async fn load_state(registry: &Registry, prefix: &str) -> Option<SyncState> {
    match registry.sync_state(prefix).await {
        Ok(Some(b)) => match serde_json::from_slice(&b) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(prefix, error = %e, "sync: ignoring a state file that does not parse");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(prefix, error = %e, "sync: cannot read the state file; starting afresh");
            None
        }
    }
}

/// Pulls one tag through: the manifest, an index's children, every blob. Returns the manifest's
/// digest.
async fn sync_image(
    registry: &Registry,
    name: &RepositoryName,
    tag: &str,
    image: &str,
    progress: &dyn SyncProgress,
    s: &mut SyncSummary,
) -> Result<Digest, RegistryError> {
    let tag: Tag = tag.parse().map_err(|_| {
        RegistryError::ManifestInvalid(format!("upstream tag {tag:?} is not valid"))
    })?;
    let top = registry.get_manifest(name, &Reference::Tag(tag)).await?;
    let top_digest = top.digest.clone();
    let mut blobs: Vec<Digest> = Vec::new();
    let mut manifests = vec![top];
    let mut i = 0;
    while i < manifests.len() {
        let children: Vec<Digest> = manifests[i]
            .parsed
            .manifests
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        blobs.extend(
            manifests[i]
                .parsed
                .blobs
                .iter()
                .filter(|b| !b.is_foreign())
                .map(|b| b.digest.clone()),
        );
        for c in children {
            manifests.push(registry.get_manifest(name, &Reference::Digest(c)).await?);
        }
        i += 1;
    }
    blobs.sort();
    blobs.dedup();
    progress.image_started(image, blobs.len());
    for d in &blobs {
        if let Ok(size) = registry.stat_blob(name, d).await {
            s.blobs_present += 1;
            progress.blob_done(image, size, false);
            continue;
        }
        let size = match registry.pull_blob(name, d, true).await? {
            PulledBlob::Stored(size) => size,
            PulledBlob::Streaming { .. } => {
                return Err(RegistryError::Internal(
                    "a waiting pull returned a stream".into(),
                ))
            }
        };
        s.blobs_fetched += 1;
        s.bytes_fetched += size;
        progress.blob_done(image, size, true);
    }
    Ok(top_digest)
}

/// Progress as log lines (the periodic sync of `serve`).
pub struct LogProgress;

impl SyncProgress for LogProgress {
    fn image_started(&self, image: &str, blobs: usize) {
        tracing::debug!(image, blobs, "sync: image");
    }
    fn blob_done(&self, _image: &str, _size: u64, _fetched: bool) {}
    fn image_done(&self, image: &str, result: &Result<(), String>) {
        match result {
            Ok(()) => tracing::info!(image, "sync: image is local"),
            Err(e) => tracing::warn!(image, error = %e, "sync: image failed"),
        }
    }
    fn resuming(&self, prefix: &str, started: &str, done: usize) {
        tracing::info!(prefix, started, done, "sync: resuming an interrupted run");
    }
    fn image_skipped(&self, image: &str, at: &str) {
        tracing::debug!(image, at, "sync: skipped, done by the interrupted run");
    }
}
