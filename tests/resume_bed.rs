//! Scans that pick up where they were killed (`asdic scan --resume`), on the bed's /16: a
//! scan SIGKILLed at about 10 %, 50 %, 90 % and ~100 % (during its cooldown), each resumed
//! at another rate, holds what an uninterrupted scan with the same seed holds — the live
//! hosts, the rejected /24 with its code and router, every target exactly once — and sends
//! again no more than the rate, the sync interval and the cooldown allow (counted by the
//! router, and as the scan records it). Retries killed in the first pass, a resume of a
//! resume, changed scans refused, a lock against a second run, and a dataset shard retried
//! by a job runner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use asdic_analysis::resume::parse_frontiers;
use asdic_tests::{Bed, read_parquet, require_bed, run_meta, scratch_dir, stderr_of};
use serde_json::Value;

const SEED: &str = "4242";
/// The killed runs' rate: the /16 takes 6.6 s.
const RATE: u64 = 10_000;
const SYNC: Duration = Duration::from_millis(200);
const COOLDOWN: Duration = Duration::from_secs(2);
/// The watermark's margin past the cooldown (scan.rs `WATERMARK_MARGIN`).
const MARGIN: Duration = Duration::from_millis(500);

/// A scan of the bed's /16 to `out` (add --resume, or change the rate).
fn args(out: &str, rate: u64, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "scan",
        "198.19.0.0/16",
        "--no-default-blocklist",
        "--seed",
        SEED,
        "--cooldown",
        "2",
        "--sync-every",
        "200ms",
        "-q",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    v.extend(["-R".into(), rate.to_string()]);
    if !out.is_empty() {
        v.extend(["-o".into(), out.into()]);
    }
    v.extend(extra.iter().map(ToString::to_string));
    v
}

fn start(bed: &Bed, args: &[String]) -> Child {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    bed.command(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("asdic scan")
}

fn run(bed: &Bed, args: &[String]) -> (Option<i32>, String) {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = bed.asdic(&a);
    (o.status.code(), stderr_of(&o))
}

/// The finished parts in `dir`, in order.
fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy();
                    n.starts_with("part-") && n.ends_with(".parquet")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The highest (pass, position) the parts in `dir` record as sent.
fn frontier(dir: &Path) -> (u8, u64) {
    parts(dir)
        .iter()
        .filter_map(|p| run_meta(p).frontier)
        .filter_map(|f| parse_frontiers(&f).ok()?.get("V4").copied())
        .map(|f| (f.attempt, f.position))
        .max()
        .unwrap_or_default()
}

/// Kills `child` (SIGKILL) once its parts in `dir` record a frontier at or past `at`.
fn kill_at(child: &mut Child, dir: &Path, at: (u8, u64)) {
    let t = Instant::now();
    while frontier(dir) < at {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the scan never reached {at:?}: {:?}",
            frontier(dir)
        );
        assert!(child.try_wait().unwrap().is_none(), "the scan ended first");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let _ = child.wait();
}

/// What each target drew: (outcome, ICMP code, responder), from the rows of `files`; every
/// target at most once.
fn hits(files: &[PathBuf]) -> BTreeMap<String, (String, Value, Value)> {
    let mut out = BTreeMap::new();
    for f in files {
        for r in read_parquet(f).0 {
            let t = r["target"].as_str().unwrap().to_string();
            let v = (
                r["outcome"].as_str().unwrap().to_string(),
                r["icmp_code"].clone(),
                r["responder"].clone(),
            );
            assert!(
                out.insert(t.clone(), v).is_none(),
                "{t} twice in {}",
                f.display()
            );
        }
    }
    out
}

/// The probes the earlier runs were sent again, as the resumed file records them.
fn recorded_resent(file: &Path) -> Vec<u64> {
    let m = run_meta(file);
    let h = m.resumed.expect("asdic.resumed");
    h.split(';')
        .map(|e| {
            let n = e.split(" (").nth(1).unwrap().split(' ').next().unwrap();
            n.parse().unwrap()
        })
        .collect()
}

#[test]
fn a_scan_killed_anywhere_and_resumed_holds_what_an_uninterrupted_one_holds() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("rs1", &[]);
    let dir = scratch_dir("resume-kills");
    let reference = dir.join("whole.parquet");
    let (code, err) = run(&bed, &args(reference.to_str().unwrap(), RATE, &[]));
    assert_eq!(code, Some(0), "{err}");
    let want = hits(std::slice::from_ref(&reference));
    // The bed's truth: 64,606 live hosts and the rejected /24, each with its code and router.
    let live = want.values().filter(|v| v.0 == "reply").count();
    let rejected: Vec<_> = want.values().filter(|v| v.0 == "error").collect();
    assert_eq!((live, rejected.len()), (64_606, 256));
    assert!(
        rejected
            .iter()
            .all(|v| v.1 == 13 && v.2.as_str() == Some("198.18.0.2"))
    );

    let n = 65_536u64;
    for (name, at, rate) in [
        ("k10", (0, n / 10), 15_000),
        ("k50", (0, n / 2), 5_000),
        ("k90", (0, n * 9 / 10), 20_000),
        // The whole pass sent: killed during the cooldown.
        ("k100", (0, n), 8_000),
    ] {
        let out = dir.join(format!("{name}.parquet"));
        let o = out.to_str().unwrap();
        let parts_dir = dir.join(format!("{name}.parquet.parts"));
        bed.count_forwarded(name, "198.19.0.0/16");
        let mut child = start(&bed, &args(o, RATE, &[]));
        kill_at(&mut child, &parts_dir, at);
        assert!(!out.exists() && !parts(&parts_dir).is_empty(), "{name}");
        // `recover --info` tells how far it got, changing nothing.
        let info = bed.asdic(&["recover", "--info", o]);
        let text = stderr_of(&info);
        assert!(
            info.status.success() && text.contains("killed (no marker)"),
            "{text}"
        );
        assert!(text.contains("watermark V4=0:"), "{text}");
        let before = parts(&parts_dir).len();
        // Resumed at another rate (its seed from the parts).
        let mut resume = args("", rate, &["--resume", o]);
        resume.retain(|a| a != SEED && a != "--seed");
        let (code, err) = run(&bed, &resume);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert!(err.contains("resuming the scan from V4=0:"), "{err}");
        let got = hits(std::slice::from_ref(&out));
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(
            got == want,
            "{name}: the union differs from the uninterrupted scan"
        );
        let m = run_meta(&out);
        assert_eq!(m.complete, Some(true));
        assert!(m.recovered_parts.is_none());
        // Probes sent twice, as the router counted them, and as the file records them.
        let twice = bed.forwarded(name) - n;
        let bound = RATE as f64 * (SYNC + COOLDOWN + MARGIN).as_secs_f64();
        let recorded = recorded_resent(&out);
        eprintln!(
            "{name}: {before} parts before the kill; sent twice {twice} (router), recorded \
             {recorded:?}, bound {bound:.0}"
        );
        assert_eq!(recorded.len(), 1);
        assert!(
            recorded[0] <= twice,
            "{name}: recorded {recorded:?} > {twice}"
        );
        assert!((twice as f64) <= bound, "{name}: {twice} sent twice");
    }
}

#[test]
fn retries_a_resume_of_a_resume_refusals_the_lock_and_a_job_runners_retry() {
    let Some(()) = require_bed() else { return };
    let bed = Bed::up("rs2", &[]);
    let dir = scratch_dir("resume-more");
    let n = 65_536u64;

    // --retries 1, uninterrupted, and killed in its first pass then resumed twice (killed
    // again in the resumed run's second pass).
    let retry = ["--retries", "1"];
    let whole = dir.join("r-whole.parquet");
    let (code, err) = run(&bed, &args(whole.to_str().unwrap(), RATE, &retry));
    assert_eq!(code, Some(0), "{err}");
    let want = hits(&[whole]);
    let out = dir.join("r.parquet");
    let o = out.to_str().unwrap();
    let parts_dir = dir.join("r.parquet.parts");
    let mut child = start(&bed, &args(o, RATE, &retry));
    kill_at(&mut child, &parts_dir, (0, n / 3));
    let mut again = start(
        &bed,
        &args("", 12_000, &[&retry[..], &["--resume", o]].concat()),
    );
    kill_at(&mut again, &parts_dir, (1, 0));
    let (code, err) = run(
        &bed,
        &args("", 20_000, &[&retry[..], &["--resume", o]].concat()),
    );
    assert_eq!(code, Some(0), "{err}");
    let got = hits(std::slice::from_ref(&out));
    assert!(got == want, "retries: the union differs");
    assert_eq!(recorded_resent(&out).len(), 2, "both resumptions recorded");

    // A changed scan is refused before anything is sent: another seed, another blocklist
    // file's content (the same name).
    let block = dir.join("block.txt");
    std::fs::write(&block, "198.19.200.0/24\n").unwrap();
    let b = block.to_str().unwrap();
    let out = dir.join("c.parquet");
    let o = out.to_str().unwrap();
    let parts_dir = dir.join("c.parquet.parts");
    let mut child = start(&bed, &args(o, RATE, &["-b", b]));
    kill_at(&mut child, &parts_dir, (0, n / 4));
    let mut other_seed = args("", RATE, &["-b", b, "--resume", o]);
    let i = other_seed.iter().position(|a| a == SEED).unwrap();
    other_seed[i] = "4243".into();
    std::fs::write(&block, "198.19.201.0/24\n").unwrap();
    for (what, a) in [
        ("seed", other_seed),
        ("blocklist", args("", RATE, &["-b", b, "--resume", o])),
    ] {
        bed.count_forwarded(&format!("refused{what}"), "198.19.0.0/16");
        let (code, err) = run(&bed, &a);
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(err.contains("scanned something else"), "{what}: {err}");
        assert_eq!(bed.forwarded(&format!("refused{what}")), 0, "{what}: sent");
    }

    // The lock: a resume while the scan still runs is refused; so is one while an earlier
    // resume runs.
    std::fs::write(&block, "198.19.200.0/24\n").unwrap();
    let running = start(&bed, &args("", 5_000, &["-b", b, "--resume", o]));
    std::thread::sleep(Duration::from_millis(1500));
    let (code, err) = run(&bed, &args("", RATE, &["-b", b, "--resume", o]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("another asdic holds it"), "{err}");
    let done = running.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    // --max-targets counts over the whole scan: killed half-way and resumed, the scan
    // probes the uninterrupted one's 30,000 targets.
    let limit = ["--max-targets", "30000"];
    let whole = dir.join("m-whole.parquet");
    let (code, err) = run(&bed, &args(whole.to_str().unwrap(), RATE, &limit));
    assert_eq!(code, Some(0), "{err}");
    let want = hits(&[whole]);
    let out = dir.join("m.parquet");
    let o = out.to_str().unwrap();
    let mut child = start(&bed, &args(o, RATE, &limit));
    kill_at(&mut child, &dir.join("m.parquet.parts"), (0, 15_000));
    let (code, err) = run(
        &bed,
        &args("", 20_000, &[&limit[..], &["--resume", o]].concat()),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        hits(std::slice::from_ref(&out)) == want,
        "--max-targets: the union differs"
    );

    // Stopped by --max-runtime: a file marked incomplete, with its watermark; resumed, it
    // becomes the first part of the run that completes it.
    let out = dir.join("t.parquet");
    let o = out.to_str().unwrap();
    let (code, err) = run(&bed, &args(o, RATE, &["--max-runtime", "2"]));
    assert_eq!(code, Some(0), "{err}");
    let m = run_meta(&out);
    assert_eq!(m.complete, Some(false));
    assert!(m.watermark.is_some(), "{m:?}");
    let info = stderr_of(&bed.asdic(&["recover", "--info", o]));
    assert!(info.contains("a stopped scan file"), "{info}");
    let stopped = hits(std::slice::from_ref(&out)).len();
    // Refused (another seed): the file stays as it was, nothing moved.
    let mut other = args("", 20_000, &["--resume", o]);
    let i = other.iter().position(|a| a == SEED).unwrap();
    other[i] = "4243".into();
    let (code, err) = run(&bed, &other);
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_file() && !dir.join("t.parquet.parts").exists());
    let (code, err) = run(&bed, &args("", 20_000, &["--resume", o]));
    assert_eq!(code, Some(0), "{err}");
    let got = hits(std::slice::from_ref(&out));
    assert!(
        stopped < got.len() && got.len() == 64_862,
        "{stopped} then {}",
        got.len()
    );
    assert_eq!(run_meta(&out).complete, Some(true));

    // A dataset shard as a job runner drives it: the same command, run again after a kill,
    // resumes; run once more after it finished, it exits 0 at once.
    let data = dir.join("data");
    let d = data.to_str().unwrap();
    let job = |bed: &Bed| {
        let mut c = bed.command(
            &args(
                "",
                RATE,
                &["--shards", "2", "--shard", "env", "--dataset", d],
            )
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        );
        c.env("JOB_COMPLETION_INDEX", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let p = data
        .join("schema_version=2")
        .join(format!("run=seed-{:016x}", 4242))
        .join("shard=1");
    let mut first = job(&bed).spawn().unwrap();
    // A replacement started while the first still runs (a pod being replaced, a requeue):
    // refused, nothing sent twice.
    std::thread::sleep(Duration::from_millis(800));
    let beside = job(&bed).output().unwrap();
    assert_eq!(beside.status.code(), Some(2), "{}", stderr_of(&beside));
    assert!(stderr_of(&beside).contains("another asdic holds it"));
    kill_at(&mut first, &p, (0, n / 4));
    assert!(!p.join("_SUCCESS").exists());
    let retried = job(&bed).output().unwrap();
    let err = stderr_of(&retried);
    assert!(retried.status.success(), "{err}");
    assert!(err.contains("resuming the scan"), "{err}");
    assert!(p.join("_SUCCESS").is_file());
    let once_more = job(&bed).output().unwrap();
    assert!(once_more.status.success());
    assert!(stderr_of(&once_more).contains("complete (_SUCCESS): nothing to do"));
    // Its rows: each target of the shard once; with the other shard, the whole truth.
    let shard1 = hits(&parts(&p));
    let mut other = job(&bed);
    other.env("JOB_COMPLETION_INDEX", "0");
    assert!(other.output().unwrap().status.success());
    let shard0 = hits(&parts(&p.with_file_name("shard=0")));
    assert!(shard0.keys().all(|k| !shard1.contains_key(k)));
    let all: BTreeMap<_, _> = shard0.into_iter().chain(shard1).collect();
    assert_eq!(all.values().filter(|v| v.0 == "reply").count(), 64_606);
    assert_eq!(all.values().filter(|v| v.0 == "error").count(), 256);
}
