//! Bounded in-process caches of digest-addressed metadata: manifests (bytes and parsed form) and
//! blob sizes, keyed by digest.
//!
//! Safe because what a digest names never changes: the bytes under `blobs/<alg>/<hex>/data` are
//! the content with that digest or nothing. Only their *existence* can change, and only offline
//! (distribution's `garbage-collect` runs with the registry stopped or read-only); entries expire
//! after [`TTL`] to bound that, and a read that finds the bytes gone drops the entry.
//!
//! Never cached: anything a repository or a tag says (link files). Tags move and links are
//! deleted, by this process or another replica, so every request still reads them. Write paths
//! (upload completion, manifest push, mount) never consult the cache either: they stat storage.
//!
//! Bounded by entries and bytes; when full, the cache is emptied (cheap, and rare in practice:
//! a registry's hot set of manifests is small).

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
}
