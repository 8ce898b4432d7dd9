//! `asdic sweep --metrics-listen`: the sweep's per-target statistics as Prometheus metrics,
//! encoded by `prometheus-client` (OpenMetrics text) from a snapshot taken at each scrape,
//! and served over a minimal HTTP/1.1 endpoint (`GET /metrics`).
//!
//! Series per target carry the labels `target` (address), `name` (from the targets file, or
//! the address) and `size` (ICMP payload bytes: NetXMS pings one address at several sizes).
//! RTTs are in seconds, as Prometheus wants; a value that does not exist (no reply in the
//! window, the latest probe lost) is left out, never written as a number.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asdic_analysis::fleet::{Counters, Fleet, HISTOGRAM_BOUNDS, Histogram};
use asdic_analysis::window::WindowStats;
use asdic_core::sweep::Plan;
use asdic_receiver::rx::RxShared;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// What the sweep shares with its metrics endpoint.
#[derive(Debug)]
pub struct Shared {
    /// The targets and their statistics.
    pub fleet: Mutex<Fleet>,
    /// Each family's plan (rounds and lag).
    pub plans: Vec<Arc<Plan>>,
    /// Reloads of the targets file applied.
    pub reloads: AtomicU64,
    /// Reloads that failed (the previous list stayed).
    pub reload_errors: AtomicU64,
    /// Each pipeline's receivers' counters (the kernel's drops).
    pub receivers: Vec<Arc<RxShared>>,
}

/// One target's values at a scrape.
struct Snap {
    target: String,
    name: String,
    size: String,
    stats: WindowStats,
    counters: Counters,
    alarm: bool,
    histogram: Option<Histogram>,
}

/// The collector registered with the registry: takes a snapshot at each scrape.
#[derive(Debug)]
pub struct SweepCollector {
    shared: Arc<Shared>,
}

impl SweepCollector {
    /// Every target's values now. The fleet is walked a part at a time, so the lock is
    /// never held for long: the consumer of events waits at most one part.
    fn snapshot(&self) -> (Vec<Snap>, u32) {
        const PART: usize = 4096;
        let now = asdic_engine::now_ns();
        let mut scratch = Vec::new();
        let mut snaps = Vec::new();
        let mut first = 0u32;
        let window_ms;
        loop {
            let Ok(fleet) = self.shared.fleet.lock() else {
                return (vec![], 0);
            };
            let end = fleet.cookie_end();
            snaps.extend(fleet.members_from(first, PART).map(|(_, m)| {
                let target = m.target.addr.to_string();
                Snap {
                    name: m
                        .target
                        .name
                        .as_deref()
                        .map_or_else(|| target.clone(), str::to_string),
                    target,
                    size: m.target.size.to_string(),
                    stats: fleet.member_stats(m, now, &mut scratch),
                    counters: m.counters,
                    alarm: m.alarm,
                    histogram: m.histogram.as_deref().cloned(),
                }
            }));
            drop(fleet);
            first = first.saturating_add(PART as u32);
            if first >= end {
                window_ms = fleet_window(&self.shared);
                break;
            }
        }
        (snaps, window_ms)
    }
}

fn fleet_window(shared: &Shared) -> u32 {
    shared.fleet.lock().map_or(0, |f| f.window_ms())
}

type Labels<'a> = [(&'static str, &'a str); 3];

fn labels(s: &Snap) -> Labels<'_> {
    [
        ("target", s.target.as_str()),
        ("name", s.name.as_str()),
        ("size", s.size.as_str()),
    ]
}

/// Encodes one gauge family: a series per target that has a value.
fn gauges(
    enc: &mut DescriptorEncoder,
    snaps: &[Snap],
    name: &str,
    help: &str,
    value: impl Fn(&Snap) -> Option<f64>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for s in snaps {
        if let Some(v) = value(s) {
            m.encode_family(&labels(s))?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

/// Encodes one counter family (the encoder appends `_total`).
fn counters(
    enc: &mut DescriptorEncoder,
    snaps: &[Snap],
    name: &str,
    help: &str,
    value: impl Fn(&Counters) -> u64,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for s in snaps {
        m.encode_family(&labels(s))?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, u64, f64>(
                &value(&s.counters),
                None,
            )?;
    }
    Ok(())
}

fn secs(us: Option<f64>) -> Option<f64> {
    us.map(|u| u / 1e6)
}

impl Collector for SweepCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let (snaps, window_ms) = self.snapshot();
        let e = &mut enc;
        window_families(e, &snaps, window_ms)?;
        total_families(e, &snaps)?;
        self.fleet_families(e, &snaps)
    }
}

/// Per target, over the rolling window: RTT statistics, loss, probes, alarm state.
fn window_families(e: &mut DescriptorEncoder, snaps: &[Snap], window_ms: u32) -> std::fmt::Result {
    let w = f64::from(window_ms) / 1000.0;
    let over = format!(" over the last {w} s");
    gauges(
        e,
        snaps,
        "asdic_sweep_rtt_last_seconds",
        "RTT of the latest probe; absent when it was lost (NetXMS LastPingTime)",
        |s| secs(s.stats.last_us),
    )?;
    gauges(
        e,
        snaps,
        "asdic_sweep_rtt_avg_seconds",
        &format!("Mean reply RTT{over} (NetXMS AvgPingTime)"),
        |s| secs(s.stats.avg_us),
    )?;
    gauges(
        e,
        snaps,
        "asdic_sweep_rtt_min_seconds",
        &format!("Smallest reply RTT{over}"),
        |s| secs(s.stats.min_us),
    )?;
    gauges(
        e,
        snaps,
        "asdic_sweep_rtt_max_seconds",
        &format!("Largest reply RTT{over}"),
        |s| secs(s.stats.max_us),
    )?;
    gauges(
        e,
        snaps,
        "asdic_sweep_rtt_stddev_seconds",
        &format!("Population standard deviation of reply RTTs{over} (NetXMS PingStdDev)"),
        |s| secs(s.stats.stddev_us),
    )?;
    {
        let mut m = e.encode_descriptor(
            "asdic_sweep_rtt_quantile_seconds",
            &format!("Reply RTT percentiles (nearest rank){over}"),
            None,
            MetricType::Gauge,
        )?;
        for s in snaps {
            let [t, n, z] = labels(s);
            for (q, v) in [
                ("0.5", s.stats.p50_us),
                ("0.9", s.stats.p90_us),
                ("0.99", s.stats.p99_us),
            ] {
                if let Some(v) = secs(v) {
                    m.encode_family(&[t, n, z, ("quantile", q)])?
                        .encode_gauge(&v)?;
                }
            }
        }
    }
    gauges(
        e,
        snaps,
        "asdic_sweep_loss_ratio",
        &format!("Lost probes / probes{over}, 0..1 (NetXMS PacketLoss / 100)"),
        |s| s.stats.loss_pct.map(|p| p / 100.0),
    )?;
    gauges(
        e,
        snaps,
        "asdic_sweep_window_probes",
        &format!("Probes ended{over}"),
        |s| Some(f64::from(s.stats.probes)),
    )?;
    gauges(
        e,
        snaps,
        "asdic_sweep_alarm",
        "1 while the target breaks its alarm limits, else 0",
        |s| Some(f64::from(u8::from(s.alarm))),
    )?;
    Ok(())
}

/// Per target, since it was added: counters and (with --metrics-histograms) the RTT histogram.
fn total_families(e: &mut DescriptorEncoder, snaps: &[Snap]) -> std::fmt::Result {
    counters(
        e,
        snaps,
        "asdic_sweep_probes",
        "Probes ended since the target was added",
        |c| c.probes,
    )?;
    counters(e, snaps, "asdic_sweep_replies", "Echo replies", |c| {
        c.replies
    })?;
    counters(e, snaps, "asdic_sweep_errors", "ICMP errors", |c| c.errors)?;
    counters(
        e,
        snaps,
        "asdic_sweep_timeouts",
        "Probes unanswered within the timeout",
        |c| c.timeouts,
    )?;
    if snaps.iter().any(|s| s.histogram.is_some()) {
        let mut m = e.encode_descriptor(
            "asdic_sweep_rtt_seconds",
            "Reply RTTs since the target was added",
            None,
            MetricType::Histogram,
        )?;
        let mut buckets = [(0f64, 0u64); HISTOGRAM_BOUNDS.len() + 1];
        for s in snaps {
            let Some(h) = &s.histogram else { continue };
            let mut total = 0;
            for (i, b) in buckets.iter_mut().enumerate() {
                // The encoder takes per-bucket counts and accumulates them itself.
                *b = (
                    HISTOGRAM_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY),
                    h.counts[i],
                );
                total += h.counts[i];
            }
            m.encode_family(&labels(s))?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum_s, total, &buckets, None,
                )?;
        }
    }
    Ok(())
}

impl SweepCollector {
    /// The fleet as a whole: targets, alarms, rounds, reloads, the kernel's drops.
    fn fleet_families(&self, e: &mut DescriptorEncoder, snaps: &[Snap]) -> std::fmt::Result {
        let rounds: u64 = self
            .shared
            .plans
            .iter()
            .map(|p| p.rounds.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let lag = self
            .shared
            .plans
            .iter()
            .map(|p| p.lag_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let scalar = |e: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
        };
        scalar(
            e,
            "asdic_sweep_targets",
            "Targets listed",
            snaps.len() as f64,
        )?;
        scalar(
            e,
            "asdic_sweep_targets_in_alarm",
            "Targets in alarm",
            snaps.iter().filter(|s| s.alarm).count() as f64,
        )?;
        scalar(e, "asdic_sweep_rounds", "Rounds started", rounds as f64)?;
        scalar(
            e,
            "asdic_sweep_round_lag_seconds",
            "How late the latest round started (0 when on schedule)",
            lag as f64 / 1e6,
        )?;
        scalar(
            e,
            "asdic_sweep_reloads",
            "Reloads of the targets file applied",
            self.shared.reloads.load(Ordering::Relaxed) as f64,
        )?;
        // What the kernel dropped before the receivers read it, by counter: a reply lost
        // here shows as loss of its target, so it is exported beside the loss it explains.
        let kernel = RxShared::kernel_drops_of(self.shared.receivers.iter().map(|r| r.as_ref()));
        ConstCounter::new(kernel.lost()).encode(e.encode_descriptor(
            "asdic_sweep_kernel_lost",
            "Replies and ICMP errors of the sweep that the kernel dropped or handed to nobody \
             before asdic could read them",
            None,
            MetricType::Counter,
        )?)?;
        {
            let mut m = e.encode_descriptor(
                "asdic_sweep_kernel_drops",
                "The kernel's drop counters of the sweep's receive path, by counter (socket \
                 receive-buffer overflows, AF_XDP socket statistics, the XDP program's failed \
                 redirects)",
                None,
                MetricType::Counter,
            )?;
            for (name, v) in kernel.fields() {
                ConstCounter::new(v).encode(m.encode_family(&[("counter", name)])?)?;
            }
        }
        scalar(
            e,
            "asdic_sweep_reload_errors",
            "Reloads of the targets file refused (the previous list stayed)",
            self.shared.reload_errors.load(Ordering::Relaxed) as f64,
        )?;
        Ok(())
    }
}

/// The registry holding the sweep's collector.
pub fn registry(shared: Arc<Shared>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(SweepCollector { shared }));
    r
}

/// Serves `registry` at `GET /metrics` on `listener` (bound by the caller while it still
/// holds its capabilities, so that root can listen on a port below 1024); returns its
/// address. The server thread lives as long as the process.
pub fn serve(listener: TcpListener, registry: Registry) -> std::io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("asdic-metrics".into())
        .spawn(move || {
            // A scrape of a large fleet is a burst of work (snapshot and encoding): it runs
            // at the lowest priority so that it never starves the sender or the receiver.
            if let Err(e) = asdic_engine::background_thread() {
                eprintln!("asdic: metrics thread keeps normal priority: {e}");
            }
            for conn in listener.incoming() {
                match conn {
                    // A failed exchange is the client's problem; keep serving.
                    Ok(c) => {
                        let _ = handle(c, &registry);
                    }
                    // Out of descriptors or the like: back off instead of spinning.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })?;
    Ok(bound)
}

/// Longest request head read.
const MAX_HEAD: usize = 8192;

fn handle(mut c: TcpStream, registry: &Registry) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let k = c.read(&mut buf)?;
        if k == 0 {
            break;
        }
        head.extend_from_slice(&buf[..k]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if matches!(method, "GET" | "HEAD") && path == "/metrics" {
        // Streamed as it is encoded (the body ends when the connection closes): a fleet of
        // 100,000 targets encodes to ~140 MB, which is never held in memory at once.
        c.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; \
              charset=utf-8\r\nConnection: close\r\n\r\n",
        )?;
        if method == "GET" {
            let mut out = IoWriter {
                w: std::io::BufWriter::with_capacity(1 << 16, &mut c),
                error: None,
            };
            let encoded = prometheus_client::encoding::text::encode(&mut out, registry);
            if let Some(e) = out.error.take() {
                return Err(e);
            }
            if encoded.is_err() {
                // The status line is gone already: end the body with a comment that says so
                // (it is not valid OpenMetrics, so the scrape fails visibly).
                let _ = out.w.write_all(b"\n# asdic: encoding failed\n");
            }
            out.w.flush()?;
        }
        return c.flush();
    }
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/") => ("200 OK", "asdic sweep: metrics at /metrics\n"),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found\n"),
        _ => ("405 Method Not Allowed", "GET /metrics\n"),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    c.write_all(out.as_bytes())?;
    if method != "HEAD" {
        c.write_all(body.as_bytes())?;
    }
    c.flush()
}

/// `fmt::Write` onto an `io::Write`, keeping the I/O error (`fmt::Error` carries none).
struct IoWriter<W: Write> {
    w: W,
    error: Option<std::io::Error>,
}

impl<W: Write> std::fmt::Write for IoWriter<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.w.write_all(s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            std::fmt::Error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_analysis::fleet::{FleetTarget, Limits};
    use asdic_core::{Event, Outcome};
    use asdic_engine::KernelDrops;

    #[test]
    fn scrape_has_per_target_series_and_no_fake_values() {
        let mut fleet = Fleet::new(60_000, 1000, Limits::default(), true);
        let t = |a: &str, name: Option<&str>| FleetTarget {
            addr: a.parse().unwrap(),
            name: name.map(Arc::from),
            size: 56,
            class: 0,
            limits: Limits::default(),
        };
        fleet.apply(&[t("198.19.0.1", Some("web \"1\"")), t("198.19.0.2", None)]);
        let now = asdic_engine::now_ns();
        let ev = |cookie, a: &str, outcome| Event {
            n: 0,
            cookie,
            target: a.parse().unwrap(),
            t_send_ns: now - 1_000_000,
            attempt: 0,
            outcome,
        };
        fleet.record(
            &ev(
                0,
                "198.19.0.1",
                Outcome::Reply {
                    rtt_ns: 250_000,
                    ttl: Some(64),
                    from: "198.19.0.1".parse().unwrap(),
                },
            ),
            now,
        );
        fleet.record(&ev(1, "198.19.0.2", Outcome::Timeout), now);
        let rx = Arc::new(RxShared::default());
        rx.add_kernel_drops(&KernelDrops {
            xsk_rx_ring_full: 7,
            redirect_failed: 2,
            xsk_fill_empty: 5,
            ..KernelDrops::default()
        });
        let shared = Arc::new(Shared {
            fleet: Mutex::new(fleet),
            plans: vec![],
            reloads: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
            receivers: vec![rx],
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry(shared)).unwrap();
        let l1 = r#"{target="198.19.0.1",name="web \"1\"",size="56"}"#;
        let l2 = r#"{target="198.19.0.2",name="198.19.0.2",size="56"}"#;
        for want in [
            format!("asdic_sweep_rtt_last_seconds{l1} 0.00025"),
            format!("asdic_sweep_loss_ratio{l1} 0.0"),
            format!("asdic_sweep_loss_ratio{l2} 1.0"),
            format!("asdic_sweep_probes_total{l2} 1"),
            "asdic_sweep_rtt_quantile_seconds{target=\"198.19.0.1\",name=\"web \\\"1\\\"\",size=\"56\",quantile=\"0.99\"} 0.00025".to_string(),
            format!("asdic_sweep_rtt_seconds_count{l1} 1"),
            "asdic_sweep_targets 2".to_string(),
            "asdic_sweep_kernel_lost_total 9".to_string(),
            "asdic_sweep_kernel_drops_total{counter=\"xsk_rx_ring_full\"} 7".to_string(),
            "asdic_sweep_kernel_drops_total{counter=\"xsk_fill_ring_empty\"} 5".to_string(),
            "asdic_sweep_kernel_drops_total{counter=\"socket_overflow\"} 0".to_string(),
            "# EOF".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        // The lost target has no RTT series at all.
        assert!(!text.contains(&format!("asdic_sweep_rtt_last_seconds{l2}")));
        assert!(!text.contains(&format!("asdic_sweep_rtt_avg_seconds{l2}")));
    }

    #[test]
    fn http_endpoint_serves_metrics_and_refuses_the_rest() {
        let shared = Arc::new(Shared {
            fleet: Mutex::new(Fleet::new(1000, 1000, Limits::default(), false)),
            plans: vec![],
            reloads: AtomicU64::new(3),
            reload_errors: AtomicU64::new(0),
            receivers: vec![],
        });
        let addr = serve(TcpListener::bind("127.0.0.1:0").unwrap(), registry(shared)).unwrap();
        let get = |req: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.contains("application/openmetrics-text"));
        assert!(r.contains("asdic_sweep_reloads 3"));
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get("\r\n\r\n").starts_with("HTTP/1.1 405"));
    }
}
