//! Which AF_XDP send stamp is closest to the wire: the user-space clock read right before the
//! call that hands frames to the kernel, or the kernel's own completion stamp through AF_XDP
//! TX metadata (`XDP_TXMD_FLAGS_TIMESTAMP`, software stamps in copy mode since Linux 6.8).
//!
//! A TX-only AF_XDP socket of its own (raw syscalls: xsk-rs 0.11 and libxdp 1.6 cannot
//! register a UMEM with `tx_metadata_len`), copy mode, sends FRAMES echo requests to the
//! targets of PREFIX_V4 in calls of BATCH frames at RATE frames/s, each frame asking for its
//! completion stamp. Prints one line per frame: `target seq user_ns txmd_ns`, both on
//! CLOCK_REALTIME (the kernel's CLOCK_TAI stamp moved by the TAI−REALTIME offset read at the
//! start), to join with a capture of the link (bench/xdp-txstamp.sh).
//!
//! usage: xdp-txstamp IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4 FRAMES BATCH RATE
//! (inside a bed's scanner namespace; targets only in 198.18.0.0/15)

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use asdic_bench::BedArgs;
use asdic_wire::payload::{Key, Stamp};
use asdic_wire::template::ProbeFields;

const CHUNK: usize = 4096;
/// Room for `struct xsk_tx_metadata` (24 bytes since Linux 6.15), a multiple of 8.
const META: usize = 32;
const RING: u32 = 2048;

/// The raw AF_XDP edge: socket, UMEM registration, ring mappings, ring accesses. Sound
/// because the UMEM and the rings are mapped for the whole run and only this thread touches
/// them; a frame is written only while it is out of the TX ring (not yet produced, or back
/// through the completion ring), and the kernel writes its completion stamp before it puts
/// the frame on the completion ring (read with acquire ordering on the producer index).
mod xsk {
    use std::io::{Error, Result};
    use std::sync::atomic::{AtomicU32, Ordering};

    const AF_XDP: libc::c_int = 44;
    const SOL_XDP: libc::c_int = 283;
    const XDP_MMAP_OFFSETS: libc::c_int = 1;
    const XDP_TX_RING: libc::c_int = 3;
    const XDP_UMEM_REG: libc::c_int = 4;
    const XDP_UMEM_FILL_RING: libc::c_int = 5;
    const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
    const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
    const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;
    const XDP_COPY: u16 = 1 << 1;
    const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
    const XDP_UMEM_TX_METADATA_LEN: u32 = 1 << 2;
    const XDP_RING_NEED_WAKEUP: u32 = 1;
    pub const XDP_TX_METADATA: u32 = 1 << 1;
    pub const XDP_TXMD_FLAGS_TIMESTAMP: u64 = 1;

    #[repr(C)]
    struct UmemReg {
        addr: u64,
        len: u64,
        chunk_size: u32,
        headroom: u32,
        flags: u32,
        tx_metadata_len: u32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct RingOffset {
        producer: u64,
        consumer: u64,
        desc: u64,
        flags: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct MmapOffsets {
        rx: RingOffset,
        tx: RingOffset,
        fr: RingOffset,
        cr: RingOffset,
    }
    #[repr(C)]
    struct SockaddrXdp {
        family: u16,
        flags: u16,
        ifindex: u32,
        queue_id: u32,
        shared_umem_fd: u32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Desc {
        pub addr: u64,
        pub len: u32,
        pub options: u32,
    }

    struct Ring {
        base: *mut u8,
        len: usize,
        off: RingOffset,
        size: u32,
    }

    impl Ring {
        fn index(&self, at: u64) -> &AtomicU32 {
            // SAFETY: `at` is a ring offset the kernel reported (producer/consumer), inside
            // the mapping, 4-byte aligned; the kernel updates it atomically.
            unsafe { &*self.base.add(at as usize).cast::<AtomicU32>() }
        }
        fn flags(&self) -> u32 {
            self.index(self.off.flags).load(Ordering::Relaxed)
        }
    }

    impl Drop for Ring {
        fn drop(&mut self) {
            // SAFETY: the mapping this ring made, unmapped once.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }

    /// A copy-mode, TX-only AF_XDP socket with its UMEM and its TX and completion rings.
    pub struct Socket {
        fd: libc::c_int,
        umem: *mut u8,
        umem_len: usize,
        tx: Ring,
        cr: Ring,
        tx_prod: u32,
        cr_cons: u32,
    }

    fn check(r: libc::c_int, what: &str) -> Result<()> {
        if r < 0 {
            let e = Error::last_os_error();
            return Err(Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(())
    }

    fn setopt<T>(fd: libc::c_int, opt: libc::c_int, v: &T, what: &str) -> Result<()> {
        // SAFETY: `v` is a valid value of the option's type and size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                SOL_XDP,
                opt,
                std::ptr::from_ref(v).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        check(r, what)
    }

    fn map(fd: libc::c_int, len: usize, pgoff: libc::off_t, what: &str) -> Result<*mut u8> {
        // SAFETY: a fresh shared mapping of the socket's ring; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::new(
                Error::last_os_error().kind(),
                format!("{what}: {}", Error::last_os_error()),
            ));
        }
        Ok(p.cast())
    }

    impl Socket {
        /// Binds to `ifindex`/`queue` over a UMEM of `frames` chunks of `chunk` bytes whose
        /// frames carry `meta` bytes of TX metadata in front of their packets.
        pub fn open(
            ifindex: u32,
            queue: u32,
            frames: u32,
            chunk: usize,
            meta: u32,
        ) -> Result<Socket> {
            // SAFETY: plain socket(2).
            let fd = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            check(fd, "socket(AF_XDP)")?;
            let umem_len = frames as usize * chunk;
            // SAFETY: a fresh private anonymous mapping; checked below.
            let umem = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    umem_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                    -1,
                    0,
                )
            };
            if umem == libc::MAP_FAILED {
                return Err(Error::last_os_error());
            }
            let reg = UmemReg {
                addr: umem as u64,
                len: umem_len as u64,
                chunk_size: chunk as u32,
                headroom: 0,
                flags: XDP_UMEM_TX_METADATA_LEN,
                tx_metadata_len: meta,
            };
            setopt(fd, XDP_UMEM_REG, &reg, "XDP_UMEM_REG with tx_metadata_len")?;
            setopt(fd, XDP_UMEM_FILL_RING, &RING_ONE, "fill ring")?;
            setopt(fd, XDP_UMEM_COMPLETION_RING, &frames, "completion ring")?;
            setopt(fd, XDP_TX_RING, &frames, "TX ring")?;
            let mut off = MmapOffsets::default();
            let mut len = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
            // SAFETY: `off` has the kernel's struct xdp_mmap_offsets layout and `len` its size.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    SOL_XDP,
                    XDP_MMAP_OFFSETS,
                    std::ptr::from_mut(&mut off).cast(),
                    &mut len,
                )
            };
            check(r, "XDP_MMAP_OFFSETS")?;
            let tx_len = off.tx.desc as usize + frames as usize * std::mem::size_of::<Desc>();
            let tx = Ring {
                base: map(fd, tx_len, XDP_PGOFF_TX_RING, "TX ring mmap")?,
                len: tx_len,
                off: off.tx,
                size: frames,
            };
            let cr_len = off.cr.desc as usize + frames as usize * 8;
            let cr = Ring {
                base: map(
                    fd,
                    cr_len,
                    XDP_UMEM_PGOFF_COMPLETION_RING,
                    "completion ring mmap",
                )?,
                len: cr_len,
                off: off.cr,
                size: frames,
            };
            let sa = SockaddrXdp {
                family: AF_XDP as u16,
                flags: XDP_COPY | XDP_USE_NEED_WAKEUP,
                ifindex,
                queue_id: queue,
                shared_umem_fd: 0,
            };
            // SAFETY: `sa` is a struct sockaddr_xdp of the size given.
            let r = unsafe {
                libc::bind(
                    fd,
                    std::ptr::from_ref(&sa).cast(),
                    std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            check(r, "bind")?;
            let tx_prod = tx.index(tx.off.producer).load(Ordering::Relaxed);
            let cr_cons = cr.index(cr.off.consumer).load(Ordering::Relaxed);
            Ok(Socket {
                fd,
                umem: umem.cast(),
                umem_len,
                tx,
                cr,
                tx_prod,
                cr_cons,
            })
        }

        /// The bytes of the UMEM at `addr..addr + len`.
        pub fn bytes(&mut self, addr: u64, len: usize) -> &mut [u8] {
            assert!(addr as usize + len <= self.umem_len, "inside the UMEM");
            // SAFETY: inside the mapping (checked); the caller writes only frames out of
            // the TX ring, or reads completion stamps of frames back from it (module rule).
            unsafe { std::slice::from_raw_parts_mut(self.umem.add(addr as usize), len) }
        }

        /// Puts `descs` on the TX ring (the caller keeps fewer than the ring's size out).
        pub fn produce(&mut self, descs: &[Desc]) {
            for d in descs {
                let i = (self.tx_prod & (self.tx.size - 1)) as usize;
                // SAFETY: slot `i` of the descriptor array, inside the mapping; the kernel
                // reads it only after the producer index below passes it.
                unsafe {
                    self.tx
                        .base
                        .add(self.tx.off.desc as usize)
                        .cast::<Desc>()
                        .add(i)
                        .write(*d);
                }
                self.tx_prod = self.tx_prod.wrapping_add(1);
            }
            self.tx
                .index(self.tx.off.producer)
                .store(self.tx_prod, Ordering::Release);
        }

        /// Asks the kernel to transmit what is on the TX ring (copy mode: it does, inside
        /// this call, a bounded number of frames per call).
        pub fn kick(&self) {
            if self.tx.flags() & XDP_RING_NEED_WAKEUP != 0 {
                // SAFETY: sendto(2) with no data, the AF_XDP wakeup.
                unsafe {
                    libc::sendto(
                        self.fd,
                        std::ptr::null(),
                        0,
                        libc::MSG_DONTWAIT,
                        std::ptr::null(),
                        0,
                    )
                };
            }
        }

        /// Frames on the TX ring the kernel has not yet taken.
        pub fn pending(&self) -> u32 {
            self.tx_prod
                .wrapping_sub(self.tx.index(self.tx.off.consumer).load(Ordering::Acquire))
        }

        /// Takes completed frames' addresses off the completion ring.
        pub fn complete(&mut self, out: &mut Vec<u64>) {
            let prod = self.cr.index(self.cr.off.producer).load(Ordering::Acquire);
            while self.cr_cons != prod {
                let i = (self.cr_cons & (self.cr.size - 1)) as usize;
                // SAFETY: slot `i` of the completion ring's address array, below the producer.
                let a = unsafe {
                    self.cr
                        .base
                        .add(self.cr.off.desc as usize)
                        .cast::<u64>()
                        .add(i)
                        .read()
                };
                out.push(a);
                self.cr_cons = self.cr_cons.wrapping_add(1);
            }
            self.cr
                .index(self.cr.off.consumer)
                .store(self.cr_cons, Ordering::Release);
        }
    }

    const RING_ONE: u32 = 64;

    impl Drop for Socket {
        fn drop(&mut self) {
            // SAFETY: the socket and the UMEM mapping this value made, released once; the
            // rings' mappings are fields, unmapped right after this body.
            unsafe {
                libc::close(self.fd);
                libc::munmap(self.umem.cast(), self.umem_len);
            }
        }
    }
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("xdp-txstamp: {msg}");
    std::process::exit(2)
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 8 {
        die("usage: xdp-txstamp IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4 FRAMES BATCH RATE");
    }
    let bed = BedArgs::parse(&a[1..5]).unwrap_or_else(|e| die(e));
    let iface = &bed.iface;
    let frames: u32 = a[5].parse().unwrap_or_else(|_| die("FRAMES"));
    let batch: usize = a[6].parse().unwrap_or_else(|_| die("BATCH"));
    let rate: f64 = a[7].parse().unwrap_or_else(|_| die("RATE"));
    if batch == 0 || batch > RING as usize / 2 || rate <= 0.0 {
        die("BATCH 1..1024, RATE > 0");
    }
    let name = std::ffi::CString::new(iface.as_str()).expect("name");
    // SAFETY: a NUL-terminated interface name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        die(format!("no interface {iface}"));
    }
    let t = bed.template();
    let mut sock = xsk::Socket::open(ifindex, 0, RING, CHUNK, META as u32)
        .unwrap_or_else(|e| die(format!("AF_XDP on {iface}: {e}")));
    let tai_minus_real = clock(libc::CLOCK_TAI) as i64 - clock(libc::CLOCK_REALTIME) as i64;

    let key = Key::new(3, 4);
    let mut free: Vec<u64> = (0..u64::from(RING)).map(|i| i * CHUNK as u64).collect();
    let mut user = vec![0u64; RING as usize];
    let mut target = vec![0u32; RING as usize];
    let mut seqs = vec![0u16; RING as usize];
    let mut done = Vec::new();
    let mut descs = Vec::with_capacity(batch);
    let mut out = String::new();
    let (mut sent, mut completed) = (0u32, 0u32);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(f64::from(frames) / rate + 5.0);
    while completed < frames && Instant::now() < deadline {
        // Pace: frame k goes at k / rate.
        let due = ((t0.elapsed().as_secs_f64() * rate) as u32).min(frames);
        if sent < due && free.len() >= batch {
            descs.clear();
            let n = (batch as u32).min(frames - sent) as usize;
            for _ in 0..n {
                let chunk = free.pop().expect("a free frame");
                let i = sent + descs.len() as u32;
                let dst = bed.target(i);
                let slot = (chunk / CHUNK as u64) as usize;
                target[slot] = u32::from(dst);
                seqs[slot] = i as u16;
                let stamp = Stamp {
                    session: 0x7eed_0001,
                    n: u64::from(i),
                    cookie: 0,
                    t_send_ns: 0,
                };
                let f = sock.bytes(chunk, META + t.len());
                let (meta, pkt) = f.split_at_mut(META);
                meta.fill(0);
                meta[..8].copy_from_slice(&xsk::XDP_TXMD_FLAGS_TIMESTAMP.to_ne_bytes());
                t.prepare(pkt).expect("prepare");
                let fields = ProbeFields::new(&key, IpAddr::V4(dst), 64, 0x5000, i as u16, stamp);
                t.patch(pkt, &fields).expect("patch");
                descs.push(xsk::Desc {
                    addr: chunk + META as u64,
                    len: t.len() as u32,
                    options: xsk::XDP_TX_METADATA,
                });
            }
            let now = clock(libc::CLOCK_REALTIME);
            for d in &descs {
                user[((d.addr - META as u64) / CHUNK as u64) as usize] = now;
            }
            sock.produce(&descs);
            sent += n as u32;
            // Copy mode sends a bounded number per call: call again while it makes progress.
            for _ in 0..64 {
                let before = sock.pending();
                if before == 0 {
                    break;
                }
                sock.kick();
                if sock.pending() >= before {
                    break;
                }
            }
        } else if sent < frames {
            // Between frames, leave the CPU to whatever the kernel deferred (the link's
            // receive work may run in this CPU's ksoftirqd).
            std::thread::yield_now();
        }
        done.clear();
        sock.complete(&mut done);
        for &addr in &done {
            let chunk = addr - addr % CHUNK as u64;
            let slot = (chunk / CHUNK as u64) as usize;
            let meta = sock.bytes(chunk, 16);
            let txmd = u64::from_ne_bytes(meta[8..16].try_into().expect("8 bytes"));
            let txmd_real = if txmd == 0 {
                0
            } else {
                (txmd as i64 - tai_minus_real) as u64
            };
            use std::fmt::Write;
            let _ = writeln!(
                out,
                "{} {} {} {}",
                Ipv4Addr::from(target[slot]),
                seqs[slot],
                user[slot],
                txmd_real
            );
            free.push(chunk);
            completed += 1;
        }
    }
    print!("{out}");
    eprintln!("xdp-txstamp: {sent} sent, {completed} completed, TAI-REALTIME {tai_minus_real} ns");
}
