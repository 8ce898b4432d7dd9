//! `asdic_filter` on the scan side of a speed bed (`scripts/bed.sh up ID --speed`): what it
//! counts with no socket registered (and that the kernel still gets everything), detaching on
//! drop, replacing a legacy leftover, refusing a live link and a foreign program.
//!
//! Needs root; without it the tests skip with a reason, unless `ASDIC_REQUIRE_BED=1`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use asdic_xdp::{
    FILTER_OBJECT, Filter, FilterConfig, FilterStats, Mode, RESPONDER_OBJECT, XdpError,
    attached_program,
};

/// Session id of the test pings: the pinger's payload starts with it.
const SESSION: u32 = 0xa1b2_c3d4;

/// A pinger (python3, raw ICMP/ICMPv6): `ADDR N PATTERN` sends N echo requests, 0.2 s apart,
/// each with 32 bytes of payload repeating the hex PATTERN, and prints how many were answered
/// within 1 s.
const PINGER: &str = r#"
import os, socket, struct, sys, time
addr, n, pattern = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
v6 = ":" in addr
fam, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
s = socket.socket(fam, socket.SOCK_RAW, proto)
ident = os.getpid() & 0xFFFF
payload = (pattern * 8)[:32]
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
got = 0
for seq in range(n):
    pkt = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq) + payload
    if not v6:
        pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
    s.sendto(pkt, (addr, 0))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        s.settimeout(max(end - time.monotonic(), 0.001))
        try:
            data = s.recv(4096)
        except socket.timeout:
            break
        if not v6:
            data = data[(data[0] & 15) * 4:]
        if len(data) >= 8 and data[0] == (129 if v6 else 0) and struct.unpack("!HH", data[4:8]) == (ident, seq):
            got += 1
            break
    time.sleep(0.2)
print(got)
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn skip() -> bool {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    let is_root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    if is_root {
        return false;
    }
    if std::env::var("ASDIC_REQUIRE_BED").is_ok_and(|v| v == "1") {
        panic!("the speed bed is required (ASDIC_REQUIRE_BED=1) but needs root");
    }
    eprintln!("skipped: the speed bed needs root");
    true
}

/// The `asdic-responder` binary (crate `xdp/responder`) of this test's profile, or
/// `ASDIC_RESPONDER` (scripts/test builds the release one and sets it).
fn responder() -> PathBuf {
    if let Some(p) = std::env::var_os("ASDIC_RESPONDER") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps")
        .join("asdic-responder");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p asdic-responder, same profile)",
        bin.display()
    );
    bin
}

/// A speed bed, torn down on drop (also when the test panics).
struct SpeedBed {
    id: &'static str,
}

impl SpeedBed {
    fn up(id: &'static str) -> SpeedBed {
        let bed = SpeedBed { id };
        let o = Command::new(root().join("scripts/bed.sh"))
            .args(["up", id, "--speed"])
            .env("ASDIC_RESPONDER", responder())
            .output()
            .expect("bed.sh");
        assert!(o.status.success(), "bed up: {}", text(&o));
        bed
    }

    fn ns(&self, role: &str) -> String {
        format!("asdic-{}-{role}", self.id)
    }

    /// Runs `cmd` in namespace `role`.
    fn exec(&self, role: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    fn ok(&self, role: &str, cmd: &[&str]) {
        let o = self.exec(role, cmd);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    }

    /// `n` echo requests whose 32-byte payload (the length of asdic's stamp, the least the
    /// filter takes) repeats `pattern`, as asdic's would start with its session; how many
    /// were answered. (The system `ping` puts a timestamp first once the payload holds one.)
    fn ping(&self, addr: &str, n: u32, pattern: &str) -> u32 {
        let count = n.to_string();
        let o = self.exec("scan", &["python3", "-c", PINGER, addr, &count, pattern]);
        let out = String::from_utf8_lossy(&o.stdout);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no count from the pinger: {}", text(&o)))
    }

    /// Runs `f` on a thread inside the scan namespace (netlink, ifindex and bpf_link
    /// resolve interfaces there).
    fn in_scan<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        in_netns(&self.ns("scan"), f)
    }
}

impl Drop for SpeedBed {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/bed.sh"))
            .args(["down", self.id])
            .output();
    }
}

fn in_netns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    std::thread::spawn(move || {
        // SAFETY: setns takes a descriptor we hold open and a flag; it changes only this
        // thread's network namespace.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the thread in the namespace")
}

/// A bare AF_XDP socket on queue 0 of an interface (copy mode, rings of 16, a 64 KiB UMEM,
/// nothing ever put in the fill ring): enough to register in `asdic_xsks` and to see frames
/// arrive (and be dropped for want of buffers) in its statistics.
struct BareXsk {
    fd: std::os::fd::OwnedFd,
    umem: *mut libc::c_void,
}

const UMEM_LEN: usize = 16 * 4096;

impl BareXsk {
    fn bind(ifindex: u32) -> BareXsk {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: socket(2) with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            raw >= 0,
            "AF_XDP socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: an anonymous private mapping; the result is checked below.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                UMEM_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(umem, libc::MAP_FAILED, "mmap");
        let xsk = BareXsk { fd, umem };
        let reg = libc::xdp_umem_reg {
            addr: umem as u64,
            len: UMEM_LEN as u64,
            chunk_size: 4096,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        xsk.setopt(libc::XDP_UMEM_REG, &reg);
        for ring in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
        ] {
            xsk.setopt(ring, &16u32);
        }
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: 0,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `addr` is a valid sockaddr_xdp of the length passed.
        let r = unsafe {
            libc::bind(
                xsk.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "bind AF_XDP: {}", std::io::Error::last_os_error());
        xsk
    }

    fn setopt<T>(&self, name: i32, value: &T) {
        use std::os::fd::AsRawFd;
        // SAFETY: `value` points to a live T of the size passed; the kernel only reads it.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                name,
                (value as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        assert_eq!(
            r,
            0,
            "setsockopt {name}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Frames that reached the socket and were dropped (no buffers), by any of its counters.
    fn dropped(&self) -> u64 {
        use std::os::fd::AsRawFd;
        // SAFETY: xdp_statistics is plain integers; all-zero is a valid value.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes, and `len` is a valid in/out length.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "XDP_STATISTICS: {}", std::io::Error::last_os_error());
        st.rx_dropped + st.rx_ring_full + st.rx_fill_ring_empty_descs
    }
}

impl Drop for BareXsk {
    fn drop(&mut self) {
        // SAFETY: `umem` is the mapping of UMEM_LEN bytes made in `bind`; the socket that
        // registered it is closed after this (field order), and the kernel holds its own
        // reference to the pages until then.
        unsafe { libc::munmap(self.umem, UMEM_LEN) };
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The filter's configuration for the speed bed's scanner: its addresses and s0's MAC (read
/// with `ip`, run from the calling thread, so in its network namespace).
fn cfg() -> FilterConfig {
    let o = Command::new("ip")
        .args(["-o", "link", "show", "s0"])
        .output()
        .expect("ip link show s0");
    let text = String::from_utf8_lossy(&o.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(|m| {
            let mut b = [0u8; 6];
            for (x, h) in b.iter_mut().zip(m.split(':')) {
                *x = u8::from_str_radix(h, 16).expect("a MAC");
            }
            b
        })
        .unwrap_or_else(|| panic!("no MAC for s0 in {text:?}"));
    FilterConfig {
        session: SESSION,
        ident_base: 0,
        ident_span: 65536,
        v4: true,
        v6: true,
        mac,
        src4: "198.18.0.1".parse().unwrap(),
        src6: "2001:db8:0:1::1".parse().unwrap(),
        drop_unserved: false,
        // The session alone: the test's pings carry no stamp MAC.
        mac_key: None,
        stamp: false,
    }
}

fn delta(a: FilterStats, b: FilterStats) -> (u64, u64, u64) {
    (
        b.redirected - a.redirected,
        b.passed - a.passed,
        b.redirect_failed - a.redirect_failed,
    )
}

#[test]
fn filter_counts_ours_and_passes_them_without_a_socket() {
    if skip() {
        return;
    }
    let bed = SpeedBed::up("xt3");
    // far forwards (and has no route onwards), so probes to 198.18.99.0/24 and
    // 2001:db8:99::/64 come back as ICMP "unreachable" errors quoting them.
    bed.ok(
        "far",
        &[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ],
    );
    bed.ok(
        "scan",
        &["ip", "route", "add", "198.18.99.0/24", "via", "198.18.0.2"],
    );
    bed.ok(
        "scan",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "2001:db8:99::/64",
            "via",
            "2001:db8:0:1::2",
        ],
    );
    let b = std::sync::Arc::new(bed);
    let bed = std::sync::Arc::clone(&b);
    b.in_scan(move || {
        let f = Filter::attach("s0", &cfg(), None).expect("attach");
        assert_eq!(f.mode(), Mode::Native, "veth runs XDP natively");
        assert_eq!(f.replaced(), None);
        let p = attached_program("s0").unwrap().expect("a program on s0");
        assert_eq!(p.name, "asdic_filter");

        // Replies with our session: ours, no socket -> redirect_failed, and the kernel still
        // delivers them to ping.
        let s0 = f.stats();
        assert_eq!(bed.ping("198.19.0.1", 3, "a1b2c3d4"), 3);
        assert_eq!(bed.ping("2001:db8:1::1", 3, "a1b2c3d4"), 3);
        let (redirected, _, failed) = delta(s0, f.stats());
        assert_eq!((redirected, failed), (0, 6), "{:?}", f.stats());

        // Another session: not ours -> passed (plus whatever ARP/ND the kernel does).
        let s1 = f.stats();
        assert_eq!(bed.ping("198.19.0.2", 2, "deadbeef"), 2);
        assert_eq!(bed.ping("2001:db8:1::2", 2, "deadbeef"), 2);
        let (redirected, passed, failed) = delta(s1, f.stats());
        assert_eq!((redirected, failed), (0, 0));
        assert!(passed >= 4, "passed {passed}");

        // ICMP errors quoting our probes: ours.
        let s2 = f.stats();
        assert_eq!(bed.ping("198.18.99.1", 2, "a1b2c3d4"), 0);
        assert_eq!(bed.ping("2001:db8:99::1", 2, "a1b2c3d4"), 0);
        let (_, _, failed) = delta(s2, f.stats());
        assert_eq!(failed, 4, "errors about our probes: {:?}", f.stats());
        // ... but not when they quote another session.
        let s3 = f.stats();
        assert_eq!(bed.ping("198.18.99.1", 1, "deadbeef"), 0);
        let (_, passed, failed) = delta(s3, f.stats());
        assert_eq!(failed, 0);
        assert!(passed >= 1);

        // Dead hosts stay silent with the filter in place.
        assert_eq!(bed.ping("198.19.0.13", 1, "a1b2c3d4"), 0);

        // Registering at a key beyond the map is refused before the kernel is asked.
        let mut f = f;
        let e = f.register(64, false, 0).unwrap_err();
        assert!(matches!(e, XdpError::Config(_)), "{e}");
        drop(f);
        assert_eq!(attached_program("s0").unwrap(), None, "drop detaches");
    });
}

#[test]
fn a_registered_socket_gets_its_family() {
    if skip() {
        return;
    }
    let b = std::sync::Arc::new(SpeedBed::up("xt6"));
    let bed = std::sync::Arc::clone(&b);
    b.in_scan(move || {
        let mut f = Filter::attach("s0", &cfg(), None).expect("attach");
        let xsk = BareXsk::bind(f.ifindex());
        use std::os::fd::AsRawFd;
        f.register(0, false, xsk.fd.as_raw_fd()).expect("register");
        let s0 = f.stats();
        // IPv4 replies go to the socket (which drops them: no buffers), so ping sees none.
        assert_eq!(bed.ping("198.19.0.1", 2, "a1b2c3d4"), 0);
        // IPv6 has no socket: passed to the kernel.
        assert_eq!(bed.ping("2001:db8:1::1", 2, "a1b2c3d4"), 2);
        let (redirected, _, failed) = delta(s0, f.stats());
        assert_eq!((redirected, failed), (2, 2), "{:?}", f.stats());
        assert!(xsk.dropped() >= 2, "the socket saw them: {}", xsk.dropped());
        drop(f);
        drop(xsk);
        assert_eq!(attached_program("s0").unwrap(), None);
    });
}

#[test]
fn identifier_range_and_generic_mode() {
    if skip() {
        return;
    }
    let b = std::sync::Arc::new(SpeedBed::up("xt4"));
    let bed = std::sync::Arc::clone(&b);
    b.in_scan(move || {
        // A range of one identifier that ping will not use (ping's identifiers are its
        // socket's port): its replies are not ours.
        let narrow = FilterConfig {
            ident_base: 0,
            ident_span: 1,
            ..cfg()
        };
        let f = Filter::attach("s0", &narrow, Some(Mode::Generic)).expect("generic attach");
        assert_eq!(f.mode(), Mode::Generic);
        assert_eq!(f.mode().to_string(), "generic (SKB)");
        let s0 = f.stats();
        let answered = bed.ping("198.19.0.1", 2, "a1b2c3d4");
        assert_eq!(answered, 2);
        let (_, passed, failed) = delta(s0, f.stats());
        // ping's id may be 0 by chance (1 in 65536): then it is ours.
        assert!(failed == 0 || failed == 2, "{failed}");
        assert!(passed >= 2 - failed);
        drop(f);
        assert_eq!(attached_program("s0").unwrap(), None);

        // IPv6 disabled: IPv6 replies with our session are passed, not ours.
        let v4only = FilterConfig { v6: false, ..cfg() };
        let f = Filter::attach("s0", &v4only, None).expect("attach");
        let s1 = f.stats();
        assert_eq!(bed.ping("2001:db8:1::1", 2, "a1b2c3d4"), 2);
        let (_, passed, failed) = delta(s1, f.stats());
        assert_eq!(failed, 0);
        assert!(passed >= 2);
    });
}

#[test]
fn leftovers_are_replaced_live_links_and_foreign_programs_refused() {
    if skip() {
        return;
    }
    let bed = SpeedBed::up("xt5");
    let dir = std::env::temp_dir().join(format!("asdic-xdp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .and_then(|mut f| f.write_all(bytes))
            .unwrap();
        p.to_str().unwrap().to_string()
    };
    let filter_o = write("filter.bpf.o", FILTER_OBJECT);
    let responder_o = write("responder.bpf.o", RESPONDER_OBJECT);

    // Our object loaded by another loader (`ip link set xdp`): named asdic_filter, but its
    // asdic_marker map holds no mark. A namesake, not a leftover: refused and left alone.
    bed.ok(
        "scan",
        &[
            "ip", "link", "set", "dev", "s0", "xdpdrv", "obj", &filter_o, "sec", "xdp",
        ],
    );
    let scan = bed.ns("scan");
    let leftover = in_netns(&scan, || attached_program("s0").unwrap().expect("leftover"));
    assert_eq!(leftover.name, "asdic_filter");
    let e = in_netns(&scan, || Filter::attach("s0", &cfg(), None)).unwrap_err();
    assert!(matches!(e, XdpError::Foreign { .. }), "{e}");
    let kept = in_netns(&scan, || attached_program("s0").unwrap().expect("kept"));
    assert_eq!(kept.id, leftover.id, "a namesake is never removed");

    // Marked as ours (what our loader writes), it is a leftover of ours: replaced.
    asdic_xdp::mark_as_filter(leftover.id).expect("mark");
    let f = in_netns(&scan, || Filter::attach("s0", &cfg(), None));
    let f = f.expect("a leftover is replaced");
    let note = f.replaced().expect("replaced says so").to_string();
    assert!(note.contains("leftover asdic_filter"), "{note}");
    assert!(note.contains(&format!("prog id {}", leftover.id)), "{note}");
    let now = in_netns(&scan, || attached_program("s0").unwrap().expect("ours"));
    assert_eq!(now.name, "asdic_filter");
    assert_ne!(now.id, leftover.id);

    // Our program held by a live link (here: `f`): busy, and left in place.
    let e = in_netns(&scan, || Filter::attach("s0", &cfg(), None)).unwrap_err();
    assert!(matches!(e, XdpError::Busy { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "asdic_filter (prog id {}) is attached to s0 by another running process",
            now.id
        )),
        "{msg}"
    );
    let still = in_netns(&scan, || attached_program("s0").unwrap().expect("still"));
    assert_eq!(still.id, now.id);
    drop(f);
    assert_eq!(in_netns(&scan, || attached_program("s0").unwrap()), None);

    // A foreign program: refused and never removed.
    bed.ok(
        "scan",
        &[
            "ip",
            "link",
            "set",
            "dev",
            "s0",
            "xdpdrv",
            "obj",
            &responder_o,
            "sec",
            "xdp",
        ],
    );
    let foreign = in_netns(&scan, || attached_program("s0").unwrap().expect("foreign"));
    assert_eq!(foreign.name, "asdic_responder");
    let e = in_netns(&scan, || Filter::attach("s0", &cfg(), None)).unwrap_err();
    assert!(matches!(e, XdpError::Foreign { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("asdic_responder"), "{msg}");
    assert!(msg.contains(&format!("prog id {}", foreign.id)), "{msg}");
    let still = in_netns(&scan, || attached_program("s0").unwrap().expect("kept"));
    assert_eq!(still, foreign);
    bed.ok("scan", &["ip", "link", "set", "dev", "s0", "xdpdrv", "off"]);

    // Unknown interfaces are named.
    let e = in_netns(&scan, || Filter::attach("eth9", &cfg(), None)).unwrap_err();
    assert_eq!(e.to_string(), "no such interface: eth9");
    let _ = std::fs::remove_dir_all(&dir);
}
