//! `asdic recover FILE`: merges the finished parts a killed run left in `FILE.parts/` into
//! `FILE`, as the run would have at its end (see `asdic_analysis::parts`). `asdic recover
//! DATASET`: checks every partition of a `--dataset` directory instead (its parts are the
//! results: nothing is merged).

use std::process::ExitCode;

use asdic_analysis::meta::keys;
use std::path::{Path, PathBuf};

use asdic_analysis::{
    RunMeta, RunMode, STOPPED, SUCCESS, ScanRow, SweepRow, list_parts, merge, part_names,
};
use asdic_fs::{Dest, Dir};

use crate::Fail;
use crate::args::RecoverArgs;

/// Row groups of the merged file (as the runs write them).
const ROW_GROUP: usize = 65_536;

pub fn run(a: RecoverArgs) -> Result<ExitCode, Fail> {
    if a.info {
        return info(&a.output);
    }
    // FILE.parts/ names its FILE.
    let given = a.output.as_os_str().to_string_lossy();
    let out = match given
        .strip_suffix(".parts")
        .or_else(|| given.strip_suffix(".parts/"))
    {
        Some(f) if a.output.is_dir() => PathBuf::from(f),
        _ => a.output.clone(),
    };
    let out = &out;
    if out.is_dir() {
        return dataset(out);
    }
    let dest = Dest::resolve(out, false).map_err(|e| match e {
        asdic_fs::Error::Exists { .. } => Fail::Usage(format!(
            "{} exists: nothing to recover over (move it away first)",
            out.display()
        )),
        e => Fail::Usage(e.to_string()),
    })?;
    let Some((dir, name)) = dest.sibling("") else {
        return Err(Fail::Usage(format!(
            "{}: a stream, not a results file",
            out.display()
        )));
    };
    let mut parts_name = name.clone();
    parts_name.push(".parts");
    let mut partial_name = name.clone();
    partial_name.push(".partial");
    let fs = |e: asdic_fs::Error| Fail::Usage(e.to_string());
    if dir.has(&parts_name).map_err(fs)? {
        let parts = dir.subdir(&parts_name, false).map_err(fs)?;
        return merge_parts(dest, &parts, &dir, &parts_name);
    }
    if let Some(st) = dir.entry(&partial_name).map_err(fs)? {
        return restore(&dir, &partial_name, &name, st, out);
    }
    Err(Fail::Usage(format!(
        "{}: neither {}.parts/ (a scan's or a sweep's) nor {}.partial (a ping's or a trace's): \
         nothing to recover",
        out.display(),
        out.display(),
        out.display()
    )))
}

/// Merges the finished parts in `parts` (`parts_name` in `dir`) into `dest`, as the run
/// would have at its end, then removes them.
fn merge_parts(
    dest: Dest,
    parts: &Dir,
    dir: &Dir,
    parts_name: &std::ffi::OsStr,
) -> Result<ExitCode, Fail> {
    let shown = parts.path().to_path_buf();
    // A run that still writes them holds their lock: never merged under it.
    let _held = parts
        .try_lock()
        .map_err(|e| Fail::Usage(e.to_string()))?
        .ok_or_else(|| {
            Fail::Usage(format!(
                "{}: a running asdic holds it: wait for it to end",
                shown.display()
            ))
        })?;
    let names = part_names(parts).map_err(|e| Fail::Usage(e.to_string()))?;
    let Some(first) = names.first() else {
        return Err(Fail::Usage(format!(
            "{}: no finished parts (the run was killed before its first --sync-every period)",
            shown.display()
        )));
    };
    let first = parts.join(first);
    let mut meta = RunMeta::read(&first).map_err(|e| Fail::Usage(e.to_string()))?;
    meta.part = None;
    meta.complete = Some(false);
    meta.recovered_parts = Some(names.len() as u64);
    let mode = meta.mode;
    let pairs = meta.to_pairs();
    let out = dest.path().to_path_buf();
    let into = dest
        .whole()
        .map_err(|e| Fail::Usage(format!("{}: {e}", out.display())))?;
    let rows = match mode {
        Some(RunMode::Scan) => merge::<ScanRow>(parts, &names, into, pairs, ROW_GROUP),
        Some(RunMode::Sweep) => merge::<SweepRow>(parts, &names, into, pairs, ROW_GROUP),
        other => {
            let other = other.map_or_else(
                || meta.unparsed(keys::MODE).unwrap_or_default().to_string(),
                |m| m.to_string(),
            );
            return Err(Fail::Usage(format!(
                "{}: parts of an asdic {other:?} run; only scan and sweep write parts",
                first.display()
            )));
        }
    }
    .map_err(|e| Fail::System(anyhow::anyhow!("merging {}: {e}", shown.display())))?;
    // Everything in the directory goes: the parts, and the part that was still open when the
    // run died (it has no footer: lost, as documented).
    if let Ok(rest) = parts.names() {
        for n in rest {
            let _ = parts.remove(&n);
        }
    }
    let _ = dir.remove_dir(parts_name);
    say!(
        "asdic: recovered {rows} rows from {} parts into {}",
        names.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Makes a ping's or trace's last snapshot (`partial` in `dir`) the results `name`: renamed,
/// never over a file.
fn restore(
    dir: &Dir,
    partial: &std::ffi::OsStr,
    name: &std::ffi::OsStr,
    st: asdic_fs::Stat,
    out: &Path,
) -> Result<ExitCode, Fail> {
    let path = dir.join(partial);
    if !asdic_fs::is_regular(&st) {
        return Err(Fail::Usage(format!(
            "{}: not a regular file: asdic wrote no such snapshot",
            path.display()
        )));
    }
    // A Parquet snapshot says when it was taken; a CSV or JSONL one is taken as it is.
    let taken = RunMeta::read(&path).ok().and_then(|m| {
        let rows = asdic_analysis::rows_of(&path).ok();
        m.snapshot_unix_ns.map(|ns| (ns, rows))
    });
    dir.rename(partial, name, false).map_err(|e| {
        Fail::Usage(format!(
            "{}: could not be renamed to {}: {e}",
            path.display(),
            out.display()
        ))
    })?;
    let _ = dir.sync();
    match taken {
        Some((ns, rows)) => {
            let t = asdic_analysis::clock::Utc::from_unix(ns / 1_000_000_000);
            say!(
                "asdic: restored the snapshot taken {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC{} as {}: \
                 the results as of at most one --sync-every before the run stopped",
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second,
                rows.map_or_else(String::new, |r| format!(" ({r} rows)")),
                out.display()
            );
        }
        None => say!(
            "asdic: restored the snapshot {} as {}",
            path.display(),
            out.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// What a dataset partition holds.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// `_SUCCESS`: every part durable, the run complete.
    Complete,
    /// `_STOPPED`: every part durable, the run stopped early (a signal, a time limit).
    Stopped,
    /// Parts and no marker: the run was killed; its finished parts read.
    Killed,
}

/// The leaf partitions (`key=value` directories holding parts or a marker) under `dir`.
fn partitions(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Fail> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Fail::Usage(format!("{}: {e}", dir.display())))?;
    let mut subdirs = vec![];
    let mut leaf = false;
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() && name.contains('=') {
            subdirs.push(p);
        } else if name == SUCCESS || name == STOPPED || name.starts_with("part-") {
            leaf = true;
        }
    }
    if leaf {
        out.push(dir.to_path_buf());
    }
    subdirs.sort();
    for d in subdirs {
        partitions(&d, out)?;
    }
    Ok(())
}

/// Checks every partition of a dataset: complete, stopped early or killed (with its finished
/// parts counted), and removes what a killed run left that is no result (the open part's
/// hidden `.tmp`). Exit 0 when every partition is complete, 1 otherwise.
fn dataset(dir: &Path) -> Result<ExitCode, Fail> {
    let mut found = vec![];
    partitions(dir, &mut found)?;
    if found.is_empty() {
        return Err(Fail::Usage(format!(
            "{}: neither a run's FILE.parts/ nor a dataset (no partition directories with parts \
             or a _SUCCESS marker)",
            dir.display()
        )));
    }
    let mut incomplete = 0;
    for p in &found {
        let parts = list_parts(p).map_err(|e| Fail::Usage(e.to_string()))?;
        let state = if p.join(SUCCESS).exists() {
            State::Complete
        } else if p.join(STOPPED).exists() {
            State::Stopped
        } else {
            State::Killed
        };
        let mut removed = 0;
        if state == State::Killed
            && let Ok(d) = Dir::open(p)
            && let Ok(rest) = d.names()
        {
            for n in rest {
                let name = n.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    removed += u32::from(d.remove(&n).is_ok());
                }
            }
        }
        let shown = p.strip_prefix(dir).unwrap_or(p).display();
        let n = parts.len();
        match state {
            State::Complete => say!("asdic: {shown}: complete, {n} parts"),
            State::Stopped => {
                incomplete += 1;
                say!("asdic: {shown}: stopped early (_STOPPED), {n} durable parts");
            }
            State::Killed => {
                incomplete += 1;
                say!(
                    "asdic: {shown}: killed: {n} finished parts read as they are, no _SUCCESS{}; \
                     asdic scan --resume {} continues it (a job runner's retry with --shard env \
                     does by itself)",
                    if removed > 0 {
                        format!(", {removed} unfinished part removed")
                    } else {
                        String::new()
                    },
                    p.display()
                );
            }
        }
    }
    say!(
        "asdic: {} partitions, {} complete",
        found.len(),
        found.len() - incomplete
    );
    Ok(if incomplete == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `asdic recover --info`: how far each unfinished scan under `path` got (a `-o` file's
/// parts, a stopped file, a dataset partition or a whole dataset), and what a resumption
/// would send. Changes nothing.
fn info(path: &Path) -> Result<ExitCode, Fail> {
    let given = path.as_os_str().to_string_lossy();
    let parts = match given.strip_suffix(".parts") {
        Some(_) => path.to_path_buf(),
        None if path.is_dir() => {
            let mut found = vec![];
            partitions(path, &mut found)?;
            if found.is_empty() {
                return Err(Fail::Usage(format!(
                    "{}: no scan parts or partitions",
                    path.display()
                )));
            }
            for p in &found {
                tell(p, &Dir::open(p).map_err(|e| Fail::Usage(e.to_string()))?)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => asdic_analysis::parts_dir(path),
    };
    if !parts.is_dir() {
        // A stopped scan's file: what it records of itself.
        let m = RunMeta::read(path).map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))?;
        say!(
            "asdic: {}: {} scan file; watermark {}; {}",
            path.display(),
            if m.complete == Some(false) {
                "a stopped"
            } else {
                "a finished"
            },
            m.watermark.as_deref().unwrap_or("none"),
            if m.complete == Some(false) && m.watermark.is_some() {
                format!(
                    "asdic scan --resume {} continues it from there",
                    path.display()
                )
            } else {
                "nothing to resume".to_string()
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    tell(
        &parts,
        &Dir::open(&parts).map_err(|e| Fail::Usage(e.to_string()))?,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// One parts directory or partition for [`info`].
fn tell(shown: &Path, dir: &Dir) -> Result<(), Fail> {
    let names = part_names(dir).map_err(|e| Fail::Usage(e.to_string()))?;
    let state = if dir.has(std::ffi::OsStr::new(SUCCESS)).unwrap_or(false) {
        "complete (_SUCCESS)"
    } else if dir.has(std::ffi::OsStr::new(STOPPED)).unwrap_or(false) {
        "stopped early (_STOPPED)"
    } else {
        "killed (no marker)"
    };
    let running = matches!(dir.try_lock(), Ok(None));
    let e = asdic_analysis::resume::EarlierScan::read(dir, &names)
        .map_err(|e| Fail::Usage(format!("{}: {e}", shown.display())))?;
    let mut answered = 0u64;
    asdic_analysis::resume::for_each_row(dir, &names, |_, what| {
        answered += u64::from(what == asdic_analysis::resume::Earlier::Answered);
    })
    .map_err(|e| Fail::Usage(format!("{}: {e}", shown.display())))?;
    let planned = e.last.targets_planned;
    let w = asdic_analysis::resume::format_frontiers(&e.watermark);
    let f = asdic_analysis::resume::format_frontiers(&e.frontier);
    let first_pass: u64 = e
        .watermark
        .values()
        .filter(|x| x.attempt == 0)
        .map(|x| x.position)
        .sum();
    say!(
        "asdic: {}: {state}{}; {} parts, {} rows, {} targets answered or refused; watermark \
         {w} (pass 0 done to position {first_pass}{}), last frontier {f}{}",
        shown.display(),
        if running {
            ", a running asdic holds it"
        } else {
            ""
        },
        e.parts,
        e.rows,
        answered,
        planned.map_or_else(String::new, |p| format!(" of about {p} targets")),
        e.history
            .as_deref()
            .map_or_else(String::new, |h| format!("; resumed before: {h}")),
    );
    if state != "complete (_SUCCESS)" {
        say!(
            "asdic: a resume starts each family at its watermark: it probes the targets from \
             there on that these parts do not answer, sending again at most those between the \
             watermark and the frontier (and whatever was sent after the last part)"
        );
    }
    Ok(())
}
