//! The RX loop: engine frames → matcher → batches of events, with the reaper running between
//! receive calls. Stops when the sender is done and every probe is retired, or at once on abort.
//!
//! An engine with several RX queues (AF_XDP on a multi-queue NIC) runs one loop per queue,
//! all matching against the same lock-free in-flight table: one of them is the
//! [`Role::Reaper`], which also retires expired probes and decides when the run is over; the
//! others ([`Role::Helper`]) receive and match until it has ended. Every loop reads its
//! engine's kernel drop counters a few times a second and adds what grew to the shared
//! totals, so a reply the kernel dropped is counted, never silently taken for a loss.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use asdic_engine::{EngineError, KernelDrops, Rx, stamp_base, stamp_ns, tight_offset};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use asdic_core::event::{Event, Outcome};
use asdic_core::matcher::Matcher;
use asdic_core::retry::Retry;

/// State shared between the RX loop and the rest of the run.
#[derive(Debug, Default)]
pub struct RxShared {
    /// Set by the sender when it will claim no more probes.
    pub sender_done: AtomicBool,
    /// Set to stop now: every probe in flight is reported as timed out, and the loop ends as
    /// soon as the sender has stopped too.
    pub abort: AtomicBool,
    /// Frames received.
    pub frames: AtomicU64,
    /// Frames that matched no probe (malformed, forged, foreign, unmatched errors, stale,
    /// other ICMP): the live view of the matcher's drop counters.
    pub discarded: AtomicU64,
    /// Replies matched (terminal replies).
    pub replies: AtomicU64,
    /// Errors matched.
    pub errors: AtomicU64,
    /// Timeouts reported.
    pub timeouts: AtomicU64,
    /// Retries that could not be queued (queue full).
    pub retries_dropped: AtomicU64,
    /// Set when the reaping loop has ended: the helper loops end too.
    pub reaper_done: AtomicBool,
    /// Loops whose engine backlog is over a quarter of what it holds: the sender waits
    /// (a little, see the sender) while any is, rather than outrun the receivers into
    /// kernel drops on a machine whose cores it shares with them.
    pub behind: AtomicU32,
    /// What the kernel dropped before the engine could read it, summed over the loops, in
    /// the order of [`KernelDrops::NAMES`].
    kernel: [AtomicU64; KernelDrops::LEN],
    /// Per loop, the time (ns since the epoch, the frames' clock) before which everything
    /// that reached its queue has been read ([`RxShared::reader`]).
    readers: Mutex<Vec<Arc<AtomicU64>>>,
}

impl RxShared {
    /// A new loop's read mark, 0 until it has read its queue once: register every loop's
    /// before any starts, so the reaper waits for all of them.
    pub fn reader(&self) -> Arc<AtomicU64> {
        let mark = Arc::new(AtomicU64::new(0));
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(mark.clone());
        mark
    }

    /// The time before which every loop has read everything that reached its queue (`now`
    /// without loops): a probe is timed out only once no loop can still hold an answer to
    /// it stamped within its timeout.
    fn read_to(&self, now: u64) -> u64 {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            // Acquire: pairs with the loops' release of their marks.
            .map(|m| m.load(Ordering::Acquire))
            .fold(now, u64::min)
    }

    /// What the kernel dropped so far (as last read by the loops, a few times a second).
    pub fn kernel_drops(&self) -> KernelDrops {
        KernelDrops::from_array(core::array::from_fn(|i| {
            self.kernel[i].load(Ordering::Relaxed)
        }))
    }

    /// What the kernel dropped before any of these receivers could read it, summed.
    pub fn kernel_drops_of<'a>(all: impl IntoIterator<Item = &'a RxShared>) -> KernelDrops {
        let mut k = KernelDrops::default();
        for r in all {
            k.add(&r.kernel_drops());
        }
        k
    }

    /// Adds `d` (what grew since a loop's last reading) to the totals.
    pub fn add_kernel_drops(&self, d: &KernelDrops) {
        for (c, v) in self.kernel.iter().zip(d.to_array()) {
            if v > 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        }
    }
}

/// Which part of a pipeline's receiving a loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives, matches, retires expired probes, queues retries, and ends the pipeline's
    /// receiving once the sender is done and nothing is in flight. One per pipeline.
    Reaper,
    /// Receives and matches (another queue of the same engine) until the reaper has ended.
    Helper,
}

/// A loop's say in [`RxShared::behind`]: counted in while its backlog is over a quarter of
/// what its engine holds, out once under an eighth, and out when the loop ends.
struct Behind<'a> {
    shared: &'a RxShared,
    on: bool,
}

impl<'a> Behind<'a> {
    fn new(shared: &'a RxShared) -> Self {
        Behind { shared, on: false }
    }

    fn set(&mut self, waiting: u32, holds: u32) {
        let now = if self.on {
            waiting > holds / 8
        } else {
            waiting > holds / 4
        };
        if now != self.on {
            self.on = now;
            if now {
                self.shared.behind.fetch_add(1, Ordering::Relaxed);
            } else {
                self.shared.behind.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Behind<'_> {
    fn drop(&mut self) {
        if self.on {
            self.shared.behind.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How often a loop reads its engine's kernel drop counters.
const KERNEL_READ: Duration = Duration::from_millis(250);

/// A loop's last reading of its engine's kernel counters.
struct KernelTally {
    last: KernelDrops,
    next: Instant,
}

impl KernelTally {
    fn new() -> Self {
        KernelTally {
            last: KernelDrops::default(),
            next: Instant::now() + KERNEL_READ,
        }
    }

    /// Reads the counters when due (always with `now`) and adds what grew to `shared`.
    fn read(&mut self, rx: &mut dyn Rx, shared: &RxShared, now: bool) -> Result<(), EngineError> {
        let t = Instant::now();
        if !now && t < self.next {
            return Ok(());
        }
        self.next = t + KERNEL_READ;
        let d = rx.kernel_drops()?;
        shared.add_kernel_drops(&d.since(&self.last));
        self.last = d;
        Ok(())
    }
}

/// Parameters of the RX loop.
#[derive(Debug, Clone, Copy)]
pub struct RxConfig {
    /// How long a probe may wait for its answer.
    pub timeout: Duration,
    /// How many times a timed-out probe is sent again.
    pub retries: u8,
    /// Longest wait in one receive call (bounds reaper latency and stop latency).
    pub poll: Duration,
    /// Events per batch handed to the consumer.
    pub batch: usize,
    /// Tests only: pretend the realtime clock stepped by this many ns this long after the
    /// loop started (sockets' kernel stamps and the clocks' offset both move by it).
    pub clock_step: Option<(Duration, i64)>,
}

/// Brings sockets' kernel stamps (CLOCK_REALTIME) onto the stamp clock
/// (`asdic_engine::stamp_ns`) and watches the realtime clock for steps: the two clocks'
/// offset is read (tightly) around every receive call, and a change of more than
/// [`Realtime::STEP_NS`] is a step. Stamps read in a call during or right after which the
/// clock stepped may have been taken on either side of it: their answers are counted as
/// timed across a step (their RTTs may be off by the step).
#[derive(Debug)]
struct Realtime {
    /// CLOCK_REALTIME − stamp clock: what a kernel stamp loses to come onto the stamp clock.
    delta: i64,
    /// Steps seen.
    steps: u64,
    /// Tests: (when, by how much) the realtime clock pretends to step.
    inject: Option<(Instant, i64)>,
    injected: bool,
}

impl Realtime {
    /// A change of the offset beyond this is a step: tight reads agree within 2 µs, and NTP
    /// slews CLOCK_REALTIME and CLOCK_MONOTONIC alike.
    const STEP_NS: i64 = 100_000;

    fn new(inject: Option<(Duration, i64)>) -> Self {
        let mut r = Realtime {
            delta: 0,
            steps: 0,
            inject: inject.map(|(after, by)| (Instant::now() + after, by)),
            injected: false,
        };
        r.delta = r.read().unwrap_or(0);
        r
    }

    /// The offset now, minus the stamp clock's base (`None` from a loose read).
    fn read(&mut self) -> Option<i64> {
        let (offset, tight) = tight_offset();
        if let Some((at, _)) = self.inject
            && !self.injected
            && Instant::now() >= at
        {
            self.injected = true;
        }
        tight.then(|| offset - stamp_base() + self.injected_by())
    }

    fn injected_by(&self) -> i64 {
        match self.inject {
            Some((_, by)) if self.injected => by,
            _ => 0,
        }
    }

    /// Reads the offset again; whether the clock stepped since the last read.
    fn check(&mut self) -> bool {
        match self.read() {
            Some(d) if (d - self.delta).abs() > Self::STEP_NS => {
                self.delta = d;
                self.steps += 1;
                true
            }
            _ => false,
        }
    }

    /// A kernel stamp on the stamp clock.
    fn convert(&self, ts_ns: u64) -> u64 {
        ts_ns
            .wrapping_add_signed(self.injected_by())
            .wrapping_add_signed(-self.delta)
    }
}

/// Sets [`RxShared::reaper_done`] when dropped (the reaper's loop ending in any way).
struct ReaperDone<'a>(&'a RxShared);

impl Drop for ReaperDone<'_> {
    fn drop(&mut self) {
        self.0.reaper_done.store(true, Ordering::Release);
    }
}

/// What one receive call read.
struct Received {
    /// Frames.
    got: usize,
    /// The newest frame's stamp (stamp clock), 0 without frames.
    newest: u64,
    /// Frames that made no event.
    discarded: u64,
}

/// One receive call: each frame (its kernel stamp brought onto the stamp clock) matched into
/// `buf`; steps of the realtime clock just before or during the call counted.
fn receive(
    rx: &mut dyn Rx,
    matcher: &mut Matcher,
    poll: Duration,
    clock: &mut Realtime,
    role: Role,
    shared: &RxShared,
    buf: &mut Vec<Event>,
) -> Result<Received, EngineError> {
    let (mut newest, mut discarded, mut realtime) = (0u64, 0u64, 0u64);
    matcher.begin_batch();
    // A step just before this call: the kernel stamps it reads may lie on either side.
    let steps_before = clock.steps;
    let stepped = clock.check();
    let got = rx.recv(poll, &mut |mut f| {
        if f.realtime {
            f.ts_ns = clock.convert(f.ts_ns);
            f.realtime = false;
            realtime += 1;
        }
        newest = newest.max(f.ts_ns);
        let before = buf.len();
        matcher.on_frame(&f, &mut |ev| {
            count(shared, &ev);
            buf.push(ev);
        });
        discarded += u64::from(buf.len() == before);
    })?;
    matcher.end_batch();
    // ... or during it.
    let across = if (stepped || clock.check()) && realtime > 0 {
        realtime
    } else {
        0
    };
    // Every loop sees a step; the reaper's counts it.
    let steps = if role == Role::Reaper {
        clock.steps - steps_before
    } else {
        0
    };
    if steps + across > 0 {
        matcher.clock_stepped(steps, across);
    }
    Ok(Received {
        got,
        newest,
        discarded,
    })
}

/// How long an event may wait in the receiver for more to go out with it (up to twice this,
/// with poll(2)'s whole milliseconds).
const FLUSH_NS: u64 = 1_000_000;

/// Runs the RX loop until done. Events go out in batches through `events`; empty vectors come
/// back through `recycle` so steady state allocates nothing. `retries` is used by the
/// [`Role::Reaper`] only.
#[allow(clippy::too_many_arguments)]
pub fn run(
    rx: &mut dyn Rx,
    matcher: &mut Matcher,
    cfg: &RxConfig,
    shared: &RxShared,
    events: &Sender<Vec<Event>>,
    recycle: &Receiver<Vec<Event>>,
    retries: Option<&Sender<Retry>>,
    role: Role,
    mark: Option<&AtomicU64>,
) -> Result<(), EngineError> {
    let _done = (role == Role::Reaper).then(|| ReaperDone(shared));
    let timeout_ns = u64::try_from(cfg.timeout.as_nanos()).unwrap_or(u64::MAX);
    let mut buf: Vec<Event> = Vec::with_capacity(cfg.batch);
    let mut kernel = KernelTally::new();
    let mut behind = Behind::new(shared);
    let mut clock = Realtime::new(cfg.clock_step);
    // When events last went out (or the batch was last empty).
    let mut flushed = stamp_ns();
    loop {
        let abort = shared.abort.load(Ordering::Acquire);
        // Read before receiving: if the sender is done now, every probe is already claimed.
        let sender_done = shared.sender_done.load(Ordering::Acquire);
        // Read before receiving: a helper still drains what arrived before the reaper ended.
        let reaper_done = shared.reaper_done.load(Ordering::Acquire);
        let t0 = stamp_ns();
        // With events held back, no longer than until they are due (in whole ms: engines
        // wait in poll(2), which would take less as no wait at all).
        let wait = if buf.is_empty() {
            cfg.poll
        } else {
            let due = (flushed + FLUSH_NS).saturating_sub(t0);
            cfg.poll
                .min(Duration::from_millis(due.div_ceil(1_000_000).max(1)))
        };
        let Received {
            got,
            newest,
            discarded,
        } = receive(rx, matcher, wait, &mut clock, role, shared, &mut buf)?;
        if let Some(m) = mark {
            // Everything stamped before the newest frame read is read (a queue delivers in
            // order); with nothing read, everything that came before the call.
            // Release: the reaper's acquire load sees the events matched before it.
            m.fetch_max(if got == 0 { t0 } else { newest }, Ordering::Release);
        }
        shared.frames.fetch_add(got as u64, Ordering::Relaxed);
        if let Some((waiting, holds)) = rx.backlog() {
            behind.set(waiting, holds);
        }
        if discarded > 0 {
            shared.discarded.fetch_add(discarded, Ordering::Relaxed);
        }
        if role == Role::Reaper {
            // Not past what every loop has read: an answer stamped within its probe's
            // timeout may still wait in a queue.
            let now = if abort {
                u64::MAX
            } else {
                shared.read_to(stamp_ns())
            };
            matcher.reap(now, timeout_ns, &mut |ev, p| {
                let attempt = p.attempt;
                count(shared, &ev);
                if let (Outcome::Timeout, Some(q)) = (ev.outcome, retries)
                    && attempt < cfg.retries
                    && !abort
                {
                    let r = Retry {
                        cookie: ev.cookie,
                        target: ev.target,
                        attempt: attempt + 1,
                        class: p.class,
                    };
                    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                        q.try_send(r)
                    {
                        shared.retries_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                buf.push(ev);
            });
        }
        let over = match role {
            // On abort the reap above retired everything claimed; once the sender has also
            // stopped, nothing more can arrive.
            // A stateless scan has nothing in flight: its sender ends after the cooldown.
            Role::Reaper => sender_done && matcher.in_flight() == 0,
            // Every probe is retired by then: what comes later is late at best.
            Role::Helper => reaper_done,
        };
        // Events go out a batch at a time, or within FLUSH of the oldest: answers that come
        // one per receive call (probes sent one per call) would otherwise wake the consumer
        // once per answer.
        let now = stamp_ns();
        if buf.is_empty() {
            flushed = now;
        } else if buf.len() >= cfg.batch
            || got == 0
            || over
            || abort
            || now.saturating_sub(flushed) >= FLUSH_NS
        {
            flushed = now;
            let next = recycle
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(cfg.batch));
            let full = std::mem::replace(&mut buf, next);
            if events.send(full).is_err() {
                // The consumer is gone: nothing more to report to.
                kernel.read(rx, shared, true)?;
                return Ok(());
            }
        }
        kernel.read(rx, shared, over)?;
        if over {
            return Ok(());
        }
    }
}

fn count(shared: &RxShared, ev: &Event) {
    let c = match ev.outcome {
        Outcome::Reply { .. } => &shared.replies,
        Outcome::Error { .. } => &shared.errors,
        Outcome::Timeout => &shared.timeouts,
        _ => return,
    };
    c.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_core::table::{InflightTable, ProbeInfo};

    #[test]
    fn a_step_of_the_realtime_clock_is_seen_and_kernel_stamps_stay_on_the_stamp_clock() {
        const HOUR: i64 = 3_600_000_000_000;
        let mut c = Realtime::new(Some((Duration::from_millis(30), HOUR)));
        assert!(!c.check(), "no step yet");
        // A kernel stamp now, brought onto the stamp clock: within a few µs of it.
        let real = asdic_engine::realtime_ns();
        assert!(c.convert(real).abs_diff(stamp_ns()) < 1_000_000);
        std::thread::sleep(Duration::from_millis(40));
        // The realtime clock (pretends it) jumped an hour ahead: seen once, and its stamps,
        // an hour ahead too, still land on the stamp clock.
        assert!(c.check(), "the step");
        assert!(!c.check(), "once");
        assert_eq!(c.steps, 1);
        let real = asdic_engine::realtime_ns();
        assert!(c.convert(real).abs_diff(stamp_ns()) < 1_000_000);
        // Without the injection, the same offset: no step.
        let mut d = Realtime::new(None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!d.check());
        assert_eq!(d.steps, 0);
    }
    use asdic_engine::RxCaps;
    use asdic_wire::payload::{Key, Numbering};
    use crossbeam_channel::{bounded, unbounded};
    use std::sync::Arc;

    /// A queue that receives nothing and reports growing kernel drop counters.
    struct Quiet {
        reads: u64,
        each: KernelDrops,
    }

    impl Rx for Quiet {
        fn caps(&self) -> RxCaps {
            RxCaps {
                engine: "test",
                stamp: asdic_engine::RxStamp::UserBatch,
            }
        }

        fn recv(
            &mut self,
            timeout: Duration,
            _: &mut dyn FnMut(asdic_engine::RxFrame<'_>),
        ) -> Result<usize, EngineError> {
            std::thread::sleep(timeout);
            Ok(0)
        }

        fn kernel_drops(&mut self) -> Result<KernelDrops, EngineError> {
            // Cumulative, as the kernel reports them: `each` more per reading.
            self.reads += 1;
            let mut d = KernelDrops::default();
            for _ in 0..self.reads {
                d.add(&self.each);
            }
            Ok(d)
        }
    }

    /// A table with probe 0 to `target` sent at `t_send` and a sender that is done; loops
    /// with a 1 ms timeout polling every `poll_ms`.
    fn one_probe_out(
        target: std::net::IpAddr,
        t_send: u64,
        poll_ms: u64,
    ) -> (Arc<InflightTable>, Arc<RxShared>, RxConfig) {
        let table = Arc::new(InflightTable::new(16));
        assert!(table.claim(&ProbeInfo {
            n: 0,
            target,
            cookie: 0,
            t_send_ns: t_send,
            attempt: 0,
            class: 0,
        }));
        let shared = Arc::new(RxShared::default());
        shared.sender_done.store(true, Ordering::Release);
        let cfg = RxConfig {
            timeout: Duration::from_millis(1),
            retries: 0,
            poll: Duration::from_millis(poll_ms),
            batch: 16,
            clock_step: None,
        };
        (table, shared, cfg)
    }

    #[test]
    fn the_reaper_ends_the_helpers_and_every_loops_kernel_drops_are_summed() {
        let (table, shared, cfg) = one_probe_out("198.19.0.1".parse().unwrap(), 1, 5);
        let (ev_tx, ev_rx) = unbounded::<Vec<Event>>();
        let (_back_tx, back_rx) = bounded::<Vec<Event>>(4);
        let numbering = Numbering::Spread {
            base: 1,
            key: 0x5eed_0001,
        };
        let spawn = |role: Role, each: KernelDrops, hold: Duration| {
            let (table, shared, ev_tx, back_rx) = (
                table.clone(),
                shared.clone(),
                ev_tx.clone(),
                back_rx.clone(),
            );
            std::thread::spawn(move || {
                // The helper starts first and must outlive nothing but the reaper.
                std::thread::sleep(hold);
                let mut m = Matcher::new(table, Key::new(1, 2), 7, numbering);
                let mut rx = Quiet { reads: 0, each };
                run(
                    &mut rx, &mut m, &cfg, &shared, &ev_tx, &back_rx, None, role, None,
                )
            })
        };
        let helper = spawn(
            Role::Helper,
            KernelDrops {
                xsk_rx_ring_full: 4,
                ..KernelDrops::default()
            },
            Duration::ZERO,
        );
        // While the reaper has not run, the helper neither reaps nor ends.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!helper.is_finished());
        assert_eq!(table.in_flight(), 1, "helpers do not reap");
        let reaper = spawn(
            Role::Reaper,
            KernelDrops {
                socket: 3,
                ..KernelDrops::default()
            },
            Duration::ZERO,
        );
        reaper.join().unwrap().unwrap();
        helper.join().unwrap().unwrap();
        drop(ev_tx);
        let events: Vec<Event> = ev_rx.iter().flatten().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, Outcome::Timeout);
        assert!(shared.reaper_done.load(Ordering::Acquire));
        // Each loop's last reading, as it ended: multiples of what each one grows by.
        let k = shared.kernel_drops();
        assert!(k.socket >= 3 && k.socket % 3 == 0, "{k:?}");
        assert!(
            k.xsk_rx_ring_full >= 8 && k.xsk_rx_ring_full % 4 == 0,
            "{k:?}"
        );
        assert_eq!(k.lost(), k.socket + k.xsk_rx_ring_full);
        assert_eq!(
            (k.xsk_rx_dropped, k.xsk_fill_empty, k.redirect_failed),
            (0, 0, 0)
        );
    }

    /// Hands `data` (an IPv4 packet stamped `ts_ns` on the stamp clock) to the loop: 1 frame.
    fn deliver(
        on_frame: &mut dyn FnMut(asdic_engine::RxFrame<'_>),
        data: &[u8],
        ts_ns: u64,
    ) -> usize {
        on_frame(asdic_engine::RxFrame {
            data,
            layer: asdic_engine::RxLayer::Ipv4,
            ts_ns,
            truncated: false,
            realtime: false,
        });
        1
    }

    /// A queue whose loop is held up (descheduled, busy) in its first read until `until`,
    /// when it gets the one frame that arrived meanwhile.
    struct Held {
        frame: Option<(Vec<u8>, u64)>,
        until: std::time::Instant,
    }

    impl Rx for Held {
        fn caps(&self) -> RxCaps {
            RxCaps {
                engine: "test",
                stamp: asdic_engine::RxStamp::KernelSoftware,
            }
        }

        fn recv(
            &mut self,
            timeout: Duration,
            on_frame: &mut dyn FnMut(asdic_engine::RxFrame<'_>),
        ) -> Result<usize, EngineError> {
            let left = self
                .until
                .saturating_duration_since(std::time::Instant::now());
            std::thread::sleep(left);
            match self.frame.take() {
                Some((data, ts_ns)) => Ok(deliver(on_frame, &data, ts_ns)),
                None => {
                    std::thread::sleep(timeout);
                    Ok(0)
                }
            }
        }
    }

    /// A queue whose answers come one per read, `gap` apart (probes sent one per call), with
    /// a pause of `pause` after the first `pause_after`, then nothing.
    struct Trickle {
        frames: std::collections::VecDeque<Vec<u8>>,
        gap: Duration,
        pause_after: usize,
        pause: Duration,
        delivered: usize,
        paused_until: Option<std::time::Instant>,
    }

    impl Rx for Trickle {
        fn caps(&self) -> RxCaps {
            RxCaps {
                engine: "test",
                stamp: asdic_engine::RxStamp::KernelSoftware,
            }
        }

        fn recv(
            &mut self,
            timeout: Duration,
            on_frame: &mut dyn FnMut(asdic_engine::RxFrame<'_>),
        ) -> Result<usize, EngineError> {
            if let Some(until) = self.paused_until {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if !left.is_zero() {
                    std::thread::sleep(left.min(timeout));
                    return Ok(0);
                }
                self.paused_until = None;
            }
            let Some(data) = self.frames.pop_front() else {
                std::thread::sleep(timeout);
                return Ok(0);
            };
            std::thread::sleep(self.gap);
            self.delivered += 1;
            if self.delivered == self.pause_after {
                self.paused_until = Some(std::time::Instant::now() + self.pause);
            }
            Ok(deliver(on_frame, &data, stamp_ns()))
        }
    }

    #[test]
    fn answers_read_one_at_a_time_go_out_together_and_none_waits_past_the_flush() {
        let (key, numbering) = (
            Key::new(1, 2),
            Numbering::Spread {
                base: 1,
                key: 0x5eed_0001,
            },
        );
        let probes = 200u64;
        let table = Arc::new(InflightTable::new(256));
        let t_send = stamp_ns();
        let mut frames = std::collections::VecDeque::new();
        for n in 0..probes {
            let dst = std::net::Ipv4Addr::from(0xc613_0000 + n as u32);
            assert!(table.claim(&ProbeInfo {
                n,
                target: dst.into(),
                cookie: 0,
                t_send_ns: t_send,
                attempt: 0,
                class: 0,
            }));
            frames.push_back(reply(&key, numbering, n, dst, t_send));
        }
        let shared = Arc::new(RxShared::default());
        shared.sender_done.store(true, Ordering::Release);
        // A poll period far longer than the flush: an event held for it would show.
        let cfg = RxConfig {
            timeout: Duration::from_secs(10),
            retries: 0,
            poll: Duration::from_millis(500),
            batch: 4096,
            clock_step: None,
        };
        let (ev_tx, ev_rx) = unbounded::<Vec<Event>>();
        let (_back_tx, back_rx) = bounded::<Vec<Event>>(4);
        let consumer = std::thread::spawn(move || {
            // Each batch with when it came out.
            ev_rx.iter().map(|b| (stamp_ns(), b)).collect::<Vec<_>>()
        });
        let mut m = Matcher::new(table, key, 7, numbering).with_timeout(cfg.timeout);
        // Half the answers, a pause longer than the poll period, the rest: the events of the
        // first half must not wait out the pause.
        let mut rx = Trickle {
            frames,
            gap: Duration::from_micros(50),
            pause_after: probes as usize / 2,
            pause: Duration::from_millis(700),
            delivered: 0,
            paused_until: None,
        };
        run(
            &mut rx,
            &mut m,
            &cfg,
            &shared,
            &ev_tx,
            &back_rx,
            None,
            Role::Reaper,
            None,
        )
        .unwrap();
        drop(ev_tx);
        let batches = consumer.join().unwrap();
        let events: usize = batches.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(events, probes as usize, "every answer reported");
        // 200 answers ~50 µs apart: ~10 ms of them, so a handful of batches, not one each.
        assert!(
            batches.len() * 4 <= probes as usize,
            "{} batches for {probes} answers",
            batches.len()
        );
        // None held for the poll period: each out within the flush (up to 2 ms with poll's
        // whole ms) and the scheduler's slack.
        for (out_at, b) in &batches {
            for ev in b {
                let Outcome::Reply { rtt_ns, .. } = ev.outcome else {
                    panic!("{ev:?}")
                };
                let received = ev.sent_ns.unwrap() + rtt_ns;
                let held = out_at.saturating_sub(received);
                assert!(held < 100_000_000, "held {held} ns: {ev:?}");
            }
        }
    }

    /// The echo reply from `dst` to probe `n`, as an IPv4 packet.
    fn reply(key: &Key, numbering: Numbering, n: u64, dst: std::net::Ipv4Addr, t: u64) -> Vec<u8> {
        use asdic_wire::payload::Stamp;
        use asdic_wire::template::{Layer, ProbeFields, Template};
        let template = Template::new(asdic_wire::Family::V4, Layer::Icmp, 32).unwrap();
        let (ident, seq) = numbering.ident_seq(n);
        let stamp = Stamp {
            session: 7,
            n,
            cookie: 0,
            t_send_ns: t,
        };
        let mut icmp = vec![0; template.len()];
        template.prepare(&mut icmp).unwrap();
        let fields = ProbeFields::new(key, dst.into(), 64, ident, seq, stamp);
        template.patch(&mut icmp, &fields).unwrap();
        icmp[0] = 0;
        icmp[2..4].fill(0);
        let c = asdic_wire::checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = vec![0; 20];
        asdic_wire::ipv4::Repr {
            src: dst,
            dst: std::net::Ipv4Addr::new(198, 18, 0, 1),
            protocol: 1,
            payload_len: icmp.len(),
            ttl: 63,
            ident: 0,
        }
        .emit(&mut p)
        .unwrap();
        p.extend_from_slice(&icmp);
        p
    }

    #[test]
    fn the_reaper_waits_for_a_queue_still_holding_an_answer_within_the_timeout() {
        let (key, numbering) = (
            Key::new(1, 2),
            Numbering::Spread {
                base: 1,
                key: 0x5eed_0001,
            },
        );
        let dst = std::net::Ipv4Addr::new(198, 19, 0, 1);
        let t_send = stamp_ns();
        // A 1 ms timeout; the answer arrived 200 µs after the probe left, on a queue whose
        // loop does not read for 100 ms.
        let (table, shared, cfg) = one_probe_out(dst.into(), t_send, 2);
        let (ev_tx, ev_rx) = unbounded::<Vec<Event>>();
        let (_back_tx, back_rx) = bounded::<Vec<Event>>(4);
        let marks = [shared.reader(), shared.reader()];
        let loops: Vec<_> = [
            (Role::Reaper, None),
            (Role::Helper, Some(reply(&key, numbering, 0, dst, t_send))),
        ]
        .into_iter()
        .zip(marks)
        .map(|((role, frame), mark)| {
            let (table, shared, ev_tx, back_rx) = (
                table.clone(),
                shared.clone(),
                ev_tx.clone(),
                back_rx.clone(),
            );
            std::thread::spawn(move || {
                let mut m = Matcher::new(table, key, 7, numbering).with_timeout(cfg.timeout);
                let mut rx = Held {
                    frame: frame.map(|f| (f, t_send + 200_000)),
                    until: std::time::Instant::now() + Duration::from_millis(100),
                };
                let mark = Some(mark.as_ref());
                run(
                    &mut rx, &mut m, &cfg, &shared, &ev_tx, &back_rx, None, role, mark,
                )
            })
        })
        .collect();
        for l in loops {
            l.join().unwrap().unwrap();
        }
        drop(ev_tx);
        let events: Vec<Event> = ev_rx.iter().flatten().collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            matches!(
                events[0].outcome,
                Outcome::Reply {
                    rtt_ns: 200_000,
                    ..
                }
            ),
            "answered within its timeout, never timed out: {events:?}"
        );
    }
}
