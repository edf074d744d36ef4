//! Unit tests of the cache; the expiry tests move a hand-held clock.

use super::*;
use std::sync::atomic::AtomicUsize;

fn limits(ttl_ms: u64, max: usize) -> CacheLimits {
    CacheLimits {
        ttl: Duration::from_millis(ttl_ms),
        max_entries: max,
        idle: Duration::ZERO,
    }
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct HandClock {
    start: Instant,
    offset_ms: Arc<AtomicU64>,
}

impl HandClock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            offset_ms: Arc::new(AtomicU64::new(0)),
        }
    }
    fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
    fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.start + Duration::from_millis(me.offset_ms.load(Ordering::SeqCst)))
    }
}

async fn load(cache: &KeyCache<String>, i: u8) -> Lookup {
    cache
        .get_or_load([i; 32], || async move {
            Ok(SecretKey::from_slice(&[i; 32]).unwrap())
        })
        .await
        .1
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
    assert_eq!(load(&cache, 1).await, Lookup::Miss);
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn ttl_and_size_bound() {
    let hand = HandClock::new();
    let cache: KeyCache<String> = KeyCache::with_clock(limits(100, 2), hand.clock());
    for i in 0..3u8 {
        load(&cache, i).await;
        hand.advance(1);
    }
    assert_eq!(cache.len(), 2, "size bound holds");
    assert_eq!(
        load(&cache, 0).await,
        Lookup::Miss,
        "oldest entry was evicted"
    );
    assert_eq!(load(&cache, 2).await, Lookup::Hit);
    hand.advance(100);
    assert_eq!(
        load(&cache, 2).await,
        Lookup::Miss,
        "entry expired after its TTL"
    );
}

#[tokio::test]
async fn ttl_zero_disables_caching() {
    let cache: KeyCache<String> = KeyCache::new(limits(0, 10));
    for _ in 0..2 {
        assert_eq!(load(&cache, 3).await, Lookup::Miss);
    }
    assert!(cache.is_empty());
}

#[tokio::test]
async fn purge_removes_exactly_the_expired_entries() {
    let hand = HandClock::new();
    let cache: KeyCache<String> = KeyCache::with_clock(limits(1000, 100), hand.clock());
    load(&cache, 1).await;
    hand.advance(400);
    load(&cache, 2).await;
    hand.advance(400);
    load(&cache, 3).await;
    let start = hand.clock()();
    assert_eq!(
        cache.purge_expired(),
        Some(start - Duration::from_millis(800) + Duration::from_secs(1))
    );
    assert_eq!(cache.len(), 3);
    hand.advance(200); // key 1 is 1000 ms old: expired, exactly at its TTL
    assert_eq!(
        cache.purge_expired(),
        Some(start - Duration::from_millis(400) + Duration::from_secs(1))
    );
    assert_eq!(cache.len(), 2);
    hand.advance(10_000);
    assert_eq!(cache.purge_expired(), None);
    assert!(cache.is_empty(), "no lookup needed to forget expired keys");
}

#[tokio::test]
async fn a_key_stored_again_keeps_one_live_record() {
    let hand = HandClock::new();
    let cache: KeyCache<String> = KeyCache::with_clock(limits(100, 10), hand.clock());
    load(&cache, 1).await;
    hand.advance(60);
    load(&cache, 2).await;
    cache.invalidate(Some(&[1; 32]));
    hand.advance(10);
    assert_eq!(load(&cache, 1).await, Lookup::Miss);
    // Key 1's first record is stale: it must neither expire the new key 1
    // nor stop the sweep before key 2.
    hand.advance(95); // key 2 is 105 ms old, the new key 1 is 95 ms old
    cache.purge_expired();
    assert_eq!(cache.len(), 1);
    assert_eq!(load(&cache, 1).await, Lookup::Hit);
    assert_eq!(load(&cache, 2).await, Lookup::Miss);
}

#[tokio::test]
async fn new_limits_apply_to_cached_entries() {
    let hand = HandClock::new();
    let cache: KeyCache<String> = KeyCache::with_clock(limits(300_000, 10), hand.clock());
    for i in 0..4 {
        load(&cache, i).await;
        hand.advance(1000);
    }
    // A smaller bound evicts the oldest at once.
    cache.set_limits(limits(300_000, 3));
    assert_eq!(cache.len(), 3);
    assert_eq!(load(&cache, 3).await, Lookup::Hit);
    // A shorter TTL counts from when each key was stored: keys 1 and 2 are
    // 3 s and 2 s old, key 3 is 1 s old.
    cache.set_limits(limits(1500, 3));
    assert_eq!(cache.len(), 1);
    // TTL 0 empties the cache, and nothing is cached while it stays 0.
    cache.set_limits(limits(0, 3));
    assert!(cache.is_empty());
    assert_eq!(load(&cache, 3).await, Lookup::Miss);
    assert!(cache.is_empty());
    // Back to a long TTL: what was purged stays purged.
    cache.set_limits(limits(300_000, 3));
    assert_eq!(load(&cache, 3).await, Lookup::Miss);
    assert_eq!(load(&cache, 3).await, Lookup::Hit);
}

async fn load_capped(cache: &KeyCache<String>, i: u8, cap_ms: u64) {
    let _ = cache
        .get_or_load_capped([i; 32], [i; 16], || async move {
            Ok((
                SecretKey::from_slice(&[i; 32]).unwrap(),
                Some(Duration::from_millis(cap_ms)),
            ))
        })
        .await;
}

#[tokio::test]
async fn a_capped_entry_expires_at_its_cap_and_keeps_the_order() {
    let hand = HandClock::new();
    let cache = KeyCache::with_clock(limits(10_000, 100), hand.clock());
    load(&cache, 1).await; // expires at 10 s
    load_capped(&cache, 2, 3_000).await; // expires at 3 s
    assert_eq!(
        cache.remaining(&[2; 32]),
        Some(Duration::from_millis(3_000))
    );
    assert_eq!(
        cache.remaining(&[1; 32]),
        Some(Duration::from_millis(10_000))
    );
    // The sweeper's view: the capped entry is the next to expire.
    assert_eq!(
        cache.purge_expired(),
        Some(hand.clock()() + Duration::from_millis(3_000))
    );
    hand.advance(3_000);
    assert_eq!(
        cache.purge_expired(),
        Some(hand.clock()() + Duration::from_millis(7_000))
    );
    assert_eq!(cache.len(), 1, "the capped entry left at its cap");
    assert_eq!(load(&cache, 1).await, Lookup::Hit);
    assert_eq!(load(&cache, 2).await, Lookup::Miss);
}

#[tokio::test]
async fn a_zero_cap_is_not_cached_and_a_long_cap_is_the_ttl() {
    let hand = HandClock::new();
    let cache = KeyCache::with_clock(limits(5_000, 100), hand.clock());
    load_capped(&cache, 1, 0).await;
    assert!(cache.is_empty());
    load_capped(&cache, 2, 60_000).await;
    assert_eq!(
        cache.remaining(&[2; 32]),
        Some(Duration::from_millis(5_000))
    );
}

#[tokio::test]
async fn a_flush_by_tag_removes_that_customer_key_only() {
    let cache: KeyCache<String> = KeyCache::new(limits(60_000, 100));
    load_capped(&cache, 1, 60_000).await;
    load_capped(&cache, 2, 60_000).await;
    assert_eq!(cache.flush(Some(&[1; 16])), 1);
    assert_eq!(load(&cache, 2).await, Lookup::Hit);
    assert_eq!(cache.flush(None), 1);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn a_load_in_flight_during_a_flush_is_answered_but_not_cached() {
    let cache: Arc<KeyCache<String>> = Arc::new(KeyCache::new(limits(60_000, 100)));
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let c = Arc::clone(&cache);
    let task = tokio::spawn(async move {
        c.get_or_load([9; 32], || async move {
            let _ = started_tx.send(());
            let _ = wait.await;
            Ok(SecretKey::from_slice(&[9; 32]).unwrap())
        })
        .await
    });
    started.await.unwrap();
    cache.flush(None);
    go.send(()).unwrap();
    let (got, lookup) = task.await.unwrap();
    assert!(got.is_ok());
    assert_eq!(lookup, Lookup::Miss);
    assert!(cache.is_empty(), "the flushed generation's load was cached");
}

#[tokio::test]
async fn an_unused_key_leaves_at_the_idle_limit_and_a_used_one_stays() {
    let hand = HandClock::new();
    let cache = KeyCache::with_clock(
        CacheLimits {
            ttl: Duration::from_millis(10_000),
            max_entries: 100,
            idle: Duration::from_millis(1_000),
        },
        hand.clock(),
    );
    load(&cache, 1).await;
    load(&cache, 2).await;
    hand.advance(600);
    assert_eq!(
        load(&cache, 1).await,
        Lookup::Hit,
        "used: idle clock restarts"
    );
    hand.advance(500);
    // Key 2 has not been used for 1100 ms; key 1 for 500 ms.
    assert_eq!(
        cache.purge_expired(),
        Some(hand.clock()() + Duration::from_millis(500)),
        "the sweeper wakes when key 1 goes idle"
    );
    assert_eq!(cache.len(), 1);
    assert_eq!(load(&cache, 1).await, Lookup::Hit);
    hand.advance(1_000);
    // A lookup alone does not serve an idle key.
    assert_eq!(load(&cache, 1).await, Lookup::Miss);
}

#[tokio::test]
async fn a_miss_says_whether_the_key_was_never_cached_expired_or_flushed() {
    let hand = HandClock::new();
    let cache = KeyCache::with_clock(limits(1_000, 100), hand.clock());
    assert_eq!(cache.miss_reason(&[1; 32]), MissReason::Cold);
    load_capped(&cache, 1, 60_000).await;
    load_capped(&cache, 2, 60_000).await;
    hand.advance(1_000);
    // Expired but not swept yet, then swept.
    assert_eq!(cache.miss_reason(&[1; 32]), MissReason::Expired);
    cache.purge_expired();
    assert_eq!(cache.miss_reason(&[1; 32]), MissReason::Expired);
    load_capped(&cache, 3, 60_000).await;
    cache.flush(Some(&[3; 16]));
    assert_eq!(cache.miss_reason(&[3; 32]), MissReason::Flushed);
    load_capped(&cache, 3, 60_000).await;
    cache.flush(None);
    assert_eq!(cache.miss_reason(&[3; 32]), MissReason::Flushed);
}
