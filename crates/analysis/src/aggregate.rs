//! The dense per-target store: events in, [`Row`]s and run [`Totals`] out.

use core::net::IpAddr;
use std::sync::Arc;

use asdic_core::Event;
use asdic_core::set::TargetList;

use crate::error::{Error, Result};
use crate::schema::Row;
use crate::stats::{TargetStats, loss_pct, nearest_rank};

/// Statistics for every target of a run, indexed by the sender's cookie.
///
/// It holds the target list it is given (shared, not copied) and one [`TargetStats`] per
/// target (32 bytes each, more for targets with several replies or errors).
#[derive(Debug, Clone)]
pub struct Aggregator {
    targets: Arc<dyn TargetList>,
    /// Empty, or one entry per target.
    names: Vec<Option<String>>,
    stats: Vec<TargetStats>,
    ignored: u64,
}

/// Run-wide figures over all targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Number of targets.
    pub targets: u64,
    /// Probes that ended (replies, errors, timeouts, send failures).
    pub sent: u64,
    /// Echo replies.
    pub received: u64,
    /// ICMP errors.
    pub errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Probes the local stack refused to send.
    pub send_failed: u64,
    /// Duplicate replies.
    pub duplicates: u64,
    /// Late replies.
    pub late: u64,
    /// Targets with at least one reply.
    pub alive: u64,
    /// Targets without a reply but with at least one ICMP error.
    pub unreachable: u64,
    /// Events that named no known target (see [`Aggregator::ignored`]).
    pub ignored: u64,
    /// `100 × (sent − received) / sent`, `None` when nothing was sent.
    pub loss_pct: Option<f64>,
    /// RTT over all replies of all targets, `None` without replies.
    pub rtt: Option<RttTotals>,
}

/// RTT over every reply of a run, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttTotals {
    /// Smallest RTT.
    pub min_ns: u64,
    /// Mean RTT (exact sum over count).
    pub mean_ns: f64,
    /// Largest RTT.
    pub max_ns: u64,
    /// Median (nearest rank).
    pub p50_ns: u64,
    /// 90th percentile (nearest rank).
    pub p90_ns: u64,
    /// 99th percentile (nearest rank).
    pub p99_ns: u64,
}

impl Aggregator {
    /// One empty [`TargetStats`] per target; `targets[i]` is the target of cookie `i`.
    pub fn new(targets: Vec<IpAddr>) -> Self {
        Self::over(Arc::new(targets))
    }

    /// One empty [`TargetStats`] per target of `targets`; target `i` is that of cookie `i`.
    pub fn over(targets: Arc<dyn TargetList>) -> Self {
        let stats = vec![TargetStats::new(); targets.len() as usize];
        Self {
            targets,
            names: Vec::new(),
            stats,
            ignored: 0,
        }
    }

    /// Attaches a display name (hostname, label) to each target, in target order.
    ///
    /// # Errors
    /// [`Error::NamesLength`] unless there is exactly one entry per target.
    pub fn with_names(mut self, names: Vec<Option<String>>) -> Result<Self> {
        if names.len() != self.stats.len() {
            return Err(Error::NamesLength {
                targets: self.stats.len(),
                names: names.len(),
            });
        }
        self.names = names;
        Ok(self)
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// Accounts for one event.
    ///
    /// An event whose cookie is out of range, or whose target is not the address at that
    /// index, belongs to no known target: it is counted in [`Aggregator::ignored`] and
    /// otherwise dropped.
    pub fn record(&mut self, ev: &Event) {
        let index = usize::try_from(ev.cookie).ok();
        let slot = index.and_then(|i| Some((self.targets.nth(i as u64)?, self.stats.get_mut(i)?)));
        match slot {
            Some((target, stats)) if target == ev.target => stats.record(ev),
            _ => self.ignored += 1,
        }
    }

    /// Accounts for each event of `evs`, in order.
    pub fn record_batch(&mut self, evs: &[Event]) {
        for ev in evs {
            self.record(ev);
        }
    }

    /// Events that named no known target.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The target and statistics of `cookie`, if in range.
    pub fn get(&self, cookie: u32) -> Option<(IpAddr, &TargetStats)> {
        let i = usize::try_from(cookie).ok()?;
        Some((self.targets.nth(i as u64)?, self.stats.get(i)?))
    }

    /// Run-wide figures. Gathers and sorts a copy of every reply RTT for the percentiles.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            targets: self.stats.len() as u64,
            sent: 0,
            received: 0,
            errors: 0,
            timeouts: 0,
            send_failed: 0,
            duplicates: 0,
            late: 0,
            alive: 0,
            unreachable: 0,
            ignored: self.ignored,
            loss_pct: None,
            rtt: None,
        };
        let mut all = Vec::with_capacity(self.stats.iter().map(|s| s.samples_ns().len()).sum());
        for s in &self.stats {
            t.sent += s.sent();
            t.received += s.received();
            t.errors += s.errors();
            t.timeouts += s.timeouts();
            t.send_failed += s.send_failed();
            t.duplicates += s.duplicates();
            t.late += s.late();
            if s.received() > 0 {
                t.alive += 1;
            } else if s.errors() > 0 {
                t.unreachable += 1;
            }
            all.extend_from_slice(s.samples_ns());
        }
        t.loss_pct = loss_pct(t.sent, t.received);
        t.rtt = rtt_totals(&mut all);
        t
    }

    /// One row per target, in target (cookie) order.
    ///
    /// Rows borrow from the aggregator and cost no allocation unless a target's replies
    /// arrived out of RTT order; write them out in chunks to keep memory bounded.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> + '_ {
        self.stats.iter().enumerate().filter_map(|(i, stats)| {
            let name = self.names.get(i).and_then(|n| n.as_deref());
            Some(stats.row(self.targets.nth(i as u64)?, name))
        })
    }
}

/// Min/mean/max and percentiles of `samples` (sorted in place), `None` when empty.
fn rtt_totals(samples: &mut [u64]) -> Option<RttTotals> {
    samples.sort_unstable();
    let sum: u128 = samples.iter().map(|&x| u128::from(x)).sum();
    Some(RttTotals {
        min_ns: *samples.first()?,
        mean_ns: sum as f64 / samples.len() as f64,
        max_ns: *samples.last()?,
        p50_ns: nearest_rank(samples, 50)?,
        p90_ns: nearest_rank(samples, 90)?,
        p99_ns: nearest_rank(samples, 99)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_core::Outcome;
    use asdic_wire::Family;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn addr(i: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))
    }

    fn ev(cookie: u32, target: IpAddr, outcome: Outcome) -> Event {
        Event {
            probe: Some(0),
            cookie,
            target,
            sent_ns: Some(0),
            attempt: 0,
            outcome,
        }
    }

    fn reply(cookie: u32, rtt_ns: u64) -> Event {
        let target = addr(cookie as u8);
        ev(
            cookie,
            target,
            Outcome::Reply {
                rtt_ns,
                ttl: Some(64),
                from: target,
            },
        )
    }

    fn aggregator() -> Aggregator {
        Aggregator::new((0..4).map(addr).collect())
    }

    #[test]
    fn out_of_range_and_mismatched_events_are_ignored() {
        let mut agg = aggregator();
        agg.record(&reply(4, 10));
        agg.record(&reply(u32::MAX, 10));
        // Right cookie, wrong address.
        agg.record(&ev(1, addr(9), Outcome::Timeout));
        assert_eq!(agg.ignored(), 3);
        let t = agg.totals();
        assert_eq!((t.sent, t.received, t.ignored), (0, 0, 3));
        assert!(agg.rows().all(|r| r.sent == 0));

        agg.record(&reply(3, 10));
        assert_eq!(agg.ignored(), 3);
        assert_eq!(
            agg.get(3).map(|(a, s)| (a, s.received())),
            Some((addr(3), 1))
        );
        assert!(agg.get(4).is_none());
    }

    #[test]
    fn empty_aggregator() {
        let agg = Aggregator::new(Vec::new());
        assert!(agg.is_empty());
        let t = agg.totals();
        assert_eq!((t.targets, t.sent), (0, 0));
        assert_eq!(t.loss_pct, None);
        assert_eq!(t.rtt, None);
        assert_eq!(agg.rows().count(), 0);
    }

    #[test]
    fn totals_over_targets() {
        let mut agg = aggregator();
        // Target 0: replies 10, 30. Target 1: reply 20, one timeout.
        // Target 2: one error, one timeout. Target 3: nothing but a late reply.
        agg.record_batch(&[reply(0, 10), reply(0, 30), reply(1, 20)]);
        agg.record(&ev(1, addr(1), Outcome::Timeout));
        agg.record(&ev(
            2,
            addr(2),
            Outcome::Error {
                family: Family::V4,
                icmp_type: 11,
                code: 0,
                from: addr(254),
                rtt_ns: 5,
                rest: 0,
                gateway: None,
            },
        ));
        agg.record(&ev(2, addr(2), Outcome::Timeout));
        agg.record(&ev(3, addr(3), Outcome::Late { rtt_ns: 1 }));
        agg.record(&ev(0, addr(0), Outcome::Duplicate { rtt_ns: 1 }));

        let t = agg.totals();
        assert_eq!(t.targets, 4);
        assert_eq!(t.sent, 6);
        assert_eq!(t.received, 3);
        assert_eq!(t.errors, 1);
        assert_eq!(t.timeouts, 2);
        assert_eq!((t.duplicates, t.late), (1, 1));
        assert_eq!((t.alive, t.unreachable), (2, 1));
        assert_eq!(t.loss_pct, Some(50.0));
        let rtt = t.rtt.unwrap();
        assert_eq!((rtt.min_ns, rtt.max_ns), (10, 30));
        assert_eq!(rtt.mean_ns, 20.0);
        assert_eq!((rtt.p50_ns, rtt.p90_ns, rtt.p99_ns), (20, 30, 30));
    }

    /// xorshift64: a deterministic stream of arbitrary values, no dependency needed.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_events_keep_invariants_and_render() {
        let mut agg = aggregator();
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let mut expected_ignored = 0;
        for n in 0..20_000 {
            let r = next(&mut state);
            let cookie = (r % 6) as u32; // 4 and 5 are out of range
            let target = if r >> 60 == 0 {
                addr(200)
            } else {
                addr(cookie as u8)
            };
            if cookie >= 4 || target != addr(cookie as u8) {
                expected_ignored += 1;
            }
            let rtt_ns = match (r >> 8) % 4 {
                0 => 0,
                1 => u64::MAX,
                _ => next(&mut state),
            };
            let outcome = match (r >> 16) % 6 {
                0 => Outcome::Reply {
                    rtt_ns,
                    ttl: Some((r >> 24) as u8).filter(|_| r & 1 == 0),
                    from: addr((r >> 32) as u8),
                },
                1 => Outcome::Error {
                    family: if r & 2 == 0 { Family::V4 } else { Family::V6 },
                    icmp_type: (r >> 24) as u8,
                    code: (r >> 32) as u8,
                    from: addr((r >> 40) as u8),
                    rtt_ns,
                    rest: 0,
                    gateway: None,
                },
                2 => Outcome::Timeout,
                3 => Outcome::SendFailed { errno: r as i32 },
                4 => Outcome::Duplicate { rtt_ns },
                _ => Outcome::Late { rtt_ns },
            };
            agg.record(&Event {
                probe: Some(n),
                cookie,
                target,
                sent_ns: Some(r),
                attempt: 0,
                outcome,
            });
        }
        assert_eq!(agg.ignored(), expected_ignored);
        let t = agg.totals();
        assert_eq!(t.sent, t.received + t.errors + t.timeouts + t.send_failed);
        assert_eq!(t.sent + t.duplicates + t.late + t.ignored, 20_000);
        let loss = t.loss_pct.unwrap();
        assert!((0.0..=100.0).contains(&loss));
        let rtt = t.rtt.unwrap();
        assert_eq!((rtt.min_ns, rtt.max_ns), (0, u64::MAX));
        assert!(rtt.p50_ns <= rtt.p90_ns && rtt.p90_ns <= rtt.p99_ns);
        for row in agg.rows() {
            let r = row.rtt.unwrap();
            assert!(r.min_ns <= r.p50_ns && r.p99_ns <= r.max_ns);
            assert!(r.stddev_ns.is_finite() && r.stddev_ns >= 0.0);
        }

        let rows: Vec<_> = agg.rows().collect();
        for format in [
            crate::Format::Table,
            crate::Format::Csv,
            crate::Format::Jsonl,
        ] {
            let mut out = Vec::new();
            let mut sink = crate::sink_for(format, &mut out).unwrap();
            sink.write_rows(&rows).unwrap();
            sink.finish().unwrap();
            let lines = String::from_utf8(out).unwrap().lines().count();
            let header = usize::from(format != crate::Format::Jsonl);
            assert_eq!(lines, rows.len() + header, "{format}");
        }
        assert_eq!(crate::record_batch(&rows).unwrap().num_rows(), 4);
    }

    #[test]
    fn rows_in_target_order_with_names() {
        let targets = vec![addr(1), IpAddr::V6(Ipv6Addr::LOCALHOST)];
        assert!(matches!(
            Aggregator::new(targets.clone()).with_names(vec![None]),
            Err(Error::NamesLength {
                targets: 2,
                names: 1
            })
        ));
        let agg = Aggregator::new(targets)
            .with_names(vec![Some("one".into()), None])
            .unwrap();
        let rows: Vec<_> = agg.rows().map(|r| (r.target, r.name)).collect();
        assert_eq!(
            rows,
            [
                (addr(1), Some("one")),
                (IpAddr::V6(Ipv6Addr::LOCALHOST), None)
            ]
        );
    }
}
