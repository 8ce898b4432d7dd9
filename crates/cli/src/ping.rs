//! `asdic ping`: validate the plan, open one engine per address family, run sender and
//! receiver threads, aggregate events, print and write results.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use asdic_analysis::meta::millis;
use asdic_analysis::{
    Aggregator, Format, ProbeRow, Probes, Row, RunMeta, RunMode, Sink, TableSink, counted,
    sink_for, summary_line, table_label_width, text_sink, write_chunked,
};
use asdic_core::event::Event;
use asdic_core::set::{Side, TargetList};
use asdic_core::source::Rounds;
use asdic_wire::payload;
use asdic_wire::template::MAX_PAYLOAD;

use crate::args::{PingArgs, check_rate};
use crate::closing::sent_line;
use crate::dataset::RunPartition;
use crate::drive::{EXIT_PIPE, End, Lane, Lanes, Mode, Run, drive};
use crate::engines::RunHints;
use crate::inputs::{read_set, table_for, work};
use crate::output::{Asked, Results, Snapshots, broken_pipe};
use crate::{Fail, usage};

/// Most targets `ping` lists in memory.
const MAX_TARGETS: u64 = 1 << 24;
/// Rate when none is given (fping's 10 ms between probes), and the most a run may need
/// without --rate.
const DEFAULT_RATE: f64 = 100.0;
/// Most probes `--per-probe` keeps (56 bytes each: 224 MiB).
const PER_PROBE_MAX: u128 = 1 << 22;

/// Checks every option before anything is opened or sent.
fn validate(a: &PingArgs, targets: u64) -> Result<f64, Fail> {
    let probes = u128::from(targets).saturating_mul(u128::from(a.count));
    if a.size < payload::LEN {
        return Err(usage(format!(
            "--size {}: below the minimum of {} bytes (the probe stamp and its MAC)",
            a.size,
            payload::LEN
        )));
    }
    if a.size > MAX_PAYLOAD {
        return Err(usage(format!(
            "--size {}: above the raw engine's maximum of {MAX_PAYLOAD} bytes",
            a.size
        )));
    }
    if a.count == 0 {
        return Err(usage("--count 0: must be at least 1"));
    }
    if a.timeout.is_zero() {
        return Err(usage("--timeout 0: must be positive"));
    }
    a.io.validate().map_err(usage)?;
    check_rate(a.rate).map_err(usage)?;
    let tries = probes.saturating_mul(1 + u128::from(a.retries));
    if a.per_probe && tries > PER_PROBE_MAX {
        return Err(usage(format!(
            "--per-probe: {tries} probes with retries, more than the {PER_PROBE_MAX} it keeps \
             (56 bytes each); split the targets or lower --count"
        )));
    }
    match a.rate {
        Some(r) => Ok(r),
        None => implied_rate(targets, a.count, a.interval).map_err(usage),
    }
}

/// The rate of a ping without --rate: the default, unless the interval asks for more (targets
/// ÷ --interval probes/s), when --rate is required. With -c 1 there is no interval to keep:
/// the probes go at the default, however many there are.
fn implied_rate(targets: u64, count: u32, interval: Duration) -> Result<f64, String> {
    if count <= 1 {
        return Ok(DEFAULT_RATE);
    }
    if interval.is_zero() {
        return Err(format!(
            "-i 0 sends each target's probes back to back: give --rate (above the default \
             {DEFAULT_RATE:.0}/s) to say how many probes per second this network may take"
        ));
    }
    let needed = targets as f64 / interval.as_secs_f64();
    if needed > DEFAULT_RATE {
        return Err(format!(
            "{} every {interval:?} need {needed:.0} probes/s, above the default \
             {DEFAULT_RATE:.0}/s: give --rate {:.0} (or more) to allow it, or a longer -i",
            counted(targets, "target", "targets"),
            needed.ceil()
        ));
    }
    Ok(DEFAULT_RATE)
}

/// Runs `asdic ping`.
pub fn run(a: PingArgs) -> Result<ExitCode, Fail> {
    let set = Arc::new(read_set(
        &a.targets,
        a.file.as_deref(),
        u128::from(MAX_TARGETS),
    )?);
    let rate = validate(&a, set.len())?;
    let ids = crate::inputs::ids(a.id);
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

    // One lane per family over its side of the set; a target's cookie is its index in the
    // set (IPv4 first), the aggregator's index.
    let engine = a.io.options(a.ttl, a.interface.clone(), a.size, None);
    let mut lanes = vec![];
    for (v6, offset) in [(false, 0u32), (true, set.v4.len() as u32)] {
        let list = Side::of(&set, v6);
        let n = list.len();
        let Some(toward) = list.nth(0) else {
            continue;
        };
        let share = rate * n as f64 / set.len() as f64;
        let hints = RunHints {
            toward,
            ids,
            probes: n
                .saturating_mul(u64::from(a.count))
                .saturating_mul(1 + u64::from(a.retries)),
            tracked: true,
        };
        let source =
            Box::new(Rounds::new(Arc::new(list), a.count, a.interval).with_cookie_base(offset));
        // A target has a probe out per interval for as long as one waits (and its retries).
        let per_target =
            (a.timeout.as_secs_f64() / a.interval.as_secs_f64().max(1e-9)).ceil() as u64 + 1;
        let each = per_target.min(u64::from(a.count)) * (1 + u64::from(a.retries));
        let (slots, table_line) = table_for(
            ids,
            share,
            a.timeout,
            n.saturating_mul(each),
            &format!(
                "{} × {} each in flight at most",
                counted(n, "target", "targets"),
                counted(each, "probe", "probes")
            ),
        );
        lanes.push(Lane {
            slots,
            hints,
            work: work(share, &engine, ids, a.timeout, a.retries, 4096, source),
            table_line: Some(table_line),
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
    let mut mode = Ping {
        asked,
        results: None,
        expected: set.len() * u64::from(a.count),
        v6_targets: set.v6.len() as usize,
        probes: a.per_probe.then(|| Probes::over(set.clone())),
        agg: Aggregator::over(set),
        a,
        rate,
    };
    drive(lanes, &mut mode)
}

/// `ping`'s part of a run: per-target statistics, snapshots, the table and the file.
struct Ping {
    /// What -o or --dataset asked for, and the results file once the run started.
    asked: Asked,
    results: Option<Results>,
    a: PingArgs,
    rate: f64,
    /// How many of the targets are IPv6.
    v6_targets: usize,
    agg: Aggregator,
    /// Every probe's outcome, with `--per-probe`.
    probes: Option<Probes>,
    expected: u64,
}

impl Mode for Ping {
    fn start(&mut self, run: &Run) -> Result<(), Fail> {
        // Opened first: a refused output ends the run before its start line.
        self.results = Results::open(
            &self.asked,
            &self.metadata(run),
            self.a.sync_every,
            run.dropped_dac,
        )?;
        let (n, n6) = (self.agg.len(), self.v6_targets);
        let a = &self.a;
        say!(
            "asdic: {} ({} IPv4, {n6} IPv6), {} each{}, at most {} probes/s, timeout {:?}, \
             size {} bytes",
            counted(n as u64, "target", "targets"),
            n - n6,
            counted(u64::from(a.count), "probe", "probes"),
            if a.count > 1 {
                format!(" every {:?}", a.interval)
            } else {
                String::new()
            },
            self.rate,
            a.timeout,
            a.size
        );
        Ok(())
    }

    fn on_events(&mut self, _run: &Run, batch: &mut [Event]) -> Result<(), Fail> {
        self.agg.record_batch(batch);
        if let Some(p) = self.probes.as_mut() {
            p.record_batch(batch);
        }
        Ok(())
    }

    fn tick(&mut self, _run: &Run) -> Result<(), Fail> {
        if let Some(r) = self.results.as_mut() {
            r.tick_with(|| match &self.probes {
                Some(p) => {
                    let mut p = p.clone();
                    Box::new(move |s: &mut Snapshots| s.write(|sink| write_probes(&mut p, sink)))
                }
                None => {
                    let agg = self.agg.clone();
                    Box::new(move |s: &mut Snapshots| s.write(|sink| write_all(&agg, sink)))
                }
            });
        }
        Ok(())
    }

    fn progress(&self, run: &Run) -> Option<String> {
        Some(progress_line(run, self.expected, self.a.timeout))
    }

    fn finish(&mut self, run: &Run, end: &End) -> Result<u8, Fail> {
        let totals = self.agg.totals();
        let a = &self.a;
        // Results to a closed stdout: the rest (-o) is still written, then exit 141.
        let mut pipe = false;
        let on_stdout = self.results.as_ref().is_some_and(Results::on_stdout);
        if !a.quiet && !on_stdout {
            let out = Box::new(std::io::BufWriter::new(std::io::stdout().lock()));
            let format = a.format.unwrap_or(Format::Table);
            let printed = match self.probes.as_mut() {
                Some(p) if format == Format::Table => print_per_probe(p, out),
                Some(p) => text_sink::<ProbeRow, _>(format, out)
                    .map_err(anyhow::Error::from)
                    .and_then(|mut sink| {
                        write_probes(p, sink.as_mut())?;
                        Ok(sink.finish()?)
                    }),
                // The table's target column as wide as the longest target: every line aligns.
                None if format == Format::Table => {
                    let width = self.agg.rows().map(|r| table_label_width(&r)).max();
                    let mut sink = TableSink::with_target_width(out, width.unwrap_or(0));
                    write_all(&self.agg, &mut sink).and_then(|()| Ok(Box::new(sink).finish()?))
                }
                None => sink_for(format, out)
                    .map_err(anyhow::Error::from)
                    .and_then(|mut sink| {
                        write_all(&self.agg, sink.as_mut())?;
                        Ok(sink.finish()?)
                    }),
            }
            .context("writing results to stdout");
            match printed {
                Err(e) if broken_pipe(&e) => pipe = true,
                r => r?,
            }
        }
        // The summary goes out before the file is written, so that the file's count of lost
        // diagnostics (a closed stderr) includes it.
        let sent = run.sent();
        say!("asdic: {}", summary_line(&totals));
        say!(
            "asdic: {}, {} refused by the local stack; dropped: {}; {}",
            sent_line(sent, run.send_span_secs(), end.elapsed.as_secs_f64()),
            run.failed(),
            end.drops,
            end.kernel
        );
        run.say_grouped();
        if let Some(results) = self.results.take() {
            let meta = RunMeta {
                summary: Some(summary_line(&totals)),
                ..self.metadata(run).and(run.end_meta(&end.kernel))
            };
            let complete = !run.interrupted();
            let written = match self.probes.as_mut() {
                Some(p) => results.write(&meta, complete, |sink| write_probes(p, sink)),
                None => results.write(&meta, complete, |sink| write_all(&self.agg, sink)),
            };
            match written {
                Err(e) if on_stdout && broken_pipe(&e) => pipe = true,
                r => {
                    r?;
                }
            }
        }
        // fping's convention: 0 when every target answered, 1 when some did not.
        Ok(if pipe {
            EXIT_PIPE
        } else if totals.alive == totals.targets {
            0
        } else {
            1
        })
    }
}

fn write_all<'a>(agg: &'a Aggregator, sink: &mut dyn Sink<Row<'a>>) -> anyhow::Result<()> {
    Ok(write_chunked(sink, agg.rows())?)
}

fn write_probes(p: &mut Probes, sink: &mut dyn Sink<ProbeRow>) -> anyhow::Result<()> {
    Ok(write_chunked(sink, p.rows())?)
}

/// `--per-probe` as a table, as fping -C prints it: per target, each probe's RTT in ms in
/// probe order, "-" for one without a reply (timed out, errored, refused).
fn print_per_probe(p: &mut Probes, mut out: Box<dyn std::io::Write + '_>) -> anyhow::Result<()> {
    let mut line = String::new();
    let mut current = None;
    // The target column as wide as the longest target: every line aligns.
    let width = p
        .rows()
        .map(|r| r.target.to_string().len())
        .max()
        .unwrap_or(0)
        .max(15);
    for row in p.rows() {
        if current != Some(row.target) {
            if current.is_some() {
                writeln!(out, "{line}")?;
            }
            current = Some(row.target);
            line.clear();
            let _ = write!(line, "{:<width$} :", row.target.to_string());
        }
        match (row.outcome, row.rtt_ns) {
            ("reply", Some(ns)) => {
                let _ = write!(line, " {:.3}", ns as f64 / 1e6);
            }
            ("late" | "duplicate", _) => {}
            _ => line.push_str(" -"),
        }
    }
    if current.is_some() {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

fn progress_line(run: &Run, expected: u64, timeout: Duration) -> String {
    progress_text(&ProgressView {
        secs: run.t0.elapsed().as_secs_f64(),
        sent: run.sent(),
        expected,
        replies: run.sum(|p| p.receiver.replies.load(Ordering::Relaxed)),
        errors: run.sum(|p| p.receiver.errors.load(Ordering::Relaxed)),
        timeouts: run.sum(|p| p.receiver.timeouts.load(Ordering::Relaxed)),
        kernel: run.kernel().lost(),
        since_last_send: run.since_last_send_secs(),
        timeout: timeout.as_secs_f64(),
    })
}

/// What the progress line is computed from.
struct ProgressView {
    secs: f64,
    sent: u64,
    expected: u64,
    replies: u64,
    errors: u64,
    timeouts: u64,
    kernel: u64,
    /// Seconds since the last probe went out (`None` before the first).
    since_last_send: Option<f64>,
    timeout: f64,
}

/// The progress line. In flight: probes sent whose answer (reply, ICMP error) or timeout has
/// not come yet — not the table's claimed slots, which also hold answered probes until
/// reaped. ETA: the probes still to send at the rate so far, then the last probe's wait for
/// its answer (during that wait, what is left of it).
fn progress_text(v: &ProgressView) -> String {
    let ended = v.replies + v.errors + v.timeouts;
    let in_flight = v.sent.saturating_sub(ended);
    let pps = v.sent as f64 / v.secs.max(1e-9);
    let pct = 100.0 * v.sent.min(v.expected) as f64 / v.expected.max(1) as f64;
    let eta = if v.sent < v.expected {
        (v.expected - v.sent) as f64 / pps.max(1e-9) + v.timeout
    } else if in_flight == 0 {
        0.0
    } else {
        (v.timeout - v.since_last_send.unwrap_or(0.0)).max(0.0)
    };
    format!(
        "{:6.1}s sent {}/{} ({pct:.1}%, {pps:.0}/s) replies {} errors {} timeouts {} in flight \
         {in_flight} kernel drops {} ETA {:.0}s",
        v.secs,
        v.sent,
        v.expected,
        v.replies,
        v.errors,
        v.timeouts,
        v.kernel,
        eta.ceil()
    )
}

impl Ping {
    /// The run's Parquet metadata (the end's keys are added when the run ends).
    fn metadata(&self, run: &Run) -> RunMeta {
        let a = &self.a;
        RunMeta {
            families: Some(run.families()),
            rate_pps: Some(self.rate),
            count: Some(a.count),
            interval_ms: Some(millis(a.interval)),
            timeout_ms: Some(millis(a.timeout)),
            retries: Some(a.retries),
            size: Some(a.size as u64),
            ttl: Some(a.ttl),
            run_id: self.asked.run_id(),
            ..run.meta(RunMode::Ping)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_what_awaits_an_answer_and_the_wait_in_its_eta() {
        let v = ProgressView {
            secs: 2.0,
            sent: 200,
            expected: 300,
            replies: 190,
            errors: 4,
            timeouts: 3,
            kernel: 0,
            since_last_send: Some(0.01),
            timeout: 1.0,
        };
        // 3 awaiting (200 - 190 - 4 - 3); 100 more at 100/s, then the 1 s wait.
        let t = progress_text(&v);
        assert!(t.contains("in flight 3 ") && t.ends_with("ETA 2s"), "{t}");
        // Everything sent, 0.25 s into the last probe's wait: what is left of it.
        let t = progress_text(&ProgressView {
            sent: 300,
            since_last_send: Some(0.25),
            ..v
        });
        assert!(t.contains("in flight 103 ") && t.ends_with("ETA 1s"), "{t}");
        let t = progress_text(&ProgressView {
            sent: 300,
            replies: 293,
            since_last_send: Some(0.25),
            ..v
        });
        assert!(t.contains("in flight 0 ") && t.ends_with("ETA 0s"), "{t}");
        assert!(t.contains("sent 300/300 (100.0%, 150/s)"), "{t}");
    }

    #[test]
    fn rate_is_required_by_rate_not_by_count() {
        let s = Duration::from_secs(1);
        // One target a second for 300 probes: 1/s, no --rate needed.
        assert_eq!(implied_rate(1, 300, s), Ok(DEFAULT_RATE));
        // -c 1: no interval to keep, any number of targets at the default.
        assert_eq!(implied_rate(65_536, 1, Duration::ZERO), Ok(DEFAULT_RATE));
        // 100 targets every second is the default exactly; 101 is above it.
        assert_eq!(implied_rate(100, 3, s), Ok(DEFAULT_RATE));
        let e = implied_rate(101, 3, s).unwrap_err();
        assert!(
            e.contains("101 probes/s") && e.contains("--rate 101"),
            "{e}"
        );
        let e = implied_rate(256, 3, Duration::from_millis(500)).unwrap_err();
        assert!(
            e.contains("256 targets every 500ms need 512 probes/s") && e.contains("--rate 512"),
            "{e}"
        );
        let e = implied_rate(1, 2, Duration::ZERO).unwrap_err();
        assert!(e.contains("-i 0") && e.contains("--rate"), "{e}");
        assert!(implied_rate(1, 2, Duration::from_millis(10)).is_ok());
        assert!(implied_rate(1, 2, Duration::from_micros(9_999)).is_err());
    }
}
