//! How precisely one `bench-kmip` run measures what cmx-kms adds to a KMIP
//! Decrypt. PyKMIP's own median moves by up to a couple of milliseconds
//! between rounds of a few seconds, far more than the 0.05 ms target, so the
//! figure of one run comes with an interval: the rounds alternate the series,
//! each round's difference (cmx-kms's median minus the direct client's) is one
//! draw, and the order statistics of those draws bound their median without
//! assuming a shape for PyKMIP's scatter.

use std::fmt::Write as _;

use crate::stats::{median, median_interval};

/// The confidence of the printed interval.
const CONFIDENCE: f64 = 0.95;

/// Each round's median of `series` minus the direct client's, microseconds.
pub fn per_round(series: &[u64], direct: &[u64]) -> Vec<f64> {
    series
        .iter()
        .zip(direct)
        .map(|(a, b)| *a as f64 - *b as f64)
        .collect()
}

/// One series' median added time and its interval, in milliseconds.
struct Added {
    median: f64,
    interval: Option<(f64, f64)>,
}

impl Added {
    fn of(rounds: &[f64]) -> Self {
        let mut v = rounds.to_vec();
        Self {
            median: median(&mut v),
            interval: median_interval(&mut v, CONFIDENCE),
        }
    }

    fn text(&self) -> String {
        match self.interval {
            Some((lo, hi)) => format!(
                "{:+.2} ms ({:+.2} to {:+.2})",
                self.median / 1000.0,
                lo / 1000.0,
                hi / 1000.0
            ),
            None => format!("{:+.2} ms (no interval)", self.median / 1000.0),
        }
    }
}

/// Writes the median of the per-round added times (microseconds) with its
/// interval, for cmx-kms and the proxy, and what cmx-kms's interval says of
/// the target `max_us`.
pub fn resolution(o: &mut String, max_us: f64, kms: &[f64], proxy: Option<&[f64]>) {
    let k = Added::of(kms);
    let _ = write!(
        o,
        "- the median of the per-round added times, with a {:.0} % interval (order statistics of {} rounds): cmx-kms {}",
        CONFIDENCE * 100.0,
        kms.len(),
        k.text()
    );
    match proxy {
        Some(p) => {
            let _ = writeln!(o, "; the nginx TLS proxy {}", Added::of(p).text());
        }
        None => {
            let _ = writeln!(o);
        }
    }
    let target = format!("≤ {:.2} ms", max_us / 1000.0);
    let pct = CONFIDENCE * 100.0;
    let _ = match k.interval {
        None => writeln!(
            o,
            "- what this run tells of the target {target}: nothing (too few rounds for an interval)"
        ),
        Some((_, hi)) if hi < 0.0 => writeln!(
            o,
            "- what this run tells of the target {target}: cmx-kms's interval lies below zero, but cmx-kms cannot be faster than the direct client whose Decrypt it sends: the series met unequal conditions (the host or the HSM), no verdict from this run"
        ),
        Some((lo, _)) if lo > max_us => writeln!(
            o,
            "- what this run tells of the target {target}: cmx-kms's interval lies above it: NOT met with {pct:.0} % confidence"
        ),
        // Met only when the run resolves the added time to the target's
        // scale on both sides: an interval reaching far below zero says the
        // rounds scattered by more than the target, not that cmx-kms is free.
        Some((lo, hi)) if hi <= max_us && lo >= -max_us => writeln!(
            o,
            "- what this run tells of the target {target}: cmx-kms's interval lies within ±{:.2} ms: met with {pct:.0} % confidence",
            max_us / 1000.0
        ),
        Some((lo, hi)) => writeln!(
            o,
            "- what this run tells of the target {target}: cmx-kms's interval is {:.2} ms wide, {:.0} times the target: the HSM's scatter between rounds hides a difference that small, neither met nor NOT met is shown",
            (hi - lo) / 1000.0,
            (hi - lo) / max_us
        ),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_round_by_round() {
        assert_eq!(per_round(&[1100, 900], &[1000, 1000]), vec![100.0, -100.0]);
    }

    #[test]
    fn says_what_the_interval_shows_of_the_target() {
        // 30 rounds: the interval runs from the 10th to the 21st value.
        let spread: Vec<f64> = (0..30).map(|i| f64::from(i) * 100.0 - 1500.0).collect();
        let mut o = String::new();
        resolution(&mut o, 50.0, &spread, Some(&[10.0; 30]));
        assert!(
            o.contains("(order statistics of 30 rounds): cmx-kms -0.05 ms (-0.60 to +0.50); the nginx TLS proxy +0.01 ms (+0.01 to +0.01)"),
            "{o}"
        );
        assert!(
            o.contains("interval is 1.10 ms wide, 22 times the target")
                && o.contains("neither met nor NOT met"),
            "{o}"
        );

        let mut o = String::new();
        resolution(&mut o, 50.0, &[20.0; 30], None);
        assert!(
            o.contains("lies within ±0.05 ms: met with 95 % confidence"),
            "{o}"
        );
        assert!(!o.contains("proxy"), "{o}");

        // Below the target but reaching far below zero: too coarse to say.
        let coarse: Vec<f64> = (0..30).map(|i| -2000.0 + f64::from(i) * 100.0).collect();
        let mut o = String::new();
        resolution(&mut o, 50.0, &coarse, None);
        assert!(o.contains("neither met nor NOT met"), "{o}");
        // Wholly below zero: cmx-kms cannot be faster than what it wraps.
        let mut o = String::new();
        resolution(&mut o, 50.0, &[-300.0; 30], None);
        assert!(
            o.contains("lies below zero") && o.contains("no verdict from this run"),
            "{o}"
        );

        let mut o = String::new();
        resolution(&mut o, 50.0, &[300.0; 30], None);
        assert!(
            o.contains("lies above it: NOT met with 95 % confidence"),
            "{o}"
        );

        let mut o = String::new();
        resolution(&mut o, 50.0, &[20.0; 3], None);
        assert!(o.contains("nothing (too few rounds"), "{o}");
        assert!(o.contains("+0.02 ms (no interval)"), "{o}");
    }
}
