//! `asdic trace`: TTL-limited echo requests to every target at TTLs `--first-ttl..=--max-ttl`,
//! Yarrp-style: the (target, TTL) pairs go out in one seeded pseudo-random order (the pair
//! index is the probe's cookie, so no per-probe state beyond the in-flight table), and a
//! target's pairs beyond the TTL where its destination answered are skipped. One engine per
//! address family, as `ping`; hop rows to Parquet, a traceroute-style path per target on
//! stdout.

use core::net::IpAddr;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use asdic_analysis::meta::millis;
use asdic_analysis::{Format, HopRow, Paths, RunMeta, RunMode, Sink, counted, text_sink};
use asdic_core::event::Event;
use asdic_core::targets;
use asdic_core::trace::{Pairs, Reached, Trace};
use asdic_wire::Family;
use asdic_wire::template::FLOW_PAYLOAD;

use crate::args::{TraceArgs, check_rate};
use crate::dataset::RunPartition;
use crate::drive::{EXIT_PIPE, End, Lane, Lanes, Mode, Run, drive};
use crate::engines::RunHints;
use crate::inputs::{read_specs, table_for, work};
use crate::output::{Asked, Results, Snapshots, broken_pipe};
use crate::{Fail, usage};

/// Most targets one trace holds: its hop table keeps about 80 bytes per (target, TTL).
const MAX_TARGETS: u64 = 1 << 20;
/// Rate when none is given, however many probes: a trace has no interval to keep.
const DEFAULT_RATE: f64 = 100.0;
/// TTL of the engines' sockets; every trace probe names its own.
const SOCKET_TTL: u8 = 64;

/// Checks every option before anything is opened or sent; returns the rate.
fn validate(a: &TraceArgs) -> Result<f64, Fail> {
    if a.first_ttl > a.max_ttl {
        return Err(usage(format!(
            "--first-ttl {} is above --max-ttl {}",
            a.first_ttl, a.max_ttl
        )));
    }
    if a.size < FLOW_PAYLOAD {
        return Err(usage(format!(
            "--size {}: below trace's minimum of {FLOW_PAYLOAD} bytes (the probe stamp, its \
             MAC and the word that keeps a target's probes one flow)",
            a.size,
        )));
    }
    if a.size > 1400 {
        return Err(usage(format!(
            "--size {}: at most 1400 bytes (a trace probe should not be fragmented)",
            a.size
        )));
    }
    if a.timeout.is_zero() {
        return Err(usage("--timeout 0: must be positive"));
    }
    a.io.validate().map_err(usage)?;
    check_rate(a.rate).map_err(usage)?;
    Ok(a.rate.unwrap_or(DEFAULT_RATE))
}

/// One family's share of the run.
struct Part {
    family: Family,
    targets: Arc<[IpAddr]>,
    /// Global index of its first target.
    offset: usize,
    pairs: Pairs,
    reached: Arc<Reached>,
}

/// Runs `asdic trace`.
pub fn run(a: TraceArgs) -> Result<ExitCode, Fail> {
    let specs = read_specs(&a.targets, a.file.as_deref(), MAX_TARGETS)?;
    let total = targets::total(&specs);
    let rate = validate(&a)?;
    if total > u128::from(MAX_TARGETS) {
        return Err(usage(format!(
            "{total} targets: a trace holds at most {MAX_TARGETS} (about 80 bytes per target \
             and TTL); split the list"
        )));
    }
    let all = targets::expand(&specs, MAX_TARGETS).map_err(|e| usage(format!("targets: {e}")))?;
    let ids = crate::inputs::ids(a.id);
    let seed = a.seed.unwrap_or_else(crate::inputs::random_u64);
    let dataset = a
        .dataset
        .as_deref()
        .map(|d| (d, RunPartition::name(a.run_id.as_deref(), ids.session)));
    let asked = Asked::new(
        a.output.as_deref(),
        a.force,
        dataset,
        a.format.map(|f| ("--format", f)),
    )?;
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = all.iter().partition(|t| t.is_ipv4());
    let mut parts = vec![];
    for (family, list, offset) in [(Family::V4, &v4, 0), (Family::V6, &v6, v4.len())] {
        if list.is_empty() {
            continue;
        }
        let n = u32::try_from(list.len()).map_err(|_| usage("too many targets"))?;
        let pairs = Pairs::new(n, a.first_ttl, a.max_ttl)
            .ok_or_else(|| usage("too many targets × TTLs to number (at most 2^32)"))?;
        parts.push(Part {
            family,
            targets: list.as_slice().into(),
            offset,
            pairs,
            reached: Arc::new(Reached::new(list.len())),
        });
    }
    let probes_max: u64 = parts.iter().map(|p| p.pairs.len()).sum();
    let engine = a.io.options(SOCKET_TTL, a.interface.clone(), a.size, None);
    let mut lanes = vec![];
    for p in &parts {
        let share = rate * p.pairs.len() as f64 / probes_max.max(1) as f64;
        let source = Trace::new(p.targets.clone(), p.pairs, seed, p.reached.clone())
            .map_err(|e| Fail::System(e.into()))?;
        let (slots, table_line) = table_for(
            ids,
            share,
            a.timeout,
            p.pairs.len(),
            &format!("{} (target, TTL) pairs in all", p.pairs.len()),
        );
        lanes.push(Lane {
            table_line: Some(table_line),
            slots,
            hints: RunHints::tracked(p.targets[0], ids, p.pairs.len()),
            work: {
                let mut w = work(share, &engine, ids, a.timeout, 0, 4096, Box::new(source));
                w.sender.flow = Some(a.flow);
                // The source the kernel picks towards the first target (raw and io_uring
                // IPv6 sockets; whole frames name theirs).
                if let Ok(IpAddr::V6(src)) = asdic_engine::netlink::source_for(p.targets[0]) {
                    w.flow_source = Some(src);
                }
                w
            },
        });
    }
    let lanes = Lanes {
        engine,
        lanes,
        sizes: vec![a.size],
        cores: a.io.cores.clone(),
        verbose: a.io.verbose,
        wait: a.timeout,
        poll: Duration::from_millis(200),
        progress: !a.no_progress && !a.quiet,
        rate_goal: None,
        session: ids.session,
        signal_exits: true,
    };
    let order: Vec<IpAddr> = v4.iter().chain(v6.iter()).copied().collect();
    let mut mode = Tracing {
        asked,
        results: None,
        targets: order.len(),
        paths: Paths::new(order, a.first_ttl, a.max_ttl).with_flow(a.flow),
        a,
        rate,
        seed,
        parts,
        probes_max,
        v6: v6.len(),
        foreign: 0,
    };
    drive(lanes, &mut mode)
}

/// `trace`'s part of a run: the paths, snapshots, the paths printed and the file.
struct Tracing {
    /// What -o or --dataset asked for, and the results file once the run started.
    asked: Asked,
    results: Option<Results>,
    a: TraceArgs,
    rate: f64,
    seed: u64,
    parts: Vec<Part>,
    probes_max: u64,
    /// Targets, and how many of them are IPv6.
    targets: usize,
    v6: usize,
    paths: Paths,
    /// Events naming no (target, TTL) of this trace.
    foreign: u64,
}

impl Mode for Tracing {
    fn start(&mut self, run: &Run) -> Result<(), Fail> {
        // Opened first: a refused output ends the run before its start line.
        self.results = Results::open(
            &self.asked,
            &self.metadata(run),
            self.a.sync_every,
            run.dropped_dac,
        )?;
        let (a, n) = (&self.a, self.targets);
        say!(
            "asdic: tracing {} ({} IPv4, {} IPv6) at TTL {}..={}: at most {} \
             in a random order (seed {}), {} probes/s, timeout {:?}",
            counted(n as u64, "target", "targets"),
            n - self.v6,
            self.v6,
            a.first_ttl,
            a.max_ttl,
            counted(self.probes_max, "probe", "probes"),
            self.seed,
            self.rate,
            a.timeout,
        );
        Ok(())
    }

    fn on_events(&mut self, _run: &Run, batch: &mut [Event]) -> Result<(), Fail> {
        for ev in batch.iter() {
            if !record(&self.parts, &mut self.paths, ev) {
                self.foreign += 1;
            }
        }
        Ok(())
    }

    fn tick(&mut self, _run: &Run) -> Result<(), Fail> {
        if let Some(r) = self.results.as_mut() {
            r.tick_with(|| {
                let paths = self.paths.clone();
                Box::new(move |s: &mut Snapshots| s.write(|sink| write_rows(&paths, sink)))
            });
        }
        Ok(())
    }

    fn progress(&self, run: &Run) -> Option<String> {
        let skipped: u64 = self.parts.iter().map(|p| p.reached.skipped()).sum();
        let secs = run.t0.elapsed().as_secs_f64();
        let sent = run.sent();
        Some(format!(
            "{secs:6.1}s sent {sent} + skipped {skipped} of {} probes ({:.0}/s) replies \
             {} errors {} timeouts {} kernel drops {}",
            self.probes_max,
            sent as f64 / secs.max(1e-9),
            run.sum(|p| p.receiver.replies.load(Ordering::Relaxed)),
            run.sum(|p| p.receiver.errors.load(Ordering::Relaxed)),
            run.sum(|p| p.receiver.timeouts.load(Ordering::Relaxed)),
            run.kernel().lost()
        ))
    }

    fn finish(&mut self, run: &Run, end: &End) -> Result<u8, Fail> {
        let totals = self.paths.totals();
        let sent = run.sent();
        let skipped: u64 = self.parts.iter().map(|p| p.reached.skipped()).sum();
        let summary = format!(
            "{} targets: {} reached, {} unreachable, {} not reached; {sent} probes sent, \
             {skipped} skipped beyond path ends, {} timed out",
            totals.targets,
            totals.reached,
            totals.unreachable,
            totals.targets - totals.reached - totals.unreachable,
            totals.timeouts
        );
        // Results to a closed stdout: the rest (-o) is still written, then exit 141.
        let mut pipe = false;
        let on_stdout = self.results.as_ref().is_some_and(Results::on_stdout);
        if !self.a.quiet && !on_stdout {
            match self.print_paths() {
                Err(e) if broken_pipe(&e) => pipe = true,
                r => r?,
            }
        }
        // Before the file, so that its count of lost diagnostics includes these lines.
        say!("asdic: {summary}");
        say!(
            "asdic: {:.2}s in all, {} refused by the local stack; dropped: {}, {} not of this \
             trace; {}",
            end.elapsed.as_secs_f64(),
            run.failed(),
            end.drops,
            self.foreign,
            end.kernel
        );
        run.say_grouped();
        if let Some(results) = self.results.take() {
            let meta = RunMeta {
                summary: Some(summary.clone()),
                probes_sent: Some(sent),
                probes_skipped: Some(skipped),
                ..self.metadata(run).and(run.end_meta(&end.kernel))
            };
            match results.write(&meta, !run.interrupted(), |sink| {
                write_rows(&self.paths, sink)
            }) {
                Err(e) if on_stdout && broken_pipe(&e) => pipe = true,
                r => {
                    r?;
                }
            }
        }
        // As ping: 0 when every destination answered, 1 when some did not.
        Ok(if pipe {
            EXIT_PIPE
        } else if totals.reached == totals.targets {
            0
        } else {
            1
        })
    }
}

impl Tracing {
    /// The paths on stdout, as `--format` asks.
    fn print_paths(&self) -> anyhow::Result<()> {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        match self.a.format.unwrap_or(Format::Text) {
            Format::Text => {
                for t in 0..self.targets {
                    self.paths
                        .write_path(t, &mut w)
                        .context("writing paths to stdout")?;
                }
                w.flush().context("writing paths to stdout")?;
            }
            f => {
                let mut sink = text_sink::<HopRow<'_>, _>(f, w)?;
                write_rows(&self.paths, sink.as_mut()).context("writing hops to stdout")?;
                sink.finish().context("writing hops to stdout")?;
            }
        }
        Ok(())
    }

    /// The run's Parquet metadata (the end's keys are added when the run ends).
    fn metadata(&self, run: &Run) -> RunMeta {
        let a = &self.a;
        RunMeta {
            families: Some(run.families()),
            rate_pps: Some(self.rate),
            first_ttl: Some(a.first_ttl),
            max_ttl: Some(a.max_ttl),
            timeout_ms: Some(millis(a.timeout)),
            size: Some(a.size as u64),
            seed: Some(self.seed),
            run_id: self.asked.run_id(),
            ..run.meta(RunMode::Trace)
        }
    }
}

/// Folds one event into the paths and tells its family's source where a path now ends.
/// `false` when the event names no (target, TTL) of this trace.
fn record(parts: &[Part], paths: &mut Paths, ev: &Event) -> bool {
    let v4 = ev.target.is_ipv4();
    let Some(part) = parts.iter().find(|p| (p.family == Family::V4) == v4) else {
        return false;
    };
    let Some((t, ttl)) = part.pairs.pair(u64::from(ev.cookie)) else {
        return false;
    };
    if part.targets.get(t as usize) != Some(&ev.target) {
        return false;
    }
    if let Some(end) = paths.record(part.offset + t as usize, ttl, ev) {
        part.reached.mark(t, end);
    }
    true
}

fn write_rows<'a>(paths: &'a Paths, sink: &mut dyn Sink<HopRow<'a>>) -> anyhow::Result<()> {
    Ok(asdic_analysis::write_chunked(sink, paths.rows())?)
}
