//! Tests of the in-flight table: against a simple sequential model, and under threads.

use super::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn info(n: u64, t_send_ns: u64) -> ProbeInfo {
    ProbeInfo {
        n,
        target: IpAddr::from([198, 19, (n >> 8) as u8, n as u8]),
        cookie: n as u32,
        t_send_ns,
        attempt: 0,
        class: 0,
    }
}

#[test]
fn lifecycle() {
    let t = InflightTable::new(4);
    assert_eq!(t.capacity(), 4);
    for n in 0..4 {
        assert!(t.claim(&info(n, 100 + n)));
    }
    assert!(
        !t.claim(&info(4, 200)),
        "full until the reaper retires probe 0"
    );
    assert!(!t.claim(&info(7, 200)), "out of order");
    assert_eq!(t.resolve(0, false), Resolution::First);
    assert_eq!(t.resolve(0, false), Resolution::Duplicate);
    assert_eq!(t.resolve(9, false), Resolution::Unknown);
    let p = t
        .resolve_partial(1, 16, IpAddr::from([198, 19, 0, 1]))
        .unwrap();
    assert_eq!(p, info(1, 101));
    assert!(
        t.resolve_partial(2, 16, IpAddr::from([198, 19, 0, 9]))
            .is_none(),
        "wrong target"
    );
    assert!(t.send_failed(3, libc_enetunreach()));
    let mut got = vec![];
    // Deadline 101: probe 2 (sent at 102) is not expired, so the walk stops there.
    assert_eq!(t.reap(101, |p, r| got.push((p.n, r))), 2);
    assert!(got.is_empty());
    assert_eq!(t.reap(102, |p, r| got.push((p.n, r))), 2);
    assert_eq!(
        got,
        vec![
            (2, Retired::TimedOut),
            (3, Retired::SendFailed(libc_enetunreach()))
        ]
    );
    assert_eq!(t.resolve(2, false), Resolution::Late);
    assert_eq!(t.in_flight(), 0);
    // A failed send's errno never reads back as its attempt or class.
    let retry = ProbeInfo {
        attempt: 2,
        class: 1,
        ..info(5, 400)
    };
    assert!(t.claim(&info(4, 300)) && t.claim(&retry));
    assert!(t.send_failed(5, libc_enetunreach()));
    let mut failed = vec![];
    t.reap(1_000, |p, r| failed.push((p, r)));
    assert_eq!(
        failed,
        vec![
            (info(4, 300), Retired::TimedOut),
            (retry, Retired::SendFailed(libc_enetunreach()))
        ]
    );
    assert_eq!(
        t.resolve(0, false),
        Resolution::Stale,
        "slot 0 now holds probe 4"
    );
    assert_eq!(t.info(0), None);
}

fn libc_enetunreach() -> i32 {
    101
}

#[test]
fn partial_matching_respects_bits() {
    let t = InflightTable::new(1 << 17);
    for n in 0..70_000 {
        assert!(t.claim(&info(n, n)));
    }
    // 16 quoted bits cannot name a slot of a 2^17 table.
    assert!(t.resolve_partial(5, 16, info(5, 0).target).is_none());
    let p = t
        .resolve_partial(65_540, 32, info(65_540, 0).target)
        .unwrap();
    assert_eq!(p.n, 65_540);
}

/// A sequential reference model: what each operation must return.
#[derive(Default)]
struct Model {
    state: HashMap<u64, &'static str>,
    head: u64,
    tail: u64,
}

#[test]
fn matches_reference_model() {
    // A small deterministic xorshift drives a random mix of operations.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let cap = 16u64;
    let t = InflightTable::new(cap as usize);
    let mut m = Model::default();
    let mut now = 0u64;
    for _ in 0..20_000 {
        now += 1;
        match rnd() % 4 {
            0 => {
                let ok = t.claim(&info(m.head, now));
                assert_eq!(ok, m.head < m.tail + cap);
                if ok {
                    m.state.insert(m.head, "pending");
                    m.head += 1;
                }
            }
            1 if m.head > 0 => {
                let n = rnd() % (m.head + 2);
                let r = t.resolve(n, false);
                let expect = if n >= m.head {
                    Resolution::Unknown
                } else if n + cap < m.head && n < m.tail {
                    // Slot reused by a later probe only if that later probe was claimed.
                    if m.head > n + cap {
                        Resolution::Stale
                    } else {
                        Resolution::Unknown
                    }
                } else {
                    match m.state[&n] {
                        "pending" => Resolution::First,
                        "answered" => Resolution::Duplicate,
                        _ => Resolution::Late,
                    }
                };
                let expect = if n < m.head && n + cap < m.head {
                    Resolution::Stale
                } else {
                    expect
                };
                assert_eq!(r, expect, "resolve {n} head {} tail {}", m.head, m.tail);
                if r == Resolution::First {
                    m.state.insert(n, "answered");
                }
            }
            2 => {
                let deadline = now.saturating_sub(rnd() % 40);
                let mut reaped = vec![];
                t.reap(deadline, |p, r| reaped.push((p.n, r)));
                let mut expect = vec![];
                while m.tail < m.head {
                    let n = m.tail;
                    match m.state[&n] {
                        "answered" => {}
                        "pending" if t_send_of(&t, n) <= deadline => {
                            expect.push((n, Retired::TimedOut));
                            m.state.insert(n, "timed out");
                        }
                        _ => break,
                    }
                    m.tail += 1;
                }
                assert_eq!(reaped, expect);
                assert_eq!(t.retired(), m.tail);
            }
            _ => {}
        }
    }
}

fn t_send_of(t: &InflightTable, n: u64) -> u64 {
    t.info(n).map_or(0, |p| p.t_send_ns)
}

/// One sender, two resolvers racing on the same probes (replies and duplicates), one reaper:
/// every probe must end in exactly one terminal outcome.
#[test]
fn threads_hammering_agree() {
    const N: u64 = 200_000;
    let t = Arc::new(InflightTable::new(1024));
    let done = Arc::new(AtomicBool::new(false));
    let firsts: Vec<_> = (0..2)
        .map(|k| {
            let t = t.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut mine = vec![];
                let (mut dups, mut lates) = (0u64, 0u64);
                let mut n = 0u64;
                while !done.load(Ordering::Acquire) || n < t.claimed() {
                    let head = t.claimed();
                    if n >= head {
                        std::hint::spin_loop();
                        continue;
                    }
                    // Answer every probe but those ≡ 3 mod 7, alternating how.
                    if n % 7 != 3 {
                        let r = if (n + k).is_multiple_of(2) {
                            t.resolve(n, false)
                        } else {
                            let p = t.resolve_partial(n & 0xffff_ffff, 32, info(n, 0).target);
                            if p.is_some() {
                                Resolution::First
                            } else {
                                t.resolve(n, false)
                            }
                        };
                        match r {
                            Resolution::First => mine.push(n),
                            Resolution::Duplicate => dups += 1,
                            Resolution::Late | Resolution::Stale => lates += 1,
                            Resolution::Unknown => panic!("probe {n} unknown"),
                        }
                    }
                    n += 1;
                }
                (mine, dups, lates)
            })
        })
        .collect();
    let reaper = {
        let t = t.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut timeouts = vec![];
            loop {
                let finished = done.load(Ordering::Acquire);
                // Expire probes older than 512 "ticks" of the probe clock (t_send = n).
                let deadline = t.claimed().saturating_sub(512);
                let deadline = if finished { u64::MAX } else { deadline };
                t.reap(deadline, |p, r| {
                    assert_eq!(r, Retired::TimedOut);
                    timeouts.push(p.n);
                });
                if finished && t.retired() == N {
                    return timeouts;
                }
                std::thread::yield_now();
            }
        })
    };
    for n in 0..N {
        while !t.claim(&info(n, n)) {
            std::thread::yield_now();
        }
    }
    done.store(true, Ordering::Release);
    let mut outcome = vec![0u8; N as usize];
    let mut total_dups = 0;
    for h in firsts {
        let (mine, dups, _) = h.join().unwrap();
        total_dups += dups;
        for n in mine {
            outcome[n as usize] += 1;
        }
    }
    for n in reaper.join().unwrap() {
        outcome[n as usize] += 1;
    }
    assert!(
        outcome.iter().all(|&c| c == 1),
        "every probe exactly one terminal outcome"
    );
    // Each answered probe was answered by both threads: one won, the other saw a duplicate
    // (or, if the reaper won first, both saw it late).
    assert!(total_dups <= N);
}

#[test]
fn attempt_and_class_come_back_with_the_probe() {
    let t = InflightTable::new(4);
    let mut p = info(0, 10);
    p.attempt = 2;
    p.class = 7;
    assert!(t.claim(&p));
    assert_eq!(t.info(0), Some(p));
    let mut reaped = vec![];
    t.reap(u64::MAX, |q, _| reaped.push((q.attempt, q.class)));
    assert_eq!(reaped, [(2, 7)]);
}

#[test]
fn a_schedule_that_never_reaches_the_rate_sizes_the_table() {
    let s = std::time::Duration::from_secs(1);
    // 1 M probes/s for 1 s waits: 2.2 M slots by the rate alone.
    assert_eq!(slots_for(1e6, s), 2_200_000);
    // 25 targets with at most 2 probes out each: 50 in flight, the 1,024 floor.
    assert_eq!(slots_for_at_most(1e6, s, 50), 1024);
    // 100,000 in flight by the schedule: twice that.
    assert_eq!(slots_for_at_most(1e6, s, 100_000), 200_000);
    // A rate below what the schedule allows: the rate decides.
    assert_eq!(slots_for_at_most(1000.0, s, 1 << 30), 2200);
    assert_eq!(slots_for_at_most(1e6, s, u64::MAX), 2_200_000);
}

#[test]
fn a_kernel_send_stamp_times_its_probe_for_the_reaper_and_readers() {
    let t = InflightTable::new(4);
    assert!(!t.stamp_sent(0, 500), "nothing claimed yet");
    for n in 0..3 {
        assert!(t.claim(&info(n, 100)));
    }
    assert!(t.stamp_sent(1, 700));
    assert!(!t.stamp_sent(5, 700), "a later lap's tag");
    assert_eq!(t.wire_sent(0), None);
    assert_eq!(t.wire_sent(1), Some(700));
    assert_eq!(t.info(1).unwrap().t_send_ns, 700);
    assert_eq!(t.info(0).unwrap().t_send_ns, 100, "no stamp: the sender's");
    // Deadline 600: probe 0 (sent at 100) expires; probe 1 left at 700, so it waits and the
    // walk stops there.
    let mut got = vec![];
    t.reap(600, |p, r| got.push((p.n, p.t_send_ns, r)));
    assert_eq!(got, [(0, 100, Retired::TimedOut)]);
    t.reap(700, |p, r| got.push((p.n, p.t_send_ns, r)));
    assert_eq!(
        got[1..],
        [(1, 700, Retired::TimedOut), (2, 100, Retired::TimedOut)]
    );
    // A new lap starts without its predecessor's stamp.
    assert!(t.claim(&info(3, 800)));
    assert!(t.claim(&info(4, 800)));
    assert!(t.claim(&info(5, 800)));
    assert_eq!(t.wire_sent(5), None);
    assert_eq!(t.info(5).unwrap().t_send_ns, 800);
}
