//! # asdic-analysis
//!
//! What a run found, in numbers and files. This crate owns the path
//! **events → per-target statistics → Arrow `RecordBatch` → Parquet / CSV / JSONL / table**:
//! it folds the receiver's [`Event`](asdic_core::Event)s into one [`TargetStats`] per
//! target, sums them into run [`Totals`], and writes one [`Row`] per target through a
//! [`Sink`], every format following the single [`schema`](schema::schema) and its
//! documented [`COLUMNS`].
//!
//! `asdic scan` writes one [`ScanRow`] per probe event instead ([`SCAN_COLUMNS`]), and
//! `asdic trace` one [`HopRow`] per (target, TTL) probe ([`HOP_COLUMNS`]), folded by
//! [`Paths`], which also prints traceroute-style paths. All are [`Record`]s, and the
//! Parquet, CSV and JSONL sinks take any record.
//!
//! It must never touch sockets or the network, nor keep per-event state beyond one RTT
//! sample per reply: it only reads events it is handed and writes the files or streams it
//! is given. No unsafe code; no panics on any input.
//!
//! Memory: the aggregator is dense (one [`TargetStats`] per target, indexed by the event
//! cookie) plus 8 bytes per reply for exact percentiles; output is streamed in chunks of
//! [`CHUNK_ROWS`] rows.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![forbid(unsafe_code)]
// A results library never prints, and never panics on what it is given.
#![deny(
    clippy::print_stderr,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

/// The dense per-target store and run totals.
pub mod aggregate;
/// UTC calendar fields for file names and reports.
pub mod clock;
/// The crate's error type.
pub mod error;
/// Sweep targets: rolling windows, counters, alarm state.
pub mod fleet;
/// The run metadata (`asdic.*` Parquet key-value metadata), typed, and its keys.
pub mod meta;
/// Durable Parquet output: finished parts while running, one file at the end.
pub mod parts;
/// `ping --per-probe`: one row per probe.
pub mod probes;
/// What an unfinished scan left, read back to resume it.
pub mod resume;
/// Scan output: one row per probe event.
pub mod scan;
/// The one output schema: columns, rows and rows → Arrow.
pub mod schema;
/// Output sinks: Parquet, CSV, JSON Lines, table.
pub mod sink;
/// Per-target statistics: counters, RTT moments, percentiles.
pub mod stats;
/// One-line human summary of the totals.
pub mod summary;
/// Sweep output: one row per probe result, state change and closing window.
pub mod sweep;
/// Trace output: hops per (target, TTL), hop rows, traceroute-style paths.
pub mod trace;
/// Schema versions; version 1 files read as version 2.
pub mod version;
/// Rolling per-target windows of probe results.
pub mod window;

pub use aggregate::{Aggregator, RttTotals, Totals};
pub use error::{Error, Result};
pub use meta::{RunMeta, RunMode, UnknownRunMode};
pub use parts::{
    PartedSink, STOPPED, SUCCESS, dir_of, list_parts, merge, metadata_of, pairs_of, part_names,
    partition, partition_taken, parts_dir, rows_of, version_level, write_marker,
};
pub use probes::{PROBE_COLUMNS, PROBE_NUM_COLUMNS, ProbeRow, Probes, probe_schema};
pub use scan::{SCAN_COLUMNS, SCAN_NUM_COLUMNS, ScanOutcome, ScanRow, scan_schema};
pub use schema::{
    COLUMNS, Column, NUM_COLUMNS, Record, Row, SCHEMA_VERSION, Type, Value, arrow_schema,
    record_batch, schema,
};
pub use sink::{
    CHUNK_ROWS, CsvSink, Fields, Format, JsonlSink, ParquetSink, ROW_GROUP_ROWS, Sink, TableSink,
    file_sink, file_sink_of, sink_for, table_label_width, text_sink, write_chunked,
};
pub use stats::{FirstError, Rtt, TargetStats};
pub use summary::{counted, summary_line};
pub use sweep::{SWEEP_COLUMNS, SWEEP_NUM_COLUMNS, SweepEvent, SweepRow, sweep_schema};
pub use trace::{
    HOP_COLUMNS, HOP_NUM_COLUMNS, Hop, HopKind, HopRow, PathTotals, Paths, hop_schema,
    unreachable_marker,
};
