//! Schema version 2 as the tools users query it with see it: one run of every mode on the
//! bed (ping, ping `--per-probe`, trace, sweep, scan), each file read to its last record by
//! pyarrow, DuckDB and Spark (tests/support/schema_check.py). Every engine must find every
//! record, the column types asdic declares (times as UTC timestamps, `_ns` as 64-bit
//! integers, RTTs as doubles in microseconds, booleans as booleans), each timestamp the
//! microsecond of its `_ns` twin, and `asdic.schema_version` = 2.

use std::path::{Path, PathBuf};
use std::process::Command;

use asdic_analysis::schema::Column;
use asdic_analysis::{
    COLUMNS, HOP_COLUMNS, PROBE_COLUMNS, RunMode, SCAN_COLUMNS, SWEEP_COLUMNS, Type,
};
use asdic_tests::{Bed, read_parquet, require_bed, root, scratch_dir, stderr_of};
use serde_json::Value;

/// What each engine calls an Arrow type asdic writes: (pyarrow, DuckDB, Spark).
fn names_of(ty: Type) -> (&'static str, &'static str, &'static str) {
    match ty {
        Type::Utf8 => ("string", "VARCHAR", "string"),
        Type::UInt8 => ("uint8", "UTINYINT", "smallint"),
        Type::UInt16 => ("uint16", "USMALLINT", "int"),
        Type::UInt64 => ("uint64", "UBIGINT", "decimal(20,0)"),
        Type::Int32 => ("int32", "INTEGER", "int"),
        Type::Int64 => ("int64", "BIGINT", "bigint"),
        Type::Float64 => ("double", "DOUBLE", "double"),
        Type::Boolean => ("bool", "BOOLEAN", "boolean"),
        Type::Timestamp => (
            "timestamp[us, tz=UTC]",
            "TIMESTAMP WITH TIME ZONE",
            "timestamp",
        ),
    }
}

fn run_ok(bed: &Bed, args: &[&str]) {
    let o = bed.asdic(args);
    // 1: some targets of the bed do not answer (they are meant not to).
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{args:?}: {}",
        stderr_of(&o)
    );
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_mode_reads_in_pyarrow_duckdb_and_spark_with_the_declared_types() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("sch", &[]);
    let dir = scratch_dir("schema-v2");
    let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let targets = ["198.19.0.1", "198.19.0.13", "198.19.77.5", "2001:db8:1::5"];
    let (ping, probes, trace, scan) = (
        file("ping.parquet"),
        file("probes.parquet"),
        file("trace.parquet"),
        file("scan.parquet"),
    );
    let mut args = vec![
        "ping", "-c", "3", "-i", "100ms", "-W", "300ms", "-q", "-o", &ping,
    ];
    args.extend(targets);
    run_ok(&bed, &args);
    let mut args = vec![
        "ping",
        "-c",
        "2",
        "-i",
        "100ms",
        "-W",
        "300ms",
        "-q",
        "--per-probe",
    ];
    args.extend(["-o", &probes]);
    args.extend(targets);
    run_ok(&bed, &args);
    run_ok(
        &bed,
        &[
            "trace",
            "198.19.0.1",
            "198.19.77.5",
            "-W",
            "300ms",
            "-q",
            "-o",
            &trace,
        ],
    );
    run_ok(
        &bed,
        &[
            "scan",
            "198.19.77.0/23",
            "--no-default-blocklist",
            "-R",
            "5000",
            "--cooldown",
            "1",
            "--all-events",
            "-q",
            "-o",
            &scan,
        ],
    );
    let fleet = dir.join("fleet.txt");
    std::fs::write(
        &fleet,
        "198.19.0.1:web:1000\n198.19.0.13:dead\n198.19.77.5\n[2001:db8:1::5]:v6:1280\n",
    )
    .unwrap();
    let sweeps = dir.join("sweep");
    run_ok(
        &bed,
        &[
            "sweep",
            fleet.to_str().unwrap(),
            "-i",
            "200ms",
            "-W",
            "300ms",
            "--rounds",
            "3",
            "--window",
            "10s",
            "--alarm-loss",
            "50",
            "--alarm-min-probes",
            "2",
            "--status-every",
            "0",
            "-o",
            sweeps.to_str().unwrap(),
        ],
    );
    let sweep_files = parquet_files(&sweeps);
    assert!(!sweep_files.is_empty());

    let mut files: Vec<(PathBuf, &[Column])> = vec![
        (ping.into(), COLUMNS),
        (probes.into(), PROBE_COLUMNS),
        (trace.into(), HOP_COLUMNS),
        (scan.into(), SCAN_COLUMNS),
    ];
    files.extend(sweep_files.into_iter().map(|f| (f, SWEEP_COLUMNS)));
    let q = Command::new("python3")
        .arg(root().join("tests/support/schema_check.py"))
        .args(files.iter().map(|(f, _)| f))
        .output()
        .expect("python3");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let stdout = String::from_utf8_lossy(&q.stdout);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();

    let mut checked = 0;
    for (path, columns) in &files {
        let (rows, meta) = read_parquet(path);
        assert!(!rows.is_empty(), "{}", path.display());
        assert_eq!(meta.schema_version, Some(2), "{}", path.display());
        assert!(
            meta.complete.is_some() && meta.interrupted.is_some(),
            "{meta:?}"
        );
        let mode = meta.mode.unwrap();
        assert_eq!(mode == RunMode::Sweep, columns == &SWEEP_COLUMNS);
        let seen = &seen[path.to_str().unwrap()];
        for (k, engine) in ["pyarrow", "duckdb", "spark"].into_iter().enumerate() {
            let s = &seen[engine];
            let at = format!("{} in {engine}", path.display());
            assert_eq!(s["rows"].as_u64(), Some(rows.len() as u64), "{at}");
            assert_eq!(s["mismatch"], 0, "{at}: timestamps off their _ns");
            if engine != "spark" {
                assert_eq!(s["version"], "2", "{at}");
            }
            let types: Vec<(&str, &str)> = s["types"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap()))
                .collect();
            let want: Vec<(&str, &str)> = columns
                .iter()
                .map(|c| {
                    let n = names_of(c.ty);
                    (c.name, [n.0, n.1, n.2][k])
                })
                .collect();
            assert_eq!(types, want, "{at}: the columns and their types, in order");
            checked += want.len();
        }
    }
    // One RTT unit and no unsigned times, by name, in every table.
    for cols in [
        COLUMNS,
        PROBE_COLUMNS,
        HOP_COLUMNS,
        SCAN_COLUMNS,
        SWEEP_COLUMNS,
    ] {
        for c in cols {
            if c.name.starts_with("rtt") {
                assert!(
                    c.name.ends_with("_us") && c.ty == Type::Float64,
                    "{}",
                    c.name
                );
            }
            if c.name.ends_with("_ns") {
                assert_eq!(c.ty, Type::Int64, "{}", c.name);
            }
            if c.name == "time" || c.name.ends_with("_time") {
                assert_eq!(c.ty, Type::Timestamp, "{}", c.name);
            }
        }
    }
    eprintln!("{} files, {checked} column types checked", files.len());
}
