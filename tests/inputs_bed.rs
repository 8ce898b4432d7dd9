//! Bounded memory on any input, on the test bed, as root: an endless line (`/dev/zero`, a
//! FIFO that never stops writing) ends with one line and exit 2 under a 64 MiB address-space
//! limit; an endless list of valid lines stops at the list's cap; a 10-million-line list and
//! a 2^24-address IPv6 prefix stay within the peak RSS the README states.
//!
//! Every address probed is in the bed's answered 2001:db8:1::/64 or 198.19.0.0/16; nothing
//! is written under /dev (`/dev/zero` is only read).

use std::ffi::OsStr;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use asdic_tests::{Bed, Measured, measured, require_bed, scratch};

/// The README's bounds (section "Memory").
const LIST_10M_BOUND_KIB: u64 = 768 << 10;
const PREFIX_2_24_BOUND_KIB: u64 = 768 << 10;
const SCAN_LIST_10M_BOUND_KIB: u64 = 256 << 10;

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// `asdic ARGS` in the bed's scanner namespace under `prlimit --as` of 64 MiB; stdin from
/// `stdin` when given.
fn limited(bed: &Bed, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &format!("asdic-{}-scan", bed.id())])
        .args(["prlimit", &format!("--as={}", 64 << 20), "--"])
        .arg(asdic_tests::asdic_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `c` to its end (at most 60 s), returning its exit code and stderr.
fn run(mut c: Command) -> (Option<i32>, String) {
    let child = c.spawn().expect("spawn");
    let t0 = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A FIFO whose writer writes `chunk` forever (until the reader goes, or 60 s).
fn endless_fifo(path: &Path, chunk: &'static [u8]) -> std::thread::JoinHandle<u64> {
    let _ = std::fs::remove_file(path);
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success());
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // Opening blocks until asdic opens the other end.
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
            return 0;
        };
        let (t0, mut written) = (Instant::now(), 0u64);
        while t0.elapsed() < Duration::from_secs(60) {
            match f.write_all(chunk) {
                Ok(()) => written += chunk.len() as u64,
                Err(_) => break,
            }
        }
        written
    })
}

#[test]
fn endless_input_ends_with_one_line_and_exit_2_under_64_mib() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("in1", &[]);
    let dir = scratch("in1");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("targets.fifo");
    static ZEROS: [u8; 65536] = [0; 65536];
    let line_cap = "line 1: longer than 4096 bytes, the most one line of targets may hold";
    let sweep_cap = "line 1: longer than 4096 bytes, the most one line of targets may hold \
                     (is this a targets file?)";
    for (what, args, want) in [
        (
            "ping -f /dev/zero",
            vec!["ping", "-R", "1000", "-f", "/dev/zero"],
            line_cap,
        ),
        (
            "scan -f /dev/zero",
            vec!["scan", "-R", "1000", "-f", "/dev/zero", "-o", "-"],
            line_cap,
        ),
        ("sweep /dev/zero", vec!["sweep", "/dev/zero"], sweep_cap),
        (
            "ping -f FIFO",
            vec!["ping", "-R", "1000", "-f", p(&fifo)],
            line_cap,
        ),
        (
            "scan -f FIFO",
            vec!["scan", "-R", "1000", "-f", p(&fifo), "-o", "-"],
            line_cap,
        ),
        ("sweep FIFO", vec!["sweep", p(&fifo)], sweep_cap),
    ] {
        let writer = what.contains("FIFO").then(|| endless_fifo(&fifo, &ZEROS));
        let (code, err) = run(limited(&bed, &args));
        if let Some(w) = writer {
            let _ = w.join();
        }
        assert_eq!(code, Some(2), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("memory"),
            "{what}: {err}"
        );
    }
    // Valid lines that never end: refused at ping's 2^24 targets, as they are read.
    let writer = endless_fifo(&fifo, b"198.19.0.1\n198.19.0.2\n198.19.0.3\n198.19.0.4\n");
    let (code, err) = run(limited(&bed, &["ping", "-R", "1000", "-f", p(&fifo)]));
    let written = writer.join().unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "line 16777217: 198.19.0.1/32 brings the targets to 16777217, more than the 16777216"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        written < 1 << 30,
        "stopped reading early: {written} bytes written"
    );
    assert_eq!(bed.counter("sent4"), 0, "nothing was sent");
}

/// `asdic ARGS` in the bed's scanner namespace, its peak RSS measured.
fn in_bed(bed: &Bed, args: &[&str], stderr: Stdio) -> Measured {
    let ns = format!("asdic-{}-scan", bed.id());
    let bin = asdic_tests::asdic_bin();
    let mut argv: Vec<&OsStr> = vec![
        OsStr::new("/usr/bin/env"),
        OsStr::new("ip"),
        OsStr::new("netns"),
        OsStr::new("exec"),
        OsStr::new(&ns),
    ];
    argv.push(bin.as_os_str());
    argv.extend(args.iter().map(OsStr::new));
    measured(&argv, stderr)
}

/// Writes `n` distinct IPv6 addresses of the bed's answered /64, every third one, a line
/// each (no two consecutive: the list stays a list of singles).
fn write_list(path: &Path, n: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for i in 0..n {
        let x = 3 * i;
        writeln!(w, "2001:db8:1::{:x}:{:x}", x >> 16, x & 0xffff).unwrap();
    }
    w.flush().unwrap();
}

/// Runs a ping of `args` until it has sent for about 2 s, stops it with SIGINT, and
/// returns its peak RSS (KiB) and stderr; the results file must hold `rows` rows.
fn ping_peak(bed: &Bed, args: &[&str], out: &Path, rows: u64) -> (u64, String) {
    let err_path = out.with_extension("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let child = in_bed(bed, args, Stdio::from(err));
    let t0 = Instant::now();
    // The start line comes once the list is read and the engine open.
    let mut started = false;
    while !started && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        let text = std::fs::read_to_string(&err_path).unwrap_or_default();
        started = text.contains(" probes/s, timeout");
    }
    let read_in = t0.elapsed();
    assert!(started, "no start line in 60 s");
    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-INT", &child.pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (code, peak) = child.wait();
    let text = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(code, Some(130), "{text}");
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::reader::SerializedFileReader::new(std::fs::File::open(out).unwrap())
            .unwrap(),
    )
    .file_metadata()
    .num_rows();
    assert_eq!(meta as u64, rows, "one row per target");
    eprintln!(
        "{}: started after {read_in:?}, peak RSS {} MiB",
        args[1],
        peak >> 10
    );
    (peak, text)
}

#[test]
fn a_10_million_line_list_and_a_2_24_prefix_stay_within_the_stated_rss() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("in2", &[]);
    let list = scratch("in2-10m.txt");
    write_list(&list, 10_000_000);

    // scan --dry-run of the list: the compact set, no probe.
    let dry = in_bed(
        &bed,
        &[
            "scan",
            "-R",
            "1000",
            "-f",
            p(&list),
            "--dry-run",
            "-q",
            "--no-default-blocklist",
        ],
        Stdio::null(),
    );
    let (code, peak) = dry.wait();
    assert_eq!(code, Some(0));
    eprintln!("scan --dry-run of 10 M lines: peak RSS {} MiB", peak >> 10);
    assert!(peak <= SCAN_LIST_10M_BOUND_KIB, "scan dry run: {peak} KiB");

    let out = scratch("in2-list.parquet");
    let (peak, err) = ping_peak(
        &bed,
        &["ping", "-f", p(&list), "-R", "50000", "-q", "-o", p(&out)],
        &out,
        10_000_000,
    );
    assert!(
        err.contains("10000000 targets (0 IPv4, 10000000 IPv6)"),
        "{err}"
    );
    assert!(peak <= LIST_10M_BOUND_KIB, "10 M lines: {peak} KiB");
    std::fs::remove_file(&list).unwrap();
    std::fs::remove_file(&out).unwrap();

    let out = scratch("in2-prefix.parquet");
    let (peak, err) = ping_peak(
        &bed,
        &[
            "ping",
            "2001:db8:1::/104",
            "-R",
            "50000",
            "-q",
            "-o",
            p(&out),
        ],
        &out,
        1 << 24,
    );
    assert!(
        err.contains("16777216 targets (0 IPv4, 16777216 IPv6)"),
        "{err}"
    );
    assert!(peak <= PREFIX_2_24_BOUND_KIB, "2^24 prefix: {peak} KiB");
    std::fs::remove_file(&out).unwrap();
}
