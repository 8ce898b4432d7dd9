//! Matching, without I/O: a received frame and its receive time go in, [`Event`]s come out.
//!
//! Two ways, one per kind of run:
//! - *tracked* (ping, sweep, trace): echo replies are validated by the payload MAC before the
//!   in-flight table is touched; ICMP errors by the quoted payload's MAC when the quote holds
//!   it, else by the quoted (identifier, sequence) naming a pending slot whose target is the
//!   quoted destination;
//! - *stateless* (scan, [`crate::stateless`]): echo replies by the payload MAC and the
//!   identifiers' MAC of (target, attempt), ICMP errors by the quoted payload or, when the
//!   quote is too short, by the quoted identifiers against the quoted destination; the first
//!   answer per target sets its bit in the responder set, a later one is a duplicate, one
//!   past the cooldown (or after the next pass began) is stale.

use std::sync::Arc;

use crate::frame::{RxFrame, RxLayer};
use asdic_wire::Family;
use asdic_wire::inbound::{self, EchoReply, IcmpError, Inbound};
use asdic_wire::payload::{self, Key, Numbering, Stamp, Verdict};

use crate::event::{Drops, Event, Outcome};
use crate::stateless::{ScanReceiver, ScanState};
use crate::table::{InflightTable, ProbeInfo, Resolution, Retired};

/// Matches replies and errors of one run to its probes.
#[derive(Debug)]
pub struct Matcher {
    key: Key,
    session: u32,
    how: How,
    drops: Drops,
    /// Whether the sender writes [`Key::ip_ident`] into its IPv4 probes (frames it builds).
    keyed_ip_ident: bool,
    /// How long a tracked probe may wait for its answer: a reply whose RTT exceeds it is
    /// late, however soon the reaper would have noticed.
    timeout_ns: u64,
    /// Whether the engine hands back the kernel's send stamps: a tracked answer whose
    /// probe has none is timed from the sender's stamp and counted.
    kernel_stamps: bool,
}

/// Where a probe's state lives.
#[derive(Debug)]
enum How {
    /// In the in-flight table; (id, seq) follow the numbering.
    Tracked {
        table: Arc<InflightTable>,
        numbering: Numbering,
    },
    /// Nowhere but the responder set: one scan per family (a pipeline of both families
    /// scans each family's space).
    Stateless(Vec<ScanReceiver>),
}

impl Matcher {
    /// A matcher for the run with this table, MAC key, session id and numbering.
    pub fn new(table: Arc<InflightTable>, key: Key, session: u32, numbering: Numbering) -> Self {
        Matcher {
            key,
            session,
            how: How::Tracked { table, numbering },
            drops: Drops::default(),
            keyed_ip_ident: false,
            timeout_ns: u64::MAX,
            kernel_stamps: false,
        }
    }

    /// For a sender that writes [`Key::ip_ident`] into its IPv4 probes (the XDP engine builds
    /// whole frames): an ICMPv4 error quoting only 8 bytes must also quote that IP ID, which
    /// adds 16 keyed bits to the quoted (id, seq) — 48 with the default numbering, 32 with a
    /// fixed identifier, which is then enough to take the error as the probe's answer.
    pub fn with_keyed_ip_ident(mut self, keyed: bool) -> Self {
        self.keyed_ip_ident = keyed;
        self
    }

    /// A probe's timeout, enforced by its RTT too: a reply measured over it is
    /// [`Outcome::Late`], never a reply, even while its slot still waits for the reaper
    /// (which then retires it as timed out, as for a reply that came after it). Without it
    /// only the reaper's clock decides.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self
    }

    /// For an engine that hands back the kernel's send stamps (`TxCaps::kernel_stamps`):
    /// tracked RTTs start from them, and an answer to a probe without one is counted
    /// ([`Drops::unstamped`]).
    pub fn with_kernel_stamps(mut self, on: bool) -> Self {
        self.kernel_stamps = on;
        self
    }

    /// A matcher for one receiver of a stateless scan.
    pub fn stateless(state: &Arc<ScanState>) -> Self {
        Matcher::stateless_of(std::slice::from_ref(state))
    }

    /// A stateless matcher for the scans of one run, one per family (the same key and
    /// session): an answer meets the scan of its target's family.
    ///
    /// # Panics
    /// If `states` is empty.
    pub fn stateless_of(states: &[Arc<ScanState>]) -> Self {
        let first = &states[0];
        Matcher {
            key: first.key,
            session: first.session,
            how: How::Stateless(states.iter().map(|s| s.receiver()).collect()),
            drops: Drops::default(),
            keyed_ip_ident: false,
            timeout_ns: u64::MAX,
            kernel_stamps: false,
        }
    }

    /// The receiver saw the realtime clock step `steps` times, and read `across` answers
    /// whose kernel stamps may lie on either side of a step (counted in [`Drops`]).
    pub fn clock_stepped(&mut self, steps: u64, across: u64) {
        self.drops.clock_steps += steps;
        self.drops.across_step += across;
    }

    /// What was dropped so far.
    pub fn drops(&self) -> Drops {
        self.drops
    }

    /// The in-flight table (none for a stateless scan).
    pub fn table(&self) -> Option<&Arc<InflightTable>> {
        match &self.how {
            How::Tracked { table, .. } => Some(table),
            How::Stateless(_) => None,
        }
    }

    /// Probes claimed and not yet retired (always 0 for a stateless scan: its sender ends
    /// only once the last answers are in).
    pub fn in_flight(&self) -> u64 {
        self.table().map_or(0, |t| t.in_flight())
    }

    /// A batch of frames begins (a stateless matcher reads the bound on attempts once).
    pub fn begin_batch(&mut self) {
        if let How::Stateless(rs) = &mut self.how {
            rs.iter_mut().for_each(ScanReceiver::begin);
        }
    }

    /// The batch is matched (a stateless matcher tells the scan's source).
    pub fn end_batch(&mut self) {
        if let How::Stateless(rs) = &self.how {
            rs.iter().for_each(ScanReceiver::end);
        }
    }

    /// Handles one frame from an engine.
    pub fn on_frame(&mut self, f: &RxFrame<'_>, out: &mut impl FnMut(Event)) {
        if let RxLayer::TxStamp { tag } = f.layer {
            if let How::Tracked { table, .. } = &self.how {
                table.stamp_sent(tag, f.ts_ns);
            }
            return;
        }
        if f.truncated {
            self.drops.malformed += 1;
            return;
        }
        let parsed = match f.layer {
            RxLayer::Ipv4 => inbound::parse_ipv4(f.data),
            RxLayer::Icmpv6 { src, hop_limit } => inbound::parse_icmpv6(f.data, src, hop_limit),
            RxLayer::Ethernet => inbound::parse_ethernet(f.data),
            RxLayer::TxStamp { .. } => return,
        };
        match parsed {
            Ok(msg) => self.on_inbound(&msg, f.ts_ns, out),
            Err(_) => self.drops.malformed += 1,
        }
    }

    /// Handles one parsed message received at `ts_ns`.
    pub fn on_inbound(&mut self, msg: &Inbound<'_>, ts_ns: u64, out: &mut impl FnMut(Event)) {
        match msg {
            Inbound::EchoReply(r) => {
                let stamp = match payload::verify(
                    &self.key,
                    self.session,
                    r.from,
                    r.ident,
                    r.seq,
                    r.data,
                ) {
                    Verdict::Valid(s) => s,
                    Verdict::Foreign => return self.drops.foreign += 1,
                    Verdict::Forged => return self.drops.forged += 1,
                };
                let (table, numbering) = match &self.how {
                    How::Tracked { table, numbering } => (table, *numbering),
                    How::Stateless(_) => return self.scan_reply(r, &stamp, ts_ns, out),
                };
                if numbering.ident_seq(stamp.n) != (r.ident, r.seq) {
                    return self.drops.forged += 1;
                }
                let sent_ns = match table.wire_sent(stamp.n) {
                    Some(t) => t,
                    None => {
                        self.drops.unstamped += u64::from(self.kernel_stamps);
                        stamp.t_send_ns
                    }
                };
                let rtt_ns = ts_ns.saturating_sub(sent_ns);
                // Past its timeout: late, and its slot left for the reaper to time out.
                let resolution = if rtt_ns > self.timeout_ns {
                    table.late(stamp.n)
                } else {
                    table.resolve(stamp.n, false)
                };
                let outcome = match resolution {
                    Resolution::First => Outcome::Reply {
                        rtt_ns,
                        ttl: r.ttl,
                        from: r.from,
                    },
                    Resolution::Duplicate => Outcome::Duplicate { rtt_ns },
                    Resolution::Late => Outcome::Late { rtt_ns },
                    Resolution::Stale => return self.drops.stale += 1,
                    Resolution::Unknown => return self.drops.forged += 1,
                };
                // The receiver thread also reaps, so a slot just resolved still holds the probe.
                let attempt = table.info(stamp.n).map_or(0, |p| p.attempt);
                out(Event {
                    probe: Some(stamp.n),
                    cookie: stamp.cookie,
                    target: r.from,
                    sent_ns: Some(sent_ns),
                    attempt,
                    outcome,
                });
            }
            Inbound::Error(e) => self.on_error(e, ts_ns, out),
            Inbound::Other { .. } => self.drops.other += 1,
        }
    }

    fn on_error(&mut self, e: &IcmpError<'_>, ts_ns: u64, out: &mut impl FnMut(Event)) {
        let (table, numbering) = match &self.how {
            How::Tracked { table, numbering } => (table, *numbering),
            How::Stateless(_) => return self.scan_error(e, ts_ns, out),
        };
        let q = &e.probe;
        // Past its probe's timeout an error is not its answer (as a scan's past the cooldown):
        // stale, and the probe left for the reaper to time out.
        let timeout_ns = self.timeout_ns;
        let late = |t_send_ns: u64| ts_ns.saturating_sub(t_send_ns) > timeout_ns;
        let verdict = payload::verify(&self.key, self.session, q.dst, q.ident, q.seq, q.data);
        // The kernel's send stamp where it came back, else the quoted one.
        let wire = match verdict {
            Verdict::Valid(s) => table.wire_sent(s.n).unwrap_or_else(|| {
                self.drops.unstamped += u64::from(self.kernel_stamps);
                s.t_send_ns
            }),
            _ => 0,
        };
        let probe = match verdict {
            Verdict::Valid(_) if late(wire) => return self.drops.stale += 1,
            Verdict::Valid(s) => match table.resolve(s.n, true) {
                Resolution::First => Some(ProbeInfo {
                    n: s.n,
                    target: q.dst,
                    cookie: s.cookie,
                    t_send_ns: wire,
                    attempt: table.info(s.n).map_or(0, |p| p.attempt),
                    class: 0,
                }),
                _ => None,
            },
            Verdict::Forged => None,
            // Too short a quote to hold the payload: fall back to the slot the ids name, for
            // ICMP (RFC 792 asks for 8 bytes). ICMPv6 errors quote as much as fits in 1,280
            // bytes (RFC 4443), so a quote without the stamp is not a router's: not matched.
            Verdict::Foreign if q.data.len() < payload::LEN && e.family == Family::V4 => {
                let named = numbering.recover(q.ident, q.seq);
                let pending =
                    |(n_low, bits): (u64, u32)| table.pending_probe(n_low, bits, q.dst).is_some();
                // Where the sender keyed the IP ID (XDP frames), the quote carries 16 more
                // bits to check: 48 with the default numbering, 32 with a fixed identifier.
                let ip_ident_ok = match q.ip_ident {
                    Some(id) if self.keyed_ip_ident => {
                        Some(id == self.key.ip_ident(q.dst, q.ident, q.seq))
                    }
                    _ => None,
                };
                // Ids naming a probe in flight that cannot be taken as its answer: counted.
                let refused = match ip_ident_ok {
                    // With an IP ID that probe never carried.
                    Some(false) => Some(&mut self.drops.forged),
                    // 16 bits anyone can guess: said, never taken as the probe's answer.
                    None if !numbering.trusts_ids() => Some(&mut self.drops.unverified),
                    _ => None,
                };
                match refused {
                    Some(count) if named.is_some_and(pending) => {
                        *count += 1;
                        return;
                    }
                    Some(_) => None,
                    None => {
                        let (n_low, bits) = match named {
                            Some(named) => named,
                            None => return self.drops.unmatched_errors += 1,
                        };
                        if table
                            .pending_probe(n_low, bits, q.dst)
                            .is_some_and(|p| late(p.t_send_ns))
                        {
                            return self.drops.stale += 1;
                        }
                        table.resolve_partial(n_low, bits, q.dst)
                    }
                }
            }
            Verdict::Foreign => None,
        };
        let Some(p) = probe else {
            self.drops.unmatched_errors += 1;
            return;
        };
        out(Event {
            probe: Some(p.n),
            cookie: p.cookie,
            target: p.target,
            sent_ns: Some(p.t_send_ns),
            attempt: p.attempt,
            outcome: Outcome::Error {
                family: e.family,
                icmp_type: e.msg_type,
                code: e.code,
                from: e.from,
                rtt_ns: ts_ns.saturating_sub(p.t_send_ns),
                rest: e.rest,
                gateway: e.gateway,
            },
        });
    }

    /// Retires probes sent at or before `now_ns - timeout_ns` (all of them with
    /// `now_ns = u64::MAX`), emitting timeouts and failed sends with what the table held of
    /// each probe. Returns how many retired.
    pub fn reap(
        &mut self,
        now_ns: u64,
        timeout_ns: u64,
        out: &mut impl FnMut(Event, &ProbeInfo),
    ) -> u64 {
        let Some(table) = self.table() else {
            return 0;
        };
        let deadline = now_ns.saturating_sub(timeout_ns);
        table.reap(deadline, |p, r| {
            let outcome = match r {
                Retired::TimedOut => Outcome::Timeout,
                Retired::SendFailed(errno) => Outcome::SendFailed { errno },
            };
            let ev = Event {
                probe: Some(p.n),
                cookie: p.cookie,
                target: p.target,
                sent_ns: Some(p.t_send_ns),
                attempt: p.attempt,
                outcome,
            };
            out(ev, &p);
        })
    }
}

/// What a stateless scan's answer proved, before the responder set decides.
struct ScanAnswer {
    /// Position in the scan order (the probe number), if the answer carried it.
    n: Option<u64>,
    target: core::net::IpAddr,
    attempt: u8,
    /// Send time, if the answer carried it.
    t_send_ns: Option<u64>,
}

impl Matcher {
    fn scan_reply(
        &mut self,
        r: &EchoReply<'_>,
        stamp: &Stamp,
        ts_ns: u64,
        out: &mut impl FnMut(Event),
    ) {
        let Some(rx) = scan_receiver(&self.how, r.from) else {
            // Of a family this run does not scan: its MAC may verify, its target cannot.
            return self.drops.forged += 1;
        };
        let state = rx.state();
        // The stamp's cookie is the attempt; the identifiers must be that attempt's.
        let attempt = match u8::try_from(stamp.cookie) {
            Ok(a) if a <= state.retries => a,
            _ => return self.drops.forged += 1,
        };
        if self.key.probe_ids(r.from, attempt) != (r.ident, r.seq) {
            return self.drops.forged += 1;
        }
        let a = ScanAnswer {
            n: Some(stamp.n),
            target: r.from,
            attempt,
            t_send_ns: Some(stamp.t_send_ns),
        };
        let rtt_ns = ts_ns.saturating_sub(stamp.t_send_ns);
        let first = Outcome::Reply {
            rtt_ns,
            ttl: r.ttl,
            from: r.from,
        };
        if let Some(o) = self.scan_settle(&a, ts_ns, first, &mut |d| d.forged += 1) {
            out(scan_event(&a, o));
        }
    }

    fn scan_error(&mut self, e: &IcmpError<'_>, ts_ns: u64, out: &mut impl FnMut(Event)) {
        let q = &e.probe;
        let Some(rx) = scan_receiver(&self.how, q.dst) else {
            return self.drops.unmatched_errors += 1;
        };
        let state = rx.state();
        let a = match payload::verify(&self.key, self.session, q.dst, q.ident, q.seq, q.data) {
            Verdict::Valid(s) => match u8::try_from(s.cookie) {
                Ok(attempt)
                    if attempt <= state.retries
                        && self.key.probe_ids(q.dst, attempt) == (q.ident, q.seq) =>
                {
                    Some(ScanAnswer {
                        n: Some(s.n),
                        target: q.dst,
                        attempt,
                        t_send_ns: Some(s.t_send_ns),
                    })
                }
                _ => None,
            },
            // Too short a quote to hold the payload: the identifiers alone, for each attempt.
            Verdict::Foreign if q.data.len() < payload::LEN => self
                .key
                .probe_attempt(q.dst, q.ident, q.seq, state.retries)
                .map(|attempt| ScanAnswer {
                    n: None,
                    target: q.dst,
                    attempt,
                    t_send_ns: None,
                }),
            Verdict::Forged | Verdict::Foreign => None,
        };
        let Some(a) = a else {
            return self.drops.unmatched_errors += 1;
        };
        let rtt_ns = a.t_send_ns.map_or(0, |t| ts_ns.saturating_sub(t));
        let first = Outcome::Error {
            family: e.family,
            icmp_type: e.msg_type,
            code: e.code,
            from: e.from,
            rtt_ns,
            rest: e.rest,
            gateway: e.gateway,
        };
        if let Some(o) = self.scan_settle(&a, ts_ns, first, &mut |d| d.unmatched_errors += 1) {
            out(scan_event(&a, o));
        }
    }

    /// Stale, first (`first`, and the target's bit set) or duplicate; `unknown` counts an
    /// answer whose target is not in the scan's space.
    fn scan_settle(
        &mut self,
        a: &ScanAnswer,
        ts_ns: u64,
        first: Outcome,
        unknown: &mut impl FnMut(&mut Drops),
    ) -> Option<Outcome> {
        let Some(rx) = scan_receiver(&self.how, a.target) else {
            unknown(&mut self.drops);
            return None;
        };
        let state = rx.state();
        let Some(index) = state.space().index_of(a.target) else {
            unknown(&mut self.drops);
            return None;
        };
        let cooldown = u64::try_from(state.cooldown.as_nanos()).unwrap_or(u64::MAX);
        let rtt = a.t_send_ns.map(|t| ts_ns.saturating_sub(t));
        if u32::from(a.attempt) < rx.closed() || rtt.is_some_and(|r| r > cooldown) {
            self.drops.stale += 1;
            return None;
        }
        if state.responders().insert(index) {
            state.answered(a.attempt);
            Some(first)
        } else {
            Some(Outcome::Duplicate {
                rtt_ns: rtt.unwrap_or(0),
            })
        }
    }
}

/// The scan of `target`'s family, if the matcher is a stateless one with such a scan.
fn scan_receiver(how: &How, target: core::net::IpAddr) -> Option<&ScanReceiver> {
    let How::Stateless(rxs) = how else {
        return None;
    };
    let family = asdic_wire::Family::of(target);
    rxs.iter().find(|r| r.state().space().family() == family)
}

fn scan_event(a: &ScanAnswer, outcome: Outcome) -> Event {
    Event {
        probe: a.n,
        // A stateless probe has no handle of its source's: its try is `attempt`.
        cookie: 0,
        target: a.target,
        sent_ns: a.t_send_ns,
        attempt: a.attempt,
        outcome,
    }
}

#[cfg(test)]
pub(crate) mod tests;
