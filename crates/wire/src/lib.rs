//! # asdic-wire
//!
//! Byte layouts of everything asdic sends and receives, and nothing else: zero-copy views over
//! `&[u8]` (`new_checked` on input, after which no accessor can panic), `Repr` structs that
//! emit symmetrically, checksums, the IANA ICMP registry, and the probe payload with its MAC.
//!
//! This crate does no I/O, never allocates per packet, knows nothing of engines, and has no
//! `unsafe`. No parser panics on any input: every length is checked (property-tested).

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![forbid(unsafe_code)]

/// Internet checksum, ICMPv6 pseudo-header sum, RFC 1624 incremental updates.
pub mod checksum;
/// The crate's error type.
pub mod error;
/// Ethernet II frames.
pub mod ethernet;
/// The ICMP/ICMPv6 header shared by both families; echo header emission.
pub mod icmp;
/// Classifying received messages: echo replies and errors quoting our probes.
pub mod inbound;
/// IPv4 headers.
pub mod ipv4;
/// IPv6 headers and extension-header walking.
pub mod ipv6;
/// The probe payload (session, probe number, cookie, send time, MAC) and probe numbering.
pub mod payload;
/// The IANA ICMP and ICMPv6 type/code registry as data.
pub mod registry;
/// Probe templates: constant bytes once, per-probe patches with incremental checksums.
pub mod template;

pub use error::{Result, WireError};
pub use registry::Family;
