//! Where the TX loop gets its next target: repeated rounds over a list (`ping`), or one pass
//! over a permuted, sharded, blocklisted address space (`scan`); `trace`'s (target, TTL)
//! walk is in [`crate::trace`].

use core::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::permute::Walk;
use crate::set::TargetList;
use crate::space::Space;
use crate::stateless::ScanProbe;

/// What a source has to offer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Probe this target; `cookie` is the caller's handle on it.
    Probe {
        /// The caller's handle (ping: index in the list; scan: low bits of the index).
        cookie: u32,
        /// The address.
        target: IpAddr,
        /// Which of the run's probe templates (packet sizes) to send: 0 for the first.
        class: u8,
        /// TTL / hop limit of this probe; 0 for the run's configured TTL
        /// (the TX loop's `SenderConfig::ttl`, crate `asdic-sender`).
        ttl: u8,
    },
    /// Probe this target statelessly: no in-flight slot, the identifiers from the run's key
    /// ([`crate::stateless`]).
    Scan(ScanProbe),
    /// Nothing now, more later (the next round is not due).
    NotYet,
    /// Nothing more, ever.
    Done,
}

/// A supply of targets for the TX loop.
pub trait Source {
    /// The next target, if one is due at `now`.
    fn next(&mut self, now: Instant) -> Next;

    /// Sending is to stop (`abort`: and not wait for answers). `true` when the source wants
    /// to be asked on (it hands out no more probes, then [`Next::Done`] once it has cooled
    /// down and reported); `false` (the default) ends the TX loop at once.
    fn stop(&mut self, _now: Instant, _abort: bool) -> bool {
        false
    }

    /// The engine refused stateless probe `p` (sent at `t_send_ns`) with `errno`.
    fn failed(&mut self, _p: &ScanProbe, _errno: i32, _t_send_ns: u64) {}

    /// Moves the events the source has produced (timeouts, failed sends) to `out`.
    fn drain(&mut self, _out: &mut Vec<Event>) {}
}

/// `count` rounds over a target list, a round starting at most every `interval`.
#[derive(Debug)]
pub struct Rounds {
    targets: Arc<dyn TargetList>,
    len: u64,
    count: u32,
    interval: Duration,
    round: u32,
    next: u64,
    round_start: Option<Instant>,
}

impl Rounds {
    /// Rounds over `targets`.
    pub fn new(targets: Arc<dyn TargetList>, count: u32, interval: Duration) -> Self {
        Rounds {
            len: targets.len(),
            targets,
            count,
            interval,
            round: 0,
            next: 0,
            round_start: None,
        }
    }
}

impl Source for Rounds {
    fn next(&mut self, now: Instant) -> Next {
        if self.round >= self.count || self.len == 0 {
            return Next::Done;
        }
        if self.next == 0 {
            // A new round may not start before its time.
            if let Some(start) = self.round_start
                && now < start + self.interval
            {
                return Next::NotYet;
            }
            self.round_start = Some(now);
        }
        let cookie = self.next as u32;
        let Some(target) = self.targets.nth(self.next) else {
            return Next::Done;
        };
        self.next += 1;
        if self.next == self.len {
            self.next = 0;
            self.round += 1;
        }
        Next::Probe {
            cookie,
            target,
            class: 0,
            ttl: 0,
        }
    }
}

/// One pass over a [`Space`] in the order of a permutation walk, at most `limit` targets.
#[derive(Debug)]
pub struct Scan {
    space: Arc<Space>,
    walk: Walk,
    limit: u64,
    produced: u64,
    skipped: u64,
}

impl Scan {
    /// Scans `space` in `walk`'s order, stopping after `limit` targets.
    pub fn new(space: Arc<Space>, walk: Walk, limit: u64) -> Self {
        Scan {
            space,
            walk,
            limit,
            produced: 0,
            skipped: 0,
        }
    }

    /// Targets produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Sampled indices that fell in blocked space and were skipped.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next target's index and address.
    #[inline]
    pub fn next_target(&mut self) -> Option<(u64, IpAddr)> {
        if self.produced >= self.limit {
            return None;
        }
        for i in self.walk.by_ref() {
            if let Some(a) = self.space.get(i) {
                self.produced += 1;
                return Some((i, a));
            }
            self.skipped += 1;
        }
        None
    }
}

impl Source for Scan {
    #[inline]
    fn next(&mut self, _now: Instant) -> Next {
        match self.next_target() {
            Some((i, target)) => Next::Probe {
                cookie: i as u32,
                target,
                class: 0,
                ttl: 0,
            },
            None => Next::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permute::Cycle;
    use crate::space::{AddrSet, SpaceSpec};
    use crate::targets::TargetSpec;
    use asdic_wire::Family;

    #[test]
    fn rounds_wait_for_their_interval() {
        let t: Vec<IpAddr> = ["198.19.0.1", "198.19.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut r = Rounds::new(Arc::new(t.clone()), 2, Duration::from_secs(1));
        let t0 = Instant::now();
        let probe = |c: u32| Next::Probe {
            cookie: c,
            target: t[c as usize],
            class: 0,
            ttl: 0,
        };
        assert_eq!(r.next(t0), probe(0));
        assert_eq!(r.next(t0), probe(1));
        assert_eq!(r.next(t0 + Duration::from_millis(999)), Next::NotYet);
        assert_eq!(r.next(t0 + Duration::from_secs(1)), probe(0));
        assert_eq!(r.next(t0 + Duration::from_secs(1)), probe(1));
        assert_eq!(r.next(t0 + Duration::from_secs(9)), Next::Done);
        assert_eq!(
            Rounds::new(Arc::new(Vec::new()), 3, Duration::ZERO).next(t0),
            Next::Done
        );
    }

    #[test]
    fn scan_visits_the_space_once_up_to_the_limit() {
        let targets = vec![TargetSpec::parse("198.19.0.0/20").unwrap()];
        let block = AddrSet::from_specs(&[TargetSpec::parse("198.19.4.0/24").unwrap()]);
        let space = Arc::new(
            Space::new(&SpaceSpec {
                family: Family::V4,
                targets: &targets,
                block: &block,
                allow: None,
                v6_samples: None,
                seed: 3,
            })
            .unwrap(),
        );
        let cycle = Cycle::new(space.len(), 3).unwrap();
        let mut s = Scan::new(space.clone(), cycle.shard(0, 1).unwrap(), u64::MAX);
        let mut seen = std::collections::HashSet::new();
        let t0 = Instant::now();
        while let Next::Probe { target, .. } = s.next(t0) {
            assert!(!block.contains(target));
            assert!(seen.insert(target), "{target} twice");
        }
        assert_eq!(seen.len(), 4096 - 256);
        assert_eq!(s.produced(), 4096 - 256);
        let mut capped = Scan::new(space.clone(), cycle.shard(0, 1).unwrap(), 100);
        let mut k = 0;
        while capped.next(t0) != Next::Done {
            k += 1;
        }
        assert_eq!(k, 100);
    }
}
