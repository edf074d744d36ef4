//! Node-local cache of unwrapped customer keys.
//!
//! Entries live in zeroizing memory for an absolute TTL, the number of entries
//! is bounded (the oldest goes first, which with an absolute TTL is also the
//! one closest to expiry), and concurrent misses for the same key share one
//! load ("single flight"), so a burst of requests for an uncached customer key
//! costs the backend one unwrap.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::envelope::SecretKey;

/// Cache identity of a customer key: SHA-256 of its whole wrapped blob, so a
/// blob only hits the cache if it is byte for byte one the backend unwrapped.
pub type CacheKey = [u8; 32];

/// Cache limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Absolute lifetime of an entry; zero turns caching off (single flight stays).
    pub ttl: Duration,
    /// Most entries held at once; zero turns caching off.
    pub max_entries: usize,
}

type Flight<E> = Arc<OnceCell<Result<Arc<SecretKey>, E>>>;

struct State<E> {
    entries: HashMap<CacheKey, (Arc<SecretKey>, Instant)>,
    order: VecDeque<CacheKey>,
    flights: HashMap<CacheKey, Flight<E>>,
}

/// The cache. `E` is the loader's error type.
pub struct KeyCache<E> {
    limits: CacheLimits,
    state: Mutex<State<E>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Whether a lookup was served from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl<E: Clone> KeyCache<E> {
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State {
                entries: HashMap::new(),
                order: VecDeque::new(),
                flights: HashMap::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn enabled(&self) -> bool {
        !self.limits.ttl.is_zero() && self.limits.max_entries > 0
    }

    fn lock(&self) -> MutexGuard<'_, State<E>> {
        // A poisoned lock means a panic while holding it; with panic=abort in
        // release that cannot happen, and the map stays consistent anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Return the cached key for `id`, or run `load` (once for all concurrent
    /// callers) and cache its result. Errors are shared with the callers that
    /// waited, and never cached.
    pub async fn get_or_load<F, Fut>(
        &self,
        id: CacheKey,
        load: F,
    ) -> (Result<Arc<SecretKey>, E>, Lookup)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SecretKey, E>>,
    {
        let flight = {
            let mut st = self.lock();
            if let Some((key, expires)) = st.entries.get(&id) {
                if Instant::now() < *expires {
                    let key = Arc::clone(key);
                    drop(st);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return (Ok(key), Lookup::Hit);
                }
                st.entries.remove(&id);
            }
            Arc::clone(
                st.flights
                    .entry(id)
                    .or_insert_with(|| Arc::new(OnceCell::new())),
            )
        };
        let mut ran = false;
        let result = flight
            .get_or_init(|| {
                ran = true;
                async move { load().await.map(Arc::new) }
            })
            .await
            .clone();
        // Whichever caller of this flight takes the lock first retires the
        // flight and caches its result: that may be a waiter rather than the
        // caller that ran the load (on a busy machine the loader can be
        // descheduled between finishing the load and taking this lock, and
        // a loader-only insert then cached nothing).
        let mut st = self.lock();
        if st.flights.get(&id).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            st.flights.remove(&id);
            if let (true, Ok(key)) = (self.enabled(), &result) {
                self.insert(&mut st, id, Arc::clone(key));
            }
        }
        drop(st);
        let lookup = if ran { Lookup::Miss } else { Lookup::Hit };
        let counter = if ran { &self.misses } else { &self.hits };
        counter.fetch_add(1, Ordering::Relaxed);
        (result, lookup)
    }

    fn insert(&self, st: &mut State<E>, id: CacheKey, key: Arc<SecretKey>) {
        let now = Instant::now();
        while st.entries.len() >= self.limits.max_entries {
            match st.order.pop_front() {
                Some(old) => {
                    st.entries.remove(&old);
                }
                None => break,
            }
        }
        // Drop expired entries from the front while we are here.
        while let Some(front) = st.order.front().copied() {
            match st.entries.get(&front) {
                Some((_, exp)) if *exp > now => break,
                _ => {
                    st.order.pop_front();
                    st.entries.remove(&front);
                }
            }
        }
        if st
            .entries
            .insert(id, (key, now + self.limits.ttl))
            .is_none()
        {
            st.order.push_back(id);
        }
    }

    /// Forget one key (e.g. after a rewrap) or everything.
    pub fn invalidate(&self, id: Option<&CacheKey>) {
        let mut st = self.lock();
        match id {
            Some(id) => {
                st.entries.remove(id);
                st.order.retain(|k| k != id);
            }
            None => {
                st.entries.clear();
                st.order.clear();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) since start.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn limits(ttl_ms: u64, max: usize) -> CacheLimits {
        CacheLimits {
            ttl: Duration::from_millis(ttl_ms),
            max_entries: max,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache: Arc<KeyCache<String>> = Arc::new(KeyCache::new(limits(60_000, 10)));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, loads) = (Arc::clone(&cache), Arc::clone(&loads));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load([7; 32], || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(SecretKey::from_slice(&[1; 32]).unwrap())
                    })
                    .await
            }));
        }
        for t in tasks {
            let (r, _) = t.await.unwrap();
            assert_eq!(r.unwrap().expose(), &[1; 32]);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.counters(), (49, 1));
    }

    /// A shared load is cached however the callers are scheduled: the caller
    /// that ran it may take the state lock after a waiter did.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_shared_load_is_cached_whoever_finishes_first() {
        for round in 0..3000u32 {
            let cache: Arc<KeyCache<String>> = Arc::new(KeyCache::new(limits(60_000, 10)));
            let gate = Arc::new(tokio::sync::Notify::new());
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let (cache, gate) = (Arc::clone(&cache), Arc::clone(&gate));
                tasks.push(tokio::spawn(async move {
                    cache
                        .get_or_load([9; 32], || async move {
                            gate.notified().await;
                            Ok(SecretKey::from_slice(&[2; 32]).unwrap())
                        })
                        .await
                }));
            }
            tokio::task::yield_now().await;
            gate.notify_one();
            for t in tasks {
                assert!(t.await.unwrap().0.is_ok());
            }
            assert_eq!(
                cache.len(),
                1,
                "round {round}: the loaded key was not cached"
            );
        }
    }

    #[tokio::test]
    async fn errors_are_shared_but_not_cached() {
        let cache: KeyCache<String> = KeyCache::new(limits(60_000, 10));
        let (r, l) = cache
            .get_or_load([1; 32], || async { Err("down".to_string()) })
            .await;
        assert_eq!((r.unwrap_err().as_str(), l), ("down", Lookup::Miss));
        let (r, l) = cache
            .get_or_load([1; 32], || async {
                Ok(SecretKey::from_slice(&[2; 32]).unwrap())
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(l, Lookup::Miss);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn ttl_and_size_bound() {
        let cache: KeyCache<String> = KeyCache::new(limits(100, 2));
        for i in 0..3u8 {
            let _ = cache
                .get_or_load([i; 32], || async move {
                    Ok(SecretKey::from_slice(&[i; 32]).unwrap())
                })
                .await;
        }
        assert_eq!(cache.len(), 2, "size bound holds");
        let (_, l) = cache
            .get_or_load([0; 32], || async {
                Ok(SecretKey::from_slice(&[0; 32]).unwrap())
            })
            .await;
        assert_eq!(l, Lookup::Miss, "oldest entry was evicted");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (_, l) = cache
            .get_or_load([2; 32], || async {
                Ok(SecretKey::from_slice(&[2; 32]).unwrap())
            })
            .await;
        assert_eq!(l, Lookup::Miss, "entry expired after its TTL");
    }

    #[tokio::test]
    async fn ttl_zero_disables_caching() {
        let cache: KeyCache<String> = KeyCache::new(limits(0, 10));
        for _ in 0..2 {
            let (_, l) = cache
                .get_or_load([3; 32], || async {
                    Ok(SecretKey::from_slice(&[3; 32]).unwrap())
                })
                .await;
            assert_eq!(l, Lookup::Miss);
        }
        assert!(cache.is_empty());
    }
}
