//! `asdic_filter` (bpf/filter.bpf.c) from Rust: its configuration, attaching it, registering
//! AF_XDP sockets, reading its counters.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use aya::maps::{MapData, PerCpuArray, XskMap};

use crate::attach::{self, Attached};
use crate::error::{Errno, XdpError};
use crate::object::{Loaded, Maps};
use crate::sys;
use crate::{FILTER_OBJECT, Mode};

/// The program's name in the object and in the kernel.
pub const FILTER_PROGRAM: &str = "asdic_filter";
const CFG_MAP: &str = "asdic_cfg";
const STATS_MAP: &str = "asdic_stats";
const XSK_MAP: &str = "asdic_xsks";
/// Entries of `asdic_xsks`: keys are `queue * 2 + (v6 as u32)`.
pub const XSK_SLOTS: u32 = 128;

/// The value `asdic_marker` holds in `asdic_filter`'s object: "asdicFLT".
pub const FILTER_MARKER: u64 = u64::from_be_bytes(*b"asdicFLT");
/// Bytes of `struct asdic_filter_cfg`.
pub const CFG_LEN: usize = 64;

/// What the filter hands to the AF_XDP sockets: a closed list, checked in the program, of
/// frames that can be ours (see `bpf/filter.bpf.c`); everything else goes on to the kernel,
/// counted under a [`PassReason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Session id: the first 4 payload bytes (big-endian) of our probes.
    pub session: u32,
    /// First ICMP identifier of the run.
    pub ident_base: u16,
    /// Number of identifiers from `ident_base` (wrapping at 2^16), 1..=65536.
    pub ident_span: u32,
    /// Redirect IPv4 replies and errors.
    pub v4: bool,
    /// Redirect IPv6 replies and errors.
    pub v6: bool,
    /// The interface's MAC: unicast frames to another MAC are not ours.
    pub mac: [u8; 6],
    /// The run's IPv4 source: IPv4 packets to another address are not ours.
    pub src4: Ipv4Addr,
    /// The run's IPv6 source: IPv6 packets to another address are not ours.
    pub src6: Ipv6Addr,
    /// Drop a frame of ours that finds no socket for its queue and family (counted in
    /// `redirect_failed`) instead of passing it to the kernel: for an engine that also reads
    /// the kernel's ICMP (fragments) and must not get it there uncounted.
    pub drop_unserved: bool,
    /// The run's MAC key (k0, k1): a frame with the run's session whose stamp's MAC fails
    /// is dropped in the program (counted as `forged`) and never fills an AF_XDP ring.
    pub mac_key: Option<(u64, u64)>,
    /// Put each frame of ours behind its receive stamp ([`rx_stamp`]): 16 bytes, taken as
    /// the program began (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    pub stamp: bool,
}

/// Bytes of the receive stamp in front of a frame of ours when [`FilterConfig::stamp`] is on.
pub const RX_STAMP_LEN: usize = 16;
/// The first 8 bytes (host order) of a receive stamp.
pub const RX_STAMP_MAGIC: u64 = 0xa5d1_c57a_3f5e_1c01;

/// A frame as the program redirected it with [`FilterConfig::stamp`] on: its receive stamp
/// (CLOCK_MONOTONIC ns) and the frame behind it; `None` when it carries none.
pub fn rx_stamp(data: &[u8]) -> Option<(u64, &[u8])> {
    let (head, frame) = data.split_first_chunk::<RX_STAMP_LEN>()?;
    let (magic, ns) = head.split_at(8);
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
    (word(magic) == RX_STAMP_MAGIC).then(|| (word(ns), frame))
}

impl FilterConfig {
    /// A configuration for `session` and identifiers `ident_base..+ident_span`, the
    /// interface's `mac` and the run's sources; families from which sources are given
    /// (an unspecified address: that family is off).
    pub fn new(
        session: u32,
        ident_base: u16,
        ident_span: u32,
        mac: [u8; 6],
        src4: Option<Ipv4Addr>,
        src6: Option<Ipv6Addr>,
    ) -> FilterConfig {
        FilterConfig {
            session,
            ident_base,
            ident_span,
            v4: src4.is_some(),
            v6: src6.is_some(),
            mac,
            src4: src4.unwrap_or(Ipv4Addr::UNSPECIFIED),
            src6: src6.unwrap_or(Ipv6Addr::UNSPECIFIED),
            drop_unserved: false,
            mac_key: None,
            stamp: false,
        }
    }
}

impl FilterConfig {
    /// The value of `asdic_cfg`, as `struct asdic_filter_cfg` lies in memory:
    /// `{ u32 session; u16 ident_base; u16 pad; u32 ident_span; u32 families; u8 mac[6];
    /// u16 pad2; be32 src4; u8 src6[16]; u32 pad3; u64 k0; u64 k1; }` (integers in host
    /// order, addresses in network order).
    pub fn encode(&self) -> Result<[u8; CFG_LEN], XdpError> {
        if !(1..=65536).contains(&self.ident_span) {
            return Err(XdpError::Config(format!(
                "ident_span {} is not in 1..=65536",
                self.ident_span
            )));
        }
        if !self.v4 && !self.v6 {
            return Err(XdpError::Config("neither IPv4 nor IPv6 is enabled".into()));
        }
        if self.v4 && self.src4.is_unspecified() || self.v6 && self.src6.is_unspecified() {
            return Err(XdpError::Config(
                "a family is enabled without the run's source address".into(),
            ));
        }
        let families = u32::from(self.v4)
            | (u32::from(self.v6) << 1)
            | (u32::from(self.drop_unserved) << 2)
            | (u32::from(self.mac_key.is_some()) << 3)
            | (u32::from(self.stamp) << 4);
        let mut b = [0u8; CFG_LEN];
        b[0..4].copy_from_slice(&self.session.to_ne_bytes());
        b[4..6].copy_from_slice(&self.ident_base.to_ne_bytes());
        b[8..12].copy_from_slice(&self.ident_span.to_ne_bytes());
        b[12..16].copy_from_slice(&families.to_ne_bytes());
        b[16..22].copy_from_slice(&self.mac);
        b[24..28].copy_from_slice(&self.src4.octets());
        b[28..44].copy_from_slice(&self.src6.octets());
        let (k0, k1) = self.mac_key.unwrap_or((0, 0));
        b[48..56].copy_from_slice(&k0.to_ne_bytes());
        b[56..64].copy_from_slice(&k1.to_ne_bytes());
        Ok(b)
    }

    /// Whether identifier `id` is ours: `(id - ident_base) mod 2^16 < ident_span`, as the
    /// program decides it.
    pub fn ident_in_range(&self, id: u16) -> bool {
        u32::from(id.wrapping_sub(self.ident_base)) < self.ident_span
    }
}

/// Why the filter passed a frame to the kernel: each frame is counted under one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassReason {
    /// Not IPv4 or IPv6 (ARP, LLDP, …), or a family the run does not use.
    NotIp,
    /// An 802.1Q or 802.1ad tag in the frame: asdic sends untagged, so never ours.
    Vlan,
    /// Unicast to another MAC than the interface's.
    Mac,
    /// A bad IP header: version, IHL, IPv4 header checksum, lengths beyond the frame,
    /// hop-by-hop options not first, a frame cut short.
    BadHeader,
    /// An IP destination that is not the run's source address.
    Dst,
    /// A fragment (IPv4 MF or an offset; an IPv6 fragment header anywhere in the chain): the
    /// kernel reassembles it, the engine reads it back through its raw socket.
    Fragment,
    /// More IPv6 extension headers than the program walks (6).
    ExtChain,
    /// Another protocol than ICMP / ICMPv6.
    NotIcmp,
    /// ICMP that is not a reply or error of this run (identifier, session, type).
    NotOurs,
}

impl PassReason {
    /// Every reason, in the order of the program's counter slots (from slot 2 on).
    pub const ALL: [PassReason; 9] = [
        PassReason::NotIp,
        PassReason::Vlan,
        PassReason::Mac,
        PassReason::BadHeader,
        PassReason::Dst,
        PassReason::Fragment,
        PassReason::ExtChain,
        PassReason::NotIcmp,
        PassReason::NotOurs,
    ];

    /// The reason's name in counters (`xdp_pass_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            PassReason::NotIp => "not_ip",
            PassReason::Vlan => "vlan",
            PassReason::Mac => "dst_mac",
            PassReason::BadHeader => "bad_header",
            PassReason::Dst => "dst_ip",
            PassReason::Fragment => "fragment",
            PassReason::ExtChain => "ext_chain",
            PassReason::NotIcmp => "not_icmp",
            PassReason::NotOurs => "not_ours",
        }
    }
}

/// The filter's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Frames handed to an AF_XDP socket.
    pub redirected: u64,
    /// Frames that were not ours, passed to the kernel: the sum of `pass`.
    pub passed: u64,
    /// Frames that were ours but found no socket for their queue and family (passed to the
    /// kernel, or dropped with [`FilterConfig::drop_unserved`]).
    pub redirect_failed: u64,
    /// Passed frames by reason, in the order of [`PassReason::ALL`].
    pub pass: [u64; 9],
    /// Frames with the run's session under a stamp whose MAC failed: dropped.
    pub forged: u64,
}

impl FilterStats {
    /// Frames passed for `reason`.
    pub fn passed_for(&self, reason: PassReason) -> u64 {
        let i = PassReason::ALL
            .iter()
            .position(|&r| r == reason)
            .expect("every reason is in ALL");
        self.pass[i]
    }
}

/// `asdic_filter`, loaded and attached to one interface. Dropping it detaches the program
/// (its bpf_link is closed); so does the process's exit, however it ends.
#[derive(Debug)]
pub struct Filter {
    inner: Attached,
}

impl Filter {
    /// Attach to `ifname`; mode None = native first, then generic; Some(m) = only m.
    ///
    /// A leftover `asdic_filter` (recognised by its `asdic_marker` map, not its name) attached
    /// the legacy (netlink) way — by a killed old run or
    /// `ip link set xdp` — is removed first and [`Filter::replaced`] says so; one held by a
    /// live bpf_link (another running process) fails with [`XdpError::Busy`]; any other
    /// program fails with [`XdpError::Foreign`] and is left in place.
    pub fn attach(
        ifname: &str,
        cfg: &FilterConfig,
        mode: Option<Mode>,
    ) -> Result<Filter, XdpError> {
        let value = cfg.encode()?;
        let inner = attach::load_and_attach(
            FILTER_OBJECT,
            FILTER_PROGRAM,
            FILTER_MARKER,
            ifname,
            mode,
            |maps| configure(maps, value),
        )?;
        Ok(Filter { inner })
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

    /// Insert an AF_XDP socket fd for (queue, family) into asdic_xsks.
    pub fn register(&mut self, queue: u32, v6: bool, xsk_fd: RawFd) -> Result<(), XdpError> {
        let key = queue
            .checked_mul(2)
            .and_then(|k| k.checked_add(u32::from(v6)))
            .filter(|&k| k < XSK_SLOTS)
            .ok_or_else(|| {
                XdpError::Config(format!(
                    "queue {queue} is beyond the {} queues asdic_xsks holds",
                    XSK_SLOTS / 2
                ))
            })?;
        let map = self
            .inner
            .loaded
            .maps
            .get_mut(XSK_MAP)
            .ok_or_else(|| XdpError::Config(format!("the object has no map {XSK_MAP}")))?;
        let mut xsks: XskMap<&mut MapData> =
            XskMap::try_from(map).map_err(|e| map_err(format!("{XSK_MAP}: open"), &e))?;
        xsks.set(key, xsk_fd, 0).map_err(|e| {
            map_err(
                format!("{XSK_MAP}: inserting socket fd {xsk_fd} for queue {queue} (key {key})"),
                &e,
            )
        })
    }

    /// The counters, summed over CPUs (zero where they cannot be read).
    pub fn stats(&self) -> FilterStats {
        stats(&self.inner.loaded.maps)
    }
}

/// Writes the configuration `value` and the marker into a loaded object's maps.
fn configure(maps: &mut Maps, value: [u8; CFG_LEN]) -> Result<(), XdpError> {
    attach::configure(maps, CFG_MAP, value, FILTER_MARKER)
}

/// `asdic_filter` loaded with a configuration but attached nowhere: the kernel runs it on
/// given frames (`BPF_PROG_TEST_RUN`), to check its verdicts and time it without a link.
/// No socket is registered, so a frame it would hand to AF_XDP is counted `redirect_failed`
/// and passed (or dropped, with `drop_unserved`).
#[derive(Debug)]
pub struct Unattached {
    loaded: Loaded,
}

/// What one frame got from [`Unattached::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRun {
    /// The XDP action: `XDP_ABORTED` 0, `XDP_DROP` 1, `XDP_PASS` 2, `XDP_TX` 3,
    /// `XDP_REDIRECT` 4.
    pub action: u32,
    /// Mean nanoseconds per run of the program, as the kernel timed `repeat` runs.
    pub ns: u32,
}

impl Unattached {
    /// Loads the filter with `cfg` (root, or CAP_BPF).
    pub fn load(cfg: &FilterConfig) -> Result<Unattached, XdpError> {
        let value = cfg.encode()?;
        let loaded = Loaded::load(
            FILTER_OBJECT,
            FILTER_PROGRAM,
            |maps| configure(maps, value),
            attach::verifier_tail,
        )?;
        Ok(Unattached { loaded })
    }

    /// Runs the program on `frame` `repeat` times (at least once).
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<TestRun, XdpError> {
        let (action, ns) = sys::prog_test_run(self.loaded.prog(), frame, repeat.max(1))
            .map_err(|e| XdpError::Config(format!("BPF_PROG_TEST_RUN of {FILTER_PROGRAM}: {e}")))?;
        Ok(TestRun { action, ns })
    }

    /// The counters so far, as [`Filter::stats`].
    pub fn stats(&self) -> FilterStats {
        stats(&self.loaded.maps)
    }
}

fn stats(maps: &Maps) -> FilterStats {
    let s = read_percpu(maps, STATS_MAP, 12);
    let mut pass = [0u64; 9];
    pass.copy_from_slice(&s[2..11]);
    FilterStats {
        redirected: s[0],
        passed: pass.iter().sum(),
        redirect_failed: s[1],
        pass,
        forged: s[11],
    }
}

pub(crate) fn map_err(what: String, e: &(dyn std::error::Error + 'static)) -> XdpError {
    XdpError::Map {
        what,
        errno: Errno::of(e),
    }
}

/// Slots `0..n` of per-CPU array `name`, each summed over CPUs.
pub(crate) fn read_percpu(maps: &Maps, name: &str, n: u32) -> Vec<u64> {
    let mut out = vec![0u64; n as usize];
    let Some(map) = maps.get(name) else {
        return out;
    };
    let Ok(arr) = PerCpuArray::<&MapData, u64>::try_from(map) else {
        return out;
    };
    for (i, slot) in out.iter_mut().enumerate() {
        if let Ok(values) = arr.get(&(i as u32), 0) {
            *slot = values.iter().sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FilterConfig {
        FilterConfig {
            session: 0x0102_0304,
            ident_base: 0xfff0,
            ident_span: 32,
            v4: true,
            v6: false,
            mac: [2, 0, 0, 0, 0, 9],
            src4: Ipv4Addr::new(198, 18, 0, 1),
            src6: Ipv6Addr::UNSPECIFIED,
            drop_unserved: false,
            mac_key: None,
            stamp: false,
        }
    }

    #[test]
    fn a_stamped_frame_gives_its_stamp_and_the_frame_behind_it() {
        let mut b = RX_STAMP_MAGIC.to_ne_bytes().to_vec();
        b.extend(123_456_789u64.to_ne_bytes());
        b.extend([1, 2, 3]);
        assert_eq!(rx_stamp(&b), Some((123_456_789, &[1u8, 2, 3][..])));
        assert_eq!(rx_stamp(&b[..16]), Some((123_456_789, &[][..])));
        assert_eq!(rx_stamp(&b[..15]), None, "too short");
        b[0] ^= 1;
        assert_eq!(rx_stamp(&b), None, "no magic: an unstamped frame");
        assert_eq!(
            FilterConfig {
                stamp: true,
                ..cfg()
            }
            .encode()
            .unwrap()[12..16],
            (1u32 | 16).to_ne_bytes(),
            "bit 4: stamp"
        );
    }

    #[test]
    fn encoding_matches_the_c_struct() {
        let b = cfg().encode().unwrap();
        assert_eq!(&b[0..4], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&b[4..6], &0xfff0u16.to_ne_bytes());
        assert_eq!(&b[6..8], &[0, 0]);
        assert_eq!(&b[8..12], &32u32.to_ne_bytes());
        assert_eq!(&b[12..16], &1u32.to_ne_bytes());
        assert_eq!(&b[16..22], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&b[22..24], &[0, 0]);
        assert_eq!(&b[24..28], &[198, 18, 0, 1], "network order");
        assert_eq!(&b[28..44], &[0; 16]);
        let src6: Ipv6Addr = "2001:db8:0:1::1".parse().unwrap();
        let both = FilterConfig {
            v6: true,
            src6,
            ident_span: 65536,
            drop_unserved: true,
            ..cfg()
        };
        let b = both.encode().unwrap();
        assert_eq!(&b[8..12], &65536u32.to_ne_bytes());
        assert_eq!(&b[12..16], &7u32.to_ne_bytes());
        assert_eq!(&b[28..44], &src6.octets());
        assert_eq!(&b[44..64], &[0; 20], "no key: the session alone decides");
        let keyed = FilterConfig {
            mac_key: Some((0x1111_2222_3333_4444, 0x5555_6666_7777_8888)),
            ..cfg()
        };
        let b = keyed.encode().unwrap();
        assert_eq!(
            &b[12..16],
            &(1u32 | 8).to_ne_bytes(),
            "bit 3: check the MAC"
        );
        assert_eq!(&b[48..56], &0x1111_2222_3333_4444u64.to_ne_bytes());
        assert_eq!(&b[56..64], &0x5555_6666_7777_8888u64.to_ne_bytes());
        let built = FilterConfig::new(
            0x0102_0304,
            0xfff0,
            32,
            [2, 0, 0, 0, 0, 9],
            Some(Ipv4Addr::new(198, 18, 0, 1)),
            None,
        );
        assert_eq!(built, cfg());
    }

    #[test]
    fn pass_reasons_have_distinct_names_in_slot_order() {
        let names: std::collections::HashSet<_> =
            PassReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), PassReason::ALL.len());
        let mut s = FilterStats::default();
        s.pass[5] = 7;
        assert_eq!(s.passed_for(PassReason::Fragment), 7);
        assert_eq!(s.passed_for(PassReason::NotIp), 0);
        assert_eq!(FILTER_MARKER.to_be_bytes(), *b"asdicFLT");
    }

    #[test]
    fn bad_configurations_are_refused() {
        for span in [0, 65537] {
            let c = FilterConfig {
                ident_span: span,
                ..cfg()
            };
            assert!(matches!(c.encode(), Err(XdpError::Config(_))), "{span}");
        }
        let c = FilterConfig { v4: false, ..cfg() };
        assert!(matches!(c.encode(), Err(XdpError::Config(_))));
        // A family without its source address: nothing could be ours, refused.
        let c = FilterConfig { v6: true, ..cfg() };
        assert!(matches!(c.encode(), Err(XdpError::Config(_))));
        let c = FilterConfig {
            src4: Ipv4Addr::UNSPECIFIED,
            ..cfg()
        };
        assert!(matches!(c.encode(), Err(XdpError::Config(_))));
    }

    #[test]
    fn identifier_range_wraps() {
        let c = cfg(); // 0xfff0 ..= 0x000f
        assert!(c.ident_in_range(0xfff0));
        assert!(c.ident_in_range(0xffff));
        assert!(c.ident_in_range(0x0000));
        assert!(c.ident_in_range(0x000f));
        assert!(!c.ident_in_range(0x0010));
        assert!(!c.ident_in_range(0xffef));
        let all = FilterConfig {
            ident_span: 65536,
            ..cfg()
        };
        assert!((0..=u16::MAX).all(|id| all.ident_in_range(id)));
        let one = FilterConfig {
            ident_span: 1,
            ident_base: 7,
            ..cfg()
        };
        assert_eq!(
            (0..=u16::MAX).filter(|&id| one.ident_in_range(id)).count(),
            1
        );
    }
}
