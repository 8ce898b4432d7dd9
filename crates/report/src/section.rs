//! One report section per run mode: the summary, the RTT distribution, per-target and
//! per-prefix tables worst first, the ICMP error breakdown and per-target latency series.
//!
//! Each mode's files are read once to fold every row into bounded aggregates; sweeps and
//! traces are read a second time for the few targets that get a table row or a graph, to
//! collect their RTTs exactly.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use arrow_array::{Array, Float64Array, Int64Array, StringArray, UInt8Array, UInt64Array};

use asdic_analysis::meta::keys;
use asdic_analysis::scan::scan_col;
use asdic_analysis::schema::{Column, ping_col};
use asdic_analysis::stats::{loss_pct, nearest_rank};
use asdic_analysis::sweep::sweep_col;
use asdic_analysis::trace::HopKind;
use asdic_analysis::trace::hop_col;
use asdic_analysis::{RunMode, ScanOutcome, SweepEvent, unreachable_marker};

use crate::Options;
use crate::error::Result;
use crate::hist::LogHist;
use crate::input::{self, Batch, Input, opt};
use crate::text::{COMMAND_CHARS, Text};

/// The kind of run a file holds (its `asdic.mode` metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `asdic scan`: one row per probe event (hits only unless `--all-events`).
    Scan,
    /// `asdic sweep`: one row per probe result, state change and window.
    Sweep,
    /// `asdic ping`: one row of statistics per target.
    Ping,
    /// `asdic trace`: one row per (target, TTL) probe.
    Trace,
}

impl Mode {
    /// The mode named `s`.
    pub fn parse(s: &str) -> Option<Mode> {
        s.parse::<RunMode>().ok().map(Mode::from)
    }

    /// The subcommand's name.
    pub fn name(self) -> &'static str {
        RunMode::from(self).as_str()
    }
}

impl From<RunMode> for Mode {
    fn from(m: RunMode) -> Mode {
        match m {
            RunMode::Scan => Mode::Scan,
            RunMode::Sweep => Mode::Sweep,
            RunMode::Ping => Mode::Ping,
            RunMode::Trace => Mode::Trace,
        }
    }
}

impl From<Mode> for RunMode {
    fn from(m: Mode) -> RunMode {
        match m {
            Mode::Scan => RunMode::Scan,
            Mode::Sweep => RunMode::Sweep,
            Mode::Ping => RunMode::Ping,
            Mode::Trace => RunMode::Trace,
        }
    }
}

/// The numbers at the top of a section.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Targets probed; `None` when the files do not say (a scan of hits only, killed).
    pub targets: Option<u64>,
    /// Probes that ended (answered, errored, timed out or failed to send).
    pub probes: Option<u64>,
    /// Echo replies (for traces: answers of any hop).
    pub replies: u64,
    /// ICMP errors.
    pub errors: u64,
    /// Targets that answered (scans: the hits).
    pub answering: Option<u64>,
    /// Probes without a reply, percent of probes.
    pub loss_pct: Option<f64>,
    /// The RTT quantiles (µs) of [`Section::rtt`].
    pub p50: Option<f64>,
    /// See `p50`.
    pub p90: Option<f64>,
    /// See `p50`.
    pub p99: Option<f64>,
    /// When the run started, ns since the epoch.
    pub start_ns: Option<u64>,
    /// When it ended (or its last row, see `duration_is_lower_bound`).
    pub end_ns: Option<u64>,
    /// Whether the end is only the last row's time (no end recorded: a killed run).
    pub duration_is_lower_bound: bool,
    /// The engines the files name, comma-separated.
    pub engine: String,
    /// Probes per second achieved.
    pub rate_pps: Option<f64>,
    /// Whether every file says it is complete (`asdic.complete`); `None` when none says.
    pub complete: Option<bool>,
    /// The command lines that wrote the files (at most [`MAX_COMMANDS`], each cut to
    /// [`COMMAND_CHARS`] characters).
    pub commands: Vec<Text>,
    /// Mode-specific lines: (label, value).
    pub extra: Vec<(String, String)>,
}

impl Summary {
    /// Seconds from start to end.
    pub fn duration_s(&self) -> Option<f64> {
        let (s, e) = (self.start_ns?, self.end_ns?);
        Some(e.saturating_sub(s) as f64 / 1e9)
    }
}

/// One row of the per-target table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetRow {
    /// The address.
    pub target: Text,
    /// Its name, if any.
    pub name: Option<Text>,
    /// Probes that ended.
    pub probes: u64,
    /// Replies.
    pub replies: u64,
    /// Loss percent.
    pub loss_pct: Option<f64>,
    /// Median RTT, µs.
    pub p50: Option<f64>,
    /// 90th percentile RTT, µs.
    pub p90: Option<f64>,
    /// 99th percentile RTT, µs.
    pub p99: Option<f64>,
    /// Largest RTT, µs.
    pub max: Option<f64>,
    /// ICMP errors.
    pub errors: u64,
    /// Mode-specific remark (first error, alarms, trace reach).
    pub note: Text,
}

/// One ICMP type/code in the error breakdown.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRow {
    /// The IANA name, "Type / Code".
    pub name: Text,
    /// ICMPv6 rather than ICMPv4.
    pub v6: bool,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// Errors of this type and code.
    pub count: u64,
    /// Distinct responders (at least: [`MAX_RESPONDERS`] are tracked over all types and
    /// codes, the others counted as one).
    pub responders: u64,
    /// The responders that sent most of them, with their counts.
    pub top: Vec<(Text, u64)>,
}

/// Distinct responders tracked, over all ICMP types and codes of a section; the errors of
/// further ones are counted, their senders as one "other" responder. Each is held with at
/// most [`RESPONDER_CHARS`] characters: a few MiB at most, whatever the file holds.
pub const MAX_RESPONDERS: usize = 65_536;

/// Characters of a responder held (an IPv6 address has at most 45).
pub const RESPONDER_CHARS: usize = 64;

/// ICMP (family, type, code) kinds itemised in a section; errors of further kinds (only a
/// file asdic did not write has that many) are counted in the summary and noted.
pub const MAX_KINDS: usize = 1024;

/// Distinct command lines and engines listed in a section's summary; more are counted.
pub const MAX_COMMANDS: usize = 32;

/// One prefix of a scan's hit map.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixRow {
    /// The prefix, `a.b.c.0/24`.
    pub prefix: String,
    /// Targets probed in it, when the file has a row per probe (`--all-events`).
    pub probed: Option<u64>,
    /// Addresses in the prefix (IPv4), the denominator without `probed`.
    pub size: Option<u64>,
    /// Targets that answered.
    pub hits: u64,
}

impl PrefixRow {
    /// Hits over targets probed, else over the prefix's addresses; `None` when neither is
    /// known.
    pub fn rate(&self) -> Option<f64> {
        let d = self.probed.or(self.size)?;
        (d > 0).then(|| (self.hits as f64 / d as f64).min(1.0))
    }
}

/// A scan's per-prefix hit map.
#[derive(Debug, Clone, Default)]
pub struct PrefixMap {
    /// Prefix length of the cells.
    pub bits: u8,
    /// IPv6 rather than IPv4.
    pub v6: bool,
    /// Every prefix with a probe or a hit, in address order.
    pub cells: Vec<PrefixRow>,
    /// Whether the rates have real denominators (`probed`).
    pub exact: bool,
}

/// One time bucket of a latency-over-time graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// Start, seconds since the section's start.
    pub t: f64,
    /// Probes that ended in the bucket.
    pub sent: u64,
    /// Of which unanswered.
    pub lost: u64,
    /// RTT quantiles of the bucket's replies, µs: min, p25, median, p75, max.
    pub rtt: Option<[f64; 5]>,
}

impl Bucket {
    /// Loss percent within the bucket.
    pub fn loss_pct(&self) -> f64 {
        100.0 * self.lost as f64 / self.sent.max(1) as f64
    }
}

/// A target's latency over time, SmokePing style.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// The address.
    pub target: Text,
    /// Its name.
    pub name: Option<Text>,
    /// Loss percent over the run.
    pub loss_pct: f64,
    /// Bucket width, seconds.
    pub width: f64,
    /// The buckets, in time order.
    pub buckets: Vec<Bucket>,
    /// What a bucket's `t` counts from: ns since the Unix epoch (its axis shows clock time).
    pub start_ns: u64,
    /// The target's rounds drawn: one probe each.
    pub rounds: u64,
}

/// Everything a report shows about the files of one run mode.
#[derive(Debug, Clone)]
pub struct Section {
    /// The mode.
    pub mode: Mode,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// Rows read.
    pub rows: u64,
    /// The summary.
    pub summary: Summary,
    /// The RTT samples drawn and summarised.
    pub rtt: LogHist,
    /// What one sample of `rtt` is ("echo reply", "per-target median").
    pub rtt_basis: &'static str,
    /// The per-target table, worst first, at most [`Options::rows`].
    pub targets: Vec<TargetRow>,
    /// Targets in all (the table may show fewer).
    pub targets_total: u64,
    /// ICMP errors by type/code, most first.
    pub errors: Vec<ErrorRow>,
    /// A scan's hit map.
    pub prefixes: Vec<PrefixMap>,
    /// Latency-over-time graphs (sweeps), worst first.
    pub series: Vec<Series>,
    /// Things the reader should know about these numbers.
    pub notes: Vec<String>,
}

/// Reads `inputs` (all of `mode`, with the metadata [`input::group`] read) into a section.
///
/// # Errors
/// [`Error`] naming a file that cannot be read or lacks a column the mode needs.
pub fn build(mode: Mode, inputs: Vec<Input>, opts: &Options) -> Result<Section> {
    let meta = Meta::read(&inputs);
    let mut s = Section {
        mode,
        files: inputs.into_iter().map(|i| i.path).collect(),
        rows: 0,
        summary: Summary::default(),
        rtt: LogHist::new(),
        rtt_basis: "echo reply",
        targets: vec![],
        targets_total: 0,
        errors: vec![],
        prefixes: Vec::new(),
        series: vec![],
        notes: vec![],
    };
    s.summary.engine = meta.engines.join(", ");
    s.summary.commands = meta.commands.clone();
    if meta.unlisted > 0 {
        s.notes.push(format!(
            "The files name more engines or command lines than the {MAX_COMMANDS} listed: {} \
             more (counted per file) are not.",
            meta.unlisted
        ));
    }
    s.summary.complete = meta.complete;
    s.summary.start_ns = meta.start_ns;
    s.summary.end_ns = meta.end_ns;
    if meta.partial {
        s.notes.push(format!(
            "Read from a snapshot or parts of a run that did not end ({} / .parts): the \
             numbers cover the run up to its last durable write.",
            keys::PARTIAL
        ));
    }
    match mode {
        Mode::Scan => scan(&mut s, &meta)?,
        Mode::Sweep | Mode::Trace => probes(&mut s, opts)?,
        Mode::Ping => ping(&mut s, opts)?,
    }
    s.summary.p50 = s.rtt.quantile(0.5);
    s.summary.p90 = s.rtt.quantile(0.9);
    s.summary.p99 = s.rtt.quantile(0.99);
    if s.rtt.count() > 0 {
        s.notes.push(format!(
            "Exact: every count and loss, and each row of the tables ({}). Binned: the RTT \
             percentiles of the summary and the RTT figures, from a histogram of {} log buckets \
             1 % wide (0.1 µs to 100 s; beyond, the exact extreme): each is within 0.5 % of the \
             exact nearest-rank value, in memory that does not grow with the rows.",
            match mode {
                Mode::Ping => "the files' own per-target figures",
                Mode::Scan => "counted per prefix",
                Mode::Sweep | Mode::Trace => "from every probe of the targets shown",
            },
            LogHist::bucket_count()
        ));
    }
    if s.summary.rate_pps.is_none()
        && let (Some(p), Some(d)) = (s.summary.probes, s.summary.duration_s())
        && d > 0.0
    {
        s.summary.rate_pps = Some(p as f64 / d);
    }
    s.targets.truncate(opts.rows);
    Ok(s)
}

/// What the files' metadata say, over all files of a section.
#[derive(Debug, Default)]
struct Meta {
    engines: Vec<String>,
    commands: Vec<Text>,
    /// Distinct commands and engines past [`MAX_COMMANDS`], not listed.
    unlisted: u64,
    complete: Option<bool>,
    partial: bool,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    /// Scan: the sum of `asdic.probes_sent` when every file has it.
    probes_sent: Option<u64>,
    /// Scan: the sum of `asdic.targets_planned` when every file has it.
    targets: Option<u64>,
    /// Scan: whether every file has a row per probe event.
    all_events: bool,
    /// Scan: the send rate recorded by each run, summed when every file has it.
    send_rate: Option<f64>,
}

impl Meta {
    fn read(inputs: &[Input]) -> Meta {
        let mut m = Meta {
            probes_sent: Some(0),
            targets: Some(0),
            all_events: true,
            send_rate: Some(0.0),
            ..Meta::default()
        };
        let mut runs = HashSet::new();
        for Input { meta: kv, .. } in inputs {
            // Parts of one run and the rotated files of one sweep share a session: their
            // run-wide numbers count once.
            let session = kv.session.clone().unwrap_or_default();
            let first_of_run = runs.insert((session, kv.start_unix_ns));
            if let Some(e) = &kv.engine {
                let e = Text::new(e).to_string();
                if !m.engines.contains(&e) {
                    if m.engines.len() < MAX_COMMANDS {
                        m.engines.push(e);
                    } else {
                        m.unlisted += 1;
                    }
                }
            }
            if let Some(c) = &kv.command {
                let c = Text::cut(c, COMMAND_CHARS);
                if !m.commands.contains(&c) {
                    if m.commands.len() < MAX_COMMANDS {
                        m.commands.push(c);
                    } else {
                        m.unlisted += 1;
                    }
                }
            }
            match kv.complete {
                Some(c) => m.complete = Some(m.complete.unwrap_or(true) && c),
                None if kv.part.is_some() => m.complete = Some(false),
                None => {}
            }
            m.partial |= kv.partial == Some(true) || kv.part.is_some();
            if let Some(s) = kv.start_unix_ns {
                m.start_ns = Some(m.start_ns.map_or(s, |x| x.min(s)));
            }
            if let Some(e) = kv.end_unix_ns {
                m.end_ns = Some(m.end_ns.map_or(e, |x| x.max(e)));
            }
            m.all_events &= kv.all_events == Some(true);
            if first_of_run {
                m.probes_sent = m.probes_sent.zip(kv.probes_sent).map(|(a, b)| a + b);
                m.targets = m.targets.zip(kv.targets_planned).map(|(a, b)| a + b);
                m.send_rate = m.send_rate.zip(kv.send_rate_pps).map(|(a, b)| a + b);
            } else {
                // A second file of one run that carries the run's closing probe count (say the
                // finished file and its parts given together): adding it would count the run
                // twice, and which file holds which probes is unknown, so the count is left
                // unknown.
                if kv.probes_sent.is_some() {
                    m.probes_sent = None;
                }
            }
        }
        m
    }
}

/// ICMP errors by (family, type, code), with their responders, in bounded memory: at most
/// [`MAX_KINDS`] kinds and [`MAX_RESPONDERS`] responders over all of them.
#[derive(Debug, Default)]
struct Errors {
    by: HashMap<(bool, u8, u8), ErrAgg>,
    /// Responders tracked over all kinds.
    responders: usize,
    /// Errors of kinds past [`MAX_KINDS`], and those kinds (at least).
    unlisted: u64,
    unlisted_kinds: HashSet<(bool, u8, u8)>,
}

#[derive(Debug, Default)]
struct ErrAgg {
    name: Text,
    count: u64,
    responders: HashMap<Text, u64>,
    others: u64,
}

impl Errors {
    fn add(&mut self, v6: bool, t: u8, c: u8, name: Option<&str>, responder: Option<&str>, n: u64) {
        let key = (v6, t, c);
        if !self.by.contains_key(&key) && self.by.len() >= MAX_KINDS {
            self.unlisted += n;
            // 131,072 kinds at most, three bytes each: counted exactly.
            self.unlisted_kinds.insert(key);
            return;
        }
        let e = self.by.entry(key).or_default();
        if e.name.is_empty() {
            e.name = name.map_or_else(|| Text::new(&format!("type {t} code {c}")), Text::new);
        }
        e.count += n;
        let Some(r) = responder else {
            e.others += n;
            return;
        };
        let r = crate::text::head(r, RESPONDER_CHARS);
        if let Some(k) = e.responders.get_mut(r) {
            *k += n;
        } else if self.responders < MAX_RESPONDERS {
            self.responders += 1;
            e.responders.insert(Text::cut(r, RESPONDER_CHARS), n);
        } else {
            e.others += n;
        }
    }

    /// The rows, most errors first, and a note for the kinds not itemised.
    fn rows(self) -> (Vec<ErrorRow>, Option<String>) {
        let note = (self.unlisted > 0).then(|| {
            format!(
                "{} ICMP errors of {} further type/code kinds are counted in the summary but not \
                 itemised: a section lists {MAX_KINDS} kinds at most.",
                self.unlisted,
                self.unlisted_kinds.len()
            )
        });
        let mut rows: Vec<ErrorRow> = self
            .by
            .into_iter()
            .map(|((v6, t, c), e)| {
                let mut top: Vec<(Text, u64)> = e.responders.into_iter().collect();
                let responders = top.len() as u64 + u64::from(e.others > 0);
                top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
                top.truncate(5);
                ErrorRow {
                    name: e.name,
                    v6,
                    icmp_type: t,
                    icmp_code: c,
                    count: e.count,
                    responders,
                    top,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| {
                (a.v6, a.icmp_type, a.icmp_code).cmp(&(b.v6, b.icmp_type, b.icmp_code))
            })
        });
        (rows, note)
    }
}

/// Sets the section's error rows (and the note on kinds not itemised).
fn set_errors(s: &mut Section, errors: Errors) {
    let (rows, note) = errors.rows();
    s.errors = rows;
    s.notes.extend(note);
}

fn is_v6(target: &str) -> bool {
    target.contains(':')
}

fn str_at(a: &StringArray, i: usize) -> Option<&str> {
    if a.is_null(i) { None } else { Some(a.value(i)) }
}

/// What a scan's rows add up to.
struct ScanTally {
    v4: Prefixes,
    v6: Prefixes,
    errors: Errors,
    probes: u64,
    first_probes: u64,
    replies: u64,
    errs: u64,
    dups: u64,
    late: u64,
    timeouts: u64,
    failed: u64,
    t_min: u64,
    t_max: u64,
}

impl ScanTally {
    fn new() -> Self {
        ScanTally {
            v4: Prefixes::new(false),
            v6: Prefixes::new(true),
            errors: Errors::default(),
            probes: 0,
            first_probes: 0,
            replies: 0,
            errs: 0,
            dups: 0,
            late: 0,
            timeouts: 0,
            failed: 0,
            t_min: u64::MAX,
            t_max: 0,
        }
    }

    /// Adds one batch of scan rows (the section counts them and collects reply RTTs).
    fn add(&mut self, s: &mut Section, b: &Batch<'_>) -> Result<()> {
        let target = b.col::<StringArray>(&scan_col::TARGET)?;
        let outcome = b.col::<StringArray>(&scan_col::OUTCOME)?;
        let rtt = b.col::<Float64Array>(&scan_col::RTT_US)?;
        let responder = b.col::<StringArray>(&scan_col::RESPONDER)?;
        let ty = b.col::<UInt8Array>(&scan_col::ICMP_TYPE)?;
        let code = b.col::<UInt8Array>(&scan_col::ICMP_CODE)?;
        let name = b.col::<StringArray>(&scan_col::ICMP_NAME)?;
        let attempt = b.col::<UInt8Array>(&scan_col::ATTEMPT)?;
        let sent = b.col::<Int64Array>(&scan_col::SENT_UNIX_NS)?;
        for i in 0..b.len() {
            s.rows += 1;
            let Ok(addr) = target.value(i).parse::<IpAddr>() else {
                continue;
            };
            // A stateless scan's timeouts carry no send time.
            if sent.is_valid(i) {
                let t = u64::try_from(sent.value(i)).unwrap_or(0);
                self.t_min = self.t_min.min(t);
                self.t_max = self.t_max.max(t);
            }
            let Some(o) = ScanOutcome::parse(outcome.value(i)) else {
                continue;
            };
            let ended = matches!(
                o,
                ScanOutcome::Reply
                    | ScanOutcome::Error
                    | ScanOutcome::Timeout
                    | ScanOutcome::SendFailed
            );
            self.probes += u64::from(ended);
            let first = ended && attempt.value(i) == 0;
            self.first_probes += u64::from(first);
            let prefixes = if addr.is_ipv6() {
                &mut self.v6
            } else {
                &mut self.v4
            };
            match o {
                ScanOutcome::Reply => {
                    self.replies += 1;
                    if let Some(r) = opt(rtt, i, |a, i| a.value(i)) {
                        s.rtt.add(r);
                    }
                    prefixes.add(addr, first, true);
                }
                ScanOutcome::Error => {
                    self.errs += 1;
                    prefixes.add(addr, first, false);
                    if let (Some(t), Some(c)) = (
                        opt(ty, i, |a, i| a.value(i)),
                        opt(code, i, |a, i| a.value(i)),
                    ) {
                        self.errors.add(
                            addr.is_ipv6(),
                            t,
                            c,
                            str_at(name, i),
                            str_at(responder, i),
                            1,
                        );
                    }
                }
                ScanOutcome::Timeout => {
                    self.timeouts += 1;
                    prefixes.add(addr, first, false);
                }
                ScanOutcome::SendFailed => {
                    self.failed += 1;
                    prefixes.add(addr, first, false);
                }
                ScanOutcome::Duplicate => self.dups += 1,
                ScanOutcome::Late => self.late += 1,
            }
        }
        Ok(())
    }
}

/// The scan: probes, hits, the per-prefix map and errors.
fn scan(s: &mut Section, meta: &Meta) -> Result<()> {
    let mut tally = ScanTally::new();
    let files = s.files.clone();
    for f in &files {
        input::for_each_batch(f, |b: &Batch<'_>| tally.add(s, b))?;
    }
    let ScanTally {
        v4,
        v6,
        errors,
        probes,
        first_probes,
        replies,
        errs,
        dups,
        late,
        timeouts,
        failed,
        t_min,
        t_max,
    } = tally;
    let sum = &mut s.summary;
    sum.replies = replies;
    sum.errors = errs;
    sum.answering = Some(replies);
    if meta.all_events {
        sum.probes = Some(probes);
        sum.targets = Some(first_probes);
    } else {
        sum.probes = meta.probes_sent.filter(|&p| p > 0);
        sum.targets = meta.targets.filter(|&t| t > 0);
        s.notes.push(
            "The scan wrote rows for hits only (no --all-events): timeouts are not in the file, \
             so loss comes from the probe count in its metadata and hit rates per prefix are \
             over the prefix's addresses."
                .into(),
        );
    }
    sum.loss_pct = sum.probes.and_then(|p| loss_pct(p, replies));
    if let Some(t) = sum.targets.filter(|&t| t > 0) {
        sum.extra.push((
            "hit rate".into(),
            format!(
                "{:.2} % of targets answered with an echo reply",
                100.0 * replies as f64 / t as f64
            ),
        ));
    }
    sum.extra.push((
        "events".into(),
        format!(
            "{replies} replies, {errs} ICMP errors, {timeouts} timeouts, {failed} send failures, {dups} duplicates, {late} late"
        ),
    ));
    settle_end(sum, t_max);
    if sum.start_ns.is_none() && t_min < u64::MAX {
        sum.start_ns = Some(t_min);
    }
    sum.rate_pps = meta.send_rate.filter(|&r| r > 0.0);
    set_errors(s, errors);
    // A map per family the scan probed (a mixed scan shows both), and one worst-first table
    // of every family's prefixes.
    let maps: Vec<PrefixMap> = [v4, v6]
        .into_iter()
        .filter(|p| p.len() > 0)
        .map(|p| p.finish(meta.all_events))
        .collect();
    let mut cells: Vec<&PrefixRow> = maps.iter().flat_map(|m| &m.cells).collect();
    cells.sort_by(|a, b| {
        a.rate()
            .unwrap_or(0.0)
            .total_cmp(&b.rate().unwrap_or(0.0))
            .then_with(|| prefix_key(&a.prefix).cmp(&prefix_key(&b.prefix)))
    });
    s.targets_total = cells.len() as u64;
    // The per-target table of a scan is per prefix, worst first; a prefix whose number of
    // targets the file cannot tell (hits only, a large IPv6 prefix) shows 0 targets and no rate.
    s.targets = cells
        .iter()
        .map(|c| TargetRow {
            target: Text::new(&c.prefix),
            probes: c.probed.or(c.size).unwrap_or(0),
            replies: c.hits,
            loss_pct: c.rate().map(|r| 100.0 * (1.0 - r)),
            ..TargetRow::default()
        })
        .collect();
    s.prefixes = maps;
    Ok(())
}

fn prefix_key(p: &str) -> (u8, u128) {
    let addr = p.split('/').next().unwrap_or("");
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => (4, u128::from(u32::from(a))),
        Ok(IpAddr::V6(a)) => (6, u128::from(a)),
        Err(_) => (0, 0),
    }
}

/// Hits and probes per prefix, coarsening while there are too many prefixes.
#[derive(Debug)]
struct Prefixes {
    v6: bool,
    bits: u8,
    map: HashMap<u128, (u64, u64)>,
}

/// Cells in a hit map at most; more prefixes are merged into shorter ones.
pub const MAX_CELLS: usize = 4096;
/// Prefixes kept while reading before coarsening.
const MAX_KEPT: usize = 1 << 18;

impl Prefixes {
    /// IPv4 by /24; IPv6 by /120 (a contiguous range's cells), made /64s at the end when the
    /// addresses are a hitlist (no /64 holds two of the /120s).
    fn new(v6: bool) -> Self {
        Prefixes {
            v6,
            bits: if v6 { 120 } else { 24 },
            map: HashMap::new(),
        }
    }

    /// Whether no /64 holds two cells: a hitlist, drawn per /64.
    fn scattered(&self) -> bool {
        if !self.v6 || self.bits <= 64 {
            return false;
        }
        let shift = self.bits - 64;
        let mut seen = HashSet::with_capacity(self.map.len());
        self.map.keys().all(|k| seen.insert(k >> shift))
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn width(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    fn key(&self, addr: IpAddr) -> u128 {
        let x = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let shift = self.width() - self.bits;
        if shift >= 128 { 0 } else { x >> shift }
    }

    fn add(&mut self, addr: IpAddr, probed: bool, hit: bool) {
        let k = self.key(addr);
        let e = self.map.entry(k).or_default();
        e.0 += u64::from(probed);
        e.1 += u64::from(hit);
        if self.map.len() > MAX_KEPT {
            self.coarsen();
        }
    }

    fn coarsen(&mut self) {
        let step = if self.v6 { 8 } else { 4 };
        let Some(bits) = self.bits.checked_sub(step).filter(|&b| b > 0) else {
            return;
        };
        let mut map: HashMap<u128, (u64, u64)> = HashMap::new();
        for (k, (p, h)) in self.map.drain() {
            let e = map.entry(k >> step).or_default();
            e.0 += p;
            e.1 += h;
        }
        self.map = map;
        self.bits = bits;
    }

    fn finish(mut self, exact: bool) -> PrefixMap {
        if self.scattered() {
            while self.bits > 64 {
                self.coarsen();
            }
        }
        while self.map.len() > MAX_CELLS && self.bits > 4 {
            self.coarsen();
        }
        let shift = self.width() - self.bits;
        let mut cells: Vec<PrefixRow> = self
            .map
            .iter()
            .map(|(&k, &(probed, hits))| {
                let base = k << shift;
                let prefix = if self.v6 {
                    format!("{}/{}", std::net::Ipv6Addr::from(base), self.bits)
                } else {
                    format!("{}/{}", std::net::Ipv4Addr::from(base as u32), self.bits)
                };
                PrefixRow {
                    prefix,
                    probed: exact.then_some(probed),
                    // Without --all-events a rate is over the prefix's addresses: only for
                    // prefixes small enough that a scan probes them whole (IPv6 /112 and up).
                    size: (shift <= 16 || !self.v6).then(|| 1u64 << shift),
                    hits,
                }
            })
            .collect();
        cells.sort_by_key(|c| prefix_key(&c.prefix));
        PrefixMap {
            bits: self.bits,
            v6: self.v6,
            cells,
            exact,
        }
    }
}

/// Per-target counters of a sweep or a trace (first pass).
#[derive(Debug, Default, Clone)]
struct TargetAgg {
    name: Option<Text>,
    probes: u64,
    replies: u64,
    errors: u64,
    sum_us: f64,
    first_ns: u64,
    last_ns: u64,
    alarms: u64,
    first_error: Option<Text>,
    /// Trace: the lowest TTL the target itself answered at, and the highest any hop did.
    reached: Option<u8>,
    last_hop: Option<u8>,
    /// Trace: the lowest TTL that drew a destination unreachable, its marker (`!H`, `!X`…)
    /// and responder: where the path ended without reaching the target.
    unreachable: Option<(u8, String, Option<Text>)>,
}

/// How a trace's path ended: the smaller TTL of a reply and an unreachable is its end, as
/// trace decides it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PathEnd<'a> {
    /// The target answered, at this TTL (the path's length).
    Reached(u8),
    /// A destination unreachable at this TTL, with its marker and router.
    Unreachable(u8, &'a str, Option<&'a Text>),
    /// Neither; the highest TTL any hop answered at.
    NotReached(Option<u8>),
}

impl TargetAgg {
    /// The path's end.
    fn path_end(&self) -> PathEnd<'_> {
        match (self.reached, &self.unreachable) {
            (Some(h), Some((u, ..))) if h <= *u => PathEnd::Reached(h),
            (Some(h), None) => PathEnd::Reached(h),
            (_, Some((u, mark, from))) => PathEnd::Unreachable(*u, mark, from.as_ref()),
            (None, None) => PathEnd::NotReached(self.last_hop),
        }
    }

    /// How a trace's path ended, in the words of trace's own output: reached (at its length),
    /// unreachable (marker and router), or not reached.
    fn path_note(&self) -> String {
        match self.path_end() {
            PathEnd::Reached(h) => format!("reached, {h} hops"),
            PathEnd::Unreachable(u, mark, Some(r)) => {
                format!("unreachable at TTL {u}: {mark} from {r}")
            }
            PathEnd::Unreachable(u, mark, None) => format!("unreachable at TTL {u}: {mark}"),
            PathEnd::NotReached(Some(h)) => format!("not reached; last answer from TTL {h}"),
            PathEnd::NotReached(None) => "not reached; no hop answered".into(),
        }
    }

    /// Loss percent, 0 without probes (for ordering and graphs).
    fn loss(&self) -> f64 {
        loss_pct(self.probes, self.replies).unwrap_or(0.0)
    }

    fn mean(&self) -> f64 {
        if self.replies == 0 {
            f64::INFINITY
        } else {
            self.sum_us / self.replies as f64
        }
    }
}

/// One sweep or trace row, classified.
struct ProbeEnd<'a> {
    target: &'a str,
    /// The row's `event` (sweep) or `kind` (trace); `None` for a name this version does not
    /// know.
    kind: Option<Kind>,
    t_ns: u64,
    /// RTT of an answer (sweep: echo reply; trace: any hop's answer).
    rtt_us: Option<f64>,
    /// Unanswered (timeout, send failure).
    lost: bool,
}

/// A sweep row's `event` or a trace row's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sweep(SweepEvent),
    Hop(HopKind),
}

impl Kind {
    /// The kind `s` names in a trace's (`trace`) or a sweep's rows.
    fn parse(trace: bool, s: &str) -> Option<Kind> {
        if trace {
            HopKind::parse(s).map(Kind::Hop)
        } else {
            SweepEvent::parse(s).map(Kind::Sweep)
        }
    }

    /// An answer with an RTT: a sweep's echo reply; any hop's answer in a trace.
    fn answered(self) -> bool {
        match self {
            Kind::Sweep(e) => e == SweepEvent::Reply,
            Kind::Hop(h) => matches!(
                h,
                HopKind::Reply | HopKind::TimeExceeded | HopKind::Unreachable | HopKind::OtherError
            ),
        }
    }

    /// A probe that drew nothing useful: no answer, a refused send; in a sweep an ICMP
    /// error too (the target did not answer).
    fn lost(self) -> bool {
        match self {
            Kind::Sweep(e) => matches!(
                e,
                SweepEvent::Timeout | SweepEvent::SendFailed | SweepEvent::Error
            ),
            Kind::Hop(h) => matches!(h, HopKind::Timeout | HopKind::SendFailed),
        }
    }

    /// An ICMP error (in a trace, a router's time exceeded too).
    fn is_error(self) -> bool {
        match self {
            Kind::Sweep(e) => e == SweepEvent::Error,
            Kind::Hop(h) => matches!(
                h,
                HopKind::TimeExceeded | HopKind::Unreachable | HopKind::OtherError
            ),
        }
    }
}

/// Calls `f` with every row of the section's files; a probe's end has an RTT or is lost.
fn for_each_probe(
    s: &Section,
    mut f: impl FnMut(&ProbeEnd<'_>, &Batch<'_>, usize) -> Result<()>,
) -> Result<()> {
    let trace = s.mode == Mode::Trace;
    for file in &s.files {
        input::for_each_batch(file, |b| {
            let target = b.col::<StringArray>(pick(trace, &hop_col::TARGET, &sweep_col::TARGET))?;
            let (kind, rtt, time) = if trace {
                (
                    b.col::<StringArray>(&hop_col::KIND)?,
                    b.col::<Float64Array>(&hop_col::RTT_US)?,
                    b.col::<Int64Array>(&hop_col::SENT_UNIX_NS)?,
                )
            } else {
                (
                    b.col::<StringArray>(&sweep_col::EVENT)?,
                    b.col::<Float64Array>(&sweep_col::RTT_US)?,
                    b.col::<Int64Array>(&sweep_col::TIME_UNIX_NS)?,
                )
            };
            for i in 0..b.len() {
                let k = Kind::parse(trace, kind.value(i));
                let answered = k.is_some_and(Kind::answered);
                let lost = k.is_some_and(Kind::lost);
                let p = ProbeEnd {
                    target: target.value(i),
                    kind: k,
                    t_ns: u64::try_from(time.value(i)).unwrap_or(0),
                    rtt_us: if answered {
                        opt(rtt, i, |a, i| a.value(i))
                    } else {
                        None
                    },
                    lost: lost || (answered && rtt.is_null(i)),
                };
                f(&p, b, i)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Sweeps and traces: per-target counters, then exact RTTs and series for the worst.
fn probes(s: &mut Section, opts: &Options) -> Result<()> {
    let trace = s.mode == Mode::Trace;
    if trace {
        s.rtt_basis = "answer of any hop";
    }
    // Keyed by the text the page shows (at most CELL_CHARS characters of the address).
    let mut targets: HashMap<Text, TargetAgg> = HashMap::new();
    let mut errors = Errors::default();
    let (mut dups, mut late, mut alarms, mut rows) = (0u64, 0u64, 0u64, 0u64);
    let (mut t_min, mut t_max) = (u64::MAX, 0u64);
    let mut rtt = LogHist::new();
    for_each_probe(s, |p, b, i| {
        rows += 1;
        let kind = p.kind;
        let key = Text::key(p.target);
        if !targets.contains_key(key.as_ref()) {
            targets.insert(Text::new(p.target), TargetAgg::default());
        }
        // Present: inserted just above when missing (one Text per target, not per row).
        let Some(e) = targets.get_mut(key.as_ref()) else {
            return Ok(());
        };
        if e.name.is_none()
            && !trace
            && let Some(n) = str_at(b.col::<StringArray>(&sweep_col::NAME)?, i)
        {
            e.name = Some(Text::new(n));
        }
        match kind {
            Some(Kind::Sweep(SweepEvent::Duplicate)) => dups += 1,
            Some(Kind::Sweep(SweepEvent::Late)) => late += 1,
            Some(Kind::Sweep(SweepEvent::Alarm)) => {
                alarms += 1;
                e.alarms += 1;
            }
            _ => {}
        }
        if !(p.lost || p.rtt_us.is_some()) {
            return Ok(());
        }
        t_min = t_min.min(p.t_ns);
        t_max = t_max.max(p.t_ns);
        if e.probes == 0 {
            e.first_ns = p.t_ns;
        }
        e.first_ns = e.first_ns.min(p.t_ns);
        e.last_ns = e.last_ns.max(p.t_ns);
        e.probes += 1;
        if let Some(r) = p.rtt_us {
            e.replies += 1;
            e.sum_us += r;
            rtt.add(r);
        }
        if trace {
            trace_hop(e, b, i, kind, p.target, p.rtt_us.is_some())?;
        }
        if kind.is_some_and(Kind::is_error) {
            let ty =
                b.col::<UInt8Array>(pick(trace, &hop_col::ICMP_TYPE, &sweep_col::ICMP_TYPE))?;
            let code =
                b.col::<UInt8Array>(pick(trace, &hop_col::ICMP_CODE, &sweep_col::ICMP_CODE))?;
            if let (Some(t), Some(c)) = (
                opt(ty, i, |a, i| a.value(i)),
                opt(code, i, |a, i| a.value(i)),
            ) {
                let name = str_at(
                    b.col::<StringArray>(pick(trace, &hop_col::ICMP_NAME, &sweep_col::ICMP_NAME))?,
                    i,
                );
                let responder = str_at(
                    b.col::<StringArray>(pick(trace, &hop_col::RESPONDER, &sweep_col::RESPONDER))?,
                    i,
                );
                // A trace's time-exceeded answers are its hops, not failures.
                if kind != Some(Kind::Hop(HopKind::TimeExceeded)) {
                    e.errors += 1;
                    if e.first_error.is_none() {
                        e.first_error = name.map(Text::new);
                    }
                }
                errors.add(is_v6(p.target), t, c, name, responder, 1);
            }
        }
        Ok(())
    })?;
    s.rows = rows;
    s.rtt = rtt;
    set_errors(s, errors);
    probes_summary(s, &targets, trace, (alarms, dups, late), (t_min, t_max));
    worst_targets(s, opts, &targets, t_min)
}

/// A trace row's part in its target's path: the highest TTL any hop answered at, the lowest
/// the target itself did, the lowest that drew a destination unreachable (marker, router).
fn trace_hop(
    e: &mut TargetAgg,
    b: &Batch<'_>,
    i: usize,
    kind: Option<Kind>,
    target: &str,
    answered: bool,
) -> Result<()> {
    let ttl = b.col::<UInt8Array>(&hop_col::TTL)?.value(i);
    if answered {
        e.last_hop = Some(e.last_hop.map_or(ttl, |h| h.max(ttl)));
    }
    if kind == Some(Kind::Hop(HopKind::Reply)) {
        e.reached = Some(e.reached.map_or(ttl, |h| h.min(ttl)));
    }
    if kind == Some(Kind::Hop(HopKind::Unreachable))
        && e.unreachable.as_ref().is_none_or(|u| ttl < u.0)
        && let Some(code) = opt(b.col::<UInt8Array>(&hop_col::ICMP_CODE)?, i, |a, i| {
            a.value(i)
        })
    {
        let from = str_at(b.col::<StringArray>(&hop_col::RESPONDER)?, i).map(Text::new);
        e.unreachable = Some((ttl, unreachable_marker(is_v6(target), code), from));
    }
    Ok(())
}

/// The summary of sweeps and traces from the per-target counters: targets, probes, replies,
/// errors, loss, and (`events`: alarms, duplicates, late replies) or destinations reached.
fn probes_summary(
    s: &mut Section,
    targets: &HashMap<Text, TargetAgg>,
    trace: bool,
    (alarms, dups, late): (u64, u64, u64),
    (t_min, t_max): (u64, u64),
) {
    let sum = &mut s.summary;
    sum.targets = Some(targets.len() as u64);
    let probes: u64 = targets.values().map(|t| t.probes).sum();
    sum.probes = Some(probes);
    sum.replies = targets.values().map(|t| t.replies).sum();
    sum.errors = targets.values().map(|t| t.errors).sum();
    sum.answering = Some(targets.values().filter(|t| t.replies > 0).count() as u64);
    sum.loss_pct = loss_pct(probes, sum.replies);
    if trace {
        // A path has no loss: what trace itself says, reached / unreachable / not reached.
        sum.loss_pct = None;
        let count =
            |is: fn(&PathEnd<'_>) -> bool| targets.values().filter(|t| is(&t.path_end())).count();
        sum.extra.push((
            "destinations".into(),
            format!(
                "{} reached, {} unreachable, {} not reached",
                count(|e| matches!(e, PathEnd::Reached(_))),
                count(|e| matches!(e, PathEnd::Unreachable(..))),
                count(|e| matches!(e, PathEnd::NotReached(_)))
            ),
        ));
    } else {
        sum.extra.push((
            "events".into(),
            format!("{alarms} alarms raised, {dups} duplicate and {late} late replies"),
        ));
    }
    if sum.start_ns.is_none() && t_min < u64::MAX {
        sum.start_ns = Some(t_min);
    }
    settle_end(sum, t_max);
    s.targets_total = targets.len() as u64;
}

/// The worst targets (most loss, then most errors, then slowest on average): their rows with
/// exact RTT percentiles and, for sweeps, their time series (a second pass over the files).
fn worst_targets(
    s: &mut Section,
    opts: &Options,
    targets: &HashMap<Text, TargetAgg>,
    t_min: u64,
) -> Result<()> {
    let trace = s.mode == Mode::Trace;
    // Worst first: most loss, then most errors, then slowest on average.
    let mut order: Vec<(&Text, &TargetAgg)> = targets.iter().collect();
    order.sort_by(|a, b| {
        b.1.loss()
            .total_cmp(&a.1.loss())
            .then_with(|| b.1.errors.cmp(&a.1.errors))
            .then_with(|| b.1.mean().total_cmp(&a.1.mean()))
            .then_with(|| a.0.as_str().cmp(b.0.as_str()))
    });
    let graphs = if trace { 0 } else { opts.graphs };
    let keep = opts.rows.max(graphs);
    let chosen: HashMap<Text, usize> = order
        .iter()
        .take(keep)
        .enumerate()
        .map(|(k, (t, _))| ((*t).clone(), k))
        .collect();

    // Second pass: exact RTTs and time series of the chosen targets.
    let mut samples: Vec<Vec<(u64, Option<f64>)>> = vec![vec![]; chosen.len()];
    for_each_probe(s, |p, _, _| {
        if (p.lost || p.rtt_us.is_some())
            && let Some(&k) = chosen.get(Text::key(p.target).as_ref())
        {
            samples[k].push((p.t_ns, p.rtt_us));
        }
        Ok(())
    })?;
    let start = s.summary.start_ns.unwrap_or(0).min(t_min);
    for (k, (target, agg)) in order.iter().take(keep).enumerate() {
        let mut rtts: Vec<f64> = samples[k].iter().filter_map(|x| x.1).collect();
        rtts.sort_by(f64::total_cmp);
        let note = Text::new(&if trace {
            agg.path_note()
        } else {
            let mut n = vec![];
            if agg.alarms > 0 {
                n.push(format!("{} alarms", agg.alarms));
            }
            if let Some(e) = &agg.first_error {
                n.push(e.to_string());
            }
            n.join("; ")
        });
        if k < opts.rows {
            s.targets.push(TargetRow {
                target: (*target).clone(),
                name: agg.name.clone(),
                probes: agg.probes,
                replies: agg.replies,
                loss_pct: loss_pct(agg.probes, agg.replies),
                p50: nearest_rank(&rtts, 50),
                p90: nearest_rank(&rtts, 90),
                p99: nearest_rank(&rtts, 99),
                max: rtts.last().copied(),
                errors: agg.errors,
                note,
            });
        }
        if k < graphs {
            s.series.push(series(target, agg, &mut samples[k], start));
        }
    }
    Ok(())
}

/// Buckets of about five probes each (at most 120 buckets), SmokePing's rounds.
fn series(
    target: &Text,
    agg: &TargetAgg,
    samples: &mut [(u64, Option<f64>)],
    start: u64,
) -> Series {
    samples.sort_by_key(|x| x.0);
    let n = ((samples.len() / 5).clamp(1, 120)) as u64;
    let (first, last) = (agg.first_ns, agg.last_ns.max(agg.first_ns));
    let width_ns = ((last - first) / n).max(1) + 1;
    let mut buckets = vec![];
    let mut i = 0;
    for b in 0..n {
        let lo = first + b * width_ns;
        let hi = lo + width_ns;
        let mut rtts = vec![];
        let (mut sent, mut lost) = (0, 0);
        while i < samples.len() && samples[i].0 < hi {
            sent += 1;
            match samples[i].1 {
                Some(r) => rtts.push(r),
                None => lost += 1,
            }
            i += 1;
        }
        if sent == 0 {
            continue;
        }
        rtts.sort_by(f64::total_cmp);
        let q = |p| nearest_rank(&rtts, p).unwrap_or(0.0);
        buckets.push(Bucket {
            t: lo.saturating_sub(start) as f64 / 1e9,
            sent,
            lost,
            rtt: (!rtts.is_empty()).then(|| [rtts[0], q(25), q(50), q(75), rtts[rtts.len() - 1]]),
        });
    }
    Series {
        target: target.clone(),
        name: agg.name.clone(),
        loss_pct: agg.loss(),
        width: width_ns as f64 / 1e9,
        buckets,
        start_ns: start,
        rounds: samples.len() as u64,
    }
}

/// The columns of a ping file the report reads (the others are not decoded).
const PING_COLUMNS: [&Column; 14] = [
    &ping_col::TARGET,
    &ping_col::NAME,
    &ping_col::SENT,
    &ping_col::RECEIVED,
    &ping_col::LOSS_PCT,
    &ping_col::RTT_P50_US,
    &ping_col::RTT_P90_US,
    &ping_col::RTT_P99_US,
    &ping_col::RTT_MAX_US,
    &ping_col::ERRORS,
    &ping_col::ERROR_TYPE,
    &ping_col::ERROR_CODE,
    &ping_col::ERROR_NAME,
    &ping_col::RESPONDER,
];

/// The trace's column or the sweep's, as the section is one or the other.
fn pick(trace: bool, hop: &'static Column, sweep: &'static Column) -> &'static Column {
    if trace { hop } else { sweep }
}

/// What ranks a target row, worst first: most loss, then most errors, then the slowest 99th
/// percentile (none: worst), then the address.
#[derive(Debug, Clone, Copy)]
struct Rank<'a> {
    loss: f64,
    errors: u64,
    p99: f64,
    target: &'a str,
}

impl Rank<'_> {
    fn new(loss: Option<f64>, errors: u64, p99: Option<f64>, target: &str) -> Rank<'_> {
        Rank {
            loss: loss.unwrap_or(0.0),
            errors,
            p99: p99.unwrap_or(f64::INFINITY),
            target,
        }
    }

    /// `Less` when `self` is worse (comes first in the table).
    fn cmp(&self, other: &Rank<'_>) -> Ordering {
        other
            .loss
            .total_cmp(&self.loss)
            .then_with(|| other.errors.cmp(&self.errors))
            .then_with(|| other.p99.total_cmp(&self.p99))
            .then_with(|| self.target.cmp(other.target))
    }
}

/// A table row in [`Worst`]'s heap, ordered by its [`Rank`].
#[derive(Debug)]
struct Ranked(TargetRow);

impl Ranked {
    fn rank(&self) -> Rank<'_> {
        let r = &self.0;
        Rank::new(r.loss_pct, r.errors, r.p99, r.target.as_str())
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// The `n` worst rows of a stream, in `n` rows of memory: a max-heap whose top is the best
/// of those kept, replaced by any row worse than it. Rows that would not be kept are ranked
/// from borrowed values, without copying their strings.
#[derive(Debug)]
struct Worst {
    n: usize,
    heap: BinaryHeap<Ranked>,
}

impl Worst {
    fn new(n: usize) -> Worst {
        Worst {
            n,
            heap: BinaryHeap::with_capacity(n.min(1 << 16)),
        }
    }

    /// Whether a row ranked `r` would be kept.
    fn wants(&self, r: &Rank<'_>) -> bool {
        if self.heap.len() < self.n {
            return true;
        }
        self.heap
            .peek()
            .is_some_and(|top| r.cmp(&top.rank()) == Ordering::Less)
    }

    /// Keeps `row` if it is among the `n` worst so far.
    fn offer(&mut self, row: TargetRow) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(Ranked(row));
        } else if let Some(mut top) = self.heap.peek_mut() {
            let rank = Rank::new(row.loss_pct, row.errors, row.p99, row.target.as_str());
            if rank.cmp(&top.rank()) == Ordering::Less {
                *top = Ranked(row);
            }
        }
    }

    /// The rows kept, worst first.
    fn into_rows(self) -> Vec<TargetRow> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

/// Ping: one row per target with its statistics, folded batch by batch: counters, the
/// histogram of the targets' medians, the errors, and the [`Options::rows`] worst targets.
/// Memory does not grow with the rows.
fn ping(s: &mut Section, opts: &Options) -> Result<()> {
    s.rtt_basis = "per-target median";
    let mut errors = Errors::default();
    let mut worst = Worst::new(opts.rows);
    let (mut probes, mut replies, mut errs) = (0u64, 0u64, 0u64);
    let (mut targets, mut answering) = (0u64, 0u64);
    let files = s.files.clone();
    for f in &files {
        input::for_each_batch_of(f, Some(&PING_COLUMNS), |b| {
            let target = b.col::<StringArray>(&ping_col::TARGET)?;
            let name = b.col::<StringArray>(&ping_col::NAME)?;
            let sent = b.col::<UInt64Array>(&ping_col::SENT)?;
            let received = b.col::<UInt64Array>(&ping_col::RECEIVED)?;
            let loss = b.col::<Float64Array>(&ping_col::LOSS_PCT)?;
            let [p50, p90, p99, max] = [
                &ping_col::RTT_P50_US,
                &ping_col::RTT_P90_US,
                &ping_col::RTT_P99_US,
                &ping_col::RTT_MAX_US,
            ]
            .map(|c| b.col::<Float64Array>(c));
            let (p50, p90, p99, max) = (p50?, p90?, p99?, max?);
            let n_err = b.col::<UInt64Array>(&ping_col::ERRORS)?;
            let ty = b.col::<UInt8Array>(&ping_col::ERROR_TYPE)?;
            let code = b.col::<UInt8Array>(&ping_col::ERROR_CODE)?;
            let err_name = b.col::<StringArray>(&ping_col::ERROR_NAME)?;
            let responder = b.col::<StringArray>(&ping_col::RESPONDER)?;
            for i in 0..b.len() {
                s.rows += 1;
                targets += 1;
                let f = |a: &Float64Array| opt(a, i, |a, i| a.value(i));
                probes += sent.value(i);
                replies += received.value(i);
                answering += u64::from(received.value(i) > 0);
                errs += n_err.value(i);
                if let Some(m) = f(p50) {
                    s.rtt.add(m);
                }
                if let (Some(t), Some(c)) = (
                    opt(ty, i, |a, i| a.value(i)),
                    opt(code, i, |a, i| a.value(i)),
                ) {
                    let tgt = target.value(i);
                    errors.add(
                        is_v6(tgt),
                        t,
                        c,
                        str_at(err_name, i),
                        str_at(responder, i),
                        n_err.value(i).max(1),
                    );
                }
                let key = Text::key(target.value(i));
                if !worst.wants(&Rank::new(f(loss), n_err.value(i), f(p99), &key)) {
                    continue;
                }
                worst.offer(TargetRow {
                    target: Text::new(target.value(i)),
                    name: str_at(name, i).map(Text::new),
                    probes: sent.value(i),
                    replies: received.value(i),
                    loss_pct: f(loss),
                    p50: f(p50),
                    p90: f(p90),
                    p99: f(p99),
                    max: f(max),
                    errors: n_err.value(i),
                    note: Text::new(str_at(err_name, i).unwrap_or("")),
                });
            }
            Ok(())
        })?;
    }
    let sum = &mut s.summary;
    sum.targets = Some(targets);
    sum.probes = Some(probes);
    sum.replies = replies;
    sum.errors = errs;
    sum.answering = Some(answering);
    sum.loss_pct = loss_pct(probes, replies);
    s.notes.push(
        "ping files hold per-target statistics, not single probes: the RTT figures and \
         percentiles are over the targets' median RTTs, and the error breakdown names each \
         target's first error (counted with all its errors)."
            .into(),
    );
    s.targets_total = targets;
    s.targets = worst.into_rows();
    set_errors(s, errors);
    Ok(())
}

/// The run's end from the files' metadata, unless its rows go on later (`t_max`, the last
/// row's time): no end recorded (a killed run's parts), or only that of an earlier file of the
/// run (a sweep's rotated file before the killed last one). Then the last row is the end, to
/// within a round or a cooldown, and the duration a lower bound.
fn settle_end(sum: &mut Summary, t_max: u64) {
    if t_max > 0 && sum.end_ns.is_none_or(|e| e < t_max) {
        sum.end_ns = Some(t_max);
        sum.duration_is_lower_bound = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_analysis::RunMeta;

    fn input(pairs: &[(&str, &str)]) -> Input {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Input {
            path: PathBuf::from("x.parquet"),
            meta: RunMeta::from_pairs(&pairs),
        }
    }

    /// One row of a synthetic ping file.
    #[derive(Debug, Clone)]
    struct PingRow {
        target: String,
        name: Option<String>,
        sent: u64,
        received: u64,
        p: Option<[f64; 4]>,
        errors: u64,
        error: Option<(u8, u8, String, String)>,
    }

    /// `n` ping rows, deterministic, with ties in loss, errors and p99 and a few errors.
    fn ping_rows(n: usize, seed: u64) -> Vec<PingRow> {
        let mut x = seed;
        let mut next = move || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> 33
        };
        (0..n)
            .map(|i| {
                let sent = 1 + next() % 4;
                let received = next() % (sent + 1);
                let base = 50.0 + (next() % 40) as f64 * 10.0;
                let errors = if next() % 5 == 0 { 1 + next() % 3 } else { 0 };
                PingRow {
                    target: format!("198.18.{}.{}", i / 250, i % 250),
                    name: (i % 3 == 0).then(|| format!("host{i}")),
                    sent,
                    received,
                    p: (received > 0).then_some([base, base * 1.5, base * 2.0, base * 2.0]),
                    errors,
                    error: (errors > 0).then(|| {
                        let code = (next() % 3) as u8;
                        (
                            3,
                            code,
                            format!("Destination Unreachable / code {code}"),
                            format!("198.18.255.{}", next() % 4),
                        )
                    }),
                }
            })
            .collect()
    }

    /// Writes `rows` as an asdic ping file (its schema and `asdic.mode`), compressed with
    /// `codec`, in batches of `batch` rows.
    fn write_ping(
        path: &std::path::Path,
        rows: &[PingRow],
        codec: parquet::basic::Compression,
        batch: usize,
    ) {
        use arrow_array::builder::{Float64Builder, StringBuilder, UInt8Builder, UInt64Builder};
        use arrow_array::{ArrayRef, RecordBatch};
        use parquet::arrow::ArrowWriter;
        use parquet::file::metadata::KeyValue;
        use parquet::file::properties::WriterProperties;
        use std::sync::Arc;

        let props = WriterProperties::builder()
            .set_compression(codec)
            .set_key_value_metadata(Some(vec![
                KeyValue::new(keys::MODE.to_string(), "ping".to_string()),
                KeyValue::new(
                    keys::SCHEMA_VERSION.to_string(),
                    asdic_analysis::SCHEMA_VERSION.to_string(),
                ),
            ]))
            .build();
        let f = std::fs::File::create(path).unwrap();
        let mut w = ArrowWriter::try_new(f, asdic_analysis::schema(), Some(props)).unwrap();
        for chunk in rows.chunks(batch.max(1)) {
            let mut strs: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
            // sent, received, errors, timeouts, duplicates, late, send_failed.
            let mut u64s: Vec<UInt64Builder> = (0..7).map(|_| UInt64Builder::new()).collect();
            let mut f64s: Vec<Float64Builder> = (0..9).map(|_| Float64Builder::new()).collect();
            let mut u8s: Vec<UInt8Builder> = (0..3).map(|_| UInt8Builder::new()).collect();
            for r in chunk {
                strs[0].append_value(&r.target);
                strs[1].append_option(r.name.as_deref());
                u64s[0].append_value(r.sent);
                u64s[1].append_value(r.received);
                u64s[2].append_value(r.errors);
                for b in &mut u64s[3..] {
                    b.append_value(0);
                }
                f64s[0].append_value(100.0 * (r.sent - r.received) as f64 / r.sent as f64);
                // last, min, avg, max, stddev, p50, p90, p99
                let v =
                    r.p.map(|[p50, p90, p99, max]| [p50, p50, p50, max, 1.0, p50, p90, p99]);
                for (k, b) in f64s[1..].iter_mut().enumerate() {
                    b.append_option(v.map(|v| v[k]));
                }
                u8s[0].append_option(r.p.map(|_| 64));
                u8s[1].append_option(r.error.as_ref().map(|e| e.0));
                u8s[2].append_option(r.error.as_ref().map(|e| e.1));
                strs[2].append_option(r.error.as_ref().map(|e| e.2.as_str()));
                strs[3].append_option(r.error.as_ref().map(|e| e.3.as_str()));
            }
            let mut s = strs
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef);
            let mut u = u64s
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef);
            let mut fl = f64s
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef);
            let mut b8 = u8s
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef);
            let (target, name, err_name, responder) = (
                s.next().unwrap(),
                s.next().unwrap(),
                s.next().unwrap(),
                s.next().unwrap(),
            );
            let (sent, received, errors) =
                (u.next().unwrap(), u.next().unwrap(), u.next().unwrap());
            let mut cols: Vec<ArrayRef> = vec![target, name, sent, received];
            cols.extend(fl.by_ref().take(9));
            let (ttl, ty, code) = (b8.next().unwrap(), b8.next().unwrap(), b8.next().unwrap());
            cols.extend([ttl, errors, ty, code, err_name, responder]);
            cols.extend(u);
            cols.push(Arc::new(arrow_array::Int32Array::new_null(chunk.len())));
            let b = RecordBatch::try_new(asdic_analysis::schema(), cols).unwrap();
            w.write(&b).unwrap();
        }
        w.close().unwrap();
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "asdic-report-section-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ping_section(path: &std::path::Path, rows: usize) -> Section {
        let opts = Options {
            rows,
            ..Options::default()
        };
        let inputs = input::group(&[path.to_path_buf()]).unwrap();
        let (mode, inputs) = inputs.into_iter().next().unwrap();
        assert_eq!(mode, Mode::Ping);
        build(mode, inputs, &opts).unwrap()
    }

    /// A scan file of `rows` (all events) under `name`: its section.
    fn scan_section(name: &str, rows: &[(IpAddr, bool)]) -> Section {
        use asdic_analysis::{ParquetSink, ScanRow, Sink};
        let path = scratch_dir(name).join("scan.parquet");
        let meta = RunMeta {
            mode: Some(RunMode::Scan),
            schema_version: Some(asdic_analysis::SCHEMA_VERSION),
            all_events: Some(true),
            ..RunMeta::default()
        };
        let mut sink = ParquetSink::<ScanRow>::create(&path, meta.to_pairs()).unwrap();
        let rows: Vec<ScanRow> = rows
            .iter()
            .map(|&(target, hit)| ScanRow {
                target,
                outcome: if hit {
                    ScanOutcome::Reply
                } else {
                    ScanOutcome::Timeout
                },
                rtt_ns: hit.then_some(20_000),
                reply_ttl: None,
                responder: None,
                icmp: None,
                errno: None,
                attempt: 0,
                probe: None,
                sent_unix_ns: Some(1),
            })
            .collect();
        sink.write_rows(&rows).unwrap();
        Box::new(sink).finish().unwrap();
        let inputs = input::group(&[path]).unwrap();
        let (mode, inputs) = inputs.into_iter().next().unwrap();
        assert_eq!(mode, Mode::Scan);
        build(mode, inputs, &Options::default()).unwrap()
    }

    #[test]
    fn a_version_1_scan_file_reads_as_its_version_2_twin() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int64Type;
        use arrow_array::{ArrayRef, RecordBatch};
        use arrow_schema::{Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::file::metadata::KeyValue;
        use parquet::file::properties::WriterProperties;
        use std::sync::Arc;

        let rows: Vec<(IpAddr, bool)> = (0..600u32)
            .map(|i| (IpAddr::from([198, 19, (i >> 8) as u8, i as u8]), i % 3 == 0))
            .collect();
        let v2 = scan_section("v2twin", &rows);
        let v2_path = v2.files[0].clone();
        // The same rows as asdic 0.1 wrote them: sent_unix_ns UInt64, no sent_time, no
        // version key.
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&v2_path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let v1_path = scratch_dir("v1twin").join("scan.parquet");
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                KeyValue::new(keys::MODE.to_string(), "scan".to_string()),
                KeyValue::new(keys::ALL_EVENTS.to_string(), "true".to_string()),
            ]))
            .build();
        let mut w: Option<ArrowWriter<std::fs::File>> = None;
        for b in reader {
            let b = b.unwrap();
            let (mut fields, mut cols): (Vec<Field>, Vec<ArrayRef>) = (vec![], vec![]);
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                match f.name().as_str() {
                    "sent_time" => {}
                    "sent_unix_ns" => {
                        let ns = c.as_primitive::<Int64Type>();
                        let old: arrow_array::UInt64Array =
                            ns.iter().map(|x| x.map(|x| x as u64)).collect();
                        fields.push(Field::new(f.name(), arrow_schema::DataType::UInt64, true));
                        cols.push(Arc::new(old));
                    }
                    _ => {
                        fields.push(f.as_ref().clone());
                        cols.push(Arc::clone(c));
                    }
                }
            }
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
            let w = w.get_or_insert_with(|| {
                let f = std::fs::File::create(&v1_path).unwrap();
                ArrowWriter::try_new(f, batch.schema(), Some(props.clone())).unwrap()
            });
            w.write(&batch).unwrap();
        }
        w.unwrap().close().unwrap();
        let inputs = input::group(std::slice::from_ref(&v1_path)).unwrap();
        let (mode, inputs) = inputs.into_iter().next().unwrap();
        let v1 = build(mode, inputs, &Options::default()).unwrap();
        assert_eq!(v1.rows, 600);
        assert_eq!(format!("{:?}", v1.summary), format!("{:?}", v2.summary));
        assert_eq!(format!("{:?}", v1.prefixes), format!("{:?}", v2.prefixes));
        assert_eq!(format!("{:?}", v1.targets), format!("{:?}", v2.targets));
        assert_eq!(format!("{:?}", v1.rtt), format!("{:?}", v2.rtt));
    }

    #[test]
    fn a_mixed_scan_maps_both_families_and_ipv6_by_its_own_prefixes() {
        // A /22 of IPv4 (a quarter answering) and an IPv6 /118 (the 2nd /120 silent).
        let v4 =
            (0..1024u32).map(|i| (IpAddr::from([198, 19, (i >> 8) as u8, i as u8]), i % 4 == 0));
        let v6 = (0..1024u128).map(|i| {
            let a = std::net::Ipv6Addr::from(0x2001_0db8_0001_0000_0000_0000_0000_4c00u128 + i);
            (IpAddr::V6(a), !(256..512).contains(&i))
        });
        let s = scan_section("mixed", &v4.chain(v6).collect::<Vec<_>>());
        assert_eq!(s.summary.targets, Some(2048));
        let maps: Vec<(bool, u8, usize)> = s
            .prefixes
            .iter()
            .map(|m| (m.v6, m.bits, m.cells.len()))
            .collect();
        assert_eq!(maps, [(false, 24, 4), (true, 120, 4)]);
        let v6 = &s.prefixes[1];
        assert_eq!(v6.cells[1].prefix, "2001:db8:1::4d00/120");
        assert_eq!((v6.cells[1].probed, v6.cells[1].hits), (Some(256), 0));
        assert_eq!(v6.cells[0].rate(), Some(1.0));
        // One table of both families' prefixes, worst first: the silent IPv6 /120 tops it.
        assert_eq!(s.targets.len(), 8);
        assert_eq!(s.targets[0].target, "2001:db8:1::4d00/120");
        assert!(s.targets.iter().any(|t| t.target == "198.19.3.0/24"));

        // A hitlist (one address in each of 300 /64s): drawn per /64, each probed once.
        let list: Vec<(IpAddr, bool)> = (0..300u128)
            .map(|i| {
                let a = std::net::Ipv6Addr::from(
                    0x2001_0db8_0000_0000_0000_0000_0000_0001u128 + (i << 64),
                );
                (IpAddr::V6(a), i % 2 == 0)
            })
            .collect();
        let s = scan_section("hitlist", &list);
        assert_eq!(s.prefixes.len(), 1);
        let m = &s.prefixes[0];
        assert_eq!((m.v6, m.bits, m.cells.len()), (true, 64, 300));
        assert!(m.cells.iter().all(|c| c.probed == Some(1)));
        assert_eq!(m.cells.iter().filter(|c| c.hits == 1).count(), 150);
        // The table: every prefix counted, the silent ones first.
        assert_eq!(s.targets_total, 300);
        assert_eq!(s.targets[0].replies, 0);
    }

    /// What the report computed before it streamed: every row kept, sorted worst first.
    fn exact_worst(rows: &[PingRow], n: usize) -> Vec<(String, u64, u64, Option<f64>)> {
        let mut v: Vec<&PingRow> = rows.iter().collect();
        let loss = |r: &PingRow| 100.0 * (r.sent - r.received) as f64 / r.sent as f64;
        let p99 = |r: &PingRow| r.p.map_or(f64::INFINITY, |p| p[2]);
        v.sort_by(|a, b| {
            loss(b)
                .total_cmp(&loss(a))
                .then_with(|| b.errors.cmp(&a.errors))
                .then_with(|| p99(b).total_cmp(&p99(a)))
                .then_with(|| a.target.cmp(&b.target))
        });
        v.into_iter()
            .take(n)
            .map(|r| (r.target.clone(), r.sent, r.errors, r.p.map(|p| p[0])))
            .collect()
    }

    #[test]
    fn streamed_ping_figures_equal_the_exact_ones_of_all_rows() {
        let d = scratch_dir("ping-exact");
        for (n, seed, keep, batch) in [
            (0, 1, 5, 10),
            (1, 2, 5, 10),
            (57, 3, 10, 7),
            (2_000, 4, 50, 333),
            (2_000, 5, 2_000, 8192),
            (500, 6, 0, 64),
        ] {
            let rows = ping_rows(n, seed);
            let path = d.join(format!("p{n}-{seed}.parquet"));
            write_ping(
                &path,
                &rows,
                parquet::basic::Compression::UNCOMPRESSED,
                batch,
            );
            let s = ping_section(&path, keep);
            let got: Vec<(String, u64, u64, Option<f64>)> = s
                .targets
                .iter()
                .map(|t| (t.target.to_string(), t.probes, t.errors, t.p50))
                .collect();
            assert_eq!(got, exact_worst(&rows, keep), "n={n} keep={keep}");
            let m = &s.summary;
            assert_eq!(s.rows, n as u64);
            assert_eq!((m.targets, s.targets_total), (Some(n as u64), n as u64));
            assert_eq!(m.probes, Some(rows.iter().map(|r| r.sent).sum()));
            assert_eq!(m.replies, rows.iter().map(|r| r.received).sum::<u64>());
            assert_eq!(m.errors, rows.iter().map(|r| r.errors).sum::<u64>());
            assert_eq!(
                m.answering,
                Some(rows.iter().filter(|r| r.received > 0).count() as u64)
            );
            // The percentiles of the medians: within half a bucket of the exact ones.
            let mut medians: Vec<f64> = rows.iter().filter_map(|r| r.p.map(|p| p[0])).collect();
            medians.sort_by(f64::total_cmp);
            for (q, got) in [(50, m.p50), (90, m.p90), (99, m.p99)] {
                let want = nearest_rank(&medians, q);
                match (want, got) {
                    (Some(w), Some(g)) => assert!((g - w).abs() <= w * 0.005 + 1e-9, "{g} {w}"),
                    (w, g) => assert_eq!(w, g),
                }
            }
            // Errors: each row's first error, counted with all its errors.
            let mut by: HashMap<(u8, u8), (u64, HashSet<String>)> = HashMap::new();
            for r in &rows {
                if let Some((t, c, _, resp)) = &r.error {
                    let e = by.entry((*t, *c)).or_default();
                    e.0 += r.errors;
                    e.1.insert(resp.clone());
                }
            }
            assert_eq!(s.errors.len(), by.len());
            for e in &s.errors {
                let (count, resp) = &by[&(e.icmp_type, e.icmp_code)];
                assert_eq!((e.count, e.responders), (*count, resp.len() as u64));
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn every_codec_of_pyarrow_and_spark_is_read() {
        use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
        let d = scratch_dir("codecs");
        let rows = ping_rows(300, 9);
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
            Compression::LZ4,
            Compression::LZ4_RAW,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
        ] {
            let path = d.join(format!("{codec:?}.parquet").replace(['(', ')', ' '], ""));
            write_ping(&path, &rows, codec, 100);
            let s = ping_section(&path, 7);
            assert_eq!(s.rows, 300, "{codec:?}");
            assert_eq!(
                s.targets
                    .iter()
                    .map(|t| t.target.to_string())
                    .collect::<Vec<_>>(),
                exact_worst(&rows, 7)
                    .into_iter()
                    .map(|r| r.0)
                    .collect::<Vec<_>>(),
                "{codec:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn long_strings_are_held_cut_and_kinds_and_responders_are_bounded() {
        let d = scratch_dir("long");
        let mut rows = ping_rows(20, 11);
        let huge = "ü".repeat(1_000_000);
        rows[0].received = 0;
        rows[0].p = None;
        rows[0].name = Some(huge.clone());
        rows[0].errors = 1;
        rows[0].error = Some((3, 1, huge.clone(), huge.clone()));
        let path = d.join("long.parquet");
        write_ping(&path, &rows, parquet::basic::Compression::SNAPPY, 8);
        let s = ping_section(&path, 5);
        let worst = &s.targets[0];
        assert_eq!(worst.target, rows[0].target.as_str());
        let name = worst.name.as_ref().unwrap();
        assert!(name.is_cut() && name.full_chars() == 1_000_000);
        assert_eq!(name.chars().count(), crate::text::CELL_CHARS + 1);
        assert!(worst.note.is_cut());
        let e = s.errors.iter().find(|e| e.icmp_code == 1).unwrap();
        assert!(e.name.len() < 1000);
        assert!(
            e.top
                .iter()
                .all(|(r, _)| r.chars().count() <= RESPONDER_CHARS + 1)
        );

        // Kinds past MAX_KINDS are counted, not itemised; responders past MAX_RESPONDERS
        // count as one other.
        let mut e = Errors::default();
        for k in 0..(MAX_KINDS + 10) {
            e.add(
                k >= 65_536,
                (k >> 8) as u8,
                k as u8,
                None,
                Some("198.18.0.1"),
                2,
            );
        }
        for r in 0..(MAX_RESPONDERS + 5) {
            e.add(
                false,
                0,
                0,
                None,
                Some(&format!("10.{}.{}.{}", r >> 16, (r >> 8) & 255, r & 255)),
                1,
            );
        }
        let (rows, note) = e.rows();
        assert_eq!(rows.len(), MAX_KINDS);
        assert!(note.unwrap().starts_with("20 ICMP errors of 10 further"));
        let first = rows
            .iter()
            .find(|r| (r.icmp_type, r.icmp_code) == (0, 0))
            .unwrap();
        assert_eq!(first.count, 2 + MAX_RESPONDERS as u64 + 5);
        // Responders held: MAX_RESPONDERS over all kinds (1,024 of them went to the others
        // kinds' 198.18.0.1), the rest counted as one.
        assert_eq!(
            first.responders,
            (MAX_RESPONDERS - MAX_KINDS + 1) as u64 + 1
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn metadata_of_runs_counts_each_run_once() {
        let run_a = [
            (keys::MODE, "scan"),
            (keys::ENGINE, "raw"),
            (keys::COMMAND, "asdic scan a"),
            (keys::ALL_EVENTS, "true"),
            (keys::TARGETS_PLANNED, "50"),
            (keys::SESSION, "0000000a"),
            (keys::START_UNIX_NS, "1000"),
            (keys::END_UNIX_NS, "5000"),
            (keys::PROBES_SENT, "50"),
            (keys::SEND_RATE_PPS, "25"),
            (keys::COMPLETE, "true"),
        ];
        let run_b = [
            (keys::MODE, "scan"),
            (keys::ENGINE, "xdp"),
            (keys::COMMAND, "asdic scan b"),
            (keys::ALL_EVENTS, "false"),
            (keys::TARGETS_PLANNED, "10"),
            (keys::SESSION, "0000000b"),
            (keys::START_UNIX_NS, "2000"),
            (keys::END_UNIX_NS, "9000"),
            (keys::PROBES_SENT, "10"),
            (keys::SEND_RATE_PPS, "5.5"),
            (keys::COMPLETE, "true"),
        ];
        let m = Meta::read(&[input(&run_a), input(&run_b)]);
        assert_eq!(m.engines, ["raw", "xdp"]);
        assert_eq!(m.commands, ["asdic scan a", "asdic scan b"]);
        assert_eq!(m.complete, Some(true));
        assert!(!m.partial);
        assert_eq!((m.start_ns, m.end_ns), (Some(1000), Some(9000)));
        assert_eq!(m.probes_sent, Some(60));
        assert_eq!(m.targets, Some(60));
        assert_eq!(m.send_rate, Some(30.5));
        assert!(!m.all_events);
        // Run a's file given twice: its probes would count twice, so they are unknown.
        let m = Meta::read(&[input(&run_a), input(&run_b), input(&run_a)]);
        assert_eq!(m.probes_sent, None);
        assert_eq!(m.targets, Some(60));
        assert!(!m.all_events);

        // Parts (no closing metadata) and a snapshot: partial, and not complete.
        let part = |n| {
            input(&[
                (keys::MODE, "scan"),
                (keys::ENGINE, "raw"),
                (keys::ALL_EVENTS, "true"),
                (keys::TARGETS_PLANNED, "50"),
                (keys::PART, n),
            ])
        };
        let m = Meta::read(&[part("0"), part("1")]);
        assert_eq!(m.complete, Some(false));
        assert!(m.partial);
        assert!(m.all_events);
        assert_eq!(m.targets, Some(50), "the parts of one run count once");
        assert_eq!(m.probes_sent, None);
        assert_eq!(m.start_ns, None);
        let m = Meta::read(&[input(&[(keys::MODE, "ping"), (keys::PARTIAL, "true")])]);
        assert_eq!(m.complete, None);
        assert!(m.partial);
        let m = Meta::read(&[input(&[(keys::MODE, "ping"), (keys::PARTIAL, "false")])]);
        assert!(!m.partial);
        // A run that did not complete makes the section incomplete.
        let mut c = run_b;
        c[10] = (keys::COMPLETE, "false");
        assert_eq!(
            Meta::read(&[input(&run_a), input(&c)]).complete,
            Some(false)
        );
    }

    #[test]
    fn the_end_is_the_recorded_one_unless_rows_come_later() {
        let summary = |end| Summary {
            end_ns: end,
            ..Summary::default()
        };
        let mut s = summary(Some(9_000));
        settle_end(&mut s, 8_500);
        assert_eq!((s.end_ns, s.duration_is_lower_bound), (Some(9_000), false));
        let mut s = summary(None);
        settle_end(&mut s, 8_500);
        assert_eq!((s.end_ns, s.duration_is_lower_bound), (Some(8_500), true));
        let mut s = summary(Some(7_000));
        settle_end(&mut s, 8_500);
        assert_eq!((s.end_ns, s.duration_is_lower_bound), (Some(8_500), true));
        let mut s = summary(None);
        settle_end(&mut s, 0);
        assert_eq!((s.end_ns, s.duration_is_lower_bound), (None, false));
    }

    #[test]
    fn prefixes_coarsen_to_fit_the_map() {
        let mut p = Prefixes::new(false);
        // 8,192 /24s in 10.0.0.0/11, one hit in every other one.
        for k in 0..8192u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from((10u32 << 24) | (k << 8) | 1));
            p.add(a, true, k % 2 == 0);
        }
        let m = p.finish(true);
        assert_eq!(m.bits, 20);
        assert_eq!(m.cells.len(), 512);
        assert!(m.cells.iter().all(|c| c.probed == Some(16) && c.hits == 8));
        assert!(m.cells.iter().all(|c| c.rate() == Some(0.5)));
        assert!(m.cells.iter().any(|c| c.prefix == "10.0.0.0/20"));
    }

    #[test]
    fn prefix_rates_without_probe_rows_use_the_prefix_size() {
        let mut p = Prefixes::new(false);
        for host in 0..64u32 {
            p.add(
                IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 | host)),
                false,
                true,
            );
        }
        let m = p.finish(false);
        assert_eq!(m.cells.len(), 1);
        assert_eq!(m.cells[0].prefix, "198.18.0.0/24");
        assert_eq!(m.cells[0].rate(), Some(0.25));
        let mut p6 = Prefixes::new(true);
        p6.add("2001:db8:1::7".parse().unwrap(), false, true);
        let m6 = p6.finish(false);
        assert_eq!(m6.cells[0].prefix, "2001:db8:1::/64");
        assert_eq!(m6.cells[0].rate(), None);
    }

    #[test]
    fn errors_keep_names_counts_and_top_responders() {
        let mut e = Errors::default();
        e.add(
            false,
            3,
            1,
            Some("Destination Unreachable / Host Unreachable"),
            Some("198.18.0.1"),
            3,
        );
        e.add(false, 3, 1, None, Some("198.18.0.2"), 1);
        e.add(
            true,
            1,
            3,
            Some("Destination Unreachable / Address unreachable"),
            None,
            1,
        );
        let (rows, note) = e.rows();
        assert_eq!(note, None);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].count, 4);
        assert_eq!(rows[0].responders, 2);
        assert_eq!(rows[0].top[0], (Text::new("198.18.0.1"), 3));
        assert!(rows[0].name.contains("Host Unreachable"));
        assert!(rows[1].v6 && rows[1].responders == 1);
    }

    #[test]
    fn series_buckets_hold_every_probe_and_their_quantiles() {
        let agg = TargetAgg {
            first_ns: 1_000_000_000,
            last_ns: 1_000_000_000 + 99 * 100_000_000,
            probes: 100,
            replies: 90,
            ..TargetAgg::default()
        };
        let mut samples: Vec<(u64, Option<f64>)> = (0..100u64)
            .map(|i| {
                let rtt = (i % 10 != 9).then_some(100.0 + (i % 10) as f64);
                (1_000_000_000 + i * 100_000_000, rtt)
            })
            .collect();
        let s = series(&Text::new("198.18.0.9"), &agg, &mut samples, 0);
        assert_eq!(s.buckets.len(), 20);
        assert_eq!(s.buckets.iter().map(|b| b.sent).sum::<u64>(), 100);
        assert_eq!(s.buckets.iter().map(|b| b.lost).sum::<u64>(), 10);
        assert!((s.loss_pct - 10.0).abs() < 1e-9);
        assert!((s.buckets[0].t - 1.0).abs() < 1e-9);
        for b in &s.buckets {
            let [lo, _, med, _, hi] = b.rtt.unwrap();
            assert!(lo <= med && med <= hi && lo >= 100.0 && hi <= 109.0);
        }
    }
}
