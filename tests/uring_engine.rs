//! The io_uring engine driven directly, without the CLI, from a thread inside the bed's scanner
//! namespace: both receive modes, both families, a packet the kernel refuses in the middle of
//! a batch (the rest go out once, counted on the router), batches longer than the ring, kernel
//! timestamps and hop limits, and dropping the halves with receives armed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use asdic_engine::raw::RawOptions;
use asdic_engine::uring::{self, RecvMode, UringOptions};
use asdic_engine::{Rx, RxLayer, SendError, Tx, TxBatch, now_ns};
use asdic_tests::{Bed, require_bed};

/// The Internet checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with identifier `id` and sequence `seq` (ICMPv6: the kernel writes the
/// checksum).
fn echo(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"asdic uring engine test.");
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// What came back for our identifier: (sequence of each echo reply, ICMP error count).
#[derive(Debug, Default)]
struct Got {
    replies: Vec<u16>,
    errors: usize,
}

/// Receives for up to `within`, until `replies` echo replies and `errors` errors for `id`
/// came; checks timestamps and (IPv6) hop limits on the way.
fn collect(rx: &mut dyn Rx, id: u16, replies: usize, errors: usize, within: Duration) -> Got {
    let t0 = now_ns();
    let end = Instant::now() + within;
    let mut got = Got::default();
    while Instant::now() < end && (got.replies.len() < replies || got.errors < errors) {
        rx.recv(Duration::from_millis(20), &mut |f| {
            assert!(
                f.ts_ns >= t0 - 1_000_000_000 && f.ts_ns <= now_ns(),
                "a kernel receive timestamp: {}",
                f.ts_ns
            );
            let icmp = match f.layer {
                RxLayer::Ipv4 => &f.data[usize::from(f.data[0] & 15) * 4..],
                RxLayer::Icmpv6 { hop_limit, .. } => {
                    assert!(hop_limit.is_some(), "IPV6_HOPLIMIT came");
                    f.data
                }
                RxLayer::Ethernet => panic!("raw sockets give no frames"),
                RxLayer::TxStamp { .. } => panic!("no send stamps asked for"),
            };
            match icmp[0] {
                0 | 129 if u16::from_be_bytes([icmp[4], icmp[5]]) == id => {
                    got.replies.push(u16::from_be_bytes([icmp[6], icmp[7]]));
                }
                // Destination unreachable, quoting our request (IPv4 quotes the IP header).
                3 | 1 => got.errors += 1,
                _ => {}
            }
        })
        .expect("recv");
    }
    got.replies.sort_unstable();
    got
}

/// One engine, one family, one receive mode: a batch with an unroutable target in the middle,
/// then a batch longer than the ring.
fn exchange(bed: &Bed, v6: bool, mode: RecvMode, id: u16) {
    let (sent_before, rejected_before) = (
        bed.counter(if v6 { "sent6" } else { "sent4" }),
        bed.counter("rejected"),
    );
    let addr = |s: &str| s.parse::<IpAddr>().unwrap();
    let (ok, unroutable, rejected) = if v6 {
        (
            ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"],
            "2001:db8:ffff::1",
            "2001:db8:1::4d01",
        )
    } else {
        (
            ["198.19.0.1", "198.19.0.2", "198.19.0.3"],
            "198.18.200.1",
            "198.19.77.1",
        )
    };
    let dsts = [ok[0], unroutable, ok[1], ok[2], rejected].map(addr);
    let many: Vec<IpAddr> = (1..=20u16)
        .map(|i| {
            if v6 {
                addr(&format!("2001:db8:1::1:{i:x}"))
            } else {
                addr(&format!("198.19.1.{i}"))
            }
        })
        .collect();
    bed.in_scan_netns(move || {
        let opts = UringOptions {
            socket: RawOptions {
                v6,
                batch: 8,
                ..RawOptions::default()
            },
            recv: mode,
            ..UringOptions::default()
        };
        let (mut tx, mut rx) = uring::open(&opts).expect("open the uring engine");
        assert_eq!(rx.mode(), mode, "this kernel has multishot receives");
        assert_eq!((tx.caps().engine, rx.caps().engine), ("uring", "uring"));

        let mut batch = TxBatch::new(32, 64);
        for (seq, &d) in dsts.iter().enumerate() {
            let p = echo(v6, id, seq as u16);
            batch.slot_mut(seq).unwrap()[..p.len()].copy_from_slice(&p);
            batch.push(d, p.len()).unwrap();
        }
        // Packet 1 has no route: refused alone; 2..5 went out in the same submit.
        match tx.send(&batch, 0) {
            Err(SendError::Packet { sent: 1, error }) => {
                assert_eq!(error.raw_os_error(), Some(libc::ENETUNREACH), "{error}")
            }
            other => panic!("expected packet 1 refused, got {other:?}"),
        }
        // Resuming after it reports those without sending them again.
        assert_eq!(tx.send(&batch, 2).expect("the rest"), 3);
        let got = collect(&mut rx, id, 3, 1, Duration::from_secs(2));
        assert_eq!(got.replies, vec![0, 2, 3], "{got:?}");
        assert_eq!(got.errors, 1, "{got:?}");

        // 20 packets through a ring of 8: windows of 8, 8, 4.
        batch.clear();
        for (i, &d) in many.iter().enumerate() {
            let p = echo(v6, id, 100 + i as u16);
            batch.slot_mut(i).unwrap()[..p.len()].copy_from_slice(&p);
            batch.push(d, p.len()).unwrap();
        }
        let mut from = 0;
        while from < batch.len() {
            from += tx.send(&batch, from).expect("send");
        }
        let got = collect(&mut rx, id, 20, 0, Duration::from_secs(2));
        assert_eq!(got.replies, (100..120).collect::<Vec<u16>>());

        // Dropping cancels the armed receives and waits for them: promptly.
        let t = Instant::now();
        drop(rx);
        drop(tx);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    });
    // On the wire: each routable request exactly once (3 + the rejected one + 20).
    let sent = bed.counter(if v6 { "sent6" } else { "sent4" }) - sent_before;
    assert_eq!(sent, 24, "nothing sent twice, the unroutable one never");
    assert_eq!(bed.counter("rejected") - rejected_before, 1);
}

#[test]
fn uring_engine_multishot_and_armed_both_families() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("ueng", &[]);
    exchange(&bed, false, RecvMode::Multishot, 0x7001);
    exchange(&bed, true, RecvMode::Multishot, 0x7002);
    exchange(&bed, false, RecvMode::Armed, 0x7003);
    exchange(&bed, true, RecvMode::Armed, 0x7004);
}
