//! Probe templates. A buffer is prepared once with every constant byte (headers, padding and
//! the checksums of those constant parts); each probe then patches only its destination, TTL,
//! identifier, sequence and payload stamp, and finishes the checksums from precomputed partial
//! sums — RFC 1624's incremental update with the patched fields' old value zero.
//!
//! Two layouts: [`Layer::Icmp`] (the ICMP message only, for raw sockets: the kernel writes the
//! IP header, and the ICMPv6 checksum) and [`Layer::Ethernet`] (a whole frame, for engines that
//! bypass the kernel stack).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::error::{Result, WireError};
use crate::payload::{self, Stamp};
use crate::registry::Family;
use crate::{ethernet, icmp, ipv4, ipv6};

/// Where a template's bytes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The ICMP message only.
    Icmp,
    /// A whole Ethernet frame from `src_mac` (and `src_ip`) to the next hop `dst_mac`.
    Ethernet {
        /// Our MAC address.
        src_mac: [u8; 6],
        /// The next hop's MAC address.
        dst_mac: [u8; 6],
        /// Our address; its family must be the template's.
        src_ip: IpAddr,
    },
}

/// The largest ICMP payload: an IPv4 datagram is at most 65,535 bytes.
pub const MAX_PAYLOAD: usize = 65_535 - ipv4::HEADER_LEN - icmp::HEADER_LEN;

/// The IP header a probe of `family` carries (no options, no extension headers).
pub const fn ip_header_len(family: Family) -> usize {
    match family {
        Family::V4 => ipv4::HEADER_LEN,
        Family::V6 => ipv6::HEADER_LEN,
    }
}

/// Bytes of the IP packet of an echo request with `payload` bytes of payload.
pub const fn ip_packet_len(family: Family, payload: usize) -> usize {
    ip_header_len(family) + icmp::HEADER_LEN + payload
}

/// Bytes of the Ethernet frame (header included, FCS not) of such a request.
pub const fn ethernet_frame_len(family: Family, payload: usize) -> usize {
    ethernet::HEADER_LEN + ip_packet_len(family, payload)
}

/// Bits such a request takes on an Ethernet wire: the frame padded to the 46-byte minimum
/// payload, plus preamble and start delimiter (8), header (14), FCS (4) and the inter-frame
/// gap (12).
pub const fn ethernet_wire_bits(family: Family, payload: usize) -> usize {
    const OVERHEAD: usize = 8 + ethernet::HEADER_LEN + 4 + 12;
    let ip = ip_packet_len(family, payload);
    (if ip < 46 { 46 } else { ip } + OVERHEAD) * 8
}

/// The payload of an echo request whose IP packet is `packet` bytes (NetXMS's packet size
/// counts the IP header): `None` when the headers alone exceed it.
pub const fn payload_of_packet(family: Family, packet: usize) -> Option<usize> {
    packet.checked_sub(ip_header_len(family) + icmp::HEADER_LEN)
}

/// A prepared probe layout for one family, layer and payload size.
#[derive(Debug, Clone)]
pub struct Template {
    family: Family,
    layer: Layer,
    bytes: Vec<u8>,
    /// Offset of the IP header (Ethernet layer only).
    ip_at: usize,
    /// Offset of the ICMP header.
    icmp_at: usize,
    /// Unfolded sum of the constant ICMP bytes (checksum field zero, patched fields zero).
    icmp_sum: u64,
    /// Unfolded sum of the constant IP header bytes (IPv4, Ethernet layer only).
    ip_sum: u64,
    /// Whether the ICMP checksum is left to the kernel (raw ICMPv6 sockets compute it).
    kernel_checksum: bool,
    /// With the kernel's checksum: the sum of the pseudo-header it adds, but for the
    /// destination ([`Template::with_flow_source`]), so that a flow's checksum is the same as
    /// when asdic computes it.
    flow_pseudo: Option<u64>,
}

impl Template {
    /// A template for echo requests carrying `payload_len` bytes of ICMP data.
    ///
    /// `payload_len` must be at least [`payload::LEN`]; with [`Layer::Ethernet`] the frame must
    /// fit in 65,535 bytes of IP.
    pub fn new(family: Family, layer: Layer, payload_len: usize) -> Result<Self> {
        if !(payload::LEN..=MAX_PAYLOAD).contains(&payload_len) {
            return Err(WireError::Malformed);
        }
        let icmp_len = icmp::HEADER_LEN + payload_len;
        let (ip_at, icmp_at) = match (layer, family) {
            (Layer::Icmp, _) => (0, 0),
            (Layer::Ethernet { .. }, Family::V4) => (14, 14 + ipv4::HEADER_LEN),
            (Layer::Ethernet { .. }, Family::V6) => (14, 14 + ipv6::HEADER_LEN),
        };
        let mut bytes = vec![payload::PAD_BYTE; icmp_at + icmp_len];
        icmp::emit_echo_header(&mut bytes[icmp_at..], icmp::echo_request(family), 0, 0)?;
        bytes[icmp_at + icmp::HEADER_LEN..][..payload::LEN].fill(0);
        let mut ip_sum = 0;
        if let Layer::Ethernet {
            src_mac,
            dst_mac,
            src_ip,
        } = layer
        {
            match (family, src_ip) {
                (Family::V4, IpAddr::V4(src)) => {
                    ethernet::emit(&mut bytes, dst_mac, src_mac, ethernet::ETHERTYPE_IPV4)?;
                    let r = ipv4::Repr {
                        src,
                        dst: Ipv4Addr::UNSPECIFIED,
                        protocol: ipv4::PROTO_ICMP,
                        payload_len: icmp_len,
                        ttl: 0,
                        ident: 0,
                    };
                    r.emit(&mut bytes[ip_at..])?;
                    bytes[ip_at + 10..ip_at + 12].fill(0);
                    ip_sum = checksum::sum(0, &bytes[ip_at..icmp_at]);
                }
                (Family::V6, IpAddr::V6(src)) => {
                    ethernet::emit(&mut bytes, dst_mac, src_mac, ethernet::ETHERTYPE_IPV6)?;
                    let r = ipv6::Repr {
                        src,
                        dst: Ipv6Addr::UNSPECIFIED,
                        next_header: ipv6::NEXT_ICMPV6,
                        payload_len: icmp_len,
                        hop_limit: 0,
                    };
                    r.emit(&mut bytes[ip_at..])?;
                }
                _ => return Err(WireError::Malformed),
            }
        }
        let mut icmp_sum = checksum::sum(0, &bytes[icmp_at..]);
        if let (
            Family::V6,
            Layer::Ethernet {
                src_ip: IpAddr::V6(src),
                ..
            },
        ) = (family, layer)
        {
            // The pseudo-header minus the destination, which each probe adds.
            let len = u32::try_from(icmp_len).map_err(|_| WireError::Malformed)?;
            icmp_sum += checksum::pseudo_v6(&src, &Ipv6Addr::UNSPECIFIED, len, ipv6::NEXT_ICMPV6);
        }
        let kernel_checksum = family == Family::V6 && layer == Layer::Icmp;
        Ok(Template {
            family,
            layer,
            bytes,
            ip_at,
            icmp_at,
            icmp_sum,
            ip_sum,
            kernel_checksum,
            flow_pseudo: None,
        })
    }

    /// For probes whose ICMPv6 checksum the kernel computes: the source address it will use,
    /// so that a flow ([`ProbeFields::flow`]) gets the checksum it gets in whole frames.
    /// Without it a flow still keeps one checksum, but another one.
    pub fn with_flow_source(mut self, src: Ipv6Addr) -> Self {
        if self.kernel_checksum {
            let len = (self.bytes.len() - self.icmp_at) as u32;
            self.flow_pseudo = Some(checksum::pseudo_v6(
                &src,
                &Ipv6Addr::UNSPECIFIED,
                len,
                ipv6::NEXT_ICMPV6,
            ));
        }
        self
    }

    /// Bytes of one probe.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a template holds at least the ICMP header and payload.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The family of the probes.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Writes the constant bytes into `buf[..len()]`. Do it once per buffer.
    pub fn prepare(&self, buf: &mut [u8]) -> Result<()> {
        buf.get_mut(..self.bytes.len())
            .ok_or(WireError::Truncated)?
            .copy_from_slice(&self.bytes);
        Ok(())
    }

    /// Patches a prepared buffer into the probe for `dst`: identifiers, stamp, MAC, TTL, and
    /// checksums. No allocation; touches only the patched fields and checksums.
    #[inline]
    pub fn patch(&self, buf: &mut [u8], p: &ProbeFields) -> Result<()> {
        let buf = buf
            .get_mut(..self.bytes.len())
            .ok_or(WireError::Truncated)?;
        let m = &mut buf[self.icmp_at..];
        m[icmp::field::IDENT].copy_from_slice(&p.ident.to_be_bytes());
        m[icmp::field::SEQ].copy_from_slice(&p.seq.to_be_bytes());
        payload::emit(&mut m[icmp::HEADER_LEN..], &p.stamp, p.mac)?;
        let mut acc = self.icmp_sum;
        // Identifier, sequence and the stamp: the patched bytes, contiguous.
        acc = checksum::sum(
            acc,
            &m[icmp::field::IDENT.start..icmp::HEADER_LEN + payload::LEN],
        );
        if let Layer::Ethernet { .. } = self.layer {
            let ip = &mut buf[self.ip_at..self.icmp_at];
            match (self.family, p.dst) {
                (Family::V4, IpAddr::V4(d)) => {
                    ip[ipv4::field::TTL] = p.ttl;
                    ip[ipv4::field::IDENT].copy_from_slice(&p.ip_ident.to_be_bytes());
                    ip[ipv4::field::DST].copy_from_slice(&d.octets());
                    // The TTL is the high byte of its 16-bit word (TTL, protocol).
                    let s = self.ip_sum + (u64::from(p.ttl) << 8) + u64::from(p.ip_ident);
                    let c = checksum::finish(checksum::sum(s, &d.octets()));
                    ip[ipv4::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
                }
                (Family::V6, IpAddr::V6(d)) => {
                    ip[ipv6::field::HOP_LIMIT] = p.ttl;
                    ip[ipv6::field::DST].copy_from_slice(&d.octets());
                    acc = checksum::sum(acc, &d.octets());
                }
                _ => return Err(WireError::Malformed),
            }
        }
        // The flow word, right after the stamp and its MAC (outside what the MAC covers):
        // chosen so that the message sums to the flow's value, or the padding it replaced.
        let word_at = self.icmp_at + icmp::HEADER_LEN + FLOW_WORD;
        match (p.flow, buf.get_mut(word_at..word_at + 2)) {
            (Some(target_sum), Some(word)) => {
                let pad = u64::from(!PAD_WORD);
                // What the kernel will add: the pseudo-header, with this probe's destination.
                let pseudo = match (self.flow_pseudo, p.dst) {
                    (Some(s), IpAddr::V6(d)) => checksum::sum(s, &d.octets()),
                    _ => 0,
                };
                let w = ones_add(target_sum, !fold(acc + pad + pseudo));
                word.copy_from_slice(&w.to_be_bytes());
                acc += pad + u64::from(w);
            }
            (Some(_), None) => return Err(WireError::Truncated),
            (None, Some(word)) => word.fill(payload::PAD_BYTE),
            (None, None) => {}
        }
        let c = if self.kernel_checksum {
            0
        } else {
            checksum::finish(acc)
        };
        buf[self.icmp_at..][icmp::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }

    /// Whether this template writes the IPv4 header, and with it [`ProbeFields::ip_ident`]
    /// (an Ethernet-layer IPv4 template: the XDP engine's frames).
    pub fn writes_ip_ident(&self) -> bool {
        self.family == Family::V4 && matches!(self.layer, Layer::Ethernet { .. })
    }

    /// Whether probes of this template have room for the flow word ([`FLOW_PAYLOAD`]).
    pub fn has_flow_word(&self) -> bool {
        self.bytes.len() >= self.icmp_at + icmp::HEADER_LEN + FLOW_PAYLOAD
    }
}

/// Payload offset of the flow word: the 16 bits after the stamp and its MAC that keep every
/// probe of a flow at one ICMP checksum ([`ProbeFields::flow`]).
pub const FLOW_WORD: usize = payload::LEN;
/// The smallest payload that holds the flow word.
pub const FLOW_PAYLOAD: usize = FLOW_WORD + 2;

const PAD_WORD: u16 = u16::from_be_bytes([payload::PAD_BYTE, payload::PAD_BYTE]);

/// `acc` folded to 16 bits (one's complement sum, not complemented).
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's complement sum of two 16-bit words.
fn ones_add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The sum every probe of flow `flow` to `dst` is given (Paris traceroute): per-flow load
/// balancers hash the first bytes of the transport header, which for ICMP are type, code and
/// checksum, so all of a flow's probes take one path; another `flow` (a later MDA's
/// enumeration) gives another checksum. In 1..=0xfffe, so that one's complement has one
/// representation of it.
pub fn flow_sum(dst: IpAddr, flow: u16) -> u16 {
    let a = match dst {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    // SplitMix64's finaliser over the address's halves and the flow.
    let mut z = (a as u64) ^ ((a >> 64) as u64).rotate_left(29) ^ u64::from(flow) << 48;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    1 + (z % 0xfffe) as u16
}

/// The per-probe fields [`Template::patch`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFields {
    /// Destination (used by the Ethernet layer; raw sockets take it from the send call).
    pub dst: IpAddr,
    /// TTL / hop limit (Ethernet layer; raw sockets set it on the socket).
    pub ttl: u8,
    /// ICMP identifier.
    pub ident: u16,
    /// ICMP sequence.
    pub seq: u16,
    /// The IPv4 header's identification field, where the template writes the IP header
    /// ([`Template::writes_ip_ident`]; ignored otherwise): [`crate::payload::Key::ip_ident`]
    /// for tracked probes, so that an error quoting only 8 bytes carries 16 more keyed bits.
    pub ip_ident: u16,
    /// The payload stamp.
    pub stamp: Stamp,
    /// Its MAC.
    pub mac: u64,
    /// For a probe of a flow: the sum ([`flow_sum`]) its ICMP message (with the IPv6
    /// pseudo-header where asdic computes it) is brought to by the flow word, so that every
    /// probe of the flow carries one checksum; `None` leaves the padding there.
    pub flow: Option<u16>,
}

impl ProbeFields {
    /// The fields of the echo request to `dst` with these identifier, sequence and stamp,
    /// MAC'd under `key`, with the TTL / hop limit `ttl`, no keyed IP ID and no flow (see
    /// [`ProbeFields::with_ip_ident`], [`ProbeFields::with_flow`]). The one way asdic's
    /// senders (the TX loop, the session, the benches) build a probe.
    #[inline]
    pub fn new(
        key: &payload::Key,
        dst: IpAddr,
        ttl: u8,
        ident: u16,
        seq: u16,
        stamp: Stamp,
    ) -> Self {
        ProbeFields {
            dst,
            ttl,
            ident,
            seq,
            ip_ident: 0,
            stamp,
            mac: key.mac(dst, ident, seq, &stamp),
            flow: None,
        }
    }

    /// The same with IPv4 IP ID `ip_ident` (frames asdic builds: [`Template::writes_ip_ident`]).
    #[inline]
    pub fn with_ip_ident(mut self, ip_ident: u16) -> Self {
        self.ip_ident = ip_ident;
        self
    }

    /// The same as a probe of flow `flow` ([`flow_sum`] of its destination), or of none.
    #[inline]
    pub fn with_flow(mut self, flow: Option<u16>) -> Self {
        self.flow = flow.map(|f| flow_sum(self.dst, f));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::{self, Inbound};
    use crate::payload::{Key, Verdict};

    const KEY: Key = Key::new(11, 22);

    fn fields(dst: IpAddr, n: u64) -> ProbeFields {
        let stamp = Stamp {
            session: 5,
            n,
            cookie: n as u32 * 3,
            t_send_ns: 1_000 + n,
        };
        let (ident, seq) = (0x4000 + (n >> 16) as u16, n as u16);
        ProbeFields::new(&KEY, dst, 33, ident, seq, stamp)
    }

    #[test]
    fn a_flow_has_one_checksum_whether_the_kernel_or_asdic_computes_it() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: IpAddr = "2001:db8:1:1::77".parse().unwrap();
        let eth = Layer::Ethernet {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src_ip: IpAddr::V6(src),
        };
        let frame = Template::new(Family::V6, eth, 40).unwrap();
        let raw = Template::new(Family::V6, Layer::Icmp, 40)
            .unwrap()
            .with_flow_source(src);
        for (n, flow) in [(1u64, 0u16), (2, 0), (70_000, 5)] {
            let f = fields(dst, n).with_flow(Some(flow));
            let mut a = vec![0u8; frame.len()];
            frame.prepare(&mut a).unwrap();
            frame.patch(&mut a, &f).unwrap();
            let mut b = vec![0u8; raw.len()];
            raw.prepare(&mut b).unwrap();
            raw.patch(&mut b, &f).unwrap();
            // What the kernel writes into the raw socket's message.
            let len = b.len() as u32;
            let IpAddr::V6(d) = dst else { unreachable!() };
            let kernel = checksum::finish(checksum::sum(
                checksum::pseudo_v6(&src, &d, len, ipv6::NEXT_ICMPV6),
                &b,
            ));
            let at = frame.icmp_at;
            assert_eq!(
                kernel.to_be_bytes(),
                [a[at + 2], a[at + 3]],
                "n {n} flow {flow}"
            );
            assert_eq!(kernel, !flow_sum(dst, flow));
        }
    }

    #[test]
    fn a_flow_keeps_one_checksum_whatever_the_probe() {
        let v4 = IpAddr::from([198, 19, 1, 9]);
        let v6: IpAddr = "2001:db8:1:1::9".parse().unwrap();
        let eth = |src_ip| Layer::Ethernet {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src_ip,
        };
        let cases = [
            (Family::V4, Layer::Icmp, v4),
            (Family::V4, eth(IpAddr::from([198, 18, 0, 1])), v4),
            (Family::V6, Layer::Icmp, v6),
            (Family::V6, eth("2001:db8::1".parse().unwrap()), v6),
        ];
        for (family, layer, dst) in cases {
            let t = Template::new(family, layer, FLOW_PAYLOAD).unwrap();
            assert!(t.has_flow_word());
            assert!(!Template::new(family, layer, 32).unwrap().has_flow_word());
            let mut buf = vec![0u8; t.len()];
            t.prepare(&mut buf).unwrap();
            let at = t.icmp_at;
            for flow in [0u16, 1, 7] {
                let mut seen = std::collections::BTreeSet::new();
                for n in [0u64, 1, 2, 65_536, 99_999, 1 << 40] {
                    let f = fields(dst, n).with_flow(Some(flow));
                    t.patch(&mut buf, &f).unwrap();
                    let m = &buf[at..];
                    // What the first bytes of the transport header say: type, code, checksum
                    // (for raw ICMPv6 the kernel's, from the message's sum and a constant
                    // pseudo-header).
                    let sum = if t.kernel_checksum {
                        checksum::sum(0, m)
                    } else {
                        u64::from(u16::from_be_bytes([m[2], m[3]]))
                    };
                    seen.insert((m[0], m[1], fold(sum)));
                    // Still a valid probe: the checksum verifies, the stamp too.
                    if family == Family::V4 {
                        assert_eq!(checksum::reference(m), 0);
                    }
                    let p = icmp::Packet::new_checked(m).unwrap();
                    assert_eq!(
                        crate::payload::verify(&KEY, 5, dst, f.ident, f.seq, p.data()),
                        Verdict::Valid(f.stamp)
                    );
                }
                assert_eq!(seen.len(), 1, "{family:?} {layer:?} flow {flow}: {seen:?}");
            }
            // Without a flow, the padding comes back.
            t.patch(&mut buf, &fields(dst, 3)).unwrap();
            assert_eq!(&buf[at + 8 + FLOW_WORD..][..2], &[payload::PAD_BYTE; 2]);
        }
        // Flows of one target differ (MDA's enumeration), and the sums avoid 0 and 0xffff.
        let sums: std::collections::BTreeSet<u16> = (0..64).map(|f| flow_sum(v4, f)).collect();
        assert!(sums.len() > 60);
        assert!(sums.iter().all(|&s| s != 0 && s != 0xffff));
        let t = Template::new(Family::V4, Layer::Icmp, 32).unwrap();
        let mut buf = vec![0u8; t.len()];
        let f = ProbeFields {
            flow: Some(1),
            ..fields(v4, 0)
        };
        assert_eq!(t.patch(&mut buf, &f), Err(WireError::Truncated));
    }

    #[test]
    fn icmp_layer_v4_checksum_matches_full_computation() {
        for size in [32, 56, 1000, 10_240] {
            let t = Template::new(Family::V4, Layer::Icmp, size).unwrap();
            assert_eq!(t.len(), 8 + size);
            let mut buf = vec![0u8; t.len()];
            t.prepare(&mut buf).unwrap();
            for n in [0u64, 1, 65_536, 1 << 40] {
                let f = fields(IpAddr::from([198, 19, 1, 2]), n);
                t.patch(&mut buf, &f).unwrap();
                assert_eq!(checksum::reference(&buf), 0, "size {size} n {n}");
                let m = icmp::Packet::new_checked(&buf[..]).unwrap();
                assert_eq!((m.msg_type(), m.ident(), m.seq()), (8, f.ident, f.seq));
                assert_eq!(
                    crate::payload::verify(&KEY, 5, f.dst, f.ident, f.seq, m.data()),
                    Verdict::Valid(f.stamp)
                );
            }
        }
    }

    #[test]
    fn ethernet_frames_parse_back_v4_and_v6() {
        let src4 = IpAddr::from([198, 18, 0, 1]);
        let l4 = Layer::Ethernet {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src_ip: src4,
        };
        let t = Template::new(Family::V4, l4, 56).unwrap();
        let mut buf = vec![0u8; t.len()];
        t.prepare(&mut buf).unwrap();
        let f = fields(IpAddr::from([198, 19, 200, 3]), 77);
        t.patch(&mut buf, &f).unwrap();
        let ip = ipv4::Packet::new_checked(&buf[14..]).unwrap();
        assert!(ip.checksum_ok());
        assert_eq!(
            (ip.ttl(), IpAddr::V4(ip.dst()), IpAddr::V4(ip.src())),
            (33, f.dst, src4)
        );
        assert!(
            icmp::Packet::new_checked(ip.payload())
                .unwrap()
                .checksum_ok_v4()
        );

        let src6: IpAddr = "2001:db8::1".parse().unwrap();
        let l6 = Layer::Ethernet {
            src_mac: [2; 6],
            dst_mac: [4; 6],
            src_ip: src6,
        };
        let t = Template::new(Family::V6, l6, 64).unwrap();
        let mut buf = vec![0u8; t.len()];
        t.prepare(&mut buf).unwrap();
        let f = fields("2001:db8:1::42".parse().unwrap(), 99);
        t.patch(&mut buf, &f).unwrap();
        // Turn the request into a reply to reuse the checksum-verifying parser: type 128 ->
        // 129 changes one checksum word, fixed incrementally.
        let old = u16::from_be_bytes([buf[54], buf[55]]);
        let ck = u16::from_be_bytes([buf[56], buf[57]]);
        buf[54] = 129;
        let new = u16::from_be_bytes([buf[54], buf[55]]);
        buf[56..58].copy_from_slice(&checksum::update16(ck, old, new).to_be_bytes());
        let Inbound::EchoReply(r) = inbound::parse_ethernet(&buf).unwrap() else {
            panic!()
        };
        assert_eq!((r.ident, r.seq, r.ttl), (f.ident, f.seq, Some(33)));
    }

    #[test]
    fn rejects_bad_sizes_and_families() {
        assert!(Template::new(Family::V4, Layer::Icmp, 31).is_err());
        assert!(Template::new(Family::V4, Layer::Icmp, MAX_PAYLOAD + 1).is_err());
        let l = Layer::Ethernet {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src_ip: "::1".parse().unwrap(),
        };
        assert!(Template::new(Family::V4, l, 56).is_err());
        let t = Template::new(Family::V4, Layer::Icmp, 56).unwrap();
        assert!(t.prepare(&mut [0u8; 10]).is_err());
        assert!(
            t.patch(&mut [0u8; 10], &fields(IpAddr::from([1, 2, 3, 4]), 0))
                .is_err()
        );
    }

    #[test]
    fn sizes_follow_the_headers() {
        assert_eq!(ip_packet_len(Family::V4, 32), 60);
        assert_eq!(ip_packet_len(Family::V6, 32), 80);
        assert_eq!(ethernet_frame_len(Family::V4, 56), 98);
        // 60 bytes of IPv4 padded to nothing (above 46), plus 38 around it.
        assert_eq!(ethernet_wire_bits(Family::V4, 32), (60 + 38) * 8);
        // A 10-byte payload: 38 bytes of IP, padded to 46.
        assert_eq!(ethernet_wire_bits(Family::V4, 10), (46 + 38) * 8);
        assert_eq!(payload_of_packet(Family::V4, 1000), Some(972));
        assert_eq!(payload_of_packet(Family::V6, 1000), Some(952));
        assert_eq!(payload_of_packet(Family::V6, 47), None);
        assert_eq!(MAX_PAYLOAD, 65_535 - 28);
    }
}
