//! Which engine runs, and why: the engine choice and auto's fallback, opening a pipeline's
//! engine (raw and io_uring sockets, AF_XDP with the route's interface, queues and next hop),
//! and the line that says what runs. The io_uring and AF_XDP engines are there with the
//! `uring` and `xdp` features (the `asdic` binary has both); without them, asking for one
//! says it is not built in, and auto falls back to raw sockets.

use core::net::IpAddr;

use asdic_engine::raw::RawOptions;
use asdic_engine::{EngineError, Rx};
use asdic_wire::Family;
use asdic_wire::payload::{Key, Numbering};

use crate::{EngineUsed, Halves, Pipeline};

/// Which engine to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// AF_XDP if it can attach here, else the faster socket engine (measured), else the other.
    Auto,
    /// AF_XDP.
    Xdp,
    /// Raw ICMP sockets driven through io_uring.
    Uring,
    /// Raw ICMP sockets with sendmmsg/recvmmsg.
    Raw,
}

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver.
    Native,
    /// In the kernel's generic path after the driver.
    Generic,
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
    pub choice: Choice,
    /// XDP attach mode, if forced.
    pub xdp_mode: Option<XdpMode>,
    /// The next hop's MAC for the XDP engine, if given.
    pub gateway_mac: Option<[u8; 6]>,
    /// XDP engine: UMEM frames for receiving per queue, when not the engine's default: a
    /// run that receives for a long time on a busy machine buffers more against stalls.
    pub xdp_rx_frames: Option<u32>,
    /// XDP engine: UMEM frames for sending over all queues, when not the engine's default.
    pub xdp_tx_frames: Option<u32>,
    /// XDP engine: the RX queues to bind (default: all).
    pub queues: Option<Vec<u32>>,
    /// Socket engines: the receive buffer, when not the engine's default.
    pub rcvbuf: Option<usize>,
    /// Whether the operator chose `batch` (`--batch`): then it holds for every run, even
    /// where a tracked run would otherwise send one probe per call.
    pub batch_given: bool,
}

/// What identifies a run's probes: shared by its pipelines.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    /// How probe numbers map to (identifier, sequence).
    pub numbering: Numbering,
    /// The run's session id.
    pub session: u32,
    /// The run's MAC key.
    pub key: Key,
}

impl Ids {
    /// Most in-flight slots the numbering tells apart: 2^16 with one fixed identifier (the
    /// sequence alone), 2^21 with a spread one.
    pub fn max_slots(&self) -> u64 {
        asdic_core::table::max_slots(self.numbering)
    }
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
    /// Whether the run keeps per-probe state (ping, trace, sweep, sessions): socket engines
    /// then take the kernel's send stamp of every probe. A stateless scan has no place to
    /// keep them.
    pub tracked: bool,
}

impl RunHints {
    /// Hints for a run that keeps per-probe state (ping, trace, sweep).
    pub fn tracked(toward: IpAddr, ids: Ids, probes: u64) -> Self {
        RunHints {
            toward,
            ids,
            probes,
            tracked: true,
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
/// keeps raw, which needs no io_uring. (The line says so without pointing at files an
/// installed system does not have.)
const AUTO_FIRST: (Engine, &str) = (
    Engine::Raw,
    "io_uring measured no faster than raw sockets, which need no io_uring",
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

/// Opens the engines of one run. One AF_XDP socket per interface queue serves both families
/// ([`Opener::open_both`]); where the families leave by different interfaces, each opens its
/// own engine ([`Opener::open`]), at most one XDP program per interface: a family whose
/// interface already has the run's program uses sockets.
#[derive(Debug, Default)]
pub struct Opener {
    /// The interface (index, if known) of the run's XDP engine, and whose it is.
    xdp_taken: Option<(Option<u32>, String)>,
}

/// The interface probes toward `toward` leave by (the device asked for, else the route's).
fn egress(o: &EngineOptions, toward: IpAddr) -> Option<u32> {
    match &o.device {
        Some(d) => asdic_engine::netlink::link_by_name(d).ok().map(|l| l.index),
        None => asdic_engine::netlink::route_to(toward)
            .ok()
            .map(|r| r.ifindex),
    }
}

impl Opener {
    /// For a run of both families, AF_XDP for both through one set of sockets when it is
    /// asked for (or auto's first choice) and both families leave by one interface: one
    /// pipeline of both families, with a table of `slots` slots. `None` when that cannot be
    /// (each family then opens its own engine, and says why).
    pub fn open_both(
        &mut self,
        slots: usize,
        o: &EngineOptions,
        first: &RunHints,
        second: &RunHints,
    ) -> Option<Pipeline> {
        if !matches!(o.choice, Choice::Xdp | Choice::Auto)
            || Family::of(first.toward) == Family::of(second.toward)
            || self.xdp_taken.is_some()
        {
            return None;
        }
        let hints = RunHints {
            probes: first.probes.saturating_add(second.probes),
            ..*first
        };
        let auto = o.choice == Choice::Auto;
        let (halves, detail) = open_xdp(o, &hints, Some(second.toward), auto).ok()?;
        let why = if auto {
            "auto: XDP attached, both families"
        } else {
            "as asked, both families"
        };
        let other = Some(Family::of(second.toward));
        let kind = (Engine::Xdp, why.to_string());
        Some(self.pipeline(o, first, slots, (halves, detail), kind, other))
    }

    /// The pipeline (of `hints.toward`'s family, and `other`) over an opened engine: its line
    /// says `kind`, `why` and the engine's `detail`; an XDP engine holds its interface for
    /// the rest of the run.
    fn pipeline(
        &mut self,
        o: &EngineOptions,
        hints: &RunHints,
        slots: usize,
        (halves, detail): (Halves, Detail),
        (kind, why): (Engine, String),
        other: Option<Family>,
    ) -> Pipeline {
        // What the engine did to the system, or warns of, is said by default; the rest with -v.
        let why = if detail.said.is_empty() {
            why
        } else {
            format!("{why}; {}", detail.said)
        };
        let used = EngineUsed {
            name: kind.name(),
            what: kind.what(),
            why,
            detail: detail.full.clone(),
        };
        let mut p = Pipeline::new(Family::of(hints.toward), slots, halves, used);
        p.set_tracked(hints.tracked, o.batch_given);
        p.other = other;
        if kind == Engine::Xdp {
            self.xdp_taken = Some((
                egress(o, hints.toward),
                format!("{} pipeline has it ({})", p.name(), detail.full),
            ));
        }
        p
    }

    /// Opens the engine for the family of `hints.toward`, with a table of `slots` slots.
    pub fn open(
        &mut self,
        slots: usize,
        o: &EngineOptions,
        hints: &RunHints,
    ) -> anyhow::Result<Pipeline> {
        let family = Family::of(hints.toward);
        let system = anyhow::Error::from;
        // One XDP program per interface: the run's, if this family leaves by its interface.
        let taken = self
            .xdp_taken
            .clone()
            .filter(|(ifindex, _)| ifindex.is_none() || *ifindex == egress(o, hints.toward));
        let auto = o.choice == Choice::Auto;
        let open = |e: Engine| match (&taken, e) {
            (Some((_, by)), Engine::Xdp) => Err(EngineError::Unavailable {
                engine: "xdp",
                reason: format!("the {by} (one XDP program per interface)"),
            }),
            _ => open_engine(e, family, o, hints, auto),
        };
        let (opened, kind, why) = match o.choice {
            Choice::Raw => (
                open(Engine::Raw).map_err(system)?,
                Engine::Raw,
                "as asked".into(),
            ),
            Choice::Uring => match open(Engine::Uring) {
                Ok(h) => (h, Engine::Uring, "as asked".to_string()),
                Err(e @ EngineError::Unavailable { .. }) => {
                    anyhow::bail!("--engine uring: {e} (--engine raw or auto work without it)");
                }
                Err(e) => return Err(system(e)),
            },
            Choice::Xdp => match open(Engine::Xdp) {
                Ok(h) => (h, Engine::Xdp, "as asked".to_string()),
                Err(e) => {
                    anyhow::bail!("--engine xdp: {e} (--engine auto falls back to raw sockets)");
                }
            },
            Choice::Auto => match open(Engine::Xdp) {
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
        Ok(self.pipeline(o, hints, slots, opened, (kind, why), None))
    }
}

fn open_engine(
    e: Engine,
    family: Family,
    o: &EngineOptions,
    hints: &RunHints,
    auto: bool,
) -> Result<(Halves, Detail), EngineError> {
    let socket = RawOptions {
        v6: family == Family::V6,
        ttl: o.ttl,
        device: o.device.clone(),
        batch: o.batch,
        max_reply: RawOptions::reply_room(o.size),
        rcvbuf: o.rcvbuf.unwrap_or(RawOptions::default().rcvbuf),
        tx_stamps: hints.tracked,
        ..RawOptions::default()
    };
    match e {
        Engine::Raw => {
            let (tx, rx) = asdic_engine::raw::open(&socket)?;
            Ok((
                (Box::new(tx), vec![Box::new(rx) as Box<dyn Rx>]),
                Detail::default(),
            ))
        }
        Engine::Uring => open_uring(socket),
        Engine::Xdp => open_xdp(o, hints, None, auto),
    }
}

#[cfg(feature = "uring")]
fn open_uring(socket: RawOptions) -> Result<(Halves, Detail), EngineError> {
    use asdic_engine::uring::{self, UringOptions};
    let (tx, rx) = uring::open(&UringOptions {
        socket,
        ..UringOptions::default()
    })?;
    Ok((
        (Box::new(tx), vec![Box::new(rx) as Box<dyn Rx>]),
        Detail::default(),
    ))
}

#[cfg(not(feature = "uring"))]
fn open_uring(_: RawOptions) -> Result<(Halves, Detail), EngineError> {
    Err(not_built("uring"))
}

#[cfg(not(feature = "xdp"))]
fn open_xdp(
    _: &EngineOptions,
    _: &RunHints,
    _: Option<IpAddr>,
    _: bool,
) -> Result<(Halves, Detail), EngineError> {
    Err(not_built("xdp"))
}

/// An engine this build left out.
#[cfg(not(all(feature = "uring", feature = "xdp")))]
fn not_built(engine: &'static str) -> EngineError {
    EngineError::Unavailable {
        engine,
        reason: format!("not built into this program (asdic-runtime's `{engine}` feature)"),
    }
}

/// The AF_XDP engine toward `hints.toward`, and toward `also` (the other family) through the
/// same sockets if given.
#[cfg(feature = "xdp")]
fn open_xdp(
    o: &EngineOptions,
    hints: &RunHints,
    also: Option<IpAddr>,
    auto: bool,
) -> Result<(Halves, Detail), EngineError> {
    use asdic_engine::xdp::{self, XdpOptions};
    let (ident_base, ident_span) = hints.ids.numbering.ident_range(hints.probes);
    let opts = XdpOptions {
        device: o.device.clone(),
        mode: o.xdp_mode.map(|m| match m {
            XdpMode::Native => asdic_xdp::Mode::Native,
            XdpMode::Generic => asdic_xdp::Mode::Generic,
        }),
        session: hints.ids.session,
        mac_key: Some(hints.ids.key.halves()),
        ident_base,
        ident_span,
        batch: o.batch,
        gateway_mac: o.gateway_mac,
        frame_len: std::iter::once(hints.toward)
            .chain(also)
            .map(|t| asdic_wire::template::ethernet_frame_len(Family::of(t), o.size))
            .max()
            .unwrap_or(0),
        also,
        queues: o.queues.clone(),
        // Auto must not pick an engine that leaves replies unread.
        require_all_queues: auto,
        separate_tx: crate::per_call_asked(hints.tracked, o.batch_given),
        ..XdpOptions::new(hints.toward)
    };
    let opts = XdpOptions {
        rx_frames: o.xdp_rx_frames.unwrap_or(opts.rx_frames),
        tx_frames: o.xdp_tx_frames.unwrap_or(opts.tx_frames),
        ..opts
    };
    let (tx, rxs, info) = xdp::open(&opts)?;
    let detail = xdp_detail(&info);
    let rxs = rxs
        .into_iter()
        .map(|r| Box::new(r) as Box<dyn Rx>)
        .collect();
    Ok(((Box::new(tx), rxs), detail))
}

/// How an opened engine is set up: in full (`-v`), and what must be said every time (a
/// leftover program removed, RX queues left without a socket).
#[derive(Debug, Default, Clone)]
struct Detail {
    full: String,
    said: String,
}

#[cfg(feature = "xdp")]
/// Where the XDP engine runs: interface, queues, mode, addresses, UMEM (in full); and, said
/// every time (once: the verbose line shows it beside the detail, not in it), the RX queues
/// left without a socket and a leftover program removed.
fn xdp_detail(info: &asdic_engine::xdp::XdpInfo) -> Detail {
    let p = &info.path;
    let n = info.queues.len();
    let queues = if info.unserved.is_empty() {
        format!(
            "{} queue{} {} (every RX queue)",
            p.link.name,
            if n == 1 { "" } else { "s" },
            asdic_engine::xdp::queue_list(&info.queues)
        )
    } else {
        format!(
            "{} queue{} {} of {}",
            p.link.name,
            if n == 1 { "" } else { "s" },
            asdic_engine::xdp::queue_list(&info.queues),
            info.rx_queue_count,
        )
    };
    let mut detail = format!(
        "on {queues}, TX through queue{} {}{}, {} mode, {} RX frames per queue ({} MiB of \
         UMEM), from {} {} to next hop {} {}",
        if info.tx_queues.len() == 1 { "" } else { "s" },
        asdic_engine::xdp::queue_list(&info.tx_queues),
        match (info.tx_sockets, info.tx_threads) {
            (true, 0) => " (sending sockets of their own)".to_string(),
            (true, k) => format!(
                " (sending sockets of their own; {k} of them from a thread of {} own)",
                if k == 1 { "its" } else { "their" }
            ),
            _ => String::new(),
        },
        info.mode,
        info.rx_frames,
        info.umem_bytes >> 20,
        p.src_ip,
        mac(p.src_mac),
        p.next_hop,
        mac(p.dst_mac)
    );
    let mut said = vec![];
    if !info.unserved.is_empty() {
        said.push(format!(
            "WARNING: RX queue{} {} of {} without a socket, replies the NIC steers there are \
             lost (counted as xdp_redirect_failed)",
            if info.unserved.len() == 1 { "" } else { "s" },
            asdic_engine::xdp::queue_list(&info.unserved),
            p.link.name
        ));
    }
    if let Some(r) = &info.replaced {
        said.push(r.clone());
    }
    if let Some(o) = &info.other {
        detail.push_str(&format!(
            "; and from {} to next hop {} {}",
            o.src_ip,
            o.next_hop,
            mac(o.dst_mac)
        ));
    }
    Detail {
        full: detail,
        said: said.join("; "),
    }
}

#[cfg(feature = "xdp")]
fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// "asdic: engine NAME: what (why)", once per distinct engine of the run: short by default
/// (the engine in a word or two, and why it runs), with `verbose` what it is in full and how
/// it is set up (interface, queues, UMEM, addresses).
pub fn engine_line(pipelines: &[Pipeline], verbose: bool) -> String {
    let mut parts: Vec<String> = vec![];
    for p in pipelines {
        let e = &p.engine_used;
        let part = if verbose && !e.detail.is_empty() {
            format!("engine {}: {} ({}; {})", e.name, e.what, e.why, e.detail)
        } else if verbose {
            format!("engine {}: {} ({})", e.name, e.what, e.why)
        } else {
            let short = match e.name {
                "xdp" => "AF_XDP",
                "uring" => "raw ICMP sockets through io_uring",
                "raw" => "raw ICMP sockets",
                _ => e.what,
            };
            format!("engine {}: {short} ({})", e.name, e.why)
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    format!("asdic: {}", parts.join("; "))
}

/// The engines that ran, for the `asdic.engine` metadata: one name, or per family when they
/// differ (`V4:uring,V6:raw`).
pub fn engine_names(pipelines: &[Pipeline]) -> String {
    per_pipeline(pipelines, ",", |p| p.engine_used.name.to_string())
}

/// Where the engines that ran took their stamps, for the `asdic.stamps` metadata: one, or per
/// family when they differ (`V4:…;V6:…`).
pub fn stamp_points(pipelines: &[Pipeline]) -> String {
    per_pipeline(pipelines, ";", |p| p.stamps.clone())
}

/// `what` of the pipelines: once when they agree, else per pipeline, named, joined by `sep`.
fn per_pipeline(pipelines: &[Pipeline], sep: &str, what: impl Fn(&Pipeline) -> String) -> String {
    let all: Vec<String> = pipelines.iter().map(&what).collect();
    match all.first() {
        None => "none".to_string(),
        Some(first) if all.iter().all(|w| w == first) => first.clone(),
        Some(_) => pipelines
            .iter()
            .zip(&all)
            .map(|(p, w)| format!("{}:{w}", p.name()))
            .collect::<Vec<_>>()
            .join(sep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // bench/RESULTS.md: uring no faster than raw on the test bed; the line says so
        // without pointing at a file an installed system lacks.
        assert_eq!(AUTO_FIRST.0, Engine::Raw);
        assert!(!AUTO_FIRST.1.contains(".md"));
    }
}
