//! The AF_XDP engine at the bed's full speed through a router with loss: ten rounds over the
//! /16 as fast as they go, on 1, 2 and 4 queues. Every target's received count must equal the
//! router's count of replies it forwarded to that target (an nftables set with a counter per
//! address, filled before the run), and nothing may be lost in the kernel.
//!
//! One test in its own binary, so no other bed test competes for the two cores while it runs.

use std::collections::HashMap;

use asdic_tests::{Bed, col_u64, require_bed, scratch, stderr_of};

/// The router's per-target reply counts (`--count-replies`): address → packets.
fn forwarded_replies(bed: &Bed) -> HashMap<String, u64> {
    let o = bed.exec_in(
        "rtr",
        &["nft", "-j", "list", "set", "inet", "asdic_bed", "replies4"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("nft JSON");
    let set = v["nftables"]
        .as_array()
        .and_then(|a| a.iter().find_map(|x| x.get("set")))
        .expect("the set");
    set["elem"]
        .as_array()
        .expect("elements")
        .iter()
        .map(|e| {
            let e = &e["elem"];
            (
                e["val"].as_str().expect("address").to_string(),
                e["counter"]["packets"].as_u64().expect("counter"),
            )
        })
        .collect()
}

/// The scanner link's transmit drops so far (the bed's own count of frames it never passed on).
fn link_tx_dropped(bed: &Bed) -> u64 {
    let o = bed.exec_in("scan", &["cat", "/sys/class/net/s0/statistics/tx_dropped"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("a count")
}

#[test]
fn ten_rounds_at_full_speed_through_a_lossy_router_lose_no_reply_on_1_2_and_4_queues() {
    let Some(()) = require_bed() else { return };
    // Every bed up before the first run and down after the last: a bed's teardown goes on in
    // the kernel after `ip netns del` returns and would compete with the next run.
    let beds: Vec<(&str, Bed)> = ["1", "2", "4"]
        .into_iter()
        .map(|q| {
            let bed = Bed::up(
                &format!("xb{q}"),
                &["--loss", "5", "--queues", q, "--count-replies"],
            );
            (q, bed)
        })
        .collect();
    for (queues, bed) in &beds {
        let id = bed.id().to_string();
        let out = scratch(&format!("{id}.parquet"));
        let dropped0 = link_tx_dropped(bed);
        let o = bed.asdic(&[
            "ping",
            "198.19.0.0/16",
            "--engine",
            "xdp",
            "-c",
            "10",
            "-i",
            "1s",
            "-R",
            "1000000",
            "-q",
            "--no-progress",
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let (rows, meta) = asdic_tests::read_parquet(&out);
        assert_eq!(rows.len(), 65_536);
        let fwd = forwarded_replies(bed);
        assert_eq!(fwd.len(), 65_536);
        let lossdrop = bed.counter("lossdrop");
        assert!(lossdrop > 20_000, "5 % of ~640,000 requests: {lossdrop}");
        let mut differ = vec![];
        let mut total = 0;
        for r in &rows {
            let t = r["target"].as_str().unwrap();
            let got = col_u64(r, "received");
            let want = fwd[t];
            total += want;
            if got != want {
                differ.push(format!("{t}: received {got}, router forwarded {want}"));
            }
        }
        assert!(
            differ.is_empty(),
            "{queues} queue(s): {} targets differ, e.g. {:?}\n{err}",
            differ.len(),
            &differ[..differ.len().min(5)]
        );
        assert_eq!(
            total,
            bed.counter("replied"),
            "the router forwarded every reply far sent"
        );
        assert_eq!(meta.kernel_lost, Some(0), "{queues} queue(s): {err}");
        // Probes the link dropped on their way out are counted as the link counted them.
        let dropped = link_tx_dropped(bed) - dropped0;
        assert_eq!(
            meta.kernel_counter("link_tx_dropped"),
            Some(dropped),
            "{queues} queue(s): {err}"
        );
        assert_eq!(
            err.contains(&format!("dropped {dropped} frames on transmit")),
            dropped > 0,
            "{err}"
        );
        assert!(err.contains("; 0 lost in the kernel"), "{err}");
        eprintln!(
            "{queues} queue(s): {total} replies, every one matched; {lossdrop} requests lost to the bed's 5 %"
        );
    }
}
