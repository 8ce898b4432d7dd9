//! Finding the result files, telling their run mode, and reading their columns.
//!
//! An input is a Parquet file (any name: `out.parquet`, a `.partial` snapshot), a killed
//! run's `FILE.parts/` directory (its finished parts; the open `.tmp` part has no footer and
//! is skipped), a directory such as a sweep's output directory: its `*.parquet` files and
//! the finished parts of its `*.parquet.parts/` subdirectories, in name order, or a
//! Hive-partitioned dataset (`--dataset DIR`): the same in every `key=value` subdirectory.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use asdic_analysis::meta::keys;
use asdic_analysis::schema::Column;
use asdic_analysis::{RunMeta, SCHEMA_VERSION, version};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::section::Mode;

/// Every result file named by `inputs`, in order, each once.
///
/// # Errors
/// [`Error::File`] for a path that does not exist or cannot be listed, [`Error::Empty`] when
/// nothing is found.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut seen = HashSet::new();
    let mut push = |p: PathBuf, out: &mut Vec<PathBuf>| {
        if seen.insert(p.clone()) {
            out.push(p);
        }
    };
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| Error::file(input, e))?;
        if !meta.is_dir() {
            push(input.clone(), &mut out);
            continue;
        }
        if is_parts_dir(input) {
            for p in asdic_analysis::list_parts(input)? {
                push(p, &mut out);
            }
            continue;
        }
        for p in in_directory(input)? {
            push(p, &mut out);
        }
    }
    if out.is_empty() {
        let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Empty(names.join(", ")));
    }
    Ok(out)
}

/// The result files of a directory: its `*.parquet` files, the finished parts of its
/// `*.parquet.parts/` subdirectories, and, in a Hive-partitioned dataset (`--dataset`),
/// the same in every `key=value` subdirectory, recursively; each level in name order.
fn in_directory(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    let mut parts = vec![];
    let mut partitions = vec![];
    for e in std::fs::read_dir(dir).map_err(|e| Error::file(dir, e))? {
        let p = e.map_err(|e| Error::file(dir, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Hidden (an open part's .tmp) and `_` files (markers) are not results.
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if p.is_dir() && is_parts_dir(&p) {
            parts.push(p);
        } else if p.is_dir() && name.contains('=') {
            partitions.push(p);
        } else if p.is_file() && name.ends_with(".parquet") {
            files.push(p);
        }
    }
    files.sort();
    parts.sort();
    partitions.sort();
    let mut out = files;
    for d in parts {
        out.extend(asdic_analysis::list_parts(&d)?);
    }
    for d in partitions {
        out.extend(in_directory(&d)?);
    }
    Ok(out)
}

fn is_parts_dir(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".parts"))
}

/// A result file and its key-value metadata (read once, when grouping).
#[derive(Debug, Clone)]
pub struct Input {
    /// The file.
    pub path: PathBuf,
    /// Its Parquet key-value metadata, typed.
    pub meta: RunMeta,
}

/// The files grouped by run mode, groups in the order their first file came.
///
/// # Errors
/// [`Error::Parquet`] for a file that is not Parquet, [`Error::NotAsdic`] for one without
/// asdic's metadata or of an unknown mode.
pub fn group(files: &[PathBuf]) -> Result<Vec<(Mode, Vec<Input>)>> {
    let mut groups: Vec<(Mode, Vec<Input>)> = vec![];
    for f in files {
        let meta = metadata(f)?;
        let mode = match (meta.mode, meta.unparsed(keys::MODE)) {
            (Some(m), _) => Mode::from(m),
            (None, Some(other)) => {
                return Err(Error::not_asdic(
                    f,
                    format!("unknown {} {other:?}", keys::MODE),
                ));
            }
            (None, None) => {
                return Err(Error::not_asdic(
                    f,
                    format!(
                        "no {} in its metadata: not an asdic result file",
                        keys::MODE
                    ),
                ));
            }
        };
        let input = Input {
            path: f.clone(),
            meta,
        };
        match groups.iter_mut().find(|(m, _)| *m == mode) {
            Some((_, v)) => v.push(input),
            None => groups.push((mode, vec![input])),
        }
    }
    Ok(groups)
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let f = File::open(path).map_err(|e| Error::file(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(|source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    })
}

/// The key-value metadata of a Parquet file, typed.
///
/// # Errors
/// As [`group`].
pub fn metadata(path: &Path) -> Result<RunMeta> {
    RunMeta::read(path).map_err(|e| match e {
        asdic_analysis::Error::Parquet(source) => Error::Parquet {
            path: path.to_path_buf(),
            source,
        },
        other => Error::Analysis(other),
    })
}

/// Calls `f` with every record batch of `path`, in order.
///
/// # Errors
/// As [`group`], and whatever `f` returns.
pub fn for_each_batch(path: &Path, f: impl FnMut(&Batch<'_>) -> Result<()>) -> Result<()> {
    for_each_batch_of(path, None, f)
}

/// Calls `f` with every record batch of `path`, in order, holding only `columns` when given
/// (the others are not decoded; a missing one is reported by [`Batch::col`]). One batch of
/// 8,192 rows is in memory at a time, whatever the file's size.
///
/// # Errors
/// As [`for_each_batch`].
pub fn for_each_batch_of(
    path: &Path,
    columns: Option<&[&Column]>,
    mut f: impl FnMut(&Batch<'_>) -> Result<()>,
) -> Result<()> {
    let mut builder = open(path)?;
    // A file of an older schema version is read whole and its batches upgraded to the
    // columns read here (`asdic_analysis::version`).
    let pairs = asdic_analysis::pairs_of(builder.metadata().file_metadata());
    let meta = RunMeta::from_pairs(&pairs);
    let version = version::version_of(&pairs).ok_or_else(|| {
        Error::not_asdic(path, format!("{} is not a number", keys::SCHEMA_VERSION))
    })?;
    let old = match (version, meta.mode) {
        (SCHEMA_VERSION, _) => None,
        (_, Some(mode)) => Some(mode),
        (_, None) => return Err(Error::not_asdic(path, format!("no {}", keys::MODE))),
    };
    if let (Some(columns), None) = (columns, old) {
        let schema = builder.schema();
        let roots: Vec<usize> = columns
            .iter()
            .filter_map(|c| schema.index_of(c.name).ok())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
    for b in reader {
        let mut b = b.map_err(|e| Error::not_asdic(path, format!("reading rows: {e}")))?;
        if let Some(mode) = old {
            b = version::upgrade(mode, version, b)
                .map_err(|e| Error::not_asdic(path, e.to_string()))?;
        }
        f(&Batch { path, b: &b })?;
    }
    Ok(())
}

/// One record batch of a named file, with typed column look-ups.
#[derive(Debug)]
pub struct Batch<'a> {
    path: &'a Path,
    b: &'a RecordBatch,
}

impl Batch<'_> {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.b.num_rows()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.b.num_rows() == 0
    }

    /// Column `column` (from its record's schema table) as array type `T`.
    ///
    /// # Errors
    /// [`Error::NotAsdic`] naming the file and column when it is missing or of another type.
    pub fn col<T: Array + 'static>(&self, column: &Column) -> Result<&T> {
        let name = column.name;
        let c = self
            .b
            .column_by_name(name)
            .ok_or_else(|| Error::not_asdic(self.path, format!("no column {name:?}")))?;
        c.as_any().downcast_ref::<T>().ok_or_else(|| {
            Error::not_asdic(
                self.path,
                format!("column {name:?} has type {}", c.data_type()),
            )
        })
    }
}

/// The value at `i`, or `None` when null.
pub fn opt<A: Array, T>(a: &A, i: usize, value: impl Fn(&A, usize) -> T) -> Option<T> {
    (!a.is_null(i)).then(|| value(a, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("asdic-report-input-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn directories_expand_to_files_and_finished_parts_in_order() {
        let d = tmp("expand");
        for f in ["b.parquet", "a.parquet", ".hidden.parquet", "notes.txt"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let parts = d.join("c.parquet.parts");
        std::fs::create_dir(&parts).unwrap();
        for f in [
            "part-000002.parquet",
            "part-000001.parquet",
            ".part-000003.parquet.tmp",
        ] {
            std::fs::write(parts.join(f), b"x").unwrap();
        }
        let got = expand(std::slice::from_ref(&d)).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|p| p.strip_prefix(&d).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "a.parquet",
                "b.parquet",
                "c.parquet.parts/part-000001.parquet",
                "c.parquet.parts/part-000002.parquet"
            ]
        );
        // The parts directory on its own, and a file named twice, once.
        let again = expand(&[parts.clone(), d.join("a.parquet"), d.join("a.parquet")]).unwrap();
        assert_eq!(again.len(), 3);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_hive_dataset_expands_to_every_partitions_parts_in_order() {
        let d = tmp("hive");
        for (dir, f) in [
            ("run=r1/shard=1", "part-000000.parquet"),
            ("run=r1/shard=0", "part-000001.parquet"),
            ("run=r1/shard=0", "part-000000.parquet"),
            ("run=r1/shard=0", "_SUCCESS"),
            ("run=r1/shard=0", ".part-000002.parquet.tmp"),
            ("run=r1/shard=1", "notes.txt"),
            ("not-a-partition", "part-000000.parquet"),
        ] {
            std::fs::create_dir_all(d.join(dir)).unwrap();
            std::fs::write(d.join(dir).join(f), b"x").unwrap();
        }
        let got = expand(std::slice::from_ref(&d)).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|p| p.strip_prefix(&d).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "run=r1/shard=0/part-000000.parquet",
                "run=r1/shard=0/part-000001.parquet",
                "run=r1/shard=1/part-000000.parquet"
            ]
        );
        // One shard of it, named on its own.
        let one = expand(&[d.join("run=r1/shard=1")]).unwrap();
        assert_eq!(one.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_paths_and_empty_directories_are_errors_naming_them() {
        let d = tmp("empty");
        let e = expand(std::slice::from_ref(&d)).unwrap_err().to_string();
        assert!(e.contains("no asdic result files"), "{e}");
        let missing = d.join("nope.parquet");
        let e = expand(&[missing]).unwrap_err().to_string();
        assert!(e.contains("nope.parquet"), "{e}");
        std::fs::write(d.join("junk.parquet"), b"not parquet").unwrap();
        let files = expand(std::slice::from_ref(&d)).unwrap();
        let e = group(&files).unwrap_err().to_string();
        assert!(e.contains("junk.parquet") && e.contains("Parquet"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
