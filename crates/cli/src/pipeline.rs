//! What `ping` and `scan` share: one engine, in-flight table, sender thread and receiver
//! thread per address family, and the signal handling that stops them.

use std::io::{BufReader, IsTerminal};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use asdic_core::event::{Drops, Event};
use asdic_core::matcher::Matcher;
use asdic_core::retry::Retry;
use asdic_core::source::Source;
use asdic_core::table::InflightTable;
use asdic_core::targets::{self, TargetSpec};
use asdic_engine::raw::{self, RawOptions};
use asdic_engine::uring::{self, UringOptions};
use asdic_engine::xdp::{self, XdpOptions};
use asdic_engine::{EngineError, KernelDrops, Rx, Tx, caps};
use asdic_receiver::rx::{self, Role, RxConfig, RxShared};
use asdic_sender::tx::{self, SenderConfig, SenderShared};
use asdic_wire::Family;
use asdic_wire::template::{Layer, Template};
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::Fail;
use crate::args::{EngineChoice, XdpModeChoice};
use asdic_wire::payload::Numbering;
use core::net::IpAddr;

/// One address family's engine, table and the counters of its threads.
pub struct Pipeline {
    /// The family.
    pub family: Family,
    /// Its in-flight table.
    pub table: Arc<InflightTable>,
    /// The engine halves (one RX half per queue), until the threads take them.
    engine: Option<Halves>,
    /// The engine that runs.
    pub engine_kind: Engine,
    /// Why that one: "as asked", or auto's reason.
    pub engine_why: String,
    /// The sender's counters and stop flag.
    pub sender: Arc<SenderShared>,
    /// The receiver's counters and abort flag.
    pub receiver: Arc<RxShared>,
}

/// How to open a pipeline's engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// TTL / hop limit of probes.
    pub ttl: u8,
    /// Interface to bind to.
    pub device: Option<String>,
    /// Probes per engine call.
    pub batch: usize,
    /// ICMP payload bytes per probe.
    pub size: usize,
    /// Which engine to open.
    pub choice: EngineChoice,
    /// XDP attach mode, if forced.
    pub xdp_mode: Option<XdpModeChoice>,
    /// The next hop's MAC for the XDP engine, if given.
    pub gateway_mac: Option<[u8; 6]>,
    /// XDP engine: UMEM frames for receiving per queue, when not the engine's default: a
    /// run that receives for a long time on a busy machine buffers more against stalls.
    pub xdp_rx_frames: Option<u32>,
    /// XDP engine: the RX queues to bind (default: all).
    pub queues: Option<Vec<u32>>,
}

/// What the XDP engine needs to know of a pipeline's run besides the engine options.
#[derive(Debug, Clone, Copy)]
pub struct RunHints {
    /// A target of the pipeline: the route to it picks interface, next hop and source.
    pub toward: IpAddr,
    /// The run's identifiers (the XDP program redirects only replies carrying them).
    pub ids: Ids,
    /// Probes the pipeline may send (identifiers in use follow from it).
    pub probes: u64,
}

impl RunHints {
    /// (first identifier, how many) of the identifiers the run's probes carry.
    pub fn ident_range(&self) -> (u16, u32) {
        match self.ids.numbering {
            Numbering::Spread { base } => {
                let span = (self.probes >> 16).saturating_add(1).min(65_536);
                (base, span as u32)
            }
            Numbering::Fixed { ident } => (ident, 1),
        }
    }
}

/// An engine this build can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Raw ICMP sockets, `sendmmsg`/`recvmmsg`.
    Raw,
    /// The same sockets driven through io_uring.
    Uring,
    /// AF_XDP.
    Xdp,
}

impl Engine {
    /// Its name, as `--engine` takes it and the Parquet metadata records it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Raw => "raw",
            Engine::Uring => "uring",
            Engine::Xdp => "xdp",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Engine::Raw => "raw ICMP sockets with sendmmsg/recvmmsg and kernel timestamps",
            Engine::Uring => {
                "raw ICMP sockets driven through io_uring (SendMsg/RecvMsg requests) and kernel \
                 timestamps"
            }
            Engine::Xdp => "AF_XDP socket, Ethernet frames through a UMEM, asdic's XDP program",
        }
    }

    fn other(self) -> Engine {
        match self {
            Engine::Raw | Engine::Xdp => Engine::Uring,
            Engine::Uring => Engine::Raw,
        }
    }
}

/// The engine `--engine auto` tries first, and why; the other is its fallback. Measured on
/// the 2-core test bed (bench/engine-rates.sh, bench/RESULTS.md), uring was no faster than raw
/// at any rate (within run-to-run noise, and a little costlier sending into a sink), so auto
/// keeps raw, which needs no io_uring.
const AUTO_FIRST: (Engine, &str) = (
    Engine::Raw,
    "uring measured no faster on the test bed, see bench/RESULTS.md",
);

/// Auto's choice: `first` (because `why`), or, only when `first` cannot run here at all, the
/// other. Other errors (permissions, socket options) would fail the other engine the same way
/// and are returned as they are.
fn pick<T>(
    (first, why): (Engine, &str),
    mut open: impl FnMut(Engine) -> Result<T, EngineError>,
) -> Result<(T, Engine, String), EngineError> {
    match open(first) {
        Ok(h) => Ok((h, first, format!("auto: {why}"))),
        Err(EngineError::Unavailable { reason, .. }) => {
            let other = first.other();
            let h = open(other)?;
            Ok((
                h,
                other,
                format!("auto: {} is not available here: {reason}", first.name()),
            ))
        }
        Err(e) => Err(e),
    }
}

type Halves = (Box<dyn Tx>, Vec<Box<dyn Rx>>);

/// Checks `--cores TX,RX[,RX…]`: at most one core per thread a run can have (the sender and
/// up to one receiver per XDP queue), each core listed once.
pub fn check_cores(cores: &[usize]) -> Result<(), String> {
    let mut seen = cores.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != cores.len() {
        return Err("--cores: each core at most once (TX first, then the RX cores)".into());
    }
    if cores.len() > 1 + xdp::MAX_QUEUES as usize {
        return Err(format!(
            "--cores: at most {} cores (TX, then one per RX queue)",
            1 + xdp::MAX_QUEUES
        ));
    }
    Ok(())
}

/// The core of RX worker `i` (one per queue): the RX cores of `--cores` in turn, or none.
fn rx_core(cores: &[usize], i: usize) -> Option<usize> {
    let rx = cores.get(1..).filter(|r| !r.is_empty())?;
    Some(rx[i % rx.len()])
}

/// Which pipeline of this run holds the XDP engine, if one does.
static XDP_TAKEN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn open_engine(
    e: Engine,
    family: Family,
    o: &EngineOptions,
    hints: &RunHints,
    auto: bool,
) -> Result<(Halves, String), EngineError> {
    let socket = RawOptions {
        v6: family == Family::V6,
        ttl: o.ttl,
        device: o.device.clone(),
        batch: o.batch,
        max_reply: (o.size + 128).max(2048),
        // Fault injection for the test that checks the sockets' drop count against the
        // bed (a small buffer overflows while the receiver is stalled); undocumented.
        rcvbuf: std::env::var("ASDIC_INJECT_RCVBUF")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(RawOptions::default().rcvbuf),
        ..RawOptions::default()
    };
    Ok(match e {
        Engine::Raw => {
            let (tx, rx) = raw::open(&socket)?;
            ((Box::new(tx), vec![Box::new(rx)]), String::new())
        }
        Engine::Uring => {
            let (tx, rx) = uring::open(&UringOptions {
                socket,
                ..UringOptions::default()
            })?;
            ((Box::new(tx), vec![Box::new(rx)]), String::new())
        }
        Engine::Xdp => {
            let (ident_base, ident_span) = hints.ident_range();
            let opts = XdpOptions {
                device: o.device.clone(),
                mode: o.xdp_mode.map(|m| match m {
                    XdpModeChoice::Native => asdic_xdp::Mode::Native,
                    XdpModeChoice::Generic => asdic_xdp::Mode::Generic,
                }),
                session: hints.ids.session,
                ident_base,
                ident_span,
                batch: o.batch,
                gateway_mac: o.gateway_mac,
                frame_len: 14 + if family == Family::V6 { 40 } else { 20 } + 8 + o.size,
                queues: o.queues.clone(),
                // Auto must not pick an engine that leaves replies unread.
                require_all_queues: auto,
                ..XdpOptions::new(hints.toward)
            };
            let opts = XdpOptions {
                rx_frames: o.xdp_rx_frames.unwrap_or(opts.rx_frames),
                ..opts
            };
            let (tx, rxs, info) = xdp::open(&opts)?;
            let detail = xdp_detail(&info);
            let rxs = rxs
                .into_iter()
                .map(|r| Box::new(r) as Box<dyn Rx>)
                .collect();
            ((Box::new(tx), rxs), detail)
        }
    })
}

/// Where the XDP engine runs: interface, queues (and which are left without a socket), mode,
/// addresses, UMEM.
fn xdp_detail(info: &xdp::XdpInfo) -> String {
    let p = &info.path;
    let n = info.queues.len();
    let queues = if info.unserved.is_empty() {
        format!(
            "{} queue{} {} (every RX queue)",
            p.link.name,
            if n == 1 { "" } else { "s" },
            xdp::queue_list(&info.queues)
        )
    } else {
        format!(
            "{} queue{} {} of {}; WARNING: RX queue{} {} without a socket, replies the NIC \
             steers there are lost (counted as xdp_redirect_failed)",
            p.link.name,
            if n == 1 { "" } else { "s" },
            xdp::queue_list(&info.queues),
            info.rx_queue_count,
            if info.unserved.len() == 1 { "" } else { "s" },
            xdp::queue_list(&info.unserved)
        )
    };
    let mut detail = format!(
        "on {queues}, TX through queue{} {}, {} mode, {} RX frames per queue ({} MiB of UMEM), \
         from {} {} to next hop {} {}",
        if info.tx_queues.len() == 1 { "" } else { "s" },
        xdp::queue_list(&info.tx_queues),
        info.mode,
        info.rx_frames,
        info.umem_bytes >> 20,
        p.src_ip,
        mac(p.src_mac),
        p.next_hop,
        mac(p.dst_mac)
    );
    if let Some(r) = &info.replaced {
        detail.push_str(&format!("; {r}"));
    }
    detail
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Pipeline {
    /// Opens the engine for `family` with a table of `slots` slots.
    pub fn open(
        family: Family,
        slots: usize,
        o: &EngineOptions,
        hints: &RunHints,
    ) -> Result<Self, Fail> {
        let system = |e: EngineError| Fail::System(e.into());
        // One AF_XDP socket per interface queue (and one XDP program per interface): the
        // first pipeline of a run that gets XDP keeps it, the other family uses sockets.
        let xdp_taken = XDP_TAKEN.lock().map(|t| t.clone()).unwrap_or(None);
        let auto = o.choice == EngineChoice::Auto;
        let open = |e: Engine| match (&xdp_taken, e) {
            (Some(by), Engine::Xdp) => Err(EngineError::Unavailable {
                engine: "xdp",
                reason: format!(
                    "the {by} (one AF_XDP socket per interface queue; run the other family \
                     separately to use XDP for both)"
                ),
            }),
            _ => open_engine(e, family, o, hints, auto),
        };
        let ((halves, detail), kind, why) = match o.choice {
            EngineChoice::Raw => (
                open(Engine::Raw).map_err(system)?,
                Engine::Raw,
                "as asked".into(),
            ),
            EngineChoice::Uring => match open(Engine::Uring) {
                Ok(h) => (h, Engine::Uring, "as asked".to_string()),
                Err(e @ EngineError::Unavailable { .. }) => {
                    return Err(Fail::System(anyhow::anyhow!(
                        "--engine uring: {e} (--engine raw or auto work without it)"
                    )));
                }
                Err(e) => return Err(system(e)),
            },
            EngineChoice::Xdp => match open(Engine::Xdp) {
                Ok(h) => (h, Engine::Xdp, "as asked".to_string()),
                Err(e) => {
                    return Err(Fail::System(anyhow::anyhow!(
                        "--engine xdp: {e} (--engine auto falls back to raw sockets)"
                    )));
                }
            },
            EngineChoice::Auto => match open(Engine::Xdp) {
                Ok(h) => (h, Engine::Xdp, "auto: XDP attached".to_string()),
                Err(x) => {
                    let (h, kind, why) = pick(AUTO_FIRST, open).map_err(system)?;
                    let x = match x {
                        EngineError::Unavailable { reason, .. } => reason,
                        e => e.to_string(),
                    };
                    (h, kind, format!("{why}; XDP not used: {x}"))
                }
            },
        };
        if kind == Engine::Xdp
            && let Ok(mut t) = XDP_TAKEN.lock()
        {
            *t = Some(format!("{family:?} pipeline has it ({detail})"));
        }
        let engine_why = if detail.is_empty() {
            why
        } else {
            format!("{why}; {detail}")
        };
        Ok(Pipeline {
            family,
            table: Arc::new(InflightTable::new(slots)),
            engine: Some(halves),
            engine_kind: kind,
            engine_why,
            sender: Arc::new(SenderShared::default()),
            receiver: Arc::new(RxShared::default()),
        })
    }

    /// Starts the receiver and sender threads; the sender takes targets from `source` and
    /// sends probes of `sizes[class]` payload bytes (one template per size).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &mut self,
        cfg: SenderConfig,
        rx_cfg: RxConfig,
        sizes: &[usize],
        cores: &[usize],
        mut source: Box<dyn Source + Send>,
        events: &Sender<Vec<Event>>,
        recycle: &Receiver<Vec<Event>>,
    ) -> Result<Running, Fail> {
        let (mut txe, rxes) = self.engine.take().context("engine already started")?;
        let caps = txe.caps();
        let layer = match caps.layer {
            asdic_engine::TxLayer::Icmp => Layer::Icmp,
            asdic_engine::TxLayer::Ethernet {
                src_mac,
                dst_mac,
                src_ip,
            } => Layer::Ethernet {
                src_mac,
                dst_mac,
                src_ip,
            },
        };
        let mut templates = Vec::with_capacity(sizes.len());
        for &size in sizes {
            let template = Template::new(self.family, layer, size)
                .map_err(|e| Fail::Usage(format!("--size {size}: cannot build a probe: {e}")))?;
            if template.len() > caps.max_packet {
                return Err(Fail::Usage(format!(
                    "--size {size}: {}-byte probes exceed what the {} engine sends ({} bytes: \
                     it does not fragment); use a smaller --size or --engine raw",
                    template.len(),
                    caps.engine,
                    caps.max_packet
                )));
            }
            templates.push(template);
        }
        let (retry_tx, retry_rx) = bounded::<Retry>(65_536);
        let tx_core = cores.first().copied();
        let with_retries = rx_cfg.retries > 0;

        // One receiver per RX half (queue): the first one reaps and ends the pipeline's
        // receiving, the others match until it has ended.
        let mut receivers = Vec::with_capacity(rxes.len());
        let multi = rxes.len() > 1;
        for (i, mut rxe) in rxes.into_iter().enumerate() {
            let role = if i == 0 { Role::Reaper } else { Role::Helper };
            let rx_core = rx_core(cores, i);
            let mut matcher = Matcher::new(self.table.clone(), cfg.key, cfg.session, cfg.numbering);
            let shared = self.receiver.clone();
            let sender = self.sender.clone();
            let (events, recycle) = (events.clone(), recycle.clone());
            let retry_tx = (role == Role::Reaper && with_retries).then(|| retry_tx.clone());
            let name = if multi {
                format!("asdic-rx-{:?}-{i}", self.family)
            } else {
                format!("asdic-rx-{:?}", self.family)
            };
            let handle = std::thread::Builder::new().name(name).spawn(
                move || -> anyhow::Result<Drops> {
                    // If a receiver ends early (error or panic), replies go unread: stop
                    // sending.
                    let _stop = StopOnDrop(sender);
                    tx::pin(rx_core).map_err(|e| anyhow::anyhow!("--cores: {e}"))?;
                    // Fault injection for the tests that check what a crash leaves behind
                    // (the XDP program must be gone) and what a stalled receiver costs
                    // (the kernel's drops must be reported); undocumented on purpose.
                    if let Some(v) = std::env::var_os("ASDIC_INJECT_PANIC")
                        && v == "rx"
                    {
                        std::thread::sleep(Duration::from_millis(300));
                        panic!("injected panic (ASDIC_INJECT_PANIC=rx)");
                    }
                    if let Some(ms) = std::env::var("ASDIC_INJECT_RX_STALL_MS")
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        std::thread::sleep(Duration::from_millis(ms.min(10_000)));
                    }
                    rx::run(
                        rxe.as_mut(),
                        &mut matcher,
                        &rx_cfg,
                        &shared,
                        &events,
                        &recycle,
                        retry_tx.as_ref(),
                        role,
                    )?;
                    Ok(matcher.drops())
                },
            )?;
            receivers.push(handle);
        }
        drop(retry_tx);
        let sender = {
            let table = self.table.clone();
            let (shared, rx_shared) = (self.sender.clone(), self.receiver.clone());
            std::thread::Builder::new()
                .name(format!("asdic-tx-{:?}", self.family))
                .spawn(move || -> anyhow::Result<()> {
                    let pinned = tx::pin(tx_core).map_err(|e| anyhow::anyhow!("--cores: {e}"));
                    let r = pinned.and_then(|()| {
                        let retries = with_retries.then_some(&retry_rx);
                        tx::run(
                            txe.as_mut(),
                            &templates,
                            &table,
                            source.as_mut(),
                            &cfg,
                            &shared,
                            retries,
                            Some(&rx_shared.behind),
                        )
                        .map_err(Into::into)
                    });
                    // Release: the receiver's acquire load sees every claim made before.
                    rx_shared.sender_done.store(true, Ordering::Release);
                    r
                })?
        };
        Ok(Running { sender, receivers })
    }
}

/// Stops the sender when dropped: the receiver's thread holds one while it runs, so that the
/// sender stops when it ends in any way (on its normal end the sender is already done).
struct StopOnDrop(Arc<SenderShared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// One pipeline's work: its sender's and receiver's parameters and its targets.
pub type Work = (SenderConfig, RxConfig, Box<dyn Source + Send>);

/// The running pipelines and the stream of their events.
pub struct Started {
    /// Each pipeline's threads.
    pub handles: Vec<Running>,
    /// Event batches from every receiver; closed when all have ended.
    pub events: Receiver<Vec<Event>>,
    /// Where emptied batches go back to the receivers.
    pub recycle: Sender<Vec<Event>>,
}

/// Starts every pipeline on its work (same order), with probes of `sizes[class]` payload
/// bytes, on `cores`.
pub fn start_all(
    pipelines: &mut [Pipeline],
    work: Vec<Work>,
    sizes: &[usize],
    cores: &[usize],
) -> Result<Started, Fail> {
    let (ev_tx, events) = bounded::<Vec<Event>>(256);
    let (recycle, recycle_rx) = bounded::<Vec<Event>>(256);
    let mut handles = vec![];
    for (p, (cfg, rx_cfg, source)) in pipelines.iter_mut().zip(work) {
        handles.push(p.spawn(cfg, rx_cfg, sizes, cores, source, &ev_tx, &recycle_rx)?);
    }
    Ok(Started {
        handles,
        events,
        recycle,
    })
}

/// A pipeline's running threads.
pub struct Running {
    sender: std::thread::JoinHandle<anyhow::Result<()>>,
    receivers: Vec<std::thread::JoinHandle<anyhow::Result<Drops>>>,
}

impl Running {
    /// Waits for every thread; the receivers' drop counters added up, or the first failure.
    pub fn join(self) -> anyhow::Result<Drops> {
        let s = self
            .sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"));
        let mut drops = Drops::default();
        let mut failure: Option<anyhow::Error> = None;
        for h in self.receivers {
            match h.join() {
                Ok(Ok(d)) => drops.add(&d),
                Ok(Err(e)) => {
                    failure.get_or_insert(e.context("receiving"));
                }
                Err(_) => {
                    failure.get_or_insert(anyhow::anyhow!("receiver thread panicked"));
                }
            }
        }
        s?.context("sending")?;
        match failure {
            Some(e) => Err(e),
            None => Ok(drops),
        }
    }
}

/// Waits for every pipeline's threads: the receivers' drop counters added up, and the first
/// failure (the other threads are still joined, so none outlives the run).
pub fn join_all(handles: Vec<Running>) -> (Drops, Option<anyhow::Error>) {
    let mut failure = None;
    let mut drops = Drops::default();
    for h in handles {
        match h.join() {
            Ok(d) => drops.add(&d),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    (drops, failure)
}

/// What identifies a run's probes: shared by its pipelines.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    /// How probe numbers map to (identifier, sequence).
    pub numbering: asdic_wire::payload::Numbering,
    /// The run's session id.
    pub session: u32,
    /// The run's MAC key.
    pub key: asdic_wire::payload::Key,
}

/// The sender's and the receiver's parameters for a pipeline sending `rate` probes/s whose
/// probes wait `wait` for an answer, retried `retries` times, in RX batches of `events`.
pub fn configs(
    rate: f64,
    o: &EngineOptions,
    ids: Ids,
    wait: Duration,
    retries: u8,
    events: usize,
) -> (SenderConfig, RxConfig) {
    let cfg = SenderConfig {
        rate,
        batch: o.batch,
        ttl: o.ttl,
        numbering: ids.numbering,
        session: ids.session,
        key: ids.key,
        retries: retries > 0,
    };
    let rx_cfg = RxConfig {
        timeout: wait,
        retries,
        poll: Duration::from_millis(10),
        batch: events,
    };
    (cfg, rx_cfg)
}

/// Table slots for a pipeline sending `rate` probes/s that each wait up to `wait`: twice the
/// probes in flight, at least 1024.
pub fn slots_for(rate: f64, wait: Duration) -> u64 {
    let want = (2.0 * rate * (wait.as_secs_f64() + 0.1)).ceil();
    if want.is_finite() {
        (want as u64).max(1024)
    } else {
        u64::MAX
    }
}

/// Targets from arguments, then `file` (or stdin: with `-`, or when there is neither and
/// stdin is not a terminal).
pub fn read_specs(args: &[String], file: Option<&Path>) -> Result<Vec<TargetSpec>, Fail> {
    let usage = |m: String| Fail::Usage(m);
    let mut specs = vec![];
    for t in args {
        specs.push(TargetSpec::parse(t).map_err(|e| usage(format!("target {e}")))?);
    }
    let from_stdin = file.is_some_and(|f| f.as_os_str() == "-")
        || (args.is_empty() && file.is_none() && !std::io::stdin().is_terminal());
    if from_stdin {
        let more = targets::parse_lines(std::io::stdin().lock())
            .map_err(|e| usage(format!("stdin: {e}")))?;
        specs.extend(more);
    } else if let Some(f) = file {
        specs.extend(read_cidr_file(f, "--file")?);
    }
    if specs.is_empty() {
        return Err(usage(
            "no targets: give addresses or CIDRs as arguments, --file FILE, or on stdin".into(),
        ));
    }
    Ok(specs)
}

/// Addresses and prefixes from a file (`flag` names the option in errors).
pub fn read_cidr_file(f: &Path, flag: &str) -> Result<Vec<TargetSpec>, Fail> {
    let file =
        std::fs::File::open(f).map_err(|e| Fail::Usage(format!("{flag} {}: {e}", f.display())))?;
    targets::parse_lines(BufReader::new(file))
        .map_err(|e| Fail::Usage(format!("{flag} {}: {e}", f.display())))
}

/// 64 random bits from the OS (time-derived if it has no entropy source).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // getrandom only fails without any OS entropy source; fall back to time then.
    if getrandom::fill(&mut b).is_err() {
        return asdic_engine::now_ns().rotate_left(17) ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(b)
}

/// Where a run creates files once it is under way: the directory, and the option and path
/// the operator gave (for the error).
pub struct Writes<'a> {
    /// The option, as the subcommand spells it (`-o`, `--output`).
    pub flag: &'static str,
    /// The path given with it.
    pub given: &'a Path,
    /// The directory files are created (and renamed) in.
    pub dir: &'a Path,
}

impl<'a> Writes<'a> {
    /// An output file: files are created beside it (`FILE.tmp`, `FILE.partial`).
    pub fn beside(flag: &'static str, file: &'a Path) -> Self {
        Writes {
            flag,
            given: file,
            dir: asdic_analysis::dir_of(file),
        }
    }

    /// An output directory: files are created in it.
    pub fn inside(flag: &'static str, dir: &'a Path) -> Self {
        Writes {
            flag,
            given: dir,
            dir,
        }
    }
}

/// Every engine of the run is open: drops every capability the process holds (nothing after
/// this point needs one: sockets, UMEM and XDP links are open, and closing them needs none)
/// before any thread starts, since capabilities are per thread; checks that the output can
/// still be written (see [`check_writable`]); then prints which engine runs and why.
pub fn ready(pipelines: &[Pipeline], writes: Option<Writes<'_>>) -> Result<(), Fail> {
    let held = caps::CapSet::effective().ok();
    if held.is_none_or(|c| !c.is_empty())
        && let Err(e) = caps::drop_all()
    {
        eprintln!("asdic: warning: could not drop capabilities after setup: {e}");
    }
    if let Some(w) = writes {
        let dropped_dac = held.is_some_and(|c| c.has(caps::Cap::DacOverride));
        check_writable(&w, dropped_dac)?;
    }
    eprintln!("{}", engine_line(pipelines));
    Ok(())
}

/// Creates and removes a file in `w.dir`, so that an output that cannot be written is found
/// before anything is sent, not when the results are due. Root is the case in point: with
/// CAP_DAC_OVERRIDE dropped (`dropped_dac`) it can no longer write into another user's
/// directory, which it could when the run started.
pub fn check_writable(w: &Writes<'_>, dropped_dac: bool) -> Result<(), Fail> {
    let probe = w
        .dir
        .join(format!(".asdic-write-check-{:016x}", random_u64()));
    let e = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => return std::fs::remove_file(&probe).map_err(|e| file_error(w, e, false)),
        Err(e) => e,
    };
    Err(file_error(w, e, dropped_dac))
}

fn file_error(w: &Writes<'_>, e: std::io::Error, dropped_dac: bool) -> Fail {
    let why = if dropped_dac && e.kind() == std::io::ErrorKind::PermissionDenied {
        "; asdic drops its capabilities once its engines are open (CAP_DAC_OVERRIDE too, \
         which lets root write anywhere): write to a directory its user owns or that is \
         world-writable (e.g. -o /var/tmp/NAME), or run asdic as yourself with the \
         capabilities `setcap` grants (README, Least privilege)"
    } else {
        ""
    };
    let where_ = if w.dir == w.given {
        String::new()
    } else {
        format!(": cannot create files in {}", w.dir.display())
    };
    Fail::Usage(format!(
        "{} {}{where_}: {e}{why}",
        w.flag,
        w.given.display()
    ))
}

fn engine_line(pipelines: &[Pipeline]) -> String {
    let mut parts: Vec<String> = vec![];
    for p in pipelines {
        let part = format!(
            "engine {}: {} ({})",
            p.engine_kind.name(),
            p.engine_kind.what(),
            p.engine_why
        );
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    format!("asdic: {}", parts.join("; "))
}

/// The engines that ran, for the `asdic.engine` metadata: one name, or per family when they
/// differ (`V4:uring,V6:raw`).
pub fn engine_names(pipelines: &[Pipeline]) -> String {
    let first = pipelines.first().map(|p| p.engine_kind);
    if pipelines.iter().all(|p| Some(p.engine_kind) == first) {
        return first.map_or("none", Engine::name).to_string();
    }
    pipelines
        .iter()
        .map(|p| format!("{:?}:{}", p.family, p.engine_kind.name()))
        .collect::<Vec<_>>()
        .join(",")
}

/// What the kernel dropped before the pipelines' receivers could read it, over all of them.
pub fn kernel_drops(pipelines: &[Pipeline]) -> KernelDrops {
    RxShared::kernel_drops_of(pipelines.iter().map(|p| p.receiver.as_ref()))
}

/// The kernel's drops as Parquet metadata: `asdic.kernel_lost` (replies and errors of the run
/// that asdic never saw) and `asdic.kernel.<counter>` for each counter.
pub fn kernel_metadata(k: &KernelDrops) -> Vec<(String, String)> {
    let mut v = vec![("asdic.kernel_lost".to_string(), k.lost().to_string())];
    for (name, n) in k.fields() {
        v.push((format!("asdic.kernel.{name}"), n.to_string()));
    }
    v
}

/// The closing line for a run whose replies the kernel dropped, if it did: how many and
/// where, and what it means for the results.
pub fn kernel_warning(k: &KernelDrops) -> Option<String> {
    (k.lost() > 0).then(|| {
        let mut why = vec![];
        if k.redirect_failed > 0 {
            why.push(
                "replies came in on RX queues without an AF_XDP socket: leave out --queues, or \
                 steer the replies to the bound queues (ethtool -N)",
            );
        }
        if k.lost() > k.redirect_failed {
            why.push("lower --rate, or give the receivers cores of their own (--cores)");
        }
        format!(
            "asdic: WARNING: the kernel dropped {} replies or errors of this run before asdic \
             could read them ({}); targets they belonged to show loss the network did not \
             cause: {}",
            k.lost(),
            k.nonzero(),
            why.join("; ")
        )
    })
}

/// SIGINT/SIGTERM: the first stops sending (replies in flight are still awaited, up to
/// `wait`); the second stops waiting. Either way results are written.
pub struct Signals {
    handle: signal_hook::iterator::Handle,
    hits: Arc<AtomicUsize>,
}

impl Signals {
    /// Installs the handlers for these pipelines.
    pub fn install(pipelines: &[Pipeline], wait: Duration) -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let senders: Vec<_> = pipelines.iter().map(|p| p.sender.clone()).collect();
        let receivers: Vec<_> = pipelines.iter().map(|p| p.receiver.clone()).collect();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for _ in signals.forever() {
                let k = h.fetch_add(1, Ordering::Relaxed);
                senders
                    .iter()
                    .for_each(|s| s.stop.store(true, Ordering::Relaxed));
                if k == 0 {
                    eprintln!(
                        "\nasdic: stopping: waiting up to {wait:?} for replies in flight (signal again to stop now)"
                    );
                } else {
                    eprintln!("\nasdic: stopping now");
                    receivers
                        .iter()
                        .for_each(|r| r.abort.store(true, Ordering::Release));
                }
            }
        });
        Ok(Signals { handle, hits })
    }

    /// Whether a signal came.
    pub fn interrupted(&self) -> bool {
        self.hits.load(Ordering::Relaxed) > 0
    }

    /// Stops listening.
    pub fn close(&self) {
        self.handle.close();
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// A line saying that sending fell short of `--rate`: below 90 % of `asked` over a send
/// phase long enough to measure (0.2 s), the engine, CPU or link is the limit, not the cap.
pub fn rate_shortfall(asked: f64, sent: u64, send_secs: f64) -> Option<String> {
    let achieved = sent as f64 / send_secs.max(1e-6);
    (send_secs >= 0.2 && achieved < 0.9 * asked).then(|| {
        format!(
            "asdic: sending reached {achieved:.0} probes/s, {:.1} % of --rate {asked:.0}: the \
             engine, CPU or link is the limit here (every probe was still sent and accounted for)",
            100.0 * achieved / asked
        )
    })
}

/// Why the local stack refused probes (send failures by OS error), for the closing lines:
/// a deleted interface or a vanished route shows as "Network is unreachable" here, not only
/// as a count.
#[derive(Debug, Default)]
pub struct Refusals {
    by_errno: Vec<(i32, u64)>,
}

impl Refusals {
    /// Counts `ev` if it is a send failure.
    pub fn add(&mut self, ev: &Event) {
        if let asdic_core::Outcome::SendFailed { errno } = ev.outcome {
            match self.by_errno.iter_mut().find(|(e, _)| *e == errno) {
                Some((_, n)) => *n += 1,
                None => self.by_errno.push((errno, 1)),
            }
        }
    }

    /// "the local stack refused N probes: Network is unreachable (os error 101) ×N; …", most
    /// first, with a hint for the errors that mean the path is gone; `None` without failures.
    pub fn line(&self) -> Option<String> {
        if self.by_errno.is_empty() {
            return None;
        }
        let mut v = self.by_errno.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: u64 = v.iter().map(|x| x.1).sum();
        let parts: Vec<String> = v
            .iter()
            .map(|(e, n)| format!("{} ×{n}", std::io::Error::from_raw_os_error(*e)))
            .collect();
        let gone = v.iter().any(|(e, _)| {
            [
                libc::ENETUNREACH,
                libc::EHOSTUNREACH,
                libc::ENODEV,
                libc::ENXIO,
                libc::ENETDOWN,
            ]
            .contains(e)
        });
        Some(format!(
            "asdic: the local stack refused {total} probes: {}{}",
            parts.join("; "),
            if gone {
                " (the interface or the route to the targets went away or down)"
            } else {
                ""
            }
        ))
    }

    /// Prints [`Refusals::line`] on stderr, if any.
    pub fn report(&self) {
        if let Some(l) = self.line() {
            eprintln!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_core::Outcome;

    #[test]
    fn an_output_directory_is_checked_by_writing_and_left_as_it_was() {
        let dir = std::env::temp_dir().join(format!("asdic-writable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // from an earlier process with this pid
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("scan.parquet");
        check_writable(&Writes::beside("-o", &file), false).unwrap();
        check_writable(&Writes::inside("--output", &dir), true).unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "a probe file stayed"
        );

        let gone = dir.join("missing").join("scan.parquet");
        let e = check_writable(&Writes::beside("-o", &gone), true).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, Fail::Usage(_)), "{m}");
        assert!(
            m.starts_with(&format!(
                "-o {}: cannot create files in {}: ",
                gone.display(),
                dir.join("missing").display()
            )),
            "{m}"
        );
        // Only a refused permission is explained by the dropped capability.
        assert!(!m.contains("CAP_DAC_OVERRIDE"), "{m}");
        std::fs::remove_dir(&dir).unwrap();

        // A bare file name is written in the working directory.
        assert_eq!(
            Writes::beside("-o", Path::new("x.parquet")).dir,
            Path::new(".")
        );
    }

    fn unavailable(engine: &'static str) -> EngineError {
        EngineError::Unavailable {
            engine,
            reason: "io_uring_setup: EPERM".into(),
        }
    }

    #[test]
    fn auto_takes_its_first_engine_and_says_why() {
        let (h, e, why) = pick((Engine::Uring, "faster"), Ok::<_, EngineError>).unwrap();
        assert_eq!((h, e), (Engine::Uring, Engine::Uring));
        assert_eq!(why, "auto: faster");
    }

    #[test]
    fn auto_falls_back_only_when_the_first_is_unavailable() {
        let mut tried = vec![];
        let (h, e, why) = pick((Engine::Uring, "faster"), |e| {
            tried.push(e);
            match e {
                Engine::Uring => Err(unavailable("uring")),
                Engine::Raw | Engine::Xdp => Ok(e),
            }
        })
        .unwrap();
        assert_eq!((h, e), (Engine::Raw, Engine::Raw));
        assert_eq!(tried, [Engine::Uring, Engine::Raw]);
        assert_eq!(
            why,
            "auto: uring is not available here: io_uring_setup: EPERM"
        );

        // A permission error would fail the other engine too: reported, no second try.
        let mut tried = vec![];
        let r = pick((Engine::Uring, "faster"), |e| {
            tried.push(e);
            Err::<Engine, _>(EngineError::Permission {
                engine: e.name(),
                what: "opening a raw ICMP socket",
                capability: "CAP_NET_RAW",
                capability_lower: "cap_net_raw",
            })
        });
        assert!(matches!(r, Err(EngineError::Permission { .. })));
        assert_eq!(tried, [Engine::Uring]);
    }

    #[test]
    fn auto_prefers_the_measured_engine() {
        // bench/RESULTS.md: uring no faster than raw on the test bed.
        assert_eq!(AUTO_FIRST.0, Engine::Raw);
        assert!(AUTO_FIRST.1.contains("bench/RESULTS.md"));
    }

    fn failed(errno: i32) -> Event {
        Event {
            n: 0,
            cookie: 0,
            target: IpAddr::from([198, 19, 0, 1]),
            t_send_ns: 0,
            attempt: 0,
            outcome: Outcome::SendFailed { errno },
        }
    }

    #[test]
    fn a_shortfall_is_said_only_when_it_is_real() {
        assert_eq!(rate_shortfall(100_000.0, 100_000, 1.0), None);
        assert_eq!(rate_shortfall(100_000.0, 95_000, 1.0), None);
        // Too short to tell.
        assert_eq!(rate_shortfall(1e6, 10, 0.01), None);
        let l = rate_shortfall(2e6, 65_536, 0.5).unwrap();
        assert!(
            l.contains("131072 probes/s, 6.6 % of --rate 2000000"),
            "{l}"
        );
    }

    #[test]
    fn refusals_name_the_os_errors_most_first() {
        let mut r = Refusals::default();
        assert_eq!(r.line(), None);
        for _ in 0..3 {
            r.add(&failed(libc::ENETUNREACH));
        }
        r.add(&failed(libc::ENOBUFS));
        let l = r.line().unwrap();
        assert!(
            l.starts_with("asdic: the local stack refused 4 probes: Network is unreachable"),
            "{l}"
        );
        assert!(l.contains("×3; No buffer space available"), "{l}");
        assert!(l.ends_with("went away or down)"), "{l}");
    }
}
