//! `asdic_filter` (bpf/filter.bpf.c) from Rust: its configuration, attaching it, registering
//! AF_XDP sockets, reading its counters.

use std::os::fd::RawFd;

use aya::maps::{Array, MapData, PerCpuArray, XskMap};

use crate::attach::{self, Attached};
use crate::error::{Errno, XdpError};
use crate::object::Maps;
use crate::{FILTER_OBJECT, Mode};

/// The program's name in the object and in the kernel.
pub const FILTER_PROGRAM: &str = "asdic_filter";
const CFG_MAP: &str = "asdic_cfg";
const STATS_MAP: &str = "asdic_stats";
const XSK_MAP: &str = "asdic_xsks";
/// Entries of `asdic_xsks`: keys are `queue * 2 + (v6 as u32)`.
pub const XSK_SLOTS: u32 = 128;

/// What the filter hands to the AF_XDP sockets.
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
}

impl FilterConfig {
    /// The value of `asdic_cfg`, as `struct asdic_filter_cfg` lies in memory:
    /// `{ u32 session; u16 ident_base; u16 pad; u32 ident_span; u32 families; }` (host order).
    pub fn encode(&self) -> Result<[u8; 16], XdpError> {
        if !(1..=65536).contains(&self.ident_span) {
            return Err(XdpError::Config(format!(
                "ident_span {} is not in 1..=65536",
                self.ident_span
            )));
        }
        if !self.v4 && !self.v6 {
            return Err(XdpError::Config("neither IPv4 nor IPv6 is enabled".into()));
        }
        let families = u32::from(self.v4) | (u32::from(self.v6) << 1);
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.session.to_ne_bytes());
        b[4..6].copy_from_slice(&self.ident_base.to_ne_bytes());
        b[8..12].copy_from_slice(&self.ident_span.to_ne_bytes());
        b[12..16].copy_from_slice(&families.to_ne_bytes());
        Ok(b)
    }

    /// Whether identifier `id` is ours: `(id - ident_base) mod 2^16 < ident_span`, as the
    /// program decides it.
    pub fn ident_in_range(&self, id: u16) -> bool {
        u32::from(id.wrapping_sub(self.ident_base)) < self.ident_span
    }
}

/// The filter's counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Frames handed to an AF_XDP socket.
    pub redirected: u64,
    /// Frames that were not ours, passed to the kernel.
    pub passed: u64,
    /// Frames that were ours but found no socket for their queue and family (passed to the
    /// kernel too).
    pub redirect_failed: u64,
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
    /// A leftover `asdic_filter` attached the legacy (netlink) way — by a killed old run or
    /// `ip link set xdp` — is removed first and [`Filter::replaced`] says so; one held by a
    /// live bpf_link (another running process) fails with [`XdpError::Busy`]; any other
    /// program fails with [`XdpError::Foreign`] and is left in place.
    pub fn attach(
        ifname: &str,
        cfg: &FilterConfig,
        mode: Option<Mode>,
    ) -> Result<Filter, XdpError> {
        let value = cfg.encode()?;
        let inner = attach::load_and_attach(FILTER_OBJECT, FILTER_PROGRAM, ifname, mode, |maps| {
            let map = maps
                .get_mut(CFG_MAP)
                .ok_or_else(|| XdpError::Config(format!("the object has no map {CFG_MAP}")))?;
            let mut cfg_map: Array<&mut MapData, [u8; 16]> =
                Array::try_from(map).map_err(|e| map_err(format!("{CFG_MAP}: open"), &e))?;
            cfg_map
                .set(0, value, 0)
                .map_err(|e| map_err(format!("{CFG_MAP}: write the configuration"), &e))
        })?;
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
        let s = read_percpu(&self.inner.loaded.maps, STATS_MAP, 3);
        FilterStats {
            redirected: s[0],
            passed: s[1],
            redirect_failed: s[2],
        }
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
        }
    }

    #[test]
    fn encoding_matches_the_c_struct() {
        let b = cfg().encode().unwrap();
        assert_eq!(&b[0..4], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&b[4..6], &0xfff0u16.to_ne_bytes());
        assert_eq!(&b[6..8], &[0, 0]);
        assert_eq!(&b[8..12], &32u32.to_ne_bytes());
        assert_eq!(&b[12..16], &1u32.to_ne_bytes());
        let both = FilterConfig {
            v6: true,
            ident_span: 65536,
            ..cfg()
        };
        let b = both.encode().unwrap();
        assert_eq!(&b[8..12], &65536u32.to_ne_bytes());
        assert_eq!(&b[12..16], &3u32.to_ne_bytes());
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
