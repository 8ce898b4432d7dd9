//! The AF_XDP engine on multi-queue links (veth pairs with 2, 4 and 8 queues, where the router's
//! flow hash spreads replies over every RX queue of the scanner, as RSS does on a real NIC):
//! exact ground truth with `--engine xdp` and auto; a chosen subset of queues and what it
//! costs, counted exactly; the kernel's drops under a stalled receiver equal to the kernel's
//! own counters; a scan at full speed with its small UMEM exact on 2 and 4 queues; a queue
//! count changed mid-run stops the run with a clear error.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use asdic_tests::{
    Bed, RunMeta, Truth, assert_ping_ground_truth, classify, col_u64, low16, ping_to_parquet,
    require_bed, stderr_of,
};

fn engine_line(err: &str) -> &str {
    err.lines()
        .find(|l| l.starts_with("asdic: engine "))
        .unwrap_or_else(|| panic!("an engine line: {err}"))
}

/// s0's per-queue counters as `ethtool -S` shows them: (queue, name) → value.
fn queue_stats(bed: &Bed) -> HashMap<(u32, String), u64> {
    let o = bed.exec(&["ethtool", "-S", "s0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut m = HashMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some((k, v)) = line.trim().split_once(": ") else {
            continue;
        };
        let Some(rest) = k.strip_prefix("rx_queue_") else {
            continue;
        };
        let Some((q, name)) = rest.split_once('_') else {
            continue;
        };
        if let (Ok(q), Ok(v)) = (q.parse(), v.trim().parse()) {
            m.insert((q, name.to_string()), v);
        }
    }
    m
}

/// What grew in one counter of every queue between two readings, per queue.
fn grew(
    before: &HashMap<(u32, String), u64>,
    after: &HashMap<(u32, String), u64>,
    name: &str,
) -> Vec<u64> {
    let queues = after.keys().map(|(q, _)| *q).max().map_or(0, |q| q + 1);
    (0..queues)
        .map(|q| {
            let k = (q, name.to_string());
            after.get(&k).copied().unwrap_or(0) - before.get(&k).copied().unwrap_or(0)
        })
        .collect()
}

/// `asdic.kernel_lost` of a run.
fn kernel_lost(meta: &RunMeta) -> u64 {
    meta.kernel_lost
        .unwrap_or_else(|| panic!("asdic.kernel_lost in {meta:?}"))
}

/// The kernel counter `name` of a run (`asdic.kernel.<name>`).
fn kernel_counter(meta: &RunMeta, name: &str) -> u64 {
    meta.kernel_counter(name)
        .unwrap_or_else(|| panic!("asdic.kernel.{name} in {meta:?}"))
}

#[test]
fn every_queue_served_gives_the_exact_ground_truth_on_2_and_4_queues() {
    let Some(()) = require_bed() else { return };
    for queues in [2u32, 4] {
        let id = format!("xq{queues}");
        let bed = Bed::up(&id, &["--queues", &queues.to_string()]);
        let truth = bed.truth();
        for engine in ["xdp", "auto"] {
            for (family, prefix, rows) in [
                ("v4", "198.19.0.0/16", 65_536usize),
                ("v6", "2001:db8:1::4c00/118", 1024),
            ] {
                let before = queue_stats(&bed);
                let name = format!("{id}-{engine}-{family}");
                let (rows, meta) = ping_to_parquet(
                    &bed,
                    &name,
                    &[prefix, "--engine", engine, "--rate", "50000", "-W", "1s"],
                    rows,
                );
                let after = queue_stats(&bed);
                let seen = assert_ping_ground_truth(&truth, &rows, 1);
                if family == "v4" {
                    let dead = (0..65_536u32)
                        .filter(|x| x >> 8 != 77 && x % 97 == 13)
                        .count() as u64;
                    assert_eq!(seen, [65_536 - 256 - dead, dead, 256], "{name}");
                } else {
                    assert_eq!(seen[2], 256, "{name}: the rejected /120");
                }
                assert_eq!(meta.engine.as_deref(), Some("xdp"), "{name}");
                assert_eq!(kernel_lost(&meta), 0, "{name}");
                // The bed spreads replies over every queue, and every queue was read.
                let redirected = grew(&before, &after, "xdp_redirect");
                assert_eq!(redirected.len(), queues as usize, "{name}: {redirected:?}");
                assert!(
                    redirected.iter().all(|&n| n > 0),
                    "{name}: replies on every queue: {redirected:?}"
                );
                let replies = rows
                    .iter()
                    .map(|r| col_u64(r, "received") + col_u64(r, "errors"))
                    .sum::<u64>();
                assert_eq!(
                    redirected.iter().sum::<u64>(),
                    replies,
                    "{name}: every redirected frame matched"
                );
                assert!(
                    grew(&before, &after, "drops").iter().all(|&n| n == 0),
                    "{name}"
                );
            }
        }
        // A scan at full speed with its small UMEM (2,048 RX frames a queue): the exact
        // live and rejected sets, replies on every queue, nothing lost in the kernel.
        let before = queue_stats(&bed);
        let csv = asdic_tests::scratch(&format!("{id}-scan.csv"));
        let o = bed.asdic(&[
            "scan",
            "198.19.0.0/16",
            "--no-default-blocklist",
            "--engine",
            "xdp",
            "-R",
            "10000000",
            "--cooldown",
            "1",
            "-q",
            "-v",
            "-O",
            "csv",
            "-o",
            csv.to_str().unwrap(),
        ]);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(err.contains("2048 RX frames per queue"), "{err}");
        assert!(err.contains("; 0 lost in the kernel"), "{err}");
        let text = std::fs::read_to_string(&csv).unwrap();
        let (mut live, mut rejected) = (BTreeSet::new(), BTreeSet::new());
        for line in text.lines().skip(1) {
            let mut f = line.split(',');
            let (target, outcome) = (f.next().unwrap(), f.next().unwrap());
            let set = match outcome {
                "reply" => &mut live,
                "error" => &mut rejected,
                other => panic!("{other} in {line}"),
            };
            assert!(set.insert(target.to_string()), "twice: {line}");
        }
        let want = |t: Truth| -> BTreeSet<String> {
            (0..65_536u32)
                .filter(|&x| classify(&truth, false, x) == t)
                .map(|x| format!("198.19.{}.{}", x >> 8, x & 255))
                .collect()
        };
        assert_eq!(live, want(Truth::Alive), "{id}: scan's live set");
        assert_eq!(rejected, want(Truth::Rejected), "{id}: scan's rejected set");
        let after = queue_stats(&bed);
        let redirected = grew(&before, &after, "xdp_redirect");
        assert!(
            redirected.iter().all(|&n| n > 0),
            "{id}: scan replies on every queue: {redirected:?}"
        );
        assert!(
            grew(&before, &after, "drops").iter().all(|&n| n == 0),
            "{id}"
        );

        // The engine line names every queue (a detail: -v).
        let o = bed.asdic(&["ping", "198.19.0.1", "--engine", "auto", "-q", "-v"]);
        let err = stderr_of(&o);
        let want = if queues == 2 {
            "queues 0,1 (every RX queue)".to_string()
        } else {
            format!("queues 0-{} (every RX queue)", queues - 1)
        };
        assert!(engine_line(&err).contains(&want), "{err}");
    }
}

#[test]
fn a_subset_of_queues_auto_falls_back_and_xdp_counts_what_it_misses() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xqsub", &["--queues", "4"]);
    let truth = bed.truth();
    // auto does not take an engine that leaves replies unread, and says why in one line.
    let (rows, meta) = ping_to_parquet(
        &bed,
        "xqsub-auto",
        &["198.19.0.0/20", "--queues", "0,2", "--rate", "20000"],
        4096,
    );
    assert_eq!(meta.engine.as_deref(), Some("raw"));
    let seen = assert_ping_ground_truth(&truth, &rows, 1);
    assert_eq!(seen[0] + seen[1], 4096);

    // Asked for, XDP runs on the subset, warns, and counts every reply it could not see.
    let out = asdic_tests::scratch("xqsub-xdp.parquet");
    let o = bed.asdic(&[
        "ping",
        "198.19.0.0/20",
        "--engine",
        "xdp",
        "--queues",
        "0,2",
        "--rate",
        "20000",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let line = engine_line(&err);
    // Said without -v: a warning is never a detail.
    assert!(
        line.contains("WARNING: RX queues 1,3 of s0 without a socket"),
        "{line}"
    );
    let (rows, meta) = asdic_tests::read_parquet(&out);
    let received: u64 = rows.iter().map(|r| col_u64(r, "received")).sum();
    let alive = rows
        .iter()
        .filter(|r| {
            let (v6, x) = low16(r["target"].as_str().unwrap());
            classify(&truth, v6, x) == Truth::Alive
        })
        .count() as u64;
    let missed = kernel_counter(&meta, "xdp_redirect_failed");
    assert!(
        missed > alive / 4,
        "about half the replies went to queues 1 and 3: {missed}"
    );
    assert_eq!(
        received + missed,
        alive,
        "every reply either matched or counted as missed"
    );
    assert_eq!(kernel_lost(&meta), missed);
    assert!(
        err.contains(&format!("the kernel dropped {missed} replies or errors"))
            && err.contains("leave out --queues"),
        "{err}"
    );
    // A queue the interface does not have is refused before anything is sent.
    let o = bed.asdic(&["ping", "198.19.0.1", "--engine", "xdp", "--queues", "4"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr_of(&o).contains("queue 4: s0 has 4 RX queues (0-3)"),
        "{}",
        stderr_of(&o)
    );
}

/// What one stalled ping of the /16 left: its stderr, the replies and errors it matched,
/// what it reported lost in the kernel (and its metadata), and what the bed answered.
struct Stalled {
    err: String,
    matched: u64,
    lost: u64,
    meta: RunMeta,
    answered: u64,
}

/// Pings the bed's /16 at 1 M/s over XDP with every receiver asleep for its first 1.5 s
/// (batches of `batch` probes).
fn stalled_ping(bed: &Bed, name: &str, batch: &str) -> Stalled {
    let replied0 = bed.counter("replied") + bed.counter("rejected");
    let out = asdic_tests::scratch(name);
    let mut c = bed.command_with_faults(
        &[
            "ping",
            "198.19.0.0/16",
            "--engine",
            "xdp",
            "--rate",
            "1000000",
            "-W",
            "3s",
            "--batch",
            batch,
            "-q",
            "-o",
            out.to_str().unwrap(),
        ],
        &[("ASDIC_INJECT_RX_STALL_MS", "1500")],
    );
    let o = c.output().expect("asdic");
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let (rows, meta) = asdic_tests::read_parquet(&out);
    let matched = rows
        .iter()
        .map(|r| col_u64(r, "received") + col_u64(r, "errors"))
        .sum();
    Stalled {
        lost: kernel_lost(&meta),
        answered: bed.counter("replied") + bed.counter("rejected") - replied0,
        err,
        matched,
        meta,
    }
}

#[test]
fn a_stalled_receiver_holds_the_sender_or_loses_replies_in_the_kernel_and_says_how_many() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xqstall", &["--queues", "2"]);
    // The fill rings run dry while the receivers sleep. The sender sees the rings fill and
    // holds back, but at most 20 ms per batch: batches of 1,024 still outrun the stalled
    // receivers.
    let before = queue_stats(&bed);
    let s = stalled_ping(&bed, "xqstall.parquet", "1024");
    let after = queue_stats(&bed);
    let kernel: u64 = grew(&before, &after, "drops").iter().sum();
    let (err, lost) = (&s.err, s.lost);
    assert!(
        lost > 10_000,
        "the stall overflowed the rings: {lost}\n{err}"
    );
    assert_eq!(
        lost, kernel,
        "asdic's count is the kernel's (veth rx_queue_N_drops)"
    );
    assert_eq!(
        lost,
        kernel_counter(&s.meta, "xsk_rx_dropped") + kernel_counter(&s.meta, "xsk_rx_ring_full")
    );
    // What the bed answered is what asdic matched plus what the kernel dropped.
    assert_eq!(s.matched + lost, s.answered, "{err}");
    assert!(
        err.contains(&format!("WARNING: the kernel dropped {lost} replies")),
        "{err}"
    );
    assert!(err.contains(&format!("{lost} lost in the kernel")), "{err}");

    // The same stall with the default batches of 64: the sender waits for the receivers
    // and nothing is lost.
    let s = stalled_ping(&bed, "xqhold.parquet", "64");
    assert_eq!(s.lost, 0, "{}", s.err);
    assert_eq!(s.matched, s.answered, "{}", s.err);
    assert_eq!(s.matched, 64_606 + 256, "{}", s.err);
}

#[test]
fn a_queue_count_changed_mid_run_stops_the_run_with_a_clear_error() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xqchg", &["--queues", "8"]);
    let set = |rx: &str| {
        let o = bed.exec(&["ethtool", "-L", "s0", "rx", rx, "tx", "4"]);
        assert!(
            o.status.success(),
            "ethtool -L: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    set("4");
    let mut c = bed.command(&[
        "ping",
        "198.19.0.0/16",
        "--engine",
        "xdp",
        "--rate",
        "5000",
        "-q",
    ]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("asdic");
    std::thread::sleep(Duration::from_millis(2500));
    let t0 = Instant::now();
    set("8");
    let o = child.wait_with_output().expect("asdic");
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stopped soon after the change"
    );
    assert!(
        err.contains("s0 now has 8 RX queues (it had 4 when the run started")
            && err.contains("the AF_XDP sockets serve queues 0-3"),
        "{err}"
    );
    // The program went with the run.
    let o = bed.exec(&["ip", "-d", "link", "show", "dev", "s0"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("prog/xdp"));
}
