//! Ethernet II frames (IEEE 802.3 with EtherType), optionally one 802.1Q tag.
//!
//! ```text
//! +--------------+--------------+-----------+----------
//! | destination  |    source    | EtherType | payload…
//! |   6 bytes    |   6 bytes    |  2 bytes  |
//! +--------------+--------------+-----------+----------
//! ```

use crate::error::{Result, WireError};

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

mod field {
    pub const DST: core::ops::Range<usize> = 0..6;
    pub const SRC: core::ops::Range<usize> = 6..12;
    pub const TYPE: core::ops::Range<usize> = 12..14;
}

/// A view over an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
    /// Offset of the payload: 14, or 18 behind one VLAN tag.
    payload_at: usize,
    ethertype: u16,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks the header (and one VLAN tag if present) fits; no accessor can panic after.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let mut ethertype = u16::from_be_bytes([b[12], b[13]]);
        let mut payload_at = HEADER_LEN;
        if ethertype == ETHERTYPE_VLAN {
            if b.len() < HEADER_LEN + 4 {
                return Err(WireError::Truncated);
            }
            ethertype = u16::from_be_bytes([b[16], b[17]]);
            payload_at += 4;
        }
        Ok(Frame {
            buf,
            payload_at,
            ethertype,
        })
    }

    /// Destination MAC address.
    pub fn dst(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::DST]);
        m
    }

    /// Source MAC address.
    pub fn src(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::SRC]);
        m
    }

    /// Whether the frame carries an 802.1Q or 802.1ad tag (its EtherType at bytes 12..14).
    pub fn tagged(&self) -> bool {
        let b = self.buf.as_ref();
        matches!(
            u16::from_be_bytes([b[12], b[13]]),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ
        )
    }

    /// The EtherType behind any VLAN tag.
    pub fn ethertype(&self) -> u16 {
        self.ethertype
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.payload_at..]
    }
}

/// Writes an untagged Ethernet header into the first 14 bytes of `buf`.
///
/// Returns [`WireError::Truncated`] when `buf` is shorter than [`HEADER_LEN`].
pub fn emit(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Result<()> {
    let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    h[field::DST].copy_from_slice(&dst);
    h[field::SRC].copy_from_slice(&src);
    h[field::TYPE].copy_from_slice(&ethertype.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_vlan() {
        let mut b = [0u8; 60];
        emit(
            &mut b,
            [1, 2, 3, 4, 5, 6],
            [7, 8, 9, 10, 11, 12],
            ETHERTYPE_IPV4,
        )
        .unwrap();
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(f.src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.payload().len(), 46);
        b[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        b[16..18].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(f.payload().len(), 42);
        assert_eq!(
            Frame::new_checked(&b[..16]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Frame::new_checked(&b[..13]).unwrap_err(),
            WireError::Truncated
        );
    }
}
