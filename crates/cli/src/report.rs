//! `asdic report RESULTS... -o DIR`: an HTML report with figures (see `asdic_report`).

use std::process::ExitCode;
use std::time::Instant;

use asdic_report::{Error, Options};

use crate::Fail;
use crate::args::ReportArgs;

pub fn run(a: ReportArgs) -> Result<ExitCode, Fail> {
    let t0 = Instant::now();
    let opts = Options {
        title: a.title,
        graphs: a.graphs,
        rows: a.rows,
        png: !a.no_png,
        font: a.font,
        force: a.force,
    };
    if a.dir.as_os_str() == "-" {
        return Err(Fail::Usage(
            "-o -: a report is a directory (report.html and figures/), not a stream: give -o DIR"
                .into(),
        ));
    }
    let dir = asdic_fs::Dir::create_all(&a.dir).map_err(|e| Fail::Usage(format!("-o {e}")))?;
    let w = asdic_report::write(&a.inputs, &dir, &opts).map_err(|e| match e {
        // Unreadable or foreign inputs, no font, an earlier report, a refused path: the
        // operator's to fix.
        Error::File { .. }
        | Error::Parquet { .. }
        | Error::NotAsdic { .. }
        | Error::Empty(_)
        | Error::Font(_)
        | Error::Earlier { .. } => Fail::Usage(e.to_string()),
        Error::Fs(e) if e.is_refusal() => Fail::Usage(format!("-o {e}")),
        // Writing failed (a full disk, an I/O error): a system error, exit status 4, as for
        // every other output. Nothing of the report is left behind (asdic_report::write).
        // (Error::Write, Error::Fs, Error::Draw.)
        other => Fail::System(anyhow::anyhow!(other)),
    })?;
    let modes: Vec<&str> = w.sections.iter().map(|s| s.mode.name()).collect();
    say!(
        "asdic: report of {} rows ({}) in {:.2}s: {} and {} figure files in {}",
        w.rows,
        modes.join(", "),
        t0.elapsed().as_secs_f64(),
        w.html.display(),
        w.figures.len(),
        a.dir.join("figures").display()
    );
    Ok(ExitCode::SUCCESS)
}
