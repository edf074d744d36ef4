//! The cache's bookkeeping under its lock: expiry by TTL (from the front
//! of the insertion order) and by idle time (a scan), eviction to the
//! bound, and why a key left (for the backend-unwrap metric).

use std::time::Instant;

use super::{CacheKey, MissReason, State};

impl<E> State<E> {
    pub(super) fn expired(&self, stored: Instant, now: Instant) -> bool {
        now.saturating_duration_since(stored) >= self.limits.ttl
    }

    pub(super) fn note_gone(&mut self, id: CacheKey, why: MissReason) {
        if self.gone.len() >= self.limits.max_entries.max(1).saturating_mul(2) {
            self.gone.clear();
        }
        self.gone.insert(id, why);
    }

    pub(super) fn idle(&self, used: Instant, now: Instant) -> bool {
        !self.limits.idle.is_zero() && now.saturating_duration_since(used) >= self.limits.idle
    }

    /// Remove entries unused for the idle limit (a scan: the sweeper's job);
    /// when the next one goes idle, if any.
    pub(super) fn purge_idle(&mut self, now: Instant) -> Option<Instant> {
        if self.limits.idle.is_zero() {
            return None;
        }
        let idle = self.limits.idle;
        let gone: Vec<CacheKey> = self
            .entries
            .iter()
            .filter(|(_, (_, _, _, used))| now.saturating_duration_since(*used) >= idle)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.entries.remove(&id);
            self.note_gone(id, MissReason::Expired);
        }
        self.entries
            .values()
            .map(|(_, _, _, used)| *used + idle)
            .min()
    }

    /// Drop stale records and expired entries from the front of `order`
    /// (oldest first); the instant the new front expires, if any.
    pub(super) fn purge(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(id, at)) = self.order.front() {
            match self.entries.get(&id) {
                Some((_, stored, _, _)) if *stored == at => {
                    if !self.expired(at, now) {
                        return Some(at + self.limits.ttl);
                    }
                    self.entries.remove(&id);
                    self.note_gone(id, MissReason::Expired);
                }
                _ => {} // stale record
            }
            self.order.pop_front();
        }
        None
    }

    /// Evict the oldest live entries until at most `max` remain.
    pub(super) fn shrink_to(&mut self, max: usize) {
        while self.entries.len() > max {
            let Some((id, at)) = self.order.pop_front() else {
                // Every entry has a record in `order`; keep the bound anyway.
                self.entries.clear();
                break;
            };
            if self.entries.get(&id).is_some_and(|(_, s, _, _)| *s == at) {
                self.entries.remove(&id);
            }
        }
    }
}
