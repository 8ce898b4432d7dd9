//! `asdic report` on the test bed: a scan, a sweep, a ping and a trace of the bed make one
//! self-contained HTML page (nothing fetched, every figure inline) plus SVG and PNG files,
//! whose numbers are those of the result files and the bed's ground truth; a killed run's
//! parts make a report that says it is partial.
//!
//! And without a bed, on files made here: a 10-million-row ping file is reported in bounded
//! memory (peak RSS ≤ 100 MiB); files pyarrow wrote with every codec it has are read; a
//! 10 MB name is cut in the page; a full disk (a small tmpfs) ends the report with exit
//! status 4 and leaves nothing of it behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use asdic_report::{Mode, Options, Section};
use asdic_tests::{Bed, read_parquet, require_bed, scratch, stderr_of};
use serde_json::Value;

fn run_ok(bed: &Bed, args: &[&str]) {
    let o = bed.asdic(args);
    // ping exits 1 when some targets did not answer (the bed has dead hosts), as fping does.
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "asdic {args:?}: {}",
        stderr_of(&o)
    );
}

fn nearest_rank(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn section(sections: &[Section], mode: Mode) -> &Section {
    sections
        .iter()
        .find(|s| s.mode == mode)
        .unwrap_or_else(|| panic!("no {} section", mode.name()))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn a_mixed_scan_is_drawn_for_both_families_and_a_trace_in_its_own_words() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("rp6", &[]);
    let scan = scratch("report6-scan.parquet");
    let trace = scratch("report6-trace.parquet");
    // 198.19.76.0/22 holds the rejected /24; 2001:db8:1::4c00/118 its IPv6 twin
    // (2001:db8:1::4d00/120).
    run_ok(
        &bed,
        &[
            "scan",
            "198.19.76.0/22",
            "2001:db8:1::4c00/118",
            "-R",
            "20000",
            "--all-events",
            "--no-default-blocklist",
            "--cooldown",
            "1s",
            "-q",
            "-o",
            scan.to_str().unwrap(),
        ],
    );
    run_ok(
        &bed,
        &[
            "trace",
            "198.19.2.1",
            "198.19.77.3",
            "-q",
            "-o",
            trace.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&bed.asdic(&["trace", "198.19.77.3"]).stdout).into_owned();
    drop(bed);
    let out = scratch("report6-out");
    let o = std::process::Command::new(asdic_tests::asdic_bin())
        .args(["report", "--no-png", "-o", out.to_str().unwrap()])
        .args([&scan, &trace])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Both families' maps, each with its own prefixes in the SVG's text (a row of cells is
    // labelled by its first prefix).
    for (title, file, cell) in [
        (
            "Hit rate per IPv4 /24 prefix",
            "scan-hit-map.svg",
            "198.19.76.0/24",
        ),
        (
            "Hit rate per IPv6 /120 prefix",
            "scan-hit-map-v6.svg",
            "2001:db8:1::4c00/120",
        ),
    ] {
        assert!(html.contains(title), "{title}");
        let svg = files_in(&out.join("figures"))
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(file))
            .unwrap_or_else(|| panic!("no {file}"));
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(svg.contains(cell), "{file} lacks {cell}");
    }
    // The prefix table holds both families, the rejected ones answering nothing.
    for p in [
        "198.19.77.0/24",
        "2001:db8:1::4d00/120",
        "2001:db8:1::4c00/120",
    ] {
        assert!(html.contains(&format!("<td>{p}</td>")), "table lacks {p}");
    }
    // The trace section says what trace says: the rejected target is unreachable (!X), and no
    // path has a loss figure.
    assert!(text.contains("!X"), "{text}");
    assert!(
        html.contains("1 reached, 1 unreachable, 0 not reached"),
        "{html}"
    );
    assert!(html.contains("unreachable at TTL "), "{html}");
    let trace_part = &html[html.find("<h2>asdic trace").expect("a trace section")..];
    let trace_summary = &trace_part[..trace_part.find("</table>").unwrap()];
    assert!(
        trace_summary.contains("1 reached, 1 unreachable"),
        "{trace_summary}"
    );
    assert!(!trace_summary.contains(">loss<"), "{trace_summary}");
}

#[test]
fn a_report_of_bed_runs_is_self_contained_and_holds_the_files_numbers() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("rp1", &[]);
    let scan = scratch("report-scan.parquet");
    let sweep_dir = scratch("report-sweep");
    let ping = scratch("report-ping.parquet");
    let trace = scratch("report-trace.parquet");
    // 198.19.64.0/18 holds the bed's rejected /24 (198.19.77.0/24, ICMP errors from the
    // router) and its dead hosts (index % 97 == 13).
    run_ok(
        &bed,
        &[
            "scan",
            "198.19.64.0/18",
            "--rate",
            "20000",
            "--all-events",
            "--no-default-blocklist",
            "--cooldown",
            "2s",
            "-q",
            "-o",
            scan.to_str().unwrap(),
        ],
    );
    let fleet = scratch("report-fleet.txt");
    let mut lines: Vec<String> = (1..=18).map(|i| format!("198.19.1.{i}:web{i}")).collect();
    lines.push("198.19.77.9:rejected".into());
    lines.push("[2001:db8:1::21]:v6".into());
    std::fs::write(&fleet, lines.join("\n")).unwrap();
    run_ok(
        &bed,
        &[
            "sweep",
            fleet.to_str().unwrap(),
            "--every",
            "200ms",
            "--timeout",
            "500ms",
            "--rounds",
            "25",
            "-q",
            "-o",
            sweep_dir.to_str().unwrap(),
        ],
    );
    run_ok(
        &bed,
        &[
            "ping",
            "198.19.77.0/29",
            "198.19.2.0/27",
            "-c",
            "3",
            "-i",
            "100ms",
            "--rate",
            "1000",
            "-o",
            ping.to_str().unwrap(),
        ],
    );
    run_ok(
        &bed,
        &[
            "trace",
            "198.19.2.1",
            "198.19.77.3",
            "-o",
            trace.to_str().unwrap(),
        ],
    );
    drop(bed);

    // The command: exit 0, one HTML page, figures as SVG and PNG.
    let out = scratch("report-out");
    let o = std::process::Command::new(asdic_tests::asdic_bin())
        .args(["report", "-o", out.to_str().unwrap()])
        .args([&scan, &sweep_dir, &ping, &trace])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let figures = files_in(&out.join("figures"));
    let svgs: Vec<&PathBuf> = figures
        .iter()
        .filter(|p| p.extension().unwrap() == "svg")
        .collect();
    let pngs: Vec<&PathBuf> = figures
        .iter()
        .filter(|p| p.extension().unwrap() == "png")
        .collect();
    assert_eq!(svgs.len(), pngs.len(), "{figures:?}");
    for kind in [
        "scan-rtt-histogram",
        "scan-rtt-cdf",
        "scan-hit-map",
        "scan-icmp-errors",
        "sweep-rtt-histogram",
        "sweep-latency-000",
        "sweep-icmp-errors",
        "ping-rtt-cdf",
        "trace-icmp-errors",
    ] {
        assert!(
            svgs.iter().any(|p| p.to_string_lossy().contains(kind)),
            "no {kind} figure in {figures:?}"
        );
    }
    for p in &pngs {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000,
            "{}",
            p.display()
        );
    }
    for p in &svgs {
        let s = std::fs::read_to_string(p).unwrap();
        assert!(
            s.contains("<svg") && s.trim_end().ends_with("</svg>"),
            "{}",
            p.display()
        );
    }
    // Self-contained: every figure is inline, and nothing refers to another file or host.
    assert_eq!(html.matches("<svg").count(), svgs.len());
    for banned in [
        "http://", "https://", "src=", "url(", "@import", "<link", "<script", "<img",
    ] {
        assert!(!html.contains(banned), "the page contains {banned:?}");
    }
    assert!(
        html.match_indices("href=\"")
            .all(|(i, _)| html[i + 6..].starts_with('#')),
        "a link that is not an anchor of the page"
    );
    for heading in [
        "asdic scan",
        "asdic sweep",
        "asdic ping",
        "asdic trace",
        "RTT p50 / p90 / p99",
    ] {
        assert!(html.contains(heading), "no {heading:?} in the page");
    }

    // The numbers: those of the files (the library the command uses, on the same inputs).
    let again = scratch("report-out-lib");
    let w = asdic_report::write(
        &[scan.clone(), sweep_dir.clone(), ping.clone(), trace.clone()],
        &asdic_fs::Dir::create_all(&again).unwrap(),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(w.sections.len(), 4);

    let (rows, meta) = read_parquet(&scan);
    let s = section(&w.sections, Mode::Scan);
    let outcome = |o: &str| rows.iter().filter(|r| r["outcome"] == o).count() as u64;
    let m = &s.summary;
    assert_eq!(m.targets, Some(16_384));
    assert_eq!(m.probes, Some(16_384));
    assert_eq!(m.replies, outcome("reply"));
    assert_eq!(m.errors, 256, "the rejected /24");
    assert_eq!(m.errors, outcome("error"));
    assert_eq!(m.complete, Some(true));
    assert!(!m.duration_is_lower_bound);
    assert_eq!(Some(m.engine.as_str()), meta.engine.as_deref());
    let mut rtts: Vec<f64> = rows
        .iter()
        .filter_map(|r| r["rtt_us"].as_f64().filter(|_| r["outcome"] == "reply"))
        .collect();
    for (q, got) in [(0.5, m.p50), (0.9, m.p90), (0.99, m.p99)] {
        let want = nearest_rank(&mut rtts, q);
        let got = got.unwrap();
        assert!(
            (got - want).abs() <= want * 0.005 + 1e-9,
            "p{q}: {got} vs {want}"
        );
    }
    let loss = 100.0 * (16_384 - outcome("reply")) as f64 / 16_384.0;
    assert!((m.loss_pct.unwrap() - loss).abs() < 1e-9);
    // The hit map: 64 /24s; the rejected one answered nothing and tops the worst-first table.
    assert_eq!(s.prefixes.len(), 1, "an IPv4 scan: one map");
    let map = &s.prefixes[0];
    assert_eq!((map.bits, map.cells.len(), map.exact), (24, 64, true));
    let rejected = map
        .cells
        .iter()
        .find(|c| c.prefix == "198.19.77.0/24")
        .unwrap();
    assert_eq!((rejected.probed, rejected.hits), (Some(256), 0));
    assert_eq!(s.targets[0].target, "198.19.77.0/24");
    for c in &map.cells {
        let hits = rows
            .iter()
            .filter(|r| {
                r["outcome"] == "reply"
                    && r["target"]
                        .as_str()
                        .unwrap()
                        .starts_with(c.prefix.trim_end_matches("0/24"))
            })
            .count() as u64;
        assert_eq!(c.hits, hits, "{}", c.prefix);
    }
    // Errors by IANA name and responder: the router's 256.
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    let e = &s.errors[0];
    assert_eq!((e.icmp_type, e.count, e.responders), (3, 256, 1));
    let responder = rows.iter().find(|r| r["outcome"] == "error").unwrap()["responder"].clone();
    assert_eq!(Value::from(e.top[0].0.as_str()), responder);
    assert!(html.contains(e.name.as_str()), "{}", e.name);

    // The sweep: 20 targets × 25 rounds; the rejected host is worst with 100 % loss and its
    // errors; every target in the fleet has a row, 12 graphs by default.
    let s = section(&w.sections, Mode::Sweep);
    assert_eq!(s.summary.targets, Some(20));
    assert_eq!(s.summary.probes, Some(500));
    // Its files record their end: 25 rounds 200 ms apart, the last one's 500 ms timeout.
    assert!(!s.summary.duration_is_lower_bound);
    let took = s.summary.end_ns.unwrap() - s.summary.start_ns.unwrap();
    assert!((4_800_000_000..8_000_000_000).contains(&took), "{took} ns");
    assert_eq!(s.targets.len(), 20);
    assert_eq!(s.series.len(), 12);
    let worst = &s.targets[0];
    assert_eq!(
        (worst.target.as_str(), worst.loss_pct),
        ("198.19.77.9", Some(100.0))
    );
    assert_eq!(worst.errors, 25);
    assert!(
        s.series[0]
            .buckets
            .iter()
            .all(|b| b.rtt.is_none() && b.lost == b.sent)
    );
    let mut sweep_rows = vec![];
    for f in files_in(&sweep_dir) {
        sweep_rows.extend(read_parquet(&f).0);
    }
    let by_target: HashMap<&str, (u64, u64)> = s
        .targets
        .iter()
        .map(|t| (t.target.as_str(), (t.probes, t.replies)))
        .collect();
    for (t, (probes, replies)) in &by_target {
        let of = |ev: &str| {
            sweep_rows
                .iter()
                .filter(|r| r["target"] == *t && r["event"] == ev)
                .count() as u64
        };
        assert_eq!(
            *probes,
            of("reply") + of("timeout") + of("error") + of("send_failed"),
            "{t}"
        );
        assert_eq!(*replies, of("reply"), "{t}");
        assert_eq!(*probes, 25, "{t}");
    }
    // Worst first: loss never rises down the table.
    assert!(s.targets.windows(2).all(|w| w[0].loss_pct >= w[1].loss_pct));

    // Ping: one row per target; the rejected ones have their errors by name.
    let s = section(&w.sections, Mode::Ping);
    assert_eq!(s.summary.targets, Some(8 + 32));
    assert!(
        s.errors
            .iter()
            .any(|e| e.icmp_type == 3 && e.count == 8 * 3),
        "{:?}",
        s.errors
    );
    let s = section(&w.sections, Mode::Trace);
    assert_eq!(s.summary.targets, Some(2));
    assert!(
        s.targets
            .iter()
            .any(|t| t.target == "198.19.2.1" && t.note.starts_with("reached"))
    );
    // The router rejects 198.19.77.3 (code 13): unreachable, as trace itself says, not
    // "not reached"; and a path has no loss figure.
    assert!(
        s.targets.iter().any(|t| t.target == "198.19.77.3"
            && t.note.starts_with("unreachable at TTL ")
            && t.note.contains(": !X from 198.18.")),
        "{:?}",
        s.targets
    );
    assert_eq!(s.summary.loss_pct, None);
    assert!(
        s.summary
            .extra
            .iter()
            .any(|(k, v)| k == "destinations" && v == "1 reached, 1 unreachable, 0 not reached"),
        "{:?}",
        s.summary.extra
    );

    // Operator errors: a missing input and a file asdic did not write, named, exit status 2.
    let junk = scratch("report-junk.parquet");
    std::fs::write(&junk, b"PAR1 not really").unwrap();
    for bad in [scratch("report-missing.parquet"), junk] {
        let o = std::process::Command::new(asdic_tests::asdic_bin())
            .args(["report", "-o", scratch("report-bad").to_str().unwrap()])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
        assert!(stderr_of(&o).contains(bad.file_name().unwrap().to_str().unwrap()));
    }
}

#[test]
fn a_report_of_a_killed_scans_parts_says_it_is_partial() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("rp2", &[]);
    let out = scratch("report-killed.parquet");
    let parts = PathBuf::from(format!("{}.parts", out.display()));
    let mut child = bed
        .command(&[
            "scan",
            "198.19.0.0/16",
            "--rate",
            "4000",
            "--no-default-blocklist",
            "--sync-every",
            "300ms",
            "-q",
            "-o",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count_parts = || {
        std::fs::read_dir(&parts)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    while count_parts() < 3 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(count_parts() >= 3, "no parts in {}", parts.display());
    // SAFETY: kill(2) on our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let _ = child.wait();
    drop(bed);

    let rows: u64 = files_in(&parts)
        .iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .map(|p| read_parquet(p).0.len() as u64)
        .sum();
    let w = asdic_report::write(
        std::slice::from_ref(&parts),
        &asdic_fs::Dir::create_all(&scratch("report-killed-out")).unwrap(),
        &Options::default(),
    )
    .unwrap();
    let s = &w.sections[0];
    assert_eq!(s.mode, Mode::Scan);
    assert_eq!(w.rows, rows);
    assert_eq!(
        s.summary.replies + s.summary.errors,
        rows,
        "a scan without --all-events writes hits (replies and errors) only"
    );
    assert_eq!(s.summary.complete, Some(false));
    assert!(s.summary.duration_is_lower_bound);
    assert_eq!(
        s.summary.targets,
        Some(65_536),
        "planned, from the parts' metadata"
    );
    assert!(
        s.notes.iter().any(|n| n.contains("did not end")),
        "{:?}",
        s.notes
    );
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert!(html.contains("no: interrupted, killed or recovered"));
}

/// Writes a ping file (ping's own schema, `asdic.mode` = ping) of `rows` rows, compressed
/// with `codec`, in 65,536-row batches: distinct targets 10.x.y.z, one in 97 dead, one in 61
/// with an ICMP error from one of 256 routers, medians spread over 100 µs–100 ms. With
/// `long`, row 7's (an erroring one's) name, error name and responder are that many
/// characters long. Fast enough for 10 million rows in a few seconds.
fn write_ping_file(path: &Path, rows: usize, codec: parquet::basic::Compression, long: usize) {
    use arrow_array::builder::{Float64Builder, StringBuilder, UInt8Builder, UInt64Builder};
    use arrow_array::{ArrayRef, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use std::fmt::Write as _;
    use std::sync::Arc;

    let meta = [
        ("asdic.mode", "ping"),
        ("asdic.schema_version", "2"),
        ("asdic.engine", "raw"),
        ("asdic.command", "asdic ping (made by tests/report_bed.rs)"),
        ("asdic.complete", "true"),
    ];
    let props = WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_key_value_metadata(Some(
            meta.iter()
                .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
                .collect(),
        ))
        .build();
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, asdic_analysis::schema(), Some(props)).unwrap();
    let long_text = "ü".repeat(long);
    let mut buf = String::new();
    let mut start = 0;
    while start < rows {
        let n = (rows - start).min(1 << 16);
        let mut target = StringBuilder::with_capacity(n, n * 12);
        let mut name = StringBuilder::new();
        let (mut sent, mut received, mut errors) = (
            UInt64Builder::new(),
            UInt64Builder::new(),
            UInt64Builder::new(),
        );
        let (mut loss, mut rtt) = (Float64Builder::new(), Float64Builder::new());
        let (mut ty, mut code, mut ttl) = (
            UInt8Builder::new(),
            UInt8Builder::new(),
            UInt8Builder::new(),
        );
        let (mut err_name, mut responder) = (StringBuilder::new(), StringBuilder::new());
        let (mut timeouts, mut zero) = (UInt64Builder::new(), UInt64Builder::new());
        for i in start..start + n {
            buf.clear();
            let _ = write!(buf, "10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            target.append_value(&buf);
            let dead = i % 97 == 13;
            let error = i % 61 == 7;
            if i == 7 && long > 0 {
                name.append_value(&long_text);
            } else {
                name.append_null();
            }
            sent.append_value(3);
            received.append_value(if dead || error { 0 } else { 3 });
            loss.append_value(if dead || error { 100.0 } else { 0.0 });
            timeouts.append_value(if dead { 3 } else { 0 });
            zero.append_value(0);
            if dead || error {
                rtt.append_null();
                ttl.append_null();
            } else {
                // 100 µs to ~100 ms, log-spread.
                rtt.append_value(100.0 * 1.001f64.powi((i * 7919 % 6911) as i32));
                ttl.append_value(64);
            }
            if error {
                errors.append_value(3);
                ty.append_value(3);
                code.append_value(1);
                if i == 7 && long > 0 {
                    err_name.append_value(&long_text);
                    responder.append_value(&long_text);
                } else {
                    err_name.append_value("Destination Unreachable / Host Unreachable");
                    buf.clear();
                    let _ = write!(buf, "192.0.2.{}", i % 256);
                    responder.append_value(&buf);
                }
            } else {
                errors.append_value(0);
                ty.append_null();
                code.append_null();
                err_name.append_null();
                responder.append_null();
            }
        }
        let rtt: ArrayRef = Arc::new(rtt.finish());
        let zero: ArrayRef = Arc::new(zero.finish());
        let cols: Vec<ArrayRef> = vec![
            Arc::new(target.finish()),
            Arc::new(name.finish()),
            Arc::new(sent.finish()),
            Arc::new(received.finish()),
            Arc::new(loss.finish()),
            // last, min, avg, max, stddev, p50, p90, p99: one RTT per target is enough here.
            rtt.clone(),
            rtt.clone(),
            rtt.clone(),
            rtt.clone(),
            rtt.clone(),
            rtt.clone(),
            rtt.clone(),
            rtt,
            Arc::new(ttl.finish()),
            Arc::new(errors.finish()),
            Arc::new(ty.finish()),
            Arc::new(code.finish()),
            Arc::new(err_name.finish()),
            Arc::new(responder.finish()),
            Arc::new(timeouts.finish()),
            // duplicates, late, send_failed; no send_errno.
            zero.clone(),
            zero.clone(),
            zero,
            Arc::new(arrow_array::Int32Array::new_null(n)),
        ];
        let b = RecordBatch::try_new(asdic_analysis::schema(), cols).unwrap();
        w.write(&b).unwrap();
        start += n;
    }
    w.close().unwrap();
}

/// `asdic report -o OUT FILES…`: its exit code and stderr.
fn report(out: &Path, files: &[&Path]) -> (Option<i32>, String) {
    let o = std::process::Command::new(asdic_tests::asdic_bin())
        .args(["report", "--force", "-o", out.to_str().unwrap()])
        .args(files)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (o.status.code(), stderr_of(&o))
}

/// Peak RSS (KiB) of a command (see [`asdic_tests::measured`]), its exit code and stderr.
fn peak_rss_of(cmd: &[&std::ffi::OsStr]) -> (Option<i32>, u64, String) {
    let err_path = scratch("peak-rss.stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let (code, rss) = asdic_tests::measured(cmd, Stdio::from(err)).wait();
    (code, rss, std::fs::read_to_string(&err_path).unwrap())
}

/// Whether python3 with pyarrow is here; required (a panic) under `ASDIC_REQUIRE_BED=1`,
/// where scripts/deps.sh installed it.
fn pyarrow_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !std::env::var("ASDIC_REQUIRE_BED").is_ok_and(|v| v == "1"),
            "python3 with pyarrow is required (ASDIC_REQUIRE_BED=1): run scripts/deps.sh"
        );
        eprintln!("skipped: no python3 with pyarrow");
    }
    ok
}

#[test]
fn a_report_of_ten_million_ping_rows_stays_within_100_mib() {
    let file = scratch("report-10m-ping.parquet");
    let t0 = Instant::now();
    write_ping_file(
        &file,
        10_000_000,
        parquet::basic::Compression::UNCOMPRESSED,
        0,
    );
    let made = t0.elapsed();
    let out = scratch("report-10m-out");
    let t1 = Instant::now();
    let bin = asdic_tests::asdic_bin();
    let (code, rss_kib, stderr) = peak_rss_of(&[
        bin.as_os_str(),
        "report".as_ref(),
        "--force".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        file.as_os_str(),
    ]);
    let took = t1.elapsed();
    let size = std::fs::metadata(&file).unwrap().len();
    std::fs::remove_file(&file).unwrap();
    eprintln!(
        "10,000,000 ping rows ({} MB): made in {:.1} s, reported in {:.1} s, peak RSS {} KiB",
        size / 1_000_000,
        made.as_secs_f64(),
        took.as_secs_f64(),
        rss_kib
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("report of 10000000 rows"), "{stderr}");
    assert!(
        rss_kib <= 100 * 1024,
        "peak RSS {rss_kib} KiB for 10 million ping rows: more than 100 MiB"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // The worst 50 targets (the default --rows): every one fully lost, the erroring ones
    // (3 errors each) before the dead ones.
    assert!(
        html.contains("Targets worst first (50 of 10,000,000)"),
        "no table"
    );
    assert!(html.contains("Host Unreachable"));
    assert!(html.contains("Binned: the RTT percentiles"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn files_pyarrow_wrote_with_each_codec_are_read() {
    if !pyarrow_available() {
        return;
    }
    // A ping file of this suite's own making, rewritten by pyarrow with each codec, its
    // metadata kept (as pyarrow and Spark users do when they filter or compact results).
    let src = scratch("report-codec-src.parquet");
    write_ping_file(&src, 5_000, parquet::basic::Compression::UNCOMPRESSED, 0);
    let dir = scratch("report-codecs");
    std::fs::create_dir_all(&dir).unwrap();
    let script = r#"
import sys, pyarrow.parquet as pq
src, out = sys.argv[1], sys.argv[2]
t = pq.read_table(src)
kv = {k: v for k, v in pq.read_metadata(src).metadata.items() if k != b"ARROW:schema"}
t = t.replace_schema_metadata(kv)
for c in ["snappy", "gzip", "brotli", "lz4", "zstd", "none"]:
    pq.write_table(t, f"{out}/{c}.parquet", compression=c)
    codecs = {pq.ParquetFile(f"{out}/{c}.parquet").metadata.row_group(0).column(0).compression}
    print(c, *codecs)
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script, src.to_str().unwrap(), dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    for (c, written) in [
        ("snappy", "SNAPPY"),
        ("gzip", "GZIP"),
        ("brotli", "BROTLI"),
        ("lz4", "LZ4"),
        ("zstd", "ZSTD"),
        ("none", "UNCOMPRESSED"),
    ] {
        assert!(
            said.lines()
                .any(|l| l.starts_with(&format!("{c} {written}"))),
            "pyarrow did not write {c} as {written}: {said}"
        );
        let file = dir.join(format!("{c}.parquet"));
        let out = scratch(&format!("report-codec-{c}"));
        let (code, stderr) = report(&out, &[&file]);
        assert_eq!(code, Some(0), "{c}: {stderr}");
        assert!(
            stderr.contains("report of 5000 rows (ping)"),
            "{c}: {stderr}"
        );
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("of 5,000)"), "{c}");
    }
}

#[test]
fn a_ten_megabyte_name_is_cut_in_the_page() {
    let file = scratch("report-long.parquet");
    let chars = 10_000_000;
    write_ping_file(&file, 100, parquet::basic::Compression::SNAPPY, chars);
    let out = scratch("report-long-out");
    let (code, stderr) = report(&out, &[&file]);
    assert_eq!(code, Some(0), "{stderr}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    eprintln!("a {chars}-character name: a page of {} bytes", html.len());
    assert!(html.len() < 200_000, "the page is {} bytes", html.len());
    let cut = "ü".repeat(200) + "…";
    // The name and the error name of the row, cut on a character boundary, their length in
    // the title; the responder is held shorter (64 characters).
    assert!(
        html.matches(&format!(
            "title=\"cut to 200 of its 10,000,000 characters: the full value is in the \
             Parquet file\">{cut}</span>"
        ))
        .count()
            >= 3,
        "no cut name, note and error name in the page"
    );
    assert!(html.contains(&format!("{}…", "ü".repeat(64))));
    // The full value stays in the file.
    let (rows, _) = read_parquet(&file);
    assert_eq!(rows[7]["name"].as_str().unwrap().chars().count(), chars);
}

/// A tmpfs mounted on a scratch directory, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount: {}", stderr_of(&o));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Every path under `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_full_disk_ends_the_report_with_status_4_and_nothing_of_it_left() {
    // Mounting needs root, as the bed does.
    let Some(()) = require_bed() else { return };
    let file = scratch("report-full-in.parquet");
    write_ping_file(
        &file,
        20_000,
        parquet::basic::Compression::ZSTD(Default::default()),
        0,
    );
    let mnt = Tmpfs::mount(&scratch("report-full-fs"), "256k");
    // The figures and the page take ~150 KiB with PNGs: fill the 256 KiB but for 0, 16, 64
    // and 128 KiB, so that writing fails at the first file, or after some were written.
    for free_kib in [0usize, 16, 64, 128] {
        let filler = mnt.0.join("filler");
        let _ = std::fs::remove_file(&filler);
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x55u8; 4096];
        let mut written = 0;
        while std::io::Write::write_all(&mut f, &block).is_ok() {
            written += block.len();
        }
        drop(f);
        let keep = written.saturating_sub(free_kib * 1024);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap()
            .set_len(keep as u64)
            .unwrap();
        let out = mnt.0.join(format!("out-{free_kib}"));
        let (code, stderr) = report(&out, &[&file]);
        assert_eq!(code, Some(4), "{free_kib} KiB free: {stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "{free_kib} KiB free: {stderr}"
        );
        // Nothing of the report: no figure (whole or truncated), no page, no temporary; at
        // most the empty directory -o named.
        let left: Vec<String> = tree(&mnt.0)
            .into_iter()
            .filter(|p| p != "filler" && (p.contains('/') || !p.starts_with("out-")))
            .collect();
        assert!(left.is_empty(), "{free_kib} KiB free: left behind {left:?}");
    }
    drop(mnt);
    // The same report where there is room: written.
    let out = scratch("report-full-roomy");
    let (code, stderr) = report(&out, &[&file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(out.join("report.html").exists());
}
