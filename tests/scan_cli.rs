//! `asdic scan` without sockets: dry runs (target generation, shards, blocklists, limits,
//! IPv6 sampling) and input checks. No root needed.

use std::collections::HashSet;

use asdic_tests::asdic_output as asdic;
use asdic_tests::scratch;

/// The addresses a dry run prints, in order.
fn dry(args: &[&str]) -> Vec<String> {
    let mut all = vec!["scan", "--dry-run"];
    all.extend_from_slice(args);
    let o = asdic(&all);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn shards_partition_the_blocklisted_space_for_several_counts() {
    let block = scratch("cli-block.txt");
    std::fs::write(
        &block,
        "198.19.42.0/24 # comment\n\n# whole-line comment\n198.19.200.7\n",
    )
    .unwrap();
    let base = [
        "198.19.0.0/16",
        "--no-default-blocklist",
        "-b",
        block.to_str().unwrap(),
        "--seed",
        "5",
    ];
    let want: HashSet<String> = (0..65_536u32)
        .filter(|x| x >> 8 != 42 && *x != 200 * 256 + 7)
        .map(|x| format!("198.19.{}.{}", x >> 8, x & 255))
        .collect();
    let whole = dry(&base);
    assert_eq!(whole.len(), want.len());
    assert_eq!(whole.iter().cloned().collect::<HashSet<_>>(), want);
    for shards in [2u64, 3, 7] {
        let mut union = HashSet::new();
        let mut total = 0;
        for i in 0..shards {
            let mut a = base.to_vec();
            let (n, k) = (shards.to_string(), i.to_string());
            a.extend_from_slice(&["--shards", &n, "--shard", &k]);
            let part = dry(&a);
            total += part.len();
            union.extend(part);
        }
        assert_eq!(total, want.len(), "{shards} shards overlap or miss");
        assert_eq!(union, want, "{shards} shards");
    }
}

#[test]
fn order_is_scrambled_and_fixed_by_the_seed() {
    let a = dry(&["198.19.0.0/16", "--no-default-blocklist", "--seed", "1"]);
    assert_eq!(
        a,
        dry(&["198.19.0.0/16", "--no-default-blocklist", "--seed", "1"])
    );
    let b = dry(&["198.19.0.0/16", "--no-default-blocklist", "--seed", "2"]);
    assert_ne!(a, b);
    // The first 256 probes land in many different /24s.
    let nets: HashSet<&str> = a[..256]
        .iter()
        .map(|s| s.rsplit_once('.').unwrap().0)
        .collect();
    assert!(nets.len() > 100, "{} /24s", nets.len());
}

#[test]
fn limits_allowlists_and_ipv6_sampling() {
    let ten = dry(&[
        "198.19.0.0/16",
        "--no-default-blocklist",
        "--max-targets",
        "10%",
    ]);
    assert_eq!(ten.len(), 6554);
    assert_eq!(
        dry(&[
            "198.19.0.0/16",
            "--no-default-blocklist",
            "--max-targets",
            "123"
        ])
        .len(),
        123
    );
    let allow = scratch("cli-allow.txt");
    std::fs::write(&allow, "198.19.3.0/25\n198.19.9.9\n").unwrap();
    let allowed = dry(&[
        "198.19.0.0/16",
        "--no-default-blocklist",
        "--allowlist-file",
        allow.to_str().unwrap(),
    ]);
    assert_eq!(allowed.len(), 129);
    let samples = dry(&[
        "2001:db8:1::/64",
        "--no-default-blocklist",
        "--ipv6-samples",
        "300",
    ]);
    assert_eq!(samples.len(), 300);
    assert_eq!(
        samples.iter().collect::<HashSet<_>>().len(),
        300,
        "distinct"
    );
    for a in &samples {
        let ip: std::net::Ipv6Addr = a.parse().unwrap();
        assert_eq!(
            u128::from(ip) >> 64,
            0x2001_0db8_0001_0000,
            "{a} in the /64"
        );
    }
    let o = asdic(&[
        "scan",
        "--dry-run",
        "2001:db8:1::/64",
        "--no-default-blocklist",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--ipv6-samples"));
}

#[test]
fn default_blocklist_is_on_unless_turned_off() {
    let o = asdic(&["scan", "--show-default-blocklist"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for p in [
        "10.0.0.0/8",
        "198.18.0.0/15",
        "2001:db8::/32",
        "fc00::/7",
        "224.0.0.0/4",
    ] {
        assert!(text.contains(p), "{p} missing from\n{text}");
    }
    let o = asdic(&["scan", "--dry-run", "192.168.1.0/24", "10.1.0.0/16"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("private use (RFC 1918)"));
    // Mixed targets: the blocked part is dropped, the rest stays.
    let kept = dry(&["192.0.2.0/24", "192.0.3.0/30", "-q"]);
    assert!(kept.is_empty(), "-q counts without printing");
    let kept = dry(&["192.0.2.0/24", "192.0.3.0/30"]);
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|a| a.starts_with("192.0.3.")));
}
