//! The session against a test engine: a "network" that answers each echo request the way a
//! test says (reply, silence, or an ICMP error quoting the real request, MAC and all), in
//! the byte layouts raw sockets deliver.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use asdic_engine::{RxCaps, RxFrame, RxLayer, SendError, TxBatch, TxCaps, stamp_ns};
use asdic_wire::{checksum, ipv4, ipv6};

use super::*;

const ME4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RTR4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

fn me6() -> Ipv6Addr {
    "2001:db8:0:1::1".parse().unwrap()
}

fn rtr6() -> IpAddr {
    "2001:db8:0:1::2".parse().unwrap()
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 0, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last))
}

/// What the test network does with an echo request.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// An echo reply.
    Reply,
    /// Nothing.
    Drop,
    /// An ICMP error of this type, code and rest-of-header word from `from`, quoting the
    /// whole request (as Linux routers do) or only its first 8 ICMP bytes (RFC 792's least).
    Error {
        from: IpAddr,
        icmp_type: u8,
        code: u8,
        rest: u32,
        whole: bool,
    },
    /// As `Error`, with one bit of the quoted MAC flipped.
    ForgedError { from: IpAddr },
    /// An ICMPv6 Redirect to `gateway`, quoting the request in a Redirected Header option.
    Redirect6 { from: IpAddr, gateway: Ipv6Addr },
    /// The local stack refuses to send: EHOSTUNREACH.
    Unroutable,
}

type Decide = dyn Fn(IpAddr, usize) -> Fate + Send + Sync;

/// The test network: decides fates, records requests, counts engine openings.
struct Net {
    decide: Box<Decide>,
    /// Every request sent: target and ICMP bytes.
    sent: Mutex<Vec<(IpAddr, Vec<u8>)>>,
    opens: AtomicUsize,
    /// Makes the next `recv` fail.
    fail_rx: AtomicBool,
    /// Makes the engine claim Ethernet frames.
    ethernet: bool,
}

impl Net {
    fn new(decide: impl Fn(IpAddr, usize) -> Fate + Send + Sync + 'static) -> Arc<Net> {
        Arc::new(Net {
            decide: Box::new(decide),
            sent: Mutex::new(Vec::new()),
            opens: AtomicUsize::new(0),
            fail_rx: AtomicBool::new(false),
            ethernet: false,
        })
    }

    fn sent_to(&self, target: IpAddr) -> Vec<Vec<u8>> {
        lock(&self.sent)
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

struct OwnedFrame {
    data: Vec<u8>,
    /// The ICMPv6 source, or `None` for an IPv4 packet.
    src6: Option<Ipv6Addr>,
    ts_ns: u64,
}

struct TestTx {
    net: Arc<Net>,
    out: mpsc::Sender<OwnedFrame>,
}

struct TestRx {
    net: Arc<Net>,
    frames: mpsc::Receiver<OwnedFrame>,
}

fn open_test(net: &Arc<Net>) -> impl Fn(&Options) -> Result<EngineHalves, EngineError> + use<> {
    let net = net.clone();
    move |_o| {
        net.opens.fetch_add(1, Ordering::SeqCst);
        let (out, frames) = mpsc::channel();
        let tx = TestTx {
            net: net.clone(),
            out,
        };
        let rx = TestRx {
            net: net.clone(),
            frames,
        };
        Ok((Box::new(tx), Box::new(rx)))
    }
}

fn icmp_checksum(m: &mut [u8]) {
    m[2..4].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; ipv4::HEADER_LEN];
    ipv4::Repr {
        src,
        dst,
        protocol: ipv4::PROTO_ICMP,
        payload_len: payload.len(),
        ttl,
        ident: 7,
    }
    .emit(&mut b)
    .unwrap();
    b.extend_from_slice(payload);
    b
}

fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, hops: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; ipv6::HEADER_LEN];
    ipv6::Repr {
        src,
        dst,
        next_header: ipv6::NEXT_ICMPV6,
        payload_len: payload.len(),
        hop_limit: hops,
    }
    .emit(&mut b)
    .unwrap();
    b.extend_from_slice(payload);
    b
}

/// The frame the network sends back for request `req` to `dst`, as a raw socket shows it.
fn answer(fate: Fate, dst: IpAddr, req: &[u8]) -> Option<OwnedFrame> {
    let ts_ns = stamp_ns();
    let (data, src6) = match (fate, dst) {
        (Fate::Reply, IpAddr::V4(d)) => {
            let mut m = req.to_vec();
            m[0] = 0;
            icmp_checksum(&mut m);
            (ipv4_packet(d, ME4, 61, &m), None)
        }
        (Fate::Reply, IpAddr::V6(d)) => {
            let mut m = req.to_vec();
            m[0] = 129;
            (m, Some(d))
        }
        (Fate::Drop | Fate::Unroutable, _) => return None,
        (
            Fate::Error {
                from,
                icmp_type,
                code,
                rest,
                whole,
            },
            _,
        ) => error_frame(from, dst, icmp_type, code, rest, req, whole, false),
        (Fate::ForgedError { from }, _) => {
            let t = if from.is_ipv4() { 11 } else { 3 };
            error_frame(from, dst, t, 0, 0, req, true, true)
        }
        (Fate::Redirect6 { from, gateway }, IpAddr::V6(d)) => {
            let inner = ipv6_packet(me6(), d, 63, req);
            let mut m = vec![137, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&gateway.octets());
            m.extend_from_slice(&d.octets());
            let padded = inner.len().div_ceil(8) * 8;
            m.extend_from_slice(&[4, (1 + padded / 8) as u8, 0, 0, 0, 0, 0, 0]);
            m.extend_from_slice(&inner);
            m.resize(m.len() + padded - inner.len(), 0);
            let IpAddr::V6(from) = from else { return None };
            (m, Some(from))
        }
        (Fate::Redirect6 { .. }, IpAddr::V4(_)) => return None,
    };
    Some(OwnedFrame { data, src6, ts_ns })
}

#[expect(
    clippy::too_many_arguments,
    reason = "one test helper, named fields at call sites"
)]
fn error_frame(
    from: IpAddr,
    dst: IpAddr,
    icmp_type: u8,
    code: u8,
    rest: u32,
    req: &[u8],
    whole: bool,
    forge: bool,
) -> (Vec<u8>, Option<Ipv6Addr>) {
    let mut req = req.to_vec();
    if forge {
        // The MAC is the last 8 bytes of the 32-byte stamp, after the 8-byte ICMP header.
        req[8 + 31] ^= 1;
    }
    let quoted = if whole { &req[..] } else { &req[..8] };
    let mut m = vec![icmp_type, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    match (from, dst) {
        (IpAddr::V4(f), IpAddr::V4(d)) => {
            m.extend_from_slice(&ipv4_packet(ME4, d, 1, quoted));
            icmp_checksum(&mut m);
            (ipv4_packet(f, ME4, 64, &m), None)
        }
        (IpAddr::V6(f), IpAddr::V6(d)) => {
            // The quoted IPv6 header states the original payload length, as a real one does.
            let mut inner = ipv6_packet(me6(), d, 1, &req);
            inner.truncate(ipv6::HEADER_LEN + quoted.len());
            m.extend_from_slice(&inner);
            (m, Some(f))
        }
        _ => panic!("error from another family"),
    }
}

impl Tx for TestTx {
    fn caps(&self) -> TxCaps {
        TxCaps {
            engine: "test",
            layer: if self.net.ethernet {
                TxLayer::Ethernet {
                    src_mac: [0; 6],
                    dst_mac: [0; 6],
                    src_ip: IpAddr::V4(ME4),
                }
            } else {
                TxLayer::Icmp
            },
            max_packet: 65_515,
            ttl_per_socket: true,
            kernel_stamps: false,
            serial_send: false,
        }
    }

    fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
        let mut sent = 0;
        for i in from..batch.len() {
            let (bytes, dst) = batch.packet(i).unwrap();
            let tries = {
                let mut log = lock(&self.net.sent);
                log.push((dst, bytes.to_vec()));
                log.iter().filter(|(t, _)| *t == dst).count()
            };
            let fate = (self.net.decide)(dst, tries);
            if let Fate::Unroutable = fate {
                return Err(SendError::Packet {
                    sent,
                    error: std::io::Error::from_raw_os_error(113), // EHOSTUNREACH
                });
            }
            if let Some(f) = answer(fate, dst, bytes) {
                let _ = self.out.send(f);
            }
            sent += 1;
        }
        Ok(sent)
    }
}

impl Rx for TestRx {
    fn caps(&self) -> RxCaps {
        RxCaps {
            engine: "test",
            stamp: asdic_engine::RxStamp::UserBatch,
        }
    }

    fn recv(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, EngineError> {
        if self.net.fail_rx.swap(false, Ordering::SeqCst) {
            return Err(EngineError::Io {
                engine: "test",
                what: "recvmmsg",
                source: std::io::Error::from_raw_os_error(100), // ENETDOWN
            });
        }
        let mut n = 0;
        let mut next = self.frames.recv_timeout(timeout).ok();
        while let Some(f) = next {
            let layer = match f.src6 {
                Some(src) => RxLayer::Icmpv6 {
                    src,
                    hop_limit: Some(61),
                },
                None => RxLayer::Ipv4,
            };
            on_frame(RxFrame {
                data: &f.data,
                layer,
                ts_ns: f.ts_ns,
                truncated: false,
                realtime: false,
            });
            n += 1;
            next = self.frames.try_recv().ok();
        }
        Ok(n)
    }
}

fn options(protocol: Protocol, timeout_ms: u64, retries: u8) -> Options {
    Options {
        protocol,
        timeout: Duration::from_millis(timeout_ms),
        retries,
        session_id: 0x4242,
        ..Options::default()
    }
}

fn session(net: &Arc<Net>, o: Options) -> Session {
    Session::with_engine(o, open_test(net)).unwrap()
}

fn ident_seq(req: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([req[4], req[5]]),
        u16::from_be_bytes([req[6], req[7]]),
    )
}

#[test]
fn session_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Session>();
    check::<Pong>();
    check::<PingError>();
}

#[test]
fn replies_complete_with_times_v4_and_v6() {
    for (protocol, target) in [(Protocol::V4, v4(1)), (Protocol::V6, v6(1))] {
        let net = Net::new(|_, _| Fate::Reply);
        let s = session(&net, options(protocol, 1000, 1));
        let before = SystemTime::now();
        let p = s.ping_host(target).unwrap();
        assert_eq!((p.target, p.attempt, p.ttl), (target, 0, Some(61)));
        assert!(p.sent >= before - Duration::from_millis(1), "{p:?}");
        assert!(p.rcvd >= p.sent, "{p:?}");
        assert_eq!(p.rcvd.duration_since(p.sent).unwrap(), p.rtt);
        let p2 = s.ping_host(target).unwrap();
        let reqs = net.sent_to(target);
        assert_eq!(reqs.len(), 2);
        // net-ping's packetSize 16 is raised to 40 ICMP bytes; the identifier is session_id,
        // each try its own sequence number.
        assert_eq!(reqs[0].len(), 40);
        assert_eq!(reqs[0][0], if protocol == Protocol::V4 { 8 } else { 128 });
        // Sequences are a keyed permutation of the try number: distinct, not guessable.
        let (a, b) = (ident_seq(&reqs[0]), ident_seq(&reqs[1]));
        assert_eq!((a.0, b.0), (0x4242, 0x4242));
        assert_ne!(a.1, b.1);
        assert!(p2.sent >= p.rcvd);
        assert_eq!(s.outstanding(), 0);
    }
}

#[test]
fn packet_size_and_ttl_reach_the_engine() {
    let net = Net::new(|_, _| Fate::Reply);
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let open = open_test(&net);
    let o = Options {
        packet_size: 1000,
        ttl: 7,
        ..options(Protocol::V4, 500, 0)
    };
    let s = Session::with_engine(o, move |o: &Options| {
        *lock(&seen2) = Some((o.ttl, o.effective_packet_size()));
        open(o)
    })
    .unwrap();
    s.ping_host(v4(2)).unwrap();
    assert_eq!(net.sent_to(v4(2))[0].len(), 1000);
    assert_eq!(*lock(&seen), Some((7, 1000)));
    // Bad options never open anything.
    let bad = Options {
        ttl: 0,
        ..Options::default()
    };
    assert!(matches!(
        Session::with_engine(bad, open_test(&net)),
        Err(Error::Options(OptionsError::Ttl))
    ));
    assert_eq!(net.opens.load(Ordering::SeqCst), 1);
}

#[test]
fn silent_target_times_out_after_every_try() {
    let net = Net::new(|_, _| Fate::Drop);
    let s = session(&net, options(Protocol::V4, 40, 2));
    let t0 = Instant::now();
    let e = s.ping_host(v4(13)).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, PingError::RequestTimedOut), "{e:?}");
    assert!(took >= Duration::from_millis(120), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let reqs = net.sent_to(v4(13));
    assert_eq!(reqs.len(), 3, "one try and two retries");
    let mut seqs: Vec<u16> = reqs.iter().map(|r| ident_seq(r).1).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 3, "each try its own sequence");
    assert_eq!(s.outstanding(), 0);
}

#[test]
fn a_retry_can_be_answered() {
    // The first try to each target is lost, the second answered.
    let net = Net::new(|_, tries| if tries == 1 { Fate::Drop } else { Fate::Reply });
    let s = session(&net, options(Protocol::V6, 30, 1));
    let t0 = Instant::now();
    let p = s.ping_host(v6(5)).unwrap();
    assert_eq!(p.attempt, 1);
    assert!(t0.elapsed() >= Duration::from_millis(30));
    // `sent` is the first try's time: the wait for it is part of the request.
    assert!(p.rcvd.duration_since(p.sent).unwrap() >= Duration::from_millis(30));
    assert!(p.rtt < Duration::from_millis(30), "{p:?}");
}

fn err(from: IpAddr, icmp_type: u8, code: u8, rest: u32) -> Fate {
    Fate::Error {
        from,
        icmp_type,
        code,
        rest,
        whole: true,
    }
}

/// As [`err`], quoting only the first 8 ICMP bytes of the request.
fn short_err(from: IpAddr, icmp_type: u8, code: u8) -> Fate {
    Fate::Error {
        from,
        icmp_type,
        code,
        rest: 0,
        whole: false,
    }
}

#[test]
fn every_icmpv4_error_maps_to_its_variant() {
    let gw = Ipv4Addr::new(198, 18, 0, 9);
    let net = Net::new(move |t, _| match t {
        IpAddr::V4(a) => match a.octets()[3] {
            1 => err(RTR4, 3, 13, 0),
            2 => short_err(RTR4, 3, 1),
            3 => err(RTR4, 4, 0, 0),
            4 => err(RTR4, 5, 1, u32::from(gw)),
            5 => err(RTR4, 11, 0, 0),
            6 => err(RTR4, 12, 0, 20 << 24),
            7 => short_err(RTR4, 11, 1),
            _ => Fate::Drop,
        },
        IpAddr::V6(_) => Fate::Drop,
    });
    let s = session(&net, options(Protocol::V4, 300, 0));
    let e = |last| s.ping_host(v4(last)).unwrap_err();
    assert!(matches!(
        e(1),
        PingError::DestinationUnreachable {
            source: RTR4,
            code: 13
        }
    ));
    // A quote of 8 ICMP bytes holds no MAC, and with the session's fixed identifier only the
    // 16-bit sequence is unknown to a blind forger: not taken, the request times out.
    assert!(matches!(e(2), PingError::RequestTimedOut));
    assert!(matches!(e(3), PingError::SourceQuench { source: RTR4 }));
    assert!(matches!(
        e(4),
        PingError::RedirectReceived { source: RTR4, gateway, code: 1 } if gateway == IpAddr::V4(gw)
    ));
    assert!(matches!(
        e(5),
        PingError::TimeExceeded {
            source: RTR4,
            code: 0
        }
    ));
    assert!(matches!(
        e(6),
        PingError::ParameterProblem {
            source: RTR4,
            code: 0,
            pointer: 20
        }
    ));
    assert!(matches!(e(7), PingError::RequestTimedOut));
}

#[test]
fn every_icmpv6_error_maps_to_its_variant() {
    let gw: Ipv6Addr = "fe80::9".parse().unwrap();
    let net = Net::new(move |t, _| match t {
        IpAddr::V6(a) => match a.segments()[7] {
            1 => err(rtr6(), 1, 1, 0),
            2 => err(rtr6(), 2, 0, 1500),
            3 => err(rtr6(), 3, 0, 0),
            4 => err(rtr6(), 4, 1, 40),
            5 => Fate::Redirect6 {
                from: "fe80::2".parse().unwrap(),
                gateway: gw,
            },
            6 => short_err(rtr6(), 1, 3),
            7 => err(rtr6(), 100, 0, 0),
            _ => Fate::Drop,
        },
        IpAddr::V4(_) => Fate::Drop,
    });
    let s = session(&net, options(Protocol::V6, 2000, 0));
    let e = |last| s.ping_host(v6(last)).unwrap_err();
    let r = rtr6();
    assert!(matches!(e(1), PingError::DestinationUnreachable { source, code: 1 } if source == r));
    assert!(matches!(e(2), PingError::PacketTooBig { source, mtu: 1500 } if source == r));
    assert!(matches!(e(3), PingError::TimeExceeded { source, code: 0 } if source == r));
    assert!(matches!(
        e(4),
        PingError::ParameterProblem { source, code: 1, pointer: 40 } if source == r
    ));
    let redirect = e(5);
    assert!(
        matches!(
            redirect,
            PingError::RedirectReceived { source, gateway, code: 0 }
                if source == "fe80::2".parse::<IpAddr>().unwrap() && gateway == IpAddr::V6(gw)
        ),
        "{redirect:?}"
    );
    // An ICMPv6 error quoting only 8 bytes (RFC 4443 asks for as much as fits in 1,280): it
    // could be anyone's, so it is not taken; the request times out.
    assert!(matches!(e(6), PingError::RequestTimedOut));
    assert!(matches!(
        e(7),
        PingError::OtherIcmpError { icmp_type: 100, .. }
    ));
}

#[test]
fn errors_with_a_forged_quote_are_ignored() {
    for (protocol, target, from) in [(Protocol::V4, v4(1), RTR4), (Protocol::V6, v6(1), rtr6())] {
        let net = Net::new(move |_, _| Fate::ForgedError { from });
        let s = session(&net, options(protocol, 30, 0));
        let e = s.ping_host(target).unwrap_err();
        assert!(matches!(e, PingError::RequestTimedOut), "{e:?}");
    }
}

#[test]
fn close_ends_every_outstanding_request_and_the_session_reopens() {
    let net = Net::new(|t, _| if t == v4(1) { Fate::Reply } else { Fate::Drop });
    let s = Arc::new(session(&net, options(Protocol::V4, 10_000, 3)));
    let (tx, rx) = mpsc::channel();
    for i in 0..20 {
        let tx = tx.clone();
        s.ping_host_with(v4(100 + i), move |r| tx.send(r).unwrap());
    }
    // A blocking request in another thread, too.
    let s2 = s.clone();
    let blocked = thread::spawn(move || s2.ping_host(v4(99)));
    let t0 = Instant::now();
    while s.outstanding() < 21 && t0.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(s.outstanding(), 21);
    let t0 = Instant::now();
    s.close();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    // Every callback ran before close returned.
    let ended: Vec<_> = rx.try_iter().collect();
    assert_eq!(ended.len(), 20);
    for r in ended {
        let e = r.unwrap_err();
        assert!(matches!(e, PingError::Closed), "{e:?}");
        assert_eq!(e.to_string(), "Socket forcibly closed");
    }
    assert!(matches!(blocked.join().unwrap(), Err(PingError::Closed)));
    assert_eq!(s.outstanding(), 0);
    assert_eq!(net.opens.load(Ordering::SeqCst), 1);
    // Reuse: a new socket (a new engine) serves the next request.
    let p = s.ping_host(v4(1)).unwrap();
    assert_eq!(p.target, v4(1));
    assert_eq!(net.opens.load(Ordering::SeqCst), 2);
    // Closing twice, and closing an idle session, are fine.
    s.close();
    s.close();
    assert!(s.ping_host(v4(1)).is_ok());
    assert_eq!(net.opens.load(Ordering::SeqCst), 3);
}

#[test]
fn a_callback_may_close_the_session() {
    let net = Net::new(|_, _| Fate::Reply);
    let s = Arc::new(session(&net, options(Protocol::V4, 1000, 0)));
    let (tx, rx) = mpsc::channel();
    let s2 = s.clone();
    s.ping_host_with(v4(1), move |r| {
        s2.close();
        tx.send(r).unwrap();
    });
    let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(r.is_ok());
    assert!(s.ping_host(v4(1)).is_ok());
}

#[test]
fn dropping_the_session_closes_it() {
    let net = Net::new(|_, _| Fate::Drop);
    let s = session(&net, options(Protocol::V6, 10_000, 0));
    let (tx, rx) = mpsc::channel();
    for i in 0..5 {
        let tx = tx.clone();
        s.ping_host_with(v6(200 + i), move |r| tx.send(r).unwrap());
    }
    drop(s);
    let ended: Vec<_> = rx.try_iter().collect();
    assert_eq!(ended.len(), 5);
    assert!(ended.iter().all(|r| matches!(r, Err(PingError::Closed))));
}

#[test]
fn immediate_errors_wrong_family_and_unroutable() {
    let net = Net::new(|t, _| {
        if t == v4(66) {
            Fate::Unroutable
        } else {
            Fate::Reply
        }
    });
    let s = session(&net, options(Protocol::V4, 1000, 0));
    let e = s.ping_host(v6(1)).unwrap_err();
    assert!(
        matches!(e, PingError::WrongFamily { target, protocol: Protocol::V4 } if target == v6(1))
    );
    let e = s.ping_host(v4(66)).unwrap_err();
    match e {
        PingError::Send { target, ref error } => {
            assert_eq!((target, error.raw_os_error()), (v4(66), Some(113)));
        }
        other => panic!("{other:?}"),
    }
    // The failed try does not hold anything up.
    assert!(s.ping_host(v4(1)).is_ok());
    assert_eq!(s.outstanding(), 0);
}

#[test]
fn a_failing_receiver_ends_requests_and_the_session_reopens() {
    let net = Net::new(|_, _| Fate::Drop);
    let s = session(&net, options(Protocol::V4, 10_000, 0));
    let (tx, rx) = mpsc::channel();
    s.ping_host_with(v4(9), move |r| tx.send(r).unwrap());
    net.fail_rx.store(true, Ordering::SeqCst);
    let e = rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, PingError::Engine(_)), "{e:?}");
    assert!(e.to_string().contains("recvmmsg"), "{e}");
    assert_eq!(net.opens.load(Ordering::SeqCst), 1);
    // The next request opens a new engine.
    let (tx, rx) = mpsc::channel();
    s.ping_host_with(v4(10), move |r| tx.send(r).unwrap());
    assert_eq!(net.opens.load(Ordering::SeqCst), 2);
    s.close();
    assert!(matches!(rx.recv().unwrap(), Err(PingError::Closed)));
}

#[test]
fn frame_engines_are_refused() {
    let net = Arc::new(Net {
        ethernet: true,
        ..Arc::into_inner(Net::new(|_, _| Fate::Reply)).unwrap()
    });
    let e = Session::with_engine(Options::default(), open_test(&net)).unwrap_err();
    assert!(matches!(e, Error::UnsupportedEngine("test")), "{e:?}");
}

#[test]
fn many_threads_share_a_session() {
    let net = Net::new(|t, _| match t {
        IpAddr::V4(a) if a.octets()[3] % 5 == 0 => Fate::Drop,
        _ => Fate::Reply,
    });
    let s = Arc::new(session(&net, options(Protocol::V4, 50, 0)));
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let s = s.clone();
            thread::spawn(move || {
                let mut ok = 0;
                for i in 0..40u8 {
                    let target = v4(t * 30 + i % 30 + 1);
                    match s.ping_host(target) {
                        Ok(p) => {
                            assert_eq!(p.target, target);
                            ok += 1;
                        }
                        Err(PingError::RequestTimedOut) => {
                            assert!(
                                target.to_string().ends_with('0')
                                    || target.to_string().ends_with('5')
                            );
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // 8 × 40 requests; the addresses ending in a multiple of 5 are silent.
    let silent = (0..8u8)
        .flat_map(|t| (0..40u8).map(move |i| t * 30 + i % 30 + 1))
        .filter(|x| x % 5 == 0)
        .count();
    assert_eq!(ok, 320 - silent);
    // Every try had its own sequence number.
    let mut seqs: Vec<u16> = lock(&net.sent)
        .iter()
        .map(|(_, r)| ident_seq(r).1)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 320);
}
