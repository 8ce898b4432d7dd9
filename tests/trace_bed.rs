//! `asdic trace` on the chain bed (`scripts/chain.sh`: scan, r1..r3, far): exact hop
//! addresses and hop counts for every target class in both families, with every engine;
//! the randomized (target, TTL) order as the first router sees it; stopping at the
//! destination; unreachable markers; Parquet hop rows; usage errors.
//!
//! Bed IDs start with `tr`; each test has its own.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use asdic_tests::{Bed, RunMode, asdic_bin, read_parquet, require_bed, scratch, stderr_of};
use serde_json::Value;

const CLASSES: [&str; 5] = ["far", "router", "reject", "silent", "dead"];

/// Two targets of a class's prefix in one family.
fn targets_of(truth: &Value, class: &str, v6: bool) -> Vec<String> {
    let prefix = truth["classes"][class][if v6 { "prefix6" } else { "prefix4" }]
        .as_str()
        .unwrap();
    let net = prefix.split('/').next().unwrap();
    if v6 {
        let base = net.trim_end_matches(':');
        vec![format!("{base}::1"), format!("{base}::beef")]
    } else {
        let base = net.trim_end_matches(".0");
        vec![format!("{base}.1"), format!("{base}.200")]
    }
}

/// The class of a target: the class whose /24 (IPv4) or /64 (IPv6) holds it.
fn class_of(truth: &Value, target: &str) -> &'static str {
    let addr: std::net::IpAddr = target.parse().expect("an address");
    for c in CLASSES {
        let key = if addr.is_ipv6() { "prefix6" } else { "prefix4" };
        let prefix = truth["classes"][c][key].as_str().unwrap();
        let net: std::net::IpAddr = prefix.split('/').next().unwrap().parse().unwrap();
        let inside = match (addr, net) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
                a.octets()[..3] == n.octets()[..3]
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
                a.segments()[..4] == n.segments()[..4]
            }
            _ => false,
        };
        if inside {
            return c;
        }
    }
    panic!("{target} is of no class")
}

/// The expected hops of `target` (class `class`): per TTL from 1, the responder (`None`
/// for a silent hop).
fn expected_path(truth: &Value, class: &str, target: &str) -> Vec<Option<String>> {
    let key = if target.contains(':') {
        "path6"
    } else {
        "path4"
    };
    truth["classes"][class][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| match h.as_str() {
            Some("target") => Some(target.to_string()),
            Some(a) => Some(a.to_string()),
            None => None,
        })
        .collect()
}

/// Splits traceroute-style stdout into blocks by destination.
fn blocks(stdout: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut cur = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("traceroute to ") {
            let t = rest.split(',').next().unwrap().to_string();
            assert!(
                out.insert(t.clone(), vec![line.to_string()]).is_none(),
                "{t} twice"
            );
            cur = Some(t);
        } else {
            let t = cur.as_ref().expect("a hop line before any header");
            out.get_mut(t).unwrap().push(line.to_string());
        }
    }
    out
}

/// Checks one target's printed path against the truth: header, one line per hop up to the
/// end (exact addresses, `*` for silence, a positive RTT, the unreachable marker), nothing
/// beyond.
fn check_block(truth: &Value, target: &str, lines: &[String], max_ttl: u8) {
    let class = class_of(truth, target);
    let want = expected_path(truth, class, target);
    let end = truth["classes"][class]["end"].as_str().unwrap();
    let k = want.len();
    let header = match end {
        "reply" => format!("traceroute to {target}, {k} hops"),
        "unreachable" => format!("traceroute to {target}, {k} hops, unreachable"),
        _ => format!("traceroute to {target}, not reached within {max_ttl} hops"),
    };
    assert_eq!(lines[0], header, "{target}: {lines:#?}");
    let tail = usize::from(end == "none");
    assert_eq!(lines.len(), 1 + k + tail, "{target}: hop lines {lines:#?}");
    for (i, hop) in want.iter().enumerate() {
        let ttl = i + 1;
        let line = &lines[1 + i];
        match hop {
            None => assert_eq!(line, &format!("{ttl:>3}  *"), "{target}"),
            Some(addr) => {
                let prefix = format!("{ttl:>3}  {addr}  ");
                let rest = line
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{target}: {line:?} should start {prefix:?}"));
                let marker = if end == "unreachable" && ttl == k {
                    let m = truth["classes"][class][if target.contains(':') {
                        "marker6"
                    } else {
                        "marker4"
                    }]
                    .as_str()
                    .unwrap();
                    format!(" ms {m}")
                } else {
                    " ms".to_string()
                };
                let rtt = rest
                    .strip_suffix(&marker)
                    .unwrap_or_else(|| panic!("{target}: {line:?} should end {marker:?}"));
                let ms: f64 = rtt.parse().unwrap_or_else(|_| panic!("{line:?}"));
                assert!(ms > 0.0 && ms < 1000.0, "{line:?}");
            }
        }
    }
    if tail == 1 {
        assert_eq!(
            lines[1 + k],
            format!("  {}-{max_ttl}  *", k + 1),
            "{target}"
        );
    }
}

fn run_trace(bed: &Bed, args: &[&str]) -> std::process::Output {
    let mut all = vec!["trace", "--no-progress"];
    all.extend_from_slice(args);
    bed.asdic(&all)
}

#[test]
fn paths_hops_and_rows_match_the_chain_in_both_families() {
    if require_bed().is_none() {
        return;
    }
    let bed = Bed::up_chain("tr1", 3);
    let truth = bed.truth();
    assert_eq!(truth["routers"], 3);
    let mut targets = vec![];
    for c in CLASSES {
        for v6 in [false, true] {
            targets.extend(targets_of(&truth, c, v6));
        }
    }
    let out = scratch("trace-tr1.parquet");
    let mut args: Vec<&str> = targets.iter().map(String::as_str).collect();
    args.extend_from_slice(&[
        "-m",
        "8",
        "-W",
        "500ms",
        "-R",
        "300",
        "--seed",
        "11",
        "-o",
        out.to_str().unwrap(),
    ]);
    let o = run_trace(&bed, &args);
    let err = stderr_of(&o);
    // Dead and rejected destinations never answer: exit 1, as ping.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("asdic: engine "), "the engine is named: {err}");
    assert!(
        err.contains("20 targets: 12 reached, 4 unreachable, 4 not reached"),
        "{err}"
    );
    let stdout = String::from_utf8(o.stdout).unwrap();
    let got = blocks(&stdout);
    assert_eq!(got.len(), targets.len(), "{stdout}");
    for t in &targets {
        check_block(&truth, t, &got[t], 8);
    }

    // Parquet: one row per probe sent; every TTL up to a path's end probed exactly once,
    // with the truth's responder, kind, ICMP type/code; RTTs only where something answered.
    let (rows, meta) = read_parquet(&out);
    assert_eq!(meta.mode, Some(RunMode::Trace));
    assert_eq!(meta.max_ttl, Some(8));
    assert_eq!(meta.seed, Some(11));
    assert_eq!((meta.complete, meta.interrupted), (Some(true), Some(false)));
    let sent = meta.probes_sent.unwrap();
    let skipped = meta.probes_skipped.unwrap();
    assert_eq!(rows.len() as u64, sent, "a row per probe sent");
    assert_eq!(
        sent + skipped,
        20 * 8,
        "every (target, TTL) pair sent or skipped"
    );
    assert!(
        skipped > 0,
        "some TTLs beyond the destinations were skipped"
    );
    let mut by_target: HashMap<&str, Vec<&HashMap<String, Value>>> = HashMap::new();
    for r in &rows {
        by_target
            .entry(r["target"].as_str().unwrap())
            .or_default()
            .push(r);
    }
    for t in &targets {
        let class = class_of(&truth, t);
        let v6 = t.contains(':');
        let want = expected_path(&truth, class, t);
        let end = truth["classes"][class]["end"].as_str().unwrap();
        let mine = &by_target[t.as_str()];
        let mut ttls: Vec<u64> = mine.iter().map(|r| r["ttl"].as_u64().unwrap()).collect();
        ttls.sort_unstable();
        let before = ttls.len();
        ttls.dedup();
        assert_eq!(ttls.len(), before, "{t}: a TTL probed twice");
        if end == "none" {
            assert_eq!(ttls, (1..=8).collect::<Vec<u64>>(), "{t}: never reached");
        }
        for r in mine {
            let ttl = r["ttl"].as_u64().unwrap() as usize;
            let kind = r["kind"].as_str().unwrap();
            let (te, reply, unreach) = if v6 { (3, 129, 1) } else { (11, 0, 3) };
            let hop = want.get(ttl - 1).cloned().unwrap_or_else(|| match end {
                // Beyond the end: the same answer as at the end.
                "reply" => Some(t.clone()),
                "unreachable" => want.last().cloned().unwrap(),
                _ => None,
            });
            let last = ttl >= want.len();
            let want_kind = match (&hop, end) {
                (None, _) => "timeout",
                (Some(a), _) if a == t => "reply",
                (Some(_), "unreachable") if last => "unreachable",
                _ => "time_exceeded",
            };
            assert_eq!(kind, want_kind, "{t} at {ttl}: {r:?}");
            assert_eq!(r["responder"].as_str(), hop.as_deref(), "{t} at {ttl}");
            match want_kind {
                "timeout" => {
                    assert!(r["rtt_us"].is_null(), "a timeout has no RTT: {r:?}");
                    assert!(r["icmp_type"].is_null(), "{r:?}");
                }
                _ => {
                    assert!(r["rtt_us"].as_f64().is_some_and(|x| x > 0.0), "{r:?}");
                    let ty = r["icmp_type"].as_u64().unwrap();
                    let code = r["icmp_code"].as_u64().unwrap();
                    match want_kind {
                        "reply" => assert_eq!((ty, code), (reply, 0), "{r:?}"),
                        "time_exceeded" => assert_eq!((ty, code), (te, 0), "{r:?}"),
                        _ => {
                            let k = if v6 { "6" } else { "4" };
                            let c = &truth["classes"][class];
                            assert_eq!(ty, unreach);
                            assert_eq!(Some(ty), c[format!("type{k}")].as_u64());
                            assert_eq!(Some(code), c[format!("code{k}")].as_u64(), "{r:?}");
                        }
                    }
                }
            }
        }
    }
    // The bed's own view: r2 rejected and silenced what the paths say it did.
    let c = &bed.truth()["counters"];
    assert!(c["rejected"].as_u64().unwrap() >= 4, "{c}");
    assert!(c["silenced"].as_u64().unwrap() >= 4, "{c}");

    // The same hops as JSON lines on stdout.
    let mut args: Vec<&str> = vec!["198.19.1.7", "2001:db8:1:1::7", "-m", "6"];
    args.extend_from_slice(&["-W", "300ms", "-O", "jsonl", "--seed", "3"]);
    let o = run_trace(&bed, &args);
    assert_eq!(o.status.code(), Some(0), "both reached: {}", stderr_of(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    for t in ["198.19.1.7", "2001:db8:1:1::7"] {
        let hops: HashMap<u64, &Value> = lines
            .iter()
            .filter(|v| v["target"] == t)
            .map(|v| (v["ttl"].as_u64().unwrap(), v))
            .collect();
        let want = expected_path(&truth, "far", t);
        for (i, h) in want.iter().enumerate() {
            assert_eq!(hops[&(i as u64 + 1)]["responder"].as_str(), h.as_deref());
        }
    }
}

#[test]
fn every_engine_sends_each_probe_with_its_own_ttl() {
    if require_bed().is_none() {
        return;
    }
    let bed = Bed::up_chain("tr2", 3);
    let truth = bed.truth();
    let pick = |v6: bool| -> Vec<String> {
        ["far", "silent", "router"]
            .iter()
            .map(|c| targets_of(&truth, c, v6)[0].clone())
            .collect()
    };
    // The socket engines carry the TTL in a control message per packet (the socket's own
    // is 64), XDP in the frame; one XDP socket per interface, so one family per XDP run.
    let runs: [(&str, &[bool]); 3] = [
        ("raw", &[false, true]),
        ("uring", &[false, true]),
        ("xdp", &[false]),
    ];
    let mut runs: Vec<(&str, Vec<bool>)> = runs.iter().map(|(e, f)| (*e, f.to_vec())).collect();
    runs.push(("xdp", vec![true]));
    for (engine, families) in runs {
        let targets: Vec<String> = families.iter().flat_map(|&v6| pick(v6)).collect();
        let mut args: Vec<&str> = targets.iter().map(String::as_str).collect();
        args.extend_from_slice(&["-m", "6", "-W", "400ms", "--engine", engine]);
        let o = run_trace(&bed, &args);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(0), "{engine}: all reached\n{err}");
        assert!(
            err.contains(&format!("engine {engine}:")),
            "{engine}: {err}"
        );
        let stdout = String::from_utf8(o.stdout).unwrap();
        let got = blocks(&stdout);
        assert_eq!(got.len(), targets.len(), "{engine}: {stdout}");
        for t in &targets {
            check_block(&truth, t, &got[t], 6);
        }
    }
}

#[test]
fn the_first_router_sees_a_shuffled_ttl_order_that_stops_at_the_destination() {
    if require_bed().is_none() {
        return;
    }
    let bed = Bed::up_chain("tr3", 3);
    let truth = bed.truth();
    let targets = ["198.19.1.9", "2001:db8:1:1::9"];
    let out = scratch("trace-tr3.parquet");
    let capture = bed.capture_echo_requests("r1");
    let o = run_trace(
        &bed,
        &[
            targets[0],
            targets[1],
            "-m",
            "30",
            "-R",
            "40",
            "-W",
            "300ms",
            "--seed",
            "5",
            "--engine",
            "raw",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let seen = capture.finish();
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
    let (rows, _) = read_parquet(&out);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let got = blocks(&stdout);
    for t in targets {
        // What r1 received for this target, in arrival order.
        let arrived: Vec<u64> = seen
            .iter()
            .filter(|(d, _)| d.to_string() == t)
            .map(|&(_, ttl)| u64::from(ttl))
            .collect();
        // What asdic recorded, in send order (probe numbers count up as probes leave).
        let mut mine: Vec<(u64, u64)> = rows
            .iter()
            .filter(|r| r["target"] == t)
            .map(|r| (r["probe"].as_u64().unwrap(), r["ttl"].as_u64().unwrap()))
            .collect();
        mine.sort_unstable();
        let sent: Vec<u64> = mine.iter().map(|&(_, ttl)| ttl).collect();
        assert_eq!(
            arrived, sent,
            "{t}: r1 saw exactly the probes asdic sent, in order"
        );
        let mut sorted = arrived.clone();
        sorted.sort_unstable();
        assert_ne!(arrived, sorted, "{t}: TTLs went out in increasing order");
        sorted.dedup();
        assert_eq!(sorted.len(), arrived.len(), "{t}: a TTL twice");
        // The destination is 4 hops away: TTLs 1..=4 all probed, and most of 5..=30 skipped.
        assert!((1..=4).all(|h| sorted.contains(&h)), "{t}: {arrived:?}");
        assert!(
            arrived.len() < 30,
            "{t}: all 30 TTLs sent although the path ends at 4: {arrived:?}"
        );
        // No hop beyond the destination is printed.
        check_block(&truth, t, &got[t], 30);
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["198.19.1.1", "--max-ttl", "0"], "a TTL is 1..=255"),
        (
            &["198.19.1.1", "--first-ttl", "9", "--max-ttl", "4"],
            "--first-ttl 9 is above --max-ttl 4",
        ),
        (&["198.19.1.1", "--max-ttl", "256"], "a TTL is 1..=255"),
        (
            &["198.19.1.1", "--rate", "1000000000000"],
            "at most 100000000",
        ),
        (&["198.19.1.1", "--size", "8"], "--size 8"),
        (&["198.19.1.1", "--rate=-5"], "--rate -5"),
        (&["198.19.1.1", "--timeout", "0"], "--timeout 0"),
        (&["198.19.1.1", "-W", "2"], "write 2s or 2ms"),
        (&["198.19.1.1", "-e", "7"], "write --seed"),
        (&["not-an-address"], "target"),
        (&[], "no targets"),
    ];
    for (args, want) in cases {
        let o = Command::new(asdic_bin())
            .arg("trace")
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .expect("asdic");
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
