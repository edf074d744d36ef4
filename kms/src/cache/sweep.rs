//! The sweeper: removes expired customer keys from memory on time, without
//! waiting for a lookup or an insert to notice them.
//!
//! It sleeps until the oldest entry expires, then removes every expired
//! entry. It also wakes when an entry lands in an empty cache or the limits
//! change, and at the latest every [`MAX_SWEEP_INTERVAL`] (a safety net: the
//! exact wake-up already covers every entry). So a key leaves memory at its
//! TTL, give or take the timer's resolution, whatever the TTL is.

use std::sync::Weak;
use std::time::{Duration, Instant};

use super::KeyCache;

/// The longest the sweeper sleeps.
pub const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// How long to sleep at `now` when the next entry expires at `next`.
fn wait(next: Option<Instant>, now: Instant) -> Duration {
    next.map_or(MAX_SWEEP_INTERVAL, |at| at.saturating_duration_since(now))
        .min(MAX_SWEEP_INTERVAL)
}

/// Sweep `cache` until it is dropped. Spawn it once per cache.
pub async fn sweep<E: Clone + Send + Sync + 'static>(cache: Weak<KeyCache<E>>) {
    loop {
        let (changed, pause) = {
            let Some(cache) = cache.upgrade() else {
                return;
            };
            let next = cache.purge_expired();
            // The sleep is in real time: `next` comes from the cache's clock,
            // which is the monotonic clock outside tests.
            (
                std::sync::Arc::clone(&cache.changed),
                wait(next, (cache.clock)()),
            )
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheLimits;
    use crate::envelope::SecretKey;
    use std::sync::Arc;

    #[test]
    fn the_wait_is_the_time_to_the_next_expiry_capped() {
        let now = Instant::now();
        assert_eq!(wait(None, now), MAX_SWEEP_INTERVAL);
        assert_eq!(
            wait(Some(now + Duration::from_millis(1500)), now),
            Duration::from_millis(1500)
        );
        assert_eq!(wait(Some(now), now), Duration::ZERO);
        assert_eq!(
            wait(Some(now + Duration::from_secs(300)), now),
            MAX_SWEEP_INTERVAL
        );
    }

    async fn fill(cache: &KeyCache<String>, n: u8) {
        for i in 0..n {
            let _ = cache
                .get_or_load([i; 32], || async move {
                    Ok(SecretKey::from_slice(&[i; 32]).unwrap())
                })
                .await;
        }
    }

    /// Waits (up to 30 s) until `cache` holds `n` entries, looking only at its length.
    async fn wait_len(cache: &KeyCache<String>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while cache.len() != n {
            assert!(
                Instant::now() < deadline,
                "the cache still holds {} entries, expected {n}",
                cache.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn expired_entries_leave_memory_without_a_lookup() {
        let cache: Arc<KeyCache<String>> = Arc::new(KeyCache::new(CacheLimits {
            ttl: Duration::from_millis(200),
            max_entries: 100,
            idle: Duration::ZERO,
        }));
        let task = tokio::spawn(sweep(Arc::downgrade(&cache)));
        fill(&cache, 5).await;
        assert_eq!(cache.len(), 5);
        // No lookup, no insert from here on: only the sweeper can empty it.
        wait_len(&cache, 0).await;
        // It keeps working for entries stored into the now empty cache.
        fill(&cache, 3).await;
        wait_len(&cache, 0).await;
        task.abort();
    }

    #[tokio::test]
    async fn a_shorter_ttl_is_applied_to_entries_already_cached() {
        let cache: Arc<KeyCache<String>> = Arc::new(KeyCache::new(CacheLimits {
            ttl: Duration::from_secs(3600),
            max_entries: 100,
            idle: Duration::ZERO,
        }));
        let task = tokio::spawn(sweep(Arc::downgrade(&cache)));
        fill(&cache, 4).await;
        cache.set_limits(CacheLimits {
            ttl: Duration::from_millis(100),
            max_entries: 100,
            idle: Duration::ZERO,
        });
        wait_len(&cache, 0).await;
        task.abort();
    }

    #[tokio::test]
    async fn the_sweeper_ends_with_its_cache() {
        let cache: Arc<KeyCache<String>> = Arc::new(KeyCache::new(CacheLimits {
            ttl: Duration::from_secs(60),
            max_entries: 10,
            idle: Duration::ZERO,
        }));
        let task = tokio::spawn(sweep(Arc::downgrade(&cache)));
        fill(&cache, 1).await;
        drop(cache);
        // Dropping the cache wakes the sweeper, which then ends.
        tokio::time::timeout(MAX_SWEEP_INTERVAL * 2, task)
            .await
            .expect("the sweeper outlived its cache")
            .unwrap();
    }
}
