//! Command-line definitions (clap derive) and their validation into a run plan.

use std::path::PathBuf;
use std::time::Duration;

use asdic_analysis::Format;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engines::EngineOptions;
use asdic_runtime::engines::{Choice, XdpMode};

/// `asdic -V`: the version and the revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("ASDIC_GIT_REV"),
    ")"
);

/// `asdic --version`: also the engines this build has.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("ASDIC_GIT_REV"),
    ")\nengines: xdp (AF_XDP with asdic's XDP program), uring (io_uring), raw \
     (sendmmsg/recvmmsg)\ncapabilities: raw and uring need CAP_NET_RAW; xdp needs CAP_NET_RAW, \
     CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON (and CAP_IPC_LOCK unless RLIMIT_MEMLOCK holds its \
     UMEM)"
);

/// asdic: fast, accurate mass ICMP probing with per-target RTT and loss.
#[derive(Debug, Parser)]
#[command(
    name = "asdic",
    version = VERSION,
    long_version = LONG_VERSION,
    about,
    long_about = None,
    propagate_version = true
)]
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
    #[command(after_long_help = EXIT_PROBE)]
    Ping(PingArgs),
    /// Scan address space ZMap-style: every target once, in a seeded pseudo-random order,
    /// sharded, blocklisted, rate-capped; one row per responding target.
    #[command(after_long_help = EXIT_SCAN)]
    Scan(ScanArgs),
    /// Sweep a fleet continuously (NetXMS/fping-style health checks): rounds over a targets
    /// file spread evenly, rolling per-target RTT and loss, alarms, Prometheus metrics,
    /// rotated Parquet; reloads the file when it changes or on SIGHUP.
    #[command(after_long_help = EXIT_SWEEP)]
    Sweep(SweepArgs),
    /// Trace the paths to targets Yarrp-style: echo requests at every TTL up to --max-ttl, in
    /// a seeded random (target, TTL) order, stopping at each destination; one row per hop.
    #[command(after_long_help = EXIT_PROBE)]
    Trace(TraceArgs),
    /// Restore what a killed run left: merge its parts (FILE.parts/) into FILE as the run
    /// would have, or make a ping's or trace's last snapshot (FILE.partial) FILE.
    Recover(RecoverArgs),
    /// Write an HTML report with figures (RTT histogram and CDF, per-prefix hit map,
    /// latency over time per target, ICMP errors, worst targets) from result files.
    Report(ReportArgs),
    /// Write the man pages (asdic.1 and one per subcommand) into a directory.
    Man(ManArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
}

/// Exit statuses of ping and trace (`--help`, man pages).
const EXIT_PROBE: &str = "Exit status: 0 every target answered (trace: was reached), 1 some did \
not, 2 bad input or an output refused (nothing sent), 4 system error, 130/143 stopped by \
SIGINT/SIGTERM (results written in full), 141 the results went to a stdout that closed.";

/// Exit statuses of scan.
const EXIT_SCAN: &str = "Exit status: 0 done (whatever the hit rate), 2 bad input or an output \
refused (nothing sent), 4 system error, 130/143 stopped by SIGINT/SIGTERM (results written in \
full), 141 the results went to a stdout that closed.";

/// Exit statuses of sweep.
const EXIT_SWEEP: &str = "Exit status: 0 after --rounds or SIGINT/SIGTERM (its normal end), 2 \
bad input or an output refused, 4 system error.";

/// `asdic recover` options.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The output file of the killed run (its parts are in FILE.parts/), or a dataset
    /// directory (--dataset): each partition is checked, nothing merged.
    #[arg(value_name = "FILE|DATASET")]
    pub output: PathBuf,

    /// Change nothing: tell how far each killed or stopped scan got (its watermark, parts,
    /// rows, targets answered) and what `asdic scan --resume` would send.
    #[arg(long)]
    pub info: bool,
}

/// `asdic report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Result files or directories: Parquet files of scan, sweep, ping or trace runs, a
    /// killed run's FILE.parts/, a FILE.partial snapshot, a sweep's output directory, or a
    /// dataset (--dataset DIR, or one of its partitions).
    #[arg(value_name = "RESULTS", required = true)]
    pub inputs: Vec<PathBuf>,

    /// Directory to write report.html and figures/ into (created if missing).
    #[arg(
        short = 'o',
        long = "output",
        default_value = "asdic-report",
        value_name = "DIR"
    )]
    pub dir: PathBuf,

    /// Replace the report.html and figures an earlier report left in the directory
    /// (otherwise asdic refuses).
    #[arg(long)]
    pub force: bool,

    /// The page title.
    #[arg(long, default_value = "asdic report", value_name = "TEXT")]
    pub title: String,

    /// Latency-over-time graphs to draw for a sweep, worst targets first.
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub graphs: usize,

    /// Rows of the per-target (scan: per-prefix) table, worst first.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub rows: usize,

    /// Write only SVG figures (no PNG copies).
    #[arg(long)]
    pub no_png: bool,

    /// TrueType font for the figures' text (default: DejaVu Sans or another system font).
    #[arg(long, value_name = "FILE")]
    pub font: Option<PathBuf>,
}

/// `asdic man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write the pages, e.g. /usr/local/share/man/man1.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
}

/// `asdic completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Which I/O engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineChoice {
    /// AF_XDP if it can attach here, else the faster socket engine (measured), else the other.
    Auto,
    /// AF_XDP: Ethernet frames through a UMEM, replies steered by asdic's XDP program.
    Xdp,
    /// Raw ICMP sockets driven through io_uring (SendMsg/RecvMsg requests).
    Uring,
    /// Raw ICMP sockets with sendmmsg/recvmmsg.
    Raw,
}

/// The I/O engine and its threads: the same flags on every probing subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Engine")]
pub struct EngineArgs {
    /// I/O engine.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,

    /// Say more at the start: where the engine takes the stamps an RTT is made of (also in
    /// the Parquet metadata, `asdic.stamps`).
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// XDP engine: attach mode of the XDP program (default: native, then generic).
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<XdpModeChoice>,

    /// XDP engine: the next hop's MAC address, instead of the kernel's neighbour table.
    #[arg(short = 'G', long, value_parser = parse_mac, value_name = "MAC")]
    pub gateway_mac: Option<[u8; 6]>,

    /// XDP engine: the RX queues to bind an AF_XDP socket to, e.g. "0-3" or "0,2" (default:
    /// every RX queue of the interface; auto uses XDP only when every queue is served).
    #[arg(long, value_parser = parse_queues, value_name = "LIST")]
    pub queues: Option<QueueList>,

    /// Pin the sender thread to the first core and the receiver threads (one per RX queue)
    /// to the others in turn, e.g. "0,1" or "0,1,2".
    #[arg(long, value_delimiter = ',', value_name = "TX,RX[,RX…]")]
    pub cores: Vec<usize>,

    /// Probes per engine call [default: 64; tracked runs (ping, trace, sweep) on AF_XDP in
    /// copy mode: 1, each probe stamped right before the call that sends it].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,

    /// XDP engine: UMEM frames (2 KiB each) for receiving, per RX queue, a power of two
    /// from 256 to 65,536. The kernel pins them: they are the engine's memory. More absorb
    /// longer receiver stalls at full speed (default: 8,192; scan 2,048; sweep 16,384).
    #[arg(long, value_name = "N")]
    pub xdp_frames: Option<u32>,
}

/// Probes per engine call without `--batch`.
const DEFAULT_BATCH: usize = 64;

impl EngineArgs {
    /// Checks `--batch` and `--cores`.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(b) = self.batch.filter(|&b| b == 0 || b > 1024) {
            return Err(format!("--batch {b}: must be 1..=1024"));
        }
        if let Some(n) = self.xdp_frames
            && !(n.is_power_of_two() && (256..=65_536).contains(&n))
        {
            return Err(format!(
                "--xdp-frames {n}: must be a power of two from 256 to 65536"
            ));
        }
        asdic_runtime::check_cores(&self.cores)
    }

    /// How engines open for probes of `size` payload bytes and TTL `ttl`, from `device`
    /// (`--interface`); `umem` = the XDP engine's (RX frames per queue, TX frames) when the
    /// run wants other than the engine's defaults (`--xdp-frames` wins over the RX count).
    pub fn options(
        &self,
        ttl: u8,
        device: Option<String>,
        size: usize,
        umem: Option<(u32, u32)>,
    ) -> EngineOptions {
        EngineOptions {
            ttl,
            device,
            batch: self.batch.unwrap_or(DEFAULT_BATCH),
            size,
            choice: match self.engine {
                EngineChoice::Auto => Choice::Auto,
                EngineChoice::Xdp => Choice::Xdp,
                EngineChoice::Uring => Choice::Uring,
                EngineChoice::Raw => Choice::Raw,
            },
            xdp_mode: self.xdp_mode.map(|m| match m {
                XdpModeChoice::Native => XdpMode::Native,
                XdpModeChoice::Generic => XdpMode::Generic,
            }),
            gateway_mac: self.gateway_mac,
            xdp_rx_frames: self.xdp_frames.or(umem.map(|u| u.0)),
            xdp_tx_frames: umem.map(|u| u.1),
            queues: self.queues.clone().map(|q| q.0),
            rcvbuf: crate::engines::injected_rcvbuf(),
            batch_given: self.batch.is_some(),
        }
    }
}

/// `--shard`: the index, and the environment variable it came from with `--shard env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// The shard, 0-based.
    pub index: u64,
    /// `Some(variable)` when read from the job runner's environment.
    pub from: Option<&'static str>,
}

/// Parses `--shard I|env` (reading the process environment for `env`).
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    shard_from(s, |k| std::env::var(k).ok())
}

/// `--shard` with the environment given as a lookup.
pub fn shard_from(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    if s != "env" {
        return s
            .parse::<u64>()
            .map(|index| Shard { index, from: None })
            .map_err(|_| "a shard index (0, 1, 2, ...) or \"env\"".to_string());
    }
    let number = |var: &str, v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("{var}={v:?} is not a shard index"))
    };
    if let Some(v) = env("JOB_COMPLETION_INDEX") {
        let index = number("JOB_COMPLETION_INDEX", &v)?;
        return Ok(Shard {
            index,
            from: Some("JOB_COMPLETION_INDEX"),
        });
    }
    if let Some(v) = env("SLURM_ARRAY_TASK_ID") {
        let id = number("SLURM_ARRAY_TASK_ID", &v)?;
        let min = match env("SLURM_ARRAY_TASK_MIN") {
            Some(m) => number("SLURM_ARRAY_TASK_MIN", &m)?,
            None => 0,
        };
        let index = id.checked_sub(min).ok_or_else(|| {
            format!("SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")
        })?;
        return Ok(Shard {
            index,
            from: Some("SLURM_ARRAY_TASK_ID"),
        });
    }
    Err(
        "neither JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) nor SLURM_ARRAY_TASK_ID (a \
         Slurm job array) is set: run under one of them, or give the index"
            .to_string(),
    )
}

/// `--run-id`: a name that is safe as a partition value and a directory name.
fn parse_run_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '_'])
        && s.chars().all(crate::dataset::partition_char);
    if ok {
        Ok(s.to_string())
    } else {
        Err("1 to 128 letters, digits, '.', '-' or '_', not starting with '.' or '_'".into())
    }
}

/// `--rate PPS` when given: a positive number of probes per second, at most 100 M.
pub fn check_rate(rate: Option<f64>) -> Result<(), String> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => Err(format!(
            "--rate {r}: must be a positive number of probes per second"
        )),
        Some(r) if r > 100e6 => Err(format!(
            "--rate {r}: at most 100000000 probes per second (100 M/s)"
        )),
        _ => Ok(()),
    }
}

/// A TTL / hop limit: 1..=255, the same words for 0 and for 256.
fn parse_ttl(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u64>() {
        Ok(t) if (1..=255).contains(&t) => Ok(t as u8),
        _ => Err(format!("{s:?}: a TTL is 1..=255")),
    }
}

/// Which outcomes a scan writes rows for (`--filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeFilter(u8);

impl OutcomeFilter {
    /// Every outcome.
    pub const ALL: OutcomeFilter = OutcomeFilter(0b11_1111);
    /// A target's first answer, an echo reply or an ICMP error (the files' default).
    pub const HITS: OutcomeFilter = OutcomeFilter(0b11);
    /// Echo replies only: the responders (zmap's default output).
    pub const REPLIES: OutcomeFilter = OutcomeFilter(0b1);

    /// The outcomes as bits (a resumed scan's fingerprint holds them).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether rows of `o` are written.
    pub fn wants(self, o: asdic_analysis::ScanOutcome) -> bool {
        self.0 & Self::bit(o) != 0
    }

    /// Whether it wants outcomes beyond a target's first answer (timeouts, failed sends,
    /// duplicates, late replies), which the scan then reports as events.
    pub fn beyond_hits(self) -> bool {
        self.0 & !Self::HITS.0 != 0
    }

    fn bit(o: asdic_analysis::ScanOutcome) -> u8 {
        use asdic_analysis::ScanOutcome as O;
        match o {
            O::Reply => 1,
            O::Error => 2,
            O::Timeout => 4,
            O::SendFailed => 8,
            O::Duplicate => 16,
            O::Late => 32,
        }
    }
}

/// Parses `--filter`: outcome names separated by commas, or "all".
fn parse_filter(s: &str) -> Result<OutcomeFilter, String> {
    if s.trim() == "all" {
        return Ok(OutcomeFilter::ALL);
    }
    let mut f = OutcomeFilter(0);
    for name in s.split(',').map(str::trim) {
        let o = asdic_analysis::ScanOutcome::parse(name).ok_or_else(|| {
            format!(
                "{name:?} is not an outcome (reply, error, timeout, send_failed, duplicate, \
                 late, or all)"
            )
        })?;
        f.0 |= OutcomeFilter::bit(o);
    }
    Ok(f)
}

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpModeChoice {
    /// In the driver (fastest; veth, most 10G+ NICs).
    Native,
    /// In the kernel's generic path after the driver (works everywhere, slower).
    Generic,
}

/// RX queues given with `--queues`, sorted, each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueList(pub Vec<u32>);

/// "0-3", "0,2,5", "1": a list of queue numbers and ranges.
pub fn parse_queues(s: &str) -> Result<QueueList, String> {
    let mut out = vec![];
    for part in s.split(',') {
        let part = part.trim();
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("'{x}' is not a queue number (LIST: e.g. 0-3 or 0,2)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a >= 1024 {
                    return Err(format!("'{part}' is not a range of queues"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(QueueList(out))
}

/// Parses a MAC address "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (b, p) in m.iter_mut().zip(&parts) {
        *b = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| p.len() == 2)
            .ok_or_else(|| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    Ok(m)
}

/// `--format` / `--output-format` taking the `allowed` formats of the one [`Format`], each
/// listed with its description in `--help`.
fn formats(allowed: &'static [Format]) -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(
        allowed
            .iter()
            .map(|f| PossibleValue::new(f.name()).help(f.describe())),
    )
    .try_map(|s| s.parse::<Format>())
}

/// Which series `asdic sweep --metrics-listen` exports per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PerTarget {
    /// Counters (probes, replies, errors, timeouts), the RTT histogram, window loss, alarm
    /// and the window's RTT statistics: 31 series per target.
    Full,
    /// Probes and replies counters, window loss, alarm and the window's average RTT: 5
    /// series per target.
    Basic,
    /// No per-target series: only the fleet's and the groups' (group=NAME in the targets
    /// file).
    None,
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

/// Parses a duration flag whose bare number meant milliseconds before 0.2 (ping `-i`/`-W`,
/// sweep `-i`/`-W`/`--window`, trace `-W`, `--sync-every`, ...): `500ms`, `1s`, `2.5s`,
/// `250us`, `1m`, `1h`, or `0`. Any other bare number is refused for this release, naming
/// both spellings, because it will mean seconds (as in ping, traceroute and zmap) in the next:
/// never silently read one way or the other.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration(s, false)
}

/// Parses a duration flag whose bare number is seconds (zmap's convention, and asdic's for
/// every duration from 0.3): `8`, `1.5`, `250ms`, `2m`.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    duration(s, true)
}

/// A duration with its unit (us, ms, s, m, h); a bare number is seconds when `bare_seconds`,
/// else refused unless it is zero.
fn duration(s: &str, bare_seconds: bool) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 1s, 2.5s)"))?;
    if unit == "s" && num.len() == s.len() && !bare_seconds && v != 0.0 {
        return Err(format!(
            "{s:?} has no unit: write {s}s or {s}ms (a bare number here meant milliseconds \
             before asdic 0.2 and will mean seconds, as in ping and zmap)"
        ));
    }
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use us, ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A value parser that refuses every value: a flag letter retired for one release (0.2)
/// because its meaning moved; `now` names the new spelling. A retired letter is never
/// silently read with its new meaning.
fn retired(now: &'static str) -> impl Fn(&str) -> Result<Retired, String> + Clone + Send + Sync {
    move |_| Err(now.to_string())
}

/// The value of a retired flag, which is never parsed.
#[derive(Debug, Clone, Copy)]
pub enum Retired {}

/// `--sync-every`: a duration of at least 100 ms.
fn parse_sync_every(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s:?}: at least 100ms"));
    }
    Ok(d)
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

    /// Time between successive probes to the same target, with its unit (ping -i; fping -p).
    #[arg(short = 'i', long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// ICMP payload bytes per probe (ping -s); at least 32, the probe stamp.
    #[arg(short = 's', long, default_value_t = 56, value_name = "BYTES")]
    pub size: usize,

    /// IP TTL / IPv6 hop limit of probes.
    #[arg(short = 't', long, default_value_t = 64, value_parser = parse_ttl, value_name = "TTL")]
    pub ttl: u8,

    /// How long to wait for each reply, with its unit (1s, 500ms).
    #[arg(short = 'W', long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Send a probe again this many times when it times out (net-ping "retries").
    #[arg(short = 'r', long, default_value_t = 0, value_name = "N")]
    pub retries: u8,

    /// ICMP identifier: "random" (default: a random base per run) or a fixed 0..=65535.
    #[arg(long, default_value = "random", value_parser = parse_id, value_name = "random|N")]
    pub id: IdChoice,

    /// Most probes per second over all targets (default 100, fping's 10 ms between probes).
    /// Required when targets ÷ --interval needs more than 100/s.
    #[arg(short = 'R', long, value_name = "PPS")]
    pub rate: Option<f64>,

    /// Write per-target results to FILE: Parquet, or CSV or JSON Lines when its name ends in
    /// .csv or .jsonl; "-" writes them (Parquet) on stdout instead of the table. A FIFO or a
    /// device is written as a stream; an existing file is refused without --force.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace a file that exists at -o (otherwise asdic refuses, before sending anything:
    /// it never replaces results silently).
    #[arg(long)]
    pub force: bool,

    /// Write the results into a Hive-partitioned dataset instead of -o:
    /// DIR/schema_version=2/run=RUN/part-000000.parquet, marked _SUCCESS there once durable.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub dataset: Option<PathBuf>,

    /// The run's name in the dataset (letters, digits, '.', '-', '_'; default: its UTC start
    /// time and session, e.g. 20261203T150405Z-1a2b3c4d).
    #[arg(long, value_name = "ID", requires = "dataset", value_parser = parse_run_id)]
    pub run_id: Option<String>,

    /// With -o: write the results so far to FILE.partial this often (a complete Parquet file,
    /// replaced atomically), so a killed run loses at most this much; FILE replaces it at the
    /// end.
    #[arg(long, default_value = "5s", value_parser = parse_sync_every, value_name = "DURATION")]
    pub sync_every: Duration,

    /// Format of the per-target results on stdout (default: table).
    #[arg(short = 'O', long, value_parser = formats(&[Format::Table, Format::Csv, Format::Jsonl]), value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Quiet: no per-target results on stdout and no progress line, only the summary
    /// (fping -q).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// One row per probe instead of per target (target, probe, attempt, send time, outcome,
    /// RTT, …), like fping -C: the table prints each target's RTTs in ms, "-" for a probe
    /// without a reply. At most 4,194,304 probes.
    #[arg(long)]
    pub per_probe: bool,

    /// No progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,

    /// Send from this interface only (SO_BINDTODEVICE; the XDP engine checks that the route
    /// to the targets leaves by it).
    #[arg(short = 'I', long, value_name = "IFACE")]
    pub interface: Option<String>,

    /// The I/O engine and its threads.
    #[command(flatten)]
    pub io: EngineArgs,
}

/// `--max-targets`: a count or a percentage of the target space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most this many targets.
    Count(u64),
    /// At most this share of the (sharded) target space, in percent.
    Percent(f64),
}

fn parse_limit(s: &str) -> Result<Limit, String> {
    if let Some(p) = s.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 100.0 => Ok(Limit::Percent(v)),
            _ => Err(format!("{s:?}: a percentage must be in (0, 100]")),
        };
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Limit::Count(n)),
        _ => Err(format!(
            "{s:?} is neither a positive count nor a percentage like 10%"
        )),
    }
}

/// Parses a bandwidth in bits per second: `10M`, `1.5G`, `500k`, `100000`.
pub fn parse_bandwidth(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * mult),
        _ => Err(format!(
            "{s:?} is not a bandwidth (e.g. 10M, 1G, 500k bits/s)"
        )),
    }
}

/// `asdic scan` options. Flag names follow zmap where the meaning is the same.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Targets: IPv4/IPv6 addresses and CIDR prefixes. Without any (and without --file),
    /// targets are read from stdin.
    pub targets: Vec<String>,

    /// Read targets from FILE (addresses or CIDRs, # comments; "-" for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Send rate in probes per second (required unless --bandwidth is given).
    #[arg(short = 'R', long, value_name = "PPS")]
    pub rate: Option<f64>,

    /// Send rate as bandwidth on the wire in bits/s (e.g. 10M, 1G); Ethernet framing
    /// (preamble, header, FCS, gap: 38 bytes) included.
    #[arg(short = 'B', long, value_parser = parse_bandwidth, value_name = "BPS", conflicts_with = "rate")]
    pub bandwidth: Option<f64>,

    /// Stop after this many targets, or this share of the target space (e.g. 10%).
    #[arg(long, value_parser = parse_limit, value_name = "N|P%")]
    pub max_targets: Option<Limit>,

    /// Stop sending after this long (then cool down); a bare number is seconds.
    #[arg(long, value_parser = parse_seconds, value_name = "DURATION")]
    pub max_runtime: Option<Duration>,

    /// How long to keep receiving after the last probe; also how long any probe waits for
    /// its answer. A bare number is seconds.
    #[arg(long, default_value = "8", value_parser = parse_seconds, value_name = "DURATION")]
    pub cooldown: Duration,

    /// Probe a target again this many times while it does not answer (0 = one probe).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u8,

    /// Seed of the target order (and of IPv6 sampling): the same seed gives the same order.
    /// Shards of one scan must share it. Default: random, printed at start.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Split the scan into this many disjoint shards (for several machines).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub shards: u64,

    /// Which shard this run scans, 0-based; "env" takes it from the job runner:
    /// JOB_COMPLETION_INDEX (a Kubernetes Indexed Job), else SLURM_ARRAY_TASK_ID (a Slurm
    /// job array; counted from SLURM_ARRAY_TASK_MIN when set).
    #[arg(long, default_value = "0", value_parser = parse_shard, value_name = "I|env")]
    pub shard: Shard,

    /// Write the results as a Hive-partitioned dataset instead of one file:
    /// DIR/schema_version=2/run=RUN/shard=I/part-N.parquet, then _SUCCESS there once every
    /// part of the shard is durable. Spark, DuckDB and pyarrow read DIR/schema_version=2 as
    /// one table (with run and shard columns); a killed shard leaves its finished parts and
    /// no _SUCCESS.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["output", "output_format"])]
    pub dataset: Option<PathBuf>,

    /// The run's name in the dataset (letters, digits, '.', '-', '_'). Default: seed-<the
    /// seed in hex>, so that every shard of one scan (one --seed) agrees.
    #[arg(long, value_name = "ID", requires = "dataset", value_parser = parse_run_id)]
    pub run_id: Option<String>,

    /// Continue the scan a killed or stopped run left at PATH: its -o file (or the file's
    /// .parts directory), or its --dataset partition (DIR/schema_version=2/run=RUN/shard=I).
    /// Give the scan's targets and options again (the seed defaults to the earlier run's);
    /// --rate, --cooldown, -s, --sync-every and the engine may change, anything that would
    /// change what is probed is refused. Results go where the earlier run's went.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["output", "dataset", "dry_run"])]
    pub resume: Option<PathBuf>,

    /// With --dataset: refuse a partition an earlier run of it left unfinished, instead of
    /// resuming it (the default: a job runner's retry of a killed or stopped shard picks up
    /// where it ended; a finished one is left alone, exit 0).
    #[arg(long, requires = "dataset")]
    pub no_auto_resume: bool,

    /// Never probe the addresses in FILE (CIDR per line, # comments). Repeatable.
    #[arg(short = 'b', long = "blocklist-file", value_name = "FILE")]
    pub blocklist: Vec<PathBuf>,

    /// Only probe addresses in FILE (CIDR per line, # comments). Repeatable.
    #[arg(long = "allowlist-file", value_name = "FILE")]
    pub allowlist: Vec<PathBuf>,

    /// Do not apply the built-in blocklist of IANA special-purpose addresses (private,
    /// loopback, documentation, benchmarking 198.18.0.0/15, multicast, ...). Only for
    /// networks you own, such as a test bed.
    #[arg(long)]
    pub no_default_blocklist: bool,

    /// Print the built-in blocklist and exit.
    #[arg(long)]
    pub show_default_blocklist: bool,

    /// For IPv6 prefixes holding more than N addresses, probe N distinct addresses sampled
    /// from each (seeded).
    #[arg(long, value_name = "N")]
    pub ipv6_samples: Option<u64>,

    /// Print the addresses that would be probed (or with -q only count them), in scan
    /// order, without opening a socket.
    #[arg(long)]
    pub dry_run: bool,

    /// Where results go: a file, or "-" for stdout. A name ending in .parquet, .csv or
    /// .jsonl sets the format; a FIFO or a device is written as a stream; an existing file is
    /// refused without --force.
    #[arg(short = 'o', long, default_value = "-", value_name = "FILE")]
    pub output: PathBuf,

    /// Replace a file that exists at -o (otherwise asdic refuses, before sending anything:
    /// it never replaces results silently).
    #[arg(long)]
    pub force: bool,

    /// Output format (default: the -o name's extension, else parquet for files and csv on
    /// stdout).
    #[arg(short = 'O', long = "format", visible_alias = "output-format", value_parser = formats(&[Format::Parquet, Format::Csv, Format::Jsonl]), value_name = "FORMAT")]
    pub output_format: Option<Format>,

    /// Parquet: finish a durable part of the output (FILE.parts/part-N.parquet) this often; a
    /// killed run loses at most the rows of the last period. The parts become FILE at the end.
    #[arg(long, default_value = "5s", value_parser = parse_sync_every, value_name = "DURATION")]
    pub sync_every: Duration,

    /// Write a row for every probe event (timeouts, duplicates, late replies, failed
    /// sends), not just one per responding target.
    #[arg(long)]
    pub all_events: bool,

    /// The outcomes to write rows for: a list of reply, error, timeout, send_failed,
    /// duplicate, late, or "all" [default: CSV or JSON Lines on stdout: reply, the responders
    /// as zmap prints them; files and datasets: reply,error; with --all-events: all].
    #[arg(long, value_parser = parse_filter, value_name = "LIST")]
    pub filter: Option<OutcomeFilter>,

    /// CSV and JSON Lines: only these columns, e.g. "target" or "target,rtt_us" (in the
    /// schema's order; Parquet always holds every column) [default: every column].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub fields: Vec<String>,

    /// Also write the once-a-second status as JSON lines to FILE.
    #[arg(short = 'u', long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,

    /// Quiet: no status line on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// ICMP payload bytes per probe; at least 32, the probe stamp.
    #[arg(short = 's', long, default_value_t = 32, value_name = "BYTES")]
    pub size: usize,

    /// IP TTL / IPv6 hop limit of probes (-t from asdic 0.3).
    #[arg(long, default_value_t = 64, value_parser = parse_ttl, value_name = "TTL")]
    pub ttl: u8,

    /// Send from this interface only (SO_BINDTODEVICE; the XDP engine checks that the route
    /// to the targets leaves by it). -I from asdic 0.3.
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,

    /// The I/O engine and its threads.
    #[command(flatten)]
    pub io: EngineArgs,

    /// zmap's letters whose meaning moved: refused for this release.
    #[command(flatten)]
    pub retired: ScanRetired,
}

/// The letters `asdic scan` took from zmap before 0.2 that collide with the vocabulary every
/// subcommand shares (`-c` count, `-i` interval, `-t` TTL, `-I` interface, `-f` file, `-R`
/// rate): each is refused for one release with a line naming its new spelling.
#[derive(Debug, Args)]
pub struct ScanRetired {
    #[arg(short = 'r', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -r (zmap's rate) is retired: write -R or --rate"))]
    old_r: Option<Retired>,
    #[arg(short = 'I', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -I (zmap's input file) is retired: write -f or --file (-I is the interface from asdic 0.3; until then --interface)"))]
    old_big_i: Option<Retired>,
    #[arg(short = 'i', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -i (zmap's interface) is retired: write --interface"))]
    old_i: Option<Retired>,
    #[arg(short = 'c', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -c (zmap's cooldown) is retired: write --cooldown"))]
    old_c: Option<Retired>,
    #[arg(short = 't', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -t (zmap's max runtime) is retired: write --max-runtime (-t is the TTL from asdic 0.3; until then --ttl)"))]
    old_t: Option<Retired>,
    #[arg(short = 'n', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -n (zmap's max targets) is retired: write --max-targets"))]
    old_n: Option<Retired>,
    #[arg(short = 'e', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -e (zmap's seed) is retired: write --seed"))]
    old_e: Option<Retired>,
    #[arg(short = 'w', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("scan's -w (zmap's allowlist) is retired: write --allowlist-file"))]
    old_w: Option<Retired>,
}

/// `asdic sweep` options. NetXMS ping subagent's terms where they apply.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Targets file: `ip[:name[:psize]]` per line (NetXMS Target form; psize includes the IP
    /// header), `[ipv6]:name:psize`, CIDR prefixes, `loss=PCT` / `rtt=MS` alarm limits and
    /// `group=NAME` per line, # comments. Reloaded when it changes and on SIGHUP.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Start a round this often (the time between successive probes to one target, as ping's
    /// -i); its probes are spread evenly across it.
    #[arg(short = 'i', long = "interval", visible_alias = "every", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub every: Duration,

    /// Statistics (and alarms) cover the probes sent within this last span.
    #[arg(short = 'w', long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub window: Duration,

    /// How long each probe waits for its reply (NetXMS Timeout); then it counts as lost.
    #[arg(short = 'W', long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// ICMP payload bytes of targets without a psize (ping -s); at least 32.
    #[arg(short = 's', long, default_value_t = 56, value_name = "BYTES")]
    pub size: usize,

    /// IP TTL / IPv6 hop limit of probes.
    #[arg(short = 't', long, default_value_t = 64, value_parser = parse_ttl, value_name = "TTL")]
    pub ttl: u8,

    /// Alarm when a target's loss over the window exceeds PCT percent.
    #[arg(long, value_name = "PCT")]
    pub alarm_loss: Option<f64>,

    /// Alarm when a target's average RTT over the window exceeds MS milliseconds.
    #[arg(long, value_name = "MS")]
    pub alarm_rtt: Option<f64>,

    /// Ended probes a target's window needs before its alarm state may change either way (no
    /// alarm on a first lost probe).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub alarm_min_probes: u32,

    /// An alarm clears only once the window is below PCT percent of every limit it has
    /// (hysteresis: a loss hovering at the limit does not flap).
    #[arg(long, default_value_t = 80.0, value_name = "PCT")]
    pub alarm_clear: f64,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9427 (OpenMetrics or
    /// the classic text format, as the client asks).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Which series the metrics carry per target (the fleet's and each group's are always
    /// there).
    #[arg(long, value_enum, default_value_t = PerTarget::Basic, value_name = "LEVEL")]
    pub metrics_per_target: PerTarget,

    /// After the last of --rounds, keep serving the final metrics this long, so that
    /// Prometheus scrapes the final counts (a signal ends it early).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
    pub metrics_linger: Duration,

    /// Retired: the per-target RTT histogram is part of --metrics-per-target full.
    #[arg(long, hide = true)]
    pub metrics_histograms: bool,

    /// Write Parquet files into DIR: one per --rotate period, each complete on its own.
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Write a Hive-partitioned dataset instead:
    /// DIR/schema_version=2/agent=NAME/date=YYYY-MM-DD/hour=HH/part-*.parquet (UTC), parts
    /// durable every --sync-every, for Spark, DuckDB or pyarrow to read with every other
    /// agent's.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub dataset: Option<PathBuf>,

    /// This agent's name in the dataset (default: the host name).
    #[arg(long, value_name = "NAME", requires = "dataset", value_parser = parse_run_id)]
    pub agent: Option<String>,

    /// Start a new Parquet file this often (aligned to the clock: hourly files start on the
    /// hour).
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub rotate: Duration,

    /// Finish a durable part of the current file (its .parts directory) this often; a killed
    /// sweep loses at most the rows of the last period.
    #[arg(long, default_value = "5s", value_parser = parse_sync_every, value_name = "DURATION")]
    pub sync_every: Duration,

    /// Stop after this many rounds (default: run until interrupted).
    #[arg(short = 'n', long, value_name = "N")]
    pub rounds: Option<u64>,

    /// Most probes per second over all targets. Required when the fleet needs more than
    /// 1000/s (targets / --interval).
    #[arg(short = 'R', long, value_name = "PPS")]
    pub rate: Option<f64>,

    /// Print a status line this often on stderr (0 = never).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub status_every: Duration,

    /// Quiet: no status lines and no alarm lines on stdout (metrics and files only).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Send from this interface only.
    #[arg(short = 'I', long, value_name = "IFACE")]
    pub interface: Option<String>,

    /// The I/O engine and its threads.
    #[command(flatten)]
    pub io: EngineArgs,

    /// Before 0.2, -e was the round interval: refused for this release.
    #[arg(short = 'e', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("sweep's -e is retired: the round interval is -i or --interval (--every)"))]
    pub retired_e: Option<Retired>,
}

/// `asdic trace` options. Flag names follow traceroute and `asdic ping` where the meaning is
/// the same.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Targets: IPv4/IPv6 addresses and CIDR prefixes (every address is traced). Without
    /// any (and without --file), targets are read from stdin.
    pub targets: Vec<String>,

    /// Read targets from FILE (one or more per line, # comments; "-" for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Largest TTL / hop limit probed (traceroute -m).
    #[arg(short = 'm', long, default_value_t = 30, value_parser = parse_ttl, value_name = "TTL")]
    pub max_ttl: u8,

    /// Smallest TTL / hop limit probed (traceroute -f).
    #[arg(long, default_value_t = 1, value_parser = parse_ttl, value_name = "TTL")]
    pub first_ttl: u8,

    /// How long to wait for each probe's answer, with its unit (2s, 500ms).
    #[arg(short = 'W', long, visible_alias = "wait", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Most probes per second over all targets and TTLs (default 100).
    #[arg(short = 'R', long, value_name = "PPS")]
    pub rate: Option<f64>,

    /// Seed of the (target, TTL) order: the same seed gives the same order. Default: random,
    /// printed at start.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Before 0.2, -e was the seed: refused for this release.
    #[arg(short = 'e', hide = true, num_args = 0..=1, default_missing_value = "", value_name = "RETIRED",
          value_parser = retired("trace's -e is retired: write --seed"))]
    pub retired_e: Option<Retired>,

    /// ICMP payload bytes per probe; at least 34: the probe stamp, its MAC and the flow word.
    #[arg(short = 's', long, default_value_t = 34, value_name = "BYTES")]
    pub size: usize,

    /// Flow of every probe (Paris traceroute): all probes to a target carry one ICMP
    /// checksum, so per-flow load balancers (which hash type, code and checksum) send them
    /// down one path; another flow number gives another checksum, so another path through
    /// the same balancers.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub flow: u16,

    /// ICMP identifier: "random" (default: a random base per run) or a fixed 0..=65535.
    #[arg(long, default_value = "random", value_parser = parse_id, value_name = "random|N")]
    pub id: IdChoice,

    /// Write one row per probe (target, TTL, responder, RTT, ICMP type/code) to FILE:
    /// Parquet, or CSV or JSON Lines when its name ends in .csv or .jsonl; "-" writes them
    /// (Parquet) on stdout instead of the paths. A FIFO or a device is written as a stream; an
    /// existing file is refused without --force.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace a file that exists at -o (otherwise asdic refuses, before sending anything:
    /// it never replaces results silently).
    #[arg(long)]
    pub force: bool,

    /// Write the results into a Hive-partitioned dataset instead of -o:
    /// DIR/schema_version=2/run=RUN/part-000000.parquet, marked _SUCCESS there once durable.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub dataset: Option<PathBuf>,

    /// The run's name in the dataset (letters, digits, '.', '-', '_'; default: its UTC start
    /// time and session, e.g. 20261203T150405Z-1a2b3c4d).
    #[arg(long, value_name = "ID", requires = "dataset", value_parser = parse_run_id)]
    pub run_id: Option<String>,

    /// With -o: write the hops so far to FILE.partial this often (a complete Parquet file,
    /// replaced atomically), so a killed run loses at most this much; FILE replaces it at the
    /// end.
    #[arg(long, default_value = "5s", value_parser = parse_sync_every, value_name = "DURATION")]
    pub sync_every: Duration,

    /// Format of the results on stdout (default: text, one path per target).
    #[arg(short = 'O', long, value_parser = formats(&[Format::Text, Format::Csv, Format::Jsonl]), value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Quiet: nothing on stdout and no progress line, only the summary on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// No progress line on stderr.
    #[arg(long)]
    pub no_progress: bool,

    /// Send from this interface only (SO_BINDTODEVICE; the XDP engine checks that the route
    /// to the targets leaves by it).
    #[arg(short = 'I', long, value_name = "IFACE")]
    pub interface: Option<String>,

    /// The I/O engine and its threads.
    #[command(flatten)]
    pub io: EngineArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_lists_take_numbers_and_ranges() {
        assert_eq!(parse_queues("0"), Ok(QueueList(vec![0])));
        assert_eq!(parse_queues("0-3"), Ok(QueueList(vec![0, 1, 2, 3])));
        assert_eq!(parse_queues("3,0-1,1"), Ok(QueueList(vec![0, 1, 3])));
        for bad in ["", "x", "1-", "3-1", "0-5000", "-1", "1,,2"] {
            assert!(parse_queues(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_bandwidths_seconds() {
        assert_eq!(parse_limit("1000"), Ok(Limit::Count(1000)));
        assert_eq!(parse_limit("12.5%"), Ok(Limit::Percent(12.5)));
        for bad in ["0", "-3", "0%", "101%", "x", ""] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_bandwidth("10M"), Ok(10e6));
        assert_eq!(parse_bandwidth("1.5g"), Ok(1.5e9));
        assert_eq!(parse_bandwidth("500k"), Ok(500e3));
        assert_eq!(parse_bandwidth("64000"), Ok(64e3));
        for bad in ["", "M", "-1M", "1T", "abc"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_have_one_rule_for_bare_numbers() {
        // Seconds where a bare number was always seconds (scan --cooldown, --max-runtime).
        assert_eq!(parse_seconds("8"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("soon").is_err());
        // Every unit, in both parsers.
        for (text, want) in [
            ("250us", Duration::from_micros(250)),
            ("10ms", Duration::from_millis(10)),
            ("2s", Duration::from_secs(2)),
            ("2.5s", Duration::from_millis(2500)),
            ("1.5m", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("0", Duration::ZERO),
            ("0.0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
            assert_eq!(parse_seconds(text), Ok(want), "{text}");
        }
        // A bare number where it meant milliseconds before 0.2: refused, both spellings named,
        // never read as either.
        for bare in ["2", "1.5", "500", " 7 "] {
            let e = parse_duration(bare).unwrap_err();
            let t = bare.trim();
            assert!(
                e.contains(&format!("{t}s or {t}ms")) && e.contains("milliseconds"),
                "{bare}: {e}"
            );
        }
        for bad in ["1d", "-1s", "x", "", "ms", "1e400s", "1 s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    /// Parses `asdic ARGS`, returning clap's error text when refused.
    fn parse(args: &[&str]) -> Result<Command, String> {
        Cli::try_parse_from(std::iter::once("asdic").chain(args.iter().copied()))
            .map(|c| c.command)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn retired_letters_are_refused_naming_the_new_spelling() {
        let cases: [(&[&str], &str); 10] = [
            (&["scan", "x", "-r", "1000"], "-R or --rate"),
            (&["scan", "-I", "list.txt"], "-f or --file"),
            (&["scan", "x", "-i", "eth0"], "--interface"),
            (&["scan", "x", "-c", "8"], "--cooldown"),
            (&["scan", "x", "-t", "60"], "--max-runtime"),
            (&["scan", "x", "-n", "10"], "--max-targets"),
            (&["scan", "x", "-e", "7"], "--seed"),
            (&["scan", "x", "-w", "allow.txt"], "--allowlist-file"),
            (&["trace", "x", "-e", "7"], "--seed"),
            (&["sweep", "fleet.txt", "-e", "5s"], "-i or --interval"),
        ];
        for (args, now) in cases {
            let e = parse(args).unwrap_err();
            assert!(e.contains(now) && e.contains("retired"), "{args:?}: {e}");
            // Without a value too: still refused, never read as the new meaning.
            let e = parse(&args[..args.len() - 1]).unwrap_err();
            assert!(e.contains(now), "{args:?} without a value: {e}");
        }
        // The new spellings parse.
        let Command::Scan(a) = parse(&[
            "scan",
            "-f",
            "l.txt",
            "-R",
            "10",
            "--interface",
            "s0",
            "--ttl",
            "9",
            "--seed",
            "3",
            "-O",
            "csv",
        ])
        .unwrap() else {
            panic!("not scan")
        };
        assert_eq!(
            (a.rate, a.ttl, a.seed, a.interface.as_deref()),
            (Some(10.0), 9, Some(3), Some("s0"))
        );
        assert_eq!(a.file.as_deref(), Some(std::path::Path::new("l.txt")));
        assert_eq!(a.output_format, Some(Format::Csv));
        let Command::Sweep(a) = parse(&["sweep", "f", "-i", "2s"]).unwrap() else {
            panic!("not sweep")
        };
        assert_eq!(a.every, Duration::from_secs(2));
        let Command::Sweep(a) = parse(&["sweep", "f", "--every", "3s"]).unwrap() else {
            panic!("not sweep")
        };
        assert_eq!(a.every, Duration::from_secs(3));
        // Old spellings whose meaning did not change still work.
        assert!(parse(&["scan", "x", "--output-format", "csv"]).is_ok());
    }

    #[test]
    fn scan_filters_name_outcomes() {
        use asdic_analysis::ScanOutcome as O;
        let f = parse_filter("reply,error").unwrap();
        assert_eq!(f, OutcomeFilter::HITS);
        assert!(f.wants(O::Reply) && f.wants(O::Error) && !f.wants(O::Timeout));
        assert!(!f.beyond_hits());
        let f = parse_filter("reply, timeout").unwrap();
        assert!(f.wants(O::Timeout) && !f.wants(O::Error) && f.beyond_hits());
        assert_eq!(parse_filter("all"), Ok(OutcomeFilter::ALL));
        assert!(O::ALL.into_iter().all(|o| OutcomeFilter::ALL.wants(o)));
        let e = parse_filter("reply,hits").unwrap_err();
        assert!(e.contains("\"hits\" is not an outcome"), "{e}");
        assert!(parse_filter("").is_err());
    }

    #[test]
    fn sweep_defaults_parse() {
        let cli = Cli::try_parse_from(["asdic", "sweep", "fleet.txt"]).unwrap();
        let Command::Sweep(a) = cli.command else {
            panic!("not sweep")
        };
        assert_eq!(a.every, Duration::from_secs(5));
        assert_eq!(a.window, Duration::from_secs(60));
        assert_eq!(a.rotate, Duration::from_secs(3600));
        assert_eq!(a.timeout, Duration::from_secs(1));
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn shards_come_from_the_job_runner_when_asked() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = env(&[]);
        assert_eq!(
            shard_from("3", none),
            Ok(Shard {
                index: 3,
                from: None
            })
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2"), ("SLURM_ARRAY_TASK_ID", "9")]);
        assert_eq!(
            shard_from("env", k8s),
            Ok(Shard {
                index: 2,
                from: Some("JOB_COMPLETION_INDEX")
            })
        );
        // Slurm arrays may start at 1: counted from their minimum.
        let slurm = env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "1")]);
        assert_eq!(
            shard_from("env", slurm),
            Ok(Shard {
                index: 3,
                from: Some("SLURM_ARRAY_TASK_ID")
            })
        );
        let e = shard_from("env", none).unwrap_err();
        assert!(
            e.contains("JOB_COMPLETION_INDEX") && e.contains("SLURM_ARRAY_TASK_ID"),
            "{e}"
        );
        let bad = env(&[("JOB_COMPLETION_INDEX", "two")]);
        assert!(shard_from("env", bad).unwrap_err().contains("\"two\""));
        assert!(shard_from("x", none).is_err());
        assert!(parse_run_id("scan-2026.12").is_ok());
        for bad in ["", "a/b", "a=b", ".x", "_x", "a b"] {
            assert!(parse_run_id(bad).is_err(), "{bad:?}");
        }
    }
}
