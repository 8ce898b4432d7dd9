//! Hostile traffic on the test bed: while asdic scans, a peer in the far namespace
//! (`tests/support/hostile.py`) sends forged replies (MAC altered), replies from addresses
//! never probed, replays of genuine replies, truncated, cut, corrupt and oversized ICMP,
//! errors quoting probes never sent and a stream of unrelated ICMP. asdic must count each category, report
//! none of it as a live host or an RTT, lose none of the genuine replies (the bed's nft
//! counters), and keep its memory as in a clean run.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use asdic_tests::{
    Bed, Truth, classify, low16, read_parquet, require_bed, scratch, wait_with_peak_rss,
};
use serde_json::Value;

const TARGETS: &str = "198.19.0.0/20";

/// Runs the scan; returns (stderr, peak RSS KiB).
fn scan(bed: &Bed, out: &std::path::Path) -> (String, u64) {
    let mut child = bed
        .command(&[
            "scan",
            TARGETS,
            "--rate",
            "1000",
            "--engine",
            "raw",
            "--all-events",
            "--no-default-blocklist",
            "--cooldown",
            "400ms",
            "-q",
            "-o",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `ip netns exec` execs asdic in place: the child's pid is asdic's, and its peak RSS
    // as the kernel counted it up to the exit (the final Parquet write included).
    let (code, peak) = wait_with_peak_rss(&mut child, Duration::from_secs(60));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(code.is_some_and(|c| c <= 1), "{err}");
    (err, peak)
}

/// A number before `label` in asdic's stderr, e.g. "12 forged".
fn count(stderr: &str, label: &str) -> u64 {
    let i = stderr
        .rfind(&format!(" {label}"))
        .unwrap_or_else(|| panic!("no {label:?} in {stderr}"));
    stderr[..i]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {label:?} in {stderr}"))
}

#[test]
fn hostile_traffic_is_counted_and_never_reported_as_a_host_or_an_rtt() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("ho1", &[]);
    let truth = bed.truth();

    // A clean run first: the memory baseline.
    let clean_out = scratch("hostile-clean.parquet");
    let (_, clean_rss) = scan(&bed, &clean_out);

    // The peer, ready before the scan starts.
    let mut peer = bed
        .python("far", "hostile.py")
        .args(["4", "4096", "198.19.200"])
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(peer.stderr.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the hostile peer did not start");
    let before = (bed.counter("seen4"), bed.counter("deaddrop"));
    let out = scratch("hostile.parquet");
    let (stderr, rss) = scan(&bed, &out);
    let after = (bed.counter("seen4"), bed.counter("deaddrop"));
    let mut line = String::new();
    BufReader::new(peer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(peer.wait().unwrap().success());
    let sent: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let n = |k: &str| sent[k].as_u64().unwrap();
    assert_eq!(n("requests"), 4096, "the peer saw every probe: {sent}");
    assert!(
        n("forged") == 1024 && n("replay") >= 800 && n("unrelated") >= 200,
        "{sent}"
    );

    // Each category counted: forged MACs and replies from addresses never probed fail the
    // MAC (it covers the replying address); oversized data and data too short for a stamp
    // are another program's; quotes cut inside their IP header and bad checksums are
    // malformed; errors quoting unsent probes do not match; a replay within the cooldown
    // is a duplicate, one past it (1.5 s after the reply, the cooldown is 400 ms) stale;
    // errors about other traffic are "other"; ICMP queries never reach the socket (the raw
    // engine's ICMP_FILTER) and count nowhere.
    let says = format!("{stderr}\npeer: {sent}");
    let got = |label| count(&stderr, label);
    assert_eq!(got("forged"), n("forged") + n("unprobed"), "{says}");
    assert_eq!(got("foreign"), n("oversized") + n("truncated"), "{says}");
    assert_eq!(
        got("malformed"),
        n("cut_error") + n("bad_checksum"),
        "{says}"
    );
    assert_eq!(got("unmatched errors"), n("error"), "{says}");
    assert_eq!(got("duplicates") + got("stale"), n("replay"), "{says}");
    // Each kind exactly: nothing but time tells a late replay from a genuine reply.
    assert_eq!(got("duplicates"), n("replay_early"), "{says}");
    assert_eq!(got("stale"), n("replay_late"), "{says}");
    assert!(got("duplicates") >= 500 && got("stale") >= 300, "{says}");
    assert_eq!(got("other ICMP"), n("unrelated"), "{says}");
    assert!(n("queries") >= 200, "{says}");

    // Nothing hostile became a host or an RTT, and no genuine reply was lost.
    let (rows, _) = read_parquet(&out);
    let mut answered = HashSet::new();
    for r in &rows {
        let target = r["target"].as_str().unwrap();
        if r["outcome"] != "reply" {
            continue;
        }
        let (v6, x) = low16(target);
        assert!(!v6 && x < 4096, "a reply from {target}, never probed");
        assert_eq!(
            classify(&truth, v6, x),
            Truth::Alive,
            "{target} is not alive on the bed"
        );
        assert!(
            answered.insert(target.to_string()),
            "{target} answered twice"
        );
        let rtt = r["rtt_us"].as_f64().unwrap();
        assert!(rtt > 0.0 && rtt < 3_000_000.0, "{target}: rtt {rtt} µs");
        assert!(r["responder"].is_null(), "{target}: {r:?}");
    }
    let genuine = (after.0 - before.0) - (after.1 - before.1);
    assert_eq!(
        answered.len() as u64,
        genuine,
        "genuine replies lost or invented"
    );
    let alive = (0..4096u32)
        .filter(|&x| classify(&truth, false, x) == Truth::Alive)
        .count();
    assert_eq!(answered.len(), alive);

    // The figures, for the record (shown with --nocapture).
    println!("{says}\npeak RSS {rss} KiB under attack, {clean_rss} KiB clean");

    // Memory: as in the clean run (the hostile traffic holds no state).
    assert!(
        rss <= clean_rss + clean_rss / 5,
        "peak RSS {rss} KiB under attack vs {clean_rss} KiB clean"
    );
}

/// A blind off-path attacker (`tests/support/spray.py`, in the router namespace) sprays the
/// scanner with destination-unreachable errors quoting only the 8-byte ICMP header, for every
/// identifier and sequences 0 and 1, while asdic pings a host that never answers. With
/// predictable sequences (0, 1, 2 …) one of them named the probe and the silent host was
/// reported "Host Unreachable" on every engine; with keyed sequences none does. With a fixed
/// identifier the sprayed sequence that names the probe is unverified (raw) or forged (XDP's
/// keyed IP ID).
#[test]
fn a_blind_spray_of_8_byte_quotes_matches_no_probe() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("ho2", &[]);
    for engine in ["raw", "uring", "xdp"] {
        let (row, stderr, sent) = sprayed_ping(&bed, &["2", "4"], &["--engine", engine]);
        assert!(sent >= 2 * 65_536, "{sent}");
        assert_eq!(
            (row("sent"), row("received"), row("errors"), row("timeouts")),
            (1, 0, 0, 1),
            "{engine}: the silent host timed out, no forged error matched: {stderr}"
        );
        // The errors did reach asdic (on XDP through the raw socket beside: the program
        // passes quotes of 8 bytes to the kernel).
        assert!(count(&stderr, "unmatched errors") >= 65_536, "{stderr}");
    }
    // A fixed identifier (`--id N`): every one of its 65,536 sequences, over and over. One
    // names the probe, but 16 bits are no proof: counted as unverified, never unreachable.
    let (row, stderr, _) = sprayed_ping(
        &bed,
        &["65536", "4", "4242"],
        &["--id", "4242", "--engine", "raw"],
    );
    assert_eq!((row("errors"), row("timeouts")), (0, 1), "{stderr}");
    assert!(count(&stderr, "unverified errors") >= 1, "{stderr}");
    // On XDP asdic writes the IPv4 header, with a keyed IP ID that the quote carries back:
    // the sequence that names the probe comes with a wrong IP ID, so it is forged, not
    // unverified (and a router's real 8-byte quote is matched: crates/core matcher tests).
    let (row, stderr, _) = sprayed_ping(
        &bed,
        &["65536", "4", "4242"],
        &["--id", "4242", "--engine", "xdp"],
    );
    assert_eq!((row("errors"), row("timeouts")), (0, 1), "{stderr}");
    assert!(count(&stderr, "forged") >= 1, "{stderr}");
    assert!(!stderr.contains("unverified errors"), "{stderr}");
}

/// A ping of the bed's silent host 198.19.0.13 (index 13: 13 % 97 == 13), `-c 1 -W 3s` with
/// `extra` options, while `spray.py` (its arguments after the target: `spray`) runs in the
/// router namespace: the row's counters, asdic's stderr, and how many errors were sprayed.
fn sprayed_ping(
    bed: &Bed,
    spray: &[&str],
    extra: &[&str],
) -> (impl Fn(&str) -> u64 + use<>, String, u64) {
    let dead = "198.19.0.13";
    let sprayer = bed.spray(dead, spray);
    let out = scratch(&format!("spray-{}.parquet", extra.join("")));
    let mut args = vec![
        "ping",
        dead,
        "-c",
        "1",
        "-W",
        "3s",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = bed.asdic(&args);
    let sent = sprayer.finish();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "a silent host: exit 1: {stderr}");
    let (rows, _) = read_parquet(&out);
    assert_eq!(rows.len(), 1);
    let row = rows.into_iter().next().unwrap();
    let counter = move |k: &str| row[k].as_u64().unwrap();
    (counter, stderr, sent)
}
