//! `asdic_filter`'s keyed check against the wire crate's: the kernel runs the program,
//! loaded but attached nowhere (`BPF_PROG_TEST_RUN`), on replies and ICMP errors built by
//! `asdic_wire` exactly as asdic builds its probes, and on the same frames with one bit of
//! the stamp or of what the MAC covers changed. Ours is counted `redirect_failed` (no socket)
//! and dropped (`drop_unserved`); forged is counted `forged` and dropped; another session's
//! goes to the kernel. Sends nothing, needs no bed.
//!
//! Needs root (or CAP_BPF); without it the tests skip with a reason, unless
//! `ASDIC_REQUIRE_BED=1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use asdic_wire::Family;
use asdic_wire::checksum;
use asdic_wire::payload::{Key, Stamp};
use asdic_wire::template::{Layer, ProbeFields, Template};
use asdic_xdp::{FilterConfig, FilterStats, Unattached};

const SESSION: u32 = 0x5eed_0002;
const IDENT: u16 = 0x7ff0;
const KEY: Key = Key::new(0x8899_aabb_ccdd_eeff, 0x0011_2233_4455_6677);
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const ROUTER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0xfe);
const DROP: u32 = 1;
const PASS: u32 = 2;

fn skip() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return false;
    }
    assert!(
        std::env::var("ASDIC_REQUIRE_BED").as_deref() != Ok("1"),
        "ASDIC_REQUIRE_BED=1 but not root"
    );
    eprintln!("skipped: loading an XDP program needs root");
    true
}

fn family(a: IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

fn stamp(n: u64) -> Stamp {
    Stamp {
        session: SESSION,
        n,
        cookie: 0x0102_0304,
        t_send_ns: 1_765_000_000_123_456_789 + n,
    }
}

/// The probe asdic sends from `src` to `target` (an Ethernet frame from asdic's template),
/// its MAC under `key`.
fn probe(src: IpAddr, target: IpAddr, seq: u16, key: &Key) -> Vec<u8> {
    let layer = Layer::Ethernet {
        src_mac: OUR_MAC,
        dst_mac: PEER_MAC,
        src_ip: src,
    };
    let t = Template::new(family(target), layer, 40).expect("template");
    let mut b = vec![0; t.len()];
    t.prepare(&mut b).expect("prepare");
    let f = ProbeFields::new(key, target, 64, IDENT, seq, stamp(u64::from(seq)))
        .with_ip_ident(key.ip_ident(target, IDENT, seq));
    t.patch(&mut b, &f).expect("patch");
    b
}

/// The ICMP message's offset in a frame of `family`.
fn icmp_at(f: Family) -> usize {
    14 + match f {
        Family::V4 => 20,
        Family::V6 => 40,
    }
}

/// The echo reply `target` sends to the probe: addresses, MACs and type turned around.
fn reply(target: IpAddr, seq: u16, key: &Key) -> Vec<u8> {
    let (src, f) = match target {
        IpAddr::V4(_) => (IpAddr::V4(SRC4), Family::V4),
        IpAddr::V6(_) => (IpAddr::V6(SRC6), Family::V6),
    };
    let mut b = probe(src, target, seq, key);
    b[..6].copy_from_slice(&OUR_MAC);
    b[6..12].copy_from_slice(&PEER_MAC);
    match f {
        Family::V4 => {
            let (s, d) = (b[26..30].to_vec(), b[30..34].to_vec());
            b[26..30].copy_from_slice(&d);
            b[30..34].copy_from_slice(&s);
        }
        Family::V6 => {
            let (s, d) = (b[22..38].to_vec(), b[38..54].to_vec());
            b[22..38].copy_from_slice(&d);
            b[38..54].copy_from_slice(&s);
        }
    }
    // The type: the ICMP checksum is not the program's business, but kept right.
    asdic_wire::icmp::answer_echo(&mut b[icmp_at(f)..], f).expect("an echo request");
    b
}

/// A router's "destination unreachable" quoting the whole probe to `target`.
fn error(target: IpAddr, seq: u16, key: &Key) -> Vec<u8> {
    let src = match target {
        IpAddr::V4(_) => IpAddr::V4(SRC4),
        IpAddr::V6(_) => IpAddr::V6(SRC6),
    };
    let quoted = probe(src, target, seq, key)[14..].to_vec();
    let mut icmp = match target {
        IpAddr::V4(_) => vec![3, 1, 0, 0, 0, 0, 0, 0],
        IpAddr::V6(_) => vec![1, 3, 0, 0, 0, 0, 0, 0],
    };
    icmp.extend_from_slice(&quoted);
    let mut b = Vec::new();
    b.extend_from_slice(&OUR_MAC);
    b.extend_from_slice(&PEER_MAC);
    match target {
        IpAddr::V4(_) => {
            let c = checksum::checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            b.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
            ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&ROUTER4.octets());
            ip.extend_from_slice(&SRC4.octets());
            let c = checksum::checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            b.extend_from_slice(&ip);
        }
        IpAddr::V6(_) => {
            let len = icmp.len() as u32;
            let acc = checksum::pseudo_v6(&ROUTER6, &SRC6, len, 58);
            let c = checksum::finish(checksum::sum(acc, &icmp));
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            b.extend_from_slice(&0x86ddu16.to_be_bytes());
            b.extend_from_slice(&[0x60, 0, 0, 0]);
            b.extend_from_slice(&(len as u16).to_be_bytes());
            b.extend_from_slice(&[58, 64]);
            b.extend_from_slice(&ROUTER6.octets());
            b.extend_from_slice(&SRC6.octets());
        }
    }
    b.extend_from_slice(&icmp);
    b
}

fn load() -> Unattached {
    let mut cfg = FilterConfig::new(SESSION, IDENT, 16, OUR_MAC, Some(SRC4), Some(SRC6));
    cfg.mac_key = Some(KEY.halves());
    cfg.drop_unserved = true;
    Unattached::load(&cfg).expect("loading asdic_filter")
}

/// What the program made of `frame`: its action, and which counter moved ("ours",
/// "forged" or "passed").
fn verdict(prog: &Unattached, frame: &[u8]) -> (u32, &'static str) {
    let before = prog.stats();
    let r = prog.run(frame, 1).expect("BPF_PROG_TEST_RUN");
    let after = prog.stats();
    let moved = |f: fn(&FilterStats) -> u64| f(&after) - f(&before);
    let kinds = [
        ("ours", moved(|s| s.redirect_failed)),
        ("forged", moved(|s| s.forged)),
        ("passed", moved(|s| s.passed)),
    ];
    let hit: Vec<_> = kinds.iter().filter(|(_, n)| *n != 0).collect();
    assert_eq!(hit.len(), 1, "one frame, one count: {kinds:?}");
    assert_eq!(hit[0].1, 1, "{kinds:?}");
    (r.action, hit[0].0)
}

fn targets() -> [IpAddr; 3] {
    [
        IpAddr::V4(Ipv4Addr::new(198, 19, 3, 7)),
        IpAddr::V4(Ipv4Addr::new(198, 19, 255, 254)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0xa, 0xb, 0xc, 0xd)),
    ]
}

#[test]
fn replies_and_errors_the_wire_crate_built_are_ours_and_every_changed_bit_is_forged() {
    if skip() {
        return;
    }
    let prog = load();
    for target in targets() {
        for (kind, build) in [
            ("reply", reply as fn(IpAddr, u16, &Key) -> Vec<u8>),
            ("error", error),
        ] {
            let seq = 0x1234;
            let frame = build(target, seq, &KEY);
            assert_eq!(
                verdict(&prog, &frame),
                (DROP, "ours"),
                "{kind} from {target}"
            );
            // Where the program finds what the MAC covers: the target (a reply's source, the
            // quoted probe's destination), identifier and sequence, the stamp and its MAC.
            let f = family(target);
            let (addr_at, icmp) = match (kind, f) {
                ("reply", Family::V4) => (26, icmp_at(f)),
                ("reply", Family::V6) => (22, icmp_at(f)),
                (_, Family::V4) => (icmp_at(f) + 8 + 16, icmp_at(f) + 8 + 20),
                (_, Family::V6) => (icmp_at(f) + 8 + 24, icmp_at(f) + 8 + 40),
            };
            let addr_len = if f == Family::V4 { 4 } else { 16 };
            let mut covered: Vec<usize> = (addr_at..addr_at + addr_len).collect();
            // Identifier (its low bits: the high ones would leave the run's range) and
            // sequence, then every stamp byte after the session, and the MAC.
            covered.extend([icmp + 5, icmp + 6, icmp + 7]);
            covered.extend(icmp + 8 + 4..icmp + 8 + 32);
            for at in covered {
                // The identifier's low byte only within the run's 16 identifiers.
                let bits: &[u8] = if at == icmp + 5 {
                    &[0x01, 0x08]
                } else {
                    &[0x01, 0x80]
                };
                for &bit in bits {
                    let mut bad = frame.clone();
                    bad[at] ^= bit;
                    if f == Family::V4 && kind == "reply" && (26..30).contains(&at) {
                        // The source address is under the IP header checksum: keep it right.
                        fix_ipv4_checksum(&mut bad);
                    }
                    assert_eq!(
                        verdict(&prog, &bad),
                        (DROP, "forged"),
                        "{kind} from {target}, byte {at} ^ {bit:#x}"
                    );
                }
            }
            // Another session's (or program's) echo, by the stamp's first bytes: the kernel's.
            let mut other = frame.clone();
            other[icmp + 8] ^= 0x40;
            assert_eq!(
                verdict(&prog, &other),
                (PASS, "passed"),
                "{kind} from {target}"
            );
            // A key of another run: every MAC fails.
            let theirs = build(target, seq, &Key::new(1, 2));
            assert_eq!(
                verdict(&prog, &theirs),
                (DROP, "forged"),
                "{kind} from {target} under another key"
            );
        }
    }
}

/// The IPv4 header checksum of a frame made right again.
fn fix_ipv4_checksum(b: &mut [u8]) {
    b[24..26].fill(0);
    let c = checksum::checksum(&b[14..34]);
    b[24..26].copy_from_slice(&c.to_be_bytes());
}

/// The frame's IP header claims `icmp_len` bytes of ICMP message.
fn claim(b: &mut [u8], f: Family, icmp_len: usize) {
    match f {
        Family::V4 => {
            b[16..18].copy_from_slice(&((20 + icmp_len) as u16).to_be_bytes());
            fix_ipv4_checksum(b);
        }
        Family::V6 => b[18..20].copy_from_slice(&(icmp_len as u16).to_be_bytes()),
    }
}

#[test]
fn a_stamp_cut_short_is_never_ours() {
    if skip() {
        return;
    }
    let prog = load();
    for target in targets() {
        let f = family(target);
        let frame = reply(target, 9, &KEY);
        let icmp = icmp_at(f);
        // The IP header's length claims fewer payload bytes than the stamp's 32: whatever
        // follows in the frame is not the packet's.
        for keep in [0usize, 8, 31] {
            let claimed = 8 + keep;
            let mut b = frame.clone();
            claim(&mut b, f, claimed);
            assert_eq!(
                verdict(&prog, &b),
                (PASS, "passed"),
                "{target}: {keep} payload bytes claimed"
            );
            // And a frame that ends there.
            let mut c = frame[..icmp + claimed].to_vec();
            claim(&mut c, f, claimed);
            assert_eq!(
                verdict(&prog, &c),
                (PASS, "passed"),
                "{target}: a frame of {} bytes",
                c.len()
            );
        }
    }
}
