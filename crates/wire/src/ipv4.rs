//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::net::Ipv4Addr;

use crate::checksum;
use crate::error::{Result, WireError};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;

/// Byte offsets of the header's fields.
pub(crate) mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: core::ops::Range<usize> = 2..4;
    pub const IDENT: core::ops::Range<usize> = 4..6;
    pub const FLAGS_FRAG: core::ops::Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: core::ops::Range<usize> = 10..12;
    pub const SRC: core::ops::Range<usize> = 12..16;
    pub const DST: core::ops::Range<usize> = 16..20;
}

/// A view over an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
    header_len: usize,
    /// End of the payload: the total length, or the buffer's end for a truncated quote.
    end: usize,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks version, header length and total length against the buffer.
    ///
    /// A packet whose total length exceeds the buffer is `Truncated`.
    pub fn new_checked(buf: T) -> Result<Self> {
        let p = Self::new_quoted(buf)?;
        if p.total_len() > p.buf.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    /// Like [`Packet::new_checked`], but accepts a buffer shorter than the total length, as
    /// in the datagram an ICMP error quotes; the payload then ends with the buffer.
    pub fn new_quoted(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if header_len < HEADER_LEN || total < header_len {
            return Err(WireError::Malformed);
        }
        if b.len() < header_len {
            return Err(WireError::Truncated);
        }
        let end = total.min(b.len());
        Ok(Packet {
            buf,
            header_len,
            end,
        })
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The total length field.
    pub fn total_len(&self) -> usize {
        let b = self.buf.as_ref();
        usize::from(u16::from_be_bytes([
            b[field::TOTAL_LEN.start],
            b[field::TOTAL_LEN.start + 1],
        ]))
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[field::IDENT.start], b[field::IDENT.start + 1]])
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[field::PROTO]
    }

    /// The "more fragments" flag.
    pub fn more_fragments(&self) -> bool {
        self.buf.as_ref()[6] & 0x20 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        let b = self.buf.as_ref();
        usize::from(u16::from_be_bytes([b[6], b[7]]) & 0x1fff) * 8
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buf.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = &self.buf.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Whether the header checksum verifies.
    pub fn checksum_ok(&self) -> bool {
        checksum::checksum(&self.buf.as_ref()[..self.header_len]) == 0
    }

    /// The payload (possibly cut short in a quote).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len..self.end]
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The payload, borrowed for as long as the underlying buffer.
    pub fn into_payload(self) -> &'a [u8] {
        &self.buf[self.header_len..self.end]
    }
}

/// The fields asdic writes in an IPv4 header of its own (no options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification field.
    pub ident: u16,
}

impl Repr {
    /// Reads a checked packet's fields.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        let b = p.buf.as_ref();
        Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.total_len() - p.header_len(),
            ttl: p.ttl(),
            ident: u16::from_be_bytes([b[field::IDENT.start], b[field::IDENT.start + 1]]),
        }
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, DF clear, checksum filled in.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let total = HEADER_LEN + self.payload_len;
        let total = u16::try_from(total).map_err(|_| WireError::Malformed)?;
        let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        h[field::VER_IHL] = 0x45;
        h[1] = 0;
        h[field::TOTAL_LEN].copy_from_slice(&total.to_be_bytes());
        h[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
        h[field::FLAGS_FRAG].copy_from_slice(&[0, 0]);
        h[field::TTL] = self.ttl;
        h[field::PROTO] = self.protocol;
        h[field::CHECKSUM].copy_from_slice(&[0, 0]);
        h[field::SRC].copy_from_slice(&self.src.octets());
        h[field::DST].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(h);
        h[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo reply as captured on the test bed (IPv4 header + 8 ICMP bytes).
    const REPLY: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0xbe, 0xef, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 198, 19, 0, 7, 198,
        18, 0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn parse_fixture() {
        let mut b = REPLY;
        let c = checksum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.checksum_ok());
        assert_eq!(p.src(), Ipv4Addr::new(198, 19, 0, 7));
        assert_eq!(p.dst(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_ICMP);
        assert_eq!(p.payload().len(), 8);
        assert_eq!(Repr::parse(&p).ident, 0xbeef);
    }

    #[test]
    fn emit_round_trip() {
        let r = Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 1, 2),
            protocol: PROTO_ICMP,
            payload_len: 40,
            ttl: 17,
            ident: 9,
        };
        let mut b = [0u8; 60];
        r.emit(&mut b).unwrap();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.checksum_ok());
        assert_eq!(Repr::parse(&p), r);
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut b = REPLY;
        assert_eq!(
            Packet::new_checked(&b[..19]).unwrap_err(),
            WireError::Truncated
        );
        b[3] = 0x40; // total 64 > 28
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Truncated
        );
        assert!(Packet::new_quoted(&b[..]).is_ok());
        b[0] = 0x44; // IHL 16 bytes
        assert_eq!(
            Packet::new_quoted(&b[..]).unwrap_err(),
            WireError::Malformed
        );
        b[0] = 0x65;
        assert_eq!(
            Packet::new_quoted(&b[..]).unwrap_err(),
            WireError::Malformed
        );
    }
}
