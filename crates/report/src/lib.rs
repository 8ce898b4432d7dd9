//! # asdic-report
//!
//! What `asdic report` does: **asdic Parquet files → per-run sections → one HTML file plus
//! SVG and PNG figures**. It reads the files a scan, a sweep (its rotated files), a ping or a
//! trace wrote — finished files, a killed run's `.parts/` directory, or a `.partial`
//! snapshot — groups them by the run mode recorded in their metadata (`asdic.mode`), folds
//! every row into bounded aggregates, and draws the figures with plotters.
//!
//! The HTML is self-contained: figures are inlined SVG, the style sheet is inline, and
//! nothing refers to another file or the network, so it opens offline anywhere.
//!
//! It must never touch the network, and its memory does not grow with the number of probe
//! rows: RTTs go into a log-bucketed histogram ([`hist::LogHist`], 1 % buckets), per-target
//! state is a few counters, and time series are kept only for the targets that are drawn
//! (a second pass over the files). No unsafe code; a malformed file is an error naming it,
//! never a panic.
#![forbid(unsafe_code)]

/// The crate's error type.
pub mod error;
/// Drawing the figures (plotters, SVG and PNG), and the font they need.
pub mod figure;
/// A log-bucketed RTT histogram with quantiles.
pub mod hist;
/// Assembling the HTML page.
pub mod html;
/// Finding and opening the input files; the columns they must have.
pub mod input;
/// Folding rows into a report section per run mode.
pub mod section;
/// UTC time and number formatting.
pub mod text;

use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;

use asdic_fs::{Dir, Publish, TempFile};

pub use error::{Error, Result};
pub use hist::LogHist;
pub use section::{Mode, Section};

/// What to put in a report.
#[derive(Debug, Clone)]
pub struct Options {
    /// The page title.
    pub title: String,
    /// Per-target latency graphs (sweeps) at most, worst targets first.
    pub graphs: usize,
    /// Rows of each per-target or per-prefix table at most, worst first.
    pub rows: usize,
    /// Write PNG copies of the figures as well as SVG.
    pub png: bool,
    /// The TrueType font for figure text; `None` looks in the usual system places.
    pub font: Option<PathBuf>,
    /// Replace the report and figures an earlier report left in the directory.
    pub force: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            title: "asdic report".into(),
            graphs: 12,
            rows: 50,
            png: true,
            font: None,
            force: false,
        }
    }
}

/// What [`write`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The HTML file.
    pub html: PathBuf,
    /// Every figure file (SVG, and PNG when asked).
    pub figures: Vec<PathBuf>,
    /// The sections, one per run mode found in the inputs.
    pub sections: Vec<Section>,
    /// Rows read in all.
    pub rows: u64,
}

/// Reads `inputs` (files or directories), and writes `dir/report.html` and the figures
/// under `dir/figures/`, each through a temporary published under its name. An earlier
/// report there (its `report.html`, or figures) is replaced only with [`Options::force`].
///
/// # Errors
/// [`Error`] naming the file or directory that could not be read or written;
/// [`Error::Earlier`] for an earlier report not to be replaced.
pub fn write(inputs: &[PathBuf], dir: &Dir, opts: &Options) -> Result<Written> {
    let html_name = OsStr::new("report.html");
    let figures = OsStr::new("figures");
    if !opts.force {
        if dir.has(html_name)? {
            return Err(Error::Earlier {
                dir: dir.path().to_path_buf(),
                what: "report.html",
            });
        }
        if dir.has(figures)? && !dir.subdir(figures, false)?.names()?.is_empty() {
            return Err(Error::Earlier {
                dir: dir.path().to_path_buf(),
                what: "figures/",
            });
        }
    }
    let how = if opts.force {
        Publish::Replace
    } else {
        Publish::NoReplace
    };
    let files = input::expand(inputs)?;
    let groups = input::group(&files)?;
    figure::load_font(opts.font.as_deref())?;
    let mut sections = vec![];
    let mut rows = 0;
    for (mode, inputs) in groups {
        let s = section::build(mode, inputs, opts)?;
        rows += s.rows;
        sections.push(s);
    }
    let fig_dir = dir.subdir(figures, true)?;
    let mut figures = vec![];
    let mut drawn = vec![];
    for (i, s) in sections.iter().enumerate() {
        let figs = figure::draw_section(s, i, &fig_dir, opts.png, how)?;
        for f in &figs {
            figures.extend(f.files.iter().cloned());
        }
        drawn.push(figs);
    }
    let page = html::page(&opts.title, &sections, &drawn);
    let html = write_file(dir, html_name, page.as_bytes(), how)?;
    Ok(Written {
        html,
        figures,
        sections,
        rows,
    })
}

/// Writes `bytes` as `name` in `dir`: a temporary, synced, published as `how` says.
///
/// # Errors
/// [`Error::Fs`] or [`Error::File`] naming it.
pub(crate) fn write_file(dir: &Dir, name: &OsStr, bytes: &[u8], how: Publish) -> Result<PathBuf> {
    let mut t = TempFile::new(dir, name)?;
    t.write_all(bytes).map_err(|e| Error::file(&t.path(), e))?;
    Ok(t.publish(how)?)
}
