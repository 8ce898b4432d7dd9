//! Least privilege on the test bed: asdic run as an unprivileged user (nobody) from a copy of
//! the binary carrying exactly the documented file capabilities works with each engine; with
//! one capability taken away, the error names exactly that one; and every thread of a running
//! asdic holds no capability once its engines are open.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use asdic_tests::{Bed, Truth, asdic_bin, classify, read_parquet, require_bed, stderr_of};

const RAW: &str = "cap_net_raw";
const XDP: [&str; 5] = [
    "cap_net_raw",
    "cap_net_admin",
    "cap_bpf",
    "cap_perfmon",
    "cap_ipc_lock",
];

/// A directory under /tmp that any user (nobody too) can write: the binary copies and the
/// output go there. Removed when dropped (copies of the binary are ~90 MB each); one a failed
/// test left is removed by a later run ([`asdic_tests::sweep_scratch`]).
fn world_dir(tag: &str) -> WorldDir {
    let d = std::env::temp_dir().join(format!("asdic-priv-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    WorldDir(d)
}

/// A [`world_dir`], removed when dropped.
struct WorldDir(PathBuf);

impl std::ops::Deref for WorldDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorldDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of asdic with file capabilities `caps` (none: no capabilities at all).
fn binary_with(dir: &Path, name: &str, caps: &[&str]) -> PathBuf {
    let bin = dir.join(name);
    std::fs::copy(asdic_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    if !caps.is_empty() {
        let o = Command::new("setcap")
            .arg(format!("{}+ep", caps.join(",")))
            .arg(&bin)
            .output()
            .expect("setcap (libcap2-bin)");
        assert!(o.status.success(), "setcap: {}", stderr_of(&o));
    }
    bin
}

/// `bin ARGS` in the bed's scanner namespace as user nobody (no groups, no inheritable or
/// ambient capabilities: only the file's).
fn as_nobody(bed: &Bed, bin: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &format!("asdic-{}-scan", bed.id())])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin)
        .args(args)
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("running asdic as nobody")
}

const PING: &[&str] = &[
    "ping",
    "198.19.0.1",
    "198.19.0.2",
    "198.19.0.13",
    "-c",
    "2",
    "-i",
    "100ms",
    "-W",
    "300ms",
    "--no-progress",
    "-q",
];

fn ping_as_nobody(bed: &Bed, bin: &Path, engine: &str, out: &Path) -> Output {
    let mut args = PING.to_vec();
    args.extend(["--engine", engine, "-o", out.to_str().unwrap()]);
    run(&mut as_nobody(bed, bin, &args))
}

/// The XDP engine's UMEM for a ping (bytes): 12 MiB.
const PING_UMEM: u64 = 12 << 20;

/// Whether this process's RLIMIT_MEMLOCK (inherited by asdic) holds `bytes`. (It cannot be
/// raised here: the sandbox has no CAP_SYS_RESOURCE; Debian's default is 8 MiB.)
fn memlock_holds(bytes: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit into a live local.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    assert_eq!(r, 0);
    lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= bytes
}

/// The rows say what the bed's rules say: 198.19.0.1 and .2 answer both probes, 198.19.0.13
/// (index 13, dead on the bed) none.
fn check_ping(out: &Path, engine: &str) {
    let (rows, meta) = read_parquet(out);
    assert_eq!(meta.engine.as_deref(), Some(engine));
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let t = r["target"].as_str().unwrap();
        let got = r["received"].as_u64().unwrap();
        let want = if t == "198.19.0.13" { 0 } else { 2 };
        assert_eq!(got, want, "{t}: {r:?}");
    }
}

#[test]
fn each_engine_runs_unprivileged_with_exactly_its_documented_capabilities() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("pv1", &[]);
    let truth = bed.truth();
    assert_eq!(classify(&truth, false, 13), Truth::Dead);
    assert_eq!(classify(&truth, false, 1), Truth::Alive);
    assert_eq!(classify(&truth, false, 2), Truth::Alive);
    let dir = world_dir("engines");
    let raw_bin = binary_with(&dir, "asdic-raw", &[RAW]);
    let xdp_bin = binary_with(&dir, "asdic-xdp", &XDP);
    for engine in ["raw", "uring"] {
        let out = dir.join(format!("{engine}.parquet"));
        let o = ping_as_nobody(&bed, &raw_bin, engine, &out);
        assert_eq!(o.status.code(), Some(1), "{engine}: {}", stderr_of(&o));
        check_ping(&out, engine);
    }
    let out = dir.join("xdp.parquet");
    let o = ping_as_nobody(&bed, &xdp_bin, "xdp", &out);
    assert_eq!(o.status.code(), Some(1), "xdp: {}", stderr_of(&o));
    check_ping(&out, "xdp");
    // The program is gone with the run, although the run had dropped its capabilities.
    let link = bed.exec(&["ip", "-d", "link", "show", "s0"]);
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("prog/xdp"), "{link}");
}

#[test]
fn a_missing_capability_is_named_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("pv2", &[]);
    let dir = world_dir("missing");
    // No capability at all: the socket engines name CAP_NET_RAW and exit 4.
    let none = binary_with(&dir, "asdic-none", &[]);
    let o = ping_as_nobody(&bed, &none, "raw", &dir.join("none.parquet"));
    assert_eq!(o.status.code(), Some(4), "{}", stderr_of(&o));
    let err = stderr_of(&o);
    assert!(
        err.contains("CAP_NET_RAW") && err.contains("setcap"),
        "{err}"
    );

    // The XDP set less one: the error names that one and no other.
    for (i, cap) in XDP.iter().enumerate() {
        let caps: Vec<&str> = XDP
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, c)| *c)
            .collect();
        let bin = binary_with(&dir, &format!("asdic-no-{cap}"), &caps);
        let upper = cap.to_ascii_uppercase();
        let out = dir.join(format!("xdp-no-{cap}.parquet"));
        let o = ping_as_nobody(&bed, &bin, "xdp", &out);
        let err = stderr_of(&o);
        if *cap == "cap_ipc_lock" && memlock_holds(PING_UMEM) {
            // Without CAP_IPC_LOCK, a memlock limit that holds the UMEM does instead.
            assert_eq!(o.status.code(), Some(1), "{err}");
            check_ping(&out, "xdp");
            continue;
        }
        assert_eq!(o.status.code(), Some(4), "without {cap}: {err}");
        if *cap == "cap_ipc_lock" {
            assert!(
                err.contains("RLIMIT_MEMLOCK") && err.contains("CAP_IPC_LOCK is missing"),
                "{err}"
            );
        } else {
            assert!(
                err.contains(&format!("missing {upper} ")),
                "without {cap}: {err}"
            );
            for other in XDP.iter().filter(|c| *c != cap && **c != "cap_ipc_lock") {
                let other = other.to_ascii_uppercase();
                assert!(
                    !err.contains(&format!("missing {other}")),
                    "without {cap}, {other} named missing: {err}"
                );
            }
        }
        // auto falls back to sockets (CAP_NET_RAW is there unless it is the one missing) and
        // says why XDP was not used.
        if *cap != "cap_net_raw" {
            let out = dir.join(format!("auto-no-{cap}.parquet"));
            let o = ping_as_nobody(&bed, &bin, "auto", &out);
            assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
            let err = stderr_of(&o);
            assert!(err.contains("XDP not used"), "{err}");
            check_ping(&out, "raw");
        }
    }
}

/// The capability sets of every thread of process `pid`: (thread name, CapEff, CapPrm).
fn thread_caps(pid: u32) -> Vec<(String, u64, u64)> {
    let mut v = vec![];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return v;
    };
    for t in tasks.flatten() {
        let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(u64::MAX)
        };
        let name = s
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("")
            .trim()
            .to_string();
        v.push((name, field("CapEff:"), field("CapPrm:")));
    }
    v
}

#[test]
fn every_thread_drops_every_capability_once_the_engines_are_open() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("pv3", &[]);
    let dir = world_dir("drop");
    let targets = dir.join("targets.txt");
    std::fs::write(&targets, "198.19.0.1\n198.19.0.2\n").unwrap();
    std::fs::set_permissions(&targets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let xdp_bin = binary_with(&dir, "asdic-xdp", &XDP);
    let sweep = |engine: &'static str| -> Vec<&str> {
        vec![
            "sweep",
            targets.to_str().unwrap(),
            "--every",
            "200ms",
            "--timeout",
            "100ms",
            "--engine",
            engine,
        ]
    };
    // As nobody with the XDP set, and as root (where dropping matters as much).
    let mut runs = vec![(
        "nobody",
        as_nobody(&bed, &xdp_bin, &sweep("xdp"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )];
    runs.push((
        "root",
        bed.command(&sweep("raw"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    for (who, child) in runs {
        // `ip netns exec` and prlimit/setpriv exec into asdic: same pid. Wait for its threads.
        let pid = child.id();
        let t0 = Instant::now();
        let mut seen = vec![];
        while t0.elapsed() < Duration::from_secs(10) {
            seen = thread_caps(pid);
            let asdic = seen.iter().any(|(n, _, _)| n.starts_with("asdic"));
            if asdic && seen.len() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        seen = thread_caps(pid);
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let o = child.wait_with_output().unwrap();
        assert!(
            seen.len() >= 3,
            "{who}: threads {seen:?}; {}",
            stderr_of(&o)
        );
        for (name, eff, prm) in &seen {
            assert_eq!(
                (*eff, *prm),
                (0, 0),
                "{who}: thread {name} keeps capabilities"
            );
        }
        let err = stderr_of(&o);
        assert!(err.contains("engine "), "{who}: {err}");
    }
}

#[test]
fn a_root_run_that_could_not_write_its_output_stops_before_sending() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("pv4", &[]);
    // Another user's directory, as a home directory is: root writes there only with
    // CAP_DAC_OVERRIDE, which asdic drops once its engines are open.
    let theirs = std::env::temp_dir().join(format!("asdic-priv-{}-theirs", std::process::id()));
    let _ = std::fs::remove_dir_all(&theirs); // from an earlier process with this pid
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fleet_dir = world_dir("fleet");
    let fleet = fleet_dir.join("fleet.txt");
    std::fs::write(&fleet, "198.19.0.1\n198.19.0.2\n").unwrap();
    let at = |name: &str| theirs.join(name).to_str().unwrap().to_string();
    let (scan, ping, trace) = (at("scan.parquet"), at("ping.parquet"), at("trace.parquet"));
    let dir = theirs.to_str().unwrap().to_string();
    let scan_args = |out: &str| {
        let mut v = vec![
            "scan",
            "198.19.0.0/28",
            "--rate",
            "1000",
            "--cooldown",
            "300ms",
        ];
        v.extend(["--no-default-blocklist", "-q", "-o"]);
        v.push(out);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let runs: Vec<(&str, &str, Vec<String>)> = vec![
        ("-o", &scan, scan_args(&scan)),
        (
            "-o",
            &ping,
            [
                "ping",
                "198.19.0.1",
                "-c",
                "3",
                "-i",
                "100ms",
                "-q",
                "-o",
                &ping,
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "-o",
            &trace,
            ["trace", "198.19.0.1", "-o", &trace]
                .map(String::from)
                .to_vec(),
        ),
        (
            "--output",
            &dir,
            [
                "sweep",
                fleet.to_str().unwrap(),
                "--every",
                "200ms",
                "--rounds",
                "3",
                "--output",
                &dir,
            ]
            .map(String::from)
            .to_vec(),
        ),
    ];
    for (flag, path, args) in &runs {
        let seen = bed.counter("seen4");
        let o = bed.asdic(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{flag} {path}"))
                && err.contains("Permission denied")
                && err.contains("CAP_DAC_OVERRIDE"),
            "{args:?}: {err}"
        );
        // Refused once the engines are open and the capabilities dropped, before any probe.
        assert!(
            !err.contains("asdic: sent "),
            "{args:?} got under way: {err}"
        );
        assert_eq!(bed.counter("seen4"), seen, "{args:?} sent probes");
        let left: Vec<_> = std::fs::read_dir(&theirs).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
    // The same scan into a directory root owns runs: the bed sees its probes.
    let ours_dir = world_dir("ours");
    let ours = ours_dir.join("scan.parquet");
    let seen = bed.counter("seen4");
    let o = bed.asdic(
        &scan_args(ours.to_str().unwrap())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(bed.counter("seen4") > seen, "the control scan sent nothing");
    let truth = bed.truth();
    let alive = (0..16).filter(|&x| classify(&truth, false, x) == Truth::Alive);
    assert_eq!(
        read_parquet(&ours).0.len(),
        alive.count(),
        "one row per hit"
    );
    std::fs::remove_dir_all(&theirs).unwrap();
}
