//! Durable Parquet output: a run's rows go to finished parts while it runs, and into one file
//! when it ends.
//!
//! A Parquet file is readable only once its footer is written, so a process killed while
//! writing one (SIGKILL, OOM, power cut) would leave nothing readable. [`PartedSink`] writes
//! rows for `<out>` into `<out>.parts/part-NNNNNN.parquet` instead, finishing the open part
//! (footer, fsync, rename, fsync of the directory) every `every` (a few seconds): a killed run
//! loses at most the rows of the part still open, which is hidden (`.part-NNNNNN.parquet.tmp`)
//! so that readers of the directory skip it. [`PartedSink::finish`] merges the parts in order
//! into `<out>` (through `<out>.tmp`, with the run's closing metadata), then removes them, so a
//! run that ends normally (including on SIGINT/SIGTERM) leaves exactly one complete file.
//!
//! Every part is a complete Parquet file with the run's schema and metadata (plus `asdic.part`),
//! so a partial run reads as a dataset (`asdic report OUT.parts`, DuckDB
//! `read_parquet('OUT.parts/*.parquet')`, `pyarrow.parquet.read_table('OUT.parts')`), and
//! [`recover`] merges one into `<out>` as the run would have.

use core::marker::PhantomData;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::meta::keys;
use crate::schema::Record;
use crate::sink::{ParquetSink, Sink};

/// The directory of parts of `out`: `<out>.parts`.
pub fn parts_dir(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".parts");
    PathBuf::from(s)
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
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("part-") && name.ends_with(".parquet") {
            parts.push(p);
        }
    }
    parts.sort();
    Ok(parts)
}

/// The directory a file is created (and renamed) in: its parent, or `.` for a bare name.
pub fn dir_of(file: &Path) -> &Path {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::File {
            path: dir.to_path_buf(),
            source,
        })
}

/// The marker a dataset partition gets once all its parts are durable and the run completed
/// (Hadoop's name; Spark, DuckDB and pyarrow skip files starting with `_`).
pub const SUCCESS: &str = "_SUCCESS";

/// The marker of a partition whose run ended early but cleanly (a signal, a time limit):
/// its parts are durable, its results a prefix of the run's, and it has no [`SUCCESS`].
pub const STOPPED: &str = "_STOPPED";

/// Rows of type `R` for one output file, written as finished parts (see the module docs).
#[derive(Debug)]
pub struct PartedSink<R: Record> {
    /// Parts of a dataset partition: never merged; a marker when finished.
    dataset: bool,
    /// Part files are `{prefix}-NNNNNN.parquet`.
    prefix: String,
    out: PathBuf,
    dir: PathBuf,
    metadata: Vec<(String, String)>,
    row_group: usize,
    every: Duration,
    open: Option<ParquetSink<R>>,
    /// When the last part was finished (or the sink created).
    since: Instant,
    parts: Vec<PathBuf>,
    rows: PhantomData<fn(&R)>,
}

impl<R: Record> PartedSink<R> {
    /// Starts the parts of `out` (creating `<out>.parts`), each with `metadata`, row groups of
    /// at most `row_group` rows, finished every `every`.
    ///
    /// # Errors
    /// [`Error::File`] if `<out>.parts` exists already (an earlier run's results: recover or
    /// remove them first) or cannot be created.
    pub fn create(
        out: impl AsRef<Path>,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Result<Self> {
        let out = out.as_ref().to_path_buf();
        let dir = parts_dir(&out);
        fs::create_dir(&dir).map_err(|source| Error::File {
            path: dir.clone(),
            source: if source.kind() == std::io::ErrorKind::AlreadyExists {
                std::io::Error::new(
                    source.kind(),
                    "exists: the parts of an earlier run that did not finish \
                     (`asdic recover` merges them; or remove the directory)",
                )
            } else {
                source
            },
        })?;
        Ok(Self::with(
            false,
            "part".into(),
            out,
            dir,
            metadata,
            row_group,
            every,
        ))
    }

    fn with(
        dataset: bool,
        prefix: String,
        out: PathBuf,
        dir: PathBuf,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Self {
        Self {
            dataset,
            prefix,
            out,
            dir,
            metadata,
            row_group,
            every,
            open: None,
            since: Instant::now(),
            parts: vec![],
            rows: PhantomData,
        }
    }

    /// Parts in one partition `dir` of a Hive-style dataset (created with its parents): they
    /// are the output, never merged; [`PartedSink::finish_dataset`] marks the partition
    /// complete. A killed run leaves its finished parts, readable, and no marker. Parts are
    /// `part-NNNNNN.parquet`, or `part-{name}-NNNNNN.parquet` when several writers share the
    /// partition (a sweep's hour: each period of each run names its own).
    ///
    /// # Errors
    /// [`Error::File`] if `dir` cannot be created, or already holds parts of this name or a
    /// marker (an earlier run of this partition: remove it, or write another partition).
    pub fn in_dataset(
        dir: impl AsRef<Path>,
        name: Option<&str>,
        metadata: Vec<(String, String)>,
        row_group: usize,
        every: Duration,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let file_error = |source| Error::File {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(file_error)?;
        let prefix = match name {
            Some(n) => format!("part-{n}"),
            None => "part".to_string(),
        };
        let taken = match name {
            None => partition_taken(&dir)?,
            Some(_) => dir.join(format!("{prefix}-000000.parquet")).exists(),
        };
        if taken {
            return Err(file_error(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "holds the results of an earlier run of this partition (remove the directory, \
                 or choose another --run-id)",
            )));
        }
        Ok(Self::with(
            true,
            prefix,
            dir.clone(),
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
    /// As [`PartedSink::roll`], and [`Error::File`] if the marker cannot be written.
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
        &self.dir
    }

    /// The parts finished so far.
    pub fn parts(&self) -> &[PathBuf] {
        &self.parts
    }

    /// Whether a part period has passed since the last [`roll`](Self::roll): time for the
    /// caller to write the rows it holds and roll.
    pub fn due(&self) -> bool {
        self.since.elapsed() >= self.every
    }

    /// Finishes the open part, if any: from now on its rows survive the process.
    ///
    /// # Errors
    /// As [`ParquetSink`]'s finish, and [`Error::File`] if the directory cannot be synced.
    pub fn roll(&mut self) -> Result<()> {
        self.since = Instant::now();
        if let Some(part) = self.open.take() {
            let path = part.path().to_path_buf();
            Box::new(part).finish()?;
            sync_dir(&self.dir)?;
            self.parts.push(path);
        }
        Ok(())
    }

    fn part(&mut self) -> Result<&mut ParquetSink<R>> {
        if self.open.is_none() {
            let n = self.parts.len();
            let prefix = &self.prefix;
            let path = self.dir.join(format!("{prefix}-{n:06}.parquet"));
            let tmp = self.dir.join(format!(".{prefix}-{n:06}.parquet.tmp"));
            let mut meta = self.metadata.clone();
            meta.push((keys::PART.into(), n.to_string()));
            let sink = ParquetSink::with_tmp(path, tmp, meta, self.row_group)?;
            self.open = Some(sink);
        }
        Ok(self.open.as_mut().expect("opened above"))
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
        let rows = merge::<R>(&self.parts, &self.out, meta, self.row_group)?;
        for p in std::mem::take(&mut self.parts) {
            let _ = fs::remove_file(p);
        }
        // The drop removes the directory, now empty.
        Ok(rows)
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
        if self.dataset {
            self.finish_dataset(closing, complete).map(|_| ())
        } else {
            self.finish_with(closing).map(|_| ())
        }
    }

    /// Whether this sink writes a dataset partition (its parts are the results).
    pub fn is_dataset(&self) -> bool {
        self.dataset
    }
}

impl<R: Record> Drop for PartedSink<R> {
    /// Abandoned (an error, a panic): the open part's temporary file goes, the finished parts
    /// stay for recovery, and a directory left empty goes too.
    fn drop(&mut self) {
        drop(self.open.take());
        // A dataset partition stays, empty or not: its directory is part of the layout.
        if self.parts.is_empty() && !self.dataset {
            let _ = fs::remove_dir(&self.dir);
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

/// Whether dataset partition `dir` already holds a run's results: a marker or parts.
///
/// # Errors
/// [`Error::File`] if `dir` cannot be read.
pub fn partition_taken(dir: &Path) -> Result<bool> {
    Ok(dir.join(SUCCESS).exists() || dir.join(STOPPED).exists() || !list_parts(dir)?.is_empty())
}

/// Marks dataset partition `dir`: [`SUCCESS`] when its run is `complete`, else [`STOPPED`],
/// holding `pairs` (the run's metadata) as one JSON object; written to a hidden temporary
/// file, synced, renamed into place and the directory synced, so a marker is never seen
/// half written and never before what the caller wrote before it is durable.
///
/// # Errors
/// [`Error::File`] if the marker cannot be written.
pub fn write_marker(dir: &Path, complete: bool, pairs: &[(String, String)]) -> Result<()> {
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
    let tmp = dir.join(format!(".{name}.tmp"));
    let marker = dir.join(name);
    let file_error = |path: &Path, source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    {
        use std::io::Write;
        let mut f = File::create(&tmp).map_err(|e| file_error(&tmp, e))?;
        f.write_all(json.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| file_error(&tmp, e))?;
    }
    fs::rename(&tmp, &marker).map_err(|e| file_error(&marker, e))?;
    sync_dir(dir)
}

/// Merges `parts` (Parquet files of `R`'s schema), in order, into `out` (through `<out>.tmp`,
/// synced, renamed) with `metadata`. Returns the number of rows.
///
/// # Errors
/// [`Error::File`] if a part cannot be opened, [`Error::Parquet`] if one is not a Parquet
/// file of `R`'s schema, or writing fails.
pub fn merge<R: Record>(
    parts: &[PathBuf],
    out: &Path,
    metadata: Vec<(String, String)>,
    row_group: usize,
) -> Result<u64> {
    let mut sink = ParquetSink::<R>::with_row_groups(out, metadata, row_group)?;
    let mut rows = 0u64;
    for p in parts {
        let f = File::open(p).map_err(|source| Error::File {
            path: p.clone(),
            source,
        })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
        for batch in reader {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            sink.write_batch(&batch)?;
        }
    }
    Box::new(sink).finish()?;
    sync_dir(dir_of(out))?;
    Ok(rows)
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
    Ok(b.metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|k| Some((k.key.clone(), k.value.clone()?)))
                .collect()
        })
        .unwrap_or_default())
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

    #[test]
    fn parts_finish_as_they_roll_and_merge_into_one_file() {
        let out = temp_path("parted.parquet");
        let mut s =
            PartedSink::<ScanRow>::create(&out, meta(), 4, Duration::from_secs(3600)).unwrap();
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
        let s = PartedSink::<ScanRow>::create(&out, meta(), 4, Duration::ZERO).unwrap();
        drop(s);
        assert!(!dir.exists());
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
        let mut s = PartedSink::<ScanRow>::create(&out, meta(), 1024, Duration::ZERO).unwrap();
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
        let again = PartedSink::<ScanRow>::create(&out, meta(), 1024, Duration::ZERO);
        let e = again.unwrap_err().to_string();
        assert!(e.contains(".parts") && e.contains("asdic recover"), "{e}");
        // Recovering: merge the parts as the run would have.
        let n = merge::<ScanRow>(&parts, &out, metadata_of(&parts[0]).unwrap(), 1024).unwrap();
        assert_eq!(n, 5);
        assert_eq!(targets(&out).0.len(), 5);
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(&out);
    }

    #[test]
    fn an_empty_run_still_writes_its_file() {
        let out = temp_path("empty-parted.parquet");
        let s = PartedSink::<ScanRow>::create(&out, meta(), 1024, Duration::ZERO).unwrap();
        assert_eq!(s.finish_with(vec![]).unwrap(), 0);
        assert_eq!(targets(&out).0.len(), 0);
        let _ = fs::remove_file(&out);
    }

    #[test]
    fn a_part_that_is_not_parquet_is_an_error_naming_it() {
        let dir = temp_path("bad-parts");
        fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("part-000000.parquet");
        fs::write(&bad, b"PAR1 not really").unwrap();
        let out = dir.join("out.parquet");
        assert!(merge::<ScanRow>(&[bad], &out, vec![], 1024).is_err());
        assert!(!out.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dataset_partition_keeps_its_parts_and_is_marked_only_when_finished() {
        let root = temp_path("dataset");
        let dir = root.join("run=r1").join("shard=2");
        let mut p =
            PartedSink::<ScanRow>::in_dataset(&dir, None, meta(), 2, Duration::from_secs(3600))
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
        let e = PartedSink::<ScanRow>::in_dataset(&dir, None, meta(), 2, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("earlier run of this partition"), "{e}");
        // An empty partition is still a partition, marked.
        let empty = root.join("run=r1").join("shard=3");
        let p = PartedSink::<ScanRow>::in_dataset(&empty, None, meta(), 2, Duration::from_secs(1))
            .unwrap();
        assert_eq!(p.finish_dataset(vec![], true).unwrap(), 0);
        assert!(empty.join(SUCCESS).exists());
        // Stopped early: durable parts, the other marker, no _SUCCESS.
        let stopped = root.join("run=r1").join("shard=4");
        let mut p =
            PartedSink::<ScanRow>::in_dataset(&stopped, None, meta(), 2, Duration::from_secs(1))
                .unwrap();
        p.write_rows(&[row(7)]).unwrap();
        assert_eq!(p.finish_dataset(vec![], false).unwrap(), 1);
        assert!(stopped.join(STOPPED).exists() && !stopped.join(SUCCESS).exists());
        let _ = fs::remove_dir_all(&root);
    }
}
