//! The raw-socket engine: one raw ICMP (or ICMPv6) socket shared by a TX half using
//! `sendmmsg` and an RX half using `recvmmsg` with kernel receive timestamps
//! (`SO_TIMESTAMPNS`). The kernel writes IP headers, fragments large probes and reassembles
//! large replies, so probes up to 65,507 bytes work; a kernel ICMP filter keeps everything but
//! echo replies and errors out of the receive queue.
//!
//! Needs CAP_NET_RAW.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::TxBatch;
use crate::error::{EngineError, SendError};
use crate::sys;
use crate::{Rx, RxCaps, RxFrame, RxLayer, Tx, TxCaps, TxLayer};

const ENGINE: &str = "raw";
const SOL_RAW: i32 = 255;
const ICMP_FILTER: i32 = 1;
const ICMP6_FILTER: i32 = 1;
/// Largest ICMP message in an IPv4 datagram.
pub const MAX_PACKET: usize = 65_535 - 20;

/// How to open the raw engine.
#[derive(Debug, Clone)]
pub struct RawOptions {
    /// IPv6 (ICMPv6 socket) or IPv4.
    pub v6: bool,
    /// TTL / hop limit of every probe.
    pub ttl: u8,
    /// Bind to this interface (`SO_BINDTODEVICE`), if any.
    pub device: Option<String>,
    /// Messages per `sendmmsg`/`recvmmsg`.
    pub batch: usize,
    /// Receive buffer per message: the largest reply expected (IP header included).
    pub max_reply: usize,
    /// Socket receive buffer in bytes.
    pub rcvbuf: usize,
    /// Socket send buffer in bytes.
    pub sndbuf: usize,
    /// Take the kernel's software send stamp of every tagged packet
    /// ([`TxBatch::set_tag`]) and hand it back through the RX half
    /// ([`RxLayer::TxStamp`](crate::RxLayer)), where the kernel can tie a stamp to its packet
    /// (`SCM_TS_OPT_ID`, Linux 6.13 on); elsewhere it stays off and [`TxCaps::kernel_stamps`]
    /// says so.
    pub tx_stamps: bool,
}

impl RawOptions {
    /// The receive buffer per message for probes of `len` bytes: a reply is as large as its
    /// request, with room for IP headers and options, and never less than the default.
    pub fn reply_room(len: usize) -> usize {
        (len + 128).max(RawOptions::default().max_reply)
    }
}

impl Default for RawOptions {
    fn default() -> Self {
        RawOptions {
            v6: false,
            ttl: 64,
            device: None,
            batch: 64,
            max_reply: 2048,
            rcvbuf: 64 << 20,
            tx_stamps: false,
            sndbuf: 4 << 20,
        }
    }
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
    io_err_of(ENGINE, what)
}

fn io_err_of(
    engine: &'static str,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> EngineError {
    move |source| EngineError::Io {
        engine,
        what,
        source,
    }
}

/// Opens the engine: a socket for replies, and with send stamps one of its own for sending
/// ([`sockets`]).
pub fn open(opts: &RawOptions) -> Result<(RawTx, RawRx), EngineError> {
    let Sockets { rx, tx, stamps } = sockets(opts, ENGINE)?;
    let batch = opts.batch.max(1);
    let ctl = sys::MsgControl {
        v6: opts.v6,
        socket_ttl: opts.ttl,
        tx_stamps: stamps,
    };
    let rx = RawRx {
        fd: rx,
        vec: sys::RecvVec::new(batch, opts.max_reply.max(256)),
        v6: opts.v6,
        errq: stamps.then(|| (sys::ErrQueue::new(batch), tx.clone())),
    };
    let tx = RawTx {
        fd: tx,
        vec: sys::SendVec::new(batch, ctl),
        stamps,
    };
    Ok((tx, rx))
}

/// The sockets of an engine that drives raw sockets (raw, io_uring).
pub(crate) struct Sockets {
    /// Where replies and errors are read.
    pub(crate) rx: Arc<OwnedFd>,
    /// Where probes are sent: with send stamps a socket of its own, else `rx`.
    pub(crate) tx: Arc<OwnedFd>,
    /// Whether the kernel's send stamps are on (on `tx`'s error queue).
    pub(crate) stamps: bool,
}

/// Opens the raw sockets of an engine as `opts` says, naming `engine` in errors. With send
/// stamps (`opts.tx_stamps`, where the kernel ties them to their packets) probes go through a
/// socket of their own that receives nothing, so that nobody sleeps on the socket whose
/// error queue takes the stamps. The kernel queues a packet's send stamp inside the device's
/// transmit, before the packet goes on (on a veth, before the next hop receives it), and
/// queueing it wakes whoever waits on that socket: with the receiver waiting on a socket it
/// shared with the sender, every stamp woke the receiver there, and the wakeup (an
/// inter-processor interrupt when the receiver's CPU is idle, several µs in a VM) came
/// between the stamp and the packet's way on. The receiver reads the stamps without waiting
/// for them, on every receive call: a probe's stamp is queued before its reply can come.
pub(crate) fn sockets(opts: &RawOptions, engine: &'static str) -> Result<Sockets, EngineError> {
    let rx = Arc::new(socket(opts, engine)?);
    if !(opts.tx_stamps && sys::kernel_has_ts_opt_id()) {
        return Ok(Sockets {
            tx: rx.clone(),
            rx,
            stamps: false,
        });
    }
    let tx = socket(opts, engine)?;
    let io_err = |what| io_err_of(engine, what);
    deaf(&tx, opts.v6).map_err(io_err("a sending socket's filters"))?;
    // Send stamps wait on the error queue as packetless skbs (OPT_TSONLY; 832 bytes of
    // truesize measured), charged to this socket's receive buffer, until the receiver's next
    // call reads them.
    sys::set_tx_stamps(&tx).map_err(io_err("SO_TIMESTAMPING"))?;
    Ok(Sockets {
        rx,
        tx: Arc::new(tx),
        stamps: true,
    })
}

/// Makes a sending raw socket take no packets: every ICMP (ICMPv6) type blocked before the
/// kernel copies a packet to it, and a socket filter that drops whatever else comes (ICMP
/// types from 32 up pass `ICMP_FILTER`). Its error queue, which no filter touches, still
/// takes its send stamps.
fn deaf(fd: &OwnedFd, v6: bool) -> std::io::Result<()> {
    if v6 {
        sys::set_opt(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &[u32::MAX; 8])?;
    } else {
        sys::set_opt(fd, SOL_RAW, ICMP_FILTER, &u32::MAX)?;
    }
    sys::drop_all(fd)
}

/// Opens and configures a raw ICMP (or ICMPv6) socket as `opts` says (send stamps aside: see
/// [`sockets`]), naming `engine` in errors.
pub(crate) fn socket(opts: &RawOptions, engine: &'static str) -> Result<OwnedFd, EngineError> {
    let fd = sys::raw_socket(opts.v6).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => EngineError::Permission {
            engine,
            what: "opening a raw ICMP socket",
            capability: "CAP_NET_RAW",
            capability_lower: "cap_net_raw",
        },
        _ => EngineError::Io {
            engine,
            what: "opening a raw ICMP socket",
            source: e,
        },
    })?;
    configure(&fd, opts, engine)?;
    Ok(fd)
}

/// Configures the socket (send stamps aside).
fn configure(fd: &OwnedFd, o: &RawOptions, engine: &'static str) -> Result<(), EngineError> {
    let io_err = |what| io_err_of(engine, what);
    let ttl = libc::c_int::from(o.ttl);
    let one: libc::c_int = 1;
    if let Some(dev) = &o.device {
        sys::bind_device(fd, dev).map_err(io_err("binding to the interface"))?;
    }
    // Buffers: the forcing variants pass the sysctl limits when we have CAP_NET_ADMIN.
    let rcv = libc::c_int::try_from(o.rcvbuf).unwrap_or(libc::c_int::MAX);
    let snd = libc::c_int::try_from(o.sndbuf).unwrap_or(libc::c_int::MAX);
    if sys::set_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcv).is_err() {
        sys::set_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcv).map_err(io_err("SO_RCVBUF"))?;
    }
    if sys::set_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &snd).is_err() {
        sys::set_opt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &snd).map_err(io_err("SO_SNDBUF"))?;
    }
    sys::set_opt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &one)
        .map_err(io_err("SO_TIMESTAMPNS"))?;
    if o.v6 {
        sys::set_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &ttl)
            .map_err(io_err("IPV6_UNICAST_HOPS"))?;
        sys::set_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &one)
            .map_err(io_err("IPV6_RECVHOPLIMIT"))?;
        let dont: libc::c_int = libc::IPV6_PMTUDISC_DONT;
        sys::set_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, &dont)
            .map_err(io_err("IPV6_MTU_DISCOVER"))?;
        // struct icmp6_filter: a set bit blocks that type. Pass errors 1-4 and echo reply.
        let mut filter = [u32::MAX; 8];
        for t in [1u8, 2, 3, 4, 129] {
            filter[usize::from(t >> 5)] &= !(1 << (t & 31));
        }
        sys::set_opt(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
            .map_err(io_err("ICMP6_FILTER"))?;
    } else {
        sys::set_opt(fd, libc::IPPROTO_IP, libc::IP_TTL, &ttl).map_err(io_err("IP_TTL"))?;
        // No DF bit: like ping and fping, let large probes be fragmented.
        let dont: libc::c_int = libc::IP_PMTUDISC_DONT;
        sys::set_opt(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &dont)
            .map_err(io_err("IP_MTU_DISCOVER"))?;
        // ICMP_FILTER: a set bit drops that type. Pass echo reply and the errors that quote.
        let pass: u32 = [0u32, 3, 4, 5, 11, 12].iter().fold(0, |m, t| m | 1 << t);
        sys::set_opt(fd, SOL_RAW, ICMP_FILTER, &!pass).map_err(io_err("ICMP_FILTER"))?;
    }
    Ok(())
}

/// The sending half.
#[derive(Debug)]
pub struct RawTx {
    fd: Arc<OwnedFd>,
    vec: sys::SendVec,
    stamps: bool,
}

impl core::fmt::Debug for sys::SendVec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SendVec")
    }
}

impl core::fmt::Debug for sys::RecvVec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RecvVec")
    }
}

impl Tx for RawTx {
    fn caps(&self) -> TxCaps {
        TxCaps {
            engine: ENGINE,
            layer: TxLayer::Icmp,
            max_packet: MAX_PACKET,
            ttl_per_socket: true,
            kernel_stamps: self.stamps,
            serial_send: true,
        }
    }

    /// Packets with a TTL of their own ([`TxBatch::set_ttl`]) carry it in an `IP_TTL` /
    /// `IPV6_HOPLIMIT` control message in the same `sendmmsg`.
    fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
        self.vec
            .send(&self.fd, batch, from)
            .map_err(|e| send_error(e, 0, ENGINE, "sendmmsg"))
    }
}

/// What a failed send of one packet (after `sent` good ones) means for the sender: queues
/// full (retry later), this packet only (skip it), or the end of the engine.
pub(crate) fn send_error(
    e: std::io::Error,
    sent: usize,
    engine: &'static str,
    what: &'static str,
) -> SendError {
    match e.raw_os_error() {
        Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => SendError::Busy { sent },
        Some(
            libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EACCES
            | libc::EPERM
            | libc::EMSGSIZE
            | libc::EINVAL
            | libc::EHOSTDOWN
            | libc::EADDRNOTAVAIL
            | libc::EAFNOSUPPORT,
        ) => SendError::Packet { sent, error: e },
        _ => SendError::Fatal(EngineError::Io {
            engine,
            what,
            source: e,
        }),
    }
}

/// The receiving half.
#[derive(Debug)]
pub struct RawRx {
    fd: Arc<OwnedFd>,
    vec: sys::RecvVec,
    v6: bool,
    /// The send stamps' reader and the sending socket they wait on, when they are on.
    errq: Option<(sys::ErrQueue, Arc<OwnedFd>)>,
}

impl Rx for RawRx {
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
        if !sys::poll_in(&self.fd, timeout).map_err(io_err("poll"))? {
            // No reply: the stamps of probes that get none are read all the same, so that
            // they do not fill the sending socket's buffer (with replies, the loop below
            // reads them).
            return match &mut self.errq {
                Some((q, fd)) => tx_stamps(q, fd, on_frame),
                None => Ok(0),
            };
        }
        let mut total = 0;
        // Drain what is queued, a bounded number of batches per call.
        for _ in 0..16 {
            let n = self.vec.recv(&self.fd).map_err(io_err("recvmmsg"))?;
            // The send stamps of every probe these replies answer are on the error queue
            // already: the kernel queued each before its packet left the device. Handed
            // over first, so each reply finds its probe's stamp.
            if let Some((q, fd)) = &mut self.errq {
                total += tx_stamps(q, fd, on_frame)?;
            }
            if n == 0 {
                break;
            }
            let fallback = crate::stamp_ns();
            for i in 0..n {
                let (m, data) = self.vec.message(i);
                debug_assert_eq!(m.len, data.len());
                if let Some(f) = frame(self.v6, &m, data, fallback) {
                    on_frame(f);
                }
            }
            total += n;
            if n < self.vec_capacity() {
                break;
            }
        }
        Ok(total)
    }

    fn kernel_drops(&mut self) -> Result<crate::KernelDrops, EngineError> {
        let socket = sys::socket_drops(&self.fd).map_err(io_err("SO_MEMINFO"))?;
        Ok(crate::KernelDrops {
            socket,
            ..crate::KernelDrops::default()
        })
    }
}

/// Reads the send stamps waiting on `fd`'s error queue and hands each over as an
/// [`RxLayer::TxStamp`]; returns how many.
pub(crate) fn tx_stamps(
    q: &mut sys::ErrQueue,
    fd: &OwnedFd,
    on_frame: &mut dyn FnMut(RxFrame<'_>),
) -> Result<usize, EngineError> {
    q.drain(fd, &mut |tag, ts_ns| {
        on_frame(RxFrame {
            data: &[],
            layer: RxLayer::TxStamp { tag },
            ts_ns,
            truncated: false,
            realtime: true,
        })
    })
    .map_err(io_err("recvmmsg (MSG_ERRQUEUE)"))
}

/// The frame a raw socket received: IPv4 packets whole, ICMPv6 messages with their source
/// (`None` for an ICMPv6 message without one), stamped by the kernel (CLOCK_REALTIME);
/// `fallback` (on the stamp clock) stands in for a missing stamp.
pub(crate) fn frame<'a>(
    v6: bool,
    m: &sys::Received,
    data: &'a [u8],
    fallback: u64,
) -> Option<RxFrame<'a>> {
    let layer = match (v6, m.src) {
        (true, Some(core::net::IpAddr::V6(src))) => RxLayer::Icmpv6 {
            src,
            hop_limit: m.hop_limit,
        },
        (true, _) => return None,
        (false, _) => RxLayer::Ipv4,
    };
    Some(RxFrame {
        data,
        layer,
        ts_ns: m.ts_ns.unwrap_or(fallback),
        truncated: m.truncated,
        realtime: m.ts_ns.is_some(),
    })
}

impl RawRx {
    fn vec_capacity(&self) -> usize {
        self.vec.capacity()
    }
}
