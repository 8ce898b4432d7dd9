//! The whole pipeline of `asdic ping`, without root and without a network: the runtime the
//! cli drives (`asdic_runtime::Pipeline`: the real sender and receiver threads, matcher and
//! in-flight table) over the in-memory engine (`asdic_engine::mem`), and the events folded
//! by the analysis crate's aggregator and written through one of its sinks, as
//! crates/cli/src/ping.rs folds and writes them.
//!
//! Every result is checked exactly against what the engine's population says: each target's
//! received, error, timeout and duplicate counts are computed from `Population::fate`, the
//! same rule the engine applies, never written down as numbers.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asdic_analysis::{Aggregator, FirstError, Format, Row, sink_for, summary_line};
use asdic_core::event::{Drops, Event, Outcome};
use asdic_core::source::Rounds;
use asdic_engine::mem::{self, Fate, Forgery, Host, MemCounts, Population, Select};
use asdic_receiver::rx::{RxConfig, RxShared};
use asdic_runtime::{EngineUsed, Pipeline, Started, Work, join_all, start_all};
use asdic_sender::tx::{SenderConfig, SenderShared};
use asdic_wire::Family;
use asdic_wire::payload::{Key, Numbering};
use crossbeam_channel::RecvTimeoutError;

/// ICMP payload bytes per probe (`--size`).
const SIZE: usize = 56;
/// Longest a run may take before the test stops it and fails.
const LIMIT: Duration = Duration::from_secs(20);

/// The in-memory engine, as the runtime's start line would name it.
fn mem_engine() -> EngineUsed {
    EngineUsed {
        name: "mem",
        what: "the in-memory simulator (asdic_engine::mem)",
        why: "a test".into(),
        detail: String::new(),
    }
}

/// One `asdic ping` run over a population.
struct Scenario {
    targets: Vec<IpAddr>,
    /// Probes per target (`--count`).
    count: u32,
    /// Time between rounds (`--interval`).
    interval: Duration,
    /// How long a probe waits for its answer (`--timeout`).
    timeout: Duration,
    /// Probes per second (`--rate`).
    rate: f64,
    pop: Population,
}

/// What a run left behind.
struct Outcomes {
    agg: Aggregator,
    /// The matcher's counters of frames that matched no probe.
    drops: Drops,
    mem: MemCounts,
    sender: Arc<SenderShared>,
    receiver: Arc<RxShared>,
    /// Events that broke a rule checked as they streamed by (RTT under the delay, a reply
    /// not from its target, a late reply).
    bad_events: Vec<Event>,
    /// The rows as CSV, through the analysis crate's sink.
    csv: String,
    elapsed: Duration,
}

/// Runs `s` as `asdic ping` does for one address family and returns what came out.
fn ping(s: &Scenario) -> Outcomes {
    let t0 = Instant::now();
    let family = Family::of(s.targets[0]);
    // The run's identity; the cli draws these at random.
    let numbering = Numbering::Spread {
        base: 0xfff0,
        key: 0x5eed_0001,
    };
    let key = Key::new(0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321);
    let session = 0xa5d1_c001;

    let (txe, rxe) = mem::open(s.pop.clone());
    let stats = txe.stats();
    let slots = asdic_core::table::slots_for(s.rate, s.timeout) as usize;
    let mut pipeline = Pipeline::new(
        family,
        slots,
        (Box::new(txe), vec![Box::new(rxe)]),
        mem_engine(),
    );
    // As the cli's ping, without retries.
    let cfg = SenderConfig {
        rate: s.rate,
        batch: 64,
        per_call: false,
        ttl: 64,
        numbering,
        session,
        key,
        retries: false,
        flow: None,
    };
    let rx_cfg = RxConfig {
        timeout: s.timeout,
        retries: 0,
        poll: Duration::from_millis(10),
        batch: 4096,
        clock_step: None,
    };
    let work = Work {
        sender: cfg,
        receiver: rx_cfg,
        source: Box::new(Rounds::new(
            Arc::new(s.targets.clone()),
            s.count,
            s.interval,
        )),
        scan: vec![],
        flow_source: None,
    };
    let Started {
        handles,
        events: ev_rx,
        recycle: recycle_tx,
    } = start_all(
        std::slice::from_mut(&mut pipeline),
        vec![work],
        &[SIZE],
        &[],
    )
    .expect("starting the pipeline");

    // Aggregate on this thread, as ping does (one family: its cookies need no offset).
    let mut agg = Aggregator::new(s.targets.clone());
    let offset = 0u32;
    let delay_ns = s.pop.delay.as_nanos() as u64;
    let timeout_ns = s.timeout.as_nanos() as u64;
    let mut bad_events = vec![];
    let mut stopped_at: Option<Instant> = None;
    loop {
        match ev_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(mut batch) => {
                for ev in batch.iter_mut() {
                    let ok = match ev.outcome {
                        Outcome::Reply { rtt_ns, from, .. } => {
                            from == ev.target && rtt_ns >= delay_ns && rtt_ns < timeout_ns
                        }
                        Outcome::Error { rtt_ns, .. } | Outcome::Duplicate { rtt_ns } => {
                            rtt_ns >= delay_ns && rtt_ns < timeout_ns
                        }
                        Outcome::Timeout => true,
                        Outcome::Late { .. } | Outcome::SendFailed { .. } => false,
                    };
                    if !ok {
                        bad_events.push(*ev);
                    }
                    ev.cookie += offset;
                }
                agg.record_batch(&batch);
                batch.clear();
                let _ = recycle_tx.try_send(batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Bounded: past the limit, stop as a second SIGINT would, then give up waiting.
        match stopped_at {
            None if t0.elapsed() > LIMIT => {
                pipeline.abort();
                stopped_at = Some(Instant::now());
            }
            Some(at) if at.elapsed() > Duration::from_secs(5) => {
                panic!("the pipeline did not end within {LIMIT:?} + 5 s of being stopped")
            }
            _ => {}
        }
    }
    assert!(stopped_at.is_none(), "the run took over {LIMIT:?}");
    let (drops, failure) = join_all(handles);
    if let Some(e) = failure {
        panic!("the pipeline failed: {e:#}");
    }
    let elapsed = t0.elapsed();

    // The rows through a sink, in chunks, as ping's write_all.
    let mut out = Vec::new();
    {
        let mut sink = sink_for(Format::Csv, &mut out).unwrap();
        let mut chunk: Vec<Row<'_>> = Vec::with_capacity(8192);
        for row in agg.rows() {
            chunk.push(row);
            if chunk.len() == 8192 {
                sink.write_rows(&chunk).expect("writing rows");
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            sink.write_rows(&chunk).expect("writing rows");
        }
        sink.finish().expect("finishing the CSV");
    }
    Outcomes {
        agg,
        drops,
        mem: stats.snapshot(),
        sender: pipeline.sender.clone(),
        receiver: pipeline.receiver.clone(),
        bad_events,
        csv: String::from_utf8(out).expect("CSV is UTF-8"),
        elapsed,
    }
}

/// What one target's row must say.
#[derive(Debug, Default, PartialEq, Eq)]
struct Want {
    received: u64,
    errors: u64,
    timeouts: u64,
    duplicates: u64,
}

/// What the whole run must say, from the population's own rule.
#[derive(Debug, Default)]
struct Expected {
    per_target: Vec<Want>,
    mem: MemCounts,
    altered: u64,
    strangers: u64,
    dead_targets: u64,
    error_targets: u64,
}

fn expected(s: &Scenario) -> Expected {
    let mut e = Expected::default();
    for &t in &s.targets {
        let mut w = Want::default();
        match s.pop.host(t) {
            Host::Dead => e.dead_targets += 1,
            Host::Unreachable => e.error_targets += 1,
            Host::Alive => {}
        }
        // The engine sees each target's probes in order: its k-th is round k.
        for k in 0..s.count {
            e.mem.requests += 1;
            match s.pop.fate(t, k) {
                Fate::Lost => {
                    e.mem.lost += 1;
                    w.timeouts += 1;
                }
                Fate::Silent => {
                    e.mem.silent += 1;
                    w.timeouts += 1;
                }
                Fate::Unreachable { .. } => {
                    e.mem.errors += 1;
                    w.errors += 1;
                }
                Fate::Reply {
                    duplicated, forged, ..
                } => {
                    e.mem.replies += 1;
                    w.received += 1;
                    if duplicated {
                        e.mem.duplicates += 1;
                        w.duplicates += 1;
                    }
                    match forged {
                        Some(Forgery::AlteredMac) => e.altered += 1,
                        Some(Forgery::Stranger) => e.strangers += 1,
                        None => {}
                    }
                }
            }
        }
        e.per_target.push(w);
    }
    e.mem.forged = e.altered + e.strangers;
    e.mem.queued = e.mem.replies + e.mem.errors + e.mem.duplicates + e.mem.forged;
    e.mem.delivered = e.mem.queued;
    e
}

/// Runs the scenario and checks every figure against the population.
fn check(s: &Scenario) {
    let e = expected(s);
    // The scenario exercises every fate, or it proves little.
    assert!(e.mem.lost > 0 && e.mem.silent > 0, "{:?}", e.mem);
    assert!(e.mem.errors > 0 && e.mem.duplicates > 0, "{:?}", e.mem);
    assert!(e.altered > 0 && e.strangers > 0, "{e:?}");
    assert!(e.dead_targets > 0 && e.error_targets > 0, "{e:?}");

    let o = ping(s);
    let n = s.targets.len() as u64;
    let probes = n * u64::from(s.count);
    assert!(
        o.bad_events.is_empty(),
        "{:?}",
        &o.bad_events[..o.bad_events.len().min(5)]
    );

    // The engine: every probe seen, every frame made handed over, none dropped.
    assert_eq!(o.mem, e.mem, "the engine's counters");
    assert_eq!(o.sender.sent.load(Ordering::Relaxed), probes);
    assert_eq!(o.sender.failed.load(Ordering::Relaxed), 0);

    // Per target, exactly what the population says.
    let (router, ty, code) = match s.targets[0] {
        IpAddr::V4(_) => (IpAddr::V4(s.pop.router_v4), 3, s.pop.unreachable_code_v4),
        IpAddr::V6(_) => (IpAddr::V6(s.pop.router_v6), 1, s.pop.unreachable_code_v6),
    };
    let family = Family::of(s.targets[0]);
    for (i, (&t, w)) in s.targets.iter().zip(&e.per_target).enumerate() {
        let (addr, st) = o.agg.get(i as u32).expect("every target has stats");
        assert_eq!(addr, t);
        let got = Want {
            received: st.received(),
            errors: st.errors(),
            timeouts: st.timeouts(),
            duplicates: st.duplicates(),
        };
        assert_eq!(&got, w, "target {t} ({:?})", s.pop.host(t));
        assert_eq!(st.sent(), u64::from(s.count), "target {t}");
        assert_eq!((st.late(), st.send_failed()), (0, 0), "target {t}");
        match s.pop.host(t) {
            Host::Dead => assert_eq!(st.timeouts(), u64::from(s.count), "dead {t}"),
            Host::Unreachable => {
                assert_eq!(st.received(), 0, "unreachable {t}");
                if st.errors() > 0 {
                    let want = FirstError {
                        family,
                        icmp_type: ty,
                        code,
                        from: router,
                    };
                    assert_eq!(st.first_error(), Some(want), "unreachable {t}");
                    assert_eq!(st.responder(), Some(router));
                }
            }
            Host::Alive => {
                assert_eq!(st.errors(), 0, "alive {t}");
                assert_eq!(st.other_replier(), None, "a forged reply counted for {t}");
            }
        }
        if let Some(rtt) = st.rtt() {
            assert!(rtt.min_ns >= s.pop.delay.as_nanos() as u64, "{t}: {rtt:?}");
            assert_eq!(st.reply_ttl(), Some(s.pop.reply_ttl));
        }
    }

    // Run totals and the matcher's drops: duplicates are duplicates, forgeries are forged.
    let totals = o.agg.totals();
    let sum = |f: fn(&Want) -> u64| e.per_target.iter().map(f).sum::<u64>();
    assert_eq!(totals.sent, probes);
    assert_eq!(totals.received, sum(|w| w.received));
    assert_eq!(totals.errors, sum(|w| w.errors));
    assert_eq!(totals.timeouts, sum(|w| w.timeouts));
    assert_eq!(totals.duplicates, e.mem.duplicates);
    assert_eq!((totals.late, totals.send_failed, totals.ignored), (0, 0, 0));
    assert_eq!(
        o.drops,
        Drops {
            forged: e.mem.forged,
            ..Drops::default()
        },
        "only the forgeries are dropped, all as forged"
    );
    let r = &o.receiver;
    assert_eq!(r.replies.load(Ordering::Relaxed), totals.received);
    assert_eq!(r.errors.load(Ordering::Relaxed), totals.errors);
    assert_eq!(r.timeouts.load(Ordering::Relaxed), totals.timeouts);
    assert_eq!(r.frames.load(Ordering::Relaxed), e.mem.delivered);
    assert_eq!(r.discarded.load(Ordering::Relaxed), e.mem.forged);
    assert_eq!(r.kernel_drops().lost(), 0);
    let rtt = totals.rtt.expect("replies have RTTs");
    assert!(rtt.min_ns >= s.pop.delay.as_nanos() as u64);

    // The rows as the sink wrote them: a header, one line per target, the router named.
    assert_eq!(o.csv.lines().count(), s.targets.len() + 1);
    assert!(o.csv.lines().next().unwrap_or("").starts_with("target,"));
    assert!(o.csv.contains(&router.to_string()));
    eprintln!(
        "{}; {:?} in all; engine {:?}",
        summary_line(&totals),
        o.elapsed,
        o.mem
    );
    assert!(o.elapsed < LIMIT);
}

#[test]
fn ping_a_thousand_ipv4_targets_through_the_mem_engine() {
    let base = u32::from(Ipv4Addr::new(198, 19, 0, 0));
    let targets: Vec<IpAddr> = (1..=1000)
        .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
        .collect();
    check(&Scenario {
        targets,
        count: 3,
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        rate: 20_000.0,
        pop: Population {
            // As the bed: dead hosts by a modulus, a router rejecting a /26.
            dead: Select::Modulo {
                modulus: 97,
                residue: 13,
            },
            unreachable: Select::Prefix {
                addr: IpAddr::V4(Ipv4Addr::new(198, 19, 2, 0)),
                len: 26,
            },
            seed: 7,
            loss: 0.05,
            delay: Duration::from_millis(2),
            jitter: Duration::from_millis(3),
            duplicate: 0.05,
            forged: 0.05,
            // RFC 792's 8 bytes: errors are matched by the quoted (id, seq) and target.
            v4_quote: 8,
            ..Population::default()
        },
    });
}

#[test]
fn ping_ipv6_targets_through_the_mem_engine() {
    let targets: Vec<IpAddr> = (1..=200u16)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i)))
        .collect();
    check(&Scenario {
        targets,
        count: 3,
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(500),
        rate: 10_000.0,
        pop: Population {
            dead: Select::Modulo {
                modulus: 97,
                residue: 13,
            },
            // ICMPv6 errors quote the whole probe: matched by the quoted payload's MAC.
            unreachable: Select::Prefix {
                addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x80)),
                len: 123,
            },
            seed: 11,
            loss: 0.1,
            delay: Duration::from_millis(3),
            jitter: Duration::from_millis(2),
            duplicate: 0.1,
            forged: 0.1,
            ..Population::default()
        },
    });
}
