//! `asdic_responder` (bpf/responder.bpf.c) from Rust: prefixes (only inside the test ranges),
//! its configuration, the ground-truth rule mirrored from C, attaching, counters.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::attach::{self, Attached};
use crate::error::XdpError;
use crate::filter::read_percpu;
use crate::{Mode, RESPONDER_OBJECT};

/// The program's name in the object and in the kernel.
pub const RESPONDER_PROGRAM: &str = "asdic_responder";
/// The value `asdic_marker` holds in `asdic_responder`'s object: "asdicRSP".
pub const RESPONDER_MARKER: u64 = u64::from_be_bytes(*b"asdicRSP");
const CFG_MAP: &str = "asdic_rcfg";
const STATS_MAP: &str = "asdic_rstats";

/// An IPv4 prefix `a.b.c.d/len` with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Prefix {
    /// The network address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

/// An IPv6 prefix `x::/len` with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Prefix {
    /// The network address.
    pub addr: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub len: u8,
}

/// The benchmarking range (RFC 2544): the only IPv4 space the responder answers in.
pub const SAFE4: Ipv4Prefix = Ipv4Prefix {
    addr: Ipv4Addr::new(198, 18, 0, 0),
    len: 15,
};
/// The documentation range (RFC 3849): the only IPv6 space the responder answers in.
pub const SAFE6: Ipv6Prefix = Ipv6Prefix {
    addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
    len: 32,
};

fn mask(bits: u32, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(len))) >> (128 - bits)
    }
}

fn split(s: &str, max: u8) -> Result<(&str, u8), XdpError> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| XdpError::Config(format!("{s}: want ADDRESS/LENGTH")))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|&l| l <= max)
        .ok_or_else(|| XdpError::Config(format!("{s}: prefix length must be 0..={max}")))?;
    Ok((a, len))
}

impl FromStr for Ipv4Prefix {
    type Err = XdpError;
    fn from_str(s: &str) -> Result<Self, XdpError> {
        let (a, len) = split(s, 32)?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| XdpError::Config(format!("{s}: not an IPv4 address")))?;
        let m = mask(32, len) as u32;
        if u32::from(addr) & !m != 0 {
            let net = Ipv4Addr::from(u32::from(addr) & m);
            return Err(XdpError::Config(format!(
                "{s} has host bits set (did you mean {net}/{len}?)"
            )));
        }
        Ok(Ipv4Prefix { addr, len })
    }
}

impl FromStr for Ipv6Prefix {
    type Err = XdpError;
    fn from_str(s: &str) -> Result<Self, XdpError> {
        let (a, len) = split(s, 128)?;
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| XdpError::Config(format!("{s}: not an IPv6 address")))?;
        let m = mask(128, len);
        if u128::from(addr) & !m != 0 {
            let net = Ipv6Addr::from(u128::from(addr) & m);
            return Err(XdpError::Config(format!(
                "{s} has host bits set (did you mean {net}/{len}?)"
            )));
        }
        Ok(Ipv6Prefix { addr, len })
    }
}

impl Ipv4Prefix {
    /// Whether `other` lies entirely inside this prefix.
    pub fn contains(&self, other: &Ipv4Prefix) -> bool {
        let m = mask(32, self.len) as u32;
        other.len >= self.len && u32::from(other.addr) & m == u32::from(self.addr)
    }
}

impl Ipv6Prefix {
    /// Whether `other` lies entirely inside this prefix.
    pub fn contains(&self, other: &Ipv6Prefix) -> bool {
        let m = mask(128, self.len);
        other.len >= self.len && u128::from(other.addr) & m == u128::from(self.addr)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// How replies leave the interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxPath {
    /// `bpf_redirect` to the ingress device itself: reaches a veth peer that has GRO on or
    /// an XDP program (kernel-stack peers included).
    #[default]
    Redirect,
    /// `XDP_TX`: on veth, reaches only a peer that runs an XDP program itself (e.g. the
    /// AF_XDP engine's filter); see bpf/responder.bpf.c.
    XdpTx,
}

/// The responder's ground truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponderConfig {
    /// Answer echo requests to this IPv4 prefix (inside 198.18.0.0/15).
    pub v4: Option<Ipv4Prefix>,
    /// Answer echo requests to this IPv6 prefix (inside 2001:db8::/32).
    pub v6: Option<Ipv6Prefix>,
    /// Dead hosts: index `i` is dead iff `dead_mod > 0 && i % dead_mod == dead_rem`.
    pub dead_mod: u32,
    /// See `dead_mod`.
    pub dead_rem: u32,
    /// Random loss of live hosts' requests, in parts per million (0..=1,000,000).
    pub loss_ppm: u32,
    /// How replies are sent.
    pub tx: TxPath,
}

impl Default for ResponderConfig {
    /// The speed bed's defaults: 198.19.0.0/16 and 2001:db8:1::/64, 13 mod 97 dead, no loss.
    fn default() -> Self {
        ResponderConfig {
            v4: Some(Ipv4Prefix {
                addr: Ipv4Addr::new(198, 19, 0, 0),
                len: 16,
            }),
            v6: Some(Ipv6Prefix {
                addr: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0),
                len: 64,
            }),
            dead_mod: 97,
            dead_rem: 13,
            loss_ppm: 0,
            tx: TxPath::Redirect,
        }
    }
}

/// Size of `struct asdic_responder_cfg`.
pub const RESPONDER_CFG_LEN: usize = 36;

impl ResponderConfig {
    /// Checks the configuration: at least one prefix, each inside the test ranges (network
    /// safety: the responder never answers for real address space), loss in range.
    pub fn validate(&self) -> Result<(), XdpError> {
        if self.v4.is_none() && self.v6.is_none() {
            return Err(XdpError::Config(
                "give an IPv4 and/or an IPv6 prefix to answer".into(),
            ));
        }
        if let Some(p) = &self.v4
            && !SAFE4.contains(p)
        {
            return Err(XdpError::Config(format!(
                "refusing {p}: the responder answers only inside {SAFE4} (benchmarking range)"
            )));
        }
        if let Some(p) = &self.v6
            && !SAFE6.contains(p)
        {
            return Err(XdpError::Config(format!(
                "refusing {p}: the responder answers only inside {SAFE6} (documentation range)"
            )));
        }
        if self.loss_ppm > 1_000_000 {
            return Err(XdpError::Config(format!(
                "loss_ppm {} is beyond 1000000",
                self.loss_ppm
            )));
        }
        Ok(())
    }

    /// The value of `asdic_rcfg`, as `struct asdic_responder_cfg` lies in memory:
    /// `{ u8 prefix4[4]; u8 prefix6[16]; u8 len4, len6, families, tx_mode; u32 dead_mod,
    /// dead_rem, loss_ppm; }` — prefixes in network order, the rest in host order.
    pub fn encode(&self) -> Result<[u8; RESPONDER_CFG_LEN], XdpError> {
        self.validate()?;
        let mut b = [0u8; RESPONDER_CFG_LEN];
        let mut families = 0u8;
        if let Some(p) = &self.v4 {
            b[0..4].copy_from_slice(&p.addr.octets());
            b[20] = p.len;
            families |= 1;
        }
        if let Some(p) = &self.v6 {
            b[4..20].copy_from_slice(&p.addr.octets());
            b[21] = p.len;
            families |= 2;
        }
        b[22] = families;
        b[23] = match self.tx {
            TxPath::Redirect => 0,
            TxPath::XdpTx => 1,
        };
        b[24..28].copy_from_slice(&self.dead_mod.to_ne_bytes());
        b[28..32].copy_from_slice(&self.dead_rem.to_ne_bytes());
        b[32..36].copy_from_slice(&self.loss_ppm.to_ne_bytes());
        Ok(b)
    }

    /// The dead rule for IPv4 address `a`, as the program applies it.
    pub fn is_dead4(&self, a: Ipv4Addr) -> bool {
        is_dead(self.dead_mod, self.dead_rem, Some(u32::from(a) & 0xffff))
    }

    /// The dead rule for IPv6 address `a`: a host index only when bits 16..63 are zero.
    pub fn is_dead6(&self, a: Ipv6Addr) -> bool {
        is_dead(self.dead_mod, self.dead_rem, host_index6(a))
    }
}

/// The host index of an IPv6 address: its low 16 bits when bits 16..63 are zero.
pub fn host_index6(a: Ipv6Addr) -> Option<u32> {
    let x = u128::from(a) as u64;
    (x >> 16 == 0).then_some(x as u32)
}

/// The dead rule (mirrors `verdict` in responder.bpf.c): host index `i` is dead iff
/// `dead_mod > 0 && i % dead_mod == dead_rem`; no index, never dead.
pub fn is_dead(dead_mod: u32, dead_rem: u32, i: Option<u32>) -> bool {
    match i {
        Some(i) => dead_mod > 0 && i % dead_mod == dead_rem,
        None => false,
    }
}

/// The responder's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponderStats {
    /// IPv4 echo requests to the prefix.
    pub seen4: u64,
    /// IPv6 echo requests to the prefix.
    pub seen6: u64,
    /// Replies sent (redirected to the ingress device, or XDP_TX).
    pub replied: u64,
    /// Requests to dead hosts, dropped.
    pub deaddrop: u64,
    /// Requests dropped by random loss.
    pub lossdrop: u64,
    /// Every other frame, passed to the kernel.
    pub passed: u64,
}

/// `asdic_responder`, loaded and attached; dropping it (or the process ending) detaches it.
#[derive(Debug)]
pub struct Responder {
    inner: Attached,
}

impl Responder {
    /// Attach to `ifname` (mode as for [`crate::Filter::attach`]); a leftover
    /// `asdic_responder` (recognised by its marker) attached the legacy way is replaced, anything else refused.
    pub fn attach(
        ifname: &str,
        cfg: &ResponderConfig,
        mode: Option<Mode>,
    ) -> Result<Responder, XdpError> {
        let value = cfg.encode()?;
        let inner = attach::load_and_attach(
            RESPONDER_OBJECT,
            RESPONDER_PROGRAM,
            RESPONDER_MARKER,
            ifname,
            mode,
            |maps| attach::configure(maps, CFG_MAP, value, RESPONDER_MARKER),
        )?;
        Ok(Responder { inner })
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// What was removed from the interface before attaching, if anything.
    pub fn replaced(&self) -> Option<&str> {
        self.inner.replaced.as_deref()
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.inner.ifindex
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> ResponderStats {
        let s = read_percpu(&self.inner.loaded.maps, STATS_MAP, 6);
        ResponderStats {
            seen4: s[0],
            seen6: s[1],
            replied: s[2],
            deaddrop: s[3],
            lossdrop: s[4],
            passed: s[5],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_display() {
        let p: Ipv4Prefix = "198.19.0.0/16".parse().unwrap();
        assert_eq!(p.addr, Ipv4Addr::new(198, 19, 0, 0));
        assert_eq!(p.len, 16);
        assert_eq!(p.to_string(), "198.19.0.0/16");
        let p: Ipv6Prefix = "2001:db8:1::/64".parse().unwrap();
        assert_eq!(p.len, 64);
        assert_eq!(p.to_string(), "2001:db8:1::/64");
        let p: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert_eq!(p.len, 0);
        let p: Ipv6Prefix = "2001:db8:1::5/128".parse().unwrap();
        assert_eq!(p.len, 128);
    }

    #[test]
    fn malformed_prefixes_are_refused() {
        for s in [
            "198.19.0.0",
            "198.19.0.0/33",
            "198.19.0.1/16",
            "x/8",
            "198.19.0.0/-1",
        ] {
            assert!(s.parse::<Ipv4Prefix>().is_err(), "{s}");
        }
        let e = "198.19.0.1/16".parse::<Ipv4Prefix>().unwrap_err();
        assert!(e.to_string().contains("did you mean 198.19.0.0/16"), "{e}");
        for s in [
            "2001:db8:1::",
            "2001:db8:1::/129",
            "2001:db8:1::1/64",
            "198.19.0.0/16",
        ] {
            assert!(s.parse::<Ipv6Prefix>().is_err(), "{s}");
        }
    }

    #[test]
    fn only_test_ranges_are_answered() {
        let ok = |v4: &str, v6: &str| ResponderConfig {
            v4: Some(v4.parse().unwrap()),
            v6: Some(v6.parse().unwrap()),
            ..ResponderConfig::default()
        };
        assert!(ok("198.19.0.0/16", "2001:db8:1::/64").validate().is_ok());
        assert!(ok("198.18.0.0/15", "2001:db8::/32").validate().is_ok());
        for (v4, v6) in [
            ("198.16.0.0/14", "2001:db8::/32"), // wider than the range
            ("10.0.0.0/8", "2001:db8::/32"),
            ("198.20.0.0/16", "2001:db8::/32"),
            ("0.0.0.0/0", "2001:db8::/32"),
            ("198.19.0.0/16", "2001:db9::/32"),
            ("198.19.0.0/16", "2001:db8::/31"),
            ("198.19.0.0/16", "::/0"),
        ] {
            let e = ok(v4, v6).validate().unwrap_err();
            assert!(e.to_string().contains("refusing"), "{v4} {v6}: {e}");
        }
        let none = ResponderConfig {
            v4: None,
            v6: None,
            ..ResponderConfig::default()
        };
        assert!(none.validate().is_err());
        let lossy = ResponderConfig {
            loss_ppm: 1_000_001,
            ..ResponderConfig::default()
        };
        assert!(lossy.validate().is_err());
    }

    #[test]
    fn encoding_matches_the_c_struct() {
        let c = ResponderConfig {
            loss_ppm: 250_000,
            ..ResponderConfig::default()
        };
        let b = c.encode().unwrap();
        assert_eq!(&b[0..4], &[198, 19, 0, 0]);
        assert_eq!(&b[4..8], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(&b[8..10], &[0, 1]);
        assert_eq!(&b[10..20], &[0; 10]);
        assert_eq!((b[20], b[21], b[22], b[23]), (16, 64, 3, 0));
        assert_eq!(&b[24..28], &97u32.to_ne_bytes());
        assert_eq!(&b[28..32], &13u32.to_ne_bytes());
        assert_eq!(&b[32..36], &250_000u32.to_ne_bytes());
        let v6only = ResponderConfig {
            v4: None,
            ..ResponderConfig::default()
        };
        let b = v6only.encode().unwrap();
        assert_eq!((&b[0..4], b[20], b[22]), (&[0u8; 4][..], 0, 2));
        let xdp_tx = ResponderConfig {
            tx: TxPath::XdpTx,
            ..ResponderConfig::default()
        };
        assert_eq!(xdp_tx.encode().unwrap()[23], 1);
    }

    #[test]
    fn dead_rule_mirrors_the_program() {
        let c = ResponderConfig::default(); // 13 mod 97
        assert!(c.is_dead4(Ipv4Addr::new(198, 19, 0, 13)));
        assert!(c.is_dead4(Ipv4Addr::new(198, 19, 0, 110)));
        assert!(!c.is_dead4(Ipv4Addr::new(198, 19, 0, 1)));
        // Only the low 16 bits count in IPv4.
        assert!(c.is_dead4(Ipv4Addr::new(198, 18, 0, 13)));
        assert!(c.is_dead6("2001:db8:1::d".parse().unwrap()));
        assert!(!c.is_dead6("2001:db8:1::1".parse().unwrap()));
        // Bits 16..63 set: no host index, never dead.
        assert!(!c.is_dead6("2001:db8:1::1:d".parse().unwrap()));
        assert!(!c.is_dead6("2001:db8:1:0:1::d".parse().unwrap()));
        // Bits above 64 do not matter.
        assert!(c.is_dead6("2001:db8:1:ffff::d".parse().unwrap()));
        let n = (0..65536u32).filter(|&i| is_dead(97, 13, Some(i))).count();
        assert_eq!(n, 676);
        assert!(!is_dead(0, 0, Some(0)));
        assert!((0..65536).all(|i| is_dead(1, 0, Some(i))));
        assert!(!is_dead(97, 13, None));
    }
}
