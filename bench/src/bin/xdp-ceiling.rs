//! The speed bed's ceiling: a minimal AF_XDP sender of its own, independent of asdic's engine
//! (its own UMEM and rings per queue through xsk-rs, libxdp's own redirect program, no
//! pacing, stamps, table or matching). Prebuilt Ethernet frames go out in batches of 64 from
//! one thread per queue (pinned to core `queue % cores`); one more thread counts replies off
//! every RX ring and hands the frames straight back to the fill ring. What asdic's XDP engine
//! sends less than this is asdic's own cost.
//!
//! usage: xdp-ceiling IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4 SECONDS
//!   e.g. xdp-ceiling s0 198.18.0.1 02:00:00:00:00:02 198.19.0.0/16 5
//!   (inside the bed's scanner namespace; targets only in 198.18.0.0/15)
//! Prints one JSON line: queues, sent, received, seconds, sent_pps, received_pps.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asdic_bench::BedArgs;
use asdic_wire::payload::{Key, Stamp};
use asdic_wire::template::ProbeFields;
use xsk_rs::config::{BindFlags, FrameSize, Interface, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

const BATCH: usize = 64;
const RING: u32 = 4096;

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

fn open(iface: &str, queue: u32) -> Queue {
    let size = QueueSize::new(RING).expect("ring size");
    let cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(2048).expect("frame size"))
        .fill_queue_size(size)
        .comp_queue_size(size)
        .build()
        .expect("UMEM config");
    let (umem, mut frames) = Umem::new(cfg, NonZeroU32::new(2 * RING).expect("frames"), false)
        .unwrap_or_else(|e| die(format!("UMEM: {e}")));
    // libxdp loads its own program, which redirects every frame of the queue to the socket.
    let sock = SocketConfig::builder()
        .rx_queue_size(size)
        .tx_queue_size(size)
        .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    let name = Interface::new(std::ffi::CString::new(iface).expect("interface name"));
    let (txq, rxq, rings) = xsk::socket(sock, &umem, &name, queue)
        .unwrap_or_else(|e| die(format!("AF_XDP socket on {iface} queue {queue}: {e:?}")));
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
    if args.len() != 6 {
        die("usage: xdp-ceiling IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4 SECONDS");
    }
    let bed = BedArgs::parse(&args[1..5]).unwrap_or_else(|e| die(e));
    let iface = &bed.iface;
    let secs: f64 = args[5].parse().unwrap_or_else(|_| die("SECONDS"));
    let hosts = bed.hosts;
    let t = bed.template();
    // One prebuilt frame per target, patched once, before the clock starts.
    let key = Key::new(1, 2);
    let prebuilt: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..hosts)
            .map(|i| {
                let mut f = vec![0u8; t.len()];
                t.prepare(&mut f).expect("prepare");
                let stamp = Stamp {
                    session: 0x5eed_0001,
                    n: u64::from(i),
                    cookie: 0,
                    t_send_ns: 0,
                };
                let dst = IpAddr::V4(bed.target(i));
                let fields = ProbeFields::new(&key, dst, 64, 0x4000, i as u16, stamp);
                t.patch(&mut f, &fields).expect("patch");
                f
            })
            .collect(),
    );

    let nq = queue_count(iface);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut rx_side = Vec::new();
    let mut senders = Vec::new();
    let t0 = Instant::now();
    for q in 0..nq {
        let Queue {
            txq,
            rxq,
            mut fq,
            cq,
            umem,
            tx_frames,
            rx_frames,
        } = open(iface, q);
        assert_eq!(xsk::fill_produce(&mut fq, &rx_frames), rx_frames.len());
        rx_side.push((rxq, fq));
        let core = cores.get(q as usize % cores.len().max(1)).copied();
        let (prebuilt, sent) = (prebuilt.clone(), sent.clone());
        let offset = (q as usize * prebuilt.len()) / nq as usize;
        senders.push(std::thread::spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            send_loop(txq, cq, &umem, tx_frames, &prebuilt, offset, secs, &sent);
        }));
    }
    let rx = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || count_loop(rx_side, &stop, &received))
    };
    for s in senders {
        s.join().expect("sender");
    }
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    rx.join().expect("counter");
    let (sent, got) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    println!(
        "{{\"queues\":{nq},\"sent\":{sent},\"received\":{got},\"seconds\":{elapsed:.3},\"sent_pps\":{:.0},\"received_pps\":{:.0}}}",
        sent as f64 / elapsed,
        got as f64 / elapsed
    );
}

/// Sends batches of 64 prebuilt frames until `secs` have passed, then waits for the
/// completion ring to hand every frame back (so `sent` counts frames the kernel took).
#[allow(clippy::too_many_arguments)]
fn send_loop(
    mut txq: TxQueue,
    mut cq: CompQueue,
    umem: &Umem,
    mut free: Vec<FrameDesc>,
    prebuilt: &[Vec<u8>],
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

/// Counts the frames on every queue's RX ring and gives them straight back to its fill ring;
/// watches the empty rings for 50 µs after the last frame, then sleeps in poll(2). (A
/// reader asleep in poll(2) costs the receiving CPU a wakeup per frame in copy mode: with
/// it, this ceiling read below asdic's `--batch 64`, whose receiver watches its ring too.)
fn count_loop(mut queues: Vec<(RxQueue, FillQueue)>, stop: &AtomicBool, received: &AtomicU64) {
    let mut descs = vec![FrameDesc::default(); BATCH];
    let mut fds: Vec<libc::pollfd> = queues
        .iter()
        .map(|(rxq, ..)| libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(rxq.fd()),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut n = 0u64;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut any = false;
        for (rxq, fq) in &mut queues {
            let k = xsk::rx_consume(rxq, &mut descs);
            if k > 0 {
                any = true;
                n += k as u64;
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
}
