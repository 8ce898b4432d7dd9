//! Datasets across machines: four shards of the bed's /16 scanned by four concurrent
//! processes into one Hive-partitioned dataset, each taking its shard index from a job
//! runner's environment (two as Kubernetes Indexed Job pods, two as Slurm array tasks counted
//! from 1), beside one unsharded run of the same scan. Spark SQL (local mode), DuckDB,
//! DataFusion and pyarrow, each discovering the partitions on its own, through
//! tests/support/dataset_query.py, must each give the bed's ground truth — live
//! hosts, the rejected /24, loss per /24, rows per shard — and the same answers for both
//! runs. A killed shard leaves readable parts and no marker, and `asdic recover` says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asdic_tests::{Bed, Truth, classify, read_parquet, require_bed, root, scratch, stderr_of};
use serde_json::Value;

const SEED: &str = "4242";

/// The first level of every partition: the schema version of the files under it.
const VERSION: &str = "schema_version=2";

/// The query engines of tests/support/dataset_query.py, by their keys in its answer.
const ENGINES: [&str; 4] = ["spark", "duckdb", "datafusion", "pyarrow"];

/// The scan every run of this file makes (add --shards/--shard, --dataset, --run-id).
fn scan_args<'a>(dir: &'a str, run: &'a str, rate: &'a str) -> Vec<&'a str> {
    vec![
        "scan",
        "198.19.0.0/16",
        "--no-default-blocklist",
        // Several processes at once: raw sockets (one XDP program per interface).
        "--engine",
        "raw",
        "-R",
        rate,
        "--cooldown",
        "1",
        "--seed",
        SEED,
        "--all-events",
        "--dataset",
        dir,
        "--run-id",
        run,
        "-q",
    ]
}

/// Shard `i` of 4 as a job runner starts it: its index only in the environment.
fn shard(bed: &Bed, dir: &str, run: &str, i: u64, rate: &str, extra: &[&str]) -> Child {
    let mut args = scan_args(dir, run, rate);
    args.extend_from_slice(&["--shards", "4", "--shard", "env"]);
    args.extend_from_slice(extra);
    let mut c = bed.command(&args);
    if i.is_multiple_of(2) {
        c.env("JOB_COMPLETION_INDEX", i.to_string());
    } else {
        c.env("SLURM_ARRAY_TASK_ID", (i + 1).to_string())
            .env("SLURM_ARRAY_TASK_MIN", "1");
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a shard")
}

fn wait_ok(c: Child, what: &str) -> String {
    let out = c.wait_with_output().expect("waiting");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {err}");
    err
}

/// Targets of shard `i` of 4 (a dry run: nothing sent).
fn shard_size(bed: &Bed, i: u64) -> u64 {
    let k = i.to_string();
    let o = bed.asdic(&[
        "scan",
        "198.19.0.0/16",
        "--no-default-blocklist",
        "--seed",
        SEED,
        "--shards",
        "4",
        "--shard",
        &k,
        "--dry-run",
        "-q",
    ]);
    let err = stderr_of(&o);
    err.split("dry run: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {err}"))
}

/// A partition's finished parts (none before it exists).
fn parts_of(dir: &Path) -> Vec<PathBuf> {
    asdic_analysis::list_parts(dir).unwrap_or_default()
}

#[test]
fn four_shards_into_one_dataset_read_by_spark_and_duckdb_as_the_ground_truth() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("ds1", &[]);
    let truth = bed.truth();
    let dir = scratch("dataset");
    let d = dir.to_str().unwrap();

    // The four shards at once, then the same scan whole.
    let t = Instant::now();
    let shards: Vec<Child> = (0..4)
        .map(|i| shard(&bed, d, "sharded", i, "8000", &[]))
        .collect();
    for (i, c) in shards.into_iter().enumerate() {
        let err = wait_ok(c, &format!("shard {i}"));
        assert!(err.contains("complete (_SUCCESS)"), "{err}");
    }
    eprintln!("four shards in {:?}", t.elapsed());
    let mut whole = bed.command(&scan_args(d, "whole", "20000"));
    let o = whole.output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));

    // The layout: one partition per shard, each marked, partition columns not in the files,
    // one schema everywhere.
    let mut schema: Option<Vec<String>> = None;
    let mut bytes = 0u64;
    let mut rows_whole = 0u64;
    for (run, n) in [("sharded", 4), ("whole", 1)] {
        for i in 0..n {
            let p = dir
                .join(VERSION)
                .join(format!("run={run}"))
                .join(format!("shard={i}"));
            assert!(p.join("_SUCCESS").is_file(), "{}", p.display());
            let parts = parts_of(&p);
            assert!(!parts.is_empty(), "{}", p.display());
            for part in parts {
                let (rows, meta) = read_parquet(&part);
                assert_eq!(meta.run_id.as_deref(), Some(run));
                assert_eq!(meta.shard, Some(i));
                let cols: Vec<String> = {
                    let mut c: Vec<String> = rows[0].keys().cloned().collect();
                    c.sort();
                    c
                };
                assert!(!cols.iter().any(|c| c == "run" || c == "shard"), "{cols:?}");
                match &schema {
                    None => schema = Some(cols),
                    Some(s) => assert_eq!(s, &cols, "{}", part.display()),
                }
                if run == "whole" {
                    bytes += std::fs::metadata(&part).unwrap().len();
                    rows_whole += rows.len() as u64;
                }
            }
        }
    }

    // What the engines answer.
    let q = Command::new("python3")
        .arg(root().join("tests/support/dataset_query.py"))
        .arg(dir.join(VERSION))
        .output()
        .expect("python3");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let stdout = String::from_utf8_lossy(&q.stdout);
    let got: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();

    // The bed's truth.
    let (mut live, mut rejected) = (0u64, BTreeSet::new());
    let mut loss: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for x in 0..65_536u32 {
        let net = format!("198.19.{}", x >> 8);
        let e = loss.entry(net).or_default();
        e.0 += 1;
        match classify(&truth, false, x) {
            Truth::Alive => live += 1,
            Truth::Rejected => {
                rejected.insert(format!("198.19.{}.{}", x >> 8, x & 255));
            }
            Truth::Dead => e.1 += 1,
        }
    }
    let sizes: Vec<u64> = (0..4).map(|i| shard_size(&bed, i)).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 65_536);

    for engine in ENGINES {
        for run in ["sharded", "whole"] {
            let a = &got[engine][run];
            assert_eq!(a["live"].as_u64(), Some(live), "{engine} {run} live");
            let rej: BTreeSet<String> = a["rejected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(rej, rejected, "{engine} {run} rejected");
            let l: BTreeMap<String, (u64, u64)> = a["loss"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())))
                .collect();
            assert_eq!(l, loss, "{engine} {run} loss per /24");
            let want: BTreeMap<String, u64> = if run == "whole" {
                [("0".to_string(), 65_536)].into()
            } else {
                sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| (i.to_string(), n))
                    .collect()
            };
            let shards: BTreeMap<String, u64> = a["shards"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect();
            assert_eq!(shards, want, "{engine} {run} rows per shard");
        }
        assert_eq!(got[engine]["sharded"]["loss"], got[engine]["whole"]["loss"]);
    }
    for engine in &ENGINES[1..] {
        assert_eq!(got["spark"], got[engine], "{engine} agrees with Spark");
    }
    // The report reads the dataset as the engines do.
    let r = bed.asdic(&[
        "report",
        d,
        "-o",
        scratch("dataset-report").to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", stderr_of(&r));
    println!(
        "dataset: {rows_whole} rows, {bytes} bytes for the whole /16 ({:.1} MB per million \
         probes); Spark {} s, DuckDB {} s, DataFusion {} s, pyarrow {} s",
        bytes as f64 / 65_536.0,
        got["spark_s"],
        got["duckdb_s"],
        got["datafusion_s"],
        got["pyarrow_s"]
    );
}

#[test]
fn a_killed_shard_leaves_readable_parts_and_no_marker() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("ds2", &[]);
    let dir = scratch("dataset-killed");
    let d = dir.to_str().unwrap();
    let mut c = shard(&bed, d, "k", 2, "2000", &["--sync-every", "300ms"]);
    let p = dir.join(VERSION).join("run=k").join("shard=2");
    let t = Instant::now();
    while parts_of(&p).len() < 3 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGKILL) }, 0);
    let _ = c.wait();
    let parts = parts_of(&p);
    assert!(parts.len() >= 3, "{}", parts.len());
    assert!(!p.join("_SUCCESS").exists() && !p.join("_STOPPED").exists());
    let mut rows = 0;
    for part in &parts {
        rows += read_parquet(part).0.len();
    }
    assert!(rows > 500, "{rows} rows survived");
    // recover checks, removes the unfinished part, says what to do, exits 1.
    let o = bed.asdic(&["recover", d]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    let err = stderr_of(&o);
    assert!(
        err.contains("schema_version=2/run=k/shard=2: killed"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} finished parts", parts.len())),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&p).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no temporary file left"
    );
    // The same partition again is refused before sending; SIGINT leaves _STOPPED.
    let again = bed.asdic(&{
        let mut a = scan_args(d, "k", "2000");
        a.extend_from_slice(&["--shards", "4", "--shard", "2"]);
        a
    });
    assert_eq!(again.status.code(), Some(2), "{}", stderr_of(&again));
    assert!(stderr_of(&again).contains("earlier run of this partition"));
    let c = shard(&bed, d, "s", 1, "2000", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGINT) }, 0);
    let out = c.wait_with_output().expect("waiting");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Interrupted: 130 (128 + SIGINT), so a job runner does not count the shard as done.
    assert_eq!(out.status.code(), Some(130), "interrupted shard: {err}");
    assert!(err.contains("stopped early"), "{err}");
    let s = dir.join(VERSION).join("run=s").join("shard=1");
    assert!(s.join("_STOPPED").is_file() && !s.join("_SUCCESS").exists());
    // Bad indices from the job runner: clear errors, nothing sent.
    for (var, val, msg) in [
        (
            "JOB_COMPLETION_INDEX",
            "4",
            "names shard 4, but --shards is 4",
        ),
        ("JOB_COMPLETION_INDEX", "x", "is not a shard index"),
    ] {
        let mut a = scan_args(d, "bad", "100");
        a.extend_from_slice(&["--shards", "4", "--shard", "env"]);
        let o = bed.command(&a).env(var, val).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
        assert!(stderr_of(&o).contains(msg), "{}", stderr_of(&o));
    }
    let mut a = scan_args(d, "bad", "100");
    a.extend_from_slice(&["--shards", "4", "--shard", "env"]);
    let o = bed
        .command(&a)
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("neither JOB_COMPLETION_INDEX"),
        "{}",
        stderr_of(&o)
    );
}

#[test]
fn ping_and_trace_runs_are_partitions_too_and_recover_checks_them_all() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("ds3", &[]);
    let dir = scratch("dataset-runs");
    let d = dir.to_str().unwrap();
    let o = bed.asdic(&[
        "ping",
        "198.19.0.1",
        "198.19.0.13",
        "198.19.77.5",
        "-c",
        "3",
        "-i",
        "100ms",
        "-q",
        "--dataset",
        d,
        "--run-id",
        "p1",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "two do not answer: {}",
        stderr_of(&o)
    );
    let o = bed.asdic(&["trace", "198.19.0.1", "-q", "--dataset", d]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let runs: Vec<PathBuf> = {
        // Only this version's partitions at the root: the runs are under it.
        let top: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top, [VERSION], "{top:?}");
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(VERSION))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        let name = r.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("run="), "{name}");
        assert!(r.join("_SUCCESS").is_file(), "{name}");
        let (rows, meta) = read_parquet(&r.join("part-000000.parquet"));
        assert_eq!(meta.run_id.as_deref(), name.strip_prefix("run="));
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|row| !row.contains_key("run")));
    }
    // The ping's three targets, the trace's run named by its start and session.
    let (rows, meta) = read_parquet(&dir.join(VERSION).join("run=p1/part-000000.parquet"));
    assert_eq!(meta.schema_version, Some(2));
    assert_eq!(rows.len(), 3);
    let trace = runs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        trace.len() == "run=20261203T150405Z-1a2b3c4d".len() && trace.contains('T'),
        "{trace}"
    );
    // The same run name again is refused before anything is sent.
    let again = bed.asdic(&["ping", "198.19.0.1", "-q", "--dataset", d, "--run-id", "p1"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr_of(&again));
    assert!(stderr_of(&again).contains("earlier run"));
    let rec = bed.asdic(&["recover", d]);
    assert!(rec.status.success(), "{}", stderr_of(&rec));
    assert!(
        stderr_of(&rec).contains("2 partitions, 2 complete"),
        "{}",
        stderr_of(&rec)
    );
}
