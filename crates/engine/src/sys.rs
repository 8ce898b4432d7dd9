//! The unsafe syscall layer: raw sockets, socket options, `poll`, `sendmmsg`, `recvmmsg` and
//! control-message parsing. Nothing outside this module calls `libc` with pointers.
//!
//! The header vectors of `sendmmsg`/`recvmmsg` hold raw pointers into buffers owned by the
//! same struct (or, for sends, by the batch being sent). They are rebuilt before every call
//! and dereferenced by the kernel only during that call.

use core::net::{IpAddr, Ipv6Addr};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::batch::TxBatch;

/// Opens a raw ICMP (v4) or ICMPv6 socket.
pub(crate) fn raw_socket(v6: bool) -> io::Result<OwnedFd> {
    let (domain, proto) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    };
    // SAFETY: socket(2) takes no pointers; the result is checked before it is owned.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with a plain-old-data value.
pub(crate) fn set_opt<T: Copy>(fd: &OwnedFd, level: i32, name: i32, val: &T) -> io::Result<()> {
    let len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `val`, a live `Copy` value the kernel only reads.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (val as *const T).cast(), len) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Binds the socket to a device by name (`SO_BINDTODEVICE`).
pub(crate) fn bind_device(fd: &OwnedFd, dev: &str) -> io::Result<()> {
    let b = dev.as_bytes();
    let len = b.len() as libc::socklen_t;
    // SAFETY: the pointer and length describe `b`, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            b.as_ptr().cast(),
            len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attaches a socket filter that drops every packet (`SO_ATTACH_FILTER`, one classic BPF
/// instruction: return 0); the socket's error queue is not filtered.
pub(crate) fn drop_all(fd: &OwnedFd) -> io::Result<()> {
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: code.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `code` outlives it.
    set_opt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Waits until the socket is readable or `timeout` passes. EINTR counts as "not readable".
pub(crate) fn poll_in(fd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `p` is one valid pollfd, alive for the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if p.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::other("socket closed while polling"));
    }
    // POLLERR alone: send stamps wait on the error queue, or a socket error does, which the
    // read that follows reports.
    Ok(r > 0)
}

/// Most descriptors [`poll_any`] waits on.
#[cfg(feature = "xdp")]
pub(crate) const POLL_MAX: usize = 4;

/// Waits up to `ms` milliseconds for input on any of `fds` (at most [`POLL_MAX`]); whether
/// one is ready.
#[cfg(feature = "xdp")]
pub(crate) fn poll_any(fds: &[std::os::fd::RawFd], ms: i32) -> io::Result<bool> {
    let mut all = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; POLL_MAX];
    let n = fds.len().min(POLL_MAX);
    for (q, &fd) in all.iter_mut().zip(fds) {
        q.fd = fd;
    }
    let p = &mut all[..n];
    // SAFETY: `p` holds `p.len()` valid pollfds, alive for the call.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    let ready = |q: &libc::pollfd| q.revents & libc::POLLIN != 0;
    if p.iter()
        .any(|q| q.revents & (libc::POLLERR | libc::POLLNVAL) != 0 && !ready(q))
    {
        return Err(io::Error::other("socket error while polling"));
    }
    Ok(p.iter().any(ready))
}

enum Addrs {
    V4(Vec<libc::sockaddr_in>),
    V6(Vec<libc::sockaddr_in6>),
}

pub(crate) fn sin(a: core::net::Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    }
}

pub(crate) fn sin6(a: Ipv6Addr) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: a.octets(),
        },
        sin6_scope_id: 0,
    }
}

/// u64 words of control data per sent message: room for a TTL / hop-limit message, a
/// send-stamp request and its id, `CMSG_SPACE(sizeof(int))` each (24 bytes on Linux: a
/// 16-byte `cmsghdr`, the `int` padded to 8); u64 words keep them aligned for `cmsghdr`. A
/// unit test checks it against `libc::CMSG_SPACE`.
pub(crate) const MSG_CTL_WORDS: usize = 9;

/// `SCM_TS_OPT_ID` (Linux 6.13, `asm-generic/socket.h`; not in the libc crate yet): this
/// message's own id for its send stamps, in place of the socket's `OPT_ID` counter.
pub(crate) const SCM_TS_OPT_ID: i32 = 81;

/// What one message carries in its control data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ctl {
    /// A TTL / hop limit of its own.
    pub ttl: Option<u8>,
    /// The id its kernel send stamp comes back with (`SCM_TS_OPT_ID`).
    pub stamp_id: Option<u32>,
}

/// Which socket option a per-message TTL goes in, the TTL sockets of the family get, and
/// whether the socket takes kernel send stamps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MsgControl {
    /// IPv6 (`IPV6_HOPLIMIT`) or IPv4 (`IP_TTL`).
    pub v6: bool,
    /// The socket's own TTL: packets with it (or 0) need no control message.
    pub socket_ttl: u8,
    /// Whether the socket has send stamps on ([`set_tx_stamps`]): tagged packets then carry
    /// their tag as `SCM_TS_OPT_ID`.
    pub tx_stamps: bool,
}

impl MsgControl {
    /// What packet `i` of `batch` needs in control messages, if anything.
    #[inline]
    pub(crate) fn needed(&self, batch: &TxBatch, i: usize) -> Option<Ctl> {
        let t = batch.ttl(i);
        let ttl = (t != 0 && t != self.socket_ttl).then_some(t);
        let stamp_id = batch.tag(i).filter(|_| self.tx_stamps);
        (ttl.is_some() || stamp_id.is_some()).then_some(Ctl { ttl, stamp_id })
    }

    /// Points `h`'s control data at `ctl` and writes there, in this order, an `IP_TTL`
    /// (IPv4) or `IPV6_HOPLIMIT` (IPv6) message with the TTL (what `ip_cmsg_send` and
    /// `ip6_datagram_send_ctl` take as this message's TTL / hop limit), and for a stamp an
    /// `SO_TIMESTAMPING` message asking for this message's software send stamp and an
    /// `SCM_TS_OPT_ID` message with its id (`__sock_cmsg_send`): the socket asks for none
    /// by itself, so a packet without a tag never brings back a stamp under a made-up id.
    ///
    /// # Safety
    /// `ctl` must point to [`MSG_CTL_WORDS`] writable `u64`s that no one else uses until the
    /// message is sent.
    pub(crate) unsafe fn write(&self, h: &mut libc::msghdr, ctl: *mut u64, c: Ctl) {
        let (level, ty) = if self.v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
        } else {
            (libc::IPPROTO_IP, libc::IP_TTL)
        };
        let int = size_of::<libc::c_int>() as libc::c_uint;
        // SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic on their argument.
        let (space, len) = unsafe { (libc::CMSG_SPACE(int), libc::CMSG_LEN(int)) };
        let space = space as usize;
        debug_assert!(3 * space <= MSG_CTL_WORDS * 8 && space.is_multiple_of(8));
        let msgs = [
            c.ttl.map(|t| (level, ty, libc::c_int::from(t))),
            c.stamp_id.map(|_| {
                (
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPING,
                    libc::SOF_TIMESTAMPING_TX_SOFTWARE as libc::c_int,
                )
            }),
            c.stamp_id
                .map(|id| (libc::SOL_SOCKET, SCM_TS_OPT_ID, id as libc::c_int)),
        ];
        let mut at = 0;
        for (level, ty, value) in msgs.into_iter().flatten() {
            // SAFETY: the caller guarantees MSG_CTL_WORDS (>= 3 * CMSG_SPACE(sizeof(int)))
            // writable, 8-byte aligned words at `ctl`; each message takes `space` bytes (a
            // multiple of 8) from byte `at`, so its header and data (CMSG_DATA: right after
            // the header) stay inside; the data is written unaligned-safe.
            unsafe {
                let c = ctl.cast::<u8>().add(at).cast::<libc::cmsghdr>();
                (*c).cmsg_len = len as _;
                (*c).cmsg_level = level;
                (*c).cmsg_type = ty;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), value);
            }
            at += space;
        }
        h.msg_control = ctl.cast();
        h.msg_controllen = at as _;
    }
}

/// Readies the socket for the kernel's software send stamps: a message that asks for one
/// ([`MsgControl::write`]) comes back on the error queue with its `SCM_TS_OPT_ID` and the
/// time the device took it, without the packet (`OPT_TSONLY`); the socket asks for none by
/// itself (no `TX_SOFTWARE` here); received messages get no `SCM_TIMESTAMPING`
/// (`OPT_RX_FILTER`: `SO_TIMESTAMPNS` stamps them).
pub(crate) fn set_tx_stamps(fd: &OwnedFd) -> io::Result<()> {
    let flags = libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_ID
        | libc::SOF_TIMESTAMPING_OPT_TSONLY
        | libc::SOF_TIMESTAMPING_OPT_RX_FILTER;
    set_opt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPING,
        &(flags as libc::c_int),
    )
}

/// Whether this kernel takes `SCM_TS_OPT_ID` (Linux 6.13 on): an older one refuses every
/// message that carries it, so send stamps stay off there.
pub(crate) fn kernel_has_ts_opt_id() -> bool {
    // SAFETY: all-zero is a valid utsname; uname fills it.
    let mut u: libc::utsname = unsafe { zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    release_at_least(&release, (6, 13))
}

/// Whether a kernel release string ("6.18.44-fc-v1272") is at least `want` (major, minor).
pub(crate) fn release_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// `SCM_TSTAMP_SND` (`linux/errqueue.h`): a stamp taken as the device took the packet.
const SCM_TSTAMP_SND: u32 = 0;

/// Send stamps read off a socket's error queue: (id, ns since the epoch) per stamp.
pub(crate) struct ErrQueue(RecvVec);

/// Bytes of packet room per error-queue message: `OPT_TSONLY` sends none back.
const ERRQ_BUF: usize = 64;
/// Bytes of control data per error-queue message: `SCM_TIMESTAMPING` (three timespecs),
/// `SCM_TIMESTAMPNS` and `IP(V6)_RECVERR` (the extended error and an address).
const ERRQ_CMSG: usize = 256;

impl core::fmt::Debug for ErrQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ErrQueue")
    }
}

impl ErrQueue {
    pub(crate) fn new(cap: usize) -> Self {
        ErrQueue(RecvVec::with_control(cap, ERRQ_BUF, ERRQ_CMSG))
    }

    /// Reads every send stamp waiting on `fd`'s error queue (a bounded number of calls) and
    /// passes each as (id, ns); returns how many.
    pub(crate) fn drain(
        &mut self,
        fd: &OwnedFd,
        on_stamp: &mut dyn FnMut(u32, u64),
    ) -> io::Result<usize> {
        let mut total = 0;
        for _ in 0..64 {
            let n = self.0.recv_flags(fd, libc::MSG_ERRQUEUE)?;
            for i in 0..n {
                if let Some((id, ts)) = tx_stamp(self.0.header(i)) {
                    on_stamp(id, ts);
                    total += 1;
                }
            }
            if n < self.0.capacity() {
                break;
            }
        }
        Ok(total)
    }
}

/// Calls `f(level, type, data)` for each control message the kernel left in `hdr` (`hdr` as
/// filled by `recvmmsg` or an io_uring `RecvMsg` into our control buffer).
fn each_cmsg(hdr: &libc::msghdr, f: &mut dyn FnMut(i32, i32, &[u8])) {
    // SAFETY: `msg_control` points to our aligned control buffer and `msg_controllen` to the
    // bytes the kernel wrote there, as well-formed cmsghdrs; CMSG_FIRSTHDR/CMSG_NXTHDR stay
    // within that length and return null at its end; a message's data (CMSG_DATA, the bytes
    // its `cmsg_len` counts past the header) lies inside the buffer, so the slice is valid
    // for the call.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            let data = std::slice::from_raw_parts(libc::CMSG_DATA(c), len);
            f((*c).cmsg_level, (*c).cmsg_type, data);
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
}

/// The `i`-th native-endian 8-byte word of `b`, if there.
fn word64(b: &[u8], i: usize) -> Option<i64> {
    Some(i64::from_ne_bytes(
        b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
    ))
}

/// The `i`-th native-endian 4-byte word of `b`, if there.
fn word32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
    ))
}

/// A `struct timespec` (two 64-bit words on 64-bit Linux) as ns; `None` if short or zero.
fn timespec_ns(b: &[u8]) -> Option<u64> {
    let (sec, nsec) = (word64(b, 0)?, word64(b, 1)?);
    (sec > 0 || nsec > 0).then(|| sec as u64 * 1_000_000_000 + nsec as u64)
}

/// The send stamp an error-queue message carries: the id (`ee_data` of a
/// `SO_EE_ORIGIN_TIMESTAMPING` error of kind `SCM_TSTAMP_SND`) and the software stamp
/// (`SCM_TIMESTAMPING`'s first timespec).
pub(crate) fn tx_stamp(hdr: &libc::msghdr) -> Option<(u32, u64)> {
    let (mut ts, mut id) = (None, None);
    each_cmsg(hdr, &mut |level, ty, data| {
        if level == libc::SOL_SOCKET && ty == libc::SCM_TIMESTAMPING {
            ts = timespec_ns(data);
        } else if (level == libc::SOL_IP && ty == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR)
        {
            // struct sock_extended_err: ee_errno, (ee_origin, ee_type, ee_code, ee_pad),
            // ee_info, ee_data.
            let origin = data.get(4).copied();
            if word32(data, 0) == Some(libc::ENOMSG as u32)
                && origin == Some(libc::SO_EE_ORIGIN_TIMESTAMPING)
                && word32(data, 2) == Some(SCM_TSTAMP_SND)
            {
                id = word32(data, 3);
            }
        }
    });
    Some((id?, ts?))
}

/// Header vectors for `sendmmsg`.
pub(crate) struct SendVec {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Addrs,
    /// Per message, room for its control messages.
    ctl: Vec<u64>,
    ttl: MsgControl,
}

// SAFETY: the raw pointers inside `hdrs` and `iovs` point into `addrs`, `iovs` and the batch
// being sent; they are rewritten at the start of every `send` and only dereferenced (by the
// kernel) during that call, so moving the struct to another thread is sound.
unsafe impl Send for SendVec {}

impl SendVec {
    pub(crate) fn new(cap: usize, ttl: MsgControl) -> Self {
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero bytes are valid.
        let hdrs = (0..cap)
            .map(|_| unsafe { zeroed::<libc::mmsghdr>() })
            .collect();
        let iovs = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0
            };
            cap
        ];
        let addrs = if ttl.v6 {
            Addrs::V6(vec![sin6(Ipv6Addr::UNSPECIFIED); cap])
        } else {
            Addrs::V4(vec![sin(core::net::Ipv4Addr::UNSPECIFIED); cap])
        };
        SendVec {
            hdrs,
            iovs,
            addrs,
            ctl: vec![0; cap * MSG_CTL_WORDS],
            ttl,
        }
    }

    /// Sends packets `from..` of `batch` (as many as fit in one call). Returns how many the
    /// kernel took; an error means the first of them failed.
    pub(crate) fn send(&mut self, fd: &OwnedFd, batch: &TxBatch, from: usize) -> io::Result<usize> {
        let n = batch.len().saturating_sub(from).min(self.hdrs.len());
        for i in 0..n {
            let Some((bytes, dst)) = batch.packet(from + i) else {
                break;
            };
            let (name, namelen): (*mut libc::c_void, usize) = match (&mut self.addrs, dst) {
                (Addrs::V4(a), IpAddr::V4(d)) => {
                    a[i] = sin(d);
                    (
                        (&mut a[i] as *mut libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>(),
                    )
                }
                (Addrs::V6(a), IpAddr::V6(d)) => {
                    a[i] = sin6(d);
                    (
                        (&mut a[i] as *mut libc::sockaddr_in6).cast(),
                        size_of::<libc::sockaddr_in6>(),
                    )
                }
                _ => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
            };
            self.iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = name;
            h.msg_namelen = namelen as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            if let Some(t) = self.ttl.needed(batch, from + i) {
                let ctl = self.ctl[i * MSG_CTL_WORDS..].as_mut_ptr();
                // SAFETY: `ctl` is message `i`'s own MSG_CTL_WORDS words of `self.ctl`,
                // used by no other header and alive until the next `send`.
                unsafe { self.ttl.write(h, ctl, t) };
            }
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the first `n` headers were just written; each points to one iovec in
        // `self.iovs`, one address in `self.addrs`, possibly its control data in `self.ctl`,
        // and packet bytes borrowed from `batch`,
        // all alive and unaliased for the duration of the call. The kernel only reads the
        // buffers and writes `msg_len`.
        let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), n as u32, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}

/// One received message, as read back from the header vectors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub len: usize,
    pub truncated: bool,
    pub src: Option<IpAddr>,
    pub ts_ns: Option<u64>,
    pub hop_limit: Option<u8>,
}

/// Bytes of control data room per received message (timestamp, hop limit), a multiple of 8.
pub(crate) const CMSG_SPACE: usize = 128;

/// Buffers and header vectors for `recvmmsg`.
pub(crate) struct RecvVec {
    bufs: Vec<u8>,
    bufsize: usize,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in6>,
    /// u64 words keep the control buffers aligned for `cmsghdr`.
    cmsgs: Vec<u64>,
    /// Bytes of control data room per message, a multiple of 8.
    ctl: usize,
}

// SAFETY: as for `SendVec`: the pointers in `hdrs`/`iovs` point into this struct's own heap
// buffers, are rewritten before every `recv`, and are dereferenced only during that call.
unsafe impl Send for RecvVec {}

impl RecvVec {
    pub(crate) fn new(cap: usize, bufsize: usize) -> Self {
        RecvVec::with_control(cap, bufsize, CMSG_SPACE)
    }

    /// `cap` messages of `bufsize` bytes, each with `ctl` bytes (a multiple of 8) of control
    /// data room.
    pub(crate) fn with_control(cap: usize, bufsize: usize, ctl: usize) -> Self {
        debug_assert!(ctl.is_multiple_of(8));
        RecvVec {
            ctl,
            bufs: vec![0; cap * bufsize],
            bufsize,
            // SAFETY: all-zero bytes are a valid mmsghdr.
            hdrs: (0..cap)
                .map(|_| unsafe { zeroed::<libc::mmsghdr>() })
                .collect(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                cap
            ],
            names: vec![sin6(Ipv6Addr::UNSPECIFIED); cap],
            cmsgs: vec![0; cap * ctl / 8],
        }
    }

    /// Messages per call.
    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to the vector's capacity without blocking. `Ok(0)` when nothing waits.
    pub(crate) fn recv(&mut self, fd: &OwnedFd) -> io::Result<usize> {
        self.recv_flags(fd, 0)
    }

    /// As [`RecvVec::recv`], with more `recvmmsg` flags (`MSG_ERRQUEUE`).
    pub(crate) fn recv_flags(&mut self, fd: &OwnedFd, flags: i32) -> io::Result<usize> {
        let cap = self.hdrs.len();
        let base = self.bufs.as_mut_ptr();
        let cbase = self.cmsgs.as_mut_ptr();
        for i in 0..cap {
            // SAFETY: `i * bufsize` and `i * ctl / 8` are within the buffers allocated with
            // `cap` slots in `with_control`.
            let (buf, ctl) = unsafe { (base.add(i * self.bufsize), cbase.add(i * self.ctl / 8)) };
            self.iovs[i] = libc::iovec {
                iov_base: buf.cast(),
                iov_len: self.bufsize,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in6).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ctl.cast();
            h.msg_hdr.msg_controllen = self.ctl as _;
            h.msg_hdr.msg_flags = 0;
        }
        let flags = (libc::MSG_DONTWAIT | flags) as _;
        // SAFETY: every header points to a distinct buffer slot, name and control area owned
        // by `self`, of the lengths given, alive and not otherwise borrowed during the call.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                cap as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }

    /// The header of message `i` of the last `recv`, as the kernel filled it.
    pub(crate) fn header(&self, i: usize) -> &libc::msghdr {
        &self.hdrs[i].msg_hdr
    }

    /// Message `i` of the last `recv`: its metadata and bytes.
    pub(crate) fn message(&self, i: usize) -> (Received, &[u8]) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.bufsize);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let name = &self.names[i];
        let src = (name.sin6_family == libc::AF_INET6 as libc::sa_family_t)
            .then(|| IpAddr::V6(Ipv6Addr::from(name.sin6_addr.s6_addr)));
        let (ts_ns, hop_limit) = control(&h.msg_hdr);
        let data = &self.bufs[i * self.bufsize..i * self.bufsize + len];
        (
            Received {
                len,
                truncated,
                src,
                ts_ns,
                hop_limit,
            },
            data,
        )
    }
}

/// Reads the receive timestamp and hop limit from a message's control data.
pub(crate) fn control(hdr: &libc::msghdr) -> (Option<u64>, Option<u8>) {
    let (mut ts, mut hops) = (None, None);
    each_cmsg(hdr, &mut |level, ty, data| {
        if level == libc::SOL_SOCKET && ty == libc::SCM_TIMESTAMPNS {
            ts = timespec_ns(data);
        } else if level == libc::IPPROTO_IPV6 && ty == libc::IPV6_HOPLIMIT {
            hops = word32(data, 0).and_then(|h| u8::try_from(h as i32).ok());
        }
    });
    (ts, hops)
}

/// Whether the AF_XDP socket `fd` is bound in zero-copy mode (`XDP_OPTIONS`); `false` in
/// copy mode, or when the kernel does not say.
#[cfg(feature = "xdp")]
pub(crate) fn xsk_zero_copy(fd: std::os::fd::RawFd) -> bool {
    const SOL_XDP: i32 = 283;
    const XDP_OPTIONS: i32 = 8;
    const XDP_OPTIONS_ZEROCOPY: u32 = 1;
    let mut flags: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `flags` is a writable u32 (struct xdp_options) and `len` says so; the kernel
    // writes at most `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut flags as *mut u32).cast(),
            &mut len,
        )
    };
    r == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

/// CLOCK_MONOTONIC now, ns.
pub(crate) fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Now on CLOCK_REALTIME (ns since the epoch), CLOCK_REALTIME − CLOCK_MONOTONIC, and the
/// gap between the two monotonic reads the realtime read sits between: the offset is off by
/// at most that (tens of ns, unless the thread was preempted in between).
pub(crate) fn realtime_minus_monotonic() -> (u64, i64, u64) {
    let mono = || {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec * 1_000_000_000 + t.tv_nsec
    };
    let a = mono();
    let real = crate::realtime_ns();
    let b = mono();
    (real, real as i64 - (a + (b - a) / 2), b.abs_diff(a))
}

/// Lowers the calling thread's scheduling priority to nice `nice` (Linux: `setpriority`
/// on the thread id applies to that thread only).
pub(crate) fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: integer arguments only; `which`/`who` name this thread.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Packets the kernel dropped on the socket's receive queue so far (`sk_drops`: receive buffer
/// full), read with `SO_MEMINFO` (`SK_MEMINFO_DROPS`). The same counter `SO_RXQ_OVFL` reports,
/// but readable at any time rather than only beside the next packet received.
pub(crate) fn socket_drops(fd: &OwnedFd) -> io::Result<u64> {
    /// `SO_MEMINFO` (asm-generic/socket.h; the same on every architecture asdic builds for).
    const SO_MEMINFO: libc::c_int = 55;
    const DROPS: usize = libc::SK_MEMINFO_DROPS as usize;
    let mut info = [0u32; 9];
    let mut len = size_of::<[u32; 9]>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `info`, alive for the call; the kernel writes at
    // most `len` bytes into it and stores the length it wrote.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < (DROPS + 1) * 4 {
        return Err(io::Error::other(format!("SO_MEMINFO returned {len} bytes")));
    }
    Ok(u64::from(info[DROPS]))
}

/// The interface's channel counts (`ETHTOOL_GCHANNELS`): (RX-only, TX-only, combined) in use.
#[cfg(feature = "xdp")]
pub(crate) fn channels(ifname: &str) -> io::Result<(u32, u32, u32)> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    // `struct ethtool_channels`: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count.
    let mut ch = [0u32; 9];
    ch[0] = ETHTOOL_GCHANNELS;
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = ch.as_mut_ptr().cast();
    // SAFETY: socket(2) takes no pointers; the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifr` names the interface and points at `ch`, both alive for the call; the
    // kernel reads the command from `ch` and writes at most its 9 words.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ch[5], ch[6], ch[8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control messages `write` left in `h`: (level, type, int value) each.
    fn read_back(h: &libc::msghdr) -> Vec<(i32, i32, libc::c_int)> {
        let mut out = Vec::new();
        // SAFETY: `h` describes a control buffer holding well-formed cmsghdrs.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                out.push(((*c).cmsg_level, (*c).cmsg_type, v));
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        out
    }

    #[test]
    fn the_control_messages_fit_and_read_back() {
        let ask = (
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            libc::SOF_TIMESTAMPING_TX_SOFTWARE as i32,
        );
        // SAFETY: arithmetic only.
        let space = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
        assert!(3 * space <= MSG_CTL_WORDS * 8, "{space} bytes");
        for (v6, level, ty) in [
            (false, libc::IPPROTO_IP, libc::IP_TTL),
            (true, libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT),
        ] {
            let t = MsgControl {
                v6,
                socket_ttl: 64,
                tx_stamps: true,
            };
            for (c, want) in [
                (
                    Ctl {
                        ttl: Some(7),
                        stamp_id: None,
                    },
                    vec![(level, ty, 7)],
                ),
                (
                    Ctl {
                        ttl: None,
                        stamp_id: Some(0xdead_beef),
                    },
                    vec![
                        ask,
                        (libc::SOL_SOCKET, SCM_TS_OPT_ID, 0xdead_beef_u32 as i32),
                    ],
                ),
                (
                    Ctl {
                        ttl: Some(3),
                        stamp_id: Some(9),
                    },
                    vec![(level, ty, 3), ask, (libc::SOL_SOCKET, SCM_TS_OPT_ID, 9)],
                ),
            ] {
                let mut ctl = [u64::MAX; MSG_CTL_WORDS];
                // SAFETY: all-zero is a valid msghdr.
                let mut h: libc::msghdr = unsafe { zeroed() };
                // SAFETY: `ctl` is MSG_CTL_WORDS words, alive for the test.
                unsafe { t.write(&mut h, ctl.as_mut_ptr(), c) };
                assert_eq!(h.msg_controllen as usize, space * want.len());
                assert_eq!(read_back(&h), want, "{c:?}");
            }
        }
    }

    #[test]
    fn a_tagged_packet_asks_for_its_stamp_only_where_stamps_are_on() {
        let mut b = TxBatch::new(2, 8);
        b.push(IpAddr::from([198, 19, 0, 1]), 8).unwrap();
        b.push(IpAddr::from([198, 19, 0, 2]), 8).unwrap();
        b.set_tag(1, 77);
        let mut t = MsgControl {
            v6: false,
            socket_ttl: 64,
            tx_stamps: true,
        };
        assert_eq!(t.needed(&b, 0), None);
        assert_eq!(
            t.needed(&b, 1),
            Some(Ctl {
                ttl: None,
                stamp_id: Some(77)
            })
        );
        t.tx_stamps = false;
        assert_eq!(t.needed(&b, 1), None);
        // A refilled batch forgets the tags.
        b.clear();
        b.push(IpAddr::from([198, 19, 0, 1]), 8).unwrap();
        b.push(IpAddr::from([198, 19, 0, 2]), 8).unwrap();
        assert_eq!(b.tag(1), None);
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(release_at_least("6.18.44-fc-v1272", (6, 13)));
        assert!(release_at_least("6.13.0", (6, 13)));
        assert!(release_at_least("7.0", (6, 13)));
        assert!(!release_at_least("6.12.9-amd64", (6, 13)));
        assert!(!release_at_least("5.19", (6, 13)));
        assert!(!release_at_least("", (6, 13)));
        assert!(!release_at_least("six", (6, 13)));
    }

    /// An error-queue message as the kernel writes it for a send stamp.
    fn stamp_message(
        ctl: &mut [u64; ERRQ_CMSG / 8],
        v6: bool,
        origin: u8,
        info: u32,
        id: u32,
        ts: (i64, i64),
    ) -> libc::msghdr {
        // SAFETY: all-zero is a valid msghdr.
        let mut h: libc::msghdr = unsafe { zeroed() };
        h.msg_control = ctl.as_mut_ptr().cast();
        h.msg_controllen = ERRQ_CMSG as _;
        let ee = libc::sock_extended_err {
            ee_errno: libc::ENOMSG as u32,
            ee_origin: origin,
            ee_type: 0,
            ee_code: 0,
            ee_pad: 0,
            ee_info: info,
            ee_data: id,
        };
        let stamps = [
            libc::timespec {
                tv_sec: ts.0,
                tv_nsec: ts.1,
            },
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        ];
        let (level, ty) = if v6 {
            (libc::SOL_IPV6, libc::IPV6_RECVERR)
        } else {
            (libc::SOL_IP, libc::IP_RECVERR)
        };
        // SAFETY: the two messages (CMSG_SPACE of 48 and 16 bytes) fit the 256-byte buffer;
        // headers are written in place, data unaligned-safe.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&h);
            (*c).cmsg_len = libc::CMSG_LEN(size_of_val(&stamps) as u32) as _;
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_TIMESTAMPING;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), stamps);
            let c = libc::CMSG_NXTHDR(&h, c);
            (*c).cmsg_len = libc::CMSG_LEN(size_of_val(&ee) as u32) as _;
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), ee);
            h.msg_controllen = (libc::CMSG_SPACE(size_of_val(&stamps) as u32)
                + libc::CMSG_SPACE(size_of_val(&ee) as u32)) as _;
        }
        h
    }

    #[test]
    fn a_send_stamp_reads_back_with_its_id_and_nothing_else_does() {
        for v6 in [false, true] {
            let mut ctl = [0u64; ERRQ_CMSG / 8];
            let h = stamp_message(&mut ctl, v6, libc::SO_EE_ORIGIN_TIMESTAMPING, 0, 42, (5, 7));
            assert_eq!(tx_stamp(&h), Some((42, 5_000_000_007)));
            // Another kind of stamp (scheduler, ACK), another origin (a real ICMP error), no
            // stamp: not a send stamp.
            let h = stamp_message(&mut ctl, v6, libc::SO_EE_ORIGIN_TIMESTAMPING, 1, 42, (5, 7));
            assert_eq!(tx_stamp(&h), None);
            let h = stamp_message(&mut ctl, v6, libc::SO_EE_ORIGIN_ICMP, 0, 42, (5, 7));
            assert_eq!(tx_stamp(&h), None);
            let h = stamp_message(&mut ctl, v6, libc::SO_EE_ORIGIN_TIMESTAMPING, 0, 42, (0, 0));
            assert_eq!(tx_stamp(&h), None);
        }
        // SAFETY: all-zero is a valid msghdr: no control data at all.
        let empty: libc::msghdr = unsafe { zeroed() };
        assert_eq!(tx_stamp(&empty), None);
    }

    #[test]
    fn only_ttls_other_than_the_sockets_need_a_control_message() {
        let mut b = TxBatch::new(3, 8);
        for _ in 0..3 {
            b.push(IpAddr::from([198, 19, 0, 1]), 8).unwrap();
        }
        b.set_ttl(1, 64);
        b.set_ttl(2, 3);
        let t = MsgControl {
            v6: false,
            socket_ttl: 64,
            tx_stamps: true,
        };
        let ttl = |ttl| Ctl {
            ttl: Some(ttl),
            stamp_id: None,
        };
        assert_eq!(
            (t.needed(&b, 0), t.needed(&b, 1), t.needed(&b, 2)),
            (None, None, Some(ttl(3)))
        );
    }
}
