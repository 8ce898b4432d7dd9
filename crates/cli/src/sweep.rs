//! `asdic sweep`: continuous rounds over a targets file (NetXMS form), rolling per-target
//! statistics, alarm state changes, Prometheus metrics and Parquet files rotated by time.
//!
//! Threads: per family a sender (a [`Sweep`] source spreading each round evenly) and a
//! receiver, as in `ping`; this thread folds events into the [`Fleet`] (shared with the
//! metrics endpoint behind one mutex, taken per batch of events, never per packet), prints
//! state changes, hands rows to a writer thread, watches the targets file and SIGHUP.

use core::net::IpAddr;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use asdic_analysis::fleet::{Fleet, FleetTarget, Hysteresis, Limits, Transition};
use asdic_analysis::meta::millis;
use asdic_analysis::{PartedSink, RunMeta, RunMode, Sink, SweepRow, counted};
use asdic_core::event::Event;
use asdic_core::fleet::{FleetLine, parse_fleet};
use asdic_core::sweep::{Item, Plan, Sweep};
use asdic_fs::{Dest, Dir};
use asdic_receiver::rx::RxShared;
use asdic_wire::Family;
use asdic_wire::payload;
use asdic_wire::template::{self, MAX_PAYLOAD};
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::args::{IdChoice, SweepArgs, check_rate};
use crate::closing::end_metadata;
use crate::dataset::partition_char;
use crate::drive::{End, Lane, Lanes, Mode, Run, drive};
use crate::engines::{EngineOptions, RunHints};
use crate::inputs::{Ids, table_for, work};
use crate::metrics::{self, PerTarget, Registries, Shared};
use crate::{Fail, usage};
use asdic_runtime::{Pipeline, kernel_drops};

/// Most targets a sweep lists.
const MAX_TARGETS: usize = 1 << 24;
/// Probes per second allowed without --rate.
const DEFAULT_RATE_CAP: f64 = 1000.0;
/// XDP engine: UMEM frames for receiving. A sweep receives for as long as it runs, beside
/// scrapes and file writes: 16,384 frames buffer 164 ms of replies at 100,000/s against a
/// stalled receiver, where the default 4,096 lost 0.5 % of them with the bench's scrapes
/// (bench/sweep-scale.sh, bench/RESULTS.md).
const SWEEP_RX_FRAMES: u32 = 16_384;
/// Rows handed to the writer at once.
const ROWS_PER_BATCH: usize = 8192;

/// The run's packet sizes (template classes) and how lines map to them.
#[derive(Debug, Clone)]
struct Sizes {
    /// ICMP payload bytes per class.
    sizes: Vec<usize>,
    /// Whether new sizes may be added (only before the run starts).
    open: bool,
}

impl Sizes {
    fn class_of(&mut self, size: usize) -> Option<u8> {
        if let Some(i) = self.sizes.iter().position(|&s| s == size) {
            return Some(i as u8);
        }
        if !self.open || self.sizes.len() >= 256 {
            return None;
        }
        self.sizes.push(size);
        Some((self.sizes.len() - 1) as u8)
    }
}

/// The result of reading the targets file.
#[derive(Debug, Default)]
struct Resolved {
    targets: Vec<FleetTarget>,
    /// Lines whose psize was below the minimum and was raised.
    raised: usize,
    /// Lines skipped because their size is new since the start (sizes are fixed per run).
    new_sizes: Vec<usize>,
    /// Repeated (address, size) pairs, as (line, first line).
    repeats: Vec<(usize, usize)>,
}

/// ICMP payload bytes for a NetXMS `psize` (IP header included), and whether it was raised
/// to asdic's minimum.
fn payload_for(psize: u32, family: Family) -> (usize, bool) {
    match template::payload_of_packet(family, psize as usize) {
        Some(want) if want >= payload::LEN => (want, false),
        _ => (payload::LEN, true),
    }
}

fn resolve(
    lines: &[FleetLine],
    default_size: usize,
    sizes: &mut Sizes,
) -> Result<Resolved, String> {
    let mut r = Resolved::default();
    let mut seen: HashMap<(IpAddr, usize), usize> = HashMap::new();
    let total: u128 = lines.iter().map(|l| l.spec.count()).sum();
    if total > MAX_TARGETS as u128 {
        return Err(format!(
            "{total} targets: at most {MAX_TARGETS} can be swept (use longer prefixes)"
        ));
    }
    for l in lines {
        let family = Family::of(l.spec.base);
        let (size, psize) = match l.psize {
            Some(p) => {
                let (s, raised) = payload_for(p, family);
                r.raised += usize::from(raised);
                (s, p)
            }
            None => (
                default_size,
                u32::try_from(template::ip_packet_len(family, default_size)).unwrap_or(u32::MAX),
            ),
        };
        if size > MAX_PAYLOAD {
            return Err(format!(
                "line {}: packet size {} is above the largest IPv4 datagram",
                l.line,
                l.psize.unwrap_or(0)
            ));
        }
        let Some(class) = sizes.class_of(size) else {
            if !r.new_sizes.contains(&size) {
                r.new_sizes.push(size);
            }
            continue;
        };
        let name: Option<Arc<str>> = l.name.as_deref().map(Arc::from);
        let group: Option<Arc<str>> = l.group.as_deref().map(Arc::from);
        let limits = Limits {
            loss_pct: l.loss_pct,
            rtt_us: l.rtt_ms.map(|ms| ms * 1000.0),
        };
        for i in 0..l.spec.count() {
            let addr = l.spec.nth(i);
            if let Some(&first) = seen.get(&(addr, size)) {
                r.repeats.push((l.line, first));
                continue;
            }
            seen.insert((addr, size), l.line);
            r.targets.push(FleetTarget {
                addr,
                name: name.clone(),
                size,
                psize,
                class,
                limits,
                group: group.clone(),
            });
        }
    }
    Ok(r)
}

fn read_file(path: &Path) -> Result<Vec<FleetLine>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_fleet(
        std::io::BufReader::with_capacity(1 << 16, f),
        MAX_TARGETS as u128,
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// What identifies the file's content for change detection.
fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn validate(a: &SweepArgs) -> Result<(), Fail> {
    if a.size < payload::LEN || a.size > MAX_PAYLOAD {
        return Err(usage(format!(
            "--size {}: must be {}..={MAX_PAYLOAD} bytes of ICMP payload",
            a.size,
            payload::LEN
        )));
    }
    if a.every < Duration::from_millis(10) {
        return Err(usage("--interval: at least 10ms"));
    }
    if a.timeout.is_zero() {
        return Err(usage("--timeout: must be positive"));
    }
    if a.window < a.every {
        return Err(usage(format!(
            "--window {:?} is shorter than --interval {:?}: it would hold no round",
            a.window, a.every
        )));
    }
    if a.window > Duration::from_secs(7 * 86_400) {
        return Err(usage("--window: at most 7 days"));
    }
    if a.alarm_min_probes == 0 {
        return Err(usage("--alarm-min-probes 0: must be at least 1"));
    }
    if !(a.alarm_clear > 0.0 && a.alarm_clear <= 100.0) {
        return Err(usage(format!(
            "--alarm-clear {}: a percentage of the limit, above 0 and at most 100",
            a.alarm_clear
        )));
    }
    if let Some(p) = a.alarm_loss
        && !(0.0..=100.0).contains(&p)
    {
        return Err(usage(format!("--alarm-loss {p}: a percentage, 0..=100")));
    }
    if let Some(ms) = a.alarm_rtt
        && !(ms.is_finite() && ms >= 0.0)
    {
        return Err(usage(format!("--alarm-rtt {ms}: milliseconds, 0 or more")));
    }
    if a.rotate < Duration::from_secs(1) {
        return Err(usage("--rotate: at least 1s"));
    }
    if a.dataset.is_some() && 3600 % a.rotate.as_secs().max(1) != 0 {
        return Err(usage(format!(
            "--rotate {:?} with --dataset: periods must divide an hour (the dataset's \
             partitions are hours)",
            a.rotate
        )));
    }
    if a.rounds == Some(0) {
        return Err(usage(
            "--rounds 0: at least 1 (or leave it out to run until stopped)",
        ));
    }
    if a.metrics_histograms {
        return Err(usage(
            "--metrics-histograms is retired: the per-target RTT histogram is part of \
             --metrics-per-target full (the metric names changed too; see the README's \
             \"asdic sweep\" metrics)",
        ));
    }
    if !a.metrics_linger.is_zero() && a.metrics_listen.is_none() {
        return Err(usage(
            "--metrics-linger: there are no metrics without --metrics-listen",
        ));
    }
    a.io.validate().map_err(usage)?;
    check_rate(a.rate).map_err(usage)
}

/// Messages to the writer thread; each names its period (start, Unix seconds).
enum ToWriter {
    /// Rows for the period's file.
    Rows(u64, Vec<SweepRow>),
    /// The period (or the run) ended: these last rows, then close its file with this
    /// metadata (`asdic.complete`, `asdic.interrupted`, the signal).
    Close(u64, Vec<SweepRow>, Box<RunMeta>),
    /// These rows, then finish the open part of the period's file (--sync-every).
    Sync(u64, Vec<SweepRow>),
}

/// The Parquet writer: one file per period in `dir`, named by the period's start (UTC).
struct Writer {
    /// The output directory, or the dataset's root, open.
    dir: Dir,
    /// With --dataset: this agent's name; periods go to its hour partitions.
    agent: Option<String>,
    meta: RunMeta,
    /// The receivers' counters: each file records the kernel's drops so far when it closes.
    receivers: Vec<Arc<RxShared>>,
    current: Option<(u64, PartedSink<SweepRow>)>,
    rotate: Duration,
    sync_every: Duration,
    written: Vec<PathBuf>,
}

impl Writer {
    /// The file of the period starting at `start` (closing another period's file first).
    fn open(&mut self, start: u64) -> anyhow::Result<&mut PartedSink<SweepRow>> {
        if self.current.as_ref().is_some_and(|(p, _)| *p != start) {
            self.close(ended(false, None))?;
        }
        if self.current.is_none()
            && let Some(agent) = &self.agent
        {
            let t = asdic_analysis::clock::Utc::from_unix(start);
            let mut dir = self.dir.clone();
            for level in [
                asdic_analysis::version_level(),
                format!("agent={agent}"),
                format!("date={:04}-{:02}-{:02}", t.year, t.month, t.day),
                format!("hour={:02}", t.hour),
            ] {
                dir = dir
                    .subdir(level.as_ref(), true)
                    .with_context(|| format!("--dataset {}", self.dir.path().display()))?;
            }
            let shown = dir.path().to_path_buf();
            let meta = RunMeta {
                period_start_unix_s: Some(start),
                period_s: Some(self.rotate.as_secs().max(1)),
                ..self.meta.clone()
            };
            // Each period of each run names its parts: a restarted agent, or several
            // periods an hour, never meet.
            let name = format!(
                "{:02}{:02}{:02}-{}",
                t.hour,
                t.minute,
                t.second,
                self.meta.session.as_deref().unwrap_or("run")
            );
            let sink =
                PartedSink::in_dataset(dir, Some(&name), meta.to_pairs(), 65_536, self.sync_every)
                    .with_context(|| format!("--dataset {}", shown.display()))?;
            self.current = Some((start, sink));
        }
        if self.current.is_none() {
            let period = self.rotate.as_secs().max(1);
            let base = format!("sweep-{}", utc_stamp(start));
            let meta = RunMeta {
                period_start_unix_s: Some(start),
                period_s: Some(period),
                ..self.meta.clone()
            };
            // The period's file, or the first `-N` after it that neither a file nor an
            // earlier run's parts hold: a sweep never replaces a file (the one exception to
            // --force's rule: its names are its own to number).
            let mut k = 0;
            let sink = loop {
                let name = match k {
                    0 => format!("{base}.parquet"),
                    k => format!("{base}-{k}.parquet"),
                };
                k += 1;
                let taken = |e: &asdic_fs::Error| matches!(e, asdic_fs::Error::Exists { .. });
                let dest = match Dest::in_dir(&self.dir, name.as_ref(), false) {
                    Err(e) if taken(&e) && k < 10_000 => continue,
                    r => {
                        r.with_context(|| format!("creating {}", self.dir.join(&name).display()))?
                    }
                };
                match PartedSink::create(&dest, meta.to_pairs(), 65_536, self.sync_every) {
                    Err(asdic_analysis::Error::File { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists && k < 10_000 => {}
                    r => {
                        break r.with_context(|| format!("creating {}", dest.path().display()))?;
                    }
                }
            };
            self.current = Some((start, sink));
        }
        // Just set above when it was empty.
        self.current
            .as_mut()
            .map(|(_, s)| s)
            .context("no output file")
    }

    fn write(&mut self, period: u64, rows: &[SweepRow]) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.open(period)?
            .write_rows(rows)
            .context("writing sweep rows")
    }

    /// Closes the open file, if any, adding `ending` to its metadata.
    fn close(&mut self, ending: RunMeta) -> anyhow::Result<()> {
        if let Some((_, sink)) = self.current.take() {
            let path = sink.out().to_path_buf();
            // When the file's period (or the run) ended, a report's duration, and the kernel's
            // drops so far.
            let kernel = RxShared::kernel_drops_of(self.receivers.iter().map(|r| r.as_ref()));
            // A dataset's parts are the results, durable now; a file's are merged into it.
            let file = !sink.is_dataset();
            let complete = ending.complete.unwrap_or(false);
            sink.finish_run(end_metadata(&kernel).and(ending).to_pairs(), complete)
                .with_context(|| format!("writing {}", path.display()))?;
            if file {
                self.written.push(path);
            }
        }
        Ok(())
    }

    /// Finishes the open part of the current file, if any.
    fn sync(&mut self) -> anyhow::Result<()> {
        if let Some((_, sink)) = &mut self.current {
            sink.roll()
                .with_context(|| format!("writing {}", sink.dir().display()))?;
        }
        Ok(())
    }

    /// Writes what comes through `rx`; emptied row vectors go back through `back`, so the
    /// steady state allocates no row buffers.
    fn run(
        mut self,
        rx: Receiver<ToWriter>,
        back: Sender<Vec<SweepRow>>,
    ) -> anyhow::Result<Vec<PathBuf>> {
        for msg in rx {
            match msg {
                ToWriter::Rows(period, mut rows) => {
                    self.write(period, &rows)?;
                    rows.clear();
                    let _ = back.try_send(rows);
                }
                ToWriter::Close(period, rows, ending) => {
                    self.write(period, &rows)?;
                    self.close(*ending)?;
                }
                ToWriter::Sync(period, mut rows) => {
                    self.write(period, &rows)?;
                    self.sync()?;
                    rows.clear();
                    let _ = back.try_send(rows);
                }
            }
        }
        // The run's side hung up without closing the file: it did not end as planned.
        self.close(RunMeta {
            complete: Some(false),
            ..RunMeta::default()
        })?;
        Ok(self.written)
    }
}

/// What a sweep file records of how it ended: `complete` unless a signal stopped the run
/// while it was open (then `interrupted`, and by which signal).
fn ended(interrupted: bool, signal: Option<String>) -> RunMeta {
    RunMeta {
        interrupted: Some(interrupted),
        complete: Some(!interrupted),
        signal,
        ..RunMeta::default()
    }
}

/// `YYYYmmddTHHMMSSZ` for Unix seconds (proleptic Gregorian, UTC).
fn utc_stamp(secs: u64) -> String {
    let t = asdic_analysis::clock::Utc::from_unix(secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The items of `family` in list order.
fn items_of(targets: &[FleetTarget], cookies: &[u32], family: Family) -> Vec<Item> {
    targets
        .iter()
        .zip(cookies)
        .filter(|(t, _)| Family::of(t.addr) == family)
        .map(|(t, &cookie)| Item {
            cookie,
            target: t.addr,
            class: t.class,
        })
        .collect()
}

fn label(name: Option<&str>, addr: IpAddr) -> String {
    match name {
        Some(n) => format!("{n} ({addr})"),
        None => addr.to_string(),
    }
}

fn transition_line(t: &Transition) -> String {
    format!(
        "asdic: {} {} size {}: {}",
        if t.alarm { "ALARM" } else { "OK" },
        label(t.target.name.as_deref(), t.target.addr),
        t.target.size,
        t.reason
    )
}

/// The probes per second `n` targets every `--interval` need, and the cap they must fit under
/// (`--rate`, or the default cap without it).
fn rate_needed(a: &SweepArgs, n: usize) -> Result<(f64, f64), Fail> {
    let needed = n as f64 / a.every.as_secs_f64();
    let cap = a.rate.unwrap_or(DEFAULT_RATE_CAP);
    if needed > cap {
        return Err(usage(match a.rate {
            Some(r) => format!(
                "{n} targets every {:?} need {needed:.0} probes/s, above --rate {r}: raise --rate \
                 or --interval",
                a.every
            ),
            None => format!(
                "{n} targets every {:?} need {needed:.0} probes/s: give --rate {:.0} (or more) \
                 to allow it, or raise --interval (without --rate a sweep sends at most \
                 {DEFAULT_RATE_CAP:.0}/s)",
                a.every,
                needed.ceil()
            ),
        }));
    }
    Ok((needed, cap))
}

/// Runs `asdic sweep`.
pub fn run(a: SweepArgs) -> Result<ExitCode, Fail> {
    validate(&a)?;
    if a.output.as_ref().is_some_and(|o| o.as_os_str() == "-") {
        return Err(usage(
            "-o -: a sweep writes a directory of rotated files, not a stream: give -o DIR \
             (live numbers are at --metrics-listen)",
        ));
    }
    let lines = read_file(&a.file).map_err(usage)?;
    let mut sizes = Sizes {
        sizes: vec![a.size],
        open: true,
    };
    let first = resolve(&lines, a.size, &mut sizes).map_err(usage)?;
    sizes.open = false;
    if first.targets.is_empty() {
        return Err(usage(format!(
            "{}: no targets (lines are ip[:name[:psize]] or CIDR prefixes)",
            a.file.display()
        )));
    }
    report_resolved(&a.file, &first);
    let n = first.targets.len();
    let (needed, cap) = rate_needed(&a, n)?;

    let defaults = Limits {
        loss_pct: a.alarm_loss,
        rtt_us: a.alarm_rtt.map(|ms| ms * 1000.0),
    };
    let hysteresis = Hysteresis {
        min_probes: a.alarm_min_probes,
        clear: a.alarm_clear / 100.0,
    };
    let window_ms = u32::try_from(a.window.as_millis()).unwrap_or(u32::MAX);
    // Per-target histograms only where they are exported (8 bytes a bucket per target).
    let mut fleet = Fleet::new(
        window_ms,
        a.every.as_millis() as u64,
        defaults,
        a.metrics_listen.is_some() && a.metrics_per_target == PerTarget::Full,
    );
    fleet.set_hysteresis(hysteresis);
    let (cookies, _) = fleet.apply(&first.targets);

    let ids = crate::inputs::ids(IdChoice::Random);
    let size = sizes.sizes.iter().copied().max().unwrap_or(a.size);
    let engine = a.io.options(
        a.ttl,
        a.interface.clone(),
        size,
        Some((SWEEP_RX_FRAMES, asdic_engine::xdp::DEFAULT_TX_FRAMES)),
    );
    let (lanes, plans) = sweep_lanes(&a, &first.targets, &cookies, &engine, ids, cap);
    let lanes = Lanes {
        engine,
        lanes,
        sizes: sizes.sizes.clone(),
        cores: a.io.cores.clone(),
        verbose: a.io.verbose,
        wait: a.timeout,
        poll: Duration::from_millis(200),
        progress: false,
        rate_goal: None,
        session: ids.session,
        // A sweep runs until it is stopped: a signal is its normal end (exit 0).
        signal_exits: false,
    };
    let (n4, n6) = count_families(&first.targets);
    let start_line = format!(
        "asdic: sweeping {} ({n4} IPv4, {n6} IPv6) every {:?} ({needed:.0} probes/s, \
         cap {cap}/s), timeout {:?}, window {:?}, sizes {:?} bytes{}",
        counted(n as u64, "target", "targets"),
        a.every,
        a.timeout,
        a.window,
        sizes.sizes,
        match a.rounds {
            Some(r) => format!(", {}", counted(r, "round", "rounds")),
            None => ", until interrupted".into(),
        }
    );
    let now = Instant::now();
    let mut mode = Sweeping {
        file_stamp: stamp_of(&a.file),
        period: period_of(SystemTime::now(), a.rotate),
        a,
        fleet: Some(fleet),
        shared: None,
        plans,
        sizes,
        start_line,
        metrics_listener: None,
        to_writer: None,
        writer: None,
        rows: Vec::with_capacity(ROWS_PER_BATCH),
        hup: Arc::new(AtomicBool::new(false)),
        last_check: now,
        last_sync: now,
        last_status: now,
    };
    drive(lanes, &mut mode)
}

/// One lane per family with targets: its share of the rate cap, its table (sized for the
/// cap, not today's list: a reload may grow the list up to it) and its plan.
fn sweep_lanes(
    a: &SweepArgs,
    targets: &[FleetTarget],
    cookies: &[u32],
    engine: &EngineOptions,
    ids: Ids,
    cap: f64,
) -> (Vec<Lane>, Vec<(Family, Arc<Plan>)>) {
    let n = targets.len();
    let mut lanes = vec![];
    let mut plans = vec![];
    for family in [Family::V4, Family::V6] {
        let items = items_of(targets, cookies, family);
        let Some(toward) = items.first().map(|i| i.target) else {
            continue;
        };
        let share = cap * items.len() as f64 / n as f64;
        let plan = Plan::new(items);
        let source = Box::new(Sweep::new(plan.clone(), a.every, a.rounds));
        let (slots, table_line) = table_for(ids, share, a.timeout, u64::MAX, "");
        lanes.push(Lane {
            slots,
            hints: RunHints {
                toward,
                ids,
                probes: u64::MAX,
                tracked: true,
            },
            work: work(share, engine, ids, a.timeout, 0, 4096, source),
            table_line: Some(table_line),
        });
        plans.push((family, plan));
    }
    (lanes, plans)
}

fn count_families(targets: &[FleetTarget]) -> (usize, usize) {
    let v4 = targets.iter().filter(|t| t.addr.is_ipv4()).count();
    (v4, targets.len() - v4)
}

fn report_resolved(file: &Path, r: &Resolved) {
    if r.raised > 0 {
        say!(
            "asdic: {}: {} lines ask for packets below asdic's minimum ({} bytes of payload: \
             {} bytes in all over IPv4, {} over IPv6); raised to it",
            file.display(),
            r.raised,
            payload::LEN,
            template::ip_packet_len(Family::V4, payload::LEN),
            template::ip_packet_len(Family::V6, payload::LEN)
        );
    }
    for &(line, first) in r.repeats.iter().take(5) {
        say!(
            "asdic: {}: line {line} repeats a target of line {first} (same address and size): \
             probed once",
            file.display()
        );
    }
    if r.repeats.len() > 5 {
        say!("asdic: … and {} more repeats", r.repeats.len() - 5);
    }
    if !r.new_sizes.is_empty() {
        say!(
            "asdic: {}: targets with packet sizes {:?} skipped: the sizes of a sweep are fixed \
             when it starts (restart to add them)",
            file.display(),
            r.new_sizes
        );
    }
}

/// The clock-aligned period holding `t`: its start, Unix seconds.
fn period_of(t: SystemTime, rotate: Duration) -> u64 {
    let s = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let p = rotate.as_secs().max(1);
    s - s % p
}

/// `sweep`'s part of a run: the fleet's statistics (shared with the metrics endpoint),
/// alarm lines, rows to the writer thread, reloads of the targets file.
struct Sweeping {
    a: SweepArgs,
    /// The fleet until `start` shares it.
    fleet: Option<Fleet>,
    shared: Option<Arc<Shared>>,
    plans: Vec<(Family, Arc<Plan>)>,
    sizes: Sizes,
    start_line: String,
    /// Bound in `prepare`, while the capabilities are held (a port below 1024 needs one).
    metrics_listener: Option<std::net::TcpListener>,
    /// To the writer thread, and the row vectors it has emptied.
    to_writer: Option<(Sender<ToWriter>, Receiver<Vec<SweepRow>>)>,
    writer: Option<std::thread::JoinHandle<anyhow::Result<Vec<PathBuf>>>>,
    rows: Vec<SweepRow>,
    file_stamp: Option<(SystemTime, u64)>,
    period: u64,
    hup: Arc<AtomicBool>,
    last_check: Instant,
    last_sync: Instant,
    last_status: Instant,
}

impl Mode for Sweeping {
    fn prepare(&mut self, _run: &Run) -> Result<(), Fail> {
        self.metrics_listener = self
            .a
            .metrics_listen
            .map(|addr| {
                std::net::TcpListener::bind(addr)
                    .map_err(|e| usage(format!("--metrics-listen {addr}: {e}")))
            })
            .transpose()?;
        Ok(())
    }

    fn start(&mut self, run: &Run) -> Result<(), Fail> {
        // The output directory opens (created where missing) without the capabilities,
        // before anything is sent.
        let out_dir = match (&self.a.output, &self.a.dataset) {
            (Some(d), _) => Some(("--output", d)),
            (None, Some(d)) => Some(("--dataset", d)),
            (None, None) => None,
        }
        .map(|(flag, d)| {
            let fail = |e| crate::output::open_fail(flag, e, run.dropped_dac);
            let dir = Dir::create_all(d).map_err(fail)?;
            // Its files come at the first round: whether they can be created is known now,
            // before any probe (a temporary of our own, removed when dropped).
            asdic_fs::TempFile::new(&dir, "sweep.parquet".as_ref()).map_err(fail)?;
            Ok::<Dir, Fail>(dir)
        })
        .transpose()?;
        say!("{}", self.start_line);
        let shared = Arc::new(Shared {
            fleet: Mutex::new(self.fleet.take().context("sweep started twice")?),
            plans: self.plans.iter().map(|(_, p)| p.clone()).collect(),
            reloads: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
            receivers: run.pipelines.iter().map(|p| p.receiver.clone()).collect(),
        });
        if let Some(listener) = self.metrics_listener.take() {
            let registries = Registries::new(shared.clone(), self.a.metrics_per_target);
            let bound =
                metrics::serve(listener, registries).context("starting the metrics server")?;
            let level = self.a.metrics_per_target;
            say!(
                "asdic: metrics at http://{bound}/metrics (--metrics-per-target {}: {} series \
                 per answering target, and the fleet's and the groups')",
                level.name(),
                level.series()
            );
        }
        self.shared = Some(shared);
        if let Some(dir) = out_dir {
            let agent = self
                .a
                .dataset
                .as_ref()
                .map(|_| self.a.agent.clone().unwrap_or_else(host_name));
            let w = Writer {
                agent,
                dir,
                meta: self.metadata(run),
                receivers: run.pipelines.iter().map(|p| p.receiver.clone()).collect(),
                current: None,
                rotate: self.a.rotate,
                sync_every: self.a.sync_every,
                written: vec![],
            };
            // 16 batches of 8,192 rows in flight at most: a slow disk holds the consumer back
            // rather than growing memory.
            let (tx, rx) = bounded::<ToWriter>(16);
            let (back_tx, back_rx) = bounded::<Vec<SweepRow>>(16);
            let h = std::thread::Builder::new()
                .name("asdic-writer".into())
                .spawn(move || w.run(rx, back_tx))?;
            self.to_writer = Some((tx, back_rx));
            self.writer = Some(h);
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, self.hup.clone())
            .context("installing the SIGHUP handler")?;
        Ok(())
    }

    fn on_events(&mut self, _run: &Run, batch: &mut [Event]) -> Result<(), Fail> {
        self.record(batch)
    }

    fn tick(&mut self, run: &Run) -> Result<(), Fail> {
        self.maybe_rotate()?;
        if self.last_sync.elapsed() >= self.a.sync_every {
            self.last_sync = Instant::now();
            self.sync()?;
        }
        if self.last_check.elapsed() >= Duration::from_secs(1) || self.hup.load(Ordering::Relaxed) {
            self.last_check = Instant::now();
            let by_signal = self.hup.swap(false, Ordering::Relaxed);
            self.maybe_reload(by_signal);
        }
        if !self.a.quiet
            && !self.a.status_every.is_zero()
            && self.last_status.elapsed() >= self.a.status_every
        {
            self.last_status = Instant::now();
            say!("{}", self.status_line(&run.pipelines, run.t0.elapsed()));
        }
        Ok(())
    }

    fn drained(&mut self, _run: &Run) -> Result<(), Fail> {
        self.flush_rows()
    }

    fn finish(&mut self, run: &Run, end: &End) -> Result<u8, Fail> {
        let shared = self.shared.take().context("sweep never started")?;
        // The last file ends with every target's window statistics.
        let now = asdic_engine::stamp_ns();
        let last_rows = shared
            .fleet
            .lock()
            .map(|mut f| f.window_rows(now))
            .unwrap_or_default();
        if let Some((tx, back)) = self.to_writer.take() {
            let signal = run.signal().map(crate::signals::name);
            let ending = ended(run.interrupted(), signal);
            let _ = tx.send(ToWriter::Close(self.period, last_rows, Box::new(ending)));
            drop((tx, back));
        }
        if let Some(h) = self.writer.take() {
            let files = h
                .join()
                .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
            for f in &files {
                say!("asdic: wrote {}", f.display());
            }
        }
        let fleet = shared
            .fleet
            .lock()
            .map_err(|_| anyhow::anyhow!("fleet lock poisoned"))?;
        let (mut probes, mut replies) = (0, 0);
        for (_, m) in fleet.members() {
            probes += m.counters.probes;
            replies += m.counters.replies;
        }
        say!(
            "asdic: {} targets, {probes} probes ended, {replies} replies, {} in alarm; dropped: \
             {}; {}",
            fleet.len(),
            fleet.in_alarm(),
            end.drops,
            end.kernel
        );
        run.say_grouped();
        drop(fleet);
        if self.a.metrics_listen.is_some() && !self.a.metrics_linger.is_zero() && !run.interrupted()
        {
            linger(self.a.metrics_linger)?;
        }
        Ok(0)
    }
}

/// `--metrics-linger`: the metrics server (its own thread, holding the final fleet) keeps
/// serving for `d`, or until SIGINT or SIGTERM.
fn linger(d: Duration) -> Result<(), Fail> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("installing the --metrics-linger signal handler")?;
    }
    say!("asdic: serving the final metrics for {d:?} (--metrics-linger; Ctrl-C ends it)");
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    Ok(())
}

impl Sweeping {
    /// What the fleet and the metrics endpoint share; set by `start`, before any event.
    fn shared(&self) -> Result<&Shared, Fail> {
        Ok(self.shared.as_deref().context("sweep never started")?)
    }

    fn record(&mut self, batch: &[asdic_core::Event]) -> Result<(), Fail> {
        let now = asdic_engine::stamp_ns();
        let mut changes = vec![];
        let shared = self.shared.clone().context("sweep never started")?;
        {
            let mut fleet = shared
                .fleet
                .lock()
                .map_err(|_| anyhow::anyhow!("fleet lock poisoned"))?;
            for ev in batch {
                if self.to_writer.is_some()
                    && let Some(row) = fleet.row(ev)
                {
                    self.rows.push(row);
                }
                if let Some(t) = fleet.record(ev, now) {
                    if self.to_writer.is_some() {
                        self.rows.push(t.row(now));
                    }
                    changes.push(t);
                }
            }
        }
        if !self.a.quiet {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for t in &changes {
                let _ = writeln!(out, "{}", transition_line(t));
            }
            let _ = out.flush();
        }
        if self.rows.len() >= ROWS_PER_BATCH {
            self.flush_rows()?;
        }
        Ok(())
    }

    /// The rows held so far, replaced by an emptied vector the writer sent back (or a new one).
    fn take_rows(&mut self) -> Vec<SweepRow> {
        let next = self
            .to_writer
            .as_ref()
            .and_then(|(_, r)| r.try_recv().ok())
            .unwrap_or_else(|| Vec::with_capacity(ROWS_PER_BATCH));
        std::mem::replace(&mut self.rows, next)
    }

    /// Hands `msg` to the writer thread, if there is one.
    fn send(&self, msg: ToWriter) -> Result<(), Fail> {
        if let Some((tx, _)) = &self.to_writer {
            tx.send(msg)
                .map_err(|_| anyhow::anyhow!("the Parquet writer stopped"))?;
        }
        Ok(())
    }

    fn flush_rows(&mut self) -> Result<(), Fail> {
        if self.to_writer.is_some() && !self.rows.is_empty() {
            let rows = self.take_rows();
            self.send(ToWriter::Rows(self.period, rows))?;
        }
        Ok(())
    }

    /// Sends the rows held so far and has the writer finish the open part of the file, so
    /// they survive a kill.
    fn sync(&mut self) -> Result<(), Fail> {
        if self.to_writer.is_some() {
            let rows = self.take_rows();
            self.send(ToWriter::Sync(self.period, rows))?;
        }
        Ok(())
    }

    /// At a period boundary: the period's last rows and the targets' window statistics go to
    /// its file, which is closed; the next rows open the next one.
    fn maybe_rotate(&mut self) -> Result<(), Fail> {
        if self.to_writer.is_none() {
            return Ok(());
        }
        let p = period_of(SystemTime::now(), self.a.rotate);
        if p == self.period {
            return Ok(());
        }
        let ended = std::mem::replace(&mut self.period, p);
        let now = asdic_engine::stamp_ns();
        let mut rows = std::mem::take(&mut self.rows);
        if let Ok(mut f) = self.shared()?.fleet.lock() {
            rows.extend(f.window_rows(now));
        }
        self.send(ToWriter::Close(
            ended,
            rows,
            Box::new(self::ended(false, None)),
        ))
    }

    /// Reloads the targets file if it changed (or on SIGHUP); a file that does not parse
    /// leaves the current list in place.
    fn maybe_reload(&mut self, by_signal: bool) {
        let stamp = stamp_of(&self.a.file);
        if !by_signal && stamp == self.file_stamp {
            return;
        }
        self.file_stamp = stamp;
        let why = if by_signal { "SIGHUP" } else { "file changed" };
        let r =
            read_file(&self.a.file).and_then(|lines| resolve(&lines, self.a.size, &mut self.sizes));
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                if let Ok(shared) = self.shared() {
                    shared.reload_errors.fetch_add(1, Ordering::Relaxed);
                }
                say!("asdic: reload ({why}) refused, keeping the current targets: {e}");
                return;
            }
        };
        report_resolved(&self.a.file, &r);
        let Some(Ok(mut fleet)) = self.shared().ok().map(|s| s.fleet.lock()) else {
            return;
        };
        let (cookies, applied) = fleet.apply(&r.targets);
        drop(fleet);
        let mut unprobed = 0;
        for family in [Family::V4, Family::V6] {
            let items = items_of(&r.targets, &cookies, family);
            match self.plans.iter().find(|(f, _)| *f == family) {
                Some((_, plan)) => plan.replace(items),
                None => unprobed += items.len(),
            }
        }
        if let Ok(shared) = self.shared() {
            shared.reloads.fetch_add(1, Ordering::Relaxed);
        }
        say!(
            "asdic: reloaded {} ({why}): {} targets, {} added, {} removed",
            self.a.file.display(),
            r.targets.len(),
            applied.added,
            applied.removed
        );
        if unprobed > 0 {
            say!(
                "asdic: {unprobed} targets of a family the sweep started without are not \
                 probed (restart to add that family)"
            );
        }
    }

    fn status_line(&self, pipelines: &[Pipeline], elapsed: Duration) -> String {
        let rounds = self
            .plans
            .iter()
            .map(|(_, p)| p.rounds.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let lag_ms = self
            .plans
            .iter()
            .map(|(_, p)| p.lag_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0) as f64
            / 1000.0;
        let sent: u64 = pipelines
            .iter()
            .map(|p| p.sender.sent.load(Ordering::Relaxed))
            .sum();
        let (targets, alarm, replied) = match self.shared().ok().map(|s| s.fleet.lock()) {
            Some(Ok(f)) => (f.len(), f.in_alarm(), f.answering(asdic_engine::stamp_ns())),
            _ => (0, 0, 0),
        };
        format!(
            "asdic: {:.0}s round {rounds}: {targets} targets, {replied} answering within the \
             window, {alarm} in alarm, {sent} probes sent, round lag {lag_ms:.1} ms, kernel \
             drops {}",
            elapsed.as_secs_f64(),
            kernel_drops(pipelines).lost()
        )
    }
}

impl Sweeping {
    /// Each file's Parquet metadata (the file adds its own period and end keys).
    fn metadata(&self, run: &Run) -> RunMeta {
        let a = &self.a;
        RunMeta {
            targets_file: Some(a.file.display().to_string()),
            every_ms: Some(millis(a.every)),
            window_ms: Some(millis(a.window)),
            timeout_ms: Some(millis(a.timeout)),
            ttl: Some(a.ttl),
            ..run.meta(RunMode::Sweep)
        }
    }
}

/// This host's name (its UTS namespace's: a Kubernetes pod on the host network has the
/// node's), as a partition value: characters other than letters, digits, '.', '-' and '_'
/// become '_'; "unknown" if it cannot be read.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| if partition_char(c) { c } else { '_' })
        .collect();
    match name.trim_start_matches(['.', '_']) {
        "" => "unknown".to_string(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_392_000 + 3661), "20261123T010101Z");
    }

    #[test]
    fn netxms_sizes_include_the_ip_header() {
        assert_eq!(payload_for(1000, Family::V4), (972, false));
        assert_eq!(payload_for(1000, Family::V6), (952, false));
        // NetXMS's default 46 bytes is below asdic's stamp: raised.
        assert_eq!(payload_for(46, Family::V4), (payload::LEN, true));
        assert_eq!(payload_for(60, Family::V4), (32, false));
    }

    #[test]
    fn resolve_expands_and_classes_sizes() {
        let lines = parse_fleet(
            "198.19.0.1:a\n198.19.0.1:a:1000\n198.19.0.0/30 loss=5 group=r1\n\
             [2001:db8:1::1]:b:1048\n"
                .as_bytes(),
            u128::MAX,
        )
        .unwrap();
        let mut sizes = Sizes {
            sizes: vec![56],
            open: true,
        };
        let r = resolve(&lines, 56, &mut sizes).unwrap();
        assert_eq!(sizes.sizes, [56, 972, 1000]);
        // 198.19.0.1 at 56 bytes repeats in the /30: probed once.
        assert_eq!(r.targets.len(), 1 + 1 + 3 + 1);
        assert_eq!(r.repeats, [(3, 1)]);
        let v6 = r.targets.last().unwrap();
        assert_eq!((v6.size, v6.class), (1000, 2));
        assert_eq!(r.targets[2].limits.loss_pct, Some(5.0));
        assert_eq!(r.targets[2].group.as_deref(), Some("r1"));
        assert_eq!(r.targets[0].group, None);
        // Closed: a new size is skipped and reported.
        sizes.open = false;
        let more = parse_fleet("198.19.0.9::500\n198.19.0.8\n".as_bytes(), u128::MAX).unwrap();
        let r = resolve(&more, 56, &mut sizes).unwrap();
        assert_eq!(r.targets.len(), 1);
        assert_eq!(r.new_sizes, [472]);
    }
}
