//! The one driver of every probing subcommand. A subcommand describes its run as [`Lanes`]
//! (one per address family: table size, engine hints, the sender's and receiver's work) and
//! implements [`Mode`] for what is its own (its start line, what it does with events, its
//! outputs and summary); [`drive`] does what they share, in this order:
//!
//! 1. open each lane's engine (`--engine` and auto's fallback, said once), the first XDP
//!    lane keeping the interface's queues;
//! 2. [`Mode::prepare`], then drop every capability ([`privilege`](crate::privilege)), then
//!    print which engine runs and why;
//! 3. [`Mode::start`] (the run's clock has started; outputs open now, without the
//!    capabilities, and any the run cannot write ends it before a probe is sent), signals
//!    (first: stop sending and cool down; second: stop now), the sender and receiver threads;
//! 4. the event loop: each batch to [`Mode::on_events`] (send failures are also tallied here),
//!    [`Mode::tick`] after every wait, a progress line once a second when the mode has one;
//! 5. [`Mode::drained`], the joins, [`Mode::finish`] (results and the mode's summary), then
//!    the lines every run ends with: why probes were refused, the kernel's drops, a rate
//!    shortfall, an interruption — and the first thread failure as the run's error. The exit
//!    status: a thread's failure (4), results that went to a closed stdout (141), a signal
//!    (128 + its number, for the modes that stop on one as an interruption), else the mode's.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asdic_analysis::meta::session_hex;
use asdic_analysis::{RunMeta, RunMode};
use asdic_core::event::{Drops, Event};
use asdic_engine::KernelDrops;
use asdic_wire::Family;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::Fail;
use crate::closing::end_metadata;
use crate::closing::{Refusals, kernel_warning, link_warning, rate_shortfall};
use crate::engines::{EngineOptions, Opener, RunHints, engine_line, engine_names, stamp_points};
use crate::privilege::drop_capabilities;
use crate::signals::{self, Signals};
use asdic_runtime::{Pipeline, Started, Work, join_all, kernel_drops, start_all};

/// One address family's part of a run.
pub struct Lane {
    /// Its in-flight table's slots.
    pub slots: usize,
    /// What its engine needs to know (a target to route toward, identifiers in use).
    pub hints: RunHints,
    /// The sender's and the receiver's parameters and the targets.
    pub work: Work,
    /// What bounds its in-flight table, said once at the start (tracked runs).
    pub table_line: Option<String>,
}

/// A run as [`drive`] takes it.
pub struct Lanes {
    /// How engines open.
    pub engine: EngineOptions,
    /// One lane per address family with targets.
    pub lanes: Vec<Lane>,
    /// Payload sizes of the probe templates (a probe's class indexes them).
    pub sizes: Vec<usize>,
    /// `--cores`.
    pub cores: Vec<usize>,
    /// `-v`: the start says where the stamps are taken.
    pub verbose: bool,
    /// How long the first signal waits for replies in flight.
    pub wait: Duration,
    /// Longest wait for events between ticks.
    pub poll: Duration,
    /// Progress lines once a second ([`Mode::progress`]).
    pub progress: bool,
    /// The rate asked for, when a run that falls short of it should say so.
    pub rate_goal: Option<f64>,
    /// The run's session id (its probes' stamps carry it).
    pub session: u32,
    /// Whether SIGINT/SIGTERM interrupt the run (exit status 128 + the signal), as for ping,
    /// trace and scan; a sweep's normal end is a signal.
    pub signal_exits: bool,
}

/// Exit status of a run whose results went to a closed stdout (128 + SIGPIPE).
pub const EXIT_PIPE: u8 = 141;

/// The running pipelines, as a mode sees them.
pub struct Run {
    /// One per lane, in order.
    pub pipelines: Vec<Pipeline>,
    /// When sending started.
    pub t0: Instant,
    /// The same, nanoseconds since the Unix epoch.
    pub started_ns: u64,
    /// The run's session id.
    pub session: u32,
    /// Whether dropping the capabilities took CAP_DAC_OVERRIDE (explains a refused write).
    pub dropped_dac: bool,
    signals: Option<Signals>,
}

impl Run {
    /// Probes sent over every pipeline.
    pub fn sent(&self) -> u64 {
        self.sum(|p| p.sender.sent.load(Ordering::Relaxed))
    }

    /// Probes the local stack refused.
    pub fn failed(&self) -> u64 {
        self.sum(|p| p.sender.failed.load(Ordering::Relaxed))
    }

    /// Of a run sending one probe per call, the probes that went out in calls of several
    /// (`SenderShared::grouped`); `None` for other runs.
    pub fn grouped(&self) -> Option<u64> {
        self.pipelines
            .iter()
            .any(|p| p.per_call)
            .then(|| self.sum(|p| p.sender.grouped.load(Ordering::Relaxed)))
    }

    /// The closing line for probes sent in calls of several though one per call was asked,
    /// if any were (see [`Run::grouped`]).
    pub fn say_grouped(&self) {
        if let Some(n) = self.grouped().filter(|&n| n > 0) {
            say!(
                "asdic: {n} probes went out in calls of several: the sender fell behind the rate \
                 asked, and their RTTs hold the kernel's work on the frames ahead of them in \
                 their call (--batch 1 keeps one probe per call)"
            );
        }
    }

    /// How long the longest sender sent, in seconds (at least 1 µs).
    pub fn send_secs(&self) -> f64 {
        let us = self
            .pipelines
            .iter()
            .map(|p| p.sender.send_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        (us as f64 / 1e6).max(1e-6)
    }

    /// From the first probe's send to the last's, over every pipeline, in seconds: what the
    /// rate a user reads divides by (`None` before two batches went out at different times).
    pub fn send_span_secs(&self) -> Option<f64> {
        let first = self
            .pipelines
            .iter()
            .map(|p| p.sender.first_send_ns.load(Ordering::Relaxed))
            .filter(|&t| t > 0)
            .min()?;
        let last = self.last_send_ns()?;
        (last > first).then(|| (last - first) as f64 / 1e9)
    }

    /// Seconds since the last batch went out (`None` before the first).
    pub fn since_last_send_secs(&self) -> Option<f64> {
        let last = self.last_send_ns()?;
        Some(asdic_engine::stamp_ns().saturating_sub(last) as f64 / 1e9)
    }

    /// The last batch's send stamp over every pipeline (`None` before the first).
    fn last_send_ns(&self) -> Option<u64> {
        self.pipelines
            .iter()
            .map(|p| p.sender.last_send_ns.load(Ordering::Relaxed))
            .max()
            .filter(|&t| t > 0)
    }

    /// What the kernel dropped before the receivers could read it.
    pub fn kernel(&self) -> KernelDrops {
        kernel_drops(&self.pipelines)
    }

    /// Stops every sender; `now` also stops waiting for replies in flight.
    pub fn stop(&self, now: bool) {
        for p in &self.pipelines {
            if now { p.abort() } else { p.stop() }
        }
    }

    /// Whether SIGINT or SIGTERM came.
    pub fn interrupted(&self) -> bool {
        self.signals.as_ref().is_some_and(Signals::interrupted)
    }

    /// The first signal that came, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.signals.as_ref().and_then(Signals::first)
    }

    /// What every result file records when it closes: the end time, the kernel's drops,
    /// whether (and by what) the run was interrupted, diagnostics lost to a broken stderr.
    pub fn end_meta(&self, kernel: &KernelDrops) -> RunMeta {
        RunMeta {
            interrupted: Some(self.interrupted()),
            // A mode that can end short without a signal (scan's --max-runtime) says so itself.
            complete: Some(!self.interrupted()),
            signal: self.signal().map(signals::name),
            grouped_probes: self.grouped(),
            ..end_metadata(kernel)
        }
    }

    /// The metadata every result file of the run starts with: version, command line, mode,
    /// engines, session, start; the mode adds its parameters.
    pub fn meta(&self, mode: RunMode) -> RunMeta {
        RunMeta {
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            command: Some(std::env::args().collect::<Vec<_>>().join(" ")),
            mode: Some(mode),
            schema_version: Some(asdic_analysis::SCHEMA_VERSION),
            engine: Some(engine_names(&self.pipelines)),
            stamps: Some(stamp_points(&self.pipelines)),
            session: Some(session_hex(self.session)),
            start_unix_ns: Some(self.started_ns),
            ..RunMeta::default()
        }
    }

    /// The families the run probes, for `asdic.families`: "V4", "V6" or "V4,V6".
    pub fn families(&self) -> String {
        let f: Vec<String> = self
            .pipelines
            .iter()
            .flat_map(|p| p.families())
            .map(|f| format!("{f:?}"))
            .collect();
        f.join(",")
    }

    /// Adds `f` over the pipelines.
    pub fn sum(&self, f: impl Fn(&Pipeline) -> u64) -> u64 {
        self.pipelines.iter().map(f).sum()
    }
}

/// How the threads ended.
pub struct End {
    /// What the receivers dropped (malformed, forged, foreign…), added up.
    pub drops: Drops,
    /// From the first probe to the last thread's end.
    pub elapsed: Duration,
    /// What the kernel dropped.
    pub kernel: KernelDrops,
}

/// What a subcommand does with a run; [`drive`] calls these in order.
pub trait Mode {
    /// The engines are open, capabilities still held: open what needs them (a privileged
    /// port) or must exist before the write check (an output directory).
    fn prepare(&mut self, _run: &Run) -> Result<(), Fail> {
        Ok(())
    }

    /// Capabilities dropped, engine line printed: the start line, outputs opened (a refused
    /// output ends the run here, before any probe).
    fn start(&mut self, run: &Run) -> Result<(), Fail>;

    /// One batch of events.
    fn on_events(&mut self, run: &Run, batch: &mut [Event]) -> Result<(), Fail>;

    /// After every wait for events: timed work (snapshots, rotation, status).
    fn tick(&mut self, _run: &Run) -> Result<(), Fail> {
        Ok(())
    }

    /// The progress line, asked once a second when [`Lanes::progress`] is on.
    fn progress(&self, _run: &Run) -> Option<String> {
        None
    }

    /// Every receiver has ended (no more events), threads not yet joined: flush what is held.
    fn drained(&mut self, _run: &Run) -> Result<(), Fail> {
        Ok(())
    }

    /// Every thread has ended: write the results, print the mode's summary lines; the exit
    /// status when no thread failed and no signal came ([`EXIT_PIPE`] when the results went
    /// to a closed stdout).
    fn finish(&mut self, run: &Run, end: &End) -> Result<u8, Fail>;
}

/// A status line on stderr: rewritten in place on a terminal, one line each otherwise.
#[derive(Debug)]
pub struct StatusLine {
    tty: bool,
    printed: bool,
}

impl StatusLine {
    /// A status line on this process's stderr.
    pub fn new() -> Self {
        StatusLine {
            tty: std::io::stderr().is_terminal(),
            printed: false,
        }
    }

    /// Shows `line` (in place of the last one on a terminal).
    pub fn show(&mut self, line: &str) {
        self.printed = true;
        if self.tty {
            say_raw!("\r\x1b[2K{line}");
        } else {
            say!("{line}");
        }
    }

    /// Ends the line on a terminal, so what follows starts on a line of its own.
    pub fn end(&self) {
        if self.printed && self.tty {
            say!("");
        }
    }
}

impl Default for StatusLine {
    fn default() -> Self {
        Self::new()
    }
}

/// A progress line once a second (after the first second).
struct Progress {
    on: bool,
    last: Instant,
    line: StatusLine,
}

impl Progress {
    fn show(&mut self, run: &Run, mode: &dyn Mode) {
        if !self.on
            || run.t0.elapsed() < Duration::from_secs(1)
            || self.last.elapsed() < Duration::from_secs(1)
        {
            return;
        }
        self.last = Instant::now();
        if let Some(line) = mode.progress(run) {
            self.line.show(&line);
        }
    }
}

/// Runs `lanes` for `mode`: see the module documentation.
pub fn drive(mut lanes: Lanes, mode: &mut dyn Mode) -> Result<ExitCode, Fail> {
    let (mut run, work, table_lines) = open_lanes(&mut lanes)?;
    mode.prepare(&run)?;
    run.dropped_dac = drop_capabilities();
    say!("{}", engine_line(&run.pipelines, lanes.verbose));
    if lanes.verbose {
        say!("asdic: stamps: {}", stamp_points(&run.pipelines));
    }
    if lanes.verbose {
        table_lines.iter().for_each(|l| say!("{l}"));
    }
    run.started_ns = asdic_engine::now_ns();
    run.t0 = Instant::now();
    mode.start(&run)?;
    run.signals = Some(Signals::install(&run.pipelines, lanes.wait)?);
    let Started {
        handles,
        events,
        recycle,
    } = start_all(&mut run.pipelines, work, &lanes.sizes, &lanes.cores)
        .map_err(Fail::from_start)?;

    let mut refusals = Refusals::default();
    if let Err(e) = event_loop(&lanes, mode, &run, &events, &recycle, &mut refusals) {
        let _ = join_all(handles);
        return Err(e);
    }
    mode.drained(&run)?;
    let (drops, failure) = join_all(handles);
    if let Some(s) = &run.signals {
        s.close();
    }
    let end = End {
        drops,
        elapsed: run.t0.elapsed(),
        kernel: run.kernel(),
    };

    let code = mode.finish(&run, &end)?;
    refusals.report();
    if let Some(l) = kernel_warning(&end.kernel) {
        say!("{l}");
    }
    if let Some(l) = link_warning(&end.kernel) {
        say!("{l}");
    }
    if let Some(l) = lanes
        .rate_goal
        .and_then(|goal| rate_shortfall(goal, run.sent(), run.send_secs()))
    {
        say!("{l}");
    }
    if run.interrupted() {
        say!("asdic: interrupted: results cover the probes sent before the signal");
    }
    match (failure, run.signal()) {
        (Some(e), _) => Err(Fail::System(e)),
        (None, _) if code == EXIT_PIPE => Ok(ExitCode::from(EXIT_PIPE)),
        (None, Some(sig)) if lanes.signal_exits => Ok(ExitCode::from(
            128u8.saturating_add(u8::try_from(sig).unwrap_or(0)),
        )),
        (None, _) => Ok(ExitCode::from(code)),
    }
}

/// Opens every lane's engine (the run's pipelines, not started): the run, each pipeline's
/// work, and the in-flight table lines to print.
fn open_lanes(lanes: &mut Lanes) -> Result<(Run, Vec<Work>, Vec<String>), Fail> {
    let mut opener = Opener::default();
    let mut pipelines = Vec::with_capacity(lanes.lanes.len());
    let mut work = Vec::with_capacity(lanes.lanes.len());
    let mut table_lines = vec![];
    let all = std::mem::take(&mut lanes.lanes);
    let several = all.len() > 1;
    for lane in &all {
        if let Some(l) = &lane.table_line {
            table_lines.push(if several {
                format!("asdic: {:?} {l}", Family::of(lane.hints.toward))
            } else {
                format!("asdic: {l}")
            });
        }
    }
    // Both families through one AF_XDP engine where it can serve them: one pipeline.
    if let [a, b] = all.as_slice() {
        let slots = (a.slots + b.slots).min(a.hints.ids.max_slots() as usize);
        if let Some(mut p) = opener.open_both(slots, &lanes.engine, &a.hints, &b.hints) {
            p.faults = crate::engines::injected_faults();
            let parts = all
                .into_iter()
                .map(|l| (Family::of(l.hints.toward), l.work))
                .collect();
            pipelines.push(p);
            work.push(Work::merge(parts));
            return Ok((run_of(pipelines, lanes.session), work, table_lines));
        }
    }
    for lane in all {
        let mut p = opener
            .open(lane.slots, &lanes.engine, &lane.hints)
            .map_err(Fail::System)?;
        p.faults = crate::engines::injected_faults();
        pipelines.push(p);
        work.push(lane.work);
    }
    Ok((run_of(pipelines, lanes.session), work, table_lines))
}

fn run_of(pipelines: Vec<Pipeline>, session: u32) -> Run {
    Run {
        pipelines,
        t0: Instant::now(),
        started_ns: 0,
        session,
        dropped_dac: false,
        signals: None,
    }
}

/// Feeds the receivers' event batches to `mode` until every receiver has ended, with its
/// timed work and the progress line between them. A mode's error stops the run now (the
/// channel is still emptied, so the receivers can end) and is returned.
fn event_loop(
    lanes: &Lanes,
    mode: &mut dyn Mode,
    run: &Run,
    events: &Receiver<Vec<Event>>,
    recycle: &Sender<Vec<Event>>,
    refusals: &mut Refusals,
) -> Result<(), Fail> {
    let mut progress = Progress {
        on: lanes.progress,
        last: Instant::now(),
        line: StatusLine::new(),
    };
    let mut stopped: Result<(), Fail> = Ok(());
    loop {
        match events.recv_timeout(lanes.poll) {
            Ok(mut batch) => {
                batch.iter().for_each(|ev| refusals.add(ev));
                stopped = mode.on_events(run, &mut batch);
                batch.clear();
                let _ = recycle.try_send(batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if stopped.is_ok() {
            stopped = mode.tick(run);
        }
        if stopped.is_err() {
            run.stop(true);
            // Keep emptying the channel so the receivers can end.
            while events.recv().is_ok() {}
            break;
        }
        progress.show(run, mode);
    }
    progress.line.end();
    stopped
}
