//! Matching, without I/O: a received frame and its receive time go in, [`Event`]s come out.
//!
//! Echo replies are validated by the payload MAC before the table is touched; ICMP errors by
//! the quoted payload's MAC when the quote holds it, else by the quoted (identifier,
//! sequence) naming a pending slot whose target is the quoted destination.

use std::sync::Arc;

use crate::frame::{RxFrame, RxLayer};
use asdic_wire::inbound::{self, IcmpError, Inbound};
use asdic_wire::payload::{self, Key, Numbering, Verdict};

use crate::event::{Drops, Event, Outcome};
use crate::table::{InflightTable, ProbeInfo, Resolution, Retired};

/// Matches replies and errors of one run to its probes.
#[derive(Debug)]
pub struct Matcher {
    table: Arc<InflightTable>,
    key: Key,
    session: u32,
    numbering: Numbering,
    drops: Drops,
}

impl Matcher {
    /// A matcher for the run with this table, MAC key, session id and numbering.
    pub fn new(table: Arc<InflightTable>, key: Key, session: u32, numbering: Numbering) -> Self {
        Matcher {
            table,
            key,
            session,
            numbering,
            drops: Drops::default(),
        }
    }

    /// What was dropped so far.
    pub fn drops(&self) -> Drops {
        self.drops
    }

    /// The table.
    pub fn table(&self) -> &Arc<InflightTable> {
        &self.table
    }

    /// Handles one frame from an engine.
    pub fn on_frame(&mut self, f: &RxFrame<'_>, out: &mut impl FnMut(Event)) {
        if f.truncated {
            self.drops.malformed += 1;
            return;
        }
        let parsed = match f.layer {
            RxLayer::Ipv4 => inbound::parse_ipv4(f.data),
            RxLayer::Icmpv6 { src, hop_limit } => inbound::parse_icmpv6(f.data, src, hop_limit),
            RxLayer::Ethernet => inbound::parse_ethernet(f.data),
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
                if self.numbering.ident_seq(stamp.n) != (r.ident, r.seq) {
                    return self.drops.forged += 1;
                }
                let rtt_ns = ts_ns.saturating_sub(stamp.t_send_ns);
                let outcome = match self.table.resolve(stamp.n, false) {
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
                let attempt = self.table.info(stamp.n).map_or(0, |p| p.attempt);
                out(Event {
                    n: stamp.n,
                    cookie: stamp.cookie,
                    target: r.from,
                    t_send_ns: stamp.t_send_ns,
                    attempt,
                    outcome,
                });
            }
            Inbound::Error(e) => self.on_error(e, ts_ns, out),
            Inbound::Other { .. } => self.drops.other += 1,
        }
    }

    fn on_error(&mut self, e: &IcmpError<'_>, ts_ns: u64, out: &mut impl FnMut(Event)) {
        let q = &e.probe;
        let probe = match payload::verify(&self.key, self.session, q.dst, q.ident, q.seq, q.data) {
            Verdict::Valid(s) => match self.table.resolve(s.n, true) {
                Resolution::First => Some(ProbeInfo {
                    n: s.n,
                    target: q.dst,
                    cookie: s.cookie,
                    t_send_ns: s.t_send_ns,
                    attempt: self.table.info(s.n).map_or(0, |p| p.attempt),
                    class: 0,
                }),
                _ => None,
            },
            Verdict::Forged => None,
            // Too short a quote to hold the payload: fall back to the slot the ids name.
            Verdict::Foreign if q.data.len() < payload::LEN => self
                .numbering
                .recover(q.ident, q.seq)
                .and_then(|(n_low, bits)| self.table.resolve_partial(n_low, bits, q.dst)),
            Verdict::Foreign => None,
        };
        let Some(p) = probe else {
            self.drops.unmatched_errors += 1;
            return;
        };
        out(Event {
            n: p.n,
            cookie: p.cookie,
            target: p.target,
            t_send_ns: p.t_send_ns,
            attempt: p.attempt,
            outcome: Outcome::Error {
                family: e.family,
                icmp_type: e.msg_type,
                code: e.code,
                from: e.from,
                rtt_ns: ts_ns.saturating_sub(p.t_send_ns),
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
        let deadline = now_ns.saturating_sub(timeout_ns);
        self.table.reap(deadline, |p, r| {
            let outcome = match r {
                Retired::TimedOut => Outcome::Timeout,
                Retired::SendFailed(errno) => Outcome::SendFailed { errno },
            };
            let ev = Event {
                n: p.n,
                cookie: p.cookie,
                target: p.target,
                t_send_ns: p.t_send_ns,
                attempt: p.attempt,
                outcome,
            };
            out(ev, &p);
        })
    }
}

#[cfg(test)]
mod tests;
