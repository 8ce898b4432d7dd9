//! # asdic-engine
//!
//! The I/O drivers of asdic, behind one small batch-shaped trait per direction: [`Tx`] sends a
//! [`TxBatch`] of prepared probes, [`Rx`] hands received frames to a callback. Each engine
//! opens as a pair of halves that can move to their own (pinned) threads, and describes what
//! it can do as data ([`TxCaps`], [`RxCaps`]) so the pipeline never asks which engine it has.
//!
//! This crate moves bytes and timestamps; it does not interpret packets beyond what a driver
//! needs. All `unsafe` code lives in the private `sys` (syscalls), `uring_sys` (io_uring
//! requests and the memory they point to), `xsk_sys` (AF_XDP frames and rings) and
//! `caps::sys` (capset, prctl, getrlimit) modules, each block with a `// SAFETY:` comment.
//!
//! Engines here: [`raw`] (raw ICMP/ICMPv6 sockets, `sendmmsg`/`recvmmsg`, kernel receive
//! timestamps), [`uring`] (the same sockets driven through io_uring) and [`xdp`] (AF_XDP:
//! Ethernet frames through a UMEM, replies steered to it by asdic's XDP program). [`mem`] is
//! no I/O at all: a pretend network in memory with a configurable host population behind it
//! (alive, dead and unreachable hosts, loss, delay, duplicates, forgeries), for running the
//! whole pipeline in tests and demos without a socket or root.
//!
//! Only [`raw`] is always built; `uring`, `xdp` and `testing` (for [`mem`]) are features, off
//! by default: the asdic binary enables `uring` and `xdp`, the tests `testing`.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

/// Batches of outgoing probes.
pub mod batch;
/// Capabilities: what each engine needs, what the process has, dropping them after setup.
pub mod caps;
/// Engine errors.
pub mod error;
/// The in-memory engine: a host population behind a pretend network (tests, demos).
#[cfg(feature = "testing")]
pub mod mem;
/// Route, interface and neighbour lookups over rtnetlink (for frame-building engines):
/// asdic-netlink's, the one rtnetlink stack of the workspace.
pub use asdic_netlink::route as netlink;
/// The raw-socket engine.
pub mod raw;
/// The unsafe syscall layer (sockets, sendmmsg, recvmmsg, poll, cmsg parsing).
mod sys;
/// The io_uring engine.
#[cfg(feature = "uring")]
pub mod uring;
/// The unsafe io_uring layer (rings, request memory, pushes).
#[cfg(feature = "uring")]
mod uring_sys;
/// The AF_XDP engine.
#[cfg(feature = "xdp")]
pub mod xdp;
/// The unsafe AF_XDP layer (socket creation, UMEM frame and ring accessors).
#[cfg(feature = "xdp")]
mod xsk_sys;

use std::time::Duration;

/// Most RX queues an engine serves: asdic's XDP program's XSKMAP has 128 entries, two per
/// queue (IPv4, IPv6).
pub const MAX_RX_QUEUES: u32 = 64;

pub use asdic_core::frame::{RxFrame, RxLayer};
pub use batch::TxBatch;
pub use error::{EngineError, SendError};

/// What bytes a TX engine expects in each batch slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxLayer {
    /// The ICMP message only; the kernel writes the IP header (and the ICMPv6 checksum).
    Icmp,
    /// Whole Ethernet frames, from `src_mac`/`src_ip` to the next hop `dst_mac`.
    Ethernet {
        /// Our MAC address.
        src_mac: [u8; 6],
        /// The next hop's MAC address.
        dst_mac: [u8; 6],
        /// Our address.
        src_ip: core::net::IpAddr,
    },
}

impl From<TxLayer> for asdic_wire::template::Layer {
    /// The probe template layer for what a TX half sends.
    fn from(l: TxLayer) -> Self {
        match l {
            TxLayer::Icmp => asdic_wire::template::Layer::Icmp,
            TxLayer::Ethernet {
                src_mac,
                dst_mac,
                src_ip,
            } => asdic_wire::template::Layer::Ethernet {
                src_mac,
                dst_mac,
                src_ip,
            },
        }
    }
}

/// What a TX half can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxCaps {
    /// Engine name as shown to the operator.
    pub engine: &'static str,
    /// What each packet must contain.
    pub layer: TxLayer,
    /// Largest packet (in the layer above) the engine can send.
    pub max_packet: usize,
    /// Whether the TTL is set per socket (true) rather than written in each packet. Such
    /// engines send a packet with a TTL of its own ([`TxBatch::set_ttl`]) with a per-message
    /// control message instead, in the same batch call.
    pub ttl_per_socket: bool,
    /// Whether the kernel stamps each tagged packet as its device takes it
    /// ([`TxBatch::set_tag`]) and the RX half hands the stamps back
    /// ([`RxLayer::TxStamp`]): the send time an RTT should start from.
    pub kernel_stamps: bool,
    /// Whether the kernel transmits each packet of a call, one after another, before the
    /// call returns (sockets; AF_XDP in copy mode): a send stamp taken before the call is
    /// early by the work of the packets ahead of its packet in the call.
    pub serial_send: bool,
}

/// What an RX half can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxCaps {
    /// Engine name.
    pub engine: &'static str,
    /// Where its frames' receive stamps are taken.
    pub stamp: RxStamp,
}

/// Where an RX half stamps the frames it hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStamp {
    /// The kernel's software stamp of each message as it arrived (sockets).
    KernelSoftware,
    /// Taken by asdic's XDP program as it began on each frame (`bpf_ktime_get_ns`).
    XdpHook,
    /// Taken in user space once per batch read (the in-memory engine, test engines).
    UserBatch,
}

impl RxStamp {
    /// The name `asdic.stamps` gives it (`rx=…`).
    pub fn name(self) -> &'static str {
        match self {
            RxStamp::KernelSoftware => "kernel-software",
            RxStamp::XdpHook => "xdp-hook",
            RxStamp::UserBatch => "user-space-batch",
        }
    }
}

/// Frames the kernel dropped on their way to an RX half, by where: what the engine's own
/// sockets and program count; and, for the AF_XDP engine, where its XDP program sent every
/// frame (redirected, or passed to the kernel under a named reason) and how many it read
/// back through its raw socket. Cumulative since the half was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelDrops {
    /// Raw and io_uring engines: packets dropped because the socket's receive buffer was full
    /// (`sk_drops`, read with `SO_MEMINFO`).
    pub socket: u64,
    /// AF_XDP: frames dropped at the socket for want of a frame on the fill ring, or too
    /// large for a frame (`XDP_STATISTICS` `rx_dropped`).
    pub xsk_rx_dropped: u64,
    /// AF_XDP: frames dropped because the socket's RX ring was full (`rx_ring_full`).
    pub xsk_rx_ring_full: u64,
    /// AF_XDP: times the kernel found the fill ring empty (`rx_fill_ring_empty_descs`). In
    /// copy mode each such frame is also in `xsk_rx_dropped`; in zero-copy mode the driver
    /// counts attempts, not frames. Not added to [`KernelDrops::lost`].
    pub xsk_fill_empty: u64,
    /// AF_XDP: invalid descriptors on the RX and TX rings (a bug of ours if ever non-zero).
    pub xsk_invalid: u64,
    /// asdic's XDP program: replies and errors of the run that arrived on a queue without a
    /// socket of ours, dropped there.
    pub redirect_failed: u64,
    /// asdic's XDP program: frames redirected to the AF_XDP sockets (not a loss).
    pub xdp_redirected: u64,
    /// asdic's XDP program: frames passed to the kernel, by reason, in the order of
    /// `asdic_xdp::PassReason::ALL` (not a loss: they were not ours, or are fragments read
    /// back reassembled).
    pub xdp_pass: [u64; 9],
    /// The AF_XDP engine: ICMP read through its raw socket (reassembled fragments, and
    /// whatever else of the kernel's ICMP reaches it), not a loss.
    pub xdp_via_kernel: u64,
    /// The AF_XDP engine: frames off its rings not addressed to the run (MAC, tag, IP
    /// destination), checked again in userspace and dropped (0 unless the program erred).
    pub xdp_misaddressed: u64,
    /// asdic's XDP program: frames carrying this run's session under a stamp whose MAC
    /// fails, dropped there (forged: never ours, so no loss).
    pub xdp_drop_forged: u64,
    /// The AF_XDP engine: frames of ours that came off the ring without the program's
    /// receive stamp (no headroom to put it in), stamped as the batch was read instead.
    /// Not a loss.
    pub xdp_unstamped: u64,
    /// The AF_XDP engine: frames its interface dropped on transmit since the engine opened
    /// (the link's `tx_dropped`; a veth drops what its peer's queue cannot take, and no
    /// sender can see it). Probes among them never left: their targets show loss the network
    /// did not cause. Other traffic's drops on the link count too. Not in
    /// [`KernelDrops::lost`], which counts replies.
    pub link_tx_dropped: u64,
}

impl KernelDrops {
    /// Frames of the run that the kernel dropped or handed to nobody: each one a reply or
    /// error that asdic never saw.
    pub fn lost(&self) -> u64 {
        self.socket + self.xsk_rx_dropped + self.xsk_rx_ring_full + self.redirect_failed
    }

    /// How many counters there are: [`KernelDrops::NAMES`], then [`KernelDrops::XDP_NAMES`].
    pub const LEN: usize = 21;

    /// The drop counters' names, in the order of [`KernelDrops::to_array`]: the names used in
    /// metadata, status JSON and metrics.
    pub const NAMES: [&'static str; 6] = [
        "socket_overflow",
        "xsk_rx_dropped",
        "xsk_rx_ring_full",
        "xsk_fill_ring_empty",
        "xsk_invalid_descs",
        "xdp_redirect_failed",
    ];

    /// The XDP program's verdicts and the AF_XDP engine's reads through its raw socket
    /// (no drops), after the drop counters in [`KernelDrops::to_array`]: the names used in
    /// metadata.
    pub const XDP_NAMES: [&'static str; 15] = [
        "xdp_redirected",
        "xdp_pass_not_ip",
        "xdp_pass_vlan",
        "xdp_pass_dst_mac",
        "xdp_pass_bad_header",
        "xdp_pass_dst_ip",
        "xdp_pass_fragment",
        "xdp_pass_ext_chain",
        "xdp_pass_not_icmp",
        "xdp_pass_not_ours",
        "xdp_via_kernel",
        "xdp_misaddressed",
        "xdp_drop_forged",
        "xdp_unstamped",
        "link_tx_dropped",
    ];

    /// The counters in the order of [`KernelDrops::NAMES`], then [`KernelDrops::XDP_NAMES`].
    pub fn to_array(&self) -> [u64; Self::LEN] {
        let mut a = [0u64; Self::LEN];
        a[..7].copy_from_slice(&[
            self.socket,
            self.xsk_rx_dropped,
            self.xsk_rx_ring_full,
            self.xsk_fill_empty,
            self.xsk_invalid,
            self.redirect_failed,
            self.xdp_redirected,
        ]);
        a[7..16].copy_from_slice(&self.xdp_pass);
        a[16] = self.xdp_via_kernel;
        a[17] = self.xdp_misaddressed;
        a[18] = self.xdp_drop_forged;
        a[19] = self.xdp_unstamped;
        a[20] = self.link_tx_dropped;
        a
    }

    /// The counters from an array in the order of [`KernelDrops::to_array`].
    pub fn from_array(a: [u64; Self::LEN]) -> Self {
        let mut xdp_pass = [0u64; 9];
        xdp_pass.copy_from_slice(&a[7..16]);
        KernelDrops {
            socket: a[0],
            xsk_rx_dropped: a[1],
            xsk_rx_ring_full: a[2],
            xsk_fill_empty: a[3],
            xsk_invalid: a[4],
            redirect_failed: a[5],
            xdp_redirected: a[6],
            xdp_pass,
            xdp_via_kernel: a[16],
            xdp_misaddressed: a[17],
            xdp_drop_forged: a[18],
            xdp_unstamped: a[19],
            link_tx_dropped: a[20],
        }
    }

    /// Counter `name` (`socket_overflow`, `xdp_pass_vlan`, …), if there is one.
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = Self::NAMES
            .iter()
            .chain(&Self::XDP_NAMES)
            .position(|&n| n == name)?;
        Some(self.to_array()[i])
    }

    /// Adds another set of counters to this one.
    pub fn add(&mut self, o: &KernelDrops) {
        let (mut a, b) = (self.to_array(), o.to_array());
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        *self = KernelDrops::from_array(a);
    }

    /// What grew from `before` to `self` (counters never go back; a smaller one counts 0).
    pub fn since(&self, before: &KernelDrops) -> KernelDrops {
        let (mut a, b) = (self.to_array(), before.to_array());
        a.iter_mut()
            .zip(b)
            .for_each(|(x, y)| *x = x.saturating_sub(y));
        KernelDrops::from_array(a)
    }

    /// The drop counters as (name, value) pairs, in the order of [`KernelDrops::NAMES`].
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        let a = self.to_array();
        core::array::from_fn(|i| (Self::NAMES[i], a[i]))
    }

    /// The XDP program's verdicts and the raw socket's reads as (name, value) pairs, in the
    /// order of [`KernelDrops::XDP_NAMES`].
    pub fn xdp_fields(&self) -> [(&'static str, u64); 15] {
        let a = self.to_array();
        core::array::from_fn(|i| (Self::XDP_NAMES[i], a[Self::NAMES.len() + i]))
    }

    /// The non-zero drop counters, "name N, name N" (empty when all are zero).
    pub fn nonzero(&self) -> String {
        self.fields()
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl core::fmt::Display for KernelDrops {
    /// "N lost in the kernel" and, when any counter is non-zero, where:
    /// "(socket_overflow N, xsk_rx_ring_full N, …)".
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} lost in the kernel", self.lost())?;
        let nz = self.nonzero();
        if !nz.is_empty() {
            write!(f, " ({nz})")?;
        }
        Ok(())
    }
}

/// The sending half of an engine.
pub trait Tx: Send {
    /// What this half can do.
    fn caps(&self) -> TxCaps;

    /// Sends the batch's packets from index `from` on; returns how many were handed to the
    /// kernel/ring, or the error that stopped the batch at packet `from + sent`.
    fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError>;

    /// What a packet to a target of `family` must contain, if this engine sends to that
    /// family: the AF_XDP engine opened for both families frames each with its own source
    /// address and next hop. By default, the engine's one layer ([`TxCaps::layer`]), for
    /// the family it was opened for (the caller knows which).
    fn layer_for(&self, family: asdic_wire::Family) -> Option<TxLayer> {
        let layer = self.caps().layer;
        match layer {
            TxLayer::Ethernet { src_ip, .. } if asdic_wire::Family::of(src_ip) != family => None,
            _ => Some(layer),
        }
    }

    /// Whether one of this engine's receive rings holds over a quarter of what it can,
    /// seen from the sending side without the receiver (which may not be running: on a busy
    /// machine that is when its ring fills), where the engine can tell cheaply; `false`
    /// elsewhere. The sender holds back while it is true.
    fn receivers_behind(&self) -> bool {
        false
    }

    /// Where the send stamps of tagged packets go that the engine takes itself, off the
    /// caller's thread (the AF_XDP engine's lane threads stamp each frame right before their
    /// `sendto`): a tracked run's in-flight table ([`asdic_core::table::InflightTable::stamp_sent`]). By
    /// default none are taken.
    fn stamp_sends(&mut self, _table: std::sync::Arc<asdic_core::table::InflightTable>) {}
}

/// The receiving half of an engine.
pub trait Rx: Send {
    /// What this half can do.
    fn caps(&self) -> RxCaps;

    /// Waits up to `timeout` for frames and passes each to `on_frame`; returns how many.
    fn recv(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, EngineError>;

    /// What the kernel dropped before this half could read it, cumulative since it opened
    /// (a system call: read it a few times a second, not per frame). Engines whose kernel
    /// keeps no such count report zeros (the in-memory engine reports its queue overflow as
    /// `socket`).
    fn kernel_drops(&mut self) -> Result<KernelDrops, EngineError> {
        Ok(KernelDrops::default())
    }

    /// Frames waiting to be read and how many the half can hold before the kernel drops,
    /// where the engine can tell cheaply (no system call); `None` elsewhere. The RX loop holds
    /// the sender back while a receiver is behind.
    fn backlog(&mut self) -> Option<(u32, u32)> {
        None
    }
}

/// Makes the calling thread yield the CPU to the probing threads: nice 19 for this thread
/// only. For helper threads (a metrics endpoint) whose bursts of work must not starve the
/// receiver on a busy machine.
pub fn background_thread() -> std::io::Result<()> {
    sys::set_thread_nice(19)
}

/// The stamp clock, ns: what every send and receive stamp of a run is told on, and what its
/// timeouts are reaped by. CLOCK_MONOTONIC moved by [`stamp_base`] (CLOCK_REALTIME −
/// CLOCK_MONOTONIC as read when the process first asked), so it reads as ns since the Unix
/// epoch — the wall clock as it stood then — and no step of the realtime clock (an NTP step,
/// an operator's `date -s`) moves it or an RTT measured on it. Sockets' kernel stamps
/// (CLOCK_REALTIME) are brought onto it by the receiver, which watches for steps.
pub fn stamp_ns() -> u64 {
    sys::monotonic_ns().wrapping_add_signed(stamp_base())
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC (ns) as first read by the process, from a tight read
/// (its two monotonic reads within 2 µs of each other): the stamp clock's base.
pub fn stamp_base() -> i64 {
    static BASE: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| tight_offset().0);
    *BASE
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC now, ns, and whether the read was tight (its two
/// monotonic reads within 2 µs: a thread preempted between them reads it off by as much);
/// the tightest of up to 8 reads.
pub fn tight_offset() -> (i64, bool) {
    let mut best = (0, u64::MAX);
    for _ in 0..8 {
        let (_, offset, gap) = sys::realtime_minus_monotonic();
        if gap < best.1 {
            best = (offset, gap);
        }
        if gap <= 2_000 {
            break;
        }
    }
    (best.0, best.1 <= 2_000)
}

/// Now on CLOCK_REALTIME, ns since the Unix epoch: the wall clock (metadata times, file
/// names), and the clock of sockets' kernel stamps. Not for RTTs or timeouts: see
/// [`stamp_ns`].
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Now, in nanoseconds since the Unix epoch (CLOCK_REALTIME): the wall clock, for metadata
/// and file names (the same as [`realtime_ns`]).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drops_count_lost_frames_once_and_say_where() {
        let none = KernelDrops::default();
        assert_eq!(none.to_string(), "0 lost in the kernel");
        let k = KernelDrops {
            socket: 1,
            xsk_rx_dropped: 20,
            xsk_rx_ring_full: 300,
            // In copy mode these are also in xsk_rx_dropped: not counted twice.
            xsk_fill_empty: 20,
            xsk_invalid: 0,
            redirect_failed: 4000,
            xdp_redirected: 50,
            xdp_pass: [0, 1, 2, 3, 4, 5, 6, 7, 8],
            xdp_via_kernel: 9,
            xdp_misaddressed: 10,
            xdp_drop_forged: 11,
            xdp_unstamped: 12,
            link_tx_dropped: 13,
        };
        assert_eq!(k.lost(), 4321);
        assert_eq!(
            k.to_string(),
            "4321 lost in the kernel (socket_overflow 1, xsk_rx_dropped 20, xsk_rx_ring_full \
             300, xsk_fill_ring_empty 20, xdp_redirect_failed 4000)"
        );
        let mut sum = k;
        sum.add(&k);
        assert_eq!(sum.lost(), 2 * 4321);
        assert_eq!(sum.since(&k), k);
        // A counter that went back (a socket reopened) grows by nothing.
        assert_eq!(none.since(&k), none);
        // The program's verdicts round-trip and are named, but are no loss.
        assert_eq!(KernelDrops::from_array(k.to_array()), k);
        assert_eq!(k.get("xdp_pass_vlan"), Some(1));
        assert_eq!(k.get("xdp_pass_not_ours"), Some(8));
        assert_eq!(k.get("xdp_via_kernel"), Some(9));
        assert_eq!(k.get("xdp_drop_forged"), Some(11));
        assert_eq!(k.get("link_tx_dropped"), Some(13));
        assert_eq!(k.get("nope"), None);
        assert_eq!(k.get("xsk_rx_ring_full"), Some(300));
        assert_eq!(k.xdp_fields()[0], ("xdp_redirected", 50));
    }
}
