//! A far end whose round-trip times spread: answers the IPv4 echo requests it reads, each
//! after a delay of its own, so that a bed's wire RTTs take thousands of distinct values
//! instead of lying within a microsecond of each other (the routed bed's kernel answers at
//! once). The delay of a request is a hash of its target, identifier and sequence, uniform in
//! 0..MAX_DELAY_US µs; scheduling jitter adds to it, and all of it lies inside the wire RTT
//! the router captures, so a prober's RTT minus the wire's is untouched.
//!
//! Run it in a routed bed's far namespace with the kernel's own echo replies off
//! (`sysctl net.ipv4.icmp_echo_ignore_all=1` there; bench/rtt-truth.sh SPREAD_US=N does
//! both). Requests the bed's rules drop (dead hosts) never reach it. Replies go out through an
//! `IPPROTO_RAW` socket with the request's addresses swapped. It answers only targets in
//! 198.18.0.0/15 and ends after SECONDS (or on SIGTERM / SIGINT), printing what it answered.
//!
//! usage: delay-responder MAX_DELAY_US SECONDS

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Requests read per `recvmmsg`.
const BATCH: usize = 64;
/// Largest request kept (IP header and ICMP message); longer ones are not answered.
const MAX_LEN: usize = 1500;
/// Replies waiting at most: beyond, requests are left unanswered (and counted).
const MAX_WAITING: usize = 1 << 16;

/// The kernel edge: two raw sockets, `recvmmsg` into owned buffers, `sendto` of a reply.
mod net {
    use std::io::{Error, Result};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub struct Sockets {
        icmp: OwnedFd,
        out: OwnedFd,
    }

    fn socket(proto: libc::c_int) -> Result<OwnedFd> {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned from here on.
        let fd =
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto) };
        if fd < 0 {
            return Err(Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    impl Sockets {
        pub fn open() -> Result<Sockets> {
            let icmp = socket(libc::IPPROTO_ICMP)?;
            // Room for the bursts of a full-speed prober (the default buffer drops them).
            let rcvbuf: libc::c_int = 32 << 20;
            // SAFETY: setsockopt with a live int of the length given.
            let r = unsafe {
                libc::setsockopt(
                    icmp.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&rcvbuf as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(Error::last_os_error());
            }
            Ok(Sockets {
                icmp,
                // IPPROTO_RAW: the IP header is ours (the kernel fills its checksum, total
                // length and identification).
                out: socket(libc::IPPROTO_RAW)?,
            })
        }

        /// Waits up to `ns` for a request (ppoll(2)).
        pub fn wait(&self, ns: u64) {
            let mut p = libc::pollfd {
                fd: self.icmp.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ts = libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            };
            // SAFETY: one valid pollfd and a timespec, live for the call; no signal mask.
            unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
        }

        /// Reads up to `bufs.len()` packets without waiting; their lengths go to `lens`.
        pub fn recv(&self, bufs: &mut [[u8; super::MAX_LEN]], lens: &mut [usize]) -> usize {
            let n = bufs.len().min(lens.len());
            let mut iov: Vec<libc::iovec> = bufs[..n]
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: all-zero mmsghdrs are valid; each gets one iovec below.
            let mut hdrs: Vec<libc::mmsghdr> =
                (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `hdrs` and the buffers their iovecs point to are live and unaliased
            // during the call; the kernel writes at most each iovec's length.
            let r = unsafe {
                libc::recvmmsg(
                    self.icmp.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r <= 0 {
                return 0;
            }
            for (l, h) in lens.iter_mut().zip(&hdrs[..r as usize]) {
                *l = h.msg_len as usize;
            }
            r as usize
        }

        /// Sends `pkt` (an IPv4 packet, header ours) to `dst`.
        pub fn send(&self, pkt: &[u8], dst: [u8; 4]) -> bool {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `pkt` and `sa` are live for the call; the kernel only reads them.
            let r = unsafe {
                libc::sendto(
                    self.out.as_raw_fd(),
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            r == pkt.len() as isize
        }
    }
}

/// The reply to an IPv4 echo request `p` (whole packet), made in place: addresses swapped,
/// TTL 64, type 0 with its checksum adjusted; `None` for anything else or a target outside
/// the benchmarking range. Returns the reply's destination.
fn make_reply(p: &mut [u8]) -> Option<[u8; 4]> {
    let ihl = usize::from(*p.first()? & 15) * 4;
    if p.len() < ihl + 8 || ihl < 20 || p[0] >> 4 != 4 || p[9] != 1 || p[ihl] != 8 {
        return None;
    }
    let (src, dst): ([u8; 4], [u8; 4]) = (p[12..16].try_into().ok()?, p[16..20].try_into().ok()?);
    if !(dst[0] == 198 && (dst[1] == 18 || dst[1] == 19)) {
        return None;
    }
    p[12..16].copy_from_slice(&dst);
    p[16..20].copy_from_slice(&src);
    p[8] = 64;
    asdic_wire::icmp::answer_echo(&mut p[ihl..], asdic_wire::Family::V4).ok()?;
    Some(src)
}

/// The delay of a request (ns): a hash of its target, identifier and sequence, uniform in
/// 0..max_ns.
fn delay_ns(p: &[u8], max_ns: u64) -> u64 {
    let ihl = usize::from(p[0] & 15) * 4;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in p[16..20].iter().chain(&p[ihl + 4..ihl + 8]) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    if max_ns == 0 { 0 } else { h % max_ns }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(max_us), Some(secs)) = (
        args.first().and_then(|a| a.parse::<u64>().ok()),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: delay-responder MAX_DELAY_US SECONDS");
        std::process::exit(2);
    };
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let s = net::Sockets::open().unwrap_or_else(|e| {
        eprintln!("delay-responder: raw sockets: {e}");
        std::process::exit(1)
    });
    let max_ns = max_us * 1000;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let mut bufs = vec![[0u8; MAX_LEN]; BATCH];
    let mut lens = [0usize; BATCH];
    // Waiting replies: (due, slot); slots hold the packets.
    let mut slots: Vec<Vec<u8>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut due: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let (mut answered, mut refused, mut overflow, mut late_ns_max) = (0u64, 0u64, 0u64, 0u64);
    let now_ns = |t0: Instant| t0.elapsed().as_nanos() as u64;
    while Instant::now() < end && !STOP.load(std::sync::atomic::Ordering::Relaxed) {
        let n = s.recv(&mut bufs, &mut lens);
        let now = now_ns(t0);
        for i in 0..n {
            let p = &mut bufs[i][..lens[i]];
            if make_reply(p).is_none() {
                continue;
            }
            if due.len() >= MAX_WAITING {
                overflow += 1;
                continue;
            }
            let slot = free.pop().unwrap_or_else(|| {
                slots.push(Vec::with_capacity(MAX_LEN));
                slots.len() - 1
            });
            slots[slot].clear();
            slots[slot].extend_from_slice(p);
            due.push(Reverse((now + delay_ns(p, max_ns), slot)));
        }
        let now = now_ns(t0);
        while let Some(&Reverse((at, slot))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            let pkt = &slots[slot];
            let dst = [pkt[16], pkt[17], pkt[18], pkt[19]];
            if s.send(pkt, dst) {
                answered += 1;
            } else {
                refused += 1;
            }
            late_ns_max = late_ns_max.max(now - at);
            free.push(slot);
        }
        if n == 0 {
            // Sleep until the next reply is due (or a request comes), waking a little early.
            match due.peek() {
                None => s.wait(10_000_000),
                Some(&Reverse((at, _))) => {
                    let left = at.saturating_sub(now_ns(t0));
                    if left > 30_000 {
                        s.wait(left - 20_000);
                    }
                }
            }
        }
    }
    println!(
        "{{\"answered\":{answered},\"refused\":{refused},\"overflow\":{overflow},\"late_us_max\":{}}}",
        late_ns_max / 1000
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dst: [u8; 4], seq: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 36, 0, 0, 0, 0, 63, 1, 0, 0, 198, 18, 0, 1];
        p.extend_from_slice(&dst);
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
        icmp.extend_from_slice(&seq.to_be_bytes());
        icmp.extend_from_slice(b"payload!");
        let sum = asdic_wire::checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&icmp);
        p
    }

    #[test]
    fn a_reply_swaps_the_addresses_and_keeps_a_valid_checksum() {
        let mut p = request([198, 19, 0, 7], 3);
        assert_eq!(make_reply(&mut p), Some([198, 18, 0, 1]));
        assert_eq!(&p[12..20], &[198, 19, 0, 7, 198, 18, 0, 1]);
        assert_eq!(p[20], 0);
        assert_eq!(asdic_wire::checksum::checksum(&p[20..]), 0, "{p:?}");
        // Not an echo request, or not to the benchmarking range: no reply.
        let mut q = request([198, 19, 0, 7], 3);
        q[20] = 0;
        assert_eq!(make_reply(&mut q), None);
        let mut r = request([10, 0, 0, 1], 3);
        assert_eq!(make_reply(&mut r), None);
        assert_eq!(make_reply(&mut [0x45, 0, 0]), None);
    }

    #[test]
    fn delays_spread_over_the_range_and_repeat_for_the_same_probe() {
        let max = 100_000;
        let ds: Vec<u64> = (0..4096u16)
            .map(|i| delay_ns(&request([198, 19, (i >> 8) as u8, i as u8], 1), max))
            .collect();
        assert!(ds.iter().all(|&d| d < max));
        let distinct: std::collections::HashSet<_> = ds.iter().collect();
        assert!(distinct.len() > 3_900, "{}", distinct.len());
        let mean = ds.iter().sum::<u64>() as f64 / ds.len() as f64;
        assert!((40_000.0..60_000.0).contains(&mean), "{mean}");
        let p = request([198, 19, 0, 9], 5);
        assert_eq!(delay_ns(&p, max), delay_ns(&p, max));
        assert_eq!(delay_ns(&p, 0), 0);
    }
}
