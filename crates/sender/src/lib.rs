//! # asdic-sender
//!
//! Probe generation and transmission: target lists (addresses and CIDRs), a precise token
//! bucket, the permuted and sharded scan space with blocklists, the permuted (target, TTL) walk of `trace`, probe stamping from a packet template, and the TX loop over an engine's TX half,
//! optionally pinned to a core. Parses no replies.
#![forbid(unsafe_code)]

/// The targets file of `asdic sweep` (NetXMS `ip:name:psize` lines).
pub mod fleet;
/// The cyclic-group permutation of an index space, with shards.
pub mod permute;
/// The token-bucket pacer.
pub mod rate;
/// Where the TX loop gets targets: list rounds or a permuted scan.
pub mod source;
/// The scan's address space: targets minus blocklists, numbered.
pub mod space;
/// Rounds over a replaceable list, spread evenly (`asdic sweep`).
pub mod sweep;
/// Target specifications and lists.
pub mod targets;
/// `trace`'s Yarrp-style walk over (target, TTL) pairs, stopping at destinations.
pub mod trace;
/// The TX loop.
pub mod tx;
