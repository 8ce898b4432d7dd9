//! The io_uring engine (`--engine uring`) against the veth test bed's ground truth: the same
//! exact checks as the raw engine's ping and scan tests, and the engine choice when io_uring is
//! missing (a seccomp filter refuses `io_uring_setup`).

use std::collections::HashSet;

use asdic_tests::{
    Bed, RunMeta, Truth, assert_ping_ground_truth, classify, col_u64, low16, ping_to_parquet,
    read_parquet, require_bed, responding, scratch, stderr_of, stdout_jsonl,
};

fn engine(meta: &RunMeta) -> Option<&str> {
    meta.engine.as_deref()
}

#[test]
fn uring_ipv4_slash16_matches_ground_truth_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("u16", &[]);
    let truth = bed.truth();
    let (rows, meta) = ping_to_parquet(
        &bed,
        "u16",
        &[
            "198.19.0.0/16",
            "--engine",
            "uring",
            "--rate",
            "20000",
            "-W",
            "1s",
        ],
        65_536,
    );
    let seen = assert_ping_ground_truth(&truth, &rows, 1);
    let dead = (0..65_536u32)
        .filter(|x| x >> 8 != 77 && x % 97 == 13)
        .count() as u64;
    assert_eq!(seen, [65_536 - 256 - dead, dead, 256]);
    assert_eq!(engine(&meta), Some("uring"));
    assert_eq!(meta.rate_pps, Some(20_000.0));
    // The far side saw exactly one request per non-rejected address: nothing sent twice.
    assert_eq!(bed.counter("seen4"), 65_536 - 256);
    assert_eq!(bed.counter("rejected"), 256);
}

#[test]
fn uring_ipv6_prefix_matches_ground_truth_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("u6", &[]);
    let truth = bed.truth();
    let (rows, meta) = ping_to_parquet(
        &bed,
        "u6",
        &[
            "2001:db8:1::4c00/118",
            "--engine",
            "uring",
            "--rate",
            "5000",
            "-c",
            "2",
            "-i",
            "100ms",
        ],
        1024,
    );
    let seen = assert_ping_ground_truth(&truth, &rows, 2);
    assert_eq!(seen[2], 256);
    let dead = (0x4c00..0x5000u32)
        .filter(|x| !(0x4d00..0x4e00).contains(x) && x % 97 == 13)
        .count() as u64;
    assert_eq!(seen, [1024 - 256 - dead, dead, 256]);
    assert_eq!(engine(&meta), Some("uring"));
    assert_eq!(bed.counter("seen6"), 2 * (1024 - 256));
}

#[test]
fn uring_random_loss_is_counted_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("uloss", &["--loss", "10"]);
    let truth = bed.truth();
    let (rows, _) = ping_to_parquet(
        &bed,
        "uloss",
        &[
            "198.19.16.0/22",
            "2001:db8:1::/122",
            "--engine",
            "uring",
            "--rate",
            "10000",
            "-c",
            "3",
            "-i",
            "200ms",
        ],
        1024 + 64,
    );
    let sum = |k: &str| rows.iter().map(|r| col_u64(r, k)).sum::<u64>();
    let dead = rows
        .iter()
        .filter(|r| {
            let (v6, x) = low16(r["target"].as_str().unwrap());
            classify(&truth, v6, x) == Truth::Dead
        })
        .count() as u64;
    let (lossdrop, replied) = (bed.counter("lossdrop"), bed.counter("replied"));
    assert!(lossdrop > 100, "10% of ~3200 requests dropped: {lossdrop}");
    assert_eq!(sum("sent"), 3 * (1024 + 64));
    assert_eq!(sum("received"), replied, "every reply sent was matched");
    assert_eq!(sum("timeouts"), 3 * dead + lossdrop);
    assert_eq!(sum("duplicates") + sum("late") + sum("errors"), 0);
}

#[test]
fn uring_large_probes_are_fragmented_and_matched() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("ubig", &[]);
    let o = bed.asdic(&[
        "ping",
        "198.19.0.1",
        "2001:db8:1::1",
        "--engine",
        "uring",
        "-s",
        "10240",
        "-c",
        "2",
        "-i",
        "100ms",
        "--format",
        "jsonl",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    let rows = stdout_jsonl(&o);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(
            (r["sent"].as_u64(), r["received"].as_u64()),
            (Some(2), Some(2)),
            "{r}"
        );
    }
}

#[test]
fn uring_scan_hits_match_ground_truth_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("us16", &[]);
    let truth = bed.truth();
    let out = scratch("us16.parquet");
    let o = bed.asdic(&[
        "scan",
        "198.19.0.0/16",
        "2001:db8:1::4c00/118",
        "--no-default-blocklist",
        "--engine",
        "uring",
        "-R",
        "20000",
        "--cooldown",
        "1",
        "--seed",
        "11",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o)
            .contains("asdic: engine uring: raw ICMP sockets through io_uring (as asked)\n"),
        "one short engine line: {}",
        stderr_of(&o)
    );
    let (rows, meta) = read_parquet(&out);
    let want = responding(0..65_536, 0x4c00..0x5000);
    let mut got = HashSet::new();
    let mut rejected = 0;
    for r in &rows {
        let t = r["target"].as_str().unwrap();
        let (v6, x) = low16(t);
        match classify(&truth, v6, x) {
            Truth::Alive => {
                assert_eq!(r["outcome"].as_str(), Some("reply"), "{r:?}");
                assert!(r["rtt_us"].as_f64().is_some_and(|v| v > 0.0), "{r:?}");
                assert!(r["reply_ttl"].as_u64().is_some(), "{r:?}");
            }
            Truth::Rejected => {
                rejected += 1;
                let rej = &truth[if v6 { "reject6" } else { "reject4" }];
                assert_eq!(r["outcome"].as_str(), Some("error"), "{r:?}");
                assert_eq!(r["icmp_type"].as_u64(), rej["type"].as_u64(), "{t}");
                assert_eq!(r["icmp_code"].as_u64(), rej["code"].as_u64(), "{t}");
                assert_eq!(r["responder"].as_str(), rej["responder"].as_str(), "{t}");
            }
            Truth::Dead => panic!("{t} is dead but has a hit row: {r:?}"),
        }
        assert!(got.insert(t.to_string()), "two rows for {t}");
    }
    assert_eq!(got, want, "exactly the live and rejected targets");
    assert_eq!(rejected, 256 + 256);
    assert_eq!(bed.counter("seen4"), 65_536 - 256);
    assert_eq!(bed.counter("seen6"), 1024 - 256);
    assert_eq!(engine(&meta), Some("uring"));
    assert_eq!(meta.complete, Some(true));
}

#[test]
fn without_io_uring_uring_says_why_and_auto_runs_raw() {
    let Some(()) = require_bed() else { return };
    // Two queues: auto's XDP can be made to leave one unserved (`--queues 0`), and refuses.
    let bed = Bed::up("unou", &["--queues", "2"]);
    let Some(mut c) = bed.command_without_io_uring(&["ping", "198.19.0.1", "--engine", "uring"])
    else {
        eprintln!("skipped: the seccomp filter is written for x86_64 only");
        return;
    };
    let o = c.output().expect("running asdic");
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("--engine uring") && err.contains("EPERM") && err.contains("io_uring"),
        "says what is missing: {err}"
    );
    assert!(err.contains("--engine raw"), "says what works: {err}");
    assert!(err.lines().count() <= 2, "short: {err}");
    assert_eq!(bed.counter("sent4"), 0, "nothing sent");

    // auto: both families on XDP (one set of sockets) where it attaches; where it would leave
    // a queue unserved, raw sockets, the measured socket choice; either way with or without
    // io_uring, and the file records which.
    let out = scratch("unou.parquet");
    for (queues, want) in [(None, "xdp"), (Some("0"), "raw")] {
        for with_uring in [false, true] {
            let mut args = vec![
                "ping",
                "198.19.0.1",
                "2001:db8:1::1",
                "-q",
                "--force",
                "-o",
                out.to_str().unwrap(),
            ];
            if let Some(q) = queues {
                args.extend(["--queues", q]);
            }
            let o = if with_uring {
                bed.asdic(&args)
            } else {
                let mut c = bed.command_without_io_uring(&args).expect("x86_64");
                c.output().expect("running asdic")
            };
            let err = stderr_of(&o);
            assert_eq!(o.status.code(), Some(0), "{err}");
            let line = err
                .lines()
                .find(|l| l.starts_with("asdic: engine "))
                .unwrap_or_else(|| panic!("an engine line: {err}"));
            if want == "xdp" {
                assert!(
                    line.starts_with("asdic: engine xdp:") && line.contains("both families"),
                    "{line}"
                );
                assert!(!line.contains("engine raw"), "{line}");
            } else {
                assert!(line.starts_with("asdic: engine raw:"), "{line}");
                assert!(
                    line.contains("(auto: io_uring measured no faster")
                        && line.contains("XDP not used")
                        && line.contains("unserved"),
                    "raw by measurement, and why not XDP: {line}"
                );
            }
            let (rows, meta) = read_parquet(&out);
            assert_eq!(rows.len(), 2);
            assert_eq!(engine(&meta), Some(want));
        }
    }
    assert_eq!(bed.counter("replied"), 8);
}
