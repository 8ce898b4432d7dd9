//! `asdic sweep --metrics-listen`: the sweep's statistics as Prometheus metrics, encoded by
//! `prometheus-client` from a snapshot of the sweep and served over a minimal HTTP/1.1
//! endpoint (`GET /metrics`) that no client can stall.
//!
//! The families follow Prometheus's conventions (and smokeping_prober's and
//! blackbox_exporter's habits): counters end in `_total`, RTTs are a histogram in seconds,
//! ratios are 0..1, every family has HELP and TYPE, and no gauge carries a `quantile` label.
//! They come in three parts:
//!
//! - the fleet's: targets, targets in alarm, rounds, round lag, reloads, the kernel's drops;
//! - per group (`group=NAME` in the targets file, [`UNGROUPED`] otherwise): targets, targets
//!   in alarm, window loss, the counters and the RTT histogram, so that a large fleet can be
//!   watched in a few series whatever `--metrics-per-target` says;
//! - per target, as much as `--metrics-per-target` asks ([`PerTarget`]), with the labels
//!   `target` (address), `name` (from the targets file, or the address), `size` (the packet
//!   size the targets file wrote, NetXMS `psize` with the IP header, or the one `-s` implies:
//!   NetXMS pings one address at several sizes) and `group`.
//!
//! Both text formats are served, as the client's `Accept` header asks ([`Exposition`]):
//! OpenMetrics 1.0, which Prometheus asks for first, and the classic text format 0.0.4 for
//! anything else (`curl … | promtool check metrics`). They differ in how a counter family is
//! named (`x` with samples `x_total` in OpenMetrics, `x_total` in the classic format) and in
//! OpenMetrics's closing `# EOF`.
//!
//! A value that does not exist (no reply in the window, the latest probe lost) is left out,
//! never written as a number.
//!
//! ## The server
//!
//! A small bounded server of its own, with std threads: hyper would bring tokio into a
//! program of plain threads, and tiny_http's pool grows without bound. An acceptor thread
//! gives each connection a thread of its own, at most 64 at once ([`HttpLimits::DEFAULT`]);
//! a connection beyond that is answered `503` with `Retry-After: 1` and closed at
//! once, never queued. A thread per connection rather than a fixed pool fed by a bounded
//! channel: no parked pool for a scraper that comes every 15 s, a client that stalls holds
//! its own thread only (a pool's worker would hold a place that the others queue for), and
//! the cap bounds threads as a pool would. What a client can hold, and for how long:
//!
//! - its request head must have come whole within 1 s of the accept: an overall deadline,
//!   each read waiting only for what is left of it, so a byte every 0.9 s is cut off at 1 s
//!   all the same (`408`); it is at most 8 KiB (`431`); a body is never read;
//! - its response must be written within 2 s plus 1 s per MB of it, a deadline across the
//!   partial writes (each waits only for what is left), after which the connection is
//!   closed: a client that never reads is dropped.
//!
//! Requests go by method and path to a [`Router`]'s handler, on the connection's thread, so
//! a handler that waits (a later `/probe` waiting on its probe) holds up its own connection
//! only, and its route's limit keeps it from holding the connections `/metrics` needs.
//!
//! A scrape is encoded whole, once per format for all the scrapers within [`FRESH_FOR`]
//! (500 ms), and shared ([`Snapshots`]): N scrapers cost one encoding, sent with its
//! `Content-Length`. One encoding runs at a time, on a connection's thread at background
//! priority; the connections that come meanwhile wait for it. The body is held in memory
//! (about 3.3 KB per answering target at `full`: 33 MB for 10,000 targets), and so is an
//! earlier one while a connection still sends it, [`MAX_OLDER`] of them per format at most
//! (then the latest is served again, stale, until one is done or dropped at its deadline):
//! at most four bodies per format, the one being encoded included.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use asdic_analysis::fleet::{Counters, Fleet, GroupTotals, HISTOGRAM_BOUNDS, Histogram, UNGROUPED};
use asdic_analysis::window::WindowStats;
use asdic_core::sweep::Plan;
use asdic_receiver::rx::RxShared;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use crate::args::PerTarget;

/// What the sweep shares with its metrics endpoint.
#[derive(Debug)]
pub struct Shared {
    /// The targets and their statistics.
    pub fleet: Mutex<Fleet>,
    /// Each family's plan (rounds and lag).
    pub plans: Vec<Arc<Plan>>,
    /// Reloads of the targets file applied.
    pub reloads: AtomicU64,
    /// Reloads that failed (the previous list stayed).
    pub reload_errors: AtomicU64,
    /// Each pipeline's receivers' counters (the kernel's drops).
    pub receivers: Vec<Arc<RxShared>>,
}

/// The text format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 (`application/openmetrics-text`): a counter family `x` has samples
    /// `x_total`; the text ends with `# EOF`.
    OpenMetrics,
    /// Prometheus's classic text format 0.0.4 (`text/plain`): a counter family is named with
    /// its `_total`, as its samples are.
    Classic,
}

impl Exposition {
    /// The `Content-Type` of a scrape in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it accepts
    /// `application/openmetrics-text` (q > 0) at least as much as `text/plain`, else (also
    /// without the header) the classic format.
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        let (mut open_metrics, mut text) = (0f64, 0f64);
        for range in accept.unwrap_or("").split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f64>().ok())
                        .flatten()
                })
                .filter(|q| q.is_finite())
                .map_or(1.0, |q| q.clamp(0.0, 1.0));
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            Exposition::OpenMetrics
        } else {
            Exposition::Classic
        }
    }
}

impl PerTarget {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PerTarget::Full => "full",
            PerTarget::Basic => "basic",
            PerTarget::None => "none",
        }
    }

    /// Series of one answering target at this level (one that did not answer in the window
    /// has no RTT statistics): what the README's table says, checked by the tests.
    pub const fn series(self) -> usize {
        match self {
            // 4 counters, the histogram (18 buckets, sum, count), loss, alarm, 5 statistics.
            PerTarget::Full => 4 + HISTOGRAM_BOUNDS.len() + 3 + 2 + WINDOW_STATS.len(),
            // probes, replies, loss, alarm, the window's average RTT.
            PerTarget::Basic => 5,
            PerTarget::None => 0,
        }
    }
}

/// The window statistics of `asdic_sweep_window_rtt_seconds{stat}` at `full` (NetXMS's
/// LastPingTime, AvgPingTime, MinPingTime, MaxPingTime, PingStdDev).
const WINDOW_STATS: [&str; 5] = ["last", "avg", "min", "max", "stddev"];

/// One target's values at a scrape.
struct Snap {
    target: String,
    name: String,
    size: String,
    group: Arc<str>,
    stats: WindowStats,
    counters: Counters,
    alarm: bool,
    histogram: Option<Histogram>,
}

/// One group's values at a scrape.
#[derive(Default)]
struct GroupSnap {
    /// Its listed targets.
    targets: u64,
    /// Those in alarm.
    in_alarm: u64,
    /// Their probes and replies within the window.
    window_probes: u64,
    window_replies: u64,
    /// Its lifetime counters and histogram.
    totals: GroupTotals,
}

/// Everything a scrape exports.
#[derive(Default)]
struct Scrape {
    /// Per target (none at [`PerTarget::None`]).
    targets: Vec<Snap>,
    /// The groups with a listed target.
    groups: Vec<GroupSnap>,
    /// Targets listed, and those in alarm.
    listed: u64,
    in_alarm: u64,
    window_ms: u32,
}

/// The collector registered with a registry: takes a snapshot at each scrape.
#[derive(Debug)]
pub struct SweepCollector {
    shared: Arc<Shared>,
    per_target: PerTarget,
    format: Exposition,
}

impl SweepCollector {
    /// Every target's values now. The fleet is walked a part at a time, so the lock is
    /// never held for long: the consumer of events waits at most one part.
    fn snapshot(&self) -> Scrape {
        const PART: usize = 4096;
        let now = asdic_engine::stamp_ns();
        let mut scratch = Vec::new();
        let mut s = Scrape::default();
        let mut groups: Vec<GroupSnap> = Vec::new();
        let mut first = 0u32;
        loop {
            let Ok(fleet) = self.shared.fleet.lock() else {
                return Scrape::default();
            };
            let all = fleet.groups();
            if groups.len() < all.len() {
                groups.resize_with(all.len(), GroupSnap::default);
            }
            for (_, m) in fleet.members_from(first, PART) {
                // The percentiles and spread only where they are exported.
                let stats = match self.per_target {
                    PerTarget::Full => fleet.member_stats(m, now, &mut scratch),
                    PerTarget::Basic | PerTarget::None => fleet.member_brief(m, now),
                };
                s.listed += 1;
                s.in_alarm += u64::from(m.alarm);
                if let Some(g) = groups.get_mut(m.group as usize) {
                    g.targets += 1;
                    g.in_alarm += u64::from(m.alarm);
                    g.window_probes += u64::from(stats.probes);
                    g.window_replies += u64::from(stats.replies);
                }
                if self.per_target == PerTarget::None {
                    continue;
                }
                let target = m.target.addr.to_string();
                s.targets.push(Snap {
                    name: m
                        .target
                        .name
                        .as_deref()
                        .map_or_else(|| target.clone(), str::to_string),
                    target,
                    size: m.target.psize.to_string(),
                    group: all
                        .get(m.group as usize)
                        .map_or_else(|| Arc::from(UNGROUPED), |g| g.name.clone()),
                    stats,
                    counters: m.counters,
                    alarm: m.alarm,
                    histogram: m.histogram.as_deref().cloned(),
                });
            }
            let end = fleet.cookie_end();
            first = first.saturating_add(PART as u32);
            if first >= end {
                // The groups' totals and the window with the last part.
                for (g, t) in groups.iter_mut().zip(fleet.groups()) {
                    g.totals = t.clone();
                }
                s.window_ms = fleet.window_ms();
                drop(fleet);
                groups.retain(|g| g.targets > 0);
                s.groups = groups;
                return s;
            }
        }
    }
}

/// A target's labels.
type Labels<'a> = [(&'static str, &'a str); 4];

fn labels(s: &Snap) -> Labels<'_> {
    [
        ("target", s.target.as_str()),
        ("name", s.name.as_str()),
        ("size", s.size.as_str()),
        ("group", &*s.group),
    ]
}

/// A group's label.
fn group_label(g: &GroupSnap) -> [(&'static str, &str); 1] {
    [("group", &*g.totals.name)]
}

/// A counter family's name in `format`: `total` is the name with its `_total`, which
/// OpenMetrics leaves to the samples.
fn counter_name(format: Exposition, total: &'static str) -> &'static str {
    match format {
        Exposition::OpenMetrics => total.strip_suffix("_total").unwrap_or(total),
        Exposition::Classic => total,
    }
}

/// One counter sample.
fn counter_sample(m: &mut MetricEncoder, format: Exposition, v: u64) -> std::fmt::Result {
    match format {
        Exposition::OpenMetrics => m.encode_counter::<NoLabelSet, u64, f64>(&v, None),
        // The family is named with its `_total` already: the sample takes the name as it is.
        Exposition::Classic => m.encode_gauge(&v),
    }
}

/// A counter without labels.
fn counter(
    e: &mut DescriptorEncoder,
    format: Exposition,
    total: &'static str,
    help: &str,
    v: u64,
) -> std::fmt::Result {
    let mut m =
        e.encode_descriptor(counter_name(format, total), help, None, MetricType::Counter)?;
    counter_sample(&mut m, format, v)
}

/// A counter family: one series per item of `series`.
fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    format: Exposition,
    total: &'static str,
    help: &str,
    series: impl Iterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut m =
        e.encode_descriptor(counter_name(format, total), help, None, MetricType::Counter)?;
    for (l, v) in series {
        counter_sample(&mut m.encode_family(&l)?, format, v)?;
    }
    Ok(())
}

/// A gauge without labels.
fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

/// A gauge family: one series per item of `series` (items without a value are left out
/// by the caller).
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (L, V)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (l, v) in series {
        m.encode_family(&l)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// A histogram family over [`HISTOGRAM_BOUNDS`].
fn histograms<'h, L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (L, &'h Histogram)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let mut buckets = [(0f64, 0u64); HISTOGRAM_BOUNDS.len() + 1];
    for (l, h) in series {
        for (i, b) in buckets.iter_mut().enumerate() {
            // The encoder takes per-bucket counts and accumulates them itself.
            *b = (
                HISTOGRAM_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY),
                h.counts[i],
            );
        }
        let total = h.counts.iter().sum();
        m.encode_family(&l)?
            .encode_histogram::<NoLabelSet>(h.sum_s, total, &buckets, None)?;
    }
    Ok(())
}

fn secs(us: Option<f64>) -> Option<f64> {
    us.map(|u| u / 1e6)
}

/// Lost / ended probes, 0..1; `None` without probes.
fn loss_ratio(probes: u64, replies: u64) -> Option<f64> {
    (probes > 0).then(|| probes.saturating_sub(replies) as f64 / probes as f64)
}

impl Collector for SweepCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = self.snapshot();
        let e = &mut enc;
        self.fleet_families(e, &s)?;
        group_families(e, self.format, &s)?;
        target_families(e, self.format, self.per_target, &s)
    }
}

impl SweepCollector {
    /// The fleet as a whole: targets, alarms, rounds, reloads, the kernel's drops.
    fn fleet_families(&self, e: &mut DescriptorEncoder, s: &Scrape) -> std::fmt::Result {
        let f = self.format;
        let plans = &self.shared.plans;
        let rounds = plans
            .iter()
            .map(|p| p.rounds.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let lag = plans
            .iter()
            .map(|p| p.lag_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        gauge(e, "asdic_sweep_targets", "Targets listed", s.listed)?;
        gauge(
            e,
            "asdic_sweep_targets_in_alarm",
            "Targets in alarm",
            s.in_alarm,
        )?;
        counter(
            e,
            f,
            "asdic_sweep_rounds_total",
            "Rounds started (of the address family furthest on)",
            rounds,
        )?;
        gauge(
            e,
            "asdic_sweep_round_lag_seconds",
            "How late the latest round started (0 when on schedule)",
            lag as f64 / 1e6,
        )?;
        counter(
            e,
            f,
            "asdic_sweep_reloads_total",
            "Reloads of the targets file applied",
            self.shared.reloads.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            f,
            "asdic_sweep_reload_errors_total",
            "Reloads of the targets file refused (the previous list stayed)",
            self.shared.reload_errors.load(Ordering::Relaxed),
        )?;
        // What the kernel dropped before the receivers read it, by counter: a reply lost
        // here shows as loss of its target, so it is exported beside the loss it explains.
        let kernel = RxShared::kernel_drops_of(self.shared.receivers.iter().map(|r| r.as_ref()));
        counter(
            e,
            f,
            "asdic_sweep_kernel_lost_total",
            "Replies and ICMP errors of the sweep that the kernel dropped or handed to nobody \
             before asdic could read them",
            kernel.lost(),
        )?;
        counters(
            e,
            f,
            "asdic_sweep_kernel_drops_total",
            "The kernel's drop counters of the sweep's receive path, by counter (socket \
             receive-buffer overflows, AF_XDP socket statistics, the XDP program's failed \
             redirects)",
            kernel
                .fields()
                .into_iter()
                .map(|(n, v)| ([("counter", n)], v)),
        )
    }
}

/// Per group: targets, alarms, window loss, lifetime counters and RTT histogram.
fn group_families(e: &mut DescriptorEncoder, f: Exposition, s: &Scrape) -> std::fmt::Result {
    let g = &s.groups;
    let w = f64::from(s.window_ms) / 1000.0;
    gauges(
        e,
        "asdic_sweep_group_targets",
        "Targets listed in the group (group=NAME in the targets file)",
        g.iter().map(|g| (group_label(g), g.targets)),
    )?;
    gauges(
        e,
        "asdic_sweep_group_targets_in_alarm",
        "Targets of the group in alarm",
        g.iter().map(|g| (group_label(g), g.in_alarm)),
    )?;
    gauges(
        e,
        "asdic_sweep_group_loss_ratio",
        &format!("Lost probes / probes of the group's targets over the last {w} s, 0..1"),
        g.iter().filter_map(|g| {
            Some((
                group_label(g),
                loss_ratio(g.window_probes, g.window_replies)?,
            ))
        }),
    )?;
    for (total, help, value) in COUNTERS {
        counters(
            e,
            f,
            total.group,
            &format!("{help} of the group's targets (while in the group)"),
            g.iter()
                .map(|g| (group_label(g), value(&g.totals.counters))),
        )?;
    }
    histograms(
        e,
        "asdic_sweep_group_rtt_seconds",
        "Reply RTTs of the group's targets (while in the group)",
        g.iter().map(|g| (group_label(g), &g.totals.histogram)),
    )
}

/// A counter's names per target and per group.
struct CounterNames {
    target: &'static str,
    group: &'static str,
}

/// A lifetime counter: its names, its HELP and its value.
type CounterOf = (CounterNames, &'static str, fn(&Counters) -> u64);

/// The lifetime counters, in order; `basic` exports the first two per target.
const COUNTERS: [CounterOf; 4] = [
    (
        CounterNames {
            target: "asdic_sweep_probes_total",
            group: "asdic_sweep_group_probes_total",
        },
        "Probes ended (replies, ICMP errors, timeouts, failed sends)",
        |c| c.probes,
    ),
    (
        CounterNames {
            target: "asdic_sweep_replies_total",
            group: "asdic_sweep_group_replies_total",
        },
        "Echo replies",
        |c| c.replies,
    ),
    (
        CounterNames {
            target: "asdic_sweep_errors_total",
            group: "asdic_sweep_group_errors_total",
        },
        "ICMP errors about the probes",
        |c| c.errors,
    ),
    (
        CounterNames {
            target: "asdic_sweep_timeouts_total",
            group: "asdic_sweep_group_timeouts_total",
        },
        "Probes unanswered within the timeout",
        |c| c.timeouts,
    ),
];

/// Per target, as much as `level` asks.
fn target_families(
    e: &mut DescriptorEncoder,
    f: Exposition,
    level: PerTarget,
    s: &Scrape,
) -> std::fmt::Result {
    let (counted, stats): (usize, &[&str]) = match level {
        PerTarget::None => return Ok(()),
        PerTarget::Basic => (2, &WINDOW_STATS[1..2]),
        PerTarget::Full => (COUNTERS.len(), &WINDOW_STATS),
    };
    let t = &s.targets;
    for (total, help, value) in COUNTERS.iter().take(counted) {
        counters(
            e,
            f,
            total.target,
            &format!("{help} since the target was added"),
            t.iter().map(|s| (labels(s), value(&s.counters))),
        )?;
    }
    if level == PerTarget::Full {
        histograms(
            e,
            "asdic_sweep_rtt_seconds",
            "Reply RTTs since the target was added",
            t.iter()
                .filter_map(|s| Some((labels(s), s.histogram.as_ref()?))),
        )?;
    }
    let w = f64::from(s.window_ms) / 1000.0;
    gauges(
        e,
        "asdic_sweep_loss_ratio",
        &format!(
            "Lost probes / probes over the last {w} s, 0..1 (NetXMS PacketLoss / 100); \
             absent without probes in the window"
        ),
        t.iter().filter_map(|s| {
            let st = &s.stats;
            Some((
                labels(s),
                loss_ratio(u64::from(st.probes), u64::from(st.replies))?,
            ))
        }),
    )?;
    gauges(
        e,
        "asdic_sweep_alarm",
        "1 while the target breaks its alarm limits, else 0",
        t.iter().map(|s| (labels(s), u64::from(s.alarm))),
    )?;
    let mut m = e.encode_descriptor(
        "asdic_sweep_window_rtt_seconds",
        &format!(
            "Reply RTT statistics over the last {w} s by stat: last (of the latest probe, \
             absent when it was lost), avg, min, max, stddev (population); absent without \
             replies (NetXMS LastPingTime, AvgPingTime, MinPingTime, MaxPingTime, PingStdDev)"
        ),
        None,
        MetricType::Gauge,
    )?;
    for s in t {
        let [a, b, c, d] = labels(s);
        for &stat in stats {
            let v = match stat {
                "last" => s.stats.last_us,
                "avg" => s.stats.avg_us,
                "min" => s.stats.min_us,
                "max" => s.stats.max_us,
                _ => s.stats.stddev_us,
            };
            if let Some(v) = secs(v) {
                m.encode_family(&[a, b, c, d, ("stat", stat)])?
                    .encode_gauge(&v)?;
            }
        }
    }
    Ok(())
}

/// The sweep's metrics, one registry per text format.
#[derive(Debug)]
pub struct Registries {
    open_metrics: Registry,
    classic: Registry,
}

impl Registries {
    /// The registries of a sweep exporting `per_target` series per target.
    pub fn new(shared: Arc<Shared>, per_target: PerTarget) -> Self {
        let registry = |format| {
            let mut r = Registry::default();
            r.register_collector(Box::new(SweepCollector {
                shared: shared.clone(),
                per_target,
                format,
            }));
            r
        };
        Registries {
            open_metrics: registry(Exposition::OpenMetrics),
            classic: registry(Exposition::Classic),
        }
    }

    /// Encodes a scrape in `format` onto `w`.
    pub fn encode(&self, w: &mut impl std::fmt::Write, format: Exposition) -> std::fmt::Result {
        match format {
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode(w, &self.open_metrics)
            }
            Exposition::Classic => {
                prometheus_client::encoding::text::encode_registry(w, &self.classic)
            }
        }
    }
}

// The HTTP endpoint: a small bounded server of its own (see the module's documentation).

/// How long an encoded scrape is served again: every scraper within this shares one
/// encoding per format. Half of 1 s, the shortest scrape interval in common use, so that a
/// scraper at 1 s never gets the snapshot of its previous scrape again, while any number of
/// scrapers cost at most two encodings a second per format.
const FRESH_FOR: Duration = Duration::from_millis(500);

/// Encodings older than the latest that connections may still be sending, per format. With
/// as many alive, the latest is served even when stale instead of a new one encoded: slow
/// clients pin at most this many bodies (each is dropped at its write deadline).
const MAX_OLDER: usize = 2;

/// Longest request head read.
const MAX_HEAD: usize = 8192;

/// Longest response written in one piece with its head.
const SMALL_BODY: usize = 4096;

/// What the endpoint allows its clients.
#[derive(Debug, Clone, Copy)]
struct HttpLimits {
    /// Connections at once (reading their request or being answered); one more is answered
    /// `503` and closed at once.
    connections: usize,
    /// From the accept to the end of the request head, however the bytes trickle in.
    head: Duration,
    /// A response must be written within this plus its length at `write_rate`.
    write_grace: Duration,
    /// Bytes per second a client must at least read.
    write_rate: f64,
}

impl HttpLimits {
    /// 64 connections, 1 s for the head, 2 s + 1 s per MB for the response.
    const DEFAULT: HttpLimits = HttpLimits {
        connections: 64,
        head: Duration::from_secs(1),
        write_grace: Duration::from_secs(2),
        write_rate: 1e6,
    };

    /// The time allowed to write `len` bytes.
    fn write_time(&self, len: usize) -> Duration {
        self.write_grace + Duration::from_secs_f64(len as f64 / self.write_rate)
    }
}

/// A request, as its route sees it.
#[derive(Debug, Default)]
struct Request {
    method: String,
    /// The path, without the query.
    path: String,
    accept: Option<String>,
}

impl Request {
    /// The request line and the headers of a request head (leniently: what is missing is
    /// empty).
    fn parse(head: &[u8]) -> Request {
        let mut lines = head.split(|&b| b == b'\n').map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            String::from_utf8_lossy(l).into_owned()
        });
        let line = lines.next().unwrap_or_default();
        let accept = lines.take_while(|l| !l.is_empty()).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("accept")
                .then(|| v.trim().to_string())
        });
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        Request {
            method: method.to_string(),
            path: target.split('?').next().unwrap_or("").to_string(),
            accept,
        }
    }
}

/// A response, whole before it is sent: its `Content-Length` is known, and a cached scrape
/// is shared rather than copied.
#[derive(Debug)]
struct Response {
    status: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Static(&'static [u8]),
    Shared(Arc<Vec<u8>>),
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Static(b) => b,
            Body::Shared(b) => b,
        }
    }
}

impl Response {
    /// A short plain-text answer.
    fn text(status: &'static str, body: &'static str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: vec![],
            body: Body::Static(body.as_bytes()),
        }
    }

    /// `503`: come back in a second.
    fn busy(why: &'static str) -> Response {
        Response::text("503 Service Unavailable", why).with("Retry-After", "1")
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The status line and headers; `body` is `false` for `HEAD`, whose `Content-Length` is
    /// still that of the body.
    fn head(&self) -> String {
        let mut h = String::with_capacity(192);
        let _ = write!(
            h,
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            self.content_type,
            self.body.bytes().len()
        );
        for (k, v) in &self.headers {
            let _ = write!(h, "{k}: {v}\r\n");
        }
        h.push_str("Connection: close\r\n\r\n");
        h
    }
}

type Handler = Box<dyn Fn(&Request) -> Response + Send + Sync>;

/// A method set and path, and what answers them.
struct Route {
    methods: &'static [&'static str],
    path: &'static str,
    /// Requests of this route answered at once; one more is answered `503`. A route whose
    /// requests may wait (on a probe, say) gets a small one, so that it never holds the
    /// connections that `/metrics` needs.
    limit: usize,
    busy: Arc<AtomicUsize>,
    handler: Handler,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("methods", &self.methods)
            .field("path", &self.path)
            .field("limit", &self.limit)
            .field("busy", &self.busy)
            .finish_non_exhaustive()
    }
}

/// Method and path to handler. Each connection has a thread of its own, on which its
/// handler runs: a handler that waits holds up its own connection only (and, through its
/// route's limit, a bounded number of them).
#[derive(Debug, Default)]
struct Router {
    routes: Vec<Route>,
}

/// One of a route's requests in progress.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Router {
    /// Adds `GET` (and `HEAD`) `path`, answered by `handler` for at most `limit` requests
    /// at once.
    fn get(
        mut self,
        path: &'static str,
        limit: usize,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Router {
        self.routes.push(Route {
            methods: &["GET", "HEAD"],
            path,
            limit,
            busy: Arc::new(AtomicUsize::new(0)),
            handler: Box::new(handler),
        });
        self
    }

    /// The answer to `req`: its route's, `404` for an unknown path, `405` for a method not
    /// served.
    fn dispatch(&self, req: &Request) -> Response {
        let Some(route) = self.routes.iter().find(|r| r.path == req.path) else {
            return match req.method.as_str() {
                "GET" | "HEAD" => Response::text("404 Not Found", "not found\n"),
                _ => Response::text("405 Method Not Allowed", "GET /metrics\n"),
            };
        };
        if !route.methods.contains(&req.method.as_str()) {
            return Response::text("405 Method Not Allowed", "GET /metrics\n")
                .with("Allow", route.methods.join(", "));
        }
        let entered = route
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < route.limit).then_some(n + 1)
            });
        if entered.is_err() {
            return Response::busy("busy: too many requests of this path at once\n");
        }
        let _busy = Busy(route.busy.clone());
        (route.handler)(req)
    }
}

/// The encoded scrapes, one per format, shared by every connection.
#[derive(Debug)]
struct Snapshots {
    registries: Registries,
    /// How long an encoding is served again ([`FRESH_FOR`]).
    fresh_for: Duration,
    /// Held while encoding: one encoding at a time, whatever the format.
    encoder: Mutex<()>,
    /// OpenMetrics's, the classic format's.
    cached: [Mutex<Cached>; 2],
    /// Encodings done.
    encodings: AtomicU64,
}

/// The encodings of one format.
#[derive(Debug, Default)]
struct Cached {
    /// The latest, and when its snapshot was taken.
    latest: Option<(Instant, Arc<Vec<u8>>)>,
    /// Encodings done, so that a connection that waited for another's sees it did.
    generation: u64,
    /// The ones before the latest, alive while a connection still sends them.
    older: Vec<Weak<Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Snapshots {
    fn new(registries: Registries, fresh_for: Duration) -> Snapshots {
        Snapshots {
            registries,
            fresh_for,
            encoder: Mutex::new(()),
            cached: Default::default(),
            encodings: AtomicU64::new(0),
        }
    }

    /// A scrape in `format`: the latest encoding if fresh, else a new one. Encodings happen
    /// one at a time; connections that come meanwhile wait for it and share it.
    fn get(&self, format: Exposition) -> Result<Arc<Vec<u8>>, std::fmt::Error> {
        let cached = &self.cached[match format {
            Exposition::OpenMetrics => 0,
            Exposition::Classic => 1,
        }];
        let seen = {
            let c = lock(cached);
            let fresh = c
                .latest
                .as_ref()
                .filter(|(at, _)| at.elapsed() < self.fresh_for);
            if let Some((_, body)) = fresh {
                return Ok(body.clone());
            }
            c.generation
        };
        let _encoder = lock(&self.encoder);
        let hint = {
            let mut c = lock(cached);
            c.older.retain(|o| o.strong_count() > 0);
            if let Some((_, body)) = &c.latest {
                // Encoded while this connection waited (as fresh as it gets), or too many
                // older ones still being sent: this one.
                if c.generation != seen || c.older.len() >= MAX_OLDER {
                    return Ok(body.clone());
                }
            }
            c.latest.as_ref().map_or(1 << 16, |(_, b)| b.len())
        };
        let began = Instant::now();
        let mut text = String::with_capacity(hint + hint / 16);
        self.registries.encode(&mut text, format)?;
        self.encodings.fetch_add(1, Ordering::Relaxed);
        let body = Arc::new(text.into_bytes());
        let mut c = lock(cached);
        if let Some((_, old)) = c.latest.replace((began, body.clone())) {
            c.older.push(Arc::downgrade(&old));
        }
        c.generation += 1;
        Ok(body)
    }

    /// `GET /metrics`.
    fn respond(&self, req: &Request) -> Response {
        let format = Exposition::negotiate(req.accept.as_deref());
        match self.get(format) {
            Ok(body) => Response {
                status: "200 OK",
                content_type: format.content_type(),
                headers: vec![],
                body: Body::Shared(body),
            },
            Err(_) => {
                say!("asdic: metrics: encoding a scrape failed");
                Response::text("500 Internal Server Error", "asdic: encoding failed\n")
            }
        }
    }
}

/// Serves `registries` at `GET /metrics` on `listener` (bound by the caller while it still
/// holds its capabilities, so that root can listen on a port below 1024); returns its
/// address. The server's threads live as long as the process.
pub fn serve(listener: TcpListener, registries: Registries) -> std::io::Result<SocketAddr> {
    let snapshots = Arc::new(Snapshots::new(registries, FRESH_FOR));
    let limits = HttpLimits::DEFAULT;
    serve_routes(listener, endpoints(snapshots, limits.connections), limits)
}

/// The sweep's routes. A later one whose requests may wait (`/probe`) gets a limit well
/// below `connections`.
fn endpoints(snapshots: Arc<Snapshots>, connections: usize) -> Router {
    Router::default()
        .get("/", connections, |_| {
            Response::text("200 OK", "asdic sweep: metrics at /metrics\n")
        })
        .get("/metrics", connections, move |req| snapshots.respond(req))
}

/// Serves `router` on `listener` within `limits`, from a thread of its own.
fn serve_routes(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
) -> std::io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let router = Arc::new(router);
    std::thread::Builder::new()
        .name("asdic-metrics".into())
        .spawn(move || {
            // A scrape of a large fleet is a burst of work (snapshot and encoding): it runs
            // at the lowest priority so that it never starves the sender or the receiver.
            // The connections' threads inherit it.
            if let Err(e) = asdic_engine::background_thread() {
                say!("asdic: metrics thread keeps normal priority: {e}");
            }
            accept(&listener, &router, limits);
        })?;
    Ok(bound)
}

/// One of the connections open.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections forever: a thread for each, up to `limits.connections`.
fn accept(listener: &TcpListener, router: &Arc<Router>, limits: HttpLimits) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut said = false;
    for conn in listener.incoming() {
        let c = match conn {
            Ok(c) => c,
            // Out of descriptors or the like: back off instead of spinning.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let accepted = Instant::now();
        // Only this thread counts up: the count can only have gone down since.
        if open.load(Ordering::Acquire) >= limits.connections {
            refuse(c);
            continue;
        }
        open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(open.clone());
        let router = router.clone();
        let spawned = std::thread::Builder::new()
            .name("asdic-metrics-c".into())
            .spawn(move || {
                let _slot = slot;
                converse(c, &router, &limits, accepted);
            });
        if let Err(e) = spawned {
            // The connection and its slot went with the closure: closed unanswered.
            if !said {
                say!("asdic: metrics: no thread for a connection: {e}");
                said = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Answers a connection beyond the limit `503` and closes it, without waiting for anything.
fn refuse(c: TcpStream) {
    if c.set_nonblocking(true).is_ok() {
        drain(&c);
        let r = Response::busy("busy: too many connections\n");
        let mut bytes = r.head().into_bytes();
        bytes.extend_from_slice(r.body.bytes());
        // A new connection's send buffer takes these few bytes whole.
        let _ = (&c).write(&bytes);
    }
    let _ = c.shutdown(Shutdown::Write);
}

/// The request head read, or why not.
enum Head {
    /// Up to its blank line.
    Complete(Vec<u8>),
    /// The client closed first.
    Closed(Vec<u8>),
    /// Longer than [`MAX_HEAD`].
    TooLong,
    /// Not all there by the deadline.
    Late,
}

/// One request on `c` answered, within `limits`.
fn converse(mut c: TcpStream, router: &Router, limits: &HttpLimits, accepted: Instant) {
    let _ = c.set_nodelay(true);
    let (response, head_only) = match read_head(&mut c, accepted + limits.head) {
        Ok(Head::Complete(head)) => {
            let req = Request::parse(&head);
            (router.dispatch(&req), req.method == "HEAD")
        }
        Ok(Head::Closed(head)) if head.iter().any(|b| !b.is_ascii_whitespace()) => {
            let req = Request::parse(&head);
            (router.dispatch(&req), req.method == "HEAD")
        }
        Ok(Head::Closed(_)) | Err(_) => return,
        Ok(Head::TooLong) => (
            Response::text(
                "431 Request Header Fields Too Large",
                "request head over 8 KiB\n",
            ),
            false,
        ),
        Ok(Head::Late) => (
            Response::text("408 Request Timeout", "request head too slow\n"),
            false,
        ),
    };
    // A failed write is the client's problem: it is cut off either way.
    let _ = send(&mut c, &response, head_only, limits);
    let _ = c.shutdown(Shutdown::Write);
    drain(&c);
}

/// Where the head at the start of `b` ends (after its blank line), if it does.
fn head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| match &b[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Reads a request head, all of it by `deadline` (each read waits at most for what is
/// left, so a byte now and then does not extend it).
fn read_head(c: &mut TcpStream, deadline: Instant) -> std::io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::Late);
        }
        c.set_read_timeout(Some(left))?;
        let room = (MAX_HEAD - head.len()).min(buf.len());
        match c.read(&mut buf[..room]) {
            Ok(0) => return Ok(Head::Closed(head)),
            Ok(k) => {
                // The blank line may begin in what came before.
                let from = head.len().saturating_sub(2);
                head.extend_from_slice(&buf[..k]);
                if let Some(end) = head_end(&head[from..]) {
                    head.truncate(from + end);
                    return Ok(Head::Complete(head));
                }
                if head.len() >= MAX_HEAD {
                    return Ok(Head::TooLong);
                }
            }
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

fn is_retry(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

/// Writes `r` (its head only for `HEAD`) within the time `limits` allow for its length.
fn send(
    c: &mut TcpStream,
    r: &Response,
    head_only: bool,
    limits: &HttpLimits,
) -> std::io::Result<()> {
    let mut head = r.head().into_bytes();
    let body = if head_only { &[][..] } else { r.body.bytes() };
    let deadline = Instant::now() + limits.write_time(head.len() + body.len());
    if body.len() <= SMALL_BODY {
        head.extend_from_slice(body);
        return write_by(c, &head, deadline);
    }
    write_by(c, &head, deadline)?;
    write_by(c, body, deadline)
}

/// Writes all of `buf` by `deadline`, however the client reads: each write waits at most
/// for what is left.
fn write_by(c: &mut TcpStream, mut buf: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        c.set_write_timeout(Some(left))?;
        match c.write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(k) => buf = &buf[k..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what the client sent and nobody will read (at most 64 KiB, without waiting), so
/// that closing does not reset the connection under the response.
fn drain(c: &TcpStream) {
    if c.set_nonblocking(true).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match (&*c).read(&mut buf) {
            Ok(k) if k > 0 => {}
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_analysis::fleet::{FleetTarget, Limits};
    use asdic_core::{Event, Outcome};
    use asdic_engine::KernelDrops;
    use asdic_wire::Family;
    use std::collections::{BTreeSet, HashMap, HashSet};

    /// One sample of a scrape: name, labels, value.
    type Sample = (String, Vec<(String, String)>, String);

    /// A scrape read back: each family's HELP and TYPE, the samples, and whether it ended
    /// with `# EOF`.
    #[derive(Debug, Default)]
    struct Parsed {
        help: HashMap<String, String>,
        types: HashMap<String, String>,
        samples: Vec<Sample>,
        eof: bool,
    }

    /// Reads a scrape in either text format (enough of them for asdic's output).
    fn parse(text: &str) -> Parsed {
        let mut p = Parsed::default();
        for line in text.lines() {
            assert!(!p.eof, "a line after # EOF: {line}");
            if line == "# EOF" {
                p.eof = true;
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(
                    p.help.insert(name.into(), help.into()).is_none(),
                    "second HELP for {name}"
                );
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, t) = rest.split_once(' ').expect("TYPE name type");
                assert!(
                    p.types.insert(name.into(), t.into()).is_none(),
                    "second TYPE for {name}"
                );
            } else if line.starts_with('#') || line.is_empty() {
                panic!("unexpected line {line:?}");
            } else {
                p.samples.push(sample(line));
            }
        }
        p
    }

    fn sample(line: &str) -> Sample {
        let end = line.find(['{', ' ']).expect("a sample");
        let name = line[..end].to_string();
        let mut labels = vec![];
        let mut rest = &line[end..];
        if let Some(mut r) = rest.strip_prefix('{') {
            while !r.starts_with('}') {
                let (k, v) = r.split_once("=\"").expect("label=\"value\"");
                let mut value = String::new();
                let mut chars = v.char_indices();
                let close = loop {
                    match chars.next().expect("a closing quote") {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().expect("an escape").1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (_, c) => value.push(c),
                    }
                };
                labels.push((k.to_string(), value));
                r = &v[close + 1..];
                r = r.strip_prefix(',').unwrap_or(r);
            }
            rest = &r[1..];
        }
        let value = rest.strip_prefix(' ').expect("a space before the value");
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "{line}: value {value:?}"
        );
        (name, labels, value.to_string())
    }

    /// The family a sample belongs to, in `format`.
    fn family_of(p: &Parsed, name: &str, format: Exposition) -> Option<String> {
        if let Some(t) = p.types.get(name) {
            let bare_ok = match format {
                Exposition::Classic => true,
                Exposition::OpenMetrics => t == "gauge" || t == "unknown",
            };
            return bare_ok.then(|| name.to_string());
        }
        for (suffix, t) in [
            ("_bucket", "histogram"),
            ("_sum", "histogram"),
            ("_count", "histogram"),
            ("_total", "counter"),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && p.types.get(base).map(String::as_str) == Some(t)
                && (t == "histogram" || format == Exposition::OpenMetrics)
            {
                return Some(base.to_string());
            }
        }
        None
    }

    /// What `promtool check metrics` (and Prometheus's OpenMetrics parser) would object to.
    fn problems(p: &Parsed, format: Exposition) -> Vec<String> {
        let mut out = vec![];
        let mut seen = HashSet::new();
        for (name, labels, _) in &p.samples {
            let Some(family) = family_of(p, name, format) else {
                out.push(format!("{name}: no TYPE"));
                continue;
            };
            if p.help.get(&family).is_none_or(|h| h.is_empty()) {
                out.push(format!("{family}: no help text"));
            }
            let t = &p.types[&family];
            for (k, _) in labels {
                if k == "quantile" && t != "summary" {
                    out.push(format!("{family}: a quantile label on a {t}"));
                }
                if k == "le" && !(t == "histogram" && name.ends_with("_bucket")) {
                    out.push(format!("{name}: an le label"));
                }
            }
            let mut key: Vec<_> = labels.clone();
            key.sort();
            if !seen.insert((name.clone(), key)) {
                out.push(format!("{name}{labels:?}: twice"));
            }
        }
        for (family, t) in &p.types {
            let total = family.ends_with("_total");
            match (format, t.as_str()) {
                (Exposition::Classic, "counter") if !total => {
                    out.push(format!("{family}: a counter without _total"))
                }
                (Exposition::OpenMetrics, "counter") if total => out.push(format!(
                    "{family}: an OpenMetrics counter family with _total"
                )),
                (_, "gauge" | "histogram") if total => {
                    out.push(format!("{family}: a {t} named _total"))
                }
                _ => {}
            }
        }
        if p.eof != (format == Exposition::OpenMetrics) {
            out.push(format!("# EOF in {format:?}: {}", p.eof));
        }
        out
    }

    fn target(a: &str, name: Option<&str>, group: Option<&str>) -> FleetTarget {
        FleetTarget {
            addr: a.parse().unwrap(),
            name: name.map(Arc::from),
            size: 56,
            psize: 84,
            class: 0,
            limits: Limits::default(),
            group: group.map(Arc::from),
        }
    }

    /// A fleet of three targets in two groups (web: an answering one and a dead one;
    /// ungrouped: a rejected one) with a few events each, as a sweep at `level` keeps it.
    fn shared(level: PerTarget, first_name: &str) -> Arc<Shared> {
        let mut fleet = Fleet::new(60_000, 1000, Limits::default(), level == PerTarget::Full);
        fleet.apply(&[
            target("198.19.0.1", Some(first_name), Some("web")),
            target("198.19.0.2", None, Some("web")),
            target("198.19.0.3", Some("db1"), None),
        ]);
        let now = asdic_engine::stamp_ns();
        let ev = |cookie, a: &str, outcome| Event {
            probe: Some(0),
            cookie,
            target: a.parse().unwrap(),
            sent_ns: Some(now - 1_000_000),
            attempt: 0,
            outcome,
        };
        for rtt_us in [100, 250, 3000] {
            let reply = Outcome::Reply {
                rtt_ns: rtt_us * 1000,
                ttl: Some(64),
                from: "198.19.0.1".parse().unwrap(),
            };
            fleet.record(&ev(0, "198.19.0.1", reply), now);
        }
        fleet.record(&ev(1, "198.19.0.2", Outcome::Timeout), now);
        let error = Outcome::Error {
            family: Family::V4,
            icmp_type: 3,
            code: 13,
            from: "198.18.0.2".parse().unwrap(),
            rtt_ns: 80_000,
            rest: 0,
            gateway: None,
        };
        fleet.record(&ev(2, "198.19.0.3", error), now);
        let rx = Arc::new(RxShared::default());
        rx.add_kernel_drops(&KernelDrops {
            xsk_rx_ring_full: 7,
            redirect_failed: 2,
            xsk_fill_empty: 5,
            ..KernelDrops::default()
        });
        Arc::new(Shared {
            fleet: Mutex::new(fleet),
            plans: vec![],
            reloads: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
            receivers: vec![rx],
        })
    }

    fn scrape(shared: Arc<Shared>, level: PerTarget, format: Exposition) -> String {
        let mut text = String::new();
        Registries::new(shared, level)
            .encode(&mut text, format)
            .unwrap();
        text
    }

    /// The families every level exports, named as in the classic format.
    const FLEET_AND_GROUPS: [&str; 16] = [
        "asdic_sweep_targets",
        "asdic_sweep_targets_in_alarm",
        "asdic_sweep_rounds_total",
        "asdic_sweep_round_lag_seconds",
        "asdic_sweep_reloads_total",
        "asdic_sweep_reload_errors_total",
        "asdic_sweep_kernel_lost_total",
        "asdic_sweep_kernel_drops_total",
        "asdic_sweep_group_targets",
        "asdic_sweep_group_targets_in_alarm",
        "asdic_sweep_group_loss_ratio",
        "asdic_sweep_group_probes_total",
        "asdic_sweep_group_replies_total",
        "asdic_sweep_group_errors_total",
        "asdic_sweep_group_timeouts_total",
        "asdic_sweep_group_rtt_seconds",
    ];

    fn families_of(level: PerTarget) -> BTreeSet<&'static str> {
        let basic = [
            "asdic_sweep_probes_total",
            "asdic_sweep_replies_total",
            "asdic_sweep_loss_ratio",
            "asdic_sweep_alarm",
            "asdic_sweep_window_rtt_seconds",
        ];
        let full = [
            "asdic_sweep_errors_total",
            "asdic_sweep_timeouts_total",
            "asdic_sweep_rtt_seconds",
        ];
        let mut f: BTreeSet<&str> = FLEET_AND_GROUPS.into_iter().collect();
        if level != PerTarget::None {
            f.extend(basic);
        }
        if level == PerTarget::Full {
            f.extend(full);
        }
        f
    }

    fn series_of(p: &Parsed, addr: &str) -> usize {
        p.samples
            .iter()
            .filter(|(_, l, _)| l.iter().any(|(k, v)| k == "target" && v == addr))
            .count()
    }

    #[test]
    fn every_level_in_both_formats_is_what_promtool_and_prometheus_accept() {
        for level in [PerTarget::Full, PerTarget::Basic, PerTarget::None] {
            for format in [Exposition::Classic, Exposition::OpenMetrics] {
                let text = scrape(shared(level, "web1"), level, format);
                let p = parse(&text);
                let bad = problems(&p, format);
                assert!(bad.is_empty(), "{level:?} {format:?}: {bad:?}\n{text}");
                // Exactly the families of the level, named as the format names them.
                let want: BTreeSet<String> = families_of(level)
                    .into_iter()
                    .map(|f| counter_name_of(f, &p, format))
                    .collect();
                let got: BTreeSet<String> = p.types.keys().cloned().collect();
                assert_eq!(got, want, "{level:?} {format:?}");
                assert!(want.iter().all(|f| p.help.contains_key(f)));
                // Series per target: the answering one has every statistic, the dead one
                // none of the RTTs, the window's included.
                assert_eq!(series_of(&p, "198.19.0.1"), level.series(), "{level:?}");
                let dead = match level {
                    PerTarget::Full => level.series() - WINDOW_STATS.len(),
                    PerTarget::Basic => level.series() - 1,
                    PerTarget::None => 0,
                };
                assert_eq!(series_of(&p, "198.19.0.2"), dead, "{level:?}");
                // The fleet's series (7 and the kernel's 6 counters) and the groups' (27
                // each) at every level.
                let groups = p.samples.len()
                    - 13
                    - series_of(&p, "198.19.0.1")
                    - series_of(&p, "198.19.0.2")
                    - series_of(&p, "198.19.0.3");
                assert_eq!(
                    groups,
                    2 * (3 + 4 + HISTOGRAM_BOUNDS.len() + 3),
                    "{level:?}"
                );
            }
        }
    }

    /// `family` (named as in the classic format) as `format` names it.
    fn counter_name_of(family: &str, p: &Parsed, format: Exposition) -> String {
        match format {
            Exposition::OpenMetrics if !p.types.contains_key(family) => {
                family.strip_suffix("_total").unwrap_or(family).to_string()
            }
            _ => family.to_string(),
        }
    }

    #[test]
    fn scrape_values_and_no_fake_ones() {
        let text = scrape(
            shared(PerTarget::Full, "web \"1\""),
            PerTarget::Full,
            Exposition::OpenMetrics,
        );
        let l1 = r#"target="198.19.0.1",name="web \"1\"",size="84",group="web""#;
        let l2 = r#"target="198.19.0.2",name="198.19.0.2",size="84",group="web""#;
        let l3 = r#"target="198.19.0.3",name="db1",size="84",group="ungrouped""#;
        for want in [
            "# TYPE asdic_sweep_probes counter".to_string(),
            format!("asdic_sweep_window_rtt_seconds{{{l1},stat=\"last\"}} 0.003"),
            format!("asdic_sweep_window_rtt_seconds{{{l1},stat=\"min\"}} 0.0001"),
            format!("asdic_sweep_loss_ratio{{{l1}}} 0.0"),
            format!("asdic_sweep_loss_ratio{{{l2}}} 1.0"),
            format!("asdic_sweep_alarm{{{l2}}} 0"),
            format!("asdic_sweep_probes_total{{{l2}}} 1"),
            format!("asdic_sweep_errors_total{{{l3}}} 1"),
            format!("asdic_sweep_rtt_seconds_count{{{l1}}} 3"),
            // Buckets count up to their bound (le, which the encoder writes first):
            // 100 µs ≤ 2^-12 s (244 µs) < 250 µs.
            format!("asdic_sweep_rtt_seconds_bucket{{le=\"0.000244140625\",{l1}}} 1"),
            format!("asdic_sweep_rtt_seconds_bucket{{le=\"0.00048828125\",{l1}}} 2"),
            format!("asdic_sweep_rtt_seconds_bucket{{le=\"+Inf\",{l1}}} 3"),
            format!("asdic_sweep_rtt_seconds_count{{{l2}}} 0"),
            "asdic_sweep_group_targets{group=\"web\"} 2".to_string(),
            "asdic_sweep_group_targets{group=\"ungrouped\"} 1".to_string(),
            "asdic_sweep_group_loss_ratio{group=\"web\"} 0.25".to_string(),
            "asdic_sweep_group_probes_total{group=\"web\"} 4".to_string(),
            "asdic_sweep_group_rtt_seconds_count{group=\"web\"} 3".to_string(),
            "asdic_sweep_group_errors_total{group=\"ungrouped\"} 1".to_string(),
            "asdic_sweep_targets 3".to_string(),
            "asdic_sweep_kernel_lost_total 9".to_string(),
            "asdic_sweep_kernel_drops_total{counter=\"xsk_rx_ring_full\"} 7".to_string(),
            "asdic_sweep_kernel_drops_total{counter=\"xsk_fill_ring_empty\"} 5".to_string(),
            "asdic_sweep_kernel_drops_total{counter=\"socket_overflow\"} 0".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // The lost and the rejected target have no RTT statistics at all.
        for l in [l2, l3] {
            assert!(!text.contains(&format!("asdic_sweep_window_rtt_seconds{{{l}")));
        }
        // The same scrape in the classic format names its counters with their _total.
        let classic = scrape(
            shared(PerTarget::Full, "web1"),
            PerTarget::Full,
            Exposition::Classic,
        );
        for want in [
            "# HELP asdic_sweep_probes_total Probes ended",
            "# TYPE asdic_sweep_probes_total counter",
            "# TYPE asdic_sweep_group_rtt_seconds histogram",
            "asdic_sweep_kernel_lost_total 9",
        ] {
            assert!(classic.contains(want), "missing {want:?} in\n{classic}");
        }
        assert!(!classic.contains("# EOF"));
    }

    #[test]
    fn accept_headers_choose_the_format() {
        use Exposition::{Classic, OpenMetrics};
        for (accept, want) in [
            (None, Classic),
            (Some("*/*"), Classic),
            (Some("text/plain"), Classic),
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (
                Some(
                    "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5",
                ),
                Classic,
            ),
            (Some("Application/OpenMetrics-Text; q=0"), Classic),
            (Some("application/openmetrics-text; q=junk"), OpenMetrics),
            (Some(";;,=,q=,"), Classic),
        ] {
            assert_eq!(Exposition::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn http_endpoint_serves_metrics_and_refuses_the_rest() {
        let shared = Arc::new(Shared {
            fleet: Mutex::new(Fleet::new(1000, 1000, Limits::default(), false)),
            plans: vec![],
            reloads: AtomicU64::new(3),
            reload_errors: AtomicU64::new(0),
            receivers: vec![],
        });
        let addr = serve(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            Registries::new(shared, PerTarget::Basic),
        )
        .unwrap();
        let get = |req: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(
            r.contains("# TYPE asdic_sweep_reloads_total counter"),
            "{r}"
        );
        assert!(r.contains("\nasdic_sweep_reloads_total 3\n"), "{r}");
        assert!(!r.contains("# EOF"));
        let r = get(
            "GET /metrics HTTP/1.1\r\nHost: x\r\naccept: application/openmetrics-text;\
             version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n",
        );
        assert!(
            r.contains("Content-Type: application/openmetrics-text"),
            "{r}"
        );
        assert!(r.contains("# TYPE asdic_sweep_reloads counter"), "{r}");
        assert!(r.contains("\nasdic_sweep_reloads_total 3\n"), "{r}");
        assert!(r.ends_with("# EOF\n"), "{r}");
        let r = get("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get("\r\n\r\n").starts_with("HTTP/1.1 405"));
        // The body is whole before it is sent: its length is said, also to HEAD.
        let r = get("GET /metrics HTTP/1.0\n\n");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{head}"
        );
        let r = get("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{r}"
        );
        let r = get("DELETE /metrics HTTP/1.1\r\n\r\n");
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
        let r = get(&format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(MAX_HEAD)));
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    }

    /// The sweep's routes over the test fleet at `full`, encodings fresh for `fresh_for`,
    /// and more routes from `more`: the server's address and its encodings.
    fn server_of(
        fresh_for: Duration,
        limits: HttpLimits,
        more: impl FnOnce(Router) -> Router,
    ) -> (SocketAddr, Arc<Snapshots>) {
        let registries = Registries::new(shared(PerTarget::Full, "web1"), PerTarget::Full);
        let snapshots = Arc::new(Snapshots::new(registries, fresh_for));
        let router = more(endpoints(snapshots.clone(), limits.connections));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        (serve_routes(listener, router, limits).unwrap(), snapshots)
    }

    /// Sends `req` (none if empty) and reads the answer to its end: how long that took, and
    /// the answer.
    fn exchange(addr: SocketAddr, req: &str) -> (Duration, String) {
        let t = Instant::now();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut r = vec![];
        c.read_to_end(&mut r).unwrap();
        (t.elapsed(), String::from_utf8(r).unwrap())
    }

    /// A whole scrape: 200, as long as it says, every family there.
    fn assert_scrape(r: &str) {
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{head}"
        );
        let p = parse(body);
        assert!(problems(&p, Exposition::Classic).is_empty(), "{body}");
        for f in families_of(PerTarget::Full) {
            assert!(family_of(&p, f, Exposition::Classic).is_some(), "{f}");
        }
    }

    const SCRAPE: &str = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn slow_clients_are_cut_off_and_do_not_delay_scrapes() {
        // 32 MiB at 16 MB/s, more than the loopback's buffers hold: written within 2.6 s, or
        // the connection is closed.
        const BIG: usize = 32 << 20;
        let limits = HttpLimits {
            write_grace: Duration::from_millis(500),
            write_rate: 16e6,
            ..HttpLimits::DEFAULT
        };
        let big = Arc::new(vec![b'#'; BIG]);
        let (addr, _) = server_of(FRESH_FOR, limits, |r| {
            r.get("/big", 4, move |_| Response {
                status: "200 OK",
                content_type: "application/octet-stream",
                headers: vec![],
                body: Body::Shared(big.clone()),
            })
        });
        // Slow lorises: a byte of a request head every 0.5 s and every 0.9 s (a timeout per
        // read would never fire). Each is answered 408 and closed at 1 s.
        let loris = |gap: Duration| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let mut c = TcpStream::connect(addr).unwrap();
                let mut r = c.try_clone().unwrap();
                let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let d = done.clone();
                let writer = std::thread::spawn(move || {
                    for b in SCRAPE.bytes() {
                        if d.load(Ordering::Acquire) || c.write_all(&[b]).is_err() {
                            break;
                        }
                        std::thread::sleep(gap);
                    }
                });
                r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut answer = String::new();
                let _ = r.read_to_string(&mut answer);
                let cut = t.elapsed();
                done.store(true, Ordering::Release);
                writer.join().unwrap();
                (cut, answer)
            })
        };
        let lorises = [
            loris(Duration::from_millis(500)),
            loris(Duration::from_millis(900)),
        ];
        // One that asks for 32 MiB and never reads.
        let sink = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_secs(4));
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (mut got, mut buf) = (0usize, vec![0u8; 1 << 16]);
            loop {
                match c.read(&mut buf) {
                    Ok(0) => return (got, true),
                    Ok(k) => got += k,
                    // Closed under unsent data: reset.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        return (got, true);
                    }
                    Err(_) => return (got, false),
                }
            }
        });
        // Meanwhile, a scrape every 250 ms, each whole in well under a second.
        let mut slowest = Duration::ZERO;
        for _ in 0..16 {
            let (took, r) = exchange(addr, SCRAPE);
            assert_scrape(&r);
            slowest = slowest.max(took);
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(slowest < Duration::from_millis(500), "{slowest:?}");
        let mut cuts = vec![];
        for l in lorises {
            let (cut, answer) = l.join().unwrap();
            cuts.push(cut);
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(
                cut >= Duration::from_millis(950) && cut < Duration::from_millis(1500),
                "{cut:?}"
            );
        }
        let (got, closed) = sink.join().unwrap();
        eprintln!(
            "slowest scrape {slowest:?}; lorises cut at {cuts:?}; {got} bytes of {BIG} to the \
             client that did not read"
        );
        assert!(closed, "the sink's connection was not closed");
        assert!(
            got < BIG,
            "{got} bytes of {BIG} to a client that did not read"
        );
    }

    #[test]
    fn connections_beyond_the_cap_are_answered_503_at_once() {
        let limits = HttpLimits {
            connections: 4,
            ..HttpLimits::DEFAULT
        };
        let (addr, _) = server_of(FRESH_FOR, limits, |r| r);
        // Four connections that send nothing hold the four places (for 1 s at most).
        let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        for req in ["", SCRAPE] {
            let (took, r) = exchange(addr, req);
            assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
            assert!(r.contains("\r\nRetry-After: 1\r\n"), "{r}");
            assert!(took < Duration::from_millis(300), "{took:?}");
        }
        // Their places come free as they close.
        drop(idle);
        std::thread::sleep(Duration::from_millis(200));
        assert_scrape(&exchange(addr, SCRAPE).1);
    }

    #[test]
    fn concurrent_scrapes_share_one_encoding() {
        let (addr, snapshots) = server_of(Duration::from_secs(60), HttpLimits::DEFAULT, |r| r);
        let encodings = || snapshots.encodings.load(Ordering::Relaxed);
        let together = |req: &'static str, n: usize| {
            let start = Arc::new(std::sync::Barrier::new(n));
            let scrapers: Vec<_> = (0..n)
                .map(|_| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        exchange(addr, req).1
                    })
                })
                .collect();
            let answers: Vec<String> = scrapers.into_iter().map(|s| s.join().unwrap()).collect();
            answers
        };
        let answers = together(SCRAPE, 16);
        assert_scrape(&answers[0]);
        assert!(answers.iter().all(|a| *a == answers[0]));
        assert_eq!(encodings(), 1);
        // The other format is encoded once too.
        let om = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n";
        let answers = together(om, 8);
        assert!(answers[0].ends_with("# EOF\n"), "{}", answers[0]);
        assert!(answers.iter().all(|a| *a == answers[0]));
        assert_eq!(encodings(), 2);
        // HEAD answers from the same encoding.
        let r = exchange(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").1;
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert_eq!(encodings(), 2);
    }

    #[test]
    fn a_stale_scrape_is_encoded_again_unless_slow_clients_hold_too_many() {
        let registries = Registries::new(shared(PerTarget::Basic, "web1"), PerTarget::Basic);
        let snapshots = Snapshots::new(registries, Duration::ZERO);
        let encodings = || snapshots.encodings.load(Ordering::Relaxed) as usize;
        let first = snapshots.get(Exposition::Classic).unwrap();
        let again = snapshots.get(Exposition::Classic).unwrap();
        assert_eq!(encodings(), 2);
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(first, again);
        // Connections still sending every encoding: the latest is served again once
        // MAX_OLDER of the earlier ones are alive.
        let mut held = vec![first, again];
        for _ in 0..10 {
            held.push(snapshots.get(Exposition::Classic).unwrap());
        }
        assert_eq!(encodings(), MAX_OLDER + 1);
        held.drain(..held.len() - 1);
        let _fresh = snapshots.get(Exposition::Classic).unwrap();
        assert_eq!(encodings(), MAX_OLDER + 2);
    }

    #[test]
    fn a_route_that_waits_does_not_hold_up_scrapes() {
        let (addr, _) = server_of(FRESH_FOR, HttpLimits::DEFAULT, |r| {
            r.get("/probe", 2, |_| {
                std::thread::sleep(Duration::from_secs(2));
                Response::text("200 OK", "probed\n")
            })
        });
        let probes: Vec<_> = (0..2)
            .map(|_| std::thread::spawn(move || exchange(addr, "GET /probe HTTP/1.1\r\n\r\n")))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // A third finds the route full, at once.
        let (took, r) = exchange(addr, "GET /probe HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(took < Duration::from_millis(300), "{took:?}");
        // Scrapes go on meanwhile.
        for _ in 0..5 {
            let (took, r) = exchange(addr, SCRAPE);
            assert_scrape(&r);
            assert!(took < Duration::from_millis(300), "{took:?}");
        }
        for p in probes {
            let (took, r) = p.join().unwrap();
            assert!(
                r.starts_with("HTTP/1.1 200") && r.ends_with("probed\n"),
                "{r}"
            );
            assert!(took >= Duration::from_secs(2), "{took:?}");
        }
    }
}
