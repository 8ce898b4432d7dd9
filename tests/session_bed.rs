//! The `asdic-session` library (net-ping's `Session`) on the veth test bed: replies, timeouts
//! with retries counted at the router, the router's unreachable, time exceeded and (IPv6)
//! packet too big errors with their source, close with requests outstanding, reuse after
//! close, one session shared by several threads, and the `ping` example's output.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use asdic_session::{Options, PingError, Protocol, Session};
use asdic_tests::{Bed, require_bed};

const RTR4: &str = "198.18.0.2";
const RTR6: &str = "2001:db8:0:1::2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn opts(protocol: Protocol, timeout_ms: u64, retries: u8) -> Options {
    Options {
        protocol,
        timeout: Duration::from_millis(timeout_ms),
        retries,
        ..Options::default()
    }
}

/// 198.19.a.b for host index x (the bed's numbering).
fn host4(x: u32) -> IpAddr {
    IpAddr::from([198, 19, (x >> 8) as u8, x as u8])
}

/// 2001:db8:1::x for host index x.
fn host6(x: u32) -> IpAddr {
    IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, (x >> 16) as u16, x as u16])
}

/// The bed's dead hosts: index % 97 == 13 (outside the rejected block).
fn dead(k: u32) -> u32 {
    13 + 97 * k
}

/// Which engine a session of these tests opens.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Raw,
    Uring,
}

fn session(engine: Engine, o: Options) -> Session {
    match engine {
        Engine::Raw => Session::new(o),
        Engine::Uring => Session::with_engine(o, asdic_session::open_uring),
    }
    .unwrap_or_else(|e| panic!("a {engine:?} session in the bed: {e}"))
}

#[test]
fn replies_errors_and_timeouts_from_the_bed() {
    let Some(()) = require_bed() else { return };
    replies_errors_and_timeouts(Engine::Raw, "se1");
}

#[test]
fn a_session_over_io_uring_answers_as_the_raw_one() {
    let Some(()) = require_bed() else { return };
    replies_errors_and_timeouts(Engine::Uring, "seu");
}

fn replies_errors_and_timeouts(engine: Engine, id: &str) {
    let bed = Bed::up(id, &[]);
    bed.count_forwarded("sedead", "198.19.0.13/32");
    bed.in_scan_netns(move || {
        for (protocol, live, rejected, rtr) in [
            (Protocol::V4, host4(1), host4(77 << 8 | 5), ip(RTR4)),
            (Protocol::V6, host6(1), host6(77 << 8 | 5), ip(RTR6)),
        ] {
            let s = session(engine, opts(protocol, 1000, 0));
            // A reachable target.
            let p = s.ping_host(live).unwrap_or_else(|e| panic!("{live}: {e}"));
            assert_eq!(p.target, live);
            assert!(p.rcvd >= p.sent, "{p:?}");
            assert!(p.rtt < Duration::from_secs(1), "{p:?}");
            // Far replies with TTL 64 (Linux), one router on the way.
            assert_eq!(p.ttl, Some(63), "{p:?}");
            assert_eq!(p.attempt, 0);
            // The rejected block: admin-prohibited from the router (v4 code 13, v6 code 1).
            let code = if protocol == Protocol::V4 { 13 } else { 1 };
            match s.ping_host(rejected) {
                Err(PingError::DestinationUnreachable { source, code: c }) => {
                    assert_eq!((source, c), (rtr, code), "{rejected}");
                }
                other => panic!("{rejected}: {other:?}"),
            }
            let e = s.ping_host(rejected).unwrap_err();
            assert!(
                e.to_string()
                    .to_lowercase()
                    .contains("administratively prohibited"),
                "{e}"
            );
            s.close();
            // TTL 1: the router reports time exceeded, naming itself; target stays the target.
            let s = session(
                engine,
                Options {
                    ttl: 1,
                    ..opts(protocol, 1000, 0)
                },
            );
            match s.ping_host(live) {
                Err(PingError::TimeExceeded { source, code: 0 }) => assert_eq!(source, rtr),
                other => panic!("ttl 1 to {live}: {other:?}"),
            }
        }

        // A dead host, timeout 200 ms and 2 retries: three tries, then RequestTimedOut.
        for (protocol, target) in [(Protocol::V4, host4(13)), (Protocol::V6, host6(13))] {
            let s = session(engine, opts(protocol, 200, 2));
            let t0 = Instant::now();
            let e = s.ping_host(target).unwrap_err();
            let took = t0.elapsed();
            assert!(matches!(e, PingError::RequestTimedOut), "{target}: {e:?}");
            assert!(took >= Duration::from_millis(600), "{target}: {took:?}");
            assert!(took < Duration::from_millis(1500), "{target}: {took:?}");
        }
    });
    // The router forwarded exactly three echo requests to the dead IPv4 host.
    assert_eq!(bed.forwarded("sedead"), 3);
}

#[test]
fn close_cancels_outstanding_requests_and_the_session_is_reused() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("se2", &[]);
    bed.in_scan_netns(|| {
        let s = Arc::new(Session::new(opts(Protocol::V4, 10_000, 1)).unwrap());
        let (tx, rx) = mpsc::channel();
        let n = 40;
        for k in 0..n {
            let tx = tx.clone();
            s.ping_host_with(host4(dead(k)), move |r| tx.send(r).unwrap());
        }
        // One blocking request from another thread, too.
        let s2 = s.clone();
        let blocked = std::thread::spawn(move || s2.ping_host(host4(dead(n))));
        let t0 = Instant::now();
        while s.outstanding() < n as usize + 1 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(s.outstanding(), n as usize + 1);
        let t0 = Instant::now();
        s.close();
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(500), "close took {took:?}");
        let ended: Vec<_> = rx.try_iter().collect();
        assert_eq!(
            ended.len(),
            n as usize,
            "every callback ran before close returned"
        );
        for r in ended {
            let e = r.unwrap_err();
            assert!(matches!(e, PingError::Closed), "{e:?}");
            assert_eq!(e.to_string(), "Socket forcibly closed");
        }
        assert!(matches!(blocked.join().unwrap(), Err(PingError::Closed)));

        // Reuse: the next request opens a new socket.
        let p = s.ping_host(host4(1)).expect("reuse after close");
        assert!(p.rcvd >= p.sent);

        // One session, several threads, many requests at once (live and dead hosts).
        let s = Arc::new(Session::new(opts(Protocol::V6, 500, 0)).unwrap());
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..25u32)
                        .map(|i| {
                            let x = 1000 + t * 25 + i;
                            (x, s.ping_host(host6(x)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = 0;
        for h in threads {
            for (x, r) in h.join().unwrap() {
                seen += 1;
                match (x % 97 == 13, r) {
                    (false, Ok(p)) => assert_eq!(p.target, host6(x)),
                    (true, Err(PingError::RequestTimedOut)) => {}
                    (d, r) => panic!("{} (dead: {d}): {r:?}", host6(x)),
                }
            }
        }
        assert_eq!(seen, 100);
    });
}

/// The `ping` example of asdic-session, built in the same profile as this test.
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .join("examples/ping");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build --release -p asdic-session --example ping)",
        bin.display()
    );
    bin
}

#[test]
fn the_ping_example_prints_each_outcome() {
    let Some(()) = require_bed() else { return };
    let bin = example_bin();
    let bed = Bed::up("se3", &[]);
    let bin = bin.to_str().unwrap();
    let o = bed.exec(&[
        bin,
        "-w",
        "300",
        "-r",
        "1",
        "198.19.0.1",
        "198.19.0.13",
        "198.19.77.5",
        "2001:db8:1::1",
        "2001:db8:1::4d05",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line for {prefix} in:\n{out}"))
    };
    assert!(line("198.19.0.1: Alive (rtt ").contains("ttl 63, try 1"));
    assert!(line("2001:db8:1::1: Alive (rtt ").contains("ttl 63"));
    assert_eq!(line("198.19.0.13: "), "198.19.0.13: Request timed out");
    assert_eq!(
        line("198.19.77.5: "),
        "198.19.77.5: Destination unreachable from 198.18.0.2: Communication \
         Administratively Prohibited (code 13)"
    );
    assert_eq!(
        line("2001:db8:1::4d05: "),
        "2001:db8:1::4d05: Destination unreachable from 2001:db8:0:1::2: Communication with \
         destination administratively prohibited (code 1)"
    );
    assert_eq!(out.lines().count(), 5, "{out}");
    // TTL 1: time exceeded at the router; all alive: status 0.
    let o = bed.exec(&[bin, "-t", "1", "198.19.0.1"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.trim(),
        "198.19.0.1: Time exceeded at 198.18.0.2: Time to Live exceeded in Transit (code 0)"
    );
    let o = bed.exec(&[bin, "198.19.0.1", "2001:db8:1::2"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    // Bad input: status 2, nothing sent.
    let o = bed.exec(&[bin, "-t", "0", "198.19.0.1"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("ttl 0"));
}

#[test]
fn packet_too_big_names_the_router_and_the_mtu() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("se4", &[]);
    // A jumbo link from scan to the router, 1500 beyond it.
    for (role, dev) in [("scan", "s0"), ("rtr", "r0")] {
        let o = bed.exec_in(role, &["ip", "link", "set", dev, "mtu", "9000"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    bed.in_scan_netns(|| {
        let big = |protocol| Options {
            packet_size: 4000,
            ..opts(protocol, 1000, 0)
        };
        let s = Session::new(big(Protocol::V6)).unwrap();
        match s.ping_host(host6(1)) {
            Err(PingError::PacketTooBig { source, mtu }) => {
                assert_eq!((source, mtu), (ip(RTR6), 1500));
            }
            other => panic!("4000 bytes over a 1500 link: {other:?}"),
        }
        // Small requests pass.
        let small = Session::new(opts(Protocol::V6, 1000, 0)).unwrap();
        assert!(small.ping_host(host6(3)).is_ok());
        // IPv4 requests go without DF: the router fragments them, the reply comes back.
        let s4 = Session::new(big(Protocol::V4)).unwrap();
        let p = s4.ping_host(host4(1)).expect("fragmented IPv4 request");
        assert_eq!(p.target, host4(1));
    });
}

/// `asdic-session` under the blind spray of `tests/support/spray.py`: its identifier is the
/// session id (net-ping's `sessionId`), so only its keyed 16-bit sequence is unknown, and a
/// spray of every sequence names the probe. Such an error is unverified: never the probe's
/// answer, so a silent host times out instead of turning "unreachable".
#[test]
fn a_blind_spray_of_8_byte_quotes_does_not_answer_a_session_ping() {
    let Some(()) = require_bed() else { return };
    let bin = example_bin();
    let bed = Bed::up("se5", &[]);
    let spray = bed.spray("198.19.0.13", &["65536", "4", "4242"]);
    let o = bed.exec(&[
        bin.to_str().unwrap(),
        "-w",
        "3000",
        "-r",
        "0",
        "-i",
        "4242",
        "198.19.0.13",
    ]);
    let sent = spray.finish();
    assert!(sent >= 65_536, "the spray sent {sent} errors");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_eq!(out.trim(), "198.19.0.13: Request timed out");
}
