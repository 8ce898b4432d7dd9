//! Where the TX loop gets its next target: repeated rounds over a list (`ping`), or one pass
//! over a permuted, sharded, blocklisted address space (`scan`); `trace`'s (target, TTL)
//! walk is in [`crate::trace`].

use core::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::event::Event;
use crate::permute::Walk;
use crate::retry::Retry;
use crate::set::TargetList;
use crate::space::Space;
use crate::stateless::ScanProbe;
use asdic_wire::Family;

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
    /// Probe this target again, or as the caller's own numbered try: the in-flight table
    /// records `attempt` (a fed source's retries, [`Feed`]).
    Try(Retry),
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

    /// Nothing was due ([`Next::NotYet`]): waits until something may be. A source that comes
    /// due by the clock (the default) sleeps `hint`, the TX loop's idle step; a [`Feed`]
    /// wakes for its next probe.
    fn wait(&mut self, hint: Duration) {
        std::thread::sleep(hint);
    }
}

/// The sources of one pipeline that sends to both families (an engine of both): each family's
/// own source, asked in turn so that each gets its share of the probes (`weight`: its share of
/// the run's rate); done when both are.
pub struct Merged {
    parts: Vec<Part>,
}

struct Part {
    family: Family,
    source: Box<dyn Source + Send>,
    weight: f64,
    /// Probes it handed out.
    handed: u64,
    /// It said [`Next::Done`], or it ended on a stop.
    done: bool,
}

impl core::fmt::Debug for Merged {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let parts: Vec<_> = self
            .parts
            .iter()
            .map(|p| (p.family, p.weight, p.handed, p.done))
            .collect();
        f.debug_struct("Merged").field("parts", &parts).finish()
    }
}

impl Merged {
    /// Each family's source with its weight (its share of the rate, > 0).
    pub fn new(parts: Vec<(Family, Box<dyn Source + Send>, f64)>) -> Self {
        Merged {
            parts: parts
                .into_iter()
                .map(|(family, source, weight)| Part {
                    family,
                    source,
                    weight: if weight > 0.0 { weight } else { 1.0 },
                    handed: 0,
                    done: false,
                })
                .collect(),
        }
    }

    /// The parts not done, the one furthest behind its share first.
    fn order(&self) -> ([usize; 2], usize) {
        let mut order = [0usize; 2];
        let mut n = 0;
        for (i, p) in self.parts.iter().enumerate().take(2) {
            if !p.done {
                order[n] = i;
                n += 1;
            }
        }
        let behind = |i: usize| self.parts[i].handed as f64 / self.parts[i].weight;
        if n == 2 && behind(order[1]) < behind(order[0]) {
            order.swap(0, 1);
        }
        (order, n)
    }
}

impl Source for Merged {
    fn next(&mut self, now: Instant) -> Next {
        let (order, n) = self.order();
        for &i in &order[..n] {
            let p = &mut self.parts[i];
            match p.source.next(now) {
                Next::Done => p.done = true,
                Next::NotYet => {}
                next => {
                    p.handed += 1;
                    return next;
                }
            }
        }
        if self.parts.iter().all(|p| p.done) {
            Next::Done
        } else {
            Next::NotYet
        }
    }

    fn stop(&mut self, now: Instant, abort: bool) -> bool {
        let mut on = false;
        for p in self.parts.iter_mut().filter(|p| !p.done) {
            if p.source.stop(now, abort) {
                on = true;
            } else {
                // It ends at once: never asked again.
                p.done = true;
            }
        }
        on
    }

    fn failed(&mut self, probe: &ScanProbe, errno: i32, t_send_ns: u64) {
        let family = Family::of(probe.target);
        if let Some(p) = self.parts.iter_mut().find(|p| p.family == family) {
            p.source.failed(probe, errno, t_send_ns);
        }
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        for p in &mut self.parts {
            p.source.drain(out);
        }
    }

    fn wait(&mut self, hint: Duration) {
        match self.parts.iter_mut().find(|p| !p.done) {
            Some(p) => p.source.wait(hint),
            None => std::thread::sleep(hint),
        }
    }
}

/// The most a [`Feed`] waits for its next probe before its TX loop looks at its stop flags
/// again.
const FEED_WAIT: Duration = Duration::from_millis(20);

/// A source fed while the run goes on: each probe handed to its [`Injector`] goes out as soon
/// as the rate allows (a session's requests and their retries). It is done once every
/// injector is dropped and nothing is left to send. An idle feed sleeps in the channel, not in
/// a loop: a session with nothing outstanding costs no CPU.
#[derive(Debug)]
pub struct Feed {
    queue: Receiver<Retry>,
    /// A probe that arrived while waiting, for the next call.
    waiting: Option<Retry>,
}

/// Hands probes to a running [`Feed`]; cloneable, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Injector {
    queue: Sender<Retry>,
}

/// Why an [`Injector`] could not hand a probe over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The feed's queue is full: the sender is that far behind.
    #[error("the feed's queue is full")]
    Full,
    /// The run has ended.
    #[error("the run has ended")]
    Ended,
}

impl Feed {
    /// A feed that holds at most `capacity` probes not yet sent, and its injector.
    pub fn new(capacity: usize) -> (Injector, Feed) {
        Feed::of(crossbeam_channel::bounded(capacity.max(1)))
    }

    /// A feed whose caller bounds what it holds (a session: by its outstanding requests), and
    /// its injector; memory grows with what is queued, not with the bound.
    pub fn unbounded() -> (Injector, Feed) {
        Feed::of(crossbeam_channel::unbounded())
    }

    fn of((queue, rx): (Sender<Retry>, Receiver<Retry>)) -> (Injector, Feed) {
        (
            Injector { queue },
            Feed {
                queue: rx,
                waiting: None,
            },
        )
    }
}

impl Injector {
    /// Queues try `p.attempt` at `p.target`, reported under `p.cookie`.
    pub fn probe(&self, p: Retry) -> Result<(), InjectError> {
        self.queue.try_send(p).map_err(|e| match e {
            TrySendError::Full(_) => InjectError::Full,
            TrySendError::Disconnected(_) => InjectError::Ended,
        })
    }
}

impl Source for Feed {
    fn next(&mut self, _now: Instant) -> Next {
        if let Some(p) = self.waiting.take() {
            return Next::Try(p);
        }
        match self.queue.try_recv() {
            Ok(p) => Next::Try(p),
            Err(TryRecvError::Empty) => Next::NotYet,
            Err(TryRecvError::Disconnected) => Next::Done,
        }
    }

    fn wait(&mut self, _hint: Duration) {
        if self.waiting.is_none() {
            // Disconnected or timed out: the next call says which.
            self.waiting = self.queue.recv_timeout(FEED_WAIT).ok();
        }
    }
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
    /// The cookie of the list's first target.
    base: u32,
}

impl Rounds {
    /// Rounds over `targets`; a target's cookie is its index in the list.
    pub fn new(targets: Arc<dyn TargetList>, count: u32, interval: Duration) -> Self {
        Rounds {
            len: targets.len(),
            targets,
            count,
            interval,
            round: 0,
            next: 0,
            round_start: None,
            base: 0,
        }
    }

    /// Cookies from `base` on: the list is a part of a larger one (ping's IPv6 targets follow
    /// its IPv4 ones), and a target's cookie is its index there.
    pub fn with_cookie_base(self, base: u32) -> Self {
        Rounds { base, ..self }
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
        let cookie = self.base.wrapping_add(self.next as u32);
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
    fn a_feed_hands_out_what_was_injected_waits_without_spinning_and_ends_with_its_injectors() {
        let (inject, mut feed) = Feed::new(2);
        let now = Instant::now();
        assert_eq!(feed.next(now), Next::NotYet);
        let p = |cookie, attempt| Retry {
            cookie,
            target: "198.19.0.7".parse().unwrap(),
            attempt,
            class: 0,
        };
        inject.probe(p(1, 0)).unwrap();
        inject.probe(p(1, 1)).unwrap();
        assert_eq!(inject.probe(p(2, 0)), Err(InjectError::Full));
        assert_eq!(feed.next(now), Next::Try(p(1, 0)));
        assert_eq!(feed.next(now), Next::Try(p(1, 1)));
        // Waiting with nothing queued takes the feed's own bound, not the hint.
        let t = Instant::now();
        feed.wait(Duration::ZERO);
        assert!(t.elapsed() >= FEED_WAIT, "{:?}", t.elapsed());
        // A probe injected while the feed waits wakes it (it is in hand when wait returns),
        // and is the next one out. A few tries: the injecting thread may be scheduled late.
        let woke = (0..5u32).any(|i| {
            let late = inject.clone();
            let h = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                late.probe(p(3, 0)).unwrap();
            });
            feed.wait(Duration::from_secs(1));
            h.join().unwrap();
            let woke = feed.waiting.is_some();
            assert_eq!(feed.next(now), Next::Try(p(3, 0)), "try {i}");
            woke
        });
        assert!(woke, "the feed slept through its injections");
        drop(inject);
        assert_eq!(feed.next(now), Next::Done);
        feed.wait(Duration::from_secs(1));
        assert_eq!(feed.next(now), Next::Done);
    }

    #[test]
    fn merged_sources_share_the_probes_by_weight_and_end_together() {
        let v4: Vec<IpAddr> = (1..=6).map(|i| IpAddr::from([198, 19, 0, i])).collect();
        let v6: Vec<IpAddr> = (1..=2)
            .map(|i| IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, i]))
            .collect();
        let rounds = |t: &Vec<IpAddr>, base| {
            Box::new(Rounds::new(Arc::new(t.clone()), 1, Duration::ZERO).with_cookie_base(base))
                as Box<dyn Source + Send>
        };
        let mut m = Merged::new(vec![
            (Family::V4, rounds(&v4, 0), 6.0),
            (Family::V6, rounds(&v6, 6), 2.0),
        ]);
        let t0 = Instant::now();
        let mut got = vec![];
        for _ in 0..20 {
            match m.next(t0) {
                Next::Probe { cookie, target, .. } => got.push((cookie, target.is_ipv6())),
                Next::Done => break,
                other => panic!("{other:?}"),
            }
        }
        // Every target once, each family in its own order, the IPv6 ones spread 1 in 4.
        assert_eq!(got.len(), 8);
        let sixes: Vec<usize> = (0..8).filter(|&i| got[i].1).collect();
        assert_eq!(sixes.len(), 2);
        assert!(sixes[1] - sixes[0] >= 3, "{got:?}");
        let mut cookies: Vec<u32> = got.iter().map(|g| g.0).collect();
        cookies.sort_unstable();
        assert_eq!(cookies, (0..8).collect::<Vec<u32>>());
        assert_eq!(m.next(t0), Next::Done);
        // Sources that end at once on a stop are never asked again.
        let mut m = Merged::new(vec![
            (Family::V4, rounds(&v4, 0), 1.0),
            (Family::V6, rounds(&v6, 6), 1.0),
        ]);
        assert!(matches!(m.next(t0), Next::Probe { .. }));
        assert!(!m.stop(t0, false));
        assert_eq!(m.next(t0), Next::Done);
    }

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
        // A part of a larger list: cookies index the larger one, in every round.
        let mut r = Rounds::new(Arc::new(t.clone()), 2, Duration::ZERO).with_cookie_base(40);
        let cookies: Vec<u32> = (0..4)
            .map(|_| match r.next(t0) {
                Next::Probe { cookie, .. } => cookie,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(cookies, [40, 41, 40, 41]);
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
