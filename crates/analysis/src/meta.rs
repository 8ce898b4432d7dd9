//! The run metadata asdic writes into its Parquet files' key-value metadata, typed.
//!
//! Every result file carries `asdic.*` keys: the run's parameters when it opens (version,
//! command line, mode, rate…) and what happened when it closes (end time, summary, counters,
//! whether it completed). [`keys`](crate::meta::keys) names every key once;
//! [`RunMeta`](crate::meta::RunMeta) holds one typed field per key and converts to and from
//! the `(key, value)` pairs the Parquet writer takes and the reader returns:
//!
//! ```
//! use asdic_analysis::{RunMeta, RunMode};
//!
//! let pairs = RunMeta {
//!     mode: Some(RunMode::Ping),
//!     rate_pps: Some(20_000.0),
//!     ..RunMeta::default()
//! }
//! .with_kernel(0, [("socket_overflow", 0)])
//! .to_pairs();
//! assert_eq!(pairs[0], ("asdic.mode".to_string(), "ping".to_string()));
//! let back = RunMeta::from_pairs(&pairs);
//! assert_eq!(back.rate_pps, Some(20_000.0));
//! assert_eq!(back.kernel_counter("socket_overflow"), Some(0));
//! ```
//!
//! Values are written as asdic has always written them: integers and floats in Rust's
//! `Display` form (`20000`, `1000.5`), booleans as `true`/`false`, durations as whole
//! milliseconds ([`millis`](crate::meta::millis)), the session as 8 hex digits
//! ([`session_hex`](crate::meta::session_hex)). Reading never fails: a key this version does
//! not know, or a known key whose value does not parse, is kept as text in
//! [`RunMeta::other`](crate::meta::RunMeta::other) and written back unchanged, so files of
//! other versions round-trip.

use core::fmt;
use core::str::FromStr;
use std::path::Path;
use std::time::Duration;

use crate::error::Result;

/// The subcommand that wrote a file (`asdic.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunMode {
    /// `asdic ping`: one row of statistics per target.
    Ping,
    /// `asdic scan`: one row per probe event.
    Scan,
    /// `asdic trace`: one row per (target, TTL) probe.
    Trace,
    /// `asdic sweep`: one row per probe result, state change and window.
    Sweep,
}

impl RunMode {
    /// Every mode, in declaration order.
    pub const ALL: [RunMode; 4] = [RunMode::Ping, RunMode::Scan, RunMode::Trace, RunMode::Sweep];

    /// The subcommand's name, as written in `asdic.mode`: `ping`, `scan`, `trace`, `sweep`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Ping => "ping",
            RunMode::Scan => "scan",
            RunMode::Trace => "trace",
            RunMode::Sweep => "sweep",
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not one of `ping`, `scan`, `trace`, `sweep`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run mode {0:?} (expected ping, scan, trace or sweep)")]
pub struct UnknownRunMode(pub String);

impl FromStr for RunMode {
    type Err = UnknownRunMode;

    /// The mode named exactly `s` (as [`RunMode::as_str`] writes it).
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        RunMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownRunMode(s.to_string()))
    }
}

/// A duration as the whole milliseconds the `*_ms` keys hold (saturating at `u64::MAX`).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A session id as `asdic.session` holds it: 8 lowercase hex digits.
pub fn session_hex(session: u32) -> String {
    format!("{session:08x}")
}

/// How a field's value is written and read.
trait MetaValue: Sized {
    fn parse_value(s: &str) -> Option<Self>;
    fn format_value(&self) -> String;
}

macro_rules! display_from_str {
    ($($t:ty),*) => {$(
        impl MetaValue for $t {
            fn parse_value(s: &str) -> Option<Self> {
                s.parse().ok()
            }
            fn format_value(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

display_from_str!(u64, u32, u8, f64, bool, RunMode);

impl MetaValue for String {
    fn parse_value(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
    fn format_value(&self) -> String {
        self.clone()
    }
}

/// Takes `s` into `slot` when the slot is empty (the first occurrence of a key wins) and `s`
/// parses; whether it did.
fn take<T: MetaValue>(slot: &mut Option<T>, s: &str) -> bool {
    if slot.is_some() {
        return false;
    }
    match T::parse_value(s) {
        Some(v) => {
            *slot = Some(v);
            true
        }
        None => false,
    }
}

/// Declares the keys, the struct's fields and their conversions from one table: each entry is
/// the field's documentation, `field: Type => CONST = "key"`. `@kernel` marks where the
/// per-counter kernel keys go in [`RunMeta::to_pairs`].
macro_rules! run_meta {
    (
        $(
            $(#[doc = $doc:literal])+
            $field:ident: $ty:ty => $konst:ident = $key:literal;
        )+
        @kernel
        $(
            $(#[doc = $tdoc:literal])+
            $tfield:ident: $tty:ty => $tkonst:ident = $tkey:literal;
        )+
    ) => {
        /// Every `asdic.*` metadata key, once.
        pub mod keys {
            $(
                $(#[doc = $doc])+
                pub const $konst: &str = $key;
            )+
            /// The prefix of the per-counter kernel drop keys: `asdic.kernel.<counter>`
            /// (`asdic.kernel.socket_overflow`, `asdic.kernel.xdp_redirect_failed`…).
            pub const KERNEL_PREFIX: &str = "asdic.kernel.";
            $(
                $(#[doc = $tdoc])+
                pub const $tkonst: &str = $tkey;
            )+
        }

        /// A result file's `asdic.*` metadata, one typed field per key (`None`: not written).
        ///
        /// Build one with struct update syntax and write it with [`to_pairs`](Self::to_pairs);
        /// read one with [`from_pairs`](Self::from_pairs) or [`read`](Self::read). Each field
        /// documents its key; [`keys`] has them all.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct RunMeta {
            $(
                $(#[doc = $doc])+
                pub $field: Option<$ty>,
            )+
            /// `asdic.kernel.<counter>`: each kernel drop counter by name, in the order written
            /// (the engine's `KernelDrops::fields()`); see [`with_kernel`](Self::with_kernel).
            pub kernel: Vec<(String, u64)>,
            $(
                $(#[doc = $tdoc])+
                pub $tfield: Option<$tty>,
            )+
            /// Every other pair, in the order read: keys this version does not know, known keys
            /// whose value did not parse, and second occurrences of a key. Written back last,
            /// unchanged.
            pub other: Vec<(String, String)>,
        }

        impl RunMeta {
            /// The pairs to write: the fields that are `Some`, in a fixed order (the run's
            /// parameters, then what it found; the kernel counters after `asdic.kernel_lost`),
            /// then [`other`](Self::other).
            pub fn to_pairs(&self) -> Vec<(String, String)> {
                let mut v = Vec::new();
                $(
                    if let Some(x) = &self.$field {
                        v.push((keys::$konst.to_string(), x.format_value()));
                    }
                )+
                for (name, n) in &self.kernel {
                    v.push((format!("{}{name}", keys::KERNEL_PREFIX), n.to_string()));
                }
                $(
                    if let Some(x) = &self.$tfield {
                        v.push((keys::$tkonst.to_string(), x.format_value()));
                    }
                )+
                v.extend(self.other.iter().cloned());
                v
            }

            /// This metadata completed by `later` (what a file adds when it closes): each field
            /// `later` has replaces this one's, its kernel counters replace these when it has
            /// any, its other pairs follow these.
            pub fn and(mut self, later: RunMeta) -> RunMeta {
                $(
                    if later.$field.is_some() {
                        self.$field = later.$field;
                    }
                )+
                $(
                    if later.$tfield.is_some() {
                        self.$tfield = later.$tfield;
                    }
                )+
                if !later.kernel.is_empty() {
                    self.kernel = later.kernel;
                }
                self.other.extend(later.other);
                self
            }

            /// The metadata in `pairs` (as a Parquet file's key-value metadata). Never fails:
            /// what does not fit a field goes to [`other`](Self::other). When a key appears
            /// more than once, the first occurrence counts (the rest go to `other`, after it
            /// when it did not parse).
            pub fn from_pairs(pairs: &[(String, String)]) -> RunMeta {
                let mut m = RunMeta::default();
                for (k, v) in pairs {
                    // A key whose first occurrence did not parse stays aside with it.
                    let taken = m.unparsed(k).is_none() && match k.as_str() {
                        $(keys::$konst => take(&mut m.$field, v),)+
                        $(keys::$tkonst => take(&mut m.$tfield, v),)+
                        _ => m.take_kernel(k, v),
                    };
                    if !taken {
                        m.other.push((k.clone(), v.clone()));
                    }
                }
                m
            }
        }
    };
}

run_meta! {
    /// `asdic.version`: the asdic version that wrote the file.
    version: String => VERSION = "asdic.version";
    /// `asdic.command`: the run's command line, arguments joined by spaces.
    command: String => COMMAND = "asdic.command";
    /// `asdic.mode`: the subcommand that wrote the file.
    mode: RunMode => MODE = "asdic.mode";
    /// `asdic.schema_version`: the version of the file's columns
    /// ([`SCHEMA_VERSION`](crate::schema::SCHEMA_VERSION) when this asdic wrote it); a file
    /// without the key is version 1.
    schema_version: u32 => SCHEMA_VERSION = "asdic.schema_version";
    /// `asdic.engine`: the engine that ran (`raw`, `uring`, `xdp`), or one per family when they
    /// differ (`V4:xdp,V6:raw`).
    engine: String => ENGINE = "asdic.engine";
    /// `asdic.stamps`: where the engine took the times an RTT is made of: `tx=` the send
    /// stamp (`kernel-software`: the kernel's as the device took the packet;
    /// `user-space-per-call`: right before the call that sent the probe alone;
    /// `user-space-probe`: as the probe was written into its batch), `rx=` the receive
    /// stamp (`kernel-software`: the socket's per-message stamp; `xdp-hook`: the XDP
    /// program's; `user-space-batch`: once per batch read), `clock=` their clock; one per
    /// family when they differ.
    stamps: String => STAMPS = "asdic.stamps";
    /// `asdic.grouped_probes`: of a run whose probes go one per call
    /// (`tx=user-space-per-call`), how many went out in calls of several because the sender
    /// had fallen behind the rate asked: each of their send stamps is early by the kernel's
    /// work on the frames ahead of it in its call. Absent for other runs.
    grouped_probes: u64 => GROUPED_PROBES = "asdic.grouped_probes";
    /// `asdic.families`: the address families probed, comma-separated (`V4,V6`): ping, trace.
    families: String => FAMILIES = "asdic.families";
    /// `asdic.targets_file`: the targets file a sweep reads.
    targets_file: String => TARGETS_FILE = "asdic.targets_file";
    /// `asdic.rate_pps`: the rate asked for, in probes per second: ping, trace, scan (scan
    /// writes it whole: `rate.round_ties_even()` is the number `format!("{rate:.0}")` wrote).
    rate_pps: f64 => RATE_PPS = "asdic.rate_pps";
    /// `asdic.count`: probes per target: ping.
    count: u32 => COUNT = "asdic.count";
    /// `asdic.interval_ms`: milliseconds between a target's probes: ping.
    interval_ms: u64 => INTERVAL_MS = "asdic.interval_ms";
    /// `asdic.every_ms`: milliseconds between a sweep's rounds.
    every_ms: u64 => EVERY_MS = "asdic.every_ms";
    /// `asdic.window_ms`: the span of a sweep's rolling windows, in milliseconds.
    window_ms: u64 => WINDOW_MS = "asdic.window_ms";
    /// `asdic.first_ttl`: the first TTL probed: trace.
    first_ttl: u8 => FIRST_TTL = "asdic.first_ttl";
    /// `asdic.max_ttl`: the last TTL probed: trace.
    max_ttl: u8 => MAX_TTL = "asdic.max_ttl";
    /// `asdic.timeout_ms`: how long a probe waits for its answer, in milliseconds: ping, trace,
    /// sweep.
    timeout_ms: u64 => TIMEOUT_MS = "asdic.timeout_ms";
    /// `asdic.cooldown_ms`: how long a scan waits for replies after its last probe, in
    /// milliseconds.
    cooldown_ms: u64 => COOLDOWN_MS = "asdic.cooldown_ms";
    /// `asdic.retries`: probes sent again after a timeout: ping, scan.
    retries: u8 => RETRIES = "asdic.retries";
    /// `asdic.size`: bytes of echo payload per probe: ping, trace, scan.
    size: u64 => SIZE = "asdic.size";
    /// `asdic.ttl`: the probes' TTL (hop limit): ping, scan, sweep.
    ttl: u8 => TTL = "asdic.ttl";
    /// `asdic.seed`: the seed of the probe order: trace, scan.
    seed: u64 => SEED = "asdic.seed";
    /// `asdic.shard`: this run's shard, from 0: scan.
    shard: u64 => SHARD = "asdic.shard";
    /// `asdic.shards`: the number of shards the targets were split into: scan.
    shards: u64 => SHARDS = "asdic.shards";
    /// `asdic.run_id`: the run's name in a dataset (`--dataset`, `run=` partition): scan.
    run_id: String => RUN_ID = "asdic.run_id";
    /// `asdic.default_blocklist`: whether the default blocklist applied: scan.
    default_blocklist: bool => DEFAULT_BLOCKLIST = "asdic.default_blocklist";
    /// `asdic.all_events`: whether the file has a row per probe event, not only the hits: scan.
    all_events: bool => ALL_EVENTS = "asdic.all_events";
    /// `asdic.targets_planned`: the targets the scan was to probe.
    targets_planned: u64 => TARGETS_PLANNED = "asdic.targets_planned";
    /// `asdic.session`: the run's session id, 8 hex digits (`session_hex`); the files of one
    /// run (parts, a sweep's periods) share it.
    session: String => SESSION = "asdic.session";
    /// `asdic.start_unix_ns`: when the run started, in nanoseconds since the Unix epoch.
    start_unix_ns: u64 => START_UNIX_NS = "asdic.start_unix_ns";
    /// `asdic.period_start_unix_s`: the start of a sweep file's period, in seconds since the
    /// Unix epoch.
    period_start_unix_s: u64 => PERIOD_START_UNIX_S = "asdic.period_start_unix_s";
    /// `asdic.period_s`: the length of a sweep file's period, in seconds.
    period_s: u64 => PERIOD_S = "asdic.period_s";
    /// `asdic.part`: the number of a finished part in `<out>.parts/` (parts only).
    part: u64 => PART = "asdic.part";
    /// `asdic.partial`: `true` in a snapshot of a run still going (`<out>.partial`).
    partial: bool => PARTIAL = "asdic.partial";
    /// `asdic.snapshot_unix_ns`: when a snapshot was written, in nanoseconds since the Unix
    /// epoch.
    snapshot_unix_ns: u64 => SNAPSHOT_UNIX_NS = "asdic.snapshot_unix_ns";
    /// `asdic.end_unix_ns`: when the run (or a sweep file's period) ended, in nanoseconds since
    /// the Unix epoch.
    end_unix_ns: u64 => END_UNIX_NS = "asdic.end_unix_ns";
    /// `asdic.summary`: the run's one-line summary, as printed.
    summary: String => SUMMARY = "asdic.summary";
    /// `asdic.probes_sent`: probes sent: trace, scan.
    probes_sent: u64 => PROBES_SENT = "asdic.probes_sent";
    /// `asdic.probes_skipped`: probes not sent, beyond a path's end: trace.
    probes_skipped: u64 => PROBES_SKIPPED = "asdic.probes_skipped";
    /// `asdic.send_rate_pps`: the rate the scan sent at, in probes per second (written whole,
    /// as `asdic.rate_pps` by scan).
    send_rate_pps: f64 => SEND_RATE_PPS = "asdic.send_rate_pps";
    /// `asdic.duplicates`: replies to a probe already answered: scan.
    duplicates: u64 => DUPLICATES = "asdic.duplicates";
    /// `asdic.late`: replies after their probe timed out: scan.
    late: u64 => LATE = "asdic.late";
    /// `asdic.drops`: what the receivers dropped, as printed ("N malformed, N forged, …"):
    /// scan.
    drops: String => DROPS = "asdic.drops";
    /// `asdic.interrupted`: whether a signal stopped the run (a sweep's file: the run, while
    /// the file's period was open).
    interrupted: bool => INTERRUPTED = "asdic.interrupted";
    /// `asdic.signal`: the signal that stopped the run (`SIGINT`, `SIGTERM`), when one did.
    signal: String => SIGNAL = "asdic.signal";
    /// `asdic.stderr_lost`: diagnostic lines that could not be written to stderr (a closed
    /// pipe, a full disk): the run went on without them.
    stderr_lost: u64 => STDERR_LOST = "asdic.stderr_lost";
    /// `asdic.kernel_lost`: replies and errors of the run the kernel dropped before asdic could
    /// read them (see `RunMeta::with_kernel`).
    kernel_lost: u64 => KERNEL_LOST = "asdic.kernel_lost";
    /// `asdic.scan_digest`: a scan's fingerprint: its resolved probe space (targets, block-
    /// and allowlists as resolved, IPv6 sampling), permutation (size, prime, generator,
    /// start), shard, retries, TTL and outcome filter, 16 hex digits. A resumed scan must
    /// have the same.
    scan_digest: String => SCAN_DIGEST = "asdic.scan_digest";
    /// `asdic.watermark`: per family, the point of the scan (`PASS:POSITION`) below which
    /// every probe was sent at least a cooldown (and a margin) before this part closed, so
    /// that its answers are in this part or an earlier one (`V4=0:12345,V6=1:0`): where a
    /// resumed scan starts.
    watermark: String => WATERMARK = "asdic.watermark";
    /// `asdic.frontier`: per family, the last probe handed out when this part closed, as
    /// `asdic.watermark` writes it: probes between the watermark and here are sent again by
    /// a resumed scan.
    frontier: String => FRONTIER = "asdic.frontier";
    /// `asdic.resumed`: each resumption of the scan, `;`-separated: when (UTC), from which
    /// watermark, and how many probes of the earlier run it sent again.
    resumed: String => RESUMED = "asdic.resumed";
    /// `asdic.resume_duplicates`: answers to probes a resumed scan sent again whose targets the
    /// earlier run's results already answer (kept out of the rows: each target once).
    resume_duplicates: u64 => RESUME_DUPLICATES = "asdic.resume_duplicates";
    @kernel
    /// `asdic.complete`: whether the run probed everything it planned (a sweep's file: whether
    /// its period ran to its end; `false` in a file `asdic recover` merged).
    complete: bool => COMPLETE = "asdic.complete";
    /// `asdic.recovered_parts`: the number of parts `asdic recover` merged into the file.
    recovered_parts: u64 => RECOVERED_PARTS = "asdic.recovered_parts";
}

impl RunMeta {
    /// The metadata of the Parquet file at `path` (its footer's key-value metadata; the Arrow
    /// writer's `ARROW:schema` lands in [`other`](Self::other) with any other foreign key).
    ///
    /// # Errors
    /// As [`metadata_of`](crate::parts::metadata_of): [`Error::File`](crate::Error::File) if it
    /// cannot be opened, [`Error::Parquet`](crate::Error::Parquet) if it is not Parquet.
    pub fn read(path: &Path) -> Result<RunMeta> {
        crate::parts::metadata_of(path).map(|pairs| RunMeta::from_pairs(&pairs))
    }

    /// Sets the kernel's drops: [`kernel_lost`](Self::kernel_lost) to `lost`, and
    /// [`kernel`](Self::kernel) to `counters` (name, count) in their order, replacing any
    /// there were. Takes the engine's `KernelDrops` as `with_kernel(k.lost(), k.fields())`.
    #[must_use]
    pub fn with_kernel<N: Into<String>>(
        mut self,
        lost: u64,
        counters: impl IntoIterator<Item = (N, u64)>,
    ) -> RunMeta {
        self.kernel_lost = Some(lost);
        self.kernel = counters.into_iter().map(|(n, c)| (n.into(), c)).collect();
        self
    }

    /// The kernel drop counter `name` (`asdic.kernel.<name>`), if the file has it.
    pub fn kernel_counter(&self, name: &str) -> Option<u64> {
        self.kernel.iter().find(|(n, _)| n == name).map(|&(_, c)| c)
    }

    /// The text of `key` among [`other`](Self::other) (its first occurrence there): the value
    /// of a key this version does not know, or of a known key that did not parse.
    pub fn unparsed(&self, key: &str) -> Option<&str> {
        self.other
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Takes `asdic.kernel.<name>` = `v` into [`kernel`](Self::kernel); whether it did (a
    /// name, a count, and the first of that name).
    fn take_kernel(&mut self, k: &str, v: &str) -> bool {
        let Some(name) = k.strip_prefix(keys::KERNEL_PREFIX) else {
            return false;
        };
        if name.is_empty() || self.kernel_counter(name).is_some() {
            return false;
        }
        match v.parse::<u64>() {
            Ok(n) => {
                self.kernel.push((name.to_string(), n));
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sorted(mut p: Vec<(String, String)>) -> Vec<(String, String)> {
        p.sort();
        p
    }

    /// The engine's kernel counters, in its order.
    const KERNEL: [(&str, u64); 6] = [
        ("socket_overflow", 3),
        ("xsk_rx_dropped", 0),
        ("xsk_rx_ring_full", 0),
        ("xsk_fill_ring_empty", 0),
        ("xsk_invalid_descs", 0),
        ("xdp_redirect_failed", 0),
    ];

    fn kernel_pairs(lost: &str) -> Vec<(String, String)> {
        let mut v = pairs(&[("asdic.kernel_lost", lost)]);
        for (n, c) in KERNEL {
            v.push((format!("asdic.kernel.{n}"), c.to_string()));
        }
        v
    }

    fn full() -> RunMeta {
        RunMeta {
            version: Some("0.1.0".into()),
            command: Some("asdic scan 198.19.0.0/16 -r 20000 -o out.parquet".into()),
            mode: Some(RunMode::Scan),
            schema_version: Some(2),
            engine: Some("V4:xdp,V6:raw".into()),
            stamps: Some(
                "V4:tx=user-space-batch rx=user-space-batch clock=realtime;\
                 V6:tx=user-space-batch rx=kernel-software clock=realtime"
                    .into(),
            ),
            grouped_probes: Some(3_931_813),
            families: Some("V4,V6".into()),
            targets_file: Some("/etc/asdic/targets.txt".into()),
            rate_pps: Some(1000.5),
            count: Some(4_000_000_000),
            interval_ms: Some(1000),
            every_ms: Some(10_000),
            window_ms: Some(300_000),
            first_ttl: Some(1),
            max_ttl: Some(255),
            timeout_ms: Some(2000),
            cooldown_ms: Some(8000),
            retries: Some(2),
            size: Some(56),
            ttl: Some(64),
            seed: Some(u64::MAX),
            shard: Some(2),
            shards: Some(3),
            run_id: Some("seed-00000000000004d2".into()),
            default_blocklist: Some(false),
            all_events: Some(true),
            targets_planned: Some(65_536),
            session: Some("0a1b2c3d".into()),
            start_unix_ns: Some(1_767_225_600_000_000_000),
            period_start_unix_s: Some(1_767_225_600),
            period_s: Some(3600),
            part: Some(12),
            partial: Some(true),
            snapshot_unix_ns: Some(1_767_225_601_000_000_000),
            end_unix_ns: Some(1_767_225_608_123_456_789),
            summary: Some("65536 probes: 64180 replies (97.93% hit rate), 256 ICMP errors".into()),
            probes_sent: Some(65_536),
            probes_skipped: Some(7),
            send_rate_pps: Some(19_998.25),
            duplicates: Some(1),
            late: Some(0),
            drops: Some(
                "0 malformed, 0 forged, 0 foreign, 0 unmatched errors, 0 stale, 0 other ICMP"
                    .into(),
            ),
            interrupted: Some(true),
            signal: Some("SIGTERM".into()),
            stderr_lost: Some(2),
            kernel_lost: Some(3),
            kernel: KERNEL.iter().map(|&(n, c)| (n.to_string(), c)).collect(),
            complete: Some(true),
            recovered_parts: Some(5),
            scan_digest: Some("00112233aabbccdd".into()),
            watermark: Some("V4=0:10,V6=1:0".into()),
            frontier: Some("V4=0:20,V6=1:3".into()),
            resumed: Some("2026-12-07T15:00:00Z from V4=0:10 (7 probes sent again)".into()),
            resume_duplicates: Some(3),
            other: pairs(&[("asdic.from_the_future", "42"), ("pandas", "{}")]),
        }
    }

    #[test]
    fn a_full_struct_round_trips() {
        let m = full();
        let p = m.to_pairs();
        // 54 keys, 6 kernel counters, 2 others: every field written once.
        assert_eq!(p.len(), 54 + 6 + 2);
        let mut names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), p.len(), "a key written twice: {p:?}");
        assert_eq!(RunMeta::from_pairs(&p), m);
        assert_eq!(RunMeta::from_pairs(&p).to_pairs(), p);
        // The unknown pairs go last, in order.
        assert_eq!(p[p.len() - 2..], m.other[..]);
    }

    #[test]
    fn nothing_set_writes_nothing() {
        assert!(RunMeta::default().to_pairs().is_empty());
        assert_eq!(RunMeta::from_pairs(&[]), RunMeta::default());
    }

    /// The pairs asdic ping writes when it opens its file, and when it closes it.
    fn ping_open() -> Vec<(String, String)> {
        pairs(&[
            ("asdic.version", "0.1.0"),
            (
                "asdic.command",
                "asdic ping 198.19.0.0/16 --rate 20000 -W 1s -q -o p.parquet",
            ),
            ("asdic.mode", "ping"),
            ("asdic.engine", "raw"),
            ("asdic.families", "V4"),
            ("asdic.rate_pps", "20000"),
            ("asdic.count", "1"),
            ("asdic.interval_ms", "1000"),
            ("asdic.timeout_ms", "1000"),
            ("asdic.retries", "0"),
            ("asdic.size", "56"),
            ("asdic.ttl", "64"),
            ("asdic.session", "00c0ffee"),
            ("asdic.start_unix_ns", "1767225600123456789"),
        ])
    }

    fn ping_close() -> Vec<(String, String)> {
        let mut v = pairs(&[
            ("asdic.end_unix_ns", "1767225604987654321"),
            (
                "asdic.summary",
                "65536 targets, 65536 probes, 64180 replies (2.07% loss), 680 timeouts, 256 \
                 errors; RTT min/avg/max/p99 0.012/0.051/1.334/0.210 ms",
            ),
        ]);
        v.extend(kernel_pairs("3"));
        v
    }

    #[test]
    fn ping_pairs_read_typed_and_write_back_in_order() {
        let open = RunMeta::from_pairs(&ping_open());
        assert_eq!(open.mode, Some(RunMode::Ping));
        assert_eq!(open.engine.as_deref(), Some("raw"));
        assert_eq!(open.families.as_deref(), Some("V4"));
        assert_eq!(open.rate_pps, Some(20_000.0));
        assert_eq!(open.count, Some(1));
        assert_eq!(open.interval_ms, Some(1000));
        assert_eq!(open.timeout_ms, Some(1000));
        assert_eq!(open.retries, Some(0));
        assert_eq!(open.size, Some(56));
        assert_eq!(open.ttl, Some(64));
        assert_eq!(open.session.as_deref(), Some("00c0ffee"));
        assert_eq!(open.start_unix_ns, Some(1_767_225_600_123_456_789));
        assert!(open.other.is_empty(), "{:?}", open.other);
        assert_eq!(open.to_pairs(), ping_open());

        let close = RunMeta::from_pairs(&ping_close());
        assert_eq!(close.end_unix_ns, Some(1_767_225_604_987_654_321));
        assert!(
            close
                .summary
                .as_deref()
                .unwrap()
                .starts_with("65536 targets")
        );
        assert_eq!(close.kernel_lost, Some(3));
        assert_eq!(close.kernel_counter("socket_overflow"), Some(3));
        assert_eq!(close.kernel_counter("xdp_redirect_failed"), Some(0));
        assert_eq!(close.kernel_counter("nope"), None);
        assert!(close.other.is_empty(), "{:?}", close.other);
        assert_eq!(close.to_pairs(), ping_close());

        // The whole file, and its snapshot (`<out>.partial`).
        let mut file = ping_open();
        file.extend(ping_close());
        assert_eq!(RunMeta::from_pairs(&file).to_pairs(), file);
        let mut snap = ping_open();
        snap.extend(pairs(&[
            ("asdic.partial", "true"),
            ("asdic.snapshot_unix_ns", "1767225602000000000"),
        ]));
        let m = RunMeta::from_pairs(&snap);
        assert_eq!(m.partial, Some(true));
        assert_eq!(m.snapshot_unix_ns, Some(1_767_225_602_000_000_000));
        assert_eq!(m.to_pairs(), snap);
    }

    #[test]
    fn trace_pairs_read_typed_and_write_back_in_order() {
        let open = pairs(&[
            ("asdic.version", "0.1.0"),
            (
                "asdic.command",
                "asdic trace -f targets.txt -m 8 --seed 11 -o t.parquet",
            ),
            ("asdic.mode", "trace"),
            ("asdic.engine", "V4:uring,V6:raw"),
            ("asdic.families", "V4,V6"),
            ("asdic.rate_pps", "1000.5"),
            ("asdic.first_ttl", "1"),
            ("asdic.max_ttl", "8"),
            ("asdic.timeout_ms", "2000"),
            ("asdic.size", "0"),
            ("asdic.seed", "11"),
            ("asdic.session", "deadbeef"),
            ("asdic.start_unix_ns", "1767225600000000000"),
        ]);
        let mut close = pairs(&[
            ("asdic.end_unix_ns", "1767225610000000000"),
            (
                "asdic.summary",
                "20 targets: 18 reached, 1 unreachable, 1 not reached; 121 probes sent, 39 \
                 skipped beyond path ends, 4 timed out",
            ),
            ("asdic.probes_sent", "121"),
            ("asdic.probes_skipped", "39"),
        ]);
        close.extend(kernel_pairs("0"));
        let m = RunMeta::from_pairs(&open);
        assert_eq!(m.mode, Some(RunMode::Trace));
        assert_eq!(m.engine.as_deref(), Some("V4:uring,V6:raw"));
        assert_eq!(m.rate_pps, Some(1000.5));
        assert_eq!((m.first_ttl, m.max_ttl), (Some(1), Some(8)));
        assert_eq!(m.timeout_ms, Some(2000));
        assert_eq!(m.size, Some(0));
        assert_eq!(m.seed, Some(11));
        assert_eq!(m.session.as_deref(), Some("deadbeef"));
        assert_eq!(m.to_pairs(), open);
        let c = RunMeta::from_pairs(&close);
        assert_eq!((c.probes_sent, c.probes_skipped), (Some(121), Some(39)));
        assert_eq!(c.kernel_lost, Some(0));
        assert_eq!(c.kernel.len(), 6);
        assert!(c.other.is_empty(), "{:?}", c.other);
        assert_eq!(c.to_pairs(), close);
    }

    #[test]
    fn scan_pairs_read_typed_and_write_back() {
        // `asdic.rate_pps` as scan writes it: `format!("{rate:.0}")`.
        let open = pairs(&[
            ("asdic.version", "0.1.0"),
            (
                "asdic.command",
                "asdic scan 198.19.0.0/16 --seed 7 -r 20000 -o s.parquet",
            ),
            ("asdic.mode", "scan"),
            ("asdic.engine", "xdp"),
            ("asdic.seed", "7"),
            ("asdic.shard", "0"),
            ("asdic.shards", "1"),
            ("asdic.rate_pps", &format!("{:.0}", 20_000.0f64)),
            ("asdic.cooldown_ms", "8000"),
            ("asdic.retries", "0"),
            ("asdic.size", "0"),
            ("asdic.ttl", "64"),
            ("asdic.default_blocklist", "false"),
            ("asdic.all_events", "false"),
            ("asdic.targets_planned", "65536"),
        ]);
        let mut close = pairs(&[
            ("asdic.end_unix_ns", "1767225609000000000"),
            ("asdic.start_unix_ns", "1767225600000000000"),
            (
                "asdic.summary",
                "65536 probes: 64180 replies (97.93% hit rate), 256 ICMP errors, 1100 timeouts, \
                 0 send failures, 0 duplicates, 0 late",
            ),
            ("asdic.probes_sent", "65536"),
            ("asdic.send_rate_pps", &format!("{:.0}", 19_998.7f64)),
            ("asdic.duplicates", "0"),
            ("asdic.late", "2"),
            (
                "asdic.drops",
                "0 malformed, 0 forged, 1 foreign, 0 unmatched errors, 0 stale, 5 other ICMP",
            ),
            ("asdic.session", "0badf00d"),
            ("asdic.interrupted", "false"),
        ]);
        close.extend(kernel_pairs("3"));
        close.extend(pairs(&[("asdic.complete", "true")]));
        let o = RunMeta::from_pairs(&open);
        assert_eq!(o.mode, Some(RunMode::Scan));
        assert_eq!(o.seed, Some(7));
        assert_eq!((o.shard, o.shards), (Some(0), Some(1)));
        assert_eq!(o.rate_pps, Some(20_000.0));
        assert_eq!(o.cooldown_ms, Some(8000));
        assert_eq!(o.default_blocklist, Some(false));
        assert_eq!(o.all_events, Some(false));
        assert_eq!(o.targets_planned, Some(65_536));
        assert!(o.other.is_empty(), "{:?}", o.other);
        // Scan writes its keys in an order of its own: the same pairs, in the struct's order.
        assert_eq!(sorted(o.to_pairs()), sorted(open.clone()));
        let c = RunMeta::from_pairs(&close);
        assert_eq!(c.send_rate_pps, Some(19_999.0));
        assert_eq!((c.duplicates, c.late), (Some(0), Some(2)));
        assert!(c.drops.as_deref().unwrap().contains("1 foreign"));
        assert_eq!(c.session.as_deref(), Some("0badf00d"));
        assert_eq!(c.interrupted, Some(false));
        assert_eq!(c.kernel_lost, Some(3));
        assert_eq!(c.complete, Some(true));
        assert!(c.other.is_empty(), "{:?}", c.other);
        assert_eq!(sorted(c.to_pairs()), sorted(close.clone()));

        // A part (the opening pairs plus `asdic.part`), and the file `asdic recover` makes of
        // the parts: the part number goes, `complete` and `recovered_parts` come.
        let mut part = open.clone();
        part.extend(pairs(&[("asdic.part", "3")]));
        let mut p = RunMeta::from_pairs(&part);
        assert_eq!(p.part, Some(3));
        assert_eq!(sorted(p.to_pairs()), sorted(part));
        p.part = None;
        p.complete = Some(false);
        p.recovered_parts = Some(4);
        let mut want = open;
        want.extend(pairs(&[
            ("asdic.complete", "false"),
            ("asdic.recovered_parts", "4"),
        ]));
        assert_eq!(sorted(p.to_pairs()), sorted(want));
    }

    #[test]
    fn sweep_pairs_read_typed_and_write_back_in_order() {
        let mut file = pairs(&[
            ("asdic.version", "0.1.0"),
            ("asdic.command", "asdic sweep -f targets.txt -o sweeps"),
            ("asdic.mode", "sweep"),
            ("asdic.engine", "raw"),
            ("asdic.targets_file", "targets.txt"),
            ("asdic.every_ms", "1000"),
            ("asdic.window_ms", "60000"),
            ("asdic.timeout_ms", "1000"),
            ("asdic.ttl", "64"),
            ("asdic.session", "12345678"),
            ("asdic.start_unix_ns", "1767225600000000000"),
            ("asdic.period_start_unix_s", "1767225600"),
            ("asdic.period_s", "1"),
            ("asdic.end_unix_ns", "1767225601000000000"),
        ]);
        file.extend(kernel_pairs("0"));
        let m = RunMeta::from_pairs(&file);
        assert_eq!(m.mode, Some(RunMode::Sweep));
        assert_eq!(m.targets_file.as_deref(), Some("targets.txt"));
        assert_eq!((m.every_ms, m.window_ms), (Some(1000), Some(60_000)));
        assert_eq!(m.period_start_unix_s, Some(1_767_225_600));
        assert_eq!(m.period_s, Some(1));
        assert_eq!(m.end_unix_ns, Some(1_767_225_601_000_000_000));
        assert!(m.other.is_empty(), "{:?}", m.other);
        assert_eq!(m.to_pairs(), file);
    }

    #[test]
    fn with_kernel_writes_what_the_cli_writes() {
        let m = RunMeta::default().with_kernel(3, KERNEL);
        assert_eq!(m.to_pairs(), kernel_pairs("3"));
        // Owned names too, and a second call replaces the first.
        let m = m.with_kernel(0, vec![(String::from("socket_overflow"), 0)]);
        assert_eq!(m.kernel, vec![("socket_overflow".to_string(), 0)]);
        assert_eq!(m.kernel_lost, Some(0));
    }

    #[test]
    fn unknown_keys_are_kept_in_order() {
        let p = pairs(&[
            ("asdic.mode", "scan"),
            ("asdic.new_in_v2", "x"),
            ("ARROW:schema", "/////"),
            ("asdic.kernel_lost", "0"),
            ("asdic.kernelish", "1"),
        ]);
        let m = RunMeta::from_pairs(&p);
        assert_eq!(m.mode, Some(RunMode::Scan));
        assert_eq!(m.kernel_lost, Some(0));
        assert_eq!(
            m.other,
            pairs(&[
                ("asdic.new_in_v2", "x"),
                ("ARROW:schema", "/////"),
                ("asdic.kernelish", "1"),
            ])
        );
        assert_eq!(m.unparsed("asdic.new_in_v2"), Some("x"));
        assert_eq!(m.unparsed("asdic.mode"), None);
        assert_eq!(sorted(m.to_pairs()), sorted(p));
    }

    #[test]
    fn malformed_values_go_to_other_without_panicking() {
        let p = pairs(&[
            ("asdic.mode", "burst"),
            ("asdic.rate_pps", "fast"),
            ("asdic.ttl", "300"),
            ("asdic.count", "-1"),
            ("asdic.complete", "yes"),
            ("asdic.start_unix_ns", ""),
            ("asdic.send_rate_pps", "1e400x"),
            ("asdic.kernel_lost", "18446744073709551616"),
            ("asdic.kernel.socket_overflow", "many"),
            ("asdic.kernel.", "5"),
            ("asdic.session", ""),
            // A key twice: the first counts, the second is kept.
            ("asdic.seed", "7"),
            ("asdic.seed", "8"),
            ("asdic.kernel.xdp_redirect_failed", "1"),
            ("asdic.kernel.xdp_redirect_failed", "2"),
            // ... even when the first does not parse: the second does not replace it.
            ("asdic.ttl", "64"),
            ("asdic.kernel.socket_overflow", "7"),
        ]);
        let m = RunMeta::from_pairs(&p);
        assert_eq!(m.mode, None);
        assert_eq!(m.unparsed(keys::MODE), Some("burst"));
        assert_eq!(m.rate_pps, None);
        assert_eq!(m.ttl, None);
        assert_eq!(m.unparsed(keys::TTL), Some("300"));
        assert_eq!(m.count, None);
        assert_eq!(m.complete, None);
        assert_eq!(m.unparsed(keys::COMPLETE), Some("yes"));
        assert_eq!(m.start_unix_ns, None);
        assert_eq!(m.send_rate_pps, None);
        assert_eq!(m.kernel_lost, None);
        assert_eq!(m.session.as_deref(), Some(""), "any text is a session");
        assert_eq!(m.seed, Some(7));
        assert_eq!(m.unparsed(keys::SEED), Some("8"));
        assert_eq!(m.kernel, vec![("xdp_redirect_failed".to_string(), 1)]);
        assert_eq!(m.other.len(), p.len() - 3);
        assert_eq!(m.kernel_counter("socket_overflow"), None);
        // Nothing is lost: the same pairs come back.
        assert_eq!(sorted(m.to_pairs()), sorted(p));
        // Odd floats parse as Rust reads them, and write back in `Display` form.
        let m = RunMeta::from_pairs(&pairs(&[("asdic.rate_pps", "inf")]));
        assert_eq!(m.rate_pps, Some(f64::INFINITY));
        assert_eq!(m.to_pairs(), pairs(&[("asdic.rate_pps", "inf")]));
    }

    #[test]
    fn modes_by_name() {
        for m in RunMode::ALL {
            assert_eq!(m.as_str().parse::<RunMode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!(
            ["ping", "scan", "trace", "sweep"].map(|s| s.parse::<RunMode>().unwrap()),
            RunMode::ALL
        );
        let e = "Scan".parse::<RunMode>().unwrap_err();
        assert_eq!(e, UnknownRunMode("Scan".into()));
        assert!(e.to_string().contains("\"Scan\""), "{e}");
    }

    #[test]
    fn helpers_format_as_the_cli_does() {
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(
            millis(Duration::from_millis(2500)),
            Duration::from_millis(2500).as_millis() as u64
        );
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(session_hex(0xc0ffee), "00c0ffee");
        // Scan's whole rates: rounding half to even first writes what `{:.0}` wrote.
        for rate in [20_000.0f64, 1000.5, 1001.5, 19_998.7, 0.4] {
            let m = RunMeta {
                rate_pps: Some(rate.round_ties_even()),
                ..RunMeta::default()
            };
            assert_eq!(m.to_pairs()[0].1, format!("{rate:.0}"), "{rate}");
        }
        assert_eq!(session_hex(u32::MAX), "ffffffff");
    }

    #[test]
    fn read_takes_a_files_footer() {
        use crate::sink::{ParquetSink, Sink};
        use crate::{ScanRow, sink::tests::temp_path};
        let path = temp_path("meta-read");
        let m = full();
        let mut sink = ParquetSink::<ScanRow>::create(&path, m.to_pairs()).unwrap();
        sink.add_metadata(keys::END_UNIX_NS, "1");
        Box::new(sink).finish().unwrap();
        let mut got = RunMeta::read(&path).unwrap();
        // The Arrow writer's own key is kept too (and written back by `asdic recover`, as
        // before); the second `asdic.end_unix_ns` is kept aside; the rest reads as written.
        assert!(got.unparsed("ARROW:schema").is_some());
        got.other.retain(|(k, _)| k != "ARROW:schema");
        assert_eq!(got.unparsed(keys::END_UNIX_NS), Some("1"));
        let mut want = m;
        want.other.push((keys::END_UNIX_NS.into(), "1".into()));
        assert_eq!(got, want);
        std::fs::remove_file(&path).unwrap();
        let missing = RunMeta::read(&path).unwrap_err();
        assert!(matches!(missing, crate::Error::File { .. }), "{missing}");
    }

    #[test]
    fn a_closing_file_completes_what_it_opened_with() {
        let open = RunMeta {
            mode: Some(RunMode::Scan),
            rate_pps: Some(1000.0),
            complete: Some(false),
            ..RunMeta::default()
        };
        let end = RunMeta {
            complete: Some(true),
            end_unix_ns: Some(5),
            ..RunMeta::default()
        }
        .with_kernel(2, [("socket_overflow", 2)]);
        let m = open.clone().and(end);
        assert_eq!(m.mode, Some(RunMode::Scan));
        assert_eq!(m.rate_pps, Some(1000.0));
        assert_eq!(m.complete, Some(true));
        assert_eq!(m.end_unix_ns, Some(5));
        assert_eq!(m.kernel_lost, Some(2));
        assert_eq!(m.kernel_counter("socket_overflow"), Some(2));
        // Nothing later: unchanged.
        assert_eq!(open.clone().and(RunMeta::default()), open);
    }
}
