//! Trace output: per target, what each TTL drew ([`Hop`]), folded from the receiver's events
//! by [`Paths`]; one [`HopRow`] per probe for Parquet, CSV and JSONL ([`HOP_COLUMNS`]); and a
//! readable, traceroute-style path per target ([`Paths::write_path`]).
//!
//! A path *ends* at the smallest TTL that drew the destination's echo reply, or an ICMP
//! destination-unreachable error (which every larger TTL would draw too). Hops beyond the end
//! are not printed; their probes, if they were sent before the end was known, are still rows.

use core::fmt;
use core::net::IpAddr;
use std::io::{self, Write};
use std::sync::{Arc, LazyLock};

use arrow_schema::SchemaRef;
use asdic_core::{Event, Outcome};
use asdic_wire::Family;
use asdic_wire::registry::Describe;

use crate::schema::{Column, Record, Type, Value, arrow_schema, ns_i64};

/// What a probe at one TTL drew, as the `kind` column names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HopKind {
    /// The destination's echo reply: `"reply"`.
    Reply,
    /// ICMP time exceeded from a router on the path: `"time_exceeded"`.
    TimeExceeded,
    /// ICMP destination unreachable: `"unreachable"`.
    Unreachable,
    /// Any other ICMP error (packet too big, parameter problem…): `"error"`.
    OtherError,
    /// No answer within the timeout: `"timeout"`.
    Timeout,
    /// The local stack refused to send the probe: `"send_failed"`.
    SendFailed,
}

impl HopKind {
    /// Every kind, in declaration order.
    pub const ALL: [HopKind; 6] = [
        HopKind::Reply,
        HopKind::TimeExceeded,
        HopKind::Unreachable,
        HopKind::OtherError,
        HopKind::Timeout,
        HopKind::SendFailed,
    ];

    /// The kind a `kind` column value names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The name written to the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            HopKind::Reply => "reply",
            HopKind::TimeExceeded => "time_exceeded",
            HopKind::Unreachable => "unreachable",
            HopKind::OtherError => "error",
            HopKind::Timeout => "timeout",
            HopKind::SendFailed => "send_failed",
        }
    }

    /// Whether the path ends here: the destination answered, or it is unreachable.
    pub fn ends_path(self) -> bool {
        matches!(self, HopKind::Reply | HopKind::Unreachable)
    }
}

impl fmt::Display for HopKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one probe drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// What kind of answer, if any.
    pub kind: HopKind,
    /// Who answered: the router or the destination; `None` for timeouts and failed sends.
    pub responder: Option<IpAddr>,
    /// Time from send to the answer, nanoseconds; `None` without an answer.
    pub rtt_ns: Option<u64>,
    /// ICMP type and code of the answer (the echo reply's for replies).
    pub icmp: Option<Describe>,
    /// TTL / hop limit the destination's reply arrived with, when known.
    pub reply_ttl: Option<u8>,
    /// OS error number of a failed send.
    pub errno: Option<i32>,
    /// Which try the probe was (0 = first).
    pub attempt: u8,
    /// Probe number within the run.
    pub probe: u64,
    /// When the probe was sent, ns since the Unix epoch.
    pub sent_unix_ns: u64,
}

impl Hop {
    /// The hop a terminal event describes; `None` for duplicates and late replies.
    pub fn from_event(ev: &Event) -> Option<Hop> {
        let mut hop = Hop {
            kind: HopKind::Timeout,
            responder: None,
            rtt_ns: None,
            icmp: None,
            reply_ttl: None,
            errno: None,
            attempt: ev.attempt,
            // Trace's probes are tracked: every event carries its number and send time.
            probe: ev.probe.unwrap_or_default(),
            sent_unix_ns: ev.sent_ns.unwrap_or_default(),
        };
        match ev.outcome {
            Outcome::Reply { rtt_ns, ttl, from } => {
                let (family, ty) = if ev.target.is_ipv4() {
                    (Family::V4, 0)
                } else {
                    (Family::V6, 129)
                };
                hop.kind = HopKind::Reply;
                hop.responder = Some(from);
                hop.rtt_ns = Some(rtt_ns);
                hop.reply_ttl = ttl;
                hop.icmp = Some(Describe {
                    family,
                    ty,
                    code: 0,
                });
            }
            Outcome::Error {
                family,
                icmp_type,
                code,
                from,
                rtt_ns,
                ..
            } => {
                hop.kind = match (family, icmp_type) {
                    (Family::V4, 11) | (Family::V6, 3) => HopKind::TimeExceeded,
                    (Family::V4, 3) | (Family::V6, 1) => HopKind::Unreachable,
                    _ => HopKind::OtherError,
                };
                hop.responder = Some(from);
                hop.rtt_ns = Some(rtt_ns);
                hop.icmp = Some(Describe {
                    family,
                    ty: icmp_type,
                    code,
                });
            }
            Outcome::Timeout => {}
            Outcome::SendFailed { errno } => {
                hop.kind = HopKind::SendFailed;
                hop.errno = Some(errno);
            }
            Outcome::Duplicate { .. } | Outcome::Late { .. } => return None,
        }
        Some(hop)
    }

    /// traceroute's annotation of the answer: `!H`, `!N`, `!X`… for unreachables (`!<code>`
    /// for codes it has no letter for), the type and code for other errors, nothing for
    /// replies and time exceeded.
    pub fn marker(&self) -> Option<String> {
        let d = self.icmp?;
        match self.kind {
            HopKind::Unreachable => Some(unreachable_marker(d.family == Family::V6, d.code)),
            HopKind::OtherError => Some(format!("!<{d}>")),
            _ => None,
        }
    }
}

/// traceroute's annotation of a destination-unreachable code: `!N`, `!H`, `!P`, `!F`, `!S`,
/// `!X`, `!V`, `!C`, else `!<code>` (ICMPv6's codes when `v6`).
pub fn unreachable_marker(v6: bool, code: u8) -> String {
    let letter = match (v6, code) {
        (false, 0 | 6 | 11) | (true, 0) => "N",
        (false, 1 | 7 | 12) | (true, 3) => "H",
        (false, 2) | (true, 4) => "P",
        (false, 4) => "F",
        (false, 5) | (true, 2) => "S",
        (false, 9 | 10 | 13) | (true, 1 | 5 | 6) => "X",
        (false, 14) => "V",
        (false, 15) => "C",
        _ => return format!("!{code}"),
    };
    format!("!{letter}")
}

/// Number of trace output columns.
pub const HOP_NUM_COLUMNS: usize = 15;

/// The columns of trace's table that others read by name (the report): one declaration,
/// in the table below and wherever they are read.
pub mod hop_col {
    use crate::schema::{Column, Type};

    /// `target`.
    pub const TARGET: Column = Column::new("target", Type::Utf8, false, "Traced destination");

    /// `ttl`.
    pub const TTL: Column = Column::new(
        "ttl",
        Type::UInt8,
        false,
        "TTL / hop limit the probe was sent with",
    );

    /// `kind`.
    pub const KIND: Column = Column::new(
        "kind",
        Type::Utf8,
        false,
        "What it drew: reply (the destination's echo reply), time_exceeded, unreachable, \
         error (another ICMP error), timeout or send_failed",
    );

    /// `responder`.
    pub const RESPONDER: Column = Column::new(
        "responder",
        Type::Utf8,
        true,
        "Who answered: a router, or the destination; null for timeout and send_failed",
    );

    /// `rtt_us`.
    pub const RTT_US: Column = Column::new(
        "rtt_us",
        Type::Float64,
        true,
        "Time from send to the answer, microseconds; null for timeout and send_failed",
    );

    /// `icmp_type`.
    pub const ICMP_TYPE: Column = Column::new(
        "icmp_type",
        Type::UInt8,
        true,
        "ICMP type of the answer (ICMPv6 for an IPv6 target); null without an answer",
    );

    /// `icmp_code`.
    pub const ICMP_CODE: Column = Column::new(
        "icmp_code",
        Type::UInt8,
        true,
        "ICMP code of the answer; null without an answer",
    );

    /// `icmp_name`.
    pub const ICMP_NAME: Column = Column::new(
        "icmp_name",
        Type::Utf8,
        true,
        "IANA name of the answer, \"Type / Code\"; null without an answer",
    );

    /// `sent_time`.
    pub const SENT_TIME: Column = Column::new(
        "sent_time",
        Type::Timestamp,
        false,
        "When the probe was sent (UTC, microseconds)",
    );

    /// `sent_unix_ns`.
    pub const SENT_UNIX_NS: Column = Column::new(
        "sent_unix_ns",
        Type::Int64,
        false,
        "sent_time in nanoseconds since the Unix epoch",
    );
}

/// Every trace output column in order, as (name, one-line description).
pub const HOP_COLUMNS: &[Column] = &[
    hop_col::TARGET,
    hop_col::TTL,
    hop_col::KIND,
    hop_col::RESPONDER,
    hop_col::RTT_US,
    hop_col::ICMP_TYPE,
    hop_col::ICMP_CODE,
    hop_col::ICMP_NAME,
    Column::new(
        "reply_ttl",
        Type::UInt8,
        true,
        "TTL / hop limit the destination's reply arrived with; null unless kind is reply",
    ),
    Column::new(
        "attempt",
        Type::UInt8,
        false,
        "Which try at this (target, TTL) the probe was: 0 for the first",
    ),
    Column::new(
        "flow",
        Type::UInt16,
        false,
        "Flow of the probe (trace --flow): every probe to a target at one ICMP checksum, so \
         that per-flow load balancers send them down one path (Paris traceroute)",
    ),
    Column::new(
        "send_errno",
        Type::Int32,
        true,
        "OS error number the send failed with; null unless kind is send_failed",
    ),
    Column::new("probe", Type::UInt64, false, "Probe number within the run"),
    hop_col::SENT_TIME,
    hop_col::SENT_UNIX_NS,
];

const _: () = assert!(HOP_COLUMNS.len() == HOP_NUM_COLUMNS);

static HOP_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| arrow_schema(HOP_COLUMNS));

/// The Arrow schema of trace output, in [`HOP_COLUMNS`] order.
pub fn hop_schema() -> SchemaRef {
    Arc::clone(&HOP_SCHEMA)
}

/// One probe of a trace, as written to every output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopRow<'a> {
    /// The destination.
    pub target: IpAddr,
    /// The probe's TTL.
    pub ttl: u8,
    /// The flow of the run's probes.
    pub flow: u16,
    /// What it drew.
    pub hop: &'a Hop,
}

impl HopRow<'_> {
    /// The row's cells in [`HOP_COLUMNS`] order.
    pub fn values(&self) -> [Value<'static>; HOP_NUM_COLUMNS] {
        let h = self.hop;
        let icmp = h.icmp;
        [
            Value::Addr(self.target),
            Value::U8(self.ttl),
            Value::Str(h.kind.as_str()),
            h.responder.map_or(Value::Null, Value::Addr),
            h.rtt_ns
                .map_or(Value::Null, |ns| Value::F64(ns as f64 / 1000.0)),
            icmp.map_or(Value::Null, |d| Value::U8(d.ty)),
            icmp.map_or(Value::Null, |d| Value::U8(d.code)),
            icmp.map_or(Value::Null, Value::Icmp),
            h.reply_ttl.map_or(Value::Null, Value::U8),
            Value::U8(h.attempt),
            Value::U16(self.flow),
            h.errno.map_or(Value::Null, Value::I32),
            Value::U64(h.probe),
            Value::Time(h.sent_unix_ns),
            Value::I64(ns_i64(h.sent_unix_ns)),
        ]
    }
}

impl Record for HopRow<'_> {
    fn columns() -> &'static [Column] {
        HOP_COLUMNS
    }

    fn schema() -> SchemaRef {
        hop_schema()
    }

    fn visit<'s>(&'s self, f: &mut dyn FnMut(Value<'s>)) {
        for value in self.values() {
            f(value);
        }
    }
}

/// Counts over every path of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathTotals {
    /// Targets traced.
    pub targets: u64,
    /// Targets whose echo reply came back.
    pub reached: u64,
    /// Targets whose path ended in an unreachable error.
    pub unreachable: u64,
    /// Probes that drew an answer or timed out (one row each).
    pub probes: u64,
    /// Of those, timeouts.
    pub timeouts: u64,
}

/// The hops of every target of a run at TTLs `first_ttl..=max_ttl`: dense, one cell per
/// (target, TTL), filled by terminal events.
#[derive(Debug, Clone)]
pub struct Paths {
    targets: Vec<IpAddr>,
    first_ttl: u8,
    max_ttl: u8,
    cells: Vec<Option<Hop>>,
    /// Per target, the TTL its path ends at, 0 while unknown.
    ends: Vec<u8>,
    /// The flow of every probe (Paris traceroute).
    flow: u16,
}

impl Paths {
    /// Empty paths to `targets` at TTLs `first_ttl..=max_ttl` (`1 <= first_ttl <= max_ttl`;
    /// otherwise the range is taken as the single TTL `first_ttl.max(1)`).
    pub fn new(targets: Vec<IpAddr>, first_ttl: u8, max_ttl: u8) -> Self {
        let first_ttl = first_ttl.max(1);
        let max_ttl = max_ttl.max(first_ttl);
        let hops = usize::from(max_ttl - first_ttl) + 1;
        Paths {
            cells: vec![None; targets.len() * hops],
            ends: vec![0; targets.len()],
            targets,
            first_ttl,
            max_ttl,
            flow: 0,
        }
    }

    /// The same, for probes of flow `flow`.
    pub fn with_flow(mut self, flow: u16) -> Self {
        self.flow = flow;
        self
    }

    fn hops(&self) -> usize {
        usize::from(self.max_ttl - self.first_ttl) + 1
    }

    fn cell(&self, t: usize, ttl: u8) -> Option<usize> {
        (t < self.targets.len() && (self.first_ttl..=self.max_ttl).contains(&ttl))
            .then(|| t * self.hops() + usize::from(ttl - self.first_ttl))
    }

    /// Records what the probe to target `t` at `ttl` drew. Only the first terminal event of
    /// a cell counts. Returns the TTL the path now ends at when this event moved it closer
    /// (the caller tells the source to skip TTLs beyond it).
    pub fn record(&mut self, t: usize, ttl: u8, ev: &Event) -> Option<u8> {
        let i = self.cell(t, ttl)?;
        let hop = Hop::from_event(ev)?;
        if self.cells[i].is_some() {
            return None;
        }
        self.cells[i] = Some(hop);
        let end = &mut self.ends[t];
        if hop.kind.ends_path() && (*end == 0 || ttl < *end) {
            *end = ttl;
            return Some(ttl);
        }
        None
    }

    /// The TTL target `t`'s path ends at, if it ended.
    pub fn end(&self, t: usize) -> Option<u8> {
        self.ends.get(t).copied().filter(|&e| e != 0)
    }

    /// What target `t` drew at `ttl`, if recorded.
    pub fn hop(&self, t: usize, ttl: u8) -> Option<&Hop> {
        self.cell(t, ttl).and_then(|i| self.cells[i].as_ref())
    }

    /// The targets, in index order.
    pub fn targets(&self) -> &[IpAddr] {
        &self.targets
    }

    /// One row per recorded probe, by target then TTL.
    pub fn rows(&self) -> impl Iterator<Item = HopRow<'_>> + '_ {
        let hops = self.hops();
        self.cells.iter().enumerate().filter_map(move |(i, c)| {
            c.as_ref().map(|hop| HopRow {
                target: self.targets[i / hops],
                ttl: self.first_ttl + (i % hops) as u8,
                flow: self.flow,
                hop,
            })
        })
    }

    /// Counts over every path.
    pub fn totals(&self) -> PathTotals {
        let mut t = PathTotals {
            targets: self.targets.len() as u64,
            ..PathTotals::default()
        };
        for (i, &e) in self.ends.iter().enumerate() {
            if e == 0 {
                continue;
            }
            match self.hop(i, e).map(|h| h.kind) {
                Some(HopKind::Reply) => t.reached += 1,
                Some(HopKind::Unreachable) => t.unreachable += 1,
                _ => {}
            }
        }
        for h in self.cells.iter().flatten() {
            t.probes += 1;
            t.timeouts += u64::from(h.kind == HopKind::Timeout);
        }
        t
    }

    /// Writes target `t`'s path, traceroute-style:
    ///
    /// ```text
    /// traceroute to 198.19.3.4, 4 hops
    ///   1  198.18.0.2  0.123 ms
    ///   2  *
    ///   3  198.18.2.2  0.301 ms
    ///   4  198.19.3.4  0.350 ms
    /// ```
    ///
    /// A path that ended in an unreachable error ends with its marker (`!N`, `!H`, `!X`…).
    /// One that did not end lists the hops up to the last that answered, then the silent
    /// rest as one line (`  5-30  *`). TTLs below `first_ttl` are not shown.
    pub fn write_path(&self, t: usize, w: &mut dyn Write) -> io::Result<()> {
        let Some(&target) = self.targets.get(t) else {
            return Ok(());
        };
        let end = self.end(t);
        let last = match end {
            Some(e) => e,
            None => (self.first_ttl..=self.max_ttl)
                .rev()
                .find(|&ttl| self.hop(t, ttl).is_some_and(|h| h.responder.is_some()))
                .unwrap_or(self.first_ttl - 1),
        };
        match end {
            Some(e) => {
                let unreachable = self
                    .hop(t, e)
                    .is_some_and(|h| h.kind == HopKind::Unreachable);
                let what = if unreachable { ", unreachable" } else { "" };
                writeln!(
                    w,
                    "traceroute to {target}, {e} hop{}{what}",
                    if e == 1 { "" } else { "s" }
                )?;
            }
            None => writeln!(
                w,
                "traceroute to {target}, not reached within {} hops",
                self.max_ttl
            )?,
        }
        for ttl in self.first_ttl..=last {
            match self.hop(t, ttl) {
                Some(Hop {
                    responder: Some(from),
                    rtt_ns,
                    ..
                }) => {
                    let hop = self.hop(t, ttl).copied();
                    let rtt =
                        rtt_ns.map_or(String::new(), |ns| format!("  {:.3} ms", ns as f64 / 1e6));
                    let marker = hop
                        .and_then(|h| h.marker())
                        .map_or(String::new(), |m| format!(" {m}"));
                    writeln!(w, "{ttl:>3}  {from}{rtt}{marker}")?;
                }
                Some(Hop {
                    kind: HopKind::SendFailed,
                    errno,
                    ..
                }) => writeln!(
                    w,
                    "{ttl:>3}  ! not sent (errno {})",
                    errno.unwrap_or_default()
                )?,
                _ => writeln!(w, "{ttl:>3}  *")?,
            }
        }
        if end.is_none() && last < self.max_ttl {
            let from = last + 1;
            if from == self.max_ttl {
                writeln!(w, "{from:>3}  *")?;
            } else {
                writeln!(w, "  {from}-{}  *", self.max_ttl)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::record_batch;
    use crate::sink::tests::{read_parquet, temp_path};
    use crate::sink::{Format, ParquetSink, Sink, text_sink};
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt8Type};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ev(target: &str, n: u64, outcome: Outcome) -> Event {
        Event {
            probe: Some(n),
            cookie: 0,
            target: ip(target),
            sent_ns: Some(1_000 + n),
            attempt: 0,
            outcome,
        }
    }

    fn err(family: Family, icmp_type: u8, code: u8, from: &str, rtt_ns: u64) -> Outcome {
        Outcome::Error {
            family,
            icmp_type,
            code,
            from: ip(from),
            rtt_ns,
            rest: 0,
            gateway: None,
        }
    }

    fn reply(from: &str, rtt_ns: u64) -> Outcome {
        Outcome::Reply {
            rtt_ns,
            ttl: Some(61),
            from: ip(from),
        }
    }

    fn text(p: &Paths, t: usize) -> String {
        let mut v = vec![];
        p.write_path(t, &mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn a_path_ends_at_the_smallest_reply_and_prints_up_to_it() {
        let d = "198.19.3.4";
        let mut p = Paths::new(vec![ip(d)], 1, 8);
        // Out of order, as a randomized walk sends them: TTL 6 reaches first.
        assert_eq!(p.record(0, 6, &ev(d, 1, reply(d, 400_000))), Some(6));
        assert_eq!(
            p.record(
                0,
                1,
                &ev(d, 2, err(Family::V4, 11, 0, "198.18.0.2", 123_456))
            ),
            None
        );
        assert_eq!(p.record(0, 2, &ev(d, 3, Outcome::Timeout)), None);
        assert_eq!(
            p.record(
                0,
                3,
                &ev(d, 4, err(Family::V4, 11, 0, "198.18.2.2", 301_000))
            ),
            None
        );
        assert_eq!(p.record(0, 4, &ev(d, 5, reply(d, 350_000))), Some(4));
        assert_eq!(
            p.record(0, 5, &ev(d, 6, reply(d, 360_000))),
            None,
            "not closer"
        );
        // A second terminal event for a cell does not replace the first.
        assert_eq!(p.record(0, 4, &ev(d, 5, Outcome::Timeout)), None);
        assert_eq!(p.end(0), Some(4));
        assert_eq!(
            text(&p, 0),
            "traceroute to 198.19.3.4, 4 hops\n\
             \x20 1  198.18.0.2  0.123 ms\n\
             \x20 2  *\n\
             \x20 3  198.18.2.2  0.301 ms\n\
             \x20 4  198.19.3.4  0.350 ms\n"
        );
        // Rows: every recorded probe, the ones beyond the end included.
        let rows: Vec<(u8, &str)> = p.rows().map(|r| (r.ttl, r.hop.kind.as_str())).collect();
        assert_eq!(
            rows,
            [
                (1, "time_exceeded"),
                (2, "timeout"),
                (3, "time_exceeded"),
                (4, "reply"),
                (5, "reply"),
                (6, "reply")
            ]
        );
        let t = p.totals();
        assert_eq!((t.targets, t.reached, t.unreachable), (1, 1, 0));
        assert_eq!((t.probes, t.timeouts), (6, 1));
    }

    #[test]
    fn unreachables_end_the_path_with_traceroutes_markers() {
        let d = "2001:db8:1::4d01";
        let mut p = Paths::new(vec![ip(d)], 1, 30);
        p.record(
            0,
            1,
            &ev(d, 1, err(Family::V6, 3, 0, "2001:db8:0:1::2", 50_000)),
        );
        assert_eq!(
            p.record(
                0,
                3,
                &ev(d, 2, err(Family::V6, 1, 1, "2001:db8:0:2::2", 70_000))
            ),
            Some(3)
        );
        p.record(
            0,
            2,
            &ev(d, 3, err(Family::V6, 3, 0, "2001:db8:0:2::2", 60_000)),
        );
        assert_eq!(
            text(&p, 0),
            "traceroute to 2001:db8:1::4d01, 3 hops, unreachable\n\
             \x20 1  2001:db8:0:1::2  0.050 ms\n\
             \x20 2  2001:db8:0:2::2  0.060 ms\n\
             \x20 3  2001:db8:0:2::2  0.070 ms !X\n"
        );
        assert_eq!(p.totals().unreachable, 1);
        let mark = |family, code| {
            Hop::from_event(&ev(
                "198.19.0.1",
                0,
                err(
                    family,
                    if family == Family::V4 { 3 } else { 1 },
                    code,
                    "198.18.0.2",
                    1,
                ),
            ))
            .unwrap()
            .marker()
            .unwrap()
        };
        assert_eq!(mark(Family::V4, 0), "!N");
        assert_eq!(mark(Family::V4, 1), "!H");
        assert_eq!(mark(Family::V4, 13), "!X");
        assert_eq!(mark(Family::V4, 3), "!3");
        assert_eq!(mark(Family::V6, 3), "!H");
        assert_eq!(mark(Family::V6, 0), "!N");
        let te = Hop::from_event(&ev(
            "198.19.0.1",
            0,
            err(Family::V4, 11, 0, "198.18.0.2", 1),
        ));
        assert_eq!(te.unwrap().marker(), None);
    }

    #[test]
    fn a_path_that_never_ends_compresses_its_silent_tail() {
        let d = "198.19.99.1";
        let mut p = Paths::new(vec![ip(d), ip("198.19.99.2")], 1, 30);
        p.record(
            0,
            1,
            &ev(d, 1, err(Family::V4, 11, 0, "198.18.0.2", 10_000)),
        );
        p.record(
            0,
            2,
            &ev(d, 2, err(Family::V4, 11, 0, "198.18.1.2", 20_000)),
        );
        for ttl in 3..=30 {
            p.record(0, ttl, &ev(d, u64::from(ttl), Outcome::Timeout));
        }
        assert_eq!(p.end(0), None);
        assert_eq!(
            text(&p, 0),
            "traceroute to 198.19.99.1, not reached within 30 hops\n\
             \x20 1  198.18.0.2  0.010 ms\n\
             \x20 2  198.18.1.2  0.020 ms\n\
             \x20 3-30  *\n"
        );
        // Nothing at all recorded: one silent line.
        assert_eq!(
            text(&p, 1),
            "traceroute to 198.19.99.2, not reached within 30 hops\n  1-30  *\n"
        );
        // Out-of-range cells are ignored.
        assert_eq!(p.record(2, 1, &ev(d, 1, Outcome::Timeout)), None);
        assert_eq!(p.record(0, 31, &ev(d, 1, Outcome::Timeout)), None);
        assert_eq!(p.record(0, 0, &ev(d, 1, Outcome::Timeout)), None);
        // Duplicates and late replies are no hops.
        assert_eq!(p.record(1, 4, &ev(d, 1, Outcome::Late { rtt_ns: 5 })), None);
        assert!(p.hop(1, 4).is_none());
    }

    #[test]
    fn hop_rows_write_to_parquet_and_text() {
        let d = "198.19.3.4";
        let mut p = Paths::new(vec![ip(d)], 1, 4);
        p.record(
            0,
            1,
            &ev(d, 7, err(Family::V4, 11, 0, "198.18.0.2", 1_500_000)),
        );
        p.record(0, 2, &ev(d, 8, Outcome::Timeout));
        p.record(0, 3, &ev(d, 9, reply(d, 2_000_000)));
        let rows: Vec<HopRow<'_>> = p.rows().collect();
        let batch = record_batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.num_columns(), HOP_NUM_COLUMNS);
        let rtt = batch.column(4).as_primitive::<Float64Type>();
        assert_eq!(rtt.value(0), 1500.0);
        assert!(rtt.is_null(1), "a timeout has no RTT");
        let ty = batch.column(5).as_primitive::<UInt8Type>();
        assert_eq!((ty.value(0), ty.is_null(1), ty.value(2)), (11, true, 0));

        let path = temp_path("trace.parquet");
        let mut pq =
            ParquetSink::create(&path, vec![("asdic.mode".into(), "trace".into())]).unwrap();
        pq.write_rows(&rows).unwrap();
        Box::new(pq).finish().unwrap();
        let (meta, back) = read_parquet(&path);
        assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(back[0].schema(), hop_schema());
        let kv = meta.file_metadata().key_value_metadata().unwrap();
        assert!(
            kv.iter()
                .any(|k| k.key == "asdic.mode" && k.value.as_deref() == Some("trace"))
        );
        let _ = std::fs::remove_file(&path);

        let mut out = vec![];
        {
            let mut s = text_sink::<HopRow<'_>, _>(Format::Csv, &mut out).unwrap();
            s.write_rows(&rows).unwrap();
            s.finish().unwrap();
        }
        let csv = String::from_utf8(out).unwrap();
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("target,ttl,kind,responder,rtt_us")
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("198.19.3.4,1,time_exceeded,198.18.0.2,1500,11,0,")
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("198.19.3.4,2,timeout,,,,,,,0,0,,8,")
        );
    }
}
