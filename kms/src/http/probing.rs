//! Makes a burst of refused wrapped keys from one client identity visible.
//!
//! A client that sends many blobs the server refuses is probing it (a forged
//! blob per request is how a padding-oracle or tag-guessing attack works), or
//! it holds corrupted blobs. Either way the operator should know without
//! reading every request line: each refusal counts in
//! `cmx_kms_invalid_wrapped_keys_total{client}`, and the first time an
//! identity reaches [`THRESHOLD`] refusals within a [`WINDOW`], one warning
//! says so. Further refusals in that window are counted, not logged again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The window refusals are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Refusals within one window that make a burst.
pub const THRESHOLD: u64 = 20;

/// Most identities tracked at once (aliases come from the keystore, so this
/// is far above any real count; it only bounds memory).
const MAX_TRACKED: usize = 10_000;

struct Window {
    start: Instant,
    count: u64,
    warned: bool,
}

/// Per-identity refusal windows.
#[derive(Default)]
pub struct ProbeWatch {
    windows: Mutex<HashMap<String, Window>>,
}

impl ProbeWatch {
    /// Counts one refused wrapped key from `client`; returns the count in the
    /// current window when this refusal makes a burst (once per window).
    pub fn record(&self, client: &str, now: Instant) -> Option<u64> {
        let mut map = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(client) {
            map.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let w = map.entry(client.to_owned()).or_insert(Window {
            start: now,
            count: 0,
            warned: false,
        });
        if now.duration_since(w.start) >= WINDOW {
            *w = Window {
                start: now,
                count: 0,
                warned: false,
            };
        }
        w.count += 1;
        if w.count >= THRESHOLD && !w.warned {
            w.warned = true;
            return Some(w.count);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_identity_and_window() {
        let watch = ProbeWatch::default();
        let t0 = Instant::now();
        for i in 1..THRESHOLD {
            assert_eq!(watch.record("cmxDevice", t0), None, "refusal {i}");
        }
        assert_eq!(watch.record("cmxDevice", t0), Some(THRESHOLD));
        for _ in 0..100 {
            assert_eq!(watch.record("cmxDevice", t0), None, "already warned");
        }
        // Another identity has its own window.
        assert_eq!(watch.record("cmxBackend", t0), None);
        // A new window warns again.
        let t1 = t0 + WINDOW;
        for _ in 1..THRESHOLD {
            assert_eq!(watch.record("cmxDevice", t1), None);
        }
        assert_eq!(watch.record("cmxDevice", t1), Some(THRESHOLD));
    }
}
