//! The probe payload: what an echo request carries so that its reply can be validated without
//! state, and the numbering that maps probe number `n` to (identifier, sequence).
//!
//! ```text
//!  0               4                               12              16
//! +---------------+-------------------------------+---------------+
//! |  session id   |        probe number n         |    cookie     |
//! +---------------+-------------------------------+---------------+
//! |        send time (ns, CLOCK_REALTIME)         |  MAC (SipHash-1-3, 64 bits)     |
//! +-----------------------------------------------+---------------+-----------------+
//! 16                                              24                                32
//! ```
//! followed by padding up to the requested size. The MAC covers the target address, the ICMP
//! identifier and sequence and the first 24 payload bytes, under a per-run 128-bit key: a reply
//! whose MAC verifies was sent by this run, to that target, at that time. Echo replies copy the
//! whole payload back; ICMP errors quote at least the first eight ICMP bytes and, from most
//! hosts (RFC 1812 routers, Linux), the whole payload too.

use core::net::{IpAddr, Ipv6Addr};

use crate::error::{Result, WireError};

/// Bytes of payload asdic needs; the smallest `--size`.
pub const LEN: usize = 32;
/// Bytes of padding pattern after the stamp are `PAD_BYTE`.
pub const PAD_BYTE: u8 = 0xa5;

/// What a probe carries besides its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// Random per run: tells our replies from other pingers' on the same host.
    pub session: u32,
    /// Probe number within the run.
    pub n: u64,
    /// Opaque to the wire: the sender's handle on the target (its index in a list).
    pub cookie: u32,
    /// Send time in nanoseconds since the Unix epoch.
    pub t_send_ns: u64,
}

/// The per-run MAC key.
#[derive(Clone, Copy)]
pub struct Key {
    k0: u64,
    k1: u64,
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from 128 secret bits.
    pub const fn new(k0: u64, k1: u64) -> Self {
        Key { k0, k1 }
    }

    /// The two key halves (k0, k1), for the XDP program that checks MACs in the kernel.
    pub fn halves(&self) -> (u64, u64) {
        (self.k0, self.k1)
    }

    /// The MAC of a probe to `target` with the given ICMP identifier and sequence.
    #[inline]
    pub fn mac(&self, target: IpAddr, ident: u16, seq: u16, stamp: &Stamp) -> u64 {
        let mut m = [0u8; 44];
        m[..16].copy_from_slice(&v6(target).octets());
        m[16..18].copy_from_slice(&ident.to_be_bytes());
        m[18..20].copy_from_slice(&seq.to_be_bytes());
        write_stamp(&mut m[20..44], stamp);
        sip13(self.k0, self.k1, &m)
    }
}

impl Key {
    /// The ICMP (identifier, sequence) of a stateless scan's probe to `target`, try number
    /// `attempt`: 32 bits of a keyed MAC of the two, under this run's key, domain-separated
    /// from [`Key::mac`]. They are the only validation an ICMPv4 error carries back (it quotes
    /// the IP header and 8 bytes of the probe), so they are all MAC: a blind forger matches
    /// one (target, attempt) with probability 2^-32.
    #[inline]
    pub fn probe_ids(&self, target: IpAddr, attempt: u8) -> (u16, u16) {
        let mut m = [0u8; 18];
        m[0] = IDS_DOMAIN;
        m[1..17].copy_from_slice(&v6(target).octets());
        m[17] = attempt;
        let x = sip13(self.k0, self.k1, &m);
        ((x >> 48) as u16, (x >> 32) as u16)
    }

    /// The attempt among `0..=max_attempt` whose [`Key::probe_ids`] toward `target` are
    /// (`ident`, `seq`), if any.
    #[inline]
    pub fn probe_attempt(
        &self,
        target: IpAddr,
        ident: u16,
        seq: u16,
        max_attempt: u8,
    ) -> Option<u8> {
        (0..=max_attempt).find(|&a| self.probe_ids(target, a) == (ident, seq))
    }
}

impl Key {
    /// The IPv4 IP ID of a tracked probe (ping, sweep, trace) to `target` with these ICMP
    /// identifier and sequence, where asdic writes the IP header itself (XDP): 16 more keyed
    /// bits that an ICMPv4 error quoting only the IP header and 8 bytes carries back.
    /// Domain-separated from [`Key::mac`] and [`Key::probe_ids`] (a 21-byte message).
    #[inline]
    pub fn ip_ident(&self, target: IpAddr, ident: u16, seq: u16) -> u16 {
        let mut m = [0u8; 21];
        m[0] = IP_IDENT_DOMAIN;
        m[1..17].copy_from_slice(&v6(target).octets());
        m[17..19].copy_from_slice(&ident.to_be_bytes());
        m[19..21].copy_from_slice(&seq.to_be_bytes());
        (sip13(self.k0, self.k1, &m) >> 48) as u16
    }
}

/// First byte of what [`Key::ip_ident`] hashes (the message length, 21, is its own too).
const IP_IDENT_DOMAIN: u8 = 0x1e;

/// First byte of what [`Key::probe_ids`] hashes: no message of [`Key::mac`] (44 bytes) has
/// the same length, and this tag keeps it so should either change.
const IDS_DOMAIN: u8 = 0x1d;

/// One SipRound over the state (v0, v1, v2, v3).
#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-1-3 of `m` under the key (k0, k1): one SipRound per 8-byte word, the last word
/// holding the tail and the length's low byte, three finalisation rounds (the function the
/// siphasher crate's `SipHasher13` computes, and `asdic_filter` in the kernel). Written for
/// asdic's short messages of fixed length, so that it inlines whole, the words read as they
/// lie: 2.1× faster than the general hasher on the 21-byte IP ID (17.4 → 8.3 ns), 1.4× on
/// the 44-byte MAC (20.5 → 14.7 ns; `cargo bench -p asdic-bench --bench hot -- keyed`).
#[inline(always)]
fn sip13<const N: usize>(k0: u64, k1: u64, m: &[u8; N]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = m.chunks_exact(8);
    for w in words.by_ref() {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let w = u64::from_le_bytes(b);
        v[3] ^= w;
        sip_round(&mut v);
        v[0] ^= w;
    }
    let mut last = (N as u64 & 0xff) << 56;
    for (i, &b) in words.remainder().iter().enumerate() {
        last |= u64::from(b) << (8 * i);
    }
    v[3] ^= last;
    sip_round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

fn write_stamp(b: &mut [u8], s: &Stamp) {
    b[0..4].copy_from_slice(&s.session.to_be_bytes());
    b[4..12].copy_from_slice(&s.n.to_be_bytes());
    b[12..16].copy_from_slice(&s.cookie.to_be_bytes());
    b[16..24].copy_from_slice(&s.t_send_ns.to_be_bytes());
}

/// Writes stamp and MAC into `buf[..LEN]`; the rest of `buf` is left alone (the template's
/// padding).
pub fn emit(buf: &mut [u8], stamp: &Stamp, mac: u64) -> Result<()> {
    let b = buf.get_mut(..LEN).ok_or(WireError::Truncated)?;
    write_stamp(b, stamp);
    b[24..32].copy_from_slice(&mac.to_be_bytes());
    Ok(())
}

/// Reads stamp and MAC from the first [`LEN`] bytes of echo data.
pub fn parse(buf: &[u8]) -> Result<(Stamp, u64)> {
    let b = buf.get(..LEN).ok_or(WireError::Truncated)?;
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_be_bytes(w)
    };
    let stamp = Stamp {
        session: u32_at(0),
        n: u64_at(4),
        cookie: u32_at(12),
        t_send_ns: u64_at(16),
    };
    Ok((stamp, u64_at(24)))
}

/// What the payload of a reply says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ours, untampered: the stamp is trustworthy.
    Valid(Stamp),
    /// Another session's or another program's echo (different session id, or too short).
    Foreign,
    /// Our session id, but the MAC does not verify: forged, or altered in flight.
    Forged,
}

/// Checks echo data against the key, the target it came from and the echo identifiers.
#[inline]
pub fn verify(
    key: &Key,
    session: u32,
    target: IpAddr,
    ident: u16,
    seq: u16,
    data: &[u8],
) -> Verdict {
    let Ok((stamp, mac)) = parse(data) else {
        return Verdict::Foreign;
    };
    if stamp.session != session {
        return Verdict::Foreign;
    }
    if key.mac(target, ident, seq, &stamp) != mac {
        return Verdict::Forged;
    }
    Verdict::Valid(stamp)
}

/// How probe numbers map to ICMP (identifier, sequence) and back.
///
/// `Spread` (the default) gives each block of 65,536 probes its own identifier,
/// `id = base + (n >> 16)`, and a sequence that is a keyed permutation of `n & 0xffff`
/// within the block, so (id, seq) names n modulo 2^32 and, with `base` and `key` random per
/// run, cannot be guessed off the path: an ICMP error that quotes only the 8-byte header (RFC
/// 792's minimum) matches a probe in flight with probability about (probes in flight) / 2^32
/// per forged error. `Fixed` keeps one identifier for the whole run (as `ping -e` or
/// net-ping's `sessionId`), and (id, seq) names n modulo 2^16 only: its sequence is keyed the
/// same way, but 16 bits can be guessed, so an error that quotes only them is not trusted
/// ([`Numbering::trusts_ids`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// Identifier advances every 65,536 probes from a (random) base.
    Spread {
        /// Identifier of probes 0..65,536.
        base: u16,
        /// Key of the sequence permutation (random per run).
        key: u32,
    },
    /// One identifier for every probe.
    Fixed {
        /// The identifier.
        ident: u16,
        /// Key of the sequence permutation (random per run).
        key: u32,
    },
}

impl Numbering {
    /// (identifier, sequence) of probe `n`.
    #[inline]
    pub fn ident_seq(self, n: u64) -> (u16, u16) {
        let seq = n as u16;
        match self {
            Numbering::Spread { base, key } => {
                let block = (n >> 16) as u16;
                (base.wrapping_add(block), permute16(key, block, seq))
            }
            Numbering::Fixed { ident, key } => (ident, permute16(key, ident, seq)),
        }
    }

    /// The low bits of n that (id, seq) name, or `None` for an identifier this numbering
    /// never uses. Returns `(n mod 2^bits, bits)`.
    #[inline]
    pub fn recover(self, ident: u16, seq: u16) -> Option<(u64, u32)> {
        match self {
            Numbering::Spread { base, key } => {
                let block = ident.wrapping_sub(base);
                let lo = unpermute16(key, block, seq);
                Some(((u64::from(block) << 16) | u64::from(lo), 32))
            }
            Numbering::Fixed { ident: mine, key } => {
                (ident == mine).then(|| (u64::from(unpermute16(key, mine, seq)), 16))
            }
        }
    }

    /// The identifiers the first `probes` probes carry: (first, how many), wrapping past
    /// 65,535. What a filter that admits only this run's replies must let through.
    pub fn ident_range(self, probes: u64) -> (u16, u32) {
        match self {
            Numbering::Spread { base, .. } => {
                let span = (probes >> 16).saturating_add(1).min(65_536);
                (base, span as u32)
            }
            Numbering::Fixed { ident, .. } => (ident, 1),
        }
    }

    /// Whether (id, seq) alone may stand for a probe (an ICMP error quoting only the 8-byte
    /// header): with 32 unguessable bits a blind forger hits a probe in flight with
    /// probability (in flight) / 2^32; with a fixed identifier, only 16 bits are unknown.
    pub fn trusts_ids(self) -> bool {
        self.bits() == 32
    }

    /// How many low bits of n the (id, seq) pair carries.
    pub fn bits(self) -> u32 {
        match self {
            Numbering::Spread { .. } => 32,
            Numbering::Fixed { .. } => 16,
        }
    }
}

/// Rounds of the sequence's Feistel network: four make a 16-bit permutation whose outputs an
/// observer of a few cannot predict without the key.
const ROUNDS: u32 = 4;

/// The round function: 8 bits from the key, the block, the round and the right half.
#[inline]
fn round(key: u32, block: u16, r: u32, x: u8) -> u8 {
    let mut z = u64::from(key) << 32 | u64::from(block) << 16 | u64::from(r) << 8 | u64::from(x);
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (z ^ (z >> 33)) as u8
}

/// The keyed permutation of the 65,536 sequences of identifier block `block`.
#[inline]
fn permute16(key: u32, block: u16, x: u16) -> u16 {
    let (mut l, mut r) = ((x >> 8) as u8, x as u8);
    for i in 0..ROUNDS {
        (l, r) = (r, l ^ round(key, block, i, r));
    }
    u16::from(l) << 8 | u16::from(r)
}

/// The inverse of [`permute16`].
#[inline]
fn unpermute16(key: u32, block: u16, y: u16) -> u16 {
    let (mut l, mut r) = ((y >> 8) as u8, y as u8);
    for i in (0..ROUNDS).rev() {
        (l, r) = (r ^ round(key, block, i, l), l);
    }
    u16::from(l) << 8 | u16::from(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: Key = Key::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

    /// The siphasher crate's SipHash-1-3 of `m`: the reference.
    fn reference(k0: u64, k1: u64, m: &[u8]) -> u64 {
        use core::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
        h.write(m);
        h.finish()
    }

    /// sip13 of every length from 0 to 64 (the words, every tail, the length byte) under
    /// random keys and bytes, against the reference.
    macro_rules! sip13_agrees {
        ($k0:expr, $k1:expr, $bytes:expr, $($n:literal)*) => {$(
            let mut m = [0u8; $n];
            m.copy_from_slice(&$bytes[..$n]);
            assert_eq!(sip13($k0, $k1, &m), reference($k0, $k1, &m), "{} bytes", $n);
        )*};
    }

    proptest! {
        #[test]
        fn sip13_is_siphash_1_3(k0: u64, k1: u64, bytes in proptest::collection::vec(any::<u8>(), 64)) {
            sip13_agrees!(k0, k1, bytes,
                0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
                31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57
                58 59 60 61 62 63 64);
        }

        #[test]
        fn keyed_ids_and_macs_are_siphash_1_3_of_their_messages(
            k0: u64, k1: u64, a: [u8; 16], ident: u16, seq: u16, n: u64, t: u64, attempt: u8,
        ) {
            let key = Key::new(k0, k1);
            let target = IpAddr::V6(Ipv6Addr::from(a));
            let s = Stamp { session: 7, n, cookie: 3, t_send_ns: t };
            let mut m = a.to_vec();
            m.extend_from_slice(&ident.to_be_bytes());
            m.extend_from_slice(&seq.to_be_bytes());
            let mut st = [0u8; 24];
            write_stamp(&mut st, &s);
            m.extend_from_slice(&st);
            prop_assert_eq!(key.mac(target, ident, seq, &s), reference(k0, k1, &m));
            let mut m = vec![IP_IDENT_DOMAIN];
            m.extend_from_slice(&a);
            m.extend_from_slice(&ident.to_be_bytes());
            m.extend_from_slice(&seq.to_be_bytes());
            prop_assert_eq!(key.ip_ident(target, ident, seq), (reference(k0, k1, &m) >> 48) as u16);
            let mut m = vec![IDS_DOMAIN];
            m.extend_from_slice(&a);
            m.push(attempt);
            let x = reference(k0, k1, &m);
            prop_assert_eq!(key.probe_ids(target, attempt), ((x >> 48) as u16, (x >> 32) as u16));
        }
    }

    fn stamp() -> Stamp {
        Stamp {
            session: 0xdead_beef,
            n: 70_000,
            cookie: 42,
            t_send_ns: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn round_trip_and_verify() {
        let t: IpAddr = "198.19.3.4".parse().unwrap();
        let s = stamp();
        let num = Numbering::Spread {
            base: 0xfffe,
            key: 3,
        };
        let (id, seq) = num.ident_seq(s.n);
        let mut b = [PAD_BYTE; 56];
        emit(&mut b, &s, KEY.mac(t, id, seq, &s)).unwrap();
        assert_eq!(verify(&KEY, s.session, t, id, seq, &b), Verdict::Valid(s));
        // Another target, identifier or sequence, a flipped bit: forged.
        let other: IpAddr = "198.19.3.5".parse().unwrap();
        assert_eq!(verify(&KEY, s.session, other, id, seq, &b), Verdict::Forged);
        assert_eq!(verify(&KEY, s.session, t, id ^ 1, seq, &b), Verdict::Forged);
        assert_eq!(verify(&KEY, s.session, t, id, seq ^ 1, &b), Verdict::Forged);
        let mut bad = b;
        bad[20] ^= 1;
        assert_eq!(verify(&KEY, s.session, t, id, seq, &bad), Verdict::Forged);
        // Another session, or too short: foreign.
        assert_eq!(verify(&KEY, 1, t, id, seq, &b), Verdict::Foreign);
        assert_eq!(
            verify(&KEY, s.session, t, id, seq, &b[..31]),
            Verdict::Foreign
        );
        // Another key: forged.
        let k2 = Key::new(1, 2);
        assert_eq!(verify(&k2, s.session, t, id, seq, &b), Verdict::Forged);
    }

    #[test]
    fn ip_idents_are_keyed_and_spread() {
        let t: IpAddr = "198.19.0.13".parse().unwrap();
        let other_key = Key::new(1, 2);
        // Over one identifier's 65,536 sequences: every IP ID value shows up (no bias a
        // forger could use), and another key or target gives other values nearly always.
        let mut seen = vec![0u32; 65_536];
        let (mut same_key, mut same_target) = (0, 0);
        let u: IpAddr = "198.19.0.14".parse().unwrap();
        for seq in 0..=u16::MAX {
            let id = KEY.ip_ident(t, 0x4242, seq);
            seen[usize::from(id)] += 1;
            same_key += u32::from(other_key.ip_ident(t, 0x4242, seq) == id);
            same_target += u32::from(KEY.ip_ident(u, 0x4242, seq) == id);
        }
        let max = seen.iter().max().copied().unwrap_or(0);
        assert!(max <= 12, "an IP ID came {max} times of 65,536");
        assert!(same_key < 8 && same_target < 8, "{same_key} {same_target}");
        // Not the identifiers a scan's probe_ids give, nor their halves.
        assert_ne!(KEY.ip_ident(t, 1, 2), KEY.probe_ids(t, 0).0);
    }

    #[test]
    fn v4_and_mapped_v6_differ_from_plain_v6() {
        let s = stamp();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "198.19.0.1".parse().unwrap();
        assert_ne!(KEY.mac(a, 1, 1, &s), KEY.mac(b, 1, 1, &s));
    }

    #[test]
    fn sequences_are_a_keyed_permutation() {
        for (key, block) in [(0u32, 0u16), (0xdead_beef, 7), (1, 65_535)] {
            let mut seen = vec![false; 65_536];
            for x in 0..=u16::MAX {
                let y = permute16(key, block, x);
                assert!(!seen[usize::from(y)], "{key} {block}: {y} twice");
                seen[usize::from(y)] = true;
                assert_eq!(unpermute16(key, block, y), x);
            }
        }
        // Consecutive probes do not have consecutive (or otherwise guessable) sequences, and
        // another key or block gives another order.
        let a: Vec<u16> = (0..8).map(|x| permute16(9, 0, x)).collect();
        let b: Vec<u16> = (0..8).map(|x| permute16(10, 0, x)).collect();
        let c: Vec<u16> = (0..8).map(|x| permute16(9, 1, x)).collect();
        assert!(a != b && a != c && b != c);
        assert!(
            a.windows(2)
                .filter(|w| w[1] == w[0].wrapping_add(1))
                .count()
                < 2
        );
    }

    #[test]
    fn an_off_path_spray_of_every_identifier_matches_no_probe() {
        // What a blind attacker sends: errors quoting every identifier with the first few
        // sequences (a count from 0 is what predictable numbering gave away). The probes in
        // flight are the first 8 of the run; over 64 runs (keys and bases), none is hit.
        let mut hits = 0;
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let num = Numbering::Spread {
                base: (x >> 48) as u16,
                key: (x >> 8) as u32,
            };
            for id in 0..=u16::MAX {
                for seq in 0..4u16 {
                    let (n_low, _) = num.recover(id, seq).unwrap();
                    hits += usize::from(n_low < 8);
                }
            }
        }
        // 64 runs × 2^18 guesses × 8 / 2^32 ≈ 0.03 expected.
        assert_eq!(hits, 0);
    }

    #[test]
    fn numbering_recovers() {
        let spread = Numbering::Spread {
            base: 65_530,
            key: 0x1234_5678,
        };
        for n in [
            0u64,
            1,
            65_535,
            65_536,
            1 << 20,
            (1 << 32) - 1,
            (1 << 32) + 5,
        ] {
            let (id, seq) = spread.ident_seq(n);
            assert_eq!(spread.recover(id, seq), Some((n & 0xffff_ffff, 32)));
        }
        let fixed = Numbering::Fixed { ident: 77, key: 9 };
        let (id, seq) = fixed.ident_seq(65_540);
        assert_eq!(id, 77);
        assert_eq!(fixed.recover(id, seq), Some((4, 16)));
        assert_eq!(fixed.recover(78, seq), None);
        assert!(spread.trusts_ids() && !fixed.trusts_ids());
    }

    proptest! {
        /// The id/seq MAC of one (target, attempt) never validates another target or another
        /// attempt (a collision has probability 2^-32 per pair: none in these cases), and
        /// always validates its own.
        #[test]
        fn probe_ids_name_one_target_and_attempt(
            k0 in any::<u64>(), k1 in any::<u64>(),
            a in any::<[u8; 16]>(), b in any::<[u8; 16]>(),
            v4 in any::<bool>(), t in 0u8..16, u in 0u8..16,
        ) {
            let key = Key::new(k0, k1);
            let addr = |x: [u8; 16]| -> IpAddr {
                if v4 { IpAddr::from([x[0], x[1], x[2], x[3]]) } else { IpAddr::from(x) }
            };
            let (ta, tb) = (addr(a), addr(b));
            let (id, seq) = key.probe_ids(ta, t);
            prop_assert_eq!(key.probe_attempt(ta, id, seq, 15), Some(t));
            if ta != tb {
                prop_assert_ne!(key.probe_ids(tb, t), (id, seq));
                prop_assert_eq!(key.probe_attempt(tb, id, seq, 15), None);
            }
            if t != u {
                prop_assert_ne!(key.probe_ids(ta, u), (id, seq));
            }
            // Another key names nothing of this run's.
            let other = Key::new(k0 ^ 1, k1);
            prop_assert_ne!(other.probe_ids(ta, t), (id, seq));
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&data);
            let _ = verify(&KEY, 0, "198.19.0.1".parse().unwrap(), 0, 0, &data);
        }
    }

    #[test]
    fn ident_ranges_cover_the_probes() {
        let spread = Numbering::Spread {
            base: 65_000,
            key: 5,
        };
        assert_eq!(spread.ident_range(1), (65_000, 1));
        assert_eq!(spread.ident_range(65_536), (65_000, 2));
        assert_eq!(spread.ident_range(u64::MAX), (65_000, 65_536));
        for n in [0, 65_535, 65_536, 1 << 20] {
            let (first, span) = spread.ident_range(n + 1);
            let (id, _) = spread.ident_seq(n);
            assert!(u32::from(id.wrapping_sub(first)) < span, "probe {n}");
        }
        assert_eq!(
            Numbering::Fixed { ident: 7, key: 1 }.ident_range(1 << 30),
            (7, 1)
        );
    }
}
