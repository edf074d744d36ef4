//! Admission control: per-client-identity rate limits (token buckets, backend
//! and device roles configured separately) and a bound on concurrent backend
//! calls. Over a limit the answer is immediate (429 or 503 with
//! `Retry-After`); nothing queues.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket's settings: `rate` tokens per second, at most `burst` saved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Rate limits keyed by client identity (certificate fingerprint).
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Most identities tracked; beyond it idle full buckets are dropped.
    max_tracked: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max_tracked: 100_000,
        }
    }
}

impl RateLimiter {
    /// Take one token for `identity`; on refusal, how long until one is there.
    pub fn check(&self, identity: &str, rate: Rate) -> Result<(), Duration> {
        if rate.per_second <= 0.0 {
            return Ok(()); // 0 = unlimited
        }
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_tracked && !map.contains_key(identity) {
            map.retain(|_, b| {
                now.duration_since(b.last).as_secs_f64() * rate.per_second + b.tokens < rate.burst
            });
        }
        let b = map.entry(identity.to_owned()).or_insert(Bucket {
            tokens: rate.burst,
            last: now,
        });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_second).min(rate.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate.per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_then_refill() {
        let l = RateLimiter::default();
        let r = Rate {
            per_second: 50.0,
            burst: 3.0,
        };
        for _ in 0..3 {
            assert!(l.check("dev", r).is_ok());
        }
        let wait = l.check("dev", r).unwrap_err();
        assert!(wait <= Duration::from_millis(25), "{wait:?}");
        assert!(l.check("other", r).is_ok(), "identities are independent");
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.check("dev", r).is_ok());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = RateLimiter::default();
        for _ in 0..1000 {
            assert!(
                l.check(
                    "x",
                    Rate {
                        per_second: 0.0,
                        burst: 0.0
                    }
                )
                .is_ok()
            );
        }
    }
}
