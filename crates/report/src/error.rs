//! The crate's error type.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading results or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file or directory could not be read (also the font).
    #[error("{}: {source}", path.display())]
    File {
        /// The path the operation was about.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A file of the report could not be written (a full disk, an I/O error): a system
    /// error, unlike [`Error::File`] about an input.
    #[error("{}: cannot be written: {source}", path.display())]
    Write {
        /// The report's file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A file is not readable Parquet.
    #[error("{}: not a readable Parquet file: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file that asdic did not write, or a column of the wrong type.
    #[error("{}: {what}", path.display())]
    NotAsdic {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Nothing to report on.
    #[error("no asdic result files in {0}")]
    Empty(String),
    /// No TrueType font for the figures' text.
    #[error("{0}")]
    Font(String),
    /// Drawing a figure failed.
    #[error("drawing {figure}: {what}")]
    Draw {
        /// The figure's file name.
        figure: String,
        /// What plotters said.
        what: String,
    },
    /// Aggregating analysis helpers failed (listing parts).
    #[error(transparent)]
    Analysis(#[from] asdic_analysis::Error),
    /// The report's directory or one of its files was refused or could not be written.
    #[error(transparent)]
    Fs(#[from] asdic_fs::Error),
    /// An earlier report is in the directory, and replacing it was not asked for.
    #[error("{}: holds an earlier report's {what}: asdic never replaces it (give --force, or another -o)", dir.display())]
    Earlier {
        /// The report directory.
        dir: PathBuf,
        /// What is there (`report.html`, `figures/`).
        what: &'static str,
    },
}

impl Error {
    /// An I/O error about `path`.
    pub fn file(path: &Path, source: io::Error) -> Self {
        Error::File {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A write error about the report's file `path`.
    pub fn write(path: &Path, source: io::Error) -> Self {
        Error::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A file that is not what asdic writes.
    pub fn not_asdic(path: &Path, what: impl Into<String>) -> Self {
        Error::NotAsdic {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
