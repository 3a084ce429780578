//! Tombstones and the sweep (see the module docs of `lifecycle` for the order of writes and
//! checks that makes it safe next to pushes).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::inventory::Inventory;
use super::mark::{ManifestCache, Plan};
use super::{Deletion, Progress};
use crate::oci::{Digest, RepositoryName, Tag};
use crate::storage::{layout, Result, StorageDriver, StorageError};

/// Blobs deleted together: their links, moves and deletes go out in batches (S3 deletes 1,000
/// keys a call).
const BLOB_CHUNK: usize = 500;

/// Bytes in `gctrash` whose tombstone is older than this belong to a run that stopped: the next
/// run deletes them (a live run decides within seconds of moving them).
const STALE_TRASH: Duration = Duration::from_secs(15 * 60);

/// What the sweep adds up.
#[derive(Debug, Default)]
pub struct Sums {
    pub bytes: u64,
    /// Deletions undone because a push claimed the manifest or blob meanwhile.
    pub restored: u64,
}

async fn delete_if_exists(driver: &dyn StorageDriver, path: &str) -> Result<bool> {
    match driver.delete(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a folder holds anything (one listing; a `stat` of a folder costs more on object stores).
async fn dir_exists(driver: &dyn StorageDriver, path: &str) -> Result<bool> {
    match driver.list(path).await {
        Ok(names) => Ok(!names.is_empty()),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

fn link(d: &Digest) -> Bytes {
    Bytes::from(d.to_string())
}

/// Bytes a stopped run left in `gctrash`: back to `data` when a push cleared the tombstone, else
/// (once stale) deleted. What the scan saw decides: only a run writes tombstones, and under the
/// lease no other run is going on.
pub async fn finish_trash(driver: &dyn StorageDriver, inv: &Inventory) -> Result<()> {
    let now = SystemTime::now();
    let mut back = Vec::new();
    let mut doomed = Vec::new();
    for (d, b) in inv.blobs.iter() {
        let Some(size) = b.trash else {
            continue;
        };
        match b.tombstone {
            None if b.data.is_none() => {
                back.push((layout::blob_trash(d), layout::blob_data(d), size));
                tracing::info!(digest = %d, "restored a blob a stopped run had moved aside");
            }
            None => doomed.push(layout::blob_trash(d)),
            Some(t) if super::older_than(t, STALE_TRASH, now) => {
                doomed.push(layout::blob_trash(d));
                doomed.push(layout::blob_tombstone(d));
            }
            Some(_) => {}
        }
    }
    driver.rename_files(&back).await?;
    driver.delete_files(&doomed).await
}

/// Writes the tombstone of every candidate blob.
pub async fn tombstone(
    driver: &dyn StorageDriver,
    plan: &Plan,
    progress: &dyn Progress,
) -> Result<()> {
    progress.phase("tombstone", plan.blobs.len() as u64);
    // Unsynced: a tombstone lost in a crash only spares its blob (the run that wrote it died
    // with it, and a later run tombstones again); the hide that follows the grace makes every
    // surviving one durable before anything is deleted.
    let paths: Vec<String> = plan.blobs.iter().map(layout::blob_tombstone).collect();
    let chunks: Vec<Vec<String>> = paths.chunks(BLOB_CHUNK).map(<[String]>::to_vec).collect();
    futures::stream::iter(chunks)
        .map(|c| async move {
            driver.put_empty_files_unsynced(&c).await?;
            progress.step(c.len() as u64);
            Ok::<(), StorageError>(())
        })
        .buffer_unordered(2)
        .try_collect::<Vec<()>>()
        .await?;
    progress.done();
    Ok(())
}

/// The manifests of `name` that its tags reach now (read from storage), with children and
/// referrers, as far as `cache` knows them.
async fn reached_now(
    driver: &dyn StorageDriver,
    name: &RepositoryName,
    revisions: &HashSet<&Digest>,
    cache: &ManifestCache,
) -> Result<HashSet<Digest>> {
    let tags = match driver.list(&layout::tags_dir(name)).await {
        Ok(t) => t,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut queue = Vec::new();
    for t in tags.iter().filter_map(|t| t.parse::<Tag>().ok()) {
        match driver
            .get_content(&layout::tag_current_link(name, &t))
            .await
        {
            Ok(b) => queue.extend(layout::parse_link(&b)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for d in revisions {
        if let Some(s) = cache.get(d).and_then(|r| r.subject.as_ref()) {
            referrers.entry(s).or_default().push(d);
        }
    }
    let mut seen = HashSet::new();
    while let Some(d) = queue.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        if let Some(r) = cache.get(&d) {
            queue.extend(r.children.iter().cloned());
        }
        if let Some(rs) = referrers.get(&d) {
            queue.extend(rs.iter().map(|r| (*r).clone()));
        }
    }
    Ok(seen)
}

/// Deletes what `plan` (confirmed) names, manifests first, then blobs, then empty folders.
pub async fn sweep(
    driver: &dyn StorageDriver,
    inv: &Inventory,
    cache: &mut ManifestCache,
    plan: &Plan,
    progress: &dyn Progress,
    deletions: &mut Vec<Deletion>,
) -> Result<Sums> {
    let mut sums = Sums::default();
    progress.phase(
        "sweep",
        (super::total(&plan.manifests) + plan.blobs.len()) as u64,
    );
    let mut touched: BTreeSet<RepositoryName> = BTreeSet::new();

    // Every link of the deleted revisions at once (with their tag history and referrer entries),
    // then per repository the tags read again.
    let mut links: Vec<(String, String)> = Vec::new();
    for (name, digests) in &plan.manifests {
        let Some(repo) = inv.repos.get(name) else {
            continue;
        };
        touched.insert(name.clone());
        for d in digests {
            if repo.revision_extras.contains(d) {
                delete_if_exists(driver, &layout::manifest_revision_dir(name, d)).await?;
            } else {
                links.push((
                    layout::manifest_revision_link(name, d),
                    layout::manifest_revision_dir(name, d),
                ));
            }
            for (t, _) in repo.tag_index.iter().filter(|(_, x)| x == d) {
                links.push((
                    layout::tag_index_link(name, t, d),
                    layout::tag_index_dir(name, t, d),
                ));
            }
            for (s, r) in repo.referrers.iter().filter(|(s, r)| s == d || r == d) {
                links.push((
                    layout::referrer_link(name, s, r),
                    layout::referrer_dir(name, s, r),
                ));
            }
        }
    }
    delete_links(driver, &links).await?;
    for (name, digests) in &plan.manifests {
        let Some(repo) = inv.repos.get(name) else {
            continue;
        };
        progress.step(digests.len() as u64);
        // The tags as they are now, after the deletes: one that reaches a deleted manifest (a push
        // that raced this sweep) gets it back.
        let revisions: HashSet<&Digest> = repo.revisions.keys().collect();
        let reached = reached_now(driver, name, &revisions, cache).await?;
        for d in digests {
            if reached.contains(d) {
                driver
                    .put_content(&layout::manifest_revision_link(name, d), link(d))
                    .await?;
                if let Some(s) = cache.get(d).and_then(|r| r.subject.clone()) {
                    driver
                        .put_content(&layout::referrer_link(name, &s, d), link(d))
                        .await?;
                }
                sums.restored += 1;
                tracing::info!(repository = %name, digest = %d, "a push claimed a manifest being deleted: kept");
            } else {
                tracing::debug!(repository = %name, digest = %d, "deleted manifest");
                deletions.push(Deletion {
                    tag: None,
                    kind: "manifest",
                    repository: Some(name.to_string()),
                    digest: Some(d.to_string()),
                });
            }
        }
    }

    // Which repositories link each blob.
    let mut linked_by: HashMap<&Digest, Vec<&RepositoryName>> = HashMap::new();
    for (name, repo) in &inv.repos {
        for d in repo.layers.keys().filter(|d| plan.blobs.contains(*d)) {
            linked_by.entry(d).or_default().push(name);
        }
    }
    let work: Vec<(Digest, Vec<RepositoryName>)> = plan
        .blobs
        .iter()
        .map(|d| {
            let repos = linked_by.get(d).into_iter().flatten().map(|n| (*n).clone());
            (d.clone(), repos.collect())
        })
        .collect();
    let mut results: Vec<(Digest, Vec<RepositoryName>, Option<u64>)> = Vec::new();
    for chunk in work.chunks(BLOB_CHUNK) {
        let sizes = delete_blobs(driver, inv, chunk).await?;
        progress.step(chunk.len() as u64);
        results.extend(
            chunk
                .iter()
                .cloned()
                .zip(sizes)
                .map(|((d, repos), size)| (d, repos, size)),
        );
    }
    let mut prefixes = BTreeSet::new();
    for (d, repos, size) in results {
        match size {
            Some(size) => {
                sums.bytes += size;
                prefixes.insert(layout::blob_prefix_dir(&d));
                deletions.push(Deletion {
                    tag: None,
                    kind: "blob",
                    repository: None,
                    digest: Some(d.to_string()),
                });
                for name in repos {
                    deletions.push(Deletion {
                        tag: None,
                        kind: "layer_link",
                        repository: Some(name.to_string()),
                        digest: Some(d.to_string()),
                    });
                    touched.insert(name);
                }
            }
            None => sums.restored += 1,
        }
    }
    progress.done();

    for p in &prefixes {
        driver.prune_empty_dirs(p).await?;
    }
    for name in touched {
        driver.prune_empty_dirs(&layout::repo_root(&name)).await?;
        let mut gone = true;
        for dir in layout::repo_content_dirs(&name) {
            gone &= !dir_exists(driver, &dir).await?;
        }
        if gone {
            deletions.push(Deletion {
                tag: None,
                kind: "repository",
                repository: Some(name.to_string()),
                digest: None,
            });
        }
    }
    Ok(sums)
}

/// Deletes link files and, on backends with real folders, the folders they leave empty (what
/// deleting each link's folder did, without listing it first on object stores).
async fn delete_links(driver: &dyn StorageDriver, links: &[(String, String)]) -> Result<()> {
    let files: Vec<String> = links.iter().map(|(f, _)| f.clone()).collect();
    driver.delete_files(&files).await?;
    let dirs: Vec<String> = links.iter().map(|(_, d)| d.clone()).collect();
    driver.prune_empty_dirs_of(&dirs).await
}

/// Deletes blobs (each with its `_layers` links in the repositories given), a chunk at a time
/// with batched calls, in the order the protocol needs for every blob: all links first, then
/// the bytes moved aside, then each tombstone checked. Answers per blob `Some(size)` when
/// deleted, `None` when a push claimed it (all put back: the bytes, and the links the scan saw).
async fn delete_blobs(
    driver: &dyn StorageDriver,
    inv: &Inventory,
    blobs: &[(Digest, Vec<RepositoryName>)],
) -> Result<Vec<Option<u64>>> {
    let links: Vec<(String, String)> = blobs
        .iter()
        .flat_map(|(d, repos)| {
            repos
                .iter()
                .map(move |n| (layout::layer_link(n, d), layout::layer_dir(n, d)))
        })
        .collect();
    delete_links(driver, &links).await?;
    // The sizes come from the scan: a digest's bytes do not change.
    let size = |d: &Digest| {
        inv.blobs
            .get(d)
            .and_then(|b| b.data.map(|(s, _)| s))
            .unwrap_or(0)
    };
    let moves: Vec<(String, String, u64)> = blobs
        .iter()
        .map(|(d, _)| (layout::blob_data(d), layout::blob_trash(d), size(d)))
        .collect();
    let moved = driver.rename_files(&moves).await?;
    // Only now, with every one of these blobs hidden, the tombstones.
    let tombstones: Vec<String> = blobs
        .iter()
        .map(|(d, _)| layout::blob_tombstone(d))
        .collect();
    let tombstoned = driver.files_exist(&tombstones).await?;
    let mut doomed = Vec::new();
    let mut back = Vec::new();
    let mut relink = Vec::new();
    let mut out = Vec::with_capacity(blobs.len());
    for (((d, repos), moved), tombstoned) in blobs.iter().zip(moved).zip(tombstoned) {
        if tombstoned {
            if moved {
                doomed.push(layout::blob_trash(d));
            }
            doomed.push(layout::blob_last_used(d));
            doomed.push(layout::blob_tombstone(d));
            out.push(Some(if moved { size(d) } else { 0 }));
        } else {
            // A push cleared the tombstone: it counts on the blob. Put everything back.
            if moved {
                back.push((layout::blob_trash(d), layout::blob_data(d), size(d)));
            }
            relink.extend(repos.iter().map(|n| (layout::layer_link(n, d), d)));
            tracing::info!(digest = %d, "a push claimed a blob being deleted: kept");
            out.push(None);
        }
    }
    driver.rename_files(&back).await?;
    for (path, d) in relink {
        driver.put_content(&path, link(d)).await?;
    }
    driver.delete_files(&doomed).await?;
    let emptied: Vec<String> = blobs
        .iter()
        .zip(&out)
        .filter(|(_, size)| size.is_some())
        .map(|((d, _), _)| layout::blob_dir(d))
        .collect();
    driver.prune_empty_dirs_of(&emptied).await?;
    Ok(out)
}

/// Removes the tombstones of blobs this run does not delete (claimed by pushes, kept by the fresh
/// mark, or left by a stopped run).
pub async fn clear_stale_tombstones(
    driver: &dyn StorageDriver,
    inv: &Inventory,
    plan: &Plan,
    deletions: &[Deletion],
) -> Result<()> {
    let deleted: HashSet<String> = deletions
        .iter()
        .filter(|d| d.kind == "blob")
        .filter_map(|d| d.digest.clone())
        .collect();
    let _ = plan;
    let stale: Vec<Digest> = inv
        .blobs
        .iter()
        .filter(|(d, b)| {
            b.tombstone.is_some() && b.trash.is_none() && !deleted.contains(&d.to_string())
        })
        .map(|(d, _)| d.clone())
        .collect();
    let stale: Vec<String> = stale.iter().map(layout::blob_tombstone).collect();
    driver.delete_files(&stale).await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::lifecycle::NoProgress;
    use crate::storage::memory::hooked::{Hooked, Hooks};
    use crate::storage::memory::MemoryDriver;

    /// Hooks that log the calls the sweep makes and, right after the move that hides
    /// `claimed`'s bytes, delete its tombstone: a push claiming the blob at the worst moment.
    struct Claiming {
        claimed: Digest,
        log: Mutex<Vec<(&'static str, Vec<String>)>>,
    }

    impl Claiming {
        /// Index of the first logged call `op` naming `path`.
        fn first(&self, op: &str, path: &str) -> usize {
            let log = self.log.lock().unwrap();
            log.iter()
                .position(|(o, ps)| *o == op && ps.iter().any(|p| p == path))
                .unwrap_or_else(|| panic!("no {op} of {path} in {log:?}"))
        }
    }

    #[async_trait]
    impl Hooks for Claiming {
        async fn before(&self, _: &MemoryDriver, op: &'static str, paths: &[String]) {
            self.log.lock().unwrap().push((op, paths.to_vec()));
        }
        async fn after(&self, inner: &MemoryDriver, op: &'static str, paths: &[String]) {
            let hidden = layout::blob_data(&self.claimed);
            if op == "rename_files" && paths.contains(&hidden) {
                inner
                    .delete(&layout::blob_tombstone(&self.claimed))
                    .await
                    .unwrap();
            }
        }
    }

    fn digest(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    /// Every blob is unlinked, then hidden, then its tombstone checked; a blob claimed between
    /// the hide and the check comes back whole (bytes and links), the other goes whole.
    #[tokio::test]
    async fn links_go_before_the_bytes_are_hidden_and_a_claim_after_the_hide_restores() {
        let (kept, gone) = (digest("claimed"), digest("garbage"));
        let d = Hooked::new(Claiming {
            claimed: kept.clone(),
            log: Mutex::new(Vec::new()),
        });
        let app: RepositoryName = "app".parse().unwrap();
        for b in [&kept, &gone] {
            d.inner
                .put_content(&layout::blob_data(b), Bytes::from_static(b"bytes"))
                .await
                .unwrap();
            d.inner
                .put_content(&layout::blob_tombstone(b), Bytes::new())
                .await
                .unwrap();
            d.inner
                .put_content(&layout::layer_link(&app, b), link(b))
                .await
                .unwrap();
        }
        d.inner
            .put_content(&layout::blob_last_used(&gone), Bytes::new())
            .await
            .unwrap();
        let inv = Inventory::scan(&d, &NoProgress).await.unwrap();
        let plan = Plan {
            blobs: [kept.clone(), gone.clone()].into_iter().collect(),
            ..Default::default()
        };
        let mut deletions = Vec::new();
        let sums = sweep(
            &d,
            &inv,
            &mut ManifestCache::default(),
            &plan,
            &NoProgress,
            &mut deletions,
        )
        .await
        .unwrap();
        assert_eq!(sums.restored, 1);
        assert_eq!(sums.bytes, 5);
        let kinds: Vec<(&str, Option<String>)> = deletions
            .iter()
            .map(|x| (x.kind, x.digest.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("blob", Some(gone.to_string())),
                ("layer_link", Some(gone.to_string())),
            ]
        );
        for b in [&kept, &gone] {
            let unlink = d.hooks.first("delete_files", &layout::layer_link(&app, b));
            let hide = d.hooks.first("rename_files", &layout::blob_data(b));
            let check = d.hooks.first("stat", &layout::blob_tombstone(b));
            assert!(
                unlink < hide && hide < check,
                "{b}: {unlink} {hide} {check}"
            );
        }
        // The claimed blob: bytes back in place, link back, nothing left aside.
        assert_eq!(
            &d.inner
                .get_content(&layout::blob_data(&kept))
                .await
                .unwrap()[..],
            b"bytes"
        );
        assert!(d.inner.stat(&layout::layer_link(&app, &kept)).await.is_ok());
        assert!(d.inner.stat(&layout::blob_trash(&kept)).await.is_err());
        // The other: every file of it gone, and its link.
        for p in [
            layout::blob_data(&gone),
            layout::blob_trash(&gone),
            layout::blob_tombstone(&gone),
            layout::blob_last_used(&gone),
            layout::layer_link(&app, &gone),
        ] {
            assert!(d.inner.stat(&p).await.unwrap_err().is_not_found(), "{p}");
        }
    }
}
