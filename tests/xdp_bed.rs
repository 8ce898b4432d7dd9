//! The AF_XDP engine (`--engine xdp`, and `auto`, which tries it first) against the veth test
//! bed's ground truth; the XDP program's life cycle on the interface (gone after a normal end,
//! SIGINT, a panic and SIGKILL; a leftover replaced, a foreign one left alone); clear failures
//! and fallbacks where XDP cannot attach.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use asdic_tests::{
    Bed, RunMeta, Truth, assert_ping_ground_truth, classify, col_u64, low16, ping_to_parquet,
    read_parquet, require_bed, responding, scratch, stderr_of,
};

fn engine(meta: &RunMeta) -> Option<&str> {
    meta.engine.as_deref()
}

/// The XDP program attached to `dev` in the bed's namespace `role`, as iproute2 shows it
/// ("prog/xdp id N name asdic_filter ..."), if any.
fn xdp_on(bed: &Bed, role: &str, dev: &str) -> Option<String> {
    let o = bed.exec_in(role, &["ip", "-d", "link", "show", "dev", dev]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines()
        .find(|l| l.contains("prog/xdp"))
        .map(|l| l.trim().to_string())
}

fn engine_line(err: &str) -> &str {
    err.lines()
        .find(|l| l.starts_with("asdic: engine "))
        .unwrap_or_else(|| panic!("an engine line: {err}"))
}

#[test]
fn xdp_ipv4_slash16_matches_ground_truth_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("x16", &[]);
    let truth = bed.truth();
    let (rows, meta) = ping_to_parquet(
        &bed,
        "x16",
        &[
            "198.19.0.0/16",
            "--engine",
            "xdp",
            "--rate",
            "20000",
            "-W",
            "1s",
        ],
        65_536,
    );
    let seen = assert_ping_ground_truth(&truth, &rows, 1);
    let dead = (0..65_536u32)
        .filter(|x| x >> 8 != 77 && x % 97 == 13)
        .count() as u64;
    assert_eq!(seen, [65_536 - 256 - dead, dead, 256]);
    assert_eq!(engine(&meta), Some("xdp"));
    // Every request crossed the router exactly once: nothing sent twice, nothing lost.
    assert_eq!(bed.counter("seen4"), 65_536 - 256);
    assert_eq!(bed.counter("rejected"), 256);
    assert_eq!(
        xdp_on(&bed, "scan", "s0"),
        None,
        "program detached at the end"
    );
}

#[test]
fn xdp_ipv6_prefix_with_loss_matches_ground_truth_exactly() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("x6", &["--loss", "10"]);
    let truth = bed.truth();
    let (rows, meta) = ping_to_parquet(
        &bed,
        "x6",
        &[
            "2001:db8:1::4c00/118",
            "--engine",
            "xdp",
            "--rate",
            "10000",
            "-c",
            "3",
            "-i",
            "200ms",
        ],
        1024,
    );
    assert_eq!(engine(&meta), Some("xdp"));
    let sum = |k: &str| rows.iter().map(|r| col_u64(r, k)).sum::<u64>();
    let dead = rows
        .iter()
        .filter(|r| {
            let (v6, x) = low16(r["target"].as_str().unwrap());
            classify(&truth, v6, x) == Truth::Dead
        })
        .count() as u64;
    let (lossdrop, replied) = (bed.counter("lossdrop"), bed.counter("replied"));
    assert!(lossdrop > 100, "10% of ~2300 requests dropped: {lossdrop}");
    assert_eq!(sum("sent"), 3 * 1024);
    assert_eq!(sum("received"), replied, "every reply sent was matched");
    assert_eq!(sum("timeouts"), 3 * dead + lossdrop);
    assert_eq!(sum("errors"), 3 * 256, "the rejected /120, three times");
    assert_eq!(sum("duplicates") + sum("late"), 0);
}

#[test]
fn auto_scans_both_families_through_one_xdp_engine() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xs", &[]);
    let truth = bed.truth();
    let out = scratch("xs.parquet");
    let o = bed.asdic(&[
        "scan",
        "198.19.0.0/16",
        "2001:db8:1::4c00/118",
        "--no-default-blocklist",
        "-R",
        "20000",
        "--cooldown",
        "1",
        "--seed",
        "5",
        "-q",
        "-v",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line = engine_line(&err);
    assert!(
        line.contains("engine xdp:") && line.contains("auto: XDP attached, both families"),
        "{line}"
    );
    assert!(
        line.contains("from 198.18.0.1 ") && line.contains("and from 2001:db8:0:1::1 "),
        "each family's source and next hop: {line}"
    );
    assert!(!line.contains("engine raw"), "one engine: {line}");
    let (rows, meta) = read_parquet(&out);
    assert_eq!(engine(&meta), Some("xdp"));
    let want = responding(0..65_536, 0x4c00..0x5000);
    let mut got = HashSet::new();
    for r in &rows {
        let t = r["target"].as_str().unwrap().to_string();
        let (v6, x) = low16(&t);
        let outcome = r["outcome"].as_str().unwrap();
        match classify(&truth, v6, x) {
            Truth::Alive => assert_eq!(outcome, "reply", "{r:?}"),
            Truth::Rejected => assert_eq!(outcome, "error", "{r:?}"),
            Truth::Dead => panic!("a dead host has no row: {r:?}"),
        }
        assert!(got.insert(t), "one row per target");
    }
    assert_eq!(got, want, "exactly the responding targets");
    // Every probe of both families crossed the router once.
    assert_eq!(bed.counter("seen4"), 65_536 - 256);
    assert_eq!(bed.counter("seen6"), 1024 - 256);
    assert_eq!(xdp_on(&bed, "scan", "s0"), None);
}

/// `--engine xdp` takes a run of both families (it refused one before): one set of sockets,
/// both ethertypes, each family's own source address and next hop, exact per-target counts.
#[test]
fn xdp_pings_both_families_through_one_set_of_sockets() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xmix", &["--queues", "2"]);
    let truth = bed.truth();
    let (rows, meta) = ping_to_parquet(
        &bed,
        "xmix",
        &[
            "198.19.76.0/23",
            "2001:db8:1::4c00/119",
            "--engine",
            "xdp",
            "--rate",
            "5000",
            "-c",
            "2",
            "-i",
            "100ms",
        ],
        512 + 512,
    );
    let seen = assert_ping_ground_truth(&truth, &rows, 2);
    let dead = |v6: bool| {
        rows.iter()
            .filter(|r| {
                let (f, x) = low16(r["target"].as_str().unwrap());
                f == v6 && classify(&truth, f, x) == Truth::Dead
            })
            .count() as u64
    };
    let (dead4, dead6) = (dead(false), dead(true));
    assert!(dead4 > 0 && dead6 > 0, "both families have dead hosts");
    assert_eq!(seen, [1024 - 512 - dead4 - dead6, dead4 + dead6, 512]);
    assert_eq!(engine(&meta), Some("xdp"));
    assert_eq!(meta.families.as_deref(), Some("V4,V6"));
    // Each request crossed the router once, both families, over both queues.
    assert_eq!(bed.counter("seen4"), 2 * 256);
    assert_eq!(bed.counter("seen6"), 2 * 256);
    assert_eq!(xdp_on(&bed, "scan", "s0"), None);
}

/// Starts `asdic ARGS` in the bed, waits until the XDP program shows on s0, and returns the
/// child.
fn start_with_program(bed: &Bed, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    // Faults need the hooked build; the release binary reads no ASDIC_INJECT_* variable.
    let mut c = if env.is_empty() {
        bed.command(args)
    } else {
        bed.command_with_faults(args, env)
    };
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("starting asdic");
    let t0 = Instant::now();
    while xdp_on(bed, "scan", "s0").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the program never showed on s0"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn the_program_is_gone_after_sigint_sigkill_and_a_panic() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xlife", &[]);
    let long = [
        "ping",
        "198.19.0.0/20",
        "--engine",
        "xdp",
        "-c",
        "1000",
        "-i",
        "1s",
        "--rate",
        "5000",
        "-q",
    ];
    // While it runs the program is asdic's.
    let child = start_with_program(&bed, &long, &[]);
    let shown = xdp_on(&bed, "scan", "s0").unwrap();
    assert!(shown.contains("asdic_filter"), "{shown}");
    // SIGINT: stops, waits the timeout, detaches. (Given once the run is under way: the
    // handler is installed right after the engines open.)
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let err = stderr_of(&o);
    // 130: interrupted by SIGINT (results written).
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(xdp_on(&bed, "scan", "s0"), None, "gone after SIGINT");

    // SIGKILL: no code of ours runs; the kernel closes the link with the process.
    let mut child = start_with_program(&bed, &long, &[]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(xdp_on(&bed, "scan", "s0"), None, "gone after SIGKILL");

    // A panic in the receiver thread.
    let child = start_with_program(&bed, &long, &[("ASDIC_INJECT_PANIC", "rx")]);
    let o = child.wait_with_output().unwrap();
    let err = stderr_of(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("injected panic"), "{err}");
    assert_eq!(xdp_on(&bed, "scan", "s0"), None, "gone after a panic");

    // And the interface still works for the next run.
    let o = bed.asdic(&["ping", "198.19.0.1", "--engine", "xdp", "--format", "jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr_of(&o));
}

#[test]
fn a_leftover_program_is_replaced_and_a_foreign_one_left_alone() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xleft", &[]);
    let dir = scratch("xleft");
    std::fs::create_dir_all(&dir).unwrap();
    let (filter, responder) = (dir.join("filter.o"), dir.join("responder.o"));
    std::fs::write(&filter, asdic_xdp::FILTER_OBJECT).unwrap();
    std::fs::write(&responder, asdic_xdp::RESPONDER_OBJECT).unwrap();

    // A leftover of a killed run attached the legacy (netlink) way: replaced, and said so.
    let attach = |obj: &std::path::Path| {
        let o = bed.exec(&[
            "ip",
            "link",
            "set",
            "dev",
            "s0",
            "xdpdrv",
            "obj",
            obj.to_str().unwrap(),
            "sec",
            "xdp",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    attach(&filter);
    let shown = xdp_on(&bed, "scan", "s0").expect("attached");
    // Our object loaded by iproute2 bears no mark (our loader writes it): a namesake of
    // asdic_filter, not a leftover of ours, is left alone (issue 26).
    let o = bed.asdic(&["ping", "198.19.0.1", "--engine", "xdp", "-q"]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert_eq!(xdp_on(&bed, "scan", "s0").as_deref(), Some(shown.as_str()));
    // Marked as our loader marks it: a leftover of ours.
    let id: u32 = shown
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a program id in {shown}"));
    asdic_xdp::mark_as_filter(id).expect("mark the program");
    let o = bed.asdic(&["ping", "198.19.0.1", "--engine", "xdp", "--format", "jsonl"]);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        engine_line(&err).contains("removed a leftover asdic_filter"),
        "says it replaced the leftover: {err}"
    );
    assert_eq!(xdp_on(&bed, "scan", "s0"), None);

    // Someone else's program: asdic refuses XDP and never removes it.
    attach(&responder);
    let o = bed.asdic(&["ping", "198.19.0.1", "--engine", "xdp", "-q"]);
    let err = stderr_of(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("--engine xdp") && err.contains("s0"), "{err}");
    let still = xdp_on(&bed, "scan", "s0").expect("the foreign program stays");
    assert!(still.contains("asdic_responder"), "{still}");
    // auto goes on without XDP and says why.
    let o = bed.asdic(&["ping", "198.19.0.1", "--format", "jsonl"]);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line = engine_line(&err);
    assert!(
        line.starts_with("asdic: engine raw:") && line.contains("XDP not used"),
        "{line}"
    );
    bed.exec(&["ip", "link", "set", "dev", "s0", "xdp", "off"]);
}

#[test]
fn xdp_where_it_cannot_attach_fails_clearly_and_auto_falls_back() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xno", &[]);
    // A bridge has no native XDP. Its /24 is inside the bed's 198.18.0.0/15 and leads
    // nowhere: probes to it are dropped in the scanner namespace.
    for cmd in [
        &["ip", "link", "add", "b0", "type", "bridge"][..],
        &["ip", "link", "set", "b0", "up"],
        &["ip", "addr", "add", "198.18.9.1/24", "dev", "b0"],
    ] {
        let o = bed.exec(cmd);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = bed.asdic(&[
        "ping",
        "198.18.9.5",
        "--engine",
        "xdp",
        "--xdp-mode",
        "native",
        "-G",
        "02:00:00:00:00:01",
        "-q",
    ]);
    let err = stderr_of(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("--engine xdp") && err.contains("b0") && err.contains("EOPNOTSUPP"),
        "names the interface and the reason: {err}"
    );
    assert!(err.lines().count() <= 3, "short: {err}");

    // Probes too large for one frame: XDP does not fragment, auto uses raw sockets.
    let o = bed.asdic(&["ping", "198.19.0.1", "-s", "4000", "--format", "jsonl"]);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let line = engine_line(&err);
    assert!(
        line.starts_with("asdic: engine raw:") && line.contains("does not fragment"),
        "{line}"
    );
    assert_eq!(bed.counter("replied"), 1);
}

/// Received replies of `ping ARGS` (iputils) run in the bed's scanner namespace.
fn system_ping(bed: &Bed, args: &[&str]) -> (u64, String) {
    let o = bed.exec(&[&["ping", "-n", "-q"][..], args].concat());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let got = out
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary in {out}"));
    (got, out)
}

/// Other programs' ICMP is not ours: during an XDP scan (whose identifiers span all 65,536),
/// the system `ping` with no payload, 2 bytes (too short for a session) and its default 56
/// bytes (another program's data) loses nothing — the program passes what does not hold the
/// whole stamp of this run, and the scan still finds the bed's exact live set.
#[test]
fn other_programs_keep_their_pings_during_an_xdp_scan() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xsp", &[]);
    let out = scratch("xsp.parquet");
    let child = start_with_program(
        &bed,
        &[
            "scan",
            "198.19.0.0/16",
            "--no-default-blocklist",
            "--engine",
            "xdp",
            "-R",
            "8000",
            "--cooldown",
            "1",
            "-q",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    for size in ["0", "2", "56"] {
        let (got, text) = system_ping(
            &bed,
            &[
                "-c",
                "20",
                "-i",
                "0.05",
                "-W",
                "1",
                "-s",
                size,
                "198.19.1.1",
            ],
        );
        assert_eq!(got, 20, "ping -s {size} during the scan: {text}");
    }
    assert!(
        xdp_on(&bed, "scan", "s0").is_some(),
        "the pings ran while the program was attached"
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (rows, _) = read_parquet(&out);
    let got: HashSet<String> = rows
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    let want = responding(0..65_536, 0..0);
    assert_eq!(got, want, "exactly the responding targets");
}

/// A flood carrying the run's session (any probed host learns it) and identifiers, with
/// stamps whose MAC is wrong, from the router side while asdic pings the /16 on XDP: the
/// program drops every one of them (`asdic.kernel.xdp_drop_forged`), the AF_XDP ring never
/// fills, and the ping's result is the bed's exact ground truth (before, such a flood filled
/// the ring and live hosts were reported lost).
#[test]
fn a_session_flood_is_dropped_in_the_program_and_loses_no_reply() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xfl", &[]);
    let truth = bed.truth();
    let mut flood = bed
        .python("rtr", "flood.py")
        .args(["r0", "6"])
        .spawn()
        .expect("flood.py");
    let out = scratch("xfl.parquet");
    let o = bed.asdic(&[
        "ping",
        "198.19.0.0/16",
        "-R",
        "20000",
        "--engine",
        "xdp",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    let mut said = String::new();
    std::io::Read::read_to_string(flood.stdout.as_mut().unwrap(), &mut said).unwrap();
    assert!(flood.wait().unwrap().success());
    assert!(
        said.starts_with("ready"),
        "the flood learnt the session: {said}"
    );
    let sent: serde_json::Value = serde_json::from_str(said.lines().last().unwrap()).unwrap();
    let sent = sent["sent"].as_u64().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    let (rows, meta) = read_parquet(&out);
    assert_eq!(rows.len(), 65_536);
    assert_ping_ground_truth(&truth, &rows, 1);
    assert_eq!(meta.kernel_lost, Some(0), "{meta:?}");
    let dropped = meta.kernel_counter("xdp_drop_forged").unwrap();
    // What the flood sent while the ping ran reached the program and was dropped there (the
    // flood goes on a little after the ping ends).
    assert!(
        dropped >= 100_000 && dropped <= sent,
        "dropped {dropped} of {sent} in the program"
    );
    eprintln!("flood: {sent} sent, {dropped} dropped in the XDP program, 0 replies lost");
}

/// Families whose routes leave by different interfaces get one AF_XDP engine per interface:
/// here the scanner reaches the IPv6 hosts over a second link to the router (s1 – r2), added
/// inside the bed's namespaces (they go with the bed).
#[test]
fn families_that_leave_by_different_interfaces_get_an_engine_each() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xif", &[]);
    let rtr = format!("asdic-{}-rtr", bed.id());
    let steps: [(&str, Vec<&str>); 9] = [
        (
            "scan",
            vec![
                "ip", "link", "add", "s1", "type", "veth", "peer", "name", "r2", "netns", &rtr,
            ],
        ),
        (
            "scan",
            vec![
                "ip",
                "addr",
                "add",
                "2001:db8:0:9::1/64",
                "dev",
                "s1",
                "nodad",
            ],
        ),
        (
            "rtr",
            vec![
                "ip",
                "addr",
                "add",
                "2001:db8:0:9::2/64",
                "dev",
                "r2",
                "nodad",
            ],
        ),
        ("scan", vec!["ip", "link", "set", "s1", "up"]),
        ("rtr", vec!["ip", "link", "set", "r2", "up"]),
        ("rtr", vec!["sysctl", "-q", "net.ipv6.conf.r2.forwarding=1"]),
        (
            "scan",
            vec![
                "ip",
                "-6",
                "route",
                "replace",
                "2001:db8:1::/64",
                "via",
                "2001:db8:0:9::2",
                "dev",
                "s1",
            ],
        ),
        (
            "far",
            vec![
                "ip",
                "-6",
                "route",
                "add",
                "2001:db8:0:9::/64",
                "via",
                "2001:db8:0:2::1",
            ],
        ),
        ("scan", vec!["ip", "-6", "route", "get", "2001:db8:1::1"]),
    ];
    for (role, cmd) in &steps {
        let o = bed.exec_in(role, cmd);
        assert!(
            o.status.success(),
            "{role}: {cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let truth = bed.truth();
    let (rows, meta) = ping_to_parquet(
        &bed,
        "xif",
        &[
            "198.19.0.0/24",
            "2001:db8:1::/120",
            "--engine",
            "xdp",
            "--rate",
            "2000",
        ],
        512,
    );
    let seen = assert_ping_ground_truth(&truth, &rows, 1);
    assert_eq!(seen[0] + seen[1], 512);
    assert!(seen[1] >= 2, "dead hosts in both families: {seen:?}");
    assert_eq!(engine(&meta), Some("xdp"));
    // By default one short line: the engine and why it runs.
    let o = bed.asdic(&["ping", "198.19.0.1", "--engine", "xdp", "-q"]);
    let err = stderr_of(&o);
    assert_eq!(engine_line(&err), "asdic: engine xdp: AF_XDP (as asked)");
    assert!(!err.contains("in-flight table"), "{err}");
    // Its details with -v.
    let o = bed.asdic(&[
        "ping",
        "198.19.0.1",
        "2001:db8:1::1",
        "--engine",
        "xdp",
        "-q",
        "-v",
    ]);
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("in-flight table: "), "{err}");
    let line = engine_line(&err);
    assert!(
        line.contains("on s0 queue")
            && line.contains("; engine xdp: ")
            && line.contains("on s1 queue"),
        "an engine per interface: {line}"
    );
    for dev in ["s0", "s1"] {
        assert_eq!(
            xdp_on(&bed, "scan", dev),
            None,
            "{dev}: detached at the end"
        );
    }
}

/// A tracked run that sends one probe per call sends through a socket of its own on each
/// queue, so the receiver waiting on its socket does not run the sender's copy-mode TX path
/// (issue 28, item 7); a run in batches keeps one socket, whose receiver's polls help push
/// them. The start line says which, and both match the bed exactly.
#[test]
fn one_probe_per_call_sends_through_a_socket_of_its_own_and_batches_do_not() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("xts", &[]);
    let truth = bed.truth();
    for (extra, own) in [(&[][..], true), (&["--batch", "64"][..], false)] {
        let out = scratch(&format!("xts-{own}.parquet"));
        let mut args = vec![
            "ping",
            "198.19.1.0/24",
            "--engine",
            "xdp",
            "--rate",
            "20000",
            "-W",
            "1s",
            "-v",
            "-q",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = bed.asdic(&args);
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let line = engine_line(&err);
        assert_eq!(
            line.contains("TX through queue 0 (sending sockets of their own)"),
            own,
            "{line}"
        );
        let stamps = if own {
            "asdic: stamps: tx=user-space-per-call rx=xdp-hook clock=monotonic"
        } else {
            "asdic: stamps: tx=user-space-probe rx=xdp-hook clock=monotonic"
        };
        assert!(err.lines().any(|l| l == stamps), "{err}");
        let (rows, _) = read_parquet(&out);
        assert_eq!(rows.len(), 256);
        let seen = assert_ping_ground_truth(&truth, &rows, 1);
        let dead = (256..512u32).filter(|x| x % 97 == 13).count() as u64;
        assert_eq!(seen, [256 - dead, dead, 0], "{own}");
    }
}
