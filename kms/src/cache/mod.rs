//! Node-local cache of unwrapped customer keys.
//!
//! Entries live in zeroizing memory for an absolute TTL counted from when the
//! key was unwrapped, the number of entries is bounded (the oldest goes first,
//! which with an absolute TTL is also the one closest to expiry), and
//! concurrent misses for the same key share one load ("single flight"), so a
//! burst of requests for an uncached customer key costs the backend one unwrap.
//!
//! Expired entries are not merely skipped: [`sweep`] removes them on time (see
//! there), so no plaintext customer key stays in the cache past its TTL, and
//! [`KeyCache::set_limits`] applies new limits at once (a reload to
//! `kms.cache.ttl=0` empties the cache).
//!
//! With `kms.cache.idle-ttl`, an entry nobody used for that long goes
//! before its TTL (the sweeper scans for them). In a cluster, a key served
//! by its owner is kept no longer than the owner keeps it (a cap, see
//! [`KeyCache::get_or_load_capped`]). Entries carry their customer key id,
//! so an operator can [`KeyCache::flush`] one customer key; a flush also
//! bumps a generation, and a load that started before it is not cached.

mod state;
mod sweep;
#[cfg(test)]
mod tests;

pub use sweep::sweep;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OnceCell};

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
    /// An entry not used for this long goes before its TTL; zero: no idle limit.
    pub idle: Duration,
}

impl CacheLimits {
    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max_entries > 0
    }
}

/// What a flush by key names: the customer key's id (several blobs, e.g.
/// after a rewrap, may carry one id).
pub type Tag = [u8; 16];

/// Why a key is not in the cache, for the backend-unwrap metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissReason {
    /// Never cached (or evicted to stay within `kms.cache.max-entries`).
    Cold,
    /// Its TTL or idle limit ran out.
    Expired,
    /// An operator flushed it.
    Flushed,
}

impl MissReason {
    pub fn label(self) -> &'static str {
        match self {
            MissReason::Cold => "cold",
            MissReason::Expired => "expired",
            MissReason::Flushed => "flush",
        }
    }
}

/// Where the cache reads the time: the monotonic clock, or a test's own.
pub(crate) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A load's result: the key, and at most how long to keep it (a key served
/// by the cluster's owner lives here no longer than it does there).
type Loaded<E> = Result<(Arc<SecretKey>, Option<Duration>), E>;

type Flight<E> = Arc<OnceCell<Loaded<E>>>;

struct State<E> {
    limits: CacheLimits,
    /// Each key with when it was stored, its customer key id, and when it was last used.
    entries: HashMap<CacheKey, (Arc<SecretKey>, Instant, Tag, Instant)>,
    /// Keys in the order they were stored, with the same instant as in
    /// `entries`; a record whose instant differs (the key was stored again or
    /// removed) is stale and skipped.
    order: VecDeque<(CacheKey, Instant)>,
    /// Loads in flight, with the generation they started in.
    flights: HashMap<CacheKey, (Flight<E>, u64)>,
    /// Bumped by every invalidation: a load that started before one is
    /// handed to its callers but not cached.
    generation: u64,
    /// Keys that left by expiry or flush (bounded; for the metrics only).
    gone: HashMap<CacheKey, MissReason>,
}

/// The cache. `E` is the loader's error type.
pub struct KeyCache<E> {
    state: Mutex<State<E>>,
    clock: Clock,
    /// Wakes the sweeper when an entry lands in an empty cache or the limits change.
    changed: Arc<Notify>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<E> Drop for KeyCache<E> {
    fn drop(&mut self) {
        // Let the sweeper see that its cache is gone.
        self.changed.notify_one();
    }
}

/// Whether a lookup was served from memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl<E: Clone> KeyCache<E> {
    pub fn new(limits: CacheLimits) -> Self {
        Self::with_clock(limits, Arc::new(Instant::now))
    }

    pub(crate) fn with_clock(limits: CacheLimits, clock: Clock) -> Self {
        Self {
            state: Mutex::new(State {
                limits,
                entries: HashMap::new(),
                order: VecDeque::new(),
                flights: HashMap::new(),
                generation: 0,
                gone: HashMap::new(),
            }),
            clock,
            changed: Arc::new(Notify::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
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
        self.get_or_load_capped(
            id,
            [0; 16],
            || async move { load().await.map(|k| (k, None)) },
        )
        .await
    }

    /// As [`KeyCache::get_or_load`], for a loader that may also cap how long
    /// its key stays cached (`Some(cap)`, below the TTL; `Some(ZERO)`: not at all).
    pub async fn get_or_load_capped<F, Fut>(
        &self,
        id: CacheKey,
        tag: Tag,
        load: F,
    ) -> (Result<Arc<SecretKey>, E>, Lookup)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretKey, Option<Duration>), E>>,
    {
        let flight = {
            let mut st = self.lock();
            let now = (self.clock)();
            let fresh = st.entries.get(&id).is_some_and(|(_, stored, _, used)| {
                !st.expired(*stored, now) && !st.idle(*used, now)
            });
            if let (true, Some((key, _, _, used))) = (fresh, st.entries.get_mut(&id)) {
                *used = now;
                let key = Arc::clone(key);
                drop(st);
                self.hits.fetch_add(1, Ordering::Relaxed);
                return (Ok(key), Lookup::Hit);
            }
            let generation = st.generation;
            let (flight, started) = st
                .flights
                .entry(id)
                .or_insert_with(|| (Arc::new(OnceCell::new()), generation));
            (Arc::clone(flight), *started)
        };
        let (flight, started) = flight;
        let mut ran = false;
        let result = flight
            .get_or_init(|| {
                ran = true;
                async move { load().await.map(|(k, cap)| (Arc::new(k), cap)) }
            })
            .await
            .clone();
        // Whichever caller of this flight takes the lock first retires the
        // flight and caches its result: that may be a waiter rather than the
        // caller that ran the load (on a busy machine the loader can be
        // descheduled between finishing the load and taking this lock, and
        // a loader-only insert then cached nothing).
        let mut st = self.lock();
        if st
            .flights
            .get(&id)
            .is_some_and(|(f, _)| Arc::ptr_eq(f, &flight))
        {
            st.flights.remove(&id);
            let current = started == st.generation;
            if let (true, true, Ok((key, cap))) = (st.limits.enabled(), current, &result) {
                self.insert(&mut st, id, (Arc::clone(key), tag), *cap);
            }
        }
        drop(st);
        let lookup = if ran { Lookup::Miss } else { Lookup::Hit };
        let counter = if ran { &self.misses } else { &self.hits };
        counter.fetch_add(1, Ordering::Relaxed);
        (result.map(|(k, _)| k), lookup)
    }

    /// Why `id` is not served from memory now (only meaningful on a miss).
    pub fn miss_reason(&self, id: &CacheKey) -> MissReason {
        let st = self.lock();
        if st.entries.contains_key(id) {
            return MissReason::Expired;
        }
        st.gone.get(id).copied().unwrap_or(MissReason::Cold)
    }

    /// How long `id` stays cached from now, if it is cached.
    pub fn remaining(&self, id: &CacheKey) -> Option<Duration> {
        let st = self.lock();
        let (_, stored, _, _) = st.entries.get(id)?;
        let now = (self.clock)();
        (*stored + st.limits.ttl)
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }

    /// Store `key`; with a `cap` shorter than the TTL, the entry is stored as
    /// if it had been loaded earlier, so it expires `cap` from now and `order`
    /// stays sorted by expiry (the sweeper and eviction rely on it).
    fn insert(
        &self,
        st: &mut State<E>,
        id: CacheKey,
        (key, tag): (Arc<SecretKey>, Tag),
        cap: Option<Duration>,
    ) {
        let now = (self.clock)();
        let stored = match cap {
            Some(cap) if cap < st.limits.ttl => match now.checked_sub(st.limits.ttl - cap) {
                Some(at) if !cap.is_zero() => at,
                _ => return, // nothing left to keep
            },
            _ => now,
        };
        st.purge(now);
        let max = st.limits.max_entries;
        st.shrink_to(max.saturating_sub(1));
        let was_empty = st.entries.is_empty();
        st.gone.remove(&id);
        st.entries.insert(id, (key, stored, tag, now));
        let mut first = was_empty;
        if st.order.back().is_none_or(|(_, at)| *at <= stored) {
            st.order.push_back((id, stored));
        } else {
            let pos = st.order.partition_point(|(_, at)| *at <= stored);
            st.order.insert(pos, (id, stored));
            first |= pos == 0;
        }
        // The sweeper sleeps until the front expires: wake it for a new front.
        if first {
            self.changed.notify_one();
        }
    }

    /// Apply new limits now: a shorter TTL or a smaller bound evicts at once,
    /// and limits that turn caching off empty the cache.
    pub fn set_limits(&self, limits: CacheLimits) {
        let mut st = self.lock();
        st.limits = limits;
        if limits.enabled() {
            st.purge((self.clock)());
            st.shrink_to(limits.max_entries);
        } else {
            st.entries.clear();
            st.order.clear();
        }
        drop(st);
        self.changed.notify_one();
    }

    /// The limits in force.
    pub fn limits(&self) -> CacheLimits {
        self.lock().limits
    }

    /// Remove every expired entry now; when the next one expires, if any.
    pub fn purge_expired(&self) -> Option<Instant> {
        let now = (self.clock)();
        let mut st = self.lock();
        let absolute = st.purge(now);
        let idle = st.purge_idle(now);
        match (absolute, idle) {
            (Some(a), Some(i)) => Some(a.min(i)),
            (a, i) => a.or(i),
        }
    }

    /// Forget every blob of the customer key `tag`, or everything (`None`);
    /// loads in flight are not cached. The number of entries removed.
    pub fn flush(&self, tag: Option<&Tag>) -> usize {
        let mut st = self.lock();
        st.generation += 1;
        let before = st.entries.len();
        let gone: Vec<CacheKey> = st
            .entries
            .iter()
            .filter(|(_, (_, _, t, _))| tag.is_none_or(|tag| t == tag))
            .map(|(id, _)| *id)
            .collect();
        // Their records in `order` turn stale and are skipped.
        for id in gone {
            st.entries.remove(&id);
            st.note_gone(id, MissReason::Flushed);
        }
        if tag.is_none() {
            st.order.clear();
        }
        before - st.entries.len()
    }

    /// Forget one key (e.g. after a rewrap) or everything.
    pub fn invalidate(&self, id: Option<&CacheKey>) {
        let mut st = self.lock();
        st.generation += 1;
        match id {
            // Its record in `order` turns stale and is skipped.
            Some(id) => {
                st.entries.remove(id);
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
