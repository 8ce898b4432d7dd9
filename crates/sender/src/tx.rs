//! The TX loop: targets from a [`Source`], paced by the token bucket, stamped from the
//! template into a batch, claimed in the in-flight table, handed to the engine in batches.
//! Retries requested by the receiver go out before new work.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asdic_core::event::Event;
use asdic_core::retry::Retry;
use asdic_core::stateless::ScanProbe;
use asdic_core::table::{InflightTable, ProbeInfo};
use asdic_engine::{EngineError, SendError, Tx, TxBatch, now_ns};
use asdic_wire::payload::{Key, Numbering, Stamp};
use asdic_wire::template::{ProbeFields, Template, flow_sum};
use crossbeam_channel::{Receiver, Sender};

use crate::rate::{TokenBucket, pause};
use asdic_core::source::{Next, Source};

/// What to send.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Probes per second, all targets together.
    pub rate: f64,
    /// Probes per engine call.
    pub batch: usize,
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
    /// Set when the source is exhausted (every target has had its first probe).
    pub exhausted: AtomicBool,
    /// Times the sender waited because a receiver was behind.
    pub held: AtomicU64,
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

/// Sends every probe of the run, each from the template of its class (`templates[class]`:
/// one per packet size; at least one). Returns when done, stopped, or on a fatal engine
/// error. A source that keeps going after a stop ([`Source::stop`]) is asked on, without
/// sending, until it is done.
pub fn run<S: Source + ?Sized>(
    tx: &mut dyn Tx,
    templates: &[Template],
    table: &InflightTable,
    source: &mut S,
    cfg: &SenderConfig,
    shared: &SenderShared,
    links: Links<'_>,
) -> Result<(), EngineError> {
    let stride = templates.iter().map(Template::len).max().unwrap_or(0);
    let mut batch = TxBatch::new(cfg.batch.max(1), stride);
    // Which template each slot holds: slots are prepared once, and again only when a probe
    // of another class lands in them.
    let mut slot_class = vec![0u8; batch.capacity()];
    if let Some(first) = templates.first() {
        for i in 0..batch.capacity() {
            if let Some(slot) = batch.slot_mut(i) {
                // The stride is the longest template's length, so preparing cannot fail.
                let _ = first.prepare(slot);
            }
        }
    }
    let mut sent = vec![Sent::Tracked(0); batch.capacity()];
    let mut events: Vec<Event> = Vec::new();
    let start = Instant::now();
    let mut bucket = TokenBucket::new(cfg.rate, cfg.batch.max(1), start);
    // Time spent with nothing due (see SenderShared::send_us).
    let mut idle = Duration::ZERO;
    let mut n = table.claimed();
    let mut exhausted = false;
    // Stopping: 0 not yet, 1 stopped (the source cools down), 2 aborted too.
    let mut told = 0u8;
    let retries = links.retries;
    loop {
        let wanted = if shared.abort.load(Ordering::Relaxed) {
            2
        } else {
            u8::from(shared.stop.load(Ordering::Relaxed))
        };
        if wanted > told {
            told = wanted;
            if !source.stop(Instant::now(), wanted == 2) {
                break;
            }
        }
        if told > 0 {
            // Stopped: no more sending; the source cools down and reports, then is done.
            let done = matches!(source.next(Instant::now()), Next::Done);
            emit(source, &mut events, links.events);
            if done {
                break;
            }
            std::thread::sleep(IDLE);
            continue;
        }
        // Receivers first: while one of them is behind (its backlog over a quarter of what
        // its engine holds), give them the CPU instead of sending more replies their way.
        // The engine may see a receive ring filling before its receiver (not running) can say.
        let behind = |tx: &dyn Tx| {
            links
                .behind
                .is_some_and(|b| b.load(Ordering::Relaxed) > 0 || tx.receivers_behind())
        };
        if behind(tx) {
            shared.held.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            while behind(tx) && t0.elapsed() < HOLD_MAX && !stopped(shared) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        // Pace: wait for at least one token.
        let allowed = loop {
            let k = bucket.available(batch.capacity(), Instant::now());
            if k > 0 {
                break Some(k);
            }
            pause(bucket.wait().min(Duration::from_millis(50)));
            if stopped(shared) {
                break None;
            }
        };
        let Some(allowed) = allowed else { continue };
        batch.clear();
        let t_send = now_ns();
        let now = Instant::now();
        while batch.len() < allowed {
            if !table.can_claim(n) {
                // The ring is full: send what we have, or wait for the reaper to free a slot.
                shared.table_full.fetch_add(1, Ordering::Relaxed);
                if !batch.is_empty() {
                    break;
                }
                while !table.can_claim(n) && !stopped(shared) {
                    pause(Duration::from_micros(100));
                }
                if stopped(shared) {
                    break;
                }
            }
            // Retries first, then the source's next target.
            // A retry goes out at its first try's size, with the run's TTL (sources that set
            // their own take none).
            let next = if let Some(r) = retries.and_then(|q| q.try_recv().ok()) {
                (
                    Next::Probe {
                        cookie: r.cookie,
                        target: r.target,
                        class: r.class,
                        ttl: 0,
                    },
                    r.attempt,
                )
            } else if exhausted {
                break;
            } else {
                (source.next(now), 0)
            };
            let (dst, class, ttl, attempt, ident, seq, stamp, record) = match next {
                (
                    Next::Probe {
                        cookie,
                        target,
                        class,
                        ttl,
                    },
                    attempt,
                ) => {
                    let (ident, seq) = cfg.numbering.ident_seq(n);
                    let stamp = Stamp {
                        session: cfg.session,
                        n,
                        cookie,
                        t_send_ns: t_send,
                    };
                    (
                        target,
                        class,
                        ttl,
                        attempt,
                        ident,
                        seq,
                        stamp,
                        Sent::Tracked(n),
                    )
                }
                (Next::Scan(p), _) => {
                    let (ident, seq) = cfg.key.probe_ids(p.target, p.attempt);
                    let stamp = Stamp {
                        session: cfg.session,
                        n: p.position,
                        cookie: u32::from(p.attempt),
                        t_send_ns: t_send,
                    };
                    (p.target, 0, 0, p.attempt, ident, seq, stamp, Sent::Scan(p))
                }
                (Next::NotYet, _) => break,
                (Next::Done, _) => {
                    exhausted = true;
                    shared.exhausted.store(true, Ordering::Relaxed);
                    break;
                }
            };
            let mac = cfg.key.mac(dst, ident, seq, &stamp);
            let i = batch.len();
            let Some(template) = templates.get(usize::from(class)) else {
                // A class the run has no template for: the source's bug, not the network's.
                continue;
            };
            if slot_class[i] != class {
                if let Some(slot) = batch.slot_mut(i) {
                    let _ = template.prepare(slot);
                }
                slot_class[i] = class;
            }
            // Tracked probes in frames asdic builds carry a keyed IPv4 IP ID: the 16 more
            // bits an error quoting only 8 bytes brings back (scans' ids are a MAC already).
            let ip_ident = match record {
                Sent::Tracked(_) if template.writes_ip_ident() => cfg.key.ip_ident(dst, ident, seq),
                _ => 0,
            };
            let fields = ProbeFields {
                dst,
                ttl: if ttl == 0 { cfg.ttl } else { ttl },
                ident,
                seq,
                stamp,
                mac,
                ip_ident,
                flow: cfg.flow.map(|f| flow_sum(dst, f)),
            };
            // Patched in its slot before it joins the batch: a probe that cannot be built
            // (a source's target of another family) is never sent half-written.
            let Some(slot) = batch.slot_mut(i) else {
                break;
            };
            if template.patch(slot, &fields).is_err() {
                continue;
            }
            if batch.push(dst, template.len()).is_none() {
                break;
            }
            if ttl != 0 {
                batch.set_ttl(i, ttl);
            }
            sent[i] = record;
            if let Sent::Tracked(_) = record {
                let info = ProbeInfo {
                    n,
                    target: dst,
                    cookie: stamp.cookie,
                    t_send_ns: t_send,
                    attempt,
                    class,
                };
                // `n` is the next probe and `can_claim(n)` held, so the claim succeeds.
                let claimed = table.claim(&info);
                debug_assert!(claimed);
                n += 1;
            }
        }
        if batch.is_empty() {
            emit(source, &mut events, links.events);
            if exhausted && (!cfg.retries || drained(table, retries)) {
                break;
            }
            // Between rounds, between a sweep's evenly spread probes, or waiting for retries:
            // sleep, without pause()'s spin. The soak (bench/soak.sh) showed the spin's cost:
            // a sweep of 10,000 targets/s spent 200 µs of every 500 µs yielding in a loop,
            // ~38 % of a core on an idle machine, for probe times that need no µs precision
            // (each probe is stamped when it is sent). The next batch takes what came due.
            let t = Instant::now();
            std::thread::sleep(IDLE);
            idle += t.elapsed();
            continue;
        }
        bucket.consume(batch.len());
        let r = flush(tx, &batch, &sent, t_send, table, source, shared);
        emit(source, &mut events, links.events);
        r?;
        let busy = start.elapsed().saturating_sub(idle);
        shared
            .send_us
            .store(busy.as_micros() as u64, Ordering::Relaxed);
    }
    emit(source, &mut events, links.events);
    Ok(())
}

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
    use asdic_engine::{TxCaps, TxLayer};
    use asdic_wire::Family;
    use asdic_wire::template::Layer;
    use core::net::IpAddr;

    /// A TX half that takes everything and records, per packet, the TTL the batch asks the
    /// socket for, the TTL byte of the frame's IPv4 header and whether that header's
    /// checksum verifies.
    struct Recorder(Vec<(u8, u8, bool)>);

    impl Tx for Recorder {
        fn caps(&self) -> TxCaps {
            TxCaps {
                engine: "recorder",
                layer: TxLayer::Icmp,
                max_packet: 9000,
                ttl_per_socket: true,
            }
        }

        fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
            for i in from..batch.len() {
                let (bytes, _) = batch.packet(i).expect("packet");
                let ip = &bytes[14..34];
                let ok = asdic_wire::checksum::checksum(ip) == 0;
                self.0.push((batch.ttl(i), ip[8], ok));
            }
            Ok(batch.len() - from)
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
            Next::Probe {
                cookie: self.0,
                target: IpAddr::from([198, 19, 0, 1]),
                class: 0,
                ttl: 0,
            }
        }
    }

    #[test]
    fn time_with_nothing_due_is_not_sending_time() {
        let template = Template::new(Family::V4, Layer::Icmp, 32).unwrap();
        let (table, shared) = (InflightTable::new(1024), SenderShared::default());
        let t0 = Instant::now();
        let mut tx = Recorder(vec![]);
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
        assert_eq!(tx.0.len(), 2);
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
        let mut tx = Recorder(vec![]);
        let shared = SenderShared::default();
        // A receiver stays behind for the whole run: each of the three batches waits the
        // longest hold, then goes out.
        let behind = AtomicU32::new(1);
        let send_three = |tx: &mut Recorder, shared: &SenderShared| {
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
        assert_eq!(tx.0.len(), 3, "every probe sent");
        assert!(shared.held.load(Ordering::Relaxed) >= 3);
        assert!(t0.elapsed() >= 3 * HOLD_MAX, "{:?}", t0.elapsed());
        // Caught up: no waiting.
        behind.store(0, Ordering::Relaxed);
        let (mut tx, shared) = (Recorder(vec![]), SenderShared::default());
        send_three(&mut tx, &shared);
        assert_eq!(tx.0.len(), 3);
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
            Recorder(vec![]).caps()
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
            &mut Recorder(vec![]),
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
        let mut tx = Recorder(vec![]);
        let shared = SenderShared::default();
        send_three(&mut tx, &template, &cfg, &shared, Links::default());
        // Socket engines: 0 = the socket's TTL; frames: the TTL itself, with a header
        // checksum that covers it.
        assert_eq!(tx.0, vec![(0, 64, true), (5, 5, true), (64, 64, true)]);
        assert_eq!(shared.sent.load(Ordering::Relaxed), 3);
    }

    /// A TX half that records each frame's length, its IPv4 total length and whether the
    /// IPv4 header checksum verifies.
    struct Lengths(Vec<(usize, usize, bool)>);

    impl Tx for Lengths {
        fn caps(&self) -> TxCaps {
            TxCaps {
                engine: "lengths",
                layer: TxLayer::Icmp,
                max_packet: 9000,
                ttl_per_socket: true,
            }
        }

        fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
            for i in from..batch.len() {
                let (bytes, _) = batch.packet(i).expect("packet");
                let ip = &bytes[14..34];
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                let ok = asdic_wire::checksum::checksum(ip) == 0;
                self.0.push((bytes.len(), total, ok));
            }
            Ok(batch.len() - from)
        }
    }

    /// Probes of classes 0, 1, 1, 0, 2, 0 (a slot's template changes between batches).
    struct Classes(usize);

    impl Source for Classes {
        fn next(&mut self, _now: Instant) -> Next {
            const ORDER: [u8; 6] = [0, 1, 1, 0, 2, 0];
            let Some(&class) = ORDER.get(self.0) else {
                return Next::Done;
            };
            self.0 += 1;
            Next::Probe {
                cookie: self.0 as u32,
                target: IpAddr::from([198, 19, 0, 1]),
                class,
                ttl: 0,
            }
        }
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
        let mut tx = Lengths(vec![]);
        let shared = SenderShared::default();
        run(
            &mut tx,
            &templates,
            &table,
            &mut Classes(0),
            &cfg,
            &shared,
            Links::default(),
        )
        .unwrap();
        let frame = |payload: usize| (14 + 20 + 8 + payload, 20 + 8 + payload, true);
        assert_eq!(
            tx.0,
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
}
