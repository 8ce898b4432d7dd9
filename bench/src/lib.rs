//! Benchmarks live in benches/; this library holds what the bed-side bench binaries share.

use std::net::Ipv4Addr;

/// Where a bench binary sends on a bed: `IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4`, checked.
#[derive(Debug, Clone)]
pub struct BedArgs {
    /// The scanner-side interface.
    pub iface: String,
    /// Its MAC (read from sysfs).
    pub src_mac: [u8; 6],
    /// The source address.
    pub src: Ipv4Addr,
    /// The next hop's MAC.
    pub dst_mac: [u8; 6],
    /// The targets' first address and how many there are.
    pub base: u32,
    pub hosts: u32,
}

/// A MAC written `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bytes: Result<Vec<u8>, _> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect();
    bytes
        .ok()
        .and_then(|v| <[u8; 6]>::try_from(v).ok())
        .ok_or_else(|| format!("bad MAC {s}"))
}

impl BedArgs {
    /// Parses the four arguments; the targets must lie in the benchmarking range
    /// 198.18.0.0/15 (the only addresses a bench may send to), at most a /16 of them.
    pub fn parse(a: &[String]) -> Result<BedArgs, String> {
        let [iface, src, mac, prefix] = a else {
            return Err("want IFACE SRC_IPV4 GATEWAY_MAC PREFIX_V4".into());
        };
        let src: Ipv4Addr = src.parse().map_err(|_| format!("bad SRC_IPV4 {src}"))?;
        let dst_mac = parse_mac(mac)?;
        let bad = || format!("bad PREFIX_V4 {prefix}");
        let (net, len) = prefix.split_once('/').ok_or_else(bad)?;
        let base = u32::from(net.parse::<Ipv4Addr>().map_err(|_| bad())?);
        let len: u32 = len.parse().map_err(|_| bad())?;
        let bench =
            u32::from(Ipv4Addr::new(198, 18, 0, 0))..=u32::from(Ipv4Addr::new(198, 19, 255, 255));
        if !(16..=32).contains(&len)
            || !bench.contains(&base)
            || !bench.contains(&(base | (u32::MAX >> len)))
        {
            return Err(format!(
                "{prefix}: targets only in the benchmarking range 198.18.0.0/15, at most a /16"
            ));
        }
        let sys = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
            .map_err(|e| format!("{iface}: {e}"))?;
        Ok(BedArgs {
            iface: iface.clone(),
            src_mac: parse_mac(sys.trim())?,
            src,
            dst_mac,
            base,
            hosts: 1 << (32 - len),
        })
    }

    /// The IPv4 echo request of 32 payload bytes, Ethernet-framed from the interface to the
    /// next hop.
    pub fn template(&self) -> asdic_wire::template::Template {
        use asdic_wire::template::{Layer, Template};
        Template::new(
            asdic_wire::Family::V4,
            Layer::Ethernet {
                src_mac: self.src_mac,
                dst_mac: self.dst_mac,
                src_ip: self.src.into(),
            },
            32,
        )
        .expect("an IPv4 Ethernet template")
    }

    /// Target `i` (wrapping over the prefix).
    pub fn target(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + i % self.hosts)
    }
}

/// Round `k` of a run that got one reply from every target, in target order (target `i` is
/// cookie `i`), as the run's event loop receives them: what the statistics benches feed.
pub fn reply_round(targets: &[std::net::IpAddr], k: u32) -> Vec<asdic_core::event::Event> {
    use asdic_core::event::{Event, Outcome};
    let n = targets.len() as u64;
    targets
        .iter()
        .enumerate()
        .map(|(i, &t)| Event {
            probe: Some(u64::from(k) * n + i as u64),
            cookie: i as u32,
            target: t,
            sent_ns: Some(1_700_000_000_000_000_000),
            attempt: 0,
            outcome: Outcome::Reply {
                rtt_ns: 20_000 + u64::from(k) * 1_000 + i as u64 % 997,
                ttl: Some(63),
                from: t,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(prefix: &str) -> Vec<String> {
        ["lo", "198.18.0.1", "02:00:00:00:00:01", prefix]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn only_the_benchmarking_range() {
        assert!(BedArgs::parse(&args("198.19.0.0/16")).is_ok());
        assert!(BedArgs::parse(&args("198.18.0.0/24")).is_ok());
        for bad in [
            "10.0.0.0/16",
            "198.17.255.0/24",
            "198.19.0.0/15",
            "198.20.0.0/16",
            "0.0.0.0/0",
        ] {
            assert!(BedArgs::parse(&args(bad)).is_err(), "{bad}");
        }
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert_eq!(
            parse_mac("0a:0b:0c:0d:0e:0f").unwrap(),
            [10, 11, 12, 13, 14, 15]
        );
    }
}
