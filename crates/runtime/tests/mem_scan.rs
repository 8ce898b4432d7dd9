//! The whole pipeline of a stateless `asdic scan`, without root and without a network: the
//! runtime the cli drives (`asdic_runtime::Pipeline`: the real sender drawing from the real
//! scan source — passes over the permutation, retries of silent targets only — and the real
//! receiver with the stateless matcher and responder set) over the in-memory engine
//! (`asdic_engine::mem`), as crates/cli/src/scan.rs starts it.
//!
//! Every result is checked against the population's own rule (`Population::fate`): the
//! engine sees a target's k-th request as its try k, so each target's outcome per try is
//! computed, never written down. IPv4 errors quote 8 bytes of the probe (RFC 792): they are
//! validated by the identifiers' MAC alone.

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asdic_core::event::{Drops, Event, Outcome};
use asdic_core::permute::Cycle;
use asdic_core::space::{AddrSet, Space, SpaceSpec};
use asdic_core::stateless::{ScanSource, ScanState};
use asdic_core::targets::TargetSpec;
use asdic_engine::mem::{self, Fate, Forgery, Population, Select};
use asdic_receiver::rx::{RxConfig, RxShared};
use asdic_runtime::{EngineUsed, Pipeline, Started, Work, join_all, start_all};
use asdic_sender::tx::{SenderConfig, SenderShared};
use asdic_wire::Family;
use asdic_wire::payload::{Key, Numbering};
use crossbeam_channel::RecvTimeoutError;

/// Longest a run may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

struct Scan {
    cidr: &'static str,
    retries: u8,
    cooldown: Duration,
    rate: f64,
    report_silent: bool,
    pop: Population,
}

struct Ran {
    events: Vec<Event>,
    drops: Drops,
    state: Arc<ScanState>,
    sender: Arc<SenderShared>,
    receiver: Arc<RxShared>,
    mem: mem::MemCounts,
    elapsed: Duration,
}

fn run(s: &Scan) -> Ran {
    let t0 = Instant::now();
    let spec = TargetSpec::parse(s.cidr).unwrap();
    let family = Family::of(spec.base);
    let space = Arc::new(
        Space::new(&SpaceSpec {
            family,
            targets: &[spec],
            block: &AddrSet::default(),
            allow: None,
            v6_samples: None,
            seed: 7,
        })
        .unwrap(),
    );
    let key = Key::new(0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321);
    let session = 0x5ca1_ab1e;
    let state = Arc::new(ScanState::new(
        space.clone(),
        key,
        session,
        s.retries,
        s.cooldown,
        s.report_silent,
    ));
    let walk = Cycle::new(space.len(), 7).unwrap().shard(0, 1).unwrap();
    let source = ScanSource::new(state.clone(), walk, u64::MAX);

    let (txe, rxe) = mem::open(s.pop.clone());
    let stats = txe.stats();
    // As scan.rs: a table of two slots that nothing claims.
    let used = EngineUsed {
        name: "mem",
        what: "the in-memory simulator (asdic_engine::mem)",
        why: "a test".into(),
        detail: String::new(),
    };
    let mut pipeline = Pipeline::new(family, 2, (Box::new(txe), vec![Box::new(rxe)]), used);
    let cfg = SenderConfig {
        rate: s.rate,
        batch: 64,
        per_call: false,
        ttl: 64,
        numbering: Numbering::Spread {
            base: 1,
            key: 0x5eed_0001,
        },
        session,
        key,
        retries: false,
        flow: None,
    };
    let rx_cfg = RxConfig {
        timeout: s.cooldown,
        retries: 0,
        poll: Duration::from_millis(10),
        batch: 1024,
        clock_step: None,
    };
    let work = Work {
        sender: cfg,
        receiver: rx_cfg,
        source: Box::new(source),
        scan: vec![state.clone()],
        flow_source: None,
    };
    let Started {
        handles,
        events: ev_rx,
        recycle: recycle_tx,
    } = start_all(std::slice::from_mut(&mut pipeline), vec![work], &[32], &[])
        .expect("starting the scan");
    let mut events = vec![];
    loop {
        match ev_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(mut batch) => {
                events.extend_from_slice(&batch);
                batch.clear();
                let _ = recycle_tx.try_send(batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        assert!(t0.elapsed() < LIMIT, "the scan took over {LIMIT:?}");
    }
    let (drops, failure) = join_all(handles);
    if let Some(e) = failure {
        panic!("the scan failed: {e:#}");
    }
    Ran {
        events,
        drops,
        state,
        sender: pipeline.sender.clone(),
        receiver: pipeline.receiver.clone(),
        mem: stats.snapshot(),
        elapsed: t0.elapsed(),
    }
}

/// What a target's tries come to under the population's rule: per try, the terminal outcome
/// ('r' reply, 'e' error, 't' timeout), and duplicates and forgeries on the way.
fn truth(s: &Scan, t: IpAddr) -> (Vec<char>, u64, u64) {
    let (mut tries, mut dups, mut forged) = (vec![], 0, 0);
    for k in 0..=s.retries {
        match s.pop.fate(t, u32::from(k)) {
            Fate::Lost | Fate::Silent => tries.push('t'),
            Fate::Unreachable { .. } => {
                tries.push('e');
                break;
            }
            Fate::Reply {
                duplicated,
                forged: f,
                ..
            } => {
                tries.push('r');
                dups += u64::from(duplicated);
                forged += u64::from(f.is_some());
                break;
            }
        }
    }
    (tries, dups, forged)
}

fn check(s: &Scan) {
    let ran = run(s);
    let space = ran.state.space().clone();
    let mut got: HashMap<IpAddr, Vec<(u8, char)>> = HashMap::new();
    let mut dups: HashMap<IpAddr, u64> = HashMap::new();
    for e in &ran.events {
        let c = match e.outcome {
            Outcome::Reply { rtt_ns, from, .. } => {
                assert_eq!(from, e.target);
                assert!(rtt_ns >= s.pop.delay.as_nanos() as u64, "{e:?}");
                assert!(rtt_ns <= s.cooldown.as_nanos() as u64, "{e:?}");
                'r'
            }
            Outcome::Error {
                from, icmp_type, ..
            } => {
                assert_eq!(from, IpAddr::V4(s.pop.router_v4));
                assert_eq!(icmp_type, 3);
                // 8 bytes quoted: no stamp, so no send time and no probe number.
                assert_eq!((e.sent_ns, e.probe), (None, None), "{e:?}");
                'e'
            }
            Outcome::Timeout => 't',
            Outcome::Duplicate { .. } => {
                *dups.entry(e.target).or_default() += 1;
                continue;
            }
            other => panic!("unexpected {other:?}: {e:?}"),
        };
        got.entry(e.target).or_default().push((e.attempt, c));
    }
    let (mut want_dups, mut want_forged, mut probes) = (0, 0, 0);
    let mut listed_timeouts = 0;
    for i in 0..space.len() {
        let t = space.get(i).unwrap();
        let (tries, d, f) = truth(s, t);
        probes += tries.len() as u64;
        want_dups += d;
        want_forged += f;
        let silent = tries.iter().filter(|&&c| c == 't').count() as u64;
        let mut want: Vec<(u8, char)> = tries
            .iter()
            .enumerate()
            .map(|(k, &c)| (k as u8, c))
            .filter(|&(_, c)| s.report_silent || c != 't')
            .collect();
        listed_timeouts += if s.report_silent { silent } else { 0 };
        let mut g = got.remove(&t).unwrap_or_default();
        g.sort_unstable();
        want.sort_unstable();
        assert_eq!(g, want, "{t}");
        assert_eq!(dups.get(&t).copied().unwrap_or(0), d, "duplicates of {t}");
    }
    assert!(
        got.is_empty(),
        "events for targets outside the scan: {got:?}"
    );
    // The engine saw exactly one request per try; nothing was dropped but the forgeries.
    assert_eq!(ran.mem.requests, probes);
    assert_eq!(ran.sender.sent.load(Ordering::Relaxed), probes);
    assert_eq!(ran.mem.overflow, 0);
    assert_eq!(
        ran.drops,
        Drops {
            forged: want_forged,
            ..Drops::default()
        }
    );
    assert_eq!(want_dups, dups.values().sum::<u64>());
    // Timeouts: listed, or counted without a list; the same number either way.
    let silent: u64 = (0..space.len())
        .map(|i| {
            let t = space.get(i).unwrap();
            truth(s, t).0.iter().filter(|&&c| c == 't').count() as u64
        })
        .sum();
    assert_eq!(ran.state.silent(), silent);
    assert_eq!(ran.state.unlisted_timeouts() + listed_timeouts, silent);
    // Memory: one 4 KiB page holds a /20's bits.
    assert_eq!(ran.state.responders().pages(), 1);
    assert_eq!(ran.receiver.kernel_drops().lost(), 0);
    eprintln!(
        "{} probes, {} events, {} duplicates, {} forged, {:?}",
        probes,
        ran.events.len(),
        want_dups,
        want_forged,
        ran.elapsed
    );
}

fn population() -> Population {
    Population {
        dead: Select::Modulo {
            modulus: 11,
            residue: 3,
        },
        unreachable: Select::Modulo {
            modulus: 13,
            residue: 5,
        },
        loss: 0.25,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(3),
        duplicate: 0.1,
        forged: 0.1,
        repeat_after: Duration::from_millis(5),
        seed: 99,
        ..Population::default()
    }
}

#[test]
fn a_stateless_scan_finds_exactly_what_the_population_answers_try_by_try() {
    let s = Scan {
        cidr: "198.19.0.0/20",
        retries: 2,
        cooldown: Duration::from_millis(150),
        rate: 100_000.0,
        report_silent: true,
        pop: population(),
    };
    // The scenario exercises every kind of answer, or it proves little.
    let kinds: Vec<char> = (0..4096u32)
        .flat_map(|x| truth(&s, IpAddr::from([198, 19, (x >> 8) as u8, x as u8])).0)
        .collect();
    assert!(kinds.contains(&'r') && kinds.contains(&'e') && kinds.contains(&'t'));
    check(&s);
    // Forgeries of both kinds were in the mix.
    let mut kinds = [0u32; 2];
    for x in 0..4096u32 {
        let t = IpAddr::from([198, 19, (x >> 8) as u8, x as u8]);
        if let Fate::Reply {
            forged: Some(f), ..
        } = s.pop.fate(t, 0)
        {
            kinds[usize::from(f == Forgery::Stranger)] += 1;
        }
    }
    assert!(kinds[0] > 0 && kinds[1] > 0, "{kinds:?}");
}

#[test]
fn without_all_events_timeouts_are_counted_not_listed() {
    check(&Scan {
        cidr: "198.19.16.0/22",
        retries: 1,
        cooldown: Duration::from_millis(100),
        rate: 100_000.0,
        report_silent: false,
        pop: population(),
    });
}
