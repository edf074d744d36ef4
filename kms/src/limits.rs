//! Admission control: rate limits (token buckets) and a bound on concurrent
//! backend calls. Over a limit the answer is immediate (429 or 503 with
//! `Retry-After`); nothing queues.
//!
//! Who a limit counts against depends on the role:
//! - the backend: its certificate. Backends are few and each has its own
//!   certificate, so one misbehaving backend is limited alone.
//! - devices: their network source ([`ClientAddr`]). Every agent of a
//!   company presents the *same* device certificate, so a per-certificate
//!   limit would be one cap for the whole fleet: one busy or hostile agent
//!   would starve all the others.
//!
//! The map of tracked sources is bounded ([`MAX_TRACKED`]): full buckets
//! (idle sources) are dropped first, and a new source that still finds no
//! room shares one overflow bucket, so memory never grows with the number of
//! addresses an attacker can send from.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tls::pinning::Fingerprint;

/// Most sources (addresses and certificates) tracked at once.
pub const MAX_TRACKED: usize = 100_000;

/// The sweep of idle buckets runs at most this often when the map is full,
/// so a flood of new addresses costs one scan per period, not one per request.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// A token bucket's settings: `rate` tokens per second, at most `burst` saved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// The network source a device's requests count against.
///
/// It is the client's address as `Peer::addr` holds it: the source a
/// trusted load balancer's PROXY protocol header named
/// (`kms.server.proxy-protocol.trusted`, see `crate::http::proxy`), or else
/// the TCP peer's. An IPv6 address counts as its
/// /64, the block one host or one site usually gets, so a host cannot mint
/// fresh identities from its own prefix. IPv4-mapped IPv6 addresses count as
/// the IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(IpAddr);

impl ClientAddr {
    /// The rate-limit source for a client at `ip`.
    pub fn new(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }

    /// The source of a TCP connection from `peer`.
    pub fn from_peer(peer: SocketAddr) -> Self {
        Self::new(peer.ip())
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// What one token bucket belongs to. `Copy`: taking a token allocates
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// A client certificate, by its SHA-256 fingerprint (backend role).
    Certificate(Fingerprint),
    /// A network source (device role).
    Address(ClientAddr),
    /// Every new source that found the map full (see the module docs).
    Overflow,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// When the bucket is full again if nothing is taken: it may then be
    /// forgotten, since a fresh bucket starts full.
    full_at: Instant,
}

impl Bucket {
    /// Refill for the time since the last take, then take one token if
    /// there is one; on refusal, how long until there is.
    fn take(&mut self, now: Instant, rate: Rate) -> Result<(), Duration> {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.last = now;
        let outcome = if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate.per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        };
        let refill = ((rate.burst - self.tokens).max(0.0) / rate.per_second).min(86_400.0);
        self.full_at = now + Duration::from_secs_f64(refill);
        outcome
    }
}

struct Table {
    buckets: HashMap<LimitKey, Bucket>,
    last_sweep: Option<Instant>,
}

/// Rate limits keyed by [`LimitKey`].
pub struct RateLimiter {
    table: Mutex<Table>,
    max_tracked: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::with_capacity(MAX_TRACKED)
    }
}

impl RateLimiter {
    /// A limiter tracking at most `max_tracked` sources (plus the overflow bucket).
    pub fn with_capacity(max_tracked: usize) -> Self {
        Self {
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
            max_tracked: max_tracked.max(1),
        }
    }

    /// Take one token for `key`; on refusal, how long until one is there.
    pub fn check(&self, key: &LimitKey, rate: Rate) -> Result<(), Duration> {
        if rate.per_second <= 0.0 {
            return Ok(()); // 0 = unlimited
        }
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        // A source seen before: one lookup.
        if let Some(b) = t.buckets.get_mut(key) {
            return b.take(now, rate);
        }
        let mut key = *key;
        if t.buckets.len() >= self.max_tracked {
            let due = t
                .last_sweep
                .is_none_or(|at| now.duration_since(at) >= SWEEP_PERIOD);
            if due {
                t.buckets.retain(|_, b| b.full_at > now);
                t.last_sweep = Some(now);
            }
            if t.buckets.len() >= self.max_tracked {
                key = LimitKey::Overflow;
            }
        }
        t.buckets
            .entry(key)
            .or_insert(Bucket {
                tokens: rate.burst,
                last: now,
                full_at: now,
            })
            .take(now, rate)
    }

    /// Sources tracked now (the overflow bucket included).
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> LimitKey {
        LimitKey::Address(ClientAddr::new(s.parse().unwrap()))
    }

    #[test]
    fn burst_then_refuse_then_refill() {
        let l = RateLimiter::default();
        let r = Rate {
            per_second: 50.0,
            burst: 3.0,
        };
        let dev = addr("192.0.2.1");
        for _ in 0..3 {
            assert!(l.check(&dev, r).is_ok());
        }
        let wait = l.check(&dev, r).unwrap_err();
        assert!(wait <= Duration::from_millis(25), "{wait:?}");
        assert!(
            l.check(&addr("192.0.2.2"), r).is_ok(),
            "sources are independent"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while l.check(&dev, r).is_err() {
            assert!(Instant::now() < deadline, "the bucket never refilled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn certificates_count_alone() {
        let l = RateLimiter::default();
        let r = Rate {
            per_second: 0.001,
            burst: 2.0,
        };
        let (a, b) = (
            LimitKey::Certificate([1; 32]),
            LimitKey::Certificate([2; 32]),
        );
        assert!(l.check(&a, r).is_ok());
        assert!(l.check(&a, r).is_ok());
        let wait = l.check(&a, r).unwrap_err();
        // About 1000 s minus what refilled since: one token at 0.001/s.
        assert!(wait > Duration::from_secs(900), "{wait:?}");
        assert!(
            l.check(&b, r).is_ok(),
            "another certificate has its own bucket"
        );
        assert_eq!(l.tracked(), 2);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = RateLimiter::default();
        let r = Rate {
            per_second: 0.0,
            burst: 0.0,
        };
        for _ in 0..1000 {
            assert!(l.check(&addr("192.0.2.1"), r).is_ok());
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a = ClientAddr::new("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientAddr::new("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = ClientAddr::new("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b, "one /64 is one source");
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let mapped = ClientAddr::new("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(mapped, ClientAddr::new("192.0.2.7".parse().unwrap()));
        assert_eq!(mapped.to_string(), "192.0.2.7");
    }

    #[test]
    fn the_map_is_bounded_and_overflow_is_shared() {
        let l = RateLimiter::with_capacity(4);
        let r = Rate {
            per_second: 0.001,
            burst: 1.0,
        };
        // Four busy sources fill the map; none is idle, so none can go.
        for i in 1..=4 {
            assert!(l.check(&addr(&format!("192.0.2.{i}")), r).is_ok());
        }
        // Newcomers share the one overflow bucket: the first is served, the
        // next is refused, and the map does not grow past capacity + 1.
        assert!(l.check(&addr("198.51.100.1"), r).is_ok());
        assert!(l.check(&addr("198.51.100.2"), r).is_err());
        for i in 3..200 {
            let _ = l.check(&addr(&format!("198.51.100.{i}")), r);
        }
        assert_eq!(l.tracked(), 5);
    }

    #[test]
    fn idle_sources_make_room() {
        let l = RateLimiter::with_capacity(2);
        let r = Rate {
            per_second: 1000.0,
            burst: 1.0,
        };
        assert!(l.check(&addr("192.0.2.1"), r).is_ok());
        assert!(l.check(&addr("192.0.2.2"), r).is_ok());
        // Both refill within 1 ms; wait until a newcomer gets its own bucket.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let fresh = addr("192.0.2.3");
            assert!(l.check(&fresh, r).is_ok());
            let t = l.table.lock().unwrap();
            if t.buckets.contains_key(&fresh) {
                assert!(t.buckets.len() <= 3, "capacity plus the overflow bucket");
                break;
            }
            drop(t);
            assert!(Instant::now() < deadline, "idle buckets never made room");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
