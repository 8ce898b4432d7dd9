//! `asdic sweep` on the test bed: rounds spread evenly, per-target packet sizes on the wire,
//! window statistics and alarm state changes against the bed's ground truth, the Prometheus
//! endpoint, Parquet rotation, reload on file change and on SIGHUP, usage errors.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use asdic_tests::{Bed, RunMode, read_parquet, require_bed, scratch, stderr_of};
use serde_json::Value;

type Row = HashMap<String, Value>;

/// Every row of every Parquet file in `dir` (files sorted by name), and the file count.
fn read_dir_rows(dir: &Path) -> (Vec<Row>, Vec<PathBuf>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("output dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    let mut rows = vec![];
    for f in &files {
        rows.extend(read_parquet(f).0);
    }
    (rows, files)
}

fn s<'a>(r: &'a Row, k: &str) -> &'a str {
    r[k].as_str().unwrap_or_else(|| panic!("{k} in {r:?}"))
}

fn rows_of<'a>(rows: &'a [Row], target: &str, event: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| s(r, "target") == target && s(r, "event") == event)
        .collect()
}

fn write_file(path: &Path, text: &str) {
    // Write aside and rename: the sweep never reads a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Adds an nftables counter on the router counting echo requests forwarded to `addr`
/// (IPv4), optionally only those whose IP length is `len`.
fn count_to(bed: &Bed, name: &str, addr: &str, len: Option<u32>) {
    let len = len.map_or(String::new(), |l| format!(" ip length {l}"));
    for cmd in [
        format!("add counter inet asdic_bed {name}"),
        format!(
            "insert rule inet asdic_bed forward iifname \"r0\" ip daddr {addr}{len} icmp type echo-request counter name \"{name}\""
        ),
    ] {
        let o = bed.exec_in("rtr", &["nft", &cmd]);
        assert!(o.status.success(), "nft {cmd}: {}", stderr_of(&o));
    }
}

/// GET http://127.0.0.1:`port``path` from inside the bed's scanner namespace.
fn scrape(bed: &Bed, port: u16, path: &str) -> String {
    let path = path.to_string();
    bed.in_scan_netns(move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: bed\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).expect("response");
        s
    })
}

const FLEET: &str = "\
# a small fleet in NetXMS form
198.19.0.1:web1
198.19.0.2:web2:1000          # 1000-byte packets, IP header included
Target = 198.19.0.13:dead     # a dead host of the bed (13 % 97 == 13)
198.19.77.5:rejected loss=90  # the router rejects it; own limit
[2001:db8:1::5]:v6:1280
198.19.1.0/30
";

#[test]
fn sweep_reports_rounds_sizes_statistics_alarms_and_metrics() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("sw1", &[]);
    count_to(&bed, "web1", "198.19.0.1", None);
    count_to(&bed, "big", "198.19.0.2", Some(1000));
    count_to(&bed, "web2", "198.19.0.2", None);
    let file = scratch("sw1-fleet.txt");
    std::fs::write(&file, FLEET).unwrap();
    let out = scratch("sw1-out");
    let _ = std::fs::remove_dir_all(&out);
    let child = bed
        .command(&[
            "sweep",
            file.to_str().unwrap(),
            "--every",
            "500ms",
            "--window",
            "10s",
            "--rounds",
            "4",
            "--alarm-loss",
            "50",
            // Four rounds: two ended probes are enough to judge here (default 5).
            "--alarm-min-probes",
            "2",
            // Below 1024: bound before asdic drops its capabilities.
            "--metrics-listen",
            "127.0.0.1:942",
            "--metrics-per-target",
            "full",
            "-o",
            out.to_str().unwrap(),
            "--status-every",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("asdic sweep");
    // Scrape while it runs (rounds at 0, 0.5, 1, 1.5 s; the dead host's first timeout at
    // about 1.2 s).
    std::thread::sleep(Duration::from_millis(2300));
    let m = scrape(&bed, 942, "/metrics");
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), stderr_of(&o));
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("sweeping 9 targets (8 IPv4, 1 IPv6) every 500ms"),
        "{stderr}"
    );

    // Exactly 4 rounds: 4 probes each, at the size each line asked for.
    assert_eq!(bed.forwarded("web1"), 4);
    assert_eq!(bed.forwarded("web2"), 4);
    assert_eq!(
        bed.forwarded("big"),
        4,
        "psize 1000 = the IP packet's length"
    );

    // Alarm state changes: printed once each although every round breaks the limit; the
    // rejected host has its own limit (90 %) and breaks it too.
    let alarms: Vec<&str> = stdout.lines().filter(|l| l.contains("ALARM")).collect();
    assert_eq!(alarms.len(), 2, "{stdout}");
    assert!(
        alarms
            .iter()
            .any(|l| l.contains("dead (198.19.0.13)") && l.contains("loss 100.0% > 50%")),
        "{stdout}"
    );
    assert!(
        alarms
            .iter()
            .any(|l| l.contains("rejected (198.19.77.5)") && l.contains("> 90%")),
        "{stdout}"
    );
    assert!(!stdout.contains("asdic: OK"), "{stdout}");

    // The metrics scraped mid-run.
    assert!(m.starts_with("HTTP/1.1 200 OK"), "{m}");
    // The labels of a target's series (its group: none given, so "ungrouped").
    // The size label is the packet size as written (NetXMS psize), or the one the default
    // payload of 56 bytes makes (20 + 8 + 56).
    let web1 = r#"{target="198.19.0.1",name="web1",size="84",group="ungrouped"}"#;
    let dead = r#"{target="198.19.0.13",name="dead",size="84",group="ungrouped"}"#;
    let v6 = r#"{target="2001:db8:1::5",name="v6",size="1280",group="ungrouped"}"#;
    // The window's statistics are one family with a `stat` label.
    let stat = |labels: &str, stat: &str| {
        format!(
            "asdic_sweep_window_rtt_seconds{},stat=\"{stat}\"}} ",
            labels.trim_end_matches('}')
        )
    };
    for want in [
        format!("asdic_sweep_loss_ratio{web1} 0.0"),
        format!("asdic_sweep_loss_ratio{dead} 1.0"),
        format!("asdic_sweep_alarm{dead} 1"),
        format!("asdic_sweep_alarm{web1} 0"),
        format!("asdic_sweep_loss_ratio{v6} 0.0"),
        "asdic_sweep_targets 9".to_string(),
        "asdic_sweep_targets_in_alarm 2".to_string(),
        r#"asdic_sweep_group_targets{group="ungrouped"} 9"#.to_string(),
    ] {
        assert!(m.contains(&want), "missing {want} in\n{m}");
    }
    for present in [
        stat(web1, "avg"),
        stat(web1, "last"),
        format!("asdic_sweep_rtt_seconds_count{web1} "),
        format!("asdic_sweep_probes_total{web1} "),
    ] {
        assert!(m.contains(&present), "missing {present} in\n{m}");
    }
    // No RTT is made up for a host that never answered.
    assert!(!m.contains(&stat(dead, "avg")), "{m}");
    assert!(!m.contains(&stat(dead, "last")), "{m}");
    assert!(
        m.contains(&format!("asdic_sweep_rtt_seconds_count{dead} 0")),
        "{m}"
    );

    // The Parquet output.
    let (rows, files) = read_dir_rows(&out);
    assert!(!files.is_empty());
    let replies = rows_of(&rows, "198.19.0.1", "reply");
    assert_eq!(replies.len(), 4);
    assert!(replies.iter().all(|r| r["rtt_us"].as_f64().unwrap() > 0.0));
    assert_eq!(s(replies[0], "name"), "web1");
    let lost = rows_of(&rows, "198.19.0.13", "timeout");
    assert_eq!(lost.len(), 4);
    assert!(
        lost.iter().all(|r| r["rtt_us"].is_null()),
        "a timeout has no RTT"
    );
    let errs = rows_of(&rows, "198.19.77.5", "error");
    assert_eq!(errs.len(), 4);
    assert!(
        errs.iter().all(|r| s(r, "responder") == "198.18.0.2"
            && r["icmp_type"] == 3
            && r["icmp_code"] == 13)
    );
    assert_eq!(rows_of(&rows, "2001:db8:1::5", "reply").len(), 4);
    let big = &rows_of(&rows, "198.19.0.2", "reply")[0];
    assert_eq!(
        (&big["psize"], &big["payload_size"]),
        (&1000.into(), &972.into())
    );
    let v6 = &rows_of(&rows, "2001:db8:1::5", "reply")[0];
    assert_eq!(
        (&v6["psize"], &v6["payload_size"]),
        (&1280.into(), &1232.into())
    );
    let web1 = &rows_of(&rows, "198.19.0.1", "reply")[0];
    assert_eq!(
        (&web1["psize"], &web1["payload_size"]),
        (&84.into(), &56.into())
    );
    for t in ["198.19.1.0", "198.19.1.1", "198.19.1.2", "198.19.1.3"] {
        assert_eq!(rows_of(&rows, t, "reply").len(), 4, "{t}");
    }
    let alarm_rows: Vec<&Row> = rows.iter().filter(|r| s(r, "event") == "alarm").collect();
    assert_eq!(alarm_rows.len(), 2, "state changes are recorded once");
    // Window rows close each file: one per target, with the NetXMS statistics. Files
    // rotate on the clock (hourly by default), so a run that crosses an hour has two; the
    // last file's rows cover the whole run (the window is 10 s).
    let last = read_parquet(files.last().unwrap()).0;
    let win = |t: &str| {
        assert_eq!(rows_of(&rows, t, "window").len(), files.len(), "{t}");
        let w = rows_of(&last, t, "window");
        assert_eq!(w.len(), 1, "{t}");
        w[0].clone()
    };
    let w = win("198.19.0.1");
    assert_eq!(w["loss_pct"], 0.0);
    assert_eq!(w["window_probes"], 4);
    let (min, avg, max) = (
        w["rtt_min_us"].as_f64().unwrap(),
        w["rtt_avg_us"].as_f64().unwrap(),
        w["rtt_max_us"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= avg && avg <= max, "{w:?}");
    assert!(w["rtt_stddev_us"].as_f64().unwrap() >= 0.0);
    assert_eq!(w["in_alarm"], false);
    let d = win("198.19.0.13");
    assert_eq!(d["loss_pct"], 100.0);
    assert!(d["rtt_avg_us"].is_null() && d["rtt_last_us"].is_null());
    assert_eq!(d["in_alarm"], true);

    // Rounds are spread, not bursts: the 8 IPv4 targets of round 1 go out 62.5 ms apart.
    let mut t: Vec<u64> = rows
        .iter()
        .filter(|r| r["probe"].is_u64() && s(r, "target").contains('.'))
        .map(|r| r["time_unix_ns"].as_u64().unwrap())
        .collect();
    t.sort_unstable();
    let span_ms = (t[7] - t[0]) as f64 / 1e6;
    assert!(
        (380.0..500.0).contains(&span_ms),
        "round 1 spans {span_ms} ms, want ~437.5 (7 × 62.5)"
    );
    let gaps: Vec<f64> = t[..8]
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect();
    assert!(gaps.iter().all(|&g| g > 30.0), "a burst: gaps {gaps:?} ms");
}

/// P(Binomial(n, p) > limit × n): the chance a window of `n` probes at loss `p` reads above
/// `limit` (a share).
fn tail_above(n: u32, p: f64, limit: f64) -> f64 {
    let mut choose = 1.0f64; // C(n, k), built up k by k
    let mut total = 0.0;
    for k in 0..=n {
        if k > 0 {
            choose *= f64::from(n - k + 1) / f64::from(k);
        }
        if f64::from(k) > limit * f64::from(n) {
            total += choose * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32);
        }
    }
    total
}

#[test]
fn a_lossy_link_does_not_flap_alarms() {
    // The fixed numbers: 5 % random loss of echo requests at the far end; 20 rounds 250 ms
    // apart; a 5 s window (20 probes); --alarm-loss 50, --alarm-min-probes 15.
    let (p, rounds, window, limit, min) = (0.05, 20u32, 20u32, 0.5, 15u32);
    // Each ended probe is judged on the window it closes (min(k, 20) probes): the union
    // bound over those judgements is the chance that a target with 5 % loss ever alarms
    // (and so ever flaps) in the run.
    let chance: f64 = (min..=rounds)
        .map(|k| tail_above(k.min(window), p, limit))
        .sum();
    assert!(
        chance < 1e-6,
        "a false alarm's chance per target: {chance:e}"
    );
    // Without the hysteresis asdic used to have (judged from the first probe), the same
    // fleet alarms on a first lost probe: a 5 % chance per target, every run.
    assert!(tail_above(1, p, limit) > 0.04);

    let Some(()) = require_bed() else { return };
    let bed = Bed::up("swf", &["--loss", "5"]);
    // 32 live hosts (indices 512..544 of the bed: none dead, none rejected).
    let file = scratch("swf-fleet.txt");
    std::fs::write(&file, "198.19.2.0/27\n").unwrap();
    let o = bed.asdic(&[
        "sweep",
        file.to_str().unwrap(),
        "-i",
        "250ms",
        "--window",
        "5s",
        "-W",
        "500ms",
        "--rounds",
        &rounds.to_string(),
        "--alarm-loss",
        "50",
        "--alarm-min-probes",
        &min.to_string(),
        "--status-every",
        "0",
    ]);
    let (stdout, err) = (String::from_utf8_lossy(&o.stdout), stderr_of(&o));
    assert!(o.status.success(), "{err}");
    let changes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("asdic: ALARM") || l.starts_with("asdic: OK "))
        .collect();
    assert_eq!(changes, Vec::<&str>::new(), "{stdout}");
    // The loss was there, and counted exactly: every probe the bed dropped is one ended
    // without a reply ("32 targets, 640 probes ended, 607 replies, 0 in alarm; …").
    let dropped = bed.counter("lossdrop");
    assert!(dropped > 0, "the bed dropped nothing: {err}");
    let closing = err
        .lines()
        .find(|l| l.contains(" probes ended, "))
        .unwrap_or_else(|| panic!("a closing line: {err}"));
    let number_before = |what: &str| -> u64 {
        let head = &closing[..closing.find(what).unwrap()];
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (ended, replies) = (number_before(" probes ended"), number_before(" replies"));
    assert_eq!(ended, 32 * u64::from(rounds), "{closing}");
    assert_eq!(ended - replies, dropped, "{closing}");
}

#[test]
fn sweep_rotates_files_that_each_stand_alone() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("sw2", &[]);
    let file = scratch("sw2-fleet.txt");
    std::fs::write(&file, "198.19.0.1:a\n198.19.0.2:b\n198.19.0.13:c\n").unwrap();
    let out = scratch("sw2-out");
    let _ = std::fs::remove_dir_all(&out);
    let o = bed.asdic(&[
        "sweep",
        file.to_str().unwrap(),
        "--every",
        "200ms",
        "--rounds",
        "15",
        "--timeout",
        "300ms",
        "--rotate",
        "1s",
        "-o",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let (rows, files) = read_dir_rows(&out);
    assert!(
        files.len() >= 3,
        "3 s of rounds, rotated every second: {files:?}"
    );
    for f in &files {
        let (r, meta) = read_parquet(f);
        assert_eq!(meta.mode, Some(RunMode::Sweep));
        assert_eq!(meta.period_s, Some(1));
        // Each file ends with the window statistics of every target.
        assert_eq!(
            r.iter().filter(|x| s(x, "event") == "window").count(),
            3,
            "{}",
            f.display()
        );
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("sweep-") && name.ends_with("Z.parquet"),
            "{name}"
        );
    }
    // Nothing lost across rotations: every probe of every round, once.
    let probes: Vec<u64> = rows.iter().filter_map(|r| r["probe"].as_u64()).collect();
    assert_eq!(probes.len(), 45);
    let unique: std::collections::HashSet<_> = probes.iter().collect();
    assert_eq!(unique.len(), 45);
    assert_eq!(rows_of(&rows, "198.19.0.13", "timeout").len(), 15);
}

/// Lines of a child's stderr as they come.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (at most 10 s) for a line containing `what`; returns it.
fn wait_for(lines: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no line with {what:?} within 10 s");
}

#[test]
fn sweep_reloads_on_change_and_on_sighup_and_ends_cleanly_on_ctrl_c() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("sw3", &[]);
    for (name, addr) in [
        ("a", "198.19.0.1"),
        ("b", "198.19.0.2"),
        ("c", "198.19.0.3"),
        ("d", "198.19.0.4"),
    ] {
        count_to(&bed, name, addr, None);
    }
    let file = scratch("sw3-fleet.txt");
    write_file(&file, "198.19.0.1:a\n198.19.0.2:b\n");
    let out = scratch("sw3-out");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = bed
        .command(&[
            "sweep",
            file.to_str().unwrap(),
            "--every",
            "200ms",
            "--timeout",
            "300ms",
            "-o",
            out.to_str().unwrap(),
            "-q",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("asdic sweep");
    let lines = stderr_lines(&mut child);
    wait_for(&lines, "sweeping 2 targets");
    std::thread::sleep(Duration::from_millis(600));
    assert!(bed.forwarded("b") > 0);

    // 1. The file changes: b goes, c comes.
    write_file(&file, "198.19.0.1:a\n198.19.0.3:c\n");
    let l = wait_for(&lines, "reloaded");
    assert!(
        l.contains("(file changed): 2 targets, 1 added, 1 removed"),
        "{l}"
    );
    // Let the round in progress end, then b must stay silent while c is probed.
    std::thread::sleep(Duration::from_millis(400));
    let (b0, c0) = (bed.forwarded("b"), bed.forwarded("c"));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        bed.forwarded("b"),
        b0,
        "a removed target is no longer probed"
    );
    assert!(
        bed.forwarded("c") >= c0 + 4,
        "the new target is probed every round"
    );

    // 2. A broken file is refused; the sweep goes on with what it had.
    write_file(&file, "198.19.0.1:a\nnot-an-address\n");
    let l = wait_for(&lines, "refused");
    assert!(l.contains("line 2"), "{l}");

    // 3. SIGHUP: a new list of the same length and modification time as the refused one,
    // so the watcher sees no change and only the signal reloads.
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    let tmp = file.with_extension("hup");
    let text = "198.19.0.1:a\n198.19.0.4:ddd\n";
    assert_eq!(text.len(), "198.19.0.1:a\nnot-an-address\n".len());
    std::fs::write(&tmp, text).unwrap();
    let f = std::fs::File::options().write(true).open(&tmp).unwrap();
    f.set_modified(before).unwrap();
    drop(f);
    std::fs::rename(&tmp, &file).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        bed.forwarded("d"),
        0,
        "no reload without a change or a signal"
    );
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let l = wait_for(&lines, "reloaded");
    assert!(l.contains("(SIGHUP): 2 targets, 1 added, 1 removed"), "{l}");
    std::thread::sleep(Duration::from_millis(800));
    let c1 = bed.forwarded("c");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(bed.forwarded("c"), c1);
    assert!(bed.forwarded("d") > 0);

    // 4. Ctrl-C: the sweep stops, waits for the replies in flight and writes its file.
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let (rows, files) = read_dir_rows(&out);
    // Every probe the router forwarded to a has its reply row: nothing lost on Ctrl-C.
    assert_eq!(
        rows_of(&rows, "198.19.0.1", "reply").len() as u64,
        bed.forwarded("a")
    );
    // Only a and d are listed at the end: the last file's closing window rows say so.
    let last = read_parquet(files.last().unwrap()).0;
    let mut listed: Vec<&str> = last
        .iter()
        .filter(|r| s(r, "event") == "window")
        .map(|r| s(r, "target"))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, ["198.19.0.1", "198.19.0.4"]);
}

#[test]
fn sweep_refuses_bad_input_clearly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("sw4", &[]);
    let file = scratch("sw4-fleet.txt");
    // 4,096 targets every second need 4,096 probes/s: above the default cap.
    std::fs::write(&file, "198.19.0.0/20\n").unwrap();
    let o = bed.asdic(&["sweep", file.to_str().unwrap(), "--every", "1s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("give --rate 4096"),
        "{}",
        stderr_of(&o)
    );
    let o = bed.asdic(&[
        "sweep",
        file.to_str().unwrap(),
        "--every",
        "1s",
        "--rate",
        "2000",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("above --rate 2000"),
        "{}",
        stderr_of(&o)
    );
    std::fs::write(&file, "198.19.0.1\n198.19.0.2:x:y\n").unwrap();
    let o = bed.asdic(&["sweep", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_of(&o).contains("line 2"), "{}", stderr_of(&o));
    std::fs::write(&file, "198.19.0.1\n").unwrap();
    let o = bed.asdic(&[
        "sweep",
        file.to_str().unwrap(),
        "--every",
        "5s",
        "--window",
        "1s",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr_of(&o).contains("--window"), "{}", stderr_of(&o));
    // The retired flag says what replaced it; a linger needs metrics to serve.
    let o = bed.asdic(&["sweep", file.to_str().unwrap(), "--metrics-histograms"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("--metrics-per-target full"),
        "{}",
        stderr_of(&o)
    );
    let o = bed.asdic(&["sweep", file.to_str().unwrap(), "--metrics-linger", "5s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("--metrics-listen"),
        "{}",
        stderr_of(&o)
    );
    let o = bed.asdic(&["sweep", "/nonexistent/fleet.txt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr_of(&o).contains("/nonexistent/fleet.txt"),
        "{}",
        stderr_of(&o)
    );
}
