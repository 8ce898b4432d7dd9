//! What `asdic_filter` (xdp/bpf/filter.bpf.c) costs per frame, with and without its keyed
//! check: the kernel runs the program, loaded but attached nowhere, on crafted frames
//! (`BPF_PROG_TEST_RUN`, `repeat` runs per call, its own mean in ns), and this prints the
//! median over ROUNDS calls per frame kind. Needs root (or CAP_BPF); sends nothing.
//!
//! usage: xdp-filter-cost [ROUNDS [REPEAT]]        (defaults 15 and 200,000)
//!
//! Frames (each as the program sees a reply arriving for a run of session 0x5eed0001):
//!   v4 reply, MAC checked   ours, whole stamp, MAC verified in the program (SipHash-1-3
//!                           over 44 bytes), then handed to AF_XDP (here: no socket, passed)
//!   v4 reply, no MAC check  the same frame with the check off (the program before it)
//!   v4 forged               ours by session and ids, MAC wrong: dropped in the program
//!   v6 reply, MAC checked / no MAC check
//!   foreign v4 reply        another program's ping (other identifier): passed at once
//!
//! Prints one line per kind (ns/frame, the action) and the check's added ns per reply.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use asdic_wire::Family;
use asdic_wire::payload::{Key, Stamp};
use asdic_wire::template::{Layer, ProbeFields, Template};
use asdic_xdp::{FilterConfig, Unattached};

const SESSION: u32 = 0x5eed_0001;
const IDENT: u16 = 0x4000;
const KEY: Key = Key::new(0x0123_4567_89ab_cdef, 0x0f1e_2d3c_4b5a_6978);
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
/// XDP_DROP, XDP_PASS.
const DROP: u32 = 1;
const PASS: u32 = 2;

/// The filter's configuration for the run these frames answer, with or without the check.
fn config(check: bool) -> FilterConfig {
    let mut cfg = FilterConfig::new(SESSION, IDENT, 1, OUR_MAC, Some(SRC4), Some(SRC6));
    cfg.mac_key = check.then(|| KEY.halves());
    cfg
}

/// An echo reply frame from `from` to our source: `size` payload bytes, identifier
/// `ident`, the stamp's MAC right or (`forged`) flipped.
fn reply(from: IpAddr, ident: u16, size: usize, forged: bool) -> Vec<u8> {
    let family = match from {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    };
    let layer = Layer::Ethernet {
        src_mac: PEER_MAC,
        dst_mac: OUR_MAC,
        src_ip: from,
    };
    let t = Template::new(family, layer, size).expect("template");
    let mut b = vec![0; t.len()];
    t.prepare(&mut b).expect("prepare");
    let (seq, stamp) = (
        7,
        Stamp {
            session: SESSION,
            n: 7,
            cookie: 1,
            t_send_ns: 1_700_000_000_000_000_000,
        },
    );
    let dst = match family {
        Family::V4 => IpAddr::V4(SRC4),
        Family::V6 => IpAddr::V6(SRC6),
    };
    // The reply's MAC is over its sender (the target the probe went to).
    let mut fields = ProbeFields::new(&KEY, dst, 63, ident, seq, stamp);
    fields.mac = KEY.mac(from, ident, seq, &stamp) ^ u64::from(forged);
    t.patch(&mut b, &fields).expect("patch");
    // Request to reply: the type byte, and the checksum updated for it.
    let at = b.len() - (asdic_wire::icmp::HEADER_LEN + size);
    asdic_wire::icmp::answer_echo(&mut b[at..], family).expect("an echo request");
    b
}

/// (name, frame, filter with the check, action expected).
fn frames() -> Vec<(&'static str, Vec<u8>, bool, u32)> {
    let t4 = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1));
    let t6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
    vec![
        (
            "v4 reply, MAC checked",
            reply(t4, IDENT, 56, false),
            true,
            PASS,
        ),
        (
            "v4 reply, no MAC check",
            reply(t4, IDENT, 56, false),
            false,
            PASS,
        ),
        ("v4 forged", reply(t4, IDENT, 56, true), true, DROP),
        (
            "v6 reply, MAC checked",
            reply(t6, IDENT, 56, false),
            true,
            PASS,
        ),
        (
            "v6 reply, no MAC check",
            reply(t6, IDENT, 56, false),
            false,
            PASS,
        ),
        (
            "foreign v4 reply",
            reply(t4, IDENT ^ 0x8000, 56, false),
            true,
            PASS,
        ),
    ]
}

/// Runs every frame of `frames()` once per round, `rounds` rounds of `repeat` runs each
/// (interleaved, so that a noisy moment hits every kind alike): per frame, its ns of each
/// round and its action.
fn measure(filters: &[Unattached; 2], rounds: usize, repeat: u32) -> Vec<(Vec<u32>, u32)> {
    let frames = frames();
    let mut out = vec![(Vec::with_capacity(rounds), u32::MAX); frames.len()];
    for _ in 0..rounds.max(1) {
        for ((_, frame, check, _), (ns, action)) in frames.iter().zip(out.iter_mut()) {
            let r = filters[usize::from(*check)]
                .run(frame, repeat)
                .expect("BPF_PROG_TEST_RUN");
            *action = r.action;
            ns.push(r.ns);
        }
    }
    out
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn load() -> [Unattached; 2] {
    [false, true].map(|check| Unattached::load(&config(check)).expect("load asdic_filter"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map_or(15, |a| a.parse().expect("ROUNDS"));
    let repeat: u32 = args.get(2).map_or(200_000, |a| a.parse().expect("REPEAT"));
    let filters = load();
    let runs = measure(&filters, rounds, repeat);
    println!("asdic_filter per frame, median of {rounds} x {repeat} runs (BPF_PROG_TEST_RUN):");
    let frames = frames();
    for ((name, _, _, want), (ns, action)) in frames.iter().zip(&runs) {
        assert_eq!(action, want, "{name}: action");
        let verdict = if *action == DROP { "drop" } else { "pass" };
        let m = median(ns.iter().map(|&n| i64::from(n)).collect());
        println!("  {name:<24} {m:>5} ns  {verdict}");
    }
    // Frames 0/1 and 3/4: the same reply with the check on and off, in the same round.
    for (v, on, off) in [("v4", 0, 1), ("v6", 3, 4)] {
        let d: Vec<i64> = runs[on]
            .0
            .iter()
            .zip(&runs[off].0)
            .map(|(&a, &b)| i64::from(a) - i64::from(b))
            .collect();
        println!(
            "the keyed check adds {} ns per {v} reply (median of the rounds' differences)",
            median(d)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The program's verdicts on the frames above, run by the kernel, and the counters they
    /// move; and a bound on the keyed check's cost far above what it measures (a sign of
    /// the interpreter instead of the JIT, or of a loop gone wrong, not a benchmark).
    #[test]
    fn the_filter_checks_macs_in_the_kernel_at_a_bounded_cost() {
        if let Err(e) = Unattached::load(&config(false)) {
            // Without root (or CAP_BPF) nothing loads; where the bed is required, fail.
            assert!(
                std::env::var_os("ASDIC_REQUIRE_BED").is_none(),
                "cannot load the filter: {e}"
            );
            eprintln!("skipped: cannot load the XDP filter ({e})");
            return;
        }
        let filters = load();
        for ((name, _, _, want), (ns, action)) in frames().iter().zip(measure(&filters, 5, 20_000))
        {
            assert_eq!(action, *want, "{name}");
            let worst = ns.iter().max().copied().unwrap_or(0);
            assert!(worst < 5_000, "{name}: {worst} ns per frame");
        }
        let with = filters[1].stats();
        // Each frame of the checked filter ran 5 x 20,000 times.
        let runs = 100_000;
        assert_eq!(with.forged, runs, "forged frames dropped in the program");
        // Ours and verified: handed to AF_XDP, here with no socket (v4 and v6).
        assert_eq!(with.redirect_failed, 2 * runs);
        let without = filters[0].stats();
        assert_eq!((without.forged, without.redirect_failed), (0, 2 * runs));
    }
}
