//! # asdic-receiver
//!
//! Receiving and matching: the RX loop over an engine's RX half, the lock-free in-flight
//! table, matching replies and ICMP errors to probes, timeouts, and classification into
//! [`Event`]s. Writes no files.

/// Events: the receiver's output.
pub mod event;

pub use event::{Drops, Event, Outcome};
/// Matching replies and errors to probes, without I/O.
pub mod matcher;
/// The RX loop.
pub mod rx;
/// The lock-free in-flight table.
pub mod table;
