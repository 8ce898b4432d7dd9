//! Per-target statistics: counters, RTT moments (Welford) and exact nearest-rank percentiles.

use std::borrow::Cow;

use core::net::IpAddr;

use asdic_core::{Event, Outcome};
use asdic_wire::Family;
use asdic_wire::registry::Describe;

use crate::schema::Row;

/// The first ICMP error a target's probes drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstError {
    /// ICMP family of the error.
    pub family: Family,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// The router or host that sent the error.
    pub from: IpAddr,
}

impl FirstError {
    /// The registry's name of the error, e.g. "Destination Unreachable / Port Unreachable".
    pub fn describe(&self) -> Describe {
        Describe {
            family: self.family,
            ty: self.icmp_type,
            code: self.code,
        }
    }
}

/// RTT summary of one target's echo replies, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rtt {
    /// RTT of the last reply recorded.
    pub last_ns: u64,
    /// Smallest RTT.
    pub min_ns: u64,
    /// Largest RTT.
    pub max_ns: u64,
    /// Arithmetic mean.
    pub mean_ns: f64,
    /// Population standard deviation.
    pub stddev_ns: f64,
    /// Median (nearest rank).
    pub p50_ns: u64,
    /// 90th percentile (nearest rank).
    pub p90_ns: u64,
    /// 99th percentile (nearest rank).
    pub p99_ns: u64,
}

/// Everything recorded about one target; feed it with [`TargetStats::record`].
///
/// 32 bytes while a target has at most one reply and no other outcome than timeouts (the
/// common case of a large `-c 1` run); a target with a second reply, an ICMP error, a
/// refused send, a duplicate, a late reply or another replier gets [`More`] on the heap
/// (about 170 bytes), and from its second reply on, every reply RTT is kept (8 bytes each)
/// so that percentiles are exact; they are computed when [`TargetStats::rtt`] is asked for,
/// not per event. Replies and timeouts are counted to 2^32 − 1, the rest to 2^64 − 1.
#[derive(Debug, Clone, Default)]
pub struct TargetStats {
    /// RTT of the last reply (the only one while `received` is 1 and there is no `more`).
    last_ns: u64,
    received: u32,
    timeouts: u32,
    reply_ttl: Option<u8>,
    more: Option<Box<More>>,
}

/// What a target needs beyond one reply and its timeouts.
#[derive(Debug, Clone, Default)]
struct More {
    errors: u64,
    send_failed: u64,
    /// The errno of the first refused send.
    send_errno: Option<i32>,
    duplicates: u64,
    late: u64,
    /// Moments, extremes and samples of every reply (once `More` exists).
    moments: Moments,
    min_ns: u64,
    max_ns: u64,
    /// Reply RTTs in arrival order.
    samples: Vec<u64>,
    /// Whether `samples` is known not to be ascending.
    unsorted: bool,
    other_replier: Option<IpAddr>,
    first_error: Option<FirstError>,
}

impl More {
    fn push_rtt(&mut self, rtt_ns: u64, last_ns: u64) {
        if self.samples.is_empty() {
            self.min_ns = rtt_ns;
            self.max_ns = rtt_ns;
        } else {
            self.unsorted |= rtt_ns < last_ns;
            self.min_ns = self.min_ns.min(rtt_ns);
            self.max_ns = self.max_ns.max(rtt_ns);
        }
        self.moments.push(rtt_ns as f64);
        self.samples.push(rtt_ns);
    }
}

impl TargetStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The heap part, made on first need (holding the one reply so far, if any).
    fn more(&mut self) -> &mut More {
        let (received, last) = (self.received, self.last_ns);
        self.more.get_or_insert_with(|| {
            let mut m = Box::<More>::default();
            if received == 1 {
                m.push_rtt(last, last);
            }
            m
        })
    }

    /// Accounts for one event about this target.
    ///
    /// Terminal outcomes count towards `sent`; only replies contribute RTTs, so timeouts,
    /// errors, duplicates and late replies never do. Duplicates and late replies are counted
    /// apart and are never `received`.
    pub fn record(&mut self, ev: &Event) {
        match ev.outcome {
            Outcome::Reply { rtt_ns, ttl, from } => {
                if self.received >= 1 || self.more.is_some() {
                    let last = self.last_ns;
                    self.more().push_rtt(rtt_ns, last);
                }
                self.received = self.received.saturating_add(1);
                self.last_ns = rtt_ns;
                if ttl.is_some() {
                    self.reply_ttl = ttl;
                }
                if from != ev.target && self.other_replier().is_none() {
                    self.more().other_replier = Some(from);
                }
            }
            Outcome::Error {
                family,
                icmp_type,
                code,
                from,
                ..
            } => {
                let m = self.more();
                m.errors += 1;
                m.first_error.get_or_insert(FirstError {
                    family,
                    icmp_type,
                    code,
                    from,
                });
            }
            Outcome::Timeout => self.timeouts = self.timeouts.saturating_add(1),
            Outcome::SendFailed { errno } => {
                let m = self.more();
                m.send_failed += 1;
                m.send_errno.get_or_insert(errno);
            }
            Outcome::Duplicate { .. } => self.more().duplicates += 1,
            Outcome::Late { .. } => self.more().late += 1,
        }
    }

    /// A counter of the heap part, 0 without it.
    fn of(&self, f: impl Fn(&More) -> u64) -> u64 {
        self.more.as_deref().map_or(0, f)
    }

    /// Probes that ended: replies, errors, timeouts and send failures.
    pub fn sent(&self) -> u64 {
        self.received() + self.timeouts() + self.errors() + self.send_failed()
    }

    /// Echo replies (terminal ones only).
    pub fn received(&self) -> u64 {
        u64::from(self.received)
    }

    /// ICMP errors about the probes.
    pub fn errors(&self) -> u64 {
        self.of(|m| m.errors)
    }

    /// Probes that timed out.
    pub fn timeouts(&self) -> u64 {
        u64::from(self.timeouts)
    }

    /// Probes the local stack refused to send.
    pub fn send_failed(&self) -> u64 {
        self.of(|m| m.send_failed)
    }

    /// Extra replies to probes already answered.
    pub fn duplicates(&self) -> u64 {
        self.of(|m| m.duplicates)
    }

    /// Replies that came after their probe had timed out.
    pub fn late(&self) -> u64 {
        self.of(|m| m.late)
    }

    /// `100 × (sent − received) / sent`, `None` when nothing was sent.
    pub fn loss_pct(&self) -> Option<f64> {
        loss_pct(self.sent(), self.received())
    }

    /// TTL / hop limit of the last reply that carried one.
    pub fn reply_ttl(&self) -> Option<u8> {
        self.reply_ttl
    }

    /// The first error recorded, if any.
    pub fn first_error(&self) -> Option<FirstError> {
        self.more.as_deref().and_then(|m| m.first_error)
    }

    /// The first reply sender that was not the probed address, if any.
    pub fn other_replier(&self) -> Option<IpAddr> {
        self.more.as_deref().and_then(|m| m.other_replier)
    }

    /// Who else spoke for this target: the first error's sender, else a replier that was not
    /// the target.
    pub fn responder(&self) -> Option<IpAddr> {
        self.first_error().map(|e| e.from).or(self.other_replier())
    }

    /// Reply RTTs in nanoseconds, in arrival order.
    pub fn samples_ns(&self) -> &[u64] {
        match self.more.as_deref() {
            Some(m) => &m.samples,
            None if self.received == 1 => core::slice::from_ref(&self.last_ns),
            None => &[],
        }
    }

    /// The RTT summary, `None` without replies. Sorts a copy of the samples unless they
    /// arrived in ascending order.
    pub fn rtt(&self) -> Option<Rtt> {
        let Some(m) = self.more.as_deref().filter(|m| !m.samples.is_empty()) else {
            // One reply (or none): every figure is its RTT.
            let x = (self.received == 1).then_some(self.last_ns)?;
            return Some(Rtt {
                last_ns: x,
                min_ns: x,
                max_ns: x,
                mean_ns: x as f64,
                stddev_ns: 0.0,
                p50_ns: x,
                p90_ns: x,
                p99_ns: x,
            });
        };
        let sorted: Cow<'_, [u64]> = if m.unsorted {
            let mut copy = m.samples.clone();
            copy.sort_unstable();
            Cow::Owned(copy)
        } else {
            Cow::Borrowed(&m.samples)
        };
        Some(Rtt {
            last_ns: self.last_ns,
            min_ns: m.min_ns,
            max_ns: m.max_ns,
            mean_ns: m.moments.mean,
            stddev_ns: m.moments.stddev(),
            p50_ns: nearest_rank(&sorted, 50)?,
            p90_ns: nearest_rank(&sorted, 90)?,
            p99_ns: nearest_rank(&sorted, 99)?,
        })
    }

    /// This target as an output row.
    pub fn row<'a>(&'a self, target: IpAddr, name: Option<&'a str>) -> Row<'a> {
        Row {
            target,
            name,
            sent: self.sent(),
            received: self.received(),
            loss_pct: self.loss_pct(),
            rtt: self.rtt(),
            reply_ttl: self.reply_ttl,
            errors: self.errors(),
            first_error: self.first_error(),
            responder: self.responder(),
            timeouts: self.timeouts(),
            duplicates: self.duplicates(),
            late: self.late(),
            send_failed: self.send_failed(),
            send_errno: self.more.as_deref().and_then(|m| m.send_errno),
        }
    }
}

/// Running mean and sum of squared deviations (Welford's algorithm).
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Population standard deviation, 0 for fewer than two values.
    fn stddev(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        (self.m2.max(0.0) / self.n as f64).sqrt()
    }
}

/// `100 × (sent − received) / sent`, `None` when `sent` is 0.
pub fn loss_pct(sent: u64, received: u64) -> Option<f64> {
    if sent == 0 {
        return None;
    }
    Some(100.0 * sent.saturating_sub(received) as f64 / sent as f64)
}

/// Exact nearest-rank percentile of ascending `sorted`: the value of rank ⌈p·N/100⌉
/// (1-based; rank 1 for p = 0). `None` when `sorted` is empty; `p` above 100 means 100.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: u8) -> Option<T> {
    let n = u128::try_from(sorted.len()).ok()?;
    let rank = (u128::from(p.min(100)) * n).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).ok()?;
    sorted.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    fn ev(n: u64, outcome: Outcome) -> Event {
        Event {
            probe: Some(n),
            cookie: 0,
            target: TARGET,
            sent_ns: Some(1_000_000 * n),
            attempt: 0,
            outcome,
        }
    }

    fn reply(n: u64, rtt_ns: u64, ttl: Option<u8>) -> Event {
        ev(
            n,
            Outcome::Reply {
                rtt_ns,
                ttl,
                from: TARGET,
            },
        )
    }

    fn unreachable(n: u64, code: u8) -> Event {
        ev(
            n,
            Outcome::Error {
                family: Family::V4,
                icmp_type: 3,
                code,
                from: ROUTER,
                rtt_ns: 777,
                rest: 0,
                gateway: None,
            },
        )
    }

    #[test]
    fn known_sequence() {
        let mut s = TargetStats::new();
        // RTTs (µs) 5 2 9 4 4 7 4 5: mean 5, population stddev exactly 2.
        let rtts_us = [5, 2, 9, 4, 4, 7, 4, 5];
        for (i, us) in rtts_us.iter().enumerate() {
            s.record(&reply(i as u64, us * 1000, Some(60 - i as u8)));
        }
        s.record(&ev(8, Outcome::Timeout));
        s.record(&unreachable(9, 13));
        s.record(&unreachable(10, 1));
        s.record(&ev(11, Outcome::SendFailed { errno: 101 }));
        s.record(&ev(3, Outcome::Duplicate { rtt_ns: 1 }));
        s.record(&ev(
            8,
            Outcome::Late {
                rtt_ns: 100_000_000,
            },
        ));

        assert_eq!(s.sent(), 12);
        assert_eq!(s.received(), 8);
        assert_eq!(s.errors(), 2);
        assert_eq!(s.timeouts(), 1);
        assert_eq!(s.send_failed(), 1);
        assert_eq!(s.duplicates(), 1);
        assert_eq!(s.late(), 1);
        assert_eq!(s.loss_pct(), Some(100.0 * 4.0 / 12.0));
        assert_eq!(s.reply_ttl(), Some(53));

        let rtt = s.rtt().unwrap();
        assert_eq!(rtt.last_ns, 5000);
        assert_eq!(rtt.min_ns, 2000);
        assert_eq!(rtt.max_ns, 9000);
        assert!((rtt.mean_ns - 5000.0).abs() < 1e-6, "{}", rtt.mean_ns);
        assert!((rtt.stddev_ns - 2000.0).abs() < 1e-6, "{}", rtt.stddev_ns);
        // Sorted: 2 4 4 4 5 5 7 9; ranks ⌈4⌉=4, ⌈7.2⌉=8, ⌈7.92⌉=8.
        assert_eq!(rtt.p50_ns, 4000);
        assert_eq!(rtt.p90_ns, 9000);
        assert_eq!(rtt.p99_ns, 9000);

        let err = s.first_error().unwrap();
        assert_eq!((err.family, err.icmp_type, err.code), (Family::V4, 3, 13));
        assert_eq!(err.from, ROUTER);
        assert_eq!(
            err.describe().to_string(),
            "Destination Unreachable / Communication Administratively Prohibited"
        );
        assert_eq!(s.responder(), Some(ROUTER));
        assert_eq!(s.other_replier(), None);
    }

    #[test]
    fn timeouts_errors_duplicates_late_give_no_rtt() {
        let mut s = TargetStats::new();
        s.record(&ev(0, Outcome::Timeout));
        s.record(&unreachable(1, 1));
        s.record(&ev(0, Outcome::Late { rtt_ns: 5 }));
        s.record(&ev(1, Outcome::Duplicate { rtt_ns: 5 }));
        assert_eq!(s.rtt(), None);
        assert!(s.samples_ns().is_empty());
        assert_eq!(s.sent(), 2);
        assert_eq!(s.received(), 0);
        assert_eq!(s.loss_pct(), Some(100.0));
        assert_eq!(s.reply_ttl(), None);
    }

    #[test]
    fn duplicates_and_late_are_not_received() {
        let mut s = TargetStats::new();
        s.record(&reply(0, 1000, None));
        for _ in 0..3 {
            s.record(&ev(0, Outcome::Duplicate { rtt_ns: 2000 }));
            s.record(&ev(0, Outcome::Late { rtt_ns: 3000 }));
        }
        assert_eq!((s.sent(), s.received()), (1, 1));
        assert_eq!((s.duplicates(), s.late()), (3, 3));
        assert_eq!(s.loss_pct(), Some(0.0));
        let rtt = s.rtt().unwrap();
        assert_eq!((rtt.min_ns, rtt.max_ns, rtt.p99_ns), (1000, 1000, 1000));
        assert_eq!(rtt.stddev_ns, 0.0);
    }

    #[test]
    fn nothing_sent_has_no_loss() {
        let s = TargetStats::new();
        assert_eq!(s.loss_pct(), None);
        assert_eq!(s.rtt(), None);
        assert_eq!(s.responder(), None);
    }

    #[test]
    fn other_replier_is_the_responder_without_errors() {
        let mut s = TargetStats::new();
        s.record(&reply(0, 10, Some(64)));
        s.record(&ev(
            1,
            Outcome::Reply {
                rtt_ns: 20,
                ttl: None,
                from: ROUTER,
            },
        ));
        assert_eq!(s.other_replier(), Some(ROUTER));
        assert_eq!(s.responder(), Some(ROUTER));
        // A reply without a TTL keeps the last known one.
        assert_eq!(s.reply_ttl(), Some(64));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 50), Some(50));
        assert_eq!(nearest_rank(&hundred, 90), Some(90));
        assert_eq!(nearest_rank(&hundred, 99), Some(99));
        assert_eq!(nearest_rank(&hundred, 100), Some(100));
        assert_eq!(nearest_rank(&hundred, 0), Some(1));
        assert_eq!(nearest_rank(&hundred, 255), Some(100));
        let three = [10, 20, 30];
        assert_eq!(nearest_rank(&three, 50), Some(20));
        assert_eq!(nearest_rank(&three, 90), Some(30));
        assert_eq!(nearest_rank(&three, 33), Some(10));
        assert_eq!(nearest_rank(&three, 34), Some(20));
        assert_eq!(nearest_rank(&[7], 99), Some(7));
        // RTTs in µs as the report keeps them.
        let f = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(nearest_rank(&f, 50), Some(2.0));
        assert_eq!(nearest_rank(&f, 99), Some(4.0));
        assert_eq!(nearest_rank::<f64>(&[], 50), None);
        assert_eq!(nearest_rank::<u64>(&[], 50), None);
    }

    #[test]
    fn sorted_arrival_and_shuffled_arrival_agree() {
        let mut ascending = TargetStats::new();
        let mut shuffled = TargetStats::new();
        for i in 0..100u64 {
            ascending.record(&reply(i, (i + 1) * 10, None));
            shuffled.record(&reply(i, ((i * 37) % 100 + 1) * 10, None));
        }
        let (a, b) = (ascending.rtt().unwrap(), shuffled.rtt().unwrap());
        assert_eq!((a.p50_ns, a.p90_ns, a.p99_ns), (500, 900, 990));
        assert_eq!((b.p50_ns, b.p90_ns, b.p99_ns), (500, 900, 990));
        assert_eq!((a.min_ns, a.max_ns), (b.min_ns, b.max_ns));
        assert!((a.mean_ns - b.mean_ns).abs() < 1e-6);
        assert!((a.stddev_ns - b.stddev_ns).abs() < 1e-6);
    }

    #[test]
    fn one_reply_and_timeouts_stay_in_32_bytes() {
        assert_eq!(core::mem::size_of::<TargetStats>(), 32);
        let mut s = TargetStats::new();
        s.record(&ev(0, Outcome::Timeout));
        s.record(&reply(1, 700, Some(60)));
        s.record(&ev(2, Outcome::Timeout));
        assert!(s.more.is_none());
        assert_eq!((s.sent(), s.received(), s.timeouts()), (3, 1, 2));
        assert_eq!(s.samples_ns(), &[700]);
        let r = s.rtt().unwrap();
        assert_eq!(
            (r.last_ns, r.min_ns, r.max_ns, r.p50_ns, r.p99_ns),
            (700, 700, 700, 700, 700)
        );
        assert_eq!((r.mean_ns, r.stddev_ns), (700.0, 0.0));
        // A second reply moves both to the heap, exactly.
        s.record(&reply(3, 300, Some(61)));
        let r = s.rtt().unwrap();
        assert_eq!(
            (r.last_ns, r.min_ns, r.max_ns, r.mean_ns),
            (300, 300, 700, 500.0)
        );
        assert_eq!((r.stddev_ns, r.p50_ns, r.p90_ns), (200.0, 300, 700));
        assert_eq!(s.samples_ns(), &[700, 300]);
        assert_eq!(s.reply_ttl(), Some(61));
    }

    #[test]
    fn an_error_before_and_after_the_first_reply_keeps_every_rtt() {
        for error_first in [true, false] {
            let mut s = TargetStats::new();
            if error_first {
                s.record(&unreachable(0, 1));
            }
            s.record(&reply(1, 1_000, None));
            if !error_first {
                s.record(&unreachable(0, 1));
            }
            s.record(&reply(2, 3_000, None));
            assert_eq!((s.sent(), s.received(), s.errors()), (3, 2, 1));
            assert_eq!(s.samples_ns(), &[1_000, 3_000]);
            let r = s.rtt().unwrap();
            assert_eq!((r.min_ns, r.max_ns, r.mean_ns), (1_000, 3_000, 2_000.0));
            assert!(s.first_error().is_some());
        }
    }
}
