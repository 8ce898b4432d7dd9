//! Scan output: one [`ScanRow`] per probe event of `asdic scan`.
//!
//! An internet-wide reachability scan keeps no per-target statistics: each event the
//! receiver reports becomes one row, built by [`ScanRow::from_event`]. By default the
//! scan writes only [hits](ScanOutcome::is_hit) (targets that answered or drew an ICMP
//! error); with `--all-events`, every event. [`SCAN_COLUMNS`] documents the columns,
//! [`scan_schema()`] gives their Arrow types, and [`ScanRow`] is a [`Record`], so every
//! generic sink writes it.

use core::fmt;
use core::net::IpAddr;
use std::sync::{Arc, LazyLock};

use arrow_schema::SchemaRef;
use asdic_core::{Event, Outcome};
use asdic_wire::registry::Describe;

use crate::schema::{Column, Record, Type, Value, arrow_schema, ns_i64};

/// What happened to a probe, as the scan's `outcome` column names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanOutcome {
    /// An echo reply (terminal): `"reply"`.
    Reply,
    /// An ICMP error about the probe (terminal): `"error"`.
    Error,
    /// No answer within the timeout (terminal): `"timeout"`.
    Timeout,
    /// The local stack refused to send the probe (terminal): `"send_failed"`.
    SendFailed,
    /// An extra reply to a probe already answered: `"duplicate"`.
    Duplicate,
    /// A reply that came after its probe had timed out: `"late"`.
    Late,
}

impl ScanOutcome {
    /// Every outcome, in column-documentation order.
    pub const ALL: [ScanOutcome; 6] = [
        ScanOutcome::Reply,
        ScanOutcome::Error,
        ScanOutcome::Timeout,
        ScanOutcome::SendFailed,
        ScanOutcome::Duplicate,
        ScanOutcome::Late,
    ];

    /// The kind of a receiver [`Outcome`].
    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Reply { .. } => ScanOutcome::Reply,
            Outcome::Error { .. } => ScanOutcome::Error,
            Outcome::Timeout => ScanOutcome::Timeout,
            Outcome::SendFailed { .. } => ScanOutcome::SendFailed,
            Outcome::Duplicate { .. } => ScanOutcome::Duplicate,
            Outcome::Late { .. } => ScanOutcome::Late,
        }
    }

    /// The name written to the `outcome` column: `reply`, `error`, `timeout`,
    /// `send_failed`, `duplicate` or `late`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanOutcome::Reply => "reply",
            ScanOutcome::Error => "error",
            ScanOutcome::Timeout => "timeout",
            ScanOutcome::SendFailed => "send_failed",
            ScanOutcome::Duplicate => "duplicate",
            ScanOutcome::Late => "late",
        }
    }

    /// The outcome an `outcome` column value names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Whether the target showed up: an echo reply or an ICMP error (the rows a scan
    /// writes by default). Duplicates and late replies come in addition to a terminal
    /// outcome and are not hits.
    pub fn is_hit(self) -> bool {
        matches!(self, ScanOutcome::Reply | ScanOutcome::Error)
    }
}

impl fmt::Display for ScanOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of scan output columns.
pub const SCAN_NUM_COLUMNS: usize = 13;

/// The columns of scan's table that others read by name (the report): one declaration,
/// in the table below and wherever they are read.
pub mod scan_col {
    use crate::schema::{Column, Type};

    /// `target`.
    pub const TARGET: Column = Column::new("target", Type::Utf8, false, "Probed address");

    /// `outcome`.
    pub const OUTCOME: Column = Column::new(
        "outcome",
        Type::Utf8,
        false,
        "What happened: reply, error, timeout, send_failed, duplicate or late",
    );

    /// `rtt_us`.
    pub const RTT_US: Column = Column::new(
        "rtt_us",
        Type::Float64,
        true,
        "Time from send to the reply or ICMP error, microseconds; null for timeout and send_failed",
    );

    /// `responder`.
    pub const RESPONDER: Column = Column::new(
        "responder",
        Type::Utf8,
        true,
        "Sender of the ICMP error, or of a reply when not the target; null otherwise",
    );

    /// `icmp_type`.
    pub const ICMP_TYPE: Column = Column::new(
        "icmp_type",
        Type::UInt8,
        true,
        "ICMP type of the error (ICMPv6 for an IPv6 target); null unless outcome is error",
    );

    /// `icmp_code`.
    pub const ICMP_CODE: Column = Column::new(
        "icmp_code",
        Type::UInt8,
        true,
        "ICMP code of the error; null unless outcome is error",
    );

    /// `icmp_name`.
    pub const ICMP_NAME: Column = Column::new(
        "icmp_name",
        Type::Utf8,
        true,
        "IANA name of the error, \"Type / Code\"; null unless outcome is error",
    );

    /// `attempt`.
    pub const ATTEMPT: Column = Column::new(
        "attempt",
        Type::UInt8,
        false,
        "Which try at the target the probe was: 0 for the first, then 1, 2… for retries",
    );

    /// `sent_time`.
    pub const SENT_TIME: Column = Column::new(
        "sent_time",
        Type::Timestamp,
        true,
        "When the probe was sent (UTC, microseconds); null when not known (a timeout, or an \
         error that quoted too little of the probe)",
    );

    /// `sent_unix_ns`.
    pub const SENT_UNIX_NS: Column = Column::new(
        "sent_unix_ns",
        Type::Int64,
        true,
        "sent_time in nanoseconds since the Unix epoch (the stamp the RTT was made from); null \
         when sent_time is",
    );
}

/// Every scan output column in order, as (name, one-line description).
pub const SCAN_COLUMNS: &[Column] = &[
    scan_col::TARGET,
    scan_col::OUTCOME,
    scan_col::RTT_US,
    Column::new(
        "reply_ttl",
        Type::UInt8,
        true,
        "TTL / hop limit the reply arrived with; null unless outcome is reply and it was known",
    ),
    scan_col::RESPONDER,
    scan_col::ICMP_TYPE,
    scan_col::ICMP_CODE,
    scan_col::ICMP_NAME,
    Column::new(
        "send_errno",
        Type::Int32,
        true,
        "OS error number the send failed with; null unless outcome is send_failed",
    ),
    scan_col::ATTEMPT,
    Column::new(
        "probe",
        Type::UInt64,
        true,
        "The target's position in this shard's scan order (the same for its retries); null for \
         an ICMP error that quoted too little of the probe to carry it",
    ),
    scan_col::SENT_TIME,
    scan_col::SENT_UNIX_NS,
];

const _: () = assert!(SCAN_COLUMNS.len() == SCAN_NUM_COLUMNS);

static SCAN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| arrow_schema(SCAN_COLUMNS));

/// The Arrow schema of scan output, in [`SCAN_COLUMNS`] order.
pub fn scan_schema() -> SchemaRef {
    Arc::clone(&SCAN_SCHEMA)
}

/// One probe event of a scan, as written to every output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanRow {
    /// The probed address.
    pub target: IpAddr,
    /// What happened.
    pub outcome: ScanOutcome,
    /// Time from send to the reply or error, nanoseconds; `None` for timeouts and send
    /// failures.
    pub rtt_ns: Option<u64>,
    /// TTL / hop limit of a reply, when known (replies only).
    pub reply_ttl: Option<u8>,
    /// The sender of an ICMP error, or of a reply when it is not the target.
    pub responder: Option<IpAddr>,
    /// The ICMP error's family, type and code (errors only).
    pub icmp: Option<Describe>,
    /// The OS error number of a send failure.
    pub errno: Option<i32>,
    /// 0 for a target's first probe, then 1, 2… for its retries.
    pub attempt: u8,
    /// The target's position in the scan order, if known.
    pub probe: Option<u64>,
    /// When the probe was sent, ns since the Unix epoch, if known.
    pub sent_unix_ns: Option<u64>,
}

impl ScanRow {
    /// The row for `ev`, the probe being try number `attempt` (0 for the first) at its
    /// target (usually `ev.attempt`).
    pub fn from_event(ev: &Event, attempt: u8) -> Self {
        let mut row = ScanRow {
            target: ev.target,
            outcome: ScanOutcome::of(&ev.outcome),
            rtt_ns: None,
            reply_ttl: None,
            responder: None,
            icmp: None,
            errno: None,
            attempt,
            probe: ev.probe,
            sent_unix_ns: ev.sent_ns,
        };
        // Without the send time there is no round trip to tell.
        let rtt = |ns: u64| ev.sent_ns.map(|_| ns);
        match ev.outcome {
            Outcome::Reply { rtt_ns, ttl, from } => {
                row.rtt_ns = rtt(rtt_ns);
                row.reply_ttl = ttl;
                row.responder = (from != ev.target).then_some(from);
            }
            Outcome::Error {
                family,
                icmp_type,
                code,
                from,
                rtt_ns,
                ..
            } => {
                row.rtt_ns = rtt(rtt_ns);
                row.responder = Some(from);
                row.icmp = Some(Describe {
                    family,
                    ty: icmp_type,
                    code,
                });
            }
            Outcome::Timeout => {}
            Outcome::SendFailed { errno } => row.errno = Some(errno),
            Outcome::Duplicate { rtt_ns } | Outcome::Late { rtt_ns } => {
                row.rtt_ns = rtt(rtt_ns);
            }
        }
        row
    }

    /// Whether the row is a hit: an echo reply or an ICMP error.
    pub fn is_hit(&self) -> bool {
        self.outcome.is_hit()
    }

    /// The row's cells in [`SCAN_COLUMNS`] order.
    pub fn values(&self) -> [Value<'static>; SCAN_NUM_COLUMNS] {
        let icmp = self.icmp;
        [
            Value::Addr(self.target),
            Value::Str(self.outcome.as_str()),
            self.rtt_ns
                .map_or(Value::Null, |ns| Value::F64(ns as f64 / 1000.0)),
            self.reply_ttl.map_or(Value::Null, Value::U8),
            self.responder.map_or(Value::Null, Value::Addr),
            icmp.map_or(Value::Null, |d| Value::U8(d.ty)),
            icmp.map_or(Value::Null, |d| Value::U8(d.code)),
            icmp.map_or(Value::Null, Value::Icmp),
            self.errno.map_or(Value::Null, Value::I32),
            Value::U8(self.attempt),
            self.probe.map_or(Value::Null, Value::U64),
            self.sent_unix_ns.map_or(Value::Null, Value::Time),
            self.sent_unix_ns
                .map_or(Value::Null, |ns| Value::I64(ns_i64(ns))),
        ]
    }
}

impl Record for ScanRow {
    fn columns() -> &'static [Column] {
        SCAN_COLUMNS
    }

    fn schema() -> SchemaRef {
        scan_schema()
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
    use crate::error::Error;
    use crate::schema::record_batch;
    use crate::sink::tests::{read_parquet, temp_path};
    use crate::sink::{Format, ParquetSink, Sink, text_sink};
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt8Type, UInt64Type,
    };
    use arrow_array::{Array, RecordBatch};
    use asdic_wire::Family;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use std::fs;

    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    const TARGET6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    const ROUTER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe));

    fn event(target: IpAddr, outcome: Outcome) -> Event {
        Event {
            probe: Some(42),
            cookie: 7,
            target,
            sent_ns: Some(1_700_000_000_123_456_789),
            attempt: 0,
            outcome,
        }
    }

    /// A row with every field but `errno` empty, to fill in with struct update syntax.
    fn base(outcome: ScanOutcome, attempt: u8) -> ScanRow {
        ScanRow {
            target: TARGET,
            outcome,
            rtt_ns: None,
            reply_ttl: None,
            responder: None,
            icmp: None,
            errno: None,
            attempt,
            probe: Some(42),
            sent_unix_ns: Some(1_700_000_000_123_456_789),
        }
    }

    fn reply_row() -> ScanRow {
        ScanRow::from_event(
            &event(
                TARGET,
                Outcome::Reply {
                    rtt_ns: 12_345,
                    ttl: Some(57),
                    from: TARGET,
                },
            ),
            0,
        )
    }

    fn error_row() -> ScanRow {
        ScanRow::from_event(
            &event(
                TARGET,
                Outcome::Error {
                    family: Family::V4,
                    icmp_type: 3,
                    code: 13,
                    from: ROUTER,
                    rtt_ns: 1_500_000,
                    rest: 0,
                    gateway: None,
                },
            ),
            1,
        )
    }

    fn timeout_row() -> ScanRow {
        ScanRow::from_event(&event(TARGET6, Outcome::Timeout), 2)
    }

    #[test]
    fn from_event_every_outcome() {
        let cases = [
            (
                event(
                    TARGET,
                    Outcome::Reply {
                        rtt_ns: 12_345,
                        ttl: Some(57),
                        from: TARGET,
                    },
                ),
                ScanRow {
                    rtt_ns: Some(12_345),
                    reply_ttl: Some(57),
                    ..base(ScanOutcome::Reply, 0)
                },
            ),
            (
                // A reply from another address names it; an unknown TTL stays null.
                event(
                    TARGET,
                    Outcome::Reply {
                        rtt_ns: 9,
                        ttl: None,
                        from: ROUTER,
                    },
                ),
                ScanRow {
                    rtt_ns: Some(9),
                    responder: Some(ROUTER),
                    ..base(ScanOutcome::Reply, 0)
                },
            ),
            (
                event(
                    TARGET,
                    Outcome::Error {
                        family: Family::V4,
                        icmp_type: 3,
                        code: 13,
                        from: ROUTER,
                        rtt_ns: 1_500_000,
                        rest: 0,
                        gateway: None,
                    },
                ),
                ScanRow {
                    rtt_ns: Some(1_500_000),
                    responder: Some(ROUTER),
                    icmp: Some(Describe {
                        family: Family::V4,
                        ty: 3,
                        code: 13,
                    }),
                    ..base(ScanOutcome::Error, 0)
                },
            ),
            (
                // The target itself may send the error (port unreachable…).
                event(
                    TARGET6,
                    Outcome::Error {
                        family: Family::V6,
                        icmp_type: 1,
                        code: 1,
                        from: TARGET6,
                        rtt_ns: 77,
                        rest: 0,
                        gateway: None,
                    },
                ),
                ScanRow {
                    target: TARGET6,
                    rtt_ns: Some(77),
                    responder: Some(TARGET6),
                    icmp: Some(Describe {
                        family: Family::V6,
                        ty: 1,
                        code: 1,
                    }),
                    ..base(ScanOutcome::Error, 0)
                },
            ),
            (
                event(TARGET, Outcome::Timeout),
                base(ScanOutcome::Timeout, 0),
            ),
            (
                event(TARGET, Outcome::SendFailed { errno: 101 }),
                ScanRow {
                    errno: Some(101),
                    ..base(ScanOutcome::SendFailed, 0)
                },
            ),
            (
                event(TARGET, Outcome::Duplicate { rtt_ns: 20_000 }),
                ScanRow {
                    rtt_ns: Some(20_000),
                    ..base(ScanOutcome::Duplicate, 0)
                },
            ),
            (
                event(
                    TARGET,
                    Outcome::Late {
                        rtt_ns: 3_000_000_000,
                    },
                ),
                ScanRow {
                    rtt_ns: Some(3_000_000_000),
                    ..base(ScanOutcome::Late, 0)
                },
            ),
        ];
        for (ev, expected) in cases {
            for attempt in [0, 3, u8::MAX] {
                let expected = ScanRow {
                    attempt,
                    ..expected
                };
                assert_eq!(ScanRow::from_event(&ev, attempt), expected, "{ev:?}");
            }
        }
    }

    #[test]
    fn outcome_names_and_hits() {
        let names: Vec<&str> = ScanOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            [
                "reply",
                "error",
                "timeout",
                "send_failed",
                "duplicate",
                "late"
            ]
        );
        let hits: Vec<bool> = ScanOutcome::ALL.iter().map(|o| o.is_hit()).collect();
        assert_eq!(hits, [true, true, false, false, false, false]);
        for o in ScanOutcome::ALL {
            assert_eq!(o.to_string(), o.as_str());
        }
        assert!(reply_row().is_hit() && error_row().is_hit() && !timeout_row().is_hit());
    }

    #[test]
    fn schema_and_columns_agree() {
        let schema = scan_schema();
        assert_eq!(schema.fields().len(), SCAN_NUM_COLUMNS);
        assert_eq!(<ScanRow as Record>::columns(), SCAN_COLUMNS);
        assert_eq!(<ScanRow as Record>::schema(), schema);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let documented: Vec<&str> = SCAN_COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names, documented);
        assert_eq!(
            names,
            [
                "target",
                "outcome",
                "rtt_us",
                "reply_ttl",
                "responder",
                "icmp_type",
                "icmp_code",
                "icmp_name",
                "send_errno",
                "attempt",
                "probe",
                "sent_time",
                "sent_unix_ns"
            ]
        );
        for c in SCAN_COLUMNS {
            assert!(!c.doc.is_empty(), "{}", c.name);
            assert!(!c.doc.contains('\n'), "{}", c.name);
        }
        // Every row's cells fit their columns: right type, null only where nullable.
        for row in [reply_row(), error_row(), timeout_row()] {
            let values = row.values();
            for (value, field) in values.iter().zip(schema.fields()) {
                let fits = value.fits(field);
                assert!(fits, "{} = {value:?}", field.name());
            }
            let mut visited = Vec::new();
            row.visit(&mut |v| visited.push(v));
            assert_eq!(visited, values);
        }
    }

    fn render(format: Format, rows: &[ScanRow]) -> String {
        let mut buf = Vec::new();
        let mut sink = text_sink(format, &mut buf).unwrap();
        sink.write_rows(rows).unwrap();
        sink.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn csv_exact() {
        let failed = ScanRow::from_event(&event(TARGET, Outcome::SendFailed { errno: -1 }), 0);
        let text = render(
            Format::Csv,
            &[reply_row(), error_row(), timeout_row(), failed],
        );
        let expected = "\
target,outcome,rtt_us,reply_ttl,responder,icmp_type,icmp_code,icmp_name,send_errno,attempt,probe,sent_time,sent_unix_ns
192.0.2.1,reply,12.345,57,,,,,,0,42,2023-11-14T22:13:20.123456Z,1700000000123456789
192.0.2.1,error,1500,,198.51.100.7,3,13,Destination Unreachable / Communication Administratively Prohibited,,1,42,2023-11-14T22:13:20.123456Z,1700000000123456789
2001:db8::1,timeout,,,,,,,,2,42,2023-11-14T22:13:20.123456Z,1700000000123456789
192.0.2.1,send_failed,,,,,,,-1,0,42,2023-11-14T22:13:20.123456Z,1700000000123456789
";
        assert_eq!(text, expected);
        // Header alone when nothing was written.
        assert_eq!(
            render(Format::Csv, &[]),
            expected.lines().next().unwrap().to_owned() + "\n"
        );
    }

    #[test]
    fn jsonl_exact() {
        let ipv6_error = ScanRow::from_event(
            &event(
                TARGET6,
                Outcome::Error {
                    family: Family::V6,
                    icmp_type: 1,
                    code: 1,
                    from: ROUTER6,
                    rtt_ns: 250,
                    rest: 0,
                    gateway: None,
                },
            ),
            0,
        );
        let text = render(
            Format::Jsonl,
            &[reply_row(), error_row(), timeout_row(), ipv6_error],
        );
        let expected = concat!(
            r#"{"target":"192.0.2.1","outcome":"reply","rtt_us":12.345,"reply_ttl":57,"#,
            r#""responder":null,"icmp_type":null,"icmp_code":null,"icmp_name":null,"#,
            r#""send_errno":null,"attempt":0,"probe":42,"#,
            r#""sent_time":"2023-11-14T22:13:20.123456Z","sent_unix_ns":1700000000123456789}"#,
            "\n",
            r#"{"target":"192.0.2.1","outcome":"error","rtt_us":1500,"reply_ttl":null,"#,
            r#""responder":"198.51.100.7","icmp_type":3,"icmp_code":13,"#,
            r#""icmp_name":"Destination Unreachable / Communication Administratively Prohibited","#,
            r#""send_errno":null,"attempt":1,"probe":42,"#,
            r#""sent_time":"2023-11-14T22:13:20.123456Z","sent_unix_ns":1700000000123456789}"#,
            "\n",
            r#"{"target":"2001:db8::1","outcome":"timeout","rtt_us":null,"reply_ttl":null,"#,
            r#""responder":null,"icmp_type":null,"icmp_code":null,"icmp_name":null,"#,
            r#""send_errno":null,"attempt":2,"probe":42,"#,
            r#""sent_time":"2023-11-14T22:13:20.123456Z","sent_unix_ns":1700000000123456789}"#,
            "\n",
            r#"{"target":"2001:db8::1","outcome":"error","rtt_us":0.25,"reply_ttl":null,"#,
            r#""responder":"2001:db8::fe","icmp_type":1,"icmp_code":1,"#,
            r#""icmp_name":"Destination Unreachable / Communication with destination administratively prohibited","#,
            r#""send_errno":null,"attempt":0,"probe":42,"#,
            r#""sent_time":"2023-11-14T22:13:20.123456Z","sent_unix_ns":1700000000123456789}"#,
            "\n",
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn record_batch_values() {
        let batch = record_batch(&[reply_row(), error_row(), timeout_row()]).unwrap();
        assert_eq!(batch.schema(), scan_schema());
        assert_eq!(batch.num_rows(), 3);
        check_batch(&batch, 0);
    }

    /// Checks rows `at..at + 3` of `batch` hold the reply, error and timeout rows.
    fn check_batch(batch: &RecordBatch, at: usize) {
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let (r, e, t) = (at, at + 1, at + 2);

        let target = col("target");
        let target = target.as_string::<i32>();
        assert_eq!(
            (target.value(r), target.value(e), target.value(t)),
            ("192.0.2.1", "192.0.2.1", "2001:db8::1")
        );
        let outcome = col("outcome");
        let outcome = outcome.as_string::<i32>();
        assert_eq!(
            (outcome.value(r), outcome.value(e), outcome.value(t)),
            ("reply", "error", "timeout")
        );
        let rtt = col("rtt_us");
        let rtt = rtt.as_primitive::<Float64Type>();
        assert_eq!((rtt.value(r), rtt.value(e)), (12.345, 1500.0));
        assert!(rtt.is_null(t));
        let ttl = col("reply_ttl");
        let ttl = ttl.as_primitive::<UInt8Type>();
        assert_eq!(ttl.value(r), 57);
        assert!(ttl.is_null(e) && ttl.is_null(t));
        let responder = col("responder");
        assert!(responder.is_null(r) && responder.is_null(t));
        assert_eq!(responder.as_string::<i32>().value(e), "198.51.100.7");
        for name in ["icmp_type", "icmp_code", "icmp_name"] {
            let c = col(name);
            assert!(c.is_null(r) && c.is_valid(e) && c.is_null(t), "{name}");
        }
        assert_eq!(col("icmp_type").as_primitive::<UInt8Type>().value(e), 3);
        assert_eq!(col("icmp_code").as_primitive::<UInt8Type>().value(e), 13);
        assert_eq!(
            col("icmp_name").as_string::<i32>().value(e),
            "Destination Unreachable / Communication Administratively Prohibited"
        );
        let errno = col("send_errno");
        assert!(errno.is_null(r) && errno.is_null(e) && errno.is_null(t));
        let attempt = col("attempt");
        let attempt = attempt.as_primitive::<UInt8Type>();
        assert_eq!(
            (attempt.value(r), attempt.value(e), attempt.value(t)),
            (0, 1, 2)
        );
        assert_eq!(col("probe").as_primitive::<UInt64Type>().value(e), 42);
        assert_eq!(
            col("sent_unix_ns").as_primitive::<Int64Type>().value(t),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            col("sent_time")
                .as_primitive::<TimestampMicrosecondType>()
                .value(t),
            1_700_000_000_123_456
        );
        for name in [
            "target",
            "outcome",
            "attempt",
            "probe",
            "sent_time",
            "sent_unix_ns",
        ] {
            assert_eq!(col(name).null_count(), 0, "{name}");
        }
    }

    #[test]
    fn parquet_round_trip() {
        let path = temp_path("scan-round-trip");
        let failed = ScanRow::from_event(&event(TARGET, Outcome::SendFailed { errno: 13 }), 0);
        let mut sink = ParquetSink::<ScanRow>::create(
            &path,
            vec![("asdic.command".into(), "asdic scan 192.0.2.0/24".into())],
        )
        .unwrap();
        sink.write_rows(&[reply_row(), error_row(), timeout_row(), failed])
            .unwrap();
        sink.add_metadata("asdic.end", "2026-01-01T00:00:00Z");
        Box::new(sink).finish().unwrap();

        let (metadata, batches) = read_parquet(&path);
        fs::remove_file(&path).unwrap();
        let kv = metadata.file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|kv| kv.key == "asdic.end"));
        assert!(
            kv.iter()
                .any(|kv| kv.value.as_deref() == Some("asdic scan 192.0.2.0/24"))
        );
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.schema().fields(), scan_schema().fields());
        assert_eq!(batch.num_rows(), 4);
        check_batch(batch, 0);
        let errno = batch.column_by_name("send_errno").unwrap();
        assert_eq!(errno.as_primitive::<Int32Type>().value(3), 13);
        assert_eq!(errno.null_count(), 3);
        let outcome = batch.column_by_name("outcome").unwrap();
        assert_eq!(outcome.as_string::<i32>().value(3), "send_failed");
        assert_eq!(
            rows_from_batches(&batches),
            [reply_row(), error_row(), timeout_row(), failed]
        );
    }

    #[test]
    fn parquet_flush_cuts_row_groups() {
        let path = temp_path("scan-flush");
        let mut sink = ParquetSink::<ScanRow>::create(&path, Vec::new()).unwrap();
        assert_eq!(sink.buffered_rows(), 0);
        // Nothing buffered: no empty row group.
        sink.flush().unwrap();
        sink.write_rows(&[reply_row(), error_row()]).unwrap();
        assert_eq!(sink.buffered_rows(), 2);
        assert!(sink.buffered_bytes() > 0);
        sink.flush().unwrap();
        assert_eq!(sink.buffered_rows(), 0);
        sink.flush().unwrap();
        sink.write_rows(&[timeout_row()]).unwrap();
        Box::new(sink).finish().unwrap();

        let (metadata, batches) = read_parquet(&path);
        fs::remove_file(&path).unwrap();
        assert_eq!(metadata.num_row_groups(), 2);
        let sizes: Vec<i64> = metadata
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows())
            .collect();
        assert_eq!(sizes, [2, 1]);
        assert_eq!(
            rows_from_batches(&batches),
            [reply_row(), error_row(), timeout_row()]
        );
    }

    #[test]
    fn parquet_row_group_size_is_chosen_at_creation() {
        let path = temp_path("scan-groups");
        let mut sink = ParquetSink::<ScanRow>::with_row_groups(&path, Vec::new(), 2).unwrap();
        let rows = [
            reply_row(),
            error_row(),
            timeout_row(),
            reply_row(),
            error_row(),
        ];
        sink.write_rows(&rows).unwrap();
        Box::new(sink).finish().unwrap();
        let (metadata, batches) = read_parquet(&path);
        fs::remove_file(&path).unwrap();
        let sizes: Vec<i64> = metadata
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows())
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(rows_from_batches(&batches), rows);
    }

    /// Every row of `batches`, back as [`ScanRow`]s.
    fn rows_from_batches(batches: &[RecordBatch]) -> Vec<ScanRow> {
        batches
            .iter()
            .flat_map(|b| (0..b.num_rows()).map(move |i| row_from_batch(b, i)))
            .collect()
    }

    /// Row `i` of a scan record batch, back as a [`ScanRow`].
    fn row_from_batch(batch: &RecordBatch, i: usize) -> ScanRow {
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let text = |name: &str| {
            let c = col(name);
            c.is_valid(i)
                .then(|| c.as_string::<i32>().value(i).to_owned())
        };
        let u8_at = |name: &str| {
            let c = col(name);
            c.is_valid(i)
                .then(|| c.as_primitive::<UInt8Type>().value(i))
        };
        let u64_at = |name: &str| {
            let c = col(name);
            c.is_valid(i)
                .then(|| c.as_primitive::<UInt64Type>().value(i))
        };
        let outcome = text("outcome").unwrap();
        let outcome = *ScanOutcome::ALL
            .iter()
            .find(|o| o.as_str() == outcome)
            .unwrap();
        let target: IpAddr = text("target").unwrap().parse().unwrap();
        let rtt = col("rtt_us");
        let errno = col("send_errno");
        let family = if target.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        ScanRow {
            target,
            outcome,
            rtt_ns: rtt
                .is_valid(i)
                .then(|| (rtt.as_primitive::<Float64Type>().value(i) * 1000.0).round() as u64),
            reply_ttl: u8_at("reply_ttl"),
            responder: text("responder").map(|s| s.parse().unwrap()),
            icmp: u8_at("icmp_type").map(|ty| Describe {
                family,
                ty,
                code: u8_at("icmp_code").unwrap(),
            }),
            errno: errno
                .is_valid(i)
                .then(|| errno.as_primitive::<Int32Type>().value(i)),
            attempt: u8_at("attempt").unwrap(),
            probe: u64_at("probe"),
            sent_unix_ns: {
                let c = col("sent_unix_ns");
                c.is_valid(i)
                    .then(|| c.as_primitive::<Int64Type>().value(i) as u64)
            },
        }
    }

    /// A record whose cells do not match its columns, as a buggy implementation might.
    #[derive(Debug)]
    struct Bad {
        cells: usize,
        wrong_type: bool,
    }

    impl Record for Bad {
        fn columns() -> &'static [Column] {
            const COLUMNS: &[Column] = &[
                Column::new("a", Type::UInt64, false, "First"),
                Column::new("b", Type::UInt64, false, "Second"),
            ];
            COLUMNS
        }

        fn schema() -> SchemaRef {
            arrow_schema(Self::columns())
        }

        fn visit<'s>(&'s self, f: &mut dyn FnMut(Value<'s>)) {
            for i in 0..self.cells {
                f(if self.wrong_type && i == 1 {
                    Value::Str("x")
                } else {
                    Value::U64(i as u64)
                });
            }
        }
    }

    #[test]
    fn cell_mismatch_is_an_error() {
        let good = Bad {
            cells: 2,
            wrong_type: false,
        };
        assert_eq!(record_batch(&[good]).unwrap().num_rows(), 1);
        assert_eq!(render_bad(Format::Csv, 2).unwrap(), "a,b\n0,1\n");
        assert_eq!(render_bad(Format::Jsonl, 2).unwrap(), "{\"a\":0,\"b\":1}\n");
        for cells in [0, 1, 3] {
            let bad = Bad {
                cells,
                wrong_type: false,
            };
            assert!(
                matches!(
                    record_batch(&[bad]),
                    Err(Error::CellCount { columns: 2, cells: c }) if c == cells
                ),
                "{cells}"
            );
            for format in [Format::Csv, Format::Jsonl] {
                assert!(
                    matches!(
                        render_bad(format, cells),
                        Err(Error::CellCount { columns: 2, cells: c }) if c == cells
                    ),
                    "{format:?} {cells}"
                );
            }
        }
        let wrong = Bad {
            cells: 2,
            wrong_type: true,
        };
        assert!(matches!(
            record_batch(&[wrong]),
            Err(Error::ColumnType { column: "b" })
        ));
    }

    fn render_bad(format: Format, cells: usize) -> crate::Result<String> {
        let mut buf = Vec::new();
        let mut sink = text_sink(format, &mut buf).unwrap();
        sink.write_rows(&[Bad {
            cells,
            wrong_type: false,
        }])?;
        sink.finish()?;
        Ok(String::from_utf8(buf).unwrap())
    }
}
