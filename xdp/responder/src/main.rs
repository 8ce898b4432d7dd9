//! asdic-responder: attaches `asdic_responder` to an interface and answers ICMP echo
//! requests for test prefixes from XDP, writing its counters as JSON every 50 ms (atomically:
//! temporary file + rename). SIGINT/SIGTERM: a final write, detach, exit 0.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use asdic_xdp::{Ipv4Prefix, Ipv6Prefix, Mode, Responder, ResponderConfig, ResponderStats, TxPath};
use clap::Parser;

/// Answer ICMP echo requests to test prefixes from XDP (the asdic speed bed's far end).
#[derive(Debug, Parser)]
#[command(name = "asdic-responder", version)]
struct Args {
    /// Interface to attach to.
    iface: String,
    /// IPv4 prefix to answer (inside 198.18.0.0/15).
    #[arg(long, value_name = "PREFIX")]
    v4: Option<String>,
    /// IPv6 prefix to answer (inside 2001:db8::/32).
    #[arg(long, value_name = "PREFIX")]
    v6: Option<String>,
    /// Dead hosts: host index i is dead iff i % M == R (0: none).
    #[arg(long, value_name = "M", default_value_t = 97)]
    dead_mod: u32,
    /// See --dead-mod.
    #[arg(long, value_name = "R", default_value_t = 13)]
    dead_rem: u32,
    /// Random loss of live hosts' requests, parts per million.
    #[arg(long, value_name = "PPM", default_value_t = 0)]
    loss_ppm: u32,
    /// Send replies with plain XDP_TX instead of a redirect to the interface itself (on
    /// veth, XDP_TX reaches the peer only when the peer runs an XDP program).
    #[arg(long)]
    xdp_tx: bool,
    /// XDP mode: native or generic (default: native, then generic).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// Write the counters here (JSON), every 50 ms and on exit.
    #[arg(long, value_name = "FILE")]
    counters: PathBuf,
}

/// Exit status: 0 after a signal, 2 for bad input (nothing attached), 1 otherwise.
fn main() {
    if let Err(e) = run() {
        eprintln!("asdic-responder: {e:#}");
        let bad_input = matches!(e.downcast_ref(), Some(asdic_xdp::XdpError::Config(_)));
        std::process::exit(if bad_input { 2 } else { 1 });
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let v4 = args
        .v4
        .as_deref()
        .map(str::parse::<Ipv4Prefix>)
        .transpose()
        .context("--v4")?;
    let v6 = args
        .v6
        .as_deref()
        .map(str::parse::<Ipv6Prefix>)
        .transpose()
        .context("--v6")?;
    let mode = args
        .mode
        .as_deref()
        .map(str::parse::<Mode>)
        .transpose()
        .context("--mode")?;
    let cfg = ResponderConfig {
        v4,
        v6,
        dead_mod: args.dead_mod,
        dead_rem: args.dead_rem,
        loss_ppm: args.loss_ppm,
        tx: if args.xdp_tx {
            TxPath::XdpTx
        } else {
            TxPath::Redirect
        },
    };
    cfg.validate()?;

    // Signals first, so that one arriving during the attach still ends us cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }

    let responder = Responder::attach(&args.iface, &cfg, mode)?;
    if let Some(note) = responder.replaced() {
        eprintln!("asdic-responder: {note}");
    }
    let show4 = v4.map_or("-".to_string(), |p| p.to_string());
    let show6 = v6.map_or("-".to_string(), |p| p.to_string());
    eprintln!(
        "asdic-responder: attached to {} ({}), v4 {show4}, v6 {show6}, dead i % {} == {}, loss {} ppm, tx {}, counters {}",
        args.iface,
        responder.mode(),
        cfg.dead_mod,
        cfg.dead_rem,
        cfg.loss_ppm,
        if args.xdp_tx { "XDP_TX" } else { "redirect" },
        args.counters.display()
    );

    let started = Instant::now();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        write_counters(&args.counters, &responder.stats(), false, &args.iface)?;
        next += Duration::from_millis(50);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    write_counters(&args.counters, &responder.stats(), true, &args.iface)?;
    drop(responder);
    eprintln!(
        "asdic-responder: detached from {} after {:.1} s",
        args.iface,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the counters to `path` atomically (a temporary file beside it, then rename).
fn write_counters(path: &Path, s: &ResponderStats, last: bool, iface: &str) -> Result<()> {
    let v = serde_json::json!({
        "seen4": s.seen4,
        "seen6": s.seen6,
        "replied": s.replied,
        "deaddrop": s.deaddrop,
        "lossdrop": s.lossdrop,
        "passed": s.passed,
        "final": last,
        "interface": iface,
    });
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("{}", tmp.display()))?;
    writeln!(f, "{v}").with_context(|| format!("{}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}
