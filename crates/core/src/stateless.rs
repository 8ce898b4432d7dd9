//! Stateless scans: no state per probe in flight, as ZMap validates.
//!
//! A scan probe to target `t`, try number `a` (0 for the first), carries
//! [`Key::probe_ids`]`(t, a)` as its ICMP identifier and sequence, and the usual payload
//! stamp (session, send time, its position in the scan order as the probe number, the attempt
//! as the cookie) with its MAC. An echo reply brings the whole payload back: it is validated
//! and timed with no lookup. An ICMPv4 error quotes only the probe's first 8 ICMP bytes:
//! it is validated by its quoted identifier and sequence against the quoted destination, for
//! each attempt the run makes.
//!
//! What stays is one bit per target of the scan's index space, set by its first answer (echo
//! reply or ICMP error) or by a failed send: the [`Responders`], allocated a page at a time on
//! first touch. A second answer finds its bit set: a duplicate. Retries are later passes over
//! the same permutation ([`ScanSource`]) that skip the targets whose bit is set; the targets
//! they do probe are exactly those that stayed silent, so each pass reports the previous
//! pass's timeouts as it goes, and a last walk (only when per-target timeouts are wanted)
//! reports the final ones. Memory: the bitmap, whatever the rate and the cooldown.
//!
//! A reply is *stale* when it comes more than the cooldown after its probe left, or when
//! the pass after its probe's has begun: then the target's timeout may already be reported
//! and its retry sent. Before a pass begins, [`ScanState::close`] marks the earlier attempts
//! over and waits until every receiver has finished the batch it was matching
//! ([`ScanReceiver`]'s epochs): no answer accepted for an attempt can then race the walk that
//! reports that attempt's silent targets.

use core::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use asdic_wire::payload::Key;
use crossbeam_utils::CachePadded;

use crate::event::{Event, Outcome};
use crate::permute::Walk;
use crate::source::{Next, Source};
use crate::space::Space;

/// Indices per page of the responder set: 2^15 bits, 4 KiB.
const PAGE_BITS: u32 = 15;
/// Pages per chunk of the directory: 2^15 (a chunk spans 2^30 indices).
const CHUNK_BITS: u32 = 15;
const WORDS_PER_PAGE: usize = 1 << (PAGE_BITS - 6);

type Page = Box<[AtomicU64]>;
type Chunk = Box<[OnceLock<Page>]>;

/// A set of indices `0..len`: one bit each, in 4 KiB pages allocated when their first index
/// is inserted. Inserting and testing are a single atomic operation on one word; the first
/// insert into a page allocates it (a thread inserting into the same page at that moment
/// waits for it).
#[derive(Debug)]
pub struct Responders {
    len: u64,
    chunks: Box<[OnceLock<Chunk>]>,
    pages: AtomicU64,
}

impl Responders {
    /// An empty set over `0..len`.
    pub fn new(len: u64) -> Self {
        let pages = len.div_ceil(1 << PAGE_BITS);
        let chunks = pages.div_ceil(1 << CHUNK_BITS);
        Responders {
            len,
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            pages: AtomicU64::new(0),
        }
    }

    /// Most bytes the set can take over `len` indices: every page, every directory entry.
    pub fn bound(len: u64) -> u64 {
        let pages = len.div_ceil(1 << PAGE_BITS);
        let chunks = pages.div_ceil(1 << CHUNK_BITS);
        pages * ((WORDS_PER_PAGE * 8) as u64 + DIR_ENTRY) + chunks * DIR_ENTRY
    }

    /// Bytes the set holds now (pages allocated so far, and the directory).
    pub fn bytes(&self) -> u64 {
        let pages = self.pages.load(Ordering::Relaxed);
        pages * (WORDS_PER_PAGE * 8) as u64
            + self.chunks.len() as u64 * DIR_ENTRY
            + self
                .chunks
                .iter()
                .filter_map(OnceLock::get)
                .map(|c| c.len() as u64 * DIR_ENTRY)
                .sum::<u64>()
    }

    /// Pages allocated so far.
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    fn page(&self, i: u64, create: bool) -> Option<&Page> {
        if i >= self.len {
            return None;
        }
        let p = i >> PAGE_BITS;
        let c = (p >> CHUNK_BITS) as usize;
        let slot = self.chunks.get(c)?;
        let chunk = if create {
            slot.get_or_init(|| {
                let first = (c as u64) << CHUNK_BITS;
                let pages = self.len.div_ceil(1 << PAGE_BITS);
                let n = (pages - first).min(1 << CHUNK_BITS);
                (0..n).map(|_| OnceLock::new()).collect()
            })
        } else {
            slot.get()?
        };
        let slot = chunk.get((p & ((1 << CHUNK_BITS) - 1)) as usize)?;
        if create {
            Some(slot.get_or_init(|| {
                self.pages.fetch_add(1, Ordering::Relaxed);
                (0..WORDS_PER_PAGE).map(|_| AtomicU64::new(0)).collect()
            }))
        } else {
            slot.get()
        }
    }

    /// Adds `i`; `true` when it was not in the set (`false` too for an index out of range).
    #[inline]
    pub fn insert(&self, i: u64) -> bool {
        let Some(page) = self.page(i, true) else {
            return false;
        };
        let bit = 1u64 << (i & 63);
        let w = ((i & ((1 << PAGE_BITS) - 1)) >> 6) as usize;
        // SeqCst: one side of the handshake with `ScanState::close` (see the module docs).
        page[w].fetch_or(bit, Ordering::SeqCst) & bit == 0
    }

    /// Whether `i` is in the set.
    #[inline]
    pub fn contains(&self, i: u64) -> bool {
        let Some(page) = self.page(i, false) else {
            return false;
        };
        let w = ((i & ((1 << PAGE_BITS) - 1)) >> 6) as usize;
        page[w].load(Ordering::SeqCst) & (1u64 << (i & 63)) != 0
    }
}

/// Bytes of one directory entry (a `OnceLock` of a boxed slice).
const DIR_ENTRY: u64 = core::mem::size_of::<OnceLock<Page>>() as u64;

/// What a stateless scan's sender and receivers share, per address family.
#[derive(Debug)]
pub struct ScanState {
    /// The run's MAC key.
    pub key: Key,
    /// The run's session id.
    pub session: u32,
    /// Retries per silent target: attempts are `0..=retries`.
    pub retries: u8,
    /// How long a probe waits for its answer.
    pub cooldown: Duration,
    /// Whether every silent target gets a timeout event (else they are only counted).
    pub report_silent: bool,
    space: Arc<Space>,
    responders: Responders,
    /// Attempts below this are over: their answers are stale.
    closed: AtomicU32,
    /// Every receiver's epoch counter.
    receivers: Mutex<Vec<Arc<CachePadded<AtomicU64>>>>,
    /// Per attempt: probes handed to the engine, probes it refused, first answers.
    probed: Box<[AtomicU64]>,
    failed: Box<[AtomicU64]>,
    answered: Box<[AtomicU64]>,
    /// Where the sender is: the last probe handed out, as [`Frontier::pack`]s it.
    frontier: AtomicU64,
    /// A resumed scan: how far the earlier run is known to have sent (packed, plus one; 0
    /// when not resumed), and the probes this run sent again below it.
    known: AtomicU64,
    resent: AtomicU64,
}

/// Where a scan's sender is in its passes over the permutation: pass `attempt` has handed
/// out every probe at positions below `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Frontier {
    /// The pass (0 first, then the retries).
    pub attempt: u8,
    /// Positions of the pass handed out.
    pub position: u64,
}

impl Frontier {
    /// One word: the attempt in the top 8 bits, the position (below 2^48) under it.
    pub fn pack(self) -> u64 {
        (u64::from(self.attempt) << 56) | (self.position & ((1 << 56) - 1))
    }

    /// The frontier [`pack`](Frontier::pack) made `w` of.
    pub fn unpack(w: u64) -> Frontier {
        Frontier {
            attempt: (w >> 56) as u8,
            position: w & ((1 << 56) - 1),
        }
    }
}

impl core::fmt::Display for Frontier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.attempt, self.position)
    }
}

impl core::str::FromStr for Frontier {
    type Err = String;

    /// `ATTEMPT:POSITION`, as [`Display`](core::fmt::Display) writes it.
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not ATTEMPT:POSITION"))?;
        Ok(Frontier {
            attempt: a.parse().map_err(|_| format!("{s:?}: bad attempt"))?,
            position: p.parse().map_err(|_| format!("{s:?}: bad position"))?,
        })
    }
}

/// A receiver's epoch once it has ended: it matches nothing more.
const ENDED: u64 = u64::MAX;

impl ScanState {
    /// The shared state of a scan of `space`.
    pub fn new(
        space: Arc<Space>,
        key: Key,
        session: u32,
        retries: u8,
        cooldown: Duration,
        report_silent: bool,
    ) -> Self {
        let per_attempt = || (0..=retries).map(|_| AtomicU64::new(0)).collect();
        ScanState {
            key,
            session,
            retries,
            cooldown,
            report_silent,
            responders: Responders::new(space.len()),
            space,
            closed: AtomicU32::new(0),
            receivers: Mutex::new(vec![]),
            probed: per_attempt(),
            failed: per_attempt(),
            answered: per_attempt(),
            frontier: AtomicU64::new(0),
            known: AtomicU64::new(0),
            resent: AtomicU64::new(0),
        }
    }

    /// A resumed scan: the earlier run is known to have sent every probe below `f`; the
    /// probes this run sends there are counted ([`ScanState::resent`]).
    pub fn set_known(&self, f: Frontier) {
        self.known.store(f.pack() + 1, Ordering::Relaxed);
    }

    /// Probes this run sent that the earlier run it resumes is known to have sent.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Where the sender is now (the last probe handed out; a resumed scan starts at its
    /// resumption point).
    pub fn frontier(&self) -> Frontier {
        Frontier::unpack(self.frontier.load(Ordering::Relaxed))
    }

    fn advance(&self, f: Frontier) {
        self.frontier.store(f.pack(), Ordering::Relaxed);
    }

    /// The scan's space.
    pub fn space(&self) -> &Arc<Space> {
        &self.space
    }

    /// The responder set.
    pub fn responders(&self) -> &Responders {
        &self.responders
    }

    /// Attempts below this are over.
    pub fn closed(&self) -> u32 {
        self.closed.load(Ordering::SeqCst)
    }

    /// Records the first answer to try `attempt`.
    pub(crate) fn answered(&self, attempt: u8) {
        if let Some(c) = self.answered.get(usize::from(attempt)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Per attempt (0 first): probes handed to the engine, probes it refused, first answers.
    pub fn attempts(&self) -> Vec<[u64; 3]> {
        self.probed
            .iter()
            .zip(&self.failed)
            .zip(&self.answered)
            .map(|((p, f), n)| {
                [
                    p.load(Ordering::Relaxed),
                    f.load(Ordering::Relaxed),
                    n.load(Ordering::Relaxed),
                ]
            })
            .collect()
    }

    /// Silent probes of the attempts that are over: handed to the engine, not refused by it,
    /// never answered in time.
    pub fn silent(&self) -> u64 {
        let closed = self.closed() as usize;
        (0..closed.min(self.probed.len()))
            .map(|a| {
                let p = self.probed[a].load(Ordering::Relaxed);
                let f = self.failed[a].load(Ordering::Relaxed);
                let n = self.answered[a].load(Ordering::Relaxed);
                p.saturating_sub(f + n)
            })
            .sum()
    }

    /// Timeouts not reported as events: all of them without [`ScanState::report_silent`]
    /// (they are counted, not listed), none with it.
    pub fn unlisted_timeouts(&self) -> u64 {
        if self.report_silent { 0 } else { self.silent() }
    }

    /// Registers a receiver (one per RX queue).
    pub fn receiver(self: &Arc<Self>) -> ScanReceiver {
        let epoch = Arc::new(CachePadded::new(AtomicU64::new(0)));
        self.receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(epoch.clone());
        ScanReceiver {
            state: self.clone(),
            epoch,
            closed: 0,
        }
    }

    /// Marks attempts below `attempt` over. The returned marks are done ([`Marks::passed`])
    /// once every receiver has finished the batch it may have been matching under the old
    /// bound.
    pub fn close(&self, attempt: u32) -> Marks {
        // SeqCst: the other side of the handshake (store the bound, then read the epochs).
        self.closed.fetch_max(attempt, Ordering::SeqCst);
        let receivers = self
            .receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let marks = receivers
            .into_iter()
            .map(|e| {
                let seen = e.load(Ordering::SeqCst);
                (e, seen)
            })
            .collect();
        Marks {
            marks,
            since: Instant::now(),
        }
    }
}

/// Receivers' epochs when attempts were closed.
#[derive(Debug)]
pub struct Marks {
    marks: Vec<(Arc<CachePadded<AtomicU64>>, u64)>,
    since: Instant,
}

/// Longest wait for a receiver to finish its batch before a pass begins: one that does not
/// move (stalled) is not waited for longer.
const QUIESCE_MAX: Duration = Duration::from_secs(2);

impl Marks {
    /// Whether every receiver has finished a batch since (or ended), or waiting is over.
    pub fn passed(&self) -> bool {
        self.since.elapsed() >= QUIESCE_MAX
            || self.marks.iter().all(|(e, seen)| {
                let now = e.load(Ordering::SeqCst);
                now == ENDED || now > *seen
            })
    }
}

/// One receiver's part of the handshake: the bound on attempts it read when its batch began.
#[derive(Debug)]
pub struct ScanReceiver {
    state: Arc<ScanState>,
    epoch: Arc<CachePadded<AtomicU64>>,
    closed: u32,
}

impl ScanReceiver {
    /// The shared state.
    pub fn state(&self) -> &ScanState {
        &self.state
    }

    /// A batch begins: read the bound once for all of it.
    pub fn begin(&mut self) {
        self.closed = self.state.closed();
    }

    /// Attempts below this are over, as of this batch.
    pub fn closed(&self) -> u32 {
        self.closed
    }

    /// The batch is done (its answers are in the responder set).
    pub fn end(&self) {
        let e = self.epoch.load(Ordering::Relaxed);
        if e != ENDED {
            self.epoch.store(e + 1, Ordering::SeqCst);
        }
    }
}

impl Drop for ScanReceiver {
    fn drop(&mut self) {
        self.epoch.store(ENDED, Ordering::SeqCst);
    }
}

/// A stateless probe as the source hands it to the TX loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanProbe {
    /// The target.
    pub target: IpAddr,
    /// Its index in the space.
    pub index: u64,
    /// Its position in this shard's scan order (the probe number of its rows).
    pub position: u64,
    /// Which try (0 first).
    pub attempt: u8,
}

/// Where the scan is.
#[derive(Debug)]
enum Phase {
    /// Pass `attempt` over the permutation.
    Sending {
        attempt: u8,
    },
    /// Waiting for the last answers of `attempt` until `until`.
    Cooling {
        attempt: u8,
        until: Instant,
        last: bool,
    },
    /// Attempts below `attempt + 1` closed; waiting for the receivers.
    Closing {
        attempt: u8,
        marks: Marks,
        last: bool,
    },
    /// Reporting the silent targets of `attempt` (and, before `split`'s position after a
    /// stop, of `attempt - 1`).
    Reporting {
        attempt: u8,
    },
    Done,
}

/// Positions reported per call in the final walk (then the TX loop gets a turn).
const REPORT_CHUNK: u64 = 1 << 16;

/// A stateless scan's targets: pass 0 over a shard's permutation, then up to `retries`
/// passes over the same permutation that probe only the targets still silent, each a
/// cooldown after the previous one ended. Emits timeouts and failed sends as events
/// ([`Source::drain`]).
#[derive(Debug)]
pub struct ScanSource {
    state: Arc<ScanState>,
    /// The shard's walk from its start (each pass clones it).
    start: Walk,
    walk: Walk,
    /// Targets pass 0 may probe (--max-targets).
    limit: u64,
    /// Targets pass 0 produced.
    produced: u64,
    /// Sampled indices that fell in blocked space.
    skipped: u64,
    /// Position of the walk's next index.
    position: u64,
    /// Positions pass 0 covered (known once it ends or stops).
    end: u64,
    /// In the final report after a stop during pass `a > 0`: positions at and past this
    /// were last probed in pass `a - 1`.
    split: u64,
    phase: Phase,
    last_send: Option<Instant>,
    events: Vec<Event>,
    /// A resumed scan: pass 0 skips the targets an earlier run's results already answer.
    resumed: bool,
}

impl ScanSource {
    /// The scan of `state`'s space in `walk`'s order, at most `limit` targets.
    pub fn new(state: Arc<ScanState>, walk: Walk, limit: u64) -> Self {
        ScanSource {
            state,
            start: walk.clone(),
            walk,
            limit,
            produced: 0,
            skipped: 0,
            position: 0,
            end: u64::MAX,
            split: u64::MAX,
            phase: Phase::Sending { attempt: 0 },
            last_send: None,
            events: Vec::with_capacity(1024),
            resumed: false,
        }
    }

    /// Continues a scan an earlier run left at `at` (the responder set already holds the
    /// targets its results answer, and those whose send failed): pass `at.attempt` from
    /// position `at.position`, the passes before it over, pass 0's targets produced so far
    /// counted towards the limit. Pass 0 then skips the targets already answered, so that
    /// only those whose answers were lost are probed again. Costs one walk of the
    /// permutation up to `at` (and, with a limit, to pass 0's end).
    pub fn resume(&mut self, at: Frontier) {
        let state = Arc::clone(&self.state);
        let mut walk = self.start.clone();
        let (mut produced, mut skipped, mut position) = (0u64, 0u64, 0u64);
        // Pass 0 up to `at` (pass 0 itself), or to its end (a later pass; only a limit ends
        // it before the permutation does).
        let limited = self.limit < u64::MAX;
        let target = if at.attempt == 0 {
            at.position
        } else if limited {
            u64::MAX
        } else {
            0
        };
        while position < target && produced < self.limit {
            let Some(index) = walk.next() else { break };
            position += 1;
            match state.space.get(index) {
                Some(_) => produced += 1,
                None => skipped += 1,
            }
        }
        self.produced = produced;
        self.skipped = skipped;
        if at.attempt == 0 {
            self.walk = walk;
            self.position = position;
        } else {
            if limited {
                self.end = position;
            }
            let mut walk = self.start.clone();
            let mut p = 0;
            while p < at.position && walk.next().is_some() {
                p += 1;
            }
            self.walk = walk;
            self.position = p;
            // The earlier passes are over: their answers are stale.
            let _ = state.close(u32::from(at.attempt));
        }
        self.resumed = true;
        self.phase = Phase::Sending {
            attempt: at.attempt,
        };
        state.advance(Frontier {
            attempt: at.attempt,
            position: self.position,
        });
    }

    /// Targets the first pass produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Sampled indices skipped as blocked.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn timeout(&mut self, target: IpAddr, position: u64, attempt: u8) {
        self.events.push(Event {
            probe: Some(position),
            cookie: 0,
            target,
            sent_ns: None,
            attempt,
            outcome: Outcome::Timeout,
        });
    }

    /// The next probe of pass `attempt`, or `None` at its end.
    fn next_of_pass(&mut self, attempt: u8) -> Option<ScanProbe> {
        loop {
            if attempt == 0 && self.produced >= self.limit {
                return None;
            }
            if self.position >= self.end {
                return None;
            }
            let index = self.walk.next()?;
            let position = self.position;
            self.position += 1;
            let Some(target) = self.state.space.get(index) else {
                if attempt == 0 {
                    self.skipped += 1;
                }
                continue;
            };
            if attempt == 0 && self.resumed && self.state.responders.contains(index) {
                // Answered (or refused) before the scan was resumed: in its results already.
                self.produced += 1;
                continue;
            }
            if attempt > 0 {
                if self.state.responders.contains(index) {
                    continue;
                }
                if self.state.report_silent {
                    self.timeout(target, position, attempt - 1);
                }
            } else {
                self.produced += 1;
            }
            self.state.probed[usize::from(attempt)].fetch_add(1, Ordering::Relaxed);
            let known = self.state.known.load(Ordering::Relaxed);
            if known > 0 && (Frontier { attempt, position }).pack() < known - 1 {
                self.state.resent.fetch_add(1, Ordering::Relaxed);
            }
            self.state.advance(Frontier {
                attempt,
                position: self.position,
            });
            return Some(ScanProbe {
                target,
                index,
                position,
                attempt,
            });
        }
    }

    /// Pass `attempt` is over (or stopped): cool down from the last probe.
    fn cool(&mut self, attempt: u8, now: Instant, last: bool, abort: bool) {
        if attempt == 0 || self.end == u64::MAX {
            self.end = self.end.min(self.position);
        }
        let until = match (abort, self.last_send) {
            (false, Some(t)) => t + self.state.cooldown,
            _ => now,
        };
        self.phase = Phase::Cooling {
            attempt,
            until,
            last,
        };
    }

    /// One chunk of the final report; `true` when it is complete.
    fn report(&mut self, attempt: u8) -> bool {
        let until = (self.position + REPORT_CHUNK).min(self.end);
        while self.position < until {
            let Some(index) = self.walk.next() else {
                self.position = self.end;
                break;
            };
            let position = self.position;
            self.position += 1;
            if self.state.responders.contains(index) {
                continue;
            }
            let Some(target) = self.state.space.get(index) else {
                continue;
            };
            let a = if position >= self.split {
                attempt - 1
            } else {
                attempt
            };
            self.timeout(target, position, a);
        }
        self.position >= self.end
    }
}

impl Source for ScanSource {
    fn next(&mut self, now: Instant) -> Next {
        loop {
            match self.phase {
                Phase::Sending { attempt } => {
                    if let Some(p) = self.next_of_pass(attempt) {
                        self.last_send = Some(now);
                        return Next::Scan(p);
                    }
                    let last = attempt >= self.state.retries;
                    self.cool(attempt, now, last, false);
                }
                Phase::Cooling {
                    attempt,
                    until,
                    last,
                } => {
                    if now < until {
                        return Next::NotYet;
                    }
                    let marks = self.state.close(u32::from(attempt) + 1);
                    self.phase = Phase::Closing {
                        attempt,
                        marks,
                        last,
                    };
                }
                Phase::Closing {
                    attempt,
                    ref marks,
                    last,
                } => {
                    if !marks.passed() {
                        return Next::NotYet;
                    }
                    self.walk = self.start.clone();
                    self.position = 0;
                    if !last {
                        // Pass `attempt` is over and cooled down: the next one starts.
                        self.state.advance(Frontier {
                            attempt: attempt + 1,
                            position: 0,
                        });
                    }
                    self.phase = match (last, self.state.report_silent) {
                        (false, _) => Phase::Sending {
                            attempt: attempt + 1,
                        },
                        (true, true) => Phase::Reporting { attempt },
                        (true, false) => Phase::Done,
                    };
                }
                Phase::Reporting { attempt } => {
                    if self.report(attempt) {
                        self.phase = Phase::Done;
                        continue;
                    }
                    return Next::NotYet;
                }
                Phase::Done => return Next::Done,
            }
        }
    }

    fn stop(&mut self, now: Instant, abort: bool) -> bool {
        match self.phase {
            // Mid-pass: cool down from the last probe, then report; positions from here on
            // were last probed in the pass before.
            Phase::Sending { attempt } => {
                if attempt > 0 {
                    self.split = self.position;
                }
                self.cool(attempt, now, true, abort);
            }
            // Between passes: the pass that ran whole is the last.
            Phase::Cooling { attempt, until, .. } => {
                self.phase = Phase::Cooling {
                    attempt,
                    until: if abort { now } else { until },
                    last: true,
                };
            }
            Phase::Closing { ref mut last, .. } => *last = true,
            Phase::Reporting { .. } | Phase::Done => {}
        }
        true
    }

    fn failed(&mut self, p: &ScanProbe, errno: i32, t_send_ns: u64) {
        // Not answered, not to be retried: in the set, like an answer.
        self.state.responders.insert(p.index);
        if let Some(c) = self.state.failed.get(usize::from(p.attempt)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.events.push(Event {
            probe: Some(p.position),
            cookie: 0,
            target: p.target,
            sent_ns: Some(t_send_ns),
            attempt: p.attempt,
            outcome: Outcome::SendFailed { errno },
        });
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        out.append(&mut self.events);
    }
}

#[cfg(test)]
mod tests;
