//! Safe files and honest exits, on the test bed, as root: asdic writes no path it did not
//! create (planted symbolic links, FIFOs and directories by an unprivileged user are refused
//! or stepped around, never followed), streams into special files instead of replacing them,
//! never replaces results without `--force`, loses no result to a closed stderr, and exits
//! 130/143/141 when a signal or a closed stdout stopped it.
//!
//! The hostile directory is a root-owned, non-sticky, mode 0777 directory under the test's
//! scratch directory: the kernel's `fs.protected_symlinks` does not cover it, so only asdic
//! stands between the planted links and root's files. No sysctl is changed, nothing under
//! /dev is touched (device nodes are `mknod` copies in scratch).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use asdic_tests::{
    Bed, asdic_bin, assert_ping_ground_truth, read_parquet, require_bed, responding, scratch,
    signal, stderr_of,
};
use serde_json::Value;

type Row = HashMap<String, Value>;

const NOBODY: &str = "65534";

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs `cmd` as nobody (uid and gid 65534, no groups): the unprivileged local user.
fn as_nobody(cmd: &[&str]) {
    let o = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .args(cmd)
        .output()
        .expect("setpriv");
    assert!(o.status.success(), "{cmd:?}: {}", stderr_of(&o));
}

/// A fresh root-owned directory of mode `mode` in scratch.
fn dir_with_mode(name: &str, mode: u32) -> PathBuf {
    let d = scratch(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    d
}

/// Root's own file, mode 0600, outside the hostile directory: what a planted link aims at.
fn victim(name: &str) -> (PathBuf, Vec<u8>) {
    let v = scratch(name);
    let body = format!("root's own {name}\n").into_bytes();
    std::fs::write(&v, &body).unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o600)).unwrap();
    (v, body)
}

/// Runs asdic and expects it to refuse before sending anything: exit 2, a line containing
/// `says`, the bed's send counter unchanged.
fn refused(bed: &Bed, args: &[&str], says: &str) -> String {
    let sent = bed.counter("sent4");
    let o = bed.asdic(args);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}:\n{err}");
    assert!(err.contains(says), "{args:?}: wanted {says:?} in\n{err}");
    assert_eq!(
        bed.counter("sent4"),
        sent,
        "{args:?}: a refused run sends nothing"
    );
    err
}

fn link_target(path: &Path) -> PathBuf {
    std::fs::read_link(path)
        .unwrap_or_else(|e| panic!("{} is no longer a link: {e}", path.display()))
}

fn s<'a>(r: &'a Row, k: &str) -> &'a str {
    r[k].as_str().unwrap_or_else(|| panic!("{k} in {r:?}"))
}

/// Runs `asdic ARGS` in the bed with stdout and stderr into `head -1`, which exits after the
/// first line: every later diagnostic meets a closed pipe. Returns asdic's exit status and
/// what head printed.
fn with_stderr_closed(bed: &Bed, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new("ip")
        .args(["netns", "exec", &format!("asdic-{}-scan", bed.id())])
        .args([
            "bash",
            "-c",
            r#""$0" "$@" 2>&1 | head -1; exit "${PIPESTATUS[0]}""#,
        ])
        .arg(asdic_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Runs `asdic ARGS` in the bed with stdout into `head -c BYTES` (stderr kept); returns the
/// exit status, stderr, and how long it took.
fn with_stdout_closed_after(
    bed: &Bed,
    args: &[&str],
    bytes: u32,
) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let o = Command::new("ip")
        .args(["netns", "exec", &format!("asdic-{}-scan", bed.id())])
        .args([
            "bash",
            "-c",
            &format!(r#""$0" "$@" | head -c {bytes} >/dev/null; exit "${{PIPESTATUS[0]}}""#),
        ])
        .arg(asdic_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    (o.status.code(), stderr_of(&o), t0.elapsed())
}

/// Waits for `child` at most `limit`; kills it (and fails) past that.
fn wait_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The scan rows of a /24 of the bed, checked against its rules: exactly the hosts that
/// answer, once each.
fn assert_scan_of_slash24(rows: &[Row]) {
    let mut got = HashSet::new();
    for r in rows {
        assert_eq!(s(r, "outcome"), "reply", "{r:?}");
        assert!(got.insert(s(r, "target").to_string()), "twice: {r:?}");
    }
    assert_eq!(got, responding(0..256u32, 0..0));
}

#[test]
fn special_files_at_o_are_streamed_never_replaced() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fl1", &[]);
    let truth = bed.truth();
    fn ping(out: &str) -> Vec<&str> {
        vec![
            "ping",
            "198.19.0.1",
            "198.19.0.2",
            "198.19.0.13",
            "-c",
            "1",
            "-W",
            "300ms",
            "-q",
            "--no-progress",
            "-o",
            out,
        ]
    }

    // A character device: a copy of /dev/null made with mknod, never the real one.
    let null = scratch("fl1-null");
    let _ = std::fs::remove_file(&null);
    let o = Command::new("mknod")
        .args([p(&null), "c", "1", "3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let o = bed.asdic(&ping(p(&null)));
    assert_eq!(
        o.status.code(),
        Some(1),
        "a dead target: exit 1\n{}",
        stderr_of(&o)
    );
    let m = std::fs::symlink_metadata(&null).unwrap();
    assert!(m.file_type().is_char_device(), "still a device: {m:?}");
    assert_eq!(m.rdev(), libc::makedev(1, 3));
    assert!(stderr_of(&o).contains("a stream"), "{}", stderr_of(&o));

    // A FIFO with no reader: refused at once, nothing sent, still a FIFO.
    let fifo = scratch("fl1-fifo");
    let _ = std::fs::remove_file(&fifo);
    let o = Command::new("mkfifo").arg(&fifo).output().unwrap();
    assert!(o.status.success());
    let t0 = Instant::now();
    refused(&bed, &ping(p(&fifo)), "a FIFO with no reader");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // A FIFO with a reader: the reader gets the whole Parquet file.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).unwrap();
            let mut v = vec![];
            f.read_to_end(&mut v).unwrap();
            v
        })
    };
    // The reader's open has to come first (it blocks until a writer opens).
    std::thread::sleep(Duration::from_millis(300));
    let o = bed.asdic(&ping(p(&fifo)));
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    let got = reader.join().unwrap();
    let copy = scratch("fl1-fifo-copy.parquet");
    std::fs::write(&copy, &got).unwrap();
    let (rows, meta) = read_parquet(&copy);
    assert_eq!(rows.len(), 3);
    assert_eq!(assert_ping_ground_truth(&truth, &rows, 1), [2, 1, 0]);
    assert_eq!(meta.interrupted, Some(false));
    assert_eq!(
        meta.complete,
        Some(true),
        "every mode says whether it ran whole"
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // Root's own link to its stdout (a pipe here): followed, streamed, still a link.
    let own = scratch("fl1-own");
    let _ = std::fs::remove_file(&own);
    std::os::unix::fs::symlink("/proc/self/fd/1", &own).unwrap();
    let o = bed.asdic(&ping(p(&own)));
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    let copy = scratch("fl1-own-copy.parquet");
    std::fs::write(&copy, &o.stdout).unwrap();
    let (rows, _) = read_parquet(&copy);
    assert_eq!(assert_ping_ground_truth(&truth, &rows, 1), [2, 1, 0]);
    assert_eq!(link_target(&own), Path::new("/proc/self/fd/1"));
}

#[test]
fn planted_links_fifos_and_directories_are_never_followed() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fl2", &[]);
    let truth = bed.truth();
    let hostile = dir_with_mode("fl2-hostile", 0o777);
    let (vic, body) = victim("fl2-victim");
    let vic_dir = dir_with_mode("fl2-victim-dir", 0o700);
    let at = |n: &str| hostile.join(n);
    let plant_link = |to: &Path, n: &str| as_nobody(&["ln", "-s", p(to), p(&at(n))]);

    // Every name the earlier releases wrote through, planted before a root run writes
    // r.parquet: the temporary names of the results and of the snapshot (links to root's
    // file, a FIFO, a directory). The run steps around all of them.
    plant_link(&vic, "r.parquet.tmp");
    plant_link(&vic, "r.parquet.partial.tmp");
    as_nobody(&["mkfifo", p(&at(".r.parquet.tmp"))]);
    as_nobody(&["mkdir", p(&at("r.parquet.tmp.d"))]);
    let out = at("r.parquet");
    let o = bed.asdic(&[
        "ping",
        "198.19.0.0/26",
        "-c",
        "3",
        "-i",
        "300ms",
        "-W",
        "300ms",
        "--rate",
        "2000",
        "--sync-every",
        "100ms",
        "-q",
        "--no-progress",
        "-o",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    let (rows, _) = read_parquet(&out);
    assert_eq!(rows.len(), 64);
    assert_ping_ground_truth(&truth, &rows, 3);
    assert_eq!(std::fs::metadata(&out).unwrap().uid(), 0);
    assert!(!at("r.parquet.partial").exists(), "the snapshot is gone");
    assert_eq!(link_target(&at("r.parquet.tmp")), vic);
    assert_eq!(link_target(&at("r.parquet.partial.tmp")), vic);
    assert!(
        std::fs::symlink_metadata(at(".r.parquet.tmp"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // Final paths planted: refused before any probe, with --force too.
    plant_link(&vic, "l.parquet");
    fn ping(out: &str, force: bool) -> Vec<&str> {
        let mut v = vec!["ping", "198.19.0.1", "-c", "1", "-q", "-o", out];
        if force {
            v.push("--force");
        }
        v
    }
    let l = at("l.parquet");
    refused(
        &bed,
        &ping(p(&l), false),
        "symbolic link owned by uid 65534",
    );
    refused(&bed, &ping(p(&l), true), "symbolic link owned by uid 65534");
    refused(
        &bed,
        &[
            "trace",
            "198.19.0.1",
            "--no-progress",
            "-o",
            p(&l),
            "--force",
        ],
        "symbolic link owned by uid 65534",
    );
    as_nobody(&["mkfifo", p(&at("f.parquet"))]);
    refused(
        &bed,
        &ping(p(&at("f.parquet")), false),
        "a FIFO owned by uid 65534",
    );
    // A link to a stream is no better than a link to a file when someone else planted it.
    let null = scratch("fl2-null");
    let _ = std::fs::remove_file(&null);
    assert!(
        Command::new("mknod")
            .args([p(&null), "c", "1", "3"])
            .status()
            .unwrap()
            .success()
    );
    plant_link(&null, "n.parquet");
    refused(&bed, &ping(p(&at("n.parquet")), false), "symbolic link");

    fn scan<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "scan",
            "198.19.0.0/28",
            "--no-default-blocklist",
            "--rate",
            "1000",
            "--cooldown",
            "300ms",
        ];
        v.extend_from_slice(extra);
        v
    }
    plant_link(&vic, "s.csv");
    refused(
        &bed,
        &scan(&["-o", p(&at("s.csv")), "--force"]),
        "symbolic link",
    );
    refused(
        &bed,
        &scan(&["-o", p(&at("x.parquet")), "--status-file", p(&l)]),
        "--status-file",
    );
    // The parts directory of a scan and a ping's snapshot, planted as links.
    plant_link(&vic_dir, "d.parquet.parts");
    refused(&bed, &scan(&["-o", p(&at("d.parquet"))]), "d.parquet.parts");
    plant_link(&vic, "q.parquet.partial");
    refused(&bed, &ping(p(&at("q.parquet")), false), "q.parquet.partial");
    // A directory given as the results file.
    refused(&bed, &ping(p(&hostile), false), "directory");

    // The report: a planted figures/ link is refused; a planted temporary name is stepped
    // around.
    let rep = hostile.join("rep");
    std::fs::create_dir(&rep).unwrap();
    std::fs::set_permissions(&rep, std::fs::Permissions::from_mode(0o777)).unwrap();
    as_nobody(&["ln", "-s", p(&vic_dir), p(&rep.join("figures"))]);
    as_nobody(&["ln", "-s", p(&vic), p(&rep.join(".report.html.tmp"))]);
    let o = bed.asdic(&["report", p(&out), "-o", p(&rep)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("figures"), "{}", stderr_of(&o));
    std::fs::remove_file(rep.join("figures")).unwrap();
    let o = bed.asdic(&["report", p(&out), "-o", p(&rep)]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    assert!(html.contains("198.19.0."), "the report names the targets");
    assert_eq!(link_target(&rep.join(".report.html.tmp")), vic);

    // A directory others may write, owned by neither root nor asdic's user: refused.
    as_nobody(&["mkdir", "-m", "0777", p(&at("nob"))]);
    refused(
        &bed,
        &ping(p(&at("nob").join("x.parquet")), false),
        "without the sticky bit, and owned by uid 65534",
    );

    // Root's file and directory are as they were; every planted link still points there.
    assert_eq!(std::fs::read(&vic).unwrap(), body);
    assert_eq!(std::fs::metadata(&vic).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(&vic_dir).unwrap().count(), 0);
    for n in ["l.parquet", "s.csv", "q.parquet.partial", "d.parquet.parts"] {
        assert!(
            std::fs::symlink_metadata(at(n))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{n}"
        );
    }
}

#[test]
fn existing_results_need_force_and_a_dry_run_writes_nothing() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fl3", &[]);
    let truth = bed.truth();
    let pq = scratch("fl3-p.parquet");
    let ping = |force: bool| {
        let mut v = vec![
            "ping",
            "198.19.0.0/28",
            "-c",
            "1",
            "-W",
            "300ms",
            "-q",
            "--no-progress",
            "-o",
            p(&pq),
        ];
        if force {
            v.push("--force");
        }
        v
    };
    let o = bed.asdic(&ping(false));
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    let first = std::fs::read(&pq).unwrap();
    refused(&bed, &ping(false), "--force");
    assert_eq!(std::fs::read(&pq).unwrap(), first, "untouched");
    let o = bed.asdic(&ping(true));
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    let (rows, meta) = read_parquet(&pq);
    assert_ping_ground_truth(&truth, &rows, 1);
    assert_eq!(rows.len(), 16);
    assert_ne!(
        std::fs::read(&pq).unwrap(),
        first,
        "replaced by the new run"
    );
    assert_eq!(meta.interrupted, Some(false));

    // trace, and scan to Parquet and to CSV (a live file).
    let tr = scratch("fl3-t.parquet");
    let trace = |force: bool| {
        let mut v = vec!["trace", "198.19.0.1", "--no-progress", "-o", p(&tr)];
        if force {
            v.push("--force");
        }
        v
    };
    assert!(bed.asdic(&trace(false)).status.success());
    let first = std::fs::read(&tr).unwrap();
    refused(&bed, &trace(false), "--force");
    assert_eq!(std::fs::read(&tr).unwrap(), first);
    assert!(bed.asdic(&trace(true)).status.success());
    assert!(!read_parquet(&tr).0.is_empty());

    for name in ["fl3-s.parquet", "fl3-s.csv"] {
        let out = scratch(name);
        fn scan<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
            let mut v = vec![
                "scan",
                "198.19.0.0/24",
                "--no-default-blocklist",
                "--rate",
                "2000",
                "--cooldown",
                "500ms",
                "--seed",
                "7",
                "-o",
                out,
            ];
            v.extend_from_slice(extra);
            v
        }
        let o = bed.asdic(&scan(p(&out), &[]));
        assert!(o.status.success(), "{}", stderr_of(&o));
        let first = std::fs::read(&out).unwrap();
        refused(&bed, &scan(p(&out), &[]), "--force");
        assert_eq!(std::fs::read(&out).unwrap(), first);
        // A dry run with -o would only ever have emptied it: refused.
        refused(&bed, &scan(p(&out), &["--dry-run"]), "--dry-run");
        refused(&bed, &scan(p(&out), &["--dry-run", "--force"]), "--dry-run");
        assert_eq!(std::fs::read(&out).unwrap(), first);
        let o = bed.asdic(&scan(p(&out), &["--force"]));
        assert!(o.status.success(), "{}", stderr_of(&o));
        let text = std::fs::read(&out).unwrap();
        if name.ends_with(".csv") {
            // -o's extension picks the format.
            let text = String::from_utf8(text).unwrap();
            assert!(text.starts_with("target,outcome,"), "{text}");
            assert_eq!(text.lines().count(), 1 + responding(0..256u32, 0..0).len());
        } else {
            assert_scan_of_slash24(&read_parquet(&out).0);
        }
    }
    // A name that says one format and a flag that says another: refused.
    refused(
        &bed,
        &[
            "scan",
            "198.19.0.0/28",
            "--no-default-blocklist",
            "--rate",
            "100",
            "-o",
            p(&scratch("fl3-x.csv")),
            "-O",
            "parquet",
        ],
        "the name says csv, -O says parquet",
    );
    assert!(!scratch("fl3-x.csv").exists());
}

#[test]
fn dash_o_is_stdout_where_a_stream_makes_sense() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fl4", &[]);
    let truth = bed.truth();
    let parquet_of = |name: &str, bytes: &[u8]| {
        let f = scratch(name);
        std::fs::write(&f, bytes).unwrap();
        read_parquet(&f)
    };
    // ping: the results as Parquet on stdout, no table.
    let o = bed.asdic(&[
        "ping",
        "198.19.0.0/28",
        "-c",
        "2",
        "-i",
        "200ms",
        "-W",
        "300ms",
        "-o",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(o.stdout.starts_with(b"PAR1"), "Parquet, not a table");
    let (rows, _) = parquet_of("fl4-ping.parquet", &o.stdout);
    assert_eq!(rows.len(), 16);
    assert_ping_ground_truth(&truth, &rows, 2);
    assert!(!Path::new("-").exists());

    // trace: the hops as Parquet.
    let o = bed.asdic(&["trace", "198.19.0.1", "--no-progress", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let (rows, _) = parquet_of("fl4-trace.parquet", &o.stdout);
    assert!(
        rows.iter()
            .any(|r| r["responder"].as_str() == Some("198.19.0.1")),
        "{rows:?}"
    );

    // scan: CSV by default, Parquet when asked.
    let scan = |extra: &[&str]| {
        let mut v = vec![
            "scan",
            "198.19.0.0/24",
            "--no-default-blocklist",
            "--rate",
            "2000",
            "--cooldown",
            "500ms",
            "-o",
            "-",
        ];
        v.extend_from_slice(extra);
        bed.asdic(&v)
    };
    let o = scan(&["-O", "parquet"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_scan_of_slash24(&parquet_of("fl4-scan.parquet", &o.stdout).0);
    let o = scan(&[]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let csv = String::from_utf8(o.stdout).unwrap();
    assert_eq!(csv.lines().count(), 1 + responding(0..256u32, 0..0).len());

    // sweep and report write directories: `-o -` is refused in one line.
    let fleet = scratch("fl4-fleet.txt");
    std::fs::write(&fleet, "198.19.0.1\n").unwrap();
    let err = refused(
        &bed,
        &["sweep", p(&fleet), "--rounds", "1", "-o", "-"],
        "-o -",
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("-o -")).count(),
        1,
        "{err}"
    );
    let o = bed.asdic(&["report", p(&scratch("fl4-ping.parquet")), "-o", "-"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("-o -"), "{}", stderr_of(&o));
}

#[test]
fn a_closed_stderr_or_stdout_loses_no_result() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fl5", &[]);
    let truth = bed.truth();

    // ping: its diagnostics after the first line meet a closed pipe; the file is whole and
    // says how many lines were lost.
    let pq = scratch("fl5-p.parquet");
    let (code, head) = with_stderr_closed(
        &bed,
        &[
            "ping",
            "198.19.0.0/24",
            "-c",
            "3",
            "-i",
            "300ms",
            "-W",
            "300ms",
            "--rate",
            "5000",
            "-q",
            "-o",
            p(&pq),
        ],
    );
    assert_eq!(code, Some(1), "dead targets: exit 1 ({head})");
    let (rows, meta) = read_parquet(&pq);
    assert_eq!(rows.len(), 256);
    assert_eq!(assert_ping_ground_truth(&truth, &rows, 3), [253, 3, 0]);
    assert!(meta.stderr_lost.is_some_and(|n| n >= 1), "{meta:?}");

    // scan.
    let sq = scratch("fl5-s.parquet");
    let (code, head) = with_stderr_closed(
        &bed,
        &[
            "scan",
            "198.19.0.0/24",
            "--no-default-blocklist",
            "--rate",
            "500",
            "--cooldown",
            "500ms",
            "-o",
            p(&sq),
        ],
    );
    assert_eq!(code, Some(0), "{head}");
    let (rows, meta) = read_parquet(&sq);
    assert_scan_of_slash24(&rows);
    assert!(meta.stderr_lost.is_some_and(|n| n >= 1), "{meta:?}");
    assert_eq!(meta.complete, Some(true));
    assert!(!PathBuf::from(format!("{}.parts", sq.display())).exists());

    // sweep: three rounds, each in the files.
    let fleet = scratch("fl5-fleet.txt");
    std::fs::write(&fleet, "198.19.0.1\n198.19.0.13\n").unwrap();
    let dir = scratch("fl5-sweep");
    let (code, head) = with_stderr_closed(
        &bed,
        &[
            "sweep",
            p(&fleet),
            "--every",
            "300ms",
            "--rounds",
            "3",
            "--status-every",
            "0",
            "-o",
            p(&dir),
        ],
    );
    assert_eq!(code, Some(0), "{head}");
    let mut rows: Vec<Row> = vec![];
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|x| x == "parquet") {
            rows.extend(read_parquet(&f).0);
        }
    }
    let count = |t: &str, ev: &str| {
        rows.iter()
            .filter(|r| s(r, "target") == t && s(r, "event") == ev)
            .count()
    };
    assert_eq!(count("198.19.0.1", "reply"), 3, "{rows:?}");
    assert_eq!(count("198.19.0.13", "timeout"), 3, "{rows:?}");

    // The results themselves to a closed stdout: the scan stops at once and exits 141.
    let (code, err, took) = with_stdout_closed_after(
        &bed,
        &[
            "scan",
            "198.19.0.0/16",
            "--no-default-blocklist",
            "--rate",
            "4000",
            "--cooldown",
            "500ms",
            "-o",
            "-",
        ],
        100,
    );
    assert_eq!(code, Some(141), "{err}");
    // The whole scan takes over 16 s at this rate.
    assert!(took < Duration::from_secs(8), "{took:?}\n{err}");

    // ping's table (bigger than a pipe's buffer) to a closed stdout: exit 141, and the -o
    // file is complete.
    let pt = scratch("fl5-table.parquet");
    let (code, err, _) = with_stdout_closed_after(
        &bed,
        &[
            "ping",
            "198.19.0.0/20",
            "-c",
            "1",
            "-W",
            "300ms",
            "--rate",
            "20000",
            "--no-progress",
            "-o",
            p(&pt),
        ],
        10,
    );
    assert_eq!(code, Some(141), "{err}");
    let (rows, _) = read_parquet(&pt);
    let dead = (0..4096).filter(|x| x % 97 == 13).count() as u64;
    assert_eq!(rows.len(), 4096);
    assert_eq!(
        assert_ping_ground_truth(&truth, &rows, 1),
        [4096 - dead, dead, 0]
    );
}

#[test]
fn signals_give_the_exit_status_a_shell_expects() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fl6", &[]);
    let spawn = |args: &[&str]| {
        bed.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("asdic")
    };
    let stderr = |c: &mut std::process::Child| {
        let mut s = String::new();
        c.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };

    // ping, SIGTERM: 143, with every target's row written.
    let pq = scratch("fl6-p.parquet");
    let mut c = spawn(&[
        "ping",
        "198.19.0.0/24",
        "-c",
        "30",
        "-i",
        "500ms",
        "--rate",
        "5000",
        "-q",
        "--no-progress",
        "-o",
        p(&pq),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&c, libc::SIGTERM);
    let st = wait_within(&mut c, Duration::from_secs(20));
    let err = stderr(&mut c);
    assert_eq!(st.code(), Some(143), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let (rows, meta) = read_parquet(&pq);
    assert_eq!(rows.len(), 256);
    assert_eq!(meta.interrupted, Some(true));
    assert_eq!(meta.signal.as_deref(), Some("SIGTERM"));
    assert!(
        rows.iter()
            .all(|r| r["sent"].as_u64().is_some_and(|n| (1..30).contains(&n)))
    );

    // trace, SIGINT: 130.
    let tq = scratch("fl6-t.parquet");
    let mut c = spawn(&[
        "trace",
        "198.19.0.13",
        "-W",
        "20s",
        "--no-progress",
        "-o",
        p(&tq),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&c, libc::SIGINT);
    let st = wait_within(&mut c, Duration::from_secs(20));
    let err = stderr(&mut c);
    assert_eq!(st.code(), Some(130), "{err}");
    let (_, meta) = read_parquet(&tq);
    assert_eq!(meta.signal.as_deref(), Some("SIGINT"));

    // scan, SIGINT: 130.
    let sq = scratch("fl6-s.parquet");
    let mut c = spawn(&[
        "scan",
        "198.19.0.0/16",
        "--no-default-blocklist",
        "--rate",
        "2000",
        "-o",
        p(&sq),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&c, libc::SIGINT);
    let st = wait_within(&mut c, Duration::from_secs(30));
    let err = stderr(&mut c);
    assert_eq!(st.code(), Some(130), "{err}");
    let (rows, meta) = read_parquet(&sq);
    assert_eq!(meta.complete, Some(false));
    assert!(!rows.is_empty());

    // sweep: a signal is how it is meant to stop: SIGTERM exits 0.
    let fleet = scratch("fl6-fleet.txt");
    std::fs::write(&fleet, "198.19.0.1\n").unwrap();
    let dir = scratch("fl6-sweep");
    let mut c = spawn(&["sweep", p(&fleet), "--every", "200ms", "-o", p(&dir)]);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&c, libc::SIGTERM);
    let st = wait_within(&mut c, Duration::from_secs(20));
    let err = stderr(&mut c);
    assert_eq!(st.code(), Some(0), "{err}");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|x| x == "parquet"))
        .collect();
    let replies: usize = files
        .iter()
        .map(|f| {
            read_parquet(f)
                .0
                .iter()
                .filter(|r| s(r, "event") == "reply")
                .count()
        })
        .sum();
    assert!(replies >= 3, "{replies} replies in {files:?}");
}
