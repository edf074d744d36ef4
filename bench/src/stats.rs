//! Latency percentiles from every sample (no histogram buckets: a 10 s run
//! holds a few hundred thousand samples, which sort in milliseconds).

/// Latency samples in microseconds.
#[derive(Default)]
pub struct Latencies(Vec<u32>);

/// Nearest-rank percentiles, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latencies {
    pub fn extend(&mut self, more: &[u32]) {
        self.0.extend_from_slice(more);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sorts the samples and reads the percentiles.
    pub fn summary(&mut self) -> Summary {
        self.0.sort_unstable();
        let at = |q: f64| -> u64 {
            if self.0.is_empty() {
                return 0;
            }
            // Nearest rank: the smallest sample with at least q of them at or below it.
            let rank = (q * self.0.len() as f64).ceil() as usize;
            let i = rank.clamp(1, self.0.len()) - 1;
            self.0.get(i).copied().map_or(0, u64::from)
        };
        Summary {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: self.0.last().copied().map_or(0, u64::from),
        }
    }
}

/// The median of some values (mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let hi = values.get(n / 2).copied().unwrap_or(0.0);
    if n % 2 == 1 {
        hi
    } else {
        let lo = values.get(n / 2 - 1).copied().unwrap_or(hi);
        (lo + hi) / 2.0
    }
}

/// A distribution-free confidence interval for the median of `values`: the
/// order statistics x(k) and x(n+1-k) with the largest k for which the
/// chance that a Binomial(n, 1/2) count falls below k is at most
/// (1 - `confidence`) / 2 on each side. Assumes only that the values are
/// independent draws of one distribution (per-round differences of
/// alternating rounds). `None` with too few values for that confidence, or
/// too many (over 1 000) for the plain sum below.
pub fn median_interval(values: &mut [f64], confidence: f64) -> Option<(f64, f64)> {
    let n = values.len();
    if n == 0 || n > 1000 || !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let tail = (1.0 - confidence) / 2.0;
    // P(B <= j) summed term by term; term_0 = 2^-n stays a normal f64 for
    // n <= 1000.
    let mut term = 0.5f64.powi(i32::try_from(n).ok()?);
    let mut below = 0.0;
    let mut k = 0;
    for j in 0..n {
        below += term;
        if below > tail {
            break;
        }
        // P(B < j + 1) <= tail: x(j + 1) may be the lower end.
        k = j + 1;
        term *= (n - j) as f64 / (j + 1) as f64;
    }
    if k == 0 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((*values.get(k - 1)?, *values.get(n - k)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        l.extend(&(1..=100).rev().collect::<Vec<u32>>());
        assert_eq!(
            l.summary(),
            Summary {
                p50: 50,
                p90: 90,
                p99: 99,
                max: 100
            }
        );
        let mut one = Latencies::default();
        one.extend(&[7]);
        assert_eq!(one.summary().p50, 7);
        assert_eq!(Latencies::default().summary(), Summary::default());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn median_intervals_from_order_statistics() {
        // n = 30 at 95 %: P(B <= 9) = 0.0214 <= 0.025 < P(B <= 10) = 0.0494,
        // so x(10) and x(21).
        let mut v: Vec<f64> = (1..=30).rev().map(f64::from).collect();
        assert_eq!(median_interval(&mut v, 0.95), Some((10.0, 21.0)));
        // n = 6: only the extremes (P(B = 0) = 1/64), n = 5 none (1/32 > 0.025).
        let mut six = [6.0, 1.0, 5.0, 2.0, 4.0, 3.0];
        assert_eq!(median_interval(&mut six, 0.95), Some((1.0, 6.0)));
        assert_eq!(median_interval(&mut [1.0, 2.0, 3.0, 4.0, 5.0], 0.95), None);
        assert_eq!(median_interval(&mut [], 0.95), None);
        // A lower confidence narrows it.
        let mut v: Vec<f64> = (1..=30).map(f64::from).collect();
        let (lo, hi) = median_interval(&mut v, 0.5).unwrap();
        assert!(
            lo > 10.0 && hi < 21.0 && lo <= 15.5 && hi >= 15.5,
            "{lo} {hi}"
        );
    }
}
