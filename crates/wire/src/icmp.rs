//! ICMP (RFC 792) and ICMPv6 (RFC 4443) messages: both share the first eight bytes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Identifier (echo) / unused, MTU or pointer (errors)          |
//! |           Sequence Number (echo)                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Data (echo) / as much of the invoking packet as fits (errors)
//! +-+-+-+-
//! ```

use crate::checksum;
use crate::error::{Result, WireError};
use crate::registry::Family;

/// Length of the ICMP header (type, code, checksum, four bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;

/// Byte offsets of the header's fields.
pub(crate) mod field {
    pub const CHECKSUM: core::ops::Range<usize> = 2..4;
    pub const IDENT: core::ops::Range<usize> = 4..6;
    pub const SEQ: core::ops::Range<usize> = 6..8;
}

/// ICMPv4 echo request type.
pub const V4_ECHO_REQUEST: u8 = 8;
/// ICMPv4 echo reply type.
pub const V4_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request type.
pub const V6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply type.
pub const V6_ECHO_REPLY: u8 = 129;

/// The echo request type of a family.
pub const fn echo_request(family: Family) -> u8 {
    match family {
        Family::V4 => V4_ECHO_REQUEST,
        Family::V6 => V6_ECHO_REQUEST,
    }
}

/// The echo reply type of a family.
pub const fn echo_reply(family: Family) -> u8 {
    match family {
        Family::V4 => V4_ECHO_REPLY,
        Family::V6 => V6_ECHO_REPLY,
    }
}

/// A view over an ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks the eight header bytes are there.
    pub fn new_checked(buf: T) -> Result<Self> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buf })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// Echo identifier (bytes 4..6).
    pub fn ident(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }

    /// Echo sequence number (bytes 6..8).
    pub fn seq(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }

    /// The four rest-of-header bytes as one word (MTU of "packet too big", pointer, …).
    pub fn rest(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// The bytes after the header: echo data, or the quoted datagram of an error.
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }

    /// Whether an ICMPv4 checksum verifies (ICMPv6 needs the pseudo-header: see
    /// [`checksum::pseudo_v6`]).
    pub fn checksum_ok_v4(&self) -> bool {
        checksum::checksum(self.buf.as_ref()) == 0
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The data after the header, borrowed for as long as the underlying buffer.
    pub fn into_data(self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// Writes an echo header (type, code 0, id, seq) with a zero checksum into `buf[..8]`.
pub fn emit_echo_header(buf: &mut [u8], msg_type: u8, ident: u16, seq: u16) -> Result<()> {
    let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    h[0] = msg_type;
    h[1] = 0;
    h[field::CHECKSUM].copy_from_slice(&[0, 0]);
    h[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    h[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// Turns the echo request `msg` (an ICMP message of `family`, checksum included) into its
/// reply in place: the type, and the checksum updated for it (RFC 1624). The ICMPv6
/// pseudo-header's sum does not change when the caller swaps the addresses, so the reply's
/// checksum stays right in both families. Anything but an echo request is `Unsupported`.
pub fn answer_echo(msg: &mut [u8], family: Family) -> Result<()> {
    let h = msg.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    let (req, rep) = (echo_request(family), echo_reply(family));
    if h[0] != req {
        return Err(WireError::Unsupported);
    }
    h[0] = rep;
    let old = u16::from_be_bytes([h[2], h[3]]);
    let c = checksum::update16(old, u16::from(req) << 8, u16::from(rep) << 8);
    h[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_echo_is_the_reply_with_a_right_checksum() {
        let (src, dst) = (
            core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            core::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7),
        );
        for family in [Family::V4, Family::V6] {
            let mut m = [0u8; 40];
            emit_echo_header(&mut m, echo_request(family), 0x1234, 99).unwrap();
            m[8..]
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = i as u8 * 7);
            // The full sum of a message (and, for ICMPv6, its pseudo-header).
            let sum = |m: &[u8], from, to| match family {
                Family::V4 => checksum::checksum(m),
                Family::V6 => checksum::finish(checksum::sum(
                    checksum::pseudo_v6(from, to, m.len() as u32, 58),
                    m,
                )),
            };
            let c = sum(&m, &src, &dst);
            m[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            let request = m;
            answer_echo(&mut m, family).unwrap();
            assert_eq!(m[0], echo_reply(family));
            assert_eq!(m[4..], request[4..], "only the type and checksum change");
            // Sent back the other way, the reply verifies.
            assert_eq!(sum(&m, &dst, &src), 0, "{family:?}");
            // A reply is not answered again, and a short message is refused.
            assert_eq!(answer_echo(&mut m, family), Err(WireError::Unsupported));
            assert_eq!(answer_echo(&mut m[..7], family), Err(WireError::Truncated));
        }
    }

    #[test]
    fn echo_fields() {
        let mut b = [0u8; 16];
        emit_echo_header(&mut b, V4_ECHO_REQUEST, 0xabcd, 7).unwrap();
        let c = checksum::checksum(&b);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.code(), p.ident(), p.seq()),
            (8, 0, 0xabcd, 7)
        );
        assert!(p.checksum_ok_v4());
        assert_eq!(p.data().len(), 8);
        assert_eq!(
            Packet::new_checked(&b[..7]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(echo_reply(Family::V6), 129);
        assert_eq!(echo_request(Family::V4), 8);
    }
}
