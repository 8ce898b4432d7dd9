//! Sweep output: one row per probe result, one per alarm state change, and one per target
//! with its window statistics when a file closes.

use core::fmt;
use core::net::IpAddr;
use std::sync::{Arc, LazyLock};

use arrow_schema::SchemaRef;
use asdic_core::Outcome;
use asdic_wire::registry::Describe;

use crate::fleet::FleetTarget;
use crate::schema::{Column, Record, Type, Value, arrow_schema, ns_i64};
use crate::window::WindowStats;

/// What a sweep row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepEvent {
    /// An echo reply.
    Reply,
    /// An ICMP error about the probe (a loss).
    Error,
    /// No answer within the timeout (a loss).
    Timeout,
    /// The local stack refused the probe (a loss).
    SendFailed,
    /// An extra reply to an answered probe.
    Duplicate,
    /// A reply after the timeout.
    Late,
    /// The target went into alarm.
    Alarm,
    /// The target came out of alarm.
    Ok,
    /// The target's window statistics when the file closed.
    Window,
}

impl SweepEvent {
    /// Every event, in declaration order.
    pub const ALL: [SweepEvent; 9] = [
        SweepEvent::Reply,
        SweepEvent::Error,
        SweepEvent::Timeout,
        SweepEvent::SendFailed,
        SweepEvent::Duplicate,
        SweepEvent::Late,
        SweepEvent::Alarm,
        SweepEvent::Ok,
        SweepEvent::Window,
    ];

    /// The event an `event` column value names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event of a probe outcome.
    pub fn of(o: &Outcome) -> Self {
        match o {
            Outcome::Reply { .. } => SweepEvent::Reply,
            Outcome::Error { .. } => SweepEvent::Error,
            Outcome::Timeout => SweepEvent::Timeout,
            Outcome::SendFailed { .. } => SweepEvent::SendFailed,
            Outcome::Duplicate { .. } => SweepEvent::Duplicate,
            Outcome::Late { .. } => SweepEvent::Late,
        }
    }

    /// Its name in the `event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SweepEvent::Reply => "reply",
            SweepEvent::Error => "error",
            SweepEvent::Timeout => "timeout",
            SweepEvent::SendFailed => "send_failed",
            SweepEvent::Duplicate => "duplicate",
            SweepEvent::Late => "late",
            SweepEvent::Alarm => "alarm",
            SweepEvent::Ok => "ok",
            SweepEvent::Window => "window",
        }
    }
}

impl fmt::Display for SweepEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Number of sweep columns.
pub const SWEEP_NUM_COLUMNS: usize = 28;

/// The columns of sweep's table that others read by name (the report): one declaration,
/// in the table below and wherever they are read.
pub mod sweep_col {
    use crate::schema::{Column, Type};

    /// `time`.
    pub const TIME: Column = Column::new(
        "time",
        Type::Timestamp,
        false,
        "Probe rows: when the probe was sent; alarm/ok/window rows: when the row was made (UTC, microseconds)",
    );

    /// `time_unix_ns`.
    pub const TIME_UNIX_NS: Column = Column::new(
        "time_unix_ns",
        Type::Int64,
        false,
        "time in nanoseconds since the Unix epoch (a probe's send stamp)",
    );

    /// `target`.
    pub const TARGET: Column = Column::new("target", Type::Utf8, false, "The target's address");

    /// `name`.
    pub const NAME: Column = Column::new(
        "name",
        Type::Utf8,
        true,
        "The target's name from the targets file; null if none",
    );

    /// `event`.
    pub const EVENT: Column = Column::new(
        "event",
        Type::Utf8,
        false,
        "reply, error, timeout, send_failed, duplicate, late (probe rows); alarm, ok (state changes); window (statistics when the file closed)",
    );

    /// `rtt_us`.
    pub const RTT_US: Column = Column::new(
        "rtt_us",
        Type::Float64,
        true,
        "Probe rows: reply or error RTT, microseconds; null for timeouts and failed sends",
    );

    /// `responder`.
    pub const RESPONDER: Column = Column::new(
        "responder",
        Type::Utf8,
        true,
        "Sender of an ICMP error, or of a reply when it is not the target; null otherwise",
    );

    /// `icmp_type`.
    pub const ICMP_TYPE: Column = Column::new(
        "icmp_type",
        Type::UInt8,
        true,
        "ICMP type of an error; null otherwise",
    );

    /// `icmp_code`.
    pub const ICMP_CODE: Column = Column::new(
        "icmp_code",
        Type::UInt8,
        true,
        "ICMP code of an error; null otherwise",
    );

    /// `icmp_name`.
    pub const ICMP_NAME: Column = Column::new(
        "icmp_name",
        Type::Utf8,
        true,
        "IANA name of an error, \"Type / Code\"; null otherwise",
    );
}

/// Every sweep column in order, as (name, one-line description).
pub const SWEEP_COLUMNS: &[Column] = &[
    sweep_col::TIME,
    sweep_col::TIME_UNIX_NS,
    sweep_col::TARGET,
    sweep_col::NAME,
    Column::new(
        "psize",
        Type::UInt64,
        false,
        "Packet size as the targets file wrote it (NetXMS psize, IP header included), or as -s implies; the metrics' size label",
    ),
    Column::new(
        "payload_size",
        Type::UInt64,
        false,
        "ICMP payload bytes of the target's probes",
    ),
    sweep_col::EVENT,
    sweep_col::RTT_US,
    Column::new(
        "reply_ttl",
        Type::UInt8,
        true,
        "TTL / hop limit of a reply; null otherwise",
    ),
    sweep_col::RESPONDER,
    sweep_col::ICMP_TYPE,
    sweep_col::ICMP_CODE,
    sweep_col::ICMP_NAME,
    Column::new(
        "probe",
        Type::UInt64,
        true,
        "Probe number within the run (probe rows)",
    ),
    Column::new(
        "in_alarm",
        Type::Boolean,
        true,
        "alarm/ok/window rows: whether the target is in alarm",
    ),
    Column::new(
        "reason",
        Type::Utf8,
        true,
        "alarm/ok rows: the limit broken, or the values back within limits",
    ),
    Column::new(
        "send_errno",
        Type::Int32,
        true,
        "OS error number the send failed with; null unless event is send_failed",
    ),
    Column::new(
        "window_probes",
        Type::UInt64,
        true,
        "alarm/ok/window rows: probes ended within the window",
    ),
    Column::new(
        "loss_pct",
        Type::Float64,
        true,
        "alarm/ok/window rows: 100 × lost / probes in the window (NetXMS PacketLoss)",
    ),
    Column::new(
        "rtt_last_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: RTT of the latest probe, null if it was lost (NetXMS LastPingTime)",
    ),
    Column::new(
        "rtt_min_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: smallest reply RTT in the window",
    ),
    Column::new(
        "rtt_avg_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: mean reply RTT in the window (NetXMS AvgPingTime)",
    ),
    Column::new(
        "rtt_max_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: largest reply RTT in the window",
    ),
    Column::new(
        "rtt_stddev_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: population standard deviation of reply RTTs (NetXMS PingStdDev)",
    ),
    Column::new(
        "rtt_p50_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: median reply RTT (nearest rank)",
    ),
    Column::new(
        "rtt_p90_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: 90th percentile reply RTT",
    ),
    Column::new(
        "rtt_p99_us",
        Type::Float64,
        true,
        "alarm/ok/window rows: 99th percentile reply RTT",
    ),
    Column::new(
        "window_replies",
        Type::UInt64,
        true,
        "alarm/ok/window rows: replies within the window",
    ),
];

const _: () = assert!(SWEEP_COLUMNS.len() == SWEEP_NUM_COLUMNS);

static SWEEP_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| arrow_schema(SWEEP_COLUMNS));

/// The Arrow schema of sweep output, in [`SWEEP_COLUMNS`] order.
pub fn sweep_schema() -> SchemaRef {
    Arc::clone(&SWEEP_SCHEMA)
}

/// One sweep row.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    /// See [`SWEEP_COLUMNS`].
    pub time_unix_ns: u64,
    /// The target.
    pub target: IpAddr,
    /// Its name (shared, so rows do not allocate).
    pub name: Option<Arc<str>>,
    /// Its probes' payload bytes.
    pub size: usize,
    /// Its packet size as written (NetXMS psize).
    pub psize: u32,
    /// What the row records.
    pub event: SweepEvent,
    /// RTT of a probe row, ns.
    pub rtt_ns: Option<u64>,
    /// Reply TTL.
    pub reply_ttl: Option<u8>,
    /// Error sender, or a replier other than the target.
    pub responder: Option<IpAddr>,
    /// ICMP error.
    pub icmp: Option<Describe>,
    /// Probe number.
    pub probe: Option<u64>,
    /// Alarm state (state and window rows).
    pub alarm: Option<bool>,
    /// Why the state changed.
    pub reason: Option<String>,
    /// The OS error number of a failed send.
    pub errno: Option<i32>,
    /// Window statistics (state and window rows).
    pub stats: Option<WindowStats>,
}

impl SweepRow {
    /// A row about `t` with every optional cell empty.
    pub fn new(time_unix_ns: u64, t: &FleetTarget, event: SweepEvent) -> Self {
        SweepRow {
            time_unix_ns,
            target: t.addr,
            name: t.name.clone(),
            size: t.size,
            psize: t.psize,
            event,
            rtt_ns: None,
            reply_ttl: None,
            responder: None,
            icmp: None,
            probe: None,
            alarm: None,
            reason: None,
            errno: None,
            stats: None,
        }
    }
}

fn opt_f64(x: Option<f64>) -> Value<'static> {
    x.map_or(Value::Null, Value::F64)
}

impl Record for SweepRow {
    fn columns() -> &'static [Column] {
        SWEEP_COLUMNS
    }

    fn schema() -> SchemaRef {
        sweep_schema()
    }

    fn visit<'s>(&'s self, f: &mut dyn FnMut(Value<'s>)) {
        let s = self.stats;
        let st = |g: fn(&WindowStats) -> Option<f64>| opt_f64(s.as_ref().and_then(g));
        f(Value::Time(self.time_unix_ns));
        f(Value::I64(ns_i64(self.time_unix_ns)));
        f(Value::Addr(self.target));
        f(self.name.as_deref().map_or(Value::Null, Value::Str));
        f(Value::U64(u64::from(self.psize)));
        f(Value::U64(self.size as u64));
        f(Value::Str(self.event.as_str()));
        f(opt_f64(self.rtt_ns.map(|ns| ns as f64 / 1000.0)));
        f(self.reply_ttl.map_or(Value::Null, Value::U8));
        f(self.responder.map_or(Value::Null, Value::Addr));
        f(self.icmp.map_or(Value::Null, |d| Value::U8(d.ty)));
        f(self.icmp.map_or(Value::Null, |d| Value::U8(d.code)));
        f(self.icmp.map_or(Value::Null, Value::Icmp));
        f(self.probe.map_or(Value::Null, Value::U64));
        f(self.alarm.map_or(Value::Null, Value::Bool));
        f(self.reason.as_deref().map_or(Value::Null, Value::Str));
        f(self.errno.map_or(Value::Null, Value::I32));
        f(s.map_or(Value::Null, |s| Value::U64(u64::from(s.probes))));
        f(st(|s| s.loss_pct));
        f(st(|s| s.last_us));
        f(st(|s| s.min_us));
        f(st(|s| s.avg_us));
        f(st(|s| s.max_us));
        f(st(|s| s.stddev_us));
        f(st(|s| s.p50_us));
        f(st(|s| s.p90_us));
        f(st(|s| s.p99_us));
        f(s.map_or(Value::Null, |s| Value::U64(u64::from(s.replies))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Limits;
    use crate::schema::record_batch;

    #[test]
    fn rows_fit_the_schema() {
        let t = FleetTarget {
            addr: "2001:db8:1::5".parse().unwrap(),
            name: Some(Arc::from("db")),
            size: 56,
            psize: 104,
            class: 0,
            limits: Limits::default(),
            group: None,
        };
        let mut a = SweepRow::new(1, &t, SweepEvent::Reply);
        a.rtt_ns = Some(1500);
        let mut b = SweepRow::new(2, &t, SweepEvent::Window);
        b.stats = Some(WindowStats {
            probes: 3,
            replies: 2,
            loss_pct: Some(100.0 / 3.0),
            ..WindowStats::default()
        });
        b.alarm = Some(true);
        let batch = record_batch(&[a, b]).unwrap();
        assert_eq!(batch.num_columns(), SWEEP_NUM_COLUMNS);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), sweep_schema());
    }
}
