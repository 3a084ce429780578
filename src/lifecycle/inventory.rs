//! The scan: what storage holds, from one walk of `repositories/` and one of `blobs/`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use super::Progress;
use crate::oci::{Digest, RepositoryName, Tag};
use crate::storage::layout::{self, BlobFile, RepoFile};
use crate::storage::{Result, StorageDriver};

/// One repository's files.
#[derive(Debug, Default)]
pub struct Repo {
    /// `_layers` links, with the link's time.
    pub layers: HashMap<Digest, Option<SystemTime>>,
    /// Manifest revision links, with the link's time.
    pub revisions: HashMap<Digest, Option<SystemTime>>,
    /// Revisions whose folder holds more than the link (old stores' signatures): deleted as a
    /// folder.
    pub revision_extras: HashSet<Digest>,
    /// Tags with a current link.
    pub tags: BTreeSet<Tag>,
    /// Tag history entries.
    pub tag_index: Vec<(Tag, Digest)>,
    /// When each tag's current link was written (its last push).
    pub tag_times: HashMap<Tag, Option<SystemTime>>,
    /// Tag history entries with the time of their link (the push of that digest to that tag).
    pub tag_history: Vec<(Tag, Digest, Option<SystemTime>)>,
    /// Referrer entries `(subject, referrer)`.
    pub referrers: Vec<(Digest, Digest)>,
    /// Uploads in progress (uuid).
    pub uploads: BTreeSet<String>,
}

/// One blob folder's files.
#[derive(Debug, Default, Clone, Copy)]
pub struct Blob {
    /// `data`: size and time.
    pub data: Option<(u64, Option<SystemTime>)>,
    pub tombstone: Option<Option<SystemTime>>,
    pub last_used: Option<Option<SystemTime>>,
    /// Bytes moved aside by a run that has not finished with them.
    pub trash: Option<u64>,
}

impl Blob {
    /// When the blob was last stored or found by a push.
    pub fn touched(&self) -> Option<SystemTime> {
        let data = self.data.and_then(|(_, t)| t);
        let used = self.last_used.flatten();
        data.max(used)
    }
}

/// Everything the scan found.
#[derive(Debug, Default)]
pub struct Inventory {
    pub repos: BTreeMap<RepositoryName, Repo>,
    pub blobs: HashMap<Digest, Blob>,
}

impl Inventory {
    /// Walks the two trees (a few list calls per thousand files on object stores).
    pub async fn scan(driver: &dyn StorageDriver, progress: &dyn Progress) -> Result<Inventory> {
        progress.phase("scan", 2);
        let mut inv = Inventory::default();
        for e in walk(driver, &layout::repositories_root()).await? {
            let Some((name, file)) = layout::parse_repo_path(&e.path) else {
                if let Some((name, d)) = layout::parse_revision_extra(&e.path) {
                    inv.repos.entry(name).or_default().revision_extras.insert(d);
                }
                continue;
            };
            let repo = inv.repos.entry(name).or_default();
            match file {
                RepoFile::Layer(d) => {
                    repo.layers.insert(d, e.modified);
                }
                RepoFile::Revision(d) => {
                    repo.revisions.insert(d, e.modified);
                }
                RepoFile::TagCurrent(t) => {
                    repo.tag_times.insert(t.clone(), e.modified);
                    repo.tags.insert(t);
                }
                RepoFile::TagIndex(t, d) => {
                    repo.tag_history.push((t.clone(), d.clone(), e.modified));
                    repo.tag_index.push((t, d));
                }
                RepoFile::Referrer { subject, referrer } => {
                    repo.referrers.push((subject, referrer))
                }
                RepoFile::Upload { uuid, .. } => {
                    repo.uploads.insert(uuid);
                }
            }
        }
        progress.step(1);
        for e in walk(driver, &layout::blobs_root()).await? {
            let Some((d, file)) = layout::parse_blob_path(&e.path) else {
                continue;
            };
            let b = inv.blobs.entry(d).or_default();
            match file {
                BlobFile::Data => b.data = Some((e.size, e.modified)),
                BlobFile::Tombstone => b.tombstone = Some(e.modified),
                BlobFile::LastUsed => b.last_used = Some(e.modified),
                BlobFile::Trash => b.trash = Some(e.size),
            }
        }
        progress.step(1);
        progress.done();
        Ok(inv)
    }
}

async fn walk(driver: &dyn StorageDriver, path: &str) -> Result<Vec<crate::storage::WalkEntry>> {
    match driver.walk(path).await {
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        r => r,
    }
}
