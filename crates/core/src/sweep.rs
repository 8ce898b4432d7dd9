//! The source of `asdic sweep`: rounds over a target list, one every `every`, each round's
//! probes spread evenly across it (target `i` of `N` is due `i·every/N` after the round's
//! start), so a fleet of any size is probed at a steady rate, without bursts. A round that
//! starts late (the sender was held up) is spread over what is left until the next round is
//! due, so a stall is made up within one round (at most at the sender's rate cap) instead of
//! delaying every later round.
//!
//! The list can be replaced while the sweep runs ([`Plan::replace`]); the source picks the
//! new list up at its next round boundary with one atomic load per round, so targets that
//! disappear stop being probed from the next round on.

use core::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::source::{Next, Source};

/// A target as the sweep sends it: its cookie, address and template class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The caller's stable handle on the target.
    pub cookie: u32,
    /// The address.
    pub target: IpAddr,
    /// The probe template (packet size).
    pub class: u8,
}

/// The list a sweep probes, replaceable while it runs, and its round counters.
#[derive(Debug, Default)]
pub struct Plan {
    next: Mutex<Option<Arc<[Item]>>>,
    changed: AtomicBool,
    /// Rounds started.
    pub rounds: AtomicU64,
    /// How late the latest round started, microseconds (0 when on time).
    pub lag_us: AtomicU64,
}

impl Plan {
    /// A plan that starts with `items`.
    pub fn new(items: Vec<Item>) -> Arc<Self> {
        let p = Arc::new(Plan::default());
        p.replace(items);
        p
    }

    /// Makes `items` the list from the next round on.
    pub fn replace(&self, items: Vec<Item>) {
        if let Ok(mut n) = self.next.lock() {
            *n = Some(items.into());
            // Release: the source's acquire load of `changed` sees the list stored above.
            self.changed.store(true, Ordering::Release);
        }
    }

    fn take(&self) -> Option<Arc<[Item]>> {
        // Acquire: pairs with `replace`'s release store.
        if !self.changed.swap(false, Ordering::Acquire) {
            return None;
        }
        self.next.lock().ok()?.take()
    }
}

/// Rounds over a [`Plan`]'s list, every `every`, spread evenly; at most `rounds` of them.
#[derive(Debug)]
pub struct Sweep {
    plan: Arc<Plan>,
    items: Arc<[Item]>,
    every: Duration,
    rounds: Option<u64>,
    round: u64,
    next: usize,
    t0: Option<Instant>,
    round_start: Instant,
    /// The span this round's probes are spread over.
    round_span: Duration,
}

impl Sweep {
    /// A sweep of `plan` every `every` (at least 1 ms), ending after `rounds` rounds if given.
    pub fn new(plan: Arc<Plan>, every: Duration, rounds: Option<u64>) -> Self {
        Sweep {
            plan,
            items: Arc::new([]),
            every: every.max(Duration::from_millis(1)),
            rounds,
            round: 0,
            next: 0,
            t0: None,
            round_start: Instant::now(),
            round_span: every.max(Duration::from_millis(1)),
        }
    }

    /// When probe `i` of `n` of the round is due.
    fn due(&self, i: usize, n: usize) -> Instant {
        let off = self.round_span.as_nanos() * i as u128 / n.max(1) as u128;
        self.round_start + Duration::from_nanos(off as u64)
    }
}

impl Source for Sweep {
    fn next(&mut self, now: Instant) -> Next {
        if self.next == 0 {
            if self.rounds.is_some_and(|r| self.round >= r) {
                return Next::Done;
            }
            // Round k is due at t0 + k·every. One that starts late (the lag is published) is
            // spread over what is left until round k+1 is due: the schedule never drifts.
            let t0 = *self.t0.get_or_insert(now);
            let every = self.every;
            let at = |k: u64| t0 + every.saturating_mul(k.min(u64::from(u32::MAX)) as u32);
            let due = at(self.round);
            if now < due {
                return Next::NotYet;
            }
            if let Some(items) = self.plan.take() {
                self.items = items;
            }
            self.round_start = now;
            self.round_span = at(self.round + 1).saturating_duration_since(now);
            self.round += 1;
            self.plan.rounds.store(self.round, Ordering::Relaxed);
            let lag = now.saturating_duration_since(due);
            self.plan
                .lag_us
                .store(lag.as_micros() as u64, Ordering::Relaxed);
            if self.items.is_empty() {
                // An empty round: nothing to send until the next one.
                return Next::NotYet;
            }
        }
        let n = self.items.len();
        if now < self.due(self.next, n) {
            return Next::NotYet;
        }
        let it = self.items[self.next];
        self.next += 1;
        if self.next == n {
            self.next = 0;
        }
        Next::Probe {
            cookie: it.cookie,
            target: it.target,
            class: it.class,
            ttl: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: u32) -> Vec<Item> {
        (0..n)
            .map(|i| Item {
                cookie: i,
                target: IpAddr::from([198, 19, 0, i as u8]),
                class: (i % 2) as u8,
            })
            .collect()
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn probes_are_spread_across_the_round() {
        let plan = Plan::new(items(4));
        let mut s = Sweep::new(plan.clone(), Duration::from_secs(1), Some(2));
        let t0 = Instant::now();
        // Round 1: target i due at i·250 ms.
        assert!(matches!(s.next(t0), Next::Probe { cookie: 0, .. }));
        assert_eq!(s.next(ms(t0, 249)), Next::NotYet);
        assert_eq!(
            s.next(ms(t0, 250)),
            Next::Probe {
                cookie: 1,
                target: IpAddr::from([198, 19, 0, 1]),
                class: 1,
                ttl: 0,
            }
        );
        assert!(matches!(s.next(ms(t0, 500)), Next::Probe { cookie: 2, .. }));
        assert!(matches!(s.next(ms(t0, 900)), Next::Probe { cookie: 3, .. }));
        // Round 2 starts at 1 s, not before.
        assert_eq!(s.next(ms(t0, 999)), Next::NotYet);
        assert!(matches!(
            s.next(ms(t0, 1000)),
            Next::Probe { cookie: 0, .. }
        ));
        assert_eq!(plan.rounds.load(Ordering::Relaxed), 2);
        for k in 1..4 {
            assert!(matches!(s.next(ms(t0, 2000)), Next::Probe { cookie, .. } if cookie == k));
        }
        assert_eq!(s.next(ms(t0, 5000)), Next::Done, "two rounds asked");
    }

    #[test]
    fn a_late_round_starts_at_once_and_reports_its_lag() {
        let plan = Plan::new(items(2));
        let mut s = Sweep::new(plan.clone(), Duration::from_secs(1), None);
        let t0 = Instant::now();
        s.next(t0);
        s.next(ms(t0, 500));
        // The sender stalled until 1.3 s: round 2 starts then, 300 ms late.
        assert!(matches!(
            s.next(ms(t0, 1300)),
            Next::Probe { cookie: 0, .. }
        ));
        assert_eq!(plan.lag_us.load(Ordering::Relaxed), 300_000);
        // It is spread over the 700 ms left until round 3: its second probe is due at 1.65 s.
        assert_eq!(s.next(ms(t0, 1649)), Next::NotYet);
        assert!(matches!(
            s.next(ms(t0, 1650)),
            Next::Probe { cookie: 1, .. }
        ));
        // Round 3 is due at 2 s still: the schedule does not drift.
        assert!(matches!(
            s.next(ms(t0, 2000)),
            Next::Probe { cookie: 0, .. }
        ));
        assert_eq!(plan.lag_us.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_new_list_takes_effect_at_the_next_round() {
        let plan = Plan::new(items(2));
        let mut s = Sweep::new(plan.clone(), Duration::from_secs(1), None);
        let t0 = Instant::now();
        assert!(matches!(s.next(t0), Next::Probe { cookie: 0, .. }));
        plan.replace(vec![Item {
            cookie: 9,
            target: IpAddr::from([198, 19, 9, 9]),
            class: 0,
        }]);
        // The round in progress finishes on the old list.
        assert!(matches!(s.next(ms(t0, 600)), Next::Probe { cookie: 1, .. }));
        assert!(matches!(
            s.next(ms(t0, 1000)),
            Next::Probe { cookie: 9, .. }
        ));
        assert!(matches!(
            s.next(ms(t0, 2000)),
            Next::Probe { cookie: 9, .. }
        ));
        // An empty list: rounds go on, nothing is sent.
        plan.replace(vec![]);
        assert_eq!(s.next(ms(t0, 3000)), Next::NotYet);
        assert_eq!(s.next(ms(t0, 3500)), Next::NotYet);
        assert_eq!(plan.rounds.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_round_later_than_its_successor_goes_out_at_once() {
        let plan = Plan::new(items(4));
        let mut s = Sweep::new(plan.clone(), Duration::from_secs(1), None);
        let t0 = Instant::now();
        s.next(t0);
        for k in 1..4 {
            s.next(ms(t0, 250 * k));
        }
        // Stalled until 2.5 s: round 2 (due at 1 s) is past round 3's time too, so all its
        // probes are due now (the sender's rate cap paces them); round 3 then starts at once.
        for k in 0..4 {
            assert!(matches!(s.next(ms(t0, 2500)), Next::Probe { cookie, .. } if cookie == k));
        }
        assert_eq!(plan.lag_us.load(Ordering::Relaxed), 1_500_000);
        assert!(matches!(
            s.next(ms(t0, 2500)),
            Next::Probe { cookie: 0, .. }
        ));
        assert_eq!(plan.lag_us.load(Ordering::Relaxed), 500_000);
        // Round 3 is spread over the 500 ms left until round 4 (due at 3 s).
        assert_eq!(s.next(ms(t0, 2500)), Next::NotYet);
        assert!(matches!(
            s.next(ms(t0, 2625)),
            Next::Probe { cookie: 1, .. }
        ));
    }
}
