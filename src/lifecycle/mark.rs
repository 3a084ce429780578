//! Mark: what the tags reach, and the candidates for deletion.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use futures::StreamExt;

use super::inventory::Inventory;
use super::retention::Decision;
use super::{older_than, Deletion, GcError, GcOptions, Progress, Result};
use crate::oci::{Digest, ParsedManifest, RepositoryName, Tag};
use crate::storage::{layout, StorageDriver};

/// Storage calls in flight while marking.
const CONCURRENCY: usize = 16;

/// What a manifest references.
#[derive(Debug, Clone, Default)]
pub struct Refs {
    /// Config and layers (foreign layers excluded: they are not in the registry).
    pub blobs: Vec<Digest>,
    /// Child manifests (index).
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
}

/// Manifests read so far, by digest (`None`: no content in the blob store). Digest-addressed, so
/// valid for the whole run.
#[derive(Default)]
pub struct ManifestCache {
    map: HashMap<Digest, Option<Refs>>,
}

impl ManifestCache {
    pub fn get(&self, d: &Digest) -> Option<&Refs> {
        self.map.get(d).and_then(Option::as_ref)
    }

    /// Reads every digest of `want` not read yet.
    async fn load(
        &mut self,
        driver: &dyn StorageDriver,
        want: impl IntoIterator<Item = Digest>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let missing: BTreeSet<Digest> = want
            .into_iter()
            .filter(|d| !self.map.contains_key(d))
            .collect();
        let mut reads = futures::stream::iter(missing)
            .map(|d| async move {
                let r = driver.get_content(&layout::blob_data(&d)).await;
                (d, r)
            })
            .buffer_unordered(CONCURRENCY);
        while let Some((d, r)) = reads.next().await {
            progress.step(1);
            let refs = match r {
                Ok(body) => Some(refs_of(&d, &body)?),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    return Err(GcError::Storage {
                        phase: "mark",
                        left: super::LEFT_NOTHING,
                        source: e,
                    })
                }
            };
            self.map.insert(d, refs);
        }
        Ok(())
    }
}

/// The references of a manifest's bytes. A manifest our parser refuses (schema1, say) is read
/// conservatively: every digest in it (`digest`, `blobSum`) counts as a referenced blob.
fn refs_of(d: &Digest, body: &[u8]) -> Result<Refs> {
    if let Ok(p) = ParsedManifest::parse(body, None) {
        return Ok(Refs {
            blobs: p
                .blobs
                .iter()
                .filter(|b| !b.is_foreign())
                .map(|b| b.digest.clone())
                .collect(),
            children: p.manifests.iter().map(|m| m.digest.clone()).collect(),
            subject: p.subject.map(|s| s.digest),
        });
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| GcError::BadManifest {
        digest: d.to_string(),
        detail: e.to_string(),
    })?;
    fn digests(v: &serde_json::Value, out: &mut Vec<Digest>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("digest" | "blobSum", serde_json::Value::String(s)) => {
                            out.extend(s.parse::<Digest>().ok())
                        }
                        _ => digests(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| digests(v, out)),
            _ => {}
        }
    }
    let mut blobs = Vec::new();
    digests(&v, &mut blobs);
    Ok(Refs {
        blobs,
        ..Default::default()
    })
}

/// The outcome of a mark.
#[derive(Debug, Default)]
pub struct Marked {
    pub tags: u64,
    /// Per repository, the manifests kept.
    pub kept: BTreeMap<RepositoryName, HashSet<Digest>>,
    /// Every blob a kept manifest references, and the kept manifests' own digests.
    pub kept_blobs: HashSet<Digest>,
    /// Kept manifests without content.
    pub unreadable: Vec<String>,
}

/// What retention adds to a mark: tags it deletes (skipped while they still name the judged
/// digest, when `exclude_tags`), revisions it keeps, repositories where untagged manifests go.
pub struct Roots<'a> {
    pub decision: &'a Decision,
    pub exclude_tags: bool,
}

/// Marks from every tag of `inv` (read now), as [the module](super) describes.
pub async fn mark(
    driver: &dyn StorageDriver,
    inv: &Inventory,
    cache: &mut ManifestCache,
    opts: &GcOptions,
    roots: &Roots<'_>,
    progress: &dyn Progress,
    phase: &'static str,
) -> Result<Marked> {
    let tag_count: usize = inv.repos.values().map(|r| r.tags.len()).sum();
    let revisions: BTreeSet<Digest> = inv
        .repos
        .values()
        .flat_map(|r| r.revisions.keys().cloned())
        .collect();
    progress.phase(phase, (tag_count + revisions.len()) as u64);

    // Every tag's current link.
    let tag_paths: Vec<(RepositoryName, Tag, String)> = inv
        .repos
        .iter()
        .flat_map(|(n, r)| {
            r.tags
                .iter()
                .map(move |t| (n.clone(), t.clone(), layout::tag_current_link(n, t)))
        })
        .collect();
    let mut targets: BTreeMap<RepositoryName, Vec<Digest>> = BTreeMap::new();
    let mut reads = futures::stream::iter(tag_paths)
        .map(|(n, t, p)| async move {
            let r = driver.get_content(&p).await;
            (n, t, r)
        })
        .buffer_unordered(CONCURRENCY);
    let mut tags = 0;
    while let Some((n, t, r)) = reads.next().await {
        progress.step(1);
        match r {
            Ok(b) => {
                if let Some(d) = layout::parse_link(&b) {
                    if roots.exclude_tags && roots.decision.tags.get(&(n.clone(), t)) == Some(&d) {
                        // Retention deletes this tag.
                        continue;
                    }
                    tags += 1;
                    targets.entry(n).or_default().push(d);
                }
            }
            // Deleted since the scan.
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(GcError::Storage {
                    phase,
                    left: super::LEFT_NOTHING,
                    source: e,
                })
            }
        }
    }
    drop(reads);

    cache
        .load(
            driver,
            revisions
                .iter()
                .cloned()
                .chain(targets.values().flatten().cloned()),
            progress,
        )
        .await?;

    let now = SystemTime::now();
    let mut out = Marked {
        tags,
        ..Default::default()
    };
    let mut unreadable = BTreeSet::new();
    for (name, repo) in &inv.repos {
        // Referrers by subject, among this repository's manifests.
        let mut referrers: HashMap<Digest, Vec<Digest>> = HashMap::new();
        for d in repo.revisions.keys() {
            if let Some(s) = cache.get(d).and_then(|r| r.subject.clone()) {
                referrers.entry(s).or_default().push(d.clone());
            }
        }
        let mut queue: Vec<Digest> = targets.get(name).cloned().unwrap_or_default();
        let delete_untagged = opts.delete_untagged || roots.decision.untagged.contains(name);
        let revisions_kept = roots.decision.revisions.get(name);
        for (d, t) in &repo.revisions {
            if !delete_untagged
                || !older_than(*t, opts.delay, now)
                || revisions_kept.is_some_and(|k| k.contains(d))
            {
                queue.push(d.clone());
            }
        }
        let mut kept = HashSet::new();
        while let Some(d) = queue.pop() {
            if kept.contains(&d) {
                continue;
            }
            if !cache.map.contains_key(&d) {
                cache.load(driver, [d.clone()], progress).await?;
            }
            match cache.get(&d) {
                Some(refs) => {
                    queue.extend(refs.children.iter().cloned());
                    out.kept_blobs.extend(refs.blobs.iter().cloned());
                }
                None => {
                    unreadable.insert(d.to_string());
                }
            }
            if let Some(rs) = referrers.get(&d) {
                queue.extend(rs.iter().cloned());
            }
            out.kept_blobs.insert(d.clone());
            kept.insert(d);
        }
        out.kept.insert(name.clone(), kept);
    }
    out.unreadable = unreadable.into_iter().collect();
    progress.done();
    Ok(out)
}

/// What a run means to delete.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Per repository, manifest revisions.
    pub manifests: BTreeMap<RepositoryName, Vec<Digest>>,
    pub blobs: BTreeSet<Digest>,
    pub young_kept: u64,
}

/// The candidates of a mark.
pub fn candidates(inv: &Inventory, marked: &Marked, opts: &GcOptions, now: SystemTime) -> Plan {
    let mut plan = Plan::default();
    for (name, repo) in &inv.repos {
        let kept = marked.kept.get(name);
        let mut gone: Vec<Digest> = repo
            .revisions
            .keys()
            .filter(|d| !kept.is_some_and(|k| k.contains(*d)))
            .cloned()
            .collect();
        if !gone.is_empty() {
            gone.sort();
            plan.manifests.insert(name.clone(), gone);
        }
    }
    for (d, b) in &inv.blobs {
        if b.data.is_none() || marked.kept_blobs.contains(d) {
            continue;
        }
        if older_than(b.touched(), opts.delay, now) {
            plan.blobs.insert(d.clone());
        } else {
            plan.young_kept += 1;
        }
    }
    plan
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty() && self.blobs.is_empty()
    }

    /// Whether repository `name` holds nothing once the plan is carried out.
    pub fn empties(&self, inv: &Inventory, name: &RepositoryName) -> bool {
        let Some(repo) = inv.repos.get(name) else {
            return false;
        };
        let gone: HashSet<&Digest> = self.manifests.get(name).into_iter().flatten().collect();
        repo.tags.is_empty()
            && repo.uploads.is_empty()
            && repo.revisions.keys().all(|d| gone.contains(d))
            && repo.layers.keys().all(|d| self.blobs.contains(d))
    }

    /// The plan as a sorted list of deletions (for a dry run).
    pub fn deletions(&self, inv: &Inventory) -> Vec<Deletion> {
        let mut out = Vec::new();
        for (name, ds) in &self.manifests {
            for d in ds {
                out.push(Deletion {
                    tag: None,
                    kind: "manifest",
                    repository: Some(name.to_string()),
                    digest: Some(d.to_string()),
                });
            }
        }
        for d in &self.blobs {
            out.push(Deletion {
                tag: None,
                kind: "blob",
                repository: None,
                digest: Some(d.to_string()),
            });
        }
        for (name, repo) in &inv.repos {
            for d in repo.layers.keys().filter(|d| self.blobs.contains(*d)) {
                out.push(Deletion {
                    tag: None,
                    kind: "layer_link",
                    repository: Some(name.to_string()),
                    digest: Some(d.to_string()),
                });
            }
            if self.empties(inv, name) {
                out.push(Deletion {
                    tag: None,
                    kind: "repository",
                    repository: Some(name.to_string()),
                    digest: None,
                });
            }
        }
        out.sort();
        out
    }

    /// The candidates still candidates in `fresh` (a plan from a fresh scan and mark), blobs only
    /// with their tombstone still in place; and how many dropped out.
    pub fn confirm(&self, fresh: &Plan, inv: &Inventory) -> (Plan, u64) {
        let mut out = Plan::default();
        let mut dropped = 0;
        for (name, ds) in &self.manifests {
            let now: HashSet<&Digest> = fresh.manifests.get(name).into_iter().flatten().collect();
            let keep: Vec<Digest> = ds.iter().filter(|d| now.contains(d)).cloned().collect();
            dropped += (ds.len() - keep.len()) as u64;
            if !keep.is_empty() {
                out.manifests.insert(name.clone(), keep);
            }
        }
        for d in &self.blobs {
            let tombstoned = inv.blobs.get(d).is_some_and(|b| b.tombstone.is_some());
            if fresh.blobs.contains(d) && tombstoned {
                out.blobs.insert(d.clone());
            } else {
                dropped += 1;
            }
        }
        (out, dropped)
    }
}
