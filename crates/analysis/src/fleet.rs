//! The target set of `asdic sweep`: per-target rolling windows, lifetime counters, alarm
//! state, and the rows written for them.
//!
//! Each target belongs to a group (`group=NAME` on its line, else [`UNGROUPED`]); a group
//! keeps lifetime counters and an RTT histogram of the events of its targets, for metrics that
//! stay few however many targets there are.
//!
//! Targets are identified to the sender by a *cookie* that is never reused within a run: a
//! reply to a probe of a removed target (or of a target whose line changed) can never be
//! counted for another. Removed targets leave an empty slot of one pointer.

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::Arc;

use crate::scan::ScanRow;
use crate::sweep::{SweepEvent, SweepRow};
use crate::window::{Ring, WindowStats};
use asdic_core::{Event, Outcome};

/// Alarm limits: a target is in alarm while its window loss exceeds `loss_pct` or its window
/// average RTT exceeds `rtt_us`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Limits {
    /// Loss limit, percent.
    pub loss_pct: Option<f64>,
    /// Average RTT limit, microseconds.
    pub rtt_us: Option<f64>,
}

impl Limits {
    /// These limits, each unset one taken from `defaults`.
    pub fn or(self, defaults: Limits) -> Limits {
        Limits {
            loss_pct: self.loss_pct.or(defaults.loss_pct),
            rtt_us: self.rtt_us.or(defaults.rtt_us),
        }
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.loss_pct.is_some() || self.rtt_us.is_some()
    }
}

/// When an alarm may change state: a raise needs `min_probes` ended probes in the window (a
/// target does not alarm on its first lost probe), and an alarm clears only once every limit
/// set is undercut by `clear` × its level (hysteresis: a loss hovering at the level does not
/// flap ALARM, OK, ALARM).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hysteresis {
    /// Ended probes in the window before the state may change either way.
    pub min_probes: u32,
    /// Share of a limit (0 < clear ≤ 1) a window must stay below to clear.
    pub clear: f64,
}

impl Default for Hysteresis {
    /// 5 probes, 80 % of the level.
    fn default() -> Self {
        Hysteresis {
            min_probes: 5,
            clear: 0.8,
        }
    }
}

/// One line of the targets file, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetTarget {
    /// The address probed.
    pub addr: IpAddr,
    /// The name it was given, if any.
    pub name: Option<Arc<str>>,
    /// ICMP payload bytes of its probes.
    pub size: usize,
    /// Its packet size as the targets file wrote it (NetXMS `psize`, IP header included), or
    /// as the payload implies when the line gave none: the `size` label, the `psize` column.
    pub psize: u32,
    /// Index of its packet size among the run's templates.
    pub class: u8,
    /// Its own alarm limits (unset ones fall back to the run's).
    pub limits: Limits,
    /// Its group (`group=NAME`), `None` for [`UNGROUPED`].
    pub group: Option<Arc<str>>,
}

/// The group of targets listed without `group=NAME`.
pub const UNGROUPED: &str = "ungrouped";

/// Lifetime counters of a target (since it was added).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Probes that ended (replies + errors + timeouts + failed sends).
    pub probes: u64,
    /// Echo replies.
    pub replies: u64,
    /// ICMP errors.
    pub errors: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Probes the local stack refused.
    pub send_failed: u64,
    /// Extra replies to answered probes.
    pub duplicates: u64,
    /// Replies after the timeout.
    pub late: u64,
}

impl Counters {
    /// Counts one event; returns whether it ended a probe (false for a duplicate or late
    /// reply, which only have counters of their own).
    pub fn count(&mut self, outcome: &Outcome) -> bool {
        match outcome {
            Outcome::Reply { .. } => self.replies += 1,
            Outcome::Error { .. } => self.errors += 1,
            Outcome::Timeout => self.timeouts += 1,
            Outcome::SendFailed { .. } => self.send_failed += 1,
            Outcome::Duplicate { .. } => {
                self.duplicates += 1;
                return false;
            }
            Outcome::Late { .. } => {
                self.late += 1;
                return false;
            }
        }
        self.probes += 1;
        true
    }
}

/// Upper bounds of the RTT histogram buckets, seconds (a last `+Inf` bucket is implied):
/// the powers of two from 2^-15 s (30.5 µs: hosts in one rack) to 2 s (beyond the default
/// 1 s timeout). Factor-2 bounds are the bucket boundaries of a Prometheus native histogram
/// of schema 0 (and of every finer schema), so these classic buckets convert to native ones
/// without re-bucketing; 18 buckets keep a target at 20 series.
pub const HISTOGRAM_BOUNDS: [f64; 17] = [
    0.000_030_517_578_125,
    0.000_061_035_156_25,
    0.000_122_070_312_5,
    0.000_244_140_625,
    0.000_488_281_25,
    0.000_976_562_5,
    0.001_953_125,
    0.003_906_25,
    0.007_812_5,
    0.015_625,
    0.031_25,
    0.062_5,
    0.125,
    0.25,
    0.5,
    1.0,
    2.0,
];

/// Cumulative-since-start RTT histogram of one target or group (replies only).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Count per bucket (not cumulative), the last one for RTTs above every bound.
    pub counts: [u64; HISTOGRAM_BOUNDS.len() + 1],
    /// Sum of RTTs, seconds.
    pub sum_s: f64,
}

impl Histogram {
    /// Counts one reply's RTT, seconds.
    pub fn observe(&mut self, rtt_s: f64) {
        let i = HISTOGRAM_BOUNDS
            .iter()
            .position(|&b| rtt_s <= b)
            .unwrap_or(HISTOGRAM_BOUNDS.len());
        self.counts[i] += 1;
        self.sum_s += rtt_s;
    }
}

/// A target of the sweep and everything recorded about it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its line.
    pub target: FleetTarget,
    /// Lifetime counters.
    pub counters: Counters,
    /// RTT histogram, when the run keeps them.
    pub histogram: Option<Box<Histogram>>,
    /// Whether it is in alarm.
    pub alarm: bool,
    /// Index of its group in [`Fleet::groups`].
    pub group: u32,
    ring: Ring,
}

/// Lifetime totals of a group: the events of its targets recorded while they were in it, so
/// its counters only grow, whatever reloads add, remove or move.
#[derive(Debug, Clone, Default)]
pub struct GroupTotals {
    /// The group's name (`group=NAME`, or [`UNGROUPED`]).
    pub name: Arc<str>,
    /// Counters over its targets.
    pub counters: Counters,
    /// RTT histogram of its targets' replies.
    pub histogram: Histogram,
}

/// What [`Fleet::apply`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// New targets.
    pub added: usize,
    /// Targets no longer listed.
    pub removed: usize,
    /// Targets kept (their name and limits updated).
    pub kept: usize,
}

/// An alarm state change, to print and record once.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The target's cookie.
    pub cookie: u32,
    /// The target (its line: address, name, size).
    pub target: FleetTarget,
    /// True: ok → alarm; false: alarm → ok.
    pub alarm: bool,
    /// Why: which limit is exceeded, or that none is.
    pub reason: String,
    /// Window statistics at the change.
    pub stats: WindowStats,
}

/// The sweep's targets, keyed by cookie.
#[derive(Debug)]
pub struct Fleet {
    slots: Vec<Option<Box<Member>>>,
    by_key: HashMap<(IpAddr, usize), u32>,
    ring_capacity: usize,
    window_ms: u32,
    defaults: Limits,
    hysteresis: Hysteresis,
    histograms: bool,
    scratch: Vec<u64>,
    ignored: u64,
    groups: Vec<GroupTotals>,
    group_ids: HashMap<Arc<str>, u32>,
}

/// A wrapping millisecond clock from Unix nanoseconds (the windows' time base).
pub fn clock_ms(unix_ns: u64) -> u32 {
    (unix_ns / 1_000_000) as u32
}

impl Fleet {
    /// An empty fleet whose windows span `window_ms` at one probe every `every_ms`, with the
    /// run's alarm limits, keeping RTT histograms if asked.
    pub fn new(window_ms: u32, every_ms: u64, defaults: Limits, histograms: bool) -> Self {
        Fleet {
            slots: Vec::new(),
            by_key: HashMap::new(),
            ring_capacity: Ring::capacity_for(u64::from(window_ms), every_ms),
            window_ms,
            defaults,
            hysteresis: Hysteresis::default(),
            histograms,
            scratch: Vec::new(),
            ignored: 0,
            groups: Vec::new(),
            group_ids: HashMap::new(),
        }
    }

    /// Every group seen in this run (also those no listed target is in any more), in order
    /// of first appearance; [`Member::group`] indexes it.
    pub fn groups(&self) -> &[GroupTotals] {
        &self.groups
    }

    /// The index of group `name` (`None`: [`UNGROUPED`]), added if new.
    fn group_id(&mut self, name: Option<&str>) -> u32 {
        let name = name.unwrap_or(UNGROUPED);
        if let Some(&g) = self.group_ids.get(name) {
            return g;
        }
        let g = self.groups.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.groups.push(GroupTotals {
            name: name.clone(),
            ..GroupTotals::default()
        });
        self.group_ids.insert(name, g);
        g
    }

    /// Targets listed now.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no target is listed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Events about targets no longer listed (or never), ignored.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// The window, milliseconds.
    pub fn window_ms(&self) -> u32 {
        self.window_ms
    }

    /// Makes `list` the target set: targets already present (same address and size) keep
    /// their history (and take the line's name, limits and group: events from then on count
    /// for the new group), new ones start empty, absent ones are dropped. Returns the cookies in
    /// `list` order (the order the sender probes them), and what changed.
    pub fn apply(&mut self, list: &[FleetTarget]) -> (Vec<u32>, Applied) {
        let mut applied = Applied::default();
        let mut cookies = Vec::with_capacity(list.len());
        let mut keep: HashMap<(IpAddr, usize), u32> = HashMap::with_capacity(list.len());
        for t in list {
            let key = (t.addr, t.size);
            if keep.contains_key(&key) {
                // A repeated line: the first one stands (the parser reports repeats).
                continue;
            }
            let group = self.group_id(t.group.as_deref());
            let cookie = match self.by_key.get(&key) {
                Some(&c) => {
                    if let Some(m) = self.slots.get_mut(c as usize).and_then(Option::as_mut) {
                        m.target = t.clone();
                        m.group = group;
                    }
                    applied.kept += 1;
                    c
                }
                None => {
                    let c = self.slots.len() as u32;
                    self.slots.push(Some(Box::new(Member {
                        target: t.clone(),
                        counters: Counters::default(),
                        histogram: self.histograms.then(Box::default),
                        alarm: false,
                        group,
                        ring: Ring::new(self.ring_capacity),
                    })));
                    applied.added += 1;
                    c
                }
            };
            keep.insert(key, cookie);
            cookies.push(cookie);
        }
        for (key, c) in &self.by_key {
            if !keep.contains_key(key) {
                self.slots[*c as usize] = None;
                applied.removed += 1;
            }
        }
        self.by_key = keep;
        (cookies, applied)
    }

    /// The member with this cookie, if listed.
    pub fn get(&self, cookie: u32) -> Option<&Member> {
        self.slots.get(cookie as usize)?.as_deref()
    }

    /// Every listed member with its cookie, in cookie order.
    pub fn members(&self) -> impl Iterator<Item = (u32, &Member)> + '_ {
        self.members_from(0, usize::MAX)
    }

    /// Listed members with cookies from `first`, at most `slots` cookies' worth (listed or
    /// not), in cookie order: for walking the fleet a part at a time.
    pub fn members_from(
        &self,
        first: u32,
        slots: usize,
    ) -> impl Iterator<Item = (u32, &Member)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .skip(first as usize)
            .take(slots)
            .filter_map(|(i, m)| Some((i as u32, m.as_deref()?)))
    }

    /// One past the highest cookie ever given out.
    pub fn cookie_end(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Window statistics of the member with this cookie at `now_ns`.
    pub fn stats(&mut self, cookie: u32, now_ns: u64) -> Option<WindowStats> {
        let m = self.slots.get(cookie as usize)?.as_deref()?;
        Some(
            m.ring
                .stats(clock_ms(now_ns), self.window_ms, &mut self.scratch),
        )
    }

    /// Window statistics of one member (for callers iterating [`members`](Self::members)).
    pub fn member_stats(&self, m: &Member, now_ns: u64, scratch: &mut Vec<u64>) -> WindowStats {
        m.ring.stats(clock_ms(now_ns), self.window_ms, scratch)
    }

    /// Probes, replies, loss and mean RTT of one member's window, without the other
    /// statistics (cheaper: no percentiles); see [`Ring::brief`].
    pub fn member_brief(&self, m: &Member, now_ns: u64) -> WindowStats {
        m.ring.brief(clock_ms(now_ns), self.window_ms)
    }

    /// When alarms may change state (default: [`Hysteresis::default`]).
    pub fn set_hysteresis(&mut self, h: Hysteresis) {
        self.hysteresis = h;
    }

    /// Records one event at `now_ns`; returns the alarm state change it caused, if any.
    /// Events whose cookie is not listed, or names another address, are ignored.
    pub fn record(&mut self, ev: &Event, now_ns: u64) -> Option<Transition> {
        let Some(m) = self
            .slots
            .get_mut(ev.cookie as usize)
            .and_then(Option::as_mut)
        else {
            self.ignored += 1;
            return None;
        };
        if m.target.addr != ev.target {
            self.ignored += 1;
            return None;
        }
        let mut group = self.groups.get_mut(m.group as usize);
        let ended = m.counters.count(&ev.outcome);
        if let Some(g) = group.as_mut() {
            g.counters.count(&ev.outcome);
        }
        if !ended {
            return None;
        }
        // A sweep's probes are tracked: every event carries its send time.
        let sent_ms = clock_ms(ev.sent_ns.unwrap_or_default());
        match ev.outcome {
            Outcome::Reply { rtt_ns, .. } => {
                m.ring.push(sent_ms, Some(rtt_ns));
                let rtt_s = rtt_ns as f64 / 1e9;
                if let Some(h) = m.histogram.as_mut() {
                    h.observe(rtt_s);
                }
                if let Some(g) = group {
                    g.histogram.observe(rtt_s);
                }
            }
            _ => m.ring.push(sent_ms, None),
        }
        let limits = m.target.limits.or(self.defaults);
        if !limits.any() {
            return None;
        }
        // Judged on every event: loss and mean only; the full statistics on a change.
        let now_ms = clock_ms(now_ns);
        let (alarm, why) = judge(
            &m.ring.brief(now_ms, self.window_ms),
            &limits,
            m.alarm,
            self.hysteresis,
        );
        if alarm == m.alarm {
            return None;
        }
        // Worded only on a change, not on every event.
        let reason = why.text();
        m.alarm = alarm;
        Some(Transition {
            cookie: ev.cookie,
            target: m.target.clone(),
            alarm,
            reason,
            stats: m.ring.stats(now_ms, self.window_ms, &mut self.scratch),
        })
    }

    /// Members with a reply among the probes sent within the window before `now_ns`.
    pub fn answering(&self, now_ns: u64) -> usize {
        let now_ms = clock_ms(now_ns);
        self.members()
            .filter(|(_, m)| m.ring.brief(now_ms, self.window_ms).replies > 0)
            .count()
    }

    /// Members in alarm now.
    pub fn in_alarm(&self) -> usize {
        self.members().filter(|(_, m)| m.alarm).count()
    }

    /// The row recording `ev` (for a listed target), or `None` for ignored events.
    pub fn row(&self, ev: &Event) -> Option<SweepRow> {
        let m = self.get(ev.cookie)?;
        if m.target.addr != ev.target {
            return None;
        }
        let sent = ev.sent_ns.unwrap_or_default();
        let mut row = SweepRow::new(sent, &m.target, SweepEvent::of(&ev.outcome));
        // The probe's details as scan records them (an ICMP error's sender, a replier other
        // than the target).
        let d = ScanRow::from_event(ev, ev.attempt);
        row.rtt_ns = d.rtt_ns;
        row.reply_ttl = d.reply_ttl;
        row.responder = d.responder;
        row.icmp = d.icmp;
        row.errno = d.errno;
        row.probe = ev.probe;
        Some(row)
    }

    /// One `window` row per listed target with its statistics at `now_ns` (written when an
    /// output file closes, so each file ends with the targets' state).
    pub fn window_rows(&mut self, now_ns: u64) -> Vec<SweepRow> {
        let mut rows = Vec::with_capacity(self.len());
        for m in self.slots.iter().flatten() {
            let stats = m
                .ring
                .stats(clock_ms(now_ns), self.window_ms, &mut self.scratch);
            let mut row = SweepRow::new(now_ns, &m.target, SweepEvent::Window);
            row.stats = Some(stats);
            row.alarm = Some(m.alarm);
            rows.push(row);
        }
        rows
    }
}

impl Transition {
    /// The `alarm` or `ok` row recording this change at `now_ns`.
    pub fn row(&self, now_ns: u64) -> SweepRow {
        let event = if self.alarm {
            SweepEvent::Alarm
        } else {
            SweepEvent::Ok
        };
        let mut row = SweepRow::new(now_ns, &self.target, event);
        row.alarm = Some(self.alarm);
        row.reason = Some(self.reason.clone());
        row.stats = Some(self.stats);
        row
    }
}

/// Why a window calls for the state [`judge`] gives: its words are made only when the state
/// changes (a sweep judges every event).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Why {
    /// Too few ended probes to change the state either way.
    TooFew,
    /// Loss (percent) above its limit.
    Loss { loss: f64, max: f64 },
    /// Average RTT (µs) above its limit.
    Rtt { avg: f64, max: f64 },
    /// Within the limits but not below `clear` of them: the alarm stays.
    NotClear {
        loss: f64,
        avg: Option<f64>,
        clear: f64,
    },
    /// Within the limits (below the clearing levels when in alarm).
    Within { loss: f64, avg: Option<f64> },
}

impl Why {
    /// The reason as an ALARM or OK line gives it.
    fn text(self) -> String {
        let ms =
            |avg: Option<f64>| avg.map_or("-".to_string(), |a| format!("{:.3} ms", a / 1000.0));
        match self {
            Why::TooFew => "too few probes in the window".into(),
            Why::Loss { loss, max } => format!("loss {loss:.1}% > {max}%"),
            Why::Rtt { avg, max } => {
                format!("avg rtt {:.3} ms > {} ms", avg / 1000.0, max / 1000.0)
            }
            Why::NotClear { loss, avg, clear } => format!(
                "loss {loss:.1}%, avg rtt {}: not yet below {:.0} % of the limits",
                ms(avg),
                100.0 * clear
            ),
            Why::Within { loss, avg } => format!("loss {loss:.1}%, avg rtt {}", ms(avg)),
        }
    }
}

/// The alarm state a window calls for, given the state `now` and the hysteresis, and why.
/// Fewer than `min_probes` ended probes in the window: the state stays as it is. Raised when
/// a limit is exceeded; cleared only when every limit set is undercut by `clear` × its level.
fn judge(stats: &WindowStats, limits: &Limits, now: bool, h: Hysteresis) -> (bool, Why) {
    let loss = stats.loss_pct.unwrap_or(0.0);
    let avg = stats.avg_us;
    if stats.probes < h.min_probes {
        return (now, Why::TooFew);
    }
    if let Some(max) = limits.loss_pct
        && loss > max
    {
        return (true, Why::Loss { loss, max });
    }
    if let (Some(max), Some(a)) = (limits.rtt_us, avg)
        && a > max
    {
        return (true, Why::Rtt { avg: a, max });
    }
    if now {
        // Within the limits but not yet below the clearing levels: still in alarm.
        let loss_high = limits.loss_pct.is_some_and(|max| loss >= h.clear * max);
        let rtt_high = limits
            .rtt_us
            .zip(avg)
            .is_some_and(|(max, a)| a >= h.clear * max);
        if loss_high || rtt_high {
            return (
                true,
                Why::NotClear {
                    loss,
                    avg,
                    clear: h.clear,
                },
            );
        }
    }
    (false, Why::Within { loss, avg })
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_wire::Family;

    fn target(addr: &str, size: usize) -> FleetTarget {
        FleetTarget {
            addr: addr.parse().unwrap(),
            name: Some(Arc::from(format!("n-{addr}"))),
            size,
            psize: size as u32 + 28,
            class: 0,
            limits: Limits::default(),
            group: None,
        }
    }

    fn ev(cookie: u32, addr: &str, t_ms: u64, outcome: Outcome) -> Event {
        Event {
            probe: Some(t_ms),
            cookie,
            target: addr.parse().unwrap(),
            sent_ns: Some(t_ms * 1_000_000),
            attempt: 0,
            outcome,
        }
    }

    fn reply(us: u64) -> Outcome {
        Outcome::Reply {
            rtt_ns: us * 1000,
            ttl: Some(64),
            from: "198.19.0.1".parse().unwrap(),
        }
    }

    #[test]
    fn apply_keeps_history_and_never_reuses_cookies() {
        let mut f = Fleet::new(60_000, 1000, Limits::default(), false);
        let (c, a) = f.apply(&[target("198.19.0.1", 32), target("198.19.0.2", 32)]);
        assert_eq!(c, [0, 1]);
        assert_eq!((a.added, a.removed, a.kept), (2, 0, 0));
        assert!(
            f.record(&ev(0, "198.19.0.1", 1000, reply(100)), 1_000_000_000)
                .is_none()
        );
        // Drop .2, keep .1, add .3 and .1 at another size (a separate target, as NetXMS).
        let (c, a) = f.apply(&[
            target("198.19.0.3", 32),
            target("198.19.0.1", 32),
            target("198.19.0.1", 1000),
        ]);
        assert_eq!(c, [2, 0, 3]);
        assert_eq!((a.added, a.removed, a.kept), (2, 1, 1));
        assert_eq!(f.get(0).unwrap().counters.replies, 1, "history kept");
        assert_eq!(f.answering(1_500_000_000), 1);
        assert!(f.get(1).is_none());
        // A late event for the removed target is ignored, and so is a mismatched address.
        f.record(&ev(1, "198.19.0.2", 1000, Outcome::Timeout), 2_000_000_000);
        f.record(&ev(2, "198.19.0.9", 1000, Outcome::Timeout), 2_000_000_000);
        assert_eq!(f.ignored(), 2);
        assert_eq!(f.len(), 3);
        assert_eq!(f.members().map(|(c, _)| c).collect::<Vec<_>>(), [0, 2, 3]);
    }

    #[test]
    fn alarms_change_state_once_each_way() {
        let limits = Limits {
            loss_pct: Some(20.0),
            rtt_us: None,
        };
        let mut f = Fleet::new(10_000, 1000, limits, false);
        f.apply(&[target("198.19.0.1", 32)]);
        let a = "198.19.0.1";
        let mut changes = vec![];
        let mut t = 0u64;
        let mut step = |f: &mut Fleet, o: Outcome, changes: &mut Vec<Transition>| {
            t += 1000;
            if let Some(x) = f.record(&ev(0, a, t, o), (t + 500) * 1_000_000) {
                changes.push(x);
            }
        };
        for _ in 0..5 {
            step(&mut f, reply(200), &mut changes);
        }
        assert!(changes.is_empty());
        // 2 losses of 7 = 28.6% > 20%: alarm, once.
        for _ in 0..4 {
            step(&mut f, Outcome::Timeout, &mut changes);
        }
        assert_eq!(changes.len(), 1);
        assert!(changes[0].alarm);
        assert!(
            changes[0].reason.starts_with("loss 28.6% > 20%"),
            "{}",
            changes[0].reason
        );
        assert_eq!(f.in_alarm(), 1);
        // Replies until the losses leave the 10 s window: back to ok, once.
        for _ in 0..12 {
            step(&mut f, reply(200), &mut changes);
        }
        assert_eq!(changes.len(), 2);
        assert!(!changes[1].alarm);
        // Not when back at the limit (2 losses of the 10 probes in the window, 20 %), nor at
        // 16 % (80 % of it): only below, at 1 loss of 10.
        assert_eq!(changes[1].stats.loss_pct, Some(10.0));
        assert!(
            changes[1]
                .reason
                .starts_with("loss 10.0%, avg rtt 0.200 ms"),
            "{}",
            changes[1].reason
        );
    }

    #[test]
    fn an_alarm_needs_enough_probes_and_clears_below_its_level() {
        let limits = Limits {
            loss_pct: Some(20.0),
            rtt_us: None,
        };
        let mut f = Fleet::new(100_000, 1000, limits, false);
        f.apply(&[target("198.19.0.1", 32)]);
        let a = "198.19.0.1";
        let mut t = 0u64;
        let mut outcomes = vec![];
        let mut step = |f: &mut Fleet, o: Outcome| {
            t += 1000;
            f.record(&ev(0, a, t, o), (t + 500) * 1_000_000)
                .map(|x| (t / 1000, x.alarm))
        };
        // The first probe lost, then three replies: 100 %, 50 %, 33 %, 25 % over fewer than
        // 5 probes: no alarm (it used to alarm on the first).
        outcomes.push(step(&mut f, Outcome::Timeout));
        for _ in 0..3 {
            outcomes.push(step(&mut f, reply(200)));
        }
        assert!(outcomes.iter().all(Option::is_none), "{outcomes:?}");
        // The fifth: 1 of 5 = 20 %, at the limit: still no alarm. A loss: 2 of 6 = 33 %.
        assert_eq!(step(&mut f, reply(200)), None);
        assert_eq!(step(&mut f, Outcome::Timeout), Some((6, true)));
        // Hovering around the limit (2 of 7 = 28.6 %, 2 of 8 = 25 %, ... 2 of 10 = 20 %,
        // 2 of 12 = 16.7 %): no flap back to ok until below 16 %.
        let mut changes = vec![];
        for _ in 0..6 {
            changes.extend(step(&mut f, reply(200)));
        }
        assert_eq!(changes, [], "2 losses of 12: 16.7 % >= 16 %");
        assert_eq!(
            step(&mut f, reply(200)),
            Some((13, false)),
            "2 of 13: 15.4 %"
        );
        // And an RTT limit clears below 80 % of it too.
        let mut g = Fleet::new(
            100_000,
            1000,
            Limits {
                loss_pct: None,
                rtt_us: Some(1000.0),
            },
            false,
        );
        g.set_hysteresis(Hysteresis {
            min_probes: 1,
            clear: 0.8,
        });
        g.apply(&[target("198.19.0.2", 32)]);
        let b = "198.19.0.2";
        assert!(
            g.record(&ev(0, b, 1000, reply(1500)), 1_100_000_000)
                .unwrap()
                .alarm
        );
        // Average 1,000 µs (at the limit, not above): still in alarm; 900: still; then low.
        assert!(
            g.record(&ev(0, b, 2000, reply(500)), 2_100_000_000)
                .is_none()
        );
        assert!(
            g.record(&ev(0, b, 3000, reply(700)), 3_100_000_000)
                .is_none()
        );
        let x = g
            .record(&ev(0, b, 4000, reply(100)), 4_100_000_000)
            .unwrap();
        assert!(!x.alarm, "avg 700 µs < 800 µs: {}", x.reason);
    }

    #[test]
    fn per_target_limits_override_the_runs() {
        let mut f = Fleet::new(10_000, 1000, Limits::default(), false);
        f.set_hysteresis(Hysteresis {
            min_probes: 1,
            clear: 0.8,
        });
        let mut t = target("198.19.0.1", 32);
        t.limits.rtt_us = Some(1000.0);
        f.apply(&[t, target("198.19.0.2", 32)]);
        let x = f.record(&ev(0, "198.19.0.1", 1000, reply(1500)), 1_100_000_000);
        assert!(x.unwrap().reason.contains("avg rtt 1.500 ms > 1 ms"));
        assert!(
            f.record(&ev(1, "198.19.0.2", 1000, reply(1500)), 1_100_000_000)
                .is_none()
        );
    }

    #[test]
    fn groups_count_the_events_of_their_targets() {
        let mut f = Fleet::new(10_000, 1000, Limits::default(), false);
        let grouped = |addr: &str, g: Option<&str>| FleetTarget {
            group: g.map(Arc::from),
            ..target(addr, 32)
        };
        f.apply(&[
            grouped("198.19.0.1", Some("web")),
            grouped("198.19.0.2", Some("web")),
            grouped("198.19.0.3", None),
        ]);
        let names: Vec<&str> = f.groups().iter().map(|g| &*g.name).collect();
        assert_eq!(names, ["web", UNGROUPED]);
        f.record(&ev(0, "198.19.0.1", 1000, reply(100)), 1_100_000_000);
        f.record(&ev(1, "198.19.0.2", 1000, reply(3000)), 1_100_000_000);
        f.record(&ev(2, "198.19.0.3", 1000, Outcome::Timeout), 2_100_000_000);
        let web = &f.groups()[0];
        assert_eq!((web.counters.probes, web.counters.replies), (2, 2));
        assert_eq!(web.histogram.counts.iter().sum::<u64>(), 2);
        assert_eq!(f.groups()[1].counters.timeouts, 1);
        // .2 moves to "db": web keeps what it counted, later events go to db.
        f.apply(&[
            grouped("198.19.0.1", Some("web")),
            grouped("198.19.0.2", Some("db")),
        ]);
        assert_eq!(f.get(1).unwrap().group, 2);
        f.record(&ev(1, "198.19.0.2", 2000, Outcome::Timeout), 3_100_000_000);
        assert_eq!(f.groups()[0].counters.probes, 2);
        assert_eq!(f.groups()[2].counters.timeouts, 1);
        // The target's own counters keep its whole history.
        assert_eq!(f.get(1).unwrap().counters.probes, 2);
    }

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        for (i, b) in HISTOGRAM_BOUNDS.iter().enumerate() {
            assert_eq!(*b, 2f64.powi(i as i32 - 15), "bound {i}");
        }
        let mut h = Histogram::default();
        // Upper bounds are inclusive, as Prometheus's le.
        h.observe(0.000_030_517_578_125);
        h.observe(0.000_03);
        h.observe(1.5);
        h.observe(30.0);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[16], 1);
        assert_eq!(h.counts[17], 1, "beyond 2 s: the +Inf bucket");
    }

    #[test]
    fn rows_and_histograms() {
        let mut f = Fleet::new(10_000, 1000, Limits::default(), true);
        f.apply(&[target("198.19.0.1", 32)]);
        let e = ev(
            0,
            "198.19.0.1",
            1000,
            Outcome::Error {
                family: Family::V4,
                icmp_type: 3,
                code: 13,
                from: "198.18.0.2".parse().unwrap(),
                rtt_ns: 5000,
                rest: 0,
                gateway: None,
            },
        );
        f.record(&e, 1_100_000_000);
        let row = f.row(&e).unwrap();
        assert_eq!(row.event, SweepEvent::Error);
        assert_eq!(row.responder, Some("198.18.0.2".parse().unwrap()));
        f.record(&ev(0, "198.19.0.1", 2000, reply(300)), 2_100_000_000);
        let h = f.get(0).unwrap().histogram.as_ref().unwrap();
        assert_eq!(
            h.counts[4], 1,
            "300 µs lands in the ≤ 2^-11 s (488 µs) bucket"
        );
        let w = f.window_rows(2_100_000_000);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].stats.unwrap().loss_pct, Some(50.0));
    }
}
