//! A target list held compactly: each family's addresses as sorted, disjoint ranges and
//! sorted single addresses (4 bytes an IPv4 address, 16 an IPv6 one), numbered `0..len` in
//! address order so that a probe's cookie names its target.
//!
//! [`SetBuilder`] takes specs as they are read (never the whole list as text or as
//! [`TargetSpec`]s), compacting as it goes, so a list of N distinct addresses costs about
//! 4·N or 16·N bytes while it is read and after; a prefix costs one range whatever its size.
//! Duplicates and addresses already inside a listed prefix are dropped.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::targets::{TargetError, TargetSpec};

/// An indexed list of targets: what a round of probes walks, what a cookie indexes.
pub trait TargetList: Send + Sync + core::fmt::Debug {
    /// Number of targets.
    fn len(&self) -> u64;

    /// Target `i`, `None` past the end.
    fn nth(&self, i: u64) -> Option<IpAddr>;

    /// Whether there are no targets.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TargetList for Vec<IpAddr> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn nth(&self, i: u64) -> Option<IpAddr> {
        self.get(usize::try_from(i).ok()?).copied()
    }
}

/// An address of one family as an unsigned integer.
pub trait Addr: Copy + Ord + Send + Sync + core::fmt::Debug + 'static {
    /// The family's width in bits.
    const BITS: u32;
    /// As a number.
    fn to_u128(self) -> u128;
    /// From a number (within the family's width).
    fn from_u128(x: u128) -> Self;
    /// As an address.
    fn ip(self) -> IpAddr;
}

impl Addr for u32 {
    const BITS: u32 = 32;
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn from_u128(x: u128) -> Self {
        x as u32
    }
    fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
}

impl Addr for u128 {
    const BITS: u32 = 128;
    fn to_u128(self) -> u128 {
        self
    }
    fn from_u128(x: u128) -> Self {
        x
    }
    fn ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
}

/// A range of a [`Family`] set: `lo..=hi`, whose first address has index `before`, with
/// `singles_before` single addresses below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run<T> {
    lo: T,
    hi: T,
    before: u64,
    singles_before: u64,
}

impl<T: Addr> Run<T> {
    fn len(&self) -> u64 {
        // A family set holds at most 2^64 − 1 addresses (checked when built).
        (self.hi.to_u128() - self.lo.to_u128() + 1) as u64
    }
}

/// One family's addresses: sorted disjoint ranges and sorted single addresses outside them,
/// indexed in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family<T> {
    runs: Vec<Run<T>>,
    singles: Vec<T>,
    len: u64,
}

impl<T: Addr> Default for Family<T> {
    fn default() -> Self {
        Family {
            runs: Vec::new(),
            singles: Vec::new(),
            len: 0,
        }
    }
}

/// What [`Family::build`] has written so far.
struct Out<T> {
    runs: Vec<Run<T>>,
    /// Singles written back.
    kept: usize,
    len: u128,
}

impl<T: Addr> Out<T> {
    /// Ends run `lo..=hi` (`range`: it holds a listed range).
    fn flush(
        &mut self,
        (lo, hi, range): (T, T, bool),
        singles: &mut [T],
    ) -> Result<(), TargetError> {
        let n = hi.to_u128() - lo.to_u128() + 1;
        if !range && n < MIN_RUN {
            // Its singles were all read already: the write index trails the read index.
            for x in lo.to_u128()..=hi.to_u128() {
                singles[self.kept] = T::from_u128(x);
                self.kept += 1;
            }
        } else {
            self.runs.push(Run {
                lo,
                hi,
                before: self.len as u64,
                singles_before: self.kept as u64,
            });
        }
        self.len += n;
        if self.len >= u128::from(u64::MAX) {
            return Err(TargetError::TooMany {
                spec: format!("{}..{}", lo.ip(), hi.ip()),
                count: self.len,
                limit: u64::MAX,
            });
        }
        Ok(())
    }
}

/// Runs of consecutive single addresses at least this long are kept as a range.
const MIN_RUN: u128 = 8;

impl<T: Addr> Family<T> {
    /// The set of `ranges` (inclusive, any order, overlaps allowed) and `singles` (any
    /// order, duplicates allowed).
    ///
    /// # Errors
    /// [`TargetError::TooMany`] for 2^64 addresses or more.
    fn build(mut ranges: Vec<(T, T)>, mut singles: Vec<T>) -> Result<Self, TargetError> {
        ranges.sort_unstable();
        singles.sort_unstable();
        singles.dedup();
        // One ordered stream of ranges and singles, coalesced where they touch; runs of
        // singles that stay short are written back into `singles` in place (never more of
        // them than were read), the rest become ranges.
        let mut out = Out {
            runs: Vec::new(),
            kept: 0,
            len: 0,
        };
        let mut cur: Option<(T, T, bool)> = None;
        let (mut ri, mut si) = (0, 0);
        loop {
            let next = match (ranges.get(ri), singles.get(si)) {
                (Some(&(lo, _)), Some(&x)) if x < lo => {
                    si += 1;
                    (x, x, false)
                }
                (Some(&(lo, hi)), _) => {
                    ri += 1;
                    (lo, hi, true)
                }
                (None, Some(&x)) => {
                    si += 1;
                    (x, x, false)
                }
                (None, None) => break,
            };
            cur = match cur {
                Some(c) if next.0.to_u128() <= c.1.to_u128().saturating_add(1) => {
                    Some((c.0, c.1.max(next.1), c.2 | next.2))
                }
                Some(c) => {
                    out.flush(c, &mut singles)?;
                    Some(next)
                }
                None => Some(next),
            };
        }
        if let Some(c) = cur {
            out.flush(c, &mut singles)?;
        }
        singles.truncate(out.kept);
        singles.shrink_to_fit();
        out.runs.shrink_to_fit();
        Ok(Family {
            runs: out.runs,
            singles,
            len: out.len as u64,
        })
    }

    /// Number of addresses.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address `i` (in address order), `None` past the end.
    pub fn get(&self, i: u64) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let k = self.runs.partition_point(|r| r.before <= i);
        let Some(r) = k.checked_sub(1).map(|k| &self.runs[k]) else {
            return self.singles.get(usize::try_from(i).ok()?).copied();
        };
        let off = i - r.before;
        if off < r.len() {
            return Some(T::from_u128(r.lo.to_u128() + u128::from(off)));
        }
        let j = r.singles_before + (off - r.len());
        self.singles.get(usize::try_from(j).ok()?).copied()
    }

    /// The index of `a`, the inverse of [`Family::get`]; `None` if it is not in the set.
    pub fn index_of(&self, a: T) -> Option<u64> {
        let k = self.runs.partition_point(|r| r.lo <= a);
        let ranged = match k.checked_sub(1).map(|k| &self.runs[k]) {
            Some(r) if a <= r.hi => {
                return Some(r.before + (a.to_u128() - r.lo.to_u128()) as u64);
            }
            // Range addresses below `a`: those of the runs up to `r`.
            Some(r) => r.before - r.singles_before + r.len(),
            None => 0,
        };
        let j = self.singles.binary_search(&a).ok()?;
        Some(ranged + j as u64)
    }

    /// Its ranges (inclusive) and its single addresses, both ascending.
    pub fn into_parts(self) -> (Vec<(T, T)>, Vec<T>) {
        (
            self.runs.into_iter().map(|r| (r.lo, r.hi)).collect(),
            self.singles,
        )
    }

    /// Bytes held (the vectors' capacity).
    pub fn bytes(&self) -> usize {
        self.runs.capacity() * core::mem::size_of::<Run<T>>()
            + self.singles.capacity() * core::mem::size_of::<T>()
    }
}

impl<T: Addr> TargetList for Family<T> {
    fn len(&self) -> u64 {
        self.len
    }

    fn nth(&self, i: u64) -> Option<IpAddr> {
        self.get(i).map(Addr::ip)
    }
}

/// The targets of a run: IPv4 then IPv6, each in address order, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetSet {
    /// IPv4 addresses (indices `0..v4.len()`).
    pub v4: Family<u32>,
    /// IPv6 addresses (indices from `v4.len()` on).
    pub v6: Family<u128>,
}

impl TargetSet {
    /// The set of `specs`, with no limit (tests and small lists).
    pub fn of(specs: &[TargetSpec]) -> Self {
        let mut b = SetBuilder::new(u128::MAX, u64::MAX);
        for s in specs {
            // Without limits only 2^64 addresses of one family fail, at `finish`.
            let _ = b.add(*s);
        }
        b.finish().unwrap_or_default()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.v4.bytes() + self.v6.bytes()
    }

    /// The index of `a`, if in the set.
    pub fn index_of(&self, a: IpAddr) -> Option<u64> {
        match a {
            IpAddr::V4(a) => self.v4.index_of(u32::from(a)),
            IpAddr::V6(a) => Some(self.v4.len() + self.v6.index_of(u128::from(a))?),
        }
    }
}

impl TargetList for TargetSet {
    fn len(&self) -> u64 {
        self.v4.len() + self.v6.len()
    }

    fn nth(&self, i: u64) -> Option<IpAddr> {
        match i.checked_sub(self.v4.len()) {
            None => self.v4.nth(i),
            Some(j) => self.v6.nth(j),
        }
    }
}

/// Inclusive ranges (any order, overlaps allowed) as sorted, disjoint, non-adjacent ones.
pub fn merge_ranges<T: Addr>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo.to_u128() <= last.1.to_u128().saturating_add(1) => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// One family of a shared [`TargetSet`], as a list of its own (indices from 0).
#[derive(Debug, Clone)]
pub struct Side {
    set: Arc<TargetSet>,
    v6: bool,
}

impl Side {
    /// The IPv4 (`v6` false) or IPv6 addresses of `set`.
    pub fn of(set: &Arc<TargetSet>, v6: bool) -> Self {
        Side {
            set: set.clone(),
            v6,
        }
    }
}

impl TargetList for Side {
    fn len(&self) -> u64 {
        if self.v6 {
            self.set.v6.len()
        } else {
            self.set.v4.len()
        }
    }

    fn nth(&self, i: u64) -> Option<IpAddr> {
        if self.v6 {
            self.set.v6.nth(i)
        } else {
            self.set.v4.nth(i)
        }
    }
}

/// One family's specs while they are read.
#[derive(Debug)]
struct Pending<T> {
    ranges: Vec<(T, T)>,
    singles: Vec<T>,
    /// Length of `singles` after the last compaction.
    kept: usize,
}

impl<T: Addr> Pending<T> {
    fn new() -> Self {
        Pending {
            ranges: Vec::new(),
            singles: Vec::new(),
            kept: 0,
        }
    }

    fn push(&mut self, lo: u128, hi: u128) {
        if lo == hi {
            self.singles.push(T::from_u128(lo));
            // Duplicates do not pile up: sorted and deduplicated whenever the list has
            // doubled since the last time.
            if self.singles.len() >= (2 * self.kept).max(1 << 16) {
                self.singles.sort_unstable();
                self.singles.dedup();
                self.kept = self.singles.len();
            }
        } else {
            self.ranges.push((T::from_u128(lo), T::from_u128(hi)));
            if self.ranges.len() >= 1 << 16 && self.ranges.len().is_power_of_two() {
                self.ranges = merge_ranges(core::mem::take(&mut self.ranges));
            }
        }
    }
}

/// Builds a [`TargetSet`] from specs as they are read, within limits.
#[derive(Debug)]
pub struct SetBuilder {
    v4: Pending<u32>,
    v6: Pending<u128>,
    /// Addresses added, duplicates included.
    total: u128,
    max_total: u128,
    entries: u64,
    max_entries: u64,
}

impl SetBuilder {
    /// A builder refusing more than `max_total` addresses (counting duplicates) or more than
    /// `max_entries` specs.
    pub fn new(max_total: u128, max_entries: u64) -> Self {
        SetBuilder {
            v4: Pending::new(),
            v6: Pending::new(),
            total: 0,
            max_total,
            entries: 0,
            max_entries,
        }
    }

    /// Adds a spec.
    ///
    /// # Errors
    /// [`TargetError::TooMany`] beyond `max_total` addresses, naming this spec;
    /// [`TargetError::TooManyEntries`] beyond `max_entries` specs.
    pub fn add(&mut self, s: TargetSpec) -> Result<(), TargetError> {
        self.entries += 1;
        if self.entries > self.max_entries {
            return Err(TargetError::TooManyEntries(self.max_entries));
        }
        self.total = self.total.saturating_add(s.count());
        if self.total > self.max_total {
            return Err(TargetError::TooMany {
                spec: s.to_string(),
                count: self.total,
                limit: u64::try_from(self.max_total).unwrap_or(u64::MAX),
            });
        }
        let lo = match s.base {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let hi = lo + (s.count() - 1);
        match s.base {
            IpAddr::V4(_) => self.v4.push(lo, hi),
            IpAddr::V6(_) => self.v6.push(lo, hi),
        }
        Ok(())
    }

    /// Addresses added so far, duplicates included.
    pub fn total(&self) -> u128 {
        self.total
    }

    /// Specs added so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The set.
    ///
    /// # Errors
    /// [`TargetError::TooMany`] when a family holds 2^64 addresses or more.
    pub fn finish(self) -> Result<TargetSet, TargetError> {
        Ok(TargetSet {
            v4: Family::build(self.v4.ranges, self.v4.singles)?,
            v6: Family::build(self.v6.ranges, self.v6.singles)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::parse_lines;

    fn set(s: &str) -> TargetSet {
        TargetSet::of(&parse_lines(s.as_bytes()).unwrap())
    }

    fn all(t: &TargetSet) -> Vec<IpAddr> {
        (0..t.len()).map(|i| t.nth(i).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sorted_deduplicated_and_indexed_both_ways() {
        let t = set("198.19.0.9 198.19.0.1 198.19.0.0/30 198.19.0.9\n2001:db8:1::1\n198.19.1.0/29");
        let want: Vec<IpAddr> = [
            "198.19.0.0",
            "198.19.0.1",
            "198.19.0.2",
            "198.19.0.3",
            "198.19.0.9",
            "198.19.1.0",
            "198.19.1.1",
            "198.19.1.2",
            "198.19.1.3",
            "198.19.1.4",
            "198.19.1.5",
            "198.19.1.6",
            "198.19.1.7",
            "2001:db8:1::1",
        ]
        .iter()
        .map(|s| ip(s))
        .collect();
        assert_eq!(all(&t), want);
        for (i, a) in want.iter().enumerate() {
            assert_eq!(t.index_of(*a), Some(i as u64), "{a}");
        }
        assert_eq!(t.index_of(ip("198.19.0.4")), None);
        assert_eq!(t.index_of(ip("2001:db8:1::2")), None);
        assert_eq!(t.nth(want.len() as u64), None);
        assert_eq!(t.v4.runs.len(), 2);
        assert_eq!(t.v4.singles, vec![u32::from(Ipv4Addr::new(198, 19, 0, 9))]);
    }

    #[test]
    fn singles_cost_their_width_and_long_runs_become_ranges() {
        // Every third address of 30,000: singles, 4 bytes each.
        let mut b = SetBuilder::new(u128::MAX, u64::MAX);
        for i in 0..30_000u32 {
            b.add(TargetSpec {
                base: IpAddr::V4(Ipv4Addr::from(0xC613_0000 + 3 * i)),
                prefix: 32,
            })
            .unwrap();
        }
        // And 5,000 consecutive IPv6 addresses, each listed twice: one range.
        for _ in 0..2 {
            for i in 0..5_000u128 {
                b.add(TargetSpec {
                    base: IpAddr::V6(Ipv6Addr::from(0x2001_0db8_0001_u128 << 80 | i)),
                    prefix: 128,
                })
                .unwrap();
            }
        }
        let t = b.finish().unwrap();
        assert_eq!((t.v4.len(), t.v6.len()), (30_000, 5_000));
        assert_eq!(t.v4.singles.len(), 30_000);
        assert_eq!((t.v6.runs.len(), t.v6.singles.len()), (1, 0));
        assert!(t.bytes() <= 30_000 * 4 + 64, "{}", t.bytes());
        for i in [0u64, 1, 17_000, 29_999, 30_000, 34_999] {
            let a = t.nth(i).unwrap();
            assert_eq!(t.index_of(a), Some(i));
        }
    }

    #[test]
    fn the_same_as_a_naive_sorted_list() {
        // Pseudo-random specs over a small space: singles, prefixes, overlaps, adjacency.
        let mut x = 0x1234_5678_u64;
        let mut specs = vec![];
        for _ in 0..3_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = 0xC613_0000 + ((x >> 33) as u32 & 0xfff);
            let prefix = [32u8, 32, 32, 31, 30, 28, 32][(x >> 20) as usize % 7];
            specs.push(TargetSpec::parse(&format!("{}/{prefix}", Ipv4Addr::from(a))).unwrap());
        }
        let t = TargetSet::of(&specs);
        let mut naive: Vec<u32> = specs
            .iter()
            .flat_map(|s| (0..s.count()).map(move |i| s.nth(i)))
            .map(|a| match a {
                IpAddr::V4(a) => u32::from(a),
                IpAddr::V6(_) => unreachable!(),
            })
            .collect();
        naive.sort_unstable();
        naive.dedup();
        let got: Vec<u32> = (0..t.len()).map(|i| t.v4.get(i).unwrap()).collect();
        assert_eq!(got, naive);
        for (i, a) in naive.iter().enumerate() {
            assert_eq!(t.v4.index_of(*a), Some(i as u64));
        }
    }

    #[test]
    fn limits_are_checked_as_specs_arrive() {
        let mut b = SetBuilder::new(300, 10);
        b.add(TargetSpec::parse("198.19.0.0/24").unwrap()).unwrap();
        let e = b
            .add(TargetSpec::parse("198.19.1.0/26").unwrap())
            .unwrap_err();
        assert!(matches!(e, TargetError::TooMany { count: 320, .. }), "{e}");
        let mut b = SetBuilder::new(u128::MAX, 2);
        for _ in 0..2 {
            b.add(TargetSpec::parse("198.19.0.1").unwrap()).unwrap();
        }
        let e = b.add(TargetSpec::parse("198.19.0.1").unwrap()).unwrap_err();
        assert_eq!(e, TargetError::TooManyEntries(2));
        // The whole IPv6 space does not fit an index.
        let mut b = SetBuilder::new(u128::MAX, u64::MAX);
        b.add(TargetSpec::parse("::/0").unwrap()).unwrap();
        assert!(b.finish().is_err());
    }
}
