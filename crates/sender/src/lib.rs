//! # asdic-sender
//!
//! Transmission: a precise token bucket and the TX loop over an engine's TX half, optionally
//! pinned to a core, which draws targets from an `asdic-core` source, stamps probes from a
//! packet template and claims their in-flight slots. Parses no replies.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![forbid(unsafe_code)]

/// The token-bucket pacer.
pub mod rate;
/// The TX loop.
pub mod tx;
