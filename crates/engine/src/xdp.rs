//! The AF_XDP engine: whole Ethernet frames written into a UMEM and handed to the NIC's TX
//! ring without the kernel's IP stack, replies taken off the RX ring after asdic's own XDP
//! program (`asdic-xdp`, `xdp/`) has redirected exactly our echo replies and ICMP errors to
//! the socket; everything else on the interface goes on to the kernel.
//!
//! At open the engine asks the kernel (rtnetlink) for the route to a target: the egress
//! interface, the gateway and a source address, and the gateway's MAC from the neighbour
//! table (triggering ARP/NDP if it is missing). Probes then carry that next hop's MAC; like
//! zmap, the engine assumes every target of the run leaves through the same next hop.
//!
//! One socket per (interface, queue). The UMEM is split once: TX frames circulate between
//! the TX half's free list, the TX ring and the completion ring; RX frames between the fill
//! ring, the RX ring and the RX half (see `xsk_sys` for why that makes the accessors sound).
//! The XDP program is attached through a bpf_link owned by the RX half: it is detached when
//! the half is dropped, and by the kernel when the process dies in any way.
//!
//! Needs CAP_NET_RAW (AF_XDP sockets), CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON (the XDP
//! program), and CAP_IPC_LOCK unless RLIMIT_MEMLOCK holds the UMEM: see [`crate::caps`], which
//! is checked first so the error names exactly what is missing.

use core::net::IpAddr;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::time::Duration;

use asdic_xdp::{Errno, Filter, FilterConfig, Mode};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use crate::batch::TxBatch;
use crate::caps;
use crate::error::{EngineError, SendError};
use crate::netlink::{self, Link};
use crate::xsk_sys;
use crate::{Rx, RxCaps, RxFrame, RxLayer, Tx, TxCaps, TxLayer};

const ENGINE: &str = "xdp";
/// Bytes per UMEM frame.
const FRAME: u32 = 2048;
/// Ethernet header bytes (no VLAN tag).
const ETH: usize = 14;

/// How to open the AF_XDP engine.
#[derive(Debug, Clone)]
pub struct XdpOptions {
    /// IPv6 or IPv4 probes.
    pub v6: bool,
    /// Interface to send from; `None`: the one the route to `toward` leaves by.
    pub device: Option<String>,
    /// A target of the run: its route picks the interface, next hop and source address.
    pub toward: IpAddr,
    /// The interface queue to bind.
    pub queue: u32,
    /// XDP attach mode; `None`: native, then generic.
    pub mode: Option<Mode>,
    /// The run's session id (first payload bytes of every probe).
    pub session: u32,
    /// First ICMP identifier of the run.
    pub ident_base: u16,
    /// How many identifiers from `ident_base` on (wrapping) the run uses, 1..=65,536.
    pub ident_span: u32,
    /// Packets per TX call and RX batch.
    pub batch: usize,
    /// UMEM frames for sending.
    pub tx_frames: u32,
    /// UMEM frames for receiving.
    pub rx_frames: u32,
    /// The next hop's MAC, instead of asking the neighbour table.
    pub gateway_mac: Option<[u8; 6]>,
    /// Source address, instead of the kernel's choice for `toward`.
    pub source: Option<IpAddr>,
    /// How long to wait for ARP/NDP to resolve the next hop.
    pub resolve_wait: Duration,
    /// Bytes of the largest frame the run sends (refused at open if over the MTU).
    pub frame_len: usize,
}

impl XdpOptions {
    /// Defaults for probes towards `toward`.
    pub fn new(toward: IpAddr) -> Self {
        XdpOptions {
            v6: toward.is_ipv6(),
            device: None,
            toward,
            queue: 0,
            mode: None,
            session: 0,
            ident_base: 0,
            ident_span: 65_536,
            batch: 64,
            tx_frames: 2048,
            rx_frames: 4096,
            gateway_mac: None,
            source: None,
            resolve_wait: Duration::from_secs(3),
            frame_len: 0,
        }
    }
}

/// Where the engine's frames go: everything its templates need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpPath {
    /// The egress interface.
    pub link: Link,
    /// Our MAC (the interface's).
    pub src_mac: [u8; 6],
    /// The next hop's MAC.
    pub dst_mac: [u8; 6],
    /// The next hop (gateway, or the target when on-link).
    pub next_hop: IpAddr,
    /// Our source address.
    pub src_ip: IpAddr,
}

fn unavailable(reason: String) -> EngineError {
    EngineError::Unavailable {
        engine: ENGINE,
        reason,
    }
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error().map(Errno) {
        Some(Errno(libc::EAFNOSUPPORT)) => "EAFNOSUPPORT (kernel without AF_XDP)".into(),
        Some(n) => n.name().map_or_else(|| e.to_string(), str::to_string),
        None => e.to_string(),
    }
}

/// Finds the interface, addresses and next-hop MAC for probes towards `o.toward`.
pub fn path_for(o: &XdpOptions) -> Result<XdpPath, EngineError> {
    let to = o.toward;
    let route = netlink::route_to(to)
        .map_err(|e| unavailable(format!("no route to {to}: {}", errno_name(&e))))?;
    let link = match &o.device {
        Some(name) => {
            let l = netlink::link_by_name(name)
                .map_err(|e| unavailable(format!("interface {name}: {}", errno_name(&e))))?;
            if l.index != route.ifindex {
                let via = netlink::link_by_index(route.ifindex)
                    .map_or_else(|_| format!("#{}", route.ifindex), |l| l.name);
                return Err(unavailable(format!(
                    "the route to {to} leaves by {via}, not {name}"
                )));
            }
            l
        }
        None => netlink::link_by_index(route.ifindex).map_err(|e| {
            unavailable(format!("interface #{}: {}", route.ifindex, errno_name(&e)))
        })?,
    };
    let Some(src_mac) = link.mac else {
        return Err(unavailable(format!(
            "{} has no Ethernet address (the XDP engine sends Ethernet frames)",
            link.name
        )));
    };
    if !link.up {
        return Err(unavailable(format!("{} is down", link.name)));
    }
    let next_hop = route.next_hop(to);
    let dst_mac = match o.gateway_mac {
        Some(m) => m,
        None => netlink::resolve(link.index, next_hop, o.resolve_wait).map_err(|e| {
            unavailable(format!(
                "next hop {next_hop} on {}: no MAC address: {e}",
                link.name
            ))
        })?,
    };
    let src_ip = match o.source.or(route.prefsrc) {
        Some(s) => s,
        None => netlink::source_for(to)
            .map_err(|e| unavailable(format!("no source address for {to}: {e}")))?,
    };
    Ok(XdpPath {
        link,
        src_mac,
        dst_mac,
        next_hop,
        src_ip,
    })
}

/// A stack of frames owned by one half (the TX free list).
#[derive(Debug)]
struct Pool<T> {
    free: Vec<T>,
    total: usize,
}

impl<T: Copy> Pool<T> {
    fn new(frames: Vec<T>) -> Self {
        let total = frames.len();
        Pool {
            free: frames,
            total,
        }
    }

    /// Frames handed out and not yet returned.
    fn out(&self) -> usize {
        self.total - self.free.len()
    }

    /// Up to `n` frames into `into` (cleared first).
    fn take(&mut self, n: usize, into: &mut Vec<T>) {
        into.clear();
        let k = n.min(self.free.len());
        into.extend(self.free.drain(self.free.len() - k..));
    }

    /// Frames back.
    fn give(&mut self, frames: &[T]) {
        debug_assert!(self.free.len() + frames.len() <= self.total);
        self.free.extend_from_slice(frames);
    }
}

/// The sending half.
pub struct XdpTx {
    q: TxQueue,
    cq: CompQueue,
    umem: Umem,
    pool: Pool<FrameDesc>,
    out: Vec<FrameDesc>,
    done: Vec<FrameDesc>,
    ring: u32,
    caps: TxCaps,
}

impl std::fmt::Debug for XdpTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpTx")
            .field("in_flight", &self.pool.out())
            .finish()
    }
}

/// The receiving half; owns the XDP program's attachment.
pub struct XdpRx {
    q: RxQueue,
    fq: FillQueue,
    umem: Umem,
    descs: Vec<FrameDesc>,
    filter: Filter,
    caps: RxCaps,
}

impl std::fmt::Debug for XdpRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpRx")
            .field("mode", &self.filter.mode())
            .finish()
    }
}

/// What an opened engine runs on.
#[derive(Debug, Clone)]
pub struct XdpInfo {
    /// Interface, addresses, next hop.
    pub path: XdpPath,
    /// How the XDP program is attached.
    pub mode: Mode,
    /// A leftover program that was replaced, if any.
    pub replaced: Option<String>,
    /// The queue bound.
    pub queue: u32,
}

fn qsize(n: u32) -> Result<QueueSize, EngineError> {
    QueueSize::new(n.next_power_of_two()).map_err(|e| unavailable(format!("ring size {n}: {e}")))
}

/// Opens the engine: resolves the path, attaches the XDP program, creates the UMEM and the
/// socket, registers the socket with the program and fills the fill ring.
pub fn open(o: &XdpOptions) -> Result<(XdpTx, XdpRx, XdpInfo), EngineError> {
    if let Some(why) = caps::lacking("XDP", caps::XDP_ENGINE, caps::XDP_GRANT) {
        return Err(unavailable(why));
    }
    let path = path_for(o)?;
    let ifname = path.link.name.clone();
    let max_packet = (path.link.mtu as usize + ETH).min((FRAME - 256) as usize);
    if o.frame_len > max_packet {
        return Err(unavailable(format!(
            "{}-byte probe frames exceed {ifname}'s MTU ({} bytes of frame); the XDP engine \
             does not fragment",
            o.frame_len, max_packet
        )));
    }
    let mut filter = Filter::attach(
        &ifname,
        &FilterConfig {
            session: o.session,
            ident_base: o.ident_base,
            ident_span: o.ident_span.clamp(1, 65_536),
            v4: !o.v6,
            v6: o.v6,
        },
        o.mode,
    )
    .map_err(|e| unavailable(e.to_string()))?;

    let (tx_frames, rx_frames) = (o.tx_frames.max(64), o.rx_frames.max(64));
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME).map_err(|e| unavailable(e.to_string()))?)
        .fill_queue_size(qsize(rx_frames)?)
        .comp_queue_size(qsize(tx_frames)?)
        .build()
        .map_err(|e| unavailable(format!("UMEM config: {e}")))?;
    let total = NonZeroU32::new(tx_frames + rx_frames).expect("at least 128 frames");
    caps::check_memlock(u64::from(total.get()) * u64::from(FRAME)).map_err(unavailable)?;
    let (umem, mut frames) = Umem::new(umem_cfg, total, false).map_err(|e| {
        unavailable(format!(
            "UMEM of {} MiB: {e}",
            (u64::from(total.get()) * u64::from(FRAME)) >> 20
        ))
    })?;
    let sock_cfg = SocketConfig::builder()
        .rx_queue_size(qsize(rx_frames)?)
        .tx_queue_size(qsize(tx_frames)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    let iface = Interface::new(
        std::ffi::CString::new(ifname.clone())
            .map_err(|_| unavailable(format!("bad interface name {ifname:?}")))?,
    );
    let (txq, rxq, rings) = xsk_sys::socket(sock_cfg, &umem, &iface, o.queue).map_err(|e| {
        let why = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map_or_else(|| e.to_string(), errno_name);
        let hint = match why.as_str() {
            "EBUSY" => " (another AF_XDP socket is bound to it)",
            "EINVAL" => " (no such queue?)",
            "EPERM" | "EACCES" => " (needs CAP_NET_RAW)",
            _ => "",
        };
        unavailable(format!(
            "AF_XDP socket on {ifname} queue {}: {why}{hint}",
            o.queue
        ))
    })?;
    let Some((mut fq, cq)) = rings else {
        return Err(unavailable(format!(
            "{ifname} queue {}: no fill/completion rings",
            o.queue
        )));
    };
    filter
        .register(o.queue, o.v6, rxq.fd().as_raw_fd())
        .map_err(|e| unavailable(e.to_string()))?;

    let rx_part = frames.split_off(tx_frames as usize);
    if xsk_sys::fill_produce(&mut fq, &rx_part) != rx_part.len() {
        return Err(unavailable(format!(
            "{ifname}: could not fill the fill ring with {} frames",
            rx_part.len()
        )));
    }
    let info = XdpInfo {
        path: path.clone(),
        mode: filter.mode(),
        replaced: filter.replaced().map(str::to_string),
        queue: o.queue,
    };
    let batch = o.batch.max(1);
    let tx = XdpTx {
        q: txq,
        cq,
        umem: umem.clone(),
        pool: Pool::new(frames),
        out: Vec::with_capacity(batch),
        done: vec![FrameDesc::default(); tx_frames as usize],
        ring: tx_frames.next_power_of_two(),
        caps: TxCaps {
            engine: ENGINE,
            layer: TxLayer::Ethernet {
                src_mac: path.src_mac,
                dst_mac: path.dst_mac,
                src_ip: path.src_ip,
            },
            max_packet,
            ttl_per_socket: false,
        },
    };
    let rx = XdpRx {
        q: rxq,
        fq,
        umem,
        descs: vec![FrameDesc::default(); batch.max(64)],
        filter,
        caps: RxCaps {
            engine: ENGINE,
            kernel_timestamps: false,
        },
    };
    Ok((tx, rx, info))
}

impl XdpTx {
    /// Takes completed frames back.
    fn reap(&mut self) {
        loop {
            let n = xsk_sys::comp_consume(&mut self.cq, &mut self.done);
            if n == 0 {
                return;
            }
            self.pool.give(&self.done[..n]);
        }
    }

    /// Makes the kernel transmit what is on the TX ring. In copy mode each wakeup sends a
    /// bounded number of frames, so it is repeated while it makes progress.
    fn kick(&mut self) -> Result<(), SendError> {
        for _ in 0..(self.ring / 16).max(4) {
            let pending = self.ring - self.q.nb_free_exact();
            if pending == 0 || !self.q.needs_wakeup() {
                return Ok(());
            }
            self.q.wakeup().map_err(|source| {
                SendError::Fatal(EngineError::Io {
                    engine: ENGINE,
                    what: "TX wakeup (sendto)",
                    source,
                })
            })?;
            if self.ring - self.q.nb_free_exact() >= pending {
                // No progress: the device is busy; the next send tries again.
                return Ok(());
            }
        }
        Ok(())
    }
}

impl Tx for XdpTx {
    fn caps(&self) -> TxCaps {
        self.caps
    }

    fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
        self.reap();
        let want = batch.len().saturating_sub(from);
        if want == 0 {
            return Ok(0);
        }
        let room = self.q.nb_free(want as u32) as usize;
        self.pool.take(want.min(room), &mut self.out);
        if self.out.is_empty() {
            self.kick()?;
            self.reap();
            return Err(SendError::Busy { sent: 0 });
        }
        for (i, d) in self.out.iter_mut().enumerate() {
            let (pkt, _) = batch.packet(from + i).expect("index below batch.len()");
            if pkt.len() > self.caps.max_packet || !xsk_sys::write_frame(&self.umem, d, pkt) {
                // Only ever the first packet of a call can be refused: it is reported
                // alone, the frames go back.
                let len = pkt.len();
                self.pool.give(&self.out);
                self.out.clear();
                return Err(SendError::Packet {
                    sent: 0,
                    error: std::io::Error::other(format!(
                        "{len}-byte frame exceeds the XDP engine's {} bytes",
                        self.caps.max_packet
                    )),
                });
            }
        }
        let n = self.out.len();
        if xsk_sys::tx_produce(&mut self.q, &self.out) != n {
            self.pool.give(&self.out);
            self.out.clear();
            return Err(SendError::Busy { sent: 0 });
        }
        self.out.clear();
        self.kick()?;
        Ok(n)
    }
}

impl Rx for XdpRx {
    fn caps(&self) -> RxCaps {
        self.caps
    }

    fn recv(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, EngineError> {
        let mut n = xsk_sys::rx_consume(&mut self.q, &mut self.descs);
        if n == 0 {
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            let ready = self.q.poll(ms).map_err(|source| EngineError::Io {
                engine: ENGINE,
                what: "poll",
                source,
            })?;
            if !ready {
                return Ok(0);
            }
            n = xsk_sys::rx_consume(&mut self.q, &mut self.descs);
        }
        // Timestamped once per batch, right off the ring.
        let ts_ns = crate::now_ns();
        for d in &self.descs[..n] {
            on_frame(RxFrame {
                data: xsk_sys::frame_bytes(&self.umem, d),
                layer: RxLayer::Ethernet,
                ts_ns,
                truncated: false,
            });
        }
        // The fill ring holds every RX frame, so there is always room for these.
        let back = xsk_sys::fill_produce(&mut self.fq, &self.descs[..n]);
        debug_assert_eq!(back, n);
        if self.fq.needs_wakeup() {
            let _ = self.fq.wakeup(self.q.fd_mut(), 0);
        }
        Ok(n)
    }
}

impl XdpRx {
    /// The XDP program's counters.
    pub fn filter_stats(&self) -> asdic_xdp::FilterStats {
        self.filter.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_and_takes_back() {
        let mut p = Pool::new((0u32..8).collect());
        let mut got = vec![99];
        p.take(3, &mut got);
        assert_eq!(got.len(), 3);
        assert_eq!(p.out(), 3);
        let first = got.clone();
        p.take(10, &mut got);
        assert_eq!(got.len(), 5, "only what is free");
        assert_eq!(p.out(), 8);
        p.take(1, &mut got);
        assert!(got.is_empty());
        p.give(&first);
        assert_eq!(p.out(), 5);
        p.take(8, &mut got);
        got.sort_unstable();
        let mut f = first.clone();
        f.sort_unstable();
        assert_eq!(got, f, "the returned frames come back");
    }
}
