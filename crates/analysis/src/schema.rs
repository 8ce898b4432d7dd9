//! Output schemas shared by every format: the [`Record`] trait, ping's [`Row`], and
//! records → Arrow.
//!
//! A [`Record`] names and describes its columns ([`Record::columns`]), gives their Arrow
//! types ([`Record::schema`]) and yields a row's cells in the same order
//! ([`Record::visit`]). The Arrow, CSV and JSONL writers all walk these, so the formats
//! cannot drift apart.
//!
//! Ping's per-target [`Row`] is one record: [`COLUMNS`] and [`schema()`] are its columns
//! and Arrow schema, [`Row::values`] its cells. Scan's per-event
//! [`ScanRow`](crate::scan::ScanRow) is another.

use core::fmt;
use core::net::IpAddr;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use asdic_wire::registry::Describe;

use crate::error::{Error, Result};
use crate::stats::{FirstError, Rtt};

/// The Arrow type of an output column (the few asdic writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Text.
    Utf8,
    /// 8-bit unsigned.
    UInt8,
    /// 16-bit unsigned.
    UInt16,
    /// 64-bit unsigned.
    UInt64,
    /// 32-bit signed.
    Int32,
    /// Double.
    Float64,
    /// 64-bit signed (the `_ns` fields: nanoseconds since the Unix epoch).
    Int64,
    /// True or false.
    Boolean,
    /// An instant: Arrow `Timestamp(Microsecond, "UTC")`, which Parquet stores as
    /// `TIMESTAMP(MICROS, isAdjustedToUTC=true)` — what Spark, DuckDB and pandas read as a
    /// UTC timestamp (Spark 3.5 cannot read `TIMESTAMP(NANOS)`; the `_ns` column beside it
    /// keeps the nanoseconds).
    Timestamp,
}

/// The time zone of every timestamp asdic writes.
pub const UTC: &str = "UTC";

impl Type {
    /// Its Arrow data type.
    pub fn arrow(self) -> DataType {
        match self {
            Type::Int64 => DataType::Int64,
            Type::Boolean => DataType::Boolean,
            Type::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            Type::Utf8 => DataType::Utf8,
            Type::UInt8 => DataType::UInt8,
            Type::UInt16 => DataType::UInt16,
            Type::UInt64 => DataType::UInt64,
            Type::Int32 => DataType::Int32,
            Type::Float64 => DataType::Float64,
        }
    }
}

/// One output column, declared once: the Arrow schema, the CSV header, the JSON keys and the
/// documentation all come from its record's table of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Whether a cell may be null.
    pub nullable: bool,
    /// One line on what it holds.
    pub doc: &'static str,
}

impl Column {
    /// A column.
    pub const fn new(name: &'static str, ty: Type, nullable: bool, doc: &'static str) -> Self {
        Column {
            name,
            ty,
            nullable,
            doc,
        }
    }
}

/// The Arrow schema of a table of columns, in order.
pub fn arrow_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.ty.arrow(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// A kind of output row: its columns, Arrow schema and cells.
///
/// Every sink ([`Sink`](crate::Sink)) and [`record_batch`] works from these three, so a
/// record's Parquet, CSV and JSONL forms always have the same columns in the same order.
pub trait Record {
    /// Every column in order: name, type, nullability, one-line description.
    fn columns() -> &'static [Column];

    /// The Arrow schema, made from [`columns()`](Record::columns) ([`arrow_schema`]).
    fn schema() -> SchemaRef;

    /// Calls `f` with each cell in [`columns()`](Record::columns) order, exactly once per
    /// column; each value must fit its column's Arrow type (see [`Value`]).
    fn visit<'s>(&'s self, f: &mut dyn FnMut(Value<'s>));
}

/// The version of the columns this asdic writes, recorded in every result file as
/// `asdic.schema_version` (a file without the key is version 1, asdic 0.1's).
///
/// Version 2: times as `Timestamp(µs, UTC)` beside their `_ns` Int64; every RTT a float
/// `rtt_us`; booleans as booleans; ping's send failures and their errno; sweep's `size` as
/// written (NetXMS psize) beside `payload_size`. A dataset keeps each version in its own
/// partition (`schema_version=2/…`).
pub const SCHEMA_VERSION: u32 = 2;

/// Number of ping output columns.
pub const NUM_COLUMNS: usize = 24;

/// The columns of ping's table that others read by name (the report): one declaration,
/// in the table below and wherever they are read.
pub mod ping_col {
    use crate::schema::{Column, Type};

    /// `target`.
    pub const TARGET: Column = Column::new("target", Type::Utf8, false, "Probed address");

    /// `name`.
    pub const NAME: Column = Column::new(
        "name",
        Type::Utf8,
        true,
        "Name the target was given by (hostname or label); null if none",
    );

    /// `sent`.
    pub const SENT: Column = Column::new(
        "sent",
        Type::UInt64,
        false,
        "Probes that ended: replies + errors + timeouts + send failures",
    );

    /// `received`.
    pub const RECEIVED: Column = Column::new(
        "received",
        Type::UInt64,
        false,
        "Echo replies (first valid reply per probe; duplicates and late replies excluded)",
    );

    /// `loss_pct`.
    pub const LOSS_PCT: Column = Column::new(
        "loss_pct",
        Type::Float64,
        true,
        "100 * (sent - received) / sent; null when nothing was sent",
    );

    /// `rtt_max_us`.
    pub const RTT_MAX_US: Column = Column::new(
        "rtt_max_us",
        Type::Float64,
        true,
        "Largest reply RTT, microseconds; null without replies",
    );

    /// `rtt_p50_us`.
    pub const RTT_P50_US: Column = Column::new(
        "rtt_p50_us",
        Type::Float64,
        true,
        "Median reply RTT (nearest rank), microseconds; null without replies",
    );

    /// `rtt_p90_us`.
    pub const RTT_P90_US: Column = Column::new(
        "rtt_p90_us",
        Type::Float64,
        true,
        "90th percentile reply RTT (nearest rank), microseconds; null without replies",
    );

    /// `rtt_p99_us`.
    pub const RTT_P99_US: Column = Column::new(
        "rtt_p99_us",
        Type::Float64,
        true,
        "99th percentile reply RTT (nearest rank), microseconds; null without replies",
    );

    /// `errors`.
    pub const ERRORS: Column = Column::new(
        "errors",
        Type::UInt64,
        false,
        "ICMP errors received about the probes",
    );

    /// `error_type`.
    pub const ERROR_TYPE: Column = Column::new(
        "error_type",
        Type::UInt8,
        true,
        "ICMP type of the first error; null without errors",
    );

    /// `error_code`.
    pub const ERROR_CODE: Column = Column::new(
        "error_code",
        Type::UInt8,
        true,
        "ICMP code of the first error; null without errors",
    );

    /// `error_name`.
    pub const ERROR_NAME: Column = Column::new(
        "error_name",
        Type::Utf8,
        true,
        "IANA name of the first error, \"Type / Code\"; null without errors",
    );

    /// `responder`.
    pub const RESPONDER: Column = Column::new(
        "responder",
        Type::Utf8,
        true,
        "Sender of the first error, else a replier other than the target; null if neither",
    );

    /// `send_failed`.
    pub const SEND_FAILED: Column = Column::new(
        "send_failed",
        Type::UInt64,
        false,
        "Probes the local stack refused to send (sent = received + errors + timeouts + send_failed)",
    );
}

/// Every ping output column in order.
pub const COLUMNS: &[Column] = &[
    ping_col::TARGET,
    ping_col::NAME,
    ping_col::SENT,
    ping_col::RECEIVED,
    ping_col::LOSS_PCT,
    Column::new(
        "rtt_last_us",
        Type::Float64,
        true,
        "RTT of the last reply, microseconds; null without replies",
    ),
    Column::new(
        "rtt_min_us",
        Type::Float64,
        true,
        "Smallest reply RTT, microseconds; null without replies",
    ),
    Column::new(
        "rtt_avg_us",
        Type::Float64,
        true,
        "Mean reply RTT, microseconds; null without replies",
    ),
    ping_col::RTT_MAX_US,
    Column::new(
        "rtt_stddev_us",
        Type::Float64,
        true,
        "Population standard deviation of reply RTTs, microseconds; null without replies",
    ),
    ping_col::RTT_P50_US,
    ping_col::RTT_P90_US,
    ping_col::RTT_P99_US,
    Column::new(
        "reply_ttl",
        Type::UInt8,
        true,
        "TTL / hop limit of the last reply that reported one; null if none",
    ),
    ping_col::ERRORS,
    ping_col::ERROR_TYPE,
    ping_col::ERROR_CODE,
    ping_col::ERROR_NAME,
    ping_col::RESPONDER,
    Column::new(
        "timeouts",
        Type::UInt64,
        false,
        "Probes that got no answer within the timeout",
    ),
    Column::new(
        "duplicates",
        Type::UInt64,
        false,
        "Extra replies to probes already answered",
    ),
    Column::new(
        "late",
        Type::UInt64,
        false,
        "Replies that came after their probe had timed out",
    ),
    ping_col::SEND_FAILED,
    Column::new(
        "send_errno",
        Type::Int32,
        true,
        "OS error number of the first refused send; null if none was refused",
    ),
];

const _: () = assert!(COLUMNS.len() == NUM_COLUMNS);

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| arrow_schema(COLUMNS));

/// The Arrow schema of ping's output, in [`COLUMNS`] order.
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// One target's ping results, as written to every output format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row<'a> {
    /// The probed address.
    pub target: IpAddr,
    /// Its display name, if any.
    pub name: Option<&'a str>,
    /// Probes that ended.
    pub sent: u64,
    /// Echo replies.
    pub received: u64,
    /// Loss percentage, `None` when nothing was sent.
    pub loss_pct: Option<f64>,
    /// RTT summary, `None` without replies.
    pub rtt: Option<Rtt>,
    /// TTL of the last reply that reported one.
    pub reply_ttl: Option<u8>,
    /// ICMP errors.
    pub errors: u64,
    /// The first ICMP error.
    pub first_error: Option<FirstError>,
    /// The first error's sender, else a replier other than the target.
    pub responder: Option<IpAddr>,
    /// Timeouts.
    pub timeouts: u64,
    /// Duplicate replies.
    pub duplicates: u64,
    /// Late replies.
    pub late: u64,
    /// Probes the local stack refused to send.
    pub send_failed: u64,
    /// The OS error number of the first refused send.
    pub send_errno: Option<i32>,
}

impl Row<'_> {
    /// The row's cells in [`COLUMNS`] order.
    pub fn values(&self) -> [Value<'_>; NUM_COLUMNS] {
        let rtt = |f: fn(&Rtt) -> f64| {
            self.rtt
                .as_ref()
                .map_or(Value::Null, |r| Value::F64(f(r) / 1000.0))
        };
        let err = self.first_error;
        [
            Value::Addr(self.target),
            self.name.map_or(Value::Null, Value::Str),
            Value::U64(self.sent),
            Value::U64(self.received),
            self.loss_pct.map_or(Value::Null, Value::F64),
            rtt(|r| r.last_ns as f64),
            rtt(|r| r.min_ns as f64),
            rtt(|r| r.mean_ns),
            rtt(|r| r.max_ns as f64),
            rtt(|r| r.stddev_ns),
            rtt(|r| r.p50_ns as f64),
            rtt(|r| r.p90_ns as f64),
            rtt(|r| r.p99_ns as f64),
            self.reply_ttl.map_or(Value::Null, Value::U8),
            Value::U64(self.errors),
            err.map_or(Value::Null, |e| Value::U8(e.icmp_type)),
            err.map_or(Value::Null, |e| Value::U8(e.code)),
            err.map_or(Value::Null, |e| Value::Icmp(e.describe())),
            self.responder.map_or(Value::Null, Value::Addr),
            Value::U64(self.timeouts),
            Value::U64(self.duplicates),
            Value::U64(self.late),
            Value::U64(self.send_failed),
            self.send_errno.map_or(Value::Null, Value::I32),
        ]
    }
}

impl Record for Row<'_> {
    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn schema() -> SchemaRef {
        schema()
    }

    fn visit<'s>(&'s self, f: &mut dyn FnMut(Value<'s>)) {
        for value in self.values() {
            f(value);
        }
    }
}

/// One cell of a [`Record`]. `Display` gives its text form (empty for null).
///
/// Arrow column types: [`Str`](Value::Str), [`Addr`](Value::Addr) and
/// [`Icmp`](Value::Icmp) go to `Utf8`, [`U8`](Value::U8) to `UInt8`, [`U16`](Value::U16)
/// to `UInt16`,
/// [`I32`](Value::I32) to `Int32`, [`U64`](Value::U64) to `UInt64`, [`F64`](Value::F64)
/// to `Float64`, and [`Null`](Value::Null) to any nullable column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// No value.
    Null,
    /// Text.
    Str(&'a str),
    /// An address, rendered as text.
    Addr(IpAddr),
    /// An ICMP type/code, rendered as its registry name.
    Icmp(Describe),
    /// A small integer.
    U8(u8),
    /// A 16-bit integer (a flow id).
    U16(u16),
    /// A signed integer (an OS error number…).
    I32(i32),
    /// A counter.
    U64(u64),
    /// A float; text formats write non-finite values as null.
    F64(f64),
    /// A signed 64-bit integer (a `_ns` time).
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// An instant, nanoseconds since the Unix epoch: `Timestamp(µs, UTC)` in Arrow (the
    /// microsecond it falls in), RFC 3339 text with microseconds in CSV and JSON
    /// (`2026-12-07T15:22:39.123456Z`).
    Time(u64),
}

/// Nanoseconds since the Unix epoch as the `Int64` a `_ns` column holds (saturating, at
/// the year 2262).
pub fn ns_i64(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch as the microseconds a timestamp column holds.
pub fn ns_micros(ns: u64) -> i64 {
    ns_i64(ns / 1000)
}

/// Writes `ns` (since the Unix epoch) as RFC 3339 UTC with microseconds.
fn write_rfc3339(f: &mut fmt::Formatter<'_>, ns: u64) -> fmt::Result {
    let t = crate::clock::Utc::from_unix(ns / 1_000_000_000);
    write!(f, "{t:#}.{:06}Z", ns % 1_000_000_000 / 1000)
}

impl Value<'_> {
    /// Whether the value is text (quoted in CSV and JSON).
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            Value::Str(_) | Value::Addr(_) | Value::Icmp(_) | Value::Time(_)
        )
    }

    /// Whether the value can be a cell of `field`: the Arrow type it maps to (see [`Value`]),
    /// or null where the field is nullable.
    pub fn fits(&self, field: &Field) -> bool {
        let ty = match self {
            Value::Null => return field.is_nullable(),
            Value::Str(_) | Value::Addr(_) | Value::Icmp(_) => Type::Utf8,
            Value::U8(_) => Type::UInt8,
            Value::U16(_) => Type::UInt16,
            Value::I32(_) => Type::Int32,
            Value::U64(_) => Type::UInt64,
            Value::F64(_) => Type::Float64,
            Value::I64(_) => Type::Int64,
            Value::Bool(_) => Type::Boolean,
            Value::Time(_) => Type::Timestamp,
        };
        field.data_type() == &ty.arrow()
    }

    /// Whether the value is written as null by text formats.
    pub fn is_null(&self) -> bool {
        match self {
            Value::Null => true,
            Value::F64(x) => !x.is_finite(),
            _ => false,
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Str(s) => f.write_str(s),
            Value::Addr(a) => a.fmt(f),
            Value::Icmp(d) => d.fmt(f),
            Value::U8(x) => x.fmt(f),
            Value::U16(x) => x.fmt(f),
            Value::I32(x) => x.fmt(f),
            Value::U64(x) => x.fmt(f),
            Value::F64(x) if x.is_finite() => x.fmt(f),
            Value::F64(_) => Ok(()),
            Value::I64(x) => x.fmt(f),
            Value::Bool(x) => x.fmt(f),
            Value::Time(ns) => write_rfc3339(f, *ns),
        }
    }
}

/// Converts records to an Arrow record batch of [`R::schema()`](Record::schema).
///
/// # Errors
/// [`Error::ColumnType`] or [`Error::Arrow`] if a value does not fit its column, and
/// [`Error::CellCount`] if a record yields the wrong number of cells: both would be bugs in
/// the [`Record`] implementation.
pub fn record_batch<R: Record>(rows: &[R]) -> Result<RecordBatch> {
    let schema = R::schema();
    let names = R::columns();
    let name = |i: usize| names.get(i).map_or("?", |c| c.name);
    let mut builders = schema
        .fields()
        .iter()
        .map(|f| ColumnBuilder::new(f.data_type(), rows.len()))
        .collect::<Vec<_>>();
    for row in rows {
        let mut cells = 0;
        let mut failed = None;
        row.visit(&mut |value| {
            let i = cells;
            cells += 1;
            if failed.is_some() {
                return;
            }
            let appended = match builders.get_mut(i) {
                Some(Some(builder)) => builder.append(value, name(i)),
                Some(None) => Err(Error::ColumnType { column: name(i) }),
                // Too many cells: counted and reported below.
                None => Ok(()),
            };
            failed = appended.err();
        });
        if let Some(error) = failed {
            return Err(error);
        }
        if cells != builders.len() {
            return Err(Error::CellCount {
                columns: builders.len(),
                cells,
            });
        }
    }
    let columns = builders
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            b.map(ColumnBuilder::finish)
                .ok_or(Error::ColumnType { column: name(i) })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A builder for one column of one of the Arrow types [`Value`] maps to.
enum ColumnBuilder {
    Utf8(StringBuilder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    Int32(Int32Builder),
    UInt64(UInt64Builder),
    Float64(Float64Builder),
    Int64(Int64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    /// A builder for `data_type`, `None` for a type no [`Value`] maps to.
    fn new(data_type: &DataType, capacity: usize) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
            DataType::UInt8 => Self::UInt8(UInt8Builder::with_capacity(capacity)),
            DataType::UInt16 => Self::UInt16(UInt16Builder::with_capacity(capacity)),
            DataType::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            DataType::UInt64 => Self::UInt64(UInt64Builder::with_capacity(capacity)),
            DataType::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == UTC => {
                Self::Timestamp(
                    TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC),
                )
            }
            _ => return None,
        })
    }

    fn append(&mut self, value: Value<'_>, column: &'static str) -> Result<()> {
        match (self, value) {
            (Self::Utf8(b), Value::Null) => b.append_null(),
            (Self::UInt8(b), Value::Null) => b.append_null(),
            (Self::UInt16(b), Value::Null) => b.append_null(),
            (Self::Int32(b), Value::Null) => b.append_null(),
            (Self::UInt64(b), Value::Null) => b.append_null(),
            (Self::Float64(b), Value::Null) => b.append_null(),
            (Self::Int64(b), Value::Null) => b.append_null(),
            (Self::Boolean(b), Value::Null) => b.append_null(),
            (Self::Timestamp(b), Value::Null) => b.append_null(),
            (Self::Utf8(b), Value::Str(s)) => b.append_value(s),
            (Self::Utf8(b), v @ (Value::Addr(_) | Value::Icmp(_))) => {
                // Writing to a StringBuilder appends to its buffer and cannot fail.
                let _ = write!(b, "{v}");
                b.append_value("");
            }
            (Self::UInt8(b), Value::U8(x)) => b.append_value(x),
            (Self::UInt16(b), Value::U16(x)) => b.append_value(x),
            (Self::Int32(b), Value::I32(x)) => b.append_value(x),
            (Self::UInt64(b), Value::U64(x)) => b.append_value(x),
            (Self::Float64(b), Value::F64(x)) => b.append_value(x),
            (Self::Int64(b), Value::I64(x)) => b.append_value(x),
            (Self::Boolean(b), Value::Bool(x)) => b.append_value(x),
            (Self::Timestamp(b), Value::Time(ns)) => b.append_value(ns_micros(ns)),
            _ => return Err(Error::ColumnType { column }),
        }
        Ok(())
    }

    fn finish(mut self) -> ArrayRef {
        match &mut self {
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::UInt8(b) => Arc::new(b.finish()),
            Self::UInt16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::UInt64(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt8Type, UInt64Type};
    use asdic_wire::Family;
    use core::net::{Ipv4Addr, Ipv6Addr};

    /// A row with every optional field set (an error, a reply, a name).
    pub(crate) fn full_row() -> Row<'static> {
        Row {
            target: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            name: Some("host \"a\", b"),
            sent: 5,
            received: 3,
            loss_pct: Some(40.0),
            rtt: Some(Rtt {
                last_ns: 51_234,
                min_ns: 12_000,
                max_ns: 1_334_000,
                mean_ns: 51_500.5,
                stddev_ns: 1_000.25,
                p50_ns: 50_001,
                p90_ns: 210_000,
                p99_ns: 1_334_000,
            }),
            reply_ttl: Some(57),
            errors: 1,
            first_error: Some(FirstError {
                family: Family::V4,
                icmp_type: 3,
                code: 13,
                from: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            }),
            responder: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            timeouts: 0,
            duplicates: 2,
            late: 1,
            send_failed: 1,
            send_errno: Some(101),
        }
    }

    /// A row with every optional field empty (nothing answered).
    pub(crate) fn empty_row() -> Row<'static> {
        Row {
            target: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            name: None,
            sent: 2,
            received: 0,
            loss_pct: Some(100.0),
            rtt: None,
            reply_ttl: None,
            errors: 0,
            first_error: None,
            responder: None,
            timeouts: 2,
            duplicates: 0,
            late: 0,
            send_failed: 0,
            send_errno: None,
        }
    }

    #[test]
    fn schema_and_columns_agree() {
        let schema = schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let documented: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(names, documented);
        for c in COLUMNS {
            assert!(!c.doc.is_empty(), "{}", c.name);
            assert!(!c.doc.contains('\n'), "{}", c.name);
        }
        for field in schema.fields() {
            let rtt = field.name().starts_with("rtt_");
            assert_eq!(rtt, field.name().ends_with("_us"), "{}", field.name());
            if rtt {
                assert_eq!(field.data_type(), &DataType::Float64);
                assert!(field.is_nullable());
            }
        }
    }

    #[test]
    fn values_fit_their_columns() {
        let schema = schema();
        for row in [full_row(), empty_row()] {
            for (value, field) in row.values().iter().zip(schema.fields()) {
                let fits = value.fits(field);
                assert!(fits, "{} = {value:?}", field.name());
            }
        }
        // The full row has no nulls except where the schema has no value to give.
        assert!(full_row().values().iter().all(|v| !v.is_null()));
    }

    #[test]
    fn record_batch_values() {
        let batch = record_batch(&[full_row(), empty_row()]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), NUM_COLUMNS);
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let target = col("target");
        let target = target.as_string::<i32>();
        assert_eq!(target.value(0), "192.0.2.1");
        assert_eq!(target.value(1), "2001:db8::1");
        assert!(col("name").is_null(1));
        assert_eq!(col("name").as_string::<i32>().value(0), "host \"a\", b");
        let p50 = col("rtt_p50_us");
        let p50 = p50.as_primitive::<Float64Type>();
        assert_eq!(p50.value(0), 50.001);
        assert!(p50.is_null(1));
        assert_eq!(
            col("rtt_avg_us").as_primitive::<Float64Type>().value(0),
            51.5005
        );
        assert_eq!(col("reply_ttl").as_primitive::<UInt8Type>().value(0), 57);
        assert_eq!(col("error_code").as_primitive::<UInt8Type>().value(0), 13);
        assert_eq!(
            col("error_name").as_string::<i32>().value(0),
            "Destination Unreachable / Communication Administratively Prohibited"
        );
        assert_eq!(col("responder").as_string::<i32>().value(0), "198.51.100.7");
        assert_eq!(col("timeouts").as_primitive::<UInt64Type>().value(1), 2);
        assert_eq!(col("late").as_primitive::<UInt64Type>().value(0), 1);
        let empty = record_batch::<Row<'_>>(&[]).unwrap();
        assert_eq!(empty.num_rows(), 0);
    }
}
