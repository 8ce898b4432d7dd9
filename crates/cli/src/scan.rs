//! `asdic scan`: every target of a (sharded, blocklisted) address space once, in a seeded
//! pseudo-random order, at a capped rate; results streamed as one row per responding target
//! (or per event), with a status line once a second.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufWriter, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use asdic_analysis::meta::{keys, millis};
use asdic_analysis::resume::{Earlier, format_frontiers};
use asdic_analysis::{
    CHUNK_ROWS, Fields, Format, PartedSink, RunMeta, RunMode, ScanOutcome, ScanRow, Sink, counted,
    file_sink_of, partition,
};
use asdic_core::event::Event;
use asdic_core::permute::Cycle;
use asdic_core::source::Scan;
use asdic_core::space::{self, AddrSet, Space, SpaceSpec};
use asdic_core::stateless::{Frontier, Responders, ScanSource, ScanState};
use asdic_core::targets::TargetSpec;
use asdic_fs::Output as OutFile;
use asdic_wire::Family;
use asdic_wire::payload;
use asdic_wire::template::{self, MAX_PAYLOAD};

use crate::args::{IdChoice, Limit, OutcomeFilter, ScanArgs, check_rate};
use crate::closing::sent_line;
use crate::drive::{EXIT_PIPE, End, Lane, Lanes, Mode, Run, StatusLine, drive};
use crate::engines::{EngineOptions, RunHints};
use crate::inputs::{Ids, Listed, human_bytes, random_u64, read_cidr_file, read_listed, work};
use crate::output::{broken_pipe, format_for, not_binary_on_a_terminal, open_fail, resolve};
use crate::resume::{self, Partition, Place, Resume};
use crate::{Fail, usage};

/// Rows per Parquet row group of a scan: the writer buffers one (about 3 MiB at this size).
const SCAN_ROW_GROUP: usize = 16_384;
/// XDP engine: UMEM frames for receiving, per queue (4 MiB). A scan gets at most one reply
/// per probe, and the sender holds back while an RX ring is a quarter full
/// ([`asdic_engine::Tx::receivers_behind`]): with that, 1,024 and 2,048 frames lost none of the
/// speed bed's /16 at 550,000-800,000 probes/s (5 runs each; without it 2,048 lost 5-17 %
/// to an empty fill ring). `--xdp-frames` sets it.
const SCAN_RX_FRAMES: u32 = 2048;
/// XDP engine: UMEM frames for sending over all queues (1 MiB): copy-mode sends complete
/// within the call, and the speed bed sent as fast with 512 as with 2,048.
const SCAN_TX_FRAMES: u32 = 512;

/// One family's share of the scan.
struct Plan {
    family: Family,
    space: Arc<Space>,
    cycle: Cycle,
    /// Most targets this run may probe (--max-targets; `u64::MAX` without).
    limit: u64,
    /// Targets this run expects to probe: the shard's share of the space (exact for one
    /// shard), capped by the limit. For rate shares, progress and ETA.
    expected: u64,
}

/// Where rows go.
enum Output {
    /// Parquet parts: of one file (merged at the end), or this shard's partition of a dataset
    /// (--dataset).
    Parts(Box<PartedSink<ScanRow>>),
    /// One stream of rows: CSV or JSONL (a file written as it goes, or a stream), or Parquet
    /// to a stream (stdout, a FIFO): no parts there.
    Rows(Box<dyn Sink<ScanRow>>),
}

impl Output {
    fn write(&mut self, rows: &[ScanRow]) -> anyhow::Result<()> {
        match self {
            // The writer buffers at most one row group (SCAN_ROW_GROUP rows) before writing it.
            Output::Parts(p) => p.write_rows(rows)?,
            Output::Rows(t) => t.write_rows(rows)?,
        }
        Ok(())
    }

    /// Whether the open Parquet part is due to be finished (never for a stream of rows).
    fn due(&self) -> bool {
        matches!(self, Output::Parts(p) if p.due())
    }

    /// Finishes the open Parquet part, with `extra` in its metadata (the watermark): its
    /// rows now survive a kill. `always`: a part even without rows, so that `extra` does.
    fn sync_with(&mut self, extra: &[(String, String)], always: bool) -> anyhow::Result<()> {
        if let Output::Parts(p) = self {
            p.roll_with(extra, always)?;
        }
        Ok(())
    }

    fn finish(self, meta: Vec<(String, String)>, complete: bool) -> anyhow::Result<()> {
        match self {
            Output::Parts(p) => p.finish_run(meta, complete)?,
            Output::Rows(t) => t.finish()?,
        }
        Ok(())
    }
}

/// Reads the block- and allowlists.
fn lists(a: &ScanArgs) -> Result<(AddrSet, Option<AddrSet>), Fail> {
    let mut block = if a.no_default_blocklist {
        AddrSet::default()
    } else {
        space::default_blocklist()
    };
    for f in &a.blocklist {
        block = block.union(&AddrSet::from_specs(&read_cidr_file(
            f,
            "--blocklist-file",
        )?));
    }
    let mut allow: Option<AddrSet> = None;
    for f in &a.allowlist {
        let more = AddrSet::from_specs(&read_cidr_file(f, "--allowlist-file")?);
        allow = Some(match allow {
            Some(x) => x.union(&more),
            None => more,
        });
    }
    if allow
        .as_ref()
        .is_some_and(|s| s.v4.is_empty() && s.v6.is_empty())
    {
        let files: Vec<String> = a
            .allowlist
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        return Err(usage(format!(
            "nothing to scan: --allowlist-file {} holds no address",
            files.join(", ")
        )));
    }
    Ok((block, allow))
}

/// Checks the options that need no targets.
fn validate(a: &ScanArgs) -> Result<(), Fail> {
    if a.dry_run && (a.output.as_os_str() != "-" || a.dataset.is_some()) {
        return Err(usage(
            "--dry-run lists the targets on stdout and writes no results: drop -o/--dataset \
             (redirect stdout to keep the list)",
        ));
    }
    if a.shards == 0 || a.shard.index >= a.shards {
        return Err(usage(match a.shard.from {
            Some(var) => format!(
                "--shard env: {var} names shard {}, but --shards is {}: the job runner's \
                 indices must be 0..{}",
                a.shard.index, a.shards, a.shards
            ),
            None => format!(
                "--shard {} of --shards {}: need 0 <= shard < shards",
                a.shard.index, a.shards
            ),
        }));
    }
    if a.shards > 1 && a.seed.is_none() && !a.dry_run {
        return Err(usage(format!(
            "--shards {} without --seed: each shard would draw its own order and together they \
             would miss and repeat targets; give every shard the same --seed N",
            a.shards
        )));
    }
    if a.size < payload::LEN || a.size > MAX_PAYLOAD {
        return Err(usage(format!(
            "--size {}: must be {}..={MAX_PAYLOAD} bytes (at least the probe stamp and its MAC)",
            a.size,
            payload::LEN
        )));
    }
    a.io.validate().map_err(usage)?;
    if a.cooldown.is_zero() {
        return Err(usage("--cooldown 0: replies need some time to come back"));
    }
    if a.ipv6_samples == Some(0) {
        return Err(usage("--ipv6-samples 0: must be at least 1"));
    }
    check_rate(a.rate).map_err(usage)
}

/// Probes per second from --rate or --bandwidth (bits/s of Ethernet frames).
fn rate(a: &ScanArgs, plans: &[Plan]) -> Result<f64, Fail> {
    if let Some(r) = a.rate {
        return Ok(r);
    }
    let Some(bps) = a.bandwidth else {
        return Err(usage(
            "--rate (-r PPS) or --bandwidth (-B BPS) is required: say how much this network may take",
        ));
    };
    // Frame size of the largest family in the scan.
    let family = if plans.iter().any(|p| p.family == Family::V6) {
        Family::V6
    } else {
        Family::V4
    };
    let bits = template::ethernet_wire_bits(family, a.size);
    let r = bps / bits as f64;
    if r < 1.0 {
        return Err(usage(format!(
            "--bandwidth {bps}: less than one {bits}-bit probe per second"
        )));
    }
    Ok(r)
}

fn plans(a: &ScanArgs, listed: Listed, seed: u64) -> Result<Vec<Plan>, Fail> {
    let (block, allow) = lists(a)?;
    let mut out = vec![];
    let Listed {
        prefixes,
        singles,
        first,
    } = listed;
    let (v4, ones4) = singles.v4.into_parts();
    let (v6, ones6) = singles.v6.into_parts();
    let v4 = v4
        .into_iter()
        .map(|(lo, hi)| (u128::from(lo), u128::from(hi)))
        .collect();
    let families = [
        (Family::V4, 0u64, v4, space::Singles::V4(ones4)),
        (
            Family::V6,
            0x6a09_e667_f3bc_c908,
            v6,
            space::Singles::V6(ones6),
        ),
    ];
    for (family, salt, ranges, ones) in families {
        if ranges.is_empty()
            && ones.is_empty()
            && !prefixes
                .iter()
                .any(|s| (family == Family::V4) == s.base.is_ipv4())
        {
            continue;
        }
        let spec = SpaceSpec {
            family,
            targets: &prefixes,
            block: &block,
            allow: allow.as_ref(),
            v6_samples: a.ipv6_samples,
            seed: seed ^ salt,
        };
        let space =
            Space::with_listed(&spec, ranges, ones).map_err(|e| usage(format!("targets: {e}")))?;
        let cycle = Cycle::new(space.len(), seed ^ salt).map_err(|e| usage(e.to_string()))?;
        // The shard's share of the space (shards differ by a few indices: the cycle's
        // positions that are not indices fall unevenly among them).
        let share = if a.shards == 1 {
            space.len()
        } else {
            space.len().div_ceil(a.shards)
        };
        let limit = match a.max_targets {
            None => u64::MAX,
            Some(Limit::Count(n)) => n,
            Some(Limit::Percent(p)) => ((share as f64) * p / 100.0).ceil() as u64,
        };
        out.push(Plan {
            family,
            space: Arc::new(space),
            cycle,
            limit,
            expected: limit.min(share),
        });
    }
    // --max-targets N counts over both families together: split it by their shares.
    if let Some(Limit::Count(n)) = a.max_targets
        && out.len() == 2
    {
        let total: u64 = out.iter().map(|p| p.expected).sum();
        if total > n {
            let first = ((n as f64) * out[0].expected as f64 / total as f64).round() as u64;
            out[0].limit = first.min(out[0].expected);
            out[1].limit = n - out[0].limit;
            for p in out.iter_mut() {
                p.expected = p.expected.min(p.limit);
            }
        }
    }
    if out.iter().all(|p| p.space.is_empty()) {
        let shown: Vec<TargetSpec> = prefixes.iter().chain(&first).copied().collect();
        return Err(usage(explain_empty(a, &shown)));
    }
    Ok(out)
}

fn explain_empty(a: &ScanArgs, specs: &[TargetSpec]) -> String {
    // Blamed on a default block only when a target lies wholly inside it (0.0.0.0/0 starts
    // in 0.0.0.0/8 but is not in it).
    let inside = |s: &TargetSpec| {
        let (prefix, what) = space::default_block_reason(s.base)?;
        let block = TargetSpec::parse(prefix).ok()?;
        (s.prefix >= block.prefix).then_some((prefix, what))
    };
    if !a.no_default_blocklist
        && let Some((prefix, what)) = specs.iter().find_map(inside)
    {
        return format!(
            "nothing to scan: the targets are in the default blocklist ({prefix}: {what}); \
             pass --no-default-blocklist to probe networks you own"
        );
    }
    "nothing to scan: every target is blocklisted or outside the allowlist".to_string()
}

/// One lane per family plan: its share of the rate, its shard of the permutation, and the
/// scan's shared state (stateless: no in-flight table — its two slots stay unused —, retries
/// are the source's later passes, and the receivers need no reaper's timeouts); a resumed
/// scan's loaded with what the earlier run's rows hold.
#[allow(clippy::too_many_arguments)]
fn scan_lanes(
    a: &ScanArgs,
    plans: &[Plan],
    engine: &EngineOptions,
    ids: Ids,
    rate: f64,
    planned: u64,
    filter: OutcomeFilter,
    resume: Option<&Resume>,
) -> Result<ScanLanes, Fail> {
    let mut lanes = vec![];
    let mut states = vec![];
    for p in plans {
        let share = rate * p.expected as f64 / planned.max(1) as f64;
        let toward = p
            .space
            .get(0)
            .ok_or_else(|| usage(format!("no {:?} targets left to scan", p.family)))?;
        let walk = p
            .cycle
            .shard(a.shard.index, a.shards)
            .map_err(|e| usage(e.to_string()))?;
        let state = Arc::new(ScanState::new(
            p.space.clone(),
            ids.key,
            ids.session,
            a.retries,
            a.cooldown,
            filter.beyond_hits(),
        ));
        let mut source = ScanSource::new(state.clone(), walk, p.limit);
        if let Some(r) = resume {
            let fam = family_key(p.family);
            source.resume(r.earlier.watermark.get(fam).copied().unwrap_or_default());
            if let Some(f) = r.earlier.frontier.get(fam) {
                state.set_known(*f);
            }
        }
        let source = Box::new(source);
        let mut work = work(share, engine, ids, a.cooldown, 0, 1024, source);
        work.scan = vec![state.clone()];
        states.push(state);
        lanes.push(Lane {
            slots: 2,
            hints: RunHints {
                toward,
                ids,
                // The identifiers are a MAC: any of the 65,536 may come back.
                probes: u64::MAX,
                tracked: false,
            },
            work,
            table_line: None,
        });
    }
    // The earlier run's answered targets are answered: never probed, never rows again.
    let earlier = match resume {
        Some(r) => load_earlier(r, &states, a.retries)?,
        None => vec![],
    };
    Ok((lanes, states, earlier))
}

/// Runs `asdic scan`.
pub fn run(a: ScanArgs) -> Result<ExitCode, Fail> {
    if a.show_default_blocklist {
        return show_default_blocklist();
    }
    validate(&a)?;
    // An earlier run to continue, locked and read back before anything else.
    let mut resume = match &a.resume {
        Some(p) => Some(resume::at(p)?),
        None => None,
    };
    let listed = read_listed(&a.targets, a.file.as_deref())?;
    let seed = a
        .seed
        .or_else(|| resume.as_ref().and_then(|r| r.earlier.seed))
        .unwrap_or_else(random_u64);
    let plans = plans(&a, listed, seed)?;
    // A job runner's retry of a dataset shard (--shard env): a finished partition is left
    // alone, an unfinished one resumed.
    if resume.is_none() && a.dataset.is_some() && a.shard.from.is_some() {
        match job_retry(&a, seed)? {
            Partition::Fresh => {}
            Partition::Finished => return Ok(ExitCode::SUCCESS),
            Partition::Unfinished(r) => resume = Some(*r),
        }
    }
    let digest = fingerprint(&a, &plans);
    if let Some(r) = &resume {
        check_resumable(r, &digest)?;
    }
    if a.no_default_blocklist {
        say!("asdic: default blocklist OFF (--no-default-blocklist)");
    }
    if a.dry_run {
        return dry_run(&a, &plans, seed);
    }
    let rate = rate(&a, &plans)?;
    let format = format_of(&a, resume.is_some())?;
    let planned: u64 = plans.iter().map(|p| p.expected).sum();
    let engine = a.io.options(
        a.ttl,
        a.interface.clone(),
        a.size,
        Some((SCAN_RX_FRAMES, SCAN_TX_FRAMES)),
    );
    let ids = crate::inputs::ids(IdChoice::Random);
    let to_stdout_text =
        a.dataset.is_none() && a.output.as_os_str() == "-" && format != Format::Parquet;
    let filter = filter_of(&a, to_stdout_text);
    let fields = fields_of(&a, format)?;
    let (lanes, states, earlier) = scan_lanes(
        &a,
        &plans,
        &engine,
        ids,
        rate,
        planned,
        filter,
        resume.as_ref(),
    )?;
    let lanes = Lanes {
        engine,
        lanes,
        sizes: vec![a.size],
        cores: a.io.cores.clone(),
        verbose: a.io.verbose,
        wait: a.cooldown,
        poll: Duration::from_millis(100),
        progress: false,
        rate_goal: Some(rate),
        session: ids.session,
        signal_exits: true,
    };
    let (run_id, partition) = partition_of(&a, seed, resume.as_ref());
    let mut mode = Scanning {
        filter,
        fields,
        partition,
        run_id,
        a,
        format,
        seed,
        rate,
        planned,
        states,
        output: None,
        status: None,
        counts: Counts::default(),
        rows: Vec::with_capacity(CHUNK_ROWS),
        write_error: None,
        write_stopped: false,
        stdout_closed: false,
        runtime_over: false,
        digest,
        resume,
        earlier,
        lock: None,
        samples: VecDeque::new(),
        last_watermark: None,
        resume_duplicates: 0,
        started_ns: 0,
    };
    drive(lanes, &mut mode)
}

/// The lanes of a scan, each family's state, and what an earlier run's rows hold of each.
type ScanLanes = (Vec<Lane>, Vec<Arc<ScanState>>, Vec<EarlierBits>);

/// What an earlier run's rows hold of one family's targets: one bit per target of its space
/// for those answered (echo reply, ICMP error, or refused by the local stack), one per pass
/// for the timeouts written (with --all-events), pages allocated where a bit is set.
struct EarlierBits {
    space: Arc<Space>,
    answered: Responders,
    timeouts: Vec<Responders>,
    /// Targets answered.
    count: u64,
}

impl EarlierBits {
    /// Whether `t` is of this family's space.
    fn holds(&self, t: std::net::IpAddr) -> bool {
        self.space.family() == Family::of(t)
    }

    fn answered(&self, t: std::net::IpAddr) -> bool {
        self.space
            .index_of(t)
            .is_some_and(|i| self.answered.contains(i))
    }

    fn timed_out(&self, t: std::net::IpAddr, attempt: u8) -> bool {
        match (
            self.space.index_of(t),
            self.timeouts.get(usize::from(attempt)),
        ) {
            (Some(i), Some(set)) => set.contains(i),
            _ => false,
        }
    }
}

/// Reads the earlier run's rows into `states`' responder sets (its answered targets are
/// never probed again) and, per family, what they hold.
fn load_earlier(
    r: &Resume,
    states: &[Arc<ScanState>],
    retries: u8,
) -> Result<Vec<EarlierBits>, Fail> {
    let mut bits: Vec<EarlierBits> = states
        .iter()
        .map(|s| EarlierBits {
            space: Arc::clone(s.space()),
            answered: Responders::new(s.space().len()),
            timeouts: (0..=retries)
                .map(|_| Responders::new(s.space().len()))
                .collect(),
            count: 0,
        })
        .collect();
    asdic_analysis::resume::for_each_row(&r.dir, &r.names, |t, what| {
        let Some(k) = bits.iter().position(|b| b.holds(t)) else {
            return;
        };
        let Some(i) = bits[k].space.index_of(t) else {
            return;
        };
        match what {
            Earlier::Answered => {
                states[k].responders().insert(i);
                if bits[k].answered.insert(i) {
                    bits[k].count += 1;
                }
            }
            Earlier::TimedOut(a) => {
                if let Some(set) = bits[k].timeouts.get(usize::from(a)) {
                    set.insert(i);
                }
            }
        }
    })
    .map_err(|e| usage(format!("--resume {e}")))?;
    Ok(bits)
}

/// `--show-default-blocklist`: the list on stdout.
fn show_default_blocklist() -> Result<ExitCode, Fail> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let listed = space::DEFAULT_BLOCKLIST
        .iter()
        .try_for_each(|(prefix, what)| writeln!(out, "{prefix:<20} # {what}"))
        .and_then(|()| out.flush());
    match listed {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => broken_pipe_ok(e),
    }
}

/// The results' format: Parquet for a dataset or a resumed scan's parts, else `-o`'s.
fn format_of(a: &ScanArgs, resumed: bool) -> Result<Format, Fail> {
    if a.dataset.is_some() || resumed {
        return Ok(Format::Parquet);
    }
    let stdout = a.output.as_os_str() == "-";
    let default = if stdout { Format::Csv } else { Format::Parquet };
    let f = format_for("-o", &a.output, a.output_format.map(|f| ("-O", f)), default)?;
    not_binary_on_a_terminal("-o", &a.output, f)?;
    Ok(f)
}

/// A dataset's partition of this shard (every shard of one scan names the same run), or the
/// one a resumed run continues: the run's name, and the directory.
fn partition_of(
    a: &ScanArgs,
    seed: u64,
    resume: Option<&Resume>,
) -> (Option<String>, Option<PathBuf>) {
    let run_id = a
        .dataset
        .as_ref()
        .map(|_| {
            a.run_id
                .clone()
                .unwrap_or_else(|| format!("seed-{seed:016x}"))
        })
        .or_else(|| resume.and_then(|r| r.earlier.last.run_id.clone()));
    let partition = match resume.map(|r| &r.place) {
        Some(Place::Partition { dir }) => Some(dir.path().to_path_buf()),
        Some(Place::File { .. }) => None,
        None => a.dataset.as_ref().zip(run_id.as_ref()).map(|(d, r)| {
            d.join(asdic_analysis::version_level())
                .join(format!("run={r}"))
                .join(format!("shard={}", a.shard.index))
        }),
    };
    (run_id, partition)
}

/// A job runner's retry of a dataset shard (`--shard env`): what its partition holds; an
/// unfinished one is refused with `--no-auto-resume`, a finished one said.
fn job_retry(a: &ScanArgs, seed: u64) -> Result<Partition, Fail> {
    let (_, Some(dir)) = partition_of(a, seed, None) else {
        return Ok(Partition::Fresh);
    };
    let p = resume::partition(&dir)?;
    match &p {
        Partition::Finished => say!(
            "asdic: dataset partition {} is complete (_SUCCESS): nothing to do",
            dir.display()
        ),
        Partition::Unfinished(_) if a.no_auto_resume => {
            return Err(usage(format!(
                "--dataset {}: holds the results of an earlier run of this partition \
                 (--no-auto-resume; `asdic recover` checks them)",
                dir.display()
            )));
        }
        _ => {}
    }
    Ok(p)
}

/// The scan's fingerprint (`asdic.scan_digest`): what a resumption must not change.
fn fingerprint(a: &ScanArgs, plans: &[Plan]) -> String {
    let mut words = vec![
        u128::from(a.shard.index),
        u128::from(a.shards),
        u128::from(a.retries),
        u128::from(a.ttl),
        u128::from(filter_of(a, false).bits()),
    ];
    words.extend(plans.iter().map(|p| u128::from(p.limit)));
    resume::digest(plans.iter().map(|p| (p.space.as_ref(), &p.cycle)), &words)
}

/// The key of a family in `asdic.watermark`: `V4`, `V6`.
fn family_key(f: Family) -> &'static str {
    match f {
        Family::V4 => "V4",
        Family::V6 => "V6",
    }
}

/// Refuses to continue an earlier run of another scan (what its fingerprint covers differs).
fn check_resumable(r: &Resume, digest: &str) -> Result<(), Fail> {
    match r.earlier.digest.as_deref() {
        Some(d) if d == digest => Ok(()),
        d => Err(usage(format!(
            "--resume: the earlier run scanned something else (fingerprint {}, this one \
             {digest}): give the same targets, --seed, --shards/--shard, --retries, --ttl, \
             --max-targets, outcome filter, --ipv6-samples and block- and allowlists (their \
             files' contents too); --rate, --cooldown, -s, --sync-every and the engine may \
             change",
            d.unwrap_or("none")
        ))),
    }
}

/// The outcomes a scan writes: `--filter`, else all with `--all-events`, else the responders
/// (echo replies, zmap's default) for text on stdout and every first answer for files.
fn filter_of(a: &ScanArgs, to_stdout_text: bool) -> OutcomeFilter {
    match a.filter {
        Some(f) => f,
        None if a.all_events => OutcomeFilter::ALL,
        None if to_stdout_text => OutcomeFilter::REPLIES,
        None => OutcomeFilter::HITS,
    }
}

/// `--fields`: the columns of the text formats; refused for Parquet (whose files hold every
/// column) and for a name that is no column.
fn fields_of(a: &ScanArgs, format: Format) -> Result<Fields, Fail> {
    if a.fields.is_empty() {
        return Ok(Fields::default());
    }
    if format == Format::Parquet {
        return Err(usage(
            "--fields chooses the columns of CSV and JSON Lines; Parquet holds every column \
             (select them when reading)",
        ));
    }
    Fields::of::<ScanRow>(&a.fields).map_err(|e| usage(format!("--fields: {e}")))
}

/// `scan`'s part of a run: rows streamed to the output, counts, the status.
struct Scanning {
    /// The outcomes written.
    filter: OutcomeFilter,
    /// The columns CSV and JSON Lines hold.
    fields: Fields,
    /// With --dataset: this shard's partition directory, and the run's name.
    partition: Option<PathBuf>,
    run_id: Option<String>,
    a: ScanArgs,
    format: Format,
    seed: u64,
    rate: f64,
    planned: u64,
    /// Each family's stateless scan state (responder set, silent targets).
    states: Vec<Arc<ScanState>>,
    output: Option<Output>,
    status: Option<Status>,
    counts: Counts,
    rows: Vec<ScanRow>,
    /// The first write failure: nothing more is recorded after it.
    write_error: Option<anyhow::Error>,
    write_stopped: bool,
    /// The results went to stdout and its reader went away: the run stops, exit 141.
    stdout_closed: bool,
    runtime_over: bool,
    /// The scan's fingerprint (`asdic.scan_digest`).
    digest: String,
    /// The earlier run this one continues.
    resume: Option<Resume>,
    /// Per family (in `states`' order), what the earlier run's rows hold.
    earlier: Vec<EarlierBits>,
    /// The lock on a fresh run's parts (or partition), held to the end.
    lock: Option<OwnedFd>,
    /// Where the sender was, sampled every tick: the watermark is the last sample a
    /// cooldown (and a margin) old.
    samples: VecDeque<(Instant, BTreeMap<String, Frontier>)>,
    /// The watermark the last part recorded.
    last_watermark: Option<String>,
    /// Answers to probes sent again whose targets the earlier run's rows answer already.
    resume_duplicates: u64,
    /// When the run started (ns since the Unix epoch).
    started_ns: u64,
}

/// How long after a probe's cooldown its answer may still be on its way to the part: from
/// the receivers through the run's event batches (a poll is 100 ms) to the rows written.
const WATERMARK_MARGIN: Duration = Duration::from_millis(500);

impl Mode for Scanning {
    fn start(&mut self, run: &Run) -> Result<(), Fail> {
        // Opened without capabilities, before anything is sent: a refused output ends the
        // run here.
        let (output, lock) = self.open_output(run)?;
        self.output = Some(output);
        self.lock = lock;
        self.started_ns = asdic_engine::now_ns();
        self.sample();
        if let Some(r) = &self.resume {
            let e = &r.earlier;
            let answered: u64 = self.earlier.iter().map(|b| b.count).sum();
            say!(
                "asdic: resuming the scan from {} ({}, {} of the earlier run kept; {} \
                 answered, not probed again)",
                format_frontiers(&e.watermark),
                counted(e.parts as u64, "part", "parts"),
                counted(e.rows, "row", "rows"),
                counted(answered, "target", "targets"),
            );
        }
        let a = &self.a;
        let bound: u64 = self
            .states
            .iter()
            .map(|s| Responders::bound(s.space().len()))
            .sum();
        say!(
            "asdic: scanning {}{} (shard {} of {}, seed {}), {:.0} probes/s, \
             cooldown {:?}, {}; stateless: memory is one bit per target of the space, \
             at most {}, whatever the rate and cooldown",
            if a.shards > 1 { "about " } else { "" },
            counted(self.planned, "target", "targets"),
            a.shard.index,
            a.shards,
            self.seed,
            self.rate,
            a.cooldown,
            counted(u64::from(a.retries), "retry", "retries"),
            human_bytes(bound)
        );
        self.status = Some(Status::new(a, self.planned, run.t0, run.dropped_dac)?);
        Ok(())
    }

    fn on_events(&mut self, _run: &Run, batch: &mut [Event]) -> Result<(), Fail> {
        let Some(out) = self.output.as_mut() else {
            return Ok(());
        };
        // Parts (a file's or a partition's) hold every failed send whatever the filter: a
        // resumed scan must not probe those targets again, as the scan itself would not.
        let parts = matches!(out, Output::Parts(_));
        for ev in batch.iter() {
            if let Some(b) = self.earlier.iter().find(|b| b.holds(ev.target)) {
                match ev.outcome {
                    // The target's answer is a row of the earlier run already.
                    asdic_core::event::Outcome::Duplicate { .. } if b.answered(ev.target) => {
                        self.resume_duplicates += 1;
                        continue;
                    }
                    // A timeout the earlier run wrote before its watermark's pass moved on.
                    asdic_core::event::Outcome::Timeout if b.timed_out(ev.target, ev.attempt) => {
                        continue;
                    }
                    _ => {}
                }
            }
            self.counts.add(ev);
            let row = ScanRow::from_event(ev, ev.attempt);
            if self.filter.wants(row.outcome) || (parts && row.outcome == ScanOutcome::SendFailed) {
                self.rows.push(row);
            }
            if self.rows.len() >= CHUNK_ROWS && self.write_error.is_none() {
                self.write_error = out.write(&self.rows).err();
                self.rows.clear();
            }
        }
        Ok(())
    }

    fn tick(&mut self, run: &Run) -> Result<(), Fail> {
        self.sample();
        if self.output.as_ref().is_some_and(Output::due) && self.write_error.is_none() {
            let (extra, always) = self.part_meta(false);
            if let Some(out) = self.output.as_mut() {
                self.write_error = out
                    .write(&self.rows)
                    .and_then(|()| out.sync_with(&extra, always))
                    .err();
            }
            self.rows.clear();
        }
        if let Some(e) = &self.write_error
            && !self.write_stopped
        {
            // Nothing more can be recorded: stop sending, stop waiting (said once).
            if self.a.output.as_os_str() == "-" && self.partition.is_none() && broken_pipe(e) {
                self.stdout_closed = true;
                say!("\nasdic: stdout closed: stopping");
            } else {
                say!("\nasdic: writing results failed: {e:#}; stopping");
            }
            run.stop(true);
            self.write_stopped = true;
        }
        if let Some(max) = self.a.max_runtime
            && !self.runtime_over
            && run.t0.elapsed() >= max
        {
            self.runtime_over = true;
            say!("\nasdic: --max-runtime {max:?} reached: stopping sending, cooling down");
            run.stop(false);
        }
        let counts = self.counts();
        if let Some(s) = &mut self.status {
            s.tick(run, &counts, &self.states, false);
        }
        Ok(())
    }

    fn drained(&mut self, _run: &Run) -> Result<(), Fail> {
        if let Some(out) = self.output.as_mut()
            && self.write_error.is_none()
            && !self.rows.is_empty()
        {
            self.write_error = out.write(&self.rows).err();
        }
        Ok(())
    }

    fn finish(&mut self, run: &Run, end: &End) -> Result<u8, Fail> {
        let counts = self.counts();
        if let Some(s) = &mut self.status {
            s.tick(run, &counts, &self.states, true);
            s.end();
        }
        let sent = run.sent();
        let send_secs = run.send_secs();
        let summary = counts.summary(sent, targets_probed(&attempts(&self.states)));
        // A resumed run's counts are its own: the earlier run's rows are in the file too.
        let summary = match &self.resume {
            Some(_) => format!("this resumption: {summary}"),
            None => summary,
        };
        // Before the file, so that its count of lost diagnostics includes these lines.
        say!("asdic: {summary}");
        say!(
            "asdic: {}, {} refused by the local stack; dropped: {}; {}",
            sent_line(sent, run.send_span_secs(), end.elapsed.as_secs_f64()),
            counts.send_failed,
            end.drops,
            end.kernel
        );
        let complete = !run.interrupted() && !self.runtime_over;
        // The last part records how far the scan got: all of it when it ended as planned.
        let (extra, _) = self.part_meta(complete);
        let closing = RunMeta::from_pairs(&extra);
        if self.resume.is_some() {
            say!(
                "asdic: resumed: {} the earlier run had sent were sent again; {} to them \
                 answered targets its rows hold (not rows again)",
                counted(self.resent(), "probe", "probes"),
                counted(self.resume_duplicates, "answer", "answers"),
            );
        }
        // Added to what the file opened with (run.meta: version, command, session, start…).
        let meta = RunMeta {
            watermark: closing.watermark,
            frontier: closing.frontier,
            resumed: closing.resumed,
            resume_duplicates: self.resume.as_ref().map(|_| self.resume_duplicates),
            summary: Some(summary.clone()),
            probes_sent: Some(sent),
            // Whole probes per second, as `{:.0}` writes them (ties to even).
            send_rate_pps: Some((sent as f64 / send_secs).round_ties_even()),
            duplicates: Some(counts.duplicates),
            late: Some(counts.late),
            drops: Some(end.drops.to_string()),
            complete: Some(complete),
            ..run.end_meta(&end.kernel)
        };
        let mut out = self.output.take().context("the output was never opened")?;
        let written = self.written();
        match self.write_error.take() {
            None => out
                .sync_with(&extra, true)
                .and_then(|()| out.finish(meta.to_pairs(), complete))
                .with_context(|| format!("writing {}", written.display()))?,
            // The reader of the results went away: nothing more to write there.
            Some(_) if self.stdout_closed => {}
            Some(e) => {
                return Err(Fail::System(
                    e.context(format!("writing {}", written.display())),
                ));
            }
        }
        if let Some(dir) = &self.partition {
            say!(
                "asdic: dataset partition {} {}",
                dir.display(),
                if complete {
                    "complete (_SUCCESS)"
                } else {
                    "stopped early: durable parts, no _SUCCESS (_STOPPED)"
                }
            );
        }
        if let Some(s) = self.status.take() {
            s.close();
        }
        Ok(if self.stdout_closed { EXIT_PIPE } else { 0 })
    }
}

impl Scanning {
    /// Where the results go (for messages).
    fn written(&self) -> PathBuf {
        match (&self.partition, self.resume.as_ref().map(|r| &r.place)) {
            (Some(p), _) => p.clone(),
            (None, Some(Place::File { out, .. })) => out.clone(),
            _ => self.a.output.clone(),
        }
    }

    /// Each family's frontier now.
    fn frontier(&self) -> BTreeMap<String, Frontier> {
        self.by_family(ScanState::frontier)
    }

    /// `f` of each family's scan state, by family key.
    fn by_family(&self, f: impl Fn(&ScanState) -> Frontier) -> BTreeMap<String, Frontier> {
        self.states
            .iter()
            .map(|s| (family_key(s.space().family()).to_string(), f(s)))
            .collect()
    }

    /// Samples the frontier; keeps the samples younger than a cooldown and its margin, and
    /// the newest older one.
    fn sample(&mut self) {
        let now = Instant::now();
        self.samples.push_back((now, self.frontier()));
        let horizon = self.a.cooldown + WATERMARK_MARGIN;
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= horizon)
        {
            self.samples.pop_front();
        }
    }

    /// The watermark now: where the sender was a cooldown and a margin ago (every answer
    /// to the probes before it has been written since), else where the run started.
    fn watermark(&self) -> BTreeMap<String, Frontier> {
        let horizon = self.a.cooldown + WATERMARK_MARGIN;
        let now = Instant::now();
        let old = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| now.duration_since(*t) >= horizon);
        match (old, self.samples.front()) {
            (Some((_, f)), _) => f.clone(),
            // The first sample is where the run started: a resumed run's watermark, or 0.
            (None, Some((_, first))) if self.resume.is_some() => first.clone(),
            _ => self.by_family(|_| Frontier::default()),
        }
    }

    /// Probes this run sent again that the earlier run had sent.
    fn resent(&self) -> u64 {
        self.states.iter().map(|s| s.resent()).sum()
    }

    /// What a finished part records (`asdic.watermark`, `asdic.frontier`, `asdic.resumed`),
    /// and whether it changed since the last part (then a part is written even without
    /// rows). `done`: the scan ended as planned, everything it sent has cooled down.
    fn part_meta(&mut self, done: bool) -> (Vec<(String, String)>, bool) {
        let frontier = self.frontier();
        let w = if done {
            frontier.clone()
        } else {
            self.watermark()
        };
        let w = format_frontiers(&w);
        let changed = self.last_watermark.as_deref() != Some(w.as_str());
        self.last_watermark = Some(w.clone());
        let mut extra = vec![
            (keys::WATERMARK.to_string(), w),
            (keys::FRONTIER.to_string(), format_frontiers(&frontier)),
        ];
        if let Some(r) = &self.resume {
            let this = format!(
                "{} from {} ({} sent again)",
                self.started_utc(),
                format_frontiers(&r.earlier.watermark),
                counted(self.resent(), "probe", "probes")
            );
            let all = match &r.earlier.history {
                Some(h) => format!("{h}; {this}"),
                None => this,
            };
            extra.push((keys::RESUMED.to_string(), all));
        }
        (extra, changed)
    }

    /// When this run started, UTC.
    fn started_utc(&self) -> String {
        asdic_analysis::clock::Utc::from_unix(self.started_ns / 1_000_000_000).to_string()
    }

    /// The counts from the events, and the timeouts counted without an event (all of them
    /// unless --all-events lists them).
    fn counts(&self) -> Counts {
        let mut c = self.counts;
        c.timeouts += self
            .states
            .iter()
            .map(|s| s.unlisted_timeouts())
            .sum::<u64>();
        c
    }

    /// Opens the results: a resumed run's where the earlier run's are; a fresh run's parts
    /// (or partition) locked against a second run of the same (returned: held to the end).
    fn open_output(&self, run: &Run) -> Result<(Output, Option<OwnedFd>), Fail> {
        let out = self.open_results(run)?;
        // A stopped run's file became the first part just now: its directory is new.
        let fresh = match self.resume.as_ref().map(|r| &r.place) {
            None => true,
            Some(Place::File { stopped, .. }) => *stopped,
            Some(Place::Partition { .. }) => false,
        };
        let lock = match &out {
            Output::Parts(p) if fresh => Some(
                p.try_lock()
                    .map_err(|e| usage(e.to_string()))?
                    .ok_or_else(|| {
                        usage(format!(
                            "{}: another asdic holds it: a run of this scan is going",
                            p.dir().display()
                        ))
                    })?,
            ),
            _ => None,
        };
        Ok((out, lock))
    }

    fn open_results(&self, run: &Run) -> Result<Output, Fail> {
        let base = RunMeta {
            run_id: self.run_id.clone(),
            scan_digest: Some(self.digest.clone()),
            ..run.meta(RunMode::Scan)
        };
        let a = &self.a;
        let meta = RunMeta {
            seed: Some(self.seed),
            shard: Some(a.shard.index),
            shards: Some(a.shards),
            // Whole probes per second, as `{:.0}` writes them (ties to even).
            rate_pps: Some(self.rate.round_ties_even()),
            cooldown_ms: Some(millis(a.cooldown)),
            retries: Some(a.retries),
            size: Some(a.size as u64),
            ttl: Some(a.ttl),
            default_blocklist: Some(!a.no_default_blocklist),
            all_events: Some(self.filter == OutcomeFilter::ALL),
            targets_planned: Some(self.planned),
            ..base
        }
        .to_pairs();
        let dac = run.dropped_dac;
        if let Some(r) = &self.resume {
            let p = match &r.place {
                Place::File { out, stopped } => {
                    if *stopped {
                        resume::stopped_file_to_part(out)?;
                    }
                    let dest = resolve("-o", out, false, dac)?;
                    PartedSink::<ScanRow>::reopen(&dest, meta, SCAN_ROW_GROUP, a.sync_every)
                }
                Place::Partition { dir } => PartedSink::<ScanRow>::resume_dataset(
                    dir.clone(),
                    meta,
                    SCAN_ROW_GROUP,
                    a.sync_every,
                ),
            }
            .map_err(|e| usage(format!("--resume {e}")))?;
            return Ok(Output::Parts(Box::new(p.0)));
        }
        if let (Some(root), Some(run_id)) = (&a.dataset, &self.run_id) {
            let levels = [
                asdic_analysis::version_level(),
                format!("run={run_id}"),
                format!("shard={}", a.shard.index),
            ];
            let dir = partition(root, &levels).map_err(|e| match e {
                asdic_analysis::Error::Fs(e) => open_fail("--dataset", e, dac),
                e => usage(format!("--dataset {e}")),
            })?;
            let p =
                PartedSink::<ScanRow>::in_dataset(dir, None, meta, SCAN_ROW_GROUP, a.sync_every)
                    .map_err(|e| usage(format!("--dataset {e}")))?;
            return Ok(Output::Parts(Box::new(p)));
        }
        let dest = resolve("-o", &a.output, a.force, dac)?;
        if self.format == Format::Parquet && !dest.is_stream() {
            let p = PartedSink::<ScanRow>::create(&dest, meta, SCAN_ROW_GROUP, a.sync_every)
                .map_err(|e| match e {
                    asdic_analysis::Error::Fs(e) => open_fail("-o", e, dac),
                    e => usage(format!("-o {e}")),
                })?;
            return Ok(Output::Parts(Box::new(p)));
        }
        if self.format == Format::Parquet && !dest.is_stdout() {
            say!(
                "asdic: -o {}: a stream: Parquet written as row groups complete, with no parts \
                 (--sync-every does not apply; a killed run leaves no footer)",
                a.output.display()
            );
        }
        // CSV and JSONL are written as they come: a file is created now under its name.
        let out = if self.format == Format::Parquet {
            dest.whole()
        } else {
            dest.live()
        }
        .map_err(|e| open_fail("-o", e, dac))?;
        let sink = file_sink_of(self.format, out, meta, SCAN_ROW_GROUP, self.fields.clone())
            .map_err(|e| usage(format!("-o {e}")))?;
        Ok(Output::Rows(sink))
    }
}

/// Prints (or counts) the targets in scan order.
fn dry_run(a: &ScanArgs, plans: &[Plan], seed: u64) -> Result<ExitCode, Fail> {
    let t0 = Instant::now();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut total = 0u64;
    let mut skipped = 0u64;
    for p in plans {
        let walk = p
            .cycle
            .shard(a.shard.index, a.shards)
            .map_err(|e| usage(e.to_string()))?;
        let mut scan = Scan::new(p.space.clone(), walk, p.limit);
        if a.quiet {
            while scan.next_target().is_some() {}
        } else {
            while let Some((_, addr)) = scan.next_target() {
                if let Err(e) = writeln!(out, "{addr}") {
                    return broken_pipe_ok(e);
                }
            }
        }
        total += scan.produced();
        skipped += scan.skipped();
    }
    if let Err(e) = out.flush() {
        return broken_pipe_ok(e);
    }
    let secs = t0.elapsed().as_secs_f64();
    say!(
        "asdic: dry run: {total} targets (shard {} of {}, seed {seed}){} in {secs:.3}s \
         ({:.1} M addresses/s); nothing sent",
        a.shard.index,
        a.shards,
        if skipped > 0 {
            format!(", {skipped} sampled addresses skipped as blocked")
        } else {
            String::new()
        },
        total as f64 / secs.max(1e-9) / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

fn broken_pipe_ok(e: std::io::Error) -> Result<ExitCode, Fail> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Fail::System(e.into()))
    }
}

/// What the scan found, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    replies: u64,
    errors: u64,
    timeouts: u64,
    send_failed: u64,
    duplicates: u64,
    late: u64,
}

impl Counts {
    fn add(&mut self, ev: &Event) {
        let c = match ScanOutcome::of(&ev.outcome) {
            ScanOutcome::Reply => &mut self.replies,
            ScanOutcome::Error => &mut self.errors,
            ScanOutcome::Timeout => &mut self.timeouts,
            ScanOutcome::SendFailed => &mut self.send_failed,
            ScanOutcome::Duplicate => &mut self.duplicates,
            ScanOutcome::Late => &mut self.late,
        };
        *c += 1;
    }

    fn summary(&self, sent: u64, probed: u64) -> String {
        format!(
            "{sent} probes: {} replies ({:.2}% hit rate), {} ICMP errors, {} timeouts, {} send \
             failures, {} duplicates, {} late",
            self.replies,
            hit_rate(self.replies, probed),
            self.errors,
            self.timeouts,
            self.send_failed,
            self.duplicates,
            self.late
        )
    }
}

/// zmap's hit rate, in percent: targets whose first answer was an echo reply ÷ targets
/// probed (ICMP errors are not hits).
fn hit_rate(replies: u64, probed: u64) -> f64 {
    100.0 * replies as f64 / probed.max(1) as f64
}

/// Per attempt, over every family: probes handed to the engine, probes it refused, first
/// answers.
fn attempts(states: &[Arc<ScanState>]) -> Vec<[u64; 3]> {
    let mut all: Vec<[u64; 3]> = vec![];
    for s in states {
        for (i, a) in s.attempts().into_iter().enumerate() {
            match all.get_mut(i) {
                Some(t) => (0..3).for_each(|k| t[k] += a[k]),
                None => all.push(a),
            }
        }
    }
    all
}

/// Targets probed: first tries the engine took (not those it refused).
fn targets_probed(attempts: &[[u64; 3]]) -> u64 {
    attempts.first().map_or(0, |a| a[0].saturating_sub(a[1]))
}

/// What a scan's ETA is computed from.
struct EtaView {
    /// Targets pass 0 will probe.
    planned: u64,
    /// Per attempt: probed, refused, first answers (summed over the families).
    attempts: Vec<[u64; 3]>,
    /// Whether pass 0 has given its last target.
    exhausted: bool,
    /// Probes per second the sending sustains.
    rate: f64,
    cooldown: f64,
    /// Seconds since the last probe went out.
    since_last_send: f64,
}

/// Seconds until a scan ends: the probes left in the current pass and in the retry passes to
/// come (each probing the targets still silent after the one before, at the current pass's
/// silent share), at the rate sending sustains, plus a cooldown after every pass (of the
/// current one, what is left once its sending is done); and whether the current pass is
/// cooling down.
fn scan_eta(v: &EtaView) -> (f64, bool) {
    let passes = v.attempts.len().max(1);
    let current = v.attempts.iter().rposition(|a| a[0] > 0).unwrap_or(0);
    let silent = |a: &[u64; 3]| a[0].saturating_sub(a[1] + a[2]) as f64;
    let expected = if current == 0 {
        v.planned as f64
    } else {
        silent(&v.attempts[current - 1])
    };
    let this = v.attempts.get(current).copied().unwrap_or([0; 3]);
    let left = if current == 0 && v.exhausted {
        0.0
    } else {
        (expected - this[0] as f64).max(0.0)
    };
    // Share of the current pass still silent: what each later pass keeps of the one before.
    let keep = if this[0] > 0 {
        (silent(&this) / this[0] as f64).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let mut later = 0.0;
    let mut size = expected;
    for _ in current + 1..passes {
        size *= keep;
        later += size;
    }
    let cooling = if left > 0.0 {
        v.cooldown
    } else {
        (v.cooldown - v.since_last_send).max(0.0)
    };
    let eta =
        (left + later) / v.rate.max(1e-9) + cooling + v.cooldown * (passes - current - 1) as f64;
    (eta, left == 0.0)
}

/// The once-a-second status: stderr line and optional JSON lines file.
struct Status {
    t0: Instant,
    planned: u64,
    cooldown: Duration,
    last: Instant,
    last_sent: u64,
    /// The stderr line, unless -q.
    line: Option<StatusLine>,
    file: Option<BufWriter<OutFile>>,
}

impl Status {
    fn new(a: &ScanArgs, planned: u64, t0: Instant, dropped_dac: bool) -> Result<Self, Fail> {
        // A log written as it goes: created now, under its name (never replacing one unless
        // --force).
        let file = match &a.status_file {
            Some(p) => Some(BufWriter::new(
                resolve("--status-file", p, a.force, dropped_dac)?
                    .live()
                    .map_err(|e| open_fail("--status-file", e, dropped_dac))?,
            )),
            None => None,
        };
        Ok(Status {
            t0,
            planned,
            cooldown: a.cooldown,
            last: t0,
            last_sent: 0,
            line: (!a.quiet).then(StatusLine::new),
            file,
        })
    }

    fn tick(&mut self, run: &Run, c: &Counts, states: &[Arc<ScanState>], last: bool) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        if !last && dt < 1.0 {
            return;
        }
        let mut sent = 0;
        let mut discarded = 0;
        let mut busy = 0;
        let mut exhausted = true;
        for p in &run.pipelines {
            sent += p.sender.sent.load(Ordering::Relaxed);
            busy += p.sender.table_full.load(Ordering::Relaxed);
            discarded += p.receiver.discarded.load(Ordering::Relaxed);
            exhausted &=
                p.sender.exhausted.load(Ordering::Relaxed) || p.sender.stop.load(Ordering::Relaxed);
        }
        let kernel = run.kernel();
        let elapsed = now.duration_since(self.t0).as_secs_f64();
        let send_rate = (sent - self.last_sent.min(sent)) as f64 / dt.max(1e-9);
        let attempts = attempts(states);
        let hit_rate = hit_rate(c.replies, targets_probed(&attempts));
        let (eta, cooling) = scan_eta(&EtaView {
            planned: self.planned,
            attempts,
            exhausted,
            rate: sent as f64 / run.send_secs(),
            cooldown: self.cooldown.as_secs_f64(),
            since_last_send: run.since_last_send_secs().unwrap_or(0.0),
        });
        let pct = 100.0 * (sent.min(self.planned)) as f64 / self.planned.max(1) as f64;
        self.last = now;
        self.last_sent = sent;
        if let Some(f) = &mut self.file {
            let obj = serde_json::json!({
                "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
                "sent": sent,
                "send_rate_pps": send_rate.round(),
                "planned": self.planned,
                "percent": (pct * 100.0).round() / 100.0,
                "replies": c.replies,
                "errors": c.errors,
                "timeouts": c.timeouts,
                "hit_rate_pct": (hit_rate * 100.0).round() / 100.0,
                "send_failed": c.send_failed,
                "duplicates": c.duplicates,
                "late": c.late,
                "discarded": discarded,
                "kernel_lost": kernel.lost(),
                "kernel": kernel.fields().iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                "table_full_waits": busy,
                "eta_s": eta.round(),
                "final": last,
            });
            let _ = writeln!(f, "{obj}").and_then(|()| f.flush());
        }
        if let Some(status) = self.line.as_mut().filter(|_| !last) {
            let line = format!(
                "{elapsed:6.1}s {pct:5.1}% sent {sent} ({send_rate:.0}/s) replies {} ({hit_rate:.1}% \
                 hit rate) errors {} drops {} kernel drops {} ETA {:.0}s{}",
                c.replies,
                c.errors,
                discarded + c.send_failed,
                kernel.lost(),
                eta.ceil(),
                if cooling { " (cooling down)" } else { "" }
            );
            status.show(&line);
        }
    }

    fn end(&self) {
        if let Some(l) = &self.line {
            l.end();
        }
    }

    /// The status log is complete: synced (best effort: it is not the results).
    fn close(self) {
        if let Some(f) = self.file
            && let Ok(out) = f.into_inner()
        {
            let _ = out.commit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> ScanArgs {
        let mut all = vec!["asdic", "scan"];
        all.extend_from_slice(argv);
        match crate::args::Cli::try_parse_from(all).unwrap().command {
            crate::args::Command::Scan(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn bandwidth_becomes_a_probe_rate() {
        // 20 + 8 + 32 bytes of IPv4 probe, padded to Ethernet's 46, plus 38 on the wire.
        let a = args(&["-B", "10M", "198.19.0.0/16"]);
        let r = rate(&a, &[]).unwrap();
        assert!((r - 10e6 / ((60 + 38) * 8) as f64).abs() < 1e-6, "{r}");
        let a = args(&["-B", "1G", "-s", "1000", "198.19.0.0/16"]);
        assert!((rate(&a, &[]).unwrap() - 1e9 / ((1028 + 38) * 8) as f64).abs() < 1e-6);
        let a = args(&["-R", "1234", "198.19.0.0/16"]);
        assert_eq!(rate(&a, &[]).unwrap(), 1234.0);
        let a = args(&["198.19.0.0/16"]);
        assert!(matches!(rate(&a, &[]), Err(Fail::Usage(m)) if m.contains("--rate")));
        assert!(
            crate::args::Cli::try_parse_from(["asdic", "scan", "-R", "1", "-B", "1M", "x"])
                .is_err()
        );
    }

    #[test]
    fn the_hit_rate_is_zmaps_and_errors_are_not_hits() {
        // Mid-scan: 1,000 targets probed, 500 echo replies and 2 ICMP errors so far, no
        // timeouts yet (the pass has not closed): 50 %, as zmap counts it, not the 99.6 % of
        // replies among answers.
        let c = Counts {
            replies: 500,
            errors: 2,
            ..Counts::default()
        };
        assert!(c.summary(1_000, 1_000).contains("(50.00% hit rate)"));
        // Retries are probes, not targets: 1,200 probes to 1,000 targets.
        assert!(
            c.summary(1_200, 1_000)
                .starts_with("1200 probes: 500 replies (50.00% hit")
        );
        assert_eq!(hit_rate(0, 0), 0.0);
    }

    #[test]
    fn the_eta_counts_cooldowns_and_retry_passes() {
        let view = |attempts: Vec<[u64; 3]>, exhausted, since| EtaView {
            planned: 10_000,
            attempts,
            exhausted,
            rate: 1_000.0,
            cooldown: 8.0,
            since_last_send: since,
        };
        // Pass 0 half sent, no retries: 5 s of sending, then the cooldown.
        let (eta, cooling) = scan_eta(&view(vec![[5_000, 0, 4_000]], false, 0.0));
        assert!((eta - 13.0).abs() < 1e-9 && !cooling, "{eta}");
        // Sent; 3 s into the cooldown: 5 s left, counting down (not frozen).
        let (eta, cooling) = scan_eta(&view(vec![[10_000, 0, 8_000]], true, 3.0));
        assert!((eta - 5.0).abs() < 1e-9 && cooling, "{eta}");
        // Two retries, pass 0 half sent with a fifth silent: 5 s, then 8 s; pass 1 of ~2,000
        // (2 s), 8 s; pass 2 of ~400 (0.4 s), 8 s.
        let (eta, _) = scan_eta(&view(vec![[5_000, 0, 4_000], [0; 3], [0; 3]], false, 0.0));
        assert!((eta - 31.4).abs() < 1e-9, "{eta}");
        // In pass 1 (2,000 silent after pass 0), 1,000 sent, half of them still silent:
        // 1 s, 8 s, then pass 2 of ~1,000 (1 s) and its 8 s.
        let (eta, cooling) = scan_eta(&view(
            vec![[10_000, 0, 8_000], [1_000, 0, 500], [0; 3]],
            true,
            0.0,
        ));
        assert!((eta - 18.0).abs() < 1e-9 && !cooling, "{eta}");
        // The last pass sent and cooled down: done.
        let (eta, cooling) = scan_eta(&view(vec![[10_000, 0, 9_000]], true, 9.0));
        assert!(eta == 0.0 && cooling, "{eta}");
    }
}
