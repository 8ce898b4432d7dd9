//! `asdic report` on the test bed: a scan, a sweep, a ping and a trace of the bed make one
//! self-contained HTML page (nothing fetched, every figure inline) plus SVG and PNG files,
//! whose numbers are those of the result files and the bed's ground truth; a killed run's
//! parts make a report that says it is partial.

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
    let map = s.prefixes.as_ref().unwrap();
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
    assert!(html.contains(&e.name), "{}", e.name);

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
    assert!(
        s.targets
            .iter()
            .any(|t| t.target == "198.19.77.3" && t.note.starts_with("not reached"))
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
