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

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
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
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use asdic_fs::{Dir, Publish, TempFile};

pub use error::{Error, Result};
pub use hist::LogHist;
pub use section::{Mode, Section};
pub use text::Text;

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
/// under `dir/figures/`. Every file is first written in full under a hidden name and synced
/// ([`Stage`]); only when all of them are written are they renamed to their names, figures
/// first: a failure (a full disk) leaves no file of this report behind, and neither a
/// truncated figure nor a temporary. An earlier report there (its `report.html`, or figures)
/// is replaced only with [`Options::force`].
///
/// # Errors
/// [`Error`] naming the file or directory that could not be read or written;
/// [`Error::Earlier`] for an earlier report not to be replaced; [`Error::Write`] or
/// [`Error::Fs`] when writing failed.
pub fn write(inputs: &[PathBuf], dir: &Dir, opts: &Options) -> Result<Written> {
    let html_name = OsStr::new("report.html");
    let figures = OsStr::new("figures");
    let figures_there = dir.has(figures)?;
    if !opts.force {
        if dir.has(html_name)? {
            return Err(Error::Earlier {
                dir: dir.path().to_path_buf(),
                what: "report.html",
            });
        }
        if figures_there && !visible(&dir.subdir(figures, false)?.names()?) {
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
    let mut stage = Stage::new(how);
    let fig_dir = dir.subdir(figures, true)?;
    if !figures_there {
        stage.created_dir(dir, figures);
    }
    let mut figures = vec![];
    let mut drawn = vec![];
    for (i, s) in sections.iter().enumerate() {
        let figs = figure::draw_section(s, i, &fig_dir, opts.png, &mut stage)?;
        for f in &figs {
            figures.extend(f.files.iter().cloned());
        }
        drawn.push(figs);
    }
    let page = html::page(&opts.title, &sections, &drawn);
    let html = stage.write(dir, html_name, page.as_bytes())?;
    stage.commit()?;
    Ok(Written {
        html,
        figures,
        sections,
        rows,
    })
}

/// Whether `names` has a name that is not hidden (a stage or temporary a killed report left).
fn visible(names: &[std::ffi::OsString]) -> bool {
    names.iter().any(|n| !n.as_bytes().starts_with(b"."))
}

/// The files of a report being written: each is written in full to a temporary, synced and
/// published under a hidden stage name (`.NAME.PID-N-X.stage`, skipped by readers as every
/// hidden name), so that no file descriptor stays open per figure; [`Stage::commit`] then
/// renames them all to their names. Dropped without a commit (an error on the way), it
/// removes every file it staged or renamed and the directories it created: nothing of the
/// report stays behind.
#[derive(Debug)]
pub(crate) struct Stage {
    how: Publish,
    files: Vec<Staged>,
    dirs: Vec<(Dir, OsString)>,
    committed: bool,
}

#[derive(Debug)]
struct Staged {
    dir: Dir,
    stage: OsString,
    name: OsString,
    renamed: bool,
}

impl Stage {
    fn new(how: Publish) -> Stage {
        Stage {
            how,
            files: vec![],
            dirs: vec![],
            committed: false,
        }
    }

    /// Notes that `name` in `dir` was created for this report (removed again on failure).
    fn created_dir(&mut self, dir: &Dir, name: &OsStr) {
        self.dirs.push((dir.clone(), name.to_os_string()));
    }

    /// Writes `bytes` as `name` in `dir`, under its stage name until [`Stage::commit`].
    /// Returns the final path.
    ///
    /// # Errors
    /// [`Error::Write`] or [`Error::Fs`] naming the file.
    pub(crate) fn write(&mut self, dir: &Dir, name: &OsStr, bytes: &[u8]) -> Result<PathBuf> {
        let stage = stage_name(name, self.files.len());
        let mut t = TempFile::new(dir, &stage)?;
        t.write_all(bytes)
            .map_err(|e| Error::write(&dir.join(name), e))?;
        t.publish(Publish::NoReplace)?;
        self.files.push(Staged {
            dir: dir.clone(),
            stage,
            name: name.to_os_string(),
            renamed: false,
        });
        Ok(dir.join(name))
    }

    /// Renames every staged file to its name, in the order written, and syncs their
    /// directories.
    ///
    /// # Errors
    /// [`Error::Earlier`] when a name appeared meanwhile (without `--force`), else
    /// [`Error::Write`]; what was renamed is removed again.
    fn commit(mut self) -> Result<()> {
        let replace = self.how == Publish::Replace;
        for f in &mut self.files {
            if let Err(e) = f.dir.rename(&f.stage, &f.name, replace) {
                let e = std::io::Error::from_raw_os_error(e.raw_os_error());
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(Error::Earlier {
                        dir: f.dir.path().to_path_buf(),
                        what: "file of the same name",
                    });
                }
                return Err(Error::write(&f.dir.join(&f.name), e));
            }
            f.renamed = true;
        }
        let mut synced: Vec<&Path> = vec![];
        for f in &self.files {
            if !synced.contains(&f.dir.path()) {
                f.dir.sync()?;
                synced.push(f.dir.path());
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: the error that stopped the report is what gets reported.
        for f in self.files.iter().rev() {
            let _ = f.dir.remove(if f.renamed { &f.name } else { &f.stage });
        }
        for (dir, name) in self.dirs.iter().rev() {
            let _ = dir.remove_dir(name);
        }
    }
}

/// A hidden, unused name for staging `name`: `.NAME.PID-N-NANOS.stage`.
fn stage_name(name: &OsStr, n: usize) -> OsString {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".{}-{n}-{nanos:08x}.stage", std::process::id()));
    s
}
