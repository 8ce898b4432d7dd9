//! `asdic sweep --metrics-listen`: the sweep's statistics as Prometheus metrics, encoded by
//! `prometheus-client` from a snapshot taken at each scrape and served over a minimal
//! HTTP/1.1 endpoint (`GET /metrics`).
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
//!   `target` (address), `name` (from the targets file, or the address), `size` (ICMP
//!   payload bytes: NetXMS pings one address at several sizes) and `group`.
//!
//! Both text formats are served, as the client's `Accept` header asks ([`Exposition`]):
//! OpenMetrics 1.0, which Prometheus asks for first, and the classic text format 0.0.4 for
//! anything else (`curl … | promtool check metrics`). They differ in how a counter family is
//! named (`x` with samples `x_total` in OpenMetrics, `x_total` in the classic format) and in
//! OpenMetrics's closing `# EOF`.
//!
//! A value that does not exist (no reply in the window, the latest probe lost) is left out,
//! never written as a number.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        let now = asdic_engine::now_ns();
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
                    size: m.target.size.to_string(),
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

/// Serves `registries` at `GET /metrics` on `listener` (bound by the caller while it still
/// holds its capabilities, so that root can listen on a port below 1024); returns its
/// address. The server thread lives as long as the process.
pub fn serve(listener: TcpListener, registries: Registries) -> std::io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("asdic-metrics".into())
        .spawn(move || {
            // A scrape of a large fleet is a burst of work (snapshot and encoding): it runs
            // at the lowest priority so that it never starves the sender or the receiver.
            if let Err(e) = asdic_engine::background_thread() {
                say!("asdic: metrics thread keeps normal priority: {e}");
            }
            for conn in listener.incoming() {
                match conn {
                    // A failed exchange is the client's problem; keep serving.
                    Ok(c) => {
                        let _ = handle(c, &registries);
                    }
                    // Out of descriptors or the like: back off instead of spinning.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
    Ok(bound)
}

/// Longest request head read.
const MAX_HEAD: usize = 8192;

fn handle(mut c: TcpStream, registries: &Registries) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let k = c.read(&mut buf)?;
        if k == 0 {
            break;
        }
        head.extend_from_slice(&buf[..k]);
    }
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
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if matches!(method, "GET" | "HEAD") && path == "/metrics" {
        let format = Exposition::negotiate(accept.as_deref());
        // Streamed as it is encoded (the body ends when the connection closes): a fleet of
        // 100,000 targets at --metrics-per-target full encodes to hundreds of MB, which are
        // never held in memory at once.
        write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nConnection: close\r\n\r\n",
            format.content_type()
        )?;
        if method == "GET" {
            let mut out = IoWriter {
                w: std::io::BufWriter::with_capacity(1 << 16, &mut c),
                error: None,
            };
            let encoded = registries.encode(&mut out, format);
            if let Some(e) = out.error.take() {
                return Err(e);
            }
            if encoded.is_err() {
                // The status line is gone already: end the body with a line that is not
                // valid in either format, so the scrape fails visibly.
                let _ = out.w.write_all(b"\nasdic: encoding failed\n");
            }
            out.w.flush()?;
        }
        return c.flush();
    }
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/") => ("200 OK", "asdic sweep: metrics at /metrics\n"),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found\n"),
        _ => ("405 Method Not Allowed", "GET /metrics\n"),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    c.write_all(out.as_bytes())?;
    if method != "HEAD" {
        c.write_all(body.as_bytes())?;
    }
    c.flush()
}

/// `fmt::Write` onto an `io::Write`, keeping the I/O error (`fmt::Error` carries none).
struct IoWriter<W: Write> {
    w: W,
    error: Option<std::io::Error>,
}

impl<W: Write> std::fmt::Write for IoWriter<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.w.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            std::fmt::Error
        })
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
        let now = asdic_engine::now_ns();
        let ev = |cookie, a: &str, outcome| Event {
            n: 0,
            cookie,
            target: a.parse().unwrap(),
            t_send_ns: now - 1_000_000,
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
        let l1 = r#"target="198.19.0.1",name="web \"1\"",size="56",group="web""#;
        let l2 = r#"target="198.19.0.2",name="198.19.0.2",size="56",group="web""#;
        let l3 = r#"target="198.19.0.3",name="db1",size="56",group="ungrouped""#;
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
    }
}
