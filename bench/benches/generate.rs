//! Criterion benches of scan target generation: the permutation walk alone, and walk +
//! index → address over all of IPv4 minus the default blocklist (the generator's whole job).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use asdic_core::permute::Cycle;
use asdic_core::source::Scan;
use asdic_core::space::{AddrSet, Space, SpaceSpec, default_blocklist};
use asdic_core::targets::TargetSpec;
use asdic_wire::Family;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: u64 = 1 << 20;

fn ipv4_space(block: &AddrSet) -> Space {
    Space::new(&SpaceSpec {
        family: Family::V4,
        targets: &[TargetSpec::parse("0.0.0.0/0").unwrap()],
        block,
        allow: None,
        v6_samples: None,
        seed: 1,
    })
    .unwrap()
}

fn generation(c: &mut Criterion) {
    let mut g = c.benchmark_group("generate");
    g.throughput(Throughput::Elements(N));
    let cycle = Cycle::new(1 << 32, 42).unwrap();
    g.bench_function("permutation walk, 2^32 space, 2^20 indices", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for i in cycle.shard(0, 1).unwrap().take(N as usize) {
                acc ^= i;
            }
            black_box(acc)
        })
    });
    let block = default_blocklist();
    let space = Arc::new(ipv4_space(&block));
    let cycle = Cycle::new(space.len(), 42).unwrap();
    g.bench_function("IPv4 minus default blocklist, 2^20 addresses", |b| {
        b.iter(|| {
            let mut scan = Scan::new(space.clone(), cycle.shard(0, 1).unwrap(), N);
            let mut acc = 0u64;
            while let Some((i, a)) = scan.next_target() {
                acc ^= i ^ u64::from(a.is_ipv4());
            }
            black_box(acc)
        })
    });
    // A blocklist of 10,000 scattered /24s: lookups stay a binary search.
    let specs: Vec<TargetSpec> = (0..10_000u32)
        .map(|i| {
            let net = (i.wrapping_mul(2_654_435_761) >> 8) << 8;
            TargetSpec::parse(&format!("{}/24", std::net::Ipv4Addr::from(net))).unwrap()
        })
        .collect();
    let big = block.union(&AddrSet::from_specs(&specs));
    let t = Instant::now();
    let space = Arc::new(ipv4_space(&big));
    eprintln!(
        "space with {} blocklist entries built in {:?}",
        specs.len(),
        t.elapsed()
    );
    let cycle = Cycle::new(space.len(), 42).unwrap();
    g.bench_function(
        "IPv4 minus default + 10,000 /24 blocklist, 2^20 addresses",
        |b| {
            b.iter(|| {
                let mut scan = Scan::new(space.clone(), cycle.shard(0, 1).unwrap(), N);
                let mut acc = 0u64;
                while let Some((i, _)) = scan.next_target() {
                    acc ^= i;
                }
                black_box(acc)
            })
        },
    );
    g.finish();
}

criterion_group!(benches, generation);
criterion_main!(benches);
