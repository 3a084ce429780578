//! Bounded in-process caches of the read paths' metadata.
//!
//! [`DigestCache`]: digest-addressed content — manifests (bytes and parsed form) and blob sizes.
//! Safe because what a digest names never changes: the bytes under `blobs/<alg>/<hex>/data` are
//! the content with that digest or nothing. Only their *existence* can change, and only offline
//! (distribution's `garbage-collect` runs with the registry stopped or read-only); entries expire
//! after [`TTL`] to bound that, and a read that finds the bytes gone drops the entry.
//!
//! [`LinkCache`]: what a repository says — tag links (`tags/<t>/current/link`), manifest revision
//! links and layer links — for a short, configurable time (`storage.cache.linkTTL`, `0` turns it
//! off). Tags move and links are deleted, so this cache is exact for this process's own writes and
//! bounded-stale for other writers:
//! - every write that can move a tag or remove a link (manifest push, manifest/tag/blob delete)
//!   drops the repository's entries once the storage write is done, and bumps a generation so that
//!   a read that began before the write cannot put the old answer back;
//! - only positive answers are cached ("the tag points at D", "the link exists"), so a blob or tag
//!   created by another replica is visible at once; a tag moved or a link deleted by another
//!   replica (or by a tool on the storage) is seen within the TTL.
//!
//! Write paths (upload completion, manifest push, mount) never consult either cache: they read
//! storage.
//!
//! Both are bounded by entries (and bytes); when full, a cache is emptied (cheap, and rare in
//! practice: a registry's hot set is small).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::oci::Digest;

/// How long an entry is trusted.
pub const TTL: Duration = Duration::from_secs(60);

/// A bounded digest-keyed cache of `V` (cheap to clone).
pub struct DigestCache<V> {
    state: Mutex<State<V>>,
    max_entries: usize,
    max_bytes: usize,
}

struct State<V> {
    map: HashMap<Digest, (V, Instant, usize)>,
    bytes: usize,
}

impl<V: Clone> DigestCache<V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> DigestCache<V> {
        DigestCache {
            state: Mutex::new(State {
                map: HashMap::new(),
                bytes: 0,
            }),
            max_entries,
            max_bytes,
        }
    }

    pub fn get(&self, d: &Digest) -> Option<V> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.map.get(d) {
            Some((v, at, _)) if at.elapsed() < TTL => Some(v.clone()),
            Some(_) => {
                if let Some((_, _, n)) = s.map.remove(d) {
                    s.bytes -= n;
                }
                None
            }
            None => None,
        }
    }

    /// Caches `v`, which takes about `bytes` of memory.
    pub fn insert(&self, d: Digest, v: V, bytes: usize) {
        if bytes > self.max_bytes / 4 {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.map.len() >= self.max_entries || s.bytes + bytes > self.max_bytes {
            s.map.clear();
            s.bytes = 0;
        }
        if let Some((_, _, old)) = s.map.insert(d, (v, Instant::now(), bytes)) {
            s.bytes -= old;
        }
        s.bytes += bytes;
    }

    pub fn remove(&self, d: &Digest) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, n)) = s.map.remove(d) {
            s.bytes -= n;
        }
    }
}

/// The link cache: positive link answers per repository, for `ttl`.
pub struct LinkCache {
    ttl: Duration,
    max_entries: usize,
    state: Mutex<LinkState>,
}

struct LinkState {
    /// Bumped by every invalidation; an insert made with an older token is dropped.
    generation: u64,
    /// Repository -> link path -> (what the link says, when read).
    repos: HashMap<String, HashMap<String, (Digest, Instant)>>,
    entries: usize,
}

/// Taken before a storage read whose answer may be cached (see [`LinkCache::insert`]).
#[derive(Debug, Clone, Copy)]
pub struct LinkToken(u64);

impl LinkCache {
    /// A cache trusting answers for `ttl` (zero: never caches).
    pub fn new(ttl: Duration, max_entries: usize) -> LinkCache {
        LinkCache {
            ttl,
            max_entries,
            state: Mutex::new(LinkState {
                generation: 0,
                repos: HashMap::new(),
                entries: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `path` of `repo` said within the TTL, if cached.
    pub fn get(&self, repo: &str, path: &str) -> Option<Digest> {
        if self.ttl.is_zero() {
            return None;
        }
        let s = self.lock();
        match s.repos.get(repo).and_then(|m| m.get(path)) {
            Some((d, at)) if at.elapsed() < self.ttl => Some(d.clone()),
            _ => None,
        }
    }

    /// The token to pass to [`insert`](Self::insert) for a read about to start.
    pub fn token(&self) -> LinkToken {
        LinkToken(self.lock().generation)
    }

    /// Caches that `path` of `repo` says `d`, unless an invalidation happened since `token`.
    pub fn insert(&self, repo: &str, path: &str, d: Digest, token: LinkToken) {
        if self.ttl.is_zero() {
            return;
        }
        let mut s = self.lock();
        if s.generation != token.0 {
            return;
        }
        if s.entries >= self.max_entries {
            s.repos.clear();
            s.entries = 0;
        }
        let fresh = s
            .repos
            .entry(repo.to_string())
            .or_default()
            .insert(path.to_string(), (d, Instant::now()))
            .is_none();
        if fresh {
            s.entries += 1;
        }
    }

    /// Forgets everything cached about `repo` and fences off reads in flight.
    pub fn invalidate(&self, repo: &str) {
        let mut s = self.lock();
        s.generation += 1;
        if let Some(m) = s.repos.remove(repo) {
            s.entries -= m.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    fn d(i: u8) -> Digest {
        Digest::of(Algorithm::Sha256, &[i])
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let c = DigestCache::new(2, 1000);
        c.insert(d(1), 1u32, 10);
        c.insert(d(2), 2, 10);
        assert_eq!(c.get(&d(1)), Some(1));
        c.insert(d(3), 3, 10); // full: emptied first
        assert_eq!(c.get(&d(1)), None);
        assert_eq!(c.get(&d(3)), Some(3));
        c.insert(d(4), 4, 300); // over a quarter of the budget: not cached
        assert_eq!(c.get(&d(4)), None);
        c.remove(&d(3));
        assert_eq!(c.get(&d(3)), None);
    }

    #[test]
    fn link_cache_invalidates_per_repository_and_fences_reads_in_flight() {
        let c = LinkCache::new(Duration::from_secs(60), 3);
        let t = c.token();
        c.insert("a", "a/tag", d(1), t);
        c.insert("a/b", "a/b/tag", d(2), t);
        assert_eq!(c.get("a", "a/tag"), Some(d(1)));
        assert_eq!(c.get("a/b", "a/b/tag"), Some(d(2)));

        // A read began (token), a write invalidated "a", the read's old answer is not cached.
        let before_write = c.token();
        c.invalidate("a");
        assert_eq!(c.get("a", "a/tag"), None);
        assert_eq!(
            c.get("a/b", "a/b/tag"),
            Some(d(2)),
            "other repositories keep theirs"
        );
        c.insert("a", "a/tag", d(1), before_write);
        assert_eq!(c.get("a", "a/tag"), None);
        c.insert("a", "a/tag", d(3), c.token());
        assert_eq!(c.get("a", "a/tag"), Some(d(3)));

        // Bounded: the fourth entry empties the cache first.
        let t = c.token();
        c.insert("x", "x/1", d(4), t);
        c.insert("y", "y/1", d(5), t);
        assert_eq!(c.get("a", "a/tag"), None);
        assert_eq!(c.get("y", "y/1"), Some(d(5)));
    }

    #[test]
    fn link_cache_expires_and_can_be_off() {
        let c = LinkCache::new(Duration::from_millis(30), 10);
        c.insert("a", "p", d(1), c.token());
        assert_eq!(c.get("a", "p"), Some(d(1)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get("a", "p"), None);

        let off = LinkCache::new(Duration::ZERO, 10);
        off.insert("a", "p", d(1), off.token());
        assert_eq!(off.get("a", "p"), None);
    }
}
