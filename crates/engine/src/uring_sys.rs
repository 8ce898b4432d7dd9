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

use core::net::{IpAddr, Ipv6Addr};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, opcode};

use crate::batch::TxBatch;
use crate::sys::{self, CMSG_SPACE, Received};

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

/// Creates a ring with `entries` submission slots and twice as many completion slots, and
/// checks that the kernel has what the engine uses: SENDMSG, RECVMSG, ASYNC_CANCEL and
/// waiting with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11).
fn new_ring(entries: usize) -> io::Result<IoUring> {
    let entries = u32::try_from(entries.clamp(1, 4096)).unwrap_or(4096);
    let ring = IoUring::builder()
        .setup_cqsize(entries * 2)
        .build(entries)?;
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's io_uring cannot wait with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11)",
        ));
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
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
    Ok(ring)
}

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
    ring: IoUring,
    hdrs: Pinned<libc::msghdr>,
    iovs: Pinned<libc::iovec>,
    addrs: Pinned<SockAddr>,
    slots: usize,
    /// Requests submitted whose completion has not been reaped.
    in_flight: usize,
    /// Set when `io_uring_enter` failed for good: the ring is not used again.
    broken: bool,
}

impl SendRing {
    /// A ring for up to `slots` packets per send.
    pub(crate) fn new(slots: usize) -> io::Result<Self> {
        let slots = slots.max(1);
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let addr = SockAddr {
            v6: sys::sin6(Ipv6Addr::UNSPECIFIED),
        };
        Ok(SendRing {
            ring: new_ring(slots)?,
            hdrs: Pinned::new(slots, zeroed_msghdr()),
            iovs: Pinned::new(slots, iov),
            addrs: Pinned::new(slots, addr),
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
        fd: RawFd,
        batch: &TxBatch,
        first: usize,
        states: &mut [i32],
    ) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("the TX ring failed earlier"));
        }
        assert!(states.len() <= self.slots, "more packets than slots");
        {
            let mut sq = self.ring.submission();
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
                // SAFETY: `iov` and `hdr` are slot `i` of our arrays, unused by any request
                // (nothing is in flight between sends); the iovec points at the packet's
                // bytes, which `batch` lends us for this call.
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
                }
                let sqe = opcode::SendMsg::new(Fd(fd), hdr.cast_const())
                    .build()
                    .user_data(i as u64);
                // SAFETY: the request reads header `i`, its iovec and address (our `Pinned`
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
            match self.ring.submit_and_wait(self.in_flight) {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
            for cqe in self.ring.completion() {
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
        }
    }
}

/// The RX ring: `slots` `RecvMsg` requests kept armed on the socket, each with its own
/// buffer, header, iovec, source address and control-data room.
pub(crate) struct RecvRing {
    ring: IoUring,
    fd: RawFd,
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
            ring: new_ring(slots)?,
            fd,
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
        let sqe = opcode::RecvMsg::new(Fd(self.fd), hdr)
            .build()
            .user_data(i as u64);
        let mut sq = self.ring.submission();
        // SAFETY: the request writes slot `i`'s buffer, name, control data and header fields,
        // all in our `Pinned` arrays (fixed addresses). Rust does not touch them again until
        // the request's completion is reaped, and they are freed only when `Drop` has seen
        // every armed request complete (after cancelling them), else leaked.
        unsafe { sq.push(&sqe) }.map_err(|_| io::Error::other("RX submission queue full"))?;
        self.armed += 1;
        Ok(())
    }

    /// Submits what is queued and waits up to `timeout` for at least one completion.
    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits what is queued without waiting.
    fn submit(&mut self) -> io::Result<()> {
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Handles the completions in the queue: hands each message to `on`, then re-arms its
    /// slot. Returns how many messages there were.
    fn reap(&mut self, on: &mut dyn FnMut(&Received, &[u8])) -> io::Result<usize> {
        self.done.clear();
        self.done
            .extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
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
            self.started = true;
            for i in 0..self.slots {
                self.arm(i)?;
            }
        }
        let mut total = self.reap(on)?;
        if total == 0 {
            self.wait(timeout)?;
            total = self.reap(on)?;
        }
        // Re-armed requests find queued messages at once: a few more rounds drain them.
        let mut rounds = 0;
        let mut last = total;
        while last > 0 && rounds < 16 {
            self.submit()?;
            last = self.reap(on)?;
            total += last;
            rounds += 1;
        }
        if last > 0 {
            self.submit()?;
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
        let _ = self.submit();
        let mut cancelled = false;
        while self.armed > 0 && Instant::now() < deadline {
            if !cancelled {
                let mut sq = self.ring.submission();
                for i in 0..self.slots {
                    let sqe = opcode::AsyncCancel::new(i as u64).build().user_data(CANCEL);
                    // SAFETY: a cancel request references no memory of ours.
                    if unsafe { sq.push(&sqe) }.is_err() {
                        break;
                    }
                }
                sq.sync();
                cancelled = true;
            }
            let ts = Timespec::from(Duration::from_millis(100));
            let args = SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(_) => break,
            }
            for c in self.ring.completion() {
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
