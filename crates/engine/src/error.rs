//! Errors of the engines.

use std::io;

/// Why an engine could not open or run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The process lacks a capability the engine needs.
    #[error(
        "{engine}: permission denied: {what} needs {capability} (run as root, or grant it: \
         sudo setcap {capability_lower}+ep $(command -v asdic))"
    )]
    Permission {
        /// Engine name.
        engine: &'static str,
        /// What was attempted.
        what: &'static str,
        /// The missing capability, e.g. "CAP_NET_RAW".
        capability: &'static str,
        /// Lower-case form for setcap.
        capability_lower: &'static str,
    },
    /// The engine cannot run on this host or in this process (e.g. io_uring is missing from
    /// the kernel, or disabled by sysctl or a seccomp filter).
    #[error("{engine}: not available here: {reason}")]
    Unavailable {
        /// Engine name.
        engine: &'static str,
        /// Why, and what to do about it.
        reason: String,
    },
    /// The engine cannot go on because the system changed under it (an interface's queues
    /// were reconfigured mid-run, …): why, and what it means for the results.
    #[error("{engine}: {reason}")]
    Changed {
        /// Engine name.
        engine: &'static str,
        /// What changed.
        reason: String,
    },
    /// A system call failed.
    #[error("{engine}: {what}: {source}")]
    Io {
        /// Engine name.
        engine: &'static str,
        /// What was attempted.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Why a send stopped before the end of the batch.
#[derive(Debug)]
pub enum SendError {
    /// Queues are full (ENOBUFS, EAGAIN): retry the rest a little later.
    Busy {
        /// Packets sent before the stop.
        sent: usize,
    },
    /// This one packet cannot be sent (no route, unreachable, …): skip it and go on.
    Packet {
        /// Packets sent before the failing one.
        sent: usize,
        /// The OS error.
        error: io::Error,
    },
    /// The engine cannot send any more (socket gone, interface deleted, …).
    Fatal(EngineError),
}
