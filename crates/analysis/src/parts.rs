//! Durable Parquet output: a run's rows go to finished parts while it runs, and into one file
//! when it ends.
//!
//! A Parquet file is readable only once its footer is written, so a process killed while
//! writing one (SIGKILL, OOM, power cut) would leave nothing readable. [`PartedSink`] writes
//! rows for `<out>` into `<out>.parts/part-NNNNNN.parquet` instead, finishing the open part
//! (footer, fsync, rename, fsync of the directory) every `every` (a few seconds): a killed run
//! loses at most the rows of the part still open, which is hidden (`.part-NNNNNN.parquet.*.tmp`)
//! so that readers of the directory skip it. [`PartedSink::finish_with`] merges the parts in
//! order into `<out>` (through a temporary, with the run's closing metadata), then removes
//! them, so a run that ends normally (including on SIGINT/SIGTERM) leaves exactly one complete
//! file.
//!
//! Every part is a complete Parquet file with the run's schema and metadata (plus `asdic.part`),
//! so a partial run reads as a dataset (`asdic report OUT.parts`, DuckDB
//! `read_parquet('OUT.parts/*.parquet')`, `pyarrow.parquet.read_table('OUT.parts')`), and
//! [`merge`] merges one into `<out>` as the run would have.
//!
//! Every directory and file here is opened through [`asdic_fs`]: the parts directory is
//! claimed by creating it, parts are published without replacing, nothing planted is followed.

use core::marker::PhantomData;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asdic_fs::{Dest, Dir, Output, Publish, TempFile};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::meta::keys;
use crate::schema::{Record, SCHEMA_VERSION};
use crate::sink::{ParquetSink, Sink};

/// The directory of parts of `out`: `<out>.parts`.
pub fn parts_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".parts");
    PathBuf::from(s)
}

fn is_part(name: &OsStr) -> bool {
    let n = name.to_str().unwrap_or("");
    n.starts_with("part-") && n.ends_with(".parquet")
}

/// The finished parts in `dir`, in order (`part-*.parquet`, sorted by name).
///
/// # Errors
/// [`Error::File`] if the directory cannot be read.
pub fn list_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let file_error = |source| Error::File {
        path: dir.to_path_buf(),
        source,
    };
    let mut parts = vec![];
    for e in fs::read_dir(dir).map_err(file_error)? {
        let p = e.map_err(file_error)?.path();
        if p.file_name().is_some_and(is_part) {
            parts.push(p);
        }
    }
    parts.sort();
    Ok(parts)
}

/// The names of the finished parts in open directory `dir`, in order.
///
/// # Errors
/// [`Error::Fs`] if the directory cannot be read.
pub fn part_names(dir: &Dir) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = dir.names()?.into_iter().filter(|n| is_part(n)).collect();
    names.sort();
    Ok(names)
}

/// The directory a file is created (and renamed) in: its parent, or `.` for a bare name.
pub fn dir_of(file: &Path) -> &Path {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The marker a dataset partition gets once all its parts are durable and the run completed
/// (Hadoop's name; Spark, DuckDB and pyarrow skip files starting with `_`).
pub const SUCCESS: &str = "_SUCCESS";

/// The marker of a partition whose run ended early but cleanly (a signal, a time limit):
/// its parts are durable, its results a prefix of the run's, and it has no [`SUCCESS`].
pub const STOPPED: &str = "_STOPPED";

/// Where a file's parts are merged at the end.
#[derive(Debug)]
struct Into {
    dir: Dir,
    name: OsString,
    how: Publish,
}

/// Where `out`'s parts go: its directory, its name, the parts' name (`<name>.parts`) and how
/// the merged file is published.
fn beside(out: &Dest) -> Result<(Dir, OsString, OsString, Publish)> {
    let how = if out.replaces() {
        Publish::Replace
    } else {
        Publish::NoReplace
    };
    let (Some((parent, name)), Some((_, parts))) = (out.sibling(""), out.sibling(".parts")) else {
        return Err(Error::NotFor {
            format: crate::Format::Parquet,
            what: "parts beside a stream",
        });
    };
    Ok((parent, name, parts, how))
}

/// Rows of type `R` for one output file, written as finished parts (see the module docs).
#[derive(Debug)]
pub struct PartedSink<R: Record> {
    /// Where the parts are merged into at the end; `None` for a dataset partition, whose
    /// parts are the output (a marker when finished).
    into: Option<Into>,
    /// Part files are `{prefix}-NNNNNN.parquet`.
    prefix: String,
    out: PathBuf,
    /// The parts' directory.
    dir: Dir,
    metadata: Vec<(String, String)>,
    row_group: usize,
    every: Duration,
    open: Option<ParquetSink<R>>,
    /// When the last part was finished (or the sink created).
    since: Instant,
    parts: Vec<OsString>,
    /// The number of the next part (past an earlier run's, when resuming).
    next: usize,
    rows: PhantomData<fn(&R)>,
}

impl<R: Record> PartedSink<R> {
    /// Starts the parts of `out`, a name in a directory (creating `<out>.parts`), each with
    /// `metadata`, row groups of at most `row_group` rows, finished every `every`. The merged
    /// file replaces an existing one only when `out` was resolved with `--force`.
    ///
    /// # Errors
    /// [`Error::File`] if `<out>.parts` exists already (an earlier run's results: recover or
    /// remove them first) or cannot be created; [`Error::NotFor`] for a stream.
    pub fn create(
        out: &Dest,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Result<Self> {
        let (parent, _, parts, _) = beside(out)?;
        let dir = parent.create_dir(&parts).map_err(|e| match e {
            asdic_fs::Error::Exists { path } => Error::File {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists: the parts of an earlier run that did not finish \
                     (`asdic recover` merges them; or remove the directory)",
                ),
            },
            e => e.into(),
        })?;
        Self::for_file(out, dir, metadata, row_group, every)
    }

    /// The parts in `dir` of file `out`, merged into it at the end.
    fn for_file(
        out: &Dest,
        dir: Dir,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Result<Self> {
        let (parent, name, _, how) = beside(out)?;
        Ok(Self::with(
            Some(Into {
                dir: parent,
                name,
                how,
            }),
            "part".into(),
            out.path().to_path_buf(),
            dir,
            metadata,
            row_group,
            every,
        ))
    }

    fn with(
        into: Option<Into>,
        prefix: String,
        out: PathBuf,
        dir: Dir,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Self {
        Self {
            into,
            prefix,
            out,
            dir,
            metadata,
            row_group,
            every,
            open: None,
            since: Instant::now(),
            parts: vec![],
            next: 0,
            rows: PhantomData,
        }
    }

    /// Continues the parts an earlier, interrupted run of `out` left in `<out>.parts` (see
    /// [`PartedSink::create`]): they are kept (and merged with this run's at the end), its
    /// unfinished part (a hidden temporary without a footer) is removed, and this run's parts
    /// number on from the highest. Returns the sink and the earlier parts' names, in order.
    ///
    /// # Errors
    /// [`Error::File`] if `<out>.parts` is missing, [`Error::Fs`] if it cannot be opened or
    /// is a link.
    pub fn reopen(
        out: &Dest,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Result<(Self, Vec<OsString>)> {
        let (parent, _, parts, _) = beside(out)?;
        if !parent.has(&parts)? {
            return Err(Error::File {
                path: parent.join(&parts),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no parts of an earlier run to resume",
                ),
            });
        }
        let dir = parent.subdir(&parts, false)?;
        let mut sink = Self::for_file(out, dir, metadata, row_group, every)?;
        let earlier = sink.adopt()?;
        Ok((sink, earlier))
    }

    /// Continues dataset partition `dir`, which an earlier run of it left unfinished (killed:
    /// parts and no marker; stopped: [`STOPPED`]): as [`PartedSink::reopen`], and the
    /// [`STOPPED`] marker is removed (the partition gets its marker when this run ends).
    ///
    /// # Errors
    /// [`Error::Fs`] if the partition cannot be read or changed.
    pub fn resume_dataset(
        dir: Dir,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Result<(Self, Vec<OsString>)> {
        let mut sink = Self::with(
            None,
            "part".to_string(),
            dir.path().to_path_buf(),
            dir,
            metadata,
            row_group,
            every,
        );
        if sink.dir.has(OsStr::new(STOPPED))? {
            sink.dir.remove(OsStr::new(STOPPED))?;
            sink.dir.sync()?;
        }
        let earlier = sink.adopt()?;
        Ok((sink, earlier))
    }

    /// Takes the parts already in the directory as this sink's first ones: removes the
    /// unfinished part's temporary, numbers on from the highest part. Returns their names.
    fn adopt(&mut self) -> Result<Vec<OsString>> {
        for n in self.dir.names()? {
            let s = n.to_string_lossy();
            if s.starts_with(&format!(".{}-", self.prefix)) && s.contains(".parquet") {
                self.dir.remove(&n)?;
            }
        }
        let earlier = part_names(&self.dir)?;
        self.next = earlier
            .iter()
            .filter_map(|n| {
                let s = n.to_str()?;
                s.strip_prefix(&format!("{}-", self.prefix))?
                    .strip_suffix(".parquet")?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1);
        self.parts = earlier.clone();
        Ok(earlier)
    }

    /// Parts in one partition `dir` of a Hive-style dataset (opened, e.g. by
    /// [`partition`]): they are the output, never merged; [`PartedSink::finish_dataset`]
    /// marks the partition complete. A killed run leaves its finished parts, readable, and no
    /// marker. Parts are `part-NNNNNN.parquet`, or `part-{name}-NNNNNN.parquet` when several
    /// writers share the partition (a sweep's hour: each period of each run names its own).
    ///
    /// # Errors
    /// [`Error::File`] if `dir` already holds parts of this name or a marker (an earlier
    /// run of this partition: `asdic recover` says what it holds; remove it, or write another
    /// partition).
    pub fn in_dataset(
        dir: Dir,
        name: Option<&str>,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Result<Self> {
        let prefix = match name {
            Some(n) => format!("part-{n}"),
            None => "part".to_string(),
        };
        let taken = match name {
            None => partition_taken(&dir)?,
            Some(_) => dir.has(OsStr::new(&format!("{prefix}-000000.parquet")))?,
        };
        if taken {
            return Err(Error::File {
                path: dir.path().to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "holds the results of an earlier run of this partition (`asdic recover` \
                     checks them; remove the directory, or choose another --run-id)",
                ),
            });
        }
        // Writers that share a partition (a sweep's hour) add parts beside others: only to
        // parts of the columns they write.
        if let Some(other) = part_names(&dir)?.first() {
            let f = dir.read_file(other)?;
            let version = version_of_footer(
                ParquetRecordBatchReaderBuilder::try_new(f)?
                    .metadata()
                    .file_metadata(),
            );
            if version != SCHEMA_VERSION {
                return Err(Error::Schema(format!(
                    "{}: holds parts of schema version {version} ({}); this asdic writes \
                     version {SCHEMA_VERSION} and never adds them to another version's \
                     partition",
                    dir.path().display(),
                    other.to_string_lossy()
                )));
            }
        }
        Ok(Self::with(
            None,
            prefix,
            dir.path().to_path_buf(),
            dir,
            metadata,
            row_group,
            every,
        ))
    }

    /// Finishes a dataset partition: the open part, then the marker — [`SUCCESS`] when the
    /// run is `complete`, else [`STOPPED`] — written, synced and renamed into place after
    /// every part is durable, holding the run's metadata and `closing` as one JSON object.
    /// Returns the number of parts.
    ///
    /// # Errors
    /// As [`PartedSink::roll`], and [`Error::Fs`] if the marker cannot be written.
    pub fn finish_dataset(
        mut self,
        closing: Vec<(String, String)>,
        complete: bool,
    ) -> Result<usize> {
        self.roll()?;
        if self.prefix != "part" {
            // One writer of several in the partition: its parts are durable; the partition
            // is not its to mark.
            return Ok(self.parts.len());
        }
        let mut pairs = self.metadata.clone();
        pairs.extend(closing);
        write_marker(&self.dir, complete, &pairs)?;
        Ok(self.parts.len())
    }

    /// The file the parts become.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The directory of parts.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The parts finished so far.
    pub fn parts(&self) -> Vec<PathBuf> {
        self.parts.iter().map(|n| self.dir.join(n)).collect()
    }

    /// Takes the lock on the parts' directory (see [`Dir::try_lock`]): held while the
    /// returned descriptor is open; `None` when another process holds it.
    ///
    /// # Errors
    /// [`Error::Fs`] if locking fails otherwise.
    pub fn try_lock(&self) -> Result<Option<std::os::fd::OwnedFd>> {
        Ok(self.dir.try_lock()?)
    }

    /// Whether a part period has passed since the last [`roll`](Self::roll): time for the
    /// caller to write the rows it holds and roll.
    pub fn due(&self) -> bool {
        self.since.elapsed() >= self.every
    }

    /// Finishes the open part, if any: from now on its rows survive the process.
    ///
    /// # Errors
    /// As [`ParquetSink`]'s finish.
    pub fn roll(&mut self) -> Result<()> {
        self.roll_with(&[], false)
    }

    /// As [`roll`](Self::roll), with `extra` added to the finished part's metadata (what
    /// holds for every row up to now: a scan's watermark); with `always`, a part is
    /// finished even without rows, so that `extra` is durable.
    ///
    /// # Errors
    /// As [`roll`](Self::roll).
    pub fn roll_with(&mut self, extra: &[(String, String)], always: bool) -> Result<()> {
        if always && self.open.is_none() {
            self.part()?;
        }
        if let Some(part) = self.open.as_mut() {
            for (k, v) in extra {
                part.add_metadata(k.clone(), v.clone());
            }
        }
        self.since = Instant::now();
        if let Some(part) = self.open.take() {
            let name = part
                .path()
                .file_name()
                .map(OsStr::to_os_string)
                .unwrap_or_default();
            // Publishing syncs the part and then the directory.
            Box::new(part).finish()?;
            self.parts.push(name);
        }
        Ok(())
    }

    fn part(&mut self) -> Result<&mut ParquetSink<R>> {
        let sink = match self.open.take() {
            Some(s) => s,
            None => {
                let n = self.next;
                self.next += 1;
                let name = format!("{}-{n:06}.parquet", self.prefix);
                let tmp = TempFile::new(&self.dir, OsStr::new(&name))?;
                let mut meta = self.metadata.clone();
                meta.push((keys::PART.into(), n.to_string()));
                ParquetSink::to(
                    Output::temp(tmp, Publish::NoReplace, self.dir.join(&name)),
                    meta,
                    self.row_group,
                )?
            }
        };
        Ok(self.open.insert(sink))
    }

    /// Finishes the run: the open part, then every part merged in order into the output file
    /// with the run's metadata and `closing` (end time, totals…); the parts are removed.
    /// Returns the number of rows.
    ///
    /// # Errors
    /// As [`merge`]; the parts stay where they are when merging fails.
    pub fn finish_with(mut self, closing: Vec<(String, String)>) -> Result<u64> {
        self.roll()?;
        let mut meta = self.metadata.clone();
        meta.extend(closing);
        let Some(into) = self.into.take() else {
            return Err(Error::NotFor {
                format: crate::Format::Parquet,
                what: "merging a dataset partition",
            });
        };
        let out = Output::temp(
            TempFile::new(&into.dir, &into.name)?,
            into.how,
            self.out.clone(),
        );
        let rows = merge::<R>(&self.dir, &self.parts, out, meta, self.row_group)?;
        for p in std::mem::take(&mut self.parts) {
            let _ = self.dir.remove(&p);
        }
        if let Some((parent, name)) = self.dir_name(&into) {
            let _ = parent.remove_dir(&name);
        }
        Ok(rows)
    }

    /// The parts directory as a name in the output's directory.
    fn dir_name(&self, into: &Into) -> Option<(Dir, OsString)> {
        let mut name = into.name.clone();
        name.push(".parts");
        Some((into.dir.clone(), name))
    }
}

impl<R: Record> PartedSink<R> {
    /// Finishes the run whichever kind of sink this is: a dataset partition's parts stay and
    /// get their marker ([`PartedSink::finish_dataset`]; `complete` picks it), a file's parts
    /// are merged into it ([`PartedSink::finish_with`]).
    ///
    /// # Errors
    /// As those two.
    pub fn finish_run(self, closing: Vec<(String, String)>, complete: bool) -> Result<()> {
        if self.into.is_none() {
            self.finish_dataset(closing, complete).map(|_| ())
        } else {
            self.finish_with(closing).map(|_| ())
        }
    }

    /// Whether this sink writes a dataset partition (its parts are the results).
    pub fn is_dataset(&self) -> bool {
        self.into.is_none()
    }
}

impl<R: Record> Drop for PartedSink<R> {
    /// Abandoned (an error, a panic): the open part's temporary file goes, the finished parts
    /// stay for recovery, and a directory left empty goes too.
    fn drop(&mut self) {
        drop(self.open.take());
        // A dataset partition stays, empty or not: its directory is part of the layout.
        if self.parts.is_empty()
            && let Some(into) = &self.into
            && let Some((parent, name)) = self.dir_name(into)
        {
            let _ = parent.remove_dir(&name);
        }
    }
}

impl<R: Record> Sink<R> for PartedSink<R> {
    fn write_rows(&mut self, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.part()?.write_rows(rows)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.finish_run(vec![], true)
    }
}

/// The first level of every dataset partition asdic writes, `schema_version=2`: each schema
/// version keeps to its own partitions, so one query (or one `asdic report`) of a partition
/// never meets two sets of columns, and a later version never adds parts beside older ones.
pub fn version_level() -> String {
    format!("schema_version={SCHEMA_VERSION}")
}

/// The directory of a dataset partition, `root/k1=v1/k2=v2…` (`levels` as given), created
/// where missing: the root as [`Dir::create_all`], each level a real directory under it
/// ([`Dir::subdir`]), never a link.
///
/// # Errors
/// [`Error::Fs`] naming the level that could not be created or was refused.
pub fn partition(root: &Path, levels: &[String]) -> Result<Dir> {
    let mut dir = Dir::create_all(root)?;
    for l in levels {
        dir = dir.subdir(OsStr::new(l), true)?;
    }
    Ok(dir)
}

/// Whether dataset partition `dir` already holds a run's results: a marker or parts.
///
/// # Errors
/// [`Error::Fs`] if `dir` cannot be read.
pub fn partition_taken(dir: &Dir) -> Result<bool> {
    Ok(dir.has(OsStr::new(SUCCESS))?
        || dir.has(OsStr::new(STOPPED))?
        || !part_names(dir)?.is_empty())
}

/// Marks dataset partition `dir`: [`SUCCESS`] when its run is `complete`, else [`STOPPED`],
/// holding `pairs` (the run's metadata) as one JSON object; written to a hidden temporary
/// file, synced, renamed into place (never over another marker) and the directory synced, so
/// a marker is never seen half written and never before what the caller wrote before it is
/// durable.
///
/// # Errors
/// [`Error::Fs`] if the marker cannot be written.
pub fn write_marker(dir: &Dir, complete: bool, pairs: &[(String, String)]) -> Result<()> {
    let mut json = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        crate::sink::push_json_string(&mut json, k);
        json.push(':');
        crate::sink::push_json_string(&mut json, v);
    }
    json.push_str("}\n");
    let name = if complete { SUCCESS } else { STOPPED };
    let mut tmp = TempFile::new(dir, OsStr::new(name))?;
    {
        use std::io::Write;
        tmp.write_all(json.as_bytes())
            .map_err(|source| Error::File {
                path: tmp.path(),
                source,
            })?;
    }
    tmp.publish(Publish::NoReplace)?;
    Ok(())
}

/// Merges the parts `names` in `dir` (Parquet files of one of `R`'s schema versions, opened
/// without following links), in order, into `out` with `metadata`, and completes it: the file
/// keeps the parts' columns and version (a version 1 run's parts make a version 1 file).
/// Returns the number of rows.
///
/// # Errors
/// [`Error::Fs`] if a part cannot be opened, [`Error::Parquet`] if one is not a Parquet
/// file or writing fails, [`Error::Schema`] if the parts are of different schema versions.
pub fn merge<R: Record>(
    dir: &Dir,
    names: &[OsString],
    out: Output,
    metadata: Vec<(String, String)>,
    row_group: usize,
) -> Result<u64> {
    let open = |n: &OsString| -> Result<_> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(dir.read_file(n)?)?;
        Ok((
            version_of_footer(builder.metadata().file_metadata()),
            builder,
        ))
    };
    let mut parts = names.iter().map(|n| open(n).map(|p| (n, p))).peekable();
    // The file takes the first part's columns (and so its version); no parts: `R`'s.
    let (schema, first) = match parts.peek() {
        Some(Ok((n, (version, builder)))) => (Arc::clone(builder.schema()), Some((*version, *n))),
        _ => (R::schema(), None),
    };
    let mut sink = ParquetSink::<R>::to_schema(out, schema, metadata, row_group)?;
    let mut rows = 0u64;
    for part in parts {
        let (n, (version, builder)) = part?;
        if let Some((v, at)) = first
            && v != version
        {
            return Err(Error::Schema(format!(
                "{} holds parts of schema version {v} ({}) and {version} ({}): they cannot \
                 make one file",
                dir.path().display(),
                at.to_string_lossy(),
                n.to_string_lossy()
            )));
        }
        for batch in builder.build()? {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            sink.write_batch(&batch)?;
        }
    }
    Box::new(sink).finish()?;
    Ok(rows)
}

/// The schema version a Parquet footer's `asdic.schema_version` declares (1 without it; 0,
/// which no version is, when it does not parse).
fn version_of_footer(meta: &parquet::file::metadata::FileMetaData) -> u32 {
    crate::version::version_of(&pairs_of(meta)).unwrap_or(0)
}

/// The number of rows of a Parquet file (from its footer).
///
/// # Errors
/// [`Error::File`] if it cannot be opened, [`Error::Parquet`] if it is not Parquet.
pub fn rows_of(path: &Path) -> Result<u64> {
    let f = File::open(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f)?;
    Ok(u64::try_from(b.metadata().file_metadata().num_rows()).unwrap_or(0))
}

/// The key-value metadata of a Parquet file.
///
/// # Errors
/// [`Error::File`] if it cannot be opened, [`Error::Parquet`] if it is not Parquet.
pub fn metadata_of(path: &Path) -> Result<Vec<(String, String)>> {
    let f = File::open(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f)?;
    Ok(pairs_of(b.metadata().file_metadata()))
}

/// The key-value metadata of a Parquet footer, as pairs (keys without a value left out).
pub fn pairs_of(meta: &parquet::file::metadata::FileMetaData) -> Vec<(String, String)> {
    meta.key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::tests::{read_parquet, temp_path};
    use crate::{ScanOutcome, ScanRow};
    use arrow_array::cast::AsArray;

    fn row(i: u32) -> ScanRow {
        ScanRow {
            target: core::net::IpAddr::V4(core::net::Ipv4Addr::from(0xc613_0000 + i)),
            outcome: ScanOutcome::Reply,
            rtt_ns: Some(u64::from(i) * 1000),
            reply_ttl: Some(64),
            responder: None,
            icmp: None,
            errno: None,
            attempt: 0,
            probe: Some(u64::from(i)),
            sent_unix_ns: Some(1_700_000_000_000_000_000 + u64::from(i)),
        }
    }

    fn dest(p: &Path) -> Dest {
        Dest::resolve(p, false).unwrap()
    }

    /// Merges the parts of `out` into it, as `asdic recover` does.
    fn recover(out: &Path, meta: Vec<(String, String)>) -> Result<u64> {
        let parts = Dir::open(&parts_dir(out)).unwrap();
        let names = part_names(&parts).unwrap();
        let into = Dest::resolve(out, false)?.whole()?;
        merge::<ScanRow>(&parts, &names, into, meta, 1024)
    }

    fn meta() -> Vec<(String, String)> {
        vec![(keys::MODE.into(), "scan".into())]
    }

    /// The targets of a Parquet file of scan rows, in order, and its metadata.
    fn targets(path: &Path) -> (Vec<String>, Vec<(String, String)>) {
        let (_, batches) = read_parquet(path);
        let mut t = vec![];
        for b in &batches {
            let col = b.column_by_name("target").unwrap().as_string::<i32>();
            t.extend(col.iter().map(|v| v.unwrap().to_string()));
        }
        (t, metadata_of(path).unwrap())
    }

    /// Writes `rows` into `dir/name` as a part of schema `version`: 2 as this asdic writes
    /// it, 1 as asdic 0.1 did (`sent_unix_ns` UInt64, no `sent_time`, no version key).
    fn write_part(dir: &Path, name: &str, rows: &[ScanRow], version: u32) {
        use arrow_array::{ArrayRef, RecordBatch, UInt64Array};
        use arrow_schema::{DataType, Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::file::metadata::KeyValue;
        use parquet::file::properties::WriterProperties;
        let mut kv = vec![KeyValue::new(keys::MODE.into(), "scan".to_string())];
        let batch = crate::schema::record_batch(rows).unwrap();
        let batch = if version == 1 {
            let (mut fields, mut cols): (Vec<Field>, Vec<ArrayRef>) = (vec![], vec![]);
            for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
                match f.name().as_str() {
                    "sent_time" => {}
                    "sent_unix_ns" => {
                        let ns = c.as_primitive::<arrow_array::types::Int64Type>();
                        let old: UInt64Array = ns.iter().map(|x| x.map(|x| x as u64)).collect();
                        fields.push(Field::new("sent_unix_ns", DataType::UInt64, true));
                        cols.push(Arc::new(old));
                    }
                    _ => {
                        fields.push(f.as_ref().clone());
                        cols.push(Arc::clone(c));
                    }
                }
            }
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
        } else {
            kv.push(KeyValue::new(
                keys::SCHEMA_VERSION.into(),
                version.to_string(),
            ));
            batch
        };
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .build();
        let f = File::create(dir.join(name)).unwrap();
        let mut w = ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn a_reopened_run_keeps_the_earlier_parts_numbers_on_and_merges_them_all() {
        let out = temp_path("reopened.parquet");
        let every = Duration::from_secs(3600);
        let mut s = PartedSink::<ScanRow>::create(&dest(&out), meta(), 4, every).unwrap();
        s.write_rows(&(0..3).map(row).collect::<Vec<_>>()).unwrap();
        let w = vec![(keys::WATERMARK.to_string(), "V4=0:3".to_string())];
        s.roll_with(&w, false).unwrap();
        // No rows, but a new watermark: a part all the same.
        let w2 = vec![(keys::WATERMARK.to_string(), "V4=0:9".to_string())];
        s.roll_with(&w2, true).unwrap();
        s.roll_with(&w2, false).unwrap(); // nothing new: no part
        s.write_rows(&[row(3)]).unwrap();
        let dir = s.dir().to_path_buf();
        // Killed: its open part is a temporary without a footer.
        drop(s);
        let parts = list_parts(&dir).unwrap();
        assert_eq!(parts.len(), 2);
        let last = metadata_of(&parts[1]).unwrap();
        assert!(last.contains(&(keys::WATERMARK.to_string(), "V4=0:9".to_string())));
        assert_eq!(rows_of(&parts[1]).unwrap(), 0);
        std::fs::write(dir.join(".part-000002.parquet.tmp"), b"no footer").unwrap();
        let (mut again, earlier) =
            PartedSink::<ScanRow>::reopen(&dest(&out), meta(), 4, every).unwrap();
        assert_eq!(earlier.len(), 2);
        assert!(again.try_lock().unwrap().is_some());
        again
            .write_rows(&(4..6).map(row).collect::<Vec<_>>())
            .unwrap();
        again.roll().unwrap();
        let names: Vec<String> = list_parts(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "part-000000.parquet",
                "part-000001.parquet",
                "part-000002.parquet"
            ]
        );
        assert_eq!(again.finish_with(vec![]).unwrap(), 5);
        assert_eq!(targets(&out).0.len(), 5);
        assert!(!dir.exists());
        // Nothing to reopen now.
        fs::remove_file(&out).unwrap();
        assert!(PartedSink::<ScanRow>::reopen(&dest(&out), meta(), 4, every).is_err());
    }

    #[test]
    fn parts_of_one_version_merge_as_that_version_and_two_versions_are_refused() {
        let out = temp_path("versions.parquet");
        let dir = parts_dir(&out);
        fs::create_dir_all(&dir).unwrap();
        write_part(&dir, "part-000000.parquet", &[row(0), row(1)], 1);
        write_part(&dir, "part-000001.parquet", &[row(2)], 1);
        // A version 1 run's parts recover into a version 1 file, its columns as they were.
        assert_eq!(recover(&out, meta()).unwrap(), 3);
        let (_, batches) = read_parquet(&out);
        let schema = batches[0].schema();
        let sent = schema.field_with_name("sent_unix_ns").unwrap();
        assert_eq!(sent.data_type(), &arrow_schema::DataType::UInt64);
        assert!(schema.field_with_name("sent_time").is_err());
        fs::remove_file(&out).unwrap();
        // A version 2 part beside them: refused, naming both versions, nothing written.
        write_part(&dir, "part-000002.parquet", &[row(3)], 2);
        let e = recover(&out, meta()).unwrap_err().to_string();
        assert!(e.contains("schema version 1") && e.contains("and 2"), "{e}");
        assert!(!out.exists());
        // A dataset writer refuses to add parts to a partition of another version.
        let shared = Dir::open(&dir).unwrap();
        let e = PartedSink::<ScanRow>::in_dataset(
            shared,
            Some("later"),
            meta(),
            16,
            Duration::from_secs(60),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("schema version 1") && e.contains("never adds"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parts_finish_as_they_roll_and_merge_into_one_file() {
        let out = temp_path("parted.parquet");
        let mut s =
            PartedSink::<ScanRow>::create(&dest(&out), meta(), 4, Duration::from_secs(3600))
                .unwrap();
        let dir = s.dir().to_path_buf();
        assert!(!s.due(), "an hour has not passed");
        s.write_rows(&(0..10).map(row).collect::<Vec<_>>()).unwrap();
        assert!(
            list_parts(&dir).unwrap().is_empty(),
            "the open part is hidden"
        );
        s.roll().unwrap();
        s.roll().unwrap(); // nothing open: no empty part
        s.write_rows(&(10..13).map(row).collect::<Vec<_>>())
            .unwrap();
        s.roll().unwrap();
        let parts = list_parts(&dir).unwrap();
        assert_eq!(parts.len(), 2);
        // Each finished part reads on its own, rows in order, with the run's metadata.
        let (rows0, meta0) = targets(&parts[0]);
        assert_eq!(rows0.len(), 10);
        assert!(meta0.iter().any(|(k, v)| k == keys::PART && v == "0"));
        s.write_rows(&[row(13)]).unwrap();
        let n = s
            .finish_with(vec![(keys::COMPLETE.into(), "true".into())])
            .unwrap();
        assert_eq!(n, 14);
        assert!(!dir.exists(), "parts removed after the merge");
        // A run that fails before its first part leaves no directory in the way of the next.
        let other = temp_path("parted-unfinished.parquet");
        let s = PartedSink::<ScanRow>::create(&dest(&other), meta(), 4, Duration::ZERO).unwrap();
        assert!(parts_dir(&other).is_dir());
        drop(s);
        assert!(!parts_dir(&other).exists());
        let (rows, meta) = targets(&out);
        let want: Vec<String> = (0..14).map(|i| row(i).target.to_string()).collect();
        assert_eq!(rows, want);
        assert!(meta.iter().any(|(k, v)| k == keys::COMPLETE && v == "true"));
        assert!(!meta.iter().any(|(k, _)| k == keys::PART));
        let _ = fs::remove_file(&out);
    }

    #[test]
    fn an_abandoned_run_leaves_its_finished_parts_and_refuses_to_overwrite_them() {
        let out = temp_path("abandoned.parquet");
        let mut s =
            PartedSink::<ScanRow>::create(&dest(&out), meta(), 1024, Duration::ZERO).unwrap();
        let dir = s.dir().to_path_buf();
        s.write_rows(&(0..5).map(row).collect::<Vec<_>>()).unwrap();
        assert!(s.due(), "a zero period is due at once");
        s.roll().unwrap();
        s.write_rows(&[row(5)]).unwrap();
        drop(s); // as a killed run: no finish
        assert!(!out.exists());
        let parts = list_parts(&dir).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(targets(&parts[0]).0.len(), 5);
        let again = PartedSink::<ScanRow>::create(&dest(&out), meta(), 1024, Duration::ZERO);
        let e = again.unwrap_err().to_string();
        assert!(e.contains(".parts") && e.contains("asdic recover"), "{e}");
        // Recovering: merge the parts as the run would have.
        let n = recover(&out, metadata_of(&parts[0]).unwrap()).unwrap();
        assert_eq!(n, 5);
        assert_eq!(targets(&out).0.len(), 5);
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(&out);
    }

    #[test]
    fn an_empty_run_still_writes_its_file() {
        let out = temp_path("empty-parted.parquet");
        let s = PartedSink::<ScanRow>::create(&dest(&out), meta(), 1024, Duration::ZERO).unwrap();
        assert_eq!(s.finish_with(vec![]).unwrap(), 0);
        assert_eq!(targets(&out).0.len(), 0);
        let _ = fs::remove_file(&out);
    }

    #[test]
    fn a_part_that_is_not_parquet_is_an_error_naming_it() {
        let root = temp_path("bad-parts");
        let out = root.join("out.parquet");
        let dir = parts_dir(&out);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("part-000000.parquet"), b"PAR1 not really").unwrap();
        assert!(recover(&out, vec![]).is_err());
        assert!(!out.exists());
        assert_eq!(fs::read_dir(&root).unwrap().count(), 1, "no temporary left");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn planted_names_in_the_parts_are_never_followed() {
        use std::os::unix::fs::symlink;
        let root = temp_path("planted-parts");
        fs::create_dir_all(&root).unwrap();
        let victim = root.join("victim");
        fs::write(&victim, b"keep").unwrap();
        let out = root.join("out.parquet");
        // A planted link at the parts directory: refused, not followed.
        fs::create_dir(root.join("elsewhere")).unwrap();
        symlink(root.join("elsewhere"), parts_dir(&out)).unwrap();
        let e = PartedSink::<ScanRow>::create(&dest(&out), meta(), 4, Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("exists"), "{e}");
        fs::remove_file(parts_dir(&out)).unwrap();
        // Links at the names parts and their temporaries once had: unused, untouched.
        let mut s = PartedSink::<ScanRow>::create(&dest(&out), meta(), 4, Duration::ZERO).unwrap();
        let dir = parts_dir(&out);
        symlink(&victim, dir.join(".part-000000.parquet.tmp")).unwrap();
        s.write_rows(&[row(1)]).unwrap();
        s.roll().unwrap();
        // A part name taken by a planted link: the part is not published over it.
        symlink(&victim, dir.join("part-000001.parquet")).unwrap();
        s.write_rows(&[row(2)]).unwrap();
        assert!(s.roll().is_err());
        drop(s);
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_merge_never_replaces_a_file_that_appeared_during_the_run() {
        let root = temp_path("appeared");
        fs::create_dir_all(&root).unwrap();
        let out = root.join("out.parquet");
        let mut s = PartedSink::<ScanRow>::create(&dest(&out), meta(), 4, Duration::ZERO).unwrap();
        s.write_rows(&[row(1), row(2)]).unwrap();
        fs::write(&out, b"someone else's").unwrap();
        let e = s.finish_with(vec![]).unwrap_err();
        let Error::Fs(asdic_fs::Error::Kept { kept, .. }) = &e else {
            panic!("{e}")
        };
        assert_eq!(fs::read(&out).unwrap(), b"someone else's");
        assert_eq!(
            targets(kept).0.len(),
            2,
            "the results are kept in the temporary"
        );
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_dataset_partition_keeps_its_parts_and_is_marked_only_when_finished() {
        let root = temp_path("dataset");
        let levels = |s: &str| vec!["run=r1".to_string(), format!("shard={s}")];
        let open = |s: &str| partition(&root, &levels(s)).unwrap();
        let dir = root.join("run=r1").join("shard=2");
        let mut p = PartedSink::<ScanRow>::in_dataset(
            open("2"),
            None,
            meta(),
            2,
            Duration::from_secs(3600),
        )
        .unwrap();
        p.write_rows(&[row(1), row(2), row(3)]).unwrap();
        p.roll().unwrap();
        p.write_rows(&[row(4)]).unwrap();
        // Killed now: the finished part reads, the open one is hidden, no marker.
        assert_eq!(list_parts(&dir).unwrap().len(), 1);
        assert!(!dir.join(SUCCESS).exists());
        let (t, m) = targets(&list_parts(&dir).unwrap()[0]);
        assert_eq!(t.len(), 3);
        assert!(m.contains(&(keys::PART.to_string(), "0".to_string())));
        let parts = p
            .finish_dataset(vec![(keys::COMPLETE.into(), "true".into())], true)
            .unwrap();
        assert_eq!(parts, 2, "never merged");
        assert_eq!(list_parts(&dir).unwrap().len(), 2);
        let marker = fs::read_to_string(dir.join(SUCCESS)).unwrap();
        assert_eq!(
            marker,
            "{\"asdic.mode\":\"scan\",\"asdic.complete\":\"true\"}\n"
        );
        // No temporary file left behind; a second run of the partition is refused.
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        let e =
            PartedSink::<ScanRow>::in_dataset(open("2"), None, meta(), 2, Duration::from_secs(1))
                .unwrap_err()
                .to_string();
        assert!(e.contains("earlier run of this partition"), "{e}");
        // An empty partition is still a partition, marked.
        let empty = root.join("run=r1").join("shard=3");
        let p =
            PartedSink::<ScanRow>::in_dataset(open("3"), None, meta(), 2, Duration::from_secs(1))
                .unwrap();
        assert_eq!(p.finish_dataset(vec![], true).unwrap(), 0);
        assert!(empty.join(SUCCESS).exists());
        // Stopped early: durable parts, the other marker, no _SUCCESS.
        let stopped = root.join("run=r1").join("shard=4");
        let mut p =
            PartedSink::<ScanRow>::in_dataset(open("4"), None, meta(), 2, Duration::from_secs(1))
                .unwrap();
        p.write_rows(&[row(7)]).unwrap();
        assert_eq!(p.finish_dataset(vec![], false).unwrap(), 1);
        assert!(stopped.join(STOPPED).exists() && !stopped.join(SUCCESS).exists());
        let _ = fs::remove_dir_all(&root);
    }
}
