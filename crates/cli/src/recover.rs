//! `asdic recover FILE`: merges the finished parts a killed run left in `FILE.parts/` into
//! `FILE`, as the run would have at its end (see `asdic_analysis::parts`).

use std::process::ExitCode;

use asdic_analysis::meta::keys;
use asdic_analysis::{RunMeta, RunMode, ScanRow, SweepRow, list_parts, merge, parts_dir};

use crate::Fail;
use crate::args::RecoverArgs;

/// Row groups of the merged file (as the runs write them).
const ROW_GROUP: usize = 65_536;

pub fn run(a: RecoverArgs) -> Result<ExitCode, Fail> {
    let out = &a.output;
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
