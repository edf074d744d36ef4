//! The cap on log lines that clients can cause: a failed handshake, a bad
//! PROXY header, a bad request, a refused blob, a failed key operation.
//! Anyone who can open a connection could otherwise write lines at will, and
//! past journald's rate limit (`RateLimitBurst=` per `RateLimitIntervalSec=`)
//! journald drops the node's lines without choosing: `draining`, reloads and
//! warnings with them. So at most [`LineBudget::PER_SECOND`] such lines a
//! second, node-wide, are written at their own level; the rest go to `debug`
//! and are counted, and the first line let through after them is preceded by
//! a warning saying how many were held back. The metrics count every one of
//! them either way.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// See the module documentation.
pub struct LineBudget {
    start: Instant,
    /// The second (since `start`) that `used` counts.
    second: AtomicU64,
    used: AtomicU32,
    held: AtomicU64,
}

impl LineBudget {
    /// Lines clients can cause, at most, a second (node-wide).
    pub const PER_SECOND: u32 = 20;

    /// Whether one more line fits in this second. The first to fit after
    /// some were held back is preceded by a warning with their number.
    pub fn open(&self) -> bool {
        match self.take_at(self.start.elapsed().as_secs()) {
            Some(0) => true,
            Some(held) => {
                tracing::warn!(
                    held,
                    per_second = Self::PER_SECOND,
                    "log lines caused by clients (failed handshakes, bad or failed requests) were held back at debug level: more came in a second than the cap; CMX_KMS_LOG=info,cmx_kms::http=debug logs them all"
                );
                true
            }
            None => false,
        }
    }

    /// `Some(lines held back since the last one taken)` when one more line
    /// fits in second `now`; `None` when it does not (it is then counted).
    fn take_at(&self, now: u64) -> Option<u64> {
        let second = self.second.load(Ordering::Relaxed);
        if now != second
            && self
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < Self::PER_SECOND {
            Some(self.held.swap(0, Ordering::Relaxed))
        } else {
            self.held.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for LineBudget {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            second: AtomicU64::new(0),
            used: AtomicU32::new(0),
            held: AtomicU64::new(0),
        }
    }
}

/// `client_line!(budget, LEVEL, fields and message as for tracing)`: the
/// line at `tracing::Level::LEVEL` while `budget` has room this second, else
/// at `debug`. A line the filter drops at `LEVEL` spends nothing, so lines
/// that would not be written cannot hold back ones that would.
macro_rules! client_line {
    ($budget:expr, $level:ident, $($arg:tt)+) => {
        if !tracing::enabled!(tracing::Level::$level) || $budget.open() {
            tracing::event!(tracing::Level::$level, $($arg)+)
        } else {
            tracing::debug!($($arg)+)
        }
    };
}
pub(crate) use client_line;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_capped_per_second_and_the_held_ones_counted() {
        let b = LineBudget::default();
        for _ in 0..LineBudget::PER_SECOND {
            assert_eq!(b.take_at(5), Some(0));
        }
        assert_eq!(b.take_at(5), None);
        assert_eq!(b.take_at(5), None);
        // The next second has room again, and says what was held back.
        assert_eq!(b.take_at(6), Some(2));
        assert_eq!(b.take_at(6), Some(0));
    }
}
