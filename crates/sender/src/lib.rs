//! # asdic-sender
//!
//! Probe generation and transmission: target lists (addresses and CIDRs), a precise token
//! bucket, probe stamping from a packet template, and the TX loop over an engine's TX half,
//! optionally pinned to a core. Parses no replies.
#![forbid(unsafe_code)]

/// The token-bucket pacer.
pub mod rate;
/// Target specifications and lists.
pub mod targets;
/// The TX loop.
pub mod tx;
