//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while aggregating or writing results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing to a text output (CSV, JSONL, table) failed.
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
    /// Creating, syncing or renaming an output file failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file the operation was about.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// An output could not be opened, published or was refused (see [`asdic_fs::Error`]).
    #[error(transparent)]
    Fs(#[from] asdic_fs::Error),
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building an Arrow record batch failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// An output format name that is not one of `table`, `text`, `csv`, `jsonl`, `parquet`.
    #[error("unknown output format {0:?} (expected table, text, csv, jsonl or parquet)")]
    UnknownFormat(String),
    /// A format these results are not written in by this sink.
    #[error("{format} is not a format for {what}")]
    NotFor {
        /// The format asked for.
        format: crate::Format,
        /// What was to be written.
        what: &'static str,
    },
    /// [`Aggregator::with_names`](crate::Aggregator::with_names) got a list of the wrong length.
    #[error("{names} names given for {targets} targets")]
    NamesLength {
        /// Number of targets.
        targets: usize,
        /// Number of names given.
        names: usize,
    },
    /// A row value does not fit its column's Arrow type (a bug in a
    /// [`Record::visit`](crate::Record::visit), such as [`Row::values`](crate::Row::values)).
    #[error("column {column}: value does not match the column type")]
    ColumnType {
        /// The column's name.
        column: &'static str,
    },
    /// A record yielded a number of cells other than its number of columns (a bug in its
    /// [`Record::visit`](crate::Record::visit)).
    #[error("a record has {cells} cells for {columns} columns")]
    CellCount {
        /// Number of columns of the record type.
        columns: usize,
        /// Number of cells the record yielded.
        cells: usize,
    },
    /// A file's columns are of a schema version this asdic cannot read, or not the columns
    /// its version has; or files of different versions were to be merged.
    #[error("{0}")]
    Schema(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
