//! The responder set, the scan's passes in virtual time, and stateless matching of replies
//! and errors built as hosts and routers build them.

use super::*;
use crate::frame::{RxFrame, RxLayer};
use crate::matcher::Matcher;
use crate::matcher::tests::{error_about, reply_to};
use crate::permute::Cycle;
use crate::space::{AddrSet, SpaceSpec};
use crate::targets::TargetSpec;
use asdic_wire::payload::Stamp;
use asdic_wire::template::{Layer, ProbeFields, Template};
use asdic_wire::{Family, checksum};
use core::net::Ipv4Addr;
use std::collections::{HashMap, HashSet};

const KEY: Key = Key::new(0x1234, 0x5678);
const SESSION: u32 = 0xabcd_0001;
const US: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const MS: Duration = Duration::from_millis(1);

fn space(cidr: &str) -> Arc<Space> {
    Arc::new(
        Space::new(&SpaceSpec {
            family: Family::V4,
            targets: &[TargetSpec::parse(cidr).unwrap()],
            block: &AddrSet::default(),
            allow: None,
            v6_samples: None,
            seed: 1,
        })
        .unwrap(),
    )
}

fn state(cidr: &str, retries: u8, report: bool) -> Arc<ScanState> {
    Arc::new(ScanState::new(
        space(cidr),
        KEY,
        SESSION,
        retries,
        Duration::from_millis(500),
        report,
    ))
}

fn source(st: &Arc<ScanState>) -> ScanSource {
    let walk = Cycle::new(st.space().len(), 9)
        .unwrap()
        .shard(0, 1)
        .unwrap();
    ScanSource::new(st.clone(), walk, u64::MAX)
}

#[test]
fn the_responder_set_is_exact_and_allocates_pages_on_first_touch() {
    let r = Responders::new(1 << 20);
    assert_eq!(r.pages(), 0);
    assert!(!r.contains(5));
    assert!(r.insert(5));
    assert!(!r.insert(5), "a second insert is a duplicate");
    assert!(r.contains(5) && !r.contains(4) && !r.contains(6));
    assert_eq!(r.pages(), 1);
    // Another index of the same 32,768: no new page; one past it: a second.
    assert!(r.insert(32_767));
    assert_eq!(r.pages(), 1);
    assert!(r.insert(32_768));
    assert_eq!(r.pages(), 2);
    // Out of range: never in the set, never allocates.
    assert!(!r.insert(1 << 20));
    assert!(!r.contains(1 << 20));
    assert_eq!(r.pages(), 2);
    assert!(
        r.bytes() >= 2 * 4096 && r.bytes() < 3 * 4096,
        "{}",
        r.bytes()
    );
    // The bound: a bit per index, the directory besides.
    let all_v4 = Responders::bound(1 << 32);
    assert!(((512 << 20)..(516 << 20)).contains(&all_v4), "{all_v4}");
    assert!(Responders::bound(65_536) <= 2 * 4096 + 200);
    // Concurrent inserts of the same indices: each is first exactly once.
    let r = Arc::new(Responders::new(1 << 18));
    let firsts: u64 = (0..4)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || (0..1u64 << 18).filter(|&i| r.insert(i)).count() as u64)
        })
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(firsts, 1 << 18);
}

/// Runs a source in virtual time from `t0`, answering (setting the bit of) the targets
/// `answers` names at the attempt it names; returns every probe and every event.
fn run(
    src: &mut ScanSource,
    st: &ScanState,
    t0: Instant,
    answers: &HashMap<IpAddr, u8>,
) -> (Vec<ScanProbe>, Vec<Event>) {
    let (mut probes, mut events) = (vec![], vec![]);
    let mut now = t0;
    for _ in 0..100_000 {
        match src.next(now) {
            Next::Scan(p) => {
                if answers.get(&p.target) == Some(&p.attempt) {
                    assert!(st.responders().insert(p.index));
                    st.answered(p.attempt);
                }
                probes.push(p);
            }
            Next::NotYet => now += 10 * MS,
            Next::Done => {
                src.drain(&mut events);
                return (probes, events);
            }
            Next::Probe { .. } | Next::Try(_) => {
                panic!("a scan source hands out stateless probes")
            }
        }
        src.drain(&mut events);
    }
    panic!("the source never finished");
}

#[test]
fn passes_probe_the_silent_targets_again_and_report_every_timeout() {
    let st = state("198.19.0.0/24", 2, true);
    let mut src = source(&st);
    // .1-.9 answer the first try, .10-.19 the second, .20-.29 the third; the rest never.
    let answers: HashMap<IpAddr, u8> = (1..30u8)
        .map(|x| (IpAddr::from([198, 19, 0, x]), (x / 10).min(2)))
        .collect();
    let t0 = Instant::now();
    let (probes, events) = run(&mut src, &st, t0, &answers);
    let mut tries: HashMap<IpAddr, Vec<u8>> = HashMap::new();
    for p in &probes {
        tries.entry(p.target).or_default().push(p.attempt);
    }
    assert_eq!(tries.len(), 256);
    for (t, a) in &tries {
        let IpAddr::V4(v) = t else { unreachable!() };
        let x = v.octets()[3];
        let want: Vec<u8> = match answers.get(t) {
            Some(&k) => (0..=k).collect(),
            None => vec![0, 1, 2],
        };
        assert_eq!(a, &want, "{t} ({x})");
    }
    // Every unanswered try is one timeout event with its attempt and position.
    let mut timeouts: HashSet<(IpAddr, u8)> = HashSet::new();
    for e in &events {
        assert_eq!(e.outcome, Outcome::Timeout);
        assert_eq!(e.sent_ns, None);
        assert!(timeouts.insert((e.target, e.attempt)), "{e:?} twice");
    }
    let want: HashSet<(IpAddr, u8)> = probes
        .iter()
        .filter(|p| answers.get(&p.target) != Some(&p.attempt))
        .map(|p| (p.target, p.attempt))
        .collect();
    assert_eq!(timeouts, want);
    // Positions are the scan order's: the same for every try at a target.
    let pos: HashMap<IpAddr, u64> = probes.iter().map(|p| (p.target, p.position)).collect();
    assert!(events.iter().all(|e| Some(pos[&e.target]) == e.probe));
    assert!(probes.iter().all(|p| pos[&p.target] == p.position));
    // Counted as listed; the passes were a cooldown apart (3 cooldowns in all).
    assert_eq!(st.silent(), timeouts.len() as u64);
    assert_eq!(st.unlisted_timeouts(), 0);
    assert_eq!(st.closed(), 3);
}

#[test]
fn a_resumed_scan_probes_and_reports_what_the_uninterrupted_one_would() {
    let answers: HashMap<IpAddr, u8> = (1..30u8)
        .map(|x| (IpAddr::from([198, 19, 0, x]), (x / 10).min(2)))
        .collect();
    let st = state("198.19.0.0/24", 2, true);
    let (all, all_events) = run(&mut source(&st), &st, Instant::now(), &answers);
    let want: HashSet<(IpAddr, u8)> = all.iter().map(|p| (p.target, p.attempt)).collect();
    let timeouts: HashSet<(IpAddr, u8)> =
        all_events.iter().map(|e| (e.target, e.attempt)).collect();
    let position: HashMap<IpAddr, u64> = all.iter().map(|p| (p.target, p.position)).collect();
    assert_eq!(all.len(), 256 + 247 + 237);
    // Killed after `cut` probes (in pass 0, on a pass's edge, in pass 1, in pass 2, at the
    // very end), resumed where the sender was.
    for cut in [0, 1, 100, 255, 256, 300, 502, 503, 600, all.len()] {
        let before = &all[..cut];
        let at = before.last().map_or(Frontier::default(), |p| Frontier {
            attempt: p.attempt,
            position: p.position + 1,
        });
        let st2 = state("198.19.0.0/24", 2, true);
        let mut answered = HashSet::new();
        for p in before {
            if answers.get(&p.target) == Some(&p.attempt) {
                st2.responders()
                    .insert(st2.space().index_of(p.target).unwrap());
                answered.insert(p.target);
            }
        }
        let mut src = source(&st2);
        src.resume(at);
        assert_eq!(st2.frontier(), at);
        let (rest, events) = run(&mut src, &st2, Instant::now(), &answers);
        let mut got: HashSet<(IpAddr, u8)> = before.iter().map(|p| (p.target, p.attempt)).collect();
        for p in &rest {
            assert!(
                !answered.contains(&p.target),
                "cut {cut}: {p:?} answered already"
            );
            assert!(got.insert((p.target, p.attempt)), "cut {cut}: {p:?} twice");
        }
        assert_eq!(
            got, want,
            "cut {cut}: the union is the uninterrupted scan's probes"
        );
        // Its timeouts are the uninterrupted scan's: every one of the passes from `at` on,
        // and of the pass before them from `at`'s position on (the rest the killed run
        // reported as it went).
        let resumed: HashSet<(IpAddr, u8)> = events.iter().map(|e| (e.target, e.attempt)).collect();
        assert!(resumed.is_subset(&timeouts), "cut {cut}");
        for &(t, a) in &timeouts {
            let after = a >= at.attempt || (a + 1 == at.attempt && position[&t] >= at.position);
            if after {
                assert!(
                    resumed.contains(&(t, a)),
                    "cut {cut}: timeout {t} {a} missing"
                );
            }
        }
    }
}

#[test]
fn without_per_target_timeouts_they_are_counted_not_listed() {
    let st = state("198.19.0.0/24", 1, false);
    let mut src = source(&st);
    let answers: HashMap<IpAddr, u8> = (1..=100u8)
        .map(|x| (IpAddr::from([198, 19, 0, x]), u8::from(x > 50)))
        .collect();
    let (probes, events) = run(&mut src, &st, Instant::now(), &answers);
    assert!(events.is_empty(), "{events:?}");
    // 256 first tries, 50 answered; 206 second tries, 50 answered: 206 + 156 silent.
    assert_eq!(probes.len(), 256 + 206);
    assert_eq!(st.silent(), 206 + 156);
    assert_eq!(st.unlisted_timeouts(), 362);
}

#[test]
fn a_stop_mid_pass_cools_down_and_reports_both_attempts() {
    let st = state("198.19.0.0/24", 1, true);
    let mut src = source(&st);
    let t0 = Instant::now();
    // Pass 0 whole, nobody answers; then 100 probes of pass 1 and a stop.
    let mut now = t0;
    let mut sent = vec![];
    let mut events = vec![];
    while sent.len() < 356 {
        match src.next(now) {
            Next::Scan(p) => sent.push(p),
            Next::NotYet => now += 10 * MS,
            other => panic!("{other:?}"),
        }
    }
    src.drain(&mut events);
    assert_eq!(
        events.len(),
        100,
        "pass 1 reported the timeouts of its 100 targets"
    );
    assert!(src.stop(now, false));
    // No more probes; a cooldown of waiting, then the report, then done.
    assert_eq!(src.next(now), Next::NotYet);
    let mut later = now;
    let done = loop {
        match src.next(later) {
            Next::NotYet => later += 10 * MS,
            Next::Done => break later,
            Next::Scan(p) => panic!("probe after stop: {p:?}"),
            Next::Probe { .. } | Next::Try(_) => unreachable!(),
        }
    };
    assert!(done >= now + Duration::from_millis(500), "cooled down");
    src.drain(&mut events);
    let by: HashMap<u8, usize> = events.iter().fold(HashMap::new(), |mut m, e| {
        *m.entry(e.attempt).or_default() += 1;
        m
    });
    // Attempt 0: the 256 targets (100 reported by pass 1, 156 by the final walk);
    // attempt 1: the 100 pass 1 probed.
    assert_eq!(by[&0], 256);
    assert_eq!(by[&1], 100);
    assert_eq!(st.silent(), 356);
}

#[test]
fn an_abort_skips_the_cooldown() {
    let st = state("198.19.0.0/28", 0, false);
    let mut src = source(&st);
    let t0 = Instant::now();
    assert!(matches!(src.next(t0), Next::Scan(_)));
    assert!(src.stop(t0, true));
    assert_eq!(src.next(t0), Next::Done);
    assert_eq!(st.silent(), 1);
}

#[test]
fn failed_sends_are_events_and_never_retried() {
    let st = state("198.19.0.0/28", 1, true);
    let mut src = source(&st);
    let t0 = Instant::now();
    let Next::Scan(p) = src.next(t0) else {
        panic!()
    };
    src.failed(&p, 101, 42);
    let mut events = vec![];
    src.drain(&mut events);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Outcome::SendFailed { errno: 101 });
    assert_eq!((events[0].target, events[0].sent_ns), (p.target, Some(42)));
    let (probes, rest) = run(&mut src, &st, t0, &HashMap::new());
    assert!(
        probes
            .iter()
            .all(|q| q.target != p.target || q.attempt == 0)
    );
    assert!(rest.iter().all(|e| e.target != p.target));
    // 16 first tries, one refused; 15 second tries: 30 timeouts.
    assert_eq!(rest.len(), 30);
    assert_eq!(st.silent(), 30);
}

#[test]
fn closing_waits_for_every_receivers_batch() {
    let st = state("198.19.0.0/28", 1, false);
    let mut a = st.receiver();
    let b = st.receiver();
    a.begin();
    assert_eq!(a.closed(), 0);
    let marks = st.close(1);
    // `a` is inside a batch begun under the old bound; `b` has not finished one either.
    assert!(!marks.passed());
    a.end();
    assert!(!marks.passed());
    drop(b);
    assert!(marks.passed());
    a.begin();
    assert_eq!(a.closed(), 1);
}

// ---- stateless matching ----

fn probe(dst: IpAddr, attempt: u8, position: u64, t_send: u64) -> Vec<u8> {
    let t = Template::new(Family::V4, Layer::Icmp, 56).unwrap();
    let (ident, seq) = KEY.probe_ids(dst, attempt);
    let stamp = Stamp {
        session: SESSION,
        n: position,
        cookie: u32::from(attempt),
        t_send_ns: t_send,
    };
    let mut b = vec![0; t.len()];
    t.prepare(&mut b).unwrap();
    t.patch(&mut b, &ProbeFields::new(&KEY, dst, 64, ident, seq, stamp))
        .unwrap();
    b
}

/// An IPv4 packet carrying `icmp`, TTL 60.
fn ip(src: IpAddr, dst: IpAddr, icmp: &[u8]) -> Vec<u8> {
    crate::matcher::tests::ip(src, dst, 60, icmp)
}

/// A destination unreachable from `router` quoting the probe's IP header and its first
/// `quote` ICMP bytes (8: what RFC 792 requires and many routers send).
fn unreachable(router: IpAddr, dst: IpAddr, req: &[u8], quote: usize) -> Vec<u8> {
    let quoted = ip(US, dst, req);
    ip(
        router,
        US,
        &error_about(3, 1, &quoted[..20 + quote.min(req.len())]),
    )
}

fn feed(m: &mut Matcher, packet: &[u8], ts: u64) -> Vec<Event> {
    let mut evs = vec![];
    m.begin_batch();
    m.on_frame(
        &RxFrame {
            data: packet,
            layer: RxLayer::Ipv4,
            ts_ns: ts,
            truncated: false,
            realtime: false,
        },
        &mut |e| evs.push(e),
    );
    m.end_batch();
    evs
}

const T0: u64 = 1_700_000_000_000_000_000;

#[test]
fn replies_are_timed_without_state_duplicates_found_and_late_ones_stale() {
    let st = state("198.19.0.0/24", 1, false);
    let mut m = Matcher::stateless(&st);
    let a = IpAddr::from([198, 19, 0, 7]);
    let rep = ip(a, US, &reply_to(&probe(a, 0, 33, T0)));
    let evs = feed(&mut m, &rep, T0 + 2_000_000);
    assert_eq!(evs.len(), 1);
    let e = evs[0];
    assert_eq!(
        e.outcome,
        Outcome::Reply {
            rtt_ns: 2_000_000,
            ttl: Some(60),
            from: a
        }
    );
    assert_eq!(
        (e.probe, e.attempt, e.sent_ns, e.target),
        (Some(33), 0, Some(T0), a)
    );
    // The same reply again: a duplicate, timed too.
    let evs = feed(&mut m, &rep, T0 + 3_000_000);
    assert_eq!(evs[0].outcome, Outcome::Duplicate { rtt_ns: 3_000_000 });
    // Replayed after the cooldown (500 ms): stale, dropped, counted.
    assert!(feed(&mut m, &rep, T0 + 501_000_000).is_empty());
    assert_eq!(m.drops().stale, 1);
    // A reply to another target's first try, after the first pass closed: stale, and the
    // target stays silent (its timeout and retry belong to the pass now running).
    let b = IpAddr::from([198, 19, 0, 8]);
    let _ = st.close(1);
    assert!(
        feed(
            &mut m,
            &ip(b, US, &reply_to(&probe(b, 0, 34, T0))),
            T0 + 1_000
        )
        .is_empty()
    );
    assert_eq!(m.drops().stale, 2);
    assert!(!st.responders().contains(st.space().index_of(b).unwrap()));
    // Its second try's reply is the answer.
    let evs = feed(
        &mut m,
        &ip(b, US, &reply_to(&probe(b, 1, 34, T0))),
        T0 + 1_000,
    );
    assert!(matches!(evs[0].outcome, Outcome::Reply { .. }), "{evs:?}");
    assert_eq!(evs[0].attempt, 1);
    assert_eq!(
        st.silent(),
        0,
        "closed attempt 0: 0 probed by the source here"
    );
}

#[test]
fn forged_and_foreign_replies_are_rejected() {
    let st = state("198.19.0.0/24", 1, false);
    let mut m = Matcher::stateless(&st);
    let a = IpAddr::from([198, 19, 0, 9]);
    let req = probe(a, 0, 1, T0);
    // From another address than the probed one: the payload MAC covers the target.
    let other = IpAddr::from([198, 19, 0, 10]);
    assert!(feed(&mut m, &ip(other, US, &reply_to(&req)), T0 + 1).is_empty());
    // A try the run never makes (retries 1: attempts 0 and 1), MAC'd as if it did.
    let evs = feed(&mut m, &ip(a, US, &reply_to(&probe(a, 2, 1, T0))), T0 + 1);
    assert!(evs.is_empty());
    // One bit of the MAC flipped.
    let mut bad = reply_to(&req);
    bad[8 + 24] ^= 1;
    let c = checksum::checksum(&{
        let mut z = bad.clone();
        z[2..4].fill(0);
        z
    });
    bad[2..4].copy_from_slice(&c.to_be_bytes());
    assert!(feed(&mut m, &ip(a, US, &bad), T0 + 1).is_empty());
    assert_eq!(m.drops().forged, 3);
    // An address outside the scan, with identifiers and a MAC of its own: never probed.
    let out = IpAddr::from([198, 19, 1, 1]);
    assert!(
        feed(
            &mut m,
            &ip(out, US, &reply_to(&probe(out, 0, 1, T0))),
            T0 + 1
        )
        .is_empty()
    );
    assert_eq!(m.drops().forged, 4);
    assert_eq!(st.responders().pages(), 0, "nothing was recorded");
}

#[test]
fn errors_are_validated_by_the_quoted_identifiers_alone_when_that_is_all_there_is() {
    let st = state("198.19.0.0/24", 2, false);
    let mut m = Matcher::stateless(&st);
    let router = IpAddr::from([198, 18, 1, 2]);
    let a = IpAddr::from([198, 19, 0, 20]);
    // A router quoting 8 bytes of the probe's second try: valid, attempt known, no RTT.
    let evs = feed(
        &mut m,
        &unreachable(router, a, &probe(a, 1, 5, T0), 8),
        T0 + 9,
    );
    assert_eq!(evs.len(), 1, "{:?}", m.drops());
    let e = evs[0];
    assert_eq!(
        (e.target, e.attempt, e.sent_ns, e.probe),
        (a, 1, None, None)
    );
    assert!(matches!(
        e.outcome,
        Outcome::Error {
            icmp_type: 3,
            code: 1,
            from,
            ..
        } if from == router
    ));
    // A whole quote: timed, numbered.
    let b = IpAddr::from([198, 19, 0, 21]);
    let evs = feed(
        &mut m,
        &unreachable(router, b, &probe(b, 0, 6, T0), 64),
        T0 + 9,
    );
    assert_eq!((evs[0].probe, evs[0].sent_ns), (Some(6), Some(T0)));
    assert!(matches!(evs[0].outcome, Outcome::Error { rtt_ns: 9, .. }));
    // Quoting a probe never sent: another target's identifiers, or made-up ones.
    let c = IpAddr::from([198, 19, 0, 22]);
    let mut never = probe(b, 0, 7, T0);
    never[4..8].copy_from_slice(&[0x55, 0x55, 0xaa, 0xaa]);
    for (dst, req) in [(c, probe(b, 0, 7, T0)), (c, never.clone()), (b, never)] {
        assert!(feed(&mut m, &unreachable(router, dst, &req, 8), T0 + 9).is_empty());
    }
    assert_eq!(m.drops().unmatched_errors, 3);
    assert!(!st.responders().contains(st.space().index_of(c).unwrap()));
}

#[test]
fn the_memory_bounds_the_readme_states() {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    // All of IPv4 outside the default blocklist; an IPv6 hitlist of 100 M; a /16.
    let all_v4 = mib(Responders::bound(3_702_257_664));
    assert!((443.0..444.0).contains(&all_v4), "{all_v4}");
    let hitlist = mib(Responders::bound(100_000_000));
    assert!((11.5..12.0).contains(&hitlist), "{hitlist}");
    let slash16 = Responders::bound(65_536);
    assert!((8_200..8_300).contains(&slash16), "{slash16}");
}
