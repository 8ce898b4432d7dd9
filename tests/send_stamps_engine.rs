//! The kernel's send stamps (issue 28, item 1) through the socket engines, driven directly
//! from a thread inside the bed's scanner namespace: every tagged packet's stamp comes back
//! once, under its tag, before its reply; it lies between the send call's start and the
//! reply's receive stamp; untagged packets and a packet the kernel refused bring none; both
//! families, raw and io_uring.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use asdic_engine::raw::{self, RawOptions};
use asdic_engine::uring::{self, UringOptions};
use asdic_engine::{Rx, RxLayer, SendError, Tx, TxBatch, now_ns};
use asdic_tests::{Bed, require_bed};

/// An echo request with identifier `id` and sequence `seq` (ICMPv6: the kernel writes the
/// checksum).
fn echo(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"asdic send stamp test...");
    if !v6 {
        let mut sum: u32 = p
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    p
}

/// What came back: send stamps by tag (in the order handed over, with the position in the
/// stream of everything handed over), replies' receive stamps by sequence (with their
/// position).
#[derive(Debug, Default)]
struct Seen {
    stamps: Vec<(u32, u64, usize)>,
    replies: HashMap<u16, (u64, usize)>,
    handed: usize,
}

fn collect(rx: &mut dyn Rx, id: u16, replies: usize, within: Duration) -> Seen {
    let end = Instant::now() + within;
    let mut s = Seen::default();
    while Instant::now() < end && s.replies.len() < replies {
        rx.recv(Duration::from_millis(20), &mut |f| {
            s.handed += 1;
            let icmp = match f.layer {
                RxLayer::TxStamp { tag } => {
                    assert!(f.data.is_empty());
                    s.stamps.push((tag, f.ts_ns, s.handed));
                    return;
                }
                RxLayer::Ipv4 => &f.data[usize::from(f.data[0] & 15) * 4..],
                RxLayer::Icmpv6 { .. } => f.data,
                RxLayer::Ethernet => panic!("sockets give no frames"),
            };
            if matches!(icmp[0], 0 | 129) && u16::from_be_bytes([icmp[4], icmp[5]]) == id {
                let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
                assert!(
                    s.replies.insert(seq, (f.ts_ns, s.handed)).is_none(),
                    "one reply each"
                );
            }
        })
        .expect("recv");
    }
    // Stamps of probes nobody answered come with a later read.
    for _ in 0..5 {
        rx.recv(Duration::from_millis(20), &mut |f| {
            s.handed += 1;
            if let RxLayer::TxStamp { tag } = f.layer {
                s.stamps.push((tag, f.ts_ns, s.handed));
            }
        })
        .expect("recv");
    }
    s
}

/// The raw engine, or the io_uring engine on the same socket options.
fn open(socket: RawOptions, uring: bool) -> (Box<dyn Tx>, Box<dyn Rx>) {
    if uring {
        let (t, r) = uring::open(&UringOptions {
            socket,
            ..UringOptions::default()
        })
        .expect("open uring");
        (Box::new(t), Box::new(r))
    } else {
        let (t, r) = raw::open(&socket).expect("open raw");
        (Box::new(t), Box::new(r))
    }
}

/// Five live targets tagged 1000.., one unroutable (refused by the kernel) tagged 999, one
/// live target untagged; then the checks.
fn exchange(bed: &Bed, v6: bool, uring: bool, id: u16) {
    let addr = |s: &str| s.parse::<IpAddr>().unwrap();
    let (live, unroutable) = if v6 {
        (
            [
                "2001:db8:1::1",
                "2001:db8:1::2",
                "2001:db8:1::3",
                "2001:db8:1::5",
                "2001:db8:1::6",
            ],
            "2001:db8:ffff::1",
        )
    } else {
        (
            [
                "198.19.0.1",
                "198.19.0.2",
                "198.19.0.3",
                "198.19.0.5",
                "198.19.0.6",
            ],
            "198.18.200.1",
        )
    };
    let engine = if uring { "uring" } else { "raw" };
    bed.in_scan_netns(move || {
        let socket = RawOptions {
            v6,
            batch: 8,
            tx_stamps: true,
            ..RawOptions::default()
        };
        let (mut tx, mut rx) = open(socket, uring);
        assert!(
            tx.caps().kernel_stamps,
            "{engine}: this kernel ties stamps to packets"
        );
        // Sequence i goes to dsts[i]; tag 1000 + i, except the untagged (5) and the
        // unroutable (6, tag 999).
        let mut dsts: Vec<IpAddr> = live.iter().map(|a| addr(a)).collect();
        dsts.push(addr(live[0]));
        dsts.push(addr(unroutable));
        let mut batch = TxBatch::new(8, 64);
        for (seq, &d) in dsts.iter().enumerate() {
            let p = echo(v6, id, seq as u16);
            batch.slot_mut(seq).unwrap()[..p.len()].copy_from_slice(&p);
            batch.push(d, p.len()).unwrap();
            match seq {
                5 => {}
                6 => batch.set_tag(seq, 999),
                _ => batch.set_tag(seq, 1000 + seq as u32),
            }
        }
        let before = now_ns();
        let mut from = 0;
        while from < batch.len() {
            match tx.send(&batch, from) {
                Ok(n) => from += n,
                Err(SendError::Packet { sent, .. }) => from += sent + 1,
                Err(e) => panic!("{engine}: {e:?}"),
            }
        }
        let seen = collect(rx.as_mut(), id, 6, Duration::from_secs(2));
        assert_eq!(seen.replies.len(), 6, "{engine} v6={v6}: {seen:?}");
        let mut tags: Vec<u32> = seen.stamps.iter().map(|s| s.0).collect();
        tags.sort_unstable();
        assert_eq!(
            tags,
            [1000, 1001, 1002, 1003, 1004],
            "{engine} v6={v6}: each tagged packet's stamp once; none untagged or refused"
        );
        for &(tag, ts, at) in &seen.stamps {
            let seq = (tag - 1000) as u16;
            let (rx_ts, rx_at) = seen.replies[&seq];
            assert!(
                at < rx_at,
                "{engine}: the stamp is handed over before its reply"
            );
            assert!(
                before <= ts && ts <= rx_ts,
                "{engine} v6={v6}: sent at {ts}, between {before} and its reply at {rx_ts}"
            );
        }
    });
}

#[test]
fn socket_engines_hand_back_each_tagged_packets_kernel_send_stamp_before_its_reply() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("stmp", &[]);
    exchange(&bed, false, false, 0x7101);
    exchange(&bed, true, false, 0x7102);
    exchange(&bed, false, true, 0x7103);
    exchange(&bed, true, true, 0x7104);
}

/// One tagged probe to a dead host: the receiver, waiting for replies, is not woken by the
/// probe's send stamp (the kernel queues it inside the device's transmit, before the packet
/// goes on; a receiver woken there delays the packet past its stamp), and the stamp is
/// still handed over by that receive call.
fn stamp_wakes_nobody(bed: &Bed, uring: bool) {
    let engine = if uring { "uring" } else { "raw" };
    bed.in_scan_netns(move || {
        let socket = RawOptions {
            batch: 8,
            tx_stamps: true,
            ..RawOptions::default()
        };
        let (mut tx, mut rx) = open(socket, uring);
        // 198.19.0.13: a dead host of the bed (13 mod 97), dropped without an answer.
        let dead: IpAddr = "198.19.0.13".parse().unwrap();
        let mut batch = TxBatch::new(1, 64);
        let p = echo(false, 0x7105, 0);
        batch.slot_mut(0).unwrap()[..p.len()].copy_from_slice(&p);
        batch.push(dead, p.len()).unwrap();
        batch.set_tag(0, 77);
        assert_eq!(tx.send(&batch, 0).expect("send"), 1);
        let wait = Duration::from_millis(300);
        let t0 = Instant::now();
        let mut tags = vec![];
        rx.recv(wait, &mut |f| match f.layer {
            RxLayer::TxStamp { tag } => tags.push(tag),
            other => panic!("{engine}: nothing but the stamp can come: {other:?}"),
        })
        .expect("recv");
        let waited = t0.elapsed();
        assert!(
            waited >= wait - Duration::from_millis(20),
            "{engine}: the receiver was woken after {waited:?}, not by a reply"
        );
        assert_eq!(
            tags,
            [77],
            "{engine}: the stamp comes with the call that waited"
        );
    });
}

#[test]
fn a_send_stamp_wakes_no_receiver_and_still_comes_back() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("stwk", &[]);
    stamp_wakes_nobody(&bed, false);
    stamp_wakes_nobody(&bed, true);
}
