//! The fork bed (`scripts/fork.sh`: scan, r1, two branches a1-a2 and b1-b2, r4, far) for
//! Paris traceroute: r1 load-balances echo requests per flow by their ICMP / ICMPv6 checksum.
//! Checked with the system `ping` (fixed identifier and sequence, an 8-byte payload of a
//! pattern, so that the checksum depends on the pattern only): different patterns at TTL 2
//! reach both a1 and b1, and one pattern always takes the same branch.
//!
//! `asdic trace` on it keeps every probe to a target in one flow (one ICMP checksum): on
//! every engine and family, hops 2 and 3 of each of 256 targets are one branch, never a link
//! that does not exist; `--flow 1` takes other targets down the other branch.
//!
//! Bed IDs start with `pf`; each test has its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use asdic_tests::{Bed, require_bed, stderr_of, stdout_jsonl};
use serde_json::Value;

/// Payload patterns per family; each is sent twice (32 probes per family).
const PATTERNS: u32 = 16;
/// The identifier of every probe (`ping -e`).
const IDENT: &str = "7013";

/// The source of the answer to one echo request at `ttl` with payload `pattern`, if any.
fn answered_by(bed: &Bed, v6: bool, ttl: u8, pattern: &str, target: &str) -> Option<String> {
    let ttl = ttl.to_string();
    let fam = if v6 { "-6" } else { "-4" };
    let out = bed.exec(&[
        "ping", fam, "-n", "-c", "1", "-W", "1", "-t", &ttl, "-s", "8", "-e", IDENT, "-p", pattern,
        target,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        match (w.next(), w.next(), w.next(), w.next()) {
            // "From 198.18.0.6 icmp_seq=1 Time to live exceeded"
            (Some("From"), Some(from), _, _) => Some(from.to_string()),
            // "16 bytes from 198.19.1.5: icmp_seq=1 ttl=60"
            (_, _, Some("from"), Some(from)) => Some(from.trim_end_matches(':').to_string()),
            _ => None,
        }
    })
}

#[test]
fn fork_bed_load_balances_by_icmp_checksum() {
    let Some(()) = require_bed() else { return };
    let t0 = Instant::now();
    let bed = Bed::up_fork("pf1");
    let truth = bed.truth();
    let mut probes = 0u64;
    let mut to_a = 0u64;
    for (fam, v6) in [("v4", false), ("v6", true)] {
        let t = &truth[fam];
        let addr = |n: &str| {
            t[n].as_str()
                .unwrap_or_else(|| panic!("{fam}.{n}"))
                .to_string()
        };
        let (r1, a1, a2, b1, b2, r4) = (
            addr("r1"),
            addr("a1"),
            addr("a2"),
            addr("b1"),
            addr("b2"),
            addr("r4"),
        );
        let path = |p: [&String; 4]| Value::from(p.map(|s| s.as_str()).to_vec());
        assert_eq!(
            t["paths"],
            Value::Array(vec![path([&r1, &a1, &a2, &r4]), path([&r1, &b1, &b2, &r4])]),
            "{fam} paths"
        );
        let prefix = truth[if v6 { "prefix6" } else { "prefix4" }]
            .as_str()
            .unwrap();
        let net = prefix.split('/').next().unwrap();
        let target = if v6 {
            format!("{}::5", net.trim_end_matches(':'))
        } else {
            format!("{}.5", net.trim_end_matches(".0"))
        };
        // pattern -> the hop 2 that answered it, per round.
        let mut seen: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for round in 0..2 {
            for i in 0..PATTERNS {
                let pattern = format!("{:02x}{:02x}", i * 17, 255 - i * 16);
                let from = answered_by(&bed, v6, 2, &pattern, &target);
                probes += 1;
                assert!(
                    from.as_ref().is_some_and(|f| *f == a1 || *f == b1),
                    "{fam} pattern {pattern} round {round}: hop 2 is {from:?}, not a1 {a1} or b1 {b1}"
                );
                to_a += u64::from(from.as_deref() == Some(a1.as_str()));
                seen.entry(pattern).or_default().push(from);
            }
        }
        for (pattern, froms) in &seen {
            assert!(
                froms.windows(2).all(|w| w[0] == w[1]),
                "{fam} pattern {pattern} took different branches: {froms:?} (the hash is per flow)"
            );
        }
        let via_a = seen
            .values()
            .filter(|f| f[0].as_deref() == Some(a1.as_str()))
            .count();
        let via_b = seen.len() - via_a;
        eprintln!("{fam}: of {PATTERNS} patterns, {via_a} took a1 and {via_b} took b1");
        assert!(
            via_a > 0 && via_b > 0,
            "{fam}: one branch is never used: {seen:?}"
        );
    }
    // r1 counted every probe on the branch it answered from (up resets the counters).
    assert_eq!(bed.counter("to_a"), to_a, "{truth}");
    assert_eq!(bed.counter("to_a") + bed.counter("to_b"), probes);
    let took = t0.elapsed();
    eprintln!("{probes} probes, {took:?} with the bed's up");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// Per target of a trace, the responders at TTL 2 and 3, and the flows its rows carry.
type Hops = BTreeMap<String, (Option<String>, Option<String>, Vec<u64>)>;

fn trace(bed: &Bed, engine: &str, prefix: &str, flow: &str) -> Hops {
    let o = bed.asdic(&[
        "trace", prefix, "-m", "6", "-R", "2000", "-W", "1s", "--format", "jsonl", "--engine",
        engine, "--flow", flow,
    ]);
    assert!(o.status.success(), "{engine} {prefix}: {}", stderr_of(&o));
    let mut hops = Hops::new();
    for row in stdout_jsonl(&o) {
        let target = row["target"].as_str().unwrap().to_string();
        let responder = row["responder"].as_str().map(str::to_string);
        let e = hops.entry(target).or_default();
        match row["ttl"].as_u64().unwrap() {
            2 => e.0 = responder,
            3 => e.1 = responder,
            _ => {}
        }
        e.2.push(row["flow"].as_u64().unwrap());
    }
    hops
}

#[test]
fn paris_traces_hold_no_false_link_on_every_engine() {
    let Some(()) = require_bed() else { return };
    let t0 = Instant::now();
    let bed = Bed::up_fork("pf2");
    let truth = bed.truth();
    for (fam, prefix) in [("v4", "198.19.1.0/24"), ("v6", "2001:db8:1:1::/120")] {
        let at = |k: &str| truth[fam][k].as_str().unwrap().to_string();
        let a = (Some(at("a1")), Some(at("a2")));
        let b = (Some(at("b1")), Some(at("b2")));
        let mut branch_of_flow0 = BTreeMap::new();
        for (engine, flow) in [("xdp", "0"), ("raw", "0"), ("uring", "0"), ("raw", "1")] {
            let hops = trace(&bed, engine, prefix, flow);
            assert_eq!(hops.len(), 256, "{engine} {prefix}: every target traced");
            let mut via_a = 0;
            for (target, (h2, h3, flows)) in &hops {
                let pair = (h2.clone(), h3.clone());
                // Hops 2 and 3 are linked: one branch, never a1 then b2 or b1 then a2.
                assert!(
                    pair == a || pair == b,
                    "{engine} {prefix} flow {flow}: {target} went {pair:?}"
                );
                via_a += usize::from(pair == a);
                assert!(flows.iter().all(|f| f.to_string() == flow), "{flows:?}");
                if flow == "0" {
                    // One flow, one path: whatever the engine.
                    let before = branch_of_flow0.insert(target.clone(), pair == a);
                    assert!(before.is_none_or(|x| x == (pair == a)), "{target} moved");
                }
            }
            // The balancer is in the path: both branches carry some targets' flows.
            assert!(
                via_a > 32 && via_a < 224,
                "{engine} {prefix}: {via_a} of 256 via a"
            );
            if flow == "1" {
                let moved = hops
                    .iter()
                    .filter(|(t, h)| branch_of_flow0[*t] != (h.0 == a.0))
                    .count();
                assert!(moved > 32, "another flow takes other paths: {moved} moved");
            }
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
}
