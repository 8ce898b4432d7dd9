//! # asdic-receiver
//!
//! The RX loop over an engine's RX half: frames go through `asdic-core`'s matcher and
//! in-flight table, [`Event`](asdic_core::Event)s come out in batches, the reaper retires
//! expired probes, and the kernel's drop counters are read a few times a second. Writes no
//! files.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

/// The RX loop.
pub mod rx;
