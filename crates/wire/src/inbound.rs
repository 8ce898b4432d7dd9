//! What arrived: an echo reply, an ICMP error quoting one of our echo requests, or something
//! else. One entry point per capture layer (IPv4 packet, raw ICMPv6 message, IPv6 packet,
//! Ethernet frame), all returning the same [`Inbound`].
//!
//! The quoted datagram of an error (RFC 792: "Internet Header + 64 bits of Original Data
//! Datagram"; RFC 4443 §3: "as much of invoking packet as possible") is parsed far enough to
//! recover the probe: its destination, source, ICMP identifier and sequence, and whatever of
//! the echo payload was quoted.

use core::net::{IpAddr, Ipv6Addr};

use crate::checksum;
use crate::error::{Result, WireError};
use crate::registry::{self, Family};
use crate::{ethernet, icmp, ipv4, ipv6};

/// A received ICMP message, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// An echo reply.
    EchoReply(EchoReply<'a>),
    /// An ICMP error that quotes an ICMP echo request.
    Error(IcmpError<'a>),
    /// Anything else ICMP: echo requests, neighbour discovery, errors about other traffic.
    Other {
        /// ICMP family.
        family: Family,
        /// Message type.
        msg_type: u8,
    },
}

/// An echo reply's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply<'a> {
    /// ICMP family.
    pub family: Family,
    /// Who sent it.
    pub from: IpAddr,
    /// TTL / hop limit it arrived with, if the capture layer shows it.
    pub ttl: Option<u8>,
    /// Echo identifier.
    pub ident: u16,
    /// Echo sequence.
    pub seq: u16,
    /// Echo data (our payload, if it is our reply).
    pub data: &'a [u8],
}

/// An ICMP error about one of our echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError<'a> {
    /// ICMP family.
    pub family: Family,
    /// The router or host that sent the error.
    pub from: IpAddr,
    /// Error type.
    pub msg_type: u8,
    /// Error code.
    pub code: u8,
    /// The rest-of-header word: MTU of "packet too big", pointer of "parameter problem", …
    pub rest: u32,
    /// The better first hop a redirect names: ICMPv4 type 5's Gateway Internet Address
    /// (the rest-of-header word), ICMPv6 type 137's Target Address. `None` for other types.
    pub gateway: Option<IpAddr>,
    /// The echo request it quotes.
    pub probe: Quoted<'a>,
}

/// The echo request quoted inside an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted<'a> {
    /// Source of the quoted request (us, or a NAT's idea of us).
    pub src: IpAddr,
    /// Destination of the quoted request: the probe's target.
    pub dst: IpAddr,
    /// TTL / hop limit left in the quoted header when it expired or was rejected.
    pub ttl: u8,
    /// The quoted IPv4 header's identification field (`None` for IPv6).
    pub ip_ident: Option<u16>,
    /// Echo identifier.
    pub ident: u16,
    /// Echo sequence.
    pub seq: u16,
    /// The echo data that was quoted; may be shorter than the payload, even empty.
    pub data: &'a [u8],
}

/// Classifies a whole IPv4 packet (a raw ICMP socket's view). Verifies the ICMP checksum.
pub fn parse_ipv4(packet: &[u8]) -> Result<Inbound<'_>> {
    let ip = ipv4::Packet::new_checked(packet)?;
    if ip.protocol() != ipv4::PROTO_ICMP {
        return Err(WireError::Unsupported);
    }
    if ip.frag_offset() != 0 {
        return Err(WireError::Unsupported);
    }
    let src = IpAddr::V4(ip.src());
    let ttl = ip.ttl();
    let msg = icmp::Packet::new_checked(ip.into_payload())?;
    if !msg.checksum_ok_v4() {
        return Err(WireError::Checksum);
    }
    classify(Family::V4, msg, src, Some(ttl))
}

/// Classifies an ICMPv6 message without its IPv6 header (a raw ICMPv6 socket's view: the
/// kernel has verified the checksum; source and hop limit come from the socket).
pub fn parse_icmpv6(msg: &[u8], src: Ipv6Addr, hop_limit: Option<u8>) -> Result<Inbound<'_>> {
    let msg = icmp::Packet::new_checked(msg)?;
    classify(Family::V6, msg, IpAddr::V6(src), hop_limit)
}

/// Classifies a whole IPv6 packet, as it came off the wire (not reassembled): its extension
/// headers walked as asdic's XDP program walks them ([`ipv6::Packet::inbound_upper_layer`]:
/// at most 6, hop-by-hop first only, a fragment header anywhere is `Unsupported`). Verifies
/// the ICMPv6 checksum over the pseudo-header.
pub fn parse_ipv6(packet: &[u8]) -> Result<Inbound<'_>> {
    let ip = ipv6::Packet::new_checked(packet)?;
    let (src, dst, hop_limit) = (ip.src(), ip.dst(), ip.hop_limit());
    let (next, upper) = ip.into_inbound_upper_layer()?;
    if next != ipv6::NEXT_ICMPV6 {
        return Err(WireError::Unsupported);
    }
    let len = u32::try_from(upper.len()).map_err(|_| WireError::Malformed)?;
    let acc = checksum::pseudo_v6(&src, &dst, len, ipv6::NEXT_ICMPV6);
    if checksum::finish(checksum::sum(acc, upper)) != 0 {
        return Err(WireError::Checksum);
    }
    let msg = icmp::Packet::new_checked(upper)?;
    classify(Family::V6, msg, IpAddr::V6(src), Some(hop_limit))
}

/// Classifies an Ethernet frame carrying IPv4 or IPv6, with the checks asdic's XDP program
/// makes (`xdp/bpf/filter.bpf.c`) and the kernel makes for the other engines: no VLAN tag
/// (asdic sends untagged; a tagged frame is `Unsupported`), a sound IPv4 header (version,
/// IHL, header checksum: `Checksum`) and no fragment of either family (`Unsupported`: the
/// kernel reassembles those). Destination MAC and address are the engine's to check.
pub fn parse_ethernet(frame: &[u8]) -> Result<Inbound<'_>> {
    let eth = ethernet::Frame::new_checked(frame)?;
    if eth.tagged() {
        return Err(WireError::Unsupported);
    }
    let ethertype = eth.ethertype();
    let payload = &frame[frame.len() - eth.payload().len()..];
    match ethertype {
        ethernet::ETHERTYPE_IPV4 => {
            // Ethernet pads short frames: trust the IP total length, not the frame length.
            let p = trim_v4(payload)?;
            let ip = ipv4::Packet::new_checked(p)?;
            if !ip.checksum_ok() {
                return Err(WireError::Checksum);
            }
            if ip.more_fragments() || ip.frag_offset() != 0 {
                return Err(WireError::Unsupported);
            }
            parse_ipv4(p)
        }
        ethernet::ETHERTYPE_IPV6 => parse_ipv6(trim_v6(payload)?),
        _ => Err(WireError::Unsupported),
    }
}

/// Whether Ethernet frame `frame` is addressed to us: to `mac` or a group (broadcast,
/// multicast) address, untagged, and its IP packet to `ip` (its family's). The address checks
/// asdic's XDP program makes, made again in userspace for the frames it hands over.
pub fn ethernet_addressed_to(frame: &[u8], mac: [u8; 6], ip: IpAddr) -> bool {
    let Some(dst_mac) = frame.get(..6) else {
        return false;
    };
    if dst_mac != mac && dst_mac[0] & 1 == 0 {
        return false;
    }
    let Some(&[t0, t1]) = frame.get(12..14) else {
        return false;
    };
    match (u16::from_be_bytes([t0, t1]), ip) {
        (ethernet::ETHERTYPE_IPV4, IpAddr::V4(a)) => frame.get(30..34) == Some(&a.octets()[..]),
        (ethernet::ETHERTYPE_IPV6, IpAddr::V6(a)) => frame.get(38..54) == Some(&a.octets()[..]),
        _ => false,
    }
}

fn trim_v4(b: &[u8]) -> Result<&[u8]> {
    let total = b.get(2..4).ok_or(WireError::Truncated)?;
    let total = usize::from(u16::from_be_bytes([total[0], total[1]]));
    b.get(..total).ok_or(WireError::Truncated)
}

fn trim_v6(b: &[u8]) -> Result<&[u8]> {
    let plen = b.get(4..6).ok_or(WireError::Truncated)?;
    let total = ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([plen[0], plen[1]]));
    b.get(..total).ok_or(WireError::Truncated)
}

fn classify<'a>(
    family: Family,
    msg: icmp::Packet<&'a [u8]>,
    from: IpAddr,
    ttl: Option<u8>,
) -> Result<Inbound<'a>> {
    let t = msg.msg_type();
    if t == icmp::echo_reply(family) {
        return Ok(Inbound::EchoReply(EchoReply {
            family,
            from,
            ttl,
            ident: msg.ident(),
            seq: msg.seq(),
            data: msg.into_data(),
        }));
    }
    if family == Family::V6 && t == V6_REDIRECT {
        return redirect_v6(msg, from);
    }
    if !quotes_datagram(family, t) {
        return Ok(Inbound::Other {
            family,
            msg_type: t,
        });
    }
    let (code, rest) = (msg.code(), msg.rest());
    let gateway = (family == Family::V4 && t == V4_REDIRECT)
        .then(|| IpAddr::V4(core::net::Ipv4Addr::from(rest)));
    let quoted = match family {
        Family::V4 => quoted_v4(msg.into_data()),
        Family::V6 => quoted_v6(msg.into_data()),
    };
    match quoted {
        Ok(Some(probe)) => Ok(Inbound::Error(IcmpError {
            family,
            from,
            msg_type: t,
            code,
            rest,
            gateway,
            probe,
        })),
        // An error about somebody else's traffic, or about a fragment we cannot read.
        Ok(None) | Err(WireError::Unsupported) => Ok(Inbound::Other {
            family,
            msg_type: t,
        }),
        Err(e) => Err(e),
    }
}

/// ICMPv4 Redirect.
const V4_REDIRECT: u8 = 5;
/// ICMPv6 Redirect (a neighbour-discovery message, RFC 4861 §4.5).
const V6_REDIRECT: u8 = 137;
/// The Redirected Header option (RFC 4861 §4.6.3).
const ND_OPT_REDIRECTED_HEADER: u8 = 4;

/// An ICMPv6 Redirect quoting one of our echo requests (RFC 4861 §4.5):
///
/// ```text
///  0                   1                   2                   3
/// |     Type      |     Code      |          Checksum             |
/// |                           Reserved                            |
/// +                       Target Address (16)                     +
/// +                     Destination Address (16)                  +
/// |   Options ...
/// ```
/// The invoking packet rides in the Redirected Header option (§4.6.3): type 4, length in
/// units of 8 octets, 6 reserved octets, then "as much of the forwarded packet as can fit".
/// A redirect without that option, or whose option quotes no echo request, is `Other`.
fn redirect_v6<'a>(msg: icmp::Packet<&'a [u8]>, from: IpAddr) -> Result<Inbound<'a>> {
    let (code, rest) = (msg.code(), msg.rest());
    let body = msg.into_data();
    let other = Inbound::Other {
        family: Family::V6,
        msg_type: V6_REDIRECT,
    };
    let target = body.get(..16).ok_or(WireError::Truncated)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(target);
    let gateway = IpAddr::V6(Ipv6Addr::from(a));
    let mut opts = body.get(32..).ok_or(WireError::Truncated)?;
    while let [ty, len, ..] = *opts {
        let len = usize::from(len) * 8;
        if len == 0 {
            // RFC 4861 §4.6: a zero length is invalid; nodes discard the message.
            return Err(WireError::Malformed);
        }
        let opt = opts.get(..len).ok_or(WireError::Truncated)?;
        if ty == ND_OPT_REDIRECTED_HEADER {
            let quote = opt.get(8..).ok_or(WireError::Truncated)?;
            return match quoted_v6(quote) {
                Ok(Some(probe)) => Ok(Inbound::Error(IcmpError {
                    family: Family::V6,
                    from,
                    msg_type: V6_REDIRECT,
                    code,
                    rest,
                    gateway: Some(gateway),
                    probe,
                })),
                Ok(None) | Err(WireError::Unsupported) => Ok(other),
                Err(e) => Err(e),
            };
        }
        opts = &opts[len..];
    }
    Ok(other)
}

/// Error types whose body is the invoking datagram.
fn quotes_datagram(family: Family, t: u8) -> bool {
    match family {
        // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
        Family::V4 => matches!(t, 3 | 4 | 5 | 11 | 12),
        Family::V6 => registry::is_error(Family::V6, t),
    }
}

fn quoted_v4(body: &[u8]) -> Result<Option<Quoted<'_>>> {
    let ip = ipv4::Packet::new_quoted(body)?;
    if ip.protocol() != ipv4::PROTO_ICMP || ip.frag_offset() != 0 {
        return Ok(None);
    }
    let (src, dst, ttl, ip_ident) = (ip.src(), ip.dst(), ip.ttl(), ip.ident());
    let m = icmp::Packet::new_checked(ip.into_payload())?;
    if m.msg_type() != icmp::V4_ECHO_REQUEST {
        return Ok(None);
    }
    Ok(Some(Quoted {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        ttl,
        ip_ident: Some(ip_ident),
        ident: m.ident(),
        seq: m.seq(),
        data: m.into_data(),
    }))
}

fn quoted_v6(body: &[u8]) -> Result<Option<Quoted<'_>>> {
    let ip = ipv6::Packet::new_quoted(body)?;
    let (src, dst, ttl) = (ip.src(), ip.dst(), ip.hop_limit());
    let (next, upper) = ip.into_upper_layer()?;
    if next != ipv6::NEXT_ICMPV6 {
        return Ok(None);
    }
    let m = icmp::Packet::new_checked(upper)?;
    if m.msg_type() != icmp::V6_ECHO_REQUEST {
        return Ok(None);
    }
    Ok(Some(Quoted {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        ttl,
        ip_ident: None,
        ident: m.ident(),
        seq: m.seq(),
        data: m.into_data(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    fn v4_packet(src: [u8; 4], dst: [u8; 4], ttl: u8, icmp_msg: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 20];
        ipv4::Repr {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            protocol: ipv4::PROTO_ICMP,
            payload_len: icmp_msg.len(),
            ttl,
            ident: 1,
        }
        .emit(&mut b)
        .unwrap();
        b.extend_from_slice(icmp_msg);
        b
    }

    fn icmp_msg(t: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut m = vec![t, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(body);
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn echo_reply_v4() {
        let m = icmp_msg(0, 0, [0x12, 0x34, 0, 9], b"0123456789abcdef");
        let p = v4_packet([198, 19, 0, 9], [198, 18, 0, 1], 63, &m);
        let Inbound::EchoReply(r) = parse_ipv4(&p).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(r.from, IpAddr::from([198, 19, 0, 9]));
        assert_eq!((r.ident, r.seq, r.ttl), (0x1234, 9, Some(63)));
        assert_eq!(r.data, b"0123456789abcdef");
        let mut bad = p.clone();
        bad[30] ^= 0xff;
        assert_eq!(parse_ipv4(&bad).unwrap_err(), WireError::Checksum);
    }

    #[test]
    fn unreachable_quoting_our_probe_v4() {
        // The router's error quotes our request's IP header and the first 8 ICMP bytes.
        let req = icmp_msg(8, 0, [0xab, 0xcd, 0, 3], &[0; 32]);
        let quoted = v4_packet([198, 18, 0, 1], [198, 19, 77, 5], 63, &req);
        let err = icmp_msg(3, 13, [0; 4], &quoted[..28]);
        let p = v4_packet([198, 18, 0, 2], [198, 18, 0, 1], 64, &err);
        let Inbound::Error(e) = parse_ipv4(&p).unwrap() else {
            panic!("not an error")
        };
        assert_eq!((e.msg_type, e.code), (3, 13));
        assert_eq!(e.from, IpAddr::from([198, 18, 0, 2]));
        assert_eq!(e.probe.dst, IpAddr::from([198, 19, 77, 5]));
        assert_eq!(e.probe.src, IpAddr::from([198, 18, 0, 1]));
        assert_eq!((e.probe.ident, e.probe.seq, e.probe.ttl), (0xabcd, 3, 63));
        assert!(e.probe.data.is_empty());
        // With the whole request quoted (Linux does), the payload comes along.
        let err = icmp_msg(11, 0, [0; 4], &quoted);
        let p = v4_packet([198, 18, 0, 2], [198, 18, 0, 1], 64, &err);
        let Inbound::Error(e) = parse_ipv4(&p).unwrap() else {
            panic!("not an error")
        };
        assert_eq!(e.probe.data.len(), 32);
        // An error about UDP traffic is not ours.
        let mut udp = quoted.clone();
        udp[9] = 17;
        let err = icmp_msg(3, 3, [0; 4], &udp[..28]);
        let p = v4_packet([198, 18, 0, 2], [198, 18, 0, 1], 64, &err);
        assert_eq!(
            parse_ipv4(&p).unwrap(),
            Inbound::Other {
                family: Family::V4,
                msg_type: 3
            }
        );
        // A quote cut inside the ICMP header is truncated, not a panic.
        let err = icmp_msg(3, 1, [0; 4], &quoted[..24]);
        let p = v4_packet([198, 18, 0, 2], [198, 18, 0, 1], 64, &err);
        assert_eq!(parse_ipv4(&p).unwrap_err(), WireError::Truncated);
    }

    fn v6_packet(src: &str, dst: &str, msg: &mut [u8]) -> Vec<u8> {
        let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        msg[2..4].copy_from_slice(&[0, 0]);
        let acc = checksum::pseudo_v6(&s, &d, msg.len() as u32, 58);
        let c = checksum::finish(checksum::sum(acc, msg));
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let mut b = vec![0u8; 40];
        ipv6::Repr {
            src: s,
            dst: d,
            next_header: 58,
            payload_len: msg.len(),
            hop_limit: 61,
        }
        .emit(&mut b)
        .unwrap();
        b.extend_from_slice(msg);
        b
    }

    #[test]
    fn v6_reply_and_error_through_every_entry_point() {
        let mut reply = vec![129, 0, 0, 0, 0, 5, 0, 6, 1, 2, 3, 4];
        let p = v6_packet("2001:db8:1::7", "2001:db8::1", &mut reply);
        let Inbound::EchoReply(r) = parse_ipv6(&p).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(
            (r.ident, r.seq, r.ttl, r.data),
            (5, 6, Some(61), &[1u8, 2, 3, 4][..])
        );
        let mut eth = vec![0u8; 14];
        ethernet::emit(&mut eth, [0; 6], [1; 6], ethernet::ETHERTYPE_IPV6).unwrap();
        eth.extend_from_slice(&p);
        eth.extend_from_slice(&[0; 6]); // trailer padding
        assert_eq!(parse_ethernet(&eth).unwrap(), parse_ipv6(&p).unwrap());
        let mut bad = p.clone();
        bad[45] ^= 1;
        assert_eq!(parse_ipv6(&bad).unwrap_err(), WireError::Checksum);

        let mut req = vec![128, 0, 0, 0, 0, 5, 0, 6, 9, 9, 9, 9];
        let q = v6_packet("2001:db8::1", "2001:db8:1::99", &mut req);
        let mut err = vec![1, 1, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&q);
        let src: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let Inbound::Error(e) = parse_icmpv6(&err, src, Some(64)).unwrap() else {
            panic!()
        };
        assert_eq!((e.msg_type, e.code, e.from), (1, 1, IpAddr::V6(src)));
        assert_eq!(e.probe.dst, "2001:db8:1::99".parse::<IpAddr>().unwrap());
        assert_eq!(
            (e.probe.ident, e.probe.seq, e.probe.data),
            (5, 6, &[9u8; 4][..])
        );
        // Neighbour solicitations and the like are "other".
        let ns = [135u8, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_icmpv6(&ns, src, None).unwrap(),
            Inbound::Other {
                family: Family::V6,
                msg_type: 135
            }
        );
    }

    #[test]
    fn redirects_name_their_gateway_v4_and_v6() {
        // ICMPv4 redirect: the gateway is the rest-of-header word.
        let req = icmp_msg(8, 0, [0xab, 0xcd, 0, 3], &[1; 32]);
        let quoted = v4_packet([198, 18, 0, 1], [198, 19, 0, 5], 63, &req);
        let err = icmp_msg(5, 1, [198, 18, 0, 9], &quoted);
        let p = v4_packet([198, 18, 0, 2], [198, 18, 0, 1], 64, &err);
        let Inbound::Error(e) = parse_ipv4(&p).unwrap() else {
            panic!("not an error")
        };
        assert_eq!((e.msg_type, e.code), (5, 1));
        assert_eq!(e.gateway, Some(IpAddr::from([198, 18, 0, 9])));
        assert_eq!(e.probe.dst, IpAddr::from([198, 19, 0, 5]));
        // Other errors name no gateway, though their rest word is kept.
        let err = icmp_msg(12, 0, [20, 0, 0, 0], &quoted);
        let p = v4_packet([198, 18, 0, 2], [198, 18, 0, 1], 64, &err);
        let Inbound::Error(e) = parse_ipv4(&p).unwrap() else {
            panic!("not an error")
        };
        assert_eq!((e.gateway, e.rest >> 24), (None, 20));

        // ICMPv6 redirect: target, destination, then options; ours is the Redirected Header.
        let mut req = vec![128, 0, 0, 0, 0, 5, 0, 6, 9, 9, 9, 9, 9, 9, 9, 9];
        let q = v6_packet("2001:db8::1", "2001:db8:1::99", &mut req);
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8:1::99".parse().unwrap();
        let redirect = |opts: &[u8]| {
            let mut m = vec![137, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&gw.octets());
            m.extend_from_slice(&dst.octets());
            m.extend_from_slice(opts);
            m
        };
        // A target link-layer address option first (type 2, 8 bytes), then the quote.
        let mut opts = vec![2, 1, 2, 0, 0, 0, 0, 1];
        let quote_len = q.len().div_ceil(8) * 8;
        opts.extend_from_slice(&[4, (1 + quote_len / 8) as u8, 0, 0, 0, 0, 0, 0]);
        opts.extend_from_slice(&q);
        opts.resize(8 + 8 + quote_len, 0);
        let m = redirect(&opts);
        let src: Ipv6Addr = "fe80::2".parse().unwrap();
        let Inbound::Error(e) = parse_icmpv6(&m, src, Some(255)).unwrap() else {
            panic!("not an error")
        };
        assert_eq!((e.family, e.msg_type, e.code), (Family::V6, 137, 0));
        assert_eq!(e.gateway, Some(IpAddr::V6(gw)));
        assert_eq!(e.probe.dst, IpAddr::V6(dst));
        assert_eq!((e.probe.ident, e.probe.seq), (5, 6));
        assert_eq!(e.probe.data, &[9u8; 8][..]);
        // Without the Redirected Header there is nothing of ours in it.
        let other = Inbound::Other {
            family: Family::V6,
            msg_type: 137,
        };
        assert_eq!(
            parse_icmpv6(&redirect(&opts[..8]), src, None).unwrap(),
            other
        );
        // A zero-length option is invalid (RFC 4861 §4.6); a cut one is truncated.
        assert_eq!(
            parse_icmpv6(&redirect(&[4, 0, 0, 0]), src, None).unwrap_err(),
            WireError::Malformed
        );
        assert_eq!(
            parse_icmpv6(&redirect(&opts[..20]), src, None).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            parse_icmpv6(&redirect(&[])[..30], src, None).unwrap_err(),
            WireError::Truncated
        );
    }

    fn eth(ethertype: u16, p: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        ethernet::emit(&mut f, [0; 6], [1; 6], ethertype).unwrap();
        f.extend_from_slice(p);
        f
    }

    #[test]
    fn ethernet_frames_are_checked_as_the_kernel_and_the_xdp_program_do() {
        let m = icmp_msg(0, 0, [0x12, 0x34, 0, 9], b"0123456789abcdef");
        let p = v4_packet([198, 19, 0, 9], [198, 18, 0, 1], 63, &m);
        assert!(matches!(
            parse_ethernet(&eth(ethernet::ETHERTYPE_IPV4, &p)),
            Ok(Inbound::EchoReply(_))
        ));
        // A bad IPv4 header checksum (the raw path never sees one: the kernel drops it).
        let mut bad = p.clone();
        bad[10] ^= 0x40;
        assert_eq!(
            parse_ethernet(&eth(ethernet::ETHERTYPE_IPV4, &bad)).unwrap_err(),
            WireError::Checksum
        );
        // A first fragment (MF) and a later one: the kernel's to reassemble.
        for (b6, b7) in [(0x20, 0), (0, 3)] {
            let mut frag = p.clone();
            frag[6] = b6;
            frag[7] = b7;
            frag[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&frag[..20]);
            frag[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(
                parse_ethernet(&eth(ethernet::ETHERTYPE_IPV4, &frag)).unwrap_err(),
                WireError::Unsupported
            );
        }
        // 802.1Q and 802.1ad tags: never ours.
        for tag in [ethernet::ETHERTYPE_VLAN, ethernet::ETHERTYPE_QINQ] {
            let mut inner = vec![0, 5, 0x08, 0x00];
            inner.extend_from_slice(&p);
            assert_eq!(
                parse_ethernet(&eth(tag, &inner)).unwrap_err(),
                WireError::Unsupported
            );
        }
        // An IPv6 reply behind hop-by-hop and destination options: walked to the reply.
        let mut reply = vec![129, 0, 0, 0, 0, 5, 0, 6, 1, 2, 3, 4];
        let plain = v6_packet("2001:db8:1::7", "2001:db8::1", &mut reply);
        let mut ext = plain[..40].to_vec();
        ext[6] = 0; // hop-by-hop
        ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[58, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&plain[40..]);
        let plen = (ext.len() - 40) as u16;
        ext[4..6].copy_from_slice(&plen.to_be_bytes());
        let frame = eth(ethernet::ETHERTYPE_IPV6, &ext);
        let Inbound::EchoReply(r) = parse_ethernet(&frame).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!((r.ident, r.seq, r.data), (5, 6, &[1u8, 2, 3, 4][..]));
    }

    #[test]
    fn frames_addressed_to_us_and_others() {
        let me = [2, 0, 0, 0, 0, 1];
        let m = icmp_msg(0, 0, [0x12, 0x34, 0, 9], b"data");
        let p = v4_packet([198, 19, 0, 9], [198, 18, 0, 1], 63, &m);
        let mut f = vec![0u8; 14];
        ethernet::emit(&mut f, me, [4; 6], ethernet::ETHERTYPE_IPV4).unwrap();
        f.extend_from_slice(&p);
        let ours = IpAddr::from([198, 18, 0, 1]);
        assert!(ethernet_addressed_to(&f, me, ours));
        assert!(!ethernet_addressed_to(
            &f,
            me,
            IpAddr::from([198, 18, 0, 99])
        ));
        assert!(!ethernet_addressed_to(&f, [2, 0, 0, 0, 0, 2], ours));
        assert!(!ethernet_addressed_to(
            &f,
            me,
            "2001:db8::1".parse().unwrap()
        ));
        let mut bcast = f.clone();
        bcast[..6].copy_from_slice(&[0xff; 6]);
        assert!(ethernet_addressed_to(&bcast, [2, 0, 0, 0, 0, 2], ours));
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0, 0, 5]);
        tagged.extend_from_slice(&f[12..]);
        assert!(!ethernet_addressed_to(&tagged, me, ours));
        let mut reply = vec![129, 0, 0, 0, 0, 5, 0, 6];
        let p6 = v6_packet("2001:db8:1::7", "2001:db8::1", &mut reply);
        let mut f6 = vec![0u8; 14];
        ethernet::emit(&mut f6, me, [4; 6], ethernet::ETHERTYPE_IPV6).unwrap();
        f6.extend_from_slice(&p6);
        assert!(ethernet_addressed_to(
            &f6,
            me,
            "2001:db8::1".parse().unwrap()
        ));
        assert!(!ethernet_addressed_to(
            &f6,
            me,
            "2001:db8::2".parse().unwrap()
        ));
        for cut in 0..f6.len() {
            let _ = ethernet_addressed_to(&f6[..cut], me, ours);
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_ipv4(&data);
            let _ = parse_ipv6(&data);
            let _ = parse_ethernet(&data);
            let _ = parse_icmpv6(&data, Ipv6Addr::LOCALHOST, None);
            let _ = ethernet_addressed_to(&data, [2; 6], IpAddr::from([198, 18, 0, 1]));
            let _ = ethernet_addressed_to(&data, [2; 6], IpAddr::V6(Ipv6Addr::LOCALHOST));
        }

        #[test]
        fn random_v6_redirects_never_panic(data in proptest::collection::vec(any::<u8>(), 0..160)) {
            let mut m = vec![137u8, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&data);
            let _ = parse_icmpv6(&m, Ipv6Addr::LOCALHOST, None);
            // With a plausible option header at the first option's place.
            if m.len() > 42 {
                m[40] = 4;
                m[41] %= 24;
                let _ = parse_icmpv6(&m, Ipv6Addr::LOCALHOST, None);
            }
        }

        #[test]
        fn mutated_errors_never_panic(
            cut in 0usize..120, flips in proptest::collection::vec((0usize..120, any::<u8>()), 0..6)
        ) {
            // Start from a valid error so mutations reach the deeper parsers.
            let req = icmp_msg(8, 0, [0xab, 0xcd, 0, 3], &[7; 40]);
            let quoted = v4_packet([198, 18, 0, 1], [198, 19, 77, 5], 63, &req);
            let err = icmp_msg(3, 13, [0; 4], &quoted);
            let mut p = v4_packet([198, 18, 0, 2], [198, 18, 0, 1], 64, &err);
            for (i, x) in flips { let i = i % p.len(); p[i] ^= x; }
            p.truncate(cut.max(1));
            let _ = parse_ipv4(&p);
            // And with fixed-up checksums so the quote parser is exercised, too.
            if p.len() > 28 {
                let m = &mut p[20..];
                m[2..4].copy_from_slice(&[0, 0]);
                let c = checksum::checksum(m);
                m[2..4].copy_from_slice(&c.to_be_bytes());
                let _ = parse_ipv4(&p);
            }
        }
    }
}
