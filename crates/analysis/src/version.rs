//! Schema versions: which columns a result file has, and reading version 1 files as version 2.
//!
//! Every file asdic writes names the version of its columns in `asdic.schema_version`
//! ([`SCHEMA_VERSION`]); a file without the key was written by asdic 0.1 (version 1).
//! [`upgrade`] turns a record batch of a version 1 file into the columns this asdic writes,
//! so that readers (`asdic report`) handle one shape:
//!
//! | mode | version 1 | version 2 |
//! | --- | --- | --- |
//! | every | `*_unix_ns` UInt64 | `sent_time` / `time` Timestamp(µs, UTC) and the `_ns` Int64 |
//! | ping | send failures only inside `sent` | `send_failed` (= sent − received − errors − timeouts), `send_errno` (null: not recorded) |
//! | ping `--per-probe` | `errno` | `send_errno` |
//! | trace | `rtt_ms` | `rtt_us` (× 1000), `send_errno` (null: not recorded) |
//! | sweep | `size` (payload), `in_alarm` UInt8 | `payload_size`, `psize` (payload + IP and ICMP headers), `in_alarm` Boolean, `send_errno` (null) |
//!
//! Values are never invented: what version 1 did not record is null where the column allows
//! it, and derived exactly where it does not (`send_failed`, `psize`).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType, UInt8Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::SchemaRef;
use asdic_wire::Family;
use asdic_wire::template::ip_packet_len;

use crate::error::{Error, Result};
use crate::meta::{RunMode, keys};
use crate::schema::{Record, SCHEMA_VERSION, UTC, ns_i64, ns_micros};
use crate::{HopRow, ProbeRow, Row, ScanRow, SweepRow};

/// The schema version `pairs` (a file's key-value metadata) declare: 1 without the key.
/// `None` when the key holds something that is not a number.
pub fn version_of(pairs: &[(String, String)]) -> Option<u32> {
    match pairs.iter().find(|(k, _)| k == keys::SCHEMA_VERSION) {
        None => Some(1),
        Some((_, v)) => v.parse().ok(),
    }
}

/// The schema this asdic writes for `mode`'s files; `per_probe` for ping's `--per-probe`
/// rows.
pub fn schema_of(mode: RunMode, per_probe: bool) -> SchemaRef {
    match mode {
        RunMode::Ping if per_probe => ProbeRow::schema(),
        RunMode::Ping => Row::schema(),
        RunMode::Scan => ScanRow::schema(),
        RunMode::Trace => HopRow::schema(),
        RunMode::Sweep => SweepRow::schema(),
    }
}

/// `batch`, read from a file of `mode` whose columns are version `version`, as the columns
/// this asdic writes ([`schema_of`]): unchanged at [`SCHEMA_VERSION`], converted from
/// version 1 (see the module's table).
///
/// # Errors
/// [`Error::Schema`] for a version this asdic does not know (a newer one), or a batch that
/// lacks a column its version has.
pub fn upgrade(mode: RunMode, version: u32, batch: RecordBatch) -> Result<RecordBatch> {
    match version {
        SCHEMA_VERSION => Ok(batch),
        1 => from_v1(mode, &batch),
        v => Err(Error::Schema(format!(
            "schema version {v}: this asdic reads versions 1 to {SCHEMA_VERSION} (a newer \
             asdic wrote the file)"
        ))),
    }
}

fn from_v1(mode: RunMode, b: &RecordBatch) -> Result<RecordBatch> {
    let per_probe = mode == RunMode::Ping && b.column_by_name("probe").is_some();
    let schema = schema_of(mode, per_probe);
    let rows = b.num_rows();
    let col = |name: &str| -> Result<&ArrayRef> {
        b.column_by_name(name)
            .ok_or_else(|| Error::Schema(format!("a version 1 {mode} file without {name:?}")))
    };
    let u64s = |name: &str| -> Result<&UInt64Array> {
        col(name)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| Error::Schema(format!("version 1 column {name:?} is not UInt64")))
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let c: ArrayRef = match (mode, name) {
            (_, "sent_time") => micros(u64s("sent_unix_ns")?),
            (_, "time") => micros(u64s("time_unix_ns")?),
            (_, "sent_unix_ns" | "time_unix_ns") => {
                Arc::new(u64s(name)?.unary::<_, Int64Type>(ns_i64))
            }
            (RunMode::Ping, "send_failed") => {
                let sent = u64s("sent")?;
                let (received, errors, timeouts) =
                    (u64s("received")?, u64s("errors")?, u64s("timeouts")?);
                Arc::new(
                    (0..rows)
                        .map(|i| {
                            sent.value(i)
                                .saturating_sub(received.value(i))
                                .saturating_sub(errors.value(i))
                                .saturating_sub(timeouts.value(i))
                        })
                        .collect::<UInt64Array>(),
                )
            }
            (RunMode::Ping, "send_errno") if per_probe => Arc::clone(col("errno")?),
            (_, "send_errno") => Arc::new(Int32Array::new_null(rows)),
            (RunMode::Trace, "rtt_us") => {
                let ms = col("rtt_ms")?
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(|| Error::Schema("version 1 rtt_ms is not Float64".into()))?;
                Arc::new(ms.unary::<_, Float64Type>(|x| x * 1000.0))
            }
            (RunMode::Sweep, "payload_size") => Arc::clone(col("size")?),
            (RunMode::Sweep, "psize") => {
                let size = u64s("size")?;
                let target = col("target")?
                    .as_string_opt::<i32>()
                    .ok_or_else(|| Error::Schema("version 1 target is not Utf8".into()))?;
                Arc::new(psizes(size, target))
            }
            (RunMode::Sweep, "in_alarm") => {
                let a = col("in_alarm")?
                    .as_primitive_opt::<UInt8Type>()
                    .ok_or_else(|| Error::Schema("version 1 in_alarm is not UInt8".into()))?;
                Arc::new(
                    a.iter()
                        .map(|x| x.map(|x| x != 0))
                        .collect::<BooleanArray>(),
                )
            }
            _ => Arc::clone(col(name)?),
        };
        if c.data_type() != field.data_type() {
            return Err(Error::Schema(format!(
                "version 1 column {name:?} has type {}, not {}",
                c.data_type(),
                field.data_type()
            )));
        }
        columns.push(c);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Nanoseconds since the epoch as a UTC microsecond timestamp column.
fn micros(ns: &UInt64Array) -> ArrayRef {
    Arc::new(
        ns.unary::<_, TimestampMicrosecondType>(ns_micros)
            .with_timezone(UTC),
    )
}

/// NetXMS packet sizes of version 1 payload sizes: the IP packet an echo request of that
/// payload makes to the target's family (null where the target is not an address).
fn psizes(size: &UInt64Array, target: &StringArray) -> UInt64Array {
    size.iter()
        .zip(target.iter())
        .map(|(s, t)| {
            let family = Family::of(t?.parse().ok()?);
            let payload = usize::try_from(s?).ok()?;
            u64::try_from(ip_packet_len(family, payload)).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::record_batch;
    use crate::sweep::SweepEvent;
    use crate::trace::{Hop, HopKind};
    use arrow_array::{Float64Array, UInt8Array};
    use arrow_schema::{Field, Schema};

    fn v1(fields: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let schema = Schema::new(
            fields
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(
            Arc::new(schema),
            fields.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn strs(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn u64s(v: &[u64]) -> ArrayRef {
        Arc::new(UInt64Array::from(v.to_vec()))
    }

    #[test]
    fn versions_are_read_from_the_key() {
        assert_eq!(version_of(&[]), Some(1));
        let pairs = vec![(keys::SCHEMA_VERSION.to_string(), "2".to_string())];
        assert_eq!(version_of(&pairs), Some(2));
        let bad = vec![(keys::SCHEMA_VERSION.to_string(), "two".to_string())];
        assert_eq!(version_of(&bad), None);
        let b = record_batch::<ScanRow>(&[]).unwrap();
        let e = upgrade(RunMode::Scan, 3, b.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema version 3") && e.contains("newer"), "{e}");
        assert_eq!(upgrade(RunMode::Scan, 2, b.clone()).unwrap(), b);
    }

    #[test]
    fn a_v1_trace_batch_reads_as_v2() {
        let b = v1(vec![
            ("target", strs(&["198.19.0.1"])),
            ("ttl", Arc::new(UInt8Array::from(vec![3]))),
            ("kind", strs(&["reply"])),
            ("responder", strs(&["198.19.0.1"])),
            ("rtt_ms", Arc::new(Float64Array::from(vec![0.0125]))),
            ("icmp_type", Arc::new(UInt8Array::from(vec![0]))),
            ("icmp_code", Arc::new(UInt8Array::from(vec![0]))),
            ("icmp_name", strs(&["Echo Reply"])),
            ("reply_ttl", Arc::new(UInt8Array::from(vec![62]))),
            ("attempt", Arc::new(UInt8Array::from(vec![0]))),
            ("flow", Arc::new(arrow_array::UInt16Array::from(vec![0]))),
            ("probe", u64s(&[7])),
            ("sent_unix_ns", u64s(&[1_700_000_000_123_456_789])),
        ]);
        let up = upgrade(RunMode::Trace, 1, b).unwrap();
        assert_eq!(up.schema(), HopRow::schema());
        let rtt = up.column_by_name("rtt_us").unwrap();
        assert_eq!(rtt.as_primitive::<Float64Type>().value(0), 12.5);
        let t = up.column_by_name("sent_time").unwrap();
        assert_eq!(t.data_type(), &crate::schema::Type::Timestamp.arrow());
        assert_eq!(
            t.as_primitive::<TimestampMicrosecondType>().value(0),
            1_700_000_000_123_456
        );
        let ns = up.column_by_name("sent_unix_ns").unwrap();
        assert_eq!(
            ns.as_primitive::<Int64Type>().value(0),
            1_700_000_000_123_456_789
        );
        assert!(up.column_by_name("send_errno").unwrap().is_null(0));
        // The same hop written now has the same cells, errno aside.
        let hop = Hop {
            kind: HopKind::Reply,
            responder: Some("198.19.0.1".parse().unwrap()),
            rtt_ns: Some(12_500),
            icmp: None,
            reply_ttl: Some(62),
            errno: None,
            attempt: 0,
            probe: 7,
            sent_unix_ns: 1_700_000_000_123_456_789,
        };
        let now = record_batch(&[HopRow {
            target: "198.19.0.1".parse().unwrap(),
            ttl: 3,
            flow: 0,
            hop: &hop,
        }])
        .unwrap();
        for name in ["rtt_us", "sent_time", "sent_unix_ns", "probe", "ttl"] {
            assert_eq!(
                now.column_by_name(name).unwrap().to_data(),
                up.column_by_name(name).unwrap().to_data(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_v1_ping_batch_derives_its_send_failures() {
        let schema = Row::schema();
        // Version 1's columns: version 2's less the last two.
        let n = schema.fields().len() - 2;
        let now = record_batch(&[crate::schema::tests::full_row()]).unwrap();
        assert_eq!(schema.field(n).name(), "send_failed");
        let fields: Vec<(&str, ArrayRef)> = schema.fields()[..n]
            .iter()
            .map(|f| {
                (
                    f.name().as_str(),
                    Arc::clone(now.column_by_name(f.name()).unwrap()),
                )
            })
            .collect();
        let up = upgrade(RunMode::Ping, 1, v1(fields)).unwrap();
        // sent 5 = received 3 + errors 1 + timeouts 0 + the one send failure.
        let failed = up.column_by_name("send_failed").unwrap();
        assert_eq!(failed.as_primitive::<UInt64Type>().value(0), 1);
        assert!(up.column_by_name("send_errno").unwrap().is_null(0));
    }

    #[test]
    fn a_v1_sweep_batch_reads_as_v2() {
        let t = crate::fleet::FleetTarget {
            addr: "2001:db8:1::5".parse().unwrap(),
            name: None,
            size: 1232,
            psize: 1280,
            class: 0,
            limits: crate::fleet::Limits::default(),
            group: None,
        };
        let mut row = SweepRow::new(1_700_000_000_000_000_001, &t, SweepEvent::Window);
        row.alarm = Some(true);
        let now = record_batch(&[row]).unwrap();
        let mut fields: Vec<(&str, ArrayRef)> = vec![];
        let schema = SweepRow::schema();
        for f in schema.fields() {
            let name = f.name().as_str();
            match name {
                "time" | "psize" | "send_errno" => {}
                "time_unix_ns" => fields.push((name, u64s(&[1_700_000_000_000_000_001]))),
                "payload_size" => fields.push(("size", u64s(&[1232]))),
                "in_alarm" => fields.push((name, Arc::new(UInt8Array::from(vec![1])))),
                _ => fields.push((name, Arc::clone(now.column_by_name(name).unwrap()))),
            }
        }
        let up = upgrade(RunMode::Sweep, 1, v1(fields)).unwrap();
        assert_eq!(up.schema(), SweepRow::schema());
        for name in ["time", "time_unix_ns", "psize", "payload_size", "in_alarm"] {
            assert_eq!(
                now.column_by_name(name).unwrap().to_data(),
                up.column_by_name(name).unwrap().to_data(),
                "{name}"
            );
        }
    }
}
