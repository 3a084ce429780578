//! Retention policies (`storage.maintenance.retention.policies`): which tags a run deletes, which
//! earlier revisions it keeps, where it deletes untagged manifests. Decided from the scan (tag
//! times are their current links' times; revisions come from the tag index), before marking.
//!
//! Per repository, the **first** policy whose `repositories` matches applies; a repository no
//! policy matches is untouched by retention. A tag is **kept if any keep rule keeps it**:
//! `keepTags` matches its name, it was pushed less than `keepYoungerThan` ago, it is among the
//! `mostRecentlyPushedCount` most recently pushed tags, or it is younger than the run's delay.
//! Only a policy with at least one of the three tag rules deletes tags (the others); a policy
//! without any (say only `deleteUntagged` or `keepTagRevisions`) deletes no tag. That avoids
//! zot's trap, where a repository matched by a policy loses every tag no rule explicitly keeps.
//! For each kept tag, its `keepTagRevisions` most recent earlier digests (tag index, newest
//! first) are kept too, also from `deleteUntagged`. A deleted tag's manifest becomes untagged:
//! it goes only where untagged manifests go (`deleteUntagged` of the policy or of the run).
//!
//! A tag is deleted only if its current link still names the digest it was judged by (a push
//! that moved it meanwhile wins); then its folder goes (current link and history).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use super::inventory::Inventory;
use super::{older_than, Deletion};
use crate::config::retention::{Policy, RetentionConfig};
use crate::config::ConfigError;
use crate::oci::{Digest, RepositoryName, Tag};
use crate::storage::{layout, Result, StorageDriver};

/// The policies of a run (none: retention off).
#[derive(Debug, Clone, Default)]
pub struct Retention {
    policies: Vec<Policy>,
}

impl Retention {
    pub fn none() -> Retention {
        Retention::default()
    }

    pub fn from_config(c: &RetentionConfig) -> Result<Retention, ConfigError> {
        Ok(Retention {
            policies: c.compile()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    fn policy_for(&self, name: &RepositoryName) -> Option<&Policy> {
        let n = name.to_string();
        self.policies
            .iter()
            .find(|p| p.repositories.iter().any(|r| r.matches(&n)))
    }
}

/// What retention decided over one scan.
#[derive(Debug, Default)]
pub struct Decision {
    /// Tags to delete, with the digest each pointed at when judged.
    pub tags: BTreeMap<(RepositoryName, Tag), Digest>,
    /// Per repository, manifests kept as earlier revisions of kept tags.
    pub revisions: BTreeMap<RepositoryName, HashSet<Digest>>,
    /// Repositories whose untagged manifests go (their policy's `deleteUntagged`).
    pub untagged: BTreeSet<RepositoryName>,
}

impl Decision {
    /// The tag deletions, as a dry run lists them.
    pub fn deletions(&self) -> Vec<Deletion> {
        self.tags
            .iter()
            .map(|((n, t), d)| Deletion {
                kind: "tag",
                repository: Some(n.to_string()),
                digest: Some(d.to_string()),
                tag: Some(t.to_string()),
            })
            .collect()
    }
}

async fn current(
    driver: &dyn StorageDriver,
    n: &RepositoryName,
    t: &Tag,
) -> Result<Option<Digest>> {
    match driver.get_content(&layout::tag_current_link(n, t)).await {
        Ok(b) => Ok(layout::parse_link(&b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Applies the policies to `inv` (one read per tag of a matched repository).
pub async fn decide(
    driver: &dyn StorageDriver,
    inv: &Inventory,
    retention: &Retention,
    delay: Duration,
    now: SystemTime,
) -> Result<Decision> {
    let mut out = Decision::default();
    if retention.is_empty() {
        return Ok(out);
    }
    for (name, repo) in &inv.repos {
        let Some(p) = retention.policy_for(name) else {
            continue;
        };
        if p.delete_untagged {
            out.untagged.insert(name.clone());
        }
        // Newest push first; unknown times last; then by name.
        let mut tags: Vec<(&Tag, Option<SystemTime>)> = repo
            .tags
            .iter()
            .map(|t| (t, repo.tag_times.get(t).copied().flatten()))
            .collect();
        tags.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (i, (t, time)) in tags.into_iter().enumerate() {
            let young = |d: Duration| !older_than(time, d, now);
            let kept = !p.has_tag_rules()
                || (!delay.is_zero() && young(delay))
                || p.keep_tags.iter().any(|k| k.matches(t.as_str()))
                || p.keep_younger_than.is_some_and(young)
                || i < p.most_recently_pushed;
            let Some(cur) = current(driver, name, t).await? else {
                continue;
            };
            if !kept {
                out.tags.insert((name.clone(), t.clone()), cur);
                continue;
            }
            if p.keep_tag_revisions == 0 {
                continue;
            }
            let mut history: Vec<(&Digest, Option<SystemTime>)> = repo
                .tag_history
                .iter()
                .filter(|(ht, d, _)| ht == t && *d != cur)
                .map(|(_, d, when)| (d, *when))
                .collect();
            history.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            out.revisions.entry(name.clone()).or_default().extend(
                history
                    .into_iter()
                    .take(p.keep_tag_revisions)
                    .map(|(d, _)| d.clone()),
            );
        }
    }
    Ok(out)
}

/// Deletes the decided tags whose current link still names the judged digest. Returns how many
/// a push moved meanwhile (left alone).
pub async fn delete_tags(
    driver: &dyn StorageDriver,
    decision: &Decision,
    deletions: &mut Vec<Deletion>,
) -> Result<u64> {
    let mut moved = 0;
    for ((n, t), d) in &decision.tags {
        match current(driver, n, t).await? {
            Some(now) if &now == d => {}
            Some(_) => {
                moved += 1;
                tracing::info!(repository = %n, tag = %t, "retention: the tag moved meanwhile: kept");
                continue;
            }
            None => continue,
        }
        match driver.delete(&layout::tag_dir(n, t)).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
        tracing::info!(repository = %n, tag = %t, digest = %d, "retention: deleted tag");
        deletions.push(Deletion {
            kind: "tag",
            repository: Some(n.to_string()),
            digest: Some(d.to_string()),
            tag: Some(t.to_string()),
        });
    }
    Ok(moved)
}
