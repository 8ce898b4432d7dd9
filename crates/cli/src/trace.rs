//! `asdic trace`: TTL-limited echo requests to every target at TTLs `--first-ttl..=--max-ttl`,
//! Yarrp-style: the (target, TTL) pairs go out in one seeded pseudo-random order (the pair
//! index is the probe's cookie, so no per-probe state beyond the in-flight table), and a
//! target's pairs beyond the TTL where its destination answered are skipped. One engine per
//! address family, as `ping`; hop rows to Parquet, a traceroute-style path per target on
//! stdout.

use core::net::IpAddr;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use asdic_analysis::{HopRow, ParquetSink, Paths, Sink, TextFormat, text_sink};
use asdic_core::event::Event;
use asdic_core::source::Source;
use asdic_core::targets;
use asdic_core::trace::{Pairs, Reached, Trace};
use asdic_wire::Family;
use asdic_wire::payload::{self, Key, Numbering};

use crate::Fail;
use crate::args::{IdChoice, TraceArgs, TraceFormat};
use crate::pipeline::{
    EngineOptions, Ids, Pipeline, Refusals, RunHints, Signals, Started, Work, Writes, configs,
    engine_names, join_all, kernel_drops, kernel_metadata, kernel_warning, random_u64, read_specs,
    ready, slots_for, start_all,
};
use crate::snapshot::Snapshots;

/// Most targets one trace holds: its hop table keeps about 80 bytes per (target, TTL).
const MAX_TARGETS: u64 = 1 << 20;
/// Above this many probes, --rate must be given.
const DEFAULT_RATE_LIMIT: u64 = 256;
/// Rate when none is given.
const DEFAULT_RATE: f64 = 100.0;
/// TTL of the engines' sockets; every trace probe names its own.
const SOCKET_TTL: u8 = 64;

fn usage(msg: impl Into<String>) -> Fail {
    Fail::Usage(msg.into())
}

/// Checks every option before anything is opened or sent; returns the rate.
fn validate(a: &TraceArgs, probes: u128) -> Result<f64, Fail> {
    if a.max_ttl == 0 {
        return Err(usage("--max-ttl 0: must be 1..=255"));
    }
    if a.first_ttl == 0 {
        return Err(usage("--first-ttl 0: must be 1..=255"));
    }
    if a.first_ttl > a.max_ttl {
        return Err(usage(format!(
            "--first-ttl {} is above --max-ttl {}",
            a.first_ttl, a.max_ttl
        )));
    }
    if a.size < payload::LEN {
        return Err(usage(format!(
            "--size {}: below the minimum of {} bytes (the probe stamp and its MAC)",
            a.size,
            payload::LEN
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
    if a.batch == 0 || a.batch > 1024 {
        return Err(usage(format!("--batch {}: must be 1..=1024", a.batch)));
    }
    crate::pipeline::check_cores(&a.cores).map_err(usage)?;
    match a.rate {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= 100e6) => Err(usage(format!(
            "--rate {r}: must be a positive number of probes per second"
        ))),
        Some(r) => Ok(r),
        None if probes > u128::from(DEFAULT_RATE_LIMIT) => Err(usage(format!(
            "--rate is required for {probes} probes (targets × TTLs, more than \
             {DEFAULT_RATE_LIMIT}): say how many probes per second this network may take"
        ))),
        None => Ok(DEFAULT_RATE),
    }
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
    let specs = read_specs(&a.targets, a.file.as_deref())?;
    let total = targets::total(&specs);
    let hops = u128::from(a.max_ttl.saturating_sub(a.first_ttl)) + 1;
    let rate = validate(&a, total.saturating_mul(hops))?;
    if total > u128::from(MAX_TARGETS) {
        return Err(usage(format!(
            "{total} targets: a trace holds at most {MAX_TARGETS} (about 80 bytes per target \
             and TTL); split the list"
        )));
    }
    let all = targets::expand(&specs, MAX_TARGETS).map_err(|e| usage(format!("targets: {e}")))?;
    let numbering = match a.id {
        IdChoice::Random => Numbering::Spread {
            base: random_u64() as u16,
        },
        IdChoice::Fixed(ident) => Numbering::Fixed { ident },
    };
    let key = Key::new(random_u64(), random_u64());
    let session = random_u64() as u32;
    let seed = a.seed.unwrap_or_else(random_u64);

    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = all.iter().partition(|t| t.is_ipv4());
    let order: Vec<IpAddr> = v4.iter().chain(v6.iter()).copied().collect();
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
    let engine = EngineOptions {
        ttl: SOCKET_TTL,
        device: a.interface.clone(),
        batch: a.batch,
        size: a.size,
        choice: a.engine,
        xdp_mode: a.xdp_mode,
        gateway_mac: a.gateway_mac,
        xdp_rx_frames: None,
        queues: a.queues.clone().map(|q| q.0),
    };
    let ids = Ids {
        numbering,
        session,
        key,
    };
    let share = |p: &Part| rate * p.pairs.len() as f64 / probes_max.max(1) as f64;
    let mut pipelines = vec![];
    for p in &parts {
        let max = if numbering.bits() == 16 {
            1 << 16
        } else {
            1 << 21
        };
        let slots = slots_for(share(p), a.timeout).min(max) as usize;
        let hints = RunHints {
            toward: p.targets[0],
            ids,
            probes: p.pairs.len(),
        };
        pipelines.push(Pipeline::open(p.family, slots, &engine, &hints)?);
    }
    ready(
        &pipelines,
        a.output.as_deref().map(|o| Writes::beside("-o", o)),
    )?;
    eprintln!(
        "asdic: tracing {} targets ({} IPv4, {} IPv6) at TTL {}..={}: at most {probes_max} \
         probes in a random order (seed {seed}), {rate} probes/s, timeout {:?}",
        order.len(),
        v4.len(),
        v6.len(),
        a.first_ttl,
        a.max_ttl,
        a.timeout,
    );

    let started_ns = asdic_engine::now_ns();
    let t0 = Instant::now();
    let signals = Signals::install(&pipelines, a.timeout)?;
    let mut work: Vec<Work> = vec![];
    for p in &parts {
        let (cfg, rx_cfg) = configs(share(p), &engine, ids, a.timeout, 0, 4096);
        let source = Trace::new(p.targets.clone(), p.pairs, seed, p.reached.clone())
            .map_err(|e| Fail::System(e.into()))?;
        work.push((cfg, rx_cfg, Box::new(source) as Box<dyn Source + Send>));
    }
    let Started {
        handles,
        events: ev_rx,
        recycle: recycle_tx,
    } = start_all(&mut pipelines, work, &[a.size], &a.cores)?;

    let mut paths = Paths::new(order.clone(), a.first_ttl, a.max_ttl);
    let mut foreign = 0u64;
    let mut last_print = Instant::now();
    let mut snapshots = a.output.as_ref().map(|path| {
        Snapshots::new(
            path,
            run_metadata(&a, rate, seed, session, started_ns, &pipelines),
            a.sync_every,
        )
    });
    let mut printed = false;
    let tty = std::io::stderr().is_terminal();
    let mut refusals = Refusals::default();
    loop {
        match ev_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(mut batch) => {
                for ev in &batch {
                    refusals.add(ev);
                    if !record(&parts, &mut paths, ev) {
                        foreign += 1;
                    }
                }
                batch.clear();
                let _ = recycle_tx.try_send(batch);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(snap) = snapshots.as_mut().filter(|s| s.due()) {
            snap.write(|sink| write_rows(&paths, sink));
        }
        if !a.no_progress
            && t0.elapsed() >= Duration::from_secs(1)
            && last_print.elapsed() >= Duration::from_secs(1)
        {
            last_print = Instant::now();
            printed = true;
            let line = progress_line(&pipelines, &parts, probes_max, t0.elapsed());
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
    if printed && tty {
        eprintln!();
    }
    let (drops, failure) = join_all(handles);
    let elapsed = t0.elapsed();
    signals.close();

    let totals = paths.totals();
    let kernel = kernel_drops(&pipelines);
    let sent: u64 = pipelines
        .iter()
        .map(|p| p.sender.sent.load(Ordering::Relaxed))
        .sum();
    let failed: u64 = pipelines
        .iter()
        .map(|p| p.sender.failed.load(Ordering::Relaxed))
        .sum();
    let skipped: u64 = parts.iter().map(|p| p.reached.skipped()).sum();
    let summary = format!(
        "{} targets: {} reached, {} unreachable, {} not reached; {sent} probes sent, {skipped} \
         skipped beyond path ends, {} timed out",
        totals.targets,
        totals.reached,
        totals.unreachable,
        totals.targets - totals.reached - totals.unreachable,
        totals.timeouts
    );

    if !a.quiet {
        let out = std::io::stdout().lock();
        let mut w = std::io::BufWriter::new(out);
        match a.format {
            TraceFormat::Text => {
                for t in 0..order.len() {
                    paths
                        .write_path(t, &mut w)
                        .context("writing paths to stdout")?;
                }
                w.flush().context("writing paths to stdout")?;
            }
            TraceFormat::Csv | TraceFormat::Jsonl => {
                let f = if a.format == TraceFormat::Csv {
                    TextFormat::Csv
                } else {
                    TextFormat::Jsonl
                };
                let mut sink = text_sink::<HopRow<'_>, _>(f, w);
                write_rows(&paths, sink.as_mut()).context("writing hops to stdout")?;
                sink.finish().context("writing hops to stdout")?;
            }
        }
    }
    if let Some(path) = &a.output {
        let meta = run_metadata(&a, rate, seed, session, started_ns, &pipelines);
        let mut pq = ParquetSink::create(path, meta)
            .with_context(|| format!("creating {}", path.display()))?;
        pq.add_metadata("asdic.end_unix_ns", asdic_engine::now_ns().to_string());
        pq.add_metadata("asdic.summary", summary.clone());
        pq.add_metadata("asdic.probes_sent", sent.to_string());
        pq.add_metadata("asdic.probes_skipped", skipped.to_string());
        for (k, v) in kernel_metadata(&kernel) {
            pq.add_metadata(&k, v);
        }
        write_rows(&paths, &mut pq).with_context(|| format!("writing {}", path.display()))?;
        Box::new(pq)
            .finish()
            .with_context(|| format!("writing {}", path.display()))?;
        if let Some(s) = snapshots {
            s.done();
        }
    }
    eprintln!("asdic: {summary}");
    eprintln!(
        "asdic: {:.2}s in all, {failed} refused by the local stack; dropped: {drops}, \
         {foreign} not of this trace; {kernel}",
        elapsed.as_secs_f64(),
    );
    refusals.report();
    if let Some(l) = kernel_warning(&kernel) {
        eprintln!("{l}");
    }
    if signals.interrupted() {
        eprintln!("asdic: interrupted: results cover the probes sent before the signal");
    }
    if let Some(e) = failure {
        return Err(Fail::System(e));
    }
    // As ping: 0 when every destination answered, 1 when some did not.
    Ok(if totals.reached == totals.targets {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
    let mut chunk = Vec::with_capacity(8192);
    for row in paths.rows() {
        chunk.push(row);
        if chunk.len() == 8192 {
            sink.write_rows(&chunk)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        sink.write_rows(&chunk)?;
    }
    Ok(())
}

fn progress_line(pipelines: &[Pipeline], parts: &[Part], most: u64, elapsed: Duration) -> String {
    let (mut sent, mut replies, mut errors, mut timeouts) = (0, 0, 0, 0);
    for p in pipelines {
        sent += p.sender.sent.load(Ordering::Relaxed);
        replies += p.receiver.replies.load(Ordering::Relaxed);
        errors += p.receiver.errors.load(Ordering::Relaxed);
        timeouts += p.receiver.timeouts.load(Ordering::Relaxed);
    }
    let skipped: u64 = parts.iter().map(|p| p.reached.skipped()).sum();
    let secs = elapsed.as_secs_f64();
    format!(
        "{secs:6.1}s sent {sent} + skipped {skipped} of {most} probes ({:.0}/s) replies \
         {replies} errors {errors} timeouts {timeouts} kernel drops {}",
        sent as f64 / secs.max(1e-9),
        kernel_drops(pipelines).lost()
    )
}

fn run_metadata(
    a: &TraceArgs,
    rate: f64,
    seed: u64,
    session: u32,
    started_ns: u64,
    pipelines: &[Pipeline],
) -> Vec<(String, String)> {
    let families: Vec<String> = pipelines
        .iter()
        .map(|p| format!("{:?}", p.family))
        .collect();
    let cmd: Vec<String> = std::env::args().collect();
    [
        ("asdic.version", env!("CARGO_PKG_VERSION").to_string()),
        ("asdic.command", cmd.join(" ")),
        ("asdic.mode", "trace".to_string()),
        ("asdic.engine", engine_names(pipelines)),
        ("asdic.families", families.join(",")),
        ("asdic.rate_pps", rate.to_string()),
        ("asdic.first_ttl", a.first_ttl.to_string()),
        ("asdic.max_ttl", a.max_ttl.to_string()),
        ("asdic.timeout_ms", a.timeout.as_millis().to_string()),
        ("asdic.size", a.size.to_string()),
        ("asdic.seed", seed.to_string()),
        ("asdic.session", format!("{session:08x}")),
        ("asdic.start_unix_ns", started_ns.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
