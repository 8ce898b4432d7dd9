//! Criterion benches of the hot functions: checksum, probe build, reply parse + match, and the
//! run's per-target statistics.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use asdic_core::matcher::Matcher;
use asdic_core::table::{InflightTable, ProbeInfo};
use asdic_wire::payload::{Key, Numbering, Stamp};
use asdic_wire::template::{Layer, ProbeFields, Template};
use asdic_wire::{Family, checksum, ipv4};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEY: Key = Key::new(1, 2);
const NUM: Numbering = Numbering::Spread {
    base: 7,
    key: 0x5eed_0001,
};

/// The target of probe `n`: 198.19.0.0/16, wrapping.
fn target(n: u64) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(0xc613_0000u32 | (n as u32 & 0xffff))
}

/// Patches probe `n` (to [`target`]) into a prepared template buffer, as the sender does.
#[inline]
fn stamp_probe(t: &Template, buf: &mut [u8], n: u64) {
    let dst = IpAddr::V4(target(n));
    let (ident, seq) = NUM.ident_seq(n);
    let stamp = Stamp {
        session: 9,
        n,
        cookie: n as u32,
        t_send_ns: n,
    };
    t.patch(buf, &ProbeFields::new(&KEY, dst, 64, ident, seq, stamp))
        .unwrap();
}

fn checksums(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [64usize, 1500] {
        let data = vec![0xa5u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("fast/{len}"), |b| {
            b.iter(|| checksum::checksum(black_box(&data)))
        });
        g.bench_function(format!("reference/{len}"), |b| {
            b.iter(|| checksum::reference(black_box(&data)))
        });
    }
    g.finish();
}

fn probe_build(c: &mut Criterion) {
    let t = Template::new(Family::V4, Layer::Icmp, 56).unwrap();
    let mut buf = vec![0u8; t.len()];
    t.prepare(&mut buf).unwrap();
    let mut g = c.benchmark_group("probe");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("stamp+mac+patch", |b| {
        b.iter(|| {
            n += 1;
            stamp_probe(&t, &mut buf, n);
            black_box(&buf);
        })
    });
    g.finish();
}

/// The keyed hashes each tracked probe costs: its payload's MAC (44 bytes) and, where asdic
/// writes the IPv4 header (XDP), its IP ID (21 bytes).
fn keyed(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("mac/44 B", |b| {
        b.iter(|| {
            n += 1;
            let stamp = Stamp {
                session: 9,
                n,
                cookie: n as u32,
                t_send_ns: n,
            };
            black_box(KEY.mac(IpAddr::V4(target(n)), n as u16, 7, &stamp))
        })
    });
    g.bench_function("ip_ident/21 B", |b| {
        b.iter(|| {
            n += 1;
            black_box(KEY.ip_ident(IpAddr::V4(target(n)), n as u16, 7))
        })
    });
    g.finish();
}

/// Echo replies for probes 0..count, as the raw engine delivers them (IPv4 header included).
fn replies(count: u64, t: &Template) -> Vec<Vec<u8>> {
    let us = std::net::Ipv4Addr::new(198, 18, 0, 1);
    (0..count)
        .map(|n| {
            let mut m = vec![0u8; t.len()];
            t.prepare(&mut m).unwrap();
            stamp_probe(t, &mut m, n);
            m[0] = 0;
            m[2..4].fill(0);
            let ck = checksum::checksum(&m);
            m[2..4].copy_from_slice(&ck.to_be_bytes());
            let mut p = vec![0u8; 20];
            let r = ipv4::Repr {
                src: target(n),
                dst: us,
                protocol: 1,
                payload_len: m.len(),
                ttl: 60,
                ident: 0,
            };
            r.emit(&mut p).unwrap();
            p.extend_from_slice(&m);
            p
        })
        .collect()
}

fn parse_and_match(c: &mut Criterion) {
    const N: u64 = 1 << 16;
    let t = Template::new(Family::V4, Layer::Icmp, 56).unwrap();
    let pkts = replies(N, &t);
    let mut g = c.benchmark_group("rx");
    g.throughput(Throughput::Elements(N));
    g.bench_function("parse+verify+match/65536 replies", |b| {
        b.iter_batched(
            || {
                let table = Arc::new(InflightTable::new(N as usize));
                for n in 0..N {
                    let target = IpAddr::V4(target(n));
                    table.claim(&ProbeInfo {
                        n,
                        target,
                        cookie: n as u32,
                        t_send_ns: n,
                        attempt: 0,
                        class: 0,
                    });
                }
                Matcher::new(table, KEY, 9, NUM)
            },
            |mut m| {
                let mut got = 0u64;
                for p in &pkts {
                    let f = asdic_engine::RxFrame {
                        data: p,
                        layer: asdic_engine::RxLayer::Ipv4,
                        ts_ns: 1_000_000,
                        truncated: false,
                        realtime: false,
                    };
                    m.on_frame(&f, &mut |_| got += 1);
                }
                assert_eq!(got, N);
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The run's statistics as `asdic ping 198.19.0.0/16 -c 60` feeds them: 60 rounds of one reply
/// per target, in target order, in batches of 1,024 events.
fn statistics(c: &mut Criterion) {
    use asdic_core::event::Event;
    const TARGETS: u32 = 1 << 16;
    const ROUNDS: u32 = 60;
    let targets: Vec<IpAddr> = (0..TARGETS)
        .map(|i| IpAddr::V4(target(u64::from(i))))
        .collect();
    let rounds: Vec<Vec<Event>> = (0..ROUNDS)
        .map(|k| asdic_bench::reply_round(&targets, k))
        .collect();
    let mut g = c.benchmark_group("stats");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(TARGETS * ROUNDS)));
    g.bench_function("record/65536 targets x 60 replies", |b| {
        b.iter_batched(
            || asdic_analysis::Aggregator::new(targets.clone()),
            |mut agg| {
                for round in &rounds {
                    for batch in round.chunks(1024) {
                        agg.record_batch(batch);
                    }
                }
                agg
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    checksums,
    probe_build,
    keyed,
    parse_and_match,
    statistics
);
criterion_main!(benches);
