//! Durable results on the test bed: a scan or a sweep killed with SIGKILL leaves finished
//! Parquet parts that read on their own and hold a prefix of what the full run writes; `asdic
//! recover` merges them; SIGTERM still ends with one complete file and no parts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use asdic_tests::{Bed, RunMode, read_parquet, require_bed, scratch, signal, stderr_of};
use serde_json::Value;

type Row = HashMap<String, Value>;

fn parts_of(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("part-") && n.ends_with(".parquet")
        })
        .collect();
    v.sort();
    v
}

fn parts_dir(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.parts", out.display()))
}

/// Waits until `f` holds (polling), at most `limit`.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn spawn(bed: &Bed, args: &[&str]) -> Child {
    bed.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting asdic")
}

/// (probe, target, outcome) of scan rows.
fn keys(rows: &[Row]) -> Vec<(u64, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["probe"].as_u64().unwrap(),
                r["target"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const SCAN: &[&str] = &[
    "scan",
    "198.19.0.0/16",
    "--no-default-blocklist",
    "--rate",
    "8000",
    "--seed",
    "4242",
    "--cooldown",
    "1s",
    "--engine",
    "raw",
    "--sync-every",
    "500ms",
    "-o",
];

#[test]
fn a_killed_scan_leaves_readable_parts_holding_a_prefix_of_the_full_run() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("du1", &[]);

    // The full run, for reference: the same seed probes the same targets in the same order.
    let full = scratch("durable-full.parquet");
    let mut args = SCAN.to_vec();
    let full_s = full.to_str().unwrap();
    args.push(full_s);
    let o = bed.asdic(&args);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(!parts_dir(&full).exists(), "a finished run leaves no parts");
    let (full_rows, full_meta) = read_parquet(&full);
    assert_eq!(full_meta.complete, Some(true));
    let full_keys: HashSet<(u64, String, String)> = keys(&full_rows).into_iter().collect();
    assert!(full_keys.len() > 60_000, "{} rows", full_keys.len());

    // The same scan killed after about 3 s (of about 8 s of sending).
    let killed = scratch("durable-killed.parquet");
    let mut args = SCAN.to_vec();
    args.push(killed.to_str().unwrap());
    let mut child = spawn(&bed, &args);
    let dir = parts_dir(&killed);
    assert!(
        wait_for(Duration::from_secs(20), || dir.is_dir()
            && parts_of(&dir).len() >= 5),
        "no parts appeared in {}",
        dir.display()
    );
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    assert!(!killed.exists(), "a killed run has no final file");
    let parts = parts_of(&dir);
    let mut rows = vec![];
    for (i, p) in parts.iter().enumerate() {
        let (r, meta) = read_parquet(p);
        assert_eq!(meta.part, Some(i as u64), "{}", p.display());
        assert_eq!(meta.mode, Some(RunMode::Scan));
        assert!(!r.is_empty(), "{}: an empty part", p.display());
        rows.extend(r);
    }
    let got = keys(&rows);
    // Every surviving row is a row of the full run, none twice.
    let set: HashSet<_> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "duplicate rows across parts");
    let foreign: Vec<_> = set.difference(&full_keys).take(5).collect();
    assert!(
        foreign.is_empty(),
        "rows the full run does not have: {foreign:?}"
    );
    // ... and they are a prefix of it: every full-run row of a probe sent well before the
    // last surviving one (more than one second of probes, two sync periods) is there.
    let last = got.iter().map(|k| k.0).max().unwrap();
    let margin = 8_000;
    let missing: Vec<_> = full_keys
        .iter()
        .filter(|k| k.0 + margin < last && !set.contains(*k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "rows lost before the kill: {missing:?}");
    assert!(
        got.len() > 10_000,
        "only {} rows survived 5 parts",
        got.len()
    );

    // asdic recover merges the parts into the file, marked incomplete, and clears them.
    let out = bed.asdic(&["recover", killed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!dir.exists());
    let (merged, meta) = read_parquet(&killed);
    assert_eq!(keys(&merged), got, "recover keeps the parts' rows in order");
    assert_eq!(meta.complete, Some(false));
    assert_eq!(meta.recovered_parts, Some(parts.len() as u64));
    // Nothing left to recover now; a second recover says so.
    let again = bed.asdic(&["recover", killed.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr_of(&again));
}

#[test]
fn a_terminated_scan_still_writes_one_complete_file() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("du2", &[]);
    let out = scratch("durable-term.parquet");
    let mut args = SCAN.to_vec();
    args.push(out.to_str().unwrap());
    // Run after the scan above into the same name: replacing it is asked for.
    args.push("--force");
    let child = spawn(&bed, &args);
    let dir = parts_dir(&out);
    assert!(wait_for(Duration::from_secs(20), || dir.is_dir()
        && parts_of(&dir).len() >= 2));
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(o.status.code(), Some(143), "128 + SIGTERM: {err}");
    assert!(!dir.exists(), "parts merged and removed");
    let (rows, meta) = read_parquet(&out);
    assert_eq!(meta.interrupted, Some(true));
    assert_eq!(meta.complete, Some(false));
    assert!(meta.end_unix_ns.is_some(), "{meta:?}");
    // Every probe sent got its row (a hit or not: by default the rows are the hits, and the
    // summary counts them).
    let summary = meta.summary.as_deref().expect("a summary");
    assert!(!rows.is_empty(), "{summary}");

    // An output whose parts directory exists is refused before anything is sent.
    std::fs::create_dir_all(parts_dir(&out)).unwrap();
    let o = bed.asdic(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("asdic recover"), "{}", stderr_of(&o));
}

#[test]
fn a_killed_sweep_leaves_readable_parts_of_its_current_file() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("du3", &[]);
    let targets = scratch("durable-sweep.txt");
    let list: Vec<String> = (1..=40).map(|i| format!("198.19.1.{i}")).collect();
    std::fs::write(&targets, list.join("\n")).unwrap();
    let dir = scratch("durable-sweep-out");
    let mut child = spawn(
        &bed,
        &[
            "sweep",
            targets.to_str().unwrap(),
            "--every",
            "500ms",
            "--timeout",
            "300ms",
            "--sync-every",
            "500ms",
            "--engine",
            "raw",
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    let parts_dirs = || -> Vec<PathBuf> {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(".parquet.parts"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        wait_for(Duration::from_secs(20), || parts_dirs()
            .iter()
            .map(|d| parts_of(d).len())
            .sum::<usize>()
            >= 4),
        "no sweep parts in {}",
        dir.display()
    );
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    let mut probes: HashMap<String, usize> = HashMap::new();
    for d in parts_dirs() {
        for p in parts_of(&d) {
            let (rows, meta) = read_parquet(&p);
            assert_eq!(meta.mode, Some(RunMode::Sweep));
            for r in rows {
                if ["reply", "timeout"].contains(&r["event"].as_str().unwrap()) {
                    *probes
                        .entry(r["target"].as_str().unwrap().to_string())
                        .or_default() += 1;
                }
            }
        }
    }
    // Every target's results of the rounds before the kill are there (host 1.13 is dead on
    // the bed: its timeouts are results too).
    assert_eq!(probes.len(), 40, "{probes:?}");
    assert!(probes.values().all(|&n| n >= 2), "{probes:?}");
}

#[test]
fn a_killed_ping_leaves_a_snapshot_of_every_targets_statistics() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("du4", &[]);
    let truth = bed.truth();
    let out = scratch("durable-ping.parquet");
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    // 1,024 targets, 10 rounds a second apart: about 10 s; killed after a few snapshots.
    let mut child = spawn(
        &bed,
        &[
            "ping",
            "198.19.76.0/22",
            "-c",
            "10",
            "-i",
            "1s",
            "-W",
            "300ms",
            "--rate",
            "20000",
            "--sync-every",
            "500ms",
            "--engine",
            "raw",
            "-q",
            "--no-progress",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let t0 = Instant::now();
    assert!(wait_for(Duration::from_secs(20), || partial.exists()));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    assert!(!out.exists());
    let (rows, meta) = read_parquet(&partial);
    assert_eq!(meta.partial, Some(true));
    assert_eq!(meta.mode, Some(RunMode::Ping));
    assert_eq!(rows.len(), 1024, "every target has its row");
    let mut sent_total = 0;
    for r in &rows {
        let t: std::net::Ipv4Addr = r["target"].as_str().unwrap().parse().unwrap();
        let x = u32::from(t) & 0xffff;
        let sent = r["sent"].as_u64().unwrap();
        let received = r["received"].as_u64().unwrap();
        assert!((1..10).contains(&sent), "{t}: {sent} sent after ~3 s of 10");
        sent_total += sent;
        match asdic_tests::classify(&truth, false, x) {
            asdic_tests::Truth::Alive => {
                // Answered all but, at most, the round still in flight at the snapshot.
                assert!(received <= sent && received + 1 >= sent, "{t}: {r:?}");
            }
            _ => assert_eq!(received, 0, "{t}: {r:?}"),
        }
    }
    assert!(sent_total >= 2 * 1024, "{sent_total}");

    // The retry a job runner makes is refused while the snapshot is there, with a line naming
    // `asdic recover`; nothing is sent and the snapshot is untouched.
    let before = std::fs::read(&partial).unwrap();
    let sent = bed.counter("sent4");
    let o = bed.asdic(&[
        "ping",
        "198.19.76.0/22",
        "--rate",
        "20000",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("asdic recover"), "{}", stderr_of(&o));
    assert_eq!(bed.counter("sent4"), sent, "a refused run sends nothing");
    assert_eq!(std::fs::read(&partial).unwrap(), before);
    // `asdic recover FILE` restores the snapshot as FILE, every row of it.
    let o = bed.asdic(&["recover", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(!partial.exists());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the snapshot, byte for byte"
    );
    let (recovered, _) = read_parquet(&out);
    assert_eq!(recovered.len(), 1024);

    // A run that ends leaves its file and no snapshot, though it wrote some.
    let done = scratch("durable-ping-done.parquet");
    let o = bed.asdic(&[
        "ping",
        "198.19.0.1",
        "-c",
        "3",
        "-i",
        "300ms",
        "--sync-every",
        "100ms",
        "-q",
        "--no-progress",
        "-o",
        done.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(!PathBuf::from(format!("{}.partial", done.display())).exists());
    let (rows, meta) = read_parquet(&done);
    assert_eq!(rows[0]["received"].as_u64(), Some(3));
    assert_eq!(meta.partial, None);
}

/// Durable snapshots of a large ping, taken off the event loop (issue 27, item 6): a /16 at
/// a fixed 20,000 probes/s with a snapshot of all 65,536 targets' statistics every 100 ms
/// loses nothing in the kernel and counts every reply, on the socket engine (whose receive
/// buffer the snapshots once stalled) and on XDP.
#[test]
fn snapshots_every_100ms_of_a_slash16_ping_lose_no_reply() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("du16", &[]);
    let truth = bed.truth();
    let dead = (0..65_536u32)
        .filter(|x| x >> 8 != 77 && x % 97 == 13)
        .count() as u64;
    for engine in ["raw", "xdp"] {
        let out = scratch(&format!("durable-16-{engine}.parquet"));
        let o = bed.asdic(&[
            "ping",
            "198.19.0.0/16",
            "--rate",
            "20000",
            "-W",
            "1s",
            "--sync-every",
            "100ms",
            "--engine",
            engine,
            "-q",
            "--no-progress",
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(1), "some targets are dead: {err}");
        let (rows, meta) = read_parquet(&out);
        assert_eq!(rows.len(), 65_536);
        let seen = asdic_tests::assert_ping_ground_truth(&truth, &rows, 1);
        assert_eq!(seen, [65_536 - 256 - dead, dead, 256], "{engine}");
        assert_eq!(meta.kernel_lost, Some(0), "{engine}: {err}");
        assert!(!err.contains("asdic: stamps:"), "only with -v: {err}");
        // What the RTTs are made of, said in the file: the kernel's send and receive stamps
        // on the socket engine; on XDP the sender's right before each probe's own call and
        // the XDP program's on receive.
        assert_eq!(
            meta.stamps.as_deref(),
            Some(asdic_tests::stamps_of(engine).as_str()),
            "{engine}"
        );
    }
}
