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

/// Creates the first AF_XDP socket bound to `iface`/`queue` over `umem` (never loading
/// libxdp's own program: the caller's flags must inhibit it).
#[allow(clippy::type_complexity)]
pub(crate) fn socket(
    config: SocketConfig,
    umem: &Umem,
    iface: &Interface,
    queue: u32,
) -> Result<(TxQueue, RxQueue, Option<(FillQueue, CompQueue)>), xsk_rs::socket::SocketCreateError> {
    // SAFETY: the UMEM is this queue's own (each bind creates one) and no socket is bound on
    // the (interface, queue) pair yet, so xsk-rs's double-free hazard for a shared UMEM on an
    // already bound pair does not apply.
    unsafe { xsk_rs::Socket::new(config, umem, iface, queue) }
}

/// Creates a second socket on `iface`/`queue` over the `umem` its first socket was created
/// on (`XDP_SHARED_UMEM`): the pair's fill and completion rings stay the first one's.
#[allow(clippy::type_complexity)]
pub(crate) fn shared_socket(
    config: SocketConfig,
    umem: &Umem,
    iface: &Interface,
    queue: u32,
) -> Result<(TxQueue, RxQueue, Option<(FillQueue, CompQueue)>), xsk_rs::socket::SocketCreateError> {
    assert!(
        config
            .libxdp_flags()
            .contains(xsk_rs::config::LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD),
        "a socket on an already bound pair must not load libxdp's program"
    );
    // SAFETY: the pair is already bound from this UMEM, and the flags inhibit libxdp's
    // program loading (asserted above) — xsk-rs's condition for a shared UMEM on a bound
    // pair, without which dropping the sockets could free the program twice.
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

/// A read-only view of one AF_XDP socket's RX or TX ring indices, for another thread to see
/// how many frames wait there without the ring's owner: the sender, how many wait on a
/// receiver's RX ring (the receiver may not be running); a lane's sending thread, how many
/// the sender put on the TX ring that the kernel has not taken. Its own second mapping of the
/// ring's first page(s), where the producer and consumer indices live.
#[derive(Debug)]
pub(crate) struct RingView {
    base: std::ptr::NonNull<libc::c_void>,
    len: usize,
    producer: usize,
    consumer: usize,
}

// SAFETY: the mapping is private to this value, valid until it is dropped, and only read
// through atomic loads; moving it to another thread changes none of that.
unsafe impl Send for RingView {}
// SAFETY: every access through `&self` is an atomic load of the mapping; threads sharing it
// only read.
unsafe impl Sync for RingView {}

impl RingView {
    /// Maps the RX ring of the AF_XDP socket `fd` (already bound, with an RX ring).
    pub(crate) fn new(fd: std::os::fd::RawFd) -> std::io::Result<RingView> {
        Self::map(fd, false)
    }

    /// Maps the TX ring of the AF_XDP socket `fd` (already bound, with a TX ring).
    pub(crate) fn tx(fd: std::os::fd::RawFd) -> std::io::Result<RingView> {
        Self::map(fd, true)
    }

    fn map(fd: std::os::fd::RawFd, tx: bool) -> std::io::Result<RingView> {
        // SAFETY: xdp_mmap_offsets is plain integers; all-zero bytes are a valid value.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut optlen = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `optlen` are live and sized as passed; the kernel writes at most
        // `optlen` bytes and the new length.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut optlen,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if optlen as usize != size_of::<libc::xdp_mmap_offsets>() {
            // Kernels before 5.4 lay the offsets out without flags; not worth a second path.
            return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let ring = if tx { off.tx } else { off.rx };
        let (producer, consumer) = (ring.producer as usize, ring.consumer as usize);
        // The indices precede the descriptors; map up to those (the kernel allows a prefix).
        let len = (producer.max(consumer) + 4).max(ring.desc as usize);
        let offset = if tx {
            libc::XDP_PGOFF_TX_RING
        } else {
            libc::XDP_PGOFF_RX_RING
        };
        // SAFETY: a fresh read-only shared mapping of the socket's RX or TX ring (page offset
        // XDP_PGOFF_RX_RING / XDP_PGOFF_TX_RING); nothing else is aliased or overwritten.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base =
            std::ptr::NonNull::new(p).ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        Ok(RingView {
            base,
            len,
            producer,
            consumer,
        })
    }

    fn index(&self, at: usize) -> u32 {
        // SAFETY: `at + 4 <= len` (checked at `new`), the offsets the kernel gave are 4-byte
        // aligned u32 indices inside the mapping, which lives as long as `self`; the kernel and
        // the receiver write them concurrently, so they are read atomically.
        unsafe {
            std::sync::atomic::AtomicU32::from_ptr(self.base.as_ptr().cast::<u8>().add(at).cast())
                .load(std::sync::atomic::Ordering::Acquire)
        }
    }

    /// Frames on the ring, not yet taken by its consumer (the receiver; on a TX ring, the
    /// kernel).
    pub(crate) fn waiting(&self) -> u32 {
        let (cons, prod) = self.bounds();
        prod.wrapping_sub(cons)
    }

    /// The consumer and producer indices: the frames waiting are those in between.
    pub(crate) fn bounds(&self) -> (u32, u32) {
        let cons = self.index(self.consumer);
        (cons, self.index(self.producer))
    }
}

/// Asks the kernel to transmit what the TX ring of AF_XDP socket `fd` holds (a `sendto` with
/// no data, as libxdp's kick): `Ok` also when the kernel is busy or out of buffers (the frames
/// stay on the ring for the next call).
pub(crate) fn kick_tx(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: a sendto of no bytes (null buffer, length 0, no address) on a descriptor the
    // caller keeps open; the kernel reads nothing from user memory.
    let r = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if r >= 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => Ok(()),
        _ => Err(e),
    }
}

impl Drop for RingView {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made, once; no reference into it outlives
        // `self`.
        unsafe {
            libc::munmap(self.base.as_ptr(), self.len);
        }
    }
}
