//! The unsafe edge of the AF_XDP engine: xsk-rs's socket creation and ring/frame accessors,
//! which are `unsafe` because the compiler cannot see who owns a UMEM frame.
//!
//! The ownership rule that makes every call below sound: each frame descriptor is held by
//! exactly one party at a time. The UMEM is split once, at open: TX frames circulate only
//! between the TX half's free list, the TX ring and the completion ring; RX frames only
//! between the fill ring, the RX ring and the RX half while it reads them. A descriptor is
//! touched by user space only while it is out of every ring, and never shared between the
//! halves.

use std::io::Write;

use xsk_rs::config::{Interface, SocketConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// Creates an AF_XDP socket bound to `iface`/`queue` over `umem` (never loading libxdp's own
/// program: the caller's flags must inhibit it).
#[allow(clippy::type_complexity)]
pub(crate) fn socket(
    config: SocketConfig,
    umem: &Umem,
    iface: &Interface,
    queue: u32,
) -> Result<(TxQueue, RxQueue, Option<(FillQueue, CompQueue)>), xsk_rs::socket::SocketCreateError> {
    // SAFETY: the UMEM is not shared with another socket on this (interface, queue) pair
    // (each engine creates its own UMEM), so xsk-rs's double-free hazard for shared UMEMs on
    // an already bound pair does not apply.
    unsafe { xsk_rs::Socket::new(config, umem, iface, queue) }
}

/// Writes `bytes` as the whole packet of the (TX) frame `desc`; false if it does not fit.
pub(crate) fn write_frame(umem: &Umem, desc: &mut FrameDesc, bytes: &[u8]) -> bool {
    // SAFETY: `desc` came from this UMEM and is in the TX half's free list: out of every
    // ring, so neither the kernel nor the RX half accesses its frame (module rule).
    let mut data = unsafe { umem.data_mut(desc) };
    let mut c = data.cursor();
    c.set_pos(0);
    c.write_all(bytes).is_ok()
}

/// The packet in the (RX) frame `desc`.
pub(crate) fn frame_bytes<'a>(umem: &'a Umem, desc: &FrameDesc) -> &'a [u8] {
    // SAFETY: `desc` came from this UMEM's RX ring and is not yet back in the fill ring, so
    // the kernel does not write its frame while the returned slice lives (the RX half drops
    // it before refilling).
    let data = unsafe { umem.data(desc) };
    data.contents()
}

/// Hands TX frames to the kernel; returns how many (all or none).
pub(crate) fn tx_produce(q: &mut TxQueue, descs: &[FrameDesc]) -> usize {
    // SAFETY: the descriptors are TX frames of the queue's UMEM taken off the free list; they
    // stay untouched until the completion ring returns them (module rule).
    unsafe { q.produce(descs) }
}

/// Takes sent TX frames back from the completion ring.
pub(crate) fn comp_consume(q: &mut CompQueue, descs: &mut [FrameDesc]) -> usize {
    // SAFETY: completed frames belong to the TX half again; `descs` are scratch slots the
    // ring overwrites.
    unsafe { q.consume(descs) }
}

/// Takes received frames off the RX ring.
pub(crate) fn rx_consume(q: &mut RxQueue, descs: &mut [FrameDesc]) -> usize {
    // SAFETY: received frames belong to the RX half until it refills them; `descs` are
    // scratch slots the ring overwrites.
    unsafe { q.consume(descs) }
}

/// Gives RX frames to the kernel to receive into; returns how many (all or none).
pub(crate) fn fill_produce(q: &mut FillQueue, descs: &[FrameDesc]) -> usize {
    // SAFETY: the descriptors are RX frames of the queue's UMEM that the RX half no longer
    // reads (module rule).
    unsafe { q.produce(descs) }
}
