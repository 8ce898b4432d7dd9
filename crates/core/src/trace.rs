//! `trace`'s probe order: every (target, TTL) pair of a target list once, Yarrp-style, in
//! the stateless pseudo-random order of a [`Cycle`] over their indices, so that probes to one
//! target (and the routers on its path) are spread over the whole run instead of coming in
//! bursts of consecutive TTLs.
//!
//! Pair `i` of `targets.len() × hops` is target `i / hops` at TTL `first_ttl + i % hops`; the
//! probe's cookie is `i` itself, so replies and ICMP errors name their (target, TTL) through
//! the payload stamp and no per-probe state is kept beyond the in-flight table.
//!
//! Stopping at the destination: the consumer of events marks a target [`Reached`] at the
//! smallest TTL that drew the destination's echo reply (or an unreachable error, which ends
//! the path too); the source then skips that target's pairs with a larger TTL that it has not
//! produced yet. One relaxed atomic load per pair, no lock.

use core::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use crate::permute::{Cycle, PermuteError, Walk};
use crate::source::{Next, Source};

/// The (target, TTL) pairs of a run and their numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairs {
    /// Number of targets.
    pub targets: u32,
    /// The smallest TTL probed (at least 1).
    pub first_ttl: u8,
    /// The largest TTL probed (at least `first_ttl`).
    pub max_ttl: u8,
}

impl Pairs {
    /// The pairs of `targets` targets at TTLs `first_ttl..=max_ttl`, if that is a non-empty
    /// TTL range starting at 1 or above and the pairs can be numbered by a `u32` cookie.
    pub fn new(targets: u32, first_ttl: u8, max_ttl: u8) -> Option<Self> {
        let p = Pairs {
            targets,
            first_ttl,
            max_ttl,
        };
        (first_ttl >= 1 && first_ttl <= max_ttl && p.len() <= u64::from(u32::MAX) + 1).then_some(p)
    }

    /// TTLs per target.
    pub fn hops(&self) -> u8 {
        self.max_ttl - self.first_ttl + 1
    }

    /// Number of pairs.
    pub fn len(&self) -> u64 {
        u64::from(self.targets) * u64::from(self.hops())
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pair `i` as (target index, TTL), or `None` past the end.
    #[inline]
    pub fn pair(&self, i: u64) -> Option<(u32, u8)> {
        if i >= self.len() {
            return None;
        }
        let h = u64::from(self.hops());
        Some(((i / h) as u32, self.first_ttl + (i % h) as u8))
    }

    /// The index of (target, TTL), or `None` outside the pairs.
    pub fn index(&self, target: u32, ttl: u8) -> Option<u64> {
        (target < self.targets && (self.first_ttl..=self.max_ttl).contains(&ttl))
            .then(|| u64::from(target) * u64::from(self.hops()) + u64::from(ttl - self.first_ttl))
    }
}

/// Per target, the smallest TTL at which its path ended (destination reached, or an
/// unreachable error); shared between the consumer of events, which marks, and the source,
/// which reads. Also counts the pairs the source skipped because of it.
#[derive(Debug)]
pub struct Reached {
    ends: Box<[AtomicU8]>,
    skipped: AtomicU64,
}

/// "Not reached": no TTL is above it, so nothing is skipped.
const OPEN: u8 = u8::MAX;

impl Reached {
    /// Nothing reached yet, for `targets` targets.
    pub fn new(targets: usize) -> Self {
        Reached {
            ends: (0..targets).map(|_| AtomicU8::new(OPEN)).collect(),
            skipped: AtomicU64::new(0),
        }
    }

    /// Records that `target`'s path ends at `ttl` (the smallest such TTL wins). Targets out
    /// of range are ignored.
    pub fn mark(&self, target: u32, ttl: u8) {
        if let Some(e) = self.ends.get(target as usize) {
            e.fetch_min(ttl, Ordering::Relaxed);
        }
    }

    /// The TTL at which `target`'s path ends, if known yet.
    pub fn end(&self, target: u32) -> Option<u8> {
        self.ends
            .get(target as usize)
            .map(|e| e.load(Ordering::Relaxed))
            .filter(|&t| t != OPEN)
    }

    /// Whether a probe to `target` at `ttl` would only go past its path's end.
    #[inline]
    pub fn beyond(&self, target: u32, ttl: u8) -> bool {
        self.ends
            .get(target as usize)
            .is_some_and(|e| ttl > e.load(Ordering::Relaxed))
    }

    /// Pairs skipped so far because they lay beyond their target's end.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// Why a trace order cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The target list does not match the pairs, or the reached set is too small.
    #[error("{targets} targets but the pairs count {pairs}; the reached set holds {reached}")]
    Mismatch {
        /// Targets in the list.
        targets: usize,
        /// Targets the pairs count.
        pairs: u32,
        /// Targets the reached set holds.
        reached: usize,
    },
    /// The permutation could not be built.
    #[error(transparent)]
    Permute(#[from] PermuteError),
}

/// One pass over every (target, TTL) pair in a seeded pseudo-random order, skipping pairs
/// beyond their target's [`Reached`] end.
#[derive(Debug)]
pub struct Trace {
    targets: Arc<[IpAddr]>,
    pairs: Pairs,
    walk: Walk,
    reached: Arc<Reached>,
    produced: u64,
}

impl Trace {
    /// Walks `pairs` of `targets` in the order of `seed`, consulting `reached`.
    pub fn new(
        targets: Arc<[IpAddr]>,
        pairs: Pairs,
        seed: u64,
        reached: Arc<Reached>,
    ) -> Result<Self, TraceError> {
        if targets.len() != pairs.targets as usize || reached.ends.len() < targets.len() {
            return Err(TraceError::Mismatch {
                targets: targets.len(),
                pairs: pairs.targets,
                reached: reached.ends.len(),
            });
        }
        let walk = Cycle::new(pairs.len(), seed)?.shard(0, 1)?;
        Ok(Trace {
            targets,
            pairs,
            walk,
            reached,
            produced: 0,
        })
    }

    /// Probes produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// The next pair to probe: (pair index, target index, TTL).
    #[inline]
    pub fn next_pair(&mut self) -> Option<(u64, u32, u8)> {
        for i in self.walk.by_ref() {
            let Some((t, ttl)) = self.pairs.pair(i) else {
                continue;
            };
            if self.reached.beyond(t, ttl) {
                self.reached.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.produced += 1;
            return Some((i, t, ttl));
        }
        None
    }
}

impl Source for Trace {
    #[inline]
    fn next(&mut self, _now: Instant) -> Next {
        match self.next_pair() {
            // `Pairs::new` keeps every index below 2^32.
            Some((i, t, ttl)) => Next::Probe {
                cookie: i as u32,
                target: self.targets[t as usize],
                class: 0,
                ttl,
            },
            None => Next::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: u32) -> Arc<[IpAddr]> {
        (0..n)
            .map(|i| IpAddr::from([198, 19, (i >> 8) as u8, i as u8]))
            .collect()
    }

    #[test]
    fn pairs_number_targets_and_ttls() {
        let p = Pairs::new(3, 2, 5).unwrap();
        assert_eq!((p.hops(), p.len()), (4, 12));
        assert_eq!(p.pair(0), Some((0, 2)));
        assert_eq!(p.pair(5), Some((1, 3)));
        assert_eq!(p.pair(11), Some((2, 5)));
        assert_eq!(p.pair(12), None);
        for i in 0..12 {
            let (t, ttl) = p.pair(i).unwrap();
            assert_eq!(p.index(t, ttl), Some(i));
        }
        assert_eq!(p.index(0, 1), None);
        assert_eq!(p.index(0, 6), None);
        assert_eq!(p.index(3, 2), None);
        assert!(Pairs::new(3, 0, 5).is_none(), "TTL 0");
        assert!(Pairs::new(3, 6, 5).is_none(), "empty range");
        assert!(
            Pairs::new(1 << 25, 1, 129).is_none(),
            "more than 2^32 pairs"
        );
        assert!(Pairs::new(u32::MAX, 1, 2).is_none());
        assert!(Pairs::new(1 << 25, 1, 128).is_some(), "exactly 2^32");
        assert!(Pairs::new(1 << 24, 1, 255).is_some());
        assert!(Pairs::new(0, 1, 30).unwrap().is_empty());
    }

    fn all(tr: &mut Trace) -> Vec<(u32, IpAddr, u8)> {
        let now = Instant::now();
        let mut v = vec![];
        while let Next::Probe {
            cookie,
            target,
            ttl,
            ..
        } = tr.next(now)
        {
            v.push((cookie, target, ttl));
        }
        v
    }

    #[test]
    fn every_pair_once_with_its_cookie() {
        let t = targets(20);
        let pairs = Pairs::new(20, 1, 30).unwrap();
        let reached = Arc::new(Reached::new(20));
        let mut tr = Trace::new(t.clone(), pairs, 7, reached.clone()).unwrap();
        let got = all(&mut tr);
        assert_eq!(got.len(), 600);
        assert_eq!(tr.produced(), 600);
        let mut seen = std::collections::HashSet::new();
        for &(cookie, target, ttl) in &got {
            let (i, h) = pairs.pair(u64::from(cookie)).unwrap();
            assert_eq!((t[i as usize], h), (target, ttl), "cookie {cookie}");
            assert!(seen.insert((target, ttl)), "{target} at {ttl} twice");
        }
        assert_eq!(reached.skipped(), 0);
    }

    #[test]
    fn the_order_is_scrambled_and_seeded() {
        let pairs = Pairs::new(50, 1, 30).unwrap();
        let order = |seed| {
            let mut tr = Trace::new(targets(50), pairs, seed, Arc::new(Reached::new(50))).unwrap();
            all(&mut tr)
        };
        let a = order(1);
        assert_eq!(a, order(1), "same seed, same order");
        assert_ne!(a, order(2));
        // Routers are not hit in bursts: successive probes rarely share a target (in target
        // order 1,450 of the 1,499 successive pairs would; in a uniformly random order about
        // 1,499 × 29/1,499 = 29), and one target's TTLs do not come in increasing order.
        let same = a.windows(2).filter(|w| w[0].1 == w[1].1).count();
        assert!(same < 80, "{same} successive probes to one target");
        let t0 = a[0].1;
        let ttls: Vec<u8> = a.iter().filter(|p| p.1 == t0).map(|p| p.2).collect();
        assert_eq!(ttls.len(), 30);
        let mut sorted = ttls.clone();
        sorted.sort_unstable();
        assert_ne!(ttls, sorted, "TTLs in probe order: {ttls:?}");
        // The first tenth of the run already reaches most targets.
        let early: std::collections::HashSet<IpAddr> = a[..150].iter().map(|p| p.1).collect();
        assert!(
            early.len() > 40,
            "{} targets in the first 150 probes",
            early.len()
        );
    }

    #[test]
    fn pairs_beyond_a_reached_end_are_skipped() {
        let t = targets(4);
        let pairs = Pairs::new(4, 1, 30).unwrap();
        let reached = Arc::new(Reached::new(4));
        let mut tr = Trace::new(t.clone(), pairs, 3, reached.clone()).unwrap();
        // Target 1 is reached at 10 before anything is sent, then at 4 halfway.
        reached.mark(1, 10);
        assert_eq!(reached.end(1), Some(10));
        assert_eq!(reached.end(0), None);
        let now = Instant::now();
        let mut got = vec![];
        for k in 0.. {
            if k == 40 {
                reached.mark(1, 4);
                reached.mark(1, 12); // a larger TTL does not move the end back
            }
            match tr.next(now) {
                Next::Probe { target, ttl, .. } => got.push((k, target, ttl)),
                Next::Done => break,
                Next::NotYet | Next::Scan(_) | Next::Try(_) => unreachable!(),
            }
        }
        assert_eq!(reached.end(1), Some(4));
        for &(k, target, ttl) in &got {
            if target == t[1] {
                assert!(ttl <= 10, "probe {k}: TTL {ttl} beyond the first end");
                if k >= 40 {
                    assert!(ttl <= 4, "probe {k}: TTL {ttl} beyond the second end");
                }
            }
        }
        for other in [0, 2, 3] {
            assert_eq!(got.iter().filter(|p| p.1 == t[other]).count(), 30);
        }
        let to_1 = got.iter().filter(|p| p.1 == t[1]).count() as u64;
        assert!(to_1 <= 10);
        assert_eq!(to_1 + reached.skipped(), 30, "each pair sent or skipped");
        assert_eq!(got.len() as u64 + reached.skipped(), pairs.len());
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        let pairs = Pairs::new(3, 1, 5).unwrap();
        assert!(Trace::new(targets(2), pairs, 1, Arc::new(Reached::new(3))).is_err());
        assert!(Trace::new(targets(3), pairs, 1, Arc::new(Reached::new(2))).is_err());
        let r = Reached::new(2);
        r.mark(9, 3); // out of range: ignored
        assert!(!r.beyond(9, 200));
    }
}
