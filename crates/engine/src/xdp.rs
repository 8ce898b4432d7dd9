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
//! One receiving socket per RX queue of the interface (all of them by default): a NIC spreads
//! replies over its queues by flow hash (RSS), and a reply that arrives on a queue without a
//! socket would reach nobody. It also sends, or, for runs that send one probe per call, a
//! second socket on the same UMEM (`XDP_SHARED_UMEM`) does: in copy mode a poll(2) on a
//! socket with a TX ring runs its TX path under the socket's mutex, so a receiver waiting on
//! the socket the sender kicks would contend with every `sendto` (see [`bind_queue`]). Each
//! queue has a UMEM of its own, split once: TX frames circulate between its TX lane's free
//! list, the sending socket's TX ring and the queue's completion ring; RX frames between its
//! fill ring, the receiving socket's RX ring and its RX half (see `xsk_sys` for why that
//! makes the accessors sound).
//! One UMEM per queue rather than one for all: each RX half owns every frame it touches, so
//! no frame ever crosses threads and no UMEM lock is taken after open (xsk-rs serialises
//! socket creation on a UMEM), at the price of a TX area per queue (counted in
//! [`XdpInfo::umem_bytes`]). The TX half sends through every queue that is also a TX queue, a
//! batch per queue in turn; in copy mode, with several such queues and CPUs, every queue
//! after the first is kicked from a thread of its own for calls of several frames (see
//! [`Kicker`]). The XDP program is attached through a bpf_link owned by
//! the first RX half: it is detached when that half is dropped, and by the kernel when the
//! process dies in any way.
//!
//! The program redirects only what can be ours, a closed list checked there (see
//! `xdp/bpf/filter.bpf.c`): no VLAN tag, our MAC (or a group address), a sound IP header
//! (IPv4 header checksum, lengths), our source address as destination, IPv6 extension
//! headers walked, an ICMP reply or error of this run. Every fragment goes to the kernel,
//! which reassembles it; a raw ICMP (ICMPv6) socket bound to the interface, opened beside the
//! AF_XDP sockets, reads it back and the first RX half drains it with its ring, so that its
//! frames meet the same matcher. (What the kernel delivers there also includes ICMP that is
//! not ours: the matcher counts it as the raw engine would.)
//!
//! Needs CAP_NET_RAW (AF_XDP sockets), CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON (the XDP
//! program), and CAP_IPC_LOCK unless RLIMIT_MEMLOCK holds the UMEM: see [`crate::caps`], which
//! is checked first so the error names exactly what is missing.

use core::net::IpAddr;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use asdic_core::table::InflightTable;
use asdic_xdp::{Errno, Filter, FilterConfig, Mode};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use crate::batch::TxBatch;
use crate::caps;
use crate::error::{EngineError, SendError};
use crate::netlink::{self, Link};
use crate::raw::{self, RawOptions};
use crate::{KernelDrops, Rx, RxCaps, RxFrame, RxLayer, Tx, TxCaps, TxLayer};
use crate::{sys, xsk_sys};

const ENGINE: &str = "xdp";
/// Bytes per UMEM frame.
const FRAME: u32 = 2048;
/// Ethernet header bytes (no VLAN tag).
const ETH: usize = 14;
/// RX frames per queue by default: 8,192 frames (16 MiB) hold 27 ms of replies at 300,000
/// per second on one queue, what the veth bed's 10-round burst needed to lose none on a
/// busy 2-core machine (bench/RESULTS.md).
pub const DEFAULT_RX_FRAMES: u32 = 8192;
/// UMEM frames for sending, over all TX lanes, unless asked otherwise.
pub const DEFAULT_TX_FRAMES: u32 = 2048;
/// Most RX queues the filter's XSKMAP has room for (128 entries, two per queue).
pub const MAX_QUEUES: u32 = crate::MAX_RX_QUEUES;
/// Entries of a ring a socket has but does not use (the receiving socket's TX ring, the
/// sending socket's RX ring).
const SPARE_RING: u32 = 64;
/// How often an RX half checks that the interface still has the queues it had at open.
const QUEUE_CHECK: Duration = Duration::from_secs(1);

/// How to open the AF_XDP engine.
#[derive(Debug, Clone)]
pub struct XdpOptions {
    /// IPv6 or IPv4 probes.
    pub v6: bool,
    /// Interface to send from; `None`: the one the route to `toward` leaves by.
    pub device: Option<String>,
    /// A target of the run: its route picks the interface, next hop and source address.
    pub toward: IpAddr,
    /// A target of the other family, for one engine that sends and receives both (one socket
    /// per queue serves both ethertypes): its route must leave by the same interface, and
    /// picks that family's next hop and source address.
    pub also: Option<IpAddr>,
    /// The RX queues to bind a socket to; `None`: every RX queue of the interface.
    pub queues: Option<Vec<u32>>,
    /// Refuse to open unless the sockets serve every RX queue of the interface (what
    /// `--engine auto` asks: a reply on an unserved queue would be lost).
    pub require_all_queues: bool,
    /// XDP attach mode; `None`: native, then generic.
    pub mode: Option<Mode>,
    /// The run's session id (first payload bytes of every probe).
    pub session: u32,
    /// The run's MAC key (`asdic_wire::payload::Key::halves`): the program drops a frame
    /// with the session whose stamp's MAC fails. `None`: the session alone decides.
    pub mac_key: Option<(u64, u64)>,
    /// First ICMP identifier of the run.
    pub ident_base: u16,
    /// How many identifiers from `ident_base` on (wrapping) the run uses, 1..=65,536.
    pub ident_span: u32,
    /// Packets per TX call and RX batch.
    pub batch: usize,
    /// UMEM frames for sending, over all TX lanes.
    pub tx_frames: u32,
    /// UMEM frames for receiving, per queue.
    pub rx_frames: u32,
    /// On every sending queue, send through a socket of its own on the queue's UMEM, apart
    /// from the one the receiver waits on (see [`bind_queue`]): for runs that send one probe
    /// per call (1.23× the rate there, measured), not for batches (0.92×).
    pub separate_tx: bool,
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
            also: None,
            queues: None,
            require_all_queues: false,
            mode: None,
            session: 0,
            mac_key: None,
            ident_base: 0,
            ident_span: 65_536,
            batch: 64,
            tx_frames: DEFAULT_TX_FRAMES,
            rx_frames: DEFAULT_RX_FRAMES,
            separate_tx: false,
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

/// The path of `o.toward`, and of `o.also` (the other family) if given: the same interface,
/// or no engine (families that leave by different interfaces take one engine each).
fn paths(o: &XdpOptions) -> Result<(XdpPath, Option<XdpPath>), EngineError> {
    let path = path_for(o)?;
    let Some(also) = o.also else {
        return Ok((path, None));
    };
    if also.is_ipv6() == o.v6 {
        return Err(unavailable(format!(
            "{also} and {} are of one family: `also` names the other",
            o.toward
        )));
    }
    let other = path_for(&XdpOptions {
        toward: also,
        v6: also.is_ipv6(),
        also: None,
        source: o.source.filter(|s| s.is_ipv6() == also.is_ipv6()),
        ..o.clone()
    })?;
    if other.link.index != path.link.index {
        return Err(unavailable(format!(
            "{} leaves by {} and {also} by {}: one engine per interface",
            o.toward, path.link.name, other.link.name
        )));
    }
    Ok((path, Some(other)))
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

/// The RX and TX queue counts of an interface in use now: the channels ethtool reports
/// (`ETHTOOL_GCHANNELS`: RX-only or TX-only plus combined), else the queues sysfs lists, else
/// one of each (a device without multi-queue support).
pub fn queue_counts(ifname: &str) -> (u32, u32) {
    if let Ok((rx, tx, combined)) = crate::sys::channels(ifname) {
        let (r, t) = (rx + combined, tx + combined);
        if r > 0 {
            return (r, t.max(1));
        }
    }
    let count = |prefix: &str| {
        std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                    .count() as u32
            })
            .unwrap_or(0)
    };
    (count("rx-").max(1), count("tx-").max(1))
}

/// "0-3", "0,2": a list of queues for messages.
pub fn queue_list(qs: &[u32]) -> String {
    let mut parts: Vec<String> = vec![];
    let mut i = 0;
    while i < qs.len() {
        let mut j = i;
        while j + 1 < qs.len() && qs[j + 1] == qs[j] + 1 {
            j += 1;
        }
        parts.push(if j > i + 1 {
            format!("{}-{}", qs[i], qs[j])
        } else if j == i + 1 {
            format!("{},{}", qs[i], qs[j])
        } else {
            qs[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Which queues to bind, given the interface's RX queue count: the asked ones (sorted,
/// each once, each one that exists) or all of them; and the RX queues left without a socket.
pub fn plan_queues(
    ifname: &str,
    rx_queues: u32,
    asked: Option<&[u32]>,
) -> Result<(Vec<u32>, Vec<u32>), String> {
    let mut qs: Vec<u32> = match asked {
        Some(a) => a.to_vec(),
        None => (0..rx_queues).collect(),
    };
    qs.sort_unstable();
    qs.dedup();
    if qs.is_empty() {
        return Err("no queue to bind".into());
    }
    if let Some(&q) = qs.iter().find(|&&q| q >= rx_queues) {
        return Err(format!(
            "queue {q}: {ifname} has {rx_queues} RX queue{} (0-{})",
            if rx_queues == 1 { "" } else { "s" },
            rx_queues - 1
        ));
    }
    if qs.len() as u32 > MAX_QUEUES {
        return Err(format!(
            "{} queues: asdic's XDP program serves at most {MAX_QUEUES} (--queues to choose)",
            qs.len()
        ));
    }
    let unserved = (0..rx_queues).filter(|q| !qs.contains(q)).collect();
    Ok((qs, unserved))
}

/// One TX queue's socket: its ring, completion ring, UMEM and free frames.
struct Lane {
    /// The lane's own sending thread, if it has one ([`Kicker`]); else the sender's calls
    /// kick the kernel themselves. First, so that it is dropped (stopped and joined) before
    /// the socket it kicks is closed.
    kicker: Option<Kicker>,
    queue: u32,
    q: TxQueue,
    cq: CompQueue,
    umem: Umem,
    pool: Pool<FrameDesc>,
    out: Vec<FrameDesc>,
    done: Vec<FrameDesc>,
    ring: u32,
}

/// A TX lane's own sending thread. In copy mode the kernel transmits a socket's frames inside
/// the `sendto` that kicks it, on the calling CPU, and on a veth the far end's and the
/// replies' way back run there too: one thread kicking every queue did all queues' kernel
/// work on one CPU (two queues sent no faster than one). So, with more than one TX queue
/// and more than one CPU ([`lane_threads`]), every lane after the
/// first gets a thread that only kicks: the sender writes frames onto its ring and goes on,
/// the thread `sendto`s them. It is offered each call before the lanes the sender kicks
/// itself, and takes a call of two frames or more only with at most one call waiting on its
/// ring ([`QUEUED_AHEAD`]: it goes from call to call without waiting for the sender, which
/// kicks its own lane only while every thread has a call queued; 1.26× the rate of taking a
/// call only with the ring empty, two-queue speed bed), only while awake, and only within
/// [`SPREAD`] of a call that found the sender saturated ([`SATURATED`]), which is also what
/// wakes it (a call of several frames): below full speed, and while a tracked run sends
/// one probe per call, every call goes through the first lane as before and the
/// thread sleeps. For tracked runs it stamps each frame it is about to send into the
/// in-flight table right before its `sendto`
/// ([`Tx::stamp_sends`]), as the sender stamps a probe it sends itself, so a frame that
/// waited for the thread is not timed from before the wait. Its lane sends through a socket
/// of its own, so nothing else (a receiver's poll) transmits its frames.
struct Kicker {
    shared: Arc<KickShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a lane's sending thread shares with the sender.
struct KickShared {
    /// The TX ring's indices (the frames handed over and not yet taken).
    view: xsk_sys::RingView,
    /// Stop once the ring is empty (or after [`KICK_DRAIN`]).
    stop: AtomicBool,
    /// Set while the thread sleeps (nothing handed to it for [`KICK_IDLE`]).
    asleep: AtomicBool,
    /// The errno of a `sendto` that failed; the thread has then ended.
    errno: AtomicI32,
    /// Per TX ring slot: the tag of the frame there (bit 32 set) or 0, written before the
    /// frame is produced.
    tags: Box<[AtomicU64]>,
    /// Where tagged frames' send stamps go (tracked runs).
    table: OnceLock<Arc<InflightTable>>,
}

/// How long a lane's thread waits for work, yielding, before it sleeps: longer than the
/// sender's own call to the first lane takes at full speed (64 frames, ~130 µs on the speed
/// bed), or the thread sleeps between every two calls and is seldom ready for one (with 20 µs,
/// two queues sent 0.96× the rate of one thread kicking both).
const KICK_IDLE: Duration = Duration::from_millis(1);
/// Frames that may wait on a lane thread's ring when it is handed another call: one call
/// queued behind the one it sends, so that it goes from call to call without waiting for the
/// sender (each frame is still stamped right before the `sendto` that takes it, and a
/// `sendto` takes at most 32).
const QUEUED_AHEAD: u32 = 64;
/// How long after the sender was last saturated lanes with threads still take calls.
const SPREAD: Duration = Duration::from_millis(1);
/// Longest a stopping lane thread goes on kicking frames the kernel does not take.
const KICK_DRAIN: Duration = Duration::from_millis(100);
/// A call starting within this of the previous call's end, or within that call's own
/// length, finds the sender saturated: it spends at least as long in the engine as out of
/// it (its loop's work between calls is well under a microsecond a probe), so sleeping lane
/// threads are woken.
const SATURATED: Duration = Duration::from_micros(2);

impl Kicker {
    fn spawn(queue: u32, fd: std::os::fd::RawFd, ring: u32) -> Result<Kicker, EngineError> {
        let view = xsk_sys::RingView::tx(fd).map_err(|e| {
            unavailable(format!("TX ring view of queue {queue}: {}", errno_name(&e)))
        })?;
        let shared = Arc::new(KickShared {
            view,
            stop: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            errno: AtomicI32::new(0),
            tags: (0..ring).map(|_| AtomicU64::new(0)).collect(),
            table: OnceLock::new(),
        });
        let k = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("asdic-txq{queue}"))
            .spawn(move || kick_loop(fd, &k))
            .map_err(|e| unavailable(format!("TX thread of queue {queue}: {e}")))?;
        Ok(Kicker {
            shared,
            thread: Some(thread),
        })
    }

    /// Whether it can take a call now: awake, and no more than [`QUEUED_AHEAD`] frames
    /// waiting on its ring.
    fn ready(&self) -> bool {
        !self.shared.asleep.load(Ordering::Acquire) && self.shared.view.waiting() <= QUEUED_AHEAD
    }

    fn wake(&self) {
        if self.shared.asleep.load(Ordering::Acquire)
            && let Some(t) = &self.thread
        {
            t.thread().unpark();
        }
    }

    /// Records the tags of `n` frames about to be produced from batch index `from`.
    fn tag(&self, batch: &TxBatch, from: usize, n: usize) {
        let (_, at) = self.shared.view.bounds();
        let mask = self.shared.tags.len() - 1;
        for i in 0..n {
            let t = batch.tag(from + i).map_or(0, |t| 1 << 32 | u64::from(t));
            let slot = at.wrapping_add(i as u32) as usize & mask;
            // Release: the thread that reads the frame's ring position (after the ring's
            // producer index, published later) sees its tag.
            self.shared.tags[slot].store(t, Ordering::Release);
        }
    }

    fn failed(&self) -> Option<SendError> {
        let e = self.shared.errno.load(Ordering::Acquire);
        (e != 0).then(|| {
            SendError::Fatal(EngineError::Io {
                engine: ENGINE,
                what: "TX wakeup (sendto, lane thread)",
                source: std::io::Error::from_raw_os_error(e),
            })
        })
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A lane thread's loop: kicks while its ring holds frames (stamping tagged ones first),
/// yields while work may come, sleeps after [`KICK_IDLE`] without any; on stop, drains its
/// ring (at most [`KICK_DRAIN`]) and ends.
fn kick_loop(fd: std::os::fd::RawFd, k: &KickShared) {
    let mask = k.tags.len() - 1;
    let mut last_work = Instant::now();
    let mut stopping: Option<Instant> = None;
    loop {
        let (cons, prod) = k.view.bounds();
        let stop = k.stop.load(Ordering::Acquire);
        if stop && stopping.get_or_insert_with(Instant::now).elapsed() > KICK_DRAIN {
            return;
        }
        if cons != prod {
            if let Some(table) = k.table.get() {
                let now = crate::stamp_ns();
                let mut at = cons;
                while at != prod {
                    let t = k.tags[at as usize & mask].load(Ordering::Acquire);
                    if t >> 32 == 1 {
                        table.stamp_sent(t as u32, now);
                    }
                    at = at.wrapping_add(1);
                }
            }
            if let Err(e) = xsk_sys::kick_tx(fd) {
                k.errno
                    .store(e.raw_os_error().unwrap_or(libc::EIO), Ordering::Release);
                return;
            }
            last_work = Instant::now();
            continue;
        }
        if stop {
            return;
        }
        if last_work.elapsed() < KICK_IDLE {
            std::thread::yield_now();
            continue;
        }
        k.asleep.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        // A call handed over between the look above and the flag is seen here; one handed
        // over after this look finds the flag set and unparks.
        if k.view.waiting() == 0 && !k.stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(100));
        }
        k.asleep.store(false, Ordering::SeqCst);
        last_work = Instant::now();
    }
}

/// The sending half: a batch per TX lane in turn.
pub struct XdpTx {
    lanes: Vec<Lane>,
    next: usize,
    /// When the last call started and returned (see [`SATURATED`]).
    last_call: Option<(Instant, Instant)>,
    /// When a call last found the sender saturated: lanes with threads of their own take
    /// calls until [`SPREAD`] after it, then the first lane alone again.
    saturated_at: Option<Instant>,
    /// Every RX queue's ring, read from here (see [`Tx::receivers_behind`]).
    watches: Vec<xsk_sys::RingView>,
    /// Frames waiting on one RX ring beyond which receivers are behind: a quarter of it.
    hold_at: u32,
    caps: TxCaps,
    /// Opened for both families: the other family's layer (its source and next hop).
    other: Option<TxLayer>,
}

impl std::fmt::Debug for XdpTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues: Vec<u32> = self.lanes.iter().map(|l| l.queue).collect();
        let in_flight: usize = self.lanes.iter().map(|l| l.pool.out()).sum();
        f.debug_struct("XdpTx")
            .field("queues", &queues)
            .field("in_flight", &in_flight)
            .finish()
    }
}

/// Watches the interface's RX queue count (an `ethtool -L` mid-run leaves queues unserved).
#[derive(Debug)]
struct QueueWatch {
    ifname: String,
    rx_queues: u32,
    served: Vec<u32>,
    next: Instant,
}

impl QueueWatch {
    fn check(&mut self) -> Result<(), EngineError> {
        let now = Instant::now();
        if now < self.next {
            return Ok(());
        }
        self.next = now + QUEUE_CHECK;
        let (rx, _) = queue_counts(&self.ifname);
        if rx == self.rx_queues {
            return Ok(());
        }
        Err(EngineError::Changed {
            engine: ENGINE,
            reason: format!(
                "{} now has {rx} RX queue{} (it had {} when the run started: reconfigured \
                 mid-run, e.g. ethtool -L); the AF_XDP sockets serve queues {}, so replies \
                 would be lost or counted on the wrong queues: stopping (run again to use the \
                 new queues)",
                self.ifname,
                if rx == 1 { "" } else { "s" },
                self.rx_queues,
                queue_list(&self.served)
            ),
        })
    }
}

/// The receiving half of one queue. The first one opened owns the XDP program's attachment
/// and reports its counters, and watches the interface's queue count.
pub struct XdpRx {
    queue: u32,
    q: RxQueue,
    fq: FillQueue,
    umem: Umem,
    descs: Vec<FrameDesc>,
    filter: Option<Filter>,
    /// The raw sockets that read what the kernel reassembled, one per family (the first half
    /// only).
    sides: Vec<Side>,
    watch: Option<QueueWatch>,
    caps: RxCaps,
    /// RX frames of this queue.
    frames: u32,
    /// Our MAC and addresses (the other family's too, for an engine of both): what every
    /// frame off the ring must be addressed to.
    to: ([u8; 6], IpAddr, Option<IpAddr>),
    /// Frames off the ring that were not (see [`KernelDrops::xdp_misaddressed`]).
    misaddressed: u64,
    /// Frames off the ring without the program's receive stamp
    /// ([`KernelDrops::xdp_unstamped`]).
    unstamped: u64,
    /// Whether an empty ring is watched before sleeping, and until when.
    ring_watch: RingWatch,
    /// The first half's: the interface's transmit drops counter and its value at the open
    /// ([`KernelDrops::link_tx_dropped`]).
    link: Option<LinkDrops>,
}

/// An interface's transmit drops since a moment: its sysfs counter and its value then.
#[derive(Debug)]
struct LinkDrops {
    path: std::path::PathBuf,
    at_open: u64,
}

impl LinkDrops {
    /// From now on, for interface `ifname` (`None` without a readable counter).
    fn of(ifname: &str) -> Option<LinkDrops> {
        let path =
            std::path::PathBuf::from(format!("/sys/class/net/{ifname}/statistics/tx_dropped"));
        Self::at(path)
    }

    fn at(path: std::path::PathBuf) -> Option<LinkDrops> {
        let at_open = read_counter(&path)?;
        Some(LinkDrops { path, at_open })
    }

    /// Drops since then (0 if the counter cannot be read or went back).
    fn since_open(&self) -> u64 {
        read_counter(&self.path).map_or(0, |n| n.saturating_sub(self.at_open))
    }
}

/// A decimal counter file (sysfs).
fn read_counter(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// How long the receiver keeps watching its ring after the last frame before it sleeps in
/// poll(2), once replies come fast. A sleeping reader costs the CPU that receives each frame
/// a wakeup: in copy mode the kernel signals the socket once per frame, and waking the
/// poller was 18 % of the sending thread's samples at full speed (perf, speed bed, one
/// queue; the receiver lost 13 % of its own in context switches). A reader that is watching
/// is not woken. The watch starts when a wakeup finds [`SPIN_BACKLOG`] frames waiting (they
/// come faster than a wakeup takes) and lasts while each frame follows the last within
/// this: above 50,000 replies/s on the queue. It yields the CPU between looks, so a sender
/// sharing the core runs; it is never done where the run has one CPU.
const SPIN: Duration = Duration::from_micros(20);

/// Frames a wakeup must find waiting to start watching the ring.
const SPIN_BACKLOG: usize = 8;

/// The raw ICMP (ICMPv6) socket beside the AF_XDP sockets: the fragments the program passes
/// to the kernel come back here reassembled.
struct Side {
    fd: OwnedFd,
    vec: sys::RecvVec,
    v6: bool,
    /// Frames read so far.
    read: u64,
}

/// Messages per `recvmmsg` on the side socket, and their size (a reassembled reply may be
/// large; fragments are rare, so few slots).
const SIDE_BATCH: usize = 8;
const SIDE_BYTES: usize = 65_536;

fn side_socket(v6: bool, ifname: &str) -> Result<Side, EngineError> {
    let opts = RawOptions {
        v6,
        device: Some(ifname.to_string()),
        batch: SIDE_BATCH,
        max_reply: SIDE_BYTES,
        rcvbuf: 4 << 20,
        sndbuf: 4096,
        ..RawOptions::default()
    };
    let fd = raw::socket(&opts, ENGINE)?;
    Ok(Side {
        fd,
        vec: sys::RecvVec::new(SIDE_BATCH, SIDE_BYTES),
        v6,
        read: 0,
    })
}

impl Side {
    /// Hands what waits on the socket to `on_frame`, a bounded number of batches.
    fn drain(&mut self, on_frame: &mut dyn FnMut(RxFrame<'_>)) -> Result<usize, EngineError> {
        let mut total = 0;
        for _ in 0..8 {
            let n = self.vec.recv(&self.fd).map_err(|source| EngineError::Io {
                engine: ENGINE,
                what: "recvmmsg (raw socket)",
                source,
            })?;
            let fallback = crate::stamp_ns();
            for i in 0..n {
                let (m, data) = self.vec.message(i);
                if let Some(f) = raw::frame(self.v6, &m, data, fallback) {
                    on_frame(f);
                }
            }
            total += n;
            if n < SIDE_BATCH {
                break;
            }
        }
        self.read += total as u64;
        Ok(total)
    }
}

impl std::fmt::Debug for XdpRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpRx")
            .field("queue", &self.queue)
            .field("mode", &self.filter.as_ref().map(Filter::mode))
            .finish()
    }
}

/// What an opened engine runs on.
#[derive(Debug, Clone)]
pub struct XdpInfo {
    /// Interface, addresses, next hop.
    pub path: XdpPath,
    /// The other family's, for an engine of both.
    pub other: Option<XdpPath>,
    /// How the XDP program is attached.
    pub mode: Mode,
    /// A leftover program that was replaced, if any.
    pub replaced: Option<String>,
    /// The RX queues bound, one socket (and RX half) each.
    pub queues: Vec<u32>,
    /// The queues the TX half sends through.
    pub tx_queues: Vec<u32>,
    /// How many RX queues the interface has.
    pub rx_queue_count: u32,
    /// RX queues of the interface without a socket (only when `queues` were chosen).
    pub unserved: Vec<u32>,
    /// RX frames per queue.
    pub rx_frames: u32,
    /// UMEM bytes over all queues.
    pub umem_bytes: u64,
    /// Whether each TX queue sends through a socket of its own (`XdpOptions::separate_tx`, or
    /// where queues send from threads of their own).
    pub tx_sockets: bool,
    /// TX queues that send from a thread of their own (every one after the first, in copy
    /// mode with several CPUs; see [`Kicker`]); 0 when the sender kicks every queue itself.
    pub tx_threads: usize,
}

fn qsize(n: u32) -> Result<QueueSize, EngineError> {
    QueueSize::new(n.next_power_of_two()).map_err(|e| unavailable(format!("ring size {n}: {e}")))
}

/// One queue's sockets, freshly bound: their rings, their UMEM and its frames (TX ones
/// first).
struct Bound {
    txq: TxQueue,
    rxq: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    umem: Umem,
    frames: Vec<FrameDesc>,
}

/// Binds `queue`: a socket for receiving (the one the program redirects to; it owns the
/// UMEM's fill and completion rings) that also sends, or, with `tx_socket`, a second socket on
/// the same UMEM for sending (`XDP_SHARED_UMEM`), whose completions come back on the first
/// one's completion ring. In copy mode every poll(2) on a socket with a TX ring also runs that
/// socket's TX path under its mutex (`xsk_poll` drives copy-mode TX). With one socket, a
/// receiver waiting for replies thereby takes turns with the sender at pushing its frames:
/// with probes sent one per call it contends with every `sendto` for the mutex (15–17 % of
/// each thread's CPU at full speed, perf on the speed bed) and a socket of the sender's own
/// sent 1.23× the rate; with calls of 64 the receiver's share of the pushing helps, and one
/// socket sent 1.09× the rate of two (`bench/xdp-race.sh`, bench/RESULTS.md). The receiving
/// socket's own TX ring is then the smallest the kernel takes, never used.
fn bind_queue(
    ifname: &str,
    queue: u32,
    tx_frames: u32,
    rx_frames: u32,
    tx_socket: bool,
) -> Result<Bound, EngineError> {
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME).map_err(|e| unavailable(e.to_string()))?)
        .fill_queue_size(qsize(rx_frames)?)
        .comp_queue_size(qsize(tx_frames)?)
        .build()
        .map_err(|e| unavailable(format!("UMEM config: {e}")))?;
    let total = NonZeroU32::new(tx_frames + rx_frames).expect("at least 128 frames");
    let (umem, frames) = Umem::new(umem_cfg, total, false).map_err(|e| {
        unavailable(format!(
            "UMEM of {} MiB for queue {queue}: {e}",
            (u64::from(total.get()) * u64::from(FRAME)) >> 20
        ))
    })?;
    let iface = Interface::new(
        std::ffi::CString::new(ifname.to_string())
            .map_err(|_| unavailable(format!("bad interface name {ifname:?}")))?,
    );
    let failed = |e: xsk_rs::socket::SocketCreateError| {
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
            "AF_XDP socket on {ifname} queue {queue}: {why}{hint}"
        ))
    };
    let unused = qsize(SPARE_RING)?;
    let rx_cfg = SocketConfig::builder()
        .rx_queue_size(qsize(rx_frames)?)
        .tx_queue_size(if tx_socket { unused } else { qsize(tx_frames)? })
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    let (mut txq, rxq, rings) = xsk_sys::socket(rx_cfg, &umem, &iface, queue).map_err(failed)?;
    let Some((fq, cq)) = rings else {
        return Err(unavailable(format!(
            "{ifname} queue {queue}: no fill/completion rings"
        )));
    };
    if tx_socket {
        // A socket sharing the UMEM takes no bind flags of its own (the kernel refuses
        // them): it inherits the first one's mode and need-wakeup.
        let tx_cfg = SocketConfig::builder()
            .rx_queue_size(unused)
            .tx_queue_size(qsize(tx_frames)?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .build();
        let (tx_side, _rx_side, none) =
            xsk_sys::shared_socket(tx_cfg, &umem, &iface, queue).map_err(failed)?;
        debug_assert!(
            none.is_none(),
            "the pair's rings belong to the first socket"
        );
        txq = tx_side;
    }
    Ok(Bound {
        txq,
        rxq,
        fq,
        cq,
        umem,
        frames,
    })
}

impl XdpRx {
    /// The RX half of `queue`'s socket (the first one gets the program, the side socket and
    /// the queue watch after).
    fn new(
        queue: u32,
        q: RxQueue,
        fq: FillQueue,
        umem: Umem,
        batch: usize,
        frames: u32,
        to: ([u8; 6], IpAddr, Option<IpAddr>),
    ) -> XdpRx {
        XdpRx {
            queue,
            q,
            fq,
            umem,
            descs: vec![FrameDesc::default(); batch.max(64)],
            filter: None,
            sides: vec![],
            watch: None,
            frames,
            to,
            misaddressed: 0,
            unstamped: 0,
            ring_watch: RingWatch::new(cpus()),
            link: None,
            caps: RxCaps {
                engine: ENGINE,
                stamp: crate::RxStamp::XdpHook,
            },
        }
    }

    /// Watches the empty ring for frames while the watch lasts ([`RingWatch`], at most
    /// `timeout`); how many it then took.
    fn watch_ring(&mut self, timeout: Duration) -> usize {
        let Some(until) = self.ring_watch.until(Instant::now(), timeout) else {
            return 0;
        };
        while Instant::now() < until {
            if self.q.nb_avail_exact() > 0 {
                return xsk_sys::rx_consume(&mut self.q, &mut self.descs);
            }
            std::thread::yield_now();
        }
        self.ring_watch.ended();
        0
    }
}

/// When the receiver watches its empty ring instead of sleeping on it (see [`SPIN`]).
#[derive(Debug, Clone, Copy)]
struct RingWatch {
    /// `false` where the run has one CPU: never watched.
    allowed: bool,
    /// Whether the ring is being watched, and until when.
    until: Option<Instant>,
}

impl RingWatch {
    fn new(cpus: usize) -> RingWatch {
        RingWatch {
            allowed: cpus > 1,
            until: None,
        }
    }

    /// After a read that took `n > 0` frames at `now`, `woken` if they were found by a
    /// sleep's wakeup: the watch goes on while frames keep coming, and a wakeup starts it
    /// only on a backlog.
    fn read(&mut self, n: usize, woken: bool, now: Instant) {
        let on = self.allowed && (!woken || n >= SPIN_BACKLOG);
        self.until = on.then(|| now + SPIN);
    }

    /// Until when to watch an empty ring found at `now` (at most `timeout`), if at all.
    fn until(&self, now: Instant, timeout: Duration) -> Option<Instant> {
        self.until
            .filter(|&u| u > now)
            .map(|u| u.min(now + timeout))
    }

    /// The watch saw nothing: sleep from now on, until a backlog starts it again.
    fn ended(&mut self) {
        self.until = None;
    }
}

/// How an open lays the interface's queues out: which it binds, which send, the frames of
/// each and the UMEM they add up to.
struct Layout {
    /// The interface's RX queues.
    rx_count: u32,
    /// The queues bound (one socket each).
    queues: Vec<u32>,
    /// RX queues left without a socket.
    unserved: Vec<u32>,
    /// The bound queues that also send.
    tx_queues: Vec<u32>,
    /// RX frames per queue.
    rx_frames: u32,
    /// TX frames per sending queue.
    lane_frames: u32,
    /// UMEM bytes over all queues.
    umem_bytes: u64,
}

impl Layout {
    /// TX frames of `queue`: a sending queue's share, else a small completion ring and TX
    /// area that a socket needs anyway.
    fn tx_frames_of(&self, queue: u32) -> u32 {
        if self.tx_queues.contains(&queue) {
            self.lane_frames
        } else {
            64
        }
    }
}

/// Plans the queues of `ifname` for `o`, refusing what cannot run: queues left unserved where
/// all must be, a UMEM beyond the memlock limit.
fn layout(o: &XdpOptions, ifname: &str) -> Result<Layout, EngineError> {
    let (rx_count, tx_count) = queue_counts(ifname);
    let (queues, unserved) =
        plan_queues(ifname, rx_count, o.queues.as_deref()).map_err(unavailable)?;
    if o.require_all_queues && !unserved.is_empty() {
        return Err(unavailable(format!(
            "sockets on queue{} {} would leave {} of {ifname}'s {rx_count} RX queues \
             ({}) unserved, and the replies the NIC spreads there would be lost",
            if queues.len() == 1 { "" } else { "s" },
            queue_list(&queues),
            unserved.len(),
            queue_list(&unserved)
        )));
    }
    let mut tx_queues: Vec<u32> = queues.iter().copied().filter(|&q| q < tx_count).collect();
    if tx_queues.is_empty() {
        tx_queues.push(queues[0]);
    }
    let rx_frames = o.rx_frames.max(64).next_power_of_two();
    let lane_frames = (o.tx_frames.max(64) / tx_queues.len() as u32)
        .max(256)
        .next_power_of_two();
    // Queues without a TX lane still need a (small) completion ring and TX area.
    let umem_bytes: u64 = queues
        .iter()
        .map(|&q| {
            let tx = if tx_queues.contains(&q) {
                lane_frames
            } else {
                64
            };
            u64::from(tx + rx_frames) * u64::from(FRAME)
        })
        .sum();
    caps::check_memlock(umem_bytes).map_err(unavailable)?;
    Ok(Layout {
        rx_count,
        queues,
        unserved,
        tx_queues,
        rx_frames,
        lane_frames,
        umem_bytes,
    })
}

/// Attaches asdic's filter to the path's interface for this run: its session, identifiers,
/// MAC key, and its source address as the only destination.
fn attach_filter(
    o: &XdpOptions,
    path: &XdpPath,
    other: Option<&XdpPath>,
) -> Result<Filter, EngineError> {
    let (mut src4, mut src6) = (None, None);
    for p in std::iter::once(path).chain(other) {
        match p.src_ip {
            IpAddr::V4(a) => src4 = Some(a),
            IpAddr::V6(a) => src6 = Some(a),
        }
    }
    if path.src_ip.is_ipv6() != o.v6 || other.is_some_and(|p| p.src_ip.is_ipv6() == o.v6) {
        return Err(unavailable(format!(
            "source address {} is not of the probes' family",
            path.src_ip
        )));
    }
    Filter::attach(
        &path.link.name,
        &FilterConfig {
            // Ours without a socket would reach the raw socket uncounted: dropped, counted.
            drop_unserved: true,
            mac_key: o.mac_key,
            // Every frame of ours comes with the program's receive stamp.
            stamp: true,
            ..FilterConfig::new(
                o.session,
                o.ident_base,
                o.ident_span.clamp(1, 65_536),
                path.src_mac,
                src4,
                src6,
            )
        },
        o.mode,
    )
    .map_err(|e| unavailable(e.to_string()))
}

/// The sockets of one open: one per queue in `l` (registered with the program for each family
/// in `families`, `true` for IPv6), its fill ring filled; the TX lanes of the sending queues,
/// the RX halves, and the RX rings' watches.
fn bind_all(
    o: &XdpOptions,
    l: &Layout,
    ifname: &str,
    filter: &mut Filter,
    families: &[bool],
    to: ([u8; 6], IpAddr, Option<IpAddr>),
) -> Result<Sockets, EngineError> {
    let batch = o.batch.max(1);
    let mut lanes = vec![];
    let mut rxs = vec![];
    let mut watches = vec![];
    let mut zero_copy = false;
    let separate = separate_tx(o, l);
    for &queue in &l.queues {
        let tx_frames = l.tx_frames_of(queue);
        let Bound {
            txq,
            rxq,
            mut fq,
            cq,
            umem,
            mut frames,
        } = bind_queue(
            ifname,
            queue,
            tx_frames,
            l.rx_frames,
            separate && l.tx_queues.contains(&queue),
        )?;
        // One socket per queue for every family the engine serves.
        for &v6 in families {
            filter
                .register(queue, v6, rxq.fd().as_raw_fd())
                .map_err(|e| unavailable(e.to_string()))?;
        }
        zero_copy |= sys::xsk_zero_copy(rxq.fd().as_raw_fd());
        // Without a watch the sender still hears from the receiver itself, later.
        if let Ok(w) = xsk_sys::RingView::new(rxq.fd().as_raw_fd()) {
            watches.push(w);
        }
        let rx_part = frames.split_off(tx_frames as usize);
        if xsk_sys::fill_produce(&mut fq, &rx_part) != rx_part.len() {
            return Err(unavailable(format!(
                "{ifname} queue {queue}: could not fill the fill ring with {} frames",
                rx_part.len()
            )));
        }
        if l.tx_queues.contains(&queue) {
            lanes.push(Lane {
                queue,
                q: txq,
                cq,
                umem: umem.clone(),
                pool: Pool::new(frames),
                out: Vec::with_capacity(batch),
                done: vec![FrameDesc::default(); tx_frames as usize],
                ring: tx_frames.next_power_of_two(),
                kicker: None,
            });
        }
        // A queue without a lane drops its TX ring and completion ring here; the socket
        // lives on with its RX ring and fill ring (xsk-rs closes it with the last handle).
        rxs.push(XdpRx::new(queue, rxq, fq, umem, batch, l.rx_frames, to));
    }
    // Copy mode, several lanes, several CPUs: every lane after the first sends from a thread
    // of its own, which takes calls of several frames (see [`Kicker`]).
    if lane_threads(l) && !zero_copy && lanes.len() > 1 {
        for lane in &mut lanes[1..] {
            let fd = lane.q.fd().as_raw_fd();
            lane.kicker = Some(Kicker::spawn(lane.queue, fd, lane.ring)?);
        }
    }
    Ok(Sockets {
        lanes,
        rxs,
        watches,
        zero_copy,
        separate,
    })
}

/// CPUs this process may run on.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Whether sending queues get a sending socket of their own: when asked
/// ([`XdpOptions::separate_tx`], runs sending one probe per call), and where lanes get
/// threads of their own ([`lane_threads`]: a thread must be the only one to transmit its
/// lane's frames, and a receiver's poll on a shared socket would push them too).
fn separate_tx(o: &XdpOptions, l: &Layout) -> bool {
    o.separate_tx || lane_threads(l)
}

/// Whether every sending queue after the first gets a thread of its own ([`Kicker`]): more
/// than one sending queue and more than one CPU. The threads take calls of several frames
/// only (a run sending one probe per call leaves them asleep until it falls behind the rate
/// and its calls grow): one frame per hand-over gained 1.1× at full speed on two queues but,
/// sharing two CPUs with two receivers and the pacing sender, held a run asked for
/// 100,000/s to 68,000/s, against 95,000/s without.
fn lane_threads(l: &Layout) -> bool {
    l.tx_queues.len() > 1 && cpus() > 1
}

/// What [`bind_all`] opened.
struct Sockets {
    lanes: Vec<Lane>,
    rxs: Vec<XdpRx>,
    watches: Vec<xsk_sys::RingView>,
    /// Whether the sockets are bound in zero-copy mode (else the kernel copies).
    zero_copy: bool,
    /// Whether the sending queues send through sockets of their own.
    separate: bool,
}

/// Opens the engine: resolves the path, attaches the XDP program, creates a UMEM and a
/// socket per RX queue, registers each socket with the program and fills its fill ring.
/// Returns the TX half and one RX half per queue (the first one owns the program).
pub fn open(o: &XdpOptions) -> Result<(XdpTx, Vec<XdpRx>, XdpInfo), EngineError> {
    if let Some(why) = caps::lacking("XDP", caps::XDP_ENGINE, caps::XDP_GRANT) {
        return Err(unavailable(why));
    }
    let (path, other) = paths(o)?;
    let ifname = path.link.name.clone();
    let max_packet = (path.link.mtu as usize + ETH).min((FRAME - 256) as usize);
    if o.frame_len > max_packet {
        return Err(unavailable(format!(
            "{}-byte probe frames exceed {ifname}'s MTU ({} bytes of frame); the XDP engine \
             does not fragment",
            o.frame_len, max_packet
        )));
    }
    let l = layout(o, &ifname)?;
    // The raw socket for what the kernel reassembles: opened now, while the capabilities are
    // there, and before the program passes it anything.
    let mut sides = vec![side_socket(o.v6, &ifname)?];
    if other.is_some() {
        sides.push(side_socket(!o.v6, &ifname)?);
    }
    let mut filter = attach_filter(o, &path, other.as_ref())?;

    let families: Vec<bool> = [o.v6, !o.v6].into_iter().take(sides.len()).collect();
    let to = (path.src_mac, path.src_ip, other.as_ref().map(|p| p.src_ip));
    let Sockets {
        lanes,
        mut rxs,
        watches,
        zero_copy,
        separate,
    } = bind_all(o, &l, &ifname, &mut filter, &families, to)?;
    let other_layer = other.as_ref().map(|p| TxLayer::Ethernet {
        src_mac: p.src_mac,
        dst_mac: p.dst_mac,
        src_ip: p.src_ip,
    });
    let info = XdpInfo {
        path: path.clone(),
        other,
        mode: filter.mode(),
        replaced: filter.replaced().map(str::to_string),
        queues: l.queues.clone(),
        tx_queues: l.tx_queues,
        rx_queue_count: l.rx_count,
        unserved: l.unserved,
        rx_frames: l.rx_frames,
        umem_bytes: l.umem_bytes,
        tx_sockets: separate,
        tx_threads: lanes.iter().filter(|l| l.kicker.is_some()).count(),
    };
    let first = &mut rxs[0];
    first.link = LinkDrops::of(&ifname);
    first.filter = Some(filter);
    first.sides = sides;
    first.watch = Some(QueueWatch {
        ifname,
        rx_queues: l.rx_count,
        served: l.queues,
        next: Instant::now() + QUEUE_CHECK,
    });
    let tx = XdpTx {
        lanes,
        next: 0,
        last_call: None,
        saturated_at: None,
        watches,
        hold_at: l.rx_frames / 4,
        caps: TxCaps {
            engine: ENGINE,
            layer: TxLayer::Ethernet {
                src_mac: path.src_mac,
                dst_mac: path.dst_mac,
                src_ip: path.src_ip,
            },
            max_packet,
            ttl_per_socket: false,
            kernel_stamps: false,
            serial_send: !zero_copy,
        },
        other: other_layer,
    };
    Ok((tx, rxs, info))
}

impl Lane {
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

    fn send(
        &mut self,
        batch: &TxBatch,
        from: usize,
        max_packet: usize,
    ) -> Result<usize, SendError> {
        self.reap();
        let want = batch.len().saturating_sub(from);
        if want == 0 {
            return Ok(0);
        }
        let room = self.q.nb_free(want as u32) as usize;
        self.pool.take(want.min(room), &mut self.out);
        if self.out.is_empty() {
            // A lane with a thread is kicked by its thread alone: the thread stamps the
            // frames on its ring right before its own kick, and would stamp a frame another
            // kick had already sent after its send.
            if self.kicker.is_none() {
                self.kick()?;
            }
            self.reap();
            return Err(SendError::Busy { sent: 0 });
        }
        for (i, d) in self.out.iter_mut().enumerate() {
            let (pkt, _) = batch.packet(from + i).expect("index below batch.len()");
            if pkt.len() > max_packet || !xsk_sys::write_frame(&self.umem, d, pkt) {
                // Only ever the first packet of a call can be refused: it is reported
                // alone, the frames go back.
                let len = pkt.len();
                self.pool.give(&self.out);
                self.out.clear();
                return Err(SendError::Packet {
                    sent: 0,
                    error: std::io::Error::other(format!(
                        "{len}-byte frame exceeds the XDP engine's {max_packet} bytes"
                    )),
                });
            }
        }
        let n = self.out.len();
        if let Some(k) = &self.kicker {
            k.tag(batch, from, n);
        }
        if xsk_sys::tx_produce(&mut self.q, &self.out) != n {
            self.pool.give(&self.out);
            self.out.clear();
            return Err(SendError::Busy { sent: 0 });
        }
        self.out.clear();
        match &self.kicker {
            Some(k) => {
                // The frames are on the ring before the thread's sleep flag is read (the
                // thread sets the flag before its last look at the ring).
                std::sync::atomic::fence(Ordering::SeqCst);
                k.wake();
            }
            None => self.kick()?,
        }
        Ok(n)
    }
}

impl XdpTx {
    /// For a call starting at `start`: whether it finds the sender saturated (see
    /// [`SATURATED`]), and whether lanes with threads take calls (within [`SPREAD`] of the
    /// last such call; below full speed the first lane alone keeps up and the threads are
    /// left to sleep).
    fn saturation(&mut self, start: Instant) -> (bool, bool) {
        let saturated = self
            .last_call
            .is_some_and(|(s, e)| start.saturating_duration_since(e) < SATURATED.max(e - s));
        if saturated {
            self.saturated_at = Some(start);
        }
        let spread = self
            .saturated_at
            .is_some_and(|t| start.saturating_duration_since(t) < SPREAD);
        (saturated, spread)
    }
}

impl Tx for XdpTx {
    fn caps(&self) -> TxCaps {
        self.caps
    }

    fn layer_for(&self, family: asdic_wire::Family) -> Option<TxLayer> {
        [Some(self.caps.layer), self.other]
            .into_iter()
            .flatten()
            .find(|l| matches!(l, TxLayer::Ethernet { src_ip, .. } if asdic_wire::Family::of(*src_ip) == family))
    }

    fn receivers_behind(&self) -> bool {
        self.watches.iter().any(|w| w.waiting() > self.hold_at)
    }

    fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
        // One call goes out through one lane. Lanes with threads of their own are offered it
        // first, from the lane after the last one used; one takes it only when ready (awake,
        // at most one call waiting on its ring), and its thread is woken while the sender is
        // saturated. Then the lanes the sender kicks itself; a lane with a full ring hands
        // the call on to the others before the batch waits.
        // Only lanes with threads need the calls timed.
        let start = self
            .lanes
            .iter()
            .any(|l| l.kicker.is_some())
            .then(Instant::now);
        let (saturated, spread) = start.map_or((false, false), |t| self.saturation(t));
        let n = self.lanes.len();
        let mut r = Err(SendError::Busy { sent: 0 });
        // Lanes with threads are offered the call first: the sender kicks a lane itself only
        // when every thread has a call queued, so the threads never wait on it.
        'lanes: for threaded in [true, false] {
            for k in 0..n {
                let i = (self.next + k) % n;
                if self.lanes[i].kicker.is_some() != threaded {
                    continue;
                }
                if let Some(kick) = &self.lanes[i].kicker {
                    if let Some(e) = kick.failed() {
                        return Err(e);
                    }
                    // A call of one frame goes through the first lane: handing it over costs
                    // about what sending it does, and a run sending one probe per call leaves
                    // the threads asleep.
                    let several = batch.len() - from >= 2;
                    if saturated && several {
                        kick.wake();
                    }
                    if !spread || !several || !kick.ready() {
                        continue;
                    }
                }
                match self.lanes[i].send(batch, from, self.caps.max_packet) {
                    Err(SendError::Busy { sent: 0 }) => continue,
                    other => {
                        self.next = (i + 1) % n;
                        r = other;
                        break 'lanes;
                    }
                }
            }
        }
        if let Some(t) = start {
            self.last_call = Some((t, Instant::now()));
        }
        r
    }

    fn stamp_sends(&mut self, table: Arc<InflightTable>) {
        for lane in &self.lanes {
            if let Some(k) = &lane.kicker {
                let _ = k.shared.table.set(table.clone());
            }
        }
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
        if let Some(w) = &mut self.watch {
            w.check()?;
        }
        let mut n = xsk_sys::rx_consume(&mut self.q, &mut self.descs);
        if n == 0 {
            n = self.watch_ring(timeout);
        }
        let mut from_side = 0;
        let mut woken = false;
        if n == 0 {
            woken = true;
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            let ready = if self.sides.is_empty() {
                self.q.poll(ms)
            } else {
                let mut fds = [self.q.fd().as_raw_fd(); sys::POLL_MAX];
                for (fd, side) in fds[1..].iter_mut().zip(&self.sides) {
                    *fd = side.fd.as_raw_fd();
                }
                sys::poll_any(&fds[..=self.sides.len()], ms)
            }
            .map_err(|source| EngineError::Io {
                engine: ENGINE,
                what: "poll",
                source,
            })?;
            if !ready {
                return Ok(0);
            }
            n = xsk_sys::rx_consume(&mut self.q, &mut self.descs);
        }
        for side in &mut self.sides {
            from_side += side.drain(on_frame)?;
        }
        if n == 0 {
            return Ok(from_side);
        }
        self.ring_watch.read(n, woken, Instant::now());
        // Each frame carries the program's stamp (CLOCK_MONOTONIC), on the stamp clock once
        // the clock's base is added (`stamp_ns`: no step of the realtime clock moves it); a
        // frame without one is stamped now and counted.
        let (now, base) = (crate::stamp_ns(), crate::stamp_base());
        let (mac, ip, other) = self.to;
        for d in &self.descs[..n] {
            let (ts_ns, data) =
                match asdic_xdp::filter::rx_stamp(xsk_sys::frame_bytes(&self.umem, d)) {
                    Some((mono, frame)) => (mono.wrapping_add_signed(base), frame),
                    None => {
                        self.unstamped += 1;
                        (now, xsk_sys::frame_bytes(&self.umem, d))
                    }
                };
            // The program's address checks, again: a frame it should not have handed over
            // is counted, never matched.
            let to_us = |ip| asdic_wire::inbound::ethernet_addressed_to(data, mac, ip);
            if !to_us(ip) && !other.is_some_and(to_us) {
                self.misaddressed += 1;
                continue;
            }
            on_frame(RxFrame {
                data,
                layer: RxLayer::Ethernet,
                ts_ns,
                truncated: false,
                realtime: false,
            });
        }
        // The fill ring holds every RX frame, so there is always room for these.
        let back = xsk_sys::fill_produce(&mut self.fq, &self.descs[..n]);
        debug_assert_eq!(back, n);
        if self.fq.needs_wakeup() {
            let _ = self.fq.wakeup(self.q.fd_mut(), 0);
        }
        Ok(n + from_side)
    }

    fn backlog(&mut self) -> Option<(u32, u32)> {
        // Frames on the RX ring; the fill ring holds the rest of the queue's frames, so
        // this many out of all of them are waiting to be read.
        Some((self.q.nb_avail_exact(), self.frames))
    }

    fn kernel_drops(&mut self) -> Result<KernelDrops, EngineError> {
        let filter = self.filter.as_ref().map(Filter::stats).unwrap_or_default();
        let mut side_drops = 0;
        for side in &self.sides {
            side_drops += sys::socket_drops(&side.fd).map_err(|source| EngineError::Io {
                engine: ENGINE,
                what: "SO_MEMINFO (raw socket)",
                source,
            })?;
        }
        let s = self
            .q
            .fd()
            .xdp_statistics()
            .map_err(|source| EngineError::Io {
                engine: ENGINE,
                what: "getsockopt XDP_STATISTICS",
                source,
            })?;
        Ok(KernelDrops {
            socket: side_drops,
            xsk_rx_dropped: s.rx_dropped(),
            xsk_rx_ring_full: s.rx_ring_full(),
            xsk_fill_empty: s.rx_fill_ring_empty_descs(),
            xsk_invalid: s.rx_invalid_descs() + s.tx_invalid_descs(),
            redirect_failed: filter.redirect_failed,
            xdp_redirected: filter.redirected,
            xdp_pass: filter.pass,
            xdp_via_kernel: self.sides.iter().map(|s| s.read).sum(),
            xdp_misaddressed: self.misaddressed,
            xdp_drop_forged: filter.forged,
            xdp_unstamped: self.unstamped,
            link_tx_dropped: self.link.as_ref().map_or(0, LinkDrops::since_open),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_drops_count_from_the_open_and_never_go_back() {
        let dir = std::env::temp_dir().join(format!("asdic-linkdrops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tx_dropped");
        std::fs::write(&path, "1000\n").unwrap();
        let l = LinkDrops::at(path.clone()).expect("a readable counter");
        assert_eq!(l.since_open(), 0);
        std::fs::write(&path, "1748\n").unwrap();
        assert_eq!(l.since_open(), 748);
        // Reset (the interface recreated) or unreadable: nothing, never a wrap.
        std::fs::write(&path, "3\n").unwrap();
        assert_eq!(l.since_open(), 0);
        std::fs::write(&path, "junk").unwrap();
        assert_eq!(l.since_open(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(LinkDrops::at(path).is_none());
    }

    #[test]
    fn queue_lists_read_as_ranges() {
        assert_eq!(queue_list(&[0]), "0");
        assert_eq!(queue_list(&[0, 1]), "0,1");
        assert_eq!(queue_list(&[0, 1, 2, 3]), "0-3");
        assert_eq!(queue_list(&[0, 2, 3, 4, 7, 9, 10]), "0,2-4,7,9,10");
        assert_eq!(queue_list(&[]), "");
    }

    #[test]
    fn every_queue_by_default_and_the_asked_ones_checked() {
        assert_eq!(plan_queues("s0", 4, None), Ok((vec![0, 1, 2, 3], vec![])));
        assert_eq!(
            plan_queues("s0", 4, Some(&[2, 0, 2])),
            Ok((vec![0, 2], vec![1, 3])),
            "sorted, each once, the rest unserved"
        );
        assert_eq!(
            plan_queues("s0", 4, Some(&[4])),
            Err("queue 4: s0 has 4 RX queues (0-3)".to_string())
        );
        assert_eq!(
            plan_queues("s0", 1, Some(&[1])),
            Err("queue 1: s0 has 1 RX queue (0-0)".to_string())
        );
        assert!(plan_queues("s0", 4, Some(&[])).is_err());
        let all: Vec<u32> = (0..65).collect();
        assert!(
            plan_queues("s0", 65, None)
                .unwrap_err()
                .contains("at most 64")
        );
        assert!(plan_queues("s0", 65, Some(&all[..64])).is_ok());
    }

    #[test]
    fn the_loopback_has_one_queue_each_way() {
        // lo has no ethtool channels; sysfs (or the fallback) gives one queue.
        let (rx, tx) = queue_counts("lo");
        assert!(rx >= 1 && tx >= 1, "{rx} {tx}");
        assert_eq!(queue_counts("no-such-if0"), (1, 1));
    }

    #[test]
    fn the_ring_is_watched_only_while_replies_come_fast_and_never_on_one_cpu() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let mut w = RingWatch::new(2);
        assert_eq!(w.until(t0, us(1000)), None, "nothing read yet");
        // A wakeup that finds a frame or a few: the replies are slow, sleep again.
        w.read(1, true, t0);
        assert_eq!(w.until(t0, us(1000)), None);
        w.read(SPIN_BACKLOG - 1, true, t0);
        assert_eq!(w.until(t0, us(1000)), None);
        // A backlog at a wakeup starts the watch, for SPIN after the frames.
        w.read(SPIN_BACKLOG, true, t0);
        assert_eq!(w.until(t0 + us(5), us(1000)), Some(t0 + SPIN));
        // Never past the caller's timeout.
        assert_eq!(w.until(t0 + us(5), us(2)), Some(t0 + us(7)));
        // A frame found without sleeping (while watching) keeps it going from its moment.
        w.read(1, false, t0 + us(15));
        assert_eq!(w.until(t0 + us(16), us(1000)), Some(t0 + us(15) + SPIN));
        // Past it, or once a watch saw nothing, the ring is slept on.
        assert_eq!(w.until(t0 + us(15) + SPIN, us(1000)), None);
        w.ended();
        assert_eq!(w.until(t0 + us(16), us(1000)), None);
        // One CPU: never, backlog or not.
        let mut one = RingWatch::new(1);
        one.read(SPIN_BACKLOG * 8, true, t0);
        one.read(1, false, t0);
        assert_eq!(one.until(t0, us(1000)), None);
    }

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
