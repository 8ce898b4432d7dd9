//! `asdic ping`: validate the plan, open one engine per address family, run sender and
//! receiver threads, aggregate events, print and write results.

use core::net::IpAddr;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use asdic_analysis::{Aggregator, Format, ParquetSink, Row, Sink, sink_for, summary_line};
use asdic_core::source::{Rounds, Source};
use asdic_core::targets;
use asdic_wire::Family;
use asdic_wire::payload::{self, Key, Numbering};

use crate::Fail;
use crate::args::{FormatChoice, IdChoice, PingArgs};
use crate::pipeline::{
    EngineOptions, Ids, Pipeline, Refusals, RunHints, Signals, Started, Work, Writes, configs,
    engine_names, join_all, kernel_drops, kernel_metadata, kernel_warning, random_u64, read_specs,
    ready, slots_for, start_all,
};
use crate::snapshot::Snapshots;

/// Most targets `ping` lists in memory.
const MAX_TARGETS: u64 = 1 << 24;
/// Above this many probes, --rate must be given.
const DEFAULT_RATE_LIMIT: u64 = 256;
/// Rate when none is given (fping's 10 ms between probes).
const DEFAULT_RATE: f64 = 100.0;
/// Largest ICMP payload on the raw engine (an IPv4 datagram's limit).
const MAX_SIZE_RAW: usize = 65_535 - 20 - 8;

fn usage(msg: impl Into<String>) -> Fail {
    Fail::Usage(msg.into())
}

/// Checks every option before anything is opened or sent.
fn validate(a: &PingArgs, probes: u128) -> Result<f64, Fail> {
    if a.size < payload::LEN {
        return Err(usage(format!(
            "--size {}: below the minimum of {} bytes (the probe stamp and its MAC)",
            a.size,
            payload::LEN
        )));
    }
    if a.size > MAX_SIZE_RAW {
        return Err(usage(format!(
            "--size {}: above the raw engine's maximum of {MAX_SIZE_RAW} bytes",
            a.size
        )));
    }
    if a.ttl == 0 {
        return Err(usage("--ttl 0: must be 1..=255"));
    }
    if a.count == 0 {
        return Err(usage("--count 0: must be at least 1"));
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
            "--rate is required for {probes} probes (more than {DEFAULT_RATE_LIMIT}): \
             say how many probes per second this network may take"
        ))),
        None => Ok(DEFAULT_RATE),
    }
}

/// Runs `asdic ping`.
pub fn run(a: PingArgs) -> Result<ExitCode, Fail> {
    let specs = read_specs(&a.targets, a.file.as_deref())?;
    let total = targets::total(&specs);
    let rate = validate(&a, total.saturating_mul(u128::from(a.count)))?;
    let all = targets::expand(&specs, MAX_TARGETS).map_err(|e| usage(format!("targets: {e}")))?;
    let numbering = match a.id {
        IdChoice::Random => Numbering::Spread {
            base: random_u64() as u16,
        },
        IdChoice::Fixed(ident) => Numbering::Fixed { ident },
    };
    let key = Key::new(random_u64(), random_u64());
    let session = random_u64() as u32;

    // Targets by family; cookies index each family's list, `offset` maps them back.
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = all.iter().partition(|t| t.is_ipv4());
    let order: Vec<IpAddr> = v4.iter().chain(v6.iter()).copied().collect();
    let engine = EngineOptions {
        ttl: a.ttl,
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
    let mut pipelines = vec![];
    // Per pipeline: its targets and the global index of its first one (cookies are local).
    let mut lists: Vec<(Arc<[IpAddr]>, u32)> = vec![];
    for (family, list, offset) in [
        (Family::V4, &v4, 0u32),
        (Family::V6, &v6, (order.len() - v6.len()) as u32),
    ] {
        if list.is_empty() {
            continue;
        }
        let share = rate * list.len() as f64 / order.len() as f64;
        let max = if numbering.bits() == 16 {
            1 << 16
        } else {
            1 << 21
        };
        let slots = slots_for(share, a.timeout).min(max) as usize;
        let hints = RunHints {
            toward: list[0],
            ids,
            probes: (list.len() as u64)
                .saturating_mul(u64::from(a.count))
                .saturating_mul(1 + u64::from(a.retries)),
        };
        pipelines.push(Pipeline::open(family, slots, &engine, &hints)?);
        lists.push((list.as_slice().into(), offset));
    }
    ready(
        &pipelines,
        a.output.as_deref().map(|o| Writes::beside("-o", o)),
    )?;
    eprintln!(
        "asdic: {} target{} ({} IPv4, {} IPv6), {} probe{} each, {rate} probes/s, timeout {:?}, size {} bytes",
        order.len(),
        if order.len() == 1 { "" } else { "s" },
        order.len() - v6.len(),
        v6.len(),
        a.count,
        if a.count == 1 { "" } else { "s" },
        a.timeout,
        a.size
    );

    let started_ns = asdic_engine::now_ns();
    let t0 = Instant::now();
    let signals = Signals::install(&pipelines, a.timeout)?;
    let work: Vec<Work> = lists
        .iter()
        .map(|(list, _)| {
            let share = rate * list.len() as f64 / order.len() as f64;
            let (cfg, rx_cfg) = configs(share, &engine, ids, a.timeout, a.retries, 4096);
            let source = Rounds::new(list.clone(), a.count, a.interval);
            (cfg, rx_cfg, Box::new(source) as Box<dyn Source + Send>)
        })
        .collect();
    let Started {
        handles,
        events: ev_rx,
        recycle: recycle_tx,
    } = start_all(&mut pipelines, work, &[a.size], &a.cores)?;

    // Aggregate on this thread; progress once a second.
    let mut agg = Aggregator::new(order.clone());
    let progress = !a.no_progress;
    let expected = order.len() as u64 * u64::from(a.count);
    let mut last_print = Instant::now();
    let mut snapshots = a.output.as_ref().map(|path| {
        Snapshots::new(
            path,
            run_metadata(&a, rate, session, started_ns, &pipelines),
            a.sync_every,
        )
    });
    let mut printed = false;
    let tty = std::io::stderr().is_terminal();
    let offsets: Vec<(Family, u32)> = pipelines
        .iter()
        .zip(&lists)
        .map(|(p, (_, off))| (p.family, *off))
        .collect();
    let mut refusals = Refusals::default();
    loop {
        match ev_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(mut batch) => {
                for ev in batch.iter_mut() {
                    refusals.add(ev);
                    let fam = Family::of(ev.target);
                    if let Some(&(_, off)) = offsets.iter().find(|(f, _)| *f == fam) {
                        ev.cookie += off;
                    }
                }
                agg.record_batch(&batch);
                batch.clear();
                let _ = recycle_tx.try_send(batch);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(snap) = snapshots.as_mut().filter(|s| s.due()) {
            snap.write(|sink| write_all(&agg, sink));
        }
        if progress
            && t0.elapsed() >= Duration::from_secs(1)
            && last_print.elapsed() >= Duration::from_secs(1)
        {
            last_print = Instant::now();
            printed = true;
            let line = progress_line(&pipelines, expected, t0.elapsed());
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

    // Results.
    let totals = agg.totals();
    let kernel = kernel_drops(&pipelines);
    if !a.quiet {
        let format = match a.format {
            FormatChoice::Table => Format::Table,
            FormatChoice::Csv => Format::Csv,
            FormatChoice::Jsonl => Format::Jsonl,
        };
        let mut sink = sink_for(
            format,
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        );
        write_all(&agg, sink.as_mut()).context("writing results to stdout")?;
        sink.finish().context("writing results to stdout")?;
    }
    if let Some(path) = &a.output {
        let meta = run_metadata(&a, rate, session, started_ns, &pipelines);
        let mut pq = ParquetSink::create(path, meta)
            .with_context(|| format!("creating {}", path.display()))?;
        pq.add_metadata("asdic.end_unix_ns", asdic_engine::now_ns().to_string());
        pq.add_metadata("asdic.summary", summary_line(&totals));
        for (k, v) in kernel_metadata(&kernel) {
            pq.add_metadata(&k, v);
        }
        write_all(&agg, &mut pq).with_context(|| format!("writing {}", path.display()))?;
        Box::new(pq)
            .finish()
            .with_context(|| format!("writing {}", path.display()))?;
        if let Some(s) = snapshots {
            s.done();
        }
    }
    let mut sent_stats = (0, 0, 0u64);
    for p in &pipelines {
        sent_stats.0 += p.sender.sent.load(Ordering::Relaxed);
        sent_stats.1 += p.sender.failed.load(Ordering::Relaxed);
        sent_stats.2 = sent_stats.2.max(p.sender.send_us.load(Ordering::Relaxed));
    }
    let send_secs = (sent_stats.2 as f64 / 1e6).max(1e-6);
    eprintln!("asdic: {}", summary_line(&totals));
    eprintln!(
        "asdic: sent {} probes in {:.3}s ({:.0}/s; {:.2}s in all), {} refused by the local stack; \
         dropped: {drops}; {kernel}",
        sent_stats.0,
        send_secs,
        sent_stats.0 as f64 / send_secs,
        elapsed.as_secs_f64(),
        sent_stats.1,
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
    // fping's convention: 0 when every target answered, 1 when some did not.
    Ok(if totals.alive == totals.targets {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_all<'a>(agg: &'a Aggregator, sink: &mut dyn Sink<Row<'a>>) -> anyhow::Result<()> {
    let mut chunk = Vec::with_capacity(8192);
    for row in agg.rows() {
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

fn progress_line(pipelines: &[Pipeline], expected: u64, elapsed: Duration) -> String {
    let (mut sent, mut replies, mut errors, mut timeouts, mut inflight) = (0, 0, 0, 0, 0);
    let kernel = kernel_drops(pipelines).lost();
    for p in pipelines {
        sent += p.sender.sent.load(Ordering::Relaxed);
        replies += p.receiver.replies.load(Ordering::Relaxed);
        errors += p.receiver.errors.load(Ordering::Relaxed);
        timeouts += p.receiver.timeouts.load(Ordering::Relaxed);
        inflight += p.table.in_flight();
    }
    let secs = elapsed.as_secs_f64();
    let pps = sent as f64 / secs.max(1e-9);
    let pct = 100.0 * sent as f64 / expected.max(1) as f64;
    let eta = if pps > 0.0 && sent < expected {
        (expected - sent) as f64 / pps
    } else {
        0.0
    };
    format!(
        "{secs:6.1}s sent {sent}/{expected} ({pct:.1}%, {pps:.0}/s) replies {replies} errors {errors} \
         timeouts {timeouts} in flight {inflight} kernel drops {kernel} ETA {eta:.0}s"
    )
}

fn run_metadata(
    a: &PingArgs,
    rate: f64,
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
        ("asdic.mode", "ping".to_string()),
        ("asdic.engine", engine_names(pipelines)),
        ("asdic.families", families.join(",")),
        ("asdic.rate_pps", rate.to_string()),
        ("asdic.count", a.count.to_string()),
        ("asdic.interval_ms", a.interval.as_millis().to_string()),
        ("asdic.timeout_ms", a.timeout.as_millis().to_string()),
        ("asdic.retries", a.retries.to_string()),
        ("asdic.size", a.size.to_string()),
        ("asdic.ttl", a.ttl.to_string()),
        ("asdic.session", format!("{session:08x}")),
        ("asdic.start_unix_ns", started_ns.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
