//! The in-flight table: a ring of `C = 2^k` slots, probe `n` in slot `n mod C`.
//!
//! One sender claims slots in probe order; receivers resolve them with one compare-exchange
//! of the slot's tag; a reaper walking behind the sender times out expired slots and frees
//! them for the next lap. No locks, no allocation after construction, memory fixed by the
//! capacity whatever the number of targets.
//!
//! Each slot's `tag` packs the probe number and a state: `tag = n << 3 | state`. A slot is
//! written like a seqlock: the sender stores `(n, CLAIMING)`, a release fence, the fields, then
//! `(n, PENDING)` with release ordering. A reader that needs the fields (an ICMP error quoting
//! only identifier and sequence) loads the tag (acquire), reads the fields, issues an acquire
//! fence and then compare-exchanges the tag it first saw: if the sender started rewriting the
//! slot in between, the tag changed and the exchange fails, so torn fields are never used.
//!
//! The sender may only claim slot `n mod C` once the reaper has passed probe `n - C`
//! ([`InflightTable::claim`] returns `false` until then): a slot is never rewritten while its
//! probe can still be resolved as pending.

use core::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use asdic_wire::payload::Numbering;
use crossbeam_utils::CachePadded;

/// Slots for a table whose probes go out at `rate` per second and each wait up to `wait`:
/// twice the probes in flight (with 100 ms of slack), at least 1,024.
pub fn slots_for(rate: f64, wait: std::time::Duration) -> u64 {
    let want = (2.0 * rate * (wait.as_secs_f64() + 0.1)).ceil();
    if want.is_finite() {
        (want as u64).max(1024)
    } else {
        u64::MAX
    }
}

/// Slots for a run whose probes go out at up to `rate` per second and wait up to `wait`,
/// but whose own schedule never has more than `most` in flight (a ping's targets × the
/// probes each can have out within the timeout): sized from the smaller of the two, so a
/// high `--rate` that the schedule never reaches costs nothing. At least 1,024.
pub fn slots_for_at_most(rate: f64, wait: std::time::Duration, most: u64) -> u64 {
    slots_for(rate, wait).min(most.saturating_mul(2).max(1024))
}

/// Bytes one slot takes.
pub const SLOT_BYTES: u64 = core::mem::size_of::<Slot>() as u64;

/// Most slots that probes numbered by `numbering` tell apart: 2^16 with one fixed identifier
/// (the sequence alone names the probe), 2^21 with a spread one.
pub fn max_slots(numbering: Numbering) -> u64 {
    if numbering.bits() == 16 {
        1 << 16
    } else {
        1 << 21
    }
}

const EMPTY: u64 = 0;
const CLAIMING: u64 = 1;
const PENDING: u64 = 2;
const ANSWERED: u64 = 3;
const ERRORED: u64 = 4;
const TIMED_OUT: u64 = 5;
const SEND_FAILED: u64 = 6;
const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
/// Probe numbers must fit beside the state bits.
pub const MAX_PROBES: u64 = 1 << (64 - STATE_BITS);

#[derive(Debug, Default)]
struct Slot {
    tag: AtomicU64,
    t_send_ns: AtomicU64,
    /// The kernel's stamp of the moment the device took the probe, once it came back
    /// (engines with kernel send stamps); 0 until then.
    t_wire_ns: AtomicU64,
    addr_hi: AtomicU64,
    addr_lo: AtomicU64,
    cookie: AtomicU32,
    /// Retry attempt (low byte), template class (second byte) and, once a send failed, its
    /// errno (high 16 bits: Linux's are below 4096).
    aux: AtomicU32,
}

/// What the sender stores for a probe, and what the table hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeInfo {
    /// Probe number.
    pub n: u64,
    /// Target address.
    pub target: IpAddr,
    /// The sender's handle on the target.
    pub cookie: u32,
    /// Send time, ns since the Unix epoch: the kernel's stamp of the moment the device took
    /// the probe once it came back ([`InflightTable::stamp_sent`]), else the sender's.
    pub t_send_ns: u64,
    /// Which attempt this is (0 = first send, then retries).
    pub attempt: u8,
    /// Which of the run's probe templates (packet sizes) it was sent from.
    pub class: u8,
}

/// The outcome of resolving a probe by its full number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The probe was pending: this is its answer.
    First,
    /// The probe had already been answered (or errored).
    Duplicate,
    /// The probe had already timed out.
    Late,
    /// The slot now holds a later probe: the answer is older than one lap of the ring.
    Stale,
    /// No probe with this number was ever claimed.
    Unknown,
}

/// What the reaper reports for each probe it retires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// The probe expired unanswered; the table marked it timed out.
    TimedOut,
    /// The sender could not send it; errno.
    SendFailed(i32),
}

/// The lock-free in-flight table. Share it through an `Arc`.
#[derive(Debug)]
pub struct InflightTable {
    slots: Box<[Slot]>,
    mask: u64,
    /// Probes claimed: every n below has been published by the sender.
    head: CachePadded<AtomicU64>,
    /// Probes retired: every n below is final and reported; their slots are free.
    tail: CachePadded<AtomicU64>,
}

impl InflightTable {
    /// A table of at least `capacity` slots (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(2).next_power_of_two();
        let slots = (0..cap)
            .map(|_| Slot::default())
            .collect::<Vec<_>>()
            .into_boxed_slice();
        InflightTable {
            slots,
            mask: cap as u64 - 1,
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Probes claimed so far (the next probe number).
    pub fn claimed(&self) -> u64 {
        // Acquire: pairs with the sender's release store, so slots below are published.
        self.head.load(Ordering::Acquire)
    }

    /// Probes retired so far.
    pub fn retired(&self) -> u64 {
        // Acquire: pairs with the reaper's release store of `tail`.
        self.tail.load(Ordering::Acquire)
    }

    /// Probes claimed and not yet retired.
    pub fn in_flight(&self) -> u64 {
        self.claimed().saturating_sub(self.retired())
    }

    fn slot(&self, n: u64) -> &Slot {
        // The mask keeps the index below the slice length.
        &self.slots[(n & self.mask) as usize]
    }

    /// Whether probe `n` may be claimed now (its slot's previous lap has been retired).
    pub fn can_claim(&self, n: u64) -> bool {
        n < self.retired() + self.slots.len() as u64
    }

    /// Claims the slot of probe `n` and publishes `info` in it. Single producer: probes must
    /// be claimed in order `0, 1, 2, …`. Returns `false` (and changes nothing) while the slot
    /// still belongs to probe `n - C`, or if `n` is not the next probe.
    pub fn claim(&self, info: &ProbeInfo) -> bool {
        let n = info.n;
        if n >= MAX_PROBES || n != self.head.load(Ordering::Relaxed) || !self.can_claim(n) {
            return false;
        }
        let s = self.slot(n);
        // Relaxed store + release fence: the CLAIMING tag becomes visible no later than any
        // field store below (seqlock writer protocol), so a reader that saw fields of this
        // lap fails its compare-exchange against the older tag.
        s.tag.store(n << STATE_BITS | CLAIMING, Ordering::Relaxed);
        fence(Ordering::Release);
        let (hi, lo) = split(info.target);
        s.t_send_ns.store(info.t_send_ns, Ordering::Relaxed);
        s.t_wire_ns.store(0, Ordering::Relaxed);
        s.addr_hi.store(hi, Ordering::Relaxed);
        s.addr_lo.store(lo, Ordering::Relaxed);
        s.cookie.store(info.cookie, Ordering::Relaxed);
        s.aux.store(
            u32::from(info.attempt) | u32::from(info.class) << 8,
            Ordering::Relaxed,
        );
        // Release: publishes the fields with the PENDING tag.
        s.tag.store(n << STATE_BITS | PENDING, Ordering::Release);
        // Release: `claimed()` readers see the slot published.
        self.head.store(n + 1, Ordering::Release);
        true
    }

    /// Records the kernel's send stamp of the probe whose number's low 32 bits are `tag`,
    /// if its slot holds it (sent, not yet retired); whether it did. From then on the table
    /// times the probe from this stamp ([`ProbeInfo::t_send_ns`], the reaper's deadline).
    ///
    /// A stamp comes back microseconds after its probe left, and a slot is claimed again
    /// only once its probe has been retired (a timeout later): the check and the store
    /// below cannot straddle a new lap in practice, and a stamp of a retired probe is
    /// dropped.
    pub fn stamp_sent(&self, tag: u32, ts_ns: u64) -> bool {
        if self.slots.len() as u64 > 1 << 32 {
            return false;
        }
        let s = self.slot(u64::from(tag));
        // Acquire: pairs with the sender's release of PENDING.
        let t = s.tag.load(Ordering::Acquire);
        if (t >> STATE_BITS) as u32 != tag || matches!(t & STATE_MASK, EMPTY | CLAIMING) {
            return false;
        }
        // Release: a reader that sees the stamp sees the probe it belongs to.
        s.t_wire_ns.store(ts_ns, Ordering::Release);
        true
    }

    /// The kernel's send stamp of probe `n`, if it came back and the slot still holds `n`.
    pub fn wire_sent(&self, n: u64) -> Option<u64> {
        let s = self.slot(n);
        // Acquire: pairs with `stamp_sent`'s release.
        let t = s.t_wire_ns.load(Ordering::Acquire);
        (t != 0 && s.tag.load(Ordering::Acquire) >> STATE_BITS == n).then_some(t)
    }

    /// Marks pending probe `n` as failed to send (the reaper reports it).
    pub fn send_failed(&self, n: u64, errno: i32) -> bool {
        let s = self.slot(n);
        // The sender is the only writer of `aux`: attempt and class are kept beside the errno.
        let kept = s.aux.load(Ordering::Relaxed) & 0xffff;
        let errno = errno.clamp(0, 0xffff) as u32;
        s.aux.store(kept | errno << 16, Ordering::Relaxed);
        // Release on success: the errno store above is visible to the reaper's acquire load.
        s.tag
            .compare_exchange(
                n << STATE_BITS | PENDING,
                n << STATE_BITS | SEND_FAILED,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// How a reply to probe `n` that came after its timeout stands, without resolving it:
    /// [`Resolution::Late`] while the probe waits (for the reaper, which times it out) or
    /// has timed out; [`Resolution::Duplicate`] once answered; otherwise as
    /// [`InflightTable::resolve`] says.
    pub fn late(&self, n: u64) -> Resolution {
        if n >= MAX_PROBES {
            return Resolution::Unknown;
        }
        // Acquire: see the state the last writer left.
        let tag = self.slot(n).tag.load(Ordering::Acquire);
        if let Some(r) = not_this_lap(tag, n) {
            return r;
        }
        match tag & STATE_MASK {
            ANSWERED | ERRORED => Resolution::Duplicate,
            PENDING | TIMED_OUT | SEND_FAILED => Resolution::Late,
            // Claiming with our own n: nothing was sent yet, so nothing can answer it.
            _ => Resolution::Unknown,
        }
    }

    /// Resolves probe `n` (known in full from a validated payload) as answered or errored.
    pub fn resolve(&self, n: u64, errored: bool) -> Resolution {
        if n >= MAX_PROBES {
            return Resolution::Unknown;
        }
        let s = self.slot(n);
        let new = n << STATE_BITS | if errored { ERRORED } else { ANSWERED };
        // Acquire: see the state the last writer (sender, reaper, other receiver) left.
        let mut tag = s.tag.load(Ordering::Acquire);
        loop {
            if let Some(r) = not_this_lap(tag, n) {
                return r;
            }
            match tag & STATE_MASK {
                PENDING => {
                    // AcqRel: exactly one resolver wins the PENDING -> final transition.
                    match s
                        .tag
                        .compare_exchange_weak(tag, new, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return Resolution::First,
                        Err(t) => tag = t,
                    }
                }
                ANSWERED | ERRORED => return Resolution::Duplicate,
                TIMED_OUT | SEND_FAILED => return Resolution::Late,
                // CLAIMING with our own n cannot be answered yet: nothing was sent.
                _ => return Resolution::Unknown,
            }
        }
    }

    /// Resolves, as errored, the pending probe whose number is `n_low` modulo `2^bits` and
    /// whose target is `target` — for ICMP errors that quote only identifier and sequence.
    /// Returns the probe, or `None` if no pending probe matches.
    pub fn resolve_partial(&self, n_low: u64, bits: u32, target: IpAddr) -> Option<ProbeInfo> {
        let (s, tag, info) = self.pending_named(n_low, bits, target)?;
        let new = info.n << STATE_BITS | ERRORED;
        // AcqRel: exactly one resolver wins; failure means the slot moved on or was resolved.
        s.tag
            .compare_exchange(tag, new, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| info)
    }

    /// The pending probe to `target` whose number is `n_low` modulo `2^bits`, without
    /// resolving it.
    pub fn pending_probe(&self, n_low: u64, bits: u32, target: IpAddr) -> Option<ProbeInfo> {
        self.pending_named(n_low, bits, target)
            .map(|(_, _, info)| info)
    }

    /// The slot, tag and fields of the pending probe `n_low` (mod `2^bits`) to `target`.
    fn pending_named(
        &self,
        n_low: u64,
        bits: u32,
        target: IpAddr,
    ) -> Option<(&Slot, u64, ProbeInfo)> {
        if self.slots.len() as u64 > 1u64.checked_shl(bits).unwrap_or(u64::MAX) {
            // The quoted bits cannot name a slot of a table this large.
            return None;
        }
        let s = self.slot(n_low);
        // Acquire: pairs with the sender's release store of PENDING, making the fields of
        // this lap visible below.
        let tag = s.tag.load(Ordering::Acquire);
        let (n, state) = (tag >> STATE_BITS, tag & STATE_MASK);
        let low_mask = 1u64.checked_shl(bits).map_or(u64::MAX, |m| m - 1);
        if state != PENDING || n & low_mask != n_low & low_mask {
            return None;
        }
        let info = self.read_fields(s, n);
        // Acquire fence: the field loads above happen before the caller's compare-exchange
        // (seqlock reader protocol); if the slot was rewritten meanwhile, its tag changed.
        fence(Ordering::Acquire);
        (info.target == target).then_some((s, tag, info))
    }

    /// Reads the published fields of probe `n`, if its slot still holds it.
    pub fn info(&self, n: u64) -> Option<ProbeInfo> {
        let s = self.slot(n);
        // Acquire + fence + re-check: the seqlock reader protocol, read-only.
        let tag = s.tag.load(Ordering::Acquire);
        if tag >> STATE_BITS != n || matches!(tag & STATE_MASK, EMPTY | CLAIMING) {
            return None;
        }
        let info = self.read_fields(s, n);
        fence(Ordering::Acquire);
        // Relaxed: ordered after the field loads by the fence above.
        (s.tag.load(Ordering::Relaxed) >> STATE_BITS == n).then_some(info)
    }

    /// Walks from the oldest unretired probe towards the newest, retiring every probe that is
    /// final: answered/errored ones silently, expired pending ones as timed out and failed
    /// sends, each reported through `on_retired`. Stops at the first pending probe sent after
    /// `deadline_ns` (pass `u64::MAX` to expire everything). Single reaper. Returns how many
    /// probes it retired.
    pub fn reap(&self, deadline_ns: u64, mut on_retired: impl FnMut(ProbeInfo, Retired)) -> u64 {
        let start = self.tail.load(Ordering::Relaxed);
        let head = self.claimed();
        let mut n = start;
        while n < head {
            let s = self.slot(n);
            // Acquire: pairs with the sender's and resolvers' release of this tag.
            let tag = s.tag.load(Ordering::Acquire);
            if tag >> STATE_BITS != n {
                break;
            }
            match tag & STATE_MASK {
                ANSWERED | ERRORED => {}
                PENDING => {
                    // Probes are claimed in send order, so the first unexpired one ends the walk.
                    if sent_at(s) > deadline_ns {
                        break;
                    }
                    let info = self.read_fields(s, n);
                    // AcqRel: races with resolvers; whoever wins decides the probe's fate.
                    let timed_out = n << STATE_BITS | TIMED_OUT;
                    if s.tag
                        .compare_exchange(tag, timed_out, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        on_retired(info, Retired::TimedOut);
                    } else {
                        // A resolver won meanwhile (or the sender flagged a failure): look again.
                        continue;
                    }
                }
                SEND_FAILED => {
                    let info = self.read_fields(s, n);
                    on_retired(
                        info,
                        Retired::SendFailed((s.aux.load(Ordering::Relaxed) >> 16) as i32),
                    );
                    // The slot stays SEND_FAILED (a reply to it would be Late).
                }
                _ => break,
            }
            n += 1;
        }
        if n != start {
            // Release: frees the slots for the sender's `can_claim`.
            self.tail.store(n, Ordering::Release);
        }
        n - start
    }

    /// Reads a slot's fields (relaxed loads; callers order them with the tag protocol).
    fn read_fields(&self, s: &Slot, n: u64) -> ProbeInfo {
        let aux = s.aux.load(Ordering::Relaxed);
        ProbeInfo {
            n,
            target: join(
                s.addr_hi.load(Ordering::Relaxed),
                s.addr_lo.load(Ordering::Relaxed),
            ),
            cookie: s.cookie.load(Ordering::Relaxed),
            t_send_ns: sent_at(s),
            attempt: aux as u8,
            class: (aux >> 8) as u8,
        }
    }
}

/// A slot's send time: the kernel's stamp once it came back, else the sender's.
fn sent_at(s: &Slot) -> u64 {
    match s.t_wire_ns.load(Ordering::Relaxed) {
        0 => s.t_send_ns.load(Ordering::Relaxed),
        t => t,
    }
}

/// How a slot whose tag is `tag` stands for probe `n` when it does not hold it: a later lap
/// (the probe is long retired: stale) or nothing known of it; `None` when it holds probe `n`.
fn not_this_lap(tag: u64, n: u64) -> Option<Resolution> {
    let (tn, state) = (tag >> STATE_BITS, tag & STATE_MASK);
    if tn == n && state != EMPTY {
        return None;
    }
    Some(if tn > n && state != EMPTY {
        Resolution::Stale
    } else {
        Resolution::Unknown
    })
}

fn split(a: IpAddr) -> (u64, u64) {
    let v = match a {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    };
    ((v >> 64) as u64, v as u64)
}

fn join(hi: u64, lo: u64) -> IpAddr {
    let a = Ipv6Addr::from(u128::from(hi) << 64 | u128::from(lo));
    match a.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(a),
    }
}

#[cfg(test)]
mod tests;
