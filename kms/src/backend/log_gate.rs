//! A once-per-interval gate for operator warnings that clients can cause.
//!
//! Some refusals of client material are, when they come in numbers, the sign
//! of an operator problem (a second master key, a key deleted and created
//! again, a node with another identity). They deserve a WARN that names the
//! likely cause, but a client sending garbage must not be able to fill the
//! log: each site logs at most once per [`INTERVAL`] and counts the rest,
//! which the next line reports. (The HTTP layer's own INFO line for every
//! refusal stays under its per-second budget.)

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two lines of one gate, unless it says otherwise.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// One gate per log site and backend instance (or listener).
pub struct LogGate {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl LogGate {
    /// A gate that lets its first line through, then one per [`INTERVAL`].
    pub const fn new() -> Self {
        Self::every(INTERVAL)
    }

    /// A gate that lets its first line through, then one per `interval`.
    pub const fn every(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being the lines held
    /// back since the last one; `None` (and one more held back) otherwise.
    pub fn open(&self) -> Option<u64> {
        self.open_at(Instant::now())
    }

    fn open_at(&self, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.interval) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

impl Default for LogGate {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let gate = LogGate::new();
        let t0 = Instant::now();
        assert_eq!(gate.open_at(t0), Some(0));
        assert_eq!(gate.open_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(gate.open_at(t0 + Duration::from_secs(59)), None);
        assert_eq!(gate.open_at(t0 + INTERVAL), Some(2));
        assert_eq!(gate.open_at(t0 + INTERVAL), None);
        let short = LogGate::every(Duration::from_secs(10));
        assert_eq!(short.open_at(t0), Some(0));
        assert_eq!(short.open_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(short.open_at(t0 + Duration::from_secs(10)), Some(1));
    }
}
