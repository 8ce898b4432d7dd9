//! The running prober, one place for everyone who runs it (the `asdic` subcommands and the
//! in-memory pipeline tests): an address family's *pipeline* takes an engine someone opened
//! (its TX half and one RX half per queue), builds the probe templates in the layer the engine
//! sends, and runs the sender (`tx::run`) and one receiver per queue (`rx::run`, the first one
//! reaping) on their threads, pinned where asked, with the stop and abort that end a run, the
//! stream of event batches, and the kernel's drop counters. Only this crate calls `tx::run`
//! and `rx::run` (`tests/structure.rs`).

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

/// Which engine runs, and why: the choice, auto's fallback, opening an engine.
pub mod engines;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use asdic_core::event::{Drops, Event};
use asdic_core::matcher::Matcher;
use asdic_core::retry::Retry;
use asdic_core::source::{Merged, Source};
use asdic_core::stateless::ScanState;
use asdic_core::table::InflightTable;
use asdic_engine::{KernelDrops, Rx, Tx, TxCaps};
use asdic_receiver::rx::{self, Role, RxConfig, RxShared};
use asdic_sender::tx::{self, Links, SenderConfig, SenderShared};
use asdic_wire::Family;
use asdic_wire::template::{Layer, Template};
use crossbeam_channel::{Receiver, Sender, bounded};

/// An open engine: its TX half and one RX half per queue.
pub type Halves = (Box<dyn Tx>, Vec<Box<dyn Rx>>);

/// The engine a pipeline runs, as its opener describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineUsed {
    /// Its name (`raw`, `uring`, `xdp`, `mem`), as the Parquet metadata records it.
    pub name: &'static str,
    /// What it is, in a few words.
    pub what: &'static str,
    /// Why this one: "as asked", or auto's reason.
    pub why: String,
    /// How it is set up (interface, queues, UMEM, addresses), said with `-v`.
    pub detail: String,
}

/// Why a pipeline could not start.
#[derive(Debug)]
pub enum StartError {
    /// The run asks for something the engine cannot do (a probe size it cannot send): names
    /// the flag.
    Usage(String),
    /// Anything else (a thread that could not be spawned, an engine taken twice).
    System(anyhow::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Usage(m) => f.write_str(m),
            StartError::System(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::System(e.into())
    }
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::System(e)
    }
}

/// Faults a test can ask the receivers for (the bed tests of what a crash leaves behind and
/// what a stalled receiver costs). None by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Each receiver panics this long after it starts.
    pub rx_panic_after: Option<Duration>,
    /// Each receiver sleeps this long before it reads anything.
    pub rx_stall: Option<Duration>,
    /// The realtime clock pretends to step by this many ns this long after each receiver
    /// starts (see `RxConfig::clock_step`).
    pub clock_step: Option<(Duration, i64)>,
}

/// One address family's engine, table and the counters of its threads; or both families',
/// through one engine that sends and receives both (AF_XDP on one interface).
pub struct Pipeline {
    /// The family (the first of two).
    pub family: Family,
    /// The other family, for a pipeline of both.
    pub other: Option<Family>,
    /// Its in-flight table.
    pub table: Arc<InflightTable>,
    /// The engine halves (one RX half per queue), until the threads take them.
    engine: Option<Halves>,
    /// The engine that runs, and why.
    pub engine_used: EngineUsed,
    /// Where its RTTs' stamps are taken (`asdic.stamps`).
    pub stamps: String,
    /// Whether a tracked run's probes go one per engine call ([`Pipeline::set_tracked`]).
    pub per_call: bool,
    /// The sender's counters and stop flag.
    pub sender: Arc<SenderShared>,
    /// The receiver's counters and abort flag.
    pub receiver: Arc<RxShared>,
    /// Faults to inject (tests only).
    pub faults: Faults,
}

/// Ends a pipeline's run from any thread.
#[derive(Debug, Clone)]
pub struct Stopper {
    sender: Arc<SenderShared>,
    receiver: Arc<RxShared>,
}

impl Stopper {
    /// Stops sending; probes in flight are still awaited (the first SIGINT).
    pub fn stop(&self) {
        self.sender.stop.store(true, Ordering::Relaxed);
    }

    /// Stops now: sending, cooling down and waiting; every probe in flight is reported as
    /// timed out (the second SIGINT, or a run past its limit).
    pub fn abort(&self) {
        self.sender.stop.store(true, Ordering::Relaxed);
        self.sender.abort.store(true, Ordering::Relaxed);
        // Release: the receiver's acquire load sees the sender's flags set before it.
        self.receiver.abort.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("family", &self.family)
            .field("engine_used", &self.engine_used)
            .field("started", &self.engine.is_none())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("sender", &self.sender)
            .field("receiver", &self.receiver)
            .field("scan", &self.scan.len())
            .field("flow_source", &self.flow_source)
            .finish_non_exhaustive()
    }
}

/// Checks `--cores TX,RX[,RX…]`: at most one core per thread a run can have (the sender and
/// up to one receiver per XDP queue), each core listed once.
pub fn check_cores(cores: &[usize]) -> Result<(), String> {
    let mut seen = cores.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != cores.len() {
        return Err("--cores: each core at most once (TX first, then the RX cores)".into());
    }
    if cores.len() > 1 + asdic_engine::MAX_RX_QUEUES as usize {
        return Err(format!(
            "--cores: at most {} cores (TX, then one per RX queue)",
            1 + asdic_engine::MAX_RX_QUEUES
        ));
    }
    Ok(())
}

/// The core of RX worker `i` (one per queue): the RX cores of `--cores` in turn, or none.
fn rx_core(cores: &[usize], i: usize) -> Option<usize> {
    let rx = cores.get(1..).filter(|r| !r.is_empty())?;
    Some(rx[i % rx.len()])
}

/// Where a pipeline over `halves` takes its RTTs' stamps (`asdic.stamps`), sending one
/// probe per engine call or not. A probe's send stamp is the kernel's where the engine hands
/// it back (tracked runs on sockets); else the sender's, taken as it writes the probe
/// (`user-space-probe`), or right before the engine call that sends it alone
/// (`user-space-per-call`, see [`Pipeline::per_call`]). A frame's receive stamp is the
/// kernel's, the XDP program's, or the engine's as it read the batch.
fn stamp_line(halves: &Halves, per_call: bool) -> String {
    let caps = halves.0.caps();
    let tx = if caps.kernel_stamps {
        "kernel-software"
    } else if per_call {
        "user-space-per-call"
    } else {
        "user-space-probe"
    };
    let rx = halves.1.first().map_or("none", |r| r.caps().stamp.name());
    // The stamp clock: CLOCK_MONOTONIC, sockets' kernel stamps brought onto it.
    format!("tx={tx} rx={rx} clock=monotonic")
}

/// Whether a run asks for its probes one per engine call where the engine needs it
/// ([`Pipeline::set_tracked`]): tracked, and no `--batch` given. The XDP engine is opened
/// for it (a sending socket of its own per queue) before its caps are known.
pub fn per_call_asked(tracked: bool, batch_given: bool) -> bool {
    tracked && !batch_given
}

impl Pipeline {
    /// Sends a tracked run's probes one per engine call where the engine's kernel transmits
    /// a call's packets one after another before returning and hands back no stamp of its
    /// own (AF_XDP in copy mode) — a probe stamped before a call of 64 would be timed early
    /// by the work of the 63 before it — unless `batch_given` (the operator's `--batch`
    /// wins). Says where the stamps are taken accordingly. Once such a sender has been a
    /// whole batch behind the rate for `asdic_sender::tx::GROW_AFTER`, it tries calls that
    /// take what is due and keeps them, until it has caught up, where they send clearly
    /// faster (`asdic_sender::tx::CallSize`); those probes are counted
    /// ([`SenderShared::grouped`]).
    pub fn set_tracked(&mut self, tracked: bool, batch_given: bool) {
        if let Some(h) = &self.engine {
            let caps = h.0.caps();
            self.per_call =
                per_call_asked(tracked, batch_given) && caps.serial_send && !caps.kernel_stamps;
            self.stamps = stamp_line(h, self.per_call);
        }
    }

    /// A pipeline over an open engine's halves, with a table of `slots` slots.
    pub fn new(family: Family, slots: usize, halves: Halves, engine_used: EngineUsed) -> Self {
        let stamps = stamp_line(&halves, false);
        Pipeline {
            per_call: false,
            stamps,
            family,
            other: None,
            table: Arc::new(InflightTable::new(slots)),
            engine: Some(halves),
            engine_used,
            sender: Arc::new(SenderShared::default()),
            receiver: Arc::new(RxShared::default()),
            faults: Faults::default(),
        }
    }

    /// Its families: one, or both for a pipeline of both.
    pub fn families(&self) -> Vec<Family> {
        std::iter::once(self.family).chain(self.other).collect()
    }

    /// What it is called in what it prints: `V4`, `V6` or `V4+V6`.
    pub fn name(&self) -> String {
        match self.other {
            Some(o) => format!("{:?}+{o:?}", self.family),
            None => format!("{:?}", self.family),
        }
    }

    /// What stops this pipeline, for another thread (a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            sender: self.sender.clone(),
            receiver: self.receiver.clone(),
        }
    }

    /// As [`Stopper::stop`].
    pub fn stop(&self) {
        self.stopper().stop();
    }

    /// As [`Stopper::abort`].
    pub fn abort(&self) {
        self.stopper().abort();
    }

    /// One probe template per payload size and family, in the layer the engine sends to that
    /// family; a size the engine cannot send whole is refused.
    fn templates(&self, tx: &dyn Tx, sizes: &[usize]) -> Result<Vec<Template>, StartError> {
        let caps = tx.caps();
        let mut templates = Vec::with_capacity(sizes.len() * 2);
        for family in self.families() {
            let layer = tx.layer_for(family).ok_or_else(|| {
                StartError::System(anyhow::anyhow!(
                    "the {} engine does not send {family:?}",
                    caps.engine
                ))
            })?;
            self.family_templates(family, layer.into(), caps, sizes, &mut templates)?;
        }
        Ok(templates)
    }

    fn family_templates(
        &self,
        family: Family,
        layer: Layer,
        caps: TxCaps,
        sizes: &[usize],
        templates: &mut Vec<Template>,
    ) -> Result<(), StartError> {
        for &size in sizes {
            let template = Template::new(family, layer, size).map_err(|e| {
                StartError::Usage(format!("--size {size}: cannot build a probe: {e}"))
            })?;
            if template.len() > caps.max_packet {
                return Err(StartError::Usage(format!(
                    "--size {size}: {}-byte probes exceed what the {} engine sends ({} bytes: \
                     it does not fragment); use a smaller --size or --engine raw",
                    template.len(),
                    caps.engine,
                    caps.max_packet
                )));
            }
            templates.push(template);
        }
        Ok(())
    }

    /// Starts the receiver and sender threads on `work`, sending probes of `sizes[class]`
    /// payload bytes (one template per size), pinned to `cores`; events go to `events`,
    /// emptied batches come back on `recycle`.
    pub fn spawn(
        &mut self,
        work: Work,
        sizes: &[usize],
        cores: &[usize],
        events: &Sender<Vec<Event>>,
        recycle: &Receiver<Vec<Event>>,
    ) -> Result<Running, StartError> {
        let Work {
            sender: mut cfg,
            receiver: rx_cfg,
            source,
            scan,
            flow_source,
        } = work;
        let (mut txe, rxes) = self.engine.take().context("engine already started")?;
        if scan.is_empty() {
            txe.stamp_sends(self.table.clone());
        }
        // One probe per call, each stamped right before the kernel takes it, while the
        // sender keeps up with the rate (`SenderConfig::per_call`).
        cfg.per_call = self.per_call && scan.is_empty();
        let mut templates = self.templates(txe.as_ref(), sizes)?;
        if let Some(src) = flow_source {
            templates = templates
                .into_iter()
                .map(|t| t.with_flow_source(src))
                .collect();
        }
        // The sender writes a keyed IP ID where it builds the IPv4 header (XDP frames).
        let keyed_ip_ident = templates.iter().any(Template::writes_ip_ident);
        let kernel_stamps = txe.caps().kernel_stamps;
        let with_retries = rx_cfg.retries > 0;
        // Retries the reaper hands the sender (tracked runs; a scan's retries are passes):
        // 2 MiB of slots when used, which a run without them does not pay for.
        let retry_slots = if with_retries && scan.is_empty() {
            65_536
        } else {
            1
        };
        let (retry_tx, retry_rx) = bounded::<Retry>(retry_slots);

        // One receiver per RX half (queue): the first one reaps and ends the pipeline's
        // receiving, the others match until it has ended.
        let mut receivers = Vec::with_capacity(rxes.len());
        let multi = rxes.len() > 1;
        // Every loop's read mark before any loop starts: the reaper waits for all of them.
        let marks: Vec<_> = rxes.iter().map(|_| self.receiver.reader()).collect();
        for ((i, rxe), mark) in rxes.into_iter().enumerate().zip(marks) {
            let role = if i == 0 { Role::Reaper } else { Role::Helper };
            let matcher = match scan.as_slice() {
                [] => Matcher::new(self.table.clone(), cfg.key, cfg.session, cfg.numbering)
                    .with_keyed_ip_ident(keyed_ip_ident)
                    .with_timeout(rx_cfg.timeout)
                    .with_kernel_stamps(kernel_stamps),
                states => Matcher::stateless_of(states),
            };
            let name = if multi {
                format!("asdic-rx-{}-{i}", self.name())
            } else {
                format!("asdic-rx-{}", self.name())
            };
            let receiver = Receiving {
                rx: rxe,
                matcher,
                cfg: RxConfig {
                    clock_step: self.faults.clock_step.or(rx_cfg.clock_step),
                    ..rx_cfg
                },
                role,
                core: rx_core(cores, i),
                retries: (role == Role::Reaper && with_retries).then(|| retry_tx.clone()),
                mark,
                events: events.clone(),
                recycle: recycle.clone(),
            };
            receivers.push(self.spawn_receiver(name, receiver)?);
        }
        drop(retry_tx);
        let sending = Sending {
            tx: txe,
            templates,
            source,
            cfg,
            core: cores.first().copied(),
            retries: with_retries.then_some(retry_rx),
            events: events.clone(),
        };
        let sender = self.spawn_sender(sending)?;
        Ok(Running { sender, receivers })
    }

    /// Starts one receiver thread (`rx::run` over one RX half).
    fn spawn_receiver(
        &self,
        name: String,
        mut r: Receiving,
    ) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<Drops>>> {
        let shared = self.receiver.clone();
        let sender = self.sender.clone();
        let faults = self.faults;
        std::thread::Builder::new()
            .name(name)
            .spawn(move || -> anyhow::Result<Drops> {
                // If a receiver ends early (error or panic), replies go unread: stop sending.
                let _stop = StopOnDrop(sender);
                tx::pin(r.core).map_err(|e| anyhow::anyhow!("--cores: {e}"))?;
                // Faults the tests ask for: what a crash leaves behind (the XDP program must
                // be gone), what a stalled receiver costs (the kernel's drops must be
                // reported).
                if let Some(after) = faults.rx_panic_after {
                    std::thread::sleep(after);
                    panic!("injected panic (receiver)");
                }
                if let Some(stall) = faults.rx_stall {
                    std::thread::sleep(stall);
                }
                rx::run(
                    r.rx.as_mut(),
                    &mut r.matcher,
                    &r.cfg,
                    &shared,
                    &r.events,
                    &r.recycle,
                    r.retries.as_ref(),
                    r.role,
                    Some(&r.mark),
                )?;
                Ok(r.matcher.drops())
            })
    }

    /// Starts the sender thread (`tx::run`); when it ends, the receivers are told.
    fn spawn_sender(
        &self,
        mut s: Sending,
    ) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
        let table = self.table.clone();
        let (shared, rx_shared) = (self.sender.clone(), self.receiver.clone());
        std::thread::Builder::new()
            .name(format!("asdic-tx-{}", self.name()))
            .spawn(move || -> anyhow::Result<()> {
                let pinned = tx::pin(s.core).map_err(|e| anyhow::anyhow!("--cores: {e}"));
                let r = pinned.and_then(|()| {
                    let links = Links {
                        retries: s.retries.as_ref(),
                        behind: Some(&rx_shared.behind),
                        events: Some(&s.events),
                    };
                    tx::run(
                        s.tx.as_mut(),
                        &s.templates,
                        &table,
                        s.source.as_mut(),
                        &s.cfg,
                        &shared,
                        links,
                    )
                    .map_err(Into::into)
                });
                // Release: the receiver's acquire load sees every claim made before.
                rx_shared.sender_done.store(true, Ordering::Release);
                r
            })
    }
}

/// What a receiver thread takes with it.
struct Receiving {
    rx: Box<dyn Rx>,
    matcher: Matcher,
    cfg: RxConfig,
    role: Role,
    core: Option<usize>,
    /// The reaper's way to hand timed-out probes back for another try.
    retries: Option<Sender<Retry>>,
    /// Up to when this loop has read its queue.
    mark: Arc<AtomicU64>,
    events: Sender<Vec<Event>>,
    recycle: Receiver<Vec<Event>>,
}

/// What the sender thread takes with it.
struct Sending {
    tx: Box<dyn Tx>,
    templates: Vec<Template>,
    source: Box<dyn Source + Send>,
    cfg: SenderConfig,
    core: Option<usize>,
    retries: Option<Receiver<Retry>>,
    events: Sender<Vec<Event>>,
}

/// Stops the sender when dropped: the receiver's thread holds one while it runs, so that the
/// sender stops when it ends in any way (on its normal end the sender is already done).
struct StopOnDrop(Arc<SenderShared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // Nobody is left to receive answers: no cooling down either.
        self.0.stop.store(true, Ordering::Relaxed);
        self.0.abort.store(true, Ordering::Relaxed);
    }
}

/// One pipeline's work: its sender's and receiver's parameters and its targets.
pub struct Work {
    /// The sender's parameters.
    pub sender: SenderConfig,
    /// The receivers' parameters.
    pub receiver: RxConfig,
    /// Where the sender takes its targets.
    pub source: Box<dyn Source + Send>,
    /// A stateless scan's shared state, one per family (its receivers match without a
    /// table); empty for tracked runs.
    pub scan: Vec<Arc<ScanState>>,
    /// For flows (`sender.flow`) through a kernel that computes the ICMPv6 checksum: the
    /// source it uses, so that a flow's checksum is the same on every engine.
    pub flow_source: Option<core::net::Ipv6Addr>,
}

impl Work {
    /// One pipeline's work for both families, from each family's work and its share of the
    /// rate: their sources asked in turn by share ([`Merged`]), the rates added up, the scans
    /// side by side; the rest as the first family's (they differ only in their targets).
    pub fn merge(parts: Vec<(Family, Work)>) -> Work {
        let rate: f64 = parts.iter().map(|(_, w)| w.sender.rate).sum();
        let mut sources = Vec::with_capacity(parts.len());
        let mut scan = vec![];
        let mut first: Option<(SenderConfig, RxConfig)> = None;
        let mut flow_source = None;
        for (family, w) in parts {
            sources.push((family, w.source, w.sender.rate));
            scan.extend(w.scan);
            flow_source = flow_source.or(w.flow_source);
            first.get_or_insert((w.sender, w.receiver));
        }
        let (sender, receiver) = first.expect("at least one part");
        Work {
            sender: SenderConfig { rate, ..sender },
            receiver,
            source: Box::new(Merged::new(sources)),
            scan,
            flow_source,
        }
    }
}

/// The running pipelines and the stream of their events.
#[derive(Debug)]
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
) -> Result<Started, StartError> {
    let (ev_tx, events) = bounded::<Vec<Event>>(256);
    let (recycle, recycle_rx) = bounded::<Vec<Event>>(256);
    let mut handles = vec![];
    for (p, w) in pipelines.iter_mut().zip(work) {
        handles.push(p.spawn(w, sizes, cores, &ev_tx, &recycle_rx)?);
    }
    Ok(Started {
        handles,
        events,
        recycle,
    })
}

/// A pipeline's running threads.
#[derive(Debug)]
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

/// What the kernel dropped before the pipelines' receivers could read it, over all of them.
pub fn kernel_drops(pipelines: &[Pipeline]) -> KernelDrops {
    RxShared::kernel_drops_of(pipelines.iter().map(|p| p.receiver.as_ref()))
}
