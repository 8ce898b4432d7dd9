//! Support for asdic's integration tests on the veth test bed (`scripts/bed.sh`): a guard
//! that brings a bed (the nftables bed, or the XDP speed bed) up and always tears it down on
//! drop (also when a test panics), running
//! the built `asdic` binary inside the bed's scanner namespace, and reading results back.
//!
//! The tests need root (network namespaces, raw sockets). Without it they skip with a reason,
//! unless `ASDIC_REQUIRE_BED=1` (set by `scripts/test` and CI), where a missing bed fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use arrow_array::{
    Array, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt8Array, UInt16Array, UInt64Array,
};
use serde_json::Value;

pub use asdic_analysis::meta::keys;
pub use asdic_analysis::{RunMeta, RunMode};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Binary `name` of the same profile as this test (target/<profile>/NAME), or the path in
/// environment variable `var`; `build` says how to build it when it is missing.
fn profile_bin(var: &str, name: &str, build: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(name);
    assert!(
        bin.exists(),
        "{} missing: build it first ({build}), or set {var}",
        bin.display()
    );
    bin
}

/// Every subcommand of asdic, as `asdic --help` lists them.
pub const SUBCOMMANDS: [&str; 8] = [
    "ping",
    "scan",
    "sweep",
    "trace",
    "recover",
    "report",
    "man",
    "completions",
];

/// Runs `asdic ARGS` (stdin closed) to its end: its exit status, stdout and stderr.
pub fn asdic_output(args: &[&str]) -> Output {
    Command::new(asdic_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running asdic")
}

/// The `asdic` binary of the same profile as this test (target/<profile>/asdic), or
/// `ASDIC_BIN`.
pub fn asdic_bin() -> PathBuf {
    profile_bin(
        "ASDIC_BIN",
        "asdic",
        "cargo build -p asdic-cli, same profile",
    )
}

/// The hooked test build of `asdic` (`--features testing`: it reads the `ASDIC_INJECT_*`
/// fault variables, which the release binary ignores): `ASDIC_TEST_BIN`, or
/// target/<profile>/asdic-hooked, as scripts/test builds it.
pub fn hooked_bin() -> PathBuf {
    profile_bin(
        "ASDIC_TEST_BIN",
        "asdic-hooked",
        "cargo build --profile ci -p asdic-cli --features testing && \
         cp target/ci/asdic target/ci/asdic-hooked",
    )
}

/// The `asdic-responder` binary (XDP echo responder of the speed bed) of the same profile as
/// this test, or `ASDIC_RESPONDER`.
pub fn responder_bin() -> PathBuf {
    profile_bin(
        "ASDIC_RESPONDER",
        "asdic-responder",
        "cargo build -p asdic-responder, same profile",
    )
}

/// `delay-responder` (a routed bed's far end whose RTTs spread; crate `asdic-responder`):
/// beside `ASDIC_RESPONDER` when that is set, as scripts/test builds both, else of the same
/// profile as this test.
pub fn delay_responder_bin() -> PathBuf {
    let bin = responder_bin().with_file_name("delay-responder");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p asdic-responder, the profile of \
         ASDIC_RESPONDER)",
        bin.display()
    );
    bin
}

/// Whether the bed can run here; `Err(reason)` if not.
pub fn bed_available() -> Result<(), String> {
    // SAFETY-free check: root is uid 0 as reported by `id -u`.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        if !ok.is_ok_and(|o| o.status.success()) {
            return Err(format!("{tool} not installed"));
        }
    }
    Ok(())
}

/// Skips the calling test (returns `None`) when no bed can run, or panics when one is required.
pub fn require_bed() -> Option<()> {
    match bed_available() {
        Ok(()) => Some(()),
        Err(why) if std::env::var("ASDIC_REQUIRE_BED").is_ok_and(|v| v == "1") => {
            panic!("the veth test bed is required (ASDIC_REQUIRE_BED=1) but cannot run: {why}")
        }
        Err(why) => {
            eprintln!("skipped: the veth test bed needs root, iproute2 and nftables ({why})");
            None
        }
    }
}

/// A test bed, torn down on drop.
#[derive(Debug)]
pub struct Bed {
    id: String,
    /// The script that built it (`scripts/bed.sh`, or `scripts/chain.sh` for a chain bed).
    script: PathBuf,
}

impl Bed {
    /// Brings up bed `id` with extra `up` options (e.g. `["--loss", "10"]`).
    pub fn up(id: &str, opts: &[&str]) -> Bed {
        Bed::up_with(id, opts, false)
    }

    /// Brings up speed bed `id` (`up ID --speed`, asdic-responder answering in far) with
    /// extra options (e.g. `["--loss-ppm", "1000"]`).
    pub fn up_speed(id: &str, opts: &[&str]) -> Bed {
        Bed::up_with(id, opts, true)
    }

    /// Brings up chain bed `id` (`scripts/chain.sh up ID --routers N`): namespaces scan,
    /// r1..rN and far. [`Bed::in_netns`] and [`Bed::exec_in`] take `r1`… as roles.
    pub fn up_chain(id: &str, routers: u8) -> Bed {
        Bed::up_by("chain.sh", id, &["--routers", &routers.to_string()], None)
    }

    /// Brings up fork bed `id` (`scripts/fork.sh up ID`): namespaces scan, r1, a1, a2, b1,
    /// b2, r4 and far, with r1 load-balancing echo requests over the a and b branches by
    /// their ICMP checksum. [`Bed::in_netns`] and [`Bed::exec_in`] take `r1`, `a1`… as roles.
    pub fn up_fork(id: &str) -> Bed {
        Bed::up_by("fork.sh", id, &[], None)
    }

    fn up_with(id: &str, opts: &[&str], speed: bool) -> Bed {
        if speed {
            let args: Vec<&str> = std::iter::once("--speed")
                .chain(opts.iter().copied())
                .collect();
            Bed::up_by("bed.sh", id, &args, Some(responder_bin()))
        } else {
            Bed::up_by("bed.sh", id, opts, None)
        }
    }

    /// Runs `scripts/SCRIPT up ID ARGS…` (with `ASDIC_RESPONDER` set to `responder` if
    /// given) and returns the bed, torn down on drop; a failed `up` fails the test with the
    /// script's output.
    fn up_by(script: &str, id: &str, args: &[&str], responder: Option<PathBuf>) -> Bed {
        let path = root().join("scripts").join(script);
        let mut c = Command::new(&path);
        c.arg("up").arg(id).args(args);
        if let Some(r) = responder {
            c.env("ASDIC_RESPONDER", r);
        }
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        let bed = Bed {
            id: id.to_string(),
            script: path,
        };
        assert!(
            out.status.success(),
            "{script} up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bed
    }

    /// The bed's ground truth (rules and live counters).
    pub fn truth(&self) -> Value {
        let out = Command::new(&self.script)
            .args(["truth", &self.id])
            .output()
            .expect("bed.sh truth");
        assert!(
            out.status.success(),
            "bed truth: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("truth is JSON")
    }

    /// A counter of the ground truth.
    pub fn counter(&self, name: &str) -> u64 {
        self.truth()["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("counter {name}"))
    }

    /// Runs `asdic ARGS` in the scanner namespace.
    pub fn asdic(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running asdic")
    }

    /// The command that runs `asdic ARGS` in the scanner namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("asdic-{}-scan", self.id)])
            .arg(asdic_bin())
            .args(args);
        c.stdin(Stdio::null());
        c
    }

    /// The command that runs the hooked build of asdic ([`hooked_bin`]) with `ARGS` in the
    /// scanner namespace, with the fault variables `faults` (`ASDIC_INJECT_*`) set.
    pub fn command_with_faults(&self, args: &[&str], faults: &[(&str, &str)]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("asdic-{}-scan", self.id)])
            .arg(hooked_bin())
            .args(args)
            .envs(faults.iter().copied());
        c.stdin(Stdio::null());
        c
    }

    /// The command that runs `asdic ARGS` in the scanner namespace with `io_uring_setup(2)`
    /// refused (EPERM) by a seccomp filter, as container runtimes that block io_uring do.
    /// `None` where the filter is not written for this architecture.
    pub fn command_without_io_uring(&self, args: &[&str]) -> Option<Command> {
        if !cfg!(target_arch = "x86_64") {
            return None;
        }
        use std::os::unix::process::CommandExt;
        let mut c = self.command(args);
        // SAFETY: the hook runs in the forked child before exec. It allocates nothing and
        // takes no lock: it builds the filter on its stack and makes two prctl system calls
        // (async-signal-safe), which is all a post-fork hook may do.
        unsafe { c.pre_exec(deny_io_uring_setup) };
        Some(c)
    }

    /// The bed's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `f` on a new thread that has joined the scanner namespace (`setns`), so that
    /// sockets it opens live in the bed; returns what `f` returns.
    pub fn in_scan_netns<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        self.in_netns("scan", f)
    }

    /// Runs `f` on a new thread that has joined the bed's namespace `role` (`scan`, `rtr`,
    /// `far`); returns what `f` returns.
    pub fn in_netns<R: Send + 'static>(
        &self,
        role: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/asdic-{}-{role}", self.id);
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        std::thread::spawn(move || {
            // SAFETY: setns takes a descriptor we hold open and a flag; it changes only this
            // thread's network namespace.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the thread in the bed")
    }

    /// Runs a command in the scanner namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.exec_in("scan", cmd)
    }

    /// Runs a command in the bed's namespace `role` (`scan`, `rtr` or `far`).
    pub fn exec_in(&self, role: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("asdic-{}-{role}", self.id)])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    /// The command that runs the helper `tests/support/SCRIPT` with python3 in the bed's
    /// namespace `role` (stdin null, stdout and stderr piped); add its arguments.
    pub fn python(&self, role: &str, script: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &format!("asdic-{}-{role}", self.id),
            "python3",
        ])
        .arg(root().join("tests/support").join(script))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    }

    /// Starts `tests/support/spray.py TARGET ARGS…` in the router namespace: a blind
    /// off-path attacker spraying the scanner with ICMP errors that quote only 8 bytes of an
    /// echo request to `target` (see the script). Let it start before probing.
    pub fn spray(&self, target: &str, args: &[&str]) -> Spray {
        let child = self
            .python("rtr", "spray.py")
            .arg(target)
            .args(args)
            .spawn()
            .expect("spray.py");
        std::thread::sleep(Duration::from_millis(300));
        Spray(child)
    }

    /// Adds counter `name` on the router, counting echo requests it forwards to the IPv4
    /// `prefix` (before the router's reject rules).
    pub fn count_forwarded(&self, name: &str, prefix: &str) {
        let rule = format!(
            "insert rule inet asdic_bed forward iifname \"r0\" ip daddr {prefix} icmp type echo-request counter name \"{name}\""
        );
        for cmd in [format!("add counter inet asdic_bed {name}"), rule] {
            let o = self.exec_in("rtr", &["nft", &cmd]);
            assert!(
                o.status.success(),
                "nft {cmd}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// Packets counted by the router's counter `name` (see [`Bed::count_forwarded`]).
    pub fn forwarded(&self, name: &str) -> u64 {
        let o = self.exec_in(
            "rtr",
            &["nft", "list", "counter", "inet", "asdic_bed", name],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "packets" {
                return words
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("packets N");
            }
        }
        panic!("no packet count in {text}")
    }
}

/// Installs a seccomp filter on the calling process (inherited by what it executes): on
/// x86_64, `io_uring_setup` (425) fails with EPERM; every other system call is allowed.
fn deny_io_uring_setup() -> std::io::Result<()> {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const IO_URING_SETUP: u32 = 425;
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data: nr at offset 0, arch at offset 4.
    let mut prog = [
        op(ld, 0, 0, 4),
        op(jeq, 0, 3, AUDIT_ARCH_X86_64),
        op(ld, 0, 0, 0),
        op(jeq, 0, 1, IO_URING_SETUP),
        op(ret, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        op(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fprog` points to `prog`, a valid classic-BPF program of `len` instructions,
    // both alive for the call; the kernel copies the program.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).args(["down", &self.id]).output();
    }
}

/// A running `spray.py` ([`Bed::spray`]).
#[derive(Debug)]
pub struct Spray(std::process::Child);

impl Spray {
    /// Waits for the spray's bounded run to end: how many errors it sent.
    pub fn finish(mut self) -> u64 {
        use std::io::Read;
        let mut said = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            out.read_to_string(&mut said).expect("spray.py's output");
        }
        assert!(
            self.0.wait().expect("spray.py").success(),
            "spray.py failed"
        );
        let said: Value = serde_json::from_str(said.trim()).expect("spray.py's count");
        said["sent"].as_u64().expect("spray.py's count")
    }
}

impl Drop for Spray {
    fn drop(&mut self) {
        // A test that failed before finish(): do not leave the sprayer running.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Echo requests seen arriving in one namespace of a bed, in arrival order, captured by an
/// `AF_PACKET` socket on a thread of their own (see [`Bed::capture_echo_requests`]).
#[derive(Debug)]
pub struct Capture {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(std::net::IpAddr, u8)>>,
}

impl Capture {
    /// Stops capturing; returns (destination, TTL or hop limit as it arrived) of every echo
    /// request addressed through or to the namespace, in arrival order.
    pub fn finish(self) -> Vec<(std::net::IpAddr, u8)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().expect("the capture thread")
    }
}

/// (destination, TTL) of an IPv4 or IPv6 echo request, from its IP header on.
fn echo_request(p: &[u8]) -> Option<(std::net::IpAddr, u8)> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            (*p.get(9)? == 1 && *p.get(ihl)? == 8).then(|| (dst.into(), p[8]))
        }
        6 => {
            let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            (*p.get(6)? == 58 && *p.get(40)? == 128).then(|| (dst.into(), p[7]))
        }
        _ => None,
    }
}

impl Bed {
    /// Starts capturing the echo requests that arrive in the bed's namespace `role` (on a
    /// router: those it forwards), until [`Capture::finish`] or 120 s. Returns once the
    /// capture socket is open.
    pub fn capture_echo_requests(&self, role: &str) -> Capture {
        use std::os::fd::AsRawFd;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let path = format!("/run/netns/asdic-{}-{role}", self.id);
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // SAFETY: setns takes a descriptor we hold open and a flag; it changes only this
            // thread's network namespace.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let proto = i32::from((libc::ETH_P_ALL as u16).to_be());
            // SAFETY: socket(2) takes no pointers.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, proto) };
            assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            // SAFETY: the pointer and length describe `tv`, alive for the call.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            ready_tx.send(()).expect("the test waits");
            let mut out = vec![];
            let mut buf = [0u8; 2048];
            let t0 = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) && t0.elapsed().as_secs() < 120 {
                // SAFETY: all-zero is a valid sockaddr_ll.
                let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: `buf` and `sll` are writable and alive for the call, with the
                // lengths given.
                let n = unsafe {
                    libc::recvfrom(
                        fd,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut sll as *mut libc::sockaddr_ll).cast(),
                        &mut len,
                    )
                };
                // Only packets arriving for this host (or to be forwarded by it).
                if n <= 0 || sll.sll_pkttype != libc::PACKET_HOST {
                    continue;
                }
                if let Some(p) = echo_request(&buf[..n as usize]) {
                    out.push(p);
                }
            }
            // SAFETY: `fd` is ours and closed once.
            unsafe { libc::close(fd) };
            out
        });
        ready_rx.recv().expect("the capture thread started");
        Capture { stop, handle }
    }
}

/// Waits (at most `limit`) for `child` to end and reaps it with `wait4`, returning its exit
/// code (None when killed by a signal) and its peak resident set in KiB as the kernel
/// accounted it (`ru_maxrss`: every page up to the exit, which polling `/proc/PID/status`
/// can miss when the peak comes just before the process ends). The child is reaped here:
/// do not call `wait` on it afterwards.
pub fn wait_with_peak_rss(child: &mut std::process::Child, limit: Duration) -> (Option<i32>, u64) {
    let pid = child.id() as libc::pid_t;
    let t0 = std::time::Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes only to `status` and `usage`, both ours and live for the call.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return (code, usage.ru_maxrss as u64);
        }
        assert!(
            t0.elapsed() < limit,
            "pid {pid} did not end within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command started by a small python3 that reports its peak RSS (`ru_maxrss`) when it
/// ends: see [`measured`].
#[derive(Debug)]
pub struct Measured {
    python: std::process::Child,
    /// The measured process (signal it, not the python3 in between).
    pub pid: u32,
}

/// Starts `argv` (stdin null, stdout discarded, stderr to `stderr`) as a grandchild of this
/// process, under a python3 that reports its peak RSS. A direct child's `ru_maxrss` is not
/// its own: Linux counts in it the peak of the memory it replaced at `exec`, which for a
/// child of this test process (spawned by `vfork`, or forked) is this process's; a python3
/// of ~10 MiB in between bounds that share.
pub fn measured(argv: &[&std::ffi::OsStr], stderr: Stdio) -> Measured {
    let script = "import os, sys\n\
                  pid = os.fork()\n\
                  if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
                  print('pid', pid, flush=True)\n\
                  _, status, ru = os.wait4(pid, 0)\n\
                  print('peak-rss-kib', ru.ru_maxrss, os.waitstatus_to_exitcode(status))\n";
    let mut python = Command::new("python3")
        .args(["-c", script])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("python3");
    let mut first = String::new();
    let mut out = std::io::BufReader::new(python.stdout.as_mut().expect("piped"));
    std::io::BufRead::read_line(&mut out, &mut first).expect("python3's first line");
    let pid = first
        .strip_prefix("pid ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("python3 said {first:?}"));
    Measured { python, pid }
}

impl Measured {
    /// Waits for the end: the exit code (`None` when killed by a signal) and the peak RSS in
    /// KiB.
    pub fn wait(mut self) -> (Option<i32>, u64) {
        let mut rest = String::new();
        if let Some(out) = self.python.stdout.as_mut() {
            std::io::Read::read_to_string(out, &mut rest).expect("python3's output");
        }
        let _ = self.python.wait();
        let line = rest
            .lines()
            .find_map(|l| l.strip_prefix("peak-rss-kib "))
            .unwrap_or_else(|| panic!("no peak RSS from python3: {rest}"));
        let mut w = line.split_whitespace();
        let rss: u64 = w.next().and_then(|x| x.parse().ok()).expect("rss");
        let code: i32 = w.next().and_then(|x| x.parse().ok()).expect("status");
        ((code >= 0).then_some(code), rss)
    }
}

/// A unique scratch path for an output file. The directory is this process's, emptied on its
/// first use: one left by an earlier process with the same pid (pids wrap) is stale. That
/// first use also removes what test processes that are gone left (see [`sweep_scratch`]).
pub fn scratch(name: &str) -> PathBuf {
    static FRESH: std::sync::Once = std::sync::Once::new();
    let dir = std::env::temp_dir().join(format!("asdic-tests-{}", std::process::id()));
    FRESH.call_once(|| {
        let _ = std::fs::remove_dir_all(&dir);
        sweep_scratch();
    });
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// Removes the scratch directories of test processes that have ended (`asdic-tests-PID`,
/// `asdic-priv-PID-…` in the temporary directory; a test binary has no teardown, so each run
/// removes what the runs before it left: a full suite left ~0.5 GB, copies of the binary
/// among it). Only directories (a symlink is left alone), and only of a pid that is not
/// running: another suite's live processes keep theirs.
pub fn sweep_scratch() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(scratch_pid) else {
            continue;
        };
        let running = Path::new(&format!("/proc/{pid}")).exists();
        if pid != std::process::id() && !running && e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The pid in the name of a test process's scratch directory (`asdic-tests-PID`,
/// `asdic-priv-PID-TAG`), if it is one.
fn scratch_pid(name: &str) -> Option<u32> {
    if let Some(pid) = name.strip_prefix("asdic-tests-") {
        return pid.parse().ok();
    }
    let (pid, tag) = name.strip_prefix("asdic-priv-")?.split_once('-')?;
    (!tag.is_empty()).then(|| pid.parse().ok())?
}

#[cfg(test)]
mod scratch_tests {
    use super::scratch_pid;

    #[test]
    fn only_test_scratch_names_carry_a_pid() {
        assert_eq!(scratch_pid("asdic-tests-4242"), Some(4242));
        assert_eq!(scratch_pid("asdic-priv-4242-engines"), Some(4242));
        assert_eq!(scratch_pid("asdic-priv-4242-"), None);
        assert_eq!(scratch_pid("asdic-tests-42x"), None);
        assert_eq!(scratch_pid("asdic-tests-"), None);
        assert_eq!(scratch_pid("asdic-priv-x-engines"), None);
        assert_eq!(scratch_pid("asdic-fleet-4242"), None);
        assert_eq!(scratch_pid("tests-4242"), None);
    }
}

/// An empty directory `name` in the run's scratch directory (emptied if an earlier test of
/// the run left it).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The run metadata of an asdic Parquet file (its footer's key-value metadata, typed).
pub fn run_meta(path: &Path) -> RunMeta {
    RunMeta::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads an asdic Parquet file into rows keyed by column name, and its run metadata.
pub fn read_parquet(path: &Path) -> Parquet {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("a Parquet file");
    let pairs: Vec<(String, String)> = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let meta = RunMeta::from_pairs(&pairs);
    let mut rows = vec![];
    for batch in b.build().expect("reader") {
        let batch: RecordBatch = batch.expect("batch");
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let mut row = HashMap::new();
            for (c, field) in schema.fields().iter().enumerate() {
                let col = batch.column(c);
                let v = if col.is_null(i) {
                    Value::Null
                } else if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<UInt64Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<UInt8Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<UInt16Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<Int32Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<BooleanArray>() {
                    Value::from(a.value(i))
                } else if let Some(a) = col.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                    // Microseconds since the Unix epoch (the column is UTC).
                    Value::from(a.value(i))
                } else {
                    panic!(
                        "column {} has an unexpected type {}",
                        field.name(),
                        field.data_type()
                    )
                };
                row.insert(field.name().clone(), v);
            }
            rows.push(row);
        }
    }
    (rows, meta)
}

/// Ground-truth class of an address of the bed, from its published rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// Answers.
    Alive,
    /// Silently dropped by the far side.
    Dead,
    /// Rejected by the router with an ICMP error.
    Rejected,
}

/// Classifies the low 16 bits `x` of a bed address (198.19.a.b → a*256+b, 2001:db8:1::x → x).
pub fn classify(truth: &Value, v6: bool, x: u32) -> Truth {
    let (m, r) = (
        truth["dead_mod"].as_u64().unwrap() as u32,
        truth["dead_rem"].as_u64().unwrap() as u32,
    );
    let rejected = if v6 {
        (0x4d00..=0x4dff).contains(&x)
    } else {
        x >> 8 == 77
    };
    if rejected {
        Truth::Rejected
    } else if x % m == r {
        Truth::Dead
    } else {
        Truth::Alive
    }
}

/// The targets among host indexes `v4` (198.19.a.b) and `v6` (2001:db8:1::x) that answer a
/// scan on the default bed: every host of the rejected block (index >> 8 == 77: an ICMP
/// error from the router) and every other host unless dead (index % 97 == 13).
pub fn responding(
    v4: impl IntoIterator<Item = u32>,
    v6: impl IntoIterator<Item = u32>,
) -> std::collections::HashSet<String> {
    let answers = |x: u32| x >> 8 == 77 || x % 97 != 13;
    let v4 = v4
        .into_iter()
        .filter(|&x| answers(x))
        .map(|x| format!("198.19.{}.{}", x >> 8, x & 255));
    let v6 = v6
        .into_iter()
        .filter(|&x| answers(x))
        .map(|x| format!("2001:db8:1::{x:x}"));
    v4.chain(v6).collect()
}

/// Whether an address of the bed is IPv6, and its low 16 bits (the host index).
pub fn low16(t: &str) -> (bool, u32) {
    match t.parse::<std::net::IpAddr>().expect("an address") {
        std::net::IpAddr::V4(a) => (false, u32::from(a) & 0xffff),
        std::net::IpAddr::V6(a) => (true, (u128::from(a) & 0xffff) as u32),
    }
}

/// Column `k` of a row, as an unsigned integer.
pub fn col_u64(row: &HashMap<String, Value>, k: &str) -> u64 {
    row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row:?}"))
}

/// A command's stderr as text.
pub fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON objects a run printed on stdout, one per line (`--format jsonl`, `-O jsonl`).
pub fn stdout_jsonl(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect()
}

/// Runs `asdic ping ARGS -q -o NAME.parquet` on the bed, expects exit status 1 (every bed
/// range holds dead hosts) and `rows` rows, and returns the rows and the file's metadata.
pub fn ping_to_parquet(bed: &Bed, name: &str, args: &[&str], rows: usize) -> Parquet {
    let out = scratch(&format!("{name}.parquet"));
    let mut all = vec!["ping"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-q", "-o", out.to_str().unwrap()]);
    let o = bed.asdic(&all);
    assert_eq!(
        o.status.code(),
        Some(1),
        "some targets are dead: exit 1\n{}",
        stderr_of(&o)
    );
    let (found, meta) = read_parquet(&out);
    assert_eq!(found.len(), rows);
    (found, meta)
}

/// Rows and run metadata of a Parquet file.
pub type Parquet = (Vec<HashMap<String, Value>>, RunMeta);

/// Checks every row against the bed's rules: exact live set, exact unreachable set with type,
/// code and responder, dead hosts timed out. Returns the rows per class: alive, dead, rejected.
pub fn assert_ping_ground_truth(
    truth: &Value,
    rows: &[HashMap<String, Value>],
    count: u64,
) -> [u64; 3] {
    let mut seen = [0u64; 3];
    for r in rows {
        let t = r["target"].as_str().unwrap();
        let (v6, x) = low16(t);
        assert_eq!(col_u64(r, "sent"), count, "{t}: sent");
        match classify(truth, v6, x) {
            Truth::Alive => {
                seen[0] += 1;
                assert_eq!(col_u64(r, "received"), count, "{t} is alive: {r:?}");
                assert_eq!(r["loss_pct"].as_f64(), Some(0.0), "{t}");
                assert!(
                    r["rtt_min_us"].as_f64().is_some_and(|v| v > 0.0),
                    "{t}: rtt"
                );
                assert_eq!(col_u64(r, "errors"), 0, "{t}");
            }
            Truth::Dead => {
                seen[1] += 1;
                assert_eq!(col_u64(r, "received"), 0, "{t} is dead: {r:?}");
                assert_eq!(col_u64(r, "timeouts"), count, "{t}");
                assert!(r["rtt_avg_us"].is_null(), "{t}: a timeout has no RTT");
                assert!(r["error_type"].is_null(), "{t}");
            }
            Truth::Rejected => {
                seen[2] += 1;
                let key = if v6 { "reject6" } else { "reject4" };
                let rej = &truth[key];
                assert_eq!(col_u64(r, "received"), 0, "{t}: {r:?}");
                assert_eq!(col_u64(r, "errors"), count, "{t}: {r:?}");
                assert_eq!(r["error_type"].as_u64(), rej["type"].as_u64(), "{t}");
                assert_eq!(r["error_code"].as_u64(), rej["code"].as_u64(), "{t}");
                assert_eq!(r["responder"].as_str(), rej["responder"].as_str(), "{t}");
                assert!(
                    r["error_name"]
                        .as_str()
                        .is_some_and(|n| n.to_lowercase().contains("prohibited")),
                    "{r:?}"
                );
            }
        }
    }
    seen
}

/// Sends signal `sig` to `child` (still running, not yet reaped).
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0);
}

/// What `asdic.stamps` (and `-v`) say for `engine` in a run that keeps per-probe state
/// (ping, trace, sweep): the socket engines time from the kernel's send and receive stamps;
/// XDP (copy mode on veth) stamps each probe right before the call that sends it alone, and
/// each frame as its XDP program begins.
pub fn stamps_of(engine: &str) -> String {
    if engine == "xdp" {
        "tx=user-space-per-call rx=xdp-hook clock=monotonic".to_string()
    } else {
        "tx=kernel-software rx=kernel-software clock=monotonic".to_string()
    }
}
