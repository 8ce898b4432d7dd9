//! The scan's address space: target prefixes and address lists, minus blocklists, within an
//! optional allowlist, numbered `0..len` so that a permutation can visit it.
//!
//! Sets of addresses are sorted, disjoint, merged ranges ([`RangeSet`]): membership is a
//! binary search, so a blocklist of thousands of entries costs a dozen comparisons. The
//! blocklist is subtracted from the targets once, up front; the generator then maps an index
//! to an address with one binary search over the remaining ranges ([`Space::get`]), and never
//! produces a blocked address.
//!
//! IPv6 prefixes too large to probe whole are *sampled*: `k` distinct addresses drawn from the
//! prefix by a seeded bijection of its host bits. Sampled addresses are checked against the
//! block- and allowlists as they are generated.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use asdic_wire::Family;

use crate::permute::{MAX_SPACE, SplitMix};
use crate::targets::TargetSpec;

/// Sorted, disjoint, non-adjacent inclusive ranges of one family's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u128, u128)>,
}

impl RangeSet {
    /// The set of the given inclusive ranges (any order, overlaps allowed).
    pub fn from_ranges(ranges: Vec<(u128, u128)>) -> Self {
        RangeSet {
            ranges: crate::set::merge_ranges(ranges),
        }
    }

    /// The set of the given prefixes of `family` (other families' prefixes are ignored).
    pub fn from_specs<'a>(family: Family, specs: impl IntoIterator<Item = &'a TargetSpec>) -> Self {
        Self::from_ranges(
            specs
                .into_iter()
                .filter(|s| family_of(s.base) == family)
                .map(spec_range)
                .collect(),
        )
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of addresses (saturating at `u128::MAX`).
    pub fn count(&self) -> u128 {
        self.ranges.iter().fold(0u128, |a, &(lo, hi)| {
            a.saturating_add((hi - lo).saturating_add(1))
        })
    }

    /// Whether `x` is in the set: one binary search.
    #[inline]
    pub fn contains(&self, x: u128) -> bool {
        let i = self.ranges.partition_point(|&(lo, _)| lo <= x);
        i > 0 && self.ranges[i - 1].1 >= x
    }

    /// The addresses of `self` not in `other`.
    pub fn subtract(&self, other: &RangeSet) -> RangeSet {
        let mut out = vec![];
        let mut j = 0;
        for &(lo, hi) in &self.ranges {
            let mut cur = lo;
            // Skip blocks entirely below this range.
            while j < other.ranges.len() && other.ranges[j].1 < lo {
                j += 1;
            }
            let mut k = j;
            let mut done = false;
            while k < other.ranges.len() && other.ranges[k].0 <= hi {
                let (blo, bhi) = other.ranges[k];
                if blo > cur {
                    out.push((cur, blo - 1));
                }
                if bhi >= hi {
                    done = true;
                    break;
                }
                cur = cur.max(bhi + 1);
                k += 1;
            }
            if !done {
                out.push((cur, hi));
            }
        }
        RangeSet { ranges: out }
    }

    /// The addresses in both sets.
    pub fn intersect(&self, other: &RangeSet) -> RangeSet {
        let (mut i, mut j, mut out) = (0, 0, vec![]);
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a, b) = (self.ranges[i], other.ranges[j]);
            let (lo, hi) = (a.0.max(b.0), a.1.min(b.1));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 { i += 1 } else { j += 1 }
        }
        RangeSet { ranges: out }
    }
}

fn family_of(a: IpAddr) -> Family {
    if a.is_ipv4() { Family::V4 } else { Family::V6 }
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(family: Family, x: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(x as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(x)),
    }
}

fn spec_range(s: &TargetSpec) -> (u128, u128) {
    let lo = to_u128(s.base);
    (lo, lo + (s.count() - 1))
}

/// A set of addresses of both families: a blocklist or an allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    /// IPv4 ranges.
    pub v4: RangeSet,
    /// IPv6 ranges.
    pub v6: RangeSet,
}

impl AddrSet {
    /// The set of these prefixes.
    pub fn from_specs(specs: &[TargetSpec]) -> Self {
        AddrSet {
            v4: RangeSet::from_specs(Family::V4, specs),
            v6: RangeSet::from_specs(Family::V6, specs),
        }
    }

    /// The family's ranges.
    pub fn family(&self, family: Family) -> &RangeSet {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Whether `a` is in the set.
    pub fn contains(&self, a: IpAddr) -> bool {
        self.family(family_of(a)).contains(to_u128(a))
    }

    /// The union of two sets.
    pub fn union(&self, o: &AddrSet) -> AddrSet {
        let join = |a: &RangeSet, b: &RangeSet| {
            RangeSet::from_ranges(a.ranges.iter().chain(&b.ranges).copied().collect())
        };
        AddrSet {
            v4: join(&self.v4, &o.v4),
            v6: join(&self.v6, &o.v6),
        }
    }
}

/// The default blocklist: every block of the IANA IPv4 and IPv6 Special-Purpose Address
/// Registries (RFC 6890 and its updates), plus multicast, as (prefix, what it is).
///
/// Some special-purpose blocks are globally reachable (AS112, AMT, 6to4 relays, NAT64's
/// well-known prefix); they are blocked too, because probing them measures infrastructure
/// shared by many, not hosts. Pass the scan's explicit flag to probe any of these.
pub const DEFAULT_BLOCKLIST: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" (RFC 791)"),
    ("10.0.0.0/8", "private use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link local (RFC 3927)"),
    ("172.16.0.0/12", "private use (RFC 1918)"),
    (
        "192.0.0.0/24",
        "IETF protocol assignments (RFC 6890; DS-Lite, PCP, TURN, NAT64 discovery)",
    ),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private use (RFC 1918)"),
    (
        "192.175.48.0/24",
        "direct delegation AS112 service (RFC 7534)",
    ),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("::/128", "unspecified address (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::ffff:0:0/96", "IPv4-mapped addresses (RFC 4291)"),
    ("64:ff9b::/96", "IPv4-IPv6 translation (RFC 6052)"),
    (
        "64:ff9b:1::/48",
        "local-use IPv4-IPv6 translation (RFC 8215)",
    ),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy prefix (RFC 9780)"),
    (
        "2001::/23",
        "IETF protocol assignments (RFC 2928; Teredo, benchmarking, ORCHID, AMT, DETs)",
    ),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),
    (
        "2620:4f:8000::/48",
        "direct delegation AS112 service (RFC 7534)",
    ),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local unicast (RFC 4291)"),
    ("ff00::/8", "multicast (RFC 4291)"),
];

/// The default blocklist as a set.
pub fn default_blocklist() -> AddrSet {
    let specs: Vec<TargetSpec> = DEFAULT_BLOCKLIST
        .iter()
        .filter_map(|(p, _)| TargetSpec::parse(p).ok())
        .collect();
    AddrSet::from_specs(&specs)
}

/// The default-blocklist entry that holds `a`, if any (to explain an empty scan).
pub fn default_block_reason(a: IpAddr) -> Option<(&'static str, &'static str)> {
    DEFAULT_BLOCKLIST.iter().copied().find(|(p, _)| {
        TargetSpec::parse(p)
            .map(|s| AddrSet::from_specs(&[s]).contains(a))
            .unwrap_or(false)
    })
}

/// Why a space cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    /// An IPv6 prefix too large to probe whole, without sampling.
    #[error(
        "{0} holds 2^{1} addresses: pass --ipv6-samples N to probe N sampled addresses of each large IPv6 prefix"
    )]
    NeedSampling(String, u32),
    /// More targets than one scan can permute.
    #[error("{0} targets after the blocklist: at most 2^48 per scan")]
    TooLarge(u128),
}

/// Buckets of `2^shift` indices, about two per segment (at most 2^20), each naming the
/// segment that holds its first index; none for up to 64 segments (a binary search over
/// those is as fast).
fn bucket_index(starts: &[u64], len: u64) -> (Vec<u32>, u32) {
    if starts.len() <= 64 {
        return (vec![], 0);
    }
    let want = (starts.len() * 2).next_power_of_two().clamp(1, 1 << 20) as u64;
    let mut shift = 0;
    while (len.max(1) - 1) >> shift >= want {
        shift += 1;
    }
    let count = ((len.max(1) - 1) >> shift) + 1;
    let buckets = (0..count)
        .map(|b| (starts.partition_point(|&s| s <= b << shift).max(1) - 1) as u32)
        .collect();
    (buckets, shift)
}

/// A seeded bijection of the integers `0..2^bits`: odd multiplications, additions and
/// xor-shifts, each invertible modulo `2^bits`.
#[derive(Debug, Clone, Copy)]
struct Mixer {
    mask: u128,
    shift: u32,
    keys: [(u128, u128); 3],
}

impl Mixer {
    fn new(bits: u32, rng: &mut SplitMix) -> Self {
        let mut word = || (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        let keys = [
            (word() | 1, word()),
            (word() | 1, word()),
            (word() | 1, word()),
        ];
        Mixer {
            mask: if bits >= 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            },
            shift: bits / 2 + 1,
            keys,
        }
    }

    #[inline]
    fn apply(&self, mut x: u128) -> u128 {
        for (mul, add) in self.keys {
            x = x.wrapping_mul(mul).wrapping_add(add) & self.mask;
            x ^= x.checked_shr(self.shift).unwrap_or(0);
        }
        x
    }

    /// The inverse of [`Mixer::apply`]: the xor-shift undoes itself (its shift is over half
    /// the width), the multiplication by the inverse of its odd factor modulo 2^128.
    fn invert(&self, mut x: u128) -> u128 {
        for &(mul, add) in self.keys.iter().rev() {
            x ^= x.checked_shr(self.shift).unwrap_or(0);
            x = x.wrapping_sub(add).wrapping_mul(inverse(mul)) & self.mask;
        }
        x
    }
}

/// The inverse of odd `a` modulo 2^128 (Newton's iteration: each step doubles the bits
/// that are right, from 3 for `a` itself).
fn inverse(a: u128) -> u128 {
    let mut x = a;
    for _ in 0..7 {
        x = x.wrapping_mul(2u128.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// A run of consecutive indices.
#[derive(Debug, Clone, Copy)]
enum Segment {
    /// Index `start + i` is address `lo + i`.
    Range { lo: u128 },
    /// Index `start + i` is the `i`-th listed single address.
    Singles,
    /// Index `start + i` is `base | mixers[mix](i)`, unless block- or allowlists say no.
    Sample { base: u128, mix: u32 },
}

/// One family's numbered target space.
#[derive(Debug, Clone)]
pub struct Space {
    family: Family,
    /// First index of each segment, ascending; `starts[0] == 0`.
    starts: Vec<u64>,
    segments: Vec<Segment>,
    /// The bijections of the sampled segments.
    mixers: Vec<Mixer>,
    /// Listed single addresses (ascending, none blocked, none in a range), 4 or 16 bytes
    /// each: the [`Segment::Singles`] segment.
    singles: Singles,
    /// For each bucket of `2^shift` indices, the segment holding its first index: a lookup
    /// searches only the segments that start inside one bucket (about two on average).
    buckets: Vec<u32>,
    shift: u32,
    len: u64,
    /// Checked for sampled addresses only (ranges are already clean).
    block: RangeSet,
    allow: Option<RangeSet>,
}

/// What a space is built from.
#[derive(Debug, Clone)]
pub struct SpaceSpec<'a> {
    /// The family to build.
    pub family: Family,
    /// Target prefixes and addresses (of any family; others are ignored).
    pub targets: &'a [TargetSpec],
    /// Addresses never to probe.
    pub block: &'a AddrSet,
    /// If given, only these addresses may be probed.
    pub allow: Option<&'a AddrSet>,
    /// For IPv6 prefixes of more than this many addresses, probe this many sampled ones.
    pub v6_samples: Option<u64>,
    /// Seed of the sampling.
    pub seed: u64,
}

/// Single addresses of one family, held at their width.
#[derive(Debug, Clone)]
pub enum Singles {
    /// IPv4 addresses.
    V4(Vec<u32>),
    /// IPv6 addresses.
    V6(Vec<u128>),
}

impl Singles {
    /// None of `family`.
    pub fn none(family: Family) -> Self {
        match family {
            Family::V4 => Singles::V4(Vec::new()),
            Family::V6 => Singles::V6(Vec::new()),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        match self {
            Singles::V4(v) => v.len(),
            Singles::V6(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Option<u128> {
        match self {
            Singles::V4(v) => v.get(i).map(|&x| u128::from(x)),
            Singles::V6(v) => v.get(i).copied(),
        }
    }

    fn position(&self, x: u128) -> Option<usize> {
        match self {
            Singles::V4(v) => v.binary_search(&u32::try_from(x).ok()?).ok(),
            Singles::V6(v) => v.binary_search(&x).ok(),
        }
    }

    fn retain(&mut self, keep: impl Fn(u128) -> bool) {
        match self {
            Singles::V4(v) => v.retain(|&x| keep(u128::from(x))),
            Singles::V6(v) => v.retain(|&x| keep(x)),
        }
    }

    fn shrink(&mut self) {
        match self {
            Singles::V4(v) => v.shrink_to_fit(),
            Singles::V6(v) => v.shrink_to_fit(),
        }
    }
}

/// Largest IPv6 prefix (in host bits) expanded whole when no sampling is asked for.
pub const MAX_WHOLE_V6_BITS: u32 = 32;

impl Space {
    /// Builds the space.
    ///
    /// # Errors
    /// [`SpaceError`] for an IPv6 prefix that needs sampling, or a space beyond 2^48.
    pub fn new(spec: &SpaceSpec<'_>) -> Result<Self, SpaceError> {
        Self::with_listed(spec, Vec::new(), Singles::none(spec.family))
    }

    /// Builds the space of `spec`'s targets plus listed `ranges` (inclusive) and `singles`
    /// of its family (ascending; from a [`crate::set::TargetSet`]), which it keeps: single
    /// addresses cost 4 or 16 bytes each, whatever their number.
    ///
    /// # Errors
    /// As [`Space::new`].
    pub fn with_listed(
        spec: &SpaceSpec<'_>,
        listed: Vec<(u128, u128)>,
        mut singles: Singles,
    ) -> Result<Self, SpaceError> {
        let family = spec.family;
        let block = spec.block.family(family).clone();
        let allow = spec.allow.map(|a| a.family(family).clone());
        let mut whole = listed;
        let mut sampled = vec![];
        for s in spec.targets.iter().filter(|s| family_of(s.base) == family) {
            let bits = match family {
                Family::V4 => 32,
                Family::V6 => 128,
            } - u32::from(s.prefix);
            let large = match spec.v6_samples {
                Some(k) => family == Family::V6 && s.count() > u128::from(k),
                None => false,
            };
            if large {
                sampled.push((*s, bits));
            } else if family == Family::V6 && bits > MAX_WHOLE_V6_BITS {
                return Err(SpaceError::NeedSampling(s.to_string(), bits));
            } else {
                whole.push(spec_range(s));
            }
        }
        let mut ranges = RangeSet::from_ranges(whole).subtract(&block);
        if let Some(allow) = &allow {
            ranges = ranges.intersect(allow);
        }
        let mut starts = vec![];
        let mut segments = vec![];
        let mut len: u128 = 0;
        for &(lo, hi) in ranges.ranges() {
            starts.push(len as u64);
            segments.push(Segment::Range { lo });
            len += hi - lo + 1;
            if len > u128::from(MAX_SPACE) {
                return Err(SpaceError::TooLarge(len));
            }
        }
        singles.retain(|x| {
            !ranges.contains(x)
                && !block.contains(x)
                && allow.as_ref().is_none_or(|a| a.contains(x))
        });
        singles.shrink();
        if !singles.is_empty() {
            starts.push(len as u64);
            segments.push(Segment::Singles);
            len += singles.len() as u128;
            if len > u128::from(MAX_SPACE) {
                return Err(SpaceError::TooLarge(len));
            }
        }
        let mut rng = SplitMix::new(spec.seed ^ 0x5a3c_96e1_0f0f_1234);
        let mut mixers = vec![];
        for (s, bits) in sampled {
            let k = spec.v6_samples.unwrap_or(0);
            starts.push(len as u64);
            segments.push(Segment::Sample {
                base: to_u128(s.base),
                mix: mixers.len() as u32,
            });
            mixers.push(Mixer::new(bits, &mut rng));
            len += u128::from(k);
            if len > u128::from(MAX_SPACE) {
                return Err(SpaceError::TooLarge(len));
            }
        }
        let len = len as u64;
        let (buckets, shift) = bucket_index(&starts, len);
        Ok(Space {
            family,
            starts,
            segments,
            mixers,
            singles,
            buckets,
            shift,
            len,
            block,
            allow,
        })
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Number of indices (an upper bound on addresses when prefixes are sampled).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there is nothing to probe.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some prefixes are sampled (then some indices may map to no address).
    pub fn is_sampled(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Sample { .. }))
    }

    /// The address of index `i`: `None` past the end, or for a sample that falls in a
    /// blocked (or not allowed) address.
    #[inline]
    pub fn get(&self, i: u64) -> Option<IpAddr> {
        if i >= self.len {
            return None;
        }
        // The last segment starting at or before `i`: among the few of its bucket, or by a
        // binary search over all when there are few.
        let (lo, hi) = match self.buckets.get((i >> self.shift) as usize) {
            Some(&lo) => {
                let b = (i >> self.shift) as usize + 1;
                let hi = self
                    .buckets
                    .get(b)
                    .map_or(self.starts.len(), |&h| h as usize + 1);
                (lo as usize, hi)
            }
            None => (0, self.starts.len()),
        };
        let k = lo + self.starts[lo..hi].partition_point(|&s| s <= i) - 1;
        let off = u128::from(i - self.starts[k]);
        let x = match self.segments[k] {
            Segment::Range { lo } => lo + off,
            Segment::Singles => self.singles.get(off as usize)?,
            Segment::Sample { base, mix } => {
                let x = base | self.mixers[mix as usize].apply(off);
                if self.block.contains(x) || self.allow.as_ref().is_some_and(|a| !a.contains(x)) {
                    return None;
                }
                x
            }
        };
        Some(from_u128(self.family, x))
    }
}

impl Space {
    /// The index of address `a`, the inverse of [`Space::get`]: `None` for an address the
    /// space does not hold (another family, outside the targets, blocked). One binary search
    /// over the whole ranges, then one inversion per sampled prefix holding `a`.
    pub fn index_of(&self, a: IpAddr) -> Option<u64> {
        if family_of(a) != self.family {
            return None;
        }
        let x = to_u128(a);
        // Whole ranges come first, in address order, then the singles.
        let ranges = self
            .segments
            .iter()
            .position(|s| !matches!(s, Segment::Range { .. }))
            .unwrap_or(self.segments.len());
        let k = self.segments[..ranges].partition_point(|s| match s {
            Segment::Range { lo } => *lo <= x,
            Segment::Singles | Segment::Sample { .. } => false,
        });
        if k > 0
            && let Segment::Range { lo } = self.segments[k - 1]
        {
            let off = x - lo;
            if off < u128::from(self.segment_len(k - 1)) {
                return Some(self.starts[k - 1] + off as u64);
            }
        }
        if let Some(Segment::Singles) = self.segments.get(ranges)
            && let Some(j) = self.singles.position(x)
        {
            return Some(self.starts[ranges] + j as u64);
        }
        for k in ranges..self.segments.len() {
            let Segment::Sample { base, mix } = self.segments[k] else {
                continue;
            };
            let m = &self.mixers[mix as usize];
            if x & !m.mask != base {
                continue;
            }
            let off = m.invert(x & m.mask);
            if off < u128::from(self.segment_len(k)) {
                let i = self.starts[k] + off as u64;
                // A sample that is blocked (or not allowed) was never probed.
                return (self.get(i) == Some(a)).then_some(i);
            }
        }
        None
    }

    /// Feeds everything that decides which address each index is — the segments, the
    /// samplers' keys, the listed singles, and the block- and allowlists *as resolved* — to
    /// `f`, in a fixed order: two spaces that feed the same words number the same addresses
    /// the same way (a resumed scan's check that it continues the scan it was).
    pub fn feed(&self, f: &mut dyn FnMut(u128)) {
        f(match self.family {
            Family::V4 => 4,
            Family::V6 => 6,
        });
        f(u128::from(self.len));
        for (&start, seg) in self.starts.iter().zip(&self.segments) {
            f(u128::from(start));
            match *seg {
                Segment::Range { lo } => {
                    f(1);
                    f(lo);
                }
                Segment::Singles => f(2),
                Segment::Sample { base, mix } => {
                    f(3);
                    f(base);
                    f(u128::from(mix));
                }
            }
        }
        for m in &self.mixers {
            f(m.mask);
            f(u128::from(m.shift));
            for (mul, add) in m.keys {
                f(mul);
                f(add);
            }
        }
        f(self.singles.len() as u128);
        for i in 0..self.singles.len() {
            f(self.singles.get(i).unwrap_or_default());
        }
        for (lo, hi) in self.block.ranges() {
            f(*lo);
            f(*hi);
        }
        match &self.allow {
            None => f(0),
            Some(a) => {
                f(1);
                for (lo, hi) in a.ranges() {
                    f(*lo);
                    f(*hi);
                }
            }
        }
    }

    /// Indices in segment `k`.
    fn segment_len(&self, k: usize) -> u64 {
        self.starts.get(k + 1).copied().unwrap_or(self.len) - self.starts[k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &str) -> Vec<TargetSpec> {
        crate::targets::parse_lines(s.as_bytes()).unwrap()
    }

    fn set(s: &str) -> AddrSet {
        AddrSet::from_specs(&specs(s))
    }

    /// Every address of a small space, by plain enumeration.
    fn naive(targets: &str, block: &str, allow: Option<&str>) -> Vec<IpAddr> {
        let (block, allow) = (set(block), allow.map(set));
        let mut out: Vec<IpAddr> = specs(targets)
            .iter()
            .flat_map(|s| (0..s.count()).map(|i| s.nth(i)))
            .filter(|a| !block.contains(*a) && allow.as_ref().is_none_or(|w| w.contains(*a)))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn all(space: &Space) -> Vec<IpAddr> {
        (0..space.len()).filter_map(|i| space.get(i)).collect()
    }

    #[test]
    fn listed_singles_are_kept_at_their_width_and_indexed_both_ways() {
        // Prefixes as specs; every address listed alone through a target set, some of them
        // inside a prefix, blocked, or next to each other (a run of 8 becomes a range).
        let prefixes = "198.19.4.0/30 198.19.9.0/29";
        let mut singles = String::new();
        for i in 0..200u32 {
            singles += &format!("198.19.{}.{} ", 3 * i / 256 + 4, (3 * i) % 256);
        }
        singles += "198.19.9.3 198.19.7.1 198.19.20.0/29 198.19.0.1";
        let listed = crate::set::TargetSet::of(&specs(&singles));
        let (ranges, ones) = listed.v4.into_parts();
        let block = set("198.19.7.0/24");
        let spec = SpaceSpec {
            family: Family::V4,
            targets: &specs(prefixes),
            block: &block,
            allow: None,
            v6_samples: None,
            seed: 1,
        };
        let ranges = ranges
            .iter()
            .map(|&(lo, hi)| (u128::from(lo), u128::from(hi)))
            .collect();
        let space = Space::with_listed(&spec, ranges, Singles::V4(ones)).unwrap();
        let want = naive(&format!("{prefixes} {singles}"), "198.19.7.0/24", None);
        assert_eq!(space.len(), want.len() as u64);
        let mut got = all(&space);
        got.sort();
        assert_eq!(got, want);
        for i in 0..space.len() {
            let a = space.get(i).unwrap();
            assert_eq!(space.index_of(a), Some(i), "{a}");
        }
        assert_eq!(space.index_of("198.19.7.1".parse().unwrap()), None);
        assert!(matches!(&space.singles, Singles::V4(v) if v.len() < 200));
    }

    #[test]
    fn range_sets() {
        let r = RangeSet::from_ranges(vec![(10, 20), (0, 3), (4, 5), (15, 30), (40, 40)]);
        assert_eq!(r.ranges(), &[(0, 5), (10, 30), (40, 40)]);
        assert_eq!(r.count(), 6 + 21 + 1);
        for (x, inside) in [
            (0, true),
            (5, true),
            (6, false),
            (9, false),
            (10, true),
            (30, true),
            (31, false),
            (40, true),
            (41, false),
        ] {
            assert_eq!(r.contains(x), inside, "{x}");
        }
        let b = RangeSet::from_ranges(vec![(2, 3), (10, 12), (25, 45)]);
        assert_eq!(r.subtract(&b).ranges(), &[(0, 1), (4, 5), (13, 24)]);
        assert_eq!(
            r.intersect(&b).ranges(),
            &[(2, 3), (10, 12), (25, 30), (40, 40)]
        );
        assert!(r.subtract(&r).is_empty());
        let full = RangeSet::from_ranges(vec![(0, u128::MAX)]);
        // 2^128 addresses minus 2 + 3 + 21 blocked.
        assert_eq!(full.subtract(&b).count(), u128::MAX - 25);
    }

    #[test]
    fn subtract_and_intersect_match_brute_force() {
        let mut rng = SplitMix::new(9);
        for _ in 0..300 {
            let mut make = |k: usize| {
                (0..k)
                    .map(|_| {
                        let lo = rng.range(0, 200) as u128;
                        (lo, lo + rng.range(0, 20) as u128)
                    })
                    .collect::<Vec<_>>()
            };
            let (a, b) = (
                RangeSet::from_ranges(make(6)),
                RangeSet::from_ranges(make(6)),
            );
            let (d, i) = (a.subtract(&b), a.intersect(&b));
            for x in 0..240u128 {
                assert_eq!(d.contains(x), a.contains(x) && !b.contains(x));
                assert_eq!(i.contains(x), a.contains(x) && b.contains(x));
            }
        }
    }

    #[test]
    fn space_is_targets_minus_block_within_allow() {
        let cases = [
            ("198.19.0.0/22", "198.19.1.0/24 198.19.3.128/25", None),
            ("198.19.0.0/22 198.19.2.0/23 198.19.9.9", "", None),
            ("198.19.0.0/22", "198.19.0.0/16", None),
            (
                "198.19.0.0/22",
                "198.19.0.1",
                Some("198.19.0.0/30 198.19.3.0/24"),
            ),
            ("2001:db8:1::/118", "2001:db8:1::100/120", None),
        ];
        for (t, b, a) in cases {
            let (targets, block, allow) = (specs(t), set(b), a.map(set));
            let mut got = vec![];
            for family in [Family::V4, Family::V6] {
                let space = Space::new(&SpaceSpec {
                    family,
                    targets: &targets,
                    block: &block,
                    allow: allow.as_ref(),
                    v6_samples: None,
                    seed: 1,
                })
                .unwrap();
                assert!(!space.is_sampled());
                got.extend(all(&space));
                assert_eq!(space.get(space.len()), None);
            }
            got.sort();
            assert_eq!(got, naive(t, b, a), "{t} - {b}");
        }
    }

    #[test]
    fn bucketed_lookup_with_many_segments() {
        // 600 random holes (single addresses and small prefixes) and a few extra targets.
        let mut rng = SplitMix::new(77);
        let mut block = String::new();
        for _ in 0..600 {
            let x = rng.range(0, 65_535) as u32;
            let len = [32, 32, 30, 28][rng.range(0, 3) as usize];
            block.push_str(&format!("198.19.{}.{}/{len}\n", x >> 8, x & 255));
        }
        let t = "198.19.0.0/16 198.20.0.1 198.20.0.3 198.20.0.5";
        let space = Space::new(&SpaceSpec {
            family: Family::V4,
            targets: &specs(t),
            block: &set(&block),
            allow: None,
            v6_samples: None,
            seed: 1,
        })
        .unwrap();
        assert!(space.segments.len() > 500, "{}", space.segments.len());
        assert!(space.buckets.len() >= space.segments.len());
        let mut got = all(&space);
        got.sort();
        assert_eq!(got, naive(t, &block, None));
        // index_of inverts get everywhere, and knows no blocked or foreign address.
        for i in 0..space.len() {
            let a = space.get(i).unwrap();
            assert_eq!(space.index_of(a), Some(i), "{a}");
        }
        let blocked = set(&block);
        for x in 0..65_536u32 {
            let a = IpAddr::from([198, 19, (x >> 8) as u8, x as u8]);
            assert_eq!(space.index_of(a).is_some(), !blocked.contains(a), "{a}");
        }
        for a in ["198.20.0.2", "198.18.255.255", "198.20.0.6", "2001:db8::1"] {
            assert_eq!(space.index_of(a.parse().unwrap()), None, "{a}");
        }
    }

    #[test]
    fn default_blocklist_parses_and_covers_the_bed() {
        assert!(
            DEFAULT_BLOCKLIST
                .iter()
                .all(|(p, _)| TargetSpec::parse(p).is_ok())
        );
        let d = default_blocklist();
        for a in [
            "198.18.0.1",
            "198.19.77.3",
            "10.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "2001:db8:1::1",
            "fe80::1",
            "::1",
        ] {
            assert!(d.contains(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "198.20.0.1"] {
            assert!(!d.contains(a.parse().unwrap()), "{a}");
        }
        assert_eq!(
            default_block_reason("198.19.0.1".parse().unwrap()).map(|r| r.0),
            Some("198.18.0.0/15")
        );
        // All of IPv4 minus the default list: the scannable unicast space.
        let space = Space::new(&SpaceSpec {
            family: Family::V4,
            targets: &specs("0.0.0.0/0"),
            block: &d,
            allow: None,
            v6_samples: None,
            seed: 0,
        })
        .unwrap();
        let blocked: u64 = [
            1 << 24,
            1 << 24,
            1 << 22,
            1 << 24,
            1 << 16,
            1 << 20,
            256,
            256,
            256,
            256,
            256,
            1 << 16,
            256,
            1 << 17,
            256,
            256,
            1 << 28,
            1 << 28,
        ]
        .iter()
        .sum();
        assert_eq!(space.len(), (1u64 << 32) - blocked);
        assert!(d.v4.contains(u128::from(u32::MAX)));
    }

    #[test]
    fn ipv6_sampling() {
        let targets = specs("2001:db8:1::/64 2001:db8:2::/120");
        let block = set("2001:db8:1::/66");
        let spec = SpaceSpec {
            family: Family::V6,
            targets: &targets,
            block: &block,
            allow: None,
            v6_samples: Some(1000),
            seed: 5,
        };
        let space = Space::new(&spec).unwrap();
        assert!(space.is_sampled());
        assert_eq!(space.len(), 256 + 1000);
        let got = all(&space);
        let (small, big): (Vec<&IpAddr>, Vec<&IpAddr>) = got
            .iter()
            .partition(|a| TargetSpec::parse("2001:db8:2::/120").unwrap().base == mask120(**a));
        assert_eq!(small.len(), 256);
        // A quarter of the /64 is blocked: about 750 of the 1000 samples survive.
        assert!((650..=850).contains(&big.len()), "{}", big.len());
        let p64 = TargetSpec::parse("2001:db8:1::/64").unwrap();
        for a in &big {
            assert!(!block.contains(**a));
            assert_eq!(
                TargetSpec::parse(&format!("{a}/64")).unwrap().base,
                p64.base
            );
        }
        // index_of inverts get for sampled addresses too; a blocked sample, an address of
        // the prefix never sampled, and one outside have none.
        for i in 0..space.len() {
            if let Some(a) = space.get(i) {
                assert_eq!(space.index_of(a), Some(i), "{a}");
            }
        }
        let sampled: std::collections::HashSet<IpAddr> = big.iter().map(|a| **a).collect();
        let mut rng = SplitMix::new(9);
        let mut unsampled = 0;
        for _ in 0..2000 {
            let a = IpAddr::from(core::net::Ipv6Addr::from(
                (0x2001_0db8_0001_0000u128 << 64) | u128::from(rng.next_u64()),
            ));
            let want = sampled.contains(&a);
            assert_eq!(space.index_of(a).is_some(), want, "{a}");
            unsampled += u32::from(!want);
        }
        assert!(unsampled > 1990);
        for a in ["2001:db8:3::1", "2001:db8:2::1:0", "198.19.0.1"] {
            assert_eq!(space.index_of(a.parse().unwrap()), None, "{a}");
        }
        let mut uniq = big.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), big.len(), "samples repeat");
        // Deterministic for a seed, different for another.
        assert_eq!(all(&Space::new(&spec).unwrap()), got);
        let other = Space::new(&SpaceSpec {
            seed: 6,
            ..spec.clone()
        })
        .unwrap();
        assert_ne!(all(&other), got);
        // Without sampling a /64 is refused with advice.
        let e = Space::new(&SpaceSpec {
            v6_samples: None,
            ..spec
        })
        .unwrap_err();
        assert!(e.to_string().contains("--ipv6-samples"), "{e}");
    }

    fn mask120(a: IpAddr) -> IpAddr {
        TargetSpec::parse(&format!("{a}/120")).unwrap().base
    }

    #[test]
    fn mixer_inverts() {
        let mut rng = SplitMix::new(3);
        for bits in [1, 7, 32, 64, 80, 127, 128] {
            let m = Mixer::new(bits, &mut rng);
            for _ in 0..200 {
                let x = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) & m.mask;
                assert_eq!(m.invert(m.apply(x)), x, "bits={bits}");
            }
        }
    }

    #[test]
    fn mixer_is_a_bijection() {
        for bits in [1, 2, 3, 8, 12] {
            let m = Mixer::new(bits, &mut SplitMix::new(u64::from(bits)));
            let mut v: Vec<u128> = (0..1u128 << bits).map(|x| m.apply(x)).collect();
            v.sort_unstable();
            assert!(
                v.iter().enumerate().all(|(i, &x)| x == i as u128),
                "bits={bits}"
            );
        }
    }
}
