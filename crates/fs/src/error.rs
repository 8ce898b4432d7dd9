use std::io;
use std::path::PathBuf;

/// What went wrong with a path: each says the path first and, where the operator can act,
/// what to do, in one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path it was about.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The name holds a file already: asdic never replaces one unless told to.
    #[error("{}: exists: asdic never replaces results (give --force to replace it, or another name)", path.display())]
    Exists {
        /// The existing name.
        path: PathBuf,
    },
    /// A directory where a file name was expected.
    #[error("{}: is a directory: give a file name", path.display())]
    IsDir {
        /// The directory.
        path: PathBuf,
    },
    /// A symbolic link asdic may not follow.
    #[error("{}: is a symbolic link{why}: asdic writes no path it did not create (give the path it points to)", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
        /// Why it is not followed, e.g. " owned by uid 1000 in a directory others may write".
        why: String,
    },
    /// A directory anyone may write into, without the sticky bit, owned by another user: that
    /// user, or anyone, could swap what asdic writes there.
    #[error("{}: writable by every user without the sticky bit, and owned by uid {uid}: asdic does not write where others can swap its files (use a directory of your own, or chmod +t it)", path.display())]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// A FIFO no process has open for reading: writing would wait forever.
    #[error("{}: a FIFO with no reader: start its reader first", path.display())]
    NoReader {
        /// The FIFO.
        path: PathBuf,
    },
    /// A kind of file asdic does not write into (a block device), or one planted by another
    /// user where others may write.
    #[error("{}: {what}: asdic does not write into it", path.display())]
    Refused {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A temporary with the results could not be published under its name: it is kept.
    #[error("{}: could not be published ({source}); the results are kept in {}", path.display(), kept.display())]
    Kept {
        /// The final name.
        path: PathBuf,
        /// The temporary holding the results.
        kept: PathBuf,
        /// Why the rename failed.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            path: path.into(),
            source: source.into(),
        }
    }

    /// Whether the operator named something asdic will not write (as opposed to a system
    /// call failing): bad input, exit status 2.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Error::Io { .. } | Error::Kept { .. })
    }

    /// The system error, where there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::Kept { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// This crate's results.
pub type Result<T> = core::result::Result<T, Error>;
