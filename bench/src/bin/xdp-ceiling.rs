//! The speed bed's ceiling: prebuilt Ethernet frames blasted through the AF_XDP engine with no
//! bookkeeping (no rate limit, no stamps, no in-flight table, no matching), replies only
//! counted off the RX ring. What asdic's XDP engine does on top of this is its own cost.
//!
//! usage: xdp-ceiling TARGET_PREFIX_V4 FRAMES SECONDS
//!   e.g. xdp-ceiling 198.19.0.0/16 65536 3     (run inside the bed's scanner namespace)
//! Prints one JSON line: sent, received, seconds, sent_pps, received_pps.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asdic_engine::xdp::{self, XdpOptions};
use asdic_engine::{Rx, Tx, TxBatch, TxLayer};
use asdic_wire::Family;
use asdic_wire::payload::{Key, Stamp};
use asdic_wire::template::{Layer, ProbeFields, Template};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: xdp-ceiling PREFIX_V4 FRAMES SECONDS");
        std::process::exit(2);
    }
    let (net, len) = args[1].split_once('/').expect("PREFIX/LEN");
    let net: Ipv4Addr = net.parse().expect("IPv4 prefix");
    let len: u32 = len.parse().expect("prefix length");
    let frames: u32 = args[2].parse().expect("FRAMES");
    let secs: f64 = args[3].parse().expect("SECONDS");
    let base = u32::from(net);
    assert!(
        (u32::from(Ipv4Addr::new(198, 18, 0, 0))..=u32::from(Ipv4Addr::new(198, 19, 255, 255)))
            .contains(&base),
        "only the benchmarking range 198.18.0.0/15"
    );
    let hosts = 1u32 << (32 - len);
    let target = |i: u32| IpAddr::V4(Ipv4Addr::from(base + (i % hosts)));

    let session = 0x5eed_0001;
    let opts = XdpOptions {
        session,
        ident_base: 0x4000,
        ident_span: 1,
        ..XdpOptions::new(target(1))
    };
    let (mut tx, mut rx, info) = xdp::open(&opts).unwrap_or_else(|e| {
        eprintln!("xdp-ceiling: {e}");
        std::process::exit(1)
    });
    eprintln!(
        "xdp-ceiling: {} queues {} ({} mode), next hop {}",
        info.path.link.name,
        xdp::queue_list(&info.queues),
        info.mode,
        info.path.next_hop
    );
    let TxLayer::Ethernet {
        src_mac,
        dst_mac,
        src_ip,
    } = tx.caps().layer
    else {
        unreachable!("the XDP engine sends Ethernet frames")
    };
    let t = Template::new(
        Family::V4,
        Layer::Ethernet {
            src_mac,
            dst_mac,
            src_ip,
        },
        32,
    )
    .expect("template");
    // Prebuilt frames, one per target, patched once.
    let key = Key::new(1, 2);
    let batch_len = 64;
    let mut prebuilt = vec![vec![0u8; t.len()]; frames as usize];
    for (i, f) in prebuilt.iter_mut().enumerate() {
        let dst = target(i as u32);
        let stamp = Stamp {
            session,
            n: i as u64,
            cookie: 0,
            t_send_ns: 0,
        };
        t.prepare(f).expect("prepare");
        let fields = ProbeFields::new(&key, dst, 64, 0x4000, i as u16, stamp);
        t.patch(f, &fields).expect("patch");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    // One receiver per queue, as asdic runs them.
    let rx_threads: Vec<_> = rx
        .drain(..)
        .map(|mut rx| {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut n = 0u64;
                    let _ = rx.recv(Duration::from_millis(10), &mut |_| n += 1);
                    received.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut batch = TxBatch::new(batch_len, t.len());
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    while t0.elapsed().as_secs_f64() < secs {
        batch.clear();
        for _ in 0..batch_len {
            let f = &prebuilt[next % prebuilt.len()];
            next += 1;
            let b = batch.push(target(0), f.len()).expect("room");
            b.copy_from_slice(f);
        }
        let mut from = 0;
        while from < batch.len() {
            match tx.send(&batch, from) {
                Ok(k) => from += k,
                Err(asdic_engine::SendError::Busy { sent }) => from += sent,
                Err(e) => panic!("send: {e:?}"),
            }
        }
        sent += batch.len() as u64;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in rx_threads {
        t.join().expect("rx thread");
    }
    let got = received.load(Ordering::Relaxed);
    println!(
        "{{\"sent\":{sent},\"received\":{got},\"seconds\":{elapsed:.3},\"sent_pps\":{:.0},\"received_pps\":{:.0}}}",
        sent as f64 / elapsed,
        got as f64 / elapsed
    );
}
