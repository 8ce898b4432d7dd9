//! [`TxBatch`]: a fixed set of packet buffers with their destinations, filled by the sender
//! (templates prepared once per slot, patched per probe) and drained by an engine.

use core::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Source of batch epochs: unique over the process, so no two fillings of any batches share one.
static EPOCHS: AtomicU64 = AtomicU64::new(1);

fn next_epoch() -> u64 {
    EPOCHS.fetch_add(1, Ordering::Relaxed)
}

/// Packet buffers of equal stride, each with a destination and a length.
#[derive(Debug)]
pub struct TxBatch {
    buf: Vec<u8>,
    stride: usize,
    dsts: Vec<IpAddr>,
    lens: Vec<usize>,
    /// Per packet: the TTL / hop limit socket engines must set for it, 0 for the socket's own.
    ttls: Vec<u8>,
    /// Per packet: the id its kernel send stamp comes back with, if it wants one.
    tags: Vec<Option<u32>>,
    count: usize,
    epoch: u64,
}

impl TxBatch {
    /// `capacity` slots of `stride` bytes each, zeroed.
    pub fn new(capacity: usize, stride: usize) -> Self {
        TxBatch {
            buf: vec![0; capacity * stride],
            stride,
            dsts: vec![IpAddr::from([0, 0, 0, 0]); capacity],
            lens: vec![0; capacity],
            ttls: vec![0; capacity],
            tags: vec![None; capacity],
            count: 0,
            epoch: next_epoch(),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Bytes per slot.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Packets currently in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the batch (slot bytes stay, so prepared templates survive) and starts a new
    /// epoch.
    pub fn clear(&mut self) {
        self.count = 0;
        self.epoch = next_epoch();
    }

    /// Which filling of which batch this is: changes at every [`TxBatch::clear`] and is never
    /// shared by two batches. Engines that complete packets out of order (io_uring) use it,
    /// with [`TxBatch::len`], to tell a continued send of the same packets from a new batch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The whole buffer of slot `i` (for preparing a template), or `None` past capacity.
    pub fn slot_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let s = self.stride;
        self.buf.get_mut(i * s..(i + 1) * s)
    }

    /// Appends the packet already written in the next slot: its destination and length, sent
    /// with the socket's TTL (see [`TxBatch::set_ttl`]). Returns the slot's buffer for
    /// patching, or `None` when the batch is full or `len` exceeds the stride.
    pub fn push(&mut self, dst: IpAddr, len: usize) -> Option<&mut [u8]> {
        let i = self.count;
        if i >= self.capacity() || len > self.stride {
            return None;
        }
        self.dsts[i] = dst;
        self.lens[i] = len;
        self.ttls[i] = 0;
        self.tags[i] = None;
        self.count += 1;
        let s = self.stride;
        Some(&mut self.buf[i * s..i * s + len])
    }

    /// Sets the TTL / hop limit of packet `i` for engines that leave the IP header to the
    /// kernel (raw sockets, io_uring): they send it with a per-message `IP_TTL` /
    /// `IPV6_HOPLIMIT` control message unless it is 0 (the socket's TTL) or equals the
    /// socket's. Frame-building engines (XDP) ignore it: the TTL is in the frame.
    pub fn set_ttl(&mut self, i: usize, ttl: u8) {
        if i < self.count {
            self.ttls[i] = ttl;
        }
    }

    /// The TTL set for packet `i`, 0 for the socket's own (also past the end).
    pub fn ttl(&self, i: usize) -> u8 {
        if i < self.count { self.ttls[i] } else { 0 }
    }

    /// Asks for packet `i`'s send stamp, tagged `tag`: engines that take the kernel's
    /// per-packet send stamps (sockets with [`TxCaps::kernel_stamps`](crate::TxCaps)) hand it
    /// back with this tag as an [`RxLayer::TxStamp`](crate::RxLayer); others ignore it.
    pub fn set_tag(&mut self, i: usize, tag: u32) {
        if i < self.count {
            self.tags[i] = Some(tag);
        }
    }

    /// The tag of packet `i`'s send stamp, if it asked for one.
    pub fn tag(&self, i: usize) -> Option<u32> {
        if i < self.count { self.tags[i] } else { None }
    }

    /// Packet `i`: its bytes and destination.
    pub fn packet(&self, i: usize) -> Option<(&[u8], IpAddr)> {
        if i >= self.count {
            return None;
        }
        let s = self.stride;
        Some((&self.buf[i * s..i * s + self.lens[i]], self.dsts[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_prepared_bytes() {
        let mut b = TxBatch::new(2, 8);
        b.slot_mut(0).unwrap().fill(7);
        b.slot_mut(1).unwrap().fill(9);
        assert!(b.slot_mut(2).is_none());
        let p = b.push(IpAddr::from([198, 19, 0, 1]), 4).unwrap();
        p[0] = 1;
        assert!(b.push(IpAddr::from([198, 19, 0, 2]), 9).is_none());
        b.push(IpAddr::from([198, 19, 0, 2]), 8).unwrap();
        assert!(b.push(IpAddr::from([198, 19, 0, 3]), 8).is_none());
        assert_eq!(
            b.packet(0).unwrap(),
            (&[1u8, 7, 7, 7][..], IpAddr::from([198, 19, 0, 1]))
        );
        assert_eq!(b.packet(1).unwrap().0, &[9u8; 8][..]);
        assert!(b.packet(2).is_none());
        let e = b.epoch();
        b.clear();
        assert!(b.is_empty());
        assert_ne!(b.epoch(), e, "a new filling, a new epoch");
        assert_ne!(TxBatch::new(2, 8).epoch(), b.epoch());
        assert_eq!(
            b.push(IpAddr::from([1, 1, 1, 1]), 2).unwrap(),
            &[1u8, 7][..]
        );
    }

    #[test]
    fn ttls_are_per_packet_and_reset_by_push() {
        let mut b = TxBatch::new(3, 8);
        b.push(IpAddr::from([198, 19, 0, 1]), 8).unwrap();
        b.push(IpAddr::from([198, 19, 0, 2]), 8).unwrap();
        b.set_ttl(1, 5);
        b.set_ttl(2, 9); // past the end: ignored
        assert_eq!((b.ttl(0), b.ttl(1), b.ttl(2)), (0, 5, 0));
        b.clear();
        b.push(IpAddr::from([198, 19, 0, 1]), 8).unwrap();
        b.push(IpAddr::from([198, 19, 0, 2]), 8).unwrap();
        assert_eq!(b.ttl(1), 0, "a new packet in the slot has the socket's TTL");
    }
}
