//! Command-line definitions (clap derive) and their validation into a run plan.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// asdic: fast, accurate mass ICMP probing with per-target RTT and loss.
#[derive(Debug, Parser)]
#[command(name = "asdic", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ping targets (addresses, CIDRs, IPv4 and IPv6) fping-style and report per-target RTT
    /// and loss.
    Ping(PingArgs),
}

/// Which I/O engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineChoice {
    /// The best engine this host supports.
    Auto,
    /// Raw ICMP sockets with sendmmsg/recvmmsg.
    Raw,
}

/// Output format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatChoice {
    /// Aligned human-readable table.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// How to choose the ICMP identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdChoice {
    /// A random base, advancing every 65,536 probes.
    Random,
    /// One fixed identifier for every probe.
    Fixed(u16),
}

fn parse_id(s: &str) -> Result<IdChoice, String> {
    if s == "random" {
        return Ok(IdChoice::Random);
    }
    s.parse::<u16>()
        .map(IdChoice::Fixed)
        .map_err(|_| format!("{s:?} is neither \"random\" nor 0..=65535"))
}

/// Parses `500ms`, `1s`, `2.5s`, `250us`, `1m`; a bare number is milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "ms"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 1s, 2.5s)"))?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use us, ms, s or m)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `asdic ping` options. Flag names follow ping/fping where the meaning is the same.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// Targets: IPv4/IPv6 addresses and CIDR prefixes. Without any (and without --file),
    /// targets are read from stdin.
    pub targets: Vec<String>,

    /// Read targets from FILE (one or more per line, # comments; "-" for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Probes per target.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N")]
    pub count: u32,

    /// Time between successive probes to the same target (fping -p).
    #[arg(short = 'i', long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// ICMP payload bytes per probe (ping -s); at least 32, the probe stamp.
    #[arg(short = 's', long, default_value_t = 56, value_name = "BYTES")]
    pub size: usize,

    /// IP TTL / IPv6 hop limit of probes.
    #[arg(short = 't', long, default_value_t = 64, value_name = "TTL")]
    pub ttl: u8,

    /// How long to wait for each reply; a bare number is milliseconds.
    #[arg(short = 'W', long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Send a probe again this many times when it times out (net-ping "retries").
    #[arg(short = 'r', long, default_value_t = 0, value_name = "N")]
    pub retries: u8,

    /// ICMP identifier: "random" (default: a random base per run) or a fixed 0..=65535.
    #[arg(long, default_value = "random", value_parser = parse_id, value_name = "random|N")]
    pub id: IdChoice,

    /// Probes per second over all targets. Required beyond 256 targets×count; otherwise
    /// defaults to 100 (fping's 10 ms between probes).
    #[arg(short = 'R', long, value_name = "PPS")]
    pub rate: Option<f64>,

    /// Write per-target results to this Parquet file.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Format of the per-target results on stdout.
    #[arg(long, value_enum, default_value_t = FormatChoice::Table)]
    pub format: FormatChoice,

    /// Quiet: no per-target results on stdout, only the summary (fping -q).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// No progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,

    /// I/O engine.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,

    /// Send from this interface only (SO_BINDTODEVICE).
    #[arg(short = 'I', long, value_name = "IFACE")]
    pub interface: Option<String>,

    /// Pin the sender and receiver threads to these cores, e.g. "0,1".
    #[arg(long, value_delimiter = ',', value_name = "TX,RX")]
    pub cores: Vec<usize>,

    /// Probes per engine call.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch: usize,
}
