//! IPv6 headers (RFC 8200) and the walk over extension headers to the upper layer.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Source Address (128 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Destination Address (128 bits)                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::net::Ipv6Addr;

use crate::error::{Result, WireError};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Next-header value of ICMPv6.
pub const NEXT_ICMPV6: u8 = 58;

/// Byte offsets of the fixed header's fields.
pub(crate) mod field {
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: core::ops::Range<usize> = 8..24;
    pub const DST: core::ops::Range<usize> = 24..40;
}

const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DEST_OPTS: u8 = 60;
/// Upper bound on extension headers walked, so a crafted chain cannot make us loop long.
const MAX_EXT_HEADERS: usize = 8;
/// Extension headers walked in a packet off the wire, as asdic's XDP program walks them.
pub const MAX_INBOUND_EXT: usize = 6;

/// A view over an IPv6 packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
    end: usize,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks version and that the payload length fits the buffer.
    pub fn new_checked(buf: T) -> Result<Self> {
        let p = Self::new_quoted(buf)?;
        if HEADER_LEN + p.payload_len() > p.buf.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    /// Like [`Packet::new_checked`] but accepts a buffer cut short (an ICMPv6 error's quote).
    pub fn new_quoted(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let end = (HEADER_LEN + plen).min(b.len());
        Ok(Packet { buf, end })
    }

    /// The payload length field.
    pub fn payload_len(&self) -> usize {
        let b = self.buf.as_ref();
        usize::from(u16::from_be_bytes([b[4], b[5]]))
    }

    /// The first next-header value.
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        addr(&self.buf.as_ref()[field::SRC])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        addr(&self.buf.as_ref()[field::DST])
    }

    /// The bytes after the fixed header (possibly cut short in a quote).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..self.end]
    }

    /// Walks extension headers to the upper layer: its protocol and bytes.
    ///
    /// A non-first fragment is [`WireError::Unsupported`]: it holds no upper-layer header.
    pub fn upper_layer(&self) -> Result<(u8, &[u8])> {
        let (next, at) = self.upper_offset()?;
        Ok((next, &self.buf.as_ref()[at..self.end]))
    }

    /// Protocol and offset of the upper layer.
    fn upper_offset(&self) -> Result<(u8, usize)> {
        let mut next = self.next_header();
        let mut at = HEADER_LEN;
        let b = &self.buf.as_ref()[..self.end];
        for _ in 0..MAX_EXT_HEADERS {
            match next {
                NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                    (next, at) = skip_ext(b, at)?;
                }
                NEXT_FRAGMENT => {
                    let h = b.get(at..at + 8).ok_or(WireError::Truncated)?;
                    if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                        return Err(WireError::Unsupported);
                    }
                    next = h[0];
                    at += 8;
                }
                _ => return Ok((next, at)),
            }
        }
        Err(WireError::Unsupported)
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Walks the extension headers of a packet off the wire (not reassembled) to the upper
    /// layer, as asdic's XDP program does (`xdp/bpf/filter.bpf.c`): hop-by-hop (only right
    /// after the fixed header, else `Malformed`), routing and destination options, at most
    /// [`MAX_INBOUND_EXT`] of them (more: `Unsupported`); a fragment header anywhere is
    /// `Unsupported` (the kernel reassembles fragments, the engines read them there).
    pub fn inbound_upper_layer(&self) -> Result<(u8, &[u8])> {
        let (next, at) = self.inbound_offset()?;
        Ok((next, &self.buf.as_ref()[at..self.end]))
    }

    fn inbound_offset(&self) -> Result<(u8, usize)> {
        let mut next = self.next_header();
        let mut at = HEADER_LEN;
        let b = &self.buf.as_ref()[..self.end];
        for depth in 0..=MAX_INBOUND_EXT {
            match next {
                NEXT_FRAGMENT => return Err(WireError::Unsupported),
                NEXT_HOP_BY_HOP if depth > 0 => return Err(WireError::Malformed),
                NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                    if depth == MAX_INBOUND_EXT {
                        return Err(WireError::Unsupported);
                    }
                    (next, at) = skip_ext(b, at)?;
                }
                _ => return Ok((next, at)),
            }
        }
        Err(WireError::Unsupported)
    }
}

/// The next header and the offset after the hop-by-hop, routing or destination-options
/// header at `at` of `b` (all three give their length in 8-octet units, the first excluded).
fn skip_ext(b: &[u8], at: usize) -> Result<(u8, usize)> {
    let h = b.get(at..at + 2).ok_or(WireError::Truncated)?;
    let end = at + (usize::from(h[1]) + 1) * 8;
    if end > b.len() {
        return Err(WireError::Truncated);
    }
    Ok((h[0], end))
}

impl<'a> Packet<&'a [u8]> {
    /// Like [`Packet::upper_layer`], borrowed for as long as the underlying buffer.
    pub fn into_upper_layer(self) -> Result<(u8, &'a [u8])> {
        let (next, at) = self.upper_offset()?;
        Ok((next, &self.buf[at..self.end]))
    }

    /// Like [`Packet::inbound_upper_layer`], borrowed for as long as the underlying buffer.
    pub fn into_inbound_upper_layer(self) -> Result<(u8, &'a [u8])> {
        let (next, at) = self.inbound_offset()?;
        Ok((next, &self.buf[at..self.end]))
    }
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(b);
    Ipv6Addr::from(o)
}

/// The fields asdic writes in an IPv6 header of its own (no extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header of the payload.
    pub next_header: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Repr {
    /// Reads a checked packet's fields.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
        }
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let plen = u16::try_from(self.payload_len).map_err(|_| WireError::Malformed)?;
        let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        h[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&plen.to_be_bytes());
        h[6] = self.next_header;
        h[field::HOP_LIMIT] = self.hop_limit;
        h[field::SRC].copy_from_slice(&self.src.octets());
        h[field::DST].copy_from_slice(&self.dst.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(next: u8, payload: &[u8]) -> Vec<u8> {
        let r = Repr {
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8:1::5".parse().unwrap(),
            next_header: next,
            payload_len: payload.len(),
            hop_limit: 64,
        };
        let mut b = vec![0u8; HEADER_LEN];
        r.emit(&mut b).unwrap();
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn round_trip() {
        let b = sample(NEXT_ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 2]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "2001:db8:1::5".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.hop_limit(), 64);
        let (nh, up) = p.upper_layer().unwrap();
        assert_eq!((nh, up.len()), (NEXT_ICMPV6, 8));
        assert_eq!(Repr::parse(&p).payload_len, 8);
    }

    #[test]
    fn walks_extension_headers() {
        // Hop-by-hop (8 bytes) then a first fragment header, then ICMPv6.
        let mut pl = vec![NEXT_FRAGMENT, 0, 1, 4, 0, 0, 0, 0];
        pl.extend_from_slice(&[NEXT_ICMPV6, 0, 0, 1, 0, 0, 0, 7]);
        pl.extend_from_slice(&[128, 0, 0, 0]);
        let b = sample(NEXT_HOP_BY_HOP, &pl);
        let p = Packet::new_checked(&b[..]).unwrap();
        let (nh, up) = p.upper_layer().unwrap();
        assert_eq!((nh, up), (NEXT_ICMPV6, &[128u8, 0, 0, 0][..]));
        // A later fragment carries no ICMPv6 header.
        let pl = [NEXT_ICMPV6, 0, 0x05, 0xa8, 0, 0, 0, 7, 1, 2];
        let b = sample(NEXT_FRAGMENT, &pl);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), WireError::Unsupported);
        // A hop-by-hop header claiming more bytes than there are.
        let b = sample(NEXT_HOP_BY_HOP, &[NEXT_ICMPV6, 3, 0, 0]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), WireError::Truncated);
    }

    /// A chain of `n` destination-options headers (8 bytes each), then ICMPv6.
    fn chain(first: u8, n: usize) -> Vec<u8> {
        let mut pl = vec![];
        for i in 0..n {
            let next = if i + 1 == n {
                NEXT_ICMPV6
            } else {
                NEXT_DEST_OPTS
            };
            pl.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        pl.extend_from_slice(&[129, 0, 0, 0, 0, 1, 0, 2]);
        sample(if n == 0 { NEXT_ICMPV6 } else { first }, &pl)
    }

    #[test]
    fn inbound_walk_is_the_xdp_programs() {
        // Up to six extension headers are walked, a seventh is too deep.
        for n in 0..=MAX_INBOUND_EXT {
            let b = chain(NEXT_DEST_OPTS, n);
            let p = Packet::new_checked(&b[..]).unwrap();
            let (nh, up) = p.inbound_upper_layer().unwrap();
            assert_eq!((nh, up.len()), (NEXT_ICMPV6, 8), "{n}");
        }
        let b = chain(NEXT_DEST_OPTS, MAX_INBOUND_EXT + 1);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.inbound_upper_layer().unwrap_err(), WireError::Unsupported);
        // Hop-by-hop first, then routing (a 16-byte one), then destination options.
        let mut pl = vec![NEXT_ROUTING, 0, 1, 4, 0, 0, 0, 0];
        pl.extend_from_slice(&[NEXT_DEST_OPTS, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        pl.extend_from_slice(&[NEXT_ICMPV6, 0, 1, 4, 0, 0, 0, 0]);
        pl.extend_from_slice(&[129, 0, 0, 0]);
        let b = sample(NEXT_HOP_BY_HOP, &pl);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.inbound_upper_layer().unwrap(),
            (NEXT_ICMPV6, &[129u8, 0, 0, 0][..])
        );
        // Hop-by-hop anywhere but first: malformed (RFC 8200 §4.1).
        let mut pl = vec![NEXT_HOP_BY_HOP, 0, 1, 4, 0, 0, 0, 0];
        pl.extend_from_slice(&[NEXT_ICMPV6, 0, 1, 4, 0, 0, 0, 0, 129, 0, 0, 0]);
        let b = sample(NEXT_DEST_OPTS, &pl);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.inbound_upper_layer().unwrap_err(), WireError::Malformed);
        // Every fragment, a first one too (which the lax walk of quotes accepts).
        let mut pl = vec![NEXT_FRAGMENT, 0, 1, 4, 0, 0, 0, 0];
        pl.extend_from_slice(&[NEXT_ICMPV6, 0, 0, 1, 0, 0, 0, 7, 129, 0, 0, 0]);
        let b = sample(NEXT_HOP_BY_HOP, &pl);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.upper_layer().is_ok());
        assert_eq!(p.inbound_upper_layer().unwrap_err(), WireError::Unsupported);
        // A chain cut short is truncated, never a panic.
        let b = chain(NEXT_DEST_OPTS, 3);
        for cut in HEADER_LEN..b.len() {
            if let Ok(p) = Packet::new_quoted(&b[..cut]) {
                let _ = p.inbound_upper_layer();
            }
        }
    }

    #[test]
    fn rejects_short_and_wrong_version() {
        let mut b = sample(NEXT_ICMPV6, &[0; 8]);
        assert_eq!(
            Packet::new_checked(&b[..47]).unwrap_err(),
            WireError::Truncated
        );
        assert!(Packet::new_quoted(&b[..47]).is_ok());
        b[0] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Malformed
        );
    }
}
