//! Issue 26, parts 1 and 5 on the bed: the XDP engine takes exactly what the kernel would
//! give the raw and io_uring engines, no more, no less.
//!
//! From the router side of the bed (`tests/support/xdp_accept.py` on r0), at the scanner's
//! interface: for dead hosts, their genuine reply (a valid stamp) wrapped in frames the kernel
//! drops (a bad IPv4 header checksum, an IPv6 payload length beyond the frame, a wrong
//! destination IP, a wrong destination MAC, an 802.1Q and an 802.1ad tag); for live hosts
//! whose requests the router drops, the only reply comes fragmented (IPv4 and IPv6), with IPv4
//! header options, or behind IPv6 extension headers (hop-by-hop and destination options; a
//! deep chain of six; a chain of seven, past what the program walks: the kernel's, read back
//! through the engine's raw socket). Every engine must give the bed's exact ground
//! truth, and the XDP program must count each category under its reason.

use std::io::{BufRead, BufReader};

use std::time::Instant;

use asdic_tests::{
    Bed, RunMeta, Truth, assert_ping_ground_truth, classify, read_parquet, require_bed, scratch,
    stderr_of,
};
use serde_json::Value;

/// 512 hosts per family: 198.19.0.0/23 and 2001:db8:1::/119 (6 dead each: index % 97 == 13).
const HOSTS: u32 = 512;

fn v4(x: u32) -> String {
    format!("198.19.{}.{}", x >> 8, x & 255)
}

fn v6(x: u32) -> String {
    format!("2001:db8:1::{x:x}")
}

fn list(xs: &[u32], f: fn(u32) -> String) -> String {
    if xs.is_empty() {
        return "-".into();
    }
    xs.iter().map(|&x| f(x)).collect::<Vec<_>>().join(",")
}

/// Live hosts answered by the injector only: IPv4 fragments, IPv6 extension headers, a deep
/// chain, IPv6 fragments.
const FRAG4: [u32; 6] = [1, 2, 3, 4, 5, 6];
const EXT6: [u32; 4] = [1, 2, 3, 4];
const DEEP6: [u32; 4] = [5, 6, 7, 8];
const FRAG6: [u32; 4] = [9, 10, 11, 12];
const OPTS4: [u32; 4] = [7, 8, 9, 10];
const DEEP7: [u32; 4] = [14, 15, 16, 17];

/// One ping run on `engine` with the injector on r0; (rows, metadata, injector counts).
fn run(
    bed: &Bed,
    engine: &str,
    family6: bool,
    dead: &[u32],
) -> (
    Vec<std::collections::HashMap<String, Value>>,
    RunMeta,
    Value,
) {
    let none: &[u32] = &[];
    let (dead4, dead6) = if family6 { (none, dead) } else { (dead, none) };
    type Sets<'a> = (
        &'a [u32],
        &'a [u32],
        &'a [u32],
        &'a [u32],
        &'a [u32],
        &'a [u32],
    );
    let (frag4, ext6, deep6, frag6, opts4, deep7): Sets = if family6 {
        (none, &EXT6, &DEEP6, &FRAG6, none, &DEEP7)
    } else {
        (&FRAG4, none, none, none, &OPTS4, none)
    };
    let mut inj = bed
        .python("rtr", "xdp_accept.py")
        .arg(HOSTS.to_string())
        .arg(list(dead4, v4))
        .arg(list(dead6, v6))
        .arg(list(frag4, v4))
        .arg(list(ext6, v6))
        .arg(list(deep6, v6))
        .arg(list(frag6, v6))
        .arg(list(opts4, v4))
        .arg(list(deep7, v6))
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(inj.stderr.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the injector did not start");

    let name = format!("xa-{engine}-{}", if family6 { 6 } else { 4 });
    let out = scratch(&format!("{name}.parquet"));
    let prefix = if family6 {
        "2001:db8:1::/119"
    } else {
        "198.19.0.0/23"
    };
    let o = bed.asdic(&[
        "ping",
        prefix,
        "--engine",
        engine,
        "--rate",
        "5000",
        "-W",
        "1s",
        "-q",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = stderr_of(&o);
    let mut line = String::new();
    BufReader::new(inj.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(inj.wait().unwrap().success());
    assert_eq!(
        o.status.code(),
        Some(1),
        "{name}: dead hosts: exit 1\n{err}"
    );
    let sent: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let (rows, meta) = read_parquet(&out);
    (rows, meta, sent)
}

#[test]
fn xdp_raw_and_uring_accept_exactly_what_the_kernel_accepts() {
    let Some(()) = require_bed() else { return };
    let t0 = Instant::now();
    let bed = Bed::up("xa1", &[]);
    let truth = bed.truth();
    let dead: Vec<u32> = (0..HOSTS)
        .filter(|&x| classify(&truth, false, x) == Truth::Dead)
        .collect();
    assert_eq!(dead.len(), 6, "{dead:?}");
    for x in FRAG4
        .iter()
        .chain(&EXT6)
        .chain(&DEEP6)
        .chain(&FRAG6)
        .chain(&OPTS4)
        .chain(&DEEP7)
    {
        assert_eq!(classify(&truth, false, *x), Truth::Alive);
    }

    // The router drops the requests to the hosts the injector answers in their stead.
    let rules = scratch("xa1.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet xa_accept {{\n  chain xa_forward {{\n    type filter hook forward priority -10;\n    \
             ip daddr {{ {} }} drop\n    ip6 daddr {{ {} }} drop\n  }}\n}}\n",
            [list(&FRAG4, v4), list(&OPTS4, v4)]
                .join(",")
                .replace(',', ", "),
            [
                list(&EXT6, v6),
                list(&DEEP6, v6),
                list(&FRAG6, v6),
                list(&DEEP7, v6)
            ]
                .join(",")
                .replace(',', ", ")
        ),
    )
    .unwrap();
    let o = bed.exec_in("rtr", &["nft", "-f", rules.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));

    let mut report = vec![];
    for family6 in [false, true] {
        for engine in ["xdp", "raw", "uring"] {
            let (rows, meta, sent) = run(&bed, engine, family6, &dead);
            let what = format!("{engine} IPv{}", if family6 { 6 } else { 4 });
            let n = |k: &str| sent[k].as_u64().unwrap();
            // The injector saw every probe and sent every category.
            let req = if family6 { "requests6" } else { "requests4" };
            assert_eq!(n(req), u64::from(HOSTS), "{what}: {sent}");
            for k in ["dst_ip", "dst_mac", "vlan", "qinq"] {
                assert_eq!(n(k), 6, "{what}: {k}: {sent}");
            }
            if family6 {
                assert_eq!((n("ext6"), n("deep6"), n("frag6")), (4, 4, 4), "{sent}");
                assert_eq!((n("bad_plen"), n("deep7")), (6, 4), "{sent}");
            } else {
                assert_eq!((n("bad_csum"), n("frag4"), n("opts4")), (6, 6, 4), "{sent}");
            }

            // The same exact ground truth on every engine: the dead stay dead whatever
            // arrived for them, the live answered only in fragments or behind extension
            // headers are alive.
            assert_eq!(rows.len(), HOSTS as usize, "{what}");
            let seen = assert_ping_ground_truth(&truth, &rows, 1);
            assert_eq!(seen, [u64::from(HOSTS) - 6, 6, 0], "{what}");
            assert_eq!(meta.kernel_lost, Some(0), "{what}: {meta:?}");

            let k = |name: &str| {
                meta.kernel_counter(name)
                    .unwrap_or_else(|| panic!("{what}: asdic.kernel.{name} in {meta:?}"))
            };
            let counters = [
                "xdp_redirected",
                "xdp_pass_vlan",
                "xdp_pass_dst_mac",
                "xdp_pass_bad_header",
                "xdp_pass_dst_ip",
                "xdp_pass_fragment",
                "xdp_pass_ext_chain",
                "xdp_pass_not_ours",
                "xdp_via_kernel",
                "xdp_redirect_failed",
                "xdp_misaddressed",
            ];
            let got: Vec<(&str, u64)> = counters.iter().map(|&c| (c, k(c))).collect();
            if engine == "xdp" {
                // Each category under its reason, exactly.
                assert_eq!(k("xdp_pass_vlan"), 12, "{what}: 802.1Q + 802.1ad: {got:?}");
                assert_eq!(k("xdp_pass_dst_mac"), 6, "{what}: {got:?}");
                // IPv4: the bad header checksums; IPv6: the payload lengths beyond the frame.
                assert_eq!(k("xdp_pass_bad_header"), 6, "{what}: {got:?}");
                // Neighbour discovery (to solicited-node multicast) also lands there.
                assert!(k("xdp_pass_dst_ip") >= 6, "{what}: {got:?}");
                let fragments = if family6 { 2 * 4 } else { 2 * 6 };
                assert_eq!(k("xdp_pass_fragment"), fragments, "{what}: {got:?}");
                // Past the walk: passed, and the kernel's to deliver.
                let deeper = if family6 { 4 } else { 0 };
                assert_eq!(k("xdp_pass_ext_chain"), deeper, "{what}: {got:?}");
                assert!(
                    k("xdp_via_kernel") >= fragments / 2 + deeper,
                    "{what}: every reassembled reply read back: {got:?}"
                );
                assert_eq!(k("xdp_redirect_failed"), 0, "{what}: {got:?}");
                // Nothing the program handed over failed the same checks in userspace.
                assert_eq!(k("xdp_misaddressed"), 0, "{what}: {got:?}");
                // Every reply but the fragmented ones redirected (ext headers included).
                let live = u64::from(HOSTS) - 6 - fragments / 2 - deeper;
                assert!(k("xdp_redirected") >= live, "{what}: {got:?}");
            } else {
                assert!(got.iter().all(|&(_, v)| v == 0), "{what}: {got:?}");
            }
            report.push(format!("{what}: {sent} {got:?}"));
        }
    }
    let took = t0.elapsed();
    println!("{}\ntook {took:?}", report.join("\n"));
    assert!(took.as_secs() < 90, "took {took:?}");
}
