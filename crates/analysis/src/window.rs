//! Rolling per-target statistics over a time window, for `asdic sweep`.
//!
//! Each target keeps a fixed ring of its most recent probe results (12 bytes each: send time
//! in milliseconds and RTT in nanoseconds, or *lost*), sized for the window at the sweep's
//! round interval, so memory is fixed per target whatever the run's length. Statistics are
//! computed when asked for (a status line, a scrape, an alarm check), from the samples sent
//! within the window; a lost probe is a missing value, never a number.
//!
//! The meanings follow NetXMS's ping subagent: `last` is LastPingTime (null when the latest
//! probe got no reply, where NetXMS writes 10000), `avg` AvgPingTime, `loss_pct`
//! PacketLoss, `stddev` PingStdDev, all over the last window.

/// RTT value that marks a lost probe (timeout, ICMP error, failed send).
const LOST: u64 = u64::MAX;

/// One probe's result: when it was sent (ms, wrapping) and its RTT (ns) or [`LOST`], the RTT
/// as two halves so that a sample takes 12 bytes, not 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sample {
    sent_ms: u32,
    rtt_ns: [u32; 2],
}

impl Sample {
    fn new(sent_ms: u32, rtt_ns: u64) -> Self {
        Sample {
            sent_ms,
            // Truncations intended: the low and the high half.
            rtt_ns: [rtt_ns as u32, (rtt_ns >> 32) as u32],
        }
    }

    /// The RTT in ns, or [`LOST`].
    fn rtt(self) -> u64 {
        u64::from(self.rtt_ns[0]) | (u64::from(self.rtt_ns[1]) << 32)
    }
}

/// Nanoseconds as the microseconds window statistics are given in (fractions kept).
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// A ring of a target's latest samples.
#[derive(Debug, Clone)]
pub struct Ring {
    samples: Box<[Sample]>,
    /// Index of the next write.
    head: usize,
    /// Samples held (at most the capacity).
    len: usize,
}

/// Window statistics of one target; RTTs in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowStats {
    /// Probes in the window that ended (replies + losses).
    pub probes: u32,
    /// Replies among them.
    pub replies: u32,
    /// 100 × lost / probes; `None` without probes.
    pub loss_pct: Option<f64>,
    /// RTT of the most recent probe, `None` if it was lost (or there is none).
    pub last_us: Option<f64>,
    /// Smallest reply RTT.
    pub min_us: Option<f64>,
    /// Mean reply RTT.
    pub avg_us: Option<f64>,
    /// Largest reply RTT.
    pub max_us: Option<f64>,
    /// Population standard deviation of reply RTTs.
    pub stddev_us: Option<f64>,
    /// Median reply RTT (nearest rank).
    pub p50_us: Option<f64>,
    /// 90th percentile (nearest rank).
    pub p90_us: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99_us: Option<f64>,
}

impl Ring {
    /// A ring holding `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> Self {
        Ring {
            samples: vec![Sample::default(); capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// The capacity for a window of `window_ms` at one probe every `every_ms`: every probe
    /// the window can hold, plus one for a probe whose send time sits on the boundary.
    pub fn capacity_for(window_ms: u64, every_ms: u64) -> usize {
        let every = every_ms.max(1);
        usize::try_from(window_ms.div_ceil(every) + 1).unwrap_or(usize::MAX)
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the ring holds no sample.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records a probe sent at `sent_ms` (a wrapping millisecond clock): its RTT in
    /// nanoseconds, or `None` when it was lost.
    pub fn push(&mut self, sent_ms: u32, rtt_ns: Option<u64>) {
        let rtt = match rtt_ns {
            // Clamp below the marker: an RTT of 584 years is still an RTT.
            Some(ns) => ns.min(LOST - 1),
            None => LOST,
        };
        let cap = self.samples.len();
        self.samples[self.head] = Sample::new(sent_ms, rtt);
        self.head = (self.head + 1) % cap;
        self.len = (self.len + 1).min(cap);
    }

    /// Samples from newest to oldest.
    fn newest_first(&self) -> impl Iterator<Item = Sample> + '_ {
        let cap = self.samples.len();
        (1..=self.len).map(move |k| self.samples[(self.head + cap - k) % cap])
    }

    /// Probes, replies, loss and mean RTT of the samples sent within `window_ms` before
    /// `now_ms`: what alarm limits are judged on, in one pass without percentiles (the other
    /// fields stay `None`). The same values [`stats`](Ring::stats) gives.
    pub fn brief(&self, now_ms: u32, window_ms: u32) -> WindowStats {
        let mut s = WindowStats::default();
        let mut sum = 0f64;
        for x in self.newest_first() {
            if now_ms.wrapping_sub(x.sent_ms) > window_ms {
                break;
            }
            s.probes += 1;
            if x.rtt() != LOST {
                s.replies += 1;
                sum += us(x.rtt());
            }
        }
        if s.probes > 0 {
            s.loss_pct = Some(100.0 * f64::from(s.probes - s.replies) / f64::from(s.probes));
        }
        if s.replies > 0 {
            s.avg_us = Some(sum / f64::from(s.replies));
        }
        s
    }

    /// Statistics of the samples sent within `window_ms` before `now_ms` (same wrapping
    /// clock as [`push`](Ring::push)). `scratch` is reused between calls for the percentiles.
    pub fn stats(&self, now_ms: u32, window_ms: u32, scratch: &mut Vec<u64>) -> WindowStats {
        scratch.clear();
        let mut s = WindowStats::default();
        let mut first = true;
        let (mut sum, mut min, mut max) = (0f64, u64::MAX, 0u64);
        for x in self.newest_first() {
            // Wrapping age: valid for windows far below the clock's 49-day period. A sample
            // "from the future" (age wrapped past the window) is as out of the window as an
            // old one.
            if now_ms.wrapping_sub(x.sent_ms) > window_ms {
                break;
            }
            s.probes += 1;
            let rtt = x.rtt();
            if first {
                s.last_us = (rtt != LOST).then_some(us(rtt));
                first = false;
            }
            if rtt != LOST {
                s.replies += 1;
                sum += us(rtt);
                min = min.min(rtt);
                max = max.max(rtt);
                scratch.push(rtt);
            }
        }
        if s.probes > 0 {
            s.loss_pct = Some(100.0 * f64::from(s.probes - s.replies) / f64::from(s.probes));
        }
        if s.replies == 0 {
            return s;
        }
        let n = f64::from(s.replies);
        let mean = sum / n;
        let var = scratch.iter().map(|&x| (us(x) - mean).powi(2)).sum::<f64>() / n;
        s.avg_us = Some(mean);
        s.min_us = Some(us(min));
        s.max_us = Some(us(max));
        s.stddev_us = Some(var.sqrt());
        s.p50_us = Some(us(nearest_rank(scratch, 50)));
        s.p90_us = Some(us(nearest_rank(scratch, 90)));
        s.p99_us = Some(us(nearest_rank(scratch, 99)));
        s
    }
}

/// The nearest-rank `p`-th percentile of a non-empty slice (reorders it).
fn nearest_rank(v: &mut [u64], p: u32) -> u64 {
    let n = v.len();
    // rank = ceil(p/100 · n), 1-based.
    let rank = (p as usize * n).div_ceil(100).clamp(1, n);
    *v.select_nth_unstable(rank - 1).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_all_lost_have_no_rtt() {
        let r = Ring::new(4);
        let mut scratch = vec![];
        assert_eq!(r.stats(0, 60_000, &mut scratch), WindowStats::default());
        let mut r = Ring::new(4);
        r.push(1000, None);
        r.push(2000, None);
        let s = r.stats(2500, 60_000, &mut scratch);
        assert_eq!((s.probes, s.replies, s.loss_pct), (2, 0, Some(100.0)));
        assert_eq!(s.last_us, None, "a timeout is missing, never a fake RTT");
        assert_eq!((s.avg_us, s.p99_us), (None, None));
    }

    #[test]
    fn statistics_follow_their_definitions() {
        let mut r = Ring::new(16);
        // Sent at 1..=10 s: RTTs 100, 200, …, 900 µs and one loss (the 10th).
        for k in 1..=10u32 {
            r.push(k * 1000, (k < 10).then_some(u64::from(k) * 100_000));
        }
        let mut scratch = vec![];
        let s = r.stats(10_500, 60_000, &mut scratch);
        assert_eq!((s.probes, s.replies), (10, 9));
        assert_eq!(s.loss_pct, Some(10.0));
        assert_eq!(s.last_us, None, "the newest probe was lost");
        assert_eq!((s.min_us, s.max_us), (Some(100.0), Some(900.0)));
        assert_eq!(s.avg_us, Some(500.0));
        // Population stddev of 100..900 step 100: sqrt(mean of squares of -400..400).
        let want = ((0..9)
            .map(|i| (f64::from(i) * 100.0 - 400.0).powi(2))
            .sum::<f64>()
            / 9.0)
            .sqrt();
        assert!((s.stddev_us.unwrap() - want).abs() < 1e-9);
        // Nearest rank over 9 values: p50 → rank 5, p90 → rank 9 (ceil 8.1), p99 → rank 9.
        assert_eq!(s.p50_us, Some(500.0));
        assert_eq!(s.p90_us, Some(900.0));
        assert_eq!(s.p99_us, Some(900.0));
        let b = r.brief(10_500, 60_000);
        assert_eq!(
            (b.probes, b.replies, b.loss_pct, b.avg_us),
            (s.probes, s.replies, s.loss_pct, s.avg_us),
            "brief agrees with stats"
        );
        r.push(11_000, Some(50_000));
        assert_eq!(r.stats(11_000, 60_000, &mut scratch).last_us, Some(50.0));
    }

    #[test]
    fn only_the_window_counts_and_the_ring_is_bounded() {
        let cap = Ring::capacity_for(5_000, 1_000);
        assert_eq!(cap, 6);
        let mut r = Ring::new(cap);
        for k in 0..100u32 {
            r.push(k * 1000, Some(u64::from(k) * 1000));
        }
        assert_eq!(r.len(), cap, "memory is fixed");
        let mut scratch = vec![];
        // Now 99.5 s, window 5 s: samples sent at 95..=99 s (94.5 s is the boundary).
        let s = r.stats(99_500, 5_000, &mut scratch);
        assert_eq!(s.probes, 5);
        assert_eq!((s.min_us, s.max_us), (Some(95.0), Some(99.0)));
        // Long after: nothing in the window.
        assert_eq!(r.stats(500_000, 5_000, &mut scratch).probes, 0);
    }

    #[test]
    fn the_clock_may_wrap() {
        let mut r = Ring::new(4);
        r.push(u32::MAX - 500, Some(10_000));
        r.push(499, Some(30_000));
        let s = r.stats(600, 60_000, &mut vec![]);
        assert_eq!((s.probes, s.avg_us), (2, Some(20.0)));
    }

    #[test]
    fn huge_rtts_are_clamped_not_lost() {
        let mut r = Ring::new(2);
        r.push(0, Some(u64::MAX));
        let s = r.stats(0, 1000, &mut vec![]);
        assert_eq!(s.replies, 1);
        assert_eq!(s.max_us, Some(us(LOST - 1)));
    }

    #[test]
    fn statistics_keep_the_nanoseconds_and_a_sample_takes_12_bytes() {
        assert_eq!(size_of::<Sample>(), 12);
        let mut r = Ring::new(4);
        r.push(0, Some(12_345));
        r.push(1, Some(67_891));
        let s = r.stats(1, 1000, &mut vec![]);
        assert_eq!(
            (s.min_us, s.max_us, s.last_us),
            (Some(12.345), Some(67.891), Some(67.891))
        );
        assert_eq!(s.avg_us, Some(40.118));
        // An RTT beyond 2^32 ns (4.3 s) keeps its high half.
        r.push(2, Some(5_000_000_123));
        assert_eq!(r.stats(2, 1000, &mut vec![]).max_us, Some(5_000_000.123));
    }
}
