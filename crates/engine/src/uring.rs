//! The io_uring engine: the raw engine's socket (same options, ICMP filters, kernel
//! timestamps, TTL, `SO_BINDTODEVICE`, no DF bit), driven through io_uring.
//!
//! - TX: one `SendMsg` request per packet of the batch, all submitted with one
//!   `io_uring_enter` that also waits for their completions. Headers, iovecs and addresses are
//!   preallocated per slot and reused; nothing is allocated per packet. Each packet gets its
//!   own result, in any order: a packet that cannot be sent does not stop the ones after it,
//!   and a [`Window`] remembers what went out so that the caller's next call (which resumes
//!   after the failed packet) reports those without sending them twice. A packet with a TTL
//!   of its own ([`TxBatch::set_ttl`]) carries it in an `IP_TTL` / `IPV6_HOPLIMIT` control
//!   message of its `SendMsg`, from per-slot preallocated room.
//! - RX ([`RecvMode::Multishot`], the default): one multishot `RecvMsg` request stays armed on
//!   the socket and posts a completion per message, in a buffer the kernel takes from a ring of
//!   provided buffers (each with room for the `SO_TIMESTAMPNS` and `IPV6_HOPLIMIT` control
//!   messages); the buffer goes back after the callback. A receive waits with the ring's own
//!   timeout (`IORING_ENTER_EXT_ARG`).
//! - RX ([`RecvMode::Armed`], and where the kernel lacks multishot receives, before Linux
//!   6.0): `armed_slots` plain `RecvMsg` requests stay armed, each with its own preallocated
//!   buffer, and each is re-armed after its message is handled. Measured on the test bed, every
//!   armed request is woken by every arriving packet (io_uring polls sockets non-exclusively
//!   for receives), so the RX thread's CPU grows with the number armed: keep it small.
//!
//! Needs CAP_NET_RAW, like the raw engine, and an io_uring this process may use: Linux 5.11 or
//! later, not disabled by `kernel.io_uring_disabled` or a seccomp filter. Otherwise [`open`]
//! fails with [`EngineError::Unavailable`], which says why.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::TxBatch;
use crate::error::{EngineError, SendError};
use crate::raw::{self, RawOptions};
use crate::uring_sys::{MultiRecv, PENDING, RecvRing, SendRing};
use crate::{Rx, RxCaps, RxFrame, Tx, TxCaps, TxLayer};
use std::os::fd::RawFd;

const ENGINE: &str = "uring";

/// How the RX half keeps receive requests in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvMode {
    /// One multishot `RecvMsg` taking buffers from a provided-buffer ring (Linux 6.0); where
    /// the kernel lacks it, [`RecvMode::Armed`].
    Multishot,
    /// Plain `RecvMsg` requests kept armed, one buffer each, re-armed after each message.
    Armed,
}

/// How to open the io_uring engine.
#[derive(Debug, Clone)]
pub struct UringOptions {
    /// The socket, as for the raw engine; `batch` is the most packets one TX submit carries.
    pub socket: RawOptions,
    /// How receives are kept armed.
    pub recv: RecvMode,
    /// Provided buffers of the multishot receive (rounded up to a power of two), each of
    /// `socket.max_reply` bytes plus room for the source address and control messages.
    pub recv_buffers: usize,
    /// Requests kept armed in [`RecvMode::Armed`] (each with a buffer of `socket.max_reply`).
    pub armed_slots: usize,
}

impl Default for UringOptions {
    fn default() -> Self {
        UringOptions {
            socket: RawOptions::default(),
            recv: RecvMode::Multishot,
            recv_buffers: 256,
            armed_slots: 4,
        }
    }
}

/// Why a ring could not be set up, in words an operator can act on.
fn unavailable(e: io::Error) -> EngineError {
    let reason = match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring_setup: ENOSYS: this kernel has no io_uring".to_string(),
        Some(libc::EPERM) => "io_uring_setup: EPERM: io_uring is disabled for this process \
                              (sysctl kernel.io_uring_disabled, or a seccomp filter such as a \
                              container runtime's)"
            .to_string(),
        Some(libc::ENOMEM) => {
            format!("io_uring_setup: {e} (is the locked-memory limit, ulimit -l, too low?)")
        }
        _ => format!("io_uring: {e}"),
    };
    EngineError::Unavailable {
        engine: ENGINE,
        reason,
    }
}

/// Opens the engine: a ring per half, on a socket for replies and, with send stamps, one of
/// its own for sending ([`raw::sockets`]).
pub fn open(opts: &UringOptions) -> Result<(UringTx, UringRx), EngineError> {
    let raw::Sockets { rx: fd, tx, stamps } = raw::sockets(&opts.socket, ENGINE)?;
    let raw_fd = fd.as_raw_fd();
    let ttl = crate::sys::MsgControl {
        v6: opts.socket.v6,
        socket_ttl: opts.socket.ttl,
        tx_stamps: stamps,
    };
    let ring = SendRing::new(tx.as_raw_fd(), opts.socket.batch.max(1), ttl).map_err(unavailable)?;
    let window = Window::new(ring.slots());
    let max_reply = opts.socket.max_reply.max(256);
    let armed = || RecvRing::new(raw_fd, opts.armed_slots.max(1), max_reply);
    let rx_ring = match opts.recv {
        RecvMode::Armed => RxRing::Armed(armed().map_err(unavailable)?),
        // Without provided-buffer rings (before Linux 5.19) there is no multishot receive.
        RecvMode::Multishot => match MultiRecv::new(raw_fd, opts.recv_buffers, max_reply) {
            Ok(m) => RxRing::Multi(m),
            Err(_) => RxRing::Armed(armed().map_err(unavailable)?),
        },
    };
    let rx = UringRx {
        ring: rx_ring,
        fd,
        raw_fd,
        v6: opts.socket.v6,
        armed_slots: opts.armed_slots.max(1),
        max_reply,
        errq: stamps.then(|| {
            (
                crate::sys::ErrQueue::new(opts.socket.batch.max(1)),
                tx.clone(),
            )
        }),
    };
    let tx = UringTx {
        ring,
        window,
        fd: tx,
        stamps,
    };
    Ok((tx, rx))
}

/// The sending half.
pub struct UringTx {
    ring: SendRing,
    window: Window,
    fd: Arc<OwnedFd>,
    stamps: bool,
}

impl core::fmt::Debug for UringTx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UringTx")
            .field("fd", &self.fd)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Tx for UringTx {
    fn caps(&self) -> TxCaps {
        TxCaps {
            engine: ENGINE,
            layer: TxLayer::Icmp,
            max_packet: raw::MAX_PACKET,
            ttl_per_socket: true,
            kernel_stamps: self.stamps,
            serial_send: true,
        }
    }

    fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
        if from >= batch.len() {
            return Ok(0);
        }
        let (first, states) = self.window.begin(batch.epoch(), batch.len(), from);
        if states.contains(&PENDING) {
            self.ring.send(batch, first, states).map_err(|source| {
                SendError::Fatal(EngineError::Io {
                    engine: ENGINE,
                    what: "io_uring_enter (send)",
                    source,
                })
            })?;
        }
        match self.window.report(from) {
            Report::Sent(n) => Ok(n),
            Report::Stopped { sent, errno } => Err(raw::send_error(
                io::Error::from_raw_os_error(errno),
                sent,
                ENGINE,
                "sendmsg",
            )),
        }
    }
}

/// The RX ring in either mode.
enum RxRing {
    Armed(RecvRing),
    Multi(MultiRecv),
}

/// The receiving half.
pub struct UringRx {
    // Declared before `fd`: dropping the ring cancels its requests while the socket is open.
    ring: RxRing,
    fd: Arc<OwnedFd>,
    raw_fd: RawFd,
    v6: bool,
    armed_slots: usize,
    max_reply: usize,
    /// The send stamps' reader and the sending socket they wait on, when they are on: a plain
    /// `recvmmsg(MSG_ERRQUEUE)` beside the ring, after every wait.
    errq: Option<(crate::sys::ErrQueue, Arc<OwnedFd>)>,
}

impl UringRx {
    /// The receive mode in use (multishot falls back to armed on older kernels).
    pub fn mode(&self) -> RecvMode {
        match self.ring {
            RxRing::Armed(_) => RecvMode::Armed,
            RxRing::Multi(_) => RecvMode::Multishot,
        }
    }
}

impl core::fmt::Debug for UringRx {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UringRx")
            .field("fd", &self.fd)
            .field("v6", &self.v6)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Rx for UringRx {
    fn caps(&self) -> RxCaps {
        RxCaps {
            engine: ENGINE,
            stamp: crate::RxStamp::KernelSoftware,
        }
    }

    fn recv(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, EngineError> {
        let v6 = self.v6;
        let errq = &mut self.errq;
        let mut stamps = 0;
        let mut stamp_err = None;
        let mut drained_at = 0;
        let mut on = |m: &crate::sys::Received, data: &[u8]| {
            // A probe's send stamp is queued on the error queue before the probe leaves the
            // device, so before any reply to it is received: a reply stamped before the last
            // read of the error queue began finds its probe's stamp handed over; a later one
            // reads the queue again first.
            if let Some((q, fd)) = errq.as_mut()
                && m.ts_ns.is_none_or(|t| t >= drained_at)
            {
                drained_at = crate::realtime_ns();
                match raw::tx_stamps(q, fd, on_frame) {
                    Ok(n) => stamps += n,
                    Err(e) => stamp_err = Some(e),
                }
            }
            let fallback = if m.ts_ns.is_some() {
                0
            } else {
                crate::stamp_ns()
            };
            if let Some(f) = raw::frame(v6, m, data, fallback) {
                on_frame(f);
            }
        };
        let r = match &mut self.ring {
            RxRing::Armed(r) => r.recv(timeout, &mut on),
            RxRing::Multi(r) => match r.recv(timeout, &mut on) {
                // Linux 5.19 has provided-buffer rings but fails multishot receives: go on
                // with armed requests.
                Err(e) if r.unsupported(&e) => {
                    let armed = RecvRing::new(self.raw_fd, self.armed_slots, self.max_reply);
                    self.ring = RxRing::Armed(armed.map_err(|source| EngineError::Io {
                        engine: ENGINE,
                        what: "io_uring recvmsg (armed, after multishot failed)",
                        source,
                    })?);
                    Ok(0)
                }
                r => r,
            },
        };
        let n = r.map_err(|source| EngineError::Io {
            engine: ENGINE,
            what: "io_uring recvmsg",
            source,
        })?;
        if let Some(e) = stamp_err {
            return Err(e);
        }
        // Stamps of probes nobody answered (yet) do not wait for a reply, filling the sending
        // socket's buffer.
        if let Some((q, fd)) = &mut self.errq {
            stamps += raw::tx_stamps(q, fd, on_frame)?;
        }
        Ok(n + stamps)
    }

    fn kernel_drops(&mut self) -> Result<crate::KernelDrops, EngineError> {
        let socket = crate::sys::socket_drops(&self.fd).map_err(|source| EngineError::Io {
            engine: ENGINE,
            what: "SO_MEMINFO",
            source,
        })?;
        Ok(crate::KernelDrops {
            socket,
            ..crate::KernelDrops::default()
        })
    }
}

/// What a send call tells its caller, from the packet it started at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// This many packets went out, up to the window's end.
    Sent(usize),
    /// `sent` packets went out, then one failed with `errno`.
    Stopped { sent: usize, errno: i32 },
}

/// Errors after which the same packet may well go out if sent again.
fn retryable(errno: i32) -> bool {
    matches!(
        errno,
        libc::EAGAIN | libc::ENOBUFS | libc::EINTR | libc::ECANCELED
    )
}

/// The packets of the batch being sent, at most one ring's worth from `base` on, and where
/// each stands: [`PENDING`] (to send), bytes sent, or `-errno`.
///
/// The TX contract reports one failure per call and expects the caller to resume at the packet
/// after it (or, when busy, at it), while io_uring sends every packet of a submit on its own.
/// The window keeps the results of one submit until the caller has walked past them; a new
/// batch (another epoch or length) or a call outside the window starts a new one.
#[derive(Debug)]
pub(crate) struct Window {
    epoch: u64,
    len: usize,
    base: usize,
    count: usize,
    states: Vec<i32>,
}

impl Window {
    /// A window of up to `slots` packets.
    pub(crate) fn new(slots: usize) -> Self {
        Window {
            // Batch epochs start at 1: no call continues the empty window.
            epoch: 0,
            len: 0,
            base: 0,
            count: 0,
            states: vec![PENDING; slots.max(1)],
        }
    }

    /// Starts the call at packet `from` of the batch (`epoch`, `len`), `from < len`. Returns
    /// the index of the first packet the window holds from `from` on, and their states: those
    /// [`PENDING`] are to be sent (packets that were busy become pending again).
    pub(crate) fn begin(&mut self, epoch: u64, len: usize, from: usize) -> (usize, &mut [i32]) {
        let continues = epoch == self.epoch
            && len == self.len
            && from >= self.base
            && from < self.base + self.count;
        if continues {
            for s in &mut self.states[from - self.base..self.count] {
                if *s < 0 && *s != PENDING && retryable(-*s) {
                    *s = PENDING;
                }
            }
        } else {
            self.epoch = epoch;
            self.len = len;
            self.base = from;
            self.count = len.saturating_sub(from).min(self.states.len());
            self.states[..self.count].fill(PENDING);
        }
        (from, &mut self.states[from - self.base..self.count])
    }

    /// The outcome of the call at `from`, once every pending packet has a result.
    fn report(&self, from: usize) -> Report {
        let start = from.saturating_sub(self.base);
        for (sent, &s) in self.states[start..self.count].iter().enumerate() {
            if s == PENDING {
                return Report::Stopped {
                    sent,
                    errno: libc::EAGAIN,
                };
            }
            if s < 0 {
                let errno = if -s == libc::ECANCELED {
                    libc::EAGAIN
                } else {
                    -s
                };
                return Report::Stopped { sent, errno };
            }
        }
        Report::Sent(self.count - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays one send call: begins the window at `from`, "sends" every pending packet with
    /// `result(packet index)`, and reports. Returns the packets sent in this call and the
    /// report.
    fn call(
        w: &mut Window,
        epoch: u64,
        len: usize,
        from: usize,
        result: &mut dyn FnMut(usize) -> i32,
    ) -> (Vec<usize>, Report) {
        let (first, states) = w.begin(epoch, len, from);
        let mut sent = vec![];
        for (i, s) in states.iter_mut().enumerate() {
            if *s == PENDING {
                sent.push(first + i);
                *s = result(first + i);
            }
        }
        (sent, w.report(from))
    }

    #[test]
    fn a_clean_batch_goes_out_in_one_call() {
        let mut w = Window::new(8);
        let (sent, r) = call(&mut w, 1, 5, 0, &mut |_| 64);
        assert_eq!(sent, vec![0, 1, 2, 3, 4]);
        assert_eq!(r, Report::Sent(5));
    }

    #[test]
    fn a_failed_packet_in_the_middle_does_not_resend_the_rest() {
        let mut w = Window::new(8);
        let fail = |i| if i == 2 { -libc::ENETUNREACH } else { 64 };
        let (sent, r) = call(&mut w, 7, 6, 0, &mut { fail });
        assert_eq!(sent, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            r,
            Report::Stopped {
                sent: 2,
                errno: libc::ENETUNREACH
            }
        );
        // The caller skips packet 2 and resumes at 3: 3..6 already went out.
        let (sent, r) = call(&mut w, 7, 6, 3, &mut |_| panic!("sent twice"));
        assert!(sent.is_empty());
        assert_eq!(r, Report::Sent(3));
    }

    #[test]
    fn busy_packets_are_sent_again_and_only_they() {
        let mut w = Window::new(8);
        let (_, r) = call(&mut w, 3, 4, 0, &mut |i| {
            if i == 1 || i == 3 { -libc::ENOBUFS } else { 64 }
        });
        assert_eq!(
            r,
            Report::Stopped {
                sent: 1,
                errno: libc::ENOBUFS
            }
        );
        // Busy: the caller retries at packet 1; 1 and 3 go out again, 2 does not.
        let (sent, r) = call(&mut w, 3, 4, 1, &mut |_| 64);
        assert_eq!(sent, vec![1, 3]);
        assert_eq!(r, Report::Sent(3));
    }

    #[test]
    fn cancelled_counts_as_busy() {
        let mut w = Window::new(4);
        let (_, r) = call(&mut w, 3, 2, 0, &mut |i| {
            if i == 0 { -libc::ECANCELED } else { 64 }
        });
        assert_eq!(
            r,
            Report::Stopped {
                sent: 0,
                errno: libc::EAGAIN
            }
        );
        let (sent, r) = call(&mut w, 3, 2, 0, &mut |_| 64);
        assert_eq!((sent, r), (vec![0], Report::Sent(2)));
    }

    #[test]
    fn a_new_batch_or_a_jump_starts_a_new_window() {
        let mut w = Window::new(8);
        let (_, r) = call(&mut w, 5, 4, 0, &mut |i| {
            if i == 0 { -libc::EHOSTUNREACH } else { 64 }
        });
        assert!(matches!(r, Report::Stopped { sent: 0, .. }));
        // The caller gave up on that batch; the next one (new epoch, same length and slots)
        // must be sent in full, not taken for the old one's leftovers.
        let (sent, r) = call(&mut w, 6, 4, 0, &mut |_| 64);
        assert_eq!((sent, r), (vec![0, 1, 2, 3], Report::Sent(4)));
        // Same epoch but another length: new.
        let (sent, _) = call(&mut w, 6, 3, 1, &mut |_| 64);
        assert_eq!(sent, vec![1, 2]);
    }

    #[test]
    fn batches_longer_than_the_ring_go_window_by_window() {
        let mut w = Window::new(4);
        let mut log = vec![];
        let mut from = 0;
        while from < 10 {
            let (sent, r) = call(&mut w, 9, 10, from, &mut |i| {
                if i == 5 { -libc::EMSGSIZE } else { 64 }
            });
            log.push(sent);
            from += match r {
                Report::Sent(n) => n,
                Report::Stopped { sent, .. } => sent + 1,
            };
        }
        assert_eq!(
            log,
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![], vec![8, 9]]
        );
    }

    #[test]
    fn every_packet_is_sent_once_or_failed_once_whatever_fails() {
        // Exhaustive over small batches: each packet fails (for good), is busy once, or
        // goes out; the caller follows the TX contract like the sender does.
        for len in 1..7usize {
            for pattern in 0..3usize.pow(len as u32) {
                let kind = |i: usize| (pattern / 3usize.pow(i as u32)) % 3;
                let mut w = Window::new(4);
                let mut sends = vec![0u32; len];
                let mut busy_left: Vec<bool> = (0..len).map(|i| kind(i) == 1).collect();
                let (mut from, mut failed, mut reported) = (0, vec![], 0);
                let mut calls = 0;
                while from < len {
                    calls += 1;
                    assert!(calls < 100, "no progress");
                    let (_, r) = call(&mut w, 11, len, from, &mut |i| {
                        sends[i] += 1;
                        match kind(i) {
                            2 => -libc::ENETUNREACH,
                            1 if std::mem::take(&mut busy_left[i]) => -libc::EAGAIN,
                            _ => 64,
                        }
                    });
                    match r {
                        Report::Sent(n) => {
                            reported += n;
                            from += n;
                        }
                        Report::Stopped { sent, errno } if retryable(errno) => {
                            reported += sent;
                            from += sent;
                        }
                        Report::Stopped { sent, .. } => {
                            reported += sent;
                            failed.push(from + sent);
                            from += sent + 1;
                        }
                    }
                }
                let want_failed: Vec<usize> = (0..len).filter(|&i| kind(i) == 2).collect();
                assert_eq!(failed, want_failed, "len {len} pattern {pattern}");
                assert_eq!(reported + failed.len(), len);
                for (i, &n) in sends.iter().enumerate() {
                    let want = if kind(i) == 1 { 2 } else { 1 };
                    assert_eq!(n, want, "packet {i}, len {len} pattern {pattern}");
                }
            }
        }
    }
}
