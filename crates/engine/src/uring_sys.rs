//! The unsafe layer of the io_uring engine: the rings, the memory their requests point to,
//! and the pushes that hand that memory to the kernel. Nothing outside this module pushes an
//! io_uring request.
//!
//! Every buffer a request references lives in a [`Pinned`] array: allocated once, at a
//! fixed heap address, reached only through raw pointers while the kernel may use it, and
//! freed only once no request that references it is left in flight. When that cannot be
//! confirmed (a ring that stopped answering), the arrays are leaked instead of freed.
//!
//! TX requests also point at the packet bytes of the [`TxBatch`] being sent; a send does not
//! return while any of its requests is in flight.
//!
//! Rings are created with one issuer and deferred task work (`IORING_SETUP_SINGLE_ISSUER |
//! IORING_SETUP_DEFER_TASKRUN`, Linux 6.1): completion work then runs only when the owning
//! thread enters the ring to wait, in batches, instead of interrupting it. They start disabled
//! and the first thread that uses one enables it and so becomes its issuer (the engine is
//! opened on one thread and run on others). Older kernels get a plain ring. The socket is
//! registered as fixed file 0, which spares each request a file lookup.

use core::net::{IpAddr, Ipv6Addr};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use io_uring::types::{Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, opcode};

use crate::batch::TxBatch;
use crate::sys::{self, CMSG_SPACE, MSG_CTL_WORDS, MsgControl, Received};

/// The state of a packet whose send is not yet known; any other value is the send's result
/// (bytes sent, or a negated errno).
pub(crate) const PENDING: i32 = i32::MIN;

/// `user_data` of cancel requests (never a slot index).
const CANCEL: u64 = u64::MAX;

/// How long dropping a half waits for its requests to be cancelled before it gives up and
/// leaks their buffers.
const DRAIN: Duration = Duration::from_secs(2);

/// A fixed array on the heap, shared with the kernel: its address never changes, Rust code
/// reaches it only through raw pointers, and it is freed on drop unless leaked.
struct Pinned<T> {
    ptr: NonNull<T>,
    len: usize,
    owned: bool,
}

// SAFETY: a `Pinned` owns its allocation alone (no other Rust value points into it); the raw
// pointers it may contain (in `msghdr`, `iovec`) point into other `Pinned` arrays of the same
// ring, or into a batch only during a send that holds the borrow. Moving it to another
// thread moves that ownership; nothing is shared between threads.
unsafe impl<T> Send for Pinned<T> {}

impl<T: Copy> Pinned<T> {
    /// `len` copies of `init` (at least one element).
    fn new(len: usize, init: T) -> Self {
        let b: Box<[T]> = vec![init; len.max(1)].into_boxed_slice();
        let len = b.len();
        let ptr = NonNull::from(Box::leak(b)).cast::<T>();
        Pinned {
            ptr,
            len,
            owned: true,
        }
    }

    /// A pointer to element `i`; panics past the end.
    fn at(&self, i: usize) -> *mut T {
        assert!(i < self.len, "slot {i} of {}", self.len);
        // SAFETY: `i < len`, so the offset stays inside the allocation of `len` elements.
        unsafe { self.ptr.as_ptr().add(i) }
    }

    /// Never frees the memory: for when the kernel might still use it.
    fn leak(&mut self) {
        self.owned = false;
    }
}

impl<T> Drop for Pinned<T> {
    fn drop(&mut self) {
        if self.owned {
            let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
            // SAFETY: `ptr` and `len` describe the boxed slice leaked in `new`, freed only
            // here, once; its owner leaks it instead while the kernel may still use it.
            drop(unsafe { Box::from_raw(slice) });
        }
    }
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct of integers and pointers; all-zero bytes are a valid
    // (empty) value.
    unsafe { zeroed() }
}

/// An io_uring instance with the socket registered as fixed file 0.
struct Ring {
    uring: IoUring,
    /// Created disabled, not yet enabled by the thread that uses it.
    disabled: bool,
}

impl Ring {
    /// A ring with `entries` submission slots and twice as many completion slots, for `fd`.
    /// Checks that the kernel has what the engine uses: SENDMSG, RECVMSG, ASYNC_CANCEL and
    /// waiting with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11).
    fn new(entries: usize, fd: RawFd) -> io::Result<Self> {
        let entries = u32::try_from(entries.clamp(1, 4096)).unwrap_or(4096);
        let preferred = IoUring::builder()
            .setup_cqsize(entries * 2)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_r_disabled()
            .build(entries);
        let (uring, disabled) = match preferred {
            Ok(r) => (r, true),
            // Before Linux 6.1: no deferred task work.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (
                IoUring::builder()
                    .setup_cqsize(entries * 2)
                    .build(entries)?,
                false,
            ),
            Err(e) => return Err(e),
        };
        if !uring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring cannot wait with a timeout (IORING_FEAT_EXT_ARG, \
                 Linux 5.11)",
            ));
        }
        let mut probe = Probe::new();
        uring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::RecvMsg::CODE, "RECVMSG"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks IORING_OP_{name}"),
                ));
            }
        }
        uring.submitter().register_files(&[fd])?;
        Ok(Ring { uring, disabled })
    }

    /// Makes the calling thread the ring's issuer, on first use.
    fn enable(&mut self) -> io::Result<()> {
        if self.disabled {
            self.uring.submitter().register_enable_rings()?;
            self.disabled = false;
        }
        Ok(())
    }

    /// Submits what is queued and waits up to `timeout` for at least one completion.
    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits what is queued without waiting; also runs deferred completion work when the
    /// kernel flags some (IORING_SQ_TASKRUN).
    fn submit(&mut self) -> io::Result<()> {
        match self.uring.submit() {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The registered socket.
const SOCKET: Fixed = Fixed(0);

/// Whether an `io_uring_enter` error only means "try again" (nothing is lost).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME)
    )
}

/// Storage for one destination address, IPv4 or IPv6.
#[derive(Clone, Copy)]
#[repr(C)]
union SockAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

/// The TX ring: one `SendMsg` request per packet, with a header, an iovec and an address
/// per slot, reused for every batch.
pub(crate) struct SendRing {
    ring: Ring,
    hdrs: Pinned<libc::msghdr>,
    iovs: Pinned<libc::iovec>,
    addrs: Pinned<SockAddr>,
    /// Per slot, room for a TTL control message.
    ctl: Pinned<u64>,
    ttl: MsgControl,
    slots: usize,
    /// Requests submitted whose completion has not been reaped.
    in_flight: usize,
    /// Set when `io_uring_enter` failed for good: the ring is not used again.
    broken: bool,
}

impl SendRing {
    /// A ring for up to `slots` packets per send on `fd` (which must outlive it); packets
    /// with a TTL of their own get it as a control message (`ttl`).
    pub(crate) fn new(fd: RawFd, slots: usize, ttl: MsgControl) -> io::Result<Self> {
        let slots = slots.max(1);
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let addr = SockAddr {
            v6: sys::sin6(Ipv6Addr::UNSPECIFIED),
        };
        Ok(SendRing {
            ring: Ring::new(slots, fd)?,
            hdrs: Pinned::new(slots, zeroed_msghdr()),
            iovs: Pinned::new(slots, iov),
            addrs: Pinned::new(slots, addr),
            ctl: Pinned::new(slots * MSG_CTL_WORDS, 0u64),
            ttl,
            slots,
            in_flight: 0,
            broken: false,
        })
    }

    /// Packets per send.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Sends packet `first + i` of `batch` for every `states[i]` that is [`PENDING`], all
    /// at once, and waits for every one of them; each result (bytes sent or `-errno`) goes
    /// into its `states[i]`. An error means the ring itself failed (and is not used again).
    pub(crate) fn send(
        &mut self,
        batch: &TxBatch,
        first: usize,
        states: &mut [i32],
    ) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("the TX ring failed earlier"));
        }
        assert!(states.len() <= self.slots, "more packets than slots");
        self.ring.enable()?;
        {
            let mut sq = self.ring.uring.submission();
            for (i, st) in states.iter_mut().enumerate() {
                if *st != PENDING {
                    continue;
                }
                let Some((bytes, dst)) = batch.packet(first + i) else {
                    *st = -libc::EINVAL;
                    continue;
                };
                let (addr, hdr, iov) = (self.addrs.at(i), self.hdrs.at(i), self.iovs.at(i));
                let namelen = match dst {
                    IpAddr::V4(a) => {
                        // SAFETY: `addr` is slot `i` of our address array; no request uses it
                        // (nothing is in flight between sends), so writing it is unaliased.
                        unsafe { (*addr).v4 = sys::sin(a) };
                        size_of::<libc::sockaddr_in>()
                    }
                    IpAddr::V6(a) => {
                        // SAFETY: as above.
                        unsafe { (*addr).v6 = sys::sin6(a) };
                        size_of::<libc::sockaddr_in6>()
                    }
                };
                // SAFETY: `iov`, `hdr` and the control words are slot `i` of our arrays,
                // unused by any request (nothing is in flight between sends; the control
                // words are MSG_CTL_WORDS long from `i * MSG_CTL_WORDS`, inside the array
                // of `slots * MSG_CTL_WORDS`); the iovec points at the packet's bytes, which
                // `batch` lends us for this call.
                unsafe {
                    *iov = libc::iovec {
                        iov_base: bytes.as_ptr().cast_mut().cast(),
                        iov_len: bytes.len(),
                    };
                    let h = &mut *hdr;
                    h.msg_name = addr.cast();
                    h.msg_namelen = namelen as libc::socklen_t;
                    h.msg_iov = iov;
                    h.msg_iovlen = 1;
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                    h.msg_flags = 0;
                    if let Some(t) = self.ttl.needed(batch, first + i) {
                        // Slot `i`'s own control words, unused by any request (as above).
                        self.ttl.write(h, self.ctl.at(i * MSG_CTL_WORDS), t);
                    }
                }
                let sqe = opcode::SendMsg::new(SOCKET, hdr.cast_const())
                    .build()
                    .user_data(i as u64);
                // SAFETY: the request reads header `i`, its iovec, address and control data (our `Pinned`
                // arrays: fixed addresses, freed only after every request completed, else
                // leaked) and the packet bytes borrowed from `batch`, which stay borrowed
                // until this function returns; it returns only once every request pushed
                // here has completed (`in_flight == 0` below), or after `io_uring_enter`
                // failed for good, when the ring is never entered again. Requests already in
                // the kernel then only *read* memory (SENDMSG copies header and address
                // when it starts), so none can write into memory we reuse.
                if unsafe { sq.push(&sqe) }.is_err() {
                    // Cannot happen: the queue has `slots` entries and is empty here.
                    *st = -libc::EAGAIN;
                    continue;
                }
                self.in_flight += 1;
            }
        }
        while self.in_flight > 0 {
            match self.ring.uring.submit_and_wait(self.in_flight) {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
            for cqe in self.ring.uring.completion() {
                if let Some(st) = usize::try_from(cqe.user_data())
                    .ok()
                    .and_then(|i| states.get_mut(i))
                {
                    *st = cqe.result();
                }
                self.in_flight -= 1;
            }
        }
        Ok(())
    }
}

impl Drop for SendRing {
    fn drop(&mut self) {
        // `send` never returns with requests in flight unless the ring broke: then nothing
        // can confirm they ended, and the memory they read must stay.
        if self.in_flight > 0 {
            self.hdrs.leak();
            self.iovs.leak();
            self.addrs.leak();
            self.ctl.leak();
        }
    }
}

/// The RX ring: `slots` `RecvMsg` requests kept armed on the socket, each with its own
/// buffer, header, iovec, source address and control-data room.
pub(crate) struct RecvRing {
    ring: Ring,
    slots: usize,
    bufsize: usize,
    bufs: Pinned<u8>,
    hdrs: Pinned<libc::msghdr>,
    iovs: Pinned<libc::iovec>,
    names: Pinned<libc::sockaddr_in6>,
    /// u64 words keep each slot's control data aligned for `cmsghdr`.
    cmsgs: Pinned<u64>,
    /// Completions taken from the queue, before they are handled: (slot, result).
    done: Vec<(u64, i32)>,
    /// Requests in the kernel (armed, or completed and not yet reaped).
    armed: usize,
    /// Whether the slots were armed once.
    started: bool,
}

impl RecvRing {
    /// `slots` requests of `bufsize` bytes each, reading from `fd` (which must outlive the
    /// ring: the caller keeps it open).
    pub(crate) fn new(fd: RawFd, slots: usize, bufsize: usize) -> io::Result<Self> {
        let slots = slots.clamp(1, 2048);
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Ok(RecvRing {
            ring: Ring::new(slots, fd)?,
            slots,
            bufsize,
            bufs: Pinned::new(slots * bufsize, 0u8),
            hdrs: Pinned::new(slots, zeroed_msghdr()),
            iovs: Pinned::new(slots, iov),
            names: Pinned::new(slots, sys::sin6(Ipv6Addr::UNSPECIFIED)),
            cmsgs: Pinned::new(slots * CMSG_SPACE / 8, 0u64),
            done: Vec::with_capacity(slots * 2),
            armed: 0,
            started: false,
        })
    }

    /// Arms slot `i`: queues its `RecvMsg` (submitted by the next enter).
    fn arm(&mut self, i: usize) -> io::Result<()> {
        let (hdr, iov, name) = (self.hdrs.at(i), self.iovs.at(i), self.names.at(i));
        let buf = self.bufs.at(i * self.bufsize);
        let ctl = self.cmsgs.at(i * CMSG_SPACE / 8);
        // SAFETY: slot `i` is not armed (never armed, or its completion was just reaped and
        // handled), so no request uses its header, iovec, name, buffer or control data, and
        // no Rust reference to them is alive.
        unsafe {
            *iov = libc::iovec {
                iov_base: buf.cast(),
                iov_len: self.bufsize,
            };
            let h = &mut *hdr;
            h.msg_name = name.cast();
            h.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_control = ctl.cast();
            h.msg_controllen = CMSG_SPACE as _;
            h.msg_flags = 0;
        }
        let sqe = opcode::RecvMsg::new(SOCKET, hdr)
            .build()
            .user_data(i as u64);
        let mut sq = self.ring.uring.submission();
        // SAFETY: the request writes slot `i`'s buffer, name, control data and header fields,
        // all in our `Pinned` arrays (fixed addresses). Rust does not touch them again until
        // the request's completion is reaped, and they are freed only when `Drop` has seen
        // every armed request complete (after cancelling them), else leaked.
        unsafe { sq.push(&sqe) }.map_err(|_| io::Error::other("RX submission queue full"))?;
        self.armed += 1;
        Ok(())
    }

    /// Handles the completions in the queue: hands each message to `on`, then re-arms its
    /// slot. Returns how many messages there were.
    fn reap(&mut self, on: &mut dyn FnMut(&Received, &[u8])) -> io::Result<usize> {
        self.done.clear();
        self.done.extend(
            self.ring
                .uring
                .completion()
                .map(|c| (c.user_data(), c.result())),
        );
        let mut n = 0;
        let mut failure = None;
        for k in 0..self.done.len() {
            let (slot, res) = self.done[k];
            let Some(i) = usize::try_from(slot).ok().filter(|&i| i < self.slots) else {
                continue;
            };
            self.armed -= 1;
            if res >= 0 {
                n += 1;
                let len = (res as usize).min(self.bufsize);
                // SAFETY: slot `i`'s request completed and the slot is not re-armed before
                // these borrows end, so the kernel no longer writes its header, name or
                // buffer; `len` bytes of the buffer were written by the receive (and all of
                // it was initialised at allocation).
                let (hdr, name, data) = unsafe {
                    (
                        &*self.hdrs.at(i),
                        &*self.names.at(i),
                        std::slice::from_raw_parts(self.bufs.at(i * self.bufsize), len),
                    )
                };
                let (ts_ns, hop_limit) = sys::control(hdr);
                let src = (name.sin6_family == libc::AF_INET6 as libc::sa_family_t)
                    .then(|| IpAddr::V6(Ipv6Addr::from(name.sin6_addr.s6_addr)));
                let m = Received {
                    len,
                    truncated: hdr.msg_flags & libc::MSG_TRUNC != 0,
                    src,
                    ts_ns,
                    hop_limit,
                };
                on(&m, data);
            } else if !matches!(
                -res,
                libc::EAGAIN | libc::EINTR | libc::ENOBUFS | libc::ENOMEM | libc::ECANCELED
            ) {
                failure = Some(io::Error::from_raw_os_error(-res));
            }
            self.arm(i)?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Waits up to `timeout` for messages and hands each to `on`; drains what is queued (a
    /// bounded number of rounds) and leaves every slot armed. Returns how many messages.
    pub(crate) fn recv(
        &mut self,
        timeout: Duration,
        on: &mut dyn FnMut(&Received, &[u8]),
    ) -> io::Result<usize> {
        if !self.started {
            self.ring.enable()?;
            self.started = true;
            for i in 0..self.slots {
                self.arm(i)?;
            }
        }
        let mut total = self.reap(on)?;
        if total == 0 {
            self.ring.wait(timeout)?;
            total = self.reap(on)?;
        }
        // Re-armed requests find queued messages at once: a few more rounds drain them.
        let mut rounds = 0;
        let mut last = total;
        while last > 0 && rounds < 16 {
            self.ring.submit()?;
            last = self.reap(on)?;
            total += last;
            rounds += 1;
        }
        if last > 0 {
            self.ring.submit()?;
        }
        Ok(total)
    }
}

impl Drop for RecvRing {
    fn drop(&mut self) {
        // Cancel every armed request and wait until each has completed: only then may the
        // memory they write be freed.
        let deadline = Instant::now() + DRAIN;
        // Re-arms still queued go in first, so that the cancels below find them.
        let mut ok = self.armed == 0 || self.ring.submit().is_ok();
        let mut cancelled = false;
        while ok && self.armed > 0 && Instant::now() < deadline {
            if !cancelled {
                let mut sq = self.ring.uring.submission();
                for i in 0..self.slots {
                    let sqe = opcode::AsyncCancel::new(i as u64).build().user_data(CANCEL);
                    // SAFETY: a cancel request references no memory of ours.
                    if unsafe { sq.push(&sqe) }.is_err() {
                        break;
                    }
                }
                drop(sq);
                cancelled = true;
            }
            ok = self.ring.wait(Duration::from_millis(100)).is_ok();
            for c in self.ring.uring.completion() {
                if c.user_data() != CANCEL {
                    self.armed -= 1;
                }
            }
        }
        if self.armed > 0 {
            self.bufs.leak();
            self.hdrs.leak();
            self.iovs.leak();
            self.names.leak();
            self.cmsgs.leak();
        }
    }
}

/// `user_data` of the multishot receive request.
const MULTI: u64 = u64::MAX - 1;
/// The provided-buffer group of the multishot receive.
const BGID: u16 = 0;
/// Room for the source address in each multishot buffer: a `sockaddr_in6`, rounded up to 8
/// bytes so that the control data after it stays aligned for `cmsghdr`.
const NAME_ROOM: usize = 32;
/// `struct io_uring_recvmsg_out`, at the start of each multishot buffer.
const OUT_HEADER: usize = 16;

/// One entry of a provided-buffer ring (`struct io_uring_buf`); the `resv` field of entry 0
/// is the ring's tail, written by us and read by the kernel.
#[derive(Clone, Copy)]
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A page, the alignment a provided-buffer ring needs.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The RX ring in multishot mode: one `RecvMsg` request with `IORING_RECV_MULTISHOT` stays
/// armed and posts a completion per message, each in a buffer the kernel picks from a ring of
/// provided buffers (`IORING_REGISTER_PBUF_RING`); a handled buffer goes back to that ring.
/// One request means one waiter on the socket, however many buffers there are.
pub(crate) struct MultiRecv {
    ring: Ring,
    /// `count` buffers of `bufsize` bytes (a multiple of 8), in u64 words for alignment.
    bufs: Pinned<u64>,
    bufsize: usize,
    count: u16,
    /// The provided-buffer ring: `count` entries, page-aligned.
    entries: Pinned<Page>,
    /// Our copy of the ring's tail (the kernel reads the published one).
    tail: u16,
    /// The request's header: only `msg_namelen` and `msg_controllen` matter.
    hdr: Pinned<libc::msghdr>,
    registered: bool,
    /// Whether the multishot request is in the kernel (until its final completion).
    armed: bool,
    /// Whether a message came (a kernel without multishot RECVMSG fails the first request).
    received: bool,
    done: Vec<(u64, i32, u32)>,
}

impl MultiRecv {
    /// A multishot receiver on `fd` (which must outlive it) with `count` buffers (rounded up
    /// to a power of two) for messages of up to `max_msg` bytes. Fails where the kernel lacks
    /// provided-buffer rings (Linux 5.19).
    pub(crate) fn new(fd: RawFd, count: usize, max_msg: usize) -> io::Result<Self> {
        let count = count.clamp(2, 32_768).next_power_of_two();
        let bufsize = (OUT_HEADER + NAME_ROOM + CMSG_SPACE + max_msg).next_multiple_of(8);
        let pages = (count * size_of::<BufEntry>()).div_ceil(size_of::<Page>());
        let mut hdr = zeroed_msghdr();
        hdr.msg_namelen = NAME_ROOM as libc::socklen_t;
        hdr.msg_controllen = CMSG_SPACE as _;
        let mut r = MultiRecv {
            ring: Ring::new(8, fd)?,
            bufs: Pinned::new(count * bufsize / 8, 0u64),
            bufsize,
            count: count as u16,
            entries: Pinned::new(pages, Page([0; 4096])),
            tail: 0,
            hdr: Pinned::new(1, hdr),
            registered: false,
            armed: false,
            received: false,
            done: Vec::with_capacity(64),
        };
        // SAFETY: the ring memory is `count` entries, page-aligned, in a `Pinned` array that
        // is freed only after the group is unregistered (or leaked when that fails).
        unsafe {
            r.ring.uring.submitter().register_buf_ring_with_flags(
                r.entries.at(0) as u64,
                r.count,
                BGID,
                0,
            )?;
        }
        r.registered = true;
        for bid in 0..r.count {
            r.give_back(bid);
        }
        r.publish();
        Ok(r)
    }

    fn entry(&self, i: u16) -> *mut BufEntry {
        let base = self.entries.at(0).cast::<BufEntry>();
        // SAFETY: `i & (count - 1)` < count, and the pages hold `count` entries.
        unsafe { base.add(usize::from(i & (self.count - 1))) }
    }

    /// Puts buffer `bid` back in the ring (visible to the kernel after `publish`).
    fn give_back(&mut self, bid: u16) {
        let e = self.entry(self.tail);
        let addr = self.bufs.at(usize::from(bid) * self.bufsize / 8) as u64;
        // SAFETY: entry `tail` is not in the kernel's part of the ring (between its head and
        // the published tail), so the kernel does not read it now. The fields are written
        // through raw pointers, leaving `resv` (the tail, in entry 0) untouched.
        unsafe {
            std::ptr::addr_of_mut!((*e).addr).write(addr);
            std::ptr::addr_of_mut!((*e).len).write(self.bufsize as u32);
            std::ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the tail: the entries written before become the kernel's.
    fn publish(&mut self) {
        let e = self.entry(0);
        // SAFETY: `resv` of entry 0 is the ring's tail, a u16 the kernel reads; it is naturally
        // aligned (offset 14 of a page-aligned entry), and an atomic store with release
        // ordering makes the entries written before visible first.
        let tail =
            unsafe { &*std::ptr::addr_of!((*e).resv).cast::<std::sync::atomic::AtomicU16>() };
        tail.store(self.tail, std::sync::atomic::Ordering::Release);
    }

    /// Whether `e`, from [`MultiRecv::recv`], means the kernel cannot do multishot receives
    /// (the request failed with EINVAL before any message came).
    pub(crate) fn unsupported(&self, e: &io::Error) -> bool {
        !self.received && e.raw_os_error() == Some(libc::EINVAL)
    }

    /// Queues the multishot request.
    fn arm(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(SOCKET, self.hdr.at(0).cast_const(), BGID)
            .build()
            .user_data(MULTI);
        let mut sq = self.ring.uring.submission();
        // SAFETY: the request reads `hdr` (a `Pinned` array) and writes into the provided
        // buffers, which it takes from the registered ring: all freed only after `Drop` saw
        // the request's final completion and unregistered the group, else leaked. Rust reads
        // a buffer only after the kernel posted it and before it goes back into the ring.
        unsafe { sq.push(&sqe) }.map_err(|_| io::Error::other("RX submission queue full"))?;
        self.armed = true;
        Ok(())
    }

    /// Handles the completions in the queue: each message to `on`, its buffer back to the
    /// ring; re-arms the request if it ended. Returns how many messages.
    fn reap(&mut self, on: &mut dyn FnMut(&Received, &[u8])) -> io::Result<usize> {
        self.done.clear();
        self.done.extend(
            self.ring
                .uring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut n = 0;
        let mut failure = None;
        for k in 0..self.done.len() {
            let (ud, res, flags) = self.done[k];
            if ud != MULTI {
                continue;
            }
            if !io_uring::cqueue::more(flags) {
                self.armed = false;
            }
            let bid = io_uring::cqueue::buffer_select(flags);
            if res >= 0
                && let Some(bid) = bid
            {
                let len = (res as usize).min(self.bufsize);
                let start = self
                    .bufs
                    .at(usize::from(bid) * self.bufsize / 8)
                    .cast::<u8>();
                // SAFETY: the kernel posted buffer `bid` with this completion and no longer
                // writes it; it goes back into the ring only after this borrow ends. `len`
                // bytes of it were written (and all of it was initialised at allocation).
                let buf = unsafe { std::slice::from_raw_parts(start, len) };
                // SAFETY: `hdr` is read by the kernel only; no one writes it.
                let hdr = unsafe { &*self.hdr.at(0) };
                if let Ok(out) = io_uring::types::RecvMsgOut::parse(buf, hdr) {
                    n += 1;
                    self.received = true;
                    let name = out.name_data();
                    let src = (name.len() >= 24
                        && u16::from_ne_bytes([name[0], name[1]])
                            == libc::AF_INET6 as libc::sa_family_t)
                        .then(|| {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(&name[8..24]);
                            IpAddr::V6(Ipv6Addr::from(a))
                        });
                    let ctl = out.control_data();
                    let mut h = zeroed_msghdr();
                    h.msg_control = ctl.as_ptr().cast_mut().cast();
                    h.msg_controllen = ctl.len() as _;
                    let (ts_ns, hop_limit) = sys::control(&h);
                    let data = out.payload_data();
                    let m = Received {
                        len: data.len(),
                        truncated: out.is_payload_truncated(),
                        src,
                        ts_ns,
                        hop_limit,
                    };
                    on(&m, data);
                }
            } else if res < 0
                && !matches!(
                    -res,
                    libc::ENOBUFS | libc::EAGAIN | libc::EINTR | libc::ECANCELED | libc::ENOMEM
                )
            {
                failure = Some(io::Error::from_raw_os_error(-res));
            }
            if let Some(bid) = bid {
                self.give_back(bid);
            }
        }
        if !self.done.is_empty() {
            self.publish();
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if !self.armed {
            self.arm()?;
        }
        Ok(n)
    }

    /// Waits up to `timeout` for messages and hands each to `on`; drains what is queued (a
    /// bounded number of rounds). Returns how many messages.
    pub(crate) fn recv(
        &mut self,
        timeout: Duration,
        on: &mut dyn FnMut(&Received, &[u8]),
    ) -> io::Result<usize> {
        self.ring.enable()?;
        if !self.armed {
            self.arm()?;
        }
        let mut total = self.reap(on)?;
        if total == 0 {
            self.ring.wait(timeout)?;
            total = self.reap(on)?;
        }
        // Messages that completed meanwhile (the request keeps receiving while we work).
        let mut rounds = 0;
        let mut last = total;
        while last > 0 && rounds < 16 {
            self.ring.submit()?;
            last = self.reap(on)?;
            total += last;
            rounds += 1;
        }
        Ok(total)
    }
}

impl Drop for MultiRecv {
    fn drop(&mut self) {
        // Cancel the request and wait for its final completion: only then may the buffers it
        // writes, and the ring it takes them from, be freed.
        let deadline = Instant::now() + DRAIN;
        let mut cancelled = false;
        while self.armed && Instant::now() < deadline {
            if !cancelled {
                let sqe = opcode::AsyncCancel::new(MULTI).build().user_data(CANCEL);
                let mut sq = self.ring.uring.submission();
                // SAFETY: a cancel request references no memory of ours.
                if unsafe { sq.push(&sqe) }.is_err() {
                    break;
                }
                drop(sq);
                cancelled = true;
            }
            if self.ring.wait(Duration::from_millis(100)).is_err() {
                break;
            }
            for c in self.ring.uring.completion() {
                if c.user_data() == MULTI && !io_uring::cqueue::more(c.flags()) {
                    self.armed = false;
                }
            }
        }
        if self.registered
            && !self.armed
            && self
                .ring
                .uring
                .submitter()
                .unregister_buf_ring(BGID)
                .is_ok()
        {
            self.registered = false;
        }
        if self.armed || self.registered {
            self.bufs.leak();
            self.entries.leak();
            self.hdr.leak();
        }
    }
}
