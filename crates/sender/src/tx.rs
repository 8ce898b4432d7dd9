//! The TX loop: targets from a [`Source`], paced by the token bucket, stamped from the
//! template into a batch, claimed in the in-flight table, handed to the engine in batches.
//! Retries requested by the receiver go out before new work.

use core::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asdic_core::event::Event;
use asdic_core::retry::Retry;
use asdic_core::stateless::ScanProbe;
use asdic_core::table::{InflightTable, ProbeInfo};
use asdic_engine::{EngineError, SendError, Tx, TxBatch, stamp_ns};
use asdic_wire::Family;
use asdic_wire::payload::{Key, Numbering, Stamp};
use asdic_wire::template::{ProbeFields, Template};
use crossbeam_channel::{Receiver, Sender};

use crate::rate::{TokenBucket, pause};
use asdic_core::source::{Next, Source};

/// What to send.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Probes per second, all targets together.
    pub rate: f64,
    /// Probes per engine call, at most.
    pub batch: usize,
    /// One probe per engine call while the sender keeps up with the rate, each stamped right
    /// before the call that hands it to the kernel; calls take what is due, up to `batch`,
    /// only once the sender has been behind for [`GROW_AFTER`] and where a trial shows it
    /// pays (see [`CallSize`]).
    pub per_call: bool,
    /// TTL / hop limit of probes whose source names none (raw sockets set it on the socket;
    /// a probe with a TTL of its own carries it in the frame or a control message).
    pub ttl: u8,
    /// How probe numbers map to (identifier, sequence).
    pub numbering: Numbering,
    /// The run's session id.
    pub session: u32,
    /// The run's MAC key.
    pub key: Key,
    /// Whether timed-out probes may be retried (then the sender waits for the table to drain).
    pub retries: bool,
    /// Paris traceroute: every probe to a target is of this flow, at one ICMP checksum (the
    /// templates need room for the flow word, `asdic_wire::template::FLOW_PAYLOAD`).
    pub flow: Option<u16>,
}

/// Progress counters the sender publishes (read by the progress display).
#[derive(Debug, Default)]
pub struct SenderShared {
    /// Set to stop sending (a source that cools down first still does).
    pub stop: AtomicBool,
    /// Set to stop at once: no cooling down.
    pub abort: AtomicBool,
    /// Probes handed to the engine.
    pub sent: AtomicU64,
    /// Probes the engine refused (reported as send failures).
    pub failed: AtomicU64,
    /// Times the engine said its queues were full.
    pub busy: AtomicU64,
    /// Times the in-flight table was full and the sender waited.
    pub table_full: AtomicU64,
    /// Microseconds of sending: from the start to the last batch handed to the engine, less
    /// the time nothing was due (between rounds, between a scan's retry passes), so that
    /// probes / send time is the rate the engine sustained.
    pub send_us: AtomicU64,
    /// The first batch's send stamp (stamp clock, ns; 0 before any): with
    /// [`SenderShared::last_send_ns`], the span the probes went out over, whose quotient is
    /// the rate a user sees (idle time between rounds included, unlike `send_us`).
    pub first_send_ns: AtomicU64,
    /// The last batch's send stamp (stamp clock, ns; 0 before any).
    pub last_send_ns: AtomicU64,
    /// Set when the source is exhausted (every target has had its first probe).
    pub exhausted: AtomicBool,
    /// Times the sender waited because a receiver was behind.
    pub held: AtomicU64,
    /// Probes handed to the engine in calls of several while one per call was asked
    /// ([`SenderConfig::per_call`]): the sender was behind the rate, and each of these
    /// probes' send stamps is early by the kernel's work on the frames ahead of it in its
    /// call.
    pub grouped: AtomicU64,
}

/// How long the sender must have been a whole batch behind the rate, sending one probe per
/// call, before its calls try taking what is due ([`SenderConfig::per_call`]): a moment's
/// delay (a preemption) is caught up one probe per call. Its rate over this window is what a
/// trial of grown calls must beat.
pub const GROW_AFTER: Duration = Duration::from_millis(2);

/// How long grown calls are tried before they are kept or given up.
pub const TRIAL: Duration = Duration::from_millis(4);

/// How much faster than one probe per call grown calls must send to be kept: each grown
/// call's probes are timed early by the kernel's work on the frames ahead of them, which is
/// worth it only for a clear gain in rate (1.44× on the speed bed, where the call itself is
/// a third of a `sendto`; 1.08× on the routed bed, whose forwarding is most of it, at 33×
/// the error over the wire).
pub const GROWN_GAIN: f64 = 1.25;

/// How long one probe per call is kept after a trial that did not pay, before the next one.
pub const HELD: Duration = Duration::from_secs(1);

/// The size of the next call when one probe per call is asked ([`SenderConfig::per_call`]).
/// One, unless every call for [`GROW_AFTER`] has found a whole batch due (the pacer's bucket
/// full: one per call cannot keep up with the rate) and a probe to send (a source that
/// pauses, a burst of a round's probes, or requests that come one at a time, are not a
/// sender behind the rate). Then calls take what is due, up to a batch, for a [`TRIAL`]:
/// kept if they sent at least [`GROWN_GAIN`] times the probes per second that one per call
/// did over its window. Any call that finds no more than one due, or gets fewer probes from
/// the source than it asked, has caught up: one per call again. The trial's verdict holds
/// for [`HELD`]: when the sender falls behind again within it (the next round of a ping),
/// calls grow at once if the trial paid, and stay one per call if it did not.
#[derive(Debug, Default, Clone, Copy)]
pub struct CallSize {
    /// Since when every call has found a whole batch due and a probe, and how many probes
    /// have gone since (one per call).
    behind: Option<(Instant, u64)>,
    phase: Phase,
    /// The last trial's verdict (whether grown calls paid) and until when it holds.
    verdict: Option<(bool, Instant)>,
}

/// Where a [`CallSize`] stands.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Phase {
    /// One probe per call.
    #[default]
    One,
    /// Grown calls on trial since `since`, `sent` probes so far, against one per call's
    /// `one_rate` (probes/s).
    Trial {
        since: Instant,
        sent: u64,
        one_rate: f64,
    },
    /// Grown calls.
    Grown,
}

impl CallSize {
    /// How many of the `due` probes (at most `cap`, a batch) the call at `now` takes.
    pub fn take(&mut self, due: usize, cap: usize, now: Instant) -> usize {
        match self.phase {
            Phase::Grown if due > 1 => return due,
            Phase::Trial {
                since,
                sent,
                one_rate,
            } if due > 1 => {
                let took = now.saturating_duration_since(since);
                if took < TRIAL {
                    return due;
                }
                let paid = sent as f64 / took.as_secs_f64() >= GROWN_GAIN * one_rate;
                self.verdict = Some((paid, now + HELD));
                if paid {
                    self.phase = Phase::Grown;
                    return due;
                }
                self.caught_up();
                return 1;
            }
            Phase::One => {}
            // Caught up.
            _ => self.caught_up(),
        }
        if due < cap {
            self.behind = None;
            return due.min(1);
        }
        match self.verdict {
            Some((paid, until)) if now < until => {
                if paid {
                    self.phase = Phase::Grown;
                    return due;
                }
                return 1;
            }
            _ => {}
        }
        let (since, sent) = *self.behind.get_or_insert((now, 0));
        let took = now.saturating_duration_since(since);
        if took >= GROW_AFTER && sent > 0 {
            self.phase = Phase::Trial {
                since: now,
                sent: 0,
                one_rate: sent as f64 / took.as_secs_f64(),
            };
            self.behind = None;
            return due;
        }
        1
    }

    /// The call asked for `allowed` probes ([`CallSize::take`]) and the source gave `n`:
    /// fewer (none, or a grown call not filled) means the sender has caught up.
    pub fn filled(&mut self, n: usize, allowed: usize) {
        if n == 0 || n < allowed {
            self.caught_up();
            return;
        }
        match &mut self.phase {
            Phase::One => {
                if let Some((_, sent)) = &mut self.behind {
                    *sent += n as u64;
                }
            }
            Phase::Trial { sent, .. } => *sent += n as u64,
            Phase::Grown => {}
        }
    }

    /// One per call again, the last verdict kept.
    fn caught_up(&mut self) {
        self.phase = Phase::One;
        self.behind = None;
    }
}

/// Longest the sender waits for behind receivers before one batch: a receiver that never
/// catches up (stalled, or slower than the link) slows sending, never stops it.
const HOLD_MAX: Duration = Duration::from_millis(20);

/// What the TX loop is tied to besides its engine, table and source.
#[derive(Debug, Default, Clone, Copy)]
pub struct Links<'a> {
    /// Retries the receiver asks for (tracked runs with retries).
    pub retries: Option<&'a Receiver<Retry>>,
    /// How many receivers are behind (the sender waits for them).
    pub behind: Option<&'a AtomicU32>,
    /// Where events the source produces (a stateless scan's timeouts and failed sends) go.
    pub events: Option<&'a Sender<Vec<Event>>>,
}

/// What one slot of the batch holds, for reporting a probe the engine refused.
#[derive(Debug, Clone, Copy)]
enum Sent {
    /// A tracked probe: its number (its table slot reports it).
    Tracked(u64),
    /// A stateless probe (its source reports it).
    Scan(ScanProbe),
}

/// How far the run has been told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stopping {
    /// Sending.
    No,
    /// Stopped: nothing more is sent; the source cools down (a first SIGINT).
    Stop,
    /// Aborted: no cooling down either (a second SIGINT).
    Abort,
}

impl Stopping {
    fn asked(shared: &SenderShared) -> Stopping {
        if shared.abort.load(Ordering::Relaxed) {
            Stopping::Abort
        } else if shared.stop.load(Ordering::Relaxed) {
            Stopping::Stop
        } else {
            Stopping::No
        }
    }
}

/// One probe about to be written: what its slot and its table entry need.
#[derive(Debug, Clone, Copy)]
struct Probe {
    dst: IpAddr,
    /// Its template (packet size): `templates[class]`.
    class: u8,
    /// Its own TTL / hop limit; `None` for the run's ([`SenderConfig::ttl`]).
    ttl: Option<u8>,
    /// Try number at its target.
    attempt: u8,
    ident: u16,
    seq: u16,
    stamp: Stamp,
    /// How a refusal is reported.
    sent: Sent,
}

/// What comes next for the batch being filled.
enum Step {
    /// This probe.
    Probe(Probe),
    /// Nothing now: send what the batch holds.
    Pause,
}

/// What the loop does after looking at the stop flags.
enum Flow {
    /// Send.
    Send,
    /// Stopped and the source still cooling down: ask it again later.
    CoolDown,
    /// Over.
    End,
}

/// Sends every probe of the run, each from the template of its target's family and its class
/// (`templates`: one per packet size and family, at least one; the k-th template of a family
/// is that family's class k: a pipeline of both families has both sets). Returns when done,
/// stopped, or on a fatal engine error. A source that keeps going after a stop
/// ([`Source::stop`]) is asked on, without sending, until it is done. A probe that cannot be
/// built (a class with no template, a target of a family without templates) is reported as a
/// failed send (`EINVAL`), never dropped.
///
/// Each batch: follow the stop flags, give behind receivers the CPU, wait for tokens,
/// [`TxLoop::fill_batch`] (retries first, then the source; each probe patched in its slot
/// before it joins the batch), [`flush`] to the engine.
pub fn run<S: Source + ?Sized>(
    tx: &mut dyn Tx,
    templates: &[Template],
    table: &InflightTable,
    source: &mut S,
    cfg: &SenderConfig,
    shared: &SenderShared,
    links: Links<'_>,
) -> Result<(), EngineError> {
    let mut l = TxLoop::new(templates, table, cfg, shared, links);
    loop {
        match l.follow_stop(source) {
            Flow::End => break,
            Flow::CoolDown => continue,
            Flow::Send => {}
        }
        l.hold_for_receivers(tx);
        let Some(allowed) = l.tokens() else { continue };
        let t_send = l.fill_batch(allowed, source);
        // Fewer probes than the tokens allowed: the source, not the rate, holds the sender.
        if cfg.per_call {
            l.calls.filled(l.batch.len(), allowed);
        }
        if l.batch.is_empty() {
            if l.idle(source) {
                break;
            }
            continue;
        }
        l.bucket.consume(l.batch.len());
        if cfg.per_call && l.batch.len() > 1 {
            shared
                .grouped
                .fetch_add(l.batch.len() as u64, Ordering::Relaxed);
        }
        let r = flush(tx, &l.batch, &l.sent, t_send, table, source, shared);
        emit(source, &mut l.events, links.events);
        r?;
        let busy = l.start.elapsed().saturating_sub(l.idle);
        shared
            .send_us
            .store(busy.as_micros() as u64, Ordering::Relaxed);
        if shared.first_send_ns.load(Ordering::Relaxed) == 0 {
            shared.first_send_ns.store(t_send, Ordering::Relaxed);
        }
        shared.last_send_ns.store(t_send, Ordering::Relaxed);
    }
    emit(source, &mut l.events, links.events);
    Ok(())
}

/// The TX loop's state between batches.
struct TxLoop<'a> {
    templates: &'a [Template],
    table: &'a InflightTable,
    cfg: &'a SenderConfig,
    shared: &'a SenderShared,
    links: Links<'a>,
    batch: TxBatch,
    /// Per family (IPv4, IPv6), the index in `templates` of each class's template.
    classes: [Vec<usize>; 2],
    /// Which template (index) each slot holds: slots are prepared once, and again only when a
    /// probe of another class or family lands in them.
    slot_template: Vec<usize>,
    /// How each slot's probe is reported if the engine refuses it.
    sent: Vec<Sent>,
    /// The source's events, on their way to the run.
    events: Vec<Event>,
    bucket: TokenBucket,
    /// Probes per call when one per call is asked.
    calls: CallSize,
    start: Instant,
    /// Time spent with nothing due (see [`SenderShared::send_us`]).
    idle: Duration,
    /// The next tracked probe's number.
    n: u64,
    /// Whether the source has given its last target.
    exhausted: bool,
    stopping: Stopping,
}

impl<'a> TxLoop<'a> {
    fn new(
        templates: &'a [Template],
        table: &'a InflightTable,
        cfg: &'a SenderConfig,
        shared: &'a SenderShared,
        links: Links<'a>,
    ) -> Self {
        let stride = templates.iter().map(Template::len).max().unwrap_or(0);
        let mut batch = TxBatch::new(cfg.batch.max(1), stride);
        if let Some(first) = templates.first() {
            for i in 0..batch.capacity() {
                if let Some(slot) = batch.slot_mut(i) {
                    // The stride is the longest template's length: preparing cannot fail.
                    let _ = first.prepare(slot);
                }
            }
        }
        let start = Instant::now();
        TxLoop {
            templates,
            table,
            cfg,
            shared,
            links,
            classes: [Family::V4, Family::V6].map(|f| {
                (0..templates.len())
                    .filter(|&i| templates[i].family() == f)
                    .collect()
            }),
            slot_template: vec![0; batch.capacity()],
            sent: vec![Sent::Tracked(0); batch.capacity()],
            batch,
            events: Vec::new(),
            bucket: TokenBucket::new(cfg.rate, cfg.batch.max(1), start),
            calls: CallSize::default(),
            start,
            idle: Duration::ZERO,
            n: table.claimed(),
            exhausted: false,
            stopping: Stopping::No,
        }
    }

    /// Tells the source about a new stop or abort; once stopped, lets it cool down and
    /// report (nothing more is sent) until it is done.
    fn follow_stop<S: Source + ?Sized>(&mut self, source: &mut S) -> Flow {
        let asked = Stopping::asked(self.shared);
        if asked > self.stopping {
            self.stopping = asked;
            if !source.stop(Instant::now(), asked == Stopping::Abort) {
                return Flow::End;
            }
        }
        if self.stopping == Stopping::No {
            return Flow::Send;
        }
        let done = matches!(source.next(Instant::now()), Next::Done);
        emit(source, &mut self.events, self.links.events);
        if done {
            return Flow::End;
        }
        std::thread::sleep(IDLE);
        Flow::CoolDown
    }

    /// Receivers first: while one of them is behind (its backlog over a quarter of what its
    /// engine holds), gives them the CPU instead of sending more replies their way. The
    /// engine may see a receive ring filling before its receiver (not running) can say.
    fn hold_for_receivers(&self, tx: &dyn Tx) {
        let behind = |tx: &dyn Tx| {
            self.links
                .behind
                .is_some_and(|b| b.load(Ordering::Relaxed) > 0 || tx.receivers_behind())
        };
        if behind(tx) {
            self.shared.held.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            while behind(tx) && t0.elapsed() < HOLD_MAX && !stopped(self.shared) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Paces: waits for at least one token; how many probes may go now (`None`: stopped
    /// while waiting).
    fn tokens(&mut self) -> Option<usize> {
        loop {
            let now = Instant::now();
            let cap = self.batch.capacity();
            let mut k = self.bucket.available(cap, now);
            if self.cfg.per_call {
                k = self.calls.take(k, cap, now);
            }
            if k > 0 {
                return Some(k);
            }
            pause(self.bucket.wait().min(Duration::from_millis(50)));
            if stopped(self.shared) {
                return None;
            }
        }
    }

    /// Fills the batch with up to `allowed` probes, each stamped as it is written (a vDSO
    /// clock read, tens of ns: the batch's last probe is not timed from its first one's
    /// moment); returns the first stamp, the batch's send time for failures.
    fn fill_batch<S: Source + ?Sized>(&mut self, allowed: usize, source: &mut S) -> u64 {
        self.batch.clear();
        let t_send = stamp_ns();
        let now = Instant::now();
        let mut t_probe = t_send;
        while self.batch.len() < allowed {
            if !self.wait_for_slot() {
                break;
            }
            match self.next_probe(source, now, t_probe) {
                Step::Probe(p) => {
                    if !self.write(p, source) {
                        break;
                    }
                    t_probe = stamp_ns();
                }
                Step::Pause => break,
            }
        }
        t_send
    }

    /// Whether the table has a slot for the next tracked probe, waiting (counted) while it is
    /// full and the batch is empty; `false` to send what the batch holds (or stop).
    fn wait_for_slot(&self) -> bool {
        if self.table.can_claim(self.n) {
            return true;
        }
        // The ring is full: send what we have, or wait for the reaper to free a slot.
        self.shared.table_full.fetch_add(1, Ordering::Relaxed);
        if !self.batch.is_empty() {
            return false;
        }
        while !self.table.can_claim(self.n) && !stopped(self.shared) {
            pause(Duration::from_micros(100));
        }
        !stopped(self.shared)
    }

    /// The next probe: a retry the receiver asked for, else the source's next target (a
    /// retry goes out at its first try's size, with the run's TTL).
    fn next_probe<S: Source + ?Sized>(
        &mut self,
        source: &mut S,
        now: Instant,
        t_send: u64,
    ) -> Step {
        let next = if let Some(r) = self.links.retries.and_then(|q| q.try_recv().ok()) {
            Next::Try(r)
        } else if self.exhausted {
            return Step::Pause;
        } else {
            source.next(now)
        };
        match next {
            Next::Probe {
                cookie,
                target,
                class,
                ttl,
            } => Step::Probe(self.tracked(
                target,
                class,
                (ttl != 0).then_some(ttl),
                0,
                cookie,
                t_send,
            )),
            Next::Try(r) => {
                Step::Probe(self.tracked(r.target, r.class, None, r.attempt, r.cookie, t_send))
            }
            Next::Scan(p) => {
                let (ident, seq) = self.cfg.key.probe_ids(p.target, p.attempt);
                Step::Probe(Probe {
                    dst: p.target,
                    class: 0,
                    ttl: None,
                    attempt: p.attempt,
                    ident,
                    seq,
                    stamp: Stamp {
                        session: self.cfg.session,
                        n: p.position,
                        cookie: u32::from(p.attempt),
                        t_send_ns: t_send,
                    },
                    sent: Sent::Scan(p),
                })
            }
            Next::NotYet => Step::Pause,
            Next::Done => {
                self.exhausted = true;
                self.shared.exhausted.store(true, Ordering::Relaxed);
                Step::Pause
            }
        }
    }

    /// The next tracked probe: try `attempt` at `dst`, under the next probe number.
    fn tracked(
        &self,
        dst: IpAddr,
        class: u8,
        ttl: Option<u8>,
        attempt: u8,
        cookie: u32,
        t_send: u64,
    ) -> Probe {
        let (ident, seq) = self.cfg.numbering.ident_seq(self.n);
        Probe {
            dst,
            class,
            ttl,
            attempt,
            ident,
            seq,
            stamp: Stamp {
                session: self.cfg.session,
                n: self.n,
                cookie,
                t_send_ns: t_send,
            },
            sent: Sent::Tracked(self.n),
        }
    }

    /// Writes `p` into the next slot (patched there, then pushed: a probe that cannot be
    /// built is never sent half-written) and claims a tracked probe's table slot. A probe
    /// that cannot be built is reported as a failed send. `false` when the batch cannot take
    /// it.
    fn write<S: Source + ?Sized>(&mut self, p: Probe, source: &mut S) -> bool {
        let i = self.batch.len();
        let family = usize::from(p.dst.is_ipv6());
        let built = self.classes[family]
            .get(usize::from(p.class))
            .and_then(|&k| {
                let template = &self.templates[k];
                if self.slot_template[i] != k {
                    let slot = self.batch.slot_mut(i)?;
                    template.prepare(slot).ok()?;
                    self.slot_template[i] = k;
                }
                // Tracked probes in frames asdic builds carry a keyed IPv4 IP ID: the 16 more
                // bits an error quoting only 8 bytes brings back (scans' ids are a MAC already).
                let ip_ident = match p.sent {
                    Sent::Tracked(_) if template.writes_ip_ident() => {
                        self.cfg.key.ip_ident(p.dst, p.ident, p.seq)
                    }
                    _ => 0,
                };
                let ttl = p.ttl.unwrap_or(self.cfg.ttl);
                let fields = ProbeFields::new(&self.cfg.key, p.dst, ttl, p.ident, p.seq, p.stamp)
                    .with_ip_ident(ip_ident)
                    .with_flow(self.cfg.flow);
                template.patch(self.batch.slot_mut(i)?, &fields).ok()?;
                Some(template.len())
            });
        if let Some(len) = built {
            if self.batch.push(p.dst, len).is_none() {
                // Past the stride: cannot happen (the stride is the longest template).
                return false;
            }
            if let Some(ttl) = p.ttl {
                self.batch.set_ttl(i, ttl);
            }
            // A tracked probe's kernel send stamp comes back under its number's low 32 bits
            // (the table is smaller than 2^32 slots, so they name its slot and lap).
            if let Sent::Tracked(n) = p.sent {
                self.batch.set_tag(i, n as u32);
            }
            self.sent[i] = p.sent;
        }
        if let Sent::Tracked(n) = p.sent {
            let info = ProbeInfo {
                n,
                target: p.dst,
                cookie: p.stamp.cookie,
                t_send_ns: p.stamp.t_send_ns,
                attempt: p.attempt,
                class: p.class,
            };
            // `n` is the next probe and wait_for_slot() saw a free slot: the claim succeeds.
            let claimed = self.table.claim(&info);
            debug_assert!(claimed);
            self.n += 1;
        }
        if built.is_none() {
            // The source's bug, not the network's: said as a failed send of this target.
            refused(p.sent, EINVAL, p.stamp.t_send_ns, self.table, source);
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Nothing to send now: the run ends when the source is exhausted and (with retries)
    /// nothing is left in flight, else sleeps a little. `true` to end.
    ///
    /// Between rounds, between a sweep's evenly spread probes, or waiting for retries: a
    /// sleep, not pause()'s spin. The soak (bench/soak.sh) showed the spin's cost: a sweep
    /// of 10,000 targets/s spent 200 µs of every 500 µs yielding in a loop, ~38 % of a core
    /// on an idle machine, for probe times that need no µs precision (each probe is stamped
    /// when it is sent). The next batch takes what came due.
    fn idle<S: Source + ?Sized>(&mut self, source: &mut S) -> bool {
        emit(source, &mut self.events, self.links.events);
        if self.exhausted && (!self.cfg.retries || drained(self.table, self.links.retries)) {
            return true;
        }
        let t = Instant::now();
        source.wait(IDLE);
        self.idle += t.elapsed();
        false
    }
}

/// `EINVAL`: a probe that could not be built.
const EINVAL: i32 = 22;

fn stopped(shared: &SenderShared) -> bool {
    shared.stop.load(Ordering::Relaxed) || shared.abort.load(Ordering::Relaxed)
}

/// Hands the source's events to the run (batches of up to 1,024, allocated once each).
fn emit<S: Source + ?Sized>(
    source: &mut S,
    events: &mut Vec<Event>,
    out: Option<&Sender<Vec<Event>>>,
) {
    source.drain(events);
    if events.is_empty() {
        return;
    }
    match out {
        Some(tx) => {
            let full = std::mem::replace(events, Vec::with_capacity(1024));
            // The run's consumer is gone only when the run is over.
            let _ = tx.send(full);
        }
        None => events.clear(),
    }
}

/// How long the TX loop sleeps when nothing is due.
const IDLE: Duration = Duration::from_micros(500);

/// Whether nothing is in flight and no retry is queued (the receiver queues retries before it
/// retires the timed-out probe, so an empty table means every retry is already queued).
fn drained(table: &InflightTable, retries: Option<&Receiver<Retry>>) -> bool {
    table.in_flight() == 0 && retries.is_none_or(|q| q.is_empty())
}

/// Reports the probe in batch slot `i` as not sent.
fn refused<S: Source + ?Sized>(
    what: Sent,
    errno: i32,
    t_send: u64,
    table: &InflightTable,
    source: &mut S,
) {
    match what {
        Sent::Tracked(n) => {
            table.send_failed(n, errno);
        }
        Sent::Scan(p) => source.failed(&p, errno, t_send),
    }
}

/// Hands the batch to the engine, retrying when its queues are full, reporting refused
/// probes as failed sends.
fn flush<S: Source + ?Sized>(
    tx: &mut dyn Tx,
    batch: &TxBatch,
    sent: &[Sent],
    t_send: u64,
    table: &InflightTable,
    source: &mut S,
    shared: &SenderShared,
) -> Result<(), EngineError> {
    let mut from = 0;
    while from < batch.len() {
        match tx.send(batch, from) {
            Ok(0) | Err(SendError::Busy { sent: 0 }) => {
                shared.busy.fetch_add(1, Ordering::Relaxed);
                pause(Duration::from_micros(50));
            }
            Ok(k) | Err(SendError::Busy { sent: k }) => {
                shared.sent.fetch_add(k as u64, Ordering::Relaxed);
                from += k;
            }
            Err(SendError::Packet { sent: k, error }) => {
                shared.sent.fetch_add(k as u64, Ordering::Relaxed);
                from += k;
                let errno = error.raw_os_error().unwrap_or(0);
                refused(sent[from], errno, t_send, table, source);
                shared.failed.fetch_add(1, Ordering::Relaxed);
                from += 1;
            }
            Err(SendError::Fatal(e)) => {
                for &what in &sent[from..batch.len()] {
                    refused(what, 0, t_send, table, source);
                }
                return Err(e);
            }
        }
        if stopped(shared) && from < batch.len() {
            // Stopping: what was claimed but not sent is reported as not sent.
            for &what in &sent[from..batch.len()] {
                refused(what, libc_ecanceled(), t_send, table, source);
            }
            return Ok(());
        }
    }
    Ok(())
}

const fn libc_ecanceled() -> i32 {
    125
}

/// Pins the calling thread to a core, if asked.
pub fn pin(core: Option<usize>) -> Result<(), String> {
    let Some(id) = core else { return Ok(()) };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if !cores.iter().any(|c| c.id == id) {
        return Err(format!(
            "core {id} does not exist (this machine has {} cores)",
            cores.len()
        ));
    }
    if core_affinity::set_for_current(core_affinity::CoreId { id }) {
        Ok(())
    } else {
        Err(format!("could not pin to core {id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_core::table::Retired;
    use asdic_engine::{TxCaps, TxLayer};
    use asdic_wire::Family;
    use asdic_wire::template::Layer;
    use core::net::IpAddr;

    /// A TX half that takes everything and keeps each packet, with its destination and the
    /// TTL its batch asks the socket for.
    #[derive(Default)]
    struct Capture(Vec<(Vec<u8>, IpAddr, u8)>);

    impl Tx for Capture {
        fn caps(&self) -> TxCaps {
            TxCaps {
                engine: "capture",
                layer: TxLayer::Icmp,
                max_packet: 9000,
                ttl_per_socket: true,
                kernel_stamps: false,
                serial_send: false,
            }
        }

        fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
            for i in from..batch.len() {
                let (bytes, dst) = batch.packet(i).expect("packet");
                self.0.push((bytes.to_vec(), dst, batch.ttl(i)));
            }
            Ok(batch.len() - from)
        }
    }

    impl Capture {
        fn len(&self) -> usize {
            self.0.len()
        }

        /// Per IPv4 frame: the batch's TTL, the header's TTL byte, whether its checksum
        /// verifies.
        fn ttls(&self) -> Vec<(u8, u8, bool)> {
            self.0
                .iter()
                .map(|(b, _, ttl)| {
                    (
                        *ttl,
                        b[14 + 8],
                        asdic_wire::checksum::checksum(&b[14..34]) == 0,
                    )
                })
                .collect()
        }

        /// Per IPv4 frame: its length, the header's total length, whether its checksum
        /// verifies.
        fn lengths(&self) -> Vec<(usize, usize, bool)> {
            self.0
                .iter()
                .map(|(b, _, _)| {
                    let total = usize::from(u16::from_be_bytes([b[16], b[17]]));
                    (
                        b.len(),
                        total,
                        asdic_wire::checksum::checksum(&b[14..34]) == 0,
                    )
                })
                .collect()
        }

        /// Per frame: its ethertype, its length, and the first byte of its destination (the
        /// frame's own, checked against the batch's).
        fn frames(&self) -> Vec<(u16, usize, u8)> {
            self.0
                .iter()
                .map(|(b, dst, _)| {
                    let ethertype = u16::from_be_bytes([b[12], b[13]]);
                    let first = match dst {
                        IpAddr::V4(a) => a.octets()[0],
                        IpAddr::V6(a) => a.octets()[0],
                    };
                    let at = if ethertype == 0x0800 {
                        14 + 16
                    } else {
                        14 + 24
                    };
                    assert_eq!(b[at], first, "the frame goes where the batch says");
                    (ethertype, b.len(), first)
                })
                .collect()
        }
    }

    /// Three probes: the run's TTL, TTL 5, and TTL 64 named explicitly.
    struct Three(u32);

    impl Source for Three {
        fn next(&mut self, _now: Instant) -> Next {
            let ttl = match self.0 {
                0 => 0,
                1 => 5,
                2 => 64,
                _ => return Next::Done,
            };
            self.0 += 1;
            Next::Probe {
                cookie: self.0,
                target: IpAddr::from([198, 19, 0, 1]),
                class: 0,
                ttl,
            }
        }
    }

    /// Probe `cookie` to the one target of these tests' sources, of class 0, at the run's TTL.
    fn probe_to_one(cookie: u32) -> Next {
        Next::Probe {
            cookie,
            target: IpAddr::from([198, 19, 0, 1]),
            class: 0,
            ttl: 0,
        }
    }

    /// Two probes 100 ms apart: nothing is due in between.
    struct Gap(u32, Option<Instant>);

    impl Source for Gap {
        fn next(&mut self, now: Instant) -> Next {
            let due = *self.1.get_or_insert(now + Duration::from_millis(100));
            if self.0 == 1 && now < due {
                return Next::NotYet;
            }
            if self.0 == 2 {
                return Next::Done;
            }
            self.0 += 1;
            probe_to_one(self.0)
        }
    }

    #[test]
    fn time_with_nothing_due_is_not_sending_time() {
        let template = Template::new(Family::V4, Layer::Icmp, 32).unwrap();
        let (table, shared) = (InflightTable::new(1024), SenderShared::default());
        let t0 = Instant::now();
        let mut tx = Capture::default();
        let t = std::slice::from_ref(&template);
        let cfg = test_config(1);
        run(
            &mut tx,
            t,
            &table,
            &mut Gap(0, None),
            &cfg,
            &shared,
            Links::default(),
        )
        .unwrap();
        assert_eq!(tx.len(), 2);
        assert!(t0.elapsed() >= Duration::from_millis(100));
        let us = shared.send_us.load(Ordering::Relaxed);
        // The gap is idle; what remains is two sends and at most an idle sleep's slack.
        assert!(us < 20_000, "{us} µs of sending");
    }

    /// The sender's settings in these tests: 1 M probes/s, `batch` probes per call.
    fn test_config(batch: usize) -> SenderConfig {
        SenderConfig {
            rate: 1e6,
            batch,
            per_call: false,
            ttl: 64,
            numbering: Numbering::Spread {
                base: 1,
                key: 0x5eed_0001,
            },
            session: 7,
            key: Key::new(1, 2),
            retries: false,
            flow: None,
        }
    }

    #[test]
    fn a_receiver_behind_holds_the_sender_back_but_never_stops_it() {
        let template = Template::new(Family::V4, Layer::Icmp, 32).unwrap();
        let cfg = test_config(1);
        let mut tx = Capture::default();
        let shared = SenderShared::default();
        // A receiver stays behind for the whole run: each of the three batches waits the
        // longest hold, then goes out.
        let behind = AtomicU32::new(1);
        let send_three = |tx: &mut Capture, shared: &SenderShared| {
            let table = InflightTable::new(1024);
            let t = std::slice::from_ref(&template);
            run(
                tx,
                t,
                &table,
                &mut Three(0),
                &cfg,
                shared,
                Links {
                    behind: Some(&behind),
                    ..Links::default()
                },
            )
            .unwrap();
        };
        let t0 = Instant::now();
        send_three(&mut tx, &shared);
        assert_eq!(tx.len(), 3, "every probe sent");
        assert!(shared.held.load(Ordering::Relaxed) >= 3);
        assert!(t0.elapsed() >= 3 * HOLD_MAX, "{:?}", t0.elapsed());
        // Caught up: no waiting.
        behind.store(0, Ordering::Relaxed);
        let (mut tx, shared) = (Capture::default(), SenderShared::default());
        send_three(&mut tx, &shared);
        assert_eq!(tx.len(), 3);
        assert_eq!(shared.held.load(Ordering::Relaxed), 0);
    }

    /// Sends [`Three`]'s probes from `template` through `tx` over a fresh table.
    fn send_three(
        tx: &mut dyn Tx,
        template: &Template,
        cfg: &SenderConfig,
        shared: &SenderShared,
        links: Links<'_>,
    ) {
        let table = InflightTable::new(1024);
        let t = std::slice::from_ref(template);
        run(tx, t, &table, &mut Three(0), cfg, shared, links).unwrap();
    }

    /// A TX half whose engine reports a receive ring over a quarter full until `until`.
    struct RingFull {
        sent: usize,
        until: Instant,
    }

    impl Tx for RingFull {
        fn caps(&self) -> TxCaps {
            Capture::default().caps()
        }

        fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
            assert!(
                Instant::now() >= self.until,
                "sent while the engine's ring was full"
            );
            self.sent += batch.len() - from;
            Ok(batch.len() - from)
        }

        fn receivers_behind(&self) -> bool {
            Instant::now() < self.until
        }
    }

    #[test]
    fn a_ring_the_engine_sees_filling_holds_the_sender_though_no_receiver_said_so() {
        let template = Template::new(Family::V4, Layer::Icmp, 32).unwrap();
        let cfg = test_config(1);
        let shared = SenderShared::default();
        let behind = AtomicU32::new(0);
        let mut tx = RingFull {
            sent: 0,
            until: Instant::now() + Duration::from_millis(5),
        };
        let links = Links {
            behind: Some(&behind),
            ..Links::default()
        };
        send_three(&mut tx, &template, &cfg, &shared, links);
        assert_eq!(tx.sent, 3, "every probe sent once the ring drained");
        assert!(shared.held.load(Ordering::Relaxed) >= 1);
        // Without the receivers' link (a run that does not hold), the engine is not asked.
        let shared = SenderShared::default();
        send_three(
            &mut Capture::default(),
            &template,
            &cfg,
            &shared,
            Links::default(),
        );
        assert_eq!(shared.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn each_probe_carries_its_own_ttl() {
        let layer = Layer::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: IpAddr::from([198, 18, 0, 1]),
        };
        let template = Template::new(Family::V4, layer, 32).unwrap();
        let cfg = test_config(8);
        let mut tx = Capture::default();
        let shared = SenderShared::default();
        send_three(&mut tx, &template, &cfg, &shared, Links::default());
        // Socket engines: 0 = the socket's TTL; frames: the TTL itself, with a header
        // checksum that covers it.
        assert_eq!(tx.ttls(), vec![(0, 64, true), (5, 5, true), (64, 64, true)]);
        assert_eq!(shared.sent.load(Ordering::Relaxed), 3);
    }

    const V4: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(198, 19, 0, 1));
    const V6: IpAddr = IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));

    /// Probes of the listed (target, class) pairs, in order, then done.
    struct Listed(Vec<(IpAddr, u8)>, usize);

    impl Listed {
        fn new(probes: impl IntoIterator<Item = (IpAddr, u8)>) -> Self {
            Listed(probes.into_iter().collect(), 0)
        }
    }

    impl Source for Listed {
        fn next(&mut self, _now: Instant) -> Next {
            let Some(&(target, class)) = self.0.get(self.1) else {
                return Next::Done;
            };
            self.1 += 1;
            Next::Probe {
                cookie: self.1 as u32,
                target,
                class,
                ttl: 0,
            }
        }
    }

    #[test]
    fn a_pipeline_of_both_families_frames_each_probe_from_its_familys_templates() {
        let v4 = Layer::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: IpAddr::from([198, 18, 0, 1]),
        };
        let v6 = Layer::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 3],
            src_ip: IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1]),
        };
        // Each family's class k is its k-th template, whatever the order between families.
        let templates = vec![
            Template::new(Family::V6, v6, 32).unwrap(),
            Template::new(Family::V4, v4, 32).unwrap(),
            Template::new(Family::V4, v4, 100).unwrap(),
            Template::new(Family::V6, v6, 100).unwrap(),
        ];
        let table = InflightTable::new(1024);
        let cfg = SenderConfig {
            batch: 3,
            per_call: false,
            ..test_config(3)
        };
        let mut tx = Capture::default();
        run(
            &mut tx,
            &templates,
            &table,
            &mut Listed::new(
                [
                    (false, 0),
                    (true, 0),
                    (false, 1),
                    (true, 1),
                    (true, 1),
                    (false, 1),
                    (true, 0),
                    (false, 0),
                ]
                .map(|(v6, class)| (if v6 { V6 } else { V4 }, class)),
            ),
            &cfg,
            &SenderShared::default(),
            Links::default(),
        )
        .unwrap();
        let v4f = |p: usize| (0x0800, 14 + 20 + 8 + p, 198);
        let v6f = |p: usize| (0x86dd, 14 + 40 + 8 + p, 0x20);
        assert_eq!(
            tx.frames(),
            [
                v4f(32),
                v6f(32),
                v4f(100),
                v6f(100),
                v6f(100),
                v4f(100),
                v6f(32),
                v4f(32)
            ]
        );
    }

    #[test]
    fn each_probe_goes_out_from_its_classes_template() {
        let layer = Layer::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: IpAddr::from([198, 18, 0, 1]),
        };
        let templates: Vec<Template> = [32, 1000, 100]
            .iter()
            .map(|&n| Template::new(Family::V4, layer, n).unwrap())
            .collect();
        let table = InflightTable::new(1024);
        let cfg = SenderConfig {
            rate: 1e6,
            // Batches of 2: slots are reused with other classes.
            batch: 2,
            per_call: false,
            ttl: 64,
            numbering: Numbering::Spread {
                base: 1,
                key: 0x5eed_0001,
            },
            session: 7,
            key: Key::new(1, 2),
            retries: false,
            flow: None,
        };
        let mut tx = Capture::default();
        let shared = SenderShared::default();
        run(
            &mut tx,
            &templates,
            &table,
            // Classes 0, 1, 1, 0, 2, 0: a slot's template changes between batches.
            &mut Listed::new([0, 1, 1, 0, 2, 0].map(|c| (V4, c))),
            &cfg,
            &shared,
            Links::default(),
        )
        .unwrap();
        let frame = |payload: usize| (14 + 20 + 8 + payload, 20 + 8 + payload, true);
        assert_eq!(
            tx.lengths(),
            [32, 1000, 1000, 32, 100, 32].map(frame).to_vec(),
            "every frame has its class's length and a valid header"
        );
        for n in 0..6 {
            let want = [0u8, 1, 1, 0, 2, 0][n as usize];
            assert_eq!(
                table.info(n).unwrap().class,
                want,
                "the table keeps the class"
            );
        }
    }

    #[test]
    fn a_probe_that_cannot_be_built_is_a_failed_send_never_a_silent_drop() {
        let layer = Layer::Ethernet {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: IpAddr::from([198, 18, 0, 1]),
        };
        let template = Template::new(Family::V4, layer, 32).unwrap();
        let table = InflightTable::new(1024);
        let (mut tx, shared) = (Capture::default(), SenderShared::default());
        run(
            &mut tx,
            std::slice::from_ref(&template),
            &table,
            // The second has a class without a template, the third is of a family without one.
            &mut Listed::new([
                (IpAddr::from([198, 19, 0, 1]), 0),
                (IpAddr::from([198, 19, 0, 2]), 7),
                ("2001:db8:1::3".parse().unwrap(), 0),
                (IpAddr::from([198, 19, 0, 4]), 0),
            ]),
            &test_config(4),
            &shared,
            Links::default(),
        )
        .unwrap();
        // Two frames went out, whole (their headers verify) …
        assert_eq!(tx.len(), 2);
        assert!(
            tx.lengths().iter().all(|&(_, _, ok)| ok),
            "{:?}",
            tx.lengths()
        );
        // … and all four targets are in the table: the two that could not be built are
        // reported as failed sends (EINVAL), each with its target.
        assert_eq!(shared.failed.load(Ordering::Relaxed), 2);
        let mut retired = vec![];
        table.reap(u64::MAX, |p, r| retired.push((p.target, r)));
        let failed: Vec<_> = retired
            .iter()
            .filter(|(_, r)| matches!(r, Retired::SendFailed(EINVAL)))
            .map(|(t, _)| t.to_string())
            .collect();
        assert_eq!(failed, ["198.19.0.2", "2001:db8:1::3"]);
        assert_eq!(retired.len(), 4);
    }

    /// A call at `at` finding `due` probes due: it takes `takes` (`what` says why), and the
    /// source gives `gives`.
    fn step(c: &mut CallSize, due: usize, at: Instant, takes: usize, gives: usize, what: &str) {
        assert_eq!(c.take(due, 64, at), takes, "{what}");
        c.filled(gives, takes);
    }

    /// One probe per call at whole batches due, 200 calls 10 µs apart (100,000/s) from
    /// `from` ms (`ms` makes the instant), each filled.
    fn behind_one_per_call(c: &mut CallSize, ms: &dyn Fn(f64) -> Instant, from: f64) {
        for i in 0..200 {
            let t = from + 0.01 * f64::from(i);
            step(c, 64, ms(t), 1, 1, &format!("at {t} ms"));
        }
    }

    /// Grown calls of 64 every `every` ms from `from` ms while before `until` ms, each filled.
    fn grown_calls(
        c: &mut CallSize,
        ms: &dyn Fn(f64) -> Instant,
        from: f64,
        every: f64,
        until: f64,
    ) {
        let mut t = from;
        while t < until {
            step(c, 64, ms(t), 64, 64, &format!("at {t} ms"));
            t += every;
        }
    }

    #[test]
    fn grown_calls_are_tried_when_one_per_call_falls_behind_and_kept_only_if_clearly_faster() {
        let t0 = Instant::now();
        let ms = |x: f64| t0 + Duration::from_secs_f64(x / 1e3);
        let mut c = CallSize::default();
        assert_eq!(c.take(0, 64, t0), 0, "nothing due, nothing sent");
        assert_eq!(c.take(5, 64, t0), 1, "on the rate: one per call");
        c.filled(1, 1);
        // Behind, then one call that found less than a batch: the window starts again.
        for i in 0..190 {
            step(&mut c, 64, ms(0.01 * f64::from(i)), 1, 1, "behind");
        }
        step(&mut c, 63, ms(1.95), 1, 1, "");
        // A source that had nothing while behind: the window starts again too.
        for i in 0..190 {
            step(&mut c, 64, ms(2.0 + 0.01 * f64::from(i)), 1, 1, "behind");
        }
        step(&mut c, 64, ms(3.95), 1, 0, "");
        // Behind for GROW_AFTER at 100,000/s one per call: grown calls on trial ...
        behind_one_per_call(&mut c, &ms, 4.0);
        // ... sending 256,000/s over the TRIAL (2.56×): kept.
        grown_calls(&mut c, &ms, 6.0, 0.25, 10.0);
        step(&mut c, 64, ms(10.0), 64, 64, "kept");
        step(&mut c, 40, ms(10.1), 40, 40, "");
        // A call the source could not fill: caught up, one per call.
        step(&mut c, 64, ms(10.2), 64, 10, "");
        step(&mut c, 30, ms(10.3), 1, 1, "");
        // Behind again within HELD of the verdict: grown at once; then caught up.
        step(&mut c, 64, ms(500.0), 64, 64, "the trial paid");
        step(&mut c, 1, ms(500.1), 1, 1, "");
        // The verdict is old: behind again, a new trial, sending 112,000/s (1.12×): given
        // up ...
        behind_one_per_call(&mut c, &ms, 1020.0);
        grown_calls(&mut c, &ms, 1022.0, 64.0 / 110.0, 1026.0);
        step(&mut c, 64, ms(1026.0), 1, 1, "not worth it");
        // ... one per call while behind, and after catching up and falling behind again,
        // for HELD ...
        step(&mut c, 64, ms(1500.0), 1, 1, "");
        step(&mut c, 3, ms(1501.0), 1, 1, "");
        for i in 0..500 {
            step(&mut c, 64, ms(1502.0 + f64::from(i)), 1, 1, "held");
        }
        // ... then a new window and a new trial.
        behind_one_per_call(&mut c, &ms, 2026.0);
        step(&mut c, 64, ms(2028.0), 64, 64, "tried again");
        // A call that finds no more than one due while on trial: caught up.
        step(&mut c, 1, ms(2028.1), 1, 1, "");
        assert_eq!(c.take(64, 64, ms(2028.2)), 1, "a new window");
    }

    /// A TX half that takes everything at once, each call costing 2 µs of its own (a system
    /// call's worth), and remembers each call's size and time.
    #[derive(Default)]
    struct CallSizes(Vec<usize>, Vec<Instant>);

    impl Tx for CallSizes {
        fn caps(&self) -> TxCaps {
            Capture::default().caps()
        }

        fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(2) {
                std::hint::spin_loop();
            }
            self.0.push(batch.len() - from);
            self.1.push(t);
            Ok(batch.len() - from)
        }
    }

    /// `n` probes to one target.
    struct Many(u32, u32);

    impl Source for Many {
        fn next(&mut self, _now: Instant) -> Next {
            if self.0 == self.1 {
                return Next::Done;
            }
            self.0 += 1;
            probe_to_one(self.0)
        }
    }

    /// Bursts of 8 probes to one target, 40 of them, each after the source had nothing for
    /// 100 µs (a round's probes coming due together).
    struct Bursts(u32, Option<Instant>);

    impl Source for Bursts {
        fn next(&mut self, now: Instant) -> Next {
            if self.0 == 320 {
                return Next::Done;
            }
            if self.0.is_multiple_of(8) {
                let due = *self.1.get_or_insert(now + Duration::from_micros(100));
                if now < due {
                    return Next::NotYet;
                }
                self.1 = None;
            }
            self.0 += 1;
            probe_to_one(self.0)
        }
    }

    #[test]
    fn a_source_that_pauses_is_not_a_sender_behind_the_rate() {
        // Far beyond what calls of one send, the pacer always full, for longer than
        // GROW_AFTER; but the source pauses between its bursts: one per call throughout,
        // unless a burst itself was held up for most of GROW_AFTER (this test's thread
        // preempted: that sender was behind).
        let (sizes, times, grouped) = per_call_run(1e12, &mut Bursts(0, None));
        let span = *times.last().unwrap() - times[0];
        assert!(span > 4 * GROW_AFTER, "{span:?}");
        // Each burst's first call: where the probes sent so far reach a multiple of 8.
        let (mut sent, mut burst) = (0usize, 0);
        for i in 0..sizes.len() {
            if sent.is_multiple_of(8) {
                burst = i;
            }
            sent += sizes[i];
            let into = times[i] - times[burst];
            assert!(
                sizes[i] == 1 || into >= GROW_AFTER / 2,
                "a call of {} {into:?} into its burst",
                sizes[i]
            );
        }
        let in_several: usize = sizes.iter().filter(|&&k| k > 1).sum();
        assert_eq!(grouped, in_several as u64);
    }

    /// Sends `source`'s probes at `rate` in calls of at most 64, one per call asked; the
    /// calls' sizes and times, and the probes counted as sent in calls of several.
    fn per_call_run(rate: f64, source: &mut dyn Source) -> (Vec<usize>, Vec<Instant>, u64) {
        let template = Template::new(Family::V4, Layer::Icmp, 32).unwrap();
        let cfg = SenderConfig {
            rate,
            per_call: true,
            ..test_config(64)
        };
        let (mut tx, shared) = (CallSizes::default(), SenderShared::default());
        let table = InflightTable::new(1 << 18);
        let t = std::slice::from_ref(&template);
        run(&mut tx, t, &table, source, &cfg, &shared, Links::default()).unwrap();
        (tx.0, tx.1, shared.grouped.load(Ordering::Relaxed))
    }

    #[test]
    fn a_sender_asked_for_one_probe_per_call_groups_them_only_when_behind_and_counts_them() {
        // On the rate (20,000/s, an engine that takes every call at once): one per call.
        let (sizes, _, grouped) = per_call_run(20_000.0, &mut Many(0, 100));
        assert_eq!(sizes, vec![1; 100]);
        assert_eq!(grouped, 0);
        // Far beyond what calls of one can send: one per call for GROW_AFTER, then calls
        // of what is due (tried, and many times faster, kept), every probe in them counted.
        let t0 = Instant::now();
        let (sizes, times, grouped) = per_call_run(1e12, &mut Many(0, 200_000));
        assert_eq!(sizes.iter().sum::<usize>(), 200_000);
        assert_eq!(sizes[0], 1);
        let ones = sizes.iter().take_while(|&&k| k == 1).count();
        assert!(ones >= 2, "{ones} calls of one before growing");
        assert!(sizes.contains(&64), "{:?}", &sizes[..ones + 3]);
        let in_several: usize = sizes.iter().filter(|&&k| k > 1).sum();
        assert_eq!(grouped, in_several as u64);
        // The calls of one went on for GROW_AFTER (the window opens after the run starts
        // and the first grown call's send follows its end; the first call's own send can
        // come later than the window's opening, so it is not the mark).
        let first_grown = times[ones] - t0;
        assert!(first_grown >= GROW_AFTER, "grew after {first_grown:?}");
    }
}
