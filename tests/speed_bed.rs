//! The speed bed (`scripts/bed.sh up ID --speed`): asdic-responder answers in XDP on the far
//! side; pings from the scanner namespace go through the kernel stack (the GRO/NAPI path on
//! s0). Checks the ground truth against the responder's counters, total loss, and that the
//! XDP program goes away when the responder is killed or the bed torn down.
//!
//! Needs root and a built `asdic-responder` (`cargo build -p asdic-xdp`, same profile).

use std::process::Command;
use std::time::{Duration, Instant};

use asdic_tests::{Bed, require_bed, stderr_of};
use serde_json::Value;

/// `n` pings from the scanner namespace; how many were answered.
fn ping(bed: &Bed, addr: &str, n: u32) -> u64 {
    let fam = if addr.contains(':') { "-6" } else { "-4" };
    let count = n.to_string();
    let o = bed.exec(&[
        "ping", fam, "-n", "-q", "-c", &count, "-i", "0.2", "-W", "1", addr,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    out.split(',')
        .find_map(|part| part.trim().strip_suffix(" received")?.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary in {out}{}", stderr_of(&o)))
}

fn counters(truth: &Value) -> [u64; 6] {
    let c = &truth["counters"];
    [
        "seen4", "seen6", "replied", "deaddrop", "lossdrop", "passed",
    ]
    .map(|k| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("counter {k} in {truth}"))
    })
}

/// Whether f0 in the far namespace carries an XDP program, per `ip link`.
fn far_has_xdp(bed: &Bed) -> bool {
    let o = bed.exec_in("far", &["ip", "link", "show", "dev", "f0"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    String::from_utf8_lossy(&o.stdout).contains("xdp")
}

#[test]
fn speed_bed_ground_truth_through_the_kernel_stack() {
    if require_bed().is_none() {
        return;
    }
    let bed = Bed::up_speed("st1", &[]);
    let t = bed.truth();
    assert_eq!(t["speed"], Value::Bool(true));
    assert_eq!(t["far_ns"], "asdic-st1-far");
    assert_eq!(t["prefix4"], "198.19.0.0/16");
    assert_eq!(t["prefix6"], "2001:db8:1::/64");
    assert_eq!(
        (t["dead_mod"].as_u64(), t["dead_rem"].as_u64()),
        (Some(97), Some(13))
    );
    assert_eq!(t["dead4_count"].as_u64(), Some(676));
    assert_eq!(t["loss_ppm"].as_u64(), Some(0));
    assert_eq!(
        counters(&t)[..5],
        [0; 5],
        "up leaves the counters at zero: {t}"
    );
    let link = bed.exec_in("far", &["ip", "-o", "link", "show", "dev", "f0"]);
    let mac = t["gateway_mac"].as_str().expect("gateway_mac");
    assert!(
        String::from_utf8_lossy(&link.stdout).contains(mac),
        "gateway_mac {mac} is f0's"
    );

    assert_eq!(ping(&bed, "198.19.1.2", 3), 3, "live IPv4");
    assert_eq!(ping(&bed, "198.19.0.13", 2), 0, "dead IPv4 (13 mod 97)");
    assert_eq!(ping(&bed, "2001:db8:1::1:5", 3), 3, "live IPv6");
    assert_eq!(ping(&bed, "2001:db8:1::d", 2), 0, "dead IPv6");
    // bits 16..63 set: no host index, never dead
    assert_eq!(ping(&bed, "2001:db8:1::1:d", 1), 1, "IPv6 beyond the index");
    // the far side's own address: the kernel answers (XDP passes it)
    assert_eq!(ping(&bed, "198.18.0.2", 1), 1);

    let [seen4, seen6, replied, deaddrop, lossdrop, passed] = counters(&bed.truth());
    assert_eq!((seen4, seen6), (5, 6));
    assert_eq!((replied, deaddrop, lossdrop), (7, 4, 0));
    assert!(passed >= 1, "the ping to 198.18.0.2 and ARP/ND are passed");
}

#[test]
fn speed_bed_total_loss() {
    if require_bed().is_none() {
        return;
    }
    let bed = Bed::up_speed("st2", &["--loss-ppm", "1000000", "--dead-mod", "0"]);
    assert_eq!(bed.truth()["loss_ppm"].as_u64(), Some(1_000_000));
    assert_eq!(ping(&bed, "198.19.0.1", 3), 0);
    assert_eq!(ping(&bed, "2001:db8:1::1", 3), 0);
    let [seen4, seen6, replied, deaddrop, lossdrop, _] = counters(&bed.truth());
    assert_eq!((seen4, seen6, replied, deaddrop, lossdrop), (3, 3, 0, 0, 6));
}

#[test]
fn responder_detaches_when_killed_and_on_teardown() {
    if require_bed().is_none() {
        return;
    }
    let bed = Bed::up_speed("st3", &[]);
    let p = bed
        .in_netns("far", || asdic_xdp::attached_program("f0"))
        .expect("netlink")
        .expect("the responder is attached");
    assert_eq!(p.name, "asdic_responder");
    assert!(far_has_xdp(&bed));

    // SIGKILL: no clean-up code runs, the kernel closes the bpf_link with the process.
    let pid_file = format!("/run/asdic-bed/{}.responder.pid", bed.id());
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let pid = pid.trim();
    let o = Command::new("kill").args(["-KILL", pid]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = bed
        .in_netns("far", || asdic_xdp::attached_program("f0"))
        .expect("netlink");
    assert_eq!(after, None, "a killed responder leaves no program behind");
    assert!(!far_has_xdp(&bed));
    assert_eq!(ping(&bed, "198.19.0.1", 1), 0, "nobody answers any more");

    // Teardown of a bed whose responder runs: the responder is stopped with the bed.
    let bed2 = Bed::up_speed("st4", &[]);
    let pid_file = format!("/run/asdic-bed/{}.responder.pid", bed2.id());
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    drop(bed2);
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "bed.sh down stops the responder"
    );
    assert!(!std::path::Path::new("/run/netns/asdic-st4-far").exists());
}

#[test]
fn run_with_a_speed_bed() {
    if require_bed().is_none() {
        return;
    }
    let o = Command::new(asdic_tests::root().join("scripts/bed.sh"))
        .args([
            "run",
            "st5",
            "--speed",
            "--",
            "ping",
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            "1",
            "198.19.0.1",
        ])
        .env("ASDIC_RESPONDER", asdic_tests::responder_bin())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(!std::path::Path::new("/run/netns/asdic-st5-scan").exists());
    let o = Command::new(asdic_tests::root().join("scripts/bed.sh"))
        .args(["up", "st5", "--speed", "--loss", "5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "--loss is for the nftables bed");
    assert!(stderr_of(&o).contains("--loss-ppm"), "{}", stderr_of(&o));
}
