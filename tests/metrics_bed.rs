//! `asdic sweep --metrics-listen` against the Prometheus ecosystem's own tools, on the test
//! bed: `promtool check metrics` on a live scrape at every `--metrics-per-target` level, and
//! a real Prometheus (Debian's `prometheus` package, run in the bed's scanner namespace)
//! scraping a sweep, whose PromQL answers (counters, loss, `rate`, `histogram_quantile`)
//! must agree with what the sweep wrote in its own Parquet files.
//!
//! Both tools come with Debian's `prometheus` package (scripts/deps.sh installs it). Without
//! them the tests skip, unless `ASDIC_REQUIRE_BED=1`, where they fail. Everything runs inside
//! the bed: the sweep and Prometheus listen on 127.0.0.1 of the scanner namespace.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use asdic_analysis::SweepEvent;
use asdic_analysis::stats::nearest_rank;
use asdic_tests::{Bed, read_parquet, require_bed, scratch, scratch_dir};
use serde_json::Value;

type Row = HashMap<String, Value>;

/// Where the sweep serves its metrics, inside the scanner namespace.
const SWEEP_PORT: u16 = 9427;
/// Where Prometheus serves its API, inside the scanner namespace.
const PROM_PORT: u16 = 9090;

/// 25 targets in three groups and the ungrouped rest: answering hosts, a dead one (13 % 97),
/// one the router rejects (198.19.77.x), an IPv6 one.
const FLEET: &str = "\
198.19.0.1:web1 group=web
198.19.0.2:web2 group=web
198.19.0.13:dead group=web
198.19.77.5:rejected group=edge
[2001:db8:1::5]:v6 group=edge
198.19.1.0/28 group=rack
198.19.2.0/30
";
const TARGETS: usize = 25;

/// The path of `name`, or `None` to skip when it is missing and no bed is required.
fn tool(name: &str) -> Option<PathBuf> {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh");
    if o.status.success() {
        return Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    }
    assert!(
        !std::env::var("ASDIC_REQUIRE_BED").is_ok_and(|v| v == "1"),
        "{name} is not installed (ASDIC_REQUIRE_BED=1): scripts/deps.sh installs Debian's \
         prometheus package, which brings it"
    );
    eprintln!("skipped: {name} is not installed (Debian's prometheus package)");
    None
}

/// A child process killed and reaped when dropped, also when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    /// Waits at most `limit` for the process to end.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.0.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "pid {} did not end within {limit:?}",
                self.0.id()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGINT.
    fn interrupt(&self) {
        let pid = self.0.id().to_string();
        let ok = Command::new("kill").args(["-INT", &pid]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -INT {pid}");
    }
}

/// The lines of a child's stderr as they come, and all of them so far.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: vec![] }
    }

    /// Waits (at most `limit`) for a line containing `what`.
    fn wait_for(&mut self, what: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {what:?} within {limit:?}: {:#?}", self.seen);
    }
}

/// `asdic sweep args` in the bed's scanner namespace, killed when dropped, and its stderr
/// lines.
fn sweep(bed: &Bed, args: &[&str]) -> (Reaped, Lines) {
    let mut child = Reaped(
        bed.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("asdic sweep"),
    );
    let lines = Lines::of(&mut child.0);
    (child, lines)
}

/// GET `path` from 127.0.0.1:`port` in the bed's scanner namespace, asking for `accept`:
/// (status line, headers, body). HTTP/1.0, so that the body is never chunked.
fn get(bed: &Bed, port: u16, path: &str, accept: Option<&str>) -> (String, String, String) {
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{}\r\n",
        accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"))
    );
    let r = bed.in_scan_netns(move || -> std::io::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        c.write_all(req.as_bytes())?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok(s)
    });
    let r = r.unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}{path}: {e}"));
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// Whether 127.0.0.1:`port` answers `path` with 200 in the scanner namespace.
fn ready(bed: &Bed, port: u16, path: &'static str) -> bool {
    let probe = move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(c, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s.starts_with("HTTP/1.0 200") || s.starts_with("HTTP/1.1 200"))
    };
    bed.in_scan_netns(probe).unwrap_or(false)
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on `text`: (exit status, its output).
fn promtool_check(promtool: &Path, text: &str) -> (ExitStatus, String) {
    let mut child = Reaped(
        Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool"),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let text = text.to_string();
    let feeder = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let mut out = String::new();
    let mut stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        e
    });
    let _ = stdout.read_to_string(&mut out);
    let status = child.wait(Duration::from_secs(30));
    feeder.join().unwrap().expect("feeding promtool");
    out.push_str(&reader.join().unwrap());
    (status, out)
}

/// Samples of a scrape whose labels include `target="addr"`.
fn series_of(text: &str, addr: &str) -> usize {
    let label = format!("target=\"{addr}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .count()
}

fn sweep_args<'a>(file: &'a str, level: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "sweep",
        file,
        "--every",
        "250ms",
        "--timeout",
        "300ms",
        "--metrics-listen",
        "127.0.0.1:9427",
        "--metrics-per-target",
        level,
        "--status-every",
        "0",
        "-q",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn promtool_accepts_a_live_scrape_at_every_level() {
    let Some(()) = require_bed() else { return };
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let bed = Bed::up("mb1", &[]);
    let file = scratch("mb1-fleet.txt");
    std::fs::write(&file, FLEET).unwrap();
    let file = file.to_str().unwrap();
    for (level, per_target) in [("full", 31), ("basic", 5), ("none", 0)] {
        let args = sweep_args(file, level, &["--rounds", "4", "--metrics-linger", "20s"]);
        let (mut sweep, mut lines) = sweep(&bed, &args);
        let l = lines.wait_for("metrics at", Duration::from_secs(10));
        assert!(
            l.contains(&format!(
                "--metrics-per-target {level}: {per_target} series"
            )),
            "{l}"
        );
        // Lingering: the final counts stay served until the signal.
        lines.wait_for("serving the final metrics", Duration::from_secs(15));
        // What curl sends: the classic text format, which promtool reads.
        let (status, headers, text) = get(&bed, SWEEP_PORT, "/metrics", Some("*/*"));
        assert!(status.ends_with("200 OK"), "{status}");
        assert!(headers.contains("text/plain; version=0.0.4"), "{headers}");
        let (code, out) = promtool_check(&promtool, &text);
        assert!(
            code.success() && out.is_empty(),
            "promtool check metrics at {level}: {code}\n{out}\n{text}"
        );
        // Series per answering target, as the README says.
        assert_eq!(
            series_of(&text, "198.19.0.1"),
            per_target,
            "{level}\n{text}"
        );
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        eprintln!(
            "--metrics-per-target {level}: {TARGETS} targets, {samples} samples, {} bytes \
             (classic); web1 {} series; promtool: exit {code}, {} bytes of output",
            text.len(),
            series_of(&text, "198.19.0.1"),
            out.len()
        );
        // What Prometheus asks for: OpenMetrics, with the same samples.
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let (_, headers, om) = get(&bed, SWEEP_PORT, "/metrics", Some(accept));
        assert!(
            headers.contains("application/openmetrics-text"),
            "{headers}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
        let om_samples = om
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(om_samples, samples);
        eprintln!("  (OpenMetrics: {} bytes)", om.len());
        sweep.interrupt();
        let s = sweep.wait(Duration::from_secs(10));
        assert!(s.success(), "{s}: {:#?}", lines.seen);
    }
}

/// One instant query at `time` (Unix seconds): each result's labels and value.
fn query(bed: &Bed, promql: &str, time: f64) -> Vec<(HashMap<String, String>, f64)> {
    let path = format!("/api/v1/query?query={}&time={time:.3}", encode(promql));
    let (status, _, body) = get(bed, PROM_PORT, &path, None);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(
        status.ends_with("200 OK") && v["status"] == "success",
        "{promql}: {status} {body}"
    );
    v["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let value = r["value"][1].as_str().unwrap();
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                x => x.parse().unwrap(),
            };
            (labels, value)
        })
        .collect()
}

/// One value per `label` of a query's results.
fn by(bed: &Bed, label: &str, promql: &str, time: f64) -> HashMap<String, f64> {
    query(bed, promql, time)
        .into_iter()
        .map(|(l, v)| (l[label].clone(), v))
        .collect()
}

/// The scrapes of the last 30 s before `time` (up, duration, samples), for diagnostics.
fn scrapes(bed: &Bed, time: f64) -> String {
    let q = "{__name__=~\"up|scrape_duration_seconds|scrape_samples_scraped\"}[30s]";
    let path = format!("/api/v1/query?query={}&time={time:.3}", encode(q));
    get(bed, PROM_PORT, &path, None).2
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// What the sweep's files hold about one target (or group).
#[derive(Debug, Default, Clone)]
struct Truth {
    probes: u64,
    replies: u64,
    errors: u64,
    timeouts: u64,
    /// Reply RTTs, seconds.
    rtts: Vec<f64>,
}

impl Truth {
    fn add(&mut self, r: &Row) {
        let event = SweepEvent::parse(r["event"].as_str().unwrap());
        match event {
            Some(SweepEvent::Reply) => {
                self.replies += 1;
                self.rtts.push(r["rtt_us"].as_f64().unwrap() / 1e6);
            }
            Some(SweepEvent::Error) => self.errors += 1,
            Some(SweepEvent::Timeout) => self.timeouts += 1,
            Some(SweepEvent::SendFailed) => {}
            _ => return,
        }
        self.probes += 1;
    }

    fn loss(&self) -> f64 {
        (self.probes - self.replies) as f64 / self.probes as f64
    }

    /// The nearest-rank 99th percentile of the replies' RTTs: the ceil(0.99 n)-th smallest,
    /// which lies in the first bucket whose cumulative count reaches 0.99 n, the bucket
    /// histogram_quantile interpolates in.
    fn p99(&self) -> f64 {
        let mut v = self.rtts.clone();
        v.sort_by(f64::total_cmp);
        nearest_rank(&v, 99).expect("p99 of a target with replies")
    }
}

/// One of a [`Truth`]'s counts.
type Count = fn(&Truth) -> u64;

/// The bucket (lower, upper] of asdic's RTT histogram holding `x` seconds.
fn bucket_of(x: f64) -> (f64, f64) {
    // The bounds are the powers of two from 2^-15 s to 2 s.
    let mut lower = 0.0;
    for k in -15..=1 {
        let upper = 2f64.powi(k);
        if x <= upper {
            return (lower, upper);
        }
        lower = upper;
    }
    (lower, f64::INFINITY)
}

/// A Prometheus in the bed's scanner namespace scraping `targets` (the lines of one static
/// config list, YAML) every second, into a fresh `name` scratch directory; returned once it
/// has tried a first scrape (so a sweep started now is scraped from its start).
fn start_prometheus(bed: &Bed, prometheus: &Path, name: &str, targets: &str) -> (PathBuf, Reaped) {
    let dir = scratch_dir(name);
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: \
             asdic\n    static_configs:\n{targets}"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut prom = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &format!("asdic-{}-scan", bed.id())])
            .arg(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROM_PORT}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(bed, PROM_PORT, "/-/ready") {
        if let Some(s) = prom.0.try_wait().unwrap() {
            panic!(
                "prometheus ended: {s}\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ready is not scraping yet (its scrape manager takes up targets every 5 s): wait until
    // a first scrape has been tried (and failed: up 0).
    let deadline = Instant::now() + Duration::from_secs(20);
    while query(bed, "up{job=\"asdic\"}", unix_now()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape within 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (dir, prom)
}

#[test]
fn prometheus_scrapes_a_sweep_and_promql_agrees_with_its_files() {
    let Some(()) = require_bed() else { return };
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let t_test = Instant::now();
    let bed = Bed::up("mb2", &[]);
    let (dir, _prom) = start_prometheus(
        &bed,
        &prometheus,
        "mb2-prom",
        &format!("      - targets: [\"127.0.0.1:{SWEEP_PORT}\"]\n"),
    );

    let file = scratch("mb2-fleet.txt");
    std::fs::write(&file, FLEET).unwrap();
    let out = scratch("mb2-out");
    let _ = std::fs::remove_dir_all(&out);
    // 16 rounds of 250 ms: 4 s of probes, then the final counts stay served.
    let args = sweep_args(
        file.to_str().unwrap(),
        "full",
        &[
            "--rounds",
            "16",
            "--metrics-linger",
            "30s",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let (mut sweep, mut lines) = sweep(&bed, &args);
    lines.wait_for("metrics at", Duration::from_secs(10));
    let t_start = unix_now();
    lines.wait_for("serving the final metrics", Duration::from_secs(20));
    let t_end = unix_now();

    // A scrape that started after the last event: its samples hold the final counts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let t_final = loop {
        let t = query(&bed, "timestamp(asdic_sweep_targets)", unix_now());
        if let Some(&(_, ts)) = t.first()
            && ts > t_end
        {
            break ts;
        }
        assert!(
            Instant::now() < deadline,
            "no scrape after the sweep's end within 10 s: {t:?}\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let up = query(&bed, "up{job=\"asdic\"}", t_final);
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0, "the scrapes succeed");
    let (_, _, targets) = get(&bed, PROM_PORT, "/api/v1/targets", None);
    assert!(targets.contains("\"lastError\":\"\""), "{targets}");

    // The files (complete: written before the linger).
    let mut truth: HashMap<String, Truth> = HashMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in &files {
        for r in read_parquet(f).0 {
            let t = r["target"].as_str().unwrap().to_string();
            truth.entry(t).or_default().add(&r);
        }
    }
    assert_eq!(truth.len(), TARGETS);
    let group_of = |t: &str| match t {
        "198.19.0.1" | "198.19.0.2" | "198.19.0.13" => "web",
        "198.19.77.5" | "2001:db8:1::5" => "edge",
        t if t.starts_with("198.19.1.") => "rack",
        _ => "ungrouped",
    };
    let mut groups: HashMap<&str, Truth> = HashMap::new();
    for (t, x) in &truth {
        let g = groups.entry(group_of(t)).or_default();
        g.probes += x.probes;
        g.replies += x.replies;
        g.errors += x.errors;
        g.timeouts += x.timeouts;
        g.rtts.extend(&x.rtts);
    }

    // 1. The counters at the end: exactly the files' counts, target by target.
    let counters: [(&str, Count); 4] = [
        ("asdic_sweep_probes_total", |x| x.probes),
        ("asdic_sweep_replies_total", |x| x.replies),
        ("asdic_sweep_errors_total", |x| x.errors),
        ("asdic_sweep_timeouts_total", |x| x.timeouts),
    ];
    for (metric, of) in counters {
        let got = by(&bed, "target", metric, t_final);
        assert_eq!(got.len(), TARGETS, "{metric}");
        for (t, x) in &truth {
            assert_eq!(got[t], of(x) as f64, "{metric} of {t}");
        }
    }
    // The dead host and the rejected one: 16 probes, none answered.
    assert_eq!(truth["198.19.0.13"].timeouts, 16);
    assert_eq!(truth["198.19.77.5"].errors, 16);

    // 2. Loss from the counters: the files' loss, exactly.
    let promql = "1 - asdic_sweep_replies_total / asdic_sweep_probes_total";
    let loss = by(&bed, "target", promql, t_final);
    for (t, x) in &truth {
        assert!(
            (loss[t] - x.loss()).abs() < 1e-12,
            "{t}: {} vs {}",
            loss[t],
            x.loss()
        );
    }
    eprintln!(
        "{promql} at the end: web1 {} (files {}), dead {} (files {}), rejected {} (files {})",
        loss["198.19.0.1"],
        truth["198.19.0.1"].loss(),
        loss["198.19.0.13"],
        truth["198.19.0.13"].loss(),
        loss["198.19.77.5"],
        truth["198.19.77.5"].loss()
    );

    // 3. rate() mid-run: one probe per target every 250 ms, and loss from the rates.
    let t_mid = t_start + 3.5;
    let promql = "rate(asdic_sweep_probes_total[3s])";
    let rate = by(&bed, "target", promql, t_mid);
    assert_eq!(
        rate.len(),
        TARGETS,
        "{promql} at {t_mid} (start {t_start}, end {t_end}); the scrapes: {}",
        scrapes(&bed, t_final)
    );
    for (t, r) in &rate {
        assert!((2.5..5.5).contains(r), "{promql} of {t}: {r}, want ~4/s");
    }
    let promql = "1 - rate(asdic_sweep_replies_total[3s]) / rate(asdic_sweep_probes_total[3s])";
    let loss = by(&bed, "target", promql, t_mid);
    for (t, x) in &truth {
        let want = if x.replies == 0 { 1.0 } else { 0.0 };
        assert_eq!(loss[t], want, "{promql} of {t}");
    }
    eprintln!(
        "rate(asdic_sweep_probes_total[3s]) mid-run: web1 {:.3}/s, dead {:.3}/s (want 4/s)",
        rate["198.19.0.1"], rate["198.19.0.13"]
    );

    // 4. histogram_quantile: the true p99 of the files lies in the bucket Prometheus
    // interpolated in.
    for (label, promql, truths) in [
        (
            "target",
            "histogram_quantile(0.99, asdic_sweep_rtt_seconds_bucket)",
            truth
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect::<Vec<_>>(),
        ),
        (
            "group",
            "histogram_quantile(0.99, asdic_sweep_group_rtt_seconds_bucket)",
            groups.iter().map(|(k, v)| (*k, v)).collect(),
        ),
    ] {
        let q = by(&bed, label, promql, t_final);
        for (k, x) in truths {
            if x.rtts.is_empty() {
                assert!(q[k].is_nan(), "{promql} of {k} without replies: {}", q[k]);
                continue;
            }
            let (lower, upper) = bucket_of(q[k]);
            let p99 = x.p99();
            assert!(
                lower < p99 && p99 <= upper,
                "{promql} of {k}: {} in ({lower}, {upper}], the files' p99 {p99}",
                q[k]
            );
            if k == "198.19.0.1" || k == "web" {
                eprintln!(
                    "{promql} of {k}: {:.6} s, bucket ({lower}, {upper}]; files: p99 {p99:.6} s \
                     of {} replies",
                    q[k],
                    x.rtts.len()
                );
            }
        }
    }

    // 5. The groups' counters are the sums over their targets, exactly.
    let promql = "asdic_sweep_group_probes_total";
    let got = by(&bed, "group", promql, t_final);
    let summed = by(
        &bed,
        "group",
        "sum by (group) (asdic_sweep_probes_total)",
        t_final,
    );
    assert_eq!(got.len(), 4);
    for (g, x) in &groups {
        assert_eq!(got[*g], x.probes as f64, "{promql} of {g}");
        assert_eq!(summed[*g], x.probes as f64, "sum by (group) of {g}");
    }
    let replies = by(&bed, "group", "asdic_sweep_group_replies_total", t_final);
    for (g, x) in &groups {
        assert_eq!(replies[*g], x.replies as f64, "replies of {g}");
    }
    let listed = by(&bed, "group", "asdic_sweep_group_targets", t_final);
    assert_eq!(listed["rack"], 16.0);
    assert_eq!(listed["web"], 3.0);

    // The signal ends the linger: the sweep exits cleanly.
    sweep.interrupt();
    let s = sweep.wait(Duration::from_secs(10));
    assert!(s.success(), "{s}: {:#?}", lines.seen);
    eprintln!("whole test: {:.1} s", t_test.elapsed().as_secs_f64());
}

/// Agent a1's targets: answering hosts, a dead one (13 % 97), one the router rejects.
const AGENT1: &str = "198.19.0.0/29\n198.19.0.13:dead\n198.19.77.5:rejected\n";
/// Agent a2's: others, with a dead one (789 = 198.19.3.21) and a rejected one.
const AGENT2: &str = "198.19.3.16/29\n198.19.77.9:rejected\n";

#[test]
fn two_agents_write_one_dataset_and_promql_over_both_agrees_with_their_files() {
    let Some(()) = require_bed() else { return };
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let bed = Bed::up("mb3", &[]);
    let (dir, _prom) = start_prometheus(
        &bed,
        &prometheus,
        "mb3-prom",
        "      - targets: [\"127.0.0.1:9427\"]\n        labels: {agent: a1}\n      \
         - targets: [\"127.0.0.1:9428\"]\n        labels: {agent: a2}\n",
    );
    let data = scratch("mb3-dataset");
    let _ = std::fs::remove_dir_all(&data);
    let mut agents = vec![];
    for (agent, port, fleet) in [("a1", "9427", AGENT1), ("a2", "9428", AGENT2)] {
        let file = scratch(&format!("mb3-{agent}.txt"));
        std::fs::write(&file, fleet).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let args: Vec<String> = [
            "sweep",
            file.to_str().unwrap(),
            "--every",
            "250ms",
            "--timeout",
            "300ms",
            "--metrics-listen",
            &listen,
            "--status-every",
            "0",
            "-q",
            // Two agents on one host: sockets (one XDP program per interface).
            "--engine",
            "raw",
            "--rounds",
            "12",
            "--metrics-linger",
            "30s",
            "--dataset",
            data.to_str().unwrap(),
            "--agent",
            agent,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (child, lines) = sweep(&bed, &args);
        agents.push((agent, child, lines));
    }
    let mut t_end = 0.0f64;
    for (_, _, lines) in agents.iter_mut() {
        lines.wait_for("serving the final metrics", Duration::from_secs(30));
        t_end = t_end.max(unix_now());
    }
    // A scrape of each agent after both ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    let t_final = loop {
        let t = query(&bed, "timestamp(asdic_sweep_targets)", unix_now());
        if t.len() == 2 && t.iter().all(|(_, ts)| *ts > t_end) {
            break t.iter().map(|(_, ts)| *ts).fold(0.0, f64::max);
        }
        assert!(
            Instant::now() < deadline,
            "no scrape of both agents after their end: {t:?}\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // The agents' files: one dataset, partitioned by agent, date and hour.
    let mut truth: HashMap<(String, String), Truth> = HashMap::new();
    for agent in ["a1", "a2"] {
        let root = data.join("schema_version=2").join(format!("agent={agent}"));
        let mut parts = vec![];
        for date in std::fs::read_dir(&root).unwrap() {
            let date = date.unwrap().path();
            assert!(
                date.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("date=")
            );
            for hour in std::fs::read_dir(&date).unwrap() {
                let hour = hour.unwrap().path();
                assert!(
                    hour.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("hour=")
                );
                for f in std::fs::read_dir(&hour).unwrap() {
                    let f = f.unwrap().path();
                    let n = f.file_name().unwrap().to_string_lossy().into_owned();
                    assert!(n.starts_with("part-") && n.ends_with(".parquet"), "{n}");
                    parts.push(f);
                }
            }
        }
        assert!(!parts.is_empty(), "{agent}: no parts");
        for f in &parts {
            for r in read_parquet(f).0 {
                assert!(
                    !r.contains_key("agent"),
                    "a partition column inside the file"
                );
                let t = r["target"].as_str().unwrap().to_string();
                truth.entry((agent.to_string(), t)).or_default().add(&r);
            }
        }
    }
    assert_eq!(truth.len(), 10 + 9);

    // Fleet-wide loss over both agents, as the README writes it.
    let fleet = query(
        &bed,
        "1 - sum(asdic_sweep_replies_total) / sum(asdic_sweep_probes_total)",
        t_final,
    );
    let probes: u64 = truth.values().map(|t| t.probes).sum();
    let replies: u64 = truth.values().map(|t| t.replies).sum();
    let want = 1.0 - replies as f64 / probes as f64;
    assert!((fleet[0].1 - want).abs() < 1e-12, "{fleet:?} vs {want}");
    // Each agent's worst targets.
    let worst = query(
        &bed,
        "topk by (agent) (2, 1 - asdic_sweep_replies_total / asdic_sweep_probes_total)",
        t_final,
    );
    let mut got: Vec<(String, String, f64)> = worst
        .iter()
        .map(|(l, v)| (l["agent"].clone(), l["target"].clone(), *v))
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut want: Vec<(String, String, f64)> = vec![];
    for agent in ["a1", "a2"] {
        let mut mine: Vec<(String, String, f64)> = truth
            .iter()
            .filter(|((a, _), _)| a == agent)
            .map(|((a, t), tr)| (a.clone(), t.clone(), tr.loss()))
            .collect();
        mine.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)));
        want.extend(mine.into_iter().take(2));
    }
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, want, "worst targets per agent");
    assert!(
        want.iter().all(|w| w.2 == 1.0),
        "the dead and rejected hosts: {want:?}"
    );
    for (_, child, _) in agents.iter_mut() {
        child.interrupt();
        assert!(child.wait(Duration::from_secs(10)).success());
    }
}

/// One scrape of the sweep on `c` (the classic format): the whole answer.
fn scrape_on(c: &mut TcpStream) -> std::io::Result<String> {
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut r = vec![];
    c.read_to_end(&mut r)?;
    String::from_utf8(r).map_err(std::io::Error::other)
}

/// A whole scrape of the mx1 fleet: 200, as long as its `Content-Length` says, every
/// target there, an answering one with all its series. Its body.
fn check_scrape(r: &str) -> &str {
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{head} (body {} bytes)",
        body.len()
    );
    assert!(body.contains("\nasdic_sweep_targets 10000\n"), "{head}");
    assert_eq!(series_of(body, "198.19.1.1"), 31, "{head}");
    assert!(body.ends_with('\n'), "{head}");
    body
}

/// Issue 25: one slow client blocked the endpoint for everyone. Against a sweep of 10,000
/// targets at `full` (a scrape of ~33 MB), a slow loris (a byte of a request head every 4 s,
/// reconnecting each time it is cut off) and a client that asks for a scrape and never reads
/// it, while a scraper scrapes every 250 ms for 8 s: every scrape is whole within 1 s, and
/// the loris is cut off at 1 s each time.
#[test]
fn slow_clients_do_not_delay_scrapes_of_a_large_sweep() {
    let Some(()) = require_bed() else { return };
    let t_test = Instant::now();
    let bed = Bed::up("mx1", &[]);
    let file = scratch("mx1-fleet.txt");
    // 198.19.1.0 to 198.19.40.15: neither 198.19.0.0 nor the rejected 198.19.77.0/24.
    let fleet: String = (0..10_000u32)
        .map(|i| format!("198.19.{}.{}\n", 1 + i / 256, i % 256))
        .collect();
    std::fs::write(&file, fleet).unwrap();
    let args = [
        "sweep",
        file.to_str().unwrap(),
        "--every",
        "1s",
        "--timeout",
        "500ms",
        "--rate",
        "20000",
        "--metrics-listen",
        "127.0.0.1:9427",
        "--metrics-per-target",
        "full",
        "--status-every",
        "0",
        "-q",
    ];
    let (mut sweep, mut lines) = sweep(&bed, &args);
    lines.wait_for("metrics at", Duration::from_secs(20));
    let addr = SocketAddr::from(([127, 0, 0, 1], SWEEP_PORT));
    // Until a round has ended: every target's series are there.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        let r = bed.in_scan_netns(move || scrape_on(&mut TcpStream::connect(addr)?));
        let whole = |r: &String| {
            r.contains("\nasdic_sweep_targets 10000\n") && series_of(r, "198.19.1.1") == 31
        };
        if let Some(r) = r.ok().filter(whole) {
            break r;
        }
        assert!(Instant::now() < deadline, "no full scrape within 15 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let size = check_scrape(&first).len();
    eprintln!("a full scrape of 10,000 targets: {size} bytes");

    const SCRAPING: Duration = Duration::from_secs(8);
    let (times, bodies, cuts, sink_head) = std::thread::scope(|s| {
        let bed = &bed;
        // The loris: connects, trickles a byte every 4 s, notes when it is cut off, again.
        let loris = s.spawn(move || {
            bed.in_scan_netns(move || {
                let until = Instant::now() + SCRAPING;
                let mut cuts = vec![];
                while Instant::now() < until {
                    let t = Instant::now();
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    let head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
                    let (mut next, mut sent, mut answer) = (t, 0, vec![]);
                    let mut buf = [0u8; 4096];
                    loop {
                        if Instant::now() >= next && sent < head.len() {
                            // A write after the cut may fail (reset): the read tells.
                            let _ = c.write_all(&head[sent..sent + 1]);
                            sent += 1;
                            next += Duration::from_secs(4);
                        }
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(k) => answer.extend_from_slice(&buf[..k]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => break,
                        }
                        assert!(t.elapsed() < Duration::from_secs(10), "loris never cut");
                    }
                    cuts.push((t.elapsed(), String::from_utf8_lossy(&answer).into_owned()));
                }
                cuts
            })
        });
        // The client that asks for a scrape and never reads it (while the scraper scrapes);
        // then it reads the head of its answer: it was being served all along. (That it is
        // dropped at its write deadline, 2 s + 1 s per MB: the unit tests in metrics.rs.)
        let sink = s.spawn(move || {
            bed.in_scan_netns(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    .unwrap();
                std::thread::sleep(SCRAPING + Duration::from_millis(500));
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = vec![0u8; 256];
                c.read_exact(&mut head).unwrap();
                String::from_utf8_lossy(&head).into_owned()
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        // The scraper, every 250 ms.
        let scraper = s.spawn(move || {
            bed.in_scan_netns(move || {
                let until = Instant::now() + SCRAPING;
                let (mut times, mut bodies) = (vec![], vec![]);
                while Instant::now() < until {
                    let t = Instant::now();
                    let r = TcpStream::connect(addr).and_then(|mut c| scrape_on(&mut c));
                    times.push(t.elapsed());
                    bodies.push(r);
                    std::thread::sleep(Duration::from_millis(250).saturating_sub(t.elapsed()));
                }
                (times, bodies)
            })
        });
        let (times, bodies) = scraper.join().unwrap();
        (times, bodies, loris.join().unwrap(), sink.join().unwrap())
    });

    // Every scrape whole, each within 1 s.
    let mut distinct = std::collections::HashSet::new();
    for b in &bodies {
        let r = b
            .as_ref()
            .unwrap_or_else(|e| panic!("a scrape failed: {e}"));
        distinct.insert(check_scrape(r).to_string());
    }
    let mut sorted = times.clone();
    sorted.sort();
    let over = times
        .iter()
        .filter(|t| **t > Duration::from_secs(1))
        .count();
    let p99 = sorted[(sorted.len() * 99).div_ceil(100) - 1];
    let max = sorted[sorted.len() - 1];
    eprintln!(
        "{} scrapes beside a slow loris and a client that does not read: median {:?}, p99 \
         {p99:?}, max {max:?}, {over} over 1 s; {} distinct bodies (encodings) in {SCRAPING:?}",
        times.len(),
        sorted[sorted.len() / 2],
        distinct.len()
    );
    assert!(times.len() >= 20, "{} scrapes in {SCRAPING:?}", times.len());
    assert_eq!(over, 0, "scrapes over 1 s: {times:?}");
    // The encodings are shared: at most one per 500 ms, whatever the clients.
    assert!(
        distinct.len() as f64 <= SCRAPING.as_secs_f64() * 2.0 + 2.0,
        "{} encodings in {SCRAPING:?}",
        distinct.len()
    );
    // The loris is cut off at 1 s each time, answered 408.
    assert!(cuts.len() >= 4, "{cuts:?}");
    for (cut, answer) in &cuts {
        assert!(
            *cut >= Duration::from_millis(950) && *cut < Duration::from_millis(1500),
            "{cuts:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    eprintln!(
        "the loris was cut off {} times, after {:?} to {:?}",
        cuts.len(),
        cuts.iter().map(|c| c.0).min().unwrap(),
        cuts.iter().map(|c| c.0).max().unwrap()
    );
    // The client that did not read had its answer coming all along.
    assert!(
        sink_head.starts_with("HTTP/1.1 200 OK\r\n") && sink_head.contains("Content-Length: "),
        "{sink_head}"
    );

    sweep.interrupt();
    let s = sweep.wait(Duration::from_secs(10));
    assert!(s.success(), "{s}: {:#?}", lines.seen);
    eprintln!("whole test: {:.1} s", t_test.elapsed().as_secs_f64());
}
