//! # asdic-fs
//!
//! Every file asdic writes, written as a program that runs as root must write them. This crate
//! owns the path **a name the operator gave → an opened directory → a file asdic created →
//! results published under the name**, and the rules along it:
//!
//! - A directory is opened component by component, following a symbolic link only where the
//!   kernel's `fs.protected_symlinks` would (its owner is root, the user, or the directory's
//!   owner, or the directory is writable by no one else), and refused when anyone may write
//!   into it without the sticky bit and it belongs to neither root nor the user ([`Dir`]).
//! - Every file is created by asdic, in that directory's descriptor, with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`: an existing name is never opened, so nothing planted
//!   (a symlink, a FIFO, a directory) is followed, replaced or written through.
//! - Whole files (a ping's results, a merged scan, a report) go to a temporary with an
//!   unpredictable name, are synced, and are published with `renameat2(RENAME_NOREPLACE)`:
//!   an existing file of that name is never replaced unless the operator said `--force`
//!   ([`TempFile`]).
//! - A final name that is a FIFO, a character device or a socket (`/dev/stdout`, a pipe, a
//!   copy of `/dev/null`) is opened without `O_TRUNC` and written as a stream; a FIFO with no
//!   reader is refused rather than waited for ([`Dest`]).
//!
//! It owns no formats and knows nothing of probing; it must never follow a name it did not
//! resolve itself. No unsafe code (the system calls go through `rustix`).

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![forbid(unsafe_code)]

/// What an output name resolves to, and the writers over it.
pub mod dest;
/// Directories opened without following planted links, and the checks on them.
pub mod dir;
/// The crate's error type: one line naming the path and what to do.
pub mod error;
/// Temporaries with unpredictable names, published without replacing.
pub mod temp;

pub use dest::{Dest, Output, Place};
pub use dir::{Dir, is_regular};
pub use error::{Error, Result};
pub use rustix::fs::Stat;
pub use temp::{Publish, TempFile};

/// The euid of this process (files it owns are its own).
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}
