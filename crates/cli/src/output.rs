//! Where results go. What `-o` names is decided from the flags before anything opens (its
//! format: the name's extension, else the subcommand's default), and opened only after the
//! capabilities are dropped, through `asdic_fs`: a new file is written through a temporary and
//! published without replacing anything (`--force` replaces a file that was there), a FIFO or
//! a device is written as a stream, and anything else is refused before a probe is sent.
//!
//! Ping and trace write their results whole when the run ends ([`Results`]), with snapshots
//! beside the file while it runs ([`Snapshots`]); scan and sweep stream theirs (their modules).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use asdic_analysis::{Format, Record, RunMeta, Sink, file_sink};
use asdic_fs::{Dest, Dir, Output, Publish, TempFile};

use crate::Fail;
use crate::dataset::RunPartition;
use crate::privilege;

/// The format a file name's extension names: `.parquet`, `.csv`, `.jsonl` (or `.ndjson`).
pub fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "parquet" => Some(Format::Parquet),
        "csv" => Some(Format::Csv),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        _ => None,
    }
}

/// The format of output `path`: its extension's, or `asked` (the format flag as the operator
/// spelled it, and its value), or `default`. An extension and a flag that disagree are
/// refused.
///
/// # Errors
/// [`Fail::Usage`] for a contradiction.
pub fn format_for(
    flag: &str,
    path: &Path,
    asked: Option<(&str, Format)>,
    default: Format,
) -> Result<Format, Fail> {
    match (format_of(path), asked) {
        (Some(ext), Some((f, asked))) if ext != asked => Err(Fail::Usage(format!(
            "{flag} {}: the name says {ext}, {f} says {asked}: drop {f}, or rename the file",
            path.display()
        ))),
        (Some(ext), _) => Ok(ext),
        (None, Some((_, asked))) => Ok(asked),
        (None, None) => Ok(default),
    }
}

/// Refuses binary results on a terminal: Parquet on stdout is for a pipe.
///
/// # Errors
/// [`Fail::Usage`] when `path` is `-`, the format Parquet and stdout a terminal.
pub fn not_binary_on_a_terminal(flag: &str, path: &Path, format: Format) -> Result<(), Fail> {
    if path.as_os_str() == "-" && format == Format::Parquet && std::io::stdout().is_terminal() {
        return Err(Fail::Usage(format!(
            "{flag} -: stdout is a terminal and Parquet is binary: pipe it (e.g. into duckdb), \
             or give {flag} FILE"
        )));
    }
    Ok(())
}

/// The failure for output `flag` that could not be opened: a refusal or a system error at
/// open time are the operator's to fix (exit 2); a refused permission is explained when the
/// capabilities were dropped (`dropped_dac`).
pub fn open_fail(flag: &str, e: asdic_fs::Error, dropped_dac: bool) -> Fail {
    let why = e
        .io_error()
        .filter(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        .map_or("", |_| privilege::why_denied(dropped_dac));
    Fail::Usage(format!("{flag} {e}{why}"))
}

/// Resolves output `path` of option `flag` (see [`Dest::resolve`]).
///
/// # Errors
/// [`open_fail`]'s.
pub fn resolve(flag: &str, path: &Path, force: bool, dropped_dac: bool) -> Result<Dest, Fail> {
    Dest::resolve(path, force).map_err(|e| open_fail(flag, e, dropped_dac))
}

/// Whether `e` comes from writing to a pipe whose reader has gone (EPIPE: SIGPIPE is
/// ignored, as in every Rust program).
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// What `-o` or `--dataset` asked of a ping or a trace.
#[derive(Debug, Clone)]
pub enum Asked {
    /// Nothing written.
    Nothing,
    /// `-o FILE` (or `-`), in `format`.
    File {
        /// The path given.
        path: PathBuf,
        /// Its format.
        format: Format,
        /// `--force`.
        force: bool,
    },
    /// `--dataset DIR`: the run's partition `DIR/schema_version=2/run=ID`, one Parquet part.
    Dataset {
        /// The dataset's root.
        root: PathBuf,
        /// The run's name.
        run_id: String,
    },
}

impl Asked {
    /// What `-o`, `--force` and `--dataset` ask (the run id already chosen), checked before
    /// anything opens: `-o -` with a stdout format flag, or Parquet on a terminal, refused.
    ///
    /// # Errors
    /// [`Fail::Usage`].
    pub fn new(
        output: Option<&Path>,
        force: bool,
        dataset: Option<(&Path, String)>,
        stdout_format: Option<(&str, Format)>,
    ) -> Result<Asked, Fail> {
        if let Some((root, run_id)) = dataset {
            return Ok(Asked::Dataset {
                root: root.to_path_buf(),
                run_id,
            });
        }
        let Some(path) = output else {
            return Ok(Asked::Nothing);
        };
        if path.as_os_str() == "-"
            && let Some((flag, f)) = stdout_format
        {
            return Err(Fail::Usage(format!(
                "-o - writes the results (Parquet) on stdout, where {flag} {f} would print them: \
                 drop one of the two"
            )));
        }
        let format = format_for("-o", path, None, Format::Parquet)?;
        not_binary_on_a_terminal("-o", path, format)?;
        Ok(Asked::File {
            path: path.to_path_buf(),
            format,
            force,
        })
    }

    /// The run's id in a dataset.
    pub fn run_id(&self) -> Option<String> {
        match self {
            Asked::Dataset { run_id, .. } => Some(run_id.clone()),
            _ => None,
        }
    }
}

/// A ping's or trace's results file: opened when the run starts (after the capabilities are
/// dropped, so that a file the run cannot write is found before anything is sent), written
/// whole when it ends; snapshots beside it meanwhile.
#[derive(Debug)]
pub struct Results {
    format: Format,
    out: Output,
    snapshots: Option<Snapshotting>,
    partition: Option<RunPartition>,
}

/// The snapshots, idle or being written on a thread of their own.
#[derive(Debug)]
enum Snapshotting {
    /// Waiting for the next period.
    Idle(Snapshots),
    /// A snapshot is being written; the thread hands the snapshots back.
    Writing(std::thread::JoinHandle<Snapshots>),
}

/// A snapshot's writing, moved to its thread: it owns a copy of the results so far and writes
/// them with [`Snapshots::write`].
pub type SnapshotJob = Box<dyn FnOnce(&mut Snapshots) + Send>;

impl Results {
    /// Opens what `asked` names, with the run's metadata for the snapshots (`meta`), every
    /// `sync_every`. `None` when nothing is to be written.
    ///
    /// # Errors
    /// [`Fail::Usage`] naming the output when it is refused or cannot be created.
    pub fn open(
        asked: &Asked,
        meta: &RunMeta,
        sync_every: Duration,
        dropped_dac: bool,
    ) -> Result<Option<Results>, Fail> {
        let (dest, format, partition, force) = match asked {
            Asked::Nothing => return Ok(None),
            Asked::File {
                path,
                format,
                force,
            } => (
                resolve("-o", path, *force, dropped_dac)?,
                *format,
                None,
                *force,
            ),
            Asked::Dataset { root, run_id } => {
                let p = RunPartition::open(root, run_id, dropped_dac)?;
                let dest = Dest::in_dir(&p.dir, "part-000000.parquet".as_ref(), false)
                    .map_err(|e| open_fail("--dataset", e, dropped_dac))?;
                (dest, Format::Parquet, Some(p), false)
            }
        };
        if dest.is_stream() && !dest.is_stdout() {
            say!(
                "asdic: -o {}: a stream: written once the run ends, with no {}.partial \
                 snapshots (--sync-every does not apply)",
                dest.path().display(),
                dest.path().display()
            );
        }
        let snapshots = match dest.sibling(".partial") {
            Some((dir, name)) => Some(Snapshots::new(
                dir,
                name,
                format,
                force,
                meta.to_pairs(),
                sync_every,
            )?),
            None => None,
        };
        let flag = if partition.is_some() {
            "--dataset"
        } else {
            "-o"
        };
        let out = dest.whole().map_err(|e| open_fail(flag, e, dropped_dac))?;
        Ok(Some(Results {
            format,
            out,
            snapshots: snapshots.map(Snapshotting::Idle),
            partition,
        }))
    }

    /// Whether they go to stdout.
    pub fn on_stdout(&self) -> bool {
        self.out.is_stdout()
    }

    /// Starts a snapshot when one is due (see [`Snapshots`]), off the calling thread (the run's
    /// event loop, which the receivers wait on): `job` is called here to take a copy of the
    /// results so far (cheap next to encoding, compressing and syncing them), and the
    /// returned closure writes that copy on a thread of its own. One snapshot at a time: while
    /// one is being written, the next waits (the period is then the writing time).
    pub fn tick_with(&mut self, job: impl FnOnce() -> SnapshotJob) {
        let state = match self.snapshots.take() {
            Some(Snapshotting::Writing(h)) if !h.is_finished() => {
                self.snapshots = Some(Snapshotting::Writing(h));
                return;
            }
            Some(Snapshotting::Writing(h)) => match h.join() {
                Ok(s) => s,
                // The writer panicked: no more snapshots (the final write still happens).
                Err(_) => return,
            },
            Some(Snapshotting::Idle(s)) => s,
            None => return,
        };
        if !state.due() {
            self.snapshots = Some(Snapshotting::Idle(state));
            return;
        }
        let write = job();
        let mut s = state;
        let spawned = std::thread::Builder::new()
            .name("asdic-snapshot".into())
            .spawn(move || {
                write(&mut s);
                s
            });
        // Without a thread, no snapshots: the final write still happens.
        self.snapshots = spawned.ok().map(Snapshotting::Writing);
    }

    /// Writes the results (`rows` into the sink) with the run's final metadata `meta`,
    /// publishes them, then removes the snapshot and marks a dataset partition (`complete`
    /// picks the marker). Returns the path written.
    ///
    /// # Errors
    /// The first failure, naming the path (nothing more is written after it).
    pub fn write<R: Record>(
        self,
        meta: &RunMeta,
        complete: bool,
        rows: impl FnOnce(&mut dyn Sink<R>) -> anyhow::Result<()>,
    ) -> anyhow::Result<PathBuf> {
        use anyhow::Context;
        let path = self.out.path().to_path_buf();
        let ctx = || format!("writing {}", path.display());
        let mut sink =
            file_sink::<R>(self.format, self.out, meta.to_pairs(), 1 << 16).with_context(ctx)?;
        rows(sink.as_mut()).with_context(ctx)?;
        sink.finish().with_context(ctx)?;
        // A snapshot still being written ends first: then it goes, the results are there.
        let snapshots = match self.snapshots {
            Some(Snapshotting::Writing(h)) => h.join().ok(),
            Some(Snapshotting::Idle(s)) => Some(s),
            None => None,
        };
        if let Some(s) = snapshots {
            s.done();
        }
        if let Some(p) = &self.partition {
            p.finish(complete, &meta.to_pairs())
                .with_context(|| format!("marking {}", p.dir.path().display()))?;
        }
        Ok(path)
    }
}

/// Snapshots of a results file, `<out>.partial`: every `--sync-every`, the rows so far in the
/// file's format, written to a temporary and renamed over the last snapshot (asdic's own), so
/// a killed run leaves its results as of at most one period before the kill. `asdic recover
/// <out>` makes the last one the results.
#[derive(Debug)]
pub struct Snapshots {
    dir: Dir,
    name: OsString,
    format: Format,
    meta: Vec<(String, String)>,
    every: Duration,
    last: Instant,
    failed: bool,
    /// Whether a snapshot of this run holds the name (or --force allows replacing one).
    ours: bool,
}

impl Snapshots {
    /// Snapshots named `name` in `dir`, refused when one exists (an earlier run's, killed:
    /// its results) unless `force`.
    ///
    /// # Errors
    /// [`Fail::Usage`] naming it.
    pub fn new(
        dir: Dir,
        name: OsString,
        format: Format,
        force: bool,
        meta: Vec<(String, String)>,
        every: Duration,
    ) -> Result<Self, Fail> {
        let exists = dir.has(&name).map_err(|e| Fail::Usage(format!("-o {e}")))?;
        if exists && !force {
            let p = dir.join(&name);
            return Err(Fail::Usage(format!(
                "-o: {} exists: the snapshot of an earlier run that was killed (`asdic recover` \
                 makes it the results; or give --force to replace it)",
                p.display()
            )));
        }
        Ok(Snapshots {
            dir,
            name,
            format,
            meta,
            every,
            last: Instant::now(),
            failed: false,
            ours: exists,
        })
    }

    /// Whether a period has passed since the last snapshot (never after one failed).
    pub fn due(&self) -> bool {
        !self.failed && self.last.elapsed() >= self.every
    }

    /// Writes a snapshot: `rows` writes the rows so far into the sink. A failure is reported
    /// once and ends the snapshots (the final write reports it again, as an error).
    pub fn write<R: Record>(&mut self, rows: impl FnOnce(&mut dyn Sink<R>) -> anyhow::Result<()>) {
        self.last = Instant::now();
        let result = (|| -> anyhow::Result<()> {
            let mut meta = self.meta.clone();
            meta.extend(
                RunMeta {
                    partial: Some(true),
                    snapshot_unix_ns: Some(asdic_engine::now_ns()),
                    ..RunMeta::default()
                }
                .to_pairs(),
            );
            let how = if self.ours {
                Publish::Replace
            } else {
                Publish::NoReplace
            };
            let out = Output::temp(
                TempFile::new(&self.dir, &self.name)?,
                how,
                self.dir.join(&self.name),
            );
            let mut sink = file_sink::<R>(self.format, out, meta, 1 << 16)?;
            rows(sink.as_mut())?;
            sink.finish()?;
            self.ours = true;
            Ok(())
        })();
        if let Err(e) = result {
            self.failed = true;
            say!(
                "\nasdic: writing the snapshot {} failed: {e:#}; no more snapshots",
                self.dir.join(&self.name).display()
            );
        }
    }

    /// The final file is written: the snapshot goes.
    pub fn done(self) {
        if self.ours {
            let _ = self.dir.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_sets_the_format_and_a_contradiction_is_refused() {
        let p = Path::new;
        assert_eq!(format_of(p("a/b.CSV")), Some(Format::Csv));
        assert_eq!(format_of(p("x.jsonl")), Some(Format::Jsonl));
        assert_eq!(format_of(p("x.ndjson")), Some(Format::Jsonl));
        assert_eq!(format_of(p("x.parquet")), Some(Format::Parquet));
        assert_eq!(format_of(p("x.txt")), None);
        assert_eq!(format_of(p("-")), None);
        let pq = Format::Parquet;
        assert_eq!(format_for("-o", p("x.csv"), None, pq).unwrap(), Format::Csv);
        assert_eq!(
            format_for("-o", p("x"), Some(("-O", Format::Jsonl)), pq).unwrap(),
            Format::Jsonl
        );
        assert_eq!(format_for("-o", p("x"), None, pq).unwrap(), pq);
        let e = format_for("-o", p("x.csv"), Some(("-O", pq)), pq).unwrap_err();
        assert!(matches!(e, Fail::Usage(_)));
        assert_eq!(
            e.to_string(),
            "-o x.csv: the name says csv, -O says parquet: drop -O, or rename the file"
        );
        assert!(format_for("-o", p("x.csv"), Some(("-O", Format::Csv)), pq).is_ok());
    }

    #[test]
    fn stdout_takes_the_results_or_the_table_never_both() {
        let a = Asked::new(Some(Path::new("-")), false, None, None);
        // The test's stdout may be a terminal: Parquet is refused there, fine elsewhere.
        if !std::io::stdout().is_terminal() {
            assert!(matches!(
                a.unwrap(),
                Asked::File {
                    format: Format::Parquet,
                    ..
                }
            ));
        }
        let e = Asked::new(
            Some(Path::new("-")),
            false,
            None,
            Some(("--format", Format::Csv)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("drop one of the two"), "{e}");
        let f = Asked::new(Some(Path::new("r.jsonl")), true, None, None).unwrap();
        assert!(matches!(
            f,
            Asked::File {
                format: Format::Jsonl,
                force: true,
                ..
            }
        ));
    }
}
