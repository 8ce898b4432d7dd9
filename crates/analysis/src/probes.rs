//! `asdic ping --per-probe`: one row per probe, like fping `-C` — what each probe to each
//! target drew, when it left and its RTT ([`PROBE_COLUMNS`], [`ProbeRow`]), kept by
//! [`Probes`] from the run's events.

use core::net::IpAddr;
use std::sync::{Arc, LazyLock};

use arrow_schema::SchemaRef;
use asdic_core::event::{Event, Outcome};
use asdic_core::set::TargetList;
use asdic_wire::registry::Describe;

use crate::schema::{Column, Record, Type, Value, arrow_schema, ns_i64};

/// Number of per-probe columns.
pub const PROBE_NUM_COLUMNS: usize = 13;

/// Every per-probe column in order.
pub const PROBE_COLUMNS: &[Column] = &[
    Column::new("target", Type::Utf8, false, "Probed address"),
    Column::new(
        "probe",
        Type::UInt64,
        false,
        "Probe number within the run's family (the order probes were sent in)",
    ),
    Column::new(
        "attempt",
        Type::UInt8,
        false,
        "Which try at this round of the target the probe was: 0 for the first, then retries",
    ),
    Column::new(
        "sent_time",
        Type::Timestamp,
        true,
        "Send stamp (UTC, microseconds; the point asdic.stamps names); null if unknown",
    ),
    Column::new(
        "sent_unix_ns",
        Type::Int64,
        true,
        "sent_time in nanoseconds since the Unix epoch; null if unknown",
    ),
    Column::new(
        "outcome",
        Type::Utf8,
        false,
        "reply, error, timeout, send_failed, late or duplicate (the last two are extra rows \
         for replies that came after the probe timed out or a second time)",
    ),
    Column::new(
        "rtt_us",
        Type::Float64,
        true,
        "Microseconds from the send stamp to the reply's or error's receive stamp; null for \
         timeouts and failed sends",
    ),
    Column::new(
        "reply_ttl",
        Type::UInt8,
        true,
        "TTL / hop limit the reply arrived with; null unless outcome is reply",
    ),
    Column::new(
        "responder",
        Type::Utf8,
        true,
        "Who answered: the target for a reply, the router for an error",
    ),
    Column::new(
        "error_type",
        Type::UInt8,
        true,
        "ICMP type of the error; null unless outcome is error",
    ),
    Column::new(
        "error_code",
        Type::UInt8,
        true,
        "ICMP code of the error; null unless outcome is error",
    ),
    Column::new(
        "error_name",
        Type::Utf8,
        true,
        "IANA name of the error's type and code; null unless outcome is error",
    ),
    Column::new(
        "send_errno",
        Type::Int32,
        true,
        "The local stack's error number; null unless outcome is send_failed",
    ),
];

const _: () = assert!(PROBE_COLUMNS.len() == PROBE_NUM_COLUMNS);

static PROBE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| arrow_schema(PROBE_COLUMNS));

/// The Arrow schema of per-probe output, in [`PROBE_COLUMNS`] order.
pub fn probe_schema() -> SchemaRef {
    Arc::clone(&PROBE_SCHEMA)
}

/// What one probe drew (or one extra reply to it), as kept: 56 bytes (a unit test holds it).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Kept {
    /// The target's index in the run's list (its cookie).
    index: u32,
    attempt: u8,
    /// 0 reply, 1 error, 2 timeout, 3 send_failed, 4 late, 5 duplicate.
    kind: u8,
    /// Reply TTL (replies), ICMP type and code (errors).
    ttl: Option<u8>,
    icmp: Option<(bool, u8, u8)>,
    probe: u64,
    /// Send stamp, 0 when unknown.
    sent_ns: u64,
    /// RTT (ns) of answers; errno of failed sends.
    rtt_or_errno: i64,
    /// Who answered, where it is not the target (an error's router).
    from: Option<IpAddr>,
}

const KINDS: [&str; 6] = [
    "reply",
    "error",
    "timeout",
    "send_failed",
    "late",
    "duplicate",
];

/// The probes of a run, kept in the order their outcomes came, for rows by target and probe.
#[derive(Debug, Clone)]
pub struct Probes {
    targets: Arc<dyn TargetList>,
    kept: Vec<Kept>,
}

impl Probes {
    /// Probes to the targets of `targets` (an event's cookie is its target's index).
    pub fn over(targets: Arc<dyn TargetList>) -> Self {
        Probes {
            targets,
            kept: Vec::new(),
        }
    }

    /// Keeps what `events` tell of each probe.
    pub fn record_batch(&mut self, events: &[Event]) {
        self.kept.extend(events.iter().map(|e| {
            let (kind, rtt_or_errno, ttl, icmp, from) = match e.outcome {
                Outcome::Reply { rtt_ns, ttl, from } => (
                    0,
                    rtt_ns as i64,
                    ttl,
                    None,
                    (from != e.target).then_some(from),
                ),
                Outcome::Error {
                    family,
                    icmp_type,
                    code,
                    from,
                    rtt_ns,
                    ..
                } => (
                    1,
                    rtt_ns as i64,
                    None,
                    Some((family == asdic_wire::Family::V6, icmp_type, code)),
                    Some(from),
                ),
                Outcome::Timeout => (2, 0, None, None, None),
                Outcome::SendFailed { errno } => (3, i64::from(errno), None, None, None),
                Outcome::Late { rtt_ns } => (4, rtt_ns as i64, None, None, None),
                Outcome::Duplicate { rtt_ns } => (5, rtt_ns as i64, None, None, None),
            };
            Kept {
                index: e.cookie,
                attempt: e.attempt,
                kind,
                ttl,
                icmp,
                probe: e.probe.unwrap_or(0),
                sent_ns: e.sent_ns.unwrap_or(0),
                rtt_or_errno,
                from,
            }
        }));
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The rows, by target (in the list's order), then by probe number, each probe's own
    /// outcome before the extra replies to it.
    pub fn rows(&mut self) -> impl Iterator<Item = ProbeRow> + '_ {
        self.kept
            .sort_by_key(|k| (k.index, k.probe, u8::from(k.kind >= 4), k.kind));
        let targets = &self.targets;
        self.kept.iter().map(move |k| ProbeRow {
            target: targets
                .nth(u64::from(k.index))
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            probe: k.probe,
            attempt: k.attempt,
            sent_ns: (k.sent_ns != 0).then_some(k.sent_ns),
            outcome: KINDS[usize::from(k.kind)],
            rtt_ns: (k.kind != 2 && k.kind != 3).then_some(k.rtt_or_errno as u64),
            reply_ttl: k.ttl,
            responder: match k.kind {
                0 => Some(k.from.unwrap_or_else(|| {
                    targets
                        .nth(u64::from(k.index))
                        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
                })),
                _ => k.from,
            },
            icmp: k.icmp.map(|(v6, ty, code)| Describe {
                family: if v6 {
                    asdic_wire::Family::V6
                } else {
                    asdic_wire::Family::V4
                },
                ty,
                code,
            }),
            errno: (k.kind == 3).then_some(k.rtt_or_errno as i32),
        })
    }
}

/// One probe's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeRow {
    /// The probed address.
    pub target: IpAddr,
    /// Its number.
    pub probe: u64,
    /// Which try.
    pub attempt: u8,
    /// Its send stamp.
    pub sent_ns: Option<u64>,
    /// What it drew.
    pub outcome: &'static str,
    /// Its RTT, for answers.
    pub rtt_ns: Option<u64>,
    /// A reply's TTL.
    pub reply_ttl: Option<u8>,
    /// Who answered.
    pub responder: Option<IpAddr>,
    /// An error's type and code.
    pub icmp: Option<Describe>,
    /// A failed send's errno.
    pub errno: Option<i32>,
}

impl ProbeRow {
    /// The row's cells in [`PROBE_COLUMNS`] order.
    pub fn values(&self) -> [Value<'static>; PROBE_NUM_COLUMNS] {
        [
            Value::Addr(self.target),
            Value::U64(self.probe),
            Value::U8(self.attempt),
            self.sent_ns.map_or(Value::Null, Value::Time),
            self.sent_ns
                .map_or(Value::Null, |ns| Value::I64(ns_i64(ns))),
            Value::Str(self.outcome),
            self.rtt_ns
                .map_or(Value::Null, |ns| Value::F64(ns as f64 / 1000.0)),
            self.reply_ttl.map_or(Value::Null, Value::U8),
            self.responder.map_or(Value::Null, Value::Addr),
            self.icmp.map_or(Value::Null, |d| Value::U8(d.ty)),
            self.icmp.map_or(Value::Null, |d| Value::U8(d.code)),
            self.icmp.map_or(Value::Null, Value::Icmp),
            self.errno.map_or(Value::Null, Value::I32),
        ]
    }
}

impl Record for ProbeRow {
    fn columns() -> &'static [Column] {
        PROBE_COLUMNS
    }

    fn schema() -> SchemaRef {
        probe_schema()
    }

    fn visit<'s>(&'s self, f: &mut dyn FnMut(Value<'s>)) {
        for value in self.values() {
            f(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(cookie: u32, probe: u64, outcome: Outcome) -> Event {
        Event {
            probe: Some(probe),
            cookie,
            target: IpAddr::from([198, 19, 0, cookie as u8 + 1]),
            sent_ns: Some(1_000 + probe),
            attempt: 0,
            outcome,
        }
    }

    #[test]
    fn a_kept_probe_takes_56_bytes() {
        assert_eq!(size_of::<Kept>(), 56);
    }

    #[test]
    fn rows_come_by_target_then_probe_with_what_each_drew() {
        let list: Vec<IpAddr> = vec![[198, 19, 0, 1].into(), [198, 19, 0, 2].into()];
        let mut p = Probes::over(Arc::new(list));
        let router = IpAddr::from([198, 18, 0, 2]);
        // Outcomes in the order they came: target 1's before target 0's, a late reply to
        // probe 2 after its timeout.
        p.record_batch(&[
            ev(1, 1, Outcome::Timeout),
            ev(
                0,
                0,
                Outcome::Reply {
                    rtt_ns: 12_345,
                    ttl: Some(63),
                    from: IpAddr::from([198, 19, 0, 1]),
                },
            ),
            ev(0, 2, Outcome::Late { rtt_ns: 2_000_000 }),
            ev(0, 2, Outcome::Timeout),
            ev(
                1,
                3,
                Outcome::Error {
                    family: asdic_wire::Family::V4,
                    icmp_type: 3,
                    code: 13,
                    from: router,
                    rtt_ns: 9_000,
                    rest: 0,
                    gateway: None,
                },
            ),
            ev(1, 5, Outcome::SendFailed { errno: 101 }),
        ]);
        assert_eq!(p.len(), 6);
        let rows: Vec<ProbeRow> = p.rows().collect();
        let seen: Vec<(u8, u64, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.target.to_string().ends_with(".1") as u8,
                    r.probe,
                    r.outcome,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, 0, "reply"),
                (1, 2, "timeout"),
                (1, 2, "late"),
                (0, 1, "timeout"),
                (0, 3, "error"),
                (0, 5, "send_failed"),
            ]
        );
        let v = rows[0].values();
        assert_eq!(v[0], Value::Addr(IpAddr::from([198, 19, 0, 1])));
        assert_eq!(v[3], Value::Time(1_000));
        assert_eq!(v[4], Value::I64(1_000));
        assert_eq!(v[6], Value::F64(12.345));
        assert_eq!(v[7], Value::U8(63));
        assert_eq!(v[8], Value::Addr(IpAddr::from([198, 19, 0, 1])));
        assert_eq!(rows[1].values()[6], Value::Null, "a timeout has no RTT");
        let e = rows[4].values();
        assert_eq!(
            (e[8], e[9], e[10]),
            (Value::Addr(router), Value::U8(3), Value::U8(13))
        );
        assert_eq!(rows[5].values()[12], Value::I32(101));
        assert_eq!(rows[5].values()[6], Value::Null);
        let text = format!("{}", e[11]);
        assert!(text.contains("Prohibited"), "{text}");
    }
}
