//! A bounded TTL cache of decisions that also coalesces concurrent identical lookups.
//!
//! Keys are 32-byte hashes (callers hash the token together with the question, so no secret is
//! kept). `get_or_fetch` returns a fresh cached value, or joins the fetch already in flight for the
//! same key, or starts one: N concurrent identical questions cost one call. Only successes are
//! cached, for `ttl` (0 = not at all, but in-flight coalescing still applies); failures are shared
//! by the callers that were waiting on them and then forgotten. At most `max` entries are kept:
//! when full, expired entries go first, then every settled one (in-flight fetches are never
//! dropped). The fetch future runs to completion even if the caller that started it goes away,
//! as long as any caller still waits on it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

type Pending<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

enum Slot<V, E> {
    Ready(V, Instant),
    Pending(Pending<V, E>),
}

/// Counters for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub joined: u64,
    pub fetches: u64,
}

pub struct DecisionCache<V, E> {
    ttl: Duration,
    max: usize,
    inner: Mutex<Inner<V, E>>,
}

struct Inner<V, E> {
    map: HashMap<[u8; 32], Slot<V, E>>,
    stats: CacheStats,
}

impl<V, E> DecisionCache<V, E>
where
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    pub fn new(ttl: Duration, max: usize) -> Self {
        DecisionCache {
            ttl,
            max: max.max(1),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                stats: CacheStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V, E>> {
        // A panic while holding this lock cannot leave the map inconsistent: use it anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn get_or_fetch<F, Fut>(&self, key: [u8; 32], fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let fut = {
            let mut inner = self.lock();
            match inner.map.get(&key) {
                Some(Slot::Ready(v, at)) if at.elapsed() < self.ttl => {
                    let v = v.clone();
                    inner.stats.hits += 1;
                    return Ok(v);
                }
                Some(Slot::Pending(p)) => {
                    let p = p.clone();
                    inner.stats.joined += 1;
                    p
                }
                _ => {
                    if inner.map.len() >= self.max && !inner.map.contains_key(&key) {
                        self.evict(&mut inner);
                    }
                    let p = fetch().boxed().shared();
                    inner.map.insert(key, Slot::Pending(p.clone()));
                    inner.stats.fetches += 1;
                    p
                }
            }
        };
        let result = fut.clone().await;
        let mut inner = self.lock();
        let ours = matches!(inner.map.get(&key), Some(Slot::Pending(p)) if p.ptr_eq(&fut));
        if ours {
            match &result {
                Ok(v) if !self.ttl.is_zero() => {
                    inner
                        .map
                        .insert(key, Slot::Ready(v.clone(), Instant::now()));
                }
                _ => {
                    inner.map.remove(&key);
                }
            }
        }
        result
    }

    fn evict(&self, inner: &mut Inner<V, E>) {
        let ttl = self.ttl;
        inner.map.retain(|_, s| match s {
            Slot::Ready(_, at) => at.elapsed() < ttl,
            Slot::Pending(_) => true,
        });
        if inner.map.len() >= self.max {
            inner.map.retain(|_, s| matches!(s, Slot::Pending(_)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn key(i: u8) -> [u8; 32] {
        [i; 32]
    }

    #[tokio::test]
    async fn caches_and_coalesces() {
        let cache: Arc<DecisionCache<bool, String>> =
            Arc::new(DecisionCache::new(Duration::from_secs(60), 100));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(key(1), move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>(true)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(true));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let again = cache
            .get_or_fetch(key(1), || async { Ok::<_, String>(false) })
            .await;
        assert_eq!(again, Ok(true), "cached");
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_ttl_zero_caches_nothing() {
        let cache: DecisionCache<bool, String> = DecisionCache::new(Duration::from_secs(60), 10);
        let r = cache
            .get_or_fetch(key(2), || async { Err::<bool, _>("down".to_string()) })
            .await;
        assert!(r.is_err());
        assert!(cache.is_empty());
        let r = cache
            .get_or_fetch(key(2), || async { Ok::<_, String>(true) })
            .await;
        assert_eq!(r, Ok(true));

        let nocache: DecisionCache<bool, String> = DecisionCache::new(Duration::ZERO, 10);
        for _ in 0..3 {
            nocache
                .get_or_fetch(key(3), || async { Ok::<_, String>(true) })
                .await
                .unwrap();
        }
        assert_eq!(nocache.stats().fetches, 3);
        assert!(nocache.is_empty());
    }

    #[tokio::test]
    async fn bounded() {
        let cache: DecisionCache<u8, String> = DecisionCache::new(Duration::from_secs(60), 8);
        for i in 0..100u8 {
            cache
                .get_or_fetch(key(i), move || async move { Ok::<_, String>(i) })
                .await
                .unwrap();
            assert!(cache.len() <= 8);
        }
    }
}
