//! `asdic recover FILE`: merges the finished parts a killed run left in `FILE.parts/` into
//! `FILE`, as the run would have at its end (see `asdic_analysis::parts`). `asdic recover
//! DATASET`: checks every partition of a `--dataset` directory instead (its parts are the
//! results: nothing is merged).

use std::process::ExitCode;

use asdic_analysis::meta::keys;
use std::path::{Path, PathBuf};

use asdic_analysis::{
    RunMeta, RunMode, STOPPED, SUCCESS, ScanRow, SweepRow, list_parts, merge, parts_dir,
};

use crate::Fail;
use crate::args::RecoverArgs;

/// Row groups of the merged file (as the runs write them).
const ROW_GROUP: usize = 65_536;

pub fn run(a: RecoverArgs) -> Result<ExitCode, Fail> {
    let out = &a.output;
    if out.is_dir() && !out.as_os_str().to_string_lossy().ends_with(".parts") {
        return dataset(out);
    }
    let dir = parts_dir(out);
    if out.exists() {
        return Err(Fail::Usage(format!(
            "{} exists: nothing to recover over (move it away first)",
            out.display()
        )));
    }
    if !dir.is_dir() {
        return Err(Fail::Usage(format!(
            "{}: no such directory: nothing to recover for {}",
            dir.display(),
            out.display()
        )));
    }
    let parts = list_parts(&dir).map_err(|e| Fail::Usage(e.to_string()))?;
    let Some(first) = parts.first() else {
        return Err(Fail::Usage(format!(
            "{}: no finished parts (the run was killed before its first --sync-every period)",
            dir.display()
        )));
    };
    let mut meta = RunMeta::read(first).map_err(|e| Fail::Usage(e.to_string()))?;
    meta.part = None;
    meta.complete = Some(false);
    meta.recovered_parts = Some(parts.len() as u64);
    let mode = meta.mode;
    let pairs = meta.to_pairs();
    let rows = match mode {
        Some(RunMode::Scan) => merge::<ScanRow>(&parts, out, pairs, ROW_GROUP),
        Some(RunMode::Sweep) => merge::<SweepRow>(&parts, out, pairs, ROW_GROUP),
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
    .map_err(|e| Fail::System(anyhow::anyhow!("merging {}: {e}", dir.display())))?;
    for p in &parts {
        let _ = std::fs::remove_file(p);
    }
    // A part that was still open when the run died has no footer: it is lost, as documented.
    if let Ok(rest) = std::fs::read_dir(&dir) {
        for e in rest.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
    eprintln!(
        "asdic: recovered {rows} rows from {} parts into {}",
        parts.len(),
        out.display()
    );
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
            && let Ok(rest) = std::fs::read_dir(p)
        {
            for e in rest.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    removed += u32::from(std::fs::remove_file(e.path()).is_ok());
                }
            }
        }
        let shown = p.strip_prefix(dir).unwrap_or(p).display();
        let n = parts.len();
        match state {
            State::Complete => eprintln!("asdic: {shown}: complete, {n} parts"),
            State::Stopped => {
                incomplete += 1;
                eprintln!("asdic: {shown}: stopped early (_STOPPED), {n} durable parts");
            }
            State::Killed => {
                incomplete += 1;
                eprintln!(
                    "asdic: {shown}: killed: {n} finished parts read as they are, no _SUCCESS{}; \
                     run this partition again (into a fresh directory) to complete it",
                    if removed > 0 {
                        format!(", {removed} unfinished part removed")
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    eprintln!(
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
