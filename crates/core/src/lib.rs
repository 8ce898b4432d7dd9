//! # asdic-core
//!
//! Everything of asdic that needs no I/O, in the role quinn-proto plays for quinn: what a run
//! sends, how a reply finds its probe, and what comes out. Engines (crate `asdic-engine`)
//! depend on this crate, never the reverse; the analysis and report crates build on it
//! without any of the I/O stack (aya, xsk-rs, libxdp, io-uring).
//!
//! - targets: [`targets`] (addresses, CIDRs, lists), [`fleet`] (sweep's target file),
//!   [`space`] (the scan's address space minus blocklists), [`permute`] (its cyclic-group
//!   permutation and shards), [`stateless`] (the scan's passes, validation without state), [`source`] (what the TX loop draws from), [`sweep`] (rounds
//!   over a replaceable list), [`trace`] (the permuted (target, TTL) walk);
//! - matching: [`frame`] (a received frame, as engines hand it over), [`table`] (the
//!   lock-free in-flight table), [`matcher`] (frames to [`Event`]s), [`retry`];
//! - output: [`event`] ([`Event`], [`Outcome`], [`Drops`]).
//!
//! Packet layouts and templates are in `asdic-wire`, one layer further down.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![forbid(unsafe_code)]

/// Events: what matching produces.
pub mod event;
/// The targets file of `asdic sweep` (NetXMS `ip:name:psize` lines).
pub mod fleet;
/// A received frame, as the engines hand it to the matcher.
pub mod frame;
/// Matching replies and errors to probes.
pub mod matcher;
/// The cyclic-group permutation of an index space, with shards.
pub mod permute;
/// Retries of silent targets.
pub mod retry;
/// Target lists held compactly.
pub mod set;
/// Where the TX loop gets targets: list rounds or a permuted scan.
pub mod source;
/// The scan's address space: targets minus blocklists, numbered.
pub mod space;
/// Stateless scans: identifiers from a keyed MAC, a responder bitmap, retry passes.
pub mod stateless;
/// Rounds over a replaceable list, spread evenly (`asdic sweep`).
pub mod sweep;
/// The lock-free in-flight table.
pub mod table;
/// Target specifications and lists.
pub mod targets;
/// `trace`'s Yarrp-style walk over (target, TTL) pairs, stopping at destinations.
pub mod trace;

pub use event::{Drops, Event, Outcome};
