//! Diagnostics on stderr that never stop a run: a closed pipe (`2>&1 | head -1`), a full
//! disk behind a redirect or a revoked terminal costs the lines, never the results. The first
//! failed write ends the writing (nothing more is tried), and every line not written is
//! counted for the run's metadata (`asdic.stderr_lost`).
//!
//! Nothing in this crate prints any other way: `clippy::print_stderr` and `print_stdout` are
//! denied outside tests.

use core::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static BROKEN: AtomicBool = AtomicBool::new(false);
static LOST: AtomicU64 = AtomicU64::new(0);

/// Writes `args` to stderr as they are (no newline added): a status line rewritten in place.
pub fn raw(args: fmt::Arguments<'_>) {
    write(args, "");
}

/// Writes `args` and a newline to stderr.
pub fn line(args: fmt::Arguments<'_>) {
    write(args, "\n");
}

fn write(args: fmt::Arguments<'_>, end: &str) {
    // Relaxed: a flag and a counter; a line racing the first failure may still be tried.
    if BROKEN.load(Ordering::Relaxed) {
        LOST.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut e = std::io::stderr().lock();
    if e.write_fmt(args)
        .and_then(|()| e.write_all(end.as_bytes()))
        .and_then(|()| e.flush())
        .is_err()
    {
        BROKEN.store(true, Ordering::Relaxed);
        LOST.fetch_add(1, Ordering::Relaxed);
    }
}

/// Lines that could not be written (0 while stderr works).
pub fn lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// `lost()` as the run's metadata has it: absent while nothing was lost.
pub fn lost_meta() -> Option<u64> {
    Some(lost()).filter(|&n| n > 0)
}

/// A line on stderr, as `eprintln!` but never panicking (see the module docs).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {
        $crate::diag::line(format_args!($($t)*))
    };
}

/// Text on stderr without a newline, as `eprint!` but never panicking.
#[macro_export]
macro_rules! say_raw {
    ($($t:tt)*) => {
        $crate::diag::raw(format_args!($($t)*))
    };
}
