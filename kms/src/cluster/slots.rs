//! A bound on connections per source address and in total, for the small
//! listeners (the cluster port's handshakes, the readiness check): one
//! source cannot hold every slot, and nobody can hold file descriptors
//! without bound. A slot is released when its [`Slot`] is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// Which bound a connection is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    PerSource,
    Total,
}

impl Full {
    /// Stable label, for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Full::PerSource => "pending-per-source",
            Full::Total => "pending-total",
        }
    }
}

#[derive(Default)]
struct Held {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// The slots.
pub struct Slots {
    total: usize,
    per_source: usize,
    held: Arc<Mutex<Held>>,
}

/// One taken slot.
pub struct Slot {
    source: IpAddr,
    held: Arc<Mutex<Held>>,
}

impl Slots {
    pub fn new(total: usize, per_source: usize) -> Self {
        Self {
            total,
            per_source,
            held: Arc::default(),
        }
    }

    /// A slot for a connection from `source`, unless a bound is reached.
    pub fn enter(&self, source: IpAddr) -> Result<Slot, Full> {
        let source = source.to_canonical();
        let mut h = lock(&self.held);
        if h.total >= self.total {
            return Err(Full::Total);
        }
        let n = h.by_source.entry(source).or_default();
        if *n >= self.per_source {
            return Err(Full::PerSource);
        }
        *n += 1;
        h.total += 1;
        Ok(Slot {
            source,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut h = lock(&self.held);
        h.total = h.total.saturating_sub(1);
        if let Some(n) = h.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                h.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_source_and_in_total_and_frees_on_drop() {
        let s = Slots::new(3, 2);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let one = s.enter(a).unwrap();
        let _two = s.enter(a).unwrap();
        assert_eq!(s.enter(a).err(), Some(Full::PerSource));
        let _three = s.enter(b).unwrap();
        assert_eq!(s.enter(b).err(), Some(Full::Total));
        drop(one);
        assert!(s.enter(b).is_ok());
    }
}
