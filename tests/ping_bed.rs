//! `asdic ping` against the veth test bed's ground truth.

use std::time::{Duration, Instant};

use asdic_tests::{
    Bed, RunMode, Truth, assert_ping_ground_truth as assert_ground_truth, classify, col_u64 as u,
    low16, ping_to_parquet, read_parquet, require_bed, scratch, stderr_of as stderr, stdout_jsonl,
};

#[test]
fn ipv4_slash16_matches_ground_truth_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("p16", &[]);
    let truth = bed.truth();
    assert_eq!(truth["reject4"]["prefix"], "198.19.77.0/24");
    let (rows, meta) = ping_to_parquet(
        &bed,
        "p16",
        &["198.19.0.0/16", "--rate", "20000", "-W", "1s"],
        65_536,
    );
    let seen = assert_ground_truth(&truth, &rows, 1);
    // 256 rejected; dead = x % 97 == 13 outside 198.19.77.0/24.
    let dead = (0..65_536u32)
        .filter(|x| x >> 8 != 77 && x % 97 == 13)
        .count() as u64;
    assert_eq!(seen, [65_536 - 256 - dead, dead, 256]);
    assert_eq!(meta.mode, Some(RunMode::Ping));
    assert_eq!(meta.rate_pps, Some(20_000.0));
    assert!(meta.end_unix_ns.is_some(), "{meta:?}");
    // The far side saw exactly one request per non-rejected address.
    assert_eq!(bed.counter("seen4"), 65_536 - 256);
}

#[test]
fn ipv6_prefix_matches_ground_truth_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("p6", &[]);
    let truth = bed.truth();
    let (rows, _) = ping_to_parquet(
        &bed,
        "p6",
        &[
            "2001:db8:1::4c00/118",
            "--rate",
            "5000",
            "-c",
            "2",
            "-i",
            "100ms",
        ],
        1024,
    );
    let seen = assert_ground_truth(&truth, &rows, 2);
    assert_eq!(seen[2], 256);
    assert!(seen[1] > 0 && seen[0] > 0);
}

#[test]
fn random_loss_is_counted_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("loss", &["--loss", "10"]);
    let truth = bed.truth();
    let (rows, _) = ping_to_parquet(
        &bed,
        "loss",
        &[
            "198.19.16.0/22",
            "--rate",
            "10000",
            "-c",
            "3",
            "-i",
            "200ms",
        ],
        1024,
    );
    let sum = |k: &str| rows.iter().map(|r| u(r, k)).sum::<u64>();
    let dead = rows
        .iter()
        .filter(|r| classify(&truth, false, low16(r["target"].as_str().unwrap()).1) == Truth::Dead)
        .count() as u64;
    let (lossdrop, replied) = (bed.counter("lossdrop"), bed.counter("replied"));
    assert!(
        lossdrop > 100,
        "10% of ~3000 requests dropped, got {lossdrop}"
    );
    assert_eq!(sum("sent"), 3 * 1024);
    assert_eq!(
        sum("received"),
        replied,
        "every reply the far side sent was matched"
    );
    assert_eq!(
        sum("timeouts"),
        3 * dead + lossdrop,
        "every drop is a timeout, nothing else is"
    );
    assert_eq!(sum("duplicates") + sum("late") + sum("errors"), 0);
}

#[test]
fn large_probes_are_fragmented_and_matched() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("big", &[]);
    let o = bed.asdic(&[
        "ping",
        "198.19.0.1",
        "198.19.0.2",
        "2001:db8:1::1",
        "-s",
        "10240",
        "-c",
        "2",
        "-i",
        "100ms",
        "--format",
        "jsonl",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows = stdout_jsonl(&o);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(
            (r["sent"].as_u64(), r["received"].as_u64()),
            (Some(2), Some(2)),
            "{r}"
        );
    }
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("bad", &[]);
    let cases: &[(&[&str], &str)] = &[
        (&["ping", "nosuchhost"], "nosuchhost"),
        (&["ping", "198.19.0.0/33"], "198.19.0.0/33"),
        (&["ping", "198.19.0.0/16", "-c", "2"], "--rate 65536"),
        (&["ping", "198.19.0.1", "-W", "2"], "write 2s or 2ms"),
        (&["ping", "198.19.0.1", "--size", "10"], "--size"),
        (&["ping", "198.19.0.1", "--size", "70000"], "--size"),
        (&["ping", "198.19.0.1", "--ttl", "0"], "--ttl"),
        (&["ping", "198.19.0.1", "--count", "0"], "--count"),
        (&["ping", "198.19.0.1", "--rate=-5"], "--rate"),
        (&["ping", "198.19.0.1", "--timeout", "soon"], "--timeout"),
    ];
    for (args, needle) in cases {
        let o = bed.asdic(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: error should name {needle}: {err}"
        );
        assert!(
            err.lines().filter(|l| !l.trim().is_empty()).count() <= 3,
            "short error: {err}"
        );
    }
    assert_eq!(bed.counter("seen4"), 0, "nothing may be sent on bad input");
}

#[test]
fn without_cap_net_raw_it_says_so_and_how_to_grant_it() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("cap", &[]);
    let bin = asdic_tests::asdic_bin();
    // setpriv drops to nobody with no capabilities.
    let o = bed.exec(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        bin.to_str().unwrap(),
        "ping",
        "198.19.0.1",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("CAP_NET_RAW") && err.contains("setcap"),
        "{err}"
    );
}

#[test]
fn sigint_stops_sending_and_still_writes_a_complete_file() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("int", &[]);
    let out = scratch("int.parquet");
    let mut child = bed
        .command(&[
            "ping",
            "198.19.1.0/24",
            "--rate",
            "2000",
            "-c",
            "100",
            "-i",
            "100ms",
            "-q",
            "-o",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn asdic");
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().expect("wait");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stops within the timeout"
    );
    assert!(status.code().is_some(), "exited, not killed by the signal");
    let (rows, meta) = read_parquet(&out);
    assert_eq!(rows.len(), 256, "one row per target");
    let sent: u64 = rows.iter().map(|r| u(r, "sent")).sum();
    let received: u64 = rows.iter().map(|r| u(r, "received")).sum();
    assert!(sent > 1000 && sent < 100 * 256, "partial run: {sent}");
    assert!(received > 0 && received <= sent);
    assert!(meta.end_unix_ns.is_some(), "{meta:?}");
    assert_eq!(
        (meta.interrupted, meta.complete),
        (Some(true), Some(false)),
        "{meta:?}"
    );
}

#[test]
fn both_families_in_one_run() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("mix", &[]);
    let o = bed.asdic(&[
        "ping",
        "198.19.0.1",
        "2001:db8:1::1",
        "198.19.77.7",
        "--format",
        "csv",
        "-W",
        "500ms",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("target,"), "{text}");
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("198.19.0.1,") && l.contains(",1,1,0")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("2001:db8:1::1,") && l.contains(",1,1,0")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("198.19.77.7,") && l.contains("198.18.0.2")),
        "{text}"
    );
}

/// Timeouts hold by the RTT too (issue 28, item 4): with `-W 10us`, inside the bed's spread
/// of round trips (8–20 µs as asdic times them at 256/s; with 50 µs, once RTTs were true,
/// none was late), a reply is received only within 10 µs and late otherwise, on every
/// engine; every reply the far side sent is one or the other, and every probe not received
/// timed out.
#[test]
fn a_reply_over_the_timeout_is_late_never_received() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("pw50", &[]);
    let truth = bed.truth();
    let mut late_total = 0;
    for engine in ["raw", "uring", "xdp"] {
        let out = scratch(&format!("pw50-{engine}.parquet"));
        let replied = bed.counter("replied");
        let o = bed.asdic(&[
            "ping",
            "198.19.1.0/24",
            "--rate",
            "256",
            "-W",
            "10us",
            "--engine",
            engine,
            "-v",
            "-q",
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{engine}: {err}");
        // `-v` says where the RTTs' stamps are taken.
        let said = format!("asdic: stamps: {}", asdic_tests::stamps_of(engine));
        assert!(err.lines().any(|l| l == said), "{engine}: {err}");
        let replied = bed.counter("replied") - replied;
        let (rows, _) = read_parquet(&out);
        assert_eq!(rows.len(), 256);
        let (mut received, mut late, mut timeouts) = (0, 0, 0);
        for r in &rows {
            let t = r["target"].as_str().unwrap();
            if u(r, "received") > 0 {
                let max = r["rtt_max_us"].as_f64().unwrap();
                assert!(
                    max <= 10.0,
                    "{engine}: {t} received with an RTT of {max} µs"
                );
            }
            let (v6, x) = low16(t);
            if classify(&truth, v6, x) == Truth::Dead {
                assert_eq!(u(r, "received") + u(r, "late"), 0, "{engine}: {t}");
            }
            assert_eq!(u(r, "errors"), 0, "{engine}: {t}");
            received += u(r, "received");
            late += u(r, "late");
            timeouts += u(r, "timeouts");
        }
        assert_eq!(
            received + late,
            replied,
            "{engine}: every reply counted once"
        );
        assert_eq!(received + timeouts, 256, "{engine}: every probe ended once");
        late_total += late;
    }
    assert!(
        late_total > 0,
        "the bed's round trips exceed 10 µs at times"
    );
}

/// `--per-probe` (issue 28, item 5): one row per probe with what it drew, like fping -C, on a
/// socket engine and on XDP: three probes each to a live host, a dead one and one of the
/// rejected /24; the table prints fping -C's lines.
#[test]
fn per_probe_rows_say_what_each_probe_drew() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("pprb", &[]);
    let (live, dead, rejected) = ("198.19.0.1", "198.19.0.13", "198.19.77.1");
    for engine in ["raw", "xdp"] {
        let out = scratch(&format!("per-probe-{engine}.parquet"));
        let o = bed.asdic(&[
            "ping",
            live,
            dead,
            rejected,
            "-c",
            "3",
            "-i",
            "30ms",
            "-W",
            "200ms",
            "--engine",
            engine,
            "--per-probe",
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{engine}: {err}");
        // The table on stdout: per target its RTTs in ms, "-" for none.
        let table = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{engine}: {table}");
        let rtts: Vec<&str> = lines[0].split(" : ").nth(1).unwrap().split(' ').collect();
        assert!(lines[0].starts_with(live), "{table}");
        assert_eq!(rtts.len(), 3, "{table}");
        assert!(
            rtts.iter()
                .all(|r| r.parse::<f64>().is_ok_and(|ms| ms > 0.0)),
            "{table}"
        );
        assert_eq!(lines[1], format!("{dead:<15} : - - -"));
        assert_eq!(lines[2], format!("{rejected:<15} : - - -"));
        // The file: nine rows, by target then probe.
        let (rows, meta) = read_parquet(&out);
        assert_eq!(rows.len(), 9, "{engine}: {rows:?}");
        assert_eq!(
            meta.stamps.as_deref(),
            Some(asdic_tests::stamps_of(engine).as_str())
        );
        let of = |t: &str| -> Vec<_> { rows.iter().filter(|r| r["target"] == t).collect() };
        let mut sent = vec![];
        for r in of(live) {
            assert_eq!(r["outcome"], "reply", "{r:?}");
            assert!(r["rtt_us"].as_f64().is_some_and(|us| us > 0.0), "{r:?}");
            assert_eq!(r["reply_ttl"].as_u64(), Some(63));
            assert_eq!(r["responder"], live);
            sent.push(u(r, "sent_unix_ns"));
        }
        assert!(
            sent.windows(2).all(|w| w[1] >= w[0] + 15_000_000),
            "20 ms apart: {sent:?}"
        );
        for r in of(dead) {
            assert_eq!(r["outcome"], "timeout", "{r:?}");
            assert!(r["rtt_us"].is_null() && r["responder"].is_null(), "{r:?}");
        }
        for r in of(rejected) {
            assert_eq!(r["outcome"], "error", "{r:?}");
            assert_eq!((u(r, "error_type"), u(r, "error_code")), (3, 13));
            assert_eq!(r["responder"], "198.18.0.2");
            assert!(r["rtt_us"].as_f64().is_some_and(|us| us > 0.0), "{r:?}");
        }
        let probes: Vec<u64> = rows.iter().map(|r| u(r, "probe")).collect();
        let mut sorted = probes.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..9).collect::<Vec<u64>>(), "every probe once");
    }
    // Beyond what it keeps: refused before anything is sent (killed after 10 s if not).
    let mut c = bed.command(&[
        "ping",
        "198.19.0.0/16",
        "-c",
        "65",
        "-R",
        "1000",
        "--per-probe",
    ]);
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("asdic");
    let until = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("asdic").is_none() {
        if Instant::now() > until {
            child.kill().expect("kill");
            let _ = child.wait();
            panic!("--per-probe beyond its limit was not refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("asdic");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--per-probe: 4259840 probes"),
        "{}",
        stderr(&o)
    );
}

/// One clock per run (issue 28, item 3): RTTs and timeouts run on CLOCK_MONOTONIC (the stamp
/// clock), and sockets' kernel stamps (CLOCK_REALTIME) are brought onto it across a step of
/// the realtime clock. The hooked build pretends the realtime clock jumps an hour ahead (then
/// an hour back) 200 ms into a ping of a /22 at 2,000/s — the machine's clock is never
/// touched: every engine sees the step once, every live host answers with an RTT of
/// microseconds, and only the dead time out.
#[test]
fn a_step_of_the_realtime_clock_moves_no_rtt_and_no_timeout() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("pclk", &[]);
    let truth = bed.truth();
    for engine in ["raw", "uring", "xdp"] {
        for step in ["3600000", "-3600000"] {
            let out = scratch(&format!("clock-step-{engine}{step}.parquet"));
            let o = bed
                .command_with_faults(
                    &[
                        "ping",
                        "198.19.0.0/22",
                        "-R",
                        "2000",
                        "--engine",
                        engine,
                        "-q",
                        "-o",
                        out.to_str().unwrap(),
                    ],
                    &[("ASDIC_INJECT_CLOCK_STEP", &format!("200:{step}"))],
                )
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("asdic");
            // A run whose stamps went astray need not end: killed after 30 s.
            let until = Instant::now() + Duration::from_secs(30);
            let mut o = o;
            while o.try_wait().expect("asdic").is_none() {
                if Instant::now() > until {
                    o.kill().expect("kill");
                    let _ = o.wait();
                    panic!("{engine} {step}: still running after 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let o = o.wait_with_output().expect("asdic");
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{engine} {step}: {err}");
            assert!(
                err.contains("the realtime clock stepped 1 times"),
                "{engine} {step}: {err}"
            );
            let (rows, _) = read_parquet(&out);
            assert_eq!(rows.len(), 1024);
            for r in &rows {
                let t = r["target"].as_str().unwrap();
                let (v6, x) = low16(t);
                let alive = classify(&truth, v6, x) == Truth::Alive;
                assert_eq!(u(r, "received"), u64::from(alive), "{engine} {step}: {r:?}");
                assert_eq!(
                    u(r, "timeouts"),
                    u64::from(!alive),
                    "{engine} {step}: {r:?}"
                );
                assert_eq!(u(r, "late"), 0, "{engine} {step}: {r:?}");
                if alive {
                    let rtt = r["rtt_max_us"].as_f64().unwrap();
                    assert!(
                        rtt > 0.0 && rtt < 5_000.0,
                        "{engine} {step}: {t} at {rtt} µs"
                    );
                }
            }
        }
    }
}
