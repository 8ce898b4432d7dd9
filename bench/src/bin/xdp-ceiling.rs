//! The speed bed's ceiling: a minimal AF_XDP sender of its own, independent of asdic's engine
//! (its own UMEM and rings per queue through xsk-rs, libxdp's own redirect program, no
//! pacing, stamps, table or matching). Prebuilt Ethernet frames go out in batches of 64 from
//! one thread per queue (pinned to core `queue % cores`); one more thread counts replies off
//! every RX ring and hands the frames straight back to the fill ring. What asdic's XDP engine
//! sends less than this is asdic's own cost.
//!
//! With a last argument, the same sender does per frame some of the work asdic does for every
//! tracked probe, and nothing of asdic's engine, runtime or table:
//! - `stamps`: the two stamps issue 28 asks for. A CLOCK_MONOTONIC read right before the
//!   frame goes on the ring, written into its payload (the ICMP checksum updated), and on the
//!   way back asdic's own XDP program (`asdic_filter`) instead of libxdp's, putting its
//!   `bpf_ktime_get_ns` receive stamp in front of each reply.
//! - `floor`: that, and what makes a reply trustworthy: the stamp's keyed MAC patched in
//!   (asdic-wire's template, as asdic's TX loop does) and the filter's keyed check.
//! - `tx-stamp`, `rx-stamp`: one of the two stamps of `stamps` (the other side as the
//!   ceiling's), to tell their costs apart.
//!
//! Their rates over the ceiling's are the most a prober doing that work per frame can reach
//! on the bed; asdic's over the floor's is what asdic's engine and runtime cost beyond it.
//!
//! usage: xdp-ceiling IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4 SECONDS
//!          [stamps|floor|tx-stamp|rx-stamp]
//!   e.g. xdp-ceiling s0 198.18.0.1 02:00:00:00:00:02 198.19.0.0/16 5
//!   (inside the bed's scanner namespace; targets only in 198.18.0.0/15)
//! Prints one JSON line: mode, queues, sent, received, stamped (replies that carried the
//! filter's receive stamp), seconds, sent_pps, received_pps.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asdic_bench::BedArgs;
use asdic_wire::payload::{Key, Stamp};
use asdic_wire::template::{ProbeFields, Template};
use asdic_xdp::{Filter, FilterConfig, Mode};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

const BATCH: usize = 64;
const RING: u32 = 4096;
/// The prebuilt frames' session, identifier and key (asdic's filter checks them).
const SESSION: u32 = 0x5eed_0001;
const IDENT: u16 = 0x4000;
const KEY: (u64, u64) = (1, 2);

/// The unsafe edge: xsk-rs's ring and frame calls. Rule that makes them sound: a descriptor
/// is held by one party at a time — TX frames move between the TX thread's free list, the TX
/// ring and the completion ring; RX frames between the fill ring, the RX ring and the RX
/// thread while it counts them. Each queue has its own UMEM, never shared.
mod xsk {
    use std::io::Write;
    use xsk_rs::config::{Interface, SocketConfig};
    use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

    #[allow(clippy::type_complexity)]
    pub fn socket(
        config: SocketConfig,
        umem: &Umem,
        iface: &Interface,
        queue: u32,
    ) -> Result<(TxQueue, RxQueue, Option<(FillQueue, CompQueue)>), xsk_rs::socket::SocketCreateError>
    {
        // SAFETY: the UMEM is this queue's own, not shared with another socket.
        unsafe { xsk_rs::Socket::new(config, umem, iface, queue) }
    }
    pub fn write(umem: &Umem, desc: &mut FrameDesc, bytes: &[u8]) {
        // SAFETY: `desc` is on the TX thread's free list, out of every ring (module rule).
        let mut data = unsafe { umem.data_mut(desc) };
        let mut c = data.cursor();
        c.set_pos(0);
        c.write_all(bytes).expect("a frame fits");
    }
    /// The bytes of a frame `write` filled, to patch in place.
    pub fn written(umem: &Umem, desc: &mut FrameDesc, f: impl FnOnce(&mut [u8])) {
        // SAFETY: as in `write`: the frame is the TX thread's alone until produced.
        let mut data = unsafe { umem.data_mut(desc) };
        f(data.contents_mut());
    }
    /// The bytes of a received frame.
    pub fn received<R>(umem: &Umem, desc: &FrameDesc, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: `desc` came off the RX ring and is the RX thread's until refilled.
        let data = unsafe { umem.data(desc) };
        f(data.contents())
    }
    pub fn tx_produce(q: &mut TxQueue, descs: &[FrameDesc]) -> usize {
        // SAFETY: free-list TX frames of this queue's UMEM, untouched until completed.
        unsafe { q.produce(descs) }
    }
    pub fn comp_consume(q: &mut CompQueue, descs: &mut [FrameDesc]) -> usize {
        // SAFETY: completed frames return to the TX thread; `descs` are scratch slots.
        unsafe { q.consume(descs) }
    }
    pub fn rx_consume(q: &mut RxQueue, descs: &mut [FrameDesc]) -> usize {
        // SAFETY: received frames belong to the RX thread until refilled; scratch slots.
        unsafe { q.consume(descs) }
    }
    pub fn fill_produce(q: &mut FillQueue, descs: &[FrameDesc]) -> usize {
        // SAFETY: RX frames the RX thread no longer reads.
        unsafe { q.produce(descs) }
    }
    /// Waits up to `ms` for any of `fds` to be readable.
    pub fn poll_in(fds: &mut [libc::pollfd], ms: i32) {
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of that length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }
    /// CLOCK_MONOTONIC into `ts`.
    pub fn monotonic(ts: &mut libc::timespec) {
        // SAFETY: `ts` is a valid, exclusively borrowed timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, ts) };
    }
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("xdp-ceiling: {msg}");
    std::process::exit(2)
}

fn queue_count(iface: &str) -> u32 {
    let dir = std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .unwrap_or_else(|e| die(format!("{iface} queues: {e}")));
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(n.max(1)).expect("few queues")
}

struct Queue {
    txq: TxQueue,
    rxq: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    umem: Umem,
    tx_frames: Vec<FrameDesc>,
    rx_frames: Vec<FrameDesc>,
}

/// Whether the socket failed with EBUSY.
fn busy(e: &xsk_rs::socket::SocketCreateError) -> bool {
    use std::error::Error;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.raw_os_error() == Some(libc::EBUSY))
}

fn open(iface: &str, queue: u32, own_program: bool) -> Queue {
    let size = QueueSize::new(RING).expect("ring size");
    let cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(2048).expect("frame size"))
        .fill_queue_size(size)
        .comp_queue_size(size)
        .build()
        .expect("UMEM config");
    let (umem, mut frames) = Umem::new(cfg, NonZeroU32::new(2 * RING).expect("frames"), false)
        .unwrap_or_else(|e| die(format!("UMEM: {e}")));
    // libxdp loads its own program, which redirects every frame of the queue to the socket
    // (`stamps`, `floor` and `rx-stamp` attach asdic's instead).
    let mut sock = SocketConfig::builder();
    sock.rx_queue_size(size)
        .tx_queue_size(size)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP);
    if own_program {
        sock.libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD);
    }
    let sock = sock.build();
    let name = Interface::new(std::ffi::CString::new(iface).expect("interface name"));
    // libxdp's program of a run that just ended may still be on its way off the interface
    // (EBUSY): a few tries, 100 ms apart.
    let mut tries = 0;
    let (txq, rxq, rings) = loop {
        match xsk::socket(sock, &umem, &name, queue) {
            Ok(s) => break s,
            Err(e) if tries < 10 && busy(&e) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => die(format!("AF_XDP socket on {iface} queue {queue}: {e:?}")),
        }
    };
    let (fq, cq) = rings.unwrap_or_else(|| die("no fill/completion rings"));
    let rx_frames = frames.split_off(RING as usize);
    Queue {
        txq,
        rxq,
        fq,
        cq,
        umem,
        tx_frames: frames,
        rx_frames,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    const USAGE: &str = "usage: xdp-ceiling IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4 SECONDS \
        [stamps|floor|tx-stamp|rx-stamp]";
    // The work done per frame beyond the ceiling's: (mode, send stamp, asdic's program, keyed).
    let (mode, tx_work, rx_work, keyed) = match (args.len(), args.get(6).map(String::as_str)) {
        (6, None) => ("ceiling", false, false, false),
        (7, Some("stamps")) => ("stamps", true, true, false),
        (7, Some("floor")) => ("floor", true, true, true),
        (7, Some("tx-stamp")) => ("tx-stamp", true, false, false),
        (7, Some("rx-stamp")) => ("rx-stamp", false, true, false),
        _ => die(USAGE),
    };
    let bed = BedArgs::parse(&args[1..5]).unwrap_or_else(|e| die(e));
    let iface = &bed.iface;
    let secs: f64 = args[5].parse().unwrap_or_else(|_| die("SECONDS"));
    let hosts = bed.hosts;
    let t = bed.template();
    // One prebuilt frame per target, patched once, before the clock starts.
    let key = Key::new(KEY.0, KEY.1);
    let prebuilt: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..hosts)
            .map(|i| {
                let mut f = vec![0u8; t.len()];
                t.prepare(&mut f).expect("prepare");
                let stamp = Stamp {
                    session: SESSION,
                    n: u64::from(i),
                    cookie: 0,
                    t_send_ns: 0,
                };
                let dst = IpAddr::V4(bed.target(i));
                let fields = ProbeFields::new(&key, dst, 64, IDENT, i as u16, stamp);
                t.patch(&mut f, &fields).expect("patch");
                f
            })
            .collect(),
    );

    let nq = queue_count(iface);
    // asdic's filter, in the driver, with its receive stamp (and keyed check).
    let mut filter = rx_work.then(|| {
        let mut cfg = FilterConfig::new(SESSION, IDENT, 1, bed.src_mac, Some(bed.src), None);
        cfg.mac_key = keyed.then_some(KEY);
        cfg.stamp = true;
        Filter::attach(iface, &cfg, Some(Mode::Native))
            .unwrap_or_else(|e| die(format!("asdic_filter on {iface}: {e}")))
    });
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let stamped = Arc::new(AtomicU64::new(0));
    let mut rx_side = Vec::new();
    let mut senders = Vec::new();
    // Every queue open (libxdp's retries done) before the clock starts.
    let queues: Vec<Queue> = (0..nq).map(|q| open(iface, q, rx_work)).collect();
    let t0 = Instant::now();
    for (q, queue) in (0..nq).zip(queues) {
        let Queue {
            txq,
            rxq,
            mut fq,
            cq,
            umem,
            tx_frames,
            rx_frames,
        } = queue;
        if let Some(f) = filter.as_mut() {
            let fd = std::os::fd::AsRawFd::as_raw_fd(rxq.fd());
            f.register(q, false, fd)
                .unwrap_or_else(|e| die(format!("queue {q}: {e}")));
        }
        assert_eq!(xsk::fill_produce(&mut fq, &rx_frames), rx_frames.len());
        rx_side.push((rxq, fq, umem.clone()));
        let core = cores.get(q as usize % cores.len().max(1)).copied();
        let (prebuilt, sent) = (prebuilt.clone(), sent.clone());
        let offset = (q as usize * prebuilt.len()) / nq as usize;
        let work = tx_work.then(|| SendStamp {
            key,
            keyed,
            template: t.clone(),
            base: bed.base,
            hosts: hosts as usize,
        });
        if let Some(w) = &work {
            w.check(&prebuilt[0]);
        }
        senders.push(std::thread::spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            send_loop(
                txq,
                cq,
                &umem,
                tx_frames,
                &prebuilt,
                work.as_ref(),
                offset,
                secs,
                &sent,
            );
        }));
    }
    let rx = {
        let (stop, received) = (stop.clone(), received.clone());
        // Only frames from asdic's program are looked into (the ceiling's are only counted).
        let stamped = rx_work.then_some(stamped.clone());
        std::thread::spawn(move || count_loop(rx_side, &stop, &received, stamped.as_deref()))
    };
    for s in senders {
        s.join().expect("sender");
    }
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    rx.join().expect("counter");
    let (sent, got, stamped) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
        stamped.load(Ordering::Relaxed),
    );
    if let Some(f) = &filter {
        let st = f.stats();
        if st.forged > 0 {
            die(format!("the filter found {} forged replies", st.forged));
        }
    }
    println!(
        "{{\"mode\":\"{mode}\",\"queues\":{nq},\"sent\":{sent},\"received\":{got},\"stamped\":{stamped},\"seconds\":{elapsed:.3},\"sent_pps\":{:.0},\"received_pps\":{:.0}}}",
        sent as f64 / elapsed,
        got as f64 / elapsed
    );
}

/// The send side of `stamps`, `floor` and `tx-stamp`: the send stamp (and its MAC), patched
/// into a prebuilt frame.
struct SendStamp {
    key: Key,
    keyed: bool,
    template: Template,
    base: u32,
    hosts: usize,
}

/// Where the prebuilt IPv4 Ethernet frame holds its ICMP checksum and its stamp's send time.
const ICMP_CHECKSUM: std::ops::Range<usize> = 36..38;
const T_SEND: std::ops::Range<usize> = 58..66;

impl SendStamp {
    /// Stamps frame `i` (already written) with the time now, as asdic stamps a tracked
    /// probe: CLOCK_MONOTONIC right before the frame goes on the ring.
    #[inline]
    fn stamp(&self, frame: &mut [u8], i: usize) {
        if !self.keyed {
            // The send time in place of the prebuilt frame's 0, the checksum updated.
            let t = monotonic_ns().to_be_bytes();
            let hc = u16::from_be_bytes([frame[ICMP_CHECKSUM][0], frame[ICMP_CHECKSUM][1]]);
            let hc = asdic_wire::checksum::update(hc, &[0; 8], &t);
            frame[T_SEND].copy_from_slice(&t);
            frame[ICMP_CHECKSUM].copy_from_slice(&hc.to_be_bytes());
            return;
        }
        let i = i % self.hosts;
        let dst = IpAddr::V4(std::net::Ipv4Addr::from(self.base + i as u32));
        let stamp = Stamp {
            session: SESSION,
            n: i as u64,
            cookie: 0,
            t_send_ns: monotonic_ns(),
        };
        let fields = ProbeFields::new(&self.key, dst, 64, IDENT, i as u16, stamp);
        self.template.patch(frame, &fields).expect("patch");
    }

    /// Dies unless stamping `frame` (a copy) gives a valid echo request carrying the stamp:
    /// the fixed offsets above are the template's.
    fn check(&self, frame: &[u8]) {
        let mut f = frame.to_vec();
        let before = monotonic_ns();
        self.stamp(&mut f, 0);
        let icmp = &f[ICMP_CHECKSUM.start - 2..];
        let (stamp, _) = asdic_wire::payload::parse(&icmp[8..]).expect("a payload");
        if asdic_wire::checksum::checksum(icmp) != 0 || stamp.t_send_ns < before {
            die("the stamped frame is not the template's: check ICMP_CHECKSUM and T_SEND");
        }
    }
}

/// CLOCK_MONOTONIC in ns (through the vDSO, as asdic reads it).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    xsk::monotonic(&mut ts);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends batches of 64 prebuilt frames (stamped per frame by `work`, if given) until
/// `secs` have passed, then waits for the completion ring to hand every frame back (so
/// `sent` counts frames the kernel took).
#[allow(clippy::too_many_arguments)]
fn send_loop(
    mut txq: TxQueue,
    mut cq: CompQueue,
    umem: &Umem,
    mut free: Vec<FrameDesc>,
    prebuilt: &[Vec<u8>],
    work: Option<&SendStamp>,
    mut next: usize,
    secs: f64,
    sent: &AtomicU64,
) {
    let total = free.len();
    let mut done = vec![FrameDesc::default(); BATCH * 4];
    let mut batch: Vec<FrameDesc> = Vec::with_capacity(BATCH);
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut rounds = 0u32;
    loop {
        let k = xsk::comp_consume(&mut cq, &mut done);
        free.extend_from_slice(&done[..k]);
        n += k as u64;
        rounds = rounds.wrapping_add(1);
        let over = rounds.is_multiple_of(64) && t0.elapsed().as_secs_f64() >= secs;
        if over {
            break;
        }
        if free.len() >= BATCH {
            batch.clear();
            for _ in 0..BATCH {
                let mut d = free.pop().expect("free frame");
                xsk::write(umem, &mut d, &prebuilt[next % prebuilt.len()]);
                if let Some(w) = work {
                    xsk::written(umem, &mut d, |f| w.stamp(f, next));
                }
                next += 1;
                batch.push(d);
            }
            let put = xsk::tx_produce(&mut txq, &batch);
            if put == 0 {
                free.extend_from_slice(&batch);
            }
        }
        if txq.needs_wakeup() {
            let _ = txq.wakeup();
        }
    }
    // Drain: every frame handed to the ring comes back through the completion ring.
    let deadline = Instant::now() + Duration::from_secs(1);
    while free.len() < total && Instant::now() < deadline {
        if txq.needs_wakeup() {
            let _ = txq.wakeup();
        }
        let k = xsk::comp_consume(&mut cq, &mut done);
        free.extend_from_slice(&done[..k]);
        n += k as u64;
    }
    sent.fetch_add(n, Ordering::Relaxed);
}

/// Counts the frames on every queue's RX ring (and, given `stamped`, those that carry asdic's
/// filter's receive stamp) and gives them straight back to its fill ring;
/// watches the empty rings for 50 µs after the last frame, then sleeps in poll(2). (A
/// reader asleep in poll(2) costs the receiving CPU a wakeup per frame in copy mode: with
/// it, this ceiling read below asdic's `--batch 64`, whose receiver watches its ring too.)
fn count_loop(
    mut queues: Vec<(RxQueue, FillQueue, Umem)>,
    stop: &AtomicBool,
    received: &AtomicU64,
    stamped: Option<&AtomicU64>,
) {
    let mut descs = vec![FrameDesc::default(); BATCH];
    let mut fds: Vec<libc::pollfd> = queues
        .iter()
        .map(|(rxq, ..)| libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(rxq.fd()),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let (mut n, mut with_stamp) = (0u64, 0u64);
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut any = false;
        for (rxq, fq, umem) in &mut queues {
            let k = xsk::rx_consume(rxq, &mut descs);
            if k > 0 {
                any = true;
                n += k as u64;
                if stamped.is_some() {
                    for d in &descs[..k] {
                        let has =
                            xsk::received(umem, d, |b| asdic_xdp::filter::rx_stamp(b).is_some());
                        with_stamp += u64::from(has);
                    }
                }
                while xsk::fill_produce(fq, &descs[..k]) == 0 {}
                if fq.needs_wakeup() {
                    let _ = fq.wakeup(rxq.fd_mut(), 0);
                }
            }
        }
        if any {
            last = Instant::now();
        } else if last.elapsed() < Duration::from_micros(50) {
            std::hint::spin_loop();
        } else {
            xsk::poll_in(&mut fds, 10);
        }
    }
    received.fetch_add(n, Ordering::Relaxed);
    if let Some(s) = stamped {
        s.fetch_add(with_stamp, Ordering::Relaxed);
    }
}
