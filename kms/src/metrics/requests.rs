//! The per-request metrics without a lock on the hot path: requests answered
//! `ok` are counted in atomics by operation and role, and every latency goes
//! into an atomic histogram. Anything the tables do not name (another
//! outcome, a label added to the API but not here) takes a locked map: slower,
//! never lost. The page shows both as one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{esc, header, lock};

/// The API's operation labels, and `unknown` for a path that names none.
/// A label missing here is still counted, through the locked maps.
pub const OPERATIONS: [&str; 8] = [
    "create-customer-key",
    "create-user-key",
    "create-workspace-key",
    "decrypt-workspace-key",
    "rewrap-customer-key",
    "health",
    "ready",
    "unknown",
];

/// The client roles' labels.
pub const ROLES: [&str; 2] = ["backend", "device"];

/// Latency histogram bucket bounds, in seconds (as the page prints them) and
/// in nanoseconds (as they are compared).
const BUCKETS: [(&str, u64); 14] = [
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

/// A latency histogram updated with two atomic additions: the bucket a value
/// falls in (the last slot is above every bound) and the sum.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKETS
            .iter()
            .position(|&(_, bound)| ns <= bound)
            .unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `_bucket` (cumulative), `_sum` (seconds) and `_count` lines.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut below = 0u64;
        for ((le, _), b) in BUCKETS.iter().zip(&self.buckets) {
            below += b.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {below}");
        }
        // One pass: `+Inf` and `_count` agree with the buckets even while
        // requests are counted during the scrape.
        let above = self
            .buckets
            .get(BUCKETS.len())
            .map_or(0, |b| b.load(Ordering::Relaxed));
        let count = below + above;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        // Precision: the nanosecond count becomes an f64 without loss up to 104
        // days of summed latency; only the division into seconds rounds.
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Requests by operation, role and outcome, and their latency by operation.
#[derive(Default)]
pub struct Requests {
    /// Answered `ok`, by `OPERATIONS` index, then `ROLES` index.
    ok: [[AtomicU64; ROLES.len()]; OPERATIONS.len()],
    /// By `OPERATIONS` index.
    latency: [Histogram; OPERATIONS.len()],
    /// Every other (operation, role, outcome).
    other: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    /// Latency of an operation label not in `OPERATIONS`.
    other_latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Requests {
    pub fn count(
        &self,
        operation: &'static str,
        role: &'static str,
        outcome: &'static str,
        latency: Duration,
    ) {
        let op = OPERATIONS.iter().position(|&o| o == operation);
        let ok = match (op, ROLES.iter().position(|&r| r == role)) {
            (Some(o), Some(r)) if outcome == "ok" => self.ok.get(o).and_then(|by| by.get(r)),
            _ => None,
        };
        match ok {
            Some(n) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                *lock(&self.other)
                    .entry((operation, role, outcome))
                    .or_default() += 1
            }
        }
        match op.and_then(|o| self.latency.get(o)) {
            Some(h) => h.observe(latency),
            None => lock(&self.other_latency)
                .entry(operation)
                .or_default()
                .observe(latency),
        }
    }

    /// `cmx_kms_requests_total` and `cmx_kms_request_duration_seconds`, in
    /// label order, each series once it has a request.
    pub fn render(&self, o: &mut String) {
        header(
            o,
            "cmx_kms_requests_total",
            "counter",
            "API requests by operation, role and outcome label.",
        );
        let mut counts = lock(&self.other).clone();
        for (op, by_role) in OPERATIONS.iter().zip(&self.ok) {
            for (role, n) in ROLES.iter().zip(by_role) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    *counts.entry((op, role, "ok")).or_default() += n;
                }
            }
        }
        for ((op, role, outcome), n) in &counts {
            let _ = writeln!(
                o,
                "cmx_kms_requests_total{{operation=\"{}\",role=\"{}\",outcome=\"{}\"}} {n}",
                esc(op),
                esc(role),
                esc(outcome)
            );
        }
        header(
            o,
            "cmx_kms_request_duration_seconds",
            "histogram",
            "API request latency.",
        );
        let other = lock(&self.other_latency);
        let mut all: BTreeMap<&str, &Histogram> = other.iter().map(|(k, h)| (*k, h)).collect();
        for (op, h) in OPERATIONS.iter().zip(&self.latency) {
            if h.count() > 0 {
                all.insert(op, h);
            }
        }
        for (op, h) in all {
            h.render(
                o,
                "cmx_kms_request_duration_seconds",
                &format!("operation=\"{}\"", esc(op)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_labels_are_counted_alike() {
        let r = Requests::default();
        let ms = Duration::from_millis(1);
        r.count("decrypt-workspace-key", "device", "ok", ms);
        r.count("decrypt-workspace-key", "device", "ok", ms);
        r.count("decrypt-workspace-key", "device", "invalid-wrapped-key", ms);
        r.count(
            "not-an-operation-yet",
            "device",
            "ok",
            Duration::from_secs(20),
        );
        let mut page = String::new();
        r.render(&mut page);
        for line in [
            "cmx_kms_requests_total{operation=\"decrypt-workspace-key\",role=\"device\",outcome=\"ok\"} 2",
            "cmx_kms_requests_total{operation=\"decrypt-workspace-key\",role=\"device\",outcome=\"invalid-wrapped-key\"} 1",
            "cmx_kms_requests_total{operation=\"not-an-operation-yet\",role=\"device\",outcome=\"ok\"} 1",
            "cmx_kms_request_duration_seconds_bucket{operation=\"decrypt-workspace-key\",le=\"0.0005\"} 0",
            "cmx_kms_request_duration_seconds_bucket{operation=\"decrypt-workspace-key\",le=\"0.001\"} 3",
            "cmx_kms_request_duration_seconds_sum{operation=\"decrypt-workspace-key\"} 0.003",
            "cmx_kms_request_duration_seconds_count{operation=\"decrypt-workspace-key\"} 3",
            "cmx_kms_request_duration_seconds_bucket{operation=\"not-an-operation-yet\",le=\"10\"} 0",
            "cmx_kms_request_duration_seconds_bucket{operation=\"not-an-operation-yet\",le=\"+Inf\"} 1",
        ] {
            assert!(page.contains(line), "{line}\nnot in\n{page}");
        }
        assert!(!page.contains("operation=\"health\""), "{page}");
    }

    #[test]
    fn a_value_on_a_bound_falls_in_that_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_nanos(500_001));
        let mut page = String::new();
        h.render(&mut page, "x", "");
        assert!(page.contains("x_bucket{le=\"0.0005\"} 1\n"), "{page}");
        assert!(page.contains("x_bucket{le=\"0.001\"} 2\n"), "{page}");
        assert!(page.contains("x_count{} 2\n"), "{page}");
    }
}
