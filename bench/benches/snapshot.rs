//! What a durable snapshot of `asdic ping` (`--sync-every`) costs the run's event loop, for a
//! /16 (65,536 targets, 20 replies each): before, the loop encoded every row to Parquet itself
//! (here without the file and its fsync, which came on top); now it takes a copy of the
//! aggregate and a thread of its own encodes, writes and syncs it.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use asdic_analysis::{Aggregator, Format, Row, sink_for};
use criterion::{Criterion, criterion_group, criterion_main};

const TARGETS: u32 = 65_536;
const REPLIES: u32 = 20;

fn aggregate() -> Aggregator {
    let targets: Vec<IpAddr> = (0..TARGETS)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc613_0000 + i)))
        .collect();
    let mut agg = Aggregator::new(targets.clone());
    for k in 0..REPLIES {
        agg.record_batch(&asdic_bench::reply_round(&targets, k));
    }
    agg
}

fn snapshot(c: &mut Criterion) {
    let agg = aggregate();
    let mut g = c.benchmark_group("snapshot of a /16, 20 replies each");
    g.sample_size(10);
    g.bench_function(
        "event loop before: every row computed and encoded (CSV, in memory)",
        |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(8 << 20);
                let mut sink = sink_for(Format::Csv, &mut out).unwrap();
                let mut chunk: Vec<Row<'_>> = Vec::with_capacity(8192);
                for row in agg.rows() {
                    chunk.push(row);
                    if chunk.len() == 8192 {
                        sink.write_rows(&chunk).unwrap();
                        chunk.clear();
                    }
                }
                sink.write_rows(&chunk).unwrap();
                sink.finish().unwrap();
                black_box(out.len())
            })
        },
    );
    g.bench_function("event loop now: copy the aggregate", |b| {
        b.iter(|| black_box(agg.clone()))
    });
    g.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
