//! A log-bucketed histogram of RTTs in microseconds.
//!
//! Buckets grow by 1 % from [`MIN_US`] to [`MAX_US`] (0.1 µs to 100 s: 2,083 buckets, 17 KiB),
//! so a quantile read from it is within 0.5 % of the exact nearest-rank value, whatever the
//! number of samples. Count, sum, sum of squares, minimum and maximum are exact.

/// The smallest RTT with a bucket of its own; smaller ones count in the first bucket.
pub const MIN_US: f64 = 0.1;
/// The largest RTT with a bucket of its own; larger ones count in the last bucket.
pub const MAX_US: f64 = 1e8;
/// Growth factor from one bucket's lower edge to the next one's.
pub const RATIO: f64 = 1.01;

fn buckets() -> usize {
    ((MAX_US / MIN_US).ln() / RATIO.ln()).ceil() as usize + 1
}

/// RTT samples, bucketed.
#[derive(Debug, Clone)]
pub struct LogHist {
    counts: Vec<u64>,
    n: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Default for LogHist {
    fn default() -> Self {
        LogHist {
            counts: vec![0; buckets()],
            n: 0,
            sum: 0.0,
            sum_sq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl LogHist {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    fn index(us: f64) -> usize {
        if us.is_nan() || us <= MIN_US {
            return 0;
        }
        let i = ((us / MIN_US).ln() / RATIO.ln()).floor();
        (i as usize).min(buckets() - 1)
    }

    /// Buckets in a histogram (2,083).
    pub fn bucket_count() -> usize {
        buckets()
    }

    /// The lower edge of bucket `i`, µs.
    pub fn lower(i: usize) -> f64 {
        MIN_US * RATIO.powi(i as i32)
    }

    /// Adds one sample; NaN and negative values are ignored (no RTT to speak of).
    pub fn add(&mut self, us: f64) {
        if us.is_nan() || us < 0.0 {
            return;
        }
        self.counts[Self::index(us)] += 1;
        self.n += 1;
        self.sum += us;
        self.sum_sq += us * us;
        self.min = self.min.min(us);
        self.max = self.max.max(us);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LogHist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The smallest sample.
    pub fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }

    /// The largest sample.
    pub fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }

    /// The mean.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The population standard deviation.
    pub fn stddev(&self) -> Option<f64> {
        let m = self.mean()?;
        Some((self.sum_sq / self.n as f64 - m * m).max(0.0).sqrt())
    }

    /// The nearest-rank `q` quantile (0 < q ≤ 1), to within half a bucket (0.5 %): the
    /// middle of the bucket holding the sample of rank ⌈q·n⌉, clamped to [min, max].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                if i == self.counts.len() - 1 {
                    // The overflow bucket has no upper edge: its largest sample is exact.
                    return Some(self.max);
                }
                let mid = (Self::lower(i) * Self::lower(i + 1)).sqrt();
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Non-empty buckets as (lower edge, upper edge, count), in order.
    pub fn bins(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| (Self::lower(i), Self::lower(i + 1), c))
    }

    /// The histogram regrouped into `n` equal bins on a log scale between the smallest and
    /// the largest sample: (lower edge, upper edge, count). Empty without samples.
    pub fn coarse(&self, n: usize) -> Vec<(f64, f64, u64)> {
        let (Some(lo), Some(hi)) = (self.min(), self.max()) else {
            return vec![];
        };
        let n = n.max(1);
        let lo = lo.max(MIN_US);
        let hi = hi.max(lo * RATIO);
        let step = (hi / lo).ln() / n as f64;
        let edge = |k: usize| lo * (step * k as f64).exp();
        let mut out: Vec<(f64, f64, u64)> = (0..n).map(|k| (edge(k), edge(k + 1), 0)).collect();
        for (a, b, c) in self.bins() {
            let mid = (a * b).sqrt().clamp(lo, hi);
            let k = (((mid / lo).ln() / step) as usize).min(n - 1);
            out[k].2 += c;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(v: &mut [f64], q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).max(1);
        v[rank - 1]
    }

    #[test]
    fn quantiles_are_within_half_a_percent_of_the_exact_nearest_rank() {
        // A spread from 20 µs to 300 ms, deterministic.
        let mut v: Vec<f64> = (0..10_000u64)
            .map(|i| 20.0 * (1.0 + ((i * 7919) % 10_007) as f64).powf(1.04))
            .collect();
        let mut h = LogHist::new();
        for &x in &v {
            h.add(x);
        }
        for q in [0.01, 0.5, 0.9, 0.99, 1.0] {
            let want = exact(&mut v, q);
            let got = h.quantile(q).unwrap();
            assert!(
                (got - want).abs() / want <= 0.005 + 1e-12,
                "q={q}: {got} vs {want}"
            );
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.min(), v.iter().copied().reduce(f64::min));
        assert_eq!(h.max(), v.iter().copied().reduce(f64::max));
    }

    #[test]
    fn moments_are_exact_and_merge_adds() {
        let mut a = LogHist::new();
        let mut b = LogHist::new();
        for x in [100.0, 200.0, 300.0] {
            a.add(x);
        }
        b.add(400.0);
        a.merge(&b);
        assert_eq!(a.count(), 4);
        assert_eq!(a.mean(), Some(250.0));
        let sd = a.stddev().unwrap();
        assert!((sd - 125f64.sqrt() * 10.0).abs() < 1e-9, "{sd}");
    }

    #[test]
    fn empty_and_odd_values_are_handled() {
        let mut h = LogHist::new();
        assert_eq!(h.quantile(0.5), None);
        assert!(h.coarse(10).is_empty());
        h.add(f64::NAN);
        h.add(-1.0);
        assert_eq!(h.count(), 0);
        h.add(0.0);
        h.add(1e12);
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile(1.0), Some(1e12));
        // The first bucket holds everything up to 0.1 µs.
        assert!(h.quantile(0.5).unwrap() < 0.11);
    }

    #[test]
    fn coarse_bins_keep_every_sample() {
        let mut h = LogHist::new();
        for i in 1..=1000 {
            h.add(i as f64 * 10.0);
        }
        let bins = h.coarse(40);
        assert_eq!(bins.len(), 40);
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), 1000);
        assert!(bins.windows(2).all(|w| (w[0].1 - w[1].0).abs() < 1e-6));
        // A single value still makes one non-empty bin.
        let mut one = LogHist::new();
        one.add(5.0);
        assert_eq!(one.coarse(10).iter().map(|b| b.2).sum::<u64>(), 1);
    }
}
