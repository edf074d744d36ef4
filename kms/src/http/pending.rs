//! Bounds on connections whose client is not authenticated yet: accepted, in
//! the TLS handshake, or handshaken but not yet matched to a pin.
//!
//! `kms.server.max-pending-per-source` bounds them per source (an IPv4
//! address, or an IPv6 /64, since one IPv6 host may hold a whole /64), and
//! `kms.server.max-pending` bounds them in total. A connection over either
//! bound is closed at once and counted in `cmx_kms_connections_closed_total`
//! under `pending-per-source` or `pending-total`. A slot is held only until
//! the client is authenticated, so agents that connect, make one request and
//! leave hold one for the length of a handshake, however many share an address.
//!
//! Behind a trusted load balancer (PROXY protocol) the TCP peer is the
//! balancer, which carries every client: bounding it per source would cap the
//! whole fleet at `max-pending-per-source` handshakes. So a connection from a
//! trusted balancer first takes a slot counted in the total only
//! ([`Pending::enter_unsourced`]); once its PROXY header names the client, the
//! slot is charged to the client's address ([`Slot::attribute`]), and the
//! per-source bound applies to the client as it would without the balancer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::metrics::Metrics;

/// Where a connection comes from, as far as the bound is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    /// The /64 prefix.
    V6([u8; 8]),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Source::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

/// Which bound a connection is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    PerSource,
    Total,
}

impl Over {
    /// Stable label, for logs and `cmx_kms_connections_closed_total`.
    pub fn label(self) -> &'static str {
        match self {
            Over::PerSource => "pending-per-source",
            Over::Total => "pending-total",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_source: HashMap<Source, usize>,
}

/// The pending connections of one listener.
pub struct Pending {
    per_source: usize,
    total: usize,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

impl Pending {
    pub fn new(per_source: usize, total: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            per_source: per_source.max(1),
            total: total.max(1),
            counts: Mutex::new(Counts::default()),
            metrics,
        }
    }

    /// Take a slot for a connection from `ip`, or say which bound is full.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Over> {
        self.take(Some(Source::of(ip)))
    }

    /// Take a slot counted in the total only (a trusted balancer's
    /// connection, before its PROXY header names the client).
    pub fn enter_unsourced(self: &Arc<Self>) -> Result<Slot, Over> {
        self.take(None)
    }

    fn take(self: &Arc<Self>, source: Option<Source>) -> Result<Slot, Over> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.total {
            return Err(Over::Total);
        }
        if let Some(source) = source {
            let n = c.by_source.entry(source).or_default();
            if *n >= self.per_source {
                return Err(Over::PerSource);
            }
            *n += 1;
        }
        c.total += 1;
        self.metrics
            .pending_connections
            .fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            pending: Arc::clone(self),
            source,
        })
    }

    fn leave(&self, source: Option<Source>) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = source.and_then(|s| c.by_source.get_mut(&s)) {
            *n = n.saturating_sub(1);
            if *n == 0
                && let Some(s) = source
            {
                c.by_source.remove(&s);
            }
        }
        self.metrics
            .pending_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pending connection's slot, given back when dropped (once the client is
/// authenticated, or when the connection fails before that).
pub struct Slot {
    pending: Arc<Pending>,
    /// `None` for a slot counted in the total only.
    source: Option<Source>,
}

impl Slot {
    /// Charge an unsourced slot to the client at `ip` (named by a PROXY
    /// header), or say that the client is over its per-source bound (the
    /// slot is then given back). A sourced slot stays as it is.
    pub fn attribute(mut self, ip: IpAddr) -> Result<Slot, Over> {
        if self.source.is_some() {
            return Ok(self);
        }
        let source = Source::of(ip);
        let mut c = self
            .pending
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = c.by_source.entry(source).or_default();
        if *n >= self.pending.per_source {
            return Err(Over::PerSource);
        }
        *n += 1;
        drop(c);
        self.source = Some(source);
        Ok(self)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pending.leave(self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bounds_per_source_and_in_total_and_gives_slots_back() {
        let metrics = Arc::new(Metrics::default());
        let p = Arc::new(Pending::new(2, 3, Arc::clone(&metrics)));
        let a1 = p.enter(ip("10.0.0.1")).ok();
        let a2 = p.enter(ip("10.0.0.1")).ok();
        assert!(a1.is_some() && a2.is_some());
        assert_eq!(p.enter(ip("10.0.0.1")).err(), Some(Over::PerSource));
        // The IPv4-mapped form is the same source.
        assert_eq!(p.enter(ip("::ffff:10.0.0.1")).err(), Some(Over::PerSource));
        let b = p.enter(ip("10.0.0.2")).ok();
        assert!(b.is_some());
        assert_eq!(p.enter(ip("10.0.0.3")).err(), Some(Over::Total));
        assert_eq!(metrics.pending_connections.load(Ordering::Relaxed), 3);
        drop(a1);
        assert!(p.enter(ip("10.0.0.1")).is_ok(), "a freed slot is reusable");
        drop((a2, b));
        assert_eq!(metrics.pending_connections.load(Ordering::Relaxed), 0);
        let c = p.counts.lock().unwrap_or_else(|p| p.into_inner());
        assert!(c.by_source.is_empty() && c.total == 0, "nothing leaks");
    }

    #[test]
    fn a_balancer_counts_in_the_total_and_its_clients_per_source() {
        let metrics = Arc::new(Metrics::default());
        let p = Arc::new(Pending::new(1, 3, Arc::clone(&metrics)));
        // Three handshakes through one balancer: not bounded per source.
        let a = p.enter_unsourced().ok();
        let b = p.enter_unsourced().ok();
        assert!(a.is_some() && b.is_some());
        let a = a.and_then(|s| s.attribute(ip("10.0.0.1")).ok());
        assert!(a.is_some(), "first handshake of 10.0.0.1");
        // A second pending one of the same client is over its bound, and its
        // slot is given back.
        let b = b.map(|s| s.attribute(ip("10.0.0.1")));
        assert_eq!(b.and_then(|r| r.err()), Some(Over::PerSource));
        assert_eq!(metrics.pending_connections.load(Ordering::Relaxed), 1);
        // Another client through the balancer is served.
        let c = p
            .enter_unsourced()
            .ok()
            .and_then(|s| s.attribute(ip("10.0.0.2")).ok());
        assert!(c.is_some());
        // The direct bound still applies to the client's address.
        assert_eq!(p.enter(ip("10.0.0.1")).err(), Some(Over::PerSource));
        drop((a, c));
        assert_eq!(metrics.pending_connections.load(Ordering::Relaxed), 0);
        let counts = p.counts.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            counts.by_source.is_empty() && counts.total == 0,
            "nothing leaks"
        );
    }

    #[test]
    fn an_ipv6_host_is_bounded_by_its_64() {
        let p = Arc::new(Pending::new(1, 100, Arc::new(Metrics::default())));
        let _a = p.enter(ip("2001:db8:1:2::1"));
        assert_eq!(
            p.enter(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Over::PerSource)
        );
        assert!(p.enter(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }
}
