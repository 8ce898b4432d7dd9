//! Faults on the test bed during a run: the link goes down and up, the router loses its
//! route to the targets for a second, the scanner's interface is deleted, the output disk
//! fills up, the rate asked is far above what the engine can do. Each run ends as an operator
//! would want: results for every probe, the fault visible in them and named on stderr, files
//! that read, nothing silently lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use asdic_tests::{
    Bed, RunMode, Truth, classify, low16, read_parquet, require_bed, scratch, stderr_of,
};
use serde_json::Value;

type Row = HashMap<String, Value>;

fn ip_in(bed: &Bed, role: &str, args: &[&str]) {
    let o = Command::new("ip")
        .args(["netns", "exec", &format!("asdic-{}-{role}", bed.id()), "ip"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ip {args:?} in {role}: {}",
        stderr_of(&o)
    );
}

fn spawn(bed: &Bed, args: &[&str]) -> Child {
    bed.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// A sweep of 20 bed hosts every 200 ms for 30 rounds, its rows read back.
fn sweep(bed: &Bed, name: &str, fault: impl FnOnce()) -> (Output, Vec<Row>) {
    let fleet = scratch(&format!("{name}.txt"));
    let hosts: Vec<String> = (1..=20).map(|i| format!("198.19.4.{i}")).collect();
    std::fs::write(&fleet, hosts.join("\n")).unwrap();
    let dir = scratch(&format!("{name}-out"));
    let child = spawn(
        bed,
        &[
            "sweep",
            fleet.to_str().unwrap(),
            "--every",
            "200ms",
            "--timeout",
            "300ms",
            "--rounds",
            "30",
            "--engine",
            "raw",
            "-q",
            "-o",
            dir.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    fault();
    let out = finish(child);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut rows = vec![];
    for e in std::fs::read_dir(&dir).unwrap() {
        rows.extend(read_parquet(&e.unwrap().path()).0);
    }
    (out, rows)
}

/// Probe rows (reply, timeout, error, send_failed) in time order.
fn probes(rows: &[Row]) -> Vec<&Row> {
    let mut v: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            ["reply", "timeout", "error", "send_failed"].contains(&r["event"].as_str().unwrap())
        })
        .collect();
    v.sort_by_key(|r| r["time_unix_ns"].as_u64().unwrap());
    v
}

fn events(rows: &[&Row]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r["event"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

#[test]
fn a_link_that_goes_down_and_up_costs_the_outage_and_nothing_after() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fa1", &[]);
    // The router's side of the scanner's link goes down for a second: the scanner loses
    // carrier, its probes go nowhere, then the link comes back by itself.
    let (out, rows) = sweep(&bed, "fault-link", || {
        ip_in(&bed, "rtr", &["link", "set", "r0", "down"]);
        std::thread::sleep(Duration::from_secs(1));
        ip_in(&bed, "rtr", &["link", "set", "r0", "up"]);
    });
    let p = probes(&rows);
    // Every round's probes are there: 30 rounds × 20 targets, none missed.
    assert_eq!(p.len(), 600, "{:?}", events(&p));
    let ev = events(&p);
    let n = |k: &str| ev.get(k).copied().unwrap_or(0);
    // The outage: lost probes (timed out, or refused while the link was down).
    assert!(n("timeout") + n("send_failed") >= 60, "{ev:?}");
    // The last 5 rounds (after the link is back) are all replies.
    assert!(
        p[p.len() - 100..].iter().all(|r| r["event"] == "reply"),
        "{ev:?}"
    );
    // Before the fault, too.
    assert!(p[..100].iter().all(|r| r["event"] == "reply"), "{ev:?}");
    // Nothing else: no errors invented, every probe once.
    assert_eq!(
        n("reply") + n("timeout") + n("send_failed"),
        600,
        "{ev:?} {}",
        stderr_of(&out)
    );
}

#[test]
fn a_route_that_vanishes_for_a_second_shows_as_the_routers_errors() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fa2", &[]);
    let (_, rows) = sweep(&bed, "fault-route", || {
        ip_in(&bed, "rtr", &["route", "del", "198.19.0.0/16"]);
        std::thread::sleep(Duration::from_secs(1));
        ip_in(
            &bed,
            "rtr",
            &["route", "add", "198.19.0.0/16", "via", "198.18.1.2"],
        );
    });
    let p = probes(&rows);
    assert_eq!(p.len(), 600);
    // Without a route the router answers "net unreachable" — as often as its kernel's route
    // error limit lets it (ip_rt_error_cost, a global sysctl the bed leaves alone): the other
    // probes of the outage time out.
    let ev = events(&p);
    let errors: Vec<&&Row> = p.iter().filter(|r| r["event"] == "error").collect();
    assert!(errors.len() >= 3, "{ev:?}");
    assert!(
        errors.len() + ev.get("timeout").copied().unwrap_or(0) >= 60,
        "{ev:?}"
    );
    assert_eq!(ev.get("send_failed"), None, "{ev:?}");
    for e in &errors {
        // Net unreachable from the router (no route), by its IANA name.
        assert_eq!(e["responder"], "198.18.0.2", "{e:?}");
        assert_eq!(
            (e["icmp_type"].as_u64(), e["icmp_code"].as_u64()),
            (Some(3), Some(0))
        );
        assert!(
            e["icmp_name"].as_str().unwrap().contains("Net Unreachable"),
            "{e:?}"
        );
        assert!(e["rtt_us"].is_null() || e["rtt_us"].as_f64().unwrap() > 0.0);
    }
    assert!(p[p.len() - 100..].iter().all(|r| r["event"] == "reply"));
    assert!(p[..100].iter().all(|r| r["event"] == "reply"));
}

#[test]
fn a_deleted_interface_ends_the_run_with_the_reason_and_a_valid_file() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fa3", &[]);
    let out = scratch("fault-ifdel.parquet");
    let child = spawn(
        &bed,
        &[
            "ping",
            "198.19.0.0/24",
            "-c",
            "8",
            "-i",
            "500ms",
            "--rate",
            "1000",
            "--engine",
            "raw",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    ip_in(&bed, "scan", &["link", "del", "s0"]);
    let o = finish(child);
    let err = stderr_of(&o);
    // Some targets did not answer every probe: exit 1, as fping; not a crash or a hang.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Network is unreachable") && err.contains("went away"),
        "{err}"
    );
    let (rows, meta) = read_parquet(&out);
    assert_eq!(rows.len(), 256);
    assert_eq!(meta.mode, Some(RunMode::Ping));
    let truth = bed.truth();
    for r in &rows {
        // Every probe accounted for: answered, timed out, or refused.
        assert_eq!(r["sent"].as_u64().unwrap(), 8, "{r:?}");
        let received = r["received"].as_u64().unwrap();
        let (v6, x) = low16(r["target"].as_str().unwrap());
        if classify(&truth, v6, x) == Truth::Alive {
            assert!(received >= 1, "the first rounds were answered: {r:?}");
        }
        assert!(received < 8, "{r:?}");
    }
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(name: &str, size: &str) -> Tmpfs {
        let dir = scratch(name);
        std::fs::create_dir_all(&dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount: {}", stderr_of(&o));
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(files_under(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_corrupt_file() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fa4", &[]);
    let disk = Tmpfs::new("fault-disk", "300k");
    let out = disk.0.join("out.parquet");
    let o = bed.asdic(&[
        "scan",
        "198.19.0.0/16",
        "--rate",
        "50000",
        "--all-events",
        "--no-default-blocklist",
        "--sync-every",
        "200ms",
        "--cooldown",
        "1s",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(4), "a system error: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(out.to_str().unwrap()),
        "the error names the file: {err}"
    );
    assert_eq!(
        err.matches("writing results failed").count(),
        1,
        "said once: {err}"
    );
    // What is on the disk reads: finished parts only, no half-written file.
    let files = files_under(&disk.0);
    assert!(!files.is_empty());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.starts_with('.'), "a leftover temporary file {name}");
        let (rows, meta) = read_parquet(f);
        assert_eq!(meta.mode, Some(RunMode::Scan));
        assert!(!rows.is_empty());
    }
}

#[test]
fn a_rate_far_above_the_engine_is_reported_and_loses_nothing() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("fa5", &[]);
    let out = scratch("fault-rate.parquet");
    let o = bed.asdic(&[
        "scan",
        "198.19.0.0/16",
        "--rate",
        "2000000",
        "--engine",
        "raw",
        "--all-events",
        "--no-default-blocklist",
        "--cooldown",
        "500ms",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("of --rate 2000000: the engine, CPU or link is the limit"),
        "{err}"
    );
    // Every probe ended in a row, and the replies are the bed's.
    let (rows, meta) = read_parquet(&out);
    assert_eq!(rows.len(), 65_536, "{err}");
    assert_eq!(meta.probes_sent, Some(65_536));
    let replies = rows.iter().filter(|r| r["outcome"] == "reply").count() as u64;
    let truth = bed.counter("seen4") - bed.counter("deaddrop");
    assert_eq!(replies, truth, "{err}");
}
