//! Matcher tests in virtual time: probes built from the real template, replies and errors
//! built as a host or router would.

use super::*;
use asdic_wire::checksum;
use asdic_wire::payload::Stamp;
use asdic_wire::template::{Layer, ProbeFields, Template};
use asdic_wire::{Family, ipv4};
use core::net::{IpAddr, Ipv4Addr};

const KEY: Key = Key::new(7, 8);
const SESSION: u32 = 0x5e55;
const NUM: Numbering = Numbering::Spread {
    base: 0x1000,
    key: 0x5eed_0001,
};
const US: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

struct Bed {
    m: Matcher,
    t: Template,
}

impl Bed {
    fn new(cap: usize) -> Self {
        let table = Arc::new(InflightTable::new(cap));
        Bed {
            m: Matcher::new(table, KEY, SESSION, NUM),
            t: Template::new(Family::V4, Layer::Icmp, 56).unwrap(),
        }
    }

    /// The ICMP bytes of probe n to `dst`, stamped with `cookie` and `t_send`.
    fn probe(&self, n: u64, dst: IpAddr, cookie: u32, t_send: u64) -> Vec<u8> {
        let (ident, seq) = NUM.ident_seq(n);
        let stamp = Stamp {
            session: SESSION,
            n,
            cookie,
            t_send_ns: t_send,
        };
        let mut b = vec![0; self.t.len()];
        self.t.prepare(&mut b).unwrap();
        self.t
            .patch(&mut b, &ProbeFields::new(&KEY, dst, 64, ident, seq, stamp))
            .unwrap();
        b
    }

    /// Claims probe n to `dst` sent at `t_send` and returns its ICMP bytes.
    fn send(&self, n: u64, dst: IpAddr, t_send: u64) -> Vec<u8> {
        self.send_try(n, dst, t_send, 0)
    }

    /// As [`Bed::send`], for try number `attempt` at the target.
    fn send_try(&self, n: u64, dst: IpAddr, t_send: u64, attempt: u8) -> Vec<u8> {
        let cookie = n as u32 + 1000;
        let info = ProbeInfo {
            n,
            target: dst,
            cookie,
            t_send_ns: t_send,
            attempt,
            class: 0,
        };
        assert!(self.m.table().unwrap().claim(&info));
        self.probe(n, dst, cookie, t_send)
    }

    fn feed(&mut self, packet: &[u8], ts: u64) -> Vec<Event> {
        let mut evs = vec![];
        let f = RxFrame {
            data: packet,
            layer: RxLayer::Ipv4,
            ts_ns: ts,
            truncated: false,
            realtime: false,
        };
        self.m.on_frame(&f, &mut |e| evs.push(e));
        evs
    }
}

/// An IPv4 packet carrying `icmp` (also the stateless scan's tests' frames).
pub(crate) fn ip(src: IpAddr, dst: IpAddr, ttl: u8, icmp: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        unreachable!()
    };
    let mut b = vec![0; 20];
    ipv4::Repr {
        src: s,
        dst: d,
        protocol: 1,
        payload_len: icmp.len(),
        ttl,
        ident: 0,
    }
    .emit(&mut b)
    .unwrap();
    b.extend_from_slice(icmp);
    b
}

/// The echo reply to ICMP echo request `req` (its checksum redone).
pub(crate) fn reply_to(req: &[u8]) -> Vec<u8> {
    let mut r = req.to_vec();
    r[0] = 0;
    r[2..4].fill(0);
    let c = checksum::checksum(&r);
    r[2..4].copy_from_slice(&c.to_be_bytes());
    r
}

/// An ICMP error of type `t`, code `code`, quoting `quoted`.
pub(crate) fn error_about(t: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![t, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quoted);
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

#[test]
fn reply_duplicate_late_and_stale() {
    let mut bed = Bed::new(4);
    let a = IpAddr::from([198, 19, 0, 1]);
    let req = bed.send(0, a, 1_000);
    let rep = ip(a, US, 61, &reply_to(&req));
    let evs = bed.feed(&rep, 251_000);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        evs[0].outcome,
        Outcome::Reply {
            rtt_ns: 250_000,
            ttl: Some(61),
            from: a
        }
    );
    assert_eq!(
        (evs[0].probe, evs[0].cookie, evs[0].target),
        (Some(0), 1000, a)
    );
    assert_eq!(
        bed.feed(&rep, 300_000)[0].outcome,
        Outcome::Duplicate { rtt_ns: 299_000 }
    );

    let b = IpAddr::from([198, 19, 0, 2]);
    let req_b = bed.send(1, b, 2_000);
    let mut timeouts = vec![];
    bed.m.reap(10_000, 5_000, &mut |e, _| timeouts.push(e));
    assert_eq!(timeouts.len(), 1);
    assert_eq!(
        (timeouts[0].probe, timeouts[0].outcome),
        (Some(1), Outcome::Timeout)
    );
    let rep_b = ip(b, US, 61, &reply_to(&req_b));
    assert_eq!(
        bed.feed(&rep_b, 20_000)[0].outcome,
        Outcome::Late { rtt_ns: 18_000 }
    );
    // Four more probes reuse slot 1: the old reply is now stale.
    for n in 2..6 {
        bed.send(n, IpAddr::from([198, 19, 0, n as u8 + 1]), 30_000);
        bed.m.reap(u64::MAX, 0, &mut |_, _| {});
    }
    assert!(bed.feed(&rep_b, 40_000).is_empty());
    assert_eq!(bed.m.drops().stale, 1);
}

#[test]
fn forged_foreign_and_malformed_are_dropped() {
    let mut bed = Bed::new(16);
    let a = IpAddr::from([198, 19, 0, 1]);
    let req = bed.send(0, a, 1_000);
    // A reply from another address with our payload: the MAC binds the target.
    let other = IpAddr::from([198, 19, 0, 99]);
    assert!(
        bed.feed(&ip(other, US, 61, &reply_to(&req)), 5_000)
            .is_empty()
    );
    // A tampered timestamp.
    let mut forged = reply_to(&req);
    forged[8 + 20] ^= 0x40;
    forged[2..4].fill(0);
    let c = checksum::checksum(&forged);
    forged[2..4].copy_from_slice(&c.to_be_bytes());
    assert!(bed.feed(&ip(a, US, 61, &forged), 5_000).is_empty());
    // Another session's echo.
    let mut foreign = reply_to(&req);
    foreign[8] ^= 1;
    foreign[2..4].fill(0);
    let c = checksum::checksum(&foreign);
    foreign[2..4].copy_from_slice(&c.to_be_bytes());
    assert!(bed.feed(&ip(a, US, 61, &foreign), 5_000).is_empty());
    // Garbage.
    assert!(bed.feed(&[0x45, 0, 0], 5_000).is_empty());
    let d = bed.m.drops();
    assert_eq!((d.forged, d.foreign, d.malformed), (2, 1, 1));
    // The genuine reply still matches.
    assert_eq!(bed.feed(&ip(a, US, 61, &reply_to(&req)), 6_000).len(), 1);
}

#[test]
fn errors_match_by_full_quote_or_by_ids_and_target() {
    let mut bed = Bed::new(16);
    let router = IpAddr::from([198, 18, 0, 2]);
    let t1 = IpAddr::from([198, 19, 77, 1]);
    let t2 = IpAddr::from([198, 19, 77, 2]);
    let r1 = ip(US, t1, 64, &bed.send(0, t1, 1_000));
    let r2 = ip(US, t2, 64, &bed.send(1, t2, 1_000));
    // Full quote (Linux routers): validated by the MAC.
    let evs = bed.feed(&ip(router, US, 64, &error_about(3, 13, &r1)), 9_000);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        evs[0].outcome,
        Outcome::Error {
            family: Family::V4,
            icmp_type: 3,
            code: 13,
            from: router,
            rtt_ns: 8_000,
            rest: 0,
            gateway: None,
        }
    );
    assert_eq!((evs[0].target, evs[0].cookie), (t1, 1000));
    // RFC 792 minimum quote (IP header + 8 bytes): matched by ids, checked against target.
    let short = &r2[..28];
    let mut wrong_target = short.to_vec();
    wrong_target[19] = 3; // quoted destination 198.19.77.3
    assert!(
        bed.feed(
            &ip(router, US, 64, &error_about(11, 0, &wrong_target)),
            9_000
        )
        .is_empty()
    );
    let evs = bed.feed(&ip(router, US, 64, &error_about(11, 0, short)), 9_500);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].probe, evs[0].target, evs[0].cookie),
        (Some(1), t2, 1001)
    );
    // Quoting a probe we never sent.
    let never = ip(US, t2, 64, &bed.probe(77, t2, 0, 0));
    assert!(
        bed.feed(&ip(router, US, 64, &error_about(3, 1, &never[..28])), 9_900)
            .is_empty()
    );
    assert_eq!(bed.m.drops().unmatched_errors, 2);
}

#[test]
fn icmpv6_errors_must_quote_a_stamp_that_verifies() {
    let table = Arc::new(InflightTable::new(16));
    let mut m = Matcher::new(table.clone(), KEY, SESSION, NUM);
    let us: core::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let router: core::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
    let dst: IpAddr = "2001:db8:1:1::5".parse().unwrap();
    let t = Template::new(Family::V6, Layer::Icmp, 56).unwrap();
    let mut probe = vec![0u8; t.len()];
    t.prepare(&mut probe).unwrap();
    let (ident, seq) = NUM.ident_seq(0);
    let stamp = Stamp {
        session: SESSION,
        n: 0,
        cookie: 9,
        t_send_ns: 1_000,
    };
    t.patch(
        &mut probe,
        &ProbeFields::new(&KEY, dst, 64, ident, seq, stamp),
    )
    .unwrap();
    assert!(table.claim(&ProbeInfo {
        n: 0,
        target: dst,
        cookie: 9,
        t_send_ns: 1_000,
        attempt: 0,
        class: 0
    }));
    // The quoted packet: our IPv6 header, then the echo request (whole, or its 8 bytes).
    let IpAddr::V6(d) = dst else { unreachable!() };
    let quote = |icmp: &[u8]| {
        let mut q = vec![0u8; 40];
        asdic_wire::ipv6::Repr {
            src: us,
            dst: d,
            next_header: 58,
            payload_len: probe.len(),
            hop_limit: 1,
        }
        .emit(&mut q)
        .unwrap();
        q.extend_from_slice(icmp);
        let mut e = vec![1, 3, 0, 0, 0, 0, 0, 0];
        e.extend_from_slice(&q);
        e
    };
    let mut feed = |msg: &[u8]| {
        let mut evs = vec![];
        let f = RxFrame {
            data: msg,
            layer: RxLayer::Icmpv6 {
                src: router,
                hop_limit: Some(64),
            },
            ts_ns: 2_000,
            truncated: false,
            realtime: false,
        };
        m.on_frame(&f, &mut |e| evs.push(e));
        evs
    };
    // Eight bytes only (the identifiers right, the stamp missing): not matched.
    assert!(feed(&quote(&probe[..8])).is_empty());
    // The whole probe: matched by its stamp.
    let evs = feed(&quote(&probe));
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].probe, evs[0].target, evs[0].cookie),
        (Some(0), dst, 9)
    );
    assert!(matches!(
        evs[0].outcome,
        Outcome::Error {
            icmp_type: 1,
            code: 3,
            ..
        }
    ));
}

#[test]
fn events_carry_the_try_number_of_their_probe() {
    let mut bed = Bed::new(8);
    let (a, b, c) = (
        IpAddr::from([198, 19, 0, 1]),
        IpAddr::from([198, 19, 0, 2]),
        IpAddr::from([198, 19, 0, 3]),
    );
    let req_a = bed.send_try(0, a, 1_000, 2);
    let req_b = bed.send_try(1, b, 1_000, 1);
    bed.send_try(2, c, 1_000, 3);
    let evs = bed.feed(&ip(a, US, 61, &reply_to(&req_a)), 5_000);
    assert_eq!(evs[0].attempt, 2);
    // An ICMP error quoting the whole probe.
    let quoted = ip(US, b, 64, &req_b);
    let router = IpAddr::from([198, 18, 0, 2]);
    let evs = bed.feed(&ip(router, US, 64, &error_about(3, 1, &quoted)), 6_000);
    assert!(matches!(evs[0].outcome, Outcome::Error { .. }), "{evs:?}");
    assert_eq!(evs[0].attempt, 1);
    let mut reaped = vec![];
    bed.m
        .reap(u64::MAX, 0, &mut |e, p| reaped.push((e, p.attempt)));
    assert_eq!(reaped.len(), 1);
    assert_eq!((reaped[0].0.attempt, reaped[0].1), (3, 3));
}

/// The IPv4 packet of tracked probe `n` to `dst` as the XDP engine builds it (whole frame,
/// keyed IP ID when `keyed`), claimed in `m`'s table: what a router quotes.
fn framed_probe(m: &Matcher, num: Numbering, n: u64, dst: IpAddr, keyed: bool) -> Vec<u8> {
    let eth = Layer::Ethernet {
        src_mac: [2; 6],
        dst_mac: [4; 6],
        src_ip: US,
    };
    let t = Template::new(Family::V4, eth, 56).unwrap();
    assert!(t.writes_ip_ident());
    let (ident, seq) = num.ident_seq(n);
    let stamp = Stamp {
        session: SESSION,
        n,
        cookie: 5,
        t_send_ns: 1_000,
    };
    let info = ProbeInfo {
        n,
        target: dst,
        cookie: 5,
        t_send_ns: 1_000,
        attempt: 0,
        class: 0,
    };
    assert!(m.table().unwrap().claim(&info));
    let mut b = vec![0; t.len()];
    t.prepare(&mut b).unwrap();
    let ip_ident = if keyed {
        KEY.ip_ident(dst, ident, seq)
    } else {
        0
    };
    let fields = ProbeFields::new(&KEY, dst, 64, ident, seq, stamp).with_ip_ident(ip_ident);
    t.patch(&mut b, &fields).unwrap();
    let ip = b[14..].to_vec();
    assert!(ipv4::Packet::new_checked(&ip[..]).unwrap().checksum_ok());
    ip
}

#[test]
fn a_keyed_ip_ident_verifies_eight_byte_quotes_even_with_a_fixed_identifier() {
    let router = IpAddr::from([198, 18, 0, 2]);
    let t = IpAddr::from([198, 19, 0, 13]);
    let fixed = Numbering::Fixed {
        ident: 0x0707,
        key: 0x5eed_0002,
    };
    let feed = |m: &mut Matcher, quote: &[u8]| {
        let pkt = ip(router, US, 64, &error_about(3, 1, quote));
        let f = RxFrame {
            data: &pkt,
            layer: RxLayer::Ipv4,
            ts_ns: 5_000,
            truncated: false,
            realtime: false,
        };
        let mut evs = vec![];
        m.on_frame(&f, &mut |e| evs.push(e));
        evs
    };
    for num in [NUM, fixed] {
        // With the keyed IP ID (XDP): the right one is an answer, for either numbering …
        let table = Arc::new(InflightTable::new(16));
        let mut m = Matcher::new(table, KEY, SESSION, num).with_keyed_ip_ident(true);
        let q = framed_probe(&m, num, 0, t, true);
        let evs = feed(&mut m, &q[..28]);
        assert_eq!(evs.len(), 1, "{num:?}");
        assert!(matches!(evs[0].outcome, Outcome::Error { code: 1, .. }));
        // … a wrong one (a blind guess of the ids, or another probe's IP ID) is forged.
        let mut q = framed_probe(&m, num, 1, t, true);
        q[4] ^= 0x40;
        assert!(feed(&mut m, &q[..28]).is_empty());
        assert_eq!((m.drops().forged, m.drops().unverified), (1, 0), "{num:?}");
        // Without it (raw sockets: the kernel's IP ID), only 32-bit numberings are trusted.
        let table = Arc::new(InflightTable::new(16));
        let mut m = Matcher::new(table, KEY, SESSION, num);
        let q = framed_probe(&m, num, 0, t, false);
        let evs = feed(&mut m, &q[..28]);
        match num {
            Numbering::Spread { .. } => assert_eq!(evs.len(), 1),
            Numbering::Fixed { .. } => {
                assert!(evs.is_empty());
                assert_eq!(m.drops().unverified, 1);
            }
        }
    }
}

#[test]
fn a_timeout_holds_by_the_rtt_too_not_only_by_the_reapers_clock() {
    let mut bed = Bed::new(8);
    bed.m = Matcher::new(bed.m.table().unwrap().clone(), KEY, SESSION, NUM)
        .with_timeout(std::time::Duration::from_micros(50));
    let (a, b, c) = (
        IpAddr::from([198, 19, 0, 1]),
        IpAddr::from([198, 19, 0, 2]),
        IpAddr::from([198, 19, 0, 3]),
    );
    let (ra, rb) = (bed.send(0, a, 1_000), bed.send(1, b, 1_000));
    let rc = bed.send(2, c, 1_000);
    // Within 50 µs: a reply.
    let evs = bed.feed(&ip(a, US, 61, &reply_to(&ra)), 51_000);
    assert!(matches!(
        evs[0].outcome,
        Outcome::Reply { rtt_ns: 50_000, .. }
    ));
    // Over it, before the reaper came by: late, never a reply, and the probe still waits
    // for the reaper, which times it out.
    let evs = bed.feed(&ip(b, US, 61, &reply_to(&rb)), 51_001);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::Late { rtt_ns: 50_001 });
    // An error over the timeout is not the probe's answer either: stale.
    let router = IpAddr::from([198, 18, 0, 2]);
    let err = ip(router, US, 64, &error_about(3, 1, &ip(US, c, 64, &rc)));
    assert!(bed.feed(&err, 60_000).is_empty());
    assert_eq!(bed.m.drops().stale, 1);
    let mut timed_out = vec![];
    bed.m.reap(60_000, 50_000, &mut |ev, _| {
        timed_out.push((ev.target, ev.outcome))
    });
    assert_eq!(timed_out, [(b, Outcome::Timeout), (c, Outcome::Timeout)]);
    // A second copy after that is late too.
    let evs = bed.feed(&ip(b, US, 61, &reply_to(&rb)), 70_000);
    assert_eq!(evs[0].outcome, Outcome::Late { rtt_ns: 69_000 });
}

#[test]
fn rtts_start_from_the_kernels_send_stamp_and_a_missing_one_is_counted() {
    let mut bed = Bed::new(8);
    bed.m = Matcher::new(bed.m.table().unwrap().clone(), KEY, SESSION, NUM)
        .with_timeout(std::time::Duration::from_micros(50))
        .with_kernel_stamps(true);
    let (a, b, c, d) = (
        IpAddr::from([198, 19, 0, 1]),
        IpAddr::from([198, 19, 0, 2]),
        IpAddr::from([198, 19, 0, 3]),
        IpAddr::from([198, 19, 0, 4]),
    );
    // Four probes filled at 1,000 ns; the kernel took probe 0 at 1,300 and probe 1 at
    // 40,000; probe 2's stamp never comes (one under another lap's tag is dropped); probe
    // 3's comes later.
    let (ra, rb, rc, rd) = (
        bed.send(0, a, 1_000),
        bed.send(1, b, 1_000),
        bed.send(2, c, 1_000),
        bed.send(3, d, 1_000),
    );
    let stamp = |m: &mut Matcher, tag: u32, ts_ns: u64| {
        let f = RxFrame {
            data: &[],
            layer: RxLayer::TxStamp { tag },
            ts_ns,
            truncated: false,
            realtime: false,
        };
        let mut evs = vec![];
        m.on_frame(&f, &mut |e| evs.push(e));
        assert!(evs.is_empty(), "a stamp is no event");
    };
    stamp(&mut bed.m, 0, 1_300);
    stamp(&mut bed.m, 1, 40_000);
    stamp(&mut bed.m, 2 + 8, 2_000);
    assert_eq!(
        bed.m.table().unwrap().wire_sent(2),
        None,
        "another lap's stamp"
    );
    let evs = bed.feed(&ip(a, US, 61, &reply_to(&ra)), 11_300);
    assert!(matches!(
        evs[0].outcome,
        Outcome::Reply { rtt_ns: 10_000, .. }
    ));
    assert_eq!(evs[0].sent_ns, Some(1_300));
    // 80 µs after it was filled but 41 µs after it left: within the 50 µs timeout.
    let evs = bed.feed(&ip(b, US, 61, &reply_to(&rb)), 81_000);
    assert!(matches!(
        evs[0].outcome,
        Outcome::Reply { rtt_ns: 41_000, .. }
    ));
    assert_eq!(bed.m.drops().unstamped, 0);
    // No stamp came back: timed from the sender's, and counted.
    let evs = bed.feed(&ip(c, US, 61, &reply_to(&rc)), 21_000);
    assert!(matches!(
        evs[0].outcome,
        Outcome::Reply { rtt_ns: 20_000, .. }
    ));
    assert_eq!(bed.m.drops().unstamped, 1);
    // An error is timed from the kernel's stamp too.
    stamp(&mut bed.m, 3, 5_000);
    let router = IpAddr::from([198, 18, 0, 2]);
    let err = ip(router, US, 64, &error_about(3, 1, &ip(US, d, 64, &rd)));
    let evs = bed.feed(&err, 9_000);
    assert!(matches!(
        evs[0].outcome,
        Outcome::Error { rtt_ns: 4_000, .. }
    ));
    assert_eq!(bed.m.drops().unstamped, 1);
    assert!(
        bed.m
            .drops()
            .to_string()
            .ends_with(", 1 timed without a kernel send stamp")
    );
}
