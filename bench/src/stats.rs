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
}
